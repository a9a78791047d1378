//! The spill file: where call records and agent states go while the database refuses them
//! (disk full, locked, file gone), so that neither an outage nor a crash during one loses a
//! record the storage thread had.
//!
//! One JSON object per line, beside the database (`<database>.spill`): first the file's own
//! line, `{"spill":{"id":"…"}}`, then one line per record, `{"call":{…}}` or `{"state":{…}}`.
//! [`Spill::append`] adds a batch in one write and syncs it to disk ([`File::sync_data`])
//! before the batch counts as kept.
//!
//! Once the database takes writes again, [`Spill::drain`] reads the records back in order and
//! writes them in batches, each in one transaction that also notes in the database how far
//! the file (by its id) has been written ([`Store::insert_replayed`]). Reading starts from
//! there, so a crash between a commit and the file's removal writes nothing twice. The file
//! is removed once everything in it is in the database.
//!
//! A line cut short by a crash mid-append held nothing that was kept (its batch was never
//! synced): it is cut off with a warning when the file is opened. A line that does not read
//! as a record is skipped with a warning and counted as dropped. The file grows to
//! [`MAX_BYTES`] at most; a batch that does not fit is refused and stays with the caller.
//!
//! The storage thread drives it like this, at each write:
//!
//! ```text
//! let mut spill = Spill::open(spill::path_for(&database), &db, counts)?;
//! spill.drain(&mut db)?;              // older records first; Err: the database refuses
//! if spill.is_empty() { db.insert_calls(&calls)? /* … */ }
//! else { spill.append(&calls, &states)? }   // refused, or behind what the file still holds
//! ```

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use store::{AgentStateRow, CallRow, Store, StoreError};
use tracing::{error, info, warn};

/// The spill file grows to this many bytes at most (1 GiB, a few hundred thousand calls).
pub(crate) const MAX_BYTES: u64 = 1 << 30;
/// Records written back per transaction at most.
const BATCH: usize = 1024;
/// How long one [`Spill::drain`] writes back before it leaves the rest for the next call (the
/// storage thread has its queue to take meanwhile).
const DRAIN_BUDGET: Duration = Duration::from_millis(250);

/// Why a batch could not be appended.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub(crate) enum SpillError {
    /// The file would grow beyond its bound.
    #[error("spill file {path} is full ({max} bytes)")]
    Full {
        /// The file.
        path: PathBuf,
        /// Its bound.
        max: u64,
    },
    /// The file could not be read or written (disk full, removed directory).
    #[error("spill file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// What the metrics show of the spill file.
#[derive(Debug, Default)]
pub(crate) struct SpillCounts {
    /// Records in the spill file, not yet in the database.
    pub(crate) spilled: AtomicU64,
    /// Records written from the spill file to the database (total).
    pub(crate) written: AtomicU64,
    /// Records lost: the database refused them and neither the spill file nor the memory
    /// kept for it could hold them, or a line of the file did not read back (total).
    pub(crate) dropped: AtomicU64,
}

/// `<database>.spill`.
pub(crate) fn path_for(database: &Path) -> PathBuf {
    let mut name = database.as_os_str().to_owned();
    name.push(".spill");
    PathBuf::from(name)
}

/// A line as written.
#[derive(Serialize)]
#[serde(rename_all = "snake_case")]
enum LineOut<'a> {
    Spill { id: &'a str },
    Call(&'a CallRow),
    State(&'a AgentStateRow),
}

/// A line as read back.
#[derive(Deserialize)]
#[serde(rename_all = "snake_case")]
enum Line {
    Spill { id: String },
    Call(Box<CallRow>),
    State(AgentStateRow),
}

/// The spill file of one database.
#[derive(Debug)]
pub(crate) struct Spill {
    path: PathBuf,
    max_bytes: u64,
    /// The file's id, while there is a file.
    id: Option<String>,
    /// Where its records start (after its own line).
    start: u64,
    /// Its length in whole lines (bytes).
    len: u64,
    /// Records in it not yet in the database.
    records: u64,
    /// Records of this file written to the database so far.
    written: u64,
    /// The last append failed.
    refusing: bool,
    counts: Arc<SpillCounts>,
}

impl Spill {
    /// The spill file at `path`: what an earlier run left there (cut back to whole lines),
    /// counted against how far `db` says it has been written, or nothing.
    pub(crate) fn open(
        path: PathBuf,
        db: &Store,
        counts: Arc<SpillCounts>,
    ) -> Result<Spill, SpillError> {
        Spill::open_bounded(path, MAX_BYTES, db, counts)
    }

    fn open_bounded(
        path: PathBuf,
        max_bytes: u64,
        db: &Store,
        counts: Arc<SpillCounts>,
    ) -> Result<Spill, SpillError> {
        let mut spill = Spill {
            path,
            max_bytes,
            id: None,
            start: 0,
            len: 0,
            records: 0,
            written: 0,
            refusing: false,
            counts,
        };
        let io = |source| SpillError::Io {
            path: spill.path.clone(),
            source,
        };
        let file = match File::open(&spill.path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(spill),
            Err(e) => return Err(io(e)),
        };
        let mut reader = BufReader::new(file);
        let mut line = Vec::new();
        reader.read_until(b'\n', &mut line).map_err(io)?;
        if !line.ends_with(b"\n") {
            // Not even the file's own line is whole: a crash while its first batch was
            // written, before that batch was synced. Nothing in it was kept.
            warn!(spill = %spill.path.display(), bytes = line.len(), "spill file cut short by a crash before it held a record: removed");
            std::fs::remove_file(&spill.path).map_err(io)?;
            sync_dir(&spill.path);
            return Ok(spill);
        }
        let id = match serde_json::from_slice::<Line>(&line) {
            Ok(Line::Spill { id }) => id,
            _ => {
                // Not a spill file this code wrote: keep it out of the way for a person to
                // look at, and start a new one.
                let aside =
                    PathBuf::from(format!("{}.unreadable-{}", spill.path.display(), unix_ms()));
                std::fs::rename(&spill.path, &aside).map_err(io)?;
                error!(spill = %spill.path.display(), moved_to = %aside.display(), "spill file does not start as one: moved aside, its records are not written");
                return Ok(spill);
            }
        };
        let start = line.len() as u64;
        let done = match db.spill_replayed(&id) {
            Ok(done) => done.max(start),
            Err(e) => {
                warn!(error = %e, "cannot tell how far the spill file was written; counting all of it");
                start
            }
        };
        let mut len = start;
        let mut records = 0;
        let mut torn = 0;
        loop {
            line.clear();
            let n = reader.read_until(b'\n', &mut line).map_err(io)?;
            if n == 0 {
                break;
            }
            if !line.ends_with(b"\n") {
                torn = n;
                break;
            }
            if len >= done {
                records += 1;
            }
            len += n as u64;
        }
        if torn > 0 {
            // A batch cut short by a crash mid-append: it was never synced, so never counted
            // as kept. Cut it off so that the next batch starts on a line of its own.
            warn!(spill = %spill.path.display(), bytes = torn, "a record cut short by a crash at the end of the spill file is skipped");
            let f = OpenOptions::new()
                .write(true)
                .open(&spill.path)
                .map_err(io)?;
            f.set_len(len).and_then(|()| f.sync_data()).map_err(io)?;
        }
        spill.id = Some(id);
        spill.start = start;
        spill.len = len;
        spill.records = records;
        spill.counts.spilled.store(records, Ordering::Relaxed);
        if records > 0 {
            warn!(spill = %spill.path.display(), records, "records of an earlier database outage wait in the spill file");
        }
        Ok(spill)
    }

    /// No records wait in a file (there is none).
    pub(crate) fn is_empty(&self) -> bool {
        self.id.is_none()
    }

    /// Records in the file not yet in the database.
    pub(crate) fn records(&self) -> u64 {
        self.records
    }

    /// The counts the metrics show.
    pub(crate) fn counts(&self) -> &SpillCounts {
        &self.counts
    }

    /// Add `calls` and `states` at the end of the file (creating it) and sync them to disk.
    /// On an error the file is as it was before (the first error of a row is logged).
    pub(crate) fn append(
        &mut self,
        calls: &[CallRow],
        states: &[AgentStateRow],
    ) -> Result<(), SpillError> {
        let appended = self.append_lines(calls, states);
        match &appended {
            Ok(()) if self.refusing => {
                info!(spill = %self.path.display(), "the spill file takes records again");
                self.refusing = false;
            }
            Ok(()) => {}
            Err(e) if !self.refusing => {
                error!(error = %e, records = calls.len() + states.len(), "records not written to the spill file either; keeping them in memory");
                self.refusing = true;
            }
            Err(_) => {}
        }
        appended
    }

    fn append_lines(
        &mut self,
        calls: &[CallRow],
        states: &[AgentStateRow],
    ) -> Result<(), SpillError> {
        if calls.is_empty() && states.is_empty() {
            return Ok(());
        }
        let io = |source| SpillError::Io {
            path: self.path.clone(),
            source,
        };
        let new = self.id.is_none();
        let id = self.id.clone().unwrap_or_else(new_id);
        let mut buf = Vec::with_capacity(512 * (calls.len() + states.len()) + 64);
        let start = if new {
            put_line(&mut buf, &LineOut::Spill { id: &id }).map_err(io)?;
            buf.len() as u64
        } else {
            self.start
        };
        for c in calls {
            put_line(&mut buf, &LineOut::Call(c)).map_err(io)?;
        }
        for s in states {
            put_line(&mut buf, &LineOut::State(s)).map_err(io)?;
        }
        if self.len + buf.len() as u64 > self.max_bytes {
            return Err(SpillError::Full {
                path: self.path.clone(),
                max: self.max_bytes,
            });
        }
        // Opened for each batch: a file removed behind our back is an error here, not
        // records written to nowhere.
        let mut f = OpenOptions::new()
            .append(true)
            .create_new(new)
            .open(&self.path)
            .map_err(io)?;
        let written = (|| {
            // A batch that failed part-way (disk full) may have left a piece: cut it off.
            if f.metadata()?.len() != self.len {
                f.set_len(self.len)?;
            }
            f.write_all(&buf)?;
            f.sync_data()
        })();
        if let Err(e) = written {
            if new {
                let _ = std::fs::remove_file(&self.path);
            } else {
                let _ = f.set_len(self.len);
            }
            return Err(io(e));
        }
        if new {
            sync_dir(&self.path);
            self.id = Some(id);
            self.start = start;
            self.len = 0;
            self.written = 0;
        }
        self.len += buf.len() as u64;
        self.records += (calls.len() + states.len()) as u64;
        self.counts.spilled.store(self.records, Ordering::Relaxed);
        Ok(())
    }

    /// Write what the file holds to `db`, oldest first, in transactions of up to 1024
    /// records, for about a quarter of a second at most; remove the file once all of it is
    /// in. Returns the records written; an error when the database refused (what it had
    /// committed before stays written, and noted as such).
    pub(crate) fn drain(&mut self, db: &mut Store) -> Result<u64, StoreError> {
        self.drain_within(db, DRAIN_BUDGET)
    }

    fn drain_within(&mut self, db: &mut Store, budget: Duration) -> Result<u64, StoreError> {
        let Some(id) = self.id.clone() else {
            return Ok(0);
        };
        let began = Instant::now();
        let mut done = db.spill_replayed(&id)?.max(self.start).min(self.len);
        let mut reader = match File::open(&self.path).and_then(|mut f| {
            f.seek(SeekFrom::Start(done))?;
            Ok(BufReader::new(f.take(self.len - done)))
        }) {
            Ok(r) => r,
            Err(e) => {
                error!(spill = %self.path.display(), error = %e, "spill file cannot be read back");
                return Ok(0);
            }
        };
        let mut written = 0;
        let mut line = Vec::new();
        loop {
            let mut calls = Vec::new();
            let mut states = Vec::new();
            let mut end = done;
            let mut lines = 0;
            let mut skipped = 0;
            while calls.len() + states.len() < BATCH {
                line.clear();
                let n = match reader.read_until(b'\n', &mut line) {
                    Ok(n) => n,
                    Err(e) => {
                        error!(spill = %self.path.display(), error = %e, "spill file cannot be read back");
                        return Ok(written);
                    }
                };
                if n == 0 || !line.ends_with(b"\n") {
                    break;
                }
                end += n as u64;
                lines += 1;
                match serde_json::from_slice::<Line>(&line) {
                    Ok(Line::Call(c)) => calls.push(*c),
                    Ok(Line::State(s)) => states.push(s),
                    Ok(Line::Spill { .. }) | Err(_) => {
                        warn!(spill = %self.path.display(), offset = end - n as u64, "a line of the spill file that is not a record is skipped");
                        skipped += 1;
                    }
                }
            }
            if end == done {
                self.remove(db, &id);
                return Ok(written);
            }
            db.insert_replayed(&id, end, &calls, &states)?;
            let n = (calls.len() + states.len()) as u64;
            done = end;
            written += n;
            self.written += n;
            self.records = self.records.saturating_sub(lines);
            self.counts.written.fetch_add(n, Ordering::Relaxed);
            self.counts.dropped.fetch_add(skipped, Ordering::Relaxed);
            self.counts.spilled.store(self.records, Ordering::Relaxed);
            if began.elapsed() >= budget {
                return Ok(written);
            }
        }
    }

    /// Every record of the file is in the database: remove it, then the database's note
    /// of it (a crash in between leaves a note of a file that is gone, nothing more).
    fn remove(&mut self, db: &mut Store, id: &str) {
        if let Err(e) = std::fs::remove_file(&self.path) {
            if e.kind() != std::io::ErrorKind::NotFound {
                error!(spill = %self.path.display(), error = %e, "spill file written to the database but not removed");
                return;
            }
        }
        sync_dir(&self.path);
        if let Err(e) = db.forget_spill(id) {
            warn!(error = %e, "the database's note of a removed spill file stays");
        }
        info!(spill = %self.path.display(), records = self.written, "spill file written to the database and removed");
        self.id = None;
        self.start = 0;
        self.len = 0;
        self.records = 0;
        self.written = 0;
        self.counts.spilled.store(0, Ordering::Relaxed);
    }
}

impl Drop for Spill {
    fn drop(&mut self) {
        if self.records > 0 {
            warn!(spill = %self.path.display(), records = self.records, "records wait in the spill file for the database: they are written after the next start");
        }
    }
}

/// `line` and its newline at the end of `buf`.
fn put_line(buf: &mut Vec<u8>, line: &LineOut<'_>) -> std::io::Result<()> {
    serde_json::to_writer(&mut *buf, line)?;
    buf.push(b'\n');
    Ok(())
}

/// A new file's id: random, and the time.
fn new_id() -> String {
    format!("{:x}-{:016x}", unix_ms(), rand::random::<u64>())
}

fn unix_ms() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis())
}

/// Make a file's creation or removal durable (best effort: not every file system can).
fn sync_dir(path: &Path) {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(label: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("spill-test-{label}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    fn call(id: u64) -> CallRow {
        CallRow {
            sip_call_id: format!("c{id}@example"),
            caller: "+4930123456".into(),
            dialed: "600".into(),
            source: "trunk:carrier".into(),
            queue: Some("support".into()),
            outcome: "abandoned".into(),
            hung_up_by: "caller".into(),
            reason: "caller hung up".into(),
            attempts: vec![store::AttemptRow {
                agent: "Ada".into(),
                contact: "sip:1001@10.0.0.1".into(),
                started_ms: 1_800_000_000_100,
                ended_ms: Some(1_800_000_000_900),
                result: "refused 486".into(),
            }],
            ..CallRow::new(id, 1_800_000_000_000 + id as i64)
        }
    }

    fn state(at: i64) -> AgentStateRow {
        AgentStateRow {
            agent: "Ada".into(),
            user: "1001".into(),
            state: "not_ready".into(),
            reason: Some("lunch".into()),
            at_ms: at,
        }
    }

    /// Every call stored, by call id.
    fn stored(db: &Store) -> Vec<CallRow> {
        db.calls_between(0, i64::MAX).unwrap()
    }

    #[test]
    fn spilled_records_come_back_in_order_after_a_restart_and_the_file_goes() {
        let d = dir("roundtrip");
        let mut db = Store::open(&d.join("calls.db")).unwrap();
        let path = path_for(&d.join("calls.db"));
        assert_eq!(path, d.join("calls.db.spill"));
        let counts = Arc::new(SpillCounts::default());
        let mut spill = Spill::open(path.clone(), &db, counts.clone()).unwrap();
        assert!(spill.is_empty() && !path.exists());
        spill.append(&[call(1), call(2)], &[state(1)]).unwrap();
        spill.append(&[call(3)], &[state(2), state(3)]).unwrap();
        assert_eq!(spill.records(), 6);
        assert_eq!(counts.spilled.load(Ordering::Relaxed), 6);
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 7, "{text}");
        assert!(lines[0].starts_with(r#"{"spill":{"id":"#), "{text}");
        assert!(lines[1].starts_with(r#"{"call":{"call_id":1,"#), "{text}");
        assert!(
            lines[3].starts_with(r#"{"state":{"agent":"Ada","#),
            "{text}"
        );
        drop(spill);

        // A new start finds them, and writes them when the database takes them.
        let counts = Arc::new(SpillCounts::default());
        let mut spill = Spill::open(path.clone(), &db, counts.clone()).unwrap();
        assert_eq!(spill.records(), 6);
        assert_eq!(counts.spilled.load(Ordering::Relaxed), 6);
        assert_eq!(spill.drain(&mut db).unwrap(), 6);
        assert!(spill.is_empty() && !path.exists());
        assert_eq!(counts.spilled.load(Ordering::Relaxed), 0);
        assert_eq!(counts.written.load(Ordering::Relaxed), 6);
        assert_eq!(stored(&db), vec![call(1), call(2), call(3)]);
        assert_eq!(
            db.agent_states("Ada").unwrap(),
            vec![state(1), state(2), state(3)]
        );
        // Nothing left: draining again writes nothing, and a new outage starts a new file.
        assert_eq!(spill.drain(&mut db).unwrap(), 0);
        spill.append(&[call(4)], &[]).unwrap();
        assert_eq!(spill.drain(&mut db).unwrap(), 1);
        assert_eq!(db.call_count().unwrap(), 4);
        assert_eq!(db.spill_replayed("anything").unwrap(), 0);
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn a_record_torn_by_a_crash_mid_append_is_skipped_and_the_next_batch_reads_back() {
        let d = dir("torn");
        let mut db = Store::open(&d.join("calls.db")).unwrap();
        let path = path_for(&d.join("calls.db"));
        let counts = Arc::new(SpillCounts::default());
        let mut spill = Spill::open(path.clone(), &db, counts.clone()).unwrap();
        spill.append(&[call(1), call(2)], &[]).unwrap();
        drop(spill);
        // SIGKILL in the middle of the next append.
        let whole = std::fs::metadata(&path).unwrap().len();
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(br#"{"call":{"call_id":3,"sip_call_id":"c3@ex"#)
            .unwrap();
        drop(f);

        let mut spill = Spill::open(path.clone(), &db, counts.clone()).unwrap();
        assert_eq!(spill.records(), 2);
        assert_eq!(std::fs::metadata(&path).unwrap().len(), whole, "cut back");
        spill.append(&[call(4)], &[]).unwrap();
        assert_eq!(spill.drain(&mut db).unwrap(), 3);
        assert_eq!(stored(&db), vec![call(1), call(2), call(4)]);
        assert!(!path.exists());

        // A file whose own line was torn held nothing: it goes.
        std::fs::write(&path, br#"{"spill":{"id":"#).unwrap();
        let spill = Spill::open(path.clone(), &db, counts.clone()).unwrap();
        assert!(spill.is_empty() && !path.exists());
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn a_crash_after_a_commit_writes_nothing_twice() {
        let d = dir("idempotent");
        let mut db = Store::open(&d.join("calls.db")).unwrap();
        let path = path_for(&d.join("calls.db"));
        let counts = Arc::new(SpillCounts::default());
        let mut spill = Spill::open(path.clone(), &db, counts.clone()).unwrap();
        let calls: Vec<CallRow> = (1..=2500).map(call).collect();
        spill.append(&calls[..1000], &[state(1)]).unwrap();
        spill.append(&calls[1000..], &[state(2)]).unwrap();
        // One transaction (1024 records), then a crash before anything else.
        assert_eq!(spill.drain_within(&mut db, Duration::ZERO).unwrap(), 1024);
        drop(spill);
        let mut spill = Spill::open(path.clone(), &db, counts.clone()).unwrap();
        assert_eq!(spill.records(), 2502 - 1024);
        assert_eq!(spill.drain_within(&mut db, Duration::ZERO).unwrap(), 1024);
        // The last transaction commits; the crash comes before the file is removed.
        assert_eq!(spill.drain_within(&mut db, Duration::ZERO).unwrap(), 454);
        assert!(path.exists());
        drop(spill);
        let mut spill = Spill::open(path.clone(), &db, counts.clone()).unwrap();
        assert_eq!(spill.records(), 0);
        assert!(!spill.is_empty());
        assert_eq!(spill.drain(&mut db).unwrap(), 0);
        assert!(spill.is_empty() && !path.exists());
        assert_eq!(stored(&db), calls, "each call once, in order");
        assert_eq!(db.agent_states("Ada").unwrap(), vec![state(1), state(2)]);
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn a_line_that_is_not_a_record_is_skipped_and_counted() {
        let d = dir("garbled");
        let mut db = Store::open(&d.join("calls.db")).unwrap();
        let path = path_for(&d.join("calls.db"));
        let counts = Arc::new(SpillCounts::default());
        let mut spill = Spill::open(path.clone(), &db, counts.clone()).unwrap();
        spill.append(&[call(1)], &[]).unwrap();
        drop(spill);
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(b"{\"call\":\"not a call\"}\n").unwrap();
        drop(f);
        let mut spill = Spill::open(path.clone(), &db, counts.clone()).unwrap();
        spill.append(&[call(2)], &[]).unwrap();
        assert_eq!(spill.records(), 3);
        assert_eq!(spill.drain(&mut db).unwrap(), 2);
        assert_eq!(stored(&db), vec![call(1), call(2)]);
        assert_eq!(counts.dropped.load(Ordering::Relaxed), 1);
        assert_eq!(counts.spilled.load(Ordering::Relaxed), 0);

        // A file that is not a spill file is not read, and not lost either.
        std::fs::write(&path, "hello\n").unwrap();
        let spill = Spill::open(path.clone(), &db, counts.clone()).unwrap();
        assert!(spill.is_empty() && !path.exists());
        let aside: Vec<_> = std::fs::read_dir(&d)
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| {
                e.file_name()
                    .to_string_lossy()
                    .contains(".spill.unreadable-")
            })
            .collect();
        assert_eq!(aside.len(), 1);
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn a_full_spill_file_refuses_the_batch_and_stays_as_it_was() {
        let d = dir("full");
        let mut db = Store::open(&d.join("calls.db")).unwrap();
        let path = path_for(&d.join("calls.db"));
        let counts = Arc::new(SpillCounts::default());
        let mut spill = Spill::open_bounded(path.clone(), 2_000, &db, counts.clone()).unwrap();
        spill.append(&[call(1)], &[]).unwrap();
        let len = std::fs::metadata(&path).unwrap().len();
        let many: Vec<CallRow> = (2..10).map(call).collect();
        assert!(matches!(
            spill.append(&many, &[]),
            Err(SpillError::Full { max: 2_000, .. })
        ));
        assert_eq!(std::fs::metadata(&path).unwrap().len(), len);
        assert_eq!(spill.records(), 1);
        assert_eq!(spill.drain(&mut db).unwrap(), 1);
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn a_spill_file_removed_behind_its_back_is_an_error_not_a_silent_loss() {
        let d = dir("removed");
        let db = Store::open(&d.join("calls.db")).unwrap();
        let path = path_for(&d.join("calls.db"));
        let counts = Arc::new(SpillCounts::default());
        let mut spill = Spill::open(path.clone(), &db, counts).unwrap();
        spill.append(&[call(1)], &[]).unwrap();
        std::fs::remove_file(&path).unwrap();
        assert!(matches!(
            spill.append(&[call(2)], &[]),
            Err(SpillError::Io { .. })
        ));
        let _ = std::fs::remove_dir_all(&d);
    }
}
