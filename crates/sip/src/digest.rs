//! Server-side SIP digest authentication: RFC 3261 §22 with the Digest scheme of RFC 7616 as
//! RFC 8760 applies it to SIP. Algorithms MD5, MD5-sess, SHA-256 and SHA-256-sess; quality of
//! protection `auth` (plus, for MD5 only and only when allowed, RFC 2069 style answers without
//! qop from old phones). `auth-int` and `userhash` are not offered.
//!
//! Sans-IO like the rest of the crate: the time (`now`), the 32-byte server secret and the
//! epoch that nonce timestamps count from are inputs; nothing here reads a clock or draws
//! randomness.
//!
//! # Use
//!
//! A request without usable credentials gets a 401 (407 on a proxy) with one
//! `WWW-Authenticate` (`Proxy-Authenticate`) header per offered algorithm, most preferred
//! first (RFC 8760 §2.3). The retried request's `Authorization` headers are parsed, the one
//! for our realm picked, the user's secret looked up by [`Credentials::username`], and the
//! answer checked:
//!
//! ```
//! # use std::time::{Duration, Instant};
//! use sip::digest::{parse_credentials, Algorithm, Authenticator, UserSecret, Verdict};
//!
//! let epoch = Instant::now();
//! let mut auth = Authenticator::new([7; 32], Duration::from_secs(300), epoch);
//! let offered = [Algorithm::Sha256, Algorithm::Md5];
//! let now = epoch;
//!
//! // 1. No credentials: answer 401 with one WWW-Authenticate header per value.
//! let challenges = auth.challenges(now, "switchboard", &offered, false);
//! assert!(challenges[0].starts_with("Digest realm=\"switchboard\", nonce=\""));
//!
//! // 2. The phone retries with Authorization (other schemes give DigestError::NotDigest
//! //    and are ignored, RFC 4475 §3.3.7; so are credentials for other realms).
//! let header = concat!(
//!     r#"Digest username="1001", realm="switchboard", nonce="forged", "#,
//!     r#"uri="sip:switchboard", response="6629fae49393a05397450978507c4ef1""#,
//! );
//! let creds = parse_credentials(header)?;
//! let secret = UserSecret::Password("demo1001".into()); // looked up by creds.username
//! match auth.verify(now, "REGISTER", "switchboard", &offered, &creds, &secret) {
//!     Verdict::Ok => { /* authenticated as creds.username */ }
//!     Verdict::Stale => { /* 401 again with challenges(now, .., stale = true) */ }
//!     Verdict::Failed(reason) => { /* 401 (403 once a source keeps failing) */
//!         assert_eq!(reason, sip::digest::FailReason::BadNonce);
//!     }
//! }
//! # Ok::<(), sip::digest::DigestError>(())
//! ```
//!
//! # Nonces
//!
//! Nonces are stateless: 43 base64url characters encoding 32 bytes,
//! `issue time (seconds since the epoch, u64 BE) ‖ serial (u64 BE) ‖ HMAC-SHA256(secret,
//! label ‖ time ‖ serial ‖ realm)[..16]`. [`Authenticator::verify`] recomputes the MAC (in
//! constant time) instead of remembering what it issued, so challenges cost no memory. The
//! serial makes every challenge's nonce distinct, so two phones challenged in the same second
//! never share a nonce (which would make the second one's `nc=00000001` look like a replay).
//!
//! A nonce is fresh for the configured lifetime. A correct answer with an older nonce gets
//! [`Verdict::Stale`] and the caller re-challenges with `stale=true`, which phones answer
//! without asking the user again (RFC 7616 §3.3); a wrong answer with an old nonce is still a
//! failure.
//!
//! # Replay protection
//!
//! With `qop=auth` the phone counts its requests per nonce (`nc`). The authenticator keeps,
//! per nonce that has been answered correctly, the highest `nc` seen, and refuses anything not
//! above it ([`FailReason::Replay`]). The table is bounded ([`DEFAULT_REPLAY_CAPACITY`]
//! entries): an entry is forgotten once its nonce can only be stale, and when the table is
//! full the oldest live entry goes. A nonce that may have been forgotten that way, or one
//! first seen with `nc` above 1, is answered [`Verdict::Stale`] (the phone retries at once
//! with a fresh nonce) rather than risking a replay.
//!
//! # What the caller checks
//!
//! - The username: the caller looks the secret up by it; here it only enters the hash.
//! - `uri`: RFC 7616 §3.4.6 lets a server insist that the digest-uri names the request's
//!   Request-URI; whether to do so (proxies and NATs rewrite it) is the caller's choice.
//! - The server secret must be random and new for every [`Authenticator`] (every process
//!   start): nonce timestamps count from `epoch`, so a secret reused with a new epoch would
//!   make nonces from an earlier run look fresh again, and their `nc` history is gone.
//! - Replay protection is per [`Authenticator`]: servers sharing a secret do not share
//!   `nc` history.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use hmac::{Hmac, Mac};
use md5::Md5;
use sha2::{Digest, Sha256};
use tracing::{debug, trace};

use crate::parse::is_token_char;

/// Most nonces whose `nc` history is remembered at once, unless changed with
/// [`Authenticator::set_replay_capacity`]. At about 50 bytes an entry this is a few MB.
pub const DEFAULT_REPLAY_CAPACITY: usize = 65_536;

/// Domain separation for the nonce MAC: the server secret may key other MACs too.
const NONCE_LABEL: &[u8] = b"switchboard sip digest nonce v1\0";
/// Raw nonce: time (8) ‖ serial (8) ‖ truncated MAC (16).
const NONCE_LEN: usize = 32;
const NONCE_MAC_LEN: usize = 16;
/// base64url without padding of [`NONCE_LEN`] bytes.
const NONCE_CHARS: usize = (NONCE_LEN * 8).div_ceil(6);

/// A digest algorithm (RFC 7616 §3.3, IANA "Hash Algorithms for HTTP Digest Authentication").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Algorithm {
    /// `MD5`: the RFC 3261 default, and what an absent `algorithm` parameter means.
    Md5,
    /// `MD5-sess`: HA1 = MD5(MD5(username:realm:password):nonce:cnonce).
    Md5Sess,
    /// `SHA-256` (RFC 7616, RFC 8760).
    Sha256,
    /// `SHA-256-sess`: HA1 = SHA-256(SHA-256(username:realm:password):nonce:cnonce).
    Sha256Sess,
}

impl Algorithm {
    /// All supported algorithms.
    pub const ALL: [Algorithm; 4] = [
        Algorithm::Md5,
        Algorithm::Md5Sess,
        Algorithm::Sha256,
        Algorithm::Sha256Sess,
    ];

    /// The canonical token, as sent in `algorithm=`.
    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::Md5 => "MD5",
            Algorithm::Md5Sess => "MD5-sess",
            Algorithm::Sha256 => "SHA-256",
            Algorithm::Sha256Sess => "SHA-256-sess",
        }
    }

    /// True for the `-sess` variants, whose HA1 also covers the nonce and the client nonce.
    pub fn is_sess(self) -> bool {
        matches!(self, Algorithm::Md5Sess | Algorithm::Sha256Sess)
    }

    fn hash(self) -> HashFn {
        match self {
            Algorithm::Md5 | Algorithm::Md5Sess => HashFn::Md5,
            Algorithm::Sha256 | Algorithm::Sha256Sess => HashFn::Sha256,
        }
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Algorithm {
    type Err = DigestError;

    /// Case-insensitive: `md5`, `MD5-SESS`, `sha-256` are all accepted.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Algorithm::ALL
            .into_iter()
            .find(|a| a.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| DigestError::UnknownAlgorithm(s.to_owned()))
    }
}

/// What the server knows about a user's secret.
///
/// `Debug` does not print the password or the hashes.
#[derive(Clone, PartialEq, Eq)]
pub enum UserSecret {
    /// The plain password.
    Password(String),
    /// Only HA1 = hex of H(username:realm:password), per hash function (what an htdigest-style
    /// store keeps, see [`ha1_hex`]). The MD5 one serves MD5 and MD5-sess, the SHA-256 one
    /// SHA-256 and SHA-256-sess; the `-sess` HA1 is derived from it per request. Hex digits in
    /// either case.
    Ha1 {
        /// MD5(username:realm:password), 32 hex digits.
        md5: Option<String>,
        /// SHA-256(username:realm:password), 64 hex digits.
        sha256: Option<String>,
    },
}

impl fmt::Debug for UserSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UserSecret::Password(_) => f.write_str("Password(<redacted>)"),
            UserSecret::Ha1 { md5, sha256 } => f
                .debug_struct("Ha1")
                .field("md5", &md5.as_ref().map(|_| "<redacted>"))
                .field("sha256", &sha256.as_ref().map(|_| "<redacted>"))
                .finish(),
        }
    }
}

/// HA1 for a non-`-sess` algorithm: lowercase hex of H(username:realm:password), the value
/// [`UserSecret::Ha1`] stores. For a `-sess` algorithm this is the stored base value too.
pub fn ha1_hex(algorithm: Algorithm, username: &str, realm: &str, password: &str) -> String {
    algorithm
        .hash()
        .joined(&[username, realm, password])
        .to_hex()
}

/// A parsed `Authorization` or `Proxy-Authorization` header value (RFC 7616 §3.4, RFC 3261
/// §25.1 `digest-response`). Quoted values are unescaped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    /// `username`: who claims to answer.
    pub username: String,
    /// `realm`: which of the server's challenges is answered.
    pub realm: String,
    /// `nonce`: the server nonce, as sent in the challenge.
    pub nonce: String,
    /// `uri`: the digest-uri the client hashed (normally the Request-URI).
    pub uri: String,
    /// `response`: the hex digest.
    pub response: String,
    /// `algorithm`; [`Algorithm::Md5`] when absent.
    pub algorithm: Algorithm,
    /// `cnonce`: the client nonce (required with `qop`).
    pub cnonce: Option<String>,
    /// `opaque`, if the client echoed one.
    pub opaque: Option<String>,
    /// `qop` as sent (`auth`, `auth-int`, ...); `None` for an RFC 2069 style answer.
    pub qop: Option<String>,
    /// `nc`: the nonce count (required with `qop`). On the wire 8 lower-case hex digits
    /// (RFC 7616 `8LHEX`); upper case is accepted, but the response is checked over the
    /// lower-case form.
    pub nc: Option<u32>,
}

/// Why credentials could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DigestError {
    /// Another scheme (`Basic`, `Bearer`, ...): not for us to judge; ignore the header.
    #[error("not Digest credentials")]
    NotDigest,
    /// Not well-formed; what was expected.
    #[error("malformed Digest credentials: {0}")]
    Syntax(&'static str),
    /// A required parameter is absent.
    #[error("Digest credentials lack the {0} parameter")]
    Missing(&'static str),
    /// A parameter appears twice.
    #[error("Digest parameter {0} appears more than once")]
    Duplicate(&'static str),
    /// An algorithm we do not implement.
    #[error("unsupported Digest algorithm {0:?}")]
    UnknownAlgorithm(String),
    /// `nc` is not 8 hex digits.
    #[error("Digest nc must be 8 hex digits")]
    BadNonceCount,
}

impl DigestError {
    /// The status to answer a request whose credentials are malformed with (400). A
    /// [`DigestError::NotDigest`] header is normally ignored instead.
    pub fn status(&self) -> u16 {
        400
    }
}

/// Parse an `Authorization` / `Proxy-Authorization` header value.
///
/// The scheme `Digest` is matched case-insensitively; parameters come in any order, with or
/// without whitespace around `,` and `=`, quoted (with backslash escapes) or not; unknown
/// parameters are ignored. The caller has already unfolded the header. A header for another
/// scheme gives [`DigestError::NotDigest`]. With `qop`, `cnonce` and `nc` are required.
pub fn parse_credentials(value: &str) -> Result<Credentials, DigestError> {
    let mut sc = Scanner { s: value, pos: 0 };
    sc.skip_ws();
    let scheme = sc.token();
    if scheme.is_empty() {
        return Err(DigestError::Syntax("expected an authentication scheme"));
    }
    if !scheme.eq_ignore_ascii_case("Digest") {
        return Err(DigestError::NotDigest);
    }
    if !matches!(sc.peek(), None | Some(b' ' | b'\t')) {
        return Err(DigestError::Syntax("expected whitespace after the scheme"));
    }
    let raw = raw_params(&mut sc)?;

    let required = |v: Option<String>, p: Param| v.ok_or(DigestError::Missing(p.name()));
    let algorithm = match raw.algorithm {
        None => Algorithm::Md5,
        Some(a) => a.parse()?,
    };
    let nc = raw.nc.as_deref().map(parse_nc).transpose()?;
    let creds = Credentials {
        username: required(raw.username, Param::Username)?,
        realm: required(raw.realm, Param::Realm)?,
        nonce: required(raw.nonce, Param::Nonce)?,
        uri: required(raw.uri, Param::Uri)?,
        response: required(raw.response, Param::Response)?,
        algorithm,
        cnonce: raw.cnonce,
        opaque: raw.opaque,
        qop: raw.qop,
        nc,
    };
    if creds.qop.is_some() {
        if creds.cnonce.is_none() {
            return Err(DigestError::Missing(Param::Cnonce.name()));
        }
        if creds.nc.is_none() {
            return Err(DigestError::Missing(Param::Nc.name()));
        }
    }
    Ok(creds)
}

/// The comma-separated `name=value` list after the scheme (the parameters we know).
fn raw_params(sc: &mut Scanner<'_>) -> Result<RawParams, DigestError> {
    let mut raw = RawParams::default();
    loop {
        sc.skip_ws();
        match sc.peek() {
            None => break,
            // Empty list elements are allowed (RFC 9110 §5.6.1).
            Some(b',') => {
                sc.pos += 1;
                continue;
            }
            Some(_) => {}
        }
        let name = sc.token();
        if name.is_empty() {
            return Err(DigestError::Syntax("expected a parameter name"));
        }
        sc.skip_ws();
        if !sc.eat(b'=') {
            return Err(DigestError::Syntax("expected '=' after a parameter name"));
        }
        sc.skip_ws();
        let param = Param::from_name(name);
        let value = if sc.peek() == Some(b'"') {
            sc.quoted()?
        } else {
            let v = sc.bare();
            if v.is_empty() {
                return Err(DigestError::Syntax("expected a parameter value"));
            }
            // Unknown parameters are skipped without copying their value.
            if param.is_some() {
                v.to_owned()
            } else {
                String::new()
            }
        };
        sc.skip_ws();
        if !matches!(sc.peek(), None | Some(b',')) {
            return Err(DigestError::Syntax("expected ',' between parameters"));
        }
        if let Some(p) = param {
            let slot = raw.slot(p);
            if slot.is_some() {
                return Err(DigestError::Duplicate(p.name()));
            }
            *slot = Some(value);
        }
    }
    Ok(raw)
}

/// A server's challenge (`WWW-Authenticate` / `Proxy-Authenticate`, RFC 7616 §3.3), as a
/// client (a trunk registering to its carrier, a call out through it) reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    /// `realm`.
    pub realm: String,
    /// `nonce`.
    pub nonce: String,
    /// `algorithm`; [`Algorithm::Md5`] when absent.
    pub algorithm: Algorithm,
    /// `opaque`, echoed back unchanged.
    pub opaque: Option<String>,
    /// Whether the server offers `qop=auth` (we never answer `auth-int`).
    pub qop_auth: bool,
}

/// Parse a `WWW-Authenticate` / `Proxy-Authenticate` value. Another scheme gives
/// [`DigestError::NotDigest`]; an algorithm we do not implement gives
/// [`DigestError::UnknownAlgorithm`] (a server offering several challenges sends one header
/// per algorithm: pick the first that parses).
pub fn parse_challenge(value: &str) -> Result<Challenge, DigestError> {
    let mut sc = Scanner { s: value, pos: 0 };
    sc.skip_ws();
    let scheme = sc.token();
    if !scheme.eq_ignore_ascii_case("Digest") {
        return Err(if scheme.is_empty() {
            DigestError::Syntax("expected an authentication scheme")
        } else {
            DigestError::NotDigest
        });
    }
    let raw = raw_params(&mut sc)?;
    let algorithm = match raw.algorithm {
        None => Algorithm::Md5,
        Some(a) => a.parse()?,
    };
    let qop_auth = raw
        .qop
        .as_deref()
        .is_some_and(|q| q.split(',').any(|t| t.trim().eq_ignore_ascii_case("auth")));
    if raw.qop.is_some() && !qop_auth {
        // Only auth-int offered: we cannot answer it.
        return Err(DigestError::Syntax("only qop=auth-int is offered"));
    }
    Ok(Challenge {
        realm: raw.realm.ok_or(DigestError::Missing("realm"))?,
        nonce: raw.nonce.ok_or(DigestError::Missing("nonce"))?,
        algorithm,
        opaque: raw.opaque,
        qop_auth,
    })
}

/// The `Authorization` / `Proxy-Authorization` value that answers `challenge` for a request
/// with `method` and Request-URI `uri` (RFC 7616 §3.4). `cnonce` is the client nonce (random,
/// drawn by the caller) and `nc` the count of requests answered with this nonce (from 1).
pub fn authorization(
    challenge: &Challenge,
    username: &str,
    password: &str,
    method: &str,
    uri: &str,
    cnonce: &str,
    nc: u32,
) -> String {
    let h = challenge.algorithm.hash();
    let mut ha1 = h.joined(&[username, &challenge.realm, password]).to_hex();
    if challenge.algorithm.is_sess() {
        ha1 = h.joined(&[&ha1, &challenge.nonce, cnonce]).to_hex();
    }
    let ha2 = h.joined(&[method, uri]).to_hex();
    let nc_text = format!("{nc:08x}");
    let response = if challenge.qop_auth {
        h.joined(&[&ha1, &challenge.nonce, &nc_text, cnonce, "auth", &ha2])
    } else {
        h.joined(&[&ha1, &challenge.nonce, &ha2])
    }
    .to_hex();
    let mut v = format!(
        "Digest username={}, realm={}, nonce={}, uri={}, response=\"{response}\", algorithm={}",
        quote(username),
        quote(&challenge.realm),
        quote(&challenge.nonce),
        quote(uri),
        challenge.algorithm.as_str(),
    );
    if challenge.qop_auth {
        v.push_str(&format!(
            ", qop=auth, nc={nc_text}, cnonce={}",
            quote(cnonce)
        ));
    }
    if let Some(o) = &challenge.opaque {
        v.push_str(&format!(", opaque={}", quote(o)));
    }
    v
}

/// `nc-value = 8LHEX`; upper-case digits are tolerated (the response is then computed over
/// the canonical lower-case form).
fn parse_nc(s: &str) -> Result<u32, DigestError> {
    if s.len() != 8 || !s.bytes().all(|c| c.is_ascii_hexdigit()) {
        return Err(DigestError::BadNonceCount);
    }
    u32::from_str_radix(s, 16).map_err(|_| DigestError::BadNonceCount)
}

/// The parameters we read.
#[derive(Debug, Clone, Copy)]
enum Param {
    Username,
    Realm,
    Nonce,
    Uri,
    Response,
    Algorithm,
    Cnonce,
    Opaque,
    Qop,
    Nc,
}

impl Param {
    const ALL: [Param; 10] = [
        Param::Username,
        Param::Realm,
        Param::Nonce,
        Param::Uri,
        Param::Response,
        Param::Algorithm,
        Param::Cnonce,
        Param::Opaque,
        Param::Qop,
        Param::Nc,
    ];

    fn name(self) -> &'static str {
        match self {
            Param::Username => "username",
            Param::Realm => "realm",
            Param::Nonce => "nonce",
            Param::Uri => "uri",
            Param::Response => "response",
            Param::Algorithm => "algorithm",
            Param::Cnonce => "cnonce",
            Param::Opaque => "opaque",
            Param::Qop => "qop",
            Param::Nc => "nc",
        }
    }

    /// Parameter names are case-insensitive (RFC 7235 §2.1).
    fn from_name(name: &str) -> Option<Param> {
        Param::ALL
            .into_iter()
            .find(|p| p.name().eq_ignore_ascii_case(name))
    }
}

#[derive(Default)]
struct RawParams {
    username: Option<String>,
    realm: Option<String>,
    nonce: Option<String>,
    uri: Option<String>,
    response: Option<String>,
    algorithm: Option<String>,
    cnonce: Option<String>,
    opaque: Option<String>,
    qop: Option<String>,
    nc: Option<String>,
}

impl RawParams {
    fn slot(&mut self, p: Param) -> &mut Option<String> {
        match p {
            Param::Username => &mut self.username,
            Param::Realm => &mut self.realm,
            Param::Nonce => &mut self.nonce,
            Param::Uri => &mut self.uri,
            Param::Response => &mut self.response,
            Param::Algorithm => &mut self.algorithm,
            Param::Cnonce => &mut self.cnonce,
            Param::Opaque => &mut self.opaque,
            Param::Qop => &mut self.qop,
            Param::Nc => &mut self.nc,
        }
    }
}

/// A cursor over a header value. It only stops at ASCII bytes, so every slice it takes is
/// on a char boundary; slicing still goes through `get` so no input can make it panic.
struct Scanner<'a> {
    s: &'a str,
    pos: usize,
}

impl<'a> Scanner<'a> {
    fn peek(&self) -> Option<u8> {
        self.s.as_bytes().get(self.pos).copied()
    }

    fn eat(&mut self, c: u8) -> bool {
        let hit = self.peek() == Some(c);
        if hit {
            self.pos += 1;
        }
        hit
    }

    fn skip_ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t')) {
            self.pos += 1;
        }
    }

    fn take_while(&mut self, keep: impl Fn(u8) -> bool) -> &'a str {
        let start = self.pos;
        while self.peek().is_some_and(&keep) {
            self.pos += 1;
        }
        self.s.get(start..self.pos).unwrap_or_default()
    }

    fn token(&mut self) -> &'a str {
        self.take_while(is_token_char)
    }

    /// An unquoted value: leniently anything up to whitespace or a comma (some phones send
    /// base64 nonces unquoted), but no quotes or control characters.
    fn bare(&mut self) -> &'a str {
        self.take_while(|c| !matches!(c, b' ' | b'\t' | b',' | b'"') && !c.is_ascii_control())
    }

    /// A quoted-string starting at the opening quote; returns it unescaped.
    fn quoted(&mut self) -> Result<String, DigestError> {
        let body = self.s.get(self.pos + 1..).unwrap_or_default();
        let mut out = String::new();
        let mut chars = body.char_indices();
        while let Some((i, c)) = chars.next() {
            match c {
                '"' => {
                    self.pos += 1 + i + 1;
                    return Ok(out);
                }
                '\\' => match chars.next() {
                    Some((_, e)) if !is_ctl(e) => out.push(e),
                    Some(_) => {
                        return Err(DigestError::Syntax("control character in a quoted string"))
                    }
                    None => return Err(DigestError::Syntax("unterminated quoted string")),
                },
                c if is_ctl(c) => {
                    return Err(DigestError::Syntax("control character in a quoted string"))
                }
                c => out.push(c),
            }
        }
        Err(DigestError::Syntax("unterminated quoted string"))
    }
}

/// Control characters other than HTAB, which quoted strings may not carry.
fn is_ctl(c: char) -> bool {
    c != '\t' && c.is_ascii_control()
}

/// Why a digest answer was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum FailReason {
    /// The credentials are for another realm.
    WrongRealm,
    /// The algorithm is not one we offered.
    AlgorithmNotOffered,
    /// No `qop`, and RFC 2069 style answers are not accepted (for this algorithm, or at all:
    /// see [`Authenticator::allow_no_qop`]).
    QopRequired,
    /// A `qop` other than `auth` (we never offer `auth-int`).
    QopNotSupported,
    /// `qop` or a `-sess` algorithm without `cnonce`.
    MissingCnonce,
    /// `qop` without `nc`.
    MissingNonceCount,
    /// The nonce is not one we issued for this realm (forged, altered, from the future, or
    /// from another server secret).
    BadNonce,
    /// Only HA1 hashes are stored and none (or a malformed one) for this algorithm's hash.
    MissingHa1ForAlgorithm,
    /// The response digest is wrong: wrong password, or a different request was hashed.
    WrongResponse,
    /// The nonce count did not increase: a replayed answer.
    Replay,
}

/// The outcome of [`Authenticator::verify`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Verdict {
    /// Authenticated as [`Credentials::username`].
    Ok,
    /// The answer is right but its nonce can no longer be used (expired, or its count history
    /// is gone): challenge again with `stale=true`, the phone retries without the user.
    Stale,
    /// Refused.
    Failed(FailReason),
}

/// Issues digest challenges and checks the answers (see the [module docs](self)).
///
/// `Debug` does not print the server secret.
pub struct Authenticator {
    /// HMAC-SHA256 keyed with the server secret (cloned per nonce).
    mac: Hmac<Sha256>,
    nonce_lifetime: Duration,
    epoch: Instant,
    /// Next nonce serial; atomic so issuing a challenge needs only `&self`.
    next_serial: AtomicU64,
    /// The latest `now` given to [`Authenticator::verify`], which keeps its time monotonic.
    latest: Option<Instant>,
    counts: NonceCounts,
    /// Accept answers without `qop` (RFC 2069 style, for old phones), MD5 only. Default `true`.
    ///
    /// Such answers carry no nonce count and no client nonce, so a captured one would be
    /// valid for the same method and URI for the nonce's whole lifetime. To close that, a
    /// nonce answered without `qop` is single-use here: a second answer with it gets
    /// [`Verdict::Stale`], so a replay achieves only a new challenge, and a legitimate old
    /// phone that reuses nonces pays one extra round trip per request. Also, without a client
    /// nonce the phone cannot tell a real server from one replaying a chosen nonce, and MD5
    /// itself is weak: set `false` when every phone supports `qop=auth`.
    pub allow_no_qop: bool,
}

impl fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Authenticator")
            .field("secret", &"<redacted>")
            .field("nonce_lifetime", &self.nonce_lifetime)
            .field("epoch", &self.epoch)
            .field("allow_no_qop", &self.allow_no_qop)
            .field("nonces_tracked", &self.counts.highest.len())
            .field("replay_capacity", &self.counts.capacity)
            .finish_non_exhaustive()
    }
}

/// A nonce whose MAC checked out.
#[derive(Debug, Clone, Copy)]
struct IssuedNonce {
    /// Seconds since the epoch at issue.
    secs: u64,
    serial: u64,
}

impl Authenticator {
    /// A new authenticator. `secret` keys the nonce MAC and must be random and new for every
    /// instance (see the [module docs](self)); nonces are fresh for `nonce_lifetime`; nonce
    /// timestamps count from `epoch` (normally the `now` of the process start).
    pub fn new(secret: [u8; 32], nonce_lifetime: Duration, epoch: Instant) -> Self {
        let mac = <Hmac<Sha256> as Mac>::new_from_slice(&secret)
            .expect("HMAC accepts keys of any length");
        Authenticator {
            mac,
            nonce_lifetime,
            epoch,
            next_serial: AtomicU64::new(1),
            latest: None,
            counts: NonceCounts::new(DEFAULT_REPLAY_CAPACITY),
            allow_no_qop: true,
        }
    }

    /// How long a nonce stays fresh.
    pub fn nonce_lifetime(&self) -> Duration {
        self.nonce_lifetime
    }

    /// Bound the nonce-count table to `capacity` nonces (at least 1; default
    /// [`DEFAULT_REPLAY_CAPACITY`]). Size it above the number of correct answers with distinct
    /// nonces expected within one nonce lifetime; beyond it the oldest are forgotten and their
    /// phones get one `stale=true` re-challenge.
    pub fn set_replay_capacity(&mut self, capacity: usize) {
        self.counts.capacity = capacity.max(1);
    }

    /// How many nonces' counts are remembered now (for metrics).
    pub fn replay_table_len(&self) -> usize {
        self.counts.highest.len()
    }

    /// The challenge header values for a 401/407: one `WWW-Authenticate` /
    /// `Proxy-Authenticate` value per algorithm, in the given order (put the preferred first,
    /// RFC 8760 §2.3), all with the same new nonce:
    ///
    /// `Digest realm="…", nonce="…", algorithm=SHA-256, qop="auth"`, plus `, stale=true` when
    /// `stale`. No `opaque` is sent (the nonce carries all state).
    pub fn challenges(
        &self,
        now: Instant,
        realm: &str,
        algorithms: &[Algorithm],
        stale: bool,
    ) -> Vec<String> {
        if algorithms.is_empty() {
            return Vec::new();
        }
        let nonce = self.issue_nonce(now, realm);
        let realm = quote(realm);
        let stale = if stale { ", stale=true" } else { "" };
        algorithms
            .iter()
            .map(|a| {
                format!(
                    "Digest realm={realm}, nonce=\"{nonce}\", algorithm={a}, qop=\"auth\"{stale}"
                )
            })
            .collect()
    }

    /// Check an answer. `method` is the request's method (e.g. `REGISTER`; for `qop=auth`,
    /// A2 = method:digest-uri), `realm` ours, `allowed` the algorithms we offered this user,
    /// `secret` the one looked up by `creds.username`.
    ///
    /// Checks, in order: realm, algorithm, qop, nonce MAC and age, the digest (in constant
    /// time), then the nonce count. Only a correct answer touches the nonce-count table.
    pub fn verify(
        &mut self,
        now: Instant,
        method: &str,
        realm: &str,
        allowed: &[Algorithm],
        creds: &Credentials,
        secret: &UserSecret,
    ) -> Verdict {
        let now = match self.latest {
            Some(latest) if latest > now => latest,
            _ => now,
        };
        self.latest = Some(now);
        self.counts.forget_expired(now);
        match self.check(now, method, realm, allowed, creds, secret) {
            Ok(verdict) => {
                trace!(algorithm = %creds.algorithm, ?verdict, "digest answer checked");
                verdict
            }
            Err(reason) => {
                trace!(algorithm = %creds.algorithm, ?reason, "digest answer refused");
                Verdict::Failed(reason)
            }
        }
    }

    fn check(
        &mut self,
        now: Instant,
        method: &str,
        realm: &str,
        allowed: &[Algorithm],
        creds: &Credentials,
        secret: &UserSecret,
    ) -> Result<Verdict, FailReason> {
        if creds.realm != realm {
            return Err(FailReason::WrongRealm);
        }
        let algorithm = creds.algorithm;
        if !allowed.contains(&algorithm) {
            return Err(FailReason::AlgorithmNotOffered);
        }
        let qop = match creds.qop.as_deref() {
            None if self.allow_no_qop && algorithm == Algorithm::Md5 => None,
            None => return Err(FailReason::QopRequired),
            Some(q) if q.eq_ignore_ascii_case("auth") => {
                let nc = creds.nc.ok_or(FailReason::MissingNonceCount)?;
                let cnonce = creds.cnonce.as_deref().ok_or(FailReason::MissingCnonce)?;
                Some(Qop { qop: q, nc, cnonce })
            }
            Some(_) => return Err(FailReason::QopNotSupported),
        };
        let issued = self
            .open_nonce(now, realm, &creds.nonce)
            .ok_or(FailReason::BadNonce)?;

        let expected = expected_response(algorithm, secret, creds, qop.as_ref(), method)?;
        let mut got = [0u8; 32];
        let matches = decode_hex(&creds.response, &mut got)
            .and_then(|n| got.get(..n))
            .is_some_and(|got| ct_eq(got, expected.as_bytes()));
        if !matches {
            return Err(FailReason::WrongResponse);
        }

        let age = now
            .saturating_duration_since(self.epoch)
            .saturating_sub(Duration::from_secs(issued.secs));
        if age >= self.nonce_lifetime {
            return Ok(Verdict::Stale);
        }
        let forget_at = now.checked_add(self.nonce_lifetime);
        self.counts
            .record(forget_at, issued.serial, qop.map(|q| q.nc))
    }

    fn issue_nonce(&self, now: Instant, realm: &str) -> String {
        let secs = now.saturating_duration_since(self.epoch).as_secs();
        let serial = self.next_serial.fetch_add(1, Ordering::Relaxed);
        let mut raw = [0u8; NONCE_LEN];
        let (head, tag) = raw.split_at_mut(16);
        let (time, ser) = head.split_at_mut(8);
        time.copy_from_slice(&secs.to_be_bytes());
        ser.copy_from_slice(&serial.to_be_bytes());
        tag.copy_from_slice(&self.nonce_mac(secs, serial, realm));
        base64url(&raw)
    }

    /// Decode and authenticate a nonce; `None` unless we issued it for `realm`, not after `now`.
    fn open_nonce(&self, now: Instant, realm: &str, nonce: &str) -> Option<IssuedNonce> {
        let mut raw = [0u8; NONCE_LEN];
        if nonce.len() != NONCE_CHARS || !base64url_decode(nonce.as_bytes(), &mut raw) {
            return None;
        }
        let (head, tag) = raw.split_at(16);
        let (time, ser) = head.split_at(8);
        let secs = u64::from_be_bytes(time.try_into().ok()?);
        let serial = u64::from_be_bytes(ser.try_into().ok()?);
        if !ct_eq(&self.nonce_mac(secs, serial, realm), tag) {
            return None;
        }
        if secs > now.saturating_duration_since(self.epoch).as_secs() {
            return None;
        }
        Some(IssuedNonce { secs, serial })
    }

    fn nonce_mac(&self, secs: u64, serial: u64, realm: &str) -> [u8; NONCE_MAC_LEN] {
        let mut mac = self.mac.clone();
        mac.update(NONCE_LABEL);
        mac.update(&secs.to_be_bytes());
        mac.update(&serial.to_be_bytes());
        mac.update(realm.as_bytes());
        let full = mac.finalize().into_bytes();
        let mut out = [0u8; NONCE_MAC_LEN];
        for (o, b) in out.iter_mut().zip(full.iter()) {
            *o = *b;
        }
        out
    }
}

/// The `qop=auth` part of an answer.
#[derive(Debug, Clone, Copy)]
struct Qop<'a> {
    /// As sent, since it is hashed as sent.
    qop: &'a str,
    nc: u32,
    cnonce: &'a str,
}

/// The response digest the client should have sent (RFC 7616 §3.4.1, RFC 2617 §3.2.2.1).
fn expected_response(
    algorithm: Algorithm,
    secret: &UserSecret,
    creds: &Credentials,
    qop: Option<&Qop<'_>>,
    method: &str,
) -> Result<HashOut, FailReason> {
    let h = algorithm.hash();
    let base = match secret {
        UserSecret::Password(p) => h.joined(&[&creds.username, &creds.realm, p]).to_hex(),
        UserSecret::Ha1 { md5, sha256 } => {
            let stored = match h {
                HashFn::Md5 => md5,
                HashFn::Sha256 => sha256,
            };
            let stored = stored
                .as_deref()
                .ok_or(FailReason::MissingHa1ForAlgorithm)?;
            // Normalise to lower case (the hash is over the hex text) and check the length.
            let mut buf = [0u8; 32];
            let n = decode_hex(stored, &mut buf).ok_or(FailReason::MissingHa1ForAlgorithm)?;
            if n != h.output_len() {
                return Err(FailReason::MissingHa1ForAlgorithm);
            }
            to_hex(buf.get(..n).unwrap_or_default())
        }
    };
    let ha1 = if algorithm.is_sess() {
        let cnonce = creds.cnonce.as_deref().ok_or(FailReason::MissingCnonce)?;
        h.joined(&[&base, &creds.nonce, cnonce]).to_hex()
    } else {
        base
    };
    let ha2 = h.joined(&[method, &creds.uri]).to_hex();
    Ok(match qop {
        Some(q) => {
            let nc = format!("{:08x}", q.nc);
            h.joined(&[&ha1, &creds.nonce, &nc, q.cnonce, q.qop, &ha2])
        }
        None => h.joined(&[&ha1, &creds.nonce, &ha2]),
    })
}

/// Highest nonce count seen per answered nonce, bounded in size and age.
///
/// Every entry is in `highest` and, once, in `expiry`; entries are queued in the order they
/// were added with `forget_at = now + lifetime`, and `now` only moves forward, so the queue is
/// ordered by expiry and both pruning and eviction take from its front.
#[derive(Debug)]
struct NonceCounts {
    /// Nonce serial → highest `nc` (0: answered once without qop).
    highest: HashMap<u64, u32>,
    /// (forget at, serial); `None` = never (the lifetime overflowed `Instant`).
    expiry: VecDeque<(Option<Instant>, u64)>,
    capacity: usize,
    /// The highest serial forgotten while its nonce was still fresh (table full).
    evicted_upto: u64,
}

impl NonceCounts {
    fn new(capacity: usize) -> Self {
        NonceCounts {
            highest: HashMap::new(),
            expiry: VecDeque::new(),
            capacity: capacity.max(1),
            evicted_upto: 0,
        }
    }

    /// Record a correct answer; `nc` is `None` for one without qop. Expired entries must
    /// have been forgotten first.
    fn record(
        &mut self,
        forget_at: Option<Instant>,
        serial: u64,
        nc: Option<u32>,
    ) -> Result<Verdict, FailReason> {
        match (self.highest.get_mut(&serial), nc) {
            // A nonce answered without qop is single-use.
            (Some(_), None) => Ok(Verdict::Stale),
            (Some(highest), Some(nc)) => {
                if nc <= *highest {
                    Err(FailReason::Replay)
                } else {
                    *highest = nc;
                    Ok(Verdict::Ok)
                }
            }
            (None, Some(0)) => Err(FailReason::Replay),
            // We may have forgotten this nonce's history: make the phone take a fresh one.
            (None, Some(nc)) if nc > 1 => Ok(Verdict::Stale),
            (None, _) if serial <= self.evicted_upto => Ok(Verdict::Stale),
            (None, nc) => {
                self.insert(forget_at, serial, nc.unwrap_or(0));
                Ok(Verdict::Ok)
            }
        }
    }

    fn forget_expired(&mut self, now: Instant) {
        while let Some(&(Some(at), serial)) = self.expiry.front() {
            if at > now {
                break;
            }
            self.expiry.pop_front();
            self.highest.remove(&serial);
        }
    }

    fn insert(&mut self, forget_at: Option<Instant>, serial: u64, nc: u32) {
        while self.highest.len() >= self.capacity {
            let Some((_, oldest)) = self.expiry.pop_front() else {
                break;
            };
            self.highest.remove(&oldest);
            self.evicted_upto = self.evicted_upto.max(oldest);
            debug!(
                capacity = self.capacity,
                "nonce-count table full: forgetting the oldest live nonce"
            );
        }
        self.highest.insert(serial, nc);
        self.expiry.push_back((forget_at, serial));
    }
}

/// The hash function behind an algorithm.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum HashFn {
    Md5,
    Sha256,
}

impl HashFn {
    fn output_len(self) -> usize {
        match self {
            HashFn::Md5 => 16,
            HashFn::Sha256 => 32,
        }
    }

    /// H(parts joined with ':').
    fn joined(self, parts: &[&str]) -> HashOut {
        match self {
            HashFn::Md5 => joined::<Md5>(parts),
            HashFn::Sha256 => joined::<Sha256>(parts),
        }
    }
}

fn joined<D: Digest>(parts: &[&str]) -> HashOut {
    let mut d = D::new();
    for (i, p) in parts.iter().enumerate() {
        if i > 0 {
            d.update(b":");
        }
        d.update(p.as_bytes());
    }
    let digest = d.finalize();
    let mut out = HashOut {
        buf: [0; 32],
        len: 0,
    };
    for (o, b) in out.buf.iter_mut().zip(digest.iter()) {
        *o = *b;
        out.len += 1;
    }
    out
}

/// A digest of up to 32 bytes, on the stack.
#[derive(Clone, Copy)]
struct HashOut {
    buf: [u8; 32],
    len: usize,
}

impl HashOut {
    fn as_bytes(&self) -> &[u8] {
        self.buf.get(..self.len).unwrap_or_default()
    }

    fn to_hex(self) -> String {
        to_hex(self.as_bytes())
    }
}

/// Lower-case hex.
fn to_hex(bytes: &[u8]) -> String {
    hex::encode(bytes)
}

/// Decode hex (either case) into `out`; the number of bytes, or `None` if malformed or longer.
fn decode_hex(s: &str, out: &mut [u8; 32]) -> Option<usize> {
    if !s.len().is_multiple_of(2) || s.len() / 2 > out.len() {
        return None;
    }
    let n = s.len() / 2;
    hex::decode_to_slice(s, out.get_mut(..n)?).ok()?;
    Some(n)
}

/// Equality in time that depends only on the lengths (which are public), not the contents.
fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    use subtle::ConstantTimeEq;
    a.ct_eq(b).into()
}

/// A quoted-string (RFC 3261 §25.1) for `s`.
fn quote(s: &str) -> String {
    let mut q = String::with_capacity(s.len() + 2);
    q.push('"');
    for c in s.chars() {
        if c == '"' || c == '\\' {
            q.push('\\');
        }
        q.push(c);
    }
    q.push('"');
    q
}

/// base64url without padding (RFC 4648 §5): only characters that need no escaping anywhere.
fn base64url(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// Decode base64url without padding into exactly `out`; false unless `s` is the canonical
/// encoding of `out.len()` bytes (the engine refuses non-zero trailing bits, so two strings
/// never decode to one nonce).
fn base64url_decode(s: &[u8], out: &mut [u8]) -> bool {
    use base64::Engine;
    match base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(s) {
        Ok(v) if v.len() == out.len() => {
            out.copy_from_slice(&v);
            true
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const REALM: &str = "switchboard";
    const URI: &str = "sip:switchboard.example.com";
    const LIFETIME: Duration = Duration::from_secs(300);

    fn hex_of(b: &[u8]) -> String {
        b.iter().map(|x| format!("{x:02x}")).collect()
    }

    /// The client's H, written independently of the server's.
    fn client_h(alg: Algorithm, s: &str) -> String {
        match alg {
            Algorithm::Md5 | Algorithm::Md5Sess => hex_of(&Md5::digest(s.as_bytes())),
            Algorithm::Sha256 | Algorithm::Sha256Sess => hex_of(&Sha256::digest(s.as_bytes())),
        }
    }

    /// A quoted parameter of one of our challenges.
    fn challenge_param(challenge: &str, name: &str) -> Option<String> {
        let start = challenge.find(&format!(" {name}="))? + name.len() + 2;
        let rest = challenge.get(start..)?;
        Some(match rest.strip_prefix('"') {
            Some(r) => r.get(..r.find('"')?)?.to_owned(),
            None => rest.split(',').next()?.to_owned(),
        })
    }

    struct Answer<'a> {
        user: &'a str,
        password: &'a str,
        method: &'a str,
        uri: &'a str,
        /// `Some((nc, cnonce))` for qop=auth.
        qop: Option<(u32, &'a str)>,
    }

    impl Answer<'_> {
        fn new(nc: u32) -> Answer<'static> {
            Answer {
                user: "1001",
                password: "demo1001",
                method: "REGISTER",
                uri: URI,
                qop: Some((nc, "0a4f113b")),
            }
        }
    }

    /// What a phone sends back for `challenge` (RFC 7616 §3.4.1; RFC 2069 without qop).
    fn client_authorization(challenge: &str, a: &Answer<'_>) -> String {
        let realm = challenge_param(challenge, "realm").unwrap();
        let nonce = challenge_param(challenge, "nonce").unwrap();
        let alg: Algorithm = challenge_param(challenge, "algorithm")
            .unwrap_or_else(|| "MD5".into())
            .parse()
            .unwrap();
        let mut ha1 = client_h(alg, &format!("{}:{realm}:{}", a.user, a.password));
        let cnonce = a.qop.map(|q| q.1).unwrap_or("");
        if alg.is_sess() {
            ha1 = client_h(alg, &format!("{ha1}:{nonce}:{cnonce}"));
        }
        let ha2 = client_h(alg, &format!("{}:{}", a.method, a.uri));
        match a.qop {
            Some((nc, cnonce)) => {
                let nc = format!("{nc:08x}");
                let response = client_h(alg, &format!("{ha1}:{nonce}:{nc}:{cnonce}:auth:{ha2}"));
                format!(
                    "Digest username=\"{}\", realm=\"{realm}\", nonce=\"{nonce}\", uri=\"{}\", \
                     response=\"{response}\", algorithm={alg}, cnonce=\"{cnonce}\", qop=auth, nc={nc}",
                    a.user, a.uri
                )
            }
            None => {
                let response = client_h(alg, &format!("{ha1}:{nonce}:{ha2}"));
                format!(
                    "Digest username=\"{}\", realm=\"{realm}\", nonce=\"{nonce}\", uri=\"{}\", \
                     response=\"{response}\", algorithm={alg}",
                    a.user, a.uri
                )
            }
        }
    }

    fn authenticator(t0: Instant) -> Authenticator {
        Authenticator::new([0x5a; 32], LIFETIME, t0)
    }

    fn password() -> UserSecret {
        UserSecret::Password("demo1001".into())
    }

    /// Challenge with `alg`, answer with `a`, verify at `at`.
    fn round_trip(
        auth: &mut Authenticator,
        t0: Instant,
        alg: Algorithm,
        a: &Answer<'_>,
    ) -> Verdict {
        let ch = auth.challenges(t0, REALM, &[alg], false);
        let creds = parse_credentials(&client_authorization(&ch[0], a)).unwrap();
        auth.verify(t0, a.method, REALM, &[alg], &creds, &password())
    }

    fn response_hex(creds: &Credentials, secret: &UserSecret, method: &str) -> String {
        let qop = creds.qop.as_deref().map(|q| Qop {
            qop: q,
            nc: creds.nc.unwrap(),
            cnonce: creds.cnonce.as_deref().unwrap(),
        });
        expected_response(creds.algorithm, secret, creds, qop.as_ref(), method)
            .unwrap()
            .to_hex()
    }

    // --- Known answers -------------------------------------------------------------------

    #[test]
    fn rfc2617_md5_known_answer() {
        // RFC 2617 §3.5.
        let creds = parse_credentials(
            "Digest username=\"Mufasa\", realm=\"testrealm@host.com\", \
             nonce=\"dcd98b7102dd2f0e8b11d0f600bfb0c093\", uri=\"/dir/index.html\", qop=auth, \
             nc=00000001, cnonce=\"0a4f113b\", response=\"6629fae49393a05397450978507c4ef1\", \
             opaque=\"5ccc069c403ebaf9f0171e9517f40e41\"",
        )
        .unwrap();
        let expected = "6629fae49393a05397450978507c4ef1";
        assert_eq!(creds.response, expected);
        let password = UserSecret::Password("Circle Of Life".into());
        assert_eq!(response_hex(&creds, &password, "GET"), expected);
        // The same from a stored HA1, in upper case.
        let ha1 = ha1_hex(
            Algorithm::Md5,
            "Mufasa",
            "testrealm@host.com",
            "Circle Of Life",
        );
        let stored = UserSecret::Ha1 {
            md5: Some(ha1.to_uppercase()),
            sha256: None,
        };
        assert_eq!(response_hex(&creds, &stored, "GET"), expected);
    }

    #[test]
    fn rfc7616_sha256_and_md5_known_answers() {
        // RFC 7616 §3.9.1 (password "Circle of Life", erratum 4495).
        let header = |alg: &str, response: &str| {
            format!(
                "Digest username=\"Mufasa\", realm=\"http-auth@example.org\", \
                 uri=\"/dir/index.html\", algorithm={alg}, \
                 nonce=\"7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v\", nc=00000001, \
                 cnonce=\"f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ\", qop=auth, \
                 response=\"{response}\", opaque=\"FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS\""
            )
        };
        let password = UserSecret::Password("Circle of Life".into());
        for (alg, expected) in [
            (
                "SHA-256",
                "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1",
            ),
            ("MD5", "8ca523f5e9506fed4657c9700eebdbec"),
        ] {
            let creds = parse_credentials(&header(alg, expected)).unwrap();
            assert_eq!(creds.algorithm.as_str(), alg);
            assert_eq!(response_hex(&creds, &password, "GET"), expected, "{alg}");
        }
        let sha_ha1 = ha1_hex(
            Algorithm::Sha256,
            "Mufasa",
            "http-auth@example.org",
            "Circle of Life",
        );
        let creds = parse_credentials(&header("SHA-256", "")).unwrap();
        let stored = UserSecret::Ha1 {
            md5: None,
            sha256: Some(sha_ha1),
        };
        assert_eq!(
            response_hex(&creds, &stored, "GET"),
            "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"
        );
    }

    // --- Challenges ----------------------------------------------------------------------

    #[test]
    fn challenges_one_per_algorithm_in_order_with_one_fresh_nonce() {
        let t0 = Instant::now();
        let auth = authenticator(t0);
        let ch = auth.challenges(t0, REALM, &[Algorithm::Sha256, Algorithm::Md5], false);
        assert_eq!(ch.len(), 2);
        let nonce = challenge_param(&ch[0], "nonce").unwrap();
        assert_eq!(nonce.len(), NONCE_CHARS);
        assert!(nonce
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_'));
        assert_eq!(
            ch[0],
            format!(
                "Digest realm=\"switchboard\", nonce=\"{nonce}\", algorithm=SHA-256, qop=\"auth\""
            )
        );
        assert_eq!(
            ch[1],
            format!("Digest realm=\"switchboard\", nonce=\"{nonce}\", algorithm=MD5, qop=\"auth\"")
        );
        let again = auth.challenges(t0, REALM, &[Algorithm::Md5], true);
        assert!(
            again[0].ends_with(", qop=\"auth\", stale=true"),
            "{}",
            again[0]
        );
        assert_ne!(
            challenge_param(&again[0], "nonce").unwrap(),
            nonce,
            "a nonce per challenge"
        );
        assert!(auth.challenges(t0, REALM, &[], false).is_empty());
        let odd = auth.challenges(t0, "a \"quoted\" \\ realm", &[Algorithm::Md5], false);
        assert!(
            odd[0].starts_with(r#"Digest realm="a \"quoted\" \\ realm", "#),
            "{}",
            odd[0]
        );
    }

    // --- Round trips ---------------------------------------------------------------------

    #[test]
    fn round_trip_every_algorithm() {
        let t0 = Instant::now();
        let mut auth = authenticator(t0);
        for alg in Algorithm::ALL {
            assert_eq!(
                round_trip(&mut auth, t0, alg, &Answer::new(1)),
                Verdict::Ok,
                "{alg}"
            );
        }
    }

    #[test]
    fn round_trip_from_stored_ha1_including_sess() {
        let t0 = Instant::now();
        let mut auth = authenticator(t0);
        let stored = UserSecret::Ha1 {
            md5: Some(ha1_hex(Algorithm::Md5, "1001", REALM, "demo1001")),
            sha256: Some(ha1_hex(Algorithm::Sha256, "1001", REALM, "demo1001").to_uppercase()),
        };
        for alg in Algorithm::ALL {
            let ch = auth.challenges(t0, REALM, &[alg], false);
            let creds = parse_credentials(&client_authorization(&ch[0], &Answer::new(1))).unwrap();
            let v = auth.verify(t0, "REGISTER", REALM, &Algorithm::ALL, &creds, &stored);
            assert_eq!(v, Verdict::Ok, "{alg}");
        }
    }

    #[test]
    fn missing_or_malformed_ha1_for_the_algorithm_fails() {
        let t0 = Instant::now();
        let mut auth = authenticator(t0);
        let ch = auth.challenges(t0, REALM, &[Algorithm::Sha256], false);
        let creds = parse_credentials(&client_authorization(&ch[0], &Answer::new(1))).unwrap();
        for stored in [
            UserSecret::Ha1 {
                md5: Some(ha1_hex(Algorithm::Md5, "1001", REALM, "demo1001")),
                sha256: None,
            },
            UserSecret::Ha1 {
                md5: None,
                // An MD5-sized value where a SHA-256 one belongs.
                sha256: Some(ha1_hex(Algorithm::Md5, "1001", REALM, "demo1001")),
            },
            UserSecret::Ha1 {
                md5: None,
                sha256: Some("zz".repeat(32)),
            },
        ] {
            let v = auth.verify(t0, "REGISTER", REALM, &[Algorithm::Sha256], &creds, &stored);
            assert_eq!(v, Verdict::Failed(FailReason::MissingHa1ForAlgorithm));
        }
    }

    #[test]
    fn wrong_password_or_other_request_fails() {
        let t0 = Instant::now();
        let mut auth = authenticator(t0);
        for alg in Algorithm::ALL {
            let wrong = Answer {
                password: "demo1002",
                ..Answer::new(1)
            };
            assert_eq!(
                round_trip(&mut auth, t0, alg, &wrong),
                Verdict::Failed(FailReason::WrongResponse),
                "{alg}"
            );
        }
        // An answer computed for INVITE does not authenticate a REGISTER.
        let ch = auth.challenges(t0, REALM, &[Algorithm::Md5], false);
        let invite = Answer {
            method: "INVITE",
            ..Answer::new(1)
        };
        let creds = parse_credentials(&client_authorization(&ch[0], &invite)).unwrap();
        assert_eq!(
            auth.verify(
                t0,
                "REGISTER",
                REALM,
                &[Algorithm::Md5],
                &creds,
                &password()
            ),
            Verdict::Failed(FailReason::WrongResponse)
        );
        // Response hex in upper case is fine; non-hex, truncated or padded is not.
        let mut creds = parse_credentials(&client_authorization(&ch[0], &Answer::new(1))).unwrap();
        let good = creds.response.clone();
        for bad in [
            good[..30].to_owned(),
            format!("{good}00"),
            "x".repeat(32),
            String::new(),
            "0".repeat(1000),
        ] {
            creds.response = bad;
            assert_eq!(
                auth.verify(
                    t0,
                    "REGISTER",
                    REALM,
                    &[Algorithm::Md5],
                    &creds,
                    &password()
                ),
                Verdict::Failed(FailReason::WrongResponse)
            );
        }
        creds.response = good.to_uppercase();
        assert_eq!(
            auth.verify(
                t0,
                "REGISTER",
                REALM,
                &[Algorithm::Md5],
                &creds,
                &password()
            ),
            Verdict::Ok
        );
    }

    #[test]
    fn realm_algorithm_and_qop_checks() {
        let t0 = Instant::now();
        let mut auth = authenticator(t0);
        let ch = auth.challenges(t0, REALM, &[Algorithm::Md5], false);
        let creds = parse_credentials(&client_authorization(&ch[0], &Answer::new(1))).unwrap();
        let verify =
            |auth: &mut Authenticator, realm: &str, allowed: &[Algorithm], creds: &Credentials| {
                auth.verify(t0, "REGISTER", realm, allowed, creds, &password())
            };
        assert_eq!(
            verify(&mut auth, "other", &[Algorithm::Md5], &creds),
            Verdict::Failed(FailReason::WrongRealm)
        );
        assert_eq!(
            verify(&mut auth, REALM, &[Algorithm::Sha256], &creds),
            Verdict::Failed(FailReason::AlgorithmNotOffered)
        );
        assert_eq!(
            verify(&mut auth, REALM, &[], &creds),
            Verdict::Failed(FailReason::AlgorithmNotOffered)
        );
        let mut int = creds.clone();
        int.qop = Some("auth-int".into());
        assert_eq!(
            verify(&mut auth, REALM, &[Algorithm::Md5], &int),
            Verdict::Failed(FailReason::QopNotSupported)
        );
        let mut no_cnonce = creds.clone();
        no_cnonce.cnonce = None;
        assert_eq!(
            verify(&mut auth, REALM, &[Algorithm::Md5], &no_cnonce),
            Verdict::Failed(FailReason::MissingCnonce)
        );
        let mut no_nc = creds.clone();
        no_nc.nc = None;
        assert_eq!(
            verify(&mut auth, REALM, &[Algorithm::Md5], &no_nc),
            Verdict::Failed(FailReason::MissingNonceCount)
        );
        // A nonce issued for another realm does not serve this one.
        let foreign = auth.challenges(t0, "other", &[Algorithm::Md5], false);
        let mut c = parse_credentials(&client_authorization(&foreign[0], &Answer::new(1))).unwrap();
        c.realm = REALM.into();
        assert_eq!(
            verify(&mut auth, REALM, &[Algorithm::Md5], &c),
            Verdict::Failed(FailReason::BadNonce)
        );
        // Sanity: the untouched answer passes.
        assert_eq!(
            verify(&mut auth, REALM, &[Algorithm::Md5], &creds),
            Verdict::Ok
        );
    }

    #[test]
    fn answers_without_qop() {
        let t0 = Instant::now();
        let mut auth = authenticator(t0);
        let rfc2069 = Answer {
            qop: None,
            ..Answer::new(1)
        };
        assert_eq!(
            round_trip(&mut auth, t0, Algorithm::Md5, &rfc2069),
            Verdict::Ok
        );
        for alg in [Algorithm::Md5Sess, Algorithm::Sha256, Algorithm::Sha256Sess] {
            assert_eq!(
                round_trip(&mut auth, t0, alg, &rfc2069),
                Verdict::Failed(FailReason::QopRequired),
                "{alg}"
            );
        }
        // Single use: a second answer with the same nonce is sent for a fresh one.
        let ch = auth.challenges(t0, REALM, &[Algorithm::Md5], false);
        let creds = parse_credentials(&client_authorization(&ch[0], &rfc2069)).unwrap();
        let v = |auth: &mut Authenticator| {
            auth.verify(
                t0,
                "REGISTER",
                REALM,
                &[Algorithm::Md5],
                &creds,
                &password(),
            )
        };
        assert_eq!(v(&mut auth), Verdict::Ok);
        assert_eq!(v(&mut auth), Verdict::Stale);
        // Off: refused outright.
        auth.allow_no_qop = false;
        assert_eq!(
            round_trip(&mut auth, t0, Algorithm::Md5, &rfc2069),
            Verdict::Failed(FailReason::QopRequired)
        );
    }

    // --- Nonces --------------------------------------------------------------------------

    #[test]
    fn stale_nonce_gives_stale_only_for_a_correct_answer() {
        let t0 = Instant::now();
        let mut auth = authenticator(t0);
        let ch = auth.challenges(t0, REALM, &[Algorithm::Sha256], false);
        let good = parse_credentials(&client_authorization(&ch[0], &Answer::new(1))).unwrap();
        let wrong = Answer {
            password: "guess",
            ..Answer::new(1)
        };
        let bad = parse_credentials(&client_authorization(&ch[0], &wrong)).unwrap();
        let at = |auth: &mut Authenticator, t: Instant, c: &Credentials| {
            auth.verify(t, "REGISTER", REALM, &[Algorithm::Sha256], c, &password())
        };
        let late = t0 + LIFETIME;
        assert_eq!(at(&mut auth, late, &good), Verdict::Stale);
        assert_eq!(
            at(&mut auth, late, &bad),
            Verdict::Failed(FailReason::WrongResponse)
        );
        // Just before the end of its life the nonce still works.
        let mut auth = authenticator(t0);
        let ch = auth.challenges(t0, REALM, &[Algorithm::Sha256], false);
        let good = parse_credentials(&client_authorization(&ch[0], &Answer::new(1))).unwrap();
        assert_eq!(
            at(&mut auth, t0 + LIFETIME - Duration::from_millis(1), &good),
            Verdict::Ok
        );
    }

    #[test]
    fn tampered_forged_and_future_nonces_are_bad() {
        let t0 = Instant::now();
        let mut auth = authenticator(t0);
        let ch = auth.challenges(t0, REALM, &[Algorithm::Md5], false);
        let nonce = challenge_param(&ch[0], "nonce").unwrap();
        let tampered = |i: usize| {
            let mut b = nonce.clone().into_bytes();
            b[i] = if b[i] == b'A' { b'B' } else { b'A' };
            String::from_utf8(b).unwrap()
        };
        let mut candidates = vec![
            tampered(0),
            tampered(12),
            tampered(NONCE_CHARS - 1),
            format!("{nonce}A"),
            nonce[1..].to_owned(),
            String::new(),
            "dcd98b7102dd2f0e8b11d0f600bfb0c093".into(),
            "é".repeat(NONCE_CHARS),
        ];
        // Someone else's secret.
        let other = Authenticator::new([1; 32], LIFETIME, t0).challenges(
            t0,
            REALM,
            &[Algorithm::Md5],
            false,
        );
        candidates.push(challenge_param(&other[0], "nonce").unwrap());
        // A nonce from the future (issued at t0 + 100 s, presented at t0 + 10 s).
        let mut later = authenticator(t0);
        let fut = later.challenges(
            t0 + Duration::from_secs(100),
            REALM,
            &[Algorithm::Md5],
            false,
        );
        let fut_nonce = challenge_param(&fut[0], "nonce").unwrap();
        for n in candidates {
            // A correct answer over the bad nonce, so only the nonce is wrong.
            let ch = format!("Digest realm=\"{REALM}\", nonce=\"{n}\", algorithm=MD5");
            let creds = parse_credentials(&client_authorization(&ch, &Answer::new(1))).unwrap();
            assert_eq!(
                auth.verify(
                    t0,
                    "REGISTER",
                    REALM,
                    &[Algorithm::Md5],
                    &creds,
                    &password()
                ),
                Verdict::Failed(FailReason::BadNonce),
                "{n:?}"
            );
        }
        let ch = format!("Digest realm=\"{REALM}\", nonce=\"{fut_nonce}\", algorithm=MD5");
        let creds = parse_credentials(&client_authorization(&ch, &Answer::new(1))).unwrap();
        let t10 = t0 + Duration::from_secs(10);
        assert_eq!(
            later.verify(
                t10,
                "REGISTER",
                REALM,
                &[Algorithm::Md5],
                &creds,
                &password()
            ),
            Verdict::Failed(FailReason::BadNonce)
        );
    }

    #[test]
    fn base64url_round_trip_and_canonical_only() {
        let raw: [u8; NONCE_LEN] = std::array::from_fn(|i| (i * 37 + 11) as u8);
        let s = base64url(&raw);
        assert_eq!(s.len(), NONCE_CHARS);
        let mut back = [0u8; NONCE_LEN];
        assert!(base64url_decode(s.as_bytes(), &mut back));
        assert_eq!(back, raw);
        // The last character carries 2 spare bits; setting them is another string for the
        // same bytes, which must not pass.
        let mut alt = s.into_bytes();
        let last = alt.len() - 1;
        const B64URL: &[u8; 64] =
            b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        let v = B64URL.iter().position(|&c| c == alt[last]).unwrap();
        alt[last] = B64URL[v | 1];
        assert!(!base64url_decode(&alt, &mut back));
        assert_eq!(base64url(&[0xfb, 0xff]), "-_8");
    }

    // --- Nonce counts --------------------------------------------------------------------

    #[test]
    fn replayed_nc_is_refused_and_increasing_nc_accepted() {
        let t0 = Instant::now();
        let mut auth = authenticator(t0);
        let ch = auth.challenges(t0, REALM, &[Algorithm::Sha256], false);
        let answer =
            |nc: u32| parse_credentials(&client_authorization(&ch[0], &Answer::new(nc))).unwrap();
        let mut v = |c: &Credentials| {
            auth.verify(t0, "REGISTER", REALM, &[Algorithm::Sha256], c, &password())
        };
        assert_eq!(v(&answer(1)), Verdict::Ok);
        assert_eq!(v(&answer(1)), Verdict::Failed(FailReason::Replay));
        assert_eq!(v(&answer(2)), Verdict::Ok);
        assert_eq!(v(&answer(5)), Verdict::Ok, "gaps are fine");
        assert_eq!(v(&answer(3)), Verdict::Failed(FailReason::Replay));
        assert_eq!(v(&answer(5)), Verdict::Failed(FailReason::Replay));
        assert_eq!(v(&answer(0xffff_ffff)), Verdict::Ok);
        assert_eq!(v(&answer(0xffff_ffff)), Verdict::Failed(FailReason::Replay));
    }

    #[test]
    fn unknown_nonce_with_high_nc_is_stale_and_nc_zero_is_refused() {
        let t0 = Instant::now();
        let mut auth = authenticator(t0);
        let ch = auth.challenges(t0, REALM, &[Algorithm::Md5], false);
        let answer =
            |nc: u32| parse_credentials(&client_authorization(&ch[0], &Answer::new(nc))).unwrap();
        let mut v =
            |c: &Credentials| auth.verify(t0, "REGISTER", REALM, &[Algorithm::Md5], c, &password());
        assert_eq!(v(&answer(0)), Verdict::Failed(FailReason::Replay));
        assert_eq!(v(&answer(2)), Verdict::Stale);
        assert_eq!(v(&answer(1)), Verdict::Ok);
        assert_eq!(v(&answer(2)), Verdict::Ok);
        assert_eq!(auth.replay_table_len(), 1);
    }

    #[test]
    fn entries_are_forgotten_with_their_nonce() {
        let t0 = Instant::now();
        let mut auth = authenticator(t0);
        for _ in 0..10 {
            assert_eq!(
                round_trip(&mut auth, t0, Algorithm::Md5, &Answer::new(1)),
                Verdict::Ok
            );
        }
        assert_eq!(auth.replay_table_len(), 10);
        let later = t0 + LIFETIME;
        let ch = auth.challenges(later, REALM, &[Algorithm::Md5], false);
        let creds = parse_credentials(&client_authorization(&ch[0], &Answer::new(1))).unwrap();
        assert_eq!(
            auth.verify(
                later,
                "REGISTER",
                REALM,
                &[Algorithm::Md5],
                &creds,
                &password()
            ),
            Verdict::Ok
        );
        assert_eq!(auth.replay_table_len(), 1);
    }

    #[test]
    fn table_stays_bounded_when_flooded() {
        // 200k distinct nonces answered correctly within one nonce lifetime, at the table
        // itself (the hashing around it is covered below; in a debug build it would take
        // half a minute at this count).
        let t0 = Instant::now();
        let mut counts = NonceCounts::new(DEFAULT_REPLAY_CAPACITY);
        for serial in 1..=200_000u64 {
            let now = t0 + Duration::from_millis(serial);
            counts.forget_expired(now);
            let verdict = counts.record(now.checked_add(LIFETIME), serial, Some(1));
            assert_eq!(verdict, Ok(Verdict::Ok));
            assert!(counts.highest.len() <= DEFAULT_REPLAY_CAPACITY);
            assert_eq!(counts.expiry.len(), counts.highest.len());
        }
        assert_eq!(counts.highest.len(), DEFAULT_REPLAY_CAPACITY);
        let now = t0 + Duration::from_millis(200_001);
        let forget_at = now.checked_add(LIFETIME);
        // Forgotten while fresh: stale, never a second nc=1.
        assert_eq!(counts.record(forget_at, 1, Some(1)), Ok(Verdict::Stale));
        assert_eq!(
            counts.record(forget_at, 200_000 - 65_536, Some(1)),
            Ok(Verdict::Stale)
        );
        // Remembered.
        assert_eq!(
            counts.record(forget_at, 200_000, Some(1)),
            Err(FailReason::Replay)
        );
        assert_eq!(counts.record(forget_at, 200_000, Some(2)), Ok(Verdict::Ok));
        // Past the lifetime everything drains.
        counts.forget_expired(now + LIFETIME);
        assert!(counts.highest.is_empty() && counts.expiry.is_empty());
    }

    #[test]
    fn flood_through_verify_stays_bounded() {
        let t0 = Instant::now();
        let mut auth = authenticator(t0);
        auth.set_replay_capacity(1_000);
        let mut first = None;
        let mut last = None;
        for i in 0..5_000u64 {
            let now = t0 + Duration::from_millis(i);
            let ch = auth.challenges(now, REALM, &[Algorithm::Md5], false);
            let creds = parse_credentials(&client_authorization(&ch[0], &Answer::new(1))).unwrap();
            let v = auth.verify(
                now,
                "REGISTER",
                REALM,
                &[Algorithm::Md5],
                &creds,
                &password(),
            );
            assert_eq!(v, Verdict::Ok);
            assert!(auth.replay_table_len() <= 1_000);
            first.get_or_insert(creds.clone());
            last = Some(creds);
        }
        assert_eq!(auth.replay_table_len(), 1_000);
        let now = t0 + Duration::from_millis(5_000);
        let mut v = |c: &Credentials| {
            auth.verify(now, "REGISTER", REALM, &[Algorithm::Md5], c, &password())
        };
        // The first nonce was forgotten while still fresh: not a replay of nc=1, but stale.
        assert_eq!(v(&first.unwrap()), Verdict::Stale);
        // The last is still remembered.
        assert_eq!(v(&last.unwrap()), Verdict::Failed(FailReason::Replay));
    }

    #[test]
    fn capacity_is_adjustable_and_oldest_go_first() {
        let t0 = Instant::now();
        let mut auth = authenticator(t0);
        auth.set_replay_capacity(3);
        let mut answers = Vec::new();
        for _ in 0..5 {
            let ch = auth.challenges(t0, REALM, &[Algorithm::Md5], false);
            answers
                .push(parse_credentials(&client_authorization(&ch[0], &Answer::new(1))).unwrap());
        }
        let mut v =
            |c: &Credentials| auth.verify(t0, "REGISTER", REALM, &[Algorithm::Md5], c, &password());
        for c in &answers {
            assert_eq!(v(c), Verdict::Ok);
        }
        assert_eq!(v(&answers[0]), Verdict::Stale);
        assert_eq!(v(&answers[1]), Verdict::Stale);
        assert_eq!(v(&answers[2]), Verdict::Failed(FailReason::Replay));
        assert_eq!(v(&answers[4]), Verdict::Failed(FailReason::Replay));
        assert_eq!(auth.replay_table_len(), 3);
    }

    #[test]
    fn time_going_backwards_does_not_reopen_a_nonce() {
        let t0 = Instant::now();
        let mut auth = authenticator(t0);
        let ch = auth.challenges(t0, REALM, &[Algorithm::Md5], false);
        let creds = parse_credentials(&client_authorization(&ch[0], &Answer::new(1))).unwrap();
        let v = |auth: &mut Authenticator, t: Instant| {
            auth.verify(t, "REGISTER", REALM, &[Algorithm::Md5], &creds, &password())
        };
        assert_eq!(v(&mut auth, t0), Verdict::Ok);
        // Much later the entry is gone (and the nonce stale) ...
        assert_eq!(v(&mut auth, t0 + LIFETIME * 2), Verdict::Stale);
        assert_eq!(auth.replay_table_len(), 0);
        // ... and a caller handing in an earlier time does not make it fresh again.
        assert_eq!(v(&mut auth, t0), Verdict::Stale);
    }

    #[test]
    fn huge_lifetime_does_not_overflow() {
        let t0 = Instant::now();
        let mut auth = Authenticator::new([9; 32], Duration::MAX, t0);
        assert_eq!(
            round_trip(&mut auth, t0, Algorithm::Sha256, &Answer::new(1)),
            Verdict::Ok
        );
        let mut auth = Authenticator::new([9; 32], Duration::ZERO, t0);
        assert_eq!(
            round_trip(&mut auth, t0, Algorithm::Sha256, &Answer::new(1)),
            Verdict::Stale
        );
    }

    // --- Parsing -------------------------------------------------------------------------

    #[test]
    fn parse_odd_but_valid_inputs() {
        let c = parse_credentials(
            r#"digest USERNAME="a\"b\\c",realm="r",nonce=n1,uri="sip:x",response="00",x-unknown="y, z",foo=bar"#,
        )
        .unwrap();
        assert_eq!(c.username, r#"a"b\c"#);
        assert_eq!(c.nonce, "n1");
        assert_eq!(c.algorithm, Algorithm::Md5);
        assert_eq!((c.qop, c.nc, c.cnonce, c.opaque), (None, None, None, None));

        let c = parse_credentials(
            "  DIGEST\tresponse = \"AB\" ,, uri=\"sip:u@h;transport=tcp\", nonce=\"n\" , \
             realm=\"r\", username=\"ü\", algorithm=sha-256-SESS, qop=\"auth\", nc=0000000A, \
             cnonce=\"c\", opaque=\"\",  ",
        )
        .unwrap();
        assert_eq!(c.username, "ü");
        assert_eq!(c.uri, "sip:u@h;transport=tcp");
        assert_eq!(c.response, "AB");
        assert_eq!(c.algorithm, Algorithm::Sha256Sess);
        assert_eq!(c.qop.as_deref(), Some("auth"));
        assert_eq!(c.nc, Some(10));
        assert_eq!(c.opaque.as_deref(), Some(""));
    }

    #[test]
    fn parse_errors() {
        use DigestError::*;
        let ok = r#"username="u", realm="r", nonce="n", uri="sip:x", response="00""#;
        for (input, err) in [
            ("Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==".to_owned(), NotDigest),
            ("Bearer abc".to_owned(), NotDigest),
            ("Digestive x=1".to_owned(), NotDigest),
            (String::new(), Syntax("expected an authentication scheme")),
            (
                "   ".to_owned(),
                Syntax("expected an authentication scheme"),
            ),
            (
                "\"Digest\"".to_owned(),
                Syntax("expected an authentication scheme"),
            ),
            ("Digest".to_owned(), Missing("username")),
            (
                "Digest=x".to_owned(),
                Syntax("expected whitespace after the scheme"),
            ),
            (
                format!("Digest {ok}, username=\"v\""),
                Duplicate("username"),
            ),
            (format!("Digest {ok}, REALM=\"v\""), Duplicate("realm")),
            (
                format!("Digest {ok}, algorithm=SHA-512-256"),
                UnknownAlgorithm("SHA-512-256".into()),
            ),
            (
                format!("Digest {ok}, qop=auth, nc=00000001"),
                Missing("cnonce"),
            ),
            (
                format!("Digest {ok}, qop=auth, cnonce=\"c\""),
                Missing("nc"),
            ),
            (format!("Digest {ok}, nc=1"), BadNonceCount),
            (format!("Digest {ok}, nc=+0000001"), BadNonceCount),
            (format!("Digest {ok}, nc=0000000g"), BadNonceCount),
            (format!("Digest {ok}, nc=000000001"), BadNonceCount),
            (
                "Digest realm=\"r\", nonce=\"n\", uri=\"u\", response=\"0\"".into(),
                Missing("username"),
            ),
            (
                "Digest username=\"u\", realm=\"r\", nonce=\"n\", response=\"0\"".into(),
                Missing("uri"),
            ),
            (
                "Digest username=\"unterminated".into(),
                Syntax("unterminated quoted string"),
            ),
            (
                "Digest username=\"a\\".into(),
                Syntax("unterminated quoted string"),
            ),
            (
                "Digest username=\"a\r\nb\"".into(),
                Syntax("control character in a quoted string"),
            ),
            (
                "Digest username=\"a\\\0\"".into(),
                Syntax("control character in a quoted string"),
            ),
            (
                "Digest username".into(),
                Syntax("expected '=' after a parameter name"),
            ),
            (
                "Digest username=".into(),
                Syntax("expected a parameter value"),
            ),
            (
                "Digest username=,".into(),
                Syntax("expected a parameter value"),
            ),
            ("Digest =x".into(), Syntax("expected a parameter name")),
            (
                "Digest username=\"a\"b".into(),
                Syntax("expected ',' between parameters"),
            ),
            (
                "Digest username=a b".into(),
                Syntax("expected ',' between parameters"),
            ),
            (
                "Digest username=a\"b\"".into(),
                Syntax("expected ',' between parameters"),
            ),
            (
                "Digest username=\u{1}".into(),
                Syntax("expected a parameter value"),
            ),
        ] {
            assert_eq!(parse_credentials(&input), Err(err), "{input:?}");
        }
        assert_eq!(DigestError::Missing("uri").status(), 400);
    }

    #[test]
    fn algorithm_tokens() {
        for a in Algorithm::ALL {
            assert_eq!(a.to_string().parse::<Algorithm>(), Ok(a));
            assert_eq!(a.as_str().to_lowercase().parse::<Algorithm>(), Ok(a));
            assert_eq!(a.as_str().to_uppercase().parse::<Algorithm>(), Ok(a));
        }
        assert_eq!(Algorithm::Md5Sess.to_string(), "MD5-sess");
        assert_eq!(Algorithm::Sha256.to_string(), "SHA-256");
        assert!("SHA256".parse::<Algorithm>().is_err());
        assert!("".parse::<Algorithm>().is_err());
    }

    #[test]
    fn secrets_do_not_leak_through_debug() {
        let t0 = Instant::now();
        let s = format!(
            "{:?} {:?} {:?}",
            UserSecret::Password("hunter2".into()),
            UserSecret::Ha1 {
                md5: Some("0123456789abcdef0123456789abcdef".into()),
                sha256: None
            },
            Authenticator::new([0xab; 32], LIFETIME, t0)
        );
        assert!(!s.contains("hunter2") && !s.contains("0123456789"), "{s}");
        assert!(!s.contains("171, 171") && !s.contains("ab, ab"), "{s}");
    }

    #[test]
    fn ct_eq_basics() {
        assert!(ct_eq(b"", b""));
        assert!(ct_eq(b"abc", b"abc"));
        assert!(!ct_eq(b"abc", b"abd"));
        assert!(!ct_eq(b"abc", b"ab"));
        assert!(!ct_eq(b"\x00", b"\x80"));
    }

    proptest! {
        #[test]
        fn parse_never_panics(s in ".*") {
            let _ = parse_credentials(&s);
        }

        #[test]
        fn parse_never_panics_on_digest_like_input(
            s in r#"[dD]igest[ \t]{0,2}([a-zA-Z]{1,9}[ ]?=[ ]?("([^"\\]|\\.){0,12}"?|[!-~]{0,12})[ ]?,?){0,12}"#,
        ) {
            let _ = parse_credentials(&s);
        }

        #[test]
        fn verify_never_panics(
            username in ".{0,20}",
            nonce in ".{0,50}",
            uri in ".{0,20}",
            response in "[0-9a-fA-Fx]{0,70}",
            alg in 0usize..4,
            qop in proptest::option::of("auth|AUTH|auth-int|.{0,5}"),
            nc in proptest::option::of(any::<u32>()),
            cnonce in proptest::option::of(".{0,10}"),
            stored in proptest::option::of("[0-9a-fA-Fz]{0,70}"),
        ) {
            let t0 = Instant::now();
            let mut auth = authenticator(t0);
            let ch = auth.challenges(t0, REALM, &[Algorithm::Md5], false);
            let real = challenge_param(&ch[0], "nonce").unwrap();
            let creds = Credentials {
                username,
                realm: REALM.into(),
                nonce: if nonce.is_empty() { real } else { nonce },
                uri,
                response,
                algorithm: Algorithm::ALL[alg],
                cnonce,
                opaque: None,
                qop,
                nc,
            };
            let secret = match stored {
                Some(h) => UserSecret::Ha1 { md5: Some(h.clone()), sha256: Some(h) },
                None => password(),
            };
            let _ = auth.verify(t0, "REGISTER", REALM, &Algorithm::ALL, &creds, &secret);
        }
    }
}

#[cfg(test)]
mod client_tests {
    use super::*;

    fn field<'a>(v: &'a str, name: &str) -> &'a str {
        let start = v.find(&format!("{name}=")).expect(name) + name.len() + 1;
        let rest = &v[start..];
        let rest = rest.strip_prefix('"').unwrap_or(rest);
        let end = rest.find(['"', ',']).unwrap_or(rest.len());
        &rest[..end]
    }

    #[test]
    fn answers_the_rfc_2617_md5_example() {
        let c = parse_challenge(
            "Digest realm=\"testrealm@host.com\", qop=\"auth,auth-int\", \
             nonce=\"dcd98b7102dd2f0e8b11d0f600bfb0c093\", opaque=\"5ccc069c403ebaf9f0171e9517f40e41\"",
        )
        .unwrap();
        assert!(c.qop_auth);
        assert_eq!(c.algorithm, Algorithm::Md5);
        let v = authorization(
            &c,
            "Mufasa",
            "Circle Of Life",
            "GET",
            "/dir/index.html",
            "0a4f113b",
            1,
        );
        assert_eq!(field(&v, "response"), "6629fae49393a05397450978507c4ef1");
        assert_eq!(field(&v, "nc"), "00000001");
        assert_eq!(field(&v, "opaque"), "5ccc069c403ebaf9f0171e9517f40e41");
        // What a server parses back.
        let creds = parse_credentials(&v).unwrap();
        assert_eq!(creds.username, "Mufasa");
        assert_eq!(creds.uri, "/dir/index.html");
        assert_eq!(creds.nc, Some(1));
    }

    #[test]
    fn answers_the_rfc_7616_sha256_example() {
        let c = parse_challenge(
            "Digest realm=\"http-auth@example.org\", qop=\"auth, auth-int\", algorithm=SHA-256, \
             nonce=\"7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v\", \
             opaque=\"FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS\"",
        )
        .unwrap();
        assert_eq!(c.algorithm, Algorithm::Sha256);
        let v = authorization(
            &c,
            "Mufasa",
            "Circle of Life",
            "GET",
            "/dir/index.html",
            "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ",
            1,
        );
        assert_eq!(
            field(&v, "response"),
            "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"
        );
    }

    #[test]
    fn without_qop_the_rfc_2069_form_is_sent() {
        let c = parse_challenge("Digest realm=\"r\", nonce=\"n\"").unwrap();
        assert!(!c.qop_auth);
        let v = authorization(&c, "u", "p", "INVITE", "sip:1@h", "cn", 1);
        assert!(!v.contains("qop="), "{v}");
        assert!(!v.contains("cnonce"), "{v}");
    }

    #[test]
    fn refuses_what_it_cannot_answer() {
        assert_eq!(
            parse_challenge("Basic realm=\"r\""),
            Err(DigestError::NotDigest)
        );
        assert!(parse_challenge("Digest realm=\"r\", nonce=\"n\", qop=\"auth-int\"").is_err());
        assert!(parse_challenge("Digest realm=\"r\", nonce=\"n\", algorithm=SHA-512-256").is_err());
        assert!(parse_challenge("Digest nonce=\"n\"").is_err());
        assert!(parse_challenge("").is_err());
    }
}
