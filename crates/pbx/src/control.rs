//! Call control: the back-to-back user agent's decisions, as a state machine driven by the
//! events of the SIP endpoint, the ACD and the media relay, with a clock passed in.
//!
//! ```text
//! control.on_sip(now, sip_event);      // or on_acd(now, report), on_media(now, event), on_timeout(now)
//! while let Some(out) = control.poll_output() { /* to the SIP task or the ACD task */ }
//! let next = control.poll_timeout();   // announcements, extension ring timeouts
//! ```
//!
//! Media sessions are opened and commanded directly (their handles are synchronous); the
//! SIP and ACD services are reached through [`Output`]s, because they run in tasks of their
//! own. Every client request gets an id ([`TxId::user`]) before it leaves, so responses are
//! matched without waiting for the SIP task.
//!
//! A call to a queue: the caller is answered at once (200 OK with the relay's SDP), hears the
//! greeting and music, and joins the ACD. Each ACD offer rings every registered phone of the
//! agent; the first 2xx wins, the other phones get CANCEL, and the relay bridges the legs.
//! Every way a call can end (BYE from either side, CANCEL, ACD timeout or overflow, a silent
//! leg, a missing ACK, an offer that fails everywhere) goes through [`CallControl::end_call`],
//! which answers or hangs up every leg that is still up and drops the media session (its
//! ports go back to the pool).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::{Duration, Instant};

use crate::recorder::file::{utc, Sidecar};
use crate::recorder::g711::Law;
use crate::recorder::service::{Recorder, RecorderCommand};
use acd::{
    AcdCommand, AcdEvent, AgentId, AgentState, CallArrival, CallOutcome, Overflow, Party, QueueId,
};
use bytes::Bytes;
use media::prompt::Prompt;
use media::relay::{
    Leg, MediaError, MediaEvent, MediaEventKind, Relay, Session, SessionCommand, SessionId,
};
use media::sdp::{negotiate, Direction, LocalMedia, Negotiated, SdpError, SessionDescription};
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

/// Methods we allow in dialogs (the Allow header of our INVITEs and answers).
const ALLOW: &str = "INVITE, ACK, CANCEL, BYE, OPTIONS, INFO, UPDATE";

/// What call control asks of the other services.
#[derive(Debug)]
pub enum Output {
    /// For the SIP task.
    Sip(SipCommand),
    /// For the ACD task.
    Acd(AcdRequest),
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
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Feature {
    Login,
    Logout,
    Pause,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
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
    flow: Flow,
    invite: Request,
    failed: Option<u16>,
}

/// An outbound attempt: an ACD offer to an agent, or an extension being rung.
#[derive(Debug)]
struct Attempt {
    agent: Option<usize>,
    user: String,
    forks: Vec<Fork>,
    /// Our SDP offer to the phones (the agent leg of the relay).
    local: LocalMedia,
}

/// The answered side: our UAC dialog with the agent's (or callee's) phone.
#[derive(Debug)]
struct AgentLeg {
    dialog: Dialog,
    agent: Option<usize>,
    user: String,
    local: LocalMedia,
    on_hold: bool,
}

#[derive(Debug)]
struct Call {
    span: Span,
    route: Route,
    phase: Phase,
    caller: CallerLeg,
    media: Session,
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
    /// Agents (by user) whose phones this call keeps busy.
    busy_users: Vec<String>,
    created: Instant,
    connected_at: Option<Instant>,
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
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Timer {
    Announce(u64),
    RingTimeout(u64),
    ForgetOrphan(TxId),
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
    Overflowed,
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
            EndReason::QueueTimeout => "queue timeout",
            EndReason::QueueEmpty => "no agent in the queue (its join_empty/leave_when_empty rule)",
            EndReason::NoAnswer => "no answer",
            EndReason::Busy => "busy",
            EndReason::Unreachable => "not reachable",
            EndReason::FeatureDone => "feature code done",
            EndReason::Overflowed => "overflowed",
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
            _ => 500,
        }
    }
}

#[derive(Debug)]
struct AgentInfo {
    id: AgentId,
    user: String,
    name: String,
    state: AgentState,
    /// Calls of this agent's phone that are not queue offers (placed by it, or an extension
    /// call to it): while any is up the agent gets no queue calls.
    in_use: u32,
    /// The availability change last asked of the ACD, until the next state report.
    requested: Option<presence::Change>,
}

/// The call-control state machine.
pub struct CallControl {
    cfg: PbxConfig,
    relay: Relay,
    recorder: Option<Recorder>,
    locations: Locations,
    rng: ChaCha8Rng,
    next_call: u64,
    next_tx: u64,
    calls: HashMap<u64, Call>,
    /// Caller's INVITE server transaction → call.
    by_invite: HashMap<TxId, u64>,
    /// Our client transactions.
    by_client: HashMap<TxId, Role>,
    /// Late-2xx handling for INVITEs of ended calls: the request and its flow.
    orphans: HashMap<TxId, (Request, Flow)>,
    /// (Call-ID, our tag) → (call, which side).
    by_dialog: HashMap<(String, String), (u64, Leg)>,
    queue_ids: Vec<QueueId>,
    /// Queues a reload removed (kept for the calls still connected through them).
    queue_removed: Vec<bool>,
    queue_by_number: HashMap<String, usize>,
    agents: Vec<AgentInfo>,
    agent_by_user: HashMap<String, usize>,
    agent_by_id: HashMap<AgentId, usize>,
    timers: BTreeMap<(Instant, u64), Timer>,
    timer_seq: u64,
    out: VecDeque<Output>,
    host: String,
    beep: Prompt,
    double_beep: Prompt,
}

impl std::fmt::Debug for CallControl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CallControl")
            .field("calls", &self.calls.len())
            .finish_non_exhaustive()
    }
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
    pub fn new(
        cfg: PbxConfig,
        relay: Relay,
        recorder: Option<Recorder>,
        locations: Locations,
        queue_ids: Vec<QueueId>,
        agent_ids: Vec<AgentId>,
    ) -> CallControl {
        let queue_by_number = cfg
            .queues
            .iter()
            .enumerate()
            .map(|(i, q)| (q.number.clone(), i))
            .collect();
        let agents: Vec<AgentInfo> = cfg
            .agents
            .iter()
            .zip(&agent_ids)
            .map(|(a, id)| AgentInfo {
                id: *id,
                user: a.user.clone(),
                name: a.acd.name.clone(),
                state: AgentState::LoggedOut,
                in_use: 0,
                requested: None,
            })
            .collect();
        let agent_by_user = agents
            .iter()
            .enumerate()
            .map(|(i, a)| (a.user.clone(), i))
            .collect();
        let agent_by_id = agents.iter().enumerate().map(|(i, a)| (a.id, i)).collect();
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
        CallControl {
            rng: ChaCha8Rng::seed_from_u64(cfg.seed),
            cfg,
            relay,
            recorder,
            locations,
            next_call: 1,
            next_tx: 1,
            calls: HashMap::new(),
            by_invite: HashMap::new(),
            by_client: HashMap::new(),
            orphans: HashMap::new(),
            by_dialog: HashMap::new(),
            queue_removed: vec![false; queue_ids.len()],
            queue_ids,
            queue_by_number,
            agents,
            agent_by_user,
            agent_by_id,
            timers: BTreeMap::new(),
            timer_seq: 0,
            out: VecDeque::new(),
            host,
            beep,
            double_beep,
        }
    }

    /// The agents to log in at start (from `login_on_start`): ACD commands to send first.
    pub fn startup_commands(&self) -> Vec<AcdRequest> {
        self.cfg
            .agents
            .iter()
            .zip(&self.agents)
            .filter(|(setup, _)| setup.login_on_start)
            .map(|(_, a)| AcdRequest::Command(AcdCommand::Login(a.id)))
            .collect()
    }

    /// Calls in progress.
    pub fn call_count(&self) -> usize {
        self.calls.len()
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

    fn timer(&mut self, at: Instant, t: Timer) {
        self.timer_seq += 1;
        self.timers.insert((at, self.timer_seq), t);
    }

    fn cancel_timers(&mut self, pred: impl Fn(&Timer) -> bool) {
        self.timers.retain(|_, t| !pred(t));
    }

    fn contact(&self, flow: &Flow, user: &str) -> String {
        match flow.transport {
            Transport::Udp => format!("<sip:{user}@{}>", self.cfg.contact_host),
            Transport::Tcp => format!("<sip:{user}@{};transport=tcp>", self.cfg.contact_host),
        }
    }

    // ------------------------------------------------------------------ inputs

    /// An event from the SIP endpoint.
    pub fn on_sip(&mut self, now: Instant, ev: SipEvent) {
        match ev {
            SipEvent::Request {
                tx,
                request,
                flow,
                caller,
            } => {
                if to_tag(&request.headers).is_some() {
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
                let (BindingChange::Added { aor, .. }
                | BindingChange::Updated { aor, .. }
                | BindingChange::Removed { aor, .. }) = change;
                if let Some(&ai) = self.agent_by_user.get(&aor) {
                    self.reconcile_agent(ai);
                }
            }
            SipEvent::Banned { ip } => info!(source = %ip, "source banned"),
        }
    }

    /// An ACK for one of our 2xx answers: for a delayed offer it carries the caller's answer.
    fn on_ack(&mut self, now: Instant, ack: Request) {
        let key = (
            ack.headers.get("Call-ID").unwrap_or_default().to_owned(),
            to_tag(&ack.headers).unwrap_or_default(),
        );
        let Some(&(id, Leg::Caller)) = self.by_dialog.get(&key) else {
            return;
        };
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        if !call.caller.late {
            return;
        }
        let answer = SessionDescription::parse(&ack.body).and_then(|sd| {
            let n = negotiate(&sd)?;
            Ok((sd, n))
        });
        let (sd, n) = match answer {
            Ok(x) => x,
            Err(e) => {
                info!(parent: &call.span, error = %e, "the ACK carried no usable SDP answer");
                return self.end_call(now, id, EndReason::Failed, None);
            }
        };
        call.caller.late = false;
        call.caller.offer = sd;
        call.caller.media = n;
        call.media.command(SessionCommand::Remote {
            leg: Leg::Caller,
            rtp: n.remote,
            law: n.law,
            pt: n.pt,
            telephone_event: n.telephone_event,
            sends: n.direction.sends(),
        });
        if let Some(q) = call.pending_queue.take() {
            self.enter_queue(now, id, q);
        }
    }

    /// A report of the ACD task.
    pub fn on_acd(&mut self, now: Instant, report: AcdReport) {
        match report {
            AcdReport::Event(ev) => self.on_acd_event(now, ev),
            AcdReport::Position {
                call,
                position,
                estimated_wait,
            } => self.announce(call.0, position, estimated_wait),
            AcdReport::Refused { command, error } => {
                warn!(?command, %error, "ACD refused a command");
            }
            AcdReport::ReconfigureFailed { what, error } => {
                warn!(%what, %error, "ACD reconfiguration failed");
            }
        }
    }

    /// An event of the media relay.
    pub fn on_media(&mut self, now: Instant, ev: MediaEvent) {
        let id = ev.session.0;
        let Some(call) = self.calls.get(&id) else {
            return;
        };
        match ev.kind {
            MediaEventKind::Dtmf { leg, digit } => {
                debug!(parent: &call.span, ?leg, %digit, "DTMF");
                if leg == Leg::Agent {
                    self.agent_key(now, id, digit);
                }
            }
            MediaEventKind::Timeout { leg } => {
                info!(parent: &call.span, ?leg, "media timeout");
                self.end_call(now, id, EndReason::MediaTimeout(leg), None);
            }
            MediaEventKind::PlaybackDone { leg: Leg::Caller } => {
                if matches!(call.route, Route::Feature(_)) {
                    self.end_call(now, id, EndReason::FeatureDone, None);
                }
            }
            MediaEventKind::PlaybackDone { .. } => {}
        }
    }

    /// Fire due timers.
    pub fn on_timeout(&mut self, now: Instant) {
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
                        self.end_call(now, id, EndReason::NoAnswer, None);
                    }
                }
                Timer::ForgetOrphan(tx) => {
                    self.orphans.remove(&tx);
                    self.by_client.remove(&tx);
                }
            }
        }
    }

    // ------------------------------------------------------------------ new calls

    fn new_call(&mut self, now: Instant, tx: TxId, invite: Request, flow: Flow, caller: Caller) {
        let Some(number) = request_user(&invite) else {
            return self.plain(tx, 404);
        };
        let from_user = invite
            .headers
            .get("From")
            .and_then(user_of)
            .unwrap_or_default();
        let route = match self.route(&number, &caller) {
            Ok(r) => r,
            Err(status) => {
                info!(number = %number, status, "call refused by the dial plan");
                debug!(number = %number, caller = %from_user, ?caller, "refused caller");
                return self.plain(tx, status);
            }
        };
        // Offer/answer: the caller's offer must contain PCMU or PCMA.
        let late = invite.body.is_empty();
        if late && !matches!(route, Route::Queue(_)) {
            // Delayed offer (our offer in the 2xx, the answer in the ACK) is supported for
            // calls to queues, which are answered at once; not for calls that ring a phone.
            let mut h = Headers::default();
            h.push(
                "Warning",
                "399 switchboard \"An SDP offer in the INVITE is required\"",
            );
            return self.respond(tx, 488, None, h, Bytes::new());
        }
        let offer = if late {
            SessionDescription { media: Vec::new() }
        } else {
            match SessionDescription::parse(&invite.body) {
                Ok(o) => o,
                Err(e) => {
                    let mut h = Headers::default();
                    h.push("Warning", format!("399 switchboard \"{e}\""));
                    return self.respond(tx, 400, None, h, Bytes::new());
                }
            }
        };
        let negotiated = match negotiate(&offer) {
            Ok(n) => n,
            // Delayed offer: a placeholder until the ACK brings the answer.
            Err(_) if late => Negotiated {
                index: 0,
                law: crate::recorder::g711::Law::Mu,
                pt: 0,
                telephone_event: Some(101),
                remote: None,
                direction: Direction::SendRecv,
            },
            Err(e @ (SdpError::NoCommonCodec | SdpError::AddressFamily)) => {
                let mut h = Headers::default();
                h.push("Warning", format!("305 switchboard \"{e}\""));
                h.push("Accept", "application/sdp");
                return self.respond(tx, 488, None, h, Bytes::new());
            }
            Err(e) => {
                let mut h = Headers::default();
                h.push("Warning", format!("399 switchboard \"{e}\""));
                return self.respond(tx, 400, None, h, Bytes::new());
            }
        };
        let id = self.next_call;
        self.next_call += 1;
        let media = match self.relay.open(SessionId(id)) {
            Ok(s) => s,
            Err(e @ MediaError::NoPorts) | Err(e @ MediaError::Socket(_)) => {
                warn!(error = %e, "no media session for a new call");
                let mut h = Headers::default();
                h.push("Retry-After", "10");
                return self.respond(tx, 503, None, h, Bytes::new());
            }
            Err(e) => {
                warn!(error = %e, "no media session for a new call");
                return self.plain(tx, 503);
            }
        };
        let span = info_span!("call", call_id = id);
        info!(parent: &span, number = %number, route = ?route_name(&route, &self.cfg), "call arrived");
        debug!(parent: &span, caller = %from_user, identity = ?caller, "caller");
        media.command(SessionCommand::Remote {
            leg: Leg::Caller,
            rtp: negotiated.remote,
            law: negotiated.law,
            pt: negotiated.pt,
            telephone_event: negotiated.telephone_event,
            sends: negotiated.direction.sends(),
        });
        let local_tag = self.token();
        let call = Call {
            span,
            route: route.clone(),
            phase: Phase::Ringing,
            caller: CallerLeg {
                invite_tx: tx,
                invite,
                flow,
                local_tag,
                answered: false,
                dialog: None,
                offer,
                media: negotiated,
                sdp_version: 1,
                late,
            },
            media,
            attempts: Vec::new(),
            agent: None,
            in_acd: false,
            recording: false,
            recording_paused: false,
            agent_keys: String::new(),
            pending_queue: None,
            busy_users: Vec::new(),
            created: now,
            connected_at: None,
        };
        self.by_invite.insert(tx, id);
        self.calls.insert(id, call);
        // The caller's own phone is busy with this call: an agent calling the queue (or
        // anyone) is not offered calls meanwhile, least of all their own.
        if matches!(route, Route::Queue(_) | Route::Extension(_)) {
            let own = match &caller {
                Caller::User(u) => Some(u.clone()),
                Caller::Anonymous => Some(from_user.clone()),
                Caller::Trunk(_) => None,
            };
            if let Some(u) = own {
                self.mark_busy(id, &u);
            }
            if let Route::Extension(callee) = &route {
                self.mark_busy(id, callee);
            }
        }
        match route {
            Route::Queue(q) => self.join_queue(now, id, q),
            Route::Extension(user) => self.ring_extension(now, id, user),
            Route::Feature(f) => self.feature(now, id, f, &caller),
        }
    }

    /// The dial plan: which route a number takes for this caller, or the status to refuse it.
    fn route(&self, number: &str, caller: &Caller) -> Result<Route, u16> {
        let features = &self.cfg.features;
        let route = if let Some(&q) = self.queue_by_number.get(number) {
            Route::Queue(q)
        } else if number == features.login {
            Route::Feature(Feature::Login)
        } else if number == features.logout {
            Route::Feature(Feature::Logout)
        } else if number == features.pause {
            Route::Feature(Feature::Pause)
        } else if self.cfg.extensions && self.locations.contains_key(number) {
            Route::Extension(number.to_owned())
        } else if self.cfg.extensions && self.agent_by_user.contains_key(number) {
            // A known agent user that is not registered right now.
            return Err(480);
        } else {
            return Err(404);
        };
        match caller {
            Caller::User(_) => Ok(route),
            Caller::Trunk(name) => {
                let allowed = self
                    .cfg
                    .trunks
                    .iter()
                    .find(|t| &t.trunk == name)
                    .is_some_and(|t| t.numbers.iter().any(|n| n == number));
                if allowed {
                    Ok(route)
                } else {
                    Err(403)
                }
            }
            // Challenges are off: queues only, never extensions or feature codes.
            Caller::Anonymous => match route {
                Route::Queue(_) => Ok(route),
                _ => Err(403),
            },
        }
    }

    /// Answer the caller with 200 OK and our SDP for the caller leg.
    fn answer_caller(&mut self, id: u64) {
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        let local = LocalMedia {
            session_id: id,
            version: call.caller.sdp_version,
            addr: call.media.advertised(),
            port: call.media.port(Leg::Caller),
            law: call.caller.media.law,
            pt: call.caller.media.pt,
            telephone_event: call.caller.media.telephone_event,
            direction: call.caller.media.direction.answer(),
        };
        let body = if call.caller.late {
            media::sdp::offer_g711(id, local.version, local.addr, local.port)
        } else {
            local.answer(&call.caller.offer, call.caller.media.index)
        };
        let number = request_user(&call.caller.invite).unwrap_or_else(|| "switchboard".into());
        let mut h = Headers::default();
        let contact = match call.caller.flow.transport {
            Transport::Udp => format!("<sip:{number}@{}>", self.cfg.contact_host),
            Transport::Tcp => format!("<sip:{number}@{};transport=tcp>", self.cfg.contact_host),
        };
        h.push("Contact", contact);
        h.push("Allow", ALLOW);
        h.push("Content-Type", "application/sdp");
        let tag = call.caller.local_tag.clone();
        match Dialog::uas(&call.caller.invite, &tag, call.caller.flow) {
            Ok(d) => {
                self.by_dialog
                    .insert((d.call_id.clone(), tag.clone()), (id, Leg::Caller));
                call.caller.dialog = Some(d);
            }
            Err(e) => warn!(parent: &call.span, error = %e, "caller dialog incomplete"),
        }
        call.caller.answered = true;
        let tx = call.caller.invite_tx;
        self.respond(tx, 200, Some(tag), h, Bytes::from(body));
    }

    fn join_queue(&mut self, now: Instant, id: u64, q: usize) {
        self.answer_caller(id);
        if let Some(call) = self.calls.get_mut(&id) {
            if call.caller.late {
                // The answer comes in the ACK; the call joins the queue then.
                call.phase = Phase::Waiting;
                call.pending_queue = Some(q);
                return;
            }
        }
        self.enter_queue(now, id, q);
    }

    fn enter_queue(&mut self, now: Instant, id: u64, q: usize) {
        let setup: &QueueSetup = &self.cfg.queues[q];
        let prompts: Vec<Prompt> = setup.greeting.iter().cloned().collect();
        let music = setup.music.clone();
        let every = setup.announce_every;
        let priority = setup.priority;
        let queue = self.queue_ids[q];
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        call.phase = Phase::Waiting;
        call.in_acd = true;
        call.media.command(SessionCommand::Play {
            leg: Leg::Caller,
            prompts,
            then: music,
        });
        info!(parent: &call.span, queue = %self.cfg.queues[q].acd.name, "call queued");
        self.acd(AcdCommand::Arrive(CallArrival {
            call: acd::CallId(id),
            queue,
            priority,
            extra_skills: Vec::new(),
        }));
        if let Some(every) = every {
            self.timer(now + every, Timer::Announce(id));
        }
    }

    fn ring_extension(&mut self, now: Instant, id: u64, user: String) {
        let timeout = self.cfg.extension_ring_timeout;
        if !self.ring(now, id, None, &user) {
            self.end_call(now, id, EndReason::Unreachable, None);
            return;
        }
        let tx = self.calls[&id].caller.invite_tx;
        let tag = self.calls[&id].caller.local_tag.clone();
        self.respond(tx, 180, Some(tag), Headers::default(), Bytes::new());
        self.timer(now + timeout, Timer::RingTimeout(id));
    }

    fn feature(&mut self, now: Instant, id: u64, f: Feature, caller: &Caller) {
        let user = match caller {
            Caller::User(u) => u.clone(),
            _ => {
                return self.end_call(now, id, EndReason::Failed, None);
            }
        };
        let Some(&ai) = self.agent_by_user.get(&user) else {
            // Not an agent: refuse instead of answering.
            if let Some(c) = self.calls.get(&id) {
                info!(parent: &c.span, "feature code from a user who is not an agent");
            }
            let tx = self.calls[&id].caller.invite_tx;
            self.plain(tx, 403);
            return self.drop_call(id);
        };
        let agent = &self.agents[ai];
        let cmd = match f {
            Feature::Login => AcdCommand::Login(agent.id),
            Feature::Logout => AcdCommand::Logout(agent.id),
            Feature::Pause => match agent.state {
                AgentState::NotReady(_) => AcdCommand::Ready(agent.id),
                _ => AcdCommand::NotReady(agent.id, acd::ReasonCode::new("pause")),
            },
        };
        let tone = match (&f, &cmd) {
            (Feature::Logout, _) | (_, AcdCommand::NotReady(..)) => self.double_beep.clone(),
            _ => self.beep.clone(),
        };
        if let Some(c) = self.calls.get(&id) {
            info!(parent: &c.span, agent = %agent.name, feature = ?f, "agent feature code");
        }
        self.acd(cmd);
        self.answer_caller(id);
        if let Some(call) = self.calls.get_mut(&id) {
            call.phase = Phase::Waiting;
            call.media.command(SessionCommand::Play {
                leg: Leg::Caller,
                prompts: vec![Prompt::silence(Duration::from_millis(200)), tone],
                then: None,
            });
        }
    }

    /// Ring every registered phone of `user` for call `id`. False when none is registered.
    fn ring(&mut self, _now: Instant, id: u64, agent: Option<usize>, user: &str) -> bool {
        let contacts = self
            .locations
            .get(user)
            .map(|b| b.value().clone())
            .unwrap_or_default();
        if contacts.is_empty() {
            return false;
        }
        let Some(call) = self.calls.get(&id) else {
            return false;
        };
        let from_user = call
            .caller
            .invite
            .headers
            .get("From")
            .and_then(|f| NameAddr::parse(f).ok());
        let (display, from_num) = match &from_user {
            Some(a) => (
                a.display.clone(),
                a.uri.user_unescaped().unwrap_or_default(),
            ),
            None => (None, String::new()),
        };
        let local = LocalMedia {
            session_id: id,
            version: 1,
            addr: call.media.advertised(),
            port: call.media.port(Leg::Agent),
            law: call.caller.media.law,
            pt: call.caller.media.pt,
            telephone_event: call.caller.media.telephone_event,
            direction: Direction::SendRecv,
        };
        let body = Bytes::from(local.offer());
        let from_num = if from_num.is_empty() {
            "anonymous".to_owned()
        } else {
            from_num
        };
        let mut forks = Vec::new();
        for b in contacts {
            let tag = self.token();
            let call_id = format!("{}@{}", self.token(), self.host);
            let mut h = Headers::default();
            let from = match &display {
                Some(d) => format!(
                    "\"{}\" <sip:{from_num}@{}>;tag={tag}",
                    d.replace('"', ""),
                    self.host
                ),
                None => format!("<sip:{from_num}@{}>;tag={tag}", self.host),
            };
            h.push("From", from);
            h.push("To", format!("<sip:{user}@{}>", self.host));
            h.push("Call-ID", call_id);
            h.push("CSeq", "1 INVITE");
            h.push("Contact", self.contact(&b.flow, "switchboard"));
            h.push("Allow", ALLOW);
            h.push("Content-Type", "application/sdp");
            let invite = Request {
                method: Method::Invite,
                uri: b.uri_text.clone(),
                headers: h,
                body: body.clone(),
            };
            let tx = self.send(b.flow, invite.clone(), Role::Fork(id));
            forks.push(Fork {
                tx,
                flow: b.flow,
                invite,
                failed: None,
            });
        }
        if let Some(call) = self.calls.get_mut(&id) {
            debug!(parent: &call.span, user, phones = forks.len(), "ringing");
            call.attempts.push(Attempt {
                agent,
                user: user.to_owned(),
                forks,
                local,
            });
        }
        true
    }

    // ------------------------------------------------------------------ responses

    fn on_response(&mut self, now: Instant, tx: TxId, resp: Response) {
        let Some(&role) = self.by_client.get(&tx) else {
            return;
        };
        match role {
            Role::Fire => {
                if resp.status >= 200 {
                    self.by_client.remove(&tx);
                }
            }
            Role::Orphan => {
                if (200..300).contains(&resp.status) {
                    // A phone answered after the call was over: acknowledge and hang up.
                    if let Some((invite, flow)) = self.orphans.get(&tx).cloned() {
                        self.ack_and_bye(&invite, &resp, flow);
                    }
                }
            }
            Role::Fork(id) => self.fork_response(now, id, tx, resp),
        }
    }

    fn ack_and_bye(&mut self, invite: &Request, resp: &Response, flow: Flow) {
        if let Ok(mut d) = Dialog::uac(invite, resp, flow) {
            let ack = d.ack(cseq_num(&invite.headers));
            self.sip(SipCommand::SendStateless { flow, request: ack });
            let bye = d.request(Method::Bye);
            self.send(flow, bye, Role::Fire);
        }
    }

    fn fork_response(&mut self, now: Instant, id: u64, tx: TxId, resp: Response) {
        let status = resp.status;
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        // A retransmitted 2xx of the answered phone: re-send the ACK.
        if let Some(leg) = &call.agent {
            if (200..300).contains(&status)
                && resp.headers.get("Call-ID") == Some(leg.dialog.call_id.as_str())
                && to_tag(&resp.headers).as_deref() == Some(leg.dialog.remote_tag.as_str())
            {
                let ack = leg.dialog.ack(cseq_num(&resp.headers));
                let flow = leg.dialog.flow;
                self.sip(SipCommand::SendStateless { flow, request: ack });
                return;
            }
        }
        let found = call
            .attempts
            .iter()
            .enumerate()
            .find_map(|(ai, a)| a.forks.iter().position(|f| f.tx == tx).map(|fi| (ai, fi)));
        let Some((ai, fi)) = found else {
            return;
        };
        let attempt = &mut call.attempts[ai];
        if status < 200 {
            if status == 180 || status == 183 {
                debug!(parent: &call.span, status, "agent phone ringing");
            }
            return;
        }
        if status >= 300 {
            attempt.forks[fi].failed = Some(status);
            self.by_client.remove(&tx);
            let all_failed = attempt.forks.iter().all(|f| f.failed.is_some());
            if all_failed {
                let statuses: Vec<u16> = attempt.forks.iter().filter_map(|f| f.failed).collect();
                self.attempt_failed(now, id, ai, &statuses);
            }
            return;
        }
        // 2xx: this phone wins.
        let fork_flow = attempt.forks[fi].flow;
        let invite = attempt.forks[fi].invite.clone();
        let dialog = match Dialog::uac(&invite, &resp, fork_flow) {
            Ok(d) => d,
            Err(e) => {
                warn!(parent: &call.span, error = %e, "unusable 2xx from the agent's phone");
                return self.attempt_failed(now, id, ai, &[500]);
            }
        };
        let ack = dialog.ack(cseq_num(&invite.headers));
        self.sip(SipCommand::SendStateless {
            flow: fork_flow,
            request: ack,
        });
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        let mut attempts = std::mem::take(&mut call.attempts);
        let attempt = attempts.swap_remove(ai);
        // Every other phone (of this agent, and of any other agent rung at once) stops.
        let mut losers: Vec<Fork> = attempts.into_iter().flat_map(|a| a.forks).collect();
        let others: Vec<TxId> = attempt
            .forks
            .iter()
            .chain(losers.iter())
            .filter(|f| f.tx != tx && f.failed.is_none())
            .map(|f| f.tx)
            .collect();
        let remote = if resp.body.is_empty() {
            Err(SdpError::Malformed("no SDP answer"))
        } else {
            SessionDescription::parse(&resp.body).and_then(|sd| negotiate(&sd))
        };
        let key = (dialog.call_id.clone(), dialog.local_tag.clone());
        call.agent = Some(AgentLeg {
            dialog,
            agent: attempt.agent,
            user: attempt.user.clone(),
            local: attempt.local.clone(),
            on_hold: false,
        });
        self.by_dialog.insert(key, (id, Leg::Agent));
        losers.extend(attempt.forks);
        for f in losers {
            if f.tx != tx && f.failed.is_none() {
                self.orphan(now, f.tx, f.invite, f.flow);
            } else {
                self.by_client.remove(&f.tx);
            }
        }
        for t in others {
            self.sip(SipCommand::Cancel { tx: t });
        }
        let negotiated = match remote {
            Ok(n) => n,
            Err(e) => {
                let span = self.calls[&id].span.clone();
                warn!(parent: &span, error = %e, "agent's answer has no usable SDP");
                return self.end_call(now, id, EndReason::Failed, None);
            }
        };
        self.connect(now, id, negotiated);
    }

    /// The agent's (or callee's) phone answered: bridge the legs.
    fn connect(&mut self, now: Instant, id: u64, n: Negotiated) {
        let needs_answer = self.calls.get(&id).is_some_and(|c| !c.caller.answered);
        if needs_answer {
            // An extension call: the caller is answered only now.
            self.answer_caller(id);
        }
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        call.media.command(SessionCommand::Remote {
            leg: Leg::Agent,
            rtp: n.remote,
            law: n.law,
            pt: n.pt,
            telephone_event: n.telephone_event,
            sends: n.direction.sends(),
        });
        call.media.command(SessionCommand::Stop(Leg::Caller));
        call.media.command(SessionCommand::Bridge(true));
        call.phase = Phase::Connected;
        call.connected_at = Some(now);
        let waited = now.saturating_duration_since(call.created);
        let agent = call.agent.as_ref().and_then(|a| a.agent);
        let user = call
            .agent
            .as_ref()
            .map(|a| a.user.clone())
            .unwrap_or_default();
        let name = agent.map_or(user.clone(), |a| self.agents[a].name.clone());
        info!(parent: &call.span, agent = %name, waited_ms = waited.as_millis() as u64, "call connected");
        let in_acd = call.in_acd;
        self.cancel_timers(|t| matches!(t, Timer::Announce(c) | Timer::RingTimeout(c) if *c == id));
        if let (Some(a), true) = (agent, in_acd) {
            let agent = self.agents[a].id;
            self.acd(AcdCommand::Answer {
                call: acd::CallId(id),
                agent,
            });
        }
        self.maybe_record(now, id, &name);
    }

    /// Start recording a connected queue call if its queue's policy says so.
    fn maybe_record(&mut self, now: Instant, id: u64, agent: &str) {
        let Some(recorder) = self.recorder.clone() else {
            return;
        };
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        let Route::Queue(q) = call.route else { return };
        let setup = &self.cfg.queues[q];
        if !setup.record.records(self.cfg.recording_seed, id) {
            return;
        }
        let law = call.caller.media.law;
        let caller = call
            .caller
            .invite
            .headers
            .get("From")
            .and_then(user_of)
            .unwrap_or_default();
        let sidecar = Sidecar {
            call_id: id,
            queue: setup.acd.name.clone(),
            caller,
            agent: agent.to_owned(),
            codec: match law {
                Law::Mu => "PCMU",
                Law::A => "PCMA",
            }
            .into(),
            start: utc(std::time::SystemTime::now()),
            end: None,
            duration: 0.0,
            pauses: Vec::new(),
            channels: "left: caller, right: agent".into(),
            dropped_frames: 0,
            sha256: None,
            repaired: false,
        };
        if recorder.command(RecorderCommand::Start {
            call: id,
            law,
            sidecar: Box::new(sidecar),
            at: now,
        }) {
            call.media
                .command(SessionCommand::Tap(Some(recorder.frames())));
            call.recording = true;
            info!(parent: &call.span, "recording");
        }
    }

    /// An agent key: the pause key toggles the recording's pause.
    fn agent_key(&mut self, now: Instant, id: u64, digit: char) {
        let key = self.cfg.recording_pause_key.clone();
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        if !call.recording || key.is_empty() {
            return;
        }
        call.agent_keys.push(digit);
        let excess = call
            .agent_keys
            .chars()
            .count()
            .saturating_sub(key.chars().count());
        if excess > 0 {
            call.agent_keys = call.agent_keys.chars().skip(excess).collect();
        }
        if call.agent_keys != key {
            return;
        }
        call.agent_keys.clear();
        call.recording_paused = !call.recording_paused;
        let cmd = if call.recording_paused {
            RecorderCommand::Pause { call: id, at: now }
        } else {
            RecorderCommand::Resume { call: id, at: now }
        };
        info!(parent: &call.span, paused = call.recording_paused, "recording pause key");
        if let Some(r) = &self.recorder {
            r.command(cmd);
        }
    }

    /// Every phone of attempt `ai` refused or failed.
    fn attempt_failed(&mut self, now: Instant, id: u64, ai: usize, statuses: &[u16]) {
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        if ai >= call.attempts.len() {
            return;
        }
        let attempt = call.attempts.remove(ai);
        let others_ringing = !call.attempts.is_empty();
        info!(parent: &call.span, user = %attempt.user, ?statuses, "offer not answered");
        for f in attempt.forks {
            self.by_client.remove(&f.tx);
        }
        match (call.route.clone(), attempt.agent) {
            (Route::Queue(_), Some(a)) => {
                let agent = self.agents[a].id;
                self.acd(AcdCommand::OfferFailed {
                    call: acd::CallId(id),
                    agent,
                });
            }
            _ if others_ringing => {}
            _ => {
                let reason = if statuses.iter().any(|&s| s == 486 || s == 600) {
                    EndReason::Busy
                } else {
                    EndReason::NoAnswer
                };
                self.end_call(now, id, reason, None);
            }
        }
    }

    fn on_client_timeout(&mut self, now: Instant, tx: TxId) {
        match self.by_client.get(&tx).copied() {
            Some(Role::Fork(id)) => {
                let resp_like = Response::new(408);
                self.fork_response(now, id, tx, resp_like);
            }
            Some(_) => {
                self.by_client.remove(&tx);
                self.orphans.remove(&tx);
            }
            None => {}
        }
    }

    fn orphan(&mut self, now: Instant, tx: TxId, invite: Request, flow: Flow) {
        self.by_client.insert(tx, Role::Orphan);
        self.orphans.insert(tx, (invite, flow));
        self.timer(now + Duration::from_secs(40), Timer::ForgetOrphan(tx));
    }

    // ------------------------------------------------------------------ ACD events

    fn on_acd_event(&mut self, now: Instant, ev: AcdEvent) {
        match ev {
            AcdEvent::Offer { call, agent, .. } => {
                let id = call.0;
                let Some(&ai) = self.agent_by_id.get(&agent) else {
                    return;
                };
                if !self.calls.contains_key(&id) {
                    return;
                }
                let user = self.agents[ai].user.clone();
                if let Some(c) = self.calls.get(&id) {
                    info!(parent: &c.span, agent = %self.agents[ai].name, "offering to agent");
                }
                if self.calls[&id].busy_users.contains(&user) {
                    // Never offer a call to the agent who is making it.
                    self.set_availability(ai, presence::Change::Park(presence::IN_USE));
                    return;
                }
                if !self.ring(now, id, Some(ai), &user) {
                    // Withdrawn without counting as a ring with no answer: the agent is
                    // parked until a phone registers.
                    self.set_availability(ai, presence::Change::Park(presence::NO_PHONE));
                }
            }
            AcdEvent::Withdraw {
                call,
                agent,
                reason,
            } => {
                let id = call.0;
                let Some(c) = self.calls.get_mut(&id) else {
                    return;
                };
                let agents = &self.agents;
                let Some(ai) = c
                    .attempts
                    .iter()
                    .position(|a| a.agent.is_some_and(|x| agents[x].id == agent))
                else {
                    return;
                };
                info!(parent: &c.span, ?reason, "offer withdrawn");
                let attempt = c.attempts.remove(ai);
                for f in attempt.forks {
                    if f.failed.is_none() {
                        self.sip(SipCommand::Cancel { tx: f.tx });
                        self.orphan(now, f.tx, f.invite, f.flow);
                    } else {
                        self.by_client.remove(&f.tx);
                    }
                }
            }
            AcdEvent::Overflow { call, to, .. } => {
                if let (Some(c), Overflow::External(dest)) = (self.calls.get(&call.0), &to) {
                    info!(parent: &c.span, destination = %dest, "overflow to an external destination");
                }
            }
            AcdEvent::Timeout { call, queue } => {
                let removed = self
                    .queue_ids
                    .iter()
                    .position(|q| *q == queue)
                    .is_some_and(|i| self.queue_removed.get(i).copied().unwrap_or(false));
                if let Some(c) = self.calls.get(&call.0) {
                    if removed {
                        info!(parent: &c.span, "queue removed by a config reload: the caller leaves it");
                    } else {
                        info!(parent: &c.span, "maximum wait reached");
                    }
                }
            }
            AcdEvent::CallEnded { call, outcome, .. } => {
                let id = call.0;
                let Some(c) = self.calls.get_mut(&id) else {
                    return;
                };
                c.in_acd = false;
                let reason = match outcome {
                    CallOutcome::Completed(_) | CallOutcome::Abandoned => return,
                    CallOutcome::Overflowed => EndReason::Overflowed,
                    CallOutcome::TimedOut => EndReason::QueueTimeout,
                    CallOutcome::JoinEmpty | CallOutcome::LeftEmpty => EndReason::QueueEmpty,
                };
                self.end_call(now, id, reason, None);
            }
            AcdEvent::AgentState { agent, state } => {
                if let Some(&ai) = self.agent_by_id.get(&agent) {
                    let name = &self.agents[ai].name;
                    match &state {
                        AgentState::NotReady(r) if r.as_str() == "no-answer" => warn!(
                            agent = %name,
                            reason = "did not answer offers in a row (the queue's auto_pause_after)",
                            "agent paused automatically; the pause key or the API makes them ready"
                        ),
                        AgentState::NotReady(r) => {
                            info!(agent = %name, state = "paused", reason = r.as_str(), "agent state")
                        }
                        _ => info!(agent = %name, ?state, "agent state"),
                    }
                    self.agents[ai].state = state;
                    self.agents[ai].requested = None;
                    self.reconcile_agent(ai);
                }
            }
            AcdEvent::QueueLog(_) => {}
        }
    }

    fn announce(&mut self, id: u64, position: Option<usize>, wait: Option<Duration>) {
        let Some(call) = self.calls.get(&id) else {
            return;
        };
        if call.phase != Phase::Waiting {
            return;
        }
        let Route::Queue(q) = call.route else { return };
        let every = self.cfg.queues[q].announce_every;
        let music = self.cfg.queues[q].music.clone();
        let a = &self.cfg.announcements;
        let number = |n: usize| a.numbers.get(n).cloned();
        let mut prompts = Vec::new();
        if let (Some(p), Some(pos)) = (&a.position, position) {
            if let Some(n) = number(pos) {
                prompts.push(p.clone());
                prompts.push(n);
            }
        }
        if let (Some(w), Some(m), Some(wait)) = (&a.wait, &a.minutes, wait) {
            let mins = (wait.as_secs() as usize).div_ceil(60).max(1);
            if let Some(n) = number(mins) {
                prompts.push(w.clone());
                prompts.push(n);
                prompts.push(m.clone());
            }
        }
        debug!(parent: &call.span, ?position, ?wait, "position announcement");
        if !prompts.is_empty() {
            call.media.command(SessionCommand::Play {
                leg: Leg::Caller,
                prompts,
                then: music,
            });
        }
        if let Some(every) = every {
            let at = Instant::now() + every;
            self.timer(at, Timer::Announce(id));
        }
    }

    // ------------------------------------------------------------------ in-dialog requests

    fn in_dialog(&mut self, now: Instant, tx: TxId, req: Request, flow: Flow) {
        let key = (
            req.headers.get("Call-ID").unwrap_or_default().to_owned(),
            to_tag(&req.headers).unwrap_or_default(),
        );
        let Some(&(id, leg)) = self.by_dialog.get(&key) else {
            return self.plain(tx, 481);
        };
        let Some(call) = self.calls.get_mut(&id) else {
            return self.plain(tx, 481);
        };
        let dialog = match leg {
            Leg::Caller => call.caller.dialog.as_mut(),
            Leg::Agent => call.agent.as_mut().map(|a| &mut a.dialog),
        };
        let Some(dialog) = dialog else {
            return self.plain(tx, 481);
        };
        if !dialog.accept_remote_cseq(&req) {
            let mut h = Headers::default();
            h.push("Retry-After", "1");
            return self.respond(tx, 500, None, h, Bytes::new());
        }
        match req.method {
            Method::Bye => {
                self.plain(tx, 200);
                let reason = match leg {
                    Leg::Caller => EndReason::CallerHangup,
                    Leg::Agent => EndReason::AgentHangup,
                };
                self.end_call(now, id, reason, Some(leg));
            }
            Method::Invite | Method::Update => self.reoffer(now, id, leg, tx, req, flow),
            Method::Info => self.plain(tx, 200),
            _ => self.plain(tx, 405),
        }
    }

    /// A re-INVITE or UPDATE: hold, resume, a new address, or a session refresh.
    fn reoffer(&mut self, _now: Instant, id: u64, leg: Leg, tx: TxId, req: Request, _flow: Flow) {
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        let span = call.span.clone();
        let mut h = Headers::default();
        h.push(
            "Contact",
            match leg {
                Leg::Caller => format!("<sip:switchboard@{}>", self.cfg.contact_host),
                Leg::Agent => format!("<sip:switchboard@{}>", self.cfg.contact_host),
            },
        );
        h.push("Allow", ALLOW);
        if req.body.is_empty() {
            // A refresh without an offer (UPDATE) or a delayed-offer re-INVITE: for the
            // latter we would have to offer; answer 200 without a body for UPDATE only.
            if req.method == Method::Update {
                return self.respond(tx, 200, None, h, Bytes::new());
            }
            let mut h = Headers::default();
            h.push(
                "Warning",
                "399 switchboard \"re-INVITE without SDP is not supported\"",
            );
            return self.respond(tx, 488, None, h, Bytes::new());
        }
        let offer = match SessionDescription::parse(&req.body) {
            Ok(o) => o,
            Err(_) => return self.respond(tx, 400, None, Headers::default(), Bytes::new()),
        };
        let n = match negotiate(&offer) {
            Ok(n) => n,
            Err(_) => return self.respond(tx, 488, None, Headers::default(), Bytes::new()),
        };
        let body = match leg {
            Leg::Caller => {
                call.caller.sdp_version += 1;
                let local = LocalMedia {
                    session_id: id,
                    version: call.caller.sdp_version,
                    addr: call.media.advertised(),
                    port: call.media.port(Leg::Caller),
                    law: n.law,
                    pt: n.pt,
                    telephone_event: n.telephone_event,
                    direction: n.direction.answer(),
                };
                call.caller.media = n;
                call.caller.offer = offer.clone();
                local.answer(&offer, n.index)
            }
            Leg::Agent => {
                let Some(a) = call.agent.as_mut() else { return };
                a.local.version += 1;
                a.local.direction = n.direction.answer();
                let hold = n.is_hold();
                if hold != a.on_hold {
                    a.on_hold = hold;
                    info!(parent: &span, hold, "agent hold");
                    if hold {
                        let music = match call.route {
                            Route::Queue(q) => self.cfg.queues[q].music.clone(),
                            _ => None,
                        };
                        call.media.command(SessionCommand::Bridge(false));
                        if let Some(m) = music {
                            call.media.command(SessionCommand::Play {
                                leg: Leg::Caller,
                                prompts: Vec::new(),
                                then: Some(m),
                            });
                        }
                    } else {
                        call.media.command(SessionCommand::Stop(Leg::Caller));
                        call.media.command(SessionCommand::Bridge(true));
                    }
                }
                a.local.answer(&offer, n.index)
            }
        };
        call.media.command(SessionCommand::Remote {
            leg,
            rtp: n.remote,
            law: n.law,
            pt: n.pt,
            telephone_event: n.telephone_event,
            sends: n.direction.sends(),
        });
        h.push("Content-Type", "application/sdp");
        self.respond(tx, 200, None, h, Bytes::from(body));
    }

    // ------------------------------------------------------------------ the end

    /// End a call: answer or hang up every leg still up (except `hung_up`, which already
    /// sent its BYE), tell the ACD, free the media.
    fn end_call(&mut self, now: Instant, id: u64, reason: EndReason, hung_up: Option<Leg>) {
        let Some(mut call) = self.calls.remove(&id) else {
            return;
        };
        self.by_invite.remove(&call.caller.invite_tx);
        self.release_busy(&call.busy_users);
        self.cancel_timers(|t| matches!(t, Timer::Announce(c) | Timer::RingTimeout(c) if *c == id));
        // Phones still ringing: cancel every one.
        for attempt in std::mem::take(&mut call.attempts) {
            for f in attempt.forks {
                if f.failed.is_none() {
                    self.sip(SipCommand::Cancel { tx: f.tx });
                    self.orphan(now, f.tx, f.invite, f.flow);
                } else {
                    self.by_client.remove(&f.tx);
                }
            }
        }
        // The caller.
        if !call.caller.answered {
            if reason != EndReason::CallerCancelled {
                let status = reason.status();
                self.plain(call.caller.invite_tx, status);
            }
        } else if hung_up != Some(Leg::Caller) && reason != EndReason::NoAck {
            if let Some(d) = call.caller.dialog.as_mut() {
                let bye = d.request(Method::Bye);
                let flow = d.flow;
                self.send(flow, bye, Role::Fire);
            }
        } else if reason == EndReason::NoAck {
            // No ACK means the caller never confirmed: a BYE is still the way to end it.
            if let Some(d) = call.caller.dialog.as_mut() {
                let bye = d.request(Method::Bye);
                let flow = d.flow;
                self.send(flow, bye, Role::Fire);
            }
        }
        if let Some(d) = &call.caller.dialog {
            self.by_dialog
                .remove(&(d.call_id.clone(), d.local_tag.clone()));
        }
        // The agent.
        if let Some(mut a) = call.agent.take() {
            if hung_up != Some(Leg::Agent) {
                let bye = a.dialog.request(Method::Bye);
                let flow = a.dialog.flow;
                self.send(flow, bye, Role::Fire);
            }
            self.by_dialog
                .remove(&(a.dialog.call_id.clone(), a.dialog.local_tag.clone()));
        }
        // The ACD.
        if call.in_acd {
            let cmd = match (call.phase, reason) {
                (Phase::Connected, EndReason::AgentHangup) => AcdCommand::Hangup {
                    call: acd::CallId(id),
                    by: Party::Agent,
                },
                (Phase::Connected, _) => AcdCommand::Hangup {
                    call: acd::CallId(id),
                    by: Party::Caller,
                },
                _ => AcdCommand::Abandon(acd::CallId(id)),
            };
            self.acd(cmd);
        }
        if call.recording {
            if let Some(r) = &self.recorder {
                r.command(RecorderCommand::Stop {
                    call: id,
                    at: now,
                    end: std::time::SystemTime::now(),
                    dropped: call.media.counters().tap_dropped(),
                });
            }
        }
        let duration = now.saturating_duration_since(call.created);
        let talk = call.connected_at.map(|t| now.saturating_duration_since(t));
        let m = call.media.counters();
        info!(
            parent: &call.span,
            reason = reason.as_str(),
            duration_ms = duration.as_millis() as u64,
            talk_ms = talk.map(|t| t.as_millis() as u64),
            rtp_from_caller = m.received(Leg::Caller),
            rtp_from_agent = m.received(Leg::Agent),
            rtp_to_agent = m.forwarded(Leg::Caller),
            rtp_to_caller = m.forwarded(Leg::Agent),
            "call ended"
        );
        // Dropping the session ends its task and frees its ports.
        drop(call);
    }

    /// Apply a reloaded configuration as a difference: queues and agents added, changed or
    /// removed (by queue name and agent user), and the dial plan, trunks, feature codes,
    /// announcements and recording settings replaced. Calls in progress and callers waiting
    /// are untouched; callers waiting in a removed queue follow its overflow rule (in the
    /// ACD). `contact_host` and `seed` are not reloaded.
    pub fn reload(&mut self, new: PbxConfig) {
        let mut added_queues = 0;
        let mut changed_queues = 0;
        // Queues by name.
        let mut seen = vec![false; self.cfg.queues.len()];
        let mut by_name: HashMap<String, usize> = HashMap::new();
        for (i, q) in self.cfg.queues.iter().enumerate() {
            if !self.queue_removed[i] {
                by_name.insert(q.acd.name.clone(), i);
            }
        }
        let mut update_queues = Vec::new();
        for q in new.queues {
            match by_name.get(&q.acd.name) {
                Some(&i) => {
                    seen[i] = true;
                    if self.cfg.queues[i].acd != q.acd {
                        update_queues.push((self.queue_ids[i], q.acd.clone()));
                        changed_queues += 1;
                    }
                    self.cfg.queues[i] = q;
                }
                None => {
                    let id = QueueId(self.queue_ids.len() as u32);
                    self.out
                        .push_back(Output::Acd(AcdRequest::AddQueue(Box::new(q.acd.clone()))));
                    self.queue_ids.push(id);
                    self.queue_removed.push(false);
                    self.cfg.queues.push(q);
                    seen.push(true);
                    added_queues += 1;
                }
            }
        }
        for (id, cfg) in update_queues {
            self.out
                .push_back(Output::Acd(AcdRequest::UpdateQueue(id, Box::new(cfg))));
        }
        // Agents by user.
        let mut added_agents = 0;
        let mut changed_agents = 0;
        let mut removed_agents = 0;
        let mut agent_seen = vec![false; self.agents.len()];
        for a in new.agents {
            match self.agent_by_user.get(&a.user).copied() {
                Some(i) => {
                    agent_seen[i] = true;
                    if self.cfg.agents[i].acd != a.acd {
                        let id = self.agents[i].id;
                        self.out.push_back(Output::Acd(AcdRequest::UpdateAgent(
                            id,
                            Box::new(a.acd.clone()),
                        )));
                        changed_agents += 1;
                    }
                    self.agents[i].name = a.acd.name.clone();
                    self.cfg.agents[i] = a;
                }
                None => {
                    let id = AgentId(self.agents.len() as u32);
                    self.out
                        .push_back(Output::Acd(AcdRequest::AddAgent(Box::new(a.acd.clone()))));
                    if a.login_on_start {
                        self.out
                            .push_back(Output::Acd(AcdRequest::Command(AcdCommand::Login(id))));
                    }
                    let i = self.agents.len();
                    self.agents.push(AgentInfo {
                        id,
                        user: a.user.clone(),
                        name: a.acd.name.clone(),
                        state: AgentState::LoggedOut,
                        in_use: 0,
                        requested: None,
                    });
                    self.agent_by_user.insert(a.user.clone(), i);
                    self.agent_by_id.insert(id, i);
                    self.cfg.agents.push(a);
                    agent_seen.push(true);
                    added_agents += 1;
                }
            }
        }
        for (i, seen) in agent_seen.iter().enumerate() {
            if !seen && self.agent_by_user.get(&self.agents[i].user) == Some(&i) {
                let user = self.agents[i].user.clone();
                self.agent_by_user.remove(&user);
                self.out
                    .push_back(Output::Acd(AcdRequest::RemoveAgent(self.agents[i].id)));
                removed_agents += 1;
            }
        }
        // Removed queues last: the agents no longer point at them.
        let mut removed_queues = 0;
        for (i, seen) in seen.iter().enumerate() {
            if !seen && !self.queue_removed[i] {
                self.queue_removed[i] = true;
                self.out
                    .push_back(Output::Acd(AcdRequest::RemoveQueue(self.queue_ids[i])));
                removed_queues += 1;
            }
        }
        self.queue_by_number = self
            .cfg
            .queues
            .iter()
            .enumerate()
            .filter(|(i, _)| !self.queue_removed[*i])
            .map(|(i, q)| (q.number.clone(), i))
            .collect();
        self.cfg.trunks = new.trunks;
        self.cfg.extensions = new.extensions;
        self.cfg.extension_ring_timeout = new.extension_ring_timeout;
        self.cfg.features = new.features;
        self.cfg.announcements = new.announcements;
        self.cfg.recording_seed = new.recording_seed;
        self.cfg.recording_pause_key = new.recording_pause_key;
        info!(
            queues_added = added_queues,
            queues_changed = changed_queues,
            queues_removed = removed_queues,
            agents_added = added_agents,
            agents_changed = changed_agents,
            agents_removed = removed_agents,
            "configuration applied"
        );
    }

    /// Server shutdown: end every call (BYE to answered legs, 503 to unanswered callers).
    pub fn hang_up_all(&mut self, now: Instant) {
        let ids: Vec<u64> = self.calls.keys().copied().collect();
        for id in ids {
            self.end_call(now, id, EndReason::Shutdown, None);
        }
    }

    /// Forget a call that never got going (answered with an error already).
    fn drop_call(&mut self, id: u64) {
        if let Some(call) = self.calls.remove(&id) {
            self.by_invite.remove(&call.caller.invite_tx);
            self.release_busy(&call.busy_users);
        }
    }

    // ------------------------------------------------------------------ agents' phones

    fn has_phone(&self, user: &str) -> bool {
        self.locations.get(user).is_some_and(|b| !b.is_empty())
    }

    /// Call `id` keeps `user`'s phone busy (if `user` is an agent).
    fn mark_busy(&mut self, id: u64, user: &str) {
        let Some(&ai) = self.agent_by_user.get(user) else {
            return;
        };
        if let Some(call) = self.calls.get_mut(&id) {
            call.busy_users.push(user.to_owned());
        }
        self.agents[ai].in_use += 1;
        self.reconcile_agent(ai);
    }

    fn release_busy(&mut self, users: &[String]) {
        for u in users {
            if let Some(&ai) = self.agent_by_user.get(u) {
                let a = &mut self.agents[ai];
                a.in_use = a.in_use.saturating_sub(1);
                self.reconcile_agent(ai);
            }
        }
    }

    /// Bring the ACD's view of an agent in line with their phones ([`presence::reconcile`]).
    fn reconcile_agent(&mut self, ai: usize) {
        let a = &self.agents[ai];
        let has_phone = self.has_phone(&a.user);
        if let Some(change) = presence::reconcile(&a.state, has_phone, a.in_use > 0) {
            self.set_availability(ai, change);
        }
    }

    fn set_availability(&mut self, ai: usize, change: presence::Change) {
        let a = &mut self.agents[ai];
        if a.requested == Some(change) {
            return;
        }
        a.requested = Some(change);
        let (id, name) = (a.id, a.name.clone());
        match change {
            presence::Change::Park(presence::NO_PHONE) => {
                info!(agent = %name, "agent has no registered phone: not offered calls until one registers")
            }
            presence::Change::Park(reason) => {
                info!(agent = %name, reason, "agent's phone is busy: not offered calls until it is free")
            }
            presence::Change::Unpark => {
                info!(agent = %name, "agent's phone is available: ready for calls")
            }
        }
        self.acd(match change {
            presence::Change::Park(reason) => {
                AcdCommand::NotReady(id, acd::ReasonCode::new(reason))
            }
            presence::Change::Unpark => AcdCommand::Ready(id),
        });
    }
}

fn route_name(route: &Route, cfg: &PbxConfig) -> String {
    match route {
        Route::Queue(q) => format!("queue {}", cfg.queues[*q].acd.name),
        Route::Extension(_) => "extension".to_owned(),
        Route::Feature(f) => format!("feature {f:?}"),
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
