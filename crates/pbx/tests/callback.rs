//! Callback in virtual time: a waiting caller keys 1, is hung up on and keeps their place;
//! when an agent is free the agent's phone rings first, then the customer is dialled through
//! the trunk and bridged; no answer is tried again and finally recorded as failed; a restart
//! keeps the pending callback.

mod harness;

use std::time::{Duration, SystemTime};

use harness::{addr, InState, OutState, Policy, World, CARRIER};
use pbx::acd::AgentState;
use pbx::media::prompt::Prompt;
use pbx::media::relay::{Leg, MediaEventKind};
use pbx::record::{HungUpBy, Outcome};
use pbx::AgentRequest;
use pbx::{CallbackRequest, CallbackSetup, Now, PbxConfig, PendingCallback};

const SECOND: Duration = Duration::from_secs(1);

fn p(name: &str, secs: u64) -> Prompt {
    Prompt::tone(name, 440.0, Duration::from_secs(secs), 1000)
}

/// Queue support (600) with callback on key 1 through the carrier (one retry after 60 s,
/// 20 s of ringing); its agents are not logged in at start.
fn config() -> PbxConfig {
    let mut cfg = harness::config();
    cfg.queues[0].callback = Some(CallbackSetup {
        key: '1',
        offer: Some(p("offer", 2)),
        confirm: p("confirm", 2),
        trunk: "carrier".into(),
        via: addr(CARRIER),
        caller_id: String::new(),
        retries: 1,
        retry_after: 60 * SECOND,
        ring_timeout: 20 * SECOND,
    });
    for a in &mut cfg.agents {
        a.login_on_start = false;
    }
    cfg
}

fn world() -> World {
    let mut w = World::new(config(), &["1001", "1002", "1003"]);
    w.carrier().from_user = Some("+4930111".into());
    w
}

/// A customer calls support, waits, and keys 1; returns the carrier's call index and the
/// session id.
fn ask_for_callback(w: &mut World) -> (usize, u64) {
    let call = w.customer_calls("600");
    w.run_for(5 * SECOND);
    assert_eq!(w.waiting(), 1);
    let id = *w.media.open.keys().last().unwrap();
    w.media_event(
        id,
        MediaEventKind::Dtmf {
            leg: Leg::Caller,
            digit: '1',
        },
    );
    w.run_for(SECOND);
    (call, id)
}

fn log_in(w: &mut World, user: &str) {
    w.control
        .agent_request(user, AgentRequest::Ready)
        .expect("logged in");
    w.pump();
    w.run_for(Duration::from_millis(100));
}

/// The customer's calls the carrier's phone received (the callbacks).
fn customer_calls(w: &mut World) -> Vec<InState> {
    w.carrier().incoming.iter().map(|c| c.state).collect()
}

#[test]
fn the_caller_keeps_their_place_the_agent_rings_first_then_the_customer_is_connected() {
    let mut w = world();
    let (call, id) = ask_for_callback(&mut w);
    let s = &w.media.open[&id];
    assert_eq!(
        s.playing[0].as_ref().map(|p| p.0.clone()),
        Some(vec!["silence".to_owned(), "confirm".to_owned()])
    );
    assert!(
        matches!(w.callbacks.last(), Some(CallbackRequest::Save(p)) if p.number == "+4930111" && p.queue == "support")
    );
    // After the confirmation the caller is hung up on; the call keeps its place.
    w.run_for(3 * SECOND);
    assert_eq!(w.carrier().outgoing[call].state, OutState::Ended);
    assert_eq!(w.waiting(), 1, "still in line");
    assert!(w.records.is_empty(), "not over");
    // Ten minutes later an agent logs in: their phone rings first, nobody else's.
    w.run_for(600 * SECOND);
    assert_eq!(w.waiting(), 1);
    log_in(&mut w, "1001");
    w.run_until(5 * SECOND, "the agent's phone rings", |w| {
        w.phones[w.phone_index("1001")].incoming.len() == 1
    });
    assert!(
        customer_calls(&mut w).is_empty(),
        "the customer waits for the agent"
    );
    // The agent answers (0.5 s): ringback for them, and the customer's phone rings.
    w.run_until(5 * SECOND, "the customer is called", |w| {
        !w.phones[0].incoming.is_empty()
    });
    let s = &w.media.open[&id];
    assert_eq!(
        s.playing[1].as_ref().map(|p| p.1.clone()),
        Some(Some("ringback".to_owned()))
    );
    assert!(!s.bridged);
    let to = w.carrier().incoming[0].invite.uri.clone();
    assert!(to.starts_with("sip:+4930111@"), "{to}");
    // The customer answers: bridged, the ringback stops.
    w.run_until(5 * SECOND, "the customer answers", |w| {
        w.media.open.get(&id).is_some_and(|s| s.bridged)
    });
    w.run_for(SECOND);
    let s = w.media.open[&id].clone();
    assert_eq!(s.playing[1], None);
    assert_eq!(s.remote[0].map(|a| a.ip()), Some(addr(CARRIER).ip()));
    assert!(matches!(
        w.callbacks.last(),
        Some(CallbackRequest::Done { .. })
    ));
    // The agent talks 30 s and hangs up.
    w.run_for(30 * SECOND);
    let agent = w.phone_index("1001");
    let now = w.now;
    let i = w.phones[agent].talking().unwrap();
    w.phones[agent].hang_up_incoming(now, i);
    w.run_for(SECOND);
    assert_eq!(
        w.carrier().incoming[0].state,
        InState::Ended,
        "BYE to the customer"
    );
    let r = w.records.last().unwrap();
    assert_eq!(r.outcome, Outcome::Answered);
    assert!(r.callback);
    assert_eq!(r.hung_up_by, HungUpBy::Agent);
    assert_eq!(r.agent.as_deref(), Some("1001"));
    assert_eq!(r.queue.as_deref(), Some("support"));
    assert_eq!(r.caller, "+4930111");
    // Times are the original call's: it waited from its first arrival until the customer
    // answered (more than ten minutes).
    assert!(r.wait > 600 * SECOND, "{:?}", r.wait);
    assert!(
        r.talk >= 30 * SECOND && r.talk < 32 * SECOND,
        "{:?}",
        r.talk
    );
    assert!(r.answered.unwrap().duration_since(r.arrived).unwrap() > 600 * SECOND);
    w.assert_settles();
}

#[test]
fn a_customer_who_does_not_answer_is_tried_again_and_finally_recorded_as_failed() {
    let mut w = world();
    w.carrier().policy = Policy::Ignore;
    let (_, id) = ask_for_callback(&mut w);
    w.run_for(3 * SECOND);
    log_in(&mut w, "1002");
    // Agent answers, the customer rings for 20 s, then the agent is let go.
    w.run_for(25 * SECOND);
    assert_eq!(customer_calls(&mut w), vec![InState::Cancelled]);
    let agent = w.phone_index("1002");
    assert_eq!(
        w.phones[agent].incoming[0].state,
        InState::Ended,
        "BYE to the agent"
    );
    assert_eq!(w.waiting(), 0, "waiting for the next try");
    assert!(w.records.is_empty());
    // 60 s later: in line again, first; the agent (after wrap-up) rings again.
    w.run_for(61 * SECOND);
    w.run_until(10 * SECOND, "the agent rings again", |w| {
        w.phones[w.phone_index("1002")].incoming.len() == 2
    });
    w.run_for(25 * SECOND);
    assert_eq!(
        customer_calls(&mut w),
        vec![InState::Cancelled, InState::Cancelled]
    );
    // That was the last try.
    let r = w.records.last().expect("a record");
    assert_eq!(r.outcome, Outcome::CallbackFailed);
    assert!(r.callback);
    assert!(matches!(
        w.callbacks.last(),
        Some(CallbackRequest::Done { .. })
    ));
    assert!(!w.media.open.contains_key(&id));
    w.assert_settles();
}

#[test]
fn a_caller_who_hangs_up_during_the_confirmation_still_gets_the_callback() {
    let mut w = world();
    let (call, _) = ask_for_callback(&mut w);
    let now = w.now;
    w.carrier().hang_up_outgoing(now, call);
    w.run_for(5 * SECOND);
    assert_eq!(w.waiting(), 1);
    assert!(w.records.is_empty());
    log_in(&mut w, "1003");
    w.run_until(10 * SECOND, "the customer is called", |w| {
        !w.phones[0].incoming.is_empty()
    });
    w.run_for(3 * SECOND);
    assert!(w.media.open.values().any(|s| s.bridged));
    w.assert_settles();
    assert!(w.records.last().unwrap().callback);
}

#[test]
fn a_pending_callback_outlives_a_shutdown_and_is_served_after_the_restart() {
    let mut w = world();
    let (_, _) = ask_for_callback(&mut w);
    w.run_for(3 * SECOND);
    let pending = match w.callbacks.last() {
        Some(CallbackRequest::Save(p)) => p.clone(),
        other => panic!("{other:?}"),
    };
    let now = w.clock_now();
    w.control.hang_up_all(now);
    w.pump();
    assert!(
        w.records.is_empty(),
        "no record for a callback still to be made"
    );
    assert!(!w
        .callbacks
        .iter()
        .any(|c| matches!(c, CallbackRequest::Done { .. })));

    // The new server: the store hands it back; an agent logs in; the customer is called.
    let mut w = world();
    let arrived = pending.arrived;
    let now = w.clock_now();
    w.control.load_callbacks(
        now,
        vec![PendingCallback {
            attempts: 0,
            ..pending
        }],
    );
    w.pump();
    w.run_for(SECOND);
    assert_eq!(w.waiting(), 1);
    // A new caller arrives after the restart: the kept callback is served first.
    let newer = w.customer_calls("600");
    w.run_for(SECOND);
    log_in(&mut w, "1001");
    w.run_until(10 * SECOND, "the customer is called", |w| {
        !w.phones[0].incoming.is_empty()
    });
    w.run_for(3 * SECOND);
    assert_eq!(w.waiting(), 1, "the newer caller still waits");
    let now = w.now;
    w.carrier().hang_up_outgoing(now, newer);
    let i = 0;
    let now = w.now;
    w.carrier().hang_up_incoming(now, i);
    w.run_for(SECOND);
    let r = w
        .records
        .iter()
        .find(|r| r.callback)
        .expect("the callback's record");
    assert_eq!(r.outcome, Outcome::Answered);
    assert_eq!(r.arrived, arrived, "the original arrival");
    w.assert_settles();
}

#[test]
fn a_key_other_than_the_callback_key_or_from_a_caller_without_a_number_changes_nothing() {
    let mut w = World::new(config(), &["1001", "1002", "1003"]);
    // The carrier's From user is "carrier": no number to call back.
    let (call, _) = ask_for_callback(&mut w);
    w.run_for(5 * SECOND);
    assert_eq!(w.carrier().outgoing[call].state, OutState::Up);
    assert!(w.callbacks.is_empty());
    let _ = (AgentState::Ready, SystemTime::now());
    w.assert_settles();
}

trait WorldExt {
    fn clock_now(&self) -> Now;
}

impl WorldExt for World {
    fn clock_now(&self) -> Now {
        self.now_input()
    }
}

#[test]
fn a_menu_choice_asks_for_a_callback_from_the_queue_at_once() {
    let mut cfg = config();
    cfg.trunks[0].numbers.push("700".into());
    let mut choices = std::collections::BTreeMap::new();
    choices.insert(
        '2',
        pbx::Choice {
            step: pbx::Step::Callback("support".into()),
            set: Vec::new(),
        },
    );
    cfg.menus.push(std::sync::Arc::new(pbx::Menu {
        name: "main".into(),
        number: Some("700".into()),
        prompt: p("main", 3),
        kind: pbx::MenuKind::Choice(choices),
        timeout: 5 * SECOND,
        tries: 3,
        invalid: None,
        on_fail: pbx::Step::HangUp,
        hours: None,
    }));
    let mut w = World::new(cfg, &["1001", "1002", "1003"]);
    w.carrier().from_user = Some("+4930222".into());
    let call = w.customer_calls("700");
    w.run_for(SECOND);
    let id = *w.media.open.keys().last().unwrap();
    w.media_event(
        id,
        MediaEventKind::Dtmf {
            leg: Leg::Caller,
            digit: '2',
        },
    );
    w.run_for(SECOND);
    assert_eq!(
        w.media.open[&id].playing[0].as_ref().map(|p| p.0.clone()),
        Some(vec!["silence".to_owned(), "confirm".to_owned()])
    );
    assert_eq!(w.waiting(), 1, "in the queue, with its place");
    w.run_for(3 * SECOND);
    assert_eq!(w.carrier().outgoing[call].state, OutState::Ended);
    log_in(&mut w, "1001");
    w.run_until(10 * SECOND, "the customer is called", |w| {
        !w.phones[0].incoming.is_empty()
    });
    w.run_for(3 * SECOND);
    assert!(w.media.open[&id].bridged);
    w.assert_settles();
    let r = w.records.last().unwrap();
    assert!(r.callback);
    assert_eq!(r.dialed, "700");
}

#[test]
fn an_agent_who_hangs_up_while_the_customer_rings_is_free_and_the_customer_is_cancelled() {
    let mut w = world();
    w.carrier().policy = Policy::Ignore;
    let _ = ask_for_callback(&mut w);
    w.run_for(3 * SECOND);
    log_in(&mut w, "1001");
    w.run_until(5 * SECOND, "the customer is called", |w| {
        !w.phones[0].incoming.is_empty()
    });
    let agent = w.phone_index("1001");
    let now = w.now;
    let i = w.phones[agent].talking().unwrap();
    w.phones[agent].hang_up_incoming(now, i);
    w.run_for(SECOND);
    assert_eq!(customer_calls(&mut w), vec![InState::Cancelled]);
    assert!(matches!(
        w.callbacks.last(),
        Some(CallbackRequest::Done { .. })
    ));
    // The agent is not left "on a call" in the ACD (assert_settles checks every agent).
    w.assert_settles();
}

#[test]
fn an_agent_who_answers_during_the_confirmation_simply_talks_to_the_caller() {
    let mut w = world();
    let (call, id) = ask_for_callback(&mut w);
    // An agent frees up while the caller still hears the confirmation.
    log_in(&mut w, "1002");
    w.run_for(2 * SECOND);
    assert!(w.media.open[&id].bridged, "connected at once");
    assert_eq!(
        w.carrier().outgoing[call].state,
        OutState::Up,
        "not hung up on"
    );
    assert!(customer_calls(&mut w).is_empty(), "nobody is called back");
    assert!(matches!(
        w.callbacks.last(),
        Some(CallbackRequest::Done { .. })
    ));
    w.run_for(5 * SECOND);
    assert_eq!(w.carrier().outgoing[call].state, OutState::Up);
    let now = w.now;
    w.carrier().hang_up_outgoing(now, call);
    w.run_for(SECOND);
    let r = w.records.last().unwrap();
    assert_eq!(r.outcome, Outcome::Answered);
    assert!(!r.callback);
    w.assert_settles();
}

#[test]
fn a_callback_whose_queue_a_reload_removes_is_given_up_with_its_record() {
    let mut w = world();
    let _ = ask_for_callback(&mut w);
    w.run_for(3 * SECOND);
    let mut cfg = config();
    cfg.queues.clear();
    w.reload(cfg);
    w.run_for(40 * SECOND);
    let r = w.records.last().expect("a record");
    assert_eq!(r.outcome, Outcome::CallbackFailed);
    assert!(matches!(
        w.callbacks.last(),
        Some(CallbackRequest::Done { .. })
    ));
    w.assert_settles();
}
