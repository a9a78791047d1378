//! Supervisor monitoring from a phone in virtual time: the codes (listen, whisper, barge)
//! with an agent's number, who may monitor whom, keys that switch the mode, take-over, and
//! every way a supervisor's leg ends (their hang-up, the call's end, the agent leaving).

mod harness;

use std::time::Duration;

use harness::{InState, OutState, World};
use pbx::media::relay::{Leg, MediaEventKind, MonitorMode};
use pbx::record::Outcome;
use pbx::{PbxConfig, SupervisorRule};

const SECOND: Duration = Duration::from_secs(1);

/// Support (600, agents 1001–1003); user 1004 supervises support's agents.
fn config() -> PbxConfig {
    let mut cfg = harness::config();
    cfg.supervisors.push(SupervisorRule {
        user: "1004".into(),
        queues: vec!["support".into()],
        ..SupervisorRule::default()
    });
    cfg
}

/// A customer talks to an agent; (customer's call, agent phone, agent user).
fn talking(w: &mut World) -> (usize, usize, String) {
    let (call, agent, _) = w.customer_talks();
    (call, agent, w.phones[agent].user.clone())
}

fn session(w: &World) -> harness::FakeSession {
    assert_eq!(w.media.open.len(), 1, "{:?}", w.media.open.keys());
    w.media.open.values().next().unwrap().clone()
}

fn supervisor_key(w: &mut World, digit: char) {
    let id = *w.media.open.keys().next().unwrap();
    w.media_event(
        id,
        MediaEventKind::Dtmf {
            leg: Leg::Supervisor,
            digit,
        },
    );
    w.run_for(Duration::from_millis(100));
}

#[test]
fn a_supervisor_whispers_switches_to_barge_by_key_and_hangs_up_while_the_call_goes_on() {
    let mut w = World::new(config(), &["1001", "1002", "1003", "1004"]);
    let (call, agent, user) = talking(&mut w);
    let sup = w.phone_index("1004");
    let now = w.now;
    let o = w.phones[sup].dial(now, &format!("*45{user}"));
    w.run_until(5 * SECOND, "the supervisor is on", |w| {
        w.phones[sup].outgoing[o].state == OutState::Up
    });
    let s = session(&w);
    assert!(
        s.supervisor.is_some(),
        "a supervisor leg on the agent's call"
    );
    assert_eq!(s.monitor, MonitorMode::Whisper);
    assert_eq!(s.remote[2].map(|a| a.ip()), Some(w.phones[sup].addr.ip()));
    assert!(s.bridged, "the customer and the agent still talk");
    // Keys switch the mode.
    supervisor_key(&mut w, '6');
    assert_eq!(session(&w).monitor, MonitorMode::Barge);
    supervisor_key(&mut w, '4');
    assert_eq!(session(&w).monitor, MonitorMode::Listen);
    // The supervisor hangs up: only their leg ends.
    let now = w.now;
    w.phones[sup].hang_up_outgoing(now, o);
    w.run_for(SECOND);
    let s = session(&w);
    assert_eq!(s.supervisor, None);
    assert!(s.bridged);
    assert_eq!(w.phones[agent].incoming[0].state, InState::Confirmed);
    assert_eq!(w.carrier().outgoing[call].state, OutState::Up);
    let now = w.now;
    w.carrier().hang_up_outgoing(now, call);
    w.run_until(5 * SECOND, "the record", |w| !w.records.is_empty());
    let r = &w.records[0];
    assert_eq!(r.outcome, Outcome::Answered);
    assert!(
        r.variables
            .contains(&("monitored_by".into(), "1004".into())),
        "{:?}",
        r.variables
    );
    w.assert_settles();
}

#[test]
fn only_a_supervisor_with_a_rule_for_the_agent_may_monitor_and_only_a_call_in_progress() {
    let mut cfg = config();
    cfg.supervisors.push(SupervisorRule {
        user: "1005".into(),
        queues: vec!["sales".into()],
        ..SupervisorRule::default()
    });
    let mut w = World::new(cfg, &["1001", "1002", "1003", "1004", "1005", "1006"]);
    // Nobody talks yet: 480.
    let sup = w.phone_index("1004");
    let now = w.now;
    let o = w.phones[sup].dial(now, "*441001");
    w.run_for(SECOND);
    assert_eq!(w.phones[sup].outgoing[o].state, OutState::Failed(480));
    let (_, _, user) = talking(&mut w);
    // A rule for another queue, or none at all: 403.
    for who in ["1005", "1006"] {
        let p = w.phone_index(who);
        let now = w.now;
        let o = w.phones[p].dial(now, &format!("*44{user}"));
        w.run_for(SECOND);
        assert_eq!(
            w.phones[p].outgoing[o].state,
            OutState::Failed(403),
            "{who}"
        );
    }
    assert_eq!(session(&w).supervisor, None);
}

#[test]
fn the_end_of_the_call_hangs_up_on_the_supervisor() {
    let mut w = World::new(config(), &["1001", "1002", "1003", "1004"]);
    let (call, _, user) = talking(&mut w);
    let sup = w.phone_index("1004");
    let now = w.now;
    let o = w.phones[sup].dial(now, &format!("*44{user}"));
    w.run_until(5 * SECOND, "on", |w| {
        w.phones[sup].outgoing[o].state == OutState::Up
    });
    assert_eq!(session(&w).monitor, MonitorMode::Listen);
    let now = w.now;
    w.carrier().hang_up_outgoing(now, call);
    w.run_until(5 * SECOND, "the supervisor is hung up on", |w| {
        w.phones[sup].outgoing[o].state == OutState::Ended
    });
    w.assert_settles();
}

#[test]
fn a_supervisor_takes_the_call_over_and_the_agent_is_let_go() {
    let mut w = World::new(config(), &["1001", "1002", "1003", "1004"]);
    let (call, agent, user) = talking(&mut w);
    let sup = w.phone_index("1004");
    let now = w.now;
    let o = w.phones[sup].dial(now, &format!("*46{user}"));
    w.run_until(5 * SECOND, "on", |w| {
        w.phones[sup].outgoing[o].state == OutState::Up
    });
    supervisor_key(&mut w, '7');
    w.run_for(SECOND);
    assert_eq!(
        w.phones[agent].incoming[0].state,
        InState::Ended,
        "the agent is let go"
    );
    assert_eq!(
        w.phones[sup].outgoing[o].state,
        OutState::Up,
        "the supervisor keeps the caller"
    );
    let s = session(&w);
    assert_eq!(s.supervisor, None);
    assert!(s.bridged);
    assert_eq!(
        s.remote[1].map(|a| a.ip()),
        Some(w.phones[sup].addr.ip()),
        "the supervisor is the agent side now"
    );
    let now = w.now;
    w.carrier().hang_up_outgoing(now, call);
    w.run_until(5 * SECOND, "the record", |w| !w.records.is_empty());
    assert_eq!(w.records[0].agent.as_deref(), Some("1004"));
    let parts: Vec<(&str, &str)> = w.records[0]
        .segments
        .iter()
        .map(|s| (s.agent.as_str(), s.end.as_str()))
        .collect();
    assert_eq!(
        parts,
        [(user.as_str(), "taken over"), ("1004", "caller hung up")]
    );
    w.run_until(5 * SECOND, "the supervisor's BYE", |w| {
        w.phones[sup].outgoing[o].state == OutState::Ended
    });
    w.assert_settles();
}

#[test]
fn monitoring_asked_from_outside_rings_the_supervisors_phone_which_then_whispers() {
    let mut w = World::new(config(), &["1001", "1002", "1003", "1004"]);
    let ask = |w: &mut World, agent: &str, phone: &str| {
        w.control.agent_request(
            agent,
            pbx::AgentRequest::Monitor(phone.into(), MonitorMode::Whisper),
        )
    };
    // Nobody on a call yet.
    let e = ask(&mut w, "1001", "1004").unwrap_err();
    assert!(e.contains("on no call"), "{e}");
    let (call, _, user) = talking(&mut w);
    // A user without a rule, and one without a phone.
    let e = ask(&mut w, &user, "1002").unwrap_err();
    assert!(e.contains("may not monitor"), "{e}");
    let mut cfg = config();
    cfg.supervisors[0].user = "1009".into();
    w.control.reload(cfg);
    let e = ask(&mut w, &user, "1009").unwrap_err();
    assert!(e.contains("no phone registered"), "{e}");
    w.control.reload(config());
    ask(&mut w, &user, "1004").expect("monitoring starts");
    w.run_for(Duration::from_millis(100));
    let sup = w.phone_index("1004");
    assert_eq!(
        w.phones[sup].incoming.len(),
        1,
        "the supervisor's phone rings"
    );
    w.run_until(5 * SECOND, "answered", |w| {
        w.phones[sup].incoming[0].state == InState::Confirmed
    });
    w.run_for(Duration::from_millis(100));
    let s = session(&w);
    assert_eq!(s.monitor, MonitorMode::Whisper);
    assert_eq!(s.remote[2].map(|a| a.ip()), Some(w.phones[sup].addr.ip()));
    supervisor_key(&mut w, '6');
    assert_eq!(session(&w).monitor, MonitorMode::Barge);
    // The supervisor's phone refreshes its session with a re-INVITE: answered, still on.
    let now = w.now;
    let sdp = w.phones[sup].sdp();
    w.phones[sup].reinvite_incoming(now, 0, sdp);
    w.run_for(SECOND);
    assert!(
        w.phones[sup]
            .in_dialog_answers
            .contains(&(pbx::sip::message::Method::Invite, 200)),
        "{:?}",
        w.phones[sup].in_dialog_answers
    );
    assert_eq!(session(&w).monitor, MonitorMode::Barge);
    let now = w.now;
    w.carrier().hang_up_outgoing(now, call);
    w.run_until(5 * SECOND, "the supervisor is hung up on", |w| {
        w.phones[sup].incoming[0].state == InState::Ended
    });
    w.assert_settles();
}

#[test]
fn a_supervisors_phone_that_does_not_answer_stops_ringing_and_the_call_goes_on() {
    let mut w = World::new(config(), &["1001", "1002", "1003", "1004"]);
    let (call, _, user) = talking(&mut w);
    let sup = w.phone_index("1004");
    w.phones[sup].policy = harness::Policy::Ignore;
    w.control
        .agent_request(
            &user,
            pbx::AgentRequest::Monitor("1004".into(), MonitorMode::Listen),
        )
        .unwrap();
    w.run_for(40 * SECOND);
    assert_eq!(w.phones[sup].incoming[0].state, InState::Cancelled);
    let s = session(&w);
    assert_eq!(s.supervisor, None);
    assert!(s.bridged);
    assert_eq!(w.carrier().outgoing[call].state, OutState::Up);
    let now = w.now;
    w.carrier().hang_up_outgoing(now, call);
    w.run_for(2 * SECOND);
    w.assert_settles();
}
