//! Typed call-control settings. The binary fills them from the config files (and loads the
//! prompt files); everything here has a working `Default`.

use std::time::Duration;

use media::prompt::Prompt;

/// Feature codes an agent dials from a desk phone (which has no agent user interface).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeatureCodes {
    /// Log in to the agent's queues (and become ready).
    pub login: String,
    /// Log out.
    pub logout: String,
    /// Toggle pause (not ready with reason "pause" / ready again).
    pub pause: String,
    /// Keyed during a call (DTMF), then a number and `#`: blind transfer (for phones
    /// without REFER). Empty for none.
    pub transfer: String,
}

impl Default for FeatureCodes {
    fn default() -> Self {
        FeatureCodes {
            login: "*71".into(),
            logout: "*72".into(),
            pause: "*73".into(),
            transfer: "##".into(),
        }
    }
}

/// Which of a queue's calls are recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RecordPolicy {
    /// None.
    #[default]
    Never,
    /// Every call.
    Always,
    /// This percentage of calls (1–99), chosen by a seeded hash of the call id, so the same
    /// seed picks the same calls (quality-review samples can be reproduced).
    Sample(u8),
}

impl RecordPolicy {
    /// Whether call `call` is recorded under this policy with `seed`.
    pub fn records(self, seed: u64, call: u64) -> bool {
        match self {
            RecordPolicy::Never => false,
            RecordPolicy::Always => true,
            RecordPolicy::Sample(p) => {
                // splitmix64 of seed and call id.
                let mut z = seed ^ call.wrapping_mul(0x9E37_79B9_7F4A_7C15);
                z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
                z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
                z ^= z >> 31;
                (z % 100) < u64::from(p)
            }
        }
    }
}

/// A queue as call control sees it: the number that reaches it, the ACD's settings, and what
/// callers hear while they wait.
#[derive(Debug, Clone)]
pub struct QueueSetup {
    /// The number callers dial (Request-URI user part), e.g. "600".
    pub number: String,
    /// The ACD's queue settings (name, skills, strategy, timeouts …).
    pub acd: acd::QueueConfig,
    /// Played once when the caller is answered.
    pub greeting: Option<Prompt>,
    /// Looped while the caller waits (and while an agent holds the call).
    pub music: Option<Prompt>,
    /// How often a waiting caller hears their position and estimated wait; `None` for never.
    pub announce_every: Option<Duration>,
    /// Which calls are recorded (from the moment the agent answers).
    pub record: RecordPolicy,
    /// Call priority of this queue's calls (0–9, 9 first): where an agent serves several
    /// queues, calls of a higher priority go first.
    pub priority: u8,
    /// Business hours; `None` for always open.
    pub hours: Option<Hours>,
    /// A post-call survey: the menu (of kind [`MenuKind::Score`]) a caller hears when the
    /// agent hangs up first.
    pub survey: Option<String>,
    /// Callback for waiting callers.
    pub callback: Option<CallbackSetup>,
}

/// When a queue takes calls, and what a caller who calls outside them gets.
#[derive(Debug, Clone)]
pub struct Hours {
    /// The opening hours.
    pub schedule: std::sync::Arc<crate::schedule::Schedule>,
    /// Outside them.
    pub closed: Closed,
}

/// What a caller gets when a queue is closed.
#[derive(Debug, Clone)]
pub enum Closed {
    /// Refused with 480 Temporarily Unavailable (the carrier plays its own message).
    Refuse,
    /// Answered, this announcement played, then hung up.
    Announcement(Prompt),
    /// Sent to another queue (by name), which may have hours of its own.
    Queue(String),
    /// Answered to leave a message in this mailbox.
    Voicemail(String),
}

/// An agent: an ACD agent tied to a SIP account whose registered phones ring for offers.
#[derive(Debug, Clone)]
pub struct AgentSetup {
    /// The ACD's agent settings (name, skills, queues).
    pub acd: acd::AgentConfig,
    /// The SIP user (address-of-record) of the agent's phone(s).
    pub user: String,
    /// Logged in and ready when the server starts (like a static queue member).
    pub login_on_start: bool,
}

/// What a carrier trunk may call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrunkRule {
    /// The trunk's name (as the SIP endpoint reports it).
    pub trunk: String,
    /// Numbers it may dial; nothing else is reachable from it.
    pub numbers: Vec<String>,
}

/// Spoken numbers for position announcements: prompts for "you are caller number",
/// "your estimated wait is", "minutes", and the numbers 0–20.
#[derive(Debug, Clone, Default)]
pub struct Announcements {
    /// "You are caller number".
    pub position: Option<Prompt>,
    /// "Your estimated waiting time is".
    pub wait: Option<Prompt>,
    /// "minutes".
    pub minutes: Option<Prompt>,
    /// Index n holds the spoken number n (0–20).
    pub numbers: Vec<Prompt>,
}

/// Call-control settings.
#[derive(Debug, Clone)]
pub struct PbxConfig {
    /// `host:port` of this server as phones reach it: our Contact and the host of the
    /// URIs we generate.
    pub contact_host: String,
    /// Queues reachable by number.
    pub queues: Vec<QueueSetup>,
    /// Agents.
    pub agents: Vec<AgentSetup>,
    /// What each trunk may dial.
    pub trunks: Vec<TrunkRule>,
    /// Registered users may call each other by user name.
    pub extensions: bool,
    /// How long an extension call rings before the caller gets 480.
    pub extension_ring_timeout: Duration,
    /// Agent feature codes.
    pub features: FeatureCodes,
    /// Position / wait announcement prompts.
    pub announcements: Announcements,
    /// Seed for tags and Call-IDs (random per start in the server; fixed in tests).
    pub seed: u64,
    /// Seed of the recording sample (fixed in config, so samples are reproducible).
    pub recording_seed: u64,
    /// DTMF sequence an agent keys to pause the recording and key again to resume it (while a
    /// caller reads out a card number).
    pub recording_pause_key: String,
    /// IVR menus.
    pub menus: Vec<std::sync::Arc<Menu>>,
    /// Voicemail, if configured.
    pub voicemail: Option<VoicemailSetup>,
    /// The id of the first call (each next call gets the next number). The server starts it
    /// at its start time in microseconds, so that call ids (and the recordings, messages and
    /// records that carry them) stay unique across restarts; tests start at 1.
    pub first_call: u64,
}

impl Default for PbxConfig {
    fn default() -> Self {
        PbxConfig {
            contact_host: "127.0.0.1:5060".into(),
            queues: Vec::new(),
            agents: Vec::new(),
            trunks: Vec::new(),
            extensions: true,
            extension_ring_timeout: Duration::from_secs(30),
            features: FeatureCodes::default(),
            announcements: Announcements::default(),
            seed: 0,
            recording_seed: 0,
            recording_pause_key: "*1".into(),
            menus: Vec::new(),
            voicemail: None,
            first_call: 1,
        }
    }
}

/// An IVR menu: a prompt, then what the caller's keys (RFC 4733 events or SIP INFO) do.
#[derive(Debug, Clone)]
pub struct Menu {
    /// Its name (what `Step::Menu` names).
    pub name: String,
    /// The number that reaches it directly (Request-URI user part), if any.
    pub number: Option<String>,
    /// What the caller hears; keys pressed while it plays cut it short.
    pub prompt: Prompt,
    /// Choices by key, or digits to collect.
    pub kind: MenuKind,
    /// How long after the prompt the caller has for the first key (and between keys when
    /// collecting digits).
    pub timeout: Duration,
    /// How many times the prompt is played (the first time included) before `on_fail`.
    pub tries: u32,
    /// Played before the prompt again after a key that is not a choice (or too few digits).
    pub invalid: Option<Prompt>,
    /// After `tries` plays without a valid answer.
    pub on_fail: Step,
    /// Opening hours; outside them the caller goes to `when_closed` instead.
    pub hours: Option<MenuHours>,
}

/// When a menu is open, and where callers go outside those hours.
#[derive(Debug, Clone)]
pub struct MenuHours {
    /// The opening hours.
    pub schedule: std::sync::Arc<crate::schedule::Schedule>,
    /// Outside them.
    pub closed: Step,
}

/// What a menu asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MenuKind {
    /// One key chooses; keys not listed are invalid.
    Choice(std::collections::BTreeMap<char, Choice>),
    /// Digits are collected into a variable of the call (an account number), ended by
    /// `end_key`, by reaching `max_digits`, or by the timeout after at least `min_digits`.
    Collect {
        /// The variable's name.
        variable: String,
        /// Fewer digits are invalid.
        min_digits: usize,
        /// Collection ends on the last of these.
        max_digits: usize,
        /// The key that ends collection early (not part of the value).
        end_key: char,
        /// Where the call goes once the digits are in.
        next: Step,
    },
    /// A satisfaction survey: one key from 1 to `max` is the caller's score, written into
    /// the call record.
    Score {
        /// The highest score (at most 9).
        max: u8,
        /// Where the call goes once scored (a thank-you announcement, hang up).
        next: Step,
    },
}

/// One choice of a menu.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Choice {
    /// Where the call goes.
    pub step: Step,
    /// Variables set on the call (a language, a reason for calling).
    pub set: Vec<(String, String)>,
}

/// Where a menu sends a call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Into a queue (by name), subject to the queue's own hours.
    Queue(String),
    /// Ring a registered user.
    Extension(String),
    /// Another menu (by name).
    Menu(String),
    /// Play the menu again from its first try.
    Repeat,
    /// Play this, then hang up.
    Announce(Prompt),
    /// Leave a message in this mailbox.
    Voicemail(String),
    /// Be called back from this queue (which has a callback): the caller joins it and asks at
    /// once.
    Callback(String),
    /// Hang up.
    HangUp,
}

/// A voicemail box: a user's, or a queue's shared one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mailbox {
    /// Its name (a user's mailbox is named after the user).
    pub name: String,
    /// Digits that open it.
    pub pin: String,
    /// Users whose phones get its message-waiting indication.
    pub notify: Vec<String>,
    /// A dial string that opens it for listening (a user's own mailbox also opens from the
    /// voicemail number).
    pub access: Option<String>,
}

/// What callers and mailbox owners hear.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VoicemailPrompts {
    /// "Please leave a message after the tone; press # when you are done."
    pub leave: Prompt,
    /// "Your message has been recorded. Goodbye."
    pub recorded: Prompt,
    /// "Please enter your PIN, then press #."
    pub enter_pin: Prompt,
    /// "That PIN is not correct."
    pub wrong_pin: Prompt,
    /// "You have"
    pub you_have: Prompt,
    /// "new messages"
    pub new_messages: Prompt,
    /// "Press 7 to delete, 9 to save, 6 for the next message, 4 to hear it again."
    pub options: Prompt,
    /// "Message deleted."
    pub deleted: Prompt,
    /// "Message saved."
    pub saved: Prompt,
    /// "No more messages. Goodbye."
    pub no_more: Prompt,
}

/// Voicemail: where messages are left and how mailboxes are opened.
#[derive(Debug, Clone)]
pub struct VoicemailSetup {
    /// A user dials this to hear their own mailbox.
    pub number: String,
    /// The longest message.
    pub max_length: Duration,
    /// The prompts.
    pub prompts: VoicemailPrompts,
    /// The mailboxes.
    pub mailboxes: Vec<Mailbox>,
}

/// A voicemail message, as call control keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// The store's id.
    pub id: u64,
    /// Its mailbox.
    pub mailbox: String,
    /// The WAV file.
    pub file: std::path::PathBuf,
    /// Who left it (their number).
    pub caller: String,
    /// When.
    pub received: std::time::SystemTime,
    /// How long.
    pub length: Duration,
    /// Not listened to yet.
    pub new: bool,
}

/// A queue's callback: a waiting caller presses `key`, hangs up, keeps their place, and is
/// called back through a trunk once an agent is free for them (the agent's phone rings
/// first).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallbackSetup {
    /// The key a waiting caller presses.
    pub key: char,
    /// Played after the greeting and with each position announcement ("press 1 …").
    pub offer: Option<Prompt>,
    /// Played when the caller has asked ("we will call you back"), before the hang-up.
    pub confirm: Prompt,
    /// The trunk the customer is dialled through: its name and where its INVITEs go.
    pub trunk: String,
    /// The trunk's address.
    pub via: std::net::SocketAddr,
    /// The caller ID the customer sees (the queue's number when empty).
    pub caller_id: String,
    /// Further attempts after an unanswered or busy first one.
    pub retries: u32,
    /// Time between attempts.
    pub retry_after: Duration,
    /// How long the customer's phone rings.
    pub ring_timeout: Duration,
}

/// A callback waiting for an agent, as the store keeps it (so that it survives a restart).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingCallback {
    /// Its key in the store: the original call's SIP Call-ID.
    pub key: String,
    /// The queue (by name).
    pub queue: String,
    /// The number to call.
    pub number: String,
    /// The caller's display name, if any.
    pub name: Option<String>,
    /// The number the caller dialled.
    pub dialed: String,
    /// How the caller came in (`trunk:NAME` …).
    pub source: String,
    /// When the original call arrived, and joined the queue.
    pub arrived: std::time::SystemTime,
    /// When it joined the queue.
    pub queued: std::time::SystemTime,
    /// Attempts made so far.
    pub attempts: u32,
}
