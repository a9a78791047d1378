//! Blind transfer (RFC 3515 REFER, RFC 5589 call flows) from the agent's phone: the agent
//! refers the caller to a queue, a menu, or a registered user. Call control accepts (202),
//! reports the outcome to the agent's phone in a NOTIFY with a `message/sipfrag` body, lets
//! the agent go (the ACD counts the conversation as ended by the agent), and moves the caller
//! on, who hears the target queue's music (or ringback) meanwhile. A user who does not answer
//! or is busy sends the caller back to the agent who transferred them. A transfer to a queue
//! keeps the priority the call had.
//!
//! Phones without REFER do the same with the in-call transfer code (`[calls] transfer`,
//! `##` by default) followed by the number and `#`, sent as DTMF.
//!
//! Attended transfer (REFER with `Replaces`, RFC 3891) is in `attended.rs`; the far end of a
//! call out (a carrier's leg) may not transfer at all.

use super::*;

/// How long the agent has for each digit of the number after the transfer code.
const TRANSFER_DIGIT_TIMEOUT: Duration = Duration::from_secs(5);

impl CallControl {
    /// A REFER in one of call `id`'s dialogs.
    pub(super) fn on_refer(&mut self, now: Instant, id: u64, leg: Leg, tx: TxId, req: Request) {
        let Some(call) = self.calls.get(&id) else {
            return self.plain(tx, 481);
        };
        if leg == Leg::Agent && call.agent.as_ref().is_some_and(|a| a.outside) {
            // The far end of a call out (a carrier) transfers nothing of ours.
            warn!(parent: &call.span, "REFER from the far end of a call out refused");
            return self.plain(tx, 403);
        }
        let target = req
            .headers
            .get("Refer-To")
            .and_then(|r| NameAddr::parse(r).ok());
        if let Some(r) = target
            .as_ref()
            .and_then(|t| t.uri.headers.as_deref())
            .and_then(attended::replaces_of)
        {
            return self.on_attended_refer(now, id, leg, tx, r);
        }
        if leg != Leg::Agent {
            // Only the agent transfers; a customer's phone may not send the call elsewhere.
            return self.plain(tx, 403);
        }
        if call.phase != Phase::Connected || call.agent.is_none() || call.cb.is_some() {
            let mut h = Headers::default();
            h.push("Retry-After", "1");
            return self.respond(tx, 491, None, h, Bytes::new());
        }
        let Some(target) = target else {
            return self.plain(tx, 400);
        };
        let Some(number) = target.uri.user_unescaped() else {
            return self.plain(tx, 404);
        };
        match self.transfer_route(id, &number) {
            Err(status) => self.plain(tx, status),
            Ok(route) => {
                let mut h = Headers::default();
                h.push(
                    "Contact",
                    format!("<sip:switchboard@{}>", self.cfg.contact_host),
                );
                self.respond(tx, 202, None, h, Bytes::new());
                // The transfer is ours to carry out from here: the agent is told it
                // succeeded and is let go.
                self.refer_notify(id, "SIP/2.0 200 OK");
                self.blind_transfer(now, id, route);
            }
        }
    }

    /// Where a transfer of call `id` to `number` goes, or the status that refuses it.
    fn transfer_route(&self, id: u64, number: &str) -> Result<Route, u16> {
        let call = self.calls.get(&id).ok_or(481u16)?;
        let user = call
            .agent
            .as_ref()
            .map(|a| a.user.clone())
            .unwrap_or_default();
        let route = match self.route(number, &Caller::User(user.clone())) {
            // An outside number only as the transferring agent may dial it.
            Ok(
                r @ (Route::Queue(_) | Route::Extension(_) | Route::Menu(_) | Route::Outbound(_)),
            ) => r,
            Ok(_) => return Err(403),
            Err(status) => {
                info!(parent: &call.span, status, "transfer refused by the dial plan");
                return Err(status);
            }
        };
        if matches!(&route, Route::Extension(u) if *u == user) {
            // To the transferring agent themselves.
            return Err(403);
        }
        Ok(route)
    }

    /// Carry out a blind transfer of call `id` to `route`: the agent is let go, the caller
    /// moves on.
    pub(super) fn blind_transfer(&mut self, now: Instant, id: u64, route: Route) {
        let Some(call) = self.calls.get(&id) else {
            return;
        };
        let user = call
            .agent
            .as_ref()
            .map(|a| a.user.clone())
            .unwrap_or_default();
        let priority = match call.route {
            Route::Queue(q) => self.dir.queues[q].setup.priority,
            _ => 0,
        };
        info!(parent: &call.span, from = %user, to = %route_name(&route, &self.dir), "blind transfer");
        self.let_agent_go(now, id, true, "transferred");
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        call.transfer_back = Some(user);
        call.route = route.clone();
        match route {
            Route::Queue(q) => self.requeue_transferred(now, id, q, priority),
            Route::Menu(m) => {
                if let Some(call) = self.calls.get_mut(&id) {
                    call.phase = Phase::Waiting;
                }
                self.enter_menu(now, id, &m, 0);
            }
            Route::Extension(u) => self.transfer_to_user(now, id, u),
            Route::Outbound(_) => {
                let ringback = self.ringback.clone();
                if let Some(call) = self.calls.get_mut(&id) {
                    call.phase = Phase::Ringing;
                    call.dialing = None;
                }
                self.loop_to(id, Leg::Caller, Some(ringback));
                self.dial_out(now, id);
            }
            _ => {}
        }
    }

    /// An agent's key: the transfer code starts collecting a number, `#` (or a pause)
    /// transfers to it; `true` when the key was the transfer's.
    pub(super) fn transfer_key(&mut self, now: Instant, id: u64, digit: char) -> bool {
        let blind = self.cfg.features.transfer.clone();
        let attended = self.cfg.features.attended_transfer.clone();
        let Some(call) = self.calls.get_mut(&id) else {
            return false;
        };
        if (blind.is_empty() && attended.is_empty())
            || call.phase != Phase::Connected
            || call.cb.is_some()
            || call.agent.as_ref().is_none_or(|a| a.outside)
        {
            return false;
        }
        if let Some(digits) = call.transfer_digits.as_mut() {
            if digit != '#' {
                digits.push(digit);
                self.timers
                    .retain(|_, t| !matches!(t, Timer::TransferDigits(c) if *c == id));
                self.timer(now + TRANSFER_DIGIT_TIMEOUT, Timer::TransferDigits(id));
                return true;
            }
            self.transfer_digits_done(now, id);
            return true;
        }
        call.transfer_keys.push(digit);
        let longest = blind.chars().count().max(attended.chars().count());
        let excess = call.transfer_keys.chars().count().saturating_sub(longest);
        if excess > 0 {
            call.transfer_keys = call.transfer_keys.chars().skip(excess).collect();
        }
        let keyed = |code: &str| !code.is_empty() && call.transfer_keys.ends_with(code);
        let is_attended = keyed(&attended);
        if !is_attended && !keyed(&blind) {
            return false;
        }
        call.transfer_keys.clear();
        if is_attended && (call.supervisor.is_some() || call.supervisor_ring.is_some()) {
            // The code again during a consultation: back to the caller.
            return self.consult_abort(id);
        }
        call.transfer_digits = Some(String::new());
        call.transfer_attended = is_attended;
        info!(parent: &call.span, attended = is_attended, "transfer code: collecting the number");
        let beep = self.beep.clone();
        self.out.push_back(media_cmd(
            id,
            SessionCommand::Play {
                leg: Leg::Agent,
                prompts: vec![beep],
                then: None,
            },
        ));
        self.timer(now + TRANSFER_DIGIT_TIMEOUT, Timer::TransferDigits(id));
        true
    }

    /// The number after the transfer code is complete (`#`, or a pause): transfer, or tell
    /// the agent it cannot be done (a double beep; the call goes on).
    pub(super) fn transfer_digits_done(&mut self, now: Instant, id: u64) {
        self.timers
            .retain(|_, t| !matches!(t, Timer::TransferDigits(c) if *c == id));
        let Some((number, attended)) = self
            .calls
            .get_mut(&id)
            .and_then(|c| Some((c.transfer_digits.take()?, c.transfer_attended)))
        else {
            return;
        };
        let refused = if number.is_empty() {
            true
        } else {
            match self.transfer_route(id, &number) {
                Ok(Route::Extension(user)) if attended => !self.consult_start(id, user),
                Ok(_) if attended => true,
                Ok(route) => {
                    self.blind_transfer(now, id, route);
                    false
                }
                Err(_) => true,
            }
        };
        if refused {
            let tone = self.double_beep.clone();
            self.out.push_back(media_cmd(
                id,
                SessionCommand::Play {
                    leg: Leg::Agent,
                    prompts: vec![tone],
                    then: None,
                },
            ));
        }
    }

    /// The NOTIFY (in the agent's dialog) that reports the transfer's outcome.
    fn refer_notify(&mut self, id: u64, sipfrag: &str) {
        let Some(a) = self.calls.get_mut(&id).and_then(|c| c.agent.as_mut()) else {
            return;
        };
        let contact = contact_for(&self.cfg, &a.dialog.flow, "switchboard");
        let mut req = a.dialog.request(Method::Notify);
        req.headers.push("Contact", contact);
        req.headers.push("Event", "refer");
        req.headers
            .push("Subscription-State", "terminated;reason=noresource");
        req.headers
            .push("Content-Type", "message/sipfrag;version=2.0");
        req.body = Bytes::from(format!("{sipfrag}\r\n"));
        let flow = a.dialog.flow;
        self.send(flow, req, Role::Fire);
    }

    /// A queue's overflow to a dial string (`overflow = "number:…"`): the call goes where the
    /// dial plan sends that number (a queue, a menu, a user), as a blind transfer would;
    /// `false` when the number leads nowhere (the call then ends as overflowed).
    pub(super) fn overflow_to_number(&mut self, now: Instant, id: u64, number: &str) -> bool {
        let Some(call) = self.calls.get(&id) else {
            return false;
        };
        let Route::Queue(from) = call.route else {
            return false;
        };
        let route = match self.route(number, &Caller::User(String::new())) {
            Ok(r @ (Route::Queue(_) | Route::Extension(_) | Route::Menu(_) | Route::Closed(_))) => {
                r
            }
            _ => {
                warn!(parent: &call.span, number, "a queue overflows to a number that leads nowhere");
                return false;
            }
        };
        let priority = self.dir.queues[from].setup.priority;
        let from_name = self.dir.queues[from].setup.acd.name.clone();
        info!(parent: &call.span, from = %from_name, to = %route_name(&route, &self.dir), "overflow to a number");
        let Some(call) = self.calls.get_mut(&id) else {
            return false;
        };
        call.history.overflowed_from.get_or_insert(from_name);
        call.route = route.clone();
        call.phase = Phase::Waiting;
        match route {
            Route::Queue(q) => self.requeue_transferred(now, id, q, priority),
            Route::Menu(m) => self.enter_menu(now, id, &m, 0),
            Route::Extension(u) => self.transfer_to_user(now, id, u),
            Route::Closed(q) => self.closed_announcement(id, q),
            _ => {}
        }
        true
    }

    /// Into queue `q` with the priority the call had.
    fn requeue_transferred(&mut self, now: Instant, id: u64, q: usize, priority: u8) {
        let entry = &self.dir.queues[q];
        let setup = &entry.setup;
        let queue = entry.id;
        let priority = priority.max(setup.priority);
        let music = setup.music.clone();
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        call.phase = Phase::Waiting;
        call.in_acd = true;
        self.loop_to(id, Leg::Caller, music);
        self.acd(AcdCommand::Arrive(CallArrival {
            call: acd::CallId(id),
            queue,
            priority,
            extra_skills: Vec::new(),
        }));
        let _ = now;
    }

    /// Ring user `u` for the transferred caller, who hears ringback.
    fn transfer_to_user(&mut self, now: Instant, id: u64, u: String) {
        let ringback = self.ringback.clone();
        if let Some(call) = self.calls.get_mut(&id) {
            call.phase = Phase::Ringing;
        }
        self.loop_to(id, Leg::Caller, Some(ringback));
        self.mark_busy(id, &u);
        self.ring_extension(now, id, u);
    }

    /// A transferred call whose target did not answer goes back to the agent who transferred
    /// it (`true`); `false` when there is nobody to go back to.
    pub(super) fn transfer_failed(&mut self, now: Instant, id: u64) -> bool {
        let Some(call) = self.calls.get_mut(&id) else {
            return false;
        };
        let Some(back) = call.transfer_back.take() else {
            return false;
        };
        info!(parent: &call.span, to = %back, "transfer not answered: back to the agent");
        if let Route::Extension(u) = &call.route {
            let u = u.clone();
            call.busy_users.retain(|x| *x != u);
            self.release_busy(std::slice::from_ref(&u));
        }
        if let Some(mut call) = self.calls.remove(&id) {
            self.cancel_attempts(now, &mut call);
            self.calls.insert(id, call);
        }
        self.timers
            .retain(|_, t| !matches!(t, Timer::RingTimeout(c) if *c == id));
        if let Some(call) = self.calls.get_mut(&id) {
            call.route = Route::Extension(back.clone());
        }
        self.transfer_to_user(now, id, back);
        true
    }
}
