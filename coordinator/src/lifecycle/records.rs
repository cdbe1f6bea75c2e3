//! The lifecycle's persistent records: tasks with their assignments, workers with their
//! reputation, payouts, and the node-wide counters. Stored as JSON (SCHEMA.md).
//!
//! Owns these shapes and nothing else. Must never carry a canary's answer into anything
//! that leaves the node (the API's task view is built elsewhere and leaves it out).

use std::collections::{BTreeMap, VecDeque};

use bitcoin::Txid;
use cairn_spec::{Hash32, PubKey, Registration, Signed, SignedEpochHeader, Task, Verdict};
use serde::{Deserialize, Serialize};

/// Most rejection reasons kept per worker (the newest win).
pub const MAX_REJECTIONS_KEPT: usize = 64;

/// Where a task is in its lifecycle.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "phase")]
pub enum Phase {
    /// Open for claims and commitments until `wanted` commitments are in.
    Commit,
    /// Commitments closed; reveals accepted until `deadline` (unix seconds).
    Reveal {
        /// Reveal deadline.
        deadline: u64,
    },
    /// Verdict reached; receipts issued.
    Decided {
        /// Content hash of the accepted result.
        result: Hash32,
        /// When.
        at: u64,
    },
    /// No verdict could be reached within the replica limit.
    Failed {
        /// Why.
        reason: String,
        /// When.
        at: u64,
    },
}

impl Phase {
    /// True once nothing more happens to the task.
    pub fn is_final(&self) -> bool {
        matches!(self, Phase::Decided { .. } | Phase::Failed { .. })
    }
}

/// One worker's slot on a task.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Assignment {
    /// The worker.
    pub worker: PubKey,
    /// Lease end (unix seconds); irrelevant once committed.
    pub lease_expires: u64,
    /// Commitment value, once committed.
    pub commitment: Option<Hash32>,
    /// Content hash of the revealed result, once revealed (and opening the commitment).
    pub revealed: Option<Hash32>,
    /// This slot is the audit replica (not visible to the worker).
    pub audit: bool,
    /// Verdict, once decided.
    pub verdict: Option<Verdict>,
    /// Receipt id, once issued.
    pub receipt: Option<Hash32>,
}

/// A task and its lifecycle state.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskRecord {
    /// Task id.
    pub id: Hash32,
    /// The task.
    pub task: Task,
    /// Unix seconds when accepted.
    pub accepted_at: u64,
    /// Expected result bytes when this is a canary (never leaves the node).
    #[serde(default, skip_serializing_if = "Option::is_none", with = "opt_hex")]
    pub canary: Option<Vec<u8>>,
    /// Lifecycle phase.
    pub phase: Phase,
    /// Commitments wanted before reveals open (replication, plus audit and escalation).
    pub wanted: u8,
    /// Whether the audit draw was made (once per task).
    pub audit_drawn: bool,
    /// Extra replicas added after disagreement.
    pub escalations: u8,
    /// Slots, in claim order.
    pub assignments: Vec<Assignment>,
}

impl TaskRecord {
    /// Number of slots holding a commitment.
    pub fn committed(&self) -> usize {
        self.assignments.iter().filter(|a| a.commitment.is_some()).count()
    }

    /// The slot of `worker`, if any.
    pub fn slot(&self, worker: &PubKey) -> Option<&Assignment> {
        self.assignments.iter().find(|a| &a.worker == worker)
    }

    pub(crate) fn slot_mut(&mut self, worker: &PubKey) -> Option<&mut Assignment> {
        self.assignments.iter_mut().find(|a| &a.worker == worker)
    }
}

/// Why a worker lost a result, kept for the worker to query.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rejection {
    /// Task id.
    pub task: Hash32,
    /// Verdict (`None` when the task failed without a verdict for this worker).
    pub verdict: Option<Verdict>,
    /// Explanation for people.
    pub reason: String,
    /// Unix seconds.
    pub at: u64,
}

/// A ban: the worker's requests are refused from now on.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ban {
    /// Why.
    pub reason: String,
    /// The task that proved it.
    pub task: Hash32,
    /// Locked satoshis forfeited.
    pub forfeited: u64,
    /// Unix seconds.
    pub at: u64,
}

/// A registered worker and its reputation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkerRecord {
    /// The registration in force (the newest accepted one).
    pub registration: Signed<Registration>,
    /// Unix seconds of the first registration.
    pub registered_at: u64,
    /// Consecutive accepted results: drives the audit probability.
    pub streak: u32,
    /// Accepted results.
    pub accepted: u64,
    /// Rejected results.
    pub rejected: u64,
    /// Set when banned.
    pub banned: Option<Ban>,
    /// Newest rejection reasons (at most `MAX_REJECTIONS_KEPT`).
    pub rejections: VecDeque<Rejection>,
    /// Set when the bond that admitted the worker stopped being a confirmed unspent output of
    /// at least the minimum (why, unix seconds): the worker must register again, by work or
    /// with another bond. Not fraud: nothing is forfeited.
    #[serde(default)]
    pub bond_lost: Option<(String, u64)>,
}

impl WorkerRecord {
    /// The worker's key.
    pub fn key(&self) -> PubKey {
        self.registration.body.worker
    }

    pub(crate) fn note_rejection(&mut self, r: Rejection) {
        if self.rejections.len() >= MAX_REJECTIONS_KEPT {
            self.rejections.pop_front();
        }
        self.rejections.push_back(r);
    }
}

/// Where a payout is.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "status")]
pub enum PayoutStatus {
    /// Handed to the anchor queue; the next anchor carries it.
    Queued,
    /// Confirmed in an anchor transaction.
    Paid {
        /// The transaction.
        txid: Txid,
        /// Its block height.
        height: u32,
    },
}

/// One payout to one worker.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PayoutRecord {
    /// Payout id (echoed by the anchor machine).
    pub id: u64,
    /// Worker paid.
    pub worker: PubKey,
    /// Destination address.
    pub address: String,
    /// Satoshis.
    pub amount: u64,
    /// Unix seconds queued.
    pub queued_at: u64,
    /// Status.
    pub status: PayoutStatus,
}

/// Node-wide lifecycle counters, rewritten whole with every change.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MetaState {
    /// Height the next epoch header will have.
    pub next_epoch: u32,
    /// The newest closed epoch header.
    pub last_header: Option<SignedEpochHeader>,
    /// Unix seconds the open epoch opened.
    pub epoch_opened_at: u64,
    /// Receipts in the open epoch.
    pub open_receipts: u32,
    /// Accepted receipts in the open epoch.
    pub open_accepted: u32,
    /// Satoshis credited in the open epoch.
    pub open_reward: u64,
    /// Locked satoshis by epoch height and worker: released together when the epoch settles.
    /// Stored as rows of their own (SCHEMA.md), not in this record.
    #[serde(skip)]
    pub locked: BTreeMap<u32, BTreeMap<PubKey, u64>>,
    /// Newest epoch settled (anchored k deep, challenge window over).
    pub settled_epoch: Option<u32>,
    /// Satoshis forfeited by fraud, in all.
    pub forfeited: u64,
    /// Satoshis credited by receipts, in all (= sum of all receipt rewards).
    pub credited: u64,
    /// Next payout id.
    pub next_payout: u64,
    /// Newest Bitcoin block the node told us about (height, hash): audit randomness.
    pub chain_tip: Option<(u32, Hash32)>,
    /// Payouts were queued since the newest epoch closed. Payouts ride on the anchor of the
    /// next epoch, so an idle coordinator closes an epoch (even with no receipt) on its time
    /// cadence to pay them; the new state root commits the ledger that records them.
    #[serde(default)]
    pub payouts_waiting: bool,
    /// Running totals for dashboards (`/v1/stats`); not part of any root.
    #[serde(default)]
    pub counts: Counts,
}

/// Running totals of what the lifecycle did, kept with the counters so they survive restarts.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    /// Tasks accepted for work (canaries included: they must look like any other).
    pub submitted: u64,
    /// Tasks decided with an accepted result.
    pub decided: u64,
    /// Tasks that ended with no verdict.
    pub failed: u64,
    /// Receipts issued.
    pub receipts: u64,
}

mod opt_hex {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &Option<Vec<u8>>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(b) => s.serialize_some(&hex::encode(b)),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<u8>>, D::Error> {
        Option::<String>::deserialize(d)?
            .map(|s| hex::decode(s).map_err(serde::de::Error::custom))
            .transpose()
    }
}
