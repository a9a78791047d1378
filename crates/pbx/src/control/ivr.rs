//! IVR menus: a prompt, the caller's keys (RFC 4733 events from the relay, or SIP INFO),
//! digits collected into a variable of the call, and the step a menu leads to: a queue (under
//! its own hours), an extension, another menu, an announcement, or hanging up.
//!
//! A menu's wait for a key is a timer armed for the prompt's length plus the menu's timeout,
//! so virtual time decides alone; a key cuts the prompt short. Every move of a call in a menu
//! starts a new round: a timer of an earlier round that fires anyway is ignored.

use std::sync::Arc;

use super::*;
use crate::config::{Menu, MenuKind, Step};

/// How many steps a call may take without a key from the caller (a closed menu sending it
/// to another closed menu…): a loop in the config ends the call instead of spinning.
const MAX_HOPS: u32 = 8;

/// Pause before a menu prompt, so its first syllable is not lost while the caller's phone
/// opens its audio path.
const LEAD_IN: Duration = Duration::from_millis(200);

/// Where a call is in a menu.
#[derive(Debug)]
pub(super) struct MenuState {
    menu: Arc<Menu>,
    /// Plays of the prompt so far.
    tries: u32,
    /// Digits collected in this round (collecting menus).
    digits: String,
    /// Bumped whenever the call moves on in the menu.
    pub(super) round: u64,
    /// The prompt may still be playing.
    playing: bool,
    /// Playing the announcement the call ends with: keys do nothing.
    ending: bool,
}

/// The key a SIP INFO carries: `application/dtmf-relay` (`Signal=5`) or `application/dtmf`
/// (`5`); `None` for anything else.
pub(super) fn info_digit(req: &Request) -> Option<char> {
    let kind = req
        .headers
        .get("Content-Type")
        .unwrap_or_default()
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    let body = std::str::from_utf8(&req.body).ok()?;
    let signal = match kind.as_str() {
        "application/dtmf-relay" => body.lines().find_map(|l| {
            let (k, v) = l.split_once('=')?;
            k.trim().eq_ignore_ascii_case("signal").then(|| v.trim())
        })?,
        "application/dtmf" => body.trim(),
        _ => return None,
    };
    match signal {
        // Some phones send the RFC 4733 event number for * and #.
        "10" => Some('*'),
        "11" => Some('#'),
        s => {
            let mut chars = s.chars();
            let c = chars.next()?.to_ascii_uppercase();
            (chars.next().is_none() && matches!(c, '0'..='9' | '*' | '#' | 'A'..='D')).then_some(c)
        }
    }
}

impl CallControl {
    /// A menu call whose media session is open: answer, and start the menu (a delayed offer
    /// starts it when the ACK brings the caller's answer).
    pub(super) fn start_menu(&mut self, now: Instant, id: u64, name: String) {
        self.answer_caller(id);
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        call.phase = Phase::Waiting;
        if call.caller.late {
            call.pending_menu = Some(name);
            return;
        }
        self.enter_menu(now, id, &name, 0);
    }

    /// Call `id` enters menu `name` (or, outside its hours, goes where they say).
    pub(super) fn enter_menu(&mut self, now: Instant, id: u64, name: &str, hops: u32) {
        let menu = self.cfg.menus.iter().find(|m| m.name == name).cloned();
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        let Some(menu) = menu else {
            warn!(parent: &call.span, menu = name, "no such menu (removed by a reload?)");
            return self.end_call(now, id, EndReason::Failed, None);
        };
        self.timers
            .retain(|_, t| !matches!(t, Timer::Menu(c, _) | Timer::MenuEnd(c, _) if *c == id));
        let round = call.ivr.as_ref().map_or(0, |m| m.round) + 1;
        call.route = Route::Menu(name.to_owned());
        let closed = menu
            .hours
            .as_ref()
            .filter(|h| !h.schedule.is_open(self.wall))
            .map(|h| h.closed.clone());
        call.ivr = Some(MenuState {
            menu,
            tries: 0,
            digits: String::new(),
            round,
            playing: false,
            ending: false,
        });
        if let Some(step) = closed {
            info!(parent: &call.span, menu = name, "menu closed");
            return self.menu_step(now, id, step, hops + 1);
        }
        info!(parent: &call.span, menu = name, "menu");
        self.play_menu(now, id, false);
    }

    /// Play the menu's prompt (after its invalid-input prompt, if `invalid`) and wait for a
    /// key.
    fn play_menu(&mut self, now: Instant, id: u64, invalid: bool) {
        let Some(m) = self.calls.get_mut(&id).and_then(|c| c.ivr.as_mut()) else {
            return;
        };
        m.tries += 1;
        m.digits.clear();
        m.round += 1;
        m.playing = true;
        let mut prompts = vec![Prompt::silence(LEAD_IN)];
        if invalid {
            prompts.extend(m.menu.invalid.iter().cloned());
        }
        prompts.push(m.menu.prompt.clone());
        let length: Duration = prompts.iter().map(Prompt::duration).sum();
        let (round, timeout) = (m.round, m.menu.timeout);
        self.cancel_timers(|t| matches!(t, Timer::Menu(c, _) if *c == id));
        self.out.push_back(media_cmd(
            id,
            SessionCommand::Play {
                leg: Leg::Caller,
                prompts,
                then: None,
            },
        ));
        self.timer(now + length + timeout, Timer::Menu(id, round));
    }

    /// A key from the caller (RFC 4733 or SIP INFO).
    pub(super) fn caller_key(&mut self, now: Instant, id: u64, digit: char) {
        if self.voicemail_key(now, id, digit) || self.callback_key(now, id, digit) {
            return;
        }
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        let Some(m) = call.ivr.as_ref() else {
            return;
        };
        if m.ending {
            return;
        }
        debug!(parent: &call.span, %digit, menu = %m.menu.name, "menu key");
        let Some(m) = call.ivr.as_mut() else {
            return;
        };
        let stop = std::mem::take(&mut m.playing);
        m.round += 1;
        let round = m.round;
        let menu = m.menu.clone();
        self.cancel_timers(|t| matches!(t, Timer::Menu(c, _) if *c == id));
        if stop {
            self.out
                .push_back(media_cmd(id, SessionCommand::Stop(Leg::Caller)));
        }
        match &menu.kind {
            MenuKind::Choice(choices) => match choices.get(&digit.to_ascii_uppercase()) {
                Some(choice) => {
                    for (k, v) in &choice.set {
                        self.set_variable(id, k, v);
                    }
                    self.menu_step(now, id, choice.step.clone(), 0);
                }
                None => self.retry_or_fail(now, id, true),
            },
            MenuKind::Score { max, next } => match digit.to_digit(10) {
                Some(d @ 1..=9) if d <= u32::from(*max) => {
                    if let Some(call) = self.calls.get_mut(&id) {
                        info!(parent: &call.span, score = d, "survey answered");
                        call.satisfaction = Some(d as u8);
                    }
                    self.menu_step(now, id, next.clone(), 0);
                }
                _ => self.retry_or_fail(now, id, true),
            },
            MenuKind::Collect {
                max_digits,
                end_key,
                ..
            } => {
                if digit == *end_key {
                    return self.collected(now, id);
                }
                let Some(m) = self.calls.get_mut(&id).and_then(|c| c.ivr.as_mut()) else {
                    return;
                };
                m.digits.push(digit);
                if m.digits.len() >= *max_digits {
                    return self.collected(now, id);
                }
                self.timer(now + menu.timeout, Timer::Menu(id, round));
            }
        }
    }

    /// The wait for a key (or the next digit) of round `round` is over.
    pub(super) fn menu_timeout(&mut self, now: Instant, id: u64, round: u64) {
        let Some(m) = self.calls.get_mut(&id).and_then(|c| c.ivr.as_mut()) else {
            return;
        };
        if m.round != round || m.ending {
            return;
        }
        m.playing = false;
        match (&m.menu.kind, m.digits.is_empty()) {
            (MenuKind::Collect { .. }, false) => self.collected(now, id),
            _ => self.retry_or_fail(now, id, false),
        }
    }

    /// No valid answer this time: play the menu again, or take its `on_fail` step after its
    /// last try.
    fn retry_or_fail(&mut self, now: Instant, id: u64, invalid: bool) {
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        let Some(m) = call.ivr.as_ref() else {
            return;
        };
        if m.tries >= m.menu.tries {
            info!(parent: &call.span, menu = %m.menu.name, tries = m.tries, "no valid answer");
            let step = m.menu.on_fail.clone();
            return self.menu_step(now, id, step, 1);
        }
        self.play_menu(now, id, invalid);
    }

    /// A collecting menu has its digits (ended by its end key, its length, or a pause).
    fn collected(&mut self, now: Instant, id: u64) {
        let Some(m) = self.calls.get_mut(&id).and_then(|c| c.ivr.as_mut()) else {
            return;
        };
        let MenuKind::Collect {
            variable,
            min_digits,
            next,
            ..
        } = &m.menu.kind
        else {
            return;
        };
        if m.digits.len() < *min_digits {
            return self.retry_or_fail(now, id, true);
        }
        let (variable, next) = (variable.clone(), next.clone());
        let digits = std::mem::take(&mut m.digits);
        self.set_variable(id, &variable, &digits);
        self.menu_step(now, id, next, 0);
    }

    /// Set a variable of the call (a later value replaces an earlier one).
    fn set_variable(&mut self, id: u64, name: &str, value: &str) {
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        debug!(parent: &call.span, variable = name, value, "variable set");
        match call.variables.iter_mut().find(|(k, _)| k == name) {
            Some(slot) => slot.1 = value.to_owned(),
            None => call.variables.push((name.to_owned(), value.to_owned())),
        }
    }

    /// Where a menu sends call `id`; `hops` counts steps taken without a key.
    fn menu_step(&mut self, now: Instant, id: u64, step: Step, hops: u32) {
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        if hops > MAX_HOPS {
            warn!(parent: &call.span, "menus send the call round in a loop: hanging up");
            return self.end_call(now, id, EndReason::MenuDone, None);
        }
        match step {
            Step::Menu(name) => self.enter_menu(now, id, &name, hops),
            Step::Repeat => {
                if let Some(m) = call.ivr.as_mut() {
                    m.tries = 0;
                }
                self.play_menu(now, id, false);
            }
            Step::HangUp => self.end_call(now, id, EndReason::MenuDone, None),
            Step::Voicemail(mailbox) => {
                self.leave_menu(id, Route::Voicemail(mailbox.clone()));
                self.deposit(now, id, &mailbox);
            }
            Step::Callback(name) => {
                // Into the queue as for a queue step, then the callback is asked for.
                self.menu_step(now, id, Step::Queue(name), hops);
                if !self.ask_callback(now, id) {
                    if let Some(c) = self.calls.get(&id) {
                        info!(parent: &c.span, "no callback for this caller: they wait in the queue");
                    }
                }
            }
            Step::Announce(prompt) => {
                let Some(m) = call.ivr.as_mut() else {
                    return self.end_call(now, id, EndReason::MenuDone, None);
                };
                m.round += 1;
                m.ending = true;
                m.playing = true;
                let round = m.round;
                let prompts = vec![Prompt::silence(LEAD_IN), prompt];
                let length: Duration = prompts.iter().map(Prompt::duration).sum();
                self.out.push_back(media_cmd(
                    id,
                    SessionCommand::Play {
                        leg: Leg::Caller,
                        prompts,
                        then: None,
                    },
                ));
                // A little after the last packet, so the caller hears all of it.
                self.timer(
                    now + length + Duration::from_millis(500),
                    Timer::MenuEnd(id, round),
                );
            }
            Step::Queue(name) => {
                let Some(q) = self
                    .dir
                    .queues
                    .iter()
                    .position(|e| !e.removed && e.setup.acd.name == name)
                else {
                    warn!(parent: &call.span, queue = %name, "a menu names a queue that does not exist");
                    return self.end_call(now, id, EndReason::Failed, None);
                };
                let span = call.span.clone();
                match self.open_queue(q) {
                    Ok(Route::Queue(q)) => {
                        self.leave_menu(id, Route::Queue(q));
                        self.enter_queue(now, id, q);
                    }
                    Ok(Route::Closed(q)) => {
                        self.leave_menu(id, Route::Closed(q));
                        self.closed_announcement(id, q);
                    }
                    Ok(Route::Voicemail(mailbox)) => {
                        self.leave_menu(id, Route::Voicemail(mailbox.clone()));
                        self.deposit(now, id, &mailbox);
                    }
                    _ => {
                        info!(parent: &span, queue = %name, "queue closed");
                        self.end_call(now, id, EndReason::Closed, None);
                    }
                }
            }
            Step::Extension(user) => {
                let span = call.span.clone();
                if !self.has_phone(&user) {
                    info!(parent: &span, "extension not registered");
                    return self.end_call(now, id, EndReason::Unreachable, None);
                }
                self.leave_menu(id, Route::Extension(user.clone()));
                self.mark_busy(id, &user);
                let ringback = self.ringback.clone();
                self.loop_to(id, Leg::Caller, Some(ringback));
                if let Some(call) = self.calls.get_mut(&id) {
                    call.phase = Phase::Ringing;
                }
                self.ring_extension(now, id, user);
            }
        }
    }

    /// The agent hung up on call `id`: if its queue has a survey, the caller stays on the line
    /// for it (the agent is free at once) and `true` is returned; otherwise the call ends as
    /// usual.
    pub(super) fn start_survey(&mut self, now: Instant, id: u64) -> bool {
        let Some(call) = self.calls.get_mut(&id) else {
            return false;
        };
        let Route::Queue(q) = call.route else {
            return false;
        };
        let Some(survey) = self.dir.queues[q].setup.survey.clone() else {
            return false;
        };
        if call.phase != Phase::Connected
            || !call.caller.answered
            || !self.cfg.menus.iter().any(|m| m.name == survey)
        {
            return false;
        }
        info!(parent: &call.span, menu = %survey, "agent hung up: survey");
        call.talk_ended = Some(now);
        call.survey_of = Some(q);
        self.let_agent_go(now, id, false, "agent hung up");
        self.enter_menu(now, id, &survey, 0);
        true
    }

    /// The call leaves its menu for `route`.
    fn leave_menu(&mut self, id: u64, route: Route) {
        self.cancel_timers(|t| matches!(t, Timer::Menu(c, _) | Timer::MenuEnd(c, _) if *c == id));
        if let Some(call) = self.calls.get_mut(&id) {
            call.ivr = None;
            call.route = route;
        }
    }
}
