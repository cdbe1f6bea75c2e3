//! The lifecycle's persistent records: tasks with their assignments, workers with their
//! reputation, payouts, and the node-wide counters. Task records, one written for every
//! decided task, are stored in a compact binary encoding; the others as JSON (SCHEMA.md).
//!
//! Owns these shapes and nothing else. Must never carry a canary's answer into anything
//! that leaves the node (the API's task view is built elsewhere and leaves it out).

use std::collections::{BTreeMap, VecDeque};

use bitcoin::Txid;
use cairn_spec::codec::{Reader, Writer};
use cairn_spec::{
    Decode, DecodeError, Encode, Hash32, PubKey, Registration, Signed, SignedEpochHeader, Task, Verdict,
};
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
    /// A check slot: the audit replica or an escalation, drawn after the task's first reveals
    /// (not visible to the worker). A check that loses a vote is a mismatch, never fraud.
    pub audit: bool,
    /// The coordinator drew this worker for the slot and it has not claimed it yet:
    /// `lease_expires` is when the offer lapses (SPEC.md §12.1). Claiming turns the offer into
    /// a lease.
    pub offered: bool,
    /// Verdict, once decided.
    pub verdict: Option<Verdict>,
    /// Receipt id, once issued.
    pub receipt: Option<Hash32>,
    /// The epoch open when the worker was drawn: its seed and roster ranked the worker
    /// (SPEC.md §12.1); the receipt carries it.
    pub drawn_in: u32,
    /// The worker was light when drawn (SPEC.md §12.4): its result counts in a vote as a
    /// light key's, whatever its stake at the decision.
    pub light: bool,
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
    /// Slots, in the order they were drawn.
    pub assignments: Vec<Assignment>,
    /// Workers that let a slot of this task go (an offer lapsed, or a lease expired): drawn for
    /// it again only when no other worker is ready. The newest [`MAX_DECLINED`] are kept.
    pub declined: Vec<PubKey>,
}

/// Most workers a task remembers as having let an offer lapse.
pub const MAX_DECLINED: usize = 64;

/// Version byte of the `tasks` row encoding of a [`TaskRecord`] (SCHEMA.md).
const TASK_RECORD_VERSION: u8 = 3;
/// Most slots a stored task record may hold (replication, audit and escalation replicas are
/// far fewer; the bound only keeps a corrupt row from asking for a huge allocation).
const MAX_STORED_SLOTS: usize = 1024;

fn put_opt_hash(w: &mut Writer, h: &Option<Hash32>) {
    match h {
        None => w.u8(0),
        Some(h) => w.u8(1).raw(&h.0),
    };
}

fn get_opt_hash(r: &mut Reader<'_>, field: &'static str) -> Result<Option<Hash32>, DecodeError> {
    match r.u8(field)? {
        0 => Ok(None),
        1 => Ok(Some(Hash32(r.array(field)?))),
        tag => Err(DecodeError::InvalidTag { field, tag }),
    }
}

fn get_flag(r: &mut Reader<'_>, field: &'static str) -> Result<bool, DecodeError> {
    match r.u8(field)? {
        0 => Ok(false),
        1 => Ok(true),
        tag => Err(DecodeError::InvalidTag { field, tag }),
    }
}

fn get_key(r: &mut Reader<'_>, field: &'static str) -> Result<PubKey, DecodeError> {
    PubKey::from_bytes(r.array(field)?).ok_or(DecodeError::InvalidPublicKey { field })
}

/// The `tasks` row of a task record: a version byte, then the fields in declaration order
/// (the task in its canonical encoding). Binary, where the other records are JSON, because
/// one is written for every task decided: JSON was a quarter of the receipt signer's CPU in
/// the ingest benchmark.
impl Encode for TaskRecord {
    fn encode(&self, w: &mut Writer) {
        w.u8(TASK_RECORD_VERSION).raw(&self.id.0);
        self.task.encode(w);
        w.u64(self.accepted_at);
        match &self.canary {
            None => w.u8(0),
            Some(c) => w.u8(1).bytes_u32(c),
        };
        match &self.phase {
            Phase::Commit => w.u8(0),
            Phase::Reveal { deadline } => w.u8(1).u64(*deadline),
            Phase::Decided { result, at } => w.u8(2).raw(&result.0).u64(*at),
            Phase::Failed { reason, at } => w.u8(3).bytes_u32(reason.as_bytes()).u64(*at),
        };
        w.u8(self.wanted).u8(u8::from(self.audit_drawn)).u8(self.escalations);
        // At most MAX_DECLINED (the machine keeps it so).
        w.u8(self.declined.len().min(MAX_DECLINED) as u8);
        for k in self.declined.iter().take(MAX_DECLINED) {
            w.raw(k.as_bytes());
        }
        // Never more than MAX_STORED_SLOTS (the machine adds a handful per task).
        w.u32(self.assignments.len() as u32);
        for a in &self.assignments {
            w.raw(a.worker.as_bytes()).u64(a.lease_expires).u32(a.drawn_in);
            put_opt_hash(w, &a.commitment);
            put_opt_hash(w, &a.revealed);
            w.u8(u8::from(a.audit)).u8(u8::from(a.offered)).u8(u8::from(a.light));
            match a.verdict {
                None => w.u8(0),
                Some(v) => {
                    let (code, reason) = v.codes();
                    w.u8(1).u8(code).u8(reason)
                }
            };
            put_opt_hash(w, &a.receipt);
        }
    }
}

impl Decode for TaskRecord {
    const NAME: &'static str = "task record";

    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        cairn_spec::codec::expect_version(r, Self::NAME, TASK_RECORD_VERSION)?;
        let id = Hash32(r.array("id")?);
        let task = Task::decode(r)?;
        let accepted_at = r.u64("accepted_at")?;
        let canary = match r.u8("canary")? {
            0 => None,
            1 => Some(r.bytes_u32("canary", cairn_spec::codec::MAX_OBJECT_BYTES)?.to_vec()),
            tag => return Err(DecodeError::InvalidTag { field: "canary", tag }),
        };
        let phase = match r.u8("phase")? {
            0 => Phase::Commit,
            1 => Phase::Reveal { deadline: r.u64("deadline")? },
            2 => Phase::Decided { result: Hash32(r.array("result")?), at: r.u64("at")? },
            3 => {
                let reason = r.bytes_u32("reason", cairn_spec::codec::MAX_OBJECT_BYTES)?;
                let reason = String::from_utf8(reason.to_vec())
                    .map_err(|_| DecodeError::InvalidValue { field: "reason", reason: "not UTF-8" })?;
                Phase::Failed { reason, at: r.u64("at")? }
            }
            tag => return Err(DecodeError::InvalidTag { field: "phase", tag }),
        };
        let wanted = r.u8("wanted")?;
        let audit_drawn = get_flag(r, "audit_drawn")?;
        let escalations = r.u8("escalations")?;
        let declined_len = usize::from(r.u8("declined")?);
        let n = r.count("declined", declined_len, MAX_DECLINED, 32)?;
        let mut declined = Vec::with_capacity(n);
        for _ in 0..n {
            declined.push(get_key(r, "declined")?);
        }
        let len = r.u32("assignments")? as usize;
        // A slot is at least 32 + 8 + 4 + 7 bytes.
        let n = r.count("assignments", len, MAX_STORED_SLOTS, 51)?;
        let mut assignments = Vec::with_capacity(n);
        for _ in 0..n {
            let worker = get_key(r, "worker")?;
            let lease_expires = r.u64("lease_expires")?;
            let drawn_in = r.u32("drawn_in")?;
            let commitment = get_opt_hash(r, "commitment")?;
            let revealed = get_opt_hash(r, "revealed")?;
            let audit = get_flag(r, "audit")?;
            let offered = get_flag(r, "offered")?;
            let light = get_flag(r, "light")?;
            let verdict = match r.u8("verdict")? {
                0 => None,
                1 => {
                    let (code, reason) = (r.u8("verdict")?, r.u8("verdict")?);
                    Some(Verdict::from_codes(code, reason).ok_or(DecodeError::InvalidValue {
                        field: "verdict",
                        reason: "unknown verdict code",
                    })?)
                }
                tag => return Err(DecodeError::InvalidTag { field: "verdict", tag }),
            };
            let receipt = get_opt_hash(r, "receipt")?;
            assignments.push(Assignment {
                worker,
                lease_expires,
                commitment,
                revealed,
                audit,
                offered,
                verdict,
                receipt,
                drawn_in,
                light,
            });
        }
        Ok(TaskRecord {
            id,
            task,
            accepted_at,
            canary,
            phase,
            wanted,
            audit_drawn,
            escalations,
            assignments,
            declined,
        })
    }
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
    /// Misses not yet worked off: a lease let expire without a commitment, or a commitment
    /// never revealed. Each accepted result takes one off; reaching `max_misses` is a ban.
    #[serde(default)]
    pub misses: u32,
    /// When its newest counted miss happened (unix seconds): later misses within the window
    /// (`miss_window_secs` for a worker with credit locked, else the same second) count as
    /// one with it.
    #[serde(default)]
    pub last_miss: u64,
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
    /// The open epoch's beacon, once its block is final (SPEC.md §12.1): the epoch is armed,
    /// its draws use its own seed and roster, and it may close.
    #[serde(default)]
    pub beacon: Option<cairn_spec::Beacon>,
    /// The anchor key and genesis output every header commits (SPEC.md §7.1), once the
    /// anchor side chose them; with Bitcoin, no header is signed before.
    #[serde(default)]
    pub anchor: Option<cairn_spec::AnchorBinding>,
    /// The Merkle frontier over every closed header's hash: the next header's `history`
    /// is its root (SPEC.md §5.9).
    #[serde(default)]
    pub history: cairn_spec::merkle::Frontier,
    /// Running totals for dashboards (`/v1/stats`); not part of any root.
    #[serde(default)]
    pub counts: Counts,
    /// Canaries of the configured pool used so far (each is used once, in pool order).
    #[serde(default)]
    pub canaries_used: u64,
    /// Canaries made due and not released yet (at most 64): when (unix seconds), and the
    /// requester and budget of the request that made each due, which it copies.
    #[serde(default)]
    pub canary_due: Vec<(u64, PubKey, u64)>,
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

#[cfg(test)]
mod tests {
    use super::*;
    use cairn_spec::{Network, Object, Payload, SigningKey};

    fn key(n: u8) -> PubKey {
        SigningKey::from_secret_bytes([n; 32]).expect("key").public()
    }

    fn record(phase: Phase, canary: Option<Vec<u8>>, assignments: Vec<Assignment>) -> TaskRecord {
        let task = Task {
            network: Network::Regtest,
            coordinator: key(1),
            class: Hash32([2; 32]),
            requester: key(3),
            nonce: 7,
            units: 2,
            budget_sats: 1000,
            created_at: 1_700_000_000,
            input: Payload::Inline(b"hello".to_vec()),
        };
        TaskRecord {
            id: task.id(),
            task,
            accepted_at: 1_700_000_001,
            canary,
            phase,
            wanted: 3,
            audit_drawn: true,
            escalations: 1,
            assignments,
            declined: vec![key(40), key(41)],
        }
    }

    fn slot(n: u8, full: bool) -> Assignment {
        Assignment {
            worker: key(10 + n),
            lease_expires: 1_700_000_100 + u64::from(n),
            commitment: full.then_some(Hash32([n; 32])),
            revealed: full.then_some(Hash32([n + 1; 32])),
            audit: full,
            offered: !full,
            verdict: full.then_some(Verdict::ALL[usize::from(n) % Verdict::ALL.len()]),
            receipt: full.then_some(Hash32([n + 2; 32])),
            drawn_in: u32::from(n) * 7,
            light: n % 2 == 1,
        }
    }

    fn samples() -> Vec<TaskRecord> {
        let slots: Vec<Assignment> = (0..Verdict::ALL.len() as u8).map(|n| slot(n, true)).collect();
        vec![
            record(Phase::Commit, None, vec![]),
            record(Phase::Reveal { deadline: 5 }, Some(vec![1, 2, 3]), vec![slot(0, false), slot(1, true)]),
            record(Phase::Decided { result: Hash32([9; 32]), at: 6 }, None, slots.clone()),
            record(
                Phase::Failed { reason: "no majority after 5 replicas ✓".into(), at: 7 },
                Some(vec![]),
                slots,
            ),
        ]
    }

    #[test]
    fn task_records_round_trip_in_every_shape() {
        for r in samples() {
            let bytes = r.to_bytes();
            assert_eq!(TaskRecord::from_bytes(&bytes).expect("decodes"), r);
        }
    }

    #[test]
    fn corrupt_task_records_are_refused_not_panicked() {
        for r in samples() {
            let bytes = r.to_bytes();
            // Every truncation, and trailing bytes, is an error.
            for cut in 0..bytes.len() {
                assert!(TaskRecord::from_bytes(bytes.get(..cut).expect("prefix")).is_err(), "cut at {cut}");
            }
            let mut long = bytes.clone();
            long.push(0);
            assert!(TaskRecord::from_bytes(&long).is_err());
            // Every single-byte change decodes to an error or to a different record, never a
            // panic.
            for i in 0..bytes.len() {
                let mut b = bytes.clone();
                if let Some(x) = b.get_mut(i) {
                    *x ^= 0xff;
                }
                if let Ok(other) = TaskRecord::from_bytes(&b) {
                    assert_ne!(other, r, "byte {i} changed nothing");
                }
            }
        }
        let mut bad = samples().remove(0).to_bytes();
        bad[0] = TASK_RECORD_VERSION - 1;
        assert!(matches!(TaskRecord::from_bytes(&bad), Err(DecodeError::UnknownVersion { .. })));
        // A slot count beyond the bound is refused before anything is allocated for it.
        let r = samples().remove(0);
        let mut b = r.to_bytes();
        let at = b.len() - 4;
        b.splice(at.., (MAX_STORED_SLOTS as u32 + 1).to_be_bytes());
        assert!(matches!(TaskRecord::from_bytes(&b), Err(DecodeError::TooLong { .. })));
    }
}
