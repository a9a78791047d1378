//! Who may use the web side: logins with roles (from `users.toml`, passwords kept only as
//! Argon2id hashes), sessions held by the server behind an opaque cookie, a CSRF token per
//! session for every change, and limits on password guessing.
//!
//! - A session cookie is 256 random bits, `HttpOnly`, `SameSite=Strict`, `Path=/` and
//!   `Secure` unless the admin turned that off for plain HTTP beyond loopback. Sessions end
//!   after 8 idle hours, 24 hours after login, at logout, and at a restart.
//! - Every request that changes something (POST) must carry the session's CSRF token in the
//!   `X-CSRF-Token` header, and a request whose `Origin` is another site is refused.
//! - Guessing: after 5 wrong passwords in a row from one address, or for one login, further
//!   attempts wait 2^(n−5) seconds (at most 15 minutes) and get 429 with `Retry-After`. An
//!   unknown login costs the same hash as a wrong password, so the answer does not tell
//!   which logins exist.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use base64::Engine;
use rand::RngCore;
use serde::Serialize;

/// What a login may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// An agent: their own state.
    Agent,
    /// A supervisor: the wallboard, reports, call search, any agent's state.
    Supervisor,
    /// A quality reviewer: call search, recordings, reviews.
    Reviewer,
    /// An admin: everything but recordings, and the audit log.
    Admin,
}

impl Role {
    /// The role named in `users.toml`.
    pub fn parse(s: &str) -> Option<Role> {
        Some(match s {
            "agent" => Role::Agent,
            "supervisor" => Role::Supervisor,
            "reviewer" => Role::Reviewer,
            "admin" => Role::Admin,
            _ => return None,
        })
    }

    /// The names [`Role::parse`] takes.
    pub const NAMES: [&'static str; 4] = ["agent", "supervisor", "reviewer", "admin"];
}

/// One web login.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Login {
    /// The login name.
    pub name: String,
    /// Argon2 hash in PHC string form (`$argon2id$v=19$…`).
    pub password_hash: String,
    /// What the login may do.
    pub roles: Vec<Role>,
    /// The agent this login is (for the agent role).
    pub agent: Option<String>,
}

/// Is `s` a password hash this server can check (and not, say, a password pasted by mistake)?
pub fn is_password_hash(s: &str) -> bool {
    PasswordHash::new(s).is_ok_and(|h| h.algorithm.as_str().starts_with("argon2"))
}

/// Hash a password for `users.toml` (Argon2id, default parameters, random salt).
pub fn hash_password(password: &str) -> String {
    let mut salt = [0u8; 16];
    rand::rng().fill_bytes(&mut salt);
    let salt = SaltString::encode_b64(&salt).expect("16 bytes is a valid salt");
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .expect("argon2 with default parameters")
        .to_string()
}

/// A hash nobody's password matches, checked for unknown logins so that they cost the same.
fn decoy() -> &'static str {
    static DECOY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DECOY.get_or_init(|| hash_password("an unknown login never matches this"))
}

fn verify(hash: &str, password: &str) -> bool {
    PasswordHash::new(hash).is_ok_and(|h| {
        Argon2::default()
            .verify_password(password.as_bytes(), &h)
            .is_ok()
    })
}

/// The logins, by name.
#[derive(Debug, Clone, Default)]
pub struct Logins {
    by_name: HashMap<String, Login>,
}

impl Logins {
    /// These logins.
    pub fn new(logins: impl IntoIterator<Item = Login>) -> Logins {
        Logins {
            by_name: logins.into_iter().map(|l| (l.name.clone(), l)).collect(),
        }
    }

    /// The login if `password` is right (the same work when the login does not exist).
    pub fn check(&self, name: &str, password: &str) -> Option<&Login> {
        match self.by_name.get(name) {
            Some(l) => verify(&l.password_hash, password).then_some(l),
            None => {
                let _ = verify(decoy(), password);
                None
            }
        }
    }

    /// The login named `name`.
    pub fn get(&self, name: &str) -> Option<&Login> {
        self.by_name.get(name)
    }
}

/// A logged-in browser.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    /// The login.
    pub login: String,
    /// Its roles at login time.
    pub roles: Vec<Role>,
    /// The agent it is, for agents.
    pub agent: Option<String>,
    /// The token every change must carry.
    pub csrf: String,
    created: Instant,
    last: Instant,
}

impl Session {
    /// Does the session have one of `roles`?
    pub fn has_any(&self, roles: &[Role]) -> bool {
        self.roles.iter().any(|r| roles.contains(r))
    }
}

/// How long a session lives.
const IDLE: Duration = Duration::from_secs(8 * 3600);
const ABSOLUTE: Duration = Duration::from_secs(24 * 3600);
/// Sessions kept at most (the oldest go first).
const MAX_SESSIONS: usize = 10_000;

fn token() -> String {
    let mut b = [0u8; 32];
    rand::rng().fill_bytes(&mut b);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}

/// The sessions, by cookie token.
#[derive(Debug, Default)]
pub struct Sessions {
    map: Mutex<HashMap<String, Session>>,
}

impl Sessions {
    /// Start a session for `login`; its cookie token.
    pub fn start(&self, login: &Login, now: Instant) -> (String, Session) {
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        map.retain(|_, s| live(s, now));
        if map.len() >= MAX_SESSIONS {
            if let Some(oldest) = map
                .iter()
                .min_by_key(|(_, s)| s.last)
                .map(|(k, _)| k.clone())
            {
                map.remove(&oldest);
            }
        }
        let id = token();
        let s = Session {
            login: login.name.clone(),
            roles: login.roles.clone(),
            agent: login.agent.clone(),
            csrf: token(),
            created: now,
            last: now,
        };
        map.insert(id.clone(), s.clone());
        (id, s)
    }

    /// The session of a cookie token, if it is still live (and mark it used).
    pub fn get(&self, id: &str, now: Instant) -> Option<Session> {
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        match map.get_mut(id) {
            Some(s) if live(s, now) => {
                s.last = now;
                Some(s.clone())
            }
            Some(_) => {
                map.remove(id);
                None
            }
            None => None,
        }
    }

    /// End a session.
    pub fn end(&self, id: &str) {
        self.map
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(id);
    }

    /// End every session of logins that are gone or whose roles changed (after a reload).
    pub fn retain_valid(&self, logins: &Logins) {
        self.map
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|_, s| {
                logins
                    .get(&s.login)
                    .is_some_and(|l| l.roles == s.roles && l.agent == s.agent)
            });
    }
}

fn live(s: &Session, now: Instant) -> bool {
    now.saturating_duration_since(s.last) < IDLE
        && now.saturating_duration_since(s.created) < ABSOLUTE
}

#[derive(Debug, Clone, Copy)]
struct Failures {
    count: u32,
    last: Instant,
}

/// Wrong passwords in a row per address and per login.
#[derive(Debug, Default)]
pub struct Throttle {
    by_addr: HashMap<IpAddr, Failures>,
    by_login: HashMap<String, Failures>,
}

/// Failures allowed before attempts must wait.
const FREE_FAILURES: u32 = 5;
const MAX_WAIT: Duration = Duration::from_secs(15 * 60);
/// Entries kept per table at most.
const MAX_TRACKED: usize = 65_536;

fn wait_for(f: &Failures, now: Instant) -> Option<Duration> {
    if f.count < FREE_FAILURES {
        return None;
    }
    let wait = Duration::from_secs(1u64 << (f.count - FREE_FAILURES).min(10)).min(MAX_WAIT);
    let until = f.last + wait;
    (until > now).then(|| until - now)
}

fn bump<K: std::hash::Hash + Eq + Clone>(map: &mut HashMap<K, Failures>, key: &K, now: Instant) {
    if map.len() >= MAX_TRACKED && !map.contains_key(key) {
        map.retain(|_, f| now.saturating_duration_since(f.last) < MAX_WAIT);
        if map.len() >= MAX_TRACKED {
            return;
        }
    }
    let f = map.entry(key.clone()).or_insert(Failures {
        count: 0,
        last: now,
    });
    f.count = f.count.saturating_add(1);
    f.last = now;
}

impl Throttle {
    /// How long an attempt from `addr` for `login` must wait, if it must.
    pub fn wait(&self, addr: IpAddr, login: &str, now: Instant) -> Option<Duration> {
        let a = self.by_addr.get(&addr).and_then(|f| wait_for(f, now));
        let l = self.by_login.get(login).and_then(|f| wait_for(f, now));
        a.max(l)
    }

    /// A wrong password.
    pub fn failed(&mut self, addr: IpAddr, login: &str, now: Instant) {
        bump(&mut self.by_addr, &addr, now);
        bump(&mut self.by_login, &login.to_owned(), now);
    }

    /// A right one: both counts start again.
    pub fn succeeded(&mut self, addr: IpAddr, login: &str) {
        self.by_addr.remove(&addr);
        self.by_login.remove(login);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn login(name: &str, pw: &str, roles: &[Role]) -> Login {
        Login {
            name: name.into(),
            password_hash: hash_password(pw),
            roles: roles.to_vec(),
            agent: None,
        }
    }

    #[test]
    fn passwords_are_hashed_and_checked() {
        let h = hash_password("s3cret");
        assert!(h.starts_with("$argon2id$"), "{h}");
        assert!(is_password_hash(&h));
        assert!(!is_password_hash("s3cret"));
        assert_ne!(h, hash_password("s3cret"), "salted");
        let logins = Logins::new([login("sam", "s3cret", &[Role::Supervisor])]);
        assert!(logins.check("sam", "s3cret").is_some());
        assert!(logins.check("sam", "S3cret").is_none());
        assert!(logins.check("nobody", "s3cret").is_none());
    }

    #[test]
    fn sessions_expire_and_end() {
        let s = Sessions::default();
        let l = login("sam", "x", &[Role::Supervisor]);
        let t0 = Instant::now();
        let (id, sess) = s.start(&l, t0);
        assert_eq!(id.len(), 43);
        assert_ne!(sess.csrf, id);
        assert!(s.get(&id, t0 + Duration::from_secs(3600)).is_some());
        // Idle too long.
        assert!(s.get(&id, t0 + Duration::from_secs(3600) + IDLE).is_none());
        let (id, _) = s.start(&l, t0);
        s.end(&id);
        assert!(s.get(&id, t0).is_none());
        // Roles changed in a reload: the session ends.
        let (id, _) = s.start(&l, t0);
        s.retain_valid(&Logins::new([login("sam", "x", &[Role::Agent])]));
        assert!(s.get(&id, t0).is_none());
    }

    #[test]
    fn guessing_is_slowed_per_address_and_per_login() {
        let mut t = Throttle::default();
        let now = Instant::now();
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        for _ in 0..4 {
            t.failed(a, "sam", now);
        }
        assert_eq!(t.wait(a, "sam", now), None);
        t.failed(a, "sam", now);
        assert_eq!(t.wait(a, "other", now), Some(Duration::from_secs(1)));
        // Another address guessing the same login waits too.
        assert_eq!(t.wait(b, "sam", now), Some(Duration::from_secs(1)));
        for _ in 0..5 {
            t.failed(a, "sam", now);
        }
        assert_eq!(t.wait(a, "x", now), Some(Duration::from_secs(32)));
        assert_eq!(t.wait(a, "x", now + Duration::from_secs(32)), None);
        t.succeeded(a, "sam");
        assert_eq!(t.wait(a, "sam", now), None);
    }
}
