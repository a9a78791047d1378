//! `switchboard-load`: many agent phones and callers in one process, real RTP both ways, for
//! measuring what a server holds. Progress on stderr once a second; the report as JSON on
//! stdout. Exit status 0 when every call reached an agent and ended cleanly, 1 otherwise, 2
//! for bad arguments.

use std::net::{IpAddr, SocketAddr};
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, ValueEnum};
use softphone::load::{run, LoadOptions, Spread};

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Dist {
    Fixed,
    Exp,
    Uniform,
}

impl From<Dist> for Spread {
    fn from(d: Dist) -> Spread {
        match d {
            Dist::Fixed => Spread::Fixed,
            Dist::Exp => Spread::Exponential,
            Dist::Uniform => Spread::Uniform,
        }
    }
}

/// Agent phones register and answer; callers arrive at a rate, call a queue, talk for a
/// while once they hear their agent and hang up. Setup times, failed calls and audio loss
/// are reported.
#[derive(Debug, Parser)]
#[command(name = "switchboard-load", version)]
struct Args {
    /// The server, host:port.
    #[arg(long)]
    server: SocketAddr,
    /// Local address.
    #[arg(long, default_value = "127.0.0.1")]
    local: IpAddr,
    /// Domain of the URIs.
    #[arg(long, default_value = "switchboard")]
    domain: String,
    /// First agent user (numeric).
    #[arg(long, default_value_t = 1001)]
    first_agent: u64,
    /// How many agent phones (users first_agent, first_agent+1, …).
    #[arg(long, default_value_t = 10)]
    agents: u64,
    /// Each agent's password is this prefix followed by the user.
    #[arg(long, default_value = "demo")]
    password_prefix: String,
    /// Callers' From users: this prefix and a number.
    #[arg(long, default_value = "555")]
    caller_prefix: String,
    /// The number callers dial (a queue).
    #[arg(long, default_value = "600")]
    number: String,
    /// New calls per second.
    #[arg(long, default_value_t = 1.0)]
    rate: f64,
    /// How arrivals are spread (exp: Poisson).
    #[arg(long, value_enum, default_value = "exp")]
    arrivals: Dist,
    /// Seconds during which calls arrive.
    #[arg(long, default_value_t = 30.0)]
    duration: f64,
    /// Mean seconds a caller talks once connected.
    #[arg(long, default_value_t = 10.0)]
    talk: f64,
    /// How talk times are spread.
    #[arg(long, value_enum, default_value = "exp")]
    talk_dist: Dist,
    /// Seconds an agent's phone rings before answering.
    #[arg(long, default_value_t = 0.0)]
    answer_after: f64,
    /// Seconds a caller waits to hear an agent before giving up (a failed call).
    #[arg(long, default_value_t = 60.0)]
    max_wait: f64,
    /// Agent registrations per second at the start.
    #[arg(long, default_value_t = 200.0)]
    register_rate: f64,
    /// Signalling only: no RTP.
    #[arg(long)]
    no_media: bool,
    /// RTP sockets shared by all streams.
    #[arg(long, default_value_t = 4)]
    rtp_sockets: usize,
    /// Seed of arrivals and talk times.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// No calls: the agents register again and again, --rate registrations a second for
    /// --duration (each timed from its REGISTER to its 200).
    #[arg(long)]
    registrations_only: bool,
}

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s.max(0.0))
}

fn main() -> ExitCode {
    let a = Args::parse();
    if !(a.rate > 0.0 && a.rate <= 100_000.0) {
        eprintln!(
            "--rate: {} is not between 0 and 100000 calls per second",
            a.rate
        );
        return ExitCode::from(2);
    }
    if a.agents == 0 || a.agents > 100_000 {
        eprintln!("--agents: {} is not between 1 and 100000", a.agents);
        return ExitCode::from(2);
    }
    let opts = LoadOptions {
        server: a.server,
        local: a.local,
        domain: a.domain,
        agents: (a.first_agent..a.first_agent + a.agents)
            .map(|u| u.to_string())
            .collect(),
        password_prefix: a.password_prefix,
        caller_prefix: a.caller_prefix,
        number: a.number,
        rate: a.rate,
        arrivals: a.arrivals.into(),
        duration: secs(a.duration),
        talk: secs(a.talk),
        talk_spread: a.talk_dist.into(),
        answer_after: secs(a.answer_after),
        max_wait: secs(a.max_wait),
        register_rate: a.register_rate,
        media: !a.no_media,
        rtp_sockets: a.rtp_sockets,
        seed: a.seed,
        registrations_only: a.registrations_only,
    };
    let report = run(opts, |r| {
        eprintln!(
            "calls {} completed {} failed {} registered {} rtp sent {} received {} lost {}",
            r.calls, r.completed, r.failed, r.registered, r.rtp_sent, r.rtp_received, r.rtp_lost
        );
    });
    match report {
        Ok(r) => {
            println!(
                "{}",
                serde_json::to_string(&r).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
            );
            if r.failed == 0
                && r.unfinished == 0
                && r.registration_failures == 0
                && r.agents_not_hearing == 0
            {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}
