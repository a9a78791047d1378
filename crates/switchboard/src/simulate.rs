//! `switchboard simulate`: the what-if tool for workforce planners. Parses the flags into an
//! [`pbx::acd::sim::SimConfig`], runs the seeded virtual-time simulation of the real ACD engine
//! and prints the simulated figures beside Erlang C (or one JSON object with `--json`).

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context};
use pbx::acd::sim::{simulate, HandleTime, SimConfig, SimReport};

/// Handle-time distribution flag.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum AhtDist {
    /// Exponential with mean `--aht` (Erlang C's assumption).
    Exponential,
    /// Every call takes exactly `--aht`.
    Fixed,
}

/// Options of `switchboard simulate`.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct SimulateArgs {
    /// Mean arrival rate, calls per hour (Poisson arrivals).
    #[arg(long)]
    pub(crate) calls_per_hour: f64,
    /// Average handle time in seconds.
    #[arg(long)]
    pub(crate) aht: f64,
    /// Handle-time distribution.
    #[arg(long, value_enum, default_value = "exponential")]
    pub(crate) aht_dist: AhtDist,
    /// Mean caller patience in seconds (exponential); callers abandon when it runs out.
    /// Without it callers never abandon.
    #[arg(long)]
    pub(crate) patience: Option<f64>,
    /// Number of agents logged in.
    #[arg(long, required_unless_present = "config")]
    pub(crate) agents: Option<u32>,
    /// Service-level threshold in seconds.
    #[arg(long, default_value_t = 20.0)]
    pub(crate) sl_threshold: f64,
    /// Simulated hours.
    #[arg(long, default_value_t = 8.0)]
    pub(crate) hours: f64,
    /// RNG seed: the same inputs and seed give the same figures.
    #[arg(long, default_value_t = 1)]
    pub(crate) seed: u64,
    /// Print one JSON object instead of the table.
    #[arg(long)]
    pub(crate) json: bool,
    /// Take the agent count from a config directory: the agents serving `--queue`.
    #[arg(long, conflicts_with = "agents")]
    pub(crate) config: Option<PathBuf>,
    /// With `--config`: the queue to simulate (default: the only queue, else an error).
    #[arg(long, requires = "config")]
    pub(crate) queue: Option<String>,
}

fn secs(name: &str, v: f64) -> anyhow::Result<Duration> {
    Duration::try_from_secs_f64(v)
        .with_context(|| format!("--{name} must be a non-negative number of seconds, got {v}"))
}

/// Runs the simulation and prints the report.
pub(crate) fn run(args: &SimulateArgs) -> anyhow::Result<()> {
    let agents = match &args.config {
        None => args.agents.context("--agents is required")?,
        Some(dir) => {
            let cfg = crate::config::load(dir, None).map_err(|e| anyhow::anyhow!("{e}"))?;
            let queues = &cfg.callcenter.queues;
            let name = match (&args.queue, queues.as_slice()) {
                (Some(q), _) => q.clone(),
                (None, [only]) => only.acd.name.clone(),
                (None, []) => bail!("{}: no queues configured", dir.display()),
                (None, _) => bail!(
                    "{}: several queues; choose one with --queue ({})",
                    dir.display(),
                    queues
                        .iter()
                        .map(|q| q.acd.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            };
            if !queues.iter().any(|q| q.acd.name == name) {
                bail!("{}: no queue \"{name}\"", dir.display());
            }
            let n = cfg
                .callcenter
                .agents
                .iter()
                .filter(|a| a.acd.queues.iter().any(|m| m.queue == name))
                .count() as u32;
            if n == 0 {
                bail!("{}: queue \"{name}\" has no agents", dir.display());
            }
            eprintln!(
                "simulating queue \"{name}\" of {} with its {n} agents",
                dir.display()
            );
            n
        }
    };
    let cfg = SimConfig {
        calls_per_hour: args.calls_per_hour,
        aht: secs("aht", args.aht)?,
        aht_dist: match args.aht_dist {
            AhtDist::Exponential => HandleTime::Exponential,
            AhtDist::Fixed => HandleTime::Fixed,
        },
        patience: args.patience.map(|p| secs("patience", p)).transpose()?,
        agents,
        sl_threshold: secs("sl-threshold", args.sl_threshold)?,
        hours: args.hours,
        seed: args.seed,
    };
    let report = simulate(&cfg)?;
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        print!("{}", table(&report));
    }
    Ok(())
}

fn pct(v: Option<f64>) -> String {
    v.map_or_else(|| "-".to_owned(), |x| format!("{:.1} %", x * 100.0))
}

fn secs_text(v: Option<f64>) -> String {
    match v {
        Some(x) if x.is_finite() => format!("{x:.1} s"),
        Some(_) => "unbounded".to_owned(),
        None => "-".to_owned(),
    }
}

/// The human-readable report: simulated figures beside Erlang C.
fn table(r: &SimReport) -> String {
    let c = &r.config;
    let e = &r.erlang_c;
    let mut out = format!(
        "{:.0} calls/h, AHT {:.0} s ({:?}), {} agents, SL threshold {:.0} s, {} h, seed {}{}\n",
        c.calls_per_hour,
        c.aht.as_secs_f64(),
        c.aht_dist,
        c.agents,
        c.sl_threshold.as_secs_f64(),
        c.hours,
        c.seed,
        c.patience.map_or_else(String::new, |p| format!(
            ", patience {:.0} s",
            p.as_secs_f64()
        )),
    );
    out += &format!(
        "offered traffic {:.2} erlangs; {} calls simulated after warm-up\n\n",
        e.traffic, r.calls
    );
    out += &format!("{:<16}{:>14}{:>14}\n", "", "simulated", "Erlang C");
    out += &format!(
        "{:<16}{:>14}{:>14}\n",
        "service level",
        pct(r.service_level),
        pct(Some(e.service_level))
    );
    out += &format!(
        "{:<16}{:>14}{:>14}\n",
        "ASA",
        secs_text(r.asa_secs),
        secs_text(Some(e.asa_secs))
    );
    out += &format!(
        "{:<16}{:>14}{:>14}\n",
        "abandon rate",
        pct(r.abandon_rate),
        "0.0 %"
    );
    out += &format!(
        "{:<16}{:>14}{:>14}\n",
        "occupancy",
        pct(r.occupancy),
        pct(Some(e.occupancy))
    );
    if c.patience.is_some() || c.aht_dist == HandleTime::Fixed {
        out += "\nErlang C assumes exponential handle times and callers who never abandon.\n";
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: SimulateArgs,
    }

    #[test]
    fn table_and_json_carry_both_columns() {
        let cli = Cli::parse_from([
            "x",
            "--calls-per-hour",
            "100",
            "--aht",
            "180",
            "--agents",
            "7",
            "--hours",
            "20",
        ]);
        let cfg = SimConfig {
            calls_per_hour: cli.args.calls_per_hour,
            aht: secs("aht", cli.args.aht).unwrap(),
            agents: cli.args.agents.unwrap(),
            hours: cli.args.hours,
            ..SimConfig::default()
        };
        let report = simulate(&cfg).unwrap();
        let t = table(&report);
        assert!(
            t.contains("service level") && t.contains("Erlang C") && t.contains("occupancy"),
            "{t}"
        );
        let json: serde_json::Value = serde_json::to_value(&report).unwrap();
        assert!(json["service_level"].as_f64().is_some());
        assert!(json["erlang_c"]["service_level"].as_f64().is_some());
        run(&cli.args).unwrap();
    }

    #[test]
    fn the_agents_of_a_config_dirs_queue_are_simulated() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config");
        let cli = Cli::parse_from([
            "x",
            "--calls-per-hour",
            "60",
            "--aht",
            "180",
            "--hours",
            "2",
            "--json",
            "--config",
            dir.to_str().unwrap(),
        ]);
        run(&cli.args).unwrap();
        let cli = Cli::parse_from([
            "x",
            "--calls-per-hour",
            "60",
            "--aht",
            "180",
            "--config",
            dir.to_str().unwrap(),
            "--queue",
            "sales",
        ]);
        let err = run(&cli.args).unwrap_err().to_string();
        assert!(err.contains("no queue \"sales\""), "{err}");
    }
}
