//! The server as an operator sees it around calls: idle when nothing happens, agents without a
//! phone left out of the rotation (and back in when a phone registers), never a call offered
//! to the caller's own account, and a queue nobody serves reported and handled.

mod common;

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use common::phone::{self, Phone};
use common::{Server, ServerConfig};

/// Queue `support` on 600 (`queue_extra` appended to its table) served by `agents`, all
/// logged in at start; users 1001–1010.
fn center(strategy: &str, queue_extra: &str, agents: &[u32]) -> ServerConfig {
    let mut agent_file = String::new();
    for a in agents {
        let _ = writeln!(
            agent_file,
            "[agents.{a}]\nuser = \"{a}\"\nskills = {{ english = 5 }}\nqueues = [\"support\"]\nlogin_on_start = true\n"
        );
    }
    ServerConfig {
        users: 1001..=1010,
        files: vec![
            (
                "queues.toml".into(),
                format!(
                    "[queues.support]\nnumber = \"600\"\nstrategy = \"{strategy}\"\nring_timeout = 20\n{queue_extra}\n"
                ),
            ),
            ("agents.toml".into(), agent_file),
        ],
        ..ServerConfig::default()
    }
}

fn wait_log(server: &Server, needle: &str, count: usize, within: Duration) -> String {
    let deadline = Instant::now() + within;
    loop {
        let log = server.log();
        if log.matches(needle).count() >= count {
            return log;
        }
        assert!(
            Instant::now() < deadline,
            "{count}× {needle:?} not in the server log within {within:?}:\n{log}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// One call from `caller` to 600, answered by `agent`, a second of talk, hung up by the
/// caller.
fn answered_call(caller: &mut Phone, agent: &mut Phone) {
    phone::connect(caller, agent, "600", Duration::ZERO);
    std::thread::sleep(Duration::from_secs(1));
    phone::hang_up(caller, agent);
}

/// After a call through a ring-all queue the server used to spin at 100 % CPU with no call up
/// (a timer loop woken again and again by a sleep that had already elapsed). Measured from
/// the process's own CPU counters over an idle stretch after the call and its wrap-up.
#[test]
fn an_idle_server_after_a_ring_all_call_uses_no_cpu() {
    let server = Server::start(&center("ring-all", "wrap_up = 1", &[1001, 1002]));
    let mut agent = Phone::start(&server, 1001, 440.0);
    let mut second = Phone::start(&server, 1002, 440.0);
    let mut caller = Phone::start(&server, 1006, 1200.0);
    answered_call(&mut caller, &mut agent);
    // Both phones rang (ring-all); the second was cancelled when the first answered.
    second.wait_event("CALL_CLOSED", Duration::from_secs(5));
    // The wrap-up timer fires and the agent is ready again: from then on nothing is due.
    wait_log(&server, "agent=1001 state=Ready", 2, Duration::from_secs(5));
    let before = server.cpu_time();
    let window = Duration::from_secs(3);
    std::thread::sleep(window);
    let used = server.cpu_time() - before;
    assert!(
        used <= Duration::from_millis(150),
        "the idle server used {used:?} of CPU in {window:?}\n{}",
        server.log()
    );
}

/// An agent logged in at start whose phone is not registered used to be offered every call
/// (a ring-no-answer each time, then an automatic pause that outlived the phone's
/// registration). Now the agent is left out until a phone registers, both changes are
/// logged, and no offer is wasted on them.
#[test]
fn agents_without_a_registered_phone_are_not_offered_calls_until_one_registers() {
    let server = Server::start(&center("longest-idle", "", &[1001, 1002]));
    // At start neither has a phone: both are parked, with the reason in the log.
    wait_log(
        &server,
        "agent has no registered phone",
        2,
        Duration::from_secs(5),
    );
    let mut second = Phone::start(&server, 1002, 440.0);
    wait_log(
        &server,
        "ready for calls agent=1002",
        1,
        Duration::from_secs(5),
    );
    let mut caller = Phone::start(&server, 1006, 1200.0);
    answered_call(&mut caller, &mut second);
    let log = server.log();
    assert!(
        !log.contains("offering to agent agent=1001"),
        "1001 has no phone and must not be offered the call:\n{log}"
    );
    assert!(!log.contains("RINGNOANSWER"), "{log}");
    // 1001's phone registers: 1001 is back; 1002's phone leaves: 1002 is out.
    let mut first = Phone::start(&server, 1001, 440.0);
    wait_log(
        &server,
        "ready for calls agent=1001",
        1,
        Duration::from_secs(5),
    );
    drop(second);
    wait_log(
        &server,
        "until one registers agent=1002",
        1,
        Duration::from_secs(5),
    );
    answered_call(&mut caller, &mut first);
    let log = server.log();
    assert_eq!(
        log.matches("offering to agent agent=1002").count(),
        1,
        "{log}"
    );
    assert!(!log.contains("RINGNOANSWER"), "{log}");
}

/// An agent who calls the queue is the caller: the call must never ring their own phone. It
/// goes to another agent, and the calling agent is back in rotation when the call ends.
#[test]
fn a_call_is_never_offered_to_the_agent_who_makes_it() {
    let server = Server::start(&center("longest-idle", "", &[1001, 1002]));
    let mut calling_agent = Phone::start(&server, 1001, 1200.0);
    let mut other = Phone::start(&server, 1002, 440.0);
    common::wait_agents_ready(&server, &[1001, 1002], Duration::from_secs(5));
    for _ in 0..3 {
        answered_call(&mut calling_agent, &mut other);
    }
    let log = server.log();
    assert!(
        !log.contains("offering to agent agent=1001"),
        "offered to the caller:\n{log}"
    );
    assert!(
        log.contains("until it is free agent=1001 reason=\"in-use\""),
        "{log}"
    );
    // Back in rotation after each call (and once at start, when the phone registered).
    assert!(
        log.matches("ready for calls agent=1001").count() >= 4,
        "{log}"
    );
}

/// A queue nobody serves is reported at start, and its callers get its empty-queue rule
/// (here: not to join) instead of waiting for nobody.
#[test]
fn a_queue_nobody_serves_is_reported_and_its_callers_are_not_left_waiting() {
    let mut cfg = center("longest-idle", "", &[1001]);
    cfg.files[0]
        .1
        .push_str("\n[queues.billing]\nnumber = \"601\"\njoin_empty = \"no-agents-logged-in\"\n");
    let server = Server::start(&cfg);
    let log = wait_log(&server, "config warning", 1, Duration::from_secs(5));
    assert!(
        log.contains("queues.billing: no agent serves this queue"),
        "{log}"
    );
    let mut caller = Phone::start(&server, 1006, 1200.0);
    caller.command("dial", "601");
    caller.wait_event("CALL_CLOSED", Duration::from_secs(10));
    let log = server.log();
    assert!(
        log.contains("call ended reason=\"no agent in the queue"),
        "{log}"
    );
    assert!(!log.contains("maximum wait reached"), "{log}");
}
