//! Call control for Switchboard: the back-to-back user agent between callers and agents.
//!
//! [`control::CallControl`] decides, sans-IO: time and events in, SIP commands, ACD
//! requests, media-session and recording requests out (its drive contract is in
//! [`control`]). Two tokio tasks do the I/O around it: the ACD task ([`acd_task`], owner of
//! the [`acd::Acd`] engine) and the call-control task ([`service`]), which reads the clocks,
//! owns the media relay's sessions ([`media::Relay`], one task per call) and the recorder's
//! handle, and owns the channels between them.
//!
//! ```text
//! SIP task ──SipEvent──> call-control task ──SipCommand──> SIP task
//!                         │   ▲     │    ▲
//!              AcdRequest │   │     │    │ MediaEvent (DTMF, timeouts)
//!                         ▼   │     ▼    │
//!                       ACD task   relay sessions ── frames ──> recorder
//! ```
//!
//! What call control writes down (a [`record::CallRecord`] per call, agent state changes)
//! and the ACD's queue-log lines leave through a [`service::EventSink`]: a bounded queue the
//! binary's storage thread reads; call handling never waits for it.
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
pub mod record;
pub mod schedule;
pub mod service;

pub use config::{
    AgentSetup, Announcements, CallbackSetup, Carrier, Choice, Closed, DialClass, DialPattern,
    DialPolicy, FeatureCodes, Hours, Mailbox, Menu, MenuHours, MenuKind, Message, Outbound,
    OutboundRoute, PbxConfig, PendingCallback, QueueSetup, RecordPolicy, Step, SupervisorRule,
    TrunkRule, VoicemailPrompts, VoicemailSetup,
};
pub use control::{
    AgentRequest, CallControl, CallbackRequest, Held, MediaInput, MediaPorts, MediaRequest,
    MediaTotals, Now, Output, RecordingRequest, TrunkStatus, VoicemailInput, VoicemailRequest,
};
