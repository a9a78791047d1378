//! Identifiers, time, commands, events and errors.

use std::fmt;
use std::ops::{Add, Sub};
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

use crate::queue_log::QueueLogEvent;

/// A point in time, in microseconds since an epoch the driver chose (e.g. the `Instant` it
/// started at, or zero in a simulation). The engine never reads a clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize)]
pub struct Time(u64);

impl Time {
    /// The epoch.
    pub const ZERO: Time = Time(0);

    /// From microseconds since the epoch.
    pub const fn from_micros(us: u64) -> Self {
        Time(us)
    }

    /// From seconds since the epoch.
    pub const fn from_secs(s: u64) -> Self {
        Time(s * 1_000_000)
    }

    /// From fractional seconds since the epoch (negative values clamp to zero).
    pub fn from_secs_f64(s: f64) -> Self {
        Time((s.max(0.0) * 1e6).round() as u64)
    }

    /// Microseconds since the epoch.
    pub const fn as_micros(self) -> u64 {
        self.0
    }

    /// Seconds since the epoch.
    pub fn as_secs_f64(self) -> f64 {
        self.0 as f64 / 1e6
    }

    /// Time elapsed from `earlier` to `self` (zero if `earlier` is later).
    pub fn since(self, earlier: Time) -> Duration {
        Duration::from_micros(self.0.saturating_sub(earlier.0))
    }
}

impl From<Duration> for Time {
    fn from(d: Duration) -> Self {
        Time(d.as_micros().min(u64::MAX as u128) as u64)
    }
}

impl Add<Duration> for Time {
    type Output = Time;
    fn add(self, d: Duration) -> Time {
        Time(
            self.0
                .saturating_add(d.as_micros().min(u64::MAX as u128) as u64),
        )
    }
}

impl Sub<Time> for Time {
    type Output = Duration;
    fn sub(self, earlier: Time) -> Duration {
        self.since(earlier)
    }
}

/// An agent, numbered densely in the order agents were added.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct AgentId(pub u32);

/// A queue, numbered densely in the order queues were added.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct QueueId(pub u32);

/// A call, numbered by the call control (unique while the call is in the ACD).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct CallId(pub u64);

impl fmt::Display for CallId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// A skill, interned from its name by [`crate::Acd::skill`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct Skill(pub u16);

/// Proficiency in a skill, 1–10 (10 is best).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct Proficiency(u8);

impl Proficiency {
    /// Lowest proficiency.
    pub const MIN: Proficiency = Proficiency(1);
    /// Highest proficiency.
    pub const MAX: Proficiency = Proficiency(10);

    /// A proficiency, if `level` is within 1–10.
    pub const fn new(level: u8) -> Option<Self> {
        if level >= 1 && level <= 10 {
            Some(Proficiency(level))
        } else {
            None
        }
    }

    /// The level, 1–10.
    pub const fn get(self) -> u8 {
        self.0
    }
}

/// Why an agent is NotReady: a reason code such as `"break"`, `"lunch"` or `"training"`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ReasonCode(pub Arc<str>);

impl ReasonCode {
    /// A reason code.
    pub fn new(code: &str) -> Self {
        ReasonCode(Arc::from(code))
    }

    /// The code as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ReasonCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The state of an agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AgentState {
    /// Not logged in: never offered calls.
    LoggedOut,
    /// Waiting for a call.
    Ready,
    /// Logged in but paused, with a reason code.
    NotReady(ReasonCode),
    /// The agent's phone is ringing with this call.
    Offered(CallId),
    /// Talking on this call.
    OnCall(CallId),
    /// After-call work until the given time (also used for the rest after a ring-no-answer).
    WrapUp {
        /// When wrap-up ends and the agent becomes Ready.
        until: Time,
    },
}

/// The state of a call in the ACD.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallState {
    /// In line in a queue.
    Waiting,
    /// Ringing one agent (or several, for ring-all).
    Offered,
    /// Talking to an agent.
    Connected(AgentId),
}

/// Who ended a connected call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum Party {
    /// The agent hung up.
    Agent,
    /// The caller hung up.
    Caller,
}

/// A new call for a queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallArrival {
    /// The call's id (chosen by the call control).
    pub call: CallId,
    /// The queue.
    pub queue: QueueId,
    /// Priority 0–9, higher is served first; FIFO within a priority.
    pub priority: u8,
    /// Extra skills this call requires besides the queue's (e.g. a language chosen in a menu):
    /// skill, minimum proficiency, optional.
    pub extra_skills: Vec<(Skill, Proficiency, bool)>,
}

/// An input to the engine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AcdCommand {
    /// The agent logs in and becomes Ready.
    Login(AgentId),
    /// The agent logs out (not allowed while on a call).
    Logout(AgentId),
    /// The agent becomes Ready (ends NotReady or wrap-up early; while on a call it cancels a
    /// pending NotReady).
    Ready(AgentId),
    /// The agent pauses. While Offered the offer is withdrawn; while on a call the pause takes
    /// effect when the call (and its wrap-up) ends.
    NotReady(AgentId, ReasonCode),
    /// A call arrives in a queue.
    Arrive(CallArrival),
    /// The agent answered the call it was offered.
    Answer {
        /// The call.
        call: CallId,
        /// The agent that answered.
        agent: AgentId,
    },
    /// The offer failed (the phone was busy, declined, or did not answer): counts as a
    /// ring-no-answer; the call returns to its place in line.
    OfferFailed {
        /// The call.
        call: CallId,
        /// The agent.
        agent: AgentId,
    },
    /// The caller hung up before being connected.
    Abandon(CallId),
    /// A connected call ended.
    Hangup {
        /// The call.
        call: CallId,
        /// Who hung up.
        by: Party,
    },
}

/// Why an offer was withdrawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum WithdrawReason {
    /// Ring-all: another agent answered first.
    AnsweredElsewhere,
    /// The caller hung up.
    CallerAbandoned,
    /// The offer rang for the queue's ring timeout.
    RingTimeout,
    /// The call control reported the offer failed.
    Failed,
    /// The agent went NotReady or logged out.
    AgentUnavailable,
    /// The call reached its maximum wait.
    MaxWait,
}

/// How a call left the ACD.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum CallOutcome {
    /// Answered, and the connected call has ended.
    Completed(Party),
    /// The caller hung up while waiting or ringing.
    Abandoned,
    /// Sent to an external overflow destination at maximum wait.
    Overflowed,
    /// Reached maximum wait with no overflow target.
    TimedOut,
    /// Refused on arrival because the queue was empty (join-empty policy).
    JoinEmpty,
    /// Left because the queue became empty (leave-when-empty policy).
    LeftEmpty,
}

/// Where an overflowing call goes, resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Overflow {
    /// Re-enqueued in this queue (the call stays in the ACD).
    Queue(QueueId),
    /// Handed to the call control to dial this destination (the call leaves the ACD).
    External(Arc<str>),
}

/// An output of the engine.
#[derive(Debug, Clone, PartialEq)]
pub enum AcdEvent {
    /// Ring the agent with the call. Every offer ends with either the driver's `Answer` for that
    /// agent or a `Withdraw`.
    Offer {
        /// The call.
        call: CallId,
        /// The agent to ring.
        agent: AgentId,
        /// The queue the call is in.
        queue: QueueId,
    },
    /// Stop ringing the agent with the call.
    Withdraw {
        /// The call.
        call: CallId,
        /// The agent.
        agent: AgentId,
        /// Why.
        reason: WithdrawReason,
    },
    /// The call reached maximum wait and overflows.
    Overflow {
        /// The call.
        call: CallId,
        /// The queue it left.
        from: QueueId,
        /// Where it goes.
        to: Overflow,
    },
    /// The call reached maximum wait in a queue without overflow target: the call control
    /// continues its dial plan.
    Timeout {
        /// The call.
        call: CallId,
        /// The queue it left.
        queue: QueueId,
    },
    /// The call left the ACD; emitted exactly once per call that arrived.
    CallEnded {
        /// The call.
        call: CallId,
        /// The queue it was last in.
        queue: QueueId,
        /// How it ended.
        outcome: CallOutcome,
    },
    /// An agent changed state.
    AgentState {
        /// The agent.
        agent: AgentId,
        /// The new state.
        state: AgentState,
    },
    /// A queue_log record.
    QueueLog(QueueLogEvent),
}

/// Why a command or configuration was refused. Small and `Copy`: it sits on the hot path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AcdError {
    /// No such agent.
    #[error("unknown agent {0:?}")]
    UnknownAgent(AgentId),
    /// No such queue (or a queue name that does not exist).
    #[error("unknown queue")]
    UnknownQueue,
    /// No such call in the ACD.
    #[error("unknown call {0:?}")]
    UnknownCall(CallId),
    /// A call with this id is already in the ACD.
    #[error("call {0:?} is already in the ACD")]
    DuplicateCall(CallId),
    /// A queue with this name already exists.
    #[error("duplicate queue name")]
    DuplicateQueue,
    /// Proficiency outside 1–10.
    #[error("proficiency {0} is outside 1-10")]
    BadProficiency(u8),
    /// Priority outside 0–9.
    #[error("priority {0} is outside 0-9")]
    BadPriority(u8),
    /// Escalation steps that are not sorted or do not widen monotonically.
    #[error("escalation steps must be sorted by time and widen monotonically")]
    BadEscalation,
    /// Too many distinct skills (more than 65 535).
    #[error("too many skills")]
    TooManySkills,
    /// The agent is not in a state that allows the command.
    #[error("agent {0:?} cannot do that in its current state")]
    AgentState(AgentId),
    /// The call is not in a state that allows the command (e.g. answering a call that was not
    /// offered to this agent).
    #[error("call {0:?} cannot do that in its current state")]
    CallState(CallId),
}
