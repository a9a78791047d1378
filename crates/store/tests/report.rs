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

#[test]
fn agent_time_by_state_and_occupancy_per_slot() {
    let dir = std::env::temp_dir().join(format!("store-occupancy-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mut s = Store::open(&dir.join("calls.db")).unwrap();
    let state = |agent: &str, state: &str, at: i64| store::AgentStateRow {
        agent: agent.into(),
        user: agent.into(),
        state: state.into(),
        reason: (state == "not_ready").then(|| "lunch".to_owned()),
        at_ms: at,
    };
    // Ada: ready before the report's first slot (T0, 08:00 UTC), a 10-minute call with 2
    // minutes' wrap-up, ready, then 20 minutes' pause across the slot boundary, ready, logged
    // out at 09:30. Bob: logged in at 08:50, ready until now (09:20).
    s.insert_agent_states(&[
        state("Ada", "ready", T0 - 30 * MIN),
        state("Ada", "ringing", T0 + 5 * MIN),
        state("Ada", "busy", T0 + 6 * MIN),
        state("Ada", "wrap_up", T0 + 16 * MIN),
        state("Ada", "ready", T0 + 18 * MIN),
        state("Ada", "not_ready", T0 + 50 * MIN),
        state("Ada", "ready", T0 + 70 * MIN),
        state("Ada", "logged_out", T0 + 90 * MIN),
        state("Bob", "ready", T0 + 50 * MIN),
    ])
    .unwrap();
    let now = T0 + 80 * MIN;
    let t = s.agent_times(T0, T0 + 120 * MIN, 60 * MIN, now).unwrap();
    let get = |agent: &str, slot: i64| {
        t.iter()
            .find(|r| r.agent == agent && r.start_ms == T0 + slot * 60 * MIN)
            .unwrap_or_else(|| panic!("{agent} slot {slot}: {t:?}"))
            .clone()
    };
    let ada = get("Ada", 0);
    assert_eq!(ada.logged_in_ms, 60 * MIN);
    assert_eq!(ada.handling_ms, 12 * MIN);
    assert_eq!(ada.paused_ms, 10 * MIN);
    assert_eq!(ada.available_ms, 38 * MIN);
    assert_eq!(ada.occupancy(), Some(12.0 / 50.0));
    // 09:00-09:20 (now): 10 minutes paused, 10 ready.
    let ada = get("Ada", 1);
    assert_eq!((ada.paused_ms, ada.available_ms), (10 * MIN, 10 * MIN));
    assert_eq!(ada.occupancy(), Some(0.0));
    assert_eq!(get("Bob", 0).available_ms, 10 * MIN);
    assert_eq!(get("Bob", 1).available_ms, 20 * MIN);
    // The table joins them with the call figures.
    let table = store::report::Table::agents(&[], &t);
    assert!(
        table
            .csv()
            .contains("08:00,Ada,0,0.0,0.0,0.0,,3600.0,600.0,0.240"),
        "{}",
        table.csv()
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn an_overflowed_call_is_offered_to_both_queues_and_answered_in_the_second() {
    let dir = std::env::temp_dir().join(format!("store-overflow-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mut s = Store::open(&dir.join("calls.db")).unwrap();
    let mut c = call(1, "sales", T0 + MIN, "answered", 40, 60, Some("Ada"));
    c.overflowed_from = Some("vip".into());
    s.insert_calls(&[c]).unwrap();
    let q = s
        .queue_intervals(T0, T0 + 30 * MIN, 30 * MIN, 20_000)
        .unwrap();
    let get = |name: &str| q.iter().find(|r| r.queue == name).unwrap().clone();
    let vip = get("vip");
    assert_eq!(
        (vip.offered, vip.answered, vip.abandoned, vip.other),
        (1, 0, 0, 1)
    );
    let sales = get("sales");
    assert_eq!((sales.offered, sales.answered), (1, 1));
    assert_eq!(
        s.call(1).unwrap().unwrap().overflowed_from.as_deref(),
        Some("vip")
    );
    let _ = std::fs::remove_dir_all(&dir);
}
