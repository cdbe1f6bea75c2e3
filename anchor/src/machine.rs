//! The anchor state machine: which epoch to commit, which outputs to spend, when to replace
//! a stuck anchor, how confirmations and reorgs change what is anchored.
//!
//! Owns the anchor state (own UTXOs, anchor records, recent blocks with undo data, fee
//! budget, payout queue) and every decision about it. Events in, effects out: it never
//! talks to Bitcoin, reads a clock or draws randomness — the driver passes blocks, fee
//! estimates, the time and auxiliary randomness, then performs the effects in order
//! (persist before broadcast). It must never emit a broadcast that is not preceded by the
//! persist that records it.

use std::collections::{BTreeMap, VecDeque};

use bitcoin::consensus::encode::{deserialize, serialize};
use bitcoin::{Amount, Block, BlockHash, FeeRate, OutPoint, ScriptBuf, Transaction, Txid};
use cairn_spec::{AnchorPayload, Network, PubKey};
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::backend::{BroadcastError, OutputScan};
use crate::store::Changeset;
use crate::tx::{anchor_script, build_anchor, AnchorPlan, AnchorSigner, BuildError, Payout, Utxo};

/// `since_height` of an anchor that a reorg returned to the mempool: its wait restarts at
/// the next decision round's tip.
const SINCE_NEXT_ROUND: u32 = u32::MAX;

/// Operator settings of the anchor machine.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AnchorConfig {
    /// Network; the backend's chain must match.
    pub network: Network,
    /// Confirmation target passed to the fee estimator.
    pub fee_target_blocks: u16,
    /// Rate used when the node has no estimate (regtest, a fresh node).
    pub fallback_fee_rate: FeeRate,
    /// Most one anchor (including its replacements) may pay.
    pub max_fee_per_anchor: Amount,
    /// Most all anchors of one UTC day may pay together.
    pub max_fee_per_day: Amount,
    /// Blocks without confirmation after which an anchor is replaced.
    pub stuck_after_blocks: u32,
    /// Most inputs per anchor (the chain input plus top-ups).
    pub max_inputs: usize,
    /// Most payout outputs per anchor.
    pub max_payouts: usize,
    /// Confirmations before a coinbase output may be spent.
    pub coinbase_maturity: u32,
    /// Recent blocks kept with undo data: the deepest reorg handled.
    pub keep_blocks: usize,
    /// Smallest output to the anchor address taken as a top-up; smaller ones (dust anyone
    /// can send to the public address) are not tracked, nor swept into anchors.
    pub min_topup: Amount,
    /// Most own outputs tracked (the largest kept): the state stays bounded whatever is
    /// sent to the address.
    pub max_utxos: usize,
    /// Confirmations an output needs before it can become the genesis output: the headers
    /// commit it for ever, so a reorg must not be able to take it away. A machine started
    /// from a UTXO set also rescans this many blocks itself ([`AnchorMachine::scan_start`]).
    pub genesis_depth: u32,
}

impl AnchorConfig {
    /// Defaults for `network` (regtest and signet get a fallback rate of 2 sat/vB; others 10).
    pub fn new(network: Network) -> Self {
        let fallback: u32 = match network {
            Network::Regtest | Network::Signet => 2,
            _ => 10,
        };
        AnchorConfig {
            network,
            fee_target_blocks: 6,
            fallback_fee_rate: FeeRate::from_sat_per_vb_u32(fallback),
            max_fee_per_anchor: Amount::from_sat(50_000),
            max_fee_per_day: Amount::from_sat(1_000_000),
            stuck_after_blocks: 3,
            max_inputs: 20,
            max_payouts: 200,
            coinbase_maturity: 100,
            keep_blocks: 144,
            min_topup: Amount::from_sat(10_000),
            max_utxos: 1_000,
            genesis_depth: 1,
        }
    }
}

/// Where an anchor transaction stands.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AnchorStatus {
    /// Broadcast (or due to be), not in a block of the best chain.
    Pending,
    /// Superseded by a fee-bumped replacement.
    Replaced {
        /// The replacement.
        by: Txid,
    },
    /// In a best-chain block.
    Confirmed {
        /// Block height.
        height: u32,
        /// Block hash.
        block: BlockHash,
    },
    /// It can never confirm: a conflicting transaction (its replacement, its original, or
    /// someone else's spend of an input) confirmed, or it spends an output of an anchor that
    /// is itself conflicted.
    Conflicted,
}

/// One anchor transaction the machine signed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AnchorRecord {
    /// Creation order.
    pub seq: u64,
    /// Txid.
    pub txid: Txid,
    /// The signed transaction, consensus-serialized (hex in JSON).
    #[serde(with = "cairn_spec::serde_hex")]
    pub raw: Vec<u8>,
    /// Epoch committed.
    pub payload: AnchorPayload,
    /// Inputs (input 0 is the chain input).
    pub inputs: Vec<Utxo>,
    /// Fee paid.
    pub fee: Amount,
    /// Virtual size.
    pub vsize: u64,
    /// Payouts carried.
    pub payouts: Vec<Payout>,
    /// Status.
    pub status: AnchorStatus,
    /// Tip height when broadcast or last returned to the mempool (stuck detection).
    pub since_height: u32,
    /// The record this one replaced.
    pub replaces: Option<Txid>,
}

impl AnchorRecord {
    /// The signed transaction.
    pub fn tx(&self) -> Option<Transaction> {
        deserialize(&self.raw).ok()
    }

    /// The chain input.
    pub fn chain_input(&self) -> Option<OutPoint> {
        self.inputs.first().map(|u| u.outpoint)
    }

    /// Fee rate paid.
    pub fn fee_rate(&self) -> FeeRate {
        FeeRate::from_sat_per_kwu(self.fee.to_sat().saturating_mul(250) / self.vsize.max(1))
    }

    fn spends_any(&self, ops: &[OutPoint]) -> bool {
        self.inputs.iter().any(|u| ops.contains(&u.outpoint))
    }
}

/// An output paying the anchor key, confirmed in the best chain and not spent there.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OwnUtxo {
    /// Outpoint.
    pub outpoint: OutPoint,
    /// Value.
    pub value: Amount,
    /// Height of its block.
    pub height: u32,
    /// Coinbase outputs wait for maturity.
    pub coinbase: bool,
}

/// What connecting one block changed, so a reorg can undo it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockUndo {
    /// Height.
    pub height: u32,
    /// Hash.
    pub hash: BlockHash,
    /// Own outputs the block created.
    pub added: Vec<OutPoint>,
    /// Own outputs the block spent.
    pub removed: Vec<OwnUtxo>,
    /// Records whose status the block changed, with their previous status.
    pub changed: Vec<(Txid, AnchorStatus)>,
    /// `last_confirmed` before the block.
    pub prev_last_confirmed: Option<Txid>,
    /// Payout ids the block returned to the queue (every anchor carrying them conflicted).
    #[serde(default)]
    pub requeued: Vec<u64>,
}

/// The bounded part of the state, persisted whole with every changeset.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Head {
    /// Next block height to scan.
    pub next_height: u32,
    /// Recent connected blocks, oldest first.
    pub blocks: VecDeque<BlockUndo>,
    /// Own confirmed unspent outputs.
    pub utxos: Vec<OwnUtxo>,
    /// The confirmed anchor whose chain output the next anchor spends.
    pub last_confirmed: Option<Txid>,
    /// Newest epoch submitted for anchoring.
    pub latest_epoch: Option<AnchorPayload>,
    /// UTC day of `fee_spent_today`.
    pub fee_day: u64,
    /// Fees committed to anchors created today.
    pub fee_spent_today: Amount,
    /// Payouts waiting for the next anchor.
    pub payout_queue: Vec<Payout>,
    /// Next record sequence number.
    pub next_seq: u64,
    /// The output the first anchor spends, chosen once among the confirmed funds and never
    /// changed: the chain's headers commit it (SPEC.md §7.1), so no other output of the key
    /// can start a second chain.
    #[serde(default)]
    pub genesis: Option<OutPoint>,
    /// The block just below the oldest one held (height and hash), when known: a block
    /// connected with none held must build on it, so a reorg deeper than what the machine
    /// holds is an error rather than a silent switch of branches.
    #[serde(default)]
    pub base: Option<(u32, BlockHash)>,
}

/// What the driver must do, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Effect {
    /// Write atomically and durably before doing anything after it.
    Persist(Changeset),
    /// Relay this transaction.
    Broadcast(Transaction),
    /// Tell the operator / the coordinator.
    Notice(Notice),
}

/// Things worth telling the operator and the coordinator.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Notice {
    /// A fresh node read its funds from the node's UTXO set instead of scanning history.
    Started {
        /// Height the UTXO set was read at.
        scanned_at: u32,
        /// First block the machine scans itself.
        next_height: u32,
        /// Outputs taken from the set.
        outputs: usize,
        /// Their value.
        value: Amount,
    },
    /// A new anchor was signed.
    Anchored {
        /// Txid.
        txid: Txid,
        /// Epoch committed.
        payload: AnchorPayload,
        /// Fee.
        fee: Amount,
    },
    /// A stuck anchor was replaced by a higher-fee one committing the newest epoch.
    Replaced {
        /// Old txid.
        old: Txid,
        /// New txid.
        new: Txid,
        /// Epoch the replacement commits.
        payload: AnchorPayload,
        /// New fee.
        fee: Amount,
    },
    /// An anchor confirmed.
    Confirmed {
        /// Txid.
        txid: Txid,
        /// Epoch committed.
        payload: AnchorPayload,
        /// Block height.
        height: u32,
        /// Payouts it carried.
        payout_ids: Vec<u64>,
    },
    /// A reorg removed an anchor's block; it is pending again and will be re-broadcast.
    Unconfirmed {
        /// Txid.
        txid: Txid,
    },
    /// Not enough confirmed funds at the anchor address.
    InsufficientFunds {
        /// Available.
        available: Amount,
        /// Needed.
        needed: Amount,
    },
    /// The fee caps do not allow the anchor (or the replacement) now.
    FeeCapReached {
        /// Fee that would be needed.
        wanted: Amount,
        /// What the caps allow.
        allowed: Amount,
    },
    /// The node refused a transaction.
    BroadcastRejected {
        /// Txid.
        txid: Txid,
        /// Node's reason.
        reason: String,
    },
    /// The genesis output was chosen: the first header commits it (SPEC.md §7.1).
    Genesis {
        /// The output.
        outpoint: OutPoint,
        /// Its value.
        value: Amount,
    },
    /// The genesis output is not among the confirmed outputs (a reorg deeper than
    /// `genesis_depth` removed it): no anchor until it is back.
    GenesisMissing {
        /// The output.
        outpoint: OutPoint,
    },
    /// An anchor went out with fewer payouts than were queued (or none); the rest wait for
    /// a later anchor.
    PayoutsDeferred {
        /// Payouts the anchor carries.
        carried: usize,
        /// Payouts still queued.
        waiting: usize,
        /// Why all of them did not fit.
        reason: String,
    },
    /// The transaction could not be built or signed.
    BuildFailed {
        /// Why.
        reason: String,
    },
    /// Someone else spent an output the anchor chain needed (the key is used elsewhere).
    ForeignSpend {
        /// The spent outpoint.
        outpoint: OutPoint,
        /// The spending transaction.
        txid: Txid,
    },
}

/// Inputs to a decision round.
#[derive(Clone, Debug)]
pub struct DecideContext {
    /// Current best height.
    pub tip_height: u32,
    /// Unix seconds (for the daily fee budget).
    pub now_unix: u64,
    /// The node's estimate for the target, if any.
    pub fee_estimate: Option<FeeRate>,
    /// The node's minimum relay rate (also the BIP125 incremental rate).
    pub relay_fee: FeeRate,
    /// BIP340 auxiliary randomness for signing.
    pub aux_rand: [u8; 32],
}

/// A block event that does not fit the machine's view of the chain.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum MachineError {
    /// The block is not the next one on top of the last connected block.
    #[error("block {hash} at height {height} does not connect (expected height {expected})")]
    NotConnected {
        /// Height given.
        height: u32,
        /// Its hash.
        hash: BlockHash,
        /// Height expected.
        expected: u32,
    },
    /// A disconnect names a block that is not the last connected one.
    #[error("cannot disconnect {0}: not the last connected block")]
    NotTip(BlockHash),
    /// The reorg is deeper than the undo data kept.
    #[error("reorg deeper than the {0} blocks of undo data kept")]
    TooDeep(usize),
}

/// Whether and how an epoch is anchored.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "status")]
pub enum EpochAnchorStatus {
    /// No anchor commits this epoch or a later one yet.
    Unanchored,
    /// An anchor committing it (or a later epoch) awaits confirmation.
    Pending {
        /// Txid.
        txid: Txid,
    },
    /// Committed by a confirmed anchor (directly or through a later header).
    Confirmed {
        /// Anchor txid.
        txid: Txid,
        /// The epoch the anchor commits (≥ the one asked about).
        anchored_epoch: u32,
        /// Block height.
        height: u32,
        /// Confirmations.
        depth: u32,
    },
}

/// Figures an operator watches, read off the machine's state ([`AnchorMachine::standing`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Standing {
    /// Confirmed, mature value at the anchor address.
    pub spendable: Amount,
    /// Newest epoch submitted for anchoring.
    pub latest_epoch: Option<u32>,
    /// Newest epoch a confirmed anchor commits.
    pub anchored_epoch: Option<u32>,
    /// Height of the newest confirmed anchor's block.
    pub last_anchor_height: Option<u32>,
    /// Anchors awaiting confirmation.
    pub pending: usize,
    /// Fees committed today (UTC).
    pub fee_spent_today: Amount,
}

impl Standing {
    /// Epochs submitted that no confirmed anchor commits yet.
    pub fn unanchored_epochs(&self) -> u32 {
        match (self.latest_epoch, self.anchored_epoch) {
            (Some(l), Some(a)) => l.saturating_sub(a),
            (Some(l), None) => l.saturating_add(1),
            (None, _) => 0,
        }
    }
}

/// The anchor state machine.
#[derive(Clone, Debug)]
pub struct AnchorMachine {
    config: AnchorConfig,
    script: ScriptBuf,
    head: Head,
    records: BTreeMap<Txid, AnchorRecord>,
    last_rebroadcast_tip: Option<u32>,
}

impl AnchorMachine {
    /// A fresh machine for `key` that starts scanning at `start_height` (a height at or
    /// before the funding transaction).
    pub fn new(config: AnchorConfig, key: &PubKey, start_height: u32) -> Self {
        AnchorMachine {
            config,
            script: anchor_script(key),
            head: Head {
                next_height: start_height,
                blocks: VecDeque::new(),
                utxos: Vec::new(),
                last_confirmed: None,
                latest_epoch: None,
                fee_day: 0,
                fee_spent_today: Amount::ZERO,
                payout_queue: Vec::new(),
                next_seq: 0,
                genesis: None,
                base: None,
            },
            records: BTreeMap::new(),
            last_rebroadcast_tip: None,
        }
    }

    /// A machine resumed from what the store holds.
    pub fn restore(config: AnchorConfig, key: &PubKey, head: Head, records: Vec<AnchorRecord>) -> Self {
        AnchorMachine {
            config,
            script: anchor_script(key),
            head,
            records: records.into_iter().map(|r| (r.txid, r)).collect(),
            last_rebroadcast_tip: None,
        }
    }

    /// A fresh machine for `key` that starts from the node's UTXO set instead of the chain's
    /// history: it keeps the outputs of `scan` that are at least `genesis_depth` blocks deep
    /// and scans the blocks above them itself, so a reorg of the newest blocks is followed
    /// like any other. The first effect persists the start; the driver commits it before
    /// anything else.
    /// `base` is the hash of the block below the first one scanned (`None` when that is the
    /// chain's first block).
    pub fn from_scan(
        config: AnchorConfig,
        key: &PubKey,
        scan: &OutputScan,
        base: Option<BlockHash>,
    ) -> (Self, Vec<Effect>) {
        let first = Self::scan_start(&config, scan.height);
        let mut m = Self::new(config, key, first);
        m.head.base = first.checked_sub(1).zip(base);
        // The node's answer is checked like any outside input: only this key's script, only
        // blocks below the rescan, only what a top-up would count, one entry per outpoint.
        let mut outputs: Vec<OwnUtxo> = scan
            .outputs
            .iter()
            .filter(|o| o.script_pubkey == m.script && o.height < first && o.value >= m.config.min_topup)
            .map(|o| OwnUtxo { outpoint: o.outpoint, value: o.value, height: o.height, coinbase: o.coinbase })
            .collect();
        outputs.sort_by_key(|o| o.outpoint);
        outputs.dedup_by_key(|o| o.outpoint);
        outputs.sort_by(|a, b| b.value.cmp(&a.value).then(a.outpoint.cmp(&b.outpoint)));
        outputs.truncate(m.config.max_utxos);
        let value = outputs.iter().map(|o| o.value).fold(Amount::ZERO, |a, b| a + b);
        let count = outputs.len();
        m.head.utxos = outputs;
        let effects = vec![
            m.persist(&[]),
            Effect::Notice(Notice::Started {
                scanned_at: scan.height,
                next_height: first,
                outputs: count,
                value,
            }),
        ];
        (m, effects)
    }

    /// The first block a machine started from a UTXO set read at `scan_height` scans itself:
    /// `genesis_depth` blocks (at least one) are rescanned, so an output younger than that,
    /// which a reorg may still take away, is followed block by block.
    pub fn scan_start(config: &AnchorConfig, scan_height: u32) -> u32 {
        scan_height.saturating_add(1).saturating_sub(config.genesis_depth.max(1))
    }

    /// The configuration.
    pub fn config(&self) -> &AnchorConfig {
        &self.config
    }

    /// The persisted head.
    pub fn head(&self) -> &Head {
        &self.head
    }

    /// All records, by txid.
    pub fn records(&self) -> &BTreeMap<Txid, AnchorRecord> {
        &self.records
    }

    /// The genesis output, once chosen.
    pub fn genesis(&self) -> Option<OutPoint> {
        self.head.genesis
    }

    /// Next height to scan.
    pub fn next_height(&self) -> u32 {
        self.head.next_height
    }

    /// The last connected block.
    pub fn last_block(&self) -> Option<(u32, BlockHash)> {
        self.head.blocks.back().map(|b| (b.height, b.hash))
    }

    /// Confirmed spendable balance at the anchor address at `tip_height`.
    pub fn spendable(&self, tip_height: u32) -> Amount {
        self.mature(tip_height).iter().map(|u| u.value).fold(Amount::ZERO, |a, b| a + b)
    }

    /// What an operator watches, read off the state at `tip_height` (readiness, metrics).
    pub fn standing(&self, tip_height: u32) -> Standing {
        let newest = self
            .records
            .values()
            .filter_map(|r| match r.status {
                AnchorStatus::Confirmed { height, .. } => Some((r.payload.height, height)),
                _ => None,
            })
            .max();
        Standing {
            spendable: self.spendable(tip_height),
            latest_epoch: self.head.latest_epoch.map(|p| p.height),
            anchored_epoch: newest.map(|(e, _)| e),
            last_anchor_height: self
                .records
                .values()
                .filter_map(|r| match r.status {
                    AnchorStatus::Confirmed { height, .. } => Some(height),
                    _ => None,
                })
                .max(),
            pending: self.pending().len(),
            fee_spent_today: self.head.fee_spent_today,
        }
    }

    /// Records not yet confirmed, in creation order.
    pub fn pending(&self) -> Vec<&AnchorRecord> {
        let mut v: Vec<&AnchorRecord> =
            self.records.values().filter(|r| r.status == AnchorStatus::Pending).collect();
        v.sort_by_key(|r| r.seq);
        v
    }

    /// The chain of confirmed anchors, oldest first (each spends the previous one's output 0).
    pub fn confirmed_chain(&self) -> Vec<&AnchorRecord> {
        let mut out = Vec::new();
        let mut cur = self.head.last_confirmed.and_then(|t| self.records.get(&t));
        while let Some(r) = cur {
            out.push(r);
            cur = r
                .chain_input()
                .and_then(|op| self.records.get(&op.txid))
                .filter(|p| r.chain_input() == Some(OutPoint { txid: p.txid, vout: 0 }));
        }
        out.reverse();
        out
    }

    /// How `epoch` is anchored at `tip_height`.
    pub fn epoch_status(&self, epoch: u32, tip_height: u32) -> EpochAnchorStatus {
        let confirmed = self
            .records
            .values()
            .filter_map(|r| match r.status {
                AnchorStatus::Confirmed { height, .. } if r.payload.height >= epoch => Some((height, r)),
                _ => None,
            })
            .min_by_key(|(h, r)| (*h, r.payload.height));
        if let Some((height, r)) = confirmed {
            return EpochAnchorStatus::Confirmed {
                txid: r.txid,
                anchored_epoch: r.payload.height,
                height,
                depth: crate::settle::confirmations(height, tip_height),
            };
        }
        match self.pending().into_iter().find(|r| r.payload.height >= epoch) {
            Some(r) => EpochAnchorStatus::Pending { txid: r.txid },
            None => EpochAnchorStatus::Unanchored,
        }
    }

    fn persist(&self, changed: &[Txid]) -> Effect {
        Effect::Persist(Changeset {
            head: self.head.clone(),
            records: changed.iter().filter_map(|t| self.records.get(t).cloned()).collect(),
        })
    }

    /// The newest epoch settled at `tip_height`: committed by a confirmed anchor at least
    /// `depth` blocks deep (`settle::settled_epoch`).
    pub fn settled_epoch(&self, tip_height: u32, depth: u32) -> Option<u32> {
        let confirmed = self.records.values().filter_map(|r| match r.status {
            AnchorStatus::Confirmed { height, .. } => Some((r.payload.height, height)),
            _ => None,
        });
        crate::settle::settled_epoch(confirmed, tip_height, depth)
    }

    /// A new epoch header to commit; anchors always commit the newest one submitted.
    pub fn on_epoch(&mut self, payload: AnchorPayload) -> Vec<Effect> {
        if self.head.latest_epoch.is_some_and(|p| p.height >= payload.height) {
            return Vec::new();
        }
        self.head.latest_epoch = Some(payload);
        vec![self.persist(&[])]
    }

    /// Payouts to carry in the next anchor.
    pub fn queue_payouts(&mut self, payouts: Vec<Payout>) -> Vec<Effect> {
        if payouts.is_empty() {
            return Vec::new();
        }
        self.head.payout_queue.extend(payouts);
        vec![self.persist(&[])]
    }

    /// A block on top of the last connected one.
    pub fn on_block_connected(&mut self, height: u32, block: &Block) -> Result<Vec<Effect>, MachineError> {
        let hash = block.block_hash();
        let connects = match (self.head.blocks.back(), self.head.base) {
            (Some(last), _) => last.hash == block.header.prev_blockhash && height == last.height + 1,
            (None, Some((h, base))) if height == h.saturating_add(1) && height == self.head.next_height => {
                if block.header.prev_blockhash != base {
                    // The block below everything held left the best chain.
                    return Err(MachineError::TooDeep(self.config.keep_blocks));
                }
                true
            }
            (None, _) => height == self.head.next_height,
        };
        if !connects {
            return Err(MachineError::NotConnected { height, hash, expected: self.head.next_height });
        }
        let mut undo = BlockUndo {
            height,
            hash,
            added: Vec::new(),
            removed: Vec::new(),
            changed: Vec::new(),
            prev_last_confirmed: self.head.last_confirmed,
            requeued: Vec::new(),
        };
        let mut effects = Vec::new();
        let mut changed_records = Vec::new();
        for tx in &block.txdata {
            let txid = tx.compute_txid();
            let spent: Vec<OutPoint> = tx.input.iter().map(|i| i.previous_output).collect();
            for op in &spent {
                if let Some(pos) = self.head.utxos.iter().position(|u| u.outpoint == *op) {
                    undo.removed.push(self.head.utxos.remove(pos));
                }
            }
            // Output 0 of an anchor of ours is the chain, whatever its value.
            let ours = self.records.contains_key(&txid);
            for (vout, out) in tx.output.iter().enumerate() {
                let chain = ours && vout == 0;
                if out.script_pubkey == self.script && (chain || out.value >= self.config.min_topup) {
                    let outpoint = OutPoint { txid, vout: vout as u32 };
                    self.head.utxos.push(OwnUtxo {
                        outpoint,
                        value: out.value,
                        height,
                        coinbase: tx.is_coinbase(),
                    });
                    undo.added.push(outpoint);
                }
            }
            if let Some(rec) = self.records.get_mut(&txid) {
                undo.changed.push((txid, rec.status.clone()));
                rec.status = AnchorStatus::Confirmed { height, block: hash };
                changed_records.push(txid);
                let newer = self
                    .head
                    .last_confirmed
                    .and_then(|t| self.records.get(&t))
                    .is_none_or(|cur| cur.seq <= self.records.get(&txid).map_or(0, |r| r.seq));
                if newer {
                    self.head.last_confirmed = Some(txid);
                }
                if let Some(r) = self.records.get(&txid) {
                    effects.push(Effect::Notice(Notice::Confirmed {
                        txid,
                        payload: r.payload,
                        height,
                        payout_ids: r.payouts.iter().map(|p| p.id).collect(),
                    }));
                }
                // Every other version of this anchor can now never confirm.
                for (other, r) in self.records.iter_mut() {
                    if *other != txid
                        && matches!(r.status, AnchorStatus::Pending | AnchorStatus::Replaced { .. })
                        && r.spends_any(&spent)
                    {
                        undo.changed.push((*other, r.status.clone()));
                        r.status = AnchorStatus::Conflicted;
                        changed_records.push(*other);
                    }
                }
            } else {
                // Someone else spent the output the next anchor must spend (the key is used
                // elsewhere: a second node, a stale restore): say so even with no anchor
                // pending on it, or the chain would just stop without a word.
                let head_output = match self.head.last_confirmed {
                    Some(t) => Some(OutPoint { txid: t, vout: 0 }),
                    None => self.head.genesis,
                };
                let mut told = false;
                // A transaction of someone else spending what a pending anchor spends.
                for r in self.records.values_mut() {
                    if matches!(r.status, AnchorStatus::Pending | AnchorStatus::Replaced { .. })
                        && r.spends_any(&spent)
                    {
                        if let Some(op) = r.chain_input() {
                            told |= Some(op) == head_output;
                            effects.push(Effect::Notice(Notice::ForeignSpend { outpoint: op, txid }));
                        }
                        undo.changed.push((r.txid, r.status.clone()));
                        r.status = AnchorStatus::Conflicted;
                        changed_records.push(r.txid);
                    }
                }
                if let Some(op) = head_output.filter(|op| !told && spent.contains(op)) {
                    effects.push(Effect::Notice(Notice::ForeignSpend { outpoint: op, txid }));
                }
            }
        }
        if self.head.utxos.len() > self.config.max_utxos {
            // Keep the chain outputs and the largest top-ups; the rest stay on chain for the
            // operator (they are not lost, only not tracked).
            let chains: std::collections::HashSet<OutPoint> = self
                .records
                .keys()
                .map(|t| OutPoint { txid: *t, vout: 0 })
                .chain(self.head.genesis)
                .collect();
            self.head.utxos.sort_by(|a, b| {
                chains.contains(&b.outpoint).cmp(&chains.contains(&a.outpoint)).then(b.value.cmp(&a.value))
            });
            self.head.utxos.truncate(self.config.max_utxos);
        }
        self.conflict_descendants(&mut undo, &mut changed_records);
        undo.requeued = self.requeue_orphaned_payouts(&changed_records);
        self.head.blocks.push_back(undo);
        while self.head.blocks.len() > self.config.keep_blocks {
            if let Some(old) = self.head.blocks.pop_front() {
                self.head.base = Some((old.height, old.hash));
            }
        }
        self.head.next_height = height + 1;
        effects.insert(0, self.persist(&changed_records));
        Ok(effects)
    }

    /// The last connected block left the best chain.
    pub fn on_block_disconnected(&mut self, hash: &BlockHash) -> Result<Vec<Effect>, MachineError> {
        match self.head.blocks.back() {
            Some(last) if last.hash == *hash => {}
            Some(_) => return Err(MachineError::NotTip(*hash)),
            None => return Err(MachineError::TooDeep(self.config.keep_blocks)),
        }
        let Some(undo) = self.head.blocks.pop_back() else {
            return Err(MachineError::NotTip(*hash));
        };
        self.head.utxos.retain(|u| !undo.added.contains(&u.outpoint));
        self.head.utxos.extend(undo.removed.iter().copied());
        let mut effects = Vec::new();
        let mut changed = Vec::new();
        for (txid, prev) in undo.changed.iter().rev() {
            if let Some(r) = self.records.get_mut(txid) {
                if matches!(r.status, AnchorStatus::Confirmed { .. }) {
                    // Back to the mempool (Bitcoin Core re-adds it); we re-broadcast too.
                    r.status = AnchorStatus::Pending;
                    // Its wait restarts at the tip the next decision round sees.
                    r.since_height = SINCE_NEXT_ROUND;
                    effects.push(Effect::Notice(Notice::Unconfirmed { txid: *txid }));
                } else {
                    r.status = prev.clone();
                }
                changed.push(*txid);
            }
        }
        // Of conflicting versions now pending again, only the newest (highest fee) stays so.
        let pending: Vec<(u64, Txid, Vec<OutPoint>)> = self
            .records
            .values()
            .filter(|r| r.status == AnchorStatus::Pending)
            .map(|r| (r.seq, r.txid, r.inputs.iter().map(|u| u.outpoint).collect()))
            .collect();
        for (seq, txid, inputs) in &pending {
            if let Some((_, newer, _)) = pending
                .iter()
                .filter(|(s, _, i)| s > seq && i.iter().any(|o| inputs.contains(o)))
                .max_by_key(|p| p.0)
            {
                if let Some(r) = self.records.get_mut(txid) {
                    r.status = AnchorStatus::Replaced { by: *newer };
                    changed.push(*txid);
                }
            }
        }
        // Those payouts ride on the anchors that are live again.
        self.head.payout_queue.retain(|p| !undo.requeued.contains(&p.id));
        self.head.last_confirmed = undo.prev_last_confirmed;
        self.head.next_height = undo.height;
        self.last_rebroadcast_tip = None;
        effects.insert(0, self.persist(&changed));
        Ok(effects)
    }

    /// An anchor spending an output of a conflicted one can never confirm either: marks every
    /// such descendant conflicted (recorded in `undo`), so nothing waits on it or bumps it.
    fn conflict_descendants(&mut self, undo: &mut BlockUndo, changed: &mut Vec<Txid>) {
        loop {
            let dead: Vec<Txid> = self
                .records
                .values()
                .filter(|r| matches!(r.status, AnchorStatus::Pending | AnchorStatus::Replaced { .. }))
                .filter(|r| {
                    r.inputs.iter().any(|u| {
                        self.records
                            .get(&u.outpoint.txid)
                            .is_some_and(|p| p.status == AnchorStatus::Conflicted)
                    })
                })
                .map(|r| r.txid)
                .collect();
            if dead.is_empty() {
                return;
            }
            for txid in dead {
                if let Some(r) = self.records.get_mut(&txid) {
                    undo.changed.push((txid, r.status.clone()));
                    r.status = AnchorStatus::Conflicted;
                    changed.push(txid);
                }
            }
        }
    }

    /// Payouts of the records in `changed` that no live anchor (pending, replaced or
    /// confirmed) carries any more go back to the queue, each once; returns their ids.
    fn requeue_orphaned_payouts(&mut self, changed: &[Txid]) -> Vec<u64> {
        let mut requeued = Vec::new();
        for txid in changed {
            let Some(r) = self.records.get(txid) else { continue };
            if r.status != AnchorStatus::Conflicted {
                continue;
            }
            for p in r.payouts.clone() {
                let carried = self
                    .records
                    .values()
                    .any(|o| o.status != AnchorStatus::Conflicted && o.payouts.iter().any(|q| q.id == p.id));
                let queued = self.head.payout_queue.iter().any(|q| q.id == p.id);
                if !carried && !queued {
                    requeued.push(p.id);
                    self.head.payout_queue.push(p);
                }
            }
        }
        requeued
    }

    fn mature(&self, tip_height: u32) -> Vec<OwnUtxo> {
        let maturity = self.config.coinbase_maturity;
        let mut v: Vec<OwnUtxo> = self
            .head
            .utxos
            .iter()
            .filter(|u| !u.coinbase || crate::settle::confirmations(u.height, tip_height) >= maturity)
            .copied()
            .collect();
        v.sort_by(|a, b| b.value.cmp(&a.value).then(a.outpoint.cmp(&b.outpoint)));
        v
    }

    fn target_rate(&self, ctx: &DecideContext) -> FeeRate {
        ctx.fee_estimate.unwrap_or(self.config.fallback_fee_rate).max(ctx.relay_fee)
    }

    fn roll_day(&mut self, now_unix: u64) {
        let day = now_unix / 86_400;
        if day != self.head.fee_day {
            self.head.fee_day = day;
            self.head.fee_spent_today = Amount::ZERO;
        }
    }

    /// The highest fee the caps allow for an anchor that has already paid `already`.
    fn fee_allowance(&self, already: Amount) -> Amount {
        let day_left =
            self.config.max_fee_per_day.checked_sub(self.head.fee_spent_today).unwrap_or(Amount::ZERO);
        self.config.max_fee_per_anchor.min(already + day_left)
    }

    /// One decision round: choose the genesis output once funds are deep enough, re-broadcast
    /// what is pending, replace the stuck root of the pending chain, or build the next anchor
    /// for the newest epoch.
    pub fn decide(&mut self, ctx: &DecideContext, signer: &dyn AnchorSigner) -> Vec<Effect> {
        self.roll_day(ctx.now_unix);
        let mut effects = Vec::new();
        if self.head.genesis.is_none() && self.records.is_empty() {
            // The largest output `genesis_depth` deep becomes the genesis output, before any
            // header commits it (the first header waits for it).
            let depth = self.config.genesis_depth;
            let deep = self.mature(ctx.tip_height).into_iter().find(|u| {
                crate::settle::confirmations(u.height, ctx.tip_height) >= depth
                    && u.value >= crate::tx::MIN_CHAIN_VALUE
            });
            if let Some(u) = deep {
                self.head.genesis = Some(u.outpoint);
                effects.push(self.persist(&[]));
                effects.push(Effect::Notice(Notice::Genesis { outpoint: u.outpoint, value: u.value }));
            }
        }
        let restarted: Vec<Txid> = self
            .records
            .values_mut()
            .filter(|r| r.status == AnchorStatus::Pending && r.since_height == SINCE_NEXT_ROUND)
            .map(|r| {
                r.since_height = ctx.tip_height;
                r.txid
            })
            .collect();
        if !restarted.is_empty() {
            effects.push(self.persist(&restarted));
        }
        let pending: Vec<AnchorRecord> = self.pending().into_iter().cloned().collect();
        if self.last_rebroadcast_tip != Some(ctx.tip_height) {
            // Once per block, and at every start: the node may have lost its mempool.
            effects.extend(pending.iter().filter_map(|r| r.tx()).map(Effect::Broadcast));
            self.last_rebroadcast_tip = Some(ctx.tip_height);
        }
        // Pending anchors form one chain (a reorg can return several to the mempool); the
        // root, whose chain input is confirmed, is what the rest wait on, so it is the one
        // bumped. Its replacement commits the newest epoch, which covers the rest.
        let root = pending.iter().find(|r| {
            r.chain_input().is_none_or(|op| {
                self.records.get(&op.txid).is_none_or(|p| matches!(p.status, AnchorStatus::Confirmed { .. }))
            })
        });
        if let Some(root) = root {
            let stuck = ctx.tip_height >= root.since_height.saturating_add(self.config.stuck_after_blocks)
                || ctx.fee_estimate.is_some_and(|e| root.fee_rate() < e);
            if stuck {
                effects.extend(self.replace(root, ctx, signer));
            }
        }
        if !pending.is_empty() {
            return effects;
        }
        effects.extend(self.new_anchor(ctx, signer));
        effects
    }

    fn new_anchor(&mut self, ctx: &DecideContext, signer: &dyn AnchorSigner) -> Vec<Effect> {
        let Some(latest) = self.head.latest_epoch else { return Vec::new() };
        let last = self.head.last_confirmed.and_then(|t| self.records.get(&t));
        if last.is_some_and(|r| r.payload.height >= latest.height) {
            return Vec::new();
        }
        let mature = self.mature(ctx.tip_height);
        let chain_input = match last {
            Some(r) => {
                let op = OutPoint { txid: r.txid, vout: 0 };
                match mature.iter().find(|u| u.outpoint == op) {
                    Some(u) => *u,
                    // The previous anchor's chain output is not (yet) ours to spend.
                    None => return Vec::new(),
                }
            }
            // The first anchor spends the genesis output the headers commit, and only it.
            None => match self.head.genesis {
                Some(g) => match mature.iter().find(|u| u.outpoint == g) {
                    Some(u) => *u,
                    // A reorg deeper than `genesis_depth` took it, for now.
                    None => return vec![Effect::Notice(Notice::GenesisMissing { outpoint: g })],
                },
                // No output was deep and large enough yet (headers wait for one).
                None => {
                    return vec![Effect::Notice(Notice::InsufficientFunds {
                        available: self.spendable(ctx.tip_height),
                        needed: crate::tx::MIN_CHAIN_VALUE,
                    })]
                }
            },
        };
        // A top-up is spent only when it is worth more than twice what spending it costs.
        let input_cost = crate::tx::fee_for(self.target_rate(ctx), bitcoin::Weight::from_wu(230));
        let extra: Vec<Utxo> = mature
            .iter()
            .filter(|u| u.outpoint != chain_input.outpoint && u.value > input_cost * 2)
            .take(self.config.max_inputs.saturating_sub(1))
            .map(|u| Utxo { outpoint: u.outpoint, value: u.value })
            .collect();
        // Payouts never hold up an anchor: when the funds, the fee caps or the size limit do
        // not allow them all, the anchor carries half as many, down to none; the rest wait.
        // In queue order, each payout the inputs can still cover (one too large waits for
        // funds without holding up the smaller ones behind it).
        let mut budget = extra.iter().map(|u| u.value).fold(chain_input.value, |a, b| a + b);
        budget = budget.checked_sub(crate::tx::MIN_CHAIN_VALUE).unwrap_or(Amount::ZERO);
        let candidates: Vec<Payout> = self
            .head
            .payout_queue
            .iter()
            .filter(|p| p.amount >= p.script_pubkey.minimal_non_dust())
            .filter(|p| match budget.checked_sub(p.amount) {
                Some(left) => {
                    budget = left;
                    true
                }
                None => false,
            })
            .take(self.config.max_payouts)
            .cloned()
            .collect();
        let mut take = candidates.len();
        let mut deferred = None;
        let (plan, built) = loop {
            let mut plan = AnchorPlan {
                chain_input: Utxo { outpoint: chain_input.outpoint, value: chain_input.value },
                extra_inputs: extra.clone(),
                payload: latest,
                payouts: candidates.iter().take(take).cloned().collect(),
                fee_rate: self.target_rate(ctx),
            };
            match self.build_within_caps(&mut plan, Amount::ZERO, ctx, signer) {
                Ok(b) => break (plan, b),
                Err(notice) if take > 0 => {
                    deferred.get_or_insert_with(|| format!("{notice:?}"));
                    take /= 2;
                }
                Err(notice) => return vec![Effect::Notice(notice)],
            }
        };
        let carried: Vec<u64> = plan.payouts.iter().map(|p| p.id).collect();
        self.head.payout_queue.retain(|p| !carried.contains(&p.id));
        self.head.fee_spent_today += built.fee;
        let txid = built.tx.compute_txid();
        let record = AnchorRecord {
            seq: self.head.next_seq,
            txid,
            raw: serialize(&built.tx),
            payload: latest,
            inputs: std::iter::once(plan.chain_input).chain(plan.extra_inputs.iter().copied()).collect(),
            fee: built.fee,
            vsize: built.vsize,
            payouts: plan.payouts.clone(),
            status: AnchorStatus::Pending,
            since_height: ctx.tip_height,
            replaces: None,
        };
        self.head.next_seq += 1;
        self.records.insert(txid, record);
        let mut effects = vec![
            self.persist(&[txid]),
            Effect::Broadcast(built.tx),
            Effect::Notice(Notice::Anchored { txid, payload: latest, fee: built.fee }),
        ];
        if !self.head.payout_queue.is_empty() {
            let reason = deferred
                .unwrap_or_else(|| "the rest exceed what the anchor address holds, or are dust".to_owned());
            effects.push(Effect::Notice(Notice::PayoutsDeferred {
                carried: carried.len(),
                waiting: self.head.payout_queue.len(),
                reason,
            }));
        }
        effects
    }

    /// Builds `plan`; when the fee exceeds what the caps allow (given `already` paid by the
    /// anchor being replaced), lowers the rate to fit, and refuses below the relay rate.
    fn build_within_caps(
        &self,
        plan: &mut AnchorPlan,
        already: Amount,
        ctx: &DecideContext,
        signer: &dyn AnchorSigner,
    ) -> Result<crate::tx::BuiltAnchor, Notice> {
        let to_notice = |e: BuildError| match e {
            BuildError::InsufficientFunds { available, needed } => {
                Notice::InsufficientFunds { available, needed }
            }
            other => Notice::BuildFailed { reason: other.to_string() },
        };
        let built = build_anchor(plan, signer, &ctx.aux_rand).map_err(to_notice)?;
        let allowed = self.fee_allowance(already);
        if built.fee <= allowed {
            return Ok(built);
        }
        let rate = FeeRate::from_sat_per_kwu(allowed.to_sat().saturating_mul(250) / built.vsize.max(1));
        if rate < ctx.relay_fee {
            return Err(Notice::FeeCapReached { wanted: built.fee, allowed });
        }
        plan.fee_rate = rate;
        let built = build_anchor(plan, signer, &ctx.aux_rand).map_err(to_notice)?;
        if built.fee > allowed {
            return Err(Notice::FeeCapReached { wanted: built.fee, allowed });
        }
        Ok(built)
    }

    fn replace(&mut self, old: &AnchorRecord, ctx: &DecideContext, signer: &dyn AnchorSigner) -> Vec<Effect> {
        let payload = match self.head.latest_epoch {
            Some(p) if p.height > old.payload.height => p,
            _ => old.payload,
        };
        let Some((chain_input, extra)) = old.inputs.split_first() else { return Vec::new() };
        // BIP125: a higher rate than the original by at least the incremental relay rate,
        // and an absolute fee that pays for the replacement's own relay.
        let bumped = FeeRate::from_sat_per_kwu(old.fee_rate().to_sat_per_kwu().saturating_mul(5) / 4);
        let min_rate =
            FeeRate::from_sat_per_kwu(old.fee_rate().to_sat_per_kwu() + ctx.relay_fee.to_sat_per_kwu());
        // BIP125 rule 3: the replacement also pays for the pending descendants it evicts. A
        // payee's child (TRUC bounds it to 1,000 vB) is not known here: if Core refuses the
        // replacement for it, the refusal marks it stuck and the next round bids 25 % more.
        let evicted =
            self.pending_descendants(old.txid).iter().map(|r| r.fee).fold(Amount::ZERO, |a, b| a + b);
        let min_fee = old.fee
            + evicted
            + crate::tx::fee_for(ctx.relay_fee, bitcoin::Weight::from_vb_unchecked(old.vsize));
        // Same inputs and outputs (bar the payload's epoch): the size stays `old.vsize`.
        let covers =
            FeeRate::from_sat_per_kwu(min_fee.to_sat().saturating_mul(250).div_ceil(old.vsize.max(1)));
        let mut plan = AnchorPlan {
            chain_input: *chain_input,
            extra_inputs: extra.to_vec(),
            payload,
            payouts: old.payouts.clone(),
            fee_rate: self.target_rate(ctx).max(bumped).max(min_rate).max(covers),
        };
        let built = match self.build_within_caps(&mut plan, old.fee + evicted, ctx, signer) {
            Ok(b) if b.fee >= min_fee && plan.fee_rate >= min_rate => b,
            Ok(b) => {
                return vec![Effect::Notice(Notice::FeeCapReached {
                    wanted: min_fee.max(b.fee),
                    allowed: b.fee,
                })]
            }
            Err(n) => return vec![Effect::Notice(n)],
        };
        let txid = built.tx.compute_txid();
        self.head.fee_spent_today += built.fee.checked_sub(old.fee).unwrap_or(Amount::ZERO);
        if let Some(r) = self.records.get_mut(&old.txid) {
            r.status = AnchorStatus::Replaced { by: txid };
        }
        let record = AnchorRecord {
            seq: self.head.next_seq,
            txid,
            raw: serialize(&built.tx),
            payload,
            inputs: old.inputs.clone(),
            fee: built.fee,
            vsize: built.vsize,
            payouts: old.payouts.clone(),
            status: AnchorStatus::Pending,
            since_height: ctx.tip_height,
            replaces: Some(old.txid),
        };
        self.head.next_seq += 1;
        self.records.insert(txid, record);
        vec![
            self.persist(&[old.txid, txid]),
            Effect::Broadcast(built.tx),
            Effect::Notice(Notice::Replaced { old: old.txid, new: txid, payload, fee: built.fee }),
        ]
    }

    /// Pending records that spend, directly or through other pending records, an output of
    /// `txid`.
    fn pending_descendants(&self, txid: Txid) -> Vec<&AnchorRecord> {
        let mut out: Vec<&AnchorRecord> = Vec::new();
        let mut frontier = vec![txid];
        while let Some(parent) = frontier.pop() {
            for r in self.records.values() {
                if r.status == AnchorStatus::Pending
                    && r.inputs.iter().any(|u| u.outpoint.txid == parent)
                    && !out.iter().any(|o| o.txid == r.txid)
                {
                    out.push(r);
                    frontier.push(r.txid);
                }
            }
        }
        out
    }

    /// The node refused a broadcast.
    pub fn on_broadcast_error(&mut self, txid: Txid, err: &BroadcastError) -> Vec<Effect> {
        let notice = Effect::Notice(Notice::BroadcastRejected { txid, reason: err.to_string() });
        match err {
            BroadcastError::FeeTooLow(_) => {
                // Treat as stuck right away: the next decision round replaces it.
                if let Some(r) = self.records.get_mut(&txid) {
                    if r.status == AnchorStatus::Pending {
                        r.since_height = 0;
                        return vec![self.persist(&[txid]), notice];
                    }
                }
                vec![notice]
            }
            // Missing inputs resolve through the chain scan (a conflict confirmed, or the
            // parent is not yet known to the node); other rejections need the operator.
            _ => vec![notice],
        }
    }
}
