//! The agent's side of the server's HTTP API, for the terminal UI: log in with a web login
//! (`POST /api/login`), set the agent's state (`POST /api/agents/{agent}/state`: ready, paused
//! with a reason, logged out) and give a call's disposition code
//! (`POST /api/calls/{id}/disposition`). See `docs/supervisors.md` for the routes.
//!
//! [`Client`] is a small blocking HTTP/1.1 client over `std::net::TcpStream`: one request per
//! connection, the session cookie and CSRF token the login gives, a new login when the
//! session has expired. Plain HTTP only: the server serves no TLS itself, so reach it on
//! loopback or through an SSH tunnel. [`Worker`] runs a client on its own thread so that the
//! screen never waits for the network:
//!
//! ```no_run
//! # use softphone::api::{ApiRequest, Client, Worker};
//! let worker = Worker::start(Client::new("http://127.0.0.1:8080", "ada", "secret")?);
//! worker.send(ApiRequest::LogIn);
//! // … every turn of the UI's loop:
//! while let Some(reply) = worker.poll_reply() { /* show it */ }
//! # Ok::<(), softphone::api::ApiError>(())
//! ```

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

/// How long a connection or an answer may take.
const TIMEOUT: Duration = Duration::from_secs(10);
/// The largest answer read.
const MAX_ANSWER: u64 = 1 << 20;

/// An agent state to ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestedState {
    /// Take calls.
    Ready,
    /// Take no calls, for a reason.
    Paused,
    /// Log out of the queues.
    LoggedOut,
}

impl RequestedState {
    /// The API's name for it.
    pub fn as_str(self) -> &'static str {
        match self {
            RequestedState::Ready => "ready",
            RequestedState::Paused => "paused",
            RequestedState::LoggedOut => "logged_out",
        }
    }
}

/// What the UI asks of the API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApiRequest {
    /// Log in (done by itself before the first other request, too).
    LogIn,
    /// Change the agent's state.
    AgentState {
        /// The state.
        state: RequestedState,
        /// Why (a pause needs one).
        reason: Option<String>,
    },
    /// Give the disposition code of a call the agent took.
    Disposition {
        /// The server's id of the call (`X-Switchboard-Call`).
        call: u64,
        /// The code.
        code: String,
    },
    /// Read the agent's state as the server has it (`GET /api/agents/{agent}`).
    ReadState,
}

/// What came of a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApiReply {
    /// Logged in.
    LoggedIn {
        /// The web login.
        login: String,
        /// The agent it is (`None`: the login is no agent's).
        agent: Option<String>,
    },
    /// The agent's state was changed.
    AgentState {
        /// To this.
        state: RequestedState,
        /// For this reason.
        reason: Option<String>,
    },
    /// The call's disposition was saved.
    Disposition {
        /// The call.
        call: u64,
        /// The code.
        code: String,
    },
    /// The agent's state on the server: `ready`, `not_ready`, `logged_out`, `ringing`,
    /// `busy` or `wrap_up`, and the reason of a pause.
    State {
        /// The state.
        state: String,
        /// The reason.
        reason: Option<String>,
    },
    /// The request failed.
    Failed {
        /// What was asked.
        request: ApiRequest,
        /// Why it failed.
        error: ApiError,
    },
}

/// Why a request failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ApiError {
    /// The API's address cannot be used.
    #[error("API address {url:?}: {reason}")]
    Address {
        /// The address given.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The server could not be reached, or the connection broke.
    #[error("cannot reach the API at {server}: {reason}")]
    Unreachable {
        /// host:port.
        server: String,
        /// The error.
        reason: String,
    },
    /// The server said no; `message` is its own explanation.
    #[error("{message} ({status})")]
    Refused {
        /// The HTTP status.
        status: u16,
        /// The server's `error` text, or the status line.
        message: String,
    },
    /// The answer is not what the API answers.
    #[error("unexpected answer from the API: {0}")]
    Malformed(String),
    /// The web login is not an agent's, so it has no agent state.
    #[error("web login {0} is not an agent")]
    NotAnAgent(String),
}

/// An HTTP answer.
#[derive(Debug)]
struct Answer {
    status: u16,
    head: String,
    body: Vec<u8>,
}

impl Answer {
    /// The value of the first header `name`.
    fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().skip(1).find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }

    fn json(&self) -> Result<Value, ApiError> {
        serde_json::from_slice(&self.body).map_err(|e| {
            ApiError::Malformed(format!(
                "{e}: {}",
                String::from_utf8_lossy(&self.body[..self.body.len().min(200)])
            ))
        })
    }

    /// Success, or the server's reason as an error.
    fn ok(self) -> Result<Answer, ApiError> {
        if (200..300).contains(&self.status) {
            return Ok(self);
        }
        let message = self
            .json()
            .ok()
            .and_then(|v| v["error"].as_str().map(str::to_owned))
            .unwrap_or_else(|| {
                let line = self.head.lines().next().unwrap_or_default();
                line.splitn(3, ' ').nth(2).unwrap_or(line).to_owned()
            });
        Err(ApiError::Refused {
            status: self.status,
            message,
        })
    }
}

/// The session a login gave.
#[derive(Debug, Clone)]
struct Session {
    cookie: String,
    csrf: String,
    agent: Option<String>,
}

/// A blocking client of the agent's routes, for one web login.
#[derive(Debug)]
pub struct Client {
    /// host[:port], for the Host header and to connect to.
    authority: String,
    /// The path the API is under ("" at the root).
    prefix: String,
    login: String,
    password: String,
    session: Option<Session>,
    /// How long a disposition waits for the call's record to be written.
    record_wait: Duration,
}

impl Client {
    /// A client of the API at `url` (`http://host:port`, optionally with a path prefix) for
    /// this web login. Nothing is sent yet.
    pub fn new(url: &str, login: &str, password: &str) -> Result<Client, ApiError> {
        let bad = |reason: &str| ApiError::Address {
            url: url.to_owned(),
            reason: reason.to_owned(),
        };
        let rest = if let Some(rest) = url.strip_prefix("http://") {
            rest
        } else if url.starts_with("https://") {
            return Err(bad(
                "https is not supported: use http:// on loopback or through an SSH tunnel",
            ));
        } else {
            return Err(bad("give it as http://host:port"));
        };
        let (authority, prefix) = match rest.find('/') {
            Some(i) => (&rest[..i], rest[i..].trim_end_matches('/')),
            None => (rest, ""),
        };
        if authority.is_empty() || authority.contains(['@', ' ', '?', '#']) {
            return Err(bad("no host"));
        }
        Ok(Client {
            authority: authority.to_owned(),
            prefix: prefix.to_owned(),
            login: login.to_owned(),
            password: password.to_owned(),
            session: None,
            record_wait: Duration::from_secs(5),
        })
    }

    /// How long a disposition waits, trying again, for the call's record to be written
    /// (the server answers 404 until the call has ended and its record is stored).
    pub fn set_record_wait(&mut self, wait: Duration) {
        self.record_wait = wait;
    }

    /// Carry out one request (logging in first when there is no session yet, and once more
    /// when the session has expired).
    pub fn handle(&mut self, request: &ApiRequest) -> ApiReply {
        let outcome = match request {
            ApiRequest::LogIn => self.log_in().map(|s| ApiReply::LoggedIn {
                login: self.login.clone(),
                agent: s.agent,
            }),
            ApiRequest::AgentState { state, reason } => self
                .agent_state(*state, reason.as_deref())
                .map(|()| ApiReply::AgentState {
                    state: *state,
                    reason: reason.clone(),
                }),
            ApiRequest::Disposition { call, code } => {
                self.disposition(*call, code)
                    .map(|()| ApiReply::Disposition {
                        call: *call,
                        code: code.clone(),
                    })
            }
            ApiRequest::ReadState => self
                .as_agent("GET", |agent| format!("/api/agents/{agent}"), "")
                .and_then(|a| {
                    let v = a.json()?;
                    Ok(ApiReply::State {
                        state: v["state"].as_str().unwrap_or("unknown").to_owned(),
                        reason: v["reason"].as_str().map(str::to_owned),
                    })
                }),
        };
        outcome.unwrap_or_else(|error| ApiReply::Failed {
            request: request.clone(),
            error,
        })
    }

    /// `POST /api/login`: the session's cookie and CSRF token, and the agent.
    fn log_in(&mut self) -> Result<Session, ApiError> {
        self.session = None;
        let body = json!({ "login": self.login, "password": self.password }).to_string();
        let answer = self.exchange("POST", "/api/login", &[], &body)?.ok()?;
        let cookie = answer
            .header("Set-Cookie")
            .and_then(|c| c.split(';').next())
            .map(str::to_owned)
            .ok_or_else(|| ApiError::Malformed("no session cookie".into()))?;
        let me = answer.json()?;
        let csrf = me["csrf"]
            .as_str()
            .ok_or_else(|| ApiError::Malformed("no CSRF token".into()))?
            .to_owned();
        let session = Session {
            cookie,
            csrf,
            agent: me["agent"].as_str().map(str::to_owned),
        };
        self.session = Some(session.clone());
        Ok(session)
    }

    fn agent_state(&mut self, state: RequestedState, reason: Option<&str>) -> Result<(), ApiError> {
        let body = json!({ "state": state.as_str(), "reason": reason }).to_string();
        self.post_as_agent(|agent| format!("/api/agents/{agent}/state"), &body)
    }

    fn disposition(&mut self, call: u64, code: &str) -> Result<(), ApiError> {
        let body = json!({ "code": code }).to_string();
        let until = Instant::now() + self.record_wait;
        let mut pause = Duration::from_millis(100);
        loop {
            match self.post_as_agent(|_| format!("/api/calls/{call}/disposition"), &body) {
                Err(ApiError::Refused { status: 404, .. }) if Instant::now() + pause < until => {
                    std::thread::sleep(pause);
                    pause = (pause * 2).min(Duration::from_secs(1));
                }
                other => return other,
            }
        }
    }

    /// POST `body` to the path made from the session's agent, in the session; a new login
    /// and one more try when the session is gone (401).
    fn post_as_agent(&mut self, path: impl Fn(&str) -> String, body: &str) -> Result<(), ApiError> {
        self.as_agent("POST", path, body).map(|_| ())
    }

    /// `method` on the path made from the session's agent, in the session; the answer.
    fn as_agent(
        &mut self,
        method: &str,
        path: impl Fn(&str) -> String,
        body: &str,
    ) -> Result<Answer, ApiError> {
        let mut fresh = false;
        loop {
            let session = match &self.session {
                Some(s) => s.clone(),
                None => {
                    fresh = true;
                    self.log_in()?
                }
            };
            let agent = session
                .agent
                .clone()
                .ok_or_else(|| ApiError::NotAnAgent(self.login.clone()))?;
            let headers = [
                ("Cookie", session.cookie.as_str()),
                ("X-CSRF-Token", session.csrf.as_str()),
            ];
            let answer = self.exchange(method, &path(&agent), &headers, body)?;
            if answer.status == 401 && !fresh {
                // The session expired (or the server restarted): log in once more.
                self.session = None;
                continue;
            }
            return answer.ok();
        }
    }

    /// One request on its own connection.
    fn exchange(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> Result<Answer, ApiError> {
        let unreachable = |e: std::io::Error| ApiError::Unreachable {
            server: self.authority.clone(),
            reason: e.to_string(),
        };
        let with_port = if self
            .authority
            .rsplit_once(':')
            .is_some_and(|(_, p)| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
            && !self.authority.ends_with(']')
        {
            self.authority.clone()
        } else {
            format!("{}:80", self.authority)
        };
        let addrs: Vec<SocketAddr> = with_port.to_socket_addrs().map_err(unreachable)?.collect();
        let mut last = None;
        let mut stream = None;
        for a in addrs {
            match TcpStream::connect_timeout(&a, TIMEOUT) {
                Ok(s) => {
                    stream = Some(s);
                    break;
                }
                Err(e) => last = Some(e),
            }
        }
        let mut s = stream.ok_or_else(|| {
            unreachable(last.unwrap_or_else(|| std::io::Error::other("no address")))
        })?;
        s.set_read_timeout(Some(TIMEOUT)).map_err(unreachable)?;
        s.set_write_timeout(Some(TIMEOUT)).map_err(unreachable)?;
        let mut head = format!(
            "{method} {}{path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nAccept: application/json\r\n",
            self.prefix, self.authority
        );
        for (k, v) in headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        if !body.is_empty() {
            head.push_str(&format!(
                "Content-Type: application/json\r\nContent-Length: {}\r\n",
                body.len()
            ));
        }
        head.push_str("\r\n");
        head.push_str(body);
        s.write_all(head.as_bytes()).map_err(unreachable)?;
        let mut raw = Vec::new();
        s.take(MAX_ANSWER)
            .read_to_end(&mut raw)
            .map_err(unreachable)?;
        parse_answer(&raw)
    }
}

/// Split an HTTP/1.1 answer read to the end of its connection.
fn parse_answer(raw: &[u8]) -> Result<Answer, ApiError> {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| ApiError::Malformed("no HTTP head".into()))?;
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let status = head
        .strip_prefix("HTTP/1.")
        .and_then(|rest| rest.split_whitespace().nth(1))
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| {
            ApiError::Malformed(format!(
                "status line {:?}",
                head.lines().next().unwrap_or("")
            ))
        })?;
    let mut answer = Answer {
        status,
        head,
        body: raw[split + 4..].to_vec(),
    };
    if answer
        .header("Transfer-Encoding")
        .is_some_and(|t| t.eq_ignore_ascii_case("chunked"))
    {
        answer.body = dechunk(&answer.body)?;
    } else if let Some(n) = answer
        .header("Content-Length")
        .and_then(|n| n.parse::<usize>().ok())
    {
        answer.body.truncate(n);
    }
    Ok(answer)
}

/// The body of a chunked answer.
fn dechunk(mut raw: &[u8]) -> Result<Vec<u8>, ApiError> {
    let bad = || ApiError::Malformed("broken chunked body".into());
    let mut body = Vec::new();
    loop {
        let end = raw.windows(2).position(|w| w == b"\r\n").ok_or_else(bad)?;
        let line = std::str::from_utf8(&raw[..end]).map_err(|_| bad())?;
        let size = line.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size, 16).map_err(|_| bad())?;
        raw = &raw[end + 2..];
        if size == 0 {
            return Ok(body);
        }
        if raw.len() < size + 2 {
            return Err(bad());
        }
        body.extend_from_slice(&raw[..size]);
        raw = &raw[size + 2..];
    }
}

/// A [`Client`] on its own thread: requests go in, replies come out, in order.
#[derive(Debug)]
pub struct Worker {
    requests: mpsc::Sender<ApiRequest>,
    replies: mpsc::Receiver<ApiReply>,
}

impl Worker {
    /// Start the thread. It ends when the worker is dropped (after the request in hand).
    pub fn start(mut client: Client) -> Worker {
        let (requests, inbox) = mpsc::channel::<ApiRequest>();
        let (outbox, replies) = mpsc::channel();
        std::thread::Builder::new()
            .name("agent-api".into())
            .spawn(move || {
                for request in inbox {
                    if outbox.send(client.handle(&request)).is_err() {
                        break;
                    }
                }
            })
            .expect("a thread for the agent API");
        Worker { requests, replies }
    }

    /// Queue a request; `false` when the thread is gone.
    pub fn send(&self, request: ApiRequest) -> bool {
        self.requests.send(request).is_ok()
    }

    /// A reply that has come, without waiting.
    pub fn poll_reply(&self) -> Option<ApiReply> {
        self.replies.try_recv().ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::BufRead;
    use std::net::TcpListener;

    /// A request as the fake server saw it.
    #[derive(Debug)]
    struct Seen {
        line: String,
        head: String,
        body: String,
    }

    /// A server that answers each connection with the next of `answers` (status, extra
    /// headers, body) and reports what it was asked.
    fn fake_server(
        answers: Vec<(u16, &'static str, &'static str)>,
    ) -> (String, mpsc::Receiver<Seen>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for (status, headers, body) in answers {
                let (s, _) = listener.accept().unwrap();
                let mut r = std::io::BufReader::new(s);
                let mut head = String::new();
                loop {
                    let mut l = String::new();
                    r.read_line(&mut l).unwrap();
                    if l == "\r\n" || l.is_empty() {
                        break;
                    }
                    head.push_str(&l);
                }
                let n = head
                    .lines()
                    .find_map(|l| l.strip_prefix("Content-Length: "))
                    .map_or(0, |n| n.trim().parse().unwrap());
                let mut b = vec![0; n];
                r.read_exact(&mut b).unwrap();
                let _ = tx.send(Seen {
                    line: head.lines().next().unwrap().to_owned(),
                    head: head.clone(),
                    body: String::from_utf8(b).unwrap(),
                });
                let mut s = r.into_inner();
                let _ = write!(
                    s,
                    "HTTP/1.1 {status} X\r\n{headers}Content-Length: {}\r\n\r\n{body}",
                    body.len()
                );
            }
        });
        (url, rx)
    }

    const LOGIN: (u16, &str, &str) = (
        200,
        "Set-Cookie: sb_session=tok1; Path=/; HttpOnly\r\n",
        r#"{"login":"ada","roles":["agent"],"agent":"1001","csrf":"c1"}"#,
    );

    #[test]
    fn a_state_change_logs_in_first_and_carries_the_cookie_and_token() {
        let (url, seen) = fake_server(vec![LOGIN, (200, "", r#"{"ok":true}"#)]);
        let mut c = Client::new(&url, "ada", "pw").unwrap();
        let reply = c.handle(&ApiRequest::AgentState {
            state: RequestedState::Paused,
            reason: Some("lunch".into()),
        });
        assert_eq!(
            reply,
            ApiReply::AgentState {
                state: RequestedState::Paused,
                reason: Some("lunch".into())
            }
        );
        let login = seen.recv().unwrap();
        assert_eq!(login.line, "POST /api/login HTTP/1.1");
        let v: Value = serde_json::from_str(&login.body).unwrap();
        assert_eq!(
            (v["login"].as_str(), v["password"].as_str()),
            (Some("ada"), Some("pw"))
        );
        let change = seen.recv().unwrap();
        assert_eq!(change.line, "POST /api/agents/1001/state HTTP/1.1");
        assert!(
            change.head.contains("Cookie: sb_session=tok1\r\n"),
            "{}",
            change.head
        );
        assert!(
            change.head.contains("X-CSRF-Token: c1\r\n"),
            "{}",
            change.head
        );
        let v: Value = serde_json::from_str(&change.body).unwrap();
        assert_eq!(v, json!({ "state": "paused", "reason": "lunch" }));
    }

    #[test]
    fn the_agents_state_is_read_from_the_server() {
        let (url, seen) = fake_server(vec![
            LOGIN,
            (
                200,
                "",
                r#"{"name":"1001","state":"not_ready","reason":"lunch","in_state_s":4,"handled_today":2}"#,
            ),
        ]);
        let mut c = Client::new(&url, "ada", "pw").unwrap();
        assert_eq!(
            c.handle(&ApiRequest::ReadState),
            ApiReply::State {
                state: "not_ready".into(),
                reason: Some("lunch".into())
            }
        );
        let _login = seen.recv().unwrap();
        let read = seen.recv().unwrap();
        assert_eq!(read.line, "GET /api/agents/1001 HTTP/1.1");
        assert!(
            read.head.contains("Cookie: sb_session=tok1\r\n"),
            "{}",
            read.head
        );
    }

    #[test]
    fn the_servers_reason_is_the_error_and_an_expired_session_logs_in_again() {
        let (url, seen) = fake_server(vec![
            LOGIN,
            (200, "", r#"{"ok":true}"#),
            (401, "", r#"{"error":"not logged in"}"#),
            LOGIN,
            (409, "", r#"{"error":"agent 1001 is on a call"}"#),
            LOGIN,
            (401, "", r#"{"error":"not logged in"}"#),
        ]);
        let mut c = Client::new(&url, "ada", "pw").unwrap();
        let ready = ApiRequest::AgentState {
            state: RequestedState::Ready,
            reason: None,
        };
        assert!(matches!(c.handle(&ready), ApiReply::AgentState { .. }));
        // The session has expired since: a new login, then the server's answer.
        let reply = c.handle(&ApiRequest::AgentState {
            state: RequestedState::LoggedOut,
            reason: None,
        });
        let ApiReply::Failed { error, .. } = reply else {
            panic!("{reply:?}")
        };
        assert_eq!(
            error,
            ApiError::Refused {
                status: 409,
                message: "agent 1001 is on a call".into()
            }
        );
        assert_eq!(error.to_string(), "agent 1001 is on a call (409)");
        let lines: Vec<_> = seen.try_iter().map(|s| s.line).collect();
        assert_eq!(lines.len(), 5, "{lines:?}");
        assert_eq!(lines[3], "POST /api/login HTTP/1.1");

        // A 401 right after a new login is not tried again and again.
        c.session = None;
        let ApiReply::Failed { error, .. } = c.handle(&ready) else {
            panic!("a refused login")
        };
        assert_eq!(error.to_string(), "not logged in (401)");
        assert_eq!(seen.try_iter().count(), 2, "one login, one request");
    }

    #[test]
    fn a_disposition_waits_for_the_record_and_a_wrong_password_is_said() {
        let (url, seen) = fake_server(vec![
            LOGIN,
            (
                404,
                "",
                r#"{"error":"no call 17 (its record is written when it ends)"}"#,
            ),
            (200, "", r#"{"ok":true,"call":17,"disposition":"sale"}"#),
        ]);
        let mut c = Client::new(&url, "ada", "pw").unwrap();
        let reply = c.handle(&ApiRequest::Disposition {
            call: 17,
            code: "sale".into(),
        });
        assert_eq!(
            reply,
            ApiReply::Disposition {
                call: 17,
                code: "sale".into()
            }
        );
        let asked: Vec<_> = seen.try_iter().collect();
        assert_eq!(asked[2].line, "POST /api/calls/17/disposition HTTP/1.1");
        assert_eq!(asked[2].body, r#"{"code":"sale"}"#);

        let (url, _) = fake_server(vec![(401, "", r#"{"error":"wrong login or password"}"#)]);
        let reply = Client::new(&url, "ada", "nope")
            .unwrap()
            .handle(&ApiRequest::LogIn);
        let ApiReply::Failed { error, .. } = reply else {
            panic!("{reply:?}")
        };
        assert_eq!(error.to_string(), "wrong login or password (401)");
    }

    #[test]
    fn a_login_that_is_no_agent_cannot_change_a_state() {
        let (url, _) = fake_server(vec![(
            200,
            "Set-Cookie: sb_session=t; Path=/\r\n",
            r#"{"login":"sam","roles":["supervisor"],"agent":null,"csrf":"c"}"#,
        )]);
        let mut c = Client::new(&url, "sam", "pw").unwrap();
        let reply = c.handle(&ApiRequest::AgentState {
            state: RequestedState::Ready,
            reason: None,
        });
        let ApiReply::Failed { error, .. } = reply else {
            panic!("{reply:?}")
        };
        assert_eq!(error, ApiError::NotAnAgent("sam".into()));
    }

    #[test]
    fn nothing_listening_is_an_error_not_a_hang_and_the_worker_carries_it() {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let worker =
            Worker::start(Client::new(&format!("http://127.0.0.1:{port}"), "a", "b").unwrap());
        assert!(worker.send(ApiRequest::LogIn));
        let deadline = Instant::now() + Duration::from_secs(10);
        let reply = loop {
            if let Some(r) = worker.poll_reply() {
                break r;
            }
            assert!(Instant::now() < deadline, "no reply");
            std::thread::sleep(Duration::from_millis(5));
        };
        assert!(
            matches!(
                reply,
                ApiReply::Failed {
                    error: ApiError::Unreachable { .. },
                    ..
                }
            ),
            "{reply:?}"
        );
    }

    #[test]
    fn addresses_and_answers_are_checked() {
        assert!(matches!(
            Client::new("https://x", "a", "b"),
            Err(ApiError::Address { .. })
        ));
        assert!(Client::new("127.0.0.1:8080", "a", "b").is_err());
        let c = Client::new("http://pbx.example:8080/sb/", "a", "b").unwrap();
        assert_eq!(
            (c.authority.as_str(), c.prefix.as_str()),
            ("pbx.example:8080", "/sb")
        );
        let a = parse_answer(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\n{\"a\"\r\n3\r\n:1}\r\n0\r\n\r\n",
        )
        .unwrap();
        assert_eq!(a.body, b"{\"a\":1}");
        let a = parse_answer(b"HTTP/1.1 502 Bad Gateway\r\n\r\n<html>").unwrap();
        assert_eq!(a.ok().unwrap_err().to_string(), "Bad Gateway (502)");
        assert!(parse_answer(b"garbage").is_err());
    }
}
