//! Any TCP byte stream, cut at arbitrary points: the framer must never panic or loop.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sip::parse::{parse_message, Framed, StreamFramer};

fuzz_target!(|data: &[u8]| {
    let Some((&cut, rest)) = data.split_first() else {
        return;
    };
    let cut = (cut as usize).min(rest.len());
    let mut f = StreamFramer::new(4096);
    for chunk in [&rest[..cut], &rest[cut..]] {
        f.push(chunk);
        loop {
            match f.next_item() {
                Ok(Some(Framed::Message(m))) => {
                    let _ = parse_message(&m, 4096);
                }
                Ok(Some(Framed::Ping)) => {}
                Ok(None) | Err(_) => break,
            }
        }
    }
});
