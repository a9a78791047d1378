//! A service task that dies takes the server down with a clear error and a non-zero exit, so
//! that systemd (`contrib/switchboard.service`, `Restart=on-failure`) starts it again, instead
//! of leaving callers on music for ever with nobody deciding anything.

mod common;
mod serve_proc;

use std::time::Duration;

use serve_proc::Proc;

#[test]
fn a_call_control_task_that_panics_stops_the_server_with_an_error_naming_it() {
    let dir = serve_proc::config_dir("supervision", "", "rate_limit = 0", &[]);
    let mut p = Proc::start(
        &dir,
        "127.0.0.1:0",
        &[("SWITCHBOARD_FAULT", "call-control")],
    );
    let status = p
        .wait_exit(Duration::from_secs(10))
        .unwrap_or_else(|| panic!("still running 10 s after the fault:\n{}", p.log()));
    let log = p.stop();
    assert_eq!(status.code(), Some(1), "exit status {status:?}\n{log}");
    let line = log
        .lines()
        .find(|l| l.contains("a service task stopped"))
        .unwrap_or_else(|| panic!("no line about the stopped task:\n{log}"));
    assert!(line.contains("call control"), "{line}");
    assert!(line.contains("panicked: fault injected"), "{line}");
    assert!(
        log.contains("exiting so that the server is restarted"),
        "{log}"
    );
}

#[test]
fn without_a_fault_the_server_keeps_running_and_stops_cleanly_on_sigterm() {
    let dir = serve_proc::config_dir("supervision-ok", "", "rate_limit = 0", &[]);
    let mut p = Proc::start(&dir, "127.0.0.1:0", &[]);
    assert_eq!(p.wait_exit(Duration::from_millis(500)), None, "{}", p.log());
    let log = p.stop();
    assert!(!log.contains("a service task stopped"), "{log}");
    assert!(log.contains("SIP transport stopped"), "{log}");
}
