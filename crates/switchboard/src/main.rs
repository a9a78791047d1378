//! The Switchboard server binary: CLI, config files, tracing, wiring and shutdown.
//!
//! `switchboard serve --config DIR` runs the SIP registrar on the files in DIR
//! (`switchboard.toml`, `users.toml`). Bind addresses can be moved with `--sip-bind` or the
//! `SWITCHBOARD_SIP_BIND` environment variable. `switchboard check` validates a config
//! directory; `switchboard simulate` is the what-if tool for workforce planners.

mod callcenter;
mod config;
mod demo;
mod report;
mod serve;
mod simulate;
mod speech;
mod spill;
mod storage;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "switchboard", version, about = "Contact-center telephony core")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the server.
    Serve(ServeArgs),
    /// The server with simulated agents and callers (headless phones), for a while.
    Demo(demo::DemoArgs),
    /// Validate a config directory and print a summary.
    Check {
        /// Config directory.
        #[arg(long, default_value = "config", env = "SWITCHBOARD_CONFIG")]
        config: PathBuf,
    },
    /// What-if simulation of a queue in virtual time, beside the Erlang C prediction.
    Simulate(simulate::SimulateArgs),
    /// Interval reports from the call records (per queue or per agent; table, CSV or JSON).
    Report(report::ReportArgs),
    /// Hash a web login's password for users.toml (`[logins.NAME] password_hash`). Reads the
    /// password from standard input (one line), so it is not left in the shell history.
    Passwd,
    /// Call recordings.
    Recordings {
        #[command(subcommand)]
        action: RecordingsAction,
    },
}

#[derive(Debug, Subcommand)]
enum RecordingsAction {
    /// Finish recordings left unfinished by a crash (the server also does this at start-up).
    Repair {
        /// The recordings directory (recording.dir).
        dir: PathBuf,
    },
}

/// Options of `switchboard serve`.
#[derive(Debug, clap::Args)]
pub(crate) struct ServeArgs {
    /// Config directory holding switchboard.toml and users.toml.
    #[arg(long, default_value = "config", env = "SWITCHBOARD_CONFIG")]
    pub(crate) config: PathBuf,
    /// SIP listen address for UDP and TCP (overrides sip.bind).
    #[arg(long, env = "SWITCHBOARD_SIP_BIND")]
    pub(crate) sip_bind: Option<String>,
    /// Log filter (overrides log.level), e.g. "debug" or "sip=debug,info".
    #[arg(long, env = "SWITCHBOARD_LOG")]
    pub(crate) log: Option<String>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(args) => serve::run(args),
        Command::Demo(args) => demo::run(&args),
        Command::Passwd => {
            use std::io::IsTerminal;
            if std::io::stdin().is_terminal() {
                eprintln!("password (the line is shown as you type; pipe it in to avoid that):");
            }
            let mut line = String::new();
            if std::io::stdin().read_line(&mut line).is_err() {
                eprintln!("error: cannot read the password from standard input");
                return ExitCode::FAILURE;
            }
            let password = line.trim_end_matches(['\r', '\n']);
            if password.len() < 8 {
                eprintln!("error: use at least 8 characters");
                return ExitCode::FAILURE;
            }
            println!("{}", web::auth::hash_password(password));
            ExitCode::SUCCESS
        }
        Command::Recordings {
            action: RecordingsAction::Repair { dir },
        } => {
            if !dir.is_dir() {
                eprintln!(
                    "switchboard recordings repair: {} is not a directory",
                    dir.display()
                );
                return ExitCode::FAILURE;
            }
            let (repaired, failed) = pbx::recorder::file::repair(&dir);
            for p in &repaired {
                println!("repaired {}", p.display());
            }
            for e in &failed {
                eprintln!("cannot repair {e}");
            }
            println!("{} repaired, {} failed", repaired.len(), failed.len());
            if failed.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Command::Report(args) => match report::run(&args) {
            Ok(text) => {
                print!("{text}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("switchboard report: {e:#}");
                ExitCode::FAILURE
            }
        },
        Command::Simulate(args) => match simulate::run(&args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("switchboard simulate: {e:#}");
                ExitCode::FAILURE
            }
        },
        Command::Check { config } => match config::load(&config, None) {
            Ok(c) => {
                let cc = &c.callcenter;
                for w in &cc.warnings {
                    eprintln!("warning: {w}");
                }
                let skills: std::collections::BTreeSet<&str> = cc
                    .agents
                    .iter()
                    .flat_map(|a| a.acd.skills.iter().map(|s| s.skill.as_str()))
                    .collect();
                let mut listeners = String::new();
                for (name, at) in [
                    ("WebSocket", c.ws),
                    ("TLS", c.tls),
                    ("secure WebSocket", c.wss),
                ] {
                    if let Some(at) = at {
                        listeners.push_str(&format!(", {name} on {at}"));
                    }
                }
                println!(
                    "{}: OK: {} users, {} agents, {} queues, {} skills, {} menus, {} trunks, {} routes out; SIP on {} ({}{}){listeners}, RTP {}:{}-{}",
                    config.display(),
                    c.users.len(),
                    cc.agents.len(),
                    cc.queues.len(),
                    skills.len(),
                    cc.menus.len(),
                    cc.trunks.len(),
                    cc.outbound.routes.len(),
                    c.sip_bind,
                    if c.udp { "UDP" } else { "" },
                    if c.tcp { " TCP" } else { "" },
                    cc.media.advertise,
                    cc.media.port_min,
                    cc.media.port_max,
                );
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("{e}");
                ExitCode::FAILURE
            }
        },
    }
}
