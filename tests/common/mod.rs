//! Shared harness for the end-to-end tests in `tests/`: builds and starts the real
//! `switchboard` binary on a temporary config and an OS-chosen port, and runs SIPp
//! scenarios from `tests/sipp/` against it.
//!
//! Use it from a test file with `mod common;`. Everything talks to 127.0.0.1 only.
//!
//! ```ignore
//! let server = common::Server::start(&common::ServerConfig::default());
//! let run = common::SippRun::new(&server, "register_refresh_unregister.xml")
//!     .injection(&common::users_csv(server.dir(), 1001..=1100, common::demo_password))
//!     .calls(100)
//!     .run();
//! run.assert_all_succeeded(100);
//! ```
//!
//! Nothing here passes silently when a part is missing: without SIPp the test fails with
//! "sipp not found: apt-get install sip-tester".

// Each test file compiles its own copy and uses only part of it.
#![allow(dead_code)]

use std::collections::{BTreeMap, HashSet};
use std::fmt::Write as _;
use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{mpsc, Mutex, OnceLock};
use std::time::{Duration, Instant};

pub(crate) mod http;
pub(crate) mod phone;
pub(crate) mod ua;

/// How long the server may take to print its "SIP listening" line.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(20);
/// How long the server may take to exit after SIGTERM before it is killed.
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(10);

// ------------------------------------------------------------------ the binary

/// Path of the `switchboard` binary, built once per test process.
///
/// The root package (`switchboard-tests`) has no bin target, so Cargo does not build the
/// server for these tests by itself: this runs `cargo build -p switchboard` (with
/// `--release` when the tests themselves are an optimised build) and returns
/// `<target dir>/<profile>/switchboard`. `SWITCHBOARD_BIN` skips the build and names a
/// binary to test instead.
pub(crate) fn switchboard_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Some(p) = std::env::var_os("SWITCHBOARD_BIN") {
            let p = PathBuf::from(p);
            assert!(p.is_file(), "SWITCHBOARD_BIN={} is not a file", p.display());
            return p;
        }
        built_bin("switchboard", "switchboard")
    })
}

/// Path of the headless phone `switchboard-phone`, built once per test process like the
/// server.
pub(crate) fn phone_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| built_bin("softphone", "switchboard-phone"))
}

/// Build binary `bin` of package `package` (release when the tests are optimised) and
/// return its path.
fn built_bin(package: &str, bin: &str) -> PathBuf {
    let manifest_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let cargo = std::env::var_os("CARGO")
        .or_else(|| option_env!("CARGO").map(Into::into))
        .unwrap_or_else(|| "cargo".into());
    let release = !cfg!(debug_assertions);
    let mut cmd = Command::new(&cargo);
    cmd.current_dir(manifest_dir)
        .args(["build", "--quiet", "-p", package, "--bin", bin]);
    if release {
        cmd.arg("--release");
    }
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cargo:?} to build {package}: {e}"));
    assert!(
        out.status.success(),
        "`cargo build -p {package}` failed ({}):\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let target_dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .map(|d| {
            if d.is_absolute() {
                d
            } else {
                manifest_dir.join(d)
            }
        })
        .unwrap_or_else(|| manifest_dir.join("target"));
    let path = target_dir
        .join(if release { "release" } else { "debug" })
        .join(format!("{bin}{}", std::env::consts::EXE_SUFFIX));
    assert!(
        path.is_file(),
        "cargo built {bin} but {} does not exist (a target dir set in \
             .cargo/config? set CARGO_TARGET_DIR or SWITCHBOARD_BIN)",
        path.display()
    );
    path
}

/// The server's call records once there are at least `n` (up to 10 s).
pub(crate) fn call_rows(server: &Server, n: usize) -> Vec<store::CallRow> {
    let db = server.dir().join("data/switchboard.db");
    let mut rows = Vec::new();
    wait_until(Duration::from_secs(10), "the call records", || {
        rows = store::Store::open_read_only(&db)
            .and_then(|s| s.calls_between(0, i64::MAX))
            .unwrap_or_default();
        rows.len() >= n
    });
    rows
}

// ------------------------------------------------------------------ temp dirs and ports

/// A fresh, empty directory under the system temp dir, named after `label`.
pub(crate) fn temp_dir(label: &str) -> PathBuf {
    static SEQ: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let dir = std::env::temp_dir().join(format!(
        "switchboard-test-{label}-{}-{}-{nanos}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir)
        .unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
    dir
}

/// A 127.0.0.1 port that is free for both UDP and TCP right now, and not handed out
/// before by this process. SIPp needs an explicit `-p`, so the port is found by binding
/// both sockets to port 0 and releasing them.
pub(crate) fn free_port() -> u16 {
    static GIVEN: OnceLock<Mutex<HashSet<u16>>> = OnceLock::new();
    let given = GIVEN.get_or_init(|| Mutex::new(HashSet::new()));
    for _ in 0..100 {
        let Ok(udp) = UdpSocket::bind("127.0.0.1:0") else {
            continue;
        };
        let Ok(addr) = udp.local_addr() else { continue };
        let port = addr.port();
        if TcpListener::bind(("127.0.0.1", port)).is_err() {
            continue;
        }
        if given.lock().unwrap_or_else(|e| e.into_inner()).insert(port) {
            return port;
        }
    }
    panic!("no free 127.0.0.1 port for both UDP and TCP after 100 tries");
}

/// A free port whose next port is free too, for peers that bind both (baresip listens for
/// SIP over TLS on its SIP port + 1).
pub(crate) fn free_port_pair() -> u16 {
    for _ in 0..100 {
        let port = free_port();
        let Some(next) = port.checked_add(1) else {
            continue;
        };
        if UdpSocket::bind(("127.0.0.1", next)).is_ok()
            && TcpListener::bind(("127.0.0.1", next)).is_ok()
        {
            return port;
        }
    }
    panic!("no free pair of ports on 127.0.0.1");
}

// ------------------------------------------------------------------ config

/// The password the tests give user `n`: `demo<n>`.
/// An 8 kHz mono 16-bit WAV of a `hz` sine lasting `secs` (a prompt, a fake microphone).
pub(crate) fn write_tone(path: &Path, hz: f64, secs: f64) {
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: 8000,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::create(path, spec).expect("create tone WAV");
    for i in 0..(secs * 8000.0) as usize {
        let v = (2.0 * std::f64::consts::PI * hz * i as f64 / 8000.0).sin() * 8000.0;
        w.write_sample(v as i16).expect("write tone WAV");
    }
    w.finalize().expect("finish tone WAV");
}

/// A self-signed certificate for 127.0.0.1 and its key (PEM) in `dir`, made by openssl:
/// `(NAME-cert.pem, NAME-key.pem)`.
pub(crate) fn test_certificate(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    let (cert, key) = (
        dir.join(format!("{name}-cert.pem")),
        dir.join(format!("{name}-key.pem")),
    );
    let out = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
        ])
        .args(["-nodes", "-days", "30", "-subj", "/CN=127.0.0.1"])
        .args(["-addext", "subjectAltName=IP:127.0.0.1"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("openssl (apt-get install openssl)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    (cert, key)
}

/// The hash `switchboard passwd` makes of `password` (for `[logins.NAME] password_hash`).
pub(crate) fn password_hash(password: &str) -> String {
    use std::io::Write as _;
    let mut child = Command::new(switchboard_bin())
        .arg("passwd")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("switchboard passwd");
    writeln!(child.stdin.take().expect("stdin"), "{password}").expect("password");
    let out = child.wait_with_output().expect("switchboard passwd");
    assert!(out.status.success());
    String::from_utf8(out.stdout)
        .expect("UTF-8")
        .trim()
        .to_owned()
}

/// Whether Debian's chromium and playwright-core (in tests/browser) are here. In CI, which
/// installs them, their absence fails the test; elsewhere the browser step is skipped with
/// a line saying so.
pub(crate) fn browser_ready(step: &str) -> bool {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser");
    let ready = Path::new("/usr/bin/chromium").exists()
        && dir.join("node_modules/playwright-core").exists();
    if !ready {
        assert!(
            std::env::var_os("CI").is_none(),
            "chromium or playwright-core missing (.ci/run installs them)"
        );
        eprintln!("SKIPPED browser step {step}: install chromium and run npm ci in tests/browser");
    }
    ready
}

pub(crate) fn demo_password(user: u32) -> String {
    format!("demo{user}")
}

/// What goes into the temporary config directory of one server.
#[derive(Debug, Clone)]
pub(crate) struct ServerConfig {
    /// Digest realm.
    pub(crate) realm: String,
    /// Accounts `[users.N]` with password [`demo_password`]`(N)`.
    pub(crate) users: RangeInclusive<u32>,
    /// `[auth] algorithms`.
    pub(crate) algorithms: Vec<String>,
    /// `[registrar] qualify_interval`; 0 = no OPTIONS pings (SIPp does not answer them
    /// unless run with `-aa`).
    pub(crate) qualify_interval: u64,
    /// `[registrar] max_expires`: registrations are granted at most this long.
    pub(crate) max_expires: u32,
    /// `[security]` keys.
    pub(crate) rate_limit: u32,
    pub(crate) max_auth_failures: u32,
    pub(crate) failure_window: u64,
    pub(crate) ban_duration: u64,
    /// `[log] level` (stderr goes to `server.log` in the config dir).
    pub(crate) log: String,
    /// Extra TOML appended to `switchboard.toml` as is (whole tables only).
    pub(crate) extra_toml: String,
    /// `[calls] challenge`.
    pub(crate) challenge: bool,
    /// More keys for the `[calls]` table, as TOML lines.
    pub(crate) calls_extra: String,
    /// Other files of the config dir: (name, contents), e.g. queues.toml, agents.toml.
    pub(crate) files: Vec<(String, String)>,
    /// Appended to users.toml (web logins).
    pub(crate) users_extra: String,
    /// More keys for the `[sip]` table, as TOML lines (`ws = "127.0.0.1:PORT"`).
    pub(crate) sip_extra: String,
}

/// A range of RTP ports for one server of this process: `[media]` ranges never overlap
/// between the servers of one test run (tests in a file run in parallel).
pub(crate) fn media_ports(pairs: u16) -> (u16, u16) {
    static NEXT: OnceLock<Mutex<u16>> = OnceLock::new();
    let next = NEXT.get_or_init(|| {
        // Start somewhere different for each test process so that a lingering server of an
        // earlier run does not collide either.
        // Below the kernel's ephemeral range (32768+), where free_port() finds its ports.
        Mutex::new(10_000 + (std::process::id() % 20) as u16 * 1_000)
    });
    let mut n = next.lock().unwrap_or_else(|e| e.into_inner());
    if *n as u32 + pairs as u32 * 2 + 2 > 32_000 {
        *n = 10_000;
    }
    let start = *n;
    *n += pairs * 2 + 2;
    (start, start + pairs * 2 + 1)
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            realm: "switchboard-test".into(),
            users: 1001..=1100,
            algorithms: vec!["MD5".into()],
            qualify_interval: 0,
            max_expires: 3600,
            // Bulk runs come from one loopback address.
            rate_limit: 0,
            max_auth_failures: 10,
            failure_window: 60,
            ban_duration: 600,
            log: "info".into(),
            extra_toml: String::new(),
            challenge: true,
            calls_extra: String::new(),
            files: Vec::new(),
            users_extra: String::new(),
            sip_extra: String::new(),
        }
    }
}

impl ServerConfig {
    /// Queue `support` on 600 served by agent 1001 (logged in at start), with `extra`
    /// appended to agents.toml (a supervisor rule, say).
    pub(crate) fn support_desk(extra: &str) -> ServerConfig {
        ServerConfig {
            files: vec![
                (
                    "queues.toml".into(),
                    "[queues.support]\nnumber = \"600\"\n".into(),
                ),
                (
                    "agents.toml".into(),
                    format!(
                        "[agents.1001]\nuser = \"1001\"\nqueues = [\"support\"]\n\
                         login_on_start = true\n\n{extra}"
                    ),
                ),
            ],
            ..ServerConfig::default()
        }
    }

    fn write(&self, dir: &Path) {
        let ports = media_ports(250);
        let algorithms = self
            .algorithms
            .iter()
            .map(|a| format!("\"{a}\""))
            .collect::<Vec<_>>()
            .join(", ");
        let server = format!(
            "# written by tests/common/mod.rs\n\
             [sip]\n\
             bind = \"127.0.0.1:0\"\n\
             realm = \"{realm}\"\n\
             {sip_extra}\
             \n\
             [registrar]\n\
             qualify_interval = {qualify}\n\
             max_expires = {max_expires}\n\
             default_expires = {default_expires}\n\
             \n\
             [auth]\n\
             algorithms = [{algorithms}]\n\
             \n\
             [security]\n\
             rate_limit = {rate}\n\
             max_auth_failures = {maxfail}\n\
             failure_window = {window}\n\
             ban_duration = {ban}\n\
             \n\
             [log]\n\
             level = \"{log}\"\n\
             \n\
             [media]\n\
             bind = \"127.0.0.1\"\n\
             advertise = \"127.0.0.1\"\n\
             port_min = {pmin}\n\
             port_max = {pmax}\n\
             \n\
             [calls]\n\
             challenge = {challenge}\n\
             {calls_extra}\
             {recording}\
             {extra}\n",
            realm = self.realm,
            sip_extra = self.sip_extra,
            qualify = self.qualify_interval,
            max_expires = self.max_expires,
            default_expires = self.max_expires.min(3600),
            rate = self.rate_limit,
            maxfail = self.max_auth_failures,
            window = self.failure_window,
            ban = self.ban_duration,
            log = self.log,
            pmin = ports.0,
            pmax = ports.1,
            challenge = self.challenge,
            calls_extra = self.calls_extra,
            // Recordings (and the reload status file beside them) stay in the test's dir.
            recording = if self.extra_toml.contains("[recording]") {
                String::new()
            } else {
                format!(
                    "\n[recording]\ndir = \"{}\"\n",
                    dir.join("data/recordings").display()
                )
            },
            extra = self.extra_toml,
        );
        let mut users = String::from("# written by tests/common/mod.rs\n");
        for u in self.users.clone() {
            let _ = writeln!(users, "[users.{u}]\npassword = \"{}\"\n", demo_password(u));
        }
        write_file(&dir.join("switchboard.toml"), &server);
        users.push_str(&self.users_extra);
        write_file(&dir.join("users.toml"), &users);
        for (name, text) in &self.files {
            write_file(&dir.join(name), text);
        }
    }
}

fn write_file(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
}

// ------------------------------------------------------------------ the server

/// A running `switchboard serve` on a temporary config; stopped with SIGTERM on drop.
pub(crate) struct Server {
    child: Option<Child>,
    dir: PathBuf,
    /// UDP address it listens on (127.0.0.1:port).
    pub(crate) udp: SocketAddr,
    /// TCP address it listens on (same port).
    pub(crate) tcp: SocketAddr,
    /// The "SIP listening" line it printed.
    pub(crate) banner: String,
}

impl Server {
    /// Writes `cfg` to a fresh directory and starts the server on 127.0.0.1, port 0.
    /// Returns once the server has printed its "SIP listening" line.
    pub(crate) fn start(cfg: &ServerConfig) -> Server {
        let bin = switchboard_bin();
        let dir = temp_dir("server");
        cfg.write(&dir);
        let log = std::fs::File::create(dir.join("server.log")).expect("create server.log");
        let mut child = Command::new(bin)
            .args(["serve", "--config"])
            .arg(&dir)
            .args(["--sip-bind", "127.0.0.1:0"])
            .env_remove("SWITCHBOARD_SIP_BIND")
            .env_remove("SWITCHBOARD_LOG")
            .env_remove("SWITCHBOARD_CONFIG")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));

        // Read stdout on a thread so a silent server cannot hang the test.
        let stdout = child.stdout.take().expect("stdout is piped");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        let mut seen = Vec::new();
        let banner = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) if line.starts_with("switchboard: SIP listening on") => break line,
                Ok(line) => seen.push(line),
                Err(_) => {
                    let status = child.try_wait().ok().flatten();
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!(
                        "switchboard did not print its \"SIP listening\" line within {:?} \
                         (exit status {status:?}); stdout:\n{}\nstderr:\n{}",
                        STARTUP_TIMEOUT,
                        seen.join("\n"),
                        read_lossy(&dir.join("server.log")),
                    );
                }
            }
        };
        let (udp, tcp) = parse_banner(&banner)
            .unwrap_or_else(|| panic!("cannot parse the listening line: {banner:?}"));
        Server {
            child: Some(child),
            dir,
            udp,
            tcp,
            banner,
        }
    }

    /// The config directory (also holds `server.log`; a good place for test files).
    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    /// The server's stderr so far.
    pub(crate) fn log(&self) -> String {
        read_lossy(&self.dir.join("server.log"))
    }

    /// Wait up to `within` for a line of the server's log that satisfies `pred`; the line.
    /// Panics with the log when none comes.
    pub(crate) fn wait_line(&self, within: Duration, pred: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + within;
        loop {
            let log = self.log();
            if let Some(l) = log.lines().find(|l| pred(l)) {
                return l.to_owned();
            }
            assert!(
                Instant::now() < deadline,
                "no such line in the server log within {within:?}:\n{log}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The server's process id, while it runs.
    pub(crate) fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// CPU time the server process has used so far (user + system, from /proc).
    pub(crate) fn cpu_time(&self) -> Duration {
        let pid = self.pid().expect("server running");
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("/proc/PID/stat");
        // Fields after the ")" that closes the command name: utime is the 12th, stime the 13th.
        let after = &stat[stat.rfind(')').expect("stat format") + 2..];
        let fields: Vec<&str> = after.split_whitespace().collect();
        let ticks: u64 =
            fields[11].parse::<u64>().unwrap_or(0) + fields[12].parse::<u64>().unwrap_or(0);
        // USER_HZ is 100 on Linux.
        Duration::from_millis(ticks * 10)
    }

    /// True while the process runs.
    pub(crate) fn is_running(&mut self) -> bool {
        matches!(self.child.as_mut().map(Child::try_wait), Some(Ok(None)))
    }

    /// SIGHUP: reload the configuration.
    pub(crate) fn hup(&self) {
        if let Some(c) = &self.child {
            let _ = Command::new("kill")
                .args(["-HUP", &c.id().to_string()])
                .status();
        }
    }

    /// SIGKILL: the process dies at once, as in a crash or an OOM kill.
    pub(crate) fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM, then wait for the exit (SIGKILL after [`SHUTDOWN_TIMEOUT`]).
    /// Returns the exit status, or `None` if it had to be killed.
    pub(crate) fn stop(&mut self) -> Option<ExitStatus> {
        let mut child = self.child.take()?;
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        let term = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        if !term.is_ok_and(|s| s.success()) {
            // No `kill` command to send SIGTERM with: do not wait for a graceful exit.
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        let deadline = Instant::now() + SHUTDOWN_TIMEOUT;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
        None
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
        if std::thread::panicking() {
            eprintln!("switchboard test files kept in {}", self.dir.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// `switchboard: SIP listening on udp 127.0.0.1:P tcp 127.0.0.1:P (realm R, N users)`
fn parse_banner(line: &str) -> Option<(SocketAddr, SocketAddr)> {
    let mut words = line.split_whitespace();
    let mut udp = None;
    let mut tcp = None;
    while let Some(w) = words.next() {
        match w {
            "udp" => udp = words.next().and_then(|a| a.parse().ok()),
            "tcp" => tcp = words.next().and_then(|a| a.parse().ok()),
            _ => {}
        }
    }
    Some((udp?, tcp?))
}

fn read_lossy(path: &Path) -> String {
    std::fs::read(path)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default()
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

// ------------------------------------------------------------------ SIPp

/// Path of the `sipp` executable (`SIPP` env var, else the PATH). Panics with the
/// install hint when it is missing: a test that needs SIPp never passes without it.
pub(crate) fn sipp() -> &'static Path {
    static SIPP: OnceLock<PathBuf> = OnceLock::new();
    SIPP.get_or_init(|| {
        let found = std::env::var_os("SIPP")
            .map(PathBuf::from)
            .filter(|p| p.is_file())
            .or_else(|| {
                std::env::var_os("PATH").and_then(|path| {
                    std::env::split_paths(&path)
                        .map(|d| d.join("sipp"))
                        .find(|p| p.is_file())
                })
            });
        let Some(path) = found else {
            panic!("sipp not found: apt-get install sip-tester");
        };
        match Command::new(&path).arg("-v").output() {
            Ok(out) if String::from_utf8_lossy(&out.stdout).contains("SIPp") => path,
            Ok(out) => panic!(
                "{} -v does not look like SIPp ({}): apt-get install sip-tester",
                path.display(),
                String::from_utf8_lossy(&out.stdout).trim()
            ),
            Err(e) => panic!(
                "sipp not found ({}: {e}): apt-get install sip-tester",
                path.display()
            ),
        }
    })
}

/// Path of a scenario in `tests/sipp/`.
pub(crate) fn scenario(name: &str) -> PathBuf {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/sipp")
        .join(name);
    assert!(p.is_file(), "no scenario {}", p.display());
    p
}

/// Writes a SIPp injection file (`SEQUENTIAL`) for `users`, one line each:
/// `user;password;[authentication username=user password=password]`.
/// SIPp 3.6.1 does not expand `[fieldN]` inside `[authentication]`, so the scenarios take
/// the whole keyword from field 2.
pub(crate) fn users_csv(
    dir: &Path,
    users: RangeInclusive<u32>,
    password: impl Fn(u32) -> String,
) -> PathBuf {
    let mut text = String::from("SEQUENTIAL\n");
    for u in users {
        let pw = password(u);
        let _ = writeln!(text, "{u};{pw};[authentication username={u} password={pw}]");
    }
    let path = dir.join("users.csv");
    write_file(&path, &text);
    path
}

/// Writes a raw SIPp injection file (`SEQUENTIAL` plus `lines`) named `name` in `dir`.
pub(crate) fn injection_file(dir: &Path, name: &str, lines: &[String]) -> PathBuf {
    let mut text = String::from("SEQUENTIAL\n");
    for l in lines {
        text.push_str(l);
        text.push('\n');
    }
    let path = dir.join(name);
    write_file(&path, &text);
    path
}

/// SIPp's transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Transport {
    /// `-t u1`: UDP, one socket.
    Udp,
    /// `-t t1`: TCP, one connection.
    Tcp,
}

/// One SIPp client run against a [`Server`].
pub(crate) struct SippRun {
    remote: SocketAddr,
    scenario: PathBuf,
    transport: Transport,
    injection: Option<PathBuf>,
    calls: u32,
    rate: u32,
    limit: u32,
    timeout_s: u32,
    extra: Vec<String>,
    label: String,
    /// Files copied into SIPp's working directory before it starts: (name, source).
    files: Vec<(String, PathBuf)>,
    /// The SIP port to listen on (a free one when `None`).
    port: Option<u16>,
}

impl SippRun {
    /// `scenario` is a file name in `tests/sipp/`. Defaults: UDP, 1 call, 10 calls/s.
    pub(crate) fn new(server: &Server, scenario_name: &str) -> SippRun {
        SippRun {
            remote: server.udp,
            scenario: scenario(scenario_name),
            transport: Transport::Udp,
            injection: None,
            calls: 1,
            rate: 10,
            limit: 100,
            timeout_s: 30,
            extra: Vec::new(),
            label: scenario_name.trim_end_matches(".xml").to_owned(),
            files: Vec::new(),
            port: None,
        }
    }

    pub(crate) fn transport(mut self, t: Transport) -> Self {
        self.transport = t;
        self
    }

    pub(crate) fn injection(mut self, csv: &Path) -> Self {
        self.injection = Some(csv.to_owned());
        self
    }

    /// `-m`: calls in total.
    pub(crate) fn calls(mut self, n: u32) -> Self {
        self.calls = n;
        self
    }

    /// `-r`: new calls per second.
    pub(crate) fn rate(mut self, per_second: u32) -> Self {
        self.rate = per_second;
        self
    }

    /// `-l`: calls open at once.
    pub(crate) fn limit(mut self, n: u32) -> Self {
        self.limit = n;
        self
    }

    /// `-timeout`: SIPp gives up (and fails) after this many seconds.
    pub(crate) fn timeout_s(mut self, s: u32) -> Self {
        self.timeout_s = s;
        self
    }

    /// More SIPp arguments.
    pub(crate) fn arg(mut self, a: impl Into<String>) -> Self {
        self.extra.push(a.into());
        self
    }

    /// Listen on this SIP port (a phone or carrier the server was configured to call).
    pub(crate) fn listen_port(mut self, port: u16) -> Self {
        self.port = Some(port);
        self
    }

    /// Copy `source` into SIPp's working directory as `name` (a pcap the scenario plays).
    pub(crate) fn file(mut self, name: &str, source: &Path) -> Self {
        self.files.push((name.to_owned(), source.to_owned()));
        self
    }

    /// `-mp`: SIPp's RTP port (it also binds the port 2 above); a fresh one by default.
    pub(crate) fn media_port(self) -> Self {
        let (p, _) = media_ports(2);
        self.arg("-mp").arg(p.to_string())
    }

    /// Runs SIPp to completion (bounded by the timeout) and collects what it reported.
    pub(crate) fn run(self) -> SippOutcome {
        self.spawn().wait()
    }

    fn command(&self, work: &Path, port: u16, control_port: u16) -> Command {
        let mut cmd = Command::new(sipp());
        cmd.current_dir(work)
            .arg(self.remote.to_string())
            .arg("-sf")
            .arg(&self.scenario)
            .args(["-i", "127.0.0.1", "-p", &port.to_string()])
            .args(["-cp", &control_port.to_string()])
            .args([
                "-t",
                match self.transport {
                    Transport::Udp => "u1",
                    Transport::Tcp => "t1",
                },
            ])
            .args(["-m", &self.calls.to_string()])
            .args(["-r", &self.rate.to_string(), "-rp", "1000"])
            .args(["-l", &self.limit.to_string()])
            .args([
                "-timeout",
                &format!("{}s", self.timeout_s),
                "-timeout_error",
            ])
            .args(["-nostdin"])
            .args(["-trace_stat", "-stf", "stat.csv", "-fd", "1"])
            .args(["-trace_screen", "-screen_file", "screen.log"])
            .args(["-trace_err", "-error_file", "errors.log"])
            .args(["-trace_msg", "-message_file", "messages.log"])
            .args(["-trace_logs", "-log_file", "actions.log"])
            .args(&self.extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        if let Some(csv) = &self.injection {
            cmd.arg("-inf").arg(csv);
        }
        cmd
    }

    /// Starts SIPp in the background (a phone that waits for the server's calls, or a
    /// caller run that goes on while the test does other things). The SIP port SIPp
    /// listens on is [`SippProcess::port`].
    pub(crate) fn spawn(self) -> SippProcess {
        let work = temp_dir(&format!("sipp-{}", self.label));
        for (name, source) in &self.files {
            std::fs::copy(source, work.join(name))
                .unwrap_or_else(|e| panic!("cannot copy {}: {e}", source.display()));
        }
        // A port picked free can be taken again before SIPp binds it: retry then.
        let mut attempt = 0;
        loop {
            attempt += 1;
            let port = self.port.unwrap_or_else(free_port);
            // SIPp's remote-control socket defaults to UDP 8888..8898; give it its own
            // port so that parallel SIPp runs do not compete for those.
            let control_port = free_port();
            let mut cmd = self.command(&work, port, control_port);
            let command_line = format!("{cmd:?}");
            let mut child = cmd
                .spawn()
                .unwrap_or_else(|e| panic!("cannot start {}: {e}", sipp().display()));
            let stderr = child.stderr.take().expect("stderr is piped");
            let reader = std::thread::spawn(move || {
                let mut s = String::new();
                let _ = std::io::Read::read_to_string(&mut BufReader::new(stderr), &mut s);
                s
            });
            // A bind failure shows within moments.
            let early = Instant::now() + Duration::from_millis(300);
            let mut exited = None;
            while Instant::now() < early {
                if let Ok(Some(st)) = child.try_wait() {
                    exited = Some(st);
                    break;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            if let Some(st) = exited {
                if attempt < 5 && st.code() == Some(254) {
                    let _ = reader.join();
                    continue;
                }
            }
            return SippProcess {
                child,
                reader: Some(reader),
                work,
                command_line,
                port,
                // SIPp's own -timeout should end it; this is the backstop.
                deadline: Instant::now() + Duration::from_secs(u64::from(self.timeout_s) + 15),
            };
        }
    }
}

/// A SIPp started with [`SippRun::spawn`].
pub(crate) struct SippProcess {
    child: Child,
    reader: Option<std::thread::JoinHandle<String>>,
    work: PathBuf,
    command_line: String,
    /// The SIP port it listens on (its Contact).
    pub(crate) port: u16,
    deadline: Instant,
}

impl SippProcess {
    /// Wait for SIPp to end (its own -timeout, or the backstop) and collect what it reported.
    pub(crate) fn wait(mut self) -> SippOutcome {
        let status = loop {
            if let Ok(Some(s)) = self.child.try_wait() {
                break Some(s);
            }
            if Instant::now() > self.deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                break None;
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let stderr = self
            .reader
            .take()
            .and_then(|r| r.join().ok())
            .unwrap_or_default();
        SippOutcome::collect(
            std::mem::take(&mut self.work),
            std::mem::take(&mut self.command_line),
            status,
            stderr,
        )
    }

    /// Its message trace so far.
    pub(crate) fn messages(&self) -> String {
        read_lossy(&self.work.join("messages.log"))
    }
}

impl Drop for SippProcess {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// What a SIPp run reported: its exit code and the last line of its `-trace_stat` file.
pub(crate) struct SippOutcome {
    /// The working directory with SIPp's files.
    pub(crate) dir: PathBuf,
    /// The command as run.
    pub(crate) command: String,
    /// SIPp's exit code (0 = every call succeeded, 1 = some failed); None if it was killed.
    pub(crate) exit_code: Option<i32>,
    /// SIPp's stderr.
    pub(crate) stderr: String,
    /// Final cumulative counters from the stat file, e.g. `SuccessfulCall(C)`.
    pub(crate) stats: BTreeMap<String, String>,
}

impl SippOutcome {
    fn collect(
        dir: PathBuf,
        command: String,
        status: Option<ExitStatus>,
        stderr: String,
    ) -> SippOutcome {
        let stat_text = read_lossy(&dir.join("stat.csv"));
        let mut lines = stat_text.lines().filter(|l| !l.trim().is_empty());
        let header = lines.next().unwrap_or_default();
        let last = lines.next_back().unwrap_or_default();
        let stats = header
            .split(';')
            .zip(last.split(';'))
            .map(|(h, v)| (h.to_owned(), v.to_owned()))
            .collect();
        SippOutcome {
            dir,
            command,
            exit_code: status.and_then(|s| s.code()),
            stderr,
            stats,
        }
    }

    /// A cumulative counter, e.g. `counter("SuccessfulCall")` reads `SuccessfulCall(C)`.
    pub(crate) fn counter(&self, name: &str) -> u64 {
        self.stats
            .get(&format!("{name}(C)"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0)
    }

    pub(crate) fn successful(&self) -> u64 {
        self.counter("SuccessfulCall")
    }

    pub(crate) fn failed(&self) -> u64 {
        self.counter("FailedCall")
    }

    pub(crate) fn retransmissions(&self) -> u64 {
        self.counter("Retransmissions")
    }

    /// What the scenario's `<log>` actions wrote.
    pub(crate) fn action_log(&self) -> String {
        read_lossy(&self.dir.join("actions.log"))
    }

    /// SIPp's message trace.
    pub(crate) fn messages(&self) -> String {
        read_lossy(&self.dir.join("messages.log"))
    }

    /// Everything useful when a run went wrong.
    pub(crate) fn diagnostics(&self) -> String {
        format!(
            "sipp exit code {:?} (0 = all calls succeeded, 1 = some failed, 255/254 = fatal)\n\
             command: {}\n\
             successful {} failed {} retransmissions {}\n\
             --- sipp stderr ---\n{}\n\
             --- errors.log (tail) ---\n{}\n\
             --- scenario log ---\n{}\n\
             --- screen.log (tail) ---\n{}\n\
             --- messages.log (tail) ---\n{}\n\
             (SIPp files in {})",
            self.exit_code,
            self.command,
            self.successful(),
            self.failed(),
            self.retransmissions(),
            self.stderr.trim(),
            tail(&read_lossy(&self.dir.join("errors.log")), 30),
            tail(&self.action_log(), 30),
            tail(&read_lossy(&self.dir.join("screen.log")), 60),
            tail(&self.messages(), 80),
            self.dir.display(),
        )
    }

    /// Exit code 0 and exactly `calls` successful calls, none failed; otherwise panics
    /// with SIPp's files and the server's log.
    pub(crate) fn assert_all_succeeded(&self, calls: u64, server: &Server) {
        let ok = self.exit_code == Some(0) && self.successful() == calls && self.failed() == 0;
        assert!(
            ok,
            "expected {calls} successful SIPp calls and none failed\n{}\n--- server log (tail) ---\n{}",
            self.diagnostics(),
            tail(&server.log(), 40)
        );
    }
}

impl Drop for SippOutcome {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("SIPp files kept in {}", self.dir.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

// ------------------------------------------------------------------ raw SIP over loopback

/// A minimal SIP request for raw-socket tests. `transport` is "UDP" or "TCP";
/// `local` is the sender's address for Via and Contact.
pub(crate) fn raw_request(
    method: &str,
    server: SocketAddr,
    local: SocketAddr,
    transport: &str,
    user: &str,
    extra_headers: &[&str],
) -> String {
    static SEQ: AtomicU32 = AtomicU32::new(1);
    let n = SEQ.fetch_add(1, Ordering::Relaxed);
    let pid = std::process::id();
    let mut msg = format!(
        "{method} sip:{server} SIP/2.0\r\n\
         Via: SIP/2.0/{transport} {local};branch=z9hG4bKraw{pid}x{n};rport\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:{user}@{ip}>;tag=raw{n}\r\n\
         To: <sip:{user}@{ip}>\r\n\
         Call-ID: raw{pid}-{n}@127.0.0.1\r\n\
         CSeq: {n} {method}\r\n\
         Contact: <sip:{user}@{local};transport={tl}>\r\n\
         User-Agent: switchboard-tests\r\n",
        ip = server.ip(),
        tl = transport.to_ascii_lowercase(),
    );
    for h in extra_headers {
        msg.push_str(h);
        msg.push_str("\r\n");
    }
    msg.push_str("Content-Length: 0\r\n\r\n");
    msg
}

/// A parsed SIP response: status code and headers (names lower-cased, compact forms
/// expanded for the few the tests read).
#[derive(Debug, Clone)]
pub(crate) struct RawResponse {
    pub(crate) status: u16,
    pub(crate) text: String,
    pub(crate) headers: Vec<(String, String)>,
}

impl RawResponse {
    pub(crate) fn parse(text: &str) -> Option<RawResponse> {
        let head = text.split("\r\n\r\n").next()?;
        let mut lines = head.split("\r\n");
        let status_line = lines.next()?;
        let mut parts = status_line.splitn(3, ' ');
        if parts.next()? != "SIP/2.0" {
            return None;
        }
        let status = parts.next()?.parse().ok()?;
        let mut headers: Vec<(String, String)> = Vec::new();
        for l in lines {
            if l.starts_with([' ', '\t']) {
                if let Some(last) = headers.last_mut() {
                    last.1.push(' ');
                    last.1.push_str(l.trim());
                }
                continue;
            }
            let (name, value) = l.split_once(':')?;
            let name = match name.trim().to_ascii_lowercase().as_str() {
                "v" => "via".to_owned(),
                "f" => "from".to_owned(),
                "t" => "to".to_owned(),
                "i" => "call-id".to_owned(),
                "m" => "contact".to_owned(),
                "l" => "content-length".to_owned(),
                "k" => "supported".to_owned(),
                other => other.to_owned(),
            };
            headers.push((name, value.trim().to_owned()));
        }
        Some(RawResponse {
            status,
            text: text.to_owned(),
            headers,
        })
    }

    /// All values of a header (name case-insensitive).
    pub(crate) fn all(&self, name: &str) -> Vec<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .filter(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.all(name).into_iter().next()
    }
}

/// Sends `request` over UDP from `socket` to `to` and waits up to `wait` for a response.
pub(crate) fn udp_exchange(
    socket: &UdpSocket,
    to: SocketAddr,
    request: &str,
    wait: Duration,
) -> Option<RawResponse> {
    socket.send_to(request.as_bytes(), to).expect("send UDP");
    socket.set_read_timeout(Some(wait)).expect("set timeout");
    let mut buf = vec![0u8; 65535];
    let (n, _) = socket.recv_from(&mut buf).ok()?;
    RawResponse::parse(&String::from_utf8_lossy(&buf[..n]))
}

// ------------------------------------------------------------------ baresip

/// A real softphone: baresip (Debian package `baresip-core`), headless, registered to the
/// server as `user`, answering every call at once and sending a 440 Hz tone.
pub(crate) struct Baresip {
    child: Child,
    dir: PathBuf,
}

impl Baresip {
    /// Start baresip for `user` (password `demo<user>`) and wait until it is registered.
    pub(crate) fn start(server: &Server, user: u32) -> Baresip {
        let exe = std::env::var_os("PATH")
            .and_then(|path| {
                std::env::split_paths(&path)
                    .map(|d| d.join("baresip"))
                    .find(|p| p.is_file())
            })
            .unwrap_or_else(|| panic!("baresip not found: apt-get install baresip-core"));
        let dir = temp_dir("baresip");
        let port = free_port_pair();
        let (rtp_min, rtp_max) = media_ports(20);
        let config = format!(
            "poll_method epoll\n\
             sip_listen 127.0.0.1:{port}\n\
             net_interface 127.0.0.1\n\
             call_local_timeout 120\n\
             call_max_calls 4\n\
             audio_source ausine,440\n\
             ausrc_srate 48000\n\
             ausrc_channels 2\n\
             audio_player aubridge,nil\n\
             audio_alert aubridge,nil\n\
             audio_level no\n\
             audio_buffer 20-160\n\
             rtp_ports {rtp_min}-{rtp_max}\n\
             rtcp_mux no\n\
             jitter_buffer_delay 5-10\n\
             rtp_stats no\n\
             statmode_default off\n\
             module_path /usr/lib/baresip/modules\n\
             module g711.so\n\
             module ausine.so\n\
             module aubridge.so\n\
             module_tmp uuid.so\n\
             module_tmp account.so\n\
             module_app menu.so\n"
        );
        write_file(&dir.join("config"), &config);
        write_file(
            &dir.join("accounts"),
            &format!(
                "<sip:{user}@{srv};transport=udp>;auth_pass={pw};answermode=auto;regint=300;audio_codecs=PCMU,PCMA\n",
                srv = server.udp,
                pw = demo_password(user)
            ),
        );
        let log = std::fs::File::create(dir.join("baresip.log")).expect("create baresip.log");
        let child = Command::new(exe)
            .arg("-f")
            .arg(&dir)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start baresip: {e}"));
        let b = Baresip { child, dir };
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let log = b.log();
            if log.contains("200 OK") && log.contains("binding") {
                return b;
            }
            assert!(
                Instant::now() < deadline,
                "baresip did not register within 10 s:\n{log}\n--- server ---\n{}",
                tail(&server.log(), 30)
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// What baresip printed.
    pub(crate) fn log(&self) -> String {
        read_lossy(&self.dir.join("baresip.log"))
    }
}

impl Drop for Baresip {
    fn drop(&mut self) {
        // SIGTERM unregisters; a second one forces the exit if a call is still up.
        for _ in 0..2 {
            let _ = Command::new("kill")
                .args(["-TERM", &self.child.id().to_string()])
                .status();
            let deadline = Instant::now() + Duration::from_secs(2);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = self.child.try_wait() {
                    let _ = std::fs::remove_dir_all(&self.dir);
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("baresip files kept in {}", self.dir.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// Start SIPp phones for `users`, answering each incoming call with `incoming`, until the
/// server has sent them `calls` calls in total. Waits until all of them are registered.
pub(crate) fn agent_phones(
    server: &Server,
    users: std::ops::RangeInclusive<u32>,
    incoming: &str,
    calls: u32,
    extra: &[&str],
) -> SippProcess {
    let n = users.clone().count() as u32;
    let csv = users_csv(server.dir(), users.clone(), demo_password);
    let mut run = SippRun::new(server, "agent_phone.xml")
        .injection(&csv)
        .calls(n)
        .limit(n)
        .rate(100)
        .timeout_s(90)
        .arg("-oocsf")
        .arg(scenario(incoming).to_string_lossy().into_owned())
        .arg("-set")
        .arg("agent_calls")
        .arg(calls.to_string())
        .arg("-rtp_echo")
        .media_port();
    for a in extra {
        run = run.arg(*a);
    }
    let phones = run.spawn();
    // Registered when every user's binding is in the server log (debug) or, simpler, when
    // the phones' message trace shows n 200 OKs to REGISTER.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let registered = phones
            .messages()
            .matches("CSeq: 2 REGISTER")
            .filter(|_| true)
            .count();
        let oks = count_register_oks(&phones.messages());
        if oks >= n as usize {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "agent phones did not register within 10 s ({oks}/{n}, {registered} authenticated REGISTERs)\n{}",
            server.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    phones
}

/// 200 OKs to REGISTER in a SIPp message trace.
pub(crate) fn count_register_oks(trace: &str) -> usize {
    trace
        .split("\n\n")
        .filter(|m| m.contains("SIP/2.0 200 OK") && m.contains("REGISTER"))
        .count()
}

/// Queue `support` on 600 served by agent 1001 (ready at start, `english = 5`); callers come
/// over a trunk for 127.0.0.1 that may dial 600.
pub(crate) fn one_agent_help_desk() -> ServerConfig {
    ServerConfig {
        files: vec![
            (
                "queues.toml".into(),
                "[queues.support]\nnumber = \"600\"\nstrategy = \"longest-idle\"\n\
                 required_skills = [\"english\"]\nring_timeout = 10\nauto_pause_after = 100\n"
                    .into(),
            ),
            (
                "agents.toml".into(),
                "[agents.1001]\nuser = \"1001\"\nskills = { english = 5 }\nqueues = [\"support\"]\n\
                 login_on_start = true\n"
                    .into(),
            ),
        ],
        extra_toml: "[trunks.lab]\naddresses = [\"127.0.0.1\"]\nnumbers = [\"600\"]\n".into(),
        ..ServerConfig::default()
    }
}

/// Wait until `cond` holds, checking every 20 ms, up to `within`; panics naming `what`.
pub(crate) fn wait_until(within: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !cond() {
        assert!(Instant::now() < deadline, "not within {within:?}: {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Wait until every agent of `users` is ready with a registered phone, as the server log
/// tells it: the agent's latest state line is `state=Ready` and its phone has a binding. (An
/// agent whose phone registered before the agent was logged in is never "parked" and so
/// never "unparked": the latest state is what counts.)
pub(crate) fn wait_agents_ready(server: &Server, users: &[u32], within: Duration) {
    wait_until(within, "agents ready with a phone", || {
        let log = server.log();
        let bindings = log.matches("binding added").count();
        bindings >= users.len()
            && users.iter().all(|u| {
                let needle = format!("agent state agent={u} ");
                log.lines()
                    .rev()
                    .find(|l| l.contains(&needle))
                    .is_some_and(|l| l.contains("state=Ready"))
            })
    });
}

/// `calls` callers to `number`, each staying 300 ms; all of them must succeed.
pub(crate) fn short_calls(server: &Server, number: &str, calls: u32) {
    let out = SippRun::new(server, "caller.xml")
        .calls(calls)
        .limit(calls)
        .rate(10)
        .timeout_s(30)
        .arg("-s")
        .arg(number)
        .arg("-d")
        .arg("300")
        .media_port()
        .run();
    assert_eq!(
        out.successful(),
        u64::from(calls),
        "{}\n{}",
        out.diagnostics(),
        server.log()
    );
}

/// Call records waiting in a spill file.
pub(crate) fn spilled_calls(spill: &Path) -> usize {
    std::fs::read_to_string(spill)
        .unwrap_or_default()
        .lines()
        .filter(|l| l.starts_with(r#"{"call":"#))
        .count()
}

/// Whether the speech synthesizer espeak-ng is installed (text prompts need it). Missing under
/// CI is a failure that says how to install it; elsewhere the test is skipped, saying so.
pub(crate) fn espeak_available() -> bool {
    let found = Command::new("espeak-ng")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok();
    if !found {
        assert!(
            std::env::var_os("CI").is_none(),
            "espeak-ng is missing: apt-get install espeak-ng"
        );
        eprintln!("SKIPPED: espeak-ng is not installed (apt-get install espeak-ng)");
    }
    found
}
