//! Caller flows over the wire, with real peers: SIPp customers walk an IVR menu whose prompt
//! the server spoke with espeak-ng, pressing keys as RFC 4733 telephone-events (sip-tester's
//! `dtmf_2833_N.pcap` captures) and as SIP INFO, and land in the queue they chose with the
//! digits they entered in their call record; a caller leaves voicemail for an absent user,
//! whose desk phones are told (unsolicited and subscribed NOTIFYs) and who plays it back; a
//! caller asks for a callback, the server crashes and restarts, and the agent and then the
//! customer are called and connected.

mod common;
mod serve_proc;

use std::path::PathBuf;
use std::time::Duration;

use common::phone::{classify, Phone};
use common::{Server, ServerConfig, SippRun};
use store::Store;

/// Queues `sales` (601) and `support` (600) that nobody serves (a caller waits 4 s, then the
/// server hangs up); menu `main` on 700: 1 sales, 2 the account menu, which collects two
/// digits and goes to support.
fn center() -> ServerConfig {
    ServerConfig {
        files: vec![
            (
                "queues.toml".into(),
                "[queues.support]\nnumber = \"600\"\nmax_wait = 4\n\n\
                 [queues.sales]\nnumber = \"601\"\nmax_wait = 4\n"
                    .into(),
            ),
            (
                "agents.toml".into(),
                "[agents.1001]\nuser = \"1001\"\nqueues = [\"support\", \"sales\"]\n".into(),
            ),
            (
                "ivr.toml".into(),
                "[menus.main]\nnumber = \"700\"\n\
                 say = \"For sales, press 1. To give your account number, press 2.\"\n\
                 [menus.main.choices]\n1 = { go = \"queue:sales\", set = { reason = \"buy\" } }\n\
                 2 = \"menu:account\"\n\n\
                 [menus.account]\nsay = \"Your account number, please.\"\n\
                 collect = \"account\"\nmax_digits = 2\nnext = \"queue:support\"\n"
                    .into(),
            ),
        ],
        extra_toml: "[trunks.lab]\naddresses = [\"127.0.0.1\"]\nnumbers = [\"700\"]\n".into(),
        ..ServerConfig::default()
    }
}

fn key(digit: u8) -> PathBuf {
    let p = PathBuf::from(format!("/usr/share/sip-tester/dtmf_2833_{digit}.pcap"));
    assert!(
        p.is_file(),
        "{} is missing: apt-get install sip-tester",
        p.display()
    );
    p
}

/// A SIPp customer calls 700 and presses `keys` (three of them).
fn caller(server: &Server, keys: [u8; 3]) -> common::SippOutcome {
    SippRun::new(server, "caller_menu.xml")
        .calls(1)
        .limit(1)
        .rate(1)
        .timeout_s(40)
        .arg("-s")
        .arg("700")
        .media_port()
        .file("key1.pcap", &key(keys[0]))
        .file("key2.pcap", &key(keys[1]))
        .file("key3.pcap", &key(keys[2]))
        .run()
}

#[test]
fn keys_by_rfc_4733_and_by_sip_info_walk_the_menu_into_the_chosen_queue_with_the_digits_in_the_record(
) {
    if !common::espeak_available() {
        return;
    }
    let server = Server::start(&center());
    // 2: the account menu; 4 and 7: the account number; then support.
    let out = caller(&server, [2, 4, 7]);
    assert_eq!(
        out.successful(),
        1,
        "{}\n{}",
        out.diagnostics(),
        server.log()
    );
    let r = &common::call_rows(&server, 1)[0];
    assert_eq!(r.dialed, "700");
    assert_eq!(r.queue.as_deref(), Some("support"), "{r:?}");
    assert_eq!(r.variables, vec![("account".into(), "47".into())]);
    // The wait counts from the queue (the menu took several seconds).
    assert!(r.wait_ms < 4500, "{r:?}");
    assert!(r.queued_ms.unwrap() - r.arrived_ms >= 3000, "{r:?}");

    // 1: sales; the later keys (the menu is gone) change nothing.
    let out = caller(&server, [1, 2, 4]);
    assert_eq!(out.successful(), 1, "{}", out.diagnostics());
    let rows = common::call_rows(&server, 2);
    let r = rows.iter().find(|r| r.queue.as_deref() == Some("sales"));
    let r = r.unwrap_or_else(|| panic!("no sales call in {rows:?}"));
    assert_eq!(r.variables, vec![("reason".into(), "buy".into())]);
    let log = std::fs::read_to_string(server.dir().join("data/queue_log")).unwrap_or_default();
    assert_eq!(log.matches("ENTERQUEUE").count(), 2, "{log}");

    // The same keys as SIP INFO (dtmf-relay and dtmf bodies) walk the same way.
    let out = SippRun::new(&server, "caller_menu_info.xml")
        .timeout_s(40)
        .arg("-s")
        .arg("700")
        .media_port()
        .run();
    assert_eq!(out.successful(), 1, "{}", out.diagnostics());
    let rows = common::call_rows(&server, 3);
    let r = rows
        .iter()
        .filter(|r| r.queue.as_deref() == Some("support"))
        .nth(1)
        .unwrap_or_else(|| panic!("no second support call in {rows:?}"));
    assert_eq!(r.variables, vec![("account".into(), "47".into())]);
}

/// The caller's tone (what the message holds).
const CALLER_HZ: f64 = 1200.0;

/// A caller (baresip, sending a 1,200 Hz tone) leaves a message for user 1003, whose phone
/// is not registered; when 1003's desk phone (SIPp) registers it gets the message-waiting
/// NOTIFY; then 1003 (baresip) dials *97, keys the PIN and hears the caller's tone played
/// back.
#[test]
fn a_message_left_for_an_absent_user_lights_their_phone_and_plays_back() {
    let prompts = concat!(env!("CARGO_MANIFEST_DIR"), "/config/prompts");
    let server = Server::start(&ServerConfig {
        files: vec![(
            "voicemail.toml".into(),
            format!(
                "[voicemail]\nnumber = \"*97\"\nprompts = \"{prompts}/voicemail\"\n\n\
                 [mailboxes.1003]\npin = \"2468\"\n"
            ),
        )],
        calls_extra: format!("prompts = \"{prompts}\"\n"),
        ..ServerConfig::default()
    });
    // The message: the greeting (4.5 s) and the beep, then about 3 s of the caller's tone.
    let mut caller = Phone::start(&server, 1006, CALLER_HZ);
    caller.drain();
    caller.command("dial", "1003");
    caller.wait_event("CALL_ESTABLISHED", Duration::from_secs(5));
    std::thread::sleep(Duration::from_secs(8));
    caller.command("hangup", "");
    caller.wait_event("CALL_CLOSED", Duration::from_secs(5));
    let db = server.dir().join("data/switchboard.db");
    let mut stored = Vec::new();
    common::wait_until(Duration::from_secs(10), "the stored message", || {
        stored = Store::open_read_only(&db)
            .and_then(|s| s.messages())
            .unwrap_or_default();
        !stored.is_empty()
    });
    assert_eq!(stored.len(), 1);
    let m = &stored[0];
    assert_eq!((m.mailbox.as_str(), m.status.as_str()), ("1003", "new"));
    assert!(
        (2000..5000).contains(&m.duration_ms),
        "about 3 s recorded after the beep: {m:?}"
    );
    let r = &common::call_rows(&server, 1)[0];
    assert_eq!(r.outcome, "voicemail");

    // 1003's desk phone registers and is told a message waits (the scenario checks the
    // NOTIFY's body and unregisters once it has answered it).
    let desk = common::agent_phones(&server, 1003..=1003, "mwi_notify.xml", 1, &[]).wait();
    assert_eq!(
        desk.successful(),
        1,
        "the desk phone got its message-waiting NOTIFY: {}\n{}",
        desk.diagnostics(),
        server.log()
    );

    // A phone that subscribes to its message-waiting state is told in its subscription.
    let csv = common::users_csv(server.dir(), 1003..=1003, common::demo_password);
    let sub = SippRun::new(&server, "mwi_subscribe.xml")
        .injection(&csv)
        .timeout_s(20)
        .run();
    assert_eq!(
        sub.successful(),
        1,
        "subscribed, notified, unsubscribed: {}\n{}",
        sub.diagnostics(),
        server.log()
    );

    // 1003 listens.
    let mut owner = Phone::start(&server, 1003, 500.0);
    owner.drain();
    owner.command("dial", "*97");
    owner.wait_event("CALL_ESTABLISHED", Duration::from_secs(5));
    std::thread::sleep(Duration::from_millis(1500));
    for key in ["2", "4", "6", "8", "#"] {
        owner.command("sndcode", key);
        std::thread::sleep(Duration::from_millis(400));
    }
    // "You have 1 new messages", then the message.
    std::thread::sleep(Duration::from_secs(8));
    owner.command("hangup", "");
    owner.wait_event("CALL_CLOSED", Duration::from_secs(5));
    let heard = classify(&owner.last_heard(), &[CALLER_HZ, 500.0]);
    let tone = heard.iter().filter(|w| **w == Some(CALLER_HZ)).count();
    assert!(
        tone >= 20,
        "the caller's tone played back in {tone} windows of 100 ms\n{}",
        server.log()
    );
    let rows = common::call_rows(&server, 2);
    assert!(rows.iter().any(|r| r.outcome == "mailbox"), "{rows:?}");
}

/// The agent's tone in the callback test (the customer's SIPp echoes it back).
const AGENT_HZ: f64 = 440.0;

/// A SIPp customer with a number waits in support, keys 1 for a callback and is hung up on;
/// the server crashes and starts again; then the agent's phone (baresip) registers, rings
/// first and answers, and only then the customer (SIPp, standing in for the carrier) is
/// called through the trunk; the agent hears their own voice come back from the customer's
/// echo, so audio flows both ways.
#[test]
fn a_callback_keeps_its_place_across_a_restart_rings_the_agent_first_then_the_customer() {
    let prompts = concat!(env!("CARGO_MANIFEST_DIR"), "/config/prompts");
    let customer_port = common::free_port();
    let mut first = Server::start(&ServerConfig {
        files: vec![
            (
                "queues.toml".into(),
                format!(
                    "[queues.support]\nnumber = \"600\"\nmusic = \"{prompts}/moh.wav\"\n\n\
                     [queues.support.callback]\nkey = \"1\"\n\
                     offer = \"{prompts}/callback-offer.wav\"\n\
                     confirm = \"{prompts}/callback-confirm.wav\"\ntrunk = \"lab\"\n"
                ),
            ),
            (
                "agents.toml".into(),
                "[agents.1001]\nuser = \"1001\"\nqueues = [\"support\"]\nlogin_on_start = true\n"
                    .into(),
            ),
        ],
        extra_toml: format!(
            "[trunks.lab]\naddresses = [\"127.0.0.1\"]\nnumbers = [\"600\"]\n\
             dial = \"127.0.0.1:{customer_port}\"\n"
        ),
        // The agent phone's ringing is a debug line.
        log: "debug".into(),
        ..ServerConfig::default()
    });
    let out = SippRun::new(&first, "caller_callback.xml")
        .timeout_s(30)
        .arg("-s")
        .arg("600")
        .arg("-key")
        .arg("number")
        .arg("+4930111")
        .media_port()
        .file("key1.pcap", &key(1))
        .run();
    assert_eq!(
        out.successful(),
        1,
        "asked for a callback and was hung up on: {}\n{}",
        out.diagnostics(),
        first.log()
    );
    let db = first.dir().join("data/switchboard.db");
    common::wait_until(Duration::from_secs(10), "the callback is kept", || {
        Store::open_read_only(&db)
            .and_then(|s| s.callbacks())
            .is_ok_and(|c| c.len() == 1)
    });
    assert!(
        Store::open_read_only(&db)
            .and_then(|s| s.calls_between(0, i64::MAX))
            .unwrap_or_default()
            .is_empty(),
        "no record while the callback is pending"
    );
    // A crash, and the server comes back on the same directory and port.
    first.kill();
    let second = serve_proc::Proc::start(first.dir(), &first.udp.to_string(), &[]);
    second.wait_log(Duration::from_secs(10), |l| {
        l.contains("callback kept across a restart")
    });

    // The customer's line (standing in for the carrier): answers and echoes its audio.
    let customer = SippRun::new(&first, "agent_phone_answer.xml")
        .listen_port(customer_port)
        .timeout_s(40)
        .arg("-rtp_echo")
        .media_port()
        .spawn();
    // The agent's phone registers: the kept callback is offered to it first.
    // (Its "incoming call" event can come before the phone has told us it registered: the
    // server's log says when it rings.)
    let mut agent = Phone::start(&first, 1001, AGENT_HZ);
    second.wait_log(Duration::from_secs(10), |l| {
        l.contains("agent phone ringing")
    });
    assert!(
        !second.log().contains("dialling the customer"),
        "the customer waits until the agent answers"
    );
    agent.command("accept", "");
    agent.wait_event("CALL_ESTABLISHED", Duration::from_secs(5));
    second.wait_log(Duration::from_secs(10), |l| {
        l.contains("callback: the customer answered")
    });
    std::thread::sleep(Duration::from_secs(3));
    agent.command("hangup", "");
    agent.wait_event("CALL_CLOSED", Duration::from_secs(5));
    let done = customer.wait();
    assert_eq!(done.successful(), 1, "{}", done.diagnostics());
    let heard = classify(&agent.last_heard(), &[AGENT_HZ, 1000.0]);
    let echo = heard.iter().filter(|w| **w == Some(AGENT_HZ)).count();
    assert!(
        echo >= 15,
        "the agent's voice came back from the customer in {echo} windows of 100 ms\n{}",
        second.log()
    );
    let mut rows = Vec::new();
    common::wait_until(Duration::from_secs(10), "the callback's record", || {
        rows = Store::open_read_only(&db)
            .and_then(|s| s.calls_between(0, i64::MAX))
            .unwrap_or_default();
        !rows.is_empty()
    });
    let r = &rows[0];
    assert!(r.callback, "{r:?}");
    assert_eq!(
        (r.outcome.as_str(), r.caller.as_str()),
        ("answered", "+4930111")
    );
    assert_eq!(r.agent.as_deref(), Some("1001"));
    assert!(Store::open_read_only(&db)
        .and_then(|s| s.callbacks())
        .is_ok_and(|c| c.is_empty()));
}

/// Whether a recording is being written under `dir` (a `.wav.part` file).
fn recording_in_progress(dir: &std::path::Path) -> bool {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return false;
    };
    entries.flatten().any(|e| {
        let p = e.path();
        p.is_dir() && recording_in_progress(&p) || p.to_string_lossy().ends_with(".wav.part")
    })
}

/// A message being left when the server is killed is not lost: the recording is repaired at
/// the next start, stored as a message, and the mailbox's phone is told it waits.
#[test]
fn a_message_cut_off_by_a_crash_is_repaired_stored_and_announced() {
    let prompts = concat!(env!("CARGO_MANIFEST_DIR"), "/config/prompts");
    let mut first = Server::start(&ServerConfig {
        files: vec![(
            "voicemail.toml".into(),
            format!(
                "[voicemail]\nnumber = \"*97\"\nprompts = \"{prompts}/voicemail\"\n\n\
                 [mailboxes.1003]\npin = \"2468\"\n"
            ),
        )],
        ..ServerConfig::default()
    });
    let mut caller = Phone::start(&first, 1006, CALLER_HZ);
    caller.drain();
    caller.command("dial", "1003");
    caller.wait_event("CALL_ESTABLISHED", Duration::from_secs(5));
    // The greeting (4.5 s) and the beep, then a few seconds of message; then the crash.
    let recordings = first.dir().join("data/recordings");
    common::wait_until(
        Duration::from_secs(10),
        "the message is being recorded",
        || recording_in_progress(&recordings),
    );
    std::thread::sleep(Duration::from_secs(4));
    first.kill();
    drop(caller);
    let second = serve_proc::Proc::start(first.dir(), &first.udp.to_string(), &[]);
    second.wait_log(Duration::from_secs(10), |l| {
        l.contains("voicemail message stored")
    });
    let db = first.dir().join("data/switchboard.db");
    let stored = Store::open_read_only(&db)
        .and_then(|s| s.messages())
        .unwrap_or_default();
    assert_eq!(stored.len(), 1, "{stored:?}\n{}", second.log());
    assert_eq!(stored[0].mailbox, "1003");
    assert!(stored[0].duration_ms >= 1000, "{stored:?}");
    // Call control knows it: 1003's desk phone is told a message waits.
    let desk = common::agent_phones(&first, 1003..=1003, "mwi_notify.xml", 1, &[]).wait();
    assert_eq!(
        desk.successful(),
        1,
        "{}\n{}",
        desk.diagnostics(),
        second.log()
    );
}
