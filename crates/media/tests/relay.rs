//! The relay over real loopback sockets: two "phones" (plain UDP sockets) and a stranger.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use media::relay::{Leg, MediaConfig, MediaEventKind, Relay, SessionCommand, SessionId};
use media::rtp::{parse_header, Packetizer};
use media::{prompt::Prompt, MediaEvent};
use recorder::g711::Law;
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio::time::timeout;

fn config(port_min: u16, timeout: Duration) -> MediaConfig {
    MediaConfig {
        bind: "127.0.0.1".parse().unwrap(),
        advertise: "127.0.0.1".parse().unwrap(),
        port_min,
        port_max: port_min + 40,
        timeout,
        ..MediaConfig::default()
    }
}

async fn phone() -> UdpSocket {
    UdpSocket::bind("127.0.0.1:0").await.unwrap()
}

fn remote(leg: Leg, addr: SocketAddr, sends: bool) -> SessionCommand {
    SessionCommand::Remote {
        leg,
        rtp: Some(addr),
        law: Law::Mu,
        pt: 0,
        telephone_event: Some(101),
        sends,
        host: None,
    }
}

fn rtp(p: &mut Packetizer, pt: u8, payload: &[u8]) -> Vec<u8> {
    let mut b = Vec::new();
    p.packet(pt, payload, &mut b);
    b
}

async fn recv(sock: &UdpSocket) -> Option<Vec<u8>> {
    let mut buf = vec![0u8; 2048];
    match timeout(Duration::from_millis(500), sock.recv_from(&mut buf)).await {
        Ok(Ok((n, _))) => Some(buf[..n].to_vec()),
        _ => None,
    }
}

async fn next_event(
    rx: &mut mpsc::Receiver<MediaEvent>,
    within: Duration,
) -> Option<MediaEventKind> {
    timeout(within, rx.recv())
        .await
        .ok()
        .flatten()
        .map(|e| e.kind)
}

#[tokio::test]
async fn bridged_legs_hear_each_other_and_strangers_are_shut_out() {
    let (tx, mut events) = mpsc::channel(64);
    let relay = Relay::new(config(31_000, Duration::from_secs(60)), tx);
    let s = relay.open(SessionId(1)).unwrap();
    let relay_caller: SocketAddr = format!("127.0.0.1:{}", s.port(Leg::Caller))
        .parse()
        .unwrap();
    let relay_agent: SocketAddr = format!("127.0.0.1:{}", s.port(Leg::Agent)).parse().unwrap();
    let (caller, agent, stranger) = (phone().await, phone().await, phone().await);
    // Both phones send from the addresses of their SDP (phones behind NAT: further down).
    s.command(remote(Leg::Caller, caller.local_addr().unwrap(), true));
    s.command(remote(Leg::Agent, agent.local_addr().unwrap(), true));
    s.command(SessionCommand::Bridge(true));

    let mut pc = Packetizer::new(1, 0, 0);
    let mut pa = Packetizer::new(2, 0, 0);
    let from_caller = rtp(&mut pc, 0, &[0x11; 160]);
    caller.send_to(&from_caller, relay_caller).await.unwrap();
    // The agent has not spoken yet: the caller's audio goes to the agent's SDP address.
    let heard = recv(&agent).await.unwrap();
    assert_eq!(
        heard[12..],
        from_caller[12..],
        "agent hears the caller's audio"
    );
    let h = parse_header(&heard).unwrap();
    assert_ne!(h.ssrc, 1, "in the agent leg's own stream, not the caller's");
    assert!(h.marker, "the first packet of a source starts a talkspurt");
    let from_agent = rtp(&mut pa, 0, &[0x22; 160]);
    agent.send_to(&from_agent, relay_agent).await.unwrap();
    let heard = recv(&caller).await.unwrap();
    assert_eq!(
        heard[12..],
        from_agent[12..],
        "caller hears the agent's audio"
    );
    let h = parse_header(&heard).unwrap();
    assert_ne!(h.ssrc, 2, "in the caller leg's own stream, not the agent's");
    assert!(h.marker, "the first packet of a source starts a talkspurt");
    let again = rtp(&mut pc, 0, &[0x33; 160]);
    caller.send_to(&again, relay_caller).await.unwrap();
    let heard = recv(&agent).await.unwrap();
    assert_eq!(heard[12..], again[12..], "agent hears the caller's audio");
    assert_ne!(parse_header(&heard).unwrap().ssrc, 1);

    // A stranger sending to the caller's relay port is ignored: the agent hears nothing.
    let forged = rtp(&mut Packetizer::new(9, 0, 0), 0, &[0x44; 160]);
    stranger.send_to(&forged, relay_caller).await.unwrap();
    assert!(recv(&agent).await.is_none());
    assert_eq!(relay.stats().dropped_strangers.load(Ordering::Relaxed), 1);
    // Garbage that is not RTP is never forwarded either.
    caller.send_to(b"hello", relay_caller).await.unwrap();
    assert!(recv(&agent).await.is_none());

    // DTMF '5' arrives as three packets of one event (start, end, end): reported once.
    let mut pd = Packetizer::new(1, 100, 8000);
    let mut ev = Vec::new();
    pd.packet(101, &[5, 10, 0, 160], &mut ev);
    caller.send_to(&ev, relay_caller).await.unwrap();
    let mut end = ev.clone();
    end[13] |= 0x80; // E bit
    caller.send_to(&end, relay_caller).await.unwrap();
    caller.send_to(&end, relay_caller).await.unwrap();
    assert_eq!(
        next_event(&mut events, Duration::from_secs(1)).await,
        Some(MediaEventKind::Dtmf {
            leg: Leg::Caller,
            digit: '5'
        })
    );
    assert_eq!(
        next_event(&mut events, Duration::from_millis(300)).await,
        None
    );
    // The event packets themselves pass through to the agent.
    for _ in 0..3 {
        let p = recv(&agent).await.unwrap();
        assert_eq!(parse_header(&p).unwrap().payload_type, 101);
    }

    // Unbridged, nothing passes.
    s.command(SessionCommand::Bridge(false));
    tokio::time::sleep(Duration::from_millis(20)).await;
    caller
        .send_to(&rtp(&mut pc, 0, &[0x55; 160]), relay_caller)
        .await
        .unwrap();
    assert!(recv(&agent).await.is_none());

    // Dropping the session frees both port pairs.
    let free_before = relay.free_pairs();
    drop(s);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(relay.free_pairs(), free_before + 2);
}

#[tokio::test]
async fn prompts_play_in_20ms_packets_with_continuous_sequence_and_timestamps() {
    let (tx, mut events) = mpsc::channel(64);
    let relay = Relay::new(config(31_100, Duration::from_secs(60)), tx);
    let s = relay.open(SessionId(2)).unwrap();
    let caller = phone().await;
    s.command(remote(Leg::Caller, caller.local_addr().unwrap(), true));
    // 100 ms of tone then 60 ms of silence: 5 + 3 packets, then PlaybackDone.
    let tone = Prompt::tone("beep", 1000.0, Duration::from_millis(100), 8000);
    let pause = Prompt::silence(Duration::from_millis(60));
    s.command(SessionCommand::Play {
        leg: Leg::Caller,
        prompts: vec![tone.clone(), pause],
        then: None,
    });
    let mut got = Vec::new();
    while let Some(p) = recv(&caller).await {
        got.push(parse_header(&p).unwrap());
        if got.len() == 8 {
            break;
        }
    }
    assert_eq!(got.len(), 8);
    assert!(got[0].marker, "first packet of the talkspurt");
    assert!(got[1..5].iter().all(|h| !h.marker));
    assert!(got[5].marker, "a new prompt is a new talkspurt");
    for w in got.windows(2) {
        assert_eq!(w[1].seq, w[0].seq.wrapping_add(1));
        assert_eq!(w[1].timestamp, w[0].timestamp.wrapping_add(160));
        assert_eq!(w[1].ssrc, w[0].ssrc);
    }
    assert!(got
        .iter()
        .all(|h| h.payload_type == 0 && h.payload_len == 160));
    assert_eq!(
        next_event(&mut events, Duration::from_secs(1)).await,
        Some(MediaEventKind::PlaybackDone { leg: Leg::Caller })
    );
    // Music on hold loops until stopped.
    s.command(SessionCommand::Play {
        leg: Leg::Caller,
        prompts: vec![],
        then: Some(tone),
    });
    let mut n = 0;
    while recv(&caller).await.is_some() {
        n += 1;
        if n == 12 {
            break;
        }
    }
    assert_eq!(n, 12, "more packets than the prompt has: it loops");
    s.command(SessionCommand::Stop(Leg::Caller));
    tokio::time::sleep(Duration::from_millis(60)).await;
    while timeout(Duration::from_millis(1), caller.recv_from(&mut [0u8; 2048]))
        .await
        .is_ok()
    {}
    assert!(recv(&caller).await.is_none(), "stopped");
}

#[tokio::test]
async fn a_silent_leg_is_reported_once_and_a_held_leg_is_not() {
    let (tx, mut events) = mpsc::channel(64);
    let relay = Relay::new(config(31_200, Duration::from_secs(1)), tx);
    let s = relay.open(SessionId(3)).unwrap();
    let (caller, agent) = (phone().await, phone().await);
    s.command(remote(Leg::Caller, caller.local_addr().unwrap(), true));
    s.command(remote(Leg::Agent, agent.local_addr().unwrap(), false)); // on hold: not sending
    assert_eq!(
        next_event(&mut events, Duration::from_secs(3)).await,
        Some(MediaEventKind::Timeout { leg: Leg::Caller })
    );
    assert_eq!(
        next_event(&mut events, Duration::from_millis(2500)).await,
        None
    );
}

/// What a phone's jitter buffer needs: whatever the source, one SSRC, sequence numbers that go
/// up by one, timestamps that never go back, the marker bit at each switch of source.
#[tokio::test]
async fn a_leg_hears_one_continuous_stream_across_greeting_agent_and_hold_music() {
    let (tx, _events) = mpsc::channel(64);
    let relay = Relay::new(config(31_300, Duration::from_secs(60)), tx);
    let s = relay.open(SessionId(4)).unwrap();
    let relay_agent: SocketAddr = format!("127.0.0.1:{}", s.port(Leg::Agent)).parse().unwrap();
    let (caller, agent) = (phone().await, phone().await);
    s.command(remote(Leg::Caller, caller.local_addr().unwrap(), true));
    s.command(remote(Leg::Agent, agent.local_addr().unwrap(), true));
    let music = Prompt::tone("music", 440.0, Duration::from_millis(1000), 8000);
    let play = |s: &media::Session| {
        s.command(SessionCommand::Play {
            leg: Leg::Caller,
            prompts: vec![],
            then: Some(music.clone()),
        })
    };
    play(&s);
    let mut heard = Vec::new();
    take(5, &mut heard, &caller).await;
    // The agent answers: its stream starts far "behind" the greeting's sequence numbers.
    s.command(SessionCommand::Stop(Leg::Caller));
    s.command(SessionCommand::Bridge(true));
    let mut pa = Packetizer::new(0xA6E7, heard[4].0.seq.wrapping_sub(30_000), 12345);
    for _ in 0..5 {
        agent
            .send_to(&rtp(&mut pa, 0, &[0x22; 160]), relay_agent)
            .await
            .unwrap();
        take(1, &mut heard, &caller).await;
    }
    // Hold: music again; resume: the agent's phone restarts its stream with a new SSRC.
    s.command(SessionCommand::Bridge(false));
    play(&s);
    take(5, &mut heard, &caller).await;
    s.command(SessionCommand::Stop(Leg::Caller));
    s.command(SessionCommand::Bridge(true));
    let mut pa = Packetizer::new(0xB0B, 7, 99);
    for _ in 0..5 {
        agent
            .send_to(&rtp(&mut pa, 0, &[0x22; 160]), relay_agent)
            .await
            .unwrap();
        take(1, &mut heard, &caller).await;
    }
    for w in heard.windows(2) {
        let (a, b) = (w[0].0, w[1].0);
        assert_eq!(b.ssrc, a.ssrc, "one SSRC for the whole call");
        assert_eq!(b.seq, a.seq.wrapping_add(1), "no gap, no jump back");
        assert!(
            (b.timestamp.wrapping_sub(a.timestamp) as i32) > 0,
            "timestamps move on"
        );
    }
    // Where the source changes (music, agent, music, agent: packets of a source that were
    // already on their way arrive before the next source's), the marker bit is set, and only
    // there.
    let switches: Vec<usize> = (0..heard.len())
        .filter(|&i| i == 0 || heard[i].1 != heard[i - 1].1)
        .collect();
    assert_eq!(
        switches.len(),
        4,
        "music, agent, music, agent: {switches:?}"
    );
    for (i, (h, _)) in heard.iter().enumerate() {
        assert_eq!(h.marker, switches.contains(&i), "marker of packet {i}");
    }
}

/// Packets the caller hears: header, and whether it is the agent's audio.
async fn take(n: usize, heard: &mut Vec<(media::rtp::RtpHeader, bool)>, caller: &UdpSocket) {
    for _ in 0..n {
        let p = recv(caller).await.expect("packet");
        let h = parse_header(&p).unwrap();
        heard.push((h, p[h.payload_offset..] == [0x22; 160]));
    }
}

#[tokio::test]
async fn prompt_ssrcs_differ_between_sessions_on_the_same_ports() {
    let (tx, _events) = mpsc::channel(64);
    let relay = Relay::new(config(31_400, Duration::from_secs(60)), tx);
    let caller = phone().await;
    let mut ssrcs = Vec::new();
    for n in 0..2 {
        let s = relay.open(SessionId(10 + n)).unwrap();
        s.command(remote(Leg::Caller, caller.local_addr().unwrap(), true));
        s.command(SessionCommand::Play {
            leg: Leg::Caller,
            prompts: vec![Prompt::silence(Duration::from_millis(40))],
            then: None,
        });
        ssrcs.push(parse_header(&recv(&caller).await.unwrap()).unwrap().ssrc);
        drop(s);
        while recv(&caller).await.is_some() {}
    }
    assert_ne!(ssrcs[0], ssrcs[1], "random SSRC per stream");
}

/// Everything a socket receives, as it arrives (the socket still sends).
fn listen(sock: Arc<UdpSocket>) -> mpsc::UnboundedReceiver<Vec<u8>> {
    let (tx, rx) = mpsc::unbounded_channel();
    listen_into(sock, tx);
    rx
}

fn listen_into(sock: Arc<UdpSocket>, tx: mpsc::UnboundedSender<Vec<u8>>) {
    tokio::spawn(async move {
        let mut buf = vec![0u8; 2048];
        while let Ok((n, _)) = sock.recv_from(&mut buf).await {
            if tx.send(buf[..n].to_vec()).is_err() {
                break;
            }
        }
    });
}

fn payload(p: &[u8]) -> &[u8] {
    parse_header(p).map_or(&[][..], |h| &p[h.payload_offset..])
}

/// Wait for a condition, failing after `within`.
async fn wait_until(what: &str, within: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !cond() {
        assert!(Instant::now() < deadline, "{what}: not within {within:?}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// What the caller and the agent send: 20 ms of audio each, told apart by their bytes.
const CALLER_AUDIO: [u8; 160] = [0x11; 160];
const AGENT_AUDIO: [u8; 160] = [0x22; 160];

/// An RTP bleed attacker: a well-formed RTP stream to each relay port from one socket (if
/// `stream`), and a scan from another, every packet of which starts a stream of its own.
struct Attacker {
    stream: Option<(Arc<UdpSocket>, [Packetizer; 2])>,
    scan: Arc<UdpSocket>,
    scanned: u32,
    sent: u64,
    /// What the attacker's sockets receive.
    heard: mpsc::UnboundedReceiver<Vec<u8>>,
}

impl Attacker {
    async fn new(stream: bool) -> Attacker {
        let scan = Arc::new(phone().await);
        let (tx, heard) = mpsc::unbounded_channel();
        listen_into(scan.clone(), tx.clone());
        let stream = if stream {
            let sock = Arc::new(phone().await);
            listen_into(sock.clone(), tx);
            Some((
                sock,
                [Packetizer::new(0x66, 100, 0), Packetizer::new(0x67, 200, 0)],
            ))
        } else {
            None
        };
        Attacker {
            stream,
            scan,
            scanned: 0,
            sent: 0,
            heard,
        }
    }

    /// One round at both relay ports.
    async fn send(&mut self, ports: [SocketAddr; 2]) {
        for (i, to) in ports.into_iter().enumerate() {
            if let Some((sock, streams)) = &mut self.stream {
                let p = rtp(&mut streams[i], 0, &[0x66; 160]);
                sock.send_to(&p, to).await.unwrap();
                self.sent += 1;
            }
            self.scanned += 1;
            let n = self.scanned;
            let mut one = Packetizer::new(0x5CA0_0000 + n, (n * 7919) as u16, n * 160);
            self.scan
                .send_to(&rtp(&mut one, 0, &[0x66; 160]), to)
                .await
                .unwrap();
            self.sent += 1;
        }
    }

    /// Packets the attacker has received, waiting up to `grace` for one on its way.
    async fn received(&mut self, grace: Duration) -> usize {
        let late = match timeout(grace, self.heard.recv()).await {
            Ok(Some(_)) => 1,
            _ => 0,
        };
        late + std::iter::from_fn(|| self.heard.try_recv().ok()).count()
    }
}

/// The two phones talk (a packet each every 20 ms, the attacker's round in between) until each
/// has heard the other.
async fn talk_until_both_hear(
    phones: [&UdpSocket; 2],
    heard: &mut [mpsc::UnboundedReceiver<Vec<u8>>; 2],
    ports: [SocketAddr; 2],
    attacker: &mut Attacker,
    within: Duration,
) {
    let mut streams = [Packetizer::new(0xCA11, 0, 0), Packetizer::new(0xA6E7, 0, 0)];
    let audio = [CALLER_AUDIO, AGENT_AUDIO];
    let mut heard_other = [false, false];
    let deadline = Instant::now() + within;
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    while heard_other != [true, true] {
        assert!(
            Instant::now() < deadline,
            "audio did not flow both ways within {within:?} (caller heard the agent, agent heard \
             the caller: {heard_other:?})"
        );
        tick.tick().await;
        for i in 0..2 {
            let p = rtp(&mut streams[i], 0, &audio[i]);
            phones[i].send_to(&p, ports[i]).await.unwrap();
        }
        attacker.send(ports).await;
        for i in 0..2 {
            while let Ok(p) = heard[i].try_recv() {
                heard_other[i] |= payload(&p) == audio[1 - i];
            }
        }
    }
}

fn relay_ports(s: &media::Session) -> [SocketAddr; 2] {
    [Leg::Caller, Leg::Agent].map(|leg| SocketAddr::from(([127, 0, 0, 1], s.port(leg))))
}

/// RTP bleed (CVE-2017-14099): a stranger sends RTP to both legs' ports before the phones say
/// anything, a well-formed stream and a scan, and keeps at it. The phones send from the
/// addresses of their SDP: they are accepted at once, hear each other, and the stranger hears
/// nothing, ever.
#[tokio::test]
async fn a_stranger_who_sends_before_the_phones_hears_nothing() {
    let (tx, _events) = mpsc::channel(64);
    let relay = Relay::new(config(31_500, Duration::from_secs(60)), tx);
    let s = relay.open(SessionId(20)).unwrap();
    let ports = relay_ports(&s);
    let (caller, agent) = (phone().await, phone().await);
    s.command(remote(Leg::Caller, caller.local_addr().unwrap(), true));
    s.command(remote(Leg::Agent, agent.local_addr().unwrap(), true));
    s.command(SessionCommand::Bridge(true));
    let caller = Arc::new(caller);
    let agent = Arc::new(agent);
    let mut heard = [listen(caller.clone()), listen(agent.clone())];
    let mut attacker = Attacker::new(true).await;

    // The stranger first, and the relay has seen it before either phone speaks.
    for _ in 0..5 {
        attacker.send(ports).await;
    }
    let sent = attacker.sent;
    wait_until(
        "the stranger's packets reach the relay",
        Duration::from_secs(5),
        || relay.stats().received.load(Ordering::Relaxed) >= sent,
    )
    .await;
    assert_eq!(s.counters().received(Leg::Caller), 0);

    talk_until_both_hear(
        [&caller, &agent],
        &mut heard,
        ports,
        &mut attacker,
        Duration::from_secs(10),
    )
    .await;
    // Audio verifiably flowed both ways; whatever the relay sent the stranger has arrived by
    // the time this read gives up.
    assert_eq!(
        attacker.received(Duration::from_millis(500)).await,
        0,
        "the stranger heard something"
    );
    // Every packet of the attacker was dropped as a stranger's, and nothing of the phones.
    let sent = attacker.sent;
    wait_until(
        "every attacker packet counted as a stranger's",
        Duration::from_secs(5),
        || s.counters().strangers() == sent,
    )
    .await;
    assert!(s.counters().forwarded(Leg::Caller) > 0 && s.counters().forwarded(Leg::Agent) > 0);
}

/// The caller is behind NAT: its SDP gives an address it does not send from (a socket that
/// stands for its private address), and a stranger scans both ports before and while it talks.
/// Until the caller's real address is learned (probation, and the SDP address silent for 2 s),
/// the agent's audio goes to the SDP address; then the two hear each other, and the stranger
/// never hears anything.
#[tokio::test]
async fn a_phone_behind_nat_is_learned_and_a_scanning_stranger_is_not() {
    let (tx, _events) = mpsc::channel(64);
    let relay = Relay::new(config(31_600, Duration::from_secs(60)), tx);
    let s = relay.open(SessionId(21)).unwrap();
    let ports = relay_ports(&s);
    let (caller, agent, private) = (phone().await, phone().await, Arc::new(phone().await));
    s.command(remote(Leg::Caller, private.local_addr().unwrap(), true));
    s.command(remote(Leg::Agent, agent.local_addr().unwrap(), true));
    s.command(SessionCommand::Bridge(true));
    let caller = Arc::new(caller);
    let agent = Arc::new(agent);
    let mut heard = [listen(caller.clone()), listen(agent.clone())];
    let mut at_private = listen(private);
    // Only a scan: a well-formed stream racing a phone behind NAT that has not spoken yet is
    // what the media alone cannot tell apart (see media::latch).
    let mut attacker = Attacker::new(false).await;

    for _ in 0..5 {
        attacker.send(ports).await;
    }
    let sent = attacker.sent;
    wait_until("the scan reaches the relay", Duration::from_secs(5), || {
        relay.stats().received.load(Ordering::Relaxed) >= sent
    })
    .await;

    talk_until_both_hear(
        [&caller, &agent],
        &mut heard,
        ports,
        &mut attacker,
        Duration::from_secs(10),
    )
    .await;
    assert_eq!(
        attacker.received(Duration::from_millis(500)).await,
        0,
        "the stranger heard something"
    );
    let before_learning = std::iter::from_fn(|| at_private.try_recv().ok())
        .filter(|p| payload(p) == AGENT_AUDIO)
        .count();
    assert!(
        before_learning > 0,
        "before the caller was learned, the agent's audio went to its SDP address"
    );
    // The caller's packets on probation are dropped with the stranger's.
    let sent = attacker.sent;
    wait_until(
        "the caller's packets on probation counted with the stranger's",
        Duration::from_secs(5),
        || s.counters().strangers() > sent,
    )
    .await;
    assert!(s.counters().received(Leg::Caller) > 0);
}
