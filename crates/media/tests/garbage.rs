//! What strangers send to a media port or put in an SDP body never panics the parsers: any
//! bytes, and bytes shaped like the real thing. The same inputs drive the `sdp` and `rtp`
//! fuzz targets in `fuzz/`.

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use media::rtp::{looks_like_rtcp, parse_header, TelephoneEvent};
use media::sdp::{negotiate, Direction, LocalMedia, SessionDescription};
use media::stream::{OutStream, Reception};
use proptest::prelude::*;
use recorder::g711::Law;

fn sdp(body: &[u8]) {
    let Ok(sd) = SessionDescription::parse(body) else {
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
        webrtc: None,
        sdes: None,
    };
    let answer = local.answer(&sd, n.index);
    // Our answer parses again and settles on the same codec.
    let again = SessionDescription::parse(answer.as_bytes()).expect("our own answer parses");
    let n2 = negotiate(&again).expect("our own answer negotiates");
    assert_eq!((n2.law, n2.pt), (n.law, n.pt));
    let _ = local.offer();
    let _ = Direction::SendRecv;
    let _ = Law::Mu;
}

fn rtp(packet: &[u8]) {
    let _ = parse_header(packet);
    let _ = looks_like_rtcp(packet);
    let _ = TelephoneEvent::parse(packet).map(|e| e.digit());
    let t0 = Instant::now();
    let mut out = OutStream::new(1, 2, 3);
    let mut copy = packet.to_vec();
    let _ = out.forward(t0, &mut copy, |pt| pt);
    let mut rx = Reception::default();
    rx.on_rtcp(t0, packet);
    if let Some(h) = parse_header(packet) {
        rx.on_rtp(t0, h.seq, h.timestamp, h.ssrc);
    }
    let _ = rx.report_block(t0 + Duration::from_secs(5));
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn any_bytes_as_sdp(body in proptest::collection::vec(any::<u8>(), 0..600)) {
        sdp(&body);
    }

    #[test]
    fn sdp_shaped_text(
        lines in proptest::collection::vec(
            prop_oneof![
                Just("v=0".to_owned()),
                "o=[ -~]{0,40}",
                "c=IN IP[46] [0-9a-f.:]{0,20}",
                "m=audio [0-9]{0,6} RTP/AVP( [0-9]{1,4}){0,6}",
                "m=[a-z]{0,6} [0-9]{0,6}( [ -~]{0,10}){0,3}",
                "a=rtpmap:[0-9]{1,4} [A-Za-z0-9-]{0,16}/[0-9]{0,6}",
                "a=(sendrecv|sendonly|recvonly|inactive|ptime:[0-9]{0,4})",
                "[a-z]=[ -~]{0,30}",
            ],
            0..14,
        ),
        crlf in any::<bool>(),
    ) {
        let sep = if crlf { "\r\n" } else { "\n" };
        sdp(lines.join(sep).as_bytes());
    }

    #[test]
    fn any_bytes_as_rtp_or_rtcp(packet in proptest::collection::vec(any::<u8>(), 0..300)) {
        rtp(&packet);
    }

    #[test]
    fn rtp_and_rtcp_shaped_bytes(
        first in prop_oneof![Just(0x80u8), Just(0x81u8), Just(0x90u8), any::<u8>()],
        second in prop_oneof![200u8..=204, 0u8..128, any::<u8>()],
        rest in proptest::collection::vec(any::<u8>(), 0..200),
    ) {
        let mut p = vec![first, second];
        p.extend(rest);
        rtp(&p);
    }
}
