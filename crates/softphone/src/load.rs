//! The load mode: many agent phones and callers in one process on one thread, each a
//! [`Phone`] with real RTP both ways, for checking a deployment's capacity.
//!
//! Agents register (digest) and answer every call that rings them after `answer_after`;
//! callers arrive at a rate (Poisson or evenly spaced), call a number (a queue), stay for a
//! handle time drawn from a distribution once they hear their agent, and hang up. Every
//! phone's audio is a whole-hertz tone whose 20 ms frames are all alike (1 kHz for agents,
//! 500 Hz for callers), so each side checks, packet by packet and for free, that what it
//! hears is the other side's voice and not music, ringback or silence.
//!
//! All phones share one SIP socket (one [`sip::Endpoint`], requests told apart by the user
//! of their Request-URI, which is each phone's Contact) and a few RTP sockets (streams told
//! apart by the relay port they come from), so 2,000 phones cost a handful of descriptors
//! and no thread each.

use std::collections::{BinaryHeap, HashMap};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use serde::Serialize;
use sip::endpoint::SipEvent;
use sip::transaction::TxId;
use sip::{Endpoint, EndpointConfig, Flow, Transport};

use crate::audio::Source;
use crate::stream::Stream;
use crate::ua::{Account, Command, Phone, PhoneEvent};

/// A distribution of durations.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Spread {
    /// Always the mean.
    Fixed,
    /// Exponential with this mean (Poisson arrivals, memoryless handle times).
    Exponential,
    /// Uniform between half and one and a half times the mean.
    Uniform,
}

/// What the load run does.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    /// The server.
    pub server: SocketAddr,
    /// Local address.
    pub local: IpAddr,
    /// Domain of the URIs.
    pub domain: String,
    /// Agent phones: these SIP users, registered with `password_prefix` + user.
    pub agents: Vec<String>,
    /// Passwords are this prefix followed by the user (`demo1001`).
    pub password_prefix: String,
    /// Callers' From users: this prefix and a number.
    pub caller_prefix: String,
    /// The number callers dial.
    pub number: String,
    /// New calls per second.
    pub rate: f64,
    /// How arrivals are spread.
    pub arrivals: Spread,
    /// For how long new calls arrive.
    pub duration: Duration,
    /// Mean time a caller talks once they hear their agent.
    pub talk: Duration,
    /// How talk times are spread.
    pub talk_spread: Spread,
    /// How long an agent's phone rings before it answers.
    pub answer_after: Duration,
    /// A caller who has not heard an agent after this long gives up (a failed call).
    pub max_wait: Duration,
    /// Registrations per second at the start.
    pub register_rate: f64,
    /// Send and check audio (else signalling only).
    pub media: bool,
    /// RTP sockets shared by the streams.
    pub rtp_sockets: usize,
    /// Seed of arrivals and handle times.
    pub seed: u64,
    /// No calls: the agents register again and again at `rate` registrations a second
    /// for `duration` (round robin), each one timed from its REGISTER to its 200.
    pub registrations_only: bool,
}

/// Percentiles of a set of durations, milliseconds.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Percentiles {
    /// How many.
    pub n: usize,
    /// Median.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 99th percentile.
    pub p99: f64,
    /// Largest.
    pub max: f64,
}

impl Percentiles {
    fn of(mut v: Vec<f64>) -> Percentiles {
        if v.is_empty() {
            return Percentiles::default();
        }
        v.sort_by(f64::total_cmp);
        let at = |q: f64| v[((v.len() as f64 * q).ceil() as usize).clamp(1, v.len()) - 1];
        Percentiles {
            n: v.len(),
            p50: at(0.5),
            p90: at(0.9),
            p99: at(0.99),
            max: v[v.len() - 1],
        }
    }
}

/// What the run saw.
#[derive(Debug, Clone, Default, Serialize)]
pub struct LoadReport {
    /// Agent phones registered.
    pub registered: usize,
    /// Agent registrations refused or unanswered.
    pub registration_failures: usize,
    /// Calls placed.
    pub calls: u64,
    /// Calls that reached an agent (the caller heard them) and ended normally.
    pub completed: u64,
    /// Calls that failed: refused, timed out, never reached an agent, cut off, or whose
    /// audio was wrong.
    pub failed: u64,
    /// Why calls failed, with counts.
    pub failures: HashMap<String, u64>,
    /// Calls still up when the run ended (none when it ended cleanly).
    pub unfinished: u64,
    /// Agents whose call ended without their having heard the caller (the call is counted
    /// on the caller's side; this says the audio failed towards the agent).
    pub agents_not_hearing: u64,
    /// INVITE to 200 OK (the queue answers), milliseconds.
    pub setup_ms: Percentiles,
    /// INVITE to the first packet of the agent's voice at the caller, milliseconds.
    pub to_agent_ms: Percentiles,
    /// Most calls connected to an agent at once.
    pub peak_concurrent: usize,
    /// Seconds of connected calls, summed over calls (the average number of calls up
    /// times the run's length).
    pub call_s: f64,
    /// This process's CPU per call up: cores per 1,000 concurrent calls (`cpu_s` over
    /// `call_s`, registration and setup included).
    pub cores_per_1000_calls: f64,
    /// RTP packets sent and received.
    pub rtp_sent: u64,
    /// Received.
    pub rtp_received: u64,
    /// Lost (from sequence numbers, over all streams).
    pub rtp_lost: u64,
    /// Lost as a share of expected, percent.
    pub loss_pct: f64,
    /// Registrations sent in a registrations-only run (each: REGISTER, 401, REGISTER with
    /// credentials, 200).
    pub registrations: u64,
    /// First REGISTER to 200 OK, milliseconds (registrations-only runs).
    pub register_ms: Percentiles,
    /// This process's CPU time, seconds.
    pub cpu_s: f64,
    /// Wall time of the run, seconds.
    pub wall_s: f64,
}

/// The frame of a whole-hertz tone that repeats every 20 ms, encoded.
fn tone_frame(hz: f64, law: media::recorder::g711::Law) -> Vec<u8> {
    let mut pcm = [0i16; media::rtp::SAMPLES_PER_PACKET];
    Source::Tone(hz).frame(0, &mut pcm);
    let mut out = Vec::new();
    law.encode_into(&pcm, &mut out);
    out
}

const AGENT_HZ: f64 = 1000.0;
const CALLER_HZ: f64 = 500.0;
/// Packets of the other side's voice a call needs both ways to count as heard.
const HEARD: u32 = 10;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Action {
    Register(usize),
    /// Answer the agent's call that rang as their `n`th.
    Answer(usize, u64),
    HangUp(usize, u64),
    GiveUp(usize, u64),
}

/// One phone of the run and its call's audio.
struct Member {
    phone: Phone,
    agent: bool,
    stream: Option<Stream>,
    rtp: usize,
    /// The call's number in the run (callers), to match timers to calls.
    call: u64,
    /// When a caller dialled; for an agent in a registrations-only run, when its REGISTER
    /// went out (until it is answered).
    dialled_at: Option<Instant>,
    heard_at: Option<Instant>,
    heard: u32,
    wrong: u32,
    connected: bool,
    connected_at: Option<Instant>,
    registered: bool,
    /// We hung up (the talk time was over, or the caller gave up): no failure of its own.
    gave_up: bool,
}

struct Run {
    opts: LoadOptions,
    ep: Endpoint,
    sip: UdpSocket,
    rtp: Vec<UdpSocket>,
    rtp_ports: Vec<u16>,
    members: Vec<Member>,
    by_user: HashMap<String, usize>,
    by_tx: HashMap<TxId, (usize, Instant)>,
    by_source: HashMap<(usize, SocketAddr), usize>,
    free_callers: Vec<usize>,
    timers: BinaryHeap<std::cmp::Reverse<(Instant, Action)>>,
    rng: u64,
    report: LoadReport,
    setup: Vec<f64>,
    to_agent: Vec<f64>,
    register_ms: Vec<f64>,
    connected: usize,
    next_sweep: Instant,
    frames: [Vec<u8>; 4],
    out: Vec<u8>,
}

fn socket(local: IpAddr, buffer: usize) -> Result<UdpSocket, String> {
    let s = socket2::Socket::new(
        socket2::Domain::for_address(SocketAddr::new(local, 0)),
        socket2::Type::DGRAM,
        Some(socket2::Protocol::UDP),
    )
    .map_err(|e| format!("socket: {e}"))?;
    let _ = s.set_recv_buffer_size(buffer);
    let _ = s.set_send_buffer_size(buffer);
    s.bind(&SocketAddr::new(local, 0).into())
        .map_err(|e| format!("bind {local}: {e}"))?;
    s.set_nonblocking(true).map_err(|e| e.to_string())?;
    Ok(s.into())
}

impl Run {
    fn draw(&mut self) -> f64 {
        // xorshift64*, uniform in (0, 1].
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        ((self.rng.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 11) as f64 + 1.0) / (1u64 << 53) as f64
    }

    fn spread(&mut self, mean: Duration, how: Spread) -> Duration {
        let m = mean.as_secs_f64();
        let s = match how {
            Spread::Fixed => m,
            Spread::Exponential => -m * self.draw().ln(),
            Spread::Uniform => m * (0.5 + self.draw()),
        };
        Duration::from_secs_f64(s.clamp(0.0, 3600.0))
    }

    fn fail(&mut self, why: &str) {
        self.report.failed += 1;
        *self.report.failures.entry(why.to_owned()).or_insert(0) += 1;
    }

    fn new_member(&mut self, user: String, agent: bool) -> usize {
        let contact = self.sip.local_addr().expect("bound");
        let media_addr = match self.opts.local {
            IpAddr::V4(a) => a,
            IpAddr::V6(_) => Ipv4Addr::LOCALHOST,
        };
        let i = self.members.len();
        let acct = Account {
            user: user.clone(),
            password: format!("{}{user}", self.opts.password_prefix),
            domain: self.opts.domain.clone(),
            server: Flow {
                transport: Transport::Udp,
                remote: self.opts.server,
                conn: None,
            },
            contact,
            media_addr,
            expires: 3600,
            keepalive: None,
        };
        let seed = self.opts.seed ^ (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ 0x5151;
        self.members.push(Member {
            phone: Phone::new(acct, seed),
            agent,
            stream: None,
            rtp: i % self.rtp.len().max(1),
            call: 0,
            dialled_at: None,
            heard_at: None,
            heard: 0,
            wrong: 0,
            connected: false,
            connected_at: None,
            registered: false,
            gave_up: false,
        });
        self.by_user.insert(user, i);
        i
    }

    fn command(&mut self, now: Instant, i: usize, cmd: Command) {
        self.members[i].phone.command(now, &mut self.ep, cmd);
        self.after(now, i);
    }

    /// Map the member's new transactions, and act on its events.
    fn after(&mut self, now: Instant, i: usize) {
        for tx in self.members[i].phone.drain_sent() {
            self.by_tx.insert(tx, (i, now));
        }
        while let Some(ev) = self.members[i].phone.poll_event() {
            self.on_event(now, i, ev);
        }
    }

    fn on_event(&mut self, now: Instant, i: usize, ev: PhoneEvent) {
        let agent = self.members[i].agent;
        match ev {
            PhoneEvent::Registered { .. } if agent => {
                if let Some(t) = self.members[i].dialled_at.take() {
                    self.register_ms
                        .push(now.duration_since(t).as_secs_f64() * 1000.0);
                }
                if !self.members[i].registered {
                    self.members[i].registered = true;
                    self.report.registered += 1;
                }
            }
            PhoneEvent::RegistrationFailed(_) => {
                self.members[i].dialled_at = None;
                self.report.registration_failures += 1;
            }
            PhoneEvent::Incoming(_) if agent => {
                let at = now + self.opts.answer_after;
                // Agents count their calls in `call` (callers number theirs in the run).
                self.members[i].call += 1;
                let n = self.members[i].call;
                self.timers
                    .push(std::cmp::Reverse((at, Action::Answer(i, n))));
            }
            PhoneEvent::Answered(m) => {
                let m_ = &mut self.members[i];
                if !agent {
                    if let Some(t) = m_.dialled_at {
                        self.setup
                            .push(now.duration_since(t).as_secs_f64() * 1000.0);
                    }
                }
                if self.opts.media {
                    let seed = self.opts.seed ^ m_.call ^ ((i as u64) << 20);
                    let hz = if agent { AGENT_HZ } else { CALLER_HZ };
                    let s = Stream::new(now, seed, &m, Source::Tone(hz), None);
                    if let Some(remote) = m.negotiated.remote {
                        self.by_source.insert((m_.rtp, remote), i);
                    }
                    m_.stream = Some(s);
                } else if !agent {
                    // Without audio, the caller is with their agent once the queue answers.
                    m_.heard_at = Some(now);
                    self.connected_call(now, i);
                }
            }
            PhoneEvent::MediaChanged(m) => {
                let rtp = self.members[i].rtp;
                if let Some(remote) = m.negotiated.remote {
                    self.by_source.insert((rtp, remote), i);
                }
                if let Some(s) = self.members[i].stream.as_mut() {
                    s.update(&m);
                }
            }
            PhoneEvent::Ended { by_us, status, .. } => self.ended(i, by_us, status),
            _ => {}
        }
    }

    /// A caller heard their agent: the call is connected; it ends after its talk time.
    fn connected_call(&mut self, now: Instant, i: usize) {
        let call = self.members[i].call;
        self.members[i].connected = true;
        self.members[i].connected_at = Some(now);
        self.connected += 1;
        self.report.peak_concurrent = self.report.peak_concurrent.max(self.connected);
        let talk = self.spread(self.opts.talk, self.opts.talk_spread);
        self.timers
            .push(std::cmp::Reverse((now + talk, Action::HangUp(i, call))));
    }

    fn ended(&mut self, i: usize, by_us: bool, status: u16) {
        let m = &mut self.members[i];
        let stream = m.stream.take();
        if let Some(s) = &stream {
            self.report.rtp_sent += s.sent;
            self.report.rtp_received += s.rx.packets;
            self.report.rtp_lost += s.rx.lost();
        }
        self.by_source.retain(|_, v| *v != i);
        if m.agent {
            let heard = std::mem::take(&mut m.heard);
            m.heard_at = None;
            if self.opts.media && stream.is_some() && heard < HEARD {
                // The caller's side counts the call; this says which way the audio failed.
                self.report.agents_not_hearing += 1;
            }
            return;
        }
        let connected = std::mem::take(&mut m.connected);
        let gave_up = std::mem::take(&mut m.gave_up);
        if let (true, Some(t)) = (connected, m.connected_at.take()) {
            self.report.call_s += t.elapsed().as_secs_f64();
        }
        let (heard, wrong) = (m.heard, m.wrong);
        m.dialled_at = None;
        m.heard_at = None;
        m.heard = 0;
        m.wrong = 0;
        m.call = 0;
        self.free_callers.push(i);
        if connected {
            self.connected -= 1;
        }
        match (connected, by_us) {
            (true, true) => {
                if self.opts.media && wrong > heard / 20 {
                    self.fail("the caller heard something else than the agent");
                } else {
                    self.report.completed += 1;
                }
            }
            (true, false) => self.fail("cut off before the caller hung up"),
            // Gave up: counted when the timer fired.
            (false, true) if gave_up => {}
            (false, true) => self.fail(&format!("given up by the phone ({status})")),
            (false, false) if status == 0 => self.fail("hung up on before reaching an agent"),
            (false, false) => self.fail(&format!("refused {status}")),
        }
    }

    fn place_call(&mut self, now: Instant) {
        let i = match self.free_callers.pop() {
            Some(i) => i,
            None => {
                let n = self.members.len();
                self.new_member(format!("{}{n:05}", self.opts.caller_prefix), false)
            }
        };
        self.report.calls += 1;
        let call = self.report.calls;
        let m = &mut self.members[i];
        m.call = call;
        m.dialled_at = Some(now);
        let port = self.rtp_ports[m.rtp];
        let max_wait = self.opts.max_wait;
        self.timers
            .push(std::cmp::Reverse((now + max_wait, Action::GiveUp(i, call))));
        let number = self.opts.number.clone();
        self.command(
            now,
            i,
            Command::Dial {
                number,
                rtp_port: port,
            },
        );
    }

    fn fire(&mut self, now: Instant, action: Action) {
        match action {
            Action::Register(i) => self.command(now, i, Command::Register),
            Action::Answer(i, n) => {
                // Only the call that rang for this timer, if it still rings.
                let m = &self.members[i];
                if m.call != n || m.phone.call().is_none() || m.phone.in_call() {
                    return;
                }
                let port = self.rtp_ports[m.rtp];
                self.command(now, i, Command::Answer { rtp_port: port });
            }
            Action::HangUp(i, call) => {
                if self.members[i].call == call {
                    self.members[i].gave_up = true;
                    self.command(now, i, Command::Hangup);
                }
            }
            Action::GiveUp(i, call) => {
                let m = &self.members[i];
                if m.call == call && !m.connected {
                    self.fail("never reached an agent");
                    self.members[i].gave_up = true;
                    self.command(now, i, Command::Hangup);
                }
            }
        }
    }

    fn sip_in(&mut self, buf: &mut [u8]) -> bool {
        let mut any = false;
        while let Ok((n, from)) = self.sip.recv_from(buf) {
            any = true;
            let flow = Flow {
                transport: Transport::Udp,
                remote: from,
                conn: None,
            };
            self.ep.handle_message(Instant::now(), flow, &buf[..n]);
        }
        any
    }

    fn dispatch(&mut self, now: Instant) {
        while let Some(ev) = self.ep.poll_event() {
            let owner = match &ev {
                SipEvent::Request { request, tx, .. } => {
                    let user = sip::uri::Uri::parse(&request.uri)
                        .ok()
                        .and_then(|u| u.user_unescaped());
                    let i = user.and_then(|u| self.by_user.get(&u).copied());
                    if let Some(i) = i {
                        self.by_tx.insert(*tx, (i, now));
                    }
                    i
                }
                SipEvent::Response { tx, .. } | SipEvent::Timeout { tx } => {
                    self.by_tx.get(tx).map(|&(i, _)| i)
                }
                SipEvent::Cancelled { tx } | SipEvent::AckTimeout { tx } => {
                    self.by_tx.get(tx).map(|&(i, _)| i)
                }
                _ => None,
            };
            match owner {
                Some(i) => {
                    self.members[i].phone.handle(now, &mut self.ep, ev);
                    self.after(now, i);
                }
                None => {
                    // A request for nobody here: the endpoint's answer.
                    if let SipEvent::Request { tx, .. } = ev {
                        let _ = self.ep.respond(
                            now,
                            tx,
                            404,
                            sip::message::Headers::default(),
                            bytes::Bytes::new(),
                        );
                    }
                }
            }
        }
    }

    fn flush(&mut self) {
        while let Some(t) = self.ep.poll_transmit() {
            let _ = self.sip.send_to(&t.payload, t.flow.remote);
        }
    }

    fn media(&mut self, now: Instant, buf: &mut [u8]) {
        let arrival = 0.0;
        for k in 0..self.rtp.len() {
            while let Ok((n, from)) = self.rtp[k].recv_from(buf) {
                let Some(&i) = self.by_source.get(&(k, from)) else {
                    continue;
                };
                let m = &mut self.members[i];
                let Some(s) = m.stream.as_mut() else { continue };
                s.receive(now, &buf[..n], arrival);
                // Is it the other side's voice?
                let Some(h) = media::rtp::parse_header(&buf[..n]) else {
                    continue;
                };
                if h.payload_len != media::rtp::SAMPLES_PER_PACKET {
                    continue;
                }
                let payload = &buf[h.payload_offset..h.payload_offset + h.payload_len];
                let law = if h.payload_type == 8 { 1 } else { 0 };
                let want = if m.agent { law } else { 2 + law };
                if payload == self.frames[want].as_slice() {
                    m.heard += 1;
                    if m.heard == 1 {
                        m.heard_at = Some(now);
                    }
                    if !m.agent && m.heard == HEARD && !m.connected {
                        if let (Some(t), Some(h)) = (m.dialled_at, m.heard_at) {
                            self.to_agent
                                .push(h.duration_since(t).as_secs_f64() * 1000.0);
                        }
                        self.connected_call(now, i);
                    }
                } else if m.heard >= HEARD {
                    // Once connected, anything else (music, silence) is wrong.
                    m.wrong += 1;
                }
            }
        }
        for m in &mut self.members {
            let Some(s) = m.stream.as_mut() else { continue };
            while let Some(to) = s.poll_transmit(now, &mut self.out) {
                let _ = self.rtp[m.rtp].send_to(&self.out, to);
            }
        }
    }
}

fn cpu_seconds() -> f64 {
    // utime + stime of this process, in clock ticks (100 per second on Linux).
    std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|s| {
            let rest = s.rsplit_once(')')?.1;
            let f: Vec<&str> = rest.split_whitespace().collect();
            let ticks = f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?;
            Some(ticks / 100.0)
        })
        .unwrap_or(0.0)
}

/// Run the load as `opts` says; `progress` is called about once a second with the report
/// so far.
pub fn run(opts: LoadOptions, mut progress: impl FnMut(&LoadReport)) -> Result<LoadReport, String> {
    use media::recorder::g711::Law;
    let start = Instant::now();
    let cpu0 = cpu_seconds();
    let sip = socket(opts.local, 8 << 20)?;
    let contact = sip.local_addr().map_err(|e| e.to_string())?;
    let n_rtp = opts.rtp_sockets.max(1);
    let mut rtp = Vec::with_capacity(n_rtp);
    let mut rtp_ports = Vec::with_capacity(n_rtp);
    for _ in 0..n_rtp {
        let s = socket(opts.local, 4 << 20)?;
        rtp_ports.push(s.local_addr().map_err(|e| e.to_string())?.port());
        rtp.push(s);
    }
    let cfg = EndpointConfig {
        // Thousands of phones' transactions in one endpoint.
        max_transactions: 1 << 20,
        ..crate::ua::endpoint_config(contact.to_string(), opts.seed)
    };
    let mut run = Run {
        ep: Endpoint::new(cfg, HashMap::new(), start),
        sip,
        rtp,
        rtp_ports,
        members: Vec::new(),
        by_user: HashMap::new(),
        by_tx: HashMap::new(),
        by_source: HashMap::new(),
        free_callers: Vec::new(),
        timers: BinaryHeap::new(),
        rng: opts.seed | 1,
        report: LoadReport::default(),
        setup: Vec::new(),
        to_agent: Vec::new(),
        register_ms: Vec::new(),
        connected: 0,
        next_sweep: start,
        frames: [
            tone_frame(CALLER_HZ, Law::Mu),
            tone_frame(CALLER_HZ, Law::A),
            tone_frame(AGENT_HZ, Law::Mu),
            tone_frame(AGENT_HZ, Law::A),
        ],
        out: Vec::with_capacity(200),
        opts: opts.clone(),
    };
    let mut buf = vec![0u8; 65_535];
    if opts.registrations_only {
        for user in &opts.agents {
            run.new_member(user.clone(), true);
        }
        registrations(&mut run, &mut buf, &mut progress);
        return Ok(finish(run, start, cpu0));
    }
    // Agents register, spread at the registration rate.
    let gap = Duration::from_secs_f64(1.0 / opts.register_rate.max(1.0));
    for (k, user) in opts.agents.iter().enumerate() {
        let i = run.new_member(user.clone(), true);
        run.timers.push(std::cmp::Reverse((
            start + gap * k as u32,
            Action::Register(i),
        )));
    }
    // Registration first: wait until every agent answered (or 30 s).
    let reg_deadline = start + gap * opts.agents.len() as u32 + Duration::from_secs(30);
    loop {
        let now = Instant::now();
        step(&mut run, now, &mut buf);
        let done = run.report.registered + run.report.registration_failures >= opts.agents.len();
        if done || now >= reg_deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    // Then the calls.
    progress(&run.report);
    let t0 = Instant::now();
    let end_of_arrivals = t0 + opts.duration;
    let mut next_arrival = t0;
    let mut next_progress = t0 + Duration::from_secs(1);
    let mean_gap = 1.0 / opts.rate.max(0.001);
    // Evenly spaced arrivals: exactly rate × duration calls, each at its own time (no
    // drift from adding up gaps).
    let fixed_calls = (opts.rate * opts.duration.as_secs_f64()).round() as u64;
    let hard_end = end_of_arrivals + opts.max_wait + opts.talk * 4 + Duration::from_secs(10);
    loop {
        let now = Instant::now();
        loop {
            let more = match opts.arrivals {
                Spread::Fixed => run.report.calls < fixed_calls,
                _ => next_arrival < end_of_arrivals,
            };
            if !more || now < next_arrival {
                break;
            }
            run.place_call(now);
            next_arrival = match opts.arrivals {
                Spread::Fixed => t0 + Duration::from_secs_f64(run.report.calls as f64 * mean_gap),
                Spread::Exponential => {
                    next_arrival + Duration::from_secs_f64(-mean_gap * run.draw().ln())
                }
                Spread::Uniform => {
                    next_arrival + Duration::from_secs_f64(mean_gap * (0.5 + run.draw()))
                }
            };
        }
        step(&mut run, now, &mut buf);
        if now >= next_progress {
            next_progress += Duration::from_secs(1);
            progress(&run.report);
        }
        let busy = run.members.iter().any(|m| !m.agent && m.call != 0);
        let arriving = match opts.arrivals {
            Spread::Fixed => run.report.calls < fixed_calls,
            _ => now < end_of_arrivals,
        };
        if (!arriving && !busy) || now >= hard_end {
            break;
        }
        std::thread::sleep(Duration::from_micros(500));
    }
    // Calls still up are counted, and the agents unregister.
    for i in 0..run.members.len() {
        if !run.members[i].agent && run.members[i].call != 0 {
            run.report.unfinished += 1;
            // Counted as unfinished, not again as completed or failed.
            let m = &mut run.members[i];
            if std::mem::take(&mut m.connected) {
                m.connected_at = None;
                run.connected -= 1;
            }
            m.gave_up = true;
            let now = Instant::now();
            run.command(now, i, Command::Hangup);
        }
    }
    for i in 0..run.members.len() {
        if run.members[i].agent {
            let now = Instant::now();
            run.command(now, i, Command::Unregister);
        }
    }
    let until = Instant::now() + Duration::from_secs(2);
    while Instant::now() < until && run.ep.transaction_count() > 0 {
        step(&mut run, Instant::now(), &mut buf);
        std::thread::sleep(Duration::from_millis(2));
    }
    Ok(finish(run, start, cpu0))
}

/// The report of a finished run.
fn finish(run: Run, start: Instant, cpu0: f64) -> LoadReport {
    let mut r = run.report;
    let expected = r.rtp_received + r.rtp_lost;
    r.loss_pct = if expected == 0 {
        0.0
    } else {
        r.rtp_lost as f64 * 100.0 / expected as f64
    };
    r.setup_ms = Percentiles::of(run.setup);
    r.to_agent_ms = Percentiles::of(run.to_agent);
    r.register_ms = Percentiles::of(run.register_ms);
    r.cpu_s = cpu_seconds() - cpu0;
    if r.call_s > 0.0 {
        r.cores_per_1000_calls = r.cpu_s / r.call_s * 1000.0;
    }
    r.wall_s = start.elapsed().as_secs_f64();
    r
}

/// A registrations-only run: the agents register in turn at the run's rate for its
/// duration (one still waiting for its answer is skipped), then the answers still due are
/// waited for.
fn registrations(run: &mut Run, buf: &mut [u8], progress: &mut impl FnMut(&LoadReport)) {
    let t0 = Instant::now();
    let total = (run.opts.rate * run.opts.duration.as_secs_f64()).round() as u64;
    let gap = 1.0 / run.opts.rate.max(0.001);
    let mut next_progress = t0 + Duration::from_secs(1);
    let mut turn = 0usize;
    let n = run.members.len().max(1);
    while run.report.registrations < total {
        let now = Instant::now();
        let due = ((now - t0).as_secs_f64() / gap) as u64 + 1;
        // Each agent in turn; one whose last REGISTER is not answered yet is passed over
        // (when all are waiting, the rest is due on a later turn).
        let mut passed = 0;
        while run.report.registrations < due.min(total) && passed < n {
            let i = turn % n;
            turn += 1;
            if run.members[i].dialled_at.is_some() {
                passed += 1;
                continue;
            }
            passed = 0;
            run.members[i].dialled_at = Some(now);
            run.report.registrations += 1;
            run.command(now, i, Command::Register);
        }
        step(run, now, buf);
        if now >= next_progress {
            next_progress += Duration::from_secs(1);
            progress(&run.report);
        }
        std::thread::sleep(Duration::from_micros(200));
    }
    let until = Instant::now() + Duration::from_secs(40);
    while Instant::now() < until && run.members.iter().any(|m| m.dialled_at.is_some()) {
        step(run, Instant::now(), buf);
        std::thread::sleep(Duration::from_micros(500));
    }
    // Those never answered count as failed.
    let unanswered = run
        .members
        .iter()
        .filter(|m| m.dialled_at.is_some())
        .count();
    run.report.registration_failures += unanswered;
}

fn step(run: &mut Run, now: Instant, buf: &mut [u8]) {
    if run.ep.poll_timeout().is_some_and(|t| t <= now) {
        run.ep.handle_timeout(now);
    }
    run.sip_in(buf);
    run.dispatch(now);
    while let Some(std::cmp::Reverse((at, _))) = run.timers.peek() {
        if *at > now {
            break;
        }
        let Some(std::cmp::Reverse((_, a))) = run.timers.pop() else {
            break;
        };
        run.fire(now, a);
    }
    // Phones' own timers (registration refreshes) are rare: a sweep now and then.
    if now >= run.next_sweep {
        run.next_sweep = now + Duration::from_millis(100);
        for i in 0..run.members.len() {
            if run.members[i]
                .phone
                .poll_timeout()
                .is_some_and(|t| t <= now)
            {
                run.members[i].phone.handle_timeout(now, &mut run.ep);
                run.after(now, i);
            }
        }
    }
    run.flush();
    if run.opts.media {
        run.media(now, buf);
    }
    // Forget transactions long finished.
    if run.by_tx.len() > 4 * run.members.len() + 1024 {
        run.by_tx
            .retain(|_, (_, t)| now.duration_since(*t) < Duration::from_secs(64));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_of_a_hundred() {
        let p = Percentiles::of((1..=100).map(f64::from).collect());
        assert_eq!(
            (p.n, p.p50, p.p90, p.p99, p.max),
            (100, 50.0, 90.0, 99.0, 100.0)
        );
        assert_eq!(Percentiles::of(Vec::new()).n, 0);
    }

    #[test]
    fn the_tones_frames_repeat_so_one_frame_stands_for_the_voice() {
        use media::recorder::g711::Law;
        for hz in [AGENT_HZ, CALLER_HZ] {
            let (mut a, mut b) = ([0i16; 160], [0i16; 160]);
            Source::Tone(hz).frame(0, &mut a);
            Source::Tone(hz).frame(7, &mut b);
            assert_eq!(a, b, "{hz} Hz");
        }
        assert_ne!(
            tone_frame(AGENT_HZ, Law::Mu),
            tone_frame(CALLER_HZ, Law::Mu)
        );
    }
}
