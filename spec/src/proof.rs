//! Receipt proofs (SPEC.md §8): receipt → receipts root → epoch header → its place in the
//! anchored header's history → anchored header → anchor transaction (and the chain of spends from the genesis output the
//! headers name, SPEC.md §7.1) → block Merkle root → block header at a height.
//!
//! Owns the proof layout, the pure verification algorithm (every step that needs no chain
//! access), and its mapping onto OpenTimestamps operations. Must never decide whether the
//! block is on the best chain or deep enough: that needs Bitcoin, and is the caller's step
//! (`cairn-audit`'s verifier, online or from a bundle's headers offline).

use bitcoin::consensus::encode::{deserialize, serialize, VarInt};
use bitcoin::Transaction;
use thiserror::Error;

use crate::anchor_payload::{AnchorPayload, SCRIPT_HASH_OFFSET};
use crate::codec::{expect_version, Decode, DecodeError, Encode, Reader, Writer};
use crate::epoch::{EpochHeader, SignedEpochHeader};
use crate::hash::{sha256d, Hash32, Tag};
use crate::merkle::{MerkleError, MerkleProof, Side, MAX_DEPTH};
use crate::network::Network;
use crate::receipt::SignedReceipt;

/// Most epoch headers a proof carries: the receipt's epoch and the anchored one.
pub const MAX_PROOF_HEADERS: usize = 2;
/// Largest anchor transaction (non-witness bytes; standard transactions are below this).
pub const MAX_ANCHOR_TX_BYTES: usize = 100_000;
/// Length of a Bitcoin block header.
pub const BLOCK_HEADER_LEN: usize = 80;
/// Most earlier anchors a proof may carry (its chain of spends from the genesis output).
pub const MAX_SPEND_CHAIN: usize = 1_000_000;

/// One transaction in its non-witness serialization (hex in JSON).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct RawTx(#[serde(with = "crate::serde_hex")] pub Vec<u8>);

/// Where the anchor payload sits. Only one place today; a coinbase anchor from a
/// cooperating pool is a later kind, so the proof names it rather than assuming it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AnchorKind {
    /// An OP_RETURN output of the coordinator's anchor transaction (code 1).
    OpReturnOutput,
}

/// A self-contained proof that a receipt is committed in a Bitcoin block.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ReceiptProof {
    /// Network the chain lives on.
    pub network: Network,
    /// The signed receipt.
    pub receipt: SignedReceipt,
    /// Index of the receipt in its epoch.
    pub receipt_index: u32,
    /// Siblings from the receipt's leaf to its epoch's receipts root.
    pub receipt_path: Vec<Hash32>,
    /// The receipt's epoch's signed header, then the anchored epoch's when that is later.
    pub headers: Vec<SignedEpochHeader>,
    /// With two headers, the Merkle siblings of the first one's hash in the second one's
    /// `history` tree (index: the first's height; leaves: the second's height); else empty.
    pub history_path: Vec<Hash32>,
    /// Where the payload sits.
    pub anchor_kind: AnchorKind,
    /// The anchor transaction in its non-witness serialization (the bytes of its txid).
    #[serde(with = "crate::serde_hex")]
    pub anchor_tx: Vec<u8>,
    /// Position of the anchor transaction in its block.
    pub tx_index: u32,
    /// Bitcoin Merkle siblings of the transaction, in internal byte order.
    pub tx_path: Vec<Hash32>,
    /// The 80-byte block header.
    #[serde(with = "crate::serde_hex")]
    pub block_header: Vec<u8>,
    /// Height of that block.
    pub block_height: u32,
    /// The anchors before the anchor transaction, oldest first, in non-witness
    /// serialization: the first spends the genesis output the headers name, each later one
    /// output 0 of the one before, and the anchor transaction output 0 of the last (empty
    /// when the anchor transaction is the first anchor). SPEC.md §7.1.
    pub spend_chain: Vec<RawTx>,
}

impl ReceiptProof {
    /// Object version.
    pub const VERSION: u8 = 3;
}

impl Encode for ReceiptProof {
    fn encode(&self, w: &mut Writer) {
        w.u8(Self::VERSION);
        self.network.encode(w);
        self.receipt.encode(w);
        w.u32(self.receipt_index).u8(self.receipt_path.len() as u8);
        for s in &self.receipt_path {
            w.raw(&s.0);
        }
        w.u16(self.headers.len() as u16);
        for h in &self.headers {
            h.encode(w);
        }
        w.u8(self.history_path.len() as u8);
        for s in &self.history_path {
            w.raw(&s.0);
        }
        match self.anchor_kind {
            AnchorKind::OpReturnOutput => w.u8(1),
        };
        w.bytes_u32(&self.anchor_tx).u32(self.tx_index).u8(self.tx_path.len() as u8);
        for s in &self.tx_path {
            w.raw(&s.0);
        }
        w.raw(&self.block_header).u32(self.block_height);
        w.u32(self.spend_chain.len() as u32);
        for tx in &self.spend_chain {
            w.bytes_u32(&tx.0);
        }
    }
}

pub(crate) fn hashes(r: &mut Reader<'_>, field: &'static str) -> Result<Vec<Hash32>, DecodeError> {
    let len = r.u8(field)? as usize;
    let n = r.count(field, len, MAX_DEPTH, 32)?;
    (0..n).map(|_| Ok(Hash32(r.array(field)?))).collect()
}

impl Decode for ReceiptProof {
    const NAME: &'static str = "receipt proof";

    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        expect_version(r, Self::NAME, Self::VERSION)?;
        let network = Network::decode(r)?;
        let receipt = SignedReceipt::decode(r)?;
        let receipt_index = r.u32("receipt_index")?;
        let receipt_path = hashes(r, "receipt_path")?;
        let len = r.u16("headers")? as usize;
        if len == 0 {
            return Err(DecodeError::InvalidValue { field: "headers", reason: "at least one header" });
        }
        let n = r.count("headers", len, MAX_PROOF_HEADERS, EpochHeader::MIN_ENCODED_LEN + 64)?;
        let headers = (0..n).map(|_| SignedEpochHeader::decode(r)).collect::<Result<Vec<_>, _>>()?;
        let history_path = hashes(r, "history_path")?;
        let anchor_kind = match r.u8("anchor_kind")? {
            1 => AnchorKind::OpReturnOutput,
            tag => return Err(DecodeError::InvalidTag { field: "anchor_kind", tag }),
        };
        let anchor_tx = r.bytes_u32("anchor_tx", MAX_ANCHOR_TX_BYTES)?.to_vec();
        let tx_index = r.u32("tx_index")?;
        let tx_path = hashes(r, "tx_path")?;
        let block_header = r.take("block_header", BLOCK_HEADER_LEN)?.to_vec();
        let block_height = r.u32("block_height")?;
        let len = r.u32("spend_chain")? as usize;
        // Each entry is at least its length prefix; a short one fails verification (step 7).
        let n = r.count("spend_chain", len, MAX_SPEND_CHAIN, 4)?;
        let spend_chain = (0..n)
            .map(|_| Ok(RawTx(r.bytes_u32("spend_chain", MAX_ANCHOR_TX_BYTES)?.to_vec())))
            .collect::<Result<Vec<_>, DecodeError>>()?;
        Ok(ReceiptProof {
            network,
            receipt,
            receipt_index,
            receipt_path,
            headers,
            history_path,
            anchor_kind,
            anchor_tx,
            tx_index,
            tx_path,
            block_header,
            block_height,
            spend_chain,
        })
    }
}

/// The step of the verification algorithm that failed. `code()` names it in vectors.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum ProofError {
    /// The receipt or a header is for another network than the proof.
    #[error("network mismatch: proof is for {expected}, an object is for {found}")]
    NetworkMismatch {
        /// The proof's network.
        expected: Network,
        /// The object's.
        found: Network,
    },
    /// The receipt's signature is not the coordinator's.
    #[error("receipt signature invalid")]
    ReceiptSignature,
    /// The first header is not the receipt's epoch.
    #[error("receipt is for epoch {receipt}, first header is epoch {header}")]
    EpochMismatch {
        /// Receipt's epoch.
        receipt: u32,
        /// First header's height.
        header: u32,
    },
    /// A header is signed by another coordinator than the receipt.
    #[error("header {height} is from another coordinator than the receipt")]
    CoordinatorMismatch {
        /// Header height.
        height: u32,
    },
    /// The receipt's Merkle path does not fit the epoch's receipt count.
    #[error("receipt path: {0}")]
    ReceiptPath(MerkleError),
    /// The receipt's path leads to another root than the header's.
    #[error("receipt does not lead to the receipts root of epoch {height}")]
    ReceiptsRootMismatch {
        /// Header height.
        height: u32,
    },
    /// A header's signature is invalid.
    #[error("signature of epoch header {height} invalid")]
    HeaderSignature {
        /// Header height.
        height: u32,
    },
    /// The anchored header does not reach the receipt's epoch: not later, another chain's,
    /// or its history does not hold the receipt's epoch's header.
    #[error("epoch header {height} does not reach the receipt's epoch")]
    HeaderLink {
        /// Header height.
        height: u32,
    },
    /// The history path does not fit the anchored header's history tree.
    #[error("history path: {0}")]
    HistoryPath(MerkleError),
    /// The anchor transaction bytes are not one canonical non-witness transaction.
    #[error("anchor transaction does not decode: {0}")]
    TxDecode(String),
    /// A 64-byte transaction could be confused with an inner Merkle node; refused.
    #[error("anchor transaction is 64 bytes long")]
    Tx64Bytes,
    /// No output carries a Cairn payload.
    #[error("anchor transaction has no Cairn OP_RETURN output")]
    PayloadMissing,
    /// More than one output carries a Cairn payload.
    #[error("anchor transaction has more than one Cairn OP_RETURN output")]
    PayloadMultiple,
    /// An output starts with the magic but is not a valid payload.
    #[error("invalid anchor payload: {0}")]
    PayloadInvalid(crate::anchor_payload::PayloadError),
    /// The payload commits to another height than the last header's.
    #[error("payload commits to epoch {payload}, last header is epoch {header}")]
    PayloadHeight {
        /// Payload's height.
        payload: u32,
        /// Last header's height.
        header: u32,
    },
    /// The payload commits to another header hash.
    #[error("payload commits to another header hash than the last header's")]
    PayloadHash,
    /// The anchored header names no anchor key and genesis output: nothing ties the anchor
    /// transaction to the coordinator.
    #[error("the anchored header names no anchor key and genesis output")]
    AnchorUnbound,
    /// The anchor transaction is not on the chain of spends from the genesis output.
    #[error("spend chain, transaction {index}: {reason}")]
    SpendChain {
        /// Position in the chain (the anchor transaction is the last).
        index: u32,
        /// What is wrong.
        reason: String,
    },
    /// The transaction's position does not fit its Merkle path.
    #[error("transaction index {index} does not fit a path of {depth} levels")]
    BlockIndex {
        /// Index.
        index: u32,
        /// Path length.
        depth: usize,
    },
    /// The transaction's path leads to another root than the block header's.
    #[error("anchor transaction does not lead to the block's Merkle root")]
    BlockMerkleRoot,
}

impl ProofError {
    /// Stable name used in test vectors.
    pub fn code(&self) -> &'static str {
        match self {
            ProofError::NetworkMismatch { .. } => "network_mismatch",
            ProofError::ReceiptSignature => "receipt_signature",
            ProofError::EpochMismatch { .. } => "epoch_mismatch",
            ProofError::CoordinatorMismatch { .. } => "coordinator_mismatch",
            ProofError::ReceiptPath(e) => e.code(),
            ProofError::ReceiptsRootMismatch { .. } => "receipts_root_mismatch",
            ProofError::HeaderSignature { .. } => "header_signature",
            ProofError::HeaderLink { .. } => "header_link",
            ProofError::HistoryPath(_) => "history_path",
            ProofError::TxDecode(_) => "tx_decode",
            ProofError::Tx64Bytes => "tx_64_bytes",
            ProofError::PayloadMissing => "payload_missing",
            ProofError::PayloadMultiple => "payload_multiple",
            ProofError::PayloadInvalid(_) => "payload_invalid",
            ProofError::PayloadHeight { .. } => "payload_height",
            ProofError::PayloadHash => "payload_hash",
            ProofError::AnchorUnbound => "anchor_unbound",
            ProofError::SpendChain { .. } => "spend_chain",
            ProofError::BlockIndex { .. } => "block_index",
            ProofError::BlockMerkleRoot => "block_merkle_root",
        }
    }
}

/// What a proof establishes once `verify` succeeds. The caller still checks, against
/// Bitcoin, that `block_hash` is the block at `block_height` on `network`'s best chain,
/// and how deep it is.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct VerifiedProof {
    /// Network.
    pub network: Network,
    /// The receipt's leaf hash (the OpenTimestamps digest).
    pub receipt_leaf: Hash32,
    /// The receipt's epoch.
    pub epoch_height: u32,
    /// The anchored epoch (the last header).
    pub anchored_height: u32,
    /// The anchored header's hash.
    pub anchored_hash: Hash32,
    /// Anchor txid in internal byte order (display order is reversed).
    pub txid: Hash32,
    /// The anchor's position in the chain of spends from the genesis output (0: the first).
    pub chain_position: u32,
    /// Block hash in internal byte order.
    pub block_hash: Hash32,
    /// The block's Merkle root in internal byte order.
    pub block_merkle_root: Hash32,
    /// Claimed block height.
    pub block_height: u32,
}

/// Parses a block header's Merkle root (bytes 36..68) in internal byte order.
pub fn block_merkle_root(header: &[u8]) -> Option<Hash32> {
    let mut out = [0u8; 32];
    out.copy_from_slice(header.get(36..68)?);
    Some(Hash32(out))
}

/// The anchor transaction decoded, with the byte offset of the committed header hash.
struct AnchorTx {
    payload: AnchorPayload,
    hash_offset: usize,
}

/// `bytes` as one transaction in its canonical non-witness serialization.
pub fn canonical_tx(bytes: &[u8]) -> Result<Transaction, String> {
    let tx: Transaction = deserialize(bytes).map_err(|e| e.to_string())?;
    if tx.input.iter().any(|i| !i.witness.is_empty()) || serialize(&tx) != bytes {
        return Err("not the canonical non-witness serialization".into());
    }
    Ok(tx)
}

fn parse_anchor_tx(bytes: &[u8]) -> Result<AnchorTx, ProofError> {
    let tx = canonical_tx(bytes).map_err(ProofError::TxDecode)?;
    if bytes.len() == 64 {
        return Err(ProofError::Tx64Bytes);
    }
    // Offset of the first output: version, the inputs (with their count), the output count.
    let mut offset = 4 + serialize(&tx.input).len() + VarInt(tx.output.len() as u64).size();
    let mut found: Option<AnchorTx> = None;
    for out in &tx.output {
        let script_offset = offset + 8 + VarInt(out.script_pubkey.len() as u64).size();
        if let Some(parsed) = AnchorPayload::from_script(&out.script_pubkey) {
            let payload = parsed.map_err(ProofError::PayloadInvalid)?;
            if found.is_some() {
                return Err(ProofError::PayloadMultiple);
            }
            found = Some(AnchorTx { payload, hash_offset: script_offset + SCRIPT_HASH_OFFSET });
        }
        offset = script_offset + out.script_pubkey.len();
    }
    found.ok_or(ProofError::PayloadMissing)
}

/// Folds a Bitcoin Merkle path (sha256d of the concatenated pair).
pub fn bitcoin_merkle_fold(txid: Hash32, index: u32, path: &[Hash32]) -> Result<Hash32, ProofError> {
    if path.len() < 32 && (u64::from(index) >> path.len()) != 0 {
        return Err(ProofError::BlockIndex { index, depth: path.len() });
    }
    let mut h = txid;
    let mut buf = [0u8; 64];
    for (level, s) in path.iter().enumerate() {
        let (l, r) = if (index >> level) & 1 == 1 { (s, &h) } else { (&h, s) };
        buf[..32].copy_from_slice(&l.0);
        buf[32..].copy_from_slice(&r.0);
        h = sha256d(&buf);
    }
    Ok(h)
}

impl ReceiptProof {
    fn receipt_merkle(&self) -> Result<MerkleProof, ProofError> {
        let first = self.headers.first().ok_or(ProofError::HeaderLink { height: 0 })?;
        Ok(MerkleProof {
            index: self.receipt_index,
            count: first.body.receipt_count,
            siblings: self.receipt_path.clone(),
        })
    }

    /// The history path as a Merkle proof in the anchored header's history tree; `None` with
    /// one header.
    fn history_merkle(&self) -> Result<Option<MerkleProof>, ProofError> {
        match self.headers.as_slice() {
            [_] => Ok(None),
            [first, anchored] => Ok(Some(MerkleProof {
                index: first.body.height,
                count: anchored.body.height,
                siblings: self.history_path.clone(),
            })),
            _ => Err(ProofError::HeaderLink { height: 0 }),
        }
    }

    /// Runs every check that needs no chain access, in SPEC.md §8.3's order, and returns
    /// what the proof establishes or the first step that failed.
    pub fn verify(&self) -> Result<VerifiedProof, ProofError> {
        let receipt = &self.receipt.body;
        // 1. One network throughout.
        for found in std::iter::once(receipt.network).chain(self.headers.iter().map(|h| h.body.network)) {
            if found != self.network {
                return Err(ProofError::NetworkMismatch { expected: self.network, found });
            }
        }
        // 2. The coordinator signed the receipt.
        if !self.receipt.verify() {
            return Err(ProofError::ReceiptSignature);
        }
        // 3. The first header is the receipt's epoch, from the same coordinator.
        let first = self.headers.first().ok_or(ProofError::HeaderLink { height: 0 })?;
        if first.body.height != receipt.epoch {
            return Err(ProofError::EpochMismatch { receipt: receipt.epoch, header: first.body.height });
        }
        if let Some(h) = self.headers.iter().find(|h| h.body.coordinator != receipt.coordinator) {
            return Err(ProofError::CoordinatorMismatch { height: h.body.height });
        }
        // 4. The receipt is in the epoch's receipts tree.
        let leaf = receipt.leaf_hash();
        let root = self.receipt_merkle()?.root_for(&leaf).map_err(ProofError::ReceiptPath)?;
        if root != first.body.receipts_root {
            return Err(ProofError::ReceiptsRootMismatch { height: first.body.height });
        }
        // 5. Every header is signed; a later anchored header holds the receipt's epoch's
        //    header in its history, at that header's height.
        if let Some(h) = self.headers.iter().find(|h| !h.verify()) {
            return Err(ProofError::HeaderSignature { height: h.body.height });
        }
        let anchored = &self.headers.last().ok_or(ProofError::HeaderLink { height: 0 })?.body;
        match self.history_merkle()? {
            None if self.history_path.is_empty() => {}
            None => {
                let (index, count) = (first.body.height, first.body.height);
                return Err(ProofError::HistoryPath(MerkleError::PathTooLong { index, count }));
            }
            Some(path) => {
                if anchored.height <= first.body.height || anchored.anchor != first.body.anchor {
                    return Err(ProofError::HeaderLink { height: anchored.height });
                }
                let reached = path.root_for(&first.body.hash()).map_err(ProofError::HistoryPath)?;
                if reached != anchored.history {
                    return Err(ProofError::HeaderLink { height: anchored.height });
                }
            }
        }
        let anchored_hash = anchored.hash();
        // 6. The anchor transaction commits to the last header.
        let tx = parse_anchor_tx(&self.anchor_tx)?;
        if tx.payload.height != anchored.height {
            return Err(ProofError::PayloadHeight { payload: tx.payload.height, header: anchored.height });
        }
        if tx.payload.header_hash != anchored_hash {
            return Err(ProofError::PayloadHash);
        }
        // 7. The anchor transaction is on the chain of spends from the genesis output the
        //    headers name (SPEC.md §7.1): only the anchor key's holder made it, and no other
        //    chain can hold it.
        let links = anchored.anchor.links().ok_or(ProofError::AnchorUnbound)?;
        let mut prev = None;
        let mut committed: Option<u32> = None;
        let earlier = self.spend_chain.len();
        let txs =
            self.spend_chain.iter().map(|t| t.0.as_slice()).chain(std::iter::once(self.anchor_tx.as_slice()));
        for (index, raw) in txs.enumerate() {
            let fail = |reason: String| ProofError::SpendChain { index: index as u32, reason };
            let link = canonical_tx(raw).map_err(fail)?;
            links.check(&link, prev).map_err(|e| fail(e.to_string()))?;
            if index < earlier {
                // Each earlier anchor commits one epoch, each after the one before and before
                // the anchored epoch, as the chain audit requires of the whole chain.
                let p = parse_anchor_tx(raw).map_err(|e| fail(format!("not an anchor: {e}")))?.payload;
                if committed.is_some_and(|c| p.height <= c) || p.height >= anchored.height {
                    return Err(fail(format!(
                        "commits epoch {}, not after the anchor before it and before epoch {}",
                        p.height, anchored.height
                    )));
                }
                committed = Some(p.height);
            }
            prev = Some(link.compute_txid());
        }
        // 8. The transaction is in the block.
        let txid = sha256d(&self.anchor_tx);
        let merkle_root = bitcoin_merkle_fold(txid, self.tx_index, &self.tx_path)?;
        if Some(merkle_root) != block_merkle_root(&self.block_header) {
            return Err(ProofError::BlockMerkleRoot);
        }
        Ok(VerifiedProof {
            network: self.network,
            receipt_leaf: leaf,
            epoch_height: receipt.epoch,
            anchored_height: anchored.height,
            anchored_hash,
            txid,
            chain_position: self.spend_chain.len() as u32,
            block_hash: sha256d(&self.block_header),
            block_merkle_root: merkle_root,
            block_height: self.block_height,
        })
    }

    /// The OpenTimestamps operations that lead from the receipt's leaf hash to the block's
    /// Merkle root (SPEC.md §9). Verifies the proof first.
    pub fn ots_ops(&self) -> Result<Vec<OtsOp>, ProofError> {
        self.verify()?;
        let node_prefix = Tag::MerkleNode.prefix();
        let header_prefix = Tag::EpochHeader.prefix();
        let merkle_steps = |ops: &mut Vec<OtsOp>, steps: Vec<(Side, Hash32)>| {
            for (side, s) in steps {
                match side {
                    Side::Left => ops.push(OtsOp::Prepend([&node_prefix[..], &s.0[..]].concat())),
                    Side::Right => {
                        ops.push(OtsOp::Prepend(node_prefix.to_vec()));
                        ops.push(OtsOp::Append(s.0.to_vec()));
                    }
                }
                ops.push(OtsOp::Sha256);
            }
        };
        // The header holding the message at `at`: the receipt's epoch's at its receipts root,
        // the anchored one's at its history root (its last 32 bytes).
        let header_step = |ops: &mut Vec<OtsOp>, enc: &[u8], at: usize| {
            ops.push(OtsOp::Prepend([&header_prefix[..], enc.get(..at).unwrap_or_default()].concat()));
            ops.push(OtsOp::Append(enc.get(at + 32..).unwrap_or_default().to_vec()));
            ops.push(OtsOp::Sha256);
        };
        let mut ops = Vec::new();
        merkle_steps(&mut ops, self.receipt_merkle()?.steps().map_err(ProofError::ReceiptPath)?);
        let first = self.headers.first().ok_or(ProofError::HeaderLink { height: 0 })?.body.to_bytes();
        header_step(&mut ops, &first, EpochHeader::RECEIPTS_ROOT_OFFSET);
        if let (Some(path), Some(anchored)) = (self.history_merkle()?, self.headers.get(1)) {
            merkle_steps(&mut ops, path.steps().map_err(ProofError::HistoryPath)?);
            let enc = anchored.body.to_bytes();
            header_step(&mut ops, &enc, enc.len().saturating_sub(32));
        }
        let tx = parse_anchor_tx(&self.anchor_tx)?;
        let at = tx.hash_offset;
        ops.push(OtsOp::Prepend(self.anchor_tx.get(..at).unwrap_or_default().to_vec()));
        ops.push(OtsOp::Append(self.anchor_tx.get(at + 32..).unwrap_or_default().to_vec()));
        ops.push(OtsOp::Sha256);
        ops.push(OtsOp::Sha256);
        for (level, s) in self.tx_path.iter().enumerate() {
            if (self.tx_index >> level) & 1 == 1 {
                ops.push(OtsOp::Prepend(s.0.to_vec()));
            } else {
                ops.push(OtsOp::Append(s.0.to_vec()));
            }
            ops.push(OtsOp::Sha256);
            ops.push(OtsOp::Sha256);
        }
        // Empty prepends/appends are legal but pointless; OpenTimestamps refuses them.
        ops.retain(|op| !matches!(op, OtsOp::Prepend(b) | OtsOp::Append(b) if b.is_empty()));
        Ok(ops)
    }
}

/// One OpenTimestamps operation.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OtsOp {
    /// Prefix the message with these bytes.
    Prepend(#[serde(with = "crate::serde_hex")] Vec<u8>),
    /// Suffix the message with these bytes.
    Append(#[serde(with = "crate::serde_hex")] Vec<u8>),
    /// Replace the message by its SHA-256.
    Sha256,
}

/// Applies OpenTimestamps operations to a message.
pub fn apply_ots(start: &[u8], ops: &[OtsOp]) -> Vec<u8> {
    let mut msg = start.to_vec();
    for op in ops {
        msg = match op {
            OtsOp::Prepend(b) => [&b[..], &msg[..]].concat(),
            OtsOp::Append(b) => [&msg[..], &b[..]].concat(),
            OtsOp::Sha256 => crate::hash::sha256(&msg).0.to_vec(),
        };
    }
    msg
}
