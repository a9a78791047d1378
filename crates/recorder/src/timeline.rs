//! The recording's clock: turns each leg's RTP packets into 8 kHz samples at their place on
//! one timeline shared by both channels. Pure: arrival times are inputs.
//!
//! Where a packet goes: within one stream (one SSRC) its RTP timestamp says exactly where its
//! samples belong relative to the stream's first packet, which is anchored at its arrival
//! time on the recording's clock. So reordered packets land in order, lost ones leave silence,
//! and both legs stay on the wall clock that anchors them.
//!
//! What re-anchors a stream at the arrival time of a packet:
//! - a new SSRC (the phone restarted its stream, or another phone answered);
//! - a timestamp jump: the timestamp-derived place and the arrival differ by more than
//!   [`TimelineConfig::max_jump`] (a phone that restarts its timestamps after hold);
//! - drift: a sender whose clock runs fast or slow moves its timestamp-derived places away
//!   from real time (100 ppm is 360 ms an hour). The smallest offset between arrival and
//!   timestamp place over each window of packets is the network's least delay plus the drift;
//!   when it leaves ±[`TimelineConfig::drift_tolerance`], the anchor moves by that much. That
//!   keeps each channel within the tolerance of real time, and the two channels within twice
//!   it of each other.
//!
//! Samples are committed [`TimelineConfig::reorder`] behind real time, so a packet that
//! arrives up to that late still lands in place; anything later is dropped and counted.

use std::time::{Duration, Instant};

use crate::g711::Law;

/// Samples per second.
pub const RATE: u32 = 8000;

/// Timing settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimelineConfig {
    /// How far behind real time samples are committed (the reorder window).
    pub reorder: Duration,
    /// A timestamp this far from the arrival time is a jump, not jitter.
    pub max_jump: Duration,
    /// Drift correction threshold.
    pub drift_tolerance: Duration,
    /// Packets per drift-measuring window.
    pub drift_window: u32,
}

impl Default for TimelineConfig {
    fn default() -> Self {
        TimelineConfig {
            reorder: Duration::from_millis(80),
            max_jump: Duration::from_millis(1000),
            drift_tolerance: Duration::from_millis(10),
            drift_window: 100,
        }
    }
}

fn samples(d: Duration) -> i64 {
    (d.as_micros() as i64 * RATE as i64) / 1_000_000
}

/// Counters of one leg.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LegStats {
    /// Audio packets placed on the timeline.
    pub packets: u64,
    /// Packets that came after their place was committed.
    pub late: u64,
    /// Packets that were not audio in the leg's codec (telephone events, comfort noise …).
    pub skipped: u64,
    /// Times the stream was re-anchored (new SSRC, jump, drift).
    pub reanchors: u64,
}

#[derive(Debug, Clone, Copy)]
struct Anchor {
    ssrc: u32,
    /// Extended timestamp and place of the anchor packet.
    ext0: i64,
    pos0: i64,
    /// Last timestamp seen and its extended value (for wrap-around).
    last_ts: u32,
    last_ext: i64,
    /// Smallest (arrival − place) in the current drift window, and packets counted.
    window_min: i64,
    window_n: u32,
}

/// Samples from the committed position on: a vector consumed from the front, compacted now
/// and then (whole-slice copies, no per-sample bookkeeping).
#[derive(Debug, Default)]
struct Pending {
    data: Vec<i16>,
    head: usize,
}

impl Pending {
    /// Write `samples` at `offset` samples past the committed position.
    fn write(&mut self, offset: usize, samples: &[i16]) {
        let start = self.head + offset;
        let end = start + samples.len();
        if self.data.len() < end {
            self.data.resize(end, 0);
        }
        self.data[start..end].copy_from_slice(samples);
    }

    /// The next `n` committed samples (fewer if fewer are held; the rest are silence).
    fn front(&self, n: usize) -> &[i16] {
        let end = (self.head + n).min(self.data.len());
        &self.data[self.head.min(end)..end]
    }

    fn consume(&mut self, n: usize) {
        self.head = (self.head + n).min(self.data.len());
        if self.head == self.data.len() {
            self.data.clear();
            self.head = 0;
        } else if self.head > 4096 && self.head * 2 > self.data.len() {
            self.data.drain(..self.head);
            self.head = 0;
        }
    }
}

/// One leg's samples between the committed position and the reorder horizon.
#[derive(Debug)]
struct Leg {
    anchor: Option<Anchor>,
    future: Pending,
    stats: LegStats,
    scratch: Vec<i16>,
}

impl Leg {
    fn new() -> Leg {
        Leg {
            anchor: None,
            future: Pending {
                data: Vec::with_capacity(RATE as usize / 2),
                head: 0,
            },
            stats: LegStats::default(),
            scratch: Vec::with_capacity(320),
        }
    }
}

/// Which channel of the stereo recording.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Channel {
    /// The caller (left).
    Left,
    /// The agent (right).
    Right,
}

impl Channel {
    fn index(self) -> usize {
        match self {
            Channel::Left => 0,
            Channel::Right => 1,
        }
    }
}

/// The two legs of one recording on one clock.
#[derive(Debug)]
pub struct Timeline {
    cfg: TimelineConfig,
    start: Instant,
    legs: [Leg; 2],
    /// Samples committed so far (per channel).
    committed: i64,
    /// Paused intervals (sample positions), and the start of the current pause.
    pauses: Vec<(i64, i64)>,
    paused_since: Option<i64>,
}

impl Timeline {
    /// A timeline whose position 0 is `start`.
    pub fn new(cfg: TimelineConfig, start: Instant) -> Timeline {
        Timeline {
            cfg,
            start,
            legs: [Leg::new(), Leg::new()],
            committed: 0,
            pauses: Vec::new(),
            paused_since: None,
        }
    }

    fn pos_of(&self, at: Instant) -> i64 {
        samples(at.saturating_duration_since(self.start))
    }

    /// An RTP packet of a leg arrived at `at`. `law` is the leg's codec: only packets of its
    /// payload type are audio.
    pub fn packet(&mut self, channel: Channel, at: Instant, law: Law, packet: &[u8]) {
        let arrival = self.pos_of(at);
        let committed = self.committed;
        let cfg = self.cfg;
        let leg = &mut self.legs[channel.index()];
        let Some(h) = parse(packet) else {
            leg.stats.skipped += 1;
            return;
        };
        if h.payload_type != law.payload_type() {
            leg.stats.skipped += 1;
            return;
        }
        // Place the packet: extend its timestamp relative to the anchor.
        let max_jump = samples(cfg.max_jump);
        let pos = match &mut leg.anchor {
            Some(a) if a.ssrc == h.ssrc => {
                let ext = a.last_ext + i64::from(h.timestamp.wrapping_sub(a.last_ts) as i32);
                if ext > a.last_ext {
                    a.last_ext = ext;
                    a.last_ts = h.timestamp;
                }
                let pos = a.pos0 + (ext - a.ext0);
                if (pos - arrival).abs() > max_jump {
                    leg.stats.reanchors += 1;
                    *a = new_anchor(h.ssrc, h.timestamp, arrival);
                    arrival
                } else {
                    // Drift: track the least (arrival - place) of the window.
                    a.window_min = a.window_min.min(arrival - pos);
                    a.window_n += 1;
                    if a.window_n >= cfg.drift_window {
                        let m = a.window_min;
                        if m.abs() > samples(cfg.drift_tolerance) {
                            a.pos0 += m;
                            leg.stats.reanchors += 1;
                        }
                        a.window_min = i64::MAX;
                        a.window_n = 0;
                    }
                    pos
                }
            }
            _ => {
                if leg.anchor.is_some() {
                    leg.stats.reanchors += 1;
                }
                leg.anchor = Some(new_anchor(h.ssrc, h.timestamp, arrival));
                arrival
            }
        };
        let payload = &packet[h.payload_offset..h.payload_offset + h.payload_len];
        leg.scratch.clear();
        law.decode_into(payload, &mut leg.scratch);
        let n = leg.scratch.len() as i64;
        let offset = pos - committed;
        if offset + n <= 0 {
            leg.stats.late += 1;
            return;
        }
        // Never hold more than two seconds ahead (a wild timestamp that escaped the jump
        // check cannot make the buffer grow).
        if offset > i64::from(RATE) * 2 {
            leg.stats.late += 1;
            return;
        }
        let skip = (-offset).max(0) as usize;
        let start = offset.max(0) as usize;
        let Leg {
            future, scratch, ..
        } = leg;
        future.write(start, &scratch[skip..]);
        leg.stats.packets += 1;
    }

    /// Stop recording audio from `at` on (silence keeps the timeline); no-op when paused.
    pub fn pause(&mut self, at: Instant) {
        if self.paused_since.is_none() {
            self.paused_since = Some(self.pos_of(at).max(self.committed));
        }
    }

    /// Record audio again from `at` on.
    pub fn resume(&mut self, at: Instant) {
        if let Some(p) = self.paused_since.take() {
            self.pauses.push((p, self.pos_of(at).max(p)));
        }
    }

    /// The paused intervals so far, in seconds from the start (an open one ends at `now`).
    pub fn pauses(&self, now: Instant) -> Vec<(f64, f64)> {
        let secs = |p: i64| p as f64 / f64::from(RATE);
        let mut v: Vec<(f64, f64)> = self
            .pauses
            .iter()
            .map(|&(a, b)| (secs(a), secs(b)))
            .collect();
        if let Some(p) = self.paused_since {
            v.push((secs(p), secs(self.pos_of(now).max(p))));
        }
        v
    }

    fn muted(&self, pos: i64) -> bool {
        self.paused_since.is_some_and(|p| pos >= p)
            || self.pauses.iter().any(|&(a, b)| pos >= a && pos < b)
    }

    /// Commit everything up to `now` minus the reorder window; appends interleaved stereo
    /// samples (left, right, left, right …) to `out`. Returns the number of sample frames.
    pub fn advance(&mut self, now: Instant, out: &mut Vec<i16>) -> usize {
        let target = self.pos_of(now) - samples(self.cfg.reorder);
        self.commit_to(target, out)
    }

    /// Commit everything up to `now`, without waiting for late packets (end of the call).
    pub fn finish(&mut self, now: Instant, out: &mut Vec<i16>) -> usize {
        let target = self.pos_of(now);
        self.commit_to(target, out)
    }

    fn commit_to(&mut self, target: i64, out: &mut Vec<i16>) -> usize {
        let n = target - self.committed;
        if n <= 0 {
            return 0;
        }
        let n = n as usize;
        out.reserve(2 * n);
        let first = out.len();
        {
            let l = self.legs[0].future.front(n);
            let r = self.legs[1].future.front(n);
            let both = l.len().min(r.len());
            out.extend(l[..both].iter().zip(&r[..both]).flat_map(|(a, b)| [*a, *b]));
            for i in both..n {
                out.push(l.get(i).copied().unwrap_or(0));
                out.push(r.get(i).copied().unwrap_or(0));
            }
        }
        for leg in &mut self.legs {
            leg.future.consume(n);
        }
        if self.paused_since.is_some() || !self.pauses.is_empty() {
            for i in 0..n {
                if self.muted(self.committed + i as i64) {
                    out[first + 2 * i] = 0;
                    out[first + 2 * i + 1] = 0;
                }
            }
        }
        self.committed = target;
        n
    }

    /// Sample frames committed so far.
    pub fn committed(&self) -> i64 {
        self.committed
    }

    /// A leg's counters.
    pub fn stats(&self, channel: Channel) -> LegStats {
        self.legs[channel.index()].stats
    }
}

fn new_anchor(ssrc: u32, ts: u32, arrival: i64) -> Anchor {
    Anchor {
        ssrc,
        ext0: i64::from(ts),
        pos0: arrival,
        last_ts: ts,
        last_ext: i64::from(ts),
        window_min: i64::MAX,
        window_n: 0,
    }
}

struct Header {
    payload_type: u8,
    timestamp: u32,
    ssrc: u32,
    payload_offset: usize,
    payload_len: usize,
}

/// The RTP header fields the recorder needs (RFC 3550 §5.1); `None` if not RTP v2.
fn parse(p: &[u8]) -> Option<Header> {
    if p.len() < 12 || p[0] >> 6 != 2 {
        return None;
    }
    let mut off = 12 + 4 * (p[0] & 0x0F) as usize;
    if p[0] & 0x10 != 0 {
        let len = u16::from_be_bytes([*p.get(off + 2)?, *p.get(off + 3)?]) as usize;
        off += 4 + 4 * len;
    }
    let mut end = p.len();
    if p[0] & 0x20 != 0 {
        end = end.checked_sub(*p.last()? as usize)?;
    }
    if off > end {
        return None;
    }
    Some(Header {
        payload_type: p[1] & 0x7F,
        timestamp: u32::from_be_bytes([p[4], p[5], p[6], p[7]]),
        ssrc: u32::from_be_bytes([p[8], p[9], p[10], p[11]]),
        payload_offset: off,
        payload_len: end - off,
    })
}
