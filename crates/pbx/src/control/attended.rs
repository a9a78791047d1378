//! Attended transfer (RFC 5589 §7, REFER with `Replaces`, RFC 3891): the agent has the
//! customer on hold in one call and has called someone (a colleague, a queue, an outside
//! number) in a second one; their phone sends REFER in either dialog, naming the other in
//! `Replaces`. As a back-to-back user agent, the server joins the two far ends itself: it
//! re-INVITEs the consulted party with the customer's media (the customer's relay session,
//! the customer's codec), and once that is answered, bridges them, reports 200 to the agent's
//! phone in a NOTIFY and hangs up both of the agent's legs. The customer's call keeps its id,
//! its record and its recording; the consultation ends as a call of its own ("transferred").
//! If the re-INVITE fails, the agent's phone is told (NOTIFY with the status) and both calls
//! stay as they were. While the consultation still rings, the REFER is a blind transfer to
//! the number being rung (the consultation is cancelled).

use super::*;

/// An attended transfer waiting for the consulted party's answer to our re-INVITE.
#[derive(Debug)]
pub(super) struct Attended {
    /// The consultation call.
    consult: u64,
    /// Our re-INVITE to the consulted party.
    tx: TxId,
    /// What that re-INVITE offered (the customer's relay session, agent side).
    local: LocalMedia,
    /// The dialog the REFER came in, for the NOTIFYs: (call, leg).
    notify: (u64, Leg),
}

impl Attended {
    /// The consultation.
    pub(super) fn consult(&self) -> u64 {
        self.consult
    }

    /// The dialog the REFER came in.
    pub(super) fn notify(&self) -> (u64, Leg) {
        self.notify
    }
}

/// `Replaces` in a Refer-To URI's headers: (Call-ID, to-tag, from-tag).
pub(super) fn replaces_of(headers: &str) -> Option<(String, String, String)> {
    let value = headers.split('&').find_map(|h| {
        let (name, value) = h.split_once('=')?;
        name.eq_ignore_ascii_case("Replaces").then_some(value)
    })?;
    let value = sip::uri::unescape(value);
    let mut parts = value.split(';');
    let call_id = parts.next()?.trim().to_owned();
    let (mut to, mut from) = (None, None);
    for p in parts {
        match p.trim().split_once('=') {
            Some((n, v)) if n.eq_ignore_ascii_case("to-tag") => to = Some(v.to_owned()),
            Some((n, v)) if n.eq_ignore_ascii_case("from-tag") => from = Some(v.to_owned()),
            _ => {}
        }
    }
    Some((call_id, to?, from?))
}

impl CallControl {
    /// A REFER with Replaces in call `id`'s `leg` dialog.
    pub(super) fn on_attended_refer(
        &mut self,
        now: Instant,
        id: u64,
        leg: Leg,
        tx: TxId,
        replaces: (String, String, String),
    ) {
        let (call_id, to_tag, from_tag) = replaces;
        let other = self
            .by_dialog
            .get(&(call_id.clone(), to_tag.clone()))
            .or_else(|| self.by_dialog.get(&(call_id.clone(), from_tag.clone())))
            .copied()
            .or_else(|| {
                // A call the agent placed that still rings: an early dialog, not yet in the
                // dialog table.
                self.calls
                    .iter()
                    .find(|(_, c)| {
                        !c.caller.answered
                            && c.caller.invite.headers.get("Call-ID") == Some(call_id.as_str())
                            && (c.caller.local_tag == to_tag || c.caller.local_tag == from_tag)
                    })
                    .map(|(id, _)| (*id, Leg::Caller))
            });
        let Some((other_id, other_leg)) = other.filter(|(o, _)| *o != id) else {
            // Replaces names no dialog of ours (RFC 3891: 481).
            return self.plain(tx, 481);
        };
        // The customer's call is the one where the referrer is the agent; the consultation
        // the one they placed.
        let (customer, consult) = match (leg, other_leg) {
            (Leg::Agent, Leg::Caller) => (id, other_id),
            (Leg::Caller, Leg::Agent) => (other_id, id),
            _ => return self.plain(tx, 403),
        };
        let (Some(x), Some(y)) = (self.calls.get(&customer), self.calls.get(&consult)) else {
            return self.plain(tx, 481);
        };
        let agent_user = x.agent.as_ref().map(|a| a.user.clone());
        let same_person =
            matches!((&agent_user, &y.identity), (Some(a), Caller::User(u)) if a == u);
        if !same_person || x.phase != Phase::Connected || x.cb.is_some() || x.attended.is_some() {
            return self.plain(tx, 403);
        }
        let y_connected = y.phase == Phase::Connected && y.agent.is_some();
        let mut h = Headers::default();
        h.push(
            "Contact",
            format!("<sip:switchboard@{}>", self.cfg.contact_host),
        );
        self.respond(tx, 202, None, h, Bytes::new());
        let notify = (id, leg);
        if !y_connected {
            return self.semi_attended(now, customer, consult, notify);
        }
        self.reinvite_consulted(customer, consult, notify);
    }

    /// The consultation still rings: the customer goes where it rings, as a blind transfer.
    fn semi_attended(&mut self, now: Instant, customer: u64, consult: u64, notify: (u64, Leg)) {
        let Some(route) = self.calls.get(&consult).map(|c| c.route.clone()) else {
            return;
        };
        let route = match route {
            Route::Extension(u) => Route::Extension(u),
            r @ (Route::Queue(_) | Route::Menu(_) | Route::Outbound(_)) => r,
            _ => {
                self.notify_dialog(notify, "SIP/2.0 403 Forbidden");
                return;
            }
        };
        if let Some(c) = self.calls.get(&customer) {
            info!(parent: &c.span, "attended transfer while the consultation rings: blind transfer");
        }
        self.notify_dialog(notify, "SIP/2.0 200 OK");
        // The consulted party is rung again for the customer: the consultation ends first
        // (its phones are cancelled, its busy marks released).
        self.end_call(now, consult, EndReason::Transferred, None);
        self.blind_transfer(now, customer, route);
    }

    /// Re-INVITE the consulted party with the customer's media.
    fn reinvite_consulted(&mut self, customer: u64, consult: u64, notify: (u64, Leg)) {
        let Some(x) = self.calls.get(&customer) else {
            return;
        };
        let Some(ports) = x.ports else {
            return;
        };
        let media = x.caller.media;
        let span = x.span.clone();
        let Some(b) = self.calls.get_mut(&consult).and_then(|y| y.agent.as_mut()) else {
            return;
        };
        let contact = contact_for(&self.cfg, &b.dialog.flow, "switchboard");
        let local = LocalMedia {
            session_id: b.local.session_id,
            version: b.local.version + 1,
            addr: ports.addr,
            port: ports.agent,
            law: media.law,
            pt: media.pt,
            telephone_event: media.telephone_event,
            direction: Direction::SendRecv,
            webrtc: None,
            sdes: None,
        };
        let req = reinvite(&mut b.dialog, contact, local.offer());
        let flow = b.dialog.flow;
        info!(parent: &span, to = %b.user, "attended transfer: re-INVITE to the consulted party");
        let tx = self.send(flow, req, Role::Reinvite(consult));
        if let Some(x) = self.calls.get_mut(&customer) {
            x.attended = Some(Attended {
                consult,
                tx,
                local,
                notify,
            });
        }
    }

    /// The consulted party's answer to our re-INVITE `tx` (consultation `consult`).
    pub(super) fn reinvite_response(
        &mut self,
        now: Instant,
        consult: u64,
        tx: TxId,
        resp: Response,
    ) {
        if resp.status < 200 {
            return;
        }
        self.by_client.remove(&tx);
        let customer = self
            .calls
            .iter()
            .find(|(_, c)| {
                c.attended
                    .as_ref()
                    .is_some_and(|a| a.tx == tx && a.consult == consult)
            })
            .map(|(id, _)| *id);
        let Some(customer) = customer else {
            // The transfer is gone (the customer hung up meanwhile): acknowledge, and give
            // the consulted party the consultation's media back.
            if (200..300).contains(&resp.status) {
                self.ack_consulted(consult, tx, &resp);
                self.restore_consulted(consult);
            }
            return;
        };
        let Some(att) = self
            .calls
            .get_mut(&customer)
            .and_then(|c| c.attended.take())
        else {
            return;
        };
        if resp.status >= 300 {
            let frag = format!("SIP/2.0 {} {}", resp.status, resp.reason);
            if let Some(c) = self.calls.get(&customer) {
                info!(parent: &c.span, status = resp.status, "attended transfer failed: the consulted party refused");
            }
            return self.notify_dialog(att.notify, &frag);
        }
        self.ack_consulted(consult, tx, &resp);
        let answer = SessionDescription::parse(&resp.body).and_then(|sd| negotiate(&sd));
        let Ok(n) = answer else {
            // The consulted party was moved: give it its consultation back.
            self.restore_consulted(consult);
            return self.notify_dialog(att.notify, "SIP/2.0 488 Not Acceptable Here");
        };
        self.join_consulted(now, customer, consult, att, n);
    }

    /// The consulted party now hears the customer: the agent is let go from both calls.
    fn join_consulted(
        &mut self,
        now: Instant,
        customer: u64,
        consult: u64,
        att: Attended,
        n: Negotiated,
    ) {
        if self.calls.get(&consult).is_none_or(|y| y.agent.is_none()) {
            // The consultation ended meanwhile: nothing to join.
            return self.notify_dialog(att.notify, "SIP/2.0 487 Request Terminated");
        }
        // The agent's phone learns first, while its dialogs are still up.
        self.notify_dialog(att.notify, "SIP/2.0 200 OK");
        let agent = self
            .calls
            .get(&customer)
            .and_then(|c| c.history.agent.clone())
            .unwrap_or_default();
        self.let_agent_go(now, customer, true, "transferred");
        let Some(y) = self.calls.get_mut(&consult) else {
            return;
        };
        let Some(mut b) = y.agent.take() else {
            return;
        };
        // The consultation's busy mark on the consulted user moves to the customer's call.
        let had_mark = y.busy_users.contains(&b.user);
        y.busy_users.retain(|u| *u != b.user);
        let key = (b.dialog.call_id.clone(), b.dialog.local_tag.clone());
        b.local = att.local;
        b.on_hold = false;
        let host = b.dialog.flow.remote.ip();
        let name = b
            .agent
            .map_or_else(|| b.user.clone(), |a| self.dir.agents[a].name().to_owned());
        let user = b.user.clone();
        self.by_dialog.insert(key, (customer, Leg::Agent));
        let Some(x) = self.calls.get_mut(&customer) else {
            return;
        };
        info!(parent: &x.span, from = %agent, to = %name, "attended transfer done");
        x.agent = Some(b);
        if had_mark {
            x.busy_users.push(user.clone());
        }
        x.phase = Phase::Connected;
        x.transfer_back = None;
        x.history.begin_segment(&name, self.wall);
        x.history.agent = Some(name);
        self.out
            .push_back(media_cmd(customer, remote_of(Leg::Agent, &n, Some(host))));
        self.out
            .push_back(media_cmd(customer, SessionCommand::Stop(Leg::Caller)));
        self.out
            .push_back(media_cmd(customer, SessionCommand::Bridge(true)));
        if !had_mark {
            self.mark_busy(customer, &user);
        }
        self.end_call(now, consult, EndReason::Transferred, None);
    }

    /// ACK a 2xx of the consulted party to one of our re-INVITEs.
    fn ack_consulted(&mut self, consult: u64, tx: TxId, resp: &Response) {
        if let Some(b) = self.calls.get(&consult).and_then(|y| y.agent.as_ref()) {
            let ack = b.dialog.ack(cseq_num(&resp.headers));
            let flow = b.dialog.flow;
            self.ack_2xx(tx, ack, flow);
        }
    }

    /// Re-INVITE the consulted party back to the consultation's own media.
    fn restore_consulted(&mut self, consult: u64) {
        let Some(y) = self.calls.get_mut(&consult) else {
            return;
        };
        let span = y.span.clone();
        let Some(b) = y.agent.as_mut() else {
            return;
        };
        let contact = contact_for(&self.cfg, &b.dialog.flow, "switchboard");
        // Past the version of the transfer's offer.
        b.local.version += 2;
        let req = reinvite(&mut b.dialog, contact, b.local.offer());
        let flow = b.dialog.flow;
        info!(parent: &span, "attended transfer fell through: the consulted party gets its call back");
        self.send(flow, req, Role::Restore(consult));
    }

    /// The consulted party's answer to the restoring re-INVITE.
    pub(super) fn restore_response(&mut self, consult: u64, tx: TxId, resp: Response) {
        if resp.status < 200 {
            return;
        }
        self.by_client.remove(&tx);
        if resp.status >= 300 {
            return;
        }
        self.ack_consulted(consult, tx, &resp);
        let host = self
            .calls
            .get(&consult)
            .and_then(|y| y.agent.as_ref())
            .map(|b| b.dialog.flow.remote.ip());
        if let Ok(n) = SessionDescription::parse(&resp.body).and_then(|sd| negotiate(&sd)) {
            self.out
                .push_back(media_cmd(consult, remote_of(Leg::Agent, &n, host)));
        }
    }

    /// A NOTIFY of the transfer's progress in dialog (call, leg), ending the implicit
    /// subscription.
    pub(super) fn notify_dialog(&mut self, (id, leg): (u64, Leg), sipfrag: &str) {
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        let Some(d) = call.dialog_mut(leg) else {
            return;
        };
        let contact = contact_for(&self.cfg, &d.flow, "switchboard");
        let mut req = d.request(Method::Notify);
        req.headers.push("Contact", contact);
        req.headers.push("Event", "refer");
        req.headers
            .push("Subscription-State", "terminated;reason=noresource");
        req.headers
            .push("Content-Type", "message/sipfrag;version=2.0");
        req.body = Bytes::from(format!("{sipfrag}\r\n"));
        let flow = d.flow;
        self.send(flow, req, Role::Fire);
    }
}

#[cfg(test)]
mod tests {
    use super::replaces_of;

    #[test]
    fn replaces_is_read_from_the_refer_to_headers() {
        assert_eq!(
            replaces_of("Replaces=abc%40host%3Bto-tag%3D12%3Bfrom-tag%3D34"),
            Some(("abc@host".into(), "12".into(), "34".into()))
        );
        assert_eq!(
            replaces_of("X=1&replaces=id%3Bfrom-tag%3Da%3Bto-tag%3Db%3Bearly-only"),
            Some(("id".into(), "b".into(), "a".into()))
        );
        assert_eq!(replaces_of("Replaces=id%3Bto-tag%3D1"), None);
        assert_eq!(replaces_of("Other=1"), None);
    }
}
