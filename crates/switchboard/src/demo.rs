//! `switchboard demo`: the server on a config directory (the shipped one by default) with
//! simulated agents and callers, so that a newcomer sees calls queued, offered, answered and
//! recorded without a phone of their own. Every agent of agents.toml gets a headless phone
//! (`switchboard-phone`, beside this binary) that answers after a second or two with a tone;
//! every user of users.toml who is not an agent calls the first queue now and then and talks
//! for a while. It runs for `--seconds`, then stops the phones and the server (cleanly, so the
//! records and recordings are written) and says what happened.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use rand::Rng;

/// Options of `switchboard demo`.
#[derive(Debug, clap::Args)]
pub(crate) struct DemoArgs {
    /// Config directory.
    #[arg(long, default_value = "config", env = "SWITCHBOARD_CONFIG")]
    config: PathBuf,
    /// How long the demo runs.
    #[arg(long, default_value_t = 120)]
    seconds: u64,
    /// SIP address for the server (and the phones).
    #[arg(long, default_value = "127.0.0.1:5060")]
    sip_bind: String,
    /// The headless phone binary (default: `switchboard-phone` beside this one).
    #[arg(long)]
    phone: Option<PathBuf>,
}

/// A phone of the demo: its user, password, and what it does.
struct Part {
    user: String,
    password: String,
    agent: bool,
    tone: u32,
    child: Option<Child>,
    /// When a caller may call again.
    next: Instant,
}

#[derive(serde::Deserialize)]
struct Users {
    #[serde(default)]
    users: BTreeMap<String, toml::Value>,
}

#[derive(serde::Deserialize)]
struct Agents {
    #[serde(default)]
    agents: BTreeMap<String, toml::Value>,
}

#[derive(serde::Deserialize)]
struct Queues {
    #[serde(default)]
    queues: BTreeMap<String, toml::Value>,
}

fn read<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))
}

/// Who takes part: agents (by their users) and callers, with the demo passwords.
fn parts(config: &Path) -> Result<(Vec<Part>, String), String> {
    let users: Users = read(&config.join("users.toml"))?;
    let agents: Agents = read(&config.join("agents.toml"))?;
    let queues: Queues = read(&config.join("queues.toml"))?;
    let number = queues
        .queues
        .values()
        .find_map(|q| q.get("number").and_then(|n| n.as_str()).map(str::to_owned))
        .ok_or("queues.toml has no queue to call")?;
    let agent_users: Vec<String> = agents
        .agents
        .values()
        .filter_map(|a| a.get("user").and_then(|u| u.as_str()).map(str::to_owned))
        .collect();
    let mut parts = Vec::new();
    for (i, (user, entry)) in users.users.iter().enumerate() {
        // Only accounts with a plain password can be played (the demo's).
        let Some(password) = entry.get("password").and_then(|p| p.as_str()) else {
            continue;
        };
        parts.push(Part {
            user: user.clone(),
            password: password.to_owned(),
            agent: agent_users.contains(user),
            tone: 300 + 100 * i as u32,
            child: None,
            next: Instant::now(),
        });
    }
    if !parts.iter().any(|p| p.agent) || !parts.iter().any(|p| !p.agent) {
        return Err(
            "the demo needs agents (agents.toml) and other users with passwords (users.toml)"
                .into(),
        );
    }
    Ok((parts, number))
}

pub(crate) fn run(args: &DemoArgs) -> ExitCode {
    match demo(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("switchboard demo: {e}");
            ExitCode::FAILURE
        }
    }
}

fn demo(args: &DemoArgs) -> Result<(), String> {
    let me = std::env::current_exe().map_err(|e| format!("where am I: {e}"))?;
    let phone = args.phone.clone().unwrap_or_else(|| {
        me.with_file_name(format!("switchboard-phone{}", std::env::consts::EXE_SUFFIX))
    });
    if !phone.is_file() {
        return Err(format!(
            "{} not found: build it with `cargo build --release -p softphone` (or give --phone)",
            phone.display()
        ));
    }
    let (mut parts, number) = parts(&args.config)?;
    // The server.
    let mut server = Command::new(&me)
        .args(["serve", "--config"])
        .arg(&args.config)
        .args(["--sip-bind", &args.sip_bind])
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start the server: {e}"))?;
    let stdout = server.stdout.take().ok_or("no server output")?;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            println!("{line}");
            let _ = tx.send(line);
        }
    });
    let sip = loop {
        match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(line) => {
                if let Some(addr) = line
                    .strip_prefix("switchboard: SIP listening on udp ")
                    .and_then(|r| r.split_whitespace().next())
                {
                    break addr.to_owned();
                }
            }
            Err(_) => {
                let _ = server.kill();
                return Err("the server did not start (see its log above)".into());
            }
        }
    };
    let agents = parts.iter().filter(|p| p.agent).count();
    println!(
        "demo: {agents} agents answer, {} callers call {number} for {} s",
        parts.len() - agents,
        args.seconds
    );
    let end = Instant::now() + Duration::from_secs(args.seconds);
    let mut rng = rand::rng();
    let mut placed = 0u32;
    let mut answered = 0u32;
    while Instant::now() < end {
        for p in &mut parts {
            // A phone that finished: count its call.
            if let Some(c) = p.child.as_mut() {
                if let Ok(Some(_)) = c.try_wait() {
                    let out = p.child.take().and_then(|c| c.wait_with_output().ok());
                    if !p.agent {
                        let ok = out.is_some_and(|o| {
                            String::from_utf8_lossy(&o.stdout).contains("\"answered\":true")
                        });
                        answered += u32::from(ok);
                        p.next =
                            Instant::now() + Duration::from_millis(rng.random_range(1000..5000));
                    }
                }
            }
            if p.child.is_some() || Instant::now() < p.next {
                continue;
            }
            let mut cmd = Command::new(&phone);
            cmd.args(["--server", &sip, "--user", &p.user])
                .env("SWITCHBOARD_PHONE_PASSWORD", &p.password)
                .args(["--tone", &p.tone.to_string()])
                .stdout(Stdio::piped())
                .stderr(Stdio::null());
            if p.agent {
                let after = rng.random_range(1.0..3.0);
                cmd.args(["--answer-after", &format!("{after:.1}"), "--timeout", "600"]);
            } else {
                let talk = rng.random_range(5.0..15.0);
                cmd.args(["--dial", &number, "--hangup-after", &format!("{talk:.1}")]);
                cmd.args(["--timeout", "120"]);
                placed += 1;
            }
            p.child = cmd.spawn().ok();
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    for p in &mut parts {
        if let Some(mut c) = p.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
    // A clean stop: the server writes what it holds.
    let _ = Command::new("kill")
        .args(["-TERM", &server.id().to_string()])
        .status();
    let stop = Instant::now() + Duration::from_secs(15);
    while Instant::now() < stop {
        if let Ok(Some(_)) = server.try_wait() {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = server.kill();
    let _ = server.wait();
    println!(
        "demo: {placed} calls placed, {answered} answered and ended; records and recordings are \
         in the data directory (`switchboard report --config {}` sums them up)",
        args.config.display()
    );
    Ok(())
}
