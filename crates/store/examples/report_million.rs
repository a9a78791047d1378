//! How long an interval report over a million stored calls takes (the aim: under a second).
//! Stores a million calls spread over 24 hours, 4 queues and 200 agents in a fresh database,
//! then times the per-queue report in 30-minute slots and the per-agent one in 60-minute slots.
//!
//! `cargo run --release -p store --example report_million`

use std::time::Instant;

use store::{CallRow, Store};

fn main() {
    let dir = std::env::temp_dir().join(format!("store-million-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mut s = Store::open(&dir.join("calls.db")).expect("database");
    let day = 24 * 3_600_000i64;
    let t0 = 1_800_000_000_000 - 1_800_000_000_000 % day;
    let n = 1_000_000u64;
    let queues = ["support", "sales", "billing", "vip"];
    let started = Instant::now();
    let mut batch = Vec::with_capacity(10_000);
    for i in 0..n {
        let x = i.wrapping_mul(2_654_435_761);
        let outcome = match x % 10 {
            0 => "abandoned",
            1 => "timed_out",
            _ => "answered",
        };
        batch.push(CallRow {
            queue: Some(queues[(x % 4) as usize].into()),
            agent: (outcome == "answered").then(|| format!("agent{}", x % 200)),
            outcome: outcome.into(),
            wait_ms: (x % 60_000) as i64,
            talk_ms: (x % 600_000) as i64,
            hold_ms: (x % 30_000) as i64,
            wrap_up_ms: 5_000,
            ..CallRow::new(i, t0 + (i as i64 * day) / n as i64)
        });
        if batch.len() == 10_000 {
            s.insert_calls(&batch).expect("insert");
            batch.clear();
        }
    }
    println!(
        "stored {n} calls in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    for _ in 0..3 {
        let t = Instant::now();
        let q = s
            .queue_intervals(t0, t0 + day, 30 * 60_000, 20_000)
            .expect("report");
        let queue_s = t.elapsed().as_secs_f64();
        let t = Instant::now();
        let a = s
            .agent_intervals(t0, t0 + day, 60 * 60_000)
            .expect("report");
        let agent_s = t.elapsed().as_secs_f64();
        let offered: u64 = q.iter().map(|r| r.offered).sum();
        println!(
            "queue report: {} rows, {offered} calls, {queue_s:.3} s ({:.2}x the 1 s aim); \
             agent report: {} rows, {agent_s:.3} s",
            q.len(),
            queue_s,
            a.len()
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}
