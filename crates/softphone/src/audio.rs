//! What the phone sends (a tone, a WAV file, silence) and what it makes of what it receives
//! (the decoded audio for a WAV file, and the counts a test or a script asserts on: packets,
//! loss, jitter).

use std::path::Path;

use media::rtp::{RtpHeader, SAMPLES_PER_PACKET};

/// Samples per second of G.711.
pub const RATE: u32 = 8000;

/// Where the phone's "microphone" audio comes from.
#[derive(Debug, Clone)]
pub enum Source {
    /// Nothing (digital silence).
    Silence,
    /// A sine of this frequency, at about a quarter of full scale.
    Tone(f64),
    /// These samples (8 kHz, mono), looped.
    Samples(Vec<i16>),
    /// The sound card's microphone.
    #[cfg(feature = "sound-card")]
    Microphone(std::sync::Arc<crate::device::SoundCard>),
}

impl Source {
    /// A WAV file as a source: 8 kHz mono 16-bit PCM (other formats are refused with the
    /// reason).
    pub fn wav(path: &Path) -> Result<Source, String> {
        let mut r = hound::WavReader::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let spec = r.spec();
        if spec.sample_rate != RATE || spec.channels != 1 || spec.bits_per_sample != 16 {
            return Err(format!(
                "{}: need 8000 Hz mono 16-bit PCM, not {} Hz {} channels {} bits",
                path.display(),
                spec.sample_rate,
                spec.channels,
                spec.bits_per_sample
            ));
        }
        let samples: Result<Vec<i16>, _> = r.samples::<i16>().collect();
        let samples = samples.map_err(|e| format!("{}: {e}", path.display()))?;
        if samples.is_empty() {
            return Err(format!("{}: no samples", path.display()));
        }
        Ok(Source::Samples(samples))
    }

    /// The `n`th 20 ms frame.
    pub fn frame(&self, n: u64, out: &mut [i16; SAMPLES_PER_PACKET]) {
        match self {
            Source::Silence => out.fill(0),
            Source::Tone(hz) => {
                for (i, s) in out.iter_mut().enumerate() {
                    let t = (n * SAMPLES_PER_PACKET as u64 + i as u64) as f64 / f64::from(RATE);
                    *s = (8000.0 * (2.0 * std::f64::consts::PI * hz * t).sin()) as i16;
                }
            }
            Source::Samples(v) => {
                let start = (n as usize * SAMPLES_PER_PACKET) % v.len();
                for (i, s) in out.iter_mut().enumerate() {
                    *s = v[(start + i) % v.len()];
                }
            }
            #[cfg(feature = "sound-card")]
            Source::Microphone(card) => card.read_frame(out),
        }
    }
}

/// What arrived on one RTP stream: RFC 3550 counts, digits, and what was played (filled by
/// the stream's jitter buffer when one is kept).
#[derive(Debug, Default)]
pub struct Reception {
    /// What the phone played: decoded audio in timestamp order, silence where none came.
    pub samples: Vec<i16>,
    /// RTP packets received.
    pub packets: u64,
    /// RFC 4733 telephone-event packets among them.
    pub events: u64,
    /// Digits received as RFC 4733 events (one per key press).
    pub digits: String,
    first_seq: Option<u16>,
    highest: u32,
    cycles: u32,
    /// RFC 3550 interarrival jitter, in timestamp units (1/8000 s).
    jitter: f64,
    last_transit: Option<f64>,
    last_event: Option<u32>,
}

impl Reception {
    /// A packet arrived at `arrival_s` (seconds on the phone's clock): counted; its audio
    /// payload returned (`None` for an event).
    pub fn packet<'a>(
        &mut self,
        h: &RtpHeader,
        data: &'a [u8],
        event_pt: Option<u8>,
        arrival_s: f64,
    ) -> Option<&'a [u8]> {
        self.packets += 1;
        // Sequence numbers (extended with their cycles).
        match self.first_seq {
            None => {
                self.first_seq = Some(h.seq);
                self.highest = u32::from(h.seq);
            }
            Some(_) => {
                let last = (self.highest & 0xffff) as u16;
                let delta = h.seq.wrapping_sub(last);
                if delta != 0 && delta < 0x8000 {
                    if h.seq < last {
                        self.cycles += 1;
                    }
                    self.highest = (self.cycles << 16) | u32::from(h.seq);
                }
            }
        }
        // Jitter (RFC 3550 §6.4.1).
        let transit = arrival_s * f64::from(RATE) - f64::from(h.timestamp);
        if let Some(last) = self.last_transit {
            let d = (transit - last).abs();
            self.jitter += (d - self.jitter) / 16.0;
        }
        self.last_transit = Some(transit);
        let payload = &data[h.payload_offset..h.payload_offset + h.payload_len];
        if Some(h.payload_type) == event_pt {
            self.events += 1;
            // One digit per event (its timestamp), on its first packet.
            if self.last_event != Some(h.timestamp) {
                self.last_event = Some(h.timestamp);
                if let Some(d) = media::rtp::TelephoneEvent::parse(payload).and_then(|e| e.digit())
                {
                    self.digits.push(d);
                }
            }
            return None;
        }
        Some(payload)
    }

    /// Packets expected from the sequence numbers seen.
    pub fn expected(&self) -> u64 {
        match self.first_seq {
            None => 0,
            Some(first) => u64::from(self.highest) - u64::from(first) + 1,
        }
    }

    /// Packets lost (expected but never received; never negative).
    pub fn lost(&self) -> u64 {
        self.expected().saturating_sub(self.packets)
    }

    /// The interarrival jitter in milliseconds.
    pub fn jitter_ms(&self) -> f64 {
        self.jitter / f64::from(RATE) * 1000.0
    }

    /// Write the decoded audio as an 8 kHz mono WAV file.
    pub fn write_wav(&self, path: &Path) -> Result<(), String> {
        let spec = hound::WavSpec {
            channels: 1,
            sample_rate: RATE,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        let mut w =
            hound::WavWriter::create(path, spec).map_err(|e| format!("{}: {e}", path.display()))?;
        for &s in &self.samples {
            w.write_sample(s)
                .map_err(|e| format!("{}: {e}", path.display()))?;
        }
        w.finalize().map_err(|e| format!("{}: {e}", path.display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tone_source_is_continuous_across_frames() {
        let src = Source::Tone(1000.0);
        let (mut a, mut b) = ([0i16; SAMPLES_PER_PACKET], [0i16; SAMPLES_PER_PACKET]);
        src.frame(0, &mut a);
        src.frame(1, &mut b);
        // 1 kHz at 8 kHz: period 8 samples; frame 1 continues frame 0's phase.
        assert_eq!(a[8], a[0]);
        assert_eq!(b[0], a[0], "160 samples is a whole number of periods");
        assert!(a.iter().any(|&s| s > 7000));
    }

    #[test]
    fn loss_and_wrap_are_counted_from_sequence_numbers() {
        let mut r = Reception::default();
        let mut pkt = media::rtp::Packetizer::new(1, 65_534, 0);
        let mut out = Vec::new();
        for i in 0..6 {
            pkt.packet(0, &[0xff; 160], &mut out);
            if i == 3 {
                continue; // lost
            }
            let h = media::rtp::parse_header(&out).unwrap();
            assert!(r.packet(&h, &out, Some(101), f64::from(i) * 0.02).is_some());
        }
        assert_eq!((r.packets, r.expected(), r.lost()), (5, 6, 1));
        assert!(r.jitter_ms() < 1.0);
    }
}
