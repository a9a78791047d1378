//! Invariants of the ACD engine over random configurations and random event sequences.
//!
//! The test keeps its own model of every agent and call, rebuilt only from the engine's
//! events and the commands it sent, and checks after every event:
//! - an offer goes to a Ready agent that serves the queue and has every required skill at the
//!   call's current escalation step (computed here from the config and the wait);
//! - never two outstanding offers to one agent (ring-all included);
//! - FIFO: the offered call is the best waiting call the agent is eligible for, by (its queue
//!   priority, call priority, arrival order);
//! - work-conserving: after every step no Ready agent is eligible for a waiting call;
//! - every call ends exactly once; the model matches the engine's own view.

use std::collections::HashMap;
use std::time::Duration;

use acd::{
    Acd, AcdCommand, AcdEvent, AgentConfig, AgentId, AgentSkill, AgentState, CallArrival, CallId,
    CallState, EmptyPolicy, EscalationStep, Overflow, OverflowTarget, Party, Proficiency,
    QueueConfig, QueueId, QueueMembership, ReasonCode, SkillRequirement, Strategy as Routing, Time,
};
use proptest::prelude::*;

const SKILLS: [&str; 3] = ["billing", "spanish", "tech"];
const N_QUEUES: usize = 2;

#[derive(Debug, Clone)]
enum Op {
    Advance(u64),
    Login(usize),
    Logout(usize),
    Ready(usize),
    NotReady(usize),
    Arrive {
        queue: usize,
        priority: u8,
        extra: Option<(usize, u8)>,
    },
    Answer(usize),
    Fail(usize),
    Abandon(usize),
    Hangup(usize, bool),
    /// A config reload gives an agent new skill levels (0 = none) and queues (bit mask).
    Reskill {
        agent: usize,
        levels: [u8; 3],
        queues: u8,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (1u64..40).prop_map(Op::Advance),
        2 => (0usize..8).prop_map(Op::Login),
        1 => (0usize..8).prop_map(Op::Logout),
        2 => (0usize..8).prop_map(Op::Ready),
        1 => (0usize..8).prop_map(Op::NotReady),
        4 => (0..N_QUEUES, 0u8..10, proptest::option::of((0..SKILLS.len(), 1u8..=10)))
            .prop_map(|(queue, priority, extra)| Op::Arrive { queue, priority, extra }),
        4 => any::<usize>().prop_map(Op::Answer),
        1 => any::<usize>().prop_map(Op::Fail),
        1 => any::<usize>().prop_map(Op::Abandon),
        3 => (any::<usize>(), any::<bool>()).prop_map(|(i, b)| Op::Hangup(i, b)),
        1 => (0usize..8, proptest::array::uniform3(0u8..=10), 0u8..4)
            .prop_map(|(agent, levels, queues)| Op::Reskill { agent, levels, queues }),
    ]
}

fn strategy() -> impl Strategy<Value = Routing> {
    prop_oneof![
        Just(Routing::LongestIdle),
        Just(Routing::FewestCalls),
        Just(Routing::LeastTalkTime),
        Just(Routing::RoundRobin),
        Just(Routing::Linear),
        Just(Routing::Random),
        Just(Routing::RingAll),
        Just(Routing::BestSkill),
    ]
}

fn empty_policy() -> impl Strategy<Value = EmptyPolicy> {
    prop_oneof![
        4 => Just(EmptyPolicy::Never),
        1 => Just(EmptyPolicy::NoAgentsLoggedIn),
        1 => Just(EmptyPolicy::NoAgentsAvailable),
    ]
}

fn queue(index: usize) -> impl Strategy<Value = QueueConfig> {
    (
        strategy(),
        proptest::collection::vec((0..SKILLS.len(), 1u8..=10, any::<bool>()), 0..3),
        proptest::collection::vec((1u64..60, 0u8..4, any::<bool>()), 0..3),
        proptest::option::of(5u64..30),
        (
            0u32..4,
            prop_oneof![Just(0u64), Just(3)],
            prop_oneof![Just(0u64), Just(7)],
        ),
        proptest::option::of((30u64..200, 0u8..3)),
        (empty_policy(), empty_policy()),
    )
        .prop_map(
            move |(strategy, skills, steps, ring, (pause, rest, wrap), max_wait, (join, leave))| {
                let mut after = 0;
                let mut lower = 0;
                let mut drop = false;
                let escalation = steps
                    .into_iter()
                    .map(|(dt, dl, d)| {
                        after += dt;
                        lower += dl;
                        drop |= d;
                        EscalationStep {
                            after: Duration::from_secs(after),
                            lower_by: lower,
                            drop_optional: drop,
                        }
                    })
                    .collect();
                QueueConfig {
                    name: format!("q{index}"),
                    skills: skills
                        .into_iter()
                        .map(|(s, min, optional)| SkillRequirement {
                            skill: SKILLS[s].into(),
                            min,
                            optional,
                        })
                        .collect(),
                    strategy,
                    escalation,
                    ring_timeout: ring.map(Duration::from_secs),
                    auto_pause_after: pause,
                    no_answer_rest: Duration::from_secs(rest),
                    wrap_up: Duration::from_secs(wrap),
                    max_wait: max_wait.map(|(s, _)| Duration::from_secs(s)),
                    overflow: max_wait.and_then(|(_, t)| match t {
                        0 => None,
                        1 => Some(OverflowTarget::Queue(format!(
                            "q{}",
                            (index + 1) % N_QUEUES
                        ))),
                        _ => Some(OverflowTarget::External("+15550100".into())),
                    }),
                    join_empty: join,
                    leave_when_empty: leave,
                    ..QueueConfig::default()
                }
            },
        )
}

fn agent(index: usize) -> impl Strategy<Value = AgentConfig> {
    (
        proptest::collection::vec(proptest::option::of(1u8..=10), SKILLS.len()),
        proptest::collection::vec(proptest::option::of(0u8..10), N_QUEUES),
    )
        .prop_map(move |(levels, prios)| AgentConfig {
            name: format!("Agent/{index}"),
            skills: levels
                .iter()
                .enumerate()
                .filter_map(|(s, l)| l.map(|l| AgentSkill::new(SKILLS[s], l)))
                .collect(),
            queues: prios
                .iter()
                .enumerate()
                .filter_map(|(q, p)| {
                    p.map(|priority| QueueMembership {
                        queue: format!("q{q}"),
                        priority,
                    })
                })
                .collect(),
        })
}

fn scenario() -> impl Strategy<Value = (Vec<QueueConfig>, Vec<AgentConfig>, Vec<Op>)> {
    let queues = (queue(0), queue(1)).prop_map(|(a, b)| vec![a, b]);
    let agents = (2usize..8).prop_flat_map(|n| (0..n).map(agent).collect::<Vec<_>>());
    (queues, agents, proptest::collection::vec(op(), 1..120))
}

#[derive(Debug, Clone, PartialEq)]
enum Status {
    Waiting,
    Offered(Vec<AgentId>),
    Connected(AgentId),
    Ended,
}

#[derive(Debug, Clone)]
struct ModelCall {
    queue: usize,
    priority: u8,
    extra: Option<(usize, u8)>,
    enqueued: Time,
    order: u64,
    status: Status,
    ended: u32,
}

struct Model {
    queues: Vec<QueueConfig>,
    agents: Vec<AgentConfig>,
    agent_state: Vec<AgentState>,
    offer_of: Vec<Option<CallId>>,
    calls: HashMap<CallId, ModelCall>,
    order: u64,
    now: Time,
}

impl Model {
    fn level(&self, a: usize, skill: &str) -> u8 {
        self.agents[a]
            .skills
            .iter()
            .find(|s| s.skill == skill)
            .map_or(0, |s| s.proficiency)
    }

    /// The agent's queue priority if it is eligible for the call at the call's escalation step now.
    fn eligible(&self, a: usize, c: &ModelCall) -> Option<u8> {
        let q = &self.queues[c.queue];
        let prio = self.agents[a]
            .queues
            .iter()
            .find(|m| m.queue == q.name)?
            .priority;
        let waited = self.now - c.enqueued;
        let step = q
            .escalation
            .iter()
            .take_while(|s| s.after <= waited)
            .count();
        let (lower, drop) = match step {
            0 => (0, false),
            s => (
                q.escalation[s - 1].lower_by,
                q.escalation[s - 1].drop_optional,
            ),
        };
        let extra = c.extra.map(|(s, l)| SkillRequirement::new(SKILLS[s], l));
        for r in q.skills.iter().chain(extra.iter()) {
            if drop && r.optional {
                continue;
            }
            if self.level(a, &r.skill) < r.min.saturating_sub(lower).max(1) {
                return None;
            }
        }
        Some(prio)
    }

    fn key(prio: u8, c: &ModelCall) -> (u8, u8, u64) {
        (9 - prio, 9 - c.priority, c.order)
    }

    fn apply(&mut self, ev: &AcdEvent) -> Result<(), TestCaseError> {
        match ev {
            AcdEvent::Offer { call, agent, queue } => {
                let a = agent.0 as usize;
                prop_assert_eq!(
                    &self.agent_state[a],
                    &AgentState::Ready,
                    "offer to a non-Ready agent"
                );
                prop_assert!(self.offer_of[a].is_none(), "two offers to agent {}", a);
                let c = self
                    .calls
                    .get(call)
                    .cloned()
                    .expect("offer of an unknown call");
                prop_assert_eq!(c.queue, queue.0 as usize);
                let Some(prio) = self.eligible(a, &c) else {
                    return Err(TestCaseError::fail(format!(
                        "offer of {call:?} to ineligible agent {a}"
                    )));
                };
                let mine = Self::key(prio, &c);
                for (id, other) in &self.calls {
                    if other.status == Status::Waiting && id != call {
                        if let Some(p) = self.eligible(a, other) {
                            prop_assert!(
                                mine < Self::key(p, other),
                                "agent {} offered {:?} {:?} while {:?} {:?} waits ahead of it",
                                a,
                                call,
                                mine,
                                id,
                                Self::key(p, other)
                            );
                        }
                    }
                }
                self.offer_of[a] = Some(*call);
                let mc = self.calls.get_mut(call).unwrap();
                match &mut mc.status {
                    Status::Waiting => mc.status = Status::Offered(vec![*agent]),
                    Status::Offered(v) => v.push(*agent),
                    s => {
                        return Err(TestCaseError::fail(format!(
                            "offer of a call in state {s:?}"
                        )))
                    }
                }
            }
            AcdEvent::Withdraw { call, agent, .. } => {
                let a = agent.0 as usize;
                prop_assert_eq!(
                    self.offer_of[a],
                    Some(*call),
                    "withdrawal of an offer not outstanding"
                );
                self.offer_of[a] = None;
                let mc = self.calls.get_mut(call).expect("known call");
                if let Status::Offered(v) = &mut mc.status {
                    v.retain(|x| x != agent);
                    if v.is_empty() {
                        mc.status = Status::Waiting;
                    }
                }
            }
            AcdEvent::CallEnded { call, .. } => {
                let mc = self.calls.get_mut(call).expect("end of an unknown call");
                prop_assert!(
                    matches!(mc.status, Status::Waiting | Status::Connected(_)),
                    "call {:?} ended in state {:?}",
                    call,
                    mc.status
                );
                mc.ended += 1;
                mc.status = Status::Ended;
            }
            AcdEvent::Overflow { call, to, .. } => {
                let mc = self.calls.get_mut(call).expect("known call");
                prop_assert_eq!(&mc.status, &Status::Waiting);
                if let Overflow::Queue(q) = to {
                    mc.queue = q.0 as usize;
                    mc.enqueued = self.now;
                    mc.order = self.order;
                    self.order += 1;
                }
            }
            AcdEvent::AgentState { agent, state } => {
                let a = agent.0 as usize;
                if !matches!(state, AgentState::Offered(_)) {
                    prop_assert!(
                        self.offer_of[a].is_none(),
                        "agent {} left Offered without answer/withdrawal",
                        a
                    );
                }
                self.agent_state[a] = state.clone();
            }
            AcdEvent::Timeout { .. } | AcdEvent::QueueLog(_) => {}
        }
        Ok(())
    }

    fn drain(&mut self, acd: &mut Acd) -> Result<(), TestCaseError> {
        while let Some(ev) = acd.poll_event() {
            if let AcdEvent::QueueLog(q) = &ev {
                // every record renders as an Asterisk line
                prop_assert!(q.to_queue_log_line(1).split('|').count() >= 5);
            }
            self.apply(&ev)?;
        }
        Ok(())
    }

    fn check(&self, acd: &Acd) -> Result<(), TestCaseError> {
        for (a, state) in self.agent_state.iter().enumerate() {
            prop_assert_eq!(
                Some(state),
                acd.agent_state(AgentId(a as u32)),
                "agent {} state",
                a
            );
        }
        for (id, c) in &self.calls {
            let engine = acd.call_state(*id);
            let ok = match (&c.status, engine) {
                (Status::Ended, None) => true,
                (Status::Waiting, Some(CallState::Waiting)) => true,
                (Status::Offered(v), Some(CallState::Offered)) => !v.is_empty(),
                (Status::Connected(a), Some(CallState::Connected(b))) => *a == b,
                _ => false,
            };
            prop_assert!(
                ok,
                "call {:?}: model {:?}, engine {:?}",
                id,
                c.status,
                engine
            );
            if c.status == Status::Waiting {
                prop_assert_eq!(acd.call_queue(*id), Some(QueueId(c.queue as u32)));
                for a in 0..self.agents.len() {
                    if self.agent_state[a] == AgentState::Ready {
                        prop_assert!(
                            self.eligible(a, c).is_none(),
                            "not work-conserving: agent {} Ready while eligible call {:?} waits",
                            a,
                            id
                        );
                    }
                }
            }
        }
        Ok(())
    }
}

fn pick<T: Clone>(items: &[T], i: usize) -> Option<T> {
    (!items.is_empty()).then(|| items[i % items.len()].clone())
}

fn run(
    queues: Vec<QueueConfig>,
    agents: Vec<AgentConfig>,
    ops: Vec<Op>,
) -> Result<(), TestCaseError> {
    let mut acd = Acd::new(42);
    for q in &queues {
        acd.add_queue(q.clone()).expect("valid queue");
    }
    for a in &agents {
        acd.add_agent(a.clone()).expect("valid agent");
    }
    let mut m = Model {
        agent_state: vec![AgentState::LoggedOut; agents.len()],
        offer_of: vec![None; agents.len()],
        queues,
        agents,
        calls: HashMap::new(),
        order: 0,
        now: Time::ZERO,
    };
    let mut next_call = 1u64;
    let n_agents = m.agents.len();
    let ops_len = ops.len();
    // After the random ops, end every call: abandon what waits or rings, hang up what talks.
    let closing = (0..200).map(|_| None);
    for op in ops.into_iter().map(Some).chain(closing) {
        let cmd = match op {
            Some(Op::Advance(s)) => {
                let target = m.now + Duration::from_secs(s);
                while let Some(t) = acd.poll_timeout().filter(|&t| t <= target) {
                    prop_assert!(t >= m.now, "timer in the past");
                    m.now = t;
                    acd.handle_timeout(t);
                    m.drain(&mut acd)?;
                    m.check(&acd)?;
                }
                m.now = target;
                continue;
            }
            Some(Op::Reskill {
                agent,
                levels,
                queues,
            }) => {
                let a = agent % n_agents;
                let cfg = AgentConfig {
                    name: m.agents[a].name.clone(),
                    skills: SKILLS
                        .iter()
                        .zip(levels)
                        .filter(|(_, l)| *l > 0)
                        .map(|(s, l)| AgentSkill::new(*s, l))
                        .collect(),
                    queues: (0..N_QUEUES)
                        .filter(|q| queues & (1 << q) != 0)
                        .map(|q| QueueMembership {
                            queue: format!("q{q}"),
                            priority: q as u8,
                        })
                        .collect(),
                };
                let r = acd.update_agent(AgentId(a as u32), cfg.clone(), m.now);
                prop_assert!(r.is_ok(), "reskill failed: {:?}", r);
                m.agents[a] = cfg;
                m.drain(&mut acd)?;
                m.check(&acd)?;
                continue;
            }
            Some(Op::Login(a)) => AcdCommand::Login(AgentId((a % n_agents) as u32)),
            Some(Op::Logout(a)) => AcdCommand::Logout(AgentId((a % n_agents) as u32)),
            Some(Op::Ready(a)) => AcdCommand::Ready(AgentId((a % n_agents) as u32)),
            Some(Op::NotReady(a)) => {
                AcdCommand::NotReady(AgentId((a % n_agents) as u32), ReasonCode::new("break"))
            }
            Some(Op::Arrive {
                queue,
                priority,
                extra,
            }) => {
                let id = CallId(next_call);
                next_call += 1;
                m.calls.insert(
                    id,
                    ModelCall {
                        queue,
                        priority,
                        extra,
                        enqueued: m.now,
                        order: m.order,
                        status: Status::Waiting,
                        ended: 0,
                    },
                );
                m.order += 1;
                let extra_skills = extra
                    .map(|(s, l)| {
                        (
                            acd.find_skill(SKILLS[s])
                                .unwrap_or_else(|| acd.skill(SKILLS[s]).unwrap()),
                            Proficiency::new(l).unwrap(),
                            false,
                        )
                    })
                    .into_iter()
                    .collect();
                AcdCommand::Arrive(CallArrival {
                    call: id,
                    queue: QueueId(queue as u32),
                    priority,
                    extra_skills,
                })
            }
            Some(Op::Answer(i)) | Some(Op::Fail(i)) if m.offer_of.iter().any(Option::is_some) => {
                let offers: Vec<(usize, CallId)> = m
                    .offer_of
                    .iter()
                    .enumerate()
                    .filter_map(|(a, c)| c.map(|c| (a, c)))
                    .collect();
                let (a, call) = pick(&offers, i).unwrap();
                let agent = AgentId(a as u32);
                if matches!(op, Some(Op::Answer(_))) {
                    acd.handle_command(m.now, AcdCommand::Answer { call, agent })
                        .expect("answer of an outstanding offer");
                    m.offer_of[a] = None;
                    m.calls.get_mut(&call).unwrap().status = Status::Connected(agent);
                    m.drain(&mut acd)?;
                    m.check(&acd)?;
                    continue;
                }
                AcdCommand::OfferFailed { call, agent }
            }
            Some(Op::Answer(_)) | Some(Op::Fail(_)) => continue,
            Some(Op::Abandon(i)) => {
                let mut live: Vec<CallId> = m
                    .calls
                    .iter()
                    .filter(|(_, c)| matches!(c.status, Status::Waiting | Status::Offered(_)))
                    .map(|(id, _)| *id)
                    .collect();
                live.sort();
                let Some(id) = pick(&live, i) else { continue };
                AcdCommand::Abandon(id)
            }
            Some(Op::Hangup(i, by_agent)) => {
                let mut talking: Vec<CallId> = m
                    .calls
                    .iter()
                    .filter(|(_, c)| matches!(c.status, Status::Connected(_)))
                    .map(|(id, _)| *id)
                    .collect();
                talking.sort();
                let Some(id) = pick(&talking, i) else {
                    continue;
                };
                AcdCommand::Hangup {
                    call: id,
                    by: if by_agent {
                        Party::Agent
                    } else {
                        Party::Caller
                    },
                }
            }
            None => {
                let mut live: Vec<(CallId, Status)> = m
                    .calls
                    .iter()
                    .filter(|(_, c)| c.status != Status::Ended)
                    .map(|(id, c)| (*id, c.status.clone()))
                    .collect();
                live.sort_by_key(|x| x.0);
                match live.first() {
                    None => break,
                    Some((id, Status::Connected(_))) => AcdCommand::Hangup {
                        call: *id,
                        by: Party::Caller,
                    },
                    Some((id, _)) => AcdCommand::Abandon(*id),
                }
            }
        };
        let must_succeed = matches!(
            cmd,
            AcdCommand::Arrive(_)
                | AcdCommand::Abandon(_)
                | AcdCommand::Hangup { .. }
                | AcdCommand::OfferFailed { .. }
        );
        let r = acd.handle_command(m.now, cmd.clone());
        if must_succeed {
            prop_assert!(r.is_ok(), "{:?} failed: {:?}", cmd, r);
        }
        m.drain(&mut acd)?;
        m.check(&acd)?;
    }
    prop_assert!(ops_len > 0);
    for (id, c) in &m.calls {
        prop_assert_eq!(c.ended, 1, "call {:?} ended {} times", id, c.ended);
    }
    prop_assert_eq!(acd.call_count(), 0);
    Ok(())
}

proptest! {
    // 96 cases keep `cargo test` at well under a second; ACD_PROPTEST_CASES=N searches deeper.
    #![proptest_config(ProptestConfig {
        cases: std::env::var("ACD_PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(96),
        ..ProptestConfig::default()
    })]

    #[test]
    fn engine_invariants_hold((queues, agents, ops) in scenario()) {
        run(queues, agents, ops)?;
    }
}

/// A hand-written scenario through the same checker, so the checker itself is exercised on a
/// known path: ring-all, escalation and FIFO.
#[test]
fn ring_all_escalation_and_fifo_scenario() {
    let mut q0 = QueueConfig::named("q0");
    q0.strategy = Routing::RingAll;
    q0.skills = vec![SkillRequirement::new("tech", 8)];
    q0.escalation = vec![EscalationStep {
        after: Duration::from_secs(30),
        lower_by: 5,
        drop_optional: false,
    }];
    let q1 = QueueConfig::named("q1");
    let agents: Vec<AgentConfig> = [9u8, 9, 4]
        .iter()
        .enumerate()
        .map(|(i, &l)| AgentConfig {
            name: format!("Agent/{i}"),
            skills: vec![AgentSkill::new("tech", l)],
            queues: vec![
                QueueMembership {
                    queue: "q0".into(),
                    priority: 5,
                },
                QueueMembership {
                    queue: "q1".into(),
                    priority: 1,
                },
            ],
        })
        .collect();
    let ops = vec![
        Op::Login(0),
        Op::Login(1),
        Op::Login(2),
        Op::Arrive {
            queue: 0,
            priority: 0,
            extra: None,
        }, // rings agents 0 and 1
        Op::Answer(0),
        Op::Arrive {
            queue: 0,
            priority: 0,
            extra: None,
        },
        Op::Arrive {
            queue: 0,
            priority: 0,
            extra: None,
        },
        Op::Advance(31), // escalation: agent 2 qualifies
        Op::Advance(100),
    ];
    run(vec![q0, q1], agents, ops).unwrap();
}
