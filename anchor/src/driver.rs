//! The anchor driver: the I/O edge around the anchor state machine. It follows the chain
//! (connecting and disconnecting blocks, detecting reorgs), feeds fee estimates, the time
//! and randomness to the machine, and performs its effects in order.
//!
//! Owns the ordering guarantee: a changeset is committed to the store before any broadcast
//! that follows it, and nothing after a failed commit runs. Must never decide anything the
//! machine decides.

use bitcoin::Txid;
use cairn_spec::AnchorPayload;
use thiserror::Error;

use crate::backend::{BroadcastError, ChainBackend, ChainError};
use crate::machine::{AnchorConfig, AnchorMachine, DecideContext, Effect, MachineError, Notice};
use crate::store::AnchorStore;
use crate::tx::{AnchorSigner, Payout};

/// Why the driver stopped.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum DriverError {
    /// The node is on another chain than configured.
    #[error("Bitcoin node is on chain {found:?} but Cairn is configured for {expected} ({expected_core:?}); refusing to anchor")]
    WrongNetwork {
        /// Configured network.
        expected: cairn_spec::Network,
        /// Bitcoin Core's name for it.
        expected_core: &'static str,
        /// What the node reports.
        found: String,
    },
    /// A backend call failed.
    #[error(transparent)]
    Chain(#[from] ChainError),
    /// The store failed; nothing after the failed write was done.
    #[error("anchor store: {0}")]
    Store(String),
    /// The machine refused a block event (a reorg deeper than the undo data).
    #[error(transparent)]
    Machine(#[from] MachineError),
}

impl DriverError {
    /// True when retrying later may succeed (the node was unreachable).
    pub fn is_transient(&self) -> bool {
        matches!(self, DriverError::Chain(e) if e.is_transient())
    }
}

/// Where a node with no anchor state starts following the chain.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Start {
    /// Read the key's funds from the node's UTXO set at its tip and scan only the newest
    /// blocks ([`AnchorMachine::from_scan`]): minutes on any network, whatever its length.
    Tip,
    /// Scan every block from this height (the funding must be at or above it).
    Height(u32),
}

/// Drives one anchor machine against one backend and one store.
pub struct AnchorDriver<B, S> {
    backend: B,
    store: S,
    machine: AnchorMachine,
    signer: Box<dyn AnchorSigner + Send + Sync>,
    start: Start,
}

impl<B: ChainBackend, S: AnchorStore> AnchorDriver<B, S> {
    /// Checks the node's network, then resumes the persisted state or starts a new one from
    /// `start` (and persists that start before returning).
    pub fn open(
        backend: B,
        store: S,
        config: AnchorConfig,
        signer: Box<dyn AnchorSigner + Send + Sync>,
        start: Start,
    ) -> Result<Self, DriverError> {
        let info = backend.chain_info()?;
        if info.chain != config.network.core_chain_name() {
            return Err(DriverError::WrongNetwork {
                expected: config.network,
                expected_core: config.network.core_chain_name(),
                found: info.chain,
            });
        }
        let key = signer.public_key();
        let placeholder = AnchorMachine::new(config, &key, 0);
        let mut driver = AnchorDriver { backend, store, machine: placeholder, signer, start };
        driver.reload()?;
        Ok(driver)
    }

    /// The machine (for status queries).
    pub fn machine(&self) -> &AnchorMachine {
        &self.machine
    }

    /// The backend.
    pub fn backend(&self) -> &B {
        &self.backend
    }

    /// The store.
    pub fn store(&self) -> &S {
        &self.store
    }

    /// Submits the newest epoch header for anchoring.
    pub fn submit_epoch(&mut self, payload: AnchorPayload) -> Result<Vec<Notice>, DriverError> {
        let effects = self.machine.on_epoch(payload);
        self.apply(effects)
    }

    /// Queues payouts for the next anchor.
    pub fn queue_payouts(&mut self, payouts: Vec<Payout>) -> Result<Vec<Notice>, DriverError> {
        let effects = self.machine.queue_payouts(payouts);
        self.apply(effects)
    }

    /// Brings the machine's view of the chain to the node's best chain: disconnects blocks
    /// that left it, connects new ones.
    pub fn sync(&mut self) -> Result<Vec<Notice>, DriverError> {
        let mut notices = Vec::new();
        loop {
            // Walk back while our last block is no longer on the best chain.
            while let Some((height, hash)) = self.machine.last_block() {
                if self.backend.block_hash(height)? == Some(hash) {
                    break;
                }
                tracing::warn!(target: "cairn::anchor", %hash, height, "block left the best chain; disconnecting");
                let effects = self.machine.on_block_disconnected(&hash)?;
                notices.extend(self.apply(effects)?);
            }
            let tip = self.backend.chain_info()?.tip_height;
            let mut restarted = false;
            while self.machine.next_height() <= tip {
                let height = self.machine.next_height();
                let Some(hash) = self.backend.block_hash(height)? else { break };
                let block = self.backend.block(&hash)?;
                match self.machine.on_block_connected(height, &block) {
                    Ok(effects) => notices.extend(self.apply(effects)?),
                    Err(MachineError::NotConnected { .. }) => {
                        // The chain changed under us between calls: start over.
                        restarted = true;
                        break;
                    }
                    Err(e) => return Err(e.into()),
                }
            }
            if !restarted {
                return Ok(notices);
            }
        }
    }

    /// One round: sync, then let the machine decide with fresh fee data, `now_unix` and
    /// `aux_rand`; performs the effects.
    pub fn step(&mut self, now_unix: u64, aux_rand: [u8; 32]) -> Result<Vec<Notice>, DriverError> {
        let mut notices = self.sync()?;
        let tip_height = self.backend.chain_info()?.tip_height;
        let fee_estimate = self.backend.estimate_fee(self.machine.config().fee_target_blocks)?;
        let relay_fee = self.backend.relay_fee()?;
        let ctx = DecideContext { tip_height, now_unix, fee_estimate, relay_fee, aux_rand };
        let effects = self.machine.decide(&ctx, self.signer.as_ref());
        notices.extend(self.apply(effects)?);
        Ok(notices)
    }

    /// Replaces the in-memory machine by the persisted state, or by a fresh start when
    /// nothing is persisted (a start from the tip is committed before it is used, so a crash
    /// right after it resumes from the same point).
    fn reload(&mut self) -> Result<(), DriverError> {
        let config = self.machine.config().clone();
        let key = self.signer.public_key();
        if let Some((head, records)) = self.store.load().map_err(|e| DriverError::Store(e.to_string()))? {
            self.machine = AnchorMachine::restore(config, &key, head, records);
            return Ok(());
        }
        match self.start {
            Start::Height(h) => self.machine = AnchorMachine::new(config, &key, h),
            Start::Tip => {
                let scan = self.backend.scan_outputs(&crate::tx::anchor_script(&key))?;
                // The set must be the best chain's at the height it names; a tip that moved
                // (or an answer that lies) is retried rather than built on.
                if self.backend.block_hash(scan.height)? != Some(scan.block) {
                    return Err(ChainError::Transient(format!(
                        "the UTXO set was read at block {} (height {}), which is not on the best chain now",
                        scan.block, scan.height
                    ))
                    .into());
                }
                let first = AnchorMachine::scan_start(&config, scan.height);
                let base = match first.checked_sub(1) {
                    Some(h) => Some(
                        self.backend
                            .block_hash(h)?
                            .ok_or_else(|| ChainError::Transient(format!("no block at height {h}")))?,
                    ),
                    None => None,
                };
                // The start is committed here rather than through `apply`, which reloads from
                // the store (and so would come back here) when a commit fails.
                let (machine, effects) = AnchorMachine::from_scan(config, &key, &scan, base);
                for effect in effects {
                    match effect {
                        Effect::Persist(cs) => {
                            self.store.commit(&cs).map_err(|e| DriverError::Store(e.to_string()))?
                        }
                        Effect::Notice(n) => {
                            tracing::info!(target: "cairn::anchor", notice = ?n, "started from the UTXO set")
                        }
                        Effect::Broadcast(_) => {}
                    }
                }
                self.machine = machine;
            }
        }
        Ok(())
    }

    fn apply(&mut self, effects: Vec<Effect>) -> Result<Vec<Notice>, DriverError> {
        let mut notices = Vec::new();
        let mut queue: std::collections::VecDeque<Effect> = effects.into();
        while let Some(effect) = queue.pop_front() {
            match effect {
                Effect::Persist(cs) => {
                    // A failed write stops everything after it: no broadcast without a record.
                    // The machine already moved on in memory; go back to what is on disk so
                    // the failed transition leaves no trace.
                    if let Err(e) = self.store.commit(&cs) {
                        self.reload()?;
                        return Err(DriverError::Store(e.to_string()));
                    }
                }
                Effect::Broadcast(tx) => {
                    let txid: Txid = tx.compute_txid();
                    match self.backend.broadcast(&tx) {
                        Ok(_) => tracing::info!(target: "cairn::anchor", %txid, "broadcast"),
                        Err(BroadcastError::Chain(e)) if e.is_transient() => {
                            // Re-broadcast happens at the next block; the record is safe.
                            tracing::warn!(target: "cairn::anchor", %txid, error = %e, "broadcast deferred");
                        }
                        Err(e) => {
                            tracing::warn!(target: "cairn::anchor", %txid, error = %e, "broadcast refused");
                            queue.extend(self.machine.on_broadcast_error(txid, &e));
                        }
                    }
                }
                Effect::Notice(n) => notices.push(n),
            }
        }
        Ok(notices)
    }
}
