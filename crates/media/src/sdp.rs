//! SDP (RFC 8866) as far as a G.711 contact center needs it, and the offer/answer rules of
//! RFC 3264 for one audio stream.
//!
//! What is understood: session- and media-level `c=`, every `m=` line (only the first usable
//! audio stream is taken; the others are answered with port 0), static payload types 0 (PCMU)
//! and 8 (PCMA) with or without `a=rtpmap`, dynamic payload types mapped by `a=rtpmap`
//! (PCMU/PCMA under a dynamic number, `telephone-event/8000`), the direction attributes
//! `sendrecv`/`sendonly`/`recvonly`/`inactive` at either level, and the RFC 2543 hold
//! address `0.0.0.0`. Anything else is carried past untouched or ignored.

use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use recorder::g711::Law;

/// Media direction (RFC 3264 §5.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Both ways.
    SendRecv,
    /// The describing side only sends (it puts the other on hold).
    SendOnly,
    /// The describing side only receives.
    RecvOnly,
    /// Neither.
    Inactive,
}

impl Direction {
    /// The direction an answer takes to an offer with this direction.
    pub fn answer(self) -> Direction {
        match self {
            Direction::SendRecv => Direction::SendRecv,
            Direction::SendOnly => Direction::RecvOnly,
            Direction::RecvOnly => Direction::SendOnly,
            Direction::Inactive => Direction::Inactive,
        }
    }

    /// The attribute name.
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::SendRecv => "sendrecv",
            Direction::SendOnly => "sendonly",
            Direction::RecvOnly => "recvonly",
            Direction::Inactive => "inactive",
        }
    }

    /// True when the describing side sends media.
    pub fn sends(self) -> bool {
        matches!(self, Direction::SendRecv | Direction::SendOnly)
    }

    fn parse(s: &str) -> Option<Direction> {
        Some(match s {
            "sendrecv" => Direction::SendRecv,
            "sendonly" => Direction::SendOnly,
            "recvonly" => Direction::RecvOnly,
            "inactive" => Direction::Inactive,
            _ => return None,
        })
    }
}

/// One `m=` line with what was found for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaDescription {
    /// Media type (`audio`, `video` …).
    pub media: String,
    /// Port (0 = rejected / disabled).
    pub port: u16,
    /// Transport protocol (`RTP/AVP` …).
    pub proto: String,
    /// Payload format list, in preference order.
    pub formats: Vec<String>,
    /// `a=rtpmap` entries: (payload type, encoding name, clock rate).
    pub rtpmap: Vec<(u8, String, u32)>,
    /// Connection address for this stream (media level, else session level).
    pub addr: Option<IpAddr>,
    /// Direction (media level, else session level, else sendrecv).
    pub direction: Direction,
    /// `a=ptime`, if given.
    pub ptime: Option<u32>,
    /// `a=ice-ufrag` (media level, else session level).
    pub ice_ufrag: Option<String>,
    /// `a=ice-pwd` (media level, else session level).
    pub ice_pwd: Option<String>,
    /// `a=fingerprint` (`sha-256 AB:…`; media level, else session level).
    pub fingerprint: Option<String>,
    /// `a=setup` (`active`, `passive`, `actpass`).
    pub setup: Option<String>,
    /// `a=mid`.
    pub mid: Option<String>,
    /// `a=crypto` lines (SDES-SRTP, RFC 4568), in the offerer's order.
    pub crypto: Vec<Crypto>,
}

/// One `a=crypto:<tag> <suite> inline:<key||salt>[|…]` attribute.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Crypto {
    /// The tag an answer echoes.
    pub tag: u32,
    /// The crypto suite (`AES_CM_128_HMAC_SHA1_80`).
    pub suite: String,
    /// The base64 master key and salt (without lifetime or MKI).
    pub key: String,
    /// The key carries an MKI or session parameters (which we do not speak).
    pub mki: bool,
}

impl Crypto {
    fn parse(arg: &str) -> Option<Crypto> {
        let mut it = arg.split_whitespace();
        let tag = it.next()?.parse().ok()?;
        let suite = it.next()?.to_owned();
        let params = it.next()?;
        let inline = params.strip_prefix("inline:")?;
        let mut parts = inline.split('|');
        let key = parts.next()?.to_owned();
        // `|lifetime` alone is fine; `|MKI:length` or session parameters are not ours.
        let mki = parts.any(|p| p.contains(':')) || it.next().is_some();
        Some(Crypto {
            tag,
            suite,
            key,
            mki,
        })
    }
}

/// The one SDES suite we speak: what every SRTP desk phone offers first.
pub const SDES_SUITE: &str = "AES_CM_128_HMAC_SHA1_80";

impl MediaDescription {
    /// A browser's stream: RTP over DTLS-SRTP with ICE (`UDP/TLS/RTP/SAVP[F]`).
    pub fn is_webrtc(&self) -> bool {
        self.proto.starts_with("UDP/TLS/RTP/SAVP")
    }

    /// SRTP keyed in the SDP (`RTP/SAVP[F]`, RFC 4568).
    pub fn is_sdes(&self) -> bool {
        self.proto.starts_with("RTP/SAVP")
    }

    /// The first `a=crypto` of a suite we speak, with a key we can use (30 octets, no MKI or
    /// session parameters).
    pub fn sdes_crypto(&self) -> Option<&Crypto> {
        self.crypto.iter().find(|c| {
            c.suite.eq_ignore_ascii_case(SDES_SUITE) && !c.mki && crate::secure::is_sdes_key(&c.key)
        })
    }

    /// A browser's DTLS side, if this is a WebRTC stream.
    pub fn remote_webrtc(&self) -> Option<RemoteWebRtcMedia> {
        self.is_webrtc().then(|| RemoteWebRtcMedia {
            fingerprint: self.fingerprint.clone(),
            setup: self.setup.clone(),
            mid: self.mid.clone(),
        })
    }
}

impl MediaDescription {
    /// The encoding name of a payload type: its rtpmap, or the static assignment.
    pub fn encoding(&self, pt: u8) -> Option<(String, u32)> {
        if let Some((_, name, rate)) = self.rtpmap.iter().find(|(p, ..)| *p == pt) {
            return Some((name.to_ascii_uppercase(), *rate));
        }
        match pt {
            0 => Some(("PCMU".into(), 8000)),
            8 => Some(("PCMA".into(), 8000)),
            _ => None,
        }
    }
}

/// A parsed session description.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionDescription {
    /// Every media description, in order.
    pub media: Vec<MediaDescription>,
}

/// Why an SDP body is unusable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SdpError {
    /// Not a session description we can read.
    #[error("malformed SDP: {0}")]
    Malformed(&'static str),
    /// No audio stream with a codec we support (PCMU, PCMA): answer 488.
    #[error("no common codec (PCMU or PCMA)")]
    NoCommonCodec,
    /// The audio stream is not IPv4, and this relay has only IPv4 (RFC 6157): answer 488.
    #[error("unsupported address family")]
    AddressFamily,
}

fn parse_addr(c: &str) -> Result<IpAddr, SdpError> {
    // c=IN IP4 192.0.2.4  (possibly with /ttl for multicast)
    let mut it = c.split_whitespace();
    let (Some("IN"), Some(kind), Some(addr)) = (it.next(), it.next(), it.next()) else {
        return Err(SdpError::Malformed("c= line"));
    };
    let addr = addr.split('/').next().unwrap_or(addr);
    match kind {
        "IP4" => addr
            .parse::<Ipv4Addr>()
            .map(IpAddr::V4)
            .map_err(|_| SdpError::Malformed("c= address")),
        "IP6" => addr
            .parse()
            .map(IpAddr::V6)
            .map_err(|_| SdpError::Malformed("c= address")),
        _ => Err(SdpError::Malformed("c= address type")),
    }
}

impl SessionDescription {
    /// Parse an SDP body.
    pub fn parse(body: &[u8]) -> Result<SessionDescription, SdpError> {
        let text = std::str::from_utf8(body).map_err(|_| SdpError::Malformed("not UTF-8"))?;
        let mut session_addr = None;
        let mut session_dir = None;
        // Session-level ICE and DTLS attributes, inherited by media without their own.
        let mut session_ice: [Option<String>; 4] = Default::default();
        let mut media: Vec<MediaDescription> = Vec::new();
        let mut media_addr: Vec<Option<IpAddr>> = Vec::new();
        let mut media_dir: Vec<Option<Direction>> = Vec::new();
        let mut saw_version = false;
        for raw in text.split('\n') {
            let line = raw.trim_end_matches('\r');
            if line.is_empty() {
                continue;
            }
            let Some((kind, value)) = line.split_once('=') else {
                return Err(SdpError::Malformed("line without '='"));
            };
            match kind {
                "v" => saw_version = true,
                "c" => {
                    let a = parse_addr(value)?;
                    match media_addr.last_mut() {
                        Some(slot) => *slot = Some(a),
                        None => session_addr = Some(a),
                    }
                }
                "m" => {
                    let mut it = value.split_whitespace();
                    let (Some(m), Some(port), Some(proto)) = (it.next(), it.next(), it.next())
                    else {
                        return Err(SdpError::Malformed("m= line"));
                    };
                    let port = port.split('/').next().unwrap_or(port);
                    let port: u16 = port.parse().map_err(|_| SdpError::Malformed("m= port"))?;
                    media.push(MediaDescription {
                        media: m.to_owned(),
                        port,
                        proto: proto.to_owned(),
                        formats: it.map(str::to_owned).collect(),
                        rtpmap: Vec::new(),
                        addr: None,
                        direction: Direction::SendRecv,
                        ptime: None,
                        ice_ufrag: None,
                        ice_pwd: None,
                        fingerprint: None,
                        setup: None,
                        mid: None,
                        crypto: Vec::new(),
                    });
                    media_addr.push(None);
                    media_dir.push(None);
                }
                "a" => {
                    let (name, arg) = value.split_once(':').unwrap_or((value, ""));
                    if let Some(d) = Direction::parse(name) {
                        match media_dir.last_mut() {
                            Some(slot) => *slot = Some(d),
                            None => session_dir = Some(d),
                        }
                        continue;
                    }
                    let ice_slot = match name {
                        "ice-ufrag" => Some(0),
                        "ice-pwd" => Some(1),
                        "fingerprint" => Some(2),
                        "setup" => Some(3),
                        _ => None,
                    };
                    let Some(m) = media.last_mut() else {
                        if let Some(i) = ice_slot {
                            session_ice[i] = Some(arg.trim().to_owned());
                        }
                        continue;
                    };
                    match name {
                        "ice-ufrag" => m.ice_ufrag = Some(arg.trim().to_owned()),
                        "ice-pwd" => m.ice_pwd = Some(arg.trim().to_owned()),
                        "fingerprint" => m.fingerprint = Some(arg.trim().to_owned()),
                        "setup" => m.setup = Some(arg.trim().to_owned()),
                        "mid" => m.mid = Some(arg.trim().to_owned()),
                        "crypto" => m.crypto.extend(Crypto::parse(arg)),
                        "rtpmap" => {
                            // a=rtpmap:<pt> <name>/<rate>[/<channels>]
                            let (pt, enc) = arg.split_once(' ').unwrap_or((arg, ""));
                            let Ok(pt) = pt.trim().parse::<u8>() else {
                                continue;
                            };
                            let mut parts = enc.trim().split('/');
                            let enc_name = parts.next().unwrap_or("").to_owned();
                            let rate = parts.next().and_then(|r| r.parse().ok()).unwrap_or(0);
                            m.rtpmap.push((pt, enc_name, rate));
                        }
                        "ptime" => m.ptime = arg.trim().parse().ok(),
                        _ => {}
                    }
                }
                _ => {}
            }
        }
        if !saw_version {
            return Err(SdpError::Malformed("no v= line"));
        }
        for (i, m) in media.iter_mut().enumerate() {
            m.addr = media_addr[i].or(session_addr);
            m.direction = media_dir[i].or(session_dir).unwrap_or(Direction::SendRecv);
            let [u, p, f, s] = &session_ice;
            m.ice_ufrag = m.ice_ufrag.take().or_else(|| u.clone());
            m.ice_pwd = m.ice_pwd.take().or_else(|| p.clone());
            m.fingerprint = m.fingerprint.take().or_else(|| f.clone());
            m.setup = m.setup.take().or_else(|| s.clone());
        }
        Ok(SessionDescription { media })
    }
}

/// What an offer and our capabilities agree on for the audio stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Negotiated {
    /// Index of the audio `m=` line used.
    pub index: usize,
    /// The codec.
    pub law: Law,
    /// Its payload type number in this session.
    pub pt: u8,
    /// The payload type of RFC 4733 telephone events, if both sides have them.
    pub telephone_event: Option<u8>,
    /// Where the remote side wants its RTP (None while it is on hold with `0.0.0.0`).
    pub remote: Option<SocketAddr>,
    /// The remote side's direction.
    pub direction: Direction,
    /// A browser's stream (`UDP/TLS/RTP/SAVPF`): its DTLS side is in
    /// [`MediaDescription::remote_webrtc`] of the stream at `index`.
    pub webrtc: bool,
    /// SRTP keyed in the SDP (`RTP/SAVP`): the key is the stream's
    /// [`MediaDescription::sdes_crypto`].
    pub sdes: bool,
}

/// What a browser's SDP says about its DTLS side.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteWebRtcMedia {
    /// `a=fingerprint`, as written (`sha-256 AB:…`).
    pub fingerprint: Option<String>,
    /// `a=setup`.
    pub setup: Option<String>,
    /// `a=mid`, mirrored in our answer.
    pub mid: Option<String>,
}

impl Negotiated {
    /// The remote side has put us on hold (sendonly, inactive, or the 0.0.0.0 address).
    pub fn is_hold(&self) -> bool {
        !self.direction.answer().sends() || self.remote.is_none()
    }
}

/// Choose the audio stream and codec from a remote description (offer or answer): the first
/// audio stream with a non-zero port and PCMU or PCMA, the first of those two in the remote's
/// order of preference, plus telephone-event/8000 when present.
pub fn negotiate(sd: &SessionDescription) -> Result<Negotiated, SdpError> {
    let mut family_mismatch = false;
    for (index, m) in sd.media.iter().enumerate() {
        if m.media != "audio"
            || m.port == 0
            || !(m.proto.starts_with("RTP/AVP") || m.is_webrtc() || m.is_sdes())
        {
            continue;
        }
        // SRTP we cannot key (another suite, or none) is no stream for us.
        if m.is_sdes() && m.sdes_crypto().is_none() {
            continue;
        }
        let mut chosen = None;
        let mut te = None;
        for f in &m.formats {
            let Ok(pt) = f.parse::<u8>() else { continue };
            let Some((name, rate)) = m.encoding(pt) else {
                continue;
            };
            match (name.as_str(), rate) {
                ("PCMU", 8000) if chosen.is_none() => chosen = Some((Law::Mu, pt)),
                ("PCMA", 8000) if chosen.is_none() => chosen = Some((Law::A, pt)),
                ("TELEPHONE-EVENT", 8000) if te.is_none() => te = Some(pt),
                _ => {}
            }
        }
        let Some((law, pt)) = chosen else { continue };
        let remote = match m.addr {
            Some(IpAddr::V4(a)) if a.is_unspecified() => None,
            Some(IpAddr::V4(a)) => Some(SocketAddr::new(IpAddr::V4(a), m.port)),
            Some(IpAddr::V6(_)) => {
                family_mismatch = true;
                continue;
            }
            None => return Err(SdpError::Malformed("no c= line for the audio stream")),
        };
        return Ok(Negotiated {
            index,
            law,
            pt,
            telephone_event: te,
            remote,
            direction: m.direction,
            webrtc: m.is_webrtc(),
            sdes: m.is_sdes(),
        });
    }
    Err(if family_mismatch {
        SdpError::AddressFamily
    } else {
        SdpError::NoCommonCodec
    })
}

/// Our side of a session: what goes into the SDP we send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalMedia {
    /// `o=` session id (stays for the session).
    pub session_id: u64,
    /// `o=` version: increase it whenever the description changes.
    pub version: u64,
    /// Address we receive RTP on.
    pub addr: Ipv4Addr,
    /// RTP port (RTCP is the next one).
    pub port: u16,
    /// Codec and its payload type.
    pub law: Law,
    /// Payload type number for the codec.
    pub pt: u8,
    /// telephone-event payload type, if offered/accepted.
    pub telephone_event: Option<u8>,
    /// Our direction.
    pub direction: Direction,
    /// A browser's leg: ICE-lite and DTLS-SRTP attributes (`None` for plain RTP/AVP).
    pub webrtc: Option<LocalWebRtc>,
    /// SRTP keyed in the SDP (RFC 4568): our tag and base64 key (`RTP/SAVP`).
    pub sdes: Option<(u32, String)>,
}

/// Our side of a WebRTC stream: ICE-lite with the relay port as the one host candidate,
/// DTLS with the relay's certificate (we are the DTLS server), RTCP on the RTP port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalWebRtc {
    /// `a=ice-ufrag` (at least 4 characters, RFC 8839).
    pub ufrag: String,
    /// `a=ice-pwd` (at least 22 characters).
    pub pwd: String,
    /// SHA-256 fingerprint of the relay's DTLS certificate (`AB:CD:…`).
    pub fingerprint: String,
}

fn encoding_name(law: Law) -> &'static str {
    match law {
        Law::Mu => "PCMU",
        Law::A => "PCMA",
    }
}

impl LocalMedia {
    fn write_session(&self, out: &mut String, mid: &str) {
        let _ = write!(
            out,
            "v=0\r\no=switchboard {} {} IN IP4 {}\r\ns=switchboard\r\nc=IN IP4 {}\r\nt=0 0\r\n",
            self.session_id, self.version, self.addr, self.addr
        );
        if self.webrtc.is_some() {
            let _ = write!(out, "a=ice-lite\r\na=group:BUNDLE {mid}\r\n");
        }
    }

    /// `setup` is `actpass` in an offer and `passive` in an answer: we are always the DTLS
    /// server.
    fn write_audio(&self, out: &mut String, setup: &str, mid: &str) {
        let proto = if self.webrtc.is_some() {
            "UDP/TLS/RTP/SAVPF"
        } else if self.sdes.is_some() {
            "RTP/SAVP"
        } else {
            "RTP/AVP"
        };
        let _ = write!(out, "m=audio {} {proto} {}", self.port, self.pt);
        if let Some(te) = self.telephone_event {
            let _ = write!(out, " {te}");
        }
        out.push_str("\r\n");
        let _ = write!(
            out,
            "a=rtpmap:{} {}/8000\r\n",
            self.pt,
            encoding_name(self.law)
        );
        if let Some(te) = self.telephone_event {
            let _ = write!(
                out,
                "a=rtpmap:{te} telephone-event/8000\r\na=fmtp:{te} 0-15\r\n"
            );
        }
        let _ = write!(out, "a=ptime:20\r\na={}\r\n", self.direction.as_str());
        if let Some((tag, key)) = &self.sdes {
            let _ = write!(out, "a=crypto:{tag} {SDES_SUITE} inline:{key}\r\n");
        }
        if let Some(w) = &self.webrtc {
            let _ = write!(
                out,
                "a=mid:{mid}\r\na=rtcp-mux\r\na=ice-ufrag:{}\r\na=ice-pwd:{}\r\n\
                 a=fingerprint:sha-256 {}\r\na=setup:{setup}\r\n\
                 a=candidate:1 1 udp 2130706431 {} {} typ host\r\na=end-of-candidates\r\n",
                w.ufrag, w.pwd, w.fingerprint, self.addr, self.port
            );
        }
    }

    /// An offer with one audio stream (what we send to an agent's phone).
    pub fn offer(&self) -> String {
        let mut out = String::with_capacity(512);
        self.write_session(&mut out, "0");
        self.write_audio(&mut out, "actpass", "0");
        out
    }

    /// The answer to `offer`: one `m=` line per offered line, in order; the negotiated audio
    /// stream at index `audio_index` gets our media, every other one is rejected (port 0).
    pub fn answer(&self, offer: &SessionDescription, audio_index: usize) -> String {
        let mut out = String::with_capacity(512);
        let mid = offer
            .media
            .get(audio_index)
            .and_then(|m| m.mid.as_deref())
            .unwrap_or("0");
        self.write_session(&mut out, mid);
        for (i, m) in offer.media.iter().enumerate() {
            if i == audio_index {
                self.write_audio(&mut out, "passive", mid);
            } else {
                let fmt = m.formats.first().map_or("0", String::as_str);
                let _ = write!(out, "m={} 0 {} {}\r\n", m.media, m.proto, fmt);
            }
        }
        out
    }
}

/// Our offer when the other side did not make one (an INVITE without SDP, "delayed offer"):
/// PCMU and PCMA with telephone-event 101, sendrecv; the answer comes in the ACK.
pub fn offer_g711(session_id: u64, version: u64, addr: Ipv4Addr, port: u16) -> String {
    format!(
        "v=0\r\no=switchboard {session_id} {version} IN IP4 {addr}\r\ns=switchboard\r\n\
         c=IN IP4 {addr}\r\nt=0 0\r\nm=audio {port} RTP/AVP 0 8 101\r\n\
         a=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\n\
         a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-15\r\na=ptime:20\r\na=sendrecv\r\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const SNOM: &str = "v=0\r\no=root 1 1 IN IP4 10.1.1.5\r\ns=call\r\nc=IN IP4 10.1.1.5\r\nt=0 0\r\n\
        m=audio 49170 RTP/AVP 9 8 0 101\r\na=rtpmap:9 G722/8000\r\na=rtpmap:101 telephone-event/8000\r\n\
        a=fmtp:101 0-16\r\na=ptime:20\r\na=sendrecv\r\n";

    #[test]
    fn picks_the_first_g711_in_the_offerers_order_and_telephone_event() {
        let sd = SessionDescription::parse(SNOM.as_bytes()).unwrap();
        let n = negotiate(&sd).unwrap();
        assert_eq!(n.law, Law::A);
        assert_eq!(n.pt, 8);
        assert_eq!(n.telephone_event, Some(101));
        assert_eq!(n.remote, Some("10.1.1.5:49170".parse().unwrap()));
        assert_eq!(n.direction, Direction::SendRecv);
        assert!(!n.is_hold());
    }

    #[test]
    fn static_types_need_no_rtpmap_and_dynamic_g711_is_understood() {
        let sd =
            SessionDescription::parse(b"v=0\r\nc=IN IP4 192.0.2.1\r\nm=audio 4000 RTP/AVP 0\r\n")
                .unwrap();
        assert_eq!(negotiate(&sd).unwrap().law, Law::Mu);
        let sd = SessionDescription::parse(
            b"v=0\r\nc=IN IP4 192.0.2.1\r\nm=audio 4000 RTP/AVP 97\r\na=rtpmap:97 pcma/8000\r\n",
        )
        .unwrap();
        let n = negotiate(&sd).unwrap();
        assert_eq!((n.law, n.pt), (Law::A, 97));
    }

    #[test]
    fn no_common_codec_and_other_families_are_refused() {
        let sd = SessionDescription::parse(
            b"v=0\r\nc=IN IP4 192.0.2.1\r\nm=audio 4000 RTP/AVP 18 9\r\na=rtpmap:18 G729/8000\r\n",
        )
        .unwrap();
        assert_eq!(negotiate(&sd), Err(SdpError::NoCommonCodec));
        let sd =
            SessionDescription::parse(b"v=0\r\nc=IN IP4 192.0.2.1\r\nm=video 4000 RTP/AVP 31\r\n")
                .unwrap();
        assert_eq!(negotiate(&sd), Err(SdpError::NoCommonCodec));
        let sd =
            SessionDescription::parse(b"v=0\r\nc=IN IP6 2001:db8::1\r\nm=audio 4000 RTP/AVP 0\r\n")
                .unwrap();
        assert_eq!(negotiate(&sd), Err(SdpError::AddressFamily));
        assert!(SessionDescription::parse(b"garbage").is_err());
        assert!(SessionDescription::parse(b"v=0\r\nm=audio x RTP/AVP 0\r\n").is_err());
    }

    #[test]
    fn hold_forms_are_recognised() {
        for body in [
            "v=0\r\nc=IN IP4 192.0.2.1\r\nm=audio 4000 RTP/AVP 0\r\na=sendonly\r\n",
            "v=0\r\nc=IN IP4 192.0.2.1\r\na=inactive\r\nm=audio 4000 RTP/AVP 0\r\n",
            "v=0\r\nc=IN IP4 0.0.0.0\r\nm=audio 4000 RTP/AVP 0\r\n",
        ] {
            let n = negotiate(&SessionDescription::parse(body.as_bytes()).unwrap()).unwrap();
            assert!(n.is_hold(), "{body}");
        }
    }

    #[test]
    fn answer_mirrors_the_offer_lines_and_rejects_the_rest() {
        let offer = SessionDescription::parse(
            b"v=0\r\nc=IN IP4 192.0.2.4\r\nm=audio 49217 RTP/AVP 0 12\r\nm=video 3227 RTP/AVP 31\r\na=rtpmap:31 LPC\r\n",
        )
        .unwrap();
        let n = negotiate(&offer).unwrap();
        let local = LocalMedia {
            session_id: 42,
            version: 1,
            addr: Ipv4Addr::new(198, 51, 100, 1),
            port: 20_000,
            law: n.law,
            pt: n.pt,
            telephone_event: n.telephone_event,
            direction: n.direction.answer(),
            webrtc: None,
            sdes: None,
        };
        let text = local.answer(&offer, n.index);
        let back = SessionDescription::parse(text.as_bytes()).unwrap();
        assert_eq!(back.media.len(), 2);
        assert_eq!(back.media[0].port, 20_000);
        assert_eq!(back.media[0].formats, vec!["0"]);
        assert_eq!(back.media[1].port, 0);
        assert_eq!(back.media[1].media, "video");
        let again = negotiate(&back).unwrap();
        assert_eq!(again.remote, Some("198.51.100.1:20000".parse().unwrap()));
        assert!(text.contains("a=sendrecv"));
        // Our own offer has the event type when asked for.
        let offer_text = LocalMedia {
            telephone_event: Some(101),
            ..local
        }
        .offer();
        let o = negotiate(&SessionDescription::parse(offer_text.as_bytes()).unwrap()).unwrap();
        assert_eq!(o.telephone_event, Some(101));
    }
}
