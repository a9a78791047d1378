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
    let table: Table = match args.by {
        By::Queue => {
            let rows =
                db.queue_intervals(from, to, interval, i64::from(args.service_level) * 1000)?;
            Table {
                columns: &[
                    "start",
                    "queue",
                    "offered",
                    "answered",
                    "abandoned",
                    "other",
                    "service_level",
                    "asa_s",
                    "aht_s",
                    "longest_wait_s",
                ],
                rows: rows
                    .iter()
                    .map(|r| {
                        vec![
                            Cell::Text(hhmm(r.start_ms)),
                            Cell::Text(r.queue.clone()),
                            Cell::Count(r.offered),
                            Cell::Count(r.answered),
                            Cell::Count(r.abandoned),
                            Cell::Count(r.other),
                            Cell::Ratio(r.service_level),
                            Cell::Seconds(r.asa_ms),
                            Cell::Seconds(r.aht_ms),
                            Cell::Seconds(Some(r.longest_wait_ms as f64)),
                        ]
                    })
                    .collect(),
            }
        }
        By::Agent => {
            let rows = db.agent_intervals(from, to, interval)?;
            Table {
                columns: &[
                    "start",
                    "agent",
                    "answered",
                    "talk_s",
                    "hold_s",
                    "wrap_up_s",
                    "aht_s",
                ],
                rows: rows
                    .iter()
                    .map(|r| {
                        vec![
                            Cell::Text(hhmm(r.start_ms)),
                            Cell::Text(r.agent.clone()),
                            Cell::Count(r.answered),
                            Cell::Seconds(Some(r.talk_ms as f64)),
                            Cell::Seconds(Some(r.hold_ms as f64)),
                            Cell::Seconds(Some(r.wrap_up_ms as f64)),
                            Cell::Seconds(r.aht_ms),
                        ]
                    })
                    .collect(),
            }
        }
    };
    Ok(match args.format {
        Format::Table => table.text(),
        Format::Csv => table.csv(),
        Format::Json => serde_json::to_string_pretty(&table.json())?,
    })
}

/// One figure of a report.
enum Cell {
    Text(String),
    Count(u64),
    /// A share, 0–1 (shown as a percentage in the table).
    Ratio(Option<f64>),
    /// Milliseconds (shown as seconds).
    Seconds(Option<f64>),
}

impl Cell {
    fn plain(&self) -> String {
        match self {
            Cell::Text(t) => t.clone(),
            Cell::Count(n) => n.to_string(),
            Cell::Ratio(r) => r.map_or(String::new(), |v| format!("{v:.3}")),
            Cell::Seconds(ms) => ms.map_or(String::new(), |v| format!("{:.1}", v / 1000.0)),
        }
    }

    fn shown(&self) -> String {
        match self {
            Cell::Ratio(r) => r.map_or("-".into(), |v| format!("{:.0}%", v * 100.0)),
            Cell::Seconds(None) => "-".into(),
            c => c.plain(),
        }
    }

    fn json(&self) -> serde_json::Value {
        match self {
            Cell::Text(t) => json!(t),
            Cell::Count(n) => json!(n),
            Cell::Ratio(r) => json!(r),
            Cell::Seconds(ms) => json!(ms.map(|v| v / 1000.0)),
        }
    }
}

/// A report: named columns, rows of cells, in three renderings.
struct Table {
    columns: &'static [&'static str],
    rows: Vec<Vec<Cell>>,
}

impl Table {
    fn csv(&self) -> String {
        let mut out = self.columns.join(",");
        out.push('\n');
        for r in &self.rows {
            out.push_str(&r.iter().map(Cell::plain).collect::<Vec<_>>().join(","));
            out.push('\n');
        }
        out
    }

    fn text(&self) -> String {
        let cells: Vec<Vec<String>> = self
            .rows
            .iter()
            .map(|r| r.iter().map(Cell::shown).collect())
            .collect();
        let width = |i: usize| {
            cells
                .iter()
                .map(|r| r[i].len())
                .chain([self.columns[i].len()])
                .max()
                .unwrap_or(0)
        };
        let widths: Vec<usize> = (0..self.columns.len()).map(width).collect();
        let line = |fields: Vec<&str>| {
            let mut l = String::new();
            for (i, f) in fields.iter().enumerate() {
                // Text columns (the first two) to the left, figures to the right.
                if i < 2 {
                    l.push_str(&format!("{f:<w$}  ", w = widths[i]));
                } else {
                    l.push_str(&format!("{f:>w$}  ", w = widths[i]));
                }
            }
            l.truncate(l.trim_end().len());
            l.push('\n');
            l
        };
        let mut out = line(self.columns.to_vec());
        for r in &cells {
            out.push_str(&line(r.iter().map(String::as_str).collect()));
        }
        out
    }

    fn json(&self) -> serde_json::Value {
        serde_json::Value::Array(
            self.rows
                .iter()
                .map(|r| {
                    serde_json::Value::Object(
                        self.columns
                            .iter()
                            .zip(r)
                            .map(|(c, v)| ((*c).to_owned(), v.json()))
                            .collect(),
                    )
                })
                .collect(),
        )
    }
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

    #[test]
    fn one_table_three_renderings() {
        let t = Table {
            columns: &["start", "queue", "offered", "service_level", "asa_s"],
            rows: vec![
                vec![
                    Cell::Text("09:00".into()),
                    Cell::Text("support".into()),
                    Cell::Count(12),
                    Cell::Ratio(Some(0.75)),
                    Cell::Seconds(Some(12_345.0)),
                ],
                vec![
                    Cell::Text("09:30".into()),
                    Cell::Text("sales".into()),
                    Cell::Count(0),
                    Cell::Ratio(None),
                    Cell::Seconds(None),
                ],
            ],
        };
        assert_eq!(
            t.csv(),
            "start,queue,offered,service_level,asa_s\n09:00,support,12,0.750,12.3\n09:30,sales,0,,\n"
        );
        let text = t.text();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "start  queue    offered  service_level  asa_s");
        assert_eq!(lines[1], "09:00  support       12            75%   12.3");
        assert_eq!(lines[2], "09:30  sales          0              -      -");
        assert_eq!(
            t.json()[0],
            json!({"start": "09:00", "queue": "support", "offered": 12,
                   "service_level": 0.75, "asa_s": 12.345})
        );
        assert_eq!(t.json()[1]["asa_s"], serde_json::Value::Null);
    }
}
