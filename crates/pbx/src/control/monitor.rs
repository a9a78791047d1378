//! Supervisor monitoring from a phone: a supervisor dials a monitoring code and an agent's
//! number (`*44` listen, `*45` whisper, `*46` barge, then e.g. `1001`); if a rule lets them
//! monitor that agent and the agent is talking, the relay adds a supervisor leg to the
//! agent's call and mixes: listening, the supervisor hears both parties and nobody hears
//! them; whispering, the agent hears them too and the caller does not; barging, everyone
//! hears everyone. During monitoring the supervisor's keys switch the mode (4 listen,
//! 5 whisper, 6 barge) and 7 takes the call over: the agent is let go and the supervisor
//! keeps the caller. The supervisor's hang-up ends only their leg; the end of the call, or
//! the agent leaving it, hangs up on the supervisor. Calls nobody monitors carry no
//! supervisor leg and cost nothing more.

use super::*;
use media::relay::MonitorMode;

/// A supervisor on a call.
#[derive(Debug)]
pub(super) struct SupervisorLeg {
    /// Their SIP user.
    pub(super) user: String,
    invite_tx: TxId,
    invite: Request,
    flow: Flow,
    local_tag: String,
    pub(super) dialog: Option<Dialog>,
    offer: SessionDescription,
    media: Negotiated,
    mode: MonitorMode,
    /// Our take-over re-INVITE, while it is out.
    takeover: Option<(TxId, LocalMedia)>,
    /// Our side of the leg's media, once answered (for the phone's session refreshes).
    local: Option<LocalMedia>,
}

impl CallControl {
    /// The number dialled is a monitoring code and an agent's number: (agent user, mode).
    pub(super) fn monitor_code(&self, number: &str) -> Option<(String, MonitorMode)> {
        let f = &self.cfg.features;
        [
            (&f.monitor, MonitorMode::Listen),
            (&f.whisper, MonitorMode::Whisper),
            (&f.barge, MonitorMode::Barge),
        ]
        .into_iter()
        .filter(|(code, _)| !code.is_empty())
        .find_map(|(code, mode)| {
            let rest = number.strip_prefix(code.as_str())?;
            (!rest.is_empty()).then(|| (rest.to_owned(), mode))
        })
    }

    /// The call agent user `agent` is talking in that nobody monitors yet.
    fn monitorable_call(&self, agent: &str) -> Option<u64> {
        self.calls
            .iter()
            .find(|(_, c)| {
                c.phase == Phase::Connected
                    && c.supervisor.is_none()
                    && c.supervisor_ring.is_none()
                    && c.agent.as_ref().is_some_and(|a| a.user == agent)
            })
            .map(|(id, _)| *id)
    }

    /// Whether user `supervisor` may monitor agent user `agent`.
    fn may_monitor(&self, supervisor: &str, agent: &str) -> bool {
        let Some(ai) = self.dir.agent_by_user(agent) else {
            return false;
        };
        let a = &self.dir.agents[ai];
        self.cfg.supervisors.iter().any(|r| {
            r.user == supervisor
                && (r.all
                    || r.agents.iter().any(|n| n == a.name())
                    || a.setup
                        .acd
                        .queues
                        .iter()
                        .any(|m| r.queues.contains(&m.queue)))
        })
    }

    /// A supervisor's INVITE to monitor `agent` (its offer already negotiated).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn monitor_call(
        &mut self,
        tx: TxId,
        invite: Request,
        flow: Flow,
        caller: &Caller,
        agent: String,
        mode: MonitorMode,
        offer: SessionDescription,
        media: Negotiated,
    ) {
        let Caller::User(user) = caller else {
            return self.plain(tx, 403);
        };
        if !self.may_monitor(user, &agent) {
            warn!(supervisor = %user, agent = %agent, "monitoring refused: no rule allows it");
            return self.plain(tx, 403);
        }
        let target = self.monitorable_call(&agent);
        let Some(id) = target else {
            info!(supervisor = %user, agent = %agent, "monitoring: the agent is on no call");
            return self.plain(tx, 480);
        };
        let local_tag = self.token();
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        info!(parent: &call.span, supervisor = %user, ?mode, "monitoring requested");
        call.supervisor = Some(SupervisorLeg {
            user: user.clone(),
            invite_tx: tx,
            invite,
            flow,
            local_tag,
            dialog: None,
            offer,
            media,
            mode,
            takeover: None,
            local: None,
        });
        self.by_sup_invite.insert(tx, id);
        self.out
            .push_back(Output::Media(SessionId(id), MediaRequest::AttachSupervisor));
    }

    /// The relay attached (or could not attach) the supervisor's leg to call `id`.
    pub(super) fn supervisor_attached(&mut self, id: u64, port: Option<u16>) {
        if self
            .calls
            .get(&id)
            .is_some_and(|c| c.supervisor_ring.is_some())
        {
            return self.ring_supervisor(id, port);
        }
        let contact = format!("<sip:switchboard@{}>", self.cfg.contact_host);
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        let span = call.span.clone();
        let (Some(s), Some(ports)) = (call.supervisor.as_mut(), call.ports) else {
            return;
        };
        let tx = s.invite_tx;
        let Some(port) = port else {
            warn!(parent: &call.span, "no ports for the supervisor's leg");
            call.supervisor = None;
            self.by_sup_invite.remove(&tx);
            let mut h = Headers::default();
            h.push("Retry-After", "10");
            return self.respond(tx, 503, None, h, Bytes::new());
        };
        let local = LocalMedia {
            session_id: id,
            version: 1,
            addr: ports.addr,
            port,
            law: s.media.law,
            pt: s.media.pt,
            telephone_event: s.media.telephone_event,
            direction: s.media.direction.answer(),
            webrtc: None,
            sdes: None,
        };
        let body = local.answer(&s.offer, s.media.index);
        s.local = Some(local);
        let mut h = Headers::default();
        h.push("Contact", contact);
        h.push("Allow", ALLOW);
        h.push("Content-Type", "application/sdp");
        let tag = s.local_tag.clone();
        match Dialog::uas(&s.invite, &tag, s.flow) {
            Ok(d) => {
                self.by_dialog
                    .insert((d.call_id.clone(), tag.clone()), (id, Leg::Supervisor));
                s.dialog = Some(d);
            }
            Err(e) => warn!(parent: &span, error = %e, "supervisor dialog incomplete"),
        }
        let (n, host, mode, user) = (s.media, s.flow.remote.ip(), s.mode, s.user.clone());
        self.by_sup_invite.remove(&tx);
        set_variable(&mut call.variables, "monitored_by", user);
        info!(parent: &call.span, ?mode, "supervisor on the call");
        self.respond(tx, 200, Some(tag), h, Bytes::from(body));
        self.out
            .push_back(media_cmd(id, remote_of(Leg::Supervisor, &n, Some(host))));
        self.out
            .push_back(media_cmd(id, SessionCommand::Monitor(mode)));
    }

    /// The supervisor's CANCEL before their leg was answered.
    pub(super) fn supervisor_cancelled(&mut self, tx: TxId) -> bool {
        let Some(id) = self.by_sup_invite.remove(&tx) else {
            return false;
        };
        if let Some(call) = self.calls.get_mut(&id) {
            call.supervisor = None;
            self.out
                .push_back(media_cmd(id, SessionCommand::DetachSupervisor));
        }
        true
    }

    /// The supervisor leaves call `id` (their BYE, a silent leg, the end of what they
    /// monitored); a BYE is sent to them unless they hung up themselves.
    pub(super) fn drop_supervisor(&mut self, id: u64, send_bye: bool) {
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        let Some(mut s) = call.supervisor.take() else {
            return;
        };
        info!(parent: &call.span, supervisor = %s.user, "supervisor left the call");
        self.by_sup_invite.remove(&s.invite_tx);
        match s.dialog.as_mut() {
            Some(d) => {
                self.by_dialog
                    .remove(&(d.call_id.clone(), d.local_tag.clone()));
                if send_bye {
                    let bye = d.request(Method::Bye);
                    let flow = d.flow;
                    self.send(flow, bye, Role::Fire);
                }
            }
            None => self.plain(s.invite_tx, 487),
        }
        self.out
            .push_back(media_cmd(id, SessionCommand::DetachSupervisor));
        if s.mode == MonitorMode::Consult && s.takeover.is_none() {
            self.consult_back(id);
        }
    }

    /// A key from the supervisor: 4 listen, 5 whisper, 6 barge, 7 take over.
    pub(super) fn supervisor_key(&mut self, now: Instant, id: u64, digit: char) {
        let consult = self
            .calls
            .get(&id)
            .and_then(|c| c.supervisor.as_ref())
            .is_some_and(|s| s.mode == MonitorMode::Consult);
        if consult {
            // A colleague being consulted is no supervisor.
            return;
        }
        let mode = match digit {
            '4' => MonitorMode::Listen,
            '5' => MonitorMode::Whisper,
            '6' => MonitorMode::Barge,
            '7' => return self.take_over(now, id),
            _ => return,
        };
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        let Some(s) = call.supervisor.as_mut() else {
            return;
        };
        if s.mode != mode && s.takeover.is_none() {
            s.mode = mode;
            info!(parent: &call.span, ?mode, "monitoring mode");
            self.out
                .push_back(media_cmd(id, SessionCommand::Monitor(mode)));
        }
    }

    /// A take-over (or the completion of a keyed attended transfer) that the third party's
    /// phone refused: a supervisor just stays where they were; a consultation whose agent
    /// has already hung up ends the call (nobody is left on the center's side).
    fn take_over_failed(&mut self, now: Instant, id: u64) {
        let agent_gone = self.calls.get(&id).is_some_and(|c| c.agent_hung_up);
        if agent_gone {
            self.end_call(now, id, EndReason::AgentHangup, Some(Leg::Agent));
        }
    }

    /// Take over: the supervisor's phone is re-INVITEd onto the agent side of the call.
    fn take_over(&mut self, _now: Instant, id: u64) {
        let contact = format!("<sip:switchboard@{}>", self.cfg.contact_host);
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        let Some(ports) = call.ports else {
            return;
        };
        let media = call.caller.media;
        let span = call.span.clone();
        let Some(s) = call.supervisor.as_mut() else {
            return;
        };
        if s.takeover.is_some() {
            return;
        }
        let Some(d) = s.dialog.as_mut() else {
            return;
        };
        let local = LocalMedia {
            session_id: id,
            version: 2,
            addr: ports.addr,
            port: ports.agent,
            law: media.law,
            pt: media.pt,
            telephone_event: media.telephone_event,
            direction: Direction::SendRecv,
            webrtc: None,
            sdes: None,
        };
        let req = reinvite(d, contact, local.offer());
        let flow = d.flow;
        info!(parent: &span, "supervisor takes the call over");
        let tx = self.send(flow, req, Role::TakeOver(id));
        if let Some(s) = self.calls.get_mut(&id).and_then(|c| c.supervisor.as_mut()) {
            s.takeover = Some((tx, local));
        }
    }

    /// The supervisor's phone answered the take-over re-INVITE.
    pub(super) fn take_over_response(&mut self, now: Instant, id: u64, tx: TxId, resp: Response) {
        if resp.status < 200 {
            return;
        }
        self.by_client.remove(&tx);
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        let Some(s) = call.supervisor.as_mut() else {
            return;
        };
        let Some((ttx, local)) = s.takeover.take() else {
            return;
        };
        if ttx != tx {
            return;
        }
        let Some(d) = s.dialog.as_ref() else {
            return;
        };
        if resp.status >= 300 {
            info!(parent: &call.span, status = resp.status, "take-over refused by the supervisor's phone");
            return self.take_over_failed(now, id);
        }
        let ack = d.ack(cseq_num(&resp.headers));
        let flow = d.flow;
        self.ack_2xx(tx, ack, flow);
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        let Ok(n) = SessionDescription::parse(&resp.body).and_then(|sd| negotiate(&sd)) else {
            return self.take_over_failed(now, id);
        };
        // The agent goes; the supervisor becomes the call's agent side.
        let Some(s) = call.supervisor.take() else {
            return;
        };
        let Some(dialog) = s.dialog else {
            return;
        };
        let how = if s.mode == MonitorMode::Consult {
            "transferred"
        } else {
            "taken over"
        };
        self.let_agent_go(now, id, true, how);
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        let key = (dialog.call_id.clone(), dialog.local_tag.clone());
        let host = dialog.flow.remote.ip();
        let agent = self.dir.agent_by_user(&s.user);
        let name = agent.map_or_else(|| s.user.clone(), |a| self.dir.agents[a].name().to_owned());
        info!(parent: &call.span, supervisor = %name, "call taken over");
        call.agent = Some(AgentLeg {
            outside: false,
            dialog,
            agent,
            user: s.user.clone(),
            local,
            on_hold: false,
        });
        call.phase = Phase::Connected;
        call.history.begin_segment(&name, self.wall);
        call.history.agent = Some(name);
        self.by_dialog.insert(key, (id, Leg::Agent));
        self.mark_busy(id, &s.user);
        self.out
            .push_back(media_cmd(id, SessionCommand::DetachSupervisor));
        self.out
            .push_back(media_cmd(id, remote_of(Leg::Agent, &n, Some(host))));
        self.out
            .push_back(media_cmd(id, SessionCommand::Stop(Leg::Caller)));
        self.out
            .push_back(media_cmd(id, SessionCommand::Bridge(true)));
    }
}

/// The mode of the supervisor leg being rung for a call.
fn call_mode(call: Option<&Call>) -> Option<MonitorMode> {
    call.and_then(|c| c.supervisor_ring.as_ref())
        .map(|r| r.mode)
}

/// Set (or replace) a call variable.
fn set_variable(vars: &mut Vec<(String, String)>, name: &str, value: String) {
    match vars.iter_mut().find(|(k, _)| k == name) {
        Some(v) => v.1 = value,
        None => vars.push((name.to_owned(), value)),
    }
}

/// Monitoring asked from outside (the HTTP API): the supervisor's phone is rung.
#[derive(Debug)]
pub(super) struct SupRing {
    user: String,
    mode: MonitorMode,
    /// Our INVITE to their phone, once the relay has given the leg a port.
    out: Option<(TxId, Request, Flow, LocalMedia)>,
}

impl CallControl {
    /// Monitor agent `agent` (by name) from supervisor user `phone`'s phone, which is rung
    /// for it; the refusal in words.
    pub(super) fn monitor_request(
        &mut self,
        agent: &str,
        phone: &str,
        mode: MonitorMode,
    ) -> Result<(), String> {
        let Some(a) = self
            .dir
            .agents
            .iter()
            .find(|a| !a.removed && a.name() == agent)
        else {
            return Err(format!("no agent {agent:?}"));
        };
        let user = a.setup.user.clone();
        if !self.may_monitor(phone, &user) {
            warn!(supervisor = %phone, agent = %agent, "monitoring refused: no rule allows it");
            return Err(format!(
                "{phone} may not monitor {agent} (no [supervisors.{phone}] rule for them)"
            ));
        }
        if self.locations.get(phone).is_none_or(|b| b.is_empty()) {
            return Err(format!("{phone} has no phone registered"));
        }
        let target = self.monitorable_call(&user);
        let Some(id) = target else {
            return Err(format!("{agent} is on no call"));
        };
        let Some(call) = self.calls.get_mut(&id) else {
            return Err(format!("{agent} is on no call"));
        };
        info!(parent: &call.span, supervisor = %phone, ?mode, "monitoring asked from outside: ringing the supervisor");
        call.supervisor_ring = Some(SupRing {
            user: phone.to_owned(),
            mode,
            out: None,
        });
        self.out
            .push_back(Output::Media(SessionId(id), MediaRequest::AttachSupervisor));
        Ok(())
    }

    /// The relay gave the rung supervisor's leg a port (or could not): ring their phone.
    pub(super) fn ring_supervisor(&mut self, id: u64, port: Option<u16>) {
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        let Some(ports) = call.ports else {
            return;
        };
        let Some(port) = port else {
            warn!(parent: &call.span, "no ports for the supervisor's leg");
            if call
                .supervisor_ring
                .take()
                .is_some_and(|r| r.mode == MonitorMode::Consult)
            {
                self.consult_back(id);
            }
            return;
        };
        let media = call.caller.media;
        let agent = call
            .agent
            .as_ref()
            .map(|a| a.user.clone())
            .unwrap_or_default();
        let Some(user) = call.supervisor_ring.as_ref().map(|r| r.user.clone()) else {
            return;
        };
        let Some(b) = self
            .locations
            .get(&user)
            .and_then(|b| b.value().first().cloned())
        else {
            let consult = call
                .supervisor_ring
                .take()
                .is_some_and(|r| r.mode == MonitorMode::Consult);
            self.out
                .push_back(media_cmd(id, SessionCommand::DetachSupervisor));
            if consult {
                self.consult_back(id);
            }
            return;
        };
        let local = LocalMedia {
            session_id: id,
            version: 1,
            addr: ports.addr,
            port,
            law: media.law,
            pt: media.pt,
            telephone_event: media.telephone_event,
            direction: Direction::SendRecv,
            webrtc: None,
            sdes: None,
        };
        let consult = call_mode(self.calls.get(&id)) == Some(MonitorMode::Consult);
        let from = if consult {
            // The colleague sees the agent calling.
            format!("<sip:{agent}@{}>", self.host)
        } else {
            format!(
                "\"Monitor {agent}\" <sip:{}{agent}@{}>",
                self.cfg.features.monitor, self.host
            )
        };
        let to = format!("<sip:{user}@{}>", self.host);
        let sdp = Bytes::from(local.offer());
        let invite = self.new_invite(&from, to, b.uri_text.clone(), &b.flow, "switchboard", sdp);
        let tx = self.send(b.flow, invite.clone(), Role::SupervisorRing(id));
        if let Some(r) = self
            .calls
            .get_mut(&id)
            .and_then(|c| c.supervisor_ring.as_mut())
        {
            r.out = Some((tx, invite, b.flow, local));
        }
        let at = self.now + self.cfg.extension_ring_timeout;
        self.timer(at, Timer::SupervisorRing(id));
    }

    /// The supervisor's phone answered our INVITE (or refused it).
    pub(super) fn supervisor_ring_response(&mut self, id: u64, tx: TxId, resp: Response) {
        if resp.status < 200 {
            return;
        }
        self.by_client.remove(&tx);
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        let ours = call
            .supervisor_ring
            .as_ref()
            .and_then(|r| r.out.as_ref())
            .is_some_and(|o| o.0 == tx);
        if !ours {
            return;
        }
        let Some(SupRing {
            user,
            mode,
            out: Some((_, invite, flow, our_media)),
        }) = call.supervisor_ring.take()
        else {
            return;
        };
        let span = call.span.clone();
        self.cancel_timers(|t| matches!(t, Timer::SupervisorRing(c) if *c == id));
        if resp.status >= 300 {
            info!(parent: &span, status = resp.status, "the supervisor's phone did not answer");
            self.out
                .push_back(media_cmd(id, SessionCommand::DetachSupervisor));
            if mode == MonitorMode::Consult {
                self.consult_back(id);
            }
            return;
        }
        let Ok(dialog) = Dialog::uac(&invite, &resp, flow) else {
            self.out
                .push_back(media_cmd(id, SessionCommand::DetachSupervisor));
            if mode == MonitorMode::Consult {
                self.consult_back(id);
            }
            return;
        };
        let ack = dialog.ack(cseq_num(&invite.headers));
        self.ack_2xx(tx, ack, flow);
        let answer = SessionDescription::parse(&resp.body).and_then(|sd| {
            let n = negotiate(&sd)?;
            Ok((sd, n))
        });
        let Ok((offer, n)) = answer else {
            let mut d = dialog;
            let bye = d.request(Method::Bye);
            self.send(flow, bye, Role::Fire);
            self.out
                .push_back(media_cmd(id, SessionCommand::DetachSupervisor));
            if mode == MonitorMode::Consult {
                self.consult_back(id);
            }
            return;
        };
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        self.by_dialog.insert(
            (dialog.call_id.clone(), dialog.local_tag.clone()),
            (id, Leg::Supervisor),
        );
        info!(parent: &call.span, ?mode, "supervisor on the call");
        if mode == MonitorMode::Consult {
            // The agent stops hearing ringback: the consultation begins.
            self.out
                .push_back(media_cmd(id, SessionCommand::Stop(Leg::Agent)));
        } else {
            set_variable(&mut call.variables, "monitored_by", user.clone());
        }
        call.supervisor = Some(SupervisorLeg {
            user,
            invite_tx: tx,
            invite,
            flow,
            local_tag: dialog.local_tag.clone(),
            dialog: Some(dialog),
            offer,
            media: n,
            mode,
            takeover: None,
            local: Some(our_media),
        });
        self.out.push_back(media_cmd(
            id,
            remote_of(Leg::Supervisor, &n, Some(flow.remote.ip())),
        ));
        self.out
            .push_back(media_cmd(id, SessionCommand::Monitor(mode)));
    }

    /// Stop ringing the supervisor for call `id` (no answer in time, the call ended, the
    /// agent left).
    pub(super) fn stop_ringing_supervisor(&mut self, now: Instant, id: u64) {
        self.cancel_timers(|t| matches!(t, Timer::SupervisorRing(c) if *c == id));
        let Some(r) = self
            .calls
            .get_mut(&id)
            .and_then(|c| c.supervisor_ring.take())
        else {
            return;
        };
        if let Some((tx, invite, flow, _)) = r.out {
            self.sip(SipCommand::Cancel { tx });
            self.orphan(now, tx, invite, flow);
        }
        self.out
            .push_back(media_cmd(id, SessionCommand::DetachSupervisor));
        if r.mode == MonitorMode::Consult {
            self.consult_back(id);
        }
    }
}

/// An attended transfer keyed on the agent's phone (`*2`, the number, `#`): the third leg
/// of the relay carries the consultation.
impl CallControl {
    /// Start consulting `user` for call `id`: the caller hears music, the agent ringback,
    /// and `user`'s phone rings. `false` when it cannot be done (no phone registered, a
    /// supervisor on the call).
    pub(super) fn consult_start(&mut self, id: u64, user: String) -> bool {
        if self.locations.get(&user).is_none_or(|b| b.is_empty()) {
            return false;
        }
        let ringback = self.ringback.clone();
        let Some(call) = self.calls.get_mut(&id) else {
            return false;
        };
        if call.supervisor.is_some() || call.supervisor_ring.is_some() {
            return false;
        }
        let music = match call.route {
            Route::Queue(q) => self.dir.queues[q].setup.music.clone(),
            _ => None,
        }
        .unwrap_or_else(|| ringback.clone());
        info!(parent: &call.span, to = %user, "attended transfer: consulting");
        call.supervisor_ring = Some(SupRing {
            user,
            mode: MonitorMode::Consult,
            out: None,
        });
        self.loop_to(id, Leg::Caller, Some(music));
        self.loop_to(id, Leg::Agent, Some(ringback));
        self.out
            .push_back(Output::Media(SessionId(id), MediaRequest::AttachSupervisor));
        true
    }

    /// The consultation ended without a transfer: the agent and the caller talk again.
    pub(super) fn consult_back(&mut self, id: u64) {
        let tone = self.double_beep.clone();
        if let Some(call) = self.calls.get(&id) {
            info!(parent: &call.span, "attended transfer: back to the caller");
        }
        self.out
            .push_back(media_cmd(id, SessionCommand::Stop(Leg::Caller)));
        self.out.push_back(media_cmd(
            id,
            SessionCommand::Play {
                leg: Leg::Agent,
                prompts: vec![tone],
                then: None,
            },
        ));
    }

    /// The attended code keyed again during a consultation: the third party is hung up on.
    pub(super) fn consult_abort(&mut self, id: u64) -> bool {
        let now = self.now;
        let ringing = self
            .calls
            .get(&id)
            .is_some_and(|c| c.supervisor_ring.is_some());
        if ringing {
            self.stop_ringing_supervisor(now, id);
        } else {
            self.drop_supervisor(id, true);
        }
        true
    }

    /// The agent hung up during a consultation: the transfer is completed (the consulted
    /// party takes the agent's place), or, while the consulted phone still rings, the caller
    /// is sent to it as in a blind transfer. `false` when there is no consultation.
    pub(super) fn consult_complete(&mut self, now: Instant, id: u64) -> bool {
        let Some(call) = self.calls.get_mut(&id) else {
            return false;
        };
        let consulting = call
            .supervisor
            .as_ref()
            .is_some_and(|s| s.mode == MonitorMode::Consult);
        let ringing = call
            .supervisor_ring
            .as_ref()
            .filter(|r| r.mode == MonitorMode::Consult)
            .map(|r| r.user.clone());
        if !consulting && ringing.is_none() {
            return false;
        }
        call.agent_hung_up = true;
        if let Some(user) = ringing {
            self.stop_ringing_supervisor(now, id);
            self.blind_transfer(now, id, Route::Extension(user));
        } else {
            self.take_over(now, id);
        }
        true
    }
}

impl CallControl {
    /// A re-INVITE or UPDATE from the supervisor's (or consulted) phone: a session refresh
    /// or a new address is answered with the media we already gave it.
    pub(super) fn supervisor_reoffer(&mut self, id: u64, tx: TxId, req: &Request) {
        let contact = format!("<sip:switchboard@{}>", self.cfg.contact_host);
        let Some(s) = self.calls.get_mut(&id).and_then(|c| c.supervisor.as_mut()) else {
            return self.plain(tx, 481);
        };
        let Some(local) = s.local.clone() else {
            return self.plain(tx, 491);
        };
        let mut h = Headers::default();
        h.push("Contact", contact);
        h.push("Allow", ALLOW);
        if req.body.is_empty() {
            if req.method == Method::Update {
                return self.respond(tx, 200, None, h, Bytes::new());
            }
            // A re-INVITE without an offer: ours is in the 200 (its answer in the ACK is
            // the same media).
            h.push("Content-Type", "application/sdp");
            return self.respond(tx, 200, None, h, Bytes::from(local.offer()));
        }
        let offer = SessionDescription::parse(&req.body).and_then(|sd| {
            let n = negotiate(&sd)?;
            Ok((sd, n))
        });
        let Ok((sd, n)) = offer else {
            return self.plain(tx, 488);
        };
        if n.law != s.media.law {
            // The relay does not transcode: the leg keeps its codec.
            return self.plain(tx, 488);
        }
        s.media = n;
        let host = s.flow.remote.ip();
        h.push("Content-Type", "application/sdp");
        let body = local.answer(&sd, n.index);
        self.respond(tx, 200, None, h, Bytes::from(body));
        self.out
            .push_back(media_cmd(id, remote_of(Leg::Supervisor, &n, Some(host))));
    }
}
