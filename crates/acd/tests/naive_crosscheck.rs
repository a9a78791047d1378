//! The indexed engine and the naive scanning baseline make the same choices (longest-idle
//! strategy) on random workloads: same offers, same order, same command results.

use std::time::Duration;

use acd::naive::NaiveAcd;
use acd::{
    Acd, AcdCommand, AcdEvent, AgentConfig, AgentId, AgentSkill, CallArrival, CallId, Party,
    Proficiency, QueueConfig, QueueId, QueueMembership, ReasonCode, SkillRequirement, Time,
};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

const SKILLS: usize = 6;
const QUEUES: usize = 4;

fn build(rng: &mut ChaCha8Rng, agents: usize) -> (Acd, NaiveAcd) {
    let mut acd = Acd::new(1);
    let mut naive = NaiveAcd::new();
    for q in 0..QUEUES {
        let mut cfg = QueueConfig::named(format!("q{q}"));
        cfg.ring_timeout = None;
        cfg.auto_pause_after = 0;
        cfg.no_answer_rest = Duration::ZERO;
        cfg.wrap_up = Duration::from_secs(if q % 2 == 0 { 0 } else { 10 });
        for _ in 0..rng.random_range(0..3) {
            cfg.skills.push(SkillRequirement::new(
                format!("s{}", rng.random_range(0..SKILLS)),
                rng.random_range(1..=10),
            ));
        }
        acd.add_queue(cfg.clone()).unwrap();
        naive.add_queue(cfg);
    }
    for a in 0..agents {
        let mut cfg = AgentConfig::named(format!("Agent/{a}"));
        for s in 0..SKILLS {
            if rng.random_bool(0.6) {
                cfg.skills
                    .push(AgentSkill::new(format!("s{s}"), rng.random_range(1..=10)));
            }
        }
        for q in 0..QUEUES {
            if rng.random_bool(0.6) {
                cfg.queues.push(QueueMembership {
                    queue: format!("q{q}"),
                    priority: rng.random_range(0..10),
                });
            }
        }
        assert_eq!(
            acd.add_agent(cfg.clone()).unwrap(),
            naive.add_agent(cfg).unwrap()
        );
    }
    // same skill numbering in both
    for s in 0..SKILLS {
        assert_eq!(
            acd.skill(&format!("s{s}")).unwrap(),
            naive.skill(&format!("s{s}"))
        );
    }
    (acd, naive)
}

fn offers_of_acd(acd: &mut Acd, outstanding: &mut Vec<(CallId, AgentId)>) -> Vec<AcdEvent> {
    let mut offers = Vec::new();
    while let Some(ev) = acd.poll_event() {
        match &ev {
            AcdEvent::Offer { call, agent, .. } => {
                outstanding.push((*call, *agent));
                offers.push(ev);
            }
            AcdEvent::Withdraw { call, agent, .. } => outstanding.retain(|o| o != &(*call, *agent)),
            _ => {}
        }
    }
    offers
}

fn offers_of_naive(naive: &mut NaiveAcd) -> Vec<AcdEvent> {
    std::iter::from_fn(|| naive.poll_event()).collect()
}

#[test]
fn indexed_and_naive_engines_choose_alike() {
    let mut total_offers = 0;
    for seed in 0..12u64 {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let (mut acd, mut naive) = build(&mut rng, 30);
        let mut now = Time::ZERO;
        let mut outstanding: Vec<(CallId, AgentId)> = Vec::new();
        let mut connected: Vec<CallId> = Vec::new();
        let mut waiting_or_ringing: Vec<CallId> = Vec::new();
        let mut next_call = 1u64;
        for step in 0..1500 {
            let agent = AgentId(rng.random_range(0..30));
            let cmd = match rng.random_range(0..100) {
                0..=9 => {
                    let target = now + Duration::from_secs(rng.random_range(1..20));
                    loop {
                        let (ta, tn) = (acd.poll_timeout(), naive.poll_timeout());
                        assert_eq!(ta, tn, "seed {seed} step {step}: next deadline");
                        match ta {
                            Some(t) if t <= target => {
                                now = t;
                                acd.handle_timeout(now);
                                naive.handle_timeout(now);
                                let a = offers_of_acd(&mut acd, &mut outstanding);
                                let n = offers_of_naive(&mut naive);
                                assert_eq!(a, n, "seed {seed} step {step}: offers at wrap-up end");
                                total_offers += a.len();
                            }
                            _ => break,
                        }
                    }
                    now = target;
                    continue;
                }
                10..=17 => AcdCommand::Login(agent),
                18..=20 => AcdCommand::Logout(agent),
                21..=28 => AcdCommand::Ready(agent),
                29..=32 => AcdCommand::NotReady(agent, ReasonCode::new("break")),
                33..=52 => {
                    let call = CallId(next_call);
                    next_call += 1;
                    waiting_or_ringing.push(call);
                    let extra_skills = if rng.random_bool(0.3) {
                        let s = acd
                            .skill(&format!("s{}", rng.random_range(0..SKILLS)))
                            .unwrap();
                        vec![(
                            s,
                            Proficiency::new(rng.random_range(1..=10)).unwrap(),
                            false,
                        )]
                    } else {
                        vec![]
                    };
                    AcdCommand::Arrive(CallArrival {
                        call,
                        queue: QueueId(rng.random_range(0..QUEUES as u32)),
                        priority: rng.random_range(0..10),
                        extra_skills,
                    })
                }
                53..=72 if !outstanding.is_empty() => {
                    let (call, agent) =
                        outstanding.swap_remove(rng.random_range(0..outstanding.len()));
                    waiting_or_ringing.retain(|&c| c != call);
                    connected.push(call);
                    AcdCommand::Answer { call, agent }
                }
                73..=77 if !outstanding.is_empty() => {
                    let (call, agent) = outstanding[rng.random_range(0..outstanding.len())];
                    AcdCommand::OfferFailed { call, agent }
                }
                78..=82 if !waiting_or_ringing.is_empty() => {
                    let call = waiting_or_ringing
                        .swap_remove(rng.random_range(0..waiting_or_ringing.len()));
                    AcdCommand::Abandon(call)
                }
                83..=99 if !connected.is_empty() => {
                    let call = connected.swap_remove(rng.random_range(0..connected.len()));
                    let by = if rng.random_bool(0.5) {
                        Party::Agent
                    } else {
                        Party::Caller
                    };
                    AcdCommand::Hangup { call, by }
                }
                _ => continue,
            };
            let ra = acd.handle_command(now, cmd.clone());
            let rn = naive.handle_command(now, cmd.clone());
            assert_eq!(
                ra.is_ok(),
                rn.is_ok(),
                "seed {seed} step {step}: {cmd:?}: {ra:?} vs {rn:?}"
            );
            let a = offers_of_acd(&mut acd, &mut outstanding);
            let n = offers_of_naive(&mut naive);
            assert_eq!(a, n, "seed {seed} step {step}: offers after {cmd:?}");
            total_offers += a.len();
        }
    }
    // the workload must actually exercise decisions
    assert!(total_offers > 2000, "only {total_offers} offers");
}
