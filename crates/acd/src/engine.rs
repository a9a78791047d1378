//! The indexed engine: [`Acd`].

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::config::{AgentConfig, EmptyPolicy, OverflowTarget, QueueConfig, Strategy};
use crate::index::{Bitset, IdMap, Rank, ReadySet};
use crate::queue_log::{QueueLogEvent, QueueLogKind};
use crate::stats::{AgentCounters, AgentStats, QueueCounters, QueueStats};
use crate::types::{
    AcdCommand, AcdError, AcdEvent, AgentId, AgentState, CallArrival, CallId, CallOutcome,
    CallState, Overflow, Party, Proficiency, QueueId, ReasonCode, Skill, Time, WithdrawReason,
};

type AgentIdx = u32;
type QueueIdx = u32;
type ClassIdx = u32;
/// A queue plus a resolved requirement set: what makes calls share a class.
type ClassKey = (QueueIdx, Box<[(Skill, u8)]>);

/// Number of call priorities (0–9).
const PRIORITIES: usize = 10;

/// A queue as the engine keeps it.
struct Queue {
    name: Arc<str>,
    cfg: QueueConfig,
    /// Base requirements: skill, minimum, optional.
    reqs: Vec<(Skill, u8, bool)>,
    /// Class of a call without extra skills, per escalation step (0 = base).
    step_classes: Vec<Option<ClassIdx>>,
    /// Every class of this queue (so agents added later join them).
    classes: Vec<ClassIdx>,
    /// Agents serving this queue.
    members: Vec<AgentIdx>,
    /// Waiting calls per call priority, by enqueue sequence (positions and longest wait).
    waiting: [BTreeMap<u64, CallId>; PRIORITIES],
    /// Round-robin memory: the next agent index to start from.
    rr_cursor: u32,
    logged_in: u32,
    available: u32,
    counters: QueueCounters,
    /// Removed by a reconfiguration: takes no new calls; its connected calls finish.
    retired: bool,
}

/// An eligibility class: a queue plus one resolved requirement set. Every waiting call is in
/// exactly one class; a class holds the agents that satisfy it, the Ready ones ranked by the
/// queue's strategy, and its waiting calls by (priority, sequence).
struct Class {
    queue: QueueIdx,
    strategy: Strategy,
    reqs: Box<[(Skill, u8)]>,
    members: Bitset,
    ready: ReadySet,
    /// Waiting calls by (9 - priority, enqueue sequence): the first is served first.
    waiting: BTreeMap<(u8, u64), CallId>,
    logged_in: u32,
    available: u32,
}

/// An agent's membership of a class.
#[derive(Clone, Copy)]
struct AgentClass {
    class: ClassIdx,
    queue_priority: u8,
    /// Proficiency summed over the class's requirements (best-skill strategy).
    skill_sum: u16,
}

struct Agent {
    name: Arc<str>,
    /// Skills with proficiency, sorted by skill.
    skills: Vec<(Skill, u8)>,
    /// Queues served, with the agent's priority for each.
    queues: Vec<(QueueIdx, u8)>,
    classes: Vec<AgentClass>,
    state: AgentState,
    state_since: Time,
    idle_since: Time,
    login_at: Time,
    pending_not_ready: Option<ReasonCode>,
    consecutive_no_answer: u32,
    /// Whether the agent is in the Ready sets of its classes.
    indexed: bool,
    /// The queue whose wrap-up the agent is doing.
    wrap_queue: Option<QueueIdx>,
    wrap_timer: Option<Time>,
    counters: AgentCounters,
}

impl Agent {
    fn proficiency(&self, skill: Skill) -> u8 {
        match self.skills.binary_search_by_key(&skill, |s| s.0) {
            Ok(i) => self.skills[i].1,
            Err(_) => 0,
        }
    }

    fn satisfies(&self, reqs: &[(Skill, u8)]) -> bool {
        reqs.iter().all(|&(s, min)| self.proficiency(s) >= min)
    }
}

/// Who a call is ringing.
#[derive(Clone)]
enum OfferedTo {
    One(AgentIdx),
    Many(Vec<AgentIdx>),
}

impl OfferedTo {
    fn as_slice(&self) -> &[AgentIdx] {
        match self {
            OfferedTo::One(a) => std::slice::from_ref(a),
            OfferedTo::Many(v) => v,
        }
    }
}

enum Phase {
    Waiting,
    Offered {
        to: OfferedTo,
        since: Time,
    },
    Connected {
        agent: AgentIdx,
        since: Time,
        hold: Duration,
    },
}

struct Call {
    queue: QueueIdx,
    priority: u8,
    extra: Box<[(Skill, u8, bool)]>,
    seq: u64,
    enqueued_at: Time,
    step: u8,
    class: ClassIdx,
    orig_position: u32,
    phase: Phase,
    escalate_at: Option<Time>,
    max_wait_at: Option<Time>,
    ring_at: Option<Time>,
}

impl Call {
    fn key(&self) -> (u8, u64) {
        (9 - self.priority, self.seq)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Timer {
    // At equal deadlines, escalations fire first, so an agent freed at the same moment already
    // sees the widened eligibility.
    Escalate(CallId),
    MaxWait(CallId),
    Ring(CallId),
    WrapUpEnd(AgentIdx),
}

/// The skills-based ACD engine. See the crate docs for the drive contract and the index.
pub struct Acd {
    queues: Vec<Queue>,
    queue_names: HashMap<Arc<str>, QueueIdx>,
    agents: Vec<Agent>,
    classes: Vec<Class>,
    class_index: HashMap<ClassKey, ClassIdx>,
    skill_names: HashMap<String, Skill>,
    /// Per skill, per proficiency level (index level-1): the agents with exactly that level.
    skill_agents: Vec<[Vec<AgentIdx>; 10]>,
    calls: IdMap<CallId, Call>,
    timers: BTreeSet<(Time, Timer)>,
    events: VecDeque<AcdEvent>,
    next_seq: u64,
    /// Classes that may have become empty for a leave-when-empty policy.
    emptied: Vec<ClassIdx>,
    /// Classes that gained waiting calls by escalation, to match after the batch.
    dirty: Vec<ClassIdx>,
    rng: ChaCha8Rng,
}

fn is_logged_in(s: &AgentState) -> bool {
    !matches!(s, AgentState::LoggedOut)
}

fn is_available(s: &AgentState) -> bool {
    matches!(
        s,
        AgentState::Ready
            | AgentState::Offered(_)
            | AgentState::OnCall(_)
            | AgentState::WrapUp { .. }
    )
}

fn rank(strategy: Strategy, agent: &Agent, idx: AgentIdx, ac: &AgentClass) -> Rank {
    let idle = agent.idle_since.as_micros();
    match strategy {
        Strategy::LongestIdle | Strategy::RingAll => (idle, 0, idx),
        Strategy::FewestCalls => (agent.counters.calls_answered, idle, idx),
        Strategy::LeastTalkTime => (agent.counters.talk.as_micros() as u64, idle, idx),
        Strategy::RoundRobin | Strategy::Linear => (u64::from(idx), 0, idx),
        Strategy::Random => (0, 0, idx),
        Strategy::BestSkill => (u64::from(u16::MAX - ac.skill_sum), idle, idx),
    }
}

impl Acd {
    /// An empty engine; `seed` seeds the RNG of the random strategy.
    pub fn new(seed: u64) -> Self {
        Self::with_rng(ChaCha8Rng::seed_from_u64(seed))
    }

    /// An empty engine drawing from the given RNG.
    pub fn with_rng(rng: ChaCha8Rng) -> Self {
        Acd {
            queues: Vec::new(),
            queue_names: HashMap::new(),
            agents: Vec::new(),
            classes: Vec::new(),
            class_index: HashMap::new(),
            skill_names: HashMap::new(),
            skill_agents: Vec::new(),
            calls: IdMap::default(),
            timers: BTreeSet::new(),
            events: VecDeque::new(),
            next_seq: 0,
            emptied: Vec::new(),
            dirty: Vec::new(),
            rng,
        }
    }

    /// The skill with this name, interned on first use.
    pub fn skill(&mut self, name: &str) -> Result<Skill, AcdError> {
        if let Some(&s) = self.skill_names.get(name) {
            return Ok(s);
        }
        let n = u16::try_from(self.skill_agents.len()).map_err(|_| AcdError::TooManySkills)?;
        self.skill_agents.push(Default::default());
        self.skill_names.insert(name.to_owned(), Skill(n));
        Ok(Skill(n))
    }

    /// The skill with this name, if it is known.
    pub fn find_skill(&self, name: &str) -> Option<Skill> {
        self.skill_names.get(name).copied()
    }

    /// The queue with this name.
    pub fn find_queue(&self, name: &str) -> Option<QueueId> {
        self.queue_names.get(name).map(|&q| QueueId(q))
    }

    /// Adds a queue.
    pub fn add_queue(&mut self, cfg: QueueConfig) -> Result<QueueId, AcdError> {
        if self.queue_names.contains_key(cfg.name.as_str()) {
            return Err(AcdError::DuplicateQueue);
        }
        Self::check_escalation(&cfg)?;
        let mut reqs = Vec::with_capacity(cfg.skills.len());
        for r in &cfg.skills {
            let p = Proficiency::new(r.min).ok_or(AcdError::BadProficiency(r.min))?;
            reqs.push((self.skill(&r.skill)?, p.get(), r.optional));
        }
        let idx = self.queues.len() as QueueIdx;
        let name: Arc<str> = Arc::from(cfg.name.as_str());
        self.queue_names.insert(name.clone(), idx);
        self.queues.push(Queue {
            name,
            step_classes: vec![None; cfg.escalation.len() + 1],
            cfg,
            reqs,
            classes: Vec::new(),
            members: Vec::new(),
            waiting: std::array::from_fn(|_| BTreeMap::new()),
            rr_cursor: 0,
            logged_in: 0,
            available: 0,
            counters: QueueCounters::default(),
            retired: false,
        });
        Ok(QueueId(idx))
    }

    /// Adds an agent (logged out). Its queues must exist.
    pub fn add_agent(&mut self, cfg: AgentConfig) -> Result<AgentId, AcdError> {
        let (skills, queues) = self.resolve_agent(&cfg)?;
        let idx = self.agents.len() as AgentIdx;
        for &(s, level) in &skills {
            self.skill_agents[s.0 as usize][level as usize - 1].push(idx);
        }
        for &(q, _) in &queues {
            self.queues[q as usize].members.push(idx);
        }
        self.agents.push(Agent {
            name: Arc::from(cfg.name.as_str()),
            skills,
            queues: queues.clone(),
            classes: Vec::new(),
            state: AgentState::LoggedOut,
            state_since: Time::ZERO,
            idle_since: Time::ZERO,
            login_at: Time::ZERO,
            pending_not_ready: None,
            consecutive_no_answer: 0,
            indexed: false,
            wrap_queue: None,
            wrap_timer: None,
            counters: AgentCounters::default(),
        });
        for &(q, prio) in &queues {
            for ci in 0..self.queues[q as usize].classes.len() {
                let c = self.queues[q as usize].classes[ci];
                let agent = &self.agents[idx as usize];
                let class = &mut self.classes[c as usize];
                if agent.satisfies(&class.reqs) {
                    let skill_sum = class
                        .reqs
                        .iter()
                        .map(|&(s, _)| u16::from(agent.proficiency(s)))
                        .sum();
                    class.members.insert(idx);
                    self.agents[idx as usize].classes.push(AgentClass {
                        class: c,
                        queue_priority: prio,
                        skill_sum,
                    });
                }
            }
        }
        Ok(AgentId(idx))
    }

    /// Reconfigure an agent: new name, skills and queues (a config reload). The agent keeps
    /// its state and any call it has; its eligibility changes at once, so if it is Ready and
    /// now eligible for a waiting call, that call is offered to it.
    pub fn update_agent(
        &mut self,
        agent: AgentId,
        cfg: AgentConfig,
        now: Time,
    ) -> Result<(), AcdError> {
        let a = self.agent_idx(agent)?;
        let (skills, queues) = self.resolve_agent(&cfg)?;
        self.agents[a as usize].name = Arc::from(cfg.name.as_str());
        self.reattach(a, skills, queues, now);
        self.settle(now);
        Ok(())
    }

    /// Remove an agent (a config reload): it is logged out (an offer is withdrawn) and loses
    /// its skills and queues, so it takes no further work; an agent on a call keeps that call
    /// and is logged out by call control when it ends. Its id stays reserved.
    pub fn remove_agent(&mut self, agent: AgentId, now: Time) -> Result<(), AcdError> {
        let a = self.agent_idx(agent)?;
        if !matches!(self.agents[a as usize].state, AgentState::OnCall(_)) {
            self.logout(agent, now)?;
        }
        self.reattach(a, Vec::new(), Vec::new(), now);
        self.settle(now);
        Ok(())
    }

    /// Reconfigure a queue (a config reload). Settings that do not change who may take a call
    /// (timeouts, wrap-up, overflow, policies, service level) apply to the next decisions;
    /// new skills, strategy or escalation steps rebuild the queue's eligibility classes and
    /// re-class its calls in place (nobody loses their place in line), then any Ready agent
    /// now eligible for a waiting call gets it.
    pub fn update_queue(
        &mut self,
        queue: QueueId,
        cfg: QueueConfig,
        now: Time,
    ) -> Result<(), AcdError> {
        let q = queue.0;
        let Some(old) = self.queues.get(q as usize) else {
            return Err(AcdError::UnknownQueue);
        };
        if old.retired || *old.name != *cfg.name {
            return Err(AcdError::UnknownQueue);
        }
        Self::check_escalation(&cfg)?;
        let mut reqs = Vec::with_capacity(cfg.skills.len());
        for r in &cfg.skills {
            let p = Proficiency::new(r.min).ok_or(AcdError::BadProficiency(r.min))?;
            reqs.push((self.skill(&r.skill)?, p.get(), r.optional));
        }
        let old = &self.queues[q as usize];
        let rebuild = old.reqs != reqs
            || old.cfg.strategy != cfg.strategy
            || old.cfg.escalation != cfg.escalation;
        let queue = &mut self.queues[q as usize];
        queue.cfg = cfg;
        if !rebuild {
            return Ok(());
        }
        queue.reqs = reqs;
        // Drop the old classes: agents forget them, calls are re-classed below.
        let old_classes = std::mem::take(&mut queue.classes);
        queue.step_classes = vec![None; queue.cfg.escalation.len() + 1];
        let members = queue.members.clone();
        for &c in &old_classes {
            let class = &mut self.classes[c as usize];
            class.members = Bitset::default();
            class.ready = ReadySet::new(false);
            class.waiting.clear();
            class.logged_in = 0;
            class.available = 0;
        }
        for &m in &members {
            self.agents[m as usize]
                .classes
                .retain(|ac| !old_classes.contains(&ac.class));
        }
        self.class_index.retain(|k, _| k.0 != q);
        let max_step = self.queues[q as usize].cfg.escalation.len() as u8;
        let mut ids: Vec<(u64, CallId)> = self
            .calls
            .iter()
            .filter(|(_, c)| c.queue == q)
            .map(|(id, c)| (c.seq, *id))
            .collect();
        ids.sort_unstable();
        for (_, id) in ids {
            let (extra, step) = {
                let call = self.calls.get_mut(&id).expect("present");
                call.step = call.step.min(max_step);
                (std::mem::take(&mut call.extra), call.step as usize)
            };
            let class = self.class_for(q, &extra, step);
            let call = self.calls.get_mut(&id).expect("present");
            call.extra = extra;
            call.class = class;
            if matches!(call.phase, Phase::Waiting) {
                let key = call.key();
                self.classes[class as usize].waiting.insert(key, id);
                self.dirty.push(class);
            }
        }
        self.rebalance(now);
        self.settle(now);
        Ok(())
    }

    /// Remove a queue (a config reload). Calls waiting or ringing in it follow its overflow
    /// rule at once (to the target queue, to the external destination, or they end as timed
    /// out); connected calls finish normally. Its agents stop serving it. The name becomes
    /// free; the id stays reserved.
    pub fn remove_queue(&mut self, queue: QueueId, now: Time) -> Result<(), AcdError> {
        let q = queue.0;
        if self.queues.get(q as usize).is_none_or(|x| x.retired) {
            return Err(AcdError::UnknownQueue);
        }
        let mut waiting: Vec<(u8, u64, CallId)> = self
            .calls
            .iter()
            .filter(|(_, c)| c.queue == q && !matches!(c.phase, Phase::Connected { .. }))
            .map(|(id, c)| (9 - c.priority, c.seq, *id))
            .collect();
        waiting.sort_unstable();
        for (_, _, id) in waiting {
            self.max_wait(id, now);
        }
        let members = self.queues[q as usize].members.clone();
        for m in members {
            let skills = self.agents[m as usize].skills.clone();
            let queues: Vec<(QueueIdx, u8)> = self.agents[m as usize]
                .queues
                .iter()
                .copied()
                .filter(|&(x, _)| x != q)
                .collect();
            self.reattach(m, skills, queues, now);
        }
        let queue = &mut self.queues[q as usize];
        queue.retired = true;
        let name = queue.name.clone();
        self.queue_names.remove(&name);
        self.settle(now);
        Ok(())
    }

    fn check_escalation(cfg: &QueueConfig) -> Result<(), AcdError> {
        let mut prev: Option<&crate::config::EscalationStep> = None;
        for step in &cfg.escalation {
            if let Some(p) = prev {
                if step.after < p.after
                    || step.lower_by < p.lower_by
                    || (p.drop_optional && !step.drop_optional)
                {
                    return Err(AcdError::BadEscalation);
                }
            }
            prev = Some(step);
        }
        Ok(())
    }

    /// Skills and queues of an agent config, resolved to ids (checked, not applied).
    #[allow(clippy::type_complexity)]
    fn resolve_agent(
        &mut self,
        cfg: &AgentConfig,
    ) -> Result<(Vec<(Skill, u8)>, Vec<(QueueIdx, u8)>), AcdError> {
        let mut skills = Vec::with_capacity(cfg.skills.len());
        for s in &cfg.skills {
            let p =
                Proficiency::new(s.proficiency).ok_or(AcdError::BadProficiency(s.proficiency))?;
            skills.push((self.skill(&s.skill)?, p.get()));
        }
        skills.sort_unstable();
        skills.dedup_by(|b, a| {
            // keep the higher proficiency of a duplicated skill
            if a.0 == b.0 {
                a.1 = a.1.max(b.1);
                true
            } else {
                false
            }
        });
        let mut queues = Vec::with_capacity(cfg.queues.len());
        for m in &cfg.queues {
            let q = *self
                .queue_names
                .get(m.queue.as_str())
                .ok_or(AcdError::UnknownQueue)?;
            if m.priority > 9 {
                return Err(AcdError::BadPriority(m.priority));
            }
            if !queues.iter().any(|&(x, _)| x == q) {
                queues.push((q, m.priority));
            }
        }
        Ok((skills, queues))
    }

    /// Replace an agent's skills and queues, keeping every index in step: skill lists, queue
    /// member lists and counts, class memberships and counts, Ready sets. A Ready agent then
    /// takes its best waiting call if it now has one.
    fn reattach(
        &mut self,
        a: AgentIdx,
        skills: Vec<(Skill, u8)>,
        queues: Vec<(QueueIdx, u8)>,
        now: Time,
    ) {
        let (li, av, indexed) = {
            let agent = &self.agents[a as usize];
            (
                u32::from(is_logged_in(&agent.state)),
                u32::from(is_available(&agent.state)),
                agent.indexed,
            )
        };
        {
            let Acd {
                agents,
                classes,
                queues: qs,
                skill_agents,
                ..
            } = self;
            let agent = &mut agents[a as usize];
            let old_classes = std::mem::take(&mut agent.classes);
            for ac in &old_classes {
                let class = &mut classes[ac.class as usize];
                if indexed {
                    class.ready.remove(rank(class.strategy, agent, a, ac));
                }
                class.members.remove(a);
                class.logged_in -= li;
                class.available -= av;
            }
            agent.indexed = false;
            for &(s, level) in &agent.skills {
                skill_agents[s.0 as usize][level as usize - 1].retain(|&x| x != a);
            }
            for &(q, _) in &agent.queues {
                let queue = &mut qs[q as usize];
                queue.members.retain(|&x| x != a);
                queue.logged_in -= li;
                queue.available -= av;
            }
            agent.skills = skills;
            agent.queues = queues;
        }
        let agent_skills = self.agents[a as usize].skills.clone();
        for &(s, level) in &agent_skills {
            self.skill_agents[s.0 as usize][level as usize - 1].push(a);
        }
        let agent_queues = self.agents[a as usize].queues.clone();
        for &(q, prio) in &agent_queues {
            let queue = &mut self.queues[q as usize];
            queue.members.push(a);
            queue.logged_in += li;
            queue.available += av;
            for ci in 0..self.queues[q as usize].classes.len() {
                let c = self.queues[q as usize].classes[ci];
                let agent = &self.agents[a as usize];
                let class = &mut self.classes[c as usize];
                if !agent.satisfies(&class.reqs) {
                    continue;
                }
                let skill_sum = class
                    .reqs
                    .iter()
                    .map(|&(s, _)| u16::from(agent.proficiency(s)))
                    .sum();
                class.members.insert(a);
                class.logged_in += li;
                class.available += av;
                self.agents[a as usize].classes.push(AgentClass {
                    class: c,
                    queue_priority: prio,
                    skill_sum,
                });
            }
        }
        if self.agents[a as usize].state == AgentState::Ready {
            match self.best_call_for(a) {
                Some(call) => self.offer(call, OfferedTo::One(a), now),
                None => {
                    let Acd {
                        agents, classes, ..
                    } = self;
                    let agent = &mut agents[a as usize];
                    agent.indexed = true;
                    for ac in &agent.classes {
                        let class = &mut classes[ac.class as usize];
                        class.ready.insert(rank(class.strategy, agent, a, ac));
                    }
                }
            }
        }
    }

    /// Number of agents added.
    pub fn agent_count(&self) -> usize {
        self.agents.len()
    }

    /// Number of queues added.
    pub fn queue_count(&self) -> usize {
        self.queues.len()
    }

    /// An agent's state.
    pub fn agent_state(&self, agent: AgentId) -> Option<&AgentState> {
        self.agents.get(agent.0 as usize).map(|a| &a.state)
    }

    /// A call's state, if it is in the ACD.
    pub fn call_state(&self, call: CallId) -> Option<CallState> {
        self.calls.get(&call).map(|c| match &c.phase {
            Phase::Waiting => CallState::Waiting,
            Phase::Offered { .. } => CallState::Offered,
            Phase::Connected { agent, .. } => CallState::Connected(AgentId(*agent)),
        })
    }

    /// The queue a call is in, if it is in the ACD.
    pub fn call_queue(&self, call: CallId) -> Option<QueueId> {
        self.calls.get(&call).map(|c| QueueId(c.queue))
    }

    /// The waiting calls of a queue in the order they will be served (priority, then arrival).
    pub fn waiting_calls(&self, queue: QueueId) -> impl Iterator<Item = CallId> + '_ {
        self.queues
            .get(queue.0 as usize)
            .into_iter()
            .flat_map(|q| q.waiting.iter().rev().flat_map(|m| m.values().copied()))
    }

    /// Number of calls in the ACD (waiting, ringing or connected).
    pub fn call_count(&self) -> usize {
        self.calls.len()
    }

    /// Next output, if any.
    pub fn poll_event(&mut self) -> Option<AcdEvent> {
        self.events.pop_front()
    }

    /// The next deadline at which [`Acd::handle_timeout`] has work (escalation, wrap-up end,
    /// maximum wait, ring timeout).
    pub fn poll_timeout(&self) -> Option<Time> {
        self.timers.first().map(|t| t.0)
    }

    /// Fires every timer due at `now`.
    pub fn handle_timeout(&mut self, now: Time) {
        while let Some(&(at, timer)) = self.timers.first() {
            if at > now {
                break;
            }
            self.timers.pop_first();
            match timer {
                Timer::WrapUpEnd(a) => {
                    self.agents[a as usize].wrap_timer = None;
                    self.finish_work(a, now);
                }
                Timer::Ring(c) => self.ring_timeout(c, now),
                Timer::Escalate(c) => self.escalate(c),
                Timer::MaxWait(c) => self.max_wait(c, now),
            }
            // Escalations due at the same instant all apply before anyone is matched, so a
            // higher-priority call escalating at the same moment is not passed over.
            let more_escalations =
                matches!(self.timers.first(), Some(&(t, Timer::Escalate(_))) if t == at);
            if !more_escalations {
                self.rebalance(now);
            }
        }
        self.settle(now);
    }

    /// Applies one input.
    pub fn handle_command(&mut self, now: Time, cmd: AcdCommand) -> Result<(), AcdError> {
        let r = match cmd {
            AcdCommand::Login(a) => self.login(a, now),
            AcdCommand::Logout(a) => self.logout(a, now),
            AcdCommand::Ready(a) => self.ready(a, now),
            AcdCommand::NotReady(a, reason) => self.not_ready(a, reason, now),
            AcdCommand::Arrive(arrival) => self.arrive(arrival, now),
            AcdCommand::Answer { call, agent } => self.answer(call, agent, now),
            AcdCommand::OfferFailed { call, agent } => self.offer_failed(call, agent, now),
            AcdCommand::Abandon(call) => self.abandon(call, now),
            AcdCommand::Hangup { call, by } => self.hangup(call, by, now),
        };
        self.settle(now);
        r
    }

    // ---- agent commands -------------------------------------------------------------------

    fn agent_idx(&self, a: AgentId) -> Result<AgentIdx, AcdError> {
        if (a.0 as usize) < self.agents.len() {
            Ok(a.0)
        } else {
            Err(AcdError::UnknownAgent(a))
        }
    }

    fn login(&mut self, a: AgentId, now: Time) -> Result<(), AcdError> {
        let i = self.agent_idx(a)?;
        if self.agents[i as usize].state != AgentState::LoggedOut {
            return Ok(());
        }
        self.agents[i as usize].login_at = now;
        self.log(None, None, Some(i), QueueLogKind::AgentLogin);
        self.make_ready(i, now, true);
        Ok(())
    }

    fn logout(&mut self, a: AgentId, now: Time) -> Result<(), AcdError> {
        let i = self.agent_idx(a)?;
        match self.agents[i as usize].state.clone() {
            AgentState::LoggedOut => return Ok(()),
            AgentState::OnCall(_) => return Err(AcdError::AgentState(a)),
            AgentState::Offered(c) => self.drop_offer(c, i, WithdrawReason::AgentUnavailable, now),
            AgentState::WrapUp { .. } => self.cancel_wrap(i),
            AgentState::Ready | AgentState::NotReady(_) => {}
        }
        let agent = &mut self.agents[i as usize];
        agent.pending_not_ready = None;
        let logged_in = now - agent.login_at;
        self.set_state(i, AgentState::LoggedOut, now, false);
        self.log(None, None, Some(i), QueueLogKind::AgentLogoff { logged_in });
        Ok(())
    }

    fn ready(&mut self, a: AgentId, now: Time) -> Result<(), AcdError> {
        let i = self.agent_idx(a)?;
        match self.agents[i as usize].state.clone() {
            AgentState::LoggedOut | AgentState::Offered(_) => Err(AcdError::AgentState(a)),
            AgentState::Ready => Ok(()),
            AgentState::OnCall(_) => {
                self.agents[i as usize].pending_not_ready = None;
                Ok(())
            }
            AgentState::NotReady(reason) => {
                self.log(None, None, Some(i), QueueLogKind::Unpause { reason });
                self.make_ready(i, now, true);
                Ok(())
            }
            AgentState::WrapUp { .. } => {
                self.cancel_wrap(i);
                self.make_ready(i, now, true);
                Ok(())
            }
        }
    }

    fn not_ready(&mut self, a: AgentId, reason: ReasonCode, now: Time) -> Result<(), AcdError> {
        let i = self.agent_idx(a)?;
        match self.agents[i as usize].state.clone() {
            AgentState::LoggedOut => return Err(AcdError::AgentState(a)),
            AgentState::OnCall(_) => {
                self.agents[i as usize].pending_not_ready = Some(reason);
                return Ok(());
            }
            AgentState::Offered(c) => self.drop_offer(c, i, WithdrawReason::AgentUnavailable, now),
            AgentState::WrapUp { .. } => self.cancel_wrap(i),
            AgentState::Ready | AgentState::NotReady(_) => {}
        }
        self.pause(i, reason, now);
        Ok(())
    }

    fn pause(&mut self, i: AgentIdx, reason: ReasonCode, now: Time) {
        self.log(
            None,
            None,
            Some(i),
            QueueLogKind::Pause {
                reason: reason.clone(),
            },
        );
        self.set_state(i, AgentState::NotReady(reason), now, false);
    }

    fn cancel_wrap(&mut self, i: AgentIdx) {
        if let Some(at) = self.agents[i as usize].wrap_timer.take() {
            self.timers.remove(&(at, Timer::WrapUpEnd(i)));
        }
    }

    /// After a call and its wrap-up: Ready (or the pending NotReady).
    fn finish_work(&mut self, i: AgentIdx, now: Time) {
        if let Some(reason) = self.agents[i as usize].pending_not_ready.take() {
            self.pause(i, reason, now);
        } else {
            self.make_ready(i, now, true);
        }
    }

    // ---- call commands --------------------------------------------------------------------

    fn arrive(&mut self, arrival: CallArrival, now: Time) -> Result<(), AcdError> {
        let q = arrival.queue.0;
        if q as usize >= self.queues.len() || self.queues[q as usize].retired {
            return Err(AcdError::UnknownQueue);
        }
        if arrival.priority > 9 {
            return Err(AcdError::BadPriority(arrival.priority));
        }
        if self.calls.contains_key(&arrival.call) {
            return Err(AcdError::DuplicateCall(arrival.call));
        }
        let mut extra = Vec::with_capacity(arrival.extra_skills.len());
        for &(s, p, optional) in &arrival.extra_skills {
            if s.0 as usize >= self.skill_agents.len() {
                return Err(AcdError::TooManySkills);
            }
            extra.push((s, p.get(), optional));
        }
        self.enqueue(
            arrival.call,
            q,
            arrival.priority,
            extra.into_boxed_slice(),
            now,
        );
        Ok(())
    }

    fn enqueue(
        &mut self,
        id: CallId,
        q: QueueIdx,
        priority: u8,
        extra: Box<[(Skill, u8, bool)]>,
        now: Time,
    ) {
        let queue = &self.queues[q as usize];
        let step = queue
            .cfg
            .escalation
            .iter()
            .take_while(|s| s.after.is_zero())
            .count();
        let class = self.class_for(q, &extra, step);
        let c = &self.classes[class as usize];
        let refuse = match self.queues[q as usize].cfg.join_empty {
            EmptyPolicy::Never => false,
            EmptyPolicy::NoAgentsLoggedIn => c.logged_in == 0,
            EmptyPolicy::NoAgentsAvailable => c.available == 0,
        };
        if refuse {
            self.queues[q as usize].counters.refused += 1;
            self.events.push_back(AcdEvent::CallEnded {
                call: id,
                queue: QueueId(q),
                outcome: CallOutcome::JoinEmpty,
            });
            return;
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        let queue = &mut self.queues[q as usize];
        queue.waiting[priority as usize].insert(seq, id);
        // the newest call of its priority: behind every call of this or a higher priority
        let orig_position = queue.waiting[priority as usize..]
            .iter()
            .map(BTreeMap::len)
            .sum::<usize>() as u32;
        queue.counters.entered += 1;
        let escalate_at = queue.cfg.escalation.get(step).map(|s| now + s.after);
        let max_wait_at = queue.cfg.max_wait.map(|d| now + d);
        self.classes[class as usize]
            .waiting
            .insert((9 - priority, seq), id);
        if let Some(at) = escalate_at {
            self.timers.insert((at, Timer::Escalate(id)));
        }
        if let Some(at) = max_wait_at {
            self.timers.insert((at, Timer::MaxWait(id)));
        }
        self.calls.insert(
            id,
            Call {
                queue: q,
                priority,
                extra,
                seq,
                enqueued_at: now,
                step: step as u8,
                class,
                orig_position,
                phase: Phase::Waiting,
                escalate_at,
                max_wait_at,
                ring_at: None,
            },
        );
        self.log(Some(id), Some(q), None, QueueLogKind::EnterQueue);
        self.try_assign_call(id, now);
    }

    fn answer(&mut self, id: CallId, a: AgentId, now: Time) -> Result<(), AcdError> {
        let i = self.agent_idx(a)?;
        let call = self.calls.get_mut(&id).ok_or(AcdError::UnknownCall(id))?;
        let (to, since) = match &call.phase {
            Phase::Offered { to, since } if to.as_slice().contains(&i) => (to.clone(), *since),
            _ => return Err(AcdError::CallState(id)),
        };
        let hold = now - call.enqueued_at;
        call.phase = Phase::Connected {
            agent: i,
            since: now,
            hold,
        };
        let q = call.queue;
        let timers = [
            call.ring_at.take().map(|t| (t, Timer::Ring(id))),
            call.escalate_at.take().map(|t| (t, Timer::Escalate(id))),
            call.max_wait_at.take().map(|t| (t, Timer::MaxWait(id))),
        ];
        for t in timers.into_iter().flatten() {
            self.timers.remove(&t);
        }
        let others: Vec<AgentIdx> = to.as_slice().iter().copied().filter(|&x| x != i).collect();
        for &o in &others {
            self.events.push_back(AcdEvent::Withdraw {
                call: id,
                agent: AgentId(o),
                reason: WithdrawReason::AnsweredElsewhere,
            });
        }
        let queue = &mut self.queues[q as usize];
        queue.counters.answered += 1;
        queue.counters.total_hold += hold;
        if hold <= queue.cfg.service_level {
            queue.counters.answered_in_sl += 1;
        }
        let agent = &mut self.agents[i as usize];
        agent.consecutive_no_answer = 0;
        agent.counters.calls_answered += 1;
        self.set_state(i, AgentState::OnCall(id), now, false);
        self.log(
            Some(id),
            Some(q),
            Some(i),
            QueueLogKind::Connect {
                hold,
                ring: now - since,
            },
        );
        for o in others {
            self.make_ready(o, now, false);
        }
        Ok(())
    }

    fn hangup(&mut self, id: CallId, by: Party, now: Time) -> Result<(), AcdError> {
        let call = self.calls.get(&id).ok_or(AcdError::UnknownCall(id))?;
        let Phase::Connected {
            agent: i,
            since,
            hold,
        } = call.phase
        else {
            return Err(AcdError::CallState(id));
        };
        let call = self.calls.remove(&id).expect("present");
        let q = call.queue;
        let talk = now - since;
        let queue = &mut self.queues[q as usize];
        queue.counters.completed += 1;
        queue.counters.total_talk += talk;
        let wrap = queue.cfg.wrap_up;
        self.agents[i as usize].counters.talk += talk;
        let kind = match by {
            Party::Agent => QueueLogKind::CompleteAgent {
                hold,
                talk,
                orig_position: call.orig_position,
            },
            Party::Caller => QueueLogKind::CompleteCaller {
                hold,
                talk,
                orig_position: call.orig_position,
            },
        };
        self.log(Some(id), Some(q), Some(i), kind);
        self.events.push_back(AcdEvent::CallEnded {
            call: id,
            queue: QueueId(q),
            outcome: CallOutcome::Completed(by),
        });
        if wrap.is_zero() {
            self.finish_work(i, now);
        } else {
            let until = now + wrap;
            let agent = &mut self.agents[i as usize];
            agent.wrap_queue = Some(q);
            agent.wrap_timer = Some(until);
            self.timers.insert((until, Timer::WrapUpEnd(i)));
            self.set_state(i, AgentState::WrapUp { until }, now, false);
        }
        Ok(())
    }

    fn abandon(&mut self, id: CallId, now: Time) -> Result<(), AcdError> {
        let call = self.calls.get(&id).ok_or(AcdError::UnknownCall(id))?;
        if matches!(call.phase, Phase::Connected { .. }) {
            return Err(AcdError::CallState(id));
        }
        let freed = self.take_offers(id, WithdrawReason::CallerAbandoned);
        let call = self.remove_call(id);
        let q = call.queue;
        let wait = now - call.enqueued_at;
        let queue = &mut self.queues[q as usize];
        let pos = position(queue, call.priority, call.seq);
        if wait < queue.cfg.short_abandon {
            queue.counters.short_abandoned += 1;
        } else {
            queue.counters.abandoned += 1;
        }
        self.log(
            Some(id),
            Some(q),
            None,
            QueueLogKind::Abandon {
                position: pos,
                orig_position: call.orig_position,
                wait,
            },
        );
        self.events.push_back(AcdEvent::CallEnded {
            call: id,
            queue: QueueId(q),
            outcome: CallOutcome::Abandoned,
        });
        self.release(freed, now);
        Ok(())
    }

    fn offer_failed(&mut self, id: CallId, a: AgentId, now: Time) -> Result<(), AcdError> {
        let i = self.agent_idx(a)?;
        let call = self.calls.get(&id).ok_or(AcdError::UnknownCall(id))?;
        let since = match &call.phase {
            Phase::Offered { to, since } if to.as_slice().contains(&i) => *since,
            _ => return Err(AcdError::CallState(id)),
        };
        let q = call.queue;
        self.drop_offer(id, i, WithdrawReason::Failed, now);
        self.no_answer(i, q, now - since, now);
        Ok(())
    }

    // ---- timers ---------------------------------------------------------------------------

    fn ring_timeout(&mut self, id: CallId, now: Time) {
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        call.ring_at = None;
        let Phase::Offered { since, .. } = call.phase else {
            return;
        };
        let q = call.queue;
        let freed = self.take_offers(id, WithdrawReason::RingTimeout);
        self.return_to_line(id, now);
        for a in freed.as_slice() {
            self.no_answer(*a, q, now - since, now);
        }
    }

    /// Moves a waiting call into the class of its next escalation step; matching is left to
    /// [`Acd::rebalance`].
    fn escalate(&mut self, id: CallId) {
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        call.escalate_at = None;
        if call.step as usize >= self.queues[call.queue as usize].cfg.escalation.len() {
            // The queue lost escalation steps in a reconfiguration.
            return;
        }
        call.step += 1;
        let (q, step, old) = (call.queue, call.step as usize, call.class);
        let queue = &self.queues[q as usize];
        let next = queue
            .cfg
            .escalation
            .get(step)
            .map(|s| call.enqueued_at + s.after);
        if let Some(at) = next {
            call.escalate_at = Some(at);
            self.timers.insert((at, Timer::Escalate(id)));
        }
        let extra = std::mem::take(&mut call.extra);
        let class = self.class_for(q, &extra, step);
        let call = self.calls.get_mut(&id).expect("present");
        call.extra = extra;
        if class == old {
            return;
        }
        call.class = class;
        if matches!(call.phase, Phase::Waiting) {
            let key = call.key();
            self.classes[old as usize].waiting.remove(&key);
            self.classes[class as usize].waiting.insert(key, id);
            self.dirty.push(class);
        }
    }

    /// Classes that gained waiting calls without matching (escalations): while one holds both a
    /// Ready agent and a waiting call, the agent its strategy ranks first takes its best call
    /// (which may be in another of its classes). Each round makes one offer.
    fn rebalance(&mut self, now: Time) {
        while let Some(&c) = self.dirty.last() {
            let class = &self.classes[c as usize];
            if class.waiting.is_empty() || class.ready.is_empty() {
                self.dirty.pop();
                continue;
            }
            let agent = match self.pick(c) {
                OfferedTo::One(a) => a,
                OfferedTo::Many(v) => v[0],
            };
            self.try_assign_agent(agent, now);
        }
    }

    fn max_wait(&mut self, id: CallId, now: Time) {
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        call.max_wait_at = None;
        if matches!(call.phase, Phase::Connected { .. }) {
            return;
        }
        let freed = self.take_offers(id, WithdrawReason::MaxWait);
        let call = self.remove_call(id);
        let q = call.queue;
        let queue = &mut self.queues[q as usize];
        let pos = position(queue, call.priority, call.seq);
        let wait = now - call.enqueued_at;
        self.log(
            Some(id),
            Some(q),
            None,
            QueueLogKind::ExitWithTimeout {
                position: pos,
                orig_position: call.orig_position,
                wait,
            },
        );
        let queue = &mut self.queues[q as usize];
        let target = match &queue.cfg.overflow {
            Some(OverflowTarget::Queue(name)) => self
                .queue_names
                .get(name.as_str())
                .map(|&t| Overflow::Queue(QueueId(t))),
            Some(OverflowTarget::External(dest)) => {
                Some(Overflow::External(Arc::from(dest.as_str())))
            }
            None => None,
        };
        let queue = &mut self.queues[q as usize];
        match target {
            Some(to) => {
                queue.counters.overflowed += 1;
                self.events.push_back(AcdEvent::Overflow {
                    call: id,
                    from: QueueId(q),
                    to: to.clone(),
                });
                match to {
                    Overflow::Queue(t) => self.enqueue(id, t.0, call.priority, call.extra, now),
                    Overflow::External(_) => self.events.push_back(AcdEvent::CallEnded {
                        call: id,
                        queue: QueueId(q),
                        outcome: CallOutcome::Overflowed,
                    }),
                }
            }
            None => {
                queue.counters.timed_out += 1;
                self.events.push_back(AcdEvent::Timeout {
                    call: id,
                    queue: QueueId(q),
                });
                self.events.push_back(AcdEvent::CallEnded {
                    call: id,
                    queue: QueueId(q),
                    outcome: CallOutcome::TimedOut,
                });
            }
        }
        self.release(freed, now);
    }

    /// Calls of classes that became empty leave, for queues with a leave-when-empty policy.
    fn settle(&mut self, now: Time) {
        while let Some(c) = self.emptied.pop() {
            let class = &self.classes[c as usize];
            let empty = match self.queues[class.queue as usize].cfg.leave_when_empty {
                EmptyPolicy::Never => false,
                EmptyPolicy::NoAgentsLoggedIn => class.logged_in == 0,
                EmptyPolicy::NoAgentsAvailable => class.available == 0,
            };
            if !empty {
                continue;
            }
            let ids: Vec<CallId> = class.waiting.values().copied().collect();
            for id in ids {
                let call = self.remove_call(id);
                let q = call.queue;
                let queue = &mut self.queues[q as usize];
                let pos = position(queue, call.priority, call.seq);
                queue.counters.left_empty += 1;
                let wait = now - call.enqueued_at;
                self.log(
                    Some(id),
                    Some(q),
                    None,
                    QueueLogKind::ExitEmpty {
                        position: pos,
                        orig_position: call.orig_position,
                        wait,
                    },
                );
                self.events.push_back(AcdEvent::CallEnded {
                    call: id,
                    queue: QueueId(q),
                    outcome: CallOutcome::LeftEmpty,
                });
            }
        }
    }

    // ---- offers ---------------------------------------------------------------------------

    /// Ends every offer of a ringing call (emitting withdrawals); the call is left out of line
    /// (the caller decides where it goes) and the agents are returned for [`Acd::release`].
    fn take_offers(&mut self, id: CallId, reason: WithdrawReason) -> OfferedTo {
        let call = self.calls.get_mut(&id).expect("present");
        if !matches!(call.phase, Phase::Offered { .. }) {
            return OfferedTo::Many(Vec::new());
        }
        let Phase::Offered { to, .. } = std::mem::replace(&mut call.phase, Phase::Waiting) else {
            unreachable!()
        };
        if let Some(at) = call.ring_at.take() {
            self.timers.remove(&(at, Timer::Ring(id)));
        }
        // Out of line until the caller re-links it: mark with a phase that is not in the sets.
        call.phase = Phase::Offered {
            to: OfferedTo::Many(Vec::new()),
            since: Time::ZERO,
        };
        for &a in to.as_slice() {
            self.events.push_back(AcdEvent::Withdraw {
                call: id,
                agent: AgentId(a),
                reason,
            });
        }
        to
    }

    /// Withdraws one agent's offer of a call; when no offer is left the call returns to its
    /// place in line. The agent's own state is left to the caller.
    fn drop_offer(&mut self, id: CallId, a: AgentIdx, reason: WithdrawReason, now: Time) {
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        let Phase::Offered { to, .. } = &mut call.phase else {
            return;
        };
        let left = match to {
            OfferedTo::One(x) => {
                if *x != a {
                    return;
                }
                0
            }
            OfferedTo::Many(v) => {
                v.retain(|&x| x != a);
                v.len()
            }
        };
        self.events.push_back(AcdEvent::Withdraw {
            call: id,
            agent: AgentId(a),
            reason,
        });
        if left == 0 {
            if let Some(at) = call.ring_at.take() {
                self.timers.remove(&(at, Timer::Ring(id)));
            }
            self.return_to_line(id, now);
        }
    }

    /// Puts a call that rang nobody back at its place in line and offers it again if it can.
    fn return_to_line(&mut self, id: CallId, now: Time) {
        let call = self.calls.get_mut(&id).expect("present");
        call.phase = Phase::Waiting;
        let key = call.key();
        self.classes[call.class as usize].waiting.insert(key, id);
        self.queues[call.queue as usize].waiting[call.priority as usize].insert(call.seq, id);
        self.try_assign_call(id, now);
    }

    /// Agents whose offer was withdrawn (not for a failure) become Ready again, keeping their
    /// idle time.
    fn release(&mut self, to: OfferedTo, now: Time) {
        for &a in to.as_slice() {
            self.make_ready(a, now, false);
        }
    }

    /// A ring-no-answer: auto-pause, rest, or Ready again.
    fn no_answer(&mut self, a: AgentIdx, q: QueueIdx, ring: Duration, now: Time) {
        self.log(None, Some(q), Some(a), QueueLogKind::RingNoAnswer { ring });
        let cfg = &self.queues[q as usize].cfg;
        let (limit, rest) = (cfg.auto_pause_after, cfg.no_answer_rest);
        let agent = &mut self.agents[a as usize];
        agent.consecutive_no_answer += 1;
        if limit > 0 && agent.consecutive_no_answer >= limit {
            agent.consecutive_no_answer = 0;
            self.pause(a, ReasonCode::new("no-answer"), now);
        } else if !rest.is_zero() {
            let until = now + rest;
            agent.wrap_timer = Some(until);
            self.timers.insert((until, Timer::WrapUpEnd(a)));
            self.set_state(a, AgentState::WrapUp { until }, now, false);
        } else {
            self.make_ready(a, now, false);
        }
    }

    /// Removes a call from the engine: out of line, timers cancelled.
    fn remove_call(&mut self, id: CallId) -> Call {
        let call = self.calls.remove(&id).expect("present");
        if matches!(call.phase, Phase::Waiting) {
            self.classes[call.class as usize]
                .waiting
                .remove(&call.key());
            self.queues[call.queue as usize].waiting[call.priority as usize].remove(&call.seq);
        }
        let timers = [
            call.ring_at.map(|t| (t, Timer::Ring(id))),
            call.escalate_at.map(|t| (t, Timer::Escalate(id))),
            call.max_wait_at.map(|t| (t, Timer::MaxWait(id))),
        ];
        for t in timers.into_iter().flatten() {
            self.timers.remove(&t);
        }
        call
    }

    /// A call just joined (or rejoined) its class: offer it to the best Ready agent(s) of the
    /// class, if any. One ordered-set lookup.
    fn try_assign_call(&mut self, id: CallId, now: Time) {
        let class = self.calls[&id].class;
        if self.classes[class as usize].ready.is_empty() {
            return;
        }
        let to = self.pick(class);
        self.offer(id, to, now);
    }

    /// The agent(s) a class's strategy offers its next call to; the class has a Ready agent.
    fn pick(&mut self, class: ClassIdx) -> OfferedTo {
        let c = &self.classes[class as usize];
        match c.strategy {
            Strategy::RingAll => OfferedTo::Many(c.ready.agents()),
            Strategy::RoundRobin => {
                let from = u64::from(self.queues[c.queue as usize].rr_cursor);
                OfferedTo::One(c.ready.first_from((from, 0, 0)).expect("non-empty"))
            }
            Strategy::Random => {
                let n = c.ready.len();
                let i = self.rng.random_range(0..n);
                OfferedTo::One(c.ready.nth_indexed(i).expect("in range"))
            }
            _ => OfferedTo::One(c.ready.first().expect("non-empty")),
        }
    }

    /// An agent just became Ready: offer it the best waiting call among its classes, by its
    /// queue priority, then call priority, then longest wait. One first-key lookup per class.
    fn try_assign_agent(&mut self, a: AgentIdx, now: Time) {
        if self.agents[a as usize].state != AgentState::Ready {
            return;
        }
        if let Some(call) = self.best_call_for(a) {
            self.offer(call, OfferedTo::One(a), now);
        }
    }

    /// The agent becomes Ready and takes its best waiting call at once if there is one; only
    /// if there is none does it enter the Ready sets of its classes (saving the insert and
    /// remove when work is waiting).
    fn make_ready(&mut self, a: AgentIdx, now: Time, reset_idle: bool) {
        self.set_state(a, AgentState::Ready, now, reset_idle);
        match self.best_call_for(a) {
            Some(call) => self.offer(call, OfferedTo::One(a), now),
            None => {
                let Acd {
                    agents, classes, ..
                } = self;
                let agent = &mut agents[a as usize];
                agent.indexed = true;
                for ac in &agent.classes {
                    let class = &mut classes[ac.class as usize];
                    class.ready.insert(rank(class.strategy, agent, a, ac));
                }
            }
        }
    }

    /// The best waiting call among the agent's classes, by (its queue priority, call priority,
    /// enqueue sequence).
    fn best_call_for(&self, a: AgentIdx) -> Option<CallId> {
        let agent = &self.agents[a as usize];
        let mut best: Option<((u8, u8, u64), CallId)> = None;
        for ac in &agent.classes {
            if let Some((&(p, seq), &call)) =
                self.classes[ac.class as usize].waiting.first_key_value()
            {
                let key = (9 - ac.queue_priority, p, seq);
                if best.is_none_or(|(b, _)| key < b) {
                    best = Some((key, call));
                }
            }
        }
        best.map(|(_, call)| call)
    }

    fn offer(&mut self, id: CallId, to: OfferedTo, now: Time) {
        let call = self.calls.get_mut(&id).expect("present");
        let key = call.key();
        self.classes[call.class as usize].waiting.remove(&key);
        let q = call.queue;
        let queue = &mut self.queues[q as usize];
        queue.waiting[call.priority as usize].remove(&call.seq);
        if queue.cfg.strategy == Strategy::RoundRobin {
            if let OfferedTo::One(a) = to {
                queue.rr_cursor = a + 1;
            }
        }
        if let Some(rt) = queue.cfg.ring_timeout {
            let at = now + rt;
            call.ring_at = Some(at);
            self.timers.insert((at, Timer::Ring(id)));
        }
        call.phase = Phase::Offered {
            to: to.clone(),
            since: now,
        };
        for &a in to.as_slice() {
            self.events.push_back(AcdEvent::Offer {
                call: id,
                agent: AgentId(a),
                queue: QueueId(q),
            });
            self.set_state(a, AgentState::Offered(id), now, false);
        }
    }

    // ---- state and index upkeep ------------------------------------------------------------

    /// Changes an agent's state and keeps every index in step: the ready sets of its classes,
    /// the logged-in/available counters, time accounting, and the state event.
    fn set_state(&mut self, a: AgentIdx, new: AgentState, now: Time, reset_idle: bool) {
        let Acd {
            agents,
            classes,
            queues,
            events,
            emptied,
            ..
        } = self;
        let agent = &mut agents[a as usize];
        let spent = now - agent.state_since;
        agent.state_since = now;
        match &agent.state {
            AgentState::LoggedOut => {}
            AgentState::Ready => agent.counters.ready += spent,
            AgentState::NotReady(_) => agent.counters.not_ready += spent,
            AgentState::Offered(_) => agent.counters.offered += spent,
            AgentState::OnCall(_) => agent.counters.on_call += spent,
            AgentState::WrapUp { .. } => {
                agent.counters.wrap_up += spent;
                if let Some(q) = agent.wrap_queue.take() {
                    queues[q as usize].counters.total_wrap += spent;
                }
            }
        }
        let was_ready = agent.state == AgentState::Ready;
        let is_ready = new == AgentState::Ready;
        if was_ready && !is_ready && agent.indexed {
            agent.indexed = false;
            for ac in &agent.classes {
                let class = &mut classes[ac.class as usize];
                class.ready.remove(rank(class.strategy, agent, a, ac));
            }
        }
        let dl = i32::from(is_logged_in(&new)) - i32::from(is_logged_in(&agent.state));
        let da = i32::from(is_available(&new)) - i32::from(is_available(&agent.state));
        agent.state = new.clone();
        if is_ready && !was_ready && reset_idle {
            // entering the Ready sets is left to `make_ready`
            agent.idle_since = now;
        }
        if dl != 0 || da != 0 {
            for ac in &agent.classes {
                let class = &mut classes[ac.class as usize];
                class.logged_in = class.logged_in.wrapping_add_signed(dl);
                class.available = class.available.wrapping_add_signed(da);
                let policy = queues[class.queue as usize].cfg.leave_when_empty;
                let now_empty = match policy {
                    EmptyPolicy::Never => false,
                    EmptyPolicy::NoAgentsLoggedIn => dl < 0 && class.logged_in == 0,
                    EmptyPolicy::NoAgentsAvailable => da < 0 && class.available == 0,
                };
                if now_empty && !class.waiting.is_empty() {
                    emptied.push(ac.class);
                }
            }
            for &(q, _) in &agent.queues {
                let queue = &mut queues[q as usize];
                queue.logged_in = queue.logged_in.wrapping_add_signed(dl);
                queue.available = queue.available.wrapping_add_signed(da);
            }
        }
        events.push_back(AcdEvent::AgentState {
            agent: AgentId(a),
            state: new,
        });
    }

    /// The class of a call of queue `q` with these extra skills at escalation step `step`,
    /// created on first use.
    fn class_for(&mut self, q: QueueIdx, extra: &[(Skill, u8, bool)], step: usize) -> ClassIdx {
        let queue = &self.queues[q as usize];
        if extra.is_empty() {
            if let Some(c) = queue.step_classes[step] {
                return c;
            }
        }
        let (lower_by, drop_optional) = match step {
            0 => (0, false),
            s => {
                let e = &queue.cfg.escalation[s - 1];
                (e.lower_by, e.drop_optional)
            }
        };
        let mut reqs: Vec<(Skill, u8)> = queue
            .reqs
            .iter()
            .chain(extra.iter())
            .filter(|r| !(drop_optional && r.2))
            .map(|&(s, min, _)| (s, min.saturating_sub(lower_by).max(1)))
            .collect();
        reqs.sort_unstable();
        // same skill twice: the higher minimum (last after sorting) wins
        reqs.reverse();
        reqs.dedup_by_key(|r| r.0);
        reqs.reverse();
        let key = (q, reqs.into_boxed_slice());
        let c = match self.class_index.get(&key) {
            Some(&c) => c,
            None => {
                let c = self.create_class(q, key.1.clone());
                self.class_index.insert(key, c);
                c
            }
        };
        if extra.is_empty() {
            self.queues[q as usize].step_classes[step] = Some(c);
        }
        c
    }

    /// Builds a class: its members are found from the per-skill, per-level agent lists of its
    /// most selective requirement (or the queue's members if it requires nothing). This runs
    /// once per distinct requirement set, not per decision.
    fn create_class(&mut self, q: QueueIdx, reqs: Box<[(Skill, u8)]>) -> ClassIdx {
        let c = self.classes.len() as ClassIdx;
        let strategy = self.queues[q as usize].cfg.strategy;
        let mut class = Class {
            queue: q,
            strategy,
            reqs,
            members: Bitset::default(),
            ready: ReadySet::new(strategy == Strategy::Random),
            waiting: BTreeMap::new(),
            logged_in: 0,
            available: 0,
        };
        let most_selective = class
            .reqs
            .iter()
            .map(|&(s, min)| {
                let lists = &self.skill_agents[s.0 as usize][min as usize - 1..];
                (lists.iter().map(Vec::len).sum::<usize>(), s, min)
            })
            .min();
        let candidates: Vec<AgentIdx> = match most_selective {
            Some((_, s, min)) => self.skill_agents[s.0 as usize][min as usize - 1..].concat(),
            None => self.queues[q as usize].members.clone(),
        };
        for a in candidates {
            let agent = &mut self.agents[a as usize];
            let Some(&(_, queue_priority)) = agent.queues.iter().find(|m| m.0 == q) else {
                continue;
            };
            if !agent.satisfies(&class.reqs) {
                continue;
            }
            let skill_sum = class
                .reqs
                .iter()
                .map(|&(s, _)| u16::from(agent.proficiency(s)))
                .sum();
            let ac = AgentClass {
                class: c,
                queue_priority,
                skill_sum,
            };
            agent.classes.push(ac);
            class.members.insert(a);
            class.logged_in += u32::from(is_logged_in(&agent.state));
            class.available += u32::from(is_available(&agent.state));
            if agent.indexed {
                class.ready.insert(rank(strategy, agent, a, &ac));
            }
        }
        self.queues[q as usize].classes.push(c);
        self.classes.push(class);
        c
    }

    /// Whether the engine considers the agent eligible for the call at its current escalation
    /// step (membership of the call's class).
    pub fn is_eligible(&self, agent: AgentId, call: CallId) -> bool {
        self.calls
            .get(&call)
            .is_some_and(|c| self.classes[c.class as usize].members.contains(agent.0))
    }

    /// Number of eligibility classes built so far (a measure of the index size).
    pub fn class_count(&self) -> usize {
        self.classes.len()
    }

    fn log(
        &mut self,
        call: Option<CallId>,
        q: Option<QueueIdx>,
        a: Option<AgentIdx>,
        kind: QueueLogKind,
    ) {
        self.events.push_back(AcdEvent::QueueLog(QueueLogEvent {
            call,
            queue: q.map(|q| self.queues[q as usize].name.clone()),
            agent: a.map(|a| self.agents[a as usize].name.clone()),
            kind,
        }));
    }

    // ---- statistics -------------------------------------------------------------------------

    /// Live statistics of a queue at `now`.
    pub fn queue_stats(&self, queue: QueueId, now: Time) -> Option<QueueStats> {
        let q = self.queues.get(queue.0 as usize)?;
        let waiting = q.waiting.iter().map(BTreeMap::len).sum::<usize>() as u32;
        let oldest = q
            .waiting
            .iter()
            .filter_map(|m| m.first_key_value())
            .min_by_key(|(seq, _)| **seq)
            .and_then(|(_, id)| self.calls.get(id));
        let longest_wait = oldest.map_or(Duration::ZERO, |c| now - c.enqueued_at);
        let mut occ = AgentCounters::default();
        for &a in &q.members {
            occ.add(&self.agent_counters_at(a, now));
        }
        Some(QueueStats::new(
            q.counters.clone(),
            waiting,
            longest_wait,
            q.logged_in,
            q.available,
            occ.occupancy(),
        ))
    }

    /// Live statistics of an agent at `now`.
    pub fn agent_stats(&self, agent: AgentId, now: Time) -> Option<AgentStats> {
        let a = self.agents.get(agent.0 as usize)?;
        Some(AgentStats::new(
            self.agent_counters_at(agent.0, now),
            a.state.clone(),
        ))
    }

    fn agent_counters_at(&self, a: AgentIdx, now: Time) -> AgentCounters {
        let agent = &self.agents[a as usize];
        let mut c = agent.counters.clone();
        let spent = now - agent.state_since;
        match agent.state {
            AgentState::LoggedOut => {}
            AgentState::Ready => c.ready += spent,
            AgentState::NotReady(_) => c.not_ready += spent,
            AgentState::Offered(_) => c.offered += spent,
            AgentState::OnCall(_) => c.on_call += spent,
            AgentState::WrapUp { .. } => c.wrap_up += spent,
        }
        c
    }

    /// Estimated wait for a call arriving now at this priority, for announcements:
    /// (calls ahead + 1) × average handle time ÷ available agents. `None` when no agent of the
    /// queue is available.
    pub fn estimated_wait(&self, queue: QueueId, priority: u8) -> Option<Duration> {
        let q = self.queues.get(queue.0 as usize)?;
        if q.available == 0 {
            return None;
        }
        let ahead: usize = q.waiting[(priority.min(9) as usize)..]
            .iter()
            .map(BTreeMap::len)
            .sum();
        let aht = q.counters.aht().unwrap_or(q.cfg.expected_handle_time);
        Some(aht.mul_f64((ahead + 1) as f64 / f64::from(q.available)))
    }
}

/// 1-based position of a call (priority, sequence) in its queue's line.
fn position(q: &Queue, priority: u8, seq: u64) -> u32 {
    let higher: usize = q.waiting[priority as usize + 1..]
        .iter()
        .map(BTreeMap::len)
        .sum();
    let same = q.waiting[priority as usize].range(..seq).count();
    (higher + same + 1) as u32
}
