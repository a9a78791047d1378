//! Skills-based ACD (automatic call distributor) queue engine: decides which agent takes which
//! call. Pure and synchronous: no I/O, no tokio, no clock reads (time is a [`Time`] input), no
//! own randomness (the random strategy draws from a seeded `ChaCha8Rng`).
//!
//! # Driving it
//!
//! The engine is a sans-IO state machine. Its owner (the pbx's ACD task, a test or the
//! simulator) feeds it commands and timeouts and drains its events:
//!
//! ```
//! use acd::{Acd, AcdCommand, AcdEvent, AgentConfig, CallArrival, CallId, QueueConfig, QueueMembership, Time};
//!
//! let mut acd = Acd::new(7);
//! let support = acd.add_queue(QueueConfig::named("support")).unwrap();
//! let mut alice = AgentConfig::named("Agent/1001");
//! alice.queues.push(QueueMembership { queue: "support".into(), priority: 0 });
//! let alice = acd.add_agent(alice).unwrap();
//!
//! let now = Time::from_secs(1);
//! acd.handle_command(now, AcdCommand::Login(alice)).unwrap();
//! acd.handle_command(now, AcdCommand::Arrive(CallArrival {
//!     call: CallId(1), queue: support, priority: 0, extra_skills: vec![],
//! })).unwrap();
//! let mut offers = 0;
//! while let Some(ev) = acd.poll_event() {      // send each to the pbx
//!     if let AcdEvent::Offer { agent, .. } = ev { assert_eq!(agent, alice); offers += 1; }
//! }
//! assert_eq!(offers, 1);
//! let deadline = acd.poll_timeout();           // sleep until then (here: the ring timeout),
//! assert!(deadline.is_some());                 // then call acd.handle_timeout(now)
//! ```
//!
//! - `handle_command(now, cmd)`: an agent logs in, becomes Ready / NotReady, a call arrives,
//!   an offer is answered or fails, a caller abandons, a connected call ends.
//! - `poll_event()`: offers, withdrawals, overflows, timeouts, agent state changes, call ends and
//!   Asterisk-style queue-log records ([`QueueLogEvent::to_queue_log_line`]).
//! - `poll_timeout()`: the next deadline (escalation step, wrap-up end, maximum wait, ring
//!   timeout); the driver calls `handle_timeout(now)` when it passes. Nothing polls: work
//!   happens only on these inputs.
//!
//! Every offer ends with either the driver's `Answer` for that agent or a `Withdraw` event;
//! every call that arrives ends with exactly one `CallEnded` event.
//!
//! # The index: why a decision touches little
//!
//! A call's *eligibility* is its queue plus a requirement set (the queue's skills, the call's
//! extra skills, resolved at its current escalation step into `(skill, minimum)` pairs). Calls
//! with the same eligibility share an **eligibility class**, interned on first use; there are as
//! many classes as distinct (queue, requirement set) pairs in use — a handful per queue — never
//! one per call or per agent. Each class holds:
//!
//! - its **members**: a bitset over agents that serve the queue and meet every minimum. It is
//!   built once, when the class is created, from the per-skill, per-proficiency-level agent
//!   lists of its most selective requirement (so only agents having that skill are looked at);
//!   an agent added later checks the classes of its queues. Every agent keeps the list of its
//!   classes, with its priority for the class's queue.
//! - its **Ready agents**, an ordered set keyed by the queue strategy's rank, e.g.
//!   `(idle-since, agent id)` for longest-idle, `(calls answered, idle-since, id)` for
//!   fewest-calls, `(−proficiency, idle-since, id)` for best-skill, agent id for linear and
//!   round-robin (with a cursor); random uses a swap-remove vector for O(1) uniform picks.
//! - its **waiting calls**, ordered by `(priority, enqueue sequence)`; a call whose offer is not
//!   answered goes back under the same key, i.e. to its place in line.
//!
//! Decisions:
//!
//! - **A call arrives** (or escalates into a wider class, or returns from an unanswered offer):
//!   the first Ready agent of its class, one ordered-set lookup, O(log n).
//! - **An agent becomes Ready**: it looks at the first waiting call of each of its classes and
//!   takes the best by (its queue priority, call priority, longest wait): O(k log n) for its k
//!   classes.
//! - **An agent leaves Ready** (offered, NotReady, logged out): it is removed from the Ready
//!   sets of its k classes.
//!
//! Because every event that adds a Ready agent or a waiting call to a class immediately tries
//! to match within that class, no class ever holds both a Ready agent and a waiting call: the
//! engine is work-conserving without ever scanning all agents or all calls. The only linear
//! work is building a class (once per requirement set) and computing a caller's current
//! position for the ABANDON / EXITWITHTIMEOUT queue-log data (proportional to the calls ahead of
//! it). Escalation steps, maximum waits, wrap-up ends and ring timeouts are entries in one
//! ordered timer set; `poll_timeout()` is its minimum.
//!
//! The [`naive`] module holds the scanning engine (how Asterisk app_queue and FreeSWITCH
//! mod_callcenter decide) used as the benchmark baseline and as a cross-check.
//!
//! # Other parts
//!
//! - [`stats`]: live per-queue and per-agent statistics (service level, ASA, AHT, abandon rate,
//!   occupancy) and [`Acd::estimated_wait`] for announcements.
//! - [`erlang`]: Erlang C predictions; [`sim`]: a seeded virtual-time simulator that drives the
//!   real engine with Poisson arrivals (behind `switchboard simulate`).

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod config;
mod engine;
pub mod erlang;
mod index;
pub mod naive;
pub mod queue_log;
pub mod sim;
pub mod stats;
mod types;

pub use config::{
    AgentConfig, AgentSkill, EmptyPolicy, EscalationStep, OverflowTarget, QueueConfig,
    QueueMembership, SkillRequirement, Strategy,
};
pub use engine::Acd;
pub use queue_log::{QueueLogEvent, QueueLogKind};
pub use stats::{AgentCounters, AgentStats, QueueCounters, QueueStats};
pub use types::{
    AcdCommand, AcdError, AcdEvent, AgentId, AgentState, CallArrival, CallId, CallOutcome,
    CallState, Overflow, Party, Proficiency, QueueId, ReasonCode, Skill, Time, WithdrawReason,
};
