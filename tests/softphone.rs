//! The headless softphone against the server: an agent's phone answers a queue call from a
//! caller's phone, both on the project's own SIP stack and media code; each records what it
//! hears and the tones are checked (the caller's 440 Hz at the agent, the agent's 1 kHz at the
//! caller), the digits the caller keys (RFC 4733) reach the agent, and the counts add up.

mod common;

use std::time::Duration;

use common::phone::{classify, read_wav};
use common::{demo_password, Server, ServerConfig, SippRun};
use softphone::audio::Source;
use softphone::phone::{run, Options, Summary};

fn options(server: &Server, user: u32) -> Options {
    Options {
        answer_after: Duration::from_millis(200),
        timeout: Duration::from_secs(30),
        ..Options::new(server.udp, &user.to_string(), &demo_password(user))
    }
}

/// A phone that waits for a call, started in a thread; back once the server has its
/// registration.
fn waiting(server: &Server, opts: Options) -> std::thread::JoinHandle<Summary> {
    let before = server.log().matches("binding added").count();
    let phone = std::thread::spawn(move || run(opts));
    common::wait_until(Duration::from_secs(10), "the phone registers", || {
        server.log().matches("binding added").count() > before
    });
    phone
}

#[test]
fn two_headless_phones_talk_through_a_queue_and_each_hears_the_other() {
    let server = Server::start(&ServerConfig::support_desk(""));
    let dir = server.dir().to_owned();
    let agent_opts = Options {
        source: Source::Tone(1000.0),
        record: Some(dir.join("agent.wav")),
        ..options(&server, 1001)
    };
    let agent = waiting(&server, agent_opts);
    let caller = run(Options {
        dial: Some("600".into()),
        source: Source::Tone(440.0),
        record: Some(dir.join("caller.wav")),
        hangup_after: Some(Duration::from_secs(3)),
        digits: "12#".into(),
        ..options(&server, 1006)
    });
    let agent = agent.join().expect("the agent's phone");
    let log = server.log();
    assert_eq!(caller.error, None, "{caller:?}\n{log}");
    assert_eq!(agent.error, None, "{agent:?}\n{log}");
    assert!(caller.registered && caller.answered && agent.answered);
    assert_eq!(
        (caller.hung_up_by.as_str(), agent.hung_up_by.as_str()),
        ("us", "them")
    );
    assert!(caller.setup_ms.is_some());
    assert_eq!(caller.codec, "PCMU");
    // About 50 packets a second each way for 3 s; nothing lost on loopback.
    for (who, s) in [("caller", &caller), ("agent", &agent)] {
        assert!(s.sent >= 120 && s.received >= 100, "{who}: {s:?}");
        assert_eq!(s.lost, 0, "{who}: {s:?}");
    }
    assert_eq!(caller.digits_sent, "12#");
    assert_eq!(
        agent.digits_received, "12#",
        "the caller's keys reached the agent"
    );
    let tones = [440.0, 1000.0];
    let at_agent = classify(&read_wav(&dir.join("agent.wav")), &tones);
    let at_caller = classify(&read_wav(&dir.join("caller.wav")), &tones);
    let n = |v: &[Option<f64>], hz: f64| v.iter().filter(|w| **w == Some(hz)).count();
    assert!(
        n(&at_agent, 440.0) >= 15,
        "the agent heard the caller in {} windows",
        n(&at_agent, 440.0)
    );
    assert!(
        n(&at_caller, 1000.0) >= 15,
        "the caller heard the agent in {} windows",
        n(&at_caller, 1000.0)
    );
}

#[test]
fn a_wrong_password_is_a_clear_failure() {
    let server = Server::start(&ServerConfig::default());
    let s = run(Options {
        password: "wrong".into(),
        dial: Some("600".into()),
        timeout: Duration::from_secs(10),
        ..options(&server, 1002)
    });
    assert!(!s.registered);
    let e = s.error.expect("an error");
    assert!(e.contains("registration refused"), "{e}");
}

/// Interop with baresip, both ways: the headless phone calls a queue whose agent is baresip,
/// then baresip calls the headless phone as an extension; each side hears the other's tone.
#[test]
fn the_headless_phone_and_baresip_call_each_other_through_the_server() {
    use common::phone::Phone;
    let server = Server::start(&ServerConfig::support_desk(""));
    let dir = server.dir().to_owned();
    let tones = [440.0, 1000.0, 700.0];
    let n = |v: &[Option<f64>], hz: f64| v.iter().filter(|w| **w == Some(hz)).count();

    // The headless phone calls the queue; baresip (agent 1001) answers.
    let mut agent = Phone::start(&server, 1001, 1000.0);
    agent.drain();
    let caller_opts = Options {
        dial: Some("600".into()),
        source: Source::Tone(440.0),
        record: Some(dir.join("to-baresip.wav")),
        hangup_after: Some(Duration::from_secs(3)),
        ..options(&server, 1006)
    };
    let caller = std::thread::spawn(move || run(caller_opts));
    agent.wait_event("CALL_INCOMING", Duration::from_secs(10));
    agent.command("accept", "");
    let caller = caller.join().expect("the headless caller");
    assert_eq!(caller.error, None, "{caller:?}\n{}", server.log());
    agent.wait_event("CALL_CLOSED", Duration::from_secs(5));
    let heard = classify(&read_wav(&dir.join("to-baresip.wav")), &tones);
    assert!(
        n(&heard, 1000.0) >= 15,
        "the headless phone heard baresip in {} windows",
        n(&heard, 1000.0)
    );
    let heard = classify(&agent.last_heard(), &tones);
    assert!(
        n(&heard, 440.0) >= 15,
        "baresip heard the headless phone in {} windows",
        n(&heard, 440.0)
    );

    // baresip (1007) calls the headless phone (1002) as an extension.
    let callee_opts = Options {
        source: Source::Tone(700.0),
        record: Some(dir.join("from-baresip.wav")),
        ..options(&server, 1002)
    };
    let callee = std::thread::spawn(move || run(callee_opts));
    common::wait_until(
        Duration::from_secs(10),
        "the headless phone registers",
        || server.log().matches("binding added").count() >= 3,
    );
    let mut caller = Phone::start(&server, 1007, 440.0);
    caller.drain();
    caller.command("dial", "1002");
    caller.wait_event("CALL_ESTABLISHED", Duration::from_secs(10));
    std::thread::sleep(Duration::from_secs(3));
    caller.command("hangup", "");
    caller.wait_event("CALL_CLOSED", Duration::from_secs(5));
    let callee = callee.join().expect("the headless callee");
    assert_eq!(callee.error, None, "{callee:?}\n{}", server.log());
    assert_eq!(callee.hung_up_by, "them");
    let heard = classify(&read_wav(&dir.join("from-baresip.wav")), &tones);
    assert!(
        n(&heard, 440.0) >= 15,
        "the headless phone heard baresip in {} windows",
        n(&heard, 440.0)
    );
    let heard = classify(&caller.last_heard(), &tones);
    assert!(
        n(&heard, 700.0) >= 15,
        "baresip heard the headless phone in {} windows",
        n(&heard, 700.0)
    );
}

#[test]
fn the_headless_phone_registers_with_sha_256_digest() {
    let server = Server::start(&ServerConfig {
        algorithms: vec!["SHA-256".into()],
        ..ServerConfig::default()
    });
    // Registered, then a call to nobody: refused, and said so.
    let s = run(Options {
        dial: Some("4711".into()),
        ..options(&server, 1003)
    });
    assert!(s.registered, "{s:?}\n{}", server.log());
    assert_eq!(s.refused, 404, "{s:?}");
    assert!(s.error.unwrap_or_default().contains("404"));
}

/// Hold and resume from the headless phone: the agent's phone holds the caller (re-INVITE,
/// sendonly) and resumes; the caller hears the agent, then the queue's music instead, then
/// the agent again.
#[test]
fn the_headless_agent_holds_and_resumes_and_the_caller_hears_music_in_between() {
    let music = concat!(env!("CARGO_MANIFEST_DIR"), "/config/prompts/moh.wav");
    let server = Server::start(&ServerConfig {
        files: vec![
            (
                "queues.toml".into(),
                format!("[queues.support]\nnumber = \"600\"\nmusic = \"{music}\"\n"),
            ),
            (
                "agents.toml".into(),
                "[agents.1001]\nuser = \"1001\"\nqueues = [\"support\"]\nlogin_on_start = true\n"
                    .into(),
            ),
        ],
        ..ServerConfig::default()
    });
    let dir = server.dir().to_owned();
    let agent_opts = Options {
        source: Source::Tone(1000.0),
        hold_after: Some(Duration::from_millis(1500)),
        hold_for: Duration::from_millis(2000),
        ..options(&server, 1001)
    };
    let agent = waiting(&server, agent_opts);
    let caller = run(Options {
        dial: Some("600".into()),
        source: Source::Tone(440.0),
        record: Some(dir.join("caller.wav")),
        hangup_after: Some(Duration::from_secs(5)),
        ..options(&server, 1006)
    });
    let agent = agent.join().expect("the agent's phone");
    assert_eq!(agent.error, None, "{agent:?}\n{}", server.log());
    assert!(agent.held_and_resumed, "{agent:?}");
    // The caller's audio, 100 ms windows: the agent's tone, then none of it (music), then
    // the tone again.
    let windows = classify(&read_wav(&dir.join("caller.wav")), &[1000.0]);
    let tone: Vec<bool> = windows.iter().map(|w| *w == Some(1000.0)).collect();
    // The queue's music before the agent answers does not count.
    let answered = tone.iter().position(|t| *t).expect("the agent's tone");
    let tone = &tone[answered..];
    let first_gap = tone.iter().position(|t| !t).expect("a gap");
    let gap_len = tone[first_gap..].iter().take_while(|t| !**t).count();
    let after = tone[first_gap + gap_len..].iter().filter(|t| **t).count();
    assert!(
        first_gap >= 8 && gap_len >= 15 && after >= 8,
        "tone before {first_gap}, held {gap_len}, tone after {after} windows: {caller:?}"
    );
}

/// A supervisor on the headless phone barges in on an agent's call (`*46` and the agent's
/// number) and keys 7 to take it over: the server re-INVITEs the supervisor's phone onto the
/// agent's side and hangs up on the agent; the caller then hears the supervisor's tone.
#[test]
fn a_supervisor_takes_a_call_over_from_the_headless_phone() {
    let server = Server::start(&ServerConfig::support_desk(
        "[supervisors.1009]\nqueues = [\"support\"]\n",
    ));
    let dir = server.dir().to_owned();
    let agent_opts = Options {
        source: Source::Tone(1000.0),
        ..options(&server, 1001)
    };
    let agent = waiting(&server, agent_opts);
    let caller_opts = Options {
        dial: Some("600".into()),
        source: Source::Tone(440.0),
        record: Some(dir.join("caller.wav")),
        hangup_after: Some(Duration::from_secs(6)),
        ..options(&server, 1006)
    };
    let caller = std::thread::spawn(move || run(caller_opts));
    common::wait_until(Duration::from_secs(10), "the call is connected", || {
        server.log().contains("call connected")
    });
    let supervisor = run(Options {
        dial: Some("*461001".into()),
        source: Source::Tone(1700.0),
        digits: "7".into(),
        digits_after: Duration::from_millis(1500),
        ..options(&server, 1009)
    });
    let (caller, agent) = (caller.join().unwrap(), agent.join().unwrap());
    let log = server.log();
    assert_eq!(supervisor.error, None, "{supervisor:?}\n{log}");
    assert_eq!(
        supervisor.reoffers, 1,
        "re-INVITEd onto the agent's side: {supervisor:?}"
    );
    assert_eq!(
        supervisor.hung_up_by, "them",
        "the caller's hang-up ends it"
    );
    assert_eq!(agent.hung_up_by, "them", "the agent was let go: {agent:?}");
    assert!(
        agent.talk_s < caller.talk_s,
        "the agent left before the caller hung up"
    );
    assert!(log.contains("call taken over"), "{log}");
    // The end of what the caller heard: the supervisor alone.
    let windows = classify(&read_wav(&dir.join("caller.wav")), &[1000.0, 1700.0]);
    let last: Vec<_> = windows.iter().rev().take(15).collect();
    let sup = last.iter().filter(|w| ***w == Some(1700.0)).count();
    let agent_tone = last.iter().filter(|w| ***w == Some(1000.0)).count();
    assert!(
        sup >= 10 && agent_tone == 0,
        "last 1.5 s: supervisor {sup}, agent {agent_tone} windows"
    );
}

/// A phone waiting for calls keeps its registration: the server grants 60 s, the phone
/// registers again before they run out (at four fifths), and the server accepts it.
#[test]
fn a_waiting_phone_refreshes_its_registration_before_it_runs_out() {
    let server = Server::start(&ServerConfig {
        max_expires: 60,
        ..ServerConfig::default()
    });
    let s = run(Options {
        timeout: Duration::from_secs(52),
        ..options(&server, 1004)
    });
    assert!(s.registered);
    assert_eq!(s.error.as_deref(), Some("no call came"), "{s:?}");
    assert_eq!(s.refreshes, 1, "{s:?}\n{}", server.log());
}

/// Straight to another user agent, without registering: a SIPp peer challenges the INVITE
/// with 407 (the phone answers with digest), answers with PCMA only and echoes the audio;
/// the phone hears its own tone back through A-law.
#[test]
fn the_headless_phone_answers_a_peers_challenge_and_talks_pcma() {
    let server = Server::start(&ServerConfig::default());
    let port = common::free_port();
    let peer = SippRun::new(&server, "peers/challenge_uas.xml")
        .listen_port(port)
        .timeout_s(30)
        .arg("-rtp_echo")
        .media_port()
        .spawn();
    let dir = server.dir().to_owned();
    // The peer may take a moment to listen: the phone's INVITE is retransmitted meanwhile.
    let s = run(Options {
        server: format!("127.0.0.1:{port}").parse().unwrap(),
        register: false,
        dial: Some("600".into()),
        source: Source::Tone(440.0),
        record: Some(dir.join("echo.wav")),
        hangup_after: Some(Duration::from_secs(2)),
        ..options(&server, 1001)
    });
    let done = peer.wait();
    assert_eq!(s.error, None, "{s:?}");
    assert!(!s.registered && s.answered);
    assert_eq!(s.codec, "PCMA");
    assert_eq!(done.successful(), 1, "{}", done.diagnostics());
    let heard = classify(&read_wav(&dir.join("echo.wav")), &[440.0, 1000.0]);
    let own = heard.iter().filter(|w| **w == Some(440.0)).count();
    assert!(
        own >= 10,
        "the phone heard its own tone back in {own} windows: {s:?}"
    );
}

/// A caller who gives up while the callee's phone rings: the headless phone cancels its
/// INVITE (487), and the callee's phone, ringing, sees the CANCEL and stops.
#[test]
fn a_call_given_up_while_it_rings_is_cancelled_on_both_sides() {
    let server = Server::start(&ServerConfig::default());
    let callee_opts = Options {
        answer_after: Duration::from_secs(20),
        ..options(&server, 1002)
    };
    let callee = waiting(&server, callee_opts);
    let caller = run(Options {
        dial: Some("1002".into()),
        cancel_after: Some(Duration::from_millis(1500)),
        ..options(&server, 1006)
    });
    let callee = callee.join().unwrap();
    assert_eq!(caller.refused, 487, "{caller:?}");
    assert!(!caller.answered);
    assert_eq!(
        callee.error.as_deref(),
        Some("the caller cancelled"),
        "{callee:?}"
    );
    let rows = common::call_rows(&server, 1);
    assert_eq!(rows[0].outcome, "abandoned", "{rows:?}");
}

/// The phone calls 600 straight at a SIPp peer playing `scenario` (no registration), with
/// the options `tweak` makes: what the phone reported and how the peer's scenario went.
fn call_peer(
    scenario: &str,
    tweak: impl FnOnce(Options) -> Options,
) -> (Summary, common::SippOutcome) {
    // (The server only lends the peer its directory and log.)
    let server = Server::start(&ServerConfig::default());
    let port = common::free_port();
    let peer = SippRun::new(&server, scenario)
        .listen_port(port)
        .timeout_s(30)
        .media_port()
        .spawn();
    let s = run(tweak(Options {
        server: format!("127.0.0.1:{port}").parse().unwrap(),
        register: false,
        dial: Some("600".into()),
        ..options(&server, 1001)
    }));
    (s, peer.wait())
}

/// A peer that answers late (the phone retransmits its INVITE), sends its 200 OK twice (the
/// phone acknowledges both), puts the phone on hold with a re-INVITE (answered recvonly,
/// and the phone stops sending), sends a BYE of no dialog (481) and then the real BYE.
#[test]
fn the_phone_handles_a_late_answer_a_repeated_200_a_peers_hold_and_a_stray_bye() {
    let (s, done) = call_peer("peers/awkward_uas.xml", |o| Options {
        source: Source::Tone(440.0),
        ..o
    });
    assert_eq!(done.successful(), 1, "{}\n{s:?}", done.diagnostics());
    assert_eq!(s.error, None, "{s:?}");
    assert!(
        s.answered && s.setup_ms.is_some_and(|ms| ms >= 1000.0),
        "{s:?}"
    );
    assert_eq!((s.reoffers, s.hung_up_by.as_str()), (1, "them"), "{s:?}");
    // Held after about half a second of talk, and silent from then on.
    assert!(s.sent < 45, "the phone kept sending while held: {s:?}");
}

/// The phone gives up a call while it rings, and the peer's 200 OK crosses its CANCEL: the
/// phone acknowledges the answer and hangs up the call it no longer wants.
#[test]
fn a_200_that_crosses_the_phones_cancel_gets_an_ack_and_a_bye() {
    let (s, done) = call_peer("peers/cancel_crossing_uas.xml", |o| Options {
        cancel_after: Some(Duration::from_millis(500)),
        ..o
    });
    assert_eq!(done.successful(), 1, "{}\n{s:?}", done.diagnostics());
    assert!(!s.answered && s.refused == 487, "{s:?}");
}

/// Agent 1001 runs `agent` (sending 1 kHz) and colleague 1002 waits (700 Hz); a caller
/// (440 Hz, recording `caller.wav` in the server's directory) calls the queue and hangs up
/// after `secs`. What the three reported.
fn hand_over(server: &Server, agent: Options, secs: u64) -> (Summary, Summary, Summary) {
    let colleague_opts = Options {
        source: Source::Tone(700.0),
        ..options(server, 1002)
    };
    let colleague = waiting(server, colleague_opts);
    let agent = waiting(server, agent);
    let caller = run(Options {
        dial: Some("600".into()),
        source: Source::Tone(440.0),
        record: Some(server.dir().join("caller.wav")),
        hangup_after: Some(Duration::from_secs(secs)),
        ..options(server, 1006)
    });
    (agent.join().unwrap(), colleague.join().unwrap(), caller)
}

/// The agent mutes for a second (the caller hears silence, then the agent again), then
/// transfers the caller blind to user 1002 from the phone (REFER): the server reports the
/// transfer done, lets the agent go, and the caller then hears 1002.
#[test]
fn the_agent_mutes_then_transfers_the_caller_from_the_phone() {
    let server = Server::start(&ServerConfig::support_desk(""));
    let dir = server.dir().to_owned();
    let agent_opts = Options {
        source: Source::Tone(1000.0),
        mute_after: Some(Duration::from_millis(1000)),
        mute_for: Duration::from_millis(1000),
        transfer_to: Some("1002".into()),
        transfer_after: Duration::from_millis(3000),
        keepalive: Some(Duration::from_millis(200)),
        ..options(&server, 1001)
    };
    let (agent, colleague, caller) = hand_over(&server, agent_opts, 7);
    let log = server.log();
    assert_eq!(caller.error, None, "{caller:?}\n{log}");
    assert_eq!(agent.error, None, "{agent:?}\n{log}");
    assert!(agent.muted_and_unmuted, "{agent:?}");
    assert_eq!(agent.transfer_status, 200, "{agent:?}");
    assert_eq!(
        agent.hung_up_by, "them",
        "the server let the agent go: {agent:?}"
    );
    assert!(
        colleague.answered && colleague.hung_up_by == "them",
        "{colleague:?}"
    );
    // What the caller heard, 100 ms windows from the agent's first tone: the agent, silence
    // (muted), the agent again, then the colleague.
    let heard = classify(&read_wav(&dir.join("caller.wav")), &[1000.0, 700.0]);
    let start = heard
        .iter()
        .position(|w| *w == Some(1000.0))
        .expect("the agent's tone");
    let heard = &heard[start..];
    let muted = heard.iter().position(|w| *w != Some(1000.0)).unwrap_or(0);
    let gap = heard[muted..].iter().take_while(|w| w.is_none()).count();
    let back = heard[muted + gap..]
        .iter()
        .take_while(|w| **w == Some(1000.0))
        .count();
    let colleague_windows = heard.iter().filter(|w| **w == Some(700.0)).count();
    assert!(
        muted >= 6 && gap >= 7 && back >= 6 && colleague_windows >= 15,
        "agent {muted}, silence {gap}, agent {back}, colleague {colleague_windows} windows"
    );
    // The agent's STUN keep-alives were answered with the address the server sees (not
    // taken for garbage).
    assert!(!log.contains("message from source dropped"), "{log}");
    assert!(
        agent
            .public_address
            .as_deref()
            .is_some_and(|a| a.starts_with("127.0.0.1:")),
        "{agent:?}"
    );
}

/// A phone over TCP places a queue call: registration, the call and its end all go over
/// its connection.
#[test]
fn a_phone_over_tcp_calls_the_queue_and_hears_the_agent() {
    let server = Server::start(&ServerConfig::support_desk(""));
    let dir = server.dir().to_owned();
    let agent_opts = Options {
        source: Source::Tone(1000.0),
        ..options(&server, 1001)
    };
    let agent = waiting(&server, agent_opts);
    let caller = run(Options {
        tcp: true,
        dial: Some("600".into()),
        source: Source::Tone(440.0),
        record: Some(dir.join("caller.wav")),
        hangup_after: Some(Duration::from_secs(3)),
        ..options(&server, 1006)
    });
    let agent = agent.join().unwrap();
    let log = server.log();
    assert_eq!(caller.error, None, "{caller:?}\n{log}");
    assert!(caller.registered && caller.answered, "{caller:?}");
    assert_eq!(agent.hung_up_by, "them", "{agent:?}");
    assert!(
        log.lines()
            .any(|l| l.contains("binding added") && l.contains("transport=\"TCP\"")),
        "a binding over TCP: {log}"
    );
    let heard = classify(&read_wav(&dir.join("caller.wav")), &[1000.0]);
    assert!(
        heard.iter().filter(|w| **w == Some(1000.0)).count() >= 15,
        "the caller heard the agent in too few windows"
    );
}

/// An attended transfer from the phone: the agent holds the caller (who hears the queue's
/// music), consults user 1002 on a second call, then connects them (REFER with Replaces in
/// the caller's dialog); the server reports it done and hangs up both of the agent's calls,
/// and the caller then hears 1002.
#[test]
fn the_agent_consults_a_colleague_then_hands_the_caller_over() {
    let server = Server::start(&ServerConfig::support_desk(""));
    let dir = server.dir().to_owned();
    let agent_opts = Options {
        source: Source::Tone(1000.0),
        consult: Some("1002".into()),
        consult_after: Duration::from_millis(1500),
        complete_after: Duration::from_millis(1500),
        record: Some(dir.join("agent.wav")),
        ..options(&server, 1001)
    };
    let (agent, colleague, caller) = hand_over(&server, agent_opts, 8);
    let log = server.log();
    assert_eq!(agent.error, None, "{agent:?}\n{log}");
    assert!(agent.consulted, "{agent:?}");
    assert_eq!(agent.transfer_status, 200, "{agent:?}\n{log}");
    assert_eq!(agent.hung_up_by, "them", "{agent:?}");
    assert_eq!(caller.error, None, "{caller:?}");
    assert!(
        colleague.answered && colleague.hung_up_by == "them",
        "{colleague:?}"
    );
    // The caller: the agent, then not the agent (held: music), then the colleague.
    let heard = classify(&read_wav(&dir.join("caller.wav")), &[1000.0, 700.0]);
    let agent_at = heard
        .iter()
        .position(|w| *w == Some(1000.0))
        .expect("the agent");
    let colleague_at = heard
        .iter()
        .position(|w| *w == Some(700.0))
        .expect("the colleague");
    let colleague_windows = heard.iter().filter(|w| **w == Some(700.0)).count();
    assert!(
        agent_at + 10 < colleague_at && colleague_windows >= 15,
        "agent from window {agent_at}, colleague from {colleague_at} ({colleague_windows})"
    );
    assert!(
        !heard[colleague_at..].contains(&Some(1000.0)),
        "the agent is gone once the caller is handed over"
    );
    let rows = common::call_rows(&server, 2);
    let customer = rows
        .iter()
        .find(|r| r.queue.is_some())
        .expect("the queue call");
    assert_eq!(customer.segments.len(), 2, "{customer:?}");
}
