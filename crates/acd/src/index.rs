//! The index structures behind a routing decision (see the crate docs for how they fit).

use std::collections::{BTreeSet, HashMap};
use std::hash::{BuildHasherDefault, Hasher};

/// A fast hasher for integer ids the call control hands out (not attacker-chosen).
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct IdHasher(u64);

const K: u64 = 0x9E37_79B9_7F4A_7C15;

impl Hasher for IdHasher {
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(5) ^ u64::from(b)).wrapping_mul(K);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0.rotate_left(5) ^ n).wrapping_mul(K);
    }
    fn write_u32(&mut self, n: u32) {
        self.write_u64(u64::from(n));
    }
    fn finish(&self) -> u64 {
        self.0 ^ (self.0 >> 29)
    }
}

/// `HashMap` keyed by small ids.
pub(crate) type IdMap<K, V> = HashMap<K, V, BuildHasherDefault<IdHasher>>;

/// A growable bitset over agent indices.
#[derive(Debug, Clone, Default)]
pub(crate) struct Bitset {
    words: Vec<u64>,
}

impl Bitset {
    pub(crate) fn insert(&mut self, i: u32) {
        let w = (i / 64) as usize;
        if w >= self.words.len() {
            self.words.resize(w + 1, 0);
        }
        self.words[w] |= 1 << (i % 64);
    }

    pub(crate) fn remove(&mut self, i: u32) {
        if let Some(w) = self.words.get_mut((i / 64) as usize) {
            *w &= !(1 << (i % 64));
        }
    }

    pub(crate) fn contains(&self, i: u32) -> bool {
        self.words
            .get((i / 64) as usize)
            .is_some_and(|w| w & (1 << (i % 64)) != 0)
    }
}

/// Strategy-specific rank of a Ready agent within an eligibility class: the agent with the
/// smallest `(primary, secondary, agent)` is offered first.
pub(crate) type Rank = (u64, u64, u32);

/// The Ready agents of one eligibility class.
#[derive(Debug, Clone)]
pub(crate) enum ReadySet {
    /// Ordered by rank (every strategy but random).
    Ordered(BTreeSet<Rank>),
    /// Unordered with O(1) insert, remove and uniform pick (random strategy).
    Indexed {
        items: Vec<u32>,
        pos: IdMap<u32, u32>,
    },
}

impl ReadySet {
    pub(crate) fn new(random: bool) -> Self {
        if random {
            ReadySet::Indexed {
                items: Vec::new(),
                pos: IdMap::default(),
            }
        } else {
            ReadySet::Ordered(BTreeSet::new())
        }
    }

    pub(crate) fn insert(&mut self, rank: Rank) {
        match self {
            ReadySet::Ordered(s) => {
                s.insert(rank);
            }
            ReadySet::Indexed { items, pos } => {
                let a = rank.2;
                if let std::collections::hash_map::Entry::Vacant(e) = pos.entry(a) {
                    e.insert(items.len() as u32);
                    items.push(a);
                }
            }
        }
    }

    pub(crate) fn remove(&mut self, rank: Rank) {
        match self {
            ReadySet::Ordered(s) => {
                s.remove(&rank);
            }
            ReadySet::Indexed { items, pos } => {
                if let Some(i) = pos.remove(&rank.2) {
                    let last = items.pop().expect("non-empty");
                    if last != rank.2 {
                        items[i as usize] = last;
                        pos.insert(last, i);
                    }
                }
            }
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        match self {
            ReadySet::Ordered(s) => s.is_empty(),
            ReadySet::Indexed { items, .. } => items.is_empty(),
        }
    }

    pub(crate) fn len(&self) -> usize {
        match self {
            ReadySet::Ordered(s) => s.len(),
            ReadySet::Indexed { items, .. } => items.len(),
        }
    }

    /// The best-ranked agent.
    pub(crate) fn first(&self) -> Option<u32> {
        match self {
            ReadySet::Ordered(s) => s.first().map(|r| r.2),
            ReadySet::Indexed { items, .. } => items.first().copied(),
        }
    }

    /// The first agent whose rank is at least `from`, wrapping to the first (round-robin).
    pub(crate) fn first_from(&self, from: Rank) -> Option<u32> {
        match self {
            ReadySet::Ordered(s) => s.range(from..).next().or_else(|| s.first()).map(|r| r.2),
            ReadySet::Indexed { .. } => self.first(),
        }
    }

    /// The agent at position `i` of an indexed set (random pick).
    pub(crate) fn nth_indexed(&self, i: usize) -> Option<u32> {
        match self {
            ReadySet::Ordered(s) => s.iter().nth(i).map(|r| r.2),
            ReadySet::Indexed { items, .. } => items.get(i).copied(),
        }
    }

    /// All agents (ring-all).
    pub(crate) fn agents(&self) -> Vec<u32> {
        match self {
            ReadySet::Ordered(s) => s.iter().map(|r| r.2).collect(),
            ReadySet::Indexed { items, .. } => items.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn indexed_set_swap_remove_keeps_positions() {
        let mut s = ReadySet::new(true);
        for a in 0..5 {
            s.insert((0, 0, a));
        }
        s.remove((0, 0, 1));
        s.remove((0, 0, 4));
        let mut got = s.agents();
        got.sort_unstable();
        assert_eq!(got, vec![0, 2, 3]);
        s.remove((0, 0, 0));
        s.remove((0, 0, 2));
        s.remove((0, 0, 3));
        assert!(s.is_empty());
    }

    #[test]
    fn ordered_round_robin_wraps() {
        let mut s = ReadySet::new(false);
        for a in [2u32, 5, 9] {
            s.insert((u64::from(a), 0, a));
        }
        assert_eq!(s.first_from((6, 0, 0)), Some(9));
        assert_eq!(s.first_from((10, 0, 0)), Some(2));
        let mut b = Bitset::default();
        b.insert(130);
        assert!(b.contains(130) && !b.contains(129) && !b.contains(100_000));
    }
}
