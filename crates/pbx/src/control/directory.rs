//! The queues and agents call control knows ([`Directory`]): looked up by number, user and ACD
//! id, with reloads applied as a difference. The ACD hands out the ids of queues and agents a
//! reload adds ([`AcdReport::QueueAdded`], [`AcdReport::AgentAdded`]); until its answer comes
//! back, a new queue is not routable and a new agent is not offered calls. Also here: whether
//! an agent's phone can take a call (it is registered, it is not busy with a call of its own).

use super::*;

/// A queue and its settings.
#[derive(Debug)]
pub(super) struct QueueEntry {
    pub(super) setup: QueueSetup,
    pub(super) id: QueueId,
    /// A reload removed it; kept for the calls still connected through it.
    pub(super) removed: bool,
}

/// An agent, their settings and what call control knows of their state.
#[derive(Debug)]
pub(super) struct AgentInfo {
    pub(super) setup: AgentSetup,
    pub(super) id: AgentId,
    pub(super) state: AgentState,
    /// Calls of this agent's phone that are not queue offers (placed by it, or an extension
    /// call to it): while any is up the agent gets no queue calls.
    pub(super) in_use: u32,
    /// The availability change last asked of the ACD, until the next state report.
    pub(super) requested: Option<presence::Change>,
    /// A reload removed the agent.
    pub(super) removed: bool,
}

impl AgentInfo {
    pub(super) fn name(&self) -> &str {
        &self.setup.acd.name
    }
    pub(super) fn user(&self) -> &str {
        &self.setup.user
    }
}

/// Something a reload added, waiting for its ACD id.
#[derive(Debug)]
struct Pending<T> {
    /// The settings as they are now (a later reload may change them again).
    setup: T,
    /// What the ACD was given when it was added.
    sent: T,
    /// A later reload removed it again.
    removed: bool,
}

/// Queues and agents.
#[derive(Debug, Default)]
pub(super) struct Directory {
    pub(super) queues: Vec<QueueEntry>,
    by_number: HashMap<String, usize>,
    by_queue_id: HashMap<QueueId, usize>,
    pub(super) agents: Vec<AgentInfo>,
    by_user: HashMap<String, usize>,
    by_agent_id: HashMap<AgentId, usize>,
    pending_queues: HashMap<String, Pending<QueueSetup>>,
    pending_agents: HashMap<String, Pending<AgentSetup>>,
}

/// What a reload changed (for the log line).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(super) struct ReloadSummary {
    pub(super) queues_added: usize,
    pub(super) queues_changed: usize,
    pub(super) queues_removed: usize,
    pub(super) agents_added: usize,
    pub(super) agents_changed: usize,
    pub(super) agents_removed: usize,
}

impl Directory {
    /// The queues and agents of the config, with the ids the ACD gave them (same order).
    pub(super) fn new(
        queues: Vec<QueueSetup>,
        queue_ids: &[QueueId],
        agents: Vec<AgentSetup>,
        agent_ids: &[AgentId],
    ) -> Directory {
        let mut d = Directory::default();
        for (setup, id) in queues.into_iter().zip(queue_ids) {
            d.insert_queue(setup, *id);
        }
        for (setup, id) in agents.into_iter().zip(agent_ids) {
            d.insert_agent(setup, *id);
        }
        d
    }

    fn insert_queue(&mut self, setup: QueueSetup, id: QueueId) -> usize {
        let i = self.queues.len();
        self.by_number.insert(setup.number.clone(), i);
        self.by_queue_id.insert(id, i);
        self.queues.push(QueueEntry {
            setup,
            id,
            removed: false,
        });
        i
    }

    fn insert_agent(&mut self, setup: AgentSetup, id: AgentId) -> usize {
        let i = self.agents.len();
        self.by_user.insert(setup.user.clone(), i);
        self.by_agent_id.insert(id, i);
        self.agents.push(AgentInfo {
            setup,
            id,
            state: AgentState::LoggedOut,
            in_use: 0,
            requested: None,
            removed: false,
        });
        i
    }

    /// The queue a number dials (not a removed one).
    pub(super) fn queue_by_number(&self, number: &str) -> Option<usize> {
        self.by_number.get(number).copied()
    }

    /// The queue with this ACD id (removed ones too).
    pub(super) fn queue_by_id(&self, id: QueueId) -> Option<usize> {
        self.by_queue_id.get(&id).copied()
    }

    /// The agent of a SIP user (not a removed one).
    pub(super) fn agent_by_user(&self, user: &str) -> Option<usize> {
        self.by_user.get(user).copied()
    }

    /// The agent with this ACD id.
    pub(super) fn agent_by_id(&self, id: AgentId) -> Option<usize> {
        self.by_agent_id.get(&id).copied()
    }

    /// The agents to log in at start (`login_on_start`).
    pub(super) fn startup_logins(&self) -> Vec<AcdRequest> {
        self.agents
            .iter()
            .filter(|a| a.setup.login_on_start)
            .map(|a| AcdRequest::Command(AcdCommand::Login(a.id)))
            .collect()
    }

    /// Apply reloaded queues and agents as a difference (queues by name, agents by user):
    /// the ACD requests it takes, in order.
    pub(super) fn reload(
        &mut self,
        queues: Vec<QueueSetup>,
        agents: Vec<AgentSetup>,
        out: &mut Vec<AcdRequest>,
    ) -> ReloadSummary {
        let mut sum = ReloadSummary::default();
        // Queues first: agents may name new ones.
        let mut seen = vec![false; self.queues.len()];
        let mut pending_seen: Vec<String> = Vec::new();
        let live: HashMap<String, usize> = self
            .queues
            .iter()
            .enumerate()
            .filter(|(_, q)| !q.removed)
            .map(|(i, q)| (q.setup.acd.name.clone(), i))
            .collect();
        for q in queues {
            let name = q.acd.name.clone();
            if let Some(&i) = live.get(&name) {
                seen[i] = true;
                let entry = &mut self.queues[i];
                if entry.setup.acd != q.acd {
                    out.push(AcdRequest::UpdateQueue(entry.id, Box::new(q.acd.clone())));
                    sum.queues_changed += 1;
                }
                if entry.setup.number != q.number {
                    self.by_number.remove(&entry.setup.number);
                    self.by_number.insert(q.number.clone(), i);
                }
                entry.setup = q;
            } else if let Some(p) = self.pending_queues.get_mut(&name) {
                p.setup = q;
                p.removed = false;
                pending_seen.push(name);
            } else {
                out.push(AcdRequest::AddQueue(Box::new(q.acd.clone())));
                self.pending_queues.insert(
                    name.clone(),
                    Pending {
                        sent: q.clone(),
                        setup: q,
                        removed: false,
                    },
                );
                pending_seen.push(name);
                sum.queues_added += 1;
            }
        }
        // Agents by user.
        let mut agent_seen = vec![false; self.agents.len()];
        let mut pending_agents_seen: Vec<String> = Vec::new();
        for a in agents {
            if let Some(i) = self.agent_by_user(&a.user) {
                agent_seen[i] = true;
                let entry = &mut self.agents[i];
                if entry.setup.acd != a.acd {
                    out.push(AcdRequest::UpdateAgent(entry.id, Box::new(a.acd.clone())));
                    sum.agents_changed += 1;
                }
                entry.setup = a;
            } else if let Some(p) = self.pending_agents.get_mut(&a.user) {
                pending_agents_seen.push(a.user.clone());
                p.setup = a;
                p.removed = false;
            } else {
                out.push(AcdRequest::AddAgent {
                    user: a.user.clone(),
                    config: Box::new(a.acd.clone()),
                });
                pending_agents_seen.push(a.user.clone());
                self.pending_agents.insert(
                    a.user.clone(),
                    Pending {
                        sent: a.clone(),
                        setup: a,
                        removed: false,
                    },
                );
                sum.agents_added += 1;
            }
        }
        for (user, p) in self.pending_agents.iter_mut() {
            if !pending_agents_seen.contains(user) {
                p.removed = true;
            }
        }
        for (i, seen) in agent_seen.iter().enumerate() {
            let a = &mut self.agents[i];
            if !seen && !a.removed {
                a.removed = true;
                self.by_user.remove(&a.setup.user);
                out.push(AcdRequest::RemoveAgent(a.id));
                sum.agents_removed += 1;
            }
        }
        // Removed queues last: the agents no longer point at them.
        for (name, p) in self.pending_queues.iter_mut() {
            if !pending_seen.contains(name) {
                p.removed = true;
            }
        }
        for (i, seen) in seen.iter().enumerate() {
            let q = &mut self.queues[i];
            if !seen && !q.removed {
                q.removed = true;
                if self.by_number.get(&q.setup.number) == Some(&i) {
                    self.by_number.remove(&q.setup.number);
                }
                out.push(AcdRequest::RemoveQueue(q.id));
                sum.queues_removed += 1;
            }
        }
        sum
    }

    /// The ACD added a queue a reload asked for: it becomes routable (or, if a later reload
    /// changed or removed it meanwhile, the ACD hears that now).
    pub(super) fn queue_added(&mut self, name: &str, id: QueueId, out: &mut Vec<AcdRequest>) {
        let Some(p) = self.pending_queues.remove(name) else {
            return;
        };
        if p.removed {
            out.push(AcdRequest::RemoveQueue(id));
            return;
        }
        if p.setup.acd != p.sent.acd {
            out.push(AcdRequest::UpdateQueue(id, Box::new(p.setup.acd.clone())));
        }
        self.insert_queue(p.setup, id);
    }

    /// The ACD added an agent a reload asked for: the agent is logged in if the config says
    /// so (and changed or removed if a later reload did that meanwhile).
    pub(super) fn agent_added(
        &mut self,
        user: &str,
        id: AgentId,
        out: &mut Vec<AcdRequest>,
    ) -> Option<usize> {
        let p = self.pending_agents.remove(user)?;
        if p.removed {
            out.push(AcdRequest::RemoveAgent(id));
            return None;
        }
        if p.setup.acd != p.sent.acd {
            out.push(AcdRequest::UpdateAgent(id, Box::new(p.setup.acd.clone())));
        }
        let login = p.setup.login_on_start;
        let i = self.insert_agent(p.setup, id);
        if login {
            out.push(AcdRequest::Command(AcdCommand::Login(id)));
        }
        Some(i)
    }

    /// Queues and agents still waiting for their ACD ids.
    pub(super) fn pending(&self) -> usize {
        self.pending_queues.len() + self.pending_agents.len()
    }
}

impl CallControl {
    /// Apply a reloaded configuration as a difference: queues and agents added, changed or
    /// removed (by queue name and agent user), and the dial plan, trunks, feature codes,
    /// announcements and recording settings replaced. Calls in progress and callers waiting
    /// are untouched; callers waiting in a removed queue follow its overflow rule (in the
    /// ACD). `contact_host` and `seed` are not reloaded.
    pub fn reload(&mut self, new: PbxConfig) {
        let mut out = Vec::new();
        let sum = self.dir.reload(new.queues, new.agents, &mut out);
        self.out.extend(out.into_iter().map(Output::Acd));
        self.cfg.trunks = new.trunks;
        self.cfg.outbound = new.outbound;
        self.cfg.supervisors = new.supervisors;
        self.reload_registrations(self.now);
        self.cfg.extensions = new.extensions;
        self.cfg.extension_ring_timeout = new.extension_ring_timeout;
        self.cfg.features = new.features;
        self.cfg.announcements = new.announcements;
        self.cfg.recording_seed = new.recording_seed;
        self.cfg.recording_pause_key = new.recording_pause_key;
        self.cfg.menus = new.menus;
        self.cfg.voicemail = new.voicemail;
        info!(
            queues_added = sum.queues_added,
            queues_changed = sum.queues_changed,
            queues_removed = sum.queues_removed,
            agents_added = sum.agents_added,
            agents_changed = sum.agents_changed,
            agents_removed = sum.agents_removed,
            "configuration applied"
        );
    }

    pub(super) fn has_phone(&self, user: &str) -> bool {
        self.locations.get(user).is_some_and(|b| !b.is_empty())
    }

    /// Call `id` keeps `user`'s phone busy (if `user` is an agent).
    pub(super) fn mark_busy(&mut self, id: u64, user: &str) {
        let Some(ai) = self.dir.agent_by_user(user) else {
            return;
        };
        if let Some(call) = self.calls.get_mut(&id) {
            call.busy_users.push(user.to_owned());
        }
        self.dir.agents[ai].in_use += 1;
        self.reconcile_agent(ai);
    }

    pub(super) fn release_busy(&mut self, users: &[String]) {
        for u in users {
            if let Some(ai) = self.dir.agent_by_user(u) {
                let a = &mut self.dir.agents[ai];
                a.in_use = a.in_use.saturating_sub(1);
                self.reconcile_agent(ai);
            }
        }
    }

    /// Bring the ACD's view of an agent in line with their phones ([`presence::reconcile`]).
    pub(super) fn reconcile_agent(&mut self, ai: usize) {
        let a = &self.dir.agents[ai];
        if a.removed {
            return;
        }
        let has_phone = self.has_phone(a.user());
        if let Some(change) = presence::reconcile(&a.state, has_phone, a.in_use > 0) {
            self.set_availability(ai, change);
        }
    }

    pub(super) fn set_availability(&mut self, ai: usize, change: presence::Change) {
        let a = &mut self.dir.agents[ai];
        if a.requested == Some(change) {
            return;
        }
        a.requested = Some(change);
        let (id, name) = (a.id, a.name().to_owned());
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
