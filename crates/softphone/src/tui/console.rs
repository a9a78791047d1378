//! The terminal UI's driver: a [`Console`] is one [`Station`] (the phone on its sockets), the
//! [`App`] on screen and, when configured, the agent API's [`Worker`]. [`Console::turn`]
//! moves them all along once; [`run`] does it in a loop on a real terminal (crossterm raw
//! mode and alternate screen, restored on exit and on a panic) and draws at most about ten
//! times a second, or when something changed. Tests drive a console themselves and draw it
//! on ratatui's `TestBackend`.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use crossterm::event::{self, Event, KeyEvent};
use crossterm::terminal::{self, EnterAlternateScreen, LeaveAlternateScreen};
use ratatui::backend::CrosstermBackend;
use ratatui::Terminal;

use super::{Action, App, Settings, SIP_LOG};
use crate::api::{ApiError, ApiRequest, Client, Worker};
use crate::station::{Station, StationConfig};
use crate::ua::{Command, PhoneEvent};

/// How often the screen reads the agent's state from the server.
const STATE_READ_EVERY: Duration = Duration::from_secs(3);

/// The web login the console uses for the agent API.
#[derive(Debug, Clone)]
pub struct ApiLogin {
    /// The server's web address (`http://host:port`).
    pub url: String,
    /// The web login (`[logins.NAME]` in users.toml, with `agent = "…"`).
    pub login: String,
    /// Its password.
    pub password: String,
}

/// How the console is set up.
#[derive(Debug, Clone)]
pub struct ConsoleConfig {
    /// The phone.
    pub station: StationConfig,
    /// The agent API (`None`: no agent state or dispositions from here).
    pub api: Option<ApiLogin>,
}

/// Why the console could not start or went wrong.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConsoleError {
    /// Standard input or output is not a terminal.
    #[error(
        "the terminal UI needs a terminal: run it in one, or over `ssh -t` \
         (without --tui the phone runs headless)"
    )]
    NoTerminal,
    /// The phone's sockets could not be opened.
    #[error("{0}")]
    Station(String),
    /// The API's address is unusable.
    #[error(transparent)]
    Api(#[from] ApiError),
    /// The terminal failed.
    #[error("terminal: {0}")]
    Terminal(#[from] std::io::Error),
}

/// The phone, its screen and the agent API, together.
pub struct Console {
    /// The phone on its sockets.
    pub station: Station,
    /// What is on screen.
    pub app: App,
    worker: Option<Worker>,
    quit: bool,
    /// When to read the agent's state from the server again.
    next_state_read: Instant,
}

impl Console {
    /// Open the phone's sockets, keep its SIP messages for the view, register, and log in
    /// to the agent API (on the worker's thread) when it is configured.
    pub fn open(cfg: &ConsoleConfig) -> Result<Console, ConsoleError> {
        let client = match &cfg.api {
            Some(a) => Some(Client::new(&a.url, &a.login, &a.password)?),
            None => None,
        };
        let mut station = Station::open(&cfg.station).map_err(ConsoleError::Station)?;
        station.enable_trace(SIP_LOG);
        station.command(Command::Register);
        let worker = client.map(Worker::start);
        if let Some(w) = &worker {
            w.send(ApiRequest::LogIn);
        }
        let s = &cfg.station;
        let app = App::new(Settings {
            user: s.user.clone(),
            server: s.server.to_string(),
            api: worker.is_some(),
            // What became of the sound card, shown on the idle screen.
            audio: station.notice.take(),
        });
        Ok(Console {
            station,
            app,
            worker,
            quit: false,
            next_state_read: Instant::now(),
        })
    }

    /// One turn: the key pressed (if any), then the phone (waiting at most a few
    /// milliseconds for SIP), its traced messages and the API's replies. `false` once the
    /// user has asked to quit.
    pub fn turn(&mut self, key: Option<KeyEvent>) -> bool {
        if let Some(k) = key {
            self.app.key(k);
            self.carry_out();
        }
        let events = self.station.step();
        let now = Instant::now();
        for ev in &events {
            self.app.phone_event(now, ev);
        }
        while let Some(m) = self.station.poll_trace() {
            self.app.sip_message(m);
        }
        if let Some(why) = self.station.broken.take() {
            self.app.fault(&why);
        }
        while let Some(reply) = self.worker.as_ref().and_then(Worker::poll_reply) {
            self.app.api_reply(&reply);
        }
        // The agent's state as the server has it (a supervisor may change it, wrap-up ends
        // by itself): read every few seconds.
        if now >= self.next_state_read {
            self.next_state_read = now + STATE_READ_EVERY;
            if let Some(w) = &self.worker {
                w.send(ApiRequest::ReadState);
            }
        }
        self.carry_out();
        !self.quit
    }

    fn carry_out(&mut self) {
        while let Some(action) = self.app.poll_action() {
            match action {
                Action::Phone(cmd) => self.station.command(cmd),
                Action::Mute(on) => self.station.set_muted(on),
                Action::Digits(d) => self.station.key(&d),
                Action::Api(req) => {
                    if let Some(w) = &self.worker {
                        w.send(req);
                    }
                }
                Action::Quit => self.quit = true,
            }
        }
    }

    /// Hang up any call, see what is in flight of it through (our BYE's answer), and
    /// unregister; all within `within`.
    pub fn close(&mut self, within: Duration) {
        let until = Instant::now() + within;
        if self.station.phone.call().is_some() {
            self.station.command(Command::Hangup);
        }
        while !self.station.phone.settled() && Instant::now() < until {
            let _ = self.station.step();
        }
        if !self.station.phone.registered() {
            return;
        }
        self.station.command(Command::Unregister);
        while Instant::now() < until {
            if self.station.step().contains(&PhoneEvent::Unregistered) {
                break;
            }
        }
    }
}

/// Put the terminal back as it was: cooked mode, the main screen, the cursor shown.
fn restore_terminal() {
    let _ = terminal::disable_raw_mode();
    let _ = crossterm::execute!(
        std::io::stdout(),
        LeaveAlternateScreen,
        crossterm::cursor::Show
    );
}

/// Restores the terminal when dropped, also when unwinding.
struct RawScreen;

impl RawScreen {
    fn enter() -> std::io::Result<RawScreen> {
        terminal::enable_raw_mode()?;
        let screen = RawScreen;
        crossterm::execute!(std::io::stdout(), EnterAlternateScreen)?;
        Ok(screen)
    }
}

impl Drop for RawScreen {
    fn drop(&mut self) {
        restore_terminal();
    }
}

/// Run the terminal UI until the user quits: register, show, act on keys; then hang up,
/// unregister and give the terminal back.
pub fn run(cfg: &ConsoleConfig) -> Result<(), ConsoleError> {
    if !std::io::stdin().is_terminal() || !std::io::stdout().is_terminal() {
        return Err(ConsoleError::NoTerminal);
    }
    let mut console = Console::open(cfg)?;
    // A panic must not leave the terminal in raw mode: put it back before the message. The
    // hook stays: putting back a terminal that is already back does no harm.
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        restore_terminal();
        previous(info);
    }));
    let outcome = {
        let _screen = RawScreen::enter()?;
        drive(&mut console)
    };
    console.close(Duration::from_secs(2));
    outcome
}

fn drive(console: &mut Console) -> Result<(), ConsoleError> {
    let mut terminal = Terminal::new(CrosstermBackend::new(std::io::stdout()))?;
    terminal.clear()?;
    let mut drawn: Option<Instant> = None;
    let mut dirty = true;
    loop {
        let key = if event::poll(Duration::from_millis(5))? {
            match event::read()? {
                Event::Key(k) => Some(k),
                Event::Resize(..) => {
                    dirty = true;
                    None
                }
                _ => None,
            }
        } else {
            None
        };
        if !console.turn(key) {
            return Ok(());
        }
        dirty |= console.app.take_changed();
        let since = drawn.map_or(Duration::MAX, |t| t.elapsed());
        // On a change (at most ten times a second), and every quarter second for the timer.
        if (dirty && since >= Duration::from_millis(100)) || since >= Duration::from_millis(250) {
            let now = Instant::now();
            terminal.draw(|f| console.app.draw(f, now))?;
            drawn = Some(now);
            dirty = false;
        }
    }
}
