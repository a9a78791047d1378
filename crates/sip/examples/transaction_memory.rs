//! How many bytes a live transaction holds: the figure behind the default of
//! `[sip] max_transactions`. `INVITE`: a carrier's INVITEs (no challenge; each becomes a
//! server transaction passed up and left unanswered, as while call control is behind);
//! `challenged`: INVITEs without credentials from as many addresses (answered 407
//! statelessly: only the per-source state stays). Divides the growth of the resident memory
//! by the number of requests.
//!
//! `cargo run --release -p sip --example transaction_memory -- INVITE` (or `challenged`)

use std::collections::HashMap;
use std::time::Instant;

use sip::endpoint::{CallAuthConfig, SecurityConfig};
use sip::{Endpoint, EndpointConfig, Flow, Transport};

/// Resident memory of this process in bytes (Linux), from /proc/self/statm.
fn resident() -> i64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: i64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

fn message(method: &str, i: u32) -> String {
    let body = if method == "INVITE" {
        "v=0\r\no=- 1 1 IN IP4 198.51.100.7\r\ns=-\r\nc=IN IP4 198.51.100.7\r\nt=0 0\r\n\
         m=audio 40000 RTP/AVP 0 8 101\r\na=rtpmap:101 telephone-event/8000\r\n"
    } else {
        ""
    };
    format!(
        "{method} sip:600@switchboard SIP/2.0\r\n\
         Via: SIP/2.0/UDP 198.51.100.7:5060;branch=z9hG4bK-{i}-x;rport\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:caller{i}@example.com>;tag=f{i}\r\n\
         To: <sip:600@switchboard>\r\n\
         Call-ID: flood-{i}@198.51.100.7\r\n\
         CSeq: 1 {method}\r\n\
         Contact: <sip:caller{i}@198.51.100.7:5060>\r\n\
         User-Agent: a-typical-phone/1.0\r\n\
         Content-Type: application/sdp\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

fn main() {
    let now = Instant::now();
    let cfg = EndpointConfig {
        security: SecurityConfig {
            rate_limit: None,
            max_auth_failures: u32::MAX,
            ..Default::default()
        },
        calls: CallAuthConfig {
            trunks: vec![sip::endpoint::Trunk {
                name: "carrier".into(),
                addresses: vec![std::net::IpAddr::from([192, 0, 2, 50])],
                numbers: vec!["600".into()],
                username: None,
            }],
            challenge: true,
        },
        ..Default::default()
    };
    let mut ep = Endpoint::new(cfg, HashMap::new(), now);
    let n: u32 = 100_000;
    // One method per run: memory freed by one run would be reused by the next.
    let method = std::env::args().nth(1).unwrap_or_else(|| "INVITE".into());
    let method = method.as_str();
    {
        let before = resident();
        for i in 0..n {
            // The carrier, or a different source per message as in a flood.
            let ip = if method == "INVITE" {
                [192, 0, 2, 50]
            } else {
                [10, (i >> 16) as u8, (i >> 8) as u8, i as u8]
            };
            let flow = Flow {
                transport: Transport::Udp,
                remote: std::net::SocketAddr::from((ip, 5060)),
                conn: None,
            };
            ep.handle_message(now, flow, message("INVITE", i).as_bytes());
            while ep.poll_transmit().is_some() {}
            while ep.poll_event().is_some() {}
        }
        let after = resident();
        println!(
            "{method}: {n} requests, {} transactions live, {} bytes held per request",
            ep.transaction_count(),
            (after - before) / i64::from(n)
        );
    }
}
