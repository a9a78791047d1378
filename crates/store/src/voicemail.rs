//! Voicemail messages: one row per message left (its recording's file, relative to the
//! recordings directory), with its status: `new` until the owner has heard it, then `saved`,
//! or `deleted` (the row stays, so what was left and when is never lost).

use rusqlite::params;

use crate::sqlite::Sqlite;
use crate::{Store, StoreError};

pub(crate) const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS messages (
    id INTEGER PRIMARY KEY,
    call_id INTEGER NOT NULL,
    mailbox TEXT NOT NULL,
    caller TEXT NOT NULL,
    file TEXT NOT NULL UNIQUE,
    received_ms INTEGER NOT NULL,
    duration_ms INTEGER NOT NULL,
    status TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS messages_mailbox ON messages (mailbox, status);
";

/// A voicemail message.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MessageRow {
    /// The store's id (assigned when it is inserted).
    pub id: i64,
    /// The call that left it.
    pub call_id: u64,
    /// Its mailbox.
    pub mailbox: String,
    /// Who left it (their number).
    pub caller: String,
    /// The WAV file, relative to the recordings directory.
    pub file: String,
    /// When it was left (its recording finished).
    pub received_ms: i64,
    /// Its length.
    pub duration_ms: i64,
    /// `new`, `saved` or `deleted`.
    pub status: String,
}

impl Store {
    /// Store a message (the same file again is the same message: call ids start again at
    /// each server start, file names do not); its id.
    pub fn insert_message(&mut self, m: &MessageRow) -> Result<i64, StoreError> {
        on_backend_mut!(self, db => db.insert_message(m))
    }

    /// Messages not deleted, oldest first.
    pub fn messages(&self) -> Result<Vec<MessageRow>, StoreError> {
        on_backend!(self, db => db.messages())
    }

    /// Set a message's status (`saved`, `deleted`).
    pub fn set_message_status(&mut self, id: i64, status: &str) -> Result<(), StoreError> {
        on_backend_mut!(self, db => db.set_message_status(id, status))
    }
}

fn message_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<MessageRow> {
    Ok(MessageRow {
        id: r.get(0)?,
        call_id: r.get::<_, i64>(1)? as u64,
        mailbox: r.get(2)?,
        caller: r.get(3)?,
        file: r.get(4)?,
        received_ms: r.get(5)?,
        duration_ms: r.get(6)?,
        status: r.get(7)?,
    })
}

impl Sqlite {
    pub(crate) fn insert_message(&mut self, m: &MessageRow) -> Result<i64, StoreError> {
        let mut id = 0;
        self.in_transaction(|tx| {
            tx.execute(
                "INSERT INTO messages
                    (call_id, mailbox, caller, file, received_ms, duration_ms, status)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) ON CONFLICT (file) DO NOTHING",
                params![
                    m.call_id as i64,
                    m.mailbox,
                    m.caller,
                    m.file,
                    m.received_ms,
                    m.duration_ms,
                    m.status
                ],
            )?;
            id = tx.query_row("SELECT id FROM messages WHERE file = ?1", [&m.file], |r| {
                r.get(0)
            })?;
            Ok(())
        })?;
        Ok(id)
    }

    pub(crate) fn messages(&self) -> Result<Vec<MessageRow>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT id, call_id, mailbox, caller, file, received_ms, duration_ms, status
                 FROM messages WHERE status <> 'deleted' ORDER BY received_ms, id",
            )
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map([], message_row)
            .and_then(Iterator::collect)
            .map_err(|e| self.err(e));
        rows
    }

    pub(crate) fn set_message_status(&mut self, id: i64, status: &str) -> Result<(), StoreError> {
        self.in_transaction(|tx| {
            tx.execute(
                "UPDATE messages SET status = ?2 WHERE id = ?1",
                params![id, status],
            )
            .map(|_| ())
        })
    }
}
