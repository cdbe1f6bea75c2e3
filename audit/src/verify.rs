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
use cairn_spec::proof::ProofError;
use cairn_spec::{
    AnchorBinding, AnchorPayload, Hash32, Network, ProofBundle, ReceiptProof, SignedEpochHeader,
    SignedReceipt,
};
use serde::Serialize;

use cairn_anchor::backend::{bitcoin_merkle_path, ChainBackend, ChainError};

use crate::headers::{coinbase_commits_height, core_target, HeaderRules};

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

    /// Appends a check: passed when `ok`, skipped when an earlier one did not pass. Returns
    /// whether it passed.
    pub fn push(&mut self, name: &'static str, ok: bool, detail: impl Into<String>) -> bool {
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
pub const RECEIPT_CHECKS: [&str; 12] = [
    "network",
    "receipt_signature",
    "epoch",
    "receipt_inclusion",
    "header_chain",
    "anchor_payload",
    "anchor_chain",
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
        "header_signature" | "header_link" | "history_path" => "header_chain",
        "anchor_unbound" | "spend_chain" => "anchor_chain",
        "block_index" | "block_merkle_root" => "block_inclusion",
        _ => "anchor_payload",
    }
}

/// How many of [`RECEIPT_CHECKS`] are the pure steps of SPEC.md §8.3.
const PURE_STEPS: usize = 8;

/// Runs the pure steps of SPEC.md §8.3 (the first [`PURE_STEPS`] of [`RECEIPT_CHECKS`])
/// into `r`; returns what the proof establishes when they all pass. With `pin`, the anchor
/// chain must also be the one grown from that genesis output (the one the verifier expects:
/// headers naming another are another chain of the same coordinator).
fn pure_checks(
    proof: &ReceiptProof,
    pin: Option<OutPoint>,
    r: &mut Report,
) -> Option<cairn_spec::VerifiedProof> {
    let named = proof.headers.last().and_then(|h| h.body.anchor.genesis());
    let pure = proof.verify().and_then(|v| match pin {
        Some(p) if named != Some(p) => Err(ProofError::SpendChain {
            index: 0,
            reason: format!(
                "the headers name genesis output {}, the verifier expects {p}",
                named.map_or_else(|| "none".to_owned(), |n| n.to_string())
            ),
        }),
        _ => Ok(v),
    });
    let failed_step = pure.as_ref().err().map(|e| (step_of(e.code()), e.to_string()));
    for name in RECEIPT_CHECKS.iter().take(PURE_STEPS) {
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
                    "header_chain" => match proof.headers.as_slice() {
                        [_, a] => format!(
                            "epoch {}'s header in signed epoch {}'s history ({} hashes)",
                            proof.receipt.body.epoch,
                            a.body.height,
                            proof.history_path.len()
                        ),
                        _ => "the receipt's epoch is the anchored one, signed".to_owned(),
                    },
                    "anchor_payload" => "OP_RETURN commits to the last header".to_owned(),
                    "anchor_chain" => format!(
                        "anchor {} of the chain of spends from the genesis output the headers name",
                        proof.spend_chain.len() + 1
                    ),
                    _ => format!("transaction {} of the block", proof.tx_index),
                };
                r.push(name, true, detail);
            }
        }
    }
    pure.ok()
}

/// Verifies `proof` against Bitcoin through `backend`: every step named, the first failure
/// stopping the rest. `network` is what the auditor expects; `min_depth` the confirmations
/// required. See [`verify_receipt_pinned`] to require one anchor chain.
pub fn verify_receipt(
    proof: &ReceiptProof,
    backend: &dyn ChainBackend,
    network: Network,
    min_depth: u32,
) -> Report {
    verify_receipt_pinned(proof, backend, network, min_depth, None)
}

/// [`verify_receipt`], and with `pin` the anchor chain must grow from that genesis output
/// (`anchor_chain` fails otherwise): the chain the verifier pinned when it first met the
/// coordinator, so a receipt anchored on a second chain of the same coordinator is refused.
pub fn verify_receipt_pinned(
    proof: &ReceiptProof,
    backend: &dyn ChainBackend,
    network: Network,
    min_depth: u32,
    pin: Option<OutPoint>,
) -> Report {
    let mut r = Report::default();
    let Some(v) = pure_checks(proof, pin, &mut r) else {
        for name in RECEIPT_CHECKS.iter().skip(PURE_STEPS) {
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
    let depth = chain
        .as_ref()
        .map(|c| cairn_anchor::settle::confirmations(v.block_height, c.tip_height))
        .unwrap_or(0);
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

/// Checks that `anchors` are the chain of spends `binding` defines (SPEC.md §7.1): the first
/// spends the genesis output (and is `pin`, when given), each later one its predecessor's
/// output 0, each pays output 0 to the anchor key, sits in a best-chain block and carries one
/// Cairn payload, payload heights increase; and that the newest chain output is unspent in
/// the best chain, so no anchor was left out. Returns the report and the payloads.
pub fn verify_anchor_chain(
    binding: &AnchorBinding,
    pin: Option<Txid>,
    anchors: &[AnchorRef],
    backend: &dyn ChainBackend,
) -> (Report, Vec<AnchorPayload>) {
    let mut r = Report::default();
    let mut payloads = Vec::new();
    let Some(genesis) = binding.genesis() else {
        r.push("binding", false, "the chain's headers name no anchor key and genesis output");
        return (r, payloads);
    };
    r.push(
        "binding",
        true,
        format!("the headers bind the chain to its anchor key and genesis output {genesis}"),
    );
    if let Some(pin) = pin {
        if !r.push(
            "genesis",
            anchors.first().is_some_and(|a| a.txid == pin),
            format!("the first anchor is {pin}, as pinned"),
        ) {
            return (r, payloads);
        }
    }
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
        // Input 0 spends the genesis output or the previous anchor's output 0, and output 0
        // pays the anchor key: only the key's holder can have made it, and Bitcoin lets each
        // output be spent once, so this chain cannot fork (SPEC.md §7.1).
        let link = binding.check_link(&tx, prev.map(|p| p.0));
        let what = match prev {
            Some((p, _)) => format!("{} spends {p}:0 and pays the anchor key", a.txid),
            None => format!("{} spends the genesis output {genesis} and pays the anchor key", a.txid),
        };
        if !r.push("continuity", link.is_ok(), link.err().map_or(what, |e| format!("{}: {e}", a.txid))) {
            break;
        }
        if let Some((_, h)) = prev {
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
    if r.ok() {
        // Nothing spent the newest chain output in the best chain: no anchor was left out.
        let tip = prev.map_or(genesis, |(txid, _)| OutPoint { txid, vout: 0 });
        let unspent = backend.utxo(&tip, false);
        r.push(
            "tip_unspent",
            matches!(unspent, Ok(Some(_))),
            match unspent {
                Ok(Some(_)) => format!("the chain output {tip} is unspent: no anchor was left out"),
                Ok(None) => format!(
                    "the chain output {tip} is spent (or was never confirmed): anchors the source did not name follow it"
                ),
                Err(e) => format!("bitcoin: {e}"),
            },
        );
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

/// Builds a receipt proof from the sidechain data (the receipt and its path, its epoch's
/// header and the anchored one's with the history path between them) and what Bitcoin
/// holds: the anchor transaction, its position and Merkle path in its block, the block
/// header and height, and the chain of spends back to the genesis output the headers name,
/// fetched from the blocks `earlier` (the anchors before it) names.
#[allow(clippy::too_many_arguments)]
pub fn assemble_receipt_proof(
    network: Network,
    receipt: SignedReceipt,
    receipt_index: u32,
    receipt_path: Vec<Hash32>,
    headers: Vec<SignedEpochHeader>,
    history_path: Vec<Hash32>,
    anchor_txid: Txid,
    anchor_block: BlockHash,
    earlier: &[AnchorRef],
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
    let binding = headers.last().map(|h| h.body.anchor).unwrap_or(AnchorBinding::None);
    let spend_chain = spend_chain(tx, &binding, earlier, backend)?;
    Ok(ReceiptProof {
        network,
        receipt,
        receipt_index,
        receipt_path,
        headers,
        history_path,
        anchor_kind: cairn_spec::proof::AnchorKind::OpReturnOutput,
        anchor_tx: serialize(&strip_witness(tx)),
        tx_index: index as u32,
        tx_path: bitcoin_merkle_path(&txids, index).unwrap_or_default(),
        block_header: serialize(&block.header),
        block_height: height,
        spend_chain,
    })
}

/// The anchors before `anchor` on the chain of spends from `binding`'s genesis output,
/// oldest first, followed back through input 0 and fetched from `backend` in the blocks
/// `earlier` names (SPEC.md §7.1). Empty for an unbound chain (its proof cannot verify).
fn spend_chain(
    anchor: &Transaction,
    binding: &AnchorBinding,
    earlier: &[AnchorRef],
    backend: &dyn ChainBackend,
) -> Result<Vec<cairn_spec::proof::RawTx>, ChainError> {
    let Some(genesis) = binding.genesis() else { return Ok(Vec::new()) };
    let blocks: std::collections::HashMap<Txid, BlockHash> =
        earlier.iter().map(|a| (a.txid, a.block)).collect();
    let mut out = Vec::new();
    let mut spent = anchor.input.first().map(|i| i.previous_output);
    while let Some(op) = spent.filter(|op| *op != genesis) {
        if out.len() >= cairn_spec::proof::MAX_SPEND_CHAIN {
            return Err(ChainError::Permanent("the chain of spends is longer than a proof may carry".into()));
        }
        let block = blocks.get(&op.txid).ok_or_else(|| {
            ChainError::Permanent(format!("{} (an earlier anchor) is not among the anchors named", op.txid))
        })?;
        let tx = backend
            .transaction(&op.txid, Some(block))?
            .ok_or_else(|| ChainError::Permanent(format!("{} not found in block {block}", op.txid)))?;
        spent = tx.input.first().map(|i| i.previous_output);
        out.push(cairn_spec::proof::RawTx(serialize(&strip_witness(&tx))));
    }
    out.reverse();
    Ok(out)
}

/// The checks of an offline verification of a proof bundle, in order: the pure steps, then
/// Bitcoin's rules applied to the bundle's own headers. No node is asked anything, so the
/// best-chain question is answered only by checkpoints and proof-of-work; the report says how
/// much work stands behind the claim.
pub const BUNDLE_CHECKS: [&str; 15] = [
    "network",
    "receipt_signature",
    "epoch",
    "receipt_inclusion",
    "header_chain",
    "anchor_payload",
    "anchor_chain",
    "block_inclusion",
    "bundle_network",
    "header_links",
    "block_height",
    "checkpoint",
    "proof_of_work",
    "difficulty",
    "depth",
];

/// Verifies a bundle with no node, under Bitcoin Core's rules and checkpoints for `network`
/// (see [`verify_bundle_with`]).
pub fn verify_bundle(bundle: &ProofBundle, network: Network, min_depth: u32) -> Report {
    verify_bundle_with(bundle, network, &HeaderRules::of(network), min_depth, None)
}

/// Verifies a bundle with no node: the receipt proof; that the headers link from a difficulty
/// period's start through the anchor block; that its coinbase commits its height (BIP34);
/// that they reach the checkpoint of `rules` the block connects to; each header's
/// proof-of-work, and its bits exactly as the rules require; at least `min_depth` blocks from
/// the anchor block up. With `pin`, the anchor chain must grow from that genesis output (see
/// [`verify_receipt_pinned`]).
pub fn verify_bundle_with(
    bundle: &ProofBundle,
    network: Network,
    rules: &HeaderRules,
    min_depth: u32,
    pin: Option<OutPoint>,
) -> Report {
    use bitcoin::block::Header;
    use bitcoin::consensus::encode::deserialize;

    let mut r = Report::default();
    let proof = &bundle.proof;
    let not_reached = |r: &mut Report| {
        for name in BUNDLE_CHECKS.iter().skip(r.checks.len()) {
            r.push(name, false, "not reached");
        }
    };
    if pure_checks(proof, pin, &mut r).is_none() {
        not_reached(&mut r);
        return r;
    }
    if !r.push(
        "bundle_network",
        proof.network == network,
        format!("bundle for {}, expected {network}", proof.network),
    ) {
        not_reached(&mut r);
        return r;
    }
    let at = bundle.before.len();
    // Decoding refuses this; a bundle built in code might not have been decoded.
    let Some(first) = u32::try_from(at).ok().and_then(|n| proof.block_height.checked_sub(n)) else {
        r.push("header_links", false, "more headers before the block than its height");
        not_reached(&mut r);
        return r;
    };
    let decoded = bundle
        .before
        .iter()
        .map(|h| &h.0[..])
        .chain(std::iter::once(proof.block_header.as_slice()))
        .chain(bundle.above.iter().map(|h| &h.0[..]))
        .map(deserialize::<Header>)
        .collect::<Result<Vec<_>, _>>();
    let headers = match decoded {
        Ok(h) => h,
        Err(e) => {
            r.push("header_links", false, format!("a block header does not decode: {e}"));
            not_reached(&mut r);
            return r;
        }
    };
    let height_of = |i: usize| first as usize + i;
    let broken = headers.windows(2).position(|w| matches!(w, [a, b] if b.prev_blockhash != a.block_hash()));
    let last = height_of(headers.len().saturating_sub(1));
    let links = match broken {
        None => format!(
            "{} headers from height {first} to {last}, block {} at height {}",
            headers.len(),
            headers[at].block_hash(),
            proof.block_height
        ),
        Some(i) => format!("header at height {} does not build on the one before", height_of(i + 1)),
    };
    if !r.push("header_links", broken.is_none(), links) {
        not_reached(&mut r);
        return r;
    }
    let height = coinbase_height(bundle);
    if !r.push("block_height", height.is_ok(), height.unwrap_or_else(|e| e)) {
        not_reached(&mut r);
        return r;
    }
    let checkpoint = match rules.connect(first, &headers, proof.block_height) {
        Ok(c) => {
            r.push(
                "checkpoint",
                true,
                format!("the headers pass through checkpoint {} at height {}", c.hash, c.height),
            );
            *c
        }
        Err(e) => {
            r.push("checkpoint", false, e);
            not_reached(&mut r);
            return r;
        }
    };
    // nBits decoded as Bitcoin Core does: a negative or overflowing encoding, a zero target
    // or one above the network's limit is invalid, whatever a lossy decoding would make of it.
    let limit = rules.limit();
    let bad_pow = headers.iter().position(|h| match core_target(h.bits) {
        Some(t) => t > limit || !t.is_met_by(h.block_hash()),
        None => true,
    });
    let pow = match bad_pow {
        None => {
            // Summed only once every header's target is valid: an invalid one's work is
            // meaningless and may overflow.
            let after = headers.iter().skip((checkpoint.height - first) as usize + 1);
            let forged = after.fold(bitcoin::Work::from_be_bytes([0; 32]), |acc, h| acc + h.work());
            let total = checkpoint
                .chain_work
                .map(|w| format!("; the chain's work at the tip: 2^{:.1} hashes", (w + forged).log2()))
                .unwrap_or_default();
            let held = if proof.block_height <= checkpoint.height {
                format!(
                    "block {} is an ancestor of checkpoint {} (fixed by its hash)",
                    headers[at].block_hash(),
                    checkpoint.height
                )
            } else {
                format!(
                    "forging the {} headers after checkpoint {} takes 2^{:.1} hashes",
                    last.saturating_sub(checkpoint.height as usize),
                    checkpoint.height,
                    forged.log2()
                )
            };
            format!("every header meets its target; {held}{total}")
        }
        Some(i) => format!(
            "header at height {} does not meet its target or is easier than {network} allows",
            height_of(i)
        ),
    };
    if !r.push("proof_of_work", bad_pow.is_none(), pow) {
        not_reached(&mut r);
        return r;
    }
    let difficulty = rules.check_difficulty(first, &headers).map(|()| match network {
        Network::Regtest => "consistency only: regtest headers, at the one fixed difficulty anyone can meet; only a node can say this is the best chain".to_owned(),
        // Test networks' proof-of-work is cheap to redo: the bundle shows consistency, not
        // that Bitcoin holds the anchor (and a signet block's signature is not checked).
        Network::Signet | Network::Testnet4 => format!("consistency only: every header's bits are exactly what {network}'s rules require, but {network} work is cheap to produce; only a node or explorer you trust can say block {} is on the best chain", headers[at].block_hash()),
        Network::Mainnet => format!("every header's bits are exactly what {network}'s rules require from checkpoint {}; the claim is as strong as the work after it", checkpoint.height),
    });
    let ok = difficulty.is_ok();
    if !r.push("difficulty", ok, difficulty.unwrap_or_else(|e| e)) {
        not_reached(&mut r);
        return r;
    }
    r.push(
        "depth",
        bundle.depth() >= min_depth,
        format!("{} confirmations in the bundle, {min_depth} required", bundle.depth()),
    );
    r
}

/// The bundle's coinbase is transaction 0 of the anchor block (its Merkle path as deep as
/// the anchor transaction's) and commits the proof's block height (BIP34).
fn coinbase_height(bundle: &ProofBundle) -> Result<String, String> {
    let proof = &bundle.proof;
    let tx = cairn_spec::proof::canonical_tx(&bundle.coinbase.0)
        .map_err(|e| format!("the coinbase does not decode: {e}"))?;
    if bundle.coinbase.0.len() == 64 {
        return Err("the coinbase is 64 bytes long (it could pose as a Merkle node)".into());
    }
    if bundle.coinbase_path.len() != proof.tx_path.len() {
        return Err(format!(
            "the coinbase's Merkle path has {} levels, the anchor transaction's {}",
            bundle.coinbase_path.len(),
            proof.tx_path.len()
        ));
    }
    let txid = Hash32(tx.compute_txid().to_byte_array());
    let root = cairn_spec::proof::bitcoin_merkle_fold(txid, 0, &bundle.coinbase_path).ok();
    if root.is_none() || root != cairn_spec::proof::block_merkle_root(&proof.block_header) {
        return Err("the coinbase is not transaction 0 of the anchor block".into());
    }
    if !coinbase_commits_height(&tx, proof.block_height) {
        return Err(format!(
            "the anchor block's coinbase does not commit height {} (BIP34)",
            proof.block_height
        ));
    }
    Ok(format!("the anchor block's coinbase commits height {} (BIP34)", proof.block_height))
}

/// Builds a bundle: the receipt proof, the anchor block's coinbase, and the headers on the
/// backend's best chain from the start of a difficulty period through a checkpoint (the one
/// needing fewer headers, [`HeaderRules::checkpoint_for`]) and `depth - 1` blocks above the
/// block (more when the checkpoint is higher).
pub fn assemble_bundle(
    proof: ReceiptProof,
    backend: &dyn ChainBackend,
    depth: u32,
) -> Result<ProofBundle, ChainError> {
    let rules = HeaderRules::of(proof.network);
    let height = proof.block_height;
    let checkpoint = rules
        .checkpoint_for(height, depth)
        .map(|c| c.height)
        .ok_or_else(|| ChainError::Permanent(format!("no checkpoint for {}", proof.network)))?;
    let start = rules.period_start(checkpoint.min(height));
    let end = height.saturating_add(depth.saturating_sub(1)).max(checkpoint);
    if (end - start) as usize >= cairn_spec::bundle::MAX_BUNDLE_HEADERS {
        return Err(ChainError::Permanent(format!(
            "a bundle carries at most {} headers; this one would need {} (from height {start} to {end})",
            cairn_spec::bundle::MAX_BUNDLE_HEADERS,
            end - start
        )));
    }
    let header_at = |h: u32| -> Result<cairn_spec::bundle::BlockHeaderBytes, ChainError> {
        let hash = backend.block_hash(h)?.ok_or_else(|| {
            ChainError::Permanent(format!(
                "the chain has no block at height {h} yet: fewer than {depth} confirmations"
            ))
        })?;
        let mut b = [0u8; cairn_spec::proof::BLOCK_HEADER_LEN];
        b.copy_from_slice(&serialize(&backend.block_header(&hash)?));
        Ok(cairn_spec::bundle::BlockHeaderBytes(b))
    };
    let before = (start..height).map(header_at).collect::<Result<Vec<_>, _>>()?;
    let above = (height + 1..=end).map(header_at).collect::<Result<Vec<_>, _>>()?;
    let block_hash = bitcoin::consensus::encode::deserialize::<bitcoin::block::Header>(&proof.block_header)
        .map_err(|e| ChainError::Permanent(format!("the proof's block header: {e}")))?
        .block_hash();
    let block = backend.block(&block_hash)?;
    let coinbase = block
        .txdata
        .first()
        .ok_or_else(|| ChainError::Permanent(format!("block {block_hash} has no transactions")))?;
    let txids: Vec<Txid> = block.txdata.iter().map(|t| t.compute_txid()).collect();
    Ok(ProofBundle {
        before,
        coinbase: cairn_spec::proof::RawTx(serialize(&strip_witness(coinbase))),
        coinbase_path: bitcoin_merkle_path(&txids, 0).unwrap_or_default(),
        above,
        proof,
    })
}
