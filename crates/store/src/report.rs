//! Interval reports over the stored calls: per queue and per agent, in slots of 15, 30 or 60
//! minutes, the figures team leads report on. The database does the counting (one grouped
//! query over the `arrived_ms` index), so a day of a busy center is read in one pass.
//!
//! Definitions (the ones contact-center tools use):
//! - offered: calls that arrived at the queue in the slot;
//! - answered, abandoned: by outcome; other: timed out, overflowed, no agents, failed;
//! - service level: answered within the threshold, over offered (a short abandon counts as
//!   offered and not answered);
//! - ASA (average speed of answer): mean wait of the answered calls;
//! - AHT (average handle time): mean talk + hold + wrap-up of the answered calls.

use rusqlite::params;

use crate::sqlite::Sqlite;
use crate::{Store, StoreError};

/// One queue in one slot.
#[derive(Debug, Clone, PartialEq)]
pub struct QueueInterval {
    /// Slot start (Unix milliseconds).
    pub start_ms: i64,
    /// The queue.
    pub queue: String,
    /// Calls that arrived.
    pub offered: u64,
    /// Answered by an agent.
    pub answered: u64,
    /// The caller hung up first.
    pub abandoned: u64,
    /// Timed out, overflowed, no agents, failed.
    pub other: u64,
    /// Answered within the service-level threshold.
    pub answered_in_time: u64,
    /// `answered_in_time / offered`, when anything was offered.
    pub service_level: Option<f64>,
    /// Mean wait of the answered calls (milliseconds).
    pub asa_ms: Option<f64>,
    /// Mean talk + hold + wrap-up of the answered calls (milliseconds).
    pub aht_ms: Option<f64>,
    /// Longest wait of any call (milliseconds).
    pub longest_wait_ms: i64,
}

/// One agent in one slot.
#[derive(Debug, Clone, PartialEq)]
pub struct AgentInterval {
    /// Slot start (Unix milliseconds).
    pub start_ms: i64,
    /// The agent.
    pub agent: String,
    /// Calls the agent answered.
    pub answered: u64,
    /// Talk time (milliseconds).
    pub talk_ms: i64,
    /// Hold time (milliseconds).
    pub hold_ms: i64,
    /// Wrap-up time (milliseconds).
    pub wrap_up_ms: i64,
    /// Mean talk + hold + wrap-up (milliseconds).
    pub aht_ms: Option<f64>,
}

impl Store {
    /// Per queue and slot of `interval_ms`, for calls that arrived in `[from_ms, to_ms)`;
    /// `service_level_ms` is the threshold for "answered in time". Slots without calls are
    /// left out.
    pub fn queue_intervals(
        &self,
        from_ms: i64,
        to_ms: i64,
        interval_ms: i64,
        service_level_ms: i64,
    ) -> Result<Vec<QueueInterval>, StoreError> {
        let mut count = QueueCount::new(from_ms, interval_ms, service_level_ms);
        on_backend!(self, db => db.queue_rows(from_ms, to_ms, &mut count))?;
        Ok(count.finish())
    }

    /// Per agent and slot, for answered calls that arrived in `[from_ms, to_ms)`.
    pub fn agent_intervals(
        &self,
        from_ms: i64,
        to_ms: i64,
        interval_ms: i64,
    ) -> Result<Vec<AgentInterval>, StoreError> {
        on_backend!(self, db => db.agent_intervals(from_ms, to_ms, interval_ms.max(1)))
    }
}

/// The per-queue figures, counted here row by row (cheaper than SQL aggregates): each
/// backend feeds it the calls of the period in time order.
#[derive(Debug)]
pub(crate) struct QueueCount {
    from_ms: i64,
    interval_ms: i64,
    service_level_ms: i64,
    acc: std::collections::BTreeMap<(i64, String), Acc>,
    last: Option<(i64, String)>,
}

#[derive(Debug, Default)]
struct Acc {
    offered: u64,
    answered: u64,
    abandoned: u64,
    in_time: u64,
    wait_sum: i64,
    handle_sum: i64,
    longest: i64,
}

impl QueueCount {
    fn new(from_ms: i64, interval_ms: i64, service_level_ms: i64) -> QueueCount {
        QueueCount {
            from_ms,
            interval_ms: interval_ms.max(1),
            service_level_ms,
            acc: Default::default(),
            last: None,
        }
    }

    /// One call: arrival, queue, outcome, wait and handle time (talk + hold + wrap-up).
    pub(crate) fn add(&mut self, arrived: i64, queue: &str, outcome: &str, wait: i64, handle: i64) {
        let slot = (arrived - self.from_ms) / self.interval_ms;
        // Rows come in time order: most are in the same slot and queue as the last.
        let key = match &self.last {
            Some((s, q)) if *s == slot && q == queue => (slot, q.clone()),
            _ => {
                let k = (slot, queue.to_owned());
                self.last = Some(k.clone());
                k
            }
        };
        let a = self.acc.entry(key).or_default();
        a.offered += 1;
        a.longest = a.longest.max(wait);
        match outcome {
            "answered" => {
                a.answered += 1;
                a.wait_sum += wait;
                a.handle_sum += handle;
                if wait <= self.service_level_ms {
                    a.in_time += 1;
                }
            }
            "abandoned" => a.abandoned += 1,
            _ => {}
        }
    }

    /// A call that overflowed from `queue`: offered there, neither answered nor abandoned
    /// (as the queue log has it: EXITWITHTIMEOUT there, ENTERQUEUE in the next).
    pub(crate) fn overflowed(&mut self, arrived: i64, queue: &str) {
        let slot = (arrived - self.from_ms) / self.interval_ms;
        self.acc
            .entry((slot, queue.to_owned()))
            .or_default()
            .offered += 1;
    }

    fn finish(self) -> Vec<QueueInterval> {
        let (from_ms, interval_ms) = (self.from_ms, self.interval_ms);
        self.acc
            .into_iter()
            .map(|((slot, queue), a)| QueueInterval {
                start_ms: from_ms + slot * interval_ms,
                queue,
                offered: a.offered,
                answered: a.answered,
                abandoned: a.abandoned,
                other: a.offered - a.answered - a.abandoned,
                answered_in_time: a.in_time,
                service_level: (a.offered > 0).then(|| a.in_time as f64 / a.offered as f64),
                asa_ms: (a.answered > 0).then(|| a.wait_sum as f64 / a.answered as f64),
                aht_ms: (a.answered > 0).then(|| a.handle_sum as f64 / a.answered as f64),
                longest_wait_ms: a.longest,
            })
            .collect()
    }
}

impl Sqlite {
    /// Feed `count` the queue calls of `[from_ms, to_ms)`: one pass over the covering index.
    pub(crate) fn queue_rows(
        &self,
        from_ms: i64,
        to_ms: i64,
        count: &mut QueueCount,
    ) -> Result<(), StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT arrived_ms, queue, outcome, wait_ms, talk_ms + hold_ms + wrap_up_ms
                 FROM calls
                 WHERE arrived_ms >= ?1 AND arrived_ms < ?2 AND queue IS NOT NULL",
            )
            .map_err(|e| self.err(e))?;
        let mut rows = stmt
            .query(params![from_ms, to_ms])
            .map_err(|e| self.err(e))?;
        while let Some(r) = rows.next().map_err(|e| self.err(e))? {
            let (arrived, outcome, wait, handle) = (|| -> rusqlite::Result<_> {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get_ref(2)?.as_str().unwrap_or(""),
                    r.get::<_, i64>(3)?,
                    r.get::<_, i64>(4)?,
                ))
            })()
            .map_err(|e| self.err(e))?;
            let queue = r
                .get_ref(1)
                .ok()
                .and_then(|v| v.as_str().ok())
                .unwrap_or("");
            count.add(arrived, queue, outcome, wait, handle);
        }
        drop(rows);
        drop(stmt);
        let overflowed: Vec<(i64, String)> = self.rows(
            // `+arrived_ms` keeps SQLite off the time index (which would visit every call of
            // the period) and on the partial index of overflowed calls (a handful).
            "SELECT arrived_ms, overflowed_from FROM calls
             WHERE overflowed_from IS NOT NULL AND +arrived_ms >= ?1 AND +arrived_ms < ?2",
            params![from_ms, to_ms],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
        for (arrived, queue) in overflowed {
            count.overflowed(arrived, &queue);
        }
        Ok(())
    }

    /// Per agent and slot (`interval_ms` at least 1), for answered calls.
    pub(crate) fn agent_intervals(
        &self,
        from_ms: i64,
        to_ms: i64,
        interval_ms: i64,
    ) -> Result<Vec<AgentInterval>, StoreError> {
        self.rows(
            "SELECT (arrived_ms - ?1) / ?3 AS slot, agent, COUNT(*),
                SUM(talk_ms), SUM(hold_ms), SUM(wrap_up_ms),
                AVG(talk_ms + hold_ms + wrap_up_ms)
             FROM calls
             WHERE arrived_ms >= ?1 AND arrived_ms < ?2 AND outcome = 'answered'
                AND agent IS NOT NULL
             GROUP BY agent, slot
             ORDER BY slot, agent",
            params![from_ms, to_ms, interval_ms],
            |r| {
                Ok(AgentInterval {
                    start_ms: from_ms + r.get::<_, i64>(0)? * interval_ms,
                    agent: r.get(1)?,
                    answered: r.get::<_, i64>(2)? as u64,
                    talk_ms: r.get(3)?,
                    hold_ms: r.get(4)?,
                    wrap_up_ms: r.get(5)?,
                    aht_ms: r.get(6)?,
                })
            },
        )
    }
}

/// A day in milliseconds.
pub const DAY_MS: i64 = 86_400_000;

/// Days since 1970-01-01 of a proleptic Gregorian date (the civil-from-days inverse).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (m + if m > 2 { -3 } else { 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// `YYYY-MM-DD` as the Unix milliseconds of its midnight UTC; the error says what is wrong.
pub fn parse_date(s: &str) -> Result<i64, String> {
    let parts: Vec<&str> = s.split('-').collect();
    let [y, m, d] = parts.as_slice() else {
        return Err(format!("{s:?}: expected YYYY-MM-DD"));
    };
    let num = |v: &str, what: &str| {
        v.parse::<i64>()
            .map_err(|_| format!("{s:?}: the {what} is not a number"))
    };
    let (y, m, d) = (num(y, "year")?, num(m, "month")?, num(d, "day")?);
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) {
        return Err(format!("{s:?}: no such day"));
    }
    Ok(days_from_civil(y, m, d) * DAY_MS)
}

/// `HH:MM` of the time of day (UTC) of Unix milliseconds.
pub fn hhmm(ms: i64) -> String {
    let m = ms.rem_euclid(DAY_MS) / 60_000;
    format!("{:02}:{:02}", m / 60, m % 60)
}

/// One figure of a report.
#[derive(Debug, Clone, PartialEq)]
pub enum Cell {
    /// Words (a time of day, a name).
    Text(String),
    /// A count.
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
            Cell::Text(t) => serde_json::json!(t),
            Cell::Count(n) => serde_json::json!(n),
            Cell::Ratio(r) => serde_json::json!(r),
            Cell::Seconds(ms) => serde_json::json!(ms.map(|v| v / 1000.0)),
        }
    }
}

/// One agent's slot: its calls and its time by state, either possibly missing.
type AgentSlot<'a> = (Option<&'a AgentInterval>, Option<&'a crate::AgentTime>);

/// A report: named columns, rows of cells, in three renderings (a text table, CSV, JSON).
#[derive(Debug, Clone, PartialEq)]
pub struct Table {
    /// Column names (CSV header, JSON keys).
    pub columns: &'static [&'static str],
    /// The figures.
    pub rows: Vec<Vec<Cell>>,
}

impl Table {
    /// Per-queue interval figures as a table.
    pub fn queues(rows: &[QueueInterval]) -> Table {
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

    /// Per-agent interval figures as a table: calls from `rows`, time by state from `times`
    /// (either may lack an agent's slot).
    pub fn agents(rows: &[AgentInterval], times: &[crate::AgentTime]) -> Table {
        let mut slots: std::collections::BTreeMap<(i64, &str), AgentSlot<'_>> =
            std::collections::BTreeMap::new();
        for r in rows {
            slots.entry((r.start_ms, r.agent.as_str())).or_default().0 = Some(r);
        }
        for t in times {
            slots.entry((t.start_ms, t.agent.as_str())).or_default().1 = Some(t);
        }
        let secs = |ms: Option<i64>| Cell::Seconds(Some(ms.unwrap_or(0) as f64));
        Table {
            columns: &[
                "start",
                "agent",
                "answered",
                "talk_s",
                "hold_s",
                "wrap_up_s",
                "aht_s",
                "logged_in_s",
                "paused_s",
                "occupancy",
            ],
            rows: slots
                .into_iter()
                .map(|((start, agent), (r, t))| {
                    vec![
                        Cell::Text(hhmm(start)),
                        Cell::Text(agent.to_owned()),
                        Cell::Count(r.map_or(0, |r| r.answered)),
                        secs(r.map(|r| r.talk_ms)),
                        secs(r.map(|r| r.hold_ms)),
                        secs(r.map(|r| r.wrap_up_ms)),
                        Cell::Seconds(r.and_then(|r| r.aht_ms)),
                        secs(t.map(|t| t.logged_in_ms)),
                        secs(t.map(|t| t.paused_ms)),
                        Cell::Ratio(t.and_then(crate::AgentTime::occupancy)),
                    ]
                })
                .collect(),
        }
    }

    /// CSV with a header line; figures unformatted (seconds with one decimal).
    pub fn csv(&self) -> String {
        let mut out = self.columns.join(",");
        out.push('\n');
        for r in &self.rows {
            let cells: Vec<String> = r.iter().map(|c| csv_field(&c.plain())).collect();
            out.push_str(&cells.join(","));
            out.push('\n');
        }
        out
    }

    /// A text table for a terminal: names to the left, figures to the right.
    pub fn text(&self) -> String {
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

    /// An array of objects keyed by column; seconds as numbers, shares 0–1.
    pub fn json(&self) -> serde_json::Value {
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

/// A CSV field, quoted when it holds a comma, a quote or a line break (a queue or agent name
/// is an admin's free text).
fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

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
                    Cell::Text("sales, east".into()),
                    Cell::Count(0),
                    Cell::Ratio(None),
                    Cell::Seconds(None),
                ],
            ],
        };
        assert_eq!(
            t.csv(),
            "start,queue,offered,service_level,asa_s\n09:00,support,12,0.750,12.3\n09:30,\"sales, east\",0,,\n"
        );
        let text = t.text();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0],
            "start  queue        offered  service_level  asa_s"
        );
        assert_eq!(
            lines[1],
            "09:00  support           12            75%   12.3"
        );
        assert_eq!(
            lines[2],
            "09:30  sales, east        0              -      -"
        );
        assert_eq!(
            t.json()[0],
            json!({"start": "09:00", "queue": "support", "offered": 12,
                   "service_level": 0.75, "asa_s": 12.345})
        );
        assert_eq!(t.json()[1]["asa_s"], serde_json::Value::Null);
    }
}
