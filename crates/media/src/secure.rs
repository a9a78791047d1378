//! Encrypted legs, sans-IO: a browser's WebRTC leg (ICE-lite, DTLS-SRTP, rtcp-mux).
//!
//! A leg with a [`WebRtcLeg`] takes every datagram that reaches its RTP port through
//! [`WebRtcLeg::receive`], which sorts them by their first byte (RFC 7983): STUN checks are
//! answered ([`crate::ice`]), DTLS records go to the leg's DTLS server, and SRTP/SRTCP are
//! decrypted into the plain RTP/RTCP the relay works on. Whatever the leg sends goes through
//! [`WebRtcLeg::protect_rtp`] / [`WebRtcLeg::protect_rtcp`]; STUN responses and DTLS flights
//! wait in [`WebRtcLeg::poll_transmit`]; DTLS retransmissions are timed by
//! [`WebRtcLeg::poll_timeout`] / [`WebRtcLeg::handle_timeout`]. It reads no clock and owns
//! no socket.
//!
//! Trust: DTLS is accepted only from the address of a valid ICE check (which needed our ICE
//! password, sent only in our SDP), and media flows only once the browser's DTLS certificate
//! matches the `a=fingerprint` of its SDP answer (RFC 8122, RFC 5763 §5). The relay is always
//! the DTLS server: its offer says `a=setup:actpass`, and a browser answers `active`.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use bytes::BytesMut;
use rtc_dtls::config::{ClientAuthType, ConfigBuilder, ExtendedMasterSecretType, HandshakeConfig};
use rtc_dtls::crypto::Certificate;
use rtc_dtls::crypto_provider::RTCCryptoProvider;
use rtc_dtls::endpoint::{Endpoint, EndpointEvent};
use rtc_dtls::extension::extension_use_srtp::SrtpProtectionProfile;
use rtc_shared::TransportProtocol;
use rtc_srtp::config::{Config as SrtpConfig, LABEL_EXTRACTOR_DTLS_SRTP};
use rtc_srtp::context::Context;
use rtc_srtp::option::{srtcp_replay_protection, srtp_replay_protection};
use rtc_srtp::protection_profile::ProtectionProfile;
use sha2::{Digest, Sha256};
use tracing::{debug, warn};

use crate::ice::{self, Check};

/// Why an encrypted leg could not be set up.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SecureError {
    /// The crypto provider or the certificate could not be made.
    #[error("DTLS identity: {0}")]
    Identity(String),
}

/// The relay's DTLS certificate and the handshake settings every WebRTC leg shares: made once
/// when the relay starts; its SHA-256 fingerprint goes into every WebRTC offer.
pub struct DtlsIdentity {
    config: Arc<HandshakeConfig>,
    provider: Arc<dyn RTCCryptoProvider>,
    fingerprint: String,
}

impl std::fmt::Debug for DtlsIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DtlsIdentity")
            .field("fingerprint", &self.fingerprint)
            .finish_non_exhaustive()
    }
}

/// `AB:CD:…` of a SHA-256 digest, as `a=fingerprint` writes it.
fn colon_hex(digest: &[u8]) -> String {
    digest
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

impl DtlsIdentity {
    /// A fresh self-signed certificate (ECDSA P-256) and the server's handshake settings:
    /// DTLS 1.2, extended master secret required, a client certificate required (its
    /// fingerprint is checked against the SDP), SRTP_AES128_CM_HMAC_SHA1_80.
    pub fn generate() -> Result<DtlsIdentity, SecureError> {
        let provider = rtc_dtls::crypto_provider::default_provider()
            .map_err(|e| SecureError::Identity(e.to_string()))?;
        let cert =
            Certificate::generate_self_signed(vec!["switchboard".to_owned()], provider.crypto())
                .map_err(|e| SecureError::Identity(e.to_string()))?;
        let der = cert
            .certificate
            .first()
            .ok_or_else(|| SecureError::Identity("no certificate".into()))?;
        let fingerprint = colon_hex(&Sha256::digest(der.as_ref()));
        let config = ConfigBuilder::default()
            .with_crypto_provider(provider.clone())
            .with_certificates(vec![cert])
            .with_srtp_protection_profiles(vec![SrtpProtectionProfile::Srtp_Aes128_Cm_Hmac_Sha1_80])
            .with_extended_master_secret(ExtendedMasterSecretType::Require)
            .with_client_auth(ClientAuthType::RequireAnyClientCert)
            // Browsers sign their certificates themselves: trust comes from the fingerprint.
            .with_insecure_skip_verify(true)
            .build(false, None)
            .map_err(|e| SecureError::Identity(e.to_string()))?;
        Ok(DtlsIdentity {
            config: Arc::new(config),
            provider,
            fingerprint,
        })
    }

    /// `AB:CD:…`, the SHA-256 fingerprint of the certificate (for `a=fingerprint:sha-256`).
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }
}

/// What a datagram on a WebRTC leg turned out to be.
#[derive(Debug)]
pub enum Received {
    /// Decrypted RTP for the relay.
    Rtp(BytesMut),
    /// Decrypted RTCP (rtcp-mux).
    Rtcp(BytesMut),
    /// A valid ICE check: answered. `nominated` when the browser chose this address.
    Checked {
        /// Where the check came from (where the leg's media now goes).
        from: SocketAddr,
        /// The check carried USE-CANDIDATE.
        nominated: bool,
    },
    /// DTLS handshake traffic: handled (a reply may wait in `poll_transmit`).
    Handshake,
    /// Nothing usable: an invalid check, DTLS or SRTP from an address ICE did not check,
    /// SRTP before the keys, a packet that fails authentication.
    Dropped(&'static str),
}

/// The browser side's parameters from its SDP (`a=ice-ufrag`, `a=fingerprint`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteWebRtc {
    /// SHA-256 fingerprint of the browser's DTLS certificate, as in the SDP.
    pub fingerprint: Option<String>,
}

/// One browser leg: ICE-lite responder, DTLS server, SRTP contexts.
pub struct WebRtcLeg {
    ufrag: String,
    pwd: String,
    dtls: Endpoint,
    provider: Arc<dyn RTCCryptoProvider>,
    /// The address of the last valid check (nominated first): media goes there.
    peer: Option<SocketAddr>,
    /// The browser's certificate digest, from the SDP answer (lower-case hex bytes).
    expected: Option<Vec<u8>>,
    /// The digest of the certificate the browser presented in DTLS.
    presented: Option<Vec<u8>>,
    /// Inbound and outbound SRTP, once the handshake is done and the certificate matched.
    srtp: Option<(Context, Context)>,
    /// Keys waiting for the fingerprint check (handshake done before the SDP answer came).
    pending_keys: Option<SrtpConfig>,
    transmits: VecDeque<(SocketAddr, Vec<u8>)>,
    refused: bool,
}

impl std::fmt::Debug for WebRtcLeg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebRtcLeg")
            .field("ufrag", &self.ufrag)
            .field("peer", &self.peer)
            .field("keyed", &self.srtp.is_some())
            .finish_non_exhaustive()
    }
}

/// Parse `AB:CD:…` into bytes.
fn parse_fingerprint(s: &str) -> Option<Vec<u8>> {
    let s = s.trim();
    let hex = s
        .strip_prefix("sha-256 ")
        .or_else(|| s.strip_prefix("SHA-256 "))
        .unwrap_or(s)
        .trim();
    let out: Option<Vec<u8>> = hex
        .split(':')
        .map(|b| u8::from_str_radix(b, 16).ok())
        .collect();
    out.filter(|v| v.len() == 32)
}

impl WebRtcLeg {
    /// A leg answering checks for `ufrag`/`pwd` (our `a=ice-ufrag`/`a=ice-pwd`), with the
    /// relay's DTLS identity; `local` is the leg's socket address (for DTLS bookkeeping).
    pub fn new(
        identity: &DtlsIdentity,
        ufrag: String,
        pwd: String,
        local: SocketAddr,
    ) -> WebRtcLeg {
        WebRtcLeg {
            ufrag,
            pwd,
            dtls: Endpoint::new(local, TransportProtocol::UDP, Some(identity.config.clone())),
            provider: identity.provider.clone(),
            peer: None,
            expected: None,
            presented: None,
            srtp: None,
            pending_keys: None,
            transmits: VecDeque::new(),
            refused: false,
        }
    }

    /// Our ICE credentials.
    pub fn credentials(&self) -> (&str, &str) {
        (&self.ufrag, &self.pwd)
    }

    /// Where the browser's media comes from and ours goes: the last checked address.
    pub fn peer(&self) -> Option<SocketAddr> {
        self.peer
    }

    /// Keys are in place: media flows.
    pub fn is_keyed(&self) -> bool {
        self.srtp.is_some()
    }

    /// The browser's SDP answer arrived: its certificate must have this fingerprint.
    pub fn set_remote(&mut self, remote: &RemoteWebRtc) {
        let expected = remote.fingerprint.as_deref().and_then(parse_fingerprint);
        if expected.is_none() {
            warn!("WebRTC answer without a usable sha-256 fingerprint: no media on this leg");
        }
        self.expected = expected;
        self.try_key();
    }

    /// A datagram that reached the leg's port.
    pub fn receive(&mut self, now: Instant, from: SocketAddr, data: &[u8]) -> Received {
        let Some(&first) = data.first() else {
            return Received::Dropped("empty");
        };
        match first {
            0..=3 => match ice::answer(data, from, &self.ufrag, &self.pwd) {
                Check::Valid {
                    response,
                    nominated,
                } => {
                    self.transmits.push_back((from, response));
                    if nominated || self.peer.is_none() {
                        self.peer = Some(from);
                    }
                    Received::Checked { from, nominated }
                }
                Check::Invalid => Received::Dropped("invalid ICE check"),
            },
            20..=63 => {
                if self.peer != Some(from) {
                    return Received::Dropped("DTLS from an address ICE did not check");
                }
                self.dtls_read(now, from, data);
                Received::Handshake
            }
            128..=191 => {
                if self.peer != Some(from) {
                    return Received::Dropped("SRTP from an address ICE did not check");
                }
                let Some((inbound, _)) = self.srtp.as_mut() else {
                    return Received::Dropped("SRTP before the keys");
                };
                // rtcp-mux (RFC 5761 §4): RTCP packet types 192-223 where RTP has its
                // payload type (with the marker bit).
                let is_rtcp = data.len() > 1 && (192..=223).contains(&data[1]);
                if is_rtcp {
                    match inbound.decrypt_rtcp(data) {
                        Ok(p) => Received::Rtcp(p),
                        Err(_) => Received::Dropped("SRTCP failed authentication"),
                    }
                } else {
                    match inbound.decrypt_rtp(data) {
                        Ok(p) => Received::Rtp(p),
                        Err(_) => Received::Dropped("SRTP failed authentication"),
                    }
                }
            }
            _ => Received::Dropped("not STUN, DTLS or RTP"),
        }
    }

    fn dtls_read(&mut self, now: Instant, from: SocketAddr, data: &[u8]) {
        match self.dtls.read(now, from, None, BytesMut::from(data)) {
            Ok(events) => {
                for ev in events {
                    match ev {
                        EndpointEvent::HandshakeComplete => self.handshake_done(from),
                        EndpointEvent::PeerClosed => {
                            debug!(remote = %from, "browser closed DTLS");
                            self.srtp = None;
                        }
                        _ => {}
                    }
                }
            }
            Err(e) => debug!(remote = %from, error = %e, "DTLS record refused"),
        }
        self.drain_dtls();
    }

    fn drain_dtls(&mut self) {
        while let Some(t) = self.dtls.poll_transmit() {
            self.transmits
                .push_back((t.transport.peer_addr, t.message.to_vec()));
        }
    }

    fn handshake_done(&mut self, from: SocketAddr) {
        let Some(state) = self.dtls.get_connection_state(from) else {
            return;
        };
        self.presented = state
            .peer_certificates
            .first()
            .map(|der| Sha256::digest(der).to_vec());
        let mut cfg = SrtpConfig {
            profile: match state.srtp_protection_profile() {
                SrtpProtectionProfile::Srtp_Aes128_Cm_Hmac_Sha1_80 => {
                    ProtectionProfile::Aes128CmHmacSha1_80
                }
                other => {
                    warn!(profile = ?other, "DTLS negotiated an SRTP profile we did not offer");
                    return;
                }
            },
            ..Default::default()
        };
        let material = match state.export_keying_material(
            LABEL_EXTRACTOR_DTLS_SRTP,
            &[],
            cfg.keying_material_len(),
        ) {
            Ok(m) => m,
            Err(e) => {
                warn!(error = %e, "no SRTP keys from the DTLS handshake");
                return;
            }
        };
        if cfg
            .set_session_keys_from_keying_material(material.as_ref(), false)
            .is_err()
        {
            return;
        }
        self.pending_keys = Some(cfg);
        self.try_key();
    }

    /// Install the SRTP keys once both the handshake and the SDP answer are in and the
    /// certificate matches.
    fn try_key(&mut self) {
        if self.srtp.is_some() || self.refused {
            return;
        }
        let (Some(expected), Some(presented)) = (&self.expected, &self.presented) else {
            return;
        };
        if expected != presented {
            warn!(
                expected = %colon_hex(expected),
                presented = %colon_hex(presented),
                "browser's DTLS certificate does not match its SDP fingerprint: media refused"
            );
            self.refused = true;
            self.pending_keys = None;
            return;
        }
        let Some(cfg) = self.pending_keys.take() else {
            return;
        };
        let crypto = self.provider.crypto();
        let k = &cfg.keys;
        let inbound = Context::new(
            &k.remote_master_key,
            &k.remote_master_salt,
            cfg.profile,
            Some(srtp_replay_protection(256)),
            Some(srtcp_replay_protection(256)),
            crypto,
        );
        let outbound = Context::new(
            &k.local_master_key,
            &k.local_master_salt,
            cfg.profile,
            None,
            None,
            crypto,
        );
        match (inbound, outbound) {
            (Ok(i), Ok(o)) => {
                debug!(peer = ?self.peer, "WebRTC leg keyed (DTLS-SRTP)");
                self.srtp = Some((i, o));
            }
            _ => warn!("SRTP contexts could not be made"),
        }
    }

    /// Encrypt an RTP packet for the browser; `None` before the keys (nothing may go out in
    /// the clear).
    pub fn protect_rtp(&mut self, packet: &[u8]) -> Option<BytesMut> {
        self.srtp.as_mut()?.1.encrypt_rtp(packet).ok()
    }

    /// Encrypt an RTCP packet for the browser; `None` before the keys.
    pub fn protect_rtcp(&mut self, packet: &[u8]) -> Option<BytesMut> {
        self.srtp.as_mut()?.1.encrypt_rtcp(packet).ok()
    }

    /// A datagram to send (a STUN response, a DTLS flight) and where to.
    pub fn poll_transmit(&mut self) -> Option<(SocketAddr, Vec<u8>)> {
        self.transmits.pop_front()
    }

    /// When the DTLS handshake next needs [`WebRtcLeg::handle_timeout`].
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.peer.and_then(|p| self.dtls.poll_timeout(&p))
    }

    /// Retransmit a DTLS flight that is due.
    pub fn handle_timeout(&mut self, now: Instant) {
        let keys: Vec<SocketAddr> = self.dtls.get_connections_keys().copied().collect();
        for remote in keys {
            if self.dtls.poll_timeout(&remote).is_some_and(|t| t <= now) {
                if let Err(e) = self.dtls.handle_timeout(remote, now) {
                    debug!(remote = %remote, error = %e, "DTLS handshake gave up");
                }
            }
        }
        self.drain_dtls();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_parse_and_print_alike() {
        let id = DtlsIdentity::generate().unwrap();
        let fp = id.fingerprint().to_owned();
        assert_eq!(fp.len(), 32 * 3 - 1);
        let bytes = parse_fingerprint(&fp).unwrap();
        assert_eq!(colon_hex(&bytes), fp);
        assert_eq!(parse_fingerprint(&format!("sha-256 {fp}")).unwrap(), bytes);
        assert!(parse_fingerprint("sha-1 AB:CD").is_none());
        assert!(parse_fingerprint("zz").is_none());
    }
}

#[cfg(test)]
mod handshake {
    use super::*;
    use rtc_dtls::config::ConfigBuilder;

    const SERVER: &str = "127.0.0.1:40000";
    const BROWSER: &str = "127.0.0.1:50000";

    /// A DTLS client in the browser's place: its own certificate, SRTP_AES128_CM_HMAC_SHA1_80.
    fn browser() -> (
        Endpoint,
        Arc<HandshakeConfig>,
        String,
        Arc<dyn RTCCryptoProvider>,
    ) {
        let provider = rtc_dtls::crypto_provider::default_provider().unwrap();
        let cert =
            Certificate::generate_self_signed(vec!["browser".into()], provider.crypto()).unwrap();
        let fp = colon_hex(&Sha256::digest(cert.certificate[0].as_ref()));
        let cfg = ConfigBuilder::default()
            .with_crypto_provider(provider.clone())
            .with_certificates(vec![cert])
            .with_srtp_protection_profiles(vec![SrtpProtectionProfile::Srtp_Aes128_Cm_Hmac_Sha1_80])
            .with_extended_master_secret(ExtendedMasterSecretType::Require)
            .with_insecure_skip_verify(true)
            .build(true, Some(SERVER.parse().unwrap()))
            .unwrap();
        let ep = Endpoint::new(BROWSER.parse().unwrap(), TransportProtocol::UDP, None);
        (ep, Arc::new(cfg), fp, provider)
    }

    fn rtp(seq: u16) -> Vec<u8> {
        let mut p = vec![0x80, 0, 0, 0, 0, 0, 0, 160, 1, 2, 3, 4];
        p[2..4].copy_from_slice(&seq.to_be_bytes());
        p.extend_from_slice(&[0x55; 160]);
        p
    }

    /// Run the handshake between `leg` and a client; the client's SRTP contexts come back.
    fn handshake(
        leg: &mut WebRtcLeg,
        fingerprint_in_sdp: Option<String>,
    ) -> Option<(Context, Context)> {
        let (server, browser_at) = (SERVER.parse().unwrap(), BROWSER.parse().unwrap());
        let (mut client, cfg, fp, provider) = browser();
        let now = Instant::now();
        // ICE first: a valid check makes the browser's address the leg's peer.
        let check = crate::ice::request("srv:brw", "server-password-0123456789abc", true);
        assert!(matches!(
            leg.receive(now, browser_at, &check),
            Received::Checked {
                nominated: true,
                ..
            }
        ));
        assert!(leg.poll_transmit().is_some(), "check answered");
        leg.set_remote(&RemoteWebRtc {
            fingerprint: Some(fingerprint_in_sdp.unwrap_or(fp)),
        });
        client.connect(now, server, cfg, None).unwrap();
        let mut done = false;
        for _ in 0..20 {
            while let Some(t) = client.poll_transmit() {
                assert!(matches!(
                    leg.receive(now, browser_at, &t.message),
                    Received::Handshake
                ));
            }
            while let Some((to, d)) = leg.poll_transmit() {
                assert_eq!(to, browser_at);
                for ev in client
                    .read(now, server, None, BytesMut::from(&d[..]))
                    .unwrap()
                {
                    if matches!(ev, EndpointEvent::HandshakeComplete) {
                        done = true;
                    }
                }
            }
            if done && client.poll_transmit().is_none() {
                break;
            }
        }
        assert!(done, "handshake completed");
        let state = client.get_connection_state(server).unwrap();
        let mut keys = SrtpConfig::default();
        let km = state
            .export_keying_material(LABEL_EXTRACTOR_DTLS_SRTP, &[], keys.keying_material_len())
            .unwrap();
        keys.set_session_keys_from_keying_material(km.as_ref(), true)
            .unwrap();
        let k = &keys.keys;
        let out = Context::new(
            &k.local_master_key,
            &k.local_master_salt,
            keys.profile,
            None,
            None,
            provider.crypto(),
        )
        .ok()?;
        let inb = Context::new(
            &k.remote_master_key,
            &k.remote_master_salt,
            keys.profile,
            None,
            None,
            provider.crypto(),
        )
        .ok()?;
        Some((out, inb))
    }

    fn leg() -> WebRtcLeg {
        let id = DtlsIdentity::generate().unwrap();
        WebRtcLeg::new(
            &id,
            "srv".into(),
            "server-password-0123456789abc".into(),
            SERVER.parse().unwrap(),
        )
    }

    #[test]
    fn a_browser_handshake_keys_srtp_both_ways() {
        let mut leg = leg();
        assert!(
            leg.protect_rtp(&rtp(1)).is_none(),
            "nothing goes out in the clear"
        );
        let (mut out, mut inb) = handshake(&mut leg, None).unwrap();
        assert!(leg.is_keyed());
        let now = Instant::now();
        let browser_at: SocketAddr = BROWSER.parse().unwrap();
        // Browser to relay.
        let sent = out.encrypt_rtp(&rtp(7)).unwrap();
        assert_ne!(&sent[12..], &rtp(7)[12..], "encrypted");
        match leg.receive(now, browser_at, &sent) {
            Received::Rtp(p) => assert_eq!(&p[..], &rtp(7)[..]),
            other => panic!("{other:?}"),
        }
        // The same packet again is a replay.
        assert!(matches!(
            leg.receive(now, browser_at, &sent),
            Received::Dropped(_)
        ));
        // From anywhere else: dropped before decryption.
        let other: SocketAddr = "127.0.0.1:50001".parse().unwrap();
        let sent = out.encrypt_rtp(&rtp(8)).unwrap();
        assert!(matches!(
            leg.receive(now, other, &sent),
            Received::Dropped(_)
        ));
        // Relay to browser.
        let protected = leg.protect_rtp(&rtp(100)).unwrap();
        assert_eq!(&inb.decrypt_rtp(&protected).unwrap()[..], &rtp(100)[..]);
    }

    #[test]
    fn a_certificate_that_is_not_the_one_in_the_sdp_gets_no_keys() {
        let mut leg = leg();
        let wrong = colon_hex(&[0xAB; 32]);
        let _ = handshake(&mut leg, Some(wrong));
        assert!(!leg.is_keyed());
        assert!(leg.protect_rtp(&rtp(1)).is_none());
    }

    #[test]
    fn a_check_without_our_password_is_not_answered() {
        let mut leg = leg();
        let check = crate::ice::request("srv:brw", "guessed", true);
        let from: SocketAddr = BROWSER.parse().unwrap();
        assert!(matches!(
            leg.receive(Instant::now(), from, &check),
            Received::Dropped(_)
        ));
        assert!(leg.poll_transmit().is_none());
        assert!(leg.peer().is_none());
    }
}

/// SRTP keyed in the SDP (RFC 4568, `a=crypto`), for desk phones over TLS: AES_CM_128 with
/// HMAC-SHA1-80, our key for what we send, the phone's for what it sends. RTCP on its own
/// port, as SRTCP.
pub struct SdesLeg {
    inbound: Context,
    outbound: Context,
    local: String,
    remote: String,
}

impl std::fmt::Debug for SdesLeg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SdesLeg").finish_non_exhaustive()
    }
}

/// Key and salt of AES_CM_128_HMAC_SHA1_80: 16 + 14 octets.
const SDES_KEY_LEN: usize = 30;

/// Whether `b64` is a usable AES_CM_128_HMAC_SHA1_80 master key and salt.
pub fn is_sdes_key(b64: &str) -> bool {
    sdes_key(b64).is_some()
}

fn sdes_key(b64: &str) -> Option<Vec<u8>> {
    use base64::Engine as _;
    let k = base64::engine::general_purpose::STANDARD
        .decode(b64.trim())
        .ok()?;
    (k.len() == SDES_KEY_LEN).then_some(k)
}

/// Our SDES key for one leg of one call: derived from the server's secret (drawn from the
/// operating system at start), so call control, which draws no randomness of its own, can
/// write it into the SDP; base64 of 30 octets.
pub fn derive_sdes_key(secret: &[u8; 32], call: u64, leg: u8, version: u64) -> String {
    use base64::Engine as _;
    use hmac::{Hmac, Mac};
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("any key length");
    mac.update(b"switchboard sdes");
    mac.update(&call.to_be_bytes());
    mac.update(&[leg]);
    mac.update(&version.to_be_bytes());
    let out = mac.finalize().into_bytes();
    base64::engine::general_purpose::STANDARD.encode(&out[..SDES_KEY_LEN])
}

/// An ICE password (`a=ice-pwd`) for one offer: 32 hex digits derived like SDES keys.
pub fn derive_ice_pwd(secret: &[u8; 32], call: u64, attempt: u64) -> String {
    use hmac::{Hmac, Mac};
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("any key length");
    mac.update(b"switchboard ice");
    mac.update(&call.to_be_bytes());
    mac.update(&attempt.to_be_bytes());
    mac.finalize().into_bytes()[..16]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

impl SdesLeg {
    /// A leg sending with `local` and receiving with `remote` (base64 key and salt).
    pub fn new(local: &str, remote: &str) -> Result<SdesLeg, SecureError> {
        let (Some(l), Some(r)) = (sdes_key(local), sdes_key(remote)) else {
            return Err(SecureError::Identity(
                "an SDES key is not 30 octets of base64".into(),
            ));
        };
        let provider = rtc_dtls::crypto_provider::default_provider()
            .map_err(|e| SecureError::Identity(e.to_string()))?;
        let profile = ProtectionProfile::Aes128CmHmacSha1_80;
        let make = |k: &[u8], replay: bool| {
            Context::new(
                &k[..16],
                &k[16..],
                profile,
                replay.then(|| srtp_replay_protection(256)),
                replay.then(|| srtcp_replay_protection(256)),
                provider.crypto(),
            )
            .map_err(|e| SecureError::Identity(e.to_string()))
        };
        Ok(SdesLeg {
            inbound: make(&r, true)?,
            outbound: make(&l, false)?,
            local: local.to_owned(),
            remote: remote.to_owned(),
        })
    }

    /// The keys (ours, the phone's) the leg was made with.
    pub fn keys(&self) -> (&str, &str) {
        (&self.local, &self.remote)
    }

    /// The phone re-keyed (a re-INVITE with a new `a=crypto`): a new inbound context; ours
    /// stays as it is.
    pub fn set_remote(&mut self, remote: &str) -> Result<(), SecureError> {
        let fresh = SdesLeg::new(&self.local, remote)?;
        self.inbound = fresh.inbound;
        self.remote = remote.to_owned();
        Ok(())
    }

    /// Decrypt and authenticate an SRTP packet; `None` when it fails (a stranger, a replay).
    pub fn unprotect_rtp(&mut self, packet: &[u8]) -> Option<BytesMut> {
        self.inbound.decrypt_rtp(packet).ok()
    }

    /// Decrypt and authenticate an SRTCP packet.
    pub fn unprotect_rtcp(&mut self, packet: &[u8]) -> Option<BytesMut> {
        self.inbound.decrypt_rtcp(packet).ok()
    }

    /// Encrypt an RTP packet.
    pub fn protect_rtp(&mut self, packet: &[u8]) -> Option<BytesMut> {
        self.outbound.encrypt_rtp(packet).ok()
    }

    /// Encrypt an RTCP packet.
    pub fn protect_rtcp(&mut self, packet: &[u8]) -> Option<BytesMut> {
        self.outbound.encrypt_rtcp(packet).ok()
    }
}

#[cfg(test)]
mod sdes {
    use super::*;

    #[test]
    fn two_sdes_legs_with_each_others_keys_talk_and_others_cannot_listen() {
        let secret = [7u8; 32];
        let (a_key, b_key) = (
            derive_sdes_key(&secret, 1, 0, 1),
            derive_sdes_key(&secret, 1, 1, 1),
        );
        assert_ne!(a_key, b_key);
        assert_eq!(a_key, derive_sdes_key(&secret, 1, 0, 1), "deterministic");
        let mut a = SdesLeg::new(&a_key, &b_key).unwrap();
        let mut b = SdesLeg::new(&b_key, &a_key).unwrap();
        let mut rtp = vec![0x80, 0, 0, 1, 0, 0, 0, 160, 9, 9, 9, 9];
        rtp.extend_from_slice(&[0x55; 160]);
        let wire = a.protect_rtp(&rtp).unwrap();
        assert_eq!(wire.len(), rtp.len() + 10, "80-bit tag");
        assert!(
            !wire.windows(16).any(|w| w == [0x55; 16]),
            "payload encrypted"
        );
        assert_eq!(&b.unprotect_rtp(&wire).unwrap()[..], &rtp[..]);
        assert!(b.unprotect_rtp(&wire).is_none(), "replay refused");
        let mut eve = SdesLeg::new(
            &derive_sdes_key(&secret, 2, 1, 1),
            &derive_sdes_key(&secret, 2, 0, 1),
        )
        .unwrap();
        let wire = a.protect_rtp(&rtp).unwrap();
        assert!(
            eve.unprotect_rtp(&wire).is_none(),
            "another key cannot read it"
        );
        assert!(SdesLeg::new("short", &a_key).is_err());
    }
}
