//! One continuous RTP stream per leg, the way a back-to-back user agent's media layer sends it.
//!
//! A phone's jitter buffer expects one stream: one SSRC, sequence numbers that go up by one,
//! timestamps that follow the sampling clock. What a leg hears comes from several sources over a
//! call: the greeting and music we generate, then the agent's packets, hold music, the agent
//! again. Forwarding each source's packets as they came would change the SSRC and make the
//! sequence numbers jump (often backwards), and jitter buffers then drop every packet of the new
//! source: the caller hears silence on a healthy call.
//!
//! [`OutStream`] is the sending side of one leg. Packets we originate take its sequence number
//! and timestamp directly; packets forwarded from the other leg are rewritten in place with a
//! fixed offset per source (so the source's own loss and reordering show through unchanged),
//! and every switch of source starts a talkspurt: the marker bit is set and the timestamp
//! continues from the last packet sent plus the time that has passed since.
//!
//! [`Reception`] keeps the RFC 3550 receiver statistics of what a leg's phone sends us, for the
//! report blocks of the RTCP we send that leg ([`OutStream::rtcp_report`]).
//!
//! Everything here is sans-IO: time comes in as `now` (monotonic) and `ntp` (wall clock), so it
//! is tested in virtual time.

use std::time::{Duration, Instant};

use crate::rtp::{parse_header, SAMPLES_PER_PACKET};

/// RTP clock rate of every codec we carry (G.711 and telephone-event).
pub const CLOCK_RATE: u64 = 8_000;

/// A jump of the incoming sequence number larger than this (either way) is a new stream even
/// with the same SSRC (a phone that restarted its stream after a re-INVITE).
const MAX_SEQ_JUMP: i32 = 1_000;

/// Where the packets of an [`OutStream`] come from right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Source {
    /// Nothing sent yet.
    Nothing,
    /// Packets we generate (prompts, music, tones).
    Local,
    /// Packets of the other leg, rewritten.
    Peer {
        ssrc: u32,
        seq_delta: u16,
        ts_delta: u32,
        highest_in: u16,
        /// The incoming sequence number the stream was anchored on: an older packet (late,
        /// reordered across the change of source) would take a sequence number this leg
        /// already heard from the previous source, and is dropped. On an SRTP leg that would
        /// be two packets under one index, one keystream over two plaintexts.
        first_in: u16,
    },
}

/// The sending side of one leg: SSRC, sequence number and timestamp that continue across
/// every source the leg hears.
#[derive(Debug, Clone)]
pub struct OutStream {
    ssrc: u32,
    /// Sequence number of the next packet.
    seq: u16,
    /// Timestamp of the newest packet sent (or the initial timestamp before any).
    ts: u32,
    /// When the newest packet was sent.
    at: Option<Instant>,
    source: Source,
    marker_next: bool,
    packets: u32,
    octets: u32,
}

impl OutStream {
    /// A stream with this SSRC, first sequence number and first timestamp (RFC 3550 §5.1 wants
    /// all three random).
    pub fn new(ssrc: u32, seq: u16, ts: u32) -> OutStream {
        OutStream {
            ssrc,
            seq,
            ts,
            at: None,
            source: Source::Nothing,
            marker_next: true,
            packets: 0,
            octets: 0,
        }
    }

    /// The stream's SSRC.
    pub fn ssrc(&self) -> u32 {
        self.ssrc
    }

    /// Packets sent so far.
    pub fn packets(&self) -> u32 {
        self.packets
    }

    /// The next packet starts a talkspurt (marker bit), e.g. a new prompt.
    pub fn mark(&mut self) {
        self.marker_next = true;
    }

    /// Skip `samples` of time without sending (a starved playback keeps the timestamp on the
    /// wall clock instead of bursting).
    pub fn skip(&mut self, samples: u32) {
        self.ts = self.ts.wrapping_add(samples);
    }

    /// The timestamp a packet sent at `now` continues with after a change of source: the last
    /// one plus the time since it was sent (at least one packet's worth, so it never repeats).
    fn continued_ts(&self, now: Instant) -> u32 {
        match self.at {
            None => self.ts,
            Some(at) => {
                let elapsed = samples_in(now.saturating_duration_since(at));
                self.ts
                    .wrapping_add(elapsed.max(SAMPLES_PER_PACKET as u64) as u32)
            }
        }
    }

    /// Build the next packet we originate: one frame of `payload` with payload type `pt`.
    pub fn originate(&mut self, now: Instant, pt: u8, payload: &[u8], out: &mut Vec<u8>) {
        let ts = match self.source {
            Source::Local => self.ts.wrapping_add(SAMPLES_PER_PACKET as u32),
            Source::Nothing => self.ts,
            Source::Peer { .. } => {
                self.marker_next = true;
                self.continued_ts(now)
            }
        };
        self.source = Source::Local;
        out.clear();
        out.push(0x80);
        out.push(if self.marker_next {
            0x80 | pt
        } else {
            pt & 0x7F
        });
        out.extend_from_slice(&self.seq.to_be_bytes());
        out.extend_from_slice(&ts.to_be_bytes());
        out.extend_from_slice(&self.ssrc.to_be_bytes());
        out.extend_from_slice(payload);
        self.marker_next = false;
        self.seq = self.seq.wrapping_add(1);
        self.ts = ts;
        self.at = Some(now);
        self.count(payload.len());
    }

    /// Rewrite a packet of the other leg in place so that it continues this stream: our SSRC,
    /// our sequence numbers and timestamps, the marker bit at a change of source, and the
    /// payload type `pt_map` gives for the incoming one (telephone-event types may differ
    /// between the legs). Returns false (and leaves the packet alone) when it is not RTP.
    pub fn forward(&mut self, now: Instant, packet: &mut [u8], pt_map: impl Fn(u8) -> u8) -> bool {
        let Some(h) = parse_header(packet) else {
            return false;
        };
        let anchor = match self.source {
            Source::Peer {
                ssrc, highest_in, ..
            } if ssrc == h.ssrc => {
                let jump = h.seq.wrapping_sub(highest_in) as i16 as i32;
                !(-MAX_SEQ_JUMP..=MAX_SEQ_JUMP).contains(&jump)
            }
            _ => true,
        };
        if anchor {
            let ts = self.continued_ts(now);
            self.source = Source::Peer {
                ssrc: h.ssrc,
                seq_delta: self.seq.wrapping_sub(h.seq),
                ts_delta: ts.wrapping_sub(h.timestamp),
                highest_in: h.seq.wrapping_sub(1),
                first_in: h.seq,
            };
            self.marker_next = true;
        }
        let Source::Peer {
            seq_delta,
            ts_delta,
            highest_in,
            ssrc,
            first_in,
        } = self.source
        else {
            return false;
        };
        if (h.seq.wrapping_sub(first_in) as i16) < 0 {
            return false;
        }
        let seq = h.seq.wrapping_add(seq_delta);
        let ts = h.timestamp.wrapping_add(ts_delta);
        let mut marker = h.marker;
        let newer = (h.seq.wrapping_sub(highest_in) as i16) > 0;
        if newer {
            if self.marker_next {
                marker = true;
                self.marker_next = false;
            }
            self.source = Source::Peer {
                ssrc,
                seq_delta,
                ts_delta,
                highest_in: h.seq,
                first_in,
            };
            self.seq = seq.wrapping_add(1);
            self.ts = ts;
            self.at = Some(now);
        }
        let pt = pt_map(h.payload_type) & 0x7F;
        packet[1] = if marker { 0x80 | pt } else { pt };
        packet[2..4].copy_from_slice(&seq.to_be_bytes());
        packet[4..8].copy_from_slice(&ts.to_be_bytes());
        packet[8..12].copy_from_slice(&self.ssrc.to_be_bytes());
        self.count(h.payload_len);
        true
    }

    fn count(&mut self, payload: usize) {
        self.packets = self.packets.wrapping_add(1);
        self.octets = self.octets.wrapping_add(payload as u32);
    }

    /// The RTCP compound packet for this leg at `now` (wall clock `ntp`, RFC 3550 format):
    /// a sender report (a receiver report before we have sent anything) with a report block
    /// about what the leg's phone sends us, and our CNAME. `None` when there is nothing to
    /// report yet.
    pub fn rtcp_report(
        &self,
        now: Instant,
        ntp: u64,
        reception: &mut Reception,
        cname: &str,
        out: &mut Vec<u8>,
    ) -> bool {
        let block = reception.report_block(now);
        if self.packets == 0 && block.is_none() {
            return false;
        }
        out.clear();
        let blocks = u8::from(block.is_some());
        if self.packets > 0 {
            // SR: header, SSRC, NTP, RTP timestamp, packet and octet counts (RFC 3550 §6.4.1).
            let words = 6 + 6 * blocks as u16;
            out.extend_from_slice(&[0x80 | blocks, 200]);
            out.extend_from_slice(&words.to_be_bytes());
            out.extend_from_slice(&self.ssrc.to_be_bytes());
            out.extend_from_slice(&ntp.to_be_bytes());
            let rtp_now = match self.at {
                Some(at) => self
                    .ts
                    .wrapping_add(samples_in(now.saturating_duration_since(at)) as u32),
                None => self.ts,
            };
            out.extend_from_slice(&rtp_now.to_be_bytes());
            out.extend_from_slice(&self.packets.to_be_bytes());
            out.extend_from_slice(&self.octets.to_be_bytes());
        } else {
            let words = 1 + 6 * blocks as u16;
            out.extend_from_slice(&[0x80 | blocks, 201]);
            out.extend_from_slice(&words.to_be_bytes());
            out.extend_from_slice(&self.ssrc.to_be_bytes());
        }
        if let Some(b) = block {
            b.write(out);
        }
        write_sdes(self.ssrc, cname, out);
        true
    }

    /// An RTCP BYE for this stream (sent when the call ends).
    pub fn rtcp_bye(&self, cname: &str, out: &mut Vec<u8>) {
        out.clear();
        // An empty RR first: a compound packet starts with a report (RFC 3550 §6.1).
        out.extend_from_slice(&[0x80, 201, 0, 1]);
        out.extend_from_slice(&self.ssrc.to_be_bytes());
        write_sdes(self.ssrc, cname, out);
        out.extend_from_slice(&[0x81, 203, 0, 1]);
        out.extend_from_slice(&self.ssrc.to_be_bytes());
    }
}

fn write_sdes(ssrc: u32, cname: &str, out: &mut Vec<u8>) {
    let name = &cname.as_bytes()[..cname.len().min(255)];
    // SSRC, CNAME item (type 1, length, text), end item, padding to a 32-bit boundary.
    let chunk = 4 + 2 + name.len() + 1;
    let padded = chunk.div_ceil(4) * 4;
    let words = (padded / 4) as u16;
    out.extend_from_slice(&[0x81, 202]);
    out.extend_from_slice(&words.to_be_bytes());
    out.extend_from_slice(&ssrc.to_be_bytes());
    out.push(1);
    out.push(name.len() as u8);
    out.extend_from_slice(name);
    out.resize(out.len() + (padded - chunk) + 1, 0);
}

fn samples_in(d: Duration) -> u64 {
    (d.as_micros() as u64).saturating_mul(CLOCK_RATE) / 1_000_000
}

/// One RFC 3550 report block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReportBlock {
    /// The stream reported on.
    pub ssrc: u32,
    /// Fraction lost since the last report, in 1/256.
    pub fraction_lost: u8,
    /// Packets lost since the beginning (24-bit, signed).
    pub cumulative_lost: i32,
    /// Cycles (high 16 bits) and highest sequence number received.
    pub extended_highest: u32,
    /// Interarrival jitter in timestamp units.
    pub jitter: u32,
    /// Middle 32 bits of the NTP time of the last SR received from that stream.
    pub lsr: u32,
    /// Delay since that SR, in 1/65536 s.
    pub dlsr: u32,
}

impl ReportBlock {
    fn write(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.ssrc.to_be_bytes());
        let lost = (self.cumulative_lost.clamp(-0x80_0000, 0x7F_FFFF) as u32) & 0x00FF_FFFF;
        out.extend_from_slice(&((u32::from(self.fraction_lost) << 24) | lost).to_be_bytes());
        out.extend_from_slice(&self.extended_highest.to_be_bytes());
        out.extend_from_slice(&self.jitter.to_be_bytes());
        out.extend_from_slice(&self.lsr.to_be_bytes());
        out.extend_from_slice(&self.dlsr.to_be_bytes());
    }
}

/// Receiver statistics of the stream a leg's phone sends us (RFC 3550 appendix A.1, A.3, A.8).
#[derive(Debug, Clone, Default)]
pub struct Reception {
    ssrc: Option<u32>,
    base_seq: u32,
    max_seq: u16,
    cycles: u32,
    received: u32,
    expected_prior: u32,
    received_prior: u32,
    /// Jitter estimate scaled by 16 (appendix A.8).
    jitter16: u64,
    transit: Option<i64>,
    epoch: Option<Instant>,
    lsr: u32,
    lsr_at: Option<Instant>,
}

impl Reception {
    /// Account an RTP packet from the phone that arrived at `now`.
    pub fn on_rtp(&mut self, now: Instant, seq: u16, timestamp: u32, ssrc: u32) {
        let epoch = *self.epoch.get_or_insert(now);
        if self.ssrc != Some(ssrc) {
            let lsr = (self.lsr, self.lsr_at);
            *self = Reception {
                ssrc: Some(ssrc),
                base_seq: u32::from(seq),
                max_seq: seq,
                epoch: Some(epoch),
                ..Reception::default()
            };
            (self.lsr, self.lsr_at) = lsr;
        }
        let delta = seq.wrapping_sub(self.max_seq);
        if delta != 0 && delta < 0x8000 {
            if seq < self.max_seq {
                self.cycles = self.cycles.wrapping_add(1 << 16);
            }
            self.max_seq = seq;
        }
        self.received = self.received.wrapping_add(1);
        let arrival = samples_in(now.saturating_duration_since(epoch)) as i64;
        let transit = arrival - i64::from(timestamp);
        if let Some(prev) = self.transit {
            // Timestamps wrap at 2^32: take the difference modulo that.
            let d = ((transit - prev) as i32).unsigned_abs() as u64;
            self.jitter16 = self.jitter16 + d - ((self.jitter16 + 8) >> 4);
        }
        self.transit = Some(transit);
    }

    /// Account an RTCP compound packet from the phone: remember its last sender report.
    pub fn on_rtcp(&mut self, now: Instant, packet: &[u8]) {
        let mut rest = packet;
        while rest.len() >= 8 && rest[0] >> 6 == 2 {
            let len = (usize::from(u16::from_be_bytes([rest[2], rest[3]])) + 1) * 4;
            if len > rest.len() {
                break;
            }
            if rest[1] == 200 && len >= 28 {
                self.lsr = u32::from_be_bytes([rest[10], rest[11], rest[12], rest[13]]);
                self.lsr_at = Some(now);
            }
            rest = &rest[len..];
        }
    }

    /// Packets received so far (of the current stream).
    pub fn received(&self) -> u32 {
        self.received
    }

    /// The report block for the next RTCP report (advances the "since last report" counts).
    pub fn report_block(&mut self, now: Instant) -> Option<ReportBlock> {
        let ssrc = self.ssrc?;
        let extended = self.cycles.wrapping_add(u32::from(self.max_seq));
        let expected = extended.wrapping_sub(self.base_seq).wrapping_add(1);
        let lost = i64::from(expected) - i64::from(self.received);
        let expected_interval = expected.wrapping_sub(self.expected_prior);
        let received_interval = self.received.wrapping_sub(self.received_prior);
        self.expected_prior = expected;
        self.received_prior = self.received;
        let lost_interval = i64::from(expected_interval) - i64::from(received_interval);
        let fraction_lost = if expected_interval == 0 || lost_interval <= 0 {
            0
        } else {
            ((lost_interval << 8) / i64::from(expected_interval)).min(255) as u8
        };
        let dlsr = self.lsr_at.map_or(0, |at| {
            (now.saturating_duration_since(at).as_micros() as u64 * 65_536 / 1_000_000) as u32
        });
        Some(ReportBlock {
            ssrc,
            fraction_lost,
            cumulative_lost: lost.clamp(i64::from(i32::MIN), i64::from(i32::MAX)) as i32,
            extended_highest: extended,
            jitter: (self.jitter16 >> 4) as u32,
            lsr: self.lsr,
            dlsr: if self.lsr_at.is_some() { dlsr } else { 0 },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rtp::RtpHeader;

    fn peer(seq: u16, ts: u32, ssrc: u32, marker: bool) -> Vec<u8> {
        let mut p = vec![0x80, if marker { 0x80 } else { 0 }];
        p.extend_from_slice(&seq.to_be_bytes());
        p.extend_from_slice(&ts.to_be_bytes());
        p.extend_from_slice(&ssrc.to_be_bytes());
        p.extend_from_slice(&[0xFF; 160]);
        p
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn hdr(p: &[u8]) -> RtpHeader {
        parse_header(p).expect("rtp")
    }

    /// What a receiver's jitter buffer checks: one SSRC, sequence numbers +1, timestamps
    /// never going back.
    fn assert_continuous(packets: &[Vec<u8>]) {
        let hs: Vec<RtpHeader> = packets.iter().map(|p| hdr(p)).collect();
        for w in hs.windows(2) {
            assert_eq!(w[1].ssrc, w[0].ssrc, "one SSRC");
            assert_eq!(w[1].seq, w[0].seq.wrapping_add(1), "sequence continues");
            let dt = w[1].timestamp.wrapping_sub(w[0].timestamp) as i32;
            assert!(dt >= 160, "timestamp moves on by a frame or more: {dt}");
        }
    }

    #[test]
    fn greeting_then_agent_then_music_then_agent_is_one_stream() {
        let t0 = Instant::now();
        let mut s = OutStream::new(0x1234_5678, 65_530, u32::MAX - 500);
        let mut sent = Vec::new();
        let mut buf = Vec::new();
        for i in 0..10 {
            s.originate(t0 + ms(20 * i), 0, &[0x7F; 160], &mut buf);
            sent.push(buf.clone());
        }
        assert!(hdr(&sent[0]).marker);
        assert!(!hdr(&sent[1]).marker);
        // The agent's phone starts far "behind" in sequence space: what made jitter buffers
        // drop everything.
        for i in 0..10u16 {
            let mut p = peer(100 + i, 5_000 + 160 * u32::from(i), 0xAAAA_AAAA, i == 0);
            assert!(s.forward(t0 + ms(205 + 20 * u64::from(i)), &mut p, |pt| pt));
            sent.push(p);
        }
        assert!(hdr(&sent[10]).marker, "switch to the agent is marked");
        assert!(!hdr(&sent[11]).marker);
        // Hold: music again, then the agent resumes with a new SSRC.
        for i in 0..5 {
            s.originate(t0 + ms(410 + 20 * i), 0, &[0x7F; 160], &mut buf);
            sent.push(buf.clone());
        }
        assert!(hdr(&sent[20]).marker, "switch to music is marked");
        for i in 0..5u16 {
            let mut p = peer(40_000 + i, 77 + 160 * u32::from(i), 0xBBBB_BBBB, false);
            assert!(s.forward(t0 + ms(600 + 20 * u64::from(i)), &mut p, |pt| pt));
            sent.push(p);
        }
        assert!(hdr(&sent[25]).marker);
        assert_continuous(&sent);
        assert_eq!(s.packets(), 30);
        // Timestamps follow the wall clock across switches: 600 ms after the start.
        let span = hdr(&sent[25])
            .timestamp
            .wrapping_sub(hdr(&sent[0]).timestamp);
        assert!((4_700..=4_900).contains(&span), "{span}");
    }

    #[test]
    fn loss_and_reordering_of_the_source_show_through() {
        let t0 = Instant::now();
        let mut s = OutStream::new(7, 10, 1000);
        let mut out = Vec::new();
        for (k, seq) in [500u16, 501, 503, 502, 504].into_iter().enumerate() {
            let mut p = peer(seq, u32::from(seq) * 160, 9, false);
            s.forward(t0 + ms(20 * k as u64), &mut p, |pt| pt);
            out.push(hdr(&p).seq);
        }
        assert_eq!(out, vec![10, 11, 13, 12, 14]);
        // A late packet does not move the stream back: the next local packet follows 14.
        let mut buf = Vec::new();
        s.originate(t0 + ms(200), 0, &[0; 160], &mut buf);
        assert_eq!(hdr(&buf).seq, 15);
        assert!(hdr(&buf).marker);
    }

    #[test]
    fn a_packet_older_than_the_change_of_source_never_reuses_a_sequence_number() {
        let t0 = Instant::now();
        let mut s = OutStream::new(7, 10, 1000);
        let mut buf = Vec::new();
        let mut used = Vec::new();
        // A prompt: 10, 11, 12.
        for k in 0..3 {
            s.originate(t0 + ms(20 * k), 0, &[0; 160], &mut buf);
            used.push(hdr(&buf).seq);
        }
        // The other leg's audio takes over at its 500: our 13.
        let mut p = peer(500, 80_000, 9, false);
        assert!(s.forward(t0 + ms(60), &mut p, |pt| pt));
        assert_eq!(hdr(&p).seq, 13);
        // Its 499, reordered behind 500, would be our 12 again (a prompt's): dropped. On an
        // SRTP leg that would be one keystream over two packets.
        let mut late = peer(499, 79_840, 9, false);
        assert!(!s.forward(t0 + ms(61), &mut late, |pt| pt));
        // What follows 500 still goes on, reordering and all.
        for (seq, want) in [(502u16, 15u16), (501, 14)] {
            let mut p = peer(seq, u32::from(seq) * 160, 9, false);
            assert!(s.forward(t0 + ms(80), &mut p, |pt| pt));
            assert_eq!(hdr(&p).seq, want);
            assert!(!used.contains(&want));
        }
    }

    #[test]
    fn a_restarted_source_with_the_same_ssrc_is_re_anchored() {
        let t0 = Instant::now();
        let mut s = OutStream::new(7, 10, 1000);
        let mut a = peer(500, 0, 9, false);
        s.forward(t0, &mut a, |pt| pt);
        let mut b = peer(30_000, 0, 9, false);
        s.forward(t0 + ms(20), &mut b, |pt| pt);
        assert_eq!(hdr(&b).seq, 11);
        assert!(hdr(&b).marker);
    }

    #[test]
    fn telephone_event_payload_type_is_mapped_and_timestamps_kept() {
        let t0 = Instant::now();
        let mut s = OutStream::new(7, 10, 1000);
        let mut evs = Vec::new();
        for i in 0..3u16 {
            let mut p = peer(50 + i, 8_000, 9, i == 0);
            p[1] = (p[1] & 0x80) | 101;
            s.forward(t0 + ms(20 * u64::from(i)), &mut p, |pt| {
                if pt == 101 {
                    96
                } else {
                    pt
                }
            });
            evs.push(hdr(&p));
        }
        assert!(evs.iter().all(|h| h.payload_type == 96));
        assert!(evs.iter().all(|h| h.timestamp == evs[0].timestamp));
        assert!(evs[0].marker && !evs[1].marker);
    }

    #[test]
    fn not_rtp_is_left_alone() {
        let mut s = OutStream::new(7, 10, 1000);
        let mut junk = vec![0x40; 20];
        assert!(!s.forward(Instant::now(), &mut junk, |pt| pt));
        assert_eq!(junk, vec![0x40; 20]);
        assert_eq!(s.packets(), 0);
    }

    #[test]
    fn sender_report_matches_what_was_sent_and_received() {
        let t0 = Instant::now();
        let mut s = OutStream::new(0xCAFE, 1, 1000);
        let mut r = Reception::default();
        let mut buf = Vec::new();
        for i in 0..50u16 {
            s.originate(t0 + ms(20 * u64::from(i)), 8, &[0xD5; 160], &mut buf);
            // The phone sends 50 packets; two are lost.
            if i != 10 && i != 11 {
                r.on_rtp(
                    t0 + ms(20 * u64::from(i)),
                    300 + i,
                    160 * u32::from(i),
                    0xBEEF,
                );
            }
        }
        // The phone's own SR, 10 ms before ours.
        let mut sr = vec![0x80, 200, 0, 6, 0, 0, 0xBE, 0xEF];
        sr.extend_from_slice(&0x0001_0002_0003_0004u64.to_be_bytes());
        sr.extend_from_slice(&[0; 12]);
        r.on_rtcp(t0 + ms(990), &sr);
        let mut out = Vec::new();
        assert!(s.rtcp_report(t0 + ms(1000), 0x1111_2222_3333_4444, &mut r, "sb", &mut out));
        assert_eq!(out[1], 200, "SR");
        assert_eq!(out[0] & 0x1F, 1, "one report block");
        let word = |o: usize| u32::from_be_bytes([out[o], out[o + 1], out[o + 2], out[o + 3]]);
        assert_eq!(word(4), 0xCAFE);
        assert_eq!(word(20), 50, "packet count");
        assert_eq!(word(24), 50 * 160, "octet count");
        let rtp_ts = word(16);
        assert_eq!(
            rtp_ts,
            1000 + 49 * 160 + 160,
            "RTP time of the report instant"
        );
        assert_eq!(word(28), 0xBEEF, "block about the phone's stream");
        assert_eq!(word(32) & 0xFF_FFFF, 2, "two lost");
        assert_eq!(out[32], (2 * 256 / 50) as u8, "fraction lost");
        assert_eq!(word(36), 300 + 49, "extended highest sequence number");
        assert_eq!(word(44), 0x0002_0003, "LSR: middle of the phone's NTP time");
        assert_eq!(word(48), 655, "DLSR: 10 ms in 1/65536 s");
        // Declared lengths add up to the datagram, and the SDES carries the CNAME.
        let mut off = 0;
        let mut types = Vec::new();
        while off < out.len() {
            types.push(out[off + 1]);
            off += (usize::from(u16::from_be_bytes([out[off + 2], out[off + 3]])) + 1) * 4;
        }
        assert_eq!(off, out.len());
        assert_eq!(types, vec![200, 202]);
        // The next report's fraction is about the interval only.
        assert!(s.rtcp_report(t0 + ms(2000), 0, &mut r, "sb", &mut out));
        assert_eq!(out[32], 0);
    }

    #[test]
    fn receiver_report_before_sending_and_nothing_before_anything() {
        let t0 = Instant::now();
        let s = OutStream::new(1, 1, 1);
        let mut r = Reception::default();
        let mut out = Vec::new();
        assert!(!s.rtcp_report(t0, 0, &mut r, "x", &mut out));
        r.on_rtp(t0, 1, 1, 2);
        assert!(s.rtcp_report(t0, 0, &mut r, "x", &mut out));
        assert_eq!(out[1], 201);
        s.rtcp_bye("x", &mut out);
        assert!(out.windows(2).any(|w| w == [0x81, 203]));
    }

    #[test]
    fn jitter_of_a_steady_stream_is_zero_and_of_a_jittery_one_is_not() {
        let t0 = Instant::now();
        let mut r = Reception::default();
        for i in 0..100u32 {
            r.on_rtp(t0 + ms(20 * u64::from(i)), i as u16, 160 * i, 5);
        }
        let b = r.report_block(t0).unwrap();
        assert_eq!(b.jitter, 0);
        assert_eq!(
            (b.extended_highest, b.cumulative_lost),
            (99, 0),
            "from sequence 0"
        );
        let mut r = Reception::default();
        for i in 0..100u32 {
            let wobble = if i % 2 == 0 { 0 } else { 5 };
            r.on_rtp(t0 + ms(20 * u64::from(i) + wobble), i as u16, 160 * i, 5);
        }
        let j = r.report_block(t0).unwrap().jitter;
        assert!((20..=60).contains(&j), "about 40 samples of jitter: {j}");
    }

    #[test]
    fn garbage_rtcp_does_not_panic() {
        let mut r = Reception::default();
        let now = Instant::now();
        for p in [
            &[][..],
            &[0x80, 200, 0xFF, 0xFF, 0, 0, 0, 0][..],
            &[0x80; 7][..],
        ] {
            r.on_rtcp(now, p);
        }
        assert_eq!(r.lsr, 0);
    }
}
