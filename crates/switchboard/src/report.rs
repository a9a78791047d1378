//! `switchboard report`: interval reports from the stored calls, per queue or per agent, as a
//! table, CSV or JSON. Days and slots are UTC.

use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context};
use serde_json::json;
use store::Store;

/// Options of `switchboard report`.
#[derive(Debug, clap::Args)]
pub(crate) struct ReportArgs {
    /// Config directory (the database is the one its `[storage]` names).
    #[arg(long, default_value = "config", env = "SWITCHBOARD_CONFIG")]
    config: PathBuf,
    /// The day, YYYY-MM-DD (UTC); today when left out.
    #[arg(long)]
    date: Option<String>,
    /// Slot length in minutes: 15, 30 or 60.
    #[arg(long, default_value_t = 30)]
    interval: u32,
    /// Per queue or per agent.
    #[arg(long, value_enum, default_value_t = By::Queue)]
    by: By,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    format: Format,
    /// Service-level threshold in seconds (answered within it counts as in time).
    #[arg(long, default_value_t = 20)]
    service_level: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum By {
    Queue,
    Agent,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Format {
    Table,
    Csv,
    Json,
}

const DAY_MS: i64 = 86_400_000;

/// Days since 1970-01-01 of a proleptic Gregorian date (the civil-from-days inverse).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (m + if m > 2 { -3 } else { 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// `YYYY-MM-DD` as the Unix milliseconds of its midnight UTC.
fn parse_date(s: &str) -> anyhow::Result<i64> {
    let parts: Vec<&str> = s.split('-').collect();
    let [y, m, d] = parts.as_slice() else {
        bail!("--date {s:?}: expected YYYY-MM-DD");
    };
    let (y, m, d): (i64, i64, i64) = (
        y.parse().with_context(|| format!("--date {s:?}: year"))?,
        m.parse().with_context(|| format!("--date {s:?}: month"))?,
        d.parse().with_context(|| format!("--date {s:?}: day"))?,
    );
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) {
        bail!("--date {s:?}: no such day");
    }
    Ok(days_from_civil(y, m, d) * DAY_MS)
}

fn hhmm(ms: i64) -> String {
    let m = ms.rem_euclid(DAY_MS) / 60_000;
    format!("{:02}:{:02}", m / 60, m % 60)
}

fn secs(ms: Option<f64>) -> String {
    ms.map_or_else(|| "-".to_owned(), |v| format!("{:.1}", v / 1000.0))
}

/// Run the report; the text to print.
pub(crate) fn run(args: &ReportArgs) -> anyhow::Result<String> {
    if ![15, 30, 60].contains(&args.interval) {
        bail!("--interval {}: use 15, 30 or 60 minutes", args.interval);
    }
    let cfg = crate::config::load(&args.config, None).map_err(|e| anyhow::anyhow!("{e}"))?;
    let Some(storage) = cfg.storage else {
        bail!("call records are off in this config ([storage] enabled = false)");
    };
    if !storage.database.exists() {
        bail!(
            "no call records yet: {} does not exist",
            storage.database.display()
        );
    }
    let from = match &args.date {
        Some(d) => parse_date(d)?,
        None => {
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as i64);
            now - now.rem_euclid(DAY_MS)
        }
    };
    let to = from + DAY_MS;
    let interval = i64::from(args.interval) * 60_000;
    let db = Store::open_read_only(&storage.database)?;
    let mut out = String::new();
    match args.by {
        By::Queue => {
            let rows =
                db.queue_intervals(from, to, interval, i64::from(args.service_level) * 1000)?;
            match args.format {
                Format::Json => {
                    let v: Vec<_> = rows
                        .iter()
                        .map(|r| {
                            json!({
                                "start": hhmm(r.start_ms), "start_ms": r.start_ms, "queue": r.queue,
                                "offered": r.offered, "answered": r.answered,
                                "abandoned": r.abandoned, "other": r.other,
                                "answered_in_time": r.answered_in_time,
                                "service_level": r.service_level, "asa_ms": r.asa_ms,
                                "aht_ms": r.aht_ms, "longest_wait_ms": r.longest_wait_ms,
                            })
                        })
                        .collect();
                    out = serde_json::to_string_pretty(&v)?;
                }
                Format::Csv => {
                    out.push_str("start,queue,offered,answered,abandoned,other,service_level,asa_s,aht_s,longest_wait_s\n");
                    for r in &rows {
                        out.push_str(&format!(
                            "{},{},{},{},{},{},{},{},{},{:.1}\n",
                            hhmm(r.start_ms),
                            r.queue,
                            r.offered,
                            r.answered,
                            r.abandoned,
                            r.other,
                            r.service_level.map_or(String::new(), |v| format!("{v:.3}")),
                            secs(r.asa_ms),
                            secs(r.aht_ms),
                            r.longest_wait_ms as f64 / 1000.0
                        ));
                    }
                }
                Format::Table => {
                    out.push_str(&format!(
                        "{:<6} {:<16} {:>7} {:>8} {:>9} {:>6} {:>6} {:>7} {:>7} {:>8}\n",
                        "UTC",
                        "queue",
                        "offered",
                        "answered",
                        "abandoned",
                        "other",
                        "SL%",
                        "ASA s",
                        "AHT s",
                        "longest"
                    ));
                    for r in &rows {
                        out.push_str(&format!(
                            "{:<6} {:<16} {:>7} {:>8} {:>9} {:>6} {:>6} {:>7} {:>7} {:>8.1}\n",
                            hhmm(r.start_ms),
                            r.queue,
                            r.offered,
                            r.answered,
                            r.abandoned,
                            r.other,
                            r.service_level
                                .map_or("-".to_owned(), |v| format!("{:.0}", v * 100.0)),
                            secs(r.asa_ms),
                            secs(r.aht_ms),
                            r.longest_wait_ms as f64 / 1000.0
                        ));
                    }
                }
            }
        }
        By::Agent => {
            let rows = db.agent_intervals(from, to, interval)?;
            match args.format {
                Format::Json => {
                    let v: Vec<_> = rows
                        .iter()
                        .map(|r| {
                            json!({
                                "start": hhmm(r.start_ms), "start_ms": r.start_ms, "agent": r.agent,
                                "answered": r.answered, "talk_ms": r.talk_ms,
                                "hold_ms": r.hold_ms, "wrap_up_ms": r.wrap_up_ms,
                                "aht_ms": r.aht_ms,
                            })
                        })
                        .collect();
                    out = serde_json::to_string_pretty(&v)?;
                }
                Format::Csv => {
                    out.push_str("start,agent,answered,talk_s,hold_s,wrap_up_s,aht_s\n");
                    for r in &rows {
                        out.push_str(&format!(
                            "{},{},{},{:.1},{:.1},{:.1},{}\n",
                            hhmm(r.start_ms),
                            r.agent,
                            r.answered,
                            r.talk_ms as f64 / 1000.0,
                            r.hold_ms as f64 / 1000.0,
                            r.wrap_up_ms as f64 / 1000.0,
                            secs(r.aht_ms)
                        ));
                    }
                }
                Format::Table => {
                    out.push_str(&format!(
                        "{:<6} {:<16} {:>8} {:>8} {:>7} {:>8} {:>7}\n",
                        "UTC", "agent", "answered", "talk s", "hold s", "wrap s", "AHT s"
                    ));
                    for r in &rows {
                        out.push_str(&format!(
                            "{:<6} {:<16} {:>8} {:>8.1} {:>7.1} {:>8.1} {:>7}\n",
                            hhmm(r.start_ms),
                            r.agent,
                            r.answered,
                            r.talk_ms as f64 / 1000.0,
                            r.hold_ms as f64 / 1000.0,
                            r.wrap_up_ms as f64 / 1000.0,
                            secs(r.aht_ms)
                        ));
                    }
                }
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_utc_midnights() {
        assert_eq!(parse_date("1970-01-01").unwrap(), 0);
        assert_eq!(parse_date("2000-03-01").unwrap(), 951_868_800_000);
        assert_eq!(parse_date("2026-11-30").unwrap(), 1_795_996_800_000);
        assert!(parse_date("2026-13-01").is_err());
        assert!(parse_date("yesterday").is_err());
        assert_eq!(
            hhmm(parse_date("2026-11-30").unwrap() + 90 * 60_000),
            "01:30"
        );
    }
}
