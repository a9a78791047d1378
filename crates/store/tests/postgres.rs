//! The store on a real PostgreSQL server (started by each test, see `pg/mod.rs`): what it
//! writes comes back as written, it answers every query as SQLite does for the same calls,
//! the spill file's progress moves with its records, it reconnects after the server
//! restarts, and a URL's password shows nowhere.

mod pg;

use store::{
    AgentStateRow, AttemptRow, AuditRow, CallFilter, CallRow, Location, RecordingRow, ReviewRow,
    Store,
};

const T0: i64 = 1_800_000_000_000; // a slot boundary (a multiple of 30 minutes)
const MIN: i64 = 60_000;

fn call(id: u64, queue: &str, at: i64, outcome: &str, wait_s: i64, agent: Option<&str>) -> CallRow {
    let answered = outcome == "answered";
    CallRow {
        sip_call_id: format!("c{id}@example"),
        caller: "+4930123456".into(),
        caller_name: Some("Grace O'Neil".into()),
        dialed: "600".into(),
        source: "trunk:carrier".into(),
        queue: Some(queue.into()),
        agent: agent.map(str::to_owned),
        queued_ms: Some(at + 100),
        first_offer_ms: Some(at + 1000),
        answered_ms: answered.then_some(at + wait_s * 1000),
        ended_ms: at + 300_000,
        wait_ms: wait_s * 1000,
        talk_ms: if answered {
            100_000 + id as i64 * 1000
        } else {
            0
        },
        hold_ms: if answered { 10_000 } else { 0 },
        wrap_up_ms: if answered { 5_000 } else { 0 },
        outcome: outcome.into(),
        hung_up_by: "caller".into(),
        reason: "caller hung up".into(),
        recorded: answered,
        disposition: answered.then(|| "sale".to_owned()),
        satisfaction: answered.then_some(4),
        variables: vec![("account".into(), format!("{id:06}"))],
        segments: if answered {
            vec![store::SegmentRow {
                agent: "Bob".into(),
                started_ms: at + 3000,
                ended_ms: at + 63_000,
                end: "caller hung up".into(),
            }]
        } else {
            Vec::new()
        },
        attempts: vec![
            AttemptRow {
                agent: "Bob".into(),
                contact: "sip:1002@10.0.0.2".into(),
                started_ms: at + 1000,
                ended_ms: Some(at + 3000),
                result: "refused 486".into(),
            },
            AttemptRow {
                agent: agent.unwrap_or("Ada").into(),
                contact: "sip:1001@10.0.0.1".into(),
                started_ms: at + 3000,
                ended_ms: None,
                result: if answered { "answered" } else { "cancelled" }.into(),
            },
        ],
        ..CallRow::new(id, at)
    }
}

/// A half day of two queues: answered, abandoned, timed out, an extension call, a call
/// outside the day.
fn calls() -> Vec<CallRow> {
    vec![
        call(1, "support", T0 + MIN, "answered", 5, Some("Ada")),
        call(2, "support", T0 + 2 * MIN, "answered", 15, Some("Bob")),
        call(3, "support", T0 + 3 * MIN, "answered", 40, Some("Ada")),
        call(4, "support", T0 + 4 * MIN, "abandoned", 60, None),
        call(5, "support", T0 + 29 * MIN, "timed_out", 120, None),
        call(6, "sales", T0 + 31 * MIN, "answered", 2, Some("Bob")),
        call(7, "support", T0 - MIN, "answered", 1, Some("Ada")),
        call(
            8,
            "sales, east",
            T0 + 95 * MIN,
            "answered",
            9,
            Some("Émile"),
        ),
        CallRow {
            outcome: "answered".into(),
            ..CallRow::new(9, T0 + 5 * MIN)
        },
    ]
}

fn state(agent: &str, s: &str, at: i64) -> AgentStateRow {
    AgentStateRow {
        agent: agent.into(),
        user: "1001".into(),
        state: s.into(),
        reason: (s == "not_ready").then(|| "lunch".to_owned()),
        at_ms: at,
    }
}

#[test]
fn calls_and_agent_states_come_back_as_written_after_reconnecting() {
    let Some(server) = pg::Server::start("roundtrip") else {
        return;
    };
    let url = server.create_db("calls");
    {
        let mut s = Store::connect(&url).unwrap();
        s.insert_calls(&calls()).unwrap();
        s.insert_agent_states(&[state("Ada", "not_ready", T0), state("Ada", "ready", T0 + 5)])
            .unwrap();
        s.insert_calls(&[]).unwrap();
    }
    // A second connection (the tables exist: made only once) over the Unix socket.
    let s = Location::Postgres(server.socket_params("calls"))
        .open()
        .unwrap();
    assert_eq!(s.call_count().unwrap(), 9);
    for c in calls() {
        assert_eq!(s.call(c.call_id).unwrap().unwrap(), c);
    }
    assert_eq!(s.call(99).unwrap(), None);
    let between = s.calls_between(T0, T0 + 5 * MIN).unwrap();
    let ids: Vec<u64> = between.iter().map(|c| c.call_id).collect();
    assert_eq!(ids, [1, 2, 3, 4]);
    assert_eq!(between[0].attempts.len(), 2);
    assert_eq!(
        s.agent_states("Ada").unwrap(),
        [state("Ada", "not_ready", T0), state("Ada", "ready", T0 + 5)]
    );
    // A later record of the same call id is the one `call` answers.
    let mut again = Location::Postgres(url).open().unwrap();
    let mut later = call(1, "support", T0 + 9 * MIN, "abandoned", 3, None);
    later.attempts.clear();
    again.insert_calls(&[later.clone()]).unwrap();
    assert_eq!(s.call(1).unwrap().unwrap(), later);
}

#[test]
fn every_query_answers_as_on_sqlite_for_the_same_calls() {
    let Some(server) = pg::Server::start("crosscheck") else {
        return;
    };
    let dir = std::env::temp_dir().join(format!("store-pg-crosscheck-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mut lite = Store::open(&dir.join("calls.db")).unwrap();
    let mut pg = Store::connect(&server.create_db("crosscheck")).unwrap();
    let recordings = [
        RecordingRow {
            call_id: 1,
            file: "2026/11/30/1.wav".into(),
            sha256: "ab".repeat(32),
            bytes: 960_044,
            duration_ms: 30_000,
            finished_ms: T0 + 400_000,
        },
        RecordingRow {
            call_id: 6,
            file: "2026/11/30/6.wav".into(),
            sha256: "cd".repeat(32),
            bytes: 44,
            duration_ms: 0,
            finished_ms: T0 + 32 * MIN,
        },
    ];
    let states = [
        state("Ada", "ready", T0 - 30 * MIN),
        state("Ada", "busy", T0 + MIN),
        state("Ada", "wrap_up", T0 + 4 * MIN),
        state("Ada", "not_ready", T0 + 6 * MIN),
        state("Bob", "ready", T0 + 10 * MIN),
        state("Ada", "logged_out", T0 + 70 * MIN),
    ];
    // Overflowed from vip to sales and answered there.
    let overflowed = CallRow {
        overflowed_from: Some("vip".into()),
        ..call(10, "sales", T0 + 40 * MIN, "answered", 50, Some("Bob"))
    };
    for s in [&mut lite, &mut pg] {
        s.insert_calls(&calls()).unwrap();
        s.insert_calls(std::slice::from_ref(&overflowed)).unwrap();
        s.insert_agent_states(&states).unwrap();
        s.insert_recordings(&recordings).unwrap();
        // A second recording of call 6 replaces the first.
        s.insert_recordings(&[RecordingRow {
            bytes: 88,
            ..recordings[1].clone()
        }])
        .unwrap();
    }
    let filters = [
        CallFilter::default(),
        CallFilter {
            queue: Some("support".into()),
            ..CallFilter::default()
        },
        CallFilter {
            agent: Some("Bob".into()),
            outcome: Some("answered".into()),
            ..CallFilter::default()
        },
        CallFilter {
            recorded: true,
            ..CallFilter::default()
        },
        CallFilter {
            from_ms: T0,
            to_ms: T0 + 30 * MIN,
            limit: 2,
            ..CallFilter::default()
        },
        CallFilter {
            queue: Some("nowhere".into()),
            ..CallFilter::default()
        },
    ];
    for f in &filters {
        let (a, b) = (lite.search_calls(f).unwrap(), pg.search_calls(f).unwrap());
        assert_eq!(a, b, "{f:?}");
    }
    let recorded = pg
        .search_calls(&CallFilter {
            recorded: true,
            ..CallFilter::default()
        })
        .unwrap();
    let ids: Vec<u64> = recorded.iter().map(|f| f.call.call_id).collect();
    assert_eq!(ids, [6, 1], "newest first, only those with a recording");
    assert_eq!(recorded[0].recording.as_ref().unwrap().bytes, 88);
    assert_eq!(
        lite.calls_between(0, i64::MAX).unwrap(),
        pg.calls_between(0, i64::MAX).unwrap()
    );
    for (interval, level) in [(15, 20_000), (30, 10_000), (60, 0)] {
        let q = |s: &Store| {
            s.queue_intervals(T0, T0 + 24 * 60 * MIN, interval * MIN, level)
                .unwrap()
        };
        assert_eq!(q(&lite), q(&pg), "queues, {interval} min");
        let a = |s: &Store| {
            s.agent_intervals(T0, T0 + 24 * 60 * MIN, interval * MIN)
                .unwrap()
        };
        assert_eq!(a(&lite), a(&pg), "agents, {interval} min");
        let t = |s: &Store| {
            s.agent_times(T0, T0 + 24 * 60 * MIN, interval * MIN, T0 + 90 * MIN)
                .unwrap()
        };
        assert_eq!(t(&lite), t(&pg), "agent time, {interval} min");
    }
    assert_eq!(lite.ended_since(T0).unwrap(), pg.ended_since(T0).unwrap());
    let vip = pg
        .queue_intervals(T0, T0 + 24 * 60 * MIN, 60 * MIN, 20_000)
        .unwrap()
        .into_iter()
        .find(|r| r.queue == "vip")
        .expect("the queue the call overflowed from");
    assert_eq!((vip.offered, vip.answered, vip.other), (1, 0, 1));
    assert_eq!(
        pg.call(10).unwrap().unwrap().overflowed_from.as_deref(),
        Some("vip")
    );
    // The figures themselves (as the SQLite report test checks them).
    let q = pg
        .queue_intervals(T0, T0 + 24 * 60 * MIN, 30 * MIN, 20_000)
        .unwrap();
    let support = q.iter().find(|r| r.queue == "support").unwrap();
    assert_eq!(
        (
            support.offered,
            support.answered,
            support.abandoned,
            support.other
        ),
        (5, 3, 1, 1)
    );
    assert_eq!(support.service_level, Some(2.0 / 5.0));
    assert_eq!(support.asa_ms, Some(20_000.0));
    assert_eq!(support.longest_wait_ms, 120_000);
    let a = pg
        .agent_intervals(T0, T0 + 24 * 60 * MIN, 60 * MIN)
        .unwrap();
    let ada = a.iter().find(|r| r.agent == "Ada").unwrap();
    assert_eq!((ada.answered, ada.talk_ms), (2, 204_000));
    assert_eq!(ada.aht_ms, Some(117_000.0));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn reviews_and_the_audit_log_are_kept_in_order() {
    let Some(server) = pg::Server::start("review") else {
        return;
    };
    let mut s = Store::connect(&server.create_db("review")).unwrap();
    s.insert_calls(&calls()).unwrap();
    for (score, at) in [(80, T0 + 2), (95, T0 + 1)] {
        s.insert_review(&ReviewRow {
            call_id: 3,
            reviewer: "quinn".into(),
            score,
            comment: format!("score {score}: greeting 'ok', \"hold\" too long"),
            at_ms: at,
        })
        .unwrap();
    }
    let reviews = s.reviews(3).unwrap();
    assert_eq!(
        reviews.iter().map(|r| r.score).collect::<Vec<_>>(),
        [95, 80]
    );
    assert!(reviews[1].comment.contains("\"hold\""));
    assert!(s.reviews(4).unwrap().is_empty());
    assert!(s.set_disposition(3, "sale").unwrap());
    assert!(
        s.set_disposition(3, "follow-up").unwrap(),
        "a second one replaces it"
    );
    assert!(!s.set_disposition(999, "sale").unwrap(), "no such call");
    assert_eq!(
        s.call(3).unwrap().unwrap().disposition.as_deref(),
        Some("follow-up")
    );
    for (i, action) in ["list_recordings", "play_recording", "review"]
        .iter()
        .enumerate()
    {
        s.audit(&AuditRow {
            at_ms: T0 + i as i64,
            login: "quinn".into(),
            action: (*action).into(),
            call_id: (i > 0).then_some(3),
            detail: String::new(),
        })
        .unwrap();
    }
    let log = s.audit_log(T0, T0 + 10, 100).unwrap();
    assert_eq!(
        log.iter().map(|r| r.action.as_str()).collect::<Vec<_>>(),
        ["list_recordings", "play_recording", "review"]
    );
    assert_eq!(log[0].call_id, None);
    assert_eq!(log[1].call_id, Some(3));
    assert_eq!(s.audit_log(T0, T0 + 10, 1).unwrap().len(), 1);
    assert!(s.audit_log(T0 + 3, T0 + 10, 100).unwrap().is_empty());
}

#[test]
fn records_read_back_from_a_spill_file_move_with_its_offset_in_one_transaction() {
    let Some(server) = pg::Server::start("spill") else {
        return;
    };
    let mut s = Store::connect(&server.create_db("spill")).unwrap();
    assert_eq!(s.spill_replayed("f1").unwrap(), 0);
    s.insert_replayed("f1", 120, &calls()[..2], &[state("Ada", "ready", T0)])
        .unwrap();
    s.insert_replayed("f1", 240, &calls()[2..3], &[]).unwrap();
    assert_eq!(s.spill_replayed("f1").unwrap(), 240);
    assert_eq!(s.call_count().unwrap(), 3);
    // A batch the database refuses (here: a constraint another client added) leaves neither
    // its records nor the offset, and the connection goes on.
    let mut admin =
        postgres::Client::connect(&server.socket_params("spill"), postgres::NoTls).unwrap();
    admin
        .batch_execute("ALTER TABLE calls ADD CONSTRAINT not_40 CHECK (call_id <> 40)")
        .unwrap();
    let mut bad = calls()[3].clone();
    bad.call_id = 40;
    let refused = s.insert_replayed(
        "f1",
        360,
        &[calls()[4].clone(), bad],
        &[state("Bob", "ready", T0)],
    );
    assert!(refused.is_err());
    assert_eq!(s.spill_replayed("f1").unwrap(), 240);
    assert_eq!(s.call_count().unwrap(), 3);
    assert!(s.agent_states("Bob").unwrap().is_empty());
    admin
        .batch_execute("ALTER TABLE calls DROP CONSTRAINT not_40")
        .unwrap();
    s.insert_replayed("f1", 360, &calls()[3..5], &[]).unwrap();
    assert_eq!(s.spill_replayed("f1").unwrap(), 360);
    assert_eq!(s.call_count().unwrap(), 5);
    s.forget_spill("f1").unwrap();
    assert_eq!(s.spill_replayed("f1").unwrap(), 0);
}

#[test]
fn a_restarted_server_is_reconnected_and_the_password_shows_nowhere() {
    let Some(server) = pg::Server::start("restart") else {
        return;
    };
    let url = server.create_db("restart");
    let location = Location::Postgres(url.clone());
    assert!(!format!("{location} {location:?}").contains(pg::PASSWORD));
    let mut s = location.open().unwrap();
    assert!(!s.describe().contains(pg::PASSWORD));
    s.insert_calls(&calls()[..1]).unwrap();

    server.stop();
    let down = s.insert_calls(&calls()[1..2]).unwrap_err();
    let shown = format!("{down} {down:?}");
    assert!(!shown.contains(pg::PASSWORD), "{shown}");
    assert!(shown.contains("127.0.0.1"), "{shown}");
    // Still down: connecting fails, quickly, without the password either.
    let again = s.call_count().unwrap_err();
    assert!(!format!("{again} {again:?}").contains(pg::PASSWORD));
    let refused = Store::connect(&url).unwrap_err();
    assert!(!format!("{refused} {refused:?}").contains(pg::PASSWORD));
    // A store made while the server is down connects once it is up.
    let mut later = Store::connect_later(&url).unwrap();

    server.start_again();
    s.insert_calls(&calls()[1..2]).unwrap();
    assert_eq!(s.call_count().unwrap(), 2);
    later.insert_calls(&calls()[2..3]).unwrap();
    assert_eq!(later.call_count().unwrap(), 3);

    // A wrong password or a mangled URL: refused, and not repeated.
    let wrong = url.replace(pg::PASSWORD, "not-the-password");
    let e = Store::connect(&wrong).unwrap_err();
    assert!(!format!("{e} {e:?}").contains("not-the-password"), "{e}");
    let mangled = format!("postgres://postgres:{}@127.0.0.1:notaport/x", pg::PASSWORD);
    let e = Store::connect(&mangled).unwrap_err();
    assert!(!format!("{e} {e:?}").contains(pg::PASSWORD), "{e}");
    let e = Store::connect(&format!(
        "host=127.0.0.1 password={} nonsense",
        pg::PASSWORD
    ))
    .unwrap_err();
    assert!(!format!("{e} {e:?}").contains(pg::PASSWORD), "{e}");
}

#[test]
fn a_read_only_connection_reads_and_refuses_writes() {
    let Some(server) = pg::Server::start("readonly") else {
        return;
    };
    let url = server.create_db("readonly");
    let mut w = Store::connect(&url).unwrap();
    let mut r = Location::Postgres(url).open_read_only().unwrap();
    for (i, c) in calls().into_iter().enumerate() {
        w.insert_calls(&[c]).unwrap();
        assert_eq!(r.call_count().unwrap(), i as u64 + 1);
    }
    assert!(r.insert_calls(&calls()[..1]).is_err());
    // The refusal is the server's answer: the connection stays and reads on.
    assert_eq!(r.call_count().unwrap(), 9);
}

#[test]
fn a_large_batch_goes_in_whole_and_in_order() {
    let Some(server) = pg::Server::start("batch") else {
        return;
    };
    let dir = std::env::temp_dir().join(format!("store-pg-batch-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mut lite = Store::open(&dir.join("calls.db")).unwrap();
    let mut pg = Store::connect(&server.create_db("batch")).unwrap();
    // 3,000 calls with 6,000 ring attempts in one transaction; call id 7 comes twice (a
    // server restart reuses ids): the later record is the one `call` answers.
    let mut batch: Vec<CallRow> = (0..3000)
        .map(|i| {
            call(
                i,
                "support",
                T0 + i as i64 * 100,
                "answered",
                3,
                Some("Ada"),
            )
        })
        .collect();
    batch.push(call(7, "sales", T0 + 400_000, "abandoned", 30, None));
    let states: Vec<AgentStateRow> = (0..500)
        .map(|i| state("Ada", ["ready", "ringing", "busy"][i % 3], T0))
        .collect();
    for s in [&mut lite, &mut pg] {
        s.insert_calls(&batch).unwrap();
        s.insert_agent_states(&states).unwrap();
    }
    assert_eq!(pg.call_count().unwrap(), 3001);
    assert_eq!(pg.call(7).unwrap().unwrap().outcome, "abandoned");
    assert_eq!(
        lite.calls_between(0, i64::MAX).unwrap(),
        pg.calls_between(0, i64::MAX).unwrap()
    );
    assert_eq!(
        pg.agent_states("Ada").unwrap(),
        states,
        "in the order given"
    );
    assert_eq!(lite.agent_states("Ada").unwrap(), states);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Voicemail messages: stored once per call, listed until deleted, statuses kept.
fn check_messages(s: &mut Store) {
    let m = |call: u64, mailbox: &str, at: i64| store::MessageRow {
        call_id: call,
        mailbox: mailbox.into(),
        caller: "+4930123456".into(),
        file: format!("2027/01/15/{call}.wav"),
        received_ms: at,
        duration_ms: 4200,
        status: "new".into(),
        ..Default::default()
    };
    let a = s.insert_message(&m(10, "1003", T0 + 5)).unwrap();
    let b = s.insert_message(&m(11, "support", T0 + 1)).unwrap();
    assert_ne!(a, b);
    // The same message again (a retried write) is the same message …
    assert_eq!(s.insert_message(&m(10, "1003", T0 + 5)).unwrap(), a);
    // … but call ids start again after a restart: the same call id with another file is a
    // new message.
    let again = s
        .insert_message(&store::MessageRow {
            file: "2027/01/16/10.wav".into(),
            ..m(10, "1003", T0 + 7)
        })
        .unwrap();
    assert!(again != a && again != b);
    s.set_message_status(again, "deleted").unwrap();
    let all = s.messages().unwrap();
    assert_eq!(
        all.iter().map(|x| x.call_id).collect::<Vec<_>>(),
        [11, 10],
        "oldest first"
    );
    assert_eq!(all[1].id, a);
    assert_eq!(all[1].file, "2027/01/15/10.wav");
    s.set_message_status(b, "saved").unwrap();
    s.set_message_status(a, "deleted").unwrap();
    let left = s.messages().unwrap();
    assert_eq!(left.len(), 1);
    assert_eq!((left[0].id, left[0].status.as_str()), (b, "saved"));
}

#[test]
fn voicemail_messages_are_kept_alike_in_sqlite_and_postgresql() {
    let dir = std::env::temp_dir().join(format!("store-messages-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    check_messages(&mut Store::open(&dir.join("calls.db")).unwrap());
    check_callbacks(&mut Store::open(&dir.join("calls.db")).unwrap());
    let _ = std::fs::remove_dir_all(&dir);
    let Some(server) = pg::Server::start("messages") else {
        return;
    };
    let url = server.create_db("messages");
    check_messages(&mut Store::connect(&url).unwrap());
    check_callbacks(&mut Store::connect(&url).unwrap());
}

/// Pending callbacks: kept by key, updated, listed first arrived first, forgotten; a call
/// record says whether it was a callback.
fn check_callbacks(s: &mut Store) {
    let c = |key: &str, at: i64| store::CallbackRow {
        key: key.into(),
        queue: "support".into(),
        number: "+4930123456".into(),
        name: Some("Grace O'Neil".into()),
        dialed: "600".into(),
        source: "trunk:carrier".into(),
        arrived_ms: at,
        queued_ms: at + 200,
        attempts: 0,
    };
    s.save_callback(&c("b@x", T0 + 9)).unwrap();
    s.save_callback(&c("a@x", T0 + 3)).unwrap();
    s.save_callback(&store::CallbackRow {
        attempts: 2,
        ..c("b@x", T0 + 9)
    })
    .unwrap();
    let all = s.callbacks().unwrap();
    assert_eq!(
        all.iter()
            .map(|r| (r.key.as_str(), r.attempts))
            .collect::<Vec<_>>(),
        [("a@x", 0), ("b@x", 2)]
    );
    assert_eq!(all[0], c("a@x", T0 + 3));
    s.forget_callback("a@x").unwrap();
    assert_eq!(s.callbacks().unwrap().len(), 1);
    let mut call = CallRow::new(77, T0);
    call.callback = true;
    s.insert_calls(&[call]).unwrap();
    assert!(s.call(77).unwrap().unwrap().callback);
}
