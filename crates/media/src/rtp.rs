//! The few RTP facts the relay needs, read straight from the packet bytes (RFC 3550 §5.1):
//! version, marker, payload type, sequence number, timestamp, SSRC and where the payload
//! starts. Nothing is copied or validated beyond that (the relay rewrites only the fixed header,
//! see [`crate::stream`]). Plus RFC 4733 telephone-event payloads, and [`Packetizer`], a
//! minimal sender of its own stream (what a test phone sends).

/// Fixed RTP header length.
pub const HEADER_LEN: usize = 12;

/// A view of an RTP packet's header fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RtpHeader {
    /// Marker bit.
    pub marker: bool,
    /// Payload type (7 bits).
    pub payload_type: u8,
    /// Sequence number.
    pub seq: u16,
    /// Timestamp.
    pub timestamp: u32,
    /// Synchronisation source.
    pub ssrc: u32,
    /// Offset of the payload (after CSRCs and any header extension).
    pub payload_offset: usize,
    /// Payload length (padding excluded).
    pub payload_len: usize,
}

/// Read the header of an RTP packet; `None` when it is not RTP version 2 or is truncated.
pub fn parse_header(p: &[u8]) -> Option<RtpHeader> {
    if p.len() < HEADER_LEN || p[0] >> 6 != 2 {
        return None;
    }
    let csrc = (p[0] & 0x0F) as usize;
    let mut off = HEADER_LEN + 4 * csrc;
    if p[0] & 0x10 != 0 {
        // Header extension: 16-bit profile, 16-bit length in 32-bit words.
        let len = u16::from_be_bytes([*p.get(off + 2)?, *p.get(off + 3)?]) as usize;
        off += 4 + 4 * len;
    }
    let mut end = p.len();
    if p[0] & 0x20 != 0 {
        let pad = *p.last()? as usize;
        end = end.checked_sub(pad)?;
    }
    if off > end {
        return None;
    }
    Some(RtpHeader {
        marker: p[1] & 0x80 != 0,
        payload_type: p[1] & 0x7F,
        seq: u16::from_be_bytes([p[2], p[3]]),
        timestamp: u32::from_be_bytes([p[4], p[5], p[6], p[7]]),
        ssrc: u32::from_be_bytes([p[8], p[9], p[10], p[11]]),
        payload_offset: off,
        payload_len: end - off,
    })
}

/// True when the bytes look like RTCP rather than RTP (payload types 72–76 with the marker
/// set are RTCP packet types 200–204, RFC 5761 §4), for ports that carry both.
pub fn looks_like_rtcp(p: &[u8]) -> bool {
    p.len() >= 8 && p[0] >> 6 == 2 && (200..=204).contains(&p[1])
}

/// One RFC 4733 telephone-event payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TelephoneEvent {
    /// Event code (0–9 digits, 10 `*`, 11 `#`, 12–15 A–D).
    pub event: u8,
    /// The E bit: last packet(s) of the event.
    pub end: bool,
    /// Volume in -dBm0.
    pub volume: u8,
    /// Duration so far, in timestamp units.
    pub duration: u16,
}

impl TelephoneEvent {
    /// Parse the 4-byte payload.
    pub fn parse(payload: &[u8]) -> Option<TelephoneEvent> {
        if payload.len() < 4 {
            return None;
        }
        Some(TelephoneEvent {
            event: payload[0],
            end: payload[1] & 0x80 != 0,
            volume: payload[1] & 0x3F,
            duration: u16::from_be_bytes([payload[2], payload[3]]),
        })
    }

    /// The DTMF key of this event, if it is one.
    pub fn digit(&self) -> Option<char> {
        Some(match self.event {
            0..=9 => (b'0' + self.event) as char,
            10 => '*',
            11 => '#',
            12..=15 => (b'A' + self.event - 12) as char,
            _ => return None,
        })
    }
}

/// The sending state of a stream we originate (prompts, music on hold): SSRC, sequence
/// number and timestamp that continue across prompts, as a receiver's jitter buffer expects.
#[derive(Debug, Clone)]
pub struct Packetizer {
    ssrc: u32,
    seq: u16,
    timestamp: u32,
    marker_next: bool,
}

/// Samples per 20 ms packet at 8 kHz.
pub const SAMPLES_PER_PACKET: usize = 160;

impl Packetizer {
    /// A stream with this SSRC and random starting sequence number and timestamp (RFC 3550
    /// §5.1 wants them unpredictable).
    pub fn new(ssrc: u32, seq: u16, timestamp: u32) -> Packetizer {
        Packetizer {
            ssrc,
            seq,
            timestamp,
            marker_next: true,
        }
    }

    /// The next packet starts a talkspurt (marker bit), e.g. a new prompt.
    pub fn mark(&mut self) {
        self.marker_next = true;
    }

    /// Skip `samples` of time without sending (keeps the timestamp on the wall clock).
    pub fn skip(&mut self, samples: u32) {
        self.timestamp = self.timestamp.wrapping_add(samples);
    }

    /// Build the next packet carrying `payload` (one 20 ms frame) with payload type `pt`.
    pub fn packet(&mut self, pt: u8, payload: &[u8], out: &mut Vec<u8>) {
        out.clear();
        out.push(0x80);
        out.push(if self.marker_next { 0x80 | pt } else { pt });
        out.extend_from_slice(&self.seq.to_be_bytes());
        out.extend_from_slice(&self.timestamp.to_be_bytes());
        out.extend_from_slice(&self.ssrc.to_be_bytes());
        out.extend_from_slice(payload);
        self.marker_next = false;
        self.seq = self.seq.wrapping_add(1);
        self.timestamp = self.timestamp.wrapping_add(SAMPLES_PER_PACKET as u32);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_fields_extension_and_padding() {
        let mut p = Packetizer::new(0xDEADBEEF, 65_535, u32::MAX - 100);
        let mut buf = Vec::new();
        p.packet(8, &[0xD5; 160], &mut buf);
        let h = parse_header(&buf).unwrap();
        assert!(h.marker);
        assert_eq!(
            (h.payload_type, h.seq, h.timestamp, h.ssrc),
            (8, 65_535, u32::MAX - 100, 0xDEADBEEF)
        );
        assert_eq!((h.payload_offset, h.payload_len), (12, 160));
        p.packet(8, &[0xD5; 160], &mut buf);
        let h = parse_header(&buf).unwrap();
        assert!(!h.marker);
        assert_eq!((h.seq, h.timestamp), (0, 59), "both wrap");

        // One CSRC, a one-word extension and 4 octets of padding.
        let mut q = vec![0x80 | 0x20 | 0x10 | 1, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 2];
        q.extend_from_slice(&[0, 0, 0, 9]); // CSRC
        q.extend_from_slice(&[0xBE, 0xDE, 0, 1, 1, 2, 3, 4]); // extension
        q.extend_from_slice(&[7, 7, 7]); // payload
        q.extend_from_slice(&[0, 0, 0, 4]); // padding
        let h = parse_header(&q).unwrap();
        assert_eq!((h.payload_offset, h.payload_len), (24, 3));
        assert!(parse_header(&[0x40; 20]).is_none(), "version 1");
        assert!(parse_header(&[0x80; 5]).is_none(), "short");
        let mut bad = q.clone();
        *bad.last_mut().unwrap() = 200;
        assert!(
            parse_header(&bad).is_none(),
            "padding longer than the packet"
        );
    }

    #[test]
    fn telephone_events() {
        let e = TelephoneEvent::parse(&[11, 0x80 | 10, 0x03, 0x20]).unwrap();
        assert_eq!(e.digit(), Some('#'));
        assert!(e.end);
        assert_eq!((e.volume, e.duration), (10, 800));
        assert_eq!(
            TelephoneEvent::parse(&[5, 0, 0, 0]).unwrap().digit(),
            Some('5')
        );
        assert_eq!(
            TelephoneEvent::parse(&[13, 0, 0, 0]).unwrap().digit(),
            Some('B')
        );
        assert_eq!(TelephoneEvent::parse(&[40, 0, 0, 0]).unwrap().digit(), None);
        assert!(TelephoneEvent::parse(&[1, 2]).is_none());
    }

    #[test]
    fn rtcp_is_told_apart() {
        assert!(looks_like_rtcp(&[0x80, 200, 0, 6, 0, 0, 0, 1]));
        assert!(!looks_like_rtcp(&[0x80, 0, 0, 6, 0, 0, 0, 1]));
    }
}
