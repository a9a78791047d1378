//! Random days at the contact center, in virtual time: callers arrive and hang up, agents
//! answer, ring out, refuse and hang up, phones unregister and come back, legs go silent, and
//! the config is reloaded, in any order. After each sequence every phone hangs up and
//! [`harness::World::assert_settles`] checks that every call ended on both legs, every port
//! pair came back, no dialog, transaction or timer is left, nobody waits in the ACD, and every
//! agent is in a consistent state. `PBX_PROPTEST_CASES` sets the number of sequences
//! (default 256).

mod harness;

use std::time::Duration;

use harness::{Policy, World};
use pbx::media::relay::{Leg, MediaEventKind};
use proptest::prelude::*;

const AGENTS: [&str; 4] = ["1001", "1002", "1003", "1004"];

#[derive(Debug, Clone)]
enum Op {
    CustomerCalls { number: u8 },
    CallerHangsUp(usize),
    AgentPolicy { agent: usize, policy: u8, ms: u16 },
    AgentHangsUp(usize),
    Unregister(usize),
    Register(usize),
    SilentLeg { call: usize, agent_leg: bool },
    Reload(u8),
    Wait(u16),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0u8..4).prop_map(|number| Op::CustomerCalls { number }),
        2 => any::<usize>().prop_map(Op::CallerHangsUp),
        2 => (0..AGENTS.len(), 0u8..4, 0u16..20_000)
            .prop_map(|(agent, policy, ms)| Op::AgentPolicy { agent, policy, ms }),
        2 => (0..AGENTS.len()).prop_map(Op::AgentHangsUp),
        1 => (0..AGENTS.len()).prop_map(Op::Unregister),
        1 => (0..AGENTS.len()).prop_map(Op::Register),
        1 => (any::<usize>(), any::<bool>())
            .prop_map(|(call, agent_leg)| Op::SilentLeg { call, agent_leg }),
        1 => (0u8..3).prop_map(Op::Reload),
        4 => (0u16..30_000).prop_map(Op::Wait),
    ]
}

/// 0: support (600) with 1001–1003; 1: adds sales (601) and 1004 serving both;
/// 2: removes 1003 and the sales queue, 1002 moves to ring-all.
fn config(variant: u8) -> pbx::PbxConfig {
    let mut cfg = harness::config();
    cfg.queues[0].acd.max_wait = Some(Duration::from_secs(90));
    match variant {
        1 => {
            cfg.queues.push(harness::queue("sales", "601"));
            cfg.agents
                .push(harness::agent("1004", &["support", "sales"]));
        }
        2 => {
            cfg.agents.retain(|a| a.user != "1003");
            cfg.queues[0].acd.strategy = pbx::acd::Strategy::RingAll;
        }
        _ => {}
    }
    cfg
}

fn run(ops: &[Op]) {
    let mut w = World::new(config(0), &AGENTS);
    for op in ops {
        let now = w.now;
        match op {
            Op::CustomerCalls { number } => {
                let n = ["600", "601", "600", "600"][*number as usize];
                w.customer_calls(n);
            }
            Op::CallerHangsUp(k) => {
                let n = w.carrier().outgoing.len();
                if n > 0 {
                    w.carrier().hang_up_outgoing(now, k % n);
                }
            }
            Op::AgentPolicy { agent, policy, ms } => {
                let p = w.phone_index(AGENTS[*agent]);
                w.phones[p].policy = match policy {
                    0 => Policy::Answer(Duration::from_millis(*ms as u64)),
                    1 => Policy::Reject(486),
                    2 => Policy::Reject(603),
                    _ => Policy::Ignore,
                };
            }
            Op::AgentHangsUp(a) => {
                let p = w.phone_index(AGENTS[*a]);
                if let Some(i) = w.phones[p].talking() {
                    w.phones[p].hang_up_incoming(now, i);
                }
            }
            Op::Unregister(a) => {
                let p = w.phone_index(AGENTS[*a]);
                w.unregister(p);
            }
            Op::Register(a) => {
                let p = w.phone_index(AGENTS[*a]);
                w.register(p);
            }
            Op::SilentLeg { call, agent_leg } => {
                let ids: Vec<u64> = w.media.open.keys().copied().collect();
                if !ids.is_empty() {
                    let leg = if *agent_leg { Leg::Agent } else { Leg::Caller };
                    w.media_event(ids[call % ids.len()], MediaEventKind::Timeout { leg });
                }
            }
            Op::Reload(v) => w.reload(config(*v)),
            Op::Wait(ms) => w.run_for(Duration::from_millis(*ms as u64)),
        }
        w.run_for(Duration::from_millis(20));
    }
    // Everyone registered again (an unregistered agent's state is checked too, but this way
    // the last offers can complete).
    w.assert_settles();
}

fn cases() -> u32 {
    std::env::var("PBX_PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]

    #[test]
    fn any_day_at_the_contact_center_ends_with_nothing_left_over(
        ops in proptest::collection::vec(op(), 1..40)
    ) {
        run(&ops);
    }
}
