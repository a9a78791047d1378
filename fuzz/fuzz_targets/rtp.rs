//! Any datagram on a media port: RTP header parsing, RTCP detection and receiver reports,
//! DTMF payloads and the in-place header rewrite never panic.
#![no_main]

use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use media::rtp::{looks_like_rtcp, parse_header, TelephoneEvent};
use media::stream::{OutStream, Reception};

fuzz_target!(|data: &[u8]| {
    let _ = looks_like_rtcp(data);
    let _ = TelephoneEvent::parse(data).map(|e| e.digit());
    let t0 = Instant::now();
    let mut out = OutStream::new(1, 2, 3);
    let mut copy = data.to_vec();
    let _ = out.forward(t0, &mut copy, |pt| pt);
    let mut rx = Reception::default();
    rx.on_rtcp(t0, data);
    if let Some(h) = parse_header(data) {
        rx.on_rtp(t0, h.seq, h.timestamp, h.ssrc);
    }
    let _ = rx.report_block(t0 + Duration::from_secs(5));
});
