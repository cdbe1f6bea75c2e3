//! The RocksDB store: one column family per table, the schema version in `meta` checked at
//! open, every batch one atomic `WriteBatch`, synced when the batch asks for it.
//!
//! Owns the RocksDB handle and options. Must never open a database of another schema
//! version, and never write outside a batch.

use std::path::{Path, PathBuf};

use rocksdb::{ColumnFamilyDescriptor, Direction, IteratorMode, Options, WriteBatch, WriteOptions, DB};

use super::{Batch, Entry, KvStore, Op, StoreError, StoreMemory, Table, SCHEMA_KEY, SCHEMA_VERSION};

/// A RocksDB database with Cairn's tables.
pub struct RocksStore {
    db: DB,
    path: PathBuf,
}

impl std::fmt::Debug for RocksStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RocksStore({})", self.path.display())
    }
}

fn engine(e: rocksdb::Error) -> StoreError {
    StoreError::Engine(e.to_string())
}

/// Memtables of all tables together, at most: part of the node's memory budget.
const WRITE_BUFFERS_BYTES: usize = 64 << 20;
/// One table's memtable before it is flushed.
const WRITE_BUFFER_BYTES: usize = 16 << 20;
/// Blocks, indexes and filters read from disk, shared by every table: the node's read cache,
/// so a database of many gigabytes costs no more memory than this (its index blocks are
/// cached here rather than pinned per file).
const BLOCK_CACHE_BYTES: usize = 64 << 20;

/// Options of the database and of each table: bounded memory (shared block cache, indexes
/// and filters in it, small memtables) and LZ4.
fn bounded(cache: &rocksdb::Cache) -> Options {
    let mut opts = Options::default();
    opts.set_compression_type(rocksdb::DBCompressionType::Lz4);
    opts.set_write_buffer_size(WRITE_BUFFER_BYTES);
    opts.set_max_write_buffer_number(2);
    let mut table = rocksdb::BlockBasedOptions::default();
    table.set_block_cache(cache);
    table.set_cache_index_and_filter_blocks(true);
    table.set_pin_l0_filter_and_index_blocks_in_cache(true);
    opts.set_block_based_table_factory(&table);
    opts
}

impl RocksStore {
    /// Opens (creating if needed) the database at `path`; refuses another schema version.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let cache = rocksdb::Cache::new_lru_cache(BLOCK_CACHE_BYTES);
        let mut opts = bounded(&cache);
        opts.create_if_missing(true);
        opts.create_missing_column_families(true);
        opts.set_max_open_files(256);
        opts.set_keep_log_file_num(4);
        // Every table's memtables together, not each table's: RocksDB's defaults (64 MiB per
        // table, two of them) would let ten tables hold over a gigabyte.
        opts.set_db_write_buffer_size(WRITE_BUFFERS_BYTES);
        let cfs = Table::ALL.iter().map(|t| ColumnFamilyDescriptor::new(t.name(), bounded(&cache)));
        let db = DB::open_cf_descriptors(&opts, path, cfs).map_err(engine)?;
        let store = RocksStore { db, path: path.to_owned() };
        match store.get(Table::Meta, SCHEMA_KEY)? {
            None => {
                // A new database (nothing but empty tables): stamp it.
                let mut b = Batch::new();
                b.put(Table::Meta, SCHEMA_KEY.to_vec(), SCHEMA_VERSION.to_be_bytes().to_vec()).sync();
                store.write(&b)?;
            }
            Some(v) => {
                let found =
                    u32::from_be_bytes(v.as_slice().try_into().map_err(|_| StoreError::CorruptSchema)?);
                if found != SCHEMA_VERSION {
                    return Err(StoreError::SchemaMismatch { found, supported: SCHEMA_VERSION });
                }
            }
        }
        Ok(store)
    }

    /// Opens the database at `path` read-only, as an auditor does: no lock is taken (a running
    /// node keeps writing; this sees the state at open), nothing is created or written, and a
    /// schema other than this build's is refused.
    pub fn open_read_only(path: &Path) -> Result<Self, StoreError> {
        let mut opts = Options::default();
        opts.set_max_open_files(256);
        let names = Table::ALL.iter().map(|t| t.name());
        let db = DB::open_cf_for_read_only(&opts, path, names, false).map_err(engine)?;
        let store = RocksStore { db, path: path.to_owned() };
        let v = store.get(Table::Meta, SCHEMA_KEY)?.ok_or(StoreError::CorruptSchema)?;
        let found = u32::from_be_bytes(v.as_slice().try_into().map_err(|_| StoreError::CorruptSchema)?);
        if found != SCHEMA_VERSION {
            return Err(StoreError::SchemaMismatch { found, supported: SCHEMA_VERSION });
        }
        Ok(store)
    }

    /// A consistent copy of the database at `to` (a RocksDB checkpoint: SST files hard-linked
    /// where the file system allows, the rest copied). `to` must not exist.
    pub fn checkpoint(&self, to: &Path) -> Result<(), StoreError> {
        let cp = rocksdb::checkpoint::Checkpoint::new(&self.db).map_err(engine)?;
        cp.create_checkpoint(to).map_err(engine)
    }

    /// Where the database lives.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn cf(&self, t: Table) -> Result<&rocksdb::ColumnFamily, StoreError> {
        self.db
            .cf_handle(t.name())
            .ok_or_else(|| StoreError::Engine(format!("missing column family {}", t.name())))
    }
}

impl KvStore for RocksStore {
    fn memory(&self) -> Option<StoreMemory> {
        // Per-table figures summed; the block cache is shared, so any table reports all of it.
        let sum = |name: &str| -> u64 {
            Table::ALL
                .iter()
                .filter_map(|t| self.cf(*t).ok())
                .filter_map(|cf| self.db.property_int_value_cf(cf, name).ok().flatten())
                .sum()
        };
        let cache = self.db.property_int_value("rocksdb.block-cache-usage").ok().flatten().unwrap_or(0);
        Some(StoreMemory {
            memtables: sum("rocksdb.cur-size-all-mem-tables"),
            block_cache: cache,
            table_readers: sum("rocksdb.estimate-table-readers-mem"),
        })
    }

    fn get(&self, t: Table, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        self.db.get_cf(self.cf(t)?, key).map_err(engine)
    }

    fn write(&self, batch: &Batch) -> Result<(), StoreError> {
        // Sized up front: a group commit's batch runs to megabytes, which growing by doubling
        // copies about twice over.
        let bytes: usize = batch
            .ops()
            .iter()
            .map(|op| match op {
                // Tag, column family and two length varints: at most 1 + 5 + 5 + 5 bytes.
                Op::Put(_, k, v) => k.len() + v.len() + 16,
                Op::Delete(_, k) => k.len() + 11,
            })
            .sum();
        // RocksDB's batch header: sequence number and count.
        let mut wb = WriteBatch::with_capacity_bytes(bytes + 12);
        // Sorted by (table, key), stable so writes to one key keep their order: the memtable's
        // skip list then inserts each column family's keys in ascending order and reuses its
        // search position (a group commit of random ids otherwise pays a full search per row).
        let mut ops: Vec<&Op> = batch.ops().iter().collect();
        ops.sort_by(|a, b| op_key(a).cmp(&op_key(b)));
        for op in ops {
            match op {
                Op::Put(t, k, v) => wb.put_cf(self.cf(*t)?, k, v),
                Op::Delete(t, k) => wb.delete_cf(self.cf(*t)?, k),
            }
        }
        let mut wo = WriteOptions::default();
        wo.set_sync(batch.is_sync());
        self.db.write_opt(wb, &wo).map_err(engine)
    }

    fn scan(
        &self,
        t: Table,
        prefix: &[u8],
        start: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<Entry>, StoreError> {
        let from = start.filter(|s| *s >= prefix).unwrap_or(prefix);
        let mut out = Vec::new();
        for item in self.db.iterator_cf(self.cf(t)?, IteratorMode::From(from, Direction::Forward)) {
            let (k, v) = item.map_err(engine)?;
            if !k.starts_with(prefix) || out.len() >= limit {
                break;
            }
            out.push((k.to_vec(), v.to_vec()));
        }
        Ok(out)
    }
}

fn op_key(op: &Op) -> (usize, &[u8]) {
    match op {
        Op::Put(t, k, _) | Op::Delete(t, k) => (*t as usize, k.as_slice()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passes_the_shared_suite() {
        let dir = tempfile::tempdir().unwrap();
        super::super::suite::run(&RocksStore::open(&dir.path().join("db")).unwrap());
    }

    #[test]
    fn reports_what_it_holds_in_memory() {
        let dir = tempfile::tempdir().unwrap();
        let s = RocksStore::open(&dir.path().join("db")).unwrap();
        let before = s.memory().unwrap();
        let mut b = Batch::new();
        for i in 0..1000u32 {
            b.put(Table::Receipts, i.to_be_bytes().to_vec(), vec![7; 200]);
        }
        s.write(&b).unwrap();
        let after = s.memory().unwrap();
        assert!(after.memtables >= before.memtables + 200_000, "{before:?} -> {after:?}");
        assert!(after.block_cache <= BLOCK_CACHE_BYTES as u64);
    }

    #[test]
    fn data_survives_reopen_and_other_schemas_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        {
            let s = RocksStore::open(&path).unwrap();
            let mut b = Batch::new();
            b.put(Table::Receipts, b"r".to_vec(), b"1".to_vec()).sync();
            s.write(&b).unwrap();
        }
        {
            let s = RocksStore::open(&path).unwrap();
            assert_eq!(s.get(Table::Receipts, b"r").unwrap().as_deref(), Some(&b"1"[..]));
            let mut b = Batch::new();
            b.put(Table::Meta, SCHEMA_KEY.to_vec(), (SCHEMA_VERSION + 1).to_be_bytes().to_vec()).sync();
            s.write(&b).unwrap();
        }
        let err = RocksStore::open(&path).unwrap_err();
        assert!(
            matches!(err, StoreError::SchemaMismatch { found, supported } if found == SCHEMA_VERSION + 1 && supported == SCHEMA_VERSION),
            "{err}"
        );
        assert!(err.to_string().contains("refusing"));
    }
}
