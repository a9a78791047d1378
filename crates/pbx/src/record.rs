//! What call control writes down about each call and each agent: the call record (one per
//! call, after the Asterisk CDR and CEL fields) and agent state changes. Call control emits them
//! as [`crate::Output::Record`] and [`crate::Output::AgentState`]; the binary hands them to the
//! storage task. Caller numbers are personal data: they are stored, never logged above debug.

use std::time::{Duration, SystemTime};

/// How a call ended, for reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Outcome {
    /// An agent (or the called extension) answered.
    Answered,
    /// The caller hung up before anyone answered.
    Abandoned,
    /// The queue sent the caller elsewhere.
    Overflowed,
    /// The queue's maximum wait passed.
    TimedOut,
    /// The queue had nobody to serve the caller (its join-empty / leave-when-empty rule).
    NoAgents,
    /// The called phone did not answer.
    NoAnswer,
    /// The called phone was busy or declined.
    Busy,
    /// The called user has no reachable phone.
    Unreachable,
    /// A feature code (agent login, logout, pause) was carried out.
    FeatureCode,
    /// The queue was outside its business hours: the caller heard its closed announcement.
    Closed,
    /// An IVR menu ended the call: its hang-up choice or announcement, or no valid answer
    /// after its tries.
    Menu,
    /// The caller was sent to voicemail (whether or not they left a message).
    Voicemail,
    /// A mailbox owner listened to their messages.
    Mailbox,
    /// A callback whose customer was not reached after every try.
    CallbackFailed,
    /// Something went wrong (no ACK, no usable SDP, a silent leg before anyone answered).
    Failed,
    /// The server shut down during the call.
    Shutdown,
}

impl Outcome {
    /// The name stored and reported.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Answered => "answered",
            Outcome::Abandoned => "abandoned",
            Outcome::Overflowed => "overflowed",
            Outcome::TimedOut => "timed_out",
            Outcome::NoAgents => "no_agents",
            Outcome::NoAnswer => "no_answer",
            Outcome::Busy => "busy",
            Outcome::Unreachable => "unreachable",
            Outcome::FeatureCode => "feature_code",
            Outcome::Closed => "closed",
            Outcome::Menu => "menu",
            Outcome::Voicemail => "voicemail",
            Outcome::Mailbox => "mailbox",
            Outcome::CallbackFailed => "callback_failed",
            Outcome::Failed => "failed",
            Outcome::Shutdown => "shutdown",
        }
    }
}

/// Who ended a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HungUpBy {
    /// The caller (BYE or CANCEL).
    Caller,
    /// The agent or called user.
    Agent,
    /// The server (queue rules, timeouts, failures, shutdown).
    System,
}

impl HungUpBy {
    /// The name stored and reported.
    pub fn as_str(self) -> &'static str {
        match self {
            HungUpBy::Caller => "caller",
            HungUpBy::Agent => "agent",
            HungUpBy::System => "system",
        }
    }
}

/// How one phone answered an offer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RingResult {
    /// Still ringing (only while the call is up).
    Ringing,
    /// This phone answered and took the call.
    Answered,
    /// Refused or failed with this final status (486 busy, 603 declined, 408 no response…).
    Refused(u16),
    /// Rang for the queue's ring timeout without an answer (RINGNOANSWER).
    NoAnswer,
    /// Cancelled: another phone answered, the offer was withdrawn (the agent paused, the
    /// call's maximum wait), or the call ended.
    Cancelled,
}

impl RingResult {
    /// The name stored and reported.
    pub fn as_str(self) -> String {
        match self {
            RingResult::Ringing => "ringing".into(),
            RingResult::Answered => "answered".into(),
            RingResult::Refused(s) => format!("refused {s}"),
            RingResult::NoAnswer => "no_answer".into(),
            RingResult::Cancelled => "cancelled".into(),
        }
    }
}

/// One phone rung for a call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RingAttempt {
    /// The agent's name (or the called user).
    pub agent: String,
    /// The phone's registered contact.
    pub contact: String,
    /// When it started ringing.
    pub started: SystemTime,
    /// When it stopped.
    pub ended: Option<SystemTime>,
    /// How.
    pub result: RingResult,
}

/// Who talked for the center during part of a call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segment {
    /// The agent's name (or the user).
    pub agent: String,
    /// From.
    pub started: SystemTime,
    /// To.
    pub ended: SystemTime,
    /// How their part ended: `transferred`, `taken over`, or the call's end reason.
    pub end: String,
}

/// One call, written when it ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallRecord {
    /// Call control's id for the call (also the media session and recording id).
    pub call_id: u64,
    /// The caller's SIP Call-ID.
    pub sip_call_id: String,
    /// The caller's number (From user).
    pub caller: String,
    /// The caller's display name, if any.
    pub caller_name: Option<String>,
    /// The number dialled.
    pub dialed: String,
    /// How the caller came in: `trunk:NAME`, `user:NAME` or `anonymous`.
    pub source: String,
    /// The queue, for queue calls.
    pub queue: Option<String>,
    /// The agent (or called user) who answered.
    pub agent: Option<String>,
    /// When the INVITE arrived.
    pub arrived: SystemTime,
    /// When the call joined its queue.
    pub queued: Option<SystemTime>,
    /// When the first phone rang.
    pub first_offer: Option<SystemTime>,
    /// When a phone answered.
    pub answered: Option<SystemTime>,
    /// When the call ended.
    pub ended: SystemTime,
    /// From joining the queue (or, for calls that never queued, from arrival) to answer, or
    /// to the end when unanswered: time in a menu before the queue does not count.
    pub wait: Duration,
    /// From answer to the end.
    pub talk: Duration,
    /// Time the agent held the caller.
    pub hold: Duration,
    /// The wrap-up the queue gives the agent after an answered call.
    pub wrap_up: Duration,
    /// How it ended.
    pub outcome: Outcome,
    /// Who ended it.
    pub hung_up_by: HungUpBy,
    /// Call control's reason, in words.
    pub reason: String,
    /// Whether it was recorded (the recording's file and digest are the recorder's to add).
    pub recorded: bool,
    /// The queue the call was in first, when it overflowed to `queue`.
    pub overflowed_from: Option<String>,
    /// The agent's disposition code (wrap-up result), when one was given.
    pub disposition: Option<String>,
    /// The caller's satisfaction score (a post-call survey), when one was given.
    pub satisfaction: Option<u8>,
    /// The caller asked to be called back (the times are the original call's; the answer is
    /// the customer's when called back).
    pub callback: bool,
    /// Variables IVR menus set (collected digits such as an account number, choices such
    /// as a language), in the order they were set; a name set twice keeps its last value.
    pub variables: Vec<(String, String)>,
    /// Who talked for the center, in order: one segment per agent, a transfer or take-over
    /// starting the next; empty when nobody answered.
    pub segments: Vec<Segment>,
    /// Every phone rung.
    pub attempts: Vec<RingAttempt>,
}

/// An agent's state as the ACD reported it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentStateChange {
    /// The agent's name.
    pub agent: String,
    /// The agent's SIP user.
    pub user: String,
    /// `logged_out`, `ready`, `not_ready`, `ringing`, `busy`, `wrap_up`.
    pub state: &'static str,
    /// The reason code of a pause.
    pub reason: Option<String>,
    /// When.
    pub at: SystemTime,
}
