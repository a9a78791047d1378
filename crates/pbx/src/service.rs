//! The call-control task: feeds [`CallControl`] with what the SIP task, the ACD task and the
//! media relay report, and delivers its outputs. It is the I/O side of call control: it reads
//! the clocks, owns the relay's session handles and talks to the recorder; media-session
//! requests are carried out at once (opening a session binds its sockets) and their answers
//! fed straight back.
//!
//! Back-pressure without deadlock: the SIP task waits when call control's event queue is full,
//! so call control must never wait on the SIP task's command queue while it is not reading
//! events. Its outputs therefore go into local queues that are flushed with `try_send` and,
//! when a queue is full, by a `reserve()` branch of the same `select!` that keeps reading.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use media::relay::{Leg, MediaConfig, MediaEvent, Relay, Session, SessionCommand, SessionId};
use sip::SipEvent;
use sip_transport::{SipCommand, SipHandle};

use crate::control::{VoicemailInput, VoicemailRequest};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tracing::{info, warn};

use crate::acd_task::{self, AcdReport, AcdRequest};
use crate::config::PbxConfig;
use crate::control::AgentRequest;
use crate::control::{
    build_acd, CallControl, MediaInput, MediaPorts, MediaRequest, MediaTotals, Now, Output,
    RecordingRequest,
};
use crate::recorder::service::{Recorder, RecorderCommand};

/// The clocks, read here (call control never reads them).
fn now() -> Now {
    Now {
        instant: Instant::now(),
        wall: SystemTime::now(),
    }
}

/// Why call control could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PbxError {
    /// The ACD refused a queue or agent of the config.
    #[error("ACD configuration: {0}")]
    Acd(#[from] acd::AcdError),
}

/// What call control and the ACD write down, for the storage task.
#[derive(Debug, Clone)]
pub enum PbxEvent {
    /// A call ended.
    Call(Box<crate::record::CallRecord>),
    /// An agent's state changed.
    AgentState(crate::record::AgentStateChange),
    /// A queue event (a line of Asterisk's `queue_log`: `epoch|callid|queue|agent|event|data…`).
    Queue {
        /// What happened.
        event: acd::QueueLogEvent,
        /// When.
        at: std::time::SystemTime,
    },
    /// The recorder finished a call's recording.
    Recording(crate::recorder::service::FinishedRecording),
    /// A voicemail message was listened to and kept, or deleted.
    Voicemail(crate::control::VoicemailRequest),
    /// A callback to keep (so that it survives a restart), or one that is over.
    Callback(crate::control::CallbackRequest),
}

/// Where [`PbxEvent`]s go: a bounded queue (a `std` channel, for the storage thread) that
/// never makes call handling wait. What does not fit is counted ([`EventSink::dropped`]) and
/// logged once per 1,000.
#[derive(Debug, Clone)]
pub struct EventSink {
    tx: std::sync::mpsc::SyncSender<PbxEvent>,
    dropped: Arc<AtomicU64>,
}

impl EventSink {
    /// A sink into `tx`.
    pub fn new(tx: std::sync::mpsc::SyncSender<PbxEvent>) -> EventSink {
        EventSink {
            tx,
            dropped: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Hand over an event without waiting.
    pub fn send(&self, ev: PbxEvent) {
        if self.tx.try_send(ev).is_err() {
            let n = self.dropped.fetch_add(1, Ordering::Relaxed);
            if n.is_multiple_of(1000) {
                warn!(
                    dropped = n + 1,
                    "storage is behind: call records or queue-log lines dropped"
                );
            }
        }
    }

    /// Events that did not fit.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// The count of events that did not fit, readable without holding the sink (holding a
    /// sink keeps the storage thread's queue open).
    pub fn dropped_count(&self) -> Arc<AtomicU64> {
        self.dropped.clone()
    }
}

/// A service task that ended while the server was meant to be running.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskStopped {
    /// Which task.
    pub task: &'static str,
    /// How it ended ("panicked: …", "ended early").
    pub reason: String,
}

impl std::fmt::Display for TaskStopped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "the {} task {}", self.task, self.reason)
    }
}

impl TaskStopped {
    /// What a finished task's join result says, for task `task`.
    pub fn from_join(task: &'static str, r: Result<(), tokio::task::JoinError>) -> TaskStopped {
        let reason = match r {
            Ok(()) => "ended early".to_owned(),
            Err(e) if e.is_panic() => {
                let p = e.into_panic();
                let msg = p
                    .downcast_ref::<&str>()
                    .map(|s| (*s).to_owned())
                    .or_else(|| p.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "(no message)".to_owned());
                format!("panicked: {msg}")
            }
            Err(_) => "was cancelled".to_owned(),
        };
        TaskStopped { task, reason }
    }
}

/// Asks call control for an agent's state ([`CallControl::agent_request`]).
#[derive(Debug, Clone)]
pub struct AgentRequests(mpsc::Sender<AgentAsk>);

impl AgentRequests {
    /// Ask; the refusal is a sentence for the user.
    pub async fn ask(&self, agent: &str, want: AgentRequest) -> Result<(), String> {
        let (tx, rx) = oneshot::channel();
        self.0
            .send((agent.to_owned(), want, tx))
            .await
            .map_err(|_| "call control is not running".to_owned())?;
        rx.await
            .map_err(|_| "call control is not running".to_owned())?
    }
}

/// Tells call control about voicemail messages the store took (from the storage thread).
#[derive(Debug, Clone)]
pub struct VoicemailInbox(mpsc::Sender<VoicemailInput>);

impl VoicemailInbox {
    /// Message `m` was stored; `false` when call control is not running or is far behind.
    pub fn stored(&self, m: crate::config::Message) -> bool {
        self.0.try_send(VoicemailInput::Stored(m)).is_ok()
    }
}

/// A running call-control service.
#[derive(Debug)]
pub struct PbxHandle {
    stop: Option<oneshot::Sender<()>>,
    voicemail: mpsc::Sender<VoicemailInput>,
    reloads: mpsc::Sender<PbxConfig>,
    agent_requests: mpsc::Sender<AgentAsk>,
    faults: mpsc::Sender<()>,
    task: JoinHandle<()>,
    acd_task: JoinHandle<()>,
    /// The media relay (counters).
    pub relay: Relay,
}

impl PbxHandle {
    /// Apply a reloaded configuration (see [`CallControl::reload`]).
    pub async fn reload(&self, cfg: PbxConfig) -> bool {
        self.reloads.send(cfg).await.is_ok()
    }

    /// Where requests for an agent's state go (from a supervisor, over the web).
    pub fn agent_requests(&self) -> AgentRequests {
        AgentRequests(self.agent_requests.clone())
    }

    /// Where the store reports voicemail messages it took.
    pub fn voicemail_inbox(&self) -> VoicemailInbox {
        VoicemailInbox(self.voicemail.clone())
    }

    /// Wait until the call-control or the ACD task ends by itself (a panic, or a return
    /// while the server runs). Callers would otherwise stay on music for ever: the server
    /// must stop and be restarted. After this returned the handle is only good for dropping.
    pub async fn stopped(&mut self) -> TaskStopped {
        tokio::select! {
            biased;
            r = &mut self.task => TaskStopped::from_join("call control", r),
            r = &mut self.acd_task => {
                // The ACD task ends by itself when call control's requests stop coming: if
                // call control is ending too, it went first, and that is the cause to report.
                if r.is_ok() {
                    if let Ok(cc) = tokio::time::timeout(Duration::from_secs(1), &mut self.task).await {
                        return TaskStopped::from_join("call control", cc);
                    }
                }
                TaskStopped::from_join("ACD", r)
            }
        }
    }

    /// Make the call-control task panic (a fault for tests of the supervision).
    #[doc(hidden)]
    pub fn inject_fault(&self) -> bool {
        self.faults.try_send(()).is_ok()
    }

    /// Hang up every call, deliver the last SIP commands, and stop.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = self.task.await;
        let _ = self.acd_task.await;
    }
}

/// What the store kept for call control across a restart.
#[derive(Debug, Default)]
pub struct Kept {
    /// Voicemail messages.
    pub messages: Vec<crate::config::Message>,
    /// Callbacks still to be made.
    pub callbacks: Vec<crate::config::PendingCallback>,
}

/// Start the ACD task and the call-control task. `sip_events` is the SIP task's event queue;
/// `kept` what the store kept (voicemail messages, pending callbacks).
pub fn start(
    cfg: PbxConfig,
    media: MediaConfig,
    recorder: Option<crate::recorder::service::Recorder>,
    sip: &SipHandle,
    sip_events: mpsc::Receiver<SipEvent>,
    events: Option<EventSink>,
    kept: Kept,
) -> Result<PbxHandle, PbxError> {
    let (engine, queues, agents) = build_acd(&cfg, cfg.seed)?;
    let (acd_tx, acd_rx) = mpsc::channel(4096);
    let (report_tx, report_rx) = mpsc::channel(4096);
    let (media_tx, media_rx) = mpsc::channel(4096);
    let acd_task = tokio::spawn(acd_task::run(
        engine,
        Instant::now(),
        acd_rx,
        report_tx,
        events.clone(),
    ));
    let relay = Relay::new(media, media_tx);
    // Browsers are offered the relay's own DTLS certificate.
    let mut cfg = cfg;
    cfg.webrtc_fingerprint = relay.dtls_fingerprint().map(str::to_owned);
    let mut control = CallControl::new(
        cfg,
        recorder.is_some(),
        sip.locations.clone(),
        &queues,
        &agents,
        now(),
    );
    control.load_messages(kept.messages);
    // Kept callbacks go into their queues before any new call (the run loop hands their
    // media and ACD requests over before it reads anything).
    control.load_callbacks(now(), kept.callbacks);
    let (vm_tx, vm_rx) = mpsc::channel(1024);
    let media = MediaSide {
        relay: relay.clone(),
        recorder,
        sessions: HashMap::new(),
        events,
        voicemail: vm_tx.clone(),
    };
    let (stop_tx, stop_rx) = oneshot::channel();
    let (reload_tx, reload_rx) = mpsc::channel(4);
    let (ask_tx, ask_rx) = mpsc::channel(64);
    let (fault_tx, fault_rx) = mpsc::channel(1);
    let task = tokio::spawn(run(
        control,
        media,
        Inputs {
            sip_events,
            reports: report_rx,
            media_events: media_rx,
            reloads: reload_rx,
            agent_requests: ask_rx,
            voicemail: vm_rx,
            faults: fault_rx,
            stop: stop_rx,
        },
        sip.commands().clone(),
        acd_tx,
    ));
    Ok(PbxHandle {
        stop: Some(stop_tx),
        voicemail: vm_tx,
        reloads: reload_tx,
        agent_requests: ask_tx,
        faults: fault_tx,
        task,
        acd_task,
        relay,
    })
}

/// The relay sessions and the recorder, driven by call control's outputs.
struct MediaSide {
    relay: Relay,
    recorder: Option<Recorder>,
    sessions: HashMap<SessionId, Session>,
    /// Where call records and agent states go.
    events: Option<EventSink>,
    /// Where a voicemail message read from its file goes (back to call control).
    voicemail: mpsc::Sender<VoicemailInput>,
}

impl MediaSide {
    /// Carry out a media request; its answer, if it has one, to feed back to call control.
    fn media(&mut self, id: SessionId, req: MediaRequest) -> Option<MediaInput> {
        match req {
            MediaRequest::Open => {
                let ports = match self.relay.open(id) {
                    Ok(s) => {
                        let ports = MediaPorts {
                            addr: s.advertised(),
                            caller: s.port(Leg::Caller),
                            agent: s.port(Leg::Agent),
                        };
                        self.sessions.insert(id, s);
                        Some(ports)
                    }
                    Err(e) => {
                        warn!(call_id = id.0, error = %e, "no media session for a new call");
                        None
                    }
                };
                Some(MediaInput::Opened { session: id, ports })
            }
            MediaRequest::Command(cmd) => {
                if let Some(s) = self.sessions.get(&id) {
                    s.command(cmd);
                }
                None
            }
            MediaRequest::AttachSupervisor => {
                let port = self.sessions.get(&id).and_then(|s| {
                    self.relay
                        .attach_supervisor(s)
                        .map_err(|e| warn!(call_id = id.0, error = %e, "no supervisor leg"))
                        .ok()
                });
                Some(MediaInput::SupervisorAttached { session: id, port })
            }
            MediaRequest::Tap(on) => {
                if let Some(s) = self.sessions.get(&id) {
                    let tap = match (&self.recorder, on) {
                        (Some(r), true) => Some(r.frames()),
                        _ => None,
                    };
                    s.command(SessionCommand::Tap(tap));
                }
                None
            }
            MediaRequest::Close => {
                // Dropping the session ends its task and frees its ports.
                let totals = self
                    .sessions
                    .remove(&id)
                    .map_or_else(MediaTotals::default, |s| {
                        let c = s.counters();
                        MediaTotals {
                            from_caller: c.received(Leg::Caller),
                            from_agent: c.received(Leg::Agent),
                            to_agent: c.forwarded(Leg::Caller),
                            to_caller: c.forwarded(Leg::Agent),
                        }
                    });
                Some(MediaInput::Closed {
                    session: id,
                    totals,
                })
            }
        }
    }

    fn recording(&mut self, req: RecordingRequest) {
        let Some(r) = &self.recorder else { return };
        let cmd = match req {
            RecordingRequest::Start {
                call,
                law,
                sidecar,
                at,
            } => RecorderCommand::Start {
                call,
                law,
                sidecar,
                at,
            },
            RecordingRequest::Pause { call, at } => RecorderCommand::Pause { call, at },
            RecordingRequest::Resume { call, at } => RecorderCommand::Resume { call, at },
            RecordingRequest::Stop { call, at, end } => RecorderCommand::Stop {
                call,
                at,
                end,
                dropped: self
                    .sessions
                    .get(&SessionId(call))
                    .map_or(0, |s| s.counters().tap_dropped()),
            },
        };
        r.command(cmd);
    }
}

struct Outbox {
    sip: VecDeque<SipCommand>,
    acd: VecDeque<AcdRequest>,
}

impl Outbox {
    /// Drain call control's outputs: SIP and ACD ones into the queues, media and recording
    /// ones carried out now (with their answers fed back, which may make more outputs).
    fn take(&mut self, control: &mut CallControl, media: &mut MediaSide) {
        while let Some(o) = control.poll_output() {
            match o {
                Output::Sip(c) => self.sip.push_back(c),
                Output::Acd(r) => self.acd.push_back(r),
                Output::Media(id, req) => {
                    if let Some(answer) = media.media(id, req) {
                        control.on_media(now(), answer);
                    }
                }
                Output::Recording(req) => media.recording(req),
                Output::Record(r) => {
                    if let Some(e) = &media.events {
                        e.send(PbxEvent::Call(r));
                    }
                }
                Output::AgentState(s) => {
                    if let Some(e) = &media.events {
                        e.send(PbxEvent::AgentState(s));
                    }
                }
                Output::Voicemail(VoicemailRequest::Load {
                    call,
                    message,
                    file,
                }) => {
                    let back = media.voicemail.clone();
                    tokio::task::spawn_blocking(move || {
                        let audio = read_message(&file);
                        let _ = back.blocking_send(VoicemailInput::Loaded {
                            call,
                            message,
                            audio,
                        });
                    });
                }
                Output::Voicemail(status) => {
                    if let Some(e) = &media.events {
                        e.send(PbxEvent::Voicemail(status));
                    }
                }
                Output::Callback(c) => {
                    if let Some(e) = &media.events {
                        e.send(PbxEvent::Callback(c));
                    }
                }
            }
        }
    }

    /// Send what fits without waiting.
    fn flush(&mut self, sip: &mpsc::Sender<SipCommand>, acd: &mpsc::Sender<AcdRequest>) {
        while let Some(c) = self.sip.pop_front() {
            match sip.try_send(c) {
                Ok(()) => {}
                Err(mpsc::error::TrySendError::Full(c)) => {
                    self.sip.push_front(c);
                    break;
                }
                Err(mpsc::error::TrySendError::Closed(_)) => self.sip.clear(),
            }
        }
        while let Some(r) = self.acd.pop_front() {
            match acd.try_send(r) {
                Ok(()) => {}
                Err(mpsc::error::TrySendError::Full(r)) => {
                    self.acd.push_front(r);
                    break;
                }
                Err(mpsc::error::TrySendError::Closed(_)) => self.acd.clear(),
            }
        }
    }
}

/// SIP commands held for the SIP task beyond which call control reads no more SIP events.
const OUTBOX_LIMIT: usize = 8192;

/// What the call-control task reads.
/// An agent request and where its answer goes.
type AgentAsk = (String, AgentRequest, oneshot::Sender<Result<(), String>>);

struct Inputs {
    sip_events: mpsc::Receiver<SipEvent>,
    reports: mpsc::Receiver<AcdReport>,
    media_events: mpsc::Receiver<MediaEvent>,
    reloads: mpsc::Receiver<PbxConfig>,
    agent_requests: mpsc::Receiver<AgentAsk>,
    voicemail: mpsc::Receiver<VoicemailInput>,
    faults: mpsc::Receiver<()>,
    stop: oneshot::Receiver<()>,
}

async fn run(
    mut control: CallControl,
    mut media: MediaSide,
    inputs: Inputs,
    sip_tx: mpsc::Sender<SipCommand>,
    acd_tx: mpsc::Sender<AcdRequest>,
) {
    let Inputs {
        mut sip_events,
        mut reports,
        mut media_events,
        mut reloads,
        mut agent_requests,
        mut voicemail,
        mut faults,
        mut stop,
    } = inputs;
    let mut out = Outbox {
        sip: VecDeque::new(),
        acd: control.startup_commands().into(),
    };
    out.take(&mut control, &mut media);
    let sleep = tokio::time::sleep(Duration::from_secs(3600));
    tokio::pin!(sleep);
    let mut armed: Option<Instant> = None;
    loop {
        out.flush(&sip_tx, &acd_tx);
        let deadline = control.poll_timeout();
        if deadline != armed {
            armed = deadline;
            let at = deadline.unwrap_or_else(|| Instant::now() + Duration::from_secs(3600));
            sleep.as_mut().reset(tokio::time::Instant::from_std(at));
        }
        tokio::select! {
            _ = &mut stop => break,
            // While the SIP task is not taking what we have for it, read no more from it:
            // its event queue fills, and it answers new calls 503 instead of queueing them.
            ev = sip_events.recv(), if out.sip.len() < OUTBOX_LIMIT => match ev {
                Some(ev) => control.on_sip(now(), ev),
                None => break,
            },
            Some(r) = reports.recv() => control.on_acd(now(), r),
            Some(m) = media_events.recv() => control.on_media(now(), MediaInput::Event(m)),
            Some(cfg) = reloads.recv() => control.reload(cfg),
            Some((agent, want, reply)) = agent_requests.recv() => {
                let _ = reply.send(control.agent_request(&agent, want));
            }
            Some(v) = voicemail.recv() => control.on_voicemail(now(), v),
            Some(()) = faults.recv() => panic!("fault injected into call control"),
            p = sip_tx.reserve(), if !out.sip.is_empty() => {
                if let (Ok(p), Some(c)) = (p, out.sip.pop_front()) {
                    p.send(c);
                }
            }
            p = acd_tx.reserve(), if !out.acd.is_empty() => {
                if let (Ok(p), Some(r)) = (p, out.acd.pop_front()) {
                    p.send(r);
                }
            }
            // Only while armed: an elapsed sleep stays ready (see the ACD task).
            _ = &mut sleep, if armed.is_some() => {
                armed = None;
                control.on_timeout(now());
            }
        }
        out.take(&mut control, &mut media);
    }
    // Shutdown: every call still up is ended properly before the SIP task stops.
    let calls = control.call_count();
    control.hang_up_all(now());
    out.take(&mut control, &mut media);
    if calls > 0 {
        info!(calls, "hanging up calls for shutdown");
    }
    for c in out.sip.drain(..) {
        if tokio::time::timeout(Duration::from_secs(1), sip_tx.send(c))
            .await
            .is_err()
        {
            warn!("SIP task not taking commands at shutdown");
            break;
        }
    }
    for r in out.acd.drain(..) {
        let _ = acd_tx.try_send(r);
    }
}

/// A voicemail message's audio: the caller's channel of its recording.
fn read_message(path: &std::path::Path) -> Option<media::prompt::Prompt> {
    media::prompt::Prompt::load_first_channel(path)
        .map_err(|e| warn!(error = %e, "voicemail message unreadable"))
        .ok()
}
