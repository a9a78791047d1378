//! `switchboard-phone`: the agent softphone. Headless, it prints a JSON summary on stdout and
//! exits 0 when it did what it was asked (registered, and the call was answered when there
//! was one), 1 otherwise, 2 for bad arguments. With `--tui` it is the agent's terminal UI
//! instead, until the agent quits.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use softphone::audio::Source;
use softphone::phone::{run, Options};
use softphone::station::StationConfig;
use softphone::tui::console::{self, ApiLogin, ConsoleConfig};

/// The agent softphone. Headless: register, call or answer, send a tone or a WAV file, key
/// digits, record what it hears, hang up; a JSON summary on stdout. With --tui: the agent's
/// terminal UI.
#[derive(Debug, Parser)]
#[command(name = "switchboard-phone", version)]
struct Args {
    /// The server, host:port.
    #[arg(long)]
    server: SocketAddr,
    /// SIP user.
    #[arg(long)]
    user: String,
    /// Its password (or SWITCHBOARD_PHONE_PASSWORD).
    #[arg(long, env = "SWITCHBOARD_PHONE_PASSWORD", hide_env_values = true)]
    password: String,
    /// Domain of the From/To URIs.
    #[arg(long, default_value = "switchboard")]
    domain: String,
    /// Local address to use.
    #[arg(long, default_value = "127.0.0.1")]
    local: IpAddr,
    /// Call this number (else wait for a call and answer it).
    #[arg(long)]
    dial: Option<String>,
    /// Seconds to ring before answering an incoming call.
    #[arg(long, default_value_t = 0.0)]
    answer_after: f64,
    /// Send a sine of this frequency (Hz).
    #[arg(long, conflicts_with = "play")]
    tone: Option<f64>,
    /// Send this WAV file (8 kHz mono 16-bit), looped.
    #[arg(long)]
    play: Option<PathBuf>,
    /// Record what the phone hears into this WAV file.
    #[arg(long)]
    record: Option<PathBuf>,
    /// Hang up this many seconds after the call is up (else wait for the other side).
    #[arg(long)]
    hangup_after: Option<f64>,
    /// Key these digits (RFC 4733) during the call.
    #[arg(long, default_value = "")]
    digits: String,
    /// Seconds into the call to key them.
    #[arg(long, default_value_t = 1.0)]
    digits_after: f64,
    /// Give up after this many seconds in all.
    #[arg(long, default_value_t = 60.0)]
    timeout: f64,
    /// Put the call on hold this many seconds into it.
    #[arg(long)]
    hold_after: Option<f64>,
    /// For this many seconds, then resume.
    #[arg(long, default_value_t = 2.0)]
    hold_for: f64,
    /// Registration expiry to ask for (seconds).
    #[arg(long, default_value_t = 300)]
    expires: u32,
    /// Do not register: call straight away (answering the far end's digest challenge).
    #[arg(long, requires = "dial")]
    no_register: bool,
    /// Cancel the call if it is not answered within this many seconds.
    #[arg(long, requires = "dial")]
    cancel_after: Option<f64>,
    /// SIP over TCP instead of UDP.
    #[arg(long)]
    tcp: bool,
    /// Send a CRLF keep-alive to the server every this many seconds (NAT).
    #[arg(long)]
    keepalive: Option<f64>,
    /// Mute the microphone this many seconds into the call.
    #[arg(long)]
    mute_after: Option<f64>,
    /// For this many seconds, then unmute.
    #[arg(long, default_value_t = 2.0)]
    mute_for: f64,
    /// Transfer the call (blind, REFER) to this number.
    #[arg(long)]
    transfer_to: Option<String>,
    /// Seconds into the call to transfer it.
    #[arg(long, default_value_t = 1.0)]
    transfer_after: f64,
    /// Attended transfer: hold the call and consult this number…
    #[arg(long, conflicts_with = "transfer_to")]
    consult: Option<String>,
    /// …this many seconds into the call…
    #[arg(long, default_value_t = 1.0)]
    consult_after: f64,
    /// …and connect the caller to them this many seconds after they answer.
    #[arg(long, default_value_t = 1.0)]
    complete_after: f64,
    /// Jitter buffer depth for what is recorded, milliseconds.
    #[arg(long, default_value_t = 60)]
    playout_ms: u64,
    /// Talk through the sound card (builds with the sound-card feature; silent without a
    /// card, and said so).
    #[arg(long, conflicts_with_all = ["tone", "play"])]
    sound_card: bool,
    /// Run the agent's terminal UI instead of a script (keys: see the bottom line).
    #[arg(
        long,
        conflicts_with_all = [
            "dial", "answer_after", "record", "hangup_after", "digits", "hold_after",
            "no_register", "cancel_after", "mute_after", "transfer_to",
        ]
    )]
    tui: bool,
    /// The server's web address for agent state and dispositions (terminal UI), such as
    /// http://127.0.0.1:8080.
    #[arg(long, requires_all = ["tui", "web_login"])]
    api: Option<String>,
    /// Web login for --api (a [logins.NAME] of users.toml with an agent).
    #[arg(long, requires = "api")]
    web_login: Option<String>,
    /// Its password (or SWITCHBOARD_WEB_PASSWORD).
    #[arg(long, env = "SWITCHBOARD_WEB_PASSWORD", hide_env_values = true)]
    web_password: Option<String>,
}

/// The terminal UI until the agent quits.
fn run_tui(args: Args, source: Source) -> ExitCode {
    let api = match (args.api, args.web_login, args.web_password) {
        (Some(url), Some(login), Some(password)) => Some(ApiLogin {
            url,
            login,
            password,
        }),
        (Some(_), _, None) => {
            eprintln!(
                "--api needs the web login's password: --web-password or SWITCHBOARD_WEB_PASSWORD"
            );
            return ExitCode::from(2);
        }
        _ => None,
    };
    let cfg = ConsoleConfig {
        station: StationConfig {
            server: args.server,
            tcp: args.tcp,
            local: args.local,
            user: args.user,
            password: args.password,
            domain: args.domain,
            expires: args.expires,
            keepalive: args.keepalive.map(secs),
            source,
            playout: None,
            sound_card: args.sound_card,
        },
        api,
    };
    match console::run(&cfg) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("switchboard-phone: {e}");
            ExitCode::FAILURE
        }
    }
}

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s.max(0.0))
}

fn main() -> ExitCode {
    let args = Args::parse();
    let args_no_register = args.no_register;
    if let Some(bad) = args
        .digits
        .chars()
        .find(|c| !"0123456789*#ABCD".contains(*c))
    {
        eprintln!("--digits: {bad:?} is not a key (0-9, *, #, A-D)");
        return ExitCode::from(2);
    }
    let source = match (&args.play, args.tone) {
        (Some(p), _) => match Source::wav(p) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("--play: {e}");
                return ExitCode::from(2);
            }
        },
        (None, Some(hz)) if hz > 0.0 && hz < 4000.0 => Source::Tone(hz),
        (None, Some(hz)) => {
            eprintln!("--tone: {hz} Hz is not between 0 and 4000");
            return ExitCode::from(2);
        }
        (None, None) => Source::Silence,
    };
    if args.tui {
        return run_tui(args, source);
    }
    let summary = run(Options {
        server: args.server,
        local: args.local,
        user: args.user,
        password: args.password,
        domain: args.domain,
        dial: args.dial,
        answer_after: secs(args.answer_after),
        source,
        record: args.record,
        hangup_after: args.hangup_after.map(secs),
        digits: args.digits,
        digits_after: secs(args.digits_after),
        timeout: secs(args.timeout),
        hold_after: args.hold_after.map(secs),
        hold_for: secs(args.hold_for),
        expires: args.expires,
        register: !args.no_register,
        cancel_after: args.cancel_after.map(secs),
        tcp: args.tcp,
        keepalive: args.keepalive.map(secs),
        mute_after: args.mute_after.map(secs),
        mute_for: secs(args.mute_for),
        transfer_to: args.transfer_to,
        transfer_after: secs(args.transfer_after),
        consult: args.consult,
        consult_after: secs(args.consult_after),
        complete_after: secs(args.complete_after),
        playout: Duration::from_millis(args.playout_ms),
        sound_card: args.sound_card,
    });
    println!(
        "{}",
        serde_json::to_string(&summary).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
    );
    if summary.error.is_none() && (summary.registered || args_no_register) {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
