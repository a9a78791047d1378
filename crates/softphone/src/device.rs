//! The sound card (cargo feature `sound-card`, through `cpal`): the default microphone as
//! the phone's source and the default loudspeaker for what the jitter buffer plays, each
//! resampled between the device's rate and G.711's 8 kHz. Without a device (a server, a
//! container) [`SoundCard::open`] says why and the phone carries on silent; it never
//! panics.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use cpal::traits::{DeviceTrait, HostTrait, StreamTrait};

use crate::audio::RATE;

/// Samples waiting between the device's thread and the phone's, at the device's rate.
type Ring = Arc<Mutex<VecDeque<i16>>>;

/// At most this much audio waits in either direction (older samples are dropped): 200 ms.
const MAX_WAITING_MS: usize = 200;

/// The open microphone and loudspeaker.
pub struct SoundCard {
    _input: cpal::Stream,
    _output: cpal::Stream,
    mic: Ring,
    speaker: Ring,
    mic_rate: u32,
    speaker_rate: u32,
    /// What the devices are, for the user.
    pub description: String,
}

impl std::fmt::Debug for SoundCard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SoundCard")
            .field("description", &self.description)
            .finish_non_exhaustive()
    }
}

fn push_capped(ring: &Ring, samples: impl Iterator<Item = i16>, rate: u32) {
    let cap = rate as usize * MAX_WAITING_MS / 1000;
    let mut r = ring.lock().unwrap_or_else(|e| e.into_inner());
    r.extend(samples);
    while r.len() > cap {
        r.pop_front();
    }
}

impl SoundCard {
    /// Open the default input and output devices; why not, when there are none or they
    /// cannot be opened.
    pub fn open() -> Result<SoundCard, String> {
        let host = cpal::default_host();
        let input = host
            .default_input_device()
            .ok_or("no microphone (no default input device)")?;
        let output = host
            .default_output_device()
            .ok_or("no loudspeaker (no default output device)")?;
        let in_cfg = input
            .default_input_config()
            .map_err(|e| format!("the microphone: {e}"))?;
        let out_cfg = output
            .default_output_config()
            .map_err(|e| format!("the loudspeaker: {e}"))?;
        let mic: Ring = Arc::default();
        let speaker: Ring = Arc::default();
        let (mic_rate, in_channels) = (in_cfg.sample_rate(), usize::from(in_cfg.channels()));
        let (speaker_rate, out_channels) = (out_cfg.sample_rate(), usize::from(out_cfg.channels()));
        let err = |e: cpal::Error| eprintln!("sound card: {e}");
        let ring = mic.clone();
        let input_stream = match in_cfg.sample_format() {
            cpal::SampleFormat::F32 => input.build_input_stream(
                in_cfg.config(),
                move |data: &[f32], _: &cpal::InputCallbackInfo| {
                    let first = data.iter().step_by(in_channels.max(1));
                    push_capped(
                        &ring,
                        first.map(|s| (s.clamp(-1.0, 1.0) * 32767.0) as i16),
                        mic_rate,
                    );
                },
                err,
                None,
            ),
            cpal::SampleFormat::I16 => input.build_input_stream(
                in_cfg.config(),
                move |data: &[i16], _: &cpal::InputCallbackInfo| {
                    push_capped(
                        &ring,
                        data.iter().step_by(in_channels.max(1)).copied(),
                        mic_rate,
                    );
                },
                err,
                None,
            ),
            other => {
                return Err(format!(
                    "the microphone's sample format {other:?} is not supported"
                ))
            }
        }
        .map_err(|e| format!("the microphone: {e}"))?;
        let ring = speaker.clone();
        let next = move || {
            ring.lock()
                .map(|mut r| r.pop_front().unwrap_or(0))
                .unwrap_or(0)
        };
        let output_stream = match out_cfg.sample_format() {
            cpal::SampleFormat::F32 => output.build_output_stream(
                out_cfg.config(),
                move |data: &mut [f32], _: &cpal::OutputCallbackInfo| {
                    for frame in data.chunks_mut(out_channels.max(1)) {
                        let s = f32::from(next()) / 32768.0;
                        frame.fill(s);
                    }
                },
                err,
                None,
            ),
            cpal::SampleFormat::I16 => output.build_output_stream(
                out_cfg.config(),
                move |data: &mut [i16], _: &cpal::OutputCallbackInfo| {
                    for frame in data.chunks_mut(out_channels.max(1)) {
                        frame.fill(next());
                    }
                },
                err,
                None,
            ),
            other => {
                return Err(format!(
                    "the loudspeaker's sample format {other:?} is not supported"
                ))
            }
        }
        .map_err(|e| format!("the loudspeaker: {e}"))?;
        input_stream
            .play()
            .map_err(|e| format!("the microphone: {e}"))?;
        output_stream
            .play()
            .map_err(|e| format!("the loudspeaker: {e}"))?;
        Ok(SoundCard {
            _input: input_stream,
            _output: output_stream,
            mic,
            speaker,
            mic_rate,
            speaker_rate,
            description: format!("microphone at {mic_rate} Hz, loudspeaker at {speaker_rate} Hz"),
        })
    }

    /// The microphone's next 20 ms at 8 kHz (silence where the device has not delivered).
    pub fn read_frame(&self, out: &mut [i16]) {
        let want = self.mic_rate as usize / 50;
        let chunk: Vec<i16> = {
            let mut r = self.mic.lock().unwrap_or_else(|e| e.into_inner());
            let n = want.min(r.len());
            r.drain(..n).collect()
        };
        let resampled = media::prompt::resample(&chunk, self.mic_rate, RATE);
        for (i, s) in out.iter_mut().enumerate() {
            *s = resampled.get(i).copied().unwrap_or(0);
        }
    }

    /// Play these 8 kHz samples.
    pub fn play(&self, samples: &[i16]) {
        let up = media::prompt::resample(samples, RATE, self.speaker_rate);
        push_capped(&self.speaker, up.into_iter(), self.speaker_rate);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// On a machine without sound hardware (this project's CI) opening says why instead of
    /// panicking; with hardware, it opens.
    #[test]
    fn opening_without_a_device_is_an_error_not_a_panic() {
        match SoundCard::open() {
            Ok(card) => assert!(card.description.contains("Hz")),
            Err(why) => assert!(!why.is_empty()),
        }
    }
}
