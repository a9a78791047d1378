//! The end of a call, whichever way it ends.

use super::*;

impl CallControl {
    /// End a call: answer or hang up every leg still up (except `hung_up`, which already
    /// sent its BYE), tell the ACD, free the media.
    pub(super) fn end_call(
        &mut self,
        now: Instant,
        id: u64,
        reason: EndReason,
        hung_up: Option<Leg>,
    ) {
        let Some(mut call) = self.calls.remove(&id) else {
            return;
        };
        self.by_invite.remove(&call.caller.invite_tx);
        // An attended transfer waiting on this call as its consultation falls through.
        let waiting: Vec<u64> = self
            .calls
            .iter()
            .filter(|(_, c)| c.attended.as_ref().is_some_and(|a| a.consult() == id))
            .map(|(x, _)| *x)
            .collect();
        for x in waiting {
            if let Some(att) = self.calls.get_mut(&x).and_then(|c| c.attended.take()) {
                self.notify_dialog(att.notify(), "SIP/2.0 487 Request Terminated");
            }
        }
        // A supervisor on the call is hung up on (or their INVITE answered), one being rung
        // is cancelled.
        if call.supervisor.is_some() || call.supervisor_ring.is_some() {
            self.calls.insert(id, call);
            self.drop_supervisor(id, true);
            self.stop_ringing_supervisor(now, id);
            let Some(c) = self.calls.remove(&id) else {
                return;
            };
            call = c;
        }
        self.release_busy(&call.busy_users);
        self.cancel_timers(|t| {
            matches!(t, Timer::Announce(c) | Timer::RingTimeout(c) | Timer::Menu(c, _)
                | Timer::MenuEnd(c, _) | Timer::Voicemail(c, _) | Timer::Callback(c, _)
                | Timer::TransferDigits(c) | Timer::OutboundTry(c, _) if *c == id)
        });
        // Phones still ringing: cancel every one.
        self.cancel_attempts(now, &mut call);
        // The caller.
        if !call.caller.answered {
            if reason != EndReason::CallerCancelled {
                let status = reason.status();
                self.plain(call.caller.invite_tx, status);
            }
        } else if hung_up != Some(Leg::Caller) && reason != EndReason::NoAck {
            if let Some(d) = call.caller.dialog.as_mut() {
                let bye = d.request(Method::Bye);
                let flow = d.flow;
                self.send(flow, bye, Role::Fire);
            }
        } else if reason == EndReason::NoAck {
            // No ACK means the caller never confirmed: a BYE is still the way to end it.
            if let Some(d) = call.caller.dialog.as_mut() {
                let bye = d.request(Method::Bye);
                let flow = d.flow;
                self.send(flow, bye, Role::Fire);
            }
        }
        if let Some(d) = &call.caller.dialog {
            self.by_dialog
                .remove(&(d.call_id.clone(), d.local_tag.clone()));
        }
        // The agent.
        if let Some(mut a) = call.agent.take() {
            if hung_up != Some(Leg::Agent) {
                let bye = a.dialog.request(Method::Bye);
                let flow = a.dialog.flow;
                self.send(flow, bye, Role::Fire);
            }
            self.by_dialog
                .remove(&(a.dialog.call_id.clone(), a.dialog.local_tag.clone()));
        }
        // A callback's customer still ringing: cancelled.
        self.cancel_customer(now, &mut call);
        // The ACD. A callback whose agent has answered (the customer still ringing) is
        // connected in the ACD's eyes.
        if call.in_acd {
            let connected = call.phase == Phase::Connected || callback::agent_answered(&call);
            let cmd = match (connected, reason) {
                (true, EndReason::AgentHangup) => AcdCommand::Hangup {
                    call: acd::CallId(id),
                    by: Party::Agent,
                },
                (true, _) => AcdCommand::Hangup {
                    call: acd::CallId(id),
                    by: Party::Caller,
                },
                _ => AcdCommand::Abandon(acd::CallId(id)),
            };
            self.acd(cmd);
        }
        if call.recording {
            self.out
                .push_back(Output::Recording(RecordingRequest::Stop {
                    call: id,
                    at: now,
                    end: self.wall,
                }));
        }
        // A callback still waiting for its agent or customer outlives a shutdown (the store
        // keeps it): no record yet. Any other end is its end.
        let kept = call.cb.as_ref().map(|cb| {
            let pending = cb.step != callback::CbStep::Connected;
            (
                pending && reason == EndReason::Shutdown,
                pending,
                cb.key.clone(),
            )
        });
        if let Some((_, true, key)) = &kept {
            if reason != EndReason::Shutdown {
                self.out
                    .push_back(Output::Callback(callback::CallbackRequest::Done {
                        key: key.clone(),
                    }));
            }
        }
        if !kept.as_ref().is_some_and(|k| k.0) {
            let record = self.record(now, id, &mut call, reason);
            self.out.push_back(Output::Record(Box::new(record)));
        }
        // The session ends and its ports go back to the pool; the "call ended" line waits
        // for its totals.
        self.out
            .push_back(Output::Media(SessionId(id), MediaRequest::Close));
        self.closing.insert(
            id,
            Ended {
                span: call.span,
                reason,
                duration: now.saturating_duration_since(call.created),
                talk: call.connected_at.map(|t| now.saturating_duration_since(t)),
            },
        );
    }

    /// The agent leaves a call that goes on without them (a transfer, the survey, a callback
    /// whose customer was not reached): BYE unless their phone sent it, their conversation
    /// ends in the ACD (wrap-up follows), the legs are no longer bridged and the agent's leg
    /// is not expected to send.
    /// The agent's part of the call ends (`how`, for its segment in the record).
    pub(super) fn let_agent_go(&mut self, now: Instant, id: u64, send_bye: bool, how: &str) {
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        if call.supervisor.is_some() || call.supervisor_ring.is_some() {
            // The supervisor monitored the agent: they go with them.
            self.drop_supervisor(id, true);
            self.stop_ringing_supervisor(now, id);
        }
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        call.history.held(false, now);
        call.history.end_segment(self.wall, how);
        call.phase = Phase::Waiting;
        let in_acd = std::mem::take(&mut call.in_acd);
        let hung_up = std::mem::take(&mut call.agent_hung_up);
        let departing = call.agent.as_ref().map(|a| a.user.clone());
        if let Some(u) = departing {
            if let Some(pos) = call.busy_users.iter().position(|b| *b == u) {
                call.busy_users.remove(pos);
                self.release_busy(std::slice::from_ref(&u));
            }
        }
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        if let Some(mut a) = call.agent.take() {
            self.by_dialog
                .remove(&(a.dialog.call_id.clone(), a.dialog.local_tag.clone()));
            if send_bye && !hung_up {
                let bye = a.dialog.request(Method::Bye);
                let flow = a.dialog.flow;
                self.send(flow, bye, Role::Fire);
            }
            // Whatever the agent's phone was (a browser, a TLS phone), the leg is plain RTP
            // again: nothing of it (its address, its keys) carries over to the next one.
            self.out.push_back(media_cmd(
                id,
                SessionCommand::WebRtc {
                    leg: Leg::Agent,
                    params: None,
                },
            ));
            self.out.push_back(media_cmd(
                id,
                SessionCommand::Sdes {
                    leg: Leg::Agent,
                    keys: None,
                },
            ));
            // The agent's phone has stopped sending: its silence is no media timeout.
            self.out.push_back(media_cmd(
                id,
                SessionCommand::Remote {
                    leg: Leg::Agent,
                    rtp: None,
                    law: a.local.law,
                    pt: a.local.pt,
                    telephone_event: a.local.telephone_event,
                    sends: false,
                    host: None,
                },
            ));
        }
        if in_acd {
            self.acd(AcdCommand::Hangup {
                call: acd::CallId(id),
                by: Party::Agent,
            });
        }
        self.out
            .push_back(media_cmd(id, SessionCommand::Bridge(false)));
        self.out
            .push_back(media_cmd(id, SessionCommand::Stop(Leg::Agent)));
    }

    /// Cancel every phone still ringing for `call`.
    pub(super) fn cancel_attempts(&mut self, now: Instant, call: &mut Call) {
        for attempt in std::mem::take(&mut call.attempts) {
            for f in &attempt.forks {
                call.history
                    .rang(f.attempt, RingResult::Cancelled, self.wall);
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
    }

    /// The call record of a call that ends now for `reason`.
    fn record(&self, now: Instant, id: u64, call: &mut Call, reason: EndReason) -> CallRecord {
        // A call out says which route and trunk it took, and the number sent.
        let out = self.outbound_trunk(call).map(|c| c.name.clone());
        if let (Route::Outbound(p), Some(trunk)) = (&call.route, out) {
            let vars = [
                ("route", p.route.clone()),
                ("trunk", trunk),
                ("sent", p.number.clone()),
            ];
            for (k, v) in vars {
                call.variables.push((k.to_owned(), v));
            }
        }
        let h = &mut call.history;
        h.held(false, now);
        h.end_segment(self.wall, reason.as_str());
        let answered = call.connected_at.is_some();
        let outcome = match (reason, &call.route) {
            (EndReason::Shutdown, _) if !answered => Outcome::Shutdown,
            (_, Route::Voicemail(_)) => Outcome::Voicemail,
            (_, Route::Mailbox(_)) => Outcome::Mailbox,
            _ => Outcome::Failed,
        };
        let outcome = match reason {
            _ if outcome != Outcome::Failed => outcome,
            EndReason::FeatureDone => Outcome::FeatureCode,
            EndReason::Closed => Outcome::Closed,
            EndReason::Shutdown if !answered => Outcome::Shutdown,
            _ if answered => Outcome::Answered,
            EndReason::MenuDone => Outcome::Menu,
            EndReason::CallbackFailed => Outcome::CallbackFailed,
            EndReason::CallerHangup | EndReason::CallerCancelled => Outcome::Abandoned,
            EndReason::QueueTimeout => Outcome::TimedOut,
            EndReason::QueueEmpty => Outcome::NoAgents,
            EndReason::Overflowed => Outcome::Overflowed,
            EndReason::NoAnswer => Outcome::NoAnswer,
            EndReason::Busy | EndReason::Refused(486 | 600) => Outcome::Busy,
            EndReason::Refused(408 | 480 | 487) => Outcome::NoAnswer,
            EndReason::Refused(404 | 410 | 484 | 604) => Outcome::Unreachable,
            EndReason::Unreachable => Outcome::Unreachable,
            EndReason::Shutdown => Outcome::Shutdown,
            EndReason::AgentHangup
            | EndReason::NoAck
            | EndReason::MediaTimeout(_)
            | EndReason::VoicemailDone
            | EndReason::Refused(_)
            | EndReason::Transferred
            | EndReason::Failed => Outcome::Failed,
        };
        let hung_up_by = match reason {
            // The agent ended the conversation; the survey came after.
            _ if call.survey_of.is_some() => HungUpBy::Agent,
            EndReason::CallerHangup | EndReason::CallerCancelled => HungUpBy::Caller,
            EndReason::AgentHangup => HungUpBy::Agent,
            _ => HungUpBy::System,
        };
        let from = call
            .caller
            .invite
            .headers
            .get("From")
            .and_then(|f| NameAddr::parse(f).ok());
        let queue = match (&call.route, call.survey_of) {
            (&Route::Queue(q), _) | (_, Some(q)) => Some(&self.dir.queues[q].setup),
            _ => None,
        };
        let wait_end = call.connected_at.unwrap_or(now);
        CallRecord {
            call_id: id,
            sip_call_id: call
                .caller
                .invite
                .headers
                .get("Call-ID")
                .unwrap_or_default()
                .to_owned(),
            caller: from
                .as_ref()
                .and_then(|f| f.uri.user_unescaped())
                .unwrap_or_default(),
            caller_name: from.and_then(|f| f.display),
            dialed: request_user(&call.caller.invite).unwrap_or_default(),
            source: match &call.identity {
                Caller::Trunk(t) => format!("trunk:{t}"),
                Caller::User(u) => format!("user:{u}"),
                Caller::Anonymous => "anonymous".to_owned(),
            },
            queue: queue.map(|q| q.acd.name.clone()),
            overflowed_from: h.overflowed_from.take(),
            agent: h.agent.clone(),
            arrived: h.arrived,
            queued: h.queued,
            first_offer: h.first_offer,
            answered: h.answered,
            ended: self.wall,
            wait: wait_end.saturating_duration_since(call.queued_at.unwrap_or(call.created)),
            talk: call.connected_at.map_or(Duration::ZERO, |t| {
                call.talk_ended.unwrap_or(now).saturating_duration_since(t)
            }),
            hold: h.hold,
            wrap_up: match (queue, answered) {
                (Some(q), true) => q.acd.wrap_up,
                _ => Duration::ZERO,
            },
            outcome,
            hung_up_by,
            reason: if call.survey_of.is_some() {
                EndReason::AgentHangup.as_str().to_owned()
            } else {
                reason.as_str().to_owned()
            },
            recorded: call.recording,
            // Filled by the features that ask for them (wrap-up codes, the survey).
            disposition: None,
            satisfaction: call.satisfaction,
            callback: call.cb.is_some(),
            variables: std::mem::take(&mut call.variables),
            segments: std::mem::take(&mut h.segments),
            attempts: std::mem::take(&mut h.attempts),
        }
    }

    /// The relay closed a session: the call's last line.
    pub(super) fn media_closed(&mut self, id: u64, m: MediaTotals) {
        let Some(e) = self.closing.remove(&id) else {
            return;
        };
        info!(
            parent: &e.span,
            reason = e.reason.as_str(),
            duration_ms = e.duration.as_millis() as u64,
            talk_ms = e.talk.map(|t| t.as_millis() as u64),
            rtp_from_caller = m.from_caller,
            rtp_from_agent = m.from_agent,
            rtp_to_agent = m.to_agent,
            rtp_to_caller = m.to_caller,
            "call ended"
        );
    }

    /// Server shutdown: end every call (BYE to answered legs, 503 to unanswered callers).
    pub fn hang_up_all(&mut self, now: Now) {
        let now = self.at(now);
        let ids: Vec<u64> = self.calls.keys().copied().collect();
        for id in ids {
            self.end_call(now, id, EndReason::Shutdown, None);
        }
    }

    /// Forget a call that never got going (answered with an error already).
    pub(super) fn drop_call(&mut self, id: u64) {
        if let Some(call) = self.calls.remove(&id) {
            self.by_invite.remove(&call.caller.invite_tx);
            self.release_busy(&call.busy_users);
            if call.ports.is_some() {
                self.out
                    .push_back(Output::Media(SessionId(id), MediaRequest::Close));
            }
        }
    }
}
