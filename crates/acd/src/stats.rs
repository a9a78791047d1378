//! Live statistics per queue and per agent.

use std::time::Duration;

use serde::Serialize;

use crate::types::AgentState;

/// Running totals of a queue since it was added.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct QueueCounters {
    /// Calls that joined the queue (including calls overflowed into it).
    pub entered: u64,
    /// Calls refused on arrival by the join-empty policy.
    pub refused: u64,
    /// Calls answered.
    pub answered: u64,
    /// Calls answered within the service-level threshold.
    pub answered_in_sl: u64,
    /// Calls abandoned after the short-abandon threshold.
    pub abandoned: u64,
    /// Calls abandoned within the short-abandon threshold.
    pub short_abandoned: u64,
    /// Calls that reached maximum wait without an overflow target.
    pub timed_out: u64,
    /// Calls that reached maximum wait and overflowed.
    pub overflowed: u64,
    /// Calls that left because the queue became empty.
    pub left_empty: u64,
    /// Connected calls that have ended.
    pub completed: u64,
    /// Wait of answered calls, summed.
    pub total_hold: Duration,
    /// Talk time of completed calls, summed.
    pub total_talk: Duration,
    /// Wrap-up time after this queue's calls, summed.
    pub total_wrap: Duration,
}

impl QueueCounters {
    /// Average handle time (talk + wrap-up) of completed calls.
    pub fn aht(&self) -> Option<Duration> {
        (self.completed > 0).then(|| (self.total_talk + self.total_wrap) / self.completed as u32)
    }
}

fn ratio(num: u64, den: u64) -> Option<f64> {
    (den > 0).then(|| num as f64 / den as f64)
}

/// A queue's statistics at one moment.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct QueueStats {
    /// Running totals.
    pub counters: QueueCounters,
    /// Calls waiting now.
    pub waiting: u32,
    /// Wait of the longest-waiting call now.
    pub longest_wait: Duration,
    /// Agents of the queue logged in.
    pub agents_logged_in: u32,
    /// Agents of the queue available (Ready, ringing, on a call or in wrap-up).
    pub agents_available: u32,
    /// Answered within the threshold ÷ answered.
    pub service_level: Option<f64>,
    /// Answered within the threshold ÷ (answered + abandoned), short abandons excluded.
    pub service_level_with_abandons: Option<f64>,
    /// Average speed of answer: mean wait of answered calls.
    pub asa: Option<Duration>,
    /// Average handle time (talk + wrap-up).
    pub aht: Option<Duration>,
    /// Abandoned ÷ (answered + abandoned + timed out + overflowed + left empty), short abandons
    /// excluded from both sides.
    pub abandon_rate: Option<f64>,
    /// Occupancy of the queue's agents: (ringing + talk + wrap-up) ÷ (that + Ready time).
    pub occupancy: Option<f64>,
}

impl QueueStats {
    pub(crate) fn new(
        counters: QueueCounters,
        waiting: u32,
        longest_wait: Duration,
        agents_logged_in: u32,
        agents_available: u32,
        occupancy: Option<f64>,
    ) -> Self {
        let c = &counters;
        let resolved = c.answered + c.abandoned + c.timed_out + c.overflowed + c.left_empty;
        QueueStats {
            service_level: ratio(c.answered_in_sl, c.answered),
            service_level_with_abandons: ratio(c.answered_in_sl, c.answered + c.abandoned),
            asa: (c.answered > 0).then(|| c.total_hold.div_f64(c.answered as f64)),
            aht: c.aht(),
            abandon_rate: ratio(c.abandoned, resolved),
            occupancy,
            waiting,
            longest_wait,
            agents_logged_in,
            agents_available,
            counters,
        }
    }
}

/// Running totals of an agent: time per state and calls.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct AgentCounters {
    /// Calls answered.
    pub calls_answered: u64,
    /// Talk time.
    pub talk: Duration,
    /// Time Ready.
    pub ready: Duration,
    /// Time ringing.
    pub offered: Duration,
    /// Time on calls.
    pub on_call: Duration,
    /// Time in wrap-up (and rests after a ring-no-answer).
    pub wrap_up: Duration,
    /// Time NotReady.
    pub not_ready: Duration,
}

impl AgentCounters {
    pub(crate) fn add(&mut self, o: &AgentCounters) {
        self.calls_answered += o.calls_answered;
        self.talk += o.talk;
        self.ready += o.ready;
        self.offered += o.offered;
        self.on_call += o.on_call;
        self.wrap_up += o.wrap_up;
        self.not_ready += o.not_ready;
    }

    /// (ringing + on call + wrap-up) ÷ (that + Ready); NotReady and logged-out time excluded.
    pub fn occupancy(&self) -> Option<f64> {
        let busy = self.offered + self.on_call + self.wrap_up;
        let staffed = busy + self.ready;
        (!staffed.is_zero()).then(|| busy.as_secs_f64() / staffed.as_secs_f64())
    }
}

/// An agent's statistics at one moment.
#[derive(Debug, Clone, PartialEq)]
pub struct AgentStats {
    /// Running totals including the current state up to now.
    pub counters: AgentCounters,
    /// Current state.
    pub state: AgentState,
    /// Occupancy.
    pub occupancy: Option<f64>,
}

impl AgentStats {
    pub(crate) fn new(counters: AgentCounters, state: AgentState) -> Self {
        AgentStats {
            occupancy: counters.occupancy(),
            counters,
            state,
        }
    }
}
