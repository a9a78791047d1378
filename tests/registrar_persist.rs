//! Registrar bindings survive a restart: an agent's phone registered before the server went
//! down is offered queue calls after it starts again, without registering again; and a
//! binding store that cannot be read is reported without keeping the server from starting.

mod common;
mod serve_proc;

use std::time::Duration;

use common::{Server, SippRun};
use serve_proc::Proc;

/// The REGISTER requests in a SIPp message trace (sent by the phone).
fn registers_sent(trace: &str) -> usize {
    trace
        .lines()
        .filter(|l| l.trim_start().starts_with("REGISTER sip:"))
        .count()
}

#[test]
fn an_agent_registered_before_a_crash_is_offered_a_queue_call_after_the_restart_without_registering_again(
) {
    let mut desk = common::one_agent_help_desk();
    // Refreshes are logged at debug: the check below sees any REGISTER the restarted
    // server handles.
    desk.log = "sip::endpoint=debug,info".into();
    let mut first = Server::start(&desk);
    let store = first.dir().join("data/registrations.json");

    // The agent's phone (SIPp) registers once and then only answers calls.
    let phone = common::agent_phones(&first, 1001..=1001, "agent_phone_answer.xml", 1, &[]);
    let registered = registers_sent(&phone.messages());
    assert_eq!(registered, 2, "REGISTER, 401, REGISTER with digest");

    // The binding reaches the disk while the server runs (no shutdown needed) …
    common::wait_until(Duration::from_secs(10), "the binding is stored", || {
        std::fs::read_to_string(&store).is_ok_and(|t| t.contains("sip:1001@127.0.0.1"))
    });
    // … and the server dies without a word: a crash, an OOM kill, a power cut.
    first.kill();

    // Started again on the same directory and port.
    let second = Proc::start(first.dir(), &first.udp.to_string(), &[]);
    assert_eq!(second.udp, first.udp);
    let log = second.log();
    assert!(
        log.contains("registrar bindings restored") && log.contains("restored=1"),
        "{log}"
    );

    // A caller dials the queue: the restored phone rings and answers.
    let out = SippRun::new(&first, "caller.xml")
        .calls(1)
        .limit(1)
        .rate(1)
        .timeout_s(40)
        .arg("-s")
        .arg("600")
        .arg("-d")
        .arg("1500")
        .media_port()
        .run();
    let log = second.wait_log(Duration::from_secs(10), |l| l.contains("call ended"));
    assert!(
        out.exit_code == Some(0) && out.successful() == 1,
        "{}\n--- server ---\n{log}",
        out.diagnostics()
    );
    let connected = log
        .find("call connected")
        .unwrap_or_else(|| panic!("no call connected:\n{log}"));
    assert!(log.contains("offering to agent"), "{log}");
    // Nothing registered with the new server before the call was connected.
    let first_register = ["binding added", "binding refreshed"]
        .iter()
        .filter_map(|w| log.find(w))
        .min();
    assert!(
        first_register.is_none_or(|r| r > connected),
        "a REGISTER reached the restarted server before the call:\n{log}"
    );
    // The phone took the call (its scenario then unregisters and ends with 0).
    let phone = phone.wait();
    assert_eq!(phone.exit_code, Some(0), "{}", phone.diagnostics());
    let trace = phone.messages();
    let invite = trace.find("INVITE sip:").expect("the phone got an INVITE");
    assert_eq!(
        registers_sent(&trace[..invite]),
        registered,
        "the phone did not register again before the call"
    );
}

#[test]
fn an_unreadable_binding_store_is_reported_with_its_path_and_the_server_starts() {
    let dir = serve_proc::config_dir(
        "corrupt-store",
        "",
        "rate_limit = 0",
        &[(
            "data/registrations.json",
            "{\"version\": 1, \"bindings\": [{\"aor\":",
        )],
    );
    let mut p = Proc::start(&dir, "127.0.0.1:0", &[]);
    let log = p.log();
    let line = log
        .lines()
        .find(|l| l.contains("binding store not read"))
        .unwrap_or_else(|| panic!("no line about the store:\n{log}"));
    assert!(line.contains("registrations.json"), "{line}");
    assert!(line.contains("reason="), "{line}");
    assert!(log.contains("moved aside"), "{log}");
    assert!(dir.join("data/registrations.json.bad").exists());
    // It runs: it answers an OPTIONS.
    let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let req = common::raw_request(
        "OPTIONS",
        p.udp,
        sock.local_addr().unwrap(),
        "UDP",
        "1001",
        &[],
    );
    let resp = common::udp_exchange(&sock, p.udp, &req, Duration::from_secs(5));
    assert_eq!(resp.map(|r| r.status), Some(200));
    p.stop();
    let _ = std::fs::remove_dir_all(dir);
}
