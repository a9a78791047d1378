//! The softphone's load mode against the server: agent phones register and answer, callers
//! arrive at a rate and call the queue, every call reaches an agent (each side hears the
//! other's tone, checked packet by packet), nothing is lost, and the server writes a record
//! of every call.

mod common;

use std::time::Duration;

use common::{Server, ServerConfig};
use softphone::load::{run, LoadOptions, Spread};

#[test]
fn the_load_mode_places_calls_that_all_reach_agents_with_audio_both_ways() {
    let agents: Vec<String> = (1001..=1006).map(|u| u.to_string()).collect();
    let agents_toml: String = agents
        .iter()
        .map(|u| {
            format!(
                "[agents.{u}]\nuser = \"{u}\"\nqueues = [\"support\"]\nlogin_on_start = true\n\n"
            )
        })
        .collect();
    let server = Server::start(&ServerConfig {
        // The callers are strangers with no account: the queue takes them unchallenged.
        challenge: false,
        files: vec![
            (
                "queues.toml".into(),
                "[queues.support]\nnumber = \"600\"\n".into(),
            ),
            ("agents.toml".into(), agents_toml),
        ],
        ..ServerConfig::default()
    });
    let report = run(
        LoadOptions {
            server: server.udp,
            local: "127.0.0.1".parse().unwrap(),
            domain: "switchboard".into(),
            agents,
            password_prefix: "demo".into(),
            caller_prefix: "555".into(),
            number: "600".into(),
            rate: 4.0,
            arrivals: Spread::Fixed,
            duration: Duration::from_secs(3),
            talk: Duration::from_millis(1500),
            talk_spread: Spread::Uniform,
            answer_after: Duration::from_millis(100),
            max_wait: Duration::from_secs(20),
            register_rate: 50.0,
            media: true,
            rtp_sockets: 2,
            seed: 7,
            registrations_only: false,
        },
        |_| {},
    )
    .expect("the load run");
    let log = server.log();
    assert_eq!(report.registered, 6, "{report:?}\n{log}");
    assert_eq!(report.calls, 12, "{report:?}");
    assert_eq!(
        (report.completed, report.failed, report.unfinished),
        (12, 0, 0),
        "{report:?}\n{log}"
    );
    assert!(report.peak_concurrent >= 3, "{report:?}");
    assert_eq!(report.agents_not_hearing, 0, "{report:?}");
    // About 1.5 s of audio each way per call, none lost on loopback.
    assert!(report.rtp_received > 12 * 2 * 50, "{report:?}");
    assert_eq!(report.rtp_lost, 0, "{report:?}");
    assert_eq!(report.setup_ms.n, 12);
    assert_eq!(report.to_agent_ms.n, 12);
    assert!(
        report.to_agent_ms.p50 >= 100.0,
        "the agent answered after 100 ms: {report:?}"
    );
    let rows = common::call_rows(&server, 12);
    assert_eq!(rows.len(), 12);
    assert!(rows.iter().all(|r| r.outcome == "answered"), "{rows:?}");
}

/// Registrations only: 20 agent phones register in turn, 400 registrations at 200 a second
/// (each REGISTER, 401, REGISTER with credentials, 200), every one answered and timed.
#[test]
fn the_load_mode_times_registrations_at_a_rate() {
    let server = Server::start(&ServerConfig::default());
    let agents: Vec<String> = (1001..=1020).map(|u| u.to_string()).collect();
    let report = run(
        LoadOptions {
            server: server.udp,
            local: "127.0.0.1".parse().unwrap(),
            domain: "switchboard".into(),
            agents,
            password_prefix: "demo".into(),
            caller_prefix: "555".into(),
            number: "600".into(),
            rate: 200.0,
            arrivals: Spread::Fixed,
            duration: Duration::from_secs(2),
            talk: Duration::ZERO,
            talk_spread: Spread::Fixed,
            answer_after: Duration::ZERO,
            max_wait: Duration::ZERO,
            register_rate: 0.0,
            media: false,
            rtp_sockets: 1,
            seed: 3,
            registrations_only: true,
        },
        |_| {},
    )
    .expect("the load run");
    assert_eq!(report.registrations, 400, "{report:?}");
    assert_eq!(
        report.registration_failures,
        0,
        "{report:?}\n{}",
        server.log()
    );
    assert_eq!(report.register_ms.n, 400, "{report:?}");
    assert_eq!(report.registered, 20);
    assert!(
        report.register_ms.p50 > 0.0 && report.register_ms.p99 < 1000.0,
        "{report:?}"
    );
    assert_eq!(report.calls, 0);
}
