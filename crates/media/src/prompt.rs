//! Prompts and music-on-hold: 8 kHz mono WAV files read once with hound and kept encoded in
//! both G.711 laws, so playing one costs a copy of 160 bytes per 20 ms packet.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use recorder::g711::Law;

/// Why a prompt file cannot be used. The message names the file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PromptError {
    /// The file cannot be opened or is not a WAV file.
    #[error("{path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// What hound said.
        source: hound::Error,
    },
    /// The WAV file is not 8 kHz mono 16-bit (or 8-bit) PCM.
    #[error("{path}: {reason} (prompts must be 8000 Hz mono 16-bit PCM WAV, e.g. `sox in.wav -r 8000 -c 1 -b 16 out.wav`)")]
    Format {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
}

/// A prompt ready to play: the same audio encoded in both laws.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prompt {
    name: Arc<str>,
    pcmu: Arc<[u8]>,
    pcma: Arc<[u8]>,
}

impl Prompt {
    /// A prompt from 8 kHz linear samples.
    pub fn from_samples(name: &str, samples: &[i16]) -> Prompt {
        let mut pcmu = Vec::with_capacity(samples.len());
        let mut pcma = Vec::with_capacity(samples.len());
        Law::Mu.encode_into(samples, &mut pcmu);
        Law::A.encode_into(samples, &mut pcma);
        Prompt {
            name: Arc::from(name),
            pcmu: pcmu.into(),
            pcma: pcma.into(),
        }
    }

    /// A prompt from linear samples at `rate` Hz (a speech synthesizer's 22,050 Hz, a
    /// studio's 44,100 Hz), resampled to 8 kHz.
    pub fn from_samples_at(name: &str, samples: &[i16], rate: u32) -> Prompt {
        Prompt::from_samples(name, &resample(samples, rate, 8000))
    }

    /// Read an 8 kHz mono PCM WAV file.
    pub fn load(path: &Path) -> Result<Prompt, PromptError> {
        Prompt::read(path, false)
    }

    /// Read the first channel of an 8 kHz PCM WAV file (a recording's caller side).
    pub fn load_first_channel(path: &Path) -> Result<Prompt, PromptError> {
        Prompt::read(path, true)
    }

    fn read(path: &Path, first_channel: bool) -> Result<Prompt, PromptError> {
        let reader = hound::WavReader::open(path).map_err(|source| PromptError::Read {
            path: path.to_owned(),
            source,
        })?;
        let spec = reader.spec();
        let bad = |reason: String| PromptError::Format {
            path: path.to_owned(),
            reason,
        };
        if spec.sample_rate != 8000 {
            return Err(bad(format!("sample rate is {} Hz", spec.sample_rate)));
        }
        if spec.channels != 1 && !first_channel {
            return Err(bad(format!("{} channels", spec.channels)));
        }
        let channels = usize::from(spec.channels.max(1));
        if spec.sample_format != hound::SampleFormat::Int || !matches!(spec.bits_per_sample, 8 | 16)
        {
            return Err(bad(format!(
                "{:?} samples of {} bits",
                spec.sample_format, spec.bits_per_sample
            )));
        }
        let shift = 16 - spec.bits_per_sample;
        let samples: Result<Vec<i16>, _> = reader
            .into_samples::<i16>()
            .step_by(channels)
            .map(|s| s.map(|v| v << shift))
            .collect();
        let samples = samples.map_err(|source| PromptError::Read {
            path: path.to_owned(),
            source,
        })?;
        if samples.is_empty() {
            return Err(bad("no audio".into()));
        }
        let name = path.file_stem().map_or_else(
            || path.display().to_string(),
            |s| s.to_string_lossy().into_owned(),
        );
        Ok(Prompt::from_samples(&name, &samples))
    }

    /// A sine tone (e.g. the confirmation beep of a feature code).
    pub fn tone(name: &str, hz: f64, length: Duration, amplitude: i16) -> Prompt {
        let n = (length.as_secs_f64() * 8000.0) as usize;
        let samples: Vec<i16> = (0..n)
            .map(|i| {
                let t = i as f64 / 8000.0;
                (amplitude as f64 * (2.0 * std::f64::consts::PI * hz * t).sin()) as i16
            })
            .collect();
        Prompt::from_samples(name, &samples)
    }

    /// Silence of the given length (a pause between prompts).
    pub fn silence(length: Duration) -> Prompt {
        let n = (length.as_secs_f64() * 8000.0) as usize;
        Prompt::from_samples("silence", &vec![0; n])
    }

    /// The name (file stem).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The audio in one law.
    pub fn encoded(&self, law: Law) -> &[u8] {
        match law {
            Law::Mu => &self.pcmu,
            Law::A => &self.pcma,
        }
    }

    /// How long it plays.
    pub fn duration(&self) -> Duration {
        Duration::from_micros(self.pcmu.len() as u64 * 125)
    }
}

/// Resample `samples` from `from` Hz to `to` Hz: a windowed-sinc interpolator whose
/// low-pass sits at 90 % of the lower rate's Nyquist frequency (so speech keeps its
/// consonants and nothing above 3.6 kHz folds back into an 8 kHz prompt).
pub fn resample(samples: &[i16], from: u32, to: u32) -> Vec<i16> {
    if from == to || samples.is_empty() || from == 0 || to == 0 {
        return samples.to_vec();
    }
    let ratio = f64::from(from) / f64::from(to);
    // Cutoff as a fraction of the input rate.
    let cutoff = 0.45 * f64::from(from.min(to)) / f64::from(from);
    // Half-width of the kernel in input samples: 16 zero crossings of the filter.
    let half = (8.0 / cutoff).ceil() as i64;
    let out_len = ((samples.len() as f64) / ratio).floor() as usize;
    let pi = std::f64::consts::PI;
    let mut out = Vec::with_capacity(out_len);
    for n in 0..out_len {
        let t = n as f64 * ratio;
        let centre = t.floor() as i64;
        let mut acc = 0.0;
        for k in (centre - half + 1)..=(centre + half) {
            let Some(&x) = usize::try_from(k).ok().and_then(|k| samples.get(k)) else {
                continue;
            };
            let d = t - k as f64;
            let arg = 2.0 * cutoff * d;
            let sinc = if arg.abs() < 1e-12 {
                1.0
            } else {
                (pi * arg).sin() / (pi * arg)
            };
            // Blackman window over [-half, half].
            let w = d / half as f64;
            if w.abs() >= 1.0 {
                continue;
            }
            let window = 0.42 + 0.5 * (pi * w).cos() + 0.08 * (2.0 * pi * w).cos();
            acc += f64::from(x) * 2.0 * cutoff * sinc * window;
        }
        out.push(acc.round().clamp(f64::from(i16::MIN), f64::from(i16::MAX)) as i16);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_wav(path: &Path, rate: u32, channels: u16, samples: &[i16]) {
        let spec = hound::WavSpec {
            channels,
            sample_rate: rate,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        let mut w = hound::WavWriter::create(path, spec).unwrap();
        for s in samples {
            w.write_sample(*s).unwrap();
        }
        w.finalize().unwrap();
    }

    #[test]
    fn loads_8k_mono_and_refuses_other_formats_naming_the_file() {
        let dir = std::env::temp_dir().join(format!("sb-prompt-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let good = dir.join("hello.wav");
        write_wav(&good, 8000, 1, &[0, 1000, -1000, 32_000]);
        let p = Prompt::load(&good).unwrap();
        assert_eq!(p.name(), "hello");
        assert_eq!(p.encoded(Law::Mu).len(), 4);
        assert_eq!(p.encoded(Law::A)[0], Law::A.silence());
        assert_eq!(p.duration(), Duration::from_micros(500));

        let wide = dir.join("wide.wav");
        write_wav(&wide, 16_000, 1, &[0; 10]);
        let e = Prompt::load(&wide).unwrap_err().to_string();
        assert!(e.contains("wide.wav") && e.contains("16000 Hz"), "{e}");
        let stereo = dir.join("stereo.wav");
        write_wav(&stereo, 8000, 2, &[0; 10]);
        assert!(Prompt::load(&stereo)
            .unwrap_err()
            .to_string()
            .contains("2 channels"));
        let missing = Prompt::load(&dir.join("nope.wav")).unwrap_err().to_string();
        assert!(missing.contains("nope.wav"), "{missing}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// Energy of `samples` at `hz` (8 kHz), by correlation with a sine and cosine.
    fn level_at(samples: &[i16], hz: f64) -> f64 {
        let (mut c, mut s) = (0.0, 0.0);
        for (i, x) in samples.iter().enumerate() {
            let ph = 2.0 * std::f64::consts::PI * hz * i as f64 / 8000.0;
            c += f64::from(*x) * ph.cos();
            s += f64::from(*x) * ph.sin();
        }
        2.0 * (c * c + s * s).sqrt() / samples.len() as f64
    }

    fn sine(hz: f64, rate: u32, secs: f64, amplitude: f64) -> Vec<i16> {
        (0..(f64::from(rate) * secs) as usize)
            .map(|i| {
                (amplitude * (2.0 * std::f64::consts::PI * hz * i as f64 / f64::from(rate)).sin())
                    as i16
            })
            .collect()
    }

    #[test]
    fn resampling_keeps_speech_frequencies_and_removes_what_would_alias() {
        // 1 kHz and 300 Hz survive 22,050 -> 8,000 Hz at their level; 6 kHz (which would
        // fold back to 2 kHz) is gone.
        for hz in [300.0, 1000.0, 3000.0] {
            let out = resample(&sine(hz, 22_050, 1.0, 10_000.0), 22_050, 8000);
            assert!((out.len() as i64 - 8000).abs() <= 1, "{}", out.len());
            let level = level_at(&out[400..7600], hz);
            assert!((level - 10_000.0).abs() < 600.0, "{hz} Hz at {level}");
        }
        let out = resample(&sine(6000.0, 22_050, 1.0, 10_000.0), 22_050, 8000);
        let alias = level_at(&out[400..7600], 2000.0);
        assert!(alias < 200.0, "6 kHz folded to 2 kHz at {alias}");
        let p = Prompt::from_samples_at("x", &sine(1000.0, 44_100, 0.5, 8000.0), 44_100);
        assert_eq!(p.duration(), Duration::from_millis(500));
    }

    #[test]
    fn tone_has_the_requested_length() {
        let t = Prompt::tone("beep", 1000.0, Duration::from_millis(200), 8000);
        assert_eq!(t.encoded(Law::Mu).len(), 1600);
        assert!(t.encoded(Law::Mu).iter().any(|&c| c != Law::Mu.silence()));
    }
}
