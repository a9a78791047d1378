//! Reconfiguring a running engine (a config reload): agents' skills and queues, queues'
//! requirements and settings, removed queues and agents, with calls waiting and connected.

use std::time::Duration;

use acd::{
    Acd, AcdCommand, AcdEvent, AgentConfig, AgentId, AgentSkill, AgentState, CallArrival, CallId,
    CallOutcome, Overflow, OverflowTarget, Party, QueueConfig, QueueId, QueueMembership,
    SkillRequirement, Time,
};

fn agent(name: &str, skills: &[(&str, u8)], queues: &[&str]) -> AgentConfig {
    AgentConfig {
        name: name.into(),
        skills: skills.iter().map(|&(s, l)| AgentSkill::new(s, l)).collect(),
        queues: queues
            .iter()
            .map(|q| QueueMembership {
                queue: (*q).into(),
                priority: 0,
            })
            .collect(),
    }
}

fn queue(name: &str, skills: &[(&str, u8)]) -> QueueConfig {
    QueueConfig {
        skills: skills
            .iter()
            .map(|&(s, m)| SkillRequirement::new(s, m))
            .collect(),
        ..QueueConfig::named(name)
    }
}

fn arrive(acd: &mut Acd, t: u64, call: u64, q: QueueId) {
    acd.handle_command(
        Time::from_secs(t),
        AcdCommand::Arrive(CallArrival {
            call: CallId(call),
            queue: q,
            priority: 0,
            extra_skills: vec![],
        }),
    )
    .unwrap();
}

fn drain(acd: &mut Acd) -> Vec<AcdEvent> {
    std::iter::from_fn(|| acd.poll_event()).collect()
}

fn offers(evs: &[AcdEvent]) -> Vec<(u64, u32)> {
    evs.iter()
        .filter_map(|e| match e {
            AcdEvent::Offer { call, agent, .. } => Some((call.0, agent.0)),
            _ => None,
        })
        .collect()
}

fn t(s: u64) -> Time {
    Time::from_secs(s)
}

#[test]
fn giving_an_agent_the_missing_skill_hands_it_the_waiting_call() {
    let mut acd = Acd::new(0);
    let es = acd.add_queue(queue("spanish", &[("spanish", 3)])).unwrap();
    let ana = acd
        .add_agent(agent("ana", &[("english", 9)], &["spanish"]))
        .unwrap();
    acd.handle_command(t(1), AcdCommand::Login(ana)).unwrap();
    arrive(&mut acd, 2, 1, es);
    assert!(offers(&drain(&mut acd)).is_empty(), "ana lacks spanish");
    acd.update_agent(
        ana,
        agent("ana", &[("english", 9), ("spanish", 5)], &["spanish"]),
        t(3),
    )
    .unwrap();
    assert_eq!(offers(&drain(&mut acd)), vec![(1, ana.0)]);
    assert!(acd.is_eligible(ana, CallId(1)));
}

#[test]
fn taking_a_queue_away_stops_its_calls_reaching_the_agent_but_not_the_call_in_progress() {
    let mut acd = Acd::new(0);
    let sales = acd.add_queue(queue("sales", &[])).unwrap();
    let bob = acd.add_agent(agent("bob", &[], &["sales"])).unwrap();
    acd.handle_command(t(1), AcdCommand::Login(bob)).unwrap();
    arrive(&mut acd, 2, 1, sales);
    assert_eq!(offers(&drain(&mut acd)), vec![(1, bob.0)]);
    acd.handle_command(
        t(3),
        AcdCommand::Answer {
            call: CallId(1),
            agent: bob,
        },
    )
    .unwrap();
    // While bob talks, the admin moves him out of sales.
    acd.update_agent(bob, agent("bob", &[], &[]), t(4)).unwrap();
    arrive(&mut acd, 5, 2, sales);
    acd.handle_command(
        t(6),
        AcdCommand::Hangup {
            call: CallId(1),
            by: Party::Caller,
        },
    )
    .unwrap();
    let evs = drain(&mut acd);
    assert!(evs.iter().any(|e| matches!(
        e,
        AcdEvent::CallEnded {
            call: CallId(1),
            outcome: CallOutcome::Completed(Party::Caller),
            ..
        }
    )));
    assert!(
        offers(&evs).is_empty(),
        "bob is Ready but no longer serves sales"
    );
    assert_eq!(acd.agent_state(bob), Some(&AgentState::Ready));
    assert_eq!(
        acd.waiting_calls(sales).collect::<Vec<_>>(),
        vec![CallId(2)]
    );
}

#[test]
fn changing_a_queues_skills_reclasses_waiting_calls_in_line_order() {
    let mut acd = Acd::new(0);
    let help = acd.add_queue(queue("help", &[("english", 5)])).unwrap();
    let low = acd
        .add_agent(agent("low", &[("english", 3)], &["help"]))
        .unwrap();
    acd.handle_command(t(1), AcdCommand::Login(low)).unwrap();
    arrive(&mut acd, 2, 1, help);
    arrive(&mut acd, 3, 2, help);
    assert!(offers(&drain(&mut acd)).is_empty(), "proficiency 3 < 5");
    // The requirement drops to 2: the agent takes the first caller in line.
    acd.update_queue(help, queue("help", &[("english", 2)]), t(4))
        .unwrap();
    assert_eq!(offers(&drain(&mut acd)), vec![(1, low.0)]);
    assert_eq!(acd.waiting_calls(help).collect::<Vec<_>>(), vec![CallId(2)]);
    // Raising it again: the next caller waits, the agent is not offered it.
    acd.update_queue(help, queue("help", &[("english", 9)]), t(5))
        .unwrap();
    acd.handle_command(
        t(6),
        AcdCommand::Answer {
            call: CallId(1),
            agent: low,
        },
    )
    .unwrap();
    acd.handle_command(
        t(7),
        AcdCommand::Hangup {
            call: CallId(1),
            by: Party::Agent,
        },
    )
    .unwrap();
    assert!(offers(&drain(&mut acd)).is_empty());
    assert!(!acd.is_eligible(low, CallId(2)));
}

#[test]
fn settings_that_do_not_change_eligibility_apply_to_the_next_offer() {
    let mut acd = Acd::new(0);
    let q = acd.add_queue(queue("q", &[])).unwrap();
    let a = acd.add_agent(agent("a", &[], &["q"])).unwrap();
    let mut cfg = queue("q", &[]);
    cfg.ring_timeout = Some(Duration::from_secs(3));
    acd.update_queue(q, cfg, t(0)).unwrap();
    acd.handle_command(t(1), AcdCommand::Login(a)).unwrap();
    arrive(&mut acd, 2, 1, q);
    assert_eq!(offers(&drain(&mut acd)), vec![(1, a.0)]);
    assert_eq!(acd.poll_timeout(), Some(t(5)), "the new 3 s ring timeout");
    // A queue's name cannot change through an update.
    assert!(acd.update_queue(q, queue("other", &[]), t(3)).is_err());
}

#[test]
fn removing_a_queue_sends_its_callers_to_the_overflow_and_ends_the_rest() {
    let mut acd = Acd::new(0);
    let old = acd
        .add_queue(QueueConfig {
            overflow: Some(OverflowTarget::Queue("new".into())),
            ..queue("old", &[])
        })
        .unwrap();
    let new = acd.add_queue(queue("new", &[])).unwrap();
    let lone = acd.add_queue(queue("lone", &[])).unwrap();
    let a = acd.add_agent(agent("a", &[], &["old", "new"])).unwrap();
    arrive(&mut acd, 1, 1, old);
    arrive(&mut acd, 2, 2, old);
    arrive(&mut acd, 3, 3, lone);
    drain(&mut acd);
    acd.remove_queue(old, t(4)).unwrap();
    acd.remove_queue(lone, t(4)).unwrap();
    let evs = drain(&mut acd);
    let moved: Vec<u64> = evs
        .iter()
        .filter_map(|e| match e {
            AcdEvent::Overflow {
                call,
                to: Overflow::Queue(q),
                ..
            } if *q == new => Some(call.0),
            _ => None,
        })
        .collect();
    assert_eq!(moved, vec![1, 2], "in line order");
    assert_eq!(
        acd.waiting_calls(new).collect::<Vec<_>>(),
        vec![CallId(1), CallId(2)]
    );
    assert!(evs.iter().any(|e| matches!(
        e,
        AcdEvent::CallEnded {
            call: CallId(3),
            outcome: CallOutcome::TimedOut,
            ..
        }
    )));
    // The removed queue takes no calls and its name can be used again.
    assert!(acd
        .handle_command(
            t(5),
            AcdCommand::Arrive(CallArrival {
                call: CallId(9),
                queue: old,
                priority: 0,
                extra_skills: vec![]
            })
        )
        .is_err());
    assert!(acd.find_queue("old").is_none());
    // The agent still serves "new" and gets the first moved caller when it logs in.
    acd.handle_command(t(6), AcdCommand::Login(a)).unwrap();
    assert_eq!(offers(&drain(&mut acd)), vec![(1, a.0)]);
}

#[test]
fn removing_an_agent_withdraws_its_offer_and_the_call_goes_to_the_next_agent() {
    let mut acd = Acd::new(0);
    let q = acd.add_queue(queue("q", &[])).unwrap();
    let x = acd.add_agent(agent("x", &[], &["q"])).unwrap();
    let y = acd.add_agent(agent("y", &[], &["q"])).unwrap();
    acd.handle_command(t(1), AcdCommand::Login(x)).unwrap();
    acd.handle_command(t(2), AcdCommand::Login(y)).unwrap();
    arrive(&mut acd, 3, 1, q);
    let first = offers(&drain(&mut acd));
    assert_eq!(first, vec![(1, x.0)], "x has been idle longest");
    acd.remove_agent(x, t(4)).unwrap();
    let evs = drain(&mut acd);
    assert!(evs
        .iter()
        .any(|e| matches!(e, AcdEvent::Withdraw { agent, .. } if *agent == x)));
    assert_eq!(offers(&evs), vec![(1, y.0)]);
    assert_eq!(acd.agent_state(x), Some(&AgentState::LoggedOut));
    let _ = AgentId(0);
}
