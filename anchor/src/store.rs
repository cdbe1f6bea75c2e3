//! Persistence seam of the anchor state machine: a changeset (the bounded head state and the
//! anchor records that changed) written atomically, and read back at start.
//!
//! Owns the trait and an in-memory twin used by tests (whose snapshots stand in for "what
//! was on disk when the process was killed"). Must never be written to after a broadcast
//! without the write that describes it having succeeded first: the machine orders its
//! effects persist-then-broadcast, and drivers stop at the first failed write.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use bitcoin::Txid;

use crate::machine::{AnchorRecord, Head};

/// What one state transition changed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Changeset {
    /// The whole head state (bounded in size: recent blocks, own UTXOs, queues).
    pub head: Head,
    /// Anchor records created or changed.
    pub records: Vec<AnchorRecord>,
}

/// Durable storage of the anchor state. `commit` is atomic: all of a changeset or none.
pub trait AnchorStore {
    /// Storage error.
    type Error: std::error::Error + Send + Sync + 'static;
    /// The persisted head and every record, or `None` on first start.
    fn load(&self) -> Result<Option<(Head, Vec<AnchorRecord>)>, Self::Error>;
    /// Writes a changeset atomically and durably.
    fn commit(&mut self, cs: &Changeset) -> Result<(), Self::Error>;
}

#[derive(Default, Debug, Clone)]
struct MemoryInner {
    head: Option<Head>,
    records: BTreeMap<Txid, AnchorRecord>,
    commits: u64,
    fail_next: bool,
}

/// In-memory store. Clones share the same contents (so a test can keep a handle while a
/// driver owns another); `snapshot` copies the contents as a crash would leave them.
#[derive(Default, Debug, Clone)]
pub struct MemoryStore {
    inner: Arc<Mutex<MemoryInner>>,
}

/// Error of the in-memory store (only when a test asks for one).
#[derive(Debug, thiserror::Error)]
#[error("memory store: {0}")]
pub struct MemoryStoreError(String);

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, MemoryInner> {
        // A poisoned lock only means another test thread panicked; the data is still usable.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// An independent copy of the current contents.
    pub fn snapshot(&self) -> MemoryStore {
        let copy = self.lock().clone();
        MemoryStore { inner: Arc::new(Mutex::new(copy)) }
    }

    /// Number of commits so far.
    pub fn commits(&self) -> u64 {
        self.lock().commits
    }

    /// Makes the next commit fail (to test that nothing is broadcast after a failed write).
    pub fn fail_next_commit(&self) {
        self.lock().fail_next = true;
    }
}

impl AnchorStore for MemoryStore {
    type Error = MemoryStoreError;

    fn load(&self) -> Result<Option<(Head, Vec<AnchorRecord>)>, Self::Error> {
        let g = self.lock();
        Ok(g.head.clone().map(|h| (h, g.records.values().cloned().collect())))
    }

    fn commit(&mut self, cs: &Changeset) -> Result<(), Self::Error> {
        let mut g = self.lock();
        if std::mem::take(&mut g.fail_next) {
            return Err(MemoryStoreError("injected write failure".into()));
        }
        g.head = Some(cs.head.clone());
        for r in &cs.records {
            g.records.insert(r.txid, r.clone());
        }
        g.commits += 1;
        Ok(())
    }
}
