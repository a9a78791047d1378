//! Any Authorization / Proxy-Authorization value: parsing and verification against a real
//! challenge never panic, and garbage never verifies.
#![no_main]

use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use sip::digest::{parse_credentials, Algorithm, Authenticator, UserSecret, Verdict};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(creds) = parse_credentials(text) else {
        return;
    };
    let t0 = Instant::now();
    let mut auth = Authenticator::new([7; 32], Duration::from_secs(300), t0);
    let _ = auth.challenges(t0, "switchboard", &[Algorithm::Sha256, Algorithm::Md5], false);
    let verdict = auth.verify(
        t0,
        "REGISTER",
        "switchboard",
        &[Algorithm::Sha256, Algorithm::Md5],
        &creds,
        &UserSecret::Password("a secret the input cannot know".into()),
    );
    assert!(!matches!(verdict, Verdict::Ok), "garbage verified");
});
