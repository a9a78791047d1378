//! Recording a connected call, and the agent's pause key.

use super::*;

impl CallControl {
    /// Start recording a connected queue call if its queue's policy says so.
    pub(super) fn maybe_record(&mut self, now: Instant, id: u64, agent: &str) {
        if !self.recorder {
            return;
        }
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        if call.recording {
            // Already recorded (a transferred call): the recording goes on.
            return;
        }
        if let Route::Outbound(p) = &call.route {
            let policy = self
                .cfg
                .outbound
                .routes
                .iter()
                .find(|r| r.name == p.route)
                .map_or(crate::config::RecordPolicy::Never, |r| r.record);
            if !policy.records(self.cfg.recording_seed, id) {
                return;
            }
            info!(parent: &call.span, "recording");
            return self.start_recording(
                now,
                id,
                String::new(),
                agent,
                "left: agent, right: called party",
                None,
            );
        }
        let Route::Queue(q) = call.route else { return };
        let setup = &self.dir.queues[q].setup;
        if !setup.record.records(self.cfg.recording_seed, id) {
            return;
        }
        let queue = setup.acd.name.clone();
        info!(parent: &call.span, "recording");
        self.start_recording(now, id, queue, agent, "left: caller, right: agent", None);
    }

    /// Record call `id` from now on: the recorder gets the sidecar as known at the start, the
    /// media session its tap.
    pub(super) fn start_recording(
        &mut self,
        now: Instant,
        id: u64,
        queue: String,
        agent: &str,
        channels: &str,
        mailbox: Option<String>,
    ) {
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        let law = call.caller.media.law;
        let caller = call
            .caller
            .invite
            .headers
            .get("From")
            .and_then(user_of)
            .unwrap_or_default();
        let sidecar = Sidecar {
            call_id: id,
            queue,
            caller,
            agent: agent.to_owned(),
            codec: match law {
                Law::Mu => "PCMU",
                Law::A => "PCMA",
            }
            .into(),
            start: utc(self.wall),
            end: None,
            duration: 0.0,
            pauses: Vec::new(),
            channels: channels.to_owned(),
            dropped_frames: 0,
            sha256: None,
            repaired: false,
            mailbox,
        };
        call.recording = true;
        self.out
            .push_back(Output::Recording(RecordingRequest::Start {
                call: id,
                law,
                sidecar: Box::new(sidecar),
                at: now,
            }));
        self.out
            .push_back(Output::Media(SessionId(id), MediaRequest::Tap(true)));
    }

    /// An agent key: the pause key toggles the recording's pause.
    pub(super) fn agent_key(&mut self, now: Instant, id: u64, digit: char) {
        let key = self.cfg.recording_pause_key.clone();
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        if !call.recording || key.is_empty() {
            return;
        }
        call.agent_keys.push(digit);
        let excess = call
            .agent_keys
            .chars()
            .count()
            .saturating_sub(key.chars().count());
        if excess > 0 {
            call.agent_keys = call.agent_keys.chars().skip(excess).collect();
        }
        if call.agent_keys != key {
            return;
        }
        call.agent_keys.clear();
        call.recording_paused = !call.recording_paused;
        let cmd = if call.recording_paused {
            RecordingRequest::Pause { call: id, at: now }
        } else {
            RecordingRequest::Resume { call: id, at: now }
        };
        info!(parent: &call.span, paused = call.recording_paused, "recording pause key");
        self.out.push_back(Output::Recording(cmd));
    }
}
