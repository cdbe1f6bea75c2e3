//! Work receipts (SPEC.md §5.7): the coordinator's signed verdict on one worker's result,
//! and the leaves of an epoch's receipts tree.
//!
//! Owns the receipt layout and its consistency rules. Must never compute a verdict.

use crate::codec::{expect_version, Decode, DecodeError, Encode, Reader, Writer};
use crate::hash::{Hash32, Tag};
use crate::keys::PubKey;
use crate::network::Network;
use crate::signed::{Object, Signed, Signer};

/// Why a result was rejected (or `None` for an accepted one).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
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
}

/// A receipt with the coordinator's signature.
pub type SignedReceipt = Signed<WorkReceipt>;

impl WorkReceipt {
    /// Object version.
    pub const VERSION: u8 = 1;
    /// Encoded length of the unsigned receipt.
    pub const ENCODED_LEN: usize = 1 + 1 + 32 + 4 + 32 + 32 + 32 + 32 + 1 + 1 + 4 + 8;

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
        w.raw(&self.result_hash.0).u8(v).u8(reason).u32(self.units).u64(self.reward_sats);
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
