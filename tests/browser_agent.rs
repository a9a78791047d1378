//! A browser agent: the agent page (/agent) in Debian's chromium with a fake microphone
//! playing 1 kHz, registered over SIP-over-WebSocket with the page's JsSIP, takes a queue call
//! from a headless phone sending 440 Hz. The agent answers by clicking; the media is WebRTC
//! (ICE-lite, DTLS-SRTP) on the browser's side and plain RTP on the caller's. Checked as a
//! person would hear it: the caller hears the browser's tone, the browser receives audio, the
//! call's stereo recording holds the caller's tone on the left and the browser's on the right;
//! the page's Hold gives the caller the queue's music and its Resume the agent again (the
//! browser's re-INVITEs keep the DTLS-SRTP leg); a key pressed on the page's keypad reaches the
//! caller (RFC 4733 through SRTP), the page's
//! hang-up ends the caller's call, and its disposition lands in the call's record.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use common::phone::{classify, read_wav, read_wav_channel};
use common::{demo_password, Server, ServerConfig};
use softphone::audio::Source;
use softphone::phone::{run, Options};

const PASSWORD: &str = "agent-page-test-password";

#[test]
fn a_browser_agent_answers_a_queue_call_over_webrtc_holds_keys_a_digit_and_hangs_up() {
    if !common::browser_ready("agent page") {
        return;
    }
    let (server, http) = help_desk("");
    let dir = server.dir().to_owned();
    let mic = dir.join("browser-mic.wav");
    common::write_tone(&mic, 1000.0, 30.0);
    let (mut node, lines) = agent_page(
        http,
        &mic,
        &[
            ("DIGITS", "5"),
            ("TALK_MS", "3000"),
            ("HOLD_MS", "2500"),
            ("SCREENSHOT", dir.join("agent-page.png").to_str().unwrap()),
        ],
    );
    let next = |within: Duration| {
        lines.recv_timeout(within).unwrap_or_else(|_| {
            panic!(
                "the browser said nothing more within {within:?}\nserver log:\n{}",
                server.log()
            )
        })
    };
    let first = next(Duration::from_secs(60));
    assert_eq!(first["event"], "registered", "{first:#}\n{}", server.log());
    // The page's phone registered over the WebSocket.
    assert!(
        server
            .log()
            .lines()
            .any(|l| l.contains("binding added") && l.contains("transport=\"WS\"")),
        "{}",
        server.log()
    );

    // The caller: 440 Hz, waits for the other side to hang up.
    let caller = run(Options {
        dial: Some("600".into()),
        source: Source::Tone(440.0),
        record: Some(dir.join("caller.wav")),
        timeout: Duration::from_secs(60),
        ..Options::new(server.udp, "1006", &demo_password(1006))
    });
    let done = next(Duration::from_secs(60));
    let status = node.wait().expect("node");
    let log = server.log();
    assert_eq!(done["event"], "done", "{done:#}\n{log}");
    assert!(status.success(), "{done:#}");

    // The screen-pop the agent saw.
    let pop = &done["ringing"];
    assert_eq!(pop["caller"], "1006", "{done:#}");
    assert_eq!(pop["queue"], "support", "{done:#}");
    assert_eq!(
        pop["crm_link"], "https://crm.example.com/search?phone=1006",
        "{done:#}"
    );
    // The browser's side of the media: DTLS-SRTP over the checked pair, PCMU, audio heard.
    let stats = &done["stats"];
    assert_eq!(stats["dtls_state"], "connected", "{stats:#}");
    assert_eq!(stats["candidate_pair"]["state"], "succeeded", "{stats:#}");
    assert_eq!(
        stats["srtp_cipher"], "SRTP_AES128_CM_HMAC_SHA1_80",
        "{stats:#}"
    );
    assert_eq!(stats["codec"]["mimeType"], "audio/PCMU", "{stats:#}");
    assert!(
        stats["inbound"]["packetsReceived"].as_u64().unwrap_or(0) > 100
            && stats["inbound"]["totalAudioEnergy"].as_f64().unwrap_or(0.0) > 0.01,
        "the browser received the caller's audio: {stats:#}"
    );
    assert_eq!(done["digits_sent"], "5", "{done:#}");
    assert_eq!(done["disposition_result"], "saved", "{done:#}");
    assert_eq!(done["page_errors"], serde_json::json!([]), "{done:#}");

    // The caller's side: answered, heard the browser's tone, got its key, and the page's
    // hang-up ended the call.
    assert_eq!(caller.error, None, "{caller:?}\n{log}");
    assert!(caller.answered, "{caller:?}");
    assert_eq!(caller.hung_up_by, "them", "{caller:?}");
    assert_eq!(caller.digits_received, "5", "{caller:?}");
    let at_caller = classify(&read_wav(&dir.join("caller.wav")), &[440.0, 700.0, 1000.0]);
    let n = |v: &[Option<f64>], hz: f64| v.iter().filter(|w| **w == Some(hz)).count();
    assert!(
        n(&at_caller, 1000.0) >= 15,
        "the caller heard the browser in {} windows",
        n(&at_caller, 1000.0)
    );
    // The page held the call (the caller heard the music, as while queueing) and resumed it
    // (the agent again, and the browser kept receiving).
    let answered = at_caller
        .iter()
        .position(|w| *w == Some(1000.0))
        .expect("the agent heard");
    let held = at_caller[answered..]
        .iter()
        .position(|w| *w == Some(700.0))
        .map(|i| answered + i);
    let resumed = at_caller.iter().rposition(|w| *w == Some(700.0));
    let (Some(held), Some(resumed)) = (held, resumed) else {
        panic!("no music on hold at the caller: {at_caller:?}");
    };
    assert!(n(&at_caller[held..=resumed], 700.0) >= 15, "{at_caller:?}");
    assert!(
        n(&at_caller[..held], 1000.0) >= 10,
        "the agent before the hold: {at_caller:?}"
    );
    assert!(
        n(&at_caller[resumed..], 1000.0) >= 5,
        "the agent after the resume: {at_caller:?}"
    );
    // The browser's receiver after the resume (its statistics start again with the
    // renegotiation): 1.5 s of packets.
    assert!(
        done["held"].as_str().is_some_and(|s| s.contains("hold"))
            && done["stats_after_resume"]["inbound"]["packetsReceived"]
                .as_u64()
                .is_some_and(|n| n >= 50),
        "{done:#}"
    );

    // The record, with the disposition the page saved, and the recording: the caller's
    // tone left, the browser's right.
    let rows = common::call_rows(&server, 1);
    let row = &rows[0];
    assert_eq!(row.agent.as_deref(), Some("1001"), "{row:?}");
    assert_eq!(row.outcome, "answered", "{row:?}");
    assert_eq!(row.hung_up_by, "agent", "{row:?}");
    common::wait_until(Duration::from_secs(10), "the disposition", || {
        common::call_rows(&server, 1)[0].disposition.as_deref() == Some("sale")
    });
    let rec_dir = dir.join("data/recordings");
    let mut wav = None;
    common::wait_until(Duration::from_secs(10), "the recording", || {
        wav = walk(&rec_dir)
            .into_iter()
            .find(|p| p.extension().is_some_and(|e| e == "wav"));
        wav.is_some()
    });
    let wav = wav.expect("a recording");
    let left = classify(&read_wav_channel(&wav, 0), &[440.0, 1000.0]);
    let right = classify(&read_wav_channel(&wav, 1), &[440.0, 1000.0]);
    assert!(
        n(&left, 440.0) >= 15 && n(&left, 1000.0) == 0,
        "caller channel: {left:?}"
    );
    assert!(
        n(&right, 1000.0) >= 15 && n(&right, 440.0) == 0,
        "agent channel: {right:?}"
    );
}

/// The agent page over secure WebSocket: with `[sip] wss` on, the page is given `wss://`,
/// and the browser registers over TLS (its binding's transport is WSS).
#[test]
fn the_agent_page_registers_over_secure_websocket_when_the_server_has_one() {
    if !common::browser_ready("agent page over wss") {
        return;
    }
    let http = common::free_port();
    let wss = common::free_port();
    let hash = common::password_hash(PASSWORD);
    let scratch = common::temp_dir("wss");
    let (cert, key) = common::test_certificate(&scratch, "server");
    let server = Server::start(&ServerConfig {
        sip_extra: format!(
            "wss = \"127.0.0.1:{wss}\"\ntls_cert = \"{}\"\ntls_key = \"{}\"\n",
            cert.display(),
            key.display()
        ),
        extra_toml: format!("\n[http]\nbind = \"127.0.0.1:{http}\"\nsecure_cookies = false\n"),
        users_extra: format!(
            "\n[logins.ada]\npassword_hash = \"{hash}\"\nroles = [\"agent\"]\nagent = \"1001\"\n"
        ),
        ..ServerConfig::support_desk("")
    });
    let mic = server.dir().join("mic.wav");
    common::write_tone(&mic, 1000.0, 2.0);
    let out = Command::new("node")
        .arg("agent.mjs")
        .current_dir(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser"))
        .env("BASE", format!("http://127.0.0.1:{http}"))
        .env("LOGIN", "ada")
        .env("PASSWORD", PASSWORD)
        .env("TONE", &mic)
        .env("REGISTER_ONLY", "1")
        .env("IGNORE_CERT", "1")
        .output()
        .expect("node");
    let text = String::from_utf8_lossy(&out.stdout);
    let done: serde_json::Value = text
        .lines()
        .last()
        .and_then(|l| serde_json::from_str(l).ok())
        .unwrap_or_else(|| {
            panic!(
                "no result:\n{text}\n{}",
                String::from_utf8_lossy(&out.stderr)
            )
        });
    assert_eq!(done["event"], "done", "{done:#}\n{}", server.log());
    let log = done["log"].to_string();
    assert!(log.contains(&format!("wss://127.0.0.1:{wss}")), "{done:#}");
    assert!(
        server
            .log()
            .lines()
            .any(|l| l.contains("binding added") && l.contains("transport=\"WSS\"")),
        "{}",
        server.log()
    );
    // The browser is gone (closed without unregistering): its WebSocket was its only way in,
    // so its binding goes with the connection and nobody rings a phone that is not there.
    common::wait_until(Duration::from_secs(10), "the binding is removed", || {
        server.log().contains("binding removed")
    });
    let log = server.log();
    let removed = log
        .lines()
        .find(|l| l.contains("binding removed"))
        .unwrap_or("");
    assert!(removed.contains("its connection closed"), "{log}");
}

/// A help desk: queue `support` (600, recorded, 700 Hz music) served by agent 1001 (web
/// login `ada`), 1002 a colleague's phone, SIP over WebSocket and the web side on; `agents`
/// is appended to agents.toml. Returns the server and its HTTP port.
fn help_desk(agents: &str) -> (Server, u16) {
    let http = common::free_port();
    let ws = common::free_port();
    let hash = common::password_hash(PASSWORD);
    let scratch = common::temp_dir("moh");
    let moh = scratch.join("moh.wav");
    common::write_tone(&moh, 700.0, 3.0);
    let server = Server::start(&ServerConfig {
        sip_extra: format!("ws = \"127.0.0.1:{ws}\"\n"),
        extra_toml: format!(
            "\n[http]\nbind = \"127.0.0.1:{http}\"\nsecure_cookies = false\n\
             crm_url = \"https://crm.example.com/search?phone={{number}}\"\n"
        ),
        users_extra: format!(
            "\n[logins.ada]\npassword_hash = \"{hash}\"\nroles = [\"agent\"]\nagent = \"1001\"\n"
        ),
        files: vec![
            (
                "queues.toml".into(),
                format!(
                    "[queues.support]\nnumber = \"600\"\nrecord = \"always\"\nmusic = \"{}\"\n",
                    moh.display()
                ),
            ),
            (
                "agents.toml".into(),
                format!(
                    "[agents.1001]\nuser = \"1001\"\nqueues = [\"support\"]\nlogin_on_start = true\n{agents}"
                ),
            ),
        ],
        ..ServerConfig::default()
    });
    (server, http)
}

/// tests/browser/agent.mjs as `ada` with the fake microphone `mic` and `env`; its JSON lines
/// come on the receiver as it prints them.
fn agent_page(
    http: u16,
    mic: &std::path::Path,
    env: &[(&str, &str)],
) -> (std::process::Child, mpsc::Receiver<serde_json::Value>) {
    let mut node = Command::new("node")
        .arg("agent.mjs")
        .current_dir(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser"))
        .env("BASE", format!("http://127.0.0.1:{http}"))
        .env("LOGIN", "ada")
        .env("PASSWORD", PASSWORD)
        .env("TONE", mic)
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("node");
    let (tx, lines) = mpsc::channel::<serde_json::Value>();
    let stdout = node.stdout.take().expect("stdout");
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if let Ok(v) = serde_json::from_str(&line) {
                if tx.send(v).is_err() {
                    break;
                }
            }
        }
    });
    (node, lines)
}

#[test]
fn a_browser_agent_transfers_the_caller_blind_to_a_colleague_who_then_talks_to_them() {
    if !common::browser_ready("agent page transfer") {
        return;
    }
    let (server, http) = help_desk("");
    let dir = server.dir().to_owned();
    // The colleague: 1002 on a desk phone sending 1.5 kHz, hanging up after 3 s.
    let before = server.log().matches("binding added").count();
    let colleague_opts = Options {
        source: Source::Tone(1500.0),
        answer_after: Duration::from_millis(200),
        hangup_after: Some(Duration::from_secs(3)),
        timeout: Duration::from_secs(60),
        ..Options::new(server.udp, "1002", &demo_password(1002))
    };
    let colleague = std::thread::spawn(move || run(colleague_opts));
    common::wait_until(Duration::from_secs(10), "the colleague registers", || {
        server.log().matches("binding added").count() > before
    });
    let mic = dir.join("browser-mic.wav");
    common::write_tone(&mic, 1000.0, 30.0);
    let (mut node, lines) = agent_page(http, &mic, &[("TALK_MS", "2000"), ("TRANSFER", "1002")]);
    let first = lines
        .recv_timeout(Duration::from_secs(60))
        .expect("the page registers");
    assert_eq!(first["event"], "registered", "{first:#}\n{}", server.log());
    let caller = run(Options {
        dial: Some("600".into()),
        source: Source::Tone(440.0),
        record: Some(dir.join("caller.wav")),
        timeout: Duration::from_secs(60),
        ..Options::new(server.udp, "1006", &demo_password(1006))
    });
    let done = lines
        .recv_timeout(Duration::from_secs(60))
        .expect("the page's result");
    let _ = node.wait();
    let colleague = colleague.join().expect("colleague");
    let log = server.log();
    assert_eq!(done["event"], "done", "{done:#}\n{log}");
    assert!(
        done["transfer_result"]
            .as_str()
            .is_some_and(|t| t.contains("transferred")),
        "{done:#}"
    );
    assert!(colleague.answered, "{colleague:?}");
    assert_eq!(caller.error, None, "{caller:?}");
    // The caller heard the browser agent, then the colleague (whose leg is plain RTP: nothing
    // of the browser's WebRTC leg stays on it).
    let heard = classify(
        &read_wav(&dir.join("caller.wav")),
        &[440.0, 700.0, 1000.0, 1500.0],
    );
    let n = |v: &[Option<f64>], hz: f64| v.iter().filter(|w| **w == Some(hz)).count();
    let agent_from = heard.iter().position(|w| *w == Some(1000.0));
    let colleague_from = heard.iter().position(|w| *w == Some(1500.0));
    assert!(
        matches!((agent_from, colleague_from), (Some(a), Some(c)) if a < c),
        "{heard:?}"
    );
    assert!(
        n(&heard, 1000.0) >= 10 && n(&heard, 1500.0) >= 15,
        "{heard:?}"
    );
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}
