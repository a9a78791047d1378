//! Interval reports over the stored calls: per queue and per agent, in slots of 15, 30 or 60
//! minutes, the figures team leads report on. The database does the counting (one grouped
//! query over the `arrived_ms` index), so a day of a busy center is read in one pass.
//!
//! Definitions (the ones contact-center tools use):
//! - offered: calls that arrived at the queue in the slot;
//! - answered, abandoned: by outcome; other: timed out, overflowed, no agents, failed;
//! - service level: answered within the threshold, over offered (a short abandon counts as
//!   offered and not answered);
//! - ASA (average speed of answer): mean wait of the answered calls;
//! - AHT (average handle time): mean talk + hold + wrap-up of the answered calls.

use rusqlite::params;

use crate::{Store, StoreError};

/// One queue in one slot.
#[derive(Debug, Clone, PartialEq)]
pub struct QueueInterval {
    /// Slot start (Unix milliseconds).
    pub start_ms: i64,
    /// The queue.
    pub queue: String,
    /// Calls that arrived.
    pub offered: u64,
    /// Answered by an agent.
    pub answered: u64,
    /// The caller hung up first.
    pub abandoned: u64,
    /// Timed out, overflowed, no agents, failed.
    pub other: u64,
    /// Answered within the service-level threshold.
    pub answered_in_time: u64,
    /// `answered_in_time / offered`, when anything was offered.
    pub service_level: Option<f64>,
    /// Mean wait of the answered calls (milliseconds).
    pub asa_ms: Option<f64>,
    /// Mean talk + hold + wrap-up of the answered calls (milliseconds).
    pub aht_ms: Option<f64>,
    /// Longest wait of any call (milliseconds).
    pub longest_wait_ms: i64,
}

/// One agent in one slot.
#[derive(Debug, Clone, PartialEq)]
pub struct AgentInterval {
    /// Slot start (Unix milliseconds).
    pub start_ms: i64,
    /// The agent.
    pub agent: String,
    /// Calls the agent answered.
    pub answered: u64,
    /// Talk time (milliseconds).
    pub talk_ms: i64,
    /// Hold time (milliseconds).
    pub hold_ms: i64,
    /// Wrap-up time (milliseconds).
    pub wrap_up_ms: i64,
    /// Mean talk + hold + wrap-up (milliseconds).
    pub aht_ms: Option<f64>,
}

impl Store {
    /// Per queue and slot of `interval_ms`, for calls that arrived in `[from_ms, to_ms)`;
    /// `service_level_ms` is the threshold for "answered in time". Slots without calls are
    /// left out.
    pub fn queue_intervals(
        &self,
        from_ms: i64,
        to_ms: i64,
        interval_ms: i64,
        service_level_ms: i64,
    ) -> Result<Vec<QueueInterval>, StoreError> {
        let interval_ms = interval_ms.max(1);
        // One pass over the covering index, counted here: cheaper than SQL aggregates.
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT arrived_ms, queue, outcome, wait_ms, talk_ms + hold_ms + wrap_up_ms
                 FROM calls
                 WHERE arrived_ms >= ?1 AND arrived_ms < ?2 AND queue IS NOT NULL",
            )
            .map_err(|e| self.err(e))?;
        #[derive(Default)]
        struct Acc {
            offered: u64,
            answered: u64,
            abandoned: u64,
            in_time: u64,
            wait_sum: i64,
            handle_sum: i64,
            longest: i64,
        }
        let mut acc: std::collections::BTreeMap<(i64, String), Acc> = Default::default();
        let mut rows = stmt
            .query(params![from_ms, to_ms])
            .map_err(|e| self.err(e))?;
        let mut last: Option<(i64, String)> = None;
        while let Some(r) = rows.next().map_err(|e| self.err(e))? {
            let (arrived, outcome, wait, handle) = (|| -> rusqlite::Result<_> {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get_ref(2)?.as_str().unwrap_or(""),
                    r.get::<_, i64>(3)?,
                    r.get::<_, i64>(4)?,
                ))
            })()
            .map_err(|e| self.err(e))?;
            let queue = r
                .get_ref(1)
                .ok()
                .and_then(|v| v.as_str().ok())
                .unwrap_or("");
            let slot = (arrived - from_ms) / interval_ms;
            // Rows come in time order: most are in the same slot and queue as the last.
            let key = match &last {
                Some((s, q)) if *s == slot && q == queue => last.clone().expect("set"),
                _ => {
                    let k = (slot, queue.to_owned());
                    last = Some(k.clone());
                    k
                }
            };
            let a = acc.entry(key).or_default();
            a.offered += 1;
            a.longest = a.longest.max(wait);
            match outcome {
                "answered" => {
                    a.answered += 1;
                    a.wait_sum += wait;
                    a.handle_sum += handle;
                    if wait <= service_level_ms {
                        a.in_time += 1;
                    }
                }
                "abandoned" => a.abandoned += 1,
                _ => {}
            }
        }
        Ok(acc
            .into_iter()
            .map(|((slot, queue), a)| QueueInterval {
                start_ms: from_ms + slot * interval_ms,
                queue,
                offered: a.offered,
                answered: a.answered,
                abandoned: a.abandoned,
                other: a.offered - a.answered - a.abandoned,
                answered_in_time: a.in_time,
                service_level: (a.offered > 0).then(|| a.in_time as f64 / a.offered as f64),
                asa_ms: (a.answered > 0).then(|| a.wait_sum as f64 / a.answered as f64),
                aht_ms: (a.answered > 0).then(|| a.handle_sum as f64 / a.answered as f64),
                longest_wait_ms: a.longest,
            })
            .collect())
    }

    /// Per agent and slot, for answered calls that arrived in `[from_ms, to_ms)`.
    pub fn agent_intervals(
        &self,
        from_ms: i64,
        to_ms: i64,
        interval_ms: i64,
    ) -> Result<Vec<AgentInterval>, StoreError> {
        let interval_ms = interval_ms.max(1);
        self.rows(
            "SELECT (arrived_ms - ?1) / ?3 AS slot, agent, COUNT(*),
                SUM(talk_ms), SUM(hold_ms), SUM(wrap_up_ms),
                AVG(talk_ms + hold_ms + wrap_up_ms)
             FROM calls
             WHERE arrived_ms >= ?1 AND arrived_ms < ?2 AND outcome = 'answered'
                AND agent IS NOT NULL
             GROUP BY agent, slot
             ORDER BY slot, agent",
            params![from_ms, to_ms, interval_ms],
            |r| {
                Ok(AgentInterval {
                    start_ms: from_ms + r.get::<_, i64>(0)? * interval_ms,
                    agent: r.get(1)?,
                    answered: r.get::<_, i64>(2)? as u64,
                    talk_ms: r.get(3)?,
                    hold_ms: r.get(4)?,
                    wrap_up_ms: r.get(5)?,
                    aht_ms: r.get(6)?,
                })
            },
        )
    }
}
