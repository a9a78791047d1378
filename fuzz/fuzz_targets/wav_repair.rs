//! Any `.wav.part` left by a crash: repair never panics, and a file it calls repaired opens
//! as a WAV and reads to the end.
#![no_main]

use libfuzzer_sys::fuzz_target;
use recorder::file::repair_one;

fuzz_target!(|data: &[u8]| {
    let dir = std::env::temp_dir().join(format!("switchboard-fuzz-repair-{}", std::process::id()));
    let _ = std::fs::create_dir_all(&dir);
    let part = dir.join("call.wav.part");
    let _ = std::fs::remove_file(dir.join("call.wav"));
    let _ = std::fs::remove_file(dir.join("call.json"));
    if std::fs::write(&part, data).is_err() {
        return;
    }
    if let Ok(wav) = repair_one(&part) {
        let mut r = hound::WavReader::open(&wav).expect("a repaired WAV opens");
        let n = r.samples::<i16>().filter(Result::is_ok).count();
        assert_eq!(n as u32, r.len());
    }
});
