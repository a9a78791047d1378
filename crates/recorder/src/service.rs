//! The recorder service: one thread (with its own single-threaded tokio runtime, so file I/O
//! never stalls the relay's or call control's workers) that owns every active recording.
//!
//! ```text
//! loop {
//!     select! {
//!         command from call control => start / pause / resume / stop a recording
//!         frame from the relay tap  => place it on its call's timeline
//!         50 ms tick                => commit what is past the reorder window, write it,
//!                                      bring WAV headers up to date every `flush_every`
//!     }
//! }
//! ```
//!
//! Back-pressure policy: the relay never waits for the recorder. Its tap uses `try_send` on a
//! bounded queue ([`RecorderConfig::frame_queue`] frames); a frame that does not fit is
//! dropped and counted per call by the relay, and the count goes into the recording's sidecar
//! (`dropped_frames`). A dropped frame leaves silence on the timeline, never a shift.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use tokio::sync::mpsc;
use tracing::{info, warn};

use crate::file::{date_folder, RecordingError, RecordingFile, Sidecar};
use crate::g711::Law;
use crate::timeline::{Channel, Timeline, TimelineConfig};

/// Recorder settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecorderConfig {
    /// Root directory; recordings go into `YYYY/MM/DD` folders below it.
    pub dir: PathBuf,
    /// How often each WAV header is brought up to date.
    pub flush_every: Duration,
    /// Reorder window, jump and drift settings.
    pub timeline: TimelineConfig,
    /// Frames the relay may queue before frames are dropped.
    pub frame_queue: usize,
}

impl Default for RecorderConfig {
    fn default() -> Self {
        RecorderConfig {
            dir: PathBuf::from("data/recordings"),
            flush_every: Duration::from_secs(2),
            timeline: TimelineConfig::default(),
            frame_queue: 65_536,
        }
    }
}

/// One RTP packet copied by the relay's tap.
#[derive(Debug, Clone)]
pub struct RecordFrame {
    /// The call (media session id).
    pub call: u64,
    /// Caller (left) or agent (right).
    pub channel: Channel,
    /// When it arrived at the relay.
    pub at: Instant,
    /// The whole RTP packet.
    pub packet: Bytes,
}

/// What call control tells the recorder.
#[derive(Debug, Clone)]
pub enum RecorderCommand {
    /// Start recording a call at `at` (usually when the agent answers).
    Start {
        /// The call.
        call: u64,
        /// Its codec.
        law: Law,
        /// The sidecar as known at the start.
        sidecar: Box<Sidecar>,
        /// Timeline position 0.
        at: Instant,
    },
    /// Silence from `at` on (a card number is being read out).
    Pause {
        /// The call.
        call: u64,
        /// From when.
        at: Instant,
    },
    /// Record again from `at` on.
    Resume {
        /// The call.
        call: u64,
        /// From when.
        at: Instant,
    },
    /// The call is over: write the rest, finish the files.
    Stop {
        /// The call.
        call: u64,
        /// When it ended.
        at: Instant,
        /// Wall-clock end, for the sidecar.
        end: SystemTime,
        /// Frames the relay's tap dropped for this call.
        dropped: u64,
    },
    /// Server shutdown: finish every recording now and end the thread.
    Shutdown,
}

/// A recording the recorder finished: its file is complete, fsynced and hashed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FinishedRecording {
    /// The call (media session id).
    pub call: u64,
    /// The WAV file, relative to the recordings directory.
    pub file: PathBuf,
    /// SHA-256 of the WAV file (lower-case hex).
    pub sha256: String,
    /// File size.
    pub bytes: u64,
    /// Audio length.
    pub duration: Duration,
    /// When it was finished.
    pub finished: SystemTime,
    /// For a voicemail message: its mailbox (and who left it, the caller's number).
    pub mailbox: Option<(String, String)>,
}

/// Told of every finished recording (from a blocking-pool thread; it must not block).
pub type OnFinished = Arc<dyn Fn(FinishedRecording) + Send + Sync>;

/// Recorder counters.
#[derive(Debug, Default)]
pub struct RecorderStats {
    /// Recordings in progress.
    pub active: AtomicU64,
    /// Recordings whose files have been created (cumulative).
    pub files_created: AtomicU64,
    /// Recordings finished.
    pub finished: AtomicU64,
    /// Recordings that failed (file system errors).
    pub failed: AtomicU64,
    /// Frames placed.
    pub frames: AtomicU64,
    /// Frames for calls that are not being recorded (e.g. before Start).
    pub orphan_frames: AtomicU64,
}

/// Handle to the recorder thread.
#[derive(Debug, Clone)]
pub struct Recorder {
    commands: mpsc::Sender<RecorderCommand>,
    frames: mpsc::Sender<RecordFrame>,
    stats: Arc<RecorderStats>,
    thread: Arc<std::sync::Mutex<Option<std::thread::JoinHandle<()>>>>,
}

impl Recorder {
    /// Start the recorder thread.
    pub fn start(cfg: RecorderConfig) -> std::io::Result<Recorder> {
        Recorder::start_notifying(cfg, None)
    }

    /// Start the recorder thread; `on_finished` hears of every finished recording.
    pub fn start_notifying(
        cfg: RecorderConfig,
        on_finished: Option<OnFinished>,
    ) -> std::io::Result<Recorder> {
        let (ctx, crx) = mpsc::channel(4096);
        let (ftx, frx) = mpsc::channel(cfg.frame_queue.max(1));
        let stats = Arc::new(RecorderStats::default());
        let st = stats.clone();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()?;
        let thread = std::thread::Builder::new()
            .name("recorder".into())
            .spawn(move || rt.block_on(run(cfg, crx, frx, st, on_finished)))?;
        Ok(Recorder {
            commands: ctx,
            frames: ftx,
            stats,
            thread: Arc::new(std::sync::Mutex::new(Some(thread))),
        })
    }

    /// Finish every recording and wait for the recorder thread to end (server shutdown).
    pub async fn shutdown(&self) {
        let _ = self.commands.send(RecorderCommand::Shutdown).await;
        let handle = self.thread.lock().ok().and_then(|mut t| t.take());
        if let Some(h) = handle {
            let _ = tokio::task::spawn_blocking(move || h.join()).await;
        }
    }

    /// The queue the relay's tap sends frames into (with `try_send`).
    pub fn frames(&self) -> mpsc::Sender<RecordFrame> {
        self.frames.clone()
    }

    /// Send a command (never waits; a full command queue is logged and the command dropped).
    pub fn command(&self, cmd: RecorderCommand) -> bool {
        match self.commands.try_send(cmd) {
            Ok(()) => true,
            Err(e) => {
                warn!(error = %e, "recorder command dropped");
                false
            }
        }
    }

    /// Send a command, waiting for room (shutdown paths).
    pub async fn command_wait(&self, cmd: RecorderCommand) -> bool {
        self.commands.send(cmd).await.is_ok()
    }

    /// The counters.
    pub fn stats(&self) -> &RecorderStats {
        &self.stats
    }
}

/// A recording's files: created off this thread (creating files costs milliseconds on a
/// real disk), then written here.
enum FileState {
    Creating(tokio::sync::oneshot::Receiver<Result<RecordingFile, RecordingError>>),
    Ready(Box<RecordingFile>),
    Failed,
}

struct Active {
    law: Law,
    timeline: Timeline,
    file: FileState,
}

impl Active {
    /// The file, once created (or `None` while it is being created or after a failure).
    fn ready(&mut self, call: u64, stats: &RecorderStats) -> Option<&mut RecordingFile> {
        if let FileState::Creating(rx) = &mut self.file {
            match rx.try_recv() {
                Ok(Ok(f)) => {
                    stats.files_created.fetch_add(1, Ordering::Relaxed);
                    self.file = FileState::Ready(Box::new(f));
                }
                Ok(Err(e)) => {
                    warn!(call_id = call, error = %e, "cannot start recording");
                    stats.failed.fetch_add(1, Ordering::Relaxed);
                    self.file = FileState::Failed;
                }
                Err(tokio::sync::oneshot::error::TryRecvError::Empty) => {}
                Err(tokio::sync::oneshot::error::TryRecvError::Closed) => {
                    self.file = FileState::Failed;
                }
            }
        }
        match &mut self.file {
            FileState::Ready(f) => Some(f),
            _ => None,
        }
    }
}

async fn run(
    cfg: RecorderConfig,
    mut commands: mpsc::Receiver<RecorderCommand>,
    mut frames: mpsc::Receiver<RecordFrame>,
    stats: Arc<RecorderStats>,
    on_finished: Option<OnFinished>,
) {
    let mut active: HashMap<u64, Active> = HashMap::new();
    let mut tick = tokio::time::interval(Duration::from_millis(50));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut buf: Vec<i16> = Vec::with_capacity(8000);
    let mut finishing: Vec<tokio::task::JoinHandle<()>> = Vec::new();
    let mut commands_open = true;
    loop {
        tokio::select! {
            biased;
            cmd = commands.recv(), if commands_open => match cmd {
                Some(RecorderCommand::Shutdown) => {
                    let now = Instant::now();
                    let calls: Vec<u64> = active.keys().copied().collect();
                    for call in calls {
                        let stop = RecorderCommand::Stop {
                            call,
                            at: now,
                            end: SystemTime::now(),
                            dropped: 0,
                        };
                        command(&cfg, &mut active, stop, &stats, &on_finished, &mut finishing);
                    }
                    for j in finishing.drain(..) {
                        let _ = j.await;
                    }
                    break;
                }
                Some(c) => {
                    if matches!(c, RecorderCommand::Stop { .. }) {
                        // Frames that arrived before the hang-up belong in the file.
                        while let Ok(f) = frames.try_recv() {
                            place(&mut active, f, &stats);
                        }
                    }
                    command(&cfg, &mut active, c, &stats, &on_finished, &mut finishing);
                    finishing.retain(|j| !j.is_finished());
                }
                None => commands_open = false,
            },
            f = frames.recv() => match f {
                Some(f) => {
                    place(&mut active, f, &stats);
                    // Take what else is queued before going back to select.
                    for _ in 0..1024 {
                        match frames.try_recv() {
                            Ok(f) => place(&mut active, f, &stats),
                            Err(_) => break,
                        }
                    }
                }
                None if !commands_open => break,
                None => {}
            },
            _ = tick.tick() => {
                let now = Instant::now();
                for (call, a) in active.iter_mut() {
                    // Until its file exists a recording keeps buffering on its timeline.
                    if a.ready(*call, &stats).is_none() {
                        continue;
                    }
                    buf.clear();
                    a.timeline.advance(now, &mut buf);
                    write(*call, a, &buf, now, &cfg);
                }
            }
        }
        if !commands_open && active.is_empty() {
            break;
        }
    }
}

fn place(active: &mut HashMap<u64, Active>, f: RecordFrame, stats: &RecorderStats) {
    match active.get_mut(&f.call) {
        Some(a) => {
            a.timeline.packet(f.channel, f.at, a.law, &f.packet);
            stats.frames.fetch_add(1, Ordering::Relaxed);
        }
        None => {
            stats.orphan_frames.fetch_add(1, Ordering::Relaxed);
        }
    }
}

fn write(call: u64, a: &mut Active, samples: &[i16], now: Instant, cfg: &RecorderConfig) {
    let FileState::Ready(f) = &mut a.file else {
        return;
    };
    let r = f
        .write(samples)
        .and_then(|()| f.flush_if_due(now, cfg.flush_every));
    if let Err(e) = r {
        a.file = FileState::Failed;
        warn!(call, error = %e, "recording write failed; the recording is incomplete");
    }
}

fn command(
    cfg: &RecorderConfig,
    active: &mut HashMap<u64, Active>,
    cmd: RecorderCommand,
    stats: &Arc<RecorderStats>,
    on_finished: &Option<OnFinished>,
    finishing: &mut Vec<tokio::task::JoinHandle<()>>,
) {
    match cmd {
        RecorderCommand::Start {
            call,
            law,
            sidecar,
            at,
        } => {
            let now = SystemTime::now();
            let dir = cfg.dir.join(date_folder(now));
            let stamp = now
                .duration_since(SystemTime::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            let name = format!("{stamp}-call{call}");
            let (tx, rx) = tokio::sync::oneshot::channel();
            tokio::task::spawn_blocking(move || {
                let _ = tx.send(RecordingFile::create(&dir, &name, *sidecar, at));
            });
            stats.active.fetch_add(1, Ordering::Relaxed);
            active.insert(
                call,
                Active {
                    law,
                    timeline: Timeline::new(cfg.timeline, at),
                    file: FileState::Creating(rx),
                },
            );
        }
        RecorderCommand::Shutdown => {}
        RecorderCommand::Pause { call, at } => {
            if let Some(a) = active.get_mut(&call) {
                a.timeline.pause(at);
                info!(call_id = call, "recording paused");
            }
        }
        RecorderCommand::Resume { call, at } => {
            if let Some(a) = active.get_mut(&call) {
                a.timeline.resume(at);
                info!(call_id = call, "recording resumed");
            }
        }
        RecorderCommand::Stop {
            call,
            at,
            end,
            dropped,
        } => {
            let Some(mut a) = active.remove(&call) else {
                return;
            };
            stats.active.fetch_sub(1, Ordering::Relaxed);
            let mut rest = Vec::new();
            a.timeline.finish(at, &mut rest);
            let pauses = a.timeline.pauses(at);
            let late = a.timeline.stats(Channel::Left).late + a.timeline.stats(Channel::Right).late;
            // Finalizing fsyncs and hashes the whole file: off this thread, so the other
            // recordings keep being written meanwhile (and a file still being created is
            // waited for there, not here).
            let state = a.file;
            let stats = stats.clone();
            let on_finished = on_finished.clone();
            let root = cfg.dir.clone();
            let job = tokio::task::spawn_blocking(move || {
                let mut file = match state {
                    FileState::Ready(f) => *f,
                    FileState::Creating(rx) => match rx.blocking_recv() {
                        Ok(Ok(f)) => f,
                        Ok(Err(e)) => {
                            stats.failed.fetch_add(1, Ordering::Relaxed);
                            warn!(call_id = call, error = %e, "cannot start recording");
                            return;
                        }
                        Err(_) => return,
                    },
                    FileState::Failed => return,
                };
                if let Err(e) = file.write(&rest) {
                    warn!(call_id = call, error = %e, "recording write failed");
                }
                match file.finish(end, pauses, dropped) {
                    Ok((path, sc)) => {
                        stats.finished.fetch_add(1, Ordering::Relaxed);
                        if let Some(notify) = &on_finished {
                            notify(FinishedRecording {
                                call,
                                file: path.strip_prefix(&root).unwrap_or(&path).to_owned(),
                                sha256: sc.sha256.clone().unwrap_or_default(),
                                bytes: std::fs::metadata(&path).map_or(0, |m| m.len()),
                                duration: Duration::from_secs_f64(sc.duration.max(0.0)),
                                finished: end,
                                mailbox: sc.mailbox.clone().map(|m| (m, sc.caller.clone())),
                            });
                        }
                        info!(
                            call_id = call,
                            path = %path.display(),
                            seconds = sc.duration,
                            late_packets = late,
                            dropped_frames = dropped,
                            "recording finished"
                        );
                    }
                    Err(e) => {
                        stats.failed.fetch_add(1, Ordering::Relaxed);
                        warn!(call_id = call, error = %e, "cannot finish recording");
                    }
                }
            });
            finishing.push(job);
        }
    }
}
