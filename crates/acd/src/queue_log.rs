//! Queue-log records in the shape of Asterisk's `queue_log`:
//! `time|callid|queue|agent|event|data1|data2|data3`, so existing wallboards and report tools
//! can read them. Durations are whole seconds, except RINGNOANSWER's ring time in
//! milliseconds, as Asterisk writes them. Records without a call or queue write `NONE`.

use std::sync::Arc;
use std::time::Duration;

use crate::types::{CallId, ReasonCode};

/// What happened, with the data fields the queue_log line carries.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum QueueLogKind {
    /// A call entered the queue (`ENTERQUEUE|url|callerid`; both left empty: caller numbers are
    /// personal data and are added by the call control if it wants them).
    EnterQueue,
    /// An agent answered (`CONNECT|holdtime|bridgedchanneluniqueid|ringtime`).
    Connect {
        /// Wait in the queue before answer.
        hold: Duration,
        /// How long the answering offer rang.
        ring: Duration,
    },
    /// The agent hung up (`COMPLETEAGENT|holdtime|calltime|origposition`).
    CompleteAgent {
        /// Wait before answer.
        hold: Duration,
        /// Talk time.
        talk: Duration,
        /// Position on entering the queue (1 = first).
        orig_position: u32,
    },
    /// The caller hung up (`COMPLETECALLER|holdtime|calltime|origposition`).
    CompleteCaller {
        /// Wait before answer.
        hold: Duration,
        /// Talk time.
        talk: Duration,
        /// Position on entering the queue.
        orig_position: u32,
    },
    /// The caller hung up while waiting (`ABANDON|position|origposition|waittime`).
    Abandon {
        /// Position when the caller hung up.
        position: u32,
        /// Position on entering.
        orig_position: u32,
        /// Wait.
        wait: Duration,
    },
    /// An offer was not answered (`RINGNOANSWER|ringtime-ms`).
    RingNoAnswer {
        /// How long it rang.
        ring: Duration,
    },
    /// Maximum wait reached (`EXITWITHTIMEOUT|position|origposition|waittime`), with or
    /// without overflow.
    ExitWithTimeout {
        /// Position when leaving.
        position: u32,
        /// Position on entering.
        orig_position: u32,
        /// Wait.
        wait: Duration,
    },
    /// The queue became empty and the call left (`EXITEMPTY|position|origposition|waittime`).
    ExitEmpty {
        /// Position when leaving.
        position: u32,
        /// Position on entering.
        orig_position: u32,
        /// Wait.
        wait: Duration,
    },
    /// The agent logged in (`AGENTLOGIN|channel`; the agent name is the channel).
    AgentLogin,
    /// The agent logged off (`AGENTLOGOFF|channel|logintime`).
    AgentLogoff {
        /// How long the agent was logged in.
        logged_in: Duration,
    },
    /// The agent paused (`PAUSE|reason`).
    Pause {
        /// Reason code.
        reason: ReasonCode,
    },
    /// The agent resumed (`UNPAUSE|reason`).
    Unpause {
        /// The reason code it was paused with.
        reason: ReasonCode,
    },
}

impl QueueLogKind {
    /// The Asterisk event name.
    pub fn event_name(&self) -> &'static str {
        match self {
            QueueLogKind::EnterQueue => "ENTERQUEUE",
            QueueLogKind::Connect { .. } => "CONNECT",
            QueueLogKind::CompleteAgent { .. } => "COMPLETEAGENT",
            QueueLogKind::CompleteCaller { .. } => "COMPLETECALLER",
            QueueLogKind::Abandon { .. } => "ABANDON",
            QueueLogKind::RingNoAnswer { .. } => "RINGNOANSWER",
            QueueLogKind::ExitWithTimeout { .. } => "EXITWITHTIMEOUT",
            QueueLogKind::ExitEmpty { .. } => "EXITEMPTY",
            QueueLogKind::AgentLogin => "AGENTLOGIN",
            QueueLogKind::AgentLogoff { .. } => "AGENTLOGOFF",
            QueueLogKind::Pause { .. } => "PAUSE",
            QueueLogKind::Unpause { .. } => "UNPAUSE",
        }
    }
}

/// One queue_log record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueLogEvent {
    /// The call, if the record is about one.
    pub call: Option<CallId>,
    /// Queue name, if the record is about a queue.
    pub queue: Option<Arc<str>>,
    /// Agent name, if an agent is involved.
    pub agent: Option<Arc<str>>,
    /// Event and data.
    pub kind: QueueLogKind,
}

impl QueueLogEvent {
    /// The record as an Asterisk queue_log line (without newline):
    /// `time|callid|queue|agent|event|data1|data2|data3`.
    pub fn to_queue_log_line(&self, unix_time: u64) -> String {
        let call = self
            .call
            .map_or_else(|| "NONE".to_owned(), |c| c.0.to_string());
        let queue = self.queue.as_deref().unwrap_or("NONE");
        let agent = self.agent.as_deref().unwrap_or("NONE");
        let secs = |d: &Duration| d.as_secs().to_string();
        let data: Vec<String> = match &self.kind {
            QueueLogKind::EnterQueue => vec![String::new(), String::new()],
            QueueLogKind::Connect { hold, ring } => vec![secs(hold), String::new(), secs(ring)],
            QueueLogKind::CompleteAgent {
                hold,
                talk,
                orig_position,
            }
            | QueueLogKind::CompleteCaller {
                hold,
                talk,
                orig_position,
            } => {
                vec![secs(hold), secs(talk), orig_position.to_string()]
            }
            QueueLogKind::Abandon {
                position,
                orig_position,
                wait,
            }
            | QueueLogKind::ExitWithTimeout {
                position,
                orig_position,
                wait,
            }
            | QueueLogKind::ExitEmpty {
                position,
                orig_position,
                wait,
            } => {
                vec![position.to_string(), orig_position.to_string(), secs(wait)]
            }
            QueueLogKind::RingNoAnswer { ring } => vec![ring.as_millis().to_string()],
            QueueLogKind::AgentLogin => vec![agent.to_owned()],
            QueueLogKind::AgentLogoff { logged_in } => vec![agent.to_owned(), secs(logged_in)],
            QueueLogKind::Pause { reason } | QueueLogKind::Unpause { reason } => {
                vec![reason.to_string()]
            }
        };
        let mut line = format!(
            "{unix_time}|{call}|{queue}|{agent}|{}",
            self.kind.event_name()
        );
        for d in data {
            line.push('|');
            line.push_str(&d);
        }
        line
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_match_asterisk_layout() {
        let ev = QueueLogEvent {
            call: Some(CallId(1700000001)),
            queue: Some(Arc::from("support")),
            agent: Some(Arc::from("Agent/1001")),
            kind: QueueLogKind::CompleteCaller {
                hold: Duration::from_millis(12_900),
                talk: Duration::from_secs(95),
                orig_position: 3,
            },
        };
        assert_eq!(
            ev.to_queue_log_line(1_366_720_340),
            "1366720340|1700000001|support|Agent/1001|COMPLETECALLER|12|95|3"
        );
        let ring = QueueLogEvent {
            call: Some(CallId(7)),
            queue: Some(Arc::from("sales")),
            agent: Some(Arc::from("Agent/2")),
            kind: QueueLogKind::RingNoAnswer {
                ring: Duration::from_millis(15_000),
            },
        };
        assert_eq!(
            ring.to_queue_log_line(5),
            "5|7|sales|Agent/2|RINGNOANSWER|15000"
        );
        let pause = QueueLogEvent {
            call: None,
            queue: None,
            agent: Some(Arc::from("Agent/2")),
            kind: QueueLogKind::Pause {
                reason: ReasonCode::new("lunch"),
            },
        };
        assert_eq!(
            pause.to_queue_log_line(9),
            "9|NONE|NONE|Agent/2|PAUSE|lunch"
        );
        let enter = QueueLogEvent {
            call: Some(CallId(8)),
            queue: Some(Arc::from("sales")),
            agent: None,
            kind: QueueLogKind::EnterQueue,
        };
        assert_eq!(enter.to_queue_log_line(1), "1|8|sales|NONE|ENTERQUEUE||");
    }
}
