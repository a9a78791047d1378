//! ACD routing benchmark: the indexed engine (`acd::Acd`) against the naive scanning engine
//! (`acd::naive::NaiveAcd`, how app_queue / mod_callcenter decide) on the same workload.
//!
//! Workload, per size (agents × skills): one queue per skill, each requiring its skill at a
//! minimum of 1–3 (with an escalation step at 120 s, never reached here); every agent has 4
//! distinct skills at proficiency 1–10 and serves those 4 queues with a random priority.
//! Steady state: every agent that can be busy is on a call and 10 000 calls wait. One cycle:
//! a random connected call hangs up (agent → wrap-up), that agent becomes Ready (the routing
//! decision: it takes its best waiting call), the offer is answered, a new call arrives (joins
//! the line). Both engines get identical commands and make identical choices.
//!
//! Output: per-operation median and p99 (own `Instant` timings, including draining the
//! events), sustained decisions per second, and the speed-up over the naive engine; then
//! criterion's measurement of a full cycle.
//!
//! `ACD_BENCH_SIZES=1000,10000` limits the agent counts (default 1000,10000,100000).

use std::hint::black_box;
use std::time::{Duration, Instant};

use acd::naive::NaiveAcd;
use acd::{
    Acd, AcdCommand, AcdError, AcdEvent, AgentConfig, AgentId, AgentSkill, CallArrival, CallId,
    EscalationStep, Party, QueueConfig, QueueId, QueueMembership, SkillRequirement, Time,
};
use criterion::Criterion;

const WAITING: usize = 10_000;
const SKILLS_PER_AGENT: usize = 4;

/// splitmix64: the root package has no rand dependency, and a fixed seed keeps both engines
/// on the same workload.
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

trait Router {
    fn command(&mut self, now: Time, cmd: AcdCommand) -> Result<(), AcdError>;
    fn next_event(&mut self) -> Option<AcdEvent>;
}

impl Router for Acd {
    fn command(&mut self, now: Time, cmd: AcdCommand) -> Result<(), AcdError> {
        self.handle_command(now, cmd)
    }
    fn next_event(&mut self) -> Option<AcdEvent> {
        self.poll_event()
    }
}

impl Router for NaiveAcd {
    fn command(&mut self, now: Time, cmd: AcdCommand) -> Result<(), AcdError> {
        self.handle_command(now, cmd)
    }
    fn next_event(&mut self) -> Option<AcdEvent> {
        self.poll_event()
    }
}

fn configs(agents: usize, skills: usize) -> (Vec<QueueConfig>, Vec<AgentConfig>) {
    let mut rng = SplitMix(0xACD0 + agents as u64 * 7 + skills as u64);
    let queues = (0..skills)
        .map(|s| {
            let mut q = QueueConfig::named(format!("q{s}"));
            q.skills = vec![SkillRequirement::new(format!("s{s}"), 1 + (s % 3) as u8)];
            q.escalation = vec![EscalationStep {
                after: Duration::from_secs(120),
                lower_by: 2,
                drop_optional: false,
            }];
            q.wrap_up = Duration::from_secs(30);
            q
        })
        .collect();
    let agents = (0..agents)
        .map(|a| {
            let mut cfg = AgentConfig::named(format!("Agent/{a}"));
            while cfg.skills.len() < SKILLS_PER_AGENT {
                let s = rng.below(skills);
                if !cfg.skills.iter().any(|x| x.skill == format!("s{s}")) {
                    cfg.skills
                        .push(AgentSkill::new(format!("s{s}"), 1 + rng.below(10) as u8));
                    cfg.queues.push(QueueMembership {
                        queue: format!("q{s}"),
                        priority: rng.below(10) as u8,
                    });
                }
            }
            cfg
        })
        .collect();
    (queues, agents)
}

#[derive(Default)]
struct OpTimings {
    arrive: Vec<Duration>,
    ready: Vec<Duration>,
    answer: Vec<Duration>,
    hangup: Vec<Duration>,
}

struct Workload<R> {
    router: R,
    now: Time,
    rng: SplitMix,
    queues: usize,
    connected: Vec<(CallId, AgentId)>,
    offers: Vec<(CallId, AgentId)>,
    next_call: u64,
    decisions: u64,
}

impl<R: Router> Workload<R> {
    fn drain(&mut self) {
        while let Some(ev) = self.router.next_event() {
            if let AcdEvent::Offer { call, agent, .. } = ev {
                self.offers.push((call, agent));
                self.decisions += 1;
            }
        }
    }

    fn op(&mut self, cmd: AcdCommand) -> Duration {
        self.now = self.now + Duration::from_millis(1);
        let t = Instant::now();
        self.router.command(self.now, cmd).expect("valid command");
        self.drain();
        t.elapsed()
    }

    fn arrival(&mut self) -> AcdCommand {
        let call = CallId(self.next_call);
        self.next_call += 1;
        let queue = QueueId(self.rng.below(self.queues) as u32);
        AcdCommand::Arrive(CallArrival {
            call,
            queue,
            priority: self.rng.below(3) as u8,
            extra_skills: vec![],
        })
    }

    fn answer_all(&mut self, timings: Option<&mut Vec<Duration>>) {
        let mut sink = Vec::new();
        let out = timings.unwrap_or(&mut sink);
        while let Some((call, agent)) = self.offers.pop() {
            out.push(self.op(AcdCommand::Answer { call, agent }));
            self.connected.push((call, agent));
        }
    }

    /// Brings the engine to steady state: all agents logged in, every agent that can be busy on
    /// a call, `WAITING` calls in line.
    fn new(mut router: R, agents: usize, queues: usize) -> Self {
        let mut w = Workload {
            router: {
                for a in 0..agents {
                    router
                        .command(Time::ZERO, AcdCommand::Login(AgentId(a as u32)))
                        .unwrap();
                }
                while router.next_event().is_some() {}
                router
            },
            now: Time::ZERO,
            rng: SplitMix(42),
            queues,
            connected: Vec::new(),
            offers: Vec::new(),
            next_call: 1,
            decisions: 0,
        };
        let mut waiting = 0;
        while waiting < WAITING {
            let cmd = w.arrival();
            w.op(cmd);
            if w.offers.is_empty() {
                waiting += 1;
            }
            w.answer_all(None);
        }
        w
    }

    fn cycle(&mut self, mut t: Option<&mut OpTimings>) {
        let i = self.rng.below(self.connected.len());
        let (call, agent) = self.connected.swap_remove(i);
        let d = self.op(AcdCommand::Hangup {
            call,
            by: Party::Caller,
        });
        if let Some(t) = t.as_deref_mut() {
            t.hangup.push(d);
        }
        let d = self.op(AcdCommand::Ready(agent));
        if let Some(t) = t.as_deref_mut() {
            t.ready.push(d);
        }
        self.answer_all(t.as_deref_mut().map(|t| &mut t.answer));
        let cmd = self.arrival();
        let d = self.op(cmd);
        if let Some(t) = t {
            t.arrive.push(d);
        }
    }
}

fn build<R: Router>(
    mut router: R,
    add_queue: impl Fn(&mut R, QueueConfig),
    add_agent: impl Fn(&mut R, AgentConfig),
    agents: usize,
    skills: usize,
) -> Workload<R> {
    let (qs, ags) = configs(agents, skills);
    for q in qs {
        add_queue(&mut router, q);
    }
    for a in ags {
        add_agent(&mut router, a);
    }
    Workload::new(router, agents, skills)
}

fn pct(v: &mut [Duration], p: f64) -> Duration {
    v.sort_unstable();
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

struct Measured {
    ops: [(Duration, Duration); 4],
    decisions_per_sec: f64,
}

fn measure<R: Router>(w: &mut Workload<R>, cycles: usize) -> Measured {
    // warm-up
    for _ in 0..cycles / 10 + 1 {
        w.cycle(None);
    }
    let mut t = OpTimings::default();
    let d0 = w.decisions;
    let start = Instant::now();
    for _ in 0..cycles {
        w.cycle(Some(&mut t));
    }
    let elapsed = start.elapsed();
    let decisions = (w.decisions - d0) as f64;
    let mut ops = [(Duration::ZERO, Duration::ZERO); 4];
    for (i, v) in [&mut t.arrive, &mut t.ready, &mut t.answer, &mut t.hangup]
        .into_iter()
        .enumerate()
    {
        ops[i] = (pct(v, 0.5), pct(v, 0.99));
    }
    Measured {
        ops,
        decisions_per_sec: decisions / elapsed.as_secs_f64(),
    }
}

fn ns(d: Duration) -> String {
    format!("{:.0}", d.as_nanos())
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    let sizes: Vec<usize> = std::env::var("ACD_BENCH_SIZES")
        .ok()
        .map(|s| s.split(',').filter_map(|x| x.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![1_000, 10_000, 100_000]);
    const OPS: [&str; 4] = ["call arrives", "agent ready", "answer", "hang-up"];
    println!("ACD routing: {WAITING} calls waiting; times in ns (median / p99), own Instant timings incl. draining events");
    println!(
        "| agents | skills | engine | {} | decisions/s |",
        OPS.iter()
            .map(|o| format!("{o} p50 / p99"))
            .collect::<Vec<_>>()
            .join(" | ")
    );
    let mut summary = Vec::new();
    for &agents in &sizes {
        for skills in [50usize, 500] {
            let setup = Instant::now();
            let mut fast = build(
                Acd::new(1),
                |r, q| {
                    r.add_queue(q).unwrap();
                },
                |r, a| {
                    r.add_agent(a).unwrap();
                },
                agents,
                skills,
            );
            let fast_setup = setup.elapsed();
            let setup = Instant::now();
            let mut slow = build(
                NaiveAcd::new(),
                |r, q| {
                    r.add_queue(q);
                },
                |r, a| {
                    r.add_agent(a).unwrap();
                },
                agents,
                skills,
            );
            let slow_setup = setup.elapsed();
            let fm = measure(&mut fast, 20_000);
            let naive_cycles = (20_000_000 / agents).clamp(100, 5_000);
            let sm = measure(&mut slow, naive_cycles);
            for (name, m) in [("indexed", &fm), ("naive", &sm)] {
                println!(
                    "| {agents} | {skills} | {name} | {} | {:.0} |",
                    m.ops
                        .iter()
                        .map(|(p50, p99)| format!("{} / {}", ns(*p50), ns(*p99)))
                        .collect::<Vec<_>>()
                        .join(" | "),
                    m.decisions_per_sec
                );
            }
            let ratio: Vec<String> = (0..4)
                .map(|i| {
                    format!(
                        "{} {:.0}x",
                        OPS[i],
                        sm.ops[i].0.as_secs_f64() / fm.ops[i].0.as_secs_f64()
                    )
                })
                .collect();
            summary.push(format!(
                "speed-up at {agents} agents / {skills} skills (median): {}; decisions/s {:.0}x  [setup {:.1}s indexed, {:.1}s naive; {} eligibility classes; naive sampled over {naive_cycles} cycles]",
                ratio.join(", "),
                fm.decisions_per_sec / sm.decisions_per_sec,
                fast_setup.as_secs_f64(),
                slow_setup.as_secs_f64(),
                fast.router.class_count(),
            ));

            let mut g = c.benchmark_group(format!("acd_routing/{agents}_agents/{skills}_skills"));
            if agents >= 100_000 {
                g.sample_size(10);
            }
            g.bench_function("indexed_cycle", |b| b.iter(|| fast.cycle(None)));
            g.bench_function("naive_cycle", |b| b.iter(|| slow.cycle(None)));
            g.finish();
            black_box((&fast.decisions, &slow.decisions));
        }
    }
    for s in summary {
        println!("{s}");
    }
    c.final_summary();
}
