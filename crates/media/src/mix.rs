//! Mixing for a supervisor who monitors a call (listen, whisper, barge), sans-IO.
//!
//! [`MonitorMode`] says who hears whom. A leg that hears one other leg (the caller and the agent
//! while a supervisor only listens) gets that leg's packets forwarded as on any call: no
//! decoding, no added latency. A leg that hears two others gets a mix: each 20 ms G.711 frame
//! is decoded to 16-bit linear samples, summed with saturation and encoded in the law of the leg
//! that hears it, so a PCMU leg and a PCMA leg can be mixed together.
//!
//! Mixing is driven by arrivals, not by a timer: for each leg that hears a mix, one of its
//! sources is the *clock*. A frame of the clock is sent at once, mixed with the oldest waiting
//! frame of the other source (silence when there is none); frames of the other source wait in a
//! queue of at most [`QUEUE`] frames, the oldest dropped when a bursty source overfills it, so a
//! mixed path adds at most `QUEUE` × 20 ms (and the clock's path nothing). When the clock has
//! sent nothing for [`HANDOVER`] (a phone that stops sending in silence, a held phone), the
//! next source that sends becomes the clock. [`Mixer`] keeps these queues and clocks; the relay
//! sends what it returns in the packet of the clock, rewritten into the hearing leg's own
//! stream ([`crate::stream::OutStream::forward`]), so that leg hears one continuous stream with
//! the marker bit where the clock changes.
//!
//! Only 20 ms frames (160 samples, [`FRAME`]) of the leg's own G.711 payload type are mixed;
//! anything else a source sends (comfort noise, other frame sizes or codecs) is not heard in a
//! mix: that source counts as silent there. Telephone-events are never mixed.

use std::time::{Duration, Instant};

use recorder::g711::Law;

use crate::relay::Leg;
use crate::rtp::SAMPLES_PER_PACKET;

/// Samples in one mixed frame: 20 ms at 8 kHz.
pub const FRAME: usize = SAMPLES_PER_PACKET;

/// One 20 ms frame of linear samples.
pub type Frame = [i16; FRAME];

/// Frames of a source that may wait for the clock of a leg that hears it (40 ms).
pub const QUEUE: usize = 2;

/// A clock that has sent nothing for this long gives way to the next source that sends.
pub const HANDOVER: Duration = Duration::from_millis(50);

/// How a supervisor takes part in a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum MonitorMode {
    /// Not monitoring: the caller and the agent hear each other, the supervisor hears nobody
    /// from the call (prompts can still be played to it) and nobody hears the supervisor.
    #[default]
    Off,
    /// The supervisor hears the caller and the agent; nobody hears the supervisor.
    Listen,
    /// The supervisor hears the caller and the agent; the agent hears the caller and the
    /// supervisor; the caller hears only the agent.
    Whisper,
    /// Each of the three hears the other two.
    Barge,
    /// The agent consults the third party (an attended transfer keyed on the phone): the
    /// agent and the third leg hear each other; the caller hears neither (call control plays
    /// them music) and neither hears the caller.
    Consult,
}

impl MonitorMode {
    /// Whether `dest` hears `src` in this mode (a leg never hears itself). The caller and
    /// the agent always hear each other.
    pub const fn hears(self, dest: Leg, src: Leg) -> bool {
        use Leg::{Agent, Caller, Supervisor};
        match (dest, src) {
            (Caller, Agent) | (Agent, Caller) => !matches!(self, MonitorMode::Consult),
            (Supervisor, Caller) => !matches!(self, MonitorMode::Off | MonitorMode::Consult),
            (Supervisor, Agent) => !matches!(self, MonitorMode::Off),
            (Agent, Supervisor) => matches!(
                self,
                MonitorMode::Whisper | MonitorMode::Barge | MonitorMode::Consult
            ),
            (Caller, Supervisor) => matches!(self, MonitorMode::Barge),
            _ => false,
        }
    }

    /// Whether `dest` hears a mix (two sources) rather than one other leg's packets.
    pub const fn mixes(self, dest: Leg) -> bool {
        match dest {
            Leg::Caller => matches!(self, MonitorMode::Barge),
            // In a consultation the agent hears one source, the third leg, which only the
            // mixer's path carries.
            Leg::Agent => matches!(
                self,
                MonitorMode::Whisper | MonitorMode::Barge | MonitorMode::Consult
            ),
            Leg::Supervisor => !matches!(self, MonitorMode::Off),
        }
    }
}

/// Decode one frame of G.711 code words.
pub fn decode(law: Law, codes: &[u8; FRAME], out: &mut Frame) {
    for (s, &c) in out.iter_mut().zip(codes) {
        *s = law.decode(c);
    }
}

/// Add `src` to `acc`, sample by sample, saturating at the limits of 16 bits.
pub fn add(acc: &mut Frame, src: &Frame) {
    for (a, &s) in acc.iter_mut().zip(src) {
        *a = a.saturating_add(s);
    }
}

/// Encode one frame, appending the code words to `out`.
pub fn encode(law: Law, frame: &Frame, out: &mut Vec<u8>) {
    law.encode_into(frame, out);
}

/// Frames of one source waiting for a clock: a ring of [`QUEUE`] frames.
#[derive(Debug, Clone)]
struct Waiting {
    frames: [Frame; QUEUE],
    first: usize,
    len: usize,
}

impl Waiting {
    const EMPTY: Waiting = Waiting {
        frames: [[0; FRAME]; QUEUE],
        first: 0,
        len: 0,
    };

    /// Queue a frame; a full queue loses its oldest frame. True when one was lost.
    fn push(&mut self, f: &Frame) -> bool {
        let full = self.len == QUEUE;
        if full {
            self.first = (self.first + 1) % QUEUE;
            self.len -= 1;
        }
        self.frames[(self.first + self.len) % QUEUE] = *f;
        self.len += 1;
        full
    }

    fn pop(&mut self) -> Option<&Frame> {
        if self.len == 0 {
            return None;
        }
        let f = &self.frames[self.first];
        self.first = (self.first + 1) % QUEUE;
        self.len -= 1;
        Some(f)
    }

    fn clear(&mut self) {
        self.len = 0;
    }
}

/// What one leg hears mixed: its clock and the frames of its other sources.
#[derive(Debug, Clone)]
struct Hearing {
    /// The source whose frames are sent as they come, and when it last sent one.
    clock: Option<(Leg, Instant)>,
    /// Waiting frames per source leg.
    waiting: [Waiting; 3],
    /// The mix being sent.
    mix: Frame,
}

impl Hearing {
    const NEW: Hearing = Hearing {
        clock: None,
        waiting: [Waiting::EMPTY; 3],
        mix: [0; FRAME],
    };
}

/// The mixing state of one monitored call: per leg that hears a mix, its clock and the
/// frames waiting for it. About 6 KiB, allocated only while a supervisor monitors the call.
#[derive(Debug, Clone)]
pub struct Mixer {
    hearing: [Hearing; 3],
    /// Frames dropped because a source sent faster than the clock of a leg that hears it.
    overflows: u64,
}

impl Default for Mixer {
    fn default() -> Self {
        Mixer::new()
    }
}

impl Mixer {
    /// Nothing heard yet.
    pub fn new() -> Mixer {
        Mixer {
            hearing: [Hearing::NEW, Hearing::NEW, Hearing::NEW],
            overflows: 0,
        }
    }

    /// A frame of `src` arrived at `now` for `dest`, which hears a mix. When `src` is (or
    /// becomes) `dest`'s clock, returns the mix to send `dest` now: this frame plus the oldest
    /// waiting frame of each other source. Otherwise the frame waits and `None` is returned.
    pub fn frame(&mut self, now: Instant, dest: Leg, src: Leg, frame: &Frame) -> Option<&Frame> {
        let h = &mut self.hearing[dest.index()];
        match h.clock {
            Some((clock, at)) if clock != src && now.saturating_duration_since(at) < HANDOVER => {
                if h.waiting[src.index()].push(frame) {
                    self.overflows += 1;
                }
                return None;
            }
            Some((clock, _)) if clock == src => {}
            // A new clock: what it had waiting is older than this frame and is not sent.
            _ => h.waiting[src.index()].clear(),
        }
        h.clock = Some((src, now));
        h.mix = *frame;
        for (i, w) in h.waiting.iter_mut().enumerate() {
            if i == src.index() {
                continue;
            }
            if let Some(f) = w.pop() {
                add(&mut h.mix, f);
            }
        }
        Some(&h.mix)
    }

    /// The clock of `dest` now, if any.
    pub fn clock(&self, dest: Leg) -> Option<Leg> {
        self.hearing[dest.index()].clock.map(|(l, _)| l)
    }

    /// Frames dropped so far because a source sent faster than a clock.
    pub fn overflows(&self) -> u64 {
        self.overflows
    }

    /// Forget what `dest` had waiting (it stops hearing a mix for a while: a prompt).
    pub fn reset(&mut self, dest: Leg) {
        self.hearing[dest.index()] = Hearing::NEW;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tone(hz: f64, amplitude: f64) -> Frame {
        let mut f = [0i16; FRAME];
        for (n, s) in f.iter_mut().enumerate() {
            *s = (amplitude * (2.0 * std::f64::consts::PI * hz * n as f64 / 8000.0).sin()) as i16;
        }
        f
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn encode_then_decode_stays_within_the_quantisation_step() {
        for law in [Law::Mu, Law::A] {
            let f = tone(440.0, 12_000.0);
            let mut codes = Vec::new();
            encode(law, &f, &mut codes);
            assert_eq!(codes.len(), FRAME);
            let mut back = [0i16; FRAME];
            decode(law, codes.as_slice().try_into().unwrap(), &mut back);
            for (a, b) in f.iter().zip(&back) {
                let err = (i32::from(*a) - i32::from(*b)).abs();
                assert!(
                    err <= i32::from(a.unsigned_abs()) / 16 + 16,
                    "{law:?}: {a} -> {b}"
                );
            }
            // Code words survive decode and encode unchanged (µ-law's second zero aside).
            let codes: Vec<u8> = (0..=255u8)
                .filter(|&c| !(law == Law::Mu && c == 0x7F))
                .collect();
            for chunk in codes.chunks(FRAME) {
                let mut padded = [law.silence(); FRAME];
                padded[..chunk.len()].copy_from_slice(chunk);
                let mut lin = [0i16; FRAME];
                decode(law, &padded, &mut lin);
                let mut again = Vec::new();
                encode(law, &lin, &mut again);
                assert_eq!(again, padded);
            }
        }
    }

    #[test]
    fn sums_saturate_instead_of_wrapping() {
        let mut a = [30_000i16; FRAME];
        add(&mut a, &[10_000; FRAME]);
        assert!(a.iter().all(|&s| s == i16::MAX));
        let mut b = [-30_000i16; FRAME];
        add(&mut b, &[-10_000; FRAME]);
        assert!(b.iter().all(|&s| s == i16::MIN));
        let mut c = [1_000i16; FRAME];
        add(&mut c, &[-250; FRAME]);
        assert!(c.iter().all(|&s| s == 750));
        // Through the codec: a full-scale sum is the law's full-scale code, not noise.
        let mut out = Vec::new();
        encode(Law::Mu, &a, &mut out);
        assert!(out.iter().all(|&c| c == 0x80));
    }

    #[test]
    fn the_mode_table() {
        use Leg::{Agent, Caller, Supervisor};
        use MonitorMode::{Barge, Listen, Off, Whisper};
        let legs = [Caller, Agent, Supervisor];
        let heard = |m: MonitorMode, d: Leg| -> Vec<Leg> {
            legs.into_iter().filter(|&s| m.hears(d, s)).collect()
        };
        assert_eq!(heard(Off, Supervisor), vec![]);
        assert_eq!(heard(Listen, Supervisor), vec![Caller, Agent]);
        assert_eq!(heard(Listen, Caller), vec![Agent]);
        assert_eq!(heard(Listen, Agent), vec![Caller]);
        assert_eq!(heard(Whisper, Agent), vec![Caller, Supervisor]);
        assert_eq!(heard(Whisper, Caller), vec![Agent]);
        for d in legs {
            assert!(!Barge.hears(d, d));
            assert_eq!(heard(Barge, d).len(), 2);
            for m in [Off, Listen, Whisper, Barge] {
                assert_eq!(m.mixes(d), heard(m, d).len() == 2, "{m:?} {d:?}");
            }
        }
    }

    #[test]
    fn the_clock_sends_at_once_with_the_other_sources_frame_mixed_in() {
        let t0 = Instant::now();
        let mut m = Mixer::new();
        let (a, b) = ([100i16; FRAME], [20i16; FRAME]);
        // The first source to send is the clock.
        assert_eq!(m.frame(t0, Leg::Supervisor, Leg::Caller, &a), Some(&a));
        assert_eq!(m.clock(Leg::Supervisor), Some(Leg::Caller));
        for n in 1..100u64 {
            let t = t0 + ms(20 * n);
            let mix = m.frame(t, Leg::Supervisor, Leg::Caller, &a).copied();
            // The agent's frame of a round arrives 7 ms after the caller's: it is mixed in
            // the next round (20 ms later), never later than that.
            let expected = if n == 1 { 100 } else { 120 };
            assert_eq!(mix, Some([expected; FRAME]), "round {n}");
            assert_eq!(m.frame(t + ms(7), Leg::Supervisor, Leg::Agent, &b), None);
        }
        assert_eq!(m.overflows(), 0);
    }

    #[test]
    fn a_burst_cannot_add_latency_and_a_silent_clock_hands_over() {
        let t0 = Instant::now();
        let mut m = Mixer::new();
        let frame = |v: i16| [v; FRAME];
        m.frame(t0, Leg::Agent, Leg::Caller, &frame(0));
        // The supervisor's phone sends 5 frames at once: only the newest QUEUE wait.
        for v in 1..=5 {
            assert_eq!(
                m.frame(t0 + ms(1), Leg::Agent, Leg::Supervisor, &frame(v)),
                None
            );
        }
        assert_eq!(m.overflows(), 3);
        let got = |m: &mut Mixer, t| m.frame(t, Leg::Agent, Leg::Caller, &frame(0)).copied();
        assert_eq!(got(&mut m, t0 + ms(20)), Some(frame(4)));
        assert_eq!(got(&mut m, t0 + ms(40)), Some(frame(5)));
        assert_eq!(got(&mut m, t0 + ms(60)), Some(frame(0)), "then silence");
        // The caller goes quiet: the supervisor's frames wait until the handover, then the
        // supervisor is the clock.
        let quiet = t0 + ms(60);
        assert_eq!(
            m.frame(quiet + ms(20), Leg::Agent, Leg::Supervisor, &frame(7)),
            None
        );
        assert_eq!(
            m.frame(quiet + ms(40), Leg::Agent, Leg::Supervisor, &frame(8)),
            None
        );
        assert_eq!(
            m.frame(quiet + HANDOVER, Leg::Agent, Leg::Supervisor, &frame(9)),
            Some(&frame(9))
        );
        assert_eq!(m.clock(Leg::Agent), Some(Leg::Supervisor));
        // The caller is back: it waits for the supervisor's clock now.
        assert_eq!(
            m.frame(quiet + ms(61), Leg::Agent, Leg::Caller, &frame(1)),
            None
        );
        assert_eq!(
            m.frame(quiet + ms(70), Leg::Agent, Leg::Supervisor, &frame(9)),
            Some(&frame(10))
        );
        m.reset(Leg::Agent);
        assert_eq!(m.clock(Leg::Agent), None);
    }
}
