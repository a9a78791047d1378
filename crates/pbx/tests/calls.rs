//! Call control in virtual time: every call path the end-to-end tests drive over sockets,
//! here against `sip::Endpoint` phones with a fake media relay. Each test ends with
//! [`World::assert_settles`]: nothing leaks once everybody hangs up.

mod harness;

use std::time::Duration;

use harness::{addr, queue, InState, OutState, Policy, World, CARRIER};
use pbx::acd::AgentState;
use pbx::media::prompt::Prompt;
use pbx::media::relay::{Leg, MediaEventKind};
use pbx::record::{HungUpBy, Outcome, RingResult};

const SECOND: Duration = Duration::from_secs(1);

/// The session of the only call in progress.
fn only_session(w: &World) -> (u64, harness::FakeSession) {
    assert_eq!(w.media.open.len(), 1, "{:?}", w.media.open);
    let (id, s) = w.media.open.iter().next().unwrap();
    (*id, s.clone())
}

fn three_agents() -> World {
    World::new(harness::config(), &["1001", "1002", "1003"])
}

#[test]
fn agents_with_registered_phones_are_ready_and_one_without_is_parked_with_a_reason() {
    let w = World::new(harness::config(), &["1001", "1002"]);
    assert_eq!(w.agent_state("1001"), Some(AgentState::Ready));
    assert_eq!(w.agent_state("1002"), Some(AgentState::Ready));
    match w.agent_state("1003") {
        Some(AgentState::NotReady(r)) => assert_eq!(r.as_str(), "no-phone"),
        other => panic!("1003 is {other:?}"),
    }
}

#[test]
fn a_caller_reaches_an_agent_both_legs_are_bridged_and_the_caller_hangs_up() {
    let mut w = three_agents();
    let call = w.customer_calls("600");
    w.run_until(5 * SECOND, "an agent answers", |w| {
        w.phones.iter().any(|p| p.talking().is_some())
    });
    assert_eq!(w.carrier().outgoing[call].state, OutState::Up);
    let agent = w.phones.iter().position(|p| p.talking().is_some()).unwrap();
    w.run_for(SECOND);
    let (_, s) = only_session(&w);
    assert!(s.bridged, "the legs are bridged");
    assert_eq!(s.playing[0], None, "the caller no longer hears the queue");
    assert_eq!(
        s.remote[0],
        Some(addr("10.0.0.5:40000")),
        "caller's RTP address"
    );
    let agent_ip = w.phones[agent].addr.ip();
    assert_eq!(
        s.remote[1].map(|a| a.ip()),
        Some(agent_ip),
        "agent's RTP address"
    );
    // Each leg's relay knows where that leg's SIP comes from (its NAT's public address).
    assert_eq!(s.host, [Some(addr(CARRIER).ip()), Some(agent_ip), None]);
    // Only one agent rang.
    let rung: usize = w.phones[1..].iter().map(|p| p.incoming.len()).sum();
    assert_eq!(rung, 1);
    // Its phone was told the call's id, queue and wait (a screen-pop).
    let h = &w.phones[agent].incoming[0].invite.headers;
    let (id, _) = only_session(&w);
    assert_eq!(h.get("X-Switchboard-Call"), Some(id.to_string().as_str()));
    assert_eq!(h.get("X-Switchboard-Queue"), Some("support"));
    assert!(h
        .get("X-Switchboard-Waited")
        .and_then(|s| s.parse::<u64>().ok())
        .is_some_and(|s| s < 5));
    assert_eq!(h.get("X-Switchboard-Entered"), None, "no menu on the way");
    assert_eq!(
        w.phones[agent].incoming[0].state,
        InState::Confirmed,
        "the agent's phone got its ACK"
    );

    let now = w.now;
    w.carrier().hang_up_outgoing(now, call);
    w.run_for(SECOND);
    assert_eq!(
        w.phones[agent].incoming[0].state,
        InState::Ended,
        "BYE to the agent"
    );
    assert!(w.media.open.is_empty(), "media closed");
    assert!(
        w.queue_log.iter().any(|l| l.contains("CompleteCaller")),
        "{:?}",
        w.queue_log
    );
    // The call record says what happened.
    assert_eq!(w.records.len(), 1);
    let r = &w.records[0];
    assert_eq!(r.outcome, Outcome::Answered);
    assert_eq!(r.hung_up_by, HungUpBy::Caller);
    assert_eq!(r.queue.as_deref(), Some("support"));
    assert_eq!(r.agent.as_deref(), Some(w.phones[agent].user.as_str()));
    assert_eq!(r.dialed, "600");
    assert_eq!(r.source, "trunk:carrier");
    assert_eq!(r.caller, "carrier");
    assert!(r.queued.is_some() && r.first_offer.is_some() && r.answered.is_some());
    assert!(r.arrived <= r.queued.unwrap() && r.queued <= r.first_offer);
    assert!(r.first_offer <= r.answered && r.answered.unwrap() <= r.ended);
    // The agent's phone answered after its 500 ms; the caller stayed a second after that.
    assert!(
        r.wait >= Duration::from_millis(500) && r.wait < SECOND,
        "{:?}",
        r.wait
    );
    assert!(r.talk >= SECOND, "{:?}", r.talk);
    assert_eq!(r.attempts.len(), 1);
    assert_eq!(r.attempts[0].result, RingResult::Answered);
    // The agent went ringing, busy and ready again, each written down.
    let user = w.phones[agent].user.clone();
    let states: Vec<&str> = w
        .agent_log
        .iter()
        .filter(|s| s.user == user)
        .map(|s| s.state)
        .collect();
    assert!(
        states.ends_with(&["ringing", "busy", "ready"]),
        "{states:?}"
    );
    w.assert_settles();
}

#[test]
fn the_agent_hangs_up_and_the_caller_gets_the_bye() {
    let mut w = three_agents();
    let call = w.customer_calls("600");
    w.run_until(5 * SECOND, "an agent answers", |w| {
        w.phones.iter().any(|p| p.talking().is_some())
    });
    let agent = w.phones.iter().position(|p| p.talking().is_some()).unwrap();
    let now = w.now;
    w.phones[agent].hang_up_incoming(now, 0);
    w.run_for(SECOND);
    assert_eq!(w.carrier().outgoing[call].state, OutState::Ended);
    assert!(!w.carrier().outgoing[call].hung_up_here);
    assert!(
        w.queue_log.iter().any(|l| l.contains("CompleteAgent")),
        "{:?}",
        w.queue_log
    );
    w.assert_settles();
}

#[test]
fn a_caller_who_hangs_up_while_queued_is_an_abandon() {
    let mut w = three_agents();
    for p in &mut w.phones[1..] {
        p.policy = Policy::Ignore;
    }
    let call = w.customer_calls("600");
    w.run_for(3 * SECOND);
    assert_eq!(
        w.carrier().outgoing[call].state,
        OutState::Up,
        "answered at once"
    );
    assert_eq!(w.phones[1..].iter().map(|p| p.ringing()).sum::<usize>(), 1);
    let now = w.now;
    w.carrier().hang_up_outgoing(now, call);
    w.run_for(SECOND);
    assert_eq!(
        w.phones[1..].iter().map(|p| p.ringing()).sum::<usize>(),
        0,
        "the ringing phone got CANCEL"
    );
    assert!(
        w.queue_log.iter().any(|l| l.contains("Abandon")),
        "{:?}",
        w.queue_log
    );
    let r = &w.records[0];
    assert_eq!(
        (r.outcome, r.hung_up_by),
        (Outcome::Abandoned, HungUpBy::Caller)
    );
    assert_eq!(r.agent, None);
    assert_eq!(r.attempts.len(), 1);
    assert_eq!(r.attempts[0].result, RingResult::Cancelled);
    assert!(r.wait >= 3 * SECOND);
    w.assert_settles();
}

#[test]
fn an_agent_who_does_not_answer_is_skipped_and_the_next_agent_gets_the_call() {
    let mut w = three_agents();
    let first = w.phone_index("1001");
    w.phones[first].policy = Policy::Ignore;
    let call = w.customer_calls("600");
    // 1001 has been ready longest: offered first, rings for the 15 s ring timeout.
    w.run_for(2 * SECOND);
    assert_eq!(w.phones[first].ringing(), 1);
    w.run_until(20 * SECOND, "another agent answers", |w| {
        w.phones[2..].iter().any(|p| p.talking().is_some())
    });
    assert_eq!(w.phones[first].incoming[0].state, InState::Cancelled);
    assert!(
        w.queue_log.iter().any(|l| l.contains("RingNoAnswer")),
        "{:?}",
        w.queue_log
    );
    assert_eq!(w.carrier().outgoing[call].state, OutState::Up);
    w.assert_settles();
    let r = &w.records[0];
    assert_eq!(r.outcome, Outcome::Answered);
    let results: Vec<(&str, RingResult)> = r
        .attempts
        .iter()
        .map(|a| (a.agent.as_str(), a.result))
        .collect();
    assert_eq!(results.len(), 2, "{results:?}");
    assert_eq!(results[0], ("1001", RingResult::NoAnswer), "rang out");
    assert_eq!(results[1].1, RingResult::Answered);
}

#[test]
fn a_busy_agent_puts_the_call_back_in_line_for_the_next_agent() {
    let mut w = three_agents();
    let first = w.phone_index("1001");
    w.phones[first].policy = Policy::Reject(486);
    w.customer_calls("600");
    w.run_until(5 * SECOND, "another agent answers", |w| {
        w.phones[2..].iter().any(|p| p.talking().is_some())
    });
    assert_eq!(w.phones[first].incoming[0].state, InState::Rejected);
    w.assert_settles();
    let r = &w.records[0];
    assert_eq!(r.attempts[0].result, RingResult::Refused(486));
    assert_eq!(r.attempts[1].result, RingResult::Answered);
}

#[test]
fn every_phone_of_an_agent_rings_the_first_answer_wins_and_a_late_answer_gets_ack_and_bye() {
    let mut w = World::new(harness::config(), &["1001"]);
    // A second and a third phone for 1001.
    let b = w.add_phone("1001", 5);
    let c = w.add_phone("1001", 6);
    w.register(b);
    w.register(c);
    w.run_for(SECOND);
    let a = 1;
    w.phones[a].policy = Policy::Answer(Duration::from_millis(800));
    w.phones[b].policy = Policy::Answer(Duration::from_millis(800));
    w.phones[c].policy = Policy::Ignore;
    w.customer_calls("600");
    w.run_until(5 * SECOND, "a phone answers", |w| {
        w.phones[1..].iter().any(|p| p.talking().is_some())
    });
    w.run_for(2 * SECOND);
    // All three rang; exactly one talks; the one that answered too late got ACK then BYE;
    // the one still ringing got CANCEL.
    for p in [a, b, c] {
        assert_eq!(w.phones[p].incoming.len(), 1, "phone {p} rang");
    }
    let talking: Vec<usize> = [a, b, c]
        .into_iter()
        .filter(|&p| w.phones[p].talking().is_some())
        .collect();
    assert_eq!(talking.len(), 1, "one phone talks");
    let loser = if talking[0] == a { b } else { a };
    assert_eq!(
        w.phones[loser].incoming[0].state,
        InState::Ended,
        "the late 2xx was hung up"
    );
    assert_eq!(w.phones[c].incoming[0].state, InState::Cancelled);
    w.assert_settles();
}

#[test]
fn hold_plays_music_to_the_caller_and_resume_reconnects_the_legs() {
    let mut cfg = harness::config();
    let music = Prompt::tone("music", 440.0, Duration::from_millis(500), 4000);
    cfg.queues[0].music = Some(music);
    let mut w = World::new(cfg, &["1001"]);
    w.customer_calls("600");
    w.run_until(5 * SECOND, "the agent answers", |w| {
        w.phones[1].talking().is_some()
    });
    w.run_for(SECOND);
    let hold = w.phones[1].sdp().replace("a=sendrecv", "a=sendonly");
    let hold = if hold.contains("a=sendonly") {
        hold
    } else {
        format!("{hold}a=sendonly\r\n")
    };
    let now = w.now;
    w.phones[1].reinvite_incoming(now, 0, hold);
    w.run_for(SECOND);
    assert!(w.phones[1]
        .in_dialog_answers
        .contains(&(pbx::sip::message::Method::Invite, 200)));
    let (_, s) = only_session(&w);
    assert!(!s.bridged, "on hold the legs are apart");
    assert_eq!(
        s.playing[0].as_ref().and_then(|p| p.1.clone()).as_deref(),
        Some("music"),
        "the caller hears music"
    );
    let resume = w.phones[1].sdp();
    let now = w.now;
    w.phones[1].reinvite_incoming(now, 0, resume);
    w.run_for(SECOND);
    let (_, s) = only_session(&w);
    assert!(s.bridged, "resumed");
    assert_eq!(s.playing[0], None);
    w.assert_settles();
    // Held from the hold re-INVITE to the resume one: a second and the network's delays.
    let hold = w.records[0].hold;
    assert!(
        hold >= SECOND && hold < SECOND + Duration::from_millis(50),
        "{hold:?}"
    );
}

#[test]
fn an_offer_without_a_common_codec_gets_488_and_opens_nothing() {
    let mut w = three_agents();
    let g722 = "v=0\r\no=- 1 1 IN IP4 10.0.0.5\r\ns=-\r\nc=IN IP4 10.0.0.5\r\nt=0 0\r\n\
                m=audio 40000 RTP/AVP 9\r\na=rtpmap:9 G722/8000\r\n";
    let now = w.now;
    let call = w.carrier().dial_with(now, "600", g722);
    w.run_for(SECOND);
    assert_eq!(w.carrier().outgoing[call].state, OutState::Failed(488));
    assert_eq!(w.media.opened, 0);
    assert_eq!(w.waiting(), 0);
    w.assert_settles();
}

#[test]
fn a_delayed_offer_is_answered_with_our_offer_and_the_ack_settles_the_codec() {
    let mut w = three_agents();
    let now = w.now;
    let call = w.carrier().dial_with(now, "600", "");
    w.run_until(5 * SECOND, "an agent answers", |w| {
        w.phones[1..].iter().any(|p| p.talking().is_some())
    });
    let answer = String::from_utf8_lossy(&w.carrier().outgoing[call].answer).into_owned();
    assert!(
        answer.contains("m=audio"),
        "our 200 carried an offer: {answer}"
    );
    let (_, s) = only_session(&w);
    assert_eq!(
        s.remote[0],
        Some(addr("10.0.0.5:40000")),
        "address from the ACK"
    );
    w.assert_settles();
}

#[test]
fn numbers_nobody_serves_and_callers_without_credentials_are_refused() {
    let mut w = three_agents();
    let now = w.now;
    // The carrier may call 600 and 601 without credentials; 601 is no queue. Any other
    // number from its address is challenged like any stranger's call.
    let a = w.carrier().dial(now, "601");
    let b = w.carrier().dial(now, "799");
    // An address that is neither the carrier nor a registered phone: challenged.
    let stranger = w.add_phone_at("9999", addr("192.0.2.9:5060"));
    let c = w.phones[stranger].dial(now, "600");
    w.run_for(2 * SECOND);
    assert_eq!(w.carrier().outgoing[a].state, OutState::Failed(404));
    assert_eq!(w.carrier().outgoing[b].state, OutState::Failed(407));
    assert!(
        matches!(w.phones[stranger].outgoing[c].state, OutState::Failed(s) if s == 403 || s == 407),
        "{:?}",
        w.phones[stranger].outgoing[c].state
    );
    assert_eq!(w.media.opened, 0);
    w.assert_settles();
}

#[test]
fn no_free_ports_is_503_with_retry_after_and_nothing_is_queued() {
    let mut w = three_agents();
    w.media.refuse_opens = 1;
    let call = w.customer_calls("600");
    w.run_for(SECOND);
    assert_eq!(w.carrier().outgoing[call].state, OutState::Failed(503));
    assert_eq!(w.waiting(), 0);
    // The next caller is served.
    let next = w.customer_calls("600");
    w.run_until(5 * SECOND, "an agent answers", |w| {
        w.phones[1..].iter().any(|p| p.talking().is_some())
    });
    assert_eq!(w.carrier().outgoing[next].state, OutState::Up);
    w.assert_settles();
}

#[test]
fn a_silent_leg_ends_the_call_with_a_bye_to_both_sides() {
    let mut w = three_agents();
    let call = w.customer_calls("600");
    w.run_until(5 * SECOND, "an agent answers", |w| {
        w.phones[1..].iter().any(|p| p.talking().is_some())
    });
    let agent = w.phones.iter().position(|p| p.talking().is_some()).unwrap();
    let (id, _) = only_session(&w);
    w.media_event(id, MediaEventKind::Timeout { leg: Leg::Caller });
    w.run_for(SECOND);
    assert_eq!(w.carrier().outgoing[call].state, OutState::Ended);
    assert_eq!(w.phones[agent].incoming[0].state, InState::Ended);
    w.assert_settles();
}

#[test]
fn feature_codes_log_an_agent_out_and_in_with_a_tone() {
    let mut w = three_agents();
    let p = w.phone_index("1001");
    let now = w.now;
    let call = w.phones[p].dial(now, "*72");
    w.run_for(SECOND);
    assert_eq!(w.phones[p].outgoing[call].state, OutState::Up, "answered");
    assert_eq!(w.agent_state("1001"), Some(AgentState::LoggedOut));
    let (id, s) = only_session(&w);
    assert_eq!(
        s.playing[0].as_ref().map(|p| p.0.clone()),
        Some(vec!["silence".to_owned(), "double-beep".to_owned()])
    );
    // The tone ends: the server hangs up.
    w.media_event(id, MediaEventKind::PlaybackDone { leg: Leg::Caller });
    w.run_for(SECOND);
    assert_eq!(w.phones[p].outgoing[call].state, OutState::Ended);
    let now = w.now;
    let again = w.phones[p].dial(now, "*71");
    w.run_for(SECOND);
    let (id, _) = only_session(&w);
    w.media_event(id, MediaEventKind::PlaybackDone { leg: Leg::Caller });
    w.run_for(SECOND);
    assert_eq!(w.phones[p].outgoing[again].state, OutState::Ended);
    assert_eq!(w.agent_state("1001"), Some(AgentState::Ready));
    w.assert_settles();
    assert!(w.records.iter().all(|r| r.outcome == Outcome::FeatureCode));
    assert_eq!(w.records[0].source, "user:1001");
}

#[test]
fn an_extension_call_rings_the_user_and_keeps_both_agents_out_of_the_queue() {
    let mut w = three_agents();
    let from = w.phone_index("1001");
    let to = w.phone_index("1002");
    let now = w.now;
    let call = w.phones[from].dial(now, "1002");
    w.run_until(5 * SECOND, "1002 answers", |w| {
        w.phones[to].talking().is_some()
    });
    w.run_for(SECOND);
    assert_eq!(w.phones[from].outgoing[call].state, OutState::Up);
    for u in ["1001", "1002"] {
        match w.agent_state(u) {
            Some(AgentState::NotReady(r)) => assert_eq!(r.as_str(), "in-use", "{u}"),
            other => panic!("{u} is {other:?}"),
        }
    }
    // A queue call goes to 1003, the only free agent.
    w.customer_calls("600");
    w.run_until(5 * SECOND, "1003 answers", |w| {
        w.phones[w.phone_index("1003")].talking().is_some()
    });
    w.assert_settles();
}

#[test]
fn a_reload_mid_call_keeps_the_call_and_a_queue_it_adds_takes_calls_once_the_acd_has_it() {
    let mut w = three_agents();
    let call = w.customer_calls("600");
    w.run_until(5 * SECOND, "an agent answers", |w| {
        w.phones[1..].iter().any(|p| p.talking().is_some())
    });
    let mut cfg = harness::config();
    cfg.queues.push(queue("sales", "601"));
    for a in &mut cfg.agents {
        a.acd.queues.push(pbx::acd::QueueMembership {
            queue: "sales".into(),
            priority: 0,
        });
    }
    w.reload(cfg);
    assert!(
        w.acd_reports.iter().any(
            |r| matches!(r, pbx::acd_task::AcdReport::QueueAdded { name, .. } if name == "sales")
        ),
        "the ACD answered with the new queue's id"
    );
    w.run_for(SECOND);
    assert_eq!(
        w.carrier().outgoing[call].state,
        OutState::Up,
        "the call goes on"
    );
    let sales = w.customer_calls("601");
    w.run_until(5 * SECOND, "another agent answers the sales call", |w| {
        w.phones[1..]
            .iter()
            .filter(|p| p.talking().is_some())
            .count()
            == 2
    });
    assert_eq!(w.carrier().outgoing[sales].state, OutState::Up);
    w.assert_settles();
}

#[test]
fn an_agent_a_reload_adds_is_logged_in_and_takes_a_waiting_call() {
    let mut cfg = harness::config();
    cfg.agents.truncate(1);
    let mut w = World::new(cfg, &["1001", "1004"]);
    w.phones[1].policy = Policy::Ignore;
    w.customer_calls("600");
    w.run_for(2 * SECOND);
    assert_eq!(w.agent_state("1004"), None);
    let mut cfg = harness::config();
    cfg.agents.truncate(1);
    cfg.agents.push(harness::agent("1004", &["support"]));
    w.reload(cfg);
    w.run_until(30 * SECOND, "1004 answers", |w| {
        w.phones[w.phone_index("1004")].talking().is_some()
    });
    w.assert_settles();
}

#[test]
fn an_agent_whose_phone_unregisters_is_parked_and_comes_back_when_it_registers() {
    let mut w = three_agents();
    let p = w.phone_index("1001");
    w.unregister(p);
    w.run_for(SECOND);
    match w.agent_state("1001") {
        Some(AgentState::NotReady(r)) => assert_eq!(r.as_str(), "no-phone"),
        other => panic!("1001 is {other:?}"),
    }
    w.register(p);
    w.run_for(SECOND);
    assert_eq!(w.agent_state("1001"), Some(AgentState::Ready));
    w.assert_settles();
}

#[test]
fn session_refreshes_keep_the_call_up_and_change_nothing() {
    let mut w = World::new(harness::config(), &["1001"]);
    let call = w.customer_calls("600");
    w.run_until(5 * SECOND, "the agent answers", |w| {
        w.phones[1].talking().is_some()
    });
    w.run_for(SECOND);
    let (_, before) = only_session(&w);
    // Every 10 minutes of an hour-long call: an UPDATE without SDP, then a re-INVITE with
    // the same offer (the two ways phones refresh a session).
    for _ in 0..6 {
        w.run_for(Duration::from_secs(600));
        let now = w.now;
        w.phones[1].refresh_incoming(now, 0);
        w.run_for(SECOND);
        let same = w.phones[1].sdp();
        let now = w.now;
        w.phones[1].reinvite_incoming(now, 0, same);
        w.run_for(SECOND);
    }
    let answers = &w.phones[1].in_dialog_answers;
    assert_eq!(answers.len(), 12, "{answers:?}");
    assert!(answers.iter().all(|(_, s)| *s == 200), "{answers:?}");
    let (_, after) = only_session(&w);
    assert!(after.bridged);
    assert_eq!(after.remote, before.remote);
    assert_eq!(w.carrier().outgoing[call].state, OutState::Up);
    assert_eq!(w.phones[1].talking(), Some(0));
    w.assert_settles();
}

/// The harness's wall clock starts at 2027-01-15 08:00 UTC, a Friday.
fn hours(open: &str, closed: pbx::Closed) -> pbx::Hours {
    let day = pbx::schedule::parse_hours(open).unwrap();
    pbx::Hours {
        schedule: std::sync::Arc::new(
            pbx::schedule::Schedule::new("UTC", std::array::from_fn(|_| day.clone()), []).unwrap(),
        ),
        closed,
    }
}

#[test]
fn a_closed_queue_plays_its_announcement_and_hangs_up_then_opens_on_time() {
    let mut cfg = harness::config();
    // Opens at 08:01, a minute after the world starts.
    cfg.queues[0].hours = Some(hours(
        "08:01-18:00",
        pbx::Closed::Announcement(Prompt::tone("closed", 440.0, SECOND, 1000)),
    ));
    let mut w = World::new(cfg, &["1001", "1002", "1003"]);
    let call = w.customer_calls("600");
    w.run_for(SECOND);
    assert_eq!(w.carrier().outgoing[call].state, OutState::Up, "answered");
    let (id, s) = only_session(&w);
    assert_eq!(
        s.playing[0].as_ref().map(|p| p.0.clone()),
        Some(vec!["silence".to_owned(), "closed".to_owned()])
    );
    assert_eq!(
        w.phones[1..].iter().map(|p| p.ringing()).sum::<usize>(),
        0,
        "no agent rings"
    );
    w.media_event(id, MediaEventKind::PlaybackDone { leg: Leg::Caller });
    w.run_for(SECOND);
    assert_eq!(w.carrier().outgoing[call].state, OutState::Ended, "hung up");
    let r = &w.records[0];
    assert_eq!(
        (r.outcome, r.hung_up_by),
        (Outcome::Closed, HungUpBy::System)
    );
    assert_eq!(r.queue, None);
    assert!(
        !w.queue_log.iter().any(|l| l.contains("EnterQueue")),
        "{:?}",
        w.queue_log
    );
    // A minute later the queue is open: the next caller reaches an agent.
    w.run_for(60 * SECOND);
    let next = w.customer_calls("600");
    w.run_for(3 * SECOND);
    assert_eq!(w.carrier().outgoing[next].state, OutState::Up);
    let now = w.now;
    w.carrier().hang_up_outgoing(now, next);
    w.run_for(SECOND);
    assert_eq!(w.records[1].outcome, Outcome::Answered, "an agent took it");
    assert_eq!(w.records[1].queue.as_deref(), Some("support"));
    w.assert_settles();
}

#[test]
fn a_closed_queue_sends_callers_to_another_queue_or_refuses_them() {
    let mut cfg = harness::config();
    cfg.queues[0].hours = Some(hours("18:00-20:00", pbx::Closed::Queue("night".into())));
    let mut night = queue("night", "601");
    night.hours = Some(hours("00:00-24:00", pbx::Closed::Refuse));
    cfg.queues.push(night);
    let mut w = World::new(cfg.clone(), &["1001", "1002", "1003"]);
    let call = w.customer_calls("600");
    w.run_for(3 * SECOND);
    assert_eq!(
        w.carrier().outgoing[call].state,
        OutState::Up,
        "waits in night"
    );
    let now = w.now;
    w.carrier().hang_up_outgoing(now, call);
    w.run_for(SECOND);
    assert_eq!(w.records[0].queue.as_deref(), Some("night"));
    assert_eq!(w.records[0].outcome, Outcome::Abandoned);
    w.assert_settles();

    // Both closed: 480, and no call record (nothing was answered).
    cfg.queues[1].hours = Some(hours("18:00-20:00", pbx::Closed::Refuse));
    let mut w = World::new(cfg, &["1001"]);
    let call = w.customer_calls("600");
    w.run_for(SECOND);
    assert_eq!(w.carrier().outgoing[call].state, OutState::Failed(480));
    w.assert_settles();
}

#[test]
fn a_browser_is_offered_webrtc_and_the_next_agent_on_a_desk_phone_gets_a_plain_leg() {
    let mut cfg = harness::config();
    cfg.webrtc_fingerprint = Some(["AB"; 32].join(":"));
    let mut w = World::new(cfg, &["1001", "1002"]);
    // Agent 1001 also has the agent page open: a browser over WebSocket. Neither of 1001's
    // phones takes the call, so it goes to 1002's desk phone.
    let browser = w.add_phone("1001", 7);
    w.phones[browser].transport = pbx::sip::Transport::Ws;
    w.register(browser);
    w.run_for(SECOND);
    let (desk1, desk2) = (w.phone_index("1001"), w.phone_index("1002"));
    w.phones[browser].policy = Policy::Reject(480);
    w.phones[desk1].policy = Policy::Reject(486);
    w.phones[desk2].policy = Policy::Answer(Duration::from_millis(800));
    w.customer_calls("600");
    w.run_until(10 * SECOND, "1002 answers", |w| {
        w.phones[desk2].talking().is_some()
    });
    w.run_for(SECOND);
    let offer =
        |p: usize| String::from_utf8_lossy(&w.phones[p].incoming[0].invite.body).into_owned();
    let (to_browser, to_desk) = (offer(browser), offer(desk2));
    for needle in [
        "UDP/TLS/RTP/SAVPF",
        "a=ice-lite",
        "a=setup:actpass",
        "a=rtcp-mux",
        "a=fingerprint:sha-256 AB:AB",
    ] {
        assert!(to_browser.contains(needle), "{needle} in\n{to_browser}");
    }
    assert!(
        to_desk.contains("RTP/AVP") && !to_desk.contains("SAVP") && !to_desk.contains("ice-"),
        "{to_desk}"
    );
    // The relay's agent leg is what answered: plain RTP, nothing of the browser's (its ICE
    // credentials would leave the desk phone's RTP dropped and the leg silent).
    let (_, s) = only_session(&w);
    assert_eq!(s.webrtc[1], None, "{s:?}");
    assert_eq!(s.sdes[1], None, "{s:?}");
    let now = w.now;
    w.carrier().hang_up_outgoing(now, 0);
    w.run_for(2 * SECOND);
    w.assert_settles();
}
