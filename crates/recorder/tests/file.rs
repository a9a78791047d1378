//! Recording files: what a finished recording looks like on disk, and repair after a crash.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use recorder::file::{repair, RecordingFile, Sidecar};
use sha2::{Digest, Sha256};

fn tmp(label: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!(
        "sb-rec-{label}-{}-{}",
        std::process::id(),
        SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos()
    ));
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn sidecar(call: u64) -> Sidecar {
    Sidecar {
        call_id: call,
        queue: "support".into(),
        caller: "+15551234".into(),
        agent: "1001".into(),
        codec: "PCMU".into(),
        start: "2026-11-23T10:00:00.000Z".into(),
        end: None,
        duration: 0.0,
        pauses: Vec::new(),
        channels: "left: caller, right: agent".into(),
        dropped_frames: 0,
        sha256: None,
        repaired: false,
        mailbox: None,
    }
}

/// One second of stereo: left counts up, right counts down.
fn second(k: i16) -> Vec<i16> {
    (0..8000)
        .flat_map(|i| [k + (i % 100) as i16, -k - (i % 100) as i16])
        .collect()
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

#[test]
fn a_finished_recording_is_a_stereo_wav_with_a_matching_sidecar() {
    let root = tmp("finish");
    let dir = root.join("2026/11/23");
    let t0 = Instant::now();
    let mut f = RecordingFile::create(&dir, "call7", sidecar(7), t0).unwrap();
    f.write(&second(1000)).unwrap();
    f.write(&second(2000)).unwrap();
    let (wav, sc) = f.finish(SystemTime::now(), vec![(0.5, 0.7)], 3).unwrap();
    assert_eq!(wav, dir.join("call7.wav"));
    let mut r = hound::WavReader::open(&wav).unwrap();
    let spec = r.spec();
    assert_eq!(
        (spec.channels, spec.sample_rate, spec.bits_per_sample),
        (2, 8000, 16)
    );
    let samples: Vec<i16> = r.samples::<i16>().map(Result::unwrap).collect();
    assert_eq!(samples.len(), 2 * 16_000);
    assert_eq!(&samples[..4], &[1000, -1000, 1001, -1001]);
    assert_eq!(samples[16_000], 2000);
    // The sidecar on disk says what the call was and hashes the file.
    let json: Sidecar =
        serde_json::from_slice(&std::fs::read(dir.join("call7.json")).unwrap()).unwrap();
    assert_eq!(json, sc);
    assert_eq!(
        (json.call_id, json.queue.as_str(), json.agent.as_str()),
        (7, "support", "1001")
    );
    assert!((json.duration - 2.0).abs() < 1e-9);
    assert_eq!(json.pauses, vec![(0.5, 0.7)]);
    assert_eq!(json.dropped_frames, 3);
    assert!(json.end.is_some() && !json.repaired);
    let hash: String = Sha256::digest(std::fs::read(&wav).unwrap())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(json.sha256.as_deref(), Some(hash.as_str()));
    // Personal data: files 0640, folders 0750; no leftovers.
    assert_eq!(mode(&wav), 0o640);
    assert_eq!(mode(&dir.join("call7.json")), 0o640);
    assert_eq!(mode(&dir), 0o750);
    assert_eq!(mode(&root.join("2026")), 0o750);
    let names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names.len(), 2, "{names:?}");
    std::fs::remove_dir_all(&root).unwrap();
}

#[test]
fn a_recording_cut_off_by_a_crash_is_repaired_into_a_playable_wav() {
    let root = tmp("crash");
    let dir = root.join("2026/11/23");
    let t0 = Instant::now();
    let mut f = RecordingFile::create(&dir, "call8", sidecar(8), t0).unwrap();
    f.write(&second(100)).unwrap();
    f.write(&second(200)).unwrap();
    f.flush_if_due(t0 + Duration::from_secs(5), Duration::from_secs(2))
        .unwrap();
    f.write(&second(300)).unwrap(); // after the last header update
                                    // The process dies: nothing is finalized, no destructor runs.
    std::mem::forget(f);
    assert!(dir.join("call8.wav.part").exists());
    // A truncated trailing frame (the kill landed mid-write) is cut off too.
    {
        use std::io::Write;
        let mut p = std::fs::OpenOptions::new()
            .append(true)
            .open(dir.join("call8.wav.part"))
            .unwrap();
        p.write_all(&[1, 2, 3]).unwrap();
    }
    let (done, failed) = repair(&root);
    assert!(failed.is_empty(), "{failed:?}");
    assert_eq!(done, vec![dir.join("call8.wav")]);
    let r = hound::WavReader::open(dir.join("call8.wav")).unwrap();
    let samples: Vec<i16> = r.into_samples::<i16>().map(Result::unwrap).collect();
    // The audio up to the last header update (2 s) is all there; what was still in the
    // writer's buffer when the process died (the third second) may or may not be.
    assert!(samples.len() >= 2 * 16_000, "{} samples", samples.len());
    assert_eq!(samples.len() % 2, 0);
    assert_eq!(&samples[..2], &[100, -100]);
    assert_eq!(&samples[2 * 8000..2 * 8000 + 2], &[200, -200]);
    let json: Sidecar =
        serde_json::from_slice(&std::fs::read(dir.join("call8.json")).unwrap()).unwrap();
    assert!(json.repaired);
    assert_eq!(json.call_id, 8, "what was known at the start is kept");
    assert!((json.duration - samples.len() as f64 / 16_000.0).abs() < 1e-9);
    assert!(json.sha256.is_some());
    assert!(!dir.join("call8.json.part").exists());
    // Repair is idempotent: nothing left to do.
    let (again, failed) = repair(&root);
    assert!(again.is_empty() && failed.is_empty());
    // Something that is not a WAV is reported, not touched.
    std::fs::write(dir.join("junk.wav.part"), b"hello").unwrap();
    let (_, failed) = repair(&root);
    assert_eq!(failed.len(), 1);
    assert!(failed[0].to_string().contains("junk.wav.part"));
    std::fs::remove_dir_all(&root).unwrap();
}
