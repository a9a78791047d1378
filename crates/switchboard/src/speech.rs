//! Prompts from text: an admin writes `say = "For sales, press 1"` instead of recording a WAV
//! file, and the offline synthesizer `espeak-ng` renders it when the config is loaded. Each
//! text is rendered once per process (a reload re-renders only what changed); the result is
//! resampled to 8 kHz like any prompt.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Command;
use std::sync::{Mutex, OnceLock};

use pbx::media::prompt::Prompt;

/// Which voice and how fast (words per minute).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct Voice {
    pub(crate) name: String,
    pub(crate) speed: u32,
}

impl Default for Voice {
    fn default() -> Self {
        Voice {
            name: "en".into(),
            speed: 150,
        }
    }
}

type Cache = Mutex<HashMap<(Voice, String), Prompt>>;

fn cache() -> &'static Cache {
    static CACHE: OnceLock<Cache> = OnceLock::new();
    CACHE.get_or_init(Default::default)
}

/// `text` spoken by `voice` as a prompt named `name`, or a sentence saying why not.
pub(crate) fn say(name: &str, text: &str, voice: &Voice) -> Result<Prompt, String> {
    let text = text.trim();
    if text.is_empty() {
        return Err("is empty: write what the caller should hear".into());
    }
    let key = (voice.clone(), text.to_owned());
    if let Some(p) = cache().lock().ok().and_then(|c| c.get(&key).cloned()) {
        return Ok(p);
    }
    let p = render(name, text, voice)?;
    if let Ok(mut c) = cache().lock() {
        c.insert(key, p.clone());
    }
    Ok(p)
}

fn render(name: &str, text: &str, voice: &Voice) -> Result<Prompt, String> {
    static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let seq = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let out: PathBuf =
        std::env::temp_dir().join(format!("switchboard-say-{}-{seq}.wav", std::process::id()));
    let run = Command::new("espeak-ng")
        .arg("-v")
        .arg(&voice.name)
        .arg("-s")
        .arg(voice.speed.to_string())
        .arg("-w")
        .arg(&out)
        // The text as one argument after "--": never read as an option.
        .arg("--")
        .arg(text)
        .output();
    let result = match run {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(
            "text prompts need the speech synthesizer espeak-ng (apt install espeak-ng), or give a WAV file instead"
                .to_owned(),
        ),
        Err(e) => Err(format!("espeak-ng could not be started: {e}")),
        Ok(o) if !o.status.success() || !out.exists() => Err(format!(
            "espeak-ng failed ({}): {}",
            o.status,
            String::from_utf8_lossy(&o.stderr).trim()
        )),
        Ok(_) => read(name, &out),
    };
    let _ = std::fs::remove_file(&out);
    result
}

fn read(name: &str, path: &std::path::Path) -> Result<Prompt, String> {
    let reader =
        hound::WavReader::open(path).map_err(|e| format!("espeak-ng wrote no usable WAV: {e}"))?;
    let spec = reader.spec();
    if spec.channels != 1 || spec.bits_per_sample != 16 {
        return Err(format!(
            "espeak-ng wrote {} channels of {} bits; expected mono 16-bit",
            spec.channels, spec.bits_per_sample
        ));
    }
    let samples: Vec<i16> = reader
        .into_samples::<i16>()
        .collect::<Result<_, _>>()
        .map_err(|e| format!("espeak-ng's WAV is damaged: {e}"))?;
    if samples.is_empty() {
        return Err("espeak-ng produced no audio".into());
    }
    Ok(Prompt::from_samples_at(name, &samples, spec.sample_rate))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_spoken_at_8_khz_and_rendered_once() {
        if Command::new("espeak-ng").arg("--version").output().is_err() {
            assert!(
                std::env::var_os("CI").is_none(),
                "espeak-ng is missing (apt install espeak-ng)"
            );
            eprintln!("SKIPPED: espeak-ng is not installed");
            return;
        }
        let v = Voice::default();
        let p = say("menu", "For sales, press one.", &v).unwrap();
        let length = p.duration();
        assert!(
            length > std::time::Duration::from_millis(800)
                && length < std::time::Duration::from_secs(5),
            "{length:?}"
        );
        // Speech, not silence: a fair share of loud samples.
        let mut pcm = Vec::new();
        pbx::media::recorder::g711::Law::Mu
            .decode_into(p.encoded(pbx::media::recorder::g711::Law::Mu), &mut pcm);
        let loud = pcm.iter().filter(|s| s.unsigned_abs() > 1000).count();
        assert!(loud * 10 > pcm.len(), "{loud} of {}", pcm.len());
        // The second time comes from the cache: the very same audio.
        assert_eq!(say("menu", " For sales, press one. ", &v).unwrap(), p);
        assert!(say("menu", "  ", &v).unwrap_err().contains("empty"));
    }
}
