//! The RTP port pool: even ports (RTP) of a configured range, each with the odd port above it
//! (RTCP). Freed ports go to the back of the line, so a port is reused as late as possible and
//! stray packets of an ended call do not reach the next one.

use std::collections::VecDeque;

/// Free even ports of a range.
#[derive(Debug)]
pub struct PortPool {
    free: VecDeque<u16>,
    total: usize,
}

impl PortPool {
    /// The even ports `p` with `min <= p` and `p + 1 <= max`.
    pub fn new(min: u16, max: u16) -> PortPool {
        let start = min + (min % 2);
        let free: VecDeque<u16> = (start..max)
            .step_by(2)
            .filter(|p| p.checked_add(1).is_some_and(|q| q <= max))
            .collect();
        PortPool {
            total: free.len(),
            free,
        }
    }

    /// Take the least recently used free port.
    pub fn take(&mut self) -> Option<u16> {
        self.free.pop_front()
    }

    /// Return a port.
    pub fn give(&mut self, port: u16) {
        debug_assert!(!self.free.contains(&port));
        self.free.push_back(port);
    }

    /// Free pairs.
    pub fn available(&self) -> usize {
        self.free.len()
    }

    /// All pairs of the range.
    pub fn capacity(&self) -> usize {
        self.total
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn even_pairs_inside_the_range_reused_last() {
        let mut p = PortPool::new(10_001, 10_010);
        assert_eq!(p.capacity(), 4); // 10002, 10004, 10006, 10008 (10010 has no 10011)
        let a = p.take().unwrap();
        assert_eq!(a, 10_002);
        p.give(a);
        let order: Vec<u16> = std::iter::from_fn(|| p.take()).collect();
        assert_eq!(order, vec![10_004, 10_006, 10_008, 10_002]);
        assert_eq!(p.available(), 0);
        assert_eq!(PortPool::new(65_534, 65_535).capacity(), 1);
        assert_eq!(PortPool::new(20, 10).capacity(), 0);
    }
}
