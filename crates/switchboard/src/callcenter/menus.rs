//! `ivr.toml`: IVR menus, `[menus.NAME]`, checked against the queues, users and schedules of
//! the other files, and turned into [`pbx::Menu`]s. Prompts are WAV files (`prompt`) or text
//! spoken by the offline synthesizer (`say`, see [`crate::speech`]).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use pbx::media::prompt::Prompt;
use pbx::{Choice, Menu, MenuHours, MenuKind, Step};
use serde::Deserialize;

use super::{did_you_mean, number_problems, Known, Prompts};
use crate::config::{KeyPath, Report};
use crate::speech::{self, Voice};

/// ivr.toml as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct MenusFile {
    #[serde(default)]
    speech: SpeechEntry,
    #[serde(default)]
    pub(super) menus: BTreeMap<String, MenuEntry>,
}

/// `[speech]`: the synthesizer's voice for `say` prompts.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct SpeechEntry {
    voice: String,
    speed: u32,
}

impl Default for SpeechEntry {
    fn default() -> Self {
        let v = Voice::default();
        SpeechEntry {
            voice: v.name,
            speed: v.speed,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct MenuEntry {
    pub(super) number: Option<String>,
    prompt: Option<String>,
    say: Option<String>,
    #[serde(default)]
    choices: BTreeMap<String, ChoiceEntry>,
    collect: Option<String>,
    score: Option<u8>,
    min_digits: Option<usize>,
    max_digits: Option<usize>,
    end_key: Option<String>,
    next: Option<String>,
    timeout: Option<u64>,
    tries: Option<u32>,
    invalid: Option<String>,
    invalid_say: Option<String>,
    on_fail: Option<String>,
    schedule: Option<String>,
    when_closed: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum ChoiceEntry {
    Go(String),
    Full {
        go: String,
        #[serde(default)]
        set: BTreeMap<String, String>,
    },
}

/// The keys a phone can send.
fn is_key(c: char) -> bool {
    matches!(c, '0'..='9' | '*' | '#' | 'A'..='D')
}

/// Longest account number (or other digits) a menu may collect.
const MAX_DIGITS: usize = 32;

/// Where a step may appear: a choice may repeat its menu; nothing else may.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Place {
    Choice,
    Other,
}

struct Checker<'a, 'r, 'f> {
    r: &'a mut Report<'r>,
    known: &'a Known<'f>,
    prompts: &'a mut Prompts,
    voice: Voice,
    /// Menu names of the file.
    menus: Vec<String>,
}

impl Checker<'_, '_, '_> {
    /// A step such as `queue:sales`, or `None` (reported) when it is not one.
    fn step(&mut self, key: &KeyPath, text: &str, place: Place) -> Option<Step> {
        let (kind, arg) = text.split_once(':').unwrap_or((text, ""));
        let arg = arg.trim();
        let step = match (kind.trim(), arg) {
            ("hangup", "") => Step::HangUp,
            ("repeat", "") if place == Place::Choice => Step::Repeat,
            ("repeat", "") => {
                self.r.err(
                    key,
                    "\"repeat\" is for a choice (here it would play the menu for ever)",
                );
                return None;
            }
            ("queue", q) if !q.is_empty() => {
                if let Some(names) = &self.known.queues {
                    if !names.contains(q) {
                        self.r.err(
                            key,
                            format!(
                                "unknown queue \"{q}\" (a [queues.NAME] of queues.toml){}",
                                did_you_mean(q, names.iter().copied())
                            ),
                        );
                    }
                }
                Step::Queue(q.to_owned())
            }
            ("menu", m) if !m.is_empty() => {
                if !self.menus.iter().any(|n| n == m) {
                    self.r.err(
                        key,
                        format!(
                            "unknown menu \"{m}\"{}",
                            did_you_mean(m, self.menus.iter().map(String::as_str))
                        ),
                    );
                }
                Step::Menu(m.to_owned())
            }
            ("extension", u) if !u.is_empty() => {
                if self.known.users.is_some_and(|users| !users.contains(u)) {
                    self.r
                        .err(key, format!("\"{u}\" is not a user in users.toml"));
                }
                Step::Extension(u.to_owned())
            }
            ("announce", file) if !file.is_empty() => {
                Step::Announce(self.prompts.load(self.r, key, Path::new(file))?)
            }
            ("say", words) if !words.is_empty() => Step::Announce(self.say(key, "say", words)?),
            ("callback", q) if !q.is_empty() => {
                if let Some(with) = &self.known.callback_queues {
                    if !with.contains(q) {
                        self.r.err(
                            key,
                            format!(
                                "queue \"{q}\" has no [queues.{q}.callback] (or is not a queue)"
                            ),
                        );
                    }
                }
                Step::Callback(q.to_owned())
            }
            ("voicemail", mailbox) if !mailbox.is_empty() => {
                super::check_mailbox(self.r, key, mailbox, self.known);
                Step::Voicemail(mailbox.to_owned())
            }
            _ => {
                self.r.err(
                    key,
                    format!(
                        "\"{text}\" is not a step: \"queue:<name>\", \"menu:<name>\", \
                         \"extension:<user>\", \"announce:<wav file>\", \"say:<text>\", \
                         \"voicemail:<mailbox>\", \"callback:<queue>\", \"hangup\"{}",
                        if place == Place::Choice {
                            " or \"repeat\""
                        } else {
                            ""
                        }
                    ),
                );
                return None;
            }
        };
        Some(step)
    }

    fn say(&mut self, key: &KeyPath, name: &str, text: &str) -> Option<Prompt> {
        match speech::say(name, text, &self.voice) {
            Ok(p) => Some(p),
            Err(e) => {
                self.r.err(key, e);
                None
            }
        }
    }

    /// `prompt` (a WAV file) or `say` (text): exactly one.
    fn prompt_of(
        &mut self,
        t: &KeyPath,
        name: &str,
        (file_key, file): (&str, &Option<String>),
        (say_key, say): (&str, &Option<String>),
        required: bool,
    ) -> Option<Prompt> {
        match (file, say) {
            (Some(_), Some(_)) => {
                self.r.err(
                    &t.key(say_key),
                    format!("give {file_key} (a WAV file) or {say_key} (text), not both"),
                );
                None
            }
            (Some(f), None) => self.prompts.load(self.r, &t.key(file_key), Path::new(f)),
            (None, Some(text)) => self.say(&t.key(say_key), name, text),
            (None, None) => {
                if required {
                    self.r.err(
                        t,
                        format!("needs {file_key} (a WAV file) or {say_key} (text to speak)"),
                    );
                }
                None
            }
        }
    }

    fn menu(&mut self, name: &str, e: &MenuEntry) -> Option<Menu> {
        let t = KeyPath::top("menus").key(name);
        if let Some(n) = &e.number {
            for problem in number_problems(n, self.known) {
                self.r.err(&t.key("number"), problem);
            }
        }
        let prompt = self.prompt_of(&t, name, ("prompt", &e.prompt), ("say", &e.say), true);
        let invalid = self.prompt_of(
            &t,
            "invalid",
            ("invalid", &e.invalid),
            ("invalid_say", &e.invalid_say),
            false,
        );
        let kinds = usize::from(e.collect.is_some())
            + usize::from(!e.choices.is_empty())
            + usize::from(e.score.is_some());
        let kind = match (&e.collect, e.score) {
            _ if kinds > 1 => {
                self.r.err(
                    &t,
                    "a menu offers choices, collects digits or takes a score: only one of them",
                );
                None
            }
            _ if kinds == 0 => {
                self.r.err(
                    &t,
                    "needs [menus.NAME.choices] (key = step), collect = \"<variable>\" or score = <highest score>",
                );
                None
            }
            (Some(var), _) => self.collect(&t, var, e),
            (None, Some(max)) => self.score(&t, max, e),
            (None, None) => self.choices(&t, e),
        };
        if e.collect.is_none() {
            let score = e.score.is_some();
            for k in ["min_digits", "max_digits", "end_key", "next"] {
                if score && k == "next" {
                    continue;
                }
                let given = match k {
                    "min_digits" => e.min_digits.is_some(),
                    "max_digits" => e.max_digits.is_some(),
                    "end_key" => e.end_key.is_some(),
                    _ => e.next.is_some(),
                };
                if given {
                    self.r.err(
                        &t.key(k),
                        if k == "next" {
                            "only for a menu that collects digits or takes a score"
                        } else {
                            "only for a menu that collects digits"
                        },
                    );
                }
            }
        }
        let timeout = match e.timeout {
            Some(0) => {
                self.r.err(&t.key("timeout"), "must be at least 1 second");
                Duration::from_secs(5)
            }
            Some(s) if s > 300 => {
                self.r.err(&t.key("timeout"), "must be at most 300 seconds");
                Duration::from_secs(5)
            }
            Some(s) => Duration::from_secs(s),
            None => Duration::from_secs(5),
        };
        let tries = match e.tries {
            Some(0) => {
                self.r.err(&t.key("tries"), "must be at least 1");
                3
            }
            Some(n) if n > 10 => {
                self.r.err(&t.key("tries"), "must be at most 10");
                3
            }
            Some(n) => n,
            None => 3,
        };
        let on_fail = match &e.on_fail {
            Some(s) => self.step(&t.key("on_fail"), s, Place::Other),
            None => Some(Step::HangUp),
        };
        let hours = self.hours(&t, e);
        Some(Menu {
            name: name.to_owned(),
            number: e.number.clone(),
            prompt: prompt?,
            kind: kind?,
            timeout,
            tries,
            invalid,
            on_fail: on_fail?,
            hours: hours?,
        })
    }

    fn choices(&mut self, t: &KeyPath, e: &MenuEntry) -> Option<MenuKind> {
        let mut out = BTreeMap::new();
        let mut ok = true;
        for (k, c) in &e.choices {
            let key = t.key("choices").key(k);
            let mut chars = k.chars();
            let digit = match (chars.next(), chars.next()) {
                (Some(c), None) if is_key(c.to_ascii_uppercase()) => c.to_ascii_uppercase(),
                _ => {
                    self.r.err(
                        &key,
                        format!("\"{k}\" is not a key: one of 0-9, *, # (or A-D)"),
                    );
                    ok = false;
                    continue;
                }
            };
            let (go, set) = match c {
                ChoiceEntry::Go(g) => (g, Vec::new()),
                ChoiceEntry::Full { go, set } => (
                    go,
                    set.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
                ),
            };
            for (name, _) in &set {
                if !valid_variable(name) {
                    self.r.err(
                        &key.key("set").key(name),
                        "a variable name is letters, digits, - and _",
                    );
                    ok = false;
                }
            }
            match self.step(&key, go, Place::Choice) {
                Some(step) => {
                    out.insert(digit, Choice { step, set });
                }
                None => ok = false,
            }
        }
        ok.then_some(MenuKind::Choice(out))
    }

    fn collect(&mut self, t: &KeyPath, variable: &str, e: &MenuEntry) -> Option<MenuKind> {
        let mut ok = true;
        if !valid_variable(variable) {
            self.r.err(
                &t.key("collect"),
                "a variable name is letters, digits, - and _",
            );
            ok = false;
        }
        let max = e.max_digits.unwrap_or(16);
        let min = e.min_digits.unwrap_or(1);
        if max == 0 || max > MAX_DIGITS {
            self.r
                .err(&t.key("max_digits"), format!("must be 1-{MAX_DIGITS}"));
            ok = false;
        }
        if min == 0 || min > max {
            self.r.err(
                &t.key("min_digits"),
                format!("must be 1 to max_digits ({max})"),
            );
            ok = false;
        }
        let end_key = match e.end_key.as_deref() {
            None => '#',
            Some(k) => {
                let mut chars = k.chars();
                match (chars.next(), chars.next()) {
                    (Some(c), None) if is_key(c) && !c.is_ascii_digit() => c,
                    _ => {
                        self.r.err(
                            &t.key("end_key"),
                            format!("\"{k}\" must be # or * (a digit would end the number)"),
                        );
                        ok = false;
                        '#'
                    }
                }
            }
        };
        let next = match &e.next {
            Some(s) => self.step(&t.key("next"), s, Place::Other),
            None => {
                self.r.err(
                    &t.key("collect"),
                    "a menu that collects digits needs next = \"<step>\" (where the call goes then)",
                );
                None
            }
        };
        let next = next?;
        ok.then(|| MenuKind::Collect {
            variable: variable.to_owned(),
            min_digits: min,
            max_digits: max,
            end_key,
            next,
        })
    }

    /// A survey: one key, 1 to `max`, is the caller's score.
    fn score(&mut self, t: &KeyPath, max: u8, e: &MenuEntry) -> Option<MenuKind> {
        if !(1..=9).contains(&max) {
            self.r
                .err(&t.key("score"), "the highest score a key can give: 1-9");
            return None;
        }
        let next = match &e.next {
            Some(s) => self.step(&t.key("next"), s, Place::Other)?,
            None => Step::HangUp,
        };
        Some(MenuKind::Score { max, next })
    }

    /// `schedule` and `when_closed`: `Some(None)` for always open, `None` after an error.
    fn hours(&mut self, t: &KeyPath, e: &MenuEntry) -> Option<Option<MenuHours>> {
        let Some(sched) = &e.schedule else {
            if e.when_closed.is_some() {
                self.r.err(
                    &t.key("when_closed"),
                    "needs a schedule (the menu is never closed without one)",
                );
                return None;
            }
            return Some(None);
        };
        let schedules = self.known.schedules?;
        let Some(schedule) = schedules.get(sched) else {
            self.r.err(
                &t.key("schedule"),
                format!(
                    "unknown schedule \"{sched}\" (a [schedules.NAME] of schedules.toml){}",
                    did_you_mean(sched, schedules.keys().map(String::as_str))
                ),
            );
            return None;
        };
        let closed = match &e.when_closed {
            Some(s) => self.step(&t.key("when_closed"), s, Place::Other)?,
            None => Step::HangUp,
        };
        Some(Some(MenuHours {
            schedule: schedule.clone(),
            closed,
        }))
    }
}

fn valid_variable(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// Every `[menus.NAME]` of ivr.toml, checked; menu numbers are also checked against
/// `queue_numbers` (number → queue name).
pub(super) fn menus_file(
    r: &mut Report<'_>,
    f: &MenusFile,
    known: &Known<'_>,
    prompts: &mut Prompts,
    queue_numbers: &HashMap<String, String>,
    surveys: &HashSet<String>,
) -> Vec<Arc<Menu>> {
    let voice = Voice {
        name: f.speech.voice.clone(),
        speed: f.speech.speed,
    };
    if voice.name.is_empty()
        || !voice
            .name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_+".contains(&b))
    {
        r.err(
            &KeyPath::top("speech").key("voice"),
            "a voice name such as \"en\" or \"en-us\" (espeak-ng --voices lists them)",
        );
    }
    if !(80..=450).contains(&voice.speed) {
        r.err(
            &KeyPath::top("speech").key("speed"),
            "words per minute, 80-450",
        );
    }
    let names: Vec<String> = f.menus.keys().cloned().collect();
    let mut c = Checker {
        r,
        known,
        prompts,
        voice,
        menus: names,
    };
    let mut numbers: HashMap<&str, &str> = HashMap::new();
    let mut out = Vec::new();
    for (name, e) in &f.menus {
        if let Some(n) = &e.number {
            let key = KeyPath::top("menus").key(name).key("number");
            if let Some(q) = queue_numbers.get(n) {
                c.r.err(&key, format!("\"{n}\" is also the number of queue \"{q}\""));
            }
            if let Some(other) = numbers.insert(n, name) {
                c.r.err(
                    &key,
                    format!("\"{n}\" is also the number of menu \"{other}\""),
                );
            }
        }
        if let Some(m) = c.menu(name, e) {
            out.push(Arc::new(m));
        }
    }
    // A menu no number and no other menu reaches is dead config: say so.
    for (name, e) in &f.menus {
        if e.number.is_some() || surveys.contains(name) {
            continue;
        }
        let reached = out.iter().any(|m| m.name != *name && leads_to(m, name));
        if !reached {
            c.r.warn(
                &KeyPath::top("menus").key(name),
                "no number and no other menu leads here: callers never hear it",
            );
        }
    }
    out
}

/// Whether menu `m` can send a caller to menu `target`.
fn leads_to(m: &Menu, target: &str) -> bool {
    let is = |s: &Step| matches!(s, Step::Menu(n) if n == target);
    let kind = match &m.kind {
        MenuKind::Choice(c) => c.values().any(|c| is(&c.step)),
        MenuKind::Collect { next, .. } | MenuKind::Score { next, .. } => is(next),
    };
    kind || is(&m.on_fail) || m.hours.as_ref().is_some_and(|h| is(&h.closed))
}
