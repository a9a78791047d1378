//! The queues and agents call control knows: reloads applied as a difference, and whether an
//! agent's phone can take a call.

use super::*;

impl CallControl {
    /// Apply a reloaded configuration as a difference: queues and agents added, changed or
    /// removed (by queue name and agent user), and the dial plan, trunks, feature codes,
    /// announcements and recording settings replaced. Calls in progress and callers waiting
    /// are untouched; callers waiting in a removed queue follow its overflow rule (in the
    /// ACD). `contact_host` and `seed` are not reloaded.
    pub fn reload(&mut self, new: PbxConfig) {
        let mut added_queues = 0;
        let mut changed_queues = 0;
        // Queues by name.
        let mut seen = vec![false; self.cfg.queues.len()];
        let mut by_name: HashMap<String, usize> = HashMap::new();
        for (i, q) in self.cfg.queues.iter().enumerate() {
            if !self.queue_removed[i] {
                by_name.insert(q.acd.name.clone(), i);
            }
        }
        let mut update_queues = Vec::new();
        for q in new.queues {
            match by_name.get(&q.acd.name) {
                Some(&i) => {
                    seen[i] = true;
                    if self.cfg.queues[i].acd != q.acd {
                        update_queues.push((self.queue_ids[i], q.acd.clone()));
                        changed_queues += 1;
                    }
                    self.cfg.queues[i] = q;
                }
                None => {
                    let id = QueueId(self.queue_ids.len() as u32);
                    self.out
                        .push_back(Output::Acd(AcdRequest::AddQueue(Box::new(q.acd.clone()))));
                    self.queue_ids.push(id);
                    self.queue_removed.push(false);
                    self.cfg.queues.push(q);
                    seen.push(true);
                    added_queues += 1;
                }
            }
        }
        for (id, cfg) in update_queues {
            self.out
                .push_back(Output::Acd(AcdRequest::UpdateQueue(id, Box::new(cfg))));
        }
        // Agents by user.
        let mut added_agents = 0;
        let mut changed_agents = 0;
        let mut removed_agents = 0;
        let mut agent_seen = vec![false; self.agents.len()];
        for a in new.agents {
            match self.agent_by_user.get(&a.user).copied() {
                Some(i) => {
                    agent_seen[i] = true;
                    if self.cfg.agents[i].acd != a.acd {
                        let id = self.agents[i].id;
                        self.out.push_back(Output::Acd(AcdRequest::UpdateAgent(
                            id,
                            Box::new(a.acd.clone()),
                        )));
                        changed_agents += 1;
                    }
                    self.agents[i].name = a.acd.name.clone();
                    self.cfg.agents[i] = a;
                }
                None => {
                    let id = AgentId(self.agents.len() as u32);
                    self.out
                        .push_back(Output::Acd(AcdRequest::AddAgent(Box::new(a.acd.clone()))));
                    if a.login_on_start {
                        self.out
                            .push_back(Output::Acd(AcdRequest::Command(AcdCommand::Login(id))));
                    }
                    let i = self.agents.len();
                    self.agents.push(AgentInfo {
                        id,
                        user: a.user.clone(),
                        name: a.acd.name.clone(),
                        state: AgentState::LoggedOut,
                        in_use: 0,
                        requested: None,
                    });
                    self.agent_by_user.insert(a.user.clone(), i);
                    self.agent_by_id.insert(id, i);
                    self.cfg.agents.push(a);
                    agent_seen.push(true);
                    added_agents += 1;
                }
            }
        }
        for (i, seen) in agent_seen.iter().enumerate() {
            if !seen && self.agent_by_user.get(&self.agents[i].user) == Some(&i) {
                let user = self.agents[i].user.clone();
                self.agent_by_user.remove(&user);
                self.out
                    .push_back(Output::Acd(AcdRequest::RemoveAgent(self.agents[i].id)));
                removed_agents += 1;
            }
        }
        // Removed queues last: the agents no longer point at them.
        let mut removed_queues = 0;
        for (i, seen) in seen.iter().enumerate() {
            if !seen && !self.queue_removed[i] {
                self.queue_removed[i] = true;
                self.out
                    .push_back(Output::Acd(AcdRequest::RemoveQueue(self.queue_ids[i])));
                removed_queues += 1;
            }
        }
        self.queue_by_number = self
            .cfg
            .queues
            .iter()
            .enumerate()
            .filter(|(i, _)| !self.queue_removed[*i])
            .map(|(i, q)| (q.number.clone(), i))
            .collect();
        self.cfg.trunks = new.trunks;
        self.cfg.extensions = new.extensions;
        self.cfg.extension_ring_timeout = new.extension_ring_timeout;
        self.cfg.features = new.features;
        self.cfg.announcements = new.announcements;
        self.cfg.recording_seed = new.recording_seed;
        self.cfg.recording_pause_key = new.recording_pause_key;
        info!(
            queues_added = added_queues,
            queues_changed = changed_queues,
            queues_removed = removed_queues,
            agents_added = added_agents,
            agents_changed = changed_agents,
            agents_removed = removed_agents,
            "configuration applied"
        );
    }

    pub(super) fn has_phone(&self, user: &str) -> bool {
        self.locations.get(user).is_some_and(|b| !b.is_empty())
    }

    /// Call `id` keeps `user`'s phone busy (if `user` is an agent).
    pub(super) fn mark_busy(&mut self, id: u64, user: &str) {
        let Some(&ai) = self.agent_by_user.get(user) else {
            return;
        };
        if let Some(call) = self.calls.get_mut(&id) {
            call.busy_users.push(user.to_owned());
        }
        self.agents[ai].in_use += 1;
        self.reconcile_agent(ai);
    }

    pub(super) fn release_busy(&mut self, users: &[String]) {
        for u in users {
            if let Some(&ai) = self.agent_by_user.get(u) {
                let a = &mut self.agents[ai];
                a.in_use = a.in_use.saturating_sub(1);
                self.reconcile_agent(ai);
            }
        }
    }

    /// Bring the ACD's view of an agent in line with their phones ([`presence::reconcile`]).
    pub(super) fn reconcile_agent(&mut self, ai: usize) {
        let a = &self.agents[ai];
        let has_phone = self.has_phone(&a.user);
        if let Some(change) = presence::reconcile(&a.state, has_phone, a.in_use > 0) {
            self.set_availability(ai, change);
        }
    }

    pub(super) fn set_availability(&mut self, ai: usize, change: presence::Change) {
        let a = &mut self.agents[ai];
        if a.requested == Some(change) {
            return;
        }
        a.requested = Some(change);
        let (id, name) = (a.id, a.name.clone());
        match change {
            presence::Change::Park(presence::NO_PHONE) => {
                info!(agent = %name, "agent has no registered phone: not offered calls until one registers")
            }
            presence::Change::Park(reason) => {
                info!(agent = %name, reason, "agent's phone is busy: not offered calls until it is free")
            }
            presence::Change::Unpark => {
                info!(agent = %name, "agent's phone is available: ready for calls")
            }
        }
        self.acd(match change {
            presence::Change::Park(reason) => {
                AcdCommand::NotReady(id, acd::ReasonCode::new(reason))
            }
            presence::Change::Unpark => AcdCommand::Ready(id),
        });
    }
}
