//! Typed configuration of queues and agents: plain data with `Default`, filled in by the
//! binary from config files (the engine validates once, when a queue or agent is added).

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// How a queue chooses among several Ready agents that are eligible for a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Strategy {
    /// The agent that has been Ready the longest (ties: lower agent id).
    #[default]
    LongestIdle,
    /// The agent that has answered the fewest calls since it was added, then longest idle.
    FewestCalls,
    /// The agent with the least total talk time, then longest idle.
    LeastTalkTime,
    /// Agents in id order, starting after the agent that was offered the queue's last call.
    RoundRobin,
    /// Always the lowest agent id (the order agents were added in).
    Linear,
    /// A uniformly random eligible Ready agent, drawn from the engine's seeded RNG.
    Random,
    /// Every eligible Ready agent rings at once; the first to answer wins and the other offers
    /// are withdrawn.
    RingAll,
    /// Highest proficiency summed over the call's required skills, then longest idle.
    BestSkill,
}

/// One skill a queue (or a call) requires.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct SkillRequirement {
    /// Skill name, e.g. `"billing"` or `"spanish"`.
    pub skill: String,
    /// Minimum proficiency, 1–10.
    pub min: u8,
    /// Optional skills may be dropped by an escalation step (`drop_optional`).
    pub optional: bool,
}

impl SkillRequirement {
    /// A mandatory requirement.
    pub fn new(skill: impl Into<String>, min: u8) -> Self {
        Self {
            skill: skill.into(),
            min,
            optional: false,
        }
    }

    /// An optional requirement (dropped by an escalation step with `drop_optional`).
    pub fn optional(skill: impl Into<String>, min: u8) -> Self {
        Self {
            skill: skill.into(),
            min,
            optional: true,
        }
    }
}

/// One escalation step: after `after` of waiting in the queue, the call's requirements are the
/// queue's base requirements (plus the call's extra skills) with every minimum lowered by
/// `lower_by` (never below 1) and, if `drop_optional`, the optional ones removed.
///
/// Steps are absolute (each is relative to the base requirements, not to the previous step)
/// and must widen monotonically: sorted by `after`, `lower_by` non-decreasing, and once
/// `drop_optional` is set it stays set.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct EscalationStep {
    /// Waiting time in this queue after which the step applies.
    pub after: Duration,
    /// How much every minimum proficiency is lowered.
    pub lower_by: u8,
    /// Whether optional requirements are dropped.
    pub drop_optional: bool,
}

/// Where a call goes when it has waited `max_wait`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OverflowTarget {
    /// Another queue, by name; the call is enqueued there afresh.
    Queue(String),
    /// An external destination (a number or URI) the call control dials; the call leaves the ACD.
    External(String),
}

/// When a queue counts as empty, for `join_empty` and `leave_when_empty`. Emptiness is judged
/// over the agents eligible for the call at its current escalation step, not over all members.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum EmptyPolicy {
    /// Never: calls join and stay whatever the agents do.
    #[default]
    Never,
    /// Empty when no eligible agent is logged in.
    NoAgentsLoggedIn,
    /// Empty when no eligible agent is available (every one logged out or NotReady).
    NoAgentsAvailable,
}

/// A queue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct QueueConfig {
    /// Queue name, unique; used in queue_log lines and by overflow targets.
    pub name: String,
    /// Skills every call of the queue requires.
    pub skills: Vec<SkillRequirement>,
    /// How a Ready agent is chosen.
    pub strategy: Strategy,
    /// Escalation steps, sorted by `after`.
    pub escalation: Vec<EscalationStep>,
    /// How long an offer rings before it counts as a ring-no-answer (`None`: until the call
    /// control reports the outcome).
    pub ring_timeout: Option<Duration>,
    /// Consecutive ring-no-answers after which an agent is set NotReady("no-answer")
    /// (0: never).
    pub auto_pause_after: u32,
    /// After a ring-no-answer that does not pause the agent, the agent rests this long (shown as
    /// WrapUp) before it is offered calls again.
    pub no_answer_rest: Duration,
    /// Wrap-up time after a call of this queue ends.
    pub wrap_up: Duration,
    /// Maximum wait; then the call overflows (or times out without a target).
    pub max_wait: Option<Duration>,
    /// Where a call goes at `max_wait`.
    pub overflow: Option<OverflowTarget>,
    /// When an arriving call is refused.
    pub join_empty: EmptyPolicy,
    /// When waiting calls leave.
    pub leave_when_empty: EmptyPolicy,
    /// Service-level threshold: a call answered within it counts as "in service level".
    pub service_level: Duration,
    /// Abandons within this wait are short abandons, excluded from the abandon rate.
    pub short_abandon: Duration,
    /// Handle time assumed for the estimated wait before any call has been handled.
    pub expected_handle_time: Duration,
}

impl Default for QueueConfig {
    fn default() -> Self {
        Self {
            name: String::new(),
            skills: Vec::new(),
            strategy: Strategy::LongestIdle,
            escalation: Vec::new(),
            ring_timeout: Some(Duration::from_secs(15)),
            auto_pause_after: 3,
            no_answer_rest: Duration::from_secs(5),
            wrap_up: Duration::ZERO,
            max_wait: None,
            overflow: None,
            join_empty: EmptyPolicy::Never,
            leave_when_empty: EmptyPolicy::Never,
            service_level: Duration::from_secs(20),
            short_abandon: Duration::from_secs(5),
            expected_handle_time: Duration::from_secs(180),
        }
    }
}

impl QueueConfig {
    /// A queue with the given name and defaults otherwise.
    pub fn named(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            ..Self::default()
        }
    }
}

/// One queue an agent serves.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueMembership {
    /// Queue name.
    pub queue: String,
    /// The agent's priority for this queue, 0–9, higher first: when the agent becomes free it
    /// takes a call of its highest-priority queue first.
    pub priority: u8,
}

/// One skill an agent has.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentSkill {
    /// Skill name.
    pub skill: String,
    /// Proficiency, 1–10.
    pub proficiency: u8,
}

impl AgentSkill {
    /// A skill at a proficiency.
    pub fn new(skill: impl Into<String>, proficiency: u8) -> Self {
        Self {
            skill: skill.into(),
            proficiency,
        }
    }
}

/// An agent.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct AgentConfig {
    /// Agent name as written in queue_log lines (e.g. `"Agent/1001"` or a SIP user).
    pub name: String,
    /// Skills with proficiency.
    pub skills: Vec<AgentSkill>,
    /// Queues served, each with the agent's priority for it.
    pub queues: Vec<QueueMembership>,
}

impl AgentConfig {
    /// An agent with the given name, no skills and no queues.
    pub fn named(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            ..Self::default()
        }
    }
}
