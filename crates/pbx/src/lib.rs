//! Call control for Switchboard: the back-to-back user agent between callers and agents.
//!
//! Three services run beside the SIP task: the ACD task ([`acd_task`], owner of the
//! [`acd::Acd`] engine), the media relay ([`media::Relay`], one task per call), and call
//! control itself ([`service`]), which owns the channels between them and every call's state
//! ([`control::CallControl`]).
//!
//! ```text
//! SIP task ──SipEvent──> call control ──SipCommand──> SIP task
//!                         │   ▲
//!              AcdRequest │   │ AcdReport          MediaEvent (DTMF, timeouts)
//!                         ▼   │                          │
//!                       ACD task            relay sessions ──┘
//! ```
//!
//! [`config`] holds the typed settings the binary fills from its config files.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

// The binary reaches the services below only through call control (the dependency rule
// `switchboard -> pbx -> { sip-transport -> sip, media -> recorder, acd }`): their config and
// account types are re-exported here.
pub use acd;
pub use media;
pub use media::recorder;
pub use sip;
pub use sip_transport;

pub mod acd_task;
pub mod config;
pub mod control;
pub mod presence;
pub mod service;

pub use config::{
    AgentSetup, Announcements, FeatureCodes, PbxConfig, QueueSetup, RecordPolicy, TrunkRule,
};
pub use control::{
    CallControl, Held, MediaInput, MediaPorts, MediaRequest, MediaTotals, Now, Output,
    RecordingRequest,
};
