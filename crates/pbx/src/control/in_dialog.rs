//! Requests inside a call's dialogs: the ACK of a delayed offer, BYE, re-INVITE/UPDATE (hold,
//! resume, new address, session refresh).

use super::*;

impl CallControl {
    pub(super) fn on_ack(&mut self, now: Instant, ack: Request) {
        let key = (
            ack.headers.get("Call-ID").unwrap_or_default().to_owned(),
            to_tag(&ack.headers).unwrap_or_default(),
        );
        let Some(&(id, Leg::Caller)) = self.by_dialog.get(&key) else {
            return;
        };
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        if !call.caller.late {
            return;
        }
        let answer = SessionDescription::parse(&ack.body).and_then(|sd| {
            let n = negotiate(&sd)?;
            Ok((sd, n))
        });
        let (sd, n) = match answer {
            Ok(x) => x,
            Err(e) => {
                info!(parent: &call.span, error = %e, "the ACK carried no usable SDP answer");
                return self.end_call(now, id, EndReason::Failed, None);
            }
        };
        call.caller.late = false;
        call.caller.offer = sd;
        call.caller.media = n;
        self.out.push_back(media_cmd(
            id,
            remote_of(Leg::Caller, &n, Some(call.caller.flow.remote.ip())),
        ));
        if let Some(q) = call.pending_queue.take() {
            self.enter_queue(now, id, q);
        } else if let Some(m) = call.pending_menu.take() {
            self.enter_menu(now, id, &m, 0);
        }
    }

    pub(super) fn in_dialog(&mut self, now: Instant, tx: TxId, req: Request, flow: Flow) {
        let key = (
            req.headers.get("Call-ID").unwrap_or_default().to_owned(),
            to_tag(&req.headers).unwrap_or_default(),
        );
        let Some(&(id, leg)) = self.by_dialog.get(&key) else {
            return self.plain(tx, 481);
        };
        let Some(call) = self.calls.get_mut(&id) else {
            return self.plain(tx, 481);
        };
        let Some(dialog) = call.dialog_mut(leg) else {
            return self.plain(tx, 481);
        };
        if !dialog.accept_remote_cseq(&req) {
            let mut h = Headers::default();
            h.push("Retry-After", "1");
            return self.respond(tx, 500, None, h, Bytes::new());
        }
        match req.method {
            Method::Bye => {
                self.plain(tx, 200);
                if leg == Leg::Supervisor {
                    return self.drop_supervisor(id, false);
                }
                if leg == Leg::Agent && self.consult_complete(now, id) {
                    return;
                }
                if leg == Leg::Agent && self.start_survey(now, id) {
                    return;
                }
                if leg == Leg::Caller && self.callback_keeps(id) {
                    return;
                }
                let reason = match leg {
                    Leg::Caller => EndReason::CallerHangup,
                    Leg::Agent | Leg::Supervisor => EndReason::AgentHangup,
                };
                self.end_call(now, id, reason, Some(leg));
            }
            Method::Invite | Method::Update if leg == Leg::Supervisor => {
                self.supervisor_reoffer(id, tx, &req)
            }
            Method::Invite | Method::Update => self.reoffer(now, id, leg, tx, req, flow),
            Method::Refer => self.on_refer(now, id, leg, tx, req),
            Method::Info => {
                self.plain(tx, 200);
                if let Some(digit) = ivr::info_digit(&req) {
                    match leg {
                        Leg::Agent => {
                            if !self.transfer_key(now, id, digit) {
                                self.agent_key(now, id, digit);
                            }
                        }
                        Leg::Caller => self.caller_key(now, id, digit),
                        Leg::Supervisor => self.supervisor_key(now, id, digit),
                    }
                }
            }
            _ => self.plain(tx, 405),
        }
    }

    /// A re-INVITE or UPDATE: hold, resume, a new address, or a session refresh.
    pub(super) fn reoffer(
        &mut self,
        now: Instant,
        id: u64,
        leg: Leg,
        tx: TxId,
        req: Request,
        flow: Flow,
    ) {
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        let span = call.span.clone();
        let mut h = Headers::default();
        // Over TLS the phone's later requests must come back over TLS: our Contact says so.
        h.push("Contact", self.contact(&flow, "switchboard"));
        h.push("Allow", ALLOW);
        if req.body.is_empty() {
            // A refresh without an offer (UPDATE) or a delayed-offer re-INVITE: for the
            // latter we would have to offer; answer 200 without a body for UPDATE only.
            if req.method == Method::Update {
                return self.respond(tx, 200, None, h, Bytes::new());
            }
            let mut h = Headers::default();
            h.push(
                "Warning",
                "399 switchboard \"re-INVITE without SDP is not supported\"",
            );
            return self.respond(tx, 488, None, h, Bytes::new());
        }
        let offer = match SessionDescription::parse(&req.body) {
            Ok(o) => o,
            Err(_) => return self.respond(tx, 400, None, Headers::default(), Bytes::new()),
        };
        let n = match negotiate(&offer) {
            Ok(n) => n,
            Err(_) => return self.respond(tx, 488, None, Headers::default(), Bytes::new()),
        };
        if n.sdes && !flow.transport.is_secure() {
            // Keys in the clear are no secret (RFC 4568 §8.3), in a dialog as at its start.
            let mut h = Headers::default();
            h.push(
                "Warning",
                "399 switchboard \"SRTP keys (a=crypto) are accepted over TLS only\"",
            );
            return self.respond(tx, 488, None, h, Bytes::new());
        }
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        let body = match leg {
            Leg::Caller => {
                call.caller.sdp_version += 1;
                let Some(ports) = call.ports else { return };
                let local = LocalMedia {
                    session_id: id,
                    version: call.caller.sdp_version,
                    addr: ports.addr,
                    port: ports.caller,
                    law: n.law,
                    pt: n.pt,
                    telephone_event: n.telephone_event,
                    direction: n.direction.answer(),
                    webrtc: None,
                    sdes: None,
                };
                if n.sdes != call.caller.media.sdes {
                    // SRTP on or off in the middle of a call: not followed.
                    return self.respond(tx, 488, None, Headers::default(), Bytes::new());
                }
                let local = match caller_sdes(&self.cfg.media_secret, id, &offer, &n) {
                    Some((ours, keys)) => {
                        self.out.push_back(media_cmd(
                            id,
                            SessionCommand::Sdes {
                                leg: Leg::Caller,
                                keys: Some(keys),
                            },
                        ));
                        LocalMedia {
                            sdes: Some(ours),
                            ..local
                        }
                    }
                    None => local,
                };
                let Some(call) = self.calls.get_mut(&id) else {
                    return;
                };
                call.caller.media = n;
                call.caller.offer = offer.clone();
                local.answer(&offer, n.index)
            }
            Leg::Agent => {
                let Some(a) = call.agent.as_mut() else { return };
                if n.sdes != a.local.sdes.is_some() {
                    // SRTP on or off in the middle of a call: not followed.
                    return self.respond(tx, 488, None, Headers::default(), Bytes::new());
                }
                a.local.version += 1;
                a.local.direction = n.direction.answer();
                if let (Some((tag, ours)), Some(c)) = (
                    a.local.sdes.as_mut(),
                    offer.media.get(n.index).and_then(|m| m.sdes_crypto()),
                ) {
                    // Our answer echoes the offer's tag; the phone's key (new or not) goes to
                    // the relay, which keeps ours and its counters.
                    *tag = c.tag;
                    self.out.push_back(media_cmd(
                        id,
                        SessionCommand::Sdes {
                            leg: Leg::Agent,
                            keys: Some(SdesKeys {
                                local: ours.clone(),
                                remote: c.key.clone(),
                            }),
                        },
                    ));
                }
                let hold = n.is_hold();
                if hold != a.on_hold {
                    a.on_hold = hold;
                    call.history.held(hold, now);
                    info!(parent: &span, hold, "agent hold");
                    if hold {
                        let music = match call.route {
                            Route::Queue(q) => self.dir.queues[q].setup.music.clone(),
                            _ => None,
                        };
                        self.out
                            .push_back(media_cmd(id, SessionCommand::Bridge(false)));
                        if let Some(m) = music {
                            self.out.push_back(media_cmd(
                                id,
                                SessionCommand::Play {
                                    leg: Leg::Caller,
                                    prompts: Vec::new(),
                                    then: Some(m),
                                },
                            ));
                        }
                    } else {
                        self.out
                            .push_back(media_cmd(id, SessionCommand::Stop(Leg::Caller)));
                        self.out
                            .push_back(media_cmd(id, SessionCommand::Bridge(true)));
                    }
                }
                a.local.answer(&offer, n.index)
            }
            Leg::Supervisor => return self.plain(tx, 481),
        };
        self.out
            .push_back(media_cmd(id, remote_of(leg, &n, Some(flow.remote.ip()))));
        h.push("Content-Type", "application/sdp");
        self.respond(tx, 200, None, h, Bytes::from(body));
    }
}
