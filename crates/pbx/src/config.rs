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
    /// Keyed during a call, then a number and `#`: an attended transfer (the caller hears
    /// music while the agent talks to the number's user; the agent hanging up completes it,
    /// the code again goes back to the caller). Empty for none.
    pub attended_transfer: String,
    /// Dialled with an agent's number after it (`*441001`): listen to that agent's call.
    pub monitor: String,
    /// The same, whispering to the agent (the caller does not hear the supervisor).
    pub whisper: String,
    /// The same, barging in (everyone hears everyone).
    pub barge: String,
}

impl Default for FeatureCodes {
    fn default() -> Self {
        FeatureCodes {
            login: "*71".into(),
            logout: "*72".into(),
            pause: "*73".into(),
            transfer: "##".into(),
            attended_transfer: "*2".into(),
            monitor: "*44".into(),
            whisper: "*45".into(),
            barge: "*46".into(),
        }
    }
}

/// Who a supervisor (a SIP user) may monitor: the agents of some queues, some agents by
/// name, or everyone.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SupervisorRule {
    /// The supervisor's SIP user.
    pub user: String,
    /// Every agent.
    pub all: bool,
    /// Agents serving these queues (by name).
    pub queues: Vec<String>,
    /// These agents (by name).
    pub agents: Vec<String>,
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
    /// Caller ID of the calls out its agents dial (when the user has none of their own).
    pub caller_id: Option<String>,
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

/// Calls out through carrier trunks: the trunks, the routes that choose one by the number
/// dialled, and who may dial what.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Outbound {
    /// Carrier trunks that take calls out.
    pub carriers: Vec<Carrier>,
    /// Routes, in order (emergency routes are looked at first, whatever their place).
    pub routes: Vec<OutboundRoute>,
    /// What a user not listed in `users` may dial.
    pub default_policy: DialPolicy,
    /// Per user (SIP account).
    pub users: std::collections::BTreeMap<String, DialPolicy>,
}

/// A carrier trunk as calls out through it see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Carrier {
    /// Its name (`[trunks.NAME]`).
    pub name: String,
    /// Where its INVITEs (and REGISTERs) go, in order: the next one when one does not answer
    /// or answers 5xx.
    pub proxies: Vec<std::net::SocketAddr>,
    /// The carrier's domain, for the Request-URI, To and From of calls and registrations
    /// (the proxy's address when `None`).
    pub domain: Option<String>,
    /// Credentials for the carrier's digest challenges (username, password).
    pub auth: Option<(String, String)>,
    /// Register to the carrier with this expiry (`None`: the trunk is authorised by address
    /// and does not register).
    pub register: Option<Duration>,
    /// Caller ID sent when neither the user nor the route sets one.
    pub caller_id: Option<String>,
    /// Calls at once through this trunk; a route then tries its next trunk.
    pub max_calls: Option<usize>,
    /// A proxy that sends no answer at all (not even 100 Trying) within this time is
    /// given up for the next.
    pub answer_timeout: Duration,
}

/// What a route's numbers are, for who may dial them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum DialClass {
    /// Emergency numbers: anyone who may place calls at all may dial them.
    Emergency,
    /// Local calls.
    Local,
    /// National calls (and mobiles).
    National,
    /// International calls.
    International,
    /// Premium-rate and other expensive numbers.
    Premium,
}

impl DialClass {
    /// Every class, in the order of cost.
    pub const ALL: [DialClass; 5] = [
        DialClass::Emergency,
        DialClass::Local,
        DialClass::National,
        DialClass::International,
        DialClass::Premium,
    ];

    /// The name used in config files and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            DialClass::Emergency => "emergency",
            DialClass::Local => "local",
            DialClass::National => "national",
            DialClass::International => "international",
            DialClass::Premium => "premium",
        }
    }
}

/// A dial pattern: digits and `+ * #` match themselves, `X` any digit, `Z` 1–9, `N` 2–9,
/// `[15-7]` one of a set, and a final `.` one or more further characters (`!` zero or
/// more). `0[1-9]X.` matches national numbers of at least three digits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DialPattern {
    text: String,
    parts: Vec<PatternPart>,
    rest: Option<usize>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum PatternPart {
    Literal(char),
    Set(Vec<(char, char)>),
}

impl DialPattern {
    /// Parse a pattern; the error says what is wrong with it.
    pub fn parse(text: &str) -> Result<DialPattern, String> {
        let text = text.strip_prefix('_').unwrap_or(text);
        if text.is_empty() {
            return Err("an empty pattern".into());
        }
        let mut parts = Vec::new();
        let mut rest = None;
        let mut chars = text.chars().peekable();
        while let Some(c) = chars.next() {
            if rest.is_some() {
                return Err(format!("\"{c}\" after the final . or !"));
            }
            let part = match c.to_ascii_uppercase() {
                '0'..='9' | '+' | '*' | '#' => PatternPart::Literal(c),
                'X' => PatternPart::Set(vec![('0', '9')]),
                'Z' => PatternPart::Set(vec![('1', '9')]),
                'N' => PatternPart::Set(vec![('2', '9')]),
                '.' => {
                    rest = Some(1);
                    continue;
                }
                '!' => {
                    rest = Some(0);
                    continue;
                }
                '[' => {
                    let mut set = Vec::new();
                    loop {
                        match chars.next() {
                            None => return Err("a [ without its ]".into()),
                            Some(']') => break,
                            Some(a @ ('0'..='9' | '+' | '*' | '#')) => {
                                if chars.peek() == Some(&'-') {
                                    chars.next();
                                    match chars.next() {
                                        Some(b @ '0'..='9') if b >= a => set.push((a, b)),
                                        _ => return Err(format!("a bad range after \"{a}-\"")),
                                    }
                                } else {
                                    set.push((a, a));
                                }
                            }
                            Some(o) => return Err(format!("\"{o}\" in a [set]")),
                        }
                    }
                    if set.is_empty() {
                        return Err("an empty [set]".into());
                    }
                    PatternPart::Set(set)
                }
                o => {
                    return Err(format!(
                        "\"{o}\" is not a pattern character (0-9 + * # X Z N [..] . !)"
                    ))
                }
            };
            parts.push(part);
        }
        Ok(DialPattern {
            text: text.to_owned(),
            parts,
            rest,
        })
    }

    /// Whether `number` matches.
    pub fn matches(&self, number: &str) -> bool {
        let mut chars = number.chars();
        for p in &self.parts {
            let Some(c) = chars.next() else {
                return false;
            };
            let ok = match p {
                PatternPart::Literal(l) => *l == c,
                PatternPart::Set(set) => set.iter().any(|&(a, b)| (a..=b).contains(&c)),
            };
            if !ok {
                return false;
            }
        }
        let left: Vec<char> = chars.collect();
        let dialable = left
            .iter()
            .all(|c| c.is_ascii_digit() || matches!(c, '+' | '*' | '#'));
        match self.rest {
            None => left.is_empty(),
            Some(min) => left.len() >= min && dialable,
        }
    }

    /// The fewest characters a matching number has.
    pub fn min_len(&self) -> usize {
        self.parts.len() + self.rest.unwrap_or(0)
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }
}

/// An outbound route: numbers matching one of its patterns go out through its trunks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboundRoute {
    /// Its name (for logs and call records).
    pub name: String,
    /// What it matches (the number as dialled).
    pub patterns: Vec<DialPattern>,
    /// What kind of call it is: who may dial it.
    pub class: DialClass,
    /// Digits taken off the front of the number before it is sent.
    pub strip: usize,
    /// Then put in front.
    pub prepend: String,
    /// Trunks (by name) to try, in order.
    pub trunks: Vec<String>,
    /// Caller ID for calls on this route, unless the user has their own.
    pub caller_id: Option<String>,
    /// Which of its calls are recorded (the agent on the left, the called party on the
    /// right).
    pub record: RecordPolicy,
}

/// What a user may dial out.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DialPolicy {
    /// Classes of routes they may use (emergency is always allowed).
    pub classes: Vec<DialClass>,
    /// Outbound calls they may have at once (`None`: no limit).
    pub max_calls: Option<usize>,
    /// The caller ID their outbound calls carry (e.g. their direct-dial number).
    pub caller_id: Option<String>,
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
    /// Calls out through carrier trunks.
    pub outbound: Outbound,
    /// Who may monitor whom.
    pub supervisors: Vec<SupervisorRule>,
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
    /// SHA-256 fingerprint of the relay's DTLS certificate: phones registered over WebSocket
    /// (browsers) are offered WebRTC media with it. `None`: browsers are not rung.
    pub webrtc_fingerprint: Option<String>,
    /// `host:port` of our TLS listener, for the Contact of dialogs over TLS.
    pub tls_contact_host: Option<String>,
    /// The secret SRTP keys in our SDP are derived from (SDES, for phones over TLS): drawn
    /// from the operating system at start by the server, fixed in tests.
    pub media_secret: [u8; 32],
}

impl Default for PbxConfig {
    fn default() -> Self {
        PbxConfig {
            contact_host: "127.0.0.1:5060".into(),
            queues: Vec::new(),
            agents: Vec::new(),
            trunks: Vec::new(),
            outbound: Outbound::default(),
            supervisors: Vec::new(),
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
            webrtc_fingerprint: None,
            tls_contact_host: None,
            media_secret: [0; 32],
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

#[cfg(test)]
mod tests {
    use super::DialPattern;

    fn m(p: &str, n: &str) -> bool {
        DialPattern::parse(p).unwrap().matches(n)
    }

    #[test]
    fn dial_patterns_match_like_a_pbx_admin_expects() {
        assert!(m("112", "112"));
        assert!(!m("112", "1120"));
        assert!(!m("112", "11"));
        assert!(m("0[1-9]X.", "0301234567"));
        assert!(!m("0[1-9]X.", "030"), "the . needs one more");
        assert!(!m("0[1-9]X.", "00441234"));
        assert!(m("00Z.", "00441234"));
        assert!(m("_NXXXXXX", "5551234"));
        assert!(!m("NXXXXXX", "1551234"));
        assert!(m("+!", "+"));
        assert!(m("+!", "+4930"));
        assert!(!m("X.", "12a"), "letters are not dialled");
        assert!(m("[13579]X", "58"));
        assert!(!m("[13579]X", "28"));
    }

    #[test]
    fn bad_patterns_say_what_is_wrong() {
        for bad in ["", "0[1-9", "0[]", "0.1", "0A", "0[9-1]"] {
            let e = DialPattern::parse(bad).unwrap_err();
            assert!(!e.is_empty(), "{bad}");
        }
    }
}
