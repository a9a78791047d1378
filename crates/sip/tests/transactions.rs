//! Transaction layer in virtual time: a client table and a server table wired by a simulated
//! UDP network that loses and delays datagrams (seeded, so every run is the same).

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use sip::message::{Headers, Message, Method, Request, Response};
use sip::parse::parse_message;
use sip::transaction::{TimerConfig, Transactions, TxId, TxOutput, TxState};
use sip::{Flow, Transport};

const CLIENT: usize = 0;
const SERVER: usize = 1;

fn addr(side: usize) -> SocketAddr {
    if side == CLIENT {
        "127.0.0.1:5070".parse().unwrap()
    } else {
        "127.0.0.1:5060".parse().unwrap()
    }
}

fn flow_to(side: usize) -> Flow {
    Flow {
        transport: Transport::Udp,
        remote: addr(side),
        conn: None,
    }
}

/// How the server's transaction user answers a new request.
#[derive(Clone, Copy)]
enum Tu {
    /// Never answers.
    Silent,
    /// Answers at once with this status.
    Final(u16),
    /// Sends 180 at once and this final status after a delay.
    RingThen(u16, Duration),
}

struct Sim {
    t0: Instant,
    now: Instant,
    sides: [Transactions; 2],
    /// (deliver at, seq, to side, bytes)
    wire: BinaryHeap<Reverse<(Instant, u64, usize, Bytes)>>,
    seq: u64,
    rng: ChaCha8Rng,
    /// Probability that a datagram is lost, per direction.
    loss: [f64; 2],
    tu: Tu,
    /// Delayed TU answers: (at, tx, status).
    later: Vec<(Instant, TxId, u16)>,
    /// What each side saw.
    client_responses: Vec<(Duration, u16)>,
    client_timeouts: Vec<Duration>,
    server_requests: Vec<Method>,
    server_timeouts: Vec<Duration>,
    server_acks_for_2xx: usize,
    sent: [Vec<(Duration, String)>; 2],
}

impl Sim {
    fn new(seed: u64, loss: [f64; 2], tu: Tu) -> Sim {
        let t0 = Instant::now();
        Sim {
            t0,
            now: t0,
            sides: [
                Transactions::new(TimerConfig::default(), 1000),
                Transactions::new(TimerConfig::default(), 1000),
            ],
            wire: BinaryHeap::new(),
            seq: 0,
            rng: ChaCha8Rng::seed_from_u64(seed),
            loss,
            tu,
            later: Vec::new(),
            client_responses: Vec::new(),
            client_timeouts: Vec::new(),
            server_requests: Vec::new(),
            server_timeouts: Vec::new(),
            server_acks_for_2xx: 0,
            sent: [Vec::new(), Vec::new()],
        }
    }

    fn elapsed(&self) -> Duration {
        self.now - self.t0
    }

    fn request(method: Method) -> Request {
        let mut h = Headers::default();
        h.push("Via", "SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bKsim1");
        h.push("From", "<sip:a@127.0.0.1>;tag=f1");
        h.push("To", "<sip:b@127.0.0.1>");
        h.push("Call-ID", "sim-call-1");
        h.push("CSeq", format!("1 {method}"));
        h.push("Max-Forwards", "70");
        Request {
            method,
            uri: "sip:b@127.0.0.1:5060".into(),
            headers: h,
            body: Bytes::new(),
        }
    }

    fn response_for(req: &Request, status: u16) -> Response {
        let mut r = Response::new(status);
        for name in ["Via", "From", "To", "Call-ID", "CSeq"] {
            let v = req.headers.get(name).unwrap().to_owned();
            let v = if name == "To" && status > 100 {
                format!("{v};tag=t1")
            } else {
                v
            };
            r.headers.push(name, v);
        }
        r
    }

    /// Move outputs of one side onto the wire or into the record.
    fn drain(&mut self, side: usize) {
        while let Some(out) = self.sides[side].poll_output() {
            match out {
                TxOutput::Transmit(flow, bytes) => {
                    let to = if flow.remote == addr(CLIENT) {
                        CLIENT
                    } else {
                        SERVER
                    };
                    let first = String::from_utf8_lossy(&bytes)
                        .lines()
                        .next()
                        .unwrap_or("")
                        .to_owned();
                    let at = self.elapsed();
                    self.sent[side].push((at, first));
                    if self.rng.random::<f64>() >= self.loss[side] {
                        let delay = Duration::from_millis(self.rng.random_range(5..60));
                        self.seq += 1;
                        self.wire
                            .push(Reverse((self.now + delay, self.seq, to, bytes)));
                    }
                }
                TxOutput::Request(tx, req) => {
                    self.server_requests.push(req.method.clone());
                    match self.tu {
                        Tu::Silent => {}
                        Tu::Final(s) => {
                            let r = Sim::response_for(&req, s);
                            self.sides[SERVER].respond(self.now, tx, &r).unwrap();
                        }
                        Tu::RingThen(s, d) => {
                            let r = Sim::response_for(&req, 180);
                            self.sides[SERVER].respond(self.now, tx, &r).unwrap();
                            self.later.push((self.now + d, tx, s));
                        }
                    }
                }
                TxOutput::AckFor2xx(..) => self.server_acks_for_2xx += 1,
                TxOutput::Response(_, r) => {
                    let at = self.elapsed();
                    self.client_responses.push((at, r.status));
                }
                TxOutput::Timeout(_) => {
                    let at = self.elapsed();
                    if side == CLIENT {
                        self.client_timeouts.push(at);
                    } else {
                        self.server_timeouts.push(at);
                    }
                }
                TxOutput::Terminated(_) => {}
            }
        }
    }

    /// Run until nothing is left to happen or `limit` of virtual time has passed.
    fn run(&mut self, limit: Duration) {
        loop {
            self.drain(CLIENT);
            self.drain(SERVER);
            let mut next: Option<Instant> = None;
            let mut consider = |t: Option<Instant>| {
                if let Some(t) = t {
                    next = Some(next.map_or(t, |n: Instant| n.min(t)));
                }
            };
            consider(self.wire.peek().map(|Reverse((t, ..))| *t));
            consider(self.sides[CLIENT].poll_timeout());
            consider(self.sides[SERVER].poll_timeout());
            consider(self.later.iter().map(|(t, ..)| *t).min());
            let Some(next) = next else { break };
            if next - self.t0 > limit {
                break;
            }
            self.now = self.now.max(next);
            while let Some(Reverse((t, _, to, bytes))) = self.wire.peek().cloned() {
                if t > self.now {
                    break;
                }
                self.wire.pop();
                match parse_message(&bytes, 65_535).unwrap() {
                    Message::Request(r) => {
                        let _ = self.sides[to].receive_request(self.now, flow_to(1 - to), r);
                    }
                    Message::Response(r) => {
                        self.sides[to].receive_response(self.now, r);
                    }
                }
            }
            let now = self.now;
            let due: Vec<_> = self
                .later
                .iter()
                .filter(|(t, ..)| *t <= now)
                .cloned()
                .collect();
            self.later.retain(|(t, ..)| *t > now);
            for (_, tx, s) in due {
                let req = self.sides[SERVER].request(tx).cloned().unwrap();
                let r = Sim::response_for(&req, s);
                let _ = self.sides[SERVER].respond(now, tx, &r);
            }
            self.sides[CLIENT].handle_timeout(now);
            self.sides[SERVER].handle_timeout(now);
        }
    }

    fn start(&mut self, method: Method) -> TxId {
        let id = self.sides[CLIENT]
            .send_request(self.now, flow_to(SERVER), Sim::request(method))
            .unwrap();
        self.drain(CLIENT);
        id
    }
}

#[test]
fn non_invite_survives_heavy_loss_and_the_tu_sees_it_once() {
    for seed in 0..50 {
        let mut sim = Sim::new(seed, [0.4, 0.4], Tu::Final(200));
        sim.start(Method::Options);
        sim.run(Duration::from_secs(60));
        let finals: Vec<_> = sim
            .client_responses
            .iter()
            .filter(|(_, s)| *s >= 200)
            .collect();
        assert!(
            finals.len() == 1 || sim.client_timeouts.len() == 1,
            "seed {seed}: exactly one outcome: {:?} / {:?}",
            sim.client_responses,
            sim.client_timeouts
        );
        // The server's TU never sees a retransmission.
        assert!(
            sim.server_requests.len() <= 1,
            "seed {seed}: {:?}",
            sim.server_requests
        );
        assert!(
            sim.sides[CLIENT].is_empty() && sim.sides[SERVER].is_empty(),
            "seed {seed}: leftovers"
        );
    }
}

#[test]
fn timer_e_backs_off_to_t2_and_timer_f_fires_at_64_t1() {
    let mut sim = Sim::new(1, [0.0, 0.0], Tu::Silent);
    sim.start(Method::Options);
    sim.run(Duration::from_secs(60));
    assert_eq!(sim.client_timeouts, vec![Duration::from_secs(32)]);
    // Sent at 0, 0.5, 1.5, 3.5, 7.5, 11.5, … every 4 s up to 31.5.
    let times: Vec<f64> = sim.sent[CLIENT]
        .iter()
        .map(|(t, _)| t.as_secs_f64())
        .collect();
    assert_eq!(&times[..6], &[0.0, 0.5, 1.5, 3.5, 7.5, 11.5]);
    assert_eq!(times.len(), 11, "{times:?}");
    // The server absorbed every retransmission: the TU saw one request.
    assert_eq!(sim.server_requests, vec![Method::Options]);
}

#[test]
fn timer_b_fires_when_an_invite_gets_no_answer() {
    let mut sim = Sim::new(2, [1.0, 0.0], Tu::Silent);
    sim.start(Method::Invite);
    sim.run(Duration::from_secs(60));
    assert_eq!(sim.client_timeouts, vec![Duration::from_secs(32)]);
    let times: Vec<f64> = sim.sent[CLIENT]
        .iter()
        .map(|(t, _)| t.as_secs_f64())
        .collect();
    // Timer A doubles without a cap: 0, 0.5, 1.5, 3.5, 7.5, 15.5, 31.5.
    assert_eq!(times, vec![0.0, 0.5, 1.5, 3.5, 7.5, 15.5, 31.5]);
}

#[test]
fn provisional_stops_invite_retransmissions() {
    let mut sim = Sim::new(3, [0.0, 0.0], Tu::RingThen(486, Duration::from_secs(10)));
    sim.start(Method::Invite);
    sim.run(Duration::from_secs(120));
    let invites = sim.sent[CLIENT]
        .iter()
        .filter(|(_, l)| l.starts_with("INVITE"))
        .count();
    assert_eq!(invites, 1, "{:?}", sim.sent[CLIENT]);
    let statuses: Vec<u16> = sim.client_responses.iter().map(|(_, s)| *s).collect();
    assert_eq!(statuses, vec![180, 486]);
    // The client ACKed the 486 exactly once (no retransmitted 486 with a lossless net).
    let acks = sim.sent[CLIENT]
        .iter()
        .filter(|(_, l)| l.starts_with("ACK"))
        .count();
    assert_eq!(acks, 1);
    assert!(sim.server_timeouts.is_empty());
    assert!(sim.sides[CLIENT].is_empty() && sim.sides[SERVER].is_empty());
}

#[test]
fn timer_h_fires_when_acks_are_lost_and_g_caps_at_t2() {
    // Client → server traffic after the INVITE is all lost: set loss after the first delivery.
    let mut sim = Sim::new(4, [0.0, 0.0], Tu::Final(486));
    // The INVITE is already on the wire when start returns; from then on everything the
    // client sends (its ACKs, whatever the network delays are) is lost.
    sim.start(Method::Invite);
    sim.loss = [1.0, 0.0];
    sim.run(Duration::from_secs(60));
    // Timer H runs from the 486, which the server sent when the INVITE arrived.
    let first_response = sim.sent[SERVER][0].0;
    assert_eq!(
        sim.server_timeouts,
        vec![first_response + Duration::from_secs(32)]
    );
    let g: Vec<f64> = sim.sent[SERVER]
        .iter()
        .map(|(t, _)| t.as_secs_f64())
        .collect();
    let gaps: Vec<f64> = g
        .windows(2)
        .map(|w| ((w[1] - w[0]) * 1000.0).round() / 1000.0)
        .collect();
    assert_eq!(&gaps[..4], &[0.5, 1.0, 2.0, 4.0]);
    assert!(gaps.iter().all(|&d| d <= 4.0), "{gaps:?}");
}

#[test]
fn invite_2xx_goes_to_accepted_and_acks_go_to_the_tu() {
    let mut sim = Sim::new(5, [0.0, 0.0], Tu::Final(200));
    let id = sim.start(Method::Invite);
    sim.run(Duration::from_millis(200));
    assert_eq!(sim.sides[CLIENT].state(id), Some(TxState::Accepted));
    // The client's TU sends the ACK for 2xx itself (it is not part of the transaction).
    let mut ack = Sim::request(Method::Ack);
    ack.headers.remove("CSeq");
    ack.headers.push("CSeq", "1 ACK");
    ack.headers.remove("Via");
    ack.headers
        .push("Via", "SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bKsim-ack");
    let _ = sim.sides[SERVER].receive_request(sim.now, flow_to(CLIENT), ack);
    sim.run(Duration::from_secs(60));
    assert_eq!(sim.server_acks_for_2xx, 1);
    assert!(sim.sides[CLIENT].is_empty() && sim.sides[SERVER].is_empty());
}

#[test]
fn lossy_invite_with_486_completes_on_many_seeds() {
    for seed in 100..150 {
        let mut sim = Sim::new(seed, [0.3, 0.3], Tu::Final(486));
        sim.start(Method::Invite);
        sim.run(Duration::from_secs(120));
        let finals = sim
            .client_responses
            .iter()
            .filter(|(_, s)| *s >= 300)
            .count();
        assert!(finals == 1 || sim.client_timeouts.len() == 1, "seed {seed}");
        assert!(
            sim.server_requests.len() == 1,
            "seed {seed}: the TU must see one INVITE"
        );
        assert!(
            sim.sides[CLIENT].is_empty() && sim.sides[SERVER].is_empty(),
            "seed {seed}"
        );
    }
}
