//! The screen as an agent sees it, on ratatui's test backend at 80×24.

use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime};

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use media::recorder::g711::Law;
use media::sdp::{Direction, Negotiated};
use ratatui::backend::TestBackend;
use ratatui::Terminal;

use super::*;
use crate::api::ApiError;
use crate::ua::Media;

fn app(api: bool) -> App {
    let mut app = App::new(Settings {
        user: "1001".into(),
        server: "127.0.0.1:5060".into(),
        api,
        audio: None,
    });
    app.phone_event(Instant::now(), &PhoneEvent::Registered { expires: 300 });
    if api {
        app.api_reply(&ApiReply::LoggedIn {
            login: "ada".into(),
            agent: Some("1001".into()),
        });
    }
    app
}

/// The screen as text, one line per row, drawn at `now` on `width`×`height`.
fn screen_sized(app: &App, now: Instant, width: u16, height: u16) -> String {
    let mut t = Terminal::new(TestBackend::new(width, height)).unwrap();
    t.draw(|f| app.draw(f, now)).unwrap();
    let buf = t.backend().buffer();
    buf.content()
        .chunks(usize::from(width))
        .map(|row| row.iter().map(|c| c.symbol()).collect::<String>())
        .collect::<Vec<_>>()
        .join("\n")
}

fn screen(app: &App, now: Instant) -> String {
    screen_sized(app, now, 80, 24)
}

fn press(app: &mut App, code: KeyCode) {
    app.key(KeyEvent::new(code, KeyModifiers::NONE));
}

fn typed(app: &mut App, text: &str) {
    for c in text.chars() {
        press(app, KeyCode::Char(c));
    }
}

fn actions(app: &mut App) -> Vec<Action> {
    std::iter::from_fn(|| app.poll_action()).collect()
}

fn caller() -> CallInfo {
    CallInfo {
        call_id: "abc@127.0.0.1".into(),
        remote: "5551234".into(),
        display: Some("Alice Smith".into()),
        queue: Some("support".into()),
        waited_s: Some(75),
        entered: Some("account=1234;lang=en".into()),
        record: Some(17),
        incoming: true,
    }
}

fn media() -> Media {
    Media {
        negotiated: Negotiated {
            index: 0,
            law: Law::Mu,
            pt: 0,
            telephone_event: Some(101),
            remote: Some("127.0.0.1:40000".parse().unwrap()),
            direction: Direction::SendRecv,
            webrtc: false,
            sdes: false,
        },
        sending: true,
    }
}

/// A call from [`caller`] ringing, then answered at `t0`.
fn answered(app: &mut App, t0: Instant) {
    app.phone_event(t0, &PhoneEvent::Incoming(caller()));
    press(app, KeyCode::Char('a'));
    assert_eq!(
        actions(app),
        [Action::Phone(Command::Answer { rtp_port: 0 })]
    );
    app.phone_event(t0, &PhoneEvent::Answered(media()));
}

#[test]
fn an_incoming_call_shows_the_caller_the_queue_and_the_wait() {
    let mut app = app(true);
    let now = Instant::now();
    let idle = screen(&app, now);
    assert!(
        idle.contains("1001@127.0.0.1:5060  SIP registered"),
        "{idle}"
    );
    assert!(idle.contains("Waiting for calls."), "{idle}");
    assert!(idle.contains("web: ada"), "{idle}");

    app.phone_event(now, &PhoneEvent::Incoming(caller()));
    let s = screen(&app, now);
    assert!(s.contains("INCOMING CALL · ringing"), "{s}");
    assert!(s.contains("Caller    Alice Smith <5551234>"), "{s}");
    assert!(s.contains("Queue     support"), "{s}");
    assert!(s.contains("Waited    01:15"), "{s}");
    assert!(s.contains("Entered   account=1234  lang=en"), "{s}");
    assert!(s.contains("Call id   17"), "{s}");
    assert!(s.contains("a answer"), "{s}");
    // The server rings agents who are ready.
    assert!(s.contains("Agent 1001  READY"), "{s}");
    assert_eq!(app.agent_state(), &AgentState::Ready);
}

#[test]
fn answering_starts_the_timer_and_hold_is_shown() {
    let mut app = app(true);
    let t0 = Instant::now();
    answered(&mut app, t0);
    let s = screen(&app, t0 + Duration::from_secs(83));
    assert!(s.contains("CONNECTED · 01:23"), "{s}");
    assert!(s.contains("Talking   01:23"), "{s}");
    assert!(s.contains("Queue     support"), "{s}");
    assert!(!s.contains("ON HOLD"), "{s}");
    assert!(s.contains("o hold"), "{s}");

    press(&mut app, KeyCode::Char('o'));
    assert_eq!(actions(&mut app), [Action::Phone(Command::Hold)]);
    assert!(
        !screen(&app, t0).contains("ON HOLD"),
        "not before the phone confirms"
    );
    app.phone_event(t0, &PhoneEvent::Held(true));
    let s = screen(&app, t0 + Duration::from_secs(90));
    assert!(s.contains("ON HOLD"), "{s}");
    assert!(s.contains("o resume"), "{s}");
    assert!(
        s.contains("CONNECTED · 01:30"),
        "the timer runs on hold: {s}"
    );

    press(&mut app, KeyCode::Char('o'));
    assert_eq!(actions(&mut app), [Action::Phone(Command::Resume)]);
    app.phone_event(t0, &PhoneEvent::Held(false));
    assert!(!screen(&app, t0).contains("ON HOLD"));
}

#[test]
fn hanging_up_asks_for_the_disposition_and_enter_sends_it() {
    let mut app = app(true);
    let t0 = Instant::now();
    answered(&mut app, t0);
    press(&mut app, KeyCode::Char('h'));
    assert_eq!(actions(&mut app), [Action::Phone(Command::Hangup)]);
    app.phone_event(
        t0 + Duration::from_secs(65),
        &PhoneEvent::Ended {
            by_us: true,
            status: 0,
            reason: "hung up".into(),
        },
    );
    let s = screen(&app, t0);
    assert!(s.contains("Disposition code (call 17):"), "{s}");
    assert!(s.contains("WRAP-UP"), "{s}");
    assert!(s.contains("Enter save"), "{s}");
    assert!(s.contains("ended by you after 01:05"), "{s}");
    assert_eq!(app.wrap_up(), Some(17));

    // Keys go to the prompt now, the letters of the commands too.
    typed(&mut app, "salex");
    press(&mut app, KeyCode::Backspace);
    assert!(actions(&mut app).is_empty());
    assert!(screen(&app, t0).contains("Disposition code (call 17): sale"));
    press(&mut app, KeyCode::Enter);
    assert_eq!(
        actions(&mut app),
        [Action::Api(ApiRequest::Disposition {
            call: 17,
            code: "sale".into()
        })]
    );
    assert_eq!(app.prompt(), None);
    assert!(
        screen(&app, t0).contains("WRAP-UP"),
        "until the server says"
    );
    app.api_reply(&ApiReply::Disposition {
        call: 17,
        code: "sale".into(),
    });
    let s = screen(&app, t0);
    assert!(!s.contains("WRAP-UP"), "{s}");
    assert!(s.contains("disposition \"sale\" saved for call 17"), "{s}");
    assert!(s.contains("Agent 1001  READY"), "{s}");
}

#[test]
fn a_refused_disposition_says_why_and_d_tries_again() {
    let mut app = app(true);
    let t0 = Instant::now();
    answered(&mut app, t0);
    app.phone_event(
        t0,
        &PhoneEvent::Ended {
            by_us: false,
            status: 0,
            reason: "BYE".into(),
        },
    );
    typed(&mut app, "sale!");
    press(&mut app, KeyCode::Enter);
    let _ = actions(&mut app);
    app.api_reply(&ApiReply::Failed {
        request: ApiRequest::Disposition {
            call: 17,
            code: "sale!".into(),
        },
        error: ApiError::Refused {
            status: 400,
            message: "code: 1 to 64 letters, digits, spaces, - and _".into(),
        },
    });
    let s = screen(&app, t0);
    assert!(
        s.contains("disposition not saved: code: 1 to 64 letters"),
        "{s}"
    );
    assert!(s.contains("WRAP-UP"), "{s}");
    press(&mut app, KeyCode::Char('d'));
    assert_eq!(
        app.prompt().map(|p| p.kind),
        Some(PromptKind::Disposition { call: 17 })
    );
}

#[test]
fn esc_cancels_every_prompt_without_doing_anything() {
    let mut app = app(true);
    let now = Instant::now();
    press(&mut app, KeyCode::Char('c'));
    typed(&mut app, "1002");
    assert!(screen(&app, now).contains("Call number: 1002"));
    press(&mut app, KeyCode::Esc);
    assert_eq!(app.prompt(), None);

    press(&mut app, KeyCode::Char('p'));
    typed(&mut app, "lunch");
    assert!(screen(&app, now).contains("Pause reason: lunch"));
    press(&mut app, KeyCode::Esc);
    assert_eq!(app.prompt(), None);

    answered(&mut app, now);
    press(&mut app, KeyCode::Char('t'));
    typed(&mut app, "1003");
    assert!(screen(&app, now).contains("Transfer to: 1003"));
    press(&mut app, KeyCode::Esc);
    assert_eq!(app.prompt(), None);
    assert!(actions(&mut app).is_empty());

    app.phone_event(
        now,
        &PhoneEvent::Ended {
            by_us: false,
            status: 0,
            reason: "BYE".into(),
        },
    );
    assert!(app.prompt().is_some());
    press(&mut app, KeyCode::Esc);
    assert_eq!(app.prompt(), None);
    assert_eq!(app.wrap_up(), None, "Esc skips the disposition");
    assert!(actions(&mut app).is_empty());
    let s = screen(&app, now);
    assert!(!s.contains("WRAP-UP"), "{s}");
    assert!(s.contains("no disposition for call 17"), "{s}");
}

#[test]
fn prompts_send_what_was_typed() {
    let mut app = app(true);
    let now = Instant::now();
    // A digit when idle starts a call prompt with it.
    typed(&mut app, "1002");
    press(&mut app, KeyCode::Enter);
    assert_eq!(
        actions(&mut app),
        [Action::Phone(Command::Dial {
            number: "1002".into(),
            rtp_port: 0
        })]
    );
    let s = screen(&app, now);
    assert!(s.contains("CALLING") && s.contains("Number    1002"), "{s}");
    app.phone_event(now, &PhoneEvent::Ringing);
    assert!(screen(&app, now).contains("ringing at the other end"));
    app.phone_event(
        now,
        &PhoneEvent::Ended {
            by_us: false,
            status: 486,
            reason: "Busy Here".into(),
        },
    );
    assert!(screen(&app, now).contains("call failed: 486 Busy Here"));
    assert_eq!(app.prompt(), None, "no disposition for a call placed");

    press(&mut app, KeyCode::Char('p'));
    press(&mut app, KeyCode::Enter);
    assert!(app.prompt().is_some(), "a pause needs a reason");
    assert!(screen(&app, now).contains("a pause needs a reason"));
    typed(&mut app, "lunch");
    press(&mut app, KeyCode::Enter);
    assert_eq!(
        actions(&mut app),
        [Action::Api(ApiRequest::AgentState {
            state: RequestedState::Paused,
            reason: Some("lunch".into())
        })]
    );
    app.api_reply(&ApiReply::AgentState {
        state: RequestedState::Paused,
        reason: Some("lunch".into()),
    });
    assert!(screen(&app, now).contains("Agent 1001  PAUSED (lunch)"));

    press(&mut app, KeyCode::Char('r'));
    press(&mut app, KeyCode::Char('l'));
    assert_eq!(
        actions(&mut app),
        [
            Action::Api(ApiRequest::AgentState {
                state: RequestedState::Ready,
                reason: None
            }),
            Action::Api(ApiRequest::AgentState {
                state: RequestedState::LoggedOut,
                reason: None
            })
        ]
    );
    app.api_reply(&ApiReply::AgentState {
        state: RequestedState::LoggedOut,
        reason: None,
    });
    assert!(screen(&app, now).contains("Agent 1001  LOGGED OUT"));
    app.api_reply(&ApiReply::Failed {
        request: ApiRequest::AgentState {
            state: RequestedState::Ready,
            reason: None,
        },
        error: ApiError::Refused {
            status: 409,
            message: "agent 1001 is on a call".into(),
        },
    });
    assert!(screen(&app, now).contains("state not changed: agent 1001 is on a call (409)"));

    answered(&mut app, now);
    press(&mut app, KeyCode::Char('t'));
    typed(&mut app, "1003");
    press(&mut app, KeyCode::Enter);
    assert_eq!(
        actions(&mut app),
        [Action::Phone(Command::Transfer("1003".into()))]
    );
}

#[test]
fn keys_mute_and_quit_in_a_call() {
    let mut app = app(true);
    let now = Instant::now();
    answered(&mut app, now);
    typed(&mut app, "5#");
    press(&mut app, KeyCode::Char('m'));
    assert_eq!(
        actions(&mut app),
        [
            Action::Digits("5".into()),
            Action::Digits("#".into()),
            Action::Mute(true)
        ]
    );
    let s = screen(&app, now);
    assert!(s.contains("MUTED") && s.contains("Keyed     5#"), "{s}");
    press(&mut app, KeyCode::Char('m'));
    assert_eq!(actions(&mut app), [Action::Mute(false)]);
    assert!(!screen(&app, now).contains("MUTED"));

    press(&mut app, KeyCode::Char('q'));
    assert!(actions(&mut app).is_empty(), "a call is on: asked first");
    assert!(screen(&app, now).contains("press q again"));
    press(&mut app, KeyCode::Char('q'));
    assert_eq!(actions(&mut app), [Action::Quit]);
    app.key(KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL));
    assert_eq!(actions(&mut app), [Action::Quit]);
}

#[test]
fn without_the_api_the_agent_keys_say_so() {
    let mut app = app(false);
    let now = Instant::now();
    for k in ['r', 'p', 'l'] {
        press(&mut app, KeyCode::Char(k));
        assert!(actions(&mut app).is_empty());
        assert_eq!(app.prompt(), None);
        assert!(screen(&app, now).contains("the agent API is not configured"));
    }
    assert!(screen(&app, now).contains("no agent API (--api)"));
    // A call answered here ends without a disposition prompt.
    answered(&mut app, now);
    app.phone_event(
        now,
        &PhoneEvent::Ended {
            by_us: false,
            status: 0,
            reason: "BYE".into(),
        },
    );
    assert_eq!(app.prompt(), None);
    assert!(screen(&app, now).contains("call ended by the other side after 00:00"));
}

#[test]
fn a_call_that_rings_during_wrap_up_closes_the_prompt_and_d_gives_it_later() {
    let mut app = app(true);
    let now = Instant::now();
    answered(&mut app, now);
    app.phone_event(
        now,
        &PhoneEvent::Ended {
            by_us: false,
            status: 0,
            reason: "BYE".into(),
        },
    );
    typed(&mut app, "sal");
    app.phone_event(
        now,
        &PhoneEvent::Incoming(CallInfo {
            record: Some(18),
            ..caller()
        }),
    );
    assert_eq!(app.prompt(), None);
    press(&mut app, KeyCode::Char('a'));
    assert_eq!(
        actions(&mut app),
        [Action::Phone(Command::Answer { rtp_port: 0 })]
    );
    app.phone_event(
        now,
        &PhoneEvent::Ended {
            by_us: false,
            status: 487,
            reason: "cancelled".into(),
        },
    );
    // That one was never answered: d is for call 17, the last one answered, then not.
    assert_eq!(app.prompt(), None);
    press(&mut app, KeyCode::Char('d'));
    assert!(screen(&app, now).contains("no answered call"));
}

#[test]
fn the_sip_view_toggles_and_scrolls() {
    let mut app = app(true);
    let now = Instant::now();
    let peer: SocketAddr = "127.0.0.1:5060".parse().unwrap();
    for n in 1..=6 {
        app.sip_message(TracedMessage {
            at: SystemTime::UNIX_EPOCH + Duration::from_millis(3_723_004 + n),
            sent: n % 2 == 1,
            peer,
            text: format!(
                "REGISTER sip:switchboard SIP/2.0\r\nCSeq: {n} REGISTER\r\nCall-ID: reg-1001\r\n\r\n"
            ),
        });
    }
    assert!(!screen(&app, now).contains("SIP messages"));
    press(&mut app, KeyCode::Char('s'));
    assert!(app.sip_view());
    let s = screen(&app, now);
    assert!(s.contains("SIP messages (6, UTC)"), "{s}");
    assert!(
        s.contains("── 01:02:03.010 received from 127.0.0.1:5060 ──"),
        "{s}"
    );
    assert!(
        s.contains("── 01:02:03.009 sent to 127.0.0.1:5060 ──"),
        "{s}"
    );
    assert!(
        s.contains("CSeq: 6 REGISTER"),
        "the newest at the bottom: {s}"
    );
    assert!(!s.contains("CSeq: 1 REGISTER"), "{s}");
    assert!(s.contains("No call"), "the call in one line: {s}");

    press(&mut app, KeyCode::Home);
    let s = screen(&app, now);
    assert!(s.contains("CSeq: 1 REGISTER"), "{s}");
    assert!(!s.contains("CSeq: 6 REGISTER"), "{s}");
    press(&mut app, KeyCode::End);
    assert!(screen(&app, now).contains("CSeq: 6 REGISTER"));

    // The call panel's keys still work, and the call shows in one line.
    app.phone_event(now, &PhoneEvent::Incoming(caller()));
    let s = screen(&app, now);
    assert!(
        s.contains("Alice Smith <5551234> · support  RINGING"),
        "{s}"
    );
    press(&mut app, KeyCode::Char('s'));
    assert!(!app.sip_view());
    let s = screen(&app, now);
    assert!(
        !s.contains("SIP messages") && s.contains("INCOMING CALL"),
        "{s}"
    );
}

#[test]
fn the_sip_log_is_bounded() {
    let mut app = app(true);
    let peer: SocketAddr = "127.0.0.1:5060".parse().unwrap();
    for n in 0..SIP_LOG + 10 {
        app.sip_message(TracedMessage {
            at: SystemTime::now(),
            sent: true,
            peer,
            text: format!("OPTIONS sip:x SIP/2.0\r\nCSeq: {n} OPTIONS\r\n\r\n"),
        });
    }
    assert_eq!(app.sip.len(), SIP_LOG);
    assert_eq!(app.sip_lines, SIP_LOG * 3);
}

#[test]
fn the_idle_screen_says_what_became_of_the_sound_card() {
    let app = App::new(Settings {
        user: "1001".into(),
        server: "127.0.0.1:5060".into(),
        api: false,
        audio: Some("no sound card (no device): the phone is silent".into()),
    });
    let s = screen(&app, Instant::now());
    assert!(
        s.contains("Audio     no sound card (no device): the phone is silent"),
        "{s}"
    );
    assert!(s.contains("SIP registering…"), "{s}");
}

#[test]
fn every_state_fits_80_by_24_and_a_tiny_terminal_does_not_break_it() {
    let mut app = app(true);
    let t0 = Instant::now();
    let mut screens = vec![screen(&app, t0)];
    app.phone_event(t0, &PhoneEvent::Incoming(caller()));
    screens.push(screen(&app, t0));
    press(&mut app, KeyCode::Char('a'));
    app.phone_event(t0, &PhoneEvent::Answered(media()));
    press(&mut app, KeyCode::Char('m'));
    app.phone_event(t0, &PhoneEvent::Held(true));
    screens.push(screen(&app, t0 + Duration::from_secs(3_700)));
    app.phone_event(
        t0,
        &PhoneEvent::Ended {
            by_us: true,
            status: 0,
            reason: "hung up".into(),
        },
    );
    screens.push(screen(&app, t0));
    for s in &screens {
        let rows: Vec<&str> = s.lines().collect();
        assert_eq!(rows.len(), 24);
        // The key help is whole on the last row.
        let help = rows[23].trim_end();
        assert!(
            help.ends_with("quit") || help.contains("Esc skip"),
            "the help line is cut: {help:?}\n{s}"
        );
    }
    assert!(screens[2].contains("CONNECTED · 61:40"), "{}", screens[2]);
    let _ = screen_sized(&app, t0, 20, 5);
    let _ = screen_sized(&app, t0, 1, 1);
}

#[test]
fn an_attended_transfer_holds_the_caller_consults_and_hands_them_over() {
    let mut app = app(true);
    let t0 = Instant::now();
    answered(&mut app, t0);
    press(&mut app, KeyCode::Char('x'));
    typed(&mut app, "1002");
    press(&mut app, KeyCode::Enter);
    assert_eq!(
        actions(&mut app),
        [Action::Phone(Command::Consult {
            number: "1002".into(),
            rtp_port: 0
        })]
    );
    let s = screen(&app, t0);
    assert!(s.contains("CALLING"), "{s}");
    assert!(
        s.contains("On hold   Alice Smith <5551234> · support"),
        "{s}"
    );
    // The colleague answers: the consultation is up, the caller still held.
    app.phone_event(t0, &PhoneEvent::Answered(media()));
    let s = screen(&app, t0 + Duration::from_secs(3));
    assert!(s.contains("CONNECTED · 00:03"), "{s}");
    assert!(s.contains("x hand the caller over"), "{s}");
    assert!(
        s.lines().last().unwrap().trim_end().ends_with("q quit"),
        "{s}"
    );
    press(&mut app, KeyCode::Char('x'));
    assert_eq!(
        actions(&mut app),
        [Action::Phone(Command::CompleteTransfer)]
    );
    // The server reports it done and hangs up both calls: the consultation quietly, the
    // caller's call as an answered call (wrap-up: the disposition prompt for call 17).
    app.phone_event(t0, &PhoneEvent::Transfer(200));
    app.phone_event(
        t0,
        &PhoneEvent::Ended {
            by_us: false,
            status: 0,
            reason: "the other side hung up".into(),
        },
    );
    assert!(
        app.held_call().is_some(),
        "the caller's call is not over yet"
    );
    app.phone_event(
        t0 + Duration::from_secs(5),
        &PhoneEvent::HeldCallEnded {
            reason: "the other side hung up".into(),
        },
    );
    assert!(app.call().is_none() && app.held_call().is_none());
    assert_eq!(app.wrap_up(), Some(17));
    let s = screen(&app, t0 + Duration::from_secs(5));
    assert!(s.contains("Disposition"), "{s}");
}

#[test]
fn a_consultation_that_ends_leaves_the_caller_held_until_b_takes_them_back() {
    let mut app = app(false);
    let t0 = Instant::now();
    answered(&mut app, t0);
    press(&mut app, KeyCode::Char('x'));
    typed(&mut app, "1002");
    press(&mut app, KeyCode::Enter);
    let _ = actions(&mut app);
    app.phone_event(
        t0,
        &PhoneEvent::Ended {
            by_us: false,
            status: 486,
            reason: "Busy Here".into(),
        },
    );
    let s = screen(&app, t0);
    assert!(s.contains("b takes the caller back"), "{s}");
    assert!(s.contains("On hold   Alice Smith"), "{s}");
    press(&mut app, KeyCode::Char('b'));
    assert_eq!(actions(&mut app), [Action::Phone(Command::Retrieve)]);
    app.phone_event(t0, &PhoneEvent::Retrieved(media()));
    app.phone_event(t0, &PhoneEvent::Held(false));
    let c = app.call().expect("the caller is back");
    assert_eq!(c.info.remote, "5551234");
    assert!(!c.held && app.held_call().is_none());
}

#[test]
fn the_agent_line_follows_the_state_the_server_has() {
    let mut app = app(true);
    let now = Instant::now();
    for (state, reason, shown) in [
        ("not_ready", Some("lunch"), "PAUSED (lunch)"),
        ("wrap_up", None, "WRAP-UP"),
        ("logged_out", None, "LOGGED OUT"),
        ("ready", None, "READY"),
    ] {
        app.api_reply(&ApiReply::State {
            state: state.into(),
            reason: reason.map(str::to_owned),
        });
        let s = screen(&app, now);
        assert!(s.lines().nth(1).unwrap().contains(shown), "{state}: {s}");
    }
}
