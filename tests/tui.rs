//! The agent's terminal UI as an agent uses it: the softphone's console (the screen's model,
//! a real phone registered as agent 1001, the agent API logged in as a web login) drawn on
//! ratatui's test backend at 80×24; a headless caller dials the support queue; the test reads
//! the screen, presses keys (answer, hold, resume, hang up, the disposition code, pause and
//! ready) and waits for what should show. The call's record must end up with the disposition
//! code and the hold time.

mod common;

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{demo_password, Server, ServerConfig};
use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use ratatui::backend::TestBackend;
use ratatui::Terminal;
use softphone::audio::Source;
use softphone::phone::{run, Options};
use softphone::station::StationConfig;
use softphone::tui::console::{ApiLogin, Console, ConsoleConfig};

const PASSWORD: &str = "agent-ada-password";

/// An Argon2id hash of `password`, from `switchboard passwd`.
fn password_hash(password: &str) -> String {
    let mut child = Command::new(common::switchboard_bin())
        .arg("passwd")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("switchboard passwd");
    writeln!(child.stdin.take().expect("stdin"), "{password}").expect("the password");
    let out = child.wait_with_output().expect("switchboard passwd");
    assert!(out.status.success(), "switchboard passwd failed");
    String::from_utf8(out.stdout)
        .expect("UTF-8")
        .trim()
        .to_owned()
}

/// The console on an 80×24 test screen.
struct Screen {
    console: Console,
    terminal: Terminal<TestBackend>,
}

impl Screen {
    /// What the screen shows now.
    fn text(&mut self) -> String {
        let now = Instant::now();
        let app = &self.console.app;
        self.terminal
            .draw(|f| app.draw(f, now))
            .expect("draw on the test backend");
        self.terminal
            .backend()
            .buffer()
            .content()
            .chunks(80)
            .map(|row| row.iter().map(|c| c.symbol()).collect::<String>())
            .collect::<Vec<_>>()
            .join("\n")
    }

    fn press(&mut self, code: KeyCode) {
        assert!(
            self.console
                .turn(Some(KeyEvent::new(code, KeyModifiers::NONE))),
            "the key made the console quit"
        );
    }

    fn type_text(&mut self, text: &str) {
        for c in text.chars() {
            self.press(KeyCode::Char(c));
        }
    }

    /// Run the console until the screen satisfies `pred` (up to `within`); the screen.
    fn wait_for(
        &mut self,
        server: &Server,
        what: &str,
        within: Duration,
        pred: impl Fn(&str) -> bool,
    ) -> String {
        let deadline = Instant::now() + within;
        loop {
            // Each turn waits a few milliseconds for SIP; look at the screen between turns.
            for _ in 0..5 {
                assert!(self.console.turn(None), "the console quit");
            }
            let screen = self.text();
            if pred(&screen) {
                return screen;
            }
            assert!(
                Instant::now() < deadline,
                "the screen did not show {what} within {within:?}:\n{screen}\n\n\
                 server log:\n{}",
                server.log()
            );
        }
    }
}

#[test]
fn an_agent_answers_holds_hangs_up_and_gives_a_disposition_in_the_terminal_ui() {
    let http_port = common::free_port();
    let hash = password_hash(PASSWORD);
    let server = Server::start(&ServerConfig {
        extra_toml: format!("[http]\nbind = \"127.0.0.1:{http_port}\"\n"),
        users_extra: format!(
            "\n[logins.ada]\npassword_hash = \"{hash}\"\nroles = [\"agent\"]\nagent = \"1001\"\n"
        ),
        ..ServerConfig::support_desk("")
    });
    let console = Console::open(&ConsoleConfig {
        station: StationConfig {
            server: server.udp,
            tcp: false,
            local: [127, 0, 0, 1].into(),
            user: "1001".into(),
            password: demo_password(1001),
            domain: "switchboard".into(),
            expires: 300,
            keepalive: None,
            source: Source::Tone(1000.0),
            playout: None,
            sound_card: false,
        },
        api: Some(ApiLogin {
            url: format!("http://127.0.0.1:{http_port}"),
            login: "ada".into(),
            password: PASSWORD.into(),
        }),
    })
    .expect("the console opens");
    let mut screen = Screen {
        console,
        terminal: Terminal::new(TestBackend::new(80, 24)).expect("a test terminal"),
    };
    let ten = Duration::from_secs(10);

    screen.wait_for(&server, "registered and logged in", ten, |s| {
        s.contains("1001@") && s.contains("SIP registered") && s.contains("web: ada")
    });
    // Before anything is asked, the screen shows the state the server has (logged in at
    // start, ready).
    screen.wait_for(&server, "the server's state of the agent", ten, |s| {
        s.contains("Agent 1001  READY")
    });

    // A caller dials the queue and waits for the agent to hang up.
    let caller_opts = Options {
        dial: Some("600".into()),
        source: Source::Tone(440.0),
        timeout: Duration::from_secs(40),
        ..Options::new(server.udp, "1006", &demo_password(1006))
    };
    let caller = std::thread::spawn(move || run(caller_opts));

    let ringing = screen.wait_for(&server, "the incoming call", ten, |s| {
        s.contains("INCOMING CALL") && s.contains("Queue     support")
    });
    assert!(ringing.contains("Caller    1006"), "{ringing}");
    assert!(ringing.contains("Waited    00:0"), "{ringing}");
    assert!(ringing.contains("a answer"), "{ringing}");
    let call_id: u64 = ringing
        .lines()
        .find_map(|l| l.split("Call id").nth(1))
        .and_then(|rest| {
            rest.trim_matches(|c: char| c == ' ' || c == '│')
                .parse()
                .ok()
        })
        .unwrap_or_else(|| panic!("the call's id on screen:\n{ringing}"));

    screen.press(KeyCode::Char('a'));
    let up = screen.wait_for(&server, "the call up with its timer", ten, |s| {
        s.contains("CONNECTED · 00:0") && s.contains("Talking   00:0")
    });
    assert!(up.contains("o hold"), "{up}");
    assert!(up.contains("Agent 1001  READY"), "{up}");

    screen.press(KeyCode::Char('o'));
    screen.wait_for(&server, "ON HOLD", ten, |s| s.contains("ON HOLD"));
    // Long enough on hold for the record to count it in whole seconds.
    let held_at = Instant::now();
    screen.wait_for(&server, "the call on hold for a second", ten, |_| {
        held_at.elapsed() >= Duration::from_millis(1100)
    });
    screen.press(KeyCode::Char('o'));
    screen.wait_for(&server, "the call back from hold", ten, |s| {
        !s.contains("ON HOLD") && s.contains("back from hold")
    });

    // The SIP view shows the INVITE that rang the phone.
    screen.press(KeyCode::Char('s'));
    screen.press(KeyCode::Home);
    let sip = screen.wait_for(&server, "the SIP messages", ten, |s| {
        s.contains("SIP messages")
    });
    assert!(sip.contains("received from 127.0.0.1:"), "{sip}");
    assert!(sip.contains("sent to 127.0.0.1:"), "{sip}");
    assert!(
        sip.contains("REGISTER sip:"),
        "the oldest first after Home: {sip}"
    );
    screen.press(KeyCode::Char('s'));

    screen.press(KeyCode::Char('h'));
    let wrap = screen.wait_for(&server, "the disposition prompt", ten, |s| {
        s.contains(&format!("Disposition code (call {call_id}):"))
    });
    assert!(wrap.contains("WRAP-UP"), "{wrap}");
    assert!(wrap.contains("ended by you after 00:0"), "{wrap}");
    screen.type_text("sale");
    screen.press(KeyCode::Enter);
    let saved = screen.wait_for(&server, "the disposition saved", ten, |s| {
        s.contains(&format!("disposition \"sale\" saved for call {call_id}"))
    });
    assert!(!saved.contains("WRAP-UP"), "{saved}");

    let caller = caller.join().expect("the caller's phone");
    assert_eq!(caller.error, None, "{caller:?}\n{}", server.log());
    assert!(caller.answered, "{caller:?}");
    assert_eq!(caller.hung_up_by, "them");

    // The record says so.
    let db = server.dir().join("data/switchboard.db");
    let mut row = None;
    common::wait_until(ten, "the disposition in the call's record", || {
        row = store::Store::open_read_only(&db)
            .and_then(|s| s.call(call_id))
            .ok()
            .flatten();
        row.as_ref()
            .is_some_and(|r| r.disposition.as_deref() == Some("sale"))
    });
    let row = row.expect("the call's record");
    assert_eq!(row.agent.as_deref(), Some("1001"));
    assert_eq!(row.queue.as_deref(), Some("support"));
    assert!(row.hold_ms >= 1000, "the hold was recorded: {row:?}");

    // Pause with a reason, then ready again, through the API.
    screen.press(KeyCode::Char('p'));
    screen.type_text("lunch");
    screen.press(KeyCode::Enter);
    screen.wait_for(&server, "the agent paused", ten, |s| {
        s.contains("Agent 1001  PAUSED (lunch)")
    });
    screen.press(KeyCode::Char('r'));
    screen.wait_for(&server, "the agent ready", ten, |s| {
        s.contains("Agent 1001  READY") && s.contains("ready for calls")
    });

    // q quits; the phone unregisters.
    assert!(
        !screen
            .console
            .turn(Some(KeyEvent::new(KeyCode::Char('q'), KeyModifiers::NONE))),
        "q quits when no call is on"
    );
    screen.console.close(Duration::from_secs(5));
    assert!(!screen.console.station.phone.registered());
}
