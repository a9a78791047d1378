//! ICE-lite (RFC 8445 §2.5): the relay's side of a browser's connectivity checks.
//!
//! A lite agent gathers only its host candidate (the relay port), never sends checks of its
//! own and answers the browser's: a STUN Binding request (RFC 5389) whose USERNAME starts with
//! our ufrag and whose MESSAGE-INTEGRITY is keyed with our password gets a success response
//! carrying the address it came from (XOR-MAPPED-ADDRESS), signed with the same key, with a
//! FINGERPRINT. Anything else is not ours to answer ([`Check::Invalid`]): a stranger cannot
//! make the relay send to an address of its choosing without our password.
//!
//! The browser keeps checking every few seconds while the call lasts (consent freshness,
//! RFC 7675); the address of the last valid check is where the leg's media goes.

use std::net::{IpAddr, SocketAddr};

use hmac::{Hmac, Mac};
use sha1::Sha1;

const MAGIC: u32 = 0x2112_a442;
const BINDING_REQUEST: u16 = 0x0001;
const BINDING_SUCCESS: u16 = 0x0101;
const USERNAME: u16 = 0x0006;
const MESSAGE_INTEGRITY: u16 = 0x0008;
const XOR_MAPPED_ADDRESS: u16 = 0x0020;
const USE_CANDIDATE: u16 = 0x0025;
const FINGERPRINT: u16 = 0x8028;
const FINGERPRINT_XOR: u32 = 0x5354_554e;

/// What a datagram that looks like STUN turned out to be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Check {
    /// A valid connectivity check: answer with `response`. `nominated` when it carries
    /// USE-CANDIDATE (the browser chose this pair).
    Valid {
        /// The success response to send back to where the request came from.
        response: Vec<u8>,
        /// The request carried USE-CANDIDATE.
        nominated: bool,
    },
    /// Not a Binding request for us with our password: dropped.
    Invalid,
}

/// True when `data` is a STUN message by RFC 7983's first-byte rule and the magic cookie.
pub fn is_stun(data: &[u8]) -> bool {
    data.len() >= 20
        && data[0] < 4
        && u32::from_be_bytes([data[4], data[5], data[6], data[7]]) == MAGIC
}

/// Answer a connectivity check that came from `from`, given our ICE credentials.
pub fn answer(data: &[u8], from: SocketAddr, local_ufrag: &str, local_pwd: &str) -> Check {
    if !is_stun(data) || u16::from_be_bytes([data[0], data[1]]) != BINDING_REQUEST {
        return Check::Invalid;
    }
    let declared = usize::from(u16::from_be_bytes([data[2], data[3]]));
    if declared % 4 != 0 || 20 + declared > data.len() {
        return Check::Invalid;
    }
    let msg = &data[..20 + declared];
    let mut pos = 20;
    let mut username_ok = false;
    let mut nominated = false;
    let mut integrity_ok = false;
    while pos + 4 <= msg.len() {
        let kind = u16::from_be_bytes([msg[pos], msg[pos + 1]]);
        let len = usize::from(u16::from_be_bytes([msg[pos + 2], msg[pos + 3]]));
        let value_at = pos + 4;
        if value_at + len > msg.len() {
            return Check::Invalid;
        }
        let value = &msg[value_at..value_at + len];
        match kind {
            USERNAME => {
                // "ours:theirs": the part before the colon is the ufrag we gave.
                username_ok = value
                    .split(|b| *b == b':')
                    .next()
                    .is_some_and(|u| u == local_ufrag.as_bytes());
            }
            USE_CANDIDATE => nominated = true,
            MESSAGE_INTEGRITY => {
                if len != 20 {
                    return Check::Invalid;
                }
                // The HMAC covers the message before this attribute, with the length field
                // counting up to the end of it.
                let mut head = msg[..pos].to_vec();
                let counted = (pos + 24 - 20) as u16;
                head[2..4].copy_from_slice(&counted.to_be_bytes());
                integrity_ok = hmac_sha1(local_pwd.as_bytes(), &head)
                    .is_some_and(|mac| constant_time_eq(&mac, value));
                // Only FINGERPRINT may follow; it is not needed to trust the request.
                break;
            }
            _ => {}
        }
        pos = value_at + len.div_ceil(4) * 4;
    }
    if !(username_ok && integrity_ok) {
        return Check::Invalid;
    }
    let mut txid = [0u8; 12];
    txid.copy_from_slice(&data[8..20]);
    Check::Valid {
        response: success(&txid, from, local_pwd),
        nominated,
    }
}

/// A Binding success response: XOR-MAPPED-ADDRESS, MESSAGE-INTEGRITY, FINGERPRINT.
fn success(txid: &[u8; 12], from: SocketAddr, key: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(80);
    out.extend_from_slice(&BINDING_SUCCESS.to_be_bytes());
    out.extend_from_slice(&[0, 0]);
    out.extend_from_slice(&MAGIC.to_be_bytes());
    out.extend_from_slice(txid);
    // XOR-MAPPED-ADDRESS.
    let port = from.port() ^ (MAGIC >> 16) as u16;
    match from.ip() {
        IpAddr::V4(a) => {
            out.extend_from_slice(&XOR_MAPPED_ADDRESS.to_be_bytes());
            out.extend_from_slice(&8u16.to_be_bytes());
            out.extend_from_slice(&[0, 1]);
            out.extend_from_slice(&port.to_be_bytes());
            let x = u32::from(a) ^ MAGIC;
            out.extend_from_slice(&x.to_be_bytes());
        }
        IpAddr::V6(a) => {
            out.extend_from_slice(&XOR_MAPPED_ADDRESS.to_be_bytes());
            out.extend_from_slice(&20u16.to_be_bytes());
            out.extend_from_slice(&[0, 2]);
            out.extend_from_slice(&port.to_be_bytes());
            let mut mask = [0u8; 16];
            mask[..4].copy_from_slice(&MAGIC.to_be_bytes());
            mask[4..].copy_from_slice(txid);
            for (o, m) in a.octets().iter().zip(mask) {
                out.push(o ^ m);
            }
        }
    }
    // MESSAGE-INTEGRITY: the length counts up to the end of this attribute.
    let len = (out.len() - 20 + 24) as u16;
    out[2..4].copy_from_slice(&len.to_be_bytes());
    let mac = hmac_sha1(key.as_bytes(), &out).unwrap_or([0; 20]);
    out.extend_from_slice(&MESSAGE_INTEGRITY.to_be_bytes());
    out.extend_from_slice(&20u16.to_be_bytes());
    out.extend_from_slice(&mac);
    // FINGERPRINT: likewise, then CRC-32 of everything before it.
    let len = (out.len() - 20 + 8) as u16;
    out[2..4].copy_from_slice(&len.to_be_bytes());
    let crc = crc32(&out) ^ FINGERPRINT_XOR;
    out.extend_from_slice(&FINGERPRINT.to_be_bytes());
    out.extend_from_slice(&4u16.to_be_bytes());
    out.extend_from_slice(&crc.to_be_bytes());
    out
}

fn hmac_sha1(key: &[u8], data: &[u8]) -> Option<[u8; 20]> {
    let mut mac = Hmac::<Sha1>::new_from_slice(key).ok()?;
    mac.update(data);
    Some(mac.finalize().into_bytes().into())
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// CRC-32 (ISO-HDLC, the one STUN's FINGERPRINT uses).
fn crc32(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xedb8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// A Binding request as a browser sends it: USERNAME (`ours:theirs`), USE-CANDIDATE,
/// MESSAGE-INTEGRITY keyed with `pwd`, FINGERPRINT. For tests and load generators that stand
/// in for a browser.
pub fn request(username: &str, pwd: &str, use_candidate: bool) -> Vec<u8> {
    let mut m = Vec::new();
    m.extend_from_slice(&BINDING_REQUEST.to_be_bytes());
    m.extend_from_slice(&[0, 0]);
    m.extend_from_slice(&MAGIC.to_be_bytes());
    m.extend_from_slice(&[7u8; 12]);
    let u = username.as_bytes();
    m.extend_from_slice(&USERNAME.to_be_bytes());
    m.extend_from_slice(&(u.len() as u16).to_be_bytes());
    m.extend_from_slice(u);
    m.resize(m.len() + (4 - u.len() % 4) % 4, 0);
    if use_candidate {
        m.extend_from_slice(&USE_CANDIDATE.to_be_bytes());
        m.extend_from_slice(&[0, 0]);
    }
    let len = (m.len() - 20 + 24) as u16;
    m[2..4].copy_from_slice(&len.to_be_bytes());
    let mac = hmac_sha1(pwd.as_bytes(), &m).unwrap();
    m.extend_from_slice(&MESSAGE_INTEGRITY.to_be_bytes());
    m.extend_from_slice(&20u16.to_be_bytes());
    m.extend_from_slice(&mac);
    let len = (m.len() - 20 + 8) as u16;
    m[2..4].copy_from_slice(&len.to_be_bytes());
    let crc = crc32(&m) ^ FINGERPRINT_XOR;
    m.extend_from_slice(&FINGERPRINT.to_be_bytes());
    m.extend_from_slice(&4u16.to_be_bytes());
    m.extend_from_slice(&crc.to_be_bytes());
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 5769 §2.1: the sample request, signed with the short-term password
    /// "VOkJxbRl1RmTxUk/WvJxBt" by someone else's implementation: our integrity check accepts
    /// it (and refuses it with another password), and our CRC gives its FINGERPRINT.
    #[test]
    fn the_rfc_5769_sample_request_passes_our_checks() {
        let req: [u8; 108] = [
            0x00, 0x01, 0x00, 0x58, 0x21, 0x12, 0xa4, 0x42, 0xb7, 0xe7, 0xa7, 0x01, 0xbc, 0x34,
            0xd6, 0x86, 0xfa, 0x87, 0xdf, 0xae, 0x80, 0x22, 0x00, 0x10, 0x53, 0x54, 0x55, 0x4e,
            0x20, 0x74, 0x65, 0x73, 0x74, 0x20, 0x63, 0x6c, 0x69, 0x65, 0x6e, 0x74, 0x00, 0x24,
            0x00, 0x04, 0x6e, 0x00, 0x01, 0xff, 0x80, 0x29, 0x00, 0x08, 0x93, 0x2f, 0xf9, 0xb1,
            0x51, 0x26, 0x3b, 0x36, 0x00, 0x06, 0x00, 0x09, 0x65, 0x76, 0x74, 0x6a, 0x3a, 0x68,
            0x36, 0x76, 0x59, 0x20, 0x20, 0x20, 0x00, 0x08, 0x00, 0x14, 0x9a, 0xea, 0xa7, 0x0c,
            0xbf, 0xd8, 0xcb, 0x56, 0x78, 0x1e, 0xf2, 0xb5, 0xb2, 0xd3, 0xf2, 0x49, 0xc1, 0xb5,
            0x71, 0xa2, 0x80, 0x28, 0x00, 0x04, 0xe5, 0x7a, 0x3b, 0xcf,
        ];
        let from: SocketAddr = "192.0.2.1:32853".parse().unwrap();
        assert!(matches!(
            answer(&req, from, "evtj", "VOkJxbRl1RmTxUk/WvJxBt"),
            Check::Valid {
                nominated: false,
                ..
            }
        ));
        assert_eq!(
            answer(&req, from, "evtj", "VOkJxbRl1RmTxUk/WvJxBu"),
            Check::Invalid
        );
        assert_eq!(crc32(&req[..100]) ^ FINGERPRINT_XOR, 0xe57a_3bcf);
    }

    #[test]
    fn crc32_matches_the_standard_check_value() {
        assert_eq!(crc32(b"123456789"), 0xcbf4_3926);
    }

    #[test]
    fn a_check_with_our_password_is_answered_with_its_address() {
        let from: SocketAddr = "192.0.2.7:40000".parse().unwrap();
        let req = request("srvufrag:browser", "server-password-0123456789", true);
        let Check::Valid {
            response,
            nominated,
        } = answer(&req, from, "srvufrag", "server-password-0123456789")
        else {
            panic!("valid check refused");
        };
        assert!(nominated);
        assert_eq!(&response[0..2], &BINDING_SUCCESS.to_be_bytes());
        assert_eq!(&response[8..20], &[7u8; 12]);
        // XOR-MAPPED-ADDRESS decodes to where the check came from.
        assert_eq!(&response[20..22], &XOR_MAPPED_ADDRESS.to_be_bytes());
        let port = u16::from_be_bytes([response[26], response[27]]) ^ 0x2112;
        let ip =
            u32::from_be_bytes([response[28], response[29], response[30], response[31]]) ^ MAGIC;
        assert_eq!(SocketAddr::new(IpAddr::V4(ip.into()), port), from);
        // The response passes the same integrity check a browser makes.
        let mi = 32;
        assert_eq!(&response[mi..mi + 2], &MESSAGE_INTEGRITY.to_be_bytes());
        let mut head = response[..mi].to_vec();
        head[2..4].copy_from_slice(&((mi + 24 - 20) as u16).to_be_bytes());
        let mac = hmac_sha1(b"server-password-0123456789", &head).unwrap();
        assert_eq!(&response[mi + 4..mi + 24], &mac);
        // And its fingerprint.
        let fp = mi + 24;
        let crc = u32::from_be_bytes([
            response[fp + 4],
            response[fp + 5],
            response[fp + 6],
            response[fp + 7],
        ]);
        assert_eq!(crc, crc32(&response[..fp]) ^ FINGERPRINT_XOR);
        assert_eq!(response.len(), fp + 8);
        assert_eq!(
            usize::from(u16::from_be_bytes([response[2], response[3]])),
            response.len() - 20
        );
    }

    #[test]
    fn a_wrong_password_or_ufrag_or_garbage_is_not_answered() {
        let from: SocketAddr = "192.0.2.7:40000".parse().unwrap();
        let req = request("srvufrag:browser", "not-the-password", false);
        assert_eq!(
            answer(&req, from, "srvufrag", "server-password-0123456789"),
            Check::Invalid
        );
        let req = request("other:browser", "server-password-0123456789", false);
        assert_eq!(
            answer(&req, from, "srvufrag", "server-password-0123456789"),
            Check::Invalid
        );
        let mut req = request("srvufrag:browser", "server-password-0123456789", false);
        req.truncate(30);
        assert_eq!(
            answer(&req, from, "srvufrag", "server-password-0123456789"),
            Check::Invalid
        );
        assert_eq!(answer(&[0u8; 3], from, "a", "b"), Check::Invalid);
        let req = request("srvufrag:browser", "server-password-0123456789", false);
        assert!(matches!(
            answer(&req, from, "srvufrag", "server-password-0123456789"),
            Check::Valid {
                nominated: false,
                ..
            }
        ));
    }
}
