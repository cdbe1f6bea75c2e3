//! Group commit: many events persisted as one step, their receipts sealed as one batch.
//!
//! Owns which rows a group leaves out of each event's step and gives back once at its end, and
//! the signer the driver seals a group's receipts with. Must never sign a receipt one by one
//! inside a group: the driver seals the batch (SPEC.md §5.7).

use super::*;

impl Machine {
    /// Starts a group commit, for a driver that persists many events as one step: receipts
    /// are issued unsealed (`Change::UnsealedReceipt`, `Effect::UnsealedReceipt`) until the
    /// driver seals them as one batch
    /// (`SignedReceipt::seal_batch` with [`ReceiptSigner`]: one signature per batch, SPEC.md
    /// §5.7), off the machine's thread; the counters (`Change::Meta`) and the worker, ledger and lock
    /// rows that receipts touch are left out of each event's step. The driver must call
    /// [`Machine::end_group`], add what it returns, and sign every receipt before persisting
    /// or publishing the group.
    pub fn begin_group(&mut self) {
        self.group_commit = true;
        self.group_rows = GroupRows::default();
    }

    /// Ends a group commit: the rows it left out, each once with its current value, and the
    /// counters last (nothing when the group changed nothing).
    pub fn end_group(&mut self, changed: bool) -> Vec<Change> {
        self.group_commit = false;
        let rows = std::mem::take(&mut self.group_rows);
        let mut out = Vec::new();
        for k in rows.workers {
            if let Some(w) = self.workers.get(&k) {
                out.push(Change::Worker(Box::new(w.clone())));
            }
        }
        for k in rows.ledger {
            if let Some(e) = self.ledger.get(&k) {
                out.push(Change::Ledger(e.clone()));
            }
        }
        for (epoch, worker) in rows.locks {
            let amount = self.meta.locked.get(&epoch).and_then(|b| b.get(&worker)).copied().unwrap_or(0);
            out.push(Change::Lock { epoch, worker, amount });
        }
        if changed || !out.is_empty() {
            out.push(Change::Meta(Box::new(self.meta.clone())));
        }
        out
    }

    /// The coordinator's signature over a receipt batch id (SPEC.md §5.7), the same one the
    /// machine and its [`ReceiptSigner`] make.
    pub fn sign_receipt_batch(&self, batch_id: &Hash32) -> cairn_spec::Signature {
        self.receipt_signer().sign_batch(batch_id)
    }

    /// What signs this machine's receipts, for a driver that signs a group's receipts on
    /// another thread than the one running the machine.
    pub fn receipt_signer(&self) -> ReceiptSigner {
        ReceiptSigner { key: self.key.clone(), seed: self.seed }
    }
}

/// The coordinator's key and the machine's signing seed: signs receipt batch ids exactly as
/// the machine does (`Machine::sign_receipt_batch`), without the machine.
#[derive(Clone)]
pub struct ReceiptSigner {
    key: SigningKey,
    seed: [u8; 32],
}

impl ReceiptSigner {
    /// The signature over a receipt batch id (SPEC.md §5.7).
    pub fn sign_batch(&self, batch_id: &Hash32) -> cairn_spec::Signature {
        self.key.sign(batch_id, &aux_for(&self.seed, batch_id))
    }
}
