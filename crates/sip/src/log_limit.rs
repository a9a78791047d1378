//! Log lines for floods without a line per packet.
//!
//! A flood (rate-limited requests, garbage, oversized datagrams, a banned source that keeps
//! sending) must leave a trace an operator can find, but not one line per packet. A
//! [`LogLimit`] lets the first occurrence of each key (say, source address and reason) be
//! logged, counts the ones after it for an interval, and hands back the count when the
//! interval is over, to be logged as one summary line. A key that keeps occurring gets one
//! summary per interval; a key that went quiet is forgotten.
//!
//! Sans-IO like the rest of the crate: `now` is an input and
//! [`LogLimit::poll_timeout`] says when the next summary is due.
//!
//! ```
//! # use std::time::{Duration, Instant};
//! # use sip::log_limit::LogLimit;
//! let t0 = Instant::now();
//! let mut limit = LogLimit::new(Duration::from_secs(30), 1000);
//! assert!(limit.note(t0, "10.0.0.1"));            // the first: log it
//! for _ in 0..999 {
//!     assert!(!limit.note(t0, "10.0.0.1"));       // the flood: counted, not logged
//! }
//! assert_eq!(limit.poll_timeout(), Some(t0 + Duration::from_secs(30)));
//! let summaries = limit.handle_timeout(t0 + Duration::from_secs(30));
//! assert_eq!(summaries, vec![("10.0.0.1", 999)]); // one summary line
//! ```

use std::collections::{HashMap, VecDeque};
use std::hash::Hash;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy)]
struct Window {
    ends: Instant,
    suppressed: u64,
}

/// First occurrence logged, then one count per key and interval. Memory is bounded by
/// `max_keys`; occurrences of keys beyond it are counted in [`LogLimit::untracked`] instead.
#[derive(Debug)]
pub struct LogLimit<K> {
    interval: Duration,
    max_keys: usize,
    windows: HashMap<K, Window>,
    /// Window ends in time order (the interval is fixed and `now` never goes back).
    order: VecDeque<(Instant, K)>,
    untracked: u64,
}

impl<K: Hash + Eq + Clone> LogLimit<K> {
    /// A limiter with this summary interval, tracking at most `max_keys` keys at once.
    pub fn new(interval: Duration, max_keys: usize) -> Self {
        LogLimit {
            interval: interval.max(Duration::from_millis(1)),
            max_keys: max_keys.max(1),
            windows: HashMap::new(),
            order: VecDeque::new(),
            untracked: 0,
        }
    }

    /// The summary interval.
    pub fn interval(&self) -> Duration {
        self.interval
    }

    /// One occurrence of `key`. True when it should be logged now (the first in its window).
    pub fn note(&mut self, now: Instant, key: K) -> bool {
        if let Some(w) = self.windows.get_mut(&key) {
            w.suppressed += 1;
            return false;
        }
        if self.windows.len() >= self.max_keys {
            self.untracked += 1;
            return false;
        }
        let ends = now + self.interval;
        self.windows.insert(
            key.clone(),
            Window {
                ends,
                suppressed: 0,
            },
        );
        self.order.push_back((ends, key));
        true
    }

    /// Occurrences not tracked because `max_keys` keys were tracked already; reset by
    /// [`LogLimit::take_untracked`].
    pub fn untracked(&self) -> u64 {
        self.untracked
    }

    /// Take the untracked count.
    pub fn take_untracked(&mut self) -> u64 {
        std::mem::take(&mut self.untracked)
    }

    /// When the next window ends.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.order.front().map(|(t, _)| *t)
    }

    /// Close the windows that ended by `now`. Returns each key that occurred again during
    /// its window with the count, for one summary line each; such a key starts a new window
    /// at once (a continuing flood gets one summary per interval and no new "first" line).
    /// Keys that did not occur again are forgotten.
    pub fn handle_timeout(&mut self, now: Instant) -> Vec<(K, u64)> {
        let mut out = Vec::new();
        while let Some((ends, _)) = self.order.front() {
            if *ends > now {
                break;
            }
            let Some((ends, key)) = self.order.pop_front() else {
                break;
            };
            let Some(w) = self.windows.get_mut(&key) else {
                continue;
            };
            if w.ends != ends {
                continue;
            }
            if w.suppressed == 0 {
                self.windows.remove(&key);
                continue;
            }
            out.push((key.clone(), w.suppressed));
            w.suppressed = 0;
            w.ends = now + self.interval;
            self.order.push_back((w.ends, key));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flood_is_one_line_then_one_summary_per_interval_and_a_quiet_key_is_forgotten() {
        let t0 = Instant::now();
        let s = Duration::from_secs(1);
        let mut l = LogLimit::new(Duration::from_secs(10), 100);
        let mut logged = 0;
        // 25 s of 100 packets per second from one source.
        for ms in (0..25_000u64).step_by(10) {
            let now = t0 + Duration::from_millis(ms);
            for (k, n) in l.handle_timeout(now) {
                assert_eq!(k, "a");
                assert!(n > 900, "{n}");
                logged += 1;
            }
            if l.note(now, "a") {
                logged += 1;
            }
        }
        // The first line, then summaries at 10 s and 20 s.
        assert_eq!(logged, 3);
        // Quiet from 25 s on: the summary for 20..30 s, then nothing and the key is gone.
        assert_eq!(l.handle_timeout(t0 + 30 * s).len(), 1);
        assert!(l.handle_timeout(t0 + 40 * s).is_empty());
        assert_eq!(l.poll_timeout(), None);
        assert!(l.note(t0 + 41 * s, "a"), "a new flood is logged again");
    }

    #[test]
    fn keys_beyond_the_bound_are_counted_not_tracked() {
        let t0 = Instant::now();
        let mut l = LogLimit::new(Duration::from_secs(10), 2);
        assert!(l.note(t0, 1));
        assert!(l.note(t0, 2));
        assert!(!l.note(t0, 3));
        assert!(!l.note(t0, 4));
        assert_eq!(l.take_untracked(), 2);
        assert_eq!(l.untracked(), 0);
        assert!(l.handle_timeout(t0 + Duration::from_secs(10)).is_empty());
        assert!(l.note(t0 + Duration::from_secs(11), 3));
    }
}
