//! The engine's timers as a driver sees them: after `handle_timeout(now)` nothing is due at
//! or before `now` any more, whatever happened before. A deadline that stays in the past
//! makes the driver's loop spin (an idle server at 100 % CPU).

use std::time::Duration;

use acd::{
    Acd, AcdCommand, AgentConfig, AgentId, AgentSkill, CallArrival, CallId, Party, QueueConfig,
    QueueMembership, Strategy, Time,
};

fn ring_all_center(agents: u32) -> (Acd, acd::QueueId, Vec<AgentId>) {
    let mut acd = Acd::new(7);
    let q = acd
        .add_queue(QueueConfig {
            strategy: Strategy::RingAll,
            ..QueueConfig::named("support")
        })
        .unwrap();
    let ids = (0..agents)
        .map(|i| {
            acd.add_agent(AgentConfig {
                name: format!("a{i}"),
                skills: vec![AgentSkill::new("english", 5)],
                queues: vec![QueueMembership {
                    queue: "support".into(),
                    priority: 0,
                }],
            })
            .unwrap()
        })
        .collect();
    (acd, q, ids)
}

/// Drive the engine as the ACD task does until `until`: fire what is due, check that nothing
/// due is left behind. Returns how many wake-ups it took.
fn run_until(acd: &mut Acd, mut now: Time, until: Time) -> usize {
    let mut wakeups = 0;
    while let Some(at) = acd.poll_timeout() {
        if at > until {
            break;
        }
        now = now.max(at);
        acd.handle_timeout(now);
        while acd.poll_event().is_some() {}
        wakeups += 1;
        if let Some(next) = acd.poll_timeout() {
            assert!(
                next > now,
                "a timer at {next:?} is still due after handle_timeout({now:?})"
            );
        }
        assert!(wakeups < 1_000, "the engine keeps asking to be woken");
    }
    wakeups
}

#[test]
fn ring_all_with_agents_whose_offers_fail_leaves_no_timer_due() {
    let (mut acd, q, agents) = ring_all_center(5);
    let t0 = Time::from_secs(1);
    for &a in &agents {
        acd.handle_command(t0, AcdCommand::Login(a)).unwrap();
    }
    acd.handle_command(
        t0,
        AcdCommand::Arrive(CallArrival {
            call: CallId(1),
            queue: q,
            priority: 0,
            extra_skills: vec![],
        }),
    )
    .unwrap();
    while acd.poll_event().is_some() {}
    // Four agents have no phone: their offers fail at once; the first answers.
    let t1 = t0 + Duration::from_millis(3);
    for &a in &agents[1..] {
        acd.handle_command(
            t1,
            AcdCommand::OfferFailed {
                call: CallId(1),
                agent: a,
            },
        )
        .unwrap();
    }
    acd.handle_command(
        t1,
        AcdCommand::Answer {
            call: CallId(1),
            agent: agents[0],
        },
    )
    .unwrap();
    let t2 = t1 + Duration::from_secs(3);
    acd.handle_command(
        t2,
        AcdCommand::Hangup {
            call: CallId(1),
            by: Party::Caller,
        },
    )
    .unwrap();
    while acd.poll_event().is_some() {}
    let wakeups = run_until(&mut acd, t2, t2 + Duration::from_secs(3600));
    assert!(wakeups < 20, "{wakeups} wake-ups for an idle hour");
    assert_eq!(acd.poll_timeout(), None, "nothing left to wait for");
}
