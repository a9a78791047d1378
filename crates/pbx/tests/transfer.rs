//! Blind transfer in virtual time: the agent's phone sends REFER; the caller goes to another
//! queue (keeping the call's priority), to a user (back to the agent when nobody answers),
//! and refusals leave the call as it was.

mod harness;

use std::time::Duration;

use harness::{queue, InState, OutState, Policy, World};
use pbx::record::Outcome;
use pbx::sip::message::Method;
use pbx::PbxConfig;

const SECOND: Duration = Duration::from_secs(1);

/// Support (600, agents 1001 and 1002) and sales (601, agent 1003).
fn config() -> PbxConfig {
    let mut cfg = harness::config();
    cfg.queues.push(queue("sales", "601"));
    cfg.agents[2].acd.queues = vec![pbx::acd::QueueMembership {
        queue: "sales".into(),
        priority: 0,
    }];
    cfg
}

/// A customer reaches support; (carrier call, agent phone, the agent's incoming call).
fn talking(w: &mut World) -> (usize, usize, usize) {
    w.customer_talks()
}

fn session(w: &World) -> harness::FakeSession {
    assert_eq!(w.media.open.len(), 1, "{:?}", w.media.open.keys());
    w.media.open.values().next().unwrap().clone()
}

fn refer_answer(w: &World, phone: usize) -> Option<u16> {
    w.phones[phone]
        .in_dialog_answers
        .iter()
        .rev()
        .find(|(m, _)| *m == Method::Refer)
        .map(|(_, s)| *s)
}

#[test]
fn an_agent_transfers_the_caller_to_another_queue_and_its_agent_takes_over() {
    let mut cfg = config();
    cfg.queues[0].record = pbx::RecordPolicy::Always;
    let mut w = World::new(cfg, &["1001", "1002", "1003"]);
    let (call, agent, i) = talking(&mut w);
    let first = w.phones[agent].user.clone();
    let now = w.now;
    w.phones[agent].refer_incoming(now, i, "601");
    w.run_for(Duration::from_millis(100));
    assert_eq!(refer_answer(&w, agent), Some(202));
    assert_eq!(
        w.phones[agent].refer_notifies,
        vec!["SIP/2.0 200 OK".to_owned()]
    );
    assert_eq!(
        w.phones[agent].incoming[i].state,
        InState::Ended,
        "BYE to the agent"
    );
    assert_eq!(
        w.carrier().outgoing[call].state,
        OutState::Up,
        "the caller stays"
    );
    // Sales' agent rings and answers; the caller is bridged to them.
    let sales = w.phone_index("1003");
    w.run_until(5 * SECOND, "sales answers", |w| {
        w.phones[sales].talking().is_some()
    });
    w.run_for(SECOND);
    assert!(session(&w).bridged);
    // One recording from the first answer on, through the transfer.
    assert_eq!(w.media.recordings, vec!["start 1".to_owned()]);
    assert!(session(&w).tap);
    // The first agent is free for the next call (after wrap-up, none here).
    assert_eq!(w.agent_state(&first), Some(pbx::acd::AgentState::Ready));
    let now = w.now;
    w.carrier().hang_up_outgoing(now, call);
    w.run_for(SECOND);
    let r = w.records.last().unwrap();
    assert_eq!(r.outcome, Outcome::Answered);
    assert_eq!(r.queue.as_deref(), Some("sales"));
    assert_eq!(r.agent.as_deref(), Some("1003"));
    // Both agents' phones are in the record's ring attempts, each answered.
    let rung: Vec<&str> = r.attempts.iter().map(|a| a.agent.as_str()).collect();
    assert_eq!(rung, vec![first.as_str(), "1003"]);
    // Each agent's part is a segment: the first transferred, the second to the end.
    let parts: Vec<(&str, &str)> = r
        .segments
        .iter()
        .map(|s| (s.agent.as_str(), s.end.as_str()))
        .collect();
    assert_eq!(
        parts,
        [(first.as_str(), "transferred"), ("1003", "caller hung up")]
    );
    assert!(r.segments[0].ended <= r.segments[1].started);
    assert_eq!(w.records.len(), 1, "one record for the whole call");
    assert!(r.recorded);
    assert_eq!(
        w.media.recordings,
        vec!["start 1".to_owned(), "stop 1".to_owned()]
    );
    w.assert_settles();
}

#[test]
fn a_transfer_to_a_user_who_does_not_answer_brings_the_caller_back_to_the_agent() {
    let mut cfg = config();
    cfg.extension_ring_timeout = 10 * SECOND;
    let mut w = World::new(cfg, &["1001", "1002", "1003"]);
    let target = w.add_phone("1010", 30);
    w.register(target);
    w.phones[target].policy = Policy::Ignore;
    w.run_for(SECOND);
    let (call, agent, i) = talking(&mut w);
    let now = w.now;
    w.phones[agent].refer_incoming(now, i, "1010");
    w.run_for(SECOND);
    assert_eq!(w.phones[target].ringing(), 1);
    let s = session(&w);
    assert_eq!(
        s.playing[0].as_ref().and_then(|p| p.1.clone()).as_deref(),
        Some("ringback")
    );
    assert!(!s.bridged);
    // Nobody answers in 10 s: the agent's phone rings again and they take the caller back.
    w.run_until(15 * SECOND, "the agent rings again", |w| {
        w.phones[agent].incoming.len() == 2
    });
    assert_eq!(w.phones[target].incoming[0].state, InState::Cancelled);
    w.run_until(5 * SECOND, "the agent has the caller back", |w| {
        w.phones[agent].talking().is_some()
    });
    w.run_for(SECOND);
    assert!(session(&w).bridged);
    let now = w.now;
    w.carrier().hang_up_outgoing(now, call);
    w.run_for(SECOND);
    assert_eq!(w.records.last().unwrap().outcome, Outcome::Answered);
    w.assert_settles();
}

#[test]
fn a_transfer_to_a_user_who_answers_connects_them_and_a_caller_can_hang_up_meanwhile() {
    let mut w = World::new(config(), &["1001", "1002", "1003"]);
    let target = w.add_phone("1010", 30);
    w.register(target);
    w.run_for(SECOND);
    let (call, agent, i) = talking(&mut w);
    let now = w.now;
    w.phones[agent].refer_incoming(now, i, "1010");
    w.run_until(5 * SECOND, "1010 answers", |w| {
        w.phones[target].talking().is_some()
    });
    w.run_for(SECOND);
    assert!(session(&w).bridged);
    let now = w.now;
    w.carrier().hang_up_outgoing(now, call);
    w.run_for(SECOND);
    assert_eq!(w.records.last().unwrap().agent.as_deref(), Some("1010"));

    // The caller hangs up while the transfer target rings.
    w.phones[target].policy = Policy::Ignore;
    let (call, agent, i) = talking(&mut w);
    let now = w.now;
    w.phones[agent].refer_incoming(now, i, "1010");
    w.run_for(2 * SECOND);
    let now = w.now;
    w.carrier().hang_up_outgoing(now, call);
    w.run_for(SECOND);
    let ringing = w.phones[target].incoming.last().unwrap().state;
    assert_eq!(ringing, InState::Cancelled);
    w.assert_settles();
}

#[test]
fn refers_that_cannot_be_carried_out_are_refused_and_the_call_goes_on() {
    let mut w = World::new(config(), &["1001", "1002", "1003"]);
    let (call, agent, i) = talking(&mut w);
    for (target, status) in [("999", 404), ("*71", 403)] {
        let now = w.now;
        w.phones[agent].refer_incoming(now, i, target);
        w.run_for(SECOND);
        assert_eq!(refer_answer(&w, agent), Some(status), "{target}");
    }
    // Replaces naming a dialog the server does not have: 481 (RFC 3891).
    let now = w.now;
    w.phones[agent].refer_incoming_to(
        now,
        i,
        "<sip:1002@switchboard?Replaces=abc%40host%3Bto-tag%3D1%3Bfrom-tag%3D2>",
    );
    w.run_for(SECOND);
    assert_eq!(refer_answer(&w, agent), Some(481));
    w.run_for(SECOND);
    assert!(session(&w).bridged, "still talking");
    assert!(w.phones[agent].talking().is_some());
    assert_eq!(w.carrier().outgoing[call].state, OutState::Up);
    w.assert_settles();
}

fn agent_keys(w: &mut World, keys: &str) {
    let id = *w.media.open.keys().next().unwrap();
    for k in keys.chars() {
        w.media_event(
            id,
            pbx::media::relay::MediaEventKind::Dtmf {
                leg: pbx::media::relay::Leg::Agent,
                digit: k,
            },
        );
        w.run_for(Duration::from_millis(200));
    }
}

#[test]
fn the_in_call_transfer_code_transfers_like_a_refer_and_refuses_a_bad_number() {
    let mut w = World::new(config(), &["1001", "1002", "1003"]);
    let (call, agent, i) = talking(&mut w);
    // A number nobody answers to: a double beep for the agent, the call goes on.
    agent_keys(&mut w, "##999#");
    let s = session(&w);
    assert!(s.bridged);
    assert_eq!(
        s.playing[1].as_ref().map(|p| p.0.clone()),
        Some(vec!["double-beep".to_owned()])
    );
    assert!(w.phones[agent].talking().is_some());
    // To sales, ended by a pause instead of #.
    agent_keys(&mut w, "##601");
    assert!(w.phones[agent].talking().is_some(), "still keying");
    w.run_for(6 * SECOND);
    assert_eq!(w.phones[agent].incoming[i].state, InState::Ended, "let go");
    let sales = w.phone_index("1003");
    w.run_until(5 * SECOND, "sales answers", |w| {
        w.phones[sales].talking().is_some()
    });
    w.run_for(SECOND);
    assert!(session(&w).bridged);
    let now = w.now;
    w.carrier().hang_up_outgoing(now, call);
    w.run_for(SECOND);
    assert_eq!(w.records.last().unwrap().agent.as_deref(), Some("1003"));
    w.assert_settles();
}

#[test]
fn a_queue_that_overflows_to_a_number_sends_the_caller_where_the_number_leads() {
    let mut cfg = config();
    cfg.queues[0].acd.max_wait = Some(10 * SECOND);
    cfg.queues[0].acd.overflow = Some(pbx::acd::OverflowTarget::External("1010".into()));
    for a in &mut cfg.agents {
        a.login_on_start = false;
    }
    let mut w = World::new(cfg, &["1001", "1002", "1003"]);
    let user = w.add_phone("1010", 30);
    w.register(user);
    w.run_for(SECOND);
    let call = w.customer_calls("600");
    w.run_for(5 * SECOND);
    assert_eq!(w.waiting(), 1);
    // After the queue's maximum wait: 1010's phone rings, the caller hears ringback.
    w.run_until(10 * SECOND, "1010 rings", |w| w.phones[user].ringing() == 1);
    assert_eq!(
        session(&w).playing[0]
            .as_ref()
            .and_then(|p| p.1.clone())
            .as_deref(),
        Some("ringback")
    );
    w.run_until(5 * SECOND, "1010 answers", |w| {
        w.phones[user].talking().is_some()
    });
    w.run_for(SECOND);
    assert!(session(&w).bridged);
    let now = w.now;
    w.carrier().hang_up_outgoing(now, call);
    w.run_for(SECOND);
    let r = w.records.last().unwrap();
    assert_eq!(r.outcome, Outcome::Answered);
    assert_eq!(r.agent.as_deref(), Some("1010"));
    assert_eq!(r.overflowed_from.as_deref(), Some("support"));
    w.assert_settles();
    // A number that leads nowhere: the caller is hung up on as before.
    let mut cfg = config();
    cfg.queues[0].acd.max_wait = Some(10 * SECOND);
    cfg.queues[0].acd.overflow = Some(pbx::acd::OverflowTarget::External("999".into()));
    for a in &mut cfg.agents {
        a.login_on_start = false;
    }
    let mut w = World::new(cfg, &["1001"]);
    let call = w.customer_calls("600");
    w.run_for(15 * SECOND);
    assert_eq!(w.carrier().outgoing[call].state, OutState::Ended);
    assert_eq!(w.records.last().unwrap().outcome, Outcome::Overflowed);
    w.assert_settles();
}

// ------------------------------------------------------------------ attended transfer

/// The Refer-To of an attended transfer: `number`, replacing the dialog `d` (as the phone
/// that sends the REFER knows it).
fn replacing(number: &str, d: &pbx::sip::Dialog) -> String {
    let esc = |s: &str| s.replace('@', "%40");
    format!(
        "<sip:{number}@switchboard?Replaces={}%3Bto-tag%3D{}%3Bfrom-tag%3D{}>",
        esc(&d.call_id),
        d.remote_tag,
        d.local_tag
    )
}

/// A customer talks to an agent of support, who calls 1003 (the consultation) and waits
/// until it is answered; (customer's call, agent phone, the agent's incoming call, the
/// agent's outgoing consultation, 1003's phone).
fn consulting(w: &mut World) -> (usize, usize, usize, usize, usize) {
    let (call, agent, i) = talking(w);
    let now = w.now;
    let o = w.phones[agent].dial(now, "1003");
    let b = w.phone_index("1003");
    w.run_until(5 * SECOND, "1003 answers the consultation", |w| {
        w.phones[agent].outgoing[o].state == OutState::Up
    });
    w.run_for(SECOND);
    (call, agent, i, o, b)
}

fn assert_joined_to(w: &World, call: usize, agent: usize, i: usize, o: usize, b: usize) {
    assert_eq!(
        w.phones[agent].refer_notifies.last().map(String::as_str),
        Some("SIP/2.0 200 OK")
    );
    assert_eq!(
        w.phones[agent].incoming[i].state,
        InState::Ended,
        "the agent's leg to the customer ended"
    );
    assert_eq!(
        w.phones[agent].outgoing[o].state,
        OutState::Ended,
        "the consultation ended"
    );
    assert_eq!(
        w.phones[b].incoming[0].state,
        InState::Confirmed,
        "1003 stays on the line"
    );
    assert_eq!(
        w.phones[0].outgoing[call].state,
        OutState::Up,
        "the customer stays on the line"
    );
    let s = session(w);
    assert!(s.bridged);
    let sdp_ip = w.phones[b].addr.ip();
    assert_eq!(
        s.remote[1].map(|a| a.ip()),
        Some(sdp_ip),
        "the customer's session now reaches 1003"
    );
    assert_eq!(s.playing[0], None, "no more music for the customer");
}

#[test]
fn an_attended_transfer_joins_the_consulted_colleague_to_the_customer_and_lets_the_agent_go() {
    let mut cfg = config();
    cfg.queues[0].record = pbx::RecordPolicy::Always;
    let mut w = World::new(cfg, &["1001", "1002", "1003"]);
    let (call, agent, i, o, b) = consulting(&mut w);
    assert_eq!(w.media.open.len(), 2, "two calls, two sessions");
    let first = w.phones[agent].user.clone();
    // The agent's phone sends REFER in the customer's dialog, replacing the consultation.
    let refer_to = replacing("1003", w.phones[agent].outgoing[o].dialog.as_ref().unwrap());
    let now = w.now;
    w.phones[agent].refer_incoming_to(now, i, &refer_to);
    w.run_for(SECOND);
    assert_eq!(refer_answer(&w, agent), Some(202));
    assert_joined_to(&w, call, agent, i, o, b);
    // The consultation's record: answered, then transferred.
    let consult = w
        .records
        .iter()
        .find(|r| r.dialed == "1003")
        .expect("consultation record");
    assert_eq!(consult.reason, "transferred");
    assert_eq!(consult.outcome, Outcome::Answered);
    // The customer talks to 1003 and hangs up: one record, 1003 answered it, still recorded.
    w.run_for(2 * SECOND);
    assert_eq!(
        w.agent_state(&first),
        Some(pbx::acd::AgentState::Ready),
        "the first agent is free"
    );
    let now = w.now;
    w.carrier().hang_up_outgoing(now, call);
    w.run_until(5 * SECOND, "the customer's record", |w| {
        w.records.len() == 2
    });
    let r = w.records.iter().find(|r| r.dialed == "600").unwrap();
    assert_eq!(r.outcome, Outcome::Answered);
    assert_eq!(r.agent.as_deref(), Some("1003"));
    let parts: Vec<(&str, &str)> = r
        .segments
        .iter()
        .map(|s| (s.agent.as_str(), s.end.as_str()))
        .collect();
    assert_eq!(
        parts,
        [(first.as_str(), "transferred"), ("1003", "caller hung up")]
    );
    assert!(r.recorded);
    assert_eq!(
        w.media
            .recordings
            .iter()
            .filter(|x| x.starts_with("start"))
            .count(),
        1,
        "one recording across the transfer: {:?}",
        w.media.recordings
    );
    w.run_until(5 * SECOND, "1003's BYE", |w| {
        w.phones[b].incoming[0].state == InState::Ended
    });
    w.assert_settles();
}

#[test]
fn the_refer_may_come_in_the_consultation_naming_the_customers_dialog() {
    let mut w = World::new(config(), &["1001", "1002", "1003"]);
    let (call, agent, i, o, b) = consulting(&mut w);
    let refer_to = replacing("600", w.phones[agent].incoming[i].dialog.as_ref().unwrap());
    let now = w.now;
    w.phones[agent].refer_outgoing_to(now, o, &refer_to);
    w.run_for(SECOND);
    assert_joined_to(&w, call, agent, i, o, b);
    let now = w.now;
    w.phones[b].hang_up_incoming(now, 0);
    w.run_until(5 * SECOND, "the customer's BYE", |w| {
        w.phones[0].outgoing[call].state == OutState::Ended
    });
    w.assert_settles();
}

#[test]
fn a_transfer_while_the_consultation_rings_sends_the_customer_to_the_number_being_rung() {
    let mut w = World::new(config(), &["1001", "1002", "1003"]);
    let (call, agent, i) = talking(&mut w);
    let b = w.phone_index("1003");
    w.phones[b].policy = Policy::Answer(4 * SECOND);
    let now = w.now;
    let o = w.phones[agent].dial(now, "1003");
    w.run_until(5 * SECOND, "1003 rings", |w| {
        w.phones[b].incoming.len() == 1
    });
    let refer_to = {
        // An early dialog: the phone knows our tag from the 180.
        let out = &w.phones[agent].outgoing[o];
        assert_eq!(out.state, OutState::Ringing);
        let call_id = out
            .invite
            .headers
            .get("Call-ID")
            .unwrap()
            .replace('@', "%40");
        let from = out.invite.headers.get("From").unwrap();
        let from_tag = from.split("tag=").nth(1).unwrap().to_owned();
        // The server's tag in the consultation (what the 180's To carried).
        let ours = w.phones[agent].early_to_tag(o).expect("180 with a To tag");
        format!(
            "<sip:1003@switchboard?Replaces={call_id}%3Bto-tag%3D{ours}%3Bfrom-tag%3D{from_tag}>"
        )
    };
    let now = w.now;
    w.phones[agent].refer_incoming_to(now, i, &refer_to);
    w.run_for(SECOND);
    assert_eq!(refer_answer(&w, agent), Some(202));
    assert_eq!(
        w.phones[agent].outgoing[o].state,
        OutState::Failed(487),
        "the consultation is cancelled"
    );
    assert_eq!(w.phones[agent].incoming[i].state, InState::Ended);
    // 1003 rings again, now for the customer, and answers.
    w.run_until(10 * SECOND, "1003 takes the customer", |w| {
        w.phones[b]
            .incoming
            .iter()
            .any(|c| c.state == InState::Confirmed)
    });
    assert_eq!(w.phones[0].outgoing[call].state, OutState::Up);
    assert!(session(&w).bridged);
    let now = w.now;
    w.carrier().hang_up_outgoing(now, call);
    w.run_for(2 * SECOND);
    w.assert_settles();
}

#[test]
fn a_customer_who_hangs_up_during_the_transfer_leaves_the_consultation_as_it_was() {
    let mut w = World::new(config(), &["1001", "1002", "1003"]);
    let (call, agent, i, o, b) = consulting(&mut w);
    let refer_to = replacing("1003", w.phones[agent].outgoing[o].dialog.as_ref().unwrap());
    let now = w.now;
    w.phones[agent].refer_incoming_to(now, i, &refer_to);
    w.carrier().hang_up_outgoing(now, call);
    w.run_for(2 * SECOND);
    assert_eq!(
        w.phones[agent].outgoing[o].state,
        OutState::Up,
        "the consultation goes on"
    );
    assert_eq!(w.phones[b].incoming[0].state, InState::Confirmed);
    assert_eq!(w.media.open.len(), 1);
    let s = session(&w);
    assert!(s.bridged);
    assert_eq!(s.remote[1].map(|a| a.ip()), Some(w.phones[b].addr.ip()));
    let now = w.now;
    w.phones[agent].hang_up_outgoing(now, o);
    w.run_for(2 * SECOND);
    w.assert_settles();
}

#[test]
fn a_replaces_naming_someone_elses_call_is_forbidden() {
    let mut w = World::new(config(), &["1001", "1002", "1003"]);
    let (_, agent, i) = talking(&mut w);
    // 1002 calls 1003: a dialog that is not the agent's.
    let (c, b) = (w.phone_index("1002"), w.phone_index("1003"));
    let now = w.now;
    let o = w.phones[c].dial(now, "1003");
    w.run_until(5 * SECOND, "up", |w| {
        w.phones[c].outgoing[o].state == OutState::Up
    });
    let refer_to = replacing("1003", w.phones[c].outgoing[o].dialog.as_ref().unwrap());
    let now = w.now;
    w.phones[agent].refer_incoming_to(now, i, &refer_to);
    w.run_for(SECOND);
    assert_eq!(refer_answer(&w, agent), Some(403));
    assert_eq!(w.phones[agent].incoming[i].state, InState::Confirmed);
    assert_eq!(w.phones[b].incoming[0].state, InState::Confirmed);
}

// ------------------------------------------------------------------ attended, keyed

#[test]
fn a_keyed_attended_transfer_consults_the_colleague_then_hands_the_caller_over() {
    let mut w = World::new(config(), &["1001", "1002", "1003"]);
    let (call, agent, i) = talking(&mut w);
    let first = w.phones[agent].user.clone();
    let b = w.phone_index("1003");
    w.phones[b].policy = Policy::Answer(2 * SECOND);
    agent_keys(&mut w, "*21003#");
    w.run_for(Duration::from_millis(200));
    assert_eq!(w.phones[b].incoming.len(), 1, "the colleague's phone rings");
    let s = session(&w);
    assert!(s.playing[0].is_some(), "the caller hears music");
    assert!(s.playing[1].is_some(), "the agent hears ringback");
    w.run_until(5 * SECOND, "the colleague answers", |w| {
        w.phones[b].incoming[0].state == InState::Confirmed
    });
    w.run_for(Duration::from_millis(100));
    let s = session(&w);
    assert_eq!(s.monitor, pbx::media::relay::MonitorMode::Consult);
    assert_eq!(s.remote[2].map(|a| a.ip()), Some(w.phones[b].addr.ip()));
    assert_eq!(s.playing[1], None, "the agent talks to the colleague");
    assert!(s.playing[0].is_some(), "the caller still hears music");
    // The agent hangs up: the colleague takes the caller.
    let now = w.now;
    w.phones[agent].hang_up_incoming(now, i);
    w.run_for(SECOND);
    let s = session(&w);
    assert_eq!(s.supervisor, None);
    assert!(s.bridged);
    assert_eq!(s.remote[1].map(|a| a.ip()), Some(w.phones[b].addr.ip()));
    assert_eq!(s.playing[0], None, "no more music");
    assert_eq!(w.phones[b].incoming[0].state, InState::Confirmed);
    assert_eq!(w.carrier().outgoing[call].state, OutState::Up);
    let now = w.now;
    w.carrier().hang_up_outgoing(now, call);
    w.run_until(5 * SECOND, "the record", |w| !w.records.is_empty());
    let parts: Vec<(&str, &str)> = w.records[0]
        .segments
        .iter()
        .map(|s| (s.agent.as_str(), s.end.as_str()))
        .collect();
    assert_eq!(
        parts,
        [(first.as_str(), "transferred"), ("1003", "caller hung up")]
    );
    w.run_until(5 * SECOND, "the colleague's BYE", |w| {
        w.phones[b].incoming[0].state == InState::Ended
    });
    w.assert_settles();
}

#[test]
fn the_attended_code_again_or_a_colleague_who_refuses_brings_the_agent_back_to_the_caller() {
    let mut w = World::new(config(), &["1001", "1002", "1003"]);
    let (call, agent, i) = talking(&mut w);
    let b = w.phone_index("1003");
    agent_keys(&mut w, "*21003#");
    w.run_until(5 * SECOND, "the colleague answers", |w| {
        w.phones[b]
            .incoming
            .first()
            .is_some_and(|c| c.state == InState::Confirmed)
    });
    // The code again: the colleague is hung up on, the agent has the caller back.
    agent_keys(&mut w, "*2");
    w.run_for(SECOND);
    assert_eq!(w.phones[b].incoming[0].state, InState::Ended);
    let s = session(&w);
    assert_eq!(s.supervisor, None);
    assert_eq!(s.playing[0], None, "the caller hears the agent again");
    assert_eq!(w.phones[agent].incoming[i].state, InState::Confirmed);
    // A colleague who refuses: the same.
    w.phones[b].policy = Policy::Reject(486);
    agent_keys(&mut w, "*21003#");
    w.run_for(SECOND);
    assert_eq!(w.phones[b].incoming[1].state, InState::Rejected);
    let s = session(&w);
    assert_eq!(s.supervisor, None);
    assert_eq!(s.playing[0], None);
    assert_eq!(w.carrier().outgoing[call].state, OutState::Up);
    let now = w.now;
    w.carrier().hang_up_outgoing(now, call);
    w.run_for(2 * SECOND);
    w.assert_settles();
}
