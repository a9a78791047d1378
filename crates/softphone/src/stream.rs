//! One call's audio, sans-IO: the RTP stream the phone sends (one G.711 packet every 20 ms
//! from its source, silence while muted, nothing while held, RFC 4733 events while keying a
//! digit) and what it makes of the stream it receives: counts (packets, loss, jitter,
//! digits) and, when asked, what its loudspeaker would play — the packets put back in
//! timestamp order by a jitter buffer of fixed depth, gaps filled with silence.
//!
//! ```no_run
//! # use std::time::Instant;
//! # fn drive(s: &mut softphone::stream::Stream, sock: &std::net::UdpSocket) {
//! let mut out = Vec::new();
//! while let Some(to) = s.poll_transmit(Instant::now(), &mut out) {
//!     let _ = sock.send_to(&out, to);
//! }
//! let mut buf = [0u8; 1500];
//! while let Ok((n, _)) = sock.recv_from(&mut buf) {
//!     s.receive(Instant::now(), &buf[..n], 0.0);
//! }
//! // sleep until s.poll_timeout()
//! # }
//! ```

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use media::recorder::g711::Law;
use media::rtp::{parse_header, Packetizer, SAMPLES_PER_PACKET};

use crate::audio::{Reception, Source, RATE};
use crate::ua::Media;

/// One packet's worth of time.
pub const FRAME: Duration = Duration::from_millis(20);

/// How far behind its schedule the sender may fall before it skips ahead instead of
/// sending a burst.
const MAX_CATCH_UP: u64 = 5;

/// Packets put back in order and played at a fixed delay after the first one.
#[derive(Debug)]
struct Playout {
    depth: Duration,
    law: Law,
    /// Payloads by timestamp (extended relative to `next`).
    pending: BTreeMap<u64, Vec<u8>>,
    /// The timestamp to play next (extended to 64 bits).
    next: Option<u64>,
    /// When playing starts (the first packet's arrival plus the depth).
    start: Option<Instant>,
    /// The sender (SSRC) being played: another one starts the buffer again.
    ssrc: Option<u32>,
    decoded: VecDeque<i16>,
    scratch: Vec<i16>,
}

impl Playout {
    fn new(depth: Duration, law: Law) -> Playout {
        Playout {
            depth,
            law,
            pending: BTreeMap::new(),
            next: None,
            start: None,
            ssrc: None,
            decoded: VecDeque::new(),
            scratch: Vec::new(),
        }
    }

    /// An audio payload with timestamp `ts` from `ssrc` arrived; `false` when it came too
    /// late to play.
    fn push(&mut self, now: Instant, ssrc: u32, ts: u32, payload: &[u8]) -> bool {
        if self.ssrc.is_some_and(|s| s != ssrc) {
            // A new sender (the call moved): its timestamps start afresh.
            self.reset();
        }
        self.ssrc = Some(ssrc);
        let Some(next) = self.next else {
            self.next = Some(u64::from(ts) + (1 << 32));
            self.start = Some(now + self.depth);
            self.pending
                .insert(u64::from(ts) + (1 << 32), payload.to_vec());
            return true;
        };
        // Extend the timestamp by its distance from the next one to play.
        let delta = ts.wrapping_sub(next as u32) as i32;
        let ext = next.wrapping_add_signed(i64::from(delta));
        if delta < 0 {
            // Behind the playout point: too late, or the other side started a new stream
            // (a transfer moved the call) far behind it.
            if delta < -(RATE as i32) {
                self.restart(now, ts, payload);
                return true;
            }
            return false;
        }
        if delta > 10 * RATE as i32 {
            // Far ahead: a new stream; start again from it.
            self.restart(now, ts, payload);
            return true;
        }
        self.pending.insert(ext, payload.to_vec());
        true
    }

    fn restart(&mut self, now: Instant, ts: u32, payload: &[u8]) {
        self.reset();
        let _ = self.push(now, self.ssrc.unwrap_or(0), ts, payload);
    }

    /// Forget the stream: the next packet anchors the playout again (what is decoded
    /// already still plays).
    fn reset(&mut self) {
        self.pending.clear();
        self.next = None;
        self.start = None;
        self.ssrc = None;
    }

    /// The next 20 ms to play (silence before the first packet is due and where packets
    /// are missing).
    fn frame(&mut self, now: Instant, out: &mut Vec<i16>) {
        if self.start.is_some_and(|s| now >= s) {
            while self.decoded.len() < SAMPLES_PER_PACKET {
                let Some(next) = self.next else { break };
                // Whatever the playout point passed cannot be played any more.
                if self
                    .pending
                    .first_key_value()
                    .is_some_and(|(&k, _)| k < next)
                {
                    self.pending = self.pending.split_off(&next);
                }
                match self.pending.remove(&next) {
                    Some(p) => {
                        self.scratch.clear();
                        self.law.decode_into(&p, &mut self.scratch);
                        self.decoded.extend(self.scratch.iter().copied());
                        self.next = Some(next + p.len().max(1) as u64);
                    }
                    None => {
                        // Missing: a frame of silence (up to the next packet held, if
                        // closer).
                        let gap = self
                            .pending
                            .keys()
                            .next()
                            .map_or(SAMPLES_PER_PACKET as u64, |&k| {
                                (k - next).min(SAMPLES_PER_PACKET as u64)
                            });
                        self.decoded.extend(std::iter::repeat_n(0, gap as usize));
                        self.next = Some(next + gap);
                    }
                }
            }
        }
        for _ in 0..SAMPLES_PER_PACKET {
            out.push(self.decoded.pop_front().unwrap_or(0));
        }
    }
}

/// One call's audio.
#[derive(Debug)]
pub struct Stream {
    pk: Packetizer,
    law: Law,
    pt: u8,
    event_pt: Option<u8>,
    remote: Option<SocketAddr>,
    sending: bool,
    muted: bool,
    source: Source,
    /// Encoded frames of a periodic source (a tone: one second holds whole periods).
    cache: Vec<Vec<u8>>,
    frames: u64,
    next: Instant,
    digits: VecDeque<char>,
    keying: Option<(char, u32)>,
    /// No digit before this frame (the gap after the last one).
    digit_gap: u64,
    /// What arrived.
    pub rx: Reception,
    playout: Option<Playout>,
    /// RTP packets sent.
    pub sent: u64,
    /// Packets that came too late for the jitter buffer.
    pub late: u64,
    /// Digits keyed so far.
    pub digits_sent: String,
    pcm: [i16; SAMPLES_PER_PACKET],
    codes: Vec<u8>,
}

impl Stream {
    /// The audio of a call that came up at `now` with `media`; `playout` is the jitter
    /// buffer's depth when what the phone plays is wanted (a recording, a sound card).
    pub fn new(
        now: Instant,
        seed: u64,
        media: &Media,
        source: Source,
        playout: Option<Duration>,
    ) -> Stream {
        let n = &media.negotiated;
        Stream {
            pk: Packetizer::new(seed as u32, (seed >> 32) as u16, (seed >> 48) as u32),
            law: n.law,
            pt: n.pt,
            event_pt: n.telephone_event,
            remote: n.remote,
            sending: media.sending,
            muted: false,
            source,
            cache: Vec::new(),
            frames: 0,
            next: now + FRAME,
            digits: VecDeque::new(),
            keying: None,
            digit_gap: 0,
            rx: Reception::default(),
            playout: playout.map(|d| Playout::new(d, n.law)),
            sent: 0,
            late: 0,
            digits_sent: String::new(),
            pcm: [0; SAMPLES_PER_PACKET],
            codes: Vec::with_capacity(SAMPLES_PER_PACKET),
        }
    }

    /// The call's audio moved or was renegotiated (a re-INVITE, hold or resume).
    pub fn update(&mut self, media: &Media) {
        let n = &media.negotiated;
        if n.law != self.law {
            self.cache.clear();
            if let Some(p) = self.playout.as_mut() {
                p.law = n.law;
            }
        }
        self.law = n.law;
        self.pt = n.pt;
        self.event_pt = n.telephone_event;
        self.remote = n.remote;
        self.sending = media.sending;
    }

    /// Stop sending (our hold) or send again.
    pub fn set_sending(&mut self, sending: bool) {
        self.sending = sending;
    }

    /// Mute (send silence) or unmute the microphone.
    pub fn set_muted(&mut self, muted: bool) {
        self.muted = muted;
    }

    /// Muted now.
    pub fn muted(&self) -> bool {
        self.muted
    }

    /// Key these digits (RFC 4733), after any still being keyed.
    pub fn key(&mut self, digits: &str) {
        self.digits.extend(
            digits
                .chars()
                .filter(|c| c.is_ascii_digit() || matches!(c, '*' | '#' | 'A'..='D')),
        );
    }

    /// Digits still to be keyed (including the one being keyed).
    pub fn keying(&self) -> bool {
        self.keying.is_some() || !self.digits.is_empty()
    }

    /// When the next packet is due.
    pub fn poll_timeout(&self) -> Instant {
        self.next
    }

    /// The next packet due by `now`, written into `out`; where to send it. `None` when
    /// nothing is due (or nothing is to be sent: on hold, no address).
    pub fn poll_transmit(&mut self, now: Instant, out: &mut Vec<u8>) -> Option<SocketAddr> {
        loop {
            if now < self.next {
                return None;
            }
            let behind = (now - self.next).as_millis() as u64 / 20;
            if behind > MAX_CATCH_UP {
                // The driver stalled (or the stream was parked): skip ahead rather than
                // burst. A digit being keyed keeps its timestamp; the playout starts again
                // from the next packet instead of lagging by the stall.
                self.frames += behind;
                if self.keying.is_none() {
                    self.pk.skip((behind * SAMPLES_PER_PACKET as u64) as u32);
                }
                self.next += FRAME * behind as u32;
                if let Some(p) = self.playout.as_mut() {
                    p.reset();
                }
            }
            self.frames += 1;
            self.next += FRAME;
            self.play(now);
            let Some(to) = self.remote.filter(|_| self.sending) else {
                // On hold: nothing sent, the timestamps move on.
                self.pk.skip(SAMPLES_PER_PACKET as u32);
                continue;
            };
            self.build(out);
            self.sent += 1;
            return Some(to);
        }
    }

    fn play(&mut self, now: Instant) {
        if let Some(p) = self.playout.as_mut() {
            p.frame(now, &mut self.rx.samples);
        }
    }

    fn build(&mut self, out: &mut Vec<u8>) {
        if self.keying.is_none() && self.frames >= self.digit_gap {
            if let Some(d) = self.digits.pop_front() {
                self.keying = Some((d, 0));
                self.pk.mark();
            }
        }
        match (self.keying, self.event_pt) {
            (Some((dg, k)), Some(ev_pt)) => {
                // A digit is 100 ms of events (5 packets, the last 3 with the E bit), then
                // 100 ms before the next.
                let code = match dg {
                    '0'..='9' => dg as u8 - b'0',
                    '*' => 10,
                    '#' => 11,
                    'A'..='D' => dg as u8 - b'A' + 12,
                    _ => 0,
                };
                let end = k >= 2;
                let duration = ((k.min(2) + 1) * SAMPLES_PER_PACKET as u32) as u16;
                let payload = [
                    code,
                    if end { 0x80 | 10 } else { 10 },
                    (duration >> 8) as u8,
                    duration as u8,
                ];
                self.pk.packet(ev_pt, &payload, out);
                // Events keep their first timestamp: undo the step.
                self.pk.skip(0u32.wrapping_sub(SAMPLES_PER_PACKET as u32));
                self.keying = if k >= 4 {
                    self.digits_sent.push(dg);
                    self.pk.skip(5 * SAMPLES_PER_PACKET as u32);
                    self.pk.mark();
                    self.digit_gap = self.frames + 5;
                    None
                } else {
                    Some((dg, k + 1))
                };
            }
            (Some((dg, _)), None) => {
                // No telephone-event negotiated: the digit cannot be sent.
                self.keying = None;
                let _ = dg;
                self.audio(out);
            }
            _ => self.audio(out),
        }
    }

    fn audio(&mut self, out: &mut Vec<u8>) {
        let periodic = matches!(self.source, Source::Tone(hz) if hz.fract() == 0.0)
            || matches!(self.source, Source::Silence);
        if self.muted {
            self.pcm.fill(0);
            self.codes.clear();
            self.law.encode_into(&self.pcm, &mut self.codes);
        } else if periodic {
            // A whole-hertz tone repeats every second: encode those 50 frames once.
            if self.cache.is_empty() {
                for i in 0..50 {
                    self.source.frame(i, &mut self.pcm);
                    let mut c = Vec::with_capacity(SAMPLES_PER_PACKET);
                    self.law.encode_into(&self.pcm, &mut c);
                    self.cache.push(c);
                }
            }
            let i = (self.frames % 50) as usize;
            self.pk.packet(self.pt, &self.cache[i], out);
            return;
        } else {
            self.source.frame(self.frames, &mut self.pcm);
            self.codes.clear();
            self.law.encode_into(&self.pcm, &mut self.codes);
        }
        self.pk.packet(self.pt, &self.codes, out);
    }

    /// A datagram arrived on the stream's socket.
    pub fn receive(&mut self, now: Instant, data: &[u8], arrival_s: f64) {
        let Some(h) = parse_header(data) else {
            return;
        };
        if h.payload_offset + h.payload_len > data.len() {
            return;
        }
        let audio = self.rx.packet(&h, data, self.event_pt, arrival_s);
        if let (Some(payload), Some(p)) = (audio, self.playout.as_mut()) {
            if !p.push(now, h.ssrc, h.timestamp, payload) {
                self.late += 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use media::sdp::{Direction, Negotiated};

    fn media(law: Law) -> Media {
        Media {
            negotiated: Negotiated {
                index: 0,
                law,
                pt: 0,
                telephone_event: Some(101),
                remote: Some("127.0.0.1:4000".parse().unwrap()),
                direction: Direction::SendRecv,
                webrtc: false,
                sdes: false,
            },
            sending: true,
        }
    }

    /// Packets of a sender whose frame `i` holds the value `i` (in mu-law).
    fn packets(n: u16) -> Vec<Vec<u8>> {
        let mut pk = Packetizer::new(7, 100, 1000);
        (0..n)
            .map(|i| {
                let pcm = [i as i16 * 100; SAMPLES_PER_PACKET];
                let mut codes = Vec::new();
                Law::Mu.encode_into(&pcm, &mut codes);
                let mut out = Vec::new();
                pk.packet(0, &codes, &mut out);
                out
            })
            .collect()
    }

    #[test]
    fn the_jitter_buffer_plays_reordered_packets_in_order() {
        let t0 = Instant::now();
        let mut s = Stream::new(
            t0,
            1,
            &media(Law::Mu),
            Source::Silence,
            Some(Duration::from_millis(60)),
        );
        let p = packets(6);
        // Arrival order 0 2 1 4 3 5 within the buffer's depth, one every 20 ms, played as
        // the sender's clock ticks.
        let order = [0usize, 2, 1, 4, 3, 5];
        let mut out = Vec::new();
        for k in 0..20u32 {
            let at = t0 + FRAME * k;
            if let Some(&i) = order.get(k as usize) {
                s.receive(at, &p[i], 0.0);
            }
            while s.poll_transmit(at, &mut out).is_some() {}
        }
        let levels: Vec<i16> =
            s.rx.samples
                .chunks(SAMPLES_PER_PACKET)
                .map(|c| c[0])
                .filter(|&v| v != 0)
                .collect();
        let expected: Vec<i16> = (1..6).map(|i| i * 100).collect();
        let near = levels.len() == expected.len()
            && levels
                .iter()
                .zip(&expected)
                .all(|(a, b)| (a - b).abs() <= b / 16 + 8);
        assert!(near, "played {levels:?}, expected about {expected:?}");
        assert_eq!(s.late, 0);
    }

    #[test]
    fn a_packet_after_its_turn_is_late_and_a_gap_is_silence() {
        let t0 = Instant::now();
        let mut s = Stream::new(t0, 1, &media(Law::Mu), Source::Silence, Some(FRAME));
        let p = packets(4);
        s.receive(t0, &p[0], 0.0);
        let mut out = Vec::new();
        // Play frames 0, 1 (missing: silence), then frame 1 arrives late, then 2 and 3.
        for ms in [20, 40, 60] {
            while s
                .poll_transmit(t0 + Duration::from_millis(ms), &mut out)
                .is_some()
            {}
        }
        s.receive(t0 + Duration::from_millis(61), &p[1], 0.0);
        assert_eq!(s.late, 1);
        assert_eq!(s.rx.packets, 2);
    }

    /// A transfer moves the call: packets of the old and the new sender, at timestamps
    /// that do not line up, arrive together. The buffer starts again on the new sender and
    /// plays it (it used to be able to step past a waiting packet and underflow).
    #[test]
    fn a_new_sender_with_unaligned_timestamps_restarts_the_buffer() {
        let t0 = Instant::now();
        let mut s = Stream::new(t0, 1, &media(Law::Mu), Source::Silence, Some(FRAME));
        let old = packets(4);
        let mut new = Vec::new();
        let mut pk = Packetizer::new(99, 7, 1000 + 80); // half a frame off the old stream
        for i in 0..20 {
            let pcm = [3000i16; SAMPLES_PER_PACKET];
            let mut codes = Vec::new();
            Law::Mu.encode_into(&pcm, &mut codes);
            let mut out = Vec::new();
            pk.packet(0, &codes, &mut out);
            new.push(out);
            let _ = i;
        }
        let mut out = Vec::new();
        for (k, (o, n)) in old.iter().zip(&new).enumerate() {
            let at = t0 + FRAME * k as u32;
            s.receive(at, o, 0.0);
            s.receive(at, n, 0.0);
            while s.poll_transmit(at, &mut out).is_some() {}
        }
        for k in 4..20u32 {
            let at = t0 + FRAME * k;
            s.receive(at, &new[k as usize], 0.0);
            while s.poll_transmit(at, &mut out).is_some() {}
        }
        let loud = s.rx.samples.iter().filter(|v| v.abs() > 2500).count();
        assert!(
            loud >= 10 * SAMPLES_PER_PACKET,
            "the new sender is heard: {loud}"
        );
    }

    #[test]
    fn muted_sends_silence_and_held_sends_nothing() {
        let t0 = Instant::now();
        let mut s = Stream::new(t0, 1, &media(Law::Mu), Source::Tone(1000.0), None);
        let mut out = Vec::new();
        assert!(s.poll_transmit(t0 + FRAME, &mut out).is_some());
        assert!(out[12..].iter().any(|&b| b != 0xff), "a tone");
        s.set_muted(true);
        assert!(s.poll_transmit(t0 + FRAME * 2, &mut out).is_some());
        assert!(out[12..].iter().all(|&b| b == 0xff), "mu-law silence");
        let mut held = media(Law::Mu);
        held.sending = false;
        s.update(&held);
        assert!(s.poll_transmit(t0 + FRAME * 3, &mut out).is_none());
        assert_eq!(s.sent, 2);
    }

    #[test]
    fn digits_are_keyed_as_events_then_audio_resumes() {
        let t0 = Instant::now();
        let mut s = Stream::new(t0, 1, &media(Law::Mu), Source::Tone(1000.0), None);
        s.key("1#");
        let mut out = Vec::new();
        let mut events = 0;
        for k in 1..=40u32 {
            if s.poll_transmit(t0 + FRAME * k, &mut out).is_some() && out[1] & 0x7f == 101 {
                events += 1;
            }
        }
        assert_eq!(events, 10);
        assert_eq!(s.digits_sent, "1#");
        assert!(!s.keying());
    }
}
