//! Recording files: a stereo 8 kHz 16-bit WAV written with hound, its JSON sidecar, and the
//! repair of recordings a crash left unfinished.
//!
//! Crash plan (hound's header is only right after `flush()`, and `flush()` does not fsync):
//! - while a call is recorded its files are `NAME.wav.part` and `NAME.json.part` (the
//!   sidecar as far as it is known at the start);
//! - the WAV header is brought up to date every few seconds ([`RecordingFile::flush_if_due`]),
//!   so a killed process leaves a file whose header covers all but the last seconds;
//! - finishing finalizes the WAV, fsyncs it, writes the sidecar (SHA-256 of the WAV included)
//!   through a temporary file, renames both into place and fsyncs the directory;
//! - [`repair`] (at start-up, and `switchboard recordings repair DIR`) finds `.wav.part`
//!   files, sets their RIFF and data sizes from the bytes really on disk (so even the audio
//!   after the last header update is kept), and finishes them with a sidecar marked
//!   `"repaired": true`.
//!
//! Files are created 0640 and folders 0750: recordings hold personal data.

use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// What a recording's sidecar says.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sidecar {
    /// Switchboard's call id.
    pub call_id: u64,
    /// The queue (empty for calls outside queues).
    pub queue: String,
    /// The caller's number (From user part).
    pub caller: String,
    /// The agent's name.
    pub agent: String,
    /// Codec on the wire ("PCMU" or "PCMA").
    pub codec: String,
    /// Start, UTC, RFC 3339.
    pub start: String,
    /// End, UTC, RFC 3339 (for a repaired file: the file's last write).
    pub end: Option<String>,
    /// Seconds of audio in the WAV.
    pub duration: f64,
    /// Paused intervals, seconds from the start (silence in the file).
    pub pauses: Vec<(f64, f64)>,
    /// Channel layout.
    pub channels: String,
    /// Frames the recorder could not take in time (never silently lost).
    pub dropped_frames: u64,
    /// SHA-256 of the WAV file, hex.
    pub sha256: Option<String>,
    /// The file was finished by repair after a crash.
    pub repaired: bool,
    /// For a voicemail message: its mailbox.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mailbox: Option<String>,
}

/// Format a time as RFC 3339 UTC with milliseconds.
pub fn utc(t: SystemTime) -> String {
    let d = t.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs() as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil date from days since 1970-01-01 (proleptic Gregorian).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        d.subsec_millis()
    )
}

/// The date folder of a time: `YYYY/MM/DD` (UTC).
pub fn date_folder(t: SystemTime) -> PathBuf {
    let s = utc(t);
    PathBuf::from(&s[0..4]).join(&s[5..7]).join(&s[8..10])
}

fn create_dirs(dir: &Path) -> io::Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o750)
        .create(dir)
}

fn create_file(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .write(true)
        .read(true)
        .create_new(true)
        .mode(0o640)
        .open(path)
}

/// Write JSON through a temporary file and a rename (readers never see half a file);
/// `durable` fsyncs it first.
fn write_json_atomically(path: &Path, value: &Sidecar, durable: bool) -> io::Result<()> {
    let tmp = path.with_extension("json.tmp");
    let _ = std::fs::remove_file(&tmp);
    let mut f = create_file(&tmp)?;
    serde_json::to_writer_pretty(&mut f, value).map_err(io::Error::other)?;
    f.write_all(b"\n")?;
    if durable {
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)
}

fn sync_dir(dir: &Path) {
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
}

fn sha256_file(path: &Path) -> io::Result<String> {
    let mut f = File::open(path)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(h.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

/// The WAV format of every recording: stereo (caller left, agent right), 8 kHz, 16-bit PCM.
pub fn spec() -> hound::WavSpec {
    hound::WavSpec {
        channels: 2,
        sample_rate: 8000,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    }
}

/// A recording being written.
pub struct RecordingFile {
    dir: PathBuf,
    name: String,
    /// `dir/NAME.wav.part`.
    part: PathBuf,
    writer: Option<hound::WavWriter<BufWriter<File>>>,
    frames: u64,
    last_flush: Instant,
    sidecar: Sidecar,
}

impl std::fmt::Debug for RecordingFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecordingFile")
            .field("dir", &self.dir)
            .field("name", &self.name)
            .field("frames", &self.frames)
            .finish()
    }
}

/// Why a recording could not be written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RecordingError {
    /// File system.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: io::Error,
    },
    /// WAV encoding.
    #[error("{path}: {source}")]
    Wav {
        /// The file.
        path: PathBuf,
        /// What hound said.
        source: hound::Error,
    },
}

impl RecordingFile {
    /// Create `dir/NAME.wav.part` and `dir/NAME.json.part` (folders made as needed).
    pub fn create(
        dir: &Path,
        name: &str,
        sidecar: Sidecar,
        now: Instant,
    ) -> Result<RecordingFile, RecordingError> {
        let io_err = |path: &Path| {
            let path = path.to_owned();
            move |source| RecordingError::Io { path, source }
        };
        create_dirs(dir).map_err(io_err(dir))?;
        let wav = dir.join(format!("{name}.wav.part"));
        let file = create_file(&wav).map_err(io_err(&wav))?;
        let writer = hound::WavWriter::new(BufWriter::with_capacity(32 * 1024, file), spec())
            .map_err(|source| RecordingError::Wav {
                path: wav.clone(),
                source,
            })?;
        // Not fsynced: starting a recording must not wait for the disk (repair falls back to
        // an empty sidecar if a crash loses this one).
        let json = dir.join(format!("{name}.json.part"));
        write_json_atomically(&json, &sidecar, false).map_err(io_err(&json))?;
        Ok(RecordingFile {
            dir: dir.to_owned(),
            name: name.to_owned(),
            part: wav,
            writer: Some(writer),
            frames: 0,
            last_flush: now,
            sidecar,
        })
    }

    /// Where the finished WAV will be.
    pub fn path(&self) -> PathBuf {
        self.dir.join(format!("{}.wav", self.name))
    }

    /// Append interleaved stereo samples.
    pub fn write(&mut self, interleaved: &[i16]) -> Result<(), RecordingError> {
        let Some(w) = self.writer.as_mut() else {
            return Ok(());
        };
        let mut i16w = w.get_i16_writer(interleaved.len() as u32);
        for s in interleaved {
            i16w.write_sample(*s);
        }
        i16w.flush().map_err(|source| RecordingError::Wav {
            path: self.part.clone(),
            source,
        })?;
        self.frames += interleaved.len() as u64 / 2;
        Ok(())
    }

    /// Bring the WAV header up to date if `every` has passed since the last time.
    pub fn flush_if_due(&mut self, now: Instant, every: Duration) -> Result<(), RecordingError> {
        if now.saturating_duration_since(self.last_flush) < every {
            return Ok(());
        }
        self.last_flush = now;
        if let Some(w) = self.writer.as_mut() {
            w.flush().map_err(|source| RecordingError::Wav {
                path: self.part.clone(),
                source,
            })?;
        }
        Ok(())
    }

    /// Sample frames written.
    pub fn frames(&self) -> u64 {
        self.frames
    }

    /// Write out what hound still buffers, without the fsync of [`RecordingFile::finish`].
    pub fn flush(&mut self) -> Result<(), RecordingError> {
        if let Some(w) = self.writer.as_mut() {
            w.flush().map_err(|source| RecordingError::Wav {
                path: self.part.clone(),
                source,
            })?;
        }
        Ok(())
    }

    /// Finalize: header, fsync, sidecar with hash, rename into place. Returns the WAV path.
    pub fn finish(
        mut self,
        end: SystemTime,
        pauses: Vec<(f64, f64)>,
        dropped_frames: u64,
    ) -> Result<(PathBuf, Sidecar), RecordingError> {
        let part = self.part.clone();
        if let Some(w) = self.writer.take() {
            w.finalize().map_err(|source| RecordingError::Wav {
                path: part.clone(),
                source,
            })?;
        }
        let io_err = |path: &Path| {
            let path = path.to_owned();
            move |source| RecordingError::Io { path, source }
        };
        File::open(&part)
            .and_then(|f| f.sync_all())
            .map_err(io_err(&part))?;
        let wav = self.path();
        std::fs::rename(&part, &wav).map_err(io_err(&wav))?;
        let mut sc = self.sidecar.clone();
        sc.end = Some(utc(end));
        sc.duration = self.frames as f64 / 8000.0;
        sc.pauses = pauses;
        sc.dropped_frames = dropped_frames;
        sc.sha256 = Some(sha256_file(&wav).map_err(io_err(&wav))?);
        let json = self.dir.join(format!("{}.json", self.name));
        write_json_atomically(&json, &sc, true).map_err(io_err(&json))?;
        let _ = std::fs::remove_file(self.dir.join(format!("{}.json.part", self.name)));
        sync_dir(&self.dir);
        Ok((wav, sc))
    }
}

/// Why one file could not be repaired.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RepairError {
    /// File system.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: io::Error,
    },
    /// Not a WAV file hound could have written.
    #[error("{path}: {reason}")]
    NotWav {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: &'static str,
    },
}

/// Find every `.wav.part` under `dir` (recursively) and turn each into a playable `.wav` with
/// a sidecar. Returns what was repaired and what could not be.
pub fn repair(dir: &Path) -> (Vec<PathBuf>, Vec<RepairError>) {
    let mut done = Vec::new();
    let mut failed = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.to_string_lossy().ends_with(".wav.part") {
                match repair_one(&p) {
                    Ok(wav) => done.push(wav),
                    Err(err) => failed.push(err),
                }
            }
        }
    }
    done.sort();
    (done, failed)
}

/// Fix the sizes of one `.wav.part` from its length, rename it, write its sidecar.
pub fn repair_one(part: &Path) -> Result<PathBuf, RepairError> {
    let io_err = |source| RepairError::Io {
        path: part.to_owned(),
        source,
    };
    let mut f = OpenOptions::new()
        .read(true)
        .write(true)
        .open(part)
        .map_err(io_err)?;
    let len = f.metadata().map_err(io_err)?.len();
    let mut head = vec![0u8; 4096.min(len as usize)];
    f.read_exact(&mut head).map_err(io_err)?;
    let not_wav = |reason| RepairError::NotWav {
        path: part.to_owned(),
        reason,
    };
    if head.len() < 12 || &head[0..4] != b"RIFF" || &head[8..12] != b"WAVE" {
        return Err(not_wav("no RIFF/WAVE header"));
    }
    // Walk the chunks to the "data" chunk.
    let mut off = 12usize;
    let data_off = loop {
        if off + 8 > head.len() {
            return Err(not_wav("no data chunk"));
        }
        let id = &head[off..off + 4];
        let size = u32::from_le_bytes([head[off + 4], head[off + 5], head[off + 6], head[off + 7]]);
        if id == b"data" {
            break off + 8;
        }
        off += 8 + size as usize + (size as usize & 1);
    };
    let block = 4u64; // 2 channels × 16 bits
    let data_len = ((len - data_off as u64) / block) * block;
    let total = data_off as u64 + data_len;
    f.set_len(total).map_err(io_err)?;
    f.seek(SeekFrom::Start(4)).map_err(io_err)?;
    f.write_all(&((total - 8) as u32).to_le_bytes())
        .map_err(io_err)?;
    f.seek(SeekFrom::Start(data_off as u64 - 4))
        .map_err(io_err)?;
    f.write_all(&(data_len as u32).to_le_bytes())
        .map_err(io_err)?;
    f.sync_all().map_err(io_err)?;
    let modified = f.metadata().and_then(|m| m.modified()).ok();
    drop(f);
    let name = part.to_string_lossy();
    let wav = PathBuf::from(name.trim_end_matches(".part").to_owned());
    std::fs::rename(part, &wav).map_err(|source| RepairError::Io {
        path: wav.clone(),
        source,
    })?;
    let stem = wav.with_extension("");
    let json_part = PathBuf::from(format!("{}.json.part", stem.display()));
    let json = PathBuf::from(format!("{}.json", stem.display()));
    let mut sc: Sidecar = std::fs::read(&json_part)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or(Sidecar {
            call_id: 0,
            queue: String::new(),
            caller: String::new(),
            agent: String::new(),
            codec: String::new(),
            start: String::new(),
            end: None,
            duration: 0.0,
            pauses: Vec::new(),
            channels: "left: caller, right: agent".into(),
            dropped_frames: 0,
            sha256: None,
            repaired: true,
            mailbox: None,
        });
    sc.end = modified.map(utc);
    sc.duration = data_len as f64 / block as f64 / 8000.0;
    sc.repaired = true;
    sc.sha256 = sha256_file(&wav).ok();
    write_json_atomically(&json, &sc, true).map_err(|source| RepairError::Io {
        path: json.clone(),
        source,
    })?;
    let _ = std::fs::remove_file(&json_part);
    if let Some(d) = wav.parent() {
        sync_dir(d);
    }
    Ok(wav)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_formatting_matches_known_dates() {
        let t = |s: u64| SystemTime::UNIX_EPOCH + Duration::from_secs(s);
        assert_eq!(utc(t(0)), "1970-01-01T00:00:00.000Z");
        assert_eq!(utc(t(951_782_400)), "2000-02-29T00:00:00.000Z");
        assert_eq!(utc(t(1_795_459_813)), "2026-11-23T18:50:13.000Z");
        assert_eq!(date_folder(t(1_795_459_813)), PathBuf::from("2026/11/23"));
    }
}
