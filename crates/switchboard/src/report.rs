//! `switchboard report`: interval reports from the stored calls, per queue or per agent, as a
//! table, CSV or JSON. Days and slots are UTC.

use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::bail;
use store::report::{parse_date, Table, DAY_MS};

/// Options of `switchboard report`.
#[derive(Debug, clap::Args)]
pub(crate) struct ReportArgs {
    /// Config directory (the database is the one its `[storage]` names: the SQLite file or
    /// the PostgreSQL server).
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

/// Run the report; the text to print.
pub(crate) fn run(args: &ReportArgs) -> anyhow::Result<String> {
    if ![15, 30, 60].contains(&args.interval) {
        bail!("--interval {}: use 15, 30 or 60 minutes", args.interval);
    }
    let cfg = crate::config::load(&args.config, None).map_err(|e| anyhow::anyhow!("{e}"))?;
    let Some(storage) = cfg.storage else {
        bail!("call records are off in this config ([storage] enabled = false)");
    };
    if let store::Location::Sqlite(path) = &storage.location {
        if !path.exists() {
            bail!("no call records yet: {} does not exist", path.display());
        }
    }
    let from = match &args.date {
        Some(d) => parse_date(d).map_err(|e| anyhow::anyhow!("--date {e}"))?,
        None => {
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as i64);
            now - now.rem_euclid(DAY_MS)
        }
    };
    let to = from + DAY_MS;
    let interval = i64::from(args.interval) * 60_000;
    let db = storage.location.open_read_only()?;
    let table = match args.by {
        By::Queue => Table::queues(&db.queue_intervals(
            from,
            to,
            interval,
            i64::from(args.service_level) * 1000,
        )?),
        By::Agent => {
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as i64);
            Table::agents(
                &db.agent_intervals(from, to, interval)?,
                &db.agent_times(from, to, interval, now)?,
            )
        }
    };
    Ok(match args.format {
        Format::Table => table.text(),
        Format::Csv => table.csv(),
        Format::Json => serde_json::to_string_pretty(&table.json())?,
    })
}
