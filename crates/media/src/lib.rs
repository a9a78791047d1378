//! The RTP media relay of Switchboard, and the SDP it negotiates with.
//!
//! Every call gets a [`relay::Session`]: an even/odd port pair (RTP/RTCP) per leg from the
//! configured range, and one tokio task that owns those four sockets. The task latches each
//! leg onto the address its phone really sends from (symmetric RTP, so NAT works; an address
//! other than the SDP's is learned only after a probation, and never while the phone talks, so
//! strangers can neither inject audio nor capture a leg: [`latch`]), forwards packets between
//! the legs rewriting only their RTP header so that each phone hears one continuous stream
//! ([`stream`]) with its own RTCP reports, reports RFC 4733 DTMF and silent legs, and plays
//! prompts and music-on-hold. A supervisor can be added to a running call as a third leg that
//! listens, whispers to the agent or barges in ([`relay::MonitorMode`]), the audio mixed in
//! G.711 where a leg hears two others ([`mix`]). A leg can be encrypted: a browser's as WebRTC
//! ([`relay::SessionCommand::WebRtc`]: ICE-lite, DTLS-SRTP, rtcp-mux) or a TLS desk phone's as
//! SRTP keyed in the SDP ([`relay::SessionCommand::Sdes`]); the relay decrypts what comes in,
//! works on plain RTP, and encrypts what goes out ([`secure`], [`ice`]).
//!
//! # Driving it
//!
//! ```no_run
//! # async fn demo() -> Result<(), media::relay::MediaError> {
//! use media::relay::{Leg, MediaConfig, MonitorMode, Relay, SessionCommand, SessionId};
//! let (events_tx, mut events) = tokio::sync::mpsc::channel(1024);
//! let relay = Relay::new(MediaConfig::default(), events_tx);
//! let session = relay.open(SessionId(1))?;          // binds 2 × (RTP, RTCP)
//! let caller_port = session.port(Leg::Caller);       // goes into the SDP answer
//! session.command(SessionCommand::Bridge(true));     // after both Remote commands
//! // A supervisor monitors: one more port pair, then who hears whom.
//! let supervisor_port = relay.attach_supervisor(&session)?; // into its SDP answer
//! session.command(SessionCommand::Monitor(MonitorMode::Listen));
//! session.command(SessionCommand::DetachSupervisor); // its ports go back to the pool
//! while let Some(ev) = events.recv().await { /* DTMF, timeouts, playback done */ }
//! drop(session);                                     // ends the task, frees the ports
//! # Ok(()) }
//! ```
//!
//! - [`sdp`]: parsing, codec choice and answers (RFC 3264) for one G.711 audio stream.
//! - [`rtp`]: header fields, telephone-event payloads, packets we originate.
//! - [`prompt`]: WAV prompts (hound), tones, silence.
//! - [`latch`]: whom each leg accepts RTP from and sends it to (probation, no RTP bleed), sans-IO.
//! - [`ports`]: the port pool.
//! - [`stream`]: the stream each leg hears (SSRC, sequence, timestamps, RTCP), sans-IO.
//! - [`mix`]: who hears whom while a supervisor monitors, and the G.711 mixer, sans-IO.
//! - [`ice`]: the ICE-lite answer to a browser's connectivity checks (STUN), sans-IO.
//! - [`secure`]: a WebRTC leg (DTLS server, SRTP keyed from it) and SDES-SRTP legs, sans-IO.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

/// The recorder the tap feeds, for the layers above the relay.
pub use recorder;

pub mod counter;
pub mod ice;
pub mod latch;
pub mod mix;
pub mod ports;
pub mod prompt;
pub mod relay;
pub mod rtp;
pub mod sdp;
pub mod secure;
pub mod stream;

pub use relay::{
    Leg, MediaConfig, MediaEvent, MediaEventKind, MonitorMode, Relay, Session, SessionCommand,
    SessionId,
};
