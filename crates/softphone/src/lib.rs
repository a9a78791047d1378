//! The agent softphone: a SIP phone on the project's own SIP stack (`sip`) and media code
//! (`media`), a client of the server that never depends on `pbx`, `store` or `web`.
//!
//! - [`ua`]: one phone's SIP side, sans-IO (registration, one call, hold, transfer).
//! - [`stream`]: one call's audio, sans-IO (G.711 RTP, DTMF, mute, jitter buffer).
//! - [`station`]: one phone and its audio on real sockets (UDP or TCP).
//! - [`phone`]: the headless mode, a script over a station (`switchboard-phone --help`).
//! - [`tui`]: the terminal UI for agents (`switchboard-phone --tui`): registration and agent
//!   state, the ringing call with its queue and wait, call control keys, disposition codes at
//!   wrap-up and the SIP messages, in an 80×24 terminal.
//! - [`api`]: the agent's side of the server's HTTP API (agent state, disposition codes), for
//!   the terminal UI.
//! - [`load`]: the load mode, many phones on one thread (`switchboard-load --help`).
//! - [`audio`]: what the phone sends (tone, WAV, microphone) and what it counts.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod api;
pub mod audio;
#[cfg(feature = "sound-card")]
pub mod device;
pub mod load;
pub mod phone;
pub mod station;
pub mod stream;
pub mod tui;
pub mod ua;
