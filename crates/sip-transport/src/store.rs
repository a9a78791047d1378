//! Registrar bindings kept on disk, so that phones stay reachable across a restart (like
//! Kamailio's usrloc with a database).
//!
//! The file is one JSON document, `{"version": 1, "saved_at_ms": …, "bindings": [...]}`,
//! each binding with its wall-clock expiry in milliseconds since the Unix epoch. It is
//! rewritten whole, atomically (temporary file, fsync, rename, fsync of the directory), by
//! a writer thread: the SIP task only hands it the bindings of each AOR that changed, over
//! a bounded channel, and never waits for the disk. Writes are coalesced (at most one per
//! [`COALESCE`]), so a burst of registrations costs one write; when nothing but refreshes
//! came (the same contacts with a later expiry), the write waits up to [`REFRESH_COALESCE`],
//! so a registration storm of refreshes rewrites the file a few times a minute, not five
//! times a second. A crash then loses at most that much of a refreshed expiry, far less than
//! the margin phones keep between refreshes.
//!
//! At start, [`load`] reads the file back; the SIP task restores each binding with the
//! lifetime it has left and drops the expired ones. A missing file is an empty store; a
//! corrupt one is reported and moved aside, and the server starts without it.

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use sip::registrar::{Binding, RestoredBinding};
use sip::{Flow, Transport};
use tracing::{debug, info, warn};

/// Longest a change waits before the file is written (changes in between share the write).
pub const COALESCE: Duration = Duration::from_millis(200);
/// Longest refreshes alone wait before the file is written.
pub const REFRESH_COALESCE: Duration = Duration::from_secs(5);
/// AOR updates that may wait for the writer; beyond it the SIP task retries later.
const QUEUE: usize = 4096;
const VERSION: u32 = 1;

/// One stored binding.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredBinding {
    /// Address-of-record.
    pub aor: String,
    /// Contact URI.
    pub contact: String,
    /// Wall-clock expiry, milliseconds since the Unix epoch.
    pub expires_at_ms: u64,
    /// q-value in thousandths.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub q: Option<u16>,
    /// Call-ID of the last REGISTER.
    pub call_id: String,
    /// Its CSeq.
    pub cseq: u32,
    /// "udp", "tcp", "tls", "ws" or "wss".
    pub transport: String,
    /// Where the REGISTER came from (requests to the phone go there).
    pub remote: SocketAddr,
    /// `+sip.instance`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance: Option<String>,
    /// `reg-id`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reg_id: Option<u32>,
    /// User-Agent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_agent: Option<String>,
}

#[derive(Debug, Serialize, Deserialize)]
struct StoreFile {
    version: u32,
    saved_at_ms: u64,
    bindings: Vec<StoredBinding>,
}

/// Why the store could not be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The file exists but cannot be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// The file is not a binding store (truncated, edited, another version).
    #[error("{path} is not a readable binding store: {reason}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
}

/// Milliseconds since the Unix epoch of a wall-clock time.
pub fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis().min(u128::from(u64::MAX)) as u64)
}

impl StoredBinding {
    /// The stored form of a live binding, given the two clocks read at the same moment.
    pub fn from_binding(aor: &str, b: &Binding, now: Instant, now_ms: u64) -> StoredBinding {
        let left = b.expires_at.saturating_duration_since(now);
        StoredBinding {
            aor: aor.to_owned(),
            contact: b.uri_text.clone(),
            expires_at_ms: now_ms.saturating_add(left.as_millis() as u64),
            q: b.q,
            call_id: b.call_id.clone(),
            cseq: b.cseq,
            transport: b.flow.transport.as_str().to_ascii_lowercase(),
            remote: b.flow.remote,
            instance: b.instance.clone(),
            reg_id: b.reg_id,
            user_agent: b.user_agent.clone(),
        }
    }

    /// What the registrar takes back, with the lifetime left at `now_ms`; `None` when it has
    /// expired or names an unknown transport, and for a browser's WebSocket or a phone's TLS binding: the
    /// connection was its only way in and died with the restart (the browser registers again
    /// when it reconnects).
    pub fn to_restored(&self, now_ms: u64) -> Option<RestoredBinding<'_>> {
        let left = self.expires_at_ms.checked_sub(now_ms).filter(|l| *l > 0)?;
        let transport = match self.transport.to_ascii_lowercase().as_str() {
            "udp" => Transport::Udp,
            "tcp" => Transport::Tcp,
            // A TLS phone, like a browser, is reached only over the connection it opened.
            _ => return None,
        };
        Some(RestoredBinding {
            contact: &self.contact,
            remaining: Duration::from_millis(left),
            q: self.q,
            call_id: &self.call_id,
            cseq: self.cseq,
            // The connection of before the restart is gone: a new one is opened if needed.
            flow: Flow {
                transport,
                remote: self.remote,
                conn: None,
            },
            instance: self.instance.as_deref(),
            reg_id: self.reg_id,
            user_agent: self.user_agent.as_deref(),
        })
    }
}

/// Read the store. A missing file is an empty store.
pub fn load(path: &Path) -> Result<Vec<StoredBinding>, StoreError> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(StoreError::Read {
                path: path.to_owned(),
                source,
            })
        }
    };
    let file: StoreFile = serde_json::from_slice(&bytes).map_err(|e| StoreError::Corrupt {
        path: path.to_owned(),
        reason: e.to_string(),
    })?;
    if file.version != VERSION {
        return Err(StoreError::Corrupt {
            path: path.to_owned(),
            reason: format!("version {} (this server reads {VERSION})", file.version),
        });
    }
    Ok(file.bindings)
}

/// Write `bindings` to `path` atomically: a temporary file beside it, fsync, rename over the
/// old one, fsync of the directory.
pub fn save(path: &Path, bindings: &[StoredBinding], now_ms: u64) -> io::Result<()> {
    let file = StoreFile {
        version: VERSION,
        saved_at_ms: now_ms,
        bindings: bindings.to_vec(),
    };
    let bytes = serde_json::to_vec(&file).map_err(io::Error::other)?;
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let mut tmp_name = path.file_name().unwrap_or_default().to_owned();
    tmp_name.push(".tmp");
    let tmp = dir.join(tmp_name);
    {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(&bytes)?;
        f.write_all(b"\n")?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    // The rename itself must survive a crash: sync the directory entry (best effort where
    // directories cannot be opened).
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// Move a store that cannot be read out of the way (`<name>.bad`), so that it is kept for
/// inspection and not overwritten. Returns the new path.
pub fn set_aside(path: &Path) -> io::Result<PathBuf> {
    let mut name = path.file_name().unwrap_or_default().to_owned();
    name.push(".bad");
    let to = path.with_file_name(name);
    std::fs::rename(path, &to)?;
    Ok(to)
}

/// The current bindings of one AOR (empty: it has none left).
#[derive(Debug)]
pub(crate) struct AorUpdate {
    pub(crate) aor: String,
    pub(crate) bindings: Vec<StoredBinding>,
}

/// The SIP task's end of the writer.
#[derive(Debug)]
pub(crate) struct StoreWriter {
    tx: Option<SyncSender<AorUpdate>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl StoreWriter {
    /// Start the writer thread for `path`, holding `initial` (what was restored).
    pub(crate) fn start(path: PathBuf, initial: Vec<StoredBinding>) -> io::Result<StoreWriter> {
        let (tx, rx) = std::sync::mpsc::sync_channel(QUEUE);
        let mut by_aor: BTreeMap<String, Vec<StoredBinding>> = BTreeMap::new();
        for b in initial {
            by_aor.entry(b.aor.clone()).or_default().push(b);
        }
        let thread = std::thread::Builder::new()
            .name("binding-store".into())
            .spawn(move || write_loop(&path, by_aor, &rx))?;
        Ok(StoreWriter {
            tx: Some(tx),
            thread: Some(thread),
        })
    }

    /// Hand over an update without waiting; gives it back when the queue is full.
    pub(crate) fn offer(&self, u: AorUpdate) -> Result<(), AorUpdate> {
        match &self.tx {
            Some(tx) => match tx.try_send(u) {
                Ok(()) => Ok(()),
                Err(TrySendError::Full(u)) => Err(u),
                // The writer is gone (it logged why): nothing more to do.
                Err(TrySendError::Disconnected(_)) => Ok(()),
            },
            None => Ok(()),
        }
    }

    /// Close the queue and wait (on a blocking thread) until the last write is done.
    pub(crate) async fn finish(mut self) {
        self.tx = None;
        if let Some(t) = self.thread.take() {
            let _ = tokio::task::spawn_blocking(move || t.join()).await;
        }
    }
}

/// True when `new` adds, removes or moves a binding of `old` (another contact, source,
/// transport, instance, reg-id or q); false when it only refreshes them.
fn moves_a_binding(old: Option<&[StoredBinding]>, new: &[StoredBinding]) -> bool {
    let same_place = |a: &StoredBinding, b: &StoredBinding| {
        a.contact == b.contact
            && a.remote == b.remote
            && a.transport == b.transport
            && a.instance == b.instance
            && a.reg_id == b.reg_id
            && a.q == b.q
    };
    match old {
        Some(old) => old.len() != new.len() || old.iter().zip(new).any(|(a, b)| !same_place(a, b)),
        None => !new.is_empty(),
    }
}

fn write_loop(
    path: &Path,
    mut by_aor: BTreeMap<String, Vec<StoredBinding>>,
    rx: &Receiver<AorUpdate>,
) {
    // Applies an update; true unless it only refreshed bindings (same contacts, same
    // places, later expiries).
    let apply = |by_aor: &mut BTreeMap<String, Vec<StoredBinding>>, u: AorUpdate| -> bool {
        let changed = moves_a_binding(by_aor.get(&u.aor).map(Vec::as_slice), &u.bindings);
        if u.bindings.is_empty() {
            by_aor.remove(&u.aor);
        } else {
            by_aor.insert(u.aor, u.bindings);
        }
        changed
    };
    let mut failing = false;
    let mut write = |by_aor: &BTreeMap<String, Vec<StoredBinding>>| {
        let now_ms = unix_ms(SystemTime::now());
        let live: Vec<StoredBinding> = by_aor
            .values()
            .flatten()
            .filter(|b| b.expires_at_ms > now_ms)
            .cloned()
            .collect();
        match save(path, &live, now_ms) {
            Ok(()) => {
                if failing {
                    info!(path = %path.display(), bindings = live.len(), "binding store written again");
                }
                failing = false;
                debug!(path = %path.display(), bindings = live.len(), "binding store written");
            }
            Err(e) => {
                if !failing {
                    warn!(path = %path.display(), error = %e, "cannot write the binding store; bindings will not survive a restart until this is fixed");
                }
                failing = true;
            }
        }
    };
    loop {
        let urgent = match rx.recv() {
            Ok(u) => apply(&mut by_aor, u),
            Err(_) => return,
        };
        let wait = if urgent { COALESCE } else { REFRESH_COALESCE };
        let mut deadline = Instant::now() + wait;
        let closed = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(u) => {
                    if apply(&mut by_aor, u) {
                        deadline = deadline.min(Instant::now() + COALESCE);
                    }
                }
                Err(RecvTimeoutError::Timeout) => break false,
                Err(RecvTimeoutError::Disconnected) => break true,
            }
        };
        write(&by_aor);
        if closed {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp(label: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!(
            "sip-transport-store-{label}-{}-{}",
            std::process::id(),
            unix_ms(SystemTime::now())
        ));
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    fn stored(aor: &str, expires_at_ms: u64) -> StoredBinding {
        StoredBinding {
            aor: aor.into(),
            contact: format!("sip:{aor}@127.0.0.1:5070"),
            expires_at_ms,
            q: None,
            call_id: "c".into(),
            cseq: 2,
            transport: "udp".into(),
            remote: "127.0.0.1:5070".parse().unwrap(),
            instance: None,
            reg_id: None,
            user_agent: Some("ua".into()),
        }
    }

    #[test]
    fn save_and_load_round_trip_and_expired_entries_give_no_restore() {
        let dir = temp("roundtrip");
        let path = dir.join("registrations.json");
        assert!(load(&path).unwrap().is_empty(), "no file is an empty store");
        let list = vec![stored("1001", 100_000), stored("1002", 50_000)];
        save(&path, &list, 1).unwrap();
        let back = load(&path).unwrap();
        assert_eq!(back, list);
        assert!(!dir.join("registrations.json.tmp").exists());
        let r = back[0].to_restored(40_000).unwrap();
        assert_eq!(r.remaining, Duration::from_secs(60));
        assert_eq!(r.flow.conn, None);
        assert!(back[1].to_restored(50_000).is_none(), "expired");
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn a_corrupt_store_is_an_error_naming_the_file_and_can_be_set_aside() {
        let dir = temp("corrupt");
        let path = dir.join("registrations.json");
        std::fs::write(&path, b"{\"version\": 1, \"bindings\": [").unwrap();
        let e = load(&path).unwrap_err();
        assert!(matches!(e, StoreError::Corrupt { .. }));
        assert!(e.to_string().contains("registrations.json"), "{e}");
        std::fs::write(
            &path,
            b"{\"version\": 9, \"saved_at_ms\": 0, \"bindings\": []}",
        )
        .unwrap();
        assert!(load(&path).unwrap_err().to_string().contains("version 9"));
        let to = set_aside(&path).unwrap();
        assert!(to.ends_with("registrations.json.bad") && !path.exists());
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn only_a_new_moved_or_removed_binding_is_written_soon() {
        let far = unix_ms(SystemTime::now()) + 3_600_000;
        let one = stored("1001", far);
        let old = std::slice::from_ref(&one);
        let mut refreshed = one.clone();
        refreshed.expires_at_ms += 60_000;
        refreshed.cseq += 1;
        assert!(!moves_a_binding(
            Some(old),
            std::slice::from_ref(&refreshed)
        ));
        assert!(moves_a_binding(None, old));
        assert!(moves_a_binding(Some(old), &[]));
        assert!(!moves_a_binding(None, &[]));
        let mut moved = refreshed.clone();
        moved.remote = "192.0.2.7:5060".parse().unwrap();
        assert!(moves_a_binding(Some(old), &[moved]));
        let mut other = refreshed.clone();
        other.contact = "sip:1001@192.0.2.8".into();
        assert!(moves_a_binding(Some(old), &[one.clone(), other]));
    }

    #[test]
    fn the_writer_coalesces_updates_and_writes_the_last_state_on_finish() {
        let dir = temp("writer");
        let path = dir.join("sub").join("registrations.json");
        let far = unix_ms(SystemTime::now()) + 3_600_000;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let w = StoreWriter::start(path.clone(), vec![stored("1001", far)]).unwrap();
            for i in 0..100 {
                let aor = format!("2{i:03}");
                w.offer(AorUpdate {
                    bindings: vec![stored(&aor, far)],
                    aor,
                })
                .unwrap();
            }
            w.offer(AorUpdate {
                aor: "1001".into(),
                bindings: Vec::new(),
            })
            .unwrap();
            w.finish().await;
        });
        let back = load(&path).unwrap();
        assert_eq!(back.len(), 100);
        assert!(back.iter().all(|b| b.aor != "1001"));
        let _ = std::fs::remove_dir_all(dir);
    }
}
