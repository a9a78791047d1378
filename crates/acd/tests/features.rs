//! Feature tests of the engine on hand-built scenarios.

use std::time::Duration;

use acd::{
    Acd, AcdCommand, AcdError, AcdEvent, AgentConfig, AgentId, AgentSkill, AgentState, CallArrival,
    CallId, CallOutcome, EmptyPolicy, EscalationStep, Overflow, OverflowTarget, Party, Proficiency,
    QueueConfig, QueueId, QueueLogKind, QueueMembership, ReasonCode, SkillRequirement, Strategy,
    Time, WithdrawReason,
};

fn member(q: &str, priority: u8) -> QueueMembership {
    QueueMembership {
        queue: q.into(),
        priority,
    }
}

fn agent(name: &str, skills: &[(&str, u8)], queues: &[(&str, u8)]) -> AgentConfig {
    AgentConfig {
        name: name.into(),
        skills: skills.iter().map(|&(s, l)| AgentSkill::new(s, l)).collect(),
        queues: queues.iter().map(|&(q, p)| member(q, p)).collect(),
    }
}

fn arrive(acd: &mut Acd, t: u64, call: u64, queue: QueueId, priority: u8) {
    acd.handle_command(
        Time::from_secs(t),
        AcdCommand::Arrive(CallArrival {
            call: CallId(call),
            queue,
            priority,
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

fn logs(evs: &[AcdEvent]) -> Vec<String> {
    evs.iter()
        .filter_map(|e| match e {
            AcdEvent::QueueLog(l) => Some(l.to_queue_log_line(100)),
            _ => None,
        })
        .collect()
}

#[test]
fn priority_then_fifo_and_agent_queue_priority() {
    let mut acd = Acd::new(0);
    let sales = acd.add_queue(QueueConfig::named("sales")).unwrap();
    let vip = acd.add_queue(QueueConfig::named("vip")).unwrap();
    let a = acd
        .add_agent(agent("Agent/1", &[], &[("sales", 1), ("vip", 9)]))
        .unwrap();
    arrive(&mut acd, 1, 1, sales, 0);
    arrive(&mut acd, 2, 2, sales, 5);
    arrive(&mut acd, 3, 3, sales, 5);
    arrive(&mut acd, 4, 4, vip, 0);
    assert_eq!(
        acd.waiting_calls(sales).collect::<Vec<_>>(),
        vec![CallId(2), CallId(3), CallId(1)]
    );
    let est = acd.estimated_wait(sales, 0);
    assert!(est.is_none(), "nobody logged in: no estimate");
    drain(&mut acd);
    acd.handle_command(Time::from_secs(5), AcdCommand::Login(a))
        .unwrap();
    // the agent's vip queue (priority 9) first, although its call is newest and lowest priority
    assert_eq!(offers(&drain(&mut acd)), vec![(4, 0)]);
    let order = [2u64, 3, 1];
    for (i, call) in [4u64, 2, 3].into_iter().enumerate() {
        let t = 10 + i as u64 * 10;
        acd.handle_command(
            Time::from_secs(t),
            AcdCommand::Answer {
                call: CallId(call),
                agent: a,
            },
        )
        .unwrap();
        acd.handle_command(
            Time::from_secs(t + 5),
            AcdCommand::Hangup {
                call: CallId(call),
                by: Party::Agent,
            },
        )
        .unwrap();
        assert_eq!(offers(&drain(&mut acd)), vec![(order[i], 0)]);
    }
    let stats = acd.queue_stats(sales, Time::from_secs(40)).unwrap();
    assert_eq!(stats.counters.answered, 2);
    assert_eq!(stats.waiting, 0);
    assert!(acd.estimated_wait(sales, 0).is_some());
}

#[test]
fn escalation_widens_to_lower_proficiency() {
    let mut acd = Acd::new(0);
    let mut q = QueueConfig::named("tech");
    q.skills = vec![
        SkillRequirement::new("network", 8),
        SkillRequirement::optional("french", 5),
    ];
    q.ring_timeout = None;
    q.escalation = vec![
        EscalationStep {
            after: Duration::from_secs(30),
            lower_by: 0,
            drop_optional: true,
        },
        EscalationStep {
            after: Duration::from_secs(60),
            lower_by: 4,
            drop_optional: true,
        },
    ];
    let tech = acd.add_queue(q).unwrap();
    let junior = acd
        .add_agent(agent("Agent/junior", &[("network", 4)], &[("tech", 0)]))
        .unwrap();
    let senior = acd
        .add_agent(agent("Agent/senior", &[("network", 9)], &[("tech", 0)]))
        .unwrap();
    for a in [junior, senior] {
        acd.handle_command(Time::ZERO, AcdCommand::Login(a))
            .unwrap();
    }
    arrive(&mut acd, 0, 1, tech, 0);
    assert!(offers(&drain(&mut acd)).is_empty(), "nobody speaks french");
    assert_eq!(acd.poll_timeout(), Some(Time::from_secs(30)));
    acd.handle_timeout(Time::from_secs(30));
    assert_eq!(
        offers(&drain(&mut acd)),
        vec![(1, 1)],
        "optional french dropped: the senior"
    );
    arrive(&mut acd, 31, 2, tech, 0);
    assert!(offers(&drain(&mut acd)).is_empty());
    assert!(!acd.is_eligible(junior, CallId(2)));
    acd.handle_timeout(Time::from_secs(61));
    assert!(
        offers(&drain(&mut acd)).is_empty(),
        "second call's first step"
    );
    acd.handle_timeout(Time::from_secs(91));
    assert_eq!(
        offers(&drain(&mut acd)),
        vec![(2, 0)],
        "minimum lowered to 4: the junior"
    );
}

#[test]
fn ring_no_answer_returns_call_and_auto_pauses() {
    let mut acd = Acd::new(0);
    let mut q = QueueConfig::named("help");
    q.ring_timeout = Some(Duration::from_secs(15));
    q.auto_pause_after = 2;
    q.no_answer_rest = Duration::ZERO;
    let help = acd.add_queue(q).unwrap();
    let a = acd
        .add_agent(agent("Agent/7", &[], &[("help", 0)]))
        .unwrap();
    acd.handle_command(Time::ZERO, AcdCommand::Login(a))
        .unwrap();
    arrive(&mut acd, 0, 1, help, 0);
    drain(&mut acd);
    acd.handle_timeout(Time::from_secs(15));
    let evs = drain(&mut acd);
    assert!(evs.contains(&AcdEvent::Withdraw {
        call: CallId(1),
        agent: a,
        reason: WithdrawReason::RingTimeout
    }));
    assert!(logs(&evs).contains(&"100|NONE|help|Agent/7|RINGNOANSWER|15000".to_owned()));
    assert_eq!(offers(&evs), vec![(1, 0)], "back in line and offered again");
    acd.handle_timeout(Time::from_secs(30));
    let evs = drain(&mut acd);
    assert!(offers(&evs).is_empty());
    assert_eq!(
        acd.agent_state(a),
        Some(&AgentState::NotReady(ReasonCode::new("no-answer")))
    );
    assert!(logs(&evs).iter().any(|l| l.ends_with("|PAUSE|no-answer")));
    // the call kept its place and waits; abandoning it after 40 s counts as an abandon
    acd.handle_command(Time::from_secs(40), AcdCommand::Abandon(CallId(1)))
        .unwrap();
    let evs = drain(&mut acd);
    assert!(logs(&evs).contains(&"100|1|help|NONE|ABANDON|1|1|40".to_owned()));
    assert!(evs.contains(&AcdEvent::CallEnded {
        call: CallId(1),
        queue: help,
        outcome: CallOutcome::Abandoned
    }));
    let s = acd.queue_stats(help, Time::from_secs(40)).unwrap();
    assert_eq!((s.counters.abandoned, s.abandon_rate), (1, Some(1.0)));
}

#[test]
fn max_wait_overflows_to_another_queue_then_external() {
    let mut acd = Acd::new(0);
    let mut first = QueueConfig::named("first");
    first.max_wait = Some(Duration::from_secs(60));
    first.overflow = Some(OverflowTarget::Queue("second".into()));
    let mut second = QueueConfig::named("second");
    second.max_wait = Some(Duration::from_secs(30));
    second.overflow = Some(OverflowTarget::External("sip:voicemail@pbx".into()));
    let q1 = acd.add_queue(first).unwrap();
    let q2 = acd.add_queue(second).unwrap();
    arrive(&mut acd, 0, 9, q1, 3);
    drain(&mut acd);
    acd.handle_timeout(Time::from_secs(60));
    let evs = drain(&mut acd);
    assert!(evs.contains(&AcdEvent::Overflow {
        call: CallId(9),
        from: q1,
        to: Overflow::Queue(q2)
    }));
    assert!(logs(&evs).contains(&"100|9|first|NONE|EXITWITHTIMEOUT|1|1|60".to_owned()));
    assert_eq!(acd.call_queue(CallId(9)), Some(q2));
    acd.handle_timeout(Time::from_secs(90));
    let evs = drain(&mut acd);
    assert!(evs.iter().any(|e| matches!(e, AcdEvent::Overflow { to: Overflow::External(d), .. } if &**d == "sip:voicemail@pbx")));
    assert!(evs.contains(&AcdEvent::CallEnded {
        call: CallId(9),
        queue: q2,
        outcome: CallOutcome::Overflowed
    }));
    assert_eq!(acd.call_count(), 0);
}

#[test]
fn join_empty_and_leave_when_empty() {
    let mut acd = Acd::new(0);
    let mut q = QueueConfig::named("night");
    q.join_empty = EmptyPolicy::NoAgentsLoggedIn;
    q.leave_when_empty = EmptyPolicy::NoAgentsAvailable;
    let night = acd.add_queue(q).unwrap();
    let a = acd
        .add_agent(agent("Agent/1", &[], &[("night", 0)]))
        .unwrap();
    arrive(&mut acd, 0, 1, night, 0);
    assert!(drain(&mut acd).contains(&AcdEvent::CallEnded {
        call: CallId(1),
        queue: night,
        outcome: CallOutcome::JoinEmpty
    }));
    acd.handle_command(Time::ZERO, AcdCommand::Login(a))
        .unwrap();
    arrive(&mut acd, 1, 2, night, 0);
    acd.handle_command(
        Time::from_secs(2),
        AcdCommand::Answer {
            call: CallId(2),
            agent: a,
        },
    )
    .unwrap();
    arrive(&mut acd, 3, 3, night, 0);
    // NotReady while on a call takes effect after the call
    acd.handle_command(
        Time::from_secs(4),
        AcdCommand::NotReady(a, ReasonCode::new("lunch")),
    )
    .unwrap();
    assert_eq!(acd.agent_state(a), Some(&AgentState::OnCall(CallId(2))));
    assert_eq!(
        acd.handle_command(Time::from_secs(4), AcdCommand::Logout(a)),
        Err(AcdError::AgentState(a))
    );
    drain(&mut acd);
    acd.handle_command(
        Time::from_secs(5),
        AcdCommand::Hangup {
            call: CallId(2),
            by: Party::Caller,
        },
    )
    .unwrap();
    let evs = drain(&mut acd);
    assert_eq!(
        acd.agent_state(a),
        Some(&AgentState::NotReady(ReasonCode::new("lunch")))
    );
    assert!(evs.contains(&AcdEvent::CallEnded {
        call: CallId(3),
        queue: night,
        outcome: CallOutcome::LeftEmpty
    }));
    assert!(logs(&evs).contains(&"100|2|night|Agent/1|COMPLETECALLER|1|3|1".to_owned()));
    assert!(logs(&evs).contains(&"100|3|night|NONE|EXITEMPTY|1|1|2".to_owned()));
}

#[test]
fn ring_all_first_answer_wins() {
    let mut acd = Acd::new(0);
    let mut q = QueueConfig::named("all");
    q.strategy = Strategy::RingAll;
    let all = acd.add_queue(q).unwrap();
    let ids: Vec<AgentId> = (0..3)
        .map(|i| {
            acd.add_agent(agent(&format!("Agent/{i}"), &[], &[("all", 0)]))
                .unwrap()
        })
        .collect();
    for &a in &ids {
        acd.handle_command(Time::ZERO, AcdCommand::Login(a))
            .unwrap();
    }
    arrive(&mut acd, 1, 1, all, 0);
    assert_eq!(offers(&drain(&mut acd)).len(), 3);
    acd.handle_command(
        Time::from_secs(2),
        AcdCommand::Answer {
            call: CallId(1),
            agent: ids[1],
        },
    )
    .unwrap();
    let evs = drain(&mut acd);
    let withdrawn: Vec<AgentId> = evs
        .iter()
        .filter_map(|e| match e {
            AcdEvent::Withdraw {
                agent,
                reason: WithdrawReason::AnsweredElsewhere,
                ..
            } => Some(*agent),
            _ => None,
        })
        .collect();
    assert_eq!(withdrawn, vec![ids[0], ids[2]]);
    assert_eq!(acd.agent_state(ids[0]), Some(&AgentState::Ready));
    assert_eq!(
        acd.handle_command(
            Time::from_secs(3),
            AcdCommand::Answer {
                call: CallId(1),
                agent: ids[0]
            }
        ),
        Err(AcdError::CallState(CallId(1)))
    );
}

#[test]
fn strategies_pick_as_documented() {
    for (strategy, expect) in [
        (Strategy::LongestIdle, vec![0u32, 1, 2]),
        (Strategy::Linear, vec![0, 0, 0]),
        (Strategy::RoundRobin, vec![0, 1, 2]),
        (Strategy::BestSkill, vec![2, 2, 2]),
        (Strategy::FewestCalls, vec![0, 1, 2]),
    ] {
        let mut acd = Acd::new(0);
        let mut q = QueueConfig::named("q");
        q.strategy = strategy;
        q.skills = vec![SkillRequirement::new("s", 1)];
        let queue = acd.add_queue(q).unwrap();
        let ids: Vec<AgentId> = (0..3u8)
            .map(|i| {
                acd.add_agent(agent(&format!("A{i}"), &[("s", 3 + i * 3)], &[("q", 0)]))
                    .unwrap()
            })
            .collect();
        for (i, &a) in ids.iter().enumerate() {
            acd.handle_command(Time::from_secs(i as u64), AcdCommand::Login(a))
                .unwrap();
        }
        let mut got = Vec::new();
        for c in 0..3u64 {
            let t = 10 + c * 10;
            arrive(&mut acd, t, c, queue, 0);
            let o = offers(&drain(&mut acd));
            assert_eq!(o.len(), 1);
            got.push(o[0].1);
            let who = AgentId(o[0].1);
            acd.handle_command(
                Time::from_secs(t + 1),
                AcdCommand::Answer {
                    call: CallId(c),
                    agent: who,
                },
            )
            .unwrap();
            acd.handle_command(
                Time::from_secs(t + 2),
                AcdCommand::Hangup {
                    call: CallId(c),
                    by: Party::Agent,
                },
            )
            .unwrap();
            drain(&mut acd);
        }
        assert_eq!(got, expect, "{strategy:?}");
    }
    // random: seeded, so reproducible, and it spreads calls over the agents
    let run = |seed| {
        let mut acd = Acd::new(seed);
        let mut q = QueueConfig::named("q");
        q.strategy = Strategy::Random;
        let queue = acd.add_queue(q).unwrap();
        for i in 0..4 {
            let a = acd
                .add_agent(agent(&format!("A{i}"), &[], &[("q", 0)]))
                .unwrap();
            acd.handle_command(Time::ZERO, AcdCommand::Login(a))
                .unwrap();
        }
        let mut got = Vec::new();
        for c in 0..20u64 {
            arrive(&mut acd, c, c, queue, 0);
            let (_, a) = offers(&drain(&mut acd))[0];
            acd.handle_command(Time::from_secs(c), AcdCommand::Abandon(CallId(c)))
                .unwrap();
            drain(&mut acd);
            got.push(a);
        }
        got
    };
    let a = run(5);
    assert_eq!(a, run(5));
    let mut distinct = a.clone();
    distinct.sort_unstable();
    distinct.dedup();
    assert!(distinct.len() >= 3, "{a:?}");
}

#[test]
fn extra_call_skills_and_config_errors() {
    let mut acd = Acd::new(0);
    let q = acd.add_queue(QueueConfig::named("q")).unwrap();
    let en = acd
        .add_agent(agent("en", &[("english", 9)], &[("q", 0)]))
        .unwrap();
    let es = acd
        .add_agent(agent("es", &[("spanish", 7)], &[("q", 0)]))
        .unwrap();
    acd.handle_command(Time::ZERO, AcdCommand::Login(en))
        .unwrap();
    acd.handle_command(Time::from_secs(1), AcdCommand::Login(es))
        .unwrap();
    let spanish = acd.find_skill("spanish").unwrap();
    acd.handle_command(
        Time::from_secs(2),
        AcdCommand::Arrive(CallArrival {
            call: CallId(1),
            queue: q,
            priority: 0,
            extra_skills: vec![(spanish, Proficiency::new(5).unwrap(), false)],
        }),
    )
    .unwrap();
    assert_eq!(
        offers(&drain(&mut acd)),
        vec![(1, es.0)],
        "longest idle is 'en', but only 'es' speaks spanish"
    );
    let mut bad = QueueConfig::named("bad");
    bad.escalation = vec![
        EscalationStep {
            after: Duration::from_secs(60),
            lower_by: 2,
            drop_optional: false,
        },
        EscalationStep {
            after: Duration::from_secs(30),
            lower_by: 3,
            drop_optional: false,
        },
    ];
    assert_eq!(acd.add_queue(bad), Err(AcdError::BadEscalation));
    assert_eq!(
        acd.add_queue(QueueConfig::named("q")),
        Err(AcdError::DuplicateQueue)
    );
    assert_eq!(
        acd.add_agent(agent("x", &[("s", 11)], &[])),
        Err(AcdError::BadProficiency(11))
    );
    assert_eq!(
        acd.add_agent(agent("x", &[], &[("nope", 0)])),
        Err(AcdError::UnknownQueue)
    );
    arrive(&mut acd, 3, 2, q, 0);
    assert_eq!(
        acd.handle_command(
            Time::from_secs(3),
            AcdCommand::Arrive(CallArrival {
                call: CallId(2),
                queue: q,
                priority: 0,
                extra_skills: vec![]
            })
        ),
        Err(AcdError::DuplicateCall(CallId(2)))
    );
    let ev = drain(&mut acd);
    assert!(ev
        .iter()
        .any(|e| matches!(e, AcdEvent::QueueLog(l) if l.kind == QueueLogKind::EnterQueue)));
}

#[test]
fn statistics_service_level_asa_occupancy() {
    let mut acd = Acd::new(0);
    let mut q = QueueConfig::named("q");
    q.service_level = Duration::from_secs(20);
    q.wrap_up = Duration::from_secs(10);
    let queue = acd.add_queue(q).unwrap();
    let a = acd.add_agent(agent("A", &[], &[("q", 0)])).unwrap();
    acd.handle_command(Time::ZERO, AcdCommand::Login(a))
        .unwrap();
    // call 1: answered after 5 s; call 2 waits behind it and is answered after 65 s
    arrive(&mut acd, 0, 1, queue, 0);
    arrive(&mut acd, 0, 2, queue, 0);
    acd.handle_command(
        Time::from_secs(5),
        AcdCommand::Answer {
            call: CallId(1),
            agent: a,
        },
    )
    .unwrap();
    acd.handle_command(
        Time::from_secs(55),
        AcdCommand::Hangup {
            call: CallId(1),
            by: Party::Caller,
        },
    )
    .unwrap();
    assert_eq!(acd.poll_timeout(), Some(Time::from_secs(65)));
    acd.handle_timeout(Time::from_secs(65));
    acd.handle_command(
        Time::from_secs(65),
        AcdCommand::Answer {
            call: CallId(2),
            agent: a,
        },
    )
    .unwrap();
    acd.handle_command(
        Time::from_secs(95),
        AcdCommand::Hangup {
            call: CallId(2),
            by: Party::Agent,
        },
    )
    .unwrap();
    acd.handle_timeout(Time::from_secs(105));
    let s = acd.queue_stats(queue, Time::from_secs(125)).unwrap();
    assert_eq!(s.counters.answered, 2);
    assert_eq!(s.service_level, Some(0.5));
    assert_eq!(s.asa, Some(Duration::from_secs(35)));
    assert_eq!(s.aht, Some(Duration::from_secs(50))); // (50 + 30 talk + 2 x 10 wrap) / 2
                                                      // busy 0-105 (ringing, talking, wrap-up), Ready 105-125: 105 / 125
    assert!(
        (s.occupancy.unwrap() - 105.0 / 125.0).abs() < 1e-9,
        "{:?}",
        s.occupancy
    );
}
