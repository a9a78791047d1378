//! Voicemail in virtual time: messages left when an extension does not answer, from a menu,
//! when a queue overflows or is closed; the recording they make; the message-waiting NOTIFYs
//! phones get; and the owner listening, saving and deleting with a PIN.

mod harness;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use harness::{InState, OutState, Policy, World};
use pbx::media::prompt::Prompt;
use pbx::media::relay::{Leg, MediaEventKind};
use pbx::record::Outcome;
use pbx::{Mailbox, Message, PbxConfig, VoicemailPrompts, VoicemailRequest, VoicemailSetup};

const SECOND: Duration = Duration::from_secs(1);

fn p(name: &str) -> Prompt {
    Prompt::tone(name, 440.0, SECOND, 1000)
}

/// Voicemail on *97; mailbox 1003 (PIN 1234) and the support queue's (PIN 4711, on *98,
/// watched by 1001 and 1002); messages of at most 20 s.
fn config() -> PbxConfig {
    let mut cfg = harness::config();
    cfg.voicemail = Some(VoicemailSetup {
        number: "*97".into(),
        max_length: 20 * SECOND,
        prompts: VoicemailPrompts {
            leave: p("leave"),
            recorded: p("recorded"),
            enter_pin: p("enter-pin"),
            wrong_pin: p("wrong-pin"),
            you_have: p("you-have"),
            new_messages: p("new-messages"),
            options: p("options"),
            deleted: p("deleted"),
            saved: p("saved"),
            no_more: p("no-more"),
        },
        mailboxes: vec![
            Mailbox {
                name: "1003".into(),
                pin: "1234".into(),
                notify: vec!["1003".into()],
                access: None,
            },
            Mailbox {
                name: "support".into(),
                pin: "4711".into(),
                notify: vec!["1001".into(), "1002".into()],
                access: Some("*98".into()),
            },
        ],
    });
    cfg.announcements.numbers = (0..=20).map(|n| p(&n.to_string())).collect();
    cfg
}

fn names(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| (*s).to_owned()).collect()
}

/// What the caller of call `id` hears (prompt names).
fn hears(w: &World, id: u64) -> Vec<String> {
    w.media.open[&id].playing[0]
        .clone()
        .map(|p| p.0)
        .unwrap_or_default()
}

fn press(w: &mut World, id: u64, keys: &str) {
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

fn last_session(w: &World) -> u64 {
    *w.media.open.keys().last().expect("a session")
}

fn message(id: u64, mailbox: &str, new: bool) -> Message {
    Message {
        id,
        mailbox: mailbox.into(),
        file: format!("/var/lib/switchboard/recordings/{id}.wav").into(),
        caller: "+4930123".into(),
        received: SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000 + id),
        length: 4 * SECOND,
        new,
    }
}

/// A phone's latest message-waiting NOTIFY body.
fn mwi(w: &mut World, user: &str) -> String {
    w.phone(user).notifies.last().cloned().unwrap_or_default()
}

#[test]
fn an_unanswered_extension_takes_a_message_and_its_phone_lights_up() {
    let mut w = World::new(config(), &["1001", "1002", "1003"]);
    let callee = w.phone_index("1003");
    w.phones[callee].policy = Policy::Ignore;
    let caller = w.phone_index("1001");
    let now = w.now;
    let call = w.phones[caller].dial(now, "1003");
    w.run_for(5 * SECOND);
    assert_eq!(w.phones[callee].ringing(), 1);
    // The extension rings for its 30 s, then voicemail answers.
    w.run_until(30 * SECOND, "voicemail answers", |w| {
        w.phones[caller].outgoing[call].state == OutState::Up
    });
    assert_eq!(w.phones[callee].incoming[0].state, InState::Cancelled);
    let id = last_session(&w);
    assert_eq!(hears(&w, id), names(&["silence", "leave", "beep"]));
    assert!(w.media.recordings.is_empty(), "not recording the greeting");
    // After the greeting and the beep, the caller is recorded.
    w.run_for(2 * SECOND);
    assert_eq!(w.media.recordings, vec![format!("start {id}")]);
    assert!(w.media.open[&id].tap);
    w.run_for(5 * SECOND);
    press(&mut w, id, "#");
    assert_eq!(w.media.recordings.last(), Some(&format!("stop {id}")));
    assert_eq!(hears(&w, id), names(&["recorded"]));
    w.run_for(2 * SECOND);
    assert_eq!(w.phones[caller].outgoing[call].state, OutState::Ended);
    let r = w.records.last().unwrap();
    assert_eq!(r.outcome, Outcome::Voicemail);
    assert!(!r.recorded, "a message is not a call recording");
    // The store took the message: 1003's phone is told.
    w.message_stored(message(1, "1003", true));
    let body = mwi(&mut w, "1003");
    assert!(body.contains("Messages-Waiting: yes\r\n"), "{body}");
    assert!(body.contains("Voice-Message: 1/0 (0/0)"), "{body}");
    assert!(body.contains("Message-Account: sip:*97@"), "{body}");
    assert!(
        !w.phone("1001").notifies.iter().any(|n| n.contains("*97")),
        "only the owner's phone"
    );
    w.assert_settles();
}

#[test]
fn a_message_ends_at_its_maximum_length_or_when_the_caller_hangs_up() {
    let mut w = World::new(config(), &["1001", "1002", "1003"]);
    let callee = w.phone_index("1003");
    w.phones[callee].policy = Policy::Reject(486);
    let caller = w.phone_index("1001");
    let now = w.now;
    let call = w.phones[caller].dial(now, "1003");
    // Busy: voicemail answers at once.
    w.run_for(4 * SECOND);
    let id = last_session(&w);
    assert_eq!(w.media.recordings, vec![format!("start {id}")]);
    w.run_for(20 * SECOND);
    assert_eq!(
        w.media.recordings.last(),
        Some(&format!("stop {id}")),
        "20 s at most"
    );
    w.run_for(2 * SECOND);
    assert_eq!(w.phones[caller].outgoing[call].state, OutState::Ended);

    let now = w.now;
    let call = w.phones[caller].dial(now, "1003");
    w.run_for(10 * SECOND);
    let id = last_session(&w);
    let now = w.now;
    w.phones[caller].hang_up_outgoing(now, call);
    w.run_for(SECOND);
    assert_eq!(w.media.recordings.last(), Some(&format!("stop {id}")));
    assert_eq!(w.records.last().unwrap().outcome, Outcome::Voicemail);
    w.assert_settles();
}

#[test]
fn the_owner_hears_new_messages_first_saves_one_deletes_one_and_the_light_goes_out() {
    let mut w = World::new(config(), &["1001", "1002", "1003"]);
    w.control.load_messages(vec![message(5, "1003", false)]);
    w.message_stored(message(7, "1003", true));
    w.message_stored(message(6, "1003", true));
    assert!(mwi(&mut w, "1003").contains("Voice-Message: 2/1 (0/0)"));
    let now = w.now;
    let owner = w.phone_index("1003");
    let call = w.phones[owner].dial(now, "*97");
    w.run_for(SECOND);
    assert_eq!(w.phones[owner].outgoing[call].state, OutState::Up);
    let id = last_session(&w);
    assert_eq!(hears(&w, id), names(&["silence", "enter-pin"]));
    press(&mut w, id, "9999#");
    assert_eq!(hears(&w, id), names(&["wrong-pin", "enter-pin"]));
    press(&mut w, id, "1234#");
    // Two new messages, the older new one first.
    assert_eq!(
        hears(&w, id),
        names(&[
            "you-have",
            "2",
            "new-messages",
            "silence",
            "message-6",
            "options"
        ])
    );
    press(&mut w, id, "9");
    assert_eq!(
        w.vm_status.last(),
        Some(&VoicemailRequest::Status {
            message: 6,
            deleted: false
        })
    );
    assert_eq!(
        hears(&w, id),
        names(&["saved", "silence", "message-7", "options"])
    );
    press(&mut w, id, "4"); // again
    assert_eq!(hears(&w, id), names(&["silence", "message-7", "options"]));
    press(&mut w, id, "7");
    assert_eq!(
        w.vm_status.last(),
        Some(&VoicemailRequest::Status {
            message: 7,
            deleted: true
        })
    );
    assert!(mwi(&mut w, "1003").contains("Voice-Message: 0/2 (0/0)"));
    assert!(mwi(&mut w, "1003").contains("Messages-Waiting: no"));
    // Then the old one; no key: it stays, and the session ends.
    assert_eq!(
        hears(&w, id),
        names(&["deleted", "silence", "message-5", "options"])
    );
    w.run_for(15 * SECOND);
    assert_eq!(hears(&w, id), names(&["no-more"]));
    w.run_for(2 * SECOND);
    assert_eq!(w.phones[owner].outgoing[call].state, OutState::Ended);
    assert_eq!(w.records.last().unwrap().outcome, Outcome::Mailbox);
    w.assert_settles();
}

#[test]
fn three_wrong_pins_hang_up_and_a_queue_mailbox_opens_from_its_access_number() {
    let mut w = World::new(config(), &["1001", "1002", "1003"]);
    w.message_stored(message(1, "support", true));
    // Both watchers of the support mailbox are told.
    for u in ["1001", "1002"] {
        assert!(mwi(&mut w, u).contains("Voice-Message: 1/0"), "{u}");
        assert!(mwi(&mut w, u).contains("Message-Account: sip:*98@"), "{u}");
    }
    let now = w.now;
    let user = w.phone_index("1002");
    let call = w.phones[user].dial(now, "*98");
    w.run_for(SECOND);
    let id = last_session(&w);
    for _ in 0..3 {
        press(&mut w, id, "1234#");
    }
    assert_eq!(hears(&w, id), names(&["wrong-pin"]));
    w.run_for(3 * SECOND);
    assert_eq!(w.phones[user].outgoing[call].state, OutState::Ended);

    let now = w.now;
    let call = w.phones[user].dial(now, "*98");
    w.run_for(SECOND);
    let id = last_session(&w);
    // The PIN also ends after a pause, without #.
    press(&mut w, id, "4711");
    w.run_for(9 * SECOND);
    assert_eq!(
        hears(&w, id),
        names(&[
            "you-have",
            "1",
            "new-messages",
            "silence",
            "message-1",
            "options"
        ])
    );
    press(&mut w, id, "*");
    w.run_for(2 * SECOND);
    assert_eq!(w.phones[user].outgoing[call].state, OutState::Ended);
    // *97 opens only the caller's own mailbox: 1002 has none.
    let now = w.now;
    let call = w.phones[user].dial(now, "*97");
    w.run_for(2 * SECOND);
    assert!(
        matches!(w.phones[user].outgoing[call].state, OutState::Failed(_)),
        "{:?}",
        w.phones[user].outgoing[call].state
    );
    w.assert_settles();
}

#[test]
fn a_phone_that_registers_is_told_of_waiting_messages() {
    let mut w = World::new(config(), &["1001", "1002", "1003"]);
    w.control.load_messages(vec![message(3, "1003", true)]);
    let phone = w.add_phone("1003", 40);
    w.register(phone);
    w.run_for(SECOND);
    let body = w.phones[phone].notifies.last().cloned().unwrap_or_default();
    assert!(body.contains("Voice-Message: 1/0"), "{body:?}");
    w.assert_settles();
}

#[test]
fn a_closed_queue_and_a_queue_that_overflows_send_callers_to_its_mailbox() {
    let mut cfg = config();
    cfg.queues[0].acd.max_wait = Some(10 * SECOND);
    cfg.queues[0].acd.overflow = Some(pbx::acd::OverflowTarget::External(
        "voicemail:support".into(),
    ));
    let night = {
        let none = pbx::schedule::parse_hours("").unwrap();
        Arc::new(
            pbx::schedule::Schedule::new("UTC", std::array::from_fn(|_| none.clone()), []).unwrap(),
        )
    };
    let mut closed = harness::queue("night", "601");
    closed.hours = Some(pbx::Hours {
        schedule: night,
        closed: pbx::Closed::Voicemail("support".into()),
    });
    cfg.queues.push(closed);
    // Nobody is logged in: callers wait in support until its maximum wait.
    for a in &mut cfg.agents {
        a.login_on_start = false;
    }
    let mut w = World::new(cfg, &["1001", "1002", "1003"]);
    let call = w.customer_calls("600");
    w.run_for(5 * SECOND);
    let id = last_session(&w);
    assert_eq!(w.waiting(), 1);
    w.run_for(6 * SECOND);
    assert_eq!(w.waiting(), 0);
    assert_eq!(hears(&w, id), names(&["silence", "leave", "beep"]));
    w.run_for(5 * SECOND);
    let now = w.now;
    w.carrier().hang_up_outgoing(now, call);
    w.run_for(SECOND);
    let r = w.records.last().unwrap();
    assert_eq!(r.outcome, Outcome::Voicemail);
    assert_eq!(r.overflowed_from.as_deref(), Some("support"));

    let call = w.customer_calls("601");
    w.run_for(SECOND);
    let id = last_session(&w);
    assert_eq!(hears(&w, id), names(&["silence", "leave", "beep"]));
    let now = w.now;
    w.carrier().hang_up_outgoing(now, call);
    w.run_for(SECOND);
    assert_eq!(w.records.last().unwrap().outcome, Outcome::Voicemail);
    w.assert_settles();
}

#[test]
fn a_user_whose_phone_is_not_registered_takes_messages() {
    let mut w = World::new(config(), &["1001", "1002"]);
    let caller = w.phone_index("1001");
    let now = w.now;
    let call = w.phones[caller].dial(now, "1003");
    w.run_for(SECOND);
    assert_eq!(w.phones[caller].outgoing[call].state, OutState::Up);
    let id = last_session(&w);
    assert_eq!(hears(&w, id), names(&["silence", "leave", "beep"]));
    // A user without a mailbox and without a phone is still not reachable.
    let now = w.now;
    let other = w.phones[caller].dial(now, "1004");
    w.run_for(SECOND);
    assert!(matches!(
        w.phones[caller].outgoing[other].state,
        OutState::Failed(404 | 480)
    ));
    w.assert_settles();
}

#[test]
fn a_phone_that_subscribes_gets_message_waiting_in_its_subscription_until_it_ends() {
    let mut w = World::new(config(), &["1001", "1002", "1003"]);
    let phone = w.phone_index("1003");
    let before = w.phones[phone].notifies.len();
    let now = w.now;
    w.phones[phone].subscribe(now, 600);
    w.run_for(SECOND);
    let sub = w.phones[phone].sub.as_ref().unwrap();
    assert_eq!(sub.status, Some(200), "challenged, then accepted");
    assert_eq!(sub.notifies.len(), 1, "the state at once");
    assert!(sub.notifies[0].0.starts_with("active;expires="));
    assert!(sub.notifies[0].1.contains("Voice-Message: 0/0"));
    // A message: the subscription is told, not an unsolicited NOTIFY.
    w.message_stored(message(1, "1003", true));
    let sub = w.phones[phone].sub.as_ref().unwrap();
    assert!(sub
        .notifies
        .last()
        .unwrap()
        .1
        .contains("Messages-Waiting: yes"));
    assert_eq!(w.phones[phone].notifies.len(), before);
    // A refresh keeps it; it is told again.
    w.run_for(500 * SECOND);
    let now = w.now;
    w.phones[phone].subscribe(now, 600);
    w.run_for(SECOND);
    assert_eq!(w.phones[phone].sub.as_ref().unwrap().notifies.len(), 3);
    // Without a refresh it runs out: a last NOTIFY says so.
    w.run_for(601 * SECOND);
    let last = w.phones[phone]
        .sub
        .as_ref()
        .unwrap()
        .notifies
        .last()
        .unwrap()
        .clone();
    assert_eq!(last.0, "terminated;reason=timeout", "ran out");
    assert_eq!(w.control.held().subscriptions, 0);

    // Subscribe again, then unsubscribe.
    w.phones[phone].sub = None;
    let now = w.now;
    w.phones[phone].subscribe(now, 600);
    w.run_for(SECOND);
    assert_eq!(w.control.held().subscriptions, 1);
    let now = w.now;
    w.phones[phone].subscribe(now, 0);
    w.run_for(SECOND);
    assert_eq!(w.control.held().subscriptions, 0);
    let last = w.phones[phone]
        .sub
        .as_ref()
        .unwrap()
        .notifies
        .last()
        .unwrap()
        .clone();
    assert_eq!(
        last.0, "terminated",
        "no reason that invites a new subscription"
    );
    w.assert_settles();
}

#[test]
fn a_subscription_without_a_mailbox_is_refused_and_a_forgotten_one_ends() {
    let mut w = World::new(config(), &["1001", "1002", "1003", "1004"]);
    // 1004 watches no mailbox.
    let p4 = w.phone_index("1004");
    let now = w.now;
    w.phones[p4].subscribe(now, 600);
    w.run_for(SECOND);
    assert_eq!(w.phones[p4].sub.as_ref().unwrap().status, Some(404));
    // A phone that answers its NOTIFY with 481 ends the subscription.
    let p3 = w.phone_index("1003");
    let now = w.now;
    w.phones[p3].subscribe(now, 600);
    w.run_for(SECOND);
    assert_eq!(w.control.held().subscriptions, 1);
    w.phones[p3].sub.as_mut().unwrap().forget = true;
    w.message_stored(message(2, "1003", true));
    w.run_for(SECOND);
    assert_eq!(w.control.held().subscriptions, 0);
    w.assert_settles();
}
