//! Erlang C: the M/M/c queue predictions workforce planners use (Poisson arrivals, exponential
//! handle times, `c` agents, callers never abandon).
//!
//! With traffic `A = λ · AHT` erlangs and `c` agents, the probability that a caller waits is
//! `C(c, A) = c·B / (c − A·(1 − B))` where `B` is Erlang B, computed with the stable recursion
//! `B(0) = 1`, `B(k) = A·B(k−1) / (k + A·B(k−1))`. Then the service level for threshold `t` is
//! `1 − C · e^(−(c − A)·t / AHT)`, the average speed of answer `C · AHT / (c − A)` and the
//! occupancy `A / c`. When `A ≥ c` the queue grows without bound.

use serde::Serialize;

/// Erlang C predictions for one set of inputs.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct ErlangC {
    /// Offered traffic in erlangs.
    pub traffic: f64,
    /// Probability that a caller waits at all.
    pub prob_wait: f64,
    /// Fraction of calls answered within the threshold.
    pub service_level: f64,
    /// Average speed of answer in seconds (infinite when overloaded).
    pub asa_secs: f64,
    /// Agent occupancy (capped at 1).
    pub occupancy: f64,
}

/// Erlang B blocking probability for `agents` servers and `traffic` erlangs.
pub fn erlang_b(agents: u32, traffic: f64) -> f64 {
    let mut b = 1.0;
    for k in 1..=agents {
        b = traffic * b / (f64::from(k) + traffic * b);
    }
    b
}

/// Erlang C predictions for `calls_per_hour` arrivals, `aht_secs` average handle time,
/// `agents` agents and a service-level threshold of `threshold_secs`.
pub fn erlang_c(calls_per_hour: f64, aht_secs: f64, agents: u32, threshold_secs: f64) -> ErlangC {
    let traffic = calls_per_hour / 3600.0 * aht_secs;
    let c = f64::from(agents);
    if agents == 0 || traffic >= c {
        return ErlangC {
            traffic,
            prob_wait: 1.0,
            service_level: 0.0,
            asa_secs: f64::INFINITY,
            occupancy: 1.0,
        };
    }
    let b = erlang_b(agents, traffic);
    let prob_wait = c * b / (c - traffic * (1.0 - b));
    ErlangC {
        traffic,
        prob_wait,
        service_level: 1.0 - prob_wait * (-(c - traffic) * threshold_secs / aht_secs).exp(),
        asa_secs: prob_wait * aht_secs / (c - traffic),
        occupancy: traffic / c,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_textbook_example() {
        // 360 calls/h, AHT 240 s -> 24 erlangs; 28 agents, 20 s threshold.
        // Reference values computed independently (Python, same formulas): Pw 0.33314,
        // SL 0.76130, ASA 19.988 s, occupancy 85.7 %.
        let e = erlang_c(360.0, 240.0, 28, 20.0);
        assert!((e.traffic - 24.0).abs() < 1e-9);
        assert!((e.prob_wait - 0.33314).abs() < 1e-4, "{e:?}");
        assert!((e.service_level - 0.76130).abs() < 1e-4, "{e:?}");
        assert!((e.asa_secs - 19.988).abs() < 1e-2, "{e:?}");
        assert!((e.occupancy - 24.0 / 28.0).abs() < 1e-9);
    }

    #[test]
    fn single_server_is_mm1() {
        // M/M/1: P(wait) = rho, ASA = rho / (mu - lambda)
        let e = erlang_c(30.0, 60.0, 1, 0.0);
        assert!((e.prob_wait - 0.5).abs() < 1e-12);
        assert!((e.asa_secs - 60.0).abs() < 1e-9);
        assert!(erlang_c(100.0, 60.0, 1, 20.0).asa_secs.is_infinite());
    }
}
