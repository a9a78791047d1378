//! One phone's SIP side, sans-IO: registration (digest, refreshed), one call at a time
//! placed or answered, hold and resume, blind transfer (REFER), the other side's new offers,
//! NAT keep-alives. It never touches a socket or the clock: the driver hands it the time,
//! the [`SipEvent`]s that belong to it and the user's [`Command`]s, and it sends through the
//! `sip::Endpoint` it is given (several phones may share one, as the load mode does).
//!
//! ```no_run
//! # use std::time::Instant;
//! # use softphone::ua::{Phone, Command};
//! # fn drive(phone: &mut Phone, ep: &mut sip::Endpoint, key: Option<Command>) {
//! let now = Instant::now();
//! if let Some(cmd) = key { phone.command(now, ep, cmd); }
//! while let Some(ev) = ep.poll_event() { phone.handle(now, ep, ev); }
//! if phone.poll_timeout().is_some_and(|t| t <= now) { phone.handle_timeout(now, ep); }
//! while let Some(ev) = phone.poll_event() { /* show it, start or stop the audio */ }
//! while let Some(flow) = phone.poll_ping() { /* send "\r\n\r\n" to flow.remote */ }
//! # }
//! ```

use std::collections::VecDeque;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use bytes::Bytes;
use media::sdp::{negotiate, Direction, LocalMedia, Negotiated, SessionDescription};
use sip::endpoint::SipEvent;
use sip::header::NameAddr;
use sip::message::{Headers, Method, Request, Response};
use sip::transaction::TxId;
use sip::{Dialog, Endpoint, Flow};

/// How long to wait before trying again after the registrar refused or did not answer.
pub const REGISTER_RETRY: Duration = Duration::from_secs(30);

/// Who the phone is and where its server is.
#[derive(Debug, Clone)]
pub struct Account {
    /// SIP user (also the user part of the phone's Contact).
    pub user: String,
    /// Its password.
    pub password: String,
    /// Domain of the From/To URIs.
    pub domain: String,
    /// Where requests go (the server: registrar and proxy).
    pub server: Flow,
    /// The phone's own SIP address (written in Contact).
    pub contact: SocketAddr,
    /// The address written in SDP.
    pub media_addr: Ipv4Addr,
    /// Registration expiry asked for, seconds.
    pub expires: u32,
    /// Send a CRLF keep-alive to the server this often (NAT bindings), when set.
    pub keepalive: Option<Duration>,
}

/// What the user (or a script) asks of the phone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Register (and keep the registration refreshed).
    Register,
    /// Remove the registration.
    Unregister,
    /// Call this number; audio is to be received on `rtp_port`.
    Dial {
        /// The number or user.
        number: String,
        /// Local RTP port.
        rtp_port: u16,
    },
    /// Answer the ringing call; audio on `rtp_port`.
    Answer {
        /// Local RTP port.
        rtp_port: u16,
    },
    /// Hang up: end the call, give up the call being placed, or decline the ringing one.
    Hangup,
    /// Put the call on hold (re-INVITE, sendonly).
    Hold,
    /// Take it off hold.
    Resume,
    /// Blind transfer to this number (REFER).
    Transfer(String),
    /// Attended transfer, first step: put the call on hold and call this number (the
    /// consultation); audio on `rtp_port`.
    Consult {
        /// Who to consult.
        number: String,
        /// Local RTP port of the consultation.
        rtp_port: u16,
    },
    /// Attended transfer, second step: connect the held call with the consulted party
    /// (REFER with Replaces, RFC 3891) and leave both.
    CompleteTransfer,
    /// Take the held call back once the consultation has ended (resume it).
    Retrieve,
}

/// A call as the user sees it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CallInfo {
    /// The call's Call-ID.
    pub call_id: String,
    /// The other party's number (user part), or the number dialled.
    pub remote: String,
    /// Their display name, when given.
    pub display: Option<String>,
    /// The queue the call came through (the server's `X-Switchboard-Queue`).
    pub queue: Option<String>,
    /// Seconds the caller waited in it (`X-Switchboard-Waited`).
    pub waited_s: Option<u64>,
    /// What the caller entered in a menu before (`X-Switchboard-Entered`: `name=value;…`).
    pub entered: Option<String>,
    /// The server's id of the call (`X-Switchboard-Call`): its record in the HTTP API.
    pub record: Option<u64>,
    /// It came to us (else we placed it).
    pub incoming: bool,
}

/// Where audio goes and how it is coded, once a call is up (or moved).
#[derive(Debug, Clone, PartialEq)]
pub struct Media {
    /// What was negotiated (codec, the other side's address, its direction).
    pub negotiated: Negotiated,
    /// The phone sends audio (not on hold).
    pub sending: bool,
}

/// What happened, for the driver (start or move audio) and the user.
#[derive(Debug, Clone, PartialEq)]
pub enum PhoneEvent {
    /// The registrar accepted the registration for this many seconds.
    Registered {
        /// Seconds granted.
        expires: u64,
    },
    /// The registration was refused or not answered (tried again later).
    RegistrationFailed(String),
    /// The registration was removed.
    Unregistered,
    /// A call is ringing.
    Incoming(CallInfo),
    /// The call placed rings at the other end (or sends early media).
    Ringing,
    /// The call is up: start the audio.
    Answered(Media),
    /// The audio moved (the other side's new offer: a transfer, a take-over, its hold).
    MediaChanged(Media),
    /// The call was put on hold (`true`: stop sending) or resumed, as we asked.
    Held(bool),
    /// The call held during a consultation was taken back (resumed): its audio again.
    Retrieved(Media),
    /// The call held during a consultation ended (the other side hung up, or a transfer
    /// completed).
    HeldCallEnded {
        /// Why, in words.
        reason: String,
    },
    /// The transfer's outcome as the other side reported it (a NOTIFY's sipfrag, or the
    /// REFER's refusal).
    Transfer(u16),
    /// Something the user asked for failed; the call goes on.
    Refused(String),
    /// The call ended (or never came up).
    Ended {
        /// We hung up (or gave up).
        by_us: bool,
        /// The final status of a call refused or given up (0 when it had been up).
        status: u16,
        /// The reason phrase, or why it ended.
        reason: String,
    },
}

/// The call's signalling state.
#[derive(Debug)]
enum State {
    /// Our INVITE is out.
    Calling {
        tx: TxId,
        invite: Request,
        authed: bool,
        provisional: bool,
        /// The user hung up before any provisional answer: CANCEL on the first one.
        give_up: bool,
    },
    /// Their INVITE rings here.
    Ringing {
        tx: TxId,
        invite: Request,
        tag: String,
        flow: Flow,
    },
    /// Established.
    Up { dialog: Dialog },
}

#[derive(Debug)]
struct Call {
    info: CallInfo,
    state: State,
    local: Option<LocalMedia>,
    negotiated: Option<Negotiated>,
    held: bool,
    /// Our re-INVITE in flight: transaction, CSeq, whether it puts the call on hold.
    reinvite: Option<(TxId, u32, bool)>,
    refer: Option<TxId>,
    /// The ACKs for the 2xx of our INVITE and re-INVITEs, for their retransmissions (the
    /// last few).
    acks: Vec<(TxId, Request)>,
    /// The server transaction of the INVITE we answered (its 2xx awaits an ACK).
    answered: Option<TxId>,
    /// A hold or resume wanted while a re-INVITE was in flight (or refused with 491), and
    /// when to try it.
    want: Option<(bool, Option<Instant>)>,
}

#[derive(Debug)]
struct Registration {
    tx: Option<(TxId, Request, bool)>,
    cseq: u32,
    call_id: String,
    /// The expiry of the registration in flight (0: removing it).
    asking: u32,
    registered: bool,
    /// When to register again (refresh, or retry after a failure).
    again_at: Option<Instant>,
    /// Unregister once the REGISTER in flight is answered.
    unregister_after: bool,
}

/// One phone.
#[derive(Debug)]
pub struct Phone {
    acct: Account,
    rng: u64,
    reg: Registration,
    call: Option<Call>,
    /// The call on hold while the user consults someone (attended transfer).
    parked: Option<Call>,
    /// Calls that ended whose INVITE may still see a 2xx (a CANCEL crossing it): answered
    /// with ACK and BYE.
    gone: Vec<(TxId, Instant)>,
    /// Our BYEs still waiting for their answer.
    byes: Vec<TxId>,
    events: VecDeque<PhoneEvent>,
    sent: Vec<TxId>,
    ping_at: Option<Instant>,
    pings: VecDeque<Flow>,
}

fn cseq_of(req: &Request) -> u32 {
    req.headers
        .get("CSeq")
        .and_then(|c| c.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(1)
}

fn header_of<T: std::str::FromStr>(req: &Request, name: &str) -> Option<T> {
    req.headers.get(name).and_then(|v| v.trim().parse().ok())
}

/// The status line of a `message/sipfrag` body (`SIP/2.0 200 OK`).
fn sipfrag_status(body: &[u8]) -> Option<u16> {
    let text = std::str::from_utf8(body).ok()?;
    let line = text.lines().next()?;
    line.strip_prefix("SIP/2.0 ")?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

impl Phone {
    /// A phone for `acct`; `seed` feeds its tags and Call-IDs.
    pub fn new(acct: Account, seed: u64) -> Phone {
        let call_id = format!("reg-{}-{:016x}", acct.user, seed);
        Phone {
            acct,
            rng: seed | 1,
            reg: Registration {
                tx: None,
                cseq: 0,
                call_id,
                asking: 0,
                registered: false,
                again_at: None,
                unregister_after: false,
            },
            call: None,
            parked: None,
            gone: Vec::new(),
            byes: Vec::new(),
            events: VecDeque::new(),
            sent: Vec::new(),
            ping_at: None,
            pings: VecDeque::new(),
        }
    }

    /// The account.
    pub fn account(&self) -> &Account {
        &self.acct
    }

    /// Registered now.
    pub fn registered(&self) -> bool {
        self.reg.registered
    }

    /// The call, while there is one.
    pub fn call(&self) -> Option<&CallInfo> {
        self.call.as_ref().map(|c| &c.info)
    }

    /// The call on hold while the user consults someone.
    pub fn held_call(&self) -> Option<&CallInfo> {
        self.parked.as_ref().map(|c| &c.info)
    }

    /// The call is up (answered).
    pub fn in_call(&self) -> bool {
        matches!(
            self.call,
            Some(Call {
                state: State::Up { .. },
                ..
            })
        )
    }

    /// The call is on hold.
    pub fn held(&self) -> bool {
        self.call.as_ref().is_some_and(|c| c.held)
    }

    /// Nothing is in flight: no call, no registration transaction.
    pub fn idle(&self) -> bool {
        self.call.is_none() && self.parked.is_none() && self.reg.tx.is_none()
    }

    /// Nothing of an ended call is left in flight: no BYE unanswered, no given-up INVITE
    /// that may still be answered (a driver about to exit waits for this).
    pub fn settled(&self) -> bool {
        self.gone.is_empty() && self.byes.is_empty()
    }

    /// Client transactions started since the last call (a driver sharing one endpoint
    /// among phones maps their responses back).
    pub fn drain_sent(&mut self) -> std::vec::Drain<'_, TxId> {
        self.sent.drain(..)
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<PhoneEvent> {
        self.events.pop_front()
    }

    /// A keep-alive is due: send a double CRLF to this flow.
    pub fn poll_ping(&mut self) -> Option<Flow> {
        self.pings.pop_front()
    }

    /// When [`Phone::handle_timeout`] wants to run next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let retry = |c: &Option<Call>| c.as_ref().and_then(|c| c.want).and_then(|(_, at)| at);
        [
            self.reg.again_at,
            self.ping_at,
            retry(&self.call),
            retry(&self.parked),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Timers: registration refresh or retry, keep-alives.
    pub fn handle_timeout(&mut self, now: Instant, ep: &mut Endpoint) {
        if self.reg.again_at.is_some_and(|t| t <= now) {
            self.reg.again_at = None;
            self.register(now, ep, self.acct.expires);
        }
        if self.ping_at.is_some_and(|t| t <= now) {
            self.pings.push_back(self.acct.server);
            self.ping_at = self.acct.keepalive.map(|k| now + k);
        }
        self.gone
            .retain(|&(_, t)| now.duration_since(t) < Duration::from_secs(32));
        // A hold or resume refused with 491, tried again.
        for parked in [false, true] {
            if parked {
                std::mem::swap(&mut self.call, &mut self.parked);
            }
            let due = self
                .call
                .as_ref()
                .and_then(|c| c.want)
                .and_then(|(w, at)| at.filter(|t| *t <= now).map(|_| w));
            if let Some(w) = due {
                if let Some(c) = self.call.as_mut() {
                    c.want = None;
                }
                self.hold(now, ep, w);
            }
            if parked {
                std::mem::swap(&mut self.call, &mut self.parked);
            }
        }
    }

    fn token(&mut self) -> String {
        // xorshift64*: tags and Call-IDs only need to be unlikely to collide.
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        format!("{:016x}", self.rng.wrapping_mul(0x2545_f491_4f6c_dd1d))
    }

    fn contact(&self) -> String {
        format!(
            "<sip:{}@{}{}>",
            self.acct.user,
            self.acct.contact,
            self.acct.server.transport.uri_param()
        )
    }

    fn send(&mut self, now: Instant, ep: &mut Endpoint, flow: Flow, req: Request) -> Option<TxId> {
        match ep.send_request(now, flow, req) {
            Ok(tx) => {
                self.sent.push(tx);
                Some(tx)
            }
            Err(e) => {
                self.events
                    .push_back(PhoneEvent::Refused(format!("cannot send: {e:?}")));
                None
            }
        }
    }

    /// The user's command.
    pub fn command(&mut self, now: Instant, ep: &mut Endpoint, cmd: Command) {
        match cmd {
            Command::Register => {
                if self.ping_at.is_none() {
                    self.ping_at = self.acct.keepalive.map(|k| now + k);
                }
                self.register(now, ep, self.acct.expires);
            }
            Command::Unregister => {
                self.reg.again_at = None;
                self.ping_at = None;
                self.register(now, ep, 0);
            }
            Command::Dial { number, rtp_port } => self.dial(now, ep, number, rtp_port),
            Command::Answer { rtp_port } => self.answer(now, ep, rtp_port),
            Command::Hangup => self.hang_up(now, ep),
            Command::Hold => self.hold(now, ep, true),
            Command::Resume => self.hold(now, ep, false),
            Command::Transfer(to) => self.transfer(now, ep, &to),
            Command::Consult { number, rtp_port } => self.consult(now, ep, number, rtp_port),
            Command::CompleteTransfer => self.complete_transfer(now, ep),
            Command::Retrieve => self.retrieve(now, ep),
        }
    }

    /// Hold the call and call `number` about it.
    fn consult(&mut self, now: Instant, ep: &mut Endpoint, number: String, rtp_port: u16) {
        if self.parked.is_some() || !self.in_call() {
            self.events.push_back(PhoneEvent::Refused(
                "a consultation needs one call up and none held".into(),
            ));
            return;
        }
        if !self.held() {
            self.hold(now, ep, true);
        }
        self.parked = self.call.take();
        self.dial(now, ep, number, rtp_port);
        if self.call.is_none() {
            // The consultation could not even be sent: the held call comes back.
            self.retrieve(now, ep);
        }
    }

    /// REFER the held call to the consulted party, replacing our dialog with them.
    fn complete_transfer(&mut self, now: Instant, ep: &mut Endpoint) {
        let target = match &self.call {
            Some(Call {
                state: State::Up { dialog },
                info,
                ..
            }) if self.parked.is_some() => {
                // Inside a URI header (RFC 3261 §19.1.1): all but unreserved escaped.
                let esc = |s: &str| {
                    s.bytes()
                        .map(|b| match b {
                            b'A'..=b'Z'
                            | b'a'..=b'z'
                            | b'0'..=b'9'
                            | b'-'
                            | b'_'
                            | b'.'
                            | b'!'
                            | b'~'
                            | b'*'
                            | b'\''
                            | b'('
                            | b')' => (b as char).to_string(),
                            _ => format!("%{b:02X}"),
                        })
                        .collect::<String>()
                };
                format!(
                    "<sip:{}@{}?Replaces={}%3Bto-tag%3D{}%3Bfrom-tag%3D{}>",
                    info.remote,
                    self.acct.domain,
                    esc(&dialog.call_id),
                    esc(&dialog.remote_tag),
                    esc(&dialog.local_tag)
                )
            }
            _ => {
                self.events.push_back(PhoneEvent::Refused(
                    "an attended transfer needs a held call and an answered consultation".into(),
                ));
                return;
            }
        };
        let me = format!("<sip:{}@{}>", self.acct.user, self.acct.domain);
        let contact = self.contact();
        std::mem::swap(&mut self.call, &mut self.parked);
        if let Some(Call {
            state: State::Up { dialog },
            ..
        }) = self.call.as_mut()
        {
            let mut req = dialog.request(Method::Refer);
            req.headers.push("Contact", contact);
            req.headers.push("Refer-To", target);
            req.headers.push("Referred-By", me);
            let flow = dialog.flow;
            if let Some(tx) = self.send(now, ep, flow, req) {
                if let Some(c) = self.call.as_mut() {
                    c.refer = Some(tx);
                }
            }
        }
        std::mem::swap(&mut self.call, &mut self.parked);
    }

    /// Take the held call back (no consultation up any more).
    fn retrieve(&mut self, now: Instant, ep: &mut Endpoint) {
        if self.call.is_some() {
            return;
        }
        let Some(call) = self.parked.take() else {
            return;
        };
        let media = call.negotiated.map(|n| Media {
            negotiated: n,
            sending: false,
        });
        self.call = Some(call);
        if let Some(m) = media {
            self.events.push_back(PhoneEvent::Retrieved(m));
        }
        self.hold(now, ep, false);
    }

    /// Does this event belong to the held call?
    fn for_parked(&self, ev: &SipEvent) -> bool {
        let Some(p) = &self.parked else {
            return false;
        };
        match ev {
            SipEvent::Response { tx, .. } | SipEvent::Timeout { tx } => {
                p.reinvite.is_some_and(|(t, _, _)| t == *tx)
                    || p.refer == Some(*tx)
                    || p.acks.iter().any(|(t, _)| t == tx)
            }
            SipEvent::AckTimeout { tx } => p.answered == Some(*tx),
            SipEvent::Request { request, .. } => {
                matches!(&p.state, State::Up { dialog } if dialog.matches(request))
            }
            _ => false,
        }
    }

    // ---------------------------------------------------------------- registration

    fn register(&mut self, now: Instant, ep: &mut Endpoint, expires: u32) {
        if self.reg.tx.is_some() {
            // One REGISTER at a time; a removal asked for meanwhile follows it.
            if expires == 0 {
                self.reg.unregister_after = true;
            }
            return;
        }
        let tag = self.token();
        let (user, domain) = (&self.acct.user, &self.acct.domain);
        let mut h = Headers::default();
        h.push("From", format!("<sip:{user}@{domain}>;tag={tag}"));
        h.push("To", format!("<sip:{user}@{domain}>"));
        h.push("Call-ID", self.reg.call_id.clone());
        self.reg.cseq += 1;
        h.push("CSeq", format!("{} REGISTER", self.reg.cseq));
        h.push("Contact", self.contact());
        h.push("Expires", expires.to_string());
        let req = Request {
            method: Method::Register,
            uri: format!("sip:{domain}"),
            headers: h,
            body: Bytes::new(),
        };
        self.reg.asking = expires;
        if let Some(tx) = self.send(now, ep, self.acct.server, req.clone()) {
            self.reg.tx = Some((tx, req, false));
        }
    }

    fn on_register_response(&mut self, now: Instant, ep: &mut Endpoint, resp: Response) {
        let Some((_, mut req, authed)) = self.reg.tx.take() else {
            return;
        };
        if matches!(resp.status, 401 | 407) && !authed {
            self.reg.cseq += 1;
            let cnonce = self.token();
            match authorise(&self.acct, &mut req, &resp, self.reg.cseq, &cnonce) {
                Ok(()) => {
                    if let Some(tx) = self.send(now, ep, self.acct.server, req.clone()) {
                        self.reg.tx = Some((tx, req, true));
                    }
                }
                Err(e) => self.registration_failed(now, e),
            }
            return;
        }
        if resp.status != 200 {
            return self
                .registration_failed(now, format!("refused: {} {}", resp.status, resp.reason));
        }
        if self.reg.asking == 0 {
            self.reg.registered = false;
            self.events.push_back(PhoneEvent::Unregistered);
            return;
        }
        let granted = granted_expiry(&resp, &self.contact(), self.reg.asking);
        self.reg.registered = granted > 0;
        if granted > 0 {
            self.reg.again_at = Some(now + Duration::from_secs(granted) * 4 / 5);
        }
        self.events
            .push_back(PhoneEvent::Registered { expires: granted });
    }

    fn registration_failed(&mut self, now: Instant, why: String) {
        if self.reg.asking == 0 {
            // Unregistering: gone either way.
            self.reg.registered = false;
            self.events.push_back(PhoneEvent::Unregistered);
            return;
        }
        self.reg.registered = false;
        self.reg.again_at = Some(now + REGISTER_RETRY);
        self.events.push_back(PhoneEvent::RegistrationFailed(why));
    }

    // ---------------------------------------------------------------- calls

    fn local_media(&self, port: u16) -> LocalMedia {
        LocalMedia {
            session_id: u64::from(port),
            version: 1,
            addr: self.acct.media_addr,
            port,
            law: media::recorder::g711::Law::Mu,
            pt: 0,
            telephone_event: Some(101),
            direction: Direction::SendRecv,
            webrtc: None,
            sdes: None,
        }
    }

    fn dial(&mut self, now: Instant, ep: &mut Endpoint, number: String, rtp_port: u16) {
        if self.call.is_some() {
            self.events
                .push_back(PhoneEvent::Refused("already in a call".into()));
            return;
        }
        let local = self.local_media(rtp_port);
        let offer = media::sdp::offer_g711(local.session_id, local.version, local.addr, local.port);
        let tag = self.token();
        let call_id = format!("{}@{}", self.token(), self.acct.contact);
        let (user, domain) = (&self.acct.user, &self.acct.domain);
        let mut h = Headers::default();
        h.push("From", format!("<sip:{user}@{domain}>;tag={tag}"));
        h.push("To", format!("<sip:{number}@{domain}>"));
        h.push("Call-ID", call_id.clone());
        h.push("CSeq", "1 INVITE");
        h.push("Contact", self.contact());
        h.push(
            "Allow",
            "INVITE, ACK, CANCEL, BYE, OPTIONS, NOTIFY, UPDATE, INFO",
        );
        h.push("Content-Type", "application/sdp");
        let invite = Request {
            method: Method::Invite,
            uri: format!("sip:{number}@{domain}"),
            headers: h,
            body: Bytes::from(offer),
        };
        let Some(tx) = self.send(now, ep, self.acct.server, invite.clone()) else {
            return;
        };
        self.call = Some(Call {
            info: CallInfo {
                call_id,
                remote: number,
                incoming: false,
                ..CallInfo::default()
            },
            state: State::Calling {
                tx,
                invite,
                authed: false,
                provisional: false,
                give_up: false,
            },
            local: Some(local),
            negotiated: None,
            held: false,
            reinvite: None,
            refer: None,
            acks: Vec::new(),
            answered: None,
            want: None,
        });
    }

    fn answer(&mut self, now: Instant, ep: &mut Endpoint, rtp_port: u16) {
        let mut local = self.local_media(rtp_port);
        let contact = self.contact();
        let Some(call) = self.call.as_mut() else {
            return;
        };
        let State::Ringing {
            tx,
            invite,
            tag,
            flow,
        } = &call.state
        else {
            return;
        };
        let (tx, flow) = (*tx, *flow);
        let offer = SessionDescription::parse(&invite.body);
        let n = match offer.as_ref().map(|sd| (sd, negotiate(sd))) {
            Ok((sd, Ok(n))) => {
                local.law = n.law;
                local.pt = n.pt;
                local.telephone_event = n.telephone_event;
                local.direction = answer_direction(n.direction, false);
                let body = local.answer(sd, n.index);
                let mut h = Headers::default();
                h.push("Contact", contact);
                h.push("Content-Type", "application/sdp");
                let _ = ep.respond_tagged(now, tx, 200, Some(tag), h, Bytes::from(body));
                n
            }
            _ => {
                let _ =
                    ep.respond_tagged(now, tx, 488, Some(tag), Headers::default(), Bytes::new());
                self.call = None;
                self.events.push_back(PhoneEvent::Ended {
                    by_us: true,
                    status: 488,
                    reason: "the caller's offer has no codec we speak".into(),
                });
                return;
            }
        };
        match Dialog::uas(invite, tag, flow) {
            Ok(dialog) => {
                call.state = State::Up { dialog };
                call.answered = Some(tx);
                let sending = local.direction.sends() && n.remote.is_some();
                call.local = Some(local);
                call.negotiated = Some(n);
                self.events.push_back(PhoneEvent::Answered(Media {
                    negotiated: n,
                    sending,
                }));
            }
            Err(e) => {
                self.call = None;
                self.events.push_back(PhoneEvent::Ended {
                    by_us: true,
                    status: 400,
                    reason: e.to_string(),
                });
            }
        }
    }

    fn hang_up(&mut self, now: Instant, ep: &mut Endpoint) {
        if self.call.is_none() && self.parked.is_some() {
            // Only the held call is left: hang it up.
            let before = self.events.len();
            std::mem::swap(&mut self.call, &mut self.parked);
            self.hang_up(now, ep);
            std::mem::swap(&mut self.call, &mut self.parked);
            if let Some(PhoneEvent::Ended { reason, .. }) = self.events.get(before).cloned() {
                self.events.truncate(before);
                self.events.push_back(PhoneEvent::HeldCallEnded { reason });
            }
            return;
        }
        let Some(mut call) = self.call.take() else {
            return;
        };
        let status = match &mut call.state {
            State::Calling {
                tx,
                provisional,
                give_up,
                ..
            } => {
                if *provisional {
                    ep.cancel(now, *tx);
                    self.gone.push((*tx, now));
                } else {
                    // RFC 3261 §9.1: no CANCEL before a provisional response; keep the
                    // call until one (then CANCEL) or the final answer.
                    *give_up = true;
                    self.call = Some(call);
                    return;
                }
                487
            }
            State::Ringing { tx, tag, .. } => {
                let _ =
                    ep.respond_tagged(now, *tx, 486, Some(tag), Headers::default(), Bytes::new());
                486
            }
            State::Up { dialog } => {
                let bye = dialog.request(Method::Bye);
                let flow = dialog.flow;
                if let Some(t) = self.send(now, ep, flow, bye) {
                    self.byes.push(t);
                }
                0
            }
        };
        self.events.push_back(PhoneEvent::Ended {
            by_us: true,
            status,
            reason: "hung up".into(),
        });
    }

    fn hold(&mut self, now: Instant, ep: &mut Endpoint, on: bool) {
        let contact = self.contact();
        let Some(call) = self.call.as_mut() else {
            return;
        };
        let State::Up { dialog } = &mut call.state else {
            return;
        };
        if call.reinvite.is_some() {
            // After the one in flight.
            call.want = Some((on, None));
            return;
        }
        if call.held == on {
            return;
        }
        let Some(local) = call.local.as_mut() else {
            return;
        };
        local.version += 1;
        local.direction = if on {
            Direction::SendOnly
        } else {
            Direction::SendRecv
        };
        let mut req = dialog.request(Method::Invite);
        let cseq = cseq_of(&req);
        req.headers.push("Contact", contact);
        req.headers.push("Content-Type", "application/sdp");
        req.body = Bytes::from(local.offer());
        let flow = dialog.flow;
        if let Some(tx) = self.send(now, ep, flow, req) {
            if let Some(c) = self.call.as_mut() {
                c.reinvite = Some((tx, cseq, on));
            }
        }
    }

    fn transfer(&mut self, now: Instant, ep: &mut Endpoint, to: &str) {
        let domain = self.acct.domain.clone();
        let me = format!("<sip:{}@{}>", self.acct.user, domain);
        let contact = self.contact();
        let Some(call) = self.call.as_mut() else {
            return;
        };
        let State::Up { dialog } = &mut call.state else {
            return;
        };
        let mut req = dialog.request(Method::Refer);
        req.headers.push("Contact", contact);
        req.headers.push("Refer-To", format!("<sip:{to}@{domain}>"));
        req.headers.push("Referred-By", me);
        let flow = dialog.flow;
        if let Some(tx) = self.send(now, ep, flow, req) {
            if let Some(c) = self.call.as_mut() {
                c.refer = Some(tx);
            }
        }
    }

    // ---------------------------------------------------------------- SIP in

    /// A SIP event for this phone.
    pub fn handle(&mut self, now: Instant, ep: &mut Endpoint, ev: SipEvent) {
        if self.for_parked(&ev) {
            // The held call's business, handled as if it were the call; what it reports is
            // about the held call (its audio is not playing).
            let before = self.events.len();
            std::mem::swap(&mut self.call, &mut self.parked);
            self.handle_call(now, ep, ev);
            std::mem::swap(&mut self.call, &mut self.parked);
            let reported: Vec<PhoneEvent> = self.events.drain(before..).collect();
            for e in reported {
                match e {
                    PhoneEvent::Ended { reason, .. } => {
                        self.events.push_back(PhoneEvent::HeldCallEnded { reason });
                    }
                    PhoneEvent::Transfer(_) | PhoneEvent::Refused(_) => self.events.push_back(e),
                    _ => {}
                }
            }
            return;
        }
        self.handle_call(now, ep, ev);
    }

    fn handle_call(&mut self, now: Instant, ep: &mut Endpoint, ev: SipEvent) {
        match ev {
            SipEvent::Response { tx, response } => self.on_response(now, ep, tx, response),
            SipEvent::Timeout { tx } => self.on_timeout(now, tx),
            SipEvent::Request {
                tx, request, flow, ..
            } => self.on_request(now, ep, tx, request, flow),
            SipEvent::Cancelled { tx } => {
                if matches!(&self.call, Some(Call { state: State::Ringing { tx: t, .. }, .. }) if *t == tx)
                {
                    self.call = None;
                    self.events.push_back(PhoneEvent::Ended {
                        by_us: false,
                        status: 487,
                        reason: "the caller gave up".into(),
                    });
                }
            }
            SipEvent::AckTimeout { tx } => {
                // Our 200 was never acknowledged: end that call (RFC 3261 §13.3.1.4).
                if self.call.as_ref().is_some_and(|c| c.answered == Some(tx)) {
                    self.hang_up(now, ep);
                }
            }
            SipEvent::Ack { .. } | SipEvent::Binding(_) | SipEvent::Banned { .. } => {}
        }
    }

    fn on_timeout(&mut self, now: Instant, tx: TxId) {
        self.byes.retain(|t| *t != tx);
        self.gone.retain(|(t, _)| *t != tx);
        if self.reg.tx.as_ref().is_some_and(|(t, _, _)| *t == tx) {
            self.reg.tx = None;
            return self.registration_failed(now, "no answer from the registrar".into());
        }
        let Some(call) = self.call.as_mut() else {
            return;
        };
        if let State::Calling { tx: t, give_up, .. } = &call.state {
            if *t != tx {
                return;
            }
            let by_us = *give_up;
            self.call = None;
            self.events.push_back(PhoneEvent::Ended {
                by_us,
                status: 408,
                reason: "no answer from the server".into(),
            });
        } else if call.reinvite.is_some_and(|(t, _, _)| t == tx) {
            call.reinvite = None;
            self.events
                .push_back(PhoneEvent::Refused("the re-INVITE got no answer".into()));
        } else if call.refer == Some(tx) {
            call.refer = None;
            self.events.push_back(PhoneEvent::Transfer(408));
        }
    }

    fn on_response(&mut self, now: Instant, ep: &mut Endpoint, tx: TxId, resp: Response) {
        if self.reg.tx.as_ref().is_some_and(|(t, _, _)| *t == tx) {
            if resp.status >= 200 {
                self.on_register_response(now, ep, resp);
                if self.reg.tx.is_none() && std::mem::take(&mut self.reg.unregister_after) {
                    self.reg.again_at = None;
                    self.register(now, ep, 0);
                }
            }
            return;
        }
        if self.byes.contains(&tx) {
            if resp.status >= 200 {
                self.byes.retain(|t| *t != tx);
            }
            return;
        }
        // A 2xx to an INVITE we gave up (the CANCEL crossed it): the dialog exists at the
        // other end; acknowledge it and end it.
        if resp.status >= 200 && self.gone.iter().any(|(t, _)| *t == tx) {
            self.gone.retain(|(t, _)| *t != tx);
            if resp.status < 300 {
                self.ack_and_bye(now, ep, &resp);
            }
            return;
        }
        let cnonce = if matches!(resp.status, 401 | 407) {
            self.token()
        } else {
            String::new()
        };
        let Some(call) = self.call.as_mut() else {
            return;
        };
        if (200..300).contains(&resp.status) {
            if let Some((_, ack)) = call.acks.iter().find(|(t, _)| *t == tx) {
                // A retransmitted 2xx: our ACK was lost.
                let flow = match &call.state {
                    State::Up { dialog } => dialog.flow,
                    _ => self.acct.server,
                };
                ep.send_stateless_request(now, flow, ack.clone());
                return;
            }
        }
        if call.reinvite.is_some_and(|(t, _, _)| t == tx) {
            if resp.status < 200 {
                return;
            }
            let Some((_, cseq, going)) = call.reinvite.take() else {
                return;
            };
            let State::Up { dialog } = &call.state else {
                return;
            };
            if (200..300).contains(&resp.status) {
                let ack = dialog.ack(cseq);
                ep.send_stateless_request(now, dialog.flow, ack.clone());
                call.acks.push((tx, ack));
                if call.acks.len() > 4 {
                    call.acks.remove(0);
                }
                call.held = going;
                if let Ok(n) = SessionDescription::parse(&resp.body).and_then(|sd| negotiate(&sd)) {
                    call.negotiated = Some(n);
                }
                self.events.push_back(PhoneEvent::Held(going));
            } else {
                if let Some(l) = call.local.as_mut() {
                    l.direction = if call.held {
                        Direction::SendOnly
                    } else {
                        Direction::SendRecv
                    };
                }
                if resp.status == 491 {
                    // Glare: try again after a while (RFC 3261 §14.1: 2.1–4 s for the
                    // side that did not start the dialog's first INVITE; one wait for both).
                    let wait = Duration::from_millis(2100 + (self.rng % 1900));
                    if let Some(c) = self.call.as_mut() {
                        c.want = Some((going, Some(now + wait)));
                    }
                    return;
                }
                self.events.push_back(PhoneEvent::Refused(format!(
                    "{} refused: {} {}",
                    if going { "hold" } else { "resume" },
                    resp.status,
                    resp.reason
                )));
            }
            // What was asked meanwhile goes out now.
            if let Some((want, None)) = self.call.as_ref().and_then(|c| c.want) {
                if let Some(c) = self.call.as_mut() {
                    c.want = None;
                }
                if want != self.held() {
                    self.hold(now, ep, want);
                }
            }
            return;
        }
        if call.refer == Some(tx) {
            if resp.status >= 300 {
                call.refer = None;
                self.events.push_back(PhoneEvent::Transfer(resp.status));
            }
            return;
        }
        let State::Calling {
            tx: ctx,
            invite,
            authed,
            provisional,
            give_up,
        } = &mut call.state
        else {
            return;
        };
        if *ctx != tx {
            return;
        }
        if resp.status < 200 {
            // Any provisional answer (100 Trying too) allows a CANCEL (RFC 3261 §9.1).
            if !*provisional {
                *provisional = true;
                if *give_up {
                    ep.cancel(now, tx);
                    self.gone.push((tx, now));
                    self.call = None;
                    self.events.push_back(PhoneEvent::Ended {
                        by_us: true,
                        status: 487,
                        reason: "hung up".into(),
                    });
                    return;
                }
            }
            if resp.status > 100 && !*give_up {
                self.events.push_back(PhoneEvent::Ringing);
            }
            return;
        }
        if matches!(resp.status, 401 | 407) && !*authed {
            let mut again = invite.clone();
            let cseq = cseq_of(&again) + 1;
            match authorise(&self.acct, &mut again, &resp, cseq, &cnonce) {
                Ok(()) => {
                    let server = self.acct.server;
                    match ep.send_request(now, server, again.clone()) {
                        Ok(t) => {
                            self.sent.push(t);
                            *ctx = t;
                            *invite = again;
                            *authed = true;
                            *provisional = false;
                        }
                        Err(e) => {
                            self.call = None;
                            self.events.push_back(PhoneEvent::Ended {
                                by_us: false,
                                status: resp.status,
                                reason: format!("cannot send: {e:?}"),
                            });
                        }
                    }
                }
                Err(e) => {
                    self.call = None;
                    self.events.push_back(PhoneEvent::Ended {
                        by_us: false,
                        status: resp.status,
                        reason: e,
                    });
                }
            }
            return;
        }
        if resp.status >= 300 {
            let given_up = *give_up;
            self.call = None;
            self.events.push_back(PhoneEvent::Ended {
                by_us: given_up,
                status: resp.status,
                reason: resp.reason.clone(),
            });
            return;
        }
        // 2xx: the call is up.
        let give_up = *give_up;
        let invite = invite.clone();
        let dialog = match Dialog::uac(&invite, &resp, self.acct.server) {
            Ok(d) => d,
            Err(e) => {
                self.call = None;
                self.events.push_back(PhoneEvent::Ended {
                    by_us: true,
                    status: 502,
                    reason: format!("the answer: {e}"),
                });
                return;
            }
        };
        let ack = dialog.ack(cseq_of(&invite));
        ep.send_stateless_request(now, dialog.flow, ack.clone());
        call.acks.push((tx, ack));
        let n = SessionDescription::parse(&resp.body).and_then(|sd| negotiate(&sd));
        call.state = State::Up { dialog };
        match n {
            Ok(n) if !give_up => {
                if let Some(l) = call.local.as_mut() {
                    l.law = n.law;
                    l.pt = n.pt;
                    l.telephone_event = n.telephone_event;
                }
                call.negotiated = Some(n);
                self.events.push_back(PhoneEvent::Answered(Media {
                    negotiated: n,
                    sending: true,
                }));
            }
            Ok(_) => self.hang_up(now, ep),
            Err(e) => {
                self.hang_up(now, ep);
                if let Some(PhoneEvent::Ended { reason, .. }) = self.events.back_mut() {
                    *reason = format!("the answer's SDP: {e}");
                }
            }
        }
    }

    /// ACK a 2xx that arrived for an INVITE we gave up, and end that dialog.
    fn ack_and_bye(&mut self, now: Instant, ep: &mut Endpoint, resp: &Response) {
        let Some(cseq) = resp
            .headers
            .get("CSeq")
            .and_then(|c| c.split_whitespace().next())
            .and_then(|n| n.parse::<u32>().ok())
        else {
            return;
        };
        // Rebuild the INVITE's dialog from the response alone: From/To/Call-ID are in it.
        let mut invite_headers = Headers::default();
        for name in ["From", "Call-ID", "CSeq"] {
            if let Some(v) = resp.headers.get(name) {
                invite_headers.push(name, v.to_owned());
            }
        }
        let to = resp.headers.get("To").map(|t| {
            NameAddr::parse(t)
                .map(|a| format!("<{}>", a.uri_text))
                .unwrap_or_else(|_| t.to_owned())
        });
        invite_headers.push("To", to.unwrap_or_default());
        invite_headers.push("Contact", self.contact());
        let invite = Request {
            method: Method::Invite,
            uri: resp
                .headers
                .get("Contact")
                .and_then(|c| NameAddr::parse(c).ok())
                .map(|a| a.uri_text)
                .unwrap_or_default(),
            headers: invite_headers,
            body: Bytes::new(),
        };
        if let Ok(mut d) = Dialog::uac(&invite, resp, self.acct.server) {
            ep.send_stateless_request(now, d.flow, d.ack(cseq));
            let bye = d.request(Method::Bye);
            if let Some(t) = self.send(now, ep, d.flow, bye) {
                self.byes.push(t);
            }
        }
    }

    fn on_request(&mut self, now: Instant, ep: &mut Endpoint, tx: TxId, req: Request, flow: Flow) {
        let contact = self.contact();
        let reply = |ep: &mut Endpoint, status: u16, h: Headers, body: Bytes| {
            let _ = ep.respond_tagged(now, tx, status, None, h, body);
        };
        // In the call's dialog?
        let in_dialog = match self.call.as_mut() {
            Some(Call {
                state: State::Up { dialog },
                ..
            }) if dialog.matches(&req) => {
                if !dialog.accept_remote_cseq(&req) {
                    return reply(ep, 500, Headers::default(), Bytes::new());
                }
                true
            }
            _ => false,
        };
        let has_to_tag = req
            .headers
            .get("To")
            .and_then(|t| NameAddr::parse(t).ok())
            .is_some_and(|a| a.params.get("tag").is_some());
        if !in_dialog {
            return match req.method {
                Method::Invite if !has_to_tag => self.incoming(now, ep, tx, req, flow),
                Method::Options => reply(ep, 200, Headers::default(), Bytes::new()),
                // Message waiting and other unsolicited notifications.
                Method::Notify if !has_to_tag => reply(ep, 200, Headers::default(), Bytes::new()),
                Method::Ack => {}
                _ => reply(ep, 481, Headers::default(), Bytes::new()),
            };
        }
        match req.method {
            Method::Bye => {
                reply(ep, 200, Headers::default(), Bytes::new());
                self.call = None;
                self.events.push_back(PhoneEvent::Ended {
                    by_us: false,
                    status: 0,
                    reason: "the other side hung up".into(),
                });
            }
            Method::Invite | Method::Update => {
                let Some(call) = self.call.as_mut() else {
                    return;
                };
                let mut h = Headers::default();
                h.push("Contact", contact);
                if call.reinvite.is_some() && !req.body.is_empty() {
                    // Glare: their offer crosses ours (RFC 3261 §14.1, RFC 3311 §5.2).
                    return reply(ep, 491, h, Bytes::new());
                }
                if req.body.is_empty() {
                    // An UPDATE without an offer refreshes the session; a re-INVITE without
                    // one asks for ours (the answer comes in the ACK, RFC 3264 §4).
                    let offer = match (&req.method, call.local.as_ref()) {
                        (Method::Invite, Some(local)) => Some(local.offer()),
                        _ => None,
                    };
                    return match offer {
                        Some(sdp) => {
                            h.push("Content-Type", "application/sdp");
                            reply(ep, 200, h, Bytes::from(sdp))
                        }
                        None => reply(ep, 200, h, Bytes::new()),
                    };
                }
                let offer = SessionDescription::parse(&req.body);
                match (
                    offer.as_ref().map(|sd| (sd, negotiate(sd))),
                    call.local.as_mut(),
                ) {
                    (Ok((sd, Ok(n))), Some(local)) => {
                        local.law = n.law;
                        local.pt = n.pt;
                        local.telephone_event = n.telephone_event;
                        local.version += 1;
                        local.direction = answer_direction(n.direction, call.held);
                        let body = local.answer(sd, n.index);
                        h.push("Content-Type", "application/sdp");
                        reply(ep, 200, h, Bytes::from(body));
                        call.negotiated = Some(n);
                        let sending = !call.held && local.direction.sends() && n.remote.is_some();
                        self.events.push_back(PhoneEvent::MediaChanged(Media {
                            negotiated: n,
                            sending,
                        }));
                    }
                    _ => reply(ep, 488, h, Bytes::new()),
                }
            }
            Method::Notify => {
                reply(ep, 200, Headers::default(), Bytes::new());
                let refer_event = req
                    .headers
                    .get("Event")
                    .is_some_and(|e| e.trim().starts_with("refer"));
                if refer_event {
                    if let Some(status) = sipfrag_status(&req.body) {
                        if status >= 200 {
                            if let Some(c) = self.call.as_mut() {
                                c.refer = None;
                            }
                            self.events.push_back(PhoneEvent::Transfer(status));
                        }
                    }
                }
            }
            Method::Info | Method::Options => reply(ep, 200, Headers::default(), Bytes::new()),
            Method::Refer => reply(ep, 403, Headers::default(), Bytes::new()),
            Method::Ack => {}
            _ => reply(ep, 405, Headers::default(), Bytes::new()),
        }
    }

    fn incoming(&mut self, now: Instant, ep: &mut Endpoint, tx: TxId, req: Request, flow: Flow) {
        let tag = self.token();
        if self.call.is_some() || self.parked.is_some() {
            let _ = ep.respond_tagged(now, tx, 486, Some(&tag), Headers::default(), Bytes::new());
            return;
        }
        let from = req
            .headers
            .get("From")
            .and_then(|f| NameAddr::parse(f).ok());
        let info = CallInfo {
            call_id: req.headers.get("Call-ID").unwrap_or_default().to_owned(),
            remote: from
                .as_ref()
                .and_then(|a| a.uri.user_unescaped())
                .unwrap_or_else(|| "anonymous".into()),
            display: from.and_then(|a| a.display),
            queue: req
                .headers
                .get("X-Switchboard-Queue")
                .map(|q| q.trim().to_owned()),
            waited_s: header_of(&req, "X-Switchboard-Waited"),
            entered: req
                .headers
                .get("X-Switchboard-Entered")
                .map(|q| q.trim().to_owned()),
            record: header_of(&req, "X-Switchboard-Call"),
            incoming: true,
        };
        let _ = ep.respond_tagged(now, tx, 180, Some(&tag), Headers::default(), Bytes::new());
        self.events.push_back(PhoneEvent::Incoming(info.clone()));
        self.call = Some(Call {
            info,
            state: State::Ringing {
                tx,
                invite: req,
                tag,
                flow,
            },
            local: None,
            negotiated: None,
            held: false,
            reinvite: None,
            refer: None,
            acks: Vec::new(),
            answered: None,
            want: None,
        });
    }
}

/// The `sip::Endpoint` settings of a phone (or of many phones sharing one endpoint) whose
/// Via host is `via_host`: no registrar, no rate limit, no challenge of what comes in,
/// unsolicited NOTIFYs accepted.
pub fn endpoint_config(via_host: String, seed: u64) -> sip::EndpointConfig {
    sip::EndpointConfig {
        via_host,
        security: sip::endpoint::SecurityConfig {
            rate_limit: None,
            ..Default::default()
        },
        calls: sip::endpoint::CallAuthConfig {
            trunks: Vec::new(),
            challenge: false,
        },
        accept_notify: true,
        seed,
        ..Default::default()
    }
}

/// Our direction in an answer to an offer of `offered`, on hold ourselves or not (RFC 3264
/// §6.1): a sendonly offer (they hold us) is answered recvonly, and so on; while we hold,
/// we do not receive.
fn answer_direction(offered: Direction, we_hold: bool) -> Direction {
    match (offered.answer(), we_hold) {
        (d, false) => d,
        (Direction::SendRecv, true) => Direction::SendOnly,
        (Direction::RecvOnly, true) => Direction::Inactive,
        (d, true) => d,
    }
}

/// What the registrar granted: our Contact's `expires`, else the Expires header, else what
/// was asked; held to a day.
fn granted_expiry(resp: &Response, contact: &str, asked: u32) -> u64 {
    let ours = contact.trim_start_matches('<').trim_end_matches('>');
    resp.headers
        .get_all("Contact")
        .flat_map(|v| v.split(','))
        .filter(|c| c.contains(ours))
        .find_map(|c| {
            c.split(';')
                .find_map(|p| p.trim().strip_prefix("expires="))
                .and_then(|e| e.trim().parse::<u64>().ok())
        })
        .or_else(|| {
            resp.headers
                .get("Expires")
                .and_then(|e| e.trim().parse().ok())
        })
        .unwrap_or(u64::from(asked))
        .min(86_400)
}

/// Answer a 401/407 to `req`: the request again with credentials and CSeq `cseq`. SHA-256
/// is preferred when offered (RFC 8760), else the first challenge that can be answered.
pub fn authorise(
    acct: &Account,
    req: &mut Request,
    resp: &Response,
    cseq: u32,
    cnonce: &str,
) -> Result<(), String> {
    let (ask, answer) = if resp.status == 401 {
        ("WWW-Authenticate", "Authorization")
    } else {
        ("Proxy-Authenticate", "Proxy-Authorization")
    };
    let challenges: Vec<_> = resp
        .headers
        .get_all(ask)
        .filter_map(|v| sip::digest::parse_challenge(v).ok())
        .collect();
    let ch = challenges
        .iter()
        .find(|c| c.algorithm == sip::digest::Algorithm::Sha256)
        .or(challenges.first())
        .ok_or_else(|| format!("{} without a digest challenge we can answer", resp.status))?;
    let method = req.method.as_str().to_owned();
    let value =
        sip::digest::authorization(ch, &acct.user, &acct.password, &method, &req.uri, cnonce, 1);
    req.headers.remove("CSeq");
    req.headers.push("CSeq", format!("{cseq} {method}"));
    req.headers.remove(answer);
    req.headers.push(answer, value);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sipfrag_status_line() {
        assert_eq!(sipfrag_status(b"SIP/2.0 200 OK\r\n"), Some(200));
        assert_eq!(sipfrag_status(b"SIP/2.0 486 Busy Here"), Some(486));
        assert_eq!(sipfrag_status(b"garbage"), None);
    }
}
