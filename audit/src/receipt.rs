//! One receipt's proof, assembled from a source and the auditor's Bitcoin node: the receipt
//! and its Merkle path, its epoch's header and the one the covering anchor commits with the
//! path between them (SPEC.md §8.1),
//! and — from Bitcoin itself — the anchor transaction, its place in its block, the block
//! header, and the chain of spends from the genesis output to it (SPEC.md §7.1). Also reads
//! proof files in every form `cairn` writes them.
//!
//! Owns assembly and file reading. Must never verify anything (that is the pure verifier in
//! `cairn-spec` and `crate::verify`) nor take the source's word for a Bitcoin fact it can ask
//! the node.

use crate::verify::assemble_receipt_proof;
use cairn_anchor::ChainBackend;
use cairn_spec::{Decode, Encode, Hash32, Network, ProofBundle, ReceiptProof};
use thiserror::Error;

use crate::source::{Source, SourceError};

/// Why a proof could not be assembled or read.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum ProofSourceError {
    /// The source could not say.
    #[error(transparent)]
    Source(#[from] SourceError),
    /// The receipt's epoch is not anchored in a confirmed transaction yet.
    #[error("not anchored yet: {0}")]
    NotAnchored(String),
    /// Bitcoin could not say.
    #[error("bitcoin: {0}")]
    Chain(String),
    /// A proof file in no known form.
    #[error("{0}")]
    File(String),
}

/// Assembles the proof of receipt `id`.
pub fn assemble(
    source: &dyn Source,
    id: &Hash32,
    backend: &dyn ChainBackend,
    network: Network,
) -> Result<ReceiptProof, ProofSourceError> {
    let located = source.receipt(id)?;
    let epoch = located.epoch;
    let claims = source.anchors()?;
    // The first confirmed anchor committing this epoch or a later one covers it.
    let claim =
        claims.iter().filter(|a| a.epoch >= epoch).cloned().min_by_key(|a| (a.height, a.epoch)).ok_or_else(
            || ProofSourceError::NotAnchored(format!("no confirmed anchor covers epoch {epoch}")),
        )?;
    // The receipt's epoch's header and the anchored one's, with the path between them; the
    // verifier checks both signatures and the path, so the source is not believed.
    let mut headers = source.header_range(epoch, epoch)?;
    let mut history_path = Vec::new();
    if claim.epoch > epoch {
        headers.extend(source.header_range(claim.epoch, claim.epoch)?);
        history_path = source.history_path(epoch, claim.epoch)?;
    }
    if headers.len() != 1 + usize::from(claim.epoch > epoch) {
        return Err(SourceError::BadAnswer(format!("headers {epoch} and {} incomplete", claim.epoch)).into());
    }
    let block = backend
        .block_hash(claim.height)
        .map_err(|e| ProofSourceError::Chain(e.to_string()))?
        .ok_or_else(|| {
            ProofSourceError::Chain(format!(
                "no block at height {} (claimed for {})",
                claim.height, claim.txid
            ))
        })?;
    // The anchors before it, for the chain of spends from the genesis output (SPEC.md §7.1).
    let mut earlier = Vec::new();
    for c in claims.iter().filter(|c| c.height <= claim.height && c.txid != claim.txid) {
        let b = backend.block_hash(c.height).map_err(|e| ProofSourceError::Chain(e.to_string()))?;
        if let Some(block) = b {
            earlier.push(crate::verify::AnchorRef { txid: c.txid, block });
        }
    }
    assemble_receipt_proof(
        network,
        located.receipt,
        located.path.index,
        located.path.siblings,
        headers,
        history_path,
        claim.txid,
        block,
        &earlier,
        backend,
    )
    .map_err(|e| ProofSourceError::Chain(e.to_string()))
}

/// A proof read from a file: a bare proof, or a bundle with headers for offline checking.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProofFile {
    /// A receipt proof.
    Proof(ReceiptProof),
    /// A bundle.
    Bundle(ProofBundle),
}

impl ProofFile {
    /// The receipt proof inside.
    pub fn proof(&self) -> &ReceiptProof {
        match self {
            ProofFile::Proof(p) => p,
            ProofFile::Bundle(b) => &b.proof,
        }
    }

    /// Reads any form `cairn` writes: a binary bundle or proof, either as hex text, or JSON
    /// (a bundle or a proof, as `cairn proof bundle --json` and the decoders print them).
    pub fn parse(bytes: &[u8]) -> Result<Self, ProofSourceError> {
        if bytes.starts_with(cairn_spec::bundle::BUNDLE_MAGIC) {
            return ProofBundle::from_bytes(bytes)
                .map(ProofFile::Bundle)
                .map_err(|e| ProofSourceError::File(format!("proof bundle: {e}")));
        }
        let text = std::str::from_utf8(bytes).map(str::trim).unwrap_or_default();
        if text.starts_with('{') {
            let v: serde_json::Value =
                serde_json::from_str(text).map_err(|e| ProofSourceError::File(format!("JSON: {e}")))?;
            // Through the binary form, so JSON meets the same bounds as the encoding.
            if v.get("proof").is_some() {
                let b: ProofBundle = serde_json::from_value(v)
                    .map_err(|e| ProofSourceError::File(format!("bundle JSON: {e}")))?;
                return Self::parse(&b.to_bytes());
            }
            let p: ReceiptProof =
                serde_json::from_value(v).map_err(|e| ProofSourceError::File(format!("proof JSON: {e}")))?;
            return ReceiptProof::from_bytes(&p.to_bytes())
                .map(ProofFile::Proof)
                .map_err(|e| ProofSourceError::File(format!("proof JSON: {e}")));
        }
        if !text.is_empty() && text.bytes().all(|b| b.is_ascii_hexdigit()) {
            let raw = hex::decode(text).map_err(|e| ProofSourceError::File(format!("hex: {e}")))?;
            return Self::parse(&raw);
        }
        ReceiptProof::from_bytes(bytes).map(ProofFile::Proof).map_err(|e| {
            ProofSourceError::File(format!("not a proof bundle, receipt proof, hex or JSON: {e}"))
        })
    }
}
