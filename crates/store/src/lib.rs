//! Where Switchboard keeps what happened: one row per call (with a row per phone rung), agent
//! state changes, and the queue log in Asterisk's `queue_log` file format.
//!
//! SQLite by default: one file, write-ahead log, `synchronous = NORMAL` (a committed
//! transaction survives the process being killed; only a power cut can take the last few).
//! One writer ([`Store`], owned by the storage task), any number of readers
//! ([`Store::open_read_only`]) at the same time.
//!
//! PostgreSQL when an admin gives a URL ([`Store::connect`]): the same tables in PostgreSQL
//! types, created if missing, over the blocking `postgres` client (so call it from a thread
//! of its own or `spawn_blocking`, never from an async task). A connection that drops is made
//! again at the next call. [`Location`] names either, so that callers need not care which.
//!
//! ```
//! # let dir = std::env::temp_dir().join(format!("store-doc-{}", std::process::id()));
//! # std::fs::create_dir_all(&dir).unwrap();
//! use store::{CallRow, Store};
//! let mut s = Store::open(&dir.join("calls.db")).unwrap();
//! let mut call = CallRow::new(7, 1_700_000_000_000);
//! call.outcome = "answered".into();
//! s.insert_calls(&[call]).unwrap();
//! assert_eq!(s.call(7).unwrap().unwrap().outcome, "answered");
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// `$body` with `$db` bound to the backend of `$store` (shared).
macro_rules! on_backend {
    ($store:expr, $db:ident => $body:expr) => {
        match &$store.backend {
            crate::Backend::Sqlite($db) => $body,
            crate::Backend::Postgres($db) => $body,
        }
    };
}

/// `$body` with `$db` bound to the backend of `$store` (mutable).
macro_rules! on_backend_mut {
    ($store:expr, $db:ident => $body:expr) => {
        match &mut $store.backend {
            crate::Backend::Sqlite($db) => $body,
            crate::Backend::Postgres($db) => $body,
        }
    };
}

mod callbacks;
mod occupancy;
mod pg;
pub mod report;
mod review;
mod sqlite;
mod voicemail;
pub use callbacks::CallbackRow;
pub use occupancy::AgentTime;
pub use report::{AgentInterval, QueueInterval};
pub use review::{AuditRow, CallFilter, EndedRow, FoundCall, RecordingRow, ReviewRow};
pub use voicemail::MessageRow;

/// What can go wrong with storage.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The database refused (cannot open, disk full, locked too long, corrupt).
    #[error("database {path}: {source}")]
    Database {
        /// The database file.
        path: PathBuf,
        /// Why.
        source: rusqlite::Error,
    },
    /// The database file was removed or replaced while open: what was written to it would
    /// be lost with it (SQLite would go on writing to the removed file), so it is refused.
    #[error("database {path} was removed or replaced while open (writes refused until restart)")]
    Moved {
        /// The database file.
        path: PathBuf,
    },
    /// The PostgreSQL server refused or could not be reached (the URL's password is never
    /// shown: `target` is host, port, database and user only).
    #[error("PostgreSQL {target}: {reason}", reason = pg::reason(source))]
    Postgres {
        /// Where: host, port, database, user.
        target: String,
        /// Why.
        source: postgres::Error,
    },
    /// The PostgreSQL URL could not be read (it is not shown: it may hold a password).
    #[error("the PostgreSQL URL cannot be read: {reason}")]
    Url {
        /// Why, without the URL.
        reason: String,
    },
    /// A file (the queue log, a directory) could not be written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// One phone rung for a call.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct AttemptRow {
    /// The agent's name (or the called user).
    pub agent: String,
    /// The phone's contact.
    pub contact: String,
    /// When it started ringing (Unix milliseconds).
    pub started_ms: i64,
    /// When it stopped.
    pub ended_ms: Option<i64>,
    /// `answered`, `cancelled`, `refused 486`, …
    pub result: String,
}

/// Who talked for the center during part of a call: the call is transferred or taken over
/// from one agent to the next.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct SegmentRow {
    /// The agent (or user) on the center's side.
    pub agent: String,
    /// From (Unix milliseconds).
    pub started_ms: i64,
    /// To.
    pub ended_ms: i64,
    /// How their part ended: `transferred`, `taken over`, or the call's end reason.
    pub end: String,
}

/// One call. Times are Unix milliseconds; durations milliseconds.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct CallRow {
    /// The server's id for the call (unique per server start; see `sip_call_id`).
    pub call_id: u64,
    /// The caller's SIP Call-ID.
    pub sip_call_id: String,
    /// The caller's number.
    pub caller: String,
    /// The caller's display name.
    pub caller_name: Option<String>,
    /// The number dialled.
    pub dialed: String,
    /// `trunk:NAME`, `user:NAME` or `anonymous`.
    pub source: String,
    /// The queue, for queue calls.
    pub queue: Option<String>,
    /// Who answered.
    pub agent: Option<String>,
    /// Arrival.
    pub arrived_ms: i64,
    /// Joined the queue.
    pub queued_ms: Option<i64>,
    /// First phone rang.
    pub first_offer_ms: Option<i64>,
    /// Answered.
    pub answered_ms: Option<i64>,
    /// Ended.
    pub ended_ms: i64,
    /// Arrival to answer (or to the end).
    pub wait_ms: i64,
    /// Answer to the end.
    pub talk_ms: i64,
    /// On hold.
    pub hold_ms: i64,
    /// The agent's wrap-up after it.
    pub wrap_up_ms: i64,
    /// `answered`, `abandoned`, `overflowed`, `timed_out`, `no_agents`, …
    pub outcome: String,
    /// `caller`, `agent` or `system`.
    pub hung_up_by: String,
    /// The reason in words.
    pub reason: String,
    /// Recorded.
    pub recorded: bool,
    /// The queue the call was in first, when it overflowed to `queue`.
    #[serde(default)]
    pub overflowed_from: Option<String>,
    /// The agent's disposition code (wrap-up result), when one was given.
    #[serde(default)]
    pub disposition: Option<String>,
    /// The caller's satisfaction score from a post-call survey.
    #[serde(default)]
    pub satisfaction: Option<u8>,
    /// What IVR menus collected (an account number, a language); read back by name.
    #[serde(default)]
    pub variables: Vec<(String, String)>,
    /// The caller asked to be called back.
    #[serde(default)]
    pub callback: bool,
    /// Who talked for the center, in order (one per agent a transfer or take-over handed
    /// the call to); empty for calls nobody answered.
    #[serde(default)]
    pub segments: Vec<SegmentRow>,
    /// Every phone rung.
    pub attempts: Vec<AttemptRow>,
}

impl CallRow {
    /// A call `call_id` that arrived and ended at `at_ms`, everything else empty.
    pub fn new(call_id: u64, at_ms: i64) -> CallRow {
        CallRow {
            call_id,
            arrived_ms: at_ms,
            ended_ms: at_ms,
            ..CallRow::default()
        }
    }
}

/// An agent's state from `at_ms` on.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct AgentStateRow {
    /// The agent's name.
    pub agent: String,
    /// The agent's SIP user.
    pub user: String,
    /// `logged_out`, `ready`, `not_ready`, `ringing`, `busy`, `wrap_up`.
    pub state: String,
    /// The pause reason.
    pub reason: Option<String>,
    /// Since when (Unix milliseconds).
    pub at_ms: i64,
}

/// The database of call records: a SQLite file or a PostgreSQL server, the same methods on
/// either.
#[derive(Debug)]
pub struct Store {
    backend: Backend,
}

#[derive(Debug)]
enum Backend {
    Sqlite(sqlite::Sqlite),
    // Boxed: its connection settings are large, and a store is moved between threads.
    Postgres(Box<pg::Postgres>),
}

impl Store {
    /// Open (creating it and its directory if needed) the SQLite database at `path` for
    /// writing.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        Ok(Store {
            backend: Backend::Sqlite(sqlite::Sqlite::open(path)?),
        })
    }

    /// Open an existing SQLite database for reading (reports, tests) beside the writer.
    pub fn open_read_only(path: &Path) -> Result<Store, StoreError> {
        Ok(Store {
            backend: Backend::Sqlite(sqlite::Sqlite::open_read_only(path)?),
        })
    }

    /// Connect to the PostgreSQL server at `url` (`postgres://user:pass@host:port/db` or
    /// `host=… user=… dbname=…`), creating the tables if missing. Blocking: not from an
    /// async task.
    pub fn connect(url: &str) -> Result<Store, StoreError> {
        let s = Store::connect_later(url)?;
        s.reconnect()?;
        Ok(s)
    }

    /// A PostgreSQL store that connects at its first use (and again after the connection
    /// drops), for a writer that must start while the server is down: only the URL is read
    /// now.
    pub fn connect_later(url: &str) -> Result<Store, StoreError> {
        Ok(Store {
            backend: Backend::Postgres(Box::new(pg::Postgres::new(url, false)?)),
        })
    }

    /// Connect to PostgreSQL for reading only (every transaction is read-only; the tables
    /// are not created).
    pub fn connect_read_only(url: &str) -> Result<Store, StoreError> {
        let s = Store {
            backend: Backend::Postgres(Box::new(pg::Postgres::new(url, true)?)),
        };
        s.reconnect()?;
        Ok(s)
    }

    /// Make sure the store is reachable: for PostgreSQL, connect now unless connected (a
    /// SQLite file is always there once open).
    pub fn reconnect(&self) -> Result<(), StoreError> {
        match &self.backend {
            Backend::Sqlite(_) => Ok(()),
            Backend::Postgres(db) => db.ensure_connected(),
        }
    }

    /// Where it is, for logs: the file, or the PostgreSQL server without the password.
    pub fn describe(&self) -> String {
        match &self.backend {
            Backend::Sqlite(db) => db.path().display().to_string(),
            Backend::Postgres(db) => format!("postgresql {}", db.target()),
        }
    }

    /// Write calls (and their ring attempts) in one transaction.
    pub fn insert_calls(&mut self, calls: &[CallRow]) -> Result<(), StoreError> {
        on_backend_mut!(self, db => db.insert_calls(calls))
    }

    /// Write agent state changes in one transaction.
    pub fn insert_agent_states(&mut self, rows: &[AgentStateRow]) -> Result<(), StoreError> {
        on_backend_mut!(self, db => db.insert_agent_states(rows))
    }

    /// How far (in bytes) the spill file named `file` has been written to the database: 0 for
    /// a file it has not seen.
    pub fn spill_replayed(&self, file: &str) -> Result<u64, StoreError> {
        on_backend!(self, db => db.spill_replayed(file))
    }

    /// Write calls and agent states read back from the spill file named `file`, and note that
    /// it has been written up to byte `offset`, in one transaction: after a crash the
    /// database has either all of it or none, so reading the file again from
    /// [`Store::spill_replayed`] on never writes a record twice.
    pub fn insert_replayed(
        &mut self,
        file: &str,
        offset: u64,
        calls: &[CallRow],
        states: &[AgentStateRow],
    ) -> Result<(), StoreError> {
        on_backend_mut!(self, db => db.insert_replayed(file, offset, calls, states))
    }

    /// Forget the spill file named `file` (once it is gone).
    pub fn forget_spill(&mut self, file: &str) -> Result<(), StoreError> {
        on_backend_mut!(self, db => db.forget_spill(file))
    }

    /// Calls stored.
    pub fn call_count(&self) -> Result<u64, StoreError> {
        on_backend!(self, db => db.call_count())
    }

    /// The latest stored call with this id.
    pub fn call(&self, call_id: u64) -> Result<Option<CallRow>, StoreError> {
        on_backend!(self, db => db.call(call_id))
    }

    /// Calls that arrived in `[from_ms, to_ms)`, oldest first.
    pub fn calls_between(&self, from_ms: i64, to_ms: i64) -> Result<Vec<CallRow>, StoreError> {
        on_backend!(self, db => db.calls_between(from_ms, to_ms))
    }

    /// An agent's state changes, oldest first.
    pub fn agent_states(&self, agent: &str) -> Result<Vec<AgentStateRow>, StoreError> {
        on_backend!(self, db => db.agent_states(agent))
    }
}

/// Where the call records are: what an admin's `[storage]` names, so that the server, the
/// web API and the report command open the same database the same way.
#[derive(Clone, PartialEq, Eq)]
pub enum Location {
    /// A SQLite database file.
    Sqlite(PathBuf),
    /// A PostgreSQL server, by URL or key-value connection string.
    Postgres(String),
}

impl Location {
    /// Open for writing (creating the file or the tables if missing).
    pub fn open(&self) -> Result<Store, StoreError> {
        match self {
            Location::Sqlite(path) => Store::open(path),
            Location::Postgres(url) => Store::connect(url),
        }
    }

    /// Open for reading only.
    pub fn open_read_only(&self) -> Result<Store, StoreError> {
        match self {
            Location::Sqlite(path) => Store::open_read_only(path),
            Location::Postgres(url) => Store::connect_read_only(url),
        }
    }
}

/// The path, or the PostgreSQL server without the password.
impl std::fmt::Display for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Location::Sqlite(path) => write!(f, "{}", path.display()),
            Location::Postgres(url) => write!(f, "postgresql {}", pg::describe(url)),
        }
    }
}

/// As [`Display`](std::fmt::Display): a URL's password never reaches a log.
impl std::fmt::Debug for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Location::Sqlite(path) => f.debug_tuple("Sqlite").field(path).finish(),
            Location::Postgres(url) => f.debug_tuple("Postgres").field(&pg::describe(url)).finish(),
        }
    }
}

/// The queue log file, in Asterisk's `queue_log` format: one event per line, appended.
#[derive(Debug)]
pub struct QueueLog {
    file: File,
    path: PathBuf,
}

impl QueueLog {
    /// Open `path` for appending (creating it and its directory).
    pub fn open(path: &Path) -> Result<QueueLog, StoreError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|source| StoreError::Io {
                path: dir.to_owned(),
                source,
            })?;
        }
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|source| StoreError::Io {
                path: path.to_owned(),
                source,
            })?;
        Ok(QueueLog {
            file,
            path: path.to_owned(),
        })
    }

    /// Append lines (each without its newline) in one write.
    pub fn append(&mut self, lines: &[String]) -> Result<(), StoreError> {
        if lines.is_empty() {
            return Ok(());
        }
        let mut buf = String::with_capacity(lines.iter().map(|l| l.len() + 1).sum());
        for l in lines {
            buf.push_str(l);
            buf.push('\n');
        }
        self.file
            .write_all(buf.as_bytes())
            .map_err(|source| StoreError::Io {
                path: self.path.clone(),
                source,
            })
    }
}

/// A call's variables as stored: a JSON object (`NULL` when there are none).
pub(crate) fn variables_to(vars: &[(String, String)]) -> Option<String> {
    if vars.is_empty() {
        return None;
    }
    let map: serde_json::Map<String, serde_json::Value> = vars
        .iter()
        .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
        .collect();
    Some(serde_json::Value::Object(map).to_string())
}

/// A call's segments as stored: a JSON array (`NULL` when there are none).
pub(crate) fn segments_to(segments: &[SegmentRow]) -> Option<String> {
    (!segments.is_empty()).then(|| serde_json::to_string(segments).unwrap_or_default())
}

/// A call's segments from the stored JSON array (anything else reads as none).
pub(crate) fn segments_from(text: Option<&str>) -> Vec<SegmentRow> {
    text.and_then(|t| serde_json::from_str(t).ok())
        .unwrap_or_default()
}

/// A call's variables from the stored JSON object, by name (anything that is not an object
/// of strings reads as none).
pub(crate) fn variables_from(text: Option<&str>) -> Vec<(String, String)> {
    let Some(Ok(serde_json::Value::Object(map))) = text.map(serde_json::from_str) else {
        return Vec::new();
    };
    map.into_iter()
        .filter_map(|(k, v)| match v {
            serde_json::Value::String(s) => Some((k, s)),
            _ => None,
        })
        .collect()
}
