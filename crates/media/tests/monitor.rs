//! A supervisor monitoring a call, over real loopback sockets: three "phones" send tones as
//! G.711 RTP (the caller 440 Hz, the agent 1000 Hz, the supervisor 1700 Hz), and what each
//! phone receives is decoded and checked for each tone, i.e. for what each person would hear.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use media::relay::{
    Leg, MediaConfig, MediaEventKind, MonitorMode, Relay, Session, SessionCommand, SessionId,
};
use media::rtp::{parse_header, Packetizer, RtpHeader};
use media::MediaEvent;
use recorder::g711::Law;
use recorder::service::RecordFrame;
use recorder::timeline::Channel as RecordChannel;
use tokio::net::UdpSocket;
use tokio::sync::mpsc;

const CALLER_HZ: f64 = 440.0;
const AGENT_HZ: f64 = 1000.0;
const SUPERVISOR_HZ: f64 = 1700.0;
const AMPLITUDE: f64 = 8000.0;

/// A tone is heard when its amplitude in what a phone receives is above this…
const HEARD: f64 = 2500.0;
/// …and not heard when below this.
const NOT_HEARD: f64 = 300.0;

/// Packets of each phone's analysis window (0.5 s).
const WINDOW: usize = 25;

fn config(port_min: u16) -> MediaConfig {
    MediaConfig {
        bind: "127.0.0.1".parse().unwrap(),
        advertise: "127.0.0.1".parse().unwrap(),
        port_min,
        port_max: port_min + 40,
        timeout: Duration::from_secs(60),
        ..MediaConfig::default()
    }
}

/// A phone: sends a tone in 20 ms packets, keeps everything it receives.
struct Phone {
    sock: Arc<UdpSocket>,
    /// The relay port of its leg.
    to: SocketAddr,
    law: Law,
    hz: f64,
    sent_samples: u64,
    stream: Packetizer,
    /// Whether it talks (a phone on mute sends nothing).
    talks: bool,
    heard: mpsc::UnboundedReceiver<Vec<u8>>,
}

impl Phone {
    async fn new(law: Law, hz: f64, ssrc: u32) -> Phone {
        let sock = Arc::new(UdpSocket::bind("127.0.0.1:0").await.unwrap());
        let (tx, heard) = mpsc::unbounded_channel();
        let s = sock.clone();
        tokio::spawn(async move {
            let mut buf = vec![0u8; 2048];
            while let Ok((n, _)) = s.recv_from(&mut buf).await {
                if tx.send(buf[..n].to_vec()).is_err() {
                    break;
                }
            }
        });
        Phone {
            sock,
            to: "127.0.0.1:9".parse().unwrap(),
            law,
            hz,
            sent_samples: 0,
            stream: Packetizer::new(ssrc, (ssrc as u16).wrapping_mul(31), ssrc.wrapping_mul(7)),
            talks: true,
            heard,
        }
    }

    fn remote(&self, leg: Leg) -> SessionCommand {
        SessionCommand::Remote {
            leg,
            rtp: Some(self.sock.local_addr().unwrap()),
            law: self.law,
            pt: self.law.payload_type(),
            telephone_event: Some(101),
            sends: true,
            host: None,
        }
    }

    async fn send_frame(&mut self) {
        let samples: Vec<i16> = (0..160)
            .map(|k| {
                let n = (self.sent_samples + k) as f64;
                (AMPLITUDE * (2.0 * std::f64::consts::PI * self.hz * n / 8000.0).sin()) as i16
            })
            .collect();
        self.sent_samples += 160;
        let mut payload = Vec::new();
        self.law.encode_into(&samples, &mut payload);
        let mut p = Vec::new();
        self.stream
            .packet(self.law.payload_type(), &payload, &mut p);
        self.sock.send_to(&p, self.to).await.unwrap();
    }

    /// An RFC 4733 key press: three packets of one event.
    async fn press(&mut self, event: u8) {
        let mut p = Vec::new();
        self.stream.packet(101, &[event, 10, 0, 160], &mut p);
        self.sock.send_to(&p, self.to).await.unwrap();
        p[13] |= 0x80;
        self.sock.send_to(&p, self.to).await.unwrap();
        self.sock.send_to(&p, self.to).await.unwrap();
    }

    fn drain(&mut self) -> Vec<Vec<u8>> {
        std::iter::from_fn(|| self.heard.try_recv().ok()).collect()
    }
}

/// A call with a supervisor attached.
struct Call {
    relay: Relay,
    session: Session,
    events: mpsc::Receiver<MediaEvent>,
    /// Caller, agent, supervisor.
    phones: [Phone; 3],
}

const LEGS: [Leg; 3] = [Leg::Caller, Leg::Agent, Leg::Supervisor];

impl Call {
    async fn new(port_min: u16, laws: [Law; 3], supervisor: bool) -> Call {
        let (tx, events) = mpsc::channel(64);
        let relay = Relay::new(config(port_min), tx);
        let session = relay.open(SessionId(u64::from(port_min))).unwrap();
        let mut phones = [
            Phone::new(laws[0], CALLER_HZ, 0xCA11).await,
            Phone::new(laws[1], AGENT_HZ, 0xA6E7).await,
            Phone::new(laws[2], SUPERVISOR_HZ, 0x5EE).await,
        ];
        if supervisor {
            let port = relay.attach_supervisor(&session).unwrap();
            assert_eq!(session.supervisor_port(), Some(port));
            assert_eq!(session.port(Leg::Supervisor), port);
        } else {
            // The supervisor's phone has nowhere to send yet.
            phones[2].talks = false;
        }
        for (phone, leg) in phones.iter_mut().zip(LEGS) {
            phone.to = SocketAddr::from(([127, 0, 0, 1], session.port(leg)));
            if leg != Leg::Supervisor || supervisor {
                session.command(phone.remote(leg));
            }
        }
        session.command(SessionCommand::Bridge(true));
        Call {
            relay,
            session,
            events,
            phones,
        }
    }

    /// Everyone who talks sends a frame every 20 ms: first `settle` rounds whose audio is
    /// thrown away (what was on its way from before a change), then until every phone in
    /// `hearing` has received a window of packets (within a deadline). Returns what each
    /// phone received after the settling rounds.
    async fn talk(&mut self, settle: usize, hearing: [bool; 3]) -> [Vec<Vec<u8>>; 3] {
        let mut tick = tokio::time::interval(Duration::from_millis(20));
        for _ in 0..settle {
            tick.tick().await;
            for p in self.phones.iter_mut().filter(|p| p.talks) {
                p.send_frame().await;
            }
        }
        for p in &mut self.phones {
            p.drain();
        }
        let mut heard: [Vec<Vec<u8>>; 3] = Default::default();
        let within = Duration::from_secs(10);
        let deadline = Instant::now() + within;
        loop {
            tick.tick().await;
            for p in self.phones.iter_mut().filter(|p| p.talks) {
                p.send_frame().await;
            }
            for (h, p) in heard.iter_mut().zip(&mut self.phones) {
                h.extend(p.drain());
            }
            let done = heard
                .iter()
                .zip(hearing)
                .all(|(h, want)| !want || audio_packets(h) >= WINDOW);
            if done {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "not every phone heard {WINDOW} packets within {within:?}: {:?}",
                heard.iter().map(|h| h.len()).collect::<Vec<_>>()
            );
        }
        heard
    }
}

fn audio_packets(packets: &[Vec<u8>]) -> usize {
    packets
        .iter()
        .filter(|p| {
            parse_header(p).is_some_and(|h| Law::from_payload_type(h.payload_type).is_some())
        })
        .count()
}

/// The audio of the last `WINDOW` G.711 packets, decoded by their payload types.
fn decoded(packets: &[Vec<u8>]) -> Vec<i16> {
    let audio: Vec<&Vec<u8>> = packets
        .iter()
        .filter(|p| {
            parse_header(p).is_some_and(|h| Law::from_payload_type(h.payload_type).is_some())
        })
        .collect();
    let mut out = Vec::new();
    for p in &audio[audio.len().saturating_sub(WINDOW)..] {
        let h = parse_header(p).unwrap();
        let law = Law::from_payload_type(h.payload_type).unwrap();
        law.decode_into(
            &p[h.payload_offset..h.payload_offset + h.payload_len],
            &mut out,
        );
    }
    out
}

/// The amplitude of the `hz` component of `samples` (Goertzel).
fn amplitude(samples: &[i16], hz: f64) -> f64 {
    if samples.is_empty() {
        return 0.0;
    }
    let n = samples.len() as f64;
    let coeff = 2.0 * (2.0 * std::f64::consts::PI * hz / 8000.0).cos();
    let (mut s1, mut s2) = (0.0f64, 0.0f64);
    for &x in samples {
        let s0 = f64::from(x) + coeff * s1 - s2;
        s2 = s1;
        s1 = s0;
    }
    let power = s1 * s1 + s2 * s2 - coeff * s1 * s2;
    2.0 * power.max(0.0).sqrt() / n
}

const TONES: [(&str, f64); 3] = [
    ("the caller", CALLER_HZ),
    ("the agent", AGENT_HZ),
    ("the supervisor", SUPERVISOR_HZ),
];

/// Check that each phone hears exactly the legs `expected` says (`expected[listener][talker]`).
fn check_hearing(what: &str, heard: &[Vec<Vec<u8>>; 3], expected: [[bool; 3]; 3]) {
    for (l, listener) in ["caller", "agent", "supervisor"].iter().enumerate() {
        let samples = decoded(&heard[l]);
        for (t, (talker, hz)) in TONES.iter().enumerate() {
            let a = amplitude(&samples, *hz);
            if expected[l][t] {
                assert!(
                    a > HEARD,
                    "{what}: the {listener} should hear {talker} (amplitude {a:.0})"
                );
            } else {
                assert!(
                    a < NOT_HEARD,
                    "{what}: the {listener} should not hear {talker} (amplitude {a:.0})"
                );
            }
        }
    }
}

/// Who hears whom in a mode: `[listener][talker]`, caller, agent, supervisor.
fn expected(mode: MonitorMode) -> [[bool; 3]; 3] {
    match mode {
        MonitorMode::Off => [
            [false, true, false],
            [true, false, false],
            [false, false, false],
        ],
        MonitorMode::Listen => [
            [false, true, false],
            [true, false, false],
            [true, true, false],
        ],
        MonitorMode::Whisper => [
            [false, true, false],
            [true, false, true],
            [true, true, false],
        ],
        MonitorMode::Barge => [
            [false, true, true],
            [true, false, true],
            [true, true, false],
        ],
        MonitorMode::Consult => [
            [false, false, false],
            [false, false, true],
            [false, true, false],
        ],
    }
}

fn hearing(mode: MonitorMode) -> [bool; 3] {
    [mode != MonitorMode::Consult, true, mode != MonitorMode::Off]
}

fn headers(packets: &[Vec<u8>]) -> Vec<RtpHeader> {
    packets.iter().filter_map(|p| parse_header(p)).collect()
}

/// One SSRC, sequence numbers up by one, timestamps that move on.
fn assert_continuous(what: &str, packets: &[Vec<u8>]) {
    let hs = headers(packets);
    assert!(!hs.is_empty(), "{what}: nothing received");
    for w in hs.windows(2) {
        assert_eq!(w[1].ssrc, w[0].ssrc, "{what}: one SSRC");
        assert_eq!(
            w[1].seq,
            w[0].seq.wrapping_add(1),
            "{what}: no gap, no jump"
        );
        assert!(
            (w[1].timestamp.wrapping_sub(w[0].timestamp) as i32) > 0,
            "{what}: timestamps move on"
        );
    }
}

#[tokio::test]
async fn listen_whisper_and_barge_each_hear_what_they_should() {
    for (n, mode) in [
        MonitorMode::Listen,
        MonitorMode::Whisper,
        MonitorMode::Barge,
        MonitorMode::Consult,
    ]
    .into_iter()
    .enumerate()
    {
        let mut call = Call::new(32_000 + 100 * n as u16, [Law::Mu; 3], true).await;
        call.session.command(SessionCommand::Monitor(mode));
        let heard = call.talk(5, hearing(mode)).await;
        check_hearing(&format!("{mode:?}"), &heard, expected(mode));
        // The supervisor hears one continuous stream, whoever clocks its mix.
        assert_continuous(&format!("{mode:?}: the supervisor's stream"), &heard[2]);
        if mode == MonitorMode::Listen {
            // Only the supervisor hears a mix.
            assert_eq!(call.session.counters().mixed(Leg::Caller), 0);
            assert_eq!(call.session.counters().mixed(Leg::Agent), 0);
            assert!(call.session.counters().mixed(Leg::Supervisor) > 0);
        }
    }
}

#[tokio::test]
async fn listening_leaves_the_parties_packets_untouched() {
    let mut call = Call::new(32_400, [Law::Mu; 3], true).await;
    call.session
        .command(SessionCommand::Monitor(MonitorMode::Listen));
    call.talk(5, hearing(MonitorMode::Listen)).await;
    // Now one packet of known bytes each way: each party receives exactly those bytes.
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    let mut got = [false, false];
    let deadline = Instant::now() + Duration::from_secs(5);
    while got != [true, true] {
        assert!(
            Instant::now() < deadline,
            "the parties' packets did not pass: {got:?}"
        );
        for (i, marker) in [(0usize, 0x3Cu8), (1, 0x5A)] {
            let mut p = Vec::new();
            call.phones[i].stream.packet(0, &[marker; 160], &mut p);
            call.phones[i]
                .sock
                .send_to(&p, call.phones[i].to)
                .await
                .unwrap();
        }
        tick.tick().await;
        for (i, marker) in [(1usize, 0x3Cu8), (0, 0x5A)] {
            for p in call.phones[i].drain() {
                let h = parse_header(&p).unwrap();
                got[1 - i] |= p[h.payload_offset..] == [marker; 160];
            }
        }
    }
}

#[tokio::test]
async fn modes_switch_during_a_call_and_each_leg_hears_one_stream() {
    let mut call = Call::new(32_500, [Law::Mu; 3], true).await;
    let mut all: [Vec<Vec<u8>>; 3] = Default::default();
    for mode in [
        MonitorMode::Off,
        MonitorMode::Listen,
        MonitorMode::Whisper,
        MonitorMode::Barge,
        MonitorMode::Whisper,
        MonitorMode::Listen,
        MonitorMode::Off,
    ] {
        call.session.command(SessionCommand::Monitor(mode));
        let heard = call.talk(10, hearing(mode)).await;
        check_hearing(&format!("switched to {mode:?}"), &heard, expected(mode));
        for (a, h) in all.iter_mut().zip(heard) {
            a.extend(h);
        }
    }
    // Whatever the mode, forwarded or mixed, each phone's stream stays one stream with the
    // marker bit only where its source changed. (The rounds thrown away between modes leave
    // gaps in what was kept, so continuity is checked within each leg's own packets as a
    // whole: one SSRC, and sequence numbers that never go back.)
    for (leg, packets) in ["caller", "agent", "supervisor"].iter().zip(&all) {
        let hs = headers(packets);
        for w in hs.windows(2) {
            assert_eq!(w[1].ssrc, w[0].ssrc, "{leg}: one SSRC for the whole call");
            assert!(
                (w[1].seq.wrapping_sub(w[0].seq) as i16) > 0,
                "{leg}: sequence numbers go forward"
            );
        }
    }
}

#[tokio::test]
async fn legs_with_different_laws_are_mixed_in_each_listeners_law() {
    let laws = [Law::Mu, Law::A, Law::A];
    let mut call = Call::new(32_600, laws, true).await;
    for mode in [MonitorMode::Barge, MonitorMode::Whisper] {
        call.session.command(SessionCommand::Monitor(mode));
        let heard = call.talk(10, hearing(mode)).await;
        check_hearing(
            &format!("PCMU caller, PCMA agent and supervisor, {mode:?}"),
            &heard,
            expected(mode),
        );
        // A mix is in the listener's own law.
        for (l, law) in laws.iter().enumerate() {
            if !mode.mixes(LEGS[l]) {
                continue;
            }
            let hs = headers(&heard[l]);
            assert!(
                hs.iter().all(|h| h.payload_type == law.payload_type()),
                "{mode:?}: leg {l} hears its own law"
            );
        }
    }
}

#[tokio::test]
async fn a_silent_party_leaves_the_supervisor_hearing_the_other() {
    let mut call = Call::new(32_700, [Law::Mu; 3], true).await;
    call.session
        .command(SessionCommand::Monitor(MonitorMode::Listen));
    call.talk(5, hearing(MonitorMode::Listen)).await;
    // The caller (the supervisor's clock so far) stops sending: the agent takes over.
    call.phones[0].talks = false;
    let heard = call.talk(10, [true, false, true]).await;
    let sup = decoded(&heard[2]);
    assert!(amplitude(&sup, AGENT_HZ) > HEARD);
    assert!(amplitude(&sup, CALLER_HZ) < NOT_HEARD);
    assert_continuous("the supervisor after the handover", &heard[2]);
}

#[tokio::test]
async fn the_supervisors_keys_are_reported_and_reach_nobody() {
    let mut call = Call::new(32_800, [Law::Mu; 3], true).await;
    call.session
        .command(SessionCommand::Monitor(MonitorMode::Barge));
    call.talk(5, hearing(MonitorMode::Barge)).await;
    for p in &mut call.phones {
        p.drain();
    }
    call.phones[2].press(3).await;
    let ev = tokio::time::timeout(Duration::from_secs(2), call.events.recv())
        .await
        .expect("an event")
        .expect("the session is open");
    assert_eq!(
        ev.kind,
        MediaEventKind::Dtmf {
            leg: Leg::Supervisor,
            digit: '3'
        }
    );
    // Talk on until the caller and the agent have heard well past the key press: no
    // telephone-event among it.
    let early: Vec<Vec<Vec<u8>>> = call.phones.iter_mut().map(|p| p.drain()).collect();
    let heard = call.talk(0, [true, true, true]).await;
    for (leg, packets) in heard
        .iter()
        .zip(&early)
        .map(|(h, e)| [e.clone(), h.clone()].concat())
        .enumerate()
        .take(2)
    {
        assert!(
            headers(&packets).iter().all(|h| h.payload_type != 101),
            "leg {leg} received the supervisor's key"
        );
    }
    // The caller's keys still reach the agent (and not the supervisor).
    for p in &mut call.phones {
        p.drain();
    }
    call.phones[0].press(7).await;
    let ev = tokio::time::timeout(Duration::from_secs(2), call.events.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        ev.kind,
        MediaEventKind::Dtmf {
            leg: Leg::Caller,
            digit: '7'
        }
    );
    let early: Vec<Vec<Vec<u8>>> = call.phones.iter_mut().map(|p| p.drain()).collect();
    let heard = call.talk(0, [true, true, true]).await;
    let agent = [early[1].clone(), heard[1].clone()].concat();
    let supervisor = [early[2].clone(), heard[2].clone()].concat();
    assert!(headers(&agent).iter().any(|h| h.payload_type == 101));
    assert!(headers(&supervisor).iter().all(|h| h.payload_type != 101));
}

#[tokio::test]
async fn detaching_returns_the_ports_and_the_call_goes_on() {
    let mut call = Call::new(32_900, [Law::Mu; 3], false).await;
    let free = call.relay.free_pairs();
    // Monitoring without a supervisor is ignored.
    call.session
        .command(SessionCommand::Monitor(MonitorMode::Barge));
    let heard = call.talk(5, [true, true, false]).await;
    check_hearing("no supervisor", &heard, expected(MonitorMode::Off));
    assert_eq!(call.session.counters().mixed(Leg::Agent), 0);

    for round in 0..2 {
        let port = call.relay.attach_supervisor(&call.session).unwrap();
        assert_eq!(call.relay.free_pairs(), free - 1);
        assert!(matches!(
            call.relay.attach_supervisor(&call.session),
            Err(media::relay::MediaError::SupervisorAttached)
        ));
        assert_eq!(
            call.relay.free_pairs(),
            free - 1,
            "a refused attach takes nothing"
        );
        call.phones[2].to = SocketAddr::from(([127, 0, 0, 1], port));
        call.phones[2].talks = true;
        call.session.command(call.phones[2].remote(Leg::Supervisor));
        call.session
            .command(SessionCommand::Monitor(MonitorMode::Barge));
        let heard = call.talk(5, hearing(MonitorMode::Barge)).await;
        check_hearing(
            &format!("attached ({round})"),
            &heard,
            expected(MonitorMode::Barge),
        );

        call.session.command(SessionCommand::DetachSupervisor);
        assert_eq!(call.session.supervisor_port(), None);
        let relay = call.relay.clone();
        wait_until("the supervisor's ports are back", || {
            relay.free_pairs() == free
        })
        .await;
        // The supervisor's phone still sends, to a closed port: the parties hear each other
        // as before, and the supervisor nothing.
        let heard = call.talk(10, [true, true, false]).await;
        check_hearing(
            &format!("detached ({round})"),
            &heard,
            expected(MonitorMode::Off),
        );
        assert!(heard[2].is_empty(), "a detached supervisor hears nothing");
    }

    // Dropping the session frees everything, a supervisor's pair included.
    call.relay.attach_supervisor(&call.session).unwrap();
    let Call { relay, session, .. } = call;
    drop(session);
    let all = free + 2;
    wait_until("every port back", || relay.free_pairs() == all).await;
}

#[tokio::test]
async fn an_unmonitored_call_is_untouched() {
    let mut call = Call::new(33_000, [Law::Mu; 3], false).await;
    assert_eq!(call.session.supervisor_port(), None);
    assert_eq!(call.session.port(Leg::Supervisor), 0);
    let heard = call.talk(5, [true, true, false]).await;
    check_hearing("unmonitored", &heard, expected(MonitorMode::Off));
    assert_continuous("the caller's stream", &heard[0]);
    assert_continuous("the agent's stream", &heard[1]);
    assert!(heard[2].is_empty());
    let c = call.session.counters();
    assert!(LEGS.iter().all(|&l| c.mixed(l) == 0));
    assert_eq!(c.received(Leg::Supervisor), 0);
    assert_eq!(
        call.relay
            .stats()
            .mixed
            .load(std::sync::atomic::Ordering::Relaxed),
        0
    );
}

/// While a supervisor barges, the recording's agent channel is what the caller hears: the
/// agent and the supervisor.
#[tokio::test]
async fn a_barging_supervisor_is_recorded_with_the_agent() {
    let mut call = Call::new(33_100, [Law::Mu; 3], true).await;
    let (tap_tx, mut tap) = mpsc::channel::<RecordFrame>(10_000);
    call.session.command(SessionCommand::Tap(Some(tap_tx)));
    for mode in [MonitorMode::Listen, MonitorMode::Barge] {
        call.session.command(SessionCommand::Monitor(mode));
        call.talk(10, hearing(mode)).await;
        let frames: Vec<RecordFrame> = std::iter::from_fn(|| tap.try_recv().ok()).collect();
        let right: Vec<Vec<u8>> = frames
            .iter()
            .filter(|f| f.channel == RecordChannel::Right)
            .map(|f| f.packet.to_vec())
            .collect();
        let left: Vec<Vec<u8>> = frames
            .iter()
            .filter(|f| f.channel == RecordChannel::Left)
            .map(|f| f.packet.to_vec())
            .collect();
        let (r, l) = (decoded(&right), decoded(&left));
        assert!(
            amplitude(&l, CALLER_HZ) > HEARD,
            "{mode:?}: the caller is recorded"
        );
        assert!(
            amplitude(&r, AGENT_HZ) > HEARD,
            "{mode:?}: the agent is recorded"
        );
        let sup = amplitude(&r, SUPERVISOR_HZ);
        if mode == MonitorMode::Barge {
            assert!(
                sup > HEARD,
                "barging: the supervisor is recorded ({sup:.0})"
            );
        } else {
            assert!(
                sup < NOT_HEARD,
                "listening: the supervisor is not recorded ({sup:.0})"
            );
        }
        assert!(amplitude(&l, SUPERVISOR_HZ) < NOT_HEARD);
    }
}

/// Wait for a condition, failing after 5 s.
async fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !cond() {
        assert!(Instant::now() < deadline, "{what}: not within 5 s");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}
