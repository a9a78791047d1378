//! Interval reports count what the calls say: a hand-made half hour, checked figure by figure.

use store::{CallRow, Store};

const T0: i64 = 1_800_000_000_000; // a slot boundary (a multiple of 30 minutes)
const MIN: i64 = 60_000;

fn call(
    id: u64,
    queue: &str,
    at: i64,
    outcome: &str,
    wait_s: i64,
    talk_s: i64,
    agent: Option<&str>,
) -> CallRow {
    CallRow {
        queue: Some(queue.into()),
        agent: agent.map(str::to_owned),
        outcome: outcome.into(),
        wait_ms: wait_s * 1000,
        talk_ms: talk_s * 1000,
        hold_ms: if outcome == "answered" { 10_000 } else { 0 },
        wrap_up_ms: if outcome == "answered" { 5_000 } else { 0 },
        ..CallRow::new(id, at)
    }
}

#[test]
fn queue_and_agent_figures_per_slot() {
    let dir = std::env::temp_dir().join(format!("store-report-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mut s = Store::open(&dir.join("calls.db")).unwrap();
    s.insert_calls(&[
        // First half hour of support: 3 answered (waits 5, 15, 40 s), 1 abandoned, 1 timed out.
        call(1, "support", T0 + MIN, "answered", 5, 100, Some("Ada")),
        call(2, "support", T0 + 2 * MIN, "answered", 15, 200, Some("Bob")),
        call(3, "support", T0 + 3 * MIN, "answered", 40, 300, Some("Ada")),
        call(4, "support", T0 + 4 * MIN, "abandoned", 60, 0, None),
        call(5, "support", T0 + 29 * MIN, "timed_out", 120, 0, None),
        // Second half hour: one answered call in sales.
        call(6, "sales", T0 + 31 * MIN, "answered", 2, 60, Some("Bob")),
        // Outside the day asked for.
        call(7, "support", T0 - MIN, "answered", 1, 1, Some("Ada")),
        // Not a queue call (an extension call).
        CallRow {
            outcome: "answered".into(),
            ..CallRow::new(8, T0 + 5 * MIN)
        },
    ])
    .unwrap();
    let q = s
        .queue_intervals(T0, T0 + 24 * 60 * MIN, 30 * MIN, 20_000)
        .unwrap();
    assert_eq!(q.len(), 2, "{q:#?}");
    let support = &q[0];
    assert_eq!((support.start_ms, support.queue.as_str()), (T0, "support"));
    assert_eq!(
        (
            support.offered,
            support.answered,
            support.abandoned,
            support.other
        ),
        (5, 3, 1, 1)
    );
    assert_eq!(support.answered_in_time, 2, "5 s and 15 s are within 20 s");
    assert_eq!(support.service_level, Some(2.0 / 5.0));
    assert_eq!(support.asa_ms, Some(20_000.0), "(5 + 15 + 40) / 3 s");
    assert_eq!(
        support.aht_ms,
        Some(215_000.0),
        "(100+200+300)/3 + 10 + 5 s"
    );
    assert_eq!(support.longest_wait_ms, 120_000);
    let sales = &q[1];
    assert_eq!(
        (sales.start_ms, sales.queue.as_str()),
        (T0 + 30 * MIN, "sales")
    );
    assert_eq!((sales.offered, sales.answered), (1, 1));

    let a = s.agent_intervals(T0, T0 + 24 * 60 * MIN, 60 * MIN).unwrap();
    let ada = a.iter().find(|r| r.agent == "Ada").unwrap();
    assert_eq!((ada.answered, ada.talk_ms), (2, 400_000));
    assert_eq!(ada.aht_ms, Some(215_000.0));
    let bob = a.iter().find(|r| r.agent == "Bob").unwrap();
    assert_eq!(
        (bob.answered, bob.hold_ms, bob.wrap_up_ms),
        (2, 20_000, 10_000)
    );
    let _ = std::fs::remove_dir_all(&dir);
}
