//! The storage thread: takes what call control and the ACD write down (call records, agent
//! state changes, queue-log lines) off a bounded channel, counts it in the metrics, and (when
//! `[storage]` is on) writes it to the database and the queue log, in batches of what has arrived meanwhile (one transaction each). Call handling
//! never waits for it ([`pbx::service::EventSink`] drops and counts what does not fit). While
//! the database refuses (disk full, locked, the PostgreSQL server down or unreachable; its
//! connection is made again at each try), the records go to the spill file beside it
//! ([`crate::spill`]), which is written back, oldest first, as soon as the database takes
//! writes again (tried every second, and at start). Only if the spill file refuses too are
//! they kept in memory, up to `MAX_PENDING` records; the queue log is written regardless.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use pbx::acd::{QueueLogEvent, QueueLogKind};
use pbx::record::{AgentStateChange, CallRecord};
use pbx::recorder::service::FinishedRecording;
use pbx::service::{EventSink, PbxEvent};
use store::{
    AgentStateRow, AttemptRow, CallRow, Location, MessageRow, QueueLog, RecordingRow, Store,
};
use tracing::{error, info, warn};

use crate::config;
use crate::spill::{Spill, SpillCounts};

/// Events the channel holds before [`EventSink`] drops.
const QUEUE: usize = 65_536;
/// Records kept for a database that refuses, before the oldest are dropped.
const MAX_PENDING: usize = 100_000;
/// Events written per transaction at most.
const BATCH: usize = 1024;

/// The running storage thread.
#[derive(Debug)]
pub(crate) struct StorageHandle {
    thread: JoinHandle<()>,
    /// Records waiting for the database.
    pub(crate) pending: Arc<AtomicU64>,
    /// The spill file's counts.
    pub(crate) spill: Arc<SpillCounts>,
}

impl StorageHandle {
    /// Wait for the thread to write what is left (call it after every sender is gone).
    pub(crate) async fn finish(self) {
        let _ = tokio::task::spawn_blocking(move || self.thread.join()).await;
    }
}

/// Where voicemail messages go once stored: their files' root (the recordings directory)
/// and call control's inbox (set once call control runs).
#[derive(Debug, Clone)]
pub(crate) struct Voicemail {
    pub(crate) root: std::path::PathBuf,
    pub(crate) inbox: Arc<std::sync::OnceLock<pbx::service::VoicemailInbox>>,
}

/// A stored message as call control keeps it.
fn message(root: &std::path::Path, m: &MessageRow) -> pbx::Message {
    pbx::Message {
        id: m.id as u64,
        mailbox: m.mailbox.clone(),
        file: root.join(&m.file),
        caller: m.caller.clone(),
        received: UNIX_EPOCH + Duration::from_millis(m.received_ms.max(0) as u64),
        length: Duration::from_millis(m.duration_ms.max(0) as u64),
        new: m.status == "new",
    }
}

/// The voicemail messages the database keeps (none, said in the log, when it cannot be
/// read).
pub(crate) fn load_messages(db: &Location, root: &std::path::Path) -> Vec<pbx::Message> {
    if let Location::Sqlite(path) = db {
        if !path.exists() {
            return Vec::new();
        }
    }
    match db.open_read_only().and_then(|s| s.messages()) {
        Ok(rows) => {
            info!(messages = rows.len(), "voicemail messages loaded");
            rows.iter().map(|m| message(root, m)).collect()
        }
        Err(e) => {
            error!(error = %e, "voicemail messages could not be read: mailboxes look empty until a restart");
            Vec::new()
        }
    }
}

/// Open the database and the queue log (when `cfg` says so) and start the thread.
pub(crate) fn start(
    cfg: Option<&config::Storage>,
    metrics: Arc<web::Metrics>,
    live: Arc<web::Live>,
    voicemail: Voicemail,
) -> anyhow::Result<(EventSink, StorageHandle)> {
    let counts = Arc::new(SpillCounts::default());
    let files = match cfg {
        // The PostgreSQL client blocks on a small runtime of its own, which cannot run inside
        // this async task's: open on a thread of its own (the store then lives on the
        // storage thread).
        Some(cfg) => Some(
            std::thread::scope(|s| s.spawn(|| open(cfg, &counts)).join())
                .map_err(|_| anyhow::anyhow!("opening the call records failed (panicked)"))??,
        ),
        None => None,
    };
    let (tx, rx) = sync_channel(QUEUE);
    let pending = Arc::new(AtomicU64::new(0));
    let counted = pending.clone();
    let thread = std::thread::Builder::new()
        .name("storage".into())
        .spawn(move || run(files, rx, &metrics, &live, &counted, &voicemail))?;
    Ok((
        EventSink::new(tx),
        StorageHandle {
            thread,
            pending,
            spill: counts,
        },
    ))
}

/// The database, the queue log and the spill file. A PostgreSQL server that is down does not
/// stop the start: records wait in the spill file and the connection is tried again every
/// second.
fn open(
    cfg: &config::Storage,
    counts: &Arc<SpillCounts>,
) -> anyhow::Result<(Store, QueueLog, Spill)> {
    let (db, up) = match &cfg.location {
        Location::Sqlite(path) => (Store::open(path)?, true),
        Location::Postgres(url) => {
            let db = Store::connect_later(url)?;
            let up = match db.reconnect() {
                Ok(()) => true,
                Err(e) => {
                    error!(error = %e, spill = %cfg.spill.display(), "the database is not reachable: call records wait in the spill file until it is (tried every second)");
                    false
                }
            };
            (db, up)
        }
    };
    let qlog = QueueLog::open(&cfg.queue_log)?;
    let spill = Spill::open(cfg.spill.clone(), &db, counts.clone())?;
    let calls = if up { db.call_count().ok() } else { None };
    info!(
        database = %cfg.location,
        queue_log = %cfg.queue_log.display(),
        calls,
        "call records ready"
    );
    Ok((db, qlog, spill))
}

fn ms(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

fn dur_ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// A call record as a row.
pub(crate) fn call_row(r: &CallRecord) -> CallRow {
    CallRow {
        call_id: r.call_id,
        sip_call_id: r.sip_call_id.clone(),
        caller: r.caller.clone(),
        caller_name: r.caller_name.clone(),
        dialed: r.dialed.clone(),
        source: r.source.clone(),
        queue: r.queue.clone(),
        agent: r.agent.clone(),
        arrived_ms: ms(r.arrived),
        queued_ms: r.queued.map(ms),
        first_offer_ms: r.first_offer.map(ms),
        answered_ms: r.answered.map(ms),
        ended_ms: ms(r.ended),
        wait_ms: dur_ms(r.wait),
        talk_ms: dur_ms(r.talk),
        hold_ms: dur_ms(r.hold),
        wrap_up_ms: dur_ms(r.wrap_up),
        outcome: r.outcome.as_str().to_owned(),
        hung_up_by: r.hung_up_by.as_str().to_owned(),
        reason: r.reason.clone(),
        recorded: r.recorded,
        overflowed_from: r.overflowed_from.clone(),
        disposition: r.disposition.clone(),
        satisfaction: r.satisfaction,
        variables: r.variables.clone(),
        callback: r.callback,
        segments: r
            .segments
            .iter()
            .map(|s| store::SegmentRow {
                agent: s.agent.clone(),
                started_ms: ms(s.started),
                ended_ms: ms(s.ended),
                end: s.end.clone(),
            })
            .collect(),
        attempts: r
            .attempts
            .iter()
            .map(|a| AttemptRow {
                agent: a.agent.clone(),
                contact: a.contact.clone(),
                started_ms: ms(a.started),
                ended_ms: a.ended.map(ms),
                result: a.result.as_str(),
            })
            .collect(),
    }
}

fn state_row(s: &AgentStateChange) -> AgentStateRow {
    AgentStateRow {
        agent: s.agent.clone(),
        user: s.user.clone(),
        state: s.state.to_owned(),
        reason: s.reason.clone(),
        at_ms: ms(s.at),
    }
}

/// The live board's view of a call record.
fn ended_call(r: &CallRecord) -> web::live::EndedCall {
    web::live::EndedCall {
        call: r.call_id,
        queue: r.queue.clone(),
        overflowed_from: r.overflowed_from.clone(),
        agent: r.agent.clone(),
        outcome: r.outcome.as_str().to_owned(),
        wait: r.wait,
        handle: r.talk + r.hold + r.wrap_up,
    }
}

/// A queue event on the live board: callers entering and leaving queues.
fn board_queue_event(board: &mut web::live::Board, event: &QueueLogEvent, at: SystemTime) {
    let (Some(call), Some(queue)) = (event.call, event.queue.as_deref()) else {
        return;
    };
    match event.kind {
        QueueLogKind::EnterQueue => board.entered(at, call.0, queue),
        QueueLogKind::Connect { .. }
        | QueueLogKind::Abandon { .. }
        | QueueLogKind::ExitWithTimeout { .. }
        | QueueLogKind::ExitEmpty { .. } => board.left(call.0, queue),
        _ => {}
    }
}

fn recording_row(f: &FinishedRecording) -> RecordingRow {
    RecordingRow {
        call_id: f.call,
        file: f.file.to_string_lossy().into_owned(),
        sha256: f.sha256.clone(),
        bytes: f.bytes,
        duration_ms: dur_ms(f.duration),
        finished_ms: ms(f.finished),
    }
}

fn run(
    mut files: Option<(Store, QueueLog, Spill)>,
    rx: Receiver<PbxEvent>,
    metrics: &web::Metrics,
    live: &web::Live,
    pending: &AtomicU64,
    voicemail: &Voicemail,
) {
    let mut recordings: Vec<RecordingRow> = Vec::new();
    let mut messages: Vec<MessageRow> = Vec::new();
    let mut statuses: Vec<(i64, &'static str)> = Vec::new();
    let mut callbacks: Vec<pbx::CallbackRequest> = Vec::new();
    // Messages stored before call control was running (repaired at start), to tell it.
    let mut untold: Vec<pbx::Message> = Vec::new();
    let mut calls: Vec<CallRow> = Vec::new();
    let mut states: Vec<AgentStateRow> = Vec::new();
    let mut lines: Vec<String> = Vec::new();
    let mut failing = false;
    let mut flush = |calls: &mut Vec<CallRow>,
                     states: &mut Vec<AgentStateRow>,
                     lines: &mut Vec<String>,
                     failing: &mut bool,
                     recordings: &mut Vec<RecordingRow>,
                     messages: &mut Vec<MessageRow>,
                     statuses: &mut Vec<(i64, &'static str)>,
                     callbacks: &mut Vec<pbx::CallbackRequest>| {
        write_callbacks(files.as_mut().map(|f| &mut f.0), callbacks);
        write_recordings(files.as_mut().map(|f| &mut f.0), recordings);
        write_messages(
            files.as_mut().map(|f| &mut f.0),
            messages,
            statuses,
            voicemail,
            &mut untold,
        );
        match files.as_mut() {
            Some((db, qlog, spill)) => write(db, qlog, spill, calls, states, lines, failing),
            None => {
                calls.clear();
                states.clear();
                lines.clear();
            }
        }
        pending.store((calls.len() + states.len()) as u64, Ordering::Relaxed);
    };
    loop {
        // Wait for something (or, while the database refuses, for the next try).
        let first = match rx.recv_timeout(Duration::from_secs(1)) {
            Ok(ev) => Some(ev),
            Err(RecvTimeoutError::Timeout) => None,
            Err(RecvTimeoutError::Disconnected) => {
                flush(
                    &mut calls,
                    &mut states,
                    &mut lines,
                    &mut failing,
                    &mut recordings,
                    &mut messages,
                    &mut statuses,
                    &mut callbacks,
                );
                if !callbacks.is_empty() {
                    error!(
                        callbacks = callbacks.len(),
                        "storage stopped with callback changes the database did not take"
                    );
                }
                if !messages.is_empty() || !statuses.is_empty() {
                    error!(
                        messages = messages.len(),
                        statuses = statuses.len(),
                        "storage stopped with voicemail the database did not take"
                    );
                }
                if !calls.is_empty() || !states.is_empty() {
                    error!(
                        calls = calls.len(),
                        states = states.len(),
                        "storage stopped with records the database did not take"
                    );
                }
                return;
            }
        };
        let mut take = |ev: PbxEvent| match ev {
            PbxEvent::Call(r) => {
                metrics.call_ended(r.queue.as_deref().unwrap_or(""), r.outcome.as_str());
                live.update(|b| b.call_ended(r.ended, &ended_call(&r)));
                calls.push(call_row(&r));
            }
            PbxEvent::AgentState(s) => {
                metrics.agent_state(&s.agent, s.state);
                live.update(|b| b.agent_state(s.at, &s.agent, s.state, s.reason.as_deref()));
                states.push(state_row(&s));
            }
            PbxEvent::Queue { event, at } => {
                live.update(|b| board_queue_event(b, &event, at));
                let unix = at.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
                lines.push(event.to_queue_log_line(unix));
            }
            PbxEvent::Recording(f) => match &f.mailbox {
                Some((mailbox, caller)) => messages.push(MessageRow {
                    id: 0,
                    call_id: f.call,
                    mailbox: mailbox.clone(),
                    caller: caller.clone(),
                    file: f.file.to_string_lossy().into_owned(),
                    received_ms: ms(f.finished),
                    duration_ms: dur_ms(f.duration),
                    status: "new".into(),
                }),
                None => recordings.push(recording_row(&f)),
            },
            PbxEvent::Voicemail(pbx::VoicemailRequest::Status { message, deleted }) => {
                statuses.push((message as i64, if deleted { "deleted" } else { "saved" }));
            }
            PbxEvent::Voicemail(_) => {}
            PbxEvent::Callback(c) => callbacks.push(c),
        };
        if let Some(ev) = first {
            take(ev);
            for ev in rx.try_iter().take(BATCH - 1) {
                take(ev);
            }
        }
        flush(
            &mut calls,
            &mut states,
            &mut lines,
            &mut failing,
            &mut recordings,
            &mut messages,
            &mut statuses,
            &mut callbacks,
        );
    }
}

/// The row of a pending callback.
fn callback_row(p: &pbx::PendingCallback) -> store::CallbackRow {
    store::CallbackRow {
        key: p.key.clone(),
        queue: p.queue.clone(),
        number: p.number.clone(),
        name: p.name.clone(),
        dialed: p.dialed.clone(),
        source: p.source.clone(),
        arrived_ms: ms(p.arrived),
        queued_ms: ms(p.queued),
        attempts: p.attempts,
    }
}

/// The pending callbacks the database keeps (none, said in the log, when it cannot be read).
pub(crate) fn load_callbacks(db: &Location) -> Vec<pbx::PendingCallback> {
    if let Location::Sqlite(path) = db {
        if !path.exists() {
            return Vec::new();
        }
    }
    let at = |ms: i64| UNIX_EPOCH + Duration::from_millis(ms.max(0) as u64);
    match db.open_read_only().and_then(|s| s.callbacks()) {
        Ok(rows) => {
            if !rows.is_empty() {
                info!(callbacks = rows.len(), "pending callbacks loaded");
            }
            rows.into_iter()
                .map(|r| pbx::PendingCallback {
                    key: r.key,
                    queue: r.queue,
                    number: r.number,
                    name: r.name,
                    dialed: r.dialed,
                    source: r.source,
                    arrived: at(r.arrived_ms),
                    queued: at(r.queued_ms),
                    attempts: r.attempts,
                })
                .collect()
        }
        Err(e) => {
            error!(error = %e, "pending callbacks could not be read: they wait for a restart");
            Vec::new()
        }
    }
}

/// Pending callbacks to keep or forget, in order, until the database takes them.
fn write_callbacks(db: Option<&mut Store>, ops: &mut Vec<pbx::CallbackRequest>) {
    let Some(db) = db else {
        ops.clear();
        return;
    };
    while let Some(op) = ops.first() {
        let done = match op {
            pbx::CallbackRequest::Save(p) => db.save_callback(&callback_row(p)),
            pbx::CallbackRequest::Done { key } => db.forget_callback(key),
        };
        match done {
            Ok(()) => {
                ops.remove(0);
            }
            Err(e) => {
                warn!(error = %e, pending = ops.len(), "callbacks not kept yet; retrying");
                let extra = ops.len().saturating_sub(MAX_PENDING);
                ops.drain(..extra);
                return;
            }
        }
    }
}

/// Voicemail messages (then call control is told of each) and their status changes: kept
/// until the database takes them.
fn write_messages(
    db: Option<&mut Store>,
    messages: &mut Vec<MessageRow>,
    statuses: &mut Vec<(i64, &'static str)>,
    voicemail: &Voicemail,
    untold: &mut Vec<pbx::Message>,
) {
    if let Some(inbox) = voicemail.inbox.get() {
        for m in untold.drain(..) {
            if !inbox.stored(m) {
                warn!("call control was not told of a voicemail message (it lists it after a restart)");
            }
        }
    }
    let Some(db) = db else {
        if !messages.is_empty() {
            warn!(
                messages = messages.len(),
                "voicemail messages left but no call records database: not kept"
            );
        }
        messages.clear();
        statuses.clear();
        return;
    };
    while let Some(m) = messages.first() {
        match db.insert_message(m) {
            Ok(id) => {
                let mut m = messages.remove(0);
                m.id = id;
                info!(message = id, mailbox = %m.mailbox, seconds = m.duration_ms / 1000, "voicemail message stored");
                match voicemail.inbox.get() {
                    Some(inbox) => {
                        if !inbox.stored(message(&voicemail.root, &m)) {
                            warn!(message = id, "call control was not told of a voicemail message (it lists it after a restart)");
                        }
                    }
                    // Call control is not running yet (a message repaired at start).
                    None => untold.push(message(&voicemail.root, &m)),
                }
            }
            Err(e) => {
                warn!(error = %e, messages = messages.len(), "voicemail messages not stored yet; retrying");
                return;
            }
        }
    }
    while let Some(&(id, status)) = statuses.first() {
        match db.set_message_status(id, status) {
            Ok(()) => {
                statuses.remove(0);
            }
            Err(e) => {
                warn!(error = %e, "voicemail status not stored yet; retrying");
                return;
            }
        }
    }
}

/// Recordings arrive after their call's record: kept until the database takes them (a
/// recording row only names a file that exists anyway, so they are not spilled).
fn write_recordings(db: Option<&mut Store>, recordings: &mut Vec<RecordingRow>) {
    let Some(db) = db else {
        recordings.clear();
        return;
    };
    if recordings.is_empty() {
        return;
    }
    match db.insert_recordings(recordings) {
        Ok(()) => recordings.clear(),
        Err(e) => {
            warn!(error = %e, recordings = recordings.len(), "recordings not registered yet; retrying");
            let extra = recordings.len().saturating_sub(MAX_PENDING);
            recordings.drain(..extra);
        }
    }
}

/// Write what the spill file holds, then what is pending; what the database refused goes to
/// the spill file (or, if that refuses too, stays in memory, bounded).
fn write(
    db: &mut Store,
    qlog: &mut QueueLog,
    spill: &mut Spill,
    calls: &mut Vec<CallRow>,
    states: &mut Vec<AgentStateRow>,
    lines: &mut Vec<String>,
    failing: &mut bool,
) {
    if let Err(e) = qlog.append(lines) {
        warn!(error = %e, lines = lines.len(), "queue log not written");
    }
    lines.clear();
    // What the spill file holds is older: it goes first. While it still holds some, this
    // batch goes behind it.
    let mut wrote = !spill.is_empty();
    let mut refused = spill.drain(db).err();
    if refused.is_none() && spill.is_empty() {
        wrote |= !calls.is_empty() || !states.is_empty();
        match db.insert_calls(calls) {
            Ok(()) => calls.clear(),
            Err(e) => refused = Some(e),
        }
        // A database that just refused would only keep us waiting again.
        if refused.is_none() {
            match db.insert_agent_states(states) {
                Ok(()) => states.clear(),
                Err(e) => refused = Some(e),
            }
        }
    }
    match refused {
        None if wrote && *failing => {
            info!("the database takes records again");
            *failing = false;
        }
        Some(e) if !*failing => {
            error!(error = %e, pending = calls.len(), spilled = spill.records(), "call records not written; retrying every second");
            *failing = true;
        }
        _ => {}
    }
    if calls.is_empty() && states.is_empty() {
        return;
    }
    if spill.append(calls, states).is_ok() {
        calls.clear();
        states.clear();
        return;
    }
    let extra = calls.len().saturating_sub(MAX_PENDING);
    if extra > 0 {
        calls.drain(..extra);
        warn!(
            dropped = extra,
            "call records dropped: the database refused too long"
        );
    }
    let extra_states = states.len().saturating_sub(MAX_PENDING);
    states.drain(..extra_states);
    spill
        .counts()
        .dropped
        .fetch_add((extra + extra_states) as u64, Ordering::Relaxed);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spill;

    fn call(id: u64) -> CallRow {
        CallRow {
            outcome: "answered".into(),
            ..CallRow::new(id, 1_800_000_000_000 + id as i64)
        }
    }

    fn state(at: i64) -> AgentStateRow {
        AgentStateRow {
            agent: "Ada".into(),
            user: "1001".into(),
            state: "ready".into(),
            reason: None,
            at_ms: at,
        }
    }

    #[test]
    fn what_the_database_refuses_waits_in_the_spill_file_and_comes_back_in_order() {
        let d = std::env::temp_dir().join(format!("storage-spill-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        let path = d.join("calls.db");
        let mut db = Store::open(&path).unwrap();
        let mut qlog = QueueLog::open(&d.join("queue_log")).unwrap();
        let counts = Arc::new(SpillCounts::default());
        let mut spill = Spill::open(spill::path_for(&path), &db, counts.clone()).unwrap();
        // A database that refuses every call, at once (a lock would take its busy timeout).
        let other = rusqlite::Connection::open(&path).unwrap();
        other
            .execute_batch(
                "CREATE TRIGGER refuse BEFORE INSERT ON calls
                 BEGIN SELECT RAISE(ABORT, 'refused'); END;",
            )
            .unwrap();
        let (mut calls, mut states, mut lines) = (vec![], vec![state(1)], vec![]);
        let mut failing = false;
        let mut tick = |db: &mut Store, spill: &mut Spill, c: Vec<CallRow>| {
            calls = c;
            write(
                db,
                &mut qlog,
                spill,
                &mut calls,
                &mut states,
                &mut lines,
                &mut failing,
            );
            assert!(
                calls.is_empty() && states.is_empty(),
                "nothing left in memory"
            );
            failing
        };
        assert!(tick(&mut db, &mut spill, vec![call(1)]));
        assert_eq!(
            counts.spilled.load(Ordering::Relaxed),
            2,
            "the call and the state"
        );
        assert!(tick(&mut db, &mut spill, vec![call(2)]));
        assert_eq!(counts.spilled.load(Ordering::Relaxed), 3);
        assert_eq!(db.call_count().unwrap(), 0);
        assert!(spill::path_for(&path).exists());

        // The database takes writes again: the next tick (nothing new) writes the file back.
        other.execute_batch("DROP TRIGGER refuse").unwrap();
        assert!(!tick(&mut db, &mut spill, vec![]));
        assert!(!spill::path_for(&path).exists());
        assert_eq!(counts.spilled.load(Ordering::Relaxed), 0);
        assert_eq!(counts.written.load(Ordering::Relaxed), 3);
        assert!(!tick(&mut db, &mut spill, vec![call(3)]));
        let ids: Vec<u64> = db
            .calls_between(0, i64::MAX)
            .unwrap()
            .iter()
            .map(|c| c.call_id)
            .collect();
        assert_eq!(ids, [1, 2, 3]);
        assert_eq!(db.agent_states("Ada").unwrap(), vec![state(1)]);
        assert_eq!(counts.dropped.load(Ordering::Relaxed), 0);
        let _ = std::fs::remove_dir_all(&d);
    }
}
