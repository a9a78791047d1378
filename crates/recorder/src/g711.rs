//! G.711 companding (ITU-T G.711): µ-law for PCMU (RTP payload type 0) and A-law for PCMA
//! (payload type 8), between 8-bit code words and 16-bit linear samples.
//!
//! Decoding goes through 256-entry tables built at compile time; encoding is the segment
//! search of the standard, a handful of integer operations per sample.

/// Which G.711 law.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Law {
    /// µ-law (North America, Japan): RTP payload type 0, "PCMU".
    Mu,
    /// A-law (Europe, most of the world): RTP payload type 8, "PCMA".
    A,
}

impl Law {
    /// The static RTP payload type (RFC 3551).
    pub const fn payload_type(self) -> u8 {
        match self {
            Law::Mu => 0,
            Law::A => 8,
        }
    }

    /// The law of a static payload type, if it is one of the two.
    pub const fn from_payload_type(pt: u8) -> Option<Law> {
        match pt {
            0 => Some(Law::Mu),
            8 => Some(Law::A),
            _ => None,
        }
    }

    /// Encode one linear sample.
    pub fn encode(self, sample: i16) -> u8 {
        match self {
            Law::Mu => mulaw_encode(sample),
            Law::A => alaw_encode(sample),
        }
    }

    /// Decode one code word.
    pub fn decode(self, code: u8) -> i16 {
        match self {
            Law::Mu => MULAW_TABLE[code as usize],
            Law::A => ALAW_TABLE[code as usize],
        }
    }

    /// The code word of silence (what a decoder turns into 0 or the value nearest to it).
    pub const fn silence(self) -> u8 {
        match self {
            Law::Mu => 0xFF,
            Law::A => 0xD5,
        }
    }

    /// Encode a block of samples, appending to `out`.
    pub fn encode_into(self, samples: &[i16], out: &mut Vec<u8>) {
        out.extend(samples.iter().map(|&s| self.encode(s)));
    }

    /// Decode a block of code words, appending to `out`.
    pub fn decode_into(self, codes: &[u8], out: &mut Vec<i16>) {
        let table = match self {
            Law::Mu => &MULAW_TABLE,
            Law::A => &ALAW_TABLE,
        };
        out.extend(codes.iter().map(|&c| table[c as usize]));
    }
}

const MU_BIAS: i32 = 0x84;
const MU_CLIP: i32 = 32_635;

fn mulaw_encode(sample: i16) -> u8 {
    let mut s = sample as i32;
    let sign = if s < 0 {
        s = -s;
        0x80
    } else {
        0
    };
    s = s.min(MU_CLIP) + MU_BIAS;
    // Segment: position of the highest set bit above bit 7.
    let exponent = (31 - (s as u32).leading_zeros()) as i32 - 7;
    let mantissa = (s >> (exponent + 3)) & 0x0F;
    !(sign | (exponent << 4) as u8 as i32 | mantissa) as u8
}

const fn mulaw_decode(code: u8) -> i16 {
    let c = !code;
    let sign = c & 0x80;
    let exponent = ((c >> 4) & 0x07) as i32;
    let mantissa = (c & 0x0F) as i32;
    let magnitude = (((mantissa << 3) + MU_BIAS) << exponent) - MU_BIAS;
    if sign != 0 {
        -magnitude as i16
    } else {
        magnitude as i16
    }
}

fn alaw_encode(sample: i16) -> u8 {
    // A-law works on 13-bit magnitudes.
    let mut s = (sample as i32) >> 3;
    let sign = if s >= 0 {
        0x80
    } else {
        s = -s - 1;
        0
    };
    let s = s.min(0x0FFF);
    let code = if s < 32 {
        (s >> 1) as u8
    } else {
        let exponent = (31 - (s as u32).leading_zeros()) as i32 - 4;
        let mantissa = (s >> exponent) & 0x0F;
        ((exponent << 4) | mantissa) as u8
    };
    (code | sign) ^ 0x55
}

const fn alaw_decode(code: u8) -> i16 {
    let c = code ^ 0x55;
    let exponent = ((c >> 4) & 0x07) as i32;
    let mantissa = (c & 0x0F) as i32;
    let magnitude = if exponent == 0 {
        (mantissa << 4) + 8
    } else {
        ((mantissa << 4) + 0x108) << (exponent - 1)
    };
    if c & 0x80 != 0 {
        magnitude as i16
    } else {
        -magnitude as i16
    }
}

const fn table(law: Law) -> [i16; 256] {
    let mut t = [0i16; 256];
    let mut i = 0;
    while i < 256 {
        t[i] = match law {
            Law::Mu => mulaw_decode(i as u8),
            Law::A => alaw_decode(i as u8),
        };
        i += 1;
    }
    t
}

static MULAW_TABLE: [i16; 256] = table(Law::Mu);
static ALAW_TABLE: [i16; 256] = table(Law::A);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_code_words() {
        // Reference points of G.711: silence codes and full scale.
        assert_eq!(Law::Mu.decode(0xFF), 0);
        assert_eq!(Law::Mu.decode(0x7F), 0);
        assert_eq!(Law::Mu.decode(0x00), -32_124);
        assert_eq!(Law::Mu.decode(0x80), 32_124);
        assert_eq!(Law::A.decode(0xD5), 8);
        assert_eq!(Law::A.decode(0x55), -8);
        assert_eq!(Law::A.decode(0xAA), 32_256);
        assert_eq!(Law::A.decode(0x2A), -32_256);
        assert_eq!(Law::Mu.encode(0), 0xFF);
        assert_eq!(Law::A.encode(0), 0xD5);
        assert_eq!(Law::Mu.encode(i16::MAX), 0x80);
        assert_eq!(Law::Mu.encode(i16::MIN), 0x00);
        assert_eq!(Law::A.encode(i16::MAX), 0xAA);
        assert_eq!(Law::A.encode(i16::MIN), 0x2A);
    }

    #[test]
    fn every_code_word_round_trips() {
        for law in [Law::Mu, Law::A] {
            for c in 0..=255u8 {
                let s = law.decode(c);
                let back = law.encode(s);
                // µ-law has two zeros (0x7F and 0xFF); both decode to 0 and encode to 0xFF.
                if law == Law::Mu && c == 0x7F {
                    assert_eq!(back, 0xFF);
                } else {
                    assert_eq!(back, c, "{law:?} code {c:#04x} -> {s} -> {back:#04x}");
                }
            }
        }
    }

    #[test]
    fn quantisation_error_stays_within_the_segment_step() {
        for law in [Law::Mu, Law::A] {
            for s in (i16::MIN..=i16::MAX).step_by(7) {
                let d = law.decode(law.encode(s)) as i32;
                let err = (d - s as i32).abs();
                // The largest step of either law is 1024 (µ) / 1024 (A) at full scale: half a
                // step plus the clipping at the top.
                let bound = (s as i32).abs() / 16 + 16;
                assert!(err <= bound.max(520), "{law:?} {s} -> {d} (err {err})");
            }
        }
    }
}
