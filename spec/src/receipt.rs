//! Work receipts (SPEC.md §5.7): the coordinator's signed verdict on one worker's result,
//! and the leaves of an epoch's receipts tree.
//!
//! Owns the receipt layout, its consistency rules and batch signing (one signature over the
//! Merkle root of a batch of receipts; each receipt carries its path). Must never compute a
//! verdict.

use std::collections::HashSet;

use crate::codec::{expect_version, Decode, DecodeError, Encode, Reader, Writer};
use crate::hash::{tagged_hash, Hash32, Tag};
use crate::keys::{verify, PubKey, Signature, SigningKey};
use crate::merkle::{MerkleProof, MerkleTree};
use crate::network::Network;
use crate::signed::{Object, Signer};

/// Why a result was rejected (or `None` for an accepted one).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Agreed with the verdict of the task; rewarded (code 1, reason 0).
    Accepted,
    /// Disagreed with the majority under the class's rule (code 2, reason 1).
    Mismatch,
    /// Contradicted a canary's known answer (code 2, reason 2).
    CanaryFailed,
    /// Committed but revealed nothing before the deadline (code 2, reason 3).
    NoReveal,
    /// The reveal does not open the commitment (code 2, reason 4).
    BadReveal,
    /// The result is not well formed for the executor (code 2, reason 5).
    InvalidResult,
}

impl Verdict {
    /// All verdicts.
    pub const ALL: [Verdict; 6] = [
        Verdict::Accepted,
        Verdict::Mismatch,
        Verdict::CanaryFailed,
        Verdict::NoReveal,
        Verdict::BadReveal,
        Verdict::InvalidResult,
    ];

    /// (verdict byte, reason byte).
    pub const fn codes(self) -> (u8, u8) {
        match self {
            Verdict::Accepted => (1, 0),
            Verdict::Mismatch => (2, 1),
            Verdict::CanaryFailed => (2, 2),
            Verdict::NoReveal => (2, 3),
            Verdict::BadReveal => (2, 4),
            Verdict::InvalidResult => (2, 5),
        }
    }

    /// From (verdict byte, reason byte).
    pub fn from_codes(v: u8, reason: u8) -> Option<Self> {
        Verdict::ALL.into_iter().find(|x| x.codes() == (v, reason))
    }

    /// True for an accepted result.
    pub const fn is_accepted(self) -> bool {
        matches!(self, Verdict::Accepted)
    }
}

/// A coordinator's record of one worker's result on one task.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct WorkReceipt {
    /// Network.
    pub network: Network,
    /// The coordinator that issued (and signs) it.
    pub coordinator: PubKey,
    /// Height of the epoch the receipt belongs to.
    pub epoch: u32,
    /// Task id.
    pub task: Hash32,
    /// Task class id.
    pub class: Hash32,
    /// Worker's key.
    pub worker: PubKey,
    /// Content hash of the worker's revealed result (all zeros when nothing was revealed).
    pub result_hash: Hash32,
    /// Verdict.
    pub verdict: Verdict,
    /// Units of work credited.
    pub units: u32,
    /// Reward in satoshis (zero unless accepted).
    pub reward_sats: u64,
    /// The epoch open when the worker's slot was drawn: its draw seed and roster ranked the
    /// worker (SPEC.md §12.1). At most `epoch`.
    pub draw_epoch: u32,
}

/// A receipt with the coordinator's signature over the batch it was issued in (SPEC.md
/// §5.7): the coordinator signs one Merkle root per batch of receipts, and each receipt
/// carries its place in that tree. A batch of one is a receipt signed alone.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SignedReceipt {
    /// The receipt.
    #[serde(flatten)]
    pub body: WorkReceipt,
    /// The receipt's place in its batch: index, leaf count and the sibling path.
    pub batch: MerkleProof,
    /// BIP340 signature by `body.coordinator` over the batch id (`batch_id`).
    pub signature: Signature,
}

/// What the coordinator signs for a batch of `count` receipts whose ids have Merkle root
/// `root` (§6): `tagged_hash("cairn/receipt-batch", count u16 ‖ root)`.
pub fn batch_id(count: u16, root: &Hash32) -> Hash32 {
    let mut m = [0u8; 34];
    m[..2].copy_from_slice(&count.to_be_bytes());
    m[2..].copy_from_slice(&root.0);
    tagged_hash(Tag::ReceiptBatch, &m)
}

impl SignedReceipt {
    /// Most receipts one signature may cover.
    pub const MAX_BATCH: usize = 256;
    /// Longest batch path (a tree of `MAX_BATCH` leaves).
    pub const MAX_PATH: usize = 8;
    /// Encoded length of a receipt signed alone (249 bytes).
    pub const MIN_LEN: usize = WorkReceipt::ENCODED_LEN + 2 + 2 + 1 + 64;
    /// Longest encoding: a path of `MAX_PATH` siblings (505 bytes).
    pub const MAX_LEN: usize = Self::MIN_LEN + 32 * Self::MAX_PATH;

    /// Signs one receipt alone (a batch of one).
    pub fn sign(body: WorkReceipt, key: &SigningKey, aux_rand: &[u8; 32]) -> Self {
        Self::seal_one(body.id(), body, |m| key.sign(m, aux_rand))
    }

    /// Seals one receipt body (with its id, `WorkReceipt::id`) as a batch of one.
    pub fn seal_one(id: Hash32, body: WorkReceipt, sign: impl FnOnce(&Hash32) -> Signature) -> Self {
        let signature = sign(&batch_id(1, &MerkleTree::new(vec![id]).root()));
        SignedReceipt { body, batch: MerkleProof { index: 0, count: 1, siblings: Vec::new() }, signature }
    }

    /// Signs receipts as batches of at most `MAX_BATCH`, in order: one call to `sign` per
    /// batch, with the batch id to sign.
    pub fn sign_all(bodies: Vec<WorkReceipt>, sign: impl FnMut(&Hash32) -> Signature) -> Vec<Self> {
        Self::seal_batch(bodies.into_iter().map(|b| (b.id(), b)).collect(), sign)
    }

    /// Seals receipt bodies (each paired with its id, `WorkReceipt::id`, so it is not
    /// hashed again) into signed receipts, in order, as consecutive batches of at most
    /// `MAX_BATCH`: per batch, the tree over the ids, its batch id signed once with `sign`,
    /// and each receipt given its path and that signature. An id that is not its body's puts
    /// a wrong leaf in the tree: no receipt of that batch then verifies, so the mistake cannot
    /// go unnoticed by any checker.
    pub fn seal_batch(
        bodies: Vec<(Hash32, WorkReceipt)>,
        mut sign: impl FnMut(&Hash32) -> Signature,
    ) -> Vec<Self> {
        let mut out = Vec::with_capacity(bodies.len());
        let mut rest = bodies.into_iter().peekable();
        while rest.peek().is_some() {
            let chunk: Vec<(Hash32, WorkReceipt)> = rest.by_ref().take(Self::MAX_BATCH).collect();
            let tree = MerkleTree::new(chunk.iter().map(|(id, _)| *id).collect());
            // At most MAX_BATCH (256) leaves, so the count fits a u16.
            let count = chunk.len() as u16;
            let signature = sign(&batch_id(count, &tree.root()));
            for (i, (_, body)) in chunk.into_iter().enumerate() {
                // Every index of the tree has a path; were one missing, the receipt would
                // carry an empty one and fail verification rather than pass.
                let batch = tree.proof(i as u32).unwrap_or(MerkleProof {
                    index: i as u32,
                    count: u32::from(count),
                    siblings: Vec::new(),
                });
                out.push(SignedReceipt { body, batch, signature });
            }
        }
        out
    }

    /// The receipt's id (its leaf hash); the batch and signature do not enter it.
    pub fn id(&self) -> Hash32 {
        self.body.id()
    }

    /// The id of the batch this receipt claims to belong to (what its signature signs), or
    /// `None` when the path does not fit the batch's shape.
    pub fn batch_id(&self) -> Option<Hash32> {
        self.batch_id_of(&self.id())
    }

    /// [`batch_id`](Self::batch_id) for a receipt whose id (`self.id()`) the caller has.
    pub fn batch_id_of(&self, id: &Hash32) -> Option<Hash32> {
        let count = u16::try_from(self.batch.count).ok()?;
        let root = self.batch.root_for(id).ok()?;
        Some(batch_id(count, &root))
    }

    /// True when the coordinator named in the receipt signed its batch.
    pub fn verify(&self) -> bool {
        self.batch_id().is_some_and(|m| verify(&self.body.coordinator, &m, &self.signature))
    }
}

/// Verifies many receipts, checking each batch's signature once: the receipts of a batch
/// share it, so an epoch of `n` receipts issued in batches of `b` costs about `n / b`
/// signature verifications instead of `n`.
#[derive(Debug, Default)]
pub struct ReceiptVerifier {
    /// (coordinator, batch id, signature) triples already verified. The coordinator is part
    /// of the key: a receipt naming another coordinator never rides on this one's signature.
    verified: HashSet<(PubKey, Hash32, Signature)>,
}

impl ReceiptVerifier {
    /// The same answer as `receipt.verify()`.
    pub fn verify(&mut self, receipt: &SignedReceipt) -> bool {
        self.verify_id(receipt, &receipt.id())
    }

    /// [`verify`](Self::verify) for a receipt whose id (`receipt.id()`) the caller has.
    pub fn verify_id(&mut self, receipt: &SignedReceipt, id: &Hash32) -> bool {
        let Some(batch) = receipt.batch_id_of(id) else { return false };
        let k = (receipt.body.coordinator, batch, receipt.signature);
        if self.verified.contains(&k) {
            return true;
        }
        let ok = verify(&receipt.body.coordinator, &batch, &receipt.signature);
        if ok {
            self.verified.insert(k);
        }
        ok
    }
}

impl Encode for SignedReceipt {
    fn encode(&self, w: &mut Writer) {
        self.body.encode(w);
        // Bounded by decode and by `seal_batch` (count ≤ 256, path ≤ 8).
        w.u16(self.batch.count as u16).u16(self.batch.index as u16).u8(self.batch.siblings.len() as u8);
        for s in &self.batch.siblings {
            w.raw(&s.0);
        }
        w.raw(&self.signature.0);
    }
}

impl Decode for SignedReceipt {
    const NAME: &'static str = WorkReceipt::NAME;

    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let body = WorkReceipt::decode(r)?;
        let count = r.u16("batch_count")?;
        if count == 0 || usize::from(count) > Self::MAX_BATCH {
            return Err(DecodeError::InvalidValue {
                field: "batch_count",
                reason: "a batch holds 1 to 256 receipts",
            });
        }
        let index = r.u16("batch_index")?;
        if index >= count {
            return Err(DecodeError::InvalidValue {
                field: "batch_index",
                reason: "not below the batch count",
            });
        }
        let n = r.u8("batch_path")?;
        let n = r.count("batch_path", n.into(), Self::MAX_PATH, 32)?;
        let mut siblings = Vec::with_capacity(n);
        for _ in 0..n {
            siblings.push(Hash32(r.array("batch_path")?));
        }
        let batch = MerkleProof { index: index.into(), count: count.into(), siblings };
        // The path must fit the shape (index, count) fixes (§6.1), so each receipt has one
        // encoding.
        if batch.steps().is_err() {
            return Err(DecodeError::InvalidValue {
                field: "batch_path",
                reason: "the path does not fit the batch's shape",
            });
        }
        let signature = Signature::decode(r)?;
        Ok(SignedReceipt { body, batch, signature })
    }
}

impl WorkReceipt {
    /// Object version.
    pub const VERSION: u8 = 2;
    /// Encoded length of the unsigned receipt.
    pub const ENCODED_LEN: usize = 1 + 1 + 32 + 4 + 32 + 32 + 32 + 32 + 1 + 1 + 4 + 8 + 4;

    /// The leaf hash of this receipt in its epoch's receipts tree (= its id).
    pub fn leaf_hash(&self) -> Hash32 {
        self.id()
    }
}

impl Encode for WorkReceipt {
    fn encode(&self, w: &mut Writer) {
        w.u8(Self::VERSION);
        self.network.encode(w);
        self.coordinator.encode(w);
        w.u32(self.epoch).raw(&self.task.0).raw(&self.class.0);
        self.worker.encode(w);
        let (v, reason) = self.verdict.codes();
        w.raw(&self.result_hash.0)
            .u8(v)
            .u8(reason)
            .u32(self.units)
            .u64(self.reward_sats)
            .u32(self.draw_epoch);
    }
}

impl Decode for WorkReceipt {
    const NAME: &'static str = "work receipt";

    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        expect_version(r, Self::NAME, Self::VERSION)?;
        let network = Network::decode(r)?;
        let coordinator = PubKey::decode(r, "coordinator")?;
        let epoch = r.u32("epoch")?;
        let task = Hash32(r.array("task")?);
        let class = Hash32(r.array("class")?);
        let worker = PubKey::decode(r, "worker")?;
        let result_hash = Hash32(r.array("result_hash")?);
        let v = r.u8("verdict")?;
        let reason = r.u8("reason")?;
        let verdict =
            Verdict::from_codes(v, reason).ok_or(DecodeError::InvalidTag { field: "verdict", tag: v })?;
        let units = r.u32("units")?;
        let reward_sats = r.u64("reward_sats")?;
        if !verdict.is_accepted() && reward_sats != 0 {
            return Err(DecodeError::InvalidValue {
                field: "reward_sats",
                reason: "a rejected result earns nothing",
            });
        }
        let draw_epoch = r.u32("draw_epoch")?;
        if draw_epoch > epoch {
            return Err(DecodeError::InvalidValue {
                field: "draw_epoch",
                reason: "a slot cannot be drawn after its receipt's epoch",
            });
        }
        Ok(WorkReceipt {
            network,
            coordinator,
            epoch,
            task,
            class,
            worker,
            result_hash,
            verdict,
            units,
            reward_sats,
            draw_epoch,
        })
    }
}

impl Object for WorkReceipt {
    const TAG: Tag = Tag::Receipt;
}

impl Signer for WorkReceipt {
    fn signer(&self) -> &PubKey {
        &self.coordinator
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(coord: &SigningKey, i: u32) -> WorkReceipt {
        WorkReceipt {
            network: Network::Regtest,
            coordinator: coord.public(),
            epoch: 3,
            task: tagged_hash(Tag::Task, &i.to_be_bytes()),
            class: Hash32([2; 32]),
            worker: coord.public(),
            result_hash: Hash32([3; 32]),
            verdict: Verdict::Accepted,
            units: 1,
            reward_sats: 10,
            draw_epoch: 0,
        }
    }

    fn key() -> SigningKey {
        SigningKey::from_secret_bytes([9; 32]).expect("valid key")
    }

    #[test]
    fn every_receipt_of_a_batch_verifies_and_round_trips() {
        let k = key();
        for n in [1usize, 2, 3, 5, 8, 17, 256, 257, 600] {
            let mut signatures = 0;
            let rs = SignedReceipt::sign_all((0..n as u32).map(|i| body(&k, i)).collect(), |m| {
                signatures += 1;
                k.sign(m, &[0; 32])
            });
            assert_eq!(signatures, n.div_ceil(SignedReceipt::MAX_BATCH), "one signature per batch of {n}");
            for (i, r) in rs.iter().enumerate() {
                assert!(r.verify(), "receipt {i} of {n}");
                assert_eq!(r.batch.index as usize, i % SignedReceipt::MAX_BATCH);
                let bytes = r.to_bytes();
                assert!(bytes.len() >= SignedReceipt::MIN_LEN && bytes.len() <= SignedReceipt::MAX_LEN);
                assert_eq!(&SignedReceipt::from_bytes(&bytes).expect("decodes"), r);
            }
        }
    }

    #[test]
    fn a_changed_body_a_moved_leaf_or_another_batch_fails() {
        let k = key();
        let rs = SignedReceipt::sign_all((0..5).map(|i| body(&k, i)).collect(), |m| k.sign(m, &[0; 32]));
        let mut r = rs[1].clone();
        r.body.reward_sats += 1;
        assert!(!r.verify(), "a changed body");
        let mut r = rs[1].clone();
        r.batch.index = 0;
        assert!(!r.verify(), "claimed at another index");
        let mut r = rs[1].clone();
        r.batch.siblings[0] = rs[1].id();
        assert!(!r.verify(), "a wrong sibling");
        let mut r = rs[4].clone();
        r.batch.count = 6;
        assert!(!r.verify(), "claimed in a bigger batch");
        let other = SignedReceipt::sign_all((5..10).map(|i| body(&k, i)).collect(), |m| k.sign(m, &[0; 32]));
        let mut r = rs[1].clone();
        r.signature = other[1].signature;
        assert!(!r.verify(), "another batch's signature");
        let alone = SignedReceipt::sign(body(&k, 1), &k, &[0; 32]);
        assert!(alone.verify());
        assert_eq!(alone.id(), rs[1].id(), "the batch never enters the id");
        assert_ne!(alone.batch_id(), rs[1].batch_id());
        let stranger = SigningKey::from_secret_bytes([8; 32]).expect("valid key");
        let forged = SignedReceipt::sign(body(&k, 1), &stranger, &[0; 32]);
        assert!(!forged.verify(), "signed by a key other than the coordinator's");
    }

    #[test]
    fn the_verifier_checks_a_batch_once_and_answers_as_verify_does() {
        let k = key();
        let rs = SignedReceipt::sign_all((0..9).map(|i| body(&k, i)).collect(), |m| k.sign(m, &[0; 32]));
        let mut v = ReceiptVerifier::default();
        assert!(rs.iter().all(|r| v.verify(r)));
        assert_eq!(v.verified.len(), 1, "one batch, one signature checked");
        // A receipt naming another coordinator, claiming a place in the verified batch, is
        // not accepted on the strength of the cached signature.
        let stranger = SigningKey::from_secret_bytes([8; 32]).expect("valid key");
        let mut r = rs[3].clone();
        r.body.coordinator = stranger.public();
        assert!(!v.verify(&r));
        let mut r = rs[3].clone();
        r.body.units += 1;
        assert!(!v.verify(&r), "a changed body folds to another batch id");
    }
}
