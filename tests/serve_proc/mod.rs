//! A `switchboard serve` process started by hand, for the tests that need what
//! `common::Server` does not do: start again on the same directory and port (a restart),
//! set environment overrides, and read stderr through a pipe as an operator's log
//! collector would (no `NO_COLOR`, not a file).
//!
//! Use it beside `mod common;` with `mod serve_proc;`.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use crate::common;

/// A running server; SIGTERM (then SIGKILL) on drop.
pub(crate) struct Proc {
    child: Option<Child>,
    stderr: Arc<Mutex<Vec<u8>>>,
    reader: Option<std::thread::JoinHandle<()>>,
    /// UDP address.
    pub(crate) udp: SocketAddr,
    /// TCP address.
    pub(crate) tcp: SocketAddr,
}

impl Proc {
    /// `switchboard serve --config dir --sip-bind bind` with `env` added; waits for the
    /// "SIP listening" banner and the "switchboard started" log line (up to 20 s each).
    pub(crate) fn start(dir: &Path, bind: &str, env: &[(&str, &str)]) -> Proc {
        let bin = common::switchboard_bin();
        let mut cmd = Command::new(bin);
        cmd.args(["serve", "--config"])
            .arg(dir)
            .args(["--sip-bind", bind])
            .env_remove("SWITCHBOARD_SIP_BIND")
            .env_remove("SWITCHBOARD_LOG")
            .env_remove("SWITCHBOARD_CONFIG")
            .env_remove("NO_COLOR")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let mut pipe = child.stderr.take().expect("stderr is piped");
        let sink = stderr.clone();
        let reader = std::thread::spawn(move || {
            let mut buf = [0u8; 8192];
            loop {
                match pipe.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => sink
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .extend_from_slice(&buf[..n]),
                }
            }
        });
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
        let mut p = Proc {
            child: Some(child),
            stderr,
            reader: Some(reader),
            udp: SocketAddr::from(([127, 0, 0, 1], 0)),
            tcp: SocketAddr::from(([127, 0, 0, 1], 0)),
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        let banner = loop {
            match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(l) if l.starts_with("switchboard: SIP listening on") => break l,
                Ok(_) => {}
                Err(_) => panic!(
                    "switchboard did not start within 20 s; stderr:\n{}",
                    p.log()
                ),
            }
        };
        let mut words = banner.split_whitespace();
        while let Some(w) = words.next() {
            match w {
                "udp" => p.udp = words.next().and_then(|a| a.parse().ok()).unwrap_or(p.udp),
                "tcp" => p.tcp = words.next().and_then(|a| a.parse().ok()).unwrap_or(p.tcp),
                _ => {}
            }
        }
        // The banner on stdout can overtake the start-up lines on stderr (bindings
        // restored, agents logged in): wait for the last of them.
        let log = p.wait_log(Duration::from_secs(20), |l| {
            l.contains("switchboard started")
        });
        assert!(
            log.contains("switchboard started"),
            "no \"switchboard started\" line within 20 s; stderr:\n{log}"
        );
        p
    }

    /// Everything it wrote to stderr so far.
    pub(crate) fn log(&self) -> String {
        String::from_utf8_lossy(&self.stderr.lock().unwrap_or_else(|e| e.into_inner())).into_owned()
    }

    /// Wait until `pred` holds for the log, up to `within`; returns the log either way.
    pub(crate) fn wait_log(&self, within: Duration, pred: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + within;
        loop {
            let log = self.log();
            if pred(&log) || Instant::now() > deadline {
                return log;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Wait up to `within` for the process to exit by itself; its status, or `None` if it
    /// still runs.
    pub(crate) fn wait_exit(&mut self, within: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + within;
        let c = self.child.as_mut()?;
        loop {
            if let Ok(Some(status)) = c.try_wait() {
                return Some(status);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGTERM and wait for the exit (SIGKILL after 10 s); the whole stderr afterwards.
    pub(crate) fn stop(&mut self) -> String {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &c.id().to_string()])
                .status();
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = c.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
        self.log()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let log = self.stop();
        if std::thread::panicking() {
            eprintln!("--- switchboard stderr ---\n{log}");
        }
    }
}

/// A config directory: `switchboard.toml` with the given extra keys per table, users
/// 1001..=1010 (`demo<n>`), and `files` (name, text) beside it. Recordings and the binding
/// store go under `<dir>/data`.
pub(crate) fn config_dir(
    label: &str,
    sip: &str,
    security: &str,
    files: &[(&str, &str)],
) -> PathBuf {
    let dir = common::temp_dir(label);
    let (pmin, pmax) = common::media_ports(20);
    let text = format!(
        "[sip]\nbind = \"127.0.0.1:0\"\nrealm = \"switchboard-test\"\n{sip}\n\
         [registrar]\nqualify_interval = 0\n\n\
         [security]\n{security}\n\n\
         [log]\nlevel = \"info\"\n\n\
         [media]\nbind = \"127.0.0.1\"\nadvertise = \"127.0.0.1\"\nport_min = {pmin}\nport_max = {pmax}\n\n\
         [recording]\ndir = \"{rec}\"\n",
        rec = dir.join("data/recordings").display()
    );
    std::fs::write(dir.join("switchboard.toml"), text).expect("write switchboard.toml");
    let mut users = String::new();
    for u in 1001..=1010 {
        users.push_str(&format!("[users.{u}]\npassword = \"demo{u}\"\n\n"));
    }
    std::fs::write(dir.join("users.toml"), users).expect("write users.toml");
    for (name, text) in files {
        let p = dir.join(name);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent).expect("mkdir");
        }
        std::fs::write(&p, text).expect("write file");
    }
    dir
}

/// MD5 in hex.
pub(crate) fn md5_hex(s: &str) -> String {
    use md5::{Digest, Md5};
    Md5::digest(s.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The value of `name="…"` (or `name=…`) in a WWW-Authenticate header.
pub(crate) fn auth_param(header: &str, name: &str) -> Option<String> {
    let at = header.find(&format!("{name}="))? + name.len() + 1;
    let rest = &header[at..];
    Some(match rest.strip_prefix('"') {
        Some(q) => q.split('"').next()?.to_owned(),
        None => rest.split([',', ' ']).next()?.to_owned(),
    })
}

/// The Authorization header answering `www` (MD5, qop=auth when offered) for REGISTER.
pub(crate) fn authorization(www: &str, user: u32, uri: &str) -> String {
    let realm = auth_param(www, "realm").expect("realm");
    let nonce = auth_param(www, "nonce").expect("nonce");
    let ha1 = md5_hex(&format!("{user}:{realm}:demo{user}"));
    let ha2 = md5_hex(&format!("REGISTER:{uri}"));
    if www.contains("qop") {
        let cnonce = "0a4f113b";
        let nc = "00000001";
        let response = md5_hex(&format!("{ha1}:{nonce}:{nc}:{cnonce}:auth:{ha2}"));
        format!(
            "Authorization: Digest username=\"{user}\", realm=\"{realm}\", nonce=\"{nonce}\", \
             uri=\"{uri}\", response=\"{response}\", algorithm=MD5, qop=auth, nc={nc}, cnonce=\"{cnonce}\""
        )
    } else {
        let response = md5_hex(&format!("{ha1}:{nonce}:{ha2}"));
        format!(
            "Authorization: Digest username=\"{user}\", realm=\"{realm}\", nonce=\"{nonce}\", \
             uri=\"{uri}\", response=\"{response}\", algorithm=MD5"
        )
    }
}
