//! The store keeps what it was given across reopening, beside a reader, and a killed writer
//! loses nothing it committed.

use std::path::PathBuf;

use store::{AgentStateRow, AttemptRow, CallRow, QueueLog, Store};

fn dir(label: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("store-test-{label}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

fn call(id: u64, at: i64, outcome: &str) -> CallRow {
    CallRow {
        sip_call_id: format!("c{id}@example"),
        caller: "+4930123456".into(),
        dialed: "600".into(),
        source: "trunk:carrier".into(),
        queue: Some("support".into()),
        agent: (outcome == "answered").then(|| "Ada".to_owned()),
        answered_ms: (outcome == "answered").then_some(at + 4000),
        ended_ms: at + 60_000,
        wait_ms: 4000,
        talk_ms: 56_000,
        outcome: outcome.into(),
        hung_up_by: "caller".into(),
        reason: "caller hung up".into(),
        attempts: vec![
            AttemptRow {
                agent: "Bob".into(),
                contact: "sip:1002@10.0.0.2".into(),
                started_ms: at + 1000,
                ended_ms: Some(at + 3000),
                result: "refused 486".into(),
            },
            AttemptRow {
                agent: "Ada".into(),
                contact: "sip:1001@10.0.0.1".into(),
                started_ms: at + 3000,
                ended_ms: Some(at + 4000),
                result: "answered".into(),
            },
        ],
        ..CallRow::new(id, at)
    }
}

#[test]
fn calls_and_agent_states_come_back_as_written_after_reopening() {
    let d = dir("reopen");
    let db = d.join("data/calls.db");
    let t0 = 1_800_000_000_000;
    {
        let mut s = Store::open(&db).unwrap();
        s.insert_calls(&[call(1, t0, "answered"), call(2, t0 + 10, "abandoned")])
            .unwrap();
        s.insert_agent_states(&[AgentStateRow {
            agent: "Ada".into(),
            user: "1001".into(),
            state: "not_ready".into(),
            reason: Some("lunch".into()),
            at_ms: t0,
        }])
        .unwrap();
    }
    let s = Store::open(&db).unwrap();
    assert_eq!(s.call_count().unwrap(), 2);
    assert_eq!(s.call(1).unwrap().unwrap(), call(1, t0, "answered"));
    assert_eq!(s.call(2).unwrap().unwrap().outcome, "abandoned");
    let between = s.calls_between(t0, t0 + 5).unwrap();
    assert_eq!(between.len(), 1);
    assert_eq!(between[0].attempts.len(), 2);
    assert_eq!(
        s.agent_states("Ada").unwrap()[0].reason.as_deref(),
        Some("lunch")
    );
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn a_disposition_is_set_after_the_call_and_replaced_by_a_second_one() {
    let d = dir("disposition");
    let db = d.join("data/calls.db");
    let mut s = Store::open(&db).unwrap();
    s.insert_calls(&[call(7, 1_800_000_000_000, "answered")])
        .unwrap();
    assert_eq!(s.call(7).unwrap().unwrap().disposition, None);
    assert!(s.set_disposition(7, "sale").unwrap());
    assert!(s.set_disposition(7, "follow-up").unwrap());
    assert!(!s.set_disposition(8, "sale").unwrap(), "no such call");
    drop(s);
    let s = Store::open(&db).unwrap();
    assert_eq!(
        s.call(7).unwrap().unwrap().disposition.as_deref(),
        Some("follow-up")
    );
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn a_reader_sees_what_the_writer_committed_while_it_writes() {
    let d = dir("reader");
    let db = d.join("calls.db");
    let mut w = Store::open(&db).unwrap();
    let r = Store::open_read_only(&db).unwrap();
    for i in 0..50 {
        w.insert_calls(&[call(i, 1_800_000_000_000 + i as i64, "answered")])
            .unwrap();
        assert_eq!(r.call_count().unwrap(), i + 1);
    }
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn a_killed_writer_loses_nothing_it_committed() {
    // The writer is a child process that commits calls one by one, says how many, and is
    // killed (SIGKILL) in the middle; everything it reported is there afterwards.
    if let Ok(path) = std::env::var("STORE_TEST_CHILD_DB") {
        let mut w = Store::open(std::path::Path::new(&path)).unwrap();
        for i in 0.. {
            w.insert_calls(&[call(i, 1_800_000_000_000, "answered")])
                .unwrap();
            println!("committed {}", i + 1);
        }
    }
    let d = dir("killed");
    std::fs::create_dir_all(&d).unwrap();
    let db = d.join("calls.db");
    let exe = std::env::current_exe().unwrap();
    let mut child = std::process::Command::new(exe)
        .args([
            "--exact",
            "a_killed_writer_loses_nothing_it_committed",
            "--nocapture",
        ])
        .env("STORE_TEST_CHILD_DB", &db)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::BufRead;
    let out = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut committed = 0;
    for line in out.lines() {
        let Ok(line) = line else { break };
        if let Some(n) = line.strip_prefix("committed ") {
            committed = n.parse().unwrap();
            if committed >= 200 {
                child.kill().unwrap();
                break;
            }
        }
    }
    let _ = child.wait();
    assert!(committed >= 200, "the writer ran");
    let s = Store::open(&db).unwrap();
    assert!(s.call_count().unwrap() >= committed, "{committed} reported");
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn the_queue_log_is_appended_line_by_line() {
    let d = dir("qlog");
    let p = d.join("data/queue_log");
    {
        let mut q = QueueLog::open(&p).unwrap();
        q.append(&["1|1|support|NONE|ENTERQUEUE||+4930|1".into()])
            .unwrap();
    }
    let mut q = QueueLog::open(&p).unwrap();
    q.append(&[
        "2|1|support|1001|CONNECT|2|1|1".into(),
        "9|1|support|1001|COMPLETECALLER|2|7|1".into(),
    ])
    .unwrap();
    let text = std::fs::read_to_string(&p).unwrap();
    assert_eq!(text.lines().count(), 3);
    assert!(text.ends_with("COMPLETECALLER|2|7|1\n"));
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn records_read_back_from_a_spill_file_move_with_its_offset_in_one_transaction() {
    let d = dir("replayed");
    let db = d.join("calls.db");
    let t0 = 1_800_000_000_000;
    let state = AgentStateRow {
        agent: "Ada".into(),
        user: "1001".into(),
        state: "ready".into(),
        reason: None,
        at_ms: t0,
    };
    let mut s = Store::open(&db).unwrap();
    assert_eq!(s.spill_replayed("f1").unwrap(), 0, "a file it has not seen");
    s.insert_replayed(
        "f1",
        100,
        &[call(1, t0, "answered")],
        std::slice::from_ref(&state),
    )
    .unwrap();
    s.insert_replayed("f1", 250, &[call(2, t0, "abandoned")], &[])
        .unwrap();
    assert_eq!(s.spill_replayed("f1").unwrap(), 250);
    assert_eq!(s.spill_replayed("f2").unwrap(), 0);
    assert_eq!(s.call_count().unwrap(), 2);
    assert_eq!(s.call(1).unwrap().unwrap(), call(1, t0, "answered"));
    assert_eq!(s.agent_states("Ada").unwrap(), vec![state.clone()]);

    // A batch the database refuses part-way moves neither the records nor the offset.
    let other = rusqlite::Connection::open(&db).unwrap();
    other
        .execute_batch(
            "CREATE TRIGGER refuse BEFORE INSERT ON agent_states WHEN NEW.agent = 'Eve'
             BEGIN SELECT RAISE(ABORT, 'refused'); END;",
        )
        .unwrap();
    let eve = AgentStateRow {
        agent: "Eve".into(),
        ..state.clone()
    };
    assert!(s
        .insert_replayed("f1", 400, &[call(3, t0, "answered")], &[eve])
        .is_err());
    assert_eq!(s.call_count().unwrap(), 2);
    assert_eq!(s.spill_replayed("f1").unwrap(), 250);

    s.forget_spill("f1").unwrap();
    assert_eq!(s.spill_replayed("f1").unwrap(), 0);
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn a_database_from_before_spill_files_gets_their_table_when_opened() {
    let d = dir("migrate");
    let db = d.join("calls.db");
    let t0 = 1_800_000_000_000;
    {
        let mut s = Store::open(&db).unwrap();
        s.insert_calls(&[call(1, t0, "answered")]).unwrap();
    }
    // The database as an earlier version left it: no spill_replayed table.
    rusqlite::Connection::open(&db)
        .unwrap()
        .execute_batch("DROP TABLE spill_replayed")
        .unwrap();
    let mut s = Store::open(&db).unwrap();
    assert_eq!(s.spill_replayed("f1").unwrap(), 0);
    s.insert_replayed("f1", 10, &[call(2, t0, "answered")], &[])
        .unwrap();
    assert_eq!(s.call_count().unwrap(), 2);
    assert_eq!(s.spill_replayed("f1").unwrap(), 10);
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn rows_go_through_json_and_come_back_the_same() {
    let c = call(7, 1_800_000_000_000, "answered");
    let text = serde_json::to_string(&c).unwrap();
    assert_eq!(serde_json::from_str::<CallRow>(&text).unwrap(), c);
    let s = AgentStateRow {
        agent: "Ada".into(),
        user: "1001".into(),
        state: "not_ready".into(),
        reason: Some("lunch".into()),
        at_ms: 5,
    };
    let text = serde_json::to_string(&s).unwrap();
    assert_eq!(serde_json::from_str::<AgentStateRow>(&text).unwrap(), s);
}

#[test]
fn a_database_file_removed_while_open_refuses_writes_instead_of_losing_them() {
    let d = dir("removed");
    let db = d.join("calls.db");
    let t0 = 1_800_000_000_000;
    let mut s = Store::open(&db).unwrap();
    s.insert_calls(&[call(1, t0, "answered")]).unwrap();
    std::fs::remove_file(&db).unwrap();
    let refused = s.insert_calls(&[call(2, t0, "answered")]).unwrap_err();
    assert!(
        matches!(refused, store::StoreError::Moved { .. }),
        "{refused}"
    );
    assert!(s.insert_agent_states(&[]).is_err());
    assert!(s.insert_replayed("f1", 10, &[], &[]).is_err());
    // Replaced by another file: refused just the same.
    std::fs::write(&db, b"").unwrap();
    assert!(s.insert_calls(&[call(3, t0, "answered")]).is_err());
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn a_database_from_before_dispositions_gets_the_columns_and_keeps_its_calls() {
    let d = dir("columns");
    let db = d.join("calls.db");
    let t0 = 1_800_000_000_000;
    std::fs::create_dir_all(&d).unwrap();
    {
        let conn = rusqlite::Connection::open(&db).unwrap();
        // The calls table as the first release made it.
        conn.execute_batch(
            "CREATE TABLE calls (id INTEGER PRIMARY KEY, call_id INTEGER NOT NULL,
                sip_call_id TEXT NOT NULL, caller TEXT NOT NULL, caller_name TEXT,
                dialed TEXT NOT NULL, source TEXT NOT NULL, queue TEXT, agent TEXT,
                arrived_ms INTEGER NOT NULL, queued_ms INTEGER, first_offer_ms INTEGER,
                answered_ms INTEGER, ended_ms INTEGER NOT NULL, wait_ms INTEGER NOT NULL,
                talk_ms INTEGER NOT NULL, hold_ms INTEGER NOT NULL, wrap_up_ms INTEGER NOT NULL,
                outcome TEXT NOT NULL, hung_up_by TEXT NOT NULL, reason TEXT NOT NULL,
                recorded INTEGER NOT NULL);
             INSERT INTO calls VALUES (1, 9, 'x@y', '100', NULL, '600', 'trunk:lab', 'support',
                NULL, 1800000000000, NULL, NULL, NULL, 1800000001000, 1000, 0, 0, 0,
                'abandoned', 'caller', 'caller hung up', 0);",
        )
        .unwrap();
    }
    let mut s = Store::open(&db).unwrap();
    let old = s.call(9).unwrap().expect("the old call");
    assert_eq!((old.disposition, old.satisfaction), (None, None));
    let mut new = call(10, t0, "answered");
    new.disposition = Some("sale".into());
    new.satisfaction = Some(5);
    new.variables = vec![
        ("language".into(), "es".into()),
        ("account".into(), "0047\"x".into()),
    ];
    new.segments = vec![
        store::SegmentRow {
            agent: "Ann".into(),
            started_ms: t0 + 1_000,
            ended_ms: t0 + 30_000,
            end: "transferred".into(),
        },
        store::SegmentRow {
            agent: "Bob".into(),
            started_ms: t0 + 30_000,
            ended_ms: t0 + 90_000,
            end: "caller hung up".into(),
        },
    ];
    let segments = new.segments.clone();
    s.insert_calls(&[new]).unwrap();
    assert_eq!(
        s.call(10).unwrap().unwrap().segments,
        segments,
        "segments come back in order"
    );
    let back = s.call(10).unwrap().unwrap();
    assert_eq!(back.disposition.as_deref(), Some("sale"));
    assert_eq!(back.satisfaction, Some(5));
    // Variables come back by name, leading zeros and quotes intact.
    assert_eq!(
        back.variables,
        vec![
            ("account".into(), "0047\"x".into()),
            ("language".into(), "es".into())
        ]
    );
    assert!(s.call(9).unwrap().unwrap().variables.is_empty());
    assert!(s.call(9).unwrap().unwrap().segments.is_empty());
    let _ = std::fs::remove_dir_all(&d);
}
