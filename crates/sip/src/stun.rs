//! STUN keep-alives on the SIP port (RFC 5626 §4.4.1, RFC 5389): a phone behind NAT sends a
//! STUN Binding request to its registrar over the same UDP flow as its SIP, and the answer
//! (a Binding success response with the address the request came from) both keeps the NAT
//! binding open and tells the phone its public address. Only what keep-alives need: Binding
//! requests without authentication, answered with XOR-MAPPED-ADDRESS.

use std::net::SocketAddr;

/// The magic cookie of RFC 5389 messages.
const COOKIE: u32 = 0x2112_A442;
const BINDING_REQUEST: u16 = 0x0001;
const BINDING_SUCCESS: u16 = 0x0101;
const XOR_MAPPED_ADDRESS: u16 = 0x0020;

/// Does this datagram look like a STUN message (and not SIP)? The first two bits are zero
/// and the magic cookie is in place; SIP starts with a letter.
pub fn is_stun(data: &[u8]) -> bool {
    data.len() >= 20
        && data[0] & 0xC0 == 0
        && u32::from_be_bytes([data[4], data[5], data[6], data[7]]) == COOKIE
        && usize::from(u16::from_be_bytes([data[2], data[3]])) == data.len() - 20
}

/// The answer to a STUN Binding request from `from`: a Binding success response carrying
/// `from` as XOR-MAPPED-ADDRESS. `None` for anything else (other methods, responses,
/// malformed messages), which is dropped.
pub fn binding_response(data: &[u8], from: SocketAddr) -> Option<Vec<u8>> {
    if !is_stun(data) || u16::from_be_bytes([data[0], data[1]]) != BINDING_REQUEST {
        return None;
    }
    let tid = &data[8..20];
    let port = from.port() ^ (COOKIE >> 16) as u16;
    let mut attr = Vec::with_capacity(24);
    match from {
        SocketAddr::V4(a) => {
            attr.extend_from_slice(&[0, 0x01]);
            attr.extend_from_slice(&port.to_be_bytes());
            let x = u32::from(*a.ip()) ^ COOKIE;
            attr.extend_from_slice(&x.to_be_bytes());
        }
        SocketAddr::V6(a) => {
            attr.extend_from_slice(&[0, 0x02]);
            attr.extend_from_slice(&port.to_be_bytes());
            let mut key = [0u8; 16];
            key[..4].copy_from_slice(&COOKIE.to_be_bytes());
            key[4..].copy_from_slice(tid);
            for (o, k) in a.ip().octets().iter().zip(key) {
                attr.push(o ^ k);
            }
        }
    }
    let mut out = Vec::with_capacity(20 + 4 + attr.len());
    out.extend_from_slice(&BINDING_SUCCESS.to_be_bytes());
    out.extend_from_slice(&((4 + attr.len()) as u16).to_be_bytes());
    out.extend_from_slice(&COOKIE.to_be_bytes());
    out.extend_from_slice(tid);
    out.extend_from_slice(&XOR_MAPPED_ADDRESS.to_be_bytes());
    out.extend_from_slice(&(attr.len() as u16).to_be_bytes());
    out.extend_from_slice(&attr);
    Some(out)
}

/// A STUN Binding request with transaction id `tid` (what a phone sends as a keep-alive).
pub fn binding_request(tid: [u8; 12]) -> Vec<u8> {
    let mut out = Vec::with_capacity(20);
    out.extend_from_slice(&BINDING_REQUEST.to_be_bytes());
    out.extend_from_slice(&0u16.to_be_bytes());
    out.extend_from_slice(&COOKIE.to_be_bytes());
    out.extend_from_slice(&tid);
    out
}

/// The address in a Binding success response to the request with `tid` (the phone's address
/// as the server sees it).
pub fn mapped_address(data: &[u8], tid: [u8; 12]) -> Option<SocketAddr> {
    if !is_stun(data) || u16::from_be_bytes([data[0], data[1]]) != BINDING_SUCCESS {
        return None;
    }
    if data[8..20] != tid {
        return None;
    }
    let mut rest = &data[20..];
    while rest.len() >= 4 {
        let kind = u16::from_be_bytes([rest[0], rest[1]]);
        let len = usize::from(u16::from_be_bytes([rest[2], rest[3]]));
        let value = rest.get(4..4 + len)?;
        if kind == XOR_MAPPED_ADDRESS && len >= 8 {
            let port = u16::from_be_bytes([value[2], value[3]]) ^ (COOKIE >> 16) as u16;
            return match value[1] {
                0x01 => {
                    let x = u32::from_be_bytes([value[4], value[5], value[6], value[7]]);
                    Some(SocketAddr::from((
                        std::net::Ipv4Addr::from(x ^ COOKIE),
                        port,
                    )))
                }
                0x02 if len >= 20 => {
                    let mut key = [0u8; 16];
                    key[..4].copy_from_slice(&COOKIE.to_be_bytes());
                    key[4..].copy_from_slice(&tid);
                    let mut ip = [0u8; 16];
                    for (i, b) in ip.iter_mut().enumerate() {
                        *b = value[4 + i] ^ key[i];
                    }
                    Some(SocketAddr::from((std::net::Ipv6Addr::from(ip), port)))
                }
                _ => None,
            };
        }
        // Attributes are padded to four bytes.
        let step = 4 + len.div_ceil(4) * 4;
        rest = rest.get(step..)?;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_binding_request_is_answered_with_the_address_it_came_from() {
        let tid = *b"0123456789ab";
        for from in ["198.51.100.7:40123", "[2001:db8::7]:5062"] {
            let from: SocketAddr = from.parse().unwrap();
            let req = binding_request(tid);
            assert!(is_stun(&req));
            let resp = binding_response(&req, from).expect("a response");
            assert_eq!(mapped_address(&resp, tid), Some(from));
            assert_eq!(mapped_address(&resp, *b"another-tid!"), None);
        }
    }

    /// The RFC 5769 §2.2 sample response's XOR-MAPPED-ADDRESS (192.0.2.1:32853), decoded.
    #[test]
    fn the_rfc_5769_sample_address_decodes() {
        let tid = [
            0xb7, 0xe7, 0xa7, 0x01, 0xbc, 0x34, 0xd6, 0x86, 0xfa, 0x87, 0xdf, 0xae,
        ];
        let mut msg = vec![0x01, 0x01, 0x00, 0x0c, 0x21, 0x12, 0xa4, 0x42];
        msg.extend_from_slice(&tid);
        msg.extend_from_slice(&[
            0x00, 0x20, 0x00, 0x08, 0x00, 0x01, 0xa1, 0x47, 0xe1, 0x12, 0xa6, 0x43,
        ]);
        assert_eq!(mapped_address(&msg, tid), "192.0.2.1:32853".parse().ok());
    }

    #[test]
    fn sip_and_garbage_are_not_stun() {
        assert!(!is_stun(b"REGISTER sip:example.com SIP/2.0\r\n\r\n"));
        assert!(!is_stun(&[0u8; 19]));
        let mut wrong_length = binding_request(*b"0123456789ab");
        wrong_length.push(0);
        assert!(!is_stun(&wrong_length));
        assert_eq!(
            binding_response(&wrong_length, "192.0.2.1:5060".parse().unwrap()),
            None
        );
    }
}
