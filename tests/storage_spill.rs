//! While the database refuses writes, the records of real calls (SIPp over loopback) wait in
//! the spill file beside it and show in the metrics; once it takes writes again they are all
//! in it and the file is gone. A SIGKILL while records are only in the spill file loses none:
//! the next start writes them.
//!
//! The database refuses the way a busy one does: another connection (this test) holds its
//! write lock (`BEGIN EXCLUSIVE`), so the server's writes fail after its busy timeout. (File
//! permissions would not do: the tests run as root.)

mod common;
mod serve_proc;

use std::path::Path;
use std::time::Duration;

use common::{Server, ServerConfig};
use serve_proc::Proc;
use store::Store;

/// Queue `sales` (601) that nobody serves: a caller waits and gives up (an abandoned call);
/// a trunk for 127.0.0.1 may dial it.
fn center(http_port: u16) -> ServerConfig {
    ServerConfig {
        files: vec![(
            "queues.toml".into(),
            "[queues.sales]\nnumber = \"601\"\n".into(),
        )],
        extra_toml: format!(
            "[trunks.lab]\naddresses = [\"127.0.0.1\"]\nnumbers = [\"601\"]\n\n\
             [http]\nbind = \"127.0.0.1:{http_port}\"\n"
        ),
        ..ServerConfig::default()
    }
}

/// Hold the database's write lock (as a busy writer would) until dropped.
struct WriteLock(rusqlite::Connection);

impl WriteLock {
    fn take(db: &Path) -> WriteLock {
        let c = rusqlite::Connection::open(db).expect("open the database");
        // The server may be writing just now.
        c.busy_timeout(Duration::from_secs(20)).unwrap();
        c.execute_batch("BEGIN EXCLUSIVE").expect("the write lock");
        WriteLock(c)
    }
}

impl Drop for WriteLock {
    fn drop(&mut self) {
        let _ = self.0.execute_batch("ROLLBACK");
    }
}

/// Calls in the database (a reader is never blocked by the write lock in WAL mode).
fn stored(db: &Path) -> u64 {
    Store::open_read_only(db)
        .and_then(|s| s.call_count())
        .unwrap_or(0)
}

#[test]
fn records_wait_in_the_spill_file_while_the_database_refuses_and_survive_a_sigkill() {
    let http = common::free_port();
    let mut server = Server::start(&center(http));
    let db = server.dir().join("data/switchboard.db");
    let spill = server.dir().join("data/switchboard.db.spill");
    assert!(db.exists(), "the database is there once the server is up");

    // An outage: three calls end while the database refuses. Their records wait in the
    // spill file, and the metrics say so.
    let lock = WriteLock::take(&db);
    common::short_calls(&server, "601", 3);
    common::wait_until(
        Duration::from_secs(90),
        "three call records in the spill file, shown in the metrics",
        || {
            common::spilled_calls(&spill) == 3
                && common::http::metric(http, "switchboard_storage_spilled") == Some(3)
        },
    );
    assert_eq!(stored(&db), 0, "the database took nothing");
    assert_eq!(
        common::http::metric(http, "switchboard_storage_spill_written_total"),
        Some(0)
    );

    // The database takes writes again: every record goes in, and the file goes.
    drop(lock);
    common::wait_until(
        Duration::from_secs(30),
        "the spilled records in the database and the spill file gone",
        || stored(&db) == 3 && !spill.exists(),
    );
    assert_eq!(
        common::http::metric(http, "switchboard_storage_spilled"),
        Some(0)
    );
    assert_eq!(
        common::http::metric(http, "switchboard_storage_spill_written_total"),
        Some(3)
    );
    assert_eq!(
        common::http::metric(http, "switchboard_storage_spill_dropped_total"),
        Some(0)
    );
    let log = server.log();
    assert!(log.contains("spill file written to the database"), "{log}");

    // Another outage, and the server is killed while the records are only in the spill file.
    let lock = WriteLock::take(&db);
    common::short_calls(&server, "601", 2);
    common::wait_until(
        Duration::from_secs(90),
        "two call records in the spill file",
        || common::http::metric(http, "switchboard_storage_spilled") == Some(2),
    );
    assert_eq!(common::spilled_calls(&spill), 2);
    server.kill();
    drop(lock);
    assert_eq!(stored(&db), 3);

    // The next start writes them.
    let mut second = Proc::start(server.dir(), &server.udp.to_string(), &[]);
    common::wait_until(
        Duration::from_secs(30),
        "the records of the spill file in the database after the restart",
        || stored(&db) == 5 && !spill.exists(),
    );
    let store = Store::open_read_only(&db).unwrap();
    let rows = store.calls_between(0, i64::MAX).unwrap();
    let mut sip_ids: Vec<&str> = rows.iter().map(|c| c.sip_call_id.as_str()).collect();
    sip_ids.sort_unstable();
    sip_ids.dedup();
    assert_eq!(sip_ids.len(), 5, "each call once: {rows:?}");
    assert!(
        rows.iter()
            .all(|c| c.outcome == "abandoned" && c.queue.as_deref() == Some("sales")),
        "{rows:?}"
    );
    drop(store);
    let log = second.stop();
    assert!(
        log.contains("records of an earlier database outage wait in the spill file"),
        "{log}"
    );
    assert!(log.contains("spill file written to the database"), "{log}");
}
