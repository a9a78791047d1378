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
        self.release_busy(&call.busy_users);
        self.cancel_timers(|t| matches!(t, Timer::Announce(c) | Timer::RingTimeout(c) if *c == id));
        // Phones still ringing: cancel every one.
        for attempt in std::mem::take(&mut call.attempts) {
            for f in attempt.forks {
                if f.failed.is_none() {
                    self.sip(SipCommand::Cancel { tx: f.tx });
                    self.orphan(now, f.tx, f.invite, f.flow);
                } else {
                    self.by_client.remove(&f.tx);
                }
            }
        }
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
        // The ACD.
        if call.in_acd {
            let cmd = match (call.phase, reason) {
                (Phase::Connected, EndReason::AgentHangup) => AcdCommand::Hangup {
                    call: acd::CallId(id),
                    by: Party::Agent,
                },
                (Phase::Connected, _) => AcdCommand::Hangup {
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
