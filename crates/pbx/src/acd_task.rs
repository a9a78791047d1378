//! The ACD service: one task that owns the [`acd::Acd`] engine, applies call control's
//! requests, fires the engine's timers and reports its events (architecture: `AcdCommand` in,
//! `AcdEvent` out, over bounded channels).

use std::time::{Duration, Instant};

use acd::{Acd, AcdCommand, AcdError, AcdEvent, CallId, QueueLogEvent, Time};
use tokio::sync::mpsc;
use tracing::{info, warn};

/// A request to the ACD task.
#[derive(Debug, Clone, PartialEq)]
pub enum AcdRequest {
    /// A command for the engine.
    Command(AcdCommand),
    /// Ask for a waiting call's position and estimated wait (for an announcement).
    Position(CallId),
    /// Config reload: a new queue; its id comes back in [`AcdReport::QueueAdded`].
    AddQueue(Box<acd::QueueConfig>),
    /// Config reload: new settings for a queue.
    UpdateQueue(acd::QueueId, Box<acd::QueueConfig>),
    /// Config reload: a queue is gone (its callers follow its overflow rule).
    RemoveQueue(acd::QueueId),
    /// Config reload: a new agent; its id comes back in [`AcdReport::AgentAdded`].
    AddAgent {
        /// The agent's SIP user (call control's key for the agent).
        user: String,
        /// The agent's settings.
        config: Box<acd::AgentConfig>,
    },
    /// Config reload: new skills and queues for an agent.
    UpdateAgent(acd::AgentId, Box<acd::AgentConfig>),
    /// Config reload: an agent is gone.
    RemoveAgent(acd::AgentId),
}

/// What the ACD task reports.
#[derive(Debug, Clone, PartialEq)]
pub enum AcdReport {
    /// An engine event.
    Event(AcdEvent),
    /// Answer to [`AcdRequest::Position`]: 1-based place in line, if still waiting.
    Position {
        /// The call.
        call: CallId,
        /// Place in line (1 = next).
        position: Option<usize>,
        /// The engine's estimate for a caller at the back of this queue.
        estimated_wait: Option<Duration>,
    },
    /// Answer to [`AcdRequest::AddQueue`].
    QueueAdded {
        /// The queue's name.
        name: String,
        /// The id the engine gave it.
        id: acd::QueueId,
    },
    /// Answer to [`AcdRequest::AddAgent`].
    AgentAdded {
        /// The agent's SIP user, as in the request.
        user: String,
        /// The id the engine gave the agent.
        id: acd::AgentId,
    },
    /// A reconfiguration the engine refused.
    ReconfigureFailed {
        /// What was asked.
        what: String,
        /// Why.
        error: String,
    },
    /// A command the engine refused.
    Refused {
        /// The command.
        command: AcdCommand,
        /// Why.
        error: AcdError,
    },
}

/// The engine's clock: microseconds since the task started.
fn engine_time(epoch: Instant, now: Instant) -> Time {
    Time::from(now.saturating_duration_since(epoch))
}

/// Apply one request to the engine at `now`; what it answers goes to `out`. The task below
/// does this with every request; a test can drive the engine the same way without a runtime.
pub fn apply(acd: &mut Acd, now: Time, req: AcdRequest, out: &mut Vec<AcdReport>) {
    match req {
        AcdRequest::Command(cmd) => {
            if let Err(error) = acd.handle_command(now, cmd.clone()) {
                warn!(?cmd, %error, "ACD refused a command");
                out.push(AcdReport::Refused {
                    command: cmd,
                    error,
                });
            }
        }
        AcdRequest::AddQueue(cfg) => {
            let name = cfg.name.clone();
            match acd.add_queue(*cfg) {
                Ok(id) => {
                    info!(queue = %name, "queue added");
                    out.push(AcdReport::QueueAdded { name, id });
                }
                Err(e) => out.push(AcdReport::ReconfigureFailed {
                    what: format!("add queue {name}"),
                    error: e.to_string(),
                }),
            }
        }
        AcdRequest::UpdateQueue(id, cfg) => {
            let name = cfg.name.clone();
            match acd.update_queue(id, *cfg, now) {
                Ok(()) => info!(queue = %name, "queue updated"),
                Err(e) => out.push(AcdReport::ReconfigureFailed {
                    what: format!("update queue {name}"),
                    error: e.to_string(),
                }),
            }
        }
        AcdRequest::RemoveQueue(id) => {
            if let Err(e) = acd.remove_queue(id, now) {
                out.push(AcdReport::ReconfigureFailed {
                    what: format!("remove queue {id:?}"),
                    error: e.to_string(),
                });
            }
        }
        AcdRequest::AddAgent { user, config } => {
            let name = config.name.clone();
            match acd.add_agent(*config) {
                Ok(id) => {
                    info!(agent = %name, "agent added");
                    out.push(AcdReport::AgentAdded { user, id });
                }
                Err(e) => out.push(AcdReport::ReconfigureFailed {
                    what: format!("add agent {name}"),
                    error: e.to_string(),
                }),
            }
        }
        AcdRequest::UpdateAgent(id, cfg) => {
            let name = cfg.name.clone();
            match acd.update_agent(id, *cfg, now) {
                Ok(()) => info!(agent = %name, "agent updated"),
                Err(e) => out.push(AcdReport::ReconfigureFailed {
                    what: format!("update agent {name}"),
                    error: e.to_string(),
                }),
            }
        }
        AcdRequest::RemoveAgent(id) => {
            if let Err(e) = acd.remove_agent(id, now) {
                out.push(AcdReport::ReconfigureFailed {
                    what: format!("remove agent {id:?}"),
                    error: e.to_string(),
                });
            }
        }
        AcdRequest::Position(call) => {
            let (position, estimated_wait) = match acd.call_queue(call) {
                Some(q) => (
                    acd.waiting_calls(q).position(|c| c == call).map(|p| p + 1),
                    acd.estimated_wait(q, 0),
                ),
                None => (None, None),
            };
            out.push(AcdReport::Position {
                call,
                position,
                estimated_wait,
            });
        }
    }
}

/// Move the engine's events into `out`; queue-log records go to `queue_log` instead.
pub fn drain(acd: &mut Acd, out: &mut Vec<AcdReport>, mut queue_log: impl FnMut(&QueueLogEvent)) {
    while let Some(ev) = acd.poll_event() {
        match ev {
            AcdEvent::QueueLog(q) => queue_log(&q),
            ev => out.push(AcdReport::Event(ev)),
        }
    }
}

/// Run the ACD task until the request channel closes.
pub async fn run(
    mut acd: Acd,
    epoch: Instant,
    mut requests: mpsc::Receiver<AcdRequest>,
    reports: mpsc::Sender<AcdReport>,
    queue_log: Option<crate::service::EventSink>,
) {
    let sleep = tokio::time::sleep(Duration::from_secs(3600));
    tokio::pin!(sleep);
    let mut armed: Option<Time> = None;
    loop {
        let deadline = acd.poll_timeout();
        if deadline != armed {
            armed = deadline;
            let at = match deadline {
                Some(t) => epoch + Duration::from_micros(t.as_micros()),
                None => Instant::now() + Duration::from_secs(3600),
            };
            sleep.as_mut().reset(tokio::time::Instant::from_std(at));
        }
        let mut out = Vec::new();
        tokio::select! {
            req = requests.recv() => match req {
                None => break,
                Some(req) => apply(&mut acd, engine_time(epoch, Instant::now()), req, &mut out),
            },
            // Only while armed: an elapsed sleep stays ready, and with nothing left to wait
            // for it would wake this loop again at once, for ever (an idle server at 100 %
            // CPU after its first timer).
            _ = &mut sleep, if armed.is_some() => {
                armed = None;
                acd.handle_timeout(engine_time(epoch, Instant::now()));
            }
        }
        drain(&mut acd, &mut out, |q| {
            log_queue_event(q, queue_log.as_ref())
        });
        for r in out {
            if reports.send(r).await.is_err() {
                return;
            }
        }
    }
}

fn log_queue_event(q: &QueueLogEvent, sink: Option<&crate::service::EventSink>) {
    let at = std::time::SystemTime::now();
    if tracing::enabled!(target: "queue_log", tracing::Level::INFO) {
        let unix = at
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        info!(target: "queue_log", line = %q.to_queue_log_line(unix), "queue event");
    }
    if let Some(s) = sink {
        s.send(crate::service::PbxEvent::Queue {
            event: q.clone(),
            at,
        });
    }
}
