//! The SQLite backend: one file, write-ahead log, `synchronous = NORMAL`.

use std::path::{Path, PathBuf};

use rusqlite::{params, Connection, OpenFlags, OptionalExtension, Transaction};

use crate::{review, AgentStateRow, AttemptRow, CallRow, StoreError};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS calls (
    id INTEGER PRIMARY KEY,
    call_id INTEGER NOT NULL,
    sip_call_id TEXT NOT NULL,
    caller TEXT NOT NULL,
    caller_name TEXT,
    dialed TEXT NOT NULL,
    source TEXT NOT NULL,
    queue TEXT,
    agent TEXT,
    arrived_ms INTEGER NOT NULL,
    queued_ms INTEGER,
    first_offer_ms INTEGER,
    answered_ms INTEGER,
    ended_ms INTEGER NOT NULL,
    wait_ms INTEGER NOT NULL,
    talk_ms INTEGER NOT NULL,
    hold_ms INTEGER NOT NULL,
    wrap_up_ms INTEGER NOT NULL,
    outcome TEXT NOT NULL,
    hung_up_by TEXT NOT NULL,
    reason TEXT NOT NULL,
    recorded INTEGER NOT NULL
);
-- Interval reports read only this index (it holds every column they count).
CREATE INDEX IF NOT EXISTS calls_report ON calls
    (arrived_ms, queue, agent, outcome, wait_ms, talk_ms, hold_ms, wrap_up_ms);
CREATE INDEX IF NOT EXISTS calls_queue ON calls (queue, arrived_ms);
CREATE INDEX IF NOT EXISTS calls_agent ON calls (agent, arrived_ms);
CREATE TABLE IF NOT EXISTS ring_attempts (
    call INTEGER NOT NULL REFERENCES calls (id),
    seq INTEGER NOT NULL,
    agent TEXT NOT NULL,
    contact TEXT NOT NULL,
    started_ms INTEGER NOT NULL,
    ended_ms INTEGER,
    result TEXT NOT NULL,
    PRIMARY KEY (call, seq)
);
CREATE TABLE IF NOT EXISTS agent_states (
    id INTEGER PRIMARY KEY,
    agent TEXT NOT NULL,
    user TEXT NOT NULL,
    state TEXT NOT NULL,
    reason TEXT,
    at_ms INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS agent_states_agent ON agent_states (agent, at_ms);
-- How far each spill file (records kept in a file while the database refused them) has been
-- written back here, in bytes; moved in the same transaction as the records it covers.
CREATE TABLE IF NOT EXISTS spill_replayed (
    file TEXT PRIMARY KEY,
    offset INTEGER NOT NULL
);
";

/// A SQLite database file.
#[derive(Debug)]
pub(crate) struct Sqlite {
    pub(crate) conn: Connection,
    path: PathBuf,
    /// The database file opened for writing (device, inode), to notice its removal.
    file: Option<(u64, u64)>,
}

impl Sqlite {
    /// Open (creating it and its directory if needed) the database at `path` for writing.
    pub(crate) fn open(path: &Path) -> Result<Sqlite, StoreError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|source| StoreError::Io {
                path: dir.to_owned(),
                source,
            })?;
        }
        let db = |source| StoreError::Database {
            path: path.to_owned(),
            source,
        };
        let conn = Connection::open(path).map_err(db)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(db)?;
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(db)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))
            .map_err(db)?;
        conn.execute_batch(SCHEMA).map_err(db)?;
        conn.execute_batch(review::SCHEMA).map_err(db)?;
        conn.execute_batch(crate::voicemail::SCHEMA).map_err(db)?;
        conn.execute_batch(crate::callbacks::SCHEMA).map_err(db)?;
        add_columns(&conn).map_err(db)?;
        Ok(Sqlite {
            conn,
            path: path.to_owned(),
            file: file_id(path),
        })
    }

    /// Open an existing database for reading (reports, tests) beside the writer.
    pub(crate) fn open_read_only(path: &Path) -> Result<Sqlite, StoreError> {
        let conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY).map_err(
            |source| StoreError::Database {
                path: path.to_owned(),
                source,
            },
        )?;
        let _ = conn.busy_timeout(std::time::Duration::from_secs(5));
        Ok(Sqlite {
            conn,
            path: path.to_owned(),
            file: None,
        })
    }

    /// The database file.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    pub(crate) fn err(&self, source: rusqlite::Error) -> StoreError {
        StoreError::Database {
            path: self.path.clone(),
            source,
        }
    }

    /// Every row `sql` returns for `params`, each made by `row`.
    pub(crate) fn rows<T>(
        &self,
        sql: &str,
        params: impl rusqlite::Params,
        row: impl FnMut(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
    ) -> Result<Vec<T>, StoreError> {
        let mut stmt = self.conn.prepare_cached(sql).map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map(params, row)
            .map_err(|e| self.err(e))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| self.err(e));
        rows
    }

    /// Write calls (and their ring attempts) in one transaction.
    pub(crate) fn insert_calls(&mut self, calls: &[CallRow]) -> Result<(), StoreError> {
        self.in_transaction(|tx| put_calls(tx, calls))
    }

    /// Write agent state changes in one transaction.
    pub(crate) fn insert_agent_states(&mut self, rows: &[AgentStateRow]) -> Result<(), StoreError> {
        self.in_transaction(|tx| put_agent_states(tx, rows))
    }

    /// How far (in bytes) the spill file named `file` has been written to the database: 0 for
    /// a file it has not seen.
    pub(crate) fn spill_replayed(&self, file: &str) -> Result<u64, StoreError> {
        self.conn
            .query_row(
                "SELECT offset FROM spill_replayed WHERE file = ?1",
                [file],
                |r| r.get::<_, i64>(0),
            )
            .optional()
            .map(|o| o.map_or(0, |o| u64::try_from(o).unwrap_or(0)))
            .map_err(|e| self.err(e))
    }

    /// Write calls and agent states read back from the spill file named `file`, and note that
    /// it has been written up to byte `offset`, in one transaction: after a crash the
    /// database has either all of it or none, so reading the file again from
    /// [`crate::Store::spill_replayed`] on never writes a record twice.
    pub(crate) fn insert_replayed(
        &mut self,
        file: &str,
        offset: u64,
        calls: &[CallRow],
        states: &[AgentStateRow],
    ) -> Result<(), StoreError> {
        self.in_transaction(|tx| {
            put_calls(tx, calls)?;
            put_agent_states(tx, states)?;
            tx.prepare_cached(
                "INSERT INTO spill_replayed (file, offset) VALUES (?1, ?2)
                 ON CONFLICT (file) DO UPDATE SET offset = excluded.offset",
            )?
            .execute(params![file, i64::try_from(offset).unwrap_or(i64::MAX)])?;
            Ok(())
        })
    }

    /// Forget the spill file named `file` (once it is gone).
    pub(crate) fn forget_spill(&mut self, file: &str) -> Result<(), StoreError> {
        self.conn
            .execute("DELETE FROM spill_replayed WHERE file = ?1", [file])
            .map(drop)
            .map_err(|e| self.err(e))
    }

    /// Run `work` in one transaction and commit it (rolled back if `work` fails).
    pub(crate) fn in_transaction(
        &mut self,
        work: impl FnOnce(&Transaction<'_>) -> rusqlite::Result<()>,
    ) -> Result<(), StoreError> {
        if self.file.is_some() && file_id(&self.path) != self.file {
            return Err(StoreError::Moved {
                path: self.path.clone(),
            });
        }
        let path = &self.path;
        let db = |source| StoreError::Database {
            path: path.clone(),
            source,
        };
        let tx = self.conn.transaction().map_err(db)?;
        work(&tx).map_err(db)?;
        tx.commit().map_err(db)
    }

    /// Calls stored.
    pub(crate) fn call_count(&self) -> Result<u64, StoreError> {
        self.conn
            .query_row("SELECT COUNT(*) FROM calls", [], |r| r.get::<_, i64>(0))
            .map(|n| n as u64)
            .map_err(|e| self.err(e))
    }

    /// The latest stored call with this id.
    pub(crate) fn call(&self, call_id: u64) -> Result<Option<CallRow>, StoreError> {
        let row = self
            .conn
            .query_row(
                &format!("{SELECT_CALL} WHERE call_id = ?1 ORDER BY id DESC LIMIT 1"),
                [call_id as i64],
                |r| Ok((r.get::<_, i64>(0)?, call_row(r)?)),
            )
            .optional()
            .map_err(|e| self.err(e))?;
        match row {
            Some((id, mut c)) => {
                c.attempts = self.attempts(id)?;
                Ok(Some(c))
            }
            None => Ok(None),
        }
    }

    /// Calls that arrived in `[from_ms, to_ms)`, oldest first.
    pub(crate) fn calls_between(
        &self,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<Vec<CallRow>, StoreError> {
        let rows = self.rows(
            &format!(
                "{SELECT_CALL} WHERE arrived_ms >= ?1 AND arrived_ms < ?2 ORDER BY arrived_ms, id"
            ),
            [from_ms, to_ms],
            |r| Ok((r.get::<_, i64>(0)?, call_row(r)?)),
        )?;
        let mut out = Vec::with_capacity(rows.len());
        for (id, mut c) in rows {
            c.attempts = self.attempts(id)?;
            out.push(c);
        }
        Ok(out)
    }

    fn attempts(&self, row: i64) -> Result<Vec<AttemptRow>, StoreError> {
        self.rows(
            "SELECT agent, contact, started_ms, ended_ms, result FROM ring_attempts
             WHERE call = ?1 ORDER BY seq",
            [row],
            |r| {
                Ok(AttemptRow {
                    agent: r.get(0)?,
                    contact: r.get(1)?,
                    started_ms: r.get(2)?,
                    ended_ms: r.get(3)?,
                    result: r.get(4)?,
                })
            },
        )
    }

    /// An agent's state changes, oldest first.
    pub(crate) fn agent_states(&self, agent: &str) -> Result<Vec<AgentStateRow>, StoreError> {
        self.rows(
            "SELECT agent, user, state, reason, at_ms FROM agent_states
             WHERE agent = ?1 ORDER BY at_ms, id",
            [agent],
            |r| {
                Ok(AgentStateRow {
                    agent: r.get(0)?,
                    user: r.get(1)?,
                    state: r.get(2)?,
                    reason: r.get(3)?,
                    at_ms: r.get(4)?,
                })
            },
        )
    }
}

pub(crate) const SELECT_CALL: &str =
    "SELECT id, call_id, sip_call_id, caller, caller_name, dialed, source,
    queue, agent, arrived_ms, queued_ms, first_offer_ms, answered_ms, ended_ms, wait_ms, talk_ms,
    hold_ms, wrap_up_ms, outcome, hung_up_by, reason, recorded, disposition, satisfaction,
    overflowed_from, variables, callback, segments FROM calls";

pub(crate) fn call_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<CallRow> {
    Ok(CallRow {
        call_id: r.get::<_, i64>(1)? as u64,
        sip_call_id: r.get(2)?,
        caller: r.get(3)?,
        caller_name: r.get(4)?,
        dialed: r.get(5)?,
        source: r.get(6)?,
        queue: r.get(7)?,
        agent: r.get(8)?,
        arrived_ms: r.get(9)?,
        queued_ms: r.get(10)?,
        first_offer_ms: r.get(11)?,
        answered_ms: r.get(12)?,
        ended_ms: r.get(13)?,
        wait_ms: r.get(14)?,
        talk_ms: r.get(15)?,
        hold_ms: r.get(16)?,
        wrap_up_ms: r.get(17)?,
        outcome: r.get(18)?,
        hung_up_by: r.get(19)?,
        reason: r.get(20)?,
        recorded: r.get(21)?,
        disposition: r.get(22)?,
        satisfaction: r.get(23)?,
        overflowed_from: r.get(24)?,
        variables: crate::variables_from(r.get::<_, Option<String>>(25)?.as_deref()),
        callback: r.get::<_, Option<bool>>(26)?.unwrap_or(false),
        segments: crate::segments_from(r.get::<_, Option<String>>(27)?.as_deref()),
        attempts: Vec::new(),
    })
}

/// The file at `path` (device, inode), if it is there.
#[cfg(unix)]
fn file_id(path: &Path) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).ok().map(|m| (m.dev(), m.ino()))
}

#[cfg(not(unix))]
fn file_id(_path: &Path) -> Option<(u64, u64)> {
    None
}

/// Columns added after the first release, added to a database made before them.
fn add_columns(conn: &Connection) -> rusqlite::Result<()> {
    let mut have = std::collections::HashSet::new();
    {
        let mut stmt = conn.prepare("PRAGMA table_info(calls)")?;
        let mut rows = stmt.query([])?;
        while let Some(r) = rows.next()? {
            have.insert(r.get::<_, String>(1)?);
        }
    }
    for (name, ty) in [
        ("disposition", "TEXT"),
        ("satisfaction", "INTEGER"),
        ("overflowed_from", "TEXT"),
        ("variables", "TEXT"),
        ("callback", "INTEGER"),
        ("segments", "TEXT"),
    ] {
        if !have.contains(name) {
            conn.execute_batch(&format!("ALTER TABLE calls ADD COLUMN {name} {ty}"))?;
        }
    }
    // Reports look overflowed calls up by this (few calls overflow: a partial index).
    conn.execute_batch(
        "CREATE INDEX IF NOT EXISTS calls_overflowed ON calls (overflowed_from, arrived_ms)
         WHERE overflowed_from IS NOT NULL",
    )?;
    Ok(())
}

fn put_calls(tx: &Transaction<'_>, calls: &[CallRow]) -> rusqlite::Result<()> {
    let mut call_stmt = tx.prepare_cached(
        "INSERT INTO calls (call_id, sip_call_id, caller, caller_name, dialed, source,
            queue, agent, arrived_ms, queued_ms, first_offer_ms, answered_ms, ended_ms,
            wait_ms, talk_ms, hold_ms, wrap_up_ms, outcome, hung_up_by, reason, recorded,
            disposition, satisfaction, overflowed_from, variables, callback, segments)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16,
            ?17, ?18, ?19, ?20, ?21, ?22, ?23, ?24, ?25, ?26, ?27)",
    )?;
    let mut attempt_stmt = tx.prepare_cached(
        "INSERT INTO ring_attempts (call, seq, agent, contact, started_ms, ended_ms, result)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?;
    for c in calls {
        call_stmt.execute(params![
            c.call_id as i64,
            c.sip_call_id,
            c.caller,
            c.caller_name,
            c.dialed,
            c.source,
            c.queue,
            c.agent,
            c.arrived_ms,
            c.queued_ms,
            c.first_offer_ms,
            c.answered_ms,
            c.ended_ms,
            c.wait_ms,
            c.talk_ms,
            c.hold_ms,
            c.wrap_up_ms,
            c.outcome,
            c.hung_up_by,
            c.reason,
            c.recorded,
            c.disposition,
            c.satisfaction,
            c.overflowed_from,
            crate::variables_to(&c.variables),
            c.callback.then_some(true),
            crate::segments_to(&c.segments),
        ])?;
        let row = tx.last_insert_rowid();
        for (i, a) in c.attempts.iter().enumerate() {
            attempt_stmt.execute(params![
                row,
                i as i64,
                a.agent,
                a.contact,
                a.started_ms,
                a.ended_ms,
                a.result
            ])?;
        }
    }
    Ok(())
}

fn put_agent_states(tx: &Transaction<'_>, rows: &[AgentStateRow]) -> rusqlite::Result<()> {
    let mut stmt = tx.prepare_cached(
        "INSERT INTO agent_states (agent, user, state, reason, at_ms)
         VALUES (?1, ?2, ?3, ?4, ?5)",
    )?;
    for r in rows {
        stmt.execute(params![r.agent, r.user, r.state, r.reason, r.at_ms])?;
    }
    Ok(())
}
