//! IVR menus in virtual time: every path through a menu (a choice into a queue, digits
//! collected into a variable, wrong keys and silence up to the retry limit, sub-menus,
//! repeat, an extension, an announcement), keys by RFC 4733 and by SIP INFO, and menus and
//! queues under business hours across a daylight-saving change.

mod harness;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use harness::{queue, OutState, World};
use pbx::media::prompt::Prompt;
use pbx::media::relay::{Leg, MediaEventKind};
use pbx::record::{HungUpBy, Outcome};
use pbx::{Choice, Menu, MenuHours, MenuKind, PbxConfig, Step};

const SECOND: Duration = Duration::from_secs(1);

fn prompt(name: &str, secs: u64) -> Prompt {
    Prompt::tone(name, 440.0, Duration::from_secs(secs), 1000)
}

fn choices(list: &[(char, Step)]) -> MenuKind {
    MenuKind::Choice(
        list.iter()
            .map(|(k, s)| {
                (
                    *k,
                    Choice {
                        step: s.clone(),
                        set: Vec::new(),
                    },
                )
            })
            .collect::<BTreeMap<_, _>>(),
    )
}

/// A menu with a 3 s prompt named after it, 5 s to answer, 3 tries, then hang up.
fn menu(name: &str, number: Option<&str>, kind: MenuKind) -> Menu {
    Menu {
        name: name.into(),
        number: number.map(str::to_owned),
        prompt: prompt(name, 3),
        kind,
        timeout: 5 * SECOND,
        tries: 3,
        invalid: Some(prompt("invalid", 1)),
        on_fail: Step::HangUp,
        hours: None,
    }
}

/// Queues "support" (600) and "sales" (601); menu "main" at 700: 1 sales, 2 support (and
/// reason = support), 3 the account menu, 4 extension 1003, 9 goodbye, * repeat. The account
/// menu collects 4–8 digits ended by # into "account", then support.
fn config() -> PbxConfig {
    let mut cfg = harness::config();
    cfg.queues.push(queue("sales", "601"));
    cfg.agents[0].acd.queues.push(pbx::acd::QueueMembership {
        queue: "sales".into(),
        priority: 0,
    });
    cfg.trunks[0].numbers.push("700".into());
    let mut main = menu(
        "main",
        Some("700"),
        choices(&[
            ('1', Step::Queue("sales".into())),
            ('2', Step::Queue("support".into())),
            ('3', Step::Menu("account".into())),
            ('4', Step::Extension("1003".into())),
            ('9', Step::Announce(prompt("goodbye", 2))),
            ('*', Step::Repeat),
        ]),
    );
    if let MenuKind::Choice(c) = &mut main.kind {
        c.get_mut(&'2')
            .unwrap()
            .set
            .push(("reason".into(), "support".into()));
    }
    let account = menu(
        "account",
        None,
        MenuKind::Collect {
            variable: "account".into(),
            min_digits: 4,
            max_digits: 8,
            end_key: '#',
            next: Step::Queue("support".into()),
        },
    );
    cfg.menus = vec![Arc::new(main), Arc::new(account)];
    cfg
}

/// What the caller of the only call hears: (prompts, loop).
fn hears(w: &World) -> (Vec<String>, Option<String>) {
    assert_eq!(w.media.open.len(), 1, "{:?}", w.media.open);
    let s = w.media.open.values().next().unwrap();
    s.playing[0].clone().unwrap_or_default()
}

fn session(w: &World) -> u64 {
    *w.media.open.keys().next().expect("a session")
}

fn press(w: &mut World, keys: &str) {
    let id = session(w);
    for k in keys.chars() {
        w.media_event(
            id,
            MediaEventKind::Dtmf {
                leg: Leg::Caller,
                digit: k,
            },
        );
        w.run_for(Duration::from_millis(200));
    }
}

fn names(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| (*s).to_owned()).collect()
}

/// The caller of call `call` talks to an agent within 5 s; hang up and return the record.
fn answered_then_hang_up(w: &mut World, call: usize) -> pbx::record::CallRecord {
    w.run_until(5 * SECOND, "an agent answers", |w| {
        w.phones[1..].iter().any(|p| p.talking().is_some())
    });
    // The agent's phone was told what the caller entered (a screen-pop).
    let agent = w.phones[1..]
        .iter()
        .find(|p| p.talking().is_some())
        .unwrap();
    let entered = agent.incoming[0]
        .invite
        .headers
        .get("X-Switchboard-Entered")
        .map(str::to_owned);
    let now = w.now;
    w.carrier().hang_up_outgoing(now, call);
    w.run_for(SECOND);
    let r = w.records.last().cloned().expect("a record");
    let expected: Vec<String> = r
        .variables
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    assert_eq!(
        entered,
        (!expected.is_empty()).then(|| expected.join(";")),
        "X-Switchboard-Entered"
    );
    r
}

#[test]
fn a_caller_chooses_a_queue_by_key_and_the_choice_goes_into_the_record() {
    let mut w = World::new(config(), &["1001", "1002", "1003"]);
    let call = w.customer_calls("700");
    w.run_for(SECOND);
    assert_eq!(w.carrier().outgoing[call].state, OutState::Up, "answered");
    assert_eq!(hears(&w), (names(&["silence", "main"]), None));
    assert_eq!(w.waiting(), 0, "nobody queued yet");
    assert!(
        w.phones[1..].iter().all(|p| p.ringing() == 0),
        "no agent rings while the caller is in the menu"
    );
    // Ten seconds in the menu, then 2 (a key cuts the prompt short).
    w.run_for(SECOND);
    press(&mut w, "2");
    let r = answered_then_hang_up(&mut w, call);
    assert_eq!(r.outcome, Outcome::Answered);
    assert_eq!(r.queue.as_deref(), Some("support"));
    assert_eq!(r.dialed, "700");
    assert_eq!(r.variables, vec![("reason".into(), "support".into())]);
    assert!(
        r.wait < SECOND,
        "the wait counts from the queue, not the menu: {:?}",
        r.wait
    );
    assert!(r.queued.unwrap().duration_since(r.arrived).unwrap() >= Duration::from_millis(1900));
    w.assert_settles();
}

#[test]
fn key_one_reaches_the_other_queue_and_a_sub_menu_collects_an_account_number() {
    let mut w = World::new(config(), &["1001", "1002", "1003"]);
    let call = w.customer_calls("700");
    w.run_for(SECOND);
    press(&mut w, "1");
    let r = answered_then_hang_up(&mut w, call);
    assert_eq!(r.queue.as_deref(), Some("sales"));
    assert_eq!(r.agent.as_deref(), Some("1001"), "the only sales agent");
    assert!(r.variables.is_empty());

    let call = w.customer_calls("700");
    w.run_for(SECOND);
    press(&mut w, "3");
    assert_eq!(hears(&w), (names(&["silence", "account"]), None));
    press(&mut w, "123456#");
    let r = answered_then_hang_up(&mut w, call);
    assert_eq!(r.queue.as_deref(), Some("support"));
    assert_eq!(r.variables, vec![("account".into(), "123456".into())]);

    // Eight digits end collection without the #.
    let call = w.customer_calls("700");
    w.run_for(SECOND);
    press(&mut w, "312345678");
    let r = answered_then_hang_up(&mut w, call);
    assert_eq!(r.variables, vec![("account".into(), "12345678".into())]);
    w.assert_settles();
}

#[test]
fn keys_by_sip_info_work_like_rfc_4733_events() {
    let mut w = World::new(config(), &["1001", "1002", "1003"]);
    let call = w.customer_calls("700");
    w.run_for(SECOND);
    let now = w.now;
    w.carrier().info_outgoing(
        now,
        call,
        "application/dtmf-relay",
        "Signal=3\r\nDuration=160\r\n",
    );
    w.run_for(SECOND);
    assert_eq!(hears(&w).0, names(&["silence", "account"]));
    for k in ["9", "8", "7", "6"] {
        let now = w.now;
        w.carrier().info_outgoing(now, call, "application/dtmf", k);
        w.run_for(Duration::from_millis(300));
    }
    // "Signal=11" is # in the event numbering some phones use.
    let now = w.now;
    w.carrier()
        .info_outgoing(now, call, "application/dtmf-relay", "Signal= 11\r\n");
    let r = answered_then_hang_up(&mut w, call);
    assert_eq!(r.variables, vec![("account".into(), "9876".into())]);
    w.assert_settles();
}

#[test]
fn wrong_keys_and_silence_replay_the_menu_and_the_last_try_hangs_up() {
    let mut w = World::new(config(), &["1001", "1002", "1003"]);
    let call = w.customer_calls("700");
    w.run_for(SECOND);
    press(&mut w, "7");
    assert_eq!(
        hears(&w),
        (names(&["silence", "invalid", "main"]), None),
        "a wrong key: the invalid prompt, then the menu again"
    );
    // Silence: the prompt (3.2 s) and the timeout (5 s) pass, the menu plays again.
    w.run_for(Duration::from_secs(4));
    assert_eq!(w.carrier().outgoing[call].state, OutState::Up);
    w.run_for(Duration::from_secs(6));
    assert_eq!(hears(&w), (names(&["silence", "main"]), None));
    // That was the third play: its timeout ends the call.
    w.run_for(Duration::from_secs(9));
    assert_eq!(w.carrier().outgoing[call].state, OutState::Ended, "BYE");
    let r = w.records.last().unwrap();
    assert_eq!((r.outcome, r.hung_up_by), (Outcome::Menu, HungUpBy::System));
    assert_eq!(r.queue, None);
    assert_eq!(w.waiting(), 0);
    w.assert_settles();
}

#[test]
fn too_few_digits_are_invalid_and_a_pause_ends_collection() {
    let mut w = World::new(config(), &["1001", "1002", "1003"]);
    let call = w.customer_calls("700");
    w.run_for(SECOND);
    press(&mut w, "312#");
    assert_eq!(
        hears(&w),
        (names(&["silence", "invalid", "account"]), None),
        "two digits are too few"
    );
    // Five digits, then nothing: the timeout after the last digit ends collection.
    press(&mut w, "55555");
    w.run_for(6 * SECOND);
    let r = answered_then_hang_up(&mut w, call);
    assert_eq!(r.variables, vec![("account".into(), "55555".into())]);
    w.assert_settles();
}

#[test]
fn repeat_plays_the_menu_again_and_a_goodbye_choice_plays_then_hangs_up() {
    let mut w = World::new(config(), &["1001", "1002", "1003"]);
    let call = w.customer_calls("700");
    w.run_for(SECOND);
    press(&mut w, "7"); // a wrong key uses a try
    press(&mut w, "*"); // repeat: tries start again
    assert_eq!(hears(&w), (names(&["silence", "main"]), None));
    // Three more silent plays are needed before the menu gives up.
    w.run_for(2 * Duration::from_millis(8200) + SECOND);
    assert_eq!(w.carrier().outgoing[call].state, OutState::Up);
    press(&mut w, "9");
    assert_eq!(hears(&w), (names(&["silence", "goodbye"]), None));
    press(&mut w, "2"); // keys during the goodbye do nothing
    assert_eq!(w.waiting(), 0);
    w.run_for(3 * SECOND);
    assert_eq!(w.carrier().outgoing[call].state, OutState::Ended);
    assert_eq!(w.records.last().unwrap().outcome, Outcome::Menu);
    w.assert_settles();
}

#[test]
fn a_choice_rings_an_extension_with_ringback_and_connects_the_caller() {
    let mut w = World::new(config(), &["1001", "1002", "1003"]);
    let callee = w.phone_index("1003");
    w.phones[callee].policy = harness::Policy::Answer(3 * SECOND);
    let call = w.customer_calls("700");
    w.run_for(SECOND);
    press(&mut w, "4");
    assert_eq!(hears(&w), (Vec::new(), Some("ringback".into())));
    assert_eq!(w.phones[callee].ringing(), 1);
    w.run_until(5 * SECOND, "1003 answers", |w| {
        w.phones[callee].talking().is_some()
    });
    w.run_for(SECOND);
    let s = w.media.open.values().next().unwrap();
    assert!(s.bridged);
    assert_eq!(s.playing[0], None, "ringback stops");
    let now = w.now;
    w.carrier().hang_up_outgoing(now, call);
    w.run_for(SECOND);
    let r = w.records.last().unwrap();
    assert_eq!(r.outcome, Outcome::Answered);
    assert_eq!(r.agent.as_deref(), Some("1003"));
    assert_eq!(r.queue, None);
    w.assert_settles();
}

#[test]
fn a_caller_who_hangs_up_in_the_menu_is_recorded_and_never_queued() {
    let mut w = World::new(config(), &["1001", "1002", "1003"]);
    let call = w.customer_calls("700");
    w.run_for(2 * SECOND);
    let now = w.now;
    w.carrier().hang_up_outgoing(now, call);
    w.run_for(SECOND);
    let r = w.records.last().unwrap();
    assert_eq!(
        (r.outcome, r.hung_up_by),
        (Outcome::Abandoned, HungUpBy::Caller)
    );
    assert_eq!(r.queue, None);
    assert!(!w.queue_log.iter().any(|l| l.contains("EnterQueue")));
    w.assert_settles();
}

#[test]
fn a_delayed_offer_hears_the_menu_once_the_ack_brings_its_answer() {
    let mut w = World::new(config(), &["1001", "1002", "1003"]);
    let now = w.now;
    let call = w.carrier().dial_with(now, "700", "");
    w.run_for(SECOND);
    assert_eq!(w.carrier().outgoing[call].state, OutState::Up);
    assert_eq!(hears(&w).0, names(&["silence", "main"]));
    press(&mut w, "2");
    let r = answered_then_hang_up(&mut w, call);
    assert_eq!(r.queue.as_deref(), Some("support"));
    w.assert_settles();
}

/// Open 08:00–18:00 every day on the Berlin clock.
fn berlin_office() -> Arc<pbx::schedule::Schedule> {
    let day = pbx::schedule::parse_hours("08:00-18:00").unwrap();
    Arc::new(
        pbx::schedule::Schedule::new("Europe/Berlin", std::array::from_fn(|_| day.clone()), [])
            .unwrap(),
    )
}

fn utc(text: &str) -> SystemTime {
    let ts: jiff::Timestamp = text.parse().unwrap();
    SystemTime::UNIX_EPOCH + Duration::from_secs(ts.as_second() as u64)
}

#[test]
fn a_menu_follows_its_hours_across_the_change_to_summer_time() {
    let mut cfg = config();
    let mut main = (*cfg.menus[0]).clone();
    main.hours = Some(MenuHours {
        schedule: berlin_office(),
        closed: Step::Announce(prompt("closed", 2)),
    });
    cfg.menus[0] = Arc::new(main);
    // Saturday 2027-03-27, 06:30 UTC: 07:30 in Berlin (winter time), closed.
    let mut w = World::new_at(cfg, &["1001", "1002", "1003"], utc("2027-03-27T06:30:00Z"));
    let call = w.customer_calls("700");
    w.run_for(SECOND);
    assert_eq!(hears(&w).0, names(&["silence", "closed"]));
    w.run_for(3 * SECOND);
    assert_eq!(w.carrier().outgoing[call].state, OutState::Ended);
    assert_eq!(w.records.last().unwrap().outcome, Outcome::Menu);
    // At 07:10 UTC it is 08:10 in Berlin: open.
    w.run_for(Duration::from_secs(40 * 60));
    let call = w.customer_calls("700");
    w.run_for(SECOND);
    assert_eq!(hears(&w).0, names(&["silence", "main"]));
    let now = w.now;
    w.carrier().hang_up_outgoing(now, call);
    // The clocks went forward overnight: on Sunday 06:30 UTC is 08:30 in Berlin, open
    // (it was closed at the same UTC time the day before).
    w.run_for(Duration::from_secs(23 * 3600 + 20 * 60 - 2));
    let call = w.customer_calls("700");
    w.run_for(SECOND);
    assert_eq!(hears(&w).0, names(&["silence", "main"]));
    let now = w.now;
    w.carrier().hang_up_outgoing(now, call);
    // And 05:59 UTC is 07:59 in Berlin: closed, an hour earlier in UTC than on Saturday.
    w.run_for(Duration::from_secs(23 * 3600 + 29 * 60));
    let call = w.customer_calls("700");
    w.run_for(SECOND);
    assert_eq!(hears(&w).0, names(&["silence", "closed"]));
    w.run_for(3 * SECOND);
    assert_eq!(w.carrier().outgoing[call].state, OutState::Ended);
    w.assert_settles();
}

#[test]
fn a_choice_into_a_closed_queue_plays_its_announcement_without_answering_twice() {
    let mut cfg = config();
    let day = pbx::schedule::parse_hours("00:00-00:01").unwrap();
    cfg.queues[1].hours = Some(pbx::Hours {
        schedule: Arc::new(
            pbx::schedule::Schedule::new("UTC", std::array::from_fn(|_| day.clone()), []).unwrap(),
        ),
        closed: pbx::Closed::Announcement(prompt("sales-closed", 2)),
    });
    let mut w = World::new(cfg, &["1001", "1002", "1003"]);
    let call = w.customer_calls("700");
    w.run_for(SECOND);
    press(&mut w, "1");
    assert_eq!(hears(&w).0, names(&["silence", "sales-closed"]));
    let id = session(&w);
    w.media_event(id, MediaEventKind::PlaybackDone { leg: Leg::Caller });
    w.run_for(SECOND);
    assert_eq!(w.carrier().outgoing[call].state, OutState::Ended);
    assert_eq!(w.records.last().unwrap().outcome, Outcome::Closed);
    w.assert_settles();
}

#[test]
fn closed_menus_that_send_callers_to_each_other_end_the_call_instead_of_looping() {
    let mut cfg = config();
    let never = {
        let none = pbx::schedule::parse_hours("").unwrap();
        Arc::new(
            pbx::schedule::Schedule::new("UTC", std::array::from_fn(|_| none.clone()), []).unwrap(),
        )
    };
    let mut main = (*cfg.menus[0]).clone();
    main.hours = Some(MenuHours {
        schedule: never.clone(),
        closed: Step::Menu("account".into()),
    });
    let mut account = (*cfg.menus[1]).clone();
    account.hours = Some(MenuHours {
        schedule: never,
        closed: Step::Menu("main".into()),
    });
    cfg.menus = vec![Arc::new(main), Arc::new(account)];
    let mut w = World::new(cfg, &["1001", "1002", "1003"]);
    let call = w.customer_calls("700");
    w.run_for(SECOND);
    assert_eq!(w.carrier().outgoing[call].state, OutState::Ended);
    assert_eq!(w.records.last().unwrap().outcome, Outcome::Menu);
    w.assert_settles();
}

#[test]
fn a_reload_that_removes_a_menu_lets_callers_in_it_finish_and_refuses_new_ones() {
    let mut w = World::new(config(), &["1001", "1002", "1003"]);
    let call = w.customer_calls("700");
    w.run_for(SECOND);
    let mut cfg = config();
    cfg.menus.clear();
    w.reload(cfg);
    // The caller's menu is the one they entered.
    press(&mut w, "2");
    let r = answered_then_hang_up(&mut w, call);
    assert_eq!(r.queue.as_deref(), Some("support"));
    let next = w.customer_calls("700");
    w.run_for(SECOND);
    assert_eq!(w.carrier().outgoing[next].state, OutState::Failed(404));
    w.assert_settles();
}

/// Queue support with a post-call survey: keys 1–5, then a thank-you.
fn survey_config() -> PbxConfig {
    let mut cfg = config();
    cfg.queues[0].survey = Some("survey".into());
    cfg.menus.push(Arc::new(menu(
        "survey",
        None,
        MenuKind::Score {
            max: 5,
            next: Step::Announce(prompt("thanks", 1)),
        },
    )));
    cfg
}

/// A customer calls support (600) and talks to an agent; (carrier call, agent phone).
fn talking(w: &mut World) -> (usize, usize) {
    let call = w.customer_calls("600");
    w.run_until(5 * SECOND, "an agent answers", |w| {
        w.phones[1..].iter().any(|p| p.talking().is_some())
    });
    let agent = w.phones.iter().position(|p| p.talking().is_some()).unwrap();
    (call, agent)
}

fn agent_hangs_up(w: &mut World, agent: usize) {
    let now = w.now;
    let i = w.phones[agent].talking().unwrap();
    w.phones[agent].hang_up_incoming(now, i);
    w.run_for(SECOND);
}

#[test]
fn after_the_agent_hangs_up_the_caller_scores_the_call_and_the_agent_is_free_at_once() {
    let mut w = World::new(survey_config(), &["1001", "1002", "1003"]);
    let (call, agent) = talking(&mut w);
    w.run_for(10 * SECOND);
    agent_hangs_up(&mut w, agent);
    assert_eq!(
        w.carrier().outgoing[call].state,
        OutState::Up,
        "caller stays"
    );
    let s = w.media.open.values().next().unwrap();
    assert!(!s.bridged, "the legs are apart");
    assert_eq!(hears(&w), (names(&["silence", "survey"]), None));
    let user = w.phones[agent].user.clone();
    assert_eq!(
        w.agent_state(&user),
        Some(pbx::acd::AgentState::Ready),
        "the agent takes the next call during the survey"
    );
    press(&mut w, "7"); // not a score
    assert_eq!(hears(&w).0, names(&["silence", "invalid", "survey"]));
    press(&mut w, "4");
    assert_eq!(hears(&w).0, names(&["silence", "thanks"]));
    w.run_for(3 * SECOND);
    assert_eq!(w.carrier().outgoing[call].state, OutState::Ended, "BYE");
    let r = w.records.last().unwrap();
    assert_eq!(r.outcome, Outcome::Answered);
    assert_eq!(r.hung_up_by, HungUpBy::Agent);
    assert_eq!(r.reason, "agent hung up");
    assert_eq!(r.queue.as_deref(), Some("support"));
    assert_eq!(r.satisfaction, Some(4));
    assert!(
        r.talk >= 10 * SECOND && r.talk < 11 * SECOND,
        "talk ends with the agent: {:?}",
        r.talk
    );
    assert!(w.queue_log.iter().any(|l| l.contains("CompleteAgent")));
    w.assert_settles();
}

#[test]
fn a_survey_without_an_answer_or_left_early_records_no_score() {
    let mut w = World::new(survey_config(), &["1001", "1002", "1003"]);
    let (call, agent) = talking(&mut w);
    agent_hangs_up(&mut w, agent);
    // Three silent plays of 3.2 s + 5 s: the survey gives up and hangs up.
    w.run_for(Duration::from_secs(26));
    assert_eq!(w.carrier().outgoing[call].state, OutState::Ended);
    let r = w.records.last().unwrap().clone();
    assert_eq!((r.outcome, r.satisfaction), (Outcome::Answered, None));
    assert_eq!(r.hung_up_by, HungUpBy::Agent);

    // The caller hangs up during the survey.
    let (call, agent) = talking(&mut w);
    agent_hangs_up(&mut w, agent);
    let now = w.now;
    w.carrier().hang_up_outgoing(now, call);
    w.run_for(SECOND);
    let r = w.records.last().unwrap();
    assert_eq!((r.outcome, r.satisfaction), (Outcome::Answered, None));
    assert_eq!(
        r.hung_up_by,
        HungUpBy::Agent,
        "the agent ended the conversation"
    );

    // The caller hangs up first: no survey, nothing to answer.
    let (call, _) = talking(&mut w);
    let now = w.now;
    w.carrier().hang_up_outgoing(now, call);
    w.run_for(SECOND);
    let r = w.records.last().unwrap();
    assert_eq!(r.hung_up_by, HungUpBy::Caller);
    assert!(w.media.open.is_empty());
    w.assert_settles();
}
