//! A counter that many threads add to without fighting over one cache line.
//!
//! The relay's totals ([`crate::relay::RelayStats`]) are bumped for every packet by every
//! call's task, on every worker thread. One shared atomic would bounce its cache line
//! between the cores on each packet; here each thread adds to a stripe of its own (padded to
//! its own cache line) and a read adds the stripes up, so a read is exact at once (no flush
//! interval) and the per-packet cost is an uncontended atomic add.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

/// Stripes; threads beyond this many share them (still correct, only less spread).
const STRIPES: usize = 8;

/// One stripe, alone on its cache line (128 bytes: adjacent-line prefetching pairs lines).
#[derive(Debug, Default)]
#[repr(align(128))]
struct Stripe(AtomicU64);

static NEXT_STRIPE: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    /// This thread's stripe, handed out in turn as threads first count something.
    static STRIPE: usize = NEXT_STRIPE.fetch_add(1, Ordering::Relaxed) % STRIPES;
}

/// A counter (or a gauge: it may go down) read as the sum of per-thread stripes. The
/// methods mirror `AtomicU64`'s so that readers call `load` as before.
#[derive(Debug, Default)]
pub struct Counter {
    stripes: [Stripe; STRIPES],
}

impl Counter {
    fn stripe(&self) -> &AtomicU64 {
        &self.stripes[STRIPE.with(|s| *s)].0
    }

    /// Add `n`.
    pub fn fetch_add(&self, n: u64, order: Ordering) {
        self.stripe().fetch_add(n, order);
    }

    /// Take `n` away (a gauge); stripes wrap, and their sum is the true value.
    pub fn fetch_sub(&self, n: u64, order: Ordering) {
        self.stripe().fetch_sub(n, order);
    }

    /// The current total.
    pub fn load(&self, order: Ordering) -> u64 {
        self.stripes
            .iter()
            .fold(0u64, |sum, s| sum.wrapping_add(s.0.load(order)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    /// Threads adding and taking away at once: the total is exact as soon as they are done,
    /// including a gauge that one thread raises and another lowers.
    #[test]
    fn the_total_is_exact_across_threads() {
        let c = Arc::new(Counter::default());
        let gauge = Arc::new(Counter::default());
        let threads: Vec<_> = (0..12)
            .map(|i| {
                let (c, gauge) = (c.clone(), gauge.clone());
                std::thread::spawn(move || {
                    for _ in 0..10_000 {
                        c.fetch_add(1, Ordering::Relaxed);
                    }
                    if i % 2 == 0 {
                        gauge.fetch_add(5, Ordering::Relaxed);
                    } else {
                        gauge.fetch_sub(3, Ordering::Relaxed);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(c.load(Ordering::Relaxed), 120_000);
        assert_eq!(gauge.load(Ordering::Relaxed), 6 * 5 - 6 * 3);
        c.fetch_add(2, Ordering::Relaxed);
        assert_eq!(c.load(Ordering::Relaxed), 120_002);
    }
}
