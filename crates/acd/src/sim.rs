//! What-if simulator for workforce planners: drives the real [`Acd`] engine in virtual time
//! with Poisson arrivals, exponential or fixed handle times and optional caller patience, and
//! reports service level, ASA, abandon rate and occupancy beside the Erlang C prediction for
//! the same inputs. Pure and seeded: the same [`SimConfig`] always gives the same report.
//!
//! The model: one queue, no skills, longest-idle, `agents` agents logged in for the whole run,
//! offers answered at once, no wrap-up. Each caller has an exponential patience with mean
//! `patience` (if set) and abandons when it runs out before an agent answers. The first 5 %
//! of the simulated time is a warm-up excluded from the figures (the queue starts empty);
//! figures are read from the engine's own statistics at the end of the run.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::Duration;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::config::{AgentConfig, QueueConfig, QueueMembership};
use crate::engine::Acd;
use crate::erlang::{erlang_c, ErlangC};
use crate::stats::{AgentCounters, QueueCounters};
use crate::types::{
    AcdCommand, AcdEvent, AgentId, CallArrival, CallId, CallState, Party, QueueId, Time,
};

/// Distribution of handle times.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum HandleTime {
    /// Exponential with mean AHT (Erlang C's assumption).
    #[default]
    Exponential,
    /// Every call takes exactly AHT.
    Fixed,
}

/// Inputs of a simulation run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SimConfig {
    /// Mean arrival rate (Poisson).
    pub calls_per_hour: f64,
    /// Average handle time (serialized as seconds).
    #[serde(with = "secs")]
    pub aht: Duration,
    /// Handle-time distribution.
    pub aht_dist: HandleTime,
    /// Mean caller patience (exponential); `None`: callers never abandon. Seconds.
    #[serde(with = "opt_secs")]
    pub patience: Option<Duration>,
    /// Agents logged in.
    pub agents: u32,
    /// Service-level threshold (seconds).
    #[serde(with = "secs")]
    pub sl_threshold: Duration,
    /// Simulated hours (including the 5 % warm-up).
    pub hours: f64,
    /// RNG seed.
    pub seed: u64,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            calls_per_hour: 100.0,
            aht: Duration::from_secs(180),
            aht_dist: HandleTime::Exponential,
            patience: None,
            agents: 7,
            sl_threshold: Duration::from_secs(20),
            hours: 8.0,
            seed: 1,
        }
    }
}

/// Why a simulation cannot run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SimError {
    /// An input is out of range (the message names it).
    #[error("invalid simulation input: {0}")]
    BadInput(&'static str),
}

/// Figures of one run, beside the Erlang C prediction.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SimReport {
    /// The inputs.
    pub config: SimConfig,
    /// Calls that arrived after the warm-up.
    pub calls: u64,
    /// Calls answered after the warm-up.
    pub answered: u64,
    /// Calls abandoned after the warm-up.
    pub abandoned: u64,
    /// Answered within the threshold ÷ answered.
    pub service_level: Option<f64>,
    /// Answered within the threshold ÷ (answered + abandoned).
    pub service_level_with_abandons: Option<f64>,
    /// Average speed of answer, seconds.
    pub asa_secs: Option<f64>,
    /// Abandoned ÷ (answered + abandoned).
    pub abandon_rate: Option<f64>,
    /// Agent occupancy.
    pub occupancy: Option<f64>,
    /// Measured average handle time, seconds.
    pub aht_secs: Option<f64>,
    /// Erlang C for the same inputs (it ignores patience and the handle-time distribution).
    pub erlang_c: ErlangC,
}

/// Durations as fractional seconds in JSON.
mod secs {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub(super) fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(d.as_secs_f64())
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        Duration::try_from_secs_f64(f64::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

mod opt_secs {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub(super) fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.serialize_some(&d.as_secs_f64()),
            None => s.serialize_none(),
        }
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<Duration>, D::Error> {
        Option::<f64>::deserialize(d)?
            .map(|v| Duration::try_from_secs_f64(v).map_err(serde::de::Error::custom))
            .transpose()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum SimEvent {
    Arrival,
    Hangup(CallId),
    Abandon(CallId),
}

fn exp(rng: &mut ChaCha8Rng, mean_secs: f64) -> Duration {
    let u: f64 = rng.random();
    Duration::from_secs_f64(-mean_secs * (1.0 - u).ln())
}

fn sub(a: &QueueCounters, b: &QueueCounters) -> QueueCounters {
    QueueCounters {
        entered: a.entered - b.entered,
        refused: a.refused - b.refused,
        answered: a.answered - b.answered,
        answered_in_sl: a.answered_in_sl - b.answered_in_sl,
        abandoned: a.abandoned - b.abandoned,
        short_abandoned: a.short_abandoned - b.short_abandoned,
        timed_out: a.timed_out - b.timed_out,
        overflowed: a.overflowed - b.overflowed,
        left_empty: a.left_empty - b.left_empty,
        completed: a.completed - b.completed,
        total_hold: a.total_hold - b.total_hold,
        total_talk: a.total_talk - b.total_talk,
        total_wrap: a.total_wrap - b.total_wrap,
    }
}

fn agent_totals(acd: &Acd, agents: u32, at: Time) -> AgentCounters {
    let mut t = AgentCounters::default();
    for a in 0..agents {
        if let Some(s) = acd.agent_stats(AgentId(a), at) {
            t.add(&s.counters);
        }
    }
    t
}

/// Runs one simulation.
pub fn simulate(cfg: &SimConfig) -> Result<SimReport, SimError> {
    if !(cfg.calls_per_hour.is_finite() && cfg.calls_per_hour > 0.0) {
        return Err(SimError::BadInput("calls per hour must be positive"));
    }
    if cfg.aht.is_zero() {
        return Err(SimError::BadInput("AHT must be positive"));
    }
    if cfg.agents == 0 {
        return Err(SimError::BadInput("at least one agent"));
    }
    if !(cfg.hours.is_finite() && cfg.hours > 0.0 && cfg.hours <= 1.0e5) {
        return Err(SimError::BadInput("hours must be within (0, 100000]"));
    }
    if cfg.patience.is_some_and(|p| p.is_zero()) {
        return Err(SimError::BadInput("patience must be positive"));
    }
    let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed);
    let mut acd = Acd::new(cfg.seed);
    let mut q = QueueConfig::named("sim");
    q.ring_timeout = None;
    q.auto_pause_after = 0;
    q.no_answer_rest = Duration::ZERO;
    q.service_level = cfg.sl_threshold;
    q.short_abandon = Duration::ZERO;
    let queue: QueueId = acd.add_queue(q).expect("valid queue");
    for a in 0..cfg.agents {
        let mut agent = AgentConfig::named(format!("Agent/{a}"));
        agent.queues.push(QueueMembership {
            queue: "sim".into(),
            priority: 0,
        });
        let id = acd.add_agent(agent).expect("valid agent");
        acd.handle_command(Time::ZERO, AcdCommand::Login(id))
            .expect("login");
    }
    let end = Time::from_secs_f64(cfg.hours * 3600.0);
    let warmup_end = Time::from_secs_f64(cfg.hours * 3600.0 * 0.05);
    let mean_gap = 3600.0 / cfg.calls_per_hour;
    let aht = cfg.aht.as_secs_f64();

    let mut pending: BinaryHeap<Reverse<(Time, u64, SimEvent)>> = BinaryHeap::new();
    let mut tie = 0u64;
    let mut push = |heap: &mut BinaryHeap<_>, t: Time, ev: SimEvent| {
        tie += 1;
        heap.push(Reverse((t, tie, ev)));
    };
    push(
        &mut pending,
        Time::ZERO + exp(&mut rng, mean_gap),
        SimEvent::Arrival,
    );
    let mut next_call = 1u64;
    let mut warm: Option<(QueueCounters, AgentCounters)> = None;
    loop {
        let own = pending.peek().map(|Reverse((t, _, _))| *t);
        let timer = acd.poll_timeout();
        let now = match (own, timer) {
            (Some(a), Some(b)) => a.min(b),
            (Some(a), None) => a,
            (None, Some(b)) => b,
            (None, None) => break,
        };
        if warm.is_none() && now > warmup_end {
            let s = acd.queue_stats(queue, warmup_end).expect("queue");
            warm = Some((s.counters, agent_totals(&acd, cfg.agents, warmup_end)));
        }
        if now > end {
            break;
        }
        if timer == Some(now) {
            acd.handle_timeout(now);
        } else {
            let Reverse((_, _, ev)) = pending.pop().expect("peeked");
            match ev {
                SimEvent::Arrival => {
                    let call = CallId(next_call);
                    next_call += 1;
                    acd.handle_command(
                        now,
                        AcdCommand::Arrive(CallArrival {
                            call,
                            queue,
                            priority: 0,
                            extra_skills: vec![],
                        }),
                    )
                    .expect("arrival");
                    if let Some(p) = cfg.patience {
                        let at = now + exp(&mut rng, p.as_secs_f64());
                        push(&mut pending, at, SimEvent::Abandon(call));
                    }
                    push(
                        &mut pending,
                        now + exp(&mut rng, mean_gap),
                        SimEvent::Arrival,
                    );
                }
                SimEvent::Hangup(call) => {
                    acd.handle_command(
                        now,
                        AcdCommand::Hangup {
                            call,
                            by: Party::Caller,
                        },
                    )
                    .expect("hangup");
                }
                SimEvent::Abandon(call) => {
                    if matches!(
                        acd.call_state(call),
                        Some(CallState::Waiting | CallState::Offered)
                    ) {
                        acd.handle_command(now, AcdCommand::Abandon(call))
                            .expect("abandon");
                    }
                }
            }
        }
        while let Some(ev) = acd.poll_event() {
            if let AcdEvent::Offer { call, agent, .. } = ev {
                acd.handle_command(now, AcdCommand::Answer { call, agent })
                    .expect("answer");
                let handle = match cfg.aht_dist {
                    HandleTime::Exponential => exp(&mut rng, aht),
                    HandleTime::Fixed => cfg.aht,
                };
                push(&mut pending, now + handle, SimEvent::Hangup(call));
            }
        }
    }
    let stats = acd.queue_stats(queue, end).expect("queue");
    let (warm_q, warm_a) = warm.unwrap_or_default();
    let c = sub(&stats.counters, &warm_q);
    let all = agent_totals(&acd, cfg.agents, end);
    let busy = (all.offered + all.on_call + all.wrap_up)
        - (warm_a.offered + warm_a.on_call + warm_a.wrap_up);
    let staffed = busy + (all.ready - warm_a.ready);
    let ratio = |n: u64, d: u64| (d > 0).then(|| n as f64 / d as f64);
    Ok(SimReport {
        config: cfg.clone(),
        calls: c.entered,
        answered: c.answered,
        abandoned: c.abandoned,
        service_level: ratio(c.answered_in_sl, c.answered),
        service_level_with_abandons: ratio(c.answered_in_sl, c.answered + c.abandoned),
        asa_secs: (c.answered > 0).then(|| c.total_hold.as_secs_f64() / c.answered as f64),
        abandon_rate: ratio(c.abandoned, c.answered + c.abandoned),
        occupancy: (!staffed.is_zero()).then(|| busy.as_secs_f64() / staffed.as_secs_f64()),
        aht_secs: c.aht().map(|d| d.as_secs_f64()),
        erlang_c: erlang_c(
            cfg.calls_per_hour,
            aht,
            cfg.agents,
            cfg.sl_threshold.as_secs_f64(),
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(calls_per_hour: f64, aht: u64, agents: u32, hours: f64) -> SimConfig {
        SimConfig {
            calls_per_hour,
            aht: Duration::from_secs(aht),
            agents,
            hours,
            ..SimConfig::default()
        }
    }

    fn check(c: &SimConfig, sl_tol: f64, asa_tol_rel: f64) {
        let r = simulate(c).unwrap();
        let e = r.erlang_c;
        let sl = r.service_level.unwrap();
        let asa = r.asa_secs.unwrap();
        let occ = r.occupancy.unwrap();
        assert!(
            (sl - e.service_level).abs() < sl_tol,
            "SL {sl} vs Erlang C {} ({c:?})",
            e.service_level
        );
        assert!(
            (asa - e.asa_secs).abs() < asa_tol_rel * e.asa_secs + 1.0,
            "ASA {asa} vs Erlang C {} ({c:?})",
            e.asa_secs
        );
        assert!(
            (occ - e.occupancy).abs() < 0.03,
            "occupancy {occ} vs {} ({c:?})",
            e.occupancy
        );
        assert_eq!(r.abandoned, 0);
        assert!(r.calls as f64 > 0.9 * c.calls_per_hour * c.hours * 0.95);
    }

    // Tolerances from the measured spread (release build, `spread_over_seeds`, 20 seeds, the
    // same run lengths of 18 000–72 000 calls): one standard deviation of SL was at most 0.016
    // and of ASA at most 12 % of the mean, while the means over 20 seeds sat within 0.005 (SL)
    // and 5 % (ASA) of Erlang C. The bounds are 4 standard deviations: SL ± 0.065, ASA ± 50 %
    // (+ 1 s), occupancy ± 0.03. Longer runs shrink the spread as 1/sqrt(hours).
    #[test]
    fn agrees_with_erlang_c_small_team() {
        check(&cfg(100.0, 180, 7, 200.0), 0.065, 0.5);
    }

    #[test]
    fn agrees_with_erlang_c_large_team() {
        check(&cfg(360.0, 240, 28, 200.0), 0.065, 0.5);
    }

    #[test]
    fn agrees_with_erlang_c_three_agents() {
        check(&cfg(30.0, 300, 3, 600.0), 0.065, 0.5);
    }

    #[test]
    #[ignore = "long: prints the spread over seeds behind the tolerances above"]
    fn spread_over_seeds() {
        for base in [
            cfg(100.0, 180, 7, 200.0),
            cfg(360.0, 240, 28, 200.0),
            cfg(30.0, 300, 3, 600.0),
        ] {
            let runs: Vec<SimReport> = (0..20)
                .map(|s| {
                    simulate(&SimConfig {
                        seed: s,
                        ..base.clone()
                    })
                    .unwrap()
                })
                .collect();
            let sd = |f: &dyn Fn(&SimReport) -> f64| {
                let v: Vec<f64> = runs.iter().map(f).collect();
                let m = v.iter().sum::<f64>() / v.len() as f64;
                (
                    m,
                    (v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (v.len() - 1) as f64).sqrt(),
                )
            };
            let (slm, sls) = sd(&|r| r.service_level.unwrap());
            let (am, asd) = sd(&|r| r.asa_secs.unwrap());
            println!(
                "{base:?}: SL mean {slm:.4} sd {sls:.4} (Erlang C {:.4}); ASA mean {am:.2} sd {asd:.2} (Erlang C {:.2})",
                runs[0].erlang_c.service_level, runs[0].erlang_c.asa_secs
            );
            // the mean of 20 runs is within 4 standard errors of Erlang C
            let n = (runs.len() as f64).sqrt();
            assert!((slm - runs[0].erlang_c.service_level).abs() < 4.0 * sls / n);
            assert!((am - runs[0].erlang_c.asa_secs).abs() < 4.0 * asd / n);
        }
    }

    #[test]
    fn patience_causes_abandons_and_same_seed_same_report() {
        let c = SimConfig {
            patience: Some(Duration::from_secs(30)),
            agents: 5,
            hours: 20.0,
            ..SimConfig::default()
        };
        let a = simulate(&c).unwrap();
        assert!(a.abandoned > 0 && a.abandon_rate.unwrap() > 0.0);
        assert_eq!(a, simulate(&c).unwrap());
        let fixed = simulate(&SimConfig {
            aht_dist: HandleTime::Fixed,
            ..c.clone()
        })
        .unwrap();
        assert!((fixed.aht_secs.unwrap() - 180.0).abs() < 1e-3);
        assert!(simulate(&SimConfig { agents: 0, ..c }).is_err());
    }
}
