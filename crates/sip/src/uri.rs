//! SIP and SIPS URIs (RFC 3261 §19.1), including IPv6 references (RFC 5118).
//!
//! Other schemes (`tel:`, `isbn:`, …) are recognised as such so that callers can answer
//! 416 Unsupported URI Scheme or refuse to bind them, instead of failing to parse.

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};

/// A URI scheme.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scheme {
    /// `sip:`
    Sip,
    /// `sips:`
    Sips,
    /// `tel:` (RFC 3966)
    Tel,
    /// Anything else that is syntactically a scheme.
    Other(String),
}

/// The host part of a SIP URI or Via sent-by.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Host {
    /// A domain name (lower-cased).
    Domain(String),
    /// An IPv4 address.
    V4(Ipv4Addr),
    /// An IPv6 reference (written in brackets).
    V6(Ipv6Addr),
}

impl fmt::Display for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Host::Domain(d) => f.write_str(d),
            Host::V4(a) => write!(f, "{a}"),
            Host::V6(a) => write!(f, "[{a}]"),
        }
    }
}

/// A malformed URI or host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BadUri(pub &'static str);

/// Parse a host (`example.com`, `192.0.2.1`, `[2001:db8::1]`).
pub fn parse_host(s: &str) -> Result<Host, BadUri> {
    if let Some(inner) = s.strip_prefix('[') {
        let inner = inner
            .strip_suffix(']')
            .ok_or(BadUri("unterminated IPv6 reference"))?;
        return inner
            .parse::<Ipv6Addr>()
            .map(Host::V6)
            .map_err(|_| BadUri("bad IPv6 address"));
    }
    if s.is_empty() {
        return Err(BadUri("empty host"));
    }
    if s.bytes().all(|c| c.is_ascii_digit() || c == b'.') && s.bytes().any(|c| c == b'.') {
        if let Ok(a) = s.parse::<Ipv4Addr>() {
            return Ok(Host::V4(a));
        }
    }
    if !s
        .bytes()
        .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'.')
    {
        return Err(BadUri("bad character in host"));
    }
    Ok(Host::Domain(s.to_ascii_lowercase()))
}

/// Split `host[:port]` (with bracketed IPv6) and parse both.
pub fn parse_hostport(s: &str) -> Result<(Host, Option<u16>), BadUri> {
    let (host, port) = if s.starts_with('[') {
        let end = s.find(']').ok_or(BadUri("unterminated IPv6 reference"))?;
        let rest = &s[end + 1..];
        let port = match rest.strip_prefix(':') {
            Some(p) => Some(p),
            None if rest.is_empty() => None,
            None => return Err(BadUri("junk after IPv6 reference")),
        };
        (&s[..=end], port)
    } else {
        match s.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (s, None),
        }
    };
    let port = match port {
        Some(p) => {
            if p.is_empty() || p.len() > 5 || !p.bytes().all(|c| c.is_ascii_digit()) {
                return Err(BadUri("bad port"));
            }
            Some(p.parse::<u16>().map_err(|_| BadUri("bad port"))?)
        }
        None => None,
    };
    Ok((parse_host(host)?, port))
}

/// A parsed URI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Uri {
    /// The scheme.
    pub scheme: Scheme,
    /// The user part, still %-escaped as received (`None` when absent).
    pub user: Option<String>,
    /// The password part of userinfo (deprecated, kept only to round-trip).
    pub password: Option<String>,
    /// The host (for non-SIP schemes, a placeholder domain holding the opaque part).
    pub host: Host,
    /// The port, if given.
    pub port: Option<u16>,
    /// URI parameters in order (`;name[=value]`), names lower-cased.
    pub params: Vec<(String, Option<String>)>,
    /// The header part after `?`, verbatim.
    pub headers: Option<String>,
    /// For non-SIP schemes: everything after `scheme:`.
    pub opaque: Option<String>,
}

fn is_scheme(s: &str) -> bool {
    let mut b = s.bytes();
    matches!(b.next(), Some(c) if c.is_ascii_alphabetic())
        && b.all(|c| c.is_ascii_alphanumeric() || b"+-.".contains(&c))
}

fn unreserved_or_escaped(s: &str, extra: &[u8]) -> bool {
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if c == b'%' {
            if !(b.get(i + 1).is_some_and(u8::is_ascii_hexdigit)
                && b.get(i + 2).is_some_and(u8::is_ascii_hexdigit))
            {
                return false;
            }
            i += 3;
            continue;
        }
        if !(c.is_ascii_alphanumeric() || b"-_.!~*'()".contains(&c) || extra.contains(&c)) {
            return false;
        }
        i += 1;
    }
    true
}

/// Decode %-escapes (invalid escapes are kept literally).
pub fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            let hex = |c: u8| (c as char).to_digit(16);
            if let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

impl Uri {
    /// Parse a URI as found in a Request-URI or inside `<…>`.
    pub fn parse(s: &str) -> Result<Uri, BadUri> {
        let colon = s.find(':').ok_or(BadUri("no scheme"))?;
        let scheme_str = &s[..colon];
        if !is_scheme(scheme_str) {
            return Err(BadUri("bad scheme"));
        }
        let rest = &s[colon + 1..];
        if rest.bytes().any(|c| c <= b' ' || c == 0x7f) {
            return Err(BadUri("whitespace or control character in URI"));
        }
        let scheme = if scheme_str.eq_ignore_ascii_case("sip") {
            Scheme::Sip
        } else if scheme_str.eq_ignore_ascii_case("sips") {
            Scheme::Sips
        } else if scheme_str.eq_ignore_ascii_case("tel") {
            Scheme::Tel
        } else {
            Scheme::Other(scheme_str.to_ascii_lowercase())
        };
        if !matches!(scheme, Scheme::Sip | Scheme::Sips) {
            if rest.is_empty() {
                return Err(BadUri("empty URI"));
            }
            return Ok(Uri {
                scheme,
                user: None,
                password: None,
                host: Host::Domain(String::new()),
                port: None,
                params: Vec::new(),
                headers: None,
                opaque: Some(rest.to_owned()),
            });
        }
        // '?' and ';' may appear in the user part (RFC 3261 user-unreserved) but '@' may not
        // appear after it (neither params nor headers allow it): cut userinfo at the last '@'
        // first, then the headers at the first '?' after the host.
        let (userinfo, after_at) = match rest.rfind('@') {
            Some(at) => (Some(&rest[..at]), &rest[at + 1..]),
            None => (None, rest),
        };
        let (hostpart, headers) = match after_at.split_once('?') {
            Some((m, h)) => (m, Some(h.to_owned())),
            None => (after_at, None),
        };
        let (user, password) = match userinfo {
            None => (None, None),
            Some(ui) => {
                let (u, p) = match ui.split_once(':') {
                    Some((u, p)) => (u, Some(p)),
                    None => (ui, None),
                };
                if u.is_empty() || !unreserved_or_escaped(u, b"&=+$,;?/") {
                    return Err(BadUri("bad user part"));
                }
                if let Some(p) = p {
                    if !unreserved_or_escaped(p, b"&=+$,") {
                        return Err(BadUri("bad password part"));
                    }
                }
                (Some(u.to_owned()), p.map(str::to_owned))
            }
        };
        // hostport is up to the first ';' (after any IPv6 reference).
        let hp_end = if hostpart.starts_with('[') {
            hostpart
                .find(']')
                .map(|e| hostpart[e..].find(';').map_or(hostpart.len(), |s| e + s))
                .ok_or(BadUri("unterminated IPv6 reference"))?
        } else {
            hostpart.find(';').unwrap_or(hostpart.len())
        };
        let (host, port) = parse_hostport(&hostpart[..hp_end])?;
        let mut params = Vec::new();
        if hp_end < hostpart.len() {
            for p in hostpart[hp_end + 1..].split(';') {
                if p.is_empty() {
                    return Err(BadUri("empty URI parameter"));
                }
                let (n, v) = match p.split_once('=') {
                    Some((n, v)) => (n, Some(v)),
                    None => (p, None),
                };
                if n.is_empty() || !unreserved_or_escaped(n, b"[]/:&+$") {
                    return Err(BadUri("bad URI parameter"));
                }
                if let Some(v) = v {
                    if !unreserved_or_escaped(v, b"[]/:&+$") {
                        return Err(BadUri("bad URI parameter value"));
                    }
                }
                params.push((n.to_ascii_lowercase(), v.map(str::to_owned)));
            }
        }
        Ok(Uri {
            scheme,
            user,
            password,
            host,
            port,
            params,
            headers,
            opaque: None,
        })
    }

    /// True for `sip:` and `sips:` URIs.
    pub fn is_sip(&self) -> bool {
        matches!(self.scheme, Scheme::Sip | Scheme::Sips)
    }

    /// The named URI parameter: `Some(None)` for a flag parameter, `None` when absent.
    pub fn param(&self, name: &str) -> Option<Option<&str>> {
        self.params
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_deref())
    }

    /// The user part with %-escapes decoded.
    pub fn user_unescaped(&self) -> Option<String> {
        self.user.as_deref().map(unescape)
    }
}

impl fmt::Display for Uri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.scheme {
            Scheme::Sip => f.write_str("sip:")?,
            Scheme::Sips => f.write_str("sips:")?,
            Scheme::Tel => f.write_str("tel:")?,
            Scheme::Other(s) => write!(f, "{s}:")?,
        }
        if let Some(o) = &self.opaque {
            return f.write_str(o);
        }
        if let Some(u) = &self.user {
            f.write_str(u)?;
            if let Some(p) = &self.password {
                write!(f, ":{p}")?;
            }
            f.write_str("@")?;
        }
        write!(f, "{}", self.host)?;
        if let Some(p) = self.port {
            write!(f, ":{p}")?;
        }
        for (n, v) in &self.params {
            match v {
                Some(v) => write!(f, ";{n}={v}")?,
                None => write!(f, ";{n}")?,
            }
        }
        if let Some(h) = &self.headers {
            write!(f, "?{h}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_common_uris() {
        let u = Uri::parse("sip:1001@192.0.2.5:5062;transport=udp;lr").unwrap();
        assert_eq!(u.user.as_deref(), Some("1001"));
        assert_eq!(u.host, Host::V4("192.0.2.5".parse().unwrap()));
        assert_eq!(u.port, Some(5062));
        assert_eq!(u.param("transport"), Some(Some("udp")));
        assert_eq!(u.param("lr"), Some(None));
        assert_eq!(u.to_string(), "sip:1001@192.0.2.5:5062;transport=udp;lr");
    }

    #[test]
    fn ipv6_references() {
        let u = Uri::parse("sip:[2001:db8::10]:5070").unwrap();
        assert_eq!(u.host, Host::V6("2001:db8::10".parse().unwrap()));
        assert_eq!(u.port, Some(5070));
        let u = Uri::parse("sip:user@[2001:db8::10:5070]").unwrap();
        assert_eq!(u.port, None);
        assert!(Uri::parse("sip:user@2001:db8::10").is_err());
        assert!(Uri::parse("sip:[2001:db8:::192.0.2.1]").is_err());
    }

    #[test]
    fn user_part_may_hold_question_marks_and_headers_follow_the_host() {
        // RFC 4475 §3.1.1.2: '?' and ',' are user-unreserved.
        let u = Uri::parse("sip:it$/crazy?,/;;*:pa$s@example.com;lr?subject=hi").unwrap();
        assert_eq!(u.user.as_deref(), Some("it$/crazy?,/;;*"));
        assert_eq!(u.password.as_deref(), Some("pa$s"));
        assert_eq!(u.host, Host::Domain("example.com".into()));
        assert_eq!(u.param("lr"), Some(None));
        assert_eq!(u.headers.as_deref(), Some("subject=hi"));
        let u = Uri::parse("sip:example.com?subject=hi").unwrap();
        assert_eq!(u.user, None);
        assert_eq!(u.headers.as_deref(), Some("subject=hi"));
    }

    #[test]
    fn user_part_may_hold_semicolons_and_escapes() {
        let u = Uri::parse("sip:user;par=u%40example.net@example.com").unwrap();
        assert_eq!(u.user.as_deref(), Some("user;par=u%40example.net"));
        assert_eq!(u.host, Host::Domain("example.com".into()));
        assert_eq!(
            Uri::parse("sip:%75se%72@example.com")
                .unwrap()
                .user_unescaped()
                .as_deref(),
            Some("user")
        );
    }

    #[test]
    fn other_schemes_and_errors() {
        assert_eq!(
            Uri::parse("isbn:2983792873").unwrap().scheme,
            Scheme::Other("isbn".into())
        );
        assert_eq!(Uri::parse("tel:+1-555-0100").unwrap().scheme, Scheme::Tel);
        assert!(Uri::parse("<sip:a@b>").is_err());
        assert!(Uri::parse("sip:a@b; lr").is_err());
        assert!(Uri::parse("sip:a@b:99999").is_err());
        assert!(Uri::parse("sip:a@exa mple.com").is_err());
        assert!(Uri::parse("sip:a@b;;x").is_err());
        assert!(Uri::parse("sip:a%zz@b").is_err());
        assert!(Uri::parse("sip:a%2@b").is_err());
    }
}
