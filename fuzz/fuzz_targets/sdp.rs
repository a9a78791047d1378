//! Any SDP body: parsing, negotiation and our answer never panic, and our answer to whatever
//! negotiates parses again to the same codec.
#![no_main]

use std::net::Ipv4Addr;

use libfuzzer_sys::fuzz_target;
use media::sdp::{negotiate, LocalMedia, SessionDescription};

fuzz_target!(|data: &[u8]| {
    let Ok(sd) = SessionDescription::parse(data) else {
        return;
    };
    let Ok(n) = negotiate(&sd) else { return };
    let local = LocalMedia {
        session_id: 1,
        version: 1,
        addr: Ipv4Addr::LOCALHOST,
        port: 20_000,
        law: n.law,
        pt: n.pt,
        telephone_event: n.telephone_event,
        direction: n.direction.answer(),
    };
    let answer = local.answer(&sd, n.index);
    let again = SessionDescription::parse(answer.as_bytes()).expect("our answer parses");
    let n2 = negotiate(&again).expect("our answer negotiates");
    assert_eq!((n2.law, n2.pt), (n.law, n.pt));
});
