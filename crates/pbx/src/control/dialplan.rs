//! New calls: the dial plan (queue, extension, feature code), answering the caller, joining a
//! queue.

use super::*;

impl CallControl {
    pub(super) fn new_call(
        &mut self,
        now: Instant,
        tx: TxId,
        invite: Request,
        flow: Flow,
        caller: Caller,
    ) {
        let Some(number) = request_user(&invite) else {
            return self.plain(tx, 404);
        };
        let from_user = invite
            .headers
            .get("From")
            .and_then(user_of)
            .unwrap_or_default();
        let route = match self.route(&number, &caller) {
            Ok(r) => r,
            Err(status) => {
                info!(number = %number, status, "call refused by the dial plan");
                debug!(number = %number, caller = %from_user, ?caller, "refused caller");
                return self.plain(tx, status);
            }
        };
        // Offer/answer: the caller's offer must contain PCMU or PCMA.
        let late = invite.body.is_empty();
        if late && !matches!(route, Route::Queue(_) | Route::Menu(_)) {
            // Delayed offer (our offer in the 2xx, the answer in the ACK) is supported for
            // calls to queues and menus, which are answered at once; not for calls that ring
            // a phone.
            let mut h = Headers::default();
            h.push(
                "Warning",
                "399 switchboard \"An SDP offer in the INVITE is required\"",
            );
            return self.respond(tx, 488, None, h, Bytes::new());
        }
        let offer = if late {
            SessionDescription { media: Vec::new() }
        } else {
            match SessionDescription::parse(&invite.body) {
                Ok(o) => o,
                Err(e) => {
                    let mut h = Headers::default();
                    h.push("Warning", format!("399 switchboard \"{e}\""));
                    return self.respond(tx, 400, None, h, Bytes::new());
                }
            }
        };
        let negotiated = match negotiate(&offer) {
            Ok(n) => n,
            // Delayed offer: a placeholder until the ACK brings the answer.
            Err(_) if late => Negotiated {
                index: 0,
                law: crate::recorder::g711::Law::Mu,
                pt: 0,
                telephone_event: Some(101),
                remote: None,
                direction: Direction::SendRecv,
                webrtc: false,
                sdes: false,
            },
            Err(e @ (SdpError::NoCommonCodec | SdpError::AddressFamily)) => {
                let mut h = Headers::default();
                h.push("Warning", format!("305 switchboard \"{e}\""));
                h.push("Accept", "application/sdp");
                return self.respond(tx, 488, None, h, Bytes::new());
            }
            Err(e) => {
                let mut h = Headers::default();
                h.push("Warning", format!("399 switchboard \"{e}\""));
                return self.respond(tx, 400, None, h, Bytes::new());
            }
        };
        if negotiated.sdes && !flow.transport.is_secure() {
            // RFC 4568 §8.3: keys in the clear are no secret.
            let mut h = Headers::default();
            h.push(
                "Warning",
                "399 switchboard \"SRTP keys (a=crypto) are accepted over TLS only\"",
            );
            return self.respond(tx, 488, None, h, Bytes::new());
        }
        if negotiated.webrtc {
            let mut h = Headers::default();
            h.push(
                "Warning",
                "399 switchboard \"calls from a browser are not taken; the agent page answers calls\"",
            );
            return self.respond(tx, 488, None, h, Bytes::new());
        }
        if let Route::Monitor(agent, mode) = route {
            return self.monitor_call(tx, invite, flow, &caller, agent, mode, offer, negotiated);
        }
        let id = self.next_call;
        self.next_call += 1;
        let span = info_span!("call", call_id = id);
        info!(parent: &span, number = %number, route = ?route_name(&route, &self.dir), "call arrived");
        debug!(parent: &span, caller = %from_user, identity = ?caller, "caller");
        let local_tag = self.token();
        let call = Call::new(
            span,
            route.clone(),
            CallerLeg {
                invite_tx: tx,
                invite,
                flow,
                local_tag,
                answered: false,
                dialog: None,
                offer,
                media: negotiated,
                sdp_version: 1,
                late,
            },
            caller.clone(),
            now,
            History::new(self.wall),
        );
        self.by_invite.insert(tx, id);
        self.calls.insert(id, call);
        self.out
            .push_back(Output::Media(SessionId(id), MediaRequest::Open));
        self.media(
            id,
            remote_of(Leg::Caller, &negotiated, Some(flow.remote.ip())),
        );
        // The caller's own phone is busy with this call: an agent calling the queue (or
        // anyone) is not offered calls meanwhile, least of all their own.
        if matches!(
            route,
            Route::Queue(_) | Route::Extension(_) | Route::Menu(_) | Route::Outbound(_)
        ) {
            let own = match &caller {
                Caller::User(u) => Some(u.clone()),
                Caller::Anonymous => Some(from_user.clone()),
                Caller::Trunk(_) => None,
            };
            if let Some(u) = own {
                self.mark_busy(id, &u);
            }
            if let Route::Extension(callee) = &route {
                self.mark_busy(id, callee);
            }
        }
    }

    /// The relay opened (or could not open) the call's media session: the call goes on.
    pub(super) fn media_opened(&mut self, now: Instant, id: u64, ports: Option<MediaPorts>) {
        let Some(call) = self.calls.get_mut(&id) else {
            // Ended before its session opened: the close is already on its way.
            return;
        };
        if call.phase != Phase::Opening {
            return;
        }
        let Some(ports) = ports else {
            if call.cb.is_some() {
                // A callback kept across a restart: given up, with its record.
                warn!(parent: &call.span, "no media session for a kept callback");
                return self.end_call(now, id, EndReason::CallbackFailed, None);
            }
            warn!(parent: &call.span, "no media session for a new call");
            let tx = call.caller.invite_tx;
            let mut h = Headers::default();
            h.push("Retry-After", "10");
            self.respond(tx, 503, None, h, Bytes::new());
            return self.drop_call(id);
        };
        call.ports = Some(ports);
        call.phase = Phase::Ringing;
        let identity = call.identity.clone();
        match call.route.clone() {
            Route::Queue(_) if self.kept_callback_opened(now, id) => {}
            Route::Queue(q) => self.join_queue(now, id, q),
            Route::Extension(user) => self.ring_extension(now, id, user),
            Route::Feature(f) => self.feature(now, id, f, &identity),
            Route::Closed(q) => self.closed_announcement(id, q),
            Route::Menu(m) => self.start_menu(now, id, m),
            Route::Voicemail(m) => self.deposit(now, id, &m),
            Route::Mailbox(m) => self.open_mailbox(now, id, m),
            Route::Outbound(_) => self.dial_out(now, id),
            Route::Monitor(..) => {}
        }
    }

    /// A queue outside its hours: answer, play its closed announcement; the call ends when
    /// it has been played.
    pub(super) fn closed_announcement(&mut self, id: u64, q: usize) {
        let Some(crate::config::Hours {
            closed: crate::config::Closed::Announcement(prompt),
            ..
        }) = self.dir.queues[q].setup.hours.clone()
        else {
            return;
        };
        self.answer_caller(id);
        if let Some(call) = self.calls.get_mut(&id) {
            info!(parent: &call.span, queue = %self.dir.queues[q].setup.acd.name, "queue closed: announcement");
            call.phase = Phase::Waiting;
            self.out.push_back(media_cmd(
                id,
                SessionCommand::Play {
                    leg: Leg::Caller,
                    prompts: vec![Prompt::silence(Duration::from_millis(200)), prompt],
                    then: None,
                },
            ));
        }
    }

    /// A queue call at this moment: the queue if it is open, else what its hours say
    /// (another queue, followed at most 4 times; its announcement; 480).
    pub(super) fn open_queue(&self, mut q: usize) -> Result<Route, u16> {
        for _ in 0..4 {
            let Some(hours) = &self.dir.queues[q].setup.hours else {
                return Ok(Route::Queue(q));
            };
            if hours.schedule.is_open(self.wall) {
                return Ok(Route::Queue(q));
            }
            match &hours.closed {
                crate::config::Closed::Refuse => return Err(480),
                crate::config::Closed::Announcement(_) => return Ok(Route::Closed(q)),
                crate::config::Closed::Voicemail(m) => return Ok(Route::Voicemail(m.clone())),
                crate::config::Closed::Queue(name) => {
                    match self
                        .dir
                        .queues
                        .iter()
                        .position(|e| !e.removed && &e.setup.acd.name == name)
                    {
                        Some(next) => q = next,
                        None => return Err(480),
                    }
                }
            }
        }
        Err(480)
    }

    /// The dial plan: which route a number takes for this caller, or the status to refuse it.
    pub(super) fn route(&self, number: &str, caller: &Caller) -> Result<Route, u16> {
        let features = &self.cfg.features;
        // Emergency numbers go out before anything internal could shadow them.
        if let Some(r) = self.emergency_route(number, caller) {
            return r;
        }
        let route = if let Some(q) = self.dir.queue_by_number(number) {
            Route::Queue(q)
        } else if let Some(m) = self
            .cfg
            .menus
            .iter()
            .find(|m| m.number.as_deref() == Some(number))
        {
            Route::Menu(m.name.clone())
        } else if let Some(m) = self.mailbox_for(number, caller) {
            Route::Mailbox(m)
        } else if number == features.login {
            Route::Feature(Feature::Login)
        } else if number == features.logout {
            Route::Feature(Feature::Logout)
        } else if number == features.pause {
            Route::Feature(Feature::Pause)
        } else if let Some((agent, mode)) = self.monitor_code(number) {
            Route::Monitor(agent, mode)
        } else if self.cfg.extensions
            && (self.locations.contains_key(number) || self.mailbox(number).is_some())
        {
            // A user with a mailbox takes messages while no phone of theirs is registered.
            Route::Extension(number.to_owned())
        } else if self.cfg.extensions && self.dir.agent_by_user(number).is_some() {
            // A known agent user that is not registered right now.
            return Err(480);
        } else if let Some(r) = self.outbound_route(number, caller) {
            return r;
        } else {
            return Err(404);
        };
        let route = match route {
            Route::Queue(q) => self.open_queue(q)?,
            r => r,
        };
        match caller {
            Caller::User(_) => Ok(route),
            Caller::Trunk(name) => {
                let allowed = self
                    .cfg
                    .trunks
                    .iter()
                    .find(|t| &t.trunk == name)
                    .is_some_and(|t| t.numbers.iter().any(|n| n == number));
                if allowed {
                    Ok(route)
                } else {
                    Err(403)
                }
            }
            // Challenges are off: queues only, never extensions or feature codes.
            Caller::Anonymous => match route {
                Route::Queue(_) | Route::Closed(_) | Route::Menu(_) | Route::Voicemail(_) => {
                    Ok(route)
                }
                _ => Err(403),
            },
        }
    }

    /// Answer the caller with 200 OK and our SDP for the caller leg.
    pub(super) fn answer_caller(&mut self, id: u64) {
        self.answer_caller_with(id, 200);
    }

    /// Answer the caller with our SDP: 200, or 183 for early media.
    pub(super) fn answer_caller_with(&mut self, id: u64, status: u16) {
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        let Some(ports) = call.ports else {
            return;
        };
        if call.caller.answered {
            // A call that goes from a menu to a queue (or to its closed announcement) was
            // answered by the menu.
            return;
        }
        let local = LocalMedia {
            session_id: id,
            version: call.caller.sdp_version,
            addr: ports.addr,
            port: ports.caller,
            law: call.caller.media.law,
            pt: call.caller.media.pt,
            telephone_event: call.caller.media.telephone_event,
            direction: call.caller.media.direction.answer(),
            webrtc: None,
            sdes: None,
        };
        let (local, keys) = match caller_sdes(
            &self.cfg.media_secret,
            id,
            &call.caller.offer,
            &call.caller.media,
        ) {
            Some((ours, keys)) => (
                LocalMedia {
                    sdes: Some(ours),
                    ..local
                },
                Some(keys),
            ),
            None => (local, None),
        };
        if let Some(keys) = keys {
            self.out.push_back(media_cmd(
                id,
                SessionCommand::Sdes {
                    leg: Leg::Caller,
                    keys: Some(keys),
                },
            ));
        }
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        let body = if call.caller.late {
            media::sdp::offer_g711(id, local.version, local.addr, local.port)
        } else {
            local.answer(&call.caller.offer, call.caller.media.index)
        };
        let number = request_user(&call.caller.invite).unwrap_or_else(|| "switchboard".into());
        let flow = call.caller.flow;
        let contact = self.contact(&flow, &number);
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        let mut h = Headers::default();
        h.push("Contact", contact);
        h.push("Allow", ALLOW);
        h.push("Content-Type", "application/sdp");
        let tag = call.caller.local_tag.clone();
        if status == 183 {
            // Early media (a carrier's ringback or announcement): no dialog yet.
            let tx = call.caller.invite_tx;
            return self.respond(tx, 183, Some(tag), h, Bytes::from(body));
        }
        match Dialog::uas(&call.caller.invite, &tag, call.caller.flow) {
            Ok(d) => {
                self.by_dialog
                    .insert((d.call_id.clone(), tag.clone()), (id, Leg::Caller));
                call.caller.dialog = Some(d);
            }
            Err(e) => warn!(parent: &call.span, error = %e, "caller dialog incomplete"),
        }
        call.caller.answered = true;
        let tx = call.caller.invite_tx;
        self.respond(tx, 200, Some(tag), h, Bytes::from(body));
    }

    pub(super) fn join_queue(&mut self, now: Instant, id: u64, q: usize) {
        self.answer_caller(id);
        if let Some(call) = self.calls.get_mut(&id) {
            if call.caller.late {
                // The answer comes in the ACK; the call joins the queue then.
                call.phase = Phase::Waiting;
                call.pending_queue = Some(q);
                return;
            }
        }
        self.enter_queue(now, id, q);
    }

    pub(super) fn enter_queue(&mut self, now: Instant, id: u64, q: usize) {
        let entry = &self.dir.queues[q];
        let setup: &QueueSetup = &entry.setup;
        let mut prompts: Vec<Prompt> = setup.greeting.iter().cloned().collect();
        // "Press 1 to be called back."
        prompts.extend(setup.callback.as_ref().and_then(|c| c.offer.clone()));
        let music = setup.music.clone();
        let every = setup.announce_every;
        let priority = setup.priority;
        let queue = entry.id;
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        call.phase = Phase::Waiting;
        call.in_acd = true;
        call.history.queued = Some(self.wall);
        call.queued_at.get_or_insert(now);
        self.out.push_back(media_cmd(
            id,
            SessionCommand::Play {
                leg: Leg::Caller,
                prompts,
                then: music,
            },
        ));
        info!(parent: &call.span, queue = %self.dir.queues[q].setup.acd.name, "call queued");
        self.acd(AcdCommand::Arrive(CallArrival {
            call: acd::CallId(id),
            queue,
            priority,
            extra_skills: Vec::new(),
        }));
        if let Some(every) = every {
            self.timer(now + every, Timer::Announce(id));
        }
    }

    pub(super) fn ring_extension(&mut self, now: Instant, id: u64, user: String) {
        let timeout = self.cfg.extension_ring_timeout;
        if !self.ring(now, id, None, &user) {
            self.no_answer_or_voicemail(now, id, EndReason::Unreachable);
            return;
        }
        let call = &self.calls[&id];
        if !call.caller.answered {
            let (tx, tag) = (call.caller.invite_tx, call.caller.local_tag.clone());
            self.respond(tx, 180, Some(tag), Headers::default(), Bytes::new());
        }
        self.timer(now + timeout, Timer::RingTimeout(id));
    }

    pub(super) fn feature(&mut self, now: Instant, id: u64, f: Feature, caller: &Caller) {
        let user = match caller {
            Caller::User(u) => u.clone(),
            _ => {
                return self.end_call(now, id, EndReason::Failed, None);
            }
        };
        let Some(ai) = self.dir.agent_by_user(&user) else {
            // Not an agent: refuse instead of answering.
            if let Some(c) = self.calls.get(&id) {
                info!(parent: &c.span, "feature code from a user who is not an agent");
            }
            let tx = self.calls[&id].caller.invite_tx;
            self.plain(tx, 403);
            return self.drop_call(id);
        };
        let agent = &self.dir.agents[ai];
        let cmd = match f {
            Feature::Login => AcdCommand::Login(agent.id),
            Feature::Logout => AcdCommand::Logout(agent.id),
            Feature::Pause => match agent.state {
                AgentState::NotReady(_) => AcdCommand::Ready(agent.id),
                _ => AcdCommand::NotReady(agent.id, acd::ReasonCode::new("pause")),
            },
        };
        let tone = match (&f, &cmd) {
            (Feature::Logout, _) | (_, AcdCommand::NotReady(..)) => self.double_beep.clone(),
            _ => self.beep.clone(),
        };
        if let Some(c) = self.calls.get(&id) {
            info!(parent: &c.span, agent = %agent.name(), feature = ?f, "agent feature code");
        }
        self.acd(cmd);
        self.answer_caller(id);
        if let Some(call) = self.calls.get_mut(&id) {
            call.phase = Phase::Waiting;
            self.out.push_back(media_cmd(
                id,
                SessionCommand::Play {
                    leg: Leg::Caller,
                    prompts: vec![Prompt::silence(Duration::from_millis(200)), tone],
                    then: None,
                },
            ));
        }
    }
}
