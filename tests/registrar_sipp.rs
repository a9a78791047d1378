//! The SIP registrar end to end: the real `switchboard` binary against SIPp over loopback.
//!
//! Each test starts its own server (temporary config, users 1001..1100 with password
//! `demo<user>`, MD5 digest, port chosen by the OS), so bans and bindings never leak
//! between tests. Scenarios live in `tests/sipp/`. SIPp must be installed
//! (`apt-get install sip-tester`); without it these tests fail, they do not skip.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::time::{Duration, Instant};

use common::{
    demo_password, injection_file, raw_request, udp_exchange, users_csv, RawResponse, Server,
    ServerConfig, SippRun, Transport,
};

const USERS: u32 = 100;
const FIRST_USER: u32 = 1001;

/// 100 distinct users: REGISTER → 401 → REGISTER with digest → 200, refresh on the same
/// Call-ID (200 with the nonce reused, or a new challenge first), then Expires: 0 → 200.
fn register_refresh_unregister(transport: Transport) {
    let mut server = Server::start(&ServerConfig::default());
    let csv = users_csv(
        server.dir(),
        FIRST_USER..=FIRST_USER + USERS - 1,
        demo_password,
    );
    let started = Instant::now();
    let run = SippRun::new(&server, "register_refresh_unregister.xml")
        .transport(transport)
        .injection(&csv)
        .calls(USERS)
        .rate(100)
        .limit(USERS)
        .timeout_s(30)
        .run();
    run.assert_all_succeeded(u64::from(USERS), &server);

    // How the refreshes and unregisters went: every 401 beyond the first challenge of
    // each call is a re-challenge (stale or new nonce).
    let messages = run.messages();
    let challenges = messages.matches("SIP/2.0 401").count();
    eprintln!(
        "{transport:?}: {USERS} registrations, refreshes and unregisters in {:.1?}; \
         re-challenges after the first 200: {}; SIPp retransmissions: {}",
        started.elapsed(),
        challenges.saturating_sub(USERS as usize),
        run.retransmissions(),
    );

    assert!(
        server.is_running(),
        "switchboard exited during the run:\n{}",
        server.log()
    );
    let status = server.stop();
    assert!(
        status.is_some_and(|s| s.success()),
        "switchboard did not exit 0 on SIGTERM: {status:?}\n{}",
        server.log()
    );
}

#[test]
fn hundred_users_register_refresh_unregister_over_udp() {
    register_refresh_unregister(Transport::Udp);
}

#[test]
fn hundred_users_register_refresh_unregister_over_tcp() {
    register_refresh_unregister(Transport::Tcp);
}

#[test]
fn wrong_password_and_unknown_user_get_401() {
    let server = Server::start(&ServerConfig {
        max_auth_failures: 5,
        failure_window: 60,
        ban_duration: 60,
        ..ServerConfig::default()
    });
    let bad = injection_file(
        server.dir(),
        "bad.csv",
        &[
            // wrong password
            "1001;[authentication username=1001 password=wrong]".into(),
            // unknown user, in the To URI and the credentials
            "9999;[authentication username=9999 password=demo9999]".into(),
        ],
    );
    let run = SippRun::new(&server, "register_wrong_password.xml")
        .injection(&bad)
        .calls(2)
        .rate(10)
        .timeout_s(20)
        .run();
    // Each call succeeds only when the wrong credentials got 401 (a 200 or 403 fails it).
    run.assert_all_succeeded(2, &server);

    // Two failures are below max_auth_failures: the source may still register.
    let good = users_csv(server.dir(), 1002..=1002, demo_password);
    let run = SippRun::new(&server, "register_refresh_unregister.xml")
        .injection(&good)
        .calls(1)
        .timeout_s(20)
        .run();
    run.assert_all_succeeded(1, &server);
}

#[test]
fn repeated_failures_get_403_then_silence() {
    const MAX_FAILURES: u32 = 5;
    let server = Server::start(&ServerConfig {
        max_auth_failures: MAX_FAILURES,
        failure_window: 60,
        ban_duration: 60,
        ..ServerConfig::default()
    });
    let bad = injection_file(
        server.dir(),
        "guess.csv",
        &["1001;[authentication username=1001 password=guess]".into()],
    );
    let run = SippRun::new(&server, "register_ban.xml")
        .injection(&bad)
        .calls(1)
        .timeout_s(30)
        .run();
    // The scenario fails the call on a missing 403, or on any answer after it.
    run.assert_all_succeeded(1, &server);

    let log = run.action_log();
    let refused: f64 = log
        .split("failures_before_403=")
        .nth(1)
        .and_then(|rest| {
            let end = rest
                .find(|c: char| !(c.is_ascii_digit() || c == '.'))
                .unwrap_or(rest.len());
            rest[..end].parse().ok()
        })
        .unwrap_or_else(|| panic!("no failures_before_403 in the scenario log: {log:?}"));
    // The max_auth_failures-th failed login within failure_window is the one answered
    // 403 (config/switchboard.toml: "failed logins from one address within
    // failure_window seconds get 403 and a ban"); the ones before it get 401.
    assert_eq!(
        refused,
        f64::from(MAX_FAILURES - 1),
        "wrong logins answered 401 before the 403 (max_auth_failures = {MAX_FAILURES})\n{}",
        run.diagnostics()
    );

    // Still banned: the server ignores everything from 127.0.0.1, even OPTIONS ...
    let banned = UdpSocket::bind("127.0.0.1:0").expect("bind");
    let local = banned.local_addr().expect("local addr");
    let options = raw_request("OPTIONS", server.udp, local, "UDP", "probe", &[]);
    let answer = udp_exchange(&banned, server.udp, &options, Duration::from_millis(1500));
    assert!(
        answer.is_none(),
        "a banned source got an answer: {answer:?}"
    );

    // ... but it is alive and answers another source (127.0.0.2 is loopback too).
    let other = UdpSocket::bind("127.0.0.2:0").expect("bind 127.0.0.2");
    let local = other.local_addr().expect("local addr");
    let options = raw_request("OPTIONS", server.udp, local, "UDP", "probe", &[]);
    let answer = udp_exchange(&other, server.udp, &options, Duration::from_secs(3));
    assert_eq!(
        answer.as_ref().map(|r| r.status),
        Some(200),
        "OPTIONS from an address that is not banned: {answer:?}\n{}",
        server.log()
    );
}

fn check_options_answer(r: &RawResponse, request: &str) {
    assert_eq!(r.status, 200, "OPTIONS answer:\n{}", r.text);
    let branch = request
        .split("branch=")
        .nth(1)
        .and_then(|b| b.split([';', '\r']).next())
        .expect("branch in request");
    assert!(
        r.header("via").is_some_and(|v| v.contains(branch)),
        "Via of the answer does not carry our branch {branch}:\n{}",
        r.text
    );
    let allow = r.all("allow").join(",").to_ascii_uppercase();
    for method in ["REGISTER", "OPTIONS"] {
        assert!(allow.contains(method), "Allow lacks {method}:\n{}", r.text);
    }
    assert!(
        r.header("accept").is_some(),
        "no Accept header:\n{}",
        r.text
    );
    assert!(
        r.header("supported").is_some(),
        "no Supported header:\n{}",
        r.text
    );
    assert!(
        r.header("to").is_some_and(|t| t.contains("tag=")),
        "To of a final answer has no tag:\n{}",
        r.text
    );
}

fn tcp_exchange(
    server: SocketAddr,
    request_for: impl Fn(SocketAddr) -> String,
) -> (String, RawResponse) {
    let mut stream = TcpStream::connect(server).expect("connect TCP");
    stream
        .set_read_timeout(Some(Duration::from_secs(3)))
        .expect("timeout");
    let local = stream.local_addr().expect("local addr");
    let request = request_for(local);
    stream.write_all(request.as_bytes()).expect("write");
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let response = loop {
        let n = stream.read(&mut chunk).unwrap_or_else(|e| {
            panic!(
                "no answer over TCP ({e}); got {:?}",
                String::from_utf8_lossy(&buf)
            )
        });
        assert!(n > 0, "TCP closed; got {:?}", String::from_utf8_lossy(&buf));
        buf.extend_from_slice(&chunk[..n]);
        let text = String::from_utf8_lossy(&buf).into_owned();
        if let Some(head_end) = text.find("\r\n\r\n") {
            let r = RawResponse::parse(&text).expect("a SIP response");
            let body = r
                .header("content-length")
                .and_then(|l| l.parse::<usize>().ok())
                .unwrap_or(0);
            if text.len() >= head_end + 4 + body {
                break r;
            }
        }
    };
    (request, response)
}

#[test]
fn options_gets_200_and_register_without_credentials_gets_a_digest_challenge() {
    let mut server = Server::start(&ServerConfig::default());

    // OPTIONS over UDP.
    let socket = UdpSocket::bind("127.0.0.1:0").expect("bind");
    let local = socket.local_addr().expect("local addr");
    let request = raw_request("OPTIONS", server.udp, local, "UDP", "probe", &[]);
    let r = udp_exchange(&socket, server.udp, &request, Duration::from_secs(3))
        .unwrap_or_else(|| panic!("no answer to OPTIONS over UDP\n{}", server.log()));
    check_options_answer(&r, &request);

    // OPTIONS over TCP, on the same port.
    assert_eq!(server.tcp.port(), server.udp.port(), "{}", server.banner);
    let (request, r) = tcp_exchange(server.tcp, |local| {
        raw_request("OPTIONS", server.tcp, local, "TCP", "probe", &[])
    });
    check_options_answer(&r, &request);

    // REGISTER without credentials: one MD5 challenge with qop=auth for our realm.
    let request = raw_request(
        "REGISTER",
        server.udp,
        local,
        "UDP",
        "1001",
        &["Expires: 3600"],
    );
    let r = udp_exchange(&socket, server.udp, &request, Duration::from_secs(3))
        .unwrap_or_else(|| panic!("no answer to REGISTER\n{}", server.log()));
    assert_eq!(r.status, 401, "{}", r.text);
    let challenges = r.all("www-authenticate");
    assert_eq!(
        challenges.len(),
        1,
        "one challenge per algorithm (MD5 only):\n{}",
        r.text
    );
    let c = challenges[0];
    assert!(c.starts_with("Digest "), "{c}");
    for part in [
        "realm=\"switchboard-test\"",
        "nonce=\"",
        "algorithm=MD5",
        "qop=\"auth\"",
    ] {
        assert!(c.contains(part), "challenge lacks {part}: {c}");
    }
    assert!(
        r.header("contact").is_none(),
        "a 401 lists bindings:\n{}",
        r.text
    );

    let status = server.stop();
    assert!(
        status.is_some_and(|s| s.success()),
        "switchboard did not exit 0 on SIGTERM: {status:?}\n{}",
        server.log()
    );
}
