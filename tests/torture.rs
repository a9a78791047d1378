//! RFC 4475 and RFC 5118 torture messages against the parser, the sans-IO endpoint and a
//! running server over UDP.
//!
//! Every message in `../shared/sip-torture/` is checked against the expectation derived from
//! `MANIFEST.tsv`. The messages name hosts such as 192.0.2.x and example.com, so:
//! - the sans-IO part feeds each message as if it arrived from 127.0.0.1:5099 and checks that
//!   every transmit goes back to the sender;
//! - the over-UDP part runs the server and the sender inside a network namespace that has only
//!   loopback (`ip netns`, root), so a wrong answer address fails there instead of leaving the
//!   machine.
//!
//! Both print the tally; `docs/conformance.md` explains every message that is not as expected.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Instant;

use sip::message::Message;
use sip::parse::parse_message;
use sip::{Endpoint, EndpointConfig, Flow, Transport, UserAccount};

/// What the manifest allows as an answer.
#[derive(Debug, Clone, Copy)]
enum Expect {
    /// One of these final statuses.
    Status(&'static [u16]),
    /// Any answer except 400.
    NotBadRequest,
    /// Any answer at all (the RFC allows rejecting or accepting).
    Either,
    /// Nothing may be sent (unsolicited or malformed responses).
    Silent,
}

/// The manifest's expectations in machine form (same order as MANIFEST.tsv).
fn expectations() -> BTreeMap<&'static str, Expect> {
    use Expect::*;
    BTreeMap::from([
        ("rfc4475/wsinv.dat", NotBadRequest),
        ("rfc4475/intmeth.dat", Status(&[501])),
        ("rfc4475/esc01.dat", NotBadRequest),
        ("rfc4475/escnull.dat", Status(&[401])),
        ("rfc4475/esc02.dat", Status(&[501])),
        ("rfc4475/lwsdisp.dat", NotBadRequest),
        ("rfc4475/longreq.dat", NotBadRequest),
        ("rfc4475/dblreq.dat", NotBadRequest),
        ("rfc4475/semiuri.dat", NotBadRequest),
        ("rfc4475/transports.dat", NotBadRequest),
        ("rfc4475/mpart01.dat", Status(&[405, 501, 415])),
        ("rfc4475/unreason.dat", Silent),
        ("rfc4475/noreason.dat", Silent),
        ("rfc4475/badinv01.dat", Status(&[400])),
        ("rfc4475/clerr.dat", Status(&[400])),
        ("rfc4475/ncl.dat", Status(&[400])),
        ("rfc4475/scalar02.dat", Status(&[400])),
        ("rfc4475/scalarlg.dat", Silent),
        ("rfc4475/quotbal.dat", Status(&[400])),
        ("rfc4475/ltgtruri.dat", Status(&[400])),
        ("rfc4475/lwsruri.dat", Status(&[400])),
        ("rfc4475/lwsstart.dat", Status(&[400])),
        ("rfc4475/trws.dat", Either),
        ("rfc4475/escruri.dat", Either),
        ("rfc4475/baddate.dat", Either),
        ("rfc4475/regbadct.dat", Either),
        ("rfc4475/badaspec.dat", Status(&[400])),
        ("rfc4475/baddn.dat", Status(&[400])),
        ("rfc4475/badvers.dat", Status(&[505])),
        ("rfc4475/mismatch01.dat", Status(&[400])),
        ("rfc4475/mismatch02.dat", Status(&[400, 501])),
        ("rfc4475/bigcode.dat", Silent),
        ("rfc4475/badbranch.dat", NotBadRequest),
        ("rfc4475/insuf.dat", Status(&[400])),
        ("rfc4475/unkscm.dat", Status(&[416])),
        ("rfc4475/novelsc.dat", Status(&[416])),
        ("rfc4475/unksm2.dat", Status(&[400, 404])),
        ("rfc4475/bext01.dat", Status(&[420])),
        ("rfc4475/invut.dat", Status(&[415])),
        ("rfc4475/regaut01.dat", Status(&[401])),
        ("rfc4475/multi01.dat", Status(&[400])),
        ("rfc4475/mcl01.dat", Status(&[400])),
        ("rfc4475/bcast.dat", Silent),
        ("rfc4475/zeromf.dat", Status(&[200])),
        ("rfc4475/cparam01.dat", Status(&[401])),
        ("rfc4475/cparam02.dat", Status(&[401])),
        ("rfc4475/regescrt.dat", Status(&[401])),
        ("rfc4475/sdp01.dat", Status(&[406])),
        ("rfc4475/inv2543.dat", NotBadRequest),
        ("rfc5118/ipv6-good.dat", NotBadRequest),
        ("rfc5118/ipv6-bad.dat", Status(&[400])),
        ("rfc5118/port-ambiguous.dat", NotBadRequest),
        ("rfc5118/port-unambiguous.dat", NotBadRequest),
        ("rfc5118/via-received-param-with-delim.dat", NotBadRequest),
        ("rfc5118/via-received-param-no-delim.dat", NotBadRequest),
        ("rfc5118/ipv6-in-sdp.dat", NotBadRequest),
        ("rfc5118/mult-ip-in-header.dat", NotBadRequest),
        ("rfc5118/mult-ip-in-sdp.dat", NotBadRequest),
        ("rfc5118/ipv4-mapped-ipv6.dat", NotBadRequest),
        ("rfc5118/ipv6-correct-abnf-2-colons.dat", NotBadRequest),
        ("rfc5118/ipv6-bug-abnf-3-colons.dat", Either),
    ])
}

fn torture_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/sip-torture")
}

/// (file, class) from MANIFEST.tsv.
fn manifest() -> Vec<(String, String)> {
    let path = torture_dir().join("MANIFEST.tsv");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "cannot read {}: {e} (the shared/ folder must sit beside the checkout)",
            path.display()
        )
    });
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            let cols: Vec<&str> = l.split('\t').collect();
            (cols[0].to_owned(), cols[2].to_owned())
        })
        .collect()
}

fn endpoint() -> Endpoint {
    let mut users = HashMap::new();
    users.insert(
        "user".to_owned(),
        UserAccount {
            secret: sip::digest::UserSecret::Password("secret".into()),
            algorithms: None,
            max_contacts: None,
            require_tls: false,
        },
    );
    Endpoint::new(
        EndpointConfig {
            security: sip::endpoint::SecurityConfig {
                rate_limit: None,
                ..Default::default()
            },
            ..Default::default()
        },
        users,
        Instant::now(),
    )
}

/// Every response status the endpoint sent, every destination, and whether the request was
/// handed up to call control (an event) instead of being answered by the endpoint itself.
fn answer(ep: &mut Endpoint, data: &[u8], from: SocketAddr) -> (Vec<u16>, Vec<SocketAddr>, bool) {
    let flow = Flow {
        transport: Transport::Udp,
        remote: from,
        conn: None,
    };
    ep.handle_message(Instant::now(), flow, data);
    let mut statuses = Vec::new();
    let mut dests = Vec::new();
    while let Some(t) = ep.poll_transmit() {
        dests.push(t.flow.remote);
        if let Ok(Message::Response(r)) = parse_message(&t.payload, 65_535) {
            statuses.push(r.status);
        }
    }
    let mut handed_up = false;
    while let Some(ev) = ep.poll_event() {
        handed_up |= matches!(ev, sip::SipEvent::Request { .. });
    }
    (statuses, dests, handed_up)
}

/// `handed_up`: the request passed every check and went to call control, which answers it
/// (only the sans-IO run sees this; over UDP the server's call control answers).
fn judge(expect: Expect, statuses: &[u16], handed_up: bool) -> bool {
    // Judge by the last status: a 100 Trying before the final answer is fine, and in the
    // sans-IO run an INVITE handed to call control has only its 100 Trying.
    let last = statuses.last().copied();
    match expect {
        Expect::Silent => statuses.is_empty() && !handed_up,
        Expect::Status(allowed) => last.is_some_and(|s| allowed.contains(&s)),
        Expect::NotBadRequest => last.map_or(handed_up, |s| s != 400),
        Expect::Either => last.is_some(),
    }
}

#[test]
fn every_manifest_entry_has_an_expectation() {
    let exp = expectations();
    let man = manifest();
    assert_eq!(man.len(), 61, "49 RFC 4475 + 12 RFC 5118 messages");
    for (file, class) in &man {
        let e = exp
            .get(file.as_str())
            .unwrap_or_else(|| panic!("{file} has no expectation"));
        assert_eq!(
            class == "response",
            matches!(e, Expect::Silent),
            "{file}: class {class} vs {e:?}"
        );
    }
}

#[test]
fn torture_messages_get_the_manifest_answer() {
    let exp = expectations();
    let from: SocketAddr = "127.0.0.1:5099".parse().unwrap();
    let mut tally: BTreeMap<&str, (usize, usize)> = BTreeMap::new();
    let mut misses = Vec::new();
    for (file, _) in manifest() {
        let data = std::fs::read(torture_dir().join(&file)).unwrap();
        // A fresh endpoint per message: no transaction or ban state carries over.
        let mut ep = endpoint();
        let (statuses, dests, handed_up) = answer(&mut ep, &data, from);
        for d in &dests {
            assert_eq!(
                *d, from,
                "{file}: a transmit went to {d}, not back to the sender"
            );
        }
        let rfc = if file.starts_with("rfc4475") {
            "RFC 4475"
        } else {
            "RFC 5118"
        };
        let e = tally.entry(rfc).or_default();
        e.1 += 1;
        let expect = exp[file.as_str()];
        if judge(expect, &statuses, handed_up) {
            e.0 += 1;
        } else {
            misses.push(format!(
                "{file}: expected {expect:?}, sent {statuses:?} (handed up: {handed_up})"
            ));
        }
    }
    report("sans-IO", &tally, &misses);
}

/// Print the tally and fail on any miss that docs/conformance.md does not explain.
fn report(label: &str, tally: &BTreeMap<&str, (usize, usize)>, misses: &[String]) {
    let line = tally
        .iter()
        .map(|(k, (ok, n))| format!("{k}: {ok}/{n} as expected"))
        .collect::<Vec<_>>()
        .join("; ");
    println!("{label}: {line}");
    for m in misses {
        println!("  not as expected: {m}");
    }
    // Known, documented exceptions (docs/conformance.md). Anything else is a regression.
    let known: &[&str] = &[];
    let unexpected: Vec<_> = misses
        .iter()
        .filter(|m| !known.iter().any(|k| m.starts_with(k)))
        .collect();
    assert!(unexpected.is_empty(), "{label}: {line}\n{unexpected:#?}");
}

#[test]
fn valid_messages_parse() {
    for (file, class) in manifest() {
        let data = std::fs::read(torture_dir().join(&file)).unwrap();
        let parsed = parse_message(&data, 65_535);
        if class == "valid" {
            assert!(parsed.is_ok(), "{file}: {parsed:?}");
        }
    }
}

#[test]
fn retransmitted_torture_requests_are_answered_from_the_transaction() {
    // Sending each message twice must give the same answer and never panic.
    let from: SocketAddr = "127.0.0.1:5099".parse().unwrap();
    for (file, _) in manifest() {
        let data = std::fs::read(torture_dir().join(&file)).unwrap();
        let mut ep = endpoint();
        let (first, ..) = answer(&mut ep, &data, from);
        let (second, ..) = answer(&mut ep, &data, from);
        if let (Some(a), Some(b)) = (first.last(), second.last()) {
            assert_eq!(a, b, "{file}: retransmission answered differently");
        }
    }
}

// ------------------------------------------------------------------ over UDP, in a namespace

const NETNS_ENV: &str = "SWITCHBOARD_TORTURE_NETNS";

/// Runs [`torture_over_udp_inside_namespace`] in a fresh network namespace with only loopback.
#[test]
fn torture_over_udp_in_loopback_only_namespace() {
    if std::env::var_os(NETNS_ENV).is_some() {
        return; // we are the inner run
    }
    let ip = std::process::Command::new("ip").arg("-V").output();
    assert!(
        ip.is_ok_and(|o| o.status.success()),
        "`ip` not found: apt-get install iproute2 (this test needs root for `ip netns`)"
    );
    let bin = common::switchboard_bin().to_owned();
    let ns = format!("sbtorture{}", std::process::id());
    let run = |args: &[&str]| {
        std::process::Command::new("ip")
            .args(args)
            .status()
            .is_ok_and(|s| s.success())
    };
    assert!(
        run(&["netns", "add", &ns]),
        "cannot create network namespace {ns}: this test must run as root (CI does)"
    );
    struct Cleanup(String);
    impl Drop for Cleanup {
        fn drop(&mut self) {
            let _ = std::process::Command::new("ip")
                .args(["netns", "del", &self.0])
                .status();
        }
    }
    let _cleanup = Cleanup(ns.clone());
    assert!(run(&["-n", &ns, "link", "set", "lo", "up"]));
    let me = std::env::current_exe().unwrap();
    let out = std::process::Command::new("ip")
        .args(["netns", "exec", &ns])
        .arg(&me)
        .args([
            "--exact",
            "torture_over_udp_inside_namespace",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(NETNS_ENV, "1")
        .env("SWITCHBOARD_BIN", &bin)
        .output()
        .expect("run the inner test");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    for l in stdout.lines().filter(|l| l.contains("as expected")) {
        println!("{l}");
    }
    assert!(
        out.status.success() && stdout.contains("1 passed"),
        "inner run failed:\n{stdout}\n{stderr}"
    );
}

/// The inner half: only meaningful inside the namespace (run by the test above).
#[test]
#[ignore = "run inside a network namespace by torture_over_udp_in_loopback_only_namespace"]
fn torture_over_udp_inside_namespace() {
    assert!(
        std::env::var_os(NETNS_ENV).is_some(),
        "run through torture_over_udp_in_loopback_only_namespace"
    );
    // Only loopback exists here: prove it, so nothing can leave the machine.
    let links = std::process::Command::new("ip")
        .args(["-o", "link"])
        .output()
        .unwrap();
    let links = String::from_utf8_lossy(&links.stdout);
    assert_eq!(
        links.lines().count(),
        1,
        "namespace must have only lo: {links}"
    );

    let cfg = common::ServerConfig {
        users: 1001..=1002,
        ..Default::default()
    };
    let server = common::Server::start(&cfg);
    let exp = expectations();
    let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(std::time::Duration::from_millis(300)))
        .unwrap();
    let mut tally: BTreeMap<&str, (usize, usize)> = BTreeMap::new();
    let mut misses = Vec::new();
    let mut buf = vec![0u8; 65_535];
    for (file, _) in manifest() {
        let data = std::fs::read(torture_dir().join(&file)).unwrap();
        sock.send_to(&data, server.udp).unwrap();
        // The server retransmits final answers to INVITEs that nobody ACKs (Timer G): only a
        // response with this message's Call-ID and CSeq is its answer.
        let ours = transaction_of(&data);
        let mut statuses = Vec::new();
        while let Ok((n, _)) = sock.recv_from(&mut buf) {
            if transaction_of(&buf[..n]) != ours {
                continue;
            }
            if let Ok(Message::Response(r)) = parse_message(&buf[..n], 65_535) {
                statuses.push(r.status);
                if r.status >= 200 {
                    break;
                }
            }
        }
        let rfc = if file.starts_with("rfc4475") {
            "RFC 4475"
        } else {
            "RFC 5118"
        };
        let e = tally.entry(rfc).or_default();
        e.1 += 1;
        let expect = exp[file.as_str()];
        if judge(expect, &statuses, false) {
            e.0 += 1;
        } else {
            misses.push(format!("{file}: expected {expect:?}, got {statuses:?}"));
        }
    }
    let mut server = server;
    assert!(server.is_running(), "the server survived every message");
    report("over UDP", &tally, &misses);
}

/// The raw Call-ID and CSeq values of a message (long or compact names, whitespace squeezed),
/// read line by line so that it works on messages the parser refuses too.
fn transaction_of(data: &[u8]) -> (Option<String>, Option<String>) {
    let text = String::from_utf8_lossy(data);
    let head = text.split("\r\n\r\n").next().unwrap_or("");
    // Unfold continuation lines first (wsinv.dat folds its CSeq).
    let mut lines: Vec<String> = Vec::new();
    for line in head.lines().skip(1) {
        match lines.last_mut() {
            Some(last) if line.starts_with([' ', '\t']) => last.push_str(line),
            _ => lines.push(line.to_owned()),
        }
    }
    let mut call_id = None;
    let mut cseq = None;
    for line in &lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.split_whitespace().collect::<Vec<_>>().join(" ");
        match name.trim().to_ascii_lowercase().as_str() {
            "call-id" | "i" => call_id = call_id.or(Some(value)),
            "cseq" => cseq = cseq.or(Some(value)),
            _ => {}
        }
    }
    (call_id, cseq)
}
