//! The naive baseline: an engine that decides by scanning, the way Asterisk app_queue and
//! FreeSWITCH mod_callcenter do. **For the benchmark and cross-checks only**; route real calls
//! with [`crate::Acd`].
//!
//! On a call it scans every agent for a Ready one that serves the queue and has the skills;
//! on a Ready agent it scans every call in the system for one it can take. Calls sit in one
//! list (order kept by an arrival sequence number). It implements the longest-idle strategy with the same tie-breaks as
//! the real engine (agent: `(idle-since, agent id)`; call: agent's queue priority, then call
//! priority, then arrival), skills with minimum proficiency (queue skills plus a call's extra
//! skills), and wrap-up. It has no escalation, ring timeout, maximum wait, empty policies,
//! auto-pause or rest after a no-answer (a failed offer returns the agent to Ready at once);
//! it emits only [`AcdEvent::Offer`] events.

use std::collections::{HashMap, VecDeque};

use crate::config::{AgentConfig, QueueConfig};
use crate::types::{
    AcdCommand, AcdError, AcdEvent, AgentId, CallArrival, CallId, QueueId, Skill, Time,
};

#[derive(Clone, Copy, PartialEq, Eq)]
enum NaiveAgentState {
    LoggedOut,
    Ready,
    NotReady,
    Offered,
    OnCall,
    WrapUp(Time),
}

struct NaiveAgent {
    skills: Vec<(Skill, u8)>,
    queues: Vec<(u32, u8)>,
    state: NaiveAgentState,
    idle_since: Time,
    pending_not_ready: bool,
}

impl NaiveAgent {
    fn level(&self, s: Skill) -> u8 {
        self.skills.iter().find(|x| x.0 == s).map_or(0, |x| x.1)
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum NaiveCallState {
    Waiting,
    Offered(u32),
    Connected(u32),
}

struct NaiveCall {
    id: CallId,
    queue: u32,
    priority: u8,
    reqs: Vec<(Skill, u8)>,
    seq: u64,
    state: NaiveCallState,
}

struct NaiveQueue {
    reqs: Vec<(Skill, u8)>,
    wrap_up: std::time::Duration,
}

/// The scanning engine (see the module docs). Same command type and id numbering as
/// [`crate::Acd`], so one workload drives both.
#[derive(Default)]
pub struct NaiveAcd {
    queues: Vec<NaiveQueue>,
    queue_names: HashMap<String, u32>,
    skills: HashMap<String, Skill>,
    agents: Vec<NaiveAgent>,
    calls: Vec<NaiveCall>,
    next_seq: u64,
    events: VecDeque<AcdEvent>,
}

impl NaiveAcd {
    /// An empty engine.
    pub fn new() -> Self {
        Self::default()
    }

    /// The skill with this name, interned on first use (same numbering as [`crate::Acd::skill`]
    /// when queues and agents are added in the same order).
    pub fn skill(&mut self, name: &str) -> Skill {
        let n = self.skills.len() as u16;
        *self.skills.entry(name.to_owned()).or_insert(Skill(n))
    }

    /// Adds a queue (only its skills and wrap-up are used).
    pub fn add_queue(&mut self, cfg: QueueConfig) -> QueueId {
        let reqs = cfg
            .skills
            .iter()
            .map(|r| (self.skill(&r.skill), r.min))
            .collect();
        let q = self.queues.len() as u32;
        self.queue_names.insert(cfg.name.clone(), q);
        self.queues.push(NaiveQueue {
            reqs,
            wrap_up: cfg.wrap_up,
        });
        QueueId(q)
    }

    /// Adds an agent (logged out).
    pub fn add_agent(&mut self, cfg: AgentConfig) -> Result<AgentId, AcdError> {
        let skills = cfg
            .skills
            .iter()
            .map(|s| (self.skill(&s.skill), s.proficiency))
            .collect();
        let mut queues = Vec::new();
        for m in &cfg.queues {
            let q = *self
                .queue_names
                .get(&m.queue)
                .ok_or(AcdError::UnknownQueue)?;
            queues.push((q, m.priority));
        }
        self.agents.push(NaiveAgent {
            skills,
            queues,
            state: NaiveAgentState::LoggedOut,
            idle_since: Time::ZERO,
            pending_not_ready: false,
        });
        Ok(AgentId(self.agents.len() as u32 - 1))
    }

    /// Next output (offers only).
    pub fn poll_event(&mut self) -> Option<AcdEvent> {
        self.events.pop_front()
    }

    /// The earliest wrap-up end (a scan of all agents).
    pub fn poll_timeout(&self) -> Option<Time> {
        self.agents
            .iter()
            .filter_map(|a| match a.state {
                NaiveAgentState::WrapUp(t) => Some(t),
                _ => None,
            })
            .min()
    }

    /// Ends due wrap-ups (a scan of all agents).
    pub fn handle_timeout(&mut self, now: Time) {
        for i in 0..self.agents.len() {
            if matches!(self.agents[i].state, NaiveAgentState::WrapUp(t) if t <= now) {
                self.finish_work(i as u32, now);
            }
        }
    }

    fn finish_work(&mut self, a: u32, now: Time) {
        let agent = &mut self.agents[a as usize];
        if agent.pending_not_ready {
            agent.pending_not_ready = false;
            agent.state = NaiveAgentState::NotReady;
        } else {
            self.become_ready(a, now, true);
        }
    }

    /// Applies one input.
    pub fn handle_command(&mut self, now: Time, cmd: AcdCommand) -> Result<(), AcdError> {
        match cmd {
            AcdCommand::Login(a) => {
                let i = self.agent(a)?;
                if self.agents[i as usize].state == NaiveAgentState::LoggedOut {
                    self.become_ready(i, now, true);
                }
            }
            AcdCommand::Logout(a) => {
                let i = self.agent(a)?;
                match self.agents[i as usize].state {
                    NaiveAgentState::OnCall => return Err(AcdError::AgentState(a)),
                    NaiveAgentState::Offered => self.fail_offer_of(i, now),
                    _ => {}
                }
                self.agents[i as usize].state = NaiveAgentState::LoggedOut;
                self.agents[i as usize].pending_not_ready = false;
            }
            AcdCommand::Ready(a) => {
                let i = self.agent(a)?;
                match self.agents[i as usize].state {
                    NaiveAgentState::NotReady | NaiveAgentState::WrapUp(_) => {
                        self.become_ready(i, now, true)
                    }
                    NaiveAgentState::Ready => {}
                    NaiveAgentState::OnCall => self.agents[i as usize].pending_not_ready = false,
                    _ => return Err(AcdError::AgentState(a)),
                }
            }
            AcdCommand::NotReady(a, _) => {
                let i = self.agent(a)?;
                match self.agents[i as usize].state {
                    NaiveAgentState::LoggedOut => return Err(AcdError::AgentState(a)),
                    NaiveAgentState::OnCall => {
                        self.agents[i as usize].pending_not_ready = true;
                        return Ok(());
                    }
                    NaiveAgentState::Offered => self.fail_offer_of(i, now),
                    _ => {}
                }
                self.agents[i as usize].state = NaiveAgentState::NotReady;
            }
            AcdCommand::Arrive(CallArrival {
                call,
                queue,
                priority,
                extra_skills,
            }) => {
                let q = self
                    .queues
                    .get(queue.0 as usize)
                    .ok_or(AcdError::UnknownQueue)?;
                let mut reqs = q.reqs.clone();
                reqs.extend(extra_skills.iter().map(|&(s, p, _)| (s, p.get())));
                let seq = self.next_seq;
                self.next_seq += 1;
                self.calls.push(NaiveCall {
                    id: call,
                    queue: queue.0,
                    priority,
                    reqs,
                    seq,
                    state: NaiveCallState::Waiting,
                });
                self.assign_call(self.calls.len() - 1, now);
            }
            AcdCommand::Answer { call, agent } => {
                let c = self.call(call)?;
                if self.calls[c].state != NaiveCallState::Offered(agent.0) {
                    return Err(AcdError::CallState(call));
                }
                self.calls[c].state = NaiveCallState::Connected(agent.0);
                self.agents[agent.0 as usize].state = NaiveAgentState::OnCall;
            }
            AcdCommand::OfferFailed { call, agent } => {
                let c = self.call(call)?;
                if self.calls[c].state != NaiveCallState::Offered(agent.0) {
                    return Err(AcdError::CallState(call));
                }
                self.fail_offer_of(agent.0, now);
                self.become_ready(agent.0, now, false);
            }
            AcdCommand::Abandon(call) => {
                let c = self.call(call)?;
                let removed = self.calls.swap_remove(c);
                if let NaiveCallState::Offered(a) = removed.state {
                    self.become_ready(a, now, false);
                }
            }
            AcdCommand::Hangup { call, .. } => {
                let c = self.call(call)?;
                let NaiveCallState::Connected(a) = self.calls[c].state else {
                    return Err(AcdError::CallState(call));
                };
                let removed = self.calls.swap_remove(c);
                let wrap = self.queues[removed.queue as usize].wrap_up;
                if wrap.is_zero() {
                    self.finish_work(a, now);
                } else {
                    self.agents[a as usize].state = NaiveAgentState::WrapUp(now + wrap);
                }
            }
        }
        Ok(())
    }

    fn agent(&self, a: AgentId) -> Result<u32, AcdError> {
        if (a.0 as usize) < self.agents.len() {
            Ok(a.0)
        } else {
            Err(AcdError::UnknownAgent(a))
        }
    }

    fn call(&self, id: CallId) -> Result<usize, AcdError> {
        self.calls
            .iter()
            .rposition(|c| c.id == id)
            .ok_or(AcdError::UnknownCall(id))
    }

    /// The call offered to agent `a` goes back in line and is offered again if it can be.
    fn fail_offer_of(&mut self, a: u32, now: Time) {
        if let Some(c) = self
            .calls
            .iter()
            .position(|c| c.state == NaiveCallState::Offered(a))
        {
            self.calls[c].state = NaiveCallState::Waiting;
            // the agent is still marked Offered, so the scan skips it
            self.assign_call(c, now);
        }
    }

    fn eligible(&self, a: &NaiveAgent, c: &NaiveCall) -> Option<u8> {
        let prio = a.queues.iter().find(|q| q.0 == c.queue)?.1;
        c.reqs
            .iter()
            .all(|&(s, min)| a.level(s) >= min)
            .then_some(prio)
    }

    /// Scans every agent for the longest-idle eligible Ready one.
    fn assign_call(&mut self, c: usize, now: Time) {
        let call = &self.calls[c];
        let mut best: Option<(Time, u32)> = None;
        for (i, a) in self.agents.iter().enumerate() {
            if a.state == NaiveAgentState::Ready && self.eligible(a, call).is_some() {
                let key = (a.idle_since, i as u32);
                if best.is_none_or(|b| key < b) {
                    best = Some(key);
                }
            }
        }
        if let Some((_, a)) = best {
            self.offer(c, a, now);
        }
    }

    fn become_ready(&mut self, a: u32, now: Time, reset_idle: bool) {
        let agent = &mut self.agents[a as usize];
        agent.state = NaiveAgentState::Ready;
        if reset_idle {
            agent.idle_since = now;
        }
        // Scan every call for the best one this agent can take.
        let agent = &self.agents[a as usize];
        let mut best: Option<((u8, u8, u64), usize)> = None;
        for (i, c) in self.calls.iter().enumerate() {
            if c.state != NaiveCallState::Waiting {
                continue;
            }
            if let Some(qprio) = self.eligible(agent, c) {
                let key = (9 - qprio, 9 - c.priority, c.seq);
                if best.is_none_or(|(b, _)| key < b) {
                    best = Some((key, i));
                }
            }
        }
        if let Some((_, c)) = best {
            self.offer(c, a, now);
        }
    }

    fn offer(&mut self, c: usize, a: u32, _now: Time) {
        let call = &mut self.calls[c];
        call.state = NaiveCallState::Offered(a);
        self.agents[a as usize].state = NaiveAgentState::Offered;
        self.events.push_back(AcdEvent::Offer {
            call: call.id,
            agent: AgentId(a),
            queue: QueueId(call.queue),
        });
    }
}
