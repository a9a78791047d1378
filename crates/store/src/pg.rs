//! The PostgreSQL backend: the same tables as SQLite in PostgreSQL types, over the blocking
//! `postgres` client (which runs its own small runtime: never call it from an async task).
//!
//! One connection, made at the first use and again after it drops (the server restarted, the
//! network broke): a call that finds it gone connects first, and a call that fails for any
//! reason other than the server's own answer (a constraint, a type) drops it so that the next
//! one connects anew. Statements are prepared once per connection.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use postgres::fallible_iterator::FallibleIterator;
use postgres::types::ToSql;
use postgres::{Client, Config, NoTls, Row, Statement, Transaction};

use crate::callbacks::CallbackRow;
use crate::report::{AgentInterval, QueueCount};
use crate::review::{AuditRow, CallFilter, EndedRow, FoundCall, RecordingRow, ReviewRow};
use crate::voicemail::MessageRow;
use crate::{AgentStateRow, AttemptRow, CallRow, StoreError};

/// How long a connection attempt may take (unless the URL says `connect_timeout`).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// A lock so that two connections creating the tables at once do not collide.
const SCHEMA_LOCK: i64 = 0x5377_6974_6368; // "Switch"

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS calls (
    id BIGSERIAL PRIMARY KEY,
    call_id BIGINT NOT NULL,
    sip_call_id TEXT NOT NULL,
    caller TEXT NOT NULL,
    caller_name TEXT,
    dialed TEXT NOT NULL,
    source TEXT NOT NULL,
    queue TEXT,
    agent TEXT,
    arrived_ms BIGINT NOT NULL,
    queued_ms BIGINT,
    first_offer_ms BIGINT,
    answered_ms BIGINT,
    ended_ms BIGINT NOT NULL,
    wait_ms BIGINT NOT NULL,
    talk_ms BIGINT NOT NULL,
    hold_ms BIGINT NOT NULL,
    wrap_up_ms BIGINT NOT NULL,
    outcome TEXT NOT NULL,
    hung_up_by TEXT NOT NULL,
    reason TEXT NOT NULL,
    recorded BOOLEAN NOT NULL,
    disposition TEXT,
    satisfaction SMALLINT,
    overflowed_from TEXT,
    variables TEXT,
    callback BOOLEAN
);
-- Columns added after the table was first made.
ALTER TABLE calls ADD COLUMN IF NOT EXISTS overflowed_from TEXT;
ALTER TABLE calls ADD COLUMN IF NOT EXISTS variables TEXT;
ALTER TABLE calls ADD COLUMN IF NOT EXISTS segments TEXT;
ALTER TABLE calls ADD COLUMN IF NOT EXISTS callback BOOLEAN;
CREATE INDEX IF NOT EXISTS calls_overflowed ON calls (overflowed_from, arrived_ms)
    WHERE overflowed_from IS NOT NULL;
-- Interval reports read only this index (it holds every column they count).
CREATE INDEX IF NOT EXISTS calls_report ON calls (arrived_ms)
    INCLUDE (queue, agent, outcome, wait_ms, talk_ms, hold_ms, wrap_up_ms);
CREATE INDEX IF NOT EXISTS calls_queue ON calls (queue, arrived_ms);
CREATE INDEX IF NOT EXISTS calls_agent ON calls (agent, arrived_ms);
CREATE INDEX IF NOT EXISTS calls_call_id ON calls (call_id);
CREATE TABLE IF NOT EXISTS ring_attempts (
    call BIGINT NOT NULL REFERENCES calls (id),
    seq INTEGER NOT NULL,
    agent TEXT NOT NULL,
    contact TEXT NOT NULL,
    started_ms BIGINT NOT NULL,
    ended_ms BIGINT,
    result TEXT NOT NULL,
    PRIMARY KEY (call, seq)
);
CREATE TABLE IF NOT EXISTS agent_states (
    id BIGSERIAL PRIMARY KEY,
    agent TEXT NOT NULL,
    \"user\" TEXT NOT NULL,
    state TEXT NOT NULL,
    reason TEXT,
    at_ms BIGINT NOT NULL
);
CREATE INDEX IF NOT EXISTS agent_states_agent ON agent_states (agent, at_ms);
-- How far each spill file has been written back here, in bytes (see the SQLite schema).
CREATE TABLE IF NOT EXISTS spill_replayed (
    file TEXT PRIMARY KEY,
    \"offset\" BIGINT NOT NULL
);
CREATE TABLE IF NOT EXISTS recordings (
    call_id BIGINT PRIMARY KEY,
    file TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    bytes BIGINT NOT NULL,
    duration_ms BIGINT NOT NULL,
    finished_ms BIGINT NOT NULL
);
CREATE TABLE IF NOT EXISTS reviews (
    id BIGSERIAL PRIMARY KEY,
    call_id BIGINT NOT NULL,
    reviewer TEXT NOT NULL,
    score SMALLINT NOT NULL,
    comment TEXT NOT NULL,
    at_ms BIGINT NOT NULL
);
CREATE INDEX IF NOT EXISTS reviews_call ON reviews (call_id, at_ms);
CREATE TABLE IF NOT EXISTS audit (
    id BIGSERIAL PRIMARY KEY,
    at_ms BIGINT NOT NULL,
    login TEXT NOT NULL,
    action TEXT NOT NULL,
    call_id BIGINT,
    detail TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS audit_at ON audit (at_ms);
CREATE TABLE IF NOT EXISTS messages (
    id BIGSERIAL PRIMARY KEY,
    call_id BIGINT NOT NULL,
    mailbox TEXT NOT NULL,
    caller TEXT NOT NULL,
    file TEXT NOT NULL UNIQUE,
    received_ms BIGINT NOT NULL,
    duration_ms BIGINT NOT NULL,
    status TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS messages_mailbox ON messages (mailbox, status);
CREATE TABLE IF NOT EXISTS callbacks (
    key TEXT PRIMARY KEY,
    queue TEXT NOT NULL,
    number TEXT NOT NULL,
    name TEXT,
    dialed TEXT NOT NULL,
    source TEXT NOT NULL,
    arrived_ms BIGINT NOT NULL,
    queued_ms BIGINT NOT NULL,
    attempts BIGINT NOT NULL
);
";

/// The columns of a call, then `$tail` (a `WHERE`…), as one constant statement text.
macro_rules! select_call {
    ($tail:literal) => {
        concat!(
            "SELECT id, call_id, sip_call_id, caller, caller_name, dialed, source,
            queue, agent, arrived_ms, queued_ms, first_offer_ms, answered_ms, ended_ms, wait_ms,
            talk_ms, hold_ms, wrap_up_ms, outcome, hung_up_by, reason, recorded, disposition,
            satisfaction, overflowed_from, variables, callback, segments FROM calls",
            $tail
        )
    };
}

// A batch is written in a few statements whatever its size: the ids are drawn first (in
// order), then every call, every ring attempt and every agent state goes in as columns of
// arrays (UNNEST), one statement each.

const NEXT_IDS: &str =
    "SELECT nextval(pg_get_serial_sequence('calls', 'id')) FROM generate_series(1, $1::BIGINT)";

const INSERT_CALLS: &str = "INSERT INTO calls (id, call_id, sip_call_id, caller, caller_name,
    dialed, source, queue, agent, arrived_ms, queued_ms, first_offer_ms, answered_ms, ended_ms,
    wait_ms, talk_ms, hold_ms, wrap_up_ms, outcome, hung_up_by, reason, recorded, disposition,
    satisfaction, overflowed_from, variables, callback, segments)
    SELECT * FROM UNNEST($1::BIGINT[], $2::BIGINT[], $3::TEXT[], $4::TEXT[], $5::TEXT[],
    $6::TEXT[], $7::TEXT[], $8::TEXT[], $9::TEXT[], $10::BIGINT[], $11::BIGINT[], $12::BIGINT[],
    $13::BIGINT[], $14::BIGINT[], $15::BIGINT[], $16::BIGINT[], $17::BIGINT[], $18::BIGINT[],
    $19::TEXT[], $20::TEXT[], $21::TEXT[], $22::BOOLEAN[], $23::TEXT[], $24::SMALLINT[],
    $25::TEXT[], $26::TEXT[], $27::BOOLEAN[], $28::TEXT[])";

const INSERT_ATTEMPTS: &str = "INSERT INTO ring_attempts
    (call, seq, agent, contact, started_ms, ended_ms, result)
    SELECT * FROM UNNEST($1::BIGINT[], $2::INTEGER[], $3::TEXT[], $4::TEXT[], $5::BIGINT[],
    $6::BIGINT[], $7::TEXT[])";

const INSERT_STATES: &str = "INSERT INTO agent_states (agent, \"user\", state, reason, at_ms)
    SELECT * FROM UNNEST($1::TEXT[], $2::TEXT[], $3::TEXT[], $4::TEXT[], $5::BIGINT[])";

/// Host, port, database and user of a PostgreSQL URL or connection string: what logs and
/// errors may show of it (never the password).
pub(crate) fn describe(url: &str) -> String {
    match url.parse::<Config>() {
        Ok(c) => target(&c),
        Err(_) => "(an unreadable URL)".into(),
    }
}

/// What went wrong, in words: the server's message (and SQLSTATE) for its own errors, else the
/// error and its causes (connection refused, timed out…).
pub(crate) fn reason(e: &postgres::Error) -> String {
    if let Some(db) = e.as_db_error() {
        return format!("{}: {} ({})", db.severity(), db.message(), db.code().code());
    }
    let mut out = e.to_string();
    let mut cause = std::error::Error::source(e);
    while let Some(c) = cause {
        out.push_str(": ");
        out.push_str(&c.to_string());
        cause = c.source();
    }
    out
}

fn target(c: &Config) -> String {
    let hosts: Vec<String> = c
        .get_hosts()
        .iter()
        .map(|h| match h {
            postgres::config::Host::Tcp(name) => name.clone(),
            postgres::config::Host::Unix(dir) => dir.display().to_string(),
        })
        .collect();
    let host = if hosts.is_empty() {
        "localhost".to_owned()
    } else {
        hosts.join(",")
    };
    let port = match c.get_ports() {
        [] => String::new(),
        ports => format!(
            ":{}",
            ports
                .iter()
                .map(u16::to_string)
                .collect::<Vec<_>>()
                .join(",")
        ),
    };
    let user = c.get_user().unwrap_or("");
    let db = c.get_dbname().unwrap_or(user);
    format!("{host}{port}/{db} as {user:?}")
}

/// The PostgreSQL store.
pub(crate) struct Postgres {
    config: Config,
    target: String,
    read_only: bool,
    conn: Mutex<Option<Conn>>,
}

impl std::fmt::Debug for Postgres {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Postgres")
            .field("target", &self.target)
            .field("read_only", &self.read_only)
            .finish_non_exhaustive()
    }
}

/// One live connection and its prepared statements.
struct Conn {
    client: Client,
    statements: HashMap<&'static str, Statement>,
}

impl Conn {
    fn prepare(&mut self, sql: &'static str) -> Result<Statement, postgres::Error> {
        if let Some(s) = self.statements.get(sql) {
            return Ok(s.clone());
        }
        let s = self.client.prepare(sql)?;
        self.statements.insert(sql, s.clone());
        Ok(s)
    }

    /// Every row of the prepared `sql` for `params`, each made by `row`.
    fn rows<T>(
        &mut self,
        sql: &'static str,
        params: &[&(dyn ToSql + Sync)],
        row: impl FnMut(&Row) -> Result<T, postgres::Error>,
    ) -> Result<Vec<T>, postgres::Error> {
        let stmt = self.prepare(sql)?;
        self.client.query(&stmt, params)?.iter().map(row).collect()
    }
}

impl Postgres {
    /// Read the URL; no connection yet.
    pub(crate) fn new(url: &str, read_only: bool) -> Result<Postgres, StoreError> {
        let mut config = url.parse::<Config>().map_err(|e| {
            // The parser's messages name an option at most; anything else may quote the
            // URL (and its password), so it is not repeated.
            let reason = e.to_string();
            let reason = if reason.contains("option `") {
                reason
            } else {
                "not a postgres:// URL nor key=value pairs such as \"host=… user=… dbname=…\""
                    .to_owned()
            };
            StoreError::Url { reason }
        })?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(CONNECT_TIMEOUT);
        }
        if config.get_application_name().is_none() {
            config.application_name("switchboard");
        }
        Ok(Postgres {
            target: target(&config),
            config,
            read_only,
            conn: Mutex::new(None),
        })
    }

    /// Host, port, database and user.
    pub(crate) fn target(&self) -> &str {
        &self.target
    }

    fn err(&self, source: postgres::Error) -> StoreError {
        StoreError::Postgres {
            target: self.target.clone(),
            source,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Option<Conn>> {
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Connect (and create the tables) unless connected.
    pub(crate) fn ensure_connected(&self) -> Result<(), StoreError> {
        self.with(|_| Ok(()))
    }

    fn connect_now(&self) -> Result<Conn, postgres::Error> {
        let mut client = self.config.connect(NoTls)?;
        if self.read_only {
            client.batch_execute("SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY")?;
        } else {
            let mut tx = client.transaction()?;
            tx.execute("SELECT pg_advisory_xact_lock($1)", &[&SCHEMA_LOCK])?;
            tx.batch_execute(SCHEMA)?;
            tx.commit()?;
        }
        Ok(Conn {
            client,
            statements: HashMap::new(),
        })
    }

    /// Run `work` on the connection, connecting first if there is none (or it dropped); a
    /// failure that is not the server's answer to the statement drops the connection.
    fn with<T>(
        &self,
        work: impl FnOnce(&mut Conn) -> Result<T, postgres::Error>,
    ) -> Result<T, StoreError> {
        let mut slot = self.lock();
        if slot.as_ref().is_some_and(|c| c.client.is_closed()) {
            *slot = None;
        }
        let conn = match &mut *slot {
            Some(c) => c,
            None => slot.insert(self.connect_now().map_err(|e| self.err(e))?),
        };
        match work(conn) {
            Ok(v) => Ok(v),
            Err(e) => {
                if e.code().is_none() || conn.client.is_closed() {
                    *slot = None;
                }
                Err(self.err(e))
            }
        }
    }

    /// Run `work` in one transaction and commit it (rolled back if it fails).
    fn in_transaction(
        &mut self,
        work: impl FnOnce(&mut Transaction<'_>, &mut Prepared) -> Result<(), postgres::Error>,
        statements: &[&'static str],
    ) -> Result<(), StoreError> {
        self.with(|conn| {
            let mut prepared = Prepared(Vec::with_capacity(statements.len()));
            for sql in statements {
                prepared.0.push(conn.prepare(sql)?);
            }
            let mut tx = conn.client.transaction()?;
            work(&mut tx, &mut prepared)?;
            tx.commit()
        })
    }

    pub(crate) fn insert_calls(&mut self, calls: &[CallRow]) -> Result<(), StoreError> {
        if calls.is_empty() {
            return Ok(());
        }
        self.in_transaction(
            |tx, p| put_calls(tx, &p.0, calls),
            &[NEXT_IDS, INSERT_CALLS, INSERT_ATTEMPTS],
        )
    }

    pub(crate) fn insert_agent_states(&mut self, rows: &[AgentStateRow]) -> Result<(), StoreError> {
        if rows.is_empty() {
            return Ok(());
        }
        self.in_transaction(
            |tx, p| put_agent_states(tx, &p.0[0], rows),
            &[INSERT_STATES],
        )
    }

    pub(crate) fn spill_replayed(&self, file: &str) -> Result<u64, StoreError> {
        self.with(|c| {
            let stmt = c.prepare("SELECT \"offset\" FROM spill_replayed WHERE file = $1")?;
            let row = c.client.query_opt(&stmt, &[&file])?;
            row.map_or(Ok(0), |r| {
                r.try_get::<_, i64>(0)
                    .map(|o| u64::try_from(o).unwrap_or(0))
            })
        })
    }

    pub(crate) fn insert_replayed(
        &mut self,
        file: &str,
        offset: u64,
        calls: &[CallRow],
        states: &[AgentStateRow],
    ) -> Result<(), StoreError> {
        let offset = i64::try_from(offset).unwrap_or(i64::MAX);
        self.in_transaction(
            |tx, p| {
                put_calls(tx, &p.0[..3], calls)?;
                put_agent_states(tx, &p.0[3], states)?;
                tx.execute(
                    "INSERT INTO spill_replayed (file, \"offset\") VALUES ($1, $2)
                     ON CONFLICT (file) DO UPDATE SET \"offset\" = excluded.\"offset\"",
                    &[&file, &offset],
                )?;
                Ok(())
            },
            &[NEXT_IDS, INSERT_CALLS, INSERT_ATTEMPTS, INSERT_STATES],
        )
    }

    pub(crate) fn forget_spill(&mut self, file: &str) -> Result<(), StoreError> {
        self.with(|c| {
            c.client
                .execute("DELETE FROM spill_replayed WHERE file = $1", &[&file])
                .map(drop)
        })
    }

    pub(crate) fn call_count(&self) -> Result<u64, StoreError> {
        self.with(|c| {
            let n: i64 = c
                .client
                .query_one("SELECT COUNT(*) FROM calls", &[])?
                .try_get(0)?;
            Ok(n as u64)
        })
    }

    pub(crate) fn call(&self, call_id: u64) -> Result<Option<CallRow>, StoreError> {
        const SQL: &str = select_call!(" WHERE call_id = $1 ORDER BY id DESC LIMIT 1");
        self.with(|c| {
            let found = c.rows(SQL, &[&(call_id as i64)], |r| {
                Ok((r.try_get::<_, i64>(0)?, call_row(r)?))
            })?;
            match found.into_iter().next() {
                Some((id, mut call)) => {
                    call.attempts = attempts(c, id)?;
                    Ok(Some(call))
                }
                None => Ok(None),
            }
        })
    }

    pub(crate) fn calls_between(
        &self,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<Vec<CallRow>, StoreError> {
        const SQL: &str =
            select_call!(" WHERE arrived_ms >= $1 AND arrived_ms < $2 ORDER BY arrived_ms, id");
        self.with(|c| {
            let rows = c.rows(SQL, &[&from_ms, &to_ms], |r| {
                Ok((r.try_get::<_, i64>(0)?, call_row(r)?))
            })?;
            let mut out = Vec::with_capacity(rows.len());
            for (id, mut call) in rows {
                call.attempts = attempts(c, id)?;
                out.push(call);
            }
            Ok(out)
        })
    }

    pub(crate) fn agent_states(&self, agent: &str) -> Result<Vec<AgentStateRow>, StoreError> {
        self.with(|c| {
            c.rows(
                "SELECT agent, \"user\", state, reason, at_ms FROM agent_states
                 WHERE agent = $1 ORDER BY at_ms, id",
                &[&agent],
                |r| {
                    Ok(AgentStateRow {
                        agent: r.try_get(0)?,
                        user: r.try_get(1)?,
                        state: r.try_get(2)?,
                        reason: r.try_get(3)?,
                        at_ms: r.try_get(4)?,
                    })
                },
            )
        })
    }

    // Quality review and the audit log.

    pub(crate) fn insert_recordings(&mut self, rows: &[RecordingRow]) -> Result<(), StoreError> {
        if rows.is_empty() {
            return Ok(());
        }
        self.in_transaction(
            |tx, p| {
                for r in rows {
                    tx.execute(
                        &p.0[0],
                        &[
                            &(r.call_id as i64),
                            &r.file,
                            &r.sha256,
                            &(r.bytes as i64),
                            &r.duration_ms,
                            &r.finished_ms,
                        ],
                    )?;
                }
                Ok(())
            },
            &["INSERT INTO recordings
                (call_id, file, sha256, bytes, duration_ms, finished_ms)
               VALUES ($1, $2, $3, $4, $5, $6)
               ON CONFLICT (call_id) DO UPDATE SET file = excluded.file,
                sha256 = excluded.sha256, bytes = excluded.bytes,
                duration_ms = excluded.duration_ms, finished_ms = excluded.finished_ms"],
        )
    }

    pub(crate) fn save_callback(&mut self, c: &CallbackRow) -> Result<(), StoreError> {
        self.with(|conn| {
            let stmt = conn.prepare(
                "INSERT INTO callbacks
                    (key, queue, number, name, dialed, source, arrived_ms, queued_ms, attempts)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
                 ON CONFLICT (key) DO UPDATE SET attempts = excluded.attempts",
            )?;
            conn.client
                .execute(
                    &stmt,
                    &[
                        &c.key,
                        &c.queue,
                        &c.number,
                        &c.name,
                        &c.dialed,
                        &c.source,
                        &c.arrived_ms,
                        &c.queued_ms,
                        &i64::from(c.attempts),
                    ],
                )
                .map(|_| ())
        })
    }

    pub(crate) fn forget_callback(&mut self, key: &str) -> Result<(), StoreError> {
        self.with(|conn| {
            let stmt = conn.prepare("DELETE FROM callbacks WHERE key = $1")?;
            conn.client.execute(&stmt, &[&key]).map(|_| ())
        })
    }

    pub(crate) fn callbacks(&self) -> Result<Vec<CallbackRow>, StoreError> {
        self.with(|c| {
            c.rows(
                "SELECT key, queue, number, name, dialed, source, arrived_ms, queued_ms, attempts
                 FROM callbacks ORDER BY arrived_ms, key",
                &[],
                |r| {
                    Ok(CallbackRow {
                        key: r.try_get(0)?,
                        queue: r.try_get(1)?,
                        number: r.try_get(2)?,
                        name: r.try_get(3)?,
                        dialed: r.try_get(4)?,
                        source: r.try_get(5)?,
                        arrived_ms: r.try_get(6)?,
                        queued_ms: r.try_get(7)?,
                        attempts: u32::try_from(r.try_get::<_, i64>(8)?).unwrap_or(u32::MAX),
                    })
                },
            )
        })
    }

    pub(crate) fn insert_message(&mut self, m: &MessageRow) -> Result<i64, StoreError> {
        self.with(|c| {
            let stmt = c.prepare(
                "INSERT INTO messages
                    (call_id, mailbox, caller, file, received_ms, duration_ms, status)
                 VALUES ($1, $2, $3, $4, $5, $6, $7)
                 ON CONFLICT (file) DO UPDATE SET file = excluded.file
                 RETURNING id",
            )?;
            c.client
                .query_one(
                    &stmt,
                    &[
                        &(m.call_id as i64),
                        &m.mailbox,
                        &m.caller,
                        &m.file,
                        &m.received_ms,
                        &m.duration_ms,
                        &m.status,
                    ],
                )?
                .try_get(0)
        })
    }

    pub(crate) fn messages(&self) -> Result<Vec<MessageRow>, StoreError> {
        self.with(|c| {
            c.rows(
                "SELECT id, call_id, mailbox, caller, file, received_ms, duration_ms, status
                 FROM messages WHERE status <> 'deleted' ORDER BY received_ms, id",
                &[],
                |r| {
                    Ok(MessageRow {
                        id: r.try_get(0)?,
                        call_id: r.try_get::<_, i64>(1)? as u64,
                        mailbox: r.try_get(2)?,
                        caller: r.try_get(3)?,
                        file: r.try_get(4)?,
                        received_ms: r.try_get(5)?,
                        duration_ms: r.try_get(6)?,
                        status: r.try_get(7)?,
                    })
                },
            )
        })
    }

    pub(crate) fn set_message_status(&mut self, id: i64, status: &str) -> Result<(), StoreError> {
        self.with(|c| {
            let stmt = c.prepare("UPDATE messages SET status = $2 WHERE id = $1")?;
            c.client.execute(&stmt, &[&id, &status]).map(|_| ())
        })
    }

    pub(crate) fn recording(&self, call_id: u64) -> Result<Option<RecordingRow>, StoreError> {
        self.with(|c| recording(c, call_id))
    }

    pub(crate) fn search_calls(&self, filter: &CallFilter) -> Result<Vec<FoundCall>, StoreError> {
        const SQL: &str = select_call!(
            " WHERE arrived_ms >= $1 AND arrived_ms < $2
                AND ($3::TEXT IS NULL OR queue = $3::TEXT)
                AND ($4::TEXT IS NULL OR agent = $4::TEXT)
                AND ($5::TEXT IS NULL OR outcome = $5::TEXT)
                AND (NOT $6::BOOLEAN OR call_id IN (SELECT call_id FROM recordings))
             ORDER BY arrived_ms DESC, id DESC LIMIT $7"
        );
        self.with(|c| {
            let calls = c.rows(
                SQL,
                &[
                    &filter.from_ms,
                    &filter.to_ms,
                    &filter.queue,
                    &filter.agent,
                    &filter.outcome,
                    &filter.recorded,
                    &i64::from(filter.limit),
                ],
                call_row,
            )?;
            let mut out = Vec::with_capacity(calls.len());
            for call in calls {
                let recording = recording(c, call.call_id)?;
                out.push(FoundCall { call, recording });
            }
            Ok(out)
        })
    }

    pub(crate) fn insert_review(&mut self, review: &ReviewRow) -> Result<(), StoreError> {
        self.with(|c| {
            c.client
                .execute(
                    "INSERT INTO reviews (call_id, reviewer, score, comment, at_ms)
                     VALUES ($1, $2, $3, $4, $5)",
                    &[
                        &(review.call_id as i64),
                        &review.reviewer,
                        &i16::from(review.score),
                        &review.comment,
                        &review.at_ms,
                    ],
                )
                .map(drop)
        })
    }

    pub(crate) fn set_disposition(&mut self, call_id: u64, code: &str) -> Result<bool, StoreError> {
        self.with(|c| {
            c.client
                .execute(
                    "UPDATE calls SET disposition = $1 WHERE call_id = $2",
                    &[&code, &(call_id as i64)],
                )
                .map(|n| n > 0)
        })
    }

    pub(crate) fn reviews(&self, call_id: u64) -> Result<Vec<ReviewRow>, StoreError> {
        self.with(|c| {
            c.rows(
                "SELECT call_id, reviewer, score, comment, at_ms FROM reviews
                 WHERE call_id = $1 ORDER BY at_ms, id",
                &[&(call_id as i64)],
                |r| {
                    Ok(ReviewRow {
                        call_id: r.try_get::<_, i64>(0)? as u64,
                        reviewer: r.try_get(1)?,
                        score: u8::try_from(r.try_get::<_, i16>(2)?).unwrap_or(0),
                        comment: r.try_get(3)?,
                        at_ms: r.try_get(4)?,
                    })
                },
            )
        })
    }

    pub(crate) fn audit(&mut self, row: &AuditRow) -> Result<(), StoreError> {
        self.with(|c| {
            c.client
                .execute(
                    "INSERT INTO audit (at_ms, login, action, call_id, detail)
                     VALUES ($1, $2, $3, $4, $5)",
                    &[
                        &row.at_ms,
                        &row.login,
                        &row.action,
                        &row.call_id.map(|c| c as i64),
                        &row.detail,
                    ],
                )
                .map(drop)
        })
    }

    pub(crate) fn audit_log(
        &self,
        from_ms: i64,
        to_ms: i64,
        limit: u32,
    ) -> Result<Vec<AuditRow>, StoreError> {
        self.with(|c| {
            c.rows(
                "SELECT at_ms, login, action, call_id, detail FROM audit
                 WHERE at_ms >= $1 AND at_ms < $2 ORDER BY at_ms, id LIMIT $3",
                &[&from_ms, &to_ms, &i64::from(limit)],
                |r| {
                    Ok(AuditRow {
                        at_ms: r.try_get(0)?,
                        login: r.try_get(1)?,
                        action: r.try_get(2)?,
                        call_id: r.try_get::<_, Option<i64>>(3)?.map(|c| c as u64),
                        detail: r.try_get(4)?,
                    })
                },
            )
        })
    }

    // Reports.

    /// Feed `count` the queue calls of `[from_ms, to_ms)`, streamed in time order.
    pub(crate) fn queue_rows(
        &self,
        from_ms: i64,
        to_ms: i64,
        count: &mut QueueCount,
    ) -> Result<(), StoreError> {
        self.with(|c| {
            let stmt = c.prepare(
                "SELECT arrived_ms, queue, outcome, wait_ms, talk_ms + hold_ms + wrap_up_ms
                 FROM calls
                 WHERE arrived_ms >= $1 AND arrived_ms < $2 AND queue IS NOT NULL
                 ORDER BY arrived_ms",
            )?;
            let params: [&(dyn ToSql + Sync); 2] = [&from_ms, &to_ms];
            let mut rows = c.client.query_raw(&stmt, params)?;
            while let Some(r) = rows.next()? {
                count.add(
                    r.try_get(0)?,
                    r.try_get::<_, Option<&str>>(1)?.unwrap_or(""),
                    r.try_get(2)?,
                    r.try_get(3)?,
                    r.try_get(4)?,
                );
            }
            drop(rows);
            let overflowed = c.rows(
                "SELECT arrived_ms, overflowed_from FROM calls
                 WHERE overflowed_from IS NOT NULL AND arrived_ms >= $1 AND arrived_ms < $2",
                &[&from_ms, &to_ms],
                |r| Ok((r.try_get::<_, i64>(0)?, r.try_get::<_, String>(1)?)),
            )?;
            for (arrived, queue) in overflowed {
                count.overflowed(arrived, &queue);
            }
            Ok(())
        })
    }

    /// Calls that ended at or after `from_ms`, in the order they ended.
    pub(crate) fn ended_since(&self, from_ms: i64) -> Result<Vec<EndedRow>, StoreError> {
        self.with(|c| {
            c.rows(
                "SELECT call_id, queue, agent, outcome, wait_ms,
                    talk_ms + hold_ms + wrap_up_ms, ended_ms, overflowed_from
                 FROM calls WHERE arrived_ms >= $1::BIGINT - 86400000 AND ended_ms >= $1::BIGINT
                 ORDER BY ended_ms, id",
                &[&from_ms],
                |r| {
                    Ok(EndedRow {
                        call_id: r.try_get::<_, i64>(0)? as u64,
                        queue: r.try_get(1)?,
                        agent: r.try_get(2)?,
                        outcome: r.try_get(3)?,
                        wait_ms: r.try_get(4)?,
                        handle_ms: r.try_get(5)?,
                        ended_ms: r.try_get(6)?,
                        overflowed_from: r.try_get(7)?,
                    })
                },
            )
        })
    }

    /// Agent state changes at `[from_ms, to_ms)`, by agent then time.
    pub(crate) fn state_changes(
        &self,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<Vec<(String, String, i64)>, StoreError> {
        self.with(|c| {
            c.rows(
                "SELECT agent, state, at_ms FROM agent_states
                 WHERE at_ms >= $1 AND at_ms < $2 ORDER BY agent COLLATE \"C\", at_ms, id",
                &[&from_ms, &to_ms],
                |r| Ok((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?)),
            )
        })
    }

    /// Per agent and slot (`interval_ms` at least 1), for answered calls.
    pub(crate) fn agent_intervals(
        &self,
        from_ms: i64,
        to_ms: i64,
        interval_ms: i64,
    ) -> Result<Vec<AgentInterval>, StoreError> {
        self.with(|c| {
            c.rows(
                "SELECT (arrived_ms - $1) / $3 AS slot, agent, COUNT(*),
                    SUM(talk_ms)::BIGINT, SUM(hold_ms)::BIGINT, SUM(wrap_up_ms)::BIGINT,
                    AVG(talk_ms + hold_ms + wrap_up_ms)::DOUBLE PRECISION
                 FROM calls
                 WHERE arrived_ms >= $1 AND arrived_ms < $2 AND outcome = 'answered'
                    AND agent IS NOT NULL
                 GROUP BY agent, slot
                 ORDER BY slot, agent COLLATE \"C\"",
                &[&from_ms, &to_ms, &interval_ms],
                |r| {
                    Ok(AgentInterval {
                        start_ms: from_ms + r.try_get::<_, i64>(0)? * interval_ms,
                        agent: r.try_get(1)?,
                        answered: r.try_get::<_, i64>(2)? as u64,
                        talk_ms: r.try_get(3)?,
                        hold_ms: r.try_get(4)?,
                        wrap_up_ms: r.try_get(5)?,
                        aht_ms: r.try_get(6)?,
                    })
                },
            )
        })
    }
}

/// Statements prepared for one transaction, in the order asked for.
struct Prepared(Vec<Statement>);

/// Write `calls` and their ring attempts with the prepared `[NEXT_IDS, INSERT_CALLS,
/// INSERT_ATTEMPTS]`.
fn put_calls(
    tx: &mut Transaction<'_>,
    statements: &[Statement],
    calls: &[CallRow],
) -> Result<(), postgres::Error> {
    let [next_ids, insert_calls, insert_attempts] = statements else {
        unreachable!("three statements prepared for put_calls");
    };
    if calls.is_empty() {
        return Ok(());
    }
    // Ids in ascending order, so that a later call has a higher id (as in SQLite).
    let mut ids: Vec<i64> = tx
        .query(next_ids, &[&(calls.len() as i64)])?
        .iter()
        .map(|r| r.try_get(0))
        .collect::<Result<_, _>>()?;
    ids.sort_unstable();
    let col = |f: fn(&CallRow) -> i64| calls.iter().map(f).collect::<Vec<i64>>();
    let opt = |f: fn(&CallRow) -> Option<i64>| calls.iter().map(f).collect::<Vec<_>>();
    let text = |f: fn(&CallRow) -> &str| calls.iter().map(f).collect::<Vec<&str>>();
    let opt_text = |f: fn(&CallRow) -> Option<&str>| calls.iter().map(f).collect::<Vec<_>>();
    tx.execute(
        insert_calls,
        &[
            &ids,
            &col(|c| c.call_id as i64),
            &text(|c| &c.sip_call_id),
            &text(|c| &c.caller),
            &opt_text(|c| c.caller_name.as_deref()),
            &text(|c| &c.dialed),
            &text(|c| &c.source),
            &opt_text(|c| c.queue.as_deref()),
            &opt_text(|c| c.agent.as_deref()),
            &col(|c| c.arrived_ms),
            &opt(|c| c.queued_ms),
            &opt(|c| c.first_offer_ms),
            &opt(|c| c.answered_ms),
            &col(|c| c.ended_ms),
            &col(|c| c.wait_ms),
            &col(|c| c.talk_ms),
            &col(|c| c.hold_ms),
            &col(|c| c.wrap_up_ms),
            &text(|c| &c.outcome),
            &text(|c| &c.hung_up_by),
            &text(|c| &c.reason),
            &calls.iter().map(|c| c.recorded).collect::<Vec<bool>>(),
            &opt_text(|c| c.disposition.as_deref()),
            &calls
                .iter()
                .map(|c| c.satisfaction.map(i16::from))
                .collect::<Vec<_>>(),
            &opt_text(|c| c.overflowed_from.as_deref()),
            &calls
                .iter()
                .map(|c| crate::variables_to(&c.variables))
                .collect::<Vec<_>>(),
            &calls
                .iter()
                .map(|c| c.callback.then_some(true))
                .collect::<Vec<_>>(),
            &calls
                .iter()
                .map(|c| crate::segments_to(&c.segments))
                .collect::<Vec<_>>(),
        ],
    )?;
    let attempts: Vec<(i64, i32, &AttemptRow)> = ids
        .iter()
        .zip(calls)
        .flat_map(|(id, c)| {
            c.attempts
                .iter()
                .enumerate()
                .map(move |(i, a)| (*id, i as i32, a))
        })
        .collect();
    if attempts.is_empty() {
        return Ok(());
    }
    tx.execute(
        insert_attempts,
        &[
            &attempts.iter().map(|a| a.0).collect::<Vec<i64>>(),
            &attempts.iter().map(|a| a.1).collect::<Vec<i32>>(),
            &attempts
                .iter()
                .map(|a| a.2.agent.as_str())
                .collect::<Vec<_>>(),
            &attempts
                .iter()
                .map(|a| a.2.contact.as_str())
                .collect::<Vec<_>>(),
            &attempts
                .iter()
                .map(|a| a.2.started_ms)
                .collect::<Vec<i64>>(),
            &attempts.iter().map(|a| a.2.ended_ms).collect::<Vec<_>>(),
            &attempts
                .iter()
                .map(|a| a.2.result.as_str())
                .collect::<Vec<_>>(),
        ],
    )?;
    Ok(())
}

/// Write agent state changes with the prepared `INSERT_STATES` (in the order given: their
/// ids follow it).
fn put_agent_states(
    tx: &mut Transaction<'_>,
    insert: &Statement,
    rows: &[AgentStateRow],
) -> Result<(), postgres::Error> {
    if rows.is_empty() {
        return Ok(());
    }
    tx.execute(
        insert,
        &[
            &rows.iter().map(|r| r.agent.as_str()).collect::<Vec<_>>(),
            &rows.iter().map(|r| r.user.as_str()).collect::<Vec<_>>(),
            &rows.iter().map(|r| r.state.as_str()).collect::<Vec<_>>(),
            &rows.iter().map(|r| r.reason.as_deref()).collect::<Vec<_>>(),
            &rows.iter().map(|r| r.at_ms).collect::<Vec<i64>>(),
        ],
    )?;
    Ok(())
}

fn call_row(r: &Row) -> Result<CallRow, postgres::Error> {
    Ok(CallRow {
        call_id: r.try_get::<_, i64>(1)? as u64,
        sip_call_id: r.try_get(2)?,
        caller: r.try_get(3)?,
        caller_name: r.try_get(4)?,
        dialed: r.try_get(5)?,
        source: r.try_get(6)?,
        queue: r.try_get(7)?,
        agent: r.try_get(8)?,
        arrived_ms: r.try_get(9)?,
        queued_ms: r.try_get(10)?,
        first_offer_ms: r.try_get(11)?,
        answered_ms: r.try_get(12)?,
        ended_ms: r.try_get(13)?,
        wait_ms: r.try_get(14)?,
        talk_ms: r.try_get(15)?,
        hold_ms: r.try_get(16)?,
        wrap_up_ms: r.try_get(17)?,
        outcome: r.try_get(18)?,
        hung_up_by: r.try_get(19)?,
        reason: r.try_get(20)?,
        recorded: r.try_get(21)?,
        disposition: r.try_get(22)?,
        satisfaction: r
            .try_get::<_, Option<i16>>(23)?
            .and_then(|s| u8::try_from(s).ok()),
        overflowed_from: r.try_get(24)?,
        variables: crate::variables_from(r.try_get::<_, Option<String>>(25)?.as_deref()),
        callback: r.try_get::<_, Option<bool>>(26)?.unwrap_or(false),
        segments: crate::segments_from(r.try_get::<_, Option<String>>(27)?.as_deref()),
        attempts: Vec::new(),
    })
}

fn attempts(c: &mut Conn, row: i64) -> Result<Vec<AttemptRow>, postgres::Error> {
    c.rows(
        "SELECT agent, contact, started_ms, ended_ms, result FROM ring_attempts
         WHERE call = $1 ORDER BY seq",
        &[&row],
        |r| {
            Ok(AttemptRow {
                agent: r.try_get(0)?,
                contact: r.try_get(1)?,
                started_ms: r.try_get(2)?,
                ended_ms: r.try_get(3)?,
                result: r.try_get(4)?,
            })
        },
    )
}

fn recording(c: &mut Conn, call_id: u64) -> Result<Option<RecordingRow>, postgres::Error> {
    let found = c.rows(
        "SELECT call_id, file, sha256, bytes, duration_ms, finished_ms
         FROM recordings WHERE call_id = $1",
        &[&(call_id as i64)],
        |r| {
            Ok(RecordingRow {
                call_id: r.try_get::<_, i64>(0)? as u64,
                file: r.try_get(1)?,
                sha256: r.try_get(2)?,
                bytes: r.try_get::<_, i64>(3)? as u64,
                duration_ms: r.try_get(4)?,
                finished_ms: r.try_get(5)?,
            })
        },
    )?;
    Ok(found.into_iter().next())
}
