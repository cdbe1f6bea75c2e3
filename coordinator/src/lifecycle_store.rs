//! The lifecycle's persistence: how each `Change` becomes table rows, how the machine's
//! snapshot is loaded back, and the read-side lookups the API serves from disk (tasks, open
//! or final; workers; balances; receipts; epochs; ledger snapshots).
//!
//! Owns the key layouts of `tasks`, `commitments`, `reveals`, `receipts`, `ledger`, `epochs`,
//! `workers` and the lifecycle rows of `meta` (SCHEMA.md). Must never decide anything: it
//! writes what the machine changed, in one batch per step.

use cairn_spec::{
    Decode, Encode, EpochHeader, Hash32, LedgerEntry, MerkleProof, PubKey, Reveal, Roster, Signed,
    SignedEpochHeader, SignedReceipt,
};
use thiserror::Error;

use crate::lifecycle::{
    Change, MetaState, PayoutRecord, PayoutStatus, Snapshot, Step, TaskRecord, ValidatorRecord, WorkerRecord,
};
use crate::store::{Batch, Entry, KvStore, StoreError, Table};

const META_KEY: &[u8] = b"lifecycle";
const PAGE: usize = 1024;

/// Why lifecycle state could not be read.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum LoadError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A stored value does not parse.
    #[error("corrupt {table} row {key}: {reason}")]
    Corrupt {
        /// Table.
        table: &'static str,
        /// Key, hex.
        key: String,
        /// Why.
        reason: String,
    },
}

fn corrupt(t: Table, key: &[u8], reason: impl ToString) -> LoadError {
    LoadError::Corrupt { table: t.name(), key: hex::encode(key), reason: reason.to_string() }
}

fn json<T: serde::Serialize>(v: &T) -> Vec<u8> {
    // Plain data types: serializing cannot fail; an empty value would load as corrupt.
    serde_json::to_vec(v).unwrap_or_default()
}

fn parse<T: serde::de::DeserializeOwned>(t: Table, key: &[u8], v: &[u8]) -> Result<T, LoadError> {
    serde_json::from_slice(v).map_err(|e| corrupt(t, key, e))
}

fn decode<T: Decode>(t: Table, key: &[u8], v: &[u8]) -> Result<T, LoadError> {
    T::from_bytes(v).map_err(|e| corrupt(t, key, e))
}

/// `tasks`: `t` ‖ task id → task record (binary); `o` ‖ task id → empty while the task is open.
pub fn task_key(id: &Hash32) -> Vec<u8> {
    [b"t".as_slice(), &id.0].concat()
}
fn open_key(id: &Hash32) -> Vec<u8> {
    [b"o".as_slice(), &id.0].concat()
}
/// `tasks`: `n` ‖ requester ‖ nonce → task id (the submission's idempotency key).
fn nonce_key(requester: &PubKey, nonce: u64) -> Vec<u8> {
    [b"n".as_slice(), requester.as_bytes(), &nonce.to_be_bytes()].concat()
}
fn pair_key(task: &Hash32, worker: &PubKey) -> Vec<u8> {
    [&task.0[..], worker.as_bytes()].concat()
}
/// `receipts`: `e` ‖ epoch ‖ index → signed receipt; `i` ‖ receipt id → epoch ‖ index.
fn receipt_key(epoch: u32, index: u32) -> Vec<u8> {
    [b"e".as_slice(), &epoch.to_be_bytes(), &index.to_be_bytes()].concat()
}
fn receipt_id_key(id: &Hash32) -> Vec<u8> {
    [b"i".as_slice(), &id.0].concat()
}
/// `ledger`: `w` ‖ worker → entry; `l` ‖ epoch ‖ worker → locked u64; `p` ‖ id → payout.
fn ledger_key(w: &PubKey) -> Vec<u8> {
    [b"w".as_slice(), w.as_bytes()].concat()
}
fn lock_key(epoch: u32, w: &PubKey) -> Vec<u8> {
    [b"l".as_slice(), &epoch.to_be_bytes(), w.as_bytes()].concat()
}
fn payout_key(id: u64) -> Vec<u8> {
    [b"p".as_slice(), &id.to_be_bytes()].concat()
}
/// `epochs`: `h` ‖ height → signed header; `s` ‖ height → the ledger entries it commits to.
fn header_key(h: u32) -> Vec<u8> {
    [b"h".as_slice(), &h.to_be_bytes()].concat()
}
fn snapshot_key(h: u32) -> Vec<u8> {
    [b"s".as_slice(), &h.to_be_bytes()].concat()
}
/// `epochs`: `r` ‖ height → the roster epoch `height`'s draws rank (written with the header
/// before it, which commits to its root).
fn roster_key(h: u32) -> Vec<u8> {
    [b"r".as_slice(), &h.to_be_bytes()].concat()
}

/// `scores`: kind (`c` commit, `r` reveal, `u` units) ‖ scored epoch ‖ class ‖ key.
fn score_key(kind: u8, epoch: u32, class: &Hash32, key: &PubKey) -> Vec<u8> {
    [&[kind][..], &epoch.to_be_bytes(), &class.0, key.as_bytes()].concat()
}

/// `scores`: `o` ‖ crediting header's height ‖ class.
fn round_key(height: u32, class: &Hash32) -> Vec<u8> {
    [b"o".as_slice(), &height.to_be_bytes(), &class.0].concat()
}

/// Identifies the row a change rewrites whole (a kind, then up to 36 bytes of key), when
/// later changes to it supersede earlier ones. Fixed-size, so a group commit of thousands of
/// changes allocates nothing to find them.
type RowId = (u8, [u8; 36]);

fn row_id(kind: u8, parts: &[&[u8]]) -> RowId {
    let mut k = [0u8; 36];
    let mut at = 0;
    for p in parts {
        for (dst, src) in k.iter_mut().skip(at).zip(p.iter()) {
            *dst = *src;
        }
        at += p.len();
    }
    (kind, k)
}

/// The row a change rewrites whole, when later changes to it supersede earlier ones.
fn superseded_key(c: &Change) -> Option<RowId> {
    match c {
        Change::Task(t) => Some(row_id(0, &[&t.id.0])),
        Change::Worker(w) => Some(row_id(1, &[w.key().as_bytes()])),
        Change::Ledger(e) => Some(row_id(2, &[e.worker.as_bytes()])),
        Change::Lock { epoch, worker, .. } => Some(row_id(3, &[&epoch.to_be_bytes(), worker.as_bytes()])),
        Change::Payout(p) => Some(row_id(4, &[&p.id.to_be_bytes()])),
        Change::Meta(_) => Some(row_id(5, &[])),
        _ => None,
    }
}

/// A receipt reached the store before the driver sealed it (a driver bug): nothing of the
/// step is written.
#[derive(Debug, Error)]
#[error("receipt {0} reached the store unsealed")]
pub struct Unsealed(pub Hash32);

/// The batch that persists `step`. A row changed several times in one step (a group commit
/// of many events) is encoded once, with its last value: the result is the same as writing
/// every change in order.
pub fn batch_for(step: &Step) -> Result<Batch, Unsealed> {
    let keys: Vec<Option<RowId>> = step.changes.iter().map(superseded_key).collect();
    let mut last = std::collections::HashMap::with_capacity(keys.len());
    for (i, k) in keys.iter().enumerate() {
        if let Some(k) = k {
            last.insert(k, i);
        }
    }
    let mut b = Batch::new();
    for (i, (c, k)) in step.changes.iter().zip(&keys).enumerate() {
        if k.as_ref().is_some_and(|k| last.get(k) != Some(&i)) {
            continue;
        }
        add(&mut b, c)?;
    }
    if step.sync {
        b.sync();
    }
    Ok(b)
}

/// Adds one change to `b`; an unsealed receipt is refused.
pub fn add(b: &mut Batch, c: &Change) -> Result<(), Unsealed> {
    match c {
        Change::Task(t) => {
            b.put(Table::Tasks, task_key(&t.id), t.to_bytes());
            if t.phase.is_final() {
                b.delete(Table::Tasks, open_key(&t.id));
            } else {
                b.put(Table::Tasks, open_key(&t.id), Vec::new());
            }
        }
        Change::Commitment(s) => {
            b.put(Table::Commitments, pair_key(&s.body.task, &s.body.worker), s.to_bytes());
        }
        Change::Reveal(s) => {
            b.put(Table::Reveals, pair_key(&s.body.task, &s.body.worker), s.to_bytes());
        }
        Change::Receipt { index, id, receipt } => {
            let epoch = receipt.body.epoch;
            b.put(Table::Receipts, receipt_key(epoch, *index), receipt.to_bytes());
            b.put(Table::Receipts, receipt_id_key(id), receipt_key(epoch, *index));
        }
        Change::UnsealedReceipt { id, .. } => return Err(Unsealed(*id)),
        Change::Worker(w) => {
            b.put(Table::Workers, w.key().as_bytes().to_vec(), json(w.as_ref()));
        }
        Change::Ledger(e) => {
            b.put(Table::Ledger, ledger_key(&e.worker), e.to_bytes());
        }
        Change::Lock { epoch, worker, amount } => {
            if *amount == 0 {
                b.delete(Table::Ledger, lock_key(*epoch, worker));
            } else {
                b.put(Table::Ledger, lock_key(*epoch, worker), amount.to_be_bytes().to_vec());
            }
        }
        Change::Payout(p) => {
            b.put(Table::Ledger, payout_key(p.id), json(p));
        }
        Change::Epoch { header, ledger, roster } => {
            let h = header.body.height;
            b.put(Table::Epochs, header_key(h), header.to_bytes());
            if let Some(roster) = roster {
                b.put(Table::Epochs, roster_key(h.saturating_add(1)), roster.to_bytes());
            }
            let mut snap = Vec::with_capacity(ledger.len() * 57);
            for e in ledger {
                snap.extend_from_slice(&e.to_bytes());
            }
            b.put(Table::Epochs, snapshot_key(h), snap);
        }
        Change::Meta(m) => {
            b.put(Table::Meta, META_KEY.to_vec(), json(m.as_ref()));
        }
        Change::Accepted { requester, nonce, task } => {
            b.put(Table::Tasks, nonce_key(requester, *nonce), task.0.to_vec());
        }
        Change::Validator(v) => {
            b.put(Table::Scores, [b"v".as_slice(), v.key().as_bytes()].concat(), json(v.as_ref()));
        }
        Change::ScoreCommit(c) => {
            b.put(
                Table::Scores,
                score_key(b'c', c.body.epoch, &c.body.class, &c.body.validator),
                c.to_bytes(),
            );
        }
        Change::ScoreReveal(r) => {
            b.put(
                Table::Scores,
                score_key(b'r', r.body.epoch, &r.body.class, &r.body.validator),
                r.to_bytes(),
            );
        }
        Change::Units { epoch, class, worker, units } => {
            b.put(Table::Scores, score_key(b'u', *epoch, class, worker), units.to_be_bytes().to_vec());
        }
        Change::Round { height, round } => {
            b.put(Table::Scores, round_key(*height, &round.class), round.to_bytes());
        }
        Change::ScoresDropped { epoch, class, key } => {
            for kind in [b'c', b'r', b'u'] {
                b.delete(Table::Scores, score_key(kind, *epoch, class, key));
            }
        }
        Change::Blob { hash, bytes } => {
            b.put(Table::Blobs, hash.0.to_vec(), (bytes.len() as u64).to_be_bytes().to_vec());
            for (i, chunk) in bytes.chunks(BLOB_CHUNK).enumerate() {
                b.put(Table::Blobs, blob_chunk_key(hash, i as u32), chunk.to_vec());
            }
        }
    }
    Ok(())
}

/// Bytes per stored blob chunk (one `GetBlob` answer at most reads two).
pub const BLOB_CHUNK: usize = cairn_spec::wire::MAX_BLOB_CHUNK;

/// `blobs`: hash → size `u64`; hash ‖ chunk index `u32` → up to `BLOB_CHUNK` bytes.
fn blob_chunk_key(hash: &Hash32, index: u32) -> Vec<u8> {
    [&hash.0[..], &index.to_be_bytes()].concat()
}

/// Up to `len` bytes of a blob from `offset`, with its total size; `None` when not held.
pub fn blob_range(
    s: &dyn KvStore,
    hash: &Hash32,
    offset: u64,
    len: u32,
) -> Result<Option<(u64, Vec<u8>)>, LoadError> {
    let Some(v) = s.get(Table::Blobs, &hash.0)? else { return Ok(None) };
    let total =
        u64::from_be_bytes(v.as_slice().try_into().map_err(|_| corrupt(Table::Blobs, &hash.0, "size"))?);
    let end = offset.saturating_add(u64::from(len)).min(total);
    let mut out = Vec::with_capacity(end.saturating_sub(offset) as usize);
    let mut at = offset;
    while at < end {
        let index = (at / BLOB_CHUNK as u64) as u32;
        let key = blob_chunk_key(hash, index);
        let chunk = s.get(Table::Blobs, &key)?.ok_or_else(|| corrupt(Table::Blobs, &key, "missing chunk"))?;
        let from = (at % BLOB_CHUNK as u64) as usize;
        let take = ((end - at) as usize).min(chunk.len().saturating_sub(from));
        if take == 0 {
            return Err(corrupt(Table::Blobs, &key, "short chunk"));
        }
        out.extend_from_slice(chunk.get(from..from + take).unwrap_or_default());
        at += take as u64;
    }
    Ok(Some((total, out)))
}

/// Calls `f` on every row under `prefix`, one page in memory at a time (a restart with
/// millions of finished tasks must not hold their rows all at once).
fn for_each<E: From<StoreError>>(
    s: &dyn KvStore,
    t: Table,
    prefix: &[u8],
    mut f: impl FnMut(Vec<u8>, Vec<u8>) -> Result<(), E>,
) -> Result<(), E> {
    let mut start: Option<Vec<u8>> = None;
    loop {
        let page = s.scan(t, prefix, start.as_deref(), PAGE)?;
        let done = page.len() < PAGE;
        start = page.last().map(|(k, _)| {
            let mut k = k.clone();
            k.push(0);
            k
        });
        for (k, v) in page {
            f(k, v)?;
        }
        if done {
            return Ok(());
        }
    }
}

/// Every row under `prefix`.
fn scan_all(s: &dyn KvStore, t: Table, prefix: &[u8]) -> Result<Vec<Entry>, StoreError> {
    let mut out = Vec::new();
    for_each(s, t, prefix, |k, v| {
        out.push((k, v));
        Ok::<(), StoreError>(())
    })?;
    Ok(out)
}

/// The task a submission keyed (requester, nonce) was accepted as, if it was.
pub fn accepted(s: &dyn KvStore, requester: &PubKey, nonce: u64) -> Result<Option<Hash32>, LoadError> {
    let k = nonce_key(requester, nonce);
    match s.get(Table::Tasks, &k)? {
        None => Ok(None),
        Some(v) => {
            Ok(Some(Hash32(v.as_slice().try_into().map_err(|_| corrupt(Table::Tasks, &k, "nonce row"))?)))
        }
    }
}

/// Loads the machine's snapshot; `None` when the store holds no lifecycle state yet.
pub fn load(s: &dyn KvStore) -> Result<Option<Snapshot>, LoadError> {
    let Some(raw) = s.get(Table::Meta, META_KEY)? else { return Ok(None) };
    let meta: MetaState = parse(Table::Meta, META_KEY, &raw)?;
    // The history frontier the next header commits is re-derived from the stored headers
    // and must be the one recorded: a damaged record would sign histories followers refuse.
    let mut history = cairn_spec::merkle::Frontier::new();
    for_each(s, Table::Epochs, b"h", |k, v| {
        history.push(decode::<SignedEpochHeader>(Table::Epochs, &k, &v)?.id());
        Ok::<(), LoadError>(())
    })?;
    if history != meta.history {
        return Err(corrupt(
            Table::Meta,
            META_KEY,
            "the history frontier is not the one over the stored headers",
        ));
    }
    let mut snap = Snapshot { meta, ..Snapshot::default() };
    // Only open tasks are read: finished ones stay on disk (the machine keeps only what
    // finishes from now on, and submissions are checked against their stored rows, `accepted`).
    for (ok, _) in scan_all(s, Table::Tasks, b"o")? {
        let k = [b"t".as_slice(), ok.get(1..).unwrap_or_default()].concat();
        let id = Hash32(k[1..].try_into().map_err(|_| corrupt(Table::Tasks, &ok, "key length"))?);
        let v = s
            .get(Table::Tasks, &k)?
            .ok_or_else(|| corrupt(Table::Tasks, &ok, "open task without its row"))?;
        let rec: TaskRecord = decode(Table::Tasks, &k, &v)?;
        for (rk, rv) in scan_all(s, Table::Reveals, &id.0)? {
            snap.reveals.push(decode::<Signed<Reveal>>(Table::Reveals, &rk, &rv)?);
        }
        snap.open_tasks.push(rec);
    }
    for (k, v) in scan_all(s, Table::Workers, b"")? {
        snap.workers.push(parse::<WorkerRecord>(Table::Workers, &k, &v)?);
    }
    for (k, v) in scan_all(s, Table::Ledger, b"w")? {
        snap.ledger.push(decode::<LedgerEntry>(Table::Ledger, &k, &v)?);
    }
    for (k, v) in scan_all(s, Table::Ledger, b"l")? {
        let (Some(e), Some(w), Ok(a)) = (
            k.get(1..5),
            k.get(5..37).and_then(|w| PubKey::from_bytes(w.try_into().ok()?)),
            <[u8; 8]>::try_from(v.as_slice()),
        ) else {
            return Err(corrupt(Table::Ledger, &k, "lock row"));
        };
        let epoch = u32::from_be_bytes(e.try_into().map_err(|_| corrupt(Table::Ledger, &k, "lock key"))?);
        snap.locks.push((epoch, w, u64::from_be_bytes(a)));
    }
    for (k, v) in scan_all(s, Table::Ledger, b"p")? {
        let p: PayoutRecord = parse(Table::Ledger, &k, &v)?;
        if p.status == PayoutStatus::Queued {
            snap.queued_payouts.push(p);
        }
    }
    let prefix = [b"e".as_slice(), &snap.meta.next_epoch.to_be_bytes()].concat();
    for_each(s, Table::Receipts, &prefix, |k, v| {
        snap.open_leaves.push(decode::<SignedReceipt>(Table::Receipts, &k, &v)?.id());
        Ok::<(), LoadError>(())
    })?;
    for (k, v) in scan_all(s, Table::Scores, b"v")? {
        snap.validators.push(parse::<ValidatorRecord>(Table::Scores, &k, &v)?);
    }
    for (k, v) in scan_all(s, Table::Scores, b"c")? {
        snap.score_commits.push(decode(Table::Scores, &k, &v)?);
    }
    for (k, v) in scan_all(s, Table::Scores, b"r")? {
        snap.score_reveals.push(decode(Table::Scores, &k, &v)?);
    }
    for (k, v) in scan_all(s, Table::Scores, b"u")? {
        let (Some(e), Some(c), Some(w), Ok(u)) = (
            k.get(1..5).and_then(|e| <[u8; 4]>::try_from(e).ok()),
            k.get(5..37).and_then(|c| <[u8; 32]>::try_from(c).ok()),
            k.get(37..69).and_then(|w| PubKey::from_bytes(w.try_into().ok()?)),
            <[u8; 8]>::try_from(v.as_slice()),
        ) else {
            return Err(corrupt(Table::Scores, &k, "units row"));
        };
        snap.units.push((u32::from_be_bytes(e), Hash32(c), w, u64::from_be_bytes(u)));
    }
    snap.roster = roster(s, snap.meta.next_epoch)?;
    if let Some(prev) = snap.meta.next_epoch.checked_sub(1) {
        snap.prev_roster = roster(s, prev)?;
        // The epoch before's roster ranks draws while the open epoch waits for its beacon:
        // it must be the one header `prev − 1` committed to.
        if let Some(before) = prev.checked_sub(1).map(|b| header(s, b)).transpose()?.flatten() {
            let stored = snap.prev_roster.as_ref().map(Roster::root);
            if stored != Some(before.body.next_roster) {
                return Err(corrupt(
                    Table::Epochs,
                    &roster_key(prev),
                    "not the roster the header before committed to",
                ));
            }
        }
    }
    Ok(Some(snap))
}

/// Every registered worker's record, as last written, in key order.
pub fn workers(s: &dyn KvStore) -> Result<Vec<WorkerRecord>, LoadError> {
    scan_all(s, Table::Workers, b"")?
        .iter()
        .map(|(k, v)| parse::<WorkerRecord>(Table::Workers, k, v))
        .collect()
}

/// One worker's record, as last written.
pub fn worker(s: &dyn KvStore, key: &PubKey) -> Result<Option<WorkerRecord>, LoadError> {
    let k = key.as_bytes().to_vec();
    s.get(Table::Workers, &k)?.map(|v| parse(Table::Workers, &k, &v)).transpose()
}

/// A worker's balance as last written.
pub fn balance(s: &dyn KvStore, worker: &PubKey) -> Result<Option<LedgerEntry>, LoadError> {
    let k = ledger_key(worker);
    s.get(Table::Ledger, &k)?.map(|v| decode(Table::Ledger, &k, &v)).transpose()
}

/// One task record, open or final, as last written.
pub fn task(s: &dyn KvStore, id: &Hash32) -> Result<Option<TaskRecord>, LoadError> {
    let k = task_key(id);
    s.get(Table::Tasks, &k)?.map(|v| decode(Table::Tasks, &k, &v)).transpose()
}

/// Task records in id order from `after` (exclusive), at most `limit`.
pub fn tasks(s: &dyn KvStore, after: Option<&Hash32>, limit: usize) -> Result<Vec<TaskRecord>, LoadError> {
    let start = after.map(|a| {
        let mut k = task_key(a);
        k.push(0);
        k
    });
    s.scan(Table::Tasks, b"t", start.as_deref(), limit)?
        .into_iter()
        .map(|(k, v)| decode(Table::Tasks, &k, &v))
        .collect()
}

/// A receipt by id, with its epoch and index.
pub fn receipt(s: &dyn KvStore, id: &Hash32) -> Result<Option<(u32, u32, SignedReceipt)>, LoadError> {
    let Some(pos) = s.get(Table::Receipts, &receipt_id_key(id))? else { return Ok(None) };
    let (Some(e), Some(i)) = (pos.get(1..5), pos.get(5..9)) else {
        return Err(corrupt(Table::Receipts, &receipt_id_key(id), "position"));
    };
    let epoch = u32::from_be_bytes(e.try_into().map_err(|_| corrupt(Table::Receipts, &pos, "epoch"))?);
    let index = u32::from_be_bytes(i.try_into().map_err(|_| corrupt(Table::Receipts, &pos, "index"))?);
    let Some(v) = s.get(Table::Receipts, &pos)? else { return Ok(None) };
    Ok(Some((epoch, index, decode(Table::Receipts, &pos, &v)?)))
}

/// The receipts of an epoch, in index order.
pub fn epoch_receipts(s: &dyn KvStore, epoch: u32) -> Result<Vec<SignedReceipt>, LoadError> {
    let prefix = [b"e".as_slice(), &epoch.to_be_bytes()].concat();
    scan_all(s, Table::Receipts, &prefix)?.into_iter().map(|(k, v)| decode(Table::Receipts, &k, &v)).collect()
}

/// Up to `count` receipts of an epoch from index `from`, in index order.
pub fn epoch_receipts_page(
    s: &dyn KvStore,
    epoch: u32,
    from: u32,
    count: usize,
) -> Result<Vec<SignedReceipt>, LoadError> {
    let prefix = [b"e".as_slice(), &epoch.to_be_bytes()].concat();
    s.scan(Table::Receipts, &prefix, Some(&receipt_key(epoch, from)), count)?
        .into_iter()
        .map(|(k, v)| decode(Table::Receipts, &k, &v))
        .collect()
}

/// The Merkle path of the receipt at `index` of a closed epoch, checked against the header's
/// receipts root. `None` when the epoch is not closed yet.
pub fn receipt_path(s: &dyn KvStore, epoch: u32, index: u32) -> Result<Option<MerkleProof>, LoadError> {
    let Some(tree) = receipts_tree(s, epoch)? else { return Ok(None) };
    tree.proof(index).map(Some).ok_or_else(|| corrupt(Table::Receipts, &receipt_key(epoch, index), "index"))
}

/// The Merkle tree of a closed epoch's receipts, checked against the header's receipts
/// root. `None` when the epoch is not closed yet.
pub fn receipts_tree(s: &dyn KvStore, epoch: u32) -> Result<Option<cairn_spec::MerkleTree>, LoadError> {
    let Some(header) = header(s, epoch)? else { return Ok(None) };
    let leaves: Vec<Hash32> = epoch_receipts(s, epoch)?.iter().map(|r| r.id()).collect();
    let tree = cairn_spec::MerkleTree::new(leaves);
    if tree.root() != header.body.receipts_root {
        return Err(corrupt(
            Table::Receipts,
            &header_key(epoch),
            "stored receipts disagree with the epoch header",
        ));
    }
    Ok(Some(tree))
}

/// A receipt index that is not in its epoch's tree: the stored rows disagree.
pub fn bad_receipt_index(epoch: u32, index: u32) -> LoadError {
    corrupt(Table::Receipts, &receipt_key(epoch, index), "index")
}

/// A signed epoch header.
pub fn header(s: &dyn KvStore, height: u32) -> Result<Option<SignedEpochHeader>, LoadError> {
    let k = header_key(height);
    s.get(Table::Epochs, &k)?.map(|v| decode(Table::Epochs, &k, &v)).transpose()
}

/// The roster epoch `height`'s draws rank, when the header before it is stored.
pub fn roster(s: &dyn KvStore, height: u32) -> Result<Option<Roster>, LoadError> {
    let k = roster_key(height);
    s.get(Table::Epochs, &k)?.map(|v| decode(Table::Epochs, &k, &v)).transpose()
}

/// Headers from `from`, at most `count`.
pub fn headers(s: &dyn KvStore, from: u32, count: usize) -> Result<Vec<SignedEpochHeader>, LoadError> {
    s.scan(Table::Epochs, b"h", Some(&header_key(from)), count)?
        .into_iter()
        .map(|(k, v)| decode(Table::Epochs, &k, &v))
        .collect()
}

/// The scored rounds the header at `height` credits, by class id.
pub fn rounds(s: &dyn KvStore, height: u32) -> Result<Vec<cairn_spec::ScoredRound>, LoadError> {
    let prefix = [b"o".as_slice(), &height.to_be_bytes()].concat();
    scan_all(s, Table::Scores, &prefix)?.iter().map(|(k, v)| decode(Table::Scores, k, v)).collect()
}

/// The ledger entries epoch `height`'s state root commits to, in key order.
pub fn ledger_snapshot(s: &dyn KvStore, height: u32) -> Result<Option<Vec<LedgerEntry>>, LoadError> {
    let k = snapshot_key(height);
    let Some(v) = s.get(Table::Epochs, &k)? else { return Ok(None) };
    let mut r = cairn_spec::codec::Reader::new(&v);
    let mut out = Vec::new();
    while r.remaining() > 0 {
        out.push(LedgerEntry::decode(&mut r).map_err(|e| corrupt(Table::Epochs, &k, e))?);
    }
    Ok(Some(out))
}

/// Payouts of a worker (all statuses).
pub fn payouts(s: &dyn KvStore) -> Result<Vec<PayoutRecord>, LoadError> {
    scan_all(s, Table::Ledger, b"p")?.into_iter().map(|(k, v)| parse(Table::Ledger, &k, &v)).collect()
}

/// Checks a header chain (see [`checked_history`]); returns how many headers it holds.
pub fn check_header_chain(s: &dyn KvStore) -> Result<u32, String> {
    checked_history(s).map(|h| h.len() as u32)
}

/// Checks a header chain: every stored header follows the previous one and commits the
/// history of the ones before it. Returns the history frontier over all of them.
pub fn checked_history(s: &dyn KvStore) -> Result<cairn_spec::merkle::Frontier, String> {
    let rows = scan_all(s, Table::Epochs, b"h").map_err(|e| e.to_string())?;
    let mut prev: Option<EpochHeader> = None;
    let mut history = cairn_spec::merkle::Frontier::new();
    for (k, v) in &rows {
        let h: SignedEpochHeader = decode(Table::Epochs, k, v).map_err(|e| e.to_string())?;
        if !h.verify() {
            return Err(format!("epoch {} signature does not verify", h.body.height));
        }
        match &prev {
            None if h.body.height != 0 => return Err("first stored epoch is not genesis".into()),
            Some(p) if !h.body.follows(p) => return Err(format!("epoch {} does not follow", h.body.height)),
            _ => {}
        }
        if !h.body.history_is(&history) {
            return Err(format!(
                "epoch {} does not commit the history of the epochs before it",
                h.body.height
            ));
        }
        history.push(h.id());
        prev = Some(h.body);
    }
    Ok(history)
}
