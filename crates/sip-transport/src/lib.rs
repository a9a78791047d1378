//! Tokio driver for the sans-IO [`sip::Endpoint`]: UDP, TCP, TLS and WebSocket (plain and
//! secure) sockets, timers, shutdown.
//!
//! One task owns the endpoint. It waits on the UDP socket, on messages framed by the TCP
//! connection tasks, on commands from call control and on the endpoint's next deadline; after
//! each input it drains the endpoint's transmits (to sockets) and events (to call control):
//!
//! ```text
//! loop {
//!     select! { datagrams | tcp message | command | sleep_until(endpoint.poll_timeout()) | shutdown }
//!     while let Some(t) = endpoint.poll_transmit() { send over t.flow }
//!     while let Some(ev) = endpoint.poll_event()   { events.send(ev).await }
//! }
//! ```
//!
//! UDP is read and written in batches where datagrams wait (`recvmmsg`/`sendmmsg` on Linux:
//! up to 32 per system call), and each batch is answered before the next is read, so an
//! answer waits behind at most one batch of work.
//!
//! TCP connections each run a reader task (framing with [`sip::parse::StreamFramer`], answering
//! CRLF keep-alives) and a writer task; requests to a phone registered over TCP reuse its
//! connection, and a new connection is opened only when that one is gone. TLS ([`tls`]) and
//! WebSocket (RFC 7118) connections are framed and kept the same way, but they are the only
//! way to their phone or browser: requests go only down them, and when one closes the
//! bindings registered over it are removed. A connection that
//! carries no registrar binding and sends nothing for [`TransportConfig::tcp_idle_timeout`]
//! is closed; one that carries a binding stays open while the binding lives, and those of
//! trusted addresses and trunks are never closed for idling. Each source
//! address may hold at most [`TransportConfig::max_tcp_per_source`] connections (trusted
//! addresses excepted); more are closed at once, counted and logged once per source and
//! interval.
//!
//! With [`TransportConfig::binding_store`] set, the registrar's bindings are kept on disk
//! ([`store`]): restored with their remaining lifetime when the task starts (and published in
//! [`Locations`] before [`start`] returns), and rewritten by a writer thread as they change.
//!
//! Shutdown ([`SipHandle::shutdown`]): requests still unanswered get 503, the transmit queue
//! is flushed, and the sockets close when the driver task returns.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod store;
pub mod tls;
mod udp;
mod websocket;

use std::collections::{HashMap, HashSet};
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use dashmap::DashMap;
use sip::endpoint::{Stats, UserAccount};
use sip::log_limit::LogLimit;
use sip::message::{Headers, Request};
use sip::parse::{Framed, StreamFramer};
use sip::registrar::{Binding, BindingChange};
use sip::transaction::{TxError, TxId};
use sip::{ConnId, Endpoint, Flow, SipEvent, Transmit, Transport};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, info, warn};

/// Socket settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransportConfig {
    /// UDP listen address.
    pub udp: Option<SocketAddr>,
    /// TCP listen address.
    pub tcp: Option<SocketAddr>,
    /// SIP over WebSocket (RFC 7118) listen address: browsers (the agent page). Each
    /// connection is its browser's only flow: requests to it go down the connection it
    /// registered on, whatever host it wrote in its Via and Contact.
    pub ws: Option<SocketAddr>,
    /// SIP over TLS listen address (desk phones, port 5061); needs [`Self::tls_files`].
    pub tls: Option<SocketAddr>,
    /// Secure WebSocket listen address (browsers on https pages); needs
    /// [`Self::tls_files`].
    pub wss: Option<SocketAddr>,
    /// The certificate and key of the TLS and WSS listeners (PEM), read again when they
    /// change.
    pub tls_files: Option<tls::TlsFiles>,
    /// Requested UDP receive buffer (SO_RCVBUF) in bytes; bursts of REGISTERs need more than
    /// the Linux default of 208 KiB. The kernel caps it at net.core.rmem_max.
    pub udp_recv_buffer: usize,
    /// Requested UDP send buffer in bytes.
    pub udp_send_buffer: usize,
    /// Largest message (octets) framed on TCP.
    pub max_message_size: usize,
    /// Most simultaneous TCP connections.
    pub max_tcp_connections: usize,
    /// Most simultaneous TCP connections from one source address (the endpoint's trusted
    /// addresses are not limited); 0 = no limit.
    pub max_tcp_per_source: usize,
    /// A TCP connection that carries no registrar binding and sends nothing for this long is
    /// closed. One carrying a binding stays open while the binding lives.
    pub tcp_idle_timeout: Duration,
    /// Where the registrar's bindings are kept across restarts; `None` keeps them in memory
    /// only.
    pub binding_store: Option<PathBuf>,
}

impl Default for TransportConfig {
    fn default() -> Self {
        TransportConfig {
            udp: Some(SocketAddr::from(([0, 0, 0, 0], 5060))),
            tcp: Some(SocketAddr::from(([0, 0, 0, 0], 5060))),
            ws: None,
            tls: None,
            wss: None,
            tls_files: None,
            udp_recv_buffer: 4 << 20,
            udp_send_buffer: 4 << 20,
            max_message_size: sip::parse::DEFAULT_MAX_MESSAGE_SIZE,
            max_tcp_connections: 10_000,
            max_tcp_per_source: 100,
            tcp_idle_timeout: Duration::from_secs(60),
            binding_store: None,
        }
    }
}

/// Errors starting the transport.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TransportError {
    /// The TLS certificate or key cannot be used.
    #[error("TLS certificate: {0}")]
    Tls(#[from] tls::TlsError),
    /// TLS or WSS is on but no certificate is configured.
    #[error("TLS or WSS listeners need a certificate and key")]
    NoCertificate,
    /// A socket could not be bound.
    #[error("cannot bind {proto} {addr}: {source}")]
    Bind {
        /// "UDP" or "TCP".
        proto: &'static str,
        /// The address.
        addr: SocketAddr,
        /// The OS error.
        source: io::Error,
    },
}

/// Where each address-of-record can be reached: the registrar's bindings, published by the
/// SIP task whenever they change, read by call control without a round trip.
pub type Locations = Arc<DashMap<String, Vec<Binding>>>;

/// Commands from call control to the SIP task.
#[derive(Debug)]
pub enum SipCommand {
    /// Answer a server transaction.
    Respond {
        /// The transaction.
        tx: TxId,
        /// Status code.
        status: u16,
        /// The To tag (the local tag of the dialog an INVITE answer creates); `None` lets the
        /// endpoint pick one.
        to_tag: Option<String>,
        /// Extra headers.
        headers: Headers,
        /// Body.
        body: Bytes,
    },
    /// Send a request in a new client transaction under an id chosen by the caller
    /// ([`TxId::user`]). If it cannot be sent, a [`SipEvent::Timeout`] for that id follows.
    Send {
        /// The caller's id for the transaction.
        id: TxId,
        /// Where to.
        flow: Flow,
        /// The request.
        request: Request,
    },
    /// Send a request outside any transaction (the ACK for a 2xx).
    SendStateless {
        /// Where to.
        flow: Flow,
        /// The request.
        request: Request,
    },
    /// Send a request in a new client transaction.
    SendRequest {
        /// Where to.
        flow: Flow,
        /// The request.
        request: Request,
        /// The transaction id, or why not.
        reply: oneshot::Sender<Result<TxId, TxError>>,
    },
    /// Cancel a pending client INVITE.
    Cancel {
        /// The INVITE's transaction.
        tx: TxId,
    },
    /// Replace the user accounts (config reload).
    SetUsers(HashMap<String, UserAccount>),
    /// Replace the trunks and the call challenge switch (config reload).
    SetCallAuth(sip::endpoint::CallAuthConfig),
    /// Read the counters.
    Stats(oneshot::Sender<TransportStats>),
}

/// Endpoint counters plus the socket facts that matter for capacity.
#[derive(Debug, Clone, Copy)]
pub struct TransportStats {
    /// The endpoint's counters.
    pub endpoint: Stats,
    /// Live bindings.
    pub bindings: usize,
    /// Live transactions.
    pub transactions: usize,
    /// The UDP receive buffer the kernel granted (bytes), if UDP is on.
    pub udp_recv_buffer: Option<usize>,
    /// Open TCP connections.
    pub tcp_connections: usize,
    /// TCP connections refused (per-source or global limit).
    pub tcp_refused: u64,
    /// TCP connections closed for idling without a binding.
    pub tcp_idle_closed: u64,
    /// New calls answered 503 because call control was behind (its event queue was more
    /// than three quarters full).
    pub calls_shed: u64,
    /// UDP datagrams of unknown sources dropped unread while the socket was behind.
    pub datagrams_shed: u64,
    /// Messages dropped because a TCP connection's write queue was full.
    pub tcp_queue_full: u64,
}

/// Handle to a running SIP task.
#[derive(Debug, Clone)]
pub struct SipHandle {
    commands: mpsc::Sender<SipCommand>,
    shutdown: mpsc::Sender<()>,
    /// The bound UDP address.
    pub udp_addr: Option<SocketAddr>,
    /// The bound TCP address.
    pub tcp_addr: Option<SocketAddr>,
    /// The bound WebSocket address.
    pub ws_addr: Option<SocketAddr>,
    /// The bound TLS address.
    pub tls_addr: Option<SocketAddr>,
    /// The bound secure WebSocket address.
    pub wss_addr: Option<SocketAddr>,
    /// The registrar's bindings, kept current by the SIP task.
    pub locations: Locations,
}

impl SipHandle {
    /// Send a command (waits if the queue is full).
    pub async fn command(&self, cmd: SipCommand) -> bool {
        self.commands.send(cmd).await.is_ok()
    }

    /// The command queue itself, for a caller that must never wait on it (it reserves a slot
    /// inside its own `select!` while it keeps reading events).
    pub fn commands(&self) -> &mpsc::Sender<SipCommand> {
        &self.commands
    }

    /// Ask for a graceful shutdown.
    pub async fn shutdown(&self) {
        let _ = self.shutdown.send(()).await;
    }

    /// Read the counters.
    pub async fn stats(&self) -> Option<TransportStats> {
        let (tx, rx) = oneshot::channel();
        self.commands.send(SipCommand::Stats(tx)).await.ok()?;
        rx.await.ok()
    }
}

enum TcpEvent {
    Opened(
        ConnId,
        SocketAddr,
        Transport,
        mpsc::Sender<Bytes>,
        Arc<AtomicBool>,
    ),
    Message(ConnId, SocketAddr, Bytes),
    Closed(ConnId, Closed),
    /// An outbound connection could not be made.
    ConnectFailed(SocketAddr),
}

/// What became of a message for a TCP peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TcpSend {
    Sent,
    /// The connection's write queue is full (the peer does not read): dropped.
    Full,
    /// No connection to that peer.
    NoConnection,
}

/// Why a connection ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Closed {
    /// The peer closed it, an error, or the stream could not be framed.
    Ended,
    /// It carried no binding and sent nothing for the idle timeout.
    Idle,
    /// The stream could not be cut into messages (too large, no Content-Length).
    Unframeable(&'static str),
    /// Its TLS or WebSocket opening handshake failed or did not come in time.
    Handshake(ConnNote),
}

/// A live TCP connection, as the SIP task sees it.
struct Conn {
    remote: SocketAddr,
    transport: Transport,
    tx: mpsc::Sender<Bytes>,
    /// Set while a registrar binding uses this connection: it is then not closed for idling.
    bound: Arc<AtomicBool>,
}

/// Why the transport logged something about a source's connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum ConnNote {
    NotReading,
    PerSourceLimit,
    GlobalLimit,
    Idle,
    Unframeable,
    /// A TLS handshake failed: plaintext SIP on the TLS port, or a client that does not
    /// accept our certificate.
    TlsHandshake,
    /// A WebSocket opening handshake failed (no `sip` subprotocol, not WebSocket at all).
    WsHandshake,
}

impl ConnNote {
    fn as_str(self) -> &'static str {
        match self {
            ConnNote::NotReading => "the peer does not read what we send (write queue full)",
            ConnNote::PerSourceLimit => "too many connections from this source",
            ConnNote::GlobalLimit => "too many connections",
            ConnNote::Idle => "idle without a registration",
            ConnNote::Unframeable => "stream not framed as SIP",
            ConnNote::TlsHandshake => "TLS handshake failed (plaintext SIP on the TLS port, or a client that does not accept our certificate)",
            ConnNote::WsHandshake => "WebSocket opening handshake failed (not WebSocket, or no sip subprotocol)",
        }
    }
}

fn bind_udp(addr: SocketAddr, cfg: &TransportConfig) -> io::Result<(UdpSocket, usize)> {
    use socket2::{Domain, Protocol, Socket, Type};
    let sock = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    // Best effort: the kernel caps both at its rmem_max / wmem_max.
    if let Err(e) = sock.set_recv_buffer_size(cfg.udp_recv_buffer) {
        warn!(error = %e, "could not set UDP receive buffer");
    }
    if let Err(e) = sock.set_send_buffer_size(cfg.udp_send_buffer) {
        warn!(error = %e, "could not set UDP send buffer");
    }
    sock.bind(&addr.into())?;
    sock.set_nonblocking(true)?;
    let granted = sock.recv_buffer_size().unwrap_or(0);
    Ok((UdpSocket::from_std(sock.into())?, granted))
}

/// Bind the sockets and start the SIP task. Events go to `events`; the returned handle sends
/// commands and asks for shutdown. The task ends after a shutdown has been flushed.
pub async fn start(
    endpoint: Endpoint,
    cfg: TransportConfig,
    events: mpsc::Sender<SipEvent>,
) -> Result<(SipHandle, tokio::task::JoinHandle<()>), TransportError> {
    // With port 0 for both (tests), TCP goes on the port UDP got, so one port serves both;
    // when another program holds that port for TCP, UDP tries another one.
    let any_port =
        matches!((cfg.udp, cfg.tcp), (Some(u), Some(t)) if u.port() == 0 && t.port() == 0);
    let mut attempts = 0;
    let (udp, granted, tcp) = loop {
        attempts += 1;
        let (udp, granted) = match cfg.udp {
            Some(addr) => {
                let (s, g) = bind_udp(addr, &cfg).map_err(|source| TransportError::Bind {
                    proto: "UDP",
                    addr,
                    source,
                })?;
                (Some(s), Some(g))
            }
            None => (None, None),
        };
        let tcp = match cfg.tcp {
            Some(mut addr) => {
                if addr.port() == 0 {
                    if let Some(p) = udp.as_ref().and_then(|s| s.local_addr().ok()) {
                        addr.set_port(p.port());
                    }
                }
                match TcpListener::bind(addr).await {
                    Ok(l) => Some(l),
                    Err(e)
                        if any_port
                            && attempts < 20
                            && e.kind() == std::io::ErrorKind::AddrInUse =>
                    {
                        continue;
                    }
                    Err(source) => {
                        return Err(TransportError::Bind {
                            proto: "TCP",
                            addr,
                            source,
                        })
                    }
                }
            }
            None => None,
        };
        break (udp, granted, tcp);
    };
    let certificate = match (&cfg.tls_files, cfg.tls.is_some() || cfg.wss.is_some()) {
        (Some(files), true) => Some(tls::Certificate::open(files.clone())?),
        (None, true) => return Err(TransportError::NoCertificate),
        (_, false) => None,
    };
    let listeners = Listeners {
        tcp,
        ws: listen("WebSocket", cfg.ws).await?,
        tls: listen("TLS", cfg.tls).await?,
        wss: listen("secure WebSocket", cfg.wss).await?,
    };
    let udp_addr = udp.as_ref().and_then(|s| s.local_addr().ok());
    let tcp_addr = listeners.tcp.as_ref().and_then(|s| s.local_addr().ok());
    let ws_addr = listeners.ws.as_ref().and_then(|s| s.local_addr().ok());
    let tls_addr = listeners.tls.as_ref().and_then(|s| s.local_addr().ok());
    let wss_addr = listeners.wss.as_ref().and_then(|s| s.local_addr().ok());
    info!(udp = ?udp_addr, tcp = ?tcp_addr, ws = ?ws_addr, tls = ?tls_addr, wss = ?wss_addr, udp_recv_buffer = ?granted, "SIP listening");
    let (cmd_tx, cmd_rx) = mpsc::channel(4096);
    let (sd_tx, sd_rx) = mpsc::channel(1);
    let locations: Locations = Arc::new(DashMap::new());
    let mut endpoint = endpoint;
    let store = cfg
        .binding_store
        .clone()
        .and_then(|path| open_store(path, &mut endpoint, &locations));
    let log_interval = endpoint.config().security.log_interval;
    let mut driver = Driver {
        certificate,
        by_remote: HashMap::new(),
        connecting: HashMap::new(),
        tcp_queue_full: 0,
        known: Known::default(),
        datagrams_shed: 0,
        burst: 0,
        burst_unknown: 0,
        udp_out: Vec::new(),
        locations: locations.clone(),
        endpoint,
        cfg,
        udp,
        udp_recv_buffer: granted,
        conns: HashMap::new(),
        inbound: HashMap::new(),
        per_source: HashMap::new(),
        conn_refs: HashMap::new(),
        aor_conns: HashMap::new(),
        conn_notes: LogLimit::new(log_interval, 10_000),
        tcp_refused: 0,
        tcp_idle_closed: 0,
        calls_shed: 0,
        shed_notes: LogLimit::new(Duration::from_secs(10), 1),
        datagram_notes: LogLimit::new(Duration::from_secs(10), 1),
        store,
        store_backlog: HashSet::new(),
        failed_sends: Vec::new(),
        next_conn: 1,
        events,
    };
    // Phones whose bindings were restored are known sources from the start.
    let aors: Vec<String> = driver.locations.iter().map(|e| e.key().clone()).collect();
    for aor in aors {
        driver.known.follow(&driver.locations, &aor);
    }
    let task = tokio::spawn(driver.run(listeners, cmd_rx, sd_rx));
    Ok((
        SipHandle {
            commands: cmd_tx,
            shutdown: sd_tx,
            udp_addr,
            tcp_addr,
            ws_addr,
            tls_addr,
            wss_addr,
            locations,
        },
        task,
    ))
}

/// Read the binding store, restore what is still alive into the endpoint and [`Locations`],
/// and start its writer. Problems are logged with the path and the reason; the server runs
/// on without the store (or with an empty one) rather than not at all.
fn open_store(
    path: PathBuf,
    endpoint: &mut Endpoint,
    locations: &Locations,
) -> Option<store::StoreWriter> {
    let loaded = match store::load(&path) {
        Ok(l) => l,
        Err(e) => {
            warn!(path = %path.display(), reason = %e, "binding store not read; starting without the stored bindings");
            if matches!(e, store::StoreError::Corrupt { .. }) {
                match store::set_aside(&path) {
                    Ok(to) => {
                        warn!(path = %path.display(), kept_as = %to.display(), "unreadable binding store moved aside")
                    }
                    Err(e) => {
                        warn!(path = %path.display(), error = %e, "cannot move the unreadable binding store aside")
                    }
                }
            }
            Vec::new()
        }
    };
    // Both clocks once: the stored expiries are wall-clock times, the registrar's are Instants.
    let (now, now_ms) = (Instant::now(), store::unix_ms(SystemTime::now()));
    let (mut restored, mut expired, mut refused) = (0usize, 0usize, 0usize);
    for b in &loaded {
        match b.to_restored(now_ms) {
            None => expired += 1,
            Some(r) => match endpoint.restore_binding(now, &b.aor, r) {
                Ok(()) => restored += 1,
                Err(e) => {
                    refused += 1;
                    debug!(aor = %b.aor, contact = %b.contact, reason = %e, "stored binding not restored");
                }
            },
        }
    }
    // Call control finds the restored phones before the first message arrives.
    let aors: HashSet<&str> = endpoint
        .registrar()
        .bindings()
        .map(|(aor, _)| aor)
        .collect();
    for aor in aors {
        locations.insert(aor.to_owned(), endpoint.registrar().lookup(aor).to_vec());
    }
    info!(
        path = %path.display(),
        restored,
        expired,
        refused,
        "registrar bindings restored from the store"
    );
    let keep: Vec<store::StoredBinding> = endpoint
        .registrar()
        .bindings()
        .map(|(aor, b)| store::StoredBinding::from_binding(aor, b, now, now_ms))
        .collect();
    match store::StoreWriter::start(path.clone(), keep) {
        Ok(w) => Some(w),
        Err(e) => {
            warn!(path = %path.display(), error = %e, "cannot start the binding store writer; bindings will not survive a restart");
            None
        }
    }
}

/// Source addresses with a registered binding (refcounted by AOR): under a flood their
/// datagrams are handled first (see [`Driver::run`]).
#[derive(Debug, Default)]
struct Known {
    ips: HashMap<IpAddr, usize>,
    by_aor: HashMap<String, Vec<IpAddr>>,
}

impl Known {
    /// Take the current bindings of `aor` from [`Locations`].
    fn follow(&mut self, locations: &Locations, aor: &str) {
        for ip in self.by_aor.remove(aor).unwrap_or_default() {
            if let Some(n) = self.ips.get_mut(&ip) {
                *n -= 1;
                if *n == 0 {
                    self.ips.remove(&ip);
                }
            }
        }
        let now: Vec<IpAddr> = locations
            .get(aor)
            .map(|b| b.iter().map(|b| b.flow.remote.ip()).collect())
            .unwrap_or_default();
        for ip in &now {
            *self.ips.entry(*ip).or_default() += 1;
        }
        if !now.is_empty() {
            self.by_aor.insert(aor.to_owned(), now);
        }
    }

    fn contains(&self, ip: &IpAddr) -> bool {
        self.ips.contains_key(ip)
    }
}

/// Datagrams read back to back (each read finding the socket still full) that make one
/// burst for [`UNKNOWN_PER_BURST`].
const UDP_BURST: usize = 1024;
/// Datagrams from unknown sources handled per burst once it shows the socket is behind
/// (more than this many queued); the rest of theirs is dropped unread.
const UNKNOWN_PER_BURST: usize = 16;

/// The listening sockets of the connection-oriented transports.
struct Listeners {
    tcp: Option<TcpListener>,
    ws: Option<TcpListener>,
    tls: Option<TcpListener>,
    wss: Option<TcpListener>,
}

async fn listen(
    proto: &'static str,
    addr: Option<SocketAddr>,
) -> Result<Option<TcpListener>, TransportError> {
    match addr {
        Some(addr) => {
            TcpListener::bind(addr)
                .await
                .map(Some)
                .map_err(|source| TransportError::Bind {
                    proto,
                    addr,
                    source,
                })
        }
        None => Ok(None),
    }
}

/// How long a TLS client may take to finish its handshake.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

struct Driver {
    /// The TLS certificate (for the TLS and WSS listeners).
    certificate: Option<tls::Certificate>,
    /// Open connections by the peer's address (the newest, if several).
    by_remote: HashMap<SocketAddr, ConnId>,
    /// Outbound connections being made, with what waits to be sent on them.
    connecting: HashMap<SocketAddr, Vec<Bytes>>,
    /// Messages dropped because a connection's write queue was full.
    tcp_queue_full: u64,
    /// Registered phones' addresses.
    known: Known,
    /// Datagrams from unknown sources dropped while the socket was behind.
    datagrams_shed: u64,
    /// Datagrams read in the current burst, and how many of them came from unknown sources.
    burst: usize,
    burst_unknown: usize,
    /// UDP answers gathered while draining the endpoint, sent in batches.
    udp_out: Vec<Transmit>,
    locations: Locations,
    endpoint: Endpoint,
    cfg: TransportConfig,
    udp: Option<UdpSocket>,
    udp_recv_buffer: Option<usize>,
    conns: HashMap<ConnId, Conn>,
    /// Accepted connections by source address, counted from the accept (before the
    /// connection task reports itself) so that a burst cannot overrun the per-source limit.
    inbound: HashMap<ConnId, IpAddr>,
    per_source: HashMap<IpAddr, usize>,
    /// Bindings per connection, and the connections each AOR's bindings use.
    conn_refs: HashMap<ConnId, u32>,
    aor_conns: HashMap<String, Vec<ConnId>>,
    /// Refused and idle-closed connections, logged once per source and interval.
    conn_notes: LogLimit<(IpAddr, ConnNote)>,
    tcp_refused: u64,
    tcp_idle_closed: u64,
    calls_shed: u64,
    /// Shedding is logged once per interval.
    shed_notes: LogLimit<()>,
    /// Dropped datagrams are logged once per interval.
    datagram_notes: LogLimit<()>,
    /// The binding store's writer, if configured.
    store: Option<store::StoreWriter>,
    /// AORs whose update found the store's queue full: offered again soon.
    store_backlog: HashSet<String>,
    /// Caller-named requests that could not be sent: reported as timeouts.
    failed_sends: Vec<TxId>,
    next_conn: u64,
    events: mpsc::Sender<SipEvent>,
}

async fn recv_udp(sock: Option<&UdpSocket>, batch: &mut udp::RecvBatch) -> io::Result<usize> {
    match sock {
        Some(s) => batch.recv(s).await,
        None => std::future::pending().await,
    }
}

async fn accept_tcp(l: Option<&TcpListener>) -> io::Result<(TcpStream, SocketAddr)> {
    match l {
        Some(l) => l.accept().await,
        None => std::future::pending().await,
    }
}

impl Driver {
    async fn run(
        mut self,
        listeners: Listeners,
        mut commands: mpsc::Receiver<SipCommand>,
        mut shutdown: mpsc::Receiver<()>,
    ) {
        let (tcp_tx, mut tcp_rx) = mpsc::channel::<TcpEvent>(4096);
        let mut rx = udp::RecvBatch::new();
        let sleep = tokio::time::sleep(Duration::from_secs(3600));
        tokio::pin!(sleep);
        let mut armed: Option<Instant> = None;
        loop {
            let retry_store = (!self.store_backlog.is_empty())
                .then(|| Instant::now() + Duration::from_millis(50));
            let deadline = [
                self.endpoint.poll_timeout(),
                self.conn_notes.poll_timeout(),
                retry_store,
            ]
            .into_iter()
            .flatten()
            .min();
            if deadline != armed {
                armed = deadline;
                let at = deadline.unwrap_or_else(|| Instant::now() + Duration::from_secs(3600));
                sleep.as_mut().reset(tokio::time::Instant::from_std(at));
            }
            tokio::select! {
                _ = shutdown.recv() => break,
                r = recv_udp(self.udp.as_ref(), &mut rx) => match r {
                    Ok(_) => self.take_datagrams(&rx),
                    Err(e) => debug!(error = %e, "UDP receive error"),
                },
                r = accept_tcp(listeners.tcp.as_ref()) => match r {
                    Ok((stream, remote)) => self.accept(stream, remote, Transport::Tcp, &tcp_tx),
                    Err(e) => debug!(error = %e, "TCP accept error"),
                },
                r = accept_tcp(listeners.ws.as_ref()) => match r {
                    Ok((stream, remote)) => self.accept(stream, remote, Transport::Ws, &tcp_tx),
                    Err(e) => debug!(error = %e, "WebSocket accept error"),
                },
                r = accept_tcp(listeners.tls.as_ref()) => match r {
                    Ok((stream, remote)) => self.accept(stream, remote, Transport::Tls, &tcp_tx),
                    Err(e) => debug!(error = %e, "TLS accept error"),
                },
                r = accept_tcp(listeners.wss.as_ref()) => match r {
                    Ok((stream, remote)) => self.accept(stream, remote, Transport::Wss, &tcp_tx),
                    Err(e) => debug!(error = %e, "secure WebSocket accept error"),
                },
                Some(ev) = tcp_rx.recv() => self.on_tcp(ev),
                Some(cmd) = commands.recv() => self.on_command(cmd),
                // Only while armed: an elapsed sleep stays ready, and with no deadline left it
                // would wake this loop again at once, for ever.
                _ = &mut sleep, if armed.is_some() => {
                    armed = None;
                    let now = Instant::now();
                    self.endpoint.handle_timeout(now);
                    self.summarise_conn_notes(now);
                }
            }
            self.flush_transmits_with(&tcp_tx).await;
            self.flush_events().await;
            self.follow_bindings();
        }
        // Graceful shutdown: answer what is pending, flush, close.
        self.endpoint.shutdown(Instant::now());
        self.flush_transmits_with(&tcp_tx).await;
        self.flush_events().await;
        self.follow_bindings();
        // What still waits for room in the store's queue is offered until it fits (the
        // writer drains it), then the writer finishes its last write.
        for _ in 0..200 {
            if self.store_backlog.is_empty() || self.store.is_none() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
            self.follow_bindings();
        }
        if let Some(store) = self.store.take() {
            store.finish().await;
        }
        info!("SIP transport stopped");
    }

    /// One batch read from the UDP socket (up to [`udp::BATCH`] datagrams, one system call);
    /// what it makes the endpoint send goes out before the next batch is read, so an answer
    /// waits behind at most one batch. Once a burst shows the socket is behind (a flood, or a
    /// storm), the datagrams of registered phones and trunks are all handled and those of
    /// unknown sources only up to a budget: the rest is dropped unread, so the socket is
    /// drained far faster than it fills and the kernel does not drop a customer's INVITE at
    /// random.
    fn take_datagrams(&mut self, rx: &udp::RecvBatch) {
        for i in 0..rx.len() {
            let (data, from) = rx.get(i);
            self.burst += 1;
            if !self.is_known(from.ip()) {
                self.burst_unknown += 1;
                if self.burst > UNKNOWN_PER_BURST && self.burst_unknown > UNKNOWN_PER_BURST {
                    self.shed_datagram();
                    continue;
                }
            }
            let flow = Flow {
                transport: Transport::Udp,
                remote: from,
                conn: None,
            };
            feed(&mut self.endpoint, flow, data);
        }
        // A read that found fewer than it could take emptied the socket: the burst is over.
        if rx.len() < udp::BATCH || self.burst >= UDP_BURST {
            self.burst = 0;
            self.burst_unknown = 0;
        }
    }

    /// A new inbound TCP connection: refused at once beyond the global or per-source limit.
    fn accept(
        &mut self,
        stream: TcpStream,
        remote: SocketAddr,
        transport: Transport,
        tcp_tx: &mpsc::Sender<TcpEvent>,
    ) {
        let ip = remote.ip();
        let ep = self.endpoint.config();
        let limited = !ep.security.trusted.contains(&ip);
        // Trusted peers and trunks place calls without registering: their connections must
        // outlive a quiet call, so they are not closed for idling.
        let keep = !limited || ep.calls.trunks.iter().any(|t| t.addresses.contains(&ip));
        let from_source = self.per_source.get(&ip).copied().unwrap_or(0);
        let open = self.conns.len().max(self.inbound.len()) + self.connecting.len();
        let refused = if open >= self.cfg.max_tcp_connections {
            Some(ConnNote::GlobalLimit)
        } else if limited
            && self.cfg.max_tcp_per_source > 0
            && from_source >= self.cfg.max_tcp_per_source
        {
            Some(ConnNote::PerSourceLimit)
        } else {
            None
        };
        if let Some(why) = refused {
            drop(stream);
            self.tcp_refused += 1;
            if self.conn_notes.note(Instant::now(), (ip, why)) {
                warn!(
                    source = %ip,
                    reason = why.as_str(),
                    open_from_source = from_source,
                    limit = self.cfg.max_tcp_per_source,
                    "TCP connection refused; more from this source are counted"
                );
            }
            return;
        }
        let id = self.alloc_conn();
        self.inbound.insert(id, ip);
        *self.per_source.entry(ip).or_default() += 1;
        let (cfg, events) = (self.cfg.clone(), tcp_tx.clone());
        match transport {
            Transport::Ws => {
                tokio::spawn(websocket::serve(
                    id,
                    stream,
                    remote,
                    Transport::Ws,
                    keep,
                    cfg,
                    events,
                ));
            }
            Transport::Tls | Transport::Wss => {
                let Some(acceptor) = self.certificate.as_mut().map(tls::Certificate::acceptor)
                else {
                    return;
                };
                let _ = stream.set_nodelay(true);
                tokio::spawn(async move {
                    let handshake = acceptor.accept(stream);
                    let stream = match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, handshake).await
                    {
                        Ok(Ok(s)) => s,
                        failed => {
                            let reason = match failed {
                                Ok(Err(e)) => e.to_string(),
                                _ => "no handshake in time".to_owned(),
                            };
                            let note = ConnNote::TlsHandshake;
                            return handshake_failed(&events, id, remote, note, &reason).await;
                        }
                    };
                    if transport == Transport::Wss {
                        websocket::serve(id, stream, remote, Transport::Wss, keep, cfg, events)
                            .await;
                    } else {
                        run_connection(id, stream, remote, Transport::Tls, None, keep, cfg, events)
                            .await;
                    }
                });
            }
            _ => spawn_connection(id, stream, remote, None, keep, cfg, events),
        }
    }

    fn summarise_conn_notes(&mut self, now: Instant) {
        let secs = self.conn_notes.interval().as_secs();
        for ((ip, why), count) in self.conn_notes.handle_timeout(now) {
            match why {
                ConnNote::Idle | ConnNote::Unframeable => {
                    info!(source = %ip, reason = why.as_str(), closed = count, interval_secs = secs, "TCP connections closed (summary)")
                }
                ConnNote::NotReading => {
                    warn!(source = %ip, reason = why.as_str(), dropped = count, interval_secs = secs, "TCP messages dropped (summary)")
                }
                _ => {
                    warn!(source = %ip, reason = why.as_str(), refused = count, interval_secs = secs, "TCP connections refused (summary)")
                }
            }
        }
        let untracked = self.conn_notes.take_untracked();
        if untracked > 0 {
            warn!(
                count = untracked,
                "TCP connections refused or closed from more sources than are tracked one by one"
            );
        }
    }

    /// After each input: the AORs whose bindings changed go to the binding store, and the
    /// connections their bindings use are marked (kept open while bound).
    fn follow_bindings(&mut self) {
        let touched = self.endpoint.drain_touched_aors();
        if touched.is_empty() && self.store_backlog.is_empty() {
            return;
        }
        for aor in &touched {
            self.track_conns(aor);
        }
        let Some(store) = &self.store else {
            return;
        };
        let (now, now_ms) = (Instant::now(), store::unix_ms(SystemTime::now()));
        let mut pending: Vec<String> = self.store_backlog.drain().collect();
        pending.extend(touched);
        let mut full = false;
        for aor in pending {
            if full {
                self.store_backlog.insert(aor);
                continue;
            }
            let bindings = self
                .endpoint
                .registrar()
                .lookup(&aor)
                .iter()
                .map(|b| store::StoredBinding::from_binding(&aor, b, now, now_ms))
                .collect();
            if let Err(u) = store.offer(store::AorUpdate { aor, bindings }) {
                full = true;
                self.store_backlog.insert(u.aor);
            }
        }
    }

    /// Recount which connections `aor`'s bindings use.
    fn track_conns(&mut self, aor: &str) {
        let now: Vec<ConnId> = self
            .endpoint
            .registrar()
            .lookup(aor)
            .iter()
            .filter_map(|b| b.flow.conn)
            .collect();
        let before = if now.is_empty() {
            self.aor_conns.remove(aor).unwrap_or_default()
        } else {
            self.aor_conns
                .insert(aor.to_owned(), now.clone())
                .unwrap_or_default()
        };
        if before.is_empty() && now.is_empty() {
            return;
        }
        for id in &before {
            if let Some(n) = self.conn_refs.get_mut(id) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    self.conn_refs.remove(id);
                }
            }
        }
        for id in &now {
            *self.conn_refs.entry(*id).or_default() += 1;
        }
        for id in before.iter().chain(&now) {
            if let Some(c) = self.conns.get(id) {
                c.bound
                    .store(self.conn_refs.contains_key(id), Ordering::Relaxed);
            }
        }
    }

    fn alloc_conn(&mut self) -> ConnId {
        let id = ConnId(self.next_conn);
        self.next_conn += 1;
        id
    }

    fn on_tcp(&mut self, ev: TcpEvent) {
        match ev {
            TcpEvent::Opened(id, remote, transport, tx, bound) => {
                bound.store(self.conn_refs.contains_key(&id), Ordering::Relaxed);
                // Messages that waited for this outbound connection.
                for b in self.connecting.remove(&remote).unwrap_or_default() {
                    if tx.try_send(b).is_err() {
                        self.tcp_queue_full += 1;
                    }
                }
                if transport == Transport::Tcp {
                    self.by_remote.insert(remote, id);
                }
                self.conns.insert(
                    id,
                    Conn {
                        remote,
                        transport,
                        tx,
                        bound,
                    },
                );
            }
            TcpEvent::ConnectFailed(remote) => {
                let dropped = self.connecting.remove(&remote).map_or(0, |v| v.len());
                debug!(remote = %remote, dropped, "TCP connect failed; messages dropped");
            }
            TcpEvent::Message(id, remote, bytes) => {
                let Some(transport) = self.conns.get(&id).map(|c| c.transport) else {
                    return;
                };
                let flow = Flow {
                    transport,
                    remote,
                    conn: Some(id),
                };
                feed(&mut self.endpoint, flow, &bytes);
            }
            TcpEvent::Closed(id, why) => {
                let closed = self.conns.remove(&id);
                // A browser or a TLS phone is reached only over its own connection: with it
                // gone, so are its bindings (TCP phones are connected to again).
                if closed
                    .as_ref()
                    .is_some_and(|c| c.transport.is_websocket() || c.transport == Transport::Tls)
                {
                    self.endpoint.connection_closed(Instant::now(), id);
                }
                let remote = closed.map(|c| c.remote);
                if let Some(r) = remote {
                    if self.by_remote.get(&r) == Some(&id) {
                        self.by_remote.remove(&r);
                    }
                }
                if let (Closed::Handshake(note), Some(ip)) = (why, self.inbound.get(&id).copied()) {
                    if self.conn_notes.note(Instant::now(), (ip, note)) {
                        warn!(
                            source = %ip,
                            reason = note.as_str(),
                            "connection refused; more from this source are counted"
                        );
                    }
                }
                if let Some(ip) = self.inbound.remove(&id) {
                    if let Some(n) = self.per_source.get_mut(&ip) {
                        *n = n.saturating_sub(1);
                        if *n == 0 {
                            self.per_source.remove(&ip);
                        }
                    }
                }
                self.conn_refs.remove(&id);
                if let (Closed::Unframeable(detail), Some(r)) = (why, remote) {
                    if self
                        .conn_notes
                        .note(Instant::now(), (r.ip(), ConnNote::Unframeable))
                    {
                        warn!(
                            source = %r.ip(),
                            reason = ConnNote::Unframeable.as_str(),
                            detail,
                            "TCP connection closed; more from this source are counted"
                        );
                    }
                }
                if why == Closed::Idle {
                    self.tcp_idle_closed += 1;
                    if let Some(r) = remote {
                        debug!(remote = %r, "TCP connection closed: idle without a registration");
                        if self
                            .conn_notes
                            .note(Instant::now(), (r.ip(), ConnNote::Idle))
                        {
                            info!(
                                source = %r.ip(),
                                reason = ConnNote::Idle.as_str(),
                                idle_secs = self.cfg.tcp_idle_timeout.as_secs(),
                                "TCP connection closed; more from this source are counted"
                            );
                        }
                    }
                }
            }
        }
    }

    fn on_command(&mut self, cmd: SipCommand) {
        let now = Instant::now();
        match cmd {
            SipCommand::Stats(reply) => {
                let _ = reply.send(TransportStats {
                    endpoint: *self.endpoint.stats(),
                    bindings: self.endpoint.registrar().binding_count(),
                    transactions: self.endpoint.transaction_count(),
                    udp_recv_buffer: self.udp_recv_buffer,
                    tcp_connections: self.conns.len(),
                    tcp_refused: self.tcp_refused,
                    tcp_idle_closed: self.tcp_idle_closed,
                    calls_shed: self.calls_shed,
                    datagrams_shed: self.datagrams_shed,
                    tcp_queue_full: self.tcp_queue_full,
                });
            }
            cmd => {
                if let Some(failed) = apply(&mut self.endpoint, now, cmd) {
                    self.failed_sends.push(failed);
                }
            }
        }
    }

    async fn flush_transmits_with(&mut self, tcp_tx: &mpsc::Sender<TcpEvent>) {
        while let Some(t) = self.endpoint.poll_transmit() {
            match t.flow.transport {
                Transport::Udp => self.udp_out.push(t),
                Transport::Tcp | Transport::Tls | Transport::Ws | Transport::Wss => {
                    match self.send_tcp(&t) {
                        TcpSend::Sent => {}
                        TcpSend::Full => {
                            // The peer does not read: the connection stays, the message goes
                            // (the transaction times out like a lost datagram).
                            self.tcp_queue_full += 1;
                            let ip = t.flow.remote.ip();
                            if self
                                .conn_notes
                                .note(Instant::now(), (ip, ConnNote::NotReading))
                            {
                                warn!(
                                    source = %ip,
                                    reason = ConnNote::NotReading.as_str(),
                                    "TCP messages dropped, connection kept; more are counted"
                                );
                            }
                        }
                        TcpSend::NoConnection if t.flow.transport == Transport::Tcp => {
                            self.connect_tcp(t, tcp_tx)
                        }
                        // A browser (or a TLS phone) is reached only over the connection it
                        // opened: with that gone, the message is lost like a datagram and the
                        // transaction times out.
                        TcpSend::NoConnection => {
                            debug!(remote = %t.flow.remote, transport = t.flow.transport.as_str(), "no connection to the peer; message dropped");
                        }
                    }
                }
            }
        }
        self.send_udp().await;
    }

    fn send_tcp(&mut self, t: &Transmit) -> TcpSend {
        let conn = t
            .flow
            .conn
            .and_then(|c| self.conns.get(&c))
            .or_else(|| {
                self.by_remote
                    .get(&t.flow.remote)
                    .and_then(|id| self.conns.get(id))
            })
            .filter(|c| c.transport == t.flow.transport);
        match conn {
            Some(c) => match c.tx.try_send(t.payload.clone()) {
                Ok(()) => TcpSend::Sent,
                Err(mpsc::error::TrySendError::Full(_)) => TcpSend::Full,
                Err(mpsc::error::TrySendError::Closed(_)) => TcpSend::NoConnection,
            },
            None => TcpSend::NoConnection,
        }
    }

    /// The peer's connection is gone: open one to the flow's address (one at a time per
    /// address; what comes meanwhile waits for it), counted against the connection limit.
    fn connect_tcp(&mut self, t: Transmit, tcp_tx: &mpsc::Sender<TcpEvent>) {
        let remote = t.flow.remote;
        if let Some(waiting) = self.connecting.get_mut(&remote) {
            if waiting.len() < 256 {
                waiting.push(t.payload);
            } else {
                self.tcp_queue_full += 1;
            }
            return;
        }
        if self.conns.len() + self.connecting.len() >= self.cfg.max_tcp_connections {
            self.tcp_refused += 1;
            if self
                .conn_notes
                .note(Instant::now(), (remote.ip(), ConnNote::GlobalLimit))
            {
                warn!(
                    remote = %remote,
                    reason = ConnNote::GlobalLimit.as_str(),
                    "outbound TCP connection not opened; message dropped"
                );
            }
            return;
        }
        // Everything for this peer goes out in order once the connection is up.
        self.connecting.insert(remote, vec![t.payload]);
        let id = self.alloc_conn();
        let cfg = self.cfg.clone();
        let tx = tcp_tx.clone();
        tokio::spawn(async move {
            match tokio::time::timeout(Duration::from_secs(5), TcpStream::connect(remote)).await {
                Ok(Ok(stream)) => spawn_connection(id, stream, remote, None, false, cfg, tx),
                _ => {
                    let _ = tx.send(TcpEvent::ConnectFailed(remote)).await;
                }
            }
        });
    }

    /// Send the gathered UDP answers, many per system call.
    async fn send_udp(&mut self) {
        if self.udp_out.is_empty() {
            return;
        }
        let out = std::mem::take(&mut self.udp_out);
        if let Some(sock) = self.udp.as_ref() {
            let batch: Vec<(&[u8], SocketAddr)> = out
                .iter()
                .map(|t| (t.payload.as_ref(), t.flow.remote))
                .collect();
            udp::send(sock, &batch).await;
        }
        self.udp_out = out;
        self.udp_out.clear();
    }

    async fn flush_events(&mut self) {
        for tx in std::mem::take(&mut self.failed_sends) {
            if self.events.send(SipEvent::Timeout { tx }).await.is_err() {
                return;
            }
        }
        while let Some(ev) = self.endpoint.poll_event() {
            if let SipEvent::Binding(change) = &ev {
                self.publish_location(change);
            }
            if let Some(tx) = new_call(&ev) {
                if self.events.capacity() * 4 < self.events.max_capacity() {
                    // Call control is behind: a new call waits for nobody. Everything
                    // else (BYEs, responses, registrations) still queues below.
                    self.shed(tx);
                    continue;
                }
            }
            // Bounded channel: call control applies back-pressure here.
            if self.events.send(ev).await.is_err() {
                break;
            }
        }
    }

    /// Turn a new call away with 503 and Retry-After (RFC 3261 §21.5.4).
    fn shed(&mut self, tx: TxId) {
        self.calls_shed += 1;
        let mut h = Headers::default();
        h.push("Retry-After", "5");
        let now = Instant::now();
        let _ = self.endpoint.respond(now, tx, 503, h, Bytes::new());
        for ((), n) in self.shed_notes.handle_timeout(now) {
            warn!(
                shed = self.calls_shed,
                since_last_line = n,
                "call control is still behind: new calls get 503"
            );
        }
        if self.shed_notes.note(now, ()) {
            warn!(
                shed = self.calls_shed,
                "call control is behind: new calls get 503 with Retry-After"
            );
        }
    }

    fn publish_location(&mut self, change: &BindingChange) {
        publish_location(&self.endpoint, &self.locations, change);
        let (BindingChange::Added { aor, .. }
        | BindingChange::Updated { aor, .. }
        | BindingChange::Removed { aor, .. }) = change;
        self.known.follow(&self.locations, aor);
    }

    /// A registered phone, a trunk, or a trusted address.
    fn is_known(&self, ip: IpAddr) -> bool {
        if self.known.contains(&ip) {
            return true;
        }
        let cfg = self.endpoint.config();
        cfg.calls.trunks.iter().any(|t| t.addresses.contains(&ip))
            || cfg.security.trusted.contains(&ip)
    }

    fn shed_datagram(&mut self) {
        self.datagrams_shed += 1;
        let now = Instant::now();
        for ((), n) in self.datagram_notes.handle_timeout(now) {
            warn!(
                dropped = n,
                total = self.datagrams_shed,
                "SIP socket still behind: datagrams of unknown sources dropped unread"
            );
        }
        if self.datagram_notes.note(now, ()) {
            warn!(
                total = self.datagrams_shed,
                "SIP socket behind (a flood?): datagrams of unknown sources dropped unread, \
                 registered phones and trunks served first"
            );
        }
    }
}

/// The server transaction of a new call (an INVITE outside any dialog).
fn new_call(ev: &SipEvent) -> Option<TxId> {
    match ev {
        SipEvent::Request { tx, request, .. }
            if request.method == sip::message::Method::Invite
                && request
                    .headers
                    .get("To")
                    .is_none_or(|t| !t.contains(";tag=")) =>
        {
            Some(*tx)
        }
        _ => None,
    }
}

/// Carry out a command on the endpoint at `now` (every command but [`SipCommand::Stats`],
/// which needs the sockets). Returns the id of a [`SipCommand::Send`] that could not be sent:
/// the layer above must hear a [`SipEvent::Timeout`] for it. The driver task does this with
/// every command; a test can drive an endpoint the same way without sockets.
pub fn apply(endpoint: &mut Endpoint, now: Instant, cmd: SipCommand) -> Option<TxId> {
    match cmd {
        SipCommand::Respond {
            tx,
            status,
            to_tag,
            headers,
            body,
        } => {
            if let Err(e) =
                endpoint.respond_tagged(now, tx, status, to_tag.as_deref(), headers, body)
            {
                debug!(tx = tx.0, ?e, "response not sent");
            }
        }
        SipCommand::Send { id, flow, request } => {
            if let Err(e) = endpoint.send_request_as(now, flow, request, id) {
                debug!(tx = id.0, ?e, "request not sent");
                return Some(id);
            }
        }
        SipCommand::SendStateless { flow, request } => {
            endpoint.send_stateless_request(now, flow, request);
        }
        SipCommand::SendRequest {
            flow,
            request,
            reply,
        } => {
            let _ = reply.send(endpoint.send_request(now, flow, request));
        }
        SipCommand::Cancel { tx } => {
            endpoint.cancel(now, tx);
        }
        SipCommand::SetUsers(users) => endpoint.set_users(users),
        SipCommand::SetCallAuth(calls) => endpoint.set_call_auth(calls),
        SipCommand::Stats(_) => {}
    }
    None
}

/// Copy the bindings of the AOR a change is about from the endpoint's registrar into
/// [`Locations`] (what the driver does before it passes a [`SipEvent::Binding`] on).
pub fn publish_location(endpoint: &Endpoint, locations: &Locations, change: &BindingChange) {
    let aor = match change {
        BindingChange::Added { aor, .. }
        | BindingChange::Updated { aor, .. }
        | BindingChange::Removed { aor, .. } => aor,
    };
    let now = endpoint.registrar().lookup(aor).to_vec();
    if now.is_empty() {
        locations.remove(aor);
    } else {
        locations.insert(aor.clone(), now);
    }
}

/// Hand one message to the endpoint. A message from the network must never take the server
/// down: should parsing or handling it panic (a bug), the panic is caught here, logged with
/// the sender, and the message dropped, and the SIP task goes on serving everyone else.
fn feed(endpoint: &mut Endpoint, flow: Flow, data: &[u8]) {
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        endpoint.handle_message(Instant::now(), flow, data)
    }));
    if r.is_err() {
        tracing::error!(
            remote = %flow.remote,
            len = data.len(),
            "a message made the SIP stack panic; it was dropped (please report this)"
        );
    }
}

/// A connection's opening handshake (TLS, WebSocket) failed or did not come in time: the SIP
/// task is told, and logs it once per source and interval.
async fn handshake_failed(
    events: &mpsc::Sender<TcpEvent>,
    id: ConnId,
    remote: SocketAddr,
    note: ConnNote,
    reason: &str,
) {
    debug!(source = %remote.ip(), what = note.as_str(), reason, "opening handshake failed");
    let _ = events
        .send(TcpEvent::Closed(id, Closed::Handshake(note)))
        .await;
}

fn spawn_connection(
    id: ConnId,
    stream: TcpStream,
    remote: SocketAddr,
    first: Option<Bytes>,
    keep: bool,
    cfg: TransportConfig,
    events: mpsc::Sender<TcpEvent>,
) {
    let _ = stream.set_nodelay(true);
    tokio::spawn(run_connection(
        id,
        stream,
        remote,
        Transport::Tcp,
        first,
        keep,
        cfg,
        events,
    ));
}

/// Carry a stream connection (TCP or TLS) until it ends: a reader framing SIP messages and
/// answering CRLF keep-alives, a writer sending what the SIP task queues.
#[allow(clippy::too_many_arguments)]
async fn run_connection<S>(
    id: ConnId,
    stream: S,
    remote: SocketAddr,
    transport: Transport,
    first: Option<Bytes>,
    keep: bool,
    cfg: TransportConfig,
    events: mpsc::Sender<TcpEvent>,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + 'static,
{
    let (mut rd, mut wr) = tokio::io::split(stream);
    let (out_tx, mut out_rx) = mpsc::channel::<Bytes>(256);
    let bound = Arc::new(AtomicBool::new(false));
    {
        if events
            .send(TcpEvent::Opened(
                id,
                remote,
                transport,
                out_tx.clone(),
                bound.clone(),
            ))
            .await
            .is_err()
        {
            return;
        }
        if let Some(b) = first {
            let _ = out_tx.send(b).await;
        }
        let writer = tokio::spawn(async move {
            while let Some(b) = out_rx.recv().await {
                if wr.write_all(&b).await.is_err() {
                    break;
                }
            }
            let _ = wr.shutdown().await;
        });
        let mut framer = StreamFramer::new(cfg.max_message_size);
        let mut buf = vec![0u8; 16 * 1024];
        let mut why = Closed::Ended;
        'read: loop {
            let n = match tokio::time::timeout(cfg.tcp_idle_timeout, rd.read(&mut buf)).await {
                Ok(Ok(0)) | Ok(Err(_)) => break,
                // Idle: kept while a binding uses the connection, closed otherwise.
                Err(_) if keep || bound.load(Ordering::Relaxed) => continue,
                Err(_) => {
                    why = Closed::Idle;
                    break;
                }
                Ok(Ok(n)) => n,
            };
            framer.push(&buf[..n]);
            loop {
                match framer.next_item() {
                    Ok(Some(Framed::Message(m))) => {
                        if events.send(TcpEvent::Message(id, remote, m)).await.is_err() {
                            break 'read;
                        }
                    }
                    Ok(Some(Framed::Ping)) => {
                        let _ = out_tx.send(Bytes::from_static(b"\r\n")).await;
                    }
                    Ok(None) => break,
                    Err(e) => {
                        debug!(remote = %remote, error = ?e, "closing TCP connection: unframeable stream");
                        why = Closed::Unframeable(match e {
                            sip::parse::StreamError::TooLarge => "message too large",
                            sip::parse::StreamError::MissingContentLength => "no Content-Length",
                        });
                        break 'read;
                    }
                }
            }
        }
        drop(out_tx);
        let _ = events.send(TcpEvent::Closed(id, why)).await;
        let _ = writer.await;
    }
}
