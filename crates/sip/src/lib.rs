//! Sans-IO SIP signalling core for Switchboard.
//!
//! No sockets, no tokio, no clock reads, no own randomness: time (`now: Instant`), the server
//! secret and a seed are inputs, so everything here runs in virtual time in tests, under a
//! fuzzer and in benchmarks.
//!
//! - [`parse`]: framing and normalisation (RFC 3261 §7, §18.3) before anything looks at a
//!   message: compact forms, folded lines, bare LF, Content-Length, size limit.
//!   [`message`], [`uri`] and [`header`] are the model and the typed header views (the
//!   project's own: see `docs/conformance.md` for why no SIP parsing crate is used).
//! - [`transaction`]: the four RFC 3261 §17 state machines, timers A–K (+ L, M of RFC 6026).
//! - [`digest`]: server-side digest authentication (RFC 7616, RFC 8760; MD5 and SHA-256).
//! - [`registrar`]: bindings (RFC 3261 §10.3) with expiry, ordering, limits and qualify.
//! - [`dialog`]: dialog state (RFC 3261 §12) and the in-dialog requests built from it.
//! - [`log_limit`]: first occurrence logged, then one count per interval (floods).
//! - [`endpoint`]: ties them together, answers REGISTER and OPTIONS, and protects itself from
//!   strangers; authenticates callers (407) or recognises trunks; retransmits 2xx answers to
//!   INVITE until their ACK; everything else goes up as [`endpoint::SipEvent`].
//!
//! # Driving an [`Endpoint`]
//!
//! ```no_run
//! # use std::time::Instant;
//! # use sip::{Endpoint, EndpointConfig, Flow, Transport};
//! # let mut endpoint = Endpoint::new(EndpointConfig::default(), Default::default(), Instant::now());
//! # let (from, bytes): (std::net::SocketAddr, Vec<u8>) = ("127.0.0.1:5062".parse().unwrap(), vec![]);
//! let now = Instant::now();
//! let flow = Flow { transport: Transport::Udp, remote: from, conn: None };
//! endpoint.handle_message(now, flow, &bytes);       // or handle_timeout(now), respond(now, ..)
//! while let Some(t) = endpoint.poll_transmit() { /* socket.send_to(&t.payload, t.flow.remote) */ }
//! while let Some(ev) = endpoint.poll_event() { /* hand to call control */ }
//! let deadline = endpoint.poll_timeout();           // sleep until then, or until input arrives
//! ```
//!
//! On a stream transport, cut messages with [`parse::StreamFramer`] first and answer its
//! [`parse::Framed::Ping`] keep-alives with a CRLF.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod dialog;
pub mod digest;
pub mod endpoint;
pub mod header;
pub mod log_limit;
pub mod message;
pub mod parse;
pub mod registrar;
pub mod stun;
pub mod transaction;
pub mod uri;

pub use dialog::Dialog;
pub use endpoint::{Caller, Endpoint, EndpointConfig, SipEvent, UserAccount};

use std::net::SocketAddr;

/// A transport protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transport {
    /// UDP: unreliable, so transactions retransmit.
    Udp,
    /// TCP: reliable, stream framed by Content-Length.
    Tcp,
    /// TLS over TCP (RFC 3261 §26, port 5061): framed like TCP.
    Tls,
    /// WebSocket (RFC 7118): one SIP message per WebSocket message; the connection is the
    /// browser's only flow (it cannot be reached any other way).
    Ws,
    /// Secure WebSocket (RFC 7118 over TLS).
    Wss,
}

impl Transport {
    /// Reliable transports skip retransmissions and the wait timers.
    pub fn is_reliable(self) -> bool {
        !matches!(self, Transport::Udp)
    }

    /// Encrypted on the wire (TLS, WSS).
    pub fn is_secure(self) -> bool {
        matches!(self, Transport::Tls | Transport::Wss)
    }

    /// A WebSocket flow (a browser): media must be WebRTC (ICE, DTLS-SRTP).
    pub fn is_websocket(self) -> bool {
        matches!(self, Transport::Ws | Transport::Wss)
    }

    /// The Via transport token.
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Udp => "UDP",
            Transport::Tcp => "TCP",
            Transport::Tls => "TLS",
            Transport::Ws => "WS",
            Transport::Wss => "WSS",
        }
    }

    /// The `transport=` URI parameter for a Contact on this transport (`;transport=tcp`),
    /// empty for UDP (the default). TLS uses a `sips:` URI's usual `transport=tls` form.
    pub fn uri_param(self) -> &'static str {
        match self {
            Transport::Udp => "",
            Transport::Tcp => ";transport=tcp",
            Transport::Tls => ";transport=tls",
            Transport::Ws => ";transport=ws",
            Transport::Wss => ";transport=wss",
        }
    }
}

/// A connection handle assigned by the driver (TCP).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnId(pub u64);

/// Where a message came from or goes to: the remote address and, for connection-oriented
/// transports, the connection to reuse (so requests reach phones behind NAT).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Flow {
    /// Transport.
    pub transport: Transport,
    /// The remote socket address (as seen on the wire, not as claimed in headers).
    pub remote: SocketAddr,
    /// The connection, for TCP.
    pub conn: Option<ConnId>,
}

/// Bytes to send over a flow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    /// Where to.
    pub flow: Flow,
    /// The datagram or stream bytes.
    pub payload: bytes::Bytes,
}
