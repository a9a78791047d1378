//! Who may use which route: every API route refuses a missing session, a forged cookie and
//! the wrong role; changes refuse a missing CSRF token and a cross-site origin; guessing is
//! slowed; recordings are served to reviewers only and every listing and playback is audited.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::extract::connect_info::MockConnectInfo;
use axum::http::{header, Request, StatusCode};
use tower::ServiceExt;
use web::auth::{hash_password, Login, Logins, Role};
use web::{AgentChange, App, Live, Metrics, Sample, WebConfig};

struct Fixture {
    app: axum::Router,
    changes: Arc<Mutex<Vec<AgentChange>>>,
    db: PathBuf,
    _dir: TempDir,
}

struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

const PASSWORD: &str = "correct horse battery";

fn fixture() -> Fixture {
    let dir = std::env::temp_dir().join(format!(
        "web-access-{}-{}",
        std::process::id(),
        rand_suffix()
    ));
    std::fs::create_dir_all(dir.join("recordings/2026/11/30")).unwrap();
    let db = dir.join("switchboard.db");
    {
        let mut s = store::Store::open(&db).unwrap();
        let mut call = store::CallRow::new(7, 1_796_029_200_000);
        call.outcome = "answered".into();
        call.queue = Some("support".into());
        call.agent = Some("ada".into());
        s.insert_calls(&[call]).unwrap();
        std::fs::write(
            dir.join("recordings/2026/11/30/call-7.wav"),
            b"RIFF....WAVE",
        )
        .unwrap();
        s.insert_recordings(&[store::RecordingRow {
            call_id: 7,
            file: "2026/11/30/call-7.wav".into(),
            sha256: "ab".repeat(32),
            bytes: 12,
            duration_ms: 1000,
            finished_ms: 1_796_029_260_000,
        }])
        .unwrap();
    }
    let hash = hash_password(PASSWORD);
    let login = |name: &str, roles: &[Role], agent: Option<&str>| Login {
        name: name.into(),
        password_hash: hash.clone(),
        roles: roles.to_vec(),
        agent: agent.map(str::to_owned),
    };
    let logins = Logins::new([
        login("ada", &[Role::Agent], Some("ada")),
        login("ben", &[Role::Agent], Some("ben")),
        login("sam", &[Role::Supervisor], None),
        login("rita", &[Role::Reviewer], None),
        login("root", &[Role::Admin], None),
    ]);
    let changes = Arc::new(Mutex::new(Vec::new()));
    let seen = changes.clone();
    let control: web::AgentControl = Arc::new(move |c: AgentChange| {
        let seen = seen.clone();
        Box::pin(async move {
            if c.agent == "nobody" {
                return Err("no agent \"nobody\"".to_owned());
            }
            seen.lock().unwrap().push(c);
            Ok(())
        })
    });
    let sampler: web::Sampler = Arc::new(|| Box::pin(async { Sample::default() }));
    let app = App::new(
        WebConfig {
            database: Some(store::Location::Sqlite(db.clone())),
            recordings: Some(dir.join("recordings")),
            secure_cookies: true,
            logins,
            phones: web::Phones {
                ws_port: Some(8088),
                wss_port: None,
                ws_url: None,
                realm: "switchboard".into(),
                domain: "switchboard".into(),
                crm_url: Some("https://crm.example.com/?phone={number}".into()),
                accounts: [(
                    "ada".to_owned(),
                    web::PhoneAccount {
                        user: "1001".into(),
                        password: Some("secret1001".into()),
                        ha1: None,
                        display_name: "ada".into(),
                    },
                )]
                .into(),
            },
        },
        Arc::new(Metrics::new()),
        sampler,
        {
            let live = Live::new();
            live.update(|b| {
                b.configure(
                    vec![web::live::QueueBoardConfig::new("support")],
                    vec![("ada".into(), vec!["support".into()])],
                );
                b.agent_state(
                    std::time::SystemTime::now(),
                    "ada",
                    "not_ready",
                    Some("lunch"),
                );
            });
            Arc::new(live)
        },
        control,
    );
    let peer: SocketAddr = "192.0.2.10:40000".parse().unwrap();
    Fixture {
        app: web::api::router(app).layer(MockConnectInfo(peer)),
        changes,
        db,
        _dir: TempDir(dir),
    }
}

fn rand_suffix() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(0);
    h.finish()
}

struct Answer {
    status: StatusCode,
    headers: axum::http::HeaderMap,
    body: Vec<u8>,
}

impl Answer {
    fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }
}

async fn send(app: &axum::Router, req: Request<Body>) -> Answer {
    let r = app.clone().oneshot(req).await.unwrap();
    let status = r.status();
    let headers = r.headers().clone();
    // An event stream does not end: its first event is enough.
    let stream = headers
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream"));
    let body = if stream {
        use http_body_util::BodyExt;
        let mut body = r.into_body();
        let frame = body.frame().await.unwrap().unwrap();
        frame.into_data().unwrap().to_vec()
    } else {
        axum::body::to_bytes(r.into_body(), 1 << 20)
            .await
            .unwrap()
            .to_vec()
    };
    Answer {
        status,
        headers,
        body,
    }
}

/// A logged-in browser: its cookie and CSRF token.
#[derive(Clone)]
struct Session {
    cookie: String,
    csrf: String,
}

async fn log_in(app: &axum::Router, login: &str) -> Session {
    let r = send(
        app,
        Request::post("/api/login")
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(
                serde_json::json!({ "login": login, "password": PASSWORD }).to_string(),
            ))
            .unwrap(),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{login}");
    let set = r.headers[header::SET_COOKIE].to_str().unwrap().to_owned();
    for attr in ["HttpOnly", "SameSite=Strict", "Secure", "Path=/"] {
        assert!(set.contains(attr), "{set}");
    }
    Session {
        cookie: set.split(';').next().unwrap().to_owned(),
        csrf: r.json()["csrf"].as_str().unwrap().to_owned(),
    }
}

fn request(method: &str, path: &str, session: Option<&Session>, csrf: bool) -> Request<Body> {
    let mut b = Request::builder().method(method).uri(path);
    if let Some(s) = session {
        b = b.header(header::COOKIE, &s.cookie);
        if csrf {
            b = b.header("x-csrf-token", &s.csrf);
        }
    }
    if method == "POST" {
        let body = if path.contains("/state") {
            r#"{"state":"paused","reason":"lunch"}"#
        } else if path.contains("/monitor") {
            r#"{"phone":"1010","mode":"whisper"}"#
        } else if path.contains("/disposition") {
            r#"{"code":"sale"}"#
        } else {
            r#"{"score":80,"comment":"good"}"#
        };
        b.header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(body))
            .unwrap()
    } else {
        b.body(Body::empty()).unwrap()
    }
}

/// Every API route, with the roles that may use it.
const ROUTES: &[(&str, &str, &[&str])] = &[
    ("GET", "/api/me", &["ada", "sam", "rita", "root"]),
    ("GET", "/api/live", &["sam", "root"]),
    ("GET", "/api/events", &["sam", "root"]),
    (
        "GET",
        "/api/reports/queues?date=2026-11-30",
        &["sam", "root"],
    ),
    (
        "GET",
        "/api/reports/agents?date=2026-11-30&format=csv",
        &["sam", "root"],
    ),
    ("GET", "/api/agents/ada", &["ada", "sam", "root"]),
    ("POST", "/api/agents/bob/state", &["sam", "root"]),
    ("POST", "/api/agents/bob/monitor", &["sam", "root"]),
    (
        "GET",
        "/api/calls?date=2026-11-30",
        &["sam", "rita", "root"],
    ),
    ("GET", "/api/calls/7", &["sam", "rita", "root"]),
    ("GET", "/api/recordings?date=2026-11-30", &["rita"]),
    ("GET", "/api/recordings/7/audio", &["rita"]),
    ("GET", "/api/calls/7/reviews", &["rita"]),
    ("POST", "/api/calls/7/reviews", &["rita"]),
    ("POST", "/api/calls/7/disposition", &["ada", "sam", "root"]),
    ("GET", "/api/audit", &["root"]),
    ("POST", "/api/logout", &["ada", "sam", "rita", "root"]),
];

#[tokio::test]
async fn every_route_refuses_no_login_a_forged_cookie_and_the_wrong_role() {
    let f = fixture();
    let forged = Session {
        cookie: "switchboard_session=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA".into(),
        csrf: "x".into(),
    };
    for (method, path, allowed) in ROUTES {
        let r = send(&f.app, request(method, path, None, false)).await;
        assert_eq!(
            r.status,
            StatusCode::UNAUTHORIZED,
            "{method} {path} without a login"
        );
        assert!(
            r.json()["error"].is_string(),
            "{method} {path}: a JSON error"
        );
        let r = send(&f.app, request(method, path, Some(&forged), true)).await;
        assert_eq!(
            r.status,
            StatusCode::UNAUTHORIZED,
            "{method} {path} forged cookie"
        );
        for who in ["ada", "sam", "rita", "root"] {
            // A fresh session each time: logout ends the one it is sent with.
            let s = log_in(&f.app, who).await;
            let r = send(&f.app, request(method, path, Some(&s), true)).await;
            if allowed.contains(&who) {
                assert!(
                    r.status.is_success(),
                    "{method} {path} as {who}: {} {}",
                    r.status,
                    String::from_utf8_lossy(&r.body)
                );
                assert_eq!(r.headers[header::CACHE_CONTROL], "no-store", "{path}");
            } else {
                assert_eq!(r.status, StatusCode::FORBIDDEN, "{method} {path} as {who}");
            }
            if *method == "POST" && allowed.contains(&who) {
                let s = log_in(&f.app, who).await;
                let r = send(&f.app, request(method, path, Some(&s), false)).await;
                assert_eq!(
                    r.status,
                    StatusCode::FORBIDDEN,
                    "{method} {path} without CSRF"
                );
            }
        }
    }
    // An agent may change only their own state.
    let ada = log_in(&f.app, "ada").await;
    let r = send(
        &f.app,
        request("POST", "/api/agents/ada/state", Some(&ada), true),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    let changes = f.changes.lock().unwrap().clone();
    let last = changes.last().unwrap();
    assert_eq!((last.agent.as_str(), last.by.as_str()), ("ada", "ada"));
    assert_eq!(last.reason.as_deref(), Some("lunch"));
    // A supervisor's monitoring request reaches call control as one, with the phone to ring.
    let monitors: Vec<AgentChange> = changes
        .iter()
        .filter(|c| c.monitor.is_some())
        .cloned()
        .collect();
    assert!(!monitors.is_empty());
    let m = monitors[0].monitor.as_ref().unwrap();
    assert_eq!(
        (monitors[0].agent.as_str(), m.phone.as_str(), m.mode),
        ("bob", "1010", web::MonitorKind::Whisper)
    );
    // Supervisors' changes of unknown agents are 404.
    let sam = log_in(&f.app, "sam").await;
    let r = send(
        &f.app,
        request("POST", "/api/agents/nobody/state", Some(&sam), true),
    )
    .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    // Logged out: the session is gone.
    let r = send(&f.app, request("POST", "/api/logout", Some(&sam), true)).await;
    assert_eq!(r.status, StatusCode::OK);
    let r = send(&f.app, request("GET", "/api/live", Some(&sam), false)).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
}

fn disposition(session: &Session, call: u64, code: &str) -> Request<Body> {
    Request::post(format!("/api/calls/{call}/disposition"))
        .header(header::COOKIE, &session.cookie)
        .header("x-csrf-token", &session.csrf)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(serde_json::json!({ "code": code }).to_string()))
        .unwrap()
}

#[tokio::test]
async fn the_agent_who_took_a_call_gives_its_disposition_and_nobody_else_does() {
    let f = fixture();
    let ada = log_in(&f.app, "ada").await;
    let r = send(&f.app, disposition(&ada, 7, " follow-up ")).await;
    assert_eq!(
        r.status,
        StatusCode::OK,
        "{}",
        String::from_utf8_lossy(&r.body)
    );
    assert_eq!(r.json()["disposition"], "follow-up");
    let db = store::Store::open(&f.db).unwrap();
    assert_eq!(
        db.call(7).unwrap().unwrap().disposition.as_deref(),
        Some("follow-up")
    );
    assert!(db
        .audit_log(0, i64::MAX, 100)
        .unwrap()
        .iter()
        .any(|a| a.action == "disposition" && a.call_id == Some(7) && a.login == "ada"));
    // Another agent may not; a bad code, an unknown call get their answers.
    let ben = log_in(&f.app, "ben").await;
    let r = send(&f.app, disposition(&ben, 7, "sale")).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert!(r.json()["error"].as_str().unwrap().contains("did not take"));
    for bad in ["", "drop table;", &"x".repeat(65)] {
        let r = send(&f.app, disposition(&ada, 7, bad)).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{bad:?}");
    }
    let r = send(&f.app, disposition(&ada, 8, "sale")).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let db = store::Store::open(&f.db).unwrap();
    assert_eq!(
        db.call(7).unwrap().unwrap().disposition.as_deref(),
        Some("follow-up"),
        "refused requests changed nothing"
    );
}

#[tokio::test]
async fn an_agent_page_gets_only_its_own_phone_account() {
    let f = fixture();
    let ada = log_in(&f.app, "ada").await;
    let mut req = request("GET", "/api/phone", Some(&ada), false);
    req.headers_mut()
        .insert(header::HOST, "pbx.example.com:8080".parse().unwrap());
    let r = send(&f.app, req).await;
    assert_eq!(r.status, StatusCode::OK);
    let v = r.json();
    assert_eq!(v["ws_url"], "ws://pbx.example.com:8088");
    assert_eq!(v["uri"], "sip:1001@switchboard");
    assert_eq!(
        (v["user"].as_str(), v["password"].as_str()),
        (Some("1001"), Some("secret1001"))
    );
    assert_eq!(v["crm_url"], "https://crm.example.com/?phone={number}");
    assert_eq!(r.headers[header::CACHE_CONTROL], "no-store");
    // An agent without a SIP account, a supervisor, nobody logged in.
    let ben = log_in(&f.app, "ben").await;
    let r = send(&f.app, request("GET", "/api/phone", Some(&ben), false)).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let sam = log_in(&f.app, "sam").await;
    let r = send(&f.app, request("GET", "/api/phone", Some(&sam), false)).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let r = send(&f.app, request("GET", "/api/phone", None, false)).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    // The page and its scripts are served; the policy lets it open WebSockets.
    for path in ["/agent", "/assets/agent.js", "/assets/vendor/jssip.min.js"] {
        let r = send(&f.app, request("GET", path, None, false)).await;
        assert_eq!(r.status, StatusCode::OK, "{path}");
        let csp = r.headers[header::CONTENT_SECURITY_POLICY].to_str().unwrap();
        assert!(csp.contains("connect-src 'self' ws: wss:"), "{csp}");
    }
}

#[tokio::test]
async fn an_agent_reads_their_own_state_and_nobody_elses() {
    let f = fixture();
    let ada = log_in(&f.app, "ada").await;
    let r = send(&f.app, request("GET", "/api/agents/ada", Some(&ada), false)).await;
    assert_eq!(r.status, StatusCode::OK);
    let v = r.json();
    assert_eq!(
        (v["name"].as_str(), v["state"].as_str()),
        (Some("ada"), Some("not_ready"))
    );
    assert_eq!(v["reason"], "lunch");
    let ben = log_in(&f.app, "ben").await;
    let r = send(&f.app, request("GET", "/api/agents/ada", Some(&ben), false)).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let sam = log_in(&f.app, "sam").await;
    let r = send(
        &f.app,
        request("GET", "/api/agents/nobody", Some(&sam), false),
    )
    .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn changes_from_another_site_are_refused() {
    let f = fixture();
    let sam = log_in(&f.app, "sam").await;
    let mut req = request("POST", "/api/agents/bob/state", Some(&sam), true);
    req.headers_mut()
        .insert(header::ORIGIN, "https://evil.example".parse().unwrap());
    req.headers_mut()
        .insert(header::HOST, "127.0.0.1:8080".parse().unwrap());
    let r = send(&f.app, req).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert!(f.changes.lock().unwrap().is_empty());
}

#[tokio::test]
async fn wrong_passwords_are_slowed_and_say_nothing_about_which_logins_exist() {
    let f = fixture();
    let attempt = |login: &str, password: &str| {
        Request::post("/api/login")
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(
                serde_json::json!({ "login": login, "password": password }).to_string(),
            ))
            .unwrap()
    };
    let known = send(&f.app, attempt("sam", "guess")).await;
    let unknown = send(&f.app, attempt("nosuchlogin", "guess")).await;
    assert_eq!(known.status, StatusCode::UNAUTHORIZED);
    assert_eq!(known.body, unknown.body, "the same answer");
    for _ in 0..3 {
        send(&f.app, attempt("sam", "guess")).await;
    }
    // The fifth wrong password from this address: the next attempt waits, even with the
    // right password.
    let r = send(&f.app, attempt("sam", PASSWORD)).await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS, "{:?}", r.json());
    assert!(r.headers.contains_key(header::RETRY_AFTER));
    // Garbage is a 4xx, never a panic.
    let r = send(
        &f.app,
        Request::post("/api/login")
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from("{\"login\": 5"))
            .unwrap(),
    )
    .await;
    assert!(r.status.is_client_error(), "{}", r.status);
}

#[tokio::test]
async fn recordings_are_audited_and_reviews_kept() {
    let f = fixture();
    let rita = log_in(&f.app, "rita").await;
    let r = send(
        &f.app,
        request("GET", "/api/recordings?date=2026-11-30", Some(&rita), false),
    )
    .await;
    let calls = r.json()["calls"].as_array().unwrap().clone();
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0]["recording"]["sha256"], "ab".repeat(32));
    let r = send(
        &f.app,
        request("GET", "/api/recordings/7/audio", Some(&rita), false),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body, b"RIFF....WAVE");
    assert_eq!(r.headers[header::CONTENT_TYPE], "audio/wav");
    let r = send(
        &f.app,
        request("POST", "/api/calls/7/reviews", Some(&rita), true),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED);
    // A seek: the bytes asked for, audited like any playback.
    let mut seek = request("GET", "/api/recordings/7/audio", Some(&rita), false);
    seek.headers_mut()
        .insert(header::RANGE, "bytes=4-7".parse().unwrap());
    let r = send(&f.app, seek).await;
    assert_eq!(r.status, StatusCode::PARTIAL_CONTENT);
    assert_eq!(r.body, b"....");
    assert_eq!(r.headers[header::CONTENT_RANGE], "bytes 4-7/12");
    let mut past = request("GET", "/api/recordings/7/audio", Some(&rita), false);
    past.headers_mut()
        .insert(header::RANGE, "bytes=12-".parse().unwrap());
    let r = send(&f.app, past).await;
    assert_eq!(r.status, StatusCode::RANGE_NOT_SATISFIABLE);
    assert_eq!(r.headers[header::CONTENT_RANGE], "bytes */12");
    // A call that does not exist, a score out of range.
    let r = send(
        &f.app,
        request("POST", "/api/calls/99/reviews", Some(&rita), true),
    )
    .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let mut bad = request("POST", "/api/calls/7/reviews", Some(&rita), true);
    *bad.body_mut() = Body::from(r#"{"score":101}"#);
    assert_eq!(send(&f.app, bad).await.status, StatusCode::BAD_REQUEST);

    let db = store::Store::open_read_only(&f.db).unwrap();
    let reviews = db.reviews(7).unwrap();
    assert_eq!(reviews.len(), 1);
    assert_eq!(
        (reviews[0].reviewer.as_str(), reviews[0].score),
        ("rita", 80)
    );
    let audit = db.audit_log(0, i64::MAX, 100).unwrap();
    let lines: Vec<(&str, &str, Option<u64>)> = audit
        .iter()
        .map(|a| (a.login.as_str(), a.action.as_str(), a.call_id))
        .collect();
    assert_eq!(
        lines,
        [
            ("rita", "list_recordings", None),
            ("rita", "play_recording", Some(7)),
            ("rita", "review", Some(7)),
            ("rita", "play_recording", Some(7)),
        ]
    );
    assert!(audit[3].detail.ends_with("bytes 4-7"), "{:?}", audit[3]);
    // Nobody else gets the audio, and the refusals are not playbacks.
    for who in ["ada", "sam", "root"] {
        let s = log_in(&f.app, who).await;
        let r = send(
            &f.app,
            request("GET", "/api/recordings/7/audio", Some(&s), false),
        )
        .await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{who}");
    }
    assert_eq!(db.audit_log(0, i64::MAX, 100).unwrap().len(), 4);
}

#[tokio::test]
async fn pages_are_served_with_a_strict_policy_and_bad_input_gets_an_answer() {
    let f = fixture();
    for page in ["/login", "/wallboard", "/review", "/assets/app.js"] {
        let r = send(&f.app, request("GET", page, None, false)).await;
        assert_eq!(r.status, StatusCode::OK, "{page}");
        let csp = r.headers[header::CONTENT_SECURITY_POLICY].to_str().unwrap();
        assert!(csp.contains("default-src 'self'"), "{csp}");
        assert_eq!(r.headers[header::X_FRAME_OPTIONS], "DENY");
    }
    let sam = log_in(&f.app, "sam").await;
    for (path, want) in [
        (
            "/api/reports/queues?date=yesterday",
            StatusCode::BAD_REQUEST,
        ),
        ("/api/reports/queues?interval=7", StatusCode::BAD_REQUEST),
        ("/api/reports/weather", StatusCode::NOT_FOUND),
        ("/api/calls?date=2026-02-31x", StatusCode::BAD_REQUEST),
        ("/api/calls/notanumber", StatusCode::BAD_REQUEST),
        ("/api/calls/12345", StatusCode::NOT_FOUND),
        ("/nothing/here", StatusCode::NOT_FOUND),
    ] {
        let r = send(&f.app, request("GET", path, Some(&sam), false)).await;
        assert_eq!(
            r.status,
            want,
            "{path}: {}",
            String::from_utf8_lossy(&r.body)
        );
    }
    let r = send(
        &f.app,
        request(
            "GET",
            "/api/reports/queues?date=2026-11-30&format=csv",
            Some(&sam),
            false,
        ),
    )
    .await;
    assert!(
        String::from_utf8_lossy(&r.body).starts_with("start,queue,offered,"),
        "{}",
        String::from_utf8_lossy(&r.body)
    );
}
