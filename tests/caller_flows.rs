//! Caller flows over the wire: SIPp customers walk an IVR menu whose prompt the server spoke
//! with espeak-ng, pressing keys as RFC 4733 telephone-events (sip-tester's
//! `dtmf_2833_N.pcap` captures), and land in the queue they chose with the digits they
//! entered in their call record.

mod common;

use std::path::PathBuf;
use std::time::Duration;

use common::{Server, ServerConfig, SippRun};
use store::{CallRow, Store};

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

fn records(server: &Server, n: usize) -> Vec<CallRow> {
    let db = server.dir().join("data/switchboard.db");
    let mut rows = Vec::new();
    common::wait_until(Duration::from_secs(10), "the call records", || {
        rows = Store::open_read_only(&db)
            .and_then(|s| s.calls_between(0, i64::MAX))
            .unwrap_or_default();
        rows.len() >= n
    });
    rows
}

#[test]
fn rfc_4733_keys_walk_the_menu_into_the_chosen_queue_with_the_digits_in_the_record() {
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
    let r = &records(&server, 1)[0];
    assert_eq!(r.dialed, "700");
    assert_eq!(r.queue.as_deref(), Some("support"), "{r:?}");
    assert_eq!(r.variables, vec![("account".into(), "47".into())]);
    // The wait counts from the queue (the menu took several seconds).
    assert!(r.wait_ms < 4500, "{r:?}");
    assert!(r.queued_ms.unwrap() - r.arrived_ms >= 3000, "{r:?}");

    // 1: sales; the later keys (the menu is gone) change nothing.
    let out = caller(&server, [1, 2, 4]);
    assert_eq!(out.successful(), 1, "{}", out.diagnostics());
    let rows = records(&server, 2);
    let r = rows.iter().find(|r| r.queue.as_deref() == Some("sales"));
    let r = r.unwrap_or_else(|| panic!("no sales call in {rows:?}"));
    assert_eq!(r.variables, vec![("reason".into(), "buy".into())]);
    let log = std::fs::read_to_string(server.dir().join("data/queue_log")).unwrap_or_default();
    assert_eq!(log.matches("ENTERQUEUE").count(), 2, "{log}");
}
