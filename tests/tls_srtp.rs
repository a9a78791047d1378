//! SIP over TLS and SRTP keyed in the SDP (SDES, RFC 4568), against a real phone: baresip
//! registers over TLS (trusting the server's certificate) and calls the queue with SRTP
//! mandatory; the agent's phone is a plain one. Both hear each other's tone, and a capture of
//! the loopback shows what an eavesdropper gets: every packet of the TLS phone's leg is SRTP
//! (12 + 160 + 10 octets) and none decodes to a tone, while the plain leg decodes to its tones
//! (so the same analysis would have seen cleartext). A phone whose account requires TLS is
//! refused over UDP, plaintext SIP on the TLS port is refused with a log line, and a key that
//! does not match the certificate is reported by `switchboard check` naming the files.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::phone::{classify, read_wav, Phone};
use common::{demo_password, Server, ServerConfig};
use softphone::audio::Source;
use softphone::phone::{run, Options};

/// A capture of the loopback's UDP packets but SIP's, by tshark (Debian's `tshark`).
struct Capture {
    child: std::process::Child,
    file: std::path::PathBuf,
}

impl Capture {
    fn start(dir: &Path, sip_port: u16) -> Capture {
        let file = dir.join("media.pcapng");
        let mut child = Command::new("tshark")
            .args(["-i", "lo", "-q", "-f"])
            .arg(format!("udp and not port {sip_port}"))
            .arg("-w")
            .arg(&file)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("tshark (apt-get install tshark)");
        // Ready once it says it captures.
        let err = child.stderr.take().expect("stderr");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                if line.contains("Capturing on") {
                    let _ = tx.send(());
                }
            }
        });
        rx.recv_timeout(Duration::from_secs(15))
            .expect("tshark did not start capturing");
        Capture { child, file }
    }

    /// Stop, then every UDP packet as (source port, destination port, payload).
    fn packets(mut self) -> Vec<(u16, u16, Vec<u8>)> {
        // SIGINT lets tshark finish its file.
        let _ = Command::new("kill")
            .args(["-INT", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
        let out = Command::new("tshark")
            .arg("-r")
            .arg(&self.file)
            .args([
                "-T",
                "fields",
                "-e",
                "udp.srcport",
                "-e",
                "udp.dstport",
                "-e",
                "udp.payload",
            ])
            .output()
            .expect("tshark -r");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| {
                let mut f = l.split('\t');
                let s = f.next()?.parse().ok()?;
                let d = f.next()?.parse().ok()?;
                let p = f.next()?.trim();
                let bytes = (0..p.len() / 2)
                    .map(|i| u8::from_str_radix(&p[2 * i..2 * i + 2], 16))
                    .collect::<Result<Vec<u8>, _>>()
                    .ok()?;
                Some((s, d, bytes))
            })
            .collect()
    }
}

fn ulaw(b: u8) -> i16 {
    let b = !b;
    let exp = (b >> 4) & 7;
    let mag = ((i32::from(b & 0x0f) << 3) + 0x84) << exp;
    let s = mag - 0x84;
    (if b & 0x80 != 0 { -s } else { s }) as i16
}

#[test]
fn a_phone_over_tls_calls_with_srtp_and_the_wire_carries_no_audio_in_the_clear() {
    let tls_port = common::free_port();
    let scratch = common::temp_dir("tls");
    let (cert, key) = common::test_certificate(&scratch, "server");
    let mut cfg = ServerConfig::support_desk("");
    cfg.sip_extra = format!(
        "tls = \"127.0.0.1:{tls_port}\"\ntls_cert = \"{}\"\ntls_key = \"{}\"\n",
        cert.display(),
        key.display()
    );
    // 1006 is a desk phone that must use TLS.
    cfg.users = 1001..=1005;
    cfg.users_extra = format!(
        "\n[users.1006]\npassword = \"{}\"\nrequire_tls = true\n",
        demo_password(1006)
    );
    let server = Server::start(&cfg);
    let tls: std::net::SocketAddr = format!("127.0.0.1:{tls_port}").parse().unwrap();

    // Plaintext where TLS is required: 1006 over UDP is refused, with a line saying why.
    let plain = run(Options {
        timeout: Duration::from_secs(10),
        ..Options::new(server.udp, "1006", &demo_password(1006))
    });
    assert!(!plain.registered, "{plain:?}");
    common::wait_until(Duration::from_secs(5), "the refusal is logged", || {
        server.log().contains("refused: this account must use TLS")
    });
    // Plaintext SIP on the TLS port: refused in the handshake, logged.
    let mut s = std::net::TcpStream::connect(tls).expect("TLS port");
    let _ = s.write_all(b"OPTIONS sip:127.0.0.1 SIP/2.0\r\nContent-Length: 0\r\n\r\n");
    common::wait_until(
        Duration::from_secs(5),
        "the plaintext attempt is logged",
        || {
            server.log().lines().any(|l| {
                l.contains("WARN")
                    && l.contains("connection refused")
                    && l.contains("TLS handshake failed")
            })
        },
    );
    drop(s);

    // The agent: a plain phone sending 1 kHz.
    let dir = server.dir().to_owned();
    let before = server.log().matches("binding added").count();
    let agent_opts = Options {
        source: Source::Tone(1000.0),
        record: Some(dir.join("agent.wav")),
        answer_after: Duration::from_millis(200),
        timeout: Duration::from_secs(40),
        ..Options::new(server.udp, "1001", &demo_password(1001))
    };
    let agent = std::thread::spawn(move || run(agent_opts));
    common::wait_until(Duration::from_secs(10), "the agent registers", || {
        server.log().matches("binding added").count() > before
    });
    // The caller: baresip over TLS with SRTP, sending 440 Hz.
    let mut caller = Phone::start_tls(&server, 1006, 440.0, tls, &cert);
    assert!(
        server
            .log()
            .lines()
            .any(|l| l.contains("binding added") && l.contains("transport=\"TLS\"")),
        "{}",
        server.log()
    );
    let capture = Capture::start(&scratch, server.udp.port());
    caller.command("dial", &format!("sip:600@{tls};transport=tls"));
    let menc = caller.wait_event("CALL_MENC", Duration::from_secs(10));
    assert!(
        menc["param"]
            .as_str()
            .is_some_and(|p| p.contains("AES_CM_128_HMAC_SHA1_80")),
        "{menc}"
    );
    caller.wait_event("CALL_ESTABLISHED", Duration::from_secs(10));
    let talk = Instant::now();
    while talk.elapsed() < Duration::from_secs(4) {
        std::thread::sleep(Duration::from_millis(100));
    }
    caller.command("hangup", "");
    caller.wait_event("CALL_CLOSED", Duration::from_secs(5));
    let agent = agent.join().expect("agent");
    let packets = capture.packets();
    let log = server.log();
    assert_eq!(agent.error, None, "{agent:?}\n{log}");
    assert!(agent.answered, "{agent:?}");
    // The phone's ACK and BYE found us over TLS (our Contact names the TLS listener).
    assert!(!log.contains("no ACK from the caller"), "{log}");
    assert_eq!(agent.hung_up_by, "them", "{agent:?}");

    // Each heard the other.
    let tones = [440.0, 1000.0];
    let n = |v: &[Option<f64>], hz: f64| v.iter().filter(|w| **w == Some(hz)).count();
    let at_caller = classify(&caller.last_heard(), &tones);
    let at_agent = classify(&read_wav(&dir.join("agent.wav")), &tones);
    assert!(
        n(&at_caller, 1000.0) >= 15,
        "the TLS phone heard the agent: {at_caller:?}"
    );
    assert!(
        n(&at_agent, 440.0) >= 15,
        "the agent heard the TLS phone: {at_agent:?}"
    );

    // The wire: the TLS phone's leg is SRTP, the agent's plain.
    let (lo, hi) = caller.rtp_ports;
    let on_tls_leg = |p: &(u16, u16, Vec<u8>)| (lo..=hi).contains(&p.0) || (lo..=hi).contains(&p.1);
    let rtp: Vec<&(u16, u16, Vec<u8>)> = packets
        .iter()
        .filter(|p| p.2.len() >= 172 && p.2[0] >> 6 == 2 && !(200..=204).contains(&p.2[1]))
        .collect();
    // What an eavesdropper hears: each captured stream's payloads decoded as G.711 in
    // capture order, in 100 ms windows.
    let heard = |packets: &[&&(u16, u16, Vec<u8>)]| {
        let mut streams: std::collections::BTreeMap<(u16, u16), Vec<i16>> = Default::default();
        for p in packets {
            streams
                .entry((p.0, p.1))
                .or_default()
                .extend(p.2[12..172].iter().map(|&b| ulaw(b)));
        }
        let windows: Vec<Option<f64>> =
            streams.values().flat_map(|s| classify(s, &tones)).collect();
        (
            windows.iter().filter(|w| w.is_some()).count(),
            windows.len(),
        )
    };
    let secure: Vec<_> = rtp.iter().filter(|p| on_tls_leg(p)).collect();
    assert!(secure.len() > 300, "{} SRTP packets captured", secure.len());
    assert!(
        secure.iter().all(|p| p.2.len() == 12 + 160 + 10),
        "every packet of the TLS phone's leg carries an SRTP tag"
    );
    let (toned, windows) = heard(&secure);
    assert!(windows >= 60, "{windows} windows of the SRTP leg");
    assert_eq!(
        toned, 0,
        "an eavesdropper heard a tone in {toned} of {windows} windows"
    );
    // ... while the plain leg, through the same analysis, is audible.
    let plain: Vec<_> = rtp.iter().filter(|p| !on_tls_leg(p)).collect();
    let (toned, windows) = heard(&plain);
    assert!(
        windows >= 60 && toned * 10 >= windows * 8,
        "a tone in {toned} of {windows} windows of the plain leg"
    );
}

#[test]
fn a_key_that_does_not_match_the_certificate_is_reported_with_its_files() {
    let dir = common::temp_dir("tls-check");
    let (cert, _) = common::test_certificate(&dir, "one");
    let (_, other_key) = common::test_certificate(&dir, "two");
    std::fs::write(
        dir.join("switchboard.toml"),
        format!(
            "[sip]\ntls = \"127.0.0.1:5061\"\ntls_cert = \"{}\"\ntls_key = \"{}\"\n",
            cert.display(),
            other_key.display()
        ),
    )
    .unwrap();
    std::fs::write(dir.join("users.toml"), "[users.1001]\npassword = \"x\"\n").unwrap();
    let out = Command::new(common::switchboard_bin())
        .args(["check", "--config"])
        .arg(&dir)
        .output()
        .expect("switchboard check");
    let text =
        String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{text}");
    assert!(
        text.contains("sip.tls_cert")
            && text.contains("two-key.pem")
            && text.contains("one-cert.pem"),
        "{text}"
    );
}
