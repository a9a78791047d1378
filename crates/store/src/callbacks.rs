//! Pending callbacks: a caller who asked to be called back keeps their place across a
//! restart. A row lives from the request until the customer is connected or given up on.

use rusqlite::params;

use crate::sqlite::Sqlite;
use crate::{Store, StoreError};

pub(crate) const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS callbacks (
    key TEXT PRIMARY KEY,
    queue TEXT NOT NULL,
    number TEXT NOT NULL,
    name TEXT,
    dialed TEXT NOT NULL,
    source TEXT NOT NULL,
    arrived_ms INTEGER NOT NULL,
    queued_ms INTEGER NOT NULL,
    attempts INTEGER NOT NULL
);
";

/// A callback waiting to be made.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CallbackRow {
    /// The original call's SIP Call-ID.
    pub key: String,
    /// The queue.
    pub queue: String,
    /// The number to call.
    pub number: String,
    /// The caller's display name.
    pub name: Option<String>,
    /// The number the caller dialled.
    pub dialed: String,
    /// `trunk:NAME`, `user:NAME` or `anonymous`.
    pub source: String,
    /// When the original call arrived.
    pub arrived_ms: i64,
    /// When it joined the queue.
    pub queued_ms: i64,
    /// Attempts made.
    pub attempts: u32,
}

impl Store {
    /// Keep a pending callback (a second save of the same key replaces the first).
    pub fn save_callback(&mut self, c: &CallbackRow) -> Result<(), StoreError> {
        on_backend_mut!(self, db => db.save_callback(c))
    }

    /// A callback is over.
    pub fn forget_callback(&mut self, key: &str) -> Result<(), StoreError> {
        on_backend_mut!(self, db => db.forget_callback(key))
    }

    /// The pending callbacks, first arrived first.
    pub fn callbacks(&self) -> Result<Vec<CallbackRow>, StoreError> {
        on_backend!(self, db => db.callbacks())
    }
}

impl Sqlite {
    pub(crate) fn save_callback(&mut self, c: &CallbackRow) -> Result<(), StoreError> {
        self.in_transaction(|tx| {
            tx.execute(
                "INSERT OR REPLACE INTO callbacks
                    (key, queue, number, name, dialed, source, arrived_ms, queued_ms, attempts)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                params![
                    c.key,
                    c.queue,
                    c.number,
                    c.name,
                    c.dialed,
                    c.source,
                    c.arrived_ms,
                    c.queued_ms,
                    c.attempts
                ],
            )
            .map(|_| ())
        })
    }

    pub(crate) fn forget_callback(&mut self, key: &str) -> Result<(), StoreError> {
        self.in_transaction(|tx| {
            tx.execute("DELETE FROM callbacks WHERE key = ?1", [key])
                .map(|_| ())
        })
    }

    pub(crate) fn callbacks(&self) -> Result<Vec<CallbackRow>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT key, queue, number, name, dialed, source, arrived_ms, queued_ms, attempts
                 FROM callbacks ORDER BY arrived_ms, key",
            )
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map([], |r| {
                Ok(CallbackRow {
                    key: r.get(0)?,
                    queue: r.get(1)?,
                    number: r.get(2)?,
                    name: r.get(3)?,
                    dialed: r.get(4)?,
                    source: r.get(5)?,
                    arrived_ms: r.get(6)?,
                    queued_ms: r.get(7)?,
                    attempts: r.get(8)?,
                })
            })
            .and_then(Iterator::collect)
            .map_err(|e| self.err(e));
        rows
    }
}
