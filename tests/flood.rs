//! Strangers on the internet: a flood of INVITEs and REGISTERs without credentials from 250
//! source addresses at 50,000 requests a second (ten times what the per-source limit of 20
//! requests a second admits from them), while a customer calls the queue through the
//! carrier. The server's memory stays within a stated bound, and the customer reaches the
//! agent.

mod common;

use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{Server, SippRun};

/// Growth of the server's resident memory the flood may cause.
const MEMORY_BOUND: u64 = 64 * 1024 * 1024;
/// Flood rate (requests per second over all sources).
const RATE: f64 = 50_000.0;

fn resident(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        })
        .map_or(0, |kib| kib * 1024)
}

fn junk(method: &str, i: u64, from: SocketAddr) -> String {
    let user = 1000 + i % 50;
    let (uri, to_user) = if method == "INVITE" {
        ("sip:600@switchboard".to_owned(), "600".to_owned())
    } else {
        ("sip:switchboard".to_owned(), user.to_string())
    };
    let body = if method == "INVITE" {
        format!(
            "v=0\r\no=- 1 1 IN IP4 {ip}\r\ns=-\r\nc=IN IP4 {ip}\r\nt=0 0\r\n\
             m=audio 4000 RTP/AVP 0\r\n",
            ip = from.ip()
        )
    } else {
        String::new()
    };
    format!(
        "{method} {uri} SIP/2.0\r\nVia: SIP/2.0/UDP {from};branch=z9hG4bK-fl{i};rport\r\n\
         Max-Forwards: 70\r\nFrom: <sip:{user}@switchboard>;tag=f{i}\r\n\
         To: <sip:{to_user}@switchboard>\r\nCall-ID: flood{i}@{ip}\r\nCSeq: 1 {method}\r\n\
         Contact: <sip:{user}@{from}>\r\nContent-Type: application/sdp\r\n\
         Content-Length: {len}\r\n\r\n{body}",
        ip = from.ip(),
        len = body.len(),
    )
}

#[test]
fn a_flood_from_many_addresses_costs_bounded_memory_and_a_customer_still_reaches_the_agent() {
    let server = Server::start(&common::one_agent_help_desk());
    let pid = server.pid().expect("running");

    // The agent's phone registers and answers one call.
    let phone = common::agent_phones(&server, 1001..=1001, "agent_phone_answer.xml", 1, &[]);
    common::wait_agents_ready(&server, &[1001], Duration::from_secs(10));
    let before = resident(pid);

    // The flood: 250 senders on 127.0.9.1–250, one thread, no waiting for answers.
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicU64::new(0));
    let target = server.udp;
    let flood = {
        let (stop, sent) = (stop.clone(), sent.clone());
        std::thread::spawn(move || {
            let socks: Vec<UdpSocket> = (1..=250u8)
                .filter_map(|h| UdpSocket::bind((Ipv4Addr::new(127, 0, 9, h), 0)).ok())
                .collect();
            assert!(socks.len() >= 200, "source addresses on loopback");
            for s in &socks {
                let _ = s.set_nonblocking(true);
            }
            let started = Instant::now();
            let mut i = 0u64;
            // Bounded in time whatever happens to the test.
            while !stop.load(Ordering::Relaxed) && started.elapsed() < Duration::from_secs(20) {
                // Paced: ahead of the rate, give the core back for a millisecond.
                if i as f64 > started.elapsed().as_secs_f64() * RATE {
                    std::thread::sleep(Duration::from_millis(1));
                    continue;
                }
                let s = &socks[(i % socks.len() as u64) as usize];
                let from = s.local_addr().unwrap();
                let method = if i.is_multiple_of(2) {
                    "INVITE"
                } else {
                    "REGISTER"
                };
                if s.send_to(junk(method, i, from).as_bytes(), target).is_ok() {
                    sent.fetch_add(1, Ordering::Relaxed);
                }
                // Drain what comes back so the senders' buffers never stop them.
                let mut buf = [0u8; 2048];
                while s.recv_from(&mut buf).is_ok() {}
                i += 1;
            }
        })
    };
    // Well under way before the customer calls.
    common::wait_until(Duration::from_secs(10), "the flood is under way", || {
        sent.load(Ordering::Relaxed) > 50_000
    });
    let mut peak = before;
    let watch_stop = Arc::new(AtomicBool::new(false));
    let watcher = {
        let watch_stop = watch_stop.clone();
        std::thread::spawn(move || {
            let mut peak = 0;
            while !watch_stop.load(Ordering::Relaxed) {
                peak = peak.max(resident(pid));
                std::thread::sleep(Duration::from_millis(50));
            }
            peak
        })
    };
    let out = SippRun::new(&server, "caller.xml")
        .calls(1)
        .limit(1)
        .rate(1)
        .timeout_s(40)
        .arg("-s")
        .arg("600")
        .arg("-d")
        .arg("1000")
        .media_port()
        .run();
    stop.store(true, Ordering::Relaxed);
    let _ = flood.join();
    watch_stop.store(true, Ordering::Relaxed);
    peak = peak.max(watcher.join().unwrap_or(0));
    let flooded = sent.load(Ordering::Relaxed);
    let log = server.log();
    assert!(
        out.exit_code == Some(0) && out.successful() == 1,
        "the customer's call failed during the flood ({flooded} requests sent)\n{}\n--- server ---\n{}",
        out.diagnostics(),
        log.lines().rev().take(40).collect::<Vec<_>>().join("\n")
    );
    let reached = log.contains("call connected");
    assert!(
        reached,
        "the call did not reach the agent:\n{}",
        log.lines().rev().take(60).collect::<Vec<_>>().join("\n")
    );
    // The flood was beyond what the server handles: it had to drop unread.
    assert!(
        log.contains("datagrams of unknown sources dropped unread"),
        "the flood never overloaded the server ({flooded} requests)"
    );
    let _ = phone.wait();
    let grew = peak.saturating_sub(before);
    eprintln!(
        "flood: {flooded} requests from 250 addresses; server memory {} MiB before, peak {} MiB (+{} KiB)",
        before >> 20,
        peak >> 20,
        grew >> 10
    );
    assert!(
        grew < MEMORY_BOUND,
        "memory grew by {grew} bytes under the flood (bound {MEMORY_BOUND})"
    );
}
