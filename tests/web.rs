//! Supervisors and quality reviewers over real calls: SIPp callers, SIPp agent phones, the
//! server's JSON API, its metrics and queue log, and the wallboard and review pages in
//! headless Chromium.

mod common;

use std::process::Command;
use std::time::Duration;

use common::http::Web;
use common::{Server, ServerConfig, SippRun};
use sha2::{Digest, Sha256};

const PASSWORD: &str = "wallboard-test-password";

/// `support` (600, recorded) served by 1001, who answers; `backoffice` (602) served by 1002,
/// whose phone rings unanswered, with a 4 s maximum wait; `sales` (601) served by nobody.
/// Web logins: sam (supervisor), rita (reviewer), ada (agent 1001), root (admin).
fn center(http_port: u16) -> ServerConfig {
    let hash = common::password_hash(PASSWORD);
    let login = |name: &str, roles: &str, agent: &str| {
        format!("\n[logins.{name}]\npassword_hash = \"{hash}\"\nroles = [{roles}]\n{agent}")
    };
    ServerConfig {
        files: vec![
            (
                "queues.toml".into(),
                "[queues.support]\nnumber = \"600\"\nrecord = \"always\"\nring_timeout = 10\n\
                 auto_pause_after = 100\n\n\
                 [queues.backoffice]\nnumber = \"602\"\nring_timeout = 2\nmax_wait = 4\n\
                 auto_pause_after = 100\n\n\
                 [queues.vip]\nnumber = \"603\"\nmax_wait = 2\noverflow = \"queue:sales\"\n\n\
                 [queues.sales]\nnumber = \"601\"\n\
                 [queues.sales.wallboard]\nwait_warn = 5\nwait_alert = 10\n"
                    .into(),
            ),
            (
                "agents.toml".into(),
                "[agents.1001]\nuser = \"1001\"\nqueues = [\"support\"]\nlogin_on_start = true\n\n\
                 [agents.1002]\nuser = \"1002\"\nqueues = [\"backoffice\"]\nlogin_on_start = true\n"
                    .into(),
            ),
        ],
        extra_toml: format!(
            "[trunks.lab]\naddresses = [\"127.0.0.1\"]\nnumbers = [\"600\", \"601\", \"602\", \"603\"]\n\n\
             [http]\nbind = \"127.0.0.1:{http_port}\"\n"
        ),
        users_extra: [
            login("sam", "\"supervisor\"", ""),
            login("rita", "\"reviewer\"", ""),
            login("ada", "\"agent\"", "agent = \"1001\"\n"),
            login("root", "\"admin\"", ""),
        ]
        .concat(),
        ..ServerConfig::default()
    }
}

fn call(server: &Server, scenario: &str, number: &str, hold_ms: u32) -> SippRun {
    SippRun::new(server, scenario)
        .calls(1)
        .limit(1)
        .rate(1)
        .timeout_s(40)
        .arg("-s")
        .arg(number)
        .arg("-d")
        .arg(hold_ms.to_string())
        .media_port()
}

fn queue<'a>(board: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    board["queues"]
        .as_array()
        .unwrap()
        .iter()
        .find(|q| q["name"] == name)
        .unwrap_or_else(|| panic!("no queue {name} on {board}"))
}

fn agent<'a>(board: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    board["agents"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["name"] == name)
        .unwrap_or_else(|| panic!("no agent {name} on {board}"))
}

/// Run a step of tests/browser/web.mjs; `None` when no browser is installed here (CI installs
/// one, and there its absence fails the test).
fn browser(port: u16, step: &str, env: &[(&str, &str)]) -> Option<serde_json::Value> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser");
    if !common::browser_ready(step) {
        return None;
    }
    let out = Command::new("node")
        .arg("web.mjs")
        .arg(step)
        .current_dir(&dir)
        .env("BASE", format!("http://127.0.0.1:{port}"))
        .env("PASSWORD", PASSWORD)
        .envs(env.iter().copied())
        .output()
        .expect("node");
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text.lines().last().unwrap_or("");
    let v: serde_json::Value = serde_json::from_str(line).unwrap_or_else(|_| {
        panic!(
            "browser step {step} printed no result:\n{text}\n{}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    assert!(v.get("failure").is_none(), "browser step {step}: {v:#}");
    assert_eq!(
        v["errors"],
        serde_json::json!([]),
        "page errors in {step}: {v:#}"
    );
    Some(v)
}

#[test]
fn supervisors_and_reviewers_see_real_calls() {
    let http = common::free_port();
    let server = Server::start(&center(http));
    let qlog = server.dir().join("data/queue_log");
    let answering = common::agent_phones(&server, 1001..=1001, "agent_phone_answer.xml", 1, &[]);
    let silent = common::agent_phones(&server, 1002..=1002, "agent_no_answer.xml", 2, &[]);
    common::wait_agents_ready(&server, &[1001, 1002], Duration::from_secs(10));

    // Three customers: one answered and recorded, one who gives up on a queue nobody serves,
    // one whose agent never picks up until the queue's maximum wait sends them away.
    let answered = call(&server, "caller.xml", "600", 2000).spawn();
    let abandoned = call(&server, "caller.xml", "601", 1500).spawn();
    let timed_out = call(&server, "caller_wait_bye.xml", "602", 0).spawn();
    let overflowed = call(&server, "caller.xml", "603", 4000).spawn();
    for (what, run) in [
        ("answered", answered),
        ("abandoned", abandoned),
        ("timed out", timed_out),
        ("overflowed", overflowed),
    ] {
        let out = run.wait();
        assert_eq!(out.successful(), 1, "{what}: {}", out.diagnostics());
    }
    let _ = answering.wait();

    let sam = Web::log_in(http, "sam", PASSWORD);
    let rita = Web::log_in(http, "rita", PASSWORD);
    let root = Web::log_in(http, "root", PASSWORD);

    // The call records, through the API.
    let mut calls = serde_json::Value::Null;
    common::wait_until(Duration::from_secs(10), "four call records", || {
        calls = sam.get("/api/calls");
        calls["calls"].as_array().unwrap().len() == 4
    });
    let dialed = |n: &str| -> serde_json::Value {
        calls["calls"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["dialed"] == n)
            .unwrap_or_else(|| panic!("no call to {n} in {calls:#}"))
            .clone()
    };
    let support = dialed("600");
    assert_eq!(support["outcome"], "answered", "{support:#}");
    assert_eq!(support["agent"], "1001");
    assert_eq!(support["hung_up_by"], "caller");
    assert!(support["talk_s"].as_f64().unwrap() >= 1.5, "{support:#}");
    let sales = dialed("601");
    assert_eq!(sales["outcome"], "abandoned", "{sales:#}");
    assert_eq!(sales["queue"], "sales", "{sales:#}");
    // Overflowed after 2 s from vip to sales, where the caller gave up.
    let vip = dialed("603");
    assert_eq!(
        (&vip["queue"], &vip["overflowed_from"], &vip["outcome"]),
        (&"sales".into(), &"vip".into(), &"abandoned".into()),
        "{vip:#}"
    );
    let back = dialed("602");
    assert_eq!(back["outcome"], "timed_out", "{back:#}");
    let id = back["call_id"].as_u64().unwrap();
    let detail = sam.get(&format!("/api/calls/{id}"));
    let attempts = detail["attempts"].as_array().unwrap();
    assert!(
        !attempts.is_empty() && attempts.iter().all(|a| a["result"] == "no_answer"),
        "1002's phone rang unanswered: {detail:#}"
    );
    // Filters.
    let only = sam.get("/api/calls?outcome=abandoned");
    assert_eq!(only["calls"].as_array().unwrap().len(), 2);
    let only = sam.get("/api/calls?agent=1001");
    assert_eq!(only["calls"][0]["queue"], "support");

    // The live board and the interval report agree with what happened.
    let board = sam.get("/api/live");
    let q = queue(&board, "support");
    assert_eq!(q["today"]["answered"], 1, "{board:#}");
    assert_eq!(q["today"]["service_level"], 1.0, "{board:#}");
    assert_eq!(queue(&board, "sales")["today"]["abandon_rate"], 1.0);
    assert_eq!(queue(&board, "sales")["today"]["abandoned"], 2, "{board:#}");
    let v = &queue(&board, "vip")["today"];
    assert_eq!(
        (&v["offered"], &v["abandoned"]),
        (&1.into(), &0.into()),
        "{board:#}"
    );
    assert_eq!(
        queue(&board, "backoffice")["today"]["offered"],
        1,
        "{board:#}"
    );
    assert_eq!(agent(&board, "1001")["handled_today"], 1);
    let report = sam.get("/api/reports/queues?interval=60");
    let rows = report.as_array().unwrap();
    let offered: u64 = rows.iter().map(|r| r["offered"].as_u64().unwrap()).sum();
    // Four calls, one offered to two queues.
    assert_eq!(offered, 5, "{report:#}");
    let r = sam.request("GET", "/api/reports/agents?format=csv", None);
    let csv = String::from_utf8_lossy(&r.body);
    assert!(csv.lines().any(|l| l.contains(",1001,1,")), "{csv}");

    // The recording: listed for the reviewer with its SHA-256, which matches what is played.
    let mut rec = serde_json::Value::Null;
    common::wait_until(Duration::from_secs(10), "the recording registered", || {
        rec = rita.get("/api/recordings");
        !rec["calls"].as_array().unwrap().is_empty()
    });
    let recorded = &rec["calls"][0];
    let rec_id = recorded["call_id"].as_u64().unwrap();
    assert_eq!(rec_id, support["call_id"].as_u64().unwrap());
    let sha = recorded["recording"]["sha256"].as_str().unwrap().to_owned();
    let audio = rita.request("GET", &format!("/api/recordings/{rec_id}/audio"), None);
    assert_eq!(audio.status, 200);
    assert_eq!(hex(&Sha256::digest(&audio.body)), sha);
    assert_eq!(&audio.body[..4], b"RIFF");
    // Supervisors and agents do not get it.
    let ada = Web::log_in(http, "ada", PASSWORD);
    for w in [&sam, &ada] {
        let r = w.request("GET", &format!("/api/recordings/{rec_id}/audio"), None);
        assert_eq!(r.status, 403);
    }

    // A supervisor pauses an agent with a reason: call control, the queue log, the agent
    // state history and the board all have it.
    let r = sam.request(
        "POST",
        "/api/agents/1002/state",
        Some(serde_json::json!({ "state": "paused", "reason": "coaching" })),
    );
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    common::wait_until(Duration::from_secs(5), "the pause on the board", || {
        let b = sam.get("/api/live");
        agent(&b, "1002")["reason"] == "coaching"
    });
    common::wait_until(Duration::from_secs(5), "PAUSE in the queue log", || {
        std::fs::read_to_string(&qlog)
            .unwrap_or_default()
            .lines()
            .any(|l| l.ends_with("|1002|PAUSE|coaching"))
    });
    let qlines = std::fs::read_to_string(&qlog).unwrap();
    let vip_id = vip["call_id"].as_u64().unwrap();
    for want in [
        format!("|{vip_id}|vip|NONE|EXITWITHTIMEOUT|"),
        format!("|{vip_id}|sales|NONE|ENTERQUEUE|"),
        format!("|{vip_id}|sales|NONE|ABANDON|"),
    ] {
        assert!(qlines.contains(&want), "{want} not in\n{qlines}");
    }
    let r = sam.request(
        "POST",
        "/api/agents/nobody/state",
        Some(serde_json::json!({ "state": "ready" })),
    );
    assert_eq!(r.status, 404);

    // Metrics: queue gauges, no identities.
    let r = common::http::get(http, "/metrics");
    let text = String::from_utf8_lossy(&r.body);
    for line in [
        "switchboard_queue_waiting{queue=\"sales\"} 0",
        "switchboard_queue_service_level{queue=\"support\"} 1.0",
        "switchboard_calls_total{queue=\"backoffice\",outcome=\"timed_out\"} 1",
    ] {
        assert!(text.lines().any(|l| l == line), "{line:?} not in\n{text}");
    }
    assert!(
        !text
            .lines()
            .any(|l| l.contains('{') && (l.contains("1001") || l.contains("coaching"))),
        "identities in labels:\n{text}"
    );

    // In the browser: the wallboard shows a caller waiting and then abandoning while it is
    // open; the reviewer plays the recording and scores it; the agent is refused.
    let waiting = call(&server, "caller.xml", "601", 12_000).spawn();
    let shot = server.dir().join("wallboard.png");
    if let Some(v) = browser(http, "wallboard", &[("SCREENSHOT", shot.to_str().unwrap())]) {
        assert!(v["agents"].as_u64().unwrap() >= 2, "{v:#}");
        assert_eq!(v["live"], "live", "{v:#}");
        assert_eq!(v["support_answered"], "1", "{v:#}");
        assert_eq!(v["abandon_rate"], "100%", "{v:#}");
        if let Some(dest) = std::env::var_os("SWITCHBOARD_SCREENSHOT") {
            std::fs::copy(&shot, dest).unwrap();
        }
    }
    let out = waiting.wait();
    assert_eq!(out.successful(), 1, "{}", out.diagnostics());
    if let Some(v) = browser(http, "review", &[]) {
        assert_eq!(v["rows"], 1, "{v:#}");
        assert!(v["duration"].as_f64().unwrap() >= 1.5, "{v:#}");
        assert!(v["played_to"].as_f64().unwrap() > 0.2, "{v:#}");
        assert_eq!(v["media_error"], serde_json::Value::Null);
        assert!(v["sha"].as_str().unwrap().contains(&sha), "{v:#}");
        assert!(
            v["reviews"][0].as_str().unwrap().contains("rita: 85"),
            "{v:#}"
        );
    }
    let id = rec_id.to_string();
    if let Some(v) = browser(http, "agent", &[("CALL_ID", &id)]) {
        assert_eq!(v["audio_status"], 403, "{v:#}");
        assert_eq!(v["rows"], 0, "{v:#}");
        assert!(v["message"]
            .as_str()
            .unwrap()
            .contains("not a quality reviewer"));
    }

    // The audit log (admins): every listing and playback by the reviewer, the pause by the
    // supervisor.
    let audit = root.get("/api/audit");
    let actions: Vec<(String, String)> = audit["audit"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a["login"].as_str().unwrap().to_owned(),
                a["action"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    for want in [
        ("rita", "list_recordings"),
        ("rita", "play_recording"),
        ("sam", "agent_state"),
    ] {
        assert!(
            actions.contains(&(want.0.to_owned(), want.1.to_owned())),
            "{want:?} not in {actions:?}"
        );
    }
    assert!(
        !actions
            .iter()
            .any(|(who, what)| who != "rita" && what == "play_recording"),
        "{actions:?}"
    );
    drop(silent);
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
