//! Proof bundles (SPEC.md §8.4): a receipt proof plus the Bitcoin block headers around its
//! block and its coinbase, so an auditor with no node can check the proof, the block's
//! height, its connection to a known block and the proof-of-work that buries it.
//!
//! Owns the file layout and its bounds. Must never judge the headers' proof-of-work: that is
//! Bitcoin's rule, applied by the auditor's offline verifier (`cairn-audit`'s `headers`).

use crate::codec::{expect_version, Decode, DecodeError, Encode, Reader, Writer};
use crate::hash::Hash32;
use crate::proof::{hashes, RawTx, ReceiptProof, BLOCK_HEADER_LEN, MAX_ANCHOR_TX_BYTES};

/// The eight bytes a bundle file starts with.
pub const BUNDLE_MAGIC: &[u8; 8] = b"cairnpb\0";
/// Most block headers a bundle carries, before and above the anchor block together (50
/// difficulty periods, about two years of blocks: 8 MB).
pub const MAX_BUNDLE_HEADERS: usize = 50 * 2016;

/// A Bitcoin block header's 80 bytes (hex in JSON).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlockHeaderBytes(pub [u8; BLOCK_HEADER_LEN]);

impl serde::Serialize for BlockHeaderBytes {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        crate::serde_hex::serialize(&self.0, s)
    }
}

impl<'de> serde::Deserialize<'de> for BlockHeaderBytes {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = crate::serde_hex::deserialize(d)?;
        let a: [u8; BLOCK_HEADER_LEN] =
            v.try_into().map_err(|_| serde::de::Error::custom("a block header is 80 bytes"))?;
        Ok(BlockHeaderBytes(a))
    }
}

/// A self-contained receipt proof: the proof, the anchor block's coinbase (its height), and
/// a run of Bitcoin headers from a difficulty period's start through a checkpoint the
/// verifier ships, past the anchor block.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ProofBundle {
    /// The receipt proof (its block header is the anchor block).
    pub proof: ReceiptProof,
    /// 80-byte headers of the blocks before the anchor block, in height order, the last one
    /// its parent: the blocks at `proof.block_height - before.len()` up to the anchor block.
    pub before: Vec<BlockHeaderBytes>,
    /// The anchor block's coinbase transaction, non-witness: its input script starts with
    /// the block's height (BIP34).
    pub coinbase: RawTx,
    /// The coinbase's Bitcoin Merkle path (it is transaction 0).
    pub coinbase_path: Vec<Hash32>,
    /// 80-byte headers of the blocks after the anchor block, in height order.
    pub above: Vec<BlockHeaderBytes>,
}

impl ProofBundle {
    /// Object version.
    pub const VERSION: u8 = 2;

    /// Confirmations the bundle shows: the anchor block and the headers above it.
    pub fn depth(&self) -> u32 {
        self.above.len() as u32 + 1
    }

    /// Height of the first header the bundle carries.
    pub fn start_height(&self) -> u32 {
        // Decoding refuses more headers before the block than its height.
        self.proof.block_height.saturating_sub(self.before.len() as u32)
    }
}

impl Encode for ProofBundle {
    fn encode(&self, w: &mut Writer) {
        w.raw(BUNDLE_MAGIC).u8(Self::VERSION);
        self.proof.encode(w);
        w.u32(self.before.len() as u32);
        for h in &self.before {
            w.raw(&h.0);
        }
        w.bytes_u32(&self.coinbase.0).u8(self.coinbase_path.len() as u8);
        for s in &self.coinbase_path {
            w.raw(&s.0);
        }
        w.u32(self.above.len() as u32);
        for h in &self.above {
            w.raw(&h.0);
        }
    }
}

fn block_headers(r: &mut Reader<'_>, max: usize) -> Result<Vec<BlockHeaderBytes>, DecodeError> {
    let len = r.u32("bundle_headers")? as usize;
    let n = r.count("bundle_headers", len, max, BLOCK_HEADER_LEN)?;
    (0..n).map(|_| Ok(BlockHeaderBytes(r.array("bundle_headers")?))).collect()
}

impl Decode for ProofBundle {
    const NAME: &'static str = "proof bundle";

    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        if r.take("magic", BUNDLE_MAGIC.len())? != BUNDLE_MAGIC {
            return Err(DecodeError::InvalidValue { field: "magic", reason: "not a Cairn proof bundle" });
        }
        expect_version(r, Self::NAME, Self::VERSION)?;
        let proof = ReceiptProof::decode(r)?;
        let before = block_headers(r, MAX_BUNDLE_HEADERS)?;
        if before.len() > proof.block_height as usize {
            return Err(DecodeError::InvalidValue {
                field: "bundle_headers",
                reason: "more headers before the block than its height",
            });
        }
        let coinbase = RawTx(r.bytes_u32("coinbase", MAX_ANCHOR_TX_BYTES)?.to_vec());
        let coinbase_path = hashes(r, "coinbase_path")?;
        let above = block_headers(r, MAX_BUNDLE_HEADERS - before.len())?;
        Ok(ProofBundle { proof, before, coinbase, coinbase_path, above })
    }
}
