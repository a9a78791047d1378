//! `routes.toml`: calls out. `[[route]]` entries (tried in order, emergency routes first)
//! send numbers matching their patterns out through trunks of switchboard.toml; `[dialing]`
//! says what users may dial (classes, calls at once, caller ID), with `[dialing.users.NAME]`
//! per user. Checked and turned into [`pbx::Outbound`] (its carriers come from the trunks).

use std::collections::{BTreeMap, HashMap};

use pbx::{DialClass, DialPattern, DialPolicy, Outbound, OutboundRoute};
use serde::Deserialize;

use super::{did_you_mean, record_policy, Known};
use crate::config::{KeyPath, Report};

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RoutesFile {
    #[serde(default)]
    dialing: DialingSection,
    #[serde(default)]
    route: Vec<RouteEntry>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct DialingSection {
    #[serde(default)]
    classes: Vec<String>,
    max_calls: Option<usize>,
    #[serde(default)]
    users: BTreeMap<String, UserDialing>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct UserDialing {
    classes: Option<Vec<String>>,
    max_calls: Option<usize>,
    caller_id: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RouteEntry {
    name: String,
    patterns: Vec<String>,
    class: String,
    #[serde(default)]
    strip: usize,
    #[serde(default)]
    prepend: String,
    trunks: Vec<String>,
    caller_id: Option<String>,
    record: Option<String>,
}

/// The routes and dialing rules. `carriers` are the trunks with proxies (calls can go out
/// through them), `numbers` the internal numbers (queue, menu, feature code → what it is).
pub(super) fn routes_file(
    r: &mut Report<'_>,
    f: &RoutesFile,
    known: &Known<'_>,
    carriers: Option<&[String]>,
    numbers: &HashMap<String, String>,
) -> Outbound {
    let mut routes = Vec::new();
    let mut names: HashMap<&str, usize> = HashMap::new();
    for (i, e) in f.route.iter().enumerate() {
        let t = KeyPath::top("route").index(i);
        if e.name.is_empty() {
            r.err(
                &t.key("name"),
                "a route needs a name (for logs and call records)",
            );
        } else if let Some(j) = names.insert(&e.name, i) {
            r.err(
                &t.key("name"),
                format!("\"{}\" is also the name of route {j}", e.name),
            );
        }
        let class = class(r, &t.key("class"), &e.class);
        if e.patterns.is_empty() {
            r.err(
                &t.key("patterns"),
                "a route needs at least one pattern (e.g. \"0[1-9]X.\")",
            );
        }
        let mut patterns = Vec::new();
        for p in &e.patterns {
            match DialPattern::parse(p) {
                Ok(d) => patterns.push(d),
                Err(why) => r.err(&t.key("patterns"), format!("pattern \"{p}\": {why}")),
            }
        }
        if class == Some(DialClass::Emergency) {
            for (n, what) in numbers {
                if patterns.iter().any(|p| p.matches(n)) {
                    r.warn(
                        &t.key("patterns"),
                        format!("emergency number {n} goes out; {what} on the same number is never reached"),
                    );
                }
            }
        }
        if e.trunks.is_empty() {
            r.err(&t.key("trunks"), "a route needs at least one trunk");
        }
        if let Some(carriers) = carriers {
            for tr in &e.trunks {
                if !carriers.iter().any(|c| c == tr) {
                    r.err(
                        &t.key("trunks"),
                        format!(
                            "\"{tr}\" is not a trunk with proxies in switchboard.toml ([trunks.{tr}] proxies = [\"host:port\"]){}",
                            did_you_mean(tr, carriers.iter().map(String::as_str))
                        ),
                    );
                }
            }
        }
        if e.strip > 0 && patterns.iter().any(|p| p.min_len() < e.strip) {
            r.err(
                &t.key("strip"),
                format!(
                    "takes off {} digits, more than a matching number may have",
                    e.strip
                ),
            );
        }
        if !e.prepend.chars().all(|c| c.is_ascii_digit() || c == '+') {
            r.err(
                &t.key("prepend"),
                format!("\"{}\" is not digits (with a leading +)", e.prepend),
            );
        }
        caller_id(r, &t.key("caller_id"), e.caller_id.as_deref());
        let record = record_policy(r, &t.key("record"), e.record.as_deref());
        if let Some(class) = class {
            routes.push(OutboundRoute {
                name: e.name.clone(),
                patterns,
                class,
                strip: e.strip,
                prepend: e.prepend.clone(),
                trunks: e.trunks.clone(),
                caller_id: e.caller_id.clone(),
                record,
            });
        }
    }
    let d = KeyPath::top("dialing");
    let default_policy = DialPolicy {
        classes: classes(r, &d.key("classes"), &f.dialing.classes),
        max_calls: max_calls(r, &d.key("max_calls"), f.dialing.max_calls),
        caller_id: None,
    };
    let mut users = BTreeMap::new();
    for (name, u) in &f.dialing.users {
        let t = d.key("users").key(name);
        if let Some(known) = known.users {
            if !known.contains(name) {
                r.err(
                    &t,
                    format!(
                        "\"{name}\" is not an account in users.toml{}",
                        did_you_mean(name, known.iter().map(String::as_str))
                    ),
                );
            }
        }
        caller_id(r, &t.key("caller_id"), u.caller_id.as_deref());
        users.insert(
            name.clone(),
            DialPolicy {
                classes: u
                    .classes
                    .as_ref()
                    .map_or(default_policy.classes.clone(), |c| {
                        classes(r, &t.key("classes"), c)
                    }),
                max_calls: max_calls(r, &t.key("max_calls"), u.max_calls)
                    .or(default_policy.max_calls),
                caller_id: u.caller_id.clone(),
            },
        );
    }
    Outbound {
        carriers: Vec::new(),
        routes,
        default_policy,
        users,
    }
}

fn class(r: &mut Report<'_>, key: &KeyPath, name: &str) -> Option<DialClass> {
    let found = DialClass::ALL.into_iter().find(|c| c.as_str() == name);
    if found.is_none() {
        r.err(
            key,
            format!(
                "\"{name}\" is not a class: emergency, local, national, international or premium{}",
                did_you_mean(name, DialClass::ALL.iter().map(|c| c.as_str()))
            ),
        );
    }
    found
}

fn classes(r: &mut Report<'_>, key: &KeyPath, names: &[String]) -> Vec<DialClass> {
    let mut out = Vec::new();
    for n in names {
        if let Some(c) = class(r, key, n) {
            if !out.contains(&c) {
                out.push(c);
            }
        }
    }
    out
}

fn max_calls(r: &mut Report<'_>, key: &KeyPath, n: Option<usize>) -> Option<usize> {
    if n == Some(0) {
        r.err(key, "must be at least 1 (leave it out for no limit)");
    }
    n
}

fn caller_id(r: &mut Report<'_>, key: &KeyPath, c: Option<&str>) {
    if let Some(c) = c {
        if c.is_empty() || !c.chars().all(|c| c.is_ascii_digit() || c == '+') {
            r.err(
                key,
                format!("\"{c}\" is not a phone number (digits, a leading +)"),
            );
        }
    }
}
