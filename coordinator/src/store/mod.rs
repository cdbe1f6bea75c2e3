//! The node's storage: a small key-value trait over named tables, written only in atomic
//! batches, with a RocksDB implementation (a column family per table, a schema version
//! checked at open, synced writes where durability matters) and an in-memory twin. One test
//! suite runs on both. Key layouts are in `coordinator/SCHEMA.md`.
//!
//! Owns durability and atomicity. Must never interpret values (that is the state machines'
//! job) and never expose a partial batch.

mod memory;
mod rocks;

use thiserror::Error;

pub use memory::MemoryStore;
pub use rocks::RocksStore;

/// The schema version this build writes and accepts. Version 2: receipts are stored with
/// their batch (SPEC.md §5.7); a version 1 database holds receipts signed one by one.
/// Version 3: task records are binary (SCHEMA.md), no longer JSON. Version 4: task records
/// carry drawn slots (offers, and the workers that let a slot go; SPEC.md §12.1). Version 5:
/// headers and receipts of protocol version 2 (checkable draws), each slot's draw epoch, and
/// each epoch's roster (SPEC.md §12.1). Version 6: headers of protocol version 3, each naming
/// its draws' Bitcoin beacon, and the open epoch's beacon (SPEC.md §12.1). Version 7: headers
/// of protocol version 4, each naming the anchor key and genesis output (SPEC.md §7.1); the
/// binding in the node-wide record, the genesis output in the anchor head, the binding in the
/// follower's anchor scan. Version 8: headers of protocol version 5, each committing its
/// predecessors' history root (SPEC.md §5.9); the history frontier in the node-wide record.
/// Version 9: headers of protocol version 6, each committing its scored rounds (SPEC.md
/// §13.6); the `scores` table (validators, sheets, units, rounds).
pub const SCHEMA_VERSION: u32 = 9;

/// Key of the schema version in the `meta` table.
pub const SCHEMA_KEY: &[u8] = b"schema_version";

/// A table (a RocksDB column family).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Table {
    /// Schema version and node-wide settings.
    Meta,
    /// Task classes and tasks with their lifecycle state.
    Tasks,
    /// Content-addressed blobs (inputs and results).
    Blobs,
    /// Worker commitments.
    Commitments,
    /// Worker reveals.
    Reveals,
    /// Signed work receipts.
    Receipts,
    /// Ledger entries.
    Ledger,
    /// Signed epoch headers.
    Epochs,
    /// The anchor state machine (head and records).
    Anchors,
    /// Worker registrations and reputations.
    Workers,
    /// Validators, score sheets, scored units and scored rounds (SPEC.md §13).
    Scores,
}

impl Table {
    /// Every table.
    pub const ALL: [Table; 11] = [
        Table::Meta,
        Table::Tasks,
        Table::Blobs,
        Table::Commitments,
        Table::Reveals,
        Table::Receipts,
        Table::Ledger,
        Table::Epochs,
        Table::Anchors,
        Table::Workers,
        Table::Scores,
    ];

    /// Column-family name.
    pub const fn name(self) -> &'static str {
        match self {
            Table::Meta => "meta",
            Table::Tasks => "tasks",
            Table::Blobs => "blobs",
            Table::Commitments => "commitments",
            Table::Reveals => "reveals",
            Table::Receipts => "receipts",
            Table::Ledger => "ledger",
            Table::Epochs => "epochs",
            Table::Anchors => "anchors",
            Table::Workers => "workers",
            Table::Scores => "scores",
        }
    }
}

/// Storage failures.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The database was written by another schema version.
    #[error(
        "database schema version {found} is not {supported} (the one this build uses); refusing to open it"
    )]
    SchemaMismatch {
        /// Version found.
        found: u32,
        /// Version supported.
        supported: u32,
    },
    /// The schema marker is unreadable.
    #[error("database schema marker is corrupt")]
    CorruptSchema,
    /// The engine failed.
    #[error("storage engine: {0}")]
    Engine(String),
}

/// One change in a batch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    /// Set `key` to `value`.
    Put(Table, Vec<u8>, Vec<u8>),
    /// Remove `key`.
    Delete(Table, Vec<u8>),
}

/// Changes applied together or not at all.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Batch {
    ops: Vec<Op>,
    sync: bool,
}

impl Batch {
    /// An empty, unsynced batch.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a put.
    pub fn put(&mut self, t: Table, key: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>) -> &mut Self {
        self.ops.push(Op::Put(t, key.into(), value.into()));
        self
    }

    /// Adds a delete.
    pub fn delete(&mut self, t: Table, key: impl Into<Vec<u8>>) -> &mut Self {
        self.ops.push(Op::Delete(t, key.into()));
        self
    }

    /// Makes the write durable (fsync) before it returns: for accepted receipts, epochs,
    /// and anchor state before a broadcast.
    pub fn sync(&mut self) -> &mut Self {
        self.sync = true;
        self
    }

    /// The operations, in order.
    pub fn ops(&self) -> &[Op] {
        &self.ops
    }

    /// Whether the batch is synced.
    pub fn is_sync(&self) -> bool {
        self.sync
    }

    /// True when there is nothing to write.
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    /// Adds `other`'s operations after these (one write then applies both, in order), synced
    /// when either is.
    pub fn append(&mut self, other: Batch) -> &mut Self {
        self.ops.extend(other.ops);
        self.sync |= other.sync;
        self
    }
}

/// A key and its value.
pub type Entry = (Vec<u8>, Vec<u8>);

/// What a store holds in memory, in bytes, for the node's metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StoreMemory {
    /// Write buffers (memtables) of every table, active and waiting to be flushed.
    pub memtables: u64,
    /// The shared read cache (blocks, indexes, filters).
    pub block_cache: u64,
    /// Table readers held outside the cache.
    pub table_readers: u64,
}

/// The storage seam: named tables of ordered byte keys, atomic batches.
pub trait KvStore: Send + Sync {
    /// What the store holds in memory, when it reports it (the in-memory store does not).
    fn memory(&self) -> Option<StoreMemory> {
        None
    }

    /// A value.
    fn get(&self, t: Table, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError>;
    /// Applies a batch atomically.
    fn write(&self, batch: &Batch) -> Result<(), StoreError>;
    /// Up to `limit` entries with keys starting with `prefix`, from `start` (inclusive,
    /// defaults to the prefix) in key order.
    fn scan(
        &self,
        t: Table,
        prefix: &[u8],
        start: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<Entry>, StoreError>;
}

#[cfg(test)]
pub(crate) mod suite {
    //! The one test suite every `KvStore` passes.
    use super::*;

    pub(crate) fn run(s: &dyn KvStore) {
        assert_eq!(s.get(Table::Tasks, b"missing").unwrap(), None);
        let mut b = Batch::new();
        b.put(Table::Tasks, b"a/1".to_vec(), b"one".to_vec())
            .put(Table::Tasks, b"a/2".to_vec(), b"two".to_vec())
            .put(Table::Tasks, b"b/1".to_vec(), b"other".to_vec())
            .put(Table::Receipts, b"a/1".to_vec(), b"receipt".to_vec());
        s.write(&b).unwrap();
        // Tables are separate namespaces.
        assert_eq!(s.get(Table::Tasks, b"a/1").unwrap().as_deref(), Some(&b"one"[..]));
        assert_eq!(s.get(Table::Receipts, b"a/1").unwrap().as_deref(), Some(&b"receipt"[..]));
        assert_eq!(s.get(Table::Ledger, b"a/1").unwrap(), None);
        // Prefix scans are ordered, bounded and resumable.
        let all = s.scan(Table::Tasks, b"a/", None, 10).unwrap();
        assert_eq!(all.iter().map(|(k, _)| k.as_slice()).collect::<Vec<_>>(), vec![&b"a/1"[..], b"a/2"]);
        assert_eq!(s.scan(Table::Tasks, b"a/", None, 1).unwrap().len(), 1);
        let rest = s.scan(Table::Tasks, b"a/", Some(b"a/2"), 10).unwrap();
        assert_eq!(rest.len(), 1);
        assert_eq!(s.scan(Table::Tasks, b"", None, 10).unwrap().len(), 3);
        // Deletes and overwrites in one batch, applied in order.
        let mut b = Batch::new();
        b.delete(Table::Tasks, b"a/1".to_vec()).put(Table::Tasks, b"a/2".to_vec(), b"TWO".to_vec()).sync();
        s.write(&b).unwrap();
        assert_eq!(s.get(Table::Tasks, b"a/1").unwrap(), None);
        assert_eq!(s.get(Table::Tasks, b"a/2").unwrap().as_deref(), Some(&b"TWO"[..]));
        let mut b = Batch::new();
        b.put(Table::Epochs, b"k".to_vec(), b"v1".to_vec()).put(Table::Epochs, b"k".to_vec(), b"v2".to_vec());
        s.write(&b).unwrap();
        assert_eq!(s.get(Table::Epochs, b"k").unwrap().as_deref(), Some(&b"v2"[..]));
        // Empty values and binary keys round-trip.
        let mut b = Batch::new();
        b.put(Table::Blobs, vec![0u8, 255, 0], Vec::new());
        s.write(&b).unwrap();
        assert_eq!(s.get(Table::Blobs, &[0, 255, 0]).unwrap(), Some(Vec::new()));
    }
}
