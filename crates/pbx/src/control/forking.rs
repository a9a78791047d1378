//! Ringing phones: every registered contact of the agent (or callee) at once, the first 2xx
//! wins, the others get CANCEL, a late 2xx of a cancelled phone gets ACK and BYE.

use super::*;

/// Call variables the server sets itself (not entered by the caller).
const SERVER_VARIABLES: &[&str] = &["monitored_by", "route", "trunk", "sent"];

/// `s` fit for a header value listing `name=value;…`: anything but printable ASCII, and
/// `%`, `;`, `=`, `,`, percent-encoded.
fn header_escape(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'%' | b';' | b'=' | b',' => format!("%{b:02X}"),
            0x21..=0x7e => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

impl CallControl {
    /// Ring every registered phone of `user` for call `id`. False when none is registered.
    pub(super) fn ring(
        &mut self,
        _now: Instant,
        id: u64,
        agent: Option<usize>,
        user: &str,
    ) -> bool {
        let contacts = self
            .locations
            .get(user)
            .map(|b| b.value().clone())
            .unwrap_or_default();
        if contacts.is_empty() {
            return false;
        }
        let Some(call) = self.calls.get(&id) else {
            return false;
        };
        let Some(ports) = call.ports else {
            return false;
        };
        let from_user = call
            .caller
            .invite
            .headers
            .get("From")
            .and_then(|f| NameAddr::parse(f).ok());
        let (display, from_num) = match &from_user {
            Some(a) => (
                a.display.clone(),
                a.uri.user_unescaped().unwrap_or_default(),
            ),
            None => (None, String::new()),
        };
        let local = LocalMedia {
            session_id: id,
            version: 1,
            addr: ports.addr,
            port: ports.agent,
            law: call.caller.media.law,
            pt: call.caller.media.pt,
            telephone_event: call.caller.media.telephone_event,
            direction: Direction::SendRecv,
            webrtc: None,
            sdes: None,
        };
        let body = Bytes::from(local.offer());
        let from_num = if from_num.is_empty() {
            "anonymous".to_owned()
        } else {
            from_num
        };
        let name = agent.map_or_else(|| user.to_owned(), |a| self.dir.agents[a].name().to_owned());
        // What the agent's phone shows beside the caller (a screen-pop): the call's id (for
        // the API), its queue, how long the caller waited, the digits entered in a menu.
        let mut pop = vec![("X-Switchboard-Call", id.to_string())];
        if let Route::Queue(q) = call.route {
            pop.push((
                "X-Switchboard-Queue",
                header_escape(&self.dir.queues[q].setup.acd.name),
            ));
            if let Some(t) = call.queued_at {
                pop.push((
                    "X-Switchboard-Waited",
                    self.now.saturating_duration_since(t).as_secs().to_string(),
                ));
            }
        }
        // Only what menus collected: the server's own variables (who monitors the call) are
        // not for the next agent's screen.
        let entered: Vec<String> = call
            .variables
            .iter()
            .filter(|(k, v)| {
                !v.is_empty() && v.len() <= 32 && !SERVER_VARIABLES.contains(&k.as_str())
            })
            .map(|(k, v)| format!("{}={}", header_escape(k), header_escape(v)))
            .collect();
        if !entered.is_empty() {
            pop.push(("X-Switchboard-Entered", entered.join(";")));
        }
        // Browsers (registered over WebSocket) get the same offer the WebRTC way, with ICE
        // credentials of their own for the agent leg.
        let local_webrtc = if contacts.iter().any(|b| b.flow.transport.is_websocket()) {
            self.webrtc_offer(id, &local)
        } else {
            None
        };
        let body_webrtc = local_webrtc.as_ref().map(|l| Bytes::from(l.offer()));
        // Phones registered over TLS get SRTP keyed in the SDP (the key travels encrypted).
        let local_sdes = contacts
            .iter()
            .any(|b| b.flow.transport == Transport::Tls)
            .then(|| {
                let n = self.calls.get(&id).map_or(0, |c| c.history.attempts.len());
                LocalMedia {
                    sdes: Some((
                        1,
                        media::secure::derive_sdes_key(&self.cfg.media_secret, id, 1, n as u64),
                    )),
                    ..local.clone()
                }
            });
        let body_sdes = local_sdes.as_ref().map(|l| Bytes::from(l.offer()));
        let wall = self.wall;
        let mut forks = Vec::new();
        for b in contacts {
            let webrtc = b.flow.transport.is_websocket();
            let sdes = b.flow.transport == Transport::Tls;
            let body = match (webrtc, &body_webrtc, &body_sdes) {
                (false, _, Some(s)) if sdes => s.clone(),
                (false, _, _) => body.clone(),
                (true, Some(w), _) => w.clone(),
                (true, None, _) => {
                    warn!(user, contact = %b.uri_text, "a browser is registered but WebRTC media is not available: not rung");
                    continue;
                }
            };
            let from = match &display {
                Some(d) => format!("\"{}\" <sip:{from_num}@{}>", d.replace('"', ""), self.host),
                None => format!("<sip:{from_num}@{}>", self.host),
            };
            let to = format!("<sip:{user}@{}>", self.host);
            let mut invite =
                self.new_invite(&from, to, b.uri_text.clone(), &b.flow, "switchboard", body);
            for (name, value) in &pop {
                invite.headers.push(*name, value.clone());
            }
            let tx = self.send(b.flow, invite.clone(), Role::Fork(id));
            let Some(call) = self.calls.get_mut(&id) else {
                break;
            };
            let h = &mut call.history;
            h.first_offer.get_or_insert(wall);
            h.attempts.push(RingAttempt {
                agent: name.clone(),
                contact: b.uri_text.clone(),
                started: wall,
                ended: None,
                result: RingResult::Ringing,
            });
            forks.push(Fork {
                tx,
                attempt: h.attempts.len() - 1,
                flow: b.flow,
                invite,
                failed: None,
                webrtc,
                sdes,
            });
        }
        if forks.is_empty() {
            return false;
        }
        if let Some(call) = self.calls.get_mut(&id) {
            debug!(parent: &call.span, user, phones = forks.len(), "ringing");
            call.attempts.push(Attempt {
                agent,
                user: user.to_owned(),
                forks,
                local,
                local_webrtc,
                local_sdes,
            });
        }
        true
    }

    /// `local` as offered to a browser: ICE-lite credentials drawn for this offer, the
    /// relay's DTLS fingerprint; the relay's agent leg is told to answer for them. `None`
    /// when the relay has no DTLS certificate.
    fn webrtc_offer(&mut self, id: u64, local: &LocalMedia) -> Option<LocalMedia> {
        let fingerprint = self.cfg.webrtc_fingerprint.clone()?;
        // RFC 8839: ufrag of at least 4 and password of at least 22 ice-chars. The password is
        // what keeps strangers from steering the media: derived from the secret drawn at
        // start (as SRTP keys are), not from the seeded generator of tags.
        let ufrag = format!("{:08x}", self.rng.next_u32());
        let n = self.calls.get(&id).map_or(0, |c| c.history.attempts.len());
        let pwd = media::secure::derive_ice_pwd(&self.cfg.media_secret, id, n as u64);
        self.media(
            id,
            SessionCommand::WebRtc {
                leg: Leg::Agent,
                params: Some(WebRtcParams {
                    ufrag: ufrag.clone(),
                    pwd: pwd.clone(),
                    remote_fingerprint: None,
                }),
            },
        );
        Some(LocalMedia {
            webrtc: Some(LocalWebRtc {
                ufrag,
                pwd,
                fingerprint,
            }),
            ..local.clone()
        })
    }

    pub(super) fn on_response(&mut self, now: Instant, tx: TxId, resp: Response) {
        if (200..300).contains(&resp.status) {
            if let Some((ack, flow)) = self.acks.get(&tx).cloned() {
                // A retransmitted 2xx: our ACK was lost.
                return self.sip(SipCommand::SendStateless { flow, request: ack });
            }
        }
        let Some(&role) = self.by_client.get(&tx) else {
            return;
        };
        match role {
            Role::Fire => {
                if resp.status >= 200 {
                    self.by_client.remove(&tx);
                }
            }
            Role::Customer(id) => self.customer_response(now, id, tx, resp),
            Role::Register(i) => self.register_response(now, i, tx, &resp),
            Role::Reinvite(consult) => self.reinvite_response(now, consult, tx, resp),
            Role::Restore(consult) => self.restore_response(consult, tx, resp),
            Role::TakeOver(id) => self.take_over_response(now, id, tx, resp),
            Role::SupervisorRing(id) => self.supervisor_ring_response(id, tx, resp),
            Role::Notify(sid) => {
                if resp.status >= 200 {
                    self.by_client.remove(&tx);
                }
                if resp.status >= 300 {
                    // 481: the phone forgot the subscription; any error ends it (RFC 6665).
                    debug!(
                        status = resp.status,
                        "subscription ended by its NOTIFY's answer"
                    );
                    self.drop_sub(sid);
                }
            }
            Role::Orphan => {
                if resp.status < 200 && self.cancel_on_1xx.remove(&tx) {
                    // A proxy given up for its silence answers after all: now it may be
                    // cancelled (RFC 3261 §9.1).
                    self.sip(SipCommand::Cancel { tx });
                }
                if (200..300).contains(&resp.status) {
                    // A phone answered after the call was over: acknowledge and hang up.
                    if let Some((invite, flow)) = self.orphans.get(&tx).cloned() {
                        self.ack_and_bye(&invite, &resp, flow);
                    }
                }
            }
            Role::Fork(id) => self.fork_response(now, id, tx, resp),
        }
    }

    pub(super) fn ack_and_bye(&mut self, invite: &Request, resp: &Response, flow: Flow) {
        if let Ok(mut d) = Dialog::uac(invite, resp, flow) {
            let ack = d.ack(cseq_num(&invite.headers));
            self.sip(SipCommand::SendStateless { flow, request: ack });
            let bye = d.request(Method::Bye);
            self.send(flow, bye, Role::Fire);
        }
    }

    pub(super) fn fork_response(&mut self, now: Instant, id: u64, tx: TxId, resp: Response) {
        let status = resp.status;
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        // A retransmitted 2xx of the answered phone: re-send the ACK.
        if let Some(leg) = &call.agent {
            if (200..300).contains(&status)
                && resp.headers.get("Call-ID") == Some(leg.dialog.call_id.as_str())
                && to_tag(&resp.headers).as_deref() == Some(leg.dialog.remote_tag.as_str())
            {
                let ack = leg.dialog.ack(cseq_num(&resp.headers));
                let flow = leg.dialog.flow;
                self.sip(SipCommand::SendStateless { flow, request: ack });
                return;
            }
        }
        let found = call
            .attempts
            .iter()
            .enumerate()
            .find_map(|(ai, a)| a.forks.iter().position(|f| f.tx == tx).map(|fi| (ai, fi)));
        let Some((ai, fi)) = found else {
            return;
        };
        let outbound = matches!(call.route, Route::Outbound(_));
        if outbound && status < 200 {
            return self.outbound_provisional(id, &resp);
        }
        if outbound && status >= 300 {
            if let Some(f) = call.attempts[ai].forks.get_mut(fi) {
                f.failed = Some(status);
                let i = f.attempt;
                call.history.rang(i, RingResult::Refused(status), self.wall);
            }
            if self.outbound_failed(now, id, tx, &resp) {
                return;
            }
            self.by_client.remove(&tx);
            if let Some(call) = self.calls.get_mut(&id) {
                call.attempts.clear();
                call.dialing = None;
            }
            self.cancel_timers(|t| matches!(t, Timer::OutboundTry(c, _) if *c == id));
            // What the caller's phone can make sense of: no challenge or redirect of the
            // carrier's reaches it.
            let status = match status {
                401 | 407 => 403,
                300..=399 => 480,
                s => s,
            };
            if !self.transfer_failed(now, id) {
                self.end_call(now, id, EndReason::Refused(status), None);
            }
            return;
        }
        let attempt = &mut call.attempts[ai];
        if status < 200 {
            if status == 180 || status == 183 {
                debug!(parent: &call.span, status, "agent phone ringing");
            }
            return;
        }
        if status >= 300 {
            attempt.forks[fi].failed = Some(status);
            let i = attempt.forks[fi].attempt;
            call.history.rang(i, RingResult::Refused(status), self.wall);
            self.by_client.remove(&tx);
            let all_failed = attempt.forks.iter().all(|f| f.failed.is_some());
            if all_failed {
                let statuses: Vec<u16> = attempt.forks.iter().filter_map(|f| f.failed).collect();
                self.attempt_failed(now, id, ai, &statuses);
            }
            return;
        }
        // 2xx: this phone wins.
        let fork_flow = attempt.forks[fi].flow;
        let fork_webrtc = attempt.forks[fi].webrtc;
        let fork_sdes = attempt.forks[fi].sdes;
        let invite = attempt.forks[fi].invite.clone();
        let dialog = match Dialog::uac(&invite, &resp, fork_flow) {
            Ok(d) => d,
            Err(e) => {
                warn!(parent: &call.span, error = %e, "unusable 2xx from the agent's phone");
                return self.attempt_failed(now, id, ai, &[500]);
            }
        };
        let ack = dialog.ack(cseq_num(&invite.headers));
        self.ack_2xx(tx, ack, fork_flow);
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        let mut attempts = std::mem::take(&mut call.attempts);
        let attempt = attempts.swap_remove(ai);
        // Every other phone (of this agent, and of any other agent rung at once) stops.
        let mut losers: Vec<Fork> = attempts.into_iter().flat_map(|a| a.forks).collect();
        let others: Vec<TxId> = attempt
            .forks
            .iter()
            .chain(losers.iter())
            .filter(|f| f.tx != tx && f.failed.is_none())
            .map(|f| f.tx)
            .collect();
        let mut remote_webrtc = None;
        let mut remote_crypto = None;
        let remote = if resp.body.is_empty() {
            Err(SdpError::Malformed("no SDP answer"))
        } else {
            SessionDescription::parse(&resp.body).and_then(|sd| {
                let n = negotiate(&sd)?;
                let m = sd.media.get(n.index);
                remote_webrtc = m.and_then(|m| m.remote_webrtc());
                remote_crypto = m.and_then(|m| m.sdes_crypto()).map(|c| c.key.clone());
                Ok(n)
            })
        };
        let local = match (
            fork_webrtc,
            &attempt.local_webrtc,
            fork_sdes,
            &attempt.local_sdes,
        ) {
            (true, Some(w), _, _) => w.clone(),
            (false, _, true, Some(s)) => s.clone(),
            _ => attempt.local.clone(),
        };
        // SRTP keyed in the SDP: our key and the phone's from its answer.
        let keys = match (&local.sdes, remote_crypto) {
            (Some((_, ours)), Some(theirs)) => Some(SdesKeys {
                local: ours.clone(),
                remote: theirs,
            }),
            _ => None,
        };
        // Always both: the leg is exactly what answered (a browser, a TLS phone or a plain
        // one), whatever rang or answered before on it.
        self.out.push_back(media_cmd(
            id,
            SessionCommand::Sdes {
                leg: Leg::Agent,
                keys,
            },
        ));
        // The relay's agent leg follows the phone that answered: WebRTC with the browser's
        // certificate fingerprint, or plain RTP again for a desk phone.
        let params = match (&local.webrtc, remote_webrtc) {
            (Some(w), Some(r)) => Some(WebRtcParams {
                ufrag: w.ufrag.clone(),
                pwd: w.pwd.clone(),
                remote_fingerprint: r.fingerprint,
            }),
            _ => None,
        };
        self.out.push_back(media_cmd(
            id,
            SessionCommand::WebRtc {
                leg: Leg::Agent,
                params,
            },
        ));
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        let key = (dialog.call_id.clone(), dialog.local_tag.clone());
        let outside = matches!(call.route, Route::Outbound(_));
        call.agent = Some(AgentLeg {
            outside,
            dialog,
            agent: attempt.agent,
            user: attempt.user.clone(),
            local,
            on_hold: false,
        });
        self.by_dialog.insert(key, (id, Leg::Agent));
        losers.extend(attempt.forks);
        for f in &losers {
            let result = if f.tx == tx {
                RingResult::Answered
            } else {
                RingResult::Cancelled
            };
            call.history.rang(f.attempt, result, self.wall);
        }
        for f in losers {
            if f.tx != tx && f.failed.is_none() {
                self.orphan(now, f.tx, f.invite, f.flow);
            } else {
                self.by_client.remove(&f.tx);
            }
        }
        for t in others {
            self.sip(SipCommand::Cancel { tx: t });
        }
        let negotiated = match remote {
            Ok(n) => n,
            Err(e) => {
                let span = self.calls[&id].span.clone();
                warn!(parent: &span, error = %e, "agent's answer has no usable SDP");
                return self.end_call(now, id, EndReason::Failed, None);
            }
        };
        self.connect(now, id, negotiated);
    }

    /// The agent's (or callee's) phone answered: bridge the legs.
    pub(super) fn connect(&mut self, now: Instant, id: u64, n: Negotiated) {
        self.callback_overtaken(id);
        let needs_answer = self.calls.get(&id).is_some_and(|c| !c.caller.answered);
        if needs_answer {
            // An extension call: the caller is answered only now.
            self.answer_caller(id);
        }
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        self.out.push_back(media_cmd(
            id,
            remote_of(
                Leg::Agent,
                &n,
                call.agent.as_ref().map(|a| a.dialog.flow.remote.ip()),
            ),
        ));
        let callback = call.cb.is_some();
        if !callback {
            self.out
                .push_back(media_cmd(id, SessionCommand::Stop(Leg::Caller)));
            self.out
                .push_back(media_cmd(id, SessionCommand::Bridge(true)));
        }
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        if !callback {
            call.phase = Phase::Connected;
            // A transferred call keeps its first answer: its wait ended then.
            call.connected_at.get_or_insert(now);
            call.history.answered.get_or_insert(self.wall);
            call.transfer_back = None;
        }
        let waited = now.saturating_duration_since(call.created);
        let agent = call.agent.as_ref().and_then(|a| a.agent);
        let user = call
            .agent
            .as_ref()
            .map(|a| a.user.clone())
            .unwrap_or_default();
        let name = agent.map_or(user.clone(), |a| self.dir.agents[a].name().to_owned());
        let name = match &call.route {
            // A call out: the one who talks for the center is the user who dialled (or
            // the agent who transferred the caller out).
            Route::Outbound(p) => self
                .dir
                .agent_by_user(&p.user)
                .map_or(p.user.clone(), |a| self.dir.agents[a].name().to_owned()),
            _ => name,
        };
        call.history.agent = Some(name.clone());
        if !callback {
            call.history.begin_segment(&name, self.wall);
        }
        info!(parent: &call.span, agent = %name, waited_ms = waited.as_millis() as u64, "call connected");
        let in_acd = call.in_acd;
        self.cancel_timers(|t| matches!(t, Timer::Announce(c) | Timer::RingTimeout(c) if *c == id));
        if let (Some(a), true) = (agent, in_acd) {
            let agent = self.dir.agents[a].id;
            self.acd(AcdCommand::Answer {
                call: acd::CallId(id),
                agent,
            });
        }
        if callback {
            // The agent is on the line: now the customer is called.
            return self.dial_customer(now, id);
        }
        self.maybe_record(now, id, &name);
    }

    /// Every phone of attempt `ai` refused or failed.
    pub(super) fn attempt_failed(&mut self, now: Instant, id: u64, ai: usize, statuses: &[u16]) {
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        if ai >= call.attempts.len() {
            return;
        }
        let attempt = call.attempts.remove(ai);
        let others_ringing = !call.attempts.is_empty();
        info!(parent: &call.span, user = %attempt.user, ?statuses, "offer not answered");
        for f in attempt.forks {
            self.by_client.remove(&f.tx);
        }
        match (call.route.clone(), attempt.agent) {
            (Route::Queue(_), Some(a)) => {
                let agent = self.dir.agents[a].id;
                self.acd(AcdCommand::OfferFailed {
                    call: acd::CallId(id),
                    agent,
                });
            }
            _ if others_ringing => {}
            _ => {
                let reason = if statuses.iter().any(|&s| s == 486 || s == 600) {
                    EndReason::Busy
                } else {
                    EndReason::NoAnswer
                };
                self.no_answer_or_voicemail(now, id, reason);
            }
        }
    }

    pub(super) fn on_client_timeout(&mut self, now: Instant, tx: TxId) {
        match self.by_client.get(&tx).copied() {
            Some(Role::Fork(id)) => {
                let resp_like = Response::new(408);
                self.fork_response(now, id, tx, resp_like);
            }
            Some(Role::Notify(sid)) => {
                self.by_client.remove(&tx);
                self.drop_sub(sid);
            }
            Some(Role::Customer(id)) => self.customer_response(now, id, tx, Response::new(408)),
            Some(Role::TakeOver(id)) => self.take_over_response(now, id, tx, Response::new(408)),
            Some(Role::SupervisorRing(id)) => {
                self.supervisor_ring_response(id, tx, Response::new(408))
            }
            Some(Role::Reinvite(consult)) => {
                self.reinvite_response(now, consult, tx, Response::new(408))
            }
            Some(Role::Register(i)) => {
                self.by_client.remove(&tx);
                self.register_failed(now, i, 408, "no answer");
            }
            Some(_) => {
                self.by_client.remove(&tx);
                self.orphans.remove(&tx);
            }
            None => {}
        }
    }

    pub(super) fn orphan(&mut self, now: Instant, tx: TxId, invite: Request, flow: Flow) {
        self.by_client.insert(tx, Role::Orphan);
        self.orphans.insert(tx, (invite, flow));
        self.timer(now + Duration::from_secs(40), Timer::ForgetOrphan(tx));
    }
}

#[cfg(test)]
mod tests {
    use super::header_escape;

    #[test]
    fn screen_pop_values_cannot_break_the_list_or_the_header() {
        assert_eq!(header_escape("1234"), "1234");
        assert_eq!(header_escape("a;b=c,d%"), "a%3Bb%3Dc%2Cd%25");
        assert_eq!(header_escape("x\r\nEvil: 1"), "x%0D%0AEvil:%201");
        assert_eq!(header_escape("Müller"), "M%C3%BCller");
    }
}
