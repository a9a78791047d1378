//! Call recording for Switchboard.
//!
//! - [`g711`]: G.711 µ-law (PCMU) and A-law (PCMA) conversion to and from 16-bit linear PCM,
//!   used by the recorder to decode what each leg sent and by the media relay to encode
//!   prompts and music-on-hold.
//!
//! The decoding core is pure: no I/O, no clock, no tokio.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod g711;
