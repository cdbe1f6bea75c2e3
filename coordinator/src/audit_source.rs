//! The node's database as an auditor's [`Source`]: what `/timestamp/` and `cairn audit
//! --data-dir` read. The anchors it names are the anchor side's confirmed records.
//!
//! Owns the mapping from stored rows to the auditor's questions. Must never write.

use std::sync::Arc;

use cairn_audit::source::{AnchorClaim, LocatedReceipt, Source, SourceError};
use cairn_spec::{Hash32, LedgerEntry, Roster, SignedEpochHeader, SignedReceipt, Task};

use crate::lifecycle_store as ls;
use crate::store::KvStore;

/// A database, with the confirmed anchors known to the node.
pub struct StoreSource {
    /// The store.
    pub store: Arc<dyn KvStore>,
    /// Confirmed anchors, in chain order.
    pub anchors: Vec<AnchorClaim>,
    /// What to call it in reports.
    pub name: String,
    /// Closed epochs' trees, kept across reads.
    pub trees: Arc<crate::trees::EpochTrees>,
}

fn load(e: ls::LoadError) -> SourceError {
    SourceError::BadAnswer(e.to_string())
}

impl Source for StoreSource {
    fn describe(&self) -> String {
        self.name.clone()
    }

    fn headers(&self, from: u32, count: u32) -> Result<Vec<SignedEpochHeader>, SourceError> {
        ls::headers(self.store.as_ref(), from, count as usize).map_err(load)
    }

    fn epoch_receipts(&self, height: u32) -> Result<Vec<SignedReceipt>, SourceError> {
        ls::epoch_receipts(self.store.as_ref(), height).map_err(load)
    }

    fn ledger(&self, height: u32) -> Result<Vec<LedgerEntry>, SourceError> {
        ls::ledger_snapshot(self.store.as_ref(), height)
            .map_err(load)?
            .ok_or_else(|| SourceError::NotFound(format!("ledger snapshot of epoch {height}")))
    }

    fn rounds(&self, height: u32) -> Result<Vec<cairn_spec::ScoredRound>, SourceError> {
        ls::rounds(self.store.as_ref(), height).map_err(load)
    }

    fn receipt(&self, id: &Hash32) -> Result<LocatedReceipt, SourceError> {
        let (epoch, index, receipt) = ls::receipt(self.store.as_ref(), id)
            .map_err(load)?
            .ok_or_else(|| SourceError::NotFound(format!("receipt {id}")))?;
        let path = self
            .trees
            .receipt_path(self.store.as_ref(), epoch, index)
            .map_err(load)?
            .ok_or_else(|| SourceError::NotFound(format!("epoch {epoch} is not closed yet")))?;
        Ok(LocatedReceipt { receipt, epoch, path })
    }

    fn anchors(&self) -> Result<Vec<AnchorClaim>, SourceError> {
        Ok(self.anchors.clone())
    }

    fn roster(&self, epoch: u32) -> Result<Roster, SourceError> {
        ls::roster(self.store.as_ref(), epoch)
            .map_err(load)?
            .ok_or_else(|| SourceError::NotFound(format!("roster of epoch {epoch}")))
    }

    fn task(&self, id: &Hash32) -> Result<Task, SourceError> {
        ls::task(self.store.as_ref(), id)
            .map_err(load)?
            .map(|r| r.task)
            .ok_or_else(|| SourceError::NotFound(format!("task {id}")))
    }
}
