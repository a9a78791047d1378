//! Calls out through carrier trunks: a registered user dials a number that is not internal,
//! an outbound route matches it (emergency routes first), and the call goes out through the
//! route's first trunk that has room, with the caller ID of the user, the route or the trunk.
//!
//! Toll-fraud guards come before anything is sent: only an authenticated user dials out (a
//! trunk or an unauthenticated caller never reaches a route), the route's class must be one
//! the user may dial (emergency always), and the user and each trunk have limits on calls at
//! once. Every refusal is logged at warn level with the user, the route and the reason.
//!
//! The carrier's digest challenge (401/407) is answered once per INVITE with the trunk's
//! credentials. A proxy that does not answer at all within the trunk's `answer_timeout`, or
//! answers 408 or 5xx, is given up for the trunk's next proxy, then the route's next trunk;
//! any other refusal (busy, not found) goes back to the caller as it came. Early media (183
//! with SDP: the carrier's ringback or "this number is not in service") is bridged to the
//! caller before the answer.

use super::*;
use crate::config::{Carrier, DialClass, OutboundRoute};

/// A call out: the route chosen and what is sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct OutPlan {
    /// The route's name.
    pub(super) route: String,
    /// Its class.
    pub(super) class: DialClass,
    /// The number as sent to the carrier (after strip and prepend).
    pub(super) number: String,
    /// Carriers (by name: a reload may reorder them) to try, in order.
    pub(super) trunks: Vec<String>,
    /// The caller ID sent.
    pub(super) caller_id: String,
    /// The user who dials (whose limits count it).
    pub(super) user: String,
}

/// Where a call out is in its trunks and proxies.
#[derive(Debug, Clone, Default)]
pub(super) struct Dialing {
    /// Index into the plan's trunks.
    trunk: usize,
    /// Index into that trunk's proxies.
    proxy: usize,
    /// The carrier has answered the current INVITE in some way.
    heard: bool,
    /// The current INVITE already carries credentials.
    authed: bool,
    /// Early media is bridged.
    early: bool,
    round: u64,
}

impl CallControl {
    /// An emergency number, if `number` is one (for a caller who may dial out at all).
    pub(super) fn emergency_route(
        &self,
        number: &str,
        caller: &Caller,
    ) -> Option<Result<Route, u16>> {
        let o = &self.cfg.outbound;
        let r = o.routes.iter().find(|r| {
            r.class == DialClass::Emergency && r.patterns.iter().any(|p| p.matches(number))
        })?;
        Some(self.plan(number, caller, r))
    }

    /// An outbound route for a number the internal dial plan does not know.
    pub(super) fn outbound_route(
        &self,
        number: &str,
        caller: &Caller,
    ) -> Option<Result<Route, u16>> {
        let r = self
            .cfg
            .outbound
            .routes
            .iter()
            .find(|r| r.patterns.iter().any(|p| p.matches(number)))?;
        Some(self.plan(number, caller, r))
    }

    /// The plan for `number` on route `r`, or the status that refuses it (logged).
    fn plan(&self, number: &str, caller: &Caller, r: &OutboundRoute) -> Result<Route, u16> {
        let o = &self.cfg.outbound;
        let refuse = |user: &str, reason: &str, status: u16| {
            warn!(user, route = %r.name, class = r.class.as_str(), reason, status, "outbound call refused");
            debug!(number, "refused number");
            Err(status)
        };
        let user = match caller {
            Caller::User(u) => u.as_str(),
            Caller::Trunk(t) => {
                return refuse(&format!("trunk:{t}"), "a trunk may not dial out", 403)
            }
            Caller::Anonymous => return refuse("anonymous", "not authenticated", 403),
        };
        let policy = o.users.get(user).unwrap_or(&o.default_policy);
        if r.class != DialClass::Emergency && !policy.classes.contains(&r.class) {
            return refuse(user, "class not allowed for this user", 403);
        }
        if r.class != DialClass::Emergency {
            if let Some(max) = policy.max_calls {
                let now_out = self
                    .calls
                    .values()
                    .filter(|c| matches!(&c.route, Route::Outbound(p) if p.user == user))
                    .count();
                if now_out >= max {
                    return refuse(user, "the user's limit of calls at once", 403);
                }
            }
        }
        let trunks: Vec<String> = r
            .trunks
            .iter()
            .filter(|t| self.carrier_has_room_except(t, None))
            .cloned()
            .collect();
        if trunks.is_empty() {
            return refuse(user, "every trunk of the route is at its limit", 503);
        }
        let rest = number.get(r.strip.min(number.len())..).unwrap_or_default();
        // The user's own, else the first of their queues' (an agent dials for a queue), else
        // the route's, else the trunk's.
        let queue_id = self.dir.agent_by_user(user).and_then(|a| {
            let queues = &self.dir.agents[a].setup.acd.queues;
            queues.iter().find_map(|m| {
                self.dir
                    .queues
                    .iter()
                    .find(|q| !q.removed && q.setup.acd.name == m.queue)
                    .and_then(|q| q.setup.caller_id.clone())
            })
        });
        let caller_id = policy
            .caller_id
            .clone()
            .or(queue_id)
            .or_else(|| r.caller_id.clone())
            .or_else(|| self.carrier(&trunks[0]).and_then(|c| c.caller_id.clone()))
            .unwrap_or_else(|| user.to_owned());
        Ok(Route::Outbound(Box::new(OutPlan {
            route: r.name.clone(),
            class: r.class,
            number: format!("{}{rest}", r.prepend),
            trunks,
            caller_id,
            user: user.to_owned(),
        })))
    }

    /// The carrier trunk named `name`.
    fn carrier(&self, name: &str) -> Option<&Carrier> {
        self.cfg.outbound.carriers.iter().find(|c| c.name == name)
    }

    /// Send the INVITE of call `id` to the carrier and proxy it is at.
    pub(super) fn dial_out(&mut self, now: Instant, id: u64) {
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        let Route::Outbound(plan) = &call.route else {
            return;
        };
        let plan = plan.clone();
        let Some(ports) = call.ports else {
            return;
        };
        let d = call.dialing.get_or_insert_with(Dialing::default);
        d.heard = false;
        d.authed = false;
        d.round += 1;
        let (ti, pi, round) = (d.trunk, d.proxy, d.round);
        let Some(carrier) = plan
            .trunks
            .get(ti)
            .and_then(|t| self.cfg.outbound.carriers.iter().find(|c| &c.name == t))
            .cloned()
        else {
            // A reload took the trunk away.
            return self.dial_out_gone(now, id);
        };
        let Some(&proxy) = carrier.proxies.get(pi) else {
            return self.dial_out_gone(now, id);
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
        let span = call.span.clone();
        let flow = Flow {
            transport: Transport::Udp,
            remote: proxy,
            conn: None,
        };
        let domain = carrier.domain.clone().unwrap_or_else(|| proxy.to_string());
        let contact_user = carrier
            .auth
            .as_ref()
            .map_or("switchboard", |(u, _)| u.as_str())
            .to_owned();
        let number = &plan.number;
        let from_host = carrier.domain.clone().unwrap_or_else(|| self.host.clone());
        let from = format!("<sip:{}@{from_host}>", plan.caller_id);
        let mut invite = self.new_invite(
            &from,
            format!("<sip:{number}@{domain}>"),
            format!("sip:{number}@{domain}"),
            &flow,
            &contact_user,
            Bytes::from(local.offer()),
        );
        invite.headers.push("P-Asserted-Identity", from);
        info!(parent: &span, route = %plan.route, trunk = %carrier.name, proxy = %proxy, "calling out");
        self.send_out(now, id, invite, flow, local, &carrier.name);
        self.timer(now + carrier.answer_timeout, Timer::OutboundTry(id, round));
    }

    /// The trunk or proxy a call out was to use is no longer configured: the call fails
    /// (back to the agent who transferred it, if any).
    fn dial_out_gone(&mut self, now: Instant, id: u64) {
        if let Some(call) = self.calls.get(&id) {
            warn!(parent: &call.span, "the trunk of a call out is no longer configured");
        }
        if !self.transfer_failed(now, id) {
            self.end_call(now, id, EndReason::Refused(503), None);
        }
    }

    /// Send `invite` as the call's (single) ringing attempt.
    fn send_out(
        &mut self,
        _now: Instant,
        id: u64,
        invite: Request,
        flow: Flow,
        local: LocalMedia,
        trunk: &str,
    ) {
        let tx = self.send(flow, invite.clone(), Role::Fork(id));
        let wall = self.wall;
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        let h = &mut call.history;
        h.first_offer.get_or_insert(wall);
        h.attempts.push(RingAttempt {
            agent: format!("trunk:{trunk}"),
            contact: invite.uri.clone(),
            started: wall,
            ended: None,
            result: RingResult::Ringing,
        });
        let attempt = h.attempts.len() - 1;
        let user = match &call.route {
            Route::Outbound(p) => p.number.clone(),
            _ => String::new(),
        };
        call.attempts.push(Attempt {
            agent: None,
            user,
            forks: vec![Fork {
                tx,
                attempt,
                flow,
                invite,
                failed: None,
                webrtc: false,
                sdes: false,
            }],
            local,
            local_webrtc: None,
            local_sdes: None,
        });
    }

    /// A provisional answer from the carrier: ringing for the caller, or its early media.
    pub(super) fn outbound_provisional(&mut self, id: u64, resp: &Response) {
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        let Some(d) = call.dialing.as_mut() else {
            return;
        };
        d.heard = true;
        if resp.status == 100 || call.caller.answered {
            return;
        }
        let early = resp.status == 183 && !resp.body.is_empty();
        if !early {
            let (tx, tag) = (call.caller.invite_tx, call.caller.local_tag.clone());
            return self.respond(tx, 180, Some(tag), Headers::default(), Bytes::new());
        }
        if d.early {
            return;
        }
        let Ok(n) = SessionDescription::parse(&resp.body).and_then(|sd| negotiate(&sd)) else {
            return;
        };
        d.early = true;
        let host = resp
            .headers
            .get("Contact")
            .and_then(|c| NameAddr::parse(c).ok())
            .and_then(|c| c.uri.host.to_string().parse().ok());
        debug!(parent: &call.span, "early media from the carrier");
        self.out
            .push_back(media_cmd(id, remote_of(Leg::Agent, &n, host)));
        self.out
            .push_back(media_cmd(id, SessionCommand::Bridge(true)));
        self.answer_caller_with(id, 183);
    }

    /// A final failure of the carrier's INVITE (`tx`): answered with credentials, the next
    /// proxy or trunk, or the caller told. `true` when the call goes on.
    pub(super) fn outbound_failed(
        &mut self,
        now: Instant,
        id: u64,
        tx: TxId,
        resp: &Response,
    ) -> bool {
        let status = resp.status;
        if matches!(status, 401 | 407) && self.outbound_auth(now, id, tx, resp) {
            return true;
        }
        let failover = matches!(status, 408 | 500 | 502 | 503 | 504);
        if failover && self.next_proxy(now, id, tx, status) {
            return true;
        }
        false
    }

    /// Send the INVITE again with the answer to the carrier's challenge.
    fn outbound_auth(&mut self, now: Instant, id: u64, tx: TxId, resp: &Response) -> bool {
        let Some(call) = self.calls.get_mut(&id) else {
            return false;
        };
        let (Route::Outbound(plan), Some(d)) = (&call.route, call.dialing.as_mut()) else {
            return false;
        };
        if d.authed {
            return false;
        }
        let Some(carrier) = plan
            .trunks
            .get(d.trunk)
            .and_then(|t| self.cfg.outbound.carriers.iter().find(|c| &c.name == t))
        else {
            return false;
        };
        let Some((user, password)) = carrier.auth.clone() else {
            warn!(parent: &call.span, trunk = %carrier.name, "the carrier asks for credentials the trunk does not have");
            return false;
        };
        let (ask, answer) = if resp.status == 401 {
            ("WWW-Authenticate", "Authorization")
        } else {
            ("Proxy-Authenticate", "Proxy-Authorization")
        };
        let challenge = resp
            .headers
            .get_all(ask)
            .find_map(|v| sip::digest::parse_challenge(v).ok());
        let Some(challenge) = challenge else {
            warn!(parent: &call.span, trunk = %carrier.name, "the carrier's challenge cannot be answered");
            return false;
        };
        let Some(ai) = call
            .attempts
            .iter()
            .position(|a| a.forks.iter().any(|f| f.tx == tx))
        else {
            return false;
        };
        d.authed = true;
        let attempt = call.attempts.remove(ai);
        let Some(fork) = attempt.forks.into_iter().next() else {
            return false;
        };
        call.history.attempts.pop();
        let mut invite = fork.invite;
        let cseq = cseq_num(&invite.headers) + 1;
        invite.headers.remove("CSeq");
        invite.headers.push("CSeq", format!("{cseq} INVITE"));
        let cnonce = format!("{:016x}", self.rng.next_u64());
        let value = sip::digest::authorization(
            &challenge,
            &user,
            &password,
            "INVITE",
            &invite.uri,
            &cnonce,
            1,
        );
        invite.headers.remove(answer);
        invite.headers.push(answer, value);
        self.by_client.remove(&tx);
        let name = carrier.name.clone();
        debug!("answering the carrier's challenge");
        self.send_out(now, id, invite, fork.flow, attempt.local, &name);
        true
    }

    /// The current proxy failed (`status`, 408 for no answer): the trunk's next proxy, or the
    /// route's next trunk with room. `false` when none is left.
    fn next_proxy(&mut self, now: Instant, id: u64, tx: TxId, status: u16) -> bool {
        let Some(call) = self.calls.get_mut(&id) else {
            return false;
        };
        let (Route::Outbound(plan), Some(d)) = (&call.route, call.dialing.as_mut()) else {
            return false;
        };
        let plan = plan.clone();
        let current = d.trunk;
        let proxies = plan
            .trunks
            .get(current)
            .and_then(|t| self.cfg.outbound.carriers.iter().find(|c| &c.name == t))
            .map_or(0, |c| c.proxies.len());
        let (mut ti, mut pi) = (current, d.proxy + 1);
        if pi >= proxies {
            ti += 1;
            pi = 0;
        }
        let span = call.span.clone();
        call.attempts.retain(|a| a.forks.iter().all(|f| f.tx != tx));
        self.by_client.remove(&tx);
        let failed = plan.trunks.get(current).cloned().unwrap_or_default();
        // A trunk that filled up meanwhile is skipped.
        while ti < plan.trunks.len()
            && ti != current
            && !self.carrier_has_room_except(&plan.trunks[ti], Some(id))
        {
            ti += 1;
        }
        let Some(call) = self.calls.get_mut(&id) else {
            return false;
        };
        let Some(d) = call.dialing.as_mut() else {
            return false;
        };
        if ti >= plan.trunks.len() {
            warn!(parent: &span, trunk = %failed, status, "outbound call failed on every trunk of its route");
            return false;
        }
        warn!(parent: &span, trunk = %failed, status, "carrier did not take the call: trying the next");
        d.trunk = ti;
        d.proxy = pi;
        d.early = false;
        self.dial_out(now, id);
        true
    }

    /// Whether carrier `t` exists and has room for another call (not counting call `id`).
    fn carrier_has_room_except(&self, t: &str, id: Option<u64>) -> bool {
        let Some(c) = self.carrier(t) else {
            return false;
        };
        let Some(max) = c.max_calls else {
            return true;
        };
        let others = self
            .calls
            .iter()
            .filter(|(cid, c)| {
                // A call whose media is still opening counts against its first trunk.
                Some(**cid) != id
                    && match (&c.route, &c.dialing) {
                        (Route::Outbound(p), Some(d)) => {
                            p.trunks.get(d.trunk).is_some_and(|n| n == t)
                        }
                        (Route::Outbound(p), None) => p.trunks.first().is_some_and(|n| n == t),
                        _ => false,
                    }
            })
            .count();
        others < max
    }

    /// The answer timer of round `round`: a carrier that has said nothing at all is given up.
    pub(super) fn outbound_try_timeout(&mut self, now: Instant, id: u64, round: u64) {
        let Some(call) = self.calls.get(&id) else {
            return;
        };
        let Some(d) = &call.dialing else {
            return;
        };
        if d.round != round
            || d.heard
            || call.phase != Phase::Ringing
            || !matches!(call.route, Route::Outbound(_))
        {
            return;
        }
        let Some(fork) = call.attempts.first().and_then(|a| a.forks.first()) else {
            return;
        };
        let (tx, invite, flow, i) = (fork.tx, fork.invite.clone(), fork.flow, fork.attempt);
        let wall = self.wall;
        if let Some(call) = self.calls.get_mut(&id) {
            call.history.rang(i, RingResult::Refused(408), wall);
        }
        // Nothing heard: no CANCEL is allowed, but a late 2xx still gets ACK and BYE.
        if !self.next_proxy(now, id, tx, 408) {
            self.orphan(now, tx, invite, flow);
            self.cancel_on_1xx.insert(tx);
            return self.end_call(now, id, EndReason::Refused(503), None);
        }
        self.orphan(now, tx, invite, flow);
        self.cancel_on_1xx.insert(tx);
    }

    /// The carrier of the call out `id` now uses, for its record.
    pub(super) fn outbound_trunk(&self, call: &Call) -> Option<&Carrier> {
        let (Route::Outbound(p), Some(d)) = (&call.route, &call.dialing) else {
            return None;
        };
        p.trunks.get(d.trunk).and_then(|t| self.carrier(t))
    }
}
