//! One phone on real sockets: the driver of a [`Phone`] and its call's [`Stream`] for the
//! headless mode and the terminal UI. SIP over UDP or TCP to the server, RTP over UDP, one
//! thread; [`Station::step`] moves everything along and returns what the phone reports.
//!
//! For troubleshooting, [`Station::enable_trace`] keeps the SIP messages sent and received
//! (not the keep-alives) until the driver takes them with [`Station::poll_trace`].

use std::collections::{HashMap, VecDeque};
use std::io::{ErrorKind, Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream, UdpSocket};
use std::time::{Duration, Instant, SystemTime};

use sip::parse::{Framed, StreamFramer};
use sip::{ConnId, Endpoint, Flow, Transport};

use crate::audio::Source;
use crate::stream::Stream;
use crate::ua::{Account, Command, Phone, PhoneEvent};

/// How the station is set up.
#[derive(Debug, Clone)]
pub struct StationConfig {
    /// The server.
    pub server: SocketAddr,
    /// SIP over TCP (else UDP).
    pub tcp: bool,
    /// Local address to bind and advertise.
    pub local: IpAddr,
    /// SIP user.
    pub user: String,
    /// Its password.
    pub password: String,
    /// Domain of the From/To URIs.
    pub domain: String,
    /// Registration expiry asked for.
    pub expires: u32,
    /// NAT keep-alive interval.
    pub keepalive: Option<Duration>,
    /// What the phone sends.
    pub source: Source,
    /// Jitter buffer depth when what the phone plays is kept (recording).
    pub playout: Option<Duration>,
    /// Use the sound card (microphone and loudspeaker) when there is one.
    pub sound_card: bool,
}

/// A SIP message as it went over the wire, for the troubleshooting view.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TracedMessage {
    /// When it was sent or received.
    pub at: SystemTime,
    /// We sent it (else we received it).
    pub sent: bool,
    /// The other end: where it went, or where it came from.
    pub peer: SocketAddr,
    /// The whole message (lossy UTF-8).
    pub text: String,
}

/// The messages not yet taken, at most `keep` of them (the oldest are dropped).
#[derive(Debug)]
struct Trace {
    keep: usize,
    messages: VecDeque<TracedMessage>,
}

impl Trace {
    fn push(&mut self, sent: bool, peer: SocketAddr, bytes: &[u8]) {
        if self.messages.len() == self.keep {
            self.messages.pop_front();
        }
        self.messages.push_back(TracedMessage {
            at: SystemTime::now(),
            sent,
            peer,
            text: String::from_utf8_lossy(bytes).into_owned(),
        });
    }
}

enum SipSocket {
    Udp(UdpSocket),
    Tcp(TcpStream, StreamFramer),
}

/// One phone on its sockets.
pub struct Station {
    /// The SIP endpoint (transactions).
    pub ep: Endpoint,
    /// The phone.
    pub phone: Phone,
    /// The call's audio while it is up.
    pub stream: Option<Stream>,
    /// The audio of the last call that ended.
    pub last_stream: Option<Stream>,
    /// The audio of the call that was held during a consultation, once it ended.
    pub held_stream: Option<Stream>,
    sip: SipSocket,
    /// Two RTP sockets: a call and, during a consultation, the other one.
    rtp: [UdpSocket; 2],
    rtp_port: [u16; 2],
    /// The socket of the call's audio, and of the audio being set up.
    sock: usize,
    next_sock: usize,
    /// The held call's audio (and its socket) during a consultation.
    parked: Option<(Stream, usize)>,
    source: Source,
    playout: Option<Duration>,
    start: Instant,
    seed: u64,
    muted: bool,
    out: Vec<u8>,
    /// A fatal transport failure (the TCP connection closed).
    pub broken: Option<String>,
    /// The phone's address as the server sees it (from its STUN keep-alives over UDP).
    pub public_address: Option<SocketAddr>,
    /// The transaction id of the last STUN keep-alive sent.
    stun_tid: [u8; 12],
    /// Something the user should know that did not stop the phone (no sound card).
    pub notice: Option<String>,
    /// What the jitter buffer plays goes to the loudspeaker (and is not kept).
    #[cfg(feature = "sound-card")]
    card: Option<std::sync::Arc<crate::device::SoundCard>>,
    trace: Option<Trace>,
}

fn seed() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    h.finish()
}

impl Station {
    /// Bind the sockets (connect, for TCP) and build the phone.
    pub fn open(cfg: &StationConfig) -> Result<Station, String> {
        let bind = || -> Result<(UdpSocket, u16), String> {
            let s = UdpSocket::bind((cfg.local, 0)).map_err(|e| format!("RTP socket: {e}"))?;
            s.set_nonblocking(true).map_err(|e| e.to_string())?;
            let port = s.local_addr().map_err(|e| e.to_string())?.port();
            Ok((s, port))
        };
        let ((rtp0, port0), (rtp1, port1)) = (bind()?, bind()?);
        let (rtp, rtp_port) = ([rtp0, rtp1], [port0, port1]);
        let (sip, contact, flow) = if cfg.tcp {
            let s = TcpStream::connect(cfg.server)
                .map_err(|e| format!("SIP over TCP to {}: {e}", cfg.server))?;
            s.set_read_timeout(Some(Duration::from_millis(2)))
                .map_err(|e| e.to_string())?;
            let _ = s.set_nodelay(true);
            let local = s.local_addr().map_err(|e| e.to_string())?;
            let flow = Flow {
                transport: Transport::Tcp,
                remote: cfg.server,
                conn: Some(ConnId(1)),
            };
            (SipSocket::Tcp(s, StreamFramer::new(65_535)), local, flow)
        } else {
            let s = UdpSocket::bind((cfg.local, 0)).map_err(|e| format!("SIP socket: {e}"))?;
            s.set_read_timeout(Some(Duration::from_millis(2)))
                .map_err(|e| e.to_string())?;
            let local = s.local_addr().map_err(|e| e.to_string())?;
            let flow = Flow {
                transport: Transport::Udp,
                remote: cfg.server,
                conn: None,
            };
            (SipSocket::Udp(s), local, flow)
        };
        let seed = seed();
        let ep_cfg = crate::ua::endpoint_config(contact.to_string(), seed);
        let media_addr = match cfg.local {
            IpAddr::V4(a) => a,
            IpAddr::V6(_) => Ipv4Addr::LOCALHOST,
        };
        let acct = Account {
            user: cfg.user.clone(),
            password: cfg.password.clone(),
            domain: cfg.domain.clone(),
            server: flow,
            contact,
            media_addr,
            expires: cfg.expires,
            keepalive: cfg.keepalive,
        };
        // (The sound card, when built in, replaces these two.)
        #[cfg_attr(not(feature = "sound-card"), allow(unused_mut))]
        let mut source = cfg.source.clone();
        #[cfg_attr(not(feature = "sound-card"), allow(unused_mut))]
        let mut playout = cfg.playout;
        let mut notice = None;
        #[cfg(feature = "sound-card")]
        let card = if cfg.sound_card {
            match crate::device::SoundCard::open() {
                Ok(card) => {
                    let card = std::sync::Arc::new(card);
                    source = Source::Microphone(card.clone());
                    playout = playout.or(Some(Duration::from_millis(60)));
                    notice = Some(format!("sound card: {}", card.description));
                    Some(card)
                }
                Err(why) => {
                    notice = Some(format!("no sound card ({why}): the phone is silent"));
                    None
                }
            }
        } else {
            None
        };
        #[cfg(not(feature = "sound-card"))]
        if cfg.sound_card {
            notice = Some(
                "this build has no sound card support (cargo feature sound-card): the phone is silent"
                    .into(),
            );
        }
        Ok(Station {
            ep: Endpoint::new(ep_cfg, HashMap::new(), Instant::now()),
            phone: Phone::new(acct, seed),
            stream: None,
            last_stream: None,
            held_stream: None,
            sip,
            rtp,
            rtp_port,
            sock: 0,
            next_sock: 0,
            parked: None,
            source,
            playout,
            start: Instant::now(),
            seed,
            muted: false,
            out: Vec::with_capacity(200),
            broken: None,
            public_address: None,
            stun_tid: [0; 12],
            notice,
            #[cfg(feature = "sound-card")]
            card,
            trace: None,
        })
    }

    /// Give the phone a command now. Dial, answer and consult use the station's RTP
    /// sockets (the one the held call does not use).
    pub fn command(&mut self, cmd: Command) {
        let free = match &self.parked {
            Some((_, k)) => 1 - k,
            None if matches!(cmd, Command::Consult { .. }) => 1 - self.sock,
            None => 0,
        };
        if matches!(
            cmd,
            Command::Dial { .. } | Command::Answer { .. } | Command::Consult { .. }
        ) {
            self.next_sock = free;
        }
        let cmd = match cmd {
            Command::Dial { number, .. } => Command::Dial {
                number,
                rtp_port: self.rtp_port[free],
            },
            Command::Answer { .. } => Command::Answer {
                rtp_port: self.rtp_port[free],
            },
            Command::Consult { number, .. } => {
                // The call's audio waits (on hold) while the consultation has its own (the
                // phone refuses a consultation unless one call is up and none held).
                let allowed = self.phone.in_call() && self.phone.held_call().is_none();
                if allowed && self.parked.is_none() {
                    if let Some(s) = self.stream.take() {
                        self.parked = Some((s, self.sock));
                    }
                }
                Command::Consult {
                    number,
                    rtp_port: self.rtp_port[free],
                }
            }
            other => other,
        };
        self.phone.command(Instant::now(), &mut self.ep, cmd);
        self.flush();
    }

    /// Mute or unmute the microphone (kept across calls).
    pub fn set_muted(&mut self, muted: bool) {
        self.muted = muted;
        if let Some(s) = self.stream.as_mut() {
            s.set_muted(muted);
        }
    }

    /// Muted now.
    pub fn muted(&self) -> bool {
        self.muted
    }

    /// Key digits on the call (RFC 4733).
    pub fn key(&mut self, digits: &str) {
        if let Some(s) = self.stream.as_mut() {
            s.key(digits);
        }
    }

    /// Keep the SIP messages sent and received from now on, the last `keep` of them until
    /// they are taken with [`Station::poll_trace`] (0: stop keeping them).
    pub fn enable_trace(&mut self, keep: usize) {
        self.trace = (keep > 0).then(|| Trace {
            keep,
            messages: VecDeque::new(),
        });
    }

    /// The oldest SIP message kept and not yet taken.
    pub fn poll_trace(&mut self) -> Option<TracedMessage> {
        self.trace.as_mut()?.messages.pop_front()
    }

    fn flush(&mut self) {
        while let Some(t) = self.ep.poll_transmit() {
            if let Some(trace) = self.trace.as_mut() {
                trace.push(true, t.flow.remote, &t.payload);
            }
            match &mut self.sip {
                SipSocket::Udp(s) => {
                    let _ = s.send_to(&t.payload, t.flow.remote);
                }
                SipSocket::Tcp(s, _) => {
                    if let Err(e) = s.write_all(&t.payload) {
                        self.broken = Some(format!("SIP connection: {e}"));
                    }
                }
            }
        }
        while let Some(flow) = self.phone.poll_ping() {
            match &mut self.sip {
                SipSocket::Udp(s) => {
                    // Over UDP a STUN Binding request (RFC 5626 §4.4.1): the answer keeps
                    // the NAT binding and says what address the server sees.
                    self.seed = self
                        .seed
                        .wrapping_mul(6_364_136_223_846_793_005)
                        .wrapping_add(1);
                    let mut tid = [0u8; 12];
                    tid[..8].copy_from_slice(&self.seed.to_be_bytes());
                    tid[8..].copy_from_slice(b"keep");
                    self.stun_tid = tid;
                    let _ = s.send_to(&sip::stun::binding_request(tid), flow.remote);
                }
                SipSocket::Tcp(s, _) => {
                    let _ = s.write_all(b"\r\n\r\n");
                }
            }
        }
    }

    /// Move everything along (waiting at most a few milliseconds for SIP); what the phone
    /// reported. Audio starts, moves and stops here as the events say.
    pub fn step(&mut self) -> Vec<PhoneEvent> {
        let now = Instant::now();
        if self.ep.poll_timeout().is_some_and(|t| t <= now) {
            self.ep.handle_timeout(now);
        }
        if self.phone.poll_timeout().is_some_and(|t| t <= now) {
            self.phone.handle_timeout(now, &mut self.ep);
        }
        self.flush();
        self.read_sip();
        while let Some(ev) = self.ep.poll_event() {
            self.phone.handle(Instant::now(), &mut self.ep, ev);
        }
        self.flush();
        // (One phone per endpoint here: its transactions need no map.)
        self.phone.drain_sent().for_each(drop);
        let mut events = Vec::new();
        while let Some(ev) = self.phone.poll_event() {
            match &ev {
                PhoneEvent::Answered(m) => {
                    self.sock = self.next_sock;
                    self.seed = self
                        .seed
                        .wrapping_mul(6_364_136_223_846_793_005)
                        .wrapping_add(1);
                    let mut s = Stream::new(
                        Instant::now(),
                        self.seed,
                        m,
                        self.source.clone(),
                        self.playout,
                    );
                    s.set_muted(self.muted);
                    self.stream = Some(s);
                }
                PhoneEvent::MediaChanged(m) => {
                    if let Some(s) = self.stream.as_mut() {
                        s.update(m);
                    }
                }
                PhoneEvent::Held(held) => {
                    if let Some(s) = self.stream.as_mut() {
                        s.set_sending(!held);
                    }
                }
                PhoneEvent::Ended { .. } => {
                    if let Some(s) = self.stream.take() {
                        self.last_stream = Some(s);
                    }
                }
                PhoneEvent::Retrieved(m) => {
                    if let Some((mut s, k)) = self.parked.take() {
                        s.update(m);
                        self.sock = k;
                        self.stream = Some(s);
                    }
                }
                PhoneEvent::HeldCallEnded { .. } => {
                    // The held call's audio is what a script asks about afterwards (the
                    // caller's side of a transferred call).
                    if let Some((s, _)) = self.parked.take() {
                        self.held_stream = Some(s);
                    }
                }
                _ => {}
            }
            events.push(ev);
        }
        self.media();
        events
    }

    fn read_sip(&mut self) {
        let mut buf = [0u8; 65_535];
        let flow = self.phone.account().server;
        match &mut self.sip {
            SipSocket::Udp(s) => {
                while let Ok((n, from)) = s.recv_from(&mut buf) {
                    let flow = Flow {
                        transport: Transport::Udp,
                        remote: from,
                        conn: None,
                    };
                    if sip::stun::is_stun(&buf[..n]) {
                        if let Some(a) = sip::stun::mapped_address(&buf[..n], self.stun_tid) {
                            self.public_address = Some(a);
                        }
                        continue;
                    }
                    if let Some(trace) = self.trace.as_mut() {
                        if !buf[..n].iter().all(u8::is_ascii_whitespace) {
                            trace.push(false, from, &buf[..n]);
                        }
                    }
                    self.ep.handle_message(Instant::now(), flow, &buf[..n]);
                }
            }
            SipSocket::Tcp(s, framer) => loop {
                match s.read(&mut buf) {
                    Ok(0) => {
                        self.broken = Some("the server closed the SIP connection".into());
                        break;
                    }
                    Ok(n) => {
                        framer.push(&buf[..n]);
                        loop {
                            match framer.next_item() {
                                Ok(Some(Framed::Message(m))) => {
                                    if let Some(trace) = self.trace.as_mut() {
                                        trace.push(false, flow.remote, &m);
                                    }
                                    self.ep.handle_message(Instant::now(), flow, &m);
                                }
                                Ok(Some(Framed::Ping)) => {
                                    let _ = s.write_all(b"\r\n");
                                }
                                Ok(None) => break,
                                Err(e) => {
                                    self.broken = Some(format!("SIP connection: {e:?}"));
                                    break;
                                }
                            }
                        }
                    }
                    Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                        break
                    }
                    Err(e) => {
                        self.broken = Some(format!("SIP connection: {e}"));
                        break;
                    }
                }
            },
        }
    }

    fn media(&mut self) {
        let mut buf = [0u8; 2048];
        // What arrives on a socket no playing call uses is drained unheard.
        for k in 0..2 {
            if self.stream.is_none() || k != self.sock {
                while self.rtp[k].recv_from(&mut buf).is_ok() {}
            }
        }
        let Some(s) = self.stream.as_mut() else {
            return;
        };
        let rtp = &self.rtp[self.sock];
        while let Ok((n, _)) = rtp.recv_from(&mut buf) {
            let now = Instant::now();
            s.receive(now, &buf[..n], now.duration_since(self.start).as_secs_f64());
        }
        while let Some(to) = s.poll_transmit(Instant::now(), &mut self.out) {
            let _ = rtp.send_to(&self.out, to);
        }
        #[cfg(feature = "sound-card")]
        if let Some(card) = &self.card {
            // Played, then dropped: a call on the loudspeaker is not kept in memory.
            if !s.rx.samples.is_empty() {
                card.play(&s.rx.samples);
                s.rx.samples.clear();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(server: SocketAddr) -> StationConfig {
        StationConfig {
            server,
            tcp: false,
            local: IpAddr::V4(Ipv4Addr::LOCALHOST),
            user: "1001".into(),
            password: "demo1001".into(),
            domain: "switchboard".into(),
            expires: 300,
            keepalive: None,
            source: Source::Silence,
            playout: None,
            sound_card: false,
        }
    }

    #[test]
    fn the_trace_keeps_what_was_sent_and_received_but_not_keep_alives() {
        let server = UdpSocket::bind("127.0.0.1:0").unwrap();
        server
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let mut st = Station::open(&config(server.local_addr().unwrap())).unwrap();
        st.step();
        assert_eq!(
            st.poll_trace(),
            None,
            "nothing is kept before it is asked for"
        );

        st.enable_trace(3);
        st.command(Command::Register);
        let mut buf = [0u8; 4096];
        let (_, phone) = server.recv_from(&mut buf).unwrap();
        server.send_to(b"\r\n\r\n", phone).unwrap();
        let options = |n: u32| {
            format!(
                "OPTIONS sip:1001@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP {server};branch=z9hG4bK{n}\r\n\
                 From: <sip:s@x>;tag=a\r\nTo: <sip:1001@x>\r\nCall-ID: o{n}\r\nCSeq: {n} OPTIONS\r\n\
                 Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n",
                server = server.local_addr().unwrap()
            )
        };
        server.send_to(options(1).as_bytes(), phone).unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut seen = Vec::new();
        while Instant::now() < deadline && !seen.iter().any(|m: &TracedMessage| !m.sent) {
            st.step();
            while let Some(m) = st.poll_trace() {
                seen.push(m);
            }
        }
        assert!(
            seen.iter().any(|m| m.sent
                && m.text.starts_with("REGISTER ")
                && m.peer == server.local_addr().unwrap()),
            "{seen:?}"
        );
        let received: Vec<_> = seen.iter().filter(|m| !m.sent).collect();
        assert_eq!(received.len(), 1, "the keep-alive is not kept: {seen:?}");
        assert!(received[0].text.starts_with("OPTIONS "), "{seen:?}");
        assert_eq!(received[0].peer, server.local_addr().unwrap());

        st.enable_trace(0);
        st.command(Command::Register);
        assert_eq!(st.poll_trace(), None);
    }

    #[test]
    fn the_trace_drops_the_oldest_beyond_what_it_keeps() {
        let peer: SocketAddr = "127.0.0.1:5060".parse().unwrap();
        let mut trace = Trace {
            keep: 3,
            messages: VecDeque::new(),
        };
        for n in 1..=5 {
            trace.push(n % 2 == 0, peer, format!("message {n}").as_bytes());
        }
        let texts: Vec<_> = trace.messages.iter().map(|m| m.text.as_str()).collect();
        assert_eq!(texts, ["message 3", "message 4", "message 5"]);
        assert!(trace.messages[1].sent && !trace.messages[2].sent);
    }
}
