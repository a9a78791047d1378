//! The agent softphone. Today its headless mode: a phone for scripts, tests and load that
//! registers, places or answers a call, sends a tone or a WAV file, keys DTMF, records what
//! it hears and reports what happened as JSON (`switchboard-phone --help`).
//!
//! It is a client of the server, built on the project's own SIP stack (`sip`) and media code
//! (`media`): it never depends on `pbx`, `store` or `web`.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod audio;
#[cfg(feature = "sound-card")]
pub mod device;
pub mod load;
pub mod phone;
pub mod station;
pub mod stream;
pub mod ua;
