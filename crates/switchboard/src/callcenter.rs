//! The call-center parts of the config directory: `queues.toml`, `agents.toml`, and the
//! `[media]`, `[calls]`, `[recording]` and `[trunks.*]` tables of `switchboard.toml`. Read
//! once, validated as a whole (every problem reported, each naming the file, line and key),
//! and turned into the typed settings of the `pbx` and `media` crates.
//!
//! [`build`] is the map: one function per table (`media_table`, `calls_table`,
//! `recording_table`, `trunk_table`, `queue`, `agent`), each returning its typed settings,
//! then the checks across files, then the warnings.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use pbx::acd::{
    AgentSkill, EmptyPolicy, OverflowTarget, QueueMembership, SkillRequirement, Strategy,
};
use pbx::media::prompt::Prompt;
use pbx::media::MediaConfig;
use pbx::sip::endpoint::Trunk;
use pbx::{AgentSetup, Announcements, FeatureCodes, QueueSetup, RecordPolicy, TrunkRule};
use serde::Deserialize;

use crate::config::{ConfigError, Findings, KeyPath, Overrides, Presence, Report, TomlFile};

mod menus;
mod routes;
mod voicemail;

// ------------------------------------------------------------------ switchboard.toml tables

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct MediaSection {
    bind: String,
    advertise: Option<String>,
    port_min: u16,
    port_max: u16,
    timeout: u64,
}

impl Default for MediaSection {
    fn default() -> Self {
        MediaSection {
            bind: "0.0.0.0".into(),
            advertise: None,
            port_min: 10_000,
            port_max: 20_000,
            timeout: 60,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct CallsSection {
    challenge: bool,
    extensions: bool,
    ring_timeout: u64,
    login: String,
    logout: String,
    pause: String,
    transfer: String,
    attended_transfer: String,
    monitor: String,
    whisper: String,
    barge: String,
    prompts: Option<String>,
}

impl Default for CallsSection {
    fn default() -> Self {
        let f = FeatureCodes::default();
        CallsSection {
            challenge: true,
            extensions: true,
            ring_timeout: 30,
            login: f.login,
            logout: f.logout,
            pause: f.pause,
            transfer: f.transfer,
            attended_transfer: f.attended_transfer,
            monitor: f.monitor,
            whisper: f.whisper,
            barge: f.barge,
            prompts: None,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct RecordingSection {
    dir: String,
    flush_every: u64,
    seed: u64,
    pause_key: String,
}

impl Default for RecordingSection {
    fn default() -> Self {
        RecordingSection {
            dir: "data/recordings".into(),
            flush_every: 2,
            seed: 0,
            pause_key: "*1".into(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct TrunkSection {
    #[serde(default)]
    addresses: Vec<String>,
    #[serde(default)]
    numbers: Vec<String>,
    /// `host:port` where calls out through this trunk go (callbacks).
    dial: Option<String>,
    /// The carrier's proxies (`host:port`), in order: calls out and registrations.
    #[serde(default)]
    proxies: Vec<String>,
    /// The carrier's domain for Request-URIs, To and From.
    domain: Option<String>,
    /// Our account at the carrier (its digest challenges, registration).
    username: Option<String>,
    password: Option<String>,
    /// Register to the carrier.
    #[serde(default)]
    register: bool,
    /// Seconds asked for when registering.
    expires: Option<u64>,
    /// Caller ID of calls out through this trunk unless the user or route sets one.
    caller_id: Option<String>,
    /// Calls at once through this trunk.
    max_calls: Option<usize>,
    /// Seconds a proxy may stay silent before the next one is tried.
    answer_timeout: Option<u64>,
    /// The account the carrier authenticates its INVITEs with (digest).
    inbound_username: Option<String>,
    inbound_password: Option<String>,
}

/// The call-center tables of `switchboard.toml`, as deserialised.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct ServerTables {
    #[serde(default)]
    pub(crate) media: MediaSection,
    #[serde(default)]
    pub(crate) calls: CallsSection,
    #[serde(default)]
    pub(crate) trunks: BTreeMap<String, TrunkSection>,
    #[serde(default)]
    pub(crate) recording: RecordingSection,
}

// ------------------------------------------------------------------ queues.toml, agents.toml

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum SkillEntry {
    Name(String),
    Full {
        skill: String,
        #[serde(default = "one")]
        min: u8,
        #[serde(default)]
        optional: bool,
    },
}

fn one() -> u8 {
    1
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct QueueEntry {
    number: String,
    #[serde(default)]
    strategy: Option<String>,
    #[serde(default)]
    required_skills: Vec<SkillEntry>,
    ring_timeout: Option<u64>,
    wrap_up: Option<u64>,
    max_wait: Option<u64>,
    overflow: Option<String>,
    join_empty: Option<String>,
    leave_when_empty: Option<String>,
    service_level: Option<u64>,
    auto_pause_after: Option<u32>,
    greeting: Option<String>,
    music: Option<String>,
    announce_every: Option<u64>,
    record: Option<String>,
    priority: Option<u8>,
    #[serde(default)]
    escalation: Vec<EscalationEntry>,
    #[serde(default)]
    wallboard: WallboardEntry,
    /// Business hours: a `[schedules.NAME]` of schedules.toml.
    schedule: Option<String>,
    /// `[queues.NAME.callback]`: waiting callers may ask to be called back.
    callback: Option<CallbackEntry>,
    /// Outside them: "refuse" (480, the default), "queue:<name>" or "announce:<wav>".
    when_closed: Option<String>,
    /// A post-call survey: a menu of ivr.toml with `score`.
    survey: Option<String>,
    /// Caller ID of the calls out its agents dial.
    caller_id: Option<String>,
}

/// `[queues.NAME.callback]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CallbackEntry {
    /// The key a waiting caller presses ("1").
    key: String,
    /// Played after the greeting and with each announcement.
    offer: Option<String>,
    /// Played when the caller has asked, before the hang-up.
    confirm: String,
    /// The trunk (of switchboard.toml, with `dial`) the customer is called through.
    trunk: String,
    /// The caller ID the customer sees (the queue's number by default).
    caller_id: Option<String>,
    #[serde(default = "one_retry")]
    retries: u32,
    #[serde(default = "five_minutes")]
    retry_after: u64,
    #[serde(default = "thirty")]
    ring_timeout: u64,
}

fn one_retry() -> u32 {
    1
}

fn five_minutes() -> u64 {
    300
}

fn thirty() -> u64 {
    30
}

/// `[queues.NAME.wallboard]`: when the wallboard turns a queue amber and red.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct WallboardEntry {
    /// Longest wait (seconds) that turns amber, and red.
    wait_warn: Option<u64>,
    wait_alert: Option<u64>,
    /// Service level (percent) below which it turns amber, and red.
    service_level_warn: Option<u8>,
    service_level_alert: Option<u8>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct EscalationEntry {
    /// Seconds of waiting after which the step applies.
    after: u64,
    /// How much every minimum proficiency drops (cumulative steps: give the total).
    #[serde(default)]
    lower_by: u8,
    /// Whether optional skills stop counting.
    #[serde(default)]
    drop_optional: bool,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct QueuesFile {
    #[serde(default)]
    queues: BTreeMap<String, QueueEntry>,
}

/// schedules.toml: business hours, `[schedules.NAME]`.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct SchedulesFile {
    #[serde(default)]
    schedules: BTreeMap<String, ScheduleEntry>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ScheduleEntry {
    time_zone: String,
    #[serde(default)]
    monday: String,
    #[serde(default)]
    tuesday: String,
    #[serde(default)]
    wednesday: String,
    #[serde(default)]
    thursday: String,
    #[serde(default)]
    friday: String,
    #[serde(default)]
    saturday: String,
    #[serde(default)]
    sunday: String,
    #[serde(default)]
    holidays: Vec<String>,
}

/// Every `[schedules.NAME]`, checked.
fn schedules_file(
    r: &mut Report<'_>,
    f: &SchedulesFile,
) -> HashMap<String, std::sync::Arc<pbx::schedule::Schedule>> {
    let mut out = HashMap::new();
    for (name, e) in &f.schedules {
        let t = KeyPath::top("schedules").key(name);
        let days = [
            &e.monday,
            &e.tuesday,
            &e.wednesday,
            &e.thursday,
            &e.friday,
            &e.saturday,
            &e.sunday,
        ];
        let mut week: [Vec<pbx::schedule::Span>; 7] = Default::default();
        for (i, text) in days.iter().enumerate() {
            match pbx::schedule::parse_hours(text) {
                Ok(spans) => week[i] = spans,
                Err(e) => r.err(&t.key(pbx::schedule::WEEKDAYS[i]), e),
            }
        }
        let mut holidays = Vec::new();
        for h in &e.holidays {
            match h.parse::<pbx::schedule::Date>() {
                Ok(d) => holidays.push(d),
                Err(_) => r.err(
                    &t.key("holidays"),
                    format!("\"{h}\" is not a date such as 2026-12-25"),
                ),
            }
        }
        match pbx::schedule::Schedule::new(&e.time_zone, week, holidays) {
            Ok(s) => {
                out.insert(name.clone(), std::sync::Arc::new(s));
            }
            Err(e) => r.err(&t.key("time_zone"), e),
        }
    }
    out
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum MembershipEntry {
    Name(String),
    Full {
        queue: String,
        #[serde(default)]
        priority: u8,
    },
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AgentEntry {
    user: String,
    name: Option<String>,
    #[serde(default)]
    skills: BTreeMap<String, u8>,
    #[serde(default)]
    queues: Vec<MembershipEntry>,
    #[serde(default)]
    login_on_start: bool,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct AgentsFile {
    #[serde(default)]
    agents: BTreeMap<String, AgentEntry>,
    /// `[supervisors.USER]`: who may monitor whom from their phone.
    #[serde(default)]
    supervisors: BTreeMap<String, SupervisorEntry>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SupervisorEntry {
    /// Agents of these queues (`["*"]`: every agent).
    #[serde(default)]
    queues: Vec<String>,
    /// These agents (by name).
    #[serde(default)]
    agents: Vec<String>,
}

/// What the call-center config turns into.
#[derive(Debug, Clone)]
pub(crate) struct CallCenter {
    /// Problems that do not stop the config from loading (`check` prints them, the server
    /// logs them at start and on reload).
    pub(crate) warnings: Vec<ConfigError>,
    pub(crate) media: MediaConfig,
    pub(crate) trunks: Vec<Trunk>,
    pub(crate) trunk_rules: Vec<TrunkRule>,
    /// Calls out: carriers (from the trunks), routes and who may dial what (routes.toml).
    pub(crate) outbound: pbx::Outbound,
    /// Accounts carriers authenticate with: (trunk, username, password).
    pub(crate) trunk_accounts: Vec<(String, String, String)>,
    pub(crate) challenge: bool,
    pub(crate) extensions: bool,
    pub(crate) ring_timeout: Duration,
    pub(crate) features: FeatureCodes,
    pub(crate) queues: Vec<QueueSetup>,
    /// How each queue is shown on the wallboard.
    pub(crate) boards: Vec<web::live::QueueBoardConfig>,
    pub(crate) agents: Vec<AgentSetup>,
    pub(crate) announcements: Announcements,
    pub(crate) recording: pbx::recorder::service::RecorderConfig,
    pub(crate) recording_seed: u64,
    pub(crate) recording_pause_key: String,
    /// IVR menus of ivr.toml.
    pub(crate) menus: Vec<std::sync::Arc<pbx::Menu>>,
    /// Voicemail of voicemail.toml.
    pub(crate) voicemail: Option<pbx::VoicemailSetup>,
    /// Who may monitor whom (agents.toml).
    pub(crate) supervisors: Vec<pbx::SupervisorRule>,
}

/// The closest name within edit distance 2, ignoring case, for "did you mean" (the first in
/// alphabetical order when several are as close).
fn suggest<'a>(word: &str, candidates: impl Iterator<Item = &'a str>) -> Option<&'a str> {
    fn distance(a: &str, b: &str) -> usize {
        let b: Vec<char> = b.chars().collect();
        let mut prev: Vec<usize> = (0..=b.len()).collect();
        for (i, ca) in a.chars().enumerate() {
            let mut cur = vec![i + 1];
            for (j, cb) in b.iter().enumerate() {
                let cost = usize::from(ca != *cb);
                cur.push((prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1));
            }
            prev = cur;
        }
        prev[b.len()]
    }
    let word = word.to_lowercase();
    candidates
        .map(|c| (distance(&word, &c.to_lowercase()), c))
        .filter(|(d, _)| *d <= 2)
        .min()
        .map(|(_, c)| c)
}

/// `record = "always" | "never" | "10%"` (absent: never).
fn record_policy(r: &mut Report<'_>, key: &KeyPath, value: Option<&str>) -> RecordPolicy {
    match value {
        None | Some("never") => RecordPolicy::Never,
        Some("always") => RecordPolicy::Always,
        Some(p) => match p
            .strip_suffix('%')
            .and_then(|n| n.trim().parse::<u8>().ok())
        {
            Some(0) => RecordPolicy::Never,
            Some(100) => RecordPolicy::Always,
            Some(n) if n < 100 => RecordPolicy::Sample(n),
            _ => {
                r.err(
                    key,
                    format!("\"{p}\" is not \"always\", \"never\" or a percentage such as \"10%\""),
                );
                RecordPolicy::Never
            }
        },
    }
}

fn did_you_mean<'a>(word: &str, candidates: impl Iterator<Item = &'a str>) -> String {
    suggest(word, candidates).map_or(String::new(), |s| format!("; did you mean \"{s}\"?"))
}

/// A `voicemail:<mailbox>` names a mailbox of voicemail.toml.
fn check_mailbox(r: &mut Report<'_>, key: &KeyPath, mailbox: &str, known: &Known<'_>) {
    if let Some(names) = &known.mailboxes {
        if !names.contains(mailbox) {
            r.err(
                key,
                format!(
                    "unknown mailbox \"{mailbox}\" (a [mailboxes.NAME] of voicemail.toml){}",
                    did_you_mean(mailbox, names.iter().copied())
                ),
            );
        }
    }
}

/// What is wrong with `number` as the number of a queue or menu: not a dial string, or
/// already a user or a feature code.
fn number_problems(number: &str, known: &Known<'_>) -> Vec<String> {
    let mut out = Vec::new();
    if number.is_empty()
        || !number
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"*#+-_.".contains(&b))
    {
        out.push("must be a dial string such as \"600\"".to_owned());
    }
    if known.users.is_some_and(|u| u.contains(number)) {
        out.push(format!("\"{number}\" is also a user in users.toml"));
    }
    if let Some(f) = known.features {
        for (code, value) in [
            ("login", &f.login),
            ("logout", &f.logout),
            ("pause", &f.pause),
        ] {
            if number == value {
                out.push(format!("\"{number}\" is the {code} feature code"));
            }
        }
    }
    out
}

/// Prompt files, each decoded once however many tables name it.
struct Prompts {
    /// The config directory: prompt paths are relative to it.
    dir: PathBuf,
    cache: HashMap<PathBuf, Prompt>,
}

impl Prompts {
    fn new(dir: &Path) -> Prompts {
        Prompts {
            dir: dir.to_owned(),
            cache: HashMap::new(),
        }
    }

    /// The prompt at `rel`, named by `key`; a file that is missing or not 8 kHz mono is an
    /// error at `key`.
    fn load(&mut self, r: &mut Report<'_>, key: &KeyPath, rel: &Path) -> Option<Prompt> {
        let path = self.dir.join(rel);
        if let Some(p) = self.cache.get(&path) {
            return Some(p.clone());
        }
        match Prompt::load(&path) {
            Ok(p) => {
                self.cache.insert(path, p.clone());
                Some(p)
            }
            Err(err) => {
                r.err(key, err.to_string());
                None
            }
        }
    }
}

/// switchboard.toml as the call center sees it: the file (for line numbers), the environment
/// overrides laid over it, and its call-center tables.
pub(crate) type ServerSource<'a> = (&'a TomlFile, &'a Overrides, &'a ServerTables);

/// The call-center tables of switchboard.toml, checked.
struct Tables {
    media: MediaConfig,
    calls: Calls,
    recording: Recording,
    trunks: Vec<Trunk>,
    trunk_rules: Vec<TrunkRule>,
    carriers: Vec<pbx::Carrier>,
    trunk_accounts: Vec<(String, String, String)>,
}

/// What the other files define, for the references between files. `None` for a file that
/// did not load: references to it are not checked (its own error says what is wrong).
struct Known<'a> {
    /// Accounts of users.toml.
    users: Option<&'a HashSet<String>>,
    /// `[calls]` feature codes.
    features: Option<&'a FeatureCodes>,
    /// Queue names of queues.toml.
    queues: Option<HashSet<&'a str>>,
    /// Skills that agents of agents.toml have.
    skills: Option<HashSet<&'a str>>,
    /// Schedules of schedules.toml (`None` when it did not load).
    schedules: Option<&'a HashMap<String, std::sync::Arc<pbx::schedule::Schedule>>>,
    /// Mailboxes of voicemail.toml (`None` when it did not load).
    mailboxes: Option<HashSet<&'a str>>,
    /// Queues of queues.toml that offer callbacks.
    callback_queues: Option<HashSet<&'a str>>,
    /// Trunks of switchboard.toml and where calls out through each go (`None` when that
    /// file did not load).
    trunk_dials: Option<HashMap<String, Option<std::net::SocketAddr>>>,
}

/// Validate and build the call-center settings: the call-center tables of switchboard.toml
/// (`server`, `None` when that file did not load), queues.toml and agents.toml. `users` are
/// the accounts of users.toml (`None` when it did not load). Problems go to `found`; the
/// result is `None` when any were errors, or when switchboard.toml did not load. Warnings
/// (a queue nobody serves, a skill no queue asks for) are looked for only in a config
/// without errors.
pub(crate) fn build(
    dir: &Path,
    server: Option<ServerSource<'_>>,
    sip_advertise_host: Option<&str>,
    users: Option<&HashSet<String>>,
    found: &mut Findings,
) -> Option<CallCenter> {
    let errors_before = found.errors.len();
    let mut prompts = Prompts::new(dir);
    let tables = server.map(|(file, overrides, t)| {
        let mut r = Report::with_overrides(file, overrides, found);
        let media = media_table(&mut r, &t.media, sip_advertise_host);
        let calls = calls_table(&mut r, &t.calls, &mut prompts);
        let recording = recording_table(&mut r, &t.recording);
        let mut trunks = Vec::new();
        let mut trunk_rules = Vec::new();
        let mut carriers = Vec::new();
        let mut trunk_accounts = Vec::new();
        for (name, section) in &t.trunks {
            let (trunk, rule, carrier, account) = trunk_table(&mut r, name, section);
            trunks.push(trunk);
            trunk_rules.push(rule);
            carriers.extend(carrier);
            trunk_accounts.extend(account);
        }
        Tables {
            media,
            calls,
            recording,
            trunks,
            trunk_rules,
            carriers,
            trunk_accounts,
        }
    });
    let queues = TomlFile::read::<QueuesFile>(
        dir.join("queues.toml"),
        Presence::Optional,
        &mut found.errors,
    );
    let agents = TomlFile::read::<AgentsFile>(
        dir.join("agents.toml"),
        Presence::Optional,
        &mut found.errors,
    );
    let schedules = TomlFile::read::<SchedulesFile>(
        dir.join("schedules.toml"),
        Presence::Optional,
        &mut found.errors,
    )
    .map(|(file, s)| schedules_file(&mut Report::new(&file, found), &s));
    let voicemail_read = TomlFile::read::<voicemail::VoicemailFile>(
        dir.join("voicemail.toml"),
        Presence::Optional,
        &mut found.errors,
    );
    let known = Known {
        users,
        features: tables.as_ref().map(|t| &t.calls.features),
        queues: queues
            .as_ref()
            .map(|(_, q)| q.queues.keys().map(String::as_str).collect()),
        skills: agents.as_ref().map(|(_, a)| {
            a.agents
                .values()
                .flat_map(|a| a.skills.keys().map(String::as_str))
                .collect()
        }),
        schedules: schedules.as_ref(),
        mailboxes: voicemail_read
            .as_ref()
            .map(|(_, v)| v.mailboxes.keys().map(String::as_str).collect()),
        callback_queues: queues.as_ref().map(|(_, q)| {
            q.queues
                .iter()
                .filter(|(_, e)| e.callback.is_some())
                .map(|(n, _)| n.as_str())
                .collect()
        }),
        trunk_dials: server.map(|(_, _, t)| {
            t.trunks
                .iter()
                .map(|(name, e)| (name.clone(), e.dial.as_deref().and_then(|d| d.parse().ok())))
                .collect()
        }),
    };
    let queue_setups = queues
        .as_ref()
        .map(|(file, q)| queues_file(&mut Report::new(file, found), q, &known, &mut prompts));
    let agent_setups = agents
        .as_ref()
        .map(|(file, a)| agents_file(&mut Report::new(file, found), a, &known));
    let menus = TomlFile::read::<menus::MenusFile>(
        dir.join("ivr.toml"),
        Presence::Optional,
        &mut found.errors,
    )
    .map(|(file, m)| {
        let queue_numbers: HashMap<String, String> = queues
            .as_ref()
            .map(|(_, q)| {
                q.queues
                    .iter()
                    .map(|(name, e)| (e.number.clone(), name.clone()))
                    .collect()
            })
            .unwrap_or_default();
        let surveys: HashSet<String> = queues
            .as_ref()
            .map(|(_, q)| q.queues.values().filter_map(|e| e.survey.clone()).collect())
            .unwrap_or_default();
        let r = &mut Report::new(&file, found);
        menus::menus_file(r, &m, &known, &mut prompts, &queue_numbers, &surveys)
    });
    // Queue and menu numbers, for the files whose numbers must not clash with them.
    let mut internal_numbers: HashMap<String, String> = HashMap::new();
    if let Some((_, q)) = &queues {
        for (name, e) in &q.queues {
            internal_numbers.insert(e.number.clone(), format!("queue \"{name}\""));
        }
    }
    if let Some(menus) = &menus {
        for m in menus {
            if let Some(n) = &m.number {
                internal_numbers.insert(n.clone(), format!("menu \"{}\"", m.name));
            }
        }
    }
    let voicemail_setup = voicemail_read.as_ref().map(|(file, v)| {
        let r = &mut Report::new(file, found);
        voicemail::voicemail_file(r, v, &known, &mut prompts, &internal_numbers)
    });
    let routes = TomlFile::read::<routes::RoutesFile>(
        dir.join("routes.toml"),
        Presence::Optional,
        &mut found.errors,
    )
    .map(|(file, f)| {
        let carriers: Option<Vec<String>> = server.map(|(_, _, t)| {
            t.trunks
                .iter()
                .filter(|(_, e)| !e.proxies.is_empty())
                .map(|(n, _)| n.clone())
                .collect()
        });
        let r = &mut Report::new(&file, found);
        routes::routes_file(r, &f, &known, carriers.as_deref(), &internal_numbers)
    });
    // A queue's survey is a scoring menu of ivr.toml (none when ivr.toml is missing).
    if let (Some((queues_toml, qf)), Some(menus)) = (&queues, &menus) {
        let mut r = Report::new(queues_toml, found);
        for (name, e) in &qf.queues {
            let Some(survey) = &e.survey else { continue };
            let key = KeyPath::top("queues").key(name).key("survey");
            match menus.iter().find(|m| &m.name == survey) {
                Some(m) if matches!(m.kind, pbx::MenuKind::Score { .. }) => {}
                Some(_) => r.err(
                    &key,
                    format!("menu \"{survey}\" takes no score (give it score = 5 in ivr.toml)"),
                ),
                None => r.err(
                    &key,
                    format!(
                        "unknown menu \"{survey}\" (a [menus.NAME] of ivr.toml with score = 5){}",
                        did_you_mean(survey, menus.iter().map(|m| m.name.as_str()))
                    ),
                ),
            }
        }
    }
    let supervisor_rules = agents
        .as_ref()
        .map(|(file, af)| supervisors(&mut Report::new(file, found), af, &known))
        .unwrap_or_default();
    if found.errors.len() > errors_before {
        return None;
    }
    let (
        Some(tables),
        Some((queues_toml, qf)),
        Some(queues),
        Some((agents_toml, af)),
        Some(agents),
        Some(menus),
        Some(voicemail),
    ) = (
        tables,
        &queues,
        queue_setups,
        &agents,
        agent_setups,
        menus,
        voicemail_setup,
    )
    else {
        return None;
    };
    unserved_queues(&mut Report::new(queues_toml, found), qf, &queues, &agents);
    let boards = wallboards(&mut Report::new(queues_toml, found), qf, &queues);
    unasked_skills(&mut Report::new(agents_toml, found), af, &queues);
    let Tables {
        media,
        calls,
        recording,
        trunks,
        trunk_rules,
        carriers,
        trunk_accounts,
    } = tables;
    let mut outbound = routes.unwrap_or_default();
    outbound.carriers = carriers;
    Some(CallCenter {
        warnings: std::mem::take(&mut found.warnings),
        media,
        trunks,
        trunk_rules,
        outbound,
        trunk_accounts,
        challenge: calls.challenge,
        extensions: calls.extensions,
        ring_timeout: calls.ring_timeout,
        features: calls.features,
        queues,
        boards,
        agents,
        announcements: calls.announcements,
        recording: recording.config,
        recording_seed: recording.seed,
        recording_pause_key: recording.pause_key,
        menus,
        voicemail,
        supervisors: supervisor_rules,
    })
}

/// `[supervisors.USER]` of agents.toml.
fn supervisors(r: &mut Report<'_>, f: &AgentsFile, known: &Known<'_>) -> Vec<pbx::SupervisorRule> {
    let mut rules = Vec::new();
    for (user, e) in &f.supervisors {
        let t = KeyPath::top("supervisors").key(user);
        if let Some(users) = known.users {
            if !users.contains(user) {
                r.err(
                    &t,
                    format!(
                        "\"{user}\" is not an account in users.toml{}",
                        did_you_mean(user, users.iter().map(String::as_str))
                    ),
                );
            }
        }
        if e.queues.is_empty() && e.agents.is_empty() {
            r.err(
                &t,
                "give the queues whose agents they may monitor (queues = [\"*\"] for all) or agents",
            );
        }
        let all = e.queues.iter().any(|q| q == "*");
        for q in e.queues.iter().filter(|q| *q != "*") {
            if let Some(queues) = &known.queues {
                if !queues.contains(q.as_str()) {
                    r.err(
                        &t.key("queues"),
                        format!(
                            "unknown queue \"{q}\"{}",
                            did_you_mean(q, queues.iter().copied())
                        ),
                    );
                }
            }
        }
        let names: Vec<String> = f
            .agents
            .iter()
            .map(|(k, a)| a.name.clone().unwrap_or_else(|| k.clone()))
            .collect();
        for a in &e.agents {
            if !names.contains(a) {
                r.err(
                    &t.key("agents"),
                    format!(
                        "unknown agent \"{a}\"{}",
                        did_you_mean(a, names.iter().map(String::as_str))
                    ),
                );
            }
        }
        rules.push(pbx::SupervisorRule {
            user: user.clone(),
            all,
            queues: e.queues.clone(),
            agents: e.agents.clone(),
        });
    }
    rules
}

/// `[media]`. The address phones send audio to defaults to sip.advertise's host, else the
/// bind address, else the interface that routes outward.
fn media_table(
    r: &mut Report<'_>,
    m: &MediaSection,
    sip_advertise_host: Option<&str>,
) -> MediaConfig {
    let t = KeyPath::top("media");
    let bind: IpAddr = match m.bind.parse() {
        Ok(a) => a,
        Err(_) => {
            r.err(
                &t.key("bind"),
                format!("\"{}\" is not an IP address", m.bind),
            );
            IpAddr::V4(Ipv4Addr::UNSPECIFIED)
        }
    };
    let advertise_text = m
        .advertise
        .clone()
        .or_else(|| sip_advertise_host.map(str::to_owned))
        .unwrap_or_else(|| match bind {
            IpAddr::V4(a) if !a.is_unspecified() => a.to_string(),
            // Phones on other machines must be able to reach what our SDP names.
            _ => outward_ipv4().unwrap_or(Ipv4Addr::LOCALHOST).to_string(),
        });
    let advertise: Ipv4Addr = match advertise_text.parse() {
        Ok(a) => a,
        Err(_) => {
            r.err(
                &t.key("advertise"),
                format!("\"{advertise_text}\" is not an IPv4 address (phones send RTP to it)"),
            );
            Ipv4Addr::LOCALHOST
        }
    };
    if m.port_min < 1024 || m.port_min >= m.port_max {
        r.err(
            &t.key("port_min"),
            format!(
                "the RTP port range {}–{} is empty or inverted (port_min must be below port_max, and at least 1024)",
                m.port_min, m.port_max
            ),
        );
    } else if m.port_max - m.port_min < 3 {
        r.err(
            &t.key("port_max"),
            "the RTP range must hold at least two port pairs",
        );
    }
    if m.timeout == 0 {
        r.err(&t.key("timeout"), "must be at least 1 second");
    }
    MediaConfig {
        bind,
        advertise,
        port_min: m.port_min,
        port_max: m.port_max,
        timeout: Duration::from_secs(m.timeout),
        ..MediaConfig::default()
    }
}

/// The address of the interface that routes outward: a UDP socket "connected" to a
/// documentation address (no packet is sent) takes the source address the kernel would use.
/// `None` without a route (an isolated machine: the media stays on loopback).
pub(crate) fn outward_ipv4() -> Option<Ipv4Addr> {
    let s = std::net::UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)).ok()?;
    s.connect((Ipv4Addr::new(192, 0, 2, 1), 9)).ok()?;
    match s.local_addr().ok()?.ip() {
        IpAddr::V4(a) if !a.is_unspecified() => Some(a),
        _ => None,
    }
}

/// `[calls]`, checked.
struct Calls {
    challenge: bool,
    extensions: bool,
    ring_timeout: Duration,
    features: FeatureCodes,
    announcements: Announcements,
}

/// `[calls]`, with the announcement prompts of `calls.prompts`.
fn calls_table(r: &mut Report<'_>, c: &CallsSection, prompts: &mut Prompts) -> Calls {
    let t = KeyPath::top("calls");
    for (k, v) in [
        ("login", &c.login),
        ("logout", &c.logout),
        ("pause", &c.pause),
        ("monitor", &c.monitor),
        ("whisper", &c.whisper),
        ("barge", &c.barge),
    ] {
        if v.is_empty() || v.contains(char::is_whitespace) {
            r.err(
                &t.key(k),
                "a feature code must be a non-empty dial string such as \"*71\"",
            );
        }
    }
    for (k, v) in [
        ("transfer", &c.transfer),
        ("attended_transfer", &c.attended_transfer),
    ] {
        if !v
            .chars()
            .all(|k| k.is_ascii_digit() || k == '*' || k == '#')
        {
            r.err(
                &t.key(k),
                "keys (0-9, * and #) the agent presses during a call, such as \"##\"; empty for none",
            );
        }
    }
    if !c.transfer.is_empty() && c.transfer == c.attended_transfer {
        r.err(
            &t.key("attended_transfer"),
            format!("\"{}\" is also the blind transfer code", c.transfer),
        );
    }
    if c.ring_timeout == 0 {
        r.err(&t.key("ring_timeout"), "must be at least 1 second");
    }
    let mut announcements = Announcements::default();
    if let Some(p) = &c.prompts {
        let key = t.key("prompts");
        let dir = Path::new(p);
        let mut get = |f: &str, r: &mut Report<'_>| prompts.load(r, &key, &dir.join(f));
        announcements.position = get("position.wav", r);
        announcements.wait = get("wait.wav", r);
        announcements.minutes = get("minutes.wav", r);
        for n in 0..=20 {
            match get(&format!("{n}.wav"), r) {
                Some(p) => announcements.numbers.push(p),
                None => break,
            }
        }
    }
    Calls {
        challenge: c.challenge,
        extensions: c.extensions,
        ring_timeout: Duration::from_secs(c.ring_timeout),
        features: FeatureCodes {
            login: c.login.clone(),
            logout: c.logout.clone(),
            pause: c.pause.clone(),
            transfer: c.transfer.clone(),
            attended_transfer: c.attended_transfer.clone(),
            monitor: c.monitor.clone(),
            whisper: c.whisper.clone(),
            barge: c.barge.clone(),
        },
        announcements,
    }
}

/// `[recording]`, checked.
struct Recording {
    config: pbx::recorder::service::RecorderConfig,
    seed: u64,
    pause_key: String,
}

/// `[recording]`.
fn recording_table(r: &mut Report<'_>, rec: &RecordingSection) -> Recording {
    let t = KeyPath::top("recording");
    if rec.dir.trim().is_empty() {
        r.err(&t.key("dir"), "must name a directory");
    }
    if rec.flush_every == 0 || rec.flush_every > 60 {
        r.err(
            &t.key("flush_every"),
            "must be 1–60 seconds (how much audio a crash may cost)",
        );
    }
    if rec
        .pause_key
        .chars()
        .any(|c| !c.is_ascii_digit() && c != '*' && c != '#')
    {
        r.err(
            &t.key("pause_key"),
            "must be DTMF keys (0-9, *, #) or empty to disable",
        );
    }
    let dir = {
        let d = PathBuf::from(&rec.dir);
        if d.is_absolute() {
            d
        } else {
            // Relative to the working directory, like the shipped "data/recordings".
            std::env::current_dir().map(|c| c.join(&d)).unwrap_or(d)
        }
    };
    Recording {
        config: pbx::recorder::service::RecorderConfig {
            dir,
            flush_every: Duration::from_secs(rec.flush_every),
            ..pbx::recorder::service::RecorderConfig::default()
        },
        seed: rec.seed,
        pause_key: rec.pause_key.clone(),
    }
}

/// What one `[trunks.NAME]` gives: the endpoint's trunk, call control's rule, the carrier
/// (with proxies), and the account the carrier authenticates with (trunk, user, password).
type TrunkParts = (
    Trunk,
    TrunkRule,
    Option<pbx::Carrier>,
    Option<(String, String, String)>,
);

/// `[trunks.NAME]`: the trunk (for the SIP endpoint), the numbers it may call (for call
/// control), the carrier calls go out through (when it has proxies), and the account the
/// carrier authenticates with (when it has one).
fn trunk_table(r: &mut Report<'_>, name: &str, t: &TrunkSection) -> TrunkParts {
    let table = KeyPath::top("trunks").key(name);
    let mut addresses = Vec::new();
    let mut proxies = Vec::new();
    for p in &t.proxies {
        match p.parse::<std::net::SocketAddr>() {
            Ok(a) => {
                proxies.push(a);
                // A carrier's calls come from its proxies.
                if !addresses.contains(&a.ip()) {
                    addresses.push(a.ip());
                }
            }
            Err(_) => r.err(
                &table.key("proxies"),
                format!("\"{p}\" is not an IP address and port such as \"198.51.100.7:5060\""),
            ),
        }
    }
    if t.addresses.is_empty() && t.proxies.is_empty() && t.inbound_username.is_none() {
        r.err(
            &table.key("addresses"),
            "a trunk needs source addresses, proxies, or an inbound_username its carrier authenticates with",
        );
    }
    let account = match (&t.inbound_username, &t.inbound_password) {
        (Some(u), Some(p)) if !u.is_empty() && !p.is_empty() => {
            Some((name.to_owned(), u.clone(), p.clone()))
        }
        (Some(_), Some(_)) => {
            r.err(
                &table.key("inbound_username"),
                "must not be empty, nor its password",
            );
            None
        }
        (Some(_), None) => {
            r.err(
                &table.key("inbound_password"),
                "inbound_username needs inbound_password",
            );
            None
        }
        (None, Some(_)) => {
            r.err(
                &table.key("inbound_username"),
                "inbound_password needs inbound_username",
            );
            None
        }
        (None, None) => None,
    };
    if t.register && (t.username.is_none() || t.password.is_none()) {
        r.err(
            &table.key("register"),
            "registering needs the trunk's username and password at the carrier",
        );
    }
    if t.register && proxies.is_empty() && t.proxies.is_empty() {
        r.err(
            &table.key("register"),
            "registering needs proxies to register with",
        );
    }
    if t.username.is_some() != t.password.is_some() {
        r.err(
            &table.key("password"),
            "give both username and password, or neither",
        );
    }
    if t.max_calls == Some(0) {
        r.err(
            &table.key("max_calls"),
            "must be at least 1 (leave it out for no limit)",
        );
    }
    if t.expires.is_some_and(|e| e < 60) {
        r.err(&table.key("expires"), "at least 60 seconds");
    }
    if t.answer_timeout == Some(0) {
        r.err(&table.key("answer_timeout"), "at least 1 second");
    }
    if let Some(c) = &t.caller_id {
        if c.is_empty() || !c.chars().all(|c| c.is_ascii_digit() || c == '+') {
            r.err(
                &table.key("caller_id"),
                format!("\"{c}\" is not a phone number (digits, a leading +)"),
            );
        }
    }
    let carrier = (!proxies.is_empty()).then(|| pbx::Carrier {
        name: name.to_owned(),
        proxies: proxies.clone(),
        domain: t.domain.clone(),
        auth: t.username.clone().zip(t.password.clone()),
        register: t
            .register
            .then(|| std::time::Duration::from_secs(t.expires.unwrap_or(600))),
        caller_id: t.caller_id.clone(),
        max_calls: t.max_calls,
        answer_timeout: std::time::Duration::from_secs(t.answer_timeout.unwrap_or(5)),
    });
    for a in &t.addresses {
        match a.parse::<IpAddr>() {
            Ok(ip) => addresses.push(ip),
            Err(_) => r.err(
                &table.key("addresses"),
                format!("\"{a}\" is not an IP address"),
            ),
        }
    }
    if t.numbers.is_empty() && (!t.addresses.is_empty() || t.inbound_username.is_some()) {
        r.err(
            &table.key("numbers"),
            "a trunk must list the numbers it may call (e.g. [\"600\"])",
        );
    }
    if let Some(d) = &t.dial {
        if d.parse::<std::net::SocketAddr>().is_err() {
            r.err(
                &table.key("dial"),
                format!("\"{d}\" is not an IP address and port such as \"198.51.100.7:5060\""),
            );
        }
    }
    let trunk = Trunk {
        name: name.to_owned(),
        addresses,
        numbers: t.numbers.clone(),
        username: account.as_ref().map(|a| a.1.clone()),
    };
    let rule = TrunkRule {
        trunk: name.to_owned(),
        numbers: t.numbers.clone(),
    };
    (trunk, rule, carrier, account)
}

/// queues.toml: every queue, then what involves several of them (shared numbers, overflow
/// cycles). In the order of their names.
fn queues_file(
    r: &mut Report<'_>,
    f: &QueuesFile,
    known: &Known<'_>,
    prompts: &mut Prompts,
) -> Vec<QueueSetup> {
    let mut queues = Vec::new();
    let mut numbers: HashMap<&str, &str> = HashMap::new();
    for (name, e) in &f.queues {
        queues.push(queue(r, name, e, known, prompts));
        if let Some(other) = numbers.insert(&e.number, name) {
            r.err(
                &KeyPath::top("queues").key(name).key("number"),
                format!("\"{}\" is also the number of queue \"{other}\"", e.number),
            );
        }
    }
    overflow_cycles(r, f);
    queues
}

/// Each queue's wallboard thresholds (`[queues.NAME.wallboard]`), with its service level.
fn wallboards(
    r: &mut Report<'_>,
    f: &QueuesFile,
    queues: &[QueueSetup],
) -> Vec<web::live::QueueBoardConfig> {
    queues
        .iter()
        .map(|q| {
            let name = q.acd.name.as_str();
            let mut b = web::live::QueueBoardConfig::new(name);
            b.service_level = q.acd.service_level;
            let Some(e) = f.queues.get(name).map(|e| &e.wallboard) else {
                return b;
            };
            let t = KeyPath::top("queues").key(name).key("wallboard");
            if let Some(s) = e.wait_warn {
                b.wait_warn = Duration::from_secs(s);
            }
            if let Some(s) = e.wait_alert {
                b.wait_alert = Duration::from_secs(s);
            }
            if b.wait_alert < b.wait_warn {
                r.err(&t.key("wait_alert"), "must not be shorter than wait_warn");
            }
            for (key, v, slot) in [
                (
                    "service_level_warn",
                    e.service_level_warn,
                    &mut b.service_level_warn,
                ),
                (
                    "service_level_alert",
                    e.service_level_alert,
                    &mut b.service_level_alert,
                ),
            ] {
                match v {
                    Some(p) if p > 100 => r.err(&t.key(key), "a percentage, 0 to 100"),
                    Some(p) => *slot = f64::from(p) / 100.0,
                    None => {}
                }
            }
            if b.service_level_alert > b.service_level_warn {
                r.err(
                    &t.key("service_level_alert"),
                    "must not be above service_level_warn",
                );
            }
            b
        })
        .collect()
}

/// `[queues.NAME]`.
fn queue(
    r: &mut Report<'_>,
    name: &str,
    e: &QueueEntry,
    known: &Known<'_>,
    prompts: &mut Prompts,
) -> QueueSetup {
    let t = KeyPath::top("queues").key(name);
    for problem in number_problems(&e.number, known) {
        r.err(&t.key("number"), problem);
    }
    let mut acd = pbx::acd::QueueConfig::named(name.to_owned());
    if let Some(st) = &e.strategy {
        match parse_strategy(st) {
            Some(x) => acd.strategy = x,
            None => r.err(
                &t.key("strategy"),
                format!(
                    "unknown strategy \"{st}\"{}",
                    did_you_mean(st, STRATEGIES.iter().copied())
                ),
            ),
        }
    }
    for (i, sk) in e.required_skills.iter().enumerate() {
        let (skill, min, optional) = match sk {
            SkillEntry::Name(s) => (s.clone(), 1, false),
            SkillEntry::Full {
                skill,
                min,
                optional,
            } => (skill.clone(), *min, *optional),
        };
        let key = t.key("required_skills").index(i);
        // Skills are whatever agents have: one that no agent has is a typo.
        if let Some(skills) = &known.skills {
            if !skills.contains(skill.as_str()) {
                r.err(
                    &key,
                    format!(
                        "unknown skill \"{skill}\" (no agent has it){}",
                        did_you_mean(&skill, skills.iter().copied())
                    ),
                );
            }
        }
        if !(1..=10).contains(&min) {
            r.err(&key, format!("min {min} is outside 1–10"));
        }
        acd.skills.push(SkillRequirement {
            skill,
            min,
            optional,
        });
    }
    if let Some(s) = e.ring_timeout {
        if s == 0 {
            r.err(&t.key("ring_timeout"), "must be at least 1 second");
        }
        acd.ring_timeout = Some(Duration::from_secs(s));
    }
    if let Some(s) = e.wrap_up {
        acd.wrap_up = Duration::from_secs(s);
    }
    if let Some(s) = e.max_wait {
        acd.max_wait = (s > 0).then(|| Duration::from_secs(s));
    }
    if let Some(s) = e.service_level {
        acd.service_level = Duration::from_secs(s);
    }
    if let Some(n) = e.auto_pause_after {
        acd.auto_pause_after = n;
    }
    acd.escalation = escalation(r, &t.key("escalation"), &e.escalation);
    if e.priority.is_some_and(|p| p > 9) {
        r.err(
            &t.key("priority"),
            "call priority must be 0–9 (9 is served first)",
        );
    }
    for (key, v, slot) in [
        ("join_empty", &e.join_empty, &mut acd.join_empty),
        (
            "leave_when_empty",
            &e.leave_when_empty,
            &mut acd.leave_when_empty,
        ),
    ] {
        if let Some(v) = v {
            match v.as_str() {
                "never" => *slot = EmptyPolicy::Never,
                "no-agents-logged-in" => *slot = EmptyPolicy::NoAgentsLoggedIn,
                "no-agents-available" => *slot = EmptyPolicy::NoAgentsAvailable,
                other => r.err(
                    &t.key(key),
                    format!("\"{other}\" is not one of \"never\", \"no-agents-logged-in\", \"no-agents-available\""),
                ),
            }
        }
    }
    if let Some(o) = &e.overflow {
        acd.overflow = overflow(r, &t.key("overflow"), name, o, known);
    }
    let greeting = e
        .greeting
        .as_deref()
        .and_then(|p| prompts.load(r, &t.key("greeting"), Path::new(p)));
    let music = e
        .music
        .as_deref()
        .and_then(|p| prompts.load(r, &t.key("music"), Path::new(p)));
    if e.announce_every == Some(0) {
        r.err(
            &t.key("announce_every"),
            "must be at least 1 second (leave it out for never)",
        );
    }
    let record = record_policy(r, &t.key("record"), e.record.as_deref());
    let hours = queue_hours(r, &t, name, e, known, prompts);
    QueueSetup {
        number: e.number.clone(),
        acd,
        greeting,
        music,
        announce_every: e.announce_every.filter(|&s| s > 0).map(Duration::from_secs),
        record,
        priority: e.priority.unwrap_or(0).min(9),
        hours,
        survey: e.survey.clone(),
        callback: e
            .callback
            .as_ref()
            .and_then(|c| queue_callback(r, &t, e, c, known, prompts)),
        caller_id: e.caller_id.clone().inspect(|c| {
            if c.is_empty() || !c.chars().all(|c| c.is_ascii_digit() || c == '+') {
                r.err(
                    &t.key("caller_id"),
                    format!("\"{c}\" is not a phone number (digits, a leading +)"),
                );
            }
        }),
    }
}

/// A queue's `[queues.NAME.callback]`.
fn queue_callback(
    r: &mut Report<'_>,
    t: &KeyPath,
    e: &QueueEntry,
    c: &CallbackEntry,
    known: &Known<'_>,
    prompts: &mut Prompts,
) -> Option<pbx::CallbackSetup> {
    let t = t.key("callback");
    let mut chars = c.key.chars();
    let key = match (chars.next(), chars.next()) {
        (Some(k), None) if k.is_ascii_digit() || k == '*' || k == '#' => Some(k),
        _ => {
            r.err(
                &t.key("key"),
                format!("\"{}\" is not a key: 0-9, * or #", c.key),
            );
            None
        }
    };
    let offer = c
        .offer
        .as_deref()
        .and_then(|f| prompts.load(r, &t.key("offer"), Path::new(f)));
    let confirm = prompts.load(r, &t.key("confirm"), Path::new(&c.confirm));
    if c.offer.is_some() && offer.is_none() {
        return None;
    }
    let via = match known.trunk_dials.as_ref().map(|d| d.get(&c.trunk)) {
        Some(Some(Some(addr))) => Some(*addr),
        Some(Some(None)) => {
            r.err(
                &t.key("trunk"),
                format!(
                    "trunk \"{}\" has no dial address ([trunks.{}] dial = \"host:port\")",
                    c.trunk, c.trunk
                ),
            );
            None
        }
        Some(None) => {
            let names: Vec<&str> = known
                .trunk_dials
                .as_ref()
                .map(|d| d.keys().map(String::as_str).collect())
                .unwrap_or_default();
            r.err(
                &t.key("trunk"),
                format!(
                    "unknown trunk \"{}\" (a [trunks.NAME] of switchboard.toml){}",
                    c.trunk,
                    did_you_mean(&c.trunk, names.into_iter())
                ),
            );
            None
        }
        None => None,
    };
    if c.retries > 10 {
        r.err(&t.key("retries"), "at most 10");
    }
    if !(10..=86_400).contains(&c.retry_after) {
        r.err(&t.key("retry_after"), "seconds, 10-86400");
    }
    if !(5..=120).contains(&c.ring_timeout) {
        r.err(&t.key("ring_timeout"), "seconds, 5-120");
    }
    Some(pbx::CallbackSetup {
        key: key?,
        offer,
        confirm: confirm?,
        trunk: c.trunk.clone(),
        via: via?,
        caller_id: c.caller_id.clone().unwrap_or_else(|| e.number.clone()),
        retries: c.retries.min(10),
        retry_after: Duration::from_secs(c.retry_after),
        ring_timeout: Duration::from_secs(c.ring_timeout),
    })
}

/// A queue's `schedule` and `when_closed`.
fn queue_hours(
    r: &mut Report<'_>,
    t: &KeyPath,
    name: &str,
    e: &QueueEntry,
    known: &Known<'_>,
    prompts: &mut Prompts,
) -> Option<pbx::Hours> {
    let Some(sched) = &e.schedule else {
        if e.when_closed.is_some() {
            r.err(
                &t.key("when_closed"),
                "needs a schedule (the queue is never closed without one)",
            );
        }
        return None;
    };
    let schedules = known.schedules?;
    let Some(schedule) = schedules.get(sched) else {
        r.err(
            &t.key("schedule"),
            format!(
                "unknown schedule \"{sched}\" (a [schedules.NAME] of schedules.toml){}",
                did_you_mean(sched, schedules.keys().map(String::as_str))
            ),
        );
        return None;
    };
    let key = t.key("when_closed");
    let closed = match e
        .when_closed
        .as_deref()
        .map(|w| w.split_once(':').unwrap_or((w, "")))
    {
        None | Some(("refuse", "")) => pbx::Closed::Refuse,
        Some(("queue", target)) => {
            if let Some(names) = &known.queues {
                if !names.contains(target) {
                    r.err(
                        &key,
                        format!(
                            "unknown queue \"{target}\"{}",
                            did_you_mean(target, names.iter().copied())
                        ),
                    );
                } else if target == name {
                    r.err(&key, "a closed queue cannot send its callers to itself");
                }
            }
            pbx::Closed::Queue(target.to_owned())
        }
        Some(("announce", file)) if !file.is_empty() => {
            match prompts.load(r, &key, Path::new(file)) {
                Some(p) => pbx::Closed::Announcement(p),
                None => pbx::Closed::Refuse,
            }
        }
        Some(("voicemail", mailbox)) if !mailbox.is_empty() => {
            check_mailbox(r, &key, mailbox, known);
            pbx::Closed::Voicemail(mailbox.to_owned())
        }
        Some(_) => {
            r.err(
                &key,
                format!(
                    "\"{}\" must be \"refuse\", \"queue:<name>\", \"announce:<wav file>\" or \"voicemail:<mailbox>\"",
                    e.when_closed.as_deref().unwrap_or_default()
                ),
            );
            pbx::Closed::Refuse
        }
    };
    Some(pbx::Hours {
        schedule: schedule.clone(),
        closed,
    })
}

/// A queue's `escalation` steps: each later than the one before, relaxing at least as much.
fn escalation(
    r: &mut Report<'_>,
    key: &KeyPath,
    steps: &[EscalationEntry],
) -> Vec<pbx::acd::EscalationStep> {
    let mut prev: Option<&EscalationEntry> = None;
    let mut out = Vec::new();
    for (i, step) in steps.iter().enumerate() {
        let key = key.index(i);
        if let Some(p) = prev {
            if step.after <= p.after {
                r.err(
                    &key,
                    format!(
                        "after = {} must be later than the previous step ({})",
                        step.after, p.after
                    ),
                );
            }
            if step.lower_by < p.lower_by {
                r.err(
                    &key,
                    "lower_by must not shrink from one step to the next (give the total)",
                );
            }
            if p.drop_optional && !step.drop_optional {
                r.err(
                    &key,
                    "once optional skills are dropped, later steps must drop them too",
                );
            }
        }
        if step.lower_by > 9 {
            r.err(&key, "lower_by must be 0–9");
        }
        out.push(pbx::acd::EscalationStep {
            after: Duration::from_secs(step.after),
            lower_by: step.lower_by,
            drop_optional: step.drop_optional,
        });
        prev = Some(step);
    }
    out
}

/// A queue's `overflow`: `queue:<name>` (a queue of this file, not itself) or
/// `number:<dial string>`.
fn overflow(
    r: &mut Report<'_>,
    key: &KeyPath,
    queue: &str,
    o: &str,
    known: &Known<'_>,
) -> Option<OverflowTarget> {
    match o.split_once(':') {
        Some(("queue", target)) => {
            if let Some(names) = &known.queues {
                if !names.contains(target) {
                    r.err(
                        key,
                        format!(
                            "unknown queue \"{target}\"{}",
                            did_you_mean(target, names.iter().copied())
                        ),
                    );
                } else if target == queue {
                    r.err(key, "a queue cannot overflow into itself");
                }
            }
            Some(OverflowTarget::Queue(target.to_owned()))
        }
        Some(("number", target)) => Some(OverflowTarget::External(target.to_owned())),
        Some(("voicemail", mailbox)) if !mailbox.is_empty() => {
            check_mailbox(r, key, mailbox, known);
            Some(OverflowTarget::External(o.to_owned()))
        }
        _ => {
            r.err(
                key,
                format!(
                    "\"{o}\" must be \"queue:<name>\", \"voicemail:<mailbox>\" or \"number:<dial string>\""
                ),
            );
            None
        }
    }
}

/// Overflow cycles: follow each chain of queue overflows.
fn overflow_cycles(r: &mut Report<'_>, f: &QueuesFile) {
    let next: HashMap<&str, &str> = f
        .queues
        .iter()
        .filter_map(|(n, e)| {
            e.overflow
                .as_deref()
                .and_then(|o| o.strip_prefix("queue:"))
                .map(|t| (n.as_str(), t))
        })
        .collect();
    for start in next.keys() {
        let mut seen = vec![*start];
        let mut cur = *start;
        while let Some(&n) = next.get(cur) {
            if n == *start {
                seen.push(n);
                r.err(
                    &KeyPath::top("queues").key(start).key("overflow"),
                    format!("overflow cycle: {}", seen.join(" -> ")),
                );
                break;
            }
            if seen.contains(&n) {
                break;
            }
            seen.push(n);
            cur = n;
        }
    }
}

/// agents.toml: every agent, then that no two share a user. In the order of their names.
fn agents_file(r: &mut Report<'_>, f: &AgentsFile, known: &Known<'_>) -> Vec<AgentSetup> {
    let mut agents = Vec::new();
    let mut agent_users: HashMap<&str, &str> = HashMap::new();
    for (key, e) in &f.agents {
        agents.push(agent(r, key, e, known));
        if let Some(other) = agent_users.insert(&e.user, key) {
            r.err(
                &KeyPath::top("agents").key(key).key("user"),
                format!("user \"{}\" is already agent \"{other}\"", e.user),
            );
        }
    }
    agents
}

/// `[agents.NAME]`.
fn agent(r: &mut Report<'_>, key: &str, e: &AgentEntry, known: &Known<'_>) -> AgentSetup {
    let t = KeyPath::top("agents").key(key);
    if let Some(users) = known.users {
        if !users.contains(&e.user) {
            r.err(
                &t.key("user"),
                format!(
                    "unknown user \"{}\" (not in users.toml){}",
                    e.user,
                    did_you_mean(&e.user, users.iter().map(String::as_str))
                ),
            );
        }
    }
    let mut acd = pbx::acd::AgentConfig {
        name: e.name.clone().unwrap_or_else(|| key.to_owned()),
        ..pbx::acd::AgentConfig::default()
    };
    for (skill, level) in &e.skills {
        if !(1..=10).contains(level) {
            r.err(
                &t.key("skills"),
                format!("{skill} = {level}: proficiency must be 1–10"),
            );
        }
        acd.skills.push(AgentSkill::new(skill.clone(), *level));
    }
    for (i, m) in e.queues.iter().enumerate() {
        let (queue, priority) = match m {
            MembershipEntry::Name(q) => (q.clone(), 0),
            MembershipEntry::Full { queue, priority } => (queue.clone(), *priority),
        };
        if let Some(names) = &known.queues {
            if !names.contains(queue.as_str()) {
                r.err(
                    &t.key("queues").index(i),
                    format!(
                        "unknown queue \"{queue}\"{}",
                        did_you_mean(&queue, names.iter().copied())
                    ),
                );
            }
        }
        acd.queues.push(QueueMembership { queue, priority });
    }
    AgentSetup {
        acd,
        user: e.user.clone(),
        login_on_start: e.login_on_start,
    }
}

/// A queue no agent can take calls from is legal (agents may be added by a reload) but
/// almost always a mistake: its callers would wait for nobody. A warning at the queue.
fn unserved_queues(
    r: &mut Report<'_>,
    f: &QueuesFile,
    queues: &[QueueSetup],
    agents: &[AgentSetup],
) {
    for (name, setup) in f.queues.keys().zip(queues) {
        if !agents.iter().any(|agent| serves(&agent.acd, &setup.acd)) {
            let rule = match setup.acd.join_empty {
                EmptyPolicy::Never => {
                    "callers join it and wait (join_empty = \"never\") until max_wait or overflow"
                }
                _ => "callers are turned away by its join_empty rule",
            };
            r.warn(
                &KeyPath::top("queues").key(name),
                format!(
                    "no agent serves this queue (none lists it in agents.toml with the skills it \
                     requires): {rule}"
                ),
            );
        }
    }
}

/// An agent skill that no queue asks for (not even as an optional skill) decides nothing:
/// legal, but usually a typo of a skill a queue does ask for, or a leftover. A warning at
/// the skill, suggesting the closest skill a queue asks for.
fn unasked_skills(r: &mut Report<'_>, f: &AgentsFile, queues: &[QueueSetup]) {
    let asked: BTreeSet<&str> = queues
        .iter()
        .flat_map(|q| q.acd.skills.iter().map(|s| s.skill.as_str()))
        .collect();
    for (key, e) in &f.agents {
        for skill in e.skills.keys() {
            if !asked.contains(skill.as_str()) {
                r.warn(
                    &KeyPath::top("agents").key(key).key("skills").key(skill),
                    format!(
                        "no queue asks for this skill{}",
                        did_you_mean(skill, asked.iter().copied())
                    ),
                );
            }
        }
    }
}

const STRATEGIES: &[&str] = &[
    "longest-idle",
    "fewest-calls",
    "least-talk-time",
    "round-robin",
    "linear",
    "random",
    "ring-all",
    "best-skill",
];

fn parse_strategy(s: &str) -> Option<Strategy> {
    Some(match s {
        "longest-idle" => Strategy::LongestIdle,
        "fewest-calls" => Strategy::FewestCalls,
        "least-talk-time" => Strategy::LeastTalkTime,
        "round-robin" => Strategy::RoundRobin,
        "linear" => Strategy::Linear,
        "random" => Strategy::Random,
        "ring-all" => Strategy::RingAll,
        "best-skill" => Strategy::BestSkill,
        _ => return None,
    })
}

/// Whether `agent` can take calls of `queue`: a member with every required skill at the
/// required level, or at the most relaxed level the queue's escalation steps reach.
fn serves(agent: &pbx::acd::AgentConfig, queue: &pbx::acd::QueueConfig) -> bool {
    if !agent.queues.iter().any(|m| m.queue == queue.name) {
        return false;
    }
    // Steps give totals: the last (largest) one relaxes the most.
    let lower = queue
        .escalation
        .iter()
        .map(|s| s.lower_by)
        .max()
        .unwrap_or(0);
    let drop_optional = queue.escalation.iter().any(|s| s.drop_optional);
    queue.skills.iter().all(|r| {
        (r.optional && drop_optional)
            || agent
                .skills
                .iter()
                .any(|s| s.skill == r.skill && s.proficiency >= r.min.saturating_sub(lower).max(1))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The shipped config copied to a temporary directory, with `edits` applied:
    /// (file, text to find, replacement) or (file, "", whole new contents).
    struct Fixture(PathBuf);

    impl Fixture {
        fn new(edits: &[(&str, &str, &str)]) -> Fixture {
            use std::sync::atomic::{AtomicU32, Ordering};
            static N: AtomicU32 = AtomicU32::new(0);
            let dir = std::env::temp_dir().join(format!(
                "sb-fixture-{}-{}",
                std::process::id(),
                N.fetch_add(1, Ordering::Relaxed)
            ));
            let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config");
            std::fs::create_dir_all(dir.join("prompts")).unwrap();
            for f in [
                "switchboard.toml",
                "users.toml",
                "queues.toml",
                "agents.toml",
                "ivr.toml",
                "voicemail.toml",
            ] {
                std::fs::copy(shipped.join(f), dir.join(f)).unwrap();
            }
            fn copy_dir(from: &Path, to: &Path) {
                std::fs::create_dir_all(to).unwrap();
                for e in std::fs::read_dir(from).unwrap() {
                    let e = e.unwrap();
                    if e.file_type().unwrap().is_dir() {
                        copy_dir(&e.path(), &to.join(e.file_name()));
                    } else {
                        std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
                    }
                }
            }
            copy_dir(&shipped.join("prompts"), &dir.join("prompts"));
            for (file, find, replace) in edits {
                let p = dir.join(file);
                let text = if find.is_empty() {
                    (*replace).to_owned()
                } else {
                    let t = std::fs::read_to_string(&p).unwrap();
                    assert!(t.contains(find), "fixture: {find:?} not in {file}");
                    t.replacen(find, replace, 1)
                };
                std::fs::write(&p, text).unwrap();
            }
            Fixture(dir)
        }

        /// The errors of loading it, one per line.
        fn errors(&self) -> String {
            match crate::config::load(&self.0, None) {
                Ok(_) => String::new(),
                Err(e) => e.to_string(),
            }
        }
    }

    impl Fixture {
        /// The warnings of a config that loads, one per line.
        fn warnings(&self) -> String {
            let cfg = crate::config::load(&self.0, None).expect("loads");
            cfg.callcenter
                .warnings
                .iter()
                .map(|w| format!("{w}\n"))
                .collect()
        }
    }

    impl Drop for Fixture {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn has(errors: &str, needle: &str) {
        assert!(errors.contains(needle), "expected {needle:?} in:\n{errors}");
    }

    /// The line (from 1) of the shipped config file `name` that starts with `start`.
    fn shipped_line(name: &str, start: &str) -> usize {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../config")
            .join(name);
        std::fs::read_to_string(&path)
            .expect("the shipped config")
            .lines()
            .position(|l| l.starts_with(start))
            .unwrap_or_else(|| panic!("no line starting {start:?} in {}", path.display()))
            + 1
    }

    #[test]
    fn the_shipped_config_is_clean() {
        assert_eq!(Fixture::new(&[]).errors(), "");
    }

    #[test]
    fn business_hours_load_and_their_mistakes_name_file_line_and_key() {
        let good = "[schedules.office]\ntime_zone = \"Europe/Berlin\"\nmonday = \"08:00-12:00, 13:00-17:00\"\n\
                    holidays = [\"2026-12-25\"]\n";
        let f = Fixture::new(&[
            ("schedules.toml", "", good),
            (
                "queues.toml",
                "required_skills = [\"english\"]",
                "required_skills = [\"english\"]\nschedule = \"office\"\nwhen_closed = \"announce:prompts/moh.wav\"",
            ),
        ]);
        assert_eq!(f.errors(), "");
        let cfg = crate::config::load(&f.0, None).unwrap();
        let hours = cfg.callcenter.queues[0].hours.as_ref().expect("hours");
        assert_eq!(hours.schedule.zone(), "Europe/Berlin");
        assert!(matches!(hours.closed, pbx::Closed::Announcement(_)));

        let bad = "[schedules.office]\ntime_zone = \"Europe/Berln\"\nmonday = \"08:00-25:00\"\n\
                   holidays = [\"Christmas\"]\n";
        let f = Fixture::new(&[
            ("schedules.toml", "", bad),
            (
                "queues.toml",
                "required_skills = [\"english\"]",
                "required_skills = [\"english\"]\nschedule = \"ofice\"\nwhen_closed = \"voicemail\"",
            ),
        ]);
        let e = f.errors();
        has(
            &e,
            "schedules.toml:2: schedules.office.time_zone: \"Europe/Berln\" is not a time zone",
        );
        has(
            &e,
            "schedules.toml:3: schedules.office.monday: \"25:00\" is not a time of day",
        );
        has(
            &e,
            "schedules.toml:4: schedules.office.holidays: \"Christmas\" is not a date",
        );
        has(&e, "queues.support.schedule: unknown schedule \"ofice\"");
        // The schedule is unknown, so when_closed is not looked at.
        let f = Fixture::new(&[
            ("schedules.toml", "", good),
            (
                "queues.toml",
                "required_skills = [\"english\"]",
                "required_skills = [\"english\"]\nschedule = \"office\"\nwhen_closed = \"queue:suport\"",
            ),
        ]);
        has(
            &f.errors(),
            "queues.support.when_closed: unknown queue \"suport\"; did you mean \"support\"?",
        );
    }

    #[test]
    fn the_shipped_menus_load() {
        let cfg = crate::config::load(&Fixture::new(&[]).0, None).unwrap();
        let menus = &cfg.callcenter.menus;
        assert_eq!(menus.len(), 2);
        let main = menus.iter().find(|m| m.name == "main").unwrap();
        assert_eq!(main.number.as_deref(), Some("700"));
        let pbx::MenuKind::Choice(c) = &main.kind else {
            panic!("choices")
        };
        assert_eq!(c[&'1'].step, pbx::Step::Queue("support".into()));
        assert_eq!(c[&'*'].step, pbx::Step::Repeat);
    }

    #[test]
    fn menu_mistakes_name_file_line_and_key() {
        let bad = r#"[menus.main]
number = "600"
prompt = "prompts/nope.wav"
timeout = 0

[menus.main.choices]
1 = "queue:suport"
2 = "menu:acount"
x = "hangup"
3 = "voicemail"
4 = { go = "extension:9999", set = { "bad name" = "x" } }
5 = "callback:support"

[menus.account]
say = "Your account number, please"
collect = "account"
min_digits = 9
max_digits = 4
end_key = "5"
next = "repeat"

[menus.lost]
prompt = "prompts/moh.wav"
choices = { 1 = "hangup" }
schedule = "office"
"#;
        let e = Fixture::new(&[("ivr.toml", "", bad)]).errors();
        has(
            &e,
            "ivr.toml:2: menus.main.number: \"600\" is also the number of queue \"support\"",
        );
        has(&e, "ivr.toml:3: menus.main.prompt:");
        has(&e, "nope.wav");
        has(
            &e,
            "ivr.toml:4: menus.main.timeout: must be at least 1 second",
        );
        has(
            &e,
            "ivr.toml:7: menus.main.choices.1: unknown queue \"suport\"",
        );
        has(&e, "did you mean \"support\"?");
        has(
            &e,
            "ivr.toml:8: menus.main.choices.2: unknown menu \"acount\"; did you mean \"account\"?",
        );
        has(&e, "ivr.toml:9: menus.main.choices.x: \"x\" is not a key");
        has(
            &e,
            "ivr.toml:10: menus.main.choices.3: \"voicemail\" is not a step",
        );
        has(
            &e,
            "menus.main.choices.4: \"9999\" is not a user in users.toml",
        );
        has(&e, "menus.main.choices.4.set.bad name: a variable name is");
        has(
            &e,
            "ivr.toml:12: menus.main.choices.5: queue \"support\" has no [queues.support.callback]",
        );
        has(
            &e,
            "ivr.toml:17: menus.account.min_digits: must be 1 to max_digits (4)",
        );
        has(
            &e,
            "ivr.toml:19: menus.account.end_key: \"5\" must be # or *",
        );
        has(
            &e,
            "ivr.toml:20: menus.account.next: \"repeat\" is for a choice",
        );
        has(
            &e,
            "ivr.toml:25: menus.lost.schedule: unknown schedule \"office\"",
        );
    }

    #[test]
    fn a_queue_survey_is_a_scoring_menu() {
        let survey =
            "\n[menus.survey]\nsay = \"Press 1 to 5\"\nscore = 5\nnext = \"say:Thank you\"\n";
        let shipped = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config/ivr.toml"),
        )
        .unwrap();
        let ivr = format!("{shipped}{survey}");
        let f = Fixture::new(&[
            ("ivr.toml", "", &ivr),
            (
                "queues.toml",
                "record = \"always\"",
                "record = \"always\"\nsurvey = \"survey\"",
            ),
        ]);
        assert_eq!(f.errors(), "");
        assert_eq!(f.warnings(), "", "a survey menu is reached from its queue");
        let cfg = crate::config::load(&f.0, None).unwrap();
        assert_eq!(cfg.callcenter.queues[0].survey.as_deref(), Some("survey"));
        let f = Fixture::new(&[
            ("ivr.toml", "", &ivr.replace("score = 5", "score = 0")),
            (
                "queues.toml",
                "record = \"always\"",
                "record = \"always\"\nsurvey = \"main\"",
            ),
        ]);
        let e = f.errors();
        has(
            &e,
            "menus.survey.score: the highest score a key can give: 1-9",
        );
        has(
            &e,
            "queues.toml:29: queues.support.survey: menu \"main\" takes no score",
        );
    }

    #[test]
    fn the_shipped_voicemail_loads_and_its_mistakes_name_file_line_and_key() {
        let cfg = crate::config::load(&Fixture::new(&[]).0, None).unwrap();
        let vm = cfg.callcenter.voicemail.as_ref().expect("voicemail");
        assert_eq!(vm.number, "*97");
        let boxes: Vec<(&str, Vec<String>)> = vm
            .mailboxes
            .iter()
            .map(|m| (m.name.as_str(), m.notify.clone()))
            .collect();
        assert_eq!(
            boxes,
            [
                ("1001", vec!["1001".to_owned()]),
                ("1002", vec!["1002".to_owned()]),
                ("support", vec!["1001".to_owned(), "1002".to_owned()])
            ]
        );
        let bad = "[voicemail]\nnumber = \"*71\"\nmax_length = 2\nprompts = \"prompts/nowhere\"\n\n\
                   [mailboxes.1001]\npin = \"12\"\n\n\
                   [mailboxes.support]\npin = \"4711\"\nnotify = [\"1001\", \"9999\"]\naccess = \"600\"\n\n\
                   [mailboxes.orphan]\npin = \"0000\"\n";
        let f = Fixture::new(&[
            ("voicemail.toml", "", bad),
            (
                "queues.toml",
                "record = \"always\"",
                "record = \"always\"\noverflow = \"voicemail:suport\"",
            ),
            (
                "ivr.toml",
                "3 = \"voicemail:support\"",
                "3 = \"voicemail:nobody\"",
            ),
        ]);
        let e = f.errors();
        has(
            &e,
            "voicemail.toml:2: voicemail.number: \"*71\" is the login feature code",
        );
        has(&e, "voicemail.toml:3: voicemail.max_length: seconds, 5-600");
        has(
            &e,
            "voicemail.toml:4: voicemail.prompts: no directory prompts/nowhere",
        );
        assert_eq!(e.matches("voicemail.prompts").count(), 1, "{e}");
        has(&e, "voicemail.toml:7: mailboxes.1001.pin: 4-12 digits");
        has(
            &e,
            "mailboxes.support.notify[1]: \"9999\" is not a user in users.toml",
        );
        has(&e, "voicemail.toml:12: mailboxes.support.access: \"600\" is also the number of queue \"support\"");
        has(&e, "queues.support.overflow: unknown mailbox \"suport\"");
        has(&e, "did you mean \"support\"?");
        has(&e, "menus.main.choices.3: unknown mailbox \"nobody\"");
        // Without call records there is nowhere to keep messages.
        let f = Fixture::new(&[("switchboard.toml", "enabled = true", "enabled = false")]);
        has(
            &f.errors(),
            "storage.enabled: voicemail (voicemail.toml) keeps its messages in the call records",
        );
    }

    #[test]
    fn a_queue_callback_needs_a_trunk_that_dials_and_its_mistakes_are_named() {
        let trunk = "\n[trunks.carrier]\naddresses = [\"198.51.100.7\"]\nnumbers = [\"600\"]\ndial = \"198.51.100.7:5060\"\n";
        let server = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config/switchboard.toml"),
        )
        .unwrap();
        let queues = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config/queues.toml"),
        )
        .unwrap();
        let callback = "\n[queues.support.callback]\nkey = \"1\"\n\
                        offer = \"prompts/callback-offer.wav\"\nconfirm = \"prompts/callback-confirm.wav\"\n\
                        trunk = \"carrier\"\n";
        let f = Fixture::new(&[
            ("switchboard.toml", "", &format!("{server}{trunk}")),
            ("queues.toml", "", &format!("{queues}{callback}")),
        ]);
        assert_eq!(f.errors(), "");
        let cfg = crate::config::load(&f.0, None).unwrap();
        let cb = cfg.callcenter.queues[0]
            .callback
            .as_ref()
            .expect("callback");
        assert_eq!(
            (cb.key, cb.via.to_string().as_str()),
            ('1', "198.51.100.7:5060")
        );
        assert_eq!((cb.caller_id.as_str(), cb.retries), ("600", 1));

        let bad = "\n[queues.support.callback]\nkey = \"12\"\n\
                   confirm = \"prompts/nope.wav\"\ntrunk = \"carier\"\nretry_after = 1\n";
        let f = Fixture::new(&[
            (
                "switchboard.toml",
                "",
                &format!("{server}{}", trunk.replace("198.51.100.7:5060", "nowhere")),
            ),
            ("queues.toml", "", &format!("{queues}{bad}")),
        ]);
        let e = f.errors();
        has(
            &e,
            "trunks.carrier.dial: \"nowhere\" is not an IP address and port",
        );
        has(&e, "queues.support.callback.key: \"12\" is not a key");
        has(&e, "queues.support.callback.confirm:");
        has(
            &e,
            "queues.support.callback.trunk: unknown trunk \"carier\"",
        );
        has(&e, "did you mean \"carrier\"?");
        has(&e, "queues.support.callback.retry_after: seconds, 10-86400");
    }

    #[test]
    fn outbound_trunks_and_routes_load_and_their_mistakes_are_named() {
        let server = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config/switchboard.toml"),
        )
        .unwrap();
        let trunk = "\n[trunks.carrier]\nproxies = [\"198.51.100.7:5060\", \"198.51.100.8:5060\"]\n\
                     domain = \"sip.carrier.example\"\nusername = \"acct77\"\npassword = \"s3cret\"\n\
                     register = true\nexpires = 300\ncaller_id = \"+4930555000\"\nmax_calls = 30\n\
                     numbers = [\"600\"]\ninbound_username = \"carrier-in\"\ninbound_password = \"pw-in\"\n";
        let routes = "[dialing]\nclasses = [\"local\", \"national\"]\nmax_calls = 2\n\
                      [dialing.users.1001]\nclasses = [\"national\", \"international\"]\ncaller_id = \"+4930555101\"\n\
                      [[route]]\nname = \"emergency\"\npatterns = [\"112\"]\nclass = \"emergency\"\ntrunks = [\"carrier\"]\n\
                      [[route]]\nname = \"national\"\npatterns = [\"0Z.\"]\nclass = \"national\"\nstrip = 1\n\
                      prepend = \"+49\"\ntrunks = [\"carrier\"]\nrecord = \"always\"\n";
        let f = Fixture::new(&[
            ("switchboard.toml", "", &format!("{server}{trunk}")),
            ("routes.toml", "", routes),
        ]);
        assert_eq!(f.errors(), "");
        let cfg = crate::config::load(&f.0, None).unwrap();
        let o = &cfg.callcenter.outbound;
        assert_eq!(o.carriers.len(), 1);
        let c = &o.carriers[0];
        assert_eq!(c.proxies.len(), 2);
        assert_eq!(c.register, Some(Duration::from_secs(300)));
        assert_eq!(c.auth.as_ref().map(|a| a.0.as_str()), Some("acct77"));
        assert_eq!(o.routes.len(), 2);
        assert_eq!(o.routes[1].strip, 1);
        assert_eq!(o.routes[1].record, RecordPolicy::Always);
        assert_eq!(o.default_policy.max_calls, Some(2));
        let u = &o.users["1001"];
        assert_eq!(
            u.classes,
            [pbx::DialClass::National, pbx::DialClass::International]
        );
        assert_eq!(
            u.max_calls,
            Some(2),
            "the default limit unless the user has one"
        );
        // The carrier's inbound account authenticates, and its proxies are its addresses.
        assert!(cfg.users.contains_key("carrier-in"));
        let t = &cfg.callcenter.trunks[0];
        assert_eq!(t.username.as_deref(), Some("carrier-in"));
        assert_eq!(t.addresses.len(), 2);

        let bad_trunk = "\n[trunks.carrier]\nproxies = [\"nowhere\"]\nregister = true\nmax_calls = 0\n\
                         inbound_username = \"1001\"\ninbound_password = \"x\"\nnumbers = [\"600\"]\n";
        let bad_routes = "[dialing]\nclasses = [\"nationl\"]\n[dialing.users.9999]\nmax_calls = 1\n\
                          [[route]]\nname = \"x\"\npatterns = [\"0[1-9\", \"12\"]\nclass = \"local\"\nstrip = 3\ntrunks = [\"carier\"]\n\
                          [[route]]\nname = \"x\"\npatterns = [\"600\"]\nclass = \"emergency\"\ntrunks = [\"carrier\"]\n";
        let f = Fixture::new(&[
            ("switchboard.toml", "", &format!("{server}{bad_trunk}")),
            ("routes.toml", "", bad_routes),
        ]);
        let e = f.errors();
        has(
            &e,
            "trunks.carrier.proxies: \"nowhere\" is not an IP address and port",
        );
        has(
            &e,
            "trunks.carrier.register: registering needs the trunk's username and password",
        );
        has(&e, "trunks.carrier.max_calls: must be at least 1");
        has(&e, "routes.toml");
        has(&e, "dialing.classes: \"nationl\" is not a class");
        has(&e, "did you mean \"national\"?");
        has(
            &e,
            "dialing.users.9999: \"9999\" is not an account in users.toml",
        );
        has(
            &e,
            "route[0].patterns: pattern \"0[1-9\": a [ without its ]",
        );
        has(&e, "route[0].strip: takes off 3 digits");
        has(
            &e,
            "route[0].trunks: \"carier\" is not a trunk with proxies",
        );
        has(&e, "route[1].name: \"x\" is also the name of route 0");
    }

    #[test]
    fn an_emergency_number_that_shadows_a_queue_is_a_warning_and_a_carrier_account_must_be_its_own()
    {
        let server = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config/switchboard.toml"),
        )
        .unwrap();
        let trunk = "\n[trunks.carrier]\nproxies = [\"198.51.100.7:5060\"]\n";
        let routes = "[[route]]\nname = \"em\"\npatterns = [\"600\"]\nclass = \"emergency\"\ntrunks = [\"carrier\"]\n";
        let f = Fixture::new(&[
            ("switchboard.toml", "", &format!("{server}{trunk}")),
            ("routes.toml", "", routes),
        ]);
        has(
            &f.warnings(),
            "emergency number 600 goes out; queue \"support\" on the same number is never reached",
        );
        let clash = "\n[trunks.carrier]\naddresses = [\"198.51.100.7\"]\nnumbers = [\"600\"]\n\
                     inbound_username = \"1001\"\ninbound_password = \"x\"\n";
        let f = Fixture::new(&[("switchboard.toml", "", &format!("{server}{clash}"))]);
        has(
            &f.errors(),
            "trunks.carrier.inbound_username: \"1001\" is also an account in users.toml",
        );
    }

    #[test]
    fn supervisors_load_and_their_mistakes_are_named() {
        let shipped = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config/agents.toml"),
        )
        .unwrap();
        let f = Fixture::new(&[("agents.toml", "", &shipped)]);
        assert_eq!(f.errors(), "");
        let cfg = crate::config::load(&f.0, None).unwrap();
        let s = &cfg.callcenter.supervisors;
        assert_eq!(s.len(), 1);
        assert!(s[0].all && s[0].user == "1010");
        assert_eq!(cfg.callcenter.features.whisper, "*45");
        let bad = "\n[supervisors.1009]\nqueues = [\"suport\"]\nagents = [\"1099\"]\n\
                   [supervisors.9999]\nqueues = [\"*\"]\n[supervisors.1008]\n";
        let f = Fixture::new(&[("agents.toml", "", &format!("{shipped}{bad}"))]);
        let e = f.errors();
        has(
            &e,
            "supervisors.1009.queues: unknown queue \"suport\"; did you mean \"support\"?",
        );
        has(&e, "supervisors.1009.agents: unknown agent \"1099\"");
        has(
            &e,
            "supervisors.9999: \"9999\" is not an account in users.toml",
        );
        has(
            &e,
            "supervisors.1008: give the queues whose agents they may monitor",
        );
    }

    #[test]
    fn a_menu_nothing_leads_to_is_a_warning() {
        let extra =
            "\n[menus.orphan]\nprompt = \"prompts/moh.wav\"\nchoices = { 1 = \"hangup\" }\n";
        let shipped = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config/ivr.toml"),
        )
        .unwrap();
        let f = Fixture::new(&[("ivr.toml", "", &format!("{shipped}{extra}"))]);
        has(
            &f.warnings(),
            "menus.orphan: no number and no other menu leads here",
        );
    }

    #[test]
    fn a_queue_nobody_serves_is_a_warning_naming_file_line_and_queue() {
        assert_eq!(Fixture::new(&[]).warnings(), "");
        let f = Fixture::new(&[(
            "queues.toml",
            "required_skills = [\"english\"]",
            "required_skills = [\"english\"]\n\n[queues.billing]\nnumber = \"601\"\n",
        )]);
        assert_eq!(f.errors(), "", "a warning, not an error");
        has(
            &f.warnings(),
            "queues.toml:31: queues.billing: no agent serves this queue",
        );
        // Members without the required skill do not serve it either, unless an escalation
        // step relaxes the requirement far enough.
        let f = Fixture::new(&[(
            "queues.toml",
            "required_skills = [\"english\"]",
            "required_skills = [{ skill = \"english\", min = 8 }]",
        )]);
        has(&f.warnings(), "queues.support: no agent serves this queue");
    }

    #[test]
    fn an_unknown_skill_names_file_line_key_and_a_suggestion() {
        let f = Fixture::new(&[
            (
                "agents.toml",
                "skills = { english = 5 }",
                "skills = { english = 5, spanish = 4 }",
            ),
            (
                "queues.toml",
                "required_skills = [\"english\"]",
                "required_skills = [\"english\", \"spansh\"]",
            ),
        ]);
        has(
            &f.errors(),
            "queues.toml:29: queues.support.required_skills[1]: unknown skill \"spansh\" (no agent has it); did you mean \"spanish\"?",
        );
    }

    #[test]
    fn numbers_must_be_unique_across_users_queues_and_feature_codes() {
        let f = Fixture::new(&[("queues.toml", "number = \"600\"", "number = \"1006\"")]);
        has(
            &f.errors(),
            "queues.toml:21: queues.support.number: \"1006\" is also a user in users.toml",
        );
        let f = Fixture::new(&[("queues.toml", "number = \"600\"", "number = \"*71\"")]);
        has(
            &f.errors(),
            "queues.support.number: \"*71\" is the login feature code",
        );
        let f = Fixture::new(&[(
            "queues.toml",
            "record = \"always\"",
            "record = \"always\"\n\n[queues.billing]\nnumber = \"600\"",
        )]);
        has(&f.errors(), "queues.toml:21: queues.support.number: \"600\" is also the number of queue \"billing\"");
    }

    #[test]
    fn agents_must_name_known_users_and_queues() {
        let f = Fixture::new(&[
            ("agents.toml", "user = \"1001\"", "user = \"1O01\""),
            (
                "agents.toml",
                "queues = [\"support\"]",
                "queues = [\"suport\"]",
            ),
        ]);
        let e = f.errors();
        has(&e, "agents.toml:14: agents.1001.user: unknown user \"1O01\" (not in users.toml); did you mean \"1001\"?");
        has(&e, "agents.toml:16: agents.1001.queues[0]: unknown queue \"suport\"; did you mean \"support\"?");
        let f = Fixture::new(&[("agents.toml", "user = \"1002\"", "user = \"1001\"")]);
        has(
            &f.errors(),
            "agents.1002.user: user \"1001\" is already agent \"1001\"",
        );
    }

    #[test]
    fn overflow_targets_must_exist_and_must_not_loop() {
        let f = Fixture::new(&[(
            "queues.toml",
            "record = \"always\"",
            "record = \"always\"\noverflow = \"queue:billing\"\nmax_wait = 60\n\n\
             [queues.billing]\nnumber = \"601\"\noverflow = \"queue:support\"",
        )]);
        has(&f.errors(), "overflow cycle: billing -> support -> billing");
        let f = Fixture::new(&[(
            "queues.toml",
            "record = \"always\"",
            "record = \"always\"\noverflow = \"queue:biling\"",
        )]);
        has(
            &f.errors(),
            "queues.support.overflow: unknown queue \"biling\"",
        );
        let f = Fixture::new(&[(
            "queues.toml",
            "record = \"always\"",
            "record = \"always\"\noverflow = \"somewhere\"",
        )]);
        has(&f.errors(), "queues.support.overflow: \"somewhere\" must be \"queue:<name>\", \"voicemail:<mailbox>\" or \"number:<dial string>\"");
    }

    #[test]
    fn the_rtp_range_must_not_be_empty_or_inverted() {
        let f = Fixture::new(&[("switchboard.toml", "port_max = 20000", "port_max = 9000")]);
        let line = shipped_line("switchboard.toml", "port_min = ");
        has(
            &f.errors(),
            &format!("switchboard.toml:{line}: media.port_min: the RTP port range 10000–9000 is empty or inverted"),
        );
    }

    #[test]
    fn prompts_must_exist_and_be_8k_mono() {
        let f = Fixture::new(&[(
            "queues.toml",
            "music = \"prompts/moh.wav\"",
            "music = \"prompts/mho.wav\"",
        )]);
        has(&f.errors(), "queues.toml:25: queues.support.music:");
        has(&f.errors(), "mho.wav");
        // A 16 kHz file: refused with the reason and how to convert it.
        let f = Fixture::new(&[]);
        let spec = hound::WavSpec {
            channels: 1,
            sample_rate: 16_000,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        let mut w = hound::WavWriter::create(f.0.join("prompts/moh.wav"), spec).unwrap();
        w.write_sample(0i16).unwrap();
        w.finalize().unwrap();
        let e = f.errors();
        has(&e, "queues.support.music:");
        has(&e, "sample rate is 16000 Hz");
        has(&e, "sox in.wav -r 8000 -c 1 -b 16 out.wav");
    }

    #[test]
    fn strategies_record_policies_trunks_and_unknown_keys_are_checked() {
        let f = Fixture::new(&[(
            "queues.toml",
            "strategy = \"longest-idle\"",
            "strategy = \"longest-idel\"",
        )]);
        has(&f.errors(), "queues.toml:22: queues.support.strategy: unknown strategy \"longest-idel\"; did you mean \"longest-idle\"?");
        let f = Fixture::new(&[("queues.toml", "record = \"always\"", "record = \"often\"")]);
        has(
            &f.errors(),
            "queues.support.record: \"often\" is not \"always\", \"never\" or a percentage",
        );
        let f = Fixture::new(&[(
            "switchboard.toml",
            "# [trunks.carrier]",
            "[trunks.carrier]\naddresses = [\"198.51.100.300\"]\n",
        )]);
        let e = f.errors();
        has(
            &e,
            "trunks.carrier.addresses: \"198.51.100.300\" is not an IP address",
        );
        has(
            &e,
            "trunks.carrier.numbers: a trunk must list the numbers it may call",
        );
        let f = Fixture::new(&[("queues.toml", "ring_timeout = 15", "ring_timout = 15")]);
        let e = f.errors();
        has(&e, "queues.toml:23");
        has(&e, "unknown field `ring_timout`");
    }

    /// The worked example of docs/configuration.md passes the check as written.
    #[test]
    fn the_documented_multilingual_help_desk_is_valid() {
        let doc = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/configuration.md"),
        )
        .unwrap();
        let example = &doc[doc.find("## Worked example").unwrap()..];
        let blocks: Vec<&str> = example
            .split("```toml\n")
            .skip(1)
            .map(|b| b.split("```").next().unwrap())
            .collect();
        assert_eq!(blocks.len(), 3);
        let f = Fixture::new(&[
            ("queues.toml", "", blocks[0]),
            ("agents.toml", "", blocks[1]),
            ("ivr.toml", "", blocks[2]),
            // As the example says: the demo agent login names one of its agents.
            ("users.toml", "agent = \"1001\"", "agent = \"Ana\""),
        ]);
        assert_eq!(f.errors(), "");
        let c = crate::config::load(&f.0, None).unwrap();
        let english = c
            .callcenter
            .queues
            .iter()
            .find(|q| q.acd.name == "english")
            .unwrap();
        assert_eq!(english.acd.escalation.len(), 1);
        assert_eq!(english.acd.escalation[0].lower_by, 3);
        let sup = c
            .callcenter
            .queues
            .iter()
            .find(|q| q.acd.name == "supervisors")
            .unwrap();
        assert_eq!(sup.priority, 5);
        assert_eq!(sup.record, RecordPolicy::Sample(10));
    }

    #[test]
    fn escalation_steps_must_widen_step_by_step() {
        let f = Fixture::new(&[(
            "queues.toml",
            "record = \"always\"",
            "record = \"always\"\npriority = 12\nescalation = [{ after = 60, lower_by = 3 }, { after = 30, lower_by = 1 }]",
        )]);
        let e = f.errors();
        has(
            &e,
            "queues.support.escalation[1]: after = 30 must be later than the previous step (60)",
        );
        has(&e, "queues.support.escalation[1]: lower_by must not shrink");
        has(&e, "queues.support.priority: call priority must be 0–9");
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let f = Fixture::new(&[
            (
                "queues.toml",
                "strategy = \"longest-idle\"",
                "strategy = \"fastest\"",
            ),
            ("agents.toml", "user = \"1003\"", "user = \"9999\""),
            ("switchboard.toml", "port_max = 20000", "port_max = 100"),
        ]);
        let e = f.errors();
        assert_eq!(e.lines().count(), 3, "{e}");
    }

    /// A file that does not parse is one error with its line; the files that refer to it are
    /// still checked, but not against it (no "unknown queue" for every agent because
    /// queues.toml is broken).
    #[test]
    fn a_file_that_does_not_parse_is_one_error_without_follow_on_errors() {
        let f = Fixture::new(&[("queues.toml", "ring_timeout = 15", "ring_timeout = = 15")]);
        let e = f.errors();
        assert_eq!(e.lines().count(), 1, "{e}");
        has(&e, "queues.toml:23: ");
        // The same with an unknown key: the file does not fit, and is one error.
        let f = Fixture::new(&[("queues.toml", "ring_timeout = 15", "ring_timout = 15")]);
        let e = f.errors();
        assert_eq!(e.lines().count(), 1, "{e}");
        has(&e, "queues.toml:23: unknown field `ring_timout`");
        // A broken agents.toml: one error, not one per skill that queues require.
        let f = Fixture::new(&[("agents.toml", "[agents.1003]", "[agents.1003")]);
        let e = f.errors();
        assert_eq!(e.lines().count(), 1, "{e}");
        has(&e, "agents.toml:25: ");
        // A broken users.toml: no "unknown user" for every agent.
        let f = Fixture::new(&[(
            "users.toml",
            "password = \"demo1004\"",
            "password = demo1004",
        )]);
        let e = f.errors();
        assert_eq!(e.lines().count(), 1, "{e}");
        has(&e, "users.toml:");
        // A broken switchboard.toml: the other files are still checked on their own.
        let f = Fixture::new(&[
            ("switchboard.toml", "[media]", "[media"),
            (
                "agents.toml",
                "queues = [\"support\"]",
                "queues = [\"suport\"]",
            ),
        ]);
        let e = f.errors();
        assert_eq!(e.lines().count(), 2, "{e}");
        let media_line = shipped_line("switchboard.toml", "[media]");
        has(&e, &format!("switchboard.toml:{media_line}: "));
        has(
            &e,
            "agents.toml:16: agents.1001.queues[0]: unknown queue \"suport\"",
        );
        // Several syntax errors in one file: the first one, once.
        let f = Fixture::new(&[
            ("queues.toml", "ring_timeout = 15", "ring_timeout = "),
            (
                "queues.toml",
                "announce_every = 30",
                "announce_every = = 30",
            ),
        ]);
        let e = f.errors();
        assert_eq!(e.lines().count(), 1, "{e}");
        has(&e, "queues.toml:23: ");
    }

    #[test]
    fn an_agent_skill_no_queue_asks_for_is_a_warning_with_a_suggestion() {
        let f = Fixture::new(&[(
            "agents.toml",
            "skills = { english = 5 }",
            "skills = { englsh = 5 }",
        )]);
        assert_eq!(f.errors(), "", "a warning, not an error");
        assert_eq!(
            f.warnings().lines().collect::<Vec<_>>(),
            [format!(
                "{}: agents.1001.skills.englsh: no queue asks for this skill; did you mean \"english\"?",
                f.0.join("agents.toml:15").display()
            )]
        );
        // Case does not hide a near miss; a skill like no other gets no suggestion.
        let f = Fixture::new(&[(
            "agents.toml",
            "skills = { english = 5 }",
            "skills = { English = 5, english = 5,\n  french = 2 }",
        )]);
        let w = f.warnings();
        assert_eq!(w.lines().count(), 2, "{w}");
        has(&w, "agents.toml:15: agents.1001.skills.English: no queue asks for this skill; did you mean \"english\"?\n");
        has(
            &w,
            "agents.toml:16: agents.1001.skills.french: no queue asks for this skill\n",
        );
        // An optional skill is asked for too.
        let f = Fixture::new(&[
            (
                "agents.toml",
                "skills = { english = 5 }",
                "skills = { english = 5, vip = 1 }",
            ),
            (
                "queues.toml",
                "required_skills = [\"english\"]",
                "required_skills = [\"english\", { skill = \"vip\", optional = true }]",
            ),
        ]);
        assert_eq!(f.warnings(), "");
    }

    #[test]
    fn suggestions_find_near_misses_only() {
        let c = ["spanish", "english", "billing"];
        assert_eq!(suggest("spansh", c.iter().copied()), Some("spanish"));
        assert_eq!(suggest("englsh", c.iter().copied()), Some("english"));
        assert_eq!(suggest("french", c.iter().copied()), None);
        assert_eq!(suggest("SPANISH", c.iter().copied()), Some("spanish"));
        // As close as each other: the first by name, whatever the order given.
        assert_eq!(suggest("bat", ["cat", "bar"].into_iter()), Some("bar"));
        assert_eq!(suggest("bat", ["bar", "cat"].into_iter()), Some("bar"));
    }
}
