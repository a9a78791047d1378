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
//!
//! `RELAY_BENCH_MONITOR=1` adds, at each size and in the same run, the same calls monitored
//! by a supervisor: first listening (the supervisor's leg, a third generator socket, receives
//! the mix of caller and agent and sends nothing), then whispering (the supervisor sends too,
//! and the agent hears a mix of caller and supervisor). Each run prints the relay CPU per call
//! and per packet the relay receives, and the ratio to the unmonitored calls. Mixed packets
//! carry no send time (their payload is the mix), so latency is measured only on the paths
//! that are forwarded as they came.
//!
//! `RELAY_BENCH_SECURE=1` adds, at each size and in the same run, the same calls with the
//! caller's leg encrypted: SDES-SRTP (keys given to the relay, as for a desk phone over TLS),
//! then WebRTC (each call's leg first passes an ICE check and a DTLS handshake with the
//! generator standing in for a browser; the relay CPU of those handshakes gives DTLS
//! handshakes per relay core-second). The generator encrypts what it sends as the caller
//! (its own CPU, not the relay's); the agent's side stays plain, so the relay decrypts one
//! direction and encrypts the other. Each prints relay CPU per packet received and its ratio
//! to the plain calls'.

use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use media::relay::{
    Leg, MediaConfig, MonitorMode, Relay, SdesKeys, SessionCommand, SessionId, WebRtcParams,
};
use media::secure::SdesLeg;
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

#[derive(Clone)]
struct Run {
    label: String,
    sent: u64,
    /// Packets that should arrive per packet sent (a supervisor's mix adds packets).
    fanout: f64,
    received: u64,
    p50_us: f64,
    p99_us: f64,
    relay_cpu_s: f64,
    gen_cpu_s: f64,
    seconds: f64,
}

/// Send `streams` (each: from-socket index, destination) at 50 packets/s each for
/// `seconds`; receive on every socket; return counts and latency percentiles (of the sockets
/// `timed` marks: those that receive packets as they were sent).
/// Encrypts what one stream sends (the generator standing in for an SRTP phone).
enum Sealer {
    Sdes(SdesLeg),
    Dtls(rtc_srtp::context::Context),
}

impl Sealer {
    fn seal(&mut self, p: &[u8]) -> Vec<u8> {
        match self {
            Sealer::Sdes(s) => s.protect_rtp(p).map(|b| b.to_vec()).unwrap_or_default(),
            Sealer::Dtls(c) => c.encrypt_rtp(p).map(|b| b.to_vec()).unwrap_or_default(),
        }
    }
}

fn drive(
    label: &str,
    socks: &[Arc<UdpSocket>],
    timed: &[bool],
    streams: Vec<(usize, SocketAddr)>,
    fanout: f64,
    seconds: f64,
) -> Run {
    drive_sealed(label, socks, timed, streams, fanout, seconds, &mut [])
}

/// [`drive`], with stream `i`'s packets encrypted by `seal[i]` where it is `Some`.
fn drive_sealed(
    label: &str,
    socks: &[Arc<UdpSocket>],
    timed: &[bool],
    streams: Vec<(usize, SocketAddr)>,
    fanout: f64,
    seconds: f64,
    seal: &mut [Option<Sealer>],
) -> Run {
    let t0 = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    let lat: Arc<Mutex<Vec<u32>>> = Arc::new(Mutex::new(Vec::new()));
    // The sender is this thread: name it so its CPU time is counted with the receivers'.
    let _ = std::fs::write("/proc/thread-self/comm", "gen-send");
    let mut receivers = Vec::new();
    for (s, &timed) in socks.iter().zip(timed) {
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
                            if !timed {
                                n += 1;
                            } else if len >= 20 {
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
            let mut p = rtp(seq, i as u32, t0.elapsed().as_nanos() as u64);
            if let Some(Some(s)) = seal.get_mut(i) {
                p = s.seal(&p);
            }
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
        fanout,
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
    let monitor = std::env::var("RELAY_BENCH_MONITOR").is_ok_and(|v| v == "1");
    let secure = std::env::var("RELAY_BENCH_SECURE").is_ok_and(|v| v == "1");
    let mut secure_rows: Vec<(usize, Run, Run, Run, f64)> = Vec::new();
    let mut monitored: Vec<(usize, Run)> = Vec::new();
    let mut monitored_rows: Vec<(usize, Run)> = Vec::new();
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
        let two = [a.clone(), b.clone()];
        let base = drive("direct", &two, &[true, true], direct, 1.0, seconds);
        let via = drive("relay", &two, &[true, true], streams.clone(), 1.0, seconds);
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
                100.0 * r.received as f64 / (r.sent.max(1) as f64 * r.fanout),
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
        if secure {
            let (sdes, webrtc, handshakes) =
                secure_runs(&relay, &sessions, &a, &b, &streams, seconds);
            secure_rows.push((calls, via.clone(), sdes, webrtc, handshakes));
        }
        if monitor {
            monitored.push((calls, via.clone()));
            let c = Arc::new(socket());
            let c_addr = c.local_addr().unwrap();
            let mut with_supervisor = Vec::with_capacity(3 * calls);
            for (s, pair) in sessions.iter().zip(streams.chunks(2)) {
                let port = relay
                    .attach_supervisor(s)
                    .expect("ports for the supervisor");
                s.command(SessionCommand::Remote {
                    leg: Leg::Supervisor,
                    rtp: Some(c_addr),
                    law: Law::Mu,
                    pt: 0,
                    telephone_event: None,
                    sends: true,
                    host: None,
                });
                s.command(SessionCommand::Monitor(MonitorMode::Listen));
                with_supervisor.extend_from_slice(pair);
                with_supervisor.push((2, SocketAddr::from(([127, 0, 0, 1], port))));
            }
            std::thread::sleep(Duration::from_millis(200));
            let three = [a.clone(), b.clone(), c.clone()];
            // Listening: caller and agent send; the supervisor receives one mix per call.
            let listen = drive(
                "listen",
                &three,
                &[true, true, false],
                streams,
                1.5,
                seconds,
            );
            for s in &sessions {
                s.command(SessionCommand::Monitor(MonitorMode::Whisper));
            }
            std::thread::sleep(Duration::from_millis(200));
            // Whispering: the supervisor sends too; the agent and the supervisor hear mixes.
            let whisper = drive(
                "whisper",
                &three,
                &[true, false, false],
                with_supervisor,
                1.0,
                seconds,
            );
            for r in [&listen, &whisper] {
                monitored_rows.push((calls, r.clone()));
            }
        }
        drop(sessions);
        std::thread::sleep(Duration::from_millis(300));
    }
    if monitor {
        print_monitoring(&monitored, &monitored_rows);
    }
    if secure {
        print_secure(&secure_rows);
    }
}

/// The same calls with the caller's leg SDES-SRTP, then WebRTC (ICE check and DTLS
/// handshake first). Returns both runs and the DTLS handshakes per relay core-second.
fn secure_runs(
    relay: &Relay,
    sessions: &[media::relay::Session],
    a: &Arc<UdpSocket>,
    b: &Arc<UdpSocket>,
    streams: &[(usize, SocketAddr)],
    seconds: f64,
) -> (Run, Run, f64) {
    let _ = relay;
    let two = [a.clone(), b.clone()];
    // SDES: the relay gets both keys; the generator seals each call's caller stream.
    let mut seal: Vec<Option<Sealer>> = Vec::with_capacity(streams.len());
    for (i, s) in sessions.iter().enumerate() {
        let (ours, theirs) = (
            media::secure::derive_sdes_key(&[1; 32], i as u64, 0, 0),
            media::secure::derive_sdes_key(&[2; 32], i as u64, 0, 0),
        );
        s.command(SessionCommand::Sdes {
            leg: Leg::Caller,
            keys: Some(SdesKeys {
                local: ours.clone(),
                remote: theirs.clone(),
            }),
        });
        seal.push(Some(Sealer::Sdes(SdesLeg::new(&theirs, &ours).unwrap())));
        seal.push(None);
    }
    std::thread::sleep(Duration::from_millis(200));
    let sdes = drive_sealed(
        "sdes",
        &two,
        &[false, true],
        streams.to_vec(),
        1.0,
        seconds,
        &mut seal,
    );
    // WebRTC: ICE and DTLS with the generator as the browser (socket a is every caller).
    use rtc_dtls::config::{ConfigBuilder, ExtendedMasterSecretType};
    use rtc_dtls::endpoint::{Endpoint, EndpointEvent};
    use rtc_dtls::extension::extension_use_srtp::SrtpProtectionProfile;
    use sha2::Digest;
    let provider = rtc_dtls::crypto_provider::default_provider().unwrap();
    let cert =
        rtc_dtls::crypto::Certificate::generate_self_signed(vec!["gen".into()], provider.crypto())
            .unwrap();
    let fp = sha2::Sha256::digest(cert.certificate[0].as_ref())
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":");
    let pwd = "relay-bench-password-0123456789";
    for (i, s) in sessions.iter().enumerate() {
        s.command(SessionCommand::Sdes {
            leg: Leg::Caller,
            keys: None,
        });
        s.command(SessionCommand::WebRtc {
            leg: Leg::Caller,
            params: Some(WebRtcParams {
                ufrag: format!("u{i}"),
                pwd: pwd.into(),
                remote_fingerprint: Some(format!("sha-256 {fp}")),
            }),
        });
    }
    std::thread::sleep(Duration::from_millis(200));
    let a_addr = a.local_addr().unwrap();
    let mut client = Endpoint::new(a_addr, rtc_shared::TransportProtocol::UDP, None);
    let mut buf = [0u8; 2048];
    a.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
    let cpu0 = thread_cpu("relay-worker");
    let t_hs = Instant::now();
    let ports: Vec<SocketAddr> = streams.iter().step_by(2).map(|s| s.1).collect();
    for (i, port) in ports.iter().enumerate() {
        let check = media::ice::request(&format!("u{i}:gen"), pwd, true);
        a.send_to(&check, port).unwrap();
    }
    let cfg = Arc::new(
        ConfigBuilder::default()
            .with_crypto_provider(provider.clone())
            .with_certificates(vec![cert])
            .with_srtp_protection_profiles(vec![SrtpProtectionProfile::Srtp_Aes128_Cm_Hmac_Sha1_80])
            .with_extended_master_secret(ExtendedMasterSecretType::Require)
            .with_insecure_skip_verify(true)
            .build(true, None)
            .unwrap(),
    );
    let mut done = std::collections::HashSet::new();
    let mut checked = 0usize;
    let deadline = Instant::now() + Duration::from_secs(60);
    let now = Instant::now;
    while done.len() < ports.len() && Instant::now() < deadline {
        while let Some(t) = client.poll_transmit() {
            let _ = a.send_to(&t.message, t.transport.peer_addr);
        }
        let Ok((n, from)) = a.recv_from(&mut buf) else {
            for p in &ports {
                let _ = client.handle_timeout(*p, now());
            }
            continue;
        };
        match buf[0] {
            // The relay's answer to our check: now the handshake may start.
            0..=3 => {
                checked += 1;
                client.connect(now(), from, cfg.clone(), None).unwrap();
            }
            20..=63 => {
                if let Ok(evs) = client.read(now(), from, None, bytes::BytesMut::from(&buf[..n])) {
                    if evs
                        .iter()
                        .any(|e| matches!(e, EndpointEvent::HandshakeComplete))
                    {
                        done.insert(from);
                    }
                }
            }
            _ => {}
        }
    }
    while let Some(t) = client.poll_transmit() {
        let _ = a.send_to(&t.message, t.transport.peer_addr);
    }
    let hs_secs = t_hs.elapsed().as_secs_f64();
    std::thread::sleep(Duration::from_millis(300));
    let hs_cpu = thread_cpu("relay-worker") - cpu0;
    a.set_read_timeout(None).unwrap();
    assert_eq!(checked, ports.len(), "every ICE check answered");
    assert_eq!(done.len(), ports.len(), "every DTLS handshake done");
    let mut seal: Vec<Option<Sealer>> = Vec::with_capacity(streams.len());
    for p in &ports {
        let state = client.get_connection_state(*p).unwrap();
        let mut keys = rtc_srtp::config::Config::default();
        let km = state
            .export_keying_material(
                rtc_srtp::config::LABEL_EXTRACTOR_DTLS_SRTP,
                &[],
                keys.keying_material_len(),
            )
            .unwrap();
        keys.set_session_keys_from_keying_material(km.as_ref(), true)
            .unwrap();
        let ctx = rtc_srtp::context::Context::new(
            &keys.keys.local_master_key,
            &keys.keys.local_master_salt,
            keys.profile,
            None,
            None,
            provider.crypto(),
        )
        .unwrap();
        seal.push(Some(Sealer::Dtls(ctx)));
        seal.push(None);
    }
    let webrtc = drive_sealed(
        "webrtc",
        &two,
        &[false, true],
        streams.to_vec(),
        1.0,
        seconds,
        &mut seal,
    );
    let _ = hs_secs;
    let handshakes_per_core_s = ports.len() as f64 / hs_cpu.max(0.01);
    (sdes, webrtc, handshakes_per_core_s)
}

/// Encrypted legs beside plain ones of the same size: relay CPU per packet received and the
/// ratio to plain; delivery; the added latency of the plain direction; DTLS handshakes.
fn print_secure(rows: &[(usize, Run, Run, Run, f64)]) {
    println!();
    println!("Caller's leg encrypted (agent's plain), same calls, same run:");
    println!(
        "| calls | leg | delivered | relay CPU (cores) | relay µs CPU per packet received | × plain | p99 to the agent |"
    );
    println!("|---:|---|---:|---:|---:|---:|---:|");
    for (calls, plain, sdes, webrtc, _) in rows {
        let per_packet = |r: &Run| r.relay_cpu_s / r.received.max(1) as f64 * 1e6;
        for r in [plain, sdes, webrtc] {
            println!(
                "| {calls} | {} | {:.3} % | {:.2} | {:.2} | {:.2} | {:.0} µs |",
                if r.label == "relay" {
                    "plain"
                } else {
                    &r.label
                },
                100.0 * r.received as f64 / (r.sent.max(1) as f64 * r.fanout),
                r.relay_cpu_s / r.seconds,
                per_packet(r),
                per_packet(r) / per_packet(plain),
                r.p99_us,
            );
        }
    }
    println!();
    for (calls, .., hs) in rows {
        println!(
            "DTLS handshakes (ICE check, then DTLS 1.2 with ECDHE-ECDSA) of {calls} browser legs: {hs:.0} per relay core-second"
        );
    }
}

/// The monitored calls beside the unmonitored ones of the same size: relay CPU per call and
/// per packet received, and the ratio of each to the unmonitored calls'.
fn print_monitoring(plain: &[(usize, Run)], monitored: &[(usize, Run)]) {
    println!();
    println!(
        "Monitored calls (a supervisor per call) against the same calls unmonitored, same run; \
         latency only on paths forwarded as they came"
    );
    println!(
        "| calls | calls are | packets/s into relay | delivered | relay CPU (cores) | relay CPU per call (ms/s) | relay CPU per packet in (µs) | per call vs unmonitored | per packet vs unmonitored | latency p50 | p99 |"
    );
    println!("|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for (calls, base) in plain {
        let per_call = |r: &Run| 1000.0 * r.relay_cpu_s / r.seconds / *calls as f64;
        let per_packet = |r: &Run| 1e6 * r.relay_cpu_s / r.sent.max(1) as f64;
        let rows = std::iter::once(base)
            .chain(monitored.iter().filter(|(c, _)| c == calls).map(|(_, r)| r));
        for r in rows {
            let label = if r.label == "relay" {
                "unmonitored"
            } else {
                r.label.as_str()
            };
            println!(
                "| {calls} | {label} | {:.0} | {:.3} % | {:.2} | {:.3} | {:.2} | {:.2}× | {:.2}× | {:.0} | {:.0} |",
                r.sent as f64 / r.seconds,
                100.0 * r.received as f64 / (r.sent.max(1) as f64 * r.fanout),
                r.relay_cpu_s / r.seconds,
                per_call(r),
                per_packet(r),
                per_call(r) / per_call(base),
                per_packet(r) / per_packet(base),
                r.p50_us,
                r.p99_us,
            );
        }
    }
}
