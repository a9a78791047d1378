//! The routes: pages, the JSON API, the event stream and `/metrics`.
//!
//! | route | who |
//! |---|---|
//! | `POST /api/login`, `POST /api/logout`, `GET /api/me` | anyone / a session |
//! | `GET /api/live`, `GET /api/events` (server-sent events) | supervisor, admin |
//! | `GET /api/reports/queues`, `GET /api/reports/agents` (`?date=&interval=&format=csv`) | supervisor, admin |
//! | `POST /api/agents/{agent}/state` | supervisor, admin; an agent for themself |
//! | `GET /api/calls`, `GET /api/calls/{id}` | supervisor, reviewer, admin |
//! | `GET /api/recordings`, `GET /api/recordings/{id}/audio`, `GET/POST /api/calls/{id}/reviews` | reviewer |
//! | `GET /api/audit` | admin |
//! | `GET /metrics` | anyone who can reach the address (Prometheus scrapes it) |
//!
//! A missing or expired session is 401, a wrong role or a missing CSRF token 403. Listing
//! recordings, playing one and saving a review are written to the audit log before the answer
//! is sent; if the audit log cannot be written, the answer is 503 and nothing is shown.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::extract::{ConnectInfo, Path as UrlPath, Query, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;
use store::report::{parse_date, Table, DAY_MS};
use store::{AuditRow, CallFilter, ReviewRow, Store};

use crate::auth::{Logins, Role, Session, Sessions, Throttle};
use crate::live::Live;
use crate::metrics::{Metrics, Sampler};

/// A state a supervisor (or the agent) asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RequestedState {
    /// Take calls.
    Ready,
    /// Take no calls (with a reason).
    Paused,
    /// Log out of the queues.
    LoggedOut,
}

/// A change of an agent's state asked for over the API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentChange {
    /// The agent's name.
    pub agent: String,
    /// The new state.
    pub state: RequestedState,
    /// The reason code (pauses).
    pub reason: Option<String>,
    /// Who asked.
    pub by: String,
    /// Instead of a state change: ring this phone to monitor the agent's call.
    pub monitor: Option<MonitorAsk>,
}

/// Monitoring of an agent's call asked over the API: the supervisor's phone is rung.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct MonitorAsk {
    /// The supervisor's SIP user (whose registered phone rings).
    pub phone: String,
    /// How they monitor.
    pub mode: MonitorKind,
}

/// Listen, whisper or barge.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MonitorKind {
    /// Hear both parties; nobody hears the supervisor.
    Listen,
    /// The agent hears the supervisor; the caller does not.
    Whisper,
    /// Everyone hears everyone.
    Barge,
}

/// Carries an [`AgentChange`] to call control; the error is shown to the user.
pub type AgentControl = Arc<
    dyn Fn(
            AgentChange,
        )
            -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), String>> + Send>>
        + Send
        + Sync,
>;

/// What the web side is given to work with.
pub struct WebConfig {
    /// The database of call records (`None`: storage is off). For PostgreSQL each request
    /// that needs it opens a connection of its own (no pool yet).
    pub database: Option<store::Location>,
    /// Where recordings are.
    pub recordings: Option<PathBuf>,
    /// Send cookies with `Secure`.
    pub secure_cookies: bool,
    /// The logins.
    pub logins: Logins,
    /// The agent page's phone: where browsers reach SIP and each agent's account.
    pub phones: Phones,
}

/// What the agent page needs to register a browser as an agent's phone.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Phones {
    /// The SIP WebSocket listener's port (`None`: no browser phones).
    pub ws_port: Option<u16>,
    /// The secure WebSocket listener's port: preferred when there is one.
    pub wss_port: Option<u16>,
    /// The URL browsers open for SIP (`wss://pbx.example.com:8089`), when they must not
    /// derive it from the page's host and `ws_port` (a TLS proxy in front).
    pub ws_url: Option<String>,
    /// The digest realm.
    pub realm: String,
    /// The domain of SIP URIs (`sip:1001@domain`).
    pub domain: String,
    /// A link shown beside an incoming call: `{number}` and `{call}` are replaced.
    pub crm_url: Option<String>,
    /// Each agent's (by name) phone account.
    pub accounts: HashMap<String, PhoneAccount>,
}

/// An agent's SIP account, as their browser phone uses it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PhoneAccount {
    /// The SIP user.
    pub user: String,
    /// The password, when the account keeps one.
    pub password: Option<String>,
    /// MD5 HA1 of user, realm and password, when only hashes are kept.
    pub ha1: Option<String>,
    /// What callees see as the name.
    pub display_name: String,
}

/// The web side's state, shared by every request.
pub struct App {
    metrics: Arc<Metrics>,
    sampler: Sampler,
    live: Arc<Live>,
    agents: AgentControl,
    logins: RwLock<Arc<Logins>>,
    sessions: Sessions,
    throttle: Mutex<Throttle>,
    /// Password checks running at once (each Argon2 check takes 19 MiB and tens of ms).
    hashing: tokio::sync::Semaphore,
    database: Option<store::Location>,
    recordings: Option<PathBuf>,
    secure_cookies: bool,
    phones: RwLock<Arc<Phones>>,
}

impl std::fmt::Debug for App {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("App")
            .field("database", &self.database)
            .field("recordings", &self.recordings)
            .finish_non_exhaustive()
    }
}

impl App {
    /// The web side.
    pub fn new(
        cfg: WebConfig,
        metrics: Arc<Metrics>,
        sampler: Sampler,
        live: Arc<Live>,
        agents: AgentControl,
    ) -> Arc<App> {
        Arc::new(App {
            metrics,
            sampler,
            live,
            agents,
            logins: RwLock::new(Arc::new(cfg.logins)),
            sessions: Sessions::default(),
            throttle: Mutex::new(Throttle::default()),
            hashing: tokio::sync::Semaphore::new(4),
            database: cfg.database,
            recordings: cfg.recordings,
            secure_cookies: cfg.secure_cookies,
            phones: RwLock::new(Arc::new(cfg.phones)),
        })
    }

    /// New phone accounts (a reload of `users.toml` or `agents.toml`).
    pub fn set_phones(&self, phones: Phones) {
        *self.phones.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(phones);
    }

    /// New logins (a reload of `users.toml`): sessions of removed logins, or of logins whose
    /// roles changed, end.
    pub fn set_logins(&self, logins: Logins) {
        self.sessions.retain_valid(&logins);
        *self.logins.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(logins);
    }

    fn logins(&self) -> Arc<Logins> {
        self.logins
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

/// An answer that is not a success: a status and a sentence for the user.
#[derive(Debug)]
pub(crate) struct Refusal {
    status: StatusCode,
    message: String,
    retry_after: Option<Duration>,
}

fn refuse(status: StatusCode, message: impl Into<String>) -> Refusal {
    Refusal {
        status,
        message: message.into(),
        retry_after: None,
    }
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        let mut r = (self.status, Json(json!({ "error": self.message }))).into_response();
        if let Some(wait) = self.retry_after {
            let secs = wait.as_secs().max(1).to_string();
            if let Ok(v) = HeaderValue::from_str(&secs) {
                r.headers_mut().insert(header::RETRY_AFTER, v);
            }
        }
        r
    }
}

type Answer = Result<Response, Refusal>;

const COOKIE: &str = "switchboard_session";

fn cookie_token(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == COOKIE)
        .map(|(_, v)| v.to_owned())
}

/// The session of the request, if it needs one of `roles` (empty: any logged-in user).
fn session(app: &App, headers: &HeaderMap, roles: &[Role]) -> Result<Session, Refusal> {
    let s = cookie_token(headers)
        .and_then(|t| app.sessions.get(&t, Instant::now()))
        .ok_or_else(|| refuse(StatusCode::UNAUTHORIZED, "log in first"))?;
    if !roles.is_empty() && !s.has_any(roles) {
        return Err(refuse(
            StatusCode::FORBIDDEN,
            format!("{} may not do this", s.login),
        ));
    }
    Ok(s)
}

/// A change: the session must send its CSRF token.
fn change(app: &App, headers: &HeaderMap, roles: &[Role]) -> Result<Session, Refusal> {
    let s = session(app, headers, roles)?;
    let sent = headers
        .get("x-csrf-token")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !bool::from(subtle::ConstantTimeEq::ct_eq(
        sent.as_bytes(),
        s.csrf.as_bytes(),
    )) {
        return Err(refuse(
            StatusCode::FORBIDDEN,
            "missing or wrong X-CSRF-Token header",
        ));
    }
    Ok(s)
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Run database work off the async workers.
async fn with_store<T: Send + 'static>(
    app: &App,
    write: bool,
    f: impl FnOnce(&mut Store) -> Result<T, store::StoreError> + Send + 'static,
) -> Result<T, Refusal> {
    let Some(location) = app.database.clone() else {
        return Err(refuse(
            StatusCode::SERVICE_UNAVAILABLE,
            "call records are off on this server ([storage] enabled = false)",
        ));
    };
    let r = tokio::task::spawn_blocking(move || {
        let mut db = if write {
            location.open()?
        } else {
            location.open_read_only()?
        };
        f(&mut db)
    })
    .await;
    match r {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => {
            tracing::error!(error = %e, "call records not available");
            Err(refuse(
                StatusCode::SERVICE_UNAVAILABLE,
                "the call records cannot be read right now",
            ))
        }
        Err(_) => Err(refuse(StatusCode::INTERNAL_SERVER_ERROR, "internal error")),
    }
}

async fn audit(
    app: &App,
    s: &Session,
    action: &str,
    call_id: Option<u64>,
    detail: String,
) -> Result<(), Refusal> {
    let row = AuditRow {
        at_ms: now_ms(),
        login: s.login.clone(),
        action: action.to_owned(),
        call_id,
        detail,
    };
    with_store(app, true, move |db| db.audit(&row)).await
}

// ---- login ----

#[derive(Deserialize)]
struct LoginForm {
    login: String,
    password: String,
}

fn me(s: &Session) -> serde_json::Value {
    json!({ "login": s.login, "roles": s.roles, "agent": s.agent, "csrf": s.csrf })
}

async fn login(
    State(app): State<Arc<App>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Json(form): Json<LoginForm>,
) -> Answer {
    let ip: IpAddr = peer.ip();
    let now = Instant::now();
    if form.login.len() > 200 || form.password.len() > 1024 {
        return Err(refuse(
            StatusCode::BAD_REQUEST,
            "login or password too long",
        ));
    }
    if let Some(wait) =
        app.throttle
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .wait(ip, &form.login, now)
    {
        return Err(Refusal {
            retry_after: Some(wait),
            ..refuse(
                StatusCode::TOO_MANY_REQUESTS,
                "too many wrong passwords: try again later",
            )
        });
    }
    // A flood of logins waits here instead of taking the memory of a hash each.
    let Ok(_permit) = app.hashing.acquire().await else {
        return Err(refuse(StatusCode::SERVICE_UNAVAILABLE, "shutting down"));
    };
    let logins = app.logins();
    let (name, pw) = (form.login.clone(), form.password);
    let found = tokio::task::spawn_blocking(move || logins.check(&name, &pw).cloned())
        .await
        .ok()
        .flatten();
    let mut throttle = app.throttle.lock().unwrap_or_else(|e| e.into_inner());
    let Some(l) = found else {
        throttle.failed(ip, &form.login, now);
        tracing::warn!(%ip, "web login refused");
        return Err(refuse(StatusCode::UNAUTHORIZED, "wrong login or password"));
    };
    throttle.succeeded(ip, &form.login);
    drop(throttle);
    let (token, s) = app.sessions.start(&l, now);
    tracing::info!(login = %s.login, "web login");
    let secure = if app.secure_cookies { "; Secure" } else { "" };
    let cookie = format!("{COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict{secure}");
    let mut r = Json(me(&s)).into_response();
    r.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_str(&cookie)
            .map_err(|_| refuse(StatusCode::INTERNAL_SERVER_ERROR, "cookie"))?,
    );
    Ok(r)
}

async fn logout(State(app): State<Arc<App>>, headers: HeaderMap) -> Answer {
    change(&app, &headers, &[])?;
    if let Some(t) = cookie_token(&headers) {
        app.sessions.end(&t);
    }
    let secure = if app.secure_cookies { "; Secure" } else { "" };
    let cookie = format!("{COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0{secure}");
    let mut r = Json(json!({ "ok": true })).into_response();
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        r.headers_mut().insert(header::SET_COOKIE, v);
    }
    Ok(r)
}

async fn whoami(State(app): State<Arc<App>>, headers: HeaderMap) -> Answer {
    let s = session(&app, &headers, &[])?;
    Ok(Json(me(&s)).into_response())
}

// ---- the agent page's phone ----

/// The logged-in agent's phone account and where to reach SIP: only the agent's own (the
/// page registers the browser with it).
async fn phone(State(app): State<Arc<App>>, headers: HeaderMap) -> Answer {
    let s = session(&app, &headers, &[Role::Agent])?;
    let Some(agent) = s.agent.clone() else {
        return Err(refuse(
            StatusCode::FORBIDDEN,
            format!("{} is not tied to an agent", s.login),
        ));
    };
    let phones = app.phones.read().unwrap_or_else(|e| e.into_inner()).clone();
    let Some(acct) = phones.accounts.get(&agent) else {
        return Err(refuse(
            StatusCode::NOT_FOUND,
            format!("agent {agent} has no SIP account"),
        ));
    };
    let listener = phones
        .wss_port
        .map(|p| ("wss", p))
        .or(phones.ws_port.map(|p| ("ws", p)));
    let ws_url = match (&phones.ws_url, listener) {
        (Some(u), _) => u.clone(),
        (None, Some((scheme, port))) => {
            // The host the browser used for this page, with the WebSocket port.
            let host = headers
                .get(header::HOST)
                .and_then(|h| h.to_str().ok())
                .unwrap_or("127.0.0.1");
            let name = match host.rsplit_once(':') {
                Some((n, p)) if p.bytes().all(|b| b.is_ascii_digit()) => n,
                _ => host,
            };
            format!("{scheme}://{name}:{port}")
        }
        (None, None) => {
            return Err(refuse(
                StatusCode::SERVICE_UNAVAILABLE,
                "browser phones are off: set [sip] ws in switchboard.toml",
            ))
        }
    };
    tracing::info!(login = %s.login, agent = %agent, "agent page phone provisioned");
    Ok(Json(json!({
        "ws_url": ws_url,
        "uri": format!("sip:{}@{}", acct.user, phones.domain),
        "user": acct.user,
        "password": acct.password,
        "ha1": acct.ha1,
        "realm": phones.realm,
        "display_name": acct.display_name,
        "crm_url": phones.crm_url,
    }))
    .into_response())
}

// ---- live ----

const WATCHERS: &[Role] = &[Role::Supervisor, Role::Admin];

async fn live(State(app): State<Arc<App>>, headers: HeaderMap) -> Answer {
    session(&app, &headers, WATCHERS)?;
    // The board as it is now (the event stream publishes it at most every 250 ms).
    Ok(Json(app.live.snapshot()).into_response())
}

async fn events(State(app): State<Arc<App>>, headers: HeaderMap) -> Answer {
    session(&app, &headers, WATCHERS)?;
    let rx = app.live.subscribe();
    // The current board first, then every new one.
    let stream = futures_util::stream::unfold((rx, true), |(mut rx, first)| async move {
        if !first && rx.changed().await.is_err() {
            return None;
        }
        let body = rx.borrow_and_update().clone();
        let ev = Event::default().event("board").data(body.as_ref());
        Some((Ok::<_, std::convert::Infallible>(ev), (rx, false)))
    });
    Ok(Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response())
}

#[derive(Deserialize)]
struct StateForm {
    state: RequestedState,
    reason: Option<String>,
}

/// One agent as the board shows them: for the agent themself (their phone's screen) and
/// for supervisors.
async fn agent_view(
    State(app): State<Arc<App>>,
    UrlPath(agent): UrlPath<String>,
    headers: HeaderMap,
) -> Answer {
    let s = session(
        &app,
        &headers,
        &[Role::Supervisor, Role::Admin, Role::Agent],
    )?;
    if !s.has_any(WATCHERS) && s.agent.as_deref() != Some(agent.as_str()) {
        return Err(refuse(
            StatusCode::FORBIDDEN,
            format!("{} may see only their own state", s.login),
        ));
    }
    match app
        .live
        .snapshot()
        .agents
        .into_iter()
        .find(|a| a.name == agent)
    {
        Some(a) => Ok(Json(a).into_response()),
        None => Err(refuse(StatusCode::NOT_FOUND, format!("no agent {agent:?}"))),
    }
}

async fn agent_state(
    State(app): State<Arc<App>>,
    UrlPath(agent): UrlPath<String>,
    headers: HeaderMap,
    Json(form): Json<StateForm>,
) -> Answer {
    let s = change(
        &app,
        &headers,
        &[Role::Supervisor, Role::Admin, Role::Agent],
    )?;
    if !s.has_any(WATCHERS) && s.agent.as_deref() != Some(agent.as_str()) {
        return Err(refuse(
            StatusCode::FORBIDDEN,
            format!("{} may change only their own state", s.login),
        ));
    }
    let reason = form
        .reason
        .map(|r| r.trim().to_owned())
        .filter(|r| !r.is_empty());
    if let Some(r) = &reason {
        if !is_label(r) {
            return Err(refuse(
                StatusCode::BAD_REQUEST,
                "reason: up to 64 letters, digits, spaces, - and _",
            ));
        }
    }
    if form.state == RequestedState::Paused && reason.is_none() {
        return Err(refuse(StatusCode::BAD_REQUEST, "a pause needs a reason"));
    }
    let detail = json!({ "agent": agent, "state": form.state, "reason": reason }).to_string();
    let change = AgentChange {
        agent: agent.clone(),
        state: form.state,
        reason,
        by: s.login.clone(),
        monitor: None,
    };
    match (app.agents)(change).await {
        Ok(()) => {
            // Best effort: the change is made; a failed audit write is logged by with_store.
            let _ = audit(&app, &s, "agent_state", None, detail).await;
            Ok(Json(json!({ "ok": true })).into_response())
        }
        Err(e) if e.starts_with("no agent") => Err(refuse(StatusCode::NOT_FOUND, e)),
        Err(e) => Err(refuse(StatusCode::CONFLICT, e)),
    }
}

/// `POST /api/agents/{agent}/monitor` `{"phone": "1010", "mode": "whisper"}`: ring the
/// supervisor's phone to monitor the agent's call (supervisors and admins; audited).
async fn agent_monitor(
    State(app): State<Arc<App>>,
    UrlPath(agent): UrlPath<String>,
    headers: HeaderMap,
    Json(ask): Json<MonitorAsk>,
) -> Answer {
    let s = change(&app, &headers, &[Role::Supervisor, Role::Admin])?;
    if ask.phone.is_empty()
        || !ask
            .phone
            .chars()
            .all(|c| c.is_alphanumeric() || "-_.".contains(c))
    {
        return Err(refuse(
            StatusCode::BAD_REQUEST,
            "phone: a SIP user such as \"1010\"",
        ));
    }
    let detail = json!({ "agent": agent, "phone": ask.phone, "mode": ask.mode }).to_string();
    let change = AgentChange {
        agent: agent.clone(),
        state: RequestedState::Ready,
        reason: None,
        by: s.login.clone(),
        monitor: Some(ask),
    };
    match (app.agents)(change).await {
        Ok(()) => {
            let _ = audit(&app, &s, "monitor", None, detail).await;
            Ok(Json(json!({ "ok": true })).into_response())
        }
        Err(e) if e.starts_with("no agent") => Err(refuse(StatusCode::NOT_FOUND, e)),
        Err(e) if e.contains("may not monitor") => Err(refuse(StatusCode::FORBIDDEN, e)),
        Err(e) => Err(refuse(StatusCode::CONFLICT, e)),
    }
}

// ---- calls ----

#[derive(Deserialize, Default)]
struct CallQuery {
    date: Option<String>,
    from: Option<String>,
    to: Option<String>,
    queue: Option<String>,
    agent: Option<String>,
    outcome: Option<String>,
    limit: Option<u32>,
}

impl CallQuery {
    fn filter(self, recorded: bool) -> Result<CallFilter, Refusal> {
        let day = |d: &str| parse_date(d).map_err(|e| refuse(StatusCode::BAD_REQUEST, e));
        let (from_ms, to_ms) = match (&self.date, &self.from, &self.to) {
            (Some(d), None, None) => {
                let f = day(d)?;
                (f, f + DAY_MS)
            }
            (None, from, to) => (
                from.as_deref().map(day).transpose()?.unwrap_or(0),
                to.as_deref()
                    .map(day)
                    .transpose()?
                    .map_or(i64::MAX, |t| t + DAY_MS),
            ),
            _ => {
                return Err(refuse(
                    StatusCode::BAD_REQUEST,
                    "give either date or from/to",
                ))
            }
        };
        let blank = |v: Option<String>| v.filter(|v| !v.is_empty());
        Ok(CallFilter {
            from_ms,
            to_ms,
            queue: blank(self.queue),
            agent: blank(self.agent),
            outcome: blank(self.outcome),
            recorded,
            limit: self.limit.unwrap_or(100).min(1000),
        })
    }
}

fn call_json(c: &store::CallRow, recording: Option<&store::RecordingRow>) -> serde_json::Value {
    json!({
        "call_id": c.call_id,
        "sip_call_id": c.sip_call_id,
        "caller": c.caller,
        "caller_name": c.caller_name,
        "dialed": c.dialed,
        "source": c.source,
        "queue": c.queue,
        "agent": c.agent,
        "arrived_ms": c.arrived_ms,
        "queued_ms": c.queued_ms,
        "first_offer_ms": c.first_offer_ms,
        "answered_ms": c.answered_ms,
        "ended_ms": c.ended_ms,
        "wait_s": c.wait_ms as f64 / 1000.0,
        "talk_s": c.talk_ms as f64 / 1000.0,
        "hold_s": c.hold_ms as f64 / 1000.0,
        "wrap_up_s": c.wrap_up_ms as f64 / 1000.0,
        "outcome": c.outcome,
        "hung_up_by": c.hung_up_by,
        "reason": c.reason,
        "overflowed_from": c.overflowed_from,
        "disposition": c.disposition,
        "satisfaction": c.satisfaction,
        "variables": c
            .variables
            .iter()
            .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
            .collect::<serde_json::Map<_, _>>(),
        "segments": c.segments.iter().map(|s| json!({
            "agent": s.agent,
            "started_ms": s.started_ms,
            "ended_ms": s.ended_ms,
            "talk_s": (s.ended_ms - s.started_ms) as f64 / 1000.0,
            "end": s.end,
        })).collect::<Vec<_>>(),
        "recording": recording.map(|r| json!({
            "file": r.file,
            "sha256": r.sha256,
            "bytes": r.bytes,
            "duration_s": r.duration_ms as f64 / 1000.0,
        })),
        "attempts": c.attempts.iter().map(|a| json!({
            "agent": a.agent,
            "contact": a.contact,
            "started_ms": a.started_ms,
            "ended_ms": a.ended_ms,
            "result": a.result,
        })).collect::<Vec<_>>(),
    })
}

const CALL_READERS: &[Role] = &[Role::Supervisor, Role::Reviewer, Role::Admin];

async fn calls(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Query(q): Query<CallQuery>,
) -> Answer {
    session(&app, &headers, CALL_READERS)?;
    let filter = q.filter(false)?;
    let found = with_store(&app, false, move |db| db.search_calls(&filter)).await?;
    let list: Vec<_> = found
        .iter()
        .map(|f| call_json(&f.call, f.recording.as_ref()))
        .collect();
    Ok(Json(json!({ "calls": list })).into_response())
}

async fn call(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    UrlPath(id): UrlPath<u64>,
) -> Answer {
    session(&app, &headers, CALL_READERS)?;
    let found = with_store(&app, false, move |db| {
        Ok(match db.call(id)? {
            Some(c) => Some((c, db.recording(id)?)),
            None => None,
        })
    })
    .await?;
    match found {
        Some((c, r)) => Ok(Json(call_json(&c, r.as_ref())).into_response()),
        None => Err(refuse(StatusCode::NOT_FOUND, format!("no call {id}"))),
    }
}

// ---- reports ----

#[derive(Deserialize)]
struct ReportQuery {
    date: Option<String>,
    interval: Option<u32>,
    format: Option<String>,
    service_level: Option<u32>,
}

async fn report(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    UrlPath(by): UrlPath<String>,
    Query(q): Query<ReportQuery>,
) -> Answer {
    session(&app, &headers, WATCHERS)?;
    let interval = q.interval.unwrap_or(30);
    if ![15, 30, 60].contains(&interval) {
        return Err(refuse(StatusCode::BAD_REQUEST, "interval: 15, 30 or 60"));
    }
    let from = match &q.date {
        Some(d) => parse_date(d).map_err(|e| refuse(StatusCode::BAD_REQUEST, e))?,
        None => now_ms() - now_ms().rem_euclid(DAY_MS),
    };
    let slot = i64::from(interval) * 60_000;
    let sl = i64::from(q.service_level.unwrap_or(20)) * 1000;
    let table: Table = match by.as_str() {
        "queues" => {
            with_store(&app, false, move |db| {
                Ok(Table::queues(&db.queue_intervals(
                    from,
                    from + DAY_MS,
                    slot,
                    sl,
                )?))
            })
            .await?
        }
        "agents" => {
            with_store(&app, false, move |db| {
                Ok(Table::agents(
                    &db.agent_intervals(from, from + DAY_MS, slot)?,
                    &db.agent_times(from, from + DAY_MS, slot, now_ms())?,
                ))
            })
            .await?
        }
        _ => return Err(refuse(StatusCode::NOT_FOUND, "reports: queues or agents")),
    };
    Ok(match q.format.as_deref() {
        None | Some("json") => Json(table.json()).into_response(),
        Some("csv") => (
            [
                (header::CONTENT_TYPE, "text/csv; charset=utf-8"),
                (
                    header::CONTENT_DISPOSITION,
                    "attachment; filename=\"report.csv\"",
                ),
            ],
            table.csv(),
        )
            .into_response(),
        Some(_) => return Err(refuse(StatusCode::BAD_REQUEST, "format: json or csv")),
    })
}

// ---- recordings and reviews ----

const REVIEWERS: &[Role] = &[Role::Reviewer];

async fn recordings(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Query(q): Query<CallQuery>,
) -> Answer {
    let s = session(&app, &headers, REVIEWERS)?;
    let filter = q.filter(true)?;
    let detail = format!(
        "from={} to={} queue={} agent={} outcome={}",
        filter.from_ms,
        filter.to_ms,
        filter.queue.as_deref().unwrap_or("*"),
        filter.agent.as_deref().unwrap_or("*"),
        filter.outcome.as_deref().unwrap_or("*")
    );
    audit(&app, &s, "list_recordings", None, detail).await?;
    let found = with_store(&app, false, move |db| db.search_calls(&filter)).await?;
    let list: Vec<_> = found
        .iter()
        .map(|f| call_json(&f.call, f.recording.as_ref()))
        .collect();
    Ok(Json(json!({ "calls": list })).into_response())
}

/// `file` under `dir`, refusing anything that would leave it.
fn inside(dir: &Path, file: &str) -> Option<PathBuf> {
    let rel = Path::new(file);
    if rel.is_absolute()
        || rel
            .components()
            .any(|c| !matches!(c, std::path::Component::Normal(_)))
    {
        return None;
    }
    Some(dir.join(rel))
}

async fn recording_audio(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    UrlPath(id): UrlPath<u64>,
) -> Answer {
    let s = session(&app, &headers, REVIEWERS)?;
    let rec = with_store(&app, false, move |db| db.recording(id)).await?;
    let Some(rec) = rec else {
        return Err(refuse(
            StatusCode::NOT_FOUND,
            format!("call {id} has no recording"),
        ));
    };
    let dir = app
        .recordings
        .clone()
        .ok_or_else(|| refuse(StatusCode::NOT_FOUND, "recording is off on this server"))?;
    let path = inside(&dir, &rec.file).ok_or_else(|| {
        refuse(
            StatusCode::NOT_FOUND,
            "recording file outside the recordings directory",
        )
    })?;
    let opened = tokio::task::spawn_blocking(move || {
        let f = std::fs::File::open(&path)?;
        let len = f.metadata()?.len();
        Ok::<_, std::io::Error>((f, len))
    })
    .await
    .map_err(|_| refuse(StatusCode::INTERNAL_SERVER_ERROR, "internal error"))?;
    let (file, len) = opened.map_err(|e| {
        tracing::warn!(call = id, error = %e, "recording not readable");
        refuse(StatusCode::NOT_FOUND, "the recording file is missing")
    })?;
    let asked = headers.get(header::RANGE).and_then(|v| v.to_str().ok());
    let Some((start, end)) = byte_range(asked, len) else {
        let mut r = refuse(StatusCode::RANGE_NOT_SATISFIABLE, "no such byte range").into_response();
        if let Ok(v) = HeaderValue::from_str(&format!("bytes */{len}")) {
            r.headers_mut().insert(header::CONTENT_RANGE, v);
        }
        return Ok(r);
    };
    // Every request is a playback (a seek too): audited before a byte is sent.
    let detail = format!("{} bytes {start}-{end}", rec.file);
    audit(&app, &s, "play_recording", Some(id), detail).await?;
    // A single byte range is answered as one (206), whatever it covers; no range, another
    // unit or several ranges get the whole file (200).
    let ranged = asked
        .and_then(|h| h.trim().strip_prefix("bytes="))
        .is_some_and(|s| !s.contains(','));
    let mut r = axum::response::Response::new(axum::body::Body::from_stream(file_chunks(
        file,
        start,
        (end + 1).saturating_sub(start),
    )));
    if ranged {
        *r.status_mut() = StatusCode::PARTIAL_CONTENT;
        if let Ok(v) = HeaderValue::from_str(&format!("bytes {start}-{end}/{len}")) {
            r.headers_mut().insert(header::CONTENT_RANGE, v);
        }
    }
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("audio/wav"));
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    if let Ok(v) = HeaderValue::from_str(&((end + 1).saturating_sub(start)).to_string()) {
        h.insert(header::CONTENT_LENGTH, v);
    }
    if let Ok(v) = HeaderValue::from_str(&rec.sha256) {
        h.insert(header::HeaderName::from_static("x-recording-sha256"), v);
    }
    Ok(r)
}

/// The byte range `[start, end]` (inclusive) a `Range` header asks of a file of `len` bytes:
/// the whole file without one (or with several ranges, which are not served as such), `None`
/// when it cannot be satisfied.
fn byte_range(header: Option<&str>, len: u64) -> Option<(u64, u64)> {
    let whole = Some((0, len.saturating_sub(1)));
    let Some(spec) = header.and_then(|h| h.trim().strip_prefix("bytes=")) else {
        return whole;
    };
    if spec.contains(',') {
        return whole;
    }
    let (a, b) = spec.split_once('-')?;
    let (a, b) = (a.trim(), b.trim());
    let (start, end) = match (a.is_empty(), b.is_empty()) {
        // The last `b` bytes.
        (true, false) => {
            let n: u64 = b.parse().ok()?;
            (len.saturating_sub(n), len.checked_sub(1)?)
        }
        (false, true) => (a.parse().ok()?, len.checked_sub(1)?),
        (false, false) => {
            let end: u64 = b.parse().ok()?;
            (a.parse().ok()?, end.min(len.checked_sub(1)?))
        }
        (true, true) => return None,
    };
    (start <= end && start < len).then_some((start, end))
}

/// `count` bytes of `file` from `start`, read 64 KiB at a time off the async workers.
fn file_chunks(
    file: std::fs::File,
    start: u64,
    count: u64,
) -> impl futures_util::Stream<Item = std::io::Result<axum::body::Bytes>> {
    futures_util::stream::unfold((Some(file), start, count), |(file, at, left)| async move {
        let file = file?;
        if left == 0 {
            return None;
        }
        let read = tokio::task::spawn_blocking(move || {
            use std::io::{Read, Seek, SeekFrom};
            let mut file = file;
            let mut buf = vec![0u8; left.min(64 * 1024) as usize];
            file.seek(SeekFrom::Start(at))?;
            let n = file.read(&mut buf)?;
            buf.truncate(n);
            Ok::<_, std::io::Error>((file, buf))
        })
        .await;
        match read {
            Ok(Ok((_, buf))) if buf.is_empty() => None,
            Ok(Ok((file, buf))) => {
                let n = buf.len() as u64;
                Some((
                    Ok(axum::body::Bytes::from(buf)),
                    (Some(file), at + n, left - n),
                ))
            }
            Ok(Err(e)) => Some((Err(e), (None, at, 0))),
            Err(_) => Some((
                Err(std::io::Error::other("recording read task failed")),
                (None, at, 0),
            )),
        }
    })
}

#[derive(Deserialize)]
struct ReviewForm {
    score: u8,
    #[serde(default)]
    comment: String,
}

async fn save_review(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    UrlPath(id): UrlPath<u64>,
    Json(form): Json<ReviewForm>,
) -> Answer {
    let s = change(&app, &headers, REVIEWERS)?;
    if form.score > 100 {
        return Err(refuse(StatusCode::BAD_REQUEST, "score: 0 to 100"));
    }
    if form.comment.len() > 4000 {
        return Err(refuse(
            StatusCode::BAD_REQUEST,
            "comment: at most 4000 bytes",
        ));
    }
    let known = with_store(&app, false, move |db| Ok(db.call(id)?.is_some())).await?;
    if !known {
        return Err(refuse(StatusCode::NOT_FOUND, format!("no call {id}")));
    }
    audit(
        &app,
        &s,
        "review",
        Some(id),
        format!("score={}", form.score),
    )
    .await?;
    let review = ReviewRow {
        call_id: id,
        reviewer: s.login.clone(),
        score: form.score,
        comment: form.comment,
        at_ms: now_ms(),
    };
    with_store(&app, true, move |db| db.insert_review(&review)).await?;
    Ok((StatusCode::CREATED, Json(json!({ "ok": true }))).into_response())
}

/// A short word an agent gives (a pause reason, a disposition code): 1 to 64 letters,
/// digits, spaces, `-` and `_`.
fn is_label(s: &str) -> bool {
    !s.is_empty() && s.len() <= 64 && s.chars().all(|c| c.is_alphanumeric() || "-_ ".contains(c))
}

#[derive(Deserialize)]
struct DispositionForm {
    code: String,
}

/// The agent's disposition code for a call they took (wrap-up), or a supervisor's
/// correction of it. The call's record must be written (the call has ended).
async fn set_disposition(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    UrlPath(id): UrlPath<u64>,
    Json(form): Json<DispositionForm>,
) -> Answer {
    let s = change(
        &app,
        &headers,
        &[Role::Agent, Role::Supervisor, Role::Admin],
    )?;
    let code = form.code.trim().to_owned();
    if !is_label(&code) {
        return Err(refuse(
            StatusCode::BAD_REQUEST,
            "code: 1 to 64 letters, digits, spaces, - and _",
        ));
    }
    let Some(call) = with_store(&app, false, move |db| db.call(id)).await? else {
        return Err(refuse(
            StatusCode::NOT_FOUND,
            format!("no call {id} (its record is written when it ends)"),
        ));
    };
    if !s.has_any(WATCHERS) {
        let me = s.agent.as_deref().unwrap_or_default();
        let took_part =
            call.agent.as_deref() == Some(me) || call.segments.iter().any(|g| g.agent == me);
        if !took_part {
            return Err(refuse(
                StatusCode::FORBIDDEN,
                format!("{} did not take call {id}", s.login),
            ));
        }
    }
    let stored = code.clone();
    if !with_store(&app, true, move |db| db.set_disposition(id, &stored)).await? {
        return Err(refuse(StatusCode::NOT_FOUND, format!("no call {id}")));
    }
    // Audited once made, with what it replaced.
    let before = call.disposition.as_deref().unwrap_or("");
    audit(
        &app,
        &s,
        "disposition",
        Some(id),
        format!("code={code} was={before}"),
    )
    .await?;
    Ok(Json(json!({ "ok": true, "call": id, "disposition": code })).into_response())
}

async fn reviews(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    UrlPath(id): UrlPath<u64>,
) -> Answer {
    session(&app, &headers, REVIEWERS)?;
    let rows = with_store(&app, false, move |db| db.reviews(id)).await?;
    let list: Vec<_> = rows
        .iter()
        .map(|r| json!({ "reviewer": r.reviewer, "score": r.score, "comment": r.comment, "at_ms": r.at_ms }))
        .collect();
    Ok(Json(json!({ "reviews": list })).into_response())
}

#[derive(Deserialize)]
struct AuditQuery {
    date: Option<String>,
}

async fn audit_log(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Query(q): Query<AuditQuery>,
) -> Answer {
    session(&app, &headers, &[Role::Admin])?;
    let from = match &q.date {
        Some(d) => parse_date(d).map_err(|e| refuse(StatusCode::BAD_REQUEST, e))?,
        None => now_ms() - now_ms().rem_euclid(DAY_MS),
    };
    let rows = with_store(&app, false, move |db| {
        db.audit_log(from, from + DAY_MS, 10_000)
    })
    .await?;
    let list: Vec<_> = rows
        .iter()
        .map(|r| json!({ "at_ms": r.at_ms, "login": r.login, "action": r.action, "call_id": r.call_id, "detail": r.detail }))
        .collect();
    Ok(Json(json!({ "audit": list })).into_response())
}

// ---- metrics and pages ----

async fn metrics_page(State(app): State<Arc<App>>) -> impl IntoResponse {
    let sample = (app.sampler)().await;
    app.metrics.sample(&sample);
    app.metrics.board(&app.live.snapshot());
    (
        StatusCode::OK,
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        app.metrics.render(),
    )
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    ([(header::CONTENT_TYPE, content_type)], body).into_response()
}

static PAGES: &[(&str, &str, &str)] = &[
    (
        "/login",
        "text/html; charset=utf-8",
        include_str!("../assets/login.html"),
    ),
    (
        "/wallboard",
        "text/html; charset=utf-8",
        include_str!("../assets/wallboard.html"),
    ),
    (
        "/review",
        "text/html; charset=utf-8",
        include_str!("../assets/review.html"),
    ),
    (
        "/agent",
        "text/html; charset=utf-8",
        include_str!("../assets/agent.html"),
    ),
    (
        "/assets/agent.css",
        "text/css; charset=utf-8",
        include_str!("../assets/agent.css"),
    ),
    (
        "/assets/agent.js",
        "text/javascript; charset=utf-8",
        include_str!("../assets/agent.js"),
    ),
    (
        "/assets/vendor/jssip.min.js",
        "text/javascript; charset=utf-8",
        include_str!("../assets/vendor/jssip.min.js"),
    ),
    (
        "/assets/app.css",
        "text/css; charset=utf-8",
        include_str!("../assets/app.css"),
    ),
    (
        "/assets/app.js",
        "text/javascript; charset=utf-8",
        include_str!("../assets/app.js"),
    ),
    (
        "/assets/login.js",
        "text/javascript; charset=utf-8",
        include_str!("../assets/login.js"),
    ),
    (
        "/assets/wallboard.js",
        "text/javascript; charset=utf-8",
        include_str!("../assets/wallboard.js"),
    ),
    (
        "/assets/review.js",
        "text/javascript; charset=utf-8",
        include_str!("../assets/review.js"),
    ),
];

/// Headers every answer carries: no framing, no sniffing, scripts only from this server,
/// API answers never cached.
async fn hardening(req: Request, next: Next) -> Response {
    let api = req.uri().path().starts_with("/api/");
    let cross_site = req.method() != Method::GET
        && req.method() != Method::HEAD
        && match (
            req.headers().get(header::ORIGIN),
            req.headers().get(header::HOST),
        ) {
            (Some(origin), Some(host)) => {
                let origin = origin.to_str().unwrap_or("");
                let host = host.to_str().unwrap_or("");
                origin
                    .split_once("://")
                    .is_none_or(|(_, rest)| rest != host)
            }
            (Some(_), None) => true,
            _ => false,
        };
    let mut r = if cross_site {
        refuse(StatusCode::FORBIDDEN, "cross-site request refused").into_response()
    } else {
        next.run(req).await
    };
    let h = r.headers_mut();
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; media-src 'self' blob:; connect-src 'self' ws: wss:; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
        ),
    );
    if api {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    r
}

/// Every route, on `app`.
pub fn router(app: Arc<App>) -> Router {
    let mut r = Router::new()
        .route("/", get(|| async { Redirect::to("/wallboard") }))
        .route("/metrics", get(metrics_page))
        .route("/api/login", post(login))
        .route("/api/logout", post(logout))
        .route("/api/me", get(whoami))
        .route("/api/live", get(live))
        .route("/api/events", get(events))
        .route("/api/phone", get(phone))
        .route("/api/agents/{agent}", get(agent_view))
        .route("/api/agents/{agent}/state", post(agent_state))
        .route("/api/agents/{agent}/monitor", post(agent_monitor))
        .route("/api/calls", get(calls))
        .route("/api/calls/{id}", get(call))
        .route("/api/calls/{id}/reviews", get(reviews).post(save_review))
        .route("/api/calls/{id}/disposition", post(set_disposition))
        .route("/api/reports/{by}", get(report))
        .route("/api/recordings", get(recordings))
        .route("/api/recordings/{id}/audio", get(recording_audio))
        .route("/api/audit", get(audit_log));
    for (path, ct, body) in PAGES {
        r = r.route(path, get(move || async move { asset(ct, body) }));
    }
    r.fallback(|| async { refuse(StatusCode::NOT_FOUND, "no such page") })
        .layer(axum::middleware::from_fn(hardening))
        .with_state(app)
}

#[cfg(test)]
mod tests {
    use super::byte_range;

    #[test]
    fn byte_ranges_as_browsers_ask_for_them() {
        assert_eq!(byte_range(None, 100), Some((0, 99)));
        assert_eq!(byte_range(Some("bytes=0-"), 100), Some((0, 99)));
        assert_eq!(byte_range(Some("bytes=10-19"), 100), Some((10, 19)));
        assert_eq!(byte_range(Some("bytes=90-200"), 100), Some((90, 99)));
        assert_eq!(byte_range(Some("bytes=-10"), 100), Some((90, 99)));
        assert_eq!(byte_range(Some("bytes=0-1, 5-6"), 100), Some((0, 99)));
        assert_eq!(byte_range(Some("items=1-2"), 100), Some((0, 99)));
        for unsatisfiable in ["bytes=100-", "bytes=20-10", "bytes=-", "bytes=x-1"] {
            assert_eq!(
                byte_range(Some(unsatisfiable), 100),
                None,
                "{unsatisfiable}"
            );
        }
        assert_eq!(byte_range(Some("bytes=0-"), 0), None);
    }
}
