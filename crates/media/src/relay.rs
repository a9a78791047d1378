//! The relay itself: one tokio task per call that owns the call's four sockets (RTP and RTCP
//! for the caller leg and for the agent leg; two more while a supervisor is attached) and
//! everything that happens on them.
//!
//! ```text
//! loop {
//!     select! {
//!         command from call control   => remote addresses, bridge on/off, play, stop, monitor,
//!                                        a supervisor's sockets (attach), detach, close
//!         a socket is readable         => drain it: latch, detect DTMF, forward or mix if bridged
//!         20 ms tick (while playing)   => send the prompt packets that are due
//!         1 s tick                     => media timeout check, RTCP reports
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
//!
//! # Monitoring
//!
//! A supervisor's phone is a third leg, [`Leg::Supervisor`], that a call gets only when
//! [`Relay::attach_supervisor`] binds a port pair for it from the same pool; an unmonitored
//! call has no sockets, no mixer and no per-packet work for it but one branch. The leg is
//! latched, reported on (DTMF, timeouts, finished prompts) and played to like the others, and
//! [`SessionCommand::DetachSupervisor`] (or dropping the session) returns its ports.
//! [`SessionCommand::Monitor`] sets who hears whom ([`MonitorMode`]): listen (the supervisor
//! hears both parties), whisper (the agent hears the supervisor too, the caller never does),
//! barge (each hears the other two). A leg that hears one other leg gets its packets
//! forwarded as always, with no added latency; a leg that hears two gets a G.711 mix in its
//! own law, sent in its one continuous stream, with at most 40 ms added ([`crate::mix`]).
//! Telephone-events are never mixed: the caller's and the agent's still go to each other, a
//! supervisor's go to nobody (they are reported, for call control to switch modes by key).
//! While the legs are not bridged nobody hears anybody, and a leg that hears a prompt hears
//! only the prompt.
//!
//! The recorder tap keeps recording the caller (left) and the agent (right). While a
//! supervisor barges, the right channel is the mix the caller hears (the agent and the
//! supervisor), so a barging supervisor is recorded; a whispering or listening one is not
//! (the caller does not hear them). A prompt played to the caller during a barge leaves the
//! right channel silent for its length.

use std::collections::VecDeque;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use crate::counter::Counter;
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
use crate::mix::{self, Frame, Mixer, FRAME};
use crate::ports::PortPool;
use crate::prompt::Prompt;
use crate::rtp::{RtpHeader, TelephoneEvent, HEADER_LEN, SAMPLES_PER_PACKET};
use crate::secure::{DtlsIdentity, Received, RemoteWebRtc, SdesLeg, WebRtcLeg};
use crate::stream::{OutStream, Reception};

pub use crate::mix::MonitorMode;

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

/// The legs of a call: the two parties, and a supervisor who may monitor them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Leg {
    /// The calling party (the customer, or the calling extension).
    Caller,
    /// The called party (the agent's phone, or the called extension).
    Agent,
    /// A supervisor's phone, attached to a running call with [`Relay::attach_supervisor`]
    /// (no ports before that) and heard or not as the [`MonitorMode`] says.
    Supervisor,
}

impl Leg {
    pub(crate) const fn index(self) -> usize {
        match self {
            Leg::Caller => 0,
            Leg::Agent => 1,
            Leg::Supervisor => 2,
        }
    }

    const fn from_index(i: usize) -> Leg {
        match i {
            0 => Leg::Caller,
            1 => Leg::Agent,
            _ => Leg::Supervisor,
        }
    }

    /// The other party of the call: the agent for the caller and the caller for the agent.
    /// A supervisor is no party of the call: its "other" is itself.
    pub fn other(self) -> Leg {
        match self {
            Leg::Caller => Leg::Agent,
            Leg::Agent => Leg::Caller,
            Leg::Supervisor => Leg::Supervisor,
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
    /// Connect the two legs (each hears the other) or disconnect them. While they are not
    /// bridged, no audio passes between any legs, a monitoring supervisor's included.
    Bridge(bool),
    /// How the attached supervisor takes part (see [`MonitorMode`]); [`MonitorMode::Off`]
    /// keeps the supervisor's leg (its ports, prompts, DTMF) without mixing. Ignored while no
    /// supervisor is attached; detaching sets it back to `Off`.
    Monitor(MonitorMode),
    /// Close the supervisor's leg: an RTCP BYE to its phone, its sockets closed and its port
    /// pair back in the pool. Nothing happens when none is attached.
    DetachSupervisor,
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
    /// Carry a leg's media the WebRTC way (a browser): answer ICE checks for our
    /// credentials, be the DTLS server, send and take SRTP and SRTCP on the RTP port. Sent
    /// with the offer (the browser's fingerprint still unknown) and again with its answer;
    /// the same credentials keep the leg's DTLS state. `None` makes the leg plain RTP again
    /// (a desk phone answered instead).
    WebRtc {
        /// Which leg (the caller or the agent).
        leg: Leg,
        /// The leg's parameters, or `None` for plain RTP.
        params: Option<WebRtcParams>,
    },
    /// Carry a leg's media as SRTP keyed in the SDP (SDES, RFC 4568): `local` encrypts what
    /// we send, `remote` decrypts what the phone sends. `None` makes it plain RTP again.
    Sdes {
        /// Which leg (the caller or the agent).
        leg: Leg,
        /// The keys, or `None` for plain RTP.
        keys: Option<SdesKeys>,
    },
    /// Copy every RTP packet each phone sends to the recorder (`None` stops). The copy never
    /// waits: a frame the recorder's queue cannot take is dropped and counted
    /// ([`SessionCounters::tap_dropped`]).
    Tap(Option<mpsc::Sender<RecordFrame>>),
}

/// The two base64 keys (master key and salt) of an SDES-SRTP leg.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SdesKeys {
    /// Ours, from our SDP: what we send is encrypted with it.
    pub local: String,
    /// The phone's, from its SDP.
    pub remote: String,
}

/// A WebRTC leg's ICE credentials (ours, as in our offer) and the browser's certificate
/// fingerprint (from its answer, once known).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebRtcParams {
    /// Our `a=ice-ufrag`.
    pub ufrag: String,
    /// Our `a=ice-pwd`.
    pub pwd: String,
    /// The browser's `a=fingerprint` (`sha-256 AB:…`).
    pub remote_fingerprint: Option<String>,
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
    /// The session already has a supervisor's leg.
    #[error("a supervisor is already attached to the media session")]
    SupervisorAttached,
    /// The session has ended, or its command queue is full.
    #[error("the media session does not take commands")]
    SessionGone,
}

/// Relay counters (monotonic unless noted), bumped by every call's task and read at once
/// ([`Counter`]: per-thread stripes, no cache line shared per packet).
#[derive(Debug, Default)]
pub struct RelayStats {
    /// Sessions open now.
    pub sessions: Counter,
    /// Packets received on relay ports.
    pub received: Counter,
    /// Packets forwarded to the other leg.
    pub forwarded: Counter,
    /// Packets from an address a leg does not accept: strangers, stale calls, and a phone
    /// behind NAT while it is on probation ([`crate::latch`]).
    pub dropped_strangers: Counter,
    /// Packets that could not be sent (socket buffer full or error).
    pub send_errors: Counter,
    /// Prompt packets sent.
    pub played: Counter,
    /// Frames the recorder tap dropped (its queue was full), over all sessions.
    pub tap_dropped: Counter,
    /// Mixed packets sent (to legs that hear a mix while a supervisor monitors).
    pub mixed: Counter,
    /// Datagrams on WebRTC legs that were not usable: ICE checks without our password,
    /// DTLS or SRTP from an address ICE did not check, SRTP that failed authentication.
    pub webrtc_dropped: Counter,
}

/// Packet counts of one session, readable while it runs (and after).
#[derive(Debug, Default)]
pub struct SessionCounters {
    /// Valid packets received from each leg's phone (index: caller 0, agent 1,
    /// supervisor 2).
    pub received: [AtomicU64; 3],
    /// Packets forwarded from each leg to the other party as they came (a supervisor's
    /// never are: it is only heard in mixes).
    pub forwarded: [AtomicU64; 3],
    /// Mixed packets sent to each leg.
    pub mixed: [AtomicU64; 3],
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

    /// Mixed packets sent to a leg.
    pub fn mixed(&self, to: Leg) -> u64 {
        self.mixed[to.index()].load(Ordering::Relaxed)
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
    /// The DTLS certificate of WebRTC legs (`None` if it could not be made: no WebRTC).
    dtls: Option<DtlsIdentity>,
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
    commands: mpsc::Sender<Command>,
    ports: [u16; 2],
    /// The supervisor leg's RTP port, [`NO_SUPERVISOR`] while none is attached.
    supervisor: AtomicU32,
    advertise: Ipv4Addr,
}

const NO_SUPERVISOR: u32 = u32::MAX;

/// What goes down a session's command queue: call control's commands, and the sockets of a
/// supervisor's leg (which a [`SessionCommand`] cannot carry: it is `Clone`).
#[derive(Debug)]
enum Command {
    Session(SessionCommand),
    Attach(Box<AttachedPair>),
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

    /// The RTP port of a leg (RTCP is the next one); 0 for a supervisor's leg that is not
    /// attached (see [`Session::supervisor_port`]).
    pub fn port(&self, leg: Leg) -> u16 {
        match leg {
            Leg::Caller | Leg::Agent => self.ports[leg.index()],
            Leg::Supervisor => self.supervisor_port().unwrap_or(0),
        }
    }

    /// The RTP port of the supervisor's leg, while one is attached.
    pub fn supervisor_port(&self) -> Option<u16> {
        match self.supervisor.load(Ordering::Relaxed) {
            NO_SUPERVISOR => None,
            p => u16::try_from(p).ok(),
        }
    }

    /// The address our SDP gives for a leg.
    pub fn advertised(&self) -> Ipv4Addr {
        self.advertise
    }

    /// Send a command; false if the session is gone or its queue is full.
    pub fn command(&self, cmd: SessionCommand) -> bool {
        let detach = matches!(cmd, SessionCommand::DetachSupervisor);
        match self.commands.try_send(Command::Session(cmd)) {
            Ok(()) => {
                if detach {
                    // Commands are taken in order: a later attach follows this detach.
                    self.supervisor.store(NO_SUPERVISOR, Ordering::Relaxed);
                }
                true
            }
            Err(e) => {
                warn!(session = self.id.0, error = %e, "media command dropped");
                false
            }
        }
    }
}

/// A port pair taken from the pool for a supervisor's leg: back in the pool when dropped,
/// whether the session's task closes it or the command that carries it is never taken.
struct AttachedPair {
    io: Option<LegIo>,
    port: u16,
    relay: Arc<Inner>,
}

impl std::fmt::Debug for AttachedPair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AttachedPair")
            .field("port", &self.port)
            .finish()
    }
}

impl AttachedPair {
    fn io(&self) -> &LegIo {
        self.io.as_ref().expect("sockets until dropped")
    }
}

impl Drop for AttachedPair {
    fn drop(&mut self) {
        // Close the sockets before the port can be handed out again.
        self.io = None;
        if let Ok(mut pool) = self.relay.pool.lock() {
            pool.give(self.port);
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
        let dtls = match DtlsIdentity::generate() {
            Ok(d) => Some(d),
            Err(e) => {
                warn!(error = %e, "no DTLS certificate: browsers (WebRTC) cannot be called");
                None
            }
        };
        Relay {
            inner: Arc::new(Inner {
                cfg,
                pool: Mutex::new(pool),
                events,
                stats: RelayStats::default(),
                dtls,
            }),
        }
    }

    /// The SHA-256 fingerprint of the relay's DTLS certificate (`a=fingerprint:sha-256` of
    /// WebRTC offers); `None` when WebRTC legs are not available.
    pub fn dtls_fingerprint(&self) -> Option<&str> {
        self.inner.dtls.as_ref().map(DtlsIdentity::fingerprint)
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
        let now = Instant::now();
        let task = SessionTask {
            ctx: Ctx {
                id,
                counters: counters.clone(),
                relay: self.inner.clone(),
            },
            io: [a, b],
            legs: [
                LegState::new(now, Leg::Caller),
                LegState::new(now, Leg::Agent),
            ],
            ports,
            bridged: false,
            tap: None,
            tap_channels: [Some(RecordChannel::Left), Some(RecordChannel::Right)],
            supervisor: None,
            monitoring: None,
        };
        tokio::spawn(task.run(rx));
        Ok(Session {
            id,
            counters,
            commands: tx,
            ports,
            supervisor: AtomicU32::new(NO_SUPERVISOR),
            advertise: self.inner.cfg.advertise,
        })
    }

    /// Give a session a supervisor's leg: bind a port pair from the pool and hand it to the
    /// session's task. Returns the leg's RTP port (for the supervisor's SDP). The leg then
    /// takes `Remote`, `Play` and `Stop` like the others and reports DTMF, timeouts and
    /// finished playbacks; who hears it is set by [`SessionCommand::Monitor`] (until then,
    /// [`MonitorMode::Off`]). [`SessionCommand::DetachSupervisor`] or dropping the session
    /// frees the ports. Must be called inside a tokio runtime.
    pub fn attach_supervisor(&self, session: &Session) -> Result<u16, MediaError> {
        if session.supervisor_port().is_some() {
            return Err(MediaError::SupervisorAttached);
        }
        let (port, (rtp, rtcp)) = self.bind_free_pair()?;
        // From here on, the port goes back to the pool whatever happens.
        let mut pair = Box::new(AttachedPair {
            io: None,
            port,
            relay: self.inner.clone(),
        });
        pair.io = Some(LegIo {
            rtp: UdpSocket::from_std(rtp)?,
            rtcp: UdpSocket::from_std(rtcp)?,
        });
        if session
            .supervisor
            .compare_exchange(
                NO_SUPERVISOR,
                u32::from(port),
                Ordering::Relaxed,
                Ordering::Relaxed,
            )
            .is_err()
        {
            return Err(MediaError::SupervisorAttached);
        }
        if session.commands.try_send(Command::Attach(pair)).is_err() {
            session.supervisor.store(NO_SUPERVISOR, Ordering::Relaxed);
            return Err(MediaError::SessionGone);
        }
        Ok(port)
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

impl LegIo {
    fn socket(&self, ch: Channel) -> &UdpSocket {
        match ch {
            Channel::Rtp => &self.rtp,
            Channel::Rtcp => &self.rtcp,
        }
    }
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
    /// Which leg this is.
    leg: Leg,
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
    /// The stream this leg hears (prompts, the other legs' packets, mixes).
    out: OutStream,
    /// What this leg's phone sends us (for our RTCP reports to it).
    reception: Reception,
    /// When the next RTCP report to this leg is due.
    rtcp_next: Option<Instant>,
    /// A browser's leg: ICE-lite, DTLS-SRTP, RTCP on the RTP port.
    webrtc: Option<Box<WebRtcLeg>>,
    /// A desk phone's SRTP keyed in the SDP.
    sdes: Option<Box<SdesLeg>>,
}

impl LegState {
    fn new(now: Instant, leg: Leg) -> LegState {
        // SSRC, first sequence number and timestamp are random (RFC 3550 §5.1), drawn once
        // per leg when the session opens (when a supervisor's leg is attached).
        let (ssrc, seq, ts): (u32, u16, u32) = (rand::random(), rand::random(), rand::random());
        LegState {
            leg,
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
            webrtc: None,
            sdes: None,
        }
    }

    fn rtp_dest(&self) -> Option<SocketAddr> {
        self.latch.destination()
    }

    /// Where RTCP goes: the RTP address on a WebRTC leg (rtcp-mux).
    fn rtcp_dest(&self) -> Option<SocketAddr> {
        if self.webrtc.is_some() {
            return self.latch.destination();
        }
        self.latch.rtcp_destination()
    }

    /// Send an RTCP packet to the leg (encrypted, over the RTP port, on a WebRTC leg).
    fn send_rtcp(&mut self, io: &LegIo, packet: &[u8]) {
        let Some(dest) = self.rtcp_dest() else {
            return;
        };
        match (self.webrtc.as_deref_mut(), self.sdes.as_deref_mut()) {
            (Some(w), _) => {
                if let Some(p) = w.protect_rtcp(packet) {
                    let _ = io.rtp.try_send_to(&p, dest);
                }
            }
            (None, Some(s)) => {
                if let Some(p) = s.protect_rtcp(packet) {
                    let _ = io.rtcp.try_send_to(&p, dest);
                }
            }
            (None, None) => {
                let _ = io.rtcp.try_send_to(packet, dest);
            }
        }
    }

    /// The first packet to a leg schedules its first RTCP report (RFC 3550 §6.2: the first
    /// one goes out after half the minimum interval).
    fn schedule_report(&mut self, now: Instant) {
        if self.rtcp_next.is_none() {
            self.rtcp_next = Some(now + RTCP_INTERVAL / 2);
        }
    }
}

/// A supervisor's leg, while one is attached.
struct SupervisorLeg {
    pair: Box<AttachedPair>,
    state: LegState,
}

/// Monitoring in a mode other than [`MonitorMode::Off`]: allocated only then.
struct Monitoring {
    mode: MonitorMode,
    mixer: Mixer,
    /// The frame of the packet being mixed, decoded once for every leg that hears it.
    frame: Frame,
    /// The mixed packet being built.
    packet: Vec<u8>,
}

/// What every packet's handling needs besides the legs.
struct Ctx {
    id: SessionId,
    counters: Arc<SessionCounters>,
    relay: Arc<Inner>,
}

struct SessionTask {
    ctx: Ctx,
    io: [LegIo; 2],
    legs: [LegState; 2],
    ports: [u16; 2],
    bridged: bool,
    tap: Option<mpsc::Sender<RecordFrame>>,
    /// The recorder channel of the caller's and the agent's packets. The agent's is `None`
    /// while a supervisor barges: then the mix the caller hears (agent and supervisor) is
    /// recorded in its place.
    tap_channels: [Option<RecordChannel>; 2],
    supervisor: Option<Box<SupervisorLeg>>,
    monitoring: Option<Box<Monitoring>>,
}

#[derive(Clone, Copy)]
enum Channel {
    Rtp,
    Rtcp,
}

/// Every leg the session has: which, its state, its sockets.
fn each_leg<'a>(
    legs: &'a mut [LegState; 2],
    io: &'a [LegIo; 2],
    supervisor: &'a mut Option<Box<SupervisorLeg>>,
) -> impl Iterator<Item = (&'a mut LegState, &'a LegIo)> {
    let [caller, agent] = legs;
    let [caller_io, agent_io] = io;
    [(caller, caller_io), (agent, agent_io)].into_iter().chain(
        supervisor
            .as_deref_mut()
            .map(|s| (&mut s.state, s.pair.io())),
    )
}

/// One leg's state and sockets, if the session has that leg.
fn leg_mut<'a>(
    legs: &'a mut [LegState; 2],
    io: &'a [LegIo; 2],
    supervisor: &'a mut Option<Box<SupervisorLeg>>,
    leg: Leg,
) -> Option<(&'a mut LegState, &'a LegIo)> {
    match leg {
        Leg::Caller | Leg::Agent => Some((&mut legs[leg.index()], &io[leg.index()])),
        Leg::Supervisor => supervisor
            .as_deref_mut()
            .map(|s| (&mut s.state, s.pair.io())),
    }
}

/// Ready when the supervisor's socket is; never while there is none.
async fn supervisor_readable(s: Option<&LegIo>, ch: Channel) -> io::Result<()> {
    match s {
        Some(s) => s.socket(ch).readable().await,
        None => std::future::pending().await,
    }
}

impl Ctx {
    /// What every packet of a leg's phone goes through first: whom it is from (a stranger's
    /// packet is dropped before anything else looks at it), liveness, RTCP, receiver
    /// statistics and DTMF. Returns the header of an accepted RTP packet.
    fn receive(
        &self,
        leg: &mut LegState,
        ch: Channel,
        data: &[u8],
        from: SocketAddr,
        now: Instant,
        pending: &mut Vec<MediaEventKind>,
    ) -> Option<RtpHeader> {
        self.relay.stats.received.fetch_add(1, Ordering::Relaxed);
        let verdict = match ch {
            Channel::Rtp => match leg.latch.admit(now, from, data) {
                Admission::Accept(h) => Ok(Some(h)),
                Admission::Learned(h) => {
                    debug!(session = self.id.0, leg = ?leg.leg, remote = %from, "media latched");
                    Ok(Some(h))
                }
                Admission::Drop(d) => Err(d),
            },
            Channel::Rtcp => leg.latch.admit_rtcp(from, data).map(|()| None),
        };
        let header = match verdict {
            Ok(h) => h,
            // From the phone, but not a valid RTP (or RTCP) packet: dropped, not counted.
            Err(Dropped::Malformed) => return None,
            Err(Dropped::Stranger { report }) => {
                self.relay
                    .stats
                    .dropped_strangers
                    .fetch_add(1, Ordering::Relaxed);
                self.counters.strangers.fetch_add(1, Ordering::Relaxed);
                if report {
                    debug!(
                        session = self.id.0, leg = ?leg.leg, remote = %from,
                        "media from a stranger dropped"
                    );
                }
                return None;
            }
        };
        leg.last_rx = Some(now);
        leg.timed_out = false;
        let Some(h) = header else {
            // The phone's RTCP: kept for our reports to it, never forwarded.
            leg.reception.on_rtcp(now, data);
            return None;
        };
        self.counters.received[leg.leg.index()].fetch_add(1, Ordering::Relaxed);
        leg.reception.on_rtp(now, h.seq, h.timestamp, h.ssrc);
        if leg.telephone_event == Some(h.payload_type) {
            let payload = &data[h.payload_offset..h.payload_offset + h.payload_len];
            if let Some(ev) = TelephoneEvent::parse(payload) {
                // One report per key press: the event's packets share its timestamp.
                if leg.last_event_ts != Some(h.timestamp) {
                    leg.last_event_ts = Some(h.timestamp);
                    if let Some(digit) = ev.digit() {
                        pending.push(MediaEventKind::Dtmf {
                            leg: leg.leg,
                            digit,
                        });
                    }
                }
            }
        }
        Some(h)
    }

    /// Hand a copy of a packet to the recorder, never waiting.
    fn tap(
        &self,
        tap: &mpsc::Sender<RecordFrame>,
        channel: RecordChannel,
        now: Instant,
        data: &[u8],
    ) {
        let frame = RecordFrame {
            call: self.id.0,
            channel,
            at: now,
            packet: Bytes::copy_from_slice(data),
        };
        if tap.try_send(frame).is_err() {
            self.counters.tap_dropped.fetch_add(1, Ordering::Relaxed);
            self.relay.stats.tap_dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

impl SessionTask {
    async fn run(mut self, mut commands: mpsc::Receiver<Command>) {
        let mut buf = vec![0u8; 2048];
        let mut out = Vec::with_capacity(256);
        let mut tick = tokio::time::interval(Duration::from_millis(20));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut check = tokio::time::interval(Duration::from_secs(1));
        check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut pending: Vec<MediaEventKind> = Vec::new();
        loop {
            let attached = self.supervisor.is_some();
            let playing = self.legs.iter().any(|l| l.play.is_some())
                || self
                    .supervisor
                    .as_ref()
                    .is_some_and(|s| s.state.play.is_some());
            tokio::select! {
                // Commands first: a Remote or Bridge sent before a packet arrived applies
                // to that packet.
                biased;
                cmd = commands.recv() => match cmd {
                    Some(Command::Session(c)) => self.command(c, &mut out),
                    Some(Command::Attach(pair)) => self.attach(pair),
                    None => break,
                },
                r = self.io[0].rtp.readable() => if r.is_ok() { self.drain(0, Channel::Rtp, &mut buf, &mut pending) },
                r = self.io[0].rtcp.readable() => if r.is_ok() { self.drain(0, Channel::Rtcp, &mut buf, &mut pending) },
                r = self.io[1].rtp.readable() => if r.is_ok() { self.drain(1, Channel::Rtp, &mut buf, &mut pending) },
                r = self.io[1].rtcp.readable() => if r.is_ok() { self.drain(1, Channel::Rtcp, &mut buf, &mut pending) },
                r = supervisor_readable(self.supervisor.as_deref().map(|s| s.pair.io()), Channel::Rtp), if attached => if r.is_ok() { self.drain_supervisor(Channel::Rtp, &mut buf, &mut pending) },
                r = supervisor_readable(self.supervisor.as_deref().map(|s| s.pair.io()), Channel::Rtcp), if attached => if r.is_ok() { self.drain_supervisor(Channel::Rtcp, &mut buf, &mut pending) },
                _ = tick.tick(), if playing => self.play_due(Instant::now(), &mut out, &mut pending),
                _ = check.tick() => {
                    let now = Instant::now();
                    for (l, io) in self.legs.iter_mut().zip(&self.io) {
                        if let Some(w) = l.webrtc.as_deref_mut() {
                            if w.poll_timeout().is_some_and(|t| t <= now) {
                                w.handle_timeout(now);
                            }
                        }
                        flush_webrtc(l, io);
                    }
                    self.check_timeouts(now, &mut pending);
                    self.send_reports(now, &mut out);
                }
            }
            for kind in pending.drain(..) {
                let ev = MediaEvent {
                    session: self.ctx.id,
                    kind,
                };
                if self.ctx.relay.events.send(ev).await.is_err() {
                    break;
                }
            }
        }
        self.send_byes(&mut out);
        if let Ok(mut pool) = self.ctx.relay.pool.lock() {
            for p in self.ports {
                pool.give(p);
            }
        }
        // A supervisor's pair goes back as the task's state is dropped.
        self.ctx
            .relay
            .stats
            .sessions
            .fetch_sub(1, Ordering::Relaxed);
        debug!(session = self.ctx.id.0, "media session closed");
    }

    fn command(&mut self, cmd: SessionCommand, out: &mut Vec<u8>) {
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
                let Some(l) = self.state_mut(leg) else {
                    return;
                };
                // A peer that moved (re-INVITE) is learned again. A browser's media goes
                // where its ICE checks come from, whatever its SDP says.
                let rtp = rtp.and(l.webrtc.as_ref().and_then(|w| w.peer())).or(rtp);
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
                let Some(l) = self.state_mut(leg) else {
                    return;
                };
                l.out.mark();
                l.play = Some(Playback {
                    queue: prompts.into(),
                    then,
                    current: None,
                    pos: 0,
                    started: Instant::now(),
                    sent: 0,
                });
                // What was waiting to be mixed for the leg is stale once the prompt ends.
                if let Some(m) = self.monitoring.as_deref_mut() {
                    m.mixer.reset(leg);
                }
            }
            SessionCommand::Stop(leg) => {
                if let Some(l) = self.state_mut(leg) {
                    l.play = None;
                }
            }
            SessionCommand::Tap(t) => self.tap = t,
            SessionCommand::WebRtc { leg, params } => self.webrtc(leg, params),
            SessionCommand::Sdes { leg, keys } => {
                if leg == Leg::Supervisor {
                    return;
                }
                let l = &mut self.legs[leg.index()];
                if let (Some(s), Some(k)) = (l.sdes.as_deref_mut(), keys.as_ref()) {
                    // A re-INVITE: our key and its context (with its counters) stay, so no
                    // keystream is used twice; a new key of the phone's replaces the inbound one.
                    if s.keys().0 == k.local {
                        if s.keys().1 != k.remote {
                            if let Err(e) = s.set_remote(&k.remote) {
                                warn!(session = self.ctx.id.0, error = %e, "the phone's new SRTP key is unusable");
                            }
                        }
                        return;
                    }
                }
                l.sdes = match keys {
                    None => None,
                    Some(k) => match SdesLeg::new(&k.local, &k.remote) {
                        Ok(s) => Some(Box::new(s)),
                        Err(e) => {
                            // Call control checks keys before it sends them; should one be
                            // unusable anyway, the leg is not left to send in the clear.
                            warn!(session = self.ctx.id.0, error = %e, "SRTP keys unusable: the leg gets no media");
                            l.latch.signal(Instant::now(), None, false);
                            None
                        }
                    },
                };
            }
            SessionCommand::Monitor(mode) => self.monitor(mode),
            SessionCommand::DetachSupervisor => self.detach(out),
        }
    }

    fn webrtc(&mut self, leg: Leg, params: Option<WebRtcParams>) {
        if leg == Leg::Supervisor {
            return;
        }
        let i = leg.index();
        let Some(p) = params else {
            self.legs[i].webrtc = None;
            return;
        };
        let same = self.legs[i]
            .webrtc
            .as_ref()
            .is_some_and(|w| w.credentials() == (p.ufrag.as_str(), p.pwd.as_str()));
        if !same {
            let Some(identity) = self.ctx.relay.dtls.as_ref() else {
                warn!(
                    session = self.ctx.id.0,
                    "WebRTC leg asked for, but the relay has no DTLS certificate"
                );
                return;
            };
            let local = self.io[i]
                .rtp
                .local_addr()
                .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], self.ports[i])));
            self.legs[i].webrtc = Some(Box::new(WebRtcLeg::new(
                identity,
                p.ufrag.clone(),
                p.pwd.clone(),
                local,
            )));
        }
        if let (Some(fp), Some(w)) = (p.remote_fingerprint, self.legs[i].webrtc.as_deref_mut()) {
            w.set_remote(&RemoteWebRtc {
                fingerprint: Some(fp),
            });
        }
    }

    /// A datagram on a WebRTC leg's port: ICE, DTLS, or SRTP decrypted into the usual path.
    fn webrtc_datagram(
        &mut self,
        i: usize,
        data: &[u8],
        from: SocketAddr,
        pending: &mut Vec<MediaEventKind>,
    ) {
        let now = Instant::now();
        let Some(w) = self.legs[i].webrtc.as_deref_mut() else {
            return;
        };
        match w.receive(now, from, data) {
            Received::Rtp(mut p) => self.packet(i, Channel::Rtp, &mut p[..], from, pending),
            Received::Rtcp(mut p) => self.packet(i, Channel::Rtcp, &mut p[..], from, pending),
            Received::Checked { .. } => {
                let l = &mut self.legs[i];
                // Media goes to the pair the browser chose (nominated), not every checked one.
                let peer = l.webrtc.as_ref().and_then(|w| w.peer());
                if peer.is_some() && l.latch.destination() != peer {
                    debug!(session = self.ctx.id.0, leg = ?l.leg, remote = ?peer, "ICE check: media goes here");
                    let sends = l.sends;
                    l.latch.signal(now, peer, sends);
                }
            }
            Received::Handshake => {}
            Received::Dropped(why) => {
                self.ctx
                    .relay
                    .stats
                    .webrtc_dropped
                    .fetch_add(1, Ordering::Relaxed);
                debug!(session = self.ctx.id.0, remote = %from, reason = why, "WebRTC datagram dropped");
            }
        }
        flush_webrtc(&mut self.legs[i], &self.io[i]);
    }

    fn state_mut(&mut self, leg: Leg) -> Option<&mut LegState> {
        let found = leg_mut(&mut self.legs, &self.io, &mut self.supervisor, leg).map(|(l, _)| l);
        if found.is_none() {
            debug!(
                session = self.ctx.id.0,
                "media command for a supervisor who is not attached"
            );
        }
        found
    }

    fn attach(&mut self, pair: Box<AttachedPair>) {
        debug!(
            session = self.ctx.id.0,
            port = pair.port,
            "supervisor attached"
        );
        let state = LegState::new(Instant::now(), Leg::Supervisor);
        // The handle refuses a second attach; were there one, the earlier pair is freed.
        self.supervisor = Some(Box::new(SupervisorLeg { pair, state }));
    }

    fn detach(&mut self, out: &mut Vec<u8>) {
        self.monitor(MonitorMode::Off);
        if let Some(mut s) = self.supervisor.take() {
            send_bye(&mut s.state, s.pair.io(), out);
            debug!(
                session = self.ctx.id.0,
                port = s.pair.port,
                "supervisor detached"
            );
        }
    }

    fn monitor(&mut self, mode: MonitorMode) {
        if self.supervisor.is_none() && mode != MonitorMode::Off {
            debug!(
                session = self.ctx.id.0,
                ?mode,
                "monitoring without a supervisor ignored"
            );
            return;
        }
        match (mode, self.monitoring.as_deref_mut()) {
            (MonitorMode::Off, _) => self.monitoring = None,
            (mode, Some(m)) => {
                m.mode = mode;
                m.mixer = Mixer::new();
            }
            (mode, None) => {
                self.monitoring = Some(Box::new(Monitoring {
                    mode,
                    mixer: Mixer::new(),
                    frame: [0; FRAME],
                    packet: Vec::with_capacity(12 + FRAME),
                }))
            }
        }
        self.tap_channels[Leg::Agent.index()] = if mode == MonitorMode::Barge {
            None
        } else {
            Some(RecordChannel::Right)
        };
    }

    fn drain(&mut self, i: usize, ch: Channel, buf: &mut [u8], pending: &mut Vec<MediaEventKind>) {
        // Bounded per wake-up so one flooded port cannot starve the others.
        for _ in 0..64 {
            match self.io[i].socket(ch).try_recv_from(buf) {
                Ok((n, from)) if self.legs[i].webrtc.is_some() => {
                    // Everything of a browser comes to the RTP port; its RTCP port is unused.
                    if matches!(ch, Channel::Rtp) {
                        self.webrtc_datagram(i, &buf[..n], from, pending);
                    }
                }
                Ok((n, from)) if self.legs[i].sdes.is_some() => {
                    if !self.legs[i].latch.may_come_from(from) {
                        self.ctx
                            .relay
                            .stats
                            .dropped_strangers
                            .fetch_add(1, Ordering::Relaxed);
                        continue;
                    }
                    let Some(s) = self.legs[i].sdes.as_deref_mut() else {
                        continue;
                    };
                    let clear = match ch {
                        Channel::Rtp => s.unprotect_rtp(&buf[..n]),
                        Channel::Rtcp => s.unprotect_rtcp(&buf[..n]),
                    };
                    match clear {
                        Some(mut p) => self.packet(i, ch, &mut p[..], from, pending),
                        None => {
                            // Not authenticated with the phone's key: a stranger, a replay.
                            self.ctx
                                .relay
                                .stats
                                .dropped_strangers
                                .fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
                Ok((n, from)) => self.packet(i, ch, &mut buf[..n], from, pending),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(_) => continue,
            }
        }
    }

    fn drain_supervisor(&mut self, ch: Channel, buf: &mut [u8], pending: &mut Vec<MediaEventKind>) {
        for _ in 0..64 {
            let Some(s) = self.supervisor.as_deref() else {
                return;
            };
            match s.pair.io().socket(ch).try_recv_from(buf) {
                Ok((n, from)) => self.supervisor_packet(ch, &mut buf[..n], from, pending),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(_) => continue,
            }
        }
    }

    /// A packet from the caller's (`i` 0) or the agent's (1) phone.
    fn packet(
        &mut self,
        i: usize,
        ch: Channel,
        data: &mut [u8],
        from: SocketAddr,
        pending: &mut Vec<MediaEventKind>,
    ) {
        let now = Instant::now();
        let Some(h) = self
            .ctx
            .receive(&mut self.legs[i], ch, data, from, now, pending)
        else {
            return;
        };
        if let (Some(tap), Some(channel)) = (&self.tap, self.tap_channels[i]) {
            self.ctx.tap(tap, channel, now, data);
        }
        if !self.bridged {
            return;
        }
        if self.monitoring.is_some() {
            // The one branch an unmonitored call's packets pass for monitoring.
            self.monitored(Leg::from_index(i), &h, data, now);
            return;
        }
        // A leg that hears a prompt or music hears only that: two sources interleaved in one
        // stream would be noise.
        if self.legs[1 - i].play.is_some() {
            return;
        }
        self.forward(i, data, now);
    }

    /// A packet from the supervisor's phone: heard only in mixes.
    fn supervisor_packet(
        &mut self,
        ch: Channel,
        data: &mut [u8],
        from: SocketAddr,
        pending: &mut Vec<MediaEventKind>,
    ) {
        let now = Instant::now();
        let Some(s) = self.supervisor.as_deref_mut() else {
            return;
        };
        let Some(h) = self.ctx.receive(&mut s.state, ch, data, from, now, pending) else {
            return;
        };
        if self.bridged && self.monitoring.is_some() {
            self.monitored(Leg::Supervisor, &h, data, now);
        }
    }

    /// Forward a packet of the caller (`i` 0) or the agent (1) to the other one as it came,
    /// rewritten into that leg's stream.
    fn forward(&mut self, i: usize, data: &mut [u8], now: Instant) {
        let o = 1 - i;
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
        self.legs[o].schedule_report(now);
        match send_rtp(self.legs[o].protection(), &self.io[o], data, dest) {
            Ok(_) => {
                self.ctx
                    .relay
                    .stats
                    .forwarded
                    .fetch_add(1, Ordering::Relaxed);
                self.ctx.counters.forwarded[i].fetch_add(1, Ordering::Relaxed);
            }
            Err(_) => {
                self.ctx
                    .relay
                    .stats
                    .send_errors
                    .fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// A packet of `src` while a supervisor monitors: to each leg that hears a mix with
    /// `src` in it, through the mixer; to the other party as it came unless that party hears
    /// a mix (telephone-events go there in any case; a supervisor's go nowhere).
    fn monitored(&mut self, src: Leg, h: &RtpHeader, data: &mut [u8], now: Instant) {
        let Some(m) = self.monitoring.as_deref_mut() else {
            return;
        };
        let mode = m.mode;
        let Some((src_state, _)) = leg_mut(&mut self.legs, &self.io, &mut self.supervisor, src)
        else {
            return;
        };
        let (law, telephone_event) = (src_state.law, src_state.telephone_event);
        let audio = h.payload_type == src_state.pt && h.payload_len == FRAME;
        if audio {
            let mut decoded = false;
            for dest in [Leg::Caller, Leg::Agent, Leg::Supervisor] {
                if dest == src || !mode.mixes(dest) || !mode.hears(dest, src) {
                    continue;
                }
                let Some((to, io)) = leg_mut(&mut self.legs, &self.io, &mut self.supervisor, dest)
                else {
                    continue;
                };
                if to.play.is_some() {
                    continue;
                }
                if !decoded {
                    let codes = data[h.payload_offset..h.payload_offset + FRAME]
                        .try_into()
                        .expect("one frame");
                    mix::decode(law, codes, &mut m.frame);
                    decoded = true;
                }
                let Some(mixed) = m.mixer.frame(now, dest, src, &m.frame) else {
                    continue;
                };
                let Some(addr) = to.rtp_dest() else {
                    continue;
                };
                // The clock's header (no CSRCs, extension or padding) and the mix in the
                // hearing leg's law, rewritten into its stream like a forwarded packet.
                let p = &mut m.packet;
                p.clear();
                p.extend_from_slice(&data[..HEADER_LEN]);
                p[0] = 0x80;
                mix::encode(to.law, mixed, p);
                let pt = to.pt;
                if !to.out.forward(now, p, |_| pt) {
                    continue;
                }
                to.schedule_report(now);
                match send_rtp(to.protection(), io, p, addr) {
                    Ok(_) => {
                        self.ctx.relay.stats.mixed.fetch_add(1, Ordering::Relaxed);
                        self.ctx.counters.mixed[dest.index()].fetch_add(1, Ordering::Relaxed);
                    }
                    Err(_) => {
                        self.ctx
                            .relay
                            .stats
                            .send_errors
                            .fetch_add(1, Ordering::Relaxed);
                    }
                }
                if dest == Leg::Caller && mode == MonitorMode::Barge {
                    // What the caller hears is the agent's channel of the recording.
                    if let Some(tap) = &self.tap {
                        self.ctx.tap(tap, RecordChannel::Right, now, p);
                    }
                }
            }
        }
        if src == Leg::Supervisor {
            return;
        }
        let other = src.other();
        let event = telephone_event == Some(h.payload_type);
        if self.legs[other.index()].play.is_none()
            && mode.hears(other, src)
            && (event || !mode.mixes(other))
        {
            self.forward(src.index(), data, now);
        }
    }

    /// Send every leg whose report is due its RTCP sender report.
    fn send_reports(&mut self, now: Instant, out: &mut Vec<u8>) {
        let ntp = ntp_now();
        for (leg, io) in each_leg(&mut self.legs, &self.io, &mut self.supervisor) {
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
            if leg.rtcp_dest().is_none() {
                continue;
            }
            if leg
                .out
                .rtcp_report(now, ntp, &mut leg.reception, RTCP_CNAME, out)
            {
                leg.send_rtcp(io, out);
            }
        }
    }

    /// The call is over: each leg that heard our stream gets an RTCP BYE for it.
    fn send_byes(&mut self, out: &mut Vec<u8>) {
        for (leg, io) in each_leg(&mut self.legs, &self.io, &mut self.supervisor) {
            send_bye(leg, io, out);
        }
    }

    fn play_due(&mut self, now: Instant, buf: &mut Vec<u8>, pending: &mut Vec<MediaEventKind>) {
        let mut frame = [0u8; SAMPLES_PER_PACKET];
        let stats = &self.ctx.relay.stats;
        for (leg, io) in each_leg(&mut self.legs, &self.io, &mut self.supervisor) {
            let dest = leg.rtp_dest();
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
                    let protection = Protection {
                        webrtc: &mut leg.webrtc,
                        sdes: &mut leg.sdes,
                    };
                    if send_rtp(protection, io, buf, dest).is_ok() {
                        stats.played.fetch_add(1, Ordering::Relaxed);
                    } else {
                        stats.send_errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            if finished {
                leg.play = None;
                pending.push(MediaEventKind::PlaybackDone { leg: leg.leg });
            }
        }
    }

    fn check_timeouts(&mut self, now: Instant, pending: &mut Vec<MediaEventKind>) {
        let limit = self.ctx.relay.cfg.timeout;
        for (leg, _) in each_leg(&mut self.legs, &self.io, &mut self.supervisor) {
            let Some(since) = leg.active_since else {
                continue;
            };
            if !leg.sends || leg.timed_out {
                continue;
            }
            let last = leg.last_rx.map_or(since, |t| t.max(since));
            if now.saturating_duration_since(last) >= limit {
                leg.timed_out = true;
                pending.push(MediaEventKind::Timeout { leg: leg.leg });
            }
        }
    }
}

/// An RTCP BYE to a leg that heard our stream.
fn send_bye(leg: &mut LegState, io: &LegIo, out: &mut Vec<u8>) {
    if leg.out.packets() == 0 {
        return;
    }
    leg.out.rtcp_bye(RTCP_CNAME, out);
    leg.send_rtcp(io, out);
}

/// How a leg's packets are protected on the wire.
struct Protection<'a> {
    webrtc: &'a mut Option<Box<WebRtcLeg>>,
    sdes: &'a mut Option<Box<SdesLeg>>,
}

impl LegState {
    fn protection(&mut self) -> Protection<'_> {
        Protection {
            webrtc: &mut self.webrtc,
            sdes: &mut self.sdes,
        }
    }
}

/// Send an RTP packet of a leg's stream: as it is, or encrypted on an SRTP leg (where
/// nothing goes out before the keys: a packet then counts as sent and is dropped).
fn send_rtp(p: Protection<'_>, io: &LegIo, packet: &[u8], dest: SocketAddr) -> io::Result<usize> {
    let protected = match (p.webrtc.as_deref_mut(), p.sdes.as_deref_mut()) {
        (Some(w), _) => w.protect_rtp(packet),
        (None, Some(s)) => s.protect_rtp(packet),
        (None, None) => return io.rtp.try_send_to(packet, dest),
    };
    match protected {
        Some(p) => io.rtp.try_send_to(&p, dest),
        None => Ok(0),
    }
}

/// Send what a WebRTC leg has queued (ICE answers, DTLS flights).
fn flush_webrtc(leg: &mut LegState, io: &LegIo) {
    if let Some(w) = leg.webrtc.as_deref_mut() {
        while let Some((to, d)) = w.poll_transmit() {
            let _ = io.rtp.try_send_to(&d, to);
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
