//! Real calls (SIPp over loopback) leave call records in the database and Asterisk-style lines
//! in the queue log, and a SIGKILL loses none of the records of calls that had ended.

mod common;
mod serve_proc;

use std::time::Duration;

use common::{Server, ServerConfig, SippRun};
use serve_proc::Proc;
use store::Store;

/// Queue `support` (600) served by agent 1001; queue `sales` (601) served by nobody; a trunk
/// for 127.0.0.1 may dial both.
fn center(http_port: u16) -> ServerConfig {
    ServerConfig {
        files: vec![
            (
                "queues.toml".into(),
                "[queues.support]\nnumber = \"600\"\nrequired_skills = [\"english\"]\n\
                 ring_timeout = 10\nauto_pause_after = 100\n\n\
                 [queues.sales]\nnumber = \"601\"\n"
                    .into(),
            ),
            (
                "agents.toml".into(),
                "[agents.1001]\nuser = \"1001\"\nskills = { english = 5 }\nqueues = [\"support\"]\n\
                 login_on_start = true\n"
                    .into(),
            ),
        ],
        extra_toml: format!(
            "[trunks.lab]\naddresses = [\"127.0.0.1\"]\nnumbers = [\"600\", \"601\"]\n\n\
             [http]\nbind = \"127.0.0.1:{http_port}\"\n"
        ),
        ..ServerConfig::default()
    }
}

fn call(server: &Server, number: &str, hold_ms: u32) -> common::SippOutcome {
    SippRun::new(server, "caller.xml")
        .calls(1)
        .limit(1)
        .rate(1)
        .timeout_s(30)
        .arg("-s")
        .arg(number)
        .arg("-d")
        .arg(hold_ms.to_string())
        .media_port()
        .run()
}

/// GET `path` from 127.0.0.1:`port`: status and body.
fn http_get(port: u16, path: &str) -> (u16, String) {
    let r = common::http::get(port, path);
    (r.status, r.text())
}

fn stored(db: &std::path::Path) -> u64 {
    Store::open_read_only(db)
        .and_then(|s| s.call_count())
        .unwrap_or(0)
}

#[test]
fn answered_and_abandoned_calls_are_recorded_and_survive_a_sigkill() {
    let http = common::free_port();
    let mut server = Server::start(&center(http));
    let db = server.dir().join("data/switchboard.db");
    let qlog = server.dir().join("data/queue_log");
    let phone = common::agent_phones(&server, 1001..=1001, "agent_phone_answer.xml", 1, &[]);

    // Metrics while the agent's phone is registered and the agent ready.
    common::wait_agents_ready(&server, &[1001], Duration::from_secs(10));
    let (status, body) = http_get(http, "/metrics");
    assert_eq!(status, 200, "{body}");
    for line in [
        "switchboard_registrations 1",
        "switchboard_agents{state=\"ready\"} 1",
    ] {
        assert!(body.lines().any(|l| l == line), "{line:?} not in\n{body}");
    }

    // An answered call: the agent's phone answers, the caller talks a second and hangs up.
    let out = call(&server, "600", 1500);
    assert!(out.successful() == 1, "{}", out.diagnostics());
    // A call to a queue nobody serves: the caller waits a second and gives up.
    let out = call(&server, "601", 1000);
    assert!(out.successful() == 1, "{}", out.diagnostics());
    let _ = phone.wait();
    common::wait_until(Duration::from_secs(10), "both records stored", || {
        stored(&db) == 2
    });

    let store = Store::open_read_only(&db).unwrap();
    // Call ids start at the server's start time (unique across restarts), one by one.
    let first = store.calls_between(0, i64::MAX).unwrap()[0].call_id;
    assert!(first > 1_000_000_000_000_000, "{first}");
    let answered = store.call(first).unwrap().expect("the first call");
    assert_eq!(answered.outcome, "answered", "{answered:?}");
    assert_eq!(answered.queue.as_deref(), Some("support"));
    assert_eq!(answered.agent.as_deref(), Some("1001"));
    assert_eq!(answered.dialed, "600");
    assert_eq!(answered.source, "trunk:lab");
    assert_eq!(answered.hung_up_by, "caller");
    assert!(answered.answered_ms.is_some() && answered.queued_ms.is_some());
    assert!(answered.talk_ms >= 1000, "{answered:?}");
    assert_eq!(answered.attempts.len(), 1);
    assert_eq!(answered.attempts[0].result, "answered");
    assert!(answered.attempts[0].contact.contains("1001@"));
    let abandoned = store.call(first + 1).unwrap().expect("the second call");
    assert_eq!(abandoned.outcome, "abandoned", "{abandoned:?}");
    assert_eq!(abandoned.queue.as_deref(), Some("sales"));
    assert_eq!(abandoned.agent, None);
    assert!(abandoned.wait_ms >= 900, "{abandoned:?}");
    let states = store.agent_states("1001").unwrap();
    let seen: Vec<&str> = states.iter().map(|s| s.state.as_str()).collect();
    assert!(
        seen.windows(2).any(|w| w == ["ringing", "busy"]),
        "{seen:?}"
    );
    drop(store);

    // The queue log has the Asterisk events for both, in its format.
    let text = std::fs::read_to_string(&qlog).unwrap();
    let events: Vec<(&str, &str)> = text
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split('|').collect();
            (
                f.get(2).copied().unwrap_or(""),
                f.get(4).copied().unwrap_or(""),
            )
        })
        .collect();
    for want in [
        ("NONE", "AGENTLOGIN"),
        ("support", "ENTERQUEUE"),
        ("support", "CONNECT"),
        ("support", "COMPLETECALLER"),
        ("sales", "ENTERQUEUE"),
        ("sales", "ABANDON"),
    ] {
        assert!(events.contains(&want), "{want:?} missing from\n{text}");
    }
    assert!(
        text.lines().all(|l| l
            .split('|')
            .next()
            .is_some_and(|e| e.parse::<u64>().is_ok())),
        "every line starts with its epoch:\n{text}"
    );

    // The interval report counts them (the CLI reads the same database beside the server).
    let out = std::process::Command::new(common::switchboard_bin())
        .args(["report", "--format", "csv", "--interval", "60", "--config"])
        .arg(server.dir())
        .output()
        .unwrap();
    let csv = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{csv}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let row = |queue: &str| -> Vec<String> {
        csv.lines()
            .find(|l| l.split(',').nth(1) == Some(queue))
            .unwrap_or_else(|| panic!("no {queue} row in\n{csv}"))
            .split(',')
            .map(str::to_owned)
            .collect()
    };
    // start,queue,offered,answered,abandoned,other,service_level,…
    assert_eq!(row("support")[2..6], ["1", "1", "0", "0"], "{csv}");
    assert_eq!(row("sales")[2..6], ["1", "0", "1", "0"], "{csv}");

    // Prometheus metrics after the calls: calls by queue and outcome, agents by state; no
    // caller or agent identity in any label.
    let (status, body) = http_get(http, "/metrics");
    assert_eq!(status, 200, "{body}");
    for line in [
        "switchboard_calls_total{queue=\"support\",outcome=\"answered\"} 1",
        "switchboard_calls_total{queue=\"sales\",outcome=\"abandoned\"} 1",
        // The phone unregistered when its scenario ended: the agent is parked.
        "switchboard_registrations 0",
        "switchboard_agents{state=\"not_ready\"} 1",
    ] {
        assert!(body.lines().any(|l| l == line), "{line:?} not in\n{body}");
    }
    assert!(body.contains("switchboard_relay_received_total"), "{body}");
    assert!(
        !body.contains("1001") && !body.contains("carrier"),
        "identities in labels:\n{body}"
    );
    assert_eq!(http_get(http, "/nothing").0, 404);

    // SIGKILL, and the server starts again on the same data: the two records are there, and
    // the next call is added to them.
    server.kill();
    let mut second = Proc::start(server.dir(), &server.udp.to_string(), &[]);
    assert_eq!(stored(&db), 2, "records survive the kill");
    let out = SippRun::new(&server, "caller.xml")
        .calls(1)
        .limit(1)
        .rate(1)
        .timeout_s(30)
        .arg("-s")
        .arg("601")
        .arg("-d")
        .arg("200")
        .media_port()
        .run();
    assert!(
        out.successful() == 1,
        "{}\n{}",
        out.diagnostics(),
        second.log()
    );
    common::wait_until(Duration::from_secs(10), "the third record", || {
        stored(&db) == 3
    });
    // The live board counted today's calls again from the records: support's answered call
    // is in its service level (a board that started from zero would have none).
    let (status, body) = http_get(http, "/metrics");
    assert_eq!(status, 200);
    let line = "switchboard_queue_service_level{queue=\"support\"} 1.0";
    assert!(body.lines().any(|l| l == line), "{line:?} not in\n{body}");
    // SIGTERM: a clean shutdown (the storage thread and the HTTP server do not hold it up).
    let log = second.stop();
    assert!(log.contains("SIP transport stopped"), "{log}");
}
