//! `switchboard demo` on the shipped config, for a bounded time: headless phones play the
//! agents and callers; afterwards the call records hold answered, recorded calls and their
//! recordings are on disk.

mod common;

use std::process::Command;

use store::Store;

fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            copy_dir(&p, &to.join(e.file_name()));
        } else {
            std::fs::copy(&p, to.join(e.file_name())).unwrap();
        }
    }
}

fn wavs(dir: &std::path::Path) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| {
            let p = e.path();
            if p.is_dir() {
                wavs(&p)
            } else {
                usize::from(p.extension().is_some_and(|x| x == "wav"))
            }
        })
        .sum()
}

#[test]
fn the_demo_produces_answered_recorded_calls() {
    let work = common::temp_dir("demo");
    copy_dir(
        std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/config")),
        &work.join("config"),
    );
    let (pmin, pmax) = common::media_ports(200);
    let out = Command::new(common::switchboard_bin())
        .current_dir(&work)
        .args([
            "demo",
            "--seconds",
            "20",
            "--sip-bind",
            "127.0.0.1:0",
            "--phone",
        ])
        .arg(common::phone_bin())
        // Nothing of the test machine's ports: the web side on any port, RTP in a range of
        // this test's own.
        .env("SWITCHBOARD__HTTP__BIND", "127.0.0.1:0")
        .env("SWITCHBOARD__MEDIA__ADVERTISE", "127.0.0.1")
        .env("SWITCHBOARD__MEDIA__PORT_MIN", pmin.to_string())
        .env("SWITCHBOARD__MEDIA__PORT_MAX", pmax.to_string())
        .output()
        .expect("switchboard demo runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("demo: 5 agents answer, 5 callers call 600"),
        "{stdout}"
    );
    let rows = Store::open_read_only(&work.join("data/switchboard.db"))
        .and_then(|s| s.calls_between(0, i64::MAX))
        .expect("the call records");
    let answered = rows.iter().filter(|r| r.outcome == "answered").count();
    let recorded = rows
        .iter()
        .filter(|r| r.outcome == "answered" && r.recorded)
        .count();
    assert!(
        answered >= 3,
        "{answered} answered calls: {rows:?}\n{stdout}"
    );
    assert_eq!(recorded, answered, "the demo queue records every call");
    assert!(wavs(&work.join("data/recordings")) >= answered);
    assert!(
        rows.iter()
            .all(|r| r.queue.as_deref() == Some("support") || r.outcome != "answered"),
        "{rows:?}"
    );
}
