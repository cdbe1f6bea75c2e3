//! What the machine remembers of the recent past only: a map bounded by count, the oldest
//! entry forgotten first. Finished tasks and accepted submissions live on disk for good; the
//! machine keeps the recent ones (those whose rows may not be written yet), so its memory
//! stays flat however many tasks a node has run.
//!
//! Owns the bound. Must never be the only record of anything: whatever it forgets is on disk
//! (for submissions the core looks there first; a worker message on a task forgotten here is
//! refused `not_found` rather than `already_decided`, which a worker treats alike).

use std::collections::{HashMap, VecDeque};
use std::hash::Hash;

/// Entries each recent map holds, at most: far more than the writes in flight at any time.
pub(super) const RECENT: usize = 65_536;

/// A map of the newest `cap` entries.
#[derive(Debug)]
pub(super) struct Recent<K, V> {
    map: HashMap<K, V>,
    order: VecDeque<K>,
    cap: usize,
}

impl<K: Eq + Hash + Clone, V> Recent<K, V> {
    pub(super) fn new(cap: usize) -> Self {
        Recent { map: HashMap::new(), order: VecDeque::new(), cap: cap.max(1) }
    }

    /// Remembers `k` (a key already held keeps its place), forgetting the oldest beyond the
    /// bound.
    pub(super) fn insert(&mut self, k: K, v: V) {
        if self.map.insert(k.clone(), v).is_none() {
            self.order.push_back(k);
            while self.order.len() > self.cap {
                if let Some(old) = self.order.pop_front() {
                    self.map.remove(&old);
                }
            }
        }
    }

    pub(super) fn get(&self, k: &K) -> Option<&V> {
        self.map.get(k)
    }

    pub(super) fn contains_key(&self, k: &K) -> bool {
        self.map.contains_key(k)
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.map.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holds_the_newest_entries_and_forgets_the_oldest_first() {
        let mut r = Recent::new(3);
        for i in 0..5u32 {
            r.insert(i, i * 10);
        }
        assert_eq!(r.len(), 3);
        assert!(!r.contains_key(&0) && !r.contains_key(&1));
        assert_eq!(r.get(&4), Some(&40));
        // A key held again keeps its place: it is not counted twice.
        r.insert(2, 21);
        r.insert(5, 50);
        assert!(!r.contains_key(&2), "2 was the oldest");
        assert_eq!(r.len(), 3);
        for i in 100..100_000u32 {
            r.insert(i, 0);
        }
        assert_eq!((r.map.len(), r.order.len()), (3, 3));
    }
}
