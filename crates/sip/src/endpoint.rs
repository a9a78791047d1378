//! The SIP endpoint: everything between the sockets and the call-control layer.
//!
//! It validates requests (RFC 3261 §8.2), runs the transaction layer, answers REGISTER
//! (registrar + digest authentication) and OPTIONS itself, pings registered phones, protects
//! itself from strangers (per-source rate limit, ban after repeated authentication failures,
//! size limit), and hands everything else (INVITE, BYE, …) up as [`SipEvent`]s.
//!
//! See the crate documentation for the drive loop.

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use bytes::Bytes;
use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tracing::{debug, info, warn};

use crate::digest::{self, Algorithm, Authenticator, UserSecret, Verdict};
use crate::header::{CSeq, NameAddr, Via, MAGIC_COOKIE};
use crate::log_limit::LogLimit;
use crate::message::{Headers, Message, Method, Request, Response};
use crate::parse::{parse_message, Malformed, DEFAULT_MAX_MESSAGE_SIZE};
use crate::registrar::{
    Binding, BindingChange, RegisterError, RegisterRequest, Registrar, RegistrarConfig,
    RemovalReason, RestoreError, RestoredBinding,
};
use crate::transaction::{TimerConfig, Transactions, TxId, TxOutput, TxState};
use crate::uri::{Scheme, Uri};
use crate::{Flow, Transmit};

/// Methods this endpoint implements (the Allow header).
pub const ALLOW: &str =
    "INVITE, ACK, CANCEL, BYE, OPTIONS, REGISTER, INFO, UPDATE, SUBSCRIBE, REFER";
/// Option tags we support (none that a request may Require yet, besides these).
pub const SUPPORTED: &str = "path, outbound";
/// Body types we accept.
pub const ACCEPT: &str = "application/sdp";
/// Body types of an INFO that carries a key (RFC 2976 style DTMF, as phones send it).
const INFO_DTMF: [&str; 2] = ["application/dtmf-relay", "application/dtmf"];
/// The Accept header of a 415 answering an INFO.
const INFO_ACCEPT: &str = "application/sdp, application/dtmf-relay, application/dtmf";

/// Digest settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthConfig {
    /// Algorithms offered, in order (one WWW-Authenticate each). The default, MD5 only,
    /// registers MD5-only phones (and SIPp 3.6, which aborts on a first SHA-256 challenge).
    pub algorithms: Vec<Algorithm>,
    /// How long a nonce stays fresh.
    pub nonce_lifetime: Duration,
    /// Accept RFC 2069 style responses without qop (old phones; no replay protection).
    pub allow_no_qop: bool,
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            algorithms: vec![Algorithm::Md5],
            nonce_lifetime: Duration::from_secs(300),
            allow_no_qop: true,
        }
    }
}

/// Protection against strangers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecurityConfig {
    /// Authentication failures from one source address within `failure_window` before a ban.
    pub max_auth_failures: u32,
    /// The window for counting failures.
    pub failure_window: Duration,
    /// How long a banned source is ignored.
    pub ban_duration: Duration,
    /// Requests per second allowed per source address (token bucket); `None` disables.
    pub rate_limit: Option<RateLimit>,
    /// Source addresses never rate-limited or banned (carriers, the load balancer).
    pub trusted: Vec<IpAddr>,
    /// Most source addresses tracked at once (memory bound).
    pub max_tracked_sources: usize,
    /// Dropped messages (flood, garbage, oversize) are logged once per source and reason,
    /// then as one count per this interval.
    pub log_interval: Duration,
}

/// A token bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    /// Sustained requests per second.
    pub per_second: u32,
    /// Burst size.
    pub burst: u32,
}

impl Default for SecurityConfig {
    fn default() -> Self {
        SecurityConfig {
            max_auth_failures: 10,
            failure_window: Duration::from_secs(60),
            ban_duration: Duration::from_secs(600),
            rate_limit: Some(RateLimit {
                per_second: 100,
                burst: 200,
            }),
            trusted: Vec::new(),
            max_tracked_sources: 100_000,
            log_interval: Duration::from_secs(30),
        }
    }
}

/// A carrier trunk: a peer recognised by its source address, whose INVITEs to its numbers
/// are not challenged. An INVITE from a trunk's address to any other number is challenged
/// like everyone else's (a phone may share the address, e.g. behind the same NAT), so an
/// unauthenticated path never reaches more than the trunk's numbers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Trunk {
    /// The trunk's name (config key), reported as [`Caller::Trunk`].
    pub name: String,
    /// Source addresses its requests come from.
    pub addresses: Vec<IpAddr>,
    /// The numbers (Request-URI user parts) it may call.
    pub numbers: Vec<String>,
    /// The account (of the registrar's accounts) the carrier answers our digest challenge
    /// with, for a carrier that authenticates instead of (or as well as) sending from known
    /// addresses. That account only ever identifies the trunk: it cannot register.
    pub username: Option<String>,
}

/// Who may place calls (out-of-dialog INVITEs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallAuthConfig {
    /// Carrier trunks.
    pub trunks: Vec<Trunk>,
    /// Challenge INVITEs from everyone else with 407 (digest, the registrar's accounts and
    /// rules). Turn off only on a closed lab network: every INVITE then arrives as
    /// [`Caller::Anonymous`].
    pub challenge: bool,
}

impl Default for CallAuthConfig {
    fn default() -> Self {
        CallAuthConfig {
            trunks: Vec::new(),
            challenge: true,
        }
    }
}

/// Who sent an out-of-dialog INVITE, as far as the endpoint established it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Caller {
    /// Nobody checked (challenges are off, or the request is not an out-of-dialog INVITE).
    Anonymous,
    /// An account that answered the digest challenge.
    User(String),
    /// A configured trunk, by source address.
    Trunk(String),
}

/// Endpoint settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointConfig {
    /// Digest realm.
    pub realm: String,
    /// Domains we are registrar for; empty accepts any host in the To URI.
    pub domains: Vec<String>,
    /// host:port we put in the Via of requests we send.
    pub via_host: String,
    /// Server / User-Agent header value.
    pub server_name: String,
    /// RFC 3261 timers.
    pub timers: TimerConfig,
    /// Registrar settings.
    pub registrar: RegistrarConfig,
    /// Digest settings.
    pub auth: AuthConfig,
    /// Protection settings.
    pub security: SecurityConfig,
    /// Who may place calls.
    pub calls: CallAuthConfig,
    /// Largest message accepted (octets).
    pub max_message_size: usize,
    /// Most live transactions (memory bound); beyond it new requests get 503.
    pub max_transactions: usize,
    /// Answer UDP requests at their source port even without `rport` (phones behind NAT).
    pub force_rport: bool,
    /// Server secret for nonces (32 bytes, random per start unless configured).
    pub secret: [u8; 32],
    /// Seed for tags and branches.
    pub seed: u64,
    /// Pass NOTIFY requests to the application instead of answering 405 (a phone, which
    /// takes message-waiting NOTIFYs; a server has no use for them).
    pub accept_notify: bool,
}

impl Default for EndpointConfig {
    fn default() -> Self {
        EndpointConfig {
            realm: "switchboard".into(),
            domains: Vec::new(),
            via_host: "127.0.0.1:5060".into(),
            server_name: concat!("Switchboard/", env!("CARGO_PKG_VERSION")).into(),
            timers: TimerConfig::default(),
            registrar: RegistrarConfig::default(),
            auth: AuthConfig::default(),
            security: SecurityConfig::default(),
            calls: CallAuthConfig::default(),
            max_message_size: DEFAULT_MAX_MESSAGE_SIZE,
            max_transactions: 2_000_000,
            force_rport: true,
            secret: [0; 32],
            seed: 0,
            accept_notify: false,
        }
    }
}

/// A SIP account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserAccount {
    /// Password or HA1 hashes.
    pub secret: UserSecret,
    /// Algorithms offered to this user instead of the global list.
    pub algorithms: Option<Vec<Algorithm>>,
    /// Contact limit for this user instead of the registrar's.
    pub max_contacts: Option<usize>,
    /// This phone must use TLS (or secure WebSocket): its REGISTERs and calls over UDP, TCP
    /// or plain WebSocket are refused with 403 even with the right password.
    pub require_tls: bool,
}

/// What the endpoint reports to the layer above.
#[derive(Debug, Clone, PartialEq)]
pub enum SipEvent {
    /// A new request for call control (INVITE, BYE, INFO, UPDATE, …). Answer it with
    /// [`Endpoint::respond`].
    Request {
        /// The server transaction.
        tx: TxId,
        /// The request.
        request: Request,
        /// Where it came from.
        flow: Flow,
        /// Who sent it (out-of-dialog INVITEs are authenticated; other requests are
        /// [`Caller::Anonymous`] and belong to a dialog or get refused by call control).
        caller: Caller,
    },
    /// An ACK for a 2xx (belongs to a dialog, not a transaction).
    Ack {
        /// The ACK.
        request: Request,
        /// Where it came from.
        flow: Flow,
    },
    /// A pending INVITE was cancelled by the caller; 200 to the CANCEL and 487 to the INVITE
    /// have been sent.
    Cancelled {
        /// The INVITE's server transaction.
        tx: TxId,
    },
    /// A response to a request sent with [`Endpoint::send_request`].
    Response {
        /// The client transaction.
        tx: TxId,
        /// The response.
        response: Response,
    },
    /// A client transaction got no final response in time (Timer B/F).
    Timeout {
        /// The client transaction.
        tx: TxId,
    },
    /// A 2xx we sent to an INVITE was retransmitted for 64·T1 without an ACK
    /// (RFC 3261 §13.3.1.4): the session should be ended with a BYE.
    AckTimeout {
        /// The INVITE's server transaction.
        tx: TxId,
    },
    /// A registrar binding was added or removed.
    Binding(BindingChange),
    /// A source address was banned.
    Banned {
        /// The address.
        ip: IpAddr,
    },
}

/// Counters for monitoring.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Datagrams / framed messages received.
    pub received: u64,
    /// Dropped for exceeding the size limit.
    pub dropped_oversize: u64,
    /// Dropped because they could not be parsed or answered.
    pub dropped_malformed: u64,
    /// Dropped by the per-source rate limit.
    pub dropped_rate_limited: u64,
    /// Dropped because the source is banned.
    pub dropped_banned: u64,
    /// Responses that matched no transaction.
    pub dropped_stray_responses: u64,
    /// Requests answered with an error before reaching the transaction user.
    pub rejected: u64,
    /// Authentication failures.
    pub auth_failures: u64,
    /// Bans issued.
    pub bans: u64,
    /// Successful REGISTER transactions.
    pub registrations: u64,
    /// Requests refused with 503 because the transaction table was full.
    pub overloaded: u64,
    /// Keep-alives: datagrams of nothing but CR and LF (many phones send a double CRLF over
    /// UDP too, RFC 5626 §3.5.1 for streams; ignored) and STUN Binding requests (answered,
    /// RFC 5626 §4.4.1).
    pub keepalives: u64,
}

/// Why a message was dropped or refused before it reached a transaction, as logged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DropReason {
    /// The per-source rate limit.
    RateLimited,
    /// The source is banned.
    Banned,
    /// Larger than the size limit.
    Oversize,
    /// Could not be parsed and could not be answered.
    Unparseable,
    /// Malformed or invalid request, answered with an error status.
    Invalid,
}

impl DropReason {
    /// The reason as it appears in the log.
    pub fn as_str(self) -> &'static str {
        match self {
            DropReason::RateLimited => "rate limit",
            DropReason::Banned => "source banned",
            DropReason::Oversize => "message too large",
            DropReason::Unparseable => "unparseable message",
            DropReason::Invalid => "invalid request",
        }
    }
}

#[derive(Debug, Clone)]
struct SourceState {
    tokens: f64,
    refilled: Instant,
    failures: u32,
    window_start: Instant,
    banned_until: Option<Instant>,
}

/// What an outstanding client transaction is for.
#[derive(Debug, Clone)]
enum Pending {
    /// Started by the layer above.
    User,
    /// An OPTIONS ping to a binding.
    Qualify { aor: String, key: String },
    /// A CANCEL the endpoint built: its answer interests nobody.
    Internal,
}

/// A 2xx to an INVITE that is retransmitted until its ACK arrives (RFC 3261 §13.3.1.4).
#[derive(Debug, Clone)]
struct Unacked {
    tx: TxId,
    call_id: String,
    cseq: u32,
    flow: Flow,
    bytes: Bytes,
    interval: Duration,
    next: Instant,
    give_up: Instant,
}

/// Which kind of digest exchange: registration (401) or call (407, proxy-style).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AuthKind {
    Register,
    Call,
}

impl AuthKind {
    fn status(self) -> u16 {
        match self {
            AuthKind::Register => 401,
            AuthKind::Call => 407,
        }
    }
    fn challenge_header(self) -> &'static str {
        match self {
            AuthKind::Register => "WWW-Authenticate",
            AuthKind::Call => "Proxy-Authenticate",
        }
    }
    fn credentials_header(self) -> &'static str {
        match self {
            AuthKind::Register => "Authorization",
            AuthKind::Call => "Proxy-Authorization",
        }
    }
}

/// The sans-IO SIP endpoint.
#[derive(Debug)]
pub struct Endpoint {
    cfg: EndpointConfig,
    users: HashMap<String, UserAccount>,
    tx: Transactions,
    registrar: Registrar,
    auth: Authenticator,
    rng: ChaCha8Rng,
    sources: HashMap<IpAddr, SourceState>,
    pending: HashMap<TxId, Pending>,
    unacked: Vec<Unacked>,
    transmits: VecDeque<Transmit>,
    events: VecDeque<SipEvent>,
    stats: Stats,
    /// Host part of the Call-IDs we generate.
    call_id_host: String,
    /// Set by [`Endpoint::shutdown`]: new requests get 503.
    shutting_down: bool,
    /// The latest time seen in any input, for work done while draining outputs.
    last_now: Instant,
    /// Dropped messages, logged once per source and reason and interval.
    drops: LogLimit<(IpAddr, DropReason)>,
    /// Ban ends in time order, to log the lifting of each ban when it happens.
    ban_ends: VecDeque<(Instant, IpAddr)>,
}

/// Dummy secret used to spend the same effort on unknown users as on known ones.
const NO_SUCH_USER: &str = "\u{0}no-such-user\u{0}";

impl Endpoint {
    /// A new endpoint. `now` anchors nonce timestamps.
    pub fn new(cfg: EndpointConfig, users: HashMap<String, UserAccount>, now: Instant) -> Self {
        let mut auth = Authenticator::new(cfg.secret, cfg.auth.nonce_lifetime, now);
        auth.allow_no_qop = cfg.auth.allow_no_qop;
        let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed);
        let call_id_host = format!("{:08x}", rng.next_u32());
        let drops = LogLimit::new(
            cfg.security.log_interval,
            cfg.security.max_tracked_sources.clamp(1, 10_000),
        );
        Endpoint {
            drops,
            ban_ends: VecDeque::new(),
            registrar: Registrar::new(cfg.registrar.clone()),
            tx: Transactions::new(cfg.timers, cfg.max_transactions),
            cfg,
            users,
            auth,
            rng,
            sources: HashMap::new(),
            pending: HashMap::new(),
            unacked: Vec::new(),
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            stats: Stats::default(),
            call_id_host,
            last_now: now,
            shutting_down: false,
        }
    }

    /// Live transactions (bounded by [`EndpointConfig::max_transactions`]).
    pub fn transaction_count(&self) -> usize {
        self.tx.len()
    }

    /// Replace the user accounts (config reload). Existing bindings stay.
    pub fn set_users(&mut self, users: HashMap<String, UserAccount>) {
        self.users = users;
    }

    /// Replace who may place calls (config reload: trunks and the challenge switch).
    pub fn set_call_auth(&mut self, calls: CallAuthConfig) {
        self.cfg.calls = calls;
    }

    /// The counters.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// The registrar's bindings (read-only).
    pub fn registrar(&self) -> &Registrar {
        &self.registrar
    }

    /// Put back a binding kept across a restart (see [`Registrar::restore`]). Bindings of
    /// names that are no longer accounts are refused.
    pub fn restore_binding(
        &mut self,
        now: Instant,
        aor: &str,
        binding: RestoredBinding<'_>,
    ) -> Result<(), RestoreError> {
        if !self.users.contains_key(aor) {
            return Err(RestoreError::BadAor);
        }
        self.last_now = self.last_now.max(now);
        self.registrar.restore(now, aor, binding)
    }

    /// Connection `conn` closed: the bindings reached only over it (a browser's WebSocket, a
    /// phone's TLS connection) are removed, so nobody is rung who cannot be reached.
    pub fn connection_closed(&mut self, now: Instant, conn: crate::ConnId) {
        if self.registrar.remove_connection(conn) > 0 {
            self.pump_at(now);
        }
    }

    /// The AORs whose bindings changed in any way (refreshes included) since the last call;
    /// see [`Registrar::drain_touched`].
    pub fn drain_touched_aors(&mut self) -> Vec<String> {
        self.registrar.drain_touched()
    }

    /// The settings in force.
    pub fn config(&self) -> &EndpointConfig {
        &self.cfg
    }

    /// Next datagram or stream chunk to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.pump();
        self.transmits.pop_front()
    }

    /// Next event for the layer above.
    pub fn poll_event(&mut self) -> Option<SipEvent> {
        self.pump();
        self.events.pop_front()
    }

    /// Earliest time [`Endpoint::handle_timeout`] must be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        [
            self.tx.poll_timeout(),
            self.registrar.poll_timeout(),
            self.unacked.iter().map(|u| u.next.min(u.give_up)).min(),
            self.drops.poll_timeout(),
            self.ban_ends.front().map(|(t, _)| *t),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Fire due timers.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.tx.handle_timeout(now);
        self.retransmit_2xx(now);
        for (aor, binding) in self.registrar.handle_timeout(now) {
            self.qualify(now, aor, binding);
        }
        self.lift_bans(now);
        self.summarise_drops(now);
        self.pump_at(now);
    }

    /// Lift the bans that ended by `now`, with a log line each.
    fn lift_bans(&mut self, now: Instant) {
        while let Some((at, _)) = self.ban_ends.front() {
            if *at > now {
                break;
            }
            let Some((at, ip)) = self.ban_ends.pop_front() else {
                break;
            };
            if let Some(st) = self.sources.get_mut(&ip) {
                if st.banned_until == Some(at) {
                    st.banned_until = None;
                    st.failures = 0;
                    info!(source = %ip, "ban lifted");
                }
            }
        }
    }

    /// One line per source and reason whose drops went on after the first logged one.
    fn summarise_drops(&mut self, now: Instant) {
        let secs = self.drops.interval().as_secs();
        for ((ip, why), dropped) in self.drops.handle_timeout(now) {
            match why {
                DropReason::Banned | DropReason::Invalid => info!(
                    source = %ip,
                    reason = why.as_str(),
                    dropped,
                    interval_secs = secs,
                    "messages from source dropped (summary)"
                ),
                _ => warn!(
                    source = %ip,
                    reason = why.as_str(),
                    dropped,
                    interval_secs = secs,
                    "messages from source dropped (summary)"
                ),
            }
        }
        let untracked = self.drops.take_untracked();
        if untracked > 0 {
            warn!(
                dropped = untracked,
                "messages dropped from more sources than are tracked one by one"
            );
        }
    }

    /// A message from `flow` was dropped or refused for `why`: the first one from this
    /// source is logged, the others are counted for [`Endpoint::summarise_drops`].
    fn note_drop(&mut self, now: Instant, flow: &Flow, why: DropReason, detail: &'static str) {
        let ip = flow.remote.ip();
        if !self.drops.note(now, (ip, why)) {
            return;
        }
        let secs = self.drops.interval().as_secs();
        match why {
            DropReason::Banned | DropReason::Invalid => info!(
                source = %ip,
                transport = flow.transport.as_str(),
                reason = why.as_str(),
                detail,
                summary_every_secs = secs,
                "message from source dropped; more from it are counted"
            ),
            _ => warn!(
                source = %ip,
                transport = flow.transport.as_str(),
                reason = why.as_str(),
                detail,
                summary_every_secs = secs,
                "message from source dropped; more from it are counted"
            ),
        }
    }

    /// One message arrived (a UDP datagram, or a message cut by [`crate::parse::StreamFramer`]).
    pub fn handle_message(&mut self, now: Instant, flow: Flow, data: &[u8]) {
        self.stats.received += 1;
        let ip = flow.remote.ip();
        self.last_now = self.last_now.max(now);
        if let Some(why) = self.admit(now, ip) {
            self.note_drop(now, &flow, why, "");
            return;
        }
        if !data.is_empty() && data.iter().all(|&b| b == b'\r' || b == b'\n') {
            self.stats.keepalives += 1;
            return;
        }
        if flow.transport == crate::Transport::Udp && crate::stun::is_stun(data) {
            // A STUN keep-alive (RFC 5626 §4.4.1): answered with the address it came from.
            self.stats.keepalives += 1;
            if let Some(resp) = crate::stun::binding_response(data, flow.remote) {
                self.transmits.push_back(Transmit {
                    flow,
                    payload: Bytes::from(resp),
                });
            }
            return;
        }
        if data.len() > self.cfg.max_message_size {
            self.stats.dropped_oversize += 1;
            debug!(remote = %flow.remote, len = data.len(), "oversize message dropped");
            self.note_drop(now, &flow, DropReason::Oversize, "");
            return;
        }
        match parse_message(data, self.cfg.max_message_size) {
            Ok(Message::Request(req)) => self.handle_request(now, flow, req),
            Ok(Message::Response(resp)) => {
                if !self.tx.receive_response(now, resp) {
                    self.stats.dropped_stray_responses += 1;
                }
            }
            Err(m) => self.reject_malformed(now, flow, m),
        }
        self.pump_at(now);
    }

    /// Answer a request that was handed up in [`SipEvent::Request`]. `extra` headers are added
    /// (Contact, Content-Type …); a To tag is added when missing on a non-100 response.
    pub fn respond(
        &mut self,
        now: Instant,
        tx: TxId,
        status: u16,
        extra: Headers,
        body: Bytes,
    ) -> Result<(), crate::transaction::TxError> {
        self.respond_tagged(now, tx, status, None, extra, body)
    }

    /// Like [`Endpoint::respond`], with the To tag chosen by the caller: call control gives
    /// every response of one INVITE the same tag, the local tag of the dialog it creates.
    /// A 2xx to an INVITE is retransmitted until the ACK arrives (RFC 3261 §13.3.1.4); if none
    /// comes within 64·T1, [`SipEvent::AckTimeout`] reports it.
    pub fn respond_tagged(
        &mut self,
        now: Instant,
        tx: TxId,
        status: u16,
        to_tag: Option<&str>,
        extra: Headers,
        body: Bytes,
    ) -> Result<(), crate::transaction::TxError> {
        // Only what a response copies from its request (and the method and CSeq for the 2xx
        // bookkeeping below), not the whole request.
        let (req, flow) = match (self.tx.request(tx), self.tx.flow(tx)) {
            (Some(r), Some(f)) => {
                let mut h = Headers(Vec::with_capacity(6));
                for header in r.headers.iter() {
                    if matches!(
                        header.name.as_str(),
                        "Via" | "From" | "To" | "Call-ID" | "CSeq"
                    ) {
                        h.0.push(header.clone());
                    }
                }
                (
                    Request {
                        method: r.method.clone(),
                        uri: String::new(),
                        headers: h,
                        body: Bytes::new(),
                    },
                    f,
                )
            }
            _ => return Err(crate::transaction::TxError::Unknown),
        };
        let mut resp = self.response_to(&req, &flow, status, to_tag);
        resp.headers.0.extend(extra.0);
        resp.body = body;
        let r = self.tx.respond(now, tx, &resp);
        if r.is_ok() && req.method == Method::Invite && (200..300).contains(&status) {
            let cseq = req
                .headers
                .get("CSeq")
                .and_then(|c| CSeq::parse(c).ok())
                .map_or(0, |c| c.seq);
            let t1 = self.cfg.timers.t1;
            self.unacked.push(Unacked {
                tx,
                call_id: req.headers.get("Call-ID").unwrap_or_default().to_owned(),
                cseq,
                flow,
                bytes: resp.to_bytes(),
                interval: t1,
                next: now + t1,
                give_up: now + t1 * 64,
            });
        }
        self.pump_at(now);
        r
    }

    fn retransmit_2xx(&mut self, now: Instant) {
        let t2 = self.cfg.timers.t2;
        let mut i = 0;
        while i < self.unacked.len() {
            let u = &mut self.unacked[i];
            if now >= u.give_up {
                let tx = u.tx;
                self.unacked.swap_remove(i);
                debug!(tx = tx.0, "no ACK for our 2xx");
                self.events.push_back(SipEvent::AckTimeout { tx });
                continue;
            }
            if now >= u.next {
                self.transmits.push_back(Transmit {
                    flow: u.flow,
                    payload: u.bytes.clone(),
                });
                u.interval = (u.interval * 2).min(t2);
                u.next = now + u.interval;
            }
            i += 1;
        }
    }

    /// An ACK for a 2xx arrived: stop retransmitting that 2xx.
    fn acked(&mut self, ack: &Request) {
        if self.unacked.is_empty() {
            return;
        }
        let call_id = ack.headers.get("Call-ID").unwrap_or_default();
        let cseq = ack
            .headers
            .get("CSeq")
            .and_then(|c| CSeq::parse(c).ok())
            .map_or(0, |c| c.seq);
        self.unacked
            .retain(|u| !(u.cseq == cseq && u.call_id == call_id));
    }

    /// Send a request in a new client transaction. A Via with a fresh branch is put on top
    /// and Max-Forwards, Call-ID, CSeq and From tag are added when missing.
    pub fn send_request(
        &mut self,
        now: Instant,
        flow: Flow,
        mut req: Request,
    ) -> Result<TxId, crate::transaction::TxError> {
        self.complete_request(&flow, &mut req);
        let id = self.tx.send_request(now, flow, req)?;
        self.pending.insert(id, Pending::User);
        self.pump_at(now);
        Ok(id)
    }

    /// Like [`Endpoint::send_request`], under an id the caller chose with [`TxId::user`]
    /// (call control in another task names its requests before they are sent).
    pub fn send_request_as(
        &mut self,
        now: Instant,
        flow: Flow,
        mut req: Request,
        id: TxId,
    ) -> Result<TxId, crate::transaction::TxError> {
        self.complete_request(&flow, &mut req);
        let id = self.tx.send_request_as(now, flow, req, id)?;
        self.pending.insert(id, Pending::User);
        self.pump_at(now);
        Ok(id)
    }

    /// Send a request outside any transaction: the ACK for a 2xx (RFC 3261 §13.2.2.4), which
    /// the dialog layer sends and re-sends for every retransmitted 2xx. Gets a fresh Via.
    pub fn send_stateless_request(&mut self, now: Instant, flow: Flow, mut req: Request) {
        self.complete_request(&flow, &mut req);
        self.transmits.push_back(Transmit {
            flow,
            payload: req.to_bytes(),
        });
        self.pump_at(now);
    }

    /// Top Via with a fresh branch; Max-Forwards, Call-ID, CSeq, User-Agent when missing.
    fn complete_request(&mut self, flow: &Flow, req: &mut Request) {
        let branch = self.new_branch();
        let via = format!(
            "SIP/2.0/{} {};branch={};rport",
            flow.transport.as_str(),
            self.cfg.via_host,
            branch
        );
        req.headers.0.insert(
            0,
            crate::message::Header {
                name: "Via".into(),
                value: via,
            },
        );
        if req.headers.get("Max-Forwards").is_none() {
            req.headers.push("Max-Forwards", "70");
        }
        if req.headers.get("Call-ID").is_none() {
            let id = self.new_token();
            req.headers
                .push("Call-ID", format!("{id}@{}", self.call_id_host));
        }
        if req.headers.get("CSeq").is_none() {
            req.headers.push("CSeq", format!("1 {}", req.method));
        }
        if req.headers.get("User-Agent").is_none() {
            req.headers.push("User-Agent", self.cfg.server_name.clone());
        }
    }

    /// Begin a graceful shutdown: every request still waiting for an answer gets
    /// 503 Service Unavailable (Retry-After), and so does every new request from now on.
    pub fn shutdown(&mut self, now: Instant) {
        self.shutting_down = true;
        for tx in self.tx.unanswered_server() {
            let mut h = Headers::default();
            h.push("Retry-After", "30");
            let _ = self.respond(now, tx, 503, h, Bytes::new());
        }
        self.pump_at(now);
    }

    /// Build a CANCEL for a pending client INVITE and send it.
    pub fn cancel(&mut self, now: Instant, invite: TxId) -> Option<TxId> {
        let (flow, req) = self.tx.build_cancel(invite)?;
        let id = self.tx.send_request(now, flow, req).ok()?;
        self.pending.insert(id, Pending::Internal);
        self.pump_at(now);
        Some(id)
    }

    // ----------------------------------------------------------------------------------

    fn pump(&mut self) {
        self.pump_at(self.last_now);
    }

    fn pump_at(&mut self, now: Instant) {
        self.last_now = self.last_now.max(now);
        while let Some(out) = self.tx.poll_output() {
            self.route_output(now, out);
        }
        for ch in self.registrar.drain_changes() {
            if let BindingChange::Removed {
                aor,
                contact,
                reason,
            } = &ch
            {
                let why = match reason {
                    RemovalReason::Unregistered => "unregistered",
                    RemovalReason::Expired => "expired",
                    RemovalReason::Replaced => "replaced by a newer contact",
                    RemovalReason::Unreachable => "stopped answering OPTIONS",
                    RemovalReason::ConnectionClosed => "its connection closed",
                };
                info!(
                    reason = why,
                    aor_bindings = self.registrar.lookup(aor).len(),
                    bindings = self.registrar.binding_count(),
                    "binding removed"
                );
                debug!(aor = %aor, contact = %contact, reason = why, "binding removed");
            }
            self.events.push_back(SipEvent::Binding(ch));
        }
    }

    fn route_output(&mut self, now: Instant, out: TxOutput) {
        match out {
            TxOutput::Transmit(flow, payload) => {
                self.transmits.push_back(Transmit { flow, payload })
            }
            TxOutput::Request(tx, req) => self.dispatch(now, tx, req),
            TxOutput::AckFor2xx(request, flow) => {
                self.acked(&request);
                self.events.push_back(SipEvent::Ack { request, flow })
            }
            TxOutput::Response(tx, response) => match self.pending.get(&tx) {
                Some(Pending::Qualify { aor, key }) if response.status >= 200 => {
                    let (aor, key) = (aor.clone(), key.clone());
                    self.registrar.qualified(now, &aor, &key);
                }
                Some(Pending::Qualify { .. }) => {}
                Some(Pending::User) => self.events.push_back(SipEvent::Response { tx, response }),
                Some(Pending::Internal) | None => {}
            },
            TxOutput::Timeout(tx) => match self.pending.get(&tx) {
                Some(Pending::Qualify { aor, key }) => {
                    let (aor, key) = (aor.clone(), key.clone());
                    self.registrar
                        .remove(&aor, &key, RemovalReason::Unreachable);
                }
                Some(Pending::User) => self.events.push_back(SipEvent::Timeout { tx }),
                Some(Pending::Internal) | None => {}
            },
            TxOutput::Terminated(tx) => {
                self.pending.remove(&tx);
            }
        }
    }

    fn new_token(&mut self) -> String {
        let mut b = [0u8; 8];
        self.rng.fill_bytes(&mut b);
        b.iter().map(|x| format!("{x:02x}")).collect()
    }

    fn new_branch(&mut self) -> String {
        format!("{MAGIC_COOKIE}{}", self.new_token())
    }

    /// Rate limit and ban check. Returns why when the message must be ignored.
    fn admit(&mut self, now: Instant, ip: IpAddr) -> Option<DropReason> {
        if self.cfg.security.trusted.contains(&ip) {
            return None;
        }
        let rate = self.cfg.security.rate_limit;
        let Some(st) = self.sources.get_mut(&ip) else {
            // Unknown and no rate limit: nothing to check (bans are tracked per source).
            rate?;
            self.track_source(now, ip);
            return self.admit(now, ip);
        };
        if let Some(until) = st.banned_until {
            if now < until {
                self.stats.dropped_banned += 1;
                return Some(DropReason::Banned);
            }
            st.banned_until = None;
            st.failures = 0;
            info!(source = %ip, "ban lifted");
        }
        if let Some(rate) = rate {
            let elapsed = now.saturating_duration_since(st.refilled).as_secs_f64();
            st.refilled = now;
            st.tokens = (st.tokens + elapsed * rate.per_second as f64).min(rate.burst as f64);
            if st.tokens < 1.0 {
                self.stats.dropped_rate_limited += 1;
                return Some(DropReason::RateLimited);
            }
            st.tokens -= 1.0;
        }
        None
    }

    fn track_source(&mut self, now: Instant, ip: IpAddr) -> &mut SourceState {
        let cap = self.cfg.security.max_tracked_sources.max(1);
        if self.sources.len() >= cap && !self.sources.contains_key(&ip) {
            // Amortised clean-up: drop idle, unbanned sources; as a last resort, forget
            // everything but active bans.
            let idle = Duration::from_secs(10);
            self.sources.retain(|_, s| {
                s.banned_until.is_some_and(|u| u > now)
                    || now.saturating_duration_since(s.refilled) < idle
            });
            if self.sources.len() >= cap {
                self.sources
                    .retain(|_, s| s.banned_until.is_some_and(|u| u > now));
            }
            if self.sources.len() >= cap {
                self.sources.clear();
            }
        }
        let burst = self.cfg.security.rate_limit.map_or(0.0, |r| r.burst as f64);
        self.sources.entry(ip).or_insert(SourceState {
            tokens: burst,
            refilled: now,
            failures: 0,
            window_start: now,
            banned_until: None,
        })
    }

    /// Count an authentication failure; true when the source is now banned.
    fn auth_failed(&mut self, now: Instant, ip: IpAddr) -> bool {
        self.stats.auth_failures += 1;
        if self.cfg.security.trusted.contains(&ip) || self.cfg.security.max_auth_failures == 0 {
            return false;
        }
        let window = self.cfg.security.failure_window;
        let max = self.cfg.security.max_auth_failures;
        let ban = self.cfg.security.ban_duration;
        let st = self.track_source(now, ip);
        if now.saturating_duration_since(st.window_start) > window {
            st.window_start = now;
            st.failures = 0;
        }
        st.failures += 1;
        if st.failures >= max {
            st.banned_until = Some(now + ban);
            self.ban_ends.push_back((now + ban, ip));
            self.stats.bans += 1;
            warn!(source = %ip, failures = max, ban_secs = ban.as_secs(), "source banned after repeated authentication failures");
            self.events.push_back(SipEvent::Banned { ip });
            return true;
        }
        false
    }

    fn reject_malformed(&mut self, now: Instant, flow: Flow, m: Malformed) {
        let Some(ctx) = m.reply else {
            self.stats.dropped_malformed += 1;
            debug!(remote = %flow.remote, reason = m.reason, "unanswerable message dropped");
            self.note_drop(now, &flow, DropReason::Unparseable, m.reason);
            return;
        };
        self.stats.rejected += 1;
        debug!(remote = %flow.remote, status = m.status, reason = m.reason, "malformed request rejected");
        self.note_drop(now, &flow, DropReason::Invalid, m.reason);
        let mut resp = self.stateless_response(&ctx.headers, &flow, m.status);
        resp.reason = m.reason.to_owned();
        self.send_stateless(&ctx.headers, flow, resp);
    }

    /// Send a response outside any transaction (to requests too broken to have one).
    fn send_stateless(&mut self, req_headers: &Headers, flow: Flow, resp: Response) {
        let dest = self.response_flow(req_headers, &flow);
        self.transmits.push_back(Transmit {
            flow: dest,
            payload: resp.to_bytes(),
        });
    }

    /// Where a response to a request received over `flow` goes (RFC 3261 §18.2.2, RFC 3581).
    fn response_flow(&self, req_headers: &Headers, flow: &Flow) -> Flow {
        if flow.transport.is_reliable() {
            return *flow;
        }
        let via = req_headers
            .get_list("Via")
            .next()
            .and_then(|v| Via::parse(v).ok());
        let port = match &via {
            Some(v) if !self.cfg.force_rport && !v.params.has("rport") => v.port.unwrap_or(5060),
            _ => flow.remote.port(),
        };
        Flow {
            remote: SocketAddr::new(flow.remote.ip(), port),
            ..*flow
        }
    }

    /// Copy the headers a response needs from the request (RFC 3261 §8.2.6.2), with
    /// received/rport added to the top Via (RFC 3581).
    fn stateless_response(&mut self, req_headers: &Headers, flow: &Flow, status: u16) -> Response {
        self.stateless_response_tagged(req_headers, flow, status, None)
    }

    fn stateless_response_tagged(
        &mut self,
        req_headers: &Headers,
        flow: &Flow,
        status: u16,
        to_tag: Option<&str>,
    ) -> Response {
        let mut resp = Response::new(status);
        let mut first = true;
        for via in req_headers.get_list("Via") {
            if first {
                first = false;
                resp.headers.push("Via", self.stamp_via(via, flow));
            } else {
                resp.headers.push("Via", via);
            }
        }
        for name in ["From", "To", "Call-ID", "CSeq"] {
            if let Some(v) = req_headers.get(name) {
                resp.headers.push(name, v);
            }
        }
        if status > 100 {
            if let Some(to) = resp.headers.0.iter_mut().find(|h| h.name == "To") {
                let has_tag = NameAddr::parse(&to.value).is_ok_and(|n| n.tag().is_some());
                if !has_tag {
                    let tag = match to_tag {
                        Some(t) => t.to_owned(),
                        None => {
                            let mut b = [0u8; 6];
                            self.rng.fill_bytes(&mut b);
                            b.iter().map(|x| format!("{x:02x}")).collect()
                        }
                    };
                    to.value.push_str(";tag=");
                    to.value.push_str(&tag);
                }
            }
        }
        resp.headers.push("Server", self.cfg.server_name.clone());
        resp
    }

    fn response_to(
        &mut self,
        req: &Request,
        flow: &Flow,
        status: u16,
        to_tag: Option<&str>,
    ) -> Response {
        self.stateless_response_tagged(&req.headers, flow, status, to_tag)
    }

    fn stamp_via(&self, via: &str, flow: &Flow) -> String {
        let Ok(parsed) = Via::parse(via) else {
            return via.to_owned();
        };
        let ip = flow.remote.ip();
        let mut out = String::with_capacity(via.len() + 40);
        // Rebuild the parameter part: drop a valueless rport, add received and rport values.
        let (head, _) = via.split_once(';').unwrap_or((via, ""));
        out.push_str(head.trim_end());
        let mut has_received = false;
        for (n, v) in &parsed.params.0 {
            match (n.as_str(), v) {
                ("rport", _) => {}
                ("received", _) => has_received = true,
                (_, Some(v)) if v.contains([' ', ';', ',']) || v.is_empty() => {
                    out.push_str(&format!(";{n}=\"{v}\""))
                }
                (_, Some(v)) => out.push_str(&format!(";{n}={v}")),
                (_, None) => out.push_str(&format!(";{n}")),
            }
        }
        let host_matches = match &parsed.host {
            crate::uri::Host::V4(a) => IpAddr::V4(*a) == ip,
            crate::uri::Host::V6(a) => IpAddr::V6(*a) == ip,
            crate::uri::Host::Domain(_) => false,
        };
        let wants_rport = parsed.params.has("rport");
        if has_received || !host_matches || wants_rport {
            out.push_str(&format!(";received={ip}"));
        }
        if wants_rport {
            out.push_str(&format!(";rport={}", flow.remote.port()));
        }
        out
    }

    /// Validate a request (RFC 3261 §8.2) and hand it to the transaction layer.
    fn handle_request(&mut self, now: Instant, flow: Flow, req: Request) {
        if let Err((status, reason)) = validate(&req) {
            self.stats.rejected += 1;
            debug!(remote = %flow.remote, status, reason, "request rejected");
            self.note_drop(now, &flow, DropReason::Invalid, reason);
            if req.method == Method::Ack {
                return; // never answer an ACK
            }
            let mut resp = self.stateless_response(&req.headers, &flow, status);
            resp.reason = reason.to_owned();
            self.send_stateless(&req.headers, flow, resp);
            return;
        }
        let reply_flow = self.response_flow(&req.headers, &flow);
        match self.tx.receive_request(now, reply_flow, req) {
            Ok(_) => {}
            Err(refused) => {
                let headers = &refused.request.headers;
                let resp = if refused.error == crate::transaction::TxError::Full {
                    self.stats.overloaded += 1;
                    let mut resp = self.stateless_response(headers, &flow, 503);
                    resp.headers.push("Retry-After", "5");
                    resp
                } else {
                    self.stats.rejected += 1;
                    self.stateless_response(headers, &flow, 400)
                };
                self.send_stateless(headers, flow, resp);
            }
        }
    }

    /// A new server transaction: answer it here or pass it up.
    fn dispatch(&mut self, now: Instant, tx: TxId, req: Request) {
        let Some(flow) = self.tx.flow(tx) else {
            return;
        };
        let simple = |ep: &mut Endpoint, status: u16, extra: &[(&str, &str)]| {
            let mut h = Headers::default();
            for (n, v) in extra {
                h.push(*n, *v);
            }
            let _ = ep.respond(now, tx, status, h, Bytes::new());
        };
        if self.shutting_down {
            return simple(self, 503, &[("Retry-After", "30")]);
        }
        match &req.method {
            Method::Extension(_) => return simple(self, 501, &[("Allow", ALLOW)]),
            Method::Notify if self.cfg.accept_notify => {}
            Method::Message | Method::Notify | Method::Publish | Method::Prack => {
                return simple(self, 405, &[("Allow", ALLOW)])
            }
            _ => {}
        }
        if let Some(unsupported) = unsupported_requires(&req) {
            return simple(self, 420, &[("Unsupported", &unsupported)]);
        }
        if !req.body.is_empty() || req.headers.get("Content-Type").is_some() {
            if let Some(ct) = req.headers.get("Content-Type") {
                let mime = ct.split(';').next().unwrap_or("").trim();
                // Keys by SIP INFO: the body types phones send (Cisco's dtmf-relay, and
                // application/dtmf).
                let info = req.method == Method::Info;
                let known = mime.eq_ignore_ascii_case("application/sdp")
                    || (info && INFO_DTMF.iter().any(|t| mime.eq_ignore_ascii_case(t)))
                    || (req.method == Method::Notify
                        && (mime.eq_ignore_ascii_case("application/simple-message-summary")
                            || mime.eq_ignore_ascii_case("message/sipfrag")));
                if !req.body.is_empty() && !known {
                    let accept = if info { INFO_ACCEPT } else { ACCEPT };
                    return simple(self, 415, &[("Accept", accept)]);
                }
            } else if !req.body.is_empty() {
                return simple(self, 415, &[("Accept", ACCEPT)]);
            }
        }
        if req.method == Method::Invite && !accepts_sdp(&req) {
            return simple(self, 406, &[("Accept", ACCEPT)]);
        }
        match req.method {
            Method::Register => self.handle_register(now, tx, &req, flow),
            Method::Options => simple(
                self,
                200,
                &[
                    ("Allow", ALLOW),
                    ("Accept", ACCEPT),
                    ("Supported", SUPPORTED),
                ],
            ),
            Method::Cancel => self.handle_cancel(now, tx, &req),
            _ => {
                let mut caller = Caller::Anonymous;
                if req.method == Method::Subscribe && !has_to_tag(&req) {
                    // Who subscribes: authenticated like a caller.
                    match self.identify_caller(now, tx, &req, flow) {
                        Some(c) => caller = c,
                        None => return,
                    }
                }
                if req.method == Method::Invite {
                    // Stop INVITE retransmissions at once.
                    let _ = self.respond(now, tx, 100, Headers::default(), Bytes::new());
                    if !has_to_tag(&req) {
                        match self.identify_caller(now, tx, &req, flow) {
                            Some(c) => caller = c,
                            None => return, // challenged or refused
                        }
                    }
                }
                self.events.push_back(SipEvent::Request {
                    tx,
                    request: req,
                    flow,
                    caller,
                });
            }
        }
    }

    fn handle_cancel(&mut self, now: Instant, tx: TxId, req: &Request) {
        match self.tx.find_invite_for_cancel(req) {
            Some(invite) => {
                let _ = self.respond(now, tx, 200, Headers::default(), Bytes::new());
                if self.tx.state(invite) == Some(TxState::Proceeding) {
                    let _ = self.respond(now, invite, 487, Headers::default(), Bytes::new());
                    self.events.push_back(SipEvent::Cancelled { tx: invite });
                }
            }
            None => {
                let _ = self.respond(now, tx, 481, Headers::default(), Bytes::new());
            }
        }
    }

    fn challenge(
        &mut self,
        now: Instant,
        tx: TxId,
        user: Option<&str>,
        stale: bool,
        kind: AuthKind,
    ) {
        let algorithms = user
            .and_then(|u| self.users.get(u))
            .and_then(|a| a.algorithms.clone())
            .unwrap_or_else(|| self.cfg.auth.algorithms.clone());
        let mut h = Headers::default();
        for c in self
            .auth
            .challenges(now, &self.cfg.realm, &algorithms, stale)
        {
            h.push(kind.challenge_header(), c);
        }
        let _ = self.respond(now, tx, kind.status(), h, Bytes::new());
        // Statelessly, as registrars and proxies do: a challenge holds nothing, so a flood of
        // requests without credentials from any number of addresses costs no table space.
        // A retransmitted request gets a fresh challenge; the ACK of a 407 finds nothing.
        self.tx.forget(tx);
    }

    fn forbid_and_maybe_ban(
        &mut self,
        now: Instant,
        tx: TxId,
        ip: IpAddr,
        status: u16,
        kind: AuthKind,
    ) {
        if self.auth_failed(now, ip) {
            let _ = self.respond(now, tx, 403, Headers::default(), Bytes::new());
        } else if status == kind.status() {
            self.challenge(now, tx, None, false, kind);
        } else {
            let _ = self.respond(now, tx, status, Headers::default(), Bytes::new());
        }
    }

    /// Check the digest credentials of `req` for our realm. Returns the account on success;
    /// otherwise the request has been answered (challenge, stale challenge, or a failure that
    /// counts towards a ban) and `None` comes back.
    fn authenticate(
        &mut self,
        now: Instant,
        tx: TxId,
        req: &Request,
        flow: Flow,
        kind: AuthKind,
        user_hint: Option<&str>,
    ) -> Option<(String, Option<UserAccount>)> {
        let (ip, transport) = (flow.remote.ip(), flow.transport);
        // Credentials for our realm; other schemes and realms are ignored (RFC 4475 §3.3.7).
        let creds = req
            .headers
            .get_all(kind.credentials_header())
            .filter_map(|v| digest::parse_credentials(v).ok())
            .find(|c| c.realm == self.cfg.realm);
        let Some(creds) = creds else {
            self.challenge(now, tx, user_hint, false, kind);
            return None;
        };
        let account = self.users.get(&creds.username).cloned();
        let allowed = account
            .as_ref()
            .and_then(|a| a.algorithms.clone())
            .unwrap_or_else(|| self.cfg.auth.algorithms.clone());
        let verdict = match &account {
            Some(a) => self.auth.verify(
                now,
                req.method.as_str(),
                &self.cfg.realm,
                &allowed,
                &creds,
                &a.secret,
            ),
            None => {
                // Same work and the same answer as a wrong password: no account enumeration.
                let _ = self.auth.verify(
                    now,
                    req.method.as_str(),
                    &self.cfg.realm,
                    &allowed,
                    &creds,
                    &UserSecret::Password(NO_SUCH_USER.into()),
                );
                Verdict::Failed(digest::FailReason::WrongResponse)
            }
        };
        match verdict {
            Verdict::Ok
                if !transport.is_secure() && account.as_ref().is_some_and(|a| a.require_tls) =>
            {
                warn!(
                    source = %ip,
                    transport = transport.as_str(),
                    method = req.method.as_str(),
                    "refused: this account must use TLS"
                );
                let mut h = Headers::default();
                h.push("Warning", "399 switchboard \"this account must use TLS\"");
                let _ = self.respond(now, tx, 403, h, Bytes::new());
                None
            }
            Verdict::Ok => Some((creds.username, account)),
            Verdict::Stale => {
                self.challenge(now, tx, Some(&creds.username), true, kind);
                None
            }
            Verdict::Failed(reason) => {
                debug!(source = %ip, ?reason, "authentication failed");
                self.forbid_and_maybe_ban(now, tx, ip, kind.status(), kind);
                None
            }
        }
    }

    /// Who is placing this out-of-dialog INVITE: a trunk by source address, else an account
    /// that answers a 407 challenge. `None` when the request has been answered instead.
    fn identify_caller(
        &mut self,
        now: Instant,
        tx: TxId,
        req: &Request,
        flow: Flow,
    ) -> Option<Caller> {
        let ip = flow.remote.ip();
        let number = crate::uri::Uri::parse(&req.uri)
            .ok()
            .and_then(|u| u.user_unescaped());
        if let Some(t) = self.cfg.calls.trunks.iter().find(|t| {
            t.addresses.contains(&ip)
                && number
                    .as_deref()
                    .is_some_and(|n| t.numbers.iter().any(|x| x == n))
        }) {
            return Some(Caller::Trunk(t.name.clone()));
        }
        if !self.cfg.calls.challenge {
            return Some(Caller::Anonymous);
        }
        let from_user = req
            .headers
            .get("From")
            .and_then(|f| NameAddr::parse(f).ok())
            .and_then(|f| f.uri.user_unescaped());
        let (user, _) =
            self.authenticate(now, tx, req, flow, AuthKind::Call, from_user.as_deref())?;
        // A carrier authenticating with its trunk account is that trunk.
        match self
            .cfg
            .calls
            .trunks
            .iter()
            .find(|t| t.username.as_deref() == Some(user.as_str()))
        {
            Some(t) => Some(Caller::Trunk(t.name.clone())),
            None => Some(Caller::User(user)),
        }
    }

    fn handle_register(&mut self, now: Instant, tx: TxId, req: &Request, flow: Flow) {
        let ip = flow.remote.ip();
        // validate() has checked To parses.
        let Some(to) = req.headers.get("To").and_then(|t| NameAddr::parse(t).ok()) else {
            return self.plain(now, tx, 400);
        };
        if !to.uri.is_sip() {
            return self.plain(now, tx, 404);
        }
        if !self.cfg.domains.is_empty() {
            let host = to.uri.host.to_string();
            if !self
                .cfg
                .domains
                .iter()
                .any(|d| d.eq_ignore_ascii_case(&host))
            {
                return self.plain(now, tx, 404);
            }
        }
        let Some(aor) = to.uri.user_unescaped() else {
            return self.plain(now, tx, 404);
        };
        let Some((username, account)) =
            self.authenticate(now, tx, req, flow, AuthKind::Register, Some(&aor))
        else {
            return;
        };
        if username != aor {
            // Valid credentials, but for another account.
            return self.forbid_and_maybe_ban(now, tx, ip, 403, AuthKind::Register);
        }
        if self
            .cfg
            .calls
            .trunks
            .iter()
            .any(|t| t.username.as_deref() == Some(username.as_str()))
        {
            // A trunk's account places calls as the trunk; it is no phone.
            return self.plain(now, tx, 403);
        }
        let call_id = req.headers.get("Call-ID").unwrap_or_default();
        let cseq = req
            .headers
            .get("CSeq")
            .and_then(|c| CSeq::parse(c).ok())
            .map_or(0, |c| c.seq);
        let rr = RegisterRequest {
            aor: &aor,
            contacts: req.headers.get_list("Contact").collect(),
            expires: req.headers.get("Expires"),
            call_id,
            cseq,
            flow,
            user_agent: req.headers.get("User-Agent"),
            max_contacts: account.as_ref().and_then(|a| a.max_contacts),
        };
        match self.registrar.register(now, &rr) {
            Ok(bindings) => {
                self.stats.registrations += 1;
                for b in bindings
                    .iter()
                    .filter(|b| b.call_id == call_id && b.cseq == cseq)
                {
                    // The AOR and contact are personal data: debug only.
                    let (transport, source) = (b.flow.transport.as_str(), b.flow.remote.ip());
                    let (expires, aor_bindings) = (b.remaining(now), bindings.len());
                    if b.registered_at == now {
                        info!(transport, source = %source, expires, aor_bindings, "binding added");
                        debug!(aor = %aor, contact = %b.uri_text, expires, "binding added");
                    } else {
                        // A refresh changes nothing anyone acts on, and every phone sends
                        // one per expiry interval: at info level a registration storm would
                        // cost a log write per REGISTER.
                        debug!(transport, source = %source, aor = %aor, contact = %b.uri_text, expires, aor_bindings, "binding refreshed");
                    }
                }
                let mut h = Headers::default();
                for b in &bindings {
                    h.push("Contact", contact_value(b, now));
                }
                let _ = self.respond(now, tx, 200, h, Bytes::new());
            }
            Err(RegisterError::Bad(reason)) => {
                let mut resp = self.response_to(req, &flow, 400, None);
                resp.reason = reason.to_owned();
                let _ = self.tx.respond(now, tx, &resp);
            }
            Err(RegisterError::IntervalTooBrief(min)) => {
                let mut h = Headers::default();
                h.push("Min-Expires", min.to_string());
                let _ = self.respond(now, tx, 423, h, Bytes::new());
            }
            Err(RegisterError::OutOfOrder) => {
                let mut resp = self.response_to(req, &flow, 500, None);
                resp.reason = "Out Of Order CSeq".to_owned();
                let _ = self.tx.respond(now, tx, &resp);
            }
        }
    }

    fn plain(&mut self, now: Instant, tx: TxId, status: u16) {
        let _ = self.respond(now, tx, status, Headers::default(), Bytes::new());
    }

    fn qualify(&mut self, now: Instant, aor: String, b: Binding) {
        let mut req = Request {
            method: Method::Options,
            uri: b.uri_text.clone(),
            headers: Headers::default(),
            body: Bytes::new(),
        };
        let tag = self.new_token();
        req.headers.push(
            "From",
            format!("<sip:switchboard@{}>;tag={tag}", self.cfg.via_host),
        );
        req.headers.push("To", format!("<{}>", b.uri_text));
        match self.send_request(now, b.flow, req) {
            Ok(id) => {
                self.pending.insert(
                    id,
                    Pending::Qualify {
                        aor,
                        key: b.key.clone(),
                    },
                );
            }
            Err(_) => {
                self.registrar
                    .remove(&aor, &b.key, RemovalReason::Unreachable);
            }
        }
    }
}

fn contact_value(b: &Binding, now: Instant) -> String {
    let mut v = format!("<{}>;expires={}", b.uri_text, b.remaining(now));
    if let Some(q) = b.q {
        v.push_str(&format!(";q={}.{:03}", q / 1000, q % 1000));
    }
    if let Some(i) = &b.instance {
        v.push_str(&format!(";+sip.instance=\"{i}\""));
    }
    if let Some(r) = b.reg_id {
        v.push_str(&format!(";reg-id={r}"));
    }
    v
}

/// The Require option tags we do not support, comma-joined, if any.
fn unsupported_requires(req: &Request) -> Option<String> {
    if matches!(req.method, Method::Ack | Method::Cancel) {
        return None;
    }
    let bad: Vec<&str> = req
        .headers
        .get_list("Require")
        .filter(|t| {
            !SUPPORTED
                .split(',')
                .any(|s| s.trim().eq_ignore_ascii_case(t))
        })
        .collect();
    (!bad.is_empty()).then(|| bad.join(", "))
}

/// True when the request's To carries a tag (an in-dialog request).
fn has_to_tag(req: &Request) -> bool {
    req.headers
        .get("To")
        .and_then(|t| NameAddr::parse(t).ok())
        .is_some_and(|t| t.tag().is_some())
}

/// False when an Accept header is present and excludes application/sdp.
fn accepts_sdp(req: &Request) -> bool {
    if req.headers.get("Accept").is_none() {
        return true;
    }
    req.headers.get_list("Accept").any(|a| {
        let m = a.split(';').next().unwrap_or("").trim();
        m.eq_ignore_ascii_case("application/sdp")
            || m.eq_ignore_ascii_case("application/*")
            || m == "*/*"
    })
}

/// RFC 3261 §8.2.1–8.2.2 checks that need no state: mandatory headers present exactly once
/// and well-formed, CSeq method matching, Request-URI scheme.
fn validate(req: &Request) -> Result<(), (u16, &'static str)> {
    for name in ["Call-ID", "From", "To", "CSeq"] {
        match req.headers.count(name) {
            0 => return Err((400, missing(name))),
            1 => {}
            _ => return Err((400, "Duplicate header")),
        }
    }
    if req.headers.count("Via") == 0 {
        return Err((400, "Missing Via"));
    }
    for via in req.headers.get_list("Via") {
        Via::parse(via).map_err(|_| (400, "Bad Via"))?;
    }
    if req
        .headers
        .get("Call-ID")
        .is_some_and(|c| c.is_empty() || c.contains(char::is_whitespace))
    {
        return Err((400, "Bad Call-ID"));
    }
    NameAddr::parse(req.headers.get("From").unwrap_or_default()).map_err(|_| (400, "Bad From"))?;
    NameAddr::parse(req.headers.get("To").unwrap_or_default()).map_err(|_| (400, "Bad To"))?;
    let cseq =
        CSeq::parse(req.headers.get("CSeq").unwrap_or_default()).map_err(|_| (400, "Bad CSeq"))?;
    if cseq.method != req.method.as_str() {
        return Err((400, "CSeq method does not match"));
    }
    if let Some(mf) = req.headers.get("Max-Forwards") {
        // 1*DIGIT: leading zeros are legal ("0068", RFC 4475 §3.1.1.1); the value is 0–255.
        let digits = mf.trim_start_matches('0');
        if mf.is_empty() || !mf.bytes().all(|c| c.is_ascii_digit()) || digits.len() > 3 {
            return Err((400, "Bad Max-Forwards"));
        }
    }
    for c in req.headers.get_list("Contact") {
        if c.trim() != "*" {
            NameAddr::parse(c).map_err(|_| (400, "Bad Contact"))?;
        }
    }
    match Uri::parse(&req.uri) {
        Ok(u) if matches!(u.scheme, Scheme::Sip | Scheme::Sips) => Ok(()),
        Ok(_) => Err((416, "Unsupported URI Scheme")),
        Err(_) => Err((400, "Bad Request-URI")),
    }
}

fn missing(name: &str) -> &'static str {
    match name {
        "Call-ID" => "Missing Call-ID",
        "From" => "Missing From",
        "To" => "Missing To",
        _ => "Missing CSeq",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::parse_message;

    fn options_with_max_forwards(mf: &str) -> Request {
        let text = format!(
            "OPTIONS sip:switchboard SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK1\r\n\
             From: <sip:a@switchboard>;tag=1\r\nTo: <sip:switchboard>\r\nCall-ID: mf\r\n\
             CSeq: 1 OPTIONS\r\nMax-Forwards: {mf}\r\nContent-Length: 0\r\n\r\n"
        );
        match parse_message(text.as_bytes(), 65_535) {
            Ok(Message::Request(r)) => r,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn max_forwards_allows_leading_zeros_and_refuses_junk() {
        for ok in ["0068", "70", "0", "255", "000000000070"] {
            assert_eq!(validate(&options_with_max_forwards(ok)), Ok(()), "{ok}");
        }
        for bad in ["", "7O", "-1", "1000", "70 70"] {
            assert_eq!(
                validate(&options_with_max_forwards(bad)),
                Err((400, "Bad Max-Forwards")),
                "{bad:?}"
            );
        }
    }
}
