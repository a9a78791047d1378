//! What quality review and supervision add to the call records: the finished recording of a
//! call (its file and SHA-256), reviewers' scores and comments, and the audit log of who
//! looked at which call or recording, or changed an agent's state.
//!
//! A call is found by its call id (the `call_id` of [`crate::CallRow`]); the recording and
//! the reviews are kept in their own tables because they arrive after the call record (the
//! recorder finishes its files after the call ended) or long after it (a review).

use rusqlite::{params, OptionalExtension};

use crate::sqlite::Sqlite;
use crate::{CallRow, Store, StoreError};

pub(crate) const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS recordings (
    call_id INTEGER PRIMARY KEY,
    file TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    bytes INTEGER NOT NULL,
    duration_ms INTEGER NOT NULL,
    finished_ms INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS reviews (
    id INTEGER PRIMARY KEY,
    call_id INTEGER NOT NULL,
    reviewer TEXT NOT NULL,
    score INTEGER NOT NULL,
    comment TEXT NOT NULL,
    at_ms INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS reviews_call ON reviews (call_id, at_ms);
CREATE TABLE IF NOT EXISTS audit (
    id INTEGER PRIMARY KEY,
    at_ms INTEGER NOT NULL,
    login TEXT NOT NULL,
    action TEXT NOT NULL,
    call_id INTEGER,
    detail TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS audit_at ON audit (at_ms);
";

/// A finished recording of a call.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RecordingRow {
    /// The call.
    pub call_id: u64,
    /// The WAV file, relative to the recordings directory.
    pub file: String,
    /// SHA-256 of the finished file (lower-case hex).
    pub sha256: String,
    /// File size.
    pub bytes: u64,
    /// Audio length (milliseconds).
    pub duration_ms: i64,
    /// When the file was finished (Unix milliseconds).
    pub finished_ms: i64,
}

/// A reviewer's score of a call.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ReviewRow {
    /// The call.
    pub call_id: u64,
    /// Who reviewed it (their login).
    pub reviewer: String,
    /// Score, 0–100.
    pub score: u8,
    /// Free text.
    pub comment: String,
    /// When (Unix milliseconds).
    pub at_ms: i64,
}

/// One line of the audit log.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AuditRow {
    /// When (Unix milliseconds).
    pub at_ms: i64,
    /// Who (their login).
    pub login: String,
    /// What: `list_recordings`, `play_recording`, `review`, `agent_state`, …
    pub action: String,
    /// The call concerned, if one.
    pub call_id: Option<u64>,
    /// The rest: the search, the agent and state, the score.
    pub detail: String,
}

/// Which calls a search returns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallFilter {
    /// Arrived at or after (Unix milliseconds).
    pub from_ms: i64,
    /// Arrived before (Unix milliseconds).
    pub to_ms: i64,
    /// Only this queue.
    pub queue: Option<String>,
    /// Only calls this agent answered.
    pub agent: Option<String>,
    /// Only this outcome (`answered`, `abandoned`, …).
    pub outcome: Option<String>,
    /// Only calls with a finished recording.
    pub recorded: bool,
    /// At most this many, newest first.
    pub limit: u32,
}

impl Default for CallFilter {
    fn default() -> Self {
        CallFilter {
            from_ms: 0,
            to_ms: i64::MAX,
            queue: None,
            agent: None,
            outcome: None,
            recorded: false,
            limit: 100,
        }
    }
}

/// A call found by a search, with its recording if it has one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FoundCall {
    /// The call record (without ring attempts; [`Store::call`] has them).
    pub call: CallRow,
    /// Its finished recording.
    pub recording: Option<RecordingRow>,
}

fn recording_row(r: &rusqlite::Row<'_>, at: usize) -> rusqlite::Result<RecordingRow> {
    Ok(RecordingRow {
        call_id: r.get::<_, i64>(at)? as u64,
        file: r.get(at + 1)?,
        sha256: r.get(at + 2)?,
        bytes: r.get::<_, i64>(at + 3)? as u64,
        duration_ms: r.get(at + 4)?,
        finished_ms: r.get(at + 5)?,
    })
}

impl Store {
    /// Write finished recordings (a second one for the same call replaces the first).
    pub fn insert_recordings(&mut self, rows: &[RecordingRow]) -> Result<(), StoreError> {
        on_backend_mut!(self, db => db.insert_recordings(rows))
    }

    /// The finished recording of a call.
    pub fn recording(&self, call_id: u64) -> Result<Option<RecordingRow>, StoreError> {
        on_backend!(self, db => db.recording(call_id))
    }

    /// Calls matching `filter`, newest first, each with its recording.
    pub fn search_calls(&self, filter: &CallFilter) -> Result<Vec<FoundCall>, StoreError> {
        on_backend!(self, db => db.search_calls(filter))
    }

    /// Save a reviewer's score and comment.
    pub fn insert_review(&mut self, review: &ReviewRow) -> Result<(), StoreError> {
        on_backend_mut!(self, db => db.insert_review(review))
    }

    /// The reviews of a call, oldest first.
    pub fn reviews(&self, call_id: u64) -> Result<Vec<ReviewRow>, StoreError> {
        on_backend!(self, db => db.reviews(call_id))
    }

    /// Set the agent's disposition code of a call (replacing one given before); `false`
    /// when there is no such call.
    pub fn set_disposition(&mut self, call_id: u64, code: &str) -> Result<bool, StoreError> {
        on_backend_mut!(self, db => db.set_disposition(call_id, code))
    }

    /// Append to the audit log (committed before this returns).
    pub fn audit(&mut self, row: &AuditRow) -> Result<(), StoreError> {
        on_backend_mut!(self, db => db.audit(row))
    }

    /// The audit log in `[from_ms, to_ms)`, oldest first, at most `limit` lines.
    pub fn audit_log(
        &self,
        from_ms: i64,
        to_ms: i64,
        limit: u32,
    ) -> Result<Vec<AuditRow>, StoreError> {
        on_backend!(self, db => db.audit_log(from_ms, to_ms, limit))
    }
}

impl Sqlite {
    /// Write finished recordings (a second one for the same call replaces the first).
    pub(crate) fn insert_recordings(&mut self, rows: &[RecordingRow]) -> Result<(), StoreError> {
        self.in_transaction(|tx| {
            let mut stmt = tx.prepare_cached(
                "INSERT OR REPLACE INTO recordings
                    (call_id, file, sha256, bytes, duration_ms, finished_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )?;
            for r in rows {
                stmt.execute(params![
                    r.call_id as i64,
                    r.file,
                    r.sha256,
                    r.bytes as i64,
                    r.duration_ms,
                    r.finished_ms
                ])?;
            }
            Ok(())
        })
    }

    /// The finished recording of a call.
    pub(crate) fn recording(&self, call_id: u64) -> Result<Option<RecordingRow>, StoreError> {
        self.conn
            .query_row(
                "SELECT call_id, file, sha256, bytes, duration_ms, finished_ms
                 FROM recordings WHERE call_id = ?1",
                [call_id as i64],
                |r| recording_row(r, 0),
            )
            .optional()
            .map_err(|e| self.err(e))
    }

    /// Calls matching `filter`, newest first, each with its recording.
    pub(crate) fn search_calls(&self, filter: &CallFilter) -> Result<Vec<FoundCall>, StoreError> {
        let sql = format!(
            "{} WHERE arrived_ms >= ?1 AND arrived_ms < ?2
                AND (?3 IS NULL OR queue = ?3)
                AND (?4 IS NULL OR agent = ?4)
                AND (?5 IS NULL OR outcome = ?5)
                AND (?6 = 0 OR call_id IN (SELECT call_id FROM recordings))
             ORDER BY arrived_ms DESC, id DESC LIMIT ?7",
            crate::sqlite::SELECT_CALL
        );
        let calls = self.rows(
            &sql,
            params![
                filter.from_ms,
                filter.to_ms,
                filter.queue,
                filter.agent,
                filter.outcome,
                filter.recorded,
                i64::from(filter.limit)
            ],
            crate::sqlite::call_row,
        )?;
        let mut out = Vec::with_capacity(calls.len());
        for call in calls {
            let recording = self.recording(call.call_id)?;
            out.push(FoundCall { call, recording });
        }
        Ok(out)
    }

    /// Save a reviewer's score and comment.
    pub(crate) fn insert_review(&mut self, review: &ReviewRow) -> Result<(), StoreError> {
        self.in_transaction(|tx| {
            tx.execute(
                "INSERT INTO reviews (call_id, reviewer, score, comment, at_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                params![
                    review.call_id as i64,
                    review.reviewer,
                    review.score,
                    review.comment,
                    review.at_ms
                ],
            )?;
            Ok(())
        })
    }

    /// Set a call's disposition code; whether the call exists.
    pub(crate) fn set_disposition(&mut self, call_id: u64, code: &str) -> Result<bool, StoreError> {
        let mut found = false;
        self.in_transaction(|tx| {
            found = tx.execute(
                "UPDATE calls SET disposition = ?1 WHERE call_id = ?2",
                params![code, call_id as i64],
            )? > 0;
            Ok(())
        })?;
        Ok(found)
    }

    /// The reviews of a call, oldest first.
    pub(crate) fn reviews(&self, call_id: u64) -> Result<Vec<ReviewRow>, StoreError> {
        self.rows(
            "SELECT call_id, reviewer, score, comment, at_ms FROM reviews
             WHERE call_id = ?1 ORDER BY at_ms, id",
            [call_id as i64],
            |r| {
                Ok(ReviewRow {
                    call_id: r.get::<_, i64>(0)? as u64,
                    reviewer: r.get(1)?,
                    score: r.get(2)?,
                    comment: r.get(3)?,
                    at_ms: r.get(4)?,
                })
            },
        )
    }

    /// Append to the audit log (committed before this returns).
    pub(crate) fn audit(&mut self, row: &AuditRow) -> Result<(), StoreError> {
        self.in_transaction(|tx| {
            tx.execute(
                "INSERT INTO audit (at_ms, login, action, call_id, detail)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                params![
                    row.at_ms,
                    row.login,
                    row.action,
                    row.call_id.map(|c| c as i64),
                    row.detail
                ],
            )?;
            Ok(())
        })
    }

    /// The audit log in `[from_ms, to_ms)`, oldest first, at most `limit` lines.
    pub(crate) fn audit_log(
        &self,
        from_ms: i64,
        to_ms: i64,
        limit: u32,
    ) -> Result<Vec<AuditRow>, StoreError> {
        self.rows(
            "SELECT at_ms, login, action, call_id, detail FROM audit
             WHERE at_ms >= ?1 AND at_ms < ?2 ORDER BY at_ms, id LIMIT ?3",
            params![from_ms, to_ms, i64::from(limit)],
            |r| {
                Ok(AuditRow {
                    at_ms: r.get(0)?,
                    login: r.get(1)?,
                    action: r.get(2)?,
                    call_id: r.get::<_, Option<i64>>(3)?.map(|c| c as u64),
                    detail: r.get(4)?,
                })
            },
        )
    }
}

/// What the live board counts of a finished call ([`Store::ended_since`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndedRow {
    /// The call.
    pub call_id: u64,
    /// Its queue.
    pub queue: Option<String>,
    /// The queue it overflowed from.
    pub overflowed_from: Option<String>,
    /// The agent who answered.
    pub agent: Option<String>,
    /// The outcome.
    pub outcome: String,
    /// Wait (milliseconds).
    pub wait_ms: i64,
    /// Talk + hold + wrap-up (milliseconds).
    pub handle_ms: i64,
    /// When it ended (Unix milliseconds).
    pub ended_ms: i64,
}

impl Store {
    /// Calls that ended at or after `from_ms`, in the order they ended (to fill the live
    /// board again after a restart).
    pub fn ended_since(&self, from_ms: i64) -> Result<Vec<EndedRow>, StoreError> {
        on_backend!(self, db => db.ended_since(from_ms))
    }
}

impl Sqlite {
    pub(crate) fn ended_since(&self, from_ms: i64) -> Result<Vec<EndedRow>, StoreError> {
        self.rows(
            "SELECT call_id, queue, agent, outcome, wait_ms, talk_ms + hold_ms + wrap_up_ms,
                ended_ms, overflowed_from
             FROM calls WHERE arrived_ms >= ?1 - 86400000 AND ended_ms >= ?1
             ORDER BY ended_ms, id",
            [from_ms],
            |r| {
                Ok(EndedRow {
                    call_id: r.get::<_, i64>(0)? as u64,
                    queue: r.get(1)?,
                    agent: r.get(2)?,
                    outcome: r.get(3)?,
                    wait_ms: r.get(4)?,
                    handle_ms: r.get(5)?,
                    ended_ms: r.get(6)?,
                    overflowed_from: r.get(7)?,
                })
            },
        )
    }
}
