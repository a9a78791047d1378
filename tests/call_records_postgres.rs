//! Call records in PostgreSQL: the server configured with `[storage] url` (a real PostgreSQL
//! server this test starts, see `crates/store/tests/pg/mod.rs`), real calls from SIPp over
//! loopback, and their records found in PostgreSQL, also through `switchboard report`.
//!
//! PostgreSQL is down when the server starts, and stopped again while it runs: the calls are
//! handled all the same, their records wait in the spill file in the data directory, and
//! once PostgreSQL is back they are written (each once) and the file goes. The web API reads
//! them (a supervisor's call list) and writes beside them (a reviewer's listing, audited) on
//! connections of its own. The URL's password shows nowhere in the server's log.

mod common;
#[path = "../crates/store/tests/pg/mod.rs"]
mod pg;

use std::io::Write;
use std::time::Duration;

use common::{Server, ServerConfig};
use store::Store;

/// The web logins' password.
const WEB_PASSWORD: &str = "records-test-password";

/// Queue `sales` (601) that nobody serves: a caller waits and gives up (an abandoned call);
/// a trunk for 127.0.0.1 may dial it. Call records go to PostgreSQL at `url`. Web logins:
/// sam (supervisor), rita (reviewer), root (admin).
fn center(http_port: u16, url: &str) -> ServerConfig {
    let hash = {
        let mut child = std::process::Command::new(common::switchboard_bin())
            .arg("passwd")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        writeln!(child.stdin.take().unwrap(), "{WEB_PASSWORD}").unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success());
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    };
    let login = |name: &str, role: &str| {
        format!("\n[logins.{name}]\npassword_hash = \"{hash}\"\nroles = [\"{role}\"]\n")
    };
    ServerConfig {
        users_extra: [
            login("sam", "supervisor"),
            login("rita", "reviewer"),
            login("root", "admin"),
        ]
        .concat(),
        files: vec![(
            "queues.toml".into(),
            "[queues.sales]\nnumber = \"601\"\n".into(),
        )],
        extra_toml: format!(
            "[trunks.lab]\naddresses = [\"127.0.0.1\"]\nnumbers = [\"601\"]\n\n\
             [http]\nbind = \"127.0.0.1:{http_port}\"\n\n\
             [storage]\nurl = \"{url}\"\n"
        ),
        ..ServerConfig::default()
    }
}

/// `GET path` with a session of `login` (logged in first): status and JSON body.
fn web_get(port: u16, login: &str, path: &str) -> (u16, serde_json::Value) {
    let r = common::http::Web::log_in(port, login, WEB_PASSWORD).request("GET", path, None);
    (
        r.status,
        serde_json::from_slice(&r.body).unwrap_or_default(),
    )
}

/// Calls in PostgreSQL (0 while it is down).
fn stored(url: &str) -> u64 {
    Store::connect_read_only(url)
        .and_then(|s| s.call_count())
        .unwrap_or(0)
}

/// `YYYY-MM-DD` (UTC) of Unix milliseconds.
fn date_of(ms: i64) -> String {
    // Civil from days (H. Hinnant's algorithm).
    let z = ms.div_euclid(86_400_000) + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}")
}

#[test]
fn the_day_of_a_time_is_its_utc_date() {
    assert_eq!(date_of(0), "1970-01-01");
    assert_eq!(date_of(1_795_996_800_000 + 86_399_999), "2026-11-30");
    assert_eq!(date_of(951_868_800_000), "2000-03-01");
}

#[test]
fn records_go_to_postgresql_and_wait_in_the_spill_file_while_it_is_down() {
    let Some(pg) = pg::Server::start("e2e") else {
        return;
    };
    let url = pg.create_db("switchboard");

    // PostgreSQL is down when the server starts: it starts anyway.
    pg.stop();
    let http = common::free_port();
    let mut server = Server::start(&center(http, &url));
    let spill = server.dir().join("data/postgresql.spill");
    common::wait_until(
        Duration::from_secs(10),
        "the server saying the database is not reachable",
        || server.log().contains("the database is not reachable"),
    );
    common::short_calls(&server, "601", 2);
    common::wait_until(
        Duration::from_secs(60),
        "two call records in the spill file, shown in the metrics",
        || {
            common::spilled_calls(&spill) == 2
                && common::http::metric(http, "switchboard_storage_spilled") == Some(2)
        },
    );

    // PostgreSQL comes up: the records are written (the connection is tried every second).
    pg.start_again();
    common::wait_until(
        Duration::from_secs(30),
        "the spilled records in PostgreSQL and the spill file gone",
        || stored(&url) == 2 && !spill.exists(),
    );

    // Calls while it is up go straight in.
    common::short_calls(&server, "601", 3);
    common::wait_until(
        Duration::from_secs(30),
        "five call records in PostgreSQL",
        || stored(&url) == 5,
    );
    assert!(!spill.exists());

    // Stopped while the server runs: the calls are still handled, their records spilled.
    pg.stop();
    common::short_calls(&server, "601", 2);
    common::wait_until(
        Duration::from_secs(60),
        "two call records in the spill file during the second outage",
        || {
            common::spilled_calls(&spill) == 2
                && common::http::metric(http, "switchboard_storage_spilled") == Some(2)
        },
    );
    pg.start_again();
    common::wait_until(
        Duration::from_secs(30),
        "every record in PostgreSQL and the spill file gone",
        || stored(&url) == 7 && !spill.exists(),
    );
    assert_eq!(
        common::http::metric(http, "switchboard_storage_spill_written_total"),
        Some(4)
    );
    assert_eq!(
        common::http::metric(http, "switchboard_storage_spill_dropped_total"),
        Some(0)
    );

    // Each call once, as call control described it.
    let db = Store::connect_read_only(&url).unwrap();
    let rows = db.calls_between(0, i64::MAX).unwrap();
    let mut sip_ids: Vec<&str> = rows.iter().map(|c| c.sip_call_id.as_str()).collect();
    sip_ids.sort_unstable();
    sip_ids.dedup();
    assert_eq!(sip_ids.len(), 7, "each call once: {rows:?}");
    assert!(
        rows.iter()
            .all(|c| c.outcome == "abandoned" && c.queue.as_deref() == Some("sales")),
        "{rows:?}"
    );
    drop(db);

    // The web API reads them, and writes the audit log beside them.
    let (status, calls) = web_get(http, "sam", "/api/calls");
    assert_eq!(status, 200, "{calls}");
    assert_eq!(calls["calls"].as_array().map(Vec::len), Some(7), "{calls}");
    let (status, listed) = web_get(http, "rita", "/api/recordings");
    assert_eq!(status, 200, "{listed}");
    let (status, audit) = web_get(http, "root", "/api/audit");
    assert_eq!(status, 200, "{audit}");
    assert!(audit.to_string().contains("list_recordings"), "{audit}");

    // The report command reads the same server (for the day of the calls, UTC).
    let day = date_of(rows[0].arrived_ms);
    let out = std::process::Command::new(common::switchboard_bin())
        .args(["report", "--format", "json", "--date", &day, "--config"])
        .arg(server.dir())
        .env_remove("SWITCHBOARD_CONFIG")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let slots: Vec<serde_json::Value> = serde_json::from_str(&text).unwrap();
    let offered: u64 = slots
        .iter()
        .filter(|s| s["queue"] == "sales")
        .map(|s| s["offered"].as_u64().unwrap())
        .sum();
    let abandoned: u64 = slots.iter().map(|s| s["abandoned"].as_u64().unwrap()).sum();
    assert_eq!((offered, abandoned), (7, 7), "{text}");

    server.stop();
    let log = server.log();
    assert!(log.contains("spill file written to the database"), "{log}");
    assert!(
        !log.contains(pg::PASSWORD),
        "the URL's password is in the log:\n{log}"
    );
}
