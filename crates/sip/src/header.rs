//! Typed views of the headers the core needs: Via, From/To/Contact (name-addr), CSeq and
//! generic `;name=value` parameters. Linear whitespace is tolerated wherever RFC 3261 allows it.

use crate::parse::is_token_char;
use crate::uri::{parse_hostport, BadUri, Host, Uri};

/// A malformed header value: which header and why.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BadHeader(pub &'static str);

impl From<BadUri> for BadHeader {
    fn from(e: BadUri) -> Self {
        BadHeader(e.0)
    }
}

/// Header parameters in order; names lower-cased, values unquoted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Params(pub Vec<(String, Option<String>)>);

impl Params {
    /// The named parameter: `Some(None)` for a flag, `None` when absent.
    pub fn get(&self, name: &str) -> Option<Option<&str>> {
        self.0
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_deref())
    }

    /// The named parameter's value, if it has one.
    pub fn value(&self, name: &str) -> Option<&str> {
        self.get(name).flatten()
    }

    /// True when the parameter is present (with or without a value).
    pub fn has(&self, name: &str) -> bool {
        self.get(name).is_some()
    }
}

/// Read a quoted-string starting at `s[0] == '"'`: returns (unescaped content, rest after the closing quote).
fn quoted(s: &str) -> Result<(String, &str), BadHeader> {
    let b = s.as_bytes();
    debug_assert_eq!(b.first(), Some(&b'"'));
    let mut out = Vec::new();
    let mut i = 1;
    while i < b.len() {
        match b[i] {
            b'\\' => {
                let c = *b
                    .get(i + 1)
                    .ok_or(BadHeader("unterminated quoted string"))?;
                out.push(c);
                i += 2;
            }
            b'"' => return Ok((String::from_utf8_lossy(&out).into_owned(), &s[i + 1..])),
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    Err(BadHeader("unterminated quoted string"))
}

/// Split at top-level ';' (outside quotes and angle brackets).
fn split_semi(s: &str) -> Result<Vec<&str>, BadHeader> {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let (mut start, mut i, mut q, mut angle) = (0, 0, false, false);
    while i < b.len() {
        match b[i] {
            b'\\' if q => i += 1,
            b'"' => q = !q,
            b'<' if !q => angle = true,
            b'>' if !q => angle = false,
            b';' if !q && !angle => {
                out.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
        i += 1;
    }
    if q {
        return Err(BadHeader("unterminated quoted string"));
    }
    out.push(&s[start.min(s.len())..]);
    Ok(out)
}

/// Parse `;name[=value]` parameters (the input starts after the first ';' or is empty).
pub fn parse_params(parts: &[&str]) -> Result<Params, BadHeader> {
    let mut params = Vec::with_capacity(parts.len());
    for p in parts {
        let p = p.trim();
        if p.is_empty() {
            return Err(BadHeader("empty parameter"));
        }
        let (n, v) = match p.split_once('=') {
            Some((n, v)) => (n.trim(), Some(v.trim())),
            None => (p, None),
        };
        if n.is_empty() || !n.bytes().all(is_token_char) {
            return Err(BadHeader("bad parameter name"));
        }
        let v = match v {
            None => None,
            Some(v) if v.starts_with('"') => {
                let (content, rest) = quoted(v)?;
                if !rest.trim().is_empty() {
                    return Err(BadHeader("junk after quoted parameter"));
                }
                Some(content)
            }
            Some(v) => {
                if v.is_empty() || !v.bytes().all(|c| is_token_char(c) || b"[]:".contains(&c)) {
                    return Err(BadHeader("bad parameter value"));
                }
                Some(v.to_owned())
            }
        };
        params.push((n.to_ascii_lowercase(), v));
    }
    Ok(Params(params))
}

/// A From, To, Contact, Route or Record-Route value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameAddr {
    /// Display name, unquoted.
    pub display: Option<String>,
    /// The URI text as written (inside the angle brackets when present).
    pub uri_text: String,
    /// The parsed URI.
    pub uri: Uri,
    /// Header parameters (`tag`, `expires`, `q`, …).
    pub params: Params,
}

impl NameAddr {
    /// Parse `[display] <uri> *(;param)` or `addr-spec *(;param)`.
    pub fn parse(value: &str) -> Result<NameAddr, BadHeader> {
        let s = value.trim();
        let (display, uri_text, rest) = if s.starts_with('"') {
            let (d, rest) = quoted(s)?;
            let rest = rest.trim_start();
            let inner = rest
                .strip_prefix('<')
                .ok_or(BadHeader("display name without <uri>"))?;
            let end = inner.find('>').ok_or(BadHeader("unterminated <uri>"))?;
            (Some(d), &inner[..end], &inner[end + 1..])
        } else if let Some(lt) = s.find('<') {
            let d = s[..lt].trim();
            if !d
                .bytes()
                .all(|c| is_token_char(c) || c == b' ' || c == b'\t')
            {
                return Err(BadHeader("display name must be a token or quoted"));
            }
            let inner = &s[lt + 1..];
            let end = inner.find('>').ok_or(BadHeader("unterminated <uri>"))?;
            (
                if d.is_empty() {
                    None
                } else {
                    Some(d.to_owned())
                },
                &inner[..end],
                &inner[end + 1..],
            )
        } else {
            // addr-spec: parameters after ';' belong to the header, not the URI.
            let end = s.find(';').unwrap_or(s.len());
            let spec = s[..end].trim_end();
            if spec.contains([' ', '\t', '>', '"']) {
                return Err(BadHeader("bad addr-spec"));
            }
            (None, spec, &s[end..])
        };
        if uri_text.contains([' ', '\t', '<']) {
            return Err(BadHeader("whitespace inside <uri>"));
        }
        let uri = Uri::parse(uri_text)?;
        let rest = rest.trim_start();
        let params = if rest.is_empty() {
            Params::default()
        } else {
            let r = rest
                .strip_prefix(';')
                .ok_or(BadHeader("junk after address"))?;
            parse_params(&split_semi(r)?)?
        };
        Ok(NameAddr {
            display,
            uri_text: uri_text.to_owned(),
            uri,
            params,
        })
    }

    /// The `tag` parameter.
    pub fn tag(&self) -> Option<&str> {
        self.params.value("tag")
    }
}

/// Transport names that appear in Via.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ViaTransport {
    /// UDP
    Udp,
    /// TCP
    Tcp,
    /// TLS
    Tls,
    /// SCTP
    Sctp,
    /// WS (RFC 7118)
    Ws,
    /// WSS
    Wss,
    /// Any other token (tolerated, RFC 4475 §3.1.1.10)
    Other(String),
}

/// One Via header element.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Via {
    /// Transport token.
    pub transport: ViaTransport,
    /// sent-by host.
    pub host: Host,
    /// sent-by port.
    pub port: Option<u16>,
    /// Parameters (`branch`, `rport`, `received`, …).
    pub params: Params,
}

/// The RFC 3261 branch magic cookie.
pub const MAGIC_COOKIE: &str = "z9hG4bK";

impl Via {
    /// Parse one Via element (`SIP/2.0/UDP host:port;branch=…`).
    pub fn parse(value: &str) -> Result<Via, BadHeader> {
        let mut fields = Vec::with_capacity(3);
        let mut rest = value.trim_start();
        for i in 0..3 {
            let end = rest
                .find(|c: char| !(c.is_ascii() && is_token_char(c as u8)))
                .unwrap_or(rest.len());
            if end == 0 {
                return Err(BadHeader("bad Via protocol"));
            }
            fields.push(&rest[..end]);
            rest = rest[end..].trim_start();
            if i < 2 {
                rest = rest
                    .strip_prefix('/')
                    .ok_or(BadHeader("bad Via protocol"))?
                    .trim_start();
            }
        }
        if !fields[0].eq_ignore_ascii_case("SIP") || fields[1] != "2.0" {
            return Err(BadHeader("bad Via protocol"));
        }
        let t = fields[2].to_ascii_uppercase();
        let transport = match t.as_str() {
            "UDP" => ViaTransport::Udp,
            "TCP" => ViaTransport::Tcp,
            "TLS" => ViaTransport::Tls,
            "SCTP" => ViaTransport::Sctp,
            "WS" => ViaTransport::Ws,
            "WSS" => ViaTransport::Wss,
            _ => ViaTransport::Other(t),
        };
        let parts = split_semi(rest)?;
        let sent_by: String = parts[0].chars().filter(|c| !c.is_whitespace()).collect();
        if sent_by.is_empty() {
            return Err(BadHeader("Via without sent-by"));
        }
        let (host, port) = parse_hostport(&sent_by)?;
        let params = parse_params(&parts[1..])?;
        if let Some(Some(received)) = params.get("received") {
            // received is an IPv4 or IPv6 address (RFC 5118 §4.5 allows both with and without brackets).
            let r = received.trim_start_matches('[').trim_end_matches(']');
            if r.parse::<std::net::IpAddr>().is_err() {
                return Err(BadHeader("bad received parameter"));
            }
        }
        Ok(Via {
            transport,
            host,
            port,
            params,
        })
    }

    /// The branch parameter.
    pub fn branch(&self) -> Option<&str> {
        self.params.value("branch")
    }

    /// True when the branch carries the RFC 3261 magic cookie.
    pub fn is_rfc3261(&self) -> bool {
        self.branch().is_some_and(|b| b.starts_with(MAGIC_COOKIE))
    }
}

/// A CSeq value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CSeq {
    /// Sequence number (< 2^31 per RFC 3261 §8.1.1.5).
    pub seq: u32,
    /// Method token.
    pub method: String,
}

impl CSeq {
    /// Parse `number LWS method`.
    pub fn parse(value: &str) -> Result<CSeq, BadHeader> {
        let mut it = value.split_whitespace();
        let num = it.next().ok_or(BadHeader("empty CSeq"))?;
        let method = it.next().ok_or(BadHeader("CSeq without method"))?;
        if it.next().is_some() {
            return Err(BadHeader("junk in CSeq"));
        }
        if num.len() > 10 || !num.bytes().all(|c| c.is_ascii_digit()) {
            return Err(BadHeader("bad CSeq number"));
        }
        let seq: u64 = num.parse().map_err(|_| BadHeader("bad CSeq number"))?;
        if seq >= 1 << 31 {
            return Err(BadHeader("CSeq number out of range"));
        }
        if !method.bytes().all(is_token_char) {
            return Err(BadHeader("bad CSeq method"));
        }
        Ok(CSeq {
            seq: seq as u32,
            method: method.to_owned(),
        })
    }
}

/// A Contact header element: a name-addr or the wildcard `*`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Contact {
    /// `Contact: *` (only valid in REGISTER with Expires: 0).
    Wildcard,
    /// A contact address.
    Addr(Box<NameAddr>),
}

impl Contact {
    /// Parse one Contact element.
    pub fn parse(value: &str) -> Result<Contact, BadHeader> {
        if value.trim() == "*" {
            Ok(Contact::Wildcard)
        } else {
            NameAddr::parse(value).map(|a| Contact::Addr(Box::new(a)))
        }
    }
}

/// Parse a delta-seconds value (Expires, expires=, Min-Expires), saturating huge values
/// (RFC 3261 §20.19: values above 2^32-1 are taken as 2^32-1).
pub fn parse_delta_seconds(v: &str) -> Result<u32, BadHeader> {
    let v = v.trim();
    if v.is_empty() || !v.bytes().all(|c| c.is_ascii_digit()) {
        return Err(BadHeader("bad delta-seconds"));
    }
    Ok(v.parse::<u64>()
        .map_or(u32::MAX, |n| n.min(u32::MAX as u64) as u32))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn name_addr_forms() {
        let n = NameAddr::parse(
            r#""J Rosenberg \\\""       <sip:jdrosen@example.com> ; tag = 98asjd8"#,
        )
        .unwrap();
        assert_eq!(n.display.as_deref(), Some(r#"J Rosenberg \""#));
        assert_eq!(n.tag(), Some("98asjd8"));
        let n = NameAddr::parse("sip:caller@example.net;tag=231413434").unwrap();
        assert_eq!(n.uri_text, "sip:caller@example.net");
        assert_eq!(n.tag(), Some("231413434"));
        let n = NameAddr::parse("Bob <sip:bob@b.example>;tag=x").unwrap();
        assert_eq!(n.display.as_deref(), Some("Bob"));
        let n = NameAddr::parse(
            r#"<sip:u@h>;+sip.instance="<urn:uuid:00000000-0000-1000-8000-AABBCCDDEEFF>";reg-id=1"#,
        )
        .unwrap();
        assert_eq!(
            n.params.value("+sip.instance"),
            Some("<urn:uuid:00000000-0000-1000-8000-AABBCCDDEEFF>")
        );
        assert!(NameAddr::parse(r#""unbalanced <sip:a@b>"#).is_err());
        assert!(NameAddr::parse("Bell, Alexander <sip:a@b>").is_err());
        assert!(NameAddr::parse("<sip:a@b").is_err());
        assert!(NameAddr::parse("sip:a@b >").is_err());
    }

    #[test]
    fn via_with_lws() {
        let v = Via::parse("SIP  /   2.0 /UDP    192.0.2.2;branch=390skdjuw").unwrap();
        assert_eq!(v.transport, ViaTransport::Udp);
        assert_eq!(v.branch(), Some("390skdjuw"));
        assert!(!v.is_rfc3261());
        let v =
            Via::parse("SIP  / 2.0  / TCP     spindle.example.com   ; branch  =   z9hG4bK9ikj8")
                .unwrap();
        assert!(v.is_rfc3261());
        let v = Via::parse(
            "SIP/2.0/UDP [2001:db8::9:1]:5070;received=[2001:db8::9:255];branch=z9hG4bKas3;rport",
        )
        .unwrap();
        assert_eq!(v.port, Some(5070));
        assert_eq!(v.params.get("rport"), Some(None));
        assert!(Via::parse("SIP/2.0/UDP").is_err());
        assert!(Via::parse("SIP/2.0/UDP h;received=bad").is_err());
    }

    #[test]
    fn cseq_range() {
        assert_eq!(CSeq::parse("0009 INVITE").unwrap().seq, 9);
        assert!(CSeq::parse("36893488147419103232 REGISTER").is_err());
        assert!(CSeq::parse("2147483648 REGISTER").is_err());
        assert!(CSeq::parse("1").is_err());
    }

    #[test]
    fn delta_seconds_saturate() {
        assert_eq!(parse_delta_seconds("3600").unwrap(), 3600);
        assert_eq!(
            parse_delta_seconds("10000000000000000000000000").unwrap(),
            u32::MAX
        );
        assert!(parse_delta_seconds("-1").is_err());
    }
}
