//! The in-memory twin of the RocksDB store: same semantics, no durability. For tests and
//! for the state-machine simulations.
//!
//! Owns nothing durable. Must never differ from `RocksStore` in what a reader can observe.

use std::collections::BTreeMap;
use std::sync::RwLock;

use super::{Batch, Entry, KvStore, Op, StoreError, Table};

type Tables = BTreeMap<Table, BTreeMap<Vec<u8>, Vec<u8>>>;

/// In-memory tables.
#[derive(Debug, Default)]
pub struct MemoryStore {
    tables: RwLock<Tables>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }
}

impl KvStore for MemoryStore {
    fn get(&self, t: Table, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        let g = self.tables.read().map_err(|_| StoreError::Engine("poisoned lock".into()))?;
        Ok(g.get(&t).and_then(|m| m.get(key)).cloned())
    }

    fn write(&self, batch: &Batch) -> Result<(), StoreError> {
        // One lock for the whole batch: readers see all of it or none of it.
        let mut g = self.tables.write().map_err(|_| StoreError::Engine("poisoned lock".into()))?;
        for op in batch.ops() {
            match op {
                Op::Put(t, k, v) => {
                    g.entry(*t).or_default().insert(k.clone(), v.clone());
                }
                Op::Delete(t, k) => {
                    if let Some(m) = g.get_mut(t) {
                        m.remove(k);
                    }
                }
            }
        }
        Ok(())
    }

    fn scan(
        &self,
        t: Table,
        prefix: &[u8],
        start: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<Entry>, StoreError> {
        let g = self.tables.read().map_err(|_| StoreError::Engine("poisoned lock".into()))?;
        let Some(m) = g.get(&t) else { return Ok(Vec::new()) };
        let from = start.filter(|s| *s >= prefix).unwrap_or(prefix).to_vec();
        Ok(m.range(from..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .take(limit)
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect())
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn passes_the_shared_suite() {
        super::super::suite::run(&super::MemoryStore::new());
    }
}
