//! Framing and normalisation of SIP messages (RFC 3261 §7 and §18.3).
//!
//! What happens here, before anything looks at a header's meaning:
//! - leading CRLFs before the start line are skipped (§7.5); a bare LF is accepted as a line end;
//! - folded header lines (a line starting with SP or HTAB) are joined with one space (§7.3.1);
//! - compact header names (`v`, `i`, `m`, `l`, …) are mapped to their long forms and every
//!   known name gets its canonical capitalisation;
//! - Content-Length frames the body: octets past it in a datagram are ignored (§18.3), a
//!   Content-Length larger than what arrived is an error (400), several different values are an
//!   error; on a stream (TCP) Content-Length is mandatory and [`StreamFramer`] uses it to cut
//!   messages out of the byte stream;
//! - a size limit is enforced before any work is done.
//!
//! A failure is a [`Malformed`] that carries the status to answer with and, when the headers
//! needed to route a response were readable, the [`ReplyContext`] to build that answer from.

use bytes::{Buf, Bytes, BytesMut};

use crate::message::{Header, Headers, Message, Method, Request, Response};

/// Default maximum message size accepted (octets).
pub const DEFAULT_MAX_MESSAGE_SIZE: usize = 65_535;

/// The headers of an unparseable request that are enough to send an error response back.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ReplyContext {
    /// The request's headers as far as they could be read.
    pub headers: Headers,
}

/// A message that could not be accepted, and how to answer it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Malformed {
    /// Status code to answer with (400, 505, 413 …), if the message is a request.
    pub status: u16,
    /// Short reason, used as the reason phrase of the answer and in logs.
    pub reason: &'static str,
    /// Present when the input looked like a request and its headers could be read.
    pub reply: Option<ReplyContext>,
}

impl Malformed {
    fn new(status: u16, reason: &'static str) -> Malformed {
        Malformed {
            status,
            reason,
            reply: None,
        }
    }
}

/// Known headers: (compact form, canonical long form).
const KNOWN_HEADERS: &[(Option<u8>, &str)] = &[
    (Some(b'a'), "Accept-Contact"),
    (Some(b'u'), "Allow-Events"),
    (Some(b'i'), "Call-ID"),
    (Some(b'm'), "Contact"),
    (Some(b'e'), "Content-Encoding"),
    (Some(b'l'), "Content-Length"),
    (Some(b'c'), "Content-Type"),
    (Some(b'o'), "Event"),
    (Some(b'f'), "From"),
    (Some(b'y'), "Identity"),
    (Some(b'r'), "Refer-To"),
    (Some(b'b'), "Referred-By"),
    (Some(b'j'), "Reject-Contact"),
    (Some(b'd'), "Request-Disposition"),
    (Some(b'x'), "Session-Expires"),
    (Some(b's'), "Subject"),
    (Some(b'k'), "Supported"),
    (Some(b't'), "To"),
    (Some(b'v'), "Via"),
    (None, "Accept"),
    (None, "Accept-Encoding"),
    (None, "Accept-Language"),
    (None, "Alert-Info"),
    (None, "Allow"),
    (None, "Authentication-Info"),
    (None, "Authorization"),
    (None, "Call-Info"),
    (None, "Content-Disposition"),
    (None, "Content-Language"),
    (None, "CSeq"),
    (None, "Date"),
    (None, "Error-Info"),
    (None, "Expires"),
    (None, "In-Reply-To"),
    (None, "Max-Forwards"),
    (None, "MIME-Version"),
    (None, "Min-Expires"),
    (None, "Min-SE"),
    (None, "Organization"),
    (None, "Path"),
    (None, "Priority"),
    (None, "Proxy-Authenticate"),
    (None, "Proxy-Authorization"),
    (None, "Proxy-Require"),
    (None, "Record-Route"),
    (None, "Reply-To"),
    (None, "Require"),
    (None, "Retry-After"),
    (None, "Route"),
    (None, "RSeq"),
    (None, "RAck"),
    (None, "Server"),
    (None, "Timestamp"),
    (None, "Unsupported"),
    (None, "User-Agent"),
    (None, "Warning"),
    (None, "WWW-Authenticate"),
];

/// Map a header name as received to its canonical form (compact forms expanded).
pub fn canonical_name(name: &str) -> std::borrow::Cow<'_, str> {
    if name.len() == 1 {
        let c = name.as_bytes()[0].to_ascii_lowercase();
        if let Some((_, long)) = KNOWN_HEADERS.iter().find(|(short, _)| *short == Some(c)) {
            return std::borrow::Cow::Borrowed(long);
        }
    }
    match KNOWN_HEADERS
        .iter()
        .find(|(_, long)| long.eq_ignore_ascii_case(name))
    {
        Some((_, long)) => std::borrow::Cow::Borrowed(long),
        None => std::borrow::Cow::Borrowed(name),
    }
}

/// RFC 3261 `token` characters.
pub(crate) fn is_token_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || b"-.!%*_+`'~".contains(&c)
}

fn is_token(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(is_token_char)
}

/// Find the end of the header section: returns (offset of the blank line, length of the separator).
fn find_header_end(buf: &[u8]) -> Option<(usize, usize)> {
    let mut i = 0;
    while i < buf.len() {
        if buf[i] == b'\n' {
            // "\n\n" or "\n\r\n" ends the headers.
            if buf.get(i + 1) == Some(&b'\n') {
                return Some((i + 1, 1));
            }
            if buf.get(i + 1) == Some(&b'\r') && buf.get(i + 2) == Some(&b'\n') {
                return Some((i + 1, 2));
            }
        }
        i += 1;
    }
    None
}

fn skip_leading_crlf(buf: &[u8]) -> &[u8] {
    let n = buf
        .iter()
        .take_while(|&&c| c == b'\r' || c == b'\n')
        .count();
    &buf[n..]
}

/// Parse the Content-Length value(s) of a header list. `Ok(None)` when absent.
fn content_length(headers: &Headers) -> Result<Option<usize>, &'static str> {
    let mut found: Option<usize> = None;
    for v in headers.get_all("Content-Length") {
        let v = v.trim();
        if v.is_empty() || v.len() > 9 || !v.bytes().all(|c| c.is_ascii_digit()) {
            return Err("Bad Content-Length");
        }
        let n: usize = v.parse().map_err(|_| "Bad Content-Length")?;
        match found {
            Some(prev) if prev != n => return Err("Conflicting Content-Length"),
            _ => found = Some(n),
        }
    }
    Ok(found)
}

/// Read header lines (already separated from start line and body) into a normalised list.
fn parse_header_lines(text: &str) -> Result<Headers, &'static str> {
    let mut headers: Vec<Header> = Vec::with_capacity(16);
    for raw in text.split('\n') {
        let line = raw.strip_suffix('\r').unwrap_or(raw);
        if line.is_empty() {
            continue;
        }
        if line.starts_with(' ') || line.starts_with('\t') {
            let last = headers.last_mut().ok_or("Folded line before any header")?;
            let cont = line.trim();
            if !cont.is_empty() {
                if !last.value.is_empty() {
                    last.value.push(' ');
                }
                last.value.push_str(cont);
            }
            continue;
        }
        let colon = line.find(':').ok_or("Header line without colon")?;
        let name = line[..colon].trim_end_matches([' ', '\t']);
        if !is_token(name) {
            return Err("Bad header name");
        }
        let value = line[colon + 1..].trim();
        headers.push(Header {
            name: canonical_name(name).into_owned(),
            value: value.to_owned(),
        });
    }
    Ok(Headers(headers))
}

enum StartLine {
    Request { method: Method, uri: String },
    Response { status: u16, reason: String },
}

fn parse_version(v: &str) -> Result<(), Malformed> {
    let (proto, ver) = v
        .split_once('/')
        .ok_or(Malformed::new(400, "Bad SIP version"))?;
    if !proto.eq_ignore_ascii_case("SIP") {
        return Err(Malformed::new(400, "Bad SIP version"));
    }
    let (major, minor) = ver
        .split_once('.')
        .ok_or(Malformed::new(400, "Bad SIP version"))?;
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|c| c.is_ascii_digit());
    if !digits(major) || !digits(minor) {
        return Err(Malformed::new(400, "Bad SIP version"));
    }
    if major.trim_start_matches('0') != "2" || !minor.trim_start_matches('0').is_empty() {
        return Err(Malformed::new(505, "Version Not Supported"));
    }
    Ok(())
}

fn parse_start_line(line: &str) -> Result<StartLine, Malformed> {
    if is_status_line(line) {
        // Status-Line = SIP-Version SP Status-Code SP Reason-Phrase
        let mut it = line.splitn(3, ' ');
        let version = it.next().unwrap_or_default();
        let code = it.next().unwrap_or_default();
        let reason = it.next().unwrap_or_default();
        parse_version(version)?;
        if code.len() != 3 || !code.bytes().all(|c| c.is_ascii_digit()) {
            return Err(Malformed::new(400, "Bad status code"));
        }
        let status: u16 = code
            .parse()
            .map_err(|_| Malformed::new(400, "Bad status code"))?;
        if !(100..=699).contains(&status) {
            return Err(Malformed::new(400, "Bad status code"));
        }
        return Ok(StartLine::Response {
            status,
            reason: reason.to_owned(),
        });
    }
    // Request-Line = Method SP Request-URI SP SIP-Version: exactly single spaces.
    let parts: Vec<&str> = line.split(' ').collect();
    if parts.len() != 3 || parts.iter().any(|p| p.is_empty()) {
        return Err(Malformed::new(400, "Malformed Request-Line"));
    }
    if !is_token(parts[0]) {
        return Err(Malformed::new(400, "Bad method"));
    }
    parse_version(parts[2])?;
    Ok(StartLine::Request {
        method: Method::from_token(parts[0]),
        uri: parts[1].to_owned(),
    })
}

/// True when the start line begins with "SIP/" (any case), i.e. a status line. Byte-wise:
/// the line may hold replacement characters from invalid UTF-8, and slicing a `str` at a
/// byte that is not a character boundary panics.
fn is_status_line(line: &str) -> bool {
    line.as_bytes()
        .get(..4)
        .is_some_and(|b| b.eq_ignore_ascii_case(b"SIP/"))
}

fn looks_like_request(line: &str) -> bool {
    !is_status_line(line)
}

/// Parse one message from a datagram (or one framed message of a stream).
///
/// Octets past Content-Length are ignored; a missing Content-Length means the body is the rest
/// of the datagram (`stream == false`) or empty (`stream == true`, where the framer has already
/// cut exactly Content-Length octets).
pub fn parse_message(data: &[u8], max_size: usize) -> Result<Message, Malformed> {
    if data.len() > max_size {
        return Err(Malformed::new(513, "Message Too Large"));
    }
    let data = skip_leading_crlf(data);
    if data.is_empty() {
        return Err(Malformed::new(400, "Empty message"));
    }
    let (head_end, sep) = find_header_end(data).ok_or(Malformed::new(400, "No end of headers"))?;
    let head = String::from_utf8_lossy(&data[..head_end]);
    let body_start = head_end + sep;
    let (start, rest) = match head.find('\n') {
        Some(i) => (&head[..i], &head[i + 1..]),
        None => (&head[..], ""),
    };
    let start = start.strip_suffix('\r').unwrap_or(start);
    let is_request = looks_like_request(start);

    let headers = match parse_header_lines(rest) {
        Ok(h) => h,
        Err(reason) => {
            return Err(Malformed {
                status: 400,
                reason,
                reply: None,
            })
        }
    };
    let with_reply = |m: Malformed, headers: &Headers| Malformed {
        reply: if is_request {
            Some(ReplyContext {
                headers: headers.clone(),
            })
        } else {
            None
        },
        ..m
    };
    let start_line = parse_start_line(start).map_err(|m| with_reply(m, &headers))?;

    let available = &data[body_start.min(data.len())..];
    let body = match content_length(&headers) {
        Err(reason) => return Err(with_reply(Malformed::new(400, reason), &headers)),
        Ok(Some(n)) if n > available.len() => {
            return Err(with_reply(
                Malformed::new(400, "Content-Length exceeds message"),
                &headers,
            ))
        }
        Ok(Some(n)) => Bytes::copy_from_slice(&available[..n]),
        Ok(None) => Bytes::copy_from_slice(available),
    };

    Ok(match start_line {
        StartLine::Request { method, uri } => Message::Request(Request {
            method,
            uri,
            headers,
            body,
        }),
        StartLine::Response { status, reason } => Message::Response(Response {
            status,
            reason,
            headers,
            body,
        }),
    })
}

/// What the stream framer produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Framed {
    /// One whole message (headers and exactly Content-Length body octets).
    Message(Bytes),
    /// A CRLF keep-alive ping (RFC 5626 §3.5.1): answer with a single CRLF.
    Ping,
}

/// Why a stream cannot be framed any more; the connection should be closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamError {
    /// The header section or the declared body exceeds the size limit.
    TooLarge,
    /// A message on a stream without a valid Content-Length (RFC 3261 §18.3 makes it mandatory).
    MissingContentLength,
}

/// Cuts SIP messages out of a TCP byte stream using Content-Length (RFC 3261 §18.3).
#[derive(Debug)]
pub struct StreamFramer {
    buf: BytesMut,
    max_size: usize,
}

impl StreamFramer {
    /// A framer that refuses messages larger than `max_size` octets.
    pub fn new(max_size: usize) -> StreamFramer {
        StreamFramer {
            buf: BytesMut::new(),
            max_size,
        }
    }

    /// Append received bytes.
    pub fn push(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }

    /// Take the next complete item, `Ok(None)` if more bytes are needed.
    pub fn next_item(&mut self) -> Result<Option<Framed>, StreamError> {
        // Keep-alives: "\r\n\r\n" ping; a lone CRLF between messages is skipped.
        loop {
            if self.buf.starts_with(b"\r\n\r\n") {
                self.buf.advance(4);
                return Ok(Some(Framed::Ping));
            }
            if self.buf.starts_with(b"\r\n") {
                if self.buf.len() < 4 && b"\r\n\r\n".starts_with(&self.buf[..]) {
                    return Ok(None);
                }
                self.buf.advance(2);
                continue;
            }
            if self.buf.starts_with(b"\n") {
                self.buf.advance(1);
                continue;
            }
            break;
        }
        let Some((head_end, sep)) = find_header_end(&self.buf) else {
            if self.buf.len() > self.max_size {
                return Err(StreamError::TooLarge);
            }
            return Ok(None);
        };
        let body_start = head_end + sep;
        let head = String::from_utf8_lossy(&self.buf[..head_end]);
        let headers = parse_header_lines(head.split_once('\n').map(|x| x.1).unwrap_or(""))
            .map_err(|_| StreamError::MissingContentLength)?;
        let len = match content_length(&headers) {
            Ok(Some(n)) => n,
            _ => return Err(StreamError::MissingContentLength),
        };
        let total = body_start + len;
        if total > self.max_size {
            return Err(StreamError::TooLarge);
        }
        if self.buf.len() < total {
            return Ok(None);
        }
        Ok(Some(Framed::Message(self.buf.split_to(total).freeze())))
    }

    /// Bytes buffered and not yet framed.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(data: &[u8]) -> Request {
        match parse_message(data, DEFAULT_MAX_MESSAGE_SIZE).unwrap() {
            Message::Request(r) => r,
            Message::Response(_) => panic!("not a request"),
        }
    }

    #[test]
    fn compact_and_folded_headers_are_normalised() {
        let r = req(b"OPTIONS sip:a@b SIP/2.0\r\nv: SIP/2.0/UDP h;branch=z9hG4bK1\r\ni: abc\r\nSubject: one\r\n two\r\n\tthree\r\nl: 0\r\n\r\n");
        assert_eq!(r.headers.get("Via"), Some("SIP/2.0/UDP h;branch=z9hG4bK1"));
        assert_eq!(r.headers.get("call-id"), Some("abc"));
        assert_eq!(r.headers.get("Subject"), Some("one two three"));
    }

    #[test]
    fn bare_lf_and_leading_crlf_are_tolerated() {
        let r = req(b"\r\n\r\nOPTIONS sip:a@b SIP/2.0\nCall-ID: x\nContent-Length: 3\n\nabc");
        assert_eq!(r.headers.get("Call-ID"), Some("x"));
        assert_eq!(&r.body[..], b"abc");
    }

    #[test]
    fn datagram_octets_past_content_length_are_ignored() {
        let r = req(b"OPTIONS sip:a@b SIP/2.0\r\nContent-Length: 2\r\n\r\nabcdef");
        assert_eq!(&r.body[..], b"ab");
    }

    #[test]
    fn content_length_errors() {
        let e = parse_message(
            b"OPTIONS sip:a@b SIP/2.0\r\nContent-Length: 20\r\n\r\nabc",
            1000,
        )
        .unwrap_err();
        assert_eq!(e.status, 400);
        assert!(e.reply.is_some());
        let e = parse_message(
            b"OPTIONS sip:a@b SIP/2.0\r\nl: 1\r\nContent-Length: 2\r\n\r\nabc",
            1000,
        )
        .unwrap_err();
        assert_eq!(e.reason, "Conflicting Content-Length");
        let e = parse_message(b"OPTIONS sip:a@b SIP/2.0\r\nl: -1\r\n\r\n", 1000).unwrap_err();
        assert_eq!(e.status, 400);
    }

    #[test]
    fn version_and_request_line() {
        let e = parse_message(b"OPTIONS sip:a@b SIP/7.0\r\nl: 0\r\n\r\n", 1000).unwrap_err();
        assert_eq!(e.status, 505);
        let e = parse_message(b"OPTIONS  sip:a@b SIP/2.0\r\nl: 0\r\n\r\n", 1000).unwrap_err();
        assert_eq!(e.status, 400);
        let e = parse_message(b"SIP/2.0 4294967301 x\r\nl: 0\r\n\r\n", 1000).unwrap_err();
        assert!(e.reply.is_none());
        assert!(parse_message(b"OPTIONS sip:a@b SIP/2.0\r\nl: 0\r\n\r\n", 10).is_err());
    }

    #[test]
    fn invalid_utf8_before_the_start_line_is_refused_not_a_panic() {
        // Found by the fuzzer: 0xFF bytes become 3-byte replacement characters, and the old
        // check sliced the line at byte 4, inside one of them.
        let mut m = vec![0xFF; 84];
        m.extend_from_slice(b"OPTIONS sip:a@b SIP/2.0\r\nl: 0\r\n\r\n");
        assert!(parse_message(&m, 65_535).is_err());
        assert!(parse_message(b"\xC3\xA9\xC3\xA9 x\r\n\r\n", 65_535).is_err());
    }

    #[test]
    fn stream_framer_cuts_messages_and_pings() {
        let mut f = StreamFramer::new(1000);
        f.push(b"\r\n\r\nOPTIONS sip:a@b SIP/2.0\r\nl: 3\r\n\r\nab");
        assert_eq!(f.next_item(), Ok(Some(Framed::Ping)));
        assert_eq!(f.next_item(), Ok(None));
        f.push(b"cREGISTER sip:b SIP/2.0\r\nContent-Length: 0\r\n\r\n");
        match f.next_item() {
            Ok(Some(Framed::Message(m))) => assert!(m.ends_with(b"\r\n\r\nabc")),
            other => panic!("{other:?}"),
        }
        assert!(matches!(f.next_item(), Ok(Some(Framed::Message(_)))));
        assert_eq!(f.next_item(), Ok(None));
        assert_eq!(f.buffered(), 0);
        f.push(b"OPTIONS sip:a@b SIP/2.0\r\n\r\n");
        assert_eq!(f.next_item(), Err(StreamError::MissingContentLength));
        let mut f = StreamFramer::new(50);
        f.push(&[b'a'; 60]);
        assert_eq!(f.next_item(), Err(StreamError::TooLarge));
    }
}
