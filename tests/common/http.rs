//! A minimal HTTP/1.1 client for the server's web side: one request per connection
//! (`Connection: close`), a session cookie and its CSRF token, metrics by name.

use std::io::{Read, Write};
use std::time::Duration;

/// An answer: status, head and body.
pub(crate) struct Reply {
    pub(crate) status: u16,
    pub(crate) head: String,
    pub(crate) body: Vec<u8>,
}

impl Reply {
    /// The body as text.
    pub(crate) fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body as JSON (panics, showing it, when it is not).
    pub(crate) fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|_| panic!("not JSON: {}", self.text()))
    }

    /// The session cookie it sets (`name=value`), if any.
    pub(crate) fn cookie(&self) -> Option<String> {
        self.head.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("set-cookie")
                .then(|| v.trim().split(';').next().unwrap_or("").to_owned())
        })
    }
}

/// `method path` on 127.0.0.1:`port` with `headers` and a JSON `body` (none when empty).
pub(crate) fn request(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Reply {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("HTTP server");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut head =
        format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n");
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
    s.write_all(head.as_bytes()).unwrap();
    s.write_all(body.as_bytes()).unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).expect("an HTTP answer");
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no HTTP head in {}", String::from_utf8_lossy(&raw)));
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    Reply {
        status,
        head,
        body: raw[split + 4..].to_vec(),
    }
}

/// `GET path` without a session.
pub(crate) fn get(port: u16, path: &str) -> Reply {
    request(port, "GET", path, &[], "")
}

/// The value of the whole-number metric `name` (the series name, labels included) at
/// `/metrics`, if the server answers and has it.
pub(crate) fn metric(port: u16, name: &str) -> Option<u64> {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    text.lines().find_map(|l| {
        let (k, v) = l.rsplit_once(' ')?;
        (k == name).then(|| v.trim().parse().ok())?
    })
}

/// A logged-in browser: its cookie and CSRF token.
pub(crate) struct Web {
    port: u16,
    cookie: String,
    csrf: String,
}

impl Web {
    /// Log in as `login` (panics unless the server says 200).
    pub(crate) fn log_in(port: u16, login: &str, password: &str) -> Web {
        let body = serde_json::json!({ "login": login, "password": password }).to_string();
        let r = request(port, "POST", "/api/login", &[], &body);
        assert_eq!(r.status, 200, "log in as {login}: {}", r.text());
        Web {
            port,
            cookie: r.cookie().expect("a session cookie"),
            csrf: r.json()["csrf"].as_str().expect("a CSRF token").to_owned(),
        }
    }

    /// `method path` in the session (changes carry the CSRF token).
    pub(crate) fn request(
        &self,
        method: &str,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> Reply {
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        let headers = [
            ("Cookie", self.cookie.as_str()),
            ("X-CSRF-Token", &self.csrf),
        ];
        request(self.port, method, path, &headers, &body)
    }

    /// `GET path` in the session: its JSON (panics unless 200).
    pub(crate) fn get(&self, path: &str) -> serde_json::Value {
        let r = self.request("GET", path, None);
        assert_eq!(r.status, 200, "{path}: {}", r.text());
        r.json()
    }
}
