//! Whom a leg accepts RTP from and sends RTP to: the defence against RTP bleed (a stranger who
//! sprays the port range and captures a leg before its phone speaks, CVE-2017-14099).
//!
//! A [`Latch`] belongs to one leg. Its rules, in order:
//!
//! 1. Packets from the leg's *source* (the address it has learned) are accepted.
//! 2. Packets from the address in the phone's SDP (the *signalled* address) are accepted at once,
//!    and it becomes the source: the phone is reachable there, there is no NAT in between. It
//!    takes the leg back from any other source at any time.
//! 3. Any other address is a *stranger*. It becomes the source only after a probation of
//!    [`PROBATION`] in-sequence RTP packets (version 2, one SSRC, consecutive sequence numbers:
//!    what a phone sends and a port scan does not), and only once the current source has gone
//!    silent for [`SILENCE`]. Before the first packet of a source arrives, the signalled address
//!    counts as the source, heard when it was signalled. Until a stranger becomes the source,
//!    its packets are dropped. That is how a phone behind NAT (its SDP carries its private
//!    address) is learned, and how a phone whose NAT mapping changes mid-call is learned again.
//! 4. An address of the host the phone's SIP comes from (its public address when it is behind
//!    NAT: [`Latch::signalling_host`]) is learned after the probation alone, without waiting
//!    for the silence, unless the source already is on that host.
//! 5. A leg whose phone is not expected to send (on hold) learns no stranger: its silence says
//!    nothing.
//!
//! A packet that is not RTP never counts towards a probation, and breaks the probation of the
//! address it came from. Packets go to the source, or to the signalled address until a source
//! is learned: never to an address on probation. A new signalled address (a re-INVITE that
//! moves the media) forgets the source and starts the learning again.
//!
//! RTCP follows RTP: it is accepted from the signalled RTCP address (the RTP port + 1) or from
//! the host the RTP source sends from, and our RTCP goes to where the phone's came from.
//!
//! Choices, and what they cost:
//!
//! - [`PROBATION`] is 3 packets (60 ms of audio). A scan that sends one packet per port, or the
//!   same packet again and again, never gets through; a phone behind NAT needs its first three
//!   packets, and loses them.
//! - [`SILENCE`] is 2 s: a phone sends every 20 ms, so 2 s without a packet means it is not
//!   there any more (or it suppresses silence, and then it wins the leg back the moment it speaks
//!   if it sends from its signalled address). A phone behind NAT sends from the host its SIP
//!   comes from and is learned after its first three packets; only a phone whose RTP leaves
//!   from another host than its SIP (a separate media gateway) waits out the 2 s.
//! - What it cannot do: a stranger that sends a well-formed RTP stream from another host to the
//!   port of a leg whose phone is behind NAT can be learned once that phone has been silent
//!   for 2 s (silence suppression), and one that forges the phone's public address as its
//!   source can be learned first (it would not hear the call: our audio goes to that address). Phones that put their public address in the SDP (STUN, ICE, a NAT-aware proxy)
//!   are not exposed to this: they take their leg back with their next packet.
//!
//! Sans-IO: time is an input, nothing here reads a clock or a socket.
//!
//! ```
//! use std::time::Instant;
//! use media::latch::{Admission, Latch};
//! let now = Instant::now();
//! let phone = "192.0.2.10:4000".parse().unwrap();
//! let mut latch = Latch::new(now);
//! latch.signal(now, Some(phone), true); // SessionCommand::Remote
//! let packet = [0x80, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 7];
//! assert!(matches!(latch.admit(now, phone, &packet), Admission::Learned(_)));
//! assert_eq!(latch.destination(), Some(phone));
//! ```

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use crate::rtp::{looks_like_rtcp, parse_header, RtpHeader};

/// In-sequence RTP packets an address other than the signalled one must send before it can
/// become a leg's source.
pub const PROBATION: u16 = 3;

/// How long a leg's source must have been silent before another address can take its place.
pub const SILENCE: Duration = Duration::from_secs(2);

/// Addresses on probation kept at once per leg (more evict the one with the shortest run).
const CANDIDATES: usize = 8;

/// Stranger addresses reported per leg (for one debug line each); the rest are only counted.
const REPORTED: usize = 8;

/// What to do with a packet that reached a leg's port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// From the leg's source: use it.
    Accept(RtpHeader),
    /// From an address that became the leg's source with this packet: use it, and send to
    /// [`Latch::destination`] from now on.
    Learned(RtpHeader),
    /// Drop it.
    Drop(Dropped),
}

/// Why a packet was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dropped {
    /// From an address the leg does not accept (a stranger, a stale call, a phone behind NAT
    /// still on probation). `report` is true for the first packet of an address, for the first
    /// few addresses of a leg only: enough to log without a flood.
    Stranger {
        /// Worth a log line.
        report: bool,
    },
    /// From the leg's own phone, but not RTP (or not RTCP on the RTCP port).
    Malformed,
}

/// An address on probation.
#[derive(Debug, Clone, Copy)]
struct Candidate {
    from: SocketAddr,
    ssrc: u32,
    next_seq: u16,
    /// In-sequence packets so far.
    run: u16,
    last: Instant,
}

/// Whom one leg accepts packets from and sends them to. See the module docs for the rules.
#[derive(Debug, Clone)]
pub struct Latch {
    /// The address of the phone's SDP.
    signalled: Option<SocketAddr>,
    /// Whether the phone is expected to send.
    sends: bool,
    /// The host the phone's signalling comes from.
    host: Option<IpAddr>,
    /// The address packets are accepted from.
    source: Option<SocketAddr>,
    /// When the source last sent, or when the phone last signalled if that is later.
    heard: Instant,
    /// Where the phone's RTCP comes from.
    rtcp: Option<SocketAddr>,
    candidates: Vec<Candidate>,
    reported: Vec<SocketAddr>,
}

impl Latch {
    /// A leg that has learned nothing and been told nothing yet (no stranger is learned in its
    /// first [`SILENCE`] either).
    pub fn new(now: Instant) -> Latch {
        Latch {
            signalled: None,
            sends: true,
            host: None,
            source: None,
            heard: now,
            rtcp: None,
            candidates: Vec::with_capacity(CANDIDATES),
            reported: Vec::new(),
        }
    }

    /// The phone's SDP: where it wants RTP (`None` while it holds us with 0.0.0.0) and whether
    /// it sends. A new address forgets the source and starts the learning again; the signalled
    /// address then has [`SILENCE`] to speak before a stranger can be learned.
    pub fn signal(&mut self, now: Instant, rtp: Option<SocketAddr>, sends: bool) {
        if rtp != self.signalled {
            self.signalled = rtp;
            self.source = None;
            self.rtcp = None;
            self.candidates.clear();
        }
        self.sends = sends;
        // The phone just spoke, in its signalling.
        self.heard = self.heard.max(now);
    }

    /// The host the phone's SIP comes from. A phone behind NAT sends its RTP from there (its
    /// SDP names its private address): an address of that host is learned after the
    /// probation alone, at the start of a call and after a change of NAT mapping, with no wait
    /// for the signalled address's silence. Another host still waits.
    pub fn signalling_host(&mut self, host: Option<IpAddr>) {
        self.host = host;
    }

    /// The address the leg accepts RTP from, once one is learned.
    pub fn source(&self) -> Option<SocketAddr> {
        self.source
    }

    /// Whether a packet from `from` could ever be accepted: from the host of the source, of the
    /// signalled address or of the signalling. Checked before an SRTP leg spends a decryption
    /// (and the SRTP stack keeps state) on a packet, so that a stranger elsewhere cannot make
    /// it grow.
    pub fn may_come_from(&self, from: SocketAddr) -> bool {
        let ip = from.ip();
        self.source.is_some_and(|s| s.ip() == ip)
            || self.signalled.is_some_and(|s| s.ip() == ip)
            || self.host == Some(ip)
    }

    /// Where the leg's RTP goes: the source, or before one is learned the signalled address.
    pub fn destination(&self) -> Option<SocketAddr> {
        self.source.or(self.signalled)
    }

    /// Where the leg's RTCP goes: where the phone's RTCP comes from, or the signalled RTCP
    /// address before any came.
    pub fn rtcp_destination(&self) -> Option<SocketAddr> {
        self.rtcp.or_else(|| self.signalled_rtcp())
    }

    fn signalled_rtcp(&self) -> Option<SocketAddr> {
        self.signalled
            .map(|a| SocketAddr::new(a.ip(), a.port().wrapping_add(1)))
    }

    /// Decide about an RTP packet from `from`. Strangers are decided before anything of the
    /// packet is used.
    pub fn admit(&mut self, now: Instant, from: SocketAddr, packet: &[u8]) -> Admission {
        let header = parse_header(packet).filter(|_| !looks_like_rtcp(packet));
        if Some(from) == self.source || Some(from) == self.signalled {
            let Some(h) = header else {
                return Admission::Drop(Dropped::Malformed);
            };
            self.heard = now;
            if Some(from) == self.source {
                return Admission::Accept(h);
            }
            self.learn(now, from);
            return Admission::Learned(h);
        }
        let run = match header {
            Some(h) => self.probation(now, from, &h),
            None => {
                // Not RTP: breaks the run of whoever sent it.
                self.candidates.retain(|c| c.from != from);
                0
            }
        };
        match header {
            Some(h) if run >= PROBATION && self.may_relearn(now, from) => {
                self.learn(now, from);
                Admission::Learned(h)
            }
            _ => Admission::Drop(self.stranger(from)),
        }
    }

    /// Decide about an RTCP packet from `from` (the leg's RTCP port).
    pub fn admit_rtcp(&mut self, from: SocketAddr, packet: &[u8]) -> Result<(), Dropped> {
        let known = Some(from) == self.rtcp
            || Some(from) == self.signalled_rtcp()
            || self.source.is_some_and(|s| s.ip() == from.ip());
        if !known {
            return Err(self.stranger(from));
        }
        if packet.len() < 8 || packet[0] >> 6 != 2 {
            return Err(Dropped::Malformed);
        }
        self.rtcp = Some(from);
        Ok(())
    }

    /// A stranger may be learned: the phone sends, and either it sends from the phone's
    /// signalling host (while the source is not already that host) or the source (or the
    /// signalled address) has been silent long enough.
    fn may_relearn(&self, now: Instant, from: SocketAddr) -> bool {
        if !self.sends {
            return false;
        }
        let from_host = self.host == Some(from.ip());
        let source_on_host = self.source.is_some_and(|s| Some(s.ip()) == self.host);
        (from_host && !source_on_host) || now.saturating_duration_since(self.heard) >= SILENCE
    }

    fn learn(&mut self, now: Instant, from: SocketAddr) {
        if self.source.map(|s| s.ip()) != Some(from.ip()) {
            self.rtcp = None;
        }
        self.source = Some(from);
        self.heard = now;
        self.candidates.clear();
    }

    /// Count a valid RTP packet towards `from`'s probation; the run it is on now.
    fn probation(&mut self, now: Instant, from: SocketAddr, h: &RtpHeader) -> u16 {
        let i = match self.candidates.iter().position(|c| c.from == from) {
            Some(i) => i,
            None => {
                let fresh = Candidate {
                    from,
                    ssrc: h.ssrc,
                    next_seq: h.seq,
                    run: 0,
                    last: now,
                };
                if self.candidates.len() < CANDIDATES {
                    self.candidates.push(fresh);
                    self.candidates.len() - 1
                } else {
                    // Full (a scan from many addresses): the shortest run goes, the oldest of
                    // those first, so a phone well into its probation is not pushed out.
                    let i = (0..self.candidates.len())
                        .min_by_key(|&i| (self.candidates[i].run, self.candidates[i].last))
                        .unwrap_or(0);
                    self.candidates[i] = fresh;
                    i
                }
            }
        };
        let c = &mut self.candidates[i];
        if c.run > 0 && c.ssrc == h.ssrc && c.next_seq == h.seq {
            c.run = c.run.saturating_add(1);
        } else {
            c.run = 1;
            c.ssrc = h.ssrc;
        }
        c.next_seq = h.seq.wrapping_add(1);
        c.last = now;
        c.run
    }

    fn stranger(&mut self, from: SocketAddr) -> Dropped {
        let report = self.reported.len() < REPORTED && !self.reported.contains(&from);
        if report {
            self.reported.push(from);
        }
        Dropped::Stranger { report }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rtp::Packetizer;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// Something that sends a well-formed RTP stream from one address.
    struct Sender {
        from: SocketAddr,
        stream: Packetizer,
    }

    impl Sender {
        fn new(from: &str, ssrc: u32) -> Sender {
            Sender {
                from: addr(from),
                stream: Packetizer::new(ssrc, 1000, 0),
            }
        }

        fn packet(&mut self) -> Vec<u8> {
            let mut p = Vec::new();
            self.stream.packet(0, &[0xFF; 160], &mut p);
            p
        }

        fn send(&mut self, latch: &mut Latch, now: Instant) -> Admission {
            let p = self.packet();
            latch.admit(now, self.from, &p)
        }
    }

    fn used(a: Admission) -> bool {
        matches!(a, Admission::Accept(_) | Admission::Learned(_))
    }

    /// A port scan: each packet valid RTP on its own, but never two of one stream in sequence.
    fn scan_packet(rng: &mut StdRng) -> Vec<u8> {
        let mut p = Vec::new();
        Packetizer::new(rng.random(), rng.random(), rng.random()).packet(0, &[0; 160], &mut p);
        p
    }

    const SDP: &str = "192.0.2.10:4000";
    const NAT: &str = "198.51.100.7:31337";
    const STRANGER: &str = "203.0.113.66:5004";

    fn signalled(t0: Instant) -> Latch {
        let mut l = Latch::new(t0);
        l.signal(t0, Some(addr(SDP)), true);
        l
    }

    #[test]
    fn the_phone_at_its_signalled_address_is_accepted_at_once() {
        let t0 = Instant::now();
        let mut l = signalled(t0);
        assert_eq!(l.destination(), Some(addr(SDP)), "before anything arrived");
        let mut phone = Sender::new(SDP, 1);
        assert!(matches!(phone.send(&mut l, t0), Admission::Learned(_)));
        for n in 1..100 {
            assert!(matches!(
                phone.send(&mut l, t0 + ms(20 * n)),
                Admission::Accept(_)
            ));
        }
        assert_eq!(l.source(), Some(addr(SDP)));
        assert_eq!(l.destination(), Some(addr(SDP)));
    }

    #[test]
    fn a_stranger_spraying_before_the_phone_gets_nothing_and_does_not_capture_the_leg() {
        let t0 = Instant::now();
        let mut l = signalled(t0);
        let mut rng = StdRng::seed_from_u64(7);
        // A scan from many ports and a well-formed stream, both before the phone speaks.
        let mut stream = Sender::new(STRANGER, 66);
        for n in 0..75 {
            let now = t0 + ms(20 * n);
            let from = SocketAddr::new(addr(STRANGER).ip(), 10_000 + n as u16 % 20);
            assert!(!used(l.admit(now, from, &scan_packet(&mut rng))));
            assert!(!used(stream.send(&mut l, now)));
            assert_eq!(l.destination(), Some(addr(SDP)), "never to a stranger");
        }
        // The phone speaks at 1.5 s and keeps talking; the stranger keeps sending.
        let mut phone = Sender::new(SDP, 1);
        assert!(matches!(
            phone.send(&mut l, t0 + ms(1500)),
            Admission::Learned(_)
        ));
        for n in 1..500 {
            let now = t0 + ms(1500 + 20 * n);
            assert!(used(phone.send(&mut l, now)));
            assert!(!used(stream.send(&mut l, now)), "stranger at {n}");
            assert!(!used(l.admit(now, addr(STRANGER), &scan_packet(&mut rng))));
            assert_eq!(l.destination(), Some(addr(SDP)));
        }
    }

    #[test]
    fn a_scan_alone_never_captures_a_leg_however_long_it_lasts() {
        let t0 = Instant::now();
        let mut l = signalled(t0);
        let mut rng = StdRng::seed_from_u64(8);
        for n in 0..5_000 {
            let from = SocketAddr::new(addr(STRANGER).ip(), 10_000 + (n % 3) as u16);
            let p = scan_packet(&mut rng);
            assert!(!used(l.admit(t0 + ms(10 * n), from, &p)));
            // The same packet again (a replay) is no sequence either.
            assert!(!used(l.admit(t0 + ms(10 * n + 1), from, &p)));
        }
        assert_eq!(l.source(), None);
        assert_eq!(l.destination(), Some(addr(SDP)));
    }

    #[test]
    fn a_phone_behind_nat_is_learned_after_probation_once_the_signalled_address_stays_silent() {
        let t0 = Instant::now();
        let mut l = signalled(t0);
        let mut phone = Sender::new(NAT, 1);
        let mut learned_at = None;
        for n in 0..200 {
            let now = t0 + ms(100 + 20 * n);
            match phone.send(&mut l, now) {
                Admission::Learned(_) => {
                    assert!(learned_at.is_none(), "learned once");
                    learned_at = Some(now);
                }
                Admission::Accept(_) => assert!(learned_at.is_some()),
                Admission::Drop(_) => {
                    assert!(learned_at.is_none());
                    assert_eq!(l.destination(), Some(addr(SDP)), "not yet to the NAT");
                }
            }
        }
        let at = learned_at.expect("learned");
        assert_eq!(
            at,
            t0 + SILENCE,
            "at the first packet once the SDP address had its turn"
        );
        assert_eq!(l.destination(), Some(addr(NAT)));

        // Later in a call (the signalled address long silent), probation alone decides:
        // exactly PROBATION packets.
        let mut l = signalled(t0);
        let mut phone = Sender::new(NAT, 2);
        let late = t0 + ms(5_000);
        for n in 1..PROBATION {
            assert!(!used(phone.send(&mut l, late + ms(20 * u64::from(n)))));
        }
        assert!(matches!(
            phone.send(&mut l, late + ms(20 * u64::from(PROBATION))),
            Admission::Learned(_)
        ));
    }

    #[test]
    fn a_phone_behind_nat_that_sends_from_its_signalling_host_is_learned_at_its_third_packet() {
        let t0 = Instant::now();
        let mut l = signalled(t0);
        l.signalling_host(Some(addr(NAT).ip()));
        // A stranger on another host sends a proper stream from the start: still waits.
        let mut stranger = Sender::new(STRANGER, 66);
        let mut phone = Sender::new(NAT, 1);
        for n in 1..PROBATION {
            let now = t0 + ms(20 * u64::from(n));
            assert!(!used(stranger.send(&mut l, now)));
            assert!(!used(phone.send(&mut l, now)));
        }
        let third = t0 + ms(20 * u64::from(PROBATION));
        assert!(!used(stranger.send(&mut l, third)));
        assert!(
            matches!(phone.send(&mut l, third), Admission::Learned(_)),
            "the third packet from the phone's own host, 60 ms into the call"
        );
        assert_eq!(l.destination(), Some(addr(NAT)));
        // The stranger never gets in while the phone talks.
        for n in 1..200 {
            let now = third + ms(20 * n);
            assert!(used(phone.send(&mut l, now)));
            assert!(!used(stranger.send(&mut l, now)));
        }
        // Another port of the same host (a second phone behind that NAT, or a forged source)
        // does not take a leg that already is on the host while it talks.
        let mut other = Sender::new("198.51.100.7:40000", 9);
        for n in 0..100 {
            let now = third + ms(4000 + 20 * n);
            assert!(used(phone.send(&mut l, now)));
            assert!(!used(other.send(&mut l, now)));
        }
    }

    #[test]
    fn a_learned_phone_keeps_its_leg_while_it_sends() {
        let t0 = Instant::now();
        for signalled_phone in [true, false] {
            let mut l = signalled(t0);
            let mut phone = Sender::new(if signalled_phone { SDP } else { NAT }, 1);
            let start = if signalled_phone { t0 } else { t0 + ms(5_000) };
            for n in 0..PROBATION {
                phone.send(&mut l, start + ms(20 * u64::from(n)));
            }
            assert_eq!(l.source(), Some(phone.from));
            // The stranger sends a proper stream, twice as fast, for 20 s; the phone keeps
            // talking, with a gap just short of the silence limit in the middle.
            let mut stranger = Sender::new(STRANGER, 66);
            let mut t = start + ms(100);
            let end = t + ms(20_000);
            let gap = (t + ms(8_000), t + ms(8_000) + SILENCE - ms(40));
            while t < end {
                if !(gap.0..gap.1).contains(&t) {
                    assert!(used(phone.send(&mut l, t)));
                }
                assert!(!used(stranger.send(&mut l, t + ms(5))));
                assert!(!used(stranger.send(&mut l, t + ms(15))));
                t += ms(20);
            }
            assert_eq!(l.destination(), Some(phone.from));
        }
    }

    #[test]
    fn a_phone_whose_nat_mapping_changes_is_learned_again_once_the_old_one_is_silent() {
        let t0 = Instant::now();
        let mut l = signalled(t0);
        let mut phone = Sender::new(NAT, 1);
        let mut t = t0 + ms(5_000);
        for _ in 0..50 {
            phone.send(&mut l, t);
            t += ms(20);
        }
        assert_eq!(l.source(), Some(addr(NAT)));
        let last_old = t - ms(20);
        // The NAT rebinds: same stream, new public port.
        phone.from = addr("198.51.100.7:40000");
        let mut learned_at = None;
        while t < last_old + ms(5_000) {
            match phone.send(&mut l, t) {
                Admission::Learned(_) => learned_at = Some(t),
                Admission::Accept(_) => assert!(learned_at.is_some()),
                Admission::Drop(_) => assert_eq!(l.destination(), Some(addr(NAT))),
            }
            t += ms(20);
        }
        let at = learned_at.expect("learned again");
        assert!(at >= last_old + SILENCE && at < last_old + SILENCE + ms(20));
        assert_eq!(l.destination(), Some(phone.from));

        // The phone at its signalled address takes its leg back at once.
        let mut sdp = Sender::new(SDP, 3);
        assert!(matches!(sdp.send(&mut l, t), Admission::Learned(_)));
        assert_eq!(l.destination(), Some(addr(SDP)));
    }

    #[test]
    fn garbage_never_counts_towards_probation() {
        let t0 = Instant::now();
        let late = t0 + ms(10_000);
        let mut l = signalled(t0);
        let from = addr(STRANGER);
        let mut rng = StdRng::seed_from_u64(9);
        // A stream whose headers are right but for the version (1, 0, 3).
        for version in [1u8, 0, 3] {
            let mut s = Packetizer::new(5, 0, 0);
            for n in 0..20 {
                let mut p = Vec::new();
                s.packet(0, &[0; 160], &mut p);
                p[0] = (p[0] & 0x3F) | (version << 6);
                assert!(!used(l.admit(late + ms(n), from, &p)));
            }
        }
        // Text, truncated headers, RTCP, random bytes of random lengths.
        let mut s = Sender::new(STRANGER, 5);
        let mut garbage: Vec<Vec<u8>> = vec![
            b"hello".to_vec(),
            b"GET / HTTP/1.1\r\n\r\n".to_vec(),
            s.packet()[..11].to_vec(),
            vec![0x80, 200, 0, 6, 0, 0, 0, 1, 0, 0, 0, 0],
            vec![],
        ];
        for _ in 0..2_000 {
            let len = rng.random_range(0..200);
            garbage.push((0..len).map(|_| rng.random()).collect());
        }
        for (n, g) in garbage.iter().enumerate() {
            assert!(!used(l.admit(late + ms(100 + n as u64), from, g)));
        }
        assert_eq!(l.source(), None);
        // Garbage between valid packets breaks the run: two good, garbage, one good is not
        // a probation passed; two more good ones are.
        let t = late + ms(5_000);
        assert!(!used(s.send(&mut l, t)));
        assert!(!used(s.send(&mut l, t + ms(20))));
        assert!(!used(l.admit(t + ms(30), from, b"\x80junk")));
        assert!(!used(s.send(&mut l, t + ms(40))));
        assert!(!used(s.send(&mut l, t + ms(60))));
        assert!(matches!(s.send(&mut l, t + ms(80)), Admission::Learned(_)));
        // And garbage from the source itself is dropped without losing it.
        assert_eq!(
            l.admit(t + ms(90), from, b"hello"),
            Admission::Drop(Dropped::Malformed)
        );
        assert!(matches!(s.send(&mut l, t + ms(100)), Admission::Accept(_)));
    }

    #[test]
    fn a_new_signalled_address_starts_the_learning_again() {
        let t0 = Instant::now();
        let mut l = signalled(t0);
        let mut nat = Sender::new(NAT, 1);
        let mut t = t0 + ms(3_000);
        for _ in 0..PROBATION {
            nat.send(&mut l, t);
            t += ms(20);
        }
        assert_eq!(l.source(), Some(addr(NAT)));
        // Same address again (hold and resume): nothing changes.
        l.signal(t, Some(addr(SDP)), true);
        assert!(matches!(nat.send(&mut l, t), Admission::Accept(_)));
        // A new address: it is where audio goes, and the old source is a stranger again.
        let moved = addr("192.0.2.20:5000");
        l.signal(t, Some(moved), true);
        assert_eq!(l.destination(), Some(moved));
        assert!(!used(nat.send(&mut l, t + ms(20))));
        assert_eq!(l.destination(), Some(moved));
    }

    #[test]
    fn a_leg_that_does_not_send_learns_no_stranger() {
        let t0 = Instant::now();
        let mut l = Latch::new(t0);
        l.signal(t0, Some(addr(SDP)), false);
        let mut stranger = Sender::new(STRANGER, 66);
        for n in 0..1_000 {
            assert!(!used(stranger.send(&mut l, t0 + ms(20 * n))));
        }
        assert_eq!(l.destination(), Some(addr(SDP)));
        // Resumed: the phone has SILENCE from its re-INVITE to speak.
        let resumed = t0 + ms(20_000);
        l.signal(resumed, Some(addr(SDP)), true);
        assert!(!used(stranger.send(&mut l, resumed + ms(20))));
        assert!(!used(stranger.send(&mut l, resumed + SILENCE - ms(20))));
    }

    #[test]
    fn rtcp_is_accepted_from_the_phone_only() {
        let t0 = Instant::now();
        let mut l = signalled(t0);
        let rtcp = [0x81, 201, 0, 1, 0, 0, 0, 1];
        let sdp_rtcp = addr("192.0.2.10:4001");
        assert_eq!(l.rtcp_destination(), Some(sdp_rtcp));
        assert!(matches!(
            l.admit_rtcp(addr(STRANGER), &rtcp),
            Err(Dropped::Stranger { .. })
        ));
        assert_eq!(l.rtcp_destination(), Some(sdp_rtcp));
        assert_eq!(l.admit_rtcp(sdp_rtcp, &rtcp), Ok(()));
        assert_eq!(l.admit_rtcp(sdp_rtcp, b"hi"), Err(Dropped::Malformed));
        // Behind NAT: from the learned source's host, whatever the port.
        let mut nat = Sender::new(NAT, 1);
        for n in 0..PROBATION {
            nat.send(&mut l, t0 + ms(3_000 + 20 * u64::from(n)));
        }
        assert_eq!(l.source(), Some(addr(NAT)));
        let nat_rtcp = addr("198.51.100.7:31338");
        assert_eq!(l.admit_rtcp(nat_rtcp, &rtcp), Ok(()));
        assert_eq!(l.rtcp_destination(), Some(nat_rtcp));
        assert!(l.admit_rtcp(addr(STRANGER), &rtcp).is_err());
        assert_eq!(l.rtcp_destination(), Some(nat_rtcp));
    }

    #[test]
    fn strangers_are_reported_once_each_and_only_the_first_few() {
        let t0 = Instant::now();
        let mut l = signalled(t0);
        let reports = |l: &mut Latch, from: SocketAddr, n: usize| {
            (0..n)
                .filter(|_| {
                    l.admit(t0, from, b"x") == Admission::Drop(Dropped::Stranger { report: true })
                })
                .count()
        };
        assert_eq!(reports(&mut l, addr(STRANGER), 100), 1);
        let more: usize = (1..100)
            .map(|p| reports(&mut l, SocketAddr::new(addr(STRANGER).ip(), p), 3))
            .sum();
        assert_eq!(1 + more, REPORTED);
    }

    #[test]
    fn a_scan_from_many_addresses_does_not_push_a_phone_out_of_its_probation() {
        let t0 = Instant::now();
        let mut l = signalled(t0);
        let mut rng = StdRng::seed_from_u64(10);
        let mut phone = Sender::new(NAT, 1);
        let t = t0 + ms(5_000);
        assert!(!used(phone.send(&mut l, t)));
        assert!(!used(phone.send(&mut l, t + ms(20))));
        for p in 0..1_000u16 {
            let from = SocketAddr::new(addr(STRANGER).ip(), 20_000 + p);
            assert!(!used(l.admit(t + ms(30), from, &scan_packet(&mut rng))));
        }
        assert!(matches!(
            phone.send(&mut l, t + ms(40)),
            Admission::Learned(_)
        ));
    }
}
