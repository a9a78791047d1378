//! What operators see and what strangers cannot hold: the server's log through a pipe (plain
//! text, a line per REGISTER, a flood summarised instead of a line per packet), and TCP
//! connections limited per source and closed when idle without a registration.

mod common;
mod serve_proc;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::RawResponse;
use serve_proc::Proc;

/// REGISTER user 1001 over UDP with digest; returns the final status.
fn register_udp(server: SocketAddr) -> u16 {
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    let local = sock.local_addr().unwrap();
    let first = common::raw_request("REGISTER", server, local, "UDP", "1001", &[]);
    let ch = common::udp_exchange(&sock, server, &first, Duration::from_secs(5))
        .expect("an answer to REGISTER");
    assert_eq!(ch.status, 401, "{}", ch.text);
    let auth = serve_proc::authorization(
        ch.header("www-authenticate").expect("a challenge"),
        1001,
        &format!("sip:{server}"),
    );
    let second = common::raw_request("REGISTER", server, local, "UDP", "1001", &[&auth]);
    common::udp_exchange(&sock, server, &second, Duration::from_secs(5)).map_or(0, |r| r.status)
}

/// Send a request over a TCP connection and read one response (headers only: the server's
/// answers here have no body).
fn tcp_exchange(stream: &mut TcpStream, request: &str) -> RawResponse {
    stream.write_all(request.as_bytes()).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !got.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream.read(&mut buf).expect("a response");
        assert!(n > 0, "connection closed before a response");
        got.extend_from_slice(&buf[..n]);
    }
    RawResponse::parse(&String::from_utf8_lossy(&got)).expect("a SIP response")
}

#[test]
fn a_piped_log_is_plain_text_names_each_register_and_summarises_a_flood() {
    let dir = serve_proc::config_dir(
        "flood-log",
        "",
        "rate_limit = 50\nrate_burst = 50\nlog_interval = 1",
        &[],
    );
    let p = Proc::start(
        &dir,
        "127.0.0.1:0",
        &[("SWITCHBOARD__SIP__MAX_MESSAGE_SIZE", "1500")],
    );

    // A REGISTER is an info line, without the account or contact (personal data).
    assert_eq!(register_udp(p.udp), 200);
    let log = p.wait_log(Duration::from_secs(5), |l| l.contains("binding added"));
    let added = log
        .lines()
        .find(|l| l.contains("binding added"))
        .unwrap_or_else(|| panic!("no info line for the REGISTER:\n{log}"));
    assert!(added.contains("INFO"), "{added}");
    assert!(
        added.contains("transport=\"UDP\"") || added.contains("transport=UDP"),
        "{added}"
    );
    assert!(
        !added.contains("1001"),
        "the AOR is for debug only: {added}"
    );

    // A flood from one address: garbage and oversized datagrams within the burst, then far
    // more than the rate limit lets through.
    let flood = UdpSocket::bind("127.0.0.1:0").unwrap();
    let garbage = b"\x16\x03\x01\x02\x00garbage that is no SIP at all";
    let oversized = vec![b'A'; 2000];
    let mut sent = 0;
    for _ in 0..15 {
        flood.send_to(garbage, p.udp).unwrap();
        flood.send_to(&oversized, p.udp).unwrap();
        sent += 2;
    }
    for _ in 0..2000 {
        flood.send_to(garbage, p.udp).unwrap();
        sent += 1;
    }
    // The summary comes when the interval (1 s) is over, without another packet.
    let log = p.wait_log(Duration::from_secs(10), |l| {
        l.lines()
            .any(|x| x.contains("(summary)") && x.contains("rate limit"))
    });
    let about_flood: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("dropped") && l.contains("source="))
        .collect();
    let text = about_flood.join("\n");
    eprintln!("{sent} packets from one source; the log says:\n{text}");
    for reason in ["unparseable message", "message too large", "rate limit"] {
        assert!(
            about_flood.iter().any(|l| l.contains(reason)),
            "no line names {reason:?}:\n{log}"
        );
    }
    assert!(
        about_flood
            .iter()
            .any(|l| l.contains("(summary)") && l.contains("dropped=")),
        "no summary count:\n{text}"
    );
    assert!(
        about_flood.len() <= 8,
        "{} lines for {sent} packets, expected a few:\n{text}",
        about_flood.len()
    );
    assert!(
        !log.contains('\u{1b}'),
        "ANSI escape codes in a piped log:\n{log:?}"
    );
    drop(p);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn tcp_connections_beyond_the_per_source_limit_close_at_once_idle_ones_after_the_timeout_and_a_registered_one_stays(
) {
    const IDLE_SECS: u64 = 3;
    const LIMIT: usize = 5;
    const EXTRA: usize = 3;
    let dir = serve_proc::config_dir(
        "tcp-limits",
        &format!("tcp_idle_timeout = {IDLE_SECS}\nmax_tcp_per_source = {LIMIT}"),
        "rate_limit = 0\nlog_interval = 60",
        &[],
    );
    let mut p = Proc::start(&dir, "127.0.0.1:0", &[]);

    // One phone registers over TCP and then stays quiet on its connection.
    let mut phone = TcpStream::connect(p.tcp).unwrap();
    let local = phone.local_addr().unwrap();
    let first = common::raw_request("REGISTER", p.tcp, local, "TCP", "1001", &[]);
    let ch = tcp_exchange(&mut phone, &first);
    assert_eq!(ch.status, 401, "{}", ch.text);
    let auth = serve_proc::authorization(
        ch.header("www-authenticate").unwrap(),
        1001,
        &format!("sip:{}", p.tcp),
    );
    let second = common::raw_request("REGISTER", p.tcp, local, "TCP", "1001", &[&auth]);
    assert_eq!(tcp_exchange(&mut phone, &second).status, 200);

    // Then idle connections from the same address: LIMIT - 1 more fit, EXTRA do not.
    let opened = Instant::now();
    let (tx, rx) = mpsc::channel();
    for i in 0..LIMIT - 1 + EXTRA {
        let mut s = TcpStream::connect(p.tcp).unwrap();
        let tx = tx.clone();
        std::thread::spawn(move || {
            s.set_read_timeout(Some(Duration::from_secs(IDLE_SECS + 20)))
                .unwrap();
            let mut b = [0u8; 64];
            // EOF or a reset both mean the server closed it; a timeout means it did not.
            let closed = !matches!(s.read(&mut b), Err(ref e) if e.kind() == std::io::ErrorKind::WouldBlock || e.kind() == std::io::ErrorKind::TimedOut);
            let _ = tx.send((i, closed, Instant::now()));
        });
    }
    drop(tx);
    let mut ends: Vec<(usize, bool, Duration)> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(IDLE_SECS + 25);
    while ends.len() < LIMIT - 1 + EXTRA {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok((i, closed, at)) => ends.push((i, closed, at - opened)),
            Err(_) => break,
        }
    }
    assert_eq!(ends.len(), LIMIT - 1 + EXTRA, "{ends:?}\n{}", p.log());
    assert!(ends.iter().all(|e| e.1), "every one was closed: {ends:?}");
    // The first EXTRA to close are the refused ones, well before the idle timeout …
    let idle = Duration::from_secs(IDLE_SECS);
    let (refused, idled) = ends.split_at(EXTRA);
    assert!(
        refused.iter().all(|e| e.2 < idle / 2),
        "refused ones closed at once: {ends:?}"
    );
    // … and the accepted ones after it (not before the timeout, not long after).
    assert!(
        idled
            .iter()
            .all(|e| e.2 >= idle - Duration::from_millis(200) && e.2 < idle * 3),
        "idle ones closed after {IDLE_SECS} s: {ends:?}"
    );

    // A stream that is not SIP is closed, with a line that says why.
    let mut junk = TcpStream::connect(p.tcp).unwrap();
    junk.write_all(b"GET / HTTP/1.0\r\nHost: x\r\n\r\n")
        .unwrap();
    junk.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut b = [0u8; 64];
    let closed = match junk.read(&mut b) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => !matches!(
            e.kind(),
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
        ),
    };
    assert!(closed, "the junk stream is closed");

    // The registered connection was idle as long as the others, and it is still open.
    let options = common::raw_request("OPTIONS", p.tcp, local, "TCP", "1001", &[]);
    assert_eq!(tcp_exchange(&mut phone, &options).status, 200);

    let log = p.stop();
    let refused_lines = log
        .lines()
        .filter(|l| l.contains("TCP connection refused"))
        .count();
    assert_eq!(
        refused_lines, 1,
        "one line for the source, not one per connection:\n{log}"
    );
    assert!(
        log.contains("too many connections from this source"),
        "{log}"
    );
    assert!(log.contains("idle without a registration"), "{log}");
    assert!(
        log.lines()
            .any(|l| l.contains("stream not framed as SIP") && l.contains("no Content-Length")),
        "{log}"
    );
    assert!(log.contains(&format!("tcp_refused: {EXTRA}")), "{log}");
    assert!(
        log.contains(&format!("tcp_idle_closed: {}", LIMIT - 1)),
        "{log}"
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn a_tcp_peer_that_stops_reading_loses_messages_but_keeps_its_one_connection() {
    let dir = serve_proc::config_dir(
        "tcp-not-reading",
        "",
        "rate_limit = 0\nlog_interval = 60",
        &[],
    );
    let mut p = Proc::start(&dir, "127.0.0.1:0", &[]);
    // A peer with a tiny receive buffer that sends and does not read.
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    sock.set_recv_buffer_size(4096).unwrap();
    sock.connect(&p.tcp.into()).unwrap();
    let mut peer: TcpStream = sock.into();
    let local = peer.local_addr().unwrap();
    let mut writer = peer.try_clone().unwrap();
    let target = p.tcp;
    let sender = std::thread::spawn(move || {
        for _ in 0..30_000 {
            let req = common::raw_request("OPTIONS", target, local, "TCP", "1001", &[]);
            if writer.write_all(req.as_bytes()).is_err() {
                break;
            }
        }
    });
    let log = p.wait_log(Duration::from_secs(60), |l| {
        l.contains("TCP messages dropped, connection kept")
    });
    assert!(
        log.contains("TCP messages dropped, connection kept"),
        "the server never found the peer's queue full:\n{log}"
    );
    let _ = sender.join();
    // The peer reads again: everything queued arrives, and the connection still answers.
    peer.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let mut buf = vec![0u8; 1 << 16];
    let mut quiet_since = Instant::now();
    while quiet_since.elapsed() < Duration::from_secs(2) {
        match peer.read(&mut buf) {
            Ok(0) => panic!("the server closed the connection"),
            Ok(_) => quiet_since = Instant::now(),
            Err(_) => {}
        }
    }
    let last = common::raw_request("OPTIONS", p.tcp, local, "TCP", "1001", &[]);
    let r = tcp_exchange(&mut peer, &last);
    assert_eq!(r.status, 200, "{}", r.text);
    let log = p.stop();
    let counters = log
        .lines()
        .find(|l| l.contains("final counters"))
        .unwrap_or_else(|| panic!("no final counters:\n{log}"));
    assert!(counters.contains("tcp_connections: 1,"), "{counters}");
    assert!(!counters.contains("tcp_queue_full: 0 "), "{counters}");
    assert!(!counters.contains("tcp_queue_full: 0,"), "{counters}");
}
