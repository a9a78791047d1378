//! What the ACD decides: offers, withdrawals, timeouts, agent states; position announcements.

use super::*;

impl CallControl {
    pub(super) fn on_acd_event(&mut self, now: Instant, ev: AcdEvent) {
        match ev {
            AcdEvent::Offer { call, agent, .. } => {
                let id = call.0;
                let Some(ai) = self.dir.agent_by_id(agent) else {
                    return;
                };
                if !self.calls.contains_key(&id) {
                    return;
                }
                let user = self.dir.agents[ai].user().to_owned();
                if let Some(c) = self.calls.get(&id) {
                    info!(parent: &c.span, agent = %self.dir.agents[ai].name(), "offering to agent");
                }
                if self.calls[&id].busy_users.contains(&user) {
                    // Never offer a call to the agent who is making it.
                    self.set_availability(ai, presence::Change::Park(presence::IN_USE));
                    return;
                }
                if !self.ring(now, id, Some(ai), &user) {
                    // Withdrawn without counting as a ring with no answer: the agent is
                    // parked until a phone registers.
                    self.set_availability(ai, presence::Change::Park(presence::NO_PHONE));
                }
            }
            AcdEvent::Withdraw {
                call,
                agent,
                reason,
            } => {
                let id = call.0;
                let Some(c) = self.calls.get_mut(&id) else {
                    return;
                };
                let agents = &self.dir.agents;
                let Some(ai) = c
                    .attempts
                    .iter()
                    .position(|a| a.agent.is_some_and(|x| agents[x].id == agent))
                else {
                    return;
                };
                info!(parent: &c.span, ?reason, "offer withdrawn");
                let attempt = c.attempts.remove(ai);
                let result = if reason == acd::WithdrawReason::RingTimeout {
                    RingResult::NoAnswer
                } else {
                    RingResult::Cancelled
                };
                for f in &attempt.forks {
                    c.history.rang(f.attempt, result, self.wall);
                }
                for f in attempt.forks {
                    if f.failed.is_none() {
                        self.sip(SipCommand::Cancel { tx: f.tx });
                        self.orphan(now, f.tx, f.invite, f.flow);
                    } else {
                        self.by_client.remove(&f.tx);
                    }
                }
            }
            AcdEvent::Overflow { call, to, .. } => {
                let Some(c) = self.calls.get_mut(&call.0) else {
                    return;
                };
                match &to {
                    Overflow::External(dest) => {
                        info!(parent: &c.span, destination = %dest, "overflow to an external destination");
                        c.overflow_to = Some(dest.clone());
                    }
                    Overflow::Queue(qid) => {
                        // The call now belongs to the other queue (its music, its record);
                        // the record keeps where it came from.
                        if let (Route::Queue(from), Some(to)) =
                            (&c.route, self.dir.queue_by_id(*qid))
                        {
                            let name = &self.dir.queues[*from].setup.acd.name;
                            c.history
                                .overflowed_from
                                .get_or_insert_with(|| name.clone());
                            info!(parent: &c.span, from = %name, to = %self.dir.queues[to].setup.acd.name, "overflow to another queue");
                            c.route = Route::Queue(to);
                        }
                    }
                }
            }
            AcdEvent::Timeout { call, queue } => {
                let removed = self
                    .dir
                    .queue_by_id(queue)
                    .is_some_and(|i| self.dir.queues[i].removed);
                if let Some(c) = self.calls.get(&call.0) {
                    if removed {
                        info!(parent: &c.span, "queue removed by a config reload: the caller leaves it");
                    } else {
                        info!(parent: &c.span, "maximum wait reached");
                    }
                }
            }
            AcdEvent::CallEnded { call, outcome, .. } => {
                let id = call.0;
                let Some(c) = self.calls.get_mut(&id) else {
                    return;
                };
                if matches!(outcome, CallOutcome::Completed(_) | CallOutcome::Abandoned) {
                    // Our own Hangup or Abandon, answered: the call left the ACD when we sent
                    // it (and may be back in a queue already, after a transfer).
                    return;
                }
                c.in_acd = false;
                let mailbox = c
                    .overflow_to
                    .as_deref()
                    .and_then(|d| d.strip_prefix("voicemail:"))
                    .map(str::to_owned);
                if !matches!(outcome, CallOutcome::Completed(_) | CallOutcome::Abandoned)
                    && self.callback_requeues(now, id)
                {
                    return;
                }
                let Some(c) = self.calls.get_mut(&id) else {
                    return;
                };
                let reason = match outcome {
                    CallOutcome::Completed(_) | CallOutcome::Abandoned => return,
                    CallOutcome::Overflowed if mailbox.is_some() => {
                        if let (Route::Queue(q), Some(mb)) = (&c.route, mailbox) {
                            let name = self.dir.queues[*q].setup.acd.name.clone();
                            c.history.overflowed_from.get_or_insert(name);
                            self.deposit(now, id, &mb);
                            return;
                        }
                        EndReason::Overflowed
                    }
                    CallOutcome::Overflowed => {
                        let number = c
                            .overflow_to
                            .as_deref()
                            .and_then(|d| d.strip_prefix("number:").or(Some(d)))
                            .map(str::to_owned);
                        if let Some(n) = number {
                            if self.overflow_to_number(now, id, &n) {
                                return;
                            }
                        }
                        EndReason::Overflowed
                    }
                    CallOutcome::TimedOut => EndReason::QueueTimeout,
                    CallOutcome::JoinEmpty | CallOutcome::LeftEmpty => EndReason::QueueEmpty,
                };
                self.end_call(now, id, reason, None);
            }
            AcdEvent::AgentState { agent, state } => {
                if let Some(ai) = self.dir.agent_by_id(agent) {
                    let name = self.dir.agents[ai].name();
                    match &state {
                        AgentState::NotReady(r) if r.as_str() == "no-answer" => warn!(
                            agent = %name,
                            reason = "did not answer offers in a row (the queue's auto_pause_after)",
                            "agent paused automatically; the pause key or the API makes them ready"
                        ),
                        AgentState::NotReady(r) => {
                            info!(agent = %name, state = "paused", reason = r.as_str(), "agent state")
                        }
                        _ => info!(agent = %name, ?state, "agent state"),
                    }
                    let a = &self.dir.agents[ai];
                    let (code, reason) = match &state {
                        AgentState::LoggedOut => ("logged_out", None),
                        AgentState::Ready => ("ready", None),
                        AgentState::NotReady(r) => ("not_ready", Some(r.as_str().to_owned())),
                        AgentState::Offered(_) => ("ringing", None),
                        AgentState::OnCall(_) => ("busy", None),
                        AgentState::WrapUp { .. } => ("wrap_up", None),
                    };
                    self.out.push_back(Output::AgentState(AgentStateChange {
                        agent: a.name().to_owned(),
                        user: a.user().to_owned(),
                        state: code,
                        reason,
                        at: self.wall,
                    }));
                    self.dir.agents[ai].state = state;
                    self.dir.agents[ai].requested = None;
                    self.reconcile_agent(ai);
                }
            }
            AcdEvent::QueueLog(_) => {}
        }
    }

    pub(super) fn announce(
        &mut self,
        now: Instant,
        id: u64,
        position: Option<usize>,
        wait: Option<Duration>,
    ) {
        let Some(call) = self.calls.get(&id) else {
            return;
        };
        if call.phase != Phase::Waiting {
            return;
        }
        let Route::Queue(q) = call.route else { return };
        let every = self.dir.queues[q].setup.announce_every;
        let music = self.dir.queues[q].setup.music.clone();
        let a = &self.cfg.announcements;
        let number = |n: usize| a.numbers.get(n).cloned();
        let mut prompts = Vec::new();
        if let (Some(p), Some(pos)) = (&a.position, position) {
            if let Some(n) = number(pos) {
                prompts.push(p.clone());
                prompts.push(n);
            }
        }
        if let (Some(w), Some(m), Some(wait)) = (&a.wait, &a.minutes, wait) {
            let mins = (wait.as_secs() as usize).div_ceil(60).max(1);
            if let Some(n) = number(mins) {
                prompts.push(w.clone());
                prompts.push(n);
                prompts.push(m.clone());
            }
        }
        debug!(parent: &call.span, ?position, ?wait, "position announcement");
        // A caller who can ask for a callback is reminded how.
        if call.cb.is_none() {
            let offer = self.dir.queues[q]
                .setup
                .callback
                .as_ref()
                .and_then(|c| c.offer.clone());
            prompts.extend(offer);
        }
        if !prompts.is_empty() {
            self.out.push_back(media_cmd(
                id,
                SessionCommand::Play {
                    leg: Leg::Caller,
                    prompts,
                    then: music,
                },
            ));
        }
        if let Some(every) = every {
            let at = now + every;
            self.timer(at, Timer::Announce(id));
        }
    }
}
