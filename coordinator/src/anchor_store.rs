//! The anchor state machine's persistence on the node's store: the head and every anchor
//! record in the `anchors` table, each changeset one synced batch (the machine broadcasts
//! only after this returns).
//!
//! Owns the `anchors` key layout (see `coordinator/SCHEMA.md`). Must never write a
//! changeset in more than one batch.

use std::sync::Arc;

use bitcoin::hashes::Hash as _;
use cairn_anchor::machine::{AnchorRecord, Head};
use cairn_anchor::{AnchorStore, Changeset};
use thiserror::Error;

use crate::store::{Batch, KvStore, StoreError, Table};

const HEAD_KEY: &[u8] = b"head";
const RECORD_PREFIX: &[u8] = b"rec/";

/// Why the anchor state could not be read or written.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum AnchorStoreError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A stored value does not parse (corruption or a foreign writer).
    #[error("corrupt anchor state at {key}: {reason}")]
    Corrupt {
        /// Key.
        key: String,
        /// Parser's message.
        reason: String,
    },
}

/// `AnchorStore` over any `KvStore`.
#[derive(Debug)]
pub struct KvAnchorStore<S: ?Sized> {
    store: Arc<S>,
}

impl<S: ?Sized> KvAnchorStore<S> {
    /// Uses `store`'s `anchors` table.
    pub fn new(store: Arc<S>) -> Self {
        KvAnchorStore { store }
    }
}

fn record_key(txid: &bitcoin::Txid) -> Vec<u8> {
    [RECORD_PREFIX, &txid.to_byte_array()[..]].concat()
}

fn json<T: serde::Serialize>(v: &T) -> Vec<u8> {
    // Serializing these plain data types cannot fail; an empty value would be caught as
    // corrupt at the next load rather than panicking here.
    serde_json::to_vec(v).unwrap_or_default()
}

impl<S: KvStore + ?Sized> AnchorStore for KvAnchorStore<S> {
    type Error = AnchorStoreError;

    fn load(&self) -> Result<Option<(Head, Vec<AnchorRecord>)>, AnchorStoreError> {
        let Some(head) = self.store.get(Table::Anchors, HEAD_KEY)? else { return Ok(None) };
        let head: Head = serde_json::from_slice(&head)
            .map_err(|e| AnchorStoreError::Corrupt { key: "head".into(), reason: e.to_string() })?;
        let records = self
            .store
            .scan(Table::Anchors, RECORD_PREFIX, None, usize::MAX)?
            .into_iter()
            .map(|(k, v)| {
                serde_json::from_slice(&v)
                    .map_err(|e| AnchorStoreError::Corrupt { key: hex::encode(k), reason: e.to_string() })
            })
            .collect::<Result<Vec<AnchorRecord>, _>>()?;
        Ok(Some((head, records)))
    }

    fn commit(&mut self, cs: &Changeset) -> Result<(), AnchorStoreError> {
        let mut b = Batch::new();
        b.put(Table::Anchors, HEAD_KEY.to_vec(), json(&cs.head));
        for r in &cs.records {
            b.put(Table::Anchors, record_key(&r.txid), json(r));
        }
        b.sync();
        Ok(self.store.write(&b)?)
    }
}
