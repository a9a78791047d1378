//! Registrar bindings (RFC 3261 §10.3): address-of-record → contacts, with expiry,
//! Call-ID/CSeq ordering, q-values, a per-AOR contact limit that replaces the oldest binding,
//! and OPTIONS qualify scheduling.
//!
//! Pure data structure: time is an input and deadlines come out of
//! [`Registrar::poll_timeout`]. The [`crate::Endpoint`] does authentication and turns the
//! outcome into a SIP response.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet};
use std::time::{Duration, Instant};

use crate::header::{parse_delta_seconds, Contact, NameAddr};
use crate::uri::Uri;
use crate::Flow;

/// Registrar settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistrarConfig {
    /// Shortest registration accepted (seconds); shorter non-zero requests get 423.
    pub min_expires: u32,
    /// Longest registration granted (seconds); longer requests are shortened.
    pub max_expires: u32,
    /// Expiry used when the request gives none.
    pub default_expires: u32,
    /// Contacts kept per address-of-record; a new one beyond this replaces the oldest.
    pub max_contacts: usize,
    /// How often each binding is sent an OPTIONS ping; `None` disables qualify.
    pub qualify_interval: Option<Duration>,
}

impl Default for RegistrarConfig {
    fn default() -> Self {
        RegistrarConfig {
            min_expires: 60,
            max_expires: 3600,
            default_expires: 3600,
            max_contacts: 5,
            qualify_interval: Some(Duration::from_secs(30)),
        }
    }
}

/// One contact bound to an address-of-record.
#[derive(Debug, Clone, PartialEq)]
pub struct Binding {
    /// The contact URI as the phone wrote it.
    pub uri_text: String,
    /// The parsed contact URI.
    pub uri: Uri,
    /// Identity used to recognise a refresh of this binding.
    pub key: String,
    /// When it expires.
    pub expires_at: Instant,
    /// When it was first created.
    pub registered_at: Instant,
    /// q-value in thousandths (RFC 3261 §20.10), if given.
    pub q: Option<u16>,
    /// Call-ID of the REGISTER that last refreshed it.
    pub call_id: String,
    /// CSeq number of that REGISTER.
    pub cseq: u32,
    /// Where the REGISTER came from: requests to this phone go over this flow (NAT, RFC 3581).
    pub flow: Flow,
    /// `+sip.instance` (RFC 5626), if given.
    pub instance: Option<String>,
    /// `reg-id` (RFC 5626), if given.
    pub reg_id: Option<u32>,
    /// The phone's User-Agent header.
    pub user_agent: Option<String>,
    /// Next OPTIONS ping, if qualify is on.
    pub next_qualify: Option<Instant>,
    /// When the expiry check of this binding is scheduled (it may be earlier than
    /// `expires_at` after a refresh: the check then re-schedules itself). One timer entry per
    /// binding, however often it is refreshed.
    expiry_check: Instant,
}

impl Binding {
    /// Seconds left before expiry (rounded up, at least 1 while alive).
    pub fn remaining(&self, now: Instant) -> u32 {
        let d = self.expires_at.saturating_duration_since(now);
        (d.as_millis().div_ceil(1000)).min(u32::MAX as u128) as u32
    }
}

/// The REGISTER fields the registrar needs, already authenticated.
#[derive(Debug, Clone)]
pub struct RegisterRequest<'a> {
    /// Address-of-record key (the authenticated user).
    pub aor: &'a str,
    /// Contact header elements (all lines, split).
    pub contacts: Vec<&'a str>,
    /// Expires header, if any.
    pub expires: Option<&'a str>,
    /// Call-ID.
    pub call_id: &'a str,
    /// CSeq number.
    pub cseq: u32,
    /// Where it came from.
    pub flow: Flow,
    /// User-Agent header.
    pub user_agent: Option<&'a str>,
    /// Per-user contact limit overriding the global one.
    pub max_contacts: Option<usize>,
}

/// Why a REGISTER was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegisterError {
    /// 400 with this reason.
    Bad(&'static str),
    /// 423 Interval Too Brief; carries Min-Expires.
    IntervalTooBrief(u32),
    /// 500: a REGISTER with the same Call-ID and a CSeq not higher than the binding's.
    OutOfOrder,
}

/// What changed in the bindings, for the layers above (presence, HTTP API).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BindingChange {
    /// A new contact was bound.
    Added {
        /// Address-of-record.
        aor: String,
        /// Contact URI.
        contact: String,
    },
    /// A contact was refreshed from another flow (the phone's NAT mapping or connection
    /// changed) or rewrote its URI: requests to it now go elsewhere.
    Updated {
        /// Address-of-record.
        aor: String,
        /// Contact URI.
        contact: String,
    },
    /// A contact was removed.
    Removed {
        /// Address-of-record.
        aor: String,
        /// Contact URI.
        contact: String,
        /// Why.
        reason: RemovalReason,
    },
}

/// Why a binding went away.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RemovalReason {
    /// The phone unregistered (expires=0 or `*`).
    Unregistered,
    /// It was not refreshed in time.
    Expired,
    /// A newer contact took its place (per-AOR limit).
    Replaced,
    /// It stopped answering OPTIONS pings.
    Unreachable,
    /// The connection it was reached over closed, and it can be reached no other way (a
    /// browser over WebSocket, a phone over TLS).
    ConnectionClosed,
}

/// A binding kept across a restart, as [`Registrar::restore`] takes it back.
#[derive(Debug, Clone, PartialEq)]
pub struct RestoredBinding<'a> {
    /// The contact URI (as [`Binding::uri_text`]).
    pub contact: &'a str,
    /// Lifetime left, from the caller's clock: the stored wall-clock expiry minus the time
    /// of the restore.
    pub remaining: Duration,
    /// q-value in thousandths.
    pub q: Option<u16>,
    /// Call-ID of the REGISTER that last refreshed it (so the phone's next refresh on the
    /// same Call-ID is in order).
    pub call_id: &'a str,
    /// CSeq of that REGISTER.
    pub cseq: u32,
    /// Where requests to the phone go. A connection id from before the restart means
    /// nothing: give `conn: None`.
    pub flow: Flow,
    /// `+sip.instance`, if any.
    pub instance: Option<&'a str>,
    /// `reg-id`, if any.
    pub reg_id: Option<u32>,
    /// User-Agent.
    pub user_agent: Option<&'a str>,
}

/// Why a binding was not restored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RestoreError {
    /// The AOR is empty (or, at the endpoint, no longer an account).
    #[error("no such address-of-record")]
    BadAor,
    /// The contact is not a SIP or SIPS URI.
    #[error("contact is not a SIP URI")]
    BadContact,
    /// It expired while the server was down.
    #[error("expired")]
    Expired,
    /// The same contact is bound already.
    #[error("already bound")]
    Duplicate,
    /// The AOR has as many contacts as it may.
    #[error("contact limit reached")]
    TooMany,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Due {
    Expiry,
    Qualify,
}

/// The binding table.
#[derive(Debug)]
pub struct Registrar {
    cfg: RegistrarConfig,
    aors: HashMap<String, Vec<Binding>>,
    heap: BinaryHeap<Reverse<(Instant, Due, String, String)>>,
    changes: Vec<BindingChange>,
    /// AORs whose bindings changed in any way since the last [`Registrar::drain_touched`]
    /// (refreshes too): what a store of the bindings has to write again. A set, so that it
    /// stays bounded by the number of AORs when nobody drains it.
    touched: HashSet<String>,
}

/// Identity of a contact: RFC 5626 instance + reg-id when present, else the URI's
/// scheme, user, host, port and transport (RFC 3261 §19.1.4, simplified).
fn binding_key(uri: &Uri, instance: Option<&str>, reg_id: Option<u32>) -> String {
    if let Some(i) = instance {
        return format!("i|{}|{}", i, reg_id.unwrap_or(0));
    }
    format!(
        "u|{}|{}|{}|{}|{}",
        matches!(uri.scheme, crate::uri::Scheme::Sips),
        uri.user.as_deref().unwrap_or(""),
        uri.host,
        uri.port.unwrap_or(0),
        uri.param("transport")
            .flatten()
            .unwrap_or("")
            .to_ascii_lowercase()
    )
}

/// Note that `aor` changed (no allocation when it is noted already).
fn touch(touched: &mut HashSet<String>, aor: &str) {
    if !touched.contains(aor) {
        touched.insert(aor.to_owned());
    }
}

fn parse_q(v: &str) -> Result<u16, &'static str> {
    let v = v.trim();
    let bad = "bad q-value";
    let (int, frac) = v.split_once('.').unwrap_or((v, ""));
    if int.len() != 1 || frac.len() > 3 || !frac.bytes().all(|c| c.is_ascii_digit()) {
        return Err(bad);
    }
    let mut thousandths = match int {
        "0" => 0u16,
        "1" => 1000,
        _ => return Err(bad),
    };
    let mut scale = 100;
    for c in frac.bytes() {
        thousandths += (c - b'0') as u16 * scale;
        scale /= 10;
    }
    if thousandths > 1000 {
        return Err(bad);
    }
    Ok(thousandths)
}

impl Registrar {
    /// An empty table.
    pub fn new(cfg: RegistrarConfig) -> Registrar {
        Registrar {
            cfg,
            aors: HashMap::new(),
            heap: BinaryHeap::new(),
            changes: Vec::new(),
            touched: HashSet::new(),
        }
    }

    /// The settings in force.
    pub fn config(&self) -> &RegistrarConfig {
        &self.cfg
    }

    /// Replace the settings (existing bindings keep their expiry).
    pub fn set_config(&mut self, cfg: RegistrarConfig) {
        self.cfg = cfg;
    }

    /// Current bindings of an AOR, highest q first.
    pub fn lookup(&self, aor: &str) -> &[Binding] {
        self.aors.get(aor).map_or(&[], Vec::as_slice)
    }

    /// Number of AORs with at least one binding.
    pub fn aor_count(&self) -> usize {
        self.aors.len()
    }

    /// Total number of bindings.
    pub fn binding_count(&self) -> usize {
        self.aors.values().map(Vec::len).sum()
    }

    /// Take the changes since the last call.
    pub fn drain_changes(&mut self) -> Vec<BindingChange> {
        std::mem::take(&mut self.changes)
    }

    /// Take the AORs whose bindings changed in any way since the last call, refreshes
    /// included (a refresh moves the expiry but is no [`BindingChange`]), each once. A store
    /// that keeps the bindings across restarts writes these AORs' [`Registrar::lookup`] again.
    pub fn drain_touched(&mut self) -> Vec<String> {
        let mut t: Vec<String> = self.touched.drain().collect();
        t.sort_unstable();
        t
    }

    /// Every binding, by AOR (no order).
    pub fn bindings(&self) -> impl Iterator<Item = (&str, &Binding)> + '_ {
        self.aors
            .iter()
            .flat_map(|(aor, list)| list.iter().map(move |b| (aor.as_str(), b)))
    }

    /// Put back a binding kept across a restart, with the lifetime it had left. `now` is the
    /// time of the restore; the expiry is `now + remaining`, capped at `max_expires`. The
    /// binding gets a fresh qualify schedule (its phone may have moved while we were down).
    /// It is not reported as a [`BindingChange`]: it is not new to the phone.
    ///
    /// Refused: a contact that is not a SIP or SIPS URI, nothing left to live, a binding
    /// with the same identity already present (the phone registered again first), or an AOR
    /// already at the contact limit.
    pub fn restore(
        &mut self,
        now: Instant,
        aor: &str,
        b: RestoredBinding<'_>,
    ) -> Result<(), RestoreError> {
        if aor.is_empty() {
            return Err(RestoreError::BadAor);
        }
        let uri = Uri::parse(b.contact).map_err(|_| RestoreError::BadContact)?;
        if !uri.is_sip() {
            return Err(RestoreError::BadContact);
        }
        let lifetime = b
            .remaining
            .min(Duration::from_secs(u64::from(self.cfg.max_expires)));
        if lifetime.is_zero() {
            return Err(RestoreError::Expired);
        }
        let key = binding_key(&uri, b.instance, b.reg_id);
        let limit = self.cfg.max_contacts.max(1);
        let existing = self.aors.get(aor).map_or(&[][..], Vec::as_slice);
        if existing.iter().any(|x| x.key == key) {
            return Err(RestoreError::Duplicate);
        }
        if existing.len() >= limit {
            return Err(RestoreError::TooMany);
        }
        let list = self.aors.entry(aor.to_owned()).or_default();
        let expires_at = now + lifetime;
        let next_qualify = self.cfg.qualify_interval.map(|i| now + i);
        list.push(Binding {
            uri_text: b.contact.to_owned(),
            uri,
            key: key.clone(),
            expires_at,
            registered_at: now,
            q: b.q.filter(|q| *q <= 1000),
            call_id: b.call_id.to_owned(),
            cseq: b.cseq,
            flow: b.flow,
            instance: b.instance.map(str::to_owned),
            reg_id: b.reg_id,
            user_agent: b.user_agent.map(str::to_owned),
            next_qualify,
            expiry_check: expires_at,
        });
        list.sort_by_key(|b| Reverse(b.q.unwrap_or(1000)));
        if let Some(at) = next_qualify {
            self.heap
                .push(Reverse((at, Due::Qualify, aor.to_owned(), key.clone())));
        }
        self.heap
            .push(Reverse((expires_at, Due::Expiry, aor.to_owned(), key)));
        Ok(())
    }

    /// Apply a REGISTER. On success returns the AOR's bindings after the update (all of them,
    /// as the 200 OK must list them). Either the whole request applies or none of it.
    pub fn register(
        &mut self,
        now: Instant,
        req: &RegisterRequest<'_>,
    ) -> Result<Vec<Binding>, RegisterError> {
        let header_expires = match req.expires {
            Some(v) => Some(parse_delta_seconds(v).map_err(|e| RegisterError::Bad(e.0))?),
            None => None,
        };
        let mut parsed = Vec::with_capacity(req.contacts.len());
        let mut wildcard = false;
        for c in &req.contacts {
            match Contact::parse(c).map_err(|e| RegisterError::Bad(e.0))? {
                Contact::Wildcard => wildcard = true,
                Contact::Addr(a) => parsed.push(*a),
            }
        }
        if wildcard {
            // RFC 3261 §10.3 step 6: '*' only alone and only with Expires: 0.
            if !parsed.is_empty() || req.contacts.len() != 1 || header_expires != Some(0) {
                return Err(RegisterError::Bad(
                    "Wildcard Contact needs Expires: 0 and no other contact",
                ));
            }
            let existing = self.aors.get(req.aor).map(Vec::as_slice).unwrap_or(&[]);
            if existing
                .iter()
                .any(|b| b.call_id == req.call_id && b.cseq >= req.cseq)
            {
                return Err(RegisterError::OutOfOrder);
            }
            if let Some(list) = self.aors.remove(req.aor) {
                touch(&mut self.touched, req.aor);
                for b in list {
                    self.changes.push(BindingChange::Removed {
                        aor: req.aor.to_owned(),
                        contact: b.uri_text,
                        reason: RemovalReason::Unregistered,
                    });
                }
            }
            return Ok(Vec::new());
        }

        // Validate everything before changing anything.
        struct Update {
            addr: NameAddr,
            key: String,
            expires: u32,
            q: Option<u16>,
            instance: Option<String>,
            reg_id: Option<u32>,
        }
        let mut updates = Vec::with_capacity(parsed.len());
        for addr in parsed {
            if !addr.uri.is_sip() {
                return Err(RegisterError::Bad("Contact must be a SIP or SIPS URI"));
            }
            let expires = match addr.params.value("expires") {
                Some(v) => parse_delta_seconds(v).map_err(|e| RegisterError::Bad(e.0))?,
                None => header_expires.unwrap_or(self.cfg.default_expires),
            };
            if expires != 0 && expires < self.cfg.min_expires {
                return Err(RegisterError::IntervalTooBrief(self.cfg.min_expires));
            }
            let q = match addr.params.value("q") {
                Some(v) => Some(parse_q(v).map_err(RegisterError::Bad)?),
                None => None,
            };
            let instance = addr.params.value("+sip.instance").map(str::to_owned);
            let reg_id = match addr.params.value("reg-id") {
                Some(v) => Some(
                    v.parse::<u32>()
                        .map_err(|_| RegisterError::Bad("bad reg-id"))?,
                ),
                None => None,
            };
            let key = binding_key(&addr.uri, instance.as_deref(), reg_id);
            updates.push(Update {
                addr,
                key,
                expires: expires.min(self.cfg.max_expires),
                q,
                instance,
                reg_id,
            });
        }
        let existing = self.aors.get(req.aor).map(Vec::as_slice).unwrap_or(&[]);
        for u in &updates {
            if let Some(b) = existing.iter().find(|b| b.key == u.key) {
                if b.call_id == req.call_id && b.cseq >= req.cseq {
                    return Err(RegisterError::OutOfOrder);
                }
            }
        }

        // Apply.
        touch(&mut self.touched, req.aor);
        let limit = req.max_contacts.unwrap_or(self.cfg.max_contacts).max(1);
        let list = self.aors.entry(req.aor.to_owned()).or_default();
        let mut new_deadlines = Vec::new();
        for u in updates {
            let pos = list.iter().position(|b| b.key == u.key);
            if u.expires == 0 {
                if let Some(i) = pos {
                    let b = list.remove(i);
                    self.changes.push(BindingChange::Removed {
                        aor: req.aor.to_owned(),
                        contact: b.uri_text,
                        reason: RemovalReason::Unregistered,
                    });
                }
                continue;
            }
            let expires_at = now + Duration::from_secs(u.expires as u64);
            let next_qualify = self.cfg.qualify_interval.map(|i| now + i);
            match pos {
                Some(i) => {
                    let b = &mut list[i];
                    if b.flow != req.flow || b.uri_text != u.addr.uri_text {
                        self.changes.push(BindingChange::Updated {
                            aor: req.aor.to_owned(),
                            contact: u.addr.uri_text.clone(),
                        });
                    }
                    b.expires_at = expires_at;
                    if expires_at < b.expiry_check {
                        // Refreshed to a shorter lifetime: check earlier.
                        b.expiry_check = expires_at;
                        new_deadlines.push((expires_at, Due::Expiry, u.key.clone()));
                    }
                    b.call_id = req.call_id.to_owned();
                    b.cseq = req.cseq;
                    b.flow = req.flow;
                    b.q = u.q;
                    b.uri_text = u.addr.uri_text;
                    b.uri = u.addr.uri;
                    b.user_agent = req.user_agent.map(str::to_owned);
                }
                None => {
                    self.changes.push(BindingChange::Added {
                        aor: req.aor.to_owned(),
                        contact: u.addr.uri_text.clone(),
                    });
                    list.push(Binding {
                        uri_text: u.addr.uri_text,
                        uri: u.addr.uri,
                        key: u.key.clone(),
                        expires_at,
                        registered_at: now,
                        q: u.q,
                        call_id: req.call_id.to_owned(),
                        cseq: req.cseq,
                        flow: req.flow,
                        instance: u.instance,
                        reg_id: u.reg_id,
                        user_agent: req.user_agent.map(str::to_owned),
                        next_qualify,
                        expiry_check: expires_at,
                    });
                    if let Some(at) = next_qualify {
                        new_deadlines.push((at, Due::Qualify, u.key.clone()));
                    }
                    new_deadlines.push((expires_at, Due::Expiry, u.key));
                }
            }
        }
        // Per-AOR limit: replace the oldest bindings rather than refuse the phone.
        while list.len() > limit {
            let oldest = list
                .iter()
                .enumerate()
                .min_by_key(|(_, b)| b.registered_at)
                .map(|(i, _)| i)
                .unwrap_or(0);
            let b = list.remove(oldest);
            self.changes.push(BindingChange::Removed {
                aor: req.aor.to_owned(),
                contact: b.uri_text,
                reason: RemovalReason::Replaced,
            });
        }
        list.sort_by_key(|b| std::cmp::Reverse(b.q.unwrap_or(1000)));
        let result = list.clone();
        if list.is_empty() {
            self.aors.remove(req.aor);
        }
        for (at, due, key) in new_deadlines {
            self.heap.push(Reverse((at, due, req.aor.to_owned(), key)));
        }
        Ok(result)
    }

    /// Remove every binding reached only over connection `conn` (it closed); returns how many.
    pub fn remove_connection(&mut self, conn: crate::ConnId) -> usize {
        let gone: Vec<(String, String)> = self
            .bindings()
            .filter(|(_, b)| b.flow.conn == Some(conn))
            .map(|(aor, b)| (aor.to_owned(), b.key.clone()))
            .collect();
        for (aor, key) in &gone {
            self.remove(aor, key, RemovalReason::ConnectionClosed);
        }
        gone.len()
    }

    /// Remove one binding (e.g. it stopped answering OPTIONS).
    pub fn remove(&mut self, aor: &str, key: &str, reason: RemovalReason) -> bool {
        let Some(list) = self.aors.get_mut(aor) else {
            return false;
        };
        let Some(i) = list.iter().position(|b| b.key == key) else {
            return false;
        };
        let b = list.remove(i);
        if list.is_empty() {
            self.aors.remove(aor);
        }
        touch(&mut self.touched, aor);
        self.changes.push(BindingChange::Removed {
            aor: aor.to_owned(),
            contact: b.uri_text,
            reason,
        });
        true
    }

    /// Schedule the next OPTIONS ping of a binding after it answered.
    pub fn qualified(&mut self, now: Instant, aor: &str, key: &str) {
        let Some(interval) = self.cfg.qualify_interval else {
            return;
        };
        if let Some(b) = self
            .aors
            .get_mut(aor)
            .and_then(|l| l.iter_mut().find(|b| b.key == key))
        {
            let at = now + interval;
            b.next_qualify = Some(at);
            self.heap
                .push(Reverse((at, Due::Qualify, aor.to_owned(), key.to_owned())));
        }
    }

    /// Earliest deadline (expiry or qualify).
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.heap.peek().map(|Reverse((t, ..))| *t)
    }

    /// Expire bindings due at `now` and return the bindings due for an OPTIONS ping
    /// as (aor, binding). A binding due for qualify has its `next_qualify` cleared until
    /// [`Registrar::qualified`] is called.
    pub fn handle_timeout(&mut self, now: Instant) -> Vec<(String, Binding)> {
        let mut to_ping = Vec::new();
        while let Some(Reverse((at, _, _, _))) = self.heap.peek() {
            if *at > now {
                break;
            }
            let Some(Reverse((at, due, aor, key))) = self.heap.pop() else {
                break;
            };
            let Some(list) = self.aors.get_mut(&aor) else {
                continue;
            };
            let Some(i) = list.iter().position(|b| b.key == key) else {
                continue;
            };
            match due {
                Due::Expiry if list[i].expiry_check == at && list[i].expires_at > at => {
                    // Refreshed since this check was scheduled: check again at the new expiry.
                    let next = list[i].expires_at;
                    list[i].expiry_check = next;
                    self.heap.push(Reverse((next, Due::Expiry, aor, key)));
                }
                Due::Expiry if list[i].expiry_check == at => {
                    let b = list.remove(i);
                    if list.is_empty() {
                        self.aors.remove(&aor);
                    }
                    touch(&mut self.touched, &aor);
                    self.changes.push(BindingChange::Removed {
                        aor,
                        contact: b.uri_text,
                        reason: RemovalReason::Expired,
                    });
                }
                Due::Qualify if list[i].next_qualify == Some(at) => {
                    list[i].next_qualify = None;
                    to_ping.push((aor, list[i].clone()));
                }
                _ => {} // stale entry: the binding was refreshed or re-scheduled
            }
        }
        to_ping
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Transport;

    fn flow() -> Flow {
        Flow {
            transport: Transport::Udp,
            remote: "127.0.0.1:5062".parse().unwrap(),
            conn: None,
        }
    }

    fn req<'a>(
        contacts: Vec<&'a str>,
        expires: Option<&'a str>,
        call_id: &'a str,
        cseq: u32,
    ) -> RegisterRequest<'a> {
        RegisterRequest {
            aor: "1001",
            contacts,
            expires,
            call_id,
            cseq,
            flow: flow(),
            user_agent: None,
            max_contacts: None,
        }
    }

    fn cfg() -> RegistrarConfig {
        RegistrarConfig {
            qualify_interval: None,
            ..Default::default()
        }
    }

    #[test]
    fn refreshes_keep_one_timer_per_binding_and_expiry_follows_the_last_refresh() {
        let t0 = Instant::now();
        let mut r = Registrar::new(cfg());
        // A phone refreshing every second for ten minutes (new Call-ID each time, as SIPp
        // and many phones do): the timer heap must not grow with the refreshes.
        for i in 0..600u32 {
            let now = t0 + Duration::from_secs(u64::from(i));
            let cid = format!("c{i}");
            r.register(now, &req(vec!["<sip:1001@10.0.0.1>"], Some("120"), &cid, 1))
                .unwrap();
            r.handle_timeout(now);
        }
        assert!(r.heap.len() <= 2, "{} timer entries", r.heap.len());
        // Last refresh at 599 s for 120 s: alive at 718 s, gone at 719 s.
        r.handle_timeout(t0 + Duration::from_secs(718));
        assert_eq!(r.binding_count(), 1);
        r.handle_timeout(t0 + Duration::from_secs(719));
        assert_eq!(r.binding_count(), 0);
        // A refresh that shortens the lifetime is honoured on time.
        r.register(t0, &req(vec!["<sip:1001@10.0.0.1>"], Some("3600"), "x", 1))
            .unwrap();
        r.register(t0, &req(vec!["<sip:1001@10.0.0.1>"], Some("60"), "x", 2))
            .unwrap();
        r.handle_timeout(t0 + Duration::from_secs(60));
        assert_eq!(r.binding_count(), 0);
    }

    #[test]
    fn bind_refresh_and_expire() {
        let t0 = Instant::now();
        let mut r = Registrar::new(cfg());
        let b = r
            .register(
                t0,
                &req(vec!["<sip:1001@10.0.0.1:5062>"], Some("120"), "c1", 1),
            )
            .unwrap();
        assert_eq!(b.len(), 1);
        assert_eq!(b[0].remaining(t0), 120);
        // Refresh with the contact parameter winning over the header.
        let b = r
            .register(
                t0,
                &req(
                    vec!["<sip:1001@10.0.0.1:5062>;expires=300"],
                    Some("120"),
                    "c1",
                    2,
                ),
            )
            .unwrap();
        assert_eq!(b[0].remaining(t0), 300);
        assert!(r.handle_timeout(t0 + Duration::from_secs(200)).is_empty());
        assert_eq!(
            r.binding_count(),
            1,
            "stale expiry entry must not remove a refreshed binding"
        );
        r.handle_timeout(t0 + Duration::from_secs(301));
        assert_eq!(r.binding_count(), 0);
        let ch = r.drain_changes();
        assert!(matches!(
            ch.last(),
            Some(BindingChange::Removed {
                reason: RemovalReason::Expired,
                ..
            })
        ));
    }

    #[test]
    fn cseq_ordering_min_expires_and_cap() {
        let t0 = Instant::now();
        let mut r = Registrar::new(cfg());
        r.register(t0, &req(vec!["<sip:a@h>"], None, "c1", 5))
            .unwrap();
        assert_eq!(
            r.register(t0, &req(vec!["<sip:a@h>"], None, "c1", 5)),
            Err(RegisterError::OutOfOrder)
        );
        // A different Call-ID may use any CSeq.
        r.register(t0, &req(vec!["<sip:a@h>"], None, "c2", 1))
            .unwrap();
        assert_eq!(
            r.register(t0, &req(vec!["<sip:a@h>"], Some("10"), "c2", 2)),
            Err(RegisterError::IntervalTooBrief(60))
        );
        let b = r
            .register(t0, &req(vec!["<sip:a@h>"], Some("999999"), "c2", 3))
            .unwrap();
        assert_eq!(b[0].remaining(t0), 3600);
    }

    #[test]
    fn several_contacts_q_order_and_limit_replaces_oldest() {
        let t0 = Instant::now();
        let mut r = Registrar::new(RegistrarConfig {
            max_contacts: 2,
            ..cfg()
        });
        r.register(t0, &req(vec!["<sip:a@h1>;q=0.1"], None, "c1", 1))
            .unwrap();
        let b = r
            .register(
                t0 + Duration::from_secs(1),
                &req(vec!["<sip:a@h2>;q=0.9"], None, "c2", 1),
            )
            .unwrap();
        assert_eq!(b[0].uri_text, "sip:a@h2");
        let b = r
            .register(
                t0 + Duration::from_secs(2),
                &req(vec!["<sip:a@h3>"], None, "c3", 1),
            )
            .unwrap();
        let names: Vec<_> = b.iter().map(|b| b.uri_text.as_str()).collect();
        assert_eq!(names, vec!["sip:a@h3", "sip:a@h2"]);
        assert!(r.drain_changes().iter().any(|c| matches!(c, BindingChange::Removed { reason: RemovalReason::Replaced, contact, .. } if contact == "sip:a@h1")));
        assert!(r
            .register(t0, &req(vec!["<sip:a@h>;q=1.5"], None, "c9", 1))
            .is_err());
    }

    #[test]
    fn wildcard_rules() {
        let t0 = Instant::now();
        let mut r = Registrar::new(cfg());
        r.register(t0, &req(vec!["<sip:a@h1>", "<sip:a@h2>"], None, "c1", 1))
            .unwrap();
        assert_eq!(r.binding_count(), 2);
        assert!(r.register(t0, &req(vec!["*"], None, "c1", 2)).is_err());
        assert!(r
            .register(t0, &req(vec!["*", "<sip:a@h3>"], Some("0"), "c1", 2))
            .is_err());
        assert_eq!(
            r.register(t0, &req(vec!["*"], Some("0"), "c1", 3))
                .unwrap()
                .len(),
            0
        );
        assert_eq!(r.binding_count(), 0);
        // Unregister one contact with expires=0.
        r.register(t0, &req(vec!["<sip:a@h1>", "<sip:a@h2>"], None, "c1", 4))
            .unwrap();
        let b = r
            .register(t0, &req(vec!["<sip:a@h1>;expires=0"], None, "c1", 5))
            .unwrap();
        assert_eq!(b.len(), 1);
    }

    fn restored<'a>(contact: &'a str, remaining: u64) -> RestoredBinding<'a> {
        RestoredBinding {
            contact,
            remaining: Duration::from_secs(remaining),
            q: None,
            call_id: "c-before-restart",
            cseq: 7,
            flow: flow(),
            instance: None,
            reg_id: None,
            user_agent: Some("phone"),
        }
    }

    #[test]
    fn restored_bindings_keep_their_remaining_lifetime_in_virtual_time() {
        // The process restarted: a fresh registrar whose clock starts anywhere.
        let t0 = Instant::now() + Duration::from_secs(10_000);
        let mut r = Registrar::new(cfg());
        r.restore(t0, "1001", restored("sip:1001@10.0.0.1:5062", 90))
            .unwrap();
        r.restore(t0, "1002", restored("sip:1002@10.0.0.2:5062", 600))
            .unwrap();
        assert_eq!(r.binding_count(), 2);
        assert_eq!(r.lookup("1001")[0].remaining(t0), 90);
        assert_eq!(r.lookup("1001")[0].user_agent.as_deref(), Some("phone"));
        assert!(r.drain_changes().is_empty(), "a restore is not a change");
        assert_eq!(r.poll_timeout(), Some(t0 + Duration::from_secs(90)));
        // Alive just before its expiry, gone at it; the other one lives on.
        r.handle_timeout(t0 + Duration::from_secs(89));
        assert_eq!(r.lookup("1001").len(), 1);
        r.handle_timeout(t0 + Duration::from_secs(90));
        assert!(r.lookup("1001").is_empty());
        assert_eq!(r.lookup("1002").len(), 1);
        assert!(matches!(
            r.drain_changes().as_slice(),
            [BindingChange::Removed {
                reason: RemovalReason::Expired,
                ..
            }]
        ));
        assert_eq!(r.drain_touched(), vec!["1001".to_owned()]);
        // The phone refreshes on its old Call-ID with a higher CSeq: in order, a refresh.
        let b = r
            .register(
                t0 + Duration::from_secs(100),
                &RegisterRequest {
                    aor: "1002",
                    ..req(
                        vec!["<sip:1002@10.0.0.2:5062>"],
                        Some("120"),
                        "c-before-restart",
                        8,
                    )
                },
            )
            .unwrap();
        assert_eq!(b.len(), 1);
        assert!(r.drain_changes().is_empty());
        assert_eq!(r.drain_touched(), vec!["1002".to_owned()]);
        r.handle_timeout(t0 + Duration::from_secs(219));
        assert_eq!(r.binding_count(), 1);
        r.handle_timeout(t0 + Duration::from_secs(220));
        assert_eq!(r.binding_count(), 0);
    }

    #[test]
    fn restore_refuses_what_cannot_be_bound_and_caps_the_lifetime() {
        let t0 = Instant::now();
        let mut r = Registrar::new(RegistrarConfig {
            max_contacts: 1,
            max_expires: 300,
            ..cfg()
        });
        assert_eq!(
            r.restore(t0, "1001", restored("sip:1001@h", 0)),
            Err(RestoreError::Expired)
        );
        assert_eq!(
            r.restore(t0, "1001", restored("tel:+15551234", 60)),
            Err(RestoreError::BadContact)
        );
        assert_eq!(
            r.restore(t0, "1001", restored("not a uri", 60)),
            Err(RestoreError::BadContact)
        );
        assert_eq!(
            r.restore(t0, "", restored("sip:1001@h", 60)),
            Err(RestoreError::BadAor)
        );
        assert_eq!(r.aor_count(), 0, "refusals leave nothing behind");
        r.restore(t0, "1001", restored("sip:1001@h", 86_400))
            .unwrap();
        assert_eq!(
            r.lookup("1001")[0].remaining(t0),
            300,
            "capped at max_expires"
        );
        assert_eq!(
            r.restore(t0, "1001", restored("sip:1001@h", 60)),
            Err(RestoreError::Duplicate)
        );
        assert_eq!(
            r.restore(t0, "1001", restored("sip:1001@other", 60)),
            Err(RestoreError::TooMany)
        );
        let all: Vec<_> = r
            .bindings()
            .map(|(a, b)| (a, b.uri_text.as_str()))
            .collect();
        assert_eq!(all, vec![("1001", "sip:1001@h")]);
    }

    #[test]
    fn qualify_is_scheduled() {
        let t0 = Instant::now();
        let mut r = Registrar::new(RegistrarConfig {
            qualify_interval: Some(Duration::from_secs(30)),
            ..Default::default()
        });
        r.register(t0, &req(vec!["<sip:a@h1>"], None, "c1", 1))
            .unwrap();
        assert_eq!(r.poll_timeout(), Some(t0 + Duration::from_secs(30)));
        let due = r.handle_timeout(t0 + Duration::from_secs(30));
        assert_eq!(due.len(), 1);
        r.qualified(t0 + Duration::from_secs(31), "1001", &due[0].1.key);
        assert_eq!(r.handle_timeout(t0 + Duration::from_secs(61)).len(), 1);
        assert!(r.remove("1001", &due[0].1.key, RemovalReason::Unreachable));
        assert_eq!(r.binding_count(), 0);
    }
}
