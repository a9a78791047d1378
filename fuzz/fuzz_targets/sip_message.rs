//! Any datagram: the parser, the typed header views and the whole endpoint must never panic.
#![no_main]

use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use sip::header::{CSeq, Contact, NameAddr, Via};
use sip::message::Message;
use sip::{Endpoint, EndpointConfig, Flow, Transport};

fuzz_target!(|data: &[u8]| {
    if let Ok(msg) = sip::parse::parse_message(data, 65_535) {
        let headers = match &msg {
            Message::Request(r) => {
                let _ = sip::uri::Uri::parse(&r.uri);
                &r.headers
            }
            Message::Response(r) => &r.headers,
        };
        for h in headers.iter() {
            let _ = Via::parse(&h.value);
            let _ = NameAddr::parse(&h.value);
            let _ = CSeq::parse(&h.value);
            let _ = Contact::parse(&h.value);
            let _ = sip::digest::parse_credentials(&h.value);
        }
    }
    let now = Instant::now();
    let mut ep = Endpoint::new(EndpointConfig::default(), Default::default(), now);
    let flow = Flow {
        transport: Transport::Udp,
        remote: "127.0.0.1:5099".parse().unwrap(),
        conn: None,
    };
    ep.handle_message(now, flow, data);
    ep.handle_message(now, flow, data);
    ep.handle_timeout(now + Duration::from_secs(64));
    while ep.poll_transmit().is_some() {}
    while ep.poll_event().is_some() {}
});
