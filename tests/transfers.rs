//! Transfers and monitoring over the wire: an agent's SIPp phone answers a caller and
//! transfers them blind with REFER to another queue, whose agent (baresip) answers; the caller
//! (baresip) and the new agent hear each other. A supervisor (baresip) whispers to an agent
//! on a call: the agent hears them, the caller does not; then listens: nobody hears them.
//! All checked on the audio each phone decoded.

mod common;

use std::time::Duration;

use common::phone::{self, classify, windows_with, Phone};
use common::{Server, ServerConfig};

const CALLER_HZ: f64 = 1200.0;
const SALES_HZ: f64 = 440.0;

#[test]
fn a_blind_transfer_to_another_queue_connects_the_caller_to_its_agent_both_ways() {
    let server = Server::start(&ServerConfig {
        files: vec![
            (
                "queues.toml".into(),
                "[queues.support]\nnumber = \"600\"\n\n[queues.sales]\nnumber = \"601\"\n".into(),
            ),
            (
                "agents.toml".into(),
                "[agents.1001]\nuser = \"1001\"\nqueues = [\"support\"]\nlogin_on_start = true\n\n\
                 [agents.1002]\nuser = \"1002\"\nqueues = [\"sales\"]\nlogin_on_start = true\n"
                    .into(),
            ),
        ],
        ..ServerConfig::default()
    });
    // Sales' agent, then support's agent (a SIPp phone that transfers to 601 after 1 s).
    let mut sales = Phone::start(&server, 1002, SALES_HZ);
    let support = common::agent_phones(
        &server,
        1001..=1001,
        "agent_refer.xml",
        1,
        &["-key", "target", "601"],
    );
    let mut caller = Phone::start(&server, 1006, CALLER_HZ);
    caller.drain();
    sales.drain();
    caller.command("dial", "600");
    caller.wait_event("CALL_ESTABLISHED", Duration::from_secs(5));
    // The transfer: sales rings.
    sales.wait_event("CALL_INCOMING", Duration::from_secs(10));
    sales.command("accept", "");
    sales.wait_event("CALL_ESTABLISHED", Duration::from_secs(5));
    std::thread::sleep(Duration::from_millis(2500));
    phone::hang_up(&mut caller, &mut sales);
    let done = support.wait();
    assert_eq!(
        done.successful(),
        1,
        "the support agent transferred and was let go: {}\n{}",
        done.diagnostics(),
        server.log()
    );
    let tones = [CALLER_HZ, SALES_HZ];
    let heard = classify(&caller.last_heard(), &tones);
    let from_sales = heard.iter().filter(|w| **w == Some(SALES_HZ)).count();
    let heard = classify(&sales.last_heard(), &tones);
    let from_caller = heard.iter().filter(|w| **w == Some(CALLER_HZ)).count();
    assert!(
        from_sales >= 15 && from_caller >= 15,
        "after the transfer the caller heard sales in {from_sales} windows of 100 ms and sales \
         heard the caller in {from_caller}\n{}",
        server.log()
    );
    let log = server.log();
    assert!(log.contains("blind transfer"), "{log}");
}

const AGENT_HZ: f64 = 1000.0;
const SUPERVISOR_HZ: f64 = 1700.0;

/// A caller talks to agent 1001; supervisor 1009 dials *45 1001 (whisper) and talks: the
/// agent hears both the caller and the supervisor, the caller hears the agent and never the
/// supervisor, and the supervisor hears both. Then the supervisor keys 4 (listen) on a new
/// call: nobody hears them any more.
#[test]
fn a_whisper_is_heard_by_the_agent_and_not_by_the_caller() {
    let server = Server::start(&ServerConfig::support_desk(
        "[supervisors.1009]\nqueues = [\"support\"]\n",
    ));
    let mut agent = Phone::start(&server, 1001, AGENT_HZ);
    let mut caller = Phone::start(&server, 1006, CALLER_HZ);
    let mut supervisor = Phone::start(&server, 1009, SUPERVISOR_HZ);
    phone::connect(&mut caller, &mut agent, "600", Duration::ZERO);
    supervisor.drain();
    supervisor.command("dial", "*451001");
    supervisor.wait_event("CALL_ESTABLISHED", Duration::from_secs(5));
    std::thread::sleep(Duration::from_secs(3));
    supervisor.command("hangup", "");
    supervisor.wait_event("CALL_CLOSED", Duration::from_secs(5));
    phone::hang_up(&mut caller, &mut agent);

    let (a, c, s) = (
        agent.last_heard(),
        caller.last_heard(),
        supervisor.last_heard(),
    );
    let log = server.log();
    let agent_hears = (windows_with(&a, CALLER_HZ), windows_with(&a, SUPERVISOR_HZ));
    assert!(
        agent_hears.0 >= 15 && agent_hears.1 >= 15,
        "the agent heard the caller in {} and the supervisor in {} windows of 100 ms\n{log}",
        agent_hears.0,
        agent_hears.1
    );
    let caller_hears = (windows_with(&c, AGENT_HZ), windows_with(&c, SUPERVISOR_HZ));
    assert!(
        caller_hears.0 >= 15 && caller_hears.1 == 0,
        "the caller heard the agent in {} and the supervisor in {} windows of 100 ms\n{log}",
        caller_hears.0,
        caller_hears.1
    );
    let supervisor_hears = (windows_with(&s, CALLER_HZ), windows_with(&s, AGENT_HZ));
    assert!(
        supervisor_hears.0 >= 15 && supervisor_hears.1 >= 15,
        "the supervisor heard the caller in {} and the agent in {} windows\n{log}",
        supervisor_hears.0,
        supervisor_hears.1
    );
    assert!(log.contains("supervisor on the call"), "{log}");

    // Listen mode: *44; nobody hears the supervisor.
    phone::connect(&mut caller, &mut agent, "600", Duration::ZERO);
    supervisor.drain();
    supervisor.command("dial", "*441001");
    supervisor.wait_event("CALL_ESTABLISHED", Duration::from_secs(5));
    std::thread::sleep(Duration::from_secs(3));
    supervisor.command("hangup", "");
    supervisor.wait_event("CALL_CLOSED", Duration::from_secs(5));
    phone::hang_up(&mut caller, &mut agent);
    let (a, c, s) = (
        agent.last_heard(),
        caller.last_heard(),
        supervisor.last_heard(),
    );
    assert_eq!(
        (
            windows_with(&a, SUPERVISOR_HZ),
            windows_with(&c, SUPERVISOR_HZ)
        ),
        (0, 0),
        "a listening supervisor is heard by nobody\n{}",
        server.log()
    );
    assert!(windows_with(&s, CALLER_HZ) >= 15 && windows_with(&s, AGENT_HZ) >= 15);
}

const CONSULTED_HZ: f64 = 700.0;

/// Attended transfer over the wire: agent 1001 (a scripted phone on the project's SIP stack)
/// answers a caller (baresip), calls 1002 (baresip) who answers, and sends REFER with
/// Replaces in the caller's dialog naming the consultation. The agent's phone is told 200 in
/// a NOTIFY and hung up in both dialogs; the caller and 1002 hear each other.
#[test]
fn an_attended_transfer_connects_the_caller_to_the_consulted_colleague_both_ways() {
    let server = Server::start(&ServerConfig::support_desk(""));
    let mut agent = common::ua::Ua::new(&server, 1001);
    agent.register();
    let mut colleague = Phone::start(&server, 1002, CONSULTED_HZ);
    let mut caller = Phone::start(&server, 1006, CALLER_HZ);
    caller.drain();
    colleague.drain();
    caller.command("dial", "600");
    let mut customer = agent.answer();
    caller.wait_event("CALL_ESTABLISHED", Duration::from_secs(5));
    // The consultation: 1002's phone rings and is answered. (The agent's phone does not
    // hold the caller first: the caller hears the agent's silence meanwhile.)
    let consult = {
        let c = std::thread::scope(|s| {
            let h = s.spawn(|| {
                colleague.wait_event("CALL_INCOMING", Duration::from_secs(10));
                colleague.command("accept", "");
                colleague.wait_event("CALL_ESTABLISHED", Duration::from_secs(5));
            });
            let d = agent.call("1002");
            h.join().expect("colleague answers");
            d
        });
        c
    };
    let refer_to = common::ua::replacing("1002", &consult, server.udp);
    assert_eq!(agent.refer(&mut customer, &refer_to), 202);
    agent.until(Duration::from_secs(5), "NOTIFY 200 and both BYEs", |a| {
        a.notifies.iter().any(|n| n.starts_with("SIP/2.0 200"))
            && a.byes.contains(&customer.call_id)
            && a.byes.contains(&consult.call_id)
    });
    std::thread::sleep(Duration::from_millis(2500));
    phone::hang_up(&mut caller, &mut colleague);
    let tones = [CALLER_HZ, CONSULTED_HZ];
    let heard = classify(&caller.last_heard(), &tones);
    let from_colleague = heard.iter().filter(|w| **w == Some(CONSULTED_HZ)).count();
    let heard = classify(&colleague.last_heard(), &tones);
    let from_caller = heard.iter().filter(|w| **w == Some(CALLER_HZ)).count();
    assert!(
        from_colleague >= 15 && from_caller >= 15,
        "after the transfer the caller heard the colleague in {from_colleague} windows of \
         100 ms and the colleague heard the caller in {from_caller}\n{}",
        server.log()
    );
    assert!(server.log().contains("attended transfer done"));
    // The customer's record: one call, two segments (the agent's, the colleague's).
    let db = server.dir().join("data/switchboard.db");
    let mut rows = Vec::new();
    common::wait_until(Duration::from_secs(10), "the customer's record", || {
        rows = store::Store::open_read_only(&db)
            .and_then(|s| s.calls_between(0, i64::MAX))
            .unwrap_or_default();
        rows.iter().any(|r| r.dialed == "600")
    });
    let r = rows.iter().find(|r| r.dialed == "600").unwrap();
    let parts: Vec<(&str, &str)> = r
        .segments
        .iter()
        .map(|s| (s.agent.as_str(), s.end.as_str()))
        .collect();
    assert_eq!(
        parts,
        [("1001", "transferred"), ("1002", "caller hung up")],
        "{r:?}"
    );
    assert_eq!(r.agent.as_deref(), Some("1002"));
}
