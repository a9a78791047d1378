//! The headless softphone against the server: an agent's phone answers a queue call from a
//! caller's phone, both on the project's own SIP stack and media code; each records what it
//! hears and the tones are checked (the caller's 440 Hz at the agent, the agent's 1 kHz at the
//! caller), the digits the caller keys (RFC 4733) reach the agent, and the counts add up.

mod common;

use std::time::Duration;

use common::phone::{classify, read_wav};
use common::{demo_password, Server, ServerConfig};
use softphone::audio::Source;
use softphone::phone::{run, Options};

fn options(server: &Server, user: u32) -> Options {
    Options {
        server: server.udp,
        local: "127.0.0.1".parse().unwrap(),
        user: user.to_string(),
        password: demo_password(user),
        domain: "switchboard".into(),
        dial: None,
        answer_after: Duration::from_millis(200),
        source: Source::Silence,
        record: None,
        hangup_after: None,
        digits: String::new(),
        digits_after: Duration::from_secs(1),
        timeout: Duration::from_secs(30),
    }
}

#[test]
fn two_headless_phones_talk_through_a_queue_and_each_hears_the_other() {
    let server =
        Server::start(&ServerConfig {
            files: vec![
            ("queues.toml".into(), "[queues.support]\nnumber = \"600\"\n".into()),
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
        record: Some(dir.join("agent.wav")),
        ..options(&server, 1001)
    };
    let agent = std::thread::spawn(move || run(agent_opts));
    common::wait_until(
        Duration::from_secs(10),
        "the agent's phone registers",
        || server.log().contains("binding added"),
    );
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
