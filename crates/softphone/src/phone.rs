//! The headless phone: a SIP user agent on the project's sans-IO `sip::Endpoint`, driven over
//! a UDP socket by one thread, with one G.711 RTP stream. It registers (digest, MD5 or
//! SHA-256, whichever the server offers first that it can answer), places or answers one
//! call, sends a tone, a WAV file or silence, keys RFC 4733 digits, records what it hears,
//! and hangs up after a while or when the other side does; then it unregisters. What
//! happened comes back as a [`Summary`] for scripts and tests.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use bytes::Bytes;
use media::recorder::g711::Law;
use media::rtp::{parse_header, Packetizer, SAMPLES_PER_PACKET};
use media::sdp::{negotiate, Direction, LocalMedia, Negotiated, SessionDescription};
use rand::RngCore;
use serde::Serialize;
use sip::endpoint::{CallAuthConfig, SecurityConfig, SipEvent};
use sip::message::{Headers, Method, Request, Response};
use sip::transaction::TxId;
use sip::{Dialog, Endpoint, EndpointConfig, Flow, Transport};

use crate::audio::{Reception, Source};

/// What the phone is to do.
#[derive(Debug, Clone)]
pub struct Options {
    /// The server (registrar and proxy).
    pub server: SocketAddr,
    /// Address to bind (and to write into SDP and Contact).
    pub local: IpAddr,
    /// The SIP user and password.
    pub user: String,
    /// Its password.
    pub password: String,
    /// Domain of the From/To URIs (the server's realm works).
    pub domain: String,
    /// Call this number; otherwise wait for a call.
    pub dial: Option<String>,
    /// Answer an incoming call this long after it rings.
    pub answer_after: Duration,
    /// What the phone sends.
    pub source: Source,
    /// Write what it hears here (8 kHz mono WAV).
    pub record: Option<PathBuf>,
    /// Hang up this long after the call is up (`None`: wait for the other side).
    pub hangup_after: Option<Duration>,
    /// Key these digits (RFC 4733) once the call has been up for `digits_after`.
    pub digits: String,
    /// When to key them.
    pub digits_after: Duration,
    /// Give up (and exit with a failure) after this long in all.
    pub timeout: Duration,
    /// Put the call on hold this long after it is up (re-INVITE, sendonly; the phone stops
    /// sending), for `hold_for`, then resume it.
    pub hold_after: Option<Duration>,
    /// How long the hold lasts.
    pub hold_for: Duration,
    /// Registration expiry asked for (seconds); refreshed at four fifths of what is granted.
    pub expires: u32,
    /// Register first (off: place the call straight away, answering its challenge: a
    /// phone calling a carrier or another user agent directly).
    pub register: bool,
    /// Give up a call that is not answered this long after it was placed (CANCEL).
    pub cancel_after: Option<Duration>,
}

/// What happened, for scripts.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Summary {
    /// The server accepted the registration.
    pub registered: bool,
    /// The call was set up (answered).
    pub answered: bool,
    /// The final status of a refused or failed call (0 if none).
    pub refused: u16,
    /// Who hung up: "us", "them", or "" when no call was up.
    pub hung_up_by: String,
    /// INVITE to 200 OK (placed calls), milliseconds.
    pub setup_ms: Option<f64>,
    /// Seconds the call was up.
    pub talk_s: f64,
    /// The codec used.
    pub codec: String,
    /// RTP packets sent (audio and events).
    pub sent: u64,
    /// RTP packets received.
    pub received: u64,
    /// Packets lost, from the sequence numbers received.
    pub lost: u64,
    /// Interarrival jitter, milliseconds.
    pub jitter_ms: f64,
    /// Digits keyed, and digits received as RFC 4733 events.
    pub digits_sent: String,
    /// Digits received as RFC 4733 events.
    pub digits_received: String,
    /// The call was put on hold and resumed (both re-INVITEs answered 200).
    pub held_and_resumed: bool,
    /// New offers from the other side answered during the call (re-INVITE or UPDATE).
    pub reoffers: u32,
    /// Registrations refreshed (each accepted by the registrar).
    pub refreshes: u32,
    /// What went wrong, if anything.
    pub error: Option<String>,
}

/// The phone's UA and sockets.
struct Ua {
    ep: Endpoint,
    sip: UdpSocket,
    rtp: UdpSocket,
    opts: Options,
    addr: SocketAddr,
    seq: u32,
    reg_cseq: u32,
    /// When the registration is to be refreshed.
    refresh_at: Option<Instant>,
    /// Registrations refreshed.
    refreshes: u32,
    queue: Vec<SipEvent>,
    start: Instant,
}

fn flow(to: SocketAddr) -> Flow {
    Flow {
        transport: Transport::Udp,
        remote: to,
        conn: None,
    }
}

fn cseq_of(req: &Request) -> u32 {
    req.headers
        .get("CSeq")
        .and_then(|c| c.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(1)
}

impl Ua {
    fn new(opts: Options) -> Result<Ua, String> {
        let sip = UdpSocket::bind((opts.local, 0)).map_err(|e| format!("SIP socket: {e}"))?;
        sip.set_read_timeout(Some(Duration::from_millis(2)))
            .map_err(|e| e.to_string())?;
        let rtp = UdpSocket::bind((opts.local, 0)).map_err(|e| format!("RTP socket: {e}"))?;
        rtp.set_nonblocking(true).map_err(|e| e.to_string())?;
        let addr = sip.local_addr().map_err(|e| e.to_string())?;
        let cfg = EndpointConfig {
            via_host: addr.to_string(),
            security: SecurityConfig {
                rate_limit: None,
                ..Default::default()
            },
            calls: CallAuthConfig {
                trunks: Vec::new(),
                challenge: false,
            },
            accept_notify: true,
            seed: rand::rng().next_u64(),
            ..Default::default()
        };
        Ok(Ua {
            ep: Endpoint::new(cfg, HashMap::new(), Instant::now()),
            sip,
            rtp,
            opts,
            addr,
            seq: 0,
            reg_cseq: 0,
            refresh_at: None,
            refreshes: 0,
            queue: Vec::new(),
            start: Instant::now(),
        })
    }

    fn token(&mut self) -> String {
        self.seq += 1;
        format!("{:08x}{}", rand::rng().next_u32(), self.seq)
    }

    fn deadline_passed(&self) -> bool {
        self.start.elapsed() > self.opts.timeout
    }

    /// Move SIP along: datagrams in and out, timers; BYE/NOTIFY/OPTIONS answered here.
    fn pump(&mut self) {
        let mut buf = [0u8; 65_535];
        let now = Instant::now();
        if self.ep.poll_timeout().is_some_and(|t| t <= now) {
            self.ep.handle_timeout(now);
        }
        while let Some(t) = self.ep.poll_transmit() {
            let _ = self.sip.send_to(&t.payload, t.flow.remote);
        }
        while let Ok((n, from)) = self.sip.recv_from(&mut buf) {
            self.ep
                .handle_message(Instant::now(), flow(from), &buf[..n]);
            while let Some(t) = self.ep.poll_transmit() {
                let _ = self.sip.send_to(&t.payload, t.flow.remote);
            }
        }
        while let Some(ev) = self.ep.poll_event() {
            match ev {
                SipEvent::Request { tx, request, .. }
                    if matches!(request.method, Method::Notify | Method::Options) =>
                {
                    let _ = self.ep.respond_tagged(
                        Instant::now(),
                        tx,
                        200,
                        None,
                        Headers::default(),
                        Bytes::new(),
                    );
                }
                other => self.queue.push(other),
            }
        }
    }

    /// Take the first queued event `f` accepts.
    fn take<T>(&mut self, mut f: impl FnMut(&SipEvent) -> Option<T>) -> Option<T> {
        let i = self.queue.iter().position(|e| f(e).is_some())?;
        let ev = self.queue.remove(i);
        f(&ev)
    }

    fn final_response(&mut self, tx: TxId) -> Result<Response, String> {
        loop {
            self.pump();
            if let Some(r) = self.take(|e| match e {
                SipEvent::Response { tx: t, response } if *t == tx && response.status >= 200 => {
                    Some(response.clone())
                }
                _ => None,
            }) {
                return Ok(r);
            }
            if self
                .take(|e| matches!(e, SipEvent::Timeout { tx: t } if *t == tx).then_some(()))
                .is_some()
            {
                return Err("no answer from the server".into());
            }
            if self.deadline_passed() {
                return Err("timed out".into());
            }
        }
    }

    /// The final answer to our INVITE `tx`, cancelling it (RFC 3261 §9: once it has a
    /// provisional answer) when it rings longer than `cancel_after` since `t0`.
    fn ringing(&mut self, tx: TxId, t0: Instant) -> Result<Response, String> {
        let Some(after) = self.opts.cancel_after else {
            return self.final_response(tx);
        };
        let mut provisional = false;
        let mut cancelled = false;
        loop {
            self.pump();
            if let Some(r) = self.take(|e| match e {
                SipEvent::Response { tx: t, response } if *t == tx => Some(response.clone()),
                _ => None,
            }) {
                if r.status >= 200 {
                    return Ok(r);
                }
                provisional = true;
            }
            if self
                .take(|e| matches!(e, SipEvent::Timeout { tx: t } if *t == tx).then_some(()))
                .is_some()
            {
                return Err("no answer from the server".into());
            }
            if !cancelled && provisional && t0.elapsed() >= after {
                cancelled = self.ep.cancel(Instant::now(), tx).is_some();
            }
            if self.deadline_passed() {
                return Err("timed out".into());
            }
        }
    }

    fn send(&mut self, req: Request) -> Result<TxId, String> {
        self.ep
            .send_request(Instant::now(), flow(self.opts.server), req)
            .map_err(|e| format!("cannot send: {e:?}"))
    }

    /// Answer a 401/407 to `req` (CSeq `cseq`): the request again with credentials.
    fn authorise(&self, req: &mut Request, resp: &Response, cseq: u32) -> Result<(), String> {
        let (ask, answer) = if resp.status == 401 {
            ("WWW-Authenticate", "Authorization")
        } else {
            ("Proxy-Authenticate", "Proxy-Authorization")
        };
        // Prefer SHA-256 when offered (RFC 8760), else the first challenge we can answer.
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
        let cnonce = format!("{:016x}", rand::rng().next_u64());
        let method = req.method.as_str().to_owned();
        let value = sip::digest::authorization(
            ch,
            &self.opts.user,
            &self.opts.password,
            &method,
            &req.uri,
            &cnonce,
            1,
        );
        req.headers.remove("CSeq");
        req.headers.push("CSeq", format!("{cseq} {method}"));
        req.headers.remove(answer);
        req.headers.push(answer, value);
        Ok(())
    }

    fn register(&mut self, expires: u32) -> Result<(), String> {
        let tag = self.token();
        let mut h = Headers::default();
        let (user, domain) = (&self.opts.user, &self.opts.domain);
        h.push("From", format!("<sip:{user}@{domain}>;tag={tag}"));
        h.push("To", format!("<sip:{user}@{domain}>"));
        h.push("Call-ID", format!("reg-{user}-{}", self.addr));
        self.reg_cseq += 1;
        h.push("CSeq", format!("{} REGISTER", self.reg_cseq));
        h.push("Contact", format!("<sip:{user}@{}>", self.addr));
        h.push("Expires", expires.to_string());
        let mut req = Request {
            method: Method::Register,
            uri: format!("sip:{domain}"),
            headers: h,
            body: Bytes::new(),
        };
        let tx = self.send(req.clone())?;
        let mut resp = self.final_response(tx)?;
        if matches!(resp.status, 401 | 407) {
            self.reg_cseq += 1;
            self.authorise(&mut req, &resp, self.reg_cseq)?;
            let tx = self.send(req)?;
            resp = self.final_response(tx)?;
        }
        if resp.status != 200 {
            return Err(format!(
                "registration refused: {} {}",
                resp.status, resp.reason
            ));
        }
        // Refresh at four fifths of what the registrar granted (our Contact's expires, else
        // the Expires header, else what we asked).
        let ours = format!("sip:{}@{}", self.opts.user, self.addr);
        let granted = resp
            .headers
            .get_all("Contact")
            .flat_map(|v| v.split(','))
            .filter(|c| c.contains(&ours))
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
            .unwrap_or(u64::from(expires))
            .min(86_400);
        self.refresh_at = (expires > 0 && granted > 0)
            .then(|| Instant::now() + Duration::from_secs(granted) * 4 / 5);
        Ok(())
    }

    /// Register again when the registration is due for its refresh; `true` when it was
    /// refreshed now.
    fn keep_registered(&mut self) -> Result<bool, String> {
        if self.refresh_at.is_some_and(|t| Instant::now() >= t) {
            self.register(self.opts.expires)?;
            return Ok(true);
        }
        Ok(false)
    }

    fn local_media(&self, port: u16, n: Option<&Negotiated>) -> LocalMedia {
        let addr = match self.opts.local {
            IpAddr::V4(a) => a,
            IpAddr::V6(_) => Ipv4Addr::LOCALHOST,
        };
        LocalMedia {
            session_id: u64::from(port),
            version: 1,
            addr,
            port,
            law: n.map_or(Law::Mu, |n| n.law),
            pt: n.map_or(0, |n| n.pt),
            telephone_event: n.map_or(Some(101), |n| n.telephone_event),
            direction: Direction::SendRecv,
        }
    }

    /// Place the call; the dialog and what was negotiated.
    fn place(
        &mut self,
        number: &str,
        summary: &mut Summary,
    ) -> Result<(Dialog, Negotiated), String> {
        let port = self.rtp.local_addr().map_err(|e| e.to_string())?.port();
        let offer =
            media::sdp::offer_g711(u64::from(port), 1, self.local_media(port, None).addr, port);
        let tag = self.token();
        let call_id = format!("{}@{}", self.token(), self.addr);
        let (user, domain) = (self.opts.user.clone(), self.opts.domain.clone());
        let mut h = Headers::default();
        h.push("From", format!("<sip:{user}@{domain}>;tag={tag}"));
        h.push("To", format!("<sip:{number}@{domain}>"));
        h.push("Call-ID", call_id);
        h.push("CSeq", "1 INVITE");
        h.push("Contact", format!("<sip:{user}@{}>", self.addr));
        h.push("Content-Type", "application/sdp");
        let mut invite = Request {
            method: Method::Invite,
            uri: format!("sip:{number}@{domain}"),
            headers: h,
            body: Bytes::from(offer),
        };
        let t0 = Instant::now();
        let tx = self.send(invite.clone())?;
        let mut resp = self.ringing(tx, t0)?;
        if matches!(resp.status, 401 | 407) {
            self.authorise(&mut invite, &resp, 2)?;
            let tx = self.send(invite.clone())?;
            resp = self.ringing(tx, t0)?;
        }
        if resp.status >= 300 {
            summary.refused = resp.status;
            return Err(format!("call refused: {} {}", resp.status, resp.reason));
        }
        summary.setup_ms = Some(t0.elapsed().as_secs_f64() * 1000.0);
        let d = Dialog::uac(&invite, &resp, flow(self.opts.server)).map_err(|e| e.to_string())?;
        let ack = d.ack(cseq_of(&invite));
        self.ep
            .send_stateless_request(Instant::now(), flow(self.opts.server), ack);
        let n = SessionDescription::parse(&resp.body)
            .and_then(|sd| negotiate(&sd))
            .map_err(|e| format!("the answer's SDP: {e}"))?;
        Ok((d, n))
    }

    /// Wait for a call and answer it; the dialog and what was negotiated.
    fn answer(&mut self) -> Result<(Dialog, Negotiated), String> {
        let (tx, invite, from) = loop {
            self.pump();
            if let Some(x) = self.take(|e| match e {
                SipEvent::Request {
                    tx, request, flow, ..
                } if request.method == Method::Invite => Some((*tx, request.clone(), *flow)),
                _ => None,
            }) {
                break x;
            }
            if self.keep_registered()? {
                self.refreshes += 1;
            }
            if self.deadline_passed() {
                return Err("no call came".into());
            }
        };
        let tag = self.token();
        let _ = self.ep.respond_tagged(
            Instant::now(),
            tx,
            180,
            Some(&tag),
            Headers::default(),
            Bytes::new(),
        );
        let ring_until = Instant::now() + self.opts.answer_after;
        while Instant::now() < ring_until {
            self.pump();
            if self
                .take(|e| matches!(e, SipEvent::Cancelled { tx: t } if *t == tx).then_some(()))
                .is_some()
            {
                return Err("the caller cancelled".into());
            }
        }
        let offer = SessionDescription::parse(&invite.body).map_err(|e| e.to_string())?;
        let n = match negotiate(&offer) {
            Ok(n) => n,
            Err(e) => {
                let _ = self.ep.respond_tagged(
                    Instant::now(),
                    tx,
                    488,
                    Some(&tag),
                    Headers::default(),
                    Bytes::new(),
                );
                return Err(format!("the offer: {e}"));
            }
        };
        let port = self.rtp.local_addr().map_err(|e| e.to_string())?.port();
        let body = self.local_media(port, Some(&n)).answer(&offer, n.index);
        let mut h = Headers::default();
        h.push("Contact", format!("<sip:{}@{}>", self.opts.user, self.addr));
        h.push("Content-Type", "application/sdp");
        self.ep
            .respond_tagged(Instant::now(), tx, 200, Some(&tag), h, Bytes::from(body))
            .map_err(|e| format!("{e:?}"))?;
        let d = Dialog::uas(&invite, &tag, from).map_err(|e| e.to_string())?;
        Ok((d, n))
    }

    /// The call is up: media until we hang up or they do.
    fn talk(
        &mut self,
        mut d: Dialog,
        mut n: Negotiated,
        summary: &mut Summary,
    ) -> Result<(), String> {
        let t0 = Instant::now();
        let mut rx = Reception::default();
        let mut pk = Packetizer::new(
            rand::rng().next_u32(),
            rand::rng().next_u32() as u16,
            rand::rng().next_u32(),
        );
        let mut frame = [0i16; SAMPLES_PER_PACKET];
        let mut codes = Vec::with_capacity(SAMPLES_PER_PACKET);
        let mut packet = Vec::with_capacity(200);
        let mut buf = [0u8; 2048];
        let mut frames: u64 = 0;
        let mut digits: Vec<char> = self.opts.digits.chars().collect();
        digits.reverse();
        // A digit is 100 ms of events (5 packets, the last 3 with the E bit) and 100 ms gap.
        let mut keying: Option<(char, u32)> = None;
        let mut next_digit_at = self.opts.digits_after;
        // Hold: (re-INVITE in flight, its CSeq, going on hold); whether held; answers seen.
        let port = self.rtp.local_addr().map_err(|e| e.to_string())?.port();
        let mut local = self.local_media(port, Some(&n));
        let mut reinvite: Option<(TxId, u32, bool)> = None;
        let mut held = false;
        let mut hold_answers = 0;
        let their_bye = loop {
            self.pump();
            if let Some(tx) = self.take(|e| match e {
                SipEvent::Request { tx, request, .. } if request.method == Method::Bye => Some(*tx),
                _ => None,
            }) {
                let _ = self.ep.respond_tagged(
                    Instant::now(),
                    tx,
                    200,
                    None,
                    Headers::default(),
                    Bytes::new(),
                );
                break true;
            }
            // The other side moves the call (a transfer, a take-over, its own hold): a new
            // offer is answered and its address used from now on.
            if let Some((tx, req)) = self.take(|e| match e {
                SipEvent::Request { tx, request, .. }
                    if matches!(request.method, Method::Invite | Method::Update) =>
                {
                    Some((*tx, request.clone()))
                }
                _ => None,
            }) {
                let mut h = Headers::default();
                h.push("Contact", format!("<sip:{}@{}>", self.opts.user, self.addr));
                let offer = SessionDescription::parse(&req.body);
                match offer.as_ref().map(|sd| (sd, negotiate(sd))) {
                    Ok((sd, Ok(m))) if m.law == n.law => {
                        n = m;
                        summary.reoffers += 1;
                        h.push("Content-Type", "application/sdp");
                        let body = self.local_media(port, Some(&n)).answer(sd, n.index);
                        let _ = self.ep.respond_tagged(
                            Instant::now(),
                            tx,
                            200,
                            None,
                            h,
                            Bytes::from(body),
                        );
                    }
                    // A refresh without an offer: nothing changes.
                    _ if req.body.is_empty() => {
                        let _ =
                            self.ep
                                .respond_tagged(Instant::now(), tx, 200, None, h, Bytes::new());
                    }
                    _ => {
                        let _ =
                            self.ep
                                .respond_tagged(Instant::now(), tx, 488, None, h, Bytes::new());
                    }
                }
            }
            let up = t0.elapsed();
            if self.opts.hangup_after.is_some_and(|h| up >= h) || self.deadline_passed() {
                break false;
            }
            if self.keep_registered()? {
                self.refreshes += 1;
            }
            // Hold and resume.
            if let Some(at) = self.opts.hold_after {
                let want_held = up >= at && up < at + self.opts.hold_for;
                if reinvite.is_none() && want_held != held && hold_answers < 2 {
                    local.version += 1;
                    local.direction = if want_held {
                        Direction::SendOnly
                    } else {
                        Direction::SendRecv
                    };
                    let mut req = d.request(Method::Invite);
                    let cseq = cseq_of(&req);
                    req.headers
                        .push("Contact", format!("<sip:{}@{}>", self.opts.user, self.addr));
                    req.headers.push("Content-Type", "application/sdp");
                    req.body = Bytes::from(local.offer());
                    let tx = self
                        .ep
                        .send_request(Instant::now(), d.flow, req)
                        .map_err(|e| format!("{e:?}"))?;
                    reinvite = Some((tx, cseq, want_held));
                }
            }
            if let Some((tx, cseq, going)) = reinvite {
                if let Some(resp) = self.take(|e| match e {
                    SipEvent::Response { tx: t, response }
                        if *t == tx && response.status >= 200 =>
                    {
                        Some(response.clone())
                    }
                    _ => None,
                }) {
                    reinvite = None;
                    if (200..300).contains(&resp.status) {
                        let ack = d.ack(cseq);
                        self.ep.send_stateless_request(Instant::now(), d.flow, ack);
                        held = going;
                        hold_answers += 1;
                    } else {
                        return Err(format!(
                            "re-INVITE refused: {} {}",
                            resp.status, resp.reason
                        ));
                    }
                }
            }
            // Receive.
            while let Ok((len, _)) = self.rtp.recv_from(&mut buf) {
                if let Some(h) = parse_header(&buf[..len]) {
                    if h.payload_offset + h.payload_len <= len {
                        rx.packet(
                            &h,
                            &buf[..len],
                            n.law,
                            n.telephone_event,
                            self.start.elapsed().as_secs_f64(),
                        );
                    }
                }
            }
            // Send what is due (one 20 ms packet per 20 ms of the call).
            let due = up.as_millis() as u64 / 20;
            while frames < due {
                frames += 1;
                let Some(to) = n.remote else {
                    continue;
                };
                if held {
                    // On hold: the phone sends nothing (its timestamps move on).
                    pk.skip(SAMPLES_PER_PACKET as u32);
                    continue;
                }
                let at = Duration::from_millis(frames * 20);
                if keying.is_none() && at >= next_digit_at {
                    if let Some(dg) = digits.pop() {
                        keying = Some((dg, 0));
                        pk.mark();
                    }
                }
                match (keying, n.telephone_event) {
                    (Some((dg, k)), Some(ev_pt)) => {
                        let code = match dg {
                            '0'..='9' => dg as u8 - b'0',
                            '*' => 10,
                            '#' => 11,
                            'A'..='D' => dg as u8 - b'A' + 12,
                            _ => 0,
                        };
                        let end = k >= 2;
                        let duration = ((k.min(2) + 1) * SAMPLES_PER_PACKET as u32) as u16;
                        let payload = [
                            code,
                            if end { 0x80 | 10 } else { 10 },
                            (duration >> 8) as u8,
                            duration as u8,
                        ];
                        pk.packet(ev_pt, &payload, &mut packet);
                        // Events keep their first timestamp: undo the step.
                        pk.skip(0u32.wrapping_sub(SAMPLES_PER_PACKET as u32));
                        keying = if k >= 4 {
                            summary.digits_sent.push(dg);
                            pk.skip(5 * SAMPLES_PER_PACKET as u32);
                            pk.mark();
                            next_digit_at = at + Duration::from_millis(100);
                            None
                        } else {
                            Some((dg, k + 1))
                        };
                    }
                    _ => {
                        self.opts.source.frame(frames, &mut frame);
                        codes.clear();
                        n.law.encode_into(&frame, &mut codes);
                        pk.packet(n.pt, &codes, &mut packet);
                    }
                }
                if self.rtp.send_to(&packet, to).is_ok() {
                    summary.sent += 1;
                }
            }
            std::thread::sleep(Duration::from_millis(2));
        };
        summary.talk_s = t0.elapsed().as_secs_f64();
        summary.held_and_resumed = hold_answers >= 2;
        summary.hung_up_by = if their_bye { "them" } else { "us" }.into();
        if !their_bye {
            let bye = d.request(Method::Bye);
            let tx = self
                .ep
                .send_request(Instant::now(), d.flow, bye)
                .map_err(|e| format!("{e:?}"))?;
            let _ = self.final_response(tx);
        }
        summary.received = rx.packets;
        summary.lost = rx.lost();
        summary.jitter_ms = rx.jitter_ms();
        summary.digits_received = rx.digits.clone();
        if let Some(p) = &self.opts.record {
            rx.write_wav(p)?;
        }
        Ok(())
    }
}

/// Run the phone as `opts` says; the summary (with `error` set when something failed).
pub fn run(opts: Options) -> Summary {
    let mut summary = Summary::default();
    let mut ua = match Ua::new(opts.clone()) {
        Ok(ua) => ua,
        Err(e) => {
            summary.error = Some(e);
            return summary;
        }
    };
    if opts.register {
        if let Err(e) = ua.register(opts.expires) {
            summary.error = Some(e);
            return summary;
        }
        summary.registered = true;
    }
    let call = match &opts.dial {
        Some(number) => ua.place(number, &mut summary),
        None => ua.answer(),
    };
    match call {
        Ok((d, n)) => {
            summary.answered = true;
            summary.codec = match n.law {
                Law::Mu => "PCMU",
                Law::A => "PCMA",
            }
            .into();
            if let Err(e) = ua.talk(d, n, &mut summary) {
                summary.error = Some(e);
            }
        }
        Err(e) => summary.error = Some(e),
    }
    summary.refreshes = ua.refreshes;
    if opts.register {
        // Unregister (best effort).
        let _ = ua.register(0);
    }
    summary
}
