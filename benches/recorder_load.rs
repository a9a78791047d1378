//! Recorder load: CPU per recorded call-minute, and whether N concurrent recordings keep up
//! with zero dropped frames.
//!
//! The recorder runs as in the server: its own thread (`recorder`), fed through the same
//! bounded queue the relay's tap uses, with the same policy (`try_send`; a frame that does not
//! fit is dropped and counted). A generator thread stands in for the relay: every 20 ms it
//! sends one 20 ms PCMU packet per leg of every call (100 frames/s per call), paced on the
//! clock. Files are written to a temporary directory on the same disk as the checkout.
//!
//! The comparison printed is against real time: the recorder's CPU seconds per recorded
//! call-minute, and the concurrent recordings one core could carry at that cost.
//!
//! `RECORDER_BENCH_CALLS=500,1000` and `RECORDER_BENCH_SECONDS` (default 20) set the sizes;
//! `RECORDER_BENCH_DIR` where the files go (default `target/`; `/dev/shm` takes the disk out
//! of the measurement and leaves the recorder's own CPU cost).

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use recorder::file::Sidecar;
use recorder::g711::Law;
use recorder::service::{RecordFrame, Recorder, RecorderCommand, RecorderConfig};
use recorder::timeline::Channel;

fn thread_cpu(prefix: &str) -> f64 {
    let mut total = 0u64;
    for t in std::fs::read_dir("/proc/self/task")
        .into_iter()
        .flatten()
        .flatten()
    {
        let comm = std::fs::read_to_string(t.path().join("comm")).unwrap_or_default();
        if !comm.trim().starts_with(prefix) {
            continue;
        }
        let stat = std::fs::read_to_string(t.path().join("stat")).unwrap_or_default();
        let after = stat.rsplit_once(')').map_or("", |x| x.1);
        let f: Vec<&str> = after.split_whitespace().collect();
        if f.len() > 12 {
            total += f[11].parse::<u64>().unwrap_or(0) + f[12].parse::<u64>().unwrap_or(0);
        }
    }
    total as f64 / 100.0
}

fn sidecar(call: u64) -> Box<Sidecar> {
    Box::new(Sidecar {
        call_id: call,
        queue: "bench".into(),
        caller: "bench".into(),
        agent: "bench".into(),
        codec: "PCMU".into(),
        start: recorder::file::utc(SystemTime::now()),
        end: None,
        duration: 0.0,
        pauses: Vec::new(),
        channels: "left: caller, right: agent".into(),
        dropped_frames: 0,
        sha256: None,
        repaired: false,
        mailbox: None,
    })
}

fn main() {
    let sizes: Vec<u64> = std::env::var("RECORDER_BENCH_CALLS")
        .ok()
        .map(|v| v.split(',').filter_map(|x| x.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![500, 1000, 2000, 4000]);
    let seconds: u64 = std::env::var("RECORDER_BENCH_SECONDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let root = std::env::var_os("RECORDER_BENCH_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target"))
        .join("recorder-bench");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    println!(
        "Recorder: stereo 8 kHz WAV per call, 20 ms PCMU frames on both legs (100 frames/s per call), \
         {seconds} s per size, files in {}",
        root.display()
    );
    println!("| concurrent recordings | frames/s offered | dropped frames | recorder CPU (cores) | CPU s per recorded call-minute | recordings one core carries | written |");
    println!("|---:|---:|---:|---:|---:|---:|---:|");
    for &calls in &sizes {
        let _ = std::fs::remove_dir_all(&root);
        let rec = Recorder::start(RecorderConfig {
            dir: root.clone(),
            ..RecorderConfig::default()
        })
        .unwrap();
        let t0 = Instant::now();
        for c in 0..calls {
            rec.command(RecorderCommand::Start {
                call: c,
                law: Law::Mu,
                sidecar: sidecar(c),
                at: t0,
            });
        }
        // Wait until every recording has its files (file creation is not what this measures).
        let created = Instant::now();
        while rec.stats().files_created.load(Ordering::Relaxed) < calls {
            std::thread::sleep(Duration::from_millis(5));
        }
        let start_cost = created.elapsed().as_secs_f64() / calls as f64;
        let frames = rec.frames();
        // 20 ms of a 1 kHz tone, µ-law.
        let tone: Vec<i16> = (0..160)
            .map(|k| {
                (8000.0 * (2.0 * std::f64::consts::PI * 1000.0 * k as f64 / 8000.0).sin()) as i16
            })
            .collect();
        let mut payload = Vec::new();
        Law::Mu.encode_into(&tone, &mut payload);
        let cpu0 = thread_cpu("recorder");
        let start = Instant::now();
        let mut offered = 0u64;
        let mut dropped = 0u64;
        let ticks = seconds * 50;
        let mut packet = vec![0x80u8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        packet.extend_from_slice(&payload);
        for tick in 0..ticks {
            let at = start + Duration::from_millis(20 * tick);
            if let Some(d) = at.checked_duration_since(Instant::now()) {
                std::thread::sleep(d);
            }
            let now = Instant::now();
            for c in 0..calls {
                for (leg, ch) in [(0u32, Channel::Left), (1, Channel::Right)] {
                    packet[2..4].copy_from_slice(&(tick as u16).to_be_bytes());
                    packet[4..8].copy_from_slice(&((tick as u32) * 160).to_be_bytes());
                    packet[8..12].copy_from_slice(&((c as u32) << 1 | leg).to_be_bytes());
                    let f = RecordFrame {
                        call: c,
                        channel: ch,
                        at: now,
                        packet: Bytes::copy_from_slice(&packet),
                    };
                    offered += 1;
                    if frames.try_send(f).is_err() {
                        dropped += 1;
                    }
                }
            }
        }
        let elapsed = start.elapsed().as_secs_f64();
        std::thread::sleep(Duration::from_millis(200));
        let cpu = thread_cpu("recorder") - cpu0;
        let end = Instant::now();
        for c in 0..calls {
            rt.block_on(rec.command_wait(RecorderCommand::Stop {
                call: c,
                at: end,
                end: SystemTime::now(),
                dropped: 0,
            }));
        }
        rt.block_on(rec.shutdown());
        let finished = rec.stats().finished.load(Ordering::Relaxed);
        let call_minutes = calls as f64 * elapsed / 60.0;
        let per_minute = cpu / call_minutes;
        println!(
            "| {calls} | {:.0} | {dropped} | {:.2} | {:.4} | {:.0} | {finished} files, {:.0} µs each to create |",
            offered as f64 / elapsed,
            cpu / elapsed,
            per_minute,
            60.0 / per_minute,
            start_cost * 1e6,
        );
    }
    let _ = std::fs::remove_dir_all(&root);
}
