//! Verification against Bitcoin, for auditors: a receipt proof checked step by step (the
//! pure steps of SPEC.md §8.3, then the block on the best chain of the right network, its
//! depth, and the transaction really in that block), and the continuity of an anchor chain
//! from a trusted genesis anchor. Also assembles receipt proofs from chain data.
//!
//! Owns the named checks and their order. Must never trust the proof's claims about Bitcoin:
//! every Bitcoin fact is asked of the backend.

use bitcoin::consensus::encode::serialize;
use bitcoin::hashes::Hash as _;
use bitcoin::{BlockHash, OutPoint, Transaction, Txid, Witness};
use cairn_spec::{AnchorPayload, Hash32, Network, ReceiptProof, SignedEpochHeader, SignedReceipt};
use serde::Serialize;

use crate::backend::{bitcoin_merkle_path, ChainBackend, ChainError};

/// One named check and its outcome.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Check {
    /// Stable name (see [`RECEIPT_CHECKS`]).
    pub name: &'static str,
    /// Passed, failed, or not reached because an earlier check failed.
    pub outcome: Outcome,
    /// What was found.
    pub detail: String,
}

/// Outcome of a check.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// ✓
    Pass,
    /// ✗
    Fail,
    /// Not run: an earlier check failed.
    Skipped,
}

/// Every check of a verification, in order.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Report {
    /// The checks.
    pub checks: Vec<Check>,
}

impl Report {
    /// True when every check passed.
    pub fn ok(&self) -> bool {
        !self.checks.is_empty() && self.checks.iter().all(|c| c.outcome == Outcome::Pass)
    }

    /// The first failed check.
    pub fn first_failure(&self) -> Option<&Check> {
        self.checks.iter().find(|c| c.outcome == Outcome::Fail)
    }

    fn push(&mut self, name: &'static str, ok: bool, detail: impl Into<String>) -> bool {
        let failed_before = self.checks.iter().any(|c| c.outcome != Outcome::Pass);
        let outcome = if failed_before {
            Outcome::Skipped
        } else if ok {
            Outcome::Pass
        } else {
            Outcome::Fail
        };
        self.checks.push(Check { name, outcome, detail: detail.into() });
        outcome == Outcome::Pass
    }
}

/// The checks of a receipt verification, in order.
pub const RECEIPT_CHECKS: [&str; 11] = [
    "network",
    "receipt_signature",
    "epoch",
    "receipt_inclusion",
    "header_chain",
    "anchor_payload",
    "block_inclusion",
    "node_network",
    "block_on_best_chain",
    "tx_in_block",
    "depth",
];

/// The pure step of SPEC.md §8.3 a proof error belongs to.
fn step_of(code: &str) -> &'static str {
    match code {
        "network_mismatch" => "network",
        "receipt_signature" => "receipt_signature",
        "epoch_mismatch" | "coordinator_mismatch" => "epoch",
        "index_out_of_range" | "path_too_short" | "path_too_long" | "receipts_root_mismatch" => {
            "receipt_inclusion"
        }
        "header_signature" | "header_link" => "header_chain",
        "block_index" | "block_merkle_root" => "block_inclusion",
        _ => "anchor_payload",
    }
}

/// Verifies `proof` against Bitcoin through `backend`: every step named, the first failure
/// stopping the rest. `network` is what the auditor expects; `min_depth` the confirmations
/// required.
pub fn verify_receipt(
    proof: &ReceiptProof,
    backend: &dyn ChainBackend,
    network: Network,
    min_depth: u32,
) -> Report {
    let mut r = Report::default();
    let pure = proof.verify();
    let failed_step = pure.as_ref().err().map(|e| (step_of(e.code()), e.to_string()));
    for name in RECEIPT_CHECKS.iter().take(7) {
        match &failed_step {
            Some((step, msg)) if step == name => {
                r.push(name, false, msg.clone());
            }
            _ => {
                let detail = match *name {
                    "network" => format!("receipt and headers on {}", proof.network),
                    "receipt_signature" => {
                        format!("signed by coordinator {}", proof.receipt.body.coordinator)
                    }
                    "epoch" => format!("receipt in epoch {}", proof.receipt.body.epoch),
                    "receipt_inclusion" => format!(
                        "leaf {} of {}",
                        proof.receipt_index,
                        proof.headers.first().map_or(0, |h| h.body.receipt_count)
                    ),
                    "header_chain" => format!("{} signed, linked headers", proof.headers.len()),
                    "anchor_payload" => "OP_RETURN commits to the last header".to_owned(),
                    _ => format!("transaction {} of the block", proof.tx_index),
                };
                r.push(name, true, detail);
            }
        }
    }
    let Ok(v) = pure else {
        for name in RECEIPT_CHECKS.iter().skip(7) {
            r.push(name, false, "not reached");
        }
        return r;
    };
    let block_hash = BlockHash::from_byte_array(v.block_hash.0);
    let txid = Txid::from_byte_array(v.txid.0);
    let chain = backend.chain_info();
    let node_ok = matches!(&chain, Ok(c) if c.chain == network.core_chain_name()) && proof.network == network;
    r.push(
        "node_network",
        node_ok,
        match &chain {
            Ok(c) => format!(
                "node on {:?}, expected {} ({:?}), proof for {}",
                c.chain,
                network,
                network.core_chain_name(),
                proof.network
            ),
            Err(e) => e.to_string(),
        },
    );
    let at_height = backend.block_hash(v.block_height);
    r.push(
        "block_on_best_chain",
        matches!(at_height, Ok(Some(h)) if h == block_hash),
        match &at_height {
            Ok(Some(h)) if *h == block_hash => format!("block {block_hash} at height {}", v.block_height),
            Ok(Some(h)) => format!("block at height {} is {h}, not {block_hash}", v.block_height),
            Ok(None) => format!("no block at height {}", v.block_height),
            Err(e) => e.to_string(),
        },
    );
    let in_block = backend.block(&block_hash).map(|b| b.txdata.iter().position(|t| t.compute_txid() == txid));
    r.push(
        "tx_in_block",
        matches!(in_block, Ok(Some(i)) if i as u32 == proof.tx_index),
        match &in_block {
            Ok(Some(i)) => format!("anchor {txid} is transaction {i}"),
            Ok(None) => format!("anchor {txid} not in block {block_hash}"),
            Err(e) => e.to_string(),
        },
    );
    let depth =
        chain.as_ref().map(|c| c.tip_height.saturating_add(1).saturating_sub(v.block_height)).unwrap_or(0);
    r.push("depth", depth >= min_depth, format!("{depth} confirmations, {min_depth} required"));
    r
}

/// One anchor of a chain to check: its txid and the block the coordinator says holds it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct AnchorRef {
    /// Txid.
    pub txid: Txid,
    /// Block said to hold it.
    pub block: BlockHash,
}

/// Checks that `anchors` form one chain of spends from `genesis` (the first must be it):
/// each in a best-chain block, each carrying one Cairn payload, each spending its
/// predecessor's output 0, payload heights increasing. Returns the report and the payloads.
pub fn verify_anchor_chain(
    genesis: Txid,
    anchors: &[AnchorRef],
    backend: &dyn ChainBackend,
) -> (Report, Vec<AnchorPayload>) {
    let mut r = Report::default();
    let mut payloads = Vec::new();
    r.push(
        "genesis",
        anchors.first().is_some_and(|a| a.txid == genesis),
        format!("chain starts at {genesis}"),
    );
    let mut prev: Option<(Txid, u32)> = None;
    for a in anchors {
        let height = backend.block_height(&a.block);
        if !r.push(
            "anchor_block",
            matches!(height, Ok(Some(_))),
            format!("{} in best-chain block {}", a.txid, a.block),
        ) {
            break;
        }
        let tx = backend.transaction(&a.txid, Some(&a.block));
        let Ok(Some(tx)) = tx else {
            r.push("anchor_tx", false, format!("{} not found in {}", a.txid, a.block));
            break;
        };
        let found: Vec<_> =
            tx.output.iter().filter_map(|o| AnchorPayload::from_script(&o.script_pubkey)).collect();
        let payload = match found.as_slice() {
            [Ok(p)] => *p,
            _ => {
                r.push("anchor_payload", false, format!("{} carries {} Cairn outputs", a.txid, found.len()));
                break;
            }
        };
        if let Some((p, h)) = prev {
            let spends = tx.input.first().map(|i| i.previous_output) == Some(OutPoint { txid: p, vout: 0 });
            if !r.push("continuity", spends, format!("{} spends {p}:0", a.txid)) {
                break;
            }
            if !r.push(
                "payload_order",
                payload.height > h,
                format!("epoch {} after epoch {h}", payload.height),
            ) {
                break;
            }
        }
        payloads.push(payload);
        prev = Some((a.txid, payload.height));
    }
    (r, payloads)
}

/// Equivocation: two different headers signed by one coordinator for one height.
pub fn find_equivocation(headers: &[SignedEpochHeader]) -> Option<(SignedEpochHeader, SignedEpochHeader)> {
    for (i, a) in headers.iter().enumerate() {
        for b in headers.iter().skip(i + 1) {
            if a.body.height == b.body.height
                && a.body.coordinator == b.body.coordinator
                && a.body.network == b.body.network
                && a.body.hash() != b.body.hash()
                && a.verify()
                && b.verify()
            {
                return Some((a.clone(), b.clone()));
            }
        }
    }
    None
}

/// The transaction without witnesses (the bytes of its txid).
pub fn strip_witness(tx: &Transaction) -> Transaction {
    let mut t = tx.clone();
    for i in &mut t.input {
        i.witness = Witness::new();
    }
    t
}

/// Builds a receipt proof from the sidechain data and what Bitcoin holds: the anchor
/// transaction, its position and Merkle path in its block, the block header and height.
#[allow(clippy::too_many_arguments)]
pub fn assemble_receipt_proof(
    network: Network,
    receipt: SignedReceipt,
    receipt_index: u32,
    receipt_path: Vec<Hash32>,
    headers: Vec<SignedEpochHeader>,
    anchor_txid: Txid,
    anchor_block: BlockHash,
    backend: &dyn ChainBackend,
) -> Result<ReceiptProof, ChainError> {
    let block = backend.block(&anchor_block)?;
    let txids: Vec<Txid> = block.txdata.iter().map(|t| t.compute_txid()).collect();
    let index = txids
        .iter()
        .position(|t| *t == anchor_txid)
        .ok_or_else(|| ChainError::Permanent(format!("{anchor_txid} is not in block {anchor_block}")))?;
    let tx = block.txdata.get(index).ok_or_else(|| ChainError::Permanent("index".into()))?;
    let height = backend
        .block_height(&anchor_block)?
        .ok_or_else(|| ChainError::Permanent(format!("block {anchor_block} is not on the best chain")))?;
    Ok(ReceiptProof {
        network,
        receipt,
        receipt_index,
        receipt_path,
        headers,
        anchor_kind: cairn_spec::proof::AnchorKind::OpReturnOutput,
        anchor_tx: serialize(&strip_witness(tx)),
        tx_index: index as u32,
        tx_path: bitcoin_merkle_path(&txids, index).unwrap_or_default(),
        block_header: serialize(&block.header),
        block_height: height,
    })
}
