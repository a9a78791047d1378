//! The relay itself: one tokio task per call that owns the call's four sockets (RTP and RTCP
//! for the caller leg and for the agent leg) and everything that happens on them.
//!
//! ```text
//! loop {
//!     select! {
//!         command from call control   => remote addresses, bridge on/off, play, stop, close
//!         a socket is readable         => drain it: latch, detect DTMF, forward if bridged
//!         20 ms tick (while playing)   => send the prompt packets that are due
//!         1 s tick                     => media timeout check
//!     }
//! }
//! ```
//!
//! Latching (what NAT needs and what keeps strangers out, [`crate::latch`]): each leg accepts
//! RTP from one address, its *source*, and sends the leg's RTP there. Packets from the address
//! in the phone's SDP are accepted at once and make it the source. Any other address must first
//! send [`crate::latch::PROBATION`] (3) in-sequence RTP packets, and is learned then if it is
//! on the host the leg's SIP comes from (`SessionCommand::Remote::host`: a phone behind NAT),
//! otherwise only once the current source (before any packet, the SDP address) has been silent
//! for [`crate::latch::SILENCE`] (2 s): that is how a phone behind NAT is found, and found again
//! when its NAT mapping changes, while a stranger who sprays the port range before the phone
//! speaks (RTP bleed) learns nothing and cannot displace a phone that is talking. Until a source
//! is learned, the leg's audio goes to the SDP address only. A stranger's packets are dropped
//! before anything else looks at them (not forwarded, recorded or searched for DTMF), counted
//! ([`RelayStats::dropped_strangers`]), and logged at debug level once per address for the
//! first few addresses of a leg. RTCP is accepted from the SDP's RTCP address or from the host
//! of the RTP source. A new remote address from a re-INVITE starts the learning again.
//!
//! Each leg hears one continuous RTP stream from the server ([`crate::stream::OutStream`]):
//! its own random SSRC, sequence numbers and timestamps that continue across the greeting,
//! music, the other leg's audio, hold music and back, with the marker bit at every switch.
//! Forwarded packets are rewritten in place (12 header bytes; the payload is untouched). RTCP
//! is not forwarded (its SSRCs and counts would describe a stream the leg never received): the
//! relay sends each leg its own sender reports about the stream that leg hears, with a report
//! block about what that leg's phone sends, and a BYE when the call ends.
//!
//! Dropping the [`Session`] handle ends the task and returns the ports, so no exit path of call
//! control can leak a port pair.

use std::collections::VecDeque;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use recorder::g711::Law;
use recorder::service::RecordFrame;
use recorder::timeline::Channel as RecordChannel;
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tracing::{debug, warn};

use crate::latch::{Admission, Dropped, Latch};
use crate::ports::PortPool;
use crate::prompt::Prompt;
use crate::rtp::{TelephoneEvent, SAMPLES_PER_PACKET};
use crate::stream::{OutStream, Reception};

/// Relay settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaConfig {
    /// Address the RTP sockets bind to (`0.0.0.0` for all).
    pub bind: IpAddr,
    /// Address written into our SDP: what phones send RTP to.
    pub advertise: Ipv4Addr,
    /// Lowest port of the range.
    pub port_min: u16,
    /// Highest port of the range.
    pub port_max: u16,
    /// A leg that should be sending and has sent nothing (RTP or RTCP) for this long is
    /// reported with [`MediaEventKind::Timeout`].
    pub timeout: Duration,
    /// Requested socket receive buffer per RTP socket (bytes).
    pub recv_buffer: usize,
}

impl Default for MediaConfig {
    fn default() -> Self {
        MediaConfig {
            bind: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            advertise: Ipv4Addr::LOCALHOST,
            port_min: 10_000,
            port_max: 20_000,
            timeout: Duration::from_secs(60),
            recv_buffer: 256 * 1024,
        }
    }
}

/// The two legs of a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Leg {
    /// The calling party (the customer, or the calling extension).
    Caller,
    /// The called party (the agent's phone, or the called extension).
    Agent,
}

impl Leg {
    fn index(self) -> usize {
        match self {
            Leg::Caller => 0,
            Leg::Agent => 1,
        }
    }

    fn from_index(i: usize) -> Leg {
        if i == 0 {
            Leg::Caller
        } else {
            Leg::Agent
        }
    }

    /// The other leg.
    pub fn other(self) -> Leg {
        match self {
            Leg::Caller => Leg::Agent,
            Leg::Agent => Leg::Caller,
        }
    }
}

/// Identifies a call's media session (chosen by call control).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SessionId(pub u64);

/// What call control tells a session.
#[derive(Debug, Clone)]
pub enum SessionCommand {
    /// The peer of a leg, from its SDP.
    Remote {
        /// Which leg.
        leg: Leg,
        /// Where it wants RTP (`None` while it holds us with 0.0.0.0).
        rtp: Option<SocketAddr>,
        /// Codec of the leg (prompts are encoded with it).
        law: Law,
        /// Payload type of the codec.
        pt: u8,
        /// telephone-event payload type, if negotiated.
        telephone_event: Option<u8>,
        /// Whether the peer is expected to send (not on hold): only then does silence
        /// count towards the media timeout.
        sends: bool,
        /// The address the leg's signalling comes from (the phone's public address when it
        /// is behind NAT): RTP from that host is learned after the probation alone, without
        /// waiting out the signalled address's silence.
        host: Option<IpAddr>,
    },
    /// Connect the two legs (each hears the other) or disconnect them.
    Bridge(bool),
    /// Play prompts to a leg, then loop `then` (music on hold) if given. Replaces whatever
    /// the leg was playing.
    Play {
        /// Which leg hears it.
        leg: Leg,
        /// Played once each, in order.
        prompts: Vec<Prompt>,
        /// Looped afterwards until stopped.
        then: Option<Prompt>,
    },
    /// Stop playing to a leg.
    Stop(Leg),
    /// Copy every RTP packet each phone sends to the recorder (`None` stops). The copy never
    /// waits: a frame the recorder's queue cannot take is dropped and counted
    /// ([`SessionCounters::tap_dropped`]).
    Tap(Option<mpsc::Sender<RecordFrame>>),
}

/// What a session reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MediaEventKind {
    /// A DTMF key (RFC 4733), reported once per key press.
    Dtmf {
        /// Leg that pressed it.
        leg: Leg,
        /// The key.
        digit: char,
    },
    /// A leg that should be sending has been silent for the media timeout.
    Timeout {
        /// Which leg.
        leg: Leg,
    },
    /// A playback without a loop has finished.
    PlaybackDone {
        /// Which leg.
        leg: Leg,
    },
}

/// An event of one session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaEvent {
    /// The session.
    pub session: SessionId,
    /// What happened.
    pub kind: MediaEventKind,
}

/// Why a session could not be opened.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MediaError {
    /// Every port pair of the range is in use (or could not be bound).
    #[error("no free RTP ports in the configured range")]
    NoPorts,
    /// A socket could not be set up.
    #[error("RTP socket: {0}")]
    Socket(#[from] io::Error),
}

/// Relay counters (monotonic unless noted).
#[derive(Debug, Default)]
pub struct RelayStats {
    /// Sessions open now.
    pub sessions: AtomicU64,
    /// Packets received on relay ports.
    pub received: AtomicU64,
    /// Packets forwarded to the other leg.
    pub forwarded: AtomicU64,
    /// Packets from an address a leg does not accept: strangers, stale calls, and a phone
    /// behind NAT while it is on probation ([`crate::latch`]).
    pub dropped_strangers: AtomicU64,
    /// Packets that could not be sent (socket buffer full or error).
    pub send_errors: AtomicU64,
    /// Prompt packets sent.
    pub played: AtomicU64,
    /// Frames the recorder tap dropped (its queue was full), over all sessions.
    pub tap_dropped: AtomicU64,
}

/// Packet counts of one session, readable while it runs (and after).
#[derive(Debug, Default)]
pub struct SessionCounters {
    /// Valid packets received from each leg's phone (index: caller 0, agent 1).
    pub received: [AtomicU64; 2],
    /// Packets forwarded from each leg to the other.
    pub forwarded: [AtomicU64; 2],
    /// Packets from addresses the legs do not accept (see [`RelayStats::dropped_strangers`]),
    /// both legs.
    pub strangers: AtomicU64,
    /// Packets the recorder's queue could not take.
    pub tap_dropped: AtomicU64,
}

impl SessionCounters {
    /// Valid packets received from a leg.
    pub fn received(&self, leg: Leg) -> u64 {
        self.received[leg.index()].load(Ordering::Relaxed)
    }

    /// Packets forwarded from a leg to the other one.
    pub fn forwarded(&self, from: Leg) -> u64 {
        self.forwarded[from.index()].load(Ordering::Relaxed)
    }

    /// Packets the recorder's queue could not take.
    pub fn tap_dropped(&self) -> u64 {
        self.tap_dropped.load(Ordering::Relaxed)
    }

    /// Packets dropped because they came from an address the legs do not accept.
    pub fn strangers(&self) -> u64 {
        self.strangers.load(Ordering::Relaxed)
    }
}

struct Inner {
    cfg: MediaConfig,
    pool: Mutex<PortPool>,
    events: mpsc::Sender<MediaEvent>,
    stats: RelayStats,
}

/// Handle to the relay: opens sessions. Cheap to clone.
#[derive(Clone)]
pub struct Relay {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Relay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Relay")
            .field("cfg", &self.inner.cfg)
            .finish()
    }
}

/// A call's media session, owned by call control. Dropping it closes the session.
#[derive(Debug)]
pub struct Session {
    id: SessionId,
    counters: Arc<SessionCounters>,
    commands: mpsc::Sender<SessionCommand>,
    ports: [u16; 2],
    advertise: Ipv4Addr,
}

impl Session {
    /// The session's id.
    pub fn id(&self) -> SessionId {
        self.id
    }

    /// The session's packet counts.
    pub fn counters(&self) -> &SessionCounters {
        &self.counters
    }

    /// The RTP port of a leg (RTCP is the next one).
    pub fn port(&self, leg: Leg) -> u16 {
        self.ports[leg.index()]
    }

    /// The address our SDP gives for a leg.
    pub fn advertised(&self) -> Ipv4Addr {
        self.advertise
    }

    /// Send a command; false if the session is gone or its queue is full.
    pub fn command(&self, cmd: SessionCommand) -> bool {
        match self.commands.try_send(cmd) {
            Ok(()) => true,
            Err(e) => {
                warn!(session = self.id.0, error = %e, "media command dropped");
                false
            }
        }
    }
}

fn bind_pair(
    cfg: &MediaConfig,
    port: u16,
) -> io::Result<(std::net::UdpSocket, std::net::UdpSocket)> {
    use socket2::{Domain, Protocol, Socket, Type};
    let make = |p: u16| -> io::Result<std::net::UdpSocket> {
        let addr = SocketAddr::new(cfg.bind, p);
        let s = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
        let _ = s.set_recv_buffer_size(cfg.recv_buffer);
        s.bind(&addr.into())?;
        s.set_nonblocking(true)?;
        Ok(s.into())
    };
    Ok((make(port)?, make(port + 1)?))
}

impl Relay {
    /// A relay over `cfg`'s port range, reporting events to `events`.
    pub fn new(cfg: MediaConfig, events: mpsc::Sender<MediaEvent>) -> Relay {
        let pool = PortPool::new(cfg.port_min, cfg.port_max);
        Relay {
            inner: Arc::new(Inner {
                cfg,
                pool: Mutex::new(pool),
                events,
                stats: RelayStats::default(),
            }),
        }
    }

    /// The counters.
    pub fn stats(&self) -> &RelayStats {
        &self.inner.stats
    }

    /// Free port pairs (each leg takes one).
    pub fn free_pairs(&self) -> usize {
        self.inner.pool.lock().map_or(0, |p| p.available())
    }

    /// Open a session: bind a port pair per leg and start its task. Must be called inside a
    /// tokio runtime.
    pub fn open(&self, id: SessionId) -> Result<Session, MediaError> {
        let mut socks = Vec::with_capacity(2);
        let mut ports = [0u16; 2];
        for slot in &mut ports {
            let (port, pair) = self.bind_free_pair()?;
            *slot = port;
            socks.push(pair);
        }
        let mut io_legs = Vec::with_capacity(2);
        for (rtp, rtcp) in socks {
            io_legs.push(LegIo {
                rtp: UdpSocket::from_std(rtp)?,
                rtcp: UdpSocket::from_std(rtcp)?,
            });
        }
        let (tx, rx) = mpsc::channel(64);
        let b = io_legs.pop().expect("two legs");
        let a = io_legs.pop().expect("two legs");
        self.inner.stats.sessions.fetch_add(1, Ordering::Relaxed);
        let counters = Arc::new(SessionCounters::default());
        let task = SessionTask {
            id,
            counters: counters.clone(),
            relay: self.inner.clone(),
            io: [a, b],
            legs: [LegState::new(Instant::now()), LegState::new(Instant::now())],
            ports,
            bridged: false,
            tap: None,
        };
        tokio::spawn(task.run(rx));
        Ok(Session {
            id,
            counters,
            commands: tx,
            ports,
            advertise: self.inner.cfg.advertise,
        })
    }

    fn bind_free_pair(
        &self,
    ) -> Result<(u16, (std::net::UdpSocket, std::net::UdpSocket)), MediaError> {
        let mut pool = self.inner.pool.lock().map_err(|_| MediaError::NoPorts)?;
        // Ports another program holds are skipped (and go to the back of the line).
        for _ in 0..pool.available().min(64) {
            let Some(port) = pool.take() else { break };
            match bind_pair(&self.inner.cfg, port) {
                Ok(pair) => return Ok((port, pair)),
                Err(e) => {
                    debug!(port, error = %e, "RTP port pair unavailable");
                    pool.give(port);
                }
            }
        }
        Err(MediaError::NoPorts)
    }
}

struct LegIo {
    rtp: UdpSocket,
    rtcp: UdpSocket,
}

struct Playback {
    queue: VecDeque<Prompt>,
    then: Option<Prompt>,
    current: Option<Prompt>,
    pos: usize,
    started: Instant,
    sent: u64,
}

struct LegState {
    /// Whom the leg accepts packets from and sends them to.
    latch: Latch,
    law: Law,
    pt: u8,
    telephone_event: Option<u8>,
    sends: bool,
    active_since: Option<Instant>,
    last_rx: Option<Instant>,
    timed_out: bool,
    last_event_ts: Option<u32>,
    play: Option<Playback>,
    /// The stream this leg hears (prompts and the other leg's packets).
    out: OutStream,
    /// What this leg's phone sends us (for our RTCP reports to it).
    reception: Reception,
    /// When the next RTCP report to this leg is due.
    rtcp_next: Option<Instant>,
}

impl LegState {
    fn new(now: Instant) -> LegState {
        // SSRC, first sequence number and timestamp are random (RFC 3550 §5.1), drawn once
        // per leg when the session opens.
        let (ssrc, seq, ts): (u32, u16, u32) = (rand::random(), rand::random(), rand::random());
        LegState {
            latch: Latch::new(now),
            law: Law::Mu,
            pt: 0,
            telephone_event: None,
            sends: true,
            active_since: None,
            last_rx: None,
            timed_out: false,
            last_event_ts: None,
            play: None,
            out: OutStream::new(ssrc, seq, ts),
            reception: Reception::default(),
            rtcp_next: None,
        }
    }

    fn rtp_dest(&self) -> Option<SocketAddr> {
        self.latch.destination()
    }

    fn rtcp_dest(&self) -> Option<SocketAddr> {
        self.latch.rtcp_destination()
    }
}

struct SessionTask {
    id: SessionId,
    counters: Arc<SessionCounters>,
    relay: Arc<Inner>,
    io: [LegIo; 2],
    legs: [LegState; 2],
    ports: [u16; 2],
    bridged: bool,
    tap: Option<mpsc::Sender<RecordFrame>>,
}

#[derive(Clone, Copy)]
enum Channel {
    Rtp,
    Rtcp,
}

impl SessionTask {
    async fn run(mut self, mut commands: mpsc::Receiver<SessionCommand>) {
        let mut buf = vec![0u8; 2048];
        let mut out = Vec::with_capacity(256);
        let mut tick = tokio::time::interval(Duration::from_millis(20));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut check = tokio::time::interval(Duration::from_secs(1));
        check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut pending: Vec<MediaEventKind> = Vec::new();
        loop {
            let playing = self.legs.iter().any(|l| l.play.is_some());
            tokio::select! {
                // Commands first: a Remote or Bridge sent before a packet arrived applies
                // to that packet.
                biased;
                cmd = commands.recv() => match cmd {
                    Some(c) => self.command(c),
                    None => break,
                },
                r = self.io[0].rtp.readable() => if r.is_ok() { self.drain(0, Channel::Rtp, &mut buf, &mut pending) },
                r = self.io[0].rtcp.readable() => if r.is_ok() { self.drain(0, Channel::Rtcp, &mut buf, &mut pending) },
                r = self.io[1].rtp.readable() => if r.is_ok() { self.drain(1, Channel::Rtp, &mut buf, &mut pending) },
                r = self.io[1].rtcp.readable() => if r.is_ok() { self.drain(1, Channel::Rtcp, &mut buf, &mut pending) },
                _ = tick.tick(), if playing => self.play_due(Instant::now(), &mut out, &mut pending),
                _ = check.tick() => {
                    let now = Instant::now();
                    self.check_timeouts(now, &mut pending);
                    self.send_reports(now, &mut out);
                }
            }
            for kind in pending.drain(..) {
                let ev = MediaEvent {
                    session: self.id,
                    kind,
                };
                if self.relay.events.send(ev).await.is_err() {
                    break;
                }
            }
        }
        self.send_byes(&mut out);
        if let Ok(mut pool) = self.relay.pool.lock() {
            for p in self.ports {
                pool.give(p);
            }
        }
        self.relay.stats.sessions.fetch_sub(1, Ordering::Relaxed);
        debug!(session = self.id.0, "media session closed");
    }

    fn command(&mut self, cmd: SessionCommand) {
        match cmd {
            SessionCommand::Remote {
                leg,
                rtp,
                law,
                pt,
                telephone_event,
                sends,
                host,
            } => {
                let now = Instant::now();
                let l = &mut self.legs[leg.index()];
                // A peer that moved (re-INVITE) is learned again.
                l.latch.signal(now, rtp, sends);
                l.latch.signalling_host(host);
                l.law = law;
                l.pt = pt;
                l.telephone_event = telephone_event;
                l.sends = sends;
                l.timed_out = false;
                l.active_since = Some(now);
            }
            SessionCommand::Bridge(on) => self.bridged = on,
            SessionCommand::Play { leg, prompts, then } => {
                let l = &mut self.legs[leg.index()];
                l.out.mark();
                l.play = Some(Playback {
                    queue: prompts.into(),
                    then,
                    current: None,
                    pos: 0,
                    started: Instant::now(),
                    sent: 0,
                });
            }
            SessionCommand::Stop(leg) => self.legs[leg.index()].play = None,
            SessionCommand::Tap(t) => self.tap = t,
        }
    }

    fn drain(&mut self, i: usize, ch: Channel, buf: &mut [u8], pending: &mut Vec<MediaEventKind>) {
        // Bounded per wake-up so one flooded port cannot starve the others.
        for _ in 0..64 {
            let sock = match ch {
                Channel::Rtp => &self.io[i].rtp,
                Channel::Rtcp => &self.io[i].rtcp,
            };
            match sock.try_recv_from(buf) {
                Ok((n, from)) => self.packet(i, ch, &mut buf[..n], from, pending),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(_) => continue,
            }
        }
    }

    fn packet(
        &mut self,
        i: usize,
        ch: Channel,
        data: &mut [u8],
        from: SocketAddr,
        pending: &mut Vec<MediaEventKind>,
    ) {
        self.relay.stats.received.fetch_add(1, Ordering::Relaxed);
        let now = Instant::now();
        let leg = &mut self.legs[i];
        // Whom the packet is from comes first: a stranger's packet is dropped before anything
        // else looks at it.
        let verdict = match ch {
            Channel::Rtp => match leg.latch.admit(now, from, data) {
                Admission::Accept(h) => Ok(Some(h)),
                Admission::Learned(h) => {
                    debug!(session = self.id.0, leg = i, remote = %from, "media latched");
                    Ok(Some(h))
                }
                Admission::Drop(d) => Err(d),
            },
            Channel::Rtcp => leg.latch.admit_rtcp(from, data).map(|()| None),
        };
        let header = match verdict {
            Ok(h) => h,
            // From the phone, but not a valid RTP (or RTCP) packet: dropped, not counted.
            Err(Dropped::Malformed) => return,
            Err(Dropped::Stranger { report }) => {
                self.relay
                    .stats
                    .dropped_strangers
                    .fetch_add(1, Ordering::Relaxed);
                self.counters.strangers.fetch_add(1, Ordering::Relaxed);
                if report {
                    debug!(
                        session = self.id.0, leg = i, remote = %from,
                        "media from a stranger dropped"
                    );
                }
                return;
            }
        };
        leg.last_rx = Some(now);
        leg.timed_out = false;
        let Some(h) = header else {
            // The phone's RTCP: kept for our reports to it, never forwarded.
            leg.reception.on_rtcp(now, data);
            return;
        };
        self.counters.received[i].fetch_add(1, Ordering::Relaxed);
        leg.reception.on_rtp(now, h.seq, h.timestamp, h.ssrc);
        if leg.telephone_event == Some(h.payload_type) {
            let payload = &data[h.payload_offset..h.payload_offset + h.payload_len];
            if let Some(ev) = TelephoneEvent::parse(payload) {
                // One report per key press: the event's packets share its timestamp.
                if leg.last_event_ts != Some(h.timestamp) {
                    leg.last_event_ts = Some(h.timestamp);
                    if let Some(digit) = ev.digit() {
                        pending.push(MediaEventKind::Dtmf {
                            leg: Leg::from_index(i),
                            digit,
                        });
                    }
                }
            }
        }
        if let Some(tap) = &self.tap {
            let frame = RecordFrame {
                call: self.id.0,
                channel: if i == 0 {
                    RecordChannel::Left
                } else {
                    RecordChannel::Right
                },
                at: now,
                packet: Bytes::copy_from_slice(data),
            };
            if tap.try_send(frame).is_err() {
                self.counters.tap_dropped.fetch_add(1, Ordering::Relaxed);
                self.relay.stats.tap_dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
        let o = 1 - i;
        // A leg that hears a prompt or music hears only that: two sources interleaved in one
        // stream would be noise.
        if !self.bridged || self.legs[o].play.is_some() {
            return;
        }
        let from_te = self.legs[i].telephone_event;
        let to_te = self.legs[o].telephone_event;
        let Some(dest) = self.legs[o].rtp_dest() else {
            return;
        };
        if !self.legs[o]
            .out
            .forward(now, data, |pt| match (from_te, to_te) {
                (Some(f), Some(t)) if pt == f => t,
                _ => pt,
            })
        {
            return;
        }
        self.schedule_report(o, now);
        match self.io[o].rtp.try_send_to(data, dest) {
            Ok(_) => {
                self.relay.stats.forwarded.fetch_add(1, Ordering::Relaxed);
                self.counters.forwarded[i].fetch_add(1, Ordering::Relaxed);
            }
            Err(_) => {
                self.relay.stats.send_errors.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// The first packet to a leg schedules its first RTCP report (RFC 3550 §6.2: the first
    /// one goes out after half the minimum interval).
    fn schedule_report(&mut self, i: usize, now: Instant) {
        let leg = &mut self.legs[i];
        if leg.rtcp_next.is_none() {
            leg.rtcp_next = Some(now + RTCP_INTERVAL / 2);
        }
    }

    /// Send every leg whose report is due its RTCP sender report.
    fn send_reports(&mut self, now: Instant, out: &mut Vec<u8>) {
        let ntp = ntp_now();
        for i in 0..2 {
            let leg = &mut self.legs[i];
            let due = match leg.rtcp_next {
                Some(at) => at <= now,
                // A leg we send nothing to still gets receiver reports about what it sends.
                None => leg.reception.received() > 0,
            };
            if !due {
                continue;
            }
            // 0.5–1.5 × the interval, so the reports of many calls do not line up.
            let spread = RTCP_INTERVAL.mul_f64(0.5 + rand::random::<f64>());
            leg.rtcp_next = Some(now + spread);
            let Some(dest) = leg.rtcp_dest() else {
                continue;
            };
            if leg
                .out
                .rtcp_report(now, ntp, &mut leg.reception, RTCP_CNAME, out)
            {
                let _ = self.io[i].rtcp.try_send_to(out, dest);
            }
        }
    }

    /// The call is over: each leg that heard our stream gets an RTCP BYE for it.
    fn send_byes(&mut self, out: &mut Vec<u8>) {
        for i in 0..2 {
            let leg = &self.legs[i];
            if leg.out.packets() == 0 {
                continue;
            }
            if let Some(dest) = leg.rtcp_dest() {
                leg.out.rtcp_bye(RTCP_CNAME, out);
                let _ = self.io[i].rtcp.try_send_to(out, dest);
            }
        }
    }

    fn play_due(&mut self, now: Instant, buf: &mut Vec<u8>, pending: &mut Vec<MediaEventKind>) {
        let mut frame = [0u8; SAMPLES_PER_PACKET];
        for i in 0..2 {
            let dest = self.legs[i].rtp_dest();
            let leg = &mut self.legs[i];
            let Some(play) = leg.play.as_mut() else {
                continue;
            };
            let due = (now.saturating_duration_since(play.started).as_millis() / 20) as u64 + 1;
            if due > play.sent + 10 {
                // The task was starved: skip the lost time instead of bursting it out.
                let skipped = due - play.sent - 1;
                leg.out.skip((skipped * SAMPLES_PER_PACKET as u64) as u32);
                play.sent += skipped;
            }
            let mut finished = false;
            while play.sent < due {
                // Fill one frame from the prompts, moving to the next when one runs out.
                let mut filled = 0;
                while filled < SAMPLES_PER_PACKET {
                    if play.current.is_none() {
                        play.current = play.queue.pop_front().or_else(|| play.then.clone());
                        play.pos = 0;
                        if play.current.is_none() {
                            break;
                        }
                        if play.sent > 0 {
                            // Each prompt is a talkspurt of its own (the first is marked
                            // when the playback starts).
                            leg.out.mark();
                        }
                    }
                    let Some(p) = play.current.as_ref() else {
                        break;
                    };
                    let audio = p.encoded(leg.law);
                    let take = (audio.len() - play.pos).min(SAMPLES_PER_PACKET - filled);
                    frame[filled..filled + take].copy_from_slice(&audio[play.pos..play.pos + take]);
                    filled += take;
                    play.pos += take;
                    if play.pos >= audio.len() {
                        play.current = None;
                    }
                }
                if filled == 0 {
                    finished = true;
                    break;
                }
                frame[filled..].fill(leg.law.silence());
                play.sent += 1;
                leg.out.originate(now, leg.pt, &frame, buf);
                if leg.rtcp_next.is_none() {
                    leg.rtcp_next = Some(now + RTCP_INTERVAL / 2);
                }
                if let Some(dest) = dest {
                    if self.io[i].rtp.try_send_to(buf, dest).is_ok() {
                        self.relay.stats.played.fetch_add(1, Ordering::Relaxed);
                    } else {
                        self.relay.stats.send_errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            if finished {
                leg.play = None;
                pending.push(MediaEventKind::PlaybackDone {
                    leg: Leg::from_index(i),
                });
            }
        }
    }

    fn check_timeouts(&mut self, now: Instant, pending: &mut Vec<MediaEventKind>) {
        let limit = self.relay.cfg.timeout;
        for (i, leg) in self.legs.iter_mut().enumerate() {
            let Some(since) = leg.active_since else {
                continue;
            };
            if !leg.sends || leg.timed_out {
                continue;
            }
            let last = leg.last_rx.map_or(since, |t| t.max(since));
            if now.saturating_duration_since(last) >= limit {
                leg.timed_out = true;
                pending.push(MediaEventKind::Timeout {
                    leg: Leg::from_index(i),
                });
            }
        }
    }
}

/// Minimum RTCP report interval (RFC 3550 §6.2).
const RTCP_INTERVAL: Duration = Duration::from_secs(5);

/// The CNAME of our streams.
const RTCP_CNAME: &str = "switchboard";

/// The wall clock as a 64-bit NTP timestamp (seconds since 1900 and a binary fraction).
fn ntp_now() -> u64 {
    const UNIX_TO_NTP: u64 = 2_208_988_800;
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let secs = d.as_secs() + UNIX_TO_NTP;
    let frac = (u64::from(d.subsec_nanos()) << 32) / 1_000_000_000;
    (secs << 32) | frac
}
