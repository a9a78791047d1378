//! Calls end to end over loopback: SIPp agent phones register with digest auth and answer
//! (echoing RTP), SIPp callers dial the queue, and the server's log and SIPp's statistics
//! tell what happened to every call.

mod common;

use std::fmt::Write as _;
use std::ops::RangeInclusive;
use std::time::{Duration, Instant};

use common::{agent_phones, Server, ServerConfig, SippOutcome, SippRun};

/// A server with queue `support` on 600 served by agents `agents` (all ready at start),
/// and callers coming in over a trunk for 127.0.0.1 allowed to dial 600 only.
fn call_center(agents: RangeInclusive<u32>, strategy: &str, ring_timeout: u32) -> ServerConfig {
    let mut agent_file = String::new();
    for a in agents.clone() {
        let _ = writeln!(
            agent_file,
            "[agents.{a}]\nuser = \"{a}\"\nskills = {{ english = 5 }}\nqueues = [\"support\"]\nlogin_on_start = true\n"
        );
    }
    ServerConfig {
        users: 1001..=1100,
        files: vec![
            (
                "queues.toml".into(),
                format!(
                    "[queues.support]\nnumber = \"600\"\nstrategy = \"{strategy}\"\n\
                     ring_timeout = {ring_timeout}\nauto_pause_after = 100\n"
                ),
            ),
            ("agents.toml".into(), agent_file),
        ],
        extra_toml: "[trunks.lab]\naddresses = [\"127.0.0.1\"]\nnumbers = [\"600\"]\n".into(),
        ..ServerConfig::default()
    }
}

fn caller(server: &Server, scenario: &str, calls: u32, rate: u32, pause_ms: u32) -> SippRun {
    SippRun::new(server, scenario)
        .calls(calls)
        .limit(calls)
        .rate(rate)
        .timeout_s(60)
        .arg("-s")
        .arg("600")
        .arg("-d")
        .arg(pause_ms.to_string())
        .media_port()
}

/// The `call ended` lines of the server log, as (reason, rtp_to_agent, rtp_to_caller).
fn ended_calls(log: &str) -> Vec<(String, u64, u64)> {
    log.lines()
        .filter(|l| l.contains("call ended"))
        .map(|l| {
            let field = |name: &str| -> String {
                l.split(&format!(" {name}="))
                    .nth(1)
                    .map(|rest| {
                        if let Some(q) = rest.strip_prefix('"') {
                            q.split('"').next().unwrap_or("").to_owned()
                        } else {
                            rest.split_whitespace().next().unwrap_or("").to_owned()
                        }
                    })
                    .unwrap_or_default()
            };
            (
                field("reason"),
                field("rtp_to_agent").parse().unwrap_or(0),
                field("rtp_to_caller").parse().unwrap_or(0),
            )
        })
        .collect()
}

fn wait_for_log(server: &Server, what: &str, count: usize, within: Duration) -> String {
    let deadline = Instant::now() + within;
    loop {
        let log = server.log();
        if log.matches(what).count() >= count {
            return log;
        }
        if Instant::now() > deadline {
            return log;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn assert_ok(out: &SippOutcome, calls: u64, server: &Server) {
    out.assert_all_succeeded(calls, server);
}

#[test]
fn a_caller_reaches_an_agent_and_both_hear_each_other_and_the_caller_hangs_up() {
    let server = Server::start(&call_center(1001..=1001, "longest-idle", 10));
    let phones = agent_phones(&server, 1001..=1001, "agent_phone_answer.xml", 1, &[]);
    // The caller plays 7 s of G.711 A-law from SIPp's pcap, then hangs up after 8 s.
    let out = caller(&server, "caller.xml", 1, 1, 8_000).run();
    assert_ok(&out, 1, &server);
    let agents = phones.wait();
    assert_eq!(agents.exit_code, Some(0), "{}", agents.diagnostics());
    let log = wait_for_log(&server, "call ended", 1, Duration::from_secs(5));
    let ended = ended_calls(&log);
    assert_eq!(ended.len(), 1, "{log}");
    let (reason, to_agent, to_caller) = &ended[0];
    assert_eq!(reason, "caller hung up");
    // 236 packets in the pcap: nearly all reach the agent, and its echo comes back.
    assert!(*to_agent >= 200, "caller→agent RTP {to_agent}\n{log}");
    assert!(*to_caller >= 200, "agent→caller RTP {to_caller}\n{log}");
    assert!(
        log.contains("call connected") && log.contains("agent=1001"),
        "{log}"
    );
}

#[test]
fn the_agent_hangs_up_and_the_caller_gets_the_bye() {
    let server = Server::start(&call_center(1002..=1002, "longest-idle", 10));
    let phones = agent_phones(
        &server,
        1002..=1002,
        "agent_phone_hangup.xml",
        1,
        &["-d", "2000"],
    );
    let out = caller(&server, "caller_wait_bye.xml", 1, 1, 0).run();
    assert_ok(&out, 1, &server);
    assert_eq!(phones.wait().exit_code, Some(0));
    let log = wait_for_log(&server, "call ended", 1, Duration::from_secs(5));
    let ended = ended_calls(&log);
    assert_eq!(ended.len(), 1, "{log}");
    assert_eq!(ended[0].0, "agent hung up", "{log}");
}

#[test]
fn a_caller_who_hangs_up_while_queued_is_an_abandon() {
    // No agent is registered: the caller waits, hears music, and gives up after 1.5 s.
    let server = Server::start(&call_center(1003..=1003, "longest-idle", 10));
    let out = caller(&server, "caller_abandon.xml", 1, 1, 1_500).run();
    assert_ok(&out, 1, &server);
    let log = wait_for_log(&server, "ABANDON", 1, Duration::from_secs(5));
    let ended = ended_calls(&log);
    assert_eq!(ended.len(), 1, "{log}");
    assert_eq!(ended[0].0, "caller hung up");
    assert!(
        log.contains("|ABANDON|"),
        "queue log records the abandon:\n{log}"
    );
    assert!(!log.contains("call connected"));
}

#[test]
fn an_agent_who_does_not_answer_is_skipped_and_the_next_agent_gets_the_call() {
    // Linear strategy: 1004 is always offered first. Its phone rings until CANCEL; after the
    // 2 s ring timeout the call goes to 1005, which answers.
    let server = Server::start(&call_center(1004..=1005, "linear", 2));
    let ringer = agent_phones(&server, 1004..=1004, "agent_no_answer.xml", 1, &[]);
    let answerer = agent_phones(&server, 1005..=1005, "agent_phone_answer.xml", 1, &[]);
    let out = caller(&server, "caller.xml", 1, 1, 5_000).run();
    assert_ok(&out, 1, &server);
    let r = ringer.wait();
    assert_eq!(
        r.exit_code,
        Some(0),
        "the ringing phone was cancelled cleanly\n{}",
        r.diagnostics()
    );
    assert_eq!(answerer.wait().exit_code, Some(0));
    let log = wait_for_log(&server, "call ended", 1, Duration::from_secs(5));
    assert!(
        log.contains("RINGNOANSWER"),
        "queue log has the no-answer:\n{log}"
    );
    let connected: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("call connected"))
        .collect();
    assert_eq!(connected.len(), 1, "{log}");
    assert!(connected[0].contains("agent=1005"), "{log}");
    assert_eq!(ended_calls(&log)[0].0, "caller hung up");
}

#[test]
fn a_busy_agent_puts_the_call_back_in_line_for_the_next_agent() {
    let server = Server::start(&call_center(1006..=1007, "linear", 5));
    let busy = agent_phones(&server, 1006..=1006, "agent_busy.xml", 1, &[]);
    let answerer = agent_phones(&server, 1007..=1007, "agent_phone_answer.xml", 1, &[]);
    let out = caller(&server, "caller.xml", 1, 1, 2_000).run();
    assert_ok(&out, 1, &server);
    assert_eq!(busy.wait().exit_code, Some(0));
    assert_eq!(answerer.wait().exit_code, Some(0));
    let log = wait_for_log(&server, "call ended", 1, Duration::from_secs(5));
    assert!(
        log.contains("offer not answered") && log.contains("486"),
        "{log}"
    );
    let connected: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("call connected"))
        .collect();
    assert_eq!(connected.len(), 1);
    assert!(connected[0].contains("agent=1007"), "{log}");
}

#[test]
fn callers_who_are_not_a_trunk_must_authenticate() {
    let mut cfg = call_center(1008..=1008, "longest-idle", 10);
    cfg.extra_toml.clear(); // no trunk: every caller is challenged
    let server = Server::start(&cfg);
    let phones = agent_phones(&server, 1008..=1008, "agent_phone_answer.xml", 1, &[]);
    let out = caller(&server, "caller_auth.xml", 1, 1, 1_000)
        .arg("-au")
        .arg("1090")
        .arg("-ap")
        .arg("demo1090")
        .run();
    assert_ok(&out, 1, &server);
    assert_eq!(phones.wait().exit_code, Some(0));
    // Without credentials the INVITE gets 407 and never reaches the queue.
    let plain = caller(&server, "caller.xml", 1, 1, 0).run();
    assert_eq!(plain.successful(), 0);
    assert!(plain
        .messages()
        .contains("407 Proxy Authentication Required"));
    let log = wait_for_log(&server, "call ended", 1, Duration::from_secs(5));
    assert_eq!(log.matches("call arrived").count(), 1, "{log}");
}

#[test]
fn a_hundred_concurrent_callers_are_all_served_by_twenty_agents() {
    let server = Server::start(&call_center(1011..=1030, "longest-idle", 10));
    // Each agent talks 1 s and hangs up; callers wait in line as long as it takes. (SIPp's
    // callers send the 7 s pcap from their answer on, so the last ones connected, after about
    // 5 rounds of 1 s, still send audio.)
    let phones = agent_phones(
        &server,
        1011..=1030,
        "agent_phone_hangup.xml",
        100,
        &["-d", "1000"],
    );
    // 100 callers arrive at 50/s: 80 of them queue behind the first 20.
    let out = caller(&server, "caller_wait_bye.xml", 100, 50, 0)
        .timeout_s(90)
        .run();
    assert_ok(&out, 100, &server);
    let agents = phones.wait();
    assert_eq!(agents.exit_code, Some(0), "{}", agents.diagnostics());
    let log = wait_for_log(&server, "call ended", 100, Duration::from_secs(10));
    let ended = ended_calls(&log);
    assert_eq!(ended.len(), 100);
    assert!(
        ended.iter().all(|(r, ..)| r == "agent hung up"),
        "{ended:?}"
    );
    assert_eq!(log.matches("call connected").count(), 100);
    // Every call's audio went both ways.
    assert!(ended.iter().all(|(_, a, c)| *a > 0 && *c > 0), "{ended:?}");
}

/// An INVITE from 127.0.0.1 (the lab trunk) with this SDP; returns the final status.
fn invite_with_sdp(server: &Server, number: &str, sdp: &str) -> u16 {
    let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let local = sock.local_addr().unwrap();
    let msg = format!(
        "INVITE sip:{number}@{srv} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bKsdp{p};rport\r\n\
         Max-Forwards: 70\r\nFrom: <sip:carrier@127.0.0.1>;tag=s1\r\nTo: <sip:{number}@{srv}>\r\n\
         Call-ID: sdp{p}@127.0.0.1\r\nCSeq: 1 INVITE\r\nContact: <sip:carrier@{local}>\r\n\
         Content-Type: application/sdp\r\nContent-Length: {len}\r\n\r\n{sdp}",
        srv = server.udp,
        p = std::process::id(),
        len = sdp.len()
    );
    sock.send_to(msg.as_bytes(), server.udp).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    let mut buf = vec![0u8; 65535];
    loop {
        let (n, _) = sock.recv_from(&mut buf).expect("an answer to the INVITE");
        let text = String::from_utf8_lossy(&buf[..n]).into_owned();
        let status: u16 = text
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        if status >= 200 {
            return status;
        }
    }
}

#[test]
fn no_common_codec_gets_488_and_nothing_is_queued() {
    let server = Server::start(&call_center(1009..=1009, "longest-idle", 10));
    let g729 = "v=0\r\no=c 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
                m=audio 40000 RTP/AVP 18\r\na=rtpmap:18 G729/8000\r\n";
    assert_eq!(invite_with_sdp(&server, "600", g729), 488);
    let video_only = "v=0\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=video 40000 RTP/AVP 31\r\n";
    assert_eq!(invite_with_sdp(&server, "600", video_only), 488);
    // A number the trunk may not dial: challenged, as from anyone who is not the trunk.
    let pcmu = "v=0\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 40000 RTP/AVP 0\r\n";
    assert_eq!(invite_with_sdp(&server, "1009", pcmu), 407);
    assert!(!server.log().contains("call queued"), "{}", server.log());
}

#[test]
fn agents_log_in_out_and_pause_with_feature_codes() {
    let server = Server::start(&call_center(1050..=1050, "longest-idle", 10));
    // The agent's phone is registered (an agent without one is kept out of the rotation).
    let _phone = RawAgent::register(&server, 1050);
    wait_for_log(
        &server,
        "ready for calls agent=1050",
        1,
        Duration::from_secs(5),
    );
    let code = |c: &str, user: u32| {
        caller(&server, "feature_code.xml", 1, 1, 0)
            .arg("-s")
            .arg(c)
            .arg("-au")
            .arg(user.to_string())
            .arg("-ap")
            .arg(common::demo_password(user))
            .run()
    };
    let states = |log: &str| -> Vec<String> {
        log.lines()
            .filter(|l| l.contains("agent state") && l.contains("agent=1050"))
            .filter_map(|l| l.split(" state=").nth(1).map(|s| s.trim().to_owned()))
            .collect()
    };
    // Ready at start; *73 pauses, *73 again resumes, *72 logs out, *71 logs in.
    for (c, expect) in [
        ("*73", "\"paused\" reason=\"pause\""),
        ("*73", "Ready"),
        ("*72", "LoggedOut"),
        ("*71", "Ready"),
    ] {
        let out = code(c, 1050);
        assert_ok(&out, 1, &server);
        let log = server.log();
        let last = states(&log).last().cloned().unwrap_or_default();
        assert!(last.starts_with(expect), "after {c}: {last}\n{log}");
    }
    // A user who is not an agent is refused.
    let out = code("*71", 1051);
    assert_eq!(out.successful(), 0);
    assert!(
        out.messages().contains("403 Forbidden"),
        "{}",
        out.diagnostics()
    );
}

#[test]
fn registered_users_call_each_other_by_extension() {
    let server = Server::start(&call_center(1060..=1060, "longest-idle", 10));
    // 1061 is not an agent; its phone answers like any desk phone.
    let phones = agent_phones(&server, 1061..=1061, "agent_phone_answer.xml", 1, &[]);
    let out = caller(&server, "caller_auth.xml", 1, 1, 1_000)
        .arg("-s")
        .arg("1061")
        .arg("-au")
        .arg("1062")
        .arg("-ap")
        .arg("demo1062")
        .run();
    assert_ok(&out, 1, &server);
    assert_eq!(phones.wait().exit_code, Some(0));
    let log = wait_for_log(&server, "call ended", 1, Duration::from_secs(5));
    assert!(log.contains("route=\"extension\""), "{log}");
    let ended = ended_calls(&log);
    assert_eq!(ended[0].0, "caller hung up");
    assert!(ended[0].1 > 0 && ended[0].2 > 0, "{ended:?}");
}

#[test]
fn a_real_softphone_agent_answers_a_sipp_caller() {
    let server = Server::start(&call_center(1070..=1070, "longest-idle", 10));
    let phone = common::Baresip::start(&server, 1070);
    let out = caller(&server, "caller.xml", 1, 1, 3_000).run();
    assert_ok(&out, 1, &server);
    let log = wait_for_log(&server, "call ended", 1, Duration::from_secs(5));
    let ended = ended_calls(&log);
    assert_eq!(ended.len(), 1, "{log}");
    let (reason, to_agent, to_caller) = &ended[0];
    assert_eq!(reason, "caller hung up");
    // 3 s of talk: the caller's pcap reaches baresip, baresip's tone reaches the caller.
    assert!(*to_agent >= 80, "caller→baresip RTP {to_agent}\n{log}");
    assert!(
        *to_caller >= 100,
        "baresip→caller RTP {to_caller}\n{log}\n{}",
        phone.log()
    );
    assert!(phone.log().contains("Call established"), "{}", phone.log());
}

/// A caller in plain Rust (the lab trunk): INVITE with a PCMU offer, ACK the 200, then
/// listen to what the queue plays.
struct RawCaller {
    sip: std::net::UdpSocket,
    rtp: std::sync::Arc<std::net::UdpSocket>,
    relay_port: u16,
    talking: std::sync::Arc<std::sync::atomic::AtomicBool>,
    server: std::net::SocketAddr,
    to: String,
    call_id: String,
}

impl RawCaller {
    fn call(server: &Server, number: &str) -> RawCaller {
        Self::call_with(server, number, false)
    }

    /// `late`: a delayed offer: no SDP in the INVITE, the answer (PCMA) goes in the ACK.
    fn call_with(server: &Server, number: &str, late: bool) -> RawCaller {
        let sip = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let rtp = std::sync::Arc::new(std::net::UdpSocket::bind("127.0.0.1:0").unwrap());
        let local = sip.local_addr().unwrap();
        let media = rtp.local_addr().unwrap().port();
        let call_id = format!("raw{}-{}@127.0.0.1", std::process::id(), media);
        let sdp = format!(
            "v=0\r\no=c 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
             m=audio {media} RTP/AVP 0 101\r\na=rtpmap:101 telephone-event/8000\r\n"
        );
        let invite_sdp = if late { "" } else { sdp.as_str() };
        let ctype = if late {
            ""
        } else {
            "Content-Type: application/sdp\r\n"
        };
        let msg = format!(
            "INVITE sip:{number}@{srv} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bKinv{media};rport\r\n\
             Max-Forwards: 70\r\nFrom: <sip:customer@127.0.0.1>;tag=c{media}\r\nTo: <sip:{number}@{srv}>\r\n\
             Call-ID: {call_id}\r\nCSeq: 1 INVITE\r\nContact: <sip:customer@{local}>\r\n\
             {ctype}Content-Length: {len}\r\n\r\n{invite_sdp}",
            srv = server.udp,
            len = invite_sdp.len()
        );
        sip.send_to(msg.as_bytes(), server.udp).unwrap();
        sip.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
        let mut buf = vec![0u8; 65535];
        let ok = loop {
            let (n, _) = sip.recv_from(&mut buf).expect("an answer to the INVITE");
            let text = String::from_utf8_lossy(&buf[..n]).into_owned();
            if text.starts_with("SIP/2.0 200") {
                break text;
            }
            assert!(text.starts_with("SIP/2.0 1"), "{text}");
        };
        let to = ok
            .lines()
            .find(|l| l.starts_with("To:"))
            .map(|l| l[3..].trim().to_owned())
            .unwrap();
        let relay_port: u16 = ok
            .lines()
            .find(|l| l.starts_with("m=audio"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|p| p.parse().ok())
            .unwrap();
        let c = RawCaller {
            sip,
            rtp,
            relay_port,
            talking: std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false)),
            server: server.udp,
            to,
            call_id,
        };
        if late {
            assert!(ok.contains("RTP/AVP 0 8 101"), "our offer in the 200: {ok}");
            let answer = format!(
                "v=0\r\no=c 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
                 m=audio {media} RTP/AVP 8\r\n"
            );
            c.send_body("ACK", 1, media, &answer);
        } else {
            c.send("ACK", 1, media);
        }
        // The relay latches on our first packet: say something (one PCMU frame).
        let mut p = vec![0x80, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 9];
        p.extend_from_slice(&[0xFF; 160]);
        c.rtp.send_to(&p, ("127.0.0.1", c.relay_port)).unwrap();
        c
    }

    /// Keep sending a sine of `hz` (PCMU, 20 ms packets) until hang-up.
    fn talk(&self, hz: f64) {
        let flag = self.talking.clone();
        flag.store(true, std::sync::atomic::Ordering::Relaxed);
        send_tone(self.rtp.clone(), self.relay_port, hz, 0x5EED, flag);
    }

    fn send(&self, method: &str, cseq: u32, n: u16) {
        self.send_body(method, cseq, n, "");
    }

    fn send_body(&self, method: &str, cseq: u32, n: u16, body: &str) {
        let local = self.sip.local_addr().unwrap();
        let ctype = if body.is_empty() {
            ""
        } else {
            "Content-Type: application/sdp\r\n"
        };
        let msg = format!(
            "{method} sip:600@{srv} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bK{method}{n}x{cseq};rport\r\n\
             Max-Forwards: 70\r\nFrom: <sip:customer@127.0.0.1>;tag=c{n}\r\nTo: {to}\r\n\
             Call-ID: {cid}\r\nCSeq: {cseq} {method}\r\n{ctype}Content-Length: {len}\r\n\r\n{body}",
            srv = self.server,
            to = self.to,
            cid = self.call_id,
            len = body.len()
        );
        self.sip.send_to(msg.as_bytes(), self.server).unwrap();
    }

    /// RTP headers and payloads received during `d`.
    fn listen(&self, d: Duration) -> Vec<Heard> {
        let end = Instant::now() + d;
        self.rtp
            .set_read_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        let mut out = Vec::new();
        let mut buf = [0u8; 2048];
        while Instant::now() < end {
            if let Ok((n, _)) = self.rtp.recv_from(&mut buf) {
                if n >= 12 {
                    out.push((
                        buf[1],
                        u16::from_be_bytes([buf[2], buf[3]]),
                        u32::from_be_bytes([buf[4], buf[5], buf[6], buf[7]]),
                        u32::from_be_bytes([buf[8], buf[9], buf[10], buf[11]]),
                        buf[12..n].to_vec(),
                    ));
                }
            }
        }
        out
    }

    fn hang_up(&self) -> bool {
        self.talking
            .store(false, std::sync::atomic::Ordering::Relaxed);
        let n = self.rtp.local_addr().unwrap().port();
        self.send("BYE", 2, n);
        let mut buf = vec![0u8; 65535];
        self.sip
            .set_read_timeout(Some(Duration::from_secs(3)))
            .unwrap();
        while let Ok((len, _)) = self.sip.recv_from(&mut buf) {
            let t = String::from_utf8_lossy(&buf[..len]);
            if t.starts_with("SIP/2.0 200") && t.contains("BYE") {
                return true;
            }
        }
        false
    }
}

#[test]
fn a_waiting_caller_hears_the_greeting_and_music_as_a_proper_rtp_stream() {
    let mut cfg = call_center(1080..=1080, "longest-idle", 10);
    // The shipped prompts: greeting and music of the demo help desk.
    let prompts = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config/prompts");
    cfg.files[0].1.push_str(&format!(
        "greeting = \"{}\"\nmusic = \"{}\"\n",
        prompts.join("support-greeting.wav").display(),
        prompts.join("moh.wav").display()
    ));
    let server = Server::start(&cfg);
    // Nobody is registered: the caller waits in line.
    let caller = RawCaller::call(&server, "600");
    let got = caller.listen(Duration::from_millis(1_500));
    // 20 ms packets: about 75 in 1.5 s.
    assert!((65..=80).contains(&got.len()), "{} packets", got.len());
    let (pt0, _, _, ssrc, _) = got[0];
    assert_eq!(pt0 & 0x7F, 0, "PCMU, as negotiated");
    assert!(pt0 & 0x80 != 0, "the first packet carries the marker bit");
    for w in got.windows(2) {
        assert_eq!(
            w[1].1,
            w[0].1.wrapping_add(1),
            "consecutive sequence numbers"
        );
        assert_eq!(w[1].2, w[0].2.wrapping_add(160), "timestamps 160 apart");
        assert_eq!(w[1].3, ssrc, "one SSRC");
    }
    assert!(got.iter().all(|p| p.4.len() == 160));
    let loud = got
        .iter()
        .filter(|p| p.4.iter().any(|&b| b != 0xFF && b != 0x7F))
        .count();
    assert!(
        loud > 20,
        "the greeting is audible ({loud} non-silent packets)"
    );
    assert!(caller.hang_up());
    let log = wait_for_log(&server, "call ended", 1, Duration::from_secs(5));
    assert_eq!(ended_calls(&log)[0].0, "caller hung up");
}

/// An agent's desk phone in plain Rust: registers with digest, answers the server's INVITE,
/// sends a tone, and can put the call on hold and take it back (re-INVITE).
struct RawAgent {
    sip: std::net::UdpSocket,
    rtp: std::sync::Arc<std::net::UdpSocket>,
    server: std::net::SocketAddr,
    user: u32,
    dialog: Option<(String, String, String, String)>, // call-id, our To (with tag), their From, their Contact
    cseq: u32,
    sending: std::sync::Arc<std::sync::atomic::AtomicBool>,
    relay_port: u16,
    /// The last INVITE the server sent this phone.
    last_invite: String,
}

fn md5_hex(s: &str) -> String {
    use md5::{Digest, Md5};
    Md5::digest(s.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn header<'a>(msg: &'a str, name: &str) -> Option<&'a str> {
    msg.lines()
        .find(|l| {
            l.len() > name.len()
                && l[..name.len()].eq_ignore_ascii_case(name)
                && l[name.len()..].starts_with(':')
        })
        .map(|l| l[name.len() + 1..].trim())
}

impl RawAgent {
    fn register(server: &Server, user: u32) -> RawAgent {
        let sip = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        sip.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let rtp = std::sync::Arc::new(std::net::UdpSocket::bind("127.0.0.1:0").unwrap());
        let agent = RawAgent {
            sip,
            rtp,
            server: server.udp,
            user,
            dialog: None,
            cseq: 0,
            sending: std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true)),
            relay_port: 0,
            last_invite: String::new(),
        };
        let local = agent.sip.local_addr().unwrap();
        let reg = |auth: &str, cseq: u32| {
            format!(
                "REGISTER sip:{srv} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bKreg{cseq}x{user};rport\r\n\
                 Max-Forwards: 70\r\nFrom: <sip:{user}@{srv}>;tag=r{user}\r\nTo: <sip:{user}@{srv}>\r\n\
                 Call-ID: reg{user}@127.0.0.1\r\nCSeq: {cseq} REGISTER\r\nContact: <sip:{user}@{local}>\r\n\
                 Expires: 300\r\n{auth}Content-Length: 0\r\n\r\n",
                srv = server.udp
            )
        };
        let ch = agent.exchange(&reg("", 1));
        assert!(ch.starts_with("SIP/2.0 401"), "{ch}");
        let www = header(&ch, "WWW-Authenticate").unwrap();
        let param = |n: &str| {
            let i = www.find(&format!("{n}=\"")).unwrap() + n.len() + 2;
            www[i..].split('"').next().unwrap().to_owned()
        };
        let (realm, nonce) = (param("realm"), param("nonce"));
        let uri = format!("sip:{}", server.udp);
        let ha1 = md5_hex(&format!("{user}:{realm}:demo{user}"));
        let ha2 = md5_hex(&format!("REGISTER:{uri}"));
        let resp = md5_hex(&format!("{ha1}:{nonce}:00000001:abcdef:auth:{ha2}"));
        let auth = format!(
            "Authorization: Digest username=\"{user}\", realm=\"{realm}\", nonce=\"{nonce}\", uri=\"{uri}\", \
             response=\"{resp}\", algorithm=MD5, cnonce=\"abcdef\", qop=auth, nc=00000001\r\n"
        );
        let ok = agent.exchange(&reg(&auth, 2));
        assert!(ok.starts_with("SIP/2.0 200"), "{ok}");
        agent
    }

    fn exchange(&self, msg: &str) -> String {
        self.sip.send_to(msg.as_bytes(), self.server).unwrap();
        let mut buf = vec![0u8; 65535];
        loop {
            let (n, _) = self.sip.recv_from(&mut buf).expect("an answer");
            let t = String::from_utf8_lossy(&buf[..n]).into_owned();
            if !t.starts_with("SIP/2.0 1") {
                return t;
            }
        }
    }

    fn sdp(&self, direction: &str) -> String {
        let port = self.rtp.local_addr().unwrap().port();
        format!(
            "v=0\r\no=a 1 {v} IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
             m=audio {port} RTP/AVP 0 101\r\na=rtpmap:101 telephone-event/8000\r\na={direction}\r\n",
            v = self.cseq + 1
        )
    }

    /// Key DTMF digits (RFC 4733 events, three end packets each) towards the relay.
    fn keys(&self, digits: &str, relay_port: u16) {
        for (n, d) in digits.chars().enumerate() {
            let event = match d {
                '*' => 10,
                '#' => 11,
                c => c.to_digit(10).unwrap() as u8,
            };
            let ts = 0x4000_0000u32 + n as u32 * 8000;
            for (i, end) in [(0u16, false), (1, true), (2, true), (3, true)] {
                let mut p = vec![0x80, 101];
                p.extend_from_slice(&(0x7000 + n as u16 * 4 + i).to_be_bytes());
                p.extend_from_slice(&ts.to_be_bytes());
                p.extend_from_slice(&0xA6E47u32.to_be_bytes());
                p.extend_from_slice(&[event, if end { 0x8A } else { 0x0A }, 0x03, 0x20]);
                self.rtp.send_to(&p, ("127.0.0.1", relay_port)).unwrap();
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Wait for the server's INVITE, answer 200, take the ACK, start the tone.
    fn answer(&mut self) {
        let mut buf = vec![0u8; 65535];
        let inv = loop {
            let (n, _) = self
                .sip
                .recv_from(&mut buf)
                .expect("an INVITE for the agent");
            let t = String::from_utf8_lossy(&buf[..n]).into_owned();
            if t.starts_with("INVITE ") {
                break t;
            }
        };
        let to = format!("{};tag=agent{}", header(&inv, "To").unwrap(), self.user);
        let from = header(&inv, "From").unwrap().to_owned();
        let call_id = header(&inv, "Call-ID").unwrap().to_owned();
        let contact = header(&inv, "Contact")
            .unwrap()
            .trim_matches(|c| c == '<' || c == '>')
            .to_owned();
        let relay_port: u16 = inv
            .lines()
            .find(|l| l.starts_with("m=audio"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|p| p.parse().ok())
            .unwrap();
        let body = self.sdp("sendrecv");
        let ok = format!(
            "SIP/2.0 200 OK\r\nVia: {via}\r\nFrom: {from}\r\nTo: {to}\r\nCall-ID: {call_id}\r\n\
             CSeq: {cseq}\r\nContact: <sip:{u}@{local}>\r\nContent-Type: application/sdp\r\n\
             Content-Length: {len}\r\n\r\n{body}",
            via = header(&inv, "Via").unwrap(),
            cseq = header(&inv, "CSeq").unwrap(),
            u = self.user,
            local = self.sip.local_addr().unwrap(),
            len = body.len()
        );
        self.sip.send_to(ok.as_bytes(), self.server).unwrap();
        loop {
            let (n, _) = self.sip.recv_from(&mut buf).expect("the ACK");
            if buf[..n].starts_with(b"ACK ") {
                break;
            }
        }
        self.dialog = Some((call_id, to, from, contact));
        self.relay_port = relay_port;
        self.last_invite = inv.clone();
        // A 440 Hz tone from the agent, SSRC 0xA6E47, until dropped.
        send_tone(
            self.rtp.clone(),
            relay_port,
            440.0,
            0xA6E47,
            self.sending.clone(),
        );
    }

    /// re-INVITE with this direction; returns the direction of the server's answer.
    fn reinvite(&mut self, direction: &str) -> String {
        self.cseq += 1;
        let (call_id, to, from, contact) = self.dialog.clone().unwrap();
        let body = self.sdp(direction);
        let local = self.sip.local_addr().unwrap();
        let inv = format!(
            "INVITE {contact} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bKre{c}x{u};rport\r\n\
             Max-Forwards: 70\r\nFrom: {to}\r\nTo: {from}\r\nCall-ID: {call_id}\r\nCSeq: {c} INVITE\r\n\
             Contact: <sip:{u}@{local}>\r\nContent-Type: application/sdp\r\nContent-Length: {len}\r\n\r\n{body}",
            c = self.cseq,
            u = self.user,
            len = body.len()
        );
        let ok = self.exchange(&inv);
        assert!(ok.starts_with("SIP/2.0 200"), "{ok}");
        let ack = format!(
            "ACK {contact} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bKack{c}x{u};rport\r\n\
             Max-Forwards: 70\r\nFrom: {to}\r\nTo: {their_to}\r\nCall-ID: {call_id}\r\nCSeq: {c} ACK\r\n\
             Content-Length: 0\r\n\r\n",
            c = self.cseq,
            u = self.user,
            their_to = header(&ok, "To").unwrap()
        );
        self.sip.send_to(ack.as_bytes(), self.server).unwrap();
        ["sendrecv", "sendonly", "recvonly", "inactive"]
            .into_iter()
            .find(|d| ok.contains(&format!("a={d}")))
            .unwrap_or("")
            .to_owned()
    }
}

impl Drop for RawAgent {
    fn drop(&mut self) {
        self.sending
            .store(false, std::sync::atomic::Ordering::Relaxed);
    }
}

#[test]
fn an_agent_on_hold_puts_music_to_the_caller_and_resume_reconnects_them() {
    let mut cfg = call_center(1085..=1085, "longest-idle", 10);
    let prompts = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config/prompts");
    cfg.files[0].1.push_str(&format!(
        "music = \"{}\"\n",
        prompts.join("moh.wav").display()
    ));
    let server = Server::start(&cfg);
    let mut agent = RawAgent::register(&server, 1085);
    let caller = RawCaller::call(&server, "600");
    agent.answer();
    // Which packets carry the agent's 440 Hz tone (decoded, as the caller's phone plays them).
    let agent_share = |pkts: &[Heard]| -> f64 {
        let agent = pkts
            .iter()
            .filter(|p| {
                let mut pcm = Vec::new();
                recorder::g711::Law::Mu.decode_into(&p.4, &mut pcm);
                let energy: f64 = pcm.iter().map(|&s| f64::from(s).powi(2)).sum::<f64>() + 1.0;
                // Goertzel power over the packet's energy: about 1 for a pure 440 Hz tone.
                power(&pcm, 440.0) * 2.0 / energy > 0.5
            })
            .count();
        agent as f64 / pkts.len().max(1) as f64
    };
    let agent_ssrc = 0xA6E47u32;
    // Listen in 300 ms windows until one satisfies `good` (up to 5 s); that window, and
    // everything heard before it.
    let until = |what: &str, good: &dyn Fn(&[Heard]) -> bool| {
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut all = Vec::new();
        loop {
            let w = caller.listen(Duration::from_millis(300));
            let ok = good(&w);
            all.extend(w.iter().cloned());
            if ok {
                return (w, all);
            }
            assert!(Instant::now() < deadline, "{what}: not within 5 s");
        }
    };
    // Talking: the caller hears the agent once the legs are bridged, and goes on hearing them.
    let (_, mut heard) = until("the caller hears the agent", &|w| agent_share(w) > 0.8);
    let talking = caller.listen(Duration::from_millis(500));
    assert!(
        agent_share(&talking) > 0.8,
        "the agent: {}",
        agent_share(&talking)
    );
    heard.extend(talking.iter().cloned());
    // Hold: the answer is recvonly; once the switch is made the caller hears music, never the
    // agent.
    assert_eq!(agent.reinvite("sendonly"), "recvonly");
    let (_, before) = until("music on hold", &|w| w.len() > 10 && agent_share(w) < 0.05);
    heard.extend(before);
    let held = caller.listen(Duration::from_millis(800));
    assert!(held.len() > 30, "music while held: {} packets", held.len());
    assert!(agent_share(&held) < 0.05, "agent not heard on hold");
    heard.extend(held.iter().cloned());
    // Resume: the agent again.
    assert_eq!(agent.reinvite("sendrecv"), "sendrecv");
    let (_, before) = until("the agent after resume", &|w| agent_share(w) > 0.8);
    heard.extend(before);
    let back = caller.listen(Duration::from_millis(500));
    assert!(agent_share(&back) > 0.8, "only the agent after resume");
    heard.extend(back.iter().cloned());
    // All of it in the caller leg's own stream: one SSRC (not the agent's), and sequence
    // numbers that never go back.
    let all: Vec<_> = heard.iter().collect();
    let ssrcs: std::collections::BTreeSet<u32> = all.iter().map(|p| p.3).collect();
    assert_eq!(ssrcs.len(), 1, "{ssrcs:?}");
    assert!(!ssrcs.contains(&agent_ssrc));
    for w in all.windows(2) {
        assert!(
            (w[1].1.wrapping_sub(w[0].1) as i16) > 0,
            "sequence {} after {}",
            w[1].1,
            w[0].1
        );
    }
    assert!(caller.hang_up());
    let log = wait_for_log(&server, "call ended", 1, Duration::from_secs(5));
    assert!(
        log.contains("agent hold") && log.contains("hold=true") && log.contains("hold=false"),
        "{log}"
    );
}

/// A packet the caller's phone received: payload type byte, sequence number, timestamp,
/// SSRC, payload.
type Heard = (u8, u16, u32, u32, Vec<u8>);

/// Send a PCMU sine of `hz` in 20 ms packets from `sock` to 127.0.0.1:`port` while `on`.
fn send_tone(
    sock: std::sync::Arc<std::net::UdpSocket>,
    port: u16,
    hz: f64,
    ssrc: u32,
    on: std::sync::Arc<std::sync::atomic::AtomicBool>,
) {
    std::thread::spawn(move || {
        let start = Instant::now();
        let mut seq = 0u16;
        while on.load(std::sync::atomic::Ordering::Relaxed) {
            let mut p = vec![0x80, 0];
            p.extend_from_slice(&seq.to_be_bytes());
            p.extend_from_slice(&(u32::from(seq) * 160).to_be_bytes());
            p.extend_from_slice(&ssrc.to_be_bytes());
            let samples: Vec<i16> = (0..160)
                .map(|k| {
                    let t = (usize::from(seq) * 160 + k) as f64 / 8000.0;
                    (8000.0 * (2.0 * std::f64::consts::PI * hz * t).sin()) as i16
                })
                .collect();
            recorder::g711::Law::Mu.encode_into(&samples, &mut p);
            let _ = sock.send_to(&p, ("127.0.0.1", port));
            seq = seq.wrapping_add(1);
            // Paced on the clock, not on sleep, so the stream keeps real time.
            let next = start + Duration::from_millis(20 * u64::from(seq));
            if let Some(d) = next.checked_duration_since(Instant::now()) {
                std::thread::sleep(d);
            }
        }
    });
}

/// Power of `hz` in `samples` (Goertzel), normalised by length.
fn power(samples: &[i16], hz: f64) -> f64 {
    let w = 2.0 * std::f64::consts::PI * hz / 8000.0;
    let coeff = 2.0 * w.cos();
    let (mut s1, mut s2) = (0.0f64, 0.0f64);
    for &x in samples {
        let s0 = f64::from(x) + coeff * s1 - s2;
        s2 = s1;
        s1 = s0;
    }
    (s1 * s1 + s2 * s2 - coeff * s1 * s2) / samples.len().max(1) as f64
}

/// Every file under `dir` whose name ends with `suffix`.
fn files_ending(dir: &std::path::Path, suffix: &str) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.to_string_lossy().ends_with(suffix) {
                out.push(p);
            }
        }
    }
    out
}

fn recording_config(agent: u32, rec_dir: &std::path::Path) -> ServerConfig {
    let mut cfg = call_center(agent..=agent, "longest-idle", 10);
    cfg.files[0].1.push_str("record = \"always\"\n");
    cfg.extra_toml.push_str(&format!(
        "\n[recording]\ndir = \"{}\"\nflush_every = 1\n",
        rec_dir.display()
    ));
    cfg
}

#[test]
fn a_recorded_call_holds_each_side_on_its_own_channel_with_a_correct_sidecar() {
    let rec_dir = common::temp_dir("recordings");
    let server = Server::start(&recording_config(1090, &rec_dir));
    let mut agent = RawAgent::register(&server, 1090);
    let caller = RawCaller::call(&server, "600");
    agent.answer();
    caller.talk(1000.0);
    std::thread::sleep(Duration::from_millis(2_000));
    assert!(caller.hang_up());
    let log = wait_for_log(&server, "recording finished", 1, Duration::from_secs(5));
    let wavs = files_ending(&rec_dir, ".wav");
    assert_eq!(wavs.len(), 1, "{wavs:?}\n{log}");
    let r = hound::WavReader::open(&wavs[0]).unwrap();
    let spec = r.spec();
    assert_eq!(
        (spec.channels, spec.sample_rate, spec.bits_per_sample),
        (2, 8000, 16)
    );
    let all: Vec<i16> = r.into_samples::<i16>().map(Result::unwrap).collect();
    let left: Vec<i16> = all.iter().step_by(2).copied().collect();
    let right: Vec<i16> = all.iter().skip(1).step_by(2).copied().collect();
    let secs = left.len() as f64 / 8000.0;
    assert!((1.5..3.0).contains(&secs), "{secs} s recorded");
    // Each channel holds the tone that side sent, and not the other side's.
    let (l1k, l440) = (power(&left, 1000.0), power(&left, 440.0));
    let (r1k, r440) = (power(&right, 1000.0), power(&right, 440.0));
    assert!(
        l1k > 100.0 * l440,
        "left: caller's 1 kHz {l1k:.0} vs 440 Hz {l440:.0}"
    );
    assert!(
        r440 > 100.0 * r1k,
        "right: agent's 440 Hz {r440:.0} vs 1 kHz {r1k:.0}"
    );
    // The sidecar says what the call was, and its hash is the file's.
    let json_path = wavs[0].with_extension("json");
    let sc: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&json_path).unwrap()).unwrap();
    assert_eq!(sc["queue"], "support");
    assert_eq!(sc["agent"], "1090");
    assert_eq!(sc["caller"], "customer");
    assert_eq!(sc["codec"], "PCMU");
    assert_eq!(sc["repaired"], false);
    assert!((sc["duration"].as_f64().unwrap() - secs).abs() < 1e-6);
    assert!(sc["start"].as_str().unwrap().ends_with('Z') && sc["end"].is_string());
    let hash = sha256_hex(&std::fs::read(&wavs[0]).unwrap());
    assert_eq!(sc["sha256"].as_str(), Some(hash.as_str()));
    std::fs::remove_dir_all(&rec_dir).unwrap();
}

fn sha256_hex(b: &[u8]) -> String {
    use sha2::Digest as _;
    sha2::Sha256::digest(b)
        .iter()
        .map(|x| format!("{x:02x}"))
        .collect()
}

#[test]
fn a_recording_cut_off_by_sigkill_is_repaired_into_a_playable_wav() {
    let rec_dir = common::temp_dir("recordings-kill");
    let mut server = Server::start(&recording_config(1091, &rec_dir));
    let mut agent = RawAgent::register(&server, 1091);
    let caller = RawCaller::call(&server, "600");
    agent.answer();
    caller.talk(1000.0);
    // Killed once the recording file holds two and a half seconds of audio (written, not
    // finished: its header is behind, which is what the repair must fix).
    let deadline = Instant::now() + Duration::from_secs(10);
    while files_ending(&rec_dir, ".wav.part")
        .first()
        .and_then(|p| std::fs::metadata(p).ok())
        .is_none_or(|m| m.len() < 44 + 8000 * 4 * 5 / 2)
    {
        assert!(Instant::now() < deadline, "no audio reached the recording");
        std::thread::sleep(Duration::from_millis(20));
    }
    server.kill();
    let parts = files_ending(&rec_dir, ".wav.part");
    assert_eq!(parts.len(), 1, "the unfinished recording is on disk");
    let out = std::process::Command::new(common::switchboard_bin())
        .args(["recordings", "repair"])
        .arg(&rec_dir)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("1 repaired, 0 failed"), "{stdout}");
    let wavs = files_ending(&rec_dir, ".wav");
    assert_eq!(wavs.len(), 1);
    let r = hound::WavReader::open(&wavs[0]).unwrap();
    let all: Vec<i16> = r.into_samples::<i16>().map(Result::unwrap).collect();
    let left: Vec<i16> = all.iter().step_by(2).copied().collect();
    // At least 2 s of the 2.5 s written survive.
    assert!(left.len() >= 2 * 8000, "{} s", left.len() as f64 / 8000.0);
    assert!(power(&left, 1000.0) > 100.0 * power(&left, 440.0));
    let sc: serde_json::Value =
        serde_json::from_slice(&std::fs::read(wavs[0].with_extension("json")).unwrap()).unwrap();
    assert_eq!(sc["repaired"], true);
    assert_eq!(sc["queue"], "support");
    std::fs::remove_dir_all(&rec_dir).unwrap();
    drop(agent);
}

#[test]
fn the_agents_pause_key_silences_the_recording_and_lists_the_pause() {
    let rec_dir = common::temp_dir("recordings-pause");
    let server = Server::start(&recording_config(1092, &rec_dir));
    let mut agent = RawAgent::register(&server, 1092);
    let caller = RawCaller::call(&server, "600");
    agent.answer();
    caller.talk(1000.0);
    std::thread::sleep(Duration::from_millis(1_000));
    // The caller is about to read out a card number: the agent keys *1 … and *1 again.
    let port = agent.relay_port;
    agent.keys("*1", port);
    std::thread::sleep(Duration::from_millis(1_500));
    agent.keys("*1", port);
    std::thread::sleep(Duration::from_millis(1_000));
    assert!(caller.hang_up());
    let log = wait_for_log(&server, "recording finished", 1, Duration::from_secs(5));
    assert!(
        log.contains("recording paused") && log.contains("recording resumed"),
        "{log}"
    );
    let wavs = files_ending(&rec_dir, ".wav");
    let sc: serde_json::Value =
        serde_json::from_slice(&std::fs::read(wavs[0].with_extension("json")).unwrap()).unwrap();
    let pauses = sc["pauses"].as_array().unwrap();
    assert_eq!(pauses.len(), 1, "{sc}");
    let (a, b) = (
        pauses[0][0].as_f64().unwrap(),
        pauses[0][1].as_f64().unwrap(),
    );
    assert!(
        (1.0..1.6).contains(&a) && b - a > 1.2 && b - a < 2.2,
        "pause {a}..{b}"
    );
    let all: Vec<i16> = hound::WavReader::open(&wavs[0])
        .unwrap()
        .into_samples::<i16>()
        .map(Result::unwrap)
        .collect();
    let left: Vec<i16> = all.iter().step_by(2).copied().collect();
    let s = |t: f64| (t * 8000.0) as usize;
    assert!(
        left[s(a + 0.05)..s(b - 0.05)].iter().all(|&x| x == 0),
        "silent while paused"
    );
    assert!(
        power(&left[s(b + 0.1)..s(b + 0.5)], 1000.0) > 1e5,
        "audible after resume"
    );
    assert!(
        power(&left[s(0.2)..s(a - 0.1)], 1000.0) > 1e5,
        "audible before the pause"
    );
    std::fs::remove_dir_all(&rec_dir).unwrap();
}

// ------------------------------------------------------------------ config reload

fn agents_toml(agents: &[(u32, &str)]) -> String {
    let mut out = String::new();
    for (a, skills) in agents {
        let _ = writeln!(
            out,
            "[agents.{a}]\nuser = \"{a}\"\nskills = {{ {skills} }}\nqueues = [\"support\"]\nlogin_on_start = true\n"
        );
    }
    out
}

fn reload(server: &Server, file: &str, text: &str, expect: &str, n: usize) -> String {
    std::fs::write(server.dir().join(file), text).unwrap();
    server.hup();
    let log = wait_for_log(server, expect, n, Duration::from_secs(5));
    assert!(
        log.matches(expect).count() >= n,
        "no {expect:?} after the reload:\n{log}"
    );
    log
}

#[test]
fn a_reload_keeps_a_waiting_caller_queued_and_an_added_agent_takes_the_call() {
    let server = Server::start(&call_center(1041..=1041, "longest-idle", 10));
    // Agent 1041 is configured but its phone is not registered: the caller waits.
    let caller = RawCaller::call(&server, "600");
    let log = wait_for_log(&server, "call queued", 1, Duration::from_secs(5));
    assert!(log.contains("call queued"), "{log}");
    // The admin adds agent 1042 (ready at start) and reloads.
    reload(
        &server,
        "agents.toml",
        &agents_toml(&[(1041, "english = 5"), (1042, "english = 5")]),
        "config reloaded",
        1,
    );
    let mut agent = RawAgent::register(&server, 1042);
    agent.answer();
    let log = wait_for_log(&server, "call connected", 1, Duration::from_secs(5));
    assert!(log.contains("agent added"), "{log}");
    let connected: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("call connected"))
        .collect();
    assert_eq!(connected.len(), 1, "{log}");
    assert!(connected[0].contains("agent=1042"), "{log}");
    let ids = arrival_ids(&log);
    assert!(
        connected[0].contains(&format!("{}}}", ids[0])),
        "the caller who waited through the reload: {ids:?}\n{log}"
    );
    assert!(caller.hang_up());
}

#[test]
fn a_reload_that_moves_a_skill_changes_who_gets_the_next_call() {
    let mut cfg = call_center(1043..=1044, "longest-idle", 10);
    cfg.files[0].1.push_str("required_skills = [\"spanish\"]\n");
    cfg.files[1].1 = agents_toml(&[(1043, "spanish = 5"), (1044, "english = 5")]);
    let server = Server::start(&cfg);
    let mut first = RawAgent::register(&server, 1043);
    let mut second = RawAgent::register(&server, 1044);
    let c1 = RawCaller::call(&server, "600");
    first.answer();
    let log = wait_for_log(&server, "call connected", 1, Duration::from_secs(5));
    assert!(
        log.lines()
            .any(|l| l.contains("call connected") && l.contains("agent=1043")),
        "{log}"
    );
    assert!(c1.hang_up());
    // Spanish moves from 1043 to 1044.
    reload(
        &server,
        "agents.toml",
        &agents_toml(&[(1043, "english = 5"), (1044, "spanish = 5")]),
        "config reloaded",
        1,
    );
    let c2 = RawCaller::call(&server, "600");
    second.answer();
    let log = wait_for_log(&server, "call connected", 2, Duration::from_secs(5));
    let connected: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("call connected"))
        .collect();
    assert_eq!(connected.len(), 2, "{log}");
    assert!(connected[1].contains("agent=1044"), "{log}");
    assert!(c2.hang_up());
}

#[test]
fn a_broken_config_is_reported_and_the_old_one_keeps_serving_until_it_is_fixed() {
    let server = Server::start(&call_center(1045..=1045, "longest-idle", 10));
    let good = std::fs::read_to_string(server.dir().join("queues.toml")).unwrap();
    let broken = good.replace("strategy = \"longest-idle\"", "strategy = \"longest-idel\"");
    let log = reload(&server, "queues.toml", &broken, "config reload failed", 1);
    assert!(
        log.contains("queues.toml:3: queues.support.strategy: unknown strategy \"longest-idel\"; did you mean \"longest-idle\"?"),
        "{log}"
    );
    // Still serving with the old configuration: a caller reaches the agent.
    let mut agent = RawAgent::register(&server, 1045);
    let caller = RawCaller::call(&server, "600");
    agent.answer();
    let log = wait_for_log(&server, "call connected", 1, Duration::from_secs(5));
    assert!(log.contains("agent=1045"), "{log}");
    assert!(caller.hang_up());
    // Fixing the file is enough: the watcher reloads it without a signal.
    std::fs::write(
        server.dir().join("queues.toml"),
        good.replace("ring_timeout = 10", "ring_timeout = 12"),
    )
    .unwrap();
    let log = wait_for_log(&server, "config reloaded", 1, Duration::from_secs(5));
    assert!(log.contains("trigger=\"file change\""), "{log}");
}

#[test]
fn a_delayed_offer_is_answered_with_our_offer_and_the_ack_settles_the_codec() {
    let mut cfg = call_center(1046..=1046, "longest-idle", 10);
    let prompts = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config/prompts");
    cfg.files[0].1.push_str(&format!(
        "music = \"{}\"\n",
        prompts.join("moh.wav").display()
    ));
    let server = Server::start(&cfg);
    let caller = RawCaller::call_with(&server, "600", true);
    // The ACK chose PCMA: the music comes as PCMA.
    let got = caller.listen(Duration::from_millis(600));
    assert!(got.len() > 20, "{} packets", got.len());
    assert!(
        got.iter().all(|p| p.0 & 0x7F == 8),
        "PCMA as answered in the ACK"
    );
    let log = wait_for_log(&server, "call queued", 1, Duration::from_secs(5));
    assert!(log.contains("call queued"), "{log}");
    assert!(caller.hang_up());
    // With an agent ready, the agent's phone is offered the codec the caller answered with.
    let mut agent = RawAgent::register(&server, 1046);
    let caller = RawCaller::call_with(&server, "600", true);
    agent.answer();
    assert!(
        agent.last_invite.contains("m=audio") && agent.last_invite.contains("RTP/AVP 8"),
        "{}",
        agent.last_invite
    );
    let log = wait_for_log(&server, "call connected", 1, Duration::from_secs(5));
    assert!(log.contains("agent=1046"), "{log}");
    assert!(caller.hang_up());
}

#[test]
fn a_waiting_caller_hears_position_and_wait_announcements() {
    let mut cfg = call_center(1047..=1047, "longest-idle", 10);
    let prompts = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config/prompts");
    cfg.files[0].1.push_str(&format!(
        "music = \"{}\"\nannounce_every = 1\n",
        prompts.join("moh.wav").display()
    ));
    cfg.calls_extra = format!("prompts = \"{}\"\n", prompts.display());
    cfg.log = "pbx=debug,info".into();
    let server = Server::start(&cfg);
    let first = RawCaller::call(&server, "600");
    let second = RawCaller::call(&server, "600");
    // Both wait (nobody's phone is registered); each hears its place in line every second.
    let log = wait_for_log(&server, "position announcement", 4, Duration::from_secs(6));
    let lines: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("position announcement"))
        .collect();
    let ids = arrival_ids(&log);
    assert!(lines.len() >= 4, "{log}");
    assert!(
        lines
            .iter()
            .any(|l| l.contains(&format!("{}}}", ids[0])) && l.contains("position=Some(1)")),
        "{log}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.contains(&format!("{}}}", ids[1])) && l.contains("position=Some(2)")),
        "{log}"
    );
    // The announcement interrupts the music: a new talkspurt (marker bit) every second.
    let got = second.listen(Duration::from_millis(2_500));
    let marks = got.iter().filter(|p| p.0 & 0x80 != 0).count();
    assert!(marks >= 2, "{marks} talkspurts in 2.5 s");
    assert!(first.hang_up() && second.hang_up());
}

/// The call ids in the order the calls arrived, from the server log's "call arrived" lines
/// (ids start at the server's start time).
fn arrival_ids(log: &str) -> Vec<String> {
    log.lines()
        .filter(|l| l.contains("call arrived"))
        .filter_map(|l| {
            let at = l.find("call_id=")?;
            let rest = &l[at..];
            Some(rest[..rest.find(['}', ' ', ':']).unwrap_or(rest.len())].to_owned())
        })
        .collect()
}
