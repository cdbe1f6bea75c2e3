//! The Merkle trees of closed epochs, built once and kept for the reads that prove against
//! them: a receipt's path to its epoch's receipts root (`/proof`, `/bundle`, `/audit`,
//! `/ots`, `/timestamp`), and a worker's entry in an epoch's ledger snapshot (`/v1/ledger`).
//! Without it each such read loads and hashes every receipt (or entry) of the epoch. A
//! closed epoch never changes, so a tree kept is never stale.
//!
//! Owns the cache and its bounds: the few epochs read last, and at most `MAX_CACHED_LEAVES`
//! leaves in all (an epoch larger than that is built per read, as before). Must never hold
//! the open epoch, nor write.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use cairn_spec::{LedgerEntry, MerkleProof, MerkleTree, Object, PubKey};

use crate::lifecycle_store::{self as ls, LoadError};
use crate::store::KvStore;

/// Epochs of each kind kept at most.
pub const MAX_CACHED_EPOCHS: usize = 4;
/// Leaves kept at most across all trees of a kind (a tree holds about twice its leaves in
/// 32-byte nodes: 2^20 leaves is about 64 MiB).
pub const MAX_CACHED_LEAVES: usize = 1 << 20;

/// An epoch's ledger snapshot, its tree, and where each worker's entry is.
pub struct LedgerIndex {
    entries: Vec<LedgerEntry>,
    tree: MerkleTree,
    by_worker: HashMap<PubKey, u32>,
}

impl LedgerIndex {
    /// `worker`'s entry, its index and its Merkle path, if it has one.
    pub fn entry(&self, worker: &PubKey) -> Option<(LedgerEntry, MerkleProof)> {
        let i = *self.by_worker.get(worker)?;
        let e = self.entries.get(i as usize)?.clone();
        Some((e, self.tree.proof(i)?))
    }
}

/// Most recently used first; bounded by count and by leaves.
struct Lru<V> {
    items: VecDeque<(u32, Arc<V>, usize)>,
}

impl<V> Lru<V> {
    fn get(&mut self, key: u32) -> Option<Arc<V>> {
        let i = self.items.iter().position(|(k, _, _)| *k == key)?;
        let item = self.items.remove(i)?;
        let v = item.1.clone();
        self.items.push_front(item);
        Some(v)
    }

    fn put(&mut self, key: u32, v: Arc<V>, leaves: usize) {
        if leaves > MAX_CACHED_LEAVES {
            return;
        }
        self.items.retain(|(k, _, _)| *k != key);
        self.items.push_front((key, v, leaves));
        while self.items.len() > MAX_CACHED_EPOCHS
            || self.items.iter().map(|(_, _, n)| n).sum::<usize>() > MAX_CACHED_LEAVES
        {
            self.items.pop_back();
        }
    }
}

/// The cache, shared by the API's handlers.
pub struct EpochTrees {
    receipts: Mutex<Lru<MerkleTree>>,
    ledgers: Mutex<Lru<LedgerIndex>>,
}

impl Default for EpochTrees {
    fn default() -> Self {
        EpochTrees {
            receipts: Mutex::new(Lru { items: VecDeque::new() }),
            ledgers: Mutex::new(Lru { items: VecDeque::new() }),
        }
    }
}

impl EpochTrees {
    /// The Merkle path of the receipt at `index` of closed epoch `epoch` (as
    /// [`ls::receipt_path`]), from the epoch's tree, built and checked against the header's
    /// receipts root the first time. `None` while the epoch is open.
    pub fn receipt_path(
        &self,
        s: &dyn KvStore,
        epoch: u32,
        index: u32,
    ) -> Result<Option<MerkleProof>, LoadError> {
        let cached = self.receipts.lock().ok().and_then(|mut c| c.get(epoch));
        let tree = match cached {
            Some(t) => t,
            None => {
                let Some(tree) = ls::receipts_tree(s, epoch)? else { return Ok(None) };
                let tree = Arc::new(tree);
                if let Ok(mut c) = self.receipts.lock() {
                    c.put(epoch, tree.clone(), tree.len());
                }
                tree
            }
        };
        tree.proof(index).map(Some).ok_or_else(|| ls::bad_receipt_index(epoch, index))
    }

    /// Epoch `height`'s ledger snapshot, indexed by worker (`None` when none is stored).
    pub fn ledger(&self, s: &dyn KvStore, height: u32) -> Result<Option<Arc<LedgerIndex>>, LoadError> {
        if let Some(l) = self.ledgers.lock().ok().and_then(|mut c| c.get(height)) {
            return Ok(Some(l));
        }
        let Some(entries) = ls::ledger_snapshot(s, height)? else { return Ok(None) };
        let n = entries.len();
        let by_worker = entries
            .iter()
            .enumerate()
            .map(|(i, e)| (e.worker, u32::try_from(i).unwrap_or(u32::MAX)))
            .collect();
        let tree = MerkleTree::new(entries.iter().map(|e| e.id()).collect());
        let index = Arc::new(LedgerIndex { entries, tree, by_worker });
        if let Ok(mut c) = self.ledgers.lock() {
            c.put(height, index.clone(), n);
        }
        Ok(Some(index))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cache_keeps_the_newest_few_within_its_leaves() {
        let mut c: Lru<u32> = Lru { items: VecDeque::new() };
        for k in 0..6u32 {
            c.put(k, Arc::new(k), 10);
        }
        assert_eq!(c.items.len(), MAX_CACHED_EPOCHS);
        assert!(c.get(0).is_none() && c.get(1).is_none(), "the oldest went first");
        assert_eq!(c.get(2).as_deref(), Some(&2));
        // 2 is now the newest: a big one pushes out the others, not it... unless together
        // they pass the leaf bound, oldest first.
        c.put(9, Arc::new(9), MAX_CACHED_LEAVES - 10);
        assert_eq!(c.get(9).as_deref(), Some(&9));
        assert_eq!(c.items.len(), 2, "{:?}", c.items.iter().map(|i| i.0).collect::<Vec<_>>());
        // Too big to keep at all.
        c.put(10, Arc::new(10), MAX_CACHED_LEAVES + 1);
        assert!(c.get(10).is_none());
    }
}
