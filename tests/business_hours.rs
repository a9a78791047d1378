//! Business hours over the wire: a SIPp customer calling a closed queue is refused with 480,
//! or answered with the queue's closed announcement and hung up, and the call record says so.

mod common;

use std::time::Duration;

use common::{Server, ServerConfig, SippRun};
use store::Store;

/// Two queues whose schedule never opens: `support` (600) refuses, `sales` (601) announces.
fn center() -> ServerConfig {
    let closed = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/config/prompts/support-greeting.wav"
    );
    ServerConfig {
        files: vec![
            (
                "schedules.toml".into(),
                "[schedules.never]\ntime_zone = \"UTC\"\n".into(),
            ),
            (
                "queues.toml".into(),
                format!(
                    "[queues.support]\nnumber = \"600\"\nschedule = \"never\"\n\n\
                     [queues.sales]\nnumber = \"601\"\nschedule = \"never\"\n\
                     when_closed = \"announce:{closed}\"\n"
                ),
            ),
            (
                "agents.toml".into(),
                "[agents.1001]\nuser = \"1001\"\nqueues = [\"support\", \"sales\"]\n\
                 login_on_start = true\n"
                    .into(),
            ),
        ],
        extra_toml: "[trunks.lab]\naddresses = [\"127.0.0.1\"]\nnumbers = [\"600\", \"601\"]\n"
            .into(),
        ..ServerConfig::default()
    }
}

fn caller(server: &Server, scenario: &str, number: &str) -> common::SippOutcome {
    SippRun::new(server, scenario)
        .calls(1)
        .limit(1)
        .rate(1)
        .timeout_s(30)
        .arg("-s")
        .arg(number)
        .media_port()
        .run()
}

#[test]
fn a_closed_queue_refuses_or_announces_and_hangs_up() {
    let server = Server::start(&center());
    let out = caller(&server, "caller_refused.xml", "600");
    assert_eq!(
        out.successful(),
        1,
        "480 for a closed queue: {}",
        out.diagnostics()
    );
    // Answered, the whole announcement (6.4 s), then the server's BYE.
    let out = caller(&server, "caller_wait_bye.xml", "601");
    assert_eq!(
        out.successful(),
        1,
        "answered and hung up by the server: {}\n{}",
        out.diagnostics(),
        server.log()
    );
    let db = server.dir().join("data/switchboard.db");
    let mut rows = Vec::new();
    common::wait_until(
        Duration::from_secs(10),
        "the announced call's record",
        || {
            rows = Store::open_read_only(&db)
                .and_then(|s| s.calls_between(0, i64::MAX))
                .unwrap_or_default();
            !rows.is_empty()
        },
    );
    assert_eq!(rows.len(), 1, "the refused call has no record: {rows:?}");
    let r = &rows[0];
    assert_eq!(
        (r.outcome.as_str(), r.hung_up_by.as_str()),
        ("closed", "system")
    );
    assert_eq!(r.dialed, "601");
    assert!(
        r.ended_ms - r.arrived_ms >= 6400,
        "hung up only after the whole announcement: {r:?}"
    );
    let log = std::fs::read_to_string(server.dir().join("data/queue_log")).unwrap_or_default();
    assert!(!log.contains("ENTERQUEUE"), "nobody queued:\n{log}");
}
