//! The node's core: the lifecycle machine and the store it persists to, behind one lock.
//! Every accepted event is written (one atomic batch, synced when it accepts a receipt, an
//! epoch or a commitment) before its effects are returned, so nothing answered is ever lost.
//!
//! Owns the order "decide, persist, then act". Must never perform an effect itself (the node
//! gossips and anchors) and never keep running after a failed write: memory would be ahead of
//! disk, so the core refuses everything until the node restarts from disk.

use std::sync::Arc;

use thiserror::Error;

use crate::lifecycle::{Effect, LifecycleConfig, Machine, Refusal, RestoreError, Step};
use crate::lifecycle_store::{self as ls, LoadError};
use crate::store::{KvStore, StoreError};

/// Why the core could not do something.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum CoreError {
    /// The event was refused; nothing changed.
    #[error(transparent)]
    Refused(#[from] Refusal),
    /// The write failed: the node must stop and restart from disk.
    #[error("storage failed; the node must restart: {0}")]
    Store(#[from] StoreError),
    /// A previous write failed.
    #[error("the node is stopping after a storage failure")]
    Poisoned,
}

/// Why the core could not open.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum OpenError {
    /// Reading the state failed.
    #[error(transparent)]
    Load(#[from] LoadError),
    /// The state is inconsistent.
    #[error(transparent)]
    Restore(#[from] RestoreError),
    /// Writing the initial state failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Answers of a group commit, in order, and the effects of the accepted ones.
pub type Batched<T> = (Vec<Result<T, Refusal>>, Vec<Effect>);

/// The machine and its store.
pub struct Core {
    machine: Machine,
    store: Arc<dyn KvStore>,
    poisoned: bool,
}

impl Core {
    /// Resumes from the store, or starts fresh (and writes the initial state).
    pub fn open(
        cfg: LifecycleConfig,
        key: cairn_spec::SigningKey,
        store: Arc<dyn KvStore>,
        now: u64,
    ) -> Result<Self, OpenError> {
        let machine = match ls::load(store.as_ref())? {
            Some(snap) => Machine::restore(cfg, key, snap)?,
            None => {
                let m = Machine::new(cfg, key, now);
                let mut b = crate::store::Batch::new();
                ls::add(&mut b, &crate::lifecycle::Change::Meta(Box::new(m.meta().clone())));
                store.write(b.sync())?;
                m
            }
        };
        Ok(Core { machine, store, poisoned: false })
    }

    /// The machine (read-only).
    pub fn machine(&self) -> &Machine {
        &self.machine
    }

    /// The store.
    pub fn store(&self) -> &Arc<dyn KvStore> {
        &self.store
    }

    /// Runs one event on the machine and persists its step; returns the event's answer and
    /// the effects to perform.
    pub fn apply<T>(
        &mut self,
        f: impl FnOnce(&mut Machine) -> Result<(T, Step), Refusal>,
    ) -> Result<(T, Vec<Effect>), CoreError> {
        if self.poisoned {
            return Err(CoreError::Poisoned);
        }
        let (out, step) = f(&mut self.machine)?;
        let effects = self.persist(step)?;
        Ok((out, effects))
    }

    /// Runs many events and persists them in one batch (group commit): answers in order,
    /// each `Ok` only once the whole batch is on disk.
    pub fn apply_many<E, T>(
        &mut self,
        events: impl IntoIterator<Item = E>,
        mut f: impl FnMut(&mut Machine, E) -> Result<(T, Step), Refusal>,
    ) -> Result<Batched<T>, CoreError> {
        if self.poisoned {
            return Err(CoreError::Poisoned);
        }
        let mut all = Step::default();
        let mut answers = Vec::new();
        self.machine.begin_group();
        for e in events {
            match f(&mut self.machine, e) {
                Ok((t, step)) => {
                    all.extend(step);
                    answers.push(Ok(t));
                }
                Err(r) => answers.push(Err(r)),
            }
        }
        let changed = !all.changes.is_empty();
        all.changes.extend(self.machine.end_group(changed));
        self.sign_receipts(&mut all);
        let effects = self.persist(all)?;
        Ok((answers, effects))
    }

    /// Signs the step's receipts on every core (they were left unsigned by the machine).
    fn sign_receipts(&self, step: &mut Step) {
        use crate::lifecycle::Change;
        let mut slots: Vec<&mut cairn_spec::SignedReceipt> = step
            .changes
            .iter_mut()
            .filter_map(|c| match c {
                Change::Receipt { receipt, .. } => Some(receipt.as_mut()),
                _ => None,
            })
            .collect();
        let threads = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
        let chunk = slots.len().div_ceil(threads).max(16);
        let machine = &self.machine;
        std::thread::scope(|s| {
            for part in slots.chunks_mut(chunk) {
                s.spawn(move || {
                    for r in part.iter_mut() {
                        r.signature = machine.sign_receipt(&r.id());
                    }
                });
            }
        });
        let signed: std::collections::HashMap<cairn_spec::Hash32, cairn_spec::Signature> = step
            .changes
            .iter()
            .filter_map(|c| match c {
                Change::Receipt { receipt, .. } => Some((receipt.id(), receipt.signature)),
                _ => None,
            })
            .collect();
        for e in &mut step.effects {
            if let Effect::Receipt(r) = e {
                if let Some(sig) = signed.get(&r.id()) {
                    r.signature = *sig;
                }
            }
        }
    }

    fn persist(&mut self, step: Step) -> Result<Vec<Effect>, CoreError> {
        if !step.changes.is_empty() {
            if let Err(e) = self.store.write(&ls::batch_for(&step)) {
                self.poisoned = true;
                tracing::error!(target: "cairn::core", error = %e, "storage write failed; refusing further work");
                return Err(e.into());
            }
        }
        Ok(step.effects)
    }
}
