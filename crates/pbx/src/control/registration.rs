//! Registering to carriers: a trunk with `register` sends REGISTER to its first proxy,
//! answers the carrier's digest challenge with the trunk's credentials, and refreshes the
//! registration before it runs out (at four fifths of what the carrier granted). A proxy
//! that refuses, does not answer, or challenges credentials it then rejects is given up for
//! the trunk's next proxy; after the last one the trunk tries again from the first after
//! [`RETRY_AFTER`]. Each change (registered, failed, to which proxy) is logged once.

use super::*;
use crate::config::Carrier;

/// How long a trunk that failed on every proxy waits before it starts again.
pub(super) const RETRY_AFTER: Duration = Duration::from_secs(30);
/// Refreshes are never closer together than this, whatever the carrier grants.
const MIN_REFRESH: Duration = Duration::from_secs(5);

/// One trunk's registration.
#[derive(Debug)]
pub(super) struct TrunkReg {
    /// The carrier, as configured.
    carrier: Carrier,
    /// Index into its proxies.
    proxy: usize,
    call_id: String,
    from_tag: String,
    cseq: u32,
    /// The REGISTER in flight, and whether it carries credentials.
    pending: Option<(TxId, Request, bool)>,
    /// Registered until then.
    until: Option<Instant>,
    /// Proxies failed in a row.
    failures: usize,
    round: u64,
}

/// A trunk's registration as an admin would want to see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrunkStatus {
    /// The trunk's name.
    pub trunk: String,
    /// The proxy it registers (or last tried to register) with.
    pub proxy: std::net::SocketAddr,
    /// Whether the carrier holds a registration now.
    pub registered: bool,
}

impl CallControl {
    /// Registrations for the carriers that register; each starts at `now`.
    pub(super) fn start_registrations(&mut self, now: Instant) {
        let carriers: Vec<Carrier> = self
            .cfg
            .outbound
            .carriers
            .iter()
            .filter(|c| c.register.is_some() && c.auth.is_some() && !c.proxies.is_empty())
            .cloned()
            .collect();
        for carrier in carriers {
            let call_id = format!("{}@{}", self.token(), self.host);
            let from_tag = self.token();
            self.regs.push(TrunkReg {
                carrier,
                proxy: 0,
                call_id,
                from_tag,
                cseq: 0,
                pending: None,
                until: None,
                failures: 0,
                round: 0,
            });
            let i = self.regs.len() - 1;
            self.timer(now, Timer::Register(i, 0));
        }
    }

    /// A reload: registrations whose trunk settings changed start again; the others go on.
    pub(super) fn reload_registrations(&mut self, now: Instant) {
        let same = {
            let wanted: Vec<&Carrier> = self
                .cfg
                .outbound
                .carriers
                .iter()
                .filter(|c| c.register.is_some() && c.auth.is_some() && !c.proxies.is_empty())
                .collect();
            wanted.len() == self.regs.len()
                && wanted.iter().zip(&self.regs).all(|(c, r)| **c == r.carrier)
        };
        if same {
            return;
        }
        for r in std::mem::take(&mut self.regs) {
            if let Some((tx, _, _)) = r.pending {
                self.by_client.remove(&tx);
            }
        }
        self.cancel_timers(|t| matches!(t, Timer::Register(..)));
        self.start_registrations(now);
    }

    /// Where each registering trunk stands.
    pub fn trunk_status(&self) -> Vec<TrunkStatus> {
        self.regs
            .iter()
            .map(|r| TrunkStatus {
                trunk: r.carrier.name.clone(),
                proxy: r.carrier.proxies[r.proxy.min(r.carrier.proxies.len() - 1)],
                registered: r.until.is_some(),
            })
            .collect()
    }

    /// The registration timer `round` of trunk `i`: register (again).
    pub(super) fn register_due(&mut self, now: Instant, i: usize, round: u64) {
        if self.regs.get(i).is_none_or(|r| r.round != round) {
            return;
        }
        self.send_register(now, i, None);
    }

    /// Send trunk `i`'s REGISTER, with the answer to `challenge` if given.
    fn send_register(&mut self, now: Instant, i: usize, challenge: Option<(&str, String)>) {
        let host = self.cfg.contact_host.clone();
        let Some(r) = self.regs.get_mut(i) else {
            return;
        };
        if let Some((tx, _, _)) = r.pending.take() {
            self.by_client.remove(&tx);
        }
        let c = &r.carrier;
        let Some(&proxy) = c.proxies.get(r.proxy) else {
            return;
        };
        let (user, _) = c.auth.clone().unwrap_or_default();
        let domain = c.domain.clone().unwrap_or_else(|| proxy.to_string());
        let expires = c.register.unwrap_or(Duration::from_secs(600)).as_secs();
        r.cseq += 1;
        let mut h = Headers::default();
        h.push("From", format!("<sip:{user}@{domain}>;tag={}", r.from_tag));
        h.push("To", format!("<sip:{user}@{domain}>"));
        h.push("Call-ID", r.call_id.clone());
        h.push("CSeq", format!("{} REGISTER", r.cseq));
        h.push("Contact", format!("<sip:{user}@{host}>"));
        h.push("Expires", expires.to_string());
        let uri = format!("sip:{domain}");
        let authed = challenge.is_some();
        if let Some((header, value)) = challenge {
            h.push(header, value);
        }
        let req = Request {
            method: Method::Register,
            uri,
            headers: h,
            body: Bytes::new(),
        };
        let flow = Flow {
            transport: Transport::Udp,
            remote: proxy,
            conn: None,
        };
        let tx = self.send(flow, req.clone(), Role::Register(i));
        if let Some(r) = self.regs.get_mut(i) {
            r.pending = Some((tx, req, authed));
        }
        let _ = now;
    }

    /// The carrier's answer to trunk `i`'s REGISTER `tx` (408 when it never came).
    pub(super) fn register_response(&mut self, now: Instant, i: usize, tx: TxId, resp: &Response) {
        if resp.status < 200 {
            return;
        }
        self.by_client.remove(&tx);
        let Some(r) = self.regs.get_mut(i) else {
            return;
        };
        let Some((ptx, req, authed)) = r.pending.take() else {
            return;
        };
        if ptx != tx {
            r.pending = Some((ptx, req, authed));
            return;
        }
        let name = r.carrier.name.clone();
        let proxy = r.carrier.proxies[r.proxy];
        match resp.status {
            200..=299 => {
                let asked = r.carrier.register.unwrap_or(Duration::from_secs(600));
                let granted = granted_expiry(resp, &req).unwrap_or(asked);
                let was = r.until.is_some();
                r.until = Some(now + granted);
                r.failures = 0;
                r.round += 1;
                let round = r.round;
                let refresh = (granted * 4 / 5).max(MIN_REFRESH);
                if was {
                    debug!(trunk = %name, %proxy, expires = granted.as_secs(), "trunk registration refreshed");
                } else {
                    info!(trunk = %name, %proxy, expires = granted.as_secs(), "trunk registered");
                }
                self.timer(now + refresh, Timer::Register(i, round));
            }
            401 | 407 if !authed => {
                let (ask, answer) = if resp.status == 401 {
                    ("WWW-Authenticate", "Authorization")
                } else {
                    ("Proxy-Authenticate", "Proxy-Authorization")
                };
                let challenge = resp
                    .headers
                    .get_all(ask)
                    .find_map(|v| sip::digest::parse_challenge(v).ok());
                let (user, password) = r.carrier.auth.clone().unwrap_or_default();
                match challenge {
                    Some(ch) => {
                        let cnonce = format!("{:016x}", self.rng.next_u64());
                        let value = sip::digest::authorization(
                            &ch, &user, &password, "REGISTER", &req.uri, &cnonce, 1,
                        );
                        self.send_register(now, i, Some((answer, value)));
                    }
                    None => self.register_failed(
                        now,
                        i,
                        resp.status,
                        "a challenge that cannot be answered",
                    ),
                }
            }
            423 => {
                // Interval Too Brief: ask again for what the carrier wants (within a day).
                let min = resp
                    .headers
                    .get("Min-Expires")
                    .and_then(|v| v.trim().parse::<u64>().ok())
                    .filter(|&m| m > 0 && m <= 86_400);
                match min {
                    Some(m) if r.carrier.register.is_some_and(|e| e.as_secs() < m) => {
                        info!(trunk = %name, min_expires = m, "the carrier wants a longer registration");
                        r.carrier.register = Some(Duration::from_secs(m));
                        self.send_register(now, i, None);
                    }
                    _ => self.register_failed(now, i, 423, "interval too brief"),
                }
            }
            401 | 403 | 407 => self.register_failed(now, i, resp.status, "credentials refused"),
            s => self.register_failed(now, i, s, "refused"),
        }
    }

    /// Trunk `i`'s proxy did not register it: the next proxy now, or the first again after
    /// [`RETRY_AFTER`] once every one has failed.
    pub(super) fn register_failed(&mut self, now: Instant, i: usize, status: u16, why: &str) {
        let Some(r) = self.regs.get_mut(i) else {
            return;
        };
        if let Some((tx, _, _)) = r.pending.take() {
            self.by_client.remove(&tx);
        }
        let proxy = r.carrier.proxies[r.proxy];
        let was = r.until.take().is_some();
        r.failures += 1;
        r.proxy = (r.proxy + 1) % r.carrier.proxies.len();
        r.round += 1;
        let round = r.round;
        let all_failed = r.failures.is_multiple_of(r.carrier.proxies.len());
        let next = r.carrier.proxies[r.proxy];
        warn!(trunk = %r.carrier.name, %proxy, status, reason = why, registered_before = was, "trunk registration failed");
        if all_failed {
            self.timer(now + RETRY_AFTER, Timer::Register(i, round));
        } else {
            info!(trunk = %r.carrier.name, proxy = %next, "trunk registration: trying the next proxy");
            self.timer(now, Timer::Register(i, round));
        }
    }
}

/// The expiry the registrar granted our contact: its `expires` parameter in the 2xx's
/// Contact for our URI, else the Expires header.
fn granted_expiry(resp: &Response, req: &Request) -> Option<Duration> {
    let ours = req
        .headers
        .get("Contact")
        .and_then(|c| NameAddr::parse(c).ok())
        .map(|c| c.uri.to_string());
    let from_contact = resp
        .headers
        .get_all("Contact")
        .flat_map(|v| v.split(','))
        .filter_map(|c| NameAddr::parse(c.trim()).ok())
        .find(|c| Some(c.uri.to_string()) == ours)
        .and_then(|c| {
            c.params
                .value("expires")
                .and_then(|e| e.parse::<u64>().ok())
        });
    let secs = from_contact.or_else(|| {
        resp.headers
            .get("Expires")
            .and_then(|e| e.trim().parse::<u64>().ok())
    })?;
    // A day at most: a carrier's absurd expiry must not overflow the refresh arithmetic.
    (secs > 0).then(|| Duration::from_secs(secs.min(86_400)))
}

#[cfg(test)]
mod tests {
    use super::granted_expiry;
    use sip::message::{Headers, Method, Request, Response};
    use std::time::Duration;

    #[test]
    fn an_absurd_expiry_from_the_carrier_is_held_to_a_day() {
        let mut h = Headers::default();
        h.push("Contact", "<sip:acct@10.0.0.1:5060>");
        let req = Request {
            method: Method::Register,
            uri: "sip:carrier".into(),
            headers: h,
            body: bytes::Bytes::new(),
        };
        let mut resp = Response::new(200);
        resp.headers.push("Expires", "18446744073709551615");
        assert_eq!(
            granted_expiry(&resp, &req),
            Some(Duration::from_secs(86_400))
        );
        let mut resp = Response::new(200);
        resp.headers
            .push("Contact", "<sip:acct@10.0.0.1:5060>;expires=120");
        resp.headers.push("Expires", "3600");
        assert_eq!(granted_expiry(&resp, &req), Some(Duration::from_secs(120)));
    }
}
