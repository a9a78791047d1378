//! Wallboard clients on the live event stream: how long a supervisor's change of an agent's
//! state takes to reach every open wallboard, with 1 client (the baseline) and with 200
//! (the aim: updates under one second), measured in the same run.
//!
//! For each size the bench starts the release server (`switchboard serve`) on a temporary
//! copy of `config/` with the web side on a free loopback port and one supervisor login,
//! logs in once, and opens N server-sent-event streams (`GET /api/events`, all with that one
//! session cookie, plain HTTP/1.1 over tokio TCP). A stream is ready at its first board with
//! agent 1001 on it (boards without it, published before the server configured its agents,
//! are counted and skipped). Once every stream is ready, the bench pauses agent 1001
//! (`POST /api/agents/1001/state`) UPDATES times, one every PERIOD plus 0–249 ms (so that
//! they fall evenly over the server's 250 ms publish tick), each time with a reason of its own
//! (`lunch-1`, `break-2`, …), and records for every client the time from just before the POST
//! is written until that client's stream delivers a board whose agent 1001 shows that reason
//! (timed when the bytes are read, before the JSON is parsed). The agent has no phone in this
//! config (not ready, "no-phone"), so a pause changes only its reason. A board that skips
//! straight to a later reason delivers the skipped updates too (counted as "superseded"); an
//! update a client never shows within 5 s of the last POST is "missed" and counts as over one
//! second.
//!
//! Server CPU is its utime + stime (`/proc/PID/stat`) from the first POST until every client
//! showed the last update, divided by the updates; it includes the board the server publishes
//! every second even without a change. Each size gets a fresh server. The summary line also
//! gives the server's memory and open descriptors (before, with the streams open, 3 s after
//! they closed), the longest gap between two boards on any stream, and the machine's
//! listen-queue overflows while the streams were being opened.
//!
//! ```text
//! cargo bench --bench wallboard_clients              # 1 and 200 clients, 100 updates, 500 ms
//! WALLBOARD_BENCH_CLIENTS=1,200,1000 WALLBOARD_BENCH_UPDATES=50 WALLBOARD_BENCH_PERIOD_MS=500 \
//!     cargo bench --bench wallboard_clients
//! ```
//!
//! `SWITCHBOARD_BIN` names a server binary to measure instead of building
//! `target/release/switchboard`.

use std::io::{BufRead, BufReader, Write as _};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Notify;

/// The agent whose pause reason changes.
const AGENT: &str = "1001";
const LOGIN: &str = "wallbench";
const PASSWORD: &str = "wallbench-password";
/// How long the server may take to print its "SIP listening" line.
const STARTUP: Duration = Duration::from_secs(20);
/// How long the clients may take to show their first board.
const CONNECT: Duration = Duration::from_secs(30);
/// How long after the last POST a client may take to show it.
const SETTLE: Duration = Duration::from_secs(5);
/// The aim.
const AIM: Duration = Duration::from_secs(1);

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(default)
}

// ------------------------------------------------------------------ the server

/// `target/release/switchboard`, built here unless `SWITCHBOARD_BIN` names one.
fn switchboard_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("SWITCHBOARD_BIN") {
        let p = PathBuf::from(p);
        assert!(p.is_file(), "SWITCHBOARD_BIN={} is not a file", p.display());
        // The server runs in its own directory.
        return p.canonicalize().expect("SWITCHBOARD_BIN");
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let status = Command::new(&cargo)
        .current_dir(root)
        .args([
            "build",
            "--quiet",
            "--release",
            "-p",
            "switchboard",
            "--bin",
            "switchboard",
        ])
        .status()
        .unwrap_or_else(|e| panic!("cannot run {cargo:?}: {e}"));
    assert!(status.success(), "cargo build -p switchboard failed");
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .map(|d| if d.is_absolute() { d } else { root.join(d) })
        .unwrap_or_else(|| root.join("target"));
    let bin = target.join("release").join("switchboard");
    assert!(bin.is_file(), "{} was not built", bin.display());
    bin
}

/// `switchboard passwd` for the bench login.
fn password_hash(bin: &Path) -> String {
    let mut child = Command::new(bin)
        .arg("passwd")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start switchboard passwd");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(format!("{PASSWORD}\n").as_bytes())
        .expect("write the password");
    let out = child.wait_with_output().expect("switchboard passwd");
    assert!(out.status.success(), "switchboard passwd failed");
    String::from_utf8(out.stdout)
        .expect("hash is text")
        .trim()
        .to_owned()
}

/// A loopback port free for TCP and UDP right now.
fn free_port() -> u16 {
    loop {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("bind a loopback port")
            .port();
        if std::net::UdpSocket::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("create the config copy");
    for e in std::fs::read_dir(from).expect("read config/").flatten() {
        let target = to.join(e.file_name());
        if e.file_type().is_ok_and(|t| t.is_dir()) {
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), &target).expect("copy a config file");
        }
    }
}

/// A `switchboard serve` on a copy of `config/`; SIGTERM (then SIGKILL) on drop.
struct Server {
    child: Child,
    dir: PathBuf,
    http: SocketAddr,
}

impl Server {
    fn start(bin: &Path, hash: &str, label: &str) -> Server {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let dir = std::env::temp_dir().join(format!(
            "switchboard-wallbench-{}-{label}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        let config = dir.join("config");
        copy_dir(&root.join("config"), &config);
        let http = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let sip = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let main = config.join("switchboard.toml");
        let mut t: toml::Table = std::fs::read_to_string(&main)
            .expect("read switchboard.toml")
            .parse()
            .expect("switchboard.toml is TOML");
        let mut set = |table: &str, key: &str, value: &str| {
            t.entry(table)
                .or_insert_with(|| toml::Value::Table(toml::Table::new()))
                .as_table_mut()
                .expect("a table")
                .insert(key.to_owned(), toml::Value::String(value.to_owned()));
        };
        set("sip", "bind", &sip.to_string());
        set("media", "bind", "127.0.0.1");
        set("media", "advertise", "127.0.0.1");
        set("http", "bind", &http.to_string());
        std::fs::write(&main, toml::to_string(&t).expect("TOML")).expect("write switchboard.toml");
        let users = config.join("users.toml");
        let mut u = std::fs::read_to_string(&users).expect("read users.toml");
        u.push_str(&format!(
            "\n[logins.{LOGIN}]\npassword_hash = \"{hash}\"\nroles = [\"supervisor\"]\n"
        ));
        std::fs::write(&users, u).expect("write users.toml");
        let log = std::fs::File::create(dir.join("server.log")).expect("create server.log");
        let mut child = Command::new(bin)
            .current_dir(&dir)
            .args(["serve", "--config"])
            .arg(&config)
            .env("NO_COLOR", "1")
            .env_remove("SWITCHBOARD_LOG")
            .env_remove("SWITCHBOARD_SIP_BIND")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if line.contains("SIP listening") {
                    let _ = tx.send(());
                }
            }
        });
        let server = Server { child, dir, http };
        if rx.recv_timeout(STARTUP).is_err() {
            panic!(
                "the server did not print \"SIP listening\" within {STARTUP:?}:\n{}",
                server.log()
            );
        }
        server
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default()
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// utime + stime in seconds.
    fn cpu(&self) -> f64 {
        process_cpu(&format!("/proc/{}/stat", self.pid()))
    }

    /// Resident memory in MiB.
    fn rss_mib(&self) -> f64 {
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
            .map_or(0.0, |kib| kib / 1024.0)
    }

    /// Open file descriptors (sockets included).
    fn fds(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.pid())).map_or(0, |d| d.count())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                let _ = std::fs::remove_dir_all(&self.dir);
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        eprintln!(
            "the server did not exit within 10 s of SIGTERM (killed); files kept in {}",
            self.dir.display()
        );
    }
}

/// utime + stime in seconds of the process whose `stat` file this is.
fn process_cpu(stat: &str) -> f64 {
    let stat = std::fs::read_to_string(stat).unwrap_or_default();
    let after = stat.rsplit_once(')').map_or("", |x| x.1);
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    // Fields after the command name: state is field 3; utime 14, stime 15 (USER_HZ = 100).
    (ticks(11) + ticks(12)) as f64 / 100.0
}

/// The system's count of connections dropped because a listen queue was full
/// (`TcpExt: ListenOverflows` in `/proc/net/netstat`; every listener on the machine).
fn listen_overflows() -> u64 {
    let text = std::fs::read_to_string("/proc/net/netstat").unwrap_or_default();
    let mut lines = text.lines().filter(|l| l.starts_with("TcpExt:"));
    let (Some(names), Some(values)) = (lines.next(), lines.next()) else {
        return 0;
    };
    names
        .split_whitespace()
        .zip(values.split_whitespace())
        .find(|(n, _)| *n == "ListenOverflows")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0)
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

// ------------------------------------------------------------------ HTTP/1.1 by hand

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// A response head: status and headers (names lower-cased).
struct Head {
    status: u16,
    headers: Vec<(String, String)>,
}

impl Head {
    fn parse(raw: &[u8]) -> Option<Head> {
        let text = std::str::from_utf8(raw).ok()?;
        let mut lines = text.split("\r\n");
        let status = lines.next()?.split(' ').nth(1)?.parse().ok()?;
        let headers = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
            .collect();
        Some(Head { status, headers })
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    fn chunked(&self) -> bool {
        self.header("transfer-encoding")
            .is_some_and(|v| v.eq_ignore_ascii_case("chunked"))
    }
}

/// Moves the complete chunks of `raw` into `body`; true once the last chunk arrived.
fn dechunk(raw: &mut Vec<u8>, body: &mut Vec<u8>) -> Result<bool, String> {
    loop {
        let Some(eol) = find(raw, b"\r\n") else {
            return Ok(false);
        };
        let line = std::str::from_utf8(&raw[..eol]).map_err(|_| "chunk size is not text")?;
        let size_text = line.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size_text, 16)
            .map_err(|_| format!("bad chunk size line {line:?}"))?;
        if size == 0 {
            return Ok(true);
        }
        if raw.len() < eol + 2 + size + 2 {
            return Ok(false);
        }
        body.extend_from_slice(&raw[eol + 2..eol + 2 + size]);
        raw.drain(..eol + 2 + size + 2);
    }
}

/// One request on a new connection (`Connection: close`): status, headers and body.
async fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Result<(Head, Vec<u8>), String> {
    let mut s = TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect {addr}: {e}"))?;
    let _ = s.set_nodelay(true);
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    if !body.is_empty() {
        req.push_str("Content-Type: application/json\r\n");
    }
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(body);
    s.write_all(req.as_bytes())
        .await
        .map_err(|e| format!("send: {e}"))?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)
        .await
        .map_err(|e| format!("read: {e}"))?;
    let end = find(&raw, b"\r\n\r\n").ok_or("no response head")?;
    let head = Head::parse(&raw[..end]).ok_or("bad response head")?;
    let mut rest = raw[end + 4..].to_vec();
    let body = if head.chunked() {
        let mut b = Vec::new();
        dechunk(&mut rest, &mut b)?;
        b
    } else {
        rest
    };
    Ok((head, body))
}

/// Log in; the session cookie (`name=value`) and the CSRF token.
async fn login(addr: SocketAddr) -> (String, String) {
    let body = serde_json::json!({ "login": LOGIN, "password": PASSWORD }).to_string();
    let (head, reply) = request(addr, "POST", "/api/login", &[], &body)
        .await
        .expect("POST /api/login");
    assert_eq!(
        head.status,
        200,
        "login refused: {}",
        String::from_utf8_lossy(&reply)
    );
    let cookie = head
        .header("set-cookie")
        .and_then(|c| c.split(';').next())
        .expect("a session cookie")
        .to_owned();
    let me: serde_json::Value = serde_json::from_slice(&reply).expect("login answer is JSON");
    let csrf = me["csrf"].as_str().expect("a csrf token").to_owned();
    (cookie, csrf)
}

// ------------------------------------------------------------------ the clients

/// What the driver and every client share.
struct Shared {
    /// When update i (1-based; index 0 unused) was sent.
    sent: Mutex<Vec<Option<Instant>>>,
    /// Clients that showed their first board.
    ready: AtomicUsize,
    /// Clients that showed the last update.
    done: AtomicUsize,
    updates: usize,
    changed: Notify,
    /// Becomes true when the clients are to close their streams.
    stop: tokio::sync::watch::Receiver<bool>,
}

/// One client's record.
#[derive(Default)]
struct Watched {
    /// Update i → when this client showed it (or a later one).
    shown: Vec<Option<Instant>>,
    superseded: usize,
    boards: usize,
    keep_alives: usize,
    /// Boards without the agent on them (published before the agents were configured).
    without_agent: usize,
    /// From connecting to the first board with the agent on it.
    first_after: Duration,
    /// The longest time between two boards after the first.
    longest_gap: Duration,
    first: Option<(String, Option<String>)>,
    error: Option<String>,
}

/// The update a pause reason stands for (`lunch-7` → 7).
fn update_of(reason: &str) -> Option<usize> {
    let (kind, n) = reason.rsplit_once('-')?;
    matches!(kind, "lunch" | "break")
        .then(|| n.parse().ok())
        .flatten()
}

fn reason_for(i: usize) -> String {
    format!("{}-{i}", if i % 2 == 1 { "lunch" } else { "break" })
}

/// Open one event stream and record what it shows until told to stop.
async fn watch(addr: SocketAddr, cookie: Arc<str>, shared: Arc<Shared>) -> Watched {
    let mut w = Watched {
        shown: vec![None; shared.updates + 1],
        ..Watched::default()
    };
    if let Err(e) = watch_stream(addr, &cookie, &shared, &mut w).await {
        w.error = Some(e);
    }
    w
}

async fn watch_stream(
    addr: SocketAddr,
    cookie: &str,
    shared: &Shared,
    w: &mut Watched,
) -> Result<(), String> {
    let opened = Instant::now();
    let mut s = TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let _ = s.set_nodelay(true);
    let req = format!(
        "GET /api/events HTTP/1.1\r\nHost: {addr}\r\nAccept: text/event-stream\r\nCookie: {cookie}\r\n\r\n"
    );
    s.write_all(req.as_bytes())
        .await
        .map_err(|e| format!("send: {e}"))?;
    let mut raw: Vec<u8> = Vec::with_capacity(16 * 1024);
    let mut text: Vec<u8> = Vec::with_capacity(16 * 1024);
    let mut head: Option<Head> = None;
    let mut buf = vec![0u8; 16 * 1024];
    let mut last_seen = 0usize;
    let mut last_board: Option<Instant> = None;
    let mut stop = shared.stop.clone();
    loop {
        let n = tokio::select! {
            r = s.read(&mut buf) => r.map_err(|e| format!("read: {e}"))?,
            _ = stop.wait_for(|s| *s) => return Ok(()),
        };
        let at = Instant::now();
        if n == 0 {
            return Err("the server closed the stream".into());
        }
        raw.extend_from_slice(&buf[..n]);
        let chunked = match &head {
            Some(h) => h.chunked(),
            None => {
                let Some(end) = find(&raw, b"\r\n\r\n") else {
                    continue;
                };
                let h = Head::parse(&raw[..end]).ok_or("bad response head")?;
                if h.status != 200 {
                    return Err(format!(
                        "GET /api/events answered {}: {}",
                        h.status,
                        String::from_utf8_lossy(&raw[end + 4..])
                    ));
                }
                raw.drain(..end + 4);
                let c = h.chunked();
                head = Some(h);
                c
            }
        };
        if chunked {
            if dechunk(&mut raw, &mut text)? {
                return Err("the server ended the stream".into());
            }
        } else {
            text.append(&mut raw);
        }
        text.retain(|&b| b != b'\r');
        while let Some(end) = find(&text, b"\n\n") {
            let block: Vec<u8> = text.drain(..end + 2).collect();
            let block = String::from_utf8_lossy(&block);
            let mut event = "message";
            let mut data = String::new();
            for line in block.lines() {
                if line.starts_with(':') {
                    w.keep_alives += 1;
                } else if let Some(v) = line.strip_prefix("event:") {
                    event = v.trim_start();
                } else if let Some(v) = line.strip_prefix("data:") {
                    if !data.is_empty() {
                        data.push('\n');
                    }
                    data.push_str(v.strip_prefix(' ').unwrap_or(v));
                }
            }
            if event != "board" || data.is_empty() {
                continue;
            }
            let board: serde_json::Value =
                serde_json::from_str(&data).map_err(|e| format!("board is not JSON: {e}"))?;
            let Some(agent) = board["agents"]
                .as_array()
                .and_then(|a| a.iter().find(|a| a["name"] == AGENT))
            else {
                // A board published before the server configured its agents.
                w.without_agent += 1;
                continue;
            };
            let state = agent["state"].as_str().unwrap_or("").to_owned();
            let reason = agent["reason"].as_str().map(str::to_owned);
            w.boards += 1;
            if let Some(prev) = last_board {
                w.longest_gap = w.longest_gap.max(at - prev);
            }
            last_board = Some(at);
            if w.first.is_none() {
                w.first = Some((state, reason.clone()));
                w.first_after = at - opened;
                shared.ready.fetch_add(1, Ordering::Relaxed);
                shared.changed.notify_one();
            }
            let Some(k) = reason.as_deref().and_then(update_of) else {
                continue;
            };
            if k <= last_seen || k > shared.updates {
                continue;
            }
            for j in last_seen + 1..=k {
                w.shown[j] = Some(at);
            }
            w.superseded += k - last_seen - 1;
            last_seen = k;
            if k == shared.updates {
                shared.done.fetch_add(1, Ordering::Relaxed);
                shared.changed.notify_one();
            }
        }
    }
}

// ------------------------------------------------------------------ one size

struct Outcome {
    clients: usize,
    connected: usize,
    errors: Vec<String>,
    updates: usize,
    posts_refused: usize,
    post_p50: Duration,
    post_max: Duration,
    /// One per (client, update) shown.
    latencies: Vec<Duration>,
    missed: usize,
    superseded: usize,
    cpu_per_update_ms: f64,
    /// This process's CPU (the clients and the driver) per update.
    client_cpu_per_update_ms: f64,
    window: Duration,
    rss: (f64, f64, f64),
    fds: (usize, usize, usize),
    longest_gap: Duration,
    keep_alives: usize,
    without_agent: usize,
    slowest_first_board: Duration,
    /// Listen-queue overflows on the machine while the streams were opened.
    overflows: u64,
    first: Option<(String, Option<String>)>,
}

fn pct(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// When update i (1-based) is sent, from the first: every `period`, plus 97·i mod 250 ms. The
/// server publishes on a 250 ms tick; a fixed period would meet the tick at a few fixed
/// phases, which would move the percentiles from one server start to the next. With
/// `period` a multiple of 250 ms the updates fall evenly over the tick.
fn send_offset(i: usize, period: Duration) -> Duration {
    let i = i as u32;
    period * (i - 1) + Duration::from_millis(u64::from(97 * i % 250))
}

async fn run_size(server: &Server, clients: usize, updates: usize, period: Duration) -> Outcome {
    let addr = server.http;
    let rss_before = server.rss_mib();
    let fds_before = server.fds();
    let (cookie, csrf) = login(addr).await;
    let cookie: Arc<str> = Arc::from(cookie);
    let (stop, stop_rx) = tokio::sync::watch::channel(false);
    let shared = Arc::new(Shared {
        sent: Mutex::new(vec![None; updates + 1]),
        ready: AtomicUsize::new(0),
        done: AtomicUsize::new(0),
        updates,
        changed: Notify::new(),
        stop: stop_rx,
    });
    let overflows = listen_overflows();
    let tasks: Vec<_> = (0..clients)
        .map(|_| tokio::spawn(watch(addr, cookie.clone(), shared.clone())))
        .collect();
    let deadline = tokio::time::Instant::now() + CONNECT;
    while shared.ready.load(Ordering::Relaxed) < clients
        && tokio::time::Instant::now() < deadline
        && !tasks.iter().all(|t| t.is_finished())
    {
        let _ = tokio::time::timeout(Duration::from_millis(100), shared.changed.notified()).await;
    }
    let connected = shared.ready.load(Ordering::Relaxed);
    let overflows = listen_overflows() - overflows;
    let rss_connected = server.rss_mib();
    let fds_connected = server.fds();

    let cpu0 = server.cpu();
    let own0 = process_cpu("/proc/self/stat");
    let t0 = Instant::now();
    let start = tokio::time::Instant::now();
    let mut posts = Vec::with_capacity(updates);
    let mut posts_refused = 0;
    let path = format!("/api/agents/{AGENT}/state");
    for i in 1..=updates {
        tokio::time::sleep_until(start + send_offset(i, period)).await;
        let body = serde_json::json!({ "state": "paused", "reason": reason_for(i) }).to_string();
        let sent = Instant::now();
        shared.sent.lock().unwrap_or_else(|e| e.into_inner())[i] = Some(sent);
        let r = request(
            addr,
            "POST",
            &path,
            &[("Cookie", &cookie), ("X-CSRF-Token", &csrf)],
            &body,
        )
        .await;
        posts.push(sent.elapsed());
        match r {
            Ok((h, _)) if h.status == 200 => {}
            Ok((h, b)) => {
                posts_refused += 1;
                eprintln!(
                    "update {i}: POST answered {}: {}",
                    h.status,
                    String::from_utf8_lossy(&b)
                );
            }
            Err(e) => {
                posts_refused += 1;
                eprintln!("update {i}: POST failed: {e}");
            }
        }
    }
    let settle = tokio::time::Instant::now() + SETTLE;
    while shared.done.load(Ordering::Relaxed) < connected && tokio::time::Instant::now() < settle {
        let _ = tokio::time::timeout(Duration::from_millis(50), shared.changed.notified()).await;
    }
    let window = t0.elapsed();
    let cpu = server.cpu() - cpu0;
    let own = process_cpu("/proc/self/stat") - own0;
    let rss_end = server.rss_mib();

    let _ = stop.send(true);
    let mut watched = Vec::with_capacity(clients);
    for t in tasks {
        watched.push(t.await.expect("client task"));
    }
    // Closed streams should leave the server within a publish (at most a second).
    tokio::time::sleep(Duration::from_secs(3)).await;
    let fds_after = server.fds();

    let sent = shared
        .sent
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    let mut latencies = Vec::new();
    let mut missed = 0;
    let mut errors = Vec::new();
    for w in &watched {
        if let Some(e) = &w.error {
            errors.push(e.clone());
        }
        if w.first.is_none() {
            continue;
        }
        // Index 0 stands for no update.
        for (shown, sent) in w.shown.iter().zip(&sent).skip(1) {
            match (shown, sent) {
                (Some(at), Some(s)) => latencies.push(at.saturating_duration_since(*s)),
                _ => missed += 1,
            }
        }
    }
    latencies.sort();
    posts.sort();
    Outcome {
        clients,
        connected,
        errors,
        updates,
        posts_refused,
        post_p50: pct(&posts, 50.0),
        post_max: posts.last().copied().unwrap_or_default(),
        latencies,
        missed,
        superseded: watched.iter().map(|w| w.superseded).sum(),
        cpu_per_update_ms: cpu * 1000.0 / updates as f64,
        client_cpu_per_update_ms: own * 1000.0 / updates as f64,
        window,
        rss: (rss_before, rss_connected, rss_end),
        fds: (fds_before, fds_connected, fds_after),
        longest_gap: watched
            .iter()
            .map(|w| w.longest_gap)
            .max()
            .unwrap_or_default(),
        keep_alives: watched.iter().map(|w| w.keep_alives).sum(),
        without_agent: watched.iter().map(|w| w.without_agent).sum(),
        overflows,
        slowest_first_board: watched
            .iter()
            .map(|w| w.first_after)
            .max()
            .unwrap_or_default(),
        first: watched.iter().find_map(|w| w.first.clone()),
    }
}

impl Outcome {
    /// Deliveries under the aim over every (client, update) pair; missed ones count as over.
    fn under_aim(&self) -> f64 {
        let total = self.latencies.len() + self.missed;
        if total == 0 {
            return 0.0;
        }
        let under = self.latencies.iter().filter(|l| **l < AIM).count();
        under as f64 / total as f64
    }

    fn p(&self, p: f64) -> Duration {
        pct(&self.latencies, p)
    }

    fn summary(&self) -> String {
        let (first_state, first_reason) = self.first.clone().unwrap_or_default();
        format!(
            "{} clients: {}/{} streams open, {} updates ({} refused), {} deliveries + {} missed \
             ({} superseded): p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms, under 1 s {:.2} %; \
             server CPU {:.2} ms per update over {:.1} s (clients {:.2} ms); RSS {:.1} → {:.1} → {:.1} MiB; \
             fds {} → {} → {} (3 s after close); longest gap between boards {:.2} s; \
             {} keep-alives; first board with agent {AGENT} at most {:.0} ms after connecting \
             ({} boards without it before; {} listen-queue overflows while connecting); POST p50 {:.1} ms, max {:.1} ms; agent {AGENT} started {}/{}",
            self.clients,
            self.connected,
            self.clients,
            self.updates,
            self.posts_refused,
            self.latencies.len(),
            self.missed,
            self.superseded,
            ms(self.p(50.0)),
            ms(self.p(99.0)),
            ms(self.latencies.last().copied().unwrap_or_default()),
            self.under_aim() * 100.0,
            self.cpu_per_update_ms,
            self.window.as_secs_f64(),
            self.client_cpu_per_update_ms,
            self.rss.0,
            self.rss.1,
            self.rss.2,
            self.fds.0,
            self.fds.1,
            self.fds.2,
            self.longest_gap.as_secs_f64(),
            self.keep_alives,
            ms(self.slowest_first_board),
            self.without_agent,
            self.overflows,
            ms(self.post_p50),
            ms(self.post_max),
            first_state,
            first_reason.as_deref().unwrap_or("-"),
        )
    }
}

fn main() {
    // `cargo bench` passes --bench; the bench takes its settings from the environment.
    let sizes: Vec<usize> = std::env::var("WALLBOARD_BENCH_CLIENTS")
        .unwrap_or_else(|_| "1,200".into())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    let updates: usize = env_or("WALLBOARD_BENCH_UPDATES", 100).max(1);
    let period = Duration::from_millis(env_or("WALLBOARD_BENCH_PERIOD_MS", 500));
    let bin = switchboard_bin();
    let hash = password_hash(&bin);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    println!(
        "wallboard clients: {} updates of agent {AGENT}'s pause reason, one every {} ms (+ 0-249 ms), per size {:?}; server {} [load average {}]",
        updates,
        period.as_millis(),
        sizes,
        bin.display(),
        load_average()
    );
    let mut outcomes = Vec::new();
    for &n in &sizes {
        let server = Server::start(&bin, &hash, &n.to_string());
        let o = rt.block_on(run_size(&server, n, updates, period));
        println!("{} [load average {}]", o.summary(), load_average());
        for e in o.errors.iter().take(5) {
            println!("  client error: {e}");
        }
        if !o.errors.is_empty() {
            println!(
                "  {} clients ended with an error; server log tail:\n{}",
                o.errors.len(),
                tail(&server.log(), 20)
            );
        }
        outcomes.push(o);
    }
    println!();
    println!("| clients | streams open | deliveries | missed | p50 (ms) | p99 (ms) | max (ms) | under 1 s | server CPU per update (ms) | client CPU per update (ms) | server RSS connected → end (MiB) |");
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for o in &outcomes {
        println!(
            "| {} | {} | {} | {} | {:.1} | {:.1} | {:.1} | {:.2} % | {:.2} | {:.2} | {:.1} → {:.1} |",
            o.clients,
            o.connected,
            o.latencies.len(),
            o.missed,
            ms(o.p(50.0)),
            ms(o.p(99.0)),
            ms(o.latencies.last().copied().unwrap_or_default()),
            o.under_aim() * 100.0,
            o.cpu_per_update_ms,
            o.client_cpu_per_update_ms,
            o.rss.1,
            o.rss.2,
        );
    }
    if let (Some(base), true) = (outcomes.first(), outcomes.len() > 1) {
        for o in &outcomes[1..] {
            println!(
                "ratio {} clients / {} client(s): p99 {:.2}x, p50 {:.2}x, server CPU per update {:.2}x",
                o.clients,
                base.clients,
                ms(o.p(99.0)) / ms(base.p(99.0)),
                ms(o.p(50.0)) / ms(base.p(50.0)),
                o.cpu_per_update_ms / base.cpu_per_update_ms,
            );
        }
    }
}

fn tail(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}
