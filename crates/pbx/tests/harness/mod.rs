//! A contact center in virtual time: call control, the server's SIP endpoint, the ACD engine
//! and a fake media relay, with phones that are `sip::Endpoint`s of their own, all wired by
//! an in-memory network with a fixed one-way delay. No sockets, no threads, no sleeps: time
//! only moves when a test says so ([`World::run_for`], [`World::run_until`]).
//!
//! The driver code is the project's own where it can be: SIP commands are carried out by
//! `sip_transport::apply`, the registrar's view is published by
//! `sip_transport::publish_location`, and ACD requests by `pbx::acd_task::apply`.

#![allow(dead_code, unreachable_pub)]

use std::collections::{BTreeMap, HashMap};
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use md5::{Digest as _, Md5};
use pbx::acd::{self, AcdCommand, AgentState, Time};
use pbx::acd_task::{self, AcdReport, AcdRequest};
use pbx::media::prompt::Prompt;
use pbx::media::relay::{
    Leg, MediaEvent, MediaEventKind, MonitorMode, SdesKeys, SessionCommand, SessionId, WebRtcParams,
};
use pbx::sip::endpoint::{CallAuthConfig, RateLimit, SecurityConfig, SipEvent, Trunk};
use pbx::sip::message::{Headers, Method, Request, Response};
use pbx::sip::registrar::RegistrarConfig;
use pbx::sip::transaction::TxId;
use pbx::sip::{Dialog, Endpoint, EndpointConfig, Flow, Transport, UserAccount};
use pbx::sip_transport::{self, Locations};
use pbx::{
    AgentSetup, CallControl, CallbackRequest, MediaInput, MediaPorts, MediaRequest, MediaTotals,
    Now, Output, PbxConfig, QueueSetup, RecordingRequest, TrunkRule, VoicemailInput,
    VoicemailRequest,
};

/// The server's SIP address.
pub const SERVER: &str = "10.0.0.1:5060";
/// The carrier's address: calls from it are trunk calls, no digest needed.
pub const CARRIER: &str = "10.0.0.5:5060";
/// One-way delay of the simulated network.
pub const DELAY: Duration = Duration::from_millis(5);

pub fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn udp(remote: SocketAddr) -> Flow {
    Flow {
        transport: Transport::Udp,
        remote,
        conn: None,
    }
}

/// A queue `name` reached at `number`, defaults otherwise (15 s ring timeout, no wrap-up).
pub fn queue(name: &str, number: &str) -> QueueSetup {
    QueueSetup {
        number: number.into(),
        acd: acd::QueueConfig {
            name: name.into(),
            ring_timeout: Some(Duration::from_secs(15)),
            auto_pause_after: 0,
            ..acd::QueueConfig::named(name)
        },
        greeting: None,
        music: None,
        announce_every: None,
        record: Default::default(),
        priority: 0,
        hours: None,
        survey: None,
        callback: None,
        caller_id: None,
    }
}

/// Agent `user` serving `queues`, logged in at start.
pub fn agent(user: &str, queues: &[&str]) -> AgentSetup {
    let mut a = acd::AgentConfig::named(user);
    a.queues = queues
        .iter()
        .map(|q| acd::QueueMembership {
            queue: (*q).into(),
            priority: 0,
        })
        .collect();
    AgentSetup {
        acd: a,
        user: user.into(),
        login_on_start: true,
    }
}

/// Queue "support" at 600 and agents 1001–1003 serving it; the carrier may call 600 and 601.
pub fn config() -> PbxConfig {
    PbxConfig {
        contact_host: SERVER.into(),
        queues: vec![queue("support", "600")],
        agents: ["1001", "1002", "1003"]
            .iter()
            .map(|u| agent(u, &["support"]))
            .collect(),
        trunks: vec![TrunkRule {
            trunk: "carrier".into(),
            numbers: vec!["600".into(), "601".into()],
        }],
        ..PbxConfig::default()
    }
}

fn password(user: &str) -> String {
    format!("pw{user}")
}

fn server_endpoint(now: Instant) -> Endpoint {
    let users: HashMap<String, UserAccount> = (1001..=1020)
        .map(|u| {
            (
                u.to_string(),
                UserAccount {
                    secret: pbx::sip::digest::UserSecret::Password(password(&u.to_string())),
                    algorithms: None,
                    max_contacts: None,
                    require_tls: false,
                },
            )
        })
        .collect();
    let cfg = EndpointConfig {
        via_host: SERVER.into(),
        registrar: RegistrarConfig {
            qualify_interval: None,
            ..Default::default()
        },
        security: SecurityConfig {
            rate_limit: None::<RateLimit>,
            max_auth_failures: 1000,
            ..Default::default()
        },
        calls: CallAuthConfig {
            trunks: vec![Trunk {
                name: "carrier".into(),
                addresses: vec![addr(CARRIER).ip()],
                // 0301234567: an outside number, for the check that a trunk never dials
                // out even where its rules let it reach a number.
                numbers: vec![
                    "600".into(),
                    "601".into(),
                    "700".into(),
                    "0301234567".into(),
                ],
                username: None,
            }],
            challenge: true,
        },
        seed: 7,
        ..Default::default()
    };
    Endpoint::new(cfg, users, now)
}

fn phone_endpoint(at: SocketAddr, seed: u64, now: Instant) -> Endpoint {
    let cfg = EndpointConfig {
        via_host: at.to_string(),
        security: SecurityConfig {
            rate_limit: None,
            max_auth_failures: 1000,
            ..Default::default()
        },
        calls: CallAuthConfig {
            trunks: Vec::new(),
            challenge: false,
        },
        seed,
        accept_notify: true,
        ..Default::default()
    };
    Endpoint::new(cfg, HashMap::new(), now)
}

/// A carrier's SIP side: its registrar takes REGISTERs and its INVITEs are challenged (407)
/// for the one account `user`/`pw`; what passes comes up like any phone's call.
pub fn carrier_endpoint(at: SocketAddr, user: &str, pw: &str, now: Instant) -> Endpoint {
    carrier_endpoint_min(at, user, pw, now, 60)
}

/// [`carrier_endpoint`] whose registrar refuses registrations shorter than `min_expires`.
pub fn carrier_endpoint_min(
    at: SocketAddr,
    user: &str,
    pw: &str,
    now: Instant,
    min_expires: u32,
) -> Endpoint {
    let accounts = HashMap::from([(
        user.to_owned(),
        UserAccount {
            secret: pbx::sip::digest::UserSecret::Password(pw.to_owned()),
            algorithms: None,
            max_contacts: None,
            require_tls: false,
        },
    )]);
    let cfg = EndpointConfig {
        via_host: at.to_string(),
        registrar: RegistrarConfig {
            qualify_interval: None,
            min_expires,
            ..Default::default()
        },
        security: SecurityConfig {
            rate_limit: None,
            max_auth_failures: 1000,
            ..Default::default()
        },
        calls: CallAuthConfig {
            trunks: Vec::new(),
            challenge: true,
        },
        seed: 7,
        ..Default::default()
    };
    Endpoint::new(cfg, accounts, now)
}

/// The answer to a digest challenge (MD5, qop=auth).
fn digest(challenge: &str, user: &str, pw: &str, method: &str, uri: &str) -> String {
    let param = |name: &str| -> String {
        let i = challenge.find(&format!("{name}=")).unwrap();
        let rest = &challenge[i + name.len() + 1..];
        match rest.strip_prefix('"') {
            Some(r) => r[..r.find('"').unwrap()].to_owned(),
            None => rest.split([',', ' ']).next().unwrap().to_owned(),
        }
    };
    let h = |s: String| hex(&Md5::digest(s.as_bytes()));
    let (realm, nonce) = (param("realm"), param("nonce"));
    let ha1 = h(format!("{user}:{realm}:{pw}"));
    let ha2 = h(format!("{method}:{uri}"));
    let resp = h(format!("{ha1}:{nonce}:00000001:0a4f113b:auth:{ha2}"));
    format!(
        "Digest username=\"{user}\", realm=\"{realm}\", nonce=\"{nonce}\", uri=\"{uri}\", \
         response=\"{resp}\", algorithm=MD5, cnonce=\"0a4f113b\", qop=auth, nc=00000001"
    )
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn to_tag(h: &Headers) -> Option<String> {
    let to = h.get("To")?;
    let i = to.find(";tag=")?;
    Some(to[i + 5..].split(';').next()?.to_owned())
}

fn cseq(h: &Headers) -> u32 {
    h.get("CSeq")
        .and_then(|c| c.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// What a phone does with an incoming call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Policy {
    /// Ring, then answer after this long.
    Answer(Duration),
    /// Refuse at once with this status (486 busy, 603 decline …).
    Reject(u16),
    /// Ring until cancelled.
    Ignore,
}

/// Where an incoming call stands on the phone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InState {
    Ringing,
    /// 200 sent, ACK not seen yet.
    Answered,
    /// ACK seen: talking.
    Confirmed,
    Rejected,
    Cancelled,
    /// BYE sent or received.
    Ended,
}

#[derive(Debug)]
pub struct Incoming {
    pub tx: TxId,
    pub invite: Request,
    pub tag: String,
    pub state: InState,
    pub answer_at: Option<Instant>,
    pub dialog: Option<Dialog>,
}

/// Where a call the phone placed stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutState {
    Trying,
    Ringing,
    Up,
    /// A final error status.
    Failed(u16),
    /// BYE sent or received.
    Ended,
}

#[derive(Debug)]
pub struct Outgoing {
    pub invite: Request,
    pub tx: TxId,
    pub state: OutState,
    pub dialog: Option<Dialog>,
    pub authed: bool,
    /// Who sent the BYE (true: the phone).
    pub hung_up_here: bool,
    /// The SDP answer the server sent.
    pub answer: Bytes,
    /// The To tag of a provisional answer (an early dialog).
    pub early_tag: Option<String>,
}

/// A phone: a SIP user agent on its own `sip::Endpoint`.
#[derive(Debug)]
pub struct Phone {
    pub user: String,
    pub addr: SocketAddr,
    /// How the server sees this phone's messages arrive (UDP unless a test says a browser
    /// over WebSocket or a desk phone over TLS).
    pub transport: Transport,
    pub ep: Endpoint,
    pub policy: Policy,
    /// The From user of calls this phone places (its user when `None`): a carrier's
    /// customers have numbers.
    pub from_user: Option<String>,
    pub incoming: Vec<Incoming>,
    pub outgoing: Vec<Outgoing>,
    pub registered: bool,
    register_tx: Option<TxId>,
    register_cseq: u32,
    register_call_id: String,
    register_expires: u32,
    /// Final statuses of in-dialog requests the phone sent (BYE, re-INVITE).
    pub in_dialog_answers: Vec<(Method, u16)>,
    in_dialog_txs: HashMap<TxId, Method>,
    /// Bodies of the unsolicited NOTIFYs received (message-summary).
    pub notifies: Vec<String>,
    /// A message-summary subscription of this phone.
    pub sub: Option<Sub>,
    /// The sipfrag bodies of the transfer NOTIFYs this phone got.
    pub refer_notifies: Vec<String>,
    /// How the endpoint identified each request that came up (a carrier's authenticated
    /// INVITEs say `User`).
    pub callers: Vec<pbx::sip::endpoint::Caller>,
    /// Registrations a carrier's registrar took (their changes, as text).
    pub bindings: Vec<String>,
    seq: u64,
}

impl Phone {
    fn new(user: &str, at: SocketAddr, seed: u64, now: Instant) -> Phone {
        Phone {
            user: user.into(),
            addr: at,
            transport: Transport::Udp,
            ep: phone_endpoint(at, seed, now),
            policy: Policy::Answer(Duration::from_millis(500)),
            from_user: None,
            incoming: Vec::new(),
            outgoing: Vec::new(),
            registered: false,
            register_tx: None,
            register_cseq: 0,
            register_call_id: format!("reg-{user}-{at}"),
            register_expires: 3600,
            in_dialog_answers: Vec::new(),
            in_dialog_txs: HashMap::new(),
            notifies: Vec::new(),
            sub: None,
            refer_notifies: Vec::new(),
            callers: Vec::new(),
            bindings: Vec::new(),
            seq: 0,
        }
    }

    fn token(&mut self) -> String {
        self.seq += 1;
        format!("{}x{}", self.user, self.seq)
    }

    fn server(&self) -> Flow {
        udp(addr(SERVER))
    }

    fn register(&mut self, now: Instant, expires: u32, auth: Option<String>) {
        self.register_cseq += 1;
        self.register_expires = expires;
        let mut h = Headers::default();
        h.push(
            "From",
            format!("<sip:{}@switchboard>;tag=r{}", self.user, self.user),
        );
        h.push("To", format!("<sip:{}@switchboard>", self.user));
        h.push("Call-ID", self.register_call_id.clone());
        h.push("CSeq", format!("{} REGISTER", self.register_cseq));
        h.push("Contact", format!("<sip:{}@{}>", self.user, self.addr));
        h.push("Expires", expires.to_string());
        if let Some(a) = auth {
            h.push("Authorization", a);
        }
        let req = Request {
            method: Method::Register,
            uri: "sip:switchboard".into(),
            headers: h,
            body: Bytes::new(),
        };
        let flow = self.server();
        self.register_tx = self.ep.send_request(now, flow, req).ok();
    }

    /// An SDP offer from this phone (PCMU, PCMA, telephone-event).
    pub fn sdp(&self) -> String {
        let ip = match self.addr.ip() {
            std::net::IpAddr::V4(v4) => v4,
            _ => Ipv4Addr::LOCALHOST,
        };
        pbx::media::sdp::offer_g711(1, 1, ip, 40_000)
    }

    /// Place a call to `number` with this SDP body (empty: a delayed offer). Returns its index.
    pub fn dial_with(&mut self, now: Instant, number: &str, body: &str) -> usize {
        let tag = self.token();
        let call_id = format!("{}@{}", self.token(), self.addr);
        let mut h = Headers::default();
        let from = self.from_user.clone().unwrap_or_else(|| self.user.clone());
        h.push("From", format!("<sip:{from}@switchboard>;tag={tag}"));
        h.push("To", format!("<sip:{number}@switchboard>"));
        h.push("Call-ID", call_id);
        h.push("CSeq", "1 INVITE");
        h.push("Contact", format!("<sip:{}@{}>", self.user, self.addr));
        if !body.is_empty() {
            h.push("Content-Type", "application/sdp");
        }
        let invite = Request {
            method: Method::Invite,
            uri: format!("sip:{number}@switchboard"),
            headers: h,
            body: Bytes::from(body.to_owned()),
        };
        let flow = self.server();
        let tx = self
            .ep
            .send_request(now, flow, invite.clone())
            .expect("INVITE sent");
        self.outgoing.push(Outgoing {
            invite,
            tx,
            state: OutState::Trying,
            dialog: None,
            authed: false,
            hung_up_here: false,
            answer: Bytes::new(),
            early_tag: None,
        });
        self.outgoing.len() - 1
    }

    /// Place a call to `number` with an ordinary offer.
    pub fn dial(&mut self, now: Instant, number: &str) -> usize {
        let sdp = self.sdp();
        self.dial_with(now, number, &sdp)
    }

    /// Hang up call `i` this phone placed: BYE when up, CANCEL while it rings.
    pub fn hang_up_outgoing(&mut self, now: Instant, i: usize) {
        let o = &mut self.outgoing[i];
        match o.state {
            OutState::Up => {
                let d = o.dialog.as_mut().expect("dialog");
                let bye = d.request(Method::Bye);
                let flow = d.flow;
                o.state = OutState::Ended;
                o.hung_up_here = true;
                if let Ok(tx) = self.ep.send_request(now, flow, bye) {
                    self.in_dialog_txs.insert(tx, Method::Bye);
                }
            }
            OutState::Trying | OutState::Ringing => {
                let tx = o.tx;
                o.hung_up_here = true;
                self.ep.cancel(now, tx);
            }
            _ => {}
        }
    }

    /// Hang up incoming call `i` (answered): BYE.
    pub fn hang_up_incoming(&mut self, now: Instant, i: usize) {
        let c = &mut self.incoming[i];
        if !matches!(c.state, InState::Answered | InState::Confirmed) {
            return;
        }
        let d = c.dialog.as_mut().expect("dialog");
        let bye = d.request(Method::Bye);
        let flow = d.flow;
        c.state = InState::Ended;
        if let Ok(tx) = self.ep.send_request(now, flow, bye) {
            self.in_dialog_txs.insert(tx, Method::Bye);
        }
    }

    /// Send a re-INVITE on incoming call `i` with this SDP (hold: `a=sendonly`).
    pub fn reinvite_incoming(&mut self, now: Instant, i: usize, sdp: String) {
        let c = &mut self.incoming[i];
        let d = c.dialog.as_mut().expect("dialog");
        let mut req = d.request(Method::Invite);
        req.headers.push("Content-Type", "application/sdp");
        req.headers
            .push("Contact", format!("<sip:{}@{}>", self.user, self.addr));
        req.body = Bytes::from(sdp);
        let flow = d.flow;
        if let Ok(tx) = self.ep.send_request(now, flow, req) {
            self.in_dialog_txs.insert(tx, Method::Invite);
        }
    }

    /// Subscribe to message-summary (or refresh, or with 0 unsubscribe).
    pub fn subscribe(&mut self, now: Instant, expires: u32) {
        let flow = self.server();
        let user = self.user.clone();
        let addr = self.addr;
        let dialog = self.sub.as_mut().and_then(|s| s.dialog.as_mut());
        let req = match dialog {
            Some(d) => {
                let mut r = d.request(Method::Subscribe);
                r.headers.push("Event", "message-summary");
                r.headers.push("Expires", expires.to_string());
                r.headers.push("Contact", format!("<sip:{user}@{addr}>"));
                r
            }
            None => {
                let tag = self.token();
                let call_id = format!("{}@{}", self.token(), self.addr);
                let mut h = Headers::default();
                h.push("From", format!("<sip:{user}@switchboard>;tag={tag}"));
                h.push("To", format!("<sip:{user}@switchboard>"));
                h.push("Call-ID", call_id);
                h.push("CSeq", "1 SUBSCRIBE");
                h.push("Event", "message-summary");
                h.push("Accept", "application/simple-message-summary");
                h.push("Expires", expires.to_string());
                h.push("Contact", format!("<sip:{user}@{addr}>"));
                Request {
                    method: Method::Subscribe,
                    uri: format!("sip:{user}@switchboard"),
                    headers: h,
                    body: Bytes::new(),
                }
            }
        };
        let tx = self.ep.send_request(now, flow, req.clone()).ok();
        let sub = self.sub.get_or_insert_with(|| Sub {
            tx: None,
            request: req.clone(),
            dialog: None,
            authed: false,
            status: None,
            notifies: Vec::new(),
            forget: false,
        });
        sub.tx = tx;
        sub.request = req;
        sub.status = None;
    }

    /// Send a SIP INFO on outgoing call `i` (a key as `application/dtmf-relay`, say).
    pub fn info_outgoing(&mut self, now: Instant, i: usize, content_type: &str, body: &str) {
        let o = &mut self.outgoing[i];
        let d = o.dialog.as_mut().expect("dialog");
        let mut req = d.request(Method::Info);
        req.headers.push("Content-Type", content_type);
        req.body = Bytes::from(body.to_owned());
        let flow = d.flow;
        if let Ok(tx) = self.ep.send_request(now, flow, req) {
            self.in_dialog_txs.insert(tx, Method::Info);
        }
    }

    /// Send a REFER on incoming call `i` (the agent transfers the caller to `target`, a
    /// number); the NOTIFYs that report it land in `refer_notifies`.
    pub fn refer_incoming(&mut self, now: Instant, i: usize, target: &str) {
        self.refer_incoming_to(now, i, &format!("<sip:{target}@switchboard>"));
    }

    /// Send a REFER on incoming call `i` with this Refer-To value.
    pub fn refer_incoming_to(&mut self, now: Instant, i: usize, refer_to: &str) {
        let c = &mut self.incoming[i];
        let d = c.dialog.as_mut().expect("dialog");
        let mut req = d.request(Method::Refer);
        req.headers.push("Refer-To", refer_to.to_owned());
        req.headers
            .push("Contact", format!("<sip:{}@{}>", self.user, self.addr));
        let flow = d.flow;
        if let Ok(tx) = self.ep.send_request(now, flow, req) {
            self.in_dialog_txs.insert(tx, Method::Refer);
        }
    }

    /// Send REFER with this Refer-To in outgoing call `o`'s dialog.
    pub fn refer_outgoing_to(&mut self, now: Instant, o: usize, refer_to: &str) {
        let d = self.outgoing[o].dialog.as_mut().expect("dialog");
        let mut req = d.request(Method::Refer);
        req.headers.push("Refer-To", refer_to.to_owned());
        req.headers
            .push("Contact", format!("<sip:{}@{}>", self.user, self.addr));
        let flow = d.flow;
        if let Ok(tx) = self.ep.send_request(now, flow, req) {
            self.in_dialog_txs.insert(tx, Method::Refer);
        }
    }

    /// The server's tag in outgoing call `o` while it rings (from a provisional answer).
    pub fn early_to_tag(&self, o: usize) -> Option<String> {
        self.outgoing[o].early_tag.clone()
    }

    /// Send an UPDATE without a body on incoming call `i` (a session refresh, RFC 4028).
    pub fn refresh_incoming(&mut self, now: Instant, i: usize) {
        let c = &mut self.incoming[i];
        let d = c.dialog.as_mut().expect("dialog");
        let mut req = d.request(Method::Update);
        req.headers
            .push("Contact", format!("<sip:{}@{}>", self.user, self.addr));
        let flow = d.flow;
        if let Ok(tx) = self.ep.send_request(now, flow, req) {
            self.in_dialog_txs.insert(tx, Method::Update);
        }
    }

    /// The incoming call that is up (answered or confirmed), if any.
    pub fn talking(&self) -> Option<usize> {
        self.incoming
            .iter()
            .position(|c| matches!(c.state, InState::Answered | InState::Confirmed))
    }

    /// Incoming calls still ringing.
    pub fn ringing(&self) -> usize {
        self.incoming
            .iter()
            .filter(|c| c.state == InState::Ringing)
            .count()
    }

    fn answer(&mut self, now: Instant, i: usize) {
        let sdp = self.sdp();
        let user = self.user.clone();
        let contact = format!("<sip:{user}@{}>", self.addr);
        let c = &mut self.incoming[i];
        if c.state != InState::Ringing {
            return;
        }
        c.answer_at = None;
        let mut h = Headers::default();
        h.push("Contact", contact);
        h.push("Content-Type", "application/sdp");
        if self
            .ep
            .respond_tagged(now, c.tx, 200, Some(&c.tag), h, Bytes::from(sdp))
            .is_ok()
        {
            c.state = InState::Answered;
            c.dialog = Dialog::uas(&c.invite, &c.tag, udp(addr(SERVER))).ok();
        }
    }

    fn due(&self) -> Option<Instant> {
        let answers = self.incoming.iter().filter_map(|c| c.answer_at).min();
        match (answers, self.ep.poll_timeout()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    fn on_time(&mut self, now: Instant) {
        if self.ep.poll_timeout().is_some_and(|t| t <= now) {
            self.ep.handle_timeout(now);
        }
        let due: Vec<usize> = self
            .incoming
            .iter()
            .enumerate()
            .filter(|(_, c)| c.answer_at.is_some_and(|t| t <= now))
            .map(|(i, _)| i)
            .collect();
        for i in due {
            self.answer(now, i);
        }
    }

    fn on_event(&mut self, now: Instant, ev: SipEvent) {
        match ev {
            SipEvent::Request {
                tx,
                request,
                caller,
                ..
            } => {
                self.callers.push(caller);
                self.on_request(now, tx, request)
            }
            SipEvent::Binding(change) => self.bindings.push(format!("{change:?}")),
            SipEvent::Ack { request, .. } => {
                let call_id = request.headers.get("Call-ID").unwrap_or_default();
                for c in &mut self.incoming {
                    if c.state == InState::Answered
                        && c.invite.headers.get("Call-ID") == Some(call_id)
                    {
                        c.state = InState::Confirmed;
                    }
                }
            }
            SipEvent::Cancelled { tx } => {
                for c in &mut self.incoming {
                    if c.tx == tx && c.state == InState::Ringing {
                        c.state = InState::Cancelled;
                        c.answer_at = None;
                    }
                }
            }
            SipEvent::Response { tx, response } => self.on_response(now, tx, response),
            SipEvent::Timeout { tx } => {
                for o in &mut self.outgoing {
                    if o.tx == tx && matches!(o.state, OutState::Trying | OutState::Ringing) {
                        o.state = OutState::Failed(408);
                    }
                }
                if let Some(m) = self.in_dialog_txs.remove(&tx) {
                    self.in_dialog_answers.push((m, 408));
                }
            }
            _ => {}
        }
    }

    fn on_request(&mut self, now: Instant, tx: TxId, req: Request) {
        let call_id = req.headers.get("Call-ID").unwrap_or_default().to_owned();
        if to_tag(&req.headers).is_none() && req.method == Method::Invite {
            let tag = self.token();
            self.incoming.push(Incoming {
                tx,
                invite: req,
                tag: tag.clone(),
                state: InState::Ringing,
                answer_at: None,
                dialog: None,
            });
            let i = self.incoming.len() - 1;
            let (status, answer_at, state) = match self.policy {
                Policy::Answer(after) => (180, Some(now + after), InState::Ringing),
                Policy::Ignore => (180, None, InState::Ringing),
                Policy::Reject(status) => (status, None, InState::Rejected),
            };
            let _ = self.ep.respond_tagged(
                now,
                tx,
                status,
                Some(&tag),
                Headers::default(),
                Bytes::new(),
            );
            self.incoming[i].answer_at = answer_at;
            self.incoming[i].state = state;
            return;
        }
        if let Some(sub) = self.sub.as_mut().filter(|s| {
            req.method == Method::Notify
                && s.request.headers.get("Call-ID") == Some(call_id.as_str())
        }) {
            sub.notifies.push((
                req.headers
                    .get("Subscription-State")
                    .unwrap_or_default()
                    .to_owned(),
                String::from_utf8_lossy(&req.body).into_owned(),
            ));
            let status = if sub.forget { 481 } else { 200 };
            let _ = self
                .ep
                .respond_tagged(now, tx, status, None, Headers::default(), Bytes::new());
            return;
        }
        if req.method == Method::Notify && to_tag(&req.headers).is_none() {
            // An unsolicited NOTIFY (message waiting).
            self.notifies
                .push(String::from_utf8_lossy(&req.body).into_owned());
            let _ = self
                .ep
                .respond_tagged(now, tx, 200, None, Headers::default(), Bytes::new());
            return;
        }
        if req.method == Method::Notify
            && req
                .headers
                .get("Event")
                .is_some_and(|e| e.starts_with("refer"))
        {
            self.refer_notifies
                .push(String::from_utf8_lossy(&req.body).trim().to_owned());
        }
        // In a dialog.
        let mut status = 481;
        let mut body = Bytes::new();
        for c in &mut self.incoming {
            if c.invite.headers.get("Call-ID") == Some(call_id.as_str())
                && matches!(c.state, InState::Answered | InState::Confirmed)
            {
                status = 200;
                if req.method == Method::Bye {
                    c.state = InState::Ended;
                }
            }
        }
        for o in &mut self.outgoing {
            if o.invite.headers.get("Call-ID") == Some(call_id.as_str()) && o.state == OutState::Up
            {
                status = 200;
                if req.method == Method::Bye {
                    o.state = OutState::Ended;
                }
            }
        }
        let mut h = Headers::default();
        if status == 200 && req.method == Method::Invite {
            body = Bytes::from(self.sdp());
            h.push("Content-Type", "application/sdp");
            h.push("Contact", format!("<sip:{}@{}>", self.user, self.addr));
        }
        let _ = self.ep.respond_tagged(now, tx, status, None, h, body);
    }

    fn on_response(&mut self, now: Instant, tx: TxId, resp: Response) {
        if self.register_tx == Some(tx) {
            if resp.status == 401 {
                let ch = resp
                    .headers
                    .get("WWW-Authenticate")
                    .unwrap_or_default()
                    .to_owned();
                let user = self.user.clone();
                let auth = digest(&ch, &user, &password(&user), "REGISTER", "sip:switchboard");
                let expires = self.register_expires;
                self.register(now, expires, Some(auth));
            } else if resp.status >= 200 {
                self.register_tx = None;
                self.registered = resp.status < 300 && self.register_expires > 0;
            }
            return;
        }
        if let Some(sub) = self.sub.as_mut().filter(|s| s.tx == Some(tx)) {
            if resp.status == 407 && !sub.authed {
                let ch = resp
                    .headers
                    .get("Proxy-Authenticate")
                    .unwrap_or_default()
                    .to_owned();
                let user = self.user.clone();
                let mut req = sub.request.clone();
                req.headers.0.retain(|h| h.name != "CSeq");
                req.headers.push("CSeq", "2 SUBSCRIBE");
                let uri = req.uri.clone();
                req.headers.push(
                    "Proxy-Authorization",
                    digest(&ch, &user, &password(&user), "SUBSCRIBE", &uri),
                );
                sub.authed = true;
                sub.request = req.clone();
                let flow = udp(addr(SERVER));
                sub.tx = self.ep.send_request(now, flow, req).ok();
                return;
            }
            if resp.status >= 200 {
                sub.status = Some(resp.status);
                if (200..300).contains(&resp.status) && sub.dialog.is_none() {
                    sub.dialog = Dialog::uac(&sub.request, &resp, udp(addr(SERVER))).ok();
                }
            }
            return;
        }
        if let Some(m) = self.in_dialog_txs.get(&tx).cloned() {
            if resp.status >= 200 {
                self.in_dialog_txs.remove(&tx);
                self.in_dialog_answers.push((m, resp.status));
            }
            return;
        }
        let Some(i) = self.outgoing.iter().position(|o| o.tx == tx) else {
            // A retransmitted 2xx of a call already up: ACK it again.
            if (200..300).contains(&resp.status) {
                let call_id = resp.headers.get("Call-ID").unwrap_or_default();
                if let Some(o) = self
                    .outgoing
                    .iter()
                    .find(|o| o.invite.headers.get("Call-ID") == Some(call_id))
                {
                    if let Some(d) = &o.dialog {
                        let ack = d.ack(cseq(&o.invite.headers));
                        self.ep.send_stateless_request(now, d.flow, ack);
                    }
                }
            }
            return;
        };
        let status = resp.status;
        if status < 200 {
            if self.outgoing[i].state == OutState::Trying && status > 100 {
                self.outgoing[i].state = OutState::Ringing;
            }
            if let Some(t) = to_tag(&resp.headers) {
                self.outgoing[i].early_tag = Some(t);
            }
            return;
        }
        if status == 407 && !self.outgoing[i].authed {
            // Again, with credentials.
            let ch = resp
                .headers
                .get("Proxy-Authenticate")
                .unwrap_or_default()
                .to_owned();
            let user = self.user.clone();
            let o = &mut self.outgoing[i];
            let uri = o.invite.uri.clone();
            let mut invite = o.invite.clone();
            invite.headers.0.retain(|h| h.name != "CSeq");
            invite.headers.push("CSeq", "2 INVITE");
            invite.headers.push(
                "Proxy-Authorization",
                digest(&ch, &user, &password(&user), "INVITE", &uri),
            );
            let flow = self.server();
            let tx = self
                .ep
                .send_request(now, flow, invite.clone())
                .expect("sent");
            let o = &mut self.outgoing[i];
            o.invite = invite;
            o.tx = tx;
            o.authed = true;
            return;
        }
        let o = &mut self.outgoing[i];
        if status >= 300 {
            o.state = OutState::Failed(status);
            return;
        }
        // 2xx: ACK (with our answer when the INVITE had no offer).
        if let Ok(d) = Dialog::uac(&o.invite, &resp, udp(addr(SERVER))) {
            let mut ack = d.ack(cseq(&o.invite.headers));
            if o.invite.body.is_empty() {
                let ip = match self.addr.ip() {
                    std::net::IpAddr::V4(v4) => v4,
                    _ => Ipv4Addr::LOCALHOST,
                };
                ack.headers.push("Content-Type", "application/sdp");
                ack.body = Bytes::from(pbx::media::sdp::offer_g711(1, 1, ip, 40_000));
            }
            let flow = d.flow;
            let o = &mut self.outgoing[i];
            o.answer = resp.body.clone();
            if o.hung_up_here {
                // Answered while our CANCEL crossed it: ACK, then BYE.
                let mut d = d;
                self.ep.send_stateless_request(now, flow, ack);
                let bye = d.request(Method::Bye);
                let _ = self.ep.send_request(now, flow, bye);
                self.outgoing[i].state = OutState::Ended;
                return;
            }
            o.state = OutState::Up;
            o.dialog = Some(d);
            self.ep.send_stateless_request(now, flow, ack);
        }
    }
}

/// A phone's message-summary subscription.
#[derive(Debug)]
pub struct Sub {
    tx: Option<TxId>,
    request: Request,
    dialog: Option<Dialog>,
    authed: bool,
    /// The final answer to the latest SUBSCRIBE.
    pub status: Option<u16>,
    /// (Subscription-State, body) of each NOTIFY.
    pub notifies: Vec<(String, String)>,
    /// Answer NOTIFYs 481, as a phone that forgot the subscription.
    pub forget: bool,
}

/// A media session as the fake relay keeps it.
#[derive(Debug, Clone)]
pub struct FakeSession {
    pub ports: MediaPorts,
    /// Where each leg's RTP goes (from SDP), and whether that peer sends.
    pub remote: [Option<SocketAddr>; 3],
    /// The host each leg's signalling comes from (RTP from there is learned quickly).
    pub host: [Option<std::net::IpAddr>; 3],
    pub bridged: bool,
    /// What each leg hears from the relay's player: prompt names, then the loop (if any).
    pub playing: [Option<(Vec<String>, Option<String>)>; 3],
    pub tap: bool,
    /// The supervisor leg's port, while one is attached.
    pub supervisor: Option<u16>,
    /// How the supervisor monitors.
    pub monitor: MonitorMode,
    /// The caller's and the agent's legs as WebRTC (a browser), if so.
    pub webrtc: [Option<WebRtcParams>; 2],
    /// The caller's and the agent's legs as SDES-SRTP, if so.
    pub sdes: [Option<SdesKeys>; 2],
}

/// The fake media relay: ports from a pool, sessions as data, events injected by tests.
#[derive(Debug, Default)]
pub struct FakeMedia {
    pub open: BTreeMap<u64, FakeSession>,
    free: Vec<u16>,
    /// Open requests answered with "no ports" while this is above zero.
    pub refuse_opens: usize,
    pub opened: usize,
    pub closed: usize,
    pub recordings: Vec<String>,
}

impl FakeMedia {
    fn new(pairs: u16) -> FakeMedia {
        FakeMedia {
            free: (0..pairs).rev().map(|i| 20_000 + i * 4).collect(),
            ..Default::default()
        }
    }

    fn handle(&mut self, id: SessionId, req: MediaRequest) -> Option<MediaInput> {
        match req {
            MediaRequest::Open => {
                assert!(
                    !self.open.contains_key(&id.0),
                    "session {id:?} opened twice"
                );
                let ports = if self.refuse_opens > 0 {
                    self.refuse_opens -= 1;
                    None
                } else {
                    self.free.pop().map(|p| MediaPorts {
                        addr: Ipv4Addr::new(10, 0, 0, 1),
                        caller: p,
                        agent: p + 2,
                    })
                };
                if let Some(p) = ports {
                    self.opened += 1;
                    self.open.insert(
                        id.0,
                        FakeSession {
                            ports: p,
                            remote: [None, None, None],
                            host: [None, None, None],
                            bridged: false,
                            playing: [None, None, None],
                            tap: false,
                            supervisor: None,
                            monitor: MonitorMode::Off,
                            webrtc: [None, None],
                            sdes: [None, None],
                        },
                    );
                }
                Some(MediaInput::Opened { session: id, ports })
            }
            MediaRequest::Command(cmd) => {
                let s = self.open.get_mut(&id.0)?;
                match cmd {
                    SessionCommand::Remote { leg, rtp, host, .. } => {
                        s.remote[leg_index(leg)] = rtp;
                        s.host[leg_index(leg)] = host;
                    }
                    SessionCommand::Bridge(on) => s.bridged = on,
                    SessionCommand::Play { leg, prompts, then } => {
                        s.playing[leg_index(leg)] = Some((
                            prompts.iter().map(|p| p.name().to_owned()).collect(),
                            then.map(|p| p.name().to_owned()),
                        ))
                    }
                    SessionCommand::Stop(leg) => s.playing[leg_index(leg)] = None,
                    SessionCommand::WebRtc { leg, params } => s.webrtc[leg_index(leg)] = params,
                    SessionCommand::Sdes { leg, keys } => s.sdes[leg_index(leg)] = keys,
                    SessionCommand::Tap(_) => panic!("call control sent a tap channel"),
                    SessionCommand::Monitor(m) => {
                        assert!(
                            s.supervisor.is_some(),
                            "monitoring without a supervisor leg"
                        );
                        s.monitor = m;
                    }
                    SessionCommand::DetachSupervisor => {
                        s.supervisor = None;
                        s.monitor = MonitorMode::Off;
                        s.remote[2] = None;
                        s.host[2] = None;
                    }
                }
                None
            }
            MediaRequest::Tap(on) => {
                if let Some(s) = self.open.get_mut(&id.0) {
                    s.tap = on;
                }
                None
            }
            MediaRequest::AttachSupervisor => {
                let port = self.open.get_mut(&id.0).and_then(|s| {
                    if s.supervisor.is_some() {
                        return None;
                    }
                    s.supervisor = Some(s.ports.caller + 40_000);
                    s.supervisor
                });
                Some(MediaInput::SupervisorAttached { session: id, port })
            }
            MediaRequest::Close => {
                if let Some(s) = self.open.remove(&id.0) {
                    self.free.push(s.ports.caller);
                    self.closed += 1;
                }
                Some(MediaInput::Closed {
                    session: id,
                    totals: MediaTotals::default(),
                })
            }
        }
    }
}

fn leg_index(leg: Leg) -> usize {
    match leg {
        Leg::Caller => 0,
        Leg::Agent => 1,
        Leg::Supervisor => 2,
    }
}

/// The whole contact center.
pub struct World {
    pub now: Instant,
    t0: Instant,
    wall0: SystemTime,
    pub server: Endpoint,
    pub locations: Locations,
    pub control: CallControl,
    pub acd: acd::Acd,
    pub media: FakeMedia,
    pub phones: Vec<Phone>,
    /// Datagrams on their way: (arrival, sequence) -> (from, to, bytes).
    wire: BTreeMap<(Instant, u64), (SocketAddr, SocketAddr, Bytes)>,
    wire_seq: u64,
    /// Reports of the ACD (for tests that look at them).
    pub acd_reports: Vec<AcdReport>,
    /// Queue-log events, as Asterisk-style event names.
    pub queue_log: Vec<String>,
    /// Call records, in the order calls ended.
    pub records: Vec<pbx::record::CallRecord>,
    /// Agent state changes.
    pub agent_log: Vec<pbx::record::AgentStateChange>,
    /// Voicemail status changes call control asked for.
    pub vm_status: Vec<VoicemailRequest>,
    /// Messages whose audio "cannot be read".
    pub unreadable: Vec<u64>,
    /// What call control asked the store to keep about callbacks.
    pub callbacks: Vec<CallbackRequest>,
}

impl World {
    /// Call control over `cfg`, phones for `users` (registered, ready), and a carrier.
    pub fn new(cfg: PbxConfig, users: &[&str]) -> World {
        World::new_at(
            cfg,
            users,
            SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000),
        )
    }

    /// Like [`World::new`], with the wall clock starting at `wall0`.
    pub fn new_at(cfg: PbxConfig, users: &[&str], wall0: SystemTime) -> World {
        let t0 = Instant::now();
        let (engine, queues, agents) = pbx::control::build_acd(&cfg, cfg.seed).unwrap();
        let locations: Locations = Arc::new(Default::default());
        let control = CallControl::new(
            cfg,
            true,
            locations.clone(),
            &queues,
            &agents,
            Now {
                instant: t0,
                wall: wall0,
            },
        );
        let startup = control.startup_commands();
        let mut w = World {
            now: t0,
            t0,
            wall0,
            server: server_endpoint(t0),
            locations,
            control,
            acd: engine,
            media: FakeMedia::new(200),
            phones: Vec::new(),
            wire: BTreeMap::new(),
            wire_seq: 0,
            acd_reports: Vec::new(),
            queue_log: Vec::new(),
            records: Vec::new(),
            agent_log: Vec::new(),
            vm_status: Vec::new(),
            unreadable: Vec::new(),
            callbacks: Vec::new(),
        };
        for r in startup {
            w.send_acd(r);
        }
        w.add_phone_at("carrier", addr(CARRIER));
        for (i, u) in users.iter().enumerate() {
            let p = w.add_phone(u, i);
            w.register(p);
        }
        w.run_for(Duration::from_millis(200));
        w
    }

    /// The time as call control's inputs take it.
    pub fn now_input(&self) -> Now {
        self.clock()
    }

    fn clock(&self) -> Now {
        Now {
            instant: self.now,
            wall: self.wall0 + (self.now - self.t0),
        }
    }

    /// A phone of `user` (not registered yet); the `n`th phone of the world gets 10.0.1.n.
    pub fn add_phone(&mut self, user: &str, n: usize) -> usize {
        let at = SocketAddr::from(([10, 0, 1, (n + 10) as u8], 5060));
        self.add_phone_at(user, at)
    }

    pub fn add_phone_at(&mut self, user: &str, at: SocketAddr) -> usize {
        let seed = self.phones.len() as u64 + 100;
        self.phones.push(Phone::new(user, at, seed, self.now));
        self.phones.len() - 1
    }

    /// The carrier (phone 0): customers' calls come from it.
    pub fn carrier(&mut self) -> &mut Phone {
        &mut self.phones[0]
    }

    /// The phone of `user` (the first one if it has several).
    pub fn phone(&mut self, user: &str) -> &mut Phone {
        let i = self.phone_index(user);
        &mut self.phones[i]
    }

    pub fn phone_index(&self, user: &str) -> usize {
        self.phones
            .iter()
            .position(|p| p.user == user)
            .unwrap_or_else(|| panic!("no phone for {user}"))
    }

    pub fn register(&mut self, phone: usize) {
        let now = self.now;
        self.phones[phone].register(now, 3600, None);
    }

    pub fn unregister(&mut self, phone: usize) {
        let now = self.now;
        self.phones[phone].register(now, 0, None);
    }

    /// A customer calls `number` through the carrier; the index of the call on the carrier.
    pub fn customer_calls(&mut self, number: &str) -> usize {
        let now = self.now;
        self.phones[0].dial(now, number)
    }

    /// A customer calls the queue on 600 and an agent answers; (the customer's call on the
    /// carrier, the agent's phone, the call on that phone), a second into the conversation.
    pub fn customer_talks(&mut self) -> (usize, usize, usize) {
        let call = self.customer_calls("600");
        self.run_until(Duration::from_secs(5), "an agent answers", |w| {
            w.phones[1..].iter().any(|p| p.talking().is_some())
        });
        self.run_for(Duration::from_secs(1));
        let agent = self
            .phones
            .iter()
            .position(|p| p.talking().is_some())
            .expect("an agent talking");
        let i = self.phones[agent].talking().expect("its call");
        (call, agent, i)
    }

    /// The state of agent `user` as call control last heard it from the ACD.
    pub fn agent_state(&self, user: &str) -> Option<AgentState> {
        self.control
            .agent_states()
            .into_iter()
            .find(|(u, _)| u == user)
            .map(|(_, s)| s)
    }

    /// Callers waiting in the ACD, over all queues.
    pub fn waiting(&self) -> usize {
        (0..self.acd.queue_count())
            .map(|q| self.acd.waiting_calls(acd::QueueId(q as u32)).count())
            .sum()
    }

    /// Apply a reloaded configuration.
    pub fn reload(&mut self, cfg: PbxConfig) {
        self.control.reload(cfg);
        self.pump();
    }

    /// The store took a voicemail message.
    pub fn message_stored(&mut self, m: pbx::Message) {
        let now = self.clock();
        self.control.on_voicemail(now, VoicemailInput::Stored(m));
        // NOTIFYs reach the phones.
        self.run_for(Duration::from_millis(100));
    }

    /// Inject a media event (DTMF, a silent leg) into call `session`.
    pub fn media_event(&mut self, session: u64, kind: MediaEventKind) {
        let now = self.clock();
        self.control.on_media(
            now,
            MediaInput::Event(MediaEvent {
                session: SessionId(session),
                kind,
            }),
        );
        self.pump();
    }

    fn send_acd(&mut self, r: AcdRequest) {
        let now = Time::from(self.now - self.t0);
        let mut out = Vec::new();
        acd_task::apply(&mut self.acd, now, r, &mut out);
        self.acd_drain(out);
    }

    fn acd_drain(&mut self, mut out: Vec<AcdReport>) {
        let log = &mut self.queue_log;
        acd_task::drain(&mut self.acd, &mut out, |q| log.push(format!("{:?}", q)));
        for r in out {
            self.acd_reports.push(r.clone());
            let now = self.clock();
            self.control.on_acd(now, r);
        }
    }

    /// Move every message, event and output until nothing is left to do at this instant.
    pub fn pump(&mut self) {
        loop {
            let mut busy = false;
            while let Some(t) = self.server.poll_transmit() {
                busy = true;
                self.send(addr(SERVER), t.flow.remote, t.payload);
            }
            while let Some(ev) = self.server.poll_event() {
                busy = true;
                if let SipEvent::Binding(change) = &ev {
                    sip_transport::publish_location(&self.server, &self.locations, change);
                }
                let now = self.clock();
                self.control.on_sip(now, ev);
            }
            while let Some(o) = self.control.poll_output() {
                busy = true;
                match o {
                    Output::Sip(cmd) => {
                        if let Some(tx) = sip_transport::apply(&mut self.server, self.now, cmd) {
                            let now = self.clock();
                            self.control.on_sip(now, SipEvent::Timeout { tx });
                        }
                    }
                    Output::Acd(r) => self.send_acd(r),
                    Output::Media(id, req) => {
                        if let Some(answer) = self.media.handle(id, req) {
                            let now = self.clock();
                            self.control.on_media(now, answer);
                        }
                    }
                    Output::Recording(r) => self.media.recordings.push(match r {
                        RecordingRequest::Start { call, .. } => format!("start {call}"),
                        RecordingRequest::Pause { call, .. } => format!("pause {call}"),
                        RecordingRequest::Resume { call, .. } => format!("resume {call}"),
                        RecordingRequest::Stop { call, .. } => format!("stop {call}"),
                    }),
                    Output::Record(r) => self.records.push(*r),
                    Output::AgentState(s) => self.agent_log.push(s),
                    Output::Voicemail(VoicemailRequest::Load { call, message, .. }) => {
                        // The message's audio: a tone named after it (or nothing, for a
                        // message the test marked unreadable).
                        let audio = (!self.unreadable.contains(&message)).then(|| {
                            Prompt::tone(
                                &format!("message-{message}"),
                                500.0,
                                Duration::from_secs(4),
                                1000,
                            )
                        });
                        let now = self.clock();
                        self.control.on_voicemail(
                            now,
                            VoicemailInput::Loaded {
                                call,
                                message,
                                audio,
                            },
                        );
                    }
                    Output::Voicemail(status) => self.vm_status.push(status),
                    Output::Callback(c) => self.callbacks.push(c),
                }
            }
            for i in 0..self.phones.len() {
                let now = self.now;
                while let Some(t) = self.phones[i].ep.poll_transmit() {
                    busy = true;
                    let from = self.phones[i].addr;
                    self.send(from, t.flow.remote, t.payload);
                }
                while let Some(ev) = self.phones[i].ep.poll_event() {
                    busy = true;
                    self.phones[i].on_event(now, ev);
                }
            }
            if !busy {
                break;
            }
        }
    }

    fn send(&mut self, from: SocketAddr, to: SocketAddr, payload: Bytes) {
        self.wire_seq += 1;
        self.wire
            .insert((self.now + DELAY, self.wire_seq), (from, to, payload));
    }

    fn next_due(&self) -> Option<Instant> {
        let acd = self
            .acd
            .poll_timeout()
            .map(|t| self.t0 + Duration::from_micros(t.as_micros()));
        [
            self.wire.keys().next().map(|(t, _)| *t),
            self.server.poll_timeout(),
            self.control.poll_timeout(),
            acd,
        ]
        .into_iter()
        .chain(self.phones.iter().map(|p| p.due()))
        .flatten()
        .min()
    }

    /// Do everything that is due at `self.now`.
    fn fire(&mut self) {
        let now = self.now;
        while let Some(entry) = self.wire.first_entry() {
            if entry.key().0 > now {
                break;
            }
            let (from, to, bytes) = entry.remove();
            if to == addr(SERVER) {
                let transport = self
                    .phones
                    .iter()
                    .find(|p| p.addr == from)
                    .map_or(Transport::Udp, |p| p.transport);
                let flow = Flow {
                    transport,
                    remote: from,
                    conn: None,
                };
                self.server.handle_message(now, flow, &bytes);
            } else if let Some(p) = self.phones.iter_mut().find(|p| p.addr == to) {
                p.ep.handle_message(now, udp(from), &bytes);
            }
            self.pump();
        }
        if self.server.poll_timeout().is_some_and(|t| t <= now) {
            self.server.handle_timeout(now);
        }
        if self.control.poll_timeout().is_some_and(|t| t <= now) {
            let c = self.clock();
            self.control.on_timeout(c);
        }
        let acd_now = Time::from(now - self.t0);
        if self.acd.poll_timeout().is_some_and(|t| t <= acd_now) {
            self.acd.handle_timeout(acd_now);
            self.acd_drain(Vec::new());
        }
        for p in &mut self.phones {
            p.on_time(now);
        }
        self.pump();
    }

    /// Run for `d` of virtual time.
    pub fn run_for(&mut self, d: Duration) {
        let end = self.now + d;
        self.pump();
        loop {
            self.fire();
            match self.next_due() {
                Some(t) if t <= end => self.now = t.max(self.now),
                _ => break,
            }
        }
        self.now = end;
        self.fire();
    }

    /// Run until `cond` holds (checked after every step), at most `limit` of virtual time.
    /// Panics with `what` when it does not.
    pub fn run_until(&mut self, limit: Duration, what: &str, cond: impl Fn(&World) -> bool) {
        let end = self.now + limit;
        self.pump();
        loop {
            self.fire();
            if cond(self) {
                return;
            }
            match self.next_due() {
                Some(t) if t <= end => self.now = t.max(self.now),
                _ => break,
            }
        }
        self.now = end;
        self.fire();
        assert!(cond(self), "{what}: not within {limit:?} of virtual time");
    }

    /// Every phone hangs up what it has, time passes, and nothing may be left over: no call,
    /// no dialog, no transaction, no timer but the ones that forget cancelled INVITEs, no
    /// media session, no caller in the ACD, and every agent with a phone is ready.
    pub fn assert_settles(&mut self) {
        let now = self.now;
        for p in &mut self.phones {
            for i in 0..p.outgoing.len() {
                p.hang_up_outgoing(now, i);
            }
            for i in 0..p.incoming.len() {
                p.hang_up_incoming(now, i);
            }
        }
        self.run_for(Duration::from_secs(120));
        let held = self.control.held();
        assert_eq!(
            held,
            pbx::Held::default(),
            "call control still holds something"
        );
        assert!(
            self.media.open.is_empty(),
            "media sessions left open: {:?}",
            self.media.open.keys()
        );
        assert_eq!(
            self.media.opened, self.media.closed,
            "ports not all returned"
        );
        // One record per call that got going, each a different call.
        assert_eq!(
            self.records.len(),
            self.media.opened,
            "a call record per call"
        );
        let ids: std::collections::BTreeSet<u64> = self.records.iter().map(|r| r.call_id).collect();
        assert_eq!(ids.len(), self.records.len(), "one record per call");
        for r in &self.records {
            assert!(r.arrived <= r.ended, "{r:?}");
            assert!(
                r.attempts
                    .iter()
                    .all(|a| a.result != pbx::record::RingResult::Ringing && a.ended.is_some()),
                "every phone rung has its result: {r:?}"
            );
            // One phone answers each offer (the others are cancelled); a call answered
            // more than once was transferred or called back, each answer a new offer.
            let answered: Vec<_> = r
                .attempts
                .iter()
                .filter(|a| a.result == pbx::record::RingResult::Answered)
                .map(|a| a.started)
                .collect();
            let offers: std::collections::BTreeSet<_> = answered.iter().collect();
            assert_eq!(
                offers.len(),
                answered.len(),
                "two phones answered one offer: {r:?}"
            );
            if !r.callback {
                assert_eq!(
                    !answered.is_empty(),
                    r.answered.is_some(),
                    "an answered call has an answered phone, an unanswered one none: {r:?}"
                );
            }
        }
        assert_eq!(self.waiting(), 0, "callers left in the ACD");
        for p in &self.phones {
            for (i, c) in p.incoming.iter().enumerate() {
                assert!(
                    matches!(
                        c.state,
                        InState::Ended | InState::Cancelled | InState::Rejected
                    ),
                    "{} incoming call {i} left {:?}",
                    p.user,
                    c.state
                );
            }
            for (i, o) in p.outgoing.iter().enumerate() {
                assert!(
                    matches!(o.state, OutState::Ended | OutState::Failed(_)),
                    "{} outgoing call {i} left {:?}",
                    p.user,
                    o.state
                );
            }
        }
        for (user, state) in self.control.agent_states() {
            let registered = self.phones.iter().any(|p| p.user == user && p.registered);
            match (&state, registered) {
                (AgentState::Ready, true) => {}
                (AgentState::NotReady(r), false) if r.as_str() == "no-phone" => {}
                (AgentState::LoggedOut, _) | (AgentState::NotReady(_), _) => {}
                other => panic!("agent {user} left in {other:?}"),
            }
        }
    }
}

/// Log in or out through the ACD directly (what a feature code does).
pub fn acd_login(w: &mut World, id: acd::AgentId) {
    w.send_acd(AcdRequest::Command(AcdCommand::Login(id)));
    w.pump();
}
