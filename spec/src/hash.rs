//! Tagged SHA-256 hashes: the one hash function of the protocol (SPEC.md §2).
//!
//! Owns the list of tags and the fast paths (pre-computed midstates) that make a Merkle
//! node cost exactly two SHA-256 compressions. Must never hash protocol data without a tag:
//! domain separation is what keeps a receipt, a Merkle node and an epoch header from ever
//! being mistaken for one another.

use std::fmt;
use std::sync::LazyLock;

use sha2::digest::generic_array::GenericArray;
use sha2::{Digest, Sha256};

/// A 32-byte SHA-256 output, in the byte order SHA-256 produces it.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Hash32(pub [u8; 32]);

impl Hash32 {
    /// The all-zero hash, used as the previous-header hash of the genesis epoch.
    pub const ZERO: Hash32 = Hash32([0u8; 32]);

    /// The bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Lower-case hex of the bytes in order (no Bitcoin-style reversal).
    pub fn to_hex(&self) -> String {
        crate::serde_hex::to_hex(&self.0)
    }

    /// Parses exactly 64 hex characters.
    pub fn from_hex(s: &str) -> Result<Self, hex::FromHexError> {
        let mut out = [0u8; 32];
        hex::decode_to_slice(s, &mut out)?;
        Ok(Hash32(out))
    }

    /// Number of leading zero bits (used by the registration proof-of-work).
    pub fn leading_zero_bits(&self) -> u32 {
        let mut bits = 0;
        for b in self.0 {
            if b == 0 {
                bits += 8;
            } else {
                bits += b.leading_zeros();
                break;
            }
        }
        bits
    }
}

impl fmt::Debug for Hash32 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Hash32({})", self.to_hex())
    }
}

impl fmt::Display for Hash32 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(crate::serde_hex::encode_into(&self.0, &mut [0u8; 64]))
    }
}

impl serde::Serialize for Hash32 {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        crate::serde_hex::serialize_short(&self.0, s)
    }
}

impl<'de> serde::Deserialize<'de> for Hash32 {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Hash32::from_hex(&s).map_err(serde::de::Error::custom)
    }
}

/// Every domain-separation tag of the protocol. The tag string is what gets hashed; the
/// enum only keeps the set closed so that a typo cannot create a new domain.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Tag {
    /// Content hash of task inputs, results and blobs.
    Content,
    /// Task class id.
    TaskClass,
    /// Task id.
    Task,
    /// The commitment value H(task ‖ worker ‖ result hash ‖ salt).
    Commitment,
    /// Id (signed digest) of a commitment message.
    CommitMessage,
    /// Id (signed digest) of a reveal message.
    Reveal,
    /// Id of a worker registration; also its proof-of-work hash.
    Registration,
    /// Id of a work receipt; the leaf hash of the receipts tree.
    Receipt,
    /// Leaf hash of the ledger (state) tree.
    LedgerEntry,
    /// Inner node of every Merkle tree.
    MerkleNode,
    /// Root of an empty Merkle tree.
    MerkleEmpty,
    /// Epoch header hash.
    EpochHeader,
    /// Id (signed digest) of a task announcement.
    TaskAnnouncement,
    /// Id (signed digest) of a claim.
    Claim,
    /// What a registration bond's key signs (SPEC.md §5.4).
    Bond,
    /// What a coordinator signs for a batch of receipts: the batch's leaf count and root
    /// (SPEC.md §5.7).
    ReceiptBatch,
    /// Commitment to an epoch's draw seed (SPEC.md §12.1).
    DrawSeed,
    /// Root of the roster of keys an epoch's draws rank (SPEC.md §12.1).
    Roster,
    /// A key's score in the draws for a task (SPEC.md §12.1).
    Draw,
    /// The commitment value of a validator's score sheet (SPEC.md §13.4).
    ScoreCommitment,
    /// Id (signed digest) of a score commit.
    ScoreCommit,
    /// Id (signed digest) of a score reveal.
    ScoreReveal,
    /// Id (signed digest) of a validator's registration (SPEC.md §13.5).
    ValidatorRegistration,
    /// Leaf hash of an epoch's scores tree: one class's scored round (SPEC.md §13.6).
    ScoredRound,
    /// Id (signed digest) of a validator's latency probe (SPEC.md §13.7).
    Probe,
    /// Id (signed digest) of a worker's answer to a probe (SPEC.md §13.7).
    ProbeAnswer,
}

impl Tag {
    /// All tags, in SPEC.md order.
    pub const ALL: [Tag; 26] = [
        Tag::Content,
        Tag::TaskClass,
        Tag::Task,
        Tag::Commitment,
        Tag::CommitMessage,
        Tag::Reveal,
        Tag::Registration,
        Tag::Receipt,
        Tag::LedgerEntry,
        Tag::MerkleNode,
        Tag::MerkleEmpty,
        Tag::EpochHeader,
        Tag::TaskAnnouncement,
        Tag::Claim,
        Tag::Bond,
        Tag::ReceiptBatch,
        Tag::DrawSeed,
        Tag::Roster,
        Tag::Draw,
        Tag::ScoreCommitment,
        Tag::ScoreCommit,
        Tag::ScoreReveal,
        Tag::ValidatorRegistration,
        Tag::ScoredRound,
        Tag::Probe,
        Tag::ProbeAnswer,
    ];

    /// The ASCII tag string hashed into the prefix.
    pub const fn name(self) -> &'static str {
        match self {
            Tag::Content => "cairn/content",
            Tag::TaskClass => "cairn/task-class",
            Tag::Task => "cairn/task",
            Tag::Commitment => "cairn/commitment",
            Tag::CommitMessage => "cairn/commit-message",
            Tag::Reveal => "cairn/reveal",
            Tag::Registration => "cairn/registration",
            Tag::Receipt => "cairn/receipt",
            Tag::LedgerEntry => "cairn/ledger-entry",
            Tag::MerkleNode => "cairn/merkle-node",
            Tag::MerkleEmpty => "cairn/merkle-empty",
            Tag::EpochHeader => "cairn/epoch-header",
            Tag::TaskAnnouncement => "cairn/task-announcement",
            Tag::Claim => "cairn/claim",
            Tag::Bond => "cairn/bond",
            Tag::ReceiptBatch => "cairn/receipt-batch",
            Tag::DrawSeed => "cairn/draw-seed",
            Tag::Roster => "cairn/roster",
            Tag::Draw => "cairn/draw",
            Tag::ScoreCommitment => "cairn/score-commitment",
            Tag::ScoreCommit => "cairn/score-commit",
            Tag::ScoreReveal => "cairn/score-reveal",
            Tag::ValidatorRegistration => "cairn/validator-registration",
            Tag::ScoredRound => "cairn/scored-round",
            Tag::Probe => "cairn/probe",
            Tag::ProbeAnswer => "cairn/probe-answer",
        }
    }

    const fn index(self) -> usize {
        match self {
            Tag::Content => 0,
            Tag::TaskClass => 1,
            Tag::Task => 2,
            Tag::Commitment => 3,
            Tag::CommitMessage => 4,
            Tag::Reveal => 5,
            Tag::Registration => 6,
            Tag::Receipt => 7,
            Tag::LedgerEntry => 8,
            Tag::MerkleNode => 9,
            Tag::MerkleEmpty => 10,
            Tag::EpochHeader => 11,
            Tag::TaskAnnouncement => 12,
            Tag::Claim => 13,
            Tag::Bond => 14,
            Tag::ReceiptBatch => 15,
            Tag::DrawSeed => 16,
            Tag::Roster => 17,
            Tag::Draw => 18,
            Tag::ScoreCommitment => 19,
            Tag::ScoreCommit => 20,
            Tag::ScoreReveal => 21,
            Tag::ValidatorRegistration => 22,
            Tag::ScoredRound => 23,
            Tag::Probe => 24,
            Tag::ProbeAnswer => 25,
        }
    }

    /// The 64-byte prefix `SHA256(tag) ‖ SHA256(tag)` that starts every hash in this domain.
    /// An OpenTimestamps proof writes it as a `prepend` operation.
    pub fn prefix(self) -> [u8; 64] {
        let t: [u8; 32] = Sha256::digest(self.name().as_bytes()).into();
        let mut p = [0u8; 64];
        p[..32].copy_from_slice(&t);
        p[32..].copy_from_slice(&t);
        p
    }
}

/// Hashers that have already absorbed their tag's 64-byte prefix (one per tag), so a
/// tagged hash costs no more compressions than an untagged one.
static MIDSTATES: LazyLock<Vec<Sha256>> = LazyLock::new(|| {
    Tag::ALL
        .iter()
        .map(|t| {
            let mut h = Sha256::new();
            h.update(t.prefix());
            h
        })
        .collect()
});

/// Incremental tagged hasher: feed the message in pieces, then `finish`.
#[derive(Clone)]
pub struct TaggedHasher(Sha256);

impl TaggedHasher {
    /// Starts a hash in `tag`'s domain.
    pub fn new(tag: Tag) -> Self {
        match MIDSTATES.get(tag.index()) {
            Some(h) => TaggedHasher(h.clone()),
            // Unreachable by construction (MIDSTATES is built from Tag::ALL); computing the
            // prefix afresh keeps this path correct rather than panicking.
            None => {
                let mut h = Sha256::new();
                h.update(tag.prefix());
                TaggedHasher(h)
            }
        }
    }

    /// Absorbs more message bytes.
    pub fn update(&mut self, bytes: &[u8]) -> &mut Self {
        self.0.update(bytes);
        self
    }

    /// Returns the hash.
    pub fn finish(self) -> Hash32 {
        Hash32(self.0.finalize().into())
    }
}

/// `SHA256(SHA256(tag) ‖ SHA256(tag) ‖ msg)` — BIP340's tagged hash construction.
pub fn tagged_hash(tag: Tag, msg: &[u8]) -> Hash32 {
    let mut h = TaggedHasher::new(tag);
    h.update(msg);
    h.finish()
}

/// The content hash of task inputs, results and blobs.
pub fn content_hash(bytes: &[u8]) -> Hash32 {
    tagged_hash(Tag::Content, bytes)
}

/// Plain SHA-256 (used for model files, which operators check with `sha256sum`).
pub fn sha256(bytes: &[u8]) -> Hash32 {
    Hash32(Sha256::digest(bytes).into())
}

/// Bitcoin's double SHA-256.
pub fn sha256d(bytes: &[u8]) -> Hash32 {
    let once = Sha256::digest(bytes);
    Hash32(Sha256::digest(once).into())
}

const SHA256_IV: [u32; 8] =
    [0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19];

/// The compression state after the Merkle-node tag prefix (one 64-byte block).
static NODE_STATE: LazyLock<[u32; 8]> = LazyLock::new(|| {
    let mut state = SHA256_IV;
    let prefix = Tag::MerkleNode.prefix();
    sha2::compress256(&mut state, &[*GenericArray::from_slice(&prefix)]);
    state
});

/// The final padding block of a 128-byte message (prefix + two child hashes): 0x80, zeros,
/// and the bit length 1024 as a big-endian u64.
const NODE_PAD: [u8; 64] = {
    let mut b = [0u8; 64];
    b[0] = 0x80;
    b[62] = 0x04;
    b
};

/// Inner Merkle node: `tagged_hash(MerkleNode, left ‖ right)`, computed from the cached
/// midstate with exactly two compressions.
pub fn merkle_node(left: &Hash32, right: &Hash32) -> Hash32 {
    let mut state = *NODE_STATE;
    let mut block = [0u8; 64];
    block[..32].copy_from_slice(&left.0);
    block[32..].copy_from_slice(&right.0);
    sha2::compress256(&mut state, &[*GenericArray::from_slice(&block), *GenericArray::from_slice(&NODE_PAD)]);
    let mut out = [0u8; 32];
    for (chunk, word) in out.chunks_exact_mut(4).zip(state) {
        chunk.copy_from_slice(&word.to_be_bytes());
    }
    Hash32(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fast_node_matches_generic_tagged_hash() {
        let l = sha256(b"left");
        let r = sha256(b"right");
        let mut msg = Vec::new();
        msg.extend_from_slice(&l.0);
        msg.extend_from_slice(&r.0);
        assert_eq!(merkle_node(&l, &r), tagged_hash(Tag::MerkleNode, &msg));
    }

    #[test]
    fn midstate_matches_full_computation() {
        for tag in Tag::ALL {
            let mut full = Sha256::new();
            full.update(tag.prefix());
            full.update(b"abc");
            assert_eq!(tagged_hash(tag, b"abc").0, <[u8; 32]>::from(full.finalize()));
        }
    }

    #[test]
    fn tags_are_distinct() {
        let names: std::collections::HashSet<_> = Tag::ALL.iter().map(|t| t.name()).collect();
        assert_eq!(names.len(), Tag::ALL.len());
    }

    #[test]
    fn leading_zeros() {
        let mut h = [0xffu8; 32];
        assert_eq!(Hash32(h).leading_zero_bits(), 0);
        h[0] = 0;
        h[1] = 0x0f;
        assert_eq!(Hash32(h).leading_zero_bits(), 12);
        assert_eq!(Hash32::ZERO.leading_zero_bits(), 256);
    }
}
