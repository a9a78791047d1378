//! A baresip phone driven over its `ctrl_tcp` interface (netstring-framed JSON commands and
//! events), recording what it decodes with the `sndfile` module, and the tone analysis that
//! tells what a person on that phone heard. Needs Debian's `baresip-core`.

use std::io::{BufRead, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use super::Server;

/// A baresip phone registered as `user`, sending a sine tone, recording what it decodes, and
/// controlled over `ctrl_tcp`.
pub(crate) struct Phone {
    /// The RTP ports baresip uses (a capture filter for its media).
    pub(crate) rtp_ports: (u16, u16),
    child: Child,
    dir: PathBuf,
    ctrl: TcpStream,
    events: mpsc::Receiver<serde_json::Value>,
    token: u32,
}

impl Phone {
    /// Start baresip for `user` (password `demo<user>`), sending a `tone_hz` sine, answering
    /// only when told (`accept`); returns once it is registered.
    pub(crate) fn start(server: &Server, user: u32, tone_hz: f64) -> Phone {
        Phone::start_with(server, user, tone_hz, None)
    }

    /// Like [`Phone::start`], registered over TLS to `tls` (trusting `cafile`) with SRTP
    /// (SDES) mandatory for its calls.
    pub(crate) fn start_tls(
        server: &Server,
        user: u32,
        tone_hz: f64,
        tls: std::net::SocketAddr,
        cafile: &Path,
    ) -> Phone {
        Phone::start_with(server, user, tone_hz, Some((tls, cafile)))
    }

    fn start_with(
        server: &Server,
        user: u32,
        tone_hz: f64,
        tls: Option<(std::net::SocketAddr, &Path)>,
    ) -> Phone {
        let exe = which("baresip")
            .unwrap_or_else(|| panic!("baresip not found: apt-get install baresip-core"));
        let dir = super::temp_dir("phone");
        let snd = dir.join("snd");
        std::fs::create_dir_all(&snd).expect("snd dir");
        let sip_port = super::free_port_pair();
        let ctrl_port = super::free_port();
        let (rtp_min, rtp_max) = super::media_ports(20);
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
             {tls_modules}\
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
            tls_modules = match tls {
                Some((_, ca)) => format!("sip_cafile {}\nmodule srtp.so\n", ca.display()),
                None => String::new(),
            },
        );
        std::fs::write(dir.join("config"), config).expect("config");
        std::fs::write(
            dir.join("accounts"),
            match tls {
                Some((addr, _)) => format!(
                    "<sip:{user}@{addr};transport=tls>;auth_pass={pw};mediaenc=srtp-mand;answermode=manual;regint=300;audio_codecs=PCMU\n",
                    pw = super::demo_password(user)
                ),
                None => format!(
                    "<sip:{user}@{srv};transport=udp>;auth_pass={pw};answermode=manual;regint=300;audio_codecs=PCMU\n",
                    srv = server.udp,
                    pw = super::demo_password(user)
                ),
            },
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
            rtp_ports: (rtp_min, rtp_max),
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

    pub(crate) fn log(&self) -> String {
        String::from_utf8_lossy(&std::fs::read(self.dir.join("baresip.log")).unwrap_or_default())
            .into_owned()
    }

    pub(crate) fn command(&mut self, command: &str, params: &str) {
        self.token += 1;
        let msg = serde_json::json!({"command": command, "params": params, "token": self.token.to_string()})
            .to_string();
        let framed = format!("{}:{msg},", msg.len());
        self.ctrl
            .write_all(framed.as_bytes())
            .expect("ctrl_tcp write");
    }

    /// Wait for an event of `kind` (e.g. "CALL_ESTABLISHED"); earlier events are passed over.
    pub(crate) fn wait_event(&mut self, kind: &str, within: Duration) -> serde_json::Value {
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

    pub(crate) fn drain(&mut self) {
        while self.events.try_recv().is_ok() {}
    }

    /// The newest decoded-audio dump (what the phone played for the last call).
    pub(crate) fn last_heard(&self) -> Vec<i16> {
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
pub(crate) fn read_wav(path: &Path) -> Vec<i16> {
    read_wav_channel(path, 0)
}

/// One channel (0 = left) of a WAV file's 16-bit samples.
pub(crate) fn read_wav_channel(path: &Path, channel: usize) -> Vec<i16> {
    let bytes = std::fs::read(path).expect("read dump");
    let (channels, data) = wav_data(&bytes).unwrap_or((1, &[]));
    data.chunks_exact(2 * channels)
        .filter_map(|c| c.get(2 * channel..2 * channel + 2))
        .map(|s| i16::from_le_bytes([s[0], s[1]]))
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

/// The tone of each 100 ms window: the strongest of `tones` when it carries most of the
/// window's energy, `None` for silence or noise.
pub(crate) fn classify(samples: &[i16], tones: &[f64]) -> Vec<Option<f64>> {
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

/// How many 100 ms windows carry `hz` audibly: at least a fifth of the window's energy
/// (a tone mixed with another one still counts), in a window that is not near silence.
pub(crate) fn windows_with(samples: &[i16], hz: f64) -> usize {
    samples
        .chunks_exact(800)
        .filter(|w| {
            let energy: f64 = w.iter().map(|&s| f64::from(s).powi(2)).sum::<f64>() + 1.0;
            let share = goertzel(w, hz) / (energy * w.len() as f64 / 2.0);
            share > 0.2 && energy > 800.0 * 100.0 * 100.0
        })
        .count()
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

/// `caller` dials `number` and `agent` answers after `answer_after` (zero: at once); returns
/// when the agent's phone has the call established.
pub(crate) fn connect(caller: &mut Phone, agent: &mut Phone, number: &str, answer_after: Duration) {
    caller.drain();
    agent.drain();
    caller.command("dial", number);
    agent.wait_event("CALL_INCOMING", Duration::from_secs(10));
    if !answer_after.is_zero() {
        std::thread::sleep(answer_after);
    }
    agent.command("accept", "");
    agent.wait_event("CALL_ESTABLISHED", Duration::from_secs(5));
}

/// The caller hangs up; returns when both phones have closed the call.
pub(crate) fn hang_up(caller: &mut Phone, agent: &mut Phone) {
    caller.command("hangup", "");
    caller.wait_event("CALL_CLOSED", Duration::from_secs(5));
    agent.wait_event("CALL_CLOSED", Duration::from_secs(5));
}
