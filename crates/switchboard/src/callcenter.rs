//! The call-center parts of the config directory: `queues.toml`, `agents.toml`, and the
//! `[media]`, `[calls]` and `[trunks.*]` tables of `switchboard.toml`. Read once, validated
//! as a whole (every problem reported, each naming the file, line and key), and turned into
//! the typed settings of the `pbx` and `media` crates.

use std::collections::{BTreeMap, HashMap, HashSet};
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

use crate::config::{locate, toml_error, ConfigError, Overrides};

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
    addresses: Vec<String>,
    #[serde(default)]
    numbers: Vec<String>,
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
    pub(crate) challenge: bool,
    pub(crate) extensions: bool,
    pub(crate) ring_timeout: Duration,
    pub(crate) features: FeatureCodes,
    pub(crate) queues: Vec<QueueSetup>,
    pub(crate) agents: Vec<AgentSetup>,
    pub(crate) announcements: Announcements,
    pub(crate) recording: pbx::recorder::service::RecorderConfig,
    pub(crate) recording_seed: u64,
    pub(crate) recording_pause_key: String,
}

struct Errors<'a> {
    file: PathBuf,
    text: &'a str,
    /// Environment overrides (switchboard.toml only; empty for the other files).
    overrides: &'a Overrides,
    out: &'a mut Vec<ConfigError>,
}

impl Errors<'_> {
    fn err(&mut self, table: &str, key: &str, reason: impl Into<String>) {
        let path = match (table.is_empty(), key.is_empty()) {
            (true, _) => key.to_owned(),
            (false, true) => table.to_owned(),
            (false, false) => format!("{table}.{key}"),
        };
        let (file, line) = locate(&self.file, self.text, self.overrides, table, key);
        self.out.push(ConfigError {
            file,
            line,
            key: Some(path),
            reason: reason.into(),
        });
    }
}

/// The closest name within edit distance 2, for "did you mean".
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
    candidates
        .map(|c| (distance(word, c), c))
        .filter(|(d, _)| *d <= 2)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

fn did_you_mean<'a>(word: &str, candidates: impl Iterator<Item = &'a str>) -> String {
    suggest(word, candidates).map_or(String::new(), |s| format!("; did you mean \"{s}\"?"))
}

fn read_optional(path: &Path, out: &mut Vec<ConfigError>) -> Option<String> {
    match std::fs::read_to_string(path) {
        Ok(t) => Some(t),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => {
            out.push(ConfigError {
                file: path.to_owned(),
                line: None,
                key: None,
                reason: format!("cannot read: {e}"),
            });
            None
        }
    }
}

fn load_prompt(
    dir: &Path,
    rel: &str,
    e: &mut Errors<'_>,
    table: &str,
    key: &str,
    cache: &mut HashMap<PathBuf, Prompt>,
) -> Option<Prompt> {
    let path = dir.join(rel);
    if let Some(p) = cache.get(&path) {
        return Some(p.clone());
    }
    match Prompt::load(&path) {
        Ok(p) => {
            cache.insert(path, p.clone());
            Some(p)
        }
        Err(err) => {
            e.err(table, key, err.to_string());
            None
        }
    }
}

/// Validate and build the call-center settings. `users` are the SIP accounts of users.toml;
/// `server_text` is switchboard.toml's text (for line numbers).
pub(crate) fn build(
    dir: &Path,
    tables: ServerTables,
    server_text: &str,
    overrides: &Overrides,
    users: &HashSet<String>,
    sip_advertise_host: Option<&str>,
    out: &mut Vec<ConfigError>,
) -> Option<CallCenter> {
    let before = out.len();
    let server_path = dir.join("switchboard.toml");
    let no_overrides = Overrides::new();
    let mut s = Errors {
        file: server_path,
        text: server_text,
        overrides,
        out,
    };

    // [media]
    let m = &tables.media;
    let bind: IpAddr = match m.bind.parse() {
        Ok(a) => a,
        Err(_) => {
            s.err(
                "media",
                "bind",
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
            s.err(
                "media",
                "advertise",
                format!("\"{advertise_text}\" is not an IPv4 address (phones send RTP to it)"),
            );
            Ipv4Addr::LOCALHOST
        }
    };
    if m.port_min < 1024 || m.port_min >= m.port_max {
        s.err(
            "media",
            "port_min",
            format!(
                "the RTP port range {}–{} is empty or inverted (port_min must be below port_max, and at least 1024)",
                m.port_min, m.port_max
            ),
        );
    } else if m.port_max - m.port_min < 3 {
        s.err(
            "media",
            "port_max",
            "the RTP range must hold at least two port pairs",
        );
    }
    if m.timeout == 0 {
        s.err("media", "timeout", "must be at least 1 second");
    }

    // [calls]
    let c = &tables.calls;
    let codes = [
        ("login", &c.login),
        ("logout", &c.logout),
        ("pause", &c.pause),
    ];
    for (k, v) in codes {
        if v.is_empty() || v.contains(char::is_whitespace) {
            s.err(
                "calls",
                k,
                "a feature code must be a non-empty dial string such as \"*71\"",
            );
        }
    }
    if c.ring_timeout == 0 {
        s.err("calls", "ring_timeout", "must be at least 1 second");
    }

    // [recording]
    let rec = &tables.recording;
    if rec.dir.trim().is_empty() {
        s.err("recording", "dir", "must name a directory");
    }
    if rec.flush_every == 0 || rec.flush_every > 60 {
        s.err(
            "recording",
            "flush_every",
            "must be 1–60 seconds (how much audio a crash may cost)",
        );
    }
    if rec
        .pause_key
        .chars()
        .any(|c| !c.is_ascii_digit() && c != '*' && c != '#')
    {
        s.err(
            "recording",
            "pause_key",
            "must be DTMF keys (0-9, *, #) or empty to disable",
        );
    }
    let recording_dir = {
        let d = PathBuf::from(&rec.dir);
        if d.is_absolute() {
            d
        } else {
            // Relative to the working directory, like the shipped "data/recordings".
            std::env::current_dir().map(|c| c.join(&d)).unwrap_or(d)
        }
    };

    // [trunks.*]
    let mut trunks = Vec::new();
    let mut trunk_rules = Vec::new();
    for (name, t) in &tables.trunks {
        let table = format!("trunks.{name}");
        let mut addrs = Vec::new();
        if t.addresses.is_empty() {
            s.err(
                &table,
                "addresses",
                "a trunk needs at least one source address",
            );
        }
        for a in &t.addresses {
            match a.parse::<IpAddr>() {
                Ok(ip) => addrs.push(ip),
                Err(_) => s.err(&table, "addresses", format!("\"{a}\" is not an IP address")),
            }
        }
        if t.numbers.is_empty() {
            s.err(
                &table,
                "numbers",
                "a trunk must list the numbers it may call (e.g. [\"600\"])",
            );
        }
        trunks.push(Trunk {
            name: name.clone(),
            addresses: addrs,
            numbers: t.numbers.clone(),
        });
        trunk_rules.push(TrunkRule {
            trunk: name.clone(),
            numbers: t.numbers.clone(),
        });
    }

    // Announcement prompts (optional directory).
    let mut cache = HashMap::new();
    let mut announcements = Announcements::default();
    if let Some(p) = &c.prompts {
        let pdir = dir.join(p);
        let mut get =
            |f: &str, s: &mut Errors<'_>| load_prompt(&pdir, f, s, "calls", "prompts", &mut cache);
        announcements.position = get("position.wav", &mut s);
        announcements.wait = get("wait.wav", &mut s);
        announcements.minutes = get("minutes.wav", &mut s);
        for n in 0..=20 {
            match get(&format!("{n}.wav"), &mut s) {
                Some(p) => announcements.numbers.push(p),
                None => break,
            }
        }
    }

    // queues.toml
    let queues_path = dir.join("queues.toml");
    let queues_text = read_optional(&queues_path, s.out).unwrap_or_default();
    let queues_file: QueuesFile = match toml::from_str(&queues_text) {
        Ok(q) => q,
        Err(e) => {
            s.out.push(toml_error(&queues_path, &queues_text, e));
            QueuesFile::default()
        }
    };
    let agents_path = dir.join("agents.toml");
    let agents_text = read_optional(&agents_path, s.out).unwrap_or_default();
    let agents_file: AgentsFile = match toml::from_str(&agents_text) {
        Ok(a) => a,
        Err(e) => {
            s.out.push(toml_error(&agents_path, &agents_text, e));
            AgentsFile::default()
        }
    };
    // Skills are whatever agents have; a queue requiring a skill no agent has is a typo.
    let known_skills: HashSet<&str> = agents_file
        .agents
        .values()
        .flat_map(|a| a.skills.keys().map(String::as_str))
        .collect();
    let queue_names: HashSet<&str> = queues_file.queues.keys().map(String::as_str).collect();

    let out = s.out;
    let mut q = Errors {
        file: queues_path.clone(),
        text: &queues_text,
        overrides: &no_overrides,
        out,
    };
    let mut queues = Vec::new();
    let mut numbers: HashMap<&str, String> = HashMap::new();
    for (name, e) in &queues_file.queues {
        let table = format!("queues.{name}");
        if e.number.is_empty()
            || !e
                .number
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"*#+-_.".contains(&b))
        {
            q.err(&table, "number", "must be a dial string such as \"600\"");
        }
        if users.contains(&e.number) {
            q.err(
                &table,
                "number",
                format!("\"{}\" is also a user in users.toml", e.number),
            );
        }
        if let Some(other) = numbers.insert(&e.number, name.clone()) {
            q.err(
                &table,
                "number",
                format!("\"{}\" is also the number of queue \"{other}\"", e.number),
            );
        }
        for (code, value) in codes {
            if e.number == *value {
                q.err(
                    &table,
                    "number",
                    format!("\"{}\" is the {code} feature code", e.number),
                );
            }
        }
        let mut acd_cfg = pbx::acd::QueueConfig::named(name.clone());
        if let Some(st) = &e.strategy {
            match parse_strategy(st) {
                Some(x) => acd_cfg.strategy = x,
                None => q.err(
                    &table,
                    "strategy",
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
            let key = format!("required_skills[{i}]");
            if !known_skills.contains(skill.as_str()) {
                q.err(
                    &table,
                    &key,
                    format!(
                        "unknown skill \"{skill}\" (no agent has it){}",
                        did_you_mean(&skill, known_skills.iter().copied())
                    ),
                );
            }
            if !(1..=10).contains(&min) {
                q.err(&table, &key, format!("min {min} is outside 1–10"));
            }
            acd_cfg.skills.push(SkillRequirement {
                skill,
                min,
                optional,
            });
        }
        if let Some(t) = e.ring_timeout {
            if t == 0 {
                q.err(&table, "ring_timeout", "must be at least 1 second");
            }
            acd_cfg.ring_timeout = Some(Duration::from_secs(t));
        }
        if let Some(w) = e.wrap_up {
            acd_cfg.wrap_up = Duration::from_secs(w);
        }
        if let Some(w) = e.max_wait {
            acd_cfg.max_wait = (w > 0).then(|| Duration::from_secs(w));
        }
        if let Some(s) = e.service_level {
            acd_cfg.service_level = Duration::from_secs(s);
        }
        if let Some(a) = e.auto_pause_after {
            acd_cfg.auto_pause_after = a;
        }
        let mut prev: Option<&EscalationEntry> = None;
        for (i, step) in e.escalation.iter().enumerate() {
            let key = format!("escalation[{i}]");
            if let Some(p) = prev {
                if step.after <= p.after {
                    q.err(
                        &table,
                        &key,
                        format!(
                            "after = {} must be later than the previous step ({})",
                            step.after, p.after
                        ),
                    );
                }
                if step.lower_by < p.lower_by {
                    q.err(
                        &table,
                        &key,
                        "lower_by must not shrink from one step to the next (give the total)",
                    );
                }
                if p.drop_optional && !step.drop_optional {
                    q.err(
                        &table,
                        &key,
                        "once optional skills are dropped, later steps must drop them too",
                    );
                }
            }
            if step.lower_by > 9 {
                q.err(&table, &key, "lower_by must be 0–9");
            }
            acd_cfg.escalation.push(pbx::acd::EscalationStep {
                after: Duration::from_secs(step.after),
                lower_by: step.lower_by,
                drop_optional: step.drop_optional,
            });
            prev = Some(step);
        }
        if e.priority.is_some_and(|p| p > 9) {
            q.err(
                &table,
                "priority",
                "call priority must be 0–9 (9 is served first)",
            );
        }
        for (key, v, slot) in [
            ("join_empty", &e.join_empty, &mut acd_cfg.join_empty),
            (
                "leave_when_empty",
                &e.leave_when_empty,
                &mut acd_cfg.leave_when_empty,
            ),
        ] {
            if let Some(v) = v {
                match v.as_str() {
                    "never" => *slot = EmptyPolicy::Never,
                    "no-agents-logged-in" => *slot = EmptyPolicy::NoAgentsLoggedIn,
                    "no-agents-available" => *slot = EmptyPolicy::NoAgentsAvailable,
                    other => q.err(
                        &table,
                        key,
                        format!("\"{other}\" is not one of \"never\", \"no-agents-logged-in\", \"no-agents-available\""),
                    ),
                }
            }
        }
        if let Some(o) = &e.overflow {
            match o.split_once(':') {
                Some(("queue", target)) => {
                    if !queue_names.contains(target) {
                        q.err(
                            &table,
                            "overflow",
                            format!(
                                "unknown queue \"{target}\"{}",
                                did_you_mean(target, queue_names.iter().copied())
                            ),
                        );
                    } else if target == name {
                        q.err(&table, "overflow", "a queue cannot overflow into itself");
                    }
                    acd_cfg.overflow = Some(OverflowTarget::Queue(target.to_owned()));
                }
                Some(("number", target)) => {
                    acd_cfg.overflow = Some(OverflowTarget::External(target.to_owned()))
                }
                _ => q.err(
                    &table,
                    "overflow",
                    format!("\"{o}\" must be \"queue:<name>\" or \"number:<dial string>\""),
                ),
            }
        }
        let greeting = e
            .greeting
            .as_deref()
            .and_then(|p| load_prompt(dir, p, &mut q, &table, "greeting", &mut cache));
        let music = e
            .music
            .as_deref()
            .and_then(|p| load_prompt(dir, p, &mut q, &table, "music", &mut cache));
        if e.announce_every == Some(0) {
            q.err(
                &table,
                "announce_every",
                "must be at least 1 second (leave it out for never)",
            );
        }
        let record = match e.record.as_deref() {
            None | Some("never") => RecordPolicy::Never,
            Some("always") => RecordPolicy::Always,
            Some(p) => {
                match p
                    .strip_suffix('%')
                    .and_then(|n| n.trim().parse::<u8>().ok())
                {
                    Some(0) => RecordPolicy::Never,
                    Some(100) => RecordPolicy::Always,
                    Some(n) if n < 100 => RecordPolicy::Sample(n),
                    _ => {
                        q.err(
                        &table,
                        "record",
                        format!("\"{p}\" is not \"always\", \"never\" or a percentage such as \"10%\""),
                    );
                        RecordPolicy::Never
                    }
                }
            }
        };
        queues.push(QueueSetup {
            number: e.number.clone(),
            acd: acd_cfg,
            greeting,
            music,
            announce_every: e.announce_every.filter(|&s| s > 0).map(Duration::from_secs),
            record,
            priority: e.priority.unwrap_or(0).min(9),
        });
    }
    // Overflow cycles: follow each chain of queue overflows.
    let next: HashMap<&str, &str> = queues_file
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
                q.err(
                    &format!("queues.{start}"),
                    "overflow",
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

    let out = q.out;
    let mut a = Errors {
        file: agents_path,
        text: &agents_text,
        overrides: &no_overrides,
        out,
    };
    let mut agents = Vec::new();
    let mut agent_users: HashMap<&str, &str> = HashMap::new();
    for (key, e) in &agents_file.agents {
        let table = format!("agents.{key}");
        if !users.contains(&e.user) {
            a.err(
                &table,
                "user",
                format!(
                    "unknown user \"{}\" (not in users.toml){}",
                    e.user,
                    did_you_mean(&e.user, users.iter().map(String::as_str))
                ),
            );
        }
        if let Some(other) = agent_users.insert(&e.user, key) {
            a.err(
                &table,
                "user",
                format!("user \"{}\" is already agent \"{other}\"", e.user),
            );
        }
        let mut acd_cfg = pbx::acd::AgentConfig {
            name: e.name.clone().unwrap_or_else(|| key.clone()),
            ..pbx::acd::AgentConfig::default()
        };
        for (skill, level) in &e.skills {
            if !(1..=10).contains(level) {
                a.err(
                    &table,
                    "skills",
                    format!("{skill} = {level}: proficiency must be 1–10"),
                );
            }
            acd_cfg.skills.push(AgentSkill::new(skill.clone(), *level));
        }
        for (i, m) in e.queues.iter().enumerate() {
            let (queue, priority) = match m {
                MembershipEntry::Name(q) => (q.clone(), 0),
                MembershipEntry::Full { queue, priority } => (queue.clone(), *priority),
            };
            if !queue_names.contains(queue.as_str()) {
                a.err(
                    &table,
                    &format!("queues[{i}]"),
                    format!(
                        "unknown queue \"{queue}\"{}",
                        did_you_mean(&queue, queue_names.iter().copied())
                    ),
                );
            }
            acd_cfg.queues.push(QueueMembership { queue, priority });
        }
        agents.push(AgentSetup {
            acd: acd_cfg,
            user: e.user.clone(),
            login_on_start: e.login_on_start,
        });
    }

    if a.out.len() > before {
        return None;
    }
    // A queue no agent can take calls from is legal (agents may be added by a reload) but
    // almost always a mistake: its callers would wait for nobody.
    let mut warnings = Vec::new();
    let mut w = Errors {
        file: queues_path.clone(),
        text: &queues_text,
        overrides: &no_overrides,
        out: &mut warnings,
    };
    for (key, setup) in queues_file.queues.keys().zip(&queues) {
        if !agents.iter().any(|agent| serves(&agent.acd, &setup.acd)) {
            let rule = match setup.acd.join_empty {
                pbx::acd::EmptyPolicy::Never => {
                    "callers join it and wait (join_empty = \"never\") until max_wait or overflow"
                }
                _ => "callers are turned away by its join_empty rule",
            };
            w.err(
                &format!("queues.{key}"),
                "",
                format!(
                    "no agent serves this queue (none lists it in agents.toml with the skills it \
                     requires): {rule}"
                ),
            );
        }
    }
    Some(CallCenter {
        warnings,
        media: MediaConfig {
            bind,
            advertise,
            port_min: m.port_min,
            port_max: m.port_max,
            timeout: Duration::from_secs(m.timeout),
            ..MediaConfig::default()
        },
        trunks,
        trunk_rules,
        challenge: c.challenge,
        extensions: c.extensions,
        ring_timeout: Duration::from_secs(c.ring_timeout),
        features: FeatureCodes {
            login: c.login.clone(),
            logout: c.logout.clone(),
            pause: c.pause.clone(),
        },
        queues,
        agents,
        announcements,
        recording: pbx::recorder::service::RecorderConfig {
            dir: recording_dir,
            flush_every: Duration::from_secs(tables.recording.flush_every),
            ..pbx::recorder::service::RecorderConfig::default()
        },
        recording_seed: tables.recording.seed,
        recording_pause_key: tables.recording.pause_key.clone(),
    })
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
            ] {
                std::fs::copy(shipped.join(f), dir.join(f)).unwrap();
            }
            for e in std::fs::read_dir(shipped.join("prompts")).unwrap() {
                let e = e.unwrap();
                std::fs::copy(e.path(), dir.join("prompts").join(e.file_name())).unwrap();
            }
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

    #[test]
    fn the_shipped_config_is_clean() {
        assert_eq!(Fixture::new(&[]).errors(), "");
    }

    #[test]
    fn a_queue_nobody_serves_is_a_warning_naming_file_line_and_queue() {
        assert_eq!(Fixture::new(&[]).warnings(), "");
        let f = Fixture::new(&[(
            "queues.toml",
            "record = \"always\"",
            "record = \"always\"\n\n[queues.billing]\nnumber = \"601\"\n",
        )]);
        assert_eq!(f.errors(), "", "a warning, not an error");
        has(
            &f.warnings(),
            "queues.toml:30: queues.billing: no agent serves this queue",
        );
        // Members without the required skill do not serve it either, unless an escalation
        // step relaxes the requirement far enough.
        let f = Fixture::new(&[(
            "queues.toml",
            "record = \"always\"",
            "record = \"always\"\nrequired_skills = [{ skill = \"english\", min = 8 }]",
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
                "record = \"always\"",
                "record = \"always\"\nrequired_skills = [\"english\", \"spansh\"]",
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
        has(&f.errors(), "queues.support.overflow: \"somewhere\" must be \"queue:<name>\" or \"number:<dial string>\"");
    }

    #[test]
    fn the_rtp_range_must_not_be_empty_or_inverted() {
        let f = Fixture::new(&[("switchboard.toml", "port_max = 20000", "port_max = 9000")]);
        has(
            &f.errors(),
            "switchboard.toml:68: media.port_min: the RTP port range 10000–9000 is empty or inverted",
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
        assert_eq!(blocks.len(), 2);
        let f = Fixture::new(&[
            ("queues.toml", "", blocks[0]),
            ("agents.toml", "", blocks[1]),
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

    #[test]
    fn suggestions_find_near_misses_only() {
        let c = ["spanish", "english", "billing"];
        assert_eq!(suggest("spansh", c.iter().copied()), Some("spanish"));
        assert_eq!(suggest("englsh", c.iter().copied()), Some("english"));
        assert_eq!(suggest("french", c.iter().copied()), None);
    }
}
