//! Call control: the back-to-back user agent's decisions, as a sans-IO state machine in the
//! manner of [`sip::Endpoint`]. It reads no clock, opens no socket and spawns nothing: the
//! time ([`Now`], monotonic and wall clock) and every event come in as inputs, and everything
//! it wants done comes out as an [`Output`]: SIP commands, ACD requests, media-session
//! requests (open, command, close a relay session) and recording requests. What those
//! services answer (the ports a session got, its DTMF and timeouts, its packet totals, the
//! ids the ACD gave to added queues and agents) comes back as inputs.
//!
//! ```text
//! control.on_sip(now, sip_event);   // or on_acd(now, report), on_media(now, media_input),
//!                                   // on_timeout(now), reload(now, cfg)
//! while let Some(out) = control.poll_output() {
//!     // Output::Sip -> SIP task, Output::Acd -> ACD task,
//!     // Output::Media -> relay (answer with on_media), Output::Recording -> recorder
//! }
//! let next = control.poll_timeout();   // announcements, ring timeouts, forgotten INVITEs
//! ```
//!
//! Every client request gets an id ([`TxId::user`]) before it leaves, so responses are
//! matched without waiting for the SIP task.
//!
//! A call to a queue: call control asks for a media session; once the relay reports its
//! ports, the caller is answered (200 OK with the relay's SDP), hears the greeting and music,
//! and joins the ACD. Each ACD offer rings every registered phone of the agent
//! (`forking`); the first 2xx wins, the other phones get CANCEL, and the relay bridges the
//! legs. Every way a call can end (BYE from either side, CANCEL, ACD timeout or overflow, a
//! silent leg, a missing ACK, an offer that fails everywhere) goes through
//! `teardown`, which answers or hangs up every leg that is still up and closes the media
//! session (its ports go back to the pool); the "call ended" line is written when the relay
//! reports the session's totals.
//!
//! Where things are: `dialplan` (new calls, routes, answering, joining a queue),
//! `forking` (ringing phones, first 2xx wins, CANCEL, late 2xx), `in_dialog` (ACK of a
//! delayed offer, BYE, re-INVITE/UPDATE, hold), `queueing` (what the ACD decides,
//! announcements), `recording`, `teardown`, and `directory` (queues and agents,
//! reloads, agents' phones).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::Ipv4Addr;
use std::time::{Duration, Instant, SystemTime};

use crate::recorder::file::{utc, Sidecar};
use crate::recorder::g711::Law;
use acd::{
    AcdCommand, AcdEvent, AgentId, AgentState, CallArrival, CallOutcome, Overflow, Party, QueueId,
};
use bytes::Bytes;
use media::prompt::Prompt;
use media::relay::{
    Leg, MediaEvent, MediaEventKind, SdesKeys, SessionCommand, SessionId, WebRtcParams,
};
use media::sdp::{
    negotiate, Direction, LocalMedia, LocalWebRtc, Negotiated, SdpError, SessionDescription,
};
use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use sip::endpoint::Caller;
use sip::header::NameAddr;
use sip::message::{Headers, Method, Request, Response};
use sip::registrar::BindingChange;
use sip::transaction::TxId;
use sip::{Dialog, Flow, SipEvent, Transport};
use sip_transport::{Locations, SipCommand};
use tracing::{debug, info, info_span, warn, Span};

use crate::acd_task::{AcdReport, AcdRequest};
use crate::config::{AgentSetup, PbxConfig, QueueSetup};
use crate::presence;
use crate::record::{AgentStateChange, CallRecord, HungUpBy, Outcome, RingAttempt, RingResult};

mod attended;
mod callback;
mod dialplan;
mod directory;
mod forking;
mod in_dialog;
mod ivr;
mod monitor;
mod outbound;
mod queueing;
mod recording;
mod registration;
mod teardown;
mod transfer;
mod voicemail;

pub use callback::CallbackRequest;
pub use registration::TrunkStatus;
pub use voicemail::{VoicemailInput, VoicemailRequest};

use directory::Directory;

/// Methods we allow in dialogs (the Allow header of our INVITEs and answers).
const ALLOW: &str = "INVITE, ACK, CANCEL, BYE, OPTIONS, INFO, UPDATE, REFER";

/// The time, as an input: the monotonic clock decides (timers, durations), the wall clock is
/// only written down (a recording's start and end).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Now {
    /// Monotonic time.
    pub instant: Instant,
    /// Wall-clock time at the same moment.
    pub wall: SystemTime,
}

/// What call control asks of the other services.
#[derive(Debug)]
pub enum Output {
    /// For the SIP task.
    Sip(SipCommand),
    /// For the ACD task.
    Acd(AcdRequest),
    /// For the media relay, about one call's session.
    Media(SessionId, MediaRequest),
    /// For the recorder.
    Recording(RecordingRequest),
    /// A call ended: its record, for storage.
    Record(Box<CallRecord>),
    /// An agent's state changed (as the ACD reports it), for storage.
    AgentState(AgentStateChange),
    /// For the voicemail side of the service and the store.
    Voicemail(VoicemailRequest),
    /// For the store: pending callbacks.
    Callback(CallbackRequest),
}

/// What call control asks of the media relay for one session.
#[derive(Debug)]
pub enum MediaRequest {
    /// Allocate a port pair per leg; answered with [`MediaInput::Opened`].
    Open,
    /// A command for the open session (never [`SessionCommand::Tap`]: see `Tap` below).
    Command(SessionCommand),
    /// Copy the session's packets to the recorder (`true`) or stop (`false`).
    Tap(bool),
    /// Add a supervisor's leg to the session; answered with
    /// [`MediaInput::SupervisorAttached`].
    AttachSupervisor,
    /// End the session and free its ports; answered with [`MediaInput::Closed`].
    Close,
}

/// What call control asks of the recorder.
#[derive(Debug)]
pub enum RecordingRequest {
    /// Start recording call `call` (its session's tap follows as a [`MediaRequest::Tap`]).
    Start {
        /// The call (and media session) id.
        call: u64,
        /// Its codec.
        law: Law,
        /// The sidecar as known at the start.
        sidecar: Box<Sidecar>,
        /// Timeline position 0.
        at: Instant,
    },
    /// Silence from `at` on.
    Pause {
        /// The call.
        call: u64,
        /// From when.
        at: Instant,
    },
    /// Record again from `at` on.
    Resume {
        /// The call.
        call: u64,
        /// From when.
        at: Instant,
    },
    /// The call is over (the driver adds the frames the session's tap dropped).
    Stop {
        /// The call.
        call: u64,
        /// When it ended.
        at: Instant,
        /// Wall-clock end, for the sidecar.
        end: SystemTime,
    },
}

/// The ports of an open media session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MediaPorts {
    /// The address written into our SDP.
    pub addr: Ipv4Addr,
    /// RTP port of the caller leg.
    pub caller: u16,
    /// RTP port of the agent leg.
    pub agent: u16,
}

impl MediaPorts {
    /// The RTP port of a leg.
    pub fn port(&self, leg: Leg) -> u16 {
        match leg {
            Leg::Caller => self.caller,
            Leg::Agent => self.agent,
            // Call control attaches no supervisor yet.
            Leg::Supervisor => 0,
        }
    }
}

/// A session's packet counts when it closed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MediaTotals {
    /// RTP packets received from the caller.
    pub from_caller: u64,
    /// RTP packets received from the agent.
    pub from_agent: u64,
    /// Packets of the caller forwarded to the agent.
    pub to_agent: u64,
    /// Packets of the agent forwarded to the caller.
    pub to_caller: u64,
}

/// What the media relay reports.
#[derive(Debug, Clone)]
pub enum MediaInput {
    /// Answer to [`MediaRequest::Open`]: the ports, or `None` when no session could be opened
    /// (no free ports, a socket error; the driver logs why).
    Opened {
        /// The session.
        session: SessionId,
        /// Its ports.
        ports: Option<MediaPorts>,
    },
    /// Something happened in a session (DTMF, a silent leg, a prompt finished).
    Event(MediaEvent),
    /// Answer to [`MediaRequest::AttachSupervisor`]: the supervisor leg's RTP port, or
    /// `None` when it could not be added.
    SupervisorAttached {
        /// The session.
        session: SessionId,
        /// The port.
        port: Option<u16>,
    },
    /// Answer to [`MediaRequest::Close`].
    Closed {
        /// The session.
        session: SessionId,
        /// Its packet counts.
        totals: MediaTotals,
    },
}

/// Where a call goes.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Route {
    /// A queue (index into the queue table).
    Queue(usize),
    /// Another registered user.
    Extension(String),
    /// An agent feature code.
    Feature(Feature),
    /// A queue outside its business hours: its closed announcement, then hang up (index
    /// into the queue table).
    Closed(usize),
    /// An IVR menu (by name; the call's `ivr` holds where it is in it).
    Menu(String),
    /// Leaving a message in this mailbox.
    Voicemail(String),
    /// The owner listening to this mailbox.
    Mailbox(String),
    /// Out through a carrier trunk.
    Outbound(Box<outbound::OutPlan>),
    /// A supervisor monitoring this agent (user).
    Monitor(String, media::relay::MonitorMode),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Feature {
    Login,
    Logout,
    Pause,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Waiting for the relay to open the call's media session.
    Opening,
    /// The caller's INVITE is not answered yet (an extension call ringing).
    Ringing,
    /// Answered; waiting in a queue (or playing a feature-code tone).
    Waiting,
    /// Caller and agent (or callee) are connected.
    Connected,
}

/// The caller's side: our UAS dialog.
#[derive(Debug)]
struct CallerLeg {
    invite_tx: TxId,
    invite: Request,
    flow: Flow,
    local_tag: String,
    answered: bool,
    dialog: Option<Dialog>,
    offer: SessionDescription,
    media: Negotiated,
    sdp_version: u64,
    /// Delayed offer: the INVITE had no SDP, our 200 carried the offer, and the caller's
    /// answer is still to come in the ACK.
    late: bool,
}

/// One phone being rung for an offer.
#[derive(Debug)]
struct Fork {
    tx: TxId,
    /// Its entry in the call's [`History::attempts`].
    attempt: usize,
    flow: Flow,
    invite: Request,
    failed: Option<u16>,
    /// A browser, offered WebRTC media.
    webrtc: bool,
    /// A phone over TLS, offered SRTP keyed in the SDP.
    sdes: bool,
}

/// An outbound attempt: an ACD offer to an agent, or an extension being rung.
#[derive(Debug)]
struct Attempt {
    agent: Option<usize>,
    user: String,
    forks: Vec<Fork>,
    /// Our SDP offer to the phones (the agent leg of the relay).
    local: LocalMedia,
    /// The same as offered to browsers (WebRTC), if any was rung.
    local_webrtc: Option<LocalMedia>,
    /// The same as offered to phones over TLS (SDES-SRTP), if any was rung.
    local_sdes: Option<LocalMedia>,
}

/// The answered side: our UAC dialog with the agent's (or callee's) phone.
#[derive(Debug)]
struct AgentLeg {
    dialog: Dialog,
    agent: Option<usize>,
    user: String,
    local: LocalMedia,
    on_hold: bool,
    /// The far end of a call out (a carrier's leg), not one of ours: it may not transfer.
    outside: bool,
}

#[derive(Debug)]
struct Call {
    span: Span,
    route: Route,
    phase: Phase,
    caller: CallerLeg,
    /// Who the caller is (as the SIP endpoint authenticated them).
    identity: Caller,
    /// The media session's ports, once the relay has opened it.
    ports: Option<MediaPorts>,
    /// Phones being rung: one attempt per offered agent (several with ring-all).
    attempts: Vec<Attempt>,
    agent: Option<AgentLeg>,
    /// The ACD knows this call (a queue call that has not ended in the ACD).
    in_acd: bool,
    /// Being recorded, and whether paused.
    recording: bool,
    recording_paused: bool,
    /// The agent's last DTMF keys (for the recording pause key).
    agent_keys: String,
    /// A queue call with a delayed offer joins its queue when the ACK brings the answer.
    pending_queue: Option<usize>,
    /// A menu call with a delayed offer hears its menu when the ACK brings the answer.
    pending_menu: Option<String>,
    /// Where the call is in an IVR menu.
    ivr: Option<ivr::MenuState>,
    /// Variables set by menus (collected digits, choices), for the record and the agent.
    variables: Vec<(String, String)>,
    /// The queue whose post-call survey the caller is in (the agent has hung up).
    survey_of: Option<usize>,
    /// The caller's score in that survey.
    satisfaction: Option<u8>,
    /// When the conversation with the agent ended, if the call goes on without them.
    talk_ended: Option<Instant>,
    /// Where the call is in voicemail.
    vm: Option<voicemail::VmState>,
    /// The external destination the ACD overflowed the call to.
    overflow_to: Option<std::sync::Arc<str>>,
    /// The call became a callback.
    cb: Option<callback::CbState>,
    /// The agent (user) who blind-transferred the call, while its target has not answered:
    /// the caller goes back to them if it does not.
    transfer_back: Option<String>,
    /// The agent's last keys (for the transfer code), and the number after it while it is
    /// being keyed.
    transfer_keys: String,
    transfer_digits: Option<String>,
    /// The number being keyed is for an attended transfer.
    transfer_attended: bool,
    /// The agent has hung up (completing a keyed attended transfer): no BYE for them.
    agent_hung_up: bool,
    /// Agents (by user) whose phones this call keeps busy.
    busy_users: Vec<String>,
    /// A call out: where it is in its trunks.
    dialing: Option<outbound::Dialing>,
    /// An attended transfer of this call waiting for the consulted party.
    attended: Option<attended::Attended>,
    /// A supervisor monitoring the call.
    supervisor: Option<monitor::SupervisorLeg>,
    /// A supervisor's phone being rung to monitor the call.
    supervisor_ring: Option<monitor::SupRing>,
    created: Instant,
    /// When the call joined its (first) queue: its wait counts from then.
    queued_at: Option<Instant>,
    connected_at: Option<Instant>,
    /// What the call record will say.
    history: History,
}

impl Call {
    /// Our dialog with a leg's phone, once it has one.
    fn dialog_mut(&mut self, leg: Leg) -> Option<&mut Dialog> {
        match leg {
            Leg::Caller => self.caller.dialog.as_mut(),
            Leg::Agent => self.agent.as_mut().map(|a| &mut a.dialog),
            Leg::Supervisor => self.supervisor.as_mut().and_then(|s| s.dialog.as_mut()),
        }
    }

    /// A call about to open its media session, with nothing happened yet.
    fn new(
        span: Span,
        route: Route,
        caller: CallerLeg,
        identity: Caller,
        now: Instant,
        history: History,
    ) -> Call {
        Call {
            span,
            route,
            phase: Phase::Opening,
            caller,
            identity,
            ports: None,
            attempts: Vec::new(),
            agent: None,
            in_acd: false,
            recording: false,
            recording_paused: false,
            agent_keys: String::new(),
            pending_queue: None,
            pending_menu: None,
            ivr: None,
            variables: Vec::new(),
            survey_of: None,
            satisfaction: None,
            talk_ended: None,
            vm: None,
            overflow_to: None,
            cb: None,
            transfer_back: None,
            transfer_keys: String::new(),
            transfer_digits: None,
            transfer_attended: false,
            agent_hung_up: false,
            busy_users: Vec::new(),
            dialing: None,
            attended: None,
            supervisor: None,
            supervisor_ring: None,
            created: now,
            queued_at: None,
            connected_at: None,
            history,
        }
    }
}

/// The times and ring attempts of a call, for its record.
#[derive(Debug)]
struct History {
    arrived: SystemTime,
    queued: Option<SystemTime>,
    first_offer: Option<SystemTime>,
    answered: Option<SystemTime>,
    /// Who answered.
    agent: Option<String>,
    /// The queue the call was in first, when it overflowed to another.
    overflowed_from: Option<String>,
    /// Since when the agent holds the caller.
    hold_since: Option<Instant>,
    hold: Duration,
    attempts: Vec<RingAttempt>,
    /// Finished segments, and the one in progress (agent, since).
    segments: Vec<crate::record::Segment>,
    segment: Option<(String, SystemTime)>,
}

impl History {
    /// `agent` talks for the center from `at` (ending the segment in progress, if any, as
    /// handed over).
    fn begin_segment(&mut self, agent: &str, at: SystemTime) {
        if self.segment.as_ref().is_some_and(|(a, _)| a == agent) {
            return;
        }
        self.end_segment(at, "transferred");
        self.segment = Some((agent.to_owned(), at));
    }

    /// The segment in progress ends at `at`, `how`.
    fn end_segment(&mut self, at: SystemTime, how: &str) {
        if let Some((agent, started)) = self.segment.take() {
            self.segments.push(crate::record::Segment {
                agent,
                started,
                ended: at,
                end: how.to_owned(),
            });
        }
    }

    fn new(arrived: SystemTime) -> History {
        History {
            arrived,
            queued: None,
            first_offer: None,
            answered: None,
            agent: None,
            overflowed_from: None,
            hold_since: None,
            hold: Duration::ZERO,
            attempts: Vec::new(),
            segments: Vec::new(),
            segment: None,
        }
    }

    /// How ringing phone `i` ended (the first word counts).
    fn rang(&mut self, i: usize, result: RingResult, at: SystemTime) {
        if let Some(a) = self.attempts.get_mut(i) {
            if a.result == RingResult::Ringing {
                a.result = result;
                a.ended = Some(at);
            }
        }
    }

    /// Hold started (`true`) or ended.
    fn held(&mut self, on: bool, now: Instant) {
        match (on, self.hold_since) {
            (true, None) => self.hold_since = Some(now),
            (false, Some(since)) => {
                self.hold += now.saturating_duration_since(since);
                self.hold_since = None;
            }
            _ => {}
        }
    }
}

/// What call control holds on to (see [`CallControl::held`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Held {
    /// Calls in progress.
    pub calls: usize,
    /// Ended calls waiting for their media totals.
    pub closing: usize,
    /// Dialogs.
    pub dialogs: usize,
    /// Callers' INVITE transactions.
    pub server_transactions: usize,
    /// Our client transactions (not counting INVITEs of ended calls kept for a late 2xx).
    pub client_transactions: usize,
    /// INVITEs of ended calls kept for a late 2xx (forgotten after 40 s).
    pub orphans: usize,
    /// Timers, not counting the ones that forget those INVITEs.
    pub timers: usize,
    /// Queues and agents a reload added, waiting for their ACD ids.
    pub pending_directory: usize,
    /// Message-waiting subscriptions.
    pub subscriptions: usize,
}

/// A call that has ended, until the relay reports its totals.
#[derive(Debug)]
struct Ended {
    span: Span,
    reason: EndReason,
    duration: Duration,
    talk: Option<Duration>,
}

/// What one of our client transactions is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    /// An INVITE to a phone for call `call`.
    Fork(u64),
    /// An INVITE whose call is gone: a late 2xx gets ACK and BYE.
    Orphan,
    /// A BYE or re-INVITE whose answer does not matter.
    Fire,
    /// A NOTIFY of a subscription: an error answer ends the subscription.
    Notify(u64),
    /// Our INVITE to a callback's customer, for call `call`.
    Customer(u64),
    /// A trunk's REGISTER to its carrier (index into the registrations).
    Register(usize),
    /// Our re-INVITE to the consulted party of an attended transfer (the consultation).
    Reinvite(u64),
    /// Our re-INVITE that gives the consulted party its consultation's media back (the
    /// transfer fell through after it had been re-INVITEd).
    Restore(u64),
    /// Our re-INVITE that moves a supervisor taking call `call` over onto its agent side.
    TakeOver(u64),
    /// Our INVITE to a supervisor's phone to monitor call `call`.
    SupervisorRing(u64),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Timer {
    Announce(u64),
    /// A menu's wait for a key: (call, the menu state's round).
    Menu(u64, u64),
    /// The end of a menu's last announcement: (call, round).
    MenuEnd(u64, u64),
    /// A voicemail wait (greeting, message length, PIN, a key): (call, round).
    Voicemail(u64, u64),
    /// A message-summary subscription runs out: (subscription, round).
    Subscription(u64, u64),
    /// A callback's wait (confirmation, the customer's ring, the next try): (call, round).
    Callback(u64, u64),
    /// The agent paused while keying a transfer number.
    TransferDigits(u64),
    /// A call out whose carrier has not answered its INVITE at all: (call, attempt round).
    OutboundTry(u64, u64),
    /// A trunk's registration is due: (registration, its round).
    Register(usize, u64),
    /// A supervisor's phone rung to monitor call `call` has rung long enough.
    SupervisorRing(u64),
    RingTimeout(u64),
    ForgetOrphan(TxId),
    /// The ACK kept for retransmissions of a 2xx to one of our INVITEs can go.
    ForgetAck(TxId),
}

/// Why a call ended (for the log and for the caller's final answer).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum EndReason {
    CallerHangup,
    AgentHangup,
    CallerCancelled,
    NoAck,
    MediaTimeout(Leg),
    QueueTimeout,
    /// The queue's empty-queue rule turned the caller away (or out).
    QueueEmpty,
    NoAnswer,
    Busy,
    Unreachable,
    FeatureDone,
    /// The closed announcement of a queue outside its hours was played.
    Closed,
    /// An IVR menu hung up: its hang-up choice, its announcement, or no valid answer.
    MenuDone,
    /// Voicemail is done with the call (message left, mailbox closed).
    VoicemailDone,
    /// A callback's customer was not reached after every try.
    CallbackFailed,
    Overflowed,
    /// The far end of a call out refused it with this status (or every trunk failed: 503).
    Refused(u16),
    /// An attended transfer joined this consultation's far end to the customer.
    Transferred,
    Failed,
    Shutdown,
}

impl EndReason {
    fn as_str(self) -> &'static str {
        match self {
            EndReason::CallerHangup => "caller hung up",
            EndReason::AgentHangup => "agent hung up",
            EndReason::CallerCancelled => "caller cancelled",
            EndReason::NoAck => "no ACK from the caller",
            EndReason::MediaTimeout(Leg::Caller) => "no media from the caller",
            EndReason::MediaTimeout(Leg::Agent) => "no media from the agent",
            EndReason::MediaTimeout(Leg::Supervisor) => "no media from the supervisor",
            EndReason::QueueTimeout => "queue timeout",
            EndReason::QueueEmpty => "no agent in the queue (its join_empty/leave_when_empty rule)",
            EndReason::NoAnswer => "no answer",
            EndReason::Busy => "busy",
            EndReason::Unreachable => "not reachable",
            EndReason::FeatureDone => "feature code done",
            EndReason::Closed => "closed: outside business hours",
            EndReason::MenuDone => "ended by the menu",
            EndReason::VoicemailDone => "voicemail done",
            EndReason::CallbackFailed => "callback: the customer was not reached",
            EndReason::Overflowed => "overflowed",
            EndReason::Refused(_) => "refused by the far end",
            EndReason::Transferred => "transferred",
            EndReason::Failed => "failed",
            EndReason::Shutdown => "server shutdown",
        }
    }

    /// The final answer for a caller whose INVITE is still unanswered.
    fn status(self) -> u16 {
        match self {
            EndReason::Busy => 486,
            EndReason::NoAnswer | EndReason::Unreachable => 480,
            EndReason::CallerCancelled => 487,
            EndReason::Shutdown => 503,
            EndReason::Refused(s) => s,
            EndReason::Transferred => 487,
            _ => 500,
        }
    }
}

/// What a supervisor asks of an agent ([`CallControl::agent_request`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AgentRequest {
    /// Take calls (logging in first if logged out).
    Ready,
    /// No calls, with this reason code (after the current call, if talking).
    Pause(String),
    /// Log out of the queues.
    LogOut,
    /// Ring this supervisor (SIP user)'s phone to monitor the agent's call in this mode.
    Monitor(String, media::relay::MonitorMode),
}

/// The call-control state machine.
pub struct CallControl {
    /// Settings (its `queues` and `agents` live in `dir`).
    cfg: PbxConfig,
    /// Queues and agents.
    dir: Directory,
    /// Whether a recorder runs (recording requests are made only then).
    recorder: bool,
    locations: Locations,
    /// The wall clock at the latest input.
    wall: SystemTime,
    rng: ChaCha8Rng,
    next_call: u64,
    next_tx: u64,
    calls: HashMap<u64, Call>,
    /// Caller's INVITE server transaction → call.
    by_invite: HashMap<TxId, u64>,
    /// A supervisor's INVITE server transaction, until answered → the monitored call.
    by_sup_invite: HashMap<TxId, u64>,
    /// Our client transactions.
    by_client: HashMap<TxId, Role>,
    /// Late-2xx handling for INVITEs of ended calls: the request and its flow.
    orphans: HashMap<TxId, (Request, Flow)>,
    /// The ACKs we sent for 2xx answers to our INVITEs and re-INVITEs, sent again when the
    /// 2xx is retransmitted (our ACK was lost), for as long as the far end may retransmit.
    acks: HashMap<TxId, (Request, Flow)>,
    /// INVITEs given up before any answer (no CANCEL was allowed yet): cancelled on their
    /// first provisional answer.
    cancel_on_1xx: std::collections::HashSet<TxId>,
    /// (Call-ID, our tag) → (call, which side).
    by_dialog: HashMap<(String, String), (u64, Leg)>,
    /// Calls that ended and wait for their media totals (for the "call ended" line).
    closing: HashMap<u64, Ended>,
    timers: BTreeMap<(Instant, u64), Timer>,
    timer_seq: u64,
    out: VecDeque<Output>,
    /// Voicemail messages by id.
    messages: BTreeMap<u64, crate::config::Message>,
    /// Message-summary subscriptions, by id, and by (Call-ID, our tag).
    subs: HashMap<u64, voicemail::Subscription>,
    by_sub: HashMap<(String, String), u64>,
    next_sub: u64,
    host: String,
    beep: Prompt,
    double_beep: Prompt,
    /// What a caller hears while a menu rings an extension for them.
    ringback: Prompt,
    /// Trunks that register to their carriers.
    regs: Vec<registration::TrunkReg>,
    /// The monotonic time of the latest input.
    now: Instant,
}

impl std::fmt::Debug for CallControl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CallControl")
            .field("calls", &self.calls.len())
            .finish_non_exhaustive()
    }
}

/// A re-INVITE in dialog `d` offering `sdp`, with our `contact`.
fn reinvite(d: &mut Dialog, contact: String, sdp: String) -> Request {
    let mut req = d.request(Method::Invite);
    req.headers.push("Contact", contact);
    req.headers.push("Allow", ALLOW);
    req.headers.push("Content-Type", "application/sdp");
    req.body = Bytes::from(sdp);
    req
}

fn user_of(uri_or_addr: &str) -> Option<String> {
    let a = NameAddr::parse(uri_or_addr).ok()?;
    a.uri.user_unescaped()
}

fn request_user(req: &Request) -> Option<String> {
    sip::uri::Uri::parse(&req.uri).ok()?.user_unescaped()
}

fn to_tag(headers: &Headers) -> Option<String> {
    headers
        .get("To")
        .and_then(|t| NameAddr::parse(t).ok())
        .and_then(|t| t.tag().map(str::to_owned))
}

fn cseq_num(headers: &Headers) -> u32 {
    headers
        .get("CSeq")
        .and_then(|c| sip::header::CSeq::parse(c).ok())
        .map_or(0, |c| c.seq)
}

impl CallControl {
    /// Call control over `cfg`. `queue_ids` and `agent_ids` are what the ACD engine returned
    /// when the queues and agents of `cfg` were added to it, in the same order.
    /// Call control over `cfg`. `queue_ids` and `agent_ids` are what the ACD engine returned
    /// when the queues and agents of `cfg` were added to it, in the same order (see
    /// [`build_acd`]). `recorder` says whether a recorder runs; `locations` is the registrar's
    /// view of who is registered where (written by the SIP driver).
    pub fn new(
        mut cfg: PbxConfig,
        recorder: bool,
        locations: Locations,
        queue_ids: &[QueueId],
        agent_ids: &[AgentId],
        now: Now,
    ) -> CallControl {
        let dir = Directory::new(
            std::mem::take(&mut cfg.queues),
            queue_ids,
            std::mem::take(&mut cfg.agents),
            agent_ids,
        );
        let host = cfg
            .contact_host
            .rsplit_once(':')
            .map_or(cfg.contact_host.clone(), |(h, _)| h.to_owned());
        let beep = Prompt::tone("beep", 1000.0, Duration::from_millis(300), 6000);
        let double_beep = {
            let on = Prompt::tone("beep", 600.0, Duration::from_millis(150), 6000);
            let mut s: Vec<i16> = Vec::new();
            for _ in 0..2 {
                s.extend(decode(&on));
                s.extend(std::iter::repeat_n(0, 800));
            }
            Prompt::from_samples("double-beep", &s)
        };
        // 440 + 480 Hz, 2 s on, 4 s off (the North American ring).
        let ringback = {
            let on: Vec<i16> = (0..16_000)
                .map(|i| {
                    let t = f64::from(i) / 8000.0;
                    let tau = 2.0 * std::f64::consts::PI;
                    (3000.0 * ((tau * 440.0 * t).sin() + (tau * 480.0 * t).sin())) as i16
                })
                .collect();
            let mut s = on;
            s.extend(std::iter::repeat_n(0, 32_000));
            Prompt::from_samples("ringback", &s)
        };
        let first_call = cfg.first_call.max(1);
        let mut control = CallControl {
            rng: ChaCha8Rng::seed_from_u64(cfg.seed),
            cfg,
            dir,
            recorder,
            locations,
            wall: now.wall,
            next_call: first_call,
            next_tx: 1,
            calls: HashMap::new(),
            by_invite: HashMap::new(),
            by_sup_invite: HashMap::new(),
            by_client: HashMap::new(),
            orphans: HashMap::new(),
            acks: HashMap::new(),
            cancel_on_1xx: std::collections::HashSet::new(),
            by_dialog: HashMap::new(),
            closing: HashMap::new(),
            timers: BTreeMap::new(),
            timer_seq: 0,
            out: VecDeque::new(),
            messages: BTreeMap::new(),
            subs: HashMap::new(),
            by_sub: HashMap::new(),
            next_sub: 1,
            host,
            beep,
            double_beep,
            ringback,
            regs: Vec::new(),
            now: now.instant,
        };
        control.start_registrations(now.instant);
        control
    }

    /// The agents to log in at start (from `login_on_start`): ACD commands to send first.
    pub fn startup_commands(&self) -> Vec<AcdRequest> {
        self.dir.startup_logins()
    }

    /// Calls in progress.
    pub fn call_count(&self) -> usize {
        self.calls.len()
    }

    /// What call control still holds on to, for checks that nothing leaks: calls, ended calls
    /// waiting for their media totals, dialogs, client and server transactions, and timers
    /// other than the ones that forget cancelled INVITEs.
    pub fn held(&self) -> Held {
        Held {
            calls: self.calls.len(),
            closing: self.closing.len(),
            dialogs: self.by_dialog.len(),
            server_transactions: self.by_invite.len() + self.by_sup_invite.len(),
            client_transactions: self
                .by_client
                .values()
                .filter(|r| !matches!(r, Role::Orphan | Role::Register(_)))
                .count(),
            orphans: self.orphans.len(),
            timers: self
                .timers
                .values()
                .filter(|t| {
                    !matches!(
                        t,
                        Timer::ForgetOrphan(_) | Timer::ForgetAck(_) | Timer::Register(..)
                    )
                })
                .count(),
            pending_directory: self.dir.pending(),
            subscriptions: self.subs.len(),
        }
    }

    /// Agents with the ACD's last reported state, by SIP user (removed ones left out).
    pub fn agent_states(&self) -> Vec<(String, AgentState)> {
        self.dir
            .agents
            .iter()
            .filter(|a| !a.removed)
            .map(|a| (a.user().to_owned(), a.state.clone()))
            .collect()
    }

    /// A supervisor (or the agent, from the web) asks for an agent's state. Refused, with a
    /// sentence for the user, when the agent is unknown or the change makes no sense now
    /// (pausing a logged-out agent, logging out an agent who is talking).
    pub fn agent_request(&mut self, agent: &str, want: AgentRequest) -> Result<(), String> {
        let Some(a) = self
            .dir
            .agents
            .iter()
            .find(|a| !a.removed && a.name() == agent)
        else {
            return Err(format!("no agent {agent:?}"));
        };
        let id = a.id;
        if let AgentRequest::Monitor(phone, mode) = &want {
            let (phone, mode) = (phone.clone(), *mode);
            return self.monitor_request(agent, &phone, mode);
        }
        let cmd = match (want, &a.state) {
            (AgentRequest::Ready, AgentState::LoggedOut) => AcdCommand::Login(id),
            (AgentRequest::Ready, AgentState::Offered(_)) => {
                return Err(format!("{agent}'s phone is ringing; try again in a moment"))
            }
            (AgentRequest::Ready, _) => AcdCommand::Ready(id),
            (AgentRequest::Pause(_), AgentState::LoggedOut) => {
                return Err(format!("{agent} is logged out"))
            }
            (AgentRequest::Pause(reason), _) => {
                AcdCommand::NotReady(id, acd::ReasonCode::new(&reason))
            }
            (AgentRequest::LogOut, AgentState::OnCall(_)) => {
                return Err(format!("{agent} is on a call"))
            }
            (AgentRequest::LogOut, _) => AcdCommand::Logout(id),
            (AgentRequest::Monitor(..), _) => return Ok(()),
        };
        info!(agent, command = ?cmd, "agent state asked from outside");
        self.acd(cmd);
        Ok(())
    }

    /// The voicemail messages kept in the store (at start, before calls come in).
    pub fn load_messages(&mut self, messages: Vec<crate::config::Message>) {
        for m in messages {
            self.messages.insert(m.id, m);
        }
    }

    /// Next output for another service.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.out.pop_front()
    }

    /// When [`CallControl::on_timeout`] is due next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.keys().next().map(|(t, _)| *t)
    }

    // ------------------------------------------------------------------ plumbing

    fn token(&mut self) -> String {
        format!("{:016x}", self.rng.next_u64())
    }

    fn new_tx(&mut self) -> TxId {
        let id = TxId::user(self.next_tx);
        self.next_tx += 1;
        id
    }

    fn sip(&mut self, cmd: SipCommand) {
        self.out.push_back(Output::Sip(cmd));
    }

    fn media(&mut self, id: u64, cmd: SessionCommand) {
        self.out
            .push_back(Output::Media(SessionId(id), MediaRequest::Command(cmd)));
    }

    /// Leg `leg` of call `id` hears `prompt` looped (music, ringback) from now on; `None`
    /// stops what it hears from the player.
    fn loop_to(&mut self, id: u64, leg: Leg, prompt: Option<Prompt>) {
        self.out.push_back(media_cmd(
            id,
            SessionCommand::Play {
                leg,
                prompts: Vec::new(),
                then: prompt,
            },
        ));
    }

    fn acd(&mut self, cmd: AcdCommand) {
        self.out.push_back(Output::Acd(AcdRequest::Command(cmd)));
    }

    fn respond(
        &mut self,
        tx: TxId,
        status: u16,
        to_tag: Option<String>,
        headers: Headers,
        body: Bytes,
    ) {
        self.sip(SipCommand::Respond {
            tx,
            status,
            to_tag,
            headers,
            body,
        });
    }

    fn plain(&mut self, tx: TxId, status: u16) {
        self.respond(tx, status, None, Headers::default(), Bytes::new());
    }

    fn send(&mut self, flow: Flow, request: Request, role: Role) -> TxId {
        let id = self.new_tx();
        self.by_client.insert(id, role);
        self.sip(SipCommand::Send { id, flow, request });
        id
    }

    /// A new INVITE of ours, starting a dialog: `from` is the From header without its tag (a
    /// fresh one is added), sent to `uri` over `flow` with our Contact for `contact_user`,
    /// offering `sdp`.
    fn new_invite(
        &mut self,
        from: &str,
        to: String,
        uri: String,
        flow: &Flow,
        contact_user: &str,
        sdp: Bytes,
    ) -> Request {
        let tag = self.token();
        let call_id = format!("{}@{}", self.token(), self.host);
        let mut h = Headers::default();
        h.push("From", format!("{from};tag={tag}"));
        h.push("To", to);
        h.push("Call-ID", call_id);
        h.push("CSeq", "1 INVITE");
        h.push("Contact", self.contact(flow, contact_user));
        h.push("Allow", ALLOW);
        h.push("Content-Type", "application/sdp");
        Request {
            method: Method::Invite,
            uri,
            headers: h,
            body: sdp,
        }
    }

    /// Send the ACK for a 2xx to our INVITE `tx`, and keep it for the 2xx's retransmissions.
    fn ack_2xx(&mut self, tx: TxId, ack: Request, flow: Flow) {
        self.sip(SipCommand::SendStateless {
            flow,
            request: ack.clone(),
        });
        if self.acks.insert(tx, (ack, flow)).is_none() {
            // 64·T1: how long a UAS retransmits a 2xx without an ACK.
            let at = self.now + Duration::from_secs(32);
            self.timer(at, Timer::ForgetAck(tx));
        }
    }

    fn timer(&mut self, at: Instant, t: Timer) {
        self.timer_seq += 1;
        self.timers.insert((at, self.timer_seq), t);
    }

    fn cancel_timers(&mut self, pred: impl Fn(&Timer) -> bool) {
        self.timers.retain(|_, t| !pred(t));
    }

    /// Our Contact for a dialog on `flow`: over TLS, our TLS listener (where the phone's
    /// requests in the dialog must go), else our UDP/TCP address.
    fn contact(&self, flow: &Flow, user: &str) -> String {
        contact_for(&self.cfg, flow, user)
    }

    // ------------------------------------------------------------------ inputs

    /// Take the time of an input: the wall clock is kept, the monotonic time returned.
    fn at(&mut self, now: Now) -> Instant {
        self.wall = now.wall;
        self.now = now.instant;
        now.instant
    }

    /// An event from the SIP endpoint.
    pub fn on_sip(&mut self, now: Now, ev: SipEvent) {
        let now = self.at(now);
        match ev {
            SipEvent::Request {
                tx,
                request,
                flow,
                caller,
            } => {
                if request.method == Method::Subscribe {
                    self.on_subscribe(now, tx, request, flow, caller);
                } else if to_tag(&request.headers).is_some() {
                    self.in_dialog(now, tx, request, flow);
                } else if request.method == Method::Invite {
                    self.new_call(now, tx, request, flow, caller);
                } else {
                    // BYE, INFO, UPDATE … outside any dialog.
                    self.plain(tx, 481);
                }
            }
            SipEvent::Ack { request, .. } => self.on_ack(now, request),
            SipEvent::Cancelled { tx } => {
                if self.supervisor_cancelled(tx) {
                    return;
                }
                if let Some(&id) = self.by_invite.get(&tx) {
                    self.end_call(now, id, EndReason::CallerCancelled, None);
                }
            }
            SipEvent::Response { tx, response } => self.on_response(now, tx, response),
            SipEvent::Timeout { tx } => self.on_client_timeout(now, tx),
            SipEvent::AckTimeout { tx } => {
                if let Some(&id) = self.by_invite.get(&tx) {
                    self.end_call(now, id, EndReason::NoAck, None);
                }
            }
            SipEvent::Binding(change) => {
                debug!(?change, "binding changed");
                let added = matches!(change, BindingChange::Added { .. });
                let (BindingChange::Added { aor, .. }
                | BindingChange::Updated { aor, .. }
                | BindingChange::Removed { aor, .. }) = change;
                if let Some(ai) = self.dir.agent_by_user(&aor) {
                    self.reconcile_agent(ai);
                }
                if added {
                    // A phone that registers learns at once whether messages wait.
                    self.notify_user(now, &aor);
                }
            }
            SipEvent::Banned { ip } => info!(source = %ip, "source banned"),
        }
    }

    /// An ACK for one of our 2xx answers: for a delayed offer it carries the caller's answer.
    /// A report of the ACD task.
    pub fn on_acd(&mut self, now: Now, report: AcdReport) {
        let now = self.at(now);
        match report {
            AcdReport::Event(ev) => self.on_acd_event(now, ev),
            AcdReport::Position {
                call,
                position,
                estimated_wait,
            } => self.announce(now, call.0, position, estimated_wait),
            AcdReport::Refused { command, error } => {
                warn!(?command, %error, "ACD refused a command");
            }
            AcdReport::ReconfigureFailed { what, error } => {
                warn!(%what, %error, "ACD reconfiguration failed");
            }
            AcdReport::QueueAdded { name, id } => {
                let mut out = Vec::new();
                self.dir.queue_added(&name, id, &mut out);
                self.out.extend(out.into_iter().map(Output::Acd));
            }
            AcdReport::AgentAdded { user, id } => {
                let mut out = Vec::new();
                let added = self.dir.agent_added(&user, id, &mut out);
                self.out.extend(out.into_iter().map(Output::Acd));
                if let Some(ai) = added {
                    self.reconcile_agent(ai);
                }
            }
        }
    }

    /// What the media relay reports.
    pub fn on_media(&mut self, now: Now, input: MediaInput) {
        let now = self.at(now);
        match input {
            MediaInput::Opened { session, ports } => self.media_opened(now, session.0, ports),
            MediaInput::Event(ev) => self.media_event(now, ev),
            MediaInput::SupervisorAttached { session, port } => {
                self.supervisor_attached(session.0, port)
            }
            MediaInput::Closed { session, totals } => self.media_closed(session.0, totals),
        }
    }

    fn media_event(&mut self, now: Instant, ev: MediaEvent) {
        let id = ev.session.0;
        let Some(call) = self.calls.get(&id) else {
            return;
        };
        match ev.kind {
            MediaEventKind::Dtmf { leg, digit } => {
                debug!(parent: &call.span, ?leg, %digit, "DTMF");
                match leg {
                    Leg::Agent => {
                        if !self.transfer_key(now, id, digit) {
                            self.agent_key(now, id, digit);
                        }
                    }
                    Leg::Caller => self.caller_key(now, id, digit),
                    Leg::Supervisor => self.supervisor_key(now, id, digit),
                }
            }
            MediaEventKind::Timeout {
                leg: Leg::Supervisor,
            } => {
                info!(parent: &call.span, "media timeout on the supervisor's leg");
                self.drop_supervisor(id, true);
            }
            MediaEventKind::Timeout { leg } => {
                info!(parent: &call.span, ?leg, "media timeout");
                self.end_call(now, id, EndReason::MediaTimeout(leg), None);
            }
            MediaEventKind::PlaybackDone { leg: Leg::Caller } => match call.route {
                Route::Feature(_) => self.end_call(now, id, EndReason::FeatureDone, None),
                Route::Closed(_) => self.end_call(now, id, EndReason::Closed, None),
                _ => {}
            },
            MediaEventKind::PlaybackDone { .. } => {}
        }
    }

    /// Fire due timers.
    pub fn on_timeout(&mut self, now: Now) {
        let now = self.at(now);
        while let Some((&key, _)) = self.timers.iter().next() {
            if key.0 > now {
                break;
            }
            let Some(t) = self.timers.remove(&key) else {
                break;
            };
            match t {
                Timer::Announce(id) => {
                    if let Some(c) = self.calls.get(&id) {
                        if c.phase == Phase::Waiting && c.in_acd {
                            self.out
                                .push_back(Output::Acd(AcdRequest::Position(acd::CallId(id))));
                        }
                    }
                }
                Timer::RingTimeout(id) => {
                    if self
                        .calls
                        .get(&id)
                        .is_some_and(|c| c.phase == Phase::Ringing)
                    {
                        self.no_answer_or_voicemail(now, id, EndReason::NoAnswer);
                    }
                }
                Timer::ForgetAck(tx) => {
                    self.acks.remove(&tx);
                }
                Timer::ForgetOrphan(tx) => {
                    self.cancel_on_1xx.remove(&tx);
                    self.orphans.remove(&tx);
                    self.by_client.remove(&tx);
                }
                Timer::Menu(id, round) => self.menu_timeout(now, id, round),
                Timer::Voicemail(id, round) => self.voicemail_timeout(now, id, round),
                Timer::Subscription(sid, round) => self.subscription_expired(now, sid, round),
                Timer::Callback(id, round) => self.callback_timeout(now, id, round),
                Timer::TransferDigits(id) => self.transfer_digits_done(now, id),
                Timer::OutboundTry(id, round) => self.outbound_try_timeout(now, id, round),
                Timer::Register(i, round) => self.register_due(now, i, round),
                Timer::SupervisorRing(id) => self.stop_ringing_supervisor(now, id),
                Timer::MenuEnd(id, round) => {
                    if self
                        .calls
                        .get(&id)
                        .and_then(|c| c.ivr.as_ref())
                        .is_some_and(|m| m.round == round)
                    {
                        self.end_call(now, id, EndReason::MenuDone, None);
                    }
                }
            }
        }
    }
}

fn route_name(route: &Route, dir: &Directory) -> String {
    match route {
        Route::Queue(q) => format!("queue {}", dir.queues[*q].setup.acd.name),
        Route::Closed(q) => format!("queue {} (closed)", dir.queues[*q].setup.acd.name),
        Route::Extension(_) => "extension".to_owned(),
        Route::Feature(f) => format!("feature {f:?}"),
        Route::Menu(m) => format!("menu {m}"),
        Route::Voicemail(m) => format!("voicemail {m}"),
        Route::Mailbox(m) => format!("mailbox {m}"),
        Route::Outbound(p) => format!("outbound {}", p.route),
        Route::Monitor(a, m) => format!("monitor {a} ({m:?})"),
    }
}

fn decode(p: &Prompt) -> Vec<i16> {
    let mut out = Vec::new();
    crate::recorder::g711::Law::Mu.decode_into(p.encoded(crate::recorder::g711::Law::Mu), &mut out);
    out
}

/// Build the ACD engine for `cfg`: its queues and agents, in order.
pub fn build_acd(
    cfg: &PbxConfig,
    seed: u64,
) -> Result<(acd::Acd, Vec<QueueId>, Vec<AgentId>), acd::AcdError> {
    let mut engine = acd::Acd::new(seed);
    let mut queues = Vec::with_capacity(cfg.queues.len());
    for q in &cfg.queues {
        queues.push(engine.add_queue(q.acd.clone())?);
    }
    let mut agents = Vec::with_capacity(cfg.agents.len());
    for a in &cfg.agents {
        let setup: &AgentSetup = a;
        agents.push(engine.add_agent(setup.acd.clone())?);
    }
    Ok((engine, queues, agents))
}

/// Where a leg's RTP goes and how it is coded, from what its SDP negotiated; `host` is where
/// the leg's signalling comes from (RTP from there is learned at once).
fn remote_of(leg: Leg, n: &Negotiated, host: Option<std::net::IpAddr>) -> SessionCommand {
    SessionCommand::Remote {
        leg,
        rtp: n.remote,
        law: n.law,
        pt: n.pt,
        telephone_event: n.telephone_event,
        sends: n.direction.sends(),
        host,
    }
}

/// Our Contact for a dialog on `flow` (see [`CallControl::contact`]); a free function so that
/// it can be called while a call is borrowed.
fn contact_for(cfg: &PbxConfig, flow: &Flow, user: &str) -> String {
    let host = match (flow.transport, &cfg.tls_contact_host) {
        (Transport::Tls, Some(h)) => h,
        _ => &cfg.contact_host,
    };
    format!("<sip:{user}@{host}{}>", flow.transport.uri_param())
}

/// Our SDES key (with the caller's tag) and the relay's keys, when the caller's offer is
/// SRTP keyed in the SDP.
pub(super) fn caller_sdes(
    secret: &[u8; 32],
    id: u64,
    offer: &SessionDescription,
    n: &Negotiated,
) -> Option<((u32, String), SdesKeys)> {
    if !n.sdes {
        return None;
    }
    let c = offer.media.get(n.index)?.sdes_crypto()?;
    let ours = media::secure::derive_sdes_key(secret, id, 0, 0);
    Some((
        (c.tag, ours.clone()),
        SdesKeys {
            local: ours,
            remote: c.key.clone(),
        },
    ))
}

/// A command for call `id`'s media session.
fn media_cmd(id: u64, cmd: SessionCommand) -> Output {
    Output::Media(SessionId(id), MediaRequest::Command(cmd))
}
