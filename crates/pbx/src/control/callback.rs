//! Callback: a caller waiting in a queue presses the queue's callback key, hears a
//! confirmation and is hung up on, but the call stays in the ACD with its place. When the
//! ACD offers it, the agent's phone rings first; once the agent answers (and hears ringback),
//! the customer is dialled through the queue's trunk and the two are bridged. A customer who
//! does not answer or is busy is tried again after the queue's `retry_after`, up to its
//! `retries`, then the call ends as a failed callback.
//!
//! Pending callbacks are handed to the store ([`CallbackRequest::Save`]) and come back after
//! a restart ([`CallControl::load_callbacks`]), in the order the callers first arrived, ahead
//! of every new call.

use super::*;
use crate::config::{CallbackSetup, PendingCallback};

/// How soon a callback that left its queue without an agent (maximum wait, empty queue) is
/// queued again.
const REQUEUE_AFTER: Duration = Duration::from_secs(30);

/// What call control asks the store to keep about callbacks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallbackRequest {
    /// Keep (or update) a pending callback.
    Save(PendingCallback),
    /// The callback is over (connected or given up): forget it.
    Done {
        /// Its key.
        key: String,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum CbStep {
    /// The caller hears the confirmation.
    Confirming,
    /// In the queue, waiting for an agent.
    Waiting,
    /// The agent answered; the customer's phone rings.
    Dialing,
    /// Waiting to try the customer again (or to rejoin the queue).
    Retrying,
    /// Agent and customer are connected.
    Connected,
}

/// Whether a callback's agent has answered (the customer is being dialled).
pub(super) fn agent_answered(call: &Call) -> bool {
    call.cb
        .as_ref()
        .is_some_and(|cb| cb.step == CbStep::Dialing)
}

/// A call that became a callback.
#[derive(Debug)]
pub(super) struct CbState {
    setup: CallbackSetup,
    pub(super) step: CbStep,
    number: String,
    pub(super) key: String,
    attempts: u32,
    /// Our INVITE to the customer, while it rings.
    dialing: Option<(TxId, Request, Flow)>,
    round: u64,
}

impl CallControl {
    fn cb_timer(&mut self, now: Instant, id: u64, after: Duration) {
        let Some(cb) = self.calls.get_mut(&id).and_then(|c| c.cb.as_mut()) else {
            return;
        };
        cb.round += 1;
        let round = cb.round;
        self.timers
            .retain(|_, t| !matches!(t, Timer::Callback(c, _) if *c == id));
        self.timer(now + after, Timer::Callback(id, round));
    }

    fn pending(&self, id: u64) -> Option<PendingCallback> {
        let call = self.calls.get(&id)?;
        let cb = call.cb.as_ref()?;
        let Route::Queue(q) = call.route else {
            return None;
        };
        let from = call
            .caller
            .invite
            .headers
            .get("From")
            .and_then(|f| NameAddr::parse(f).ok());
        Some(PendingCallback {
            key: cb.key.clone(),
            queue: self.dir.queues[q].setup.acd.name.clone(),
            number: cb.number.clone(),
            name: from.and_then(|f| f.display),
            dialed: request_user(&call.caller.invite).unwrap_or_default(),
            source: match &call.identity {
                Caller::Trunk(t) => format!("trunk:{t}"),
                Caller::User(u) => format!("user:{u}"),
                Caller::Anonymous => "anonymous".to_owned(),
            },
            arrived: call.history.arrived,
            queued: call.history.queued.unwrap_or(call.history.arrived),
            attempts: cb.attempts,
        })
    }

    fn save_callback(&mut self, id: u64) {
        if let Some(p) = self.pending(id) {
            self.out
                .push_back(Output::Callback(CallbackRequest::Save(p)));
        }
    }

    /// A waiting caller's key: the callback key of their queue asks for a callback.
    pub(super) fn callback_key(&mut self, now: Instant, id: u64, digit: char) -> bool {
        let Some(call) = self.calls.get(&id) else {
            return false;
        };
        let Route::Queue(q) = call.route else {
            return false;
        };
        let Some(setup) = self.dir.queues[q].setup.callback.clone() else {
            return false;
        };
        if digit != setup.key {
            return false;
        }
        self.ask_callback(now, id)
    }

    /// Call `id`, waiting in a queue with a callback, asks to be called back; `false` when it
    /// cannot (not waiting, asked already).
    pub(super) fn ask_callback(&mut self, now: Instant, id: u64) -> bool {
        let Some(call) = self.calls.get(&id) else {
            return false;
        };
        let Route::Queue(q) = call.route else {
            return false;
        };
        let Some(setup) = self.dir.queues[q].setup.callback.clone() else {
            return false;
        };
        if call.cb.is_some() || !call.in_acd || call.phase != Phase::Waiting {
            return false;
        }
        let number = call
            .caller
            .invite
            .headers
            .get("From")
            .and_then(user_of)
            .unwrap_or_default();
        let dialable = !number.is_empty()
            && number
                .trim_start_matches('+')
                .bytes()
                .all(|b| b.is_ascii_digit());
        if !dialable {
            info!(parent: &call.span, "callback asked for by a caller without a number to call");
            return true;
        }
        info!(parent: &call.span, queue = %self.dir.queues[q].setup.acd.name, "callback asked for");
        let key = call
            .caller
            .invite
            .headers
            .get("Call-ID")
            .unwrap_or_default()
            .to_owned();
        let confirm = setup.confirm.clone();
        if let Some(call) = self.calls.get_mut(&id) {
            call.cb = Some(CbState {
                setup,
                step: CbStep::Confirming,
                number,
                key,
                attempts: 0,
                dialing: None,
                round: 0,
            });
        }
        // No position announcement over the confirmation (a Play replaces what plays).
        self.timers
            .retain(|_, t| !matches!(t, Timer::Announce(c) if *c == id));
        let prompts = vec![Prompt::silence(Duration::from_millis(200)), confirm];
        let wait =
            prompts.iter().map(Prompt::duration).sum::<Duration>() + Duration::from_millis(300);
        self.out.push_back(media_cmd(
            id,
            SessionCommand::Play {
                leg: Leg::Caller,
                prompts,
                then: None,
            },
        ));
        self.save_callback(id);
        self.cb_timer(now, id, wait);
        true
    }

    /// Cancel a callback's INVITE to its customer, if one rings (the call is ending).
    pub(super) fn cancel_customer(&mut self, now: Instant, call: &mut Call) {
        if let Some((tx, invite, flow)) = call.cb.as_mut().and_then(|cb| cb.dialing.take()) {
            self.sip(SipCommand::Cancel { tx });
            self.orphan(now, tx, invite, flow);
        }
    }

    /// An agent answered while the caller still hears the callback's confirmation: the
    /// caller is on the line, so there is nothing to call back; the two are connected as
    /// usual.
    pub(super) fn callback_overtaken(&mut self, id: u64) {
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        if !call
            .cb
            .as_ref()
            .is_some_and(|cb| cb.step == CbStep::Confirming)
        {
            return;
        }
        let Some(cb) = call.cb.take() else {
            return;
        };
        info!(parent: &call.span, "an agent answered during the confirmation: connected at once");
        self.timers
            .retain(|_, t| !matches!(t, Timer::Callback(c, _) if *c == id));
        self.out
            .push_back(Output::Callback(CallbackRequest::Done { key: cb.key }));
    }

    /// The caller's leg of a callback ends (our BYE after the confirmation, or theirs);
    /// the call waits on without it.
    pub(super) fn drop_caller_leg(&mut self, id: u64, send_bye: bool) {
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        let dialog = call.caller.dialog.take();
        let tx = call.caller.invite_tx;
        if let Some(mut d) = dialog {
            self.by_dialog
                .remove(&(d.call_id.clone(), d.local_tag.clone()));
            if send_bye {
                let bye = d.request(Method::Bye);
                let flow = d.flow;
                self.send(flow, bye, Role::Fire);
            }
        }
        self.by_invite.remove(&tx);
        // The caller's own phone (a user calling in) is free again.
        let busy = self
            .calls
            .get_mut(&id)
            .map(|c| std::mem::take(&mut c.busy_users))
            .unwrap_or_default();
        self.release_busy(&busy);
        self.timers
            .retain(|_, t| !matches!(t, Timer::Announce(c) if *c == id));
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        let (law, pt, te) = (
            call.caller.media.law,
            call.caller.media.pt,
            call.caller.media.telephone_event,
        );
        if let Some(cb) = call.cb.as_mut() {
            if cb.step == CbStep::Confirming {
                cb.step = CbStep::Waiting;
            }
        }
        self.out
            .push_back(media_cmd(id, SessionCommand::Stop(Leg::Caller)));
        // Nobody sends on the caller's leg until the customer answers.
        self.out.push_back(media_cmd(
            id,
            SessionCommand::Remote {
                leg: Leg::Caller,
                rtp: None,
                law,
                pt,
                telephone_event: te,
                sends: false,
                host: None,
            },
        ));
    }

    /// The caller hung up: a callback goes on without them (`true`).
    pub(super) fn callback_keeps(&mut self, id: u64) -> bool {
        let keeps = self
            .calls
            .get(&id)
            .and_then(|c| c.cb.as_ref())
            .is_some_and(|cb| matches!(cb.step, CbStep::Confirming | CbStep::Waiting));
        if keeps {
            if let Some(c) = self.calls.get(&id) {
                info!(parent: &c.span, "the caller hung up; the callback waits");
            }
            self.drop_caller_leg(id, false);
        }
        keeps
    }

    /// The agent answered a callback: ringback for them, and the customer is dialled.
    pub(super) fn dial_customer(&mut self, now: Instant, id: u64) {
        let ringback = self.ringback.clone();
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        let Some(ports) = call.ports else {
            return;
        };
        let span = call.span.clone();
        let Some(cb) = call.cb.as_mut() else {
            return;
        };
        cb.step = CbStep::Dialing;
        cb.attempts += 1;
        let (number, via, caller_id) =
            (cb.number.clone(), cb.setup.via, cb.setup.caller_id.clone());
        let ring_timeout = cb.setup.ring_timeout;
        let caller_id = if caller_id.is_empty() {
            request_user(&call.caller.invite).unwrap_or_else(|| "switchboard".into())
        } else {
            caller_id
        };
        let attempt = cb.attempts;
        info!(parent: &span, attempt, "callback: dialling the customer");
        let local = LocalMedia {
            session_id: id,
            version: call.caller.sdp_version + 1,
            addr: ports.addr,
            port: ports.caller,
            law: call.caller.media.law,
            pt: call.caller.media.pt,
            telephone_event: call.caller.media.telephone_event,
            direction: Direction::SendRecv,
            webrtc: None,
            sdes: None,
        };
        let flow = Flow {
            transport: Transport::Udp,
            remote: via,
            conn: None,
        };
        self.loop_to(id, Leg::Agent, Some(ringback));
        let from = format!("<sip:{caller_id}@{}>", self.host);
        let invite = self.new_invite(
            &from,
            format!("<sip:{number}@{via}>"),
            format!("sip:{number}@{via}"),
            &flow,
            &caller_id,
            Bytes::from(local.offer()),
        );
        let tx = self.send(flow, invite.clone(), Role::Customer(id));
        if let Some(cb) = self.calls.get_mut(&id).and_then(|c| c.cb.as_mut()) {
            cb.dialing = Some((tx, invite, flow));
        }
        self.cb_timer(now, id, ring_timeout);
    }

    /// An answer to our INVITE to a callback's customer.
    pub(super) fn customer_response(&mut self, now: Instant, id: u64, tx: TxId, resp: Response) {
        let status = resp.status;
        if status < 200 {
            return;
        }
        self.by_client.remove(&tx);
        let dialing = self
            .calls
            .get_mut(&id)
            .and_then(|c| c.cb.as_mut())
            .filter(|cb| cb.step == CbStep::Dialing)
            .and_then(|cb| cb.dialing.take().filter(|d| d.0 == tx));
        let Some((_, invite, flow)) = dialing else {
            // Not the attempt in progress (a late answer to one we gave up on goes to the
            // orphan handling).
            return;
        };
        if status >= 300 {
            return self.customer_failed(now, id, status);
        }
        let Ok(mut dialog) = Dialog::uac(&invite, &resp, flow) else {
            return self.customer_failed(now, id, 502);
        };
        let ack = dialog.ack(cseq_num(&invite.headers));
        self.sip(SipCommand::SendStateless { flow, request: ack });
        let answer = SessionDescription::parse(&resp.body).and_then(|sd| negotiate(&sd));
        let Ok(n) = answer else {
            let bye = dialog.request(Method::Bye);
            self.send(flow, bye, Role::Fire);
            return self.customer_failed(now, id, 488);
        };
        self.by_dialog.insert(
            (dialog.call_id.clone(), dialog.local_tag.clone()),
            (id, Leg::Caller),
        );
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        call.caller.dialog = Some(dialog);
        call.caller.media = n;
        if let Some(cb) = call.cb.as_mut() {
            cb.step = CbStep::Connected;
        }
        info!(parent: &call.span, "callback: the customer answered");
        call.connected_at = Some(now);
        call.history.answered = Some(self.wall);
        if let Some(a) = call.history.agent.clone() {
            call.history.begin_segment(&a, self.wall);
        }
        call.phase = Phase::Connected;
        self.timers
            .retain(|_, t| !matches!(t, Timer::Callback(c, _) if *c == id));
        self.out.push_back(media_cmd(
            id,
            remote_of(Leg::Caller, &n, Some(flow.remote.ip())),
        ));
        self.out
            .push_back(media_cmd(id, SessionCommand::Stop(Leg::Agent)));
        self.out
            .push_back(media_cmd(id, SessionCommand::Bridge(true)));
        if let Some(key) = self
            .calls
            .get(&id)
            .and_then(|c| c.cb.as_ref())
            .map(|cb| cb.key.clone())
        {
            self.out
                .push_back(Output::Callback(CallbackRequest::Done { key }));
        }
        let agent = self
            .calls
            .get(&id)
            .and_then(|c| c.history.agent.clone())
            .unwrap_or_default();
        self.maybe_record(now, id, &agent);
    }

    /// The customer did not answer, was busy, or could not be reached: the agent is let go;
    /// another try later, or the callback has failed.
    fn customer_failed(&mut self, now: Instant, id: u64, status: u16) {
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        let span = call.span.clone();
        let Some(cb) = call.cb.as_mut() else {
            return;
        };
        info!(parent: &span, status, attempt = cb.attempts, "callback: the customer was not reached");
        let again = cb.attempts <= cb.setup.retries;
        let retry_after = cb.setup.retry_after;
        cb.step = CbStep::Retrying;
        cb.dialing = None;
        call.history.agent = None;
        self.let_agent_go(now, id, true, "customer not reached");
        if again {
            self.save_callback(id);
            self.cb_timer(now, id, retry_after);
        } else {
            self.end_call(now, id, EndReason::CallbackFailed, None);
        }
    }

    /// The ACD let a waiting callback go without an agent (its queue's maximum wait, an
    /// empty queue): it is queued again shortly (`true`).
    pub(super) fn callback_requeues(&mut self, now: Instant, id: u64) -> bool {
        let step = self
            .calls
            .get(&id)
            .and_then(|c| c.cb.as_ref())
            .map(|cb| cb.step);
        if step == Some(CbStep::Confirming) {
            // The caller still hears the confirmation: it is cut short.
            self.drop_caller_leg(id, true);
        }
        let waiting = matches!(step, Some(CbStep::Waiting | CbStep::Confirming));
        if waiting {
            if let Some(cb) = self.calls.get_mut(&id).and_then(|c| c.cb.as_mut()) {
                cb.step = CbStep::Retrying;
            }
            self.cb_timer(now, id, REQUEUE_AFTER);
        }
        waiting
    }

    /// A callback timer of round `round`.
    pub(super) fn callback_timeout(&mut self, now: Instant, id: u64, round: u64) {
        let Some(cb) = self.calls.get(&id).and_then(|c| c.cb.as_ref()) else {
            return;
        };
        if cb.round != round {
            return;
        }
        match cb.step {
            CbStep::Confirming => self.drop_caller_leg(id, true),
            CbStep::Dialing => {
                // The customer's phone rang long enough.
                if let Some((tx, invite, flow)) = self
                    .calls
                    .get_mut(&id)
                    .and_then(|c| c.cb.as_mut())
                    .and_then(|cb| cb.dialing.take())
                {
                    self.sip(SipCommand::Cancel { tx });
                    self.orphan(now, tx, invite, flow);
                }
                self.customer_failed(now, id, 408);
            }
            CbStep::Retrying => self.requeue(now, id),
            CbStep::Waiting | CbStep::Connected => {}
        }
    }

    /// Back into the ACD: the callback waits for the next free agent, first in line among
    /// its queue's calls (priority 9).
    fn requeue(&mut self, now: Instant, id: u64) {
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        let Route::Queue(q) = call.route else {
            return;
        };
        if self.dir.queues[q].removed {
            warn!(parent: &call.span, "the callback's queue was removed by a reload: given up");
            return self.end_call(now, id, EndReason::CallbackFailed, None);
        }
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        if let Some(cb) = call.cb.as_mut() {
            cb.step = CbStep::Waiting;
        }
        call.in_acd = true;
        call.phase = Phase::Waiting;
        info!(parent: &call.span, "callback: back in the queue");
        let queue = self.dir.queues[q].id;
        let _ = now;
        self.acd(AcdCommand::Arrive(CallArrival {
            call: acd::CallId(id),
            queue,
            priority: 9,
            extra_skills: Vec::new(),
        }));
    }

    /// Callbacks the store kept (after a restart), in the order their callers arrived: each
    /// gets a media session and joins its queue ahead of every new call.
    pub fn load_callbacks(&mut self, now: Now, mut pending: Vec<PendingCallback>) {
        let now = self.at(now);
        pending.sort_by_key(|p| p.arrived);
        for p in pending {
            let Some(q) = self
                .dir
                .queues
                .iter()
                .position(|e| !e.removed && e.setup.acd.name == p.queue)
            else {
                warn!(queue = %p.queue, "a kept callback's queue is gone: dropped");
                self.out
                    .push_back(Output::Callback(CallbackRequest::Done { key: p.key }));
                continue;
            };
            let Some(setup) = self.dir.queues[q].setup.callback.clone() else {
                warn!(queue = %p.queue, "a kept callback's queue no longer offers callbacks: dropped");
                self.out
                    .push_back(Output::Callback(CallbackRequest::Done { key: p.key }));
                continue;
            };
            let id = self.next_call;
            self.next_call += 1;
            let span = info_span!("call", call_id = id);
            info!(parent: &span, queue = %p.queue, "callback kept across a restart");
            let from = match &p.name {
                Some(n) => format!(
                    "\"{}\" <sip:{}@{}>;tag=kept",
                    n.replace('"', ""),
                    p.number,
                    self.host
                ),
                None => format!("<sip:{}@{}>;tag=kept", p.number, self.host),
            };
            let mut h = Headers::default();
            h.push("From", from);
            h.push("To", format!("<sip:{}@{}>", p.dialed, self.host));
            h.push("Call-ID", p.key.clone());
            h.push("CSeq", "1 INVITE");
            let invite = Request {
                method: Method::Invite,
                uri: format!("sip:{}@{}", p.dialed, self.host),
                headers: h,
                body: Bytes::new(),
            };
            let identity = match p.source.split_once(':') {
                Some(("trunk", t)) => Caller::Trunk(t.to_owned()),
                Some(("user", u)) => Caller::User(u.to_owned()),
                _ => Caller::Anonymous,
            };
            let media = Negotiated {
                index: 0,
                law: Law::Mu,
                pt: 0,
                telephone_event: Some(101),
                remote: None,
                direction: Direction::SendRecv,
                webrtc: false,
                sdes: false,
            };
            let flow = Flow {
                transport: Transport::Udp,
                remote: setup.via,
                conn: None,
            };
            let mut history = History::new(p.arrived);
            history.queued = Some(p.queued);
            let mut call = Call::new(
                span,
                Route::Queue(q),
                CallerLeg {
                    invite_tx: TxId::user(u64::MAX - id),
                    invite,
                    flow,
                    local_tag: self.token(),
                    answered: true,
                    dialog: None,
                    offer: SessionDescription { media: Vec::new() },
                    media,
                    sdp_version: 1,
                    late: false,
                },
                identity,
                now,
                history,
            );
            call.queued_at = Some(now);
            call.cb = Some(CbState {
                setup,
                step: CbStep::Retrying,
                number: p.number,
                key: p.key,
                attempts: p.attempts,
                dialing: None,
                round: 0,
            });
            self.calls.insert(id, call);
            self.out
                .push_back(Output::Media(SessionId(id), MediaRequest::Open));
            self.out.push_back(media_cmd(
                id,
                SessionCommand::Remote {
                    leg: Leg::Caller,
                    rtp: None,
                    law: Law::Mu,
                    pt: 0,
                    telephone_event: Some(101),
                    sends: false,
                    host: None,
                },
            ));
        }
    }

    /// A kept callback's media session is open: into its queue.
    pub(super) fn kept_callback_opened(&mut self, now: Instant, id: u64) -> bool {
        let kept = self
            .calls
            .get(&id)
            .and_then(|c| c.cb.as_ref())
            .is_some_and(|cb| cb.step == CbStep::Retrying);
        if kept {
            self.requeue(now, id);
        }
        kept
    }
}
