//! RTP relay load: how many packets per second the relay forwards per core, and how much
//! latency it adds, at 100, 500 and 1,000 concurrent bridged G.711 calls (20 ms packets, both
//! directions: 100 packets/s per call).
//!
//! The relay runs as in the server: a 2-worker tokio runtime whose threads are named
//! `relay-worker`, so their CPU time can be read from /proc. The load generator runs on its
//! own threads in the same process: one sender that paces a packet per leg every 20 ms, and
//! one receiver per side. Two generator sockets stand for all phones (each relay leg latches
//! onto the address it first hears from, so one socket can be "the caller" of every call);
//! the receiver tells calls apart by the relay port a packet comes from. Every packet carries
//! its send time; latency is measured send to receive.
//!
//! The baseline, measured in the same run with the same generator at the same packet rate,
//! is the direct path (caller socket to agent socket, no relay): the relay's *added* latency
//! is the difference of the two.
//!
//! `RELAY_BENCH_CALLS=100,500` limits the sizes; `RELAY_BENCH_SECONDS` sets the measuring
//! time per size (default 10).

use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use media::relay::{Leg, MediaConfig, Relay, SessionCommand, SessionId};
use recorder::g711::Law;

const PAYLOAD: usize = 160;

fn socket() -> UdpSocket {
    let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::DGRAM, None).unwrap();
    s.set_recv_buffer_size(8 << 20).unwrap();
    s.set_send_buffer_size(8 << 20).unwrap();
    s.bind(&"127.0.0.1:0".parse::<SocketAddr>().unwrap().into())
        .unwrap();
    s.into()
}

/// CPU seconds used so far by the threads whose name starts with `prefix`.
fn thread_cpu(prefix: &str) -> f64 {
    let tick = 100.0; // USER_HZ on Linux
    let mut total = 0u64;
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return 0.0;
    };
    for t in tasks.flatten() {
        let comm = std::fs::read_to_string(t.path().join("comm")).unwrap_or_default();
        if !comm.trim().starts_with(prefix) {
            continue;
        }
        let stat = std::fs::read_to_string(t.path().join("stat")).unwrap_or_default();
        // Fields after the ")" of the command name: state is field 3; utime 14, stime 15.
        let after = stat.rsplit_once(')').map_or("", |x| x.1);
        let f: Vec<&str> = after.split_whitespace().collect();
        if f.len() > 12 {
            total += f[11].parse::<u64>().unwrap_or(0) + f[12].parse::<u64>().unwrap_or(0);
        }
    }
    total as f64 / tick
}

fn rtp(seq: u16, ssrc: u32, sent_ns: u64) -> Vec<u8> {
    let mut p = Vec::with_capacity(12 + PAYLOAD);
    p.extend_from_slice(&[0x80, 0]);
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&(seq as u32 * 160).to_be_bytes());
    p.extend_from_slice(&ssrc.to_be_bytes());
    p.extend_from_slice(&sent_ns.to_be_bytes());
    p.resize(12 + PAYLOAD, Law::Mu.silence());
    p
}

struct Run {
    label: String,
    sent: u64,
    received: u64,
    p50_us: f64,
    p99_us: f64,
    relay_cpu_s: f64,
    gen_cpu_s: f64,
    seconds: f64,
}

/// Send `streams` (each: from-socket index, destination) at 50 packets/s each for
/// `seconds`; receive on both sockets; return counts and latency percentiles.
fn drive(
    label: &str,
    socks: [Arc<UdpSocket>; 2],
    streams: Vec<(usize, SocketAddr)>,
    seconds: f64,
) -> Run {
    let t0 = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    let lat: Arc<Mutex<Vec<u32>>> = Arc::new(Mutex::new(Vec::new()));
    // The sender is this thread: name it so its CPU time is counted with the receivers'.
    let _ = std::fs::write("/proc/thread-self/comm", "gen-send");
    let mut receivers = Vec::new();
    for s in &socks {
        let s = s.clone();
        let stop = stop.clone();
        let lat = lat.clone();
        s.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        receivers.push(
            std::thread::Builder::new()
                .name("gen-recv".into())
                .spawn(move || {
                    let mut buf = [0u8; 2048];
                    let mut mine = Vec::with_capacity(1 << 20);
                    let mut n = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        if let Ok((len, _)) = s.recv_from(&mut buf) {
                            if len >= 20 {
                                let sent = u64::from_be_bytes(buf[12..20].try_into().unwrap());
                                let now = t0.elapsed().as_nanos() as u64;
                                mine.push(((now.saturating_sub(sent)) / 1000) as u32);
                                n += 1;
                            }
                        }
                    }
                    lat.lock().unwrap().extend(mine);
                    n
                })
                .unwrap(),
        );
    }
    // Sender: every stream sends once per 20 ms, the streams spread evenly over the 20 ms
    // like independent phones. The sender wakes every millisecond and sends what is due.
    let cpu0 = thread_cpu("relay-worker");
    let gen0 = thread_cpu("gen-");
    let start = Instant::now();
    let mut sent = 0u64;
    let total_ms = (seconds * 1000.0) as u64;
    let per_ms = streams.len() as f64 / 20.0;
    let mut next = 0usize; // index into the endless sequence of (tick, stream)
    for ms in 1..=total_ms {
        let due = (ms as f64 * per_ms) as usize;
        while next < due {
            let i = next % streams.len();
            let seq = (next / streams.len()) as u16;
            let (from, to) = streams[i];
            let p = rtp(seq, i as u32, t0.elapsed().as_nanos() as u64);
            if socks[from].send_to(&p, to).is_ok() {
                sent += 1;
            }
            next += 1;
        }
        let at = start + Duration::from_millis(ms);
        let now = Instant::now();
        if at > now {
            std::thread::sleep(at - now);
        }
    }
    let gen_cpu = thread_cpu("gen-") - gen0;
    std::thread::sleep(Duration::from_millis(300));
    let relay_cpu = thread_cpu("relay-worker") - cpu0;
    let elapsed = start.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    let received: u64 = receivers.into_iter().map(|r| r.join().unwrap()).sum();
    let mut l = std::mem::take(&mut *lat.lock().unwrap());
    l.sort_unstable();
    let pct = |q: f64| {
        if l.is_empty() {
            f64::NAN
        } else {
            l[((l.len() - 1) as f64 * q) as usize] as f64
        }
    };
    Run {
        label: label.to_owned(),
        sent,
        received,
        p50_us: pct(0.50),
        p99_us: pct(0.99),
        relay_cpu_s: relay_cpu,
        gen_cpu_s: gen_cpu,
        seconds: elapsed,
    }
}

fn main() {
    // `cargo bench` passes --bench; nothing else to parse.
    let sizes: Vec<usize> = std::env::var("RELAY_BENCH_CALLS")
        .ok()
        .map(|v| v.split(',').filter_map(|x| x.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![100, 500, 1000]);
    let seconds: f64 = std::env::var("RELAY_BENCH_SECONDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10.0);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("relay-worker")
        .enable_all()
        .build()
        .unwrap();
    let (ev_tx, mut ev_rx) = tokio::sync::mpsc::channel(1 << 16);
    rt.spawn(async move { while ev_rx.recv().await.is_some() {} });
    let relay = rt.block_on(async {
        Relay::new(
            MediaConfig {
                bind: "127.0.0.1".parse().unwrap(),
                advertise: "127.0.0.1".parse().unwrap(),
                port_min: 40_000,
                port_max: 50_000,
                timeout: Duration::from_secs(600),
                recv_buffer: 1 << 20,
            },
            ev_tx,
        )
    });
    println!(
        "RTP relay: 20 ms G.711 (172-byte packets), both directions, {seconds} s per size; \
         latency = send to receive on loopback, µs"
    );
    println!(
        "| calls | path | packets/s offered | delivered | relay CPU (cores) | packets/s per relay core | generator CPU (cores) | latency p50 | p99 | added p50 | added p99 |"
    );
    println!("|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for &calls in &sizes {
        let a = Arc::new(socket());
        let b = Arc::new(socket());
        let (a_addr, b_addr) = (a.local_addr().unwrap(), b.local_addr().unwrap());
        let _guard = rt.enter();
        let mut sessions = Vec::with_capacity(calls);
        let mut streams = Vec::with_capacity(2 * calls);
        for i in 0..calls {
            let s = relay
                .open(SessionId(i as u64))
                .expect("ports for the session");
            for (leg, addr) in [(Leg::Caller, a_addr), (Leg::Agent, b_addr)] {
                s.command(SessionCommand::Remote {
                    leg,
                    rtp: Some(addr),
                    law: Law::Mu,
                    pt: 0,
                    telephone_event: None,
                    sends: true,
                    host: None,
                });
            }
            s.command(SessionCommand::Bridge(true));
            let port = |leg| SocketAddr::from(([127, 0, 0, 1], s.port(leg)));
            streams.push((0, port(Leg::Caller)));
            streams.push((1, port(Leg::Agent)));
            sessions.push(s);
        }
        std::thread::sleep(Duration::from_millis(200));
        // Direct baseline: the same number of streams, caller socket to agent socket.
        let direct: Vec<(usize, SocketAddr)> = (0..2 * calls)
            .map(|i| if i % 2 == 0 { (0, b_addr) } else { (1, a_addr) })
            .collect();
        let base = drive("direct", [a.clone(), b.clone()], direct, seconds);
        let via = drive("relay", [a.clone(), b.clone()], streams, seconds);
        for r in [&base, &via] {
            let offered = r.sent as f64 / r.seconds;
            let cores = r.relay_cpu_s / r.seconds;
            let per_core = if r.label == "relay" && cores > 0.0 {
                format!("{:.0}", r.received as f64 / r.seconds / cores)
            } else {
                "-".into()
            };
            let (added50, added99) = if r.label == "relay" {
                (
                    format!("{:.0}", r.p50_us - base.p50_us),
                    format!("{:.0}", r.p99_us - base.p99_us),
                )
            } else {
                ("-".into(), "-".into())
            };
            println!(
                "| {calls} | {} | {:.0} | {:.3} % | {} | {} | {:.2} | {:.0} | {:.0} | {} | {} |",
                r.label,
                offered,
                100.0 * r.received as f64 / r.sent.max(1) as f64,
                if r.label == "relay" {
                    format!("{cores:.2}")
                } else {
                    "-".into()
                },
                per_core,
                r.gen_cpu_s / r.seconds,
                r.p50_us,
                r.p99_us,
                added50,
                added99
            );
        }
        drop(sessions);
        std::thread::sleep(Duration::from_millis(300));
    }
}
