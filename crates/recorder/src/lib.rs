//! Call recording for Switchboard: one stereo WAV per call (caller left, agent right, 8 kHz
//! 16-bit PCM), decoded from the G.711 packets the media relay's tap copies.
//!
//! - [`g711`]: µ-law and A-law conversion (the relay also uses it to encode prompts).
//! - [`timeline`]: the pure core: per-leg reorder window, gap fill with silence, SSRC changes
//!   and timestamp jumps re-anchored, drift bounded, both channels on one clock, pauses kept
//!   as silence. Arrival times are inputs; no I/O, no clock, no tokio.
//! - [`file`]: the WAV writer (hound) with its crash plan, the JSON sidecar, and [`file::repair`].
//! - [`service`] (feature `service`): the recorder thread fed by bounded channels.
//!
//! # Driving the core
//!
//! ```
//! use std::time::{Duration, Instant};
//! use recorder::g711::Law;
//! use recorder::timeline::{Channel, Timeline, TimelineConfig};
//!
//! let t0 = Instant::now();
//! let mut tl = Timeline::new(TimelineConfig::default(), t0);
//! let mut rtp = vec![0x80, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 7];
//! rtp.extend_from_slice(&[0xFF; 160]);                    // 20 ms of µ-law silence
//! tl.packet(Channel::Left, t0, Law::Mu, &rtp);            // as packets arrive
//! let mut stereo = Vec::new();
//! tl.advance(t0 + Duration::from_millis(200), &mut stereo); // on a timer: write `stereo`
//! assert_eq!(stereo.len(), 2 * 960);                    // 120 ms committed, 2 channels
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod file;
pub mod g711;
#[cfg(feature = "service")]
pub mod service;
pub mod timeline;
