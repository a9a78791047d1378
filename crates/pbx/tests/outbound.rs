//! Calls out through carrier trunks in virtual time: routes by pattern (strip, prepend,
//! emergency first), the carrier's digest challenge answered, caller ID, the toll-fraud
//! guards (who may dial what, limits per user and per trunk, trunks and strangers never
//! dial out), failover to the next proxy and trunk, the far end's refusal passed back,
//! cancel while ringing out, and a blind transfer to an outside number.

mod harness;

use std::time::Duration;

use harness::{addr, carrier_endpoint, InState, OutState, Policy, World};
use pbx::record::Outcome;
use pbx::sip::endpoint::Caller;
use pbx::{Carrier, DialClass, DialPattern, DialPolicy, OutboundRoute, PbxConfig};

const SECOND: Duration = Duration::from_secs(1);
/// The carrier's proxies: it challenges with this account.
const PROXY: &str = "10.0.0.7:5060";
const PROXY2: &str = "10.0.0.9:5060";
/// Nobody answers here.
const DEAD: &str = "10.0.0.8:5060";

fn carrier(name: &str, proxies: &[&str]) -> Carrier {
    Carrier {
        name: name.into(),
        proxies: proxies.iter().map(|p| addr(p)).collect(),
        domain: Some("sip.carrier.example".into()),
        auth: Some(("acct77".into(), "s3cret".into())),
        register: None,
        caller_id: Some("+4930555000".into()),
        max_calls: None,
        answer_timeout: Duration::from_secs(2),
    }
}

fn route(name: &str, patterns: &[&str], class: DialClass, trunks: &[&str]) -> OutboundRoute {
    OutboundRoute {
        name: name.into(),
        patterns: patterns
            .iter()
            .map(|p| DialPattern::parse(p).unwrap())
            .collect(),
        class,
        strip: 0,
        prepend: String::new(),
        trunks: trunks.iter().map(|t| (*t).to_owned()).collect(),
        caller_id: None,
        record: pbx::RecordPolicy::Always,
    }
}

/// Trunk "main" (one proxy that challenges), routes: emergency 112, national 0Z… (strip
/// the 0, prepend +49), international 00Z…; users may dial local and national, 1001 has
/// its own caller ID.
fn config() -> PbxConfig {
    let mut cfg = harness::config();
    let o = &mut cfg.outbound;
    o.carriers.push(carrier("main", &[PROXY]));
    o.routes.push(route(
        "emergency",
        &["112"],
        DialClass::Emergency,
        &["main"],
    ));
    let mut national = route("national", &["0Z."], DialClass::National, &["main"]);
    national.strip = 1;
    national.prepend = "+49".into();
    o.routes.push(national);
    o.routes.push(route(
        "international",
        &["00Z."],
        DialClass::International,
        &["main"],
    ));
    o.default_policy = DialPolicy {
        classes: vec![DialClass::Local, DialClass::National],
        max_calls: Some(2),
        caller_id: None,
    };
    o.users.insert(
        "1001".into(),
        DialPolicy {
            classes: vec![DialClass::National],
            max_calls: Some(1),
            caller_id: Some("+4930555101".into()),
        },
    );
    cfg
}

/// A world with the carrier's proxy at PROXY (and PROXY2), answering after `answer`.
fn world(cfg: PbxConfig, answer: Policy) -> (World, usize) {
    let mut w = World::new(cfg, &["1001", "1002", "1003"]);
    let mut proxies = Vec::new();
    for p in [PROXY, PROXY2] {
        let i = w.add_phone_at("carrier-proxy", addr(p));
        let now = w.now;
        w.phones[i].ep = carrier_endpoint(addr(p), "acct77", "s3cret", now);
        w.phones[i].policy = answer;
        proxies.push(i);
    }
    (w, proxies[0])
}

fn user_of(uri: &str) -> String {
    uri.trim_start_matches("sip:")
        .split('@')
        .next()
        .unwrap()
        .to_owned()
}

#[test]
fn an_agent_dials_a_national_number_through_the_trunk_which_challenges() {
    let (mut w, proxy) = world(config(), Policy::Answer(SECOND));
    let agent = w.phone_index("1001");
    let now = w.now;
    let out = w.phones[agent].dial(now, "0301234567");
    w.run_until(5 * SECOND, "the far end answers", |w| {
        w.phones[agent].outgoing[out].state == OutState::Up
    });
    let p = &w.phones[proxy];
    assert_eq!(p.incoming.len(), 1, "one INVITE got past the challenge");
    let invite = &p.incoming[0].invite;
    assert_eq!(
        user_of(&invite.uri),
        "+49301234567",
        "0 stripped, +49 put in front"
    );
    assert!(
        invite.uri.ends_with("@sip.carrier.example"),
        "{}",
        invite.uri
    );
    let from = invite.headers.get("From").unwrap();
    assert!(
        from.contains("+4930555101"),
        "the user's own caller ID: {from}"
    );
    assert_eq!(
        p.callers,
        vec![Caller::User("acct77".into())],
        "the carrier authenticated us as its account"
    );
    assert_eq!(p.incoming[0].state, InState::Confirmed);
    let s = w.media.open.values().next().unwrap().clone();
    assert!(s.bridged, "the agent and the far end hear each other");
    assert!(s.tap, "the route records its calls");
    w.run_for(2 * SECOND);
    let now = w.now;
    w.phones[agent].hang_up_outgoing(now, out);
    w.run_until(5 * SECOND, "BYE to the far end", |w| {
        w.phones[proxy].incoming[0].state == InState::Ended
    });
    let r = &w.records[0];
    assert_eq!(r.outcome, Outcome::Answered);
    assert_eq!(r.source, "user:1001");
    assert_eq!(r.dialed, "0301234567");
    assert_eq!(r.agent.as_deref(), Some("1001"));
    assert!(r.recorded);
    let var = |k: &str| {
        r.variables
            .iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.as_str())
    };
    assert_eq!(var("route"), Some("national"));
    assert_eq!(var("trunk"), Some("main"));
    assert_eq!(var("sent"), Some("+49301234567"));
    assert!(r.talk >= SECOND);
    w.assert_settles();
}

#[test]
fn a_user_may_not_dial_a_class_they_are_not_given_and_nothing_reaches_the_carrier() {
    let (mut w, proxy) = world(config(), Policy::Answer(SECOND));
    let agent = w.phone_index("1002");
    let now = w.now;
    let out = w.phones[agent].dial(now, "0044207946000");
    w.run_for(2 * SECOND);
    assert_eq!(w.phones[agent].outgoing[out].state, OutState::Failed(403));
    assert!(w.phones[proxy].incoming.is_empty());
    assert!(w.records.is_empty(), "a refused attempt is not a call");
    w.assert_settles();
}

#[test]
fn emergency_numbers_are_allowed_to_anyone_who_may_call_and_come_before_extensions() {
    let mut cfg = config();
    cfg.outbound.default_policy.classes.clear();
    let (mut w, proxy) = world(cfg, Policy::Answer(SECOND));
    // A phone registered as "112" would otherwise take the number.
    let shadow = w.add_phone("112", 9);
    w.register(shadow);
    w.run_for(SECOND);
    let agent = w.phone_index("1003");
    let now = w.now;
    let out = w.phones[agent].dial(now, "112");
    w.run_until(5 * SECOND, "the emergency call is up", |w| {
        w.phones[agent].outgoing[out].state == OutState::Up
    });
    assert_eq!(user_of(&w.phones[proxy].incoming[0].invite.uri), "112");
    assert!(w.phones[shadow].incoming.is_empty());
}

#[test]
fn trunks_and_strangers_never_dial_out() {
    let mut cfg = config();
    // Even a trunk allowed to reach the number.
    cfg.trunks[0].numbers.push("0301234567".into());
    let (mut w, proxy) = world(cfg, Policy::Answer(SECOND));
    let call = w.customer_calls("0301234567");
    w.run_for(2 * SECOND);
    assert_eq!(w.carrier().outgoing[call].state, OutState::Failed(403));
    assert!(w.phones[proxy].incoming.is_empty());
}

#[test]
fn limits_per_user_and_per_trunk_hold() {
    let mut cfg = config();
    cfg.outbound.carriers[0].max_calls = Some(2);
    let (mut w, proxy) = world(cfg, Policy::Answer(SECOND));
    let (a1, a2, a3) = (
        w.phone_index("1001"),
        w.phone_index("1002"),
        w.phone_index("1003"),
    );
    let now = w.now;
    let first = w.phones[a1].dial(now, "0301111111");
    w.run_until(5 * SECOND, "up", |w| {
        w.phones[a1].outgoing[first].state == OutState::Up
    });
    // 1001 may have one call out at a time.
    let now = w.now;
    let second = w.phones[a1].dial(now, "0302222222");
    w.run_for(SECOND);
    assert_eq!(w.phones[a1].outgoing[second].state, OutState::Failed(403));
    // The trunk takes two: 1002's goes, 1003's finds it full.
    let now = w.now;
    let third = w.phones[a2].dial(now, "0303333333");
    w.run_until(5 * SECOND, "up", |w| {
        w.phones[a2].outgoing[third].state == OutState::Up
    });
    let now = w.now;
    let fourth = w.phones[a3].dial(now, "0304444444");
    w.run_for(SECOND);
    assert_eq!(w.phones[a3].outgoing[fourth].state, OutState::Failed(503));
    assert_eq!(w.phones[proxy].incoming.len(), 2);
}

#[test]
fn a_silent_proxy_and_a_full_trunk_give_way_to_the_next() {
    let mut cfg = config();
    cfg.outbound.carriers[0].proxies = vec![addr(DEAD), addr(PROXY)];
    let mut backup = carrier("backup", &[PROXY2]);
    backup.caller_id = Some("+4930999".into());
    cfg.outbound.carriers.push(backup);
    cfg.outbound.routes[1].trunks.push("backup".into());
    // main answers 503 on its second proxy once the first was silent: the route's next
    // trunk takes the call.
    let (mut w, proxy) = world(cfg, Policy::Answer(SECOND));
    w.phones[proxy].policy = Policy::Reject(503);
    let agent = w.phone_index("1002");
    let now = w.now;
    let out = w.phones[agent].dial(now, "0301234567");
    w.run_until(10 * SECOND, "up through the backup trunk", |w| {
        w.phones[agent].outgoing[out].state == OutState::Up
    });
    let backup = w.phone_index("carrier-proxy") + 1;
    assert_eq!(w.phones[backup].incoming.len(), 1);
    assert_eq!(
        w.phones[proxy].incoming.len(),
        1,
        "main's second proxy was tried"
    );
    let from = w.phones[backup].incoming[0]
        .invite
        .headers
        .get("From")
        .unwrap()
        .to_owned();
    assert!(
        from.contains("+4930555000"),
        "the first trunk's caller ID stays: {from}"
    );
    let now = w.now;
    w.phones[agent].hang_up_outgoing(now, out);
    w.run_until(5 * SECOND, "the record", |w| !w.records.is_empty());
    let r = &w.records[0];
    let trunk = r.variables.iter().find(|(k, _)| k == "trunk").unwrap();
    assert_eq!(trunk.1, "backup");
    let results: Vec<String> = r.attempts.iter().map(|a| a.result.as_str()).collect();
    assert_eq!(
        results,
        ["refused 408", "refused 503", "answered"],
        "{:?}",
        r.attempts
    );
    w.assert_settles();
}

#[test]
fn the_far_ends_refusal_reaches_the_caller_and_the_record() {
    let (mut w, _) = world(config(), Policy::Reject(486));
    let agent = w.phone_index("1002");
    let now = w.now;
    let out = w.phones[agent].dial(now, "0301234567");
    w.run_until(5 * SECOND, "refused", |w| {
        w.phones[agent].outgoing[out].state == OutState::Failed(486)
    });
    assert_eq!(w.records[0].outcome, Outcome::Busy);
    w.assert_settles();
}

#[test]
fn hanging_up_while_it_rings_out_cancels_the_carriers_invite() {
    let (mut w, proxy) = world(config(), Policy::Ignore);
    let agent = w.phone_index("1002");
    let now = w.now;
    let out = w.phones[agent].dial(now, "0301234567");
    w.run_until(5 * SECOND, "ringing at the carrier", |w| {
        w.phones[proxy].incoming.len() == 1
    });
    w.run_for(SECOND);
    assert_eq!(
        w.phones[agent].outgoing[out].state,
        OutState::Ringing,
        "180 passed on"
    );
    let now = w.now;
    w.phones[agent].hang_up_outgoing(now, out);
    w.run_until(5 * SECOND, "cancelled", |w| {
        w.phones[proxy].incoming[0].state == InState::Cancelled
    });
    w.run_until(5 * SECOND, "the record", |w| !w.records.is_empty());
    assert_eq!(w.records[0].outcome, Outcome::Abandoned);
    w.assert_settles();
}

#[test]
fn an_agent_transfers_a_caller_to_an_outside_number_only_if_they_may_dial_it() {
    let (mut w, proxy) = world(config(), Policy::Answer(SECOND));
    let (call, agent, i) = w.customer_talks();
    // International is not theirs to dial: refused, the call goes on.
    let now = w.now;
    w.phones[agent].refer_incoming(now, i, "0044207946000");
    w.run_for(SECOND);
    assert_eq!(w.phones[agent].incoming[i].state, InState::Confirmed);
    assert!(w.phones[proxy].incoming.is_empty());
    // A national number is.
    let now = w.now;
    w.phones[agent].refer_incoming(now, i, "0301234567");
    w.run_until(5 * SECOND, "the outside number answers", |w| {
        w.phones[proxy]
            .incoming
            .first()
            .is_some_and(|c| c.state == InState::Confirmed)
    });
    assert_eq!(w.phones[agent].incoming[i].state, InState::Ended);
    assert_eq!(w.carrier().outgoing[call].state, OutState::Up);
    let s = w.media.open.values().next().unwrap().clone();
    assert!(s.bridged);
    assert_eq!(
        s.remote[1].map(|a| a.ip()),
        Some(addr(PROXY).ip()),
        "the agent leg is the far end now"
    );
}

// ------------------------------------------------------------------ registering to carriers

/// A trunk that registers (asking for 120 s) to PROXY, or DEAD then PROXY.
fn registering(proxies: &[&str], password: &str) -> (World, usize) {
    let mut cfg = config();
    cfg.outbound.carriers[0].proxies = proxies.iter().map(|p| addr(p)).collect();
    cfg.outbound.carriers[0].register = Some(Duration::from_secs(120));
    cfg.outbound.carriers[0].auth = Some(("acct77".into(), password.into()));
    world(cfg, Policy::Answer(SECOND))
}

fn registered(w: &World) -> bool {
    w.control.trunk_status().iter().all(|s| s.registered)
}

#[test]
fn a_trunk_registers_with_digest_and_refreshes_before_it_runs_out() {
    let (mut w, proxy) = registering(&[PROXY], "s3cret");
    w.run_until(5 * SECOND, "registered", registered);
    assert_eq!(
        w.phones[proxy].bindings.len(),
        1,
        "{:?}",
        w.phones[proxy].bindings
    );
    assert!(
        w.phones[proxy].bindings[0].starts_with("Added"),
        "{:?}",
        w.phones[proxy].bindings
    );
    assert!(w.phones[proxy].bindings[0].contains("acct77"));
    assert_eq!(w.phones[proxy].ep.stats().registrations, 1);
    // Four fifths of 120 s later it registers again, before the carrier forgets it.
    w.run_for(Duration::from_secs(100));
    assert_eq!(w.phones[proxy].ep.stats().registrations, 2);
    w.run_for(Duration::from_secs(300));
    assert!(registered(&w));
    assert_eq!(w.phones[proxy].ep.stats().registrations, 5);
    let left = w.phones[proxy].ep.registrar().lookup("acct77")[0].remaining(w.now);
    assert!(left > 60, "the carrier still holds it for {left} s");
    assert!(
        w.phones[proxy]
            .bindings
            .iter()
            .all(|b| !b.starts_with("Removed")),
        "never expired at the carrier: {:?}",
        w.phones[proxy].bindings
    );
    w.assert_settles();
}

#[test]
fn a_trunk_whose_first_proxy_is_silent_registers_with_the_second() {
    let (mut w, proxy) = registering(&[DEAD, PROXY], "s3cret");
    w.run_until(60 * SECOND, "registered", registered);
    assert_eq!(w.control.trunk_status()[0].proxy, addr(PROXY));
    assert_eq!(w.phones[proxy].bindings.len(), 1);
}

#[test]
fn wrong_credentials_fail_on_every_proxy_and_are_tried_again_later_not_in_a_loop() {
    let (mut w, proxy) = registering(&[PROXY, PROXY2], "wrong");
    w.run_for(10 * SECOND);
    assert!(!registered(&w));
    assert!(w.phones[proxy].bindings.is_empty());
    // Both proxies refused once each; the next round waits.
    let tried = |w: &World| w.phones[proxy].callers.len();
    let before = tried(&w);
    w.run_for(20 * SECOND);
    assert_eq!(tried(&w), before, "no retry storm");
    w.run_for(20 * SECOND);
    assert!(!registered(&w));
}

#[test]
fn the_far_end_of_a_call_out_can_transfer_nothing() {
    let (mut w, proxy) = world(config(), Policy::Answer(SECOND));
    let agent = w.phone_index("1002");
    let now = w.now;
    let out = w.phones[agent].dial(now, "0301234567");
    w.run_until(5 * SECOND, "up", |w| {
        w.phones[agent].outgoing[out].state == OutState::Up
    });
    // The carrier's side sends REFER to a premium number: refused.
    let now = w.now;
    w.phones[proxy].refer_incoming(now, 0, "0900123456");
    w.run_for(SECOND);
    let refer = w.phones[proxy]
        .in_dialog_answers
        .iter()
        .find(|(m, _)| *m == pbx::sip::message::Method::Refer)
        .map(|(_, s)| *s);
    assert_eq!(refer, Some(403));
    // Nor does the transfer code keyed on its side do anything.
    let id = *w.media.open.keys().next().unwrap();
    for k in "##00441234567#".chars() {
        w.media_event(
            id,
            pbx::media::relay::MediaEventKind::Dtmf {
                leg: pbx::media::relay::Leg::Agent,
                digit: k,
            },
        );
        w.run_for(Duration::from_millis(200));
    }
    w.run_for(SECOND);
    assert_eq!(w.phones[proxy].incoming.len(), 1, "no second call out");
    assert_eq!(w.phones[agent].outgoing[out].state, OutState::Up);
    assert_eq!(w.phones[proxy].incoming[0].state, InState::Confirmed);
}

#[test]
fn a_transfer_out_that_the_far_end_refuses_brings_the_caller_back_and_keeps_the_call() {
    let (mut w, proxy) = world(config(), Policy::Reject(486));
    let (call, agent, i) = w.customer_talks();
    let now = w.now;
    w.phones[agent].refer_incoming(now, i, "0301234567");
    w.run_until(5 * SECOND, "the carrier refuses", |w| {
        !w.phones[proxy].incoming.is_empty()
    });
    // Back to the agent, who answers; long past the carrier's answer timeout the call is up.
    w.run_for(15 * SECOND);
    assert_eq!(w.carrier().outgoing[call].state, OutState::Up);
    assert!(
        w.phones[agent].incoming.len() >= 2,
        "the agent was rung again"
    );
    assert!(w.phones[agent].talking().is_some());
}

#[test]
fn a_carrier_that_wants_a_longer_registration_gets_it() {
    let (mut w, proxy) = registering(&[PROXY], "s3cret");
    // The carrier's registrar refuses less than 300 s (423 with Min-Expires).
    let now = w.now;
    w.phones[proxy].ep = harness::carrier_endpoint_min(addr(PROXY), "acct77", "s3cret", now, 300);
    w.run_until(10 * SECOND, "registered", registered);
    let left = w.phones[proxy].ep.registrar().lookup("acct77")[0].remaining(w.now);
    assert!(left > 200, "registered for the carrier's minimum: {left} s");
}

#[test]
fn an_agent_without_a_caller_id_of_their_own_sends_their_queues() {
    let mut cfg = config();
    cfg.queues[0].caller_id = Some("+4930555600".into());
    let (mut w, proxy) = world(cfg, Policy::Answer(SECOND));
    for (user, expected) in [("1002", "+4930555600"), ("1001", "+4930555101")] {
        let p = w.phone_index(user);
        let now = w.now;
        let out = w.phones[p].dial(now, "0301234567");
        w.run_until(5 * SECOND, "up", |w| {
            w.phones[p].outgoing[out].state == OutState::Up
        });
        let invite = &w.phones[proxy].incoming.last().unwrap().invite;
        let from = invite.headers.get("From").unwrap();
        assert!(from.contains(expected), "{user}: {from}");
        let now = w.now;
        w.phones[p].hang_up_outgoing(now, out);
        w.run_for(SECOND);
    }
}
