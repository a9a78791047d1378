//! The server as an operator sees it around calls: idle when nothing happens, agents without a
//! phone left out of the rotation (and back in when a phone registers), never a call offered
//! to the caller's own account, and a queue nobody serves reported and handled.

mod common;

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use common::phone::Phone;
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
    caller.drain();
    agent.drain();
    caller.command("dial", "600");
    agent.wait_event("CALL_INCOMING", Duration::from_secs(10));
    agent.command("accept", "");
    agent.wait_event("CALL_ESTABLISHED", Duration::from_secs(5));
    std::thread::sleep(Duration::from_secs(1));
    caller.command("hangup", "");
    caller.wait_event("CALL_CLOSED", Duration::from_secs(5));
    agent.wait_event("CALL_CLOSED", Duration::from_secs(5));
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
