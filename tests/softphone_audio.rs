//! What callers hear, checked with real softphones on both ends: baresip (Debian's
//! `baresip-core`) as the caller and as the agent, each sending its own tone and recording what
//! it decodes (the `sndfile` module writes exactly what goes to the speaker). The recordings
//! are classified by frequency in 100 ms windows, so a call whose packets all arrive but
//! which the caller's jitter buffer throws away fails here, as it did for real callers.
//!
//! The phones are driven over baresip's `ctrl_tcp` interface (netstring-framed JSON commands
//! and events), so the test waits for "incoming call", "established" and "closed" instead of
//! sleeping.

mod common;

use std::io::{BufRead, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::{Server, ServerConfig};

/// The tones: what the agent's phone sends, the caller's phone, the greeting and the music.
const AGENT_HZ: f64 = 440.0;
const CALLER_HZ: f64 = 1200.0;
const GREETING_HZ: f64 = 700.0;
const MUSIC_HZ: f64 = 300.0;

fn write_tone(path: &Path, hz: f64, secs: f64) {
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: 8000,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::create(path, spec).expect("create prompt");
    for i in 0..(secs * 8000.0) as usize {
        let v = (2.0 * std::f64::consts::PI * hz * i as f64 / 8000.0).sin() * 8000.0;
        w.write_sample(v as i16).expect("write prompt");
    }
    w.finalize().expect("finish prompt");
}

/// Queue `support` on 600 with a 1.5 s greeting and music, answered by agent 1001; 1006
/// calls.
fn call_center() -> Server {
    let prompts = common::temp_dir("prompts");
    let greeting = prompts.join("greeting.wav");
    let music = prompts.join("music.wav");
    write_tone(&greeting, GREETING_HZ, 1.5);
    write_tone(&music, MUSIC_HZ, 1.0);
    Server::start(&ServerConfig {
        users: 1001..=1010,
        files: vec![
            (
                "queues.toml".into(),
                format!(
                    "[queues.support]\nnumber = \"600\"\nstrategy = \"ring-all\"\n\
                     ring_timeout = 30\ngreeting = \"{}\"\nmusic = \"{}\"\n",
                    greeting.display(),
                    music.display()
                ),
            ),
            (
                "agents.toml".into(),
                "[agents.1001]\nuser = \"1001\"\nskills = { english = 5 }\n\
                 queues = [\"support\"]\nlogin_on_start = true\n"
                    .into(),
            ),
        ],
        ..ServerConfig::default()
    })
}

// ------------------------------------------------------------------ baresip, remote-controlled

/// A baresip phone registered as `user`, sending a sine tone, recording what it decodes, and
/// controlled over `ctrl_tcp`.
struct Phone {
    child: Child,
    dir: PathBuf,
    ctrl: TcpStream,
    events: mpsc::Receiver<serde_json::Value>,
    token: u32,
}

impl Phone {
    fn start(server: &Server, user: u32, tone_hz: f64) -> Phone {
        let exe = which("baresip")
            .unwrap_or_else(|| panic!("baresip not found: apt-get install baresip-core"));
        let dir = common::temp_dir("phone");
        let snd = dir.join("snd");
        std::fs::create_dir_all(&snd).expect("snd dir");
        let sip_port = common::free_port();
        let ctrl_port = common::free_port();
        let (rtp_min, rtp_max) = common::media_ports(20);
        let config = format!(
            "poll_method epoll\n\
             sip_listen 127.0.0.1:{sip_port}\n\
             net_interface 127.0.0.1\n\
             call_local_timeout 120\n\
             audio_source ausine,{tone}\n\
             ausrc_srate 48000\n\
             ausrc_channels 2\n\
             audio_player aubridge,nil\n\
             audio_alert aubridge,nil\n\
             audio_level no\n\
             rtp_ports {rtp_min}-{rtp_max}\n\
             rtcp_mux no\n\
             jitter_buffer_delay 5-10\n\
             module_path /usr/lib/baresip/modules\n\
             module g711.so\n\
             module ausine.so\n\
             module aubridge.so\n\
             module sndfile.so\n\
             snd_path {snd}\n\
             module_tmp uuid.so\n\
             module_tmp account.so\n\
             module_app menu.so\n\
             module_app ctrl_tcp.so\n\
             ctrl_tcp_listen 127.0.0.1:{ctrl_port}\n",
            tone = tone_hz as u32,
            snd = snd.display(),
        );
        std::fs::write(dir.join("config"), config).expect("config");
        std::fs::write(
            dir.join("accounts"),
            format!(
                "<sip:{user}@{srv};transport=udp>;auth_pass={pw};answermode=manual;regint=300;audio_codecs=PCMU\n",
                srv = server.udp,
                pw = common::demo_password(user)
            ),
        )
        .expect("accounts");
        let log = std::fs::File::create(dir.join("baresip.log")).expect("log");
        let child = Command::new(exe)
            .arg("-f")
            .arg(&dir)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start baresip: {e}"));
        let deadline = Instant::now() + Duration::from_secs(10);
        let ctrl = loop {
            if let Ok(s) = TcpStream::connect(("127.0.0.1", ctrl_port)) {
                break s;
            }
            assert!(Instant::now() < deadline, "baresip's ctrl_tcp did not open");
            std::thread::sleep(Duration::from_millis(20));
        };
        let (tx, events) = mpsc::channel();
        let mut reader = ctrl.try_clone().expect("clone");
        std::thread::spawn(move || {
            let mut r = std::io::BufReader::new(&mut reader);
            loop {
                // Netstring: "<len>:<json>,"
                let mut len = Vec::new();
                if r.read_until(b':', &mut len).map_or(true, |n| n == 0) {
                    break;
                }
                let Ok(n) = std::str::from_utf8(&len[..len.len() - 1])
                    .unwrap_or("")
                    .trim()
                    .parse::<usize>()
                else {
                    break;
                };
                let mut body = vec![0u8; n + 1];
                if r.read_exact(&mut body).is_err() {
                    break;
                }
                if let Ok(v) = serde_json::from_slice::<serde_json::Value>(&body[..n]) {
                    if tx.send(v).is_err() {
                        break;
                    }
                }
            }
        });
        let mut phone = Phone {
            child,
            dir,
            ctrl,
            events,
            token: 0,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while !phone.log().contains("200 OK") {
            assert!(
                Instant::now() < deadline,
                "baresip {user} did not register:\n{}\n--- server ---\n{}",
                phone.log(),
                server.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        phone.drain();
        phone
    }

    fn log(&self) -> String {
        String::from_utf8_lossy(&std::fs::read(self.dir.join("baresip.log")).unwrap_or_default())
            .into_owned()
    }

    fn command(&mut self, command: &str, params: &str) {
        self.token += 1;
        let msg = serde_json::json!({"command": command, "params": params, "token": self.token.to_string()})
            .to_string();
        let framed = format!("{}:{msg},", msg.len());
        self.ctrl
            .write_all(framed.as_bytes())
            .expect("ctrl_tcp write");
    }

    /// Wait for an event of `kind` (e.g. "CALL_ESTABLISHED"); earlier events are passed over.
    fn wait_event(&mut self, kind: &str, within: Duration) -> serde_json::Value {
        let deadline = Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.events.recv_timeout(left) {
                Ok(v) if v.get("type").and_then(|t| t.as_str()) == Some(kind) => return v,
                Ok(_) => {}
                Err(_) => panic!("no {kind} from baresip within {within:?}:\n{}", self.log()),
            }
        }
    }

    fn drain(&mut self) {
        while self.events.try_recv().is_ok() {}
    }

    /// The newest decoded-audio dump (what the phone played for the last call).
    fn last_heard(&self) -> Vec<i16> {
        let snd = self.dir.join("snd");
        let newest = std::fs::read_dir(&snd)
            .expect("snd dir")
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.to_string_lossy().ends_with("-dec.wav"))
            .max_by_key(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok())
            .expect("a decoded-audio dump");
        let samples = read_wav(&newest);
        // One dump per call: move it aside so the next call's is the newest.
        let _ = std::fs::rename(&newest, newest.with_extension("heard"));
        samples
    }
}

impl Drop for Phone {
    fn drop(&mut self) {
        self.command("quit", "");
        let deadline = Instant::now() + Duration::from_secs(2);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
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

fn which(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|d| d.join(name))
            .find(|p| p.is_file())
    })
}

/// Samples of a WAV dump, first channel. sndfile leaves the header of a file it is still
/// writing unfinished, so the data chunk is read up to the end of the file.
fn read_wav(path: &Path) -> Vec<i16> {
    let bytes = std::fs::read(path).expect("read dump");
    let (channels, data) = wav_data(&bytes).unwrap_or((1, &[]));
    data.chunks_exact(2 * channels)
        .map(|c| i16::from_le_bytes([c[0], c[1]]))
        .collect()
}

fn wav_data(b: &[u8]) -> Option<(usize, &[u8])> {
    if b.get(0..4)? != b"RIFF" || b.get(8..12)? != b"WAVE" {
        return None;
    }
    let mut off = 12;
    let mut channels = 1;
    while off + 8 <= b.len() {
        let id = &b[off..off + 4];
        let len = u32::from_le_bytes(b[off + 4..off + 8].try_into().ok()?) as usize;
        if id == b"fmt " {
            channels = u16::from_le_bytes(b.get(off + 10..off + 12)?.try_into().ok()?) as usize;
        }
        if id == b"data" {
            return Some((channels.max(1), &b[off + 8..]));
        }
        off += 8 + len + (len & 1);
    }
    None
}

// ------------------------------------------------------------------ what was heard

/// The tone of each 100 ms window: the strongest of `tones` when it carries most of the
/// window's energy, `None` for silence or noise.
fn classify(samples: &[i16], tones: &[f64]) -> Vec<Option<f64>> {
    samples
        .chunks_exact(800)
        .map(|w| {
            let energy: f64 = w.iter().map(|&s| f64::from(s).powi(2)).sum::<f64>() + 1.0;
            let (best, power) = tones
                .iter()
                .map(|&f| (f, goertzel(w, f) / (energy * w.len() as f64 / 2.0)))
                .fold((0.0, 0.0), |a, b| if b.1 > a.1 { b } else { a });
            (power > 0.5 && energy > 800.0 * 100.0 * 100.0).then_some(best)
        })
        .collect()
}

fn goertzel(x: &[i16], hz: f64) -> f64 {
    let k = 2.0 * (2.0 * std::f64::consts::PI * hz / 8000.0).cos();
    let (mut s1, mut s2) = (0.0, 0.0);
    for &v in x {
        let s = f64::from(v) + k * s1 - s2;
        s2 = s1;
        s1 = s;
    }
    s1 * s1 + s2 * s2 - k * s1 * s2
}

fn picture(windows: &[Option<f64>]) -> String {
    windows
        .iter()
        .map(|w| match w {
            Some(f) if *f == AGENT_HZ => 'A',
            Some(f) if *f == GREETING_HZ => 'G',
            Some(f) if *f == MUSIC_HZ => 'M',
            Some(f) if *f == CALLER_HZ => 'C',
            Some(_) => '?',
            None => '.',
        })
        .collect()
}

const TONES: [f64; 4] = [AGENT_HZ, CALLER_HZ, GREETING_HZ, MUSIC_HZ];

/// Windows of the agent's tone among the last `n` full windows before the end (the very last
/// one is skipped: the hang-up may cut it).
fn agent_windows_at_end(windows: &[Option<f64>], n: usize) -> usize {
    let end = windows.len().saturating_sub(1);
    windows[end.saturating_sub(n)..end]
        .iter()
        .filter(|w| **w == Some(AGENT_HZ))
        .count()
}

/// One call from 1006 to the queue, answered by 1001 after `answer_after` (0: at once); both
/// talk for `talk`. Returns what the caller heard.
fn call(
    server: &Server,
    caller: &mut Phone,
    agent: &mut Phone,
    answer_after: Duration,
    talk: Duration,
) -> Vec<i16> {
    caller.drain();
    agent.drain();
    caller.command("dial", "600");
    agent.wait_event("CALL_INCOMING", Duration::from_secs(10));
    if !answer_after.is_zero() {
        // The caller is listening to the greeting or the music meanwhile.
        std::thread::sleep(answer_after);
    }
    agent.command("accept", "");
    agent.wait_event("CALL_ESTABLISHED", Duration::from_secs(5));
    std::thread::sleep(talk);
    caller.command("hangup", "");
    caller.wait_event("CALL_CLOSED", Duration::from_secs(5));
    agent.wait_event("CALL_CLOSED", Duration::from_secs(5));
    let _ = server;
    caller.last_heard()
}

/// Real callers heard nothing for the whole call in half of the calls an agent answered at
/// once: the relay switched the caller from its greeting stream to the agent's packets, and
/// baresip's jitter buffer dropped every packet whose sequence number looked old. Every call
/// here must carry the agent's voice, whenever the agent answers (at once, during the
/// greeting, during the music).
#[test]
fn the_caller_hears_the_agent_however_soon_the_agent_answers() {
    let server = call_center();
    let mut agent = Phone::start(&server, 1001, AGENT_HZ);
    let mut caller = Phone::start(&server, 1006, CALLER_HZ);
    let talk = Duration::from_millis(1500);
    let mut failures = Vec::new();
    let delays = [0u64, 0, 0, 0, 60, 150, 400, 800, 1200, 2100];
    for (n, ms) in delays.into_iter().enumerate() {
        let heard = call(
            &server,
            &mut caller,
            &mut agent,
            Duration::from_millis(ms),
            talk,
        );
        let windows = classify(&heard, &TONES);
        let agent_at_end = agent_windows_at_end(&windows, 12);
        eprintln!("call {n} (answer after {ms} ms): {}", picture(&windows));
        // sndfile writes only what was decoded: packets the jitter buffer dropped leave no
        // windows at all, so the agent's tone must also fill the talk time.
        let agent_total = windows.iter().filter(|w| **w == Some(AGENT_HZ)).count();
        if agent_at_end < 10 || agent_total < 12 {
            failures.push(format!(
                "call {n}, answered after {ms} ms: the agent's tone in {agent_at_end} of the last 12 windows: {}",
                picture(&windows)
            ));
        }
        let agent_heard = classify(&agent.last_heard(), &TONES);
        let caller_windows = agent_heard.iter().filter(|w| **w == Some(CALLER_HZ)).count();
        if caller_windows < 12 {
            failures.push(format!(
                "call {n}: the agent heard the caller in {caller_windows} windows: {}",
                picture(&agent_heard)
            ));
        }
        if ms >= 300 {
            // Answered during the greeting: the caller heard it first.
            assert!(
                windows.contains(&Some(GREETING_HZ)),
                "call {n}: no greeting before the answer: {}",
                picture(&windows)
            );
        }
    }
    assert!(
        failures.is_empty(),
        "calls where the caller did not hear the agent (A = agent, G = greeting, M = music, . = silence):\n{}\n--- caller ---\n{}",
        failures.join("\n"),
        caller.log()
    );
}

/// Hold puts music to the caller and resume brings the agent back, in the same stream.
#[test]
fn the_caller_hears_music_on_hold_and_the_agent_again_after_resume() {
    let server = call_center();
    let mut agent = Phone::start(&server, 1001, AGENT_HZ);
    let mut caller = Phone::start(&server, 1006, CALLER_HZ);
    for round in 0..3 {
        caller.drain();
        agent.drain();
        caller.command("dial", "600");
        agent.wait_event("CALL_INCOMING", Duration::from_secs(10));
        agent.command("accept", "");
        agent.wait_event("CALL_ESTABLISHED", Duration::from_secs(5));
        std::thread::sleep(Duration::from_millis(1000));
        let holds = server.log().matches("agent hold hold=true").count();
        agent.command("hold", "");
        wait_log(&server, "agent hold hold=true", holds + 1);
        std::thread::sleep(Duration::from_millis(1500));
        let resumes = server.log().matches("agent hold hold=false").count();
        agent.command("resume", "");
        wait_log(&server, "agent hold hold=false", resumes + 1);
        std::thread::sleep(Duration::from_millis(1500));
        caller.command("hangup", "");
        caller.wait_event("CALL_CLOSED", Duration::from_secs(5));
        agent.wait_event("CALL_CLOSED", Duration::from_secs(5));
        let windows = classify(&caller.last_heard(), &TONES);
        let pic = picture(&windows);
        eprintln!("hold round {round}: {pic}");
        // Agent, then music, then the agent again until the end.
        let first_music = pic
            .find('M')
            .unwrap_or_else(|| panic!("no music on hold: {pic}"));
        assert!(
            pic[..first_music].matches('A').count() >= 8,
            "the agent before the hold: {pic}"
        );
        assert!(
            pic[first_music..].matches('M').count() >= 12,
            "music during the hold: {pic}"
        );
        assert!(
            agent_windows_at_end(&windows, 14) >= 12,
            "the agent after resume: {pic}"
        );
    }
}

fn wait_log(server: &Server, needle: &str, count: usize) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while server.log().matches(needle).count() < count {
        assert!(
            Instant::now() < deadline,
            "no {needle:?} in the server log:\n{}",
            server.log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}
