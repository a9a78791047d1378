//! The endpoint driven the way phones drive it, in virtual time: REGISTER with digest
//! (MD5 and SHA-256), NAT fields, bans, rate limits, qualify, CANCEL races, shutdown.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use md5::{Digest as _, Md5};
use sha2::Sha256;
use sip::digest::{Algorithm, UserSecret};
use sip::endpoint::{
    AuthConfig, CallAuthConfig, Caller, RateLimit, SecurityConfig, SipEvent, Trunk,
};
use sip::header::{NameAddr, Via};
use sip::message::{Headers, Message, Response};
use sip::parse::parse_message;
use sip::registrar::{BindingChange, RegistrarConfig, RemovalReason};
use sip::{ConnId, Endpoint, EndpointConfig, Flow, Transport, UserAccount};

const PHONE: &str = "203.0.113.7:5062";

fn users(algorithms: Option<Vec<Algorithm>>) -> HashMap<String, UserAccount> {
    (1001..=1010)
        .map(|u| {
            (
                u.to_string(),
                UserAccount {
                    secret: UserSecret::Password(format!("demo{u}")),
                    algorithms: algorithms.clone(),
                    max_contacts: None,
                    require_tls: false,
                },
            )
        })
        .collect()
}

fn config() -> EndpointConfig {
    EndpointConfig {
        realm: "switchboard".into(),
        registrar: RegistrarConfig {
            qualify_interval: None,
            ..Default::default()
        },
        security: SecurityConfig {
            rate_limit: None,
            max_auth_failures: 3,
            ..Default::default()
        },
        calls: CallAuthConfig {
            trunks: vec![Trunk {
                name: "carrier".into(),
                addresses: vec![CARRIER.parse().unwrap()],
                numbers: vec!["600".into()],
                username: None,
            }],
            challenge: true,
        },
        ..Default::default()
    }
}

/// The trunk's source address; the INVITE tests below call from it unless they test auth.
const CARRIER: &str = "10.0.0.5";

fn udp(remote: &str) -> Flow {
    Flow {
        transport: Transport::Udp,
        remote: remote.parse().unwrap(),
        conn: None,
    }
}

struct Phone {
    user: String,
    password: String,
    flow: Flow,
    cseq: u32,
    call_id: String,
    branch: u32,
    /// The Via host the phone believes it has (behind NAT: a private address).
    via: String,
}

impl Phone {
    fn new(user: u32, flow: Flow) -> Phone {
        Phone {
            user: user.to_string(),
            password: format!("demo{user}"),
            flow,
            cseq: 0,
            call_id: format!("reg-{user}@192.168.1.20"),
            branch: 0,
            via: "192.168.1.20:5062".into(),
        }
    }

    fn register(&mut self, contact: &str, expires: Option<u32>, auth: Option<String>) -> Vec<u8> {
        self.cseq += 1;
        self.branch += 1;
        let mut m = format!(
            "REGISTER sip:switchboard SIP/2.0\r\n\
             Via: SIP/2.0/{} {};branch=z9hG4bK-{}-{};rport\r\n\
             Max-Forwards: 70\r\n\
             From: <sip:{}@switchboard>;tag=ph{}\r\n\
             To: <sip:{}@switchboard>\r\n\
             Call-ID: {}\r\n\
             CSeq: {} REGISTER\r\n\
             Contact: {}\r\n",
            self.flow.transport.as_str(),
            self.via,
            self.user,
            self.branch,
            self.user,
            self.user,
            self.user,
            self.call_id,
            self.cseq,
            contact
        );
        if let Some(e) = expires {
            m.push_str(&format!("Expires: {e}\r\n"));
        }
        if let Some(a) = auth {
            m.push_str(&format!("Authorization: {a}\r\n"));
        }
        m.push_str("Content-Length: 0\r\n\r\n");
        m.into_bytes()
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn h(alg: Algorithm, s: &str) -> String {
    match alg {
        Algorithm::Sha256 | Algorithm::Sha256Sess => hex(&Sha256::digest(s.as_bytes())),
        _ => hex(&Md5::digest(s.as_bytes())),
    }
}

/// A phone's digest answer to a WWW-Authenticate challenge (RFC 7616 §3.4.1, qop=auth).
fn answer_challenge(challenge: &str, user: &str, password: &str, nc: u32) -> String {
    answer_challenge_for(challenge, user, password, nc, "REGISTER", "sip:switchboard")
}

/// The same for any method and request URI (a 407 to an INVITE).
fn answer_challenge_for(
    challenge: &str,
    user: &str,
    password: &str,
    nc: u32,
    method: &str,
    uri: &str,
) -> String {
    let param = |name: &str| -> Option<String> {
        let i = challenge.find(&format!("{name}="))?;
        let rest = &challenge[i + name.len() + 1..];
        Some(if let Some(r) = rest.strip_prefix('"') {
            r[..r.find('"')?].to_owned()
        } else {
            rest.split([',', ' ']).next()?.to_owned()
        })
    };
    let realm = param("realm").unwrap();
    let nonce = param("nonce").unwrap();
    let alg: Algorithm = param("algorithm").unwrap_or("MD5".into()).parse().unwrap();
    let cnonce = "0a4f113b";
    let nc = format!("{nc:08x}");
    let ha1 = h(alg, &format!("{user}:{realm}:{password}"));
    let ha2 = h(alg, &format!("{method}:{uri}"));
    let resp = h(alg, &format!("{ha1}:{nonce}:{nc}:{cnonce}:auth:{ha2}"));
    format!(
        "Digest username=\"{user}\", realm=\"{realm}\", nonce=\"{nonce}\", uri=\"{uri}\", \
         response=\"{resp}\", algorithm={alg}, cnonce=\"{cnonce}\", qop=auth, nc={nc}"
    )
}

/// Feed one message; return the responses sent (with their destination).
fn exchange(ep: &mut Endpoint, now: Instant, flow: Flow, data: &[u8]) -> Vec<(Flow, Response)> {
    // Fire due timers first, as the driver does before it reads the socket.
    if ep.poll_timeout().is_some_and(|t| t <= now) {
        ep.handle_timeout(now);
    }
    ep.handle_message(now, flow, data);
    let mut out = Vec::new();
    while let Some(t) = ep.poll_transmit() {
        if let Ok(Message::Response(r)) = parse_message(&t.payload, 65_535) {
            out.push((t.flow, r));
        }
    }
    out
}

fn events(ep: &mut Endpoint) -> Vec<SipEvent> {
    std::iter::from_fn(|| ep.poll_event()).collect()
}

/// Register a phone all the way (challenge, answer); returns the 200 OK.
fn register_ok(ep: &mut Endpoint, now: Instant, phone: &mut Phone, contact: &str) -> Response {
    let r = exchange(ep, now, phone.flow, &phone.register(contact, None, None));
    assert_eq!(r.len(), 1);
    assert_eq!(r[0].1.status, 401);
    let ch = r[0].1.headers.get("WWW-Authenticate").unwrap().to_owned();
    let auth = answer_challenge(&ch, &phone.user, &phone.password, 1);
    let r = exchange(
        ep,
        now,
        phone.flow,
        &phone.register(contact, None, Some(auth)),
    );
    assert_eq!(r.len(), 1, "{r:?}");
    assert_eq!(r[0].1.status, 200, "{:?}", r[0].1);
    r[0].1.clone()
}

#[test]
fn md5_register_challenge_then_200_with_contact_and_nat_fields() {
    let t0 = Instant::now();
    let mut ep = Endpoint::new(config(), users(None), t0);
    let mut phone = Phone::new(1001, udp(PHONE));
    let r = exchange(
        &mut ep,
        t0,
        phone.flow,
        &phone.register("<sip:1001@192.168.1.20:5062>", None, None),
    );
    let (dest, resp) = &r[0];
    assert_eq!(resp.status, 401);
    assert_eq!(
        dest.remote,
        PHONE.parse::<SocketAddr>().unwrap(),
        "answer goes to the NAT address"
    );
    let via = Via::parse(resp.headers.get("Via").unwrap()).unwrap();
    assert_eq!(via.params.value("received"), Some("203.0.113.7"));
    assert_eq!(via.params.value("rport"), Some("5062"));
    let challenges: Vec<_> = resp.headers.get_all("WWW-Authenticate").collect();
    assert_eq!(challenges.len(), 1);
    assert!(challenges[0].contains("algorithm=MD5"), "{}", challenges[0]);
    assert!(challenges[0].contains("qop=\"auth\""), "{}", challenges[0]);

    let ok = register_ok(&mut ep, t0, &mut phone, "<sip:1001@192.168.1.20:5062>");
    let contact = NameAddr::parse(ok.headers.get("Contact").unwrap()).unwrap();
    assert_eq!(contact.uri_text, "sip:1001@192.168.1.20:5062");
    assert_eq!(contact.params.value("expires"), Some("3600"));
    // The binding remembers the flow it came from, not the private Contact address.
    let b = &ep.registrar().lookup("1001")[0];
    assert_eq!(b.flow.remote, PHONE.parse::<SocketAddr>().unwrap());
    assert!(matches!(
        events(&mut ep).as_slice(),
        [SipEvent::Binding(BindingChange::Added { .. })]
    ));
}

#[test]
fn sha256_and_md5_both_register_and_are_offered_in_order() {
    let t0 = Instant::now();
    let mut cfg = config();
    cfg.auth = AuthConfig {
        algorithms: vec![Algorithm::Sha256, Algorithm::Md5],
        ..Default::default()
    };
    let mut ep = Endpoint::new(cfg, users(None), t0);
    for (user, pick) in [(1001, 0usize), (1002, 1usize)] {
        let mut phone = Phone::new(user, udp(PHONE));
        phone.call_id = format!("alg-{user}");
        let r = exchange(
            &mut ep,
            t0,
            phone.flow,
            &phone.register("<sip:x@10.0.0.1>", None, None),
        );
        let chs: Vec<String> = r[0]
            .1
            .headers
            .get_all("WWW-Authenticate")
            .map(str::to_owned)
            .collect();
        assert_eq!(chs.len(), 2);
        assert!(chs[0].contains("algorithm=SHA-256"), "{chs:?}");
        assert!(chs[1].contains("algorithm=MD5"), "{chs:?}");
        let auth = answer_challenge(&chs[pick], &phone.user, &phone.password, 1);
        let r = exchange(
            &mut ep,
            t0,
            phone.flow,
            &phone.register("<sip:x@10.0.0.1>", None, Some(auth)),
        );
        assert_eq!(r[0].1.status, 200, "user {user} with challenge {pick}");
    }
}

#[test]
fn per_user_algorithms_override_the_global_list() {
    let t0 = Instant::now();
    let mut u = users(None);
    u.get_mut("1003").unwrap().algorithms = Some(vec![Algorithm::Sha256]);
    let mut ep = Endpoint::new(config(), u, t0);
    let mut phone = Phone::new(1003, udp(PHONE));
    let r = exchange(
        &mut ep,
        t0,
        phone.flow,
        &phone.register("<sip:x@10.0.0.1>", None, None),
    );
    let chs: Vec<_> = r[0].1.headers.get_all("WWW-Authenticate").collect();
    assert_eq!(chs.len(), 1);
    assert!(chs[0].contains("SHA-256"));
}

#[test]
fn wrong_password_and_unknown_user_look_the_same_then_403_and_silence() {
    let t0 = Instant::now();
    let mut ep = Endpoint::new(config(), users(None), t0);
    let mut bad = Phone::new(1001, udp(PHONE));
    bad.password = "wrong".into();
    let mut ghost = Phone::new(9999, udp(PHONE));
    let mut statuses = Vec::new();
    for i in 0..3 {
        let phone = if i == 1 { &mut ghost } else { &mut bad };
        let now = t0 + Duration::from_secs(i as u64);
        let r = exchange(
            &mut ep,
            now,
            phone.flow,
            &phone.register("<sip:x@10.0.0.1>", None, None),
        );
        assert_eq!(r[0].1.status, 401);
        let ch = r[0].1.headers.get("WWW-Authenticate").unwrap().to_owned();
        let auth = answer_challenge(&ch, &phone.user, &phone.password, 1);
        let r = exchange(
            &mut ep,
            now,
            phone.flow,
            &phone.register("<sip:x@10.0.0.1>", None, Some(auth)),
        );
        statuses.push(r.first().map(|x| x.1.status));
    }
    // max_auth_failures = 3: the first two failures get 401, the third 403.
    assert_eq!(statuses, vec![Some(401), Some(401), Some(403)]);
    assert_eq!(ep.stats().bans, 1);
    // Banned: even a correct phone from that address gets no answer at all.
    let mut good = Phone::new(1002, udp(PHONE));
    let r = exchange(
        &mut ep,
        t0 + Duration::from_secs(10),
        good.flow,
        &good.register("<sip:x@10.0.0.1>", None, None),
    );
    assert!(r.is_empty());
    // Another address is unaffected; after the ban the address is served again.
    let mut other = Phone::new(1002, udp("198.51.100.9:5060"));
    register_ok(
        &mut ep,
        t0 + Duration::from_secs(10),
        &mut other,
        "<sip:x@10.0.0.2>",
    );
    let later = t0 + Duration::from_secs(700);
    let r = exchange(
        &mut ep,
        later,
        good.flow,
        &good.register("<sip:x@10.0.0.1>", None, None),
    );
    assert_eq!(r[0].1.status, 401);
}

#[test]
fn credentials_for_another_account_get_403() {
    let t0 = Instant::now();
    let mut ep = Endpoint::new(config(), users(None), t0);
    let mut phone = Phone::new(1001, udp(PHONE));
    let r = exchange(
        &mut ep,
        t0,
        phone.flow,
        &phone.register("<sip:x@10.0.0.1>", None, None),
    );
    let ch = r[0].1.headers.get("WWW-Authenticate").unwrap().to_owned();
    // Valid credentials of 1002 used to register 1001.
    let auth = answer_challenge(&ch, "1002", "demo1002", 1);
    let r = exchange(
        &mut ep,
        t0,
        phone.flow,
        &phone.register("<sip:x@10.0.0.1>", None, Some(auth)),
    );
    assert_eq!(r[0].1.status, 403);
    assert_eq!(ep.registrar().binding_count(), 0);
}

#[test]
fn stale_nonce_gets_stale_true_and_replayed_nc_is_refused() {
    let t0 = Instant::now();
    let mut ep = Endpoint::new(config(), users(None), t0);
    let mut phone = Phone::new(1001, udp(PHONE));
    let r = exchange(
        &mut ep,
        t0,
        phone.flow,
        &phone.register("<sip:x@10.0.0.1>", None, None),
    );
    let ch = r[0].1.headers.get("WWW-Authenticate").unwrap().to_owned();
    let auth1 = answer_challenge(&ch, "1001", "demo1001", 1);
    let r = exchange(
        &mut ep,
        t0,
        phone.flow,
        &phone.register("<sip:x@10.0.0.1>", None, Some(auth1.clone())),
    );
    assert_eq!(r[0].1.status, 200);
    // Reusing nc=1 with the same nonce in a new transaction is a replay.
    let r = exchange(
        &mut ep,
        t0,
        phone.flow,
        &phone.register("<sip:x@10.0.0.1>", None, Some(auth1)),
    );
    assert_eq!(r[0].1.status, 401);
    // nc=2 is fine.
    let auth2 = answer_challenge(&ch, "1001", "demo1001", 2);
    let r = exchange(
        &mut ep,
        t0,
        phone.flow,
        &phone.register("<sip:x@10.0.0.1>", None, Some(auth2)),
    );
    assert_eq!(r[0].1.status, 200);
    // Past the nonce lifetime (300 s): stale=true, and the phone simply retries.
    let later = t0 + Duration::from_secs(301);
    let auth3 = answer_challenge(&ch, "1001", "demo1001", 3);
    let r = exchange(
        &mut ep,
        later,
        phone.flow,
        &phone.register("<sip:x@10.0.0.1>", None, Some(auth3)),
    );
    assert_eq!(r[0].1.status, 401);
    assert!(r[0]
        .1
        .headers
        .get("WWW-Authenticate")
        .unwrap()
        .contains("stale=true"));
    assert_eq!(
        ep.stats().auth_failures,
        1,
        "only the replay counts as a failure"
    );
}

#[test]
fn retransmitted_register_is_answered_from_the_transaction() {
    let t0 = Instant::now();
    let mut ep = Endpoint::new(config(), users(None), t0);
    let mut phone = Phone::new(1001, udp(PHONE));
    let r = exchange(
        &mut ep,
        t0,
        phone.flow,
        &phone.register("<sip:x@10.0.0.1>", None, None),
    );
    let ch = r[0].1.headers.get("WWW-Authenticate").unwrap().to_owned();
    let msg = phone.register(
        "<sip:x@10.0.0.1>",
        None,
        Some(answer_challenge(&ch, "1001", "demo1001", 1)),
    );
    let first = exchange(&mut ep, t0, phone.flow, &msg);
    let again = exchange(&mut ep, t0 + Duration::from_millis(500), phone.flow, &msg);
    assert_eq!(first[0].1.status, 200);
    assert_eq!(
        again[0].1, first[0].1,
        "the same 200, not a new registration attempt"
    );
    assert_eq!(ep.stats().registrations, 1);
}

#[test]
fn min_expires_unregister_and_wildcard() {
    let t0 = Instant::now();
    let mut ep = Endpoint::new(config(), users(None), t0);
    let mut phone = Phone::new(1001, udp(PHONE));
    register_ok(&mut ep, t0, &mut phone, "<sip:a@10.0.0.1>");
    register_ok(&mut ep, t0, &mut phone, "<sip:b@10.0.0.1>");
    assert_eq!(ep.registrar().binding_count(), 2);
    // Too short.
    let r = exchange(
        &mut ep,
        t0,
        phone.flow,
        &phone.register("<sip:a@10.0.0.1>;expires=5", None, None),
    );
    assert_eq!(r[0].1.status, 401);
    let ch = r[0].1.headers.get("WWW-Authenticate").unwrap().to_owned();
    let r = exchange(
        &mut ep,
        t0,
        phone.flow,
        &phone.register(
            "<sip:a@10.0.0.1>;expires=5",
            None,
            Some(answer_challenge(&ch, "1001", "demo1001", 1)),
        ),
    );
    assert_eq!(r[0].1.status, 423);
    assert_eq!(r[0].1.headers.get("Min-Expires"), Some("60"));
    // Contact: * with Expires: 0 removes everything.
    let r = exchange(
        &mut ep,
        t0,
        phone.flow,
        &phone.register(
            "*",
            Some(0),
            Some(answer_challenge(&ch, "1001", "demo1001", 2)),
        ),
    );
    assert_eq!(r[0].1.status, 200);
    assert_eq!(r[0].1.headers.get("Contact"), None);
    assert_eq!(ep.registrar().binding_count(), 0);
}

#[test]
fn bindings_expire_on_time() {
    let t0 = Instant::now();
    let mut ep = Endpoint::new(config(), users(None), t0);
    let mut phone = Phone::new(1001, udp(PHONE));
    register_ok(&mut ep, t0, &mut phone, "<sip:a@10.0.0.1>;expires=120");
    let _ = events(&mut ep);
    assert_eq!(
        ep.poll_timeout()
            .map(|d| d - t0 <= Duration::from_secs(120)),
        Some(true)
    );
    ep.handle_timeout(t0 + Duration::from_secs(119));
    assert_eq!(ep.registrar().binding_count(), 1);
    ep.handle_timeout(t0 + Duration::from_secs(120));
    assert_eq!(ep.registrar().binding_count(), 0);
    assert!(events(&mut ep).iter().any(|e| matches!(
        e,
        SipEvent::Binding(BindingChange::Removed {
            reason: RemovalReason::Expired,
            ..
        })
    )));
}

#[test]
fn qualify_pings_over_the_flow_and_removes_a_silent_phone() {
    let t0 = Instant::now();
    let mut cfg = config();
    cfg.registrar.qualify_interval = Some(Duration::from_secs(30));
    let mut ep = Endpoint::new(cfg, users(None), t0);
    let tcp = Flow {
        transport: Transport::Tcp,
        remote: PHONE.parse().unwrap(),
        conn: Some(ConnId(7)),
    };
    let mut phone = Phone::new(1001, tcp);
    register_ok(
        &mut ep,
        t0,
        &mut phone,
        "<sip:1001@192.168.1.20:5062;transport=tcp>",
    );
    // First ping at 30 s, over the phone's own TCP connection; the phone answers.
    let t1 = t0 + Duration::from_secs(30);
    ep.handle_timeout(t1);
    let ping = ep.poll_transmit().expect("OPTIONS ping");
    assert_eq!(ping.flow, tcp, "reuse the phone's connection");
    let Message::Request(opt) = parse_message(&ping.payload, 65_535).unwrap() else {
        panic!()
    };
    assert_eq!(opt.uri, "sip:1001@192.168.1.20:5062;transport=tcp");
    let mut reply = String::from("SIP/2.0 200 OK\r\n");
    for name in ["Via", "From", "To", "Call-ID", "CSeq"] {
        reply.push_str(&format!("{name}: {}\r\n", opt.headers.get(name).unwrap()));
    }
    reply.push_str("Content-Length: 0\r\n\r\n");
    ep.handle_message(t1, tcp, reply.as_bytes());
    assert_eq!(ep.registrar().binding_count(), 1);
    // Second ping at 60 s goes unanswered: the transaction times out (64*T1) and the
    // binding is removed.
    ep.handle_timeout(t0 + Duration::from_secs(60));
    assert!(ep.poll_transmit().is_some());
    ep.handle_timeout(t0 + Duration::from_secs(60 + 33));
    assert_eq!(ep.registrar().binding_count(), 0);
    assert!(events(&mut ep).iter().any(|e| matches!(
        e,
        SipEvent::Binding(BindingChange::Removed {
            reason: RemovalReason::Unreachable,
            ..
        })
    )));
}

#[test]
fn rate_limit_drops_a_flood_and_counts_it() {
    let t0 = Instant::now();
    let mut cfg = config();
    cfg.security.rate_limit = Some(RateLimit {
        per_second: 10,
        burst: 20,
    });
    let mut ep = Endpoint::new(cfg, users(None), t0);
    let mut answered = 0;
    for i in 0..100 {
        let msg = format!(
            "OPTIONS sip:switchboard SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.1;branch=z9hG4bKf{i}\r\n\
             From: <sip:x@y>;tag=1\r\nTo: <sip:switchboard>\r\nCall-ID: flood{i}\r\nCSeq: 1 OPTIONS\r\n\
             Content-Length: 0\r\n\r\n"
        );
        answered += exchange(&mut ep, t0, udp(PHONE), msg.as_bytes()).len();
    }
    assert_eq!(answered, 20, "the burst is served, the rest dropped");
    assert_eq!(ep.stats().dropped_rate_limited, 80);
    // Tokens come back with time.
    let msg = "OPTIONS sip:switchboard SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.1;branch=z9hG4bKlate\r\n\
               From: <sip:x@y>;tag=1\r\nTo: <sip:switchboard>\r\nCall-ID: late\r\nCSeq: 1 OPTIONS\r\n\r\n";
    assert_eq!(
        exchange(
            &mut ep,
            t0 + Duration::from_secs(1),
            udp(PHONE),
            msg.as_bytes()
        )
        .len(),
        1
    );
}

#[test]
fn source_tracking_stays_bounded_under_a_spoofed_flood() {
    let t0 = Instant::now();
    let mut cfg = config();
    cfg.security.rate_limit = Some(RateLimit {
        per_second: 10,
        burst: 20,
    });
    cfg.security.max_tracked_sources = 1000;
    let mut ep = Endpoint::new(cfg, users(None), t0);
    for i in 0..20_000u32 {
        let ip = std::net::Ipv4Addr::from(0x0a00_0000 + i);
        let flow = Flow {
            transport: Transport::Udp,
            remote: SocketAddr::new(ip.into(), 5060),
            conn: None,
        };
        ep.handle_message(t0, flow, b"garbage\r\n\r\n");
        while ep.poll_transmit().is_some() {}
    }
    assert_eq!(ep.stats().received, 20_000);
    // Nothing to assert on the private map directly; the clean-up keeps memory bounded and
    // the endpoint still answers normal traffic.
    let msg = "OPTIONS sip:switchboard SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.1;branch=z9hG4bKok\r\n\
               From: <sip:x@y>;tag=1\r\nTo: <sip:switchboard>\r\nCall-ID: ok\r\nCSeq: 1 OPTIONS\r\n\r\n";
    let r = exchange(&mut ep, t0, udp(PHONE), msg.as_bytes());
    assert_eq!(r[0].1.status, 200);
    assert!(r[0].1.headers.get("Allow").unwrap().contains("REGISTER"));
    assert_eq!(r[0].1.headers.get("Accept"), Some("application/sdp"));
    assert!(r[0].1.headers.get("Supported").is_some());
}

fn invite(branch: &str) -> String {
    format!(
        "INVITE sip:600@switchboard SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.5:5060;branch={branch}\r\n\
         Max-Forwards: 70\r\nFrom: <sip:1006@switchboard>;tag=c1\r\nTo: <sip:600@switchboard>\r\n\
         Call-ID: call-{branch}\r\nCSeq: 1 INVITE\r\nContact: <sip:1006@10.0.0.5>\r\nContent-Length: 0\r\n\r\n"
    )
}

fn cancel(branch: &str) -> String {
    invite(branch)
        .replace("INVITE sip", "CANCEL sip")
        .replace("1 INVITE", "1 CANCEL")
}

#[test]
fn cancel_before_answer_gets_200_and_487_and_tells_call_control() {
    let t0 = Instant::now();
    let mut ep = Endpoint::new(config(), users(None), t0);
    let caller = udp("10.0.0.5:5060");
    let r = exchange(&mut ep, t0, caller, invite("z9hG4bKc1").as_bytes());
    assert_eq!(r.iter().map(|x| x.1.status).collect::<Vec<_>>(), vec![100]);
    let tx = match events(&mut ep).as_slice() {
        [SipEvent::Request { tx, .. }] => *tx,
        other => panic!("{other:?}"),
    };
    let r = exchange(&mut ep, t0, caller, cancel("z9hG4bKc1").as_bytes());
    let got: Vec<_> = r
        .iter()
        .map(|x| (x.1.status, x.1.headers.get("CSeq").unwrap().to_owned()))
        .collect();
    assert_eq!(
        got,
        vec![(200, "1 CANCEL".to_owned()), (487, "1 INVITE".to_owned())]
    );
    assert_eq!(events(&mut ep), vec![SipEvent::Cancelled { tx }]);
    // Call control answering afterwards is refused: the INVITE is already final.
    assert!(ep
        .respond(t0, tx, 200, Headers::default(), bytes::Bytes::new())
        .is_err());
}

#[test]
fn cancel_racing_a_200_does_not_undo_the_answer() {
    let t0 = Instant::now();
    let mut ep = Endpoint::new(config(), users(None), t0);
    let caller = udp("10.0.0.5:5060");
    exchange(&mut ep, t0, caller, invite("z9hG4bKc2").as_bytes());
    let tx = match events(&mut ep).as_slice() {
        [SipEvent::Request { tx, .. }] => *tx,
        other => panic!("{other:?}"),
    };
    ep.respond(t0, tx, 200, Headers::default(), bytes::Bytes::new())
        .unwrap();
    while ep.poll_transmit().is_some() {}
    let r = exchange(&mut ep, t0, caller, cancel("z9hG4bKc2").as_bytes());
    assert_eq!(
        r.iter().map(|x| x.1.status).collect::<Vec<_>>(),
        vec![200],
        "CANCEL answered, no 487"
    );
    assert!(events(&mut ep).is_empty());
    // A CANCEL for nothing gets 481.
    let r = exchange(&mut ep, t0, caller, cancel("z9hG4bKnone").as_bytes());
    assert_eq!(r[0].1.status, 481);
}

#[test]
fn shutdown_answers_pending_requests_with_503() {
    let t0 = Instant::now();
    let mut ep = Endpoint::new(config(), users(None), t0);
    let caller = udp("10.0.0.5:5060");
    exchange(&mut ep, t0, caller, invite("z9hG4bKs1").as_bytes());
    let _ = events(&mut ep);
    ep.shutdown(t0);
    let statuses: Vec<u16> = std::iter::from_fn(|| ep.poll_transmit())
        .filter_map(|t| match parse_message(&t.payload, 65_535) {
            Ok(Message::Response(r)) => Some(r.status),
            _ => None,
        })
        .collect();
    assert_eq!(statuses, vec![503]);
    let r = exchange(&mut ep, t0, caller, invite("z9hG4bKs2").as_bytes());
    assert_eq!(r.last().map(|x| x.1.status), Some(503));
}

#[test]
fn oversize_and_garbage_are_dropped_and_counted() {
    let t0 = Instant::now();
    let mut cfg = config();
    cfg.max_message_size = 2000;
    let mut ep = Endpoint::new(cfg, users(None), t0);
    let big = vec![b'A'; 5000];
    assert!(exchange(&mut ep, t0, udp(PHONE), &big).is_empty());
    assert!(exchange(&mut ep, t0, udp(PHONE), b"\x00\x01\x02 not sip").is_empty());
    assert!(exchange(
        &mut ep,
        t0,
        udp(PHONE),
        b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP x;branch=z9hG4bKzz\r\nCSeq: 1 OPTIONS\r\n\r\n"
    )
    .is_empty());
    let s = ep.stats();
    assert_eq!(s.dropped_oversize, 1);
    assert_eq!(s.dropped_malformed, 1);
    assert_eq!(s.dropped_stray_responses, 1);
}

fn invite_from(branch: &str, user: &str, auth: Option<&str>) -> String {
    let auth = auth.map_or(String::new(), |a| format!("Proxy-Authorization: {a}\r\n"));
    format!(
        "INVITE sip:600@switchboard SIP/2.0\r\nVia: SIP/2.0/UDP 203.0.113.7:5062;branch={branch}\r\n\
         Max-Forwards: 70\r\nFrom: <sip:{user}@switchboard>;tag=c1\r\nTo: <sip:600@switchboard>\r\n\
         Call-ID: call-{branch}\r\nCSeq: 1 INVITE\r\nContact: <sip:{user}@203.0.113.7:5062>\r\n\
         {auth}Content-Length: 0\r\n\r\n"
    )
}

#[test]
fn invites_are_challenged_with_407_and_carry_the_caller_once_authenticated() {
    let t0 = Instant::now();
    let mut ep = Endpoint::new(config(), users(None), t0);
    let phone = udp(PHONE);
    let r = exchange(
        &mut ep,
        t0,
        phone,
        invite_from("z9hG4bKa1", "1006", None).as_bytes(),
    );
    let statuses: Vec<u16> = r.iter().map(|x| x.1.status).collect();
    assert_eq!(statuses, vec![100, 407]);
    assert!(
        events(&mut ep).is_empty(),
        "nothing reaches call control unauthenticated"
    );
    let ch = r[1].1.headers.get("Proxy-Authenticate").unwrap().to_owned();
    assert!(r[1].1.headers.get("WWW-Authenticate").is_none());
    let auth = answer_challenge_for(&ch, "1006", "demo1006", 1, "INVITE", "sip:600@switchboard");
    let r = exchange(
        &mut ep,
        t0,
        phone,
        invite_from("z9hG4bKa2", "1006", Some(&auth)).as_bytes(),
    );
    assert_eq!(r.iter().map(|x| x.1.status).collect::<Vec<_>>(), vec![100]);
    match events(&mut ep).as_slice() {
        [SipEvent::Request { caller, .. }] => assert_eq!(*caller, Caller::User("1006".into())),
        other => panic!("{other:?}"),
    }
    // A wrong password is refused like any failed authentication.
    let bad = answer_challenge_for(&ch, "1006", "guess", 2, "INVITE", "sip:600@switchboard");
    let r = exchange(
        &mut ep,
        t0,
        phone,
        invite_from("z9hG4bKa3", "1006", Some(&bad)).as_bytes(),
    );
    assert_eq!(r.last().unwrap().1.status, 407);
    assert!(events(&mut ep).is_empty());
}

#[test]
fn trunk_invites_are_recognised_by_source_address_not_challenged() {
    let t0 = Instant::now();
    let mut ep = Endpoint::new(config(), users(None), t0);
    let carrier = udp("10.0.0.5:5060");
    let r = exchange(&mut ep, t0, carrier, invite("z9hG4bKt1").as_bytes());
    assert_eq!(r.iter().map(|x| x.1.status).collect::<Vec<_>>(), vec![100]);
    match events(&mut ep).as_slice() {
        [SipEvent::Request { caller, .. }] => assert_eq!(*caller, Caller::Trunk("carrier".into())),
        other => panic!("{other:?}"),
    }
    // The same address calling a number the trunk does not own is challenged like anyone.
    let other = invite("z9hG4bKt2").replace("sip:600@switchboard", "sip:1001@switchboard");
    let r = exchange(&mut ep, t0, carrier, other.as_bytes());
    assert_eq!(
        r.iter().map(|x| x.1.status).collect::<Vec<_>>(),
        vec![100, 407]
    );
    assert!(events(&mut ep).is_empty());
}

#[test]
fn a_2xx_to_invite_is_retransmitted_until_the_ack_and_reported_when_none_comes() {
    let t0 = Instant::now();
    let mut ep = Endpoint::new(config(), users(None), t0);
    let carrier = udp("10.0.0.5:5060");
    for (branch, ack) in [("z9hG4bKr1", true), ("z9hG4bKr2", false)] {
        exchange(&mut ep, t0, carrier, invite(branch).as_bytes());
        let tx = match events(&mut ep).as_slice() {
            [SipEvent::Request { tx, .. }] => *tx,
            other => panic!("{other:?}"),
        };
        ep.respond_tagged(
            t0,
            tx,
            200,
            Some("srv-tag"),
            Headers::default(),
            bytes::Bytes::new(),
        )
        .unwrap();
        let first: Vec<Response> = std::iter::from_fn(|| ep.poll_transmit())
            .filter_map(|t| match parse_message(&t.payload, 65_535) {
                Ok(Message::Response(r)) => Some(r),
                _ => None,
            })
            .collect();
        assert_eq!(first.len(), 1);
        assert!(first[0]
            .headers
            .get("To")
            .unwrap()
            .ends_with(";tag=srv-tag"));
        // Retransmissions at T1, then doubling, capped at T2 (0.5, 1.5, 3.5, 7.5, 11.5 …).
        let mut sent = Vec::new();
        let mut acked_at = None;
        let mut ms = 0u64;
        while ms <= 40_000 {
            let now = t0 + Duration::from_millis(ms);
            if ack && ms == 4_000 {
                let a = invite(branch)
                    .replace("INVITE sip", "ACK sip")
                    .replace("1 INVITE", "1 ACK")
                    .replace(
                        "To: <sip:600@switchboard>",
                        "To: <sip:600@switchboard>;tag=srv-tag",
                    )
                    .replace(branch, &format!("{branch}ack"))
                    .replace(&format!("call-{branch}ack"), &format!("call-{branch}"));
                ep.handle_message(now, carrier, a.as_bytes());
                acked_at = Some(ms);
            }
            if ep.poll_timeout().is_some_and(|t| t <= now) {
                ep.handle_timeout(now);
            }
            while ep.poll_transmit().is_some() {
                sent.push(ms);
            }
            ms += 100;
        }
        let evs = events(&mut ep);
        if ack {
            assert_eq!(
                sent,
                vec![500, 1500, 3500],
                "stops at the ACK ({acked_at:?})"
            );
            assert!(matches!(evs.as_slice(), [SipEvent::Ack { .. }]), "{evs:?}");
        } else {
            assert_eq!(&sent[..5], &[500, 1500, 3500, 7500, 11500]);
            assert!(sent.iter().all(|&m| m < 32_000));
            assert_eq!(evs, vec![SipEvent::AckTimeout { tx }]);
        }
    }
}

#[test]
fn stateless_requests_get_a_via_and_requests_can_be_sent_under_a_chosen_id() {
    use sip::message::{Method, Request};
    use sip::transaction::TxId;
    let t0 = Instant::now();
    let mut ep = Endpoint::new(config(), users(None), t0);
    let mut req = Request {
        method: Method::Ack,
        uri: "sip:1001@203.0.113.7:5062".into(),
        headers: Headers::default(),
        body: bytes::Bytes::new(),
    };
    req.headers.push("From", "<sip:600@switchboard>;tag=a");
    req.headers.push("To", "<sip:1001@switchboard>;tag=b");
    req.headers.push("Call-ID", "x1");
    req.headers.push("CSeq", "3 ACK");
    ep.send_stateless_request(t0, udp(PHONE), req.clone());
    let t = ep.poll_transmit().unwrap();
    let Ok(Message::Request(ack)) = parse_message(&t.payload, 65_535) else {
        panic!()
    };
    assert!(Via::parse(ack.headers.get("Via").unwrap())
        .unwrap()
        .is_rfc3261());
    assert_eq!(ack.headers.get("CSeq"), Some("3 ACK"));
    assert!(ep.poll_timeout().is_none(), "no transaction, no timer");

    req.method = Method::Bye;
    req.headers.remove("CSeq");
    req.headers.push("CSeq", "4 BYE");
    let id = TxId::user(7);
    assert_eq!(ep.send_request_as(t0, udp(PHONE), req.clone(), id), Ok(id));
    assert!(
        ep.send_request_as(t0, udp(PHONE), req.clone(), id).is_err(),
        "in use"
    );
    assert!(
        ep.send_request_as(t0, udp(PHONE), req, TxId(7)).is_err(),
        "not a user id"
    );
}

#[test]
fn restored_bindings_are_reachable_refreshable_and_expire_in_virtual_time() {
    use sip::registrar::{RestoreError, RestoredBinding};
    // A new process: its clock starts anywhere; the stored binding had 100 s left.
    let t0 = Instant::now() + Duration::from_secs(5_000);
    let mut ep = Endpoint::new(config(), users(None), t0);
    let restored = |contact| RestoredBinding {
        contact,
        remaining: Duration::from_secs(100),
        q: None,
        call_id: "stored-call-id",
        cseq: 1,
        flow: udp(PHONE),
        instance: None,
        reg_id: None,
        user_agent: None,
    };
    assert_eq!(
        ep.restore_binding(t0, "9999", restored("sip:9999@10.0.0.1")),
        Err(RestoreError::BadAor),
        "only accounts that still exist"
    );
    ep.restore_binding(t0, "1001", restored("sip:1001@10.0.0.1"))
        .unwrap();
    assert!(
        events(&mut ep).is_empty(),
        "a restore is no news for call control"
    );
    assert!(ep.drain_touched_aors().is_empty());
    let b = &ep.registrar().lookup("1001")[0];
    assert_eq!((b.remaining(t0), b.flow), (100, udp(PHONE)));
    // Nothing happens before the stored expiry; at it, the binding goes.
    assert!(ep
        .poll_timeout()
        .is_some_and(|d| d <= t0 + Duration::from_secs(100)));
    ep.handle_timeout(t0 + Duration::from_secs(99));
    assert_eq!(ep.registrar().binding_count(), 1);
    ep.handle_timeout(t0 + Duration::from_secs(100));
    assert_eq!(ep.registrar().binding_count(), 0);
    assert_eq!(ep.drain_touched_aors(), vec!["1001".to_owned()]);
    // Restored again, the phone refreshes it as usual: one binding, the new lifetime.
    let t1 = t0 + Duration::from_secs(200);
    ep.restore_binding(t1, "1001", restored("sip:a@10.0.0.1"))
        .unwrap();
    let mut phone = Phone::new(1001, udp(PHONE));
    register_ok(&mut ep, t1, &mut phone, "<sip:a@10.0.0.1>;expires=300");
    assert_eq!(ep.registrar().binding_count(), 1);
    assert_eq!(ep.registrar().lookup("1001")[0].remaining(t1), 300);
    assert_eq!(ep.drain_touched_aors(), vec!["1001".to_owned()]);
}

#[test]
fn a_ban_is_lifted_by_the_timer_at_its_end() {
    let t0 = Instant::now();
    let mut cfg = config();
    cfg.registrar.qualify_interval = None;
    let ban = cfg.security.ban_duration;
    let mut ep = Endpoint::new(cfg, users(None), t0);
    let mut bad = Phone::new(1001, udp(PHONE));
    bad.password = "wrong".into();
    for _ in 0..3 {
        let r = exchange(
            &mut ep,
            t0,
            bad.flow,
            &bad.register("<sip:x@10.0.0.1>", None, None),
        );
        let ch = r[0].1.headers.get("WWW-Authenticate").unwrap().to_owned();
        let auth = answer_challenge(&ch, &bad.user, &bad.password, 1);
        exchange(
            &mut ep,
            t0,
            bad.flow,
            &bad.register("<sip:x@10.0.0.1>", None, Some(auth)),
        );
    }
    assert_eq!(ep.stats().bans, 1);
    // The ban's end is a deadline of its own: the driver wakes up for it (after the
    // transactions' timers).
    let mut deadlines = Vec::new();
    while let Some(d) = ep.poll_timeout().filter(|d| *d <= t0 + ban) {
        deadlines.push(d);
        ep.handle_timeout(d);
    }
    assert_eq!(deadlines.last(), Some(&(t0 + ban)), "{deadlines:?}");
    assert_eq!(ep.poll_timeout(), None, "nothing left to wake up for");
    let mut good = Phone::new(1001, udp(PHONE));
    let r = exchange(
        &mut ep,
        t0 + ban,
        good.flow,
        &good.register("<sip:x@10.0.0.1>", None, None),
    );
    assert_eq!(r[0].1.status, 401, "served again");
}

#[test]
fn challenges_are_stateless_so_a_flood_from_many_addresses_fills_no_table() {
    let t0 = Instant::now();
    let mut cfg = config();
    cfg.security.max_auth_failures = u32::MAX;
    cfg.max_transactions = 100;
    let mut ep = Endpoint::new(cfg, users(None), t0);
    for i in 0..1000u32 {
        let from = udp(&format!("198.51.{}.{}:5060", i / 250, i % 250 + 1));
        let r = exchange(
            &mut ep,
            t0,
            from,
            invite_from(&format!("z9hG4bKflood{i}"), "1006", None).as_bytes(),
        );
        assert_eq!(r.last().map(|x| x.1.status), Some(407), "INVITE {i}");
        let mut phone = Phone::new(1001 + i % 10, from);
        let r = exchange(
            &mut ep,
            t0,
            from,
            &phone.register("<sip:x@198.51.0.1>", None, None),
        );
        assert_eq!(r.last().map(|x| x.1.status), Some(401), "REGISTER {i}");
    }
    assert_eq!(
        ep.transaction_count(),
        0,
        "no transaction kept for a challenge"
    );
    assert!(events(&mut ep).is_empty());
    // The table (100) never filled: an authenticated caller still gets through.
    let phone = udp(PHONE);
    let r = exchange(
        &mut ep,
        t0,
        phone,
        invite_from("z9hG4bKreal1", "1006", None).as_bytes(),
    );
    let ch = r[1].1.headers.get("Proxy-Authenticate").unwrap().to_owned();
    let auth = answer_challenge_for(&ch, "1006", "demo1006", 1, "INVITE", "sip:600@switchboard");
    let r = exchange(
        &mut ep,
        t0,
        phone,
        invite_from("z9hG4bKreal2", "1006", Some(&auth)).as_bytes(),
    );
    assert_eq!(r.iter().map(|x| x.1.status).collect::<Vec<_>>(), vec![100]);
    assert!(matches!(
        events(&mut ep).as_slice(),
        [SipEvent::Request { .. }]
    ));
}

#[test]
fn a_trunk_that_authenticates_with_its_account_is_the_trunk_and_that_account_cannot_register() {
    let t0 = Instant::now();
    let mut cfg = config();
    // User 1007's account is the carrier's: its INVITEs come from anywhere.
    cfg.calls.trunks.push(Trunk {
        name: "digest-carrier".into(),
        addresses: Vec::new(),
        numbers: vec!["600".into()],
        username: Some("1007".into()),
    });
    let mut ep = Endpoint::new(cfg, users(None), t0);
    let from = udp("198.51.100.44:5060");
    let r = exchange(
        &mut ep,
        t0,
        from,
        invite_from("z9hG4bKt1", "1007", None).as_bytes(),
    );
    assert_eq!(r.last().unwrap().1.status, 407, "challenged like anyone");
    let ch = r
        .last()
        .unwrap()
        .1
        .headers
        .get("Proxy-Authenticate")
        .unwrap()
        .to_owned();
    let auth = answer_challenge_for(&ch, "1007", "demo1007", 1, "INVITE", "sip:600@switchboard");
    exchange(
        &mut ep,
        t0,
        from,
        invite_from("z9hG4bKt2", "1007", Some(&auth)).as_bytes(),
    );
    match events(&mut ep).as_slice() {
        [SipEvent::Request { caller, .. }] => {
            assert_eq!(*caller, Caller::Trunk("digest-carrier".into()))
        }
        other => panic!("{other:?}"),
    }
    // The account is the trunk's, not a phone's.
    let mut phone = Phone::new(1007, udp(PHONE));
    let r = exchange(
        &mut ep,
        t0,
        phone.flow,
        &phone.register("<sip:1007@192.168.1.20:5062>", None, None),
    );
    let ch = r[0].1.headers.get("WWW-Authenticate").unwrap().to_owned();
    let auth = answer_challenge(&ch, "1007", "demo1007", 1);
    let r = exchange(
        &mut ep,
        t0,
        phone.flow,
        &phone.register("<sip:1007@192.168.1.20:5062>", None, Some(auth)),
    );
    assert_eq!(r[0].1.status, 403);
    assert_eq!(ep.registrar().binding_count(), 0);
}

#[test]
fn crlf_keepalive_datagrams_are_counted_and_ignored() {
    let now = Instant::now();
    let mut ep = Endpoint::new(config(), users(None), now);
    let phone = udp("192.0.2.44:5060");
    for ping in [&b"\r\n\r\n"[..], b"\r\n", b"\n"] {
        assert!(exchange(&mut ep, now, phone, ping).is_empty());
    }
    assert!(ep.poll_transmit().is_none(), "nothing is answered");
    assert!(events(&mut ep).is_empty());
    let s = ep.stats();
    assert_eq!((s.keepalives, s.dropped_malformed, s.rejected), (3, 0, 0));
    // Real garbage is still garbage.
    let _ = exchange(&mut ep, now, phone, b"\r\nHELLO\r\n");
    assert_eq!(ep.stats().keepalives, 3);
}

#[test]
fn a_stun_keepalive_is_answered_with_the_phones_public_address() {
    let now = Instant::now();
    let mut ep = Endpoint::new(config(), users(None), now);
    let phone = udp("203.0.113.9:41000");
    let tid = *b"keepalive-01";
    ep.handle_message(now, phone, &sip::stun::binding_request(tid));
    let t = ep.poll_transmit().expect("a STUN answer");
    assert_eq!(t.flow.remote, phone.remote);
    assert_eq!(
        sip::stun::mapped_address(&t.payload, tid),
        Some(phone.remote),
        "the address the request came from"
    );
    assert!(events(&mut ep).is_empty());
    let s = ep.stats();
    assert_eq!((s.keepalives, s.dropped_malformed, s.rejected), (1, 0, 0));
}
