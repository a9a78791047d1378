//! A `.wav.part` left by a crash can hold anything: a torn header, a cut chunk, junk. Repair
//! never panics on it, and whatever it calls repaired is a WAV a player opens and reads to
//! the end. The same inputs drive the `wav_repair` fuzz target in `fuzz/`.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};

use proptest::prelude::*;
use recorder::file::repair_one;

fn scratch() -> PathBuf {
    static N: AtomicU64 = AtomicU64::new(0);
    let d = std::env::temp_dir().join(format!(
        "switchboard-repair-garbage-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Repair `bytes` as a `.wav.part`; when it says it repaired them, the WAV must read.
fn check(bytes: &[u8]) {
    let dir = scratch();
    let part = dir.join("call.wav.part");
    std::fs::write(&part, bytes).unwrap();
    if let Ok(wav) = repair_one(&part) {
        let mut r = hound::WavReader::open(&wav).expect("a repaired WAV opens");
        let n = r.samples::<i16>().filter(Result::is_ok).count();
        assert_eq!(
            n as u32,
            r.len(),
            "every sample the header promises is there"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// A canonical 44-byte stereo 16-bit 8 kHz header with the given sizes.
fn header(riff: u32, data: u32) -> Vec<u8> {
    let mut h = Vec::new();
    h.extend_from_slice(b"RIFF");
    h.extend_from_slice(&riff.to_le_bytes());
    h.extend_from_slice(b"WAVEfmt ");
    h.extend_from_slice(&16u32.to_le_bytes());
    h.extend_from_slice(&1u16.to_le_bytes());
    h.extend_from_slice(&2u16.to_le_bytes());
    h.extend_from_slice(&8000u32.to_le_bytes());
    h.extend_from_slice(&32000u32.to_le_bytes());
    h.extend_from_slice(&4u16.to_le_bytes());
    h.extend_from_slice(&16u16.to_le_bytes());
    h.extend_from_slice(b"data");
    h.extend_from_slice(&data.to_le_bytes());
    h
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 500, ..ProptestConfig::default() })]

    #[test]
    fn any_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
        check(&bytes);
    }

    #[test]
    fn a_header_as_a_crash_leaves_it(
        riff in any::<u32>(),
        data in any::<u32>(),
        cut in 0usize..44,
        body in proptest::collection::vec(any::<u8>(), 0..400),
    ) {
        let mut h = header(riff, data);
        // Cut inside the header, or keep it whole with any body after it.
        if cut < 40 {
            h.truncate(cut);
        }
        h.extend(body);
        check(&h);
    }

    #[test]
    fn odd_chunks_before_the_data(
        size in any::<u32>(),
        junk in proptest::collection::vec(any::<u8>(), 0..64),
        body in proptest::collection::vec(any::<u8>(), 0..200),
    ) {
        let mut h = header(0, 0);
        let data = h.split_off(36);
        h.extend_from_slice(b"LIST");
        h.extend_from_slice(&size.to_le_bytes());
        h.extend(junk);
        h.extend(data);
        h.extend(body);
        check(&h);
    }
}
