//! Agents' time by state per report slot, from the agent state history: logged in, paused,
//! handling calls, and occupancy.
//!
//! - logged in: every state but `logged_out`;
//! - paused: `not_ready`;
//! - handling: `busy` and `wrap_up` (talking, holding, after-call work);
//! - occupancy: handling over handling plus available (`ready`, `ringing`), the share of the
//!   time an agent could take calls that they spent on them (paused time counts for neither).
//!
//! A state runs until the agent's next state, or until `now` for the latest one. A state set
//! more than 7 days before the report's first slot is not looked for: an agent who has not
//! changed state in a week shows no time.

use std::collections::BTreeMap;

use rusqlite::params;

use crate::sqlite::Sqlite;
use crate::{Store, StoreError};

/// How far back the state an agent was in at the report's start is looked for.
const LOOKBACK_MS: i64 = 7 * 86_400_000;

/// One agent's time in one slot.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AgentTime {
    /// Slot start (Unix milliseconds).
    pub start_ms: i64,
    /// The agent.
    pub agent: String,
    /// Logged in (milliseconds).
    pub logged_in_ms: i64,
    /// Paused (milliseconds).
    pub paused_ms: i64,
    /// Ready or ringing (milliseconds).
    pub available_ms: i64,
    /// On calls or in wrap-up (milliseconds).
    pub handling_ms: i64,
}

impl AgentTime {
    /// Handling over handling plus available, when the agent was available at all.
    pub fn occupancy(&self) -> Option<f64> {
        let base = self.handling_ms + self.available_ms;
        (base > 0).then(|| self.handling_ms as f64 / base as f64)
    }
}

impl Store {
    /// Per agent and slot of `interval_ms` in `[from_ms, to_ms)`, time counted up to `now_ms`.
    /// Slots where an agent was logged out throughout are left out.
    pub fn agent_times(
        &self,
        from_ms: i64,
        to_ms: i64,
        interval_ms: i64,
        now_ms: i64,
    ) -> Result<Vec<AgentTime>, StoreError> {
        let interval_ms = interval_ms.max(1);
        let end = to_ms.min(now_ms);
        let changes = on_backend!(self, db => db.state_changes(from_ms - LOOKBACK_MS, end))?;
        let mut acc: BTreeMap<(i64, String), AgentTime> = BTreeMap::new();
        for (i, (agent, state, at)) in changes.iter().enumerate() {
            let until = match changes.get(i + 1) {
                Some((next, _, t)) if next == agent => *t,
                _ => end,
            };
            let (mut t, until) = ((*at).max(from_ms), until.min(end));
            while t < until {
                let slot = (t - from_ms) / interval_ms;
                let slot_end = from_ms + (slot + 1) * interval_ms;
                let span = until.min(slot_end) - t;
                if state != "logged_out" {
                    let a = acc
                        .entry((slot, agent.clone()))
                        .or_insert_with(|| AgentTime {
                            start_ms: from_ms + slot * interval_ms,
                            agent: agent.clone(),
                            ..AgentTime::default()
                        });
                    a.logged_in_ms += span;
                    match state.as_str() {
                        "not_ready" => a.paused_ms += span,
                        "busy" | "wrap_up" => a.handling_ms += span,
                        _ => a.available_ms += span,
                    }
                }
                t += span;
            }
        }
        Ok(acc.into_values().collect())
    }
}

impl Sqlite {
    /// Agent state changes at `[from_ms, to_ms)`, by agent then time.
    pub(crate) fn state_changes(
        &self,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<Vec<(String, String, i64)>, StoreError> {
        self.rows(
            "SELECT agent, state, at_ms FROM agent_states
             WHERE at_ms >= ?1 AND at_ms < ?2 ORDER BY agent, at_ms, id",
            params![from_ms, to_ms],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
    }
}
