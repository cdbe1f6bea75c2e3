//! Proof bundles (SPEC.md §8.4): a receipt proof plus the Bitcoin block headers above its
//! block, so an auditor with no node can check the proof and the proof-of-work that buries it.
//!
//! Owns the file layout and its bounds. Must never judge the headers' proof-of-work: that is
//! Bitcoin's rule, applied by anchor/'s offline verifier.

use crate::codec::{expect_version, Decode, DecodeError, Encode, Reader, Writer};
use crate::proof::{ReceiptProof, BLOCK_HEADER_LEN};

/// The eight bytes a bundle file starts with.
pub const BUNDLE_MAGIC: &[u8; 8] = b"cairnpb\0";
/// Most block headers above the anchor block (two difficulty periods).
pub const MAX_BUNDLE_HEADERS: usize = 4032;

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

/// A self-contained receipt proof.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ProofBundle {
    /// The receipt proof (its block header is the anchor block).
    pub proof: ReceiptProof,
    /// 80-byte headers of the blocks after the anchor block, in height order.
    pub headers: Vec<BlockHeaderBytes>,
}

impl ProofBundle {
    /// Object version.
    pub const VERSION: u8 = 1;

    /// Confirmations the bundle shows: the anchor block and the headers above it.
    pub fn depth(&self) -> u32 {
        self.headers.len() as u32 + 1
    }
}

impl Encode for ProofBundle {
    fn encode(&self, w: &mut Writer) {
        w.raw(BUNDLE_MAGIC).u8(Self::VERSION);
        self.proof.encode(w);
        w.u16(self.headers.len() as u16);
        for h in &self.headers {
            w.raw(&h.0);
        }
    }
}

impl Decode for ProofBundle {
    const NAME: &'static str = "proof bundle";

    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        if r.take("magic", BUNDLE_MAGIC.len())? != BUNDLE_MAGIC {
            return Err(DecodeError::InvalidValue { field: "magic", reason: "not a Cairn proof bundle" });
        }
        expect_version(r, Self::NAME, Self::VERSION)?;
        let proof = ReceiptProof::decode(r)?;
        let len = r.u16("bundle_headers")? as usize;
        let n = r.count("bundle_headers", len, MAX_BUNDLE_HEADERS, BLOCK_HEADER_LEN)?;
        let headers = (0..n)
            .map(|_| Ok(BlockHeaderBytes(r.array("bundle_headers")?)))
            .collect::<Result<Vec<_>, DecodeError>>()?;
        Ok(ProofBundle { proof, headers })
    }
}
