//! What callers hear, checked with real softphones on both ends: baresip (Debian's
//! `baresip-core`) as the caller and as the agent, each sending its own tone and recording what
//! it decodes (the `sndfile` module writes exactly what goes to the speaker). The recordings
//! are classified by frequency in 100 ms windows, so a call whose packets all arrive but
//! which the caller's jitter buffer throws away fails here, as it did for real callers.
//!
//! The phones are driven over baresip's `ctrl_tcp` interface (netstring-framed JSON commands
//! and events), so the test waits for "incoming call", "established" and "closed" instead of
//! sleeping.

mod common;

use std::time::{Duration, Instant};

use common::phone::{self, classify, Phone};
use common::{Server, ServerConfig};

/// The tones: what the agent's phone sends, the caller's phone, the greeting and the music.
const AGENT_HZ: f64 = 440.0;
const CALLER_HZ: f64 = 1200.0;
const GREETING_HZ: f64 = 700.0;
const MUSIC_HZ: f64 = 300.0;
/// The IVR menu's prompt.
const MENU_HZ: f64 = 1000.0;
/// The post-call survey's prompt.
const SURVEY_HZ: f64 = 1600.0;

/// Queue `support` on 600 with a 1.5 s greeting and music, answered by agent 1001; 1006
/// calls. Menu 700 plays a 3 s prompt; key 1 leads to the queue.
fn call_center() -> Server {
    let prompts = common::temp_dir("prompts");
    let greeting = prompts.join("greeting.wav");
    let music = prompts.join("music.wav");
    common::write_tone(&greeting, GREETING_HZ, 1.5);
    common::write_tone(&music, MUSIC_HZ, 1.0);
    let menu = prompts.join("menu.wav");
    common::write_tone(&menu, MENU_HZ, 3.0);
    let survey = prompts.join("survey.wav");
    common::write_tone(&survey, SURVEY_HZ, 3.0);
    Server::start(&ServerConfig {
        users: 1001..=1010,
        files: vec![
            (
                "queues.toml".into(),
                format!(
                    "[queues.support]\nnumber = \"600\"\nstrategy = \"ring-all\"\n\
                     ring_timeout = 30\ngreeting = \"{}\"\nmusic = \"{}\"\n\n\
                     [queues.rated]\nnumber = \"602\"\nsurvey = \"rating\"\n",
                    greeting.display(),
                    music.display()
                ),
            ),
            (
                "agents.toml".into(),
                "[agents.1001]\nuser = \"1001\"\nskills = { english = 5 }\n\
                 queues = [\"support\", \"rated\"]\nlogin_on_start = true\n"
                    .into(),
            ),
            (
                "ivr.toml".into(),
                format!(
                    "[menus.main]\nnumber = \"700\"\nprompt = \"{}\"\n\
                     [menus.main.choices]\n1 = \"queue:support\"\n\n\
                     [menus.rating]\nprompt = \"{}\"\nscore = 5\n",
                    menu.display(),
                    survey.display()
                ),
            ),
        ],
        ..ServerConfig::default()
    })
}

fn picture(windows: &[Option<f64>]) -> String {
    windows
        .iter()
        .map(|w| match w {
            Some(f) if *f == AGENT_HZ => 'A',
            Some(f) if *f == GREETING_HZ => 'G',
            Some(f) if *f == MUSIC_HZ => 'M',
            Some(f) if *f == CALLER_HZ => 'C',
            Some(f) if *f == MENU_HZ => 'I',
            Some(f) if *f == SURVEY_HZ => 'S',
            Some(_) => '?',
            None => '.',
        })
        .collect()
}

const TONES: [f64; 6] = [
    AGENT_HZ,
    CALLER_HZ,
    GREETING_HZ,
    MUSIC_HZ,
    MENU_HZ,
    SURVEY_HZ,
];

/// Windows of the agent's tone among the last `n` full windows before the end (the very last
/// one is skipped: the hang-up may cut it).
fn agent_windows_at_end(windows: &[Option<f64>], n: usize) -> usize {
    let end = windows.len().saturating_sub(1);
    windows[end.saturating_sub(n)..end]
        .iter()
        .filter(|w| **w == Some(AGENT_HZ))
        .count()
}

/// One call from 1006 to the queue, answered by 1001 after `answer_after` (0: at once); both
/// talk for `talk`. Returns what the caller heard.
fn call(
    server: &Server,
    caller: &mut Phone,
    agent: &mut Phone,
    answer_after: Duration,
    talk: Duration,
) -> Vec<i16> {
    // While the agent waits, the caller hears the greeting or the music.
    phone::connect(caller, agent, "600", answer_after);
    std::thread::sleep(talk);
    phone::hang_up(caller, agent);
    let _ = server;
    caller.last_heard()
}

/// Real callers heard nothing for the whole call in half of the calls an agent answered at
/// once: the relay switched the caller from its greeting stream to the agent's packets, and
/// baresip's jitter buffer dropped every packet whose sequence number looked old. Every call
/// here must carry the agent's voice, whenever the agent answers (at once, during the
/// greeting, during the music).
#[test]
fn the_caller_hears_the_agent_however_soon_the_agent_answers() {
    let server = call_center();
    let mut agent = Phone::start(&server, 1001, AGENT_HZ);
    let mut caller = Phone::start(&server, 1006, CALLER_HZ);
    let talk = Duration::from_millis(1500);
    let mut failures = Vec::new();
    let delays = [0u64, 0, 0, 0, 60, 150, 400, 800, 1200, 2100];
    for (n, ms) in delays.into_iter().enumerate() {
        let heard = call(
            &server,
            &mut caller,
            &mut agent,
            Duration::from_millis(ms),
            talk,
        );
        let windows = classify(&heard, &TONES);
        let agent_at_end = agent_windows_at_end(&windows, 12);
        eprintln!("call {n} (answer after {ms} ms): {}", picture(&windows));
        // sndfile writes only what was decoded: packets the jitter buffer dropped leave no
        // windows at all, so the agent's tone must also fill the talk time.
        let agent_total = windows.iter().filter(|w| **w == Some(AGENT_HZ)).count();
        if agent_at_end < 10 || agent_total < 12 {
            failures.push(format!(
                "call {n}, answered after {ms} ms: the agent's tone in {agent_at_end} of the last 12 windows: {}",
                picture(&windows)
            ));
        }
        let agent_heard = classify(&agent.last_heard(), &TONES);
        let caller_windows = agent_heard
            .iter()
            .filter(|w| **w == Some(CALLER_HZ))
            .count();
        if caller_windows < 12 {
            failures.push(format!(
                "call {n}: the agent heard the caller in {caller_windows} windows: {}",
                picture(&agent_heard)
            ));
        }
        if ms >= 300 {
            // Answered during the greeting: the caller heard it first.
            assert!(
                windows.contains(&Some(GREETING_HZ)),
                "call {n}: no greeting before the answer: {}",
                picture(&windows)
            );
        }
    }
    assert!(
        failures.is_empty(),
        "calls where the caller did not hear the agent (A = agent, G = greeting, M = music, . = silence):\n{}\n--- caller ---\n{}",
        failures.join("\n"),
        caller.log()
    );
}

/// Hold puts music to the caller and resume brings the agent back, in the same stream.
#[test]
fn the_caller_hears_music_on_hold_and_the_agent_again_after_resume() {
    let server = call_center();
    let mut agent = Phone::start(&server, 1001, AGENT_HZ);
    let mut caller = Phone::start(&server, 1006, CALLER_HZ);
    for round in 0..3 {
        phone::connect(&mut caller, &mut agent, "600", Duration::ZERO);
        std::thread::sleep(Duration::from_millis(1000));
        let holds = server.log().matches("agent hold hold=true").count();
        agent.command("hold", "");
        wait_log(&server, "agent hold hold=true", holds + 1);
        std::thread::sleep(Duration::from_millis(1500));
        let resumes = server.log().matches("agent hold hold=false").count();
        agent.command("resume", "");
        wait_log(&server, "agent hold hold=false", resumes + 1);
        std::thread::sleep(Duration::from_millis(1500));
        phone::hang_up(&mut caller, &mut agent);
        let windows = classify(&caller.last_heard(), &TONES);
        let pic = picture(&windows);
        eprintln!("hold round {round}: {pic}");
        // Agent, then music, then the agent again until the end.
        let first_music = pic
            .find('M')
            .unwrap_or_else(|| panic!("no music on hold: {pic}"));
        assert!(
            pic[..first_music].matches('A').count() >= 8,
            "the agent before the hold: {pic}"
        );
        assert!(
            pic[first_music..].matches('M').count() >= 12,
            "music during the hold: {pic}"
        );
        assert!(
            agent_windows_at_end(&windows, 14) >= 12,
            "the agent after resume: {pic}"
        );
    }
}

/// A caller on a real phone hears the menu, presses 1 on the keypad (baresip sends it as
/// RFC 4733 telephone-events), and hears the prompt stop, the queue's greeting, and then the
/// agent.
#[test]
fn a_caller_hears_the_menu_keys_a_choice_and_hears_the_queue_then_the_agent() {
    let server = call_center();
    let mut agent = Phone::start(&server, 1001, AGENT_HZ);
    let mut caller = Phone::start(&server, 1006, CALLER_HZ);
    caller.drain();
    agent.drain();
    caller.command("dial", "700");
    caller.wait_event("CALL_ESTABLISHED", Duration::from_secs(5));
    // Listen to half of the 3 s prompt, then key 1.
    std::thread::sleep(Duration::from_millis(1500));
    caller.command("sndcode", "1");
    agent.wait_event("CALL_INCOMING", Duration::from_secs(5));
    // The caller hears the greeting while the agent's phone rings.
    std::thread::sleep(Duration::from_millis(1000));
    agent.command("accept", "");
    agent.wait_event("CALL_ESTABLISHED", Duration::from_secs(5));
    std::thread::sleep(Duration::from_millis(1500));
    phone::hang_up(&mut caller, &mut agent);
    let windows = classify(&caller.last_heard(), &TONES);
    let pic = picture(&windows);
    eprintln!("menu call: {pic}");
    let first_greeting = pic
        .find('G')
        .unwrap_or_else(|| panic!("no greeting after the key: {pic}"));
    assert!(
        pic[..first_greeting].matches('I').count() >= 10,
        "the menu prompt before the key: {pic}"
    );
    assert!(
        pic[..first_greeting].matches('I').count() <= 22,
        "the prompt stopped at the key instead of playing to its end: {pic}"
    );
    assert!(
        !pic[first_greeting..].contains('I'),
        "the menu again after the key: {pic}"
    );
    assert!(
        agent_windows_at_end(&windows, 12) >= 10,
        "the agent at the end: {pic}"
    );
    let log = server.log();
    assert!(log.contains("menu menu=\"main\""), "{log}");
}

/// After the agent hangs up, the caller (still on the line) hears the survey, keys 4 on the
/// keypad, and is hung up on; the score is in the call record.
#[test]
fn the_caller_hears_the_survey_after_the_agent_hangs_up_and_their_key_is_the_score() {
    let server = call_center();
    let mut agent = Phone::start(&server, 1001, AGENT_HZ);
    let mut caller = Phone::start(&server, 1006, CALLER_HZ);
    phone::connect(&mut caller, &mut agent, "602", Duration::ZERO);
    std::thread::sleep(Duration::from_millis(1500));
    agent.command("hangup", "");
    agent.wait_event("CALL_CLOSED", Duration::from_secs(5));
    // Half of the 3 s survey prompt, then 4.
    std::thread::sleep(Duration::from_millis(1700));
    caller.command("sndcode", "4");
    caller.wait_event("CALL_CLOSED", Duration::from_secs(10));
    let windows = classify(&caller.last_heard(), &TONES);
    let pic = picture(&windows);
    eprintln!("survey call: {pic}");
    let first_survey = pic
        .find('S')
        .unwrap_or_else(|| panic!("no survey after the agent: {pic}"));
    assert!(
        pic[..first_survey].matches('A').count() >= 10,
        "the agent before the survey: {pic}"
    );
    assert!(
        pic[first_survey..].matches('S').count() >= 8,
        "the survey prompt: {pic}"
    );
    let db = server.dir().join("data/switchboard.db");
    let mut rows = Vec::new();
    common::wait_until(Duration::from_secs(10), "the call record", || {
        rows = store::Store::open_read_only(&db)
            .and_then(|s| s.calls_between(0, i64::MAX))
            .unwrap_or_default();
        !rows.is_empty()
    });
    let r = &rows[0];
    assert_eq!(r.satisfaction, Some(4), "{r:?}");
    assert_eq!(
        (r.outcome.as_str(), r.hung_up_by.as_str()),
        ("answered", "agent")
    );
}

fn wait_log(server: &Server, needle: &str, count: usize) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while server.log().matches(needle).count() < count {
        assert!(
            Instant::now() < deadline,
            "no {needle:?} in the server log:\n{}",
            server.log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}
