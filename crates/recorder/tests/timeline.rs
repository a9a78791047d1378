//! The recording timeline on synthetic RTP streams, checked sample by sample: loss,
//! reordering, telephone events, an SSRC change, a timestamp jump, an hour of clock drift,
//! pauses and late packets.

use std::time::{Duration, Instant};

use recorder::g711::Law;
use recorder::timeline::{Channel, Timeline, TimelineConfig};

const FRAME: usize = 160;

fn packet(pt: u8, seq: u16, ts: u32, ssrc: u32, payload: &[u8]) -> Vec<u8> {
    let mut p = vec![0x80, pt];
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&ts.to_be_bytes());
    p.extend_from_slice(&ssrc.to_be_bytes());
    p.extend_from_slice(payload);
    p
}

/// 20 ms of a tone, frame `i` of a continuous sine (so frames are distinguishable).
fn tone(hz: f64, i: usize) -> Vec<i16> {
    (0..FRAME)
        .map(|k| {
            let t = (i * FRAME + k) as f64 / 8000.0;
            (8000.0 * (2.0 * std::f64::consts::PI * hz * t).sin()) as i16
        })
        .collect()
}

fn encode(law: Law, s: &[i16]) -> Vec<u8> {
    let mut out = Vec::new();
    law.encode_into(s, &mut out);
    out
}

fn decoded(law: Law, s: &[i16]) -> Vec<i16> {
    let mut out = Vec::new();
    law.decode_into(&encode(law, s), &mut out);
    out
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// Split interleaved output into (left, right).
fn channels(stereo: &[i16]) -> (Vec<i16>, Vec<i16>) {
    (
        stereo.iter().step_by(2).copied().collect(),
        stereo.iter().skip(1).step_by(2).copied().collect(),
    )
}

#[test]
fn loss_reordering_and_telephone_events_land_sample_accurately() {
    let law = Law::Mu;
    let t0 = Instant::now();
    let mut tl = Timeline::new(TimelineConfig::default(), t0);
    let mut out = Vec::new();
    // Left: 1 kHz, 50 frames; frame 20 lost, frame 30 replaced by a DTMF event packet,
    // frames 10 and 11 arrive swapped (within the reorder window). Right: 440 Hz, intact.
    let mut order: Vec<usize> = (0..50).collect();
    order.swap(10, 11);
    for (slot, &i) in order.iter().enumerate() {
        let at = t0 + ms(20 * slot as u64 + 3);
        if i != 20 {
            let p = if i == 30 {
                packet(
                    101,
                    i as u16,
                    (i * FRAME) as u32,
                    0x1111,
                    &[5, 0x0A, 0, 160],
                )
            } else {
                packet(
                    0,
                    i as u16,
                    (i * FRAME) as u32,
                    0x1111,
                    &encode(law, &tone(1000.0, i)),
                )
            };
            tl.packet(Channel::Left, at, law, &p);
        }
        let r = packet(
            0,
            slot as u16,
            7000 + (slot * FRAME) as u32,
            0x2222,
            &encode(law, &tone(440.0, slot)),
        );
        tl.packet(Channel::Right, t0 + ms(20 * slot as u64 + 5), law, &r);
        tl.advance(at, &mut out);
    }
    tl.finish(t0 + ms(1000), &mut out);
    let (left, right) = channels(&out);
    assert_eq!(left.len(), 8000, "one second, both channels");
    // The left leg's first packet arrived 3 ms in: everything is 24 samples later.
    let off = 24;
    for i in 0..49 {
        let got = &left[off + i * FRAME..off + (i + 1) * FRAME];
        if i == 20 || i == 30 {
            assert!(got.iter().all(|&s| s == 0), "frame {i} is silence");
        } else {
            assert_eq!(got, &decoded(law, &tone(1000.0, i))[..], "left frame {i}");
        }
    }
    assert!(
        left[..off].iter().all(|&s| s == 0),
        "silence before the first packet"
    );
    let roff = 40; // 5 ms
    for i in 0..49 {
        assert_eq!(
            &right[roff + i * FRAME..roff + (i + 1) * FRAME],
            &decoded(law, &tone(440.0, i))[..],
            "right frame {i}"
        );
    }
    let s = tl.stats(Channel::Left);
    assert_eq!((s.packets, s.skipped, s.late), (48, 1, 0));
}

#[test]
fn an_ssrc_change_and_a_timestamp_jump_do_not_shift_the_audio() {
    let law = Law::A;
    let t0 = Instant::now();
    let mut tl = Timeline::new(TimelineConfig::default(), t0);
    let mut out = Vec::new();
    for i in 0..75usize {
        let at = t0 + ms(20 * i as u64);
        // Frames 0-24: SSRC A from ts 1000. 25-49: SSRC B (another phone answered) from a
        // random base. 50-74: SSRC B again but its timestamps jump by 1,000,000.
        let (ssrc, ts) = match i {
            0..=24 => (0xA, 1000 + (i * FRAME) as u32),
            25..=49 => (0xB, 3_000_000_000u32.wrapping_add((i * FRAME) as u32)),
            _ => (0xB, 3_001_000_000u32.wrapping_add((i * FRAME) as u32)),
        };
        tl.packet(
            Channel::Left,
            at,
            law,
            &packet(8, i as u16, ts, ssrc, &encode(law, &tone(700.0, i))),
        );
        tl.advance(at, &mut out);
    }
    tl.finish(t0 + ms(1500), &mut out);
    let (left, _) = channels(&out);
    for i in 0..75 {
        assert_eq!(
            &left[i * FRAME..(i + 1) * FRAME],
            &decoded(law, &tone(700.0, i))[..],
            "frame {i} in place"
        );
    }
    assert_eq!(tl.stats(Channel::Left).reanchors, 2);
}

#[test]
fn an_hour_of_a_drifting_sender_stays_within_20_ms_of_the_other_channel() {
    let law = Law::Mu;
    let t0 = Instant::now();
    let mut tl = Timeline::new(TimelineConfig::default(), t0);
    let mut out = Vec::new();
    // The caller's phone clock runs 200 ppm slow: its 20 ms packets (160 timestamp units
    // each) arrive every 20.004 ms of our time. The agent's phone is exact. Each sends a
    // click (a full-scale frame) at the same true moments: every 10 minutes.
    let quiet = encode(law, &[0; FRAME]);
    let click = encode(law, &[30_000; FRAME]);
    let mut found: Vec<[Option<i64>; 2]> = Vec::new();
    let mut base = 0i64;
    let frames = 180_000u64; // one hour
    for i in 0..frames {
        let click_now = i % 30_000 == 29_999;
        let left_at = t0 + Duration::from_nanos(20_004_000 * i);
        let right_at = t0 + Duration::from_nanos(20_000_000 * i);
        let pl = if click_now { &click } else { &quiet };
        tl.packet(
            Channel::Left,
            left_at,
            law,
            &packet(0, i as u16, (i as u32).wrapping_mul(160), 1, pl),
        );
        // The agent's click is sent at the same true moment as the caller's.
        let pr = if click_now { &click } else { &quiet };
        tl.packet(
            Channel::Right,
            left_at.max(right_at),
            law,
            &packet(0, i as u16, (i as u32).wrapping_mul(160), 2, pr),
        );
        if i % 50 == 0 {
            out.clear();
            let n = tl.advance(left_at, &mut out) as i64;
            let (l, r) = channels(&out);
            for (k, (a, b)) in l.iter().zip(&r).enumerate() {
                let pos = base + k as i64;
                if *a > 20_000 || *b > 20_000 {
                    let slot = (pos / 40_000) as usize; // clicks are minutes apart
                    while found.len() <= slot {
                        found.push([None, None]);
                    }
                    if *a > 20_000 && found[slot][0].is_none() {
                        found[slot][0] = Some(pos);
                    }
                    if *b > 20_000 && found[slot][1].is_none() {
                        found[slot][1] = Some(pos);
                    }
                }
            }
            base += n;
        }
    }
    let clicks: Vec<(i64, i64)> = found.iter().filter_map(|f| Some((f[0]?, f[1]?))).collect();
    assert!(clicks.len() >= 5, "{found:?}");
    for (l, r) in &clicks {
        assert!(
            (l - r).abs() <= 160,
            "channels {} ms apart",
            (l - r).abs() as f64 / 8.0
        );
    }
    // Without correction the caller would be 720 ms late by the end of the hour.
    assert!(tl.stats(Channel::Left).reanchors > 10);
}

#[test]
fn paused_time_is_silence_on_both_channels_and_listed() {
    let law = Law::Mu;
    let t0 = Instant::now();
    let mut tl = Timeline::new(TimelineConfig::default(), t0);
    let mut out = Vec::new();
    for i in 0..50usize {
        let at = t0 + ms(20 * i as u64);
        if i == 25 {
            tl.pause(at);
        }
        if i == 35 {
            tl.resume(at);
        }
        let p = packet(
            0,
            i as u16,
            (i * FRAME) as u32,
            9,
            &encode(law, &tone(1000.0, i)),
        );
        tl.packet(Channel::Left, at, law, &p);
        tl.packet(Channel::Right, at, law, &p);
        tl.advance(at, &mut out);
    }
    tl.finish(t0 + ms(1000), &mut out);
    let (left, right) = channels(&out);
    for (ch, name) in [(&left, "left"), (&right, "right")] {
        assert!(
            ch[25 * FRAME..35 * FRAME].iter().all(|&s| s == 0),
            "{name} paused"
        );
        assert_eq!(
            &ch[24 * FRAME..25 * FRAME],
            &decoded(law, &tone(1000.0, 24))[..]
        );
        assert_eq!(
            &ch[35 * FRAME..36 * FRAME],
            &decoded(law, &tone(1000.0, 35))[..]
        );
    }
    let p = tl.pauses(t0 + ms(1000));
    assert_eq!(p.len(), 1);
    assert!(
        (p[0].0 - 0.5).abs() < 1e-9 && (p[0].1 - 0.7).abs() < 1e-9,
        "{p:?}"
    );
}

#[test]
fn a_packet_later_than_the_reorder_window_is_dropped_and_counted() {
    let law = Law::Mu;
    let t0 = Instant::now();
    let cfg = TimelineConfig::default();
    let mut tl = Timeline::new(cfg, t0);
    let mut out = Vec::new();
    tl.packet(
        Channel::Left,
        t0,
        law,
        &packet(0, 0, 0, 5, &encode(law, &tone(500.0, 0))),
    );
    // Frame 1 is held up for 500 ms (well past the 80 ms window).
    for i in 2..30usize {
        let at = t0 + ms(20 * i as u64);
        tl.packet(
            Channel::Left,
            at,
            law,
            &packet(
                0,
                i as u16,
                (i * FRAME) as u32,
                5,
                &encode(law, &tone(500.0, i)),
            ),
        );
        tl.advance(at, &mut out);
    }
    tl.packet(
        Channel::Left,
        t0 + ms(520),
        law,
        &packet(0, 1, FRAME as u32, 5, &encode(law, &tone(500.0, 1))),
    );
    tl.finish(t0 + ms(600), &mut out);
    let (left, _) = channels(&out);
    assert!(
        left[FRAME..2 * FRAME].iter().all(|&s| s == 0),
        "its place stays silent"
    );
    assert_eq!(tl.stats(Channel::Left).late, 1);
    // Garbage is not audio and does not disturb anything.
    tl.packet(Channel::Left, t0 + ms(600), law, b"not rtp");
    assert_eq!(tl.stats(Channel::Left).skipped, 1);
}
