//! `voicemail.toml`: the voicemail number, the longest message, the prompts, and the
//! mailboxes (`[mailboxes.NAME]`: a user's, named after the user, or a queue's shared one),
//! checked and turned into [`pbx::VoicemailSetup`].

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::time::Duration;

use pbx::{Mailbox, VoicemailPrompts, VoicemailSetup};
use serde::Deserialize;

use super::{number_problems, Known, Prompts};
use crate::config::{KeyPath, Report};

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct VoicemailFile {
    voicemail: Option<VoicemailEntry>,
    #[serde(default)]
    pub(super) mailboxes: BTreeMap<String, MailboxEntry>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct VoicemailEntry {
    number: String,
    #[serde(default = "max_length")]
    max_length: u64,
    prompts: String,
}

fn max_length() -> u64 {
    120
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct MailboxEntry {
    pin: String,
    notify: Option<Vec<String>>,
    access: Option<String>,
}

/// The prompt files of the `prompts` directory.
const PROMPTS: [&str; 10] = [
    "leave",
    "recorded",
    "enter-pin",
    "wrong-pin",
    "you-have",
    "new-messages",
    "options",
    "deleted",
    "saved",
    "no-more",
];

/// `voicemail.toml`, checked; `numbers` are the queue and menu numbers (number → what).
pub(super) fn voicemail_file(
    r: &mut Report<'_>,
    f: &VoicemailFile,
    known: &Known<'_>,
    prompts: &mut Prompts,
    numbers: &HashMap<String, String>,
) -> Option<VoicemailSetup> {
    let Some(vm) = &f.voicemail else {
        if !f.mailboxes.is_empty() {
            r.err(
                &KeyPath::top("voicemail"),
                "mailboxes need a [voicemail] table (number, prompts)",
            );
        }
        return None;
    };
    let t = KeyPath::top("voicemail");
    let mut taken = numbers.clone();
    let mut check_number = |r: &mut Report<'_>, key: &KeyPath, n: &str, what: String| {
        for problem in number_problems(n, known) {
            r.err(key, problem);
        }
        if let Some(other) = taken.insert(n.to_owned(), what) {
            r.err(key, format!("\"{n}\" is also the number of {other}"));
        }
    };
    check_number(r, &t.key("number"), &vm.number, "the voicemail".into());
    if !(5..=600).contains(&vm.max_length) {
        r.err(&t.key("max_length"), "seconds, 5-600");
    }
    let dir = Path::new(&vm.prompts);
    let mut loaded = Vec::new();
    if prompts.dir.join(dir).is_dir() {
        for name in PROMPTS {
            loaded.push(prompts.load(r, &t.key("prompts"), &dir.join(format!("{name}.wav"))));
        }
    } else {
        r.err(
            &t.key("prompts"),
            format!(
                "no directory {} (it holds {})",
                dir.display(),
                PROMPTS.map(|p| format!("{p}.wav")).join(", ")
            ),
        );
    }
    let mut mailboxes = Vec::new();
    for (name, e) in &f.mailboxes {
        let m = KeyPath::top("mailboxes").key(name);
        if e.pin.len() < 4 || e.pin.len() > 12 || !e.pin.bytes().all(|b| b.is_ascii_digit()) {
            r.err(&m.key("pin"), "4-12 digits");
        }
        let is_user = known.users.is_some_and(|u| u.contains(name));
        let notify = match &e.notify {
            Some(list) => list.clone(),
            None if is_user => vec![name.clone()],
            None => Vec::new(),
        };
        if let Some(users) = known.users {
            for (i, u) in notify.iter().enumerate() {
                if !users.contains(u) {
                    r.err(
                        &m.key("notify").index(i),
                        format!("\"{u}\" is not a user in users.toml"),
                    );
                }
            }
        }
        if let Some(a) = &e.access {
            check_number(r, &m.key("access"), a, format!("mailbox \"{name}\""));
        } else if !is_user {
            r.warn(
                &m,
                "not a user's mailbox and no access number: nobody can listen to its messages",
            );
        }
        mailboxes.push(Mailbox {
            name: name.clone(),
            pin: e.pin.clone(),
            notify,
            access: e.access.clone(),
        });
    }
    let mut it = loaded.into_iter();
    let mut next = || it.next().flatten();
    let prompts = VoicemailPrompts {
        leave: next()?,
        recorded: next()?,
        enter_pin: next()?,
        wrong_pin: next()?,
        you_have: next()?,
        new_messages: next()?,
        options: next()?,
        deleted: next()?,
        saved: next()?,
        no_more: next()?,
    };
    Some(VoicemailSetup {
        number: vm.number.clone(),
        max_length: Duration::from_secs(vm.max_length),
        prompts,
        mailboxes,
    })
}
