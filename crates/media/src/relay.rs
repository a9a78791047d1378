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
//! Symmetric latching (what NAT needs and what keeps strangers out): a leg learns its peer's
//! real address from the first valid packet that reaches its port and from then on accepts
//! packets from that address only; packets to the leg go there too (or, before anything
//! arrived, to the address in the peer's SDP). A new remote address from a re-INVITE starts
//! the learning again. Packets are forwarded as received, never rewritten.
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

use crate::ports::PortPool;
use crate::prompt::Prompt;
use crate::rtp::{parse_header, Packetizer, TelephoneEvent, SAMPLES_PER_PACKET};

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
    /// Packets from an address other than the latched one (strangers, stale calls).
    pub dropped_strangers: AtomicU64,
    /// Packets that could not be sent (socket buffer full or error).
    pub send_errors: AtomicU64,
    /// Prompt packets sent.
    pub played: AtomicU64,
}

/// Packet counts of one session, readable while it runs (and after).
#[derive(Debug, Default)]
pub struct SessionCounters {
    /// Valid packets received from each leg's phone (index: caller 0, agent 1).
    pub received: [AtomicU64; 2],
    /// Packets forwarded from each leg to the other.
    pub forwarded: [AtomicU64; 2],
    /// Packets from strangers (not the latched address), both legs.
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
            legs: [LegState::new(id.0, 0), LegState::new(id.0, 1)],
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
    remote: Option<SocketAddr>,
    latched: Option<SocketAddr>,
    latched_rtcp: Option<SocketAddr>,
    law: Law,
    pt: u8,
    telephone_event: Option<u8>,
    sends: bool,
    active_since: Option<Instant>,
    last_rx: Option<Instant>,
    timed_out: bool,
    last_event_ts: Option<u32>,
    play: Option<Playback>,
    packetizer: Packetizer,
}

impl LegState {
    fn new(seed: u64, leg: u64) -> LegState {
        // SSRC, sequence and timestamp start from a hash of the session and leg: distinct per
        // stream without a random number generator in the hot path.
        let mut x = seed
            .wrapping_mul(0x9E37_79B9_7F4A_7C15)
            .wrapping_add(leg.wrapping_mul(0xD1B5_4A32_D192_ED03));
        x ^= x >> 29;
        x = x.wrapping_mul(0xBF58_476D_1CE4_E5B9);
        x ^= x >> 32;
        LegState {
            remote: None,
            latched: None,
            latched_rtcp: None,
            law: Law::Mu,
            pt: 0,
            telephone_event: None,
            sends: true,
            active_since: None,
            last_rx: None,
            timed_out: false,
            last_event_ts: None,
            play: None,
            packetizer: Packetizer::new(x as u32, (x >> 32) as u16, (x >> 40) as u32),
        }
    }

    fn rtp_dest(&self) -> Option<SocketAddr> {
        self.latched.or(self.remote)
    }

    fn rtcp_dest(&self) -> Option<SocketAddr> {
        self.latched_rtcp.or_else(|| {
            self.remote
                .map(|r| SocketAddr::new(r.ip(), r.port().wrapping_add(1)))
        })
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
                _ = tick.tick(), if playing => self.play_due(Instant::now(), &mut buf, &mut pending),
                _ = check.tick() => self.check_timeouts(Instant::now(), &mut pending),
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
            } => {
                let l = &mut self.legs[leg.index()];
                if l.remote.is_some() && l.remote != rtp {
                    // The peer moved (re-INVITE): learn its address again.
                    l.latched = None;
                    l.latched_rtcp = None;
                }
                l.remote = rtp;
                l.law = law;
                l.pt = pt;
                l.telephone_event = telephone_event;
                l.sends = sends;
                l.timed_out = false;
                l.active_since = Some(Instant::now());
            }
            SessionCommand::Bridge(on) => self.bridged = on,
            SessionCommand::Play { leg, prompts, then } => {
                let l = &mut self.legs[leg.index()];
                l.packetizer.mark();
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
                Ok((n, from)) => self.packet(i, ch, &buf[..n], from, pending),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(_) => continue,
            }
        }
    }

    fn packet(
        &mut self,
        i: usize,
        ch: Channel,
        data: &[u8],
        from: SocketAddr,
        pending: &mut Vec<MediaEventKind>,
    ) {
        let stats = &self.relay.stats;
        stats.received.fetch_add(1, Ordering::Relaxed);
        let now = Instant::now();
        let leg = &mut self.legs[i];
        let header = match ch {
            Channel::Rtp => match parse_header(data) {
                Some(h) => Some(h),
                None => return, // not RTP: never latch on it, never forward it
            },
            Channel::Rtcp => {
                if data.len() < 8 || data[0] >> 6 != 2 {
                    return;
                }
                None
            }
        };
        let slot = match ch {
            Channel::Rtp => &mut leg.latched,
            Channel::Rtcp => &mut leg.latched_rtcp,
        };
        match slot {
            Some(addr) if *addr != from => {
                stats.dropped_strangers.fetch_add(1, Ordering::Relaxed);
                self.counters.strangers.fetch_add(1, Ordering::Relaxed);
                return;
            }
            Some(_) => {}
            None => {
                debug!(session = self.id.0, leg = i, remote = %from, "media latched");
                *slot = Some(from);
            }
        }
        leg.last_rx = Some(now);
        leg.timed_out = false;
        if header.is_some() {
            self.counters.received[i].fetch_add(1, Ordering::Relaxed);
        }
        if let (Some(h), Some(te)) = (header, leg.telephone_event) {
            if h.payload_type == te {
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
        }
        if let (Some(tap), Some(_)) = (&self.tap, header) {
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
            }
        }
        if !self.bridged {
            return;
        }
        let o = 1 - i;
        let (dest, sock) = match ch {
            Channel::Rtp => (self.legs[o].rtp_dest(), &self.io[o].rtp),
            Channel::Rtcp => (self.legs[o].rtcp_dest(), &self.io[o].rtcp),
        };
        if let Some(dest) = dest {
            match sock.try_send_to(data, dest) {
                Ok(_) => {
                    stats.forwarded.fetch_add(1, Ordering::Relaxed);
                    if header.is_some() {
                        self.counters.forwarded[i].fetch_add(1, Ordering::Relaxed);
                    }
                }
                Err(_) => {
                    stats.send_errors.fetch_add(1, Ordering::Relaxed);
                }
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
                leg.packetizer
                    .skip((skipped * SAMPLES_PER_PACKET as u64) as u32);
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
                            leg.packetizer.mark();
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
                leg.packetizer.packet(leg.pt, &frame, buf);
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
