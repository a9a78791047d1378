//! The agent's terminal UI (`switchboard-phone --tui`): registration state, agent state
//! (ready, paused with a reason, logged out, wrap-up), the ringing call with its caller, queue
//! and time waited, the call timer, hold and mute, keys for everything an agent does on a
//! call, the disposition code at the end of it, and a view of the SIP messages for
//! troubleshooting. It fits an 80×24 terminal, so it works over SSH.
//!
//! [`App`] is the screen's model, sans-IO like the phone core: it takes keys, the phone's
//! [`PhoneEvent`]s, the API's [`ApiReply`]s, traced SIP messages and the time, and is drained
//! for [`Action`]s that the driver carries out on the [`crate::station::Station`] and the
//! [`crate::api::Worker`]. [`App::draw`] renders it into a ratatui frame, so tests draw it on
//! ratatui's `TestBackend` and read the screen as a user would. [`console`] is the driver on a
//! real terminal.
//!
//! ```no_run
//! # use std::time::Instant;
//! # use softphone::tui::{Action, App};
//! # fn drive(app: &mut App, key: Option<crossterm::event::KeyEvent>,
//! #          events: Vec<softphone::ua::PhoneEvent>,
//! #          terminal: &mut ratatui::Terminal<ratatui::backend::TestBackend>) {
//! let now = Instant::now();
//! if let Some(k) = key { app.key(k); }
//! for ev in &events { app.phone_event(now, ev); }        // from station.step()
//! while let Some(action) = app.poll_action() {
//!     match action { /* station.command(..), set_muted, key, worker.send(..), quit */ _ => {} }
//! }
//! if app.take_changed() { terminal.draw(|f| app.draw(f, now)).unwrap(); }
//! # }
//! ```

pub mod console;
mod view;

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers};

use crate::api::{ApiReply, ApiRequest, RequestedState};
use crate::station::TracedMessage;
use crate::ua::{CallInfo, Command, PhoneEvent};

/// The SIP messages the view keeps.
pub const SIP_LOG: usize = 500;
/// The longest text a prompt takes.
const PROMPT_MAX: usize = 64;

/// Who and where, for the header.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The SIP user.
    pub user: String,
    /// The server, as given.
    pub server: String,
    /// The agent API is configured (agent state and dispositions).
    pub api: bool,
    /// What became of the sound card, when one was asked for (the station's notice).
    pub audio: Option<String>,
}

/// The phone's registration as shown.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Registration {
    /// Asked, no answer yet.
    Registering,
    /// The registrar accepted it.
    Registered,
    /// Refused or not answered (tried again later).
    Failed(String),
    /// Removed.
    Unregistered,
}

/// The agent's state as shown: what the server last confirmed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AgentState {
    /// Not known yet (nothing asked or seen since the UI started).
    Unknown,
    /// Takes calls.
    Ready,
    /// Takes no calls, for this reason.
    Paused(String),
    /// Logged out of the queues.
    LoggedOut,
    /// After a call, before the next one (the queue's wrap-up time).
    WrapUp,
}

/// Where the call is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// It rings here.
    Ringing,
    /// We are placing it.
    Calling,
    /// It rings at the other end.
    Alerting,
    /// Up since then.
    Up {
        /// When it was answered.
        since: Instant,
    },
}

/// The call on screen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallView {
    /// Who, from where.
    pub info: CallInfo,
    /// Where it is.
    pub phase: Phase,
    /// On hold (as the phone confirmed).
    pub held: bool,
    /// Keys sent on it.
    pub keyed: String,
}

/// What a prompt asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PromptKind {
    /// A number to call.
    Dial,
    /// A number to transfer the call to.
    Transfer,
    /// A number to consult before handing the call over (attended transfer).
    Consult,
    /// The reason for a pause.
    Pause,
    /// The disposition code of this call (the server's id).
    Disposition {
        /// The call.
        call: u64,
    },
}

/// A line being typed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prompt {
    /// What for.
    pub kind: PromptKind,
    /// What is typed so far.
    pub text: String,
}

/// What the driver is to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Give the phone this command (the station fills in the RTP port).
    Phone(Command),
    /// Mute (`true`) or unmute the microphone.
    Mute(bool),
    /// Key these digits on the call (RFC 4733).
    Digits(String),
    /// Send this request to the agent API.
    Api(ApiRequest),
    /// Hang up, unregister, restore the terminal and exit.
    Quit,
}

/// The status line: a confirmation or an error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notice {
    /// What to say.
    pub text: String,
    /// It is an error (shown in red).
    pub error: bool,
}

/// The call before this one, for the idle screen and a late disposition.
#[derive(Debug, Clone, PartialEq, Eq)]
struct LastCall {
    info: CallInfo,
    talk: Option<Duration>,
    how: String,
}

/// The terminal UI's model.
#[derive(Debug)]
pub struct App {
    settings: Settings,
    registration: Registration,
    web_login: Option<String>,
    agent_name: Option<String>,
    agent: AgentState,
    call: Option<CallView>,
    /// The call on hold while the agent consults someone (attended transfer).
    held_call: Option<CallView>,
    muted: bool,
    prompt: Option<Prompt>,
    /// The call whose disposition is awaited (the wrap-up).
    wrap_up: Option<u64>,
    last: Option<LastCall>,
    notice: Option<Notice>,
    sip: VecDeque<TracedMessage>,
    sip_lines: usize,
    sip_view: bool,
    /// Lines scrolled up from the newest, and columns scrolled right.
    sip_scroll: usize,
    sip_shift: u16,
    quit_asked: bool,
    actions: VecDeque<Action>,
    changed: bool,
}

/// `mm:ss` (minutes past 59 keep counting).
pub fn clock(d: Duration) -> String {
    let s = d.as_secs();
    format!("{:02}:{:02}", s / 60, s % 60)
}

fn lines_of(m: &TracedMessage) -> usize {
    1 + m.text.trim_end().lines().count()
}

impl App {
    /// A screen for this phone, registering.
    pub fn new(settings: Settings) -> App {
        App {
            settings,
            registration: Registration::Registering,
            web_login: None,
            agent_name: None,
            agent: AgentState::Unknown,
            call: None,
            held_call: None,
            muted: false,
            prompt: None,
            wrap_up: None,
            last: None,
            notice: None,
            sip: VecDeque::new(),
            sip_lines: 0,
            sip_view: false,
            sip_scroll: 0,
            sip_shift: 0,
            quit_asked: false,
            actions: VecDeque::new(),
            changed: true,
        }
    }

    /// The next thing for the driver to do.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// Something changed since the last call (the screen is worth drawing again).
    pub fn take_changed(&mut self) -> bool {
        std::mem::take(&mut self.changed)
    }

    /// The registration.
    pub fn registration(&self) -> &Registration {
        &self.registration
    }

    /// The agent's state.
    pub fn agent_state(&self) -> &AgentState {
        &self.agent
    }

    /// The call on screen.
    pub fn call(&self) -> Option<&CallView> {
        self.call.as_ref()
    }

    /// The call on hold during a consultation.
    pub fn held_call(&self) -> Option<&CallView> {
        self.held_call.as_ref()
    }

    /// The open prompt.
    pub fn prompt(&self) -> Option<&Prompt> {
        self.prompt.as_ref()
    }

    /// The status line.
    pub fn notice(&self) -> Option<&Notice> {
        self.notice.as_ref()
    }

    /// The microphone is muted.
    pub fn muted(&self) -> bool {
        self.muted
    }

    /// In wrap-up: the call whose disposition is awaited.
    pub fn wrap_up(&self) -> Option<u64> {
        self.wrap_up
    }

    /// The SIP message view is shown.
    pub fn sip_view(&self) -> bool {
        self.sip_view
    }

    fn say(&mut self, text: impl Into<String>) {
        self.notice = Some(Notice {
            text: text.into(),
            error: false,
        });
    }

    fn warn(&mut self, text: impl Into<String>) {
        self.notice = Some(Notice {
            text: text.into(),
            error: true,
        });
    }

    fn act(&mut self, action: Action) {
        self.actions.push_back(action);
    }

    fn open_prompt(&mut self, kind: PromptKind, text: &str) {
        self.prompt = Some(Prompt {
            kind,
            text: text.to_owned(),
        });
    }

    /// The agent API is there; else say that it is not.
    fn api_ready(&mut self) -> bool {
        if !self.settings.api {
            self.warn("the agent API is not configured (start with --api URL --web-login NAME)");
        }
        self.settings.api
    }

    // ------------------------------------------------------------------ keys

    /// A key the user pressed.
    pub fn key(&mut self, key: KeyEvent) {
        if key.kind == KeyEventKind::Release {
            return;
        }
        self.changed = true;
        if key.modifiers.contains(KeyModifiers::CONTROL) {
            if matches!(key.code, KeyCode::Char('c' | 'C')) {
                self.act(Action::Quit);
            }
            return;
        }
        if self.prompt.is_some() {
            return self.prompt_key(key);
        }
        let quit_asked = std::mem::take(&mut self.quit_asked);
        match key.code {
            KeyCode::Char(c) => self.command_key(c, quit_asked),
            KeyCode::Esc if self.sip_view => self.sip_view = false,
            KeyCode::Up
            | KeyCode::Down
            | KeyCode::PageUp
            | KeyCode::PageDown
            | KeyCode::Home
            | KeyCode::End
            | KeyCode::Left
            | KeyCode::Right
                if self.sip_view =>
            {
                self.scroll(key.code)
            }
            _ => {}
        }
    }

    fn scroll(&mut self, code: KeyCode) {
        let page = 10;
        let s = self.sip_scroll;
        self.sip_scroll = match code {
            KeyCode::Up => s + 1,
            KeyCode::Down => s.saturating_sub(1),
            KeyCode::PageUp => s + page,
            KeyCode::PageDown => s.saturating_sub(page),
            KeyCode::Home => self.sip_lines,
            KeyCode::End => 0,
            _ => s,
        }
        .min(self.sip_lines);
        self.sip_shift = match code {
            KeyCode::Left => self.sip_shift.saturating_sub(20),
            KeyCode::Right => self.sip_shift.saturating_add(20).min(400),
            _ => self.sip_shift,
        };
    }

    fn command_key(&mut self, c: char, quit_asked: bool) {
        let phase = self.call.as_ref().map(|c| c.phase);
        let up = matches!(phase, Some(Phase::Up { .. }));
        match c.to_ascii_lowercase() {
            'a' => match phase {
                Some(Phase::Ringing) => {
                    self.act(Action::Phone(Command::Answer { rtp_port: 0 }));
                    self.say("answering…");
                }
                _ => self.warn("no call is ringing"),
            },
            'h' => match phase {
                Some(p) => {
                    self.act(Action::Phone(Command::Hangup));
                    self.say(match p {
                        Phase::Ringing => "declining the call…",
                        Phase::Calling | Phase::Alerting => "giving up the call…",
                        Phase::Up { .. } => "hanging up…",
                    });
                }
                None if self.held_call.is_some() => {
                    self.act(Action::Phone(Command::Hangup));
                    self.say("hanging up the held call…");
                }
                None => self.warn("no call to hang up"),
            },
            'o' => match &self.call {
                Some(call) if up => {
                    let held = call.held;
                    self.act(Action::Phone(if held {
                        Command::Resume
                    } else {
                        Command::Hold
                    }));
                    self.say(if held {
                        "taking the call off hold…"
                    } else {
                        "putting the call on hold…"
                    });
                }
                _ => self.warn("no call to hold"),
            },
            'm' => {
                self.muted = !self.muted;
                self.act(Action::Mute(self.muted));
                self.say(if self.muted {
                    "microphone muted"
                } else {
                    "microphone on"
                });
            }
            '0'..='9' | '*' | '#' => match (phase, self.call.as_mut()) {
                (Some(Phase::Up { .. }), Some(call)) => {
                    call.keyed.push(c);
                    self.act(Action::Digits(c.to_string()));
                    self.say(format!("key {c} sent"));
                }
                (None, _) => self.open_prompt(PromptKind::Dial, &c.to_string()),
                _ => self.warn("keys go to a call once it is up"),
            },
            't' if up && self.held_call.is_none() => self.open_prompt(PromptKind::Transfer, ""),
            't' => self.warn("no call to transfer"),
            'x' if up && self.held_call.is_none() => self.open_prompt(PromptKind::Consult, ""),
            'x' if up => {
                self.act(Action::Phone(Command::CompleteTransfer));
                self.say("handing the caller over…");
            }
            'x' => self.warn("consulting needs a call that is up"),
            'b' if self.held_call.is_some() && self.call.is_none() => {
                self.act(Action::Phone(Command::Retrieve));
                self.say("taking the held call back…");
            }
            'b' if self.held_call.is_some() => {
                self.warn("end the consultation first (h), then b takes the caller back")
            }
            'b' => self.warn("no call is held"),
            'c' if phase.is_none() => self.open_prompt(PromptKind::Dial, ""),
            'c' => self.warn("already on a call"),
            'r' => {
                if self.api_ready() {
                    self.act(Action::Api(ApiRequest::AgentState {
                        state: RequestedState::Ready,
                        reason: None,
                    }));
                    self.say("asking to be ready…");
                }
            }
            'p' => {
                if self.api_ready() {
                    self.open_prompt(PromptKind::Pause, "");
                }
            }
            'l' => {
                if self.api_ready() {
                    self.act(Action::Api(ApiRequest::AgentState {
                        state: RequestedState::LoggedOut,
                        reason: None,
                    }));
                    self.say("asking to log out…");
                }
            }
            'd' => {
                let call = self.wrap_up.or_else(|| {
                    self.last
                        .as_ref()
                        .filter(|l| l.talk.is_some())
                        .and_then(|l| l.info.record)
                });
                match call {
                    _ if !self.api_ready() => {}
                    Some(call) => {
                        self.wrap_up = Some(call);
                        self.open_prompt(PromptKind::Disposition { call }, "");
                    }
                    None => self.warn("no answered call to give a disposition for"),
                }
            }
            's' => {
                self.sip_view = !self.sip_view;
                self.sip_scroll = 0;
                self.sip_shift = 0;
            }
            'q' => {
                if self.call.is_some() && !quit_asked {
                    self.quit_asked = true;
                    self.warn("a call is on: press q again to hang up and quit");
                } else {
                    self.act(Action::Quit);
                }
            }
            other => self.warn(format!("{other:?} does nothing here (keys: see below)")),
        }
    }

    fn prompt_key(&mut self, key: KeyEvent) {
        let Some(prompt) = self.prompt.as_mut() else {
            return;
        };
        match key.code {
            KeyCode::Char(c) if !c.is_control() && prompt.text.chars().count() < PROMPT_MAX => {
                prompt.text.push(c);
            }
            KeyCode::Backspace => {
                prompt.text.pop();
            }
            KeyCode::Esc => {
                let kind = prompt.kind;
                self.prompt = None;
                if let PromptKind::Disposition { call } = kind {
                    self.wrap_up = None;
                    self.say(format!(
                        "no disposition for call {call} (d gives it while it is the last call)"
                    ));
                } else {
                    self.say("cancelled");
                }
            }
            KeyCode::Enter => self.submit(),
            _ => {}
        }
    }

    fn submit(&mut self) {
        let Some(prompt) = self.prompt.clone() else {
            return;
        };
        let text = prompt.text.trim().to_owned();
        if text.is_empty() {
            return self.warn(match prompt.kind {
                PromptKind::Dial | PromptKind::Transfer | PromptKind::Consult => {
                    "type a number, or Esc"
                }
                PromptKind::Pause => "a pause needs a reason (or Esc)",
                PromptKind::Disposition { .. } => "type a code, or Esc to skip",
            });
        }
        self.prompt = None;
        match prompt.kind {
            PromptKind::Dial if self.call.is_none() => {
                self.act(Action::Phone(Command::Dial {
                    number: text.clone(),
                    rtp_port: 0,
                }));
                self.call = Some(CallView {
                    info: CallInfo {
                        remote: text.clone(),
                        ..CallInfo::default()
                    },
                    phase: Phase::Calling,
                    held: false,
                    keyed: String::new(),
                });
                self.say(format!("calling {text}…"));
            }
            PromptKind::Dial => self.warn("already on a call"),
            PromptKind::Transfer => {
                if matches!(self.call.as_ref().map(|c| c.phase), Some(Phase::Up { .. })) {
                    self.act(Action::Phone(Command::Transfer(text.clone())));
                    self.say(format!("transferring the call to {text}…"));
                } else {
                    self.warn("the call is no longer up");
                }
            }
            PromptKind::Consult => {
                let up = matches!(self.call.as_ref().map(|c| c.phase), Some(Phase::Up { .. }));
                if up && self.held_call.is_none() {
                    self.act(Action::Phone(Command::Consult {
                        number: text.clone(),
                        rtp_port: 0,
                    }));
                    self.held_call = self.call.take().map(|mut c| {
                        c.held = true;
                        c
                    });
                    self.call = Some(CallView {
                        info: CallInfo {
                            remote: text.clone(),
                            ..CallInfo::default()
                        },
                        phase: Phase::Calling,
                        held: false,
                        keyed: String::new(),
                    });
                    self.say(format!(
                        "caller on hold, calling {text}… (x hands the caller over)"
                    ));
                } else {
                    self.warn("the call is no longer up");
                }
            }
            PromptKind::Pause => {
                self.act(Action::Api(ApiRequest::AgentState {
                    state: RequestedState::Paused,
                    reason: Some(text.clone()),
                }));
                self.say(format!("asking for a pause ({text})…"));
            }
            PromptKind::Disposition { call } => {
                self.act(Action::Api(ApiRequest::Disposition {
                    call,
                    code: text.clone(),
                }));
                self.say(format!("saving disposition {text:?} for call {call}…"));
            }
        }
    }

    // ------------------------------------------------------------------ the phone

    /// What the phone reported.
    pub fn phone_event(&mut self, now: Instant, ev: &PhoneEvent) {
        self.changed = true;
        match ev {
            PhoneEvent::Registered { .. } => {
                if self.registration != Registration::Registered {
                    self.say("registered");
                }
                self.registration = Registration::Registered;
            }
            PhoneEvent::RegistrationFailed(why) => {
                self.registration = Registration::Failed(why.clone());
                self.warn(format!("registration {why} (tried again later)"));
            }
            PhoneEvent::Unregistered => self.registration = Registration::Unregistered,
            PhoneEvent::Incoming(info) => {
                if let Some(p) = self.prompt.take() {
                    if let PromptKind::Disposition { call } = p.kind {
                        self.wrap_up = None;
                        self.warn(format!(
                            "call {call} has no disposition yet: d gives it after this call"
                        ));
                    }
                }
                if info.queue.is_some() && self.agent == AgentState::Unknown {
                    // The server rings agents who are ready.
                    self.agent = AgentState::Ready;
                }
                self.call = Some(CallView {
                    info: info.clone(),
                    phase: Phase::Ringing,
                    held: false,
                    keyed: String::new(),
                });
                if self.notice.as_ref().is_none_or(|n| !n.error) {
                    self.say("a call is ringing: a answers, h declines");
                }
            }
            PhoneEvent::Ringing => {
                if let Some(c) = self.call.as_mut().filter(|c| c.phase == Phase::Calling) {
                    c.phase = Phase::Alerting;
                    self.say("ringing at the other end…");
                }
            }
            PhoneEvent::Answered(_) => {
                if let Some(c) = self.call.as_mut() {
                    c.phase = Phase::Up { since: now };
                    c.held = false;
                }
                self.say("connected");
            }
            PhoneEvent::MediaChanged(_) => {}
            PhoneEvent::Held(held) => {
                if let Some(c) = self.call.as_mut() {
                    c.held = *held;
                }
                self.say(if *held {
                    "the call is on hold"
                } else {
                    "the call is back from hold"
                });
            }
            PhoneEvent::Retrieved(_) => {
                if self.call.is_none() {
                    self.call = self.held_call.take();
                }
                self.say("the held call is back (o resumes it if it stays on hold)");
            }
            PhoneEvent::HeldCallEnded { reason } => {
                // The caller's call is over (handed over, or they hung up while held): it
                // ends as any answered call does, disposition included; a consultation
                // still up stays on screen.
                let consultation = self.call.take();
                self.call = self.held_call.take();
                self.ended(now, false, 0, reason);
                self.call = consultation;
            }
            PhoneEvent::Transfer(status) => match status {
                100..=199 => self.say(format!("transfer under way ({status})")),
                200..=299 => self.say(format!("transfer accepted ({status})")),
                _ => self.warn(format!("the transfer failed ({status})")),
            },
            PhoneEvent::Refused(why) => {
                if self
                    .call
                    .as_ref()
                    .is_some_and(|c| c.phase == Phase::Calling)
                {
                    // While a call is being placed only its INVITE can fail this way.
                    self.call = None;
                    self.warn(format!("the call was not placed: {why}"));
                } else {
                    self.warn(why.clone());
                }
            }
            PhoneEvent::Ended {
                by_us,
                status,
                reason,
            } => self.ended(now, *by_us, *status, reason),
        }
    }

    fn ended(&mut self, now: Instant, by_us: bool, status: u16, reason: &str) {
        if matches!(
            self.prompt.as_ref().map(|p| p.kind),
            Some(PromptKind::Transfer)
        ) {
            self.prompt = None;
        }
        let Some(call) = self.call.take() else {
            return;
        };
        if self.held_call.is_some() {
            // The consultation ended; the caller is still on hold.
            let how = if by_us {
                "you ended"
            } else {
                "the other side ended"
            };
            self.say(format!("{how} the consultation: b takes the caller back"));
            return;
        }
        let who = if by_us { "by you" } else { "by the other side" };
        let (talk, how) = match call.phase {
            Phase::Up { since } => {
                let talk = now.saturating_duration_since(since);
                (Some(talk), format!("ended {who} after {}", clock(talk)))
            }
            Phase::Ringing if by_us => (None, "declined".to_owned()),
            Phase::Ringing => (None, "the caller hung up before it was answered".into()),
            Phase::Calling | Phase::Alerting if status == 0 || (by_us && status == 487) => {
                (None, "given up".to_owned())
            }
            Phase::Calling | Phase::Alerting => (None, format!("failed: {status} {reason}")),
        };
        let record = call.info.record.filter(|_| call.info.incoming);
        let answered_here = talk.is_some() && call.info.incoming;
        self.last = Some(LastCall {
            info: call.info,
            talk,
            how: how.clone(),
        });
        match record {
            Some(id) if answered_here && self.settings.api => {
                self.wrap_up = Some(id);
                self.prompt = Some(Prompt {
                    kind: PromptKind::Disposition { call: id },
                    text: String::new(),
                });
                self.say(format!("call {how}"));
            }
            _ if how.starts_with("failed") => self.warn(format!("call {how}")),
            _ => self.say(format!("call {how}")),
        }
    }

    // ------------------------------------------------------------------ the API

    /// What came of an API request.
    pub fn api_reply(&mut self, reply: &ApiReply) {
        self.changed = true;
        match reply {
            ApiReply::LoggedIn { login, agent } => {
                self.web_login = Some(login.clone());
                self.agent_name = agent.clone();
                match agent {
                    Some(a) => self.say(format!("API: logged in as {login}, agent {a}")),
                    None => self.warn(format!(
                        "API: web login {login} is not an agent's: no agent state from here"
                    )),
                }
            }
            ApiReply::AgentState { state, reason } => {
                self.agent = match state {
                    RequestedState::Ready => AgentState::Ready,
                    RequestedState::Paused => {
                        AgentState::Paused(reason.clone().unwrap_or_default())
                    }
                    RequestedState::LoggedOut => AgentState::LoggedOut,
                };
                self.say(match &self.agent {
                    AgentState::Ready => "you are ready for calls".to_owned(),
                    AgentState::Paused(r) => format!("you are paused ({r})"),
                    _ => "you are logged out of the queues".to_owned(),
                });
            }
            ApiReply::State { state, reason } => {
                let now = match state.as_str() {
                    "ready" | "ringing" | "busy" => AgentState::Ready,
                    "not_ready" => AgentState::Paused(reason.clone().unwrap_or_default()),
                    "logged_out" => AgentState::LoggedOut,
                    "wrap_up" => AgentState::WrapUp,
                    _ => return,
                };
                self.changed = self.agent != now;
                self.agent = now;
            }
            ApiReply::Disposition { call, code } => {
                if self.wrap_up == Some(*call) {
                    self.wrap_up = None;
                }
                self.say(format!("disposition {code:?} saved for call {call}"));
            }
            ApiReply::Failed { request, error } => match request {
                ApiRequest::LogIn => self.warn(format!("API login failed: {error}")),
                ApiRequest::AgentState { .. } => self.warn(format!("state not changed: {error}")),
                // Reading the state again later is enough.
                ApiRequest::ReadState => {}
                ApiRequest::Disposition { .. } => {
                    self.warn(format!("disposition not saved: {error} (d tries again)"))
                }
            },
        }
    }

    // ------------------------------------------------------------------ the rest

    /// A SIP message the station traced.
    pub fn sip_message(&mut self, m: TracedMessage) {
        let n = lines_of(&m);
        if self.sip.len() == SIP_LOG {
            if let Some(old) = self.sip.pop_front() {
                self.sip_lines -= lines_of(&old);
            }
        }
        self.sip_lines += n;
        if self.sip_scroll > 0 {
            // Keep what is being read in place.
            self.sip_scroll = (self.sip_scroll + n).min(self.sip_lines);
        }
        self.sip.push_back(m);
        if self.sip_view {
            self.changed = true;
        }
    }

    /// The phone cannot go on (its SIP connection broke).
    pub fn fault(&mut self, why: &str) {
        if matches!(&self.registration, Registration::Failed(w) if w == why) {
            return;
        }
        self.changed = true;
        self.registration = Registration::Failed(why.to_owned());
        self.warn(why.to_owned());
    }
}

#[cfg(test)]
mod tests;
