//! The task lifecycle as a deterministic state machine: tasks, registrations, claims,
//! commitments and reveals go in (each with the time as an argument); changes to persist and
//! effects to perform come out. Verification, the ledger and epochs live in one machine because
//! they change the same state in the same step; each concern has its own file of `impl
//! Machine`: `submit` (tasks in), `admission` (who may work), `assign` (slots drawn among
//! ready workers, offers), `work` (claims, commitments, reveals), `decide` (phases, the audit
//! draw, verdicts, escalation), `penalty` (misses, forfeits, bans), `epochs` (ticks, epochs,
//! settlement, payouts), `group` (group commit), `scoring` (validators, score sheets and the
//! rounds of scored classes); this file holds the types and the state.
//! SPEC.md §12 states the rules.
//!
//! Owns every decision about work and money. Must never do I/O, read a clock or use an
//! outside source of randomness: the time comes with each event, and every draw is a hash of
//! the coordinator's secret seed and the event's data. The node's driver persists each `Step`
//! atomically before it acts on the step's effects or answers the request that caused it.

mod admission;
mod assign;
mod decide;
mod epochs;
mod group;
pub mod judge;
mod penalty;
mod recent;
pub mod records;
mod scoring;
mod submit;
mod work;

use std::collections::{BTreeMap, BTreeSet, HashMap};

use cairn_spec::hash::sha256;
use cairn_spec::{draw, merkle};
use cairn_spec::{
    AnchorBinding, AnchorPayload, Beacon, Bond, Claim, Commitment, EpochHeader, ErrorReason, Hash32,
    LedgerEntry, Network, Object, Payload, PubKey, Registration, ResponseBody, Reveal, Roster, Signed,
    SignedEpochHeader, SignedReceipt, Signer, SigningKey, Task, TaskAnnouncement, TaskClass, Verdict,
    WorkReceipt,
};
use thiserror::Error;

pub use epochs::draw_seed_of;
pub use group::ReceiptSigner;
pub use scoring::{ScoreKey, ValidatorRecord};
pub use submit::{Canary, TaskRequest};

use judge::{agree, judge, well_formed, Judgement};
use recent::Recent;
/// Submissions (and finished tasks) the machine remembers; older ones are found on disk.
pub const RECENT_SUBMISSIONS: usize = recent::RECENT;
pub use records::{
    Assignment, Ban, Counts, MetaState, PayoutRecord, PayoutStatus, Phase, Rejection, TaskRecord,
    WorkerRecord,
};

/// Operator settings of the lifecycle: the network, the classes and the tunables.
#[derive(Clone, Debug)]
pub struct LifecycleConfig {
    /// Network of the chain.
    pub network: Network,
    /// Task classes offered.
    pub classes: Vec<TaskClass>,
    /// Admission, verification, epoch and payout settings (the `[lifecycle]` config section).
    pub tunables: Tunables,
    /// Canaries the operator configured, mixed in among requested tasks, each used once.
    pub canaries: Vec<Canary>,
    /// On average one canary per this many accepted requests (0: never).
    pub canary_every: u64,
    /// The node anchors its epochs in Bitcoin: headers commit the anchor binding (the first
    /// waits for it, SPEC.md §7.1), and draws mix in Bitcoin beacons (an epoch closes only
    /// once armed with its beacon, SPEC.md §12.1). Off for a node without Bitcoin.
    pub beacons: bool,
    /// Finished tasks and accepted submissions the machine remembers (the newest); older ones
    /// are on disk, where the core looks first. Bounds the machine's memory.
    pub recent: usize,
}

/// The lifecycle's tunable settings, read as they are from the `[lifecycle]` section of the
/// node's config (missing keys keep these defaults).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Tunables {
    /// Leading zero bits a registration id must have.
    pub pow_difficulty: u32,
    /// Floor of the audit probability, in parts per million (BOINC's p_min).
    pub audit_min_ppm: u32,
    /// The audit probability is at least `audit_stake_factor · r / (r + L)`, r the slot's reward
    /// and L the least locked credit among its workers, so that with a coalition below 30 %
    /// of the ready keys a lie never pays (SPEC.md §12.4); 0 turns this off.
    pub audit_stake_factor: u32,
    /// Extra replicas a disagreement may add before the task fails.
    pub max_escalations: u8,
    /// Uncommitted leases one worker may hold at once.
    pub max_leases_per_worker: u32,
    /// Largest difference allowed between a signed timestamp and the node's clock.
    pub clock_skew_secs: u64,
    /// Close an epoch once it holds this many receipts.
    pub epoch_max_receipts: u32,
    /// Close a non-empty epoch once it has been open this long.
    pub epoch_interval_secs: u64,
    /// Pay a worker once its claimable balance reaches this.
    pub payout_threshold_sats: u64,
    /// Smallest bond admitted instead of proof-of-work (0: bonds not accepted).
    pub bond_min_sats: u64,
    /// Assignments a worker may miss in a row (a lease let expire, a commitment never
    /// revealed) before it is banned.
    pub max_misses: u32,
    /// For a worker with credit locked, misses within this many seconds of the last counted
    /// one are one outage and count once (each still costs its slot): an honest worker whose
    /// machine stalls for a few minutes while holding several leases is not banned for it. A
    /// key with nothing locked, which a miss costs nothing, has every second's misses counted.
    pub miss_window_secs: u64,
    /// How long a worker drawn for a slot has to claim it before the slot is drawn again.
    pub offer_secs: u64,
    /// How long after its last claim on a class a worker counts as ready to be drawn for
    /// that class's slots.
    pub live_secs: u64,
    /// A due canary is released at a random time up to this long after the request that made
    /// it due.
    pub canary_spread_secs: u64,
    /// A task holds at most one key whose locked credit plus admission value is below
    /// `slot_stake_ppm · r / 10^6` (r the slot's reward), unless no other worker is ready
    /// (SPEC.md §12.4); 0 turns this off.
    pub slot_stake_ppm: u32,
    /// What the operator holds one proof-of-work registration at `pow_difficulty` to cost, in
    /// satoshis: the admission value of a key admitted by work. A bond counts nothing (it is
    /// not forfeitable).
    pub pow_value_sats: u64,
    /// Smallest bond (its output's value is the stake) a validator of scored classes is
    /// admitted with.
    pub validator_stake_min_sats: u64,
    /// With scored classes, an epoch stays open at least this long before its receipt count
    /// may close it: the commit and reveal windows are epochs (SPEC.md §13.4), and tasks
    /// anyone submits must not be able to close one before honest validators are heard.
    pub score_window_secs: u64,
    /// A scored class's round pays only when the sheets it counts hold at least this much
    /// stake together (satoshis); below it the epoch's budget is not spent, so one validator
    /// at the minimum bond and a worker of its own cannot take a whole budget nobody else
    /// validates (SPEC.md §13.6). 0: any counted sheet will do.
    pub round_min_stake_sats: u64,
}

impl Default for Tunables {
    fn default() -> Self {
        Tunables {
            pow_difficulty: 16,
            audit_min_ppm: 50_000,
            audit_stake_factor: 3,
            max_escalations: 3,
            max_leases_per_worker: 16,
            clock_skew_secs: 600,
            epoch_max_receipts: 10_000,
            epoch_interval_secs: 600,
            payout_threshold_sats: 10_000,
            bond_min_sats: 0,
            max_misses: 3,
            miss_window_secs: 300,
            offer_secs: 10,
            live_secs: 120,
            canary_spread_secs: 60,
            slot_stake_ppm: 1_400_000,
            pow_value_sats: 0,
            validator_stake_min_sats: 10_000,
            score_window_secs: 60,
            round_min_stake_sats: 0,
        }
    }
}

impl LifecycleConfig {
    /// Defaults for `network` with the given classes.
    pub fn new(network: Network, classes: Vec<TaskClass>) -> Self {
        LifecycleConfig {
            network,
            classes,
            tunables: Tunables::default(),
            canaries: Vec::new(),
            canary_every: 0,
            beacons: false,
            recent: RECENT_SUBMISSIONS,
        }
    }
}

/// Why a message was refused. A refusal never changes persisted state (a refused claim may
/// make its worker ready to be drawn: soft state, SPEC.md §12.1). A refusal the worker must
/// react to in its own way has its own variant (its wire [`ErrorReason`]); the text is for
/// people.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Refusal {
    /// The signature does not verify.
    #[error("signature does not verify")]
    BadSignature,
    /// Malformed or out of bounds.
    #[error("{0}")]
    Invalid(String),
    /// The worker has not registered.
    #[error("worker is not registered")]
    NotRegistered,
    /// The worker is banned.
    #[error("worker is banned: {0}")]
    Banned(String),
    /// Unknown object.
    #[error("unknown {0}")]
    NotFound(&'static str),
    /// Conflicts with the recorded state.
    #[error("{0}")]
    Conflict(String),
    /// The task is already decided.
    #[error("task already decided")]
    AlreadyDecided,
    /// A commitment after the worker's lease ran out: nothing of the worker's is held (the
    /// lapse is a miss, SPEC.md §12.3).
    #[error("lease expired")]
    LeaseExpired,
    /// A reveal with no commitment from this worker recorded.
    #[error("no commitment from this worker")]
    NoCommitment,
    /// Valid, but not yet: retry later.
    #[error("{0}")]
    TooEarly(String),
    /// A per-worker limit is reached.
    #[error("{0}")]
    Limit(String),
    /// The worker's admission ended (its bond is gone): it must register again.
    #[error("worker's admission ended: {0}; register again")]
    Lapsed(String),
    /// The node cannot serve: its storage failed, or it has no randomness to draw.
    #[error("{0}")]
    Unavailable(&'static str),
}

impl Refusal {
    /// Whether the refusal says its sender is no worker this node works with: a key it does
    /// not know or has banned, or a signature that fails. Such a request costs its sender a
    /// second of its request rate (SPEC.md §11.5), so a flood of them is refused by the
    /// network layer before any of its signatures is checked.
    pub fn from_a_stranger(&self) -> bool {
        matches!(self, Refusal::BadSignature | Refusal::NotRegistered | Refusal::Banned(_))
    }

    /// The reason sent on the wire.
    pub fn reason(&self) -> ErrorReason {
        match self {
            Refusal::BadSignature => ErrorReason::BadSignature,
            Refusal::Invalid(_) => ErrorReason::Malformed,
            Refusal::NotRegistered => ErrorReason::NotRegistered,
            Refusal::Banned(_) => ErrorReason::Banned,
            Refusal::NotFound(_) => ErrorReason::NotFound,
            Refusal::Conflict(_) => ErrorReason::Conflict,
            Refusal::AlreadyDecided => ErrorReason::AlreadyDecided,
            Refusal::LeaseExpired => ErrorReason::LeaseExpired,
            Refusal::NoCommitment => ErrorReason::NoCommitment,
            Refusal::TooEarly(_) => ErrorReason::TooEarly,
            Refusal::Limit(_) => ErrorReason::WorkerLimit,
            Refusal::Lapsed(_) => ErrorReason::Lapsed,
            Refusal::Unavailable(_) => ErrorReason::Internal,
        }
    }

    /// The HTTP-like status code (the HTTP API's status), the reason's.
    pub fn code(&self) -> u16 {
        self.reason().code()
    }

    /// The refusal as a wire answer: its reason, and its text for people.
    pub fn to_response(&self) -> ResponseBody {
        ResponseBody::error(self.reason(), self.to_string())
    }
}

fn invalid(s: impl Into<String>) -> Refusal {
    Refusal::Invalid(s.into())
}

/// A signed object whose signature was checked. Checking is the expensive part of ingest,
/// so the node may do it on several threads before the single-threaded machine runs.
#[derive(Clone, Debug)]
pub struct Verified<T>(Signed<T>);

impl<T: Object + Signer> Verified<T> {
    /// Checks the signature.
    pub fn check(s: Signed<T>) -> Result<Self, Refusal> {
        if s.verify() {
            Ok(Verified(s))
        } else {
            Err(Refusal::BadSignature)
        }
    }

    /// The signed object.
    pub fn get(&self) -> &Signed<T> {
        &self.0
    }
}

/// A change to persist; the driver maps each onto table rows (SCHEMA.md).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    /// A task record (open or final).
    Task(Box<TaskRecord>),
    /// A worker's signed commitment.
    Commitment(Box<Signed<Commitment>>),
    /// A worker's signed reveal that opened its commitment.
    Reveal(Box<Signed<Reveal>>),
    /// A receipt at its position in its epoch.
    Receipt {
        /// Position in the epoch's receipts tree.
        index: u32,
        /// The receipt's id (its leaf), hashed once when the receipt is issued.
        id: Hash32,
        /// The receipt.
        receipt: Box<SignedReceipt>,
    },
    /// A receipt issued in a group commit, not signed yet: the driver seals the group's
    /// receipts as one batch and replaces each with a [`Change::Receipt`] before anything is
    /// persisted (the store refuses an unsealed one).
    UnsealedReceipt {
        /// Position in the epoch's receipts tree.
        index: u32,
        /// The receipt's id (its leaf).
        id: Hash32,
        /// The receipt's body.
        body: Box<WorkReceipt>,
    },
    /// A worker record.
    Worker(Box<WorkerRecord>),
    /// A ledger entry.
    Ledger(LedgerEntry),
    /// Satoshis of `worker` locked until epoch `epoch` settles (0 deletes the row).
    Lock {
        /// Epoch height.
        epoch: u32,
        /// Worker.
        worker: PubKey,
        /// Amount.
        amount: u64,
    },
    /// A payout.
    Payout(PayoutRecord),
    /// A closed epoch with the ledger its state root commits to.
    Epoch {
        /// The signed header.
        header: Box<SignedEpochHeader>,
        /// Ledger entries in worker-key order.
        ledger: Vec<LedgerEntry>,
        /// The roster the next epoch's draws rank (the header commits to its root); `None`
        /// where a follower mirrors an epoch without it.
        roster: Option<Box<Roster>>,
    },
    /// The node-wide counters.
    Meta(Box<MetaState>),
    /// A task was accepted: its idempotency row, (requester, nonce) → task id.
    Accepted {
        /// The requester.
        requester: PubKey,
        /// The submission's nonce.
        nonce: u64,
        /// The task.
        task: Hash32,
    },
    /// A task input kept as a content-addressed blob.
    Blob {
        /// Its content hash.
        hash: Hash32,
        /// Its bytes.
        bytes: Vec<u8>,
    },
    /// A validator's record.
    Validator(Box<ValidatorRecord>),
    /// A validator's first commit of a sheet (SPEC.md §13.4).
    ScoreCommit(Box<Signed<cairn_spec::ScoreCommit>>),
    /// A validator's reveal that opened its commit.
    ScoreReveal(Box<Signed<cairn_spec::ScoreReveal>>),
    /// A worker's verified units of a scored class in an epoch, so far.
    Units {
        /// The epoch.
        epoch: u32,
        /// The class.
        class: Hash32,
        /// The worker.
        worker: PubKey,
        /// Its units so far.
        units: u64,
    },
    /// A scored round, credited by the header at `height` (SPEC.md §13.6).
    Round {
        /// The crediting header's height.
        height: u32,
        /// The round.
        round: Box<cairn_spec::ScoredRound>,
    },
    /// A scored epoch's commit, reveal and units rows of `key` (a validator's or a
    /// worker's) in `class`, dropped once its round holds them.
    ScoresDropped {
        /// The scored epoch.
        epoch: u32,
        /// The class.
        class: Hash32,
        /// The key.
        key: PubKey,
    },
}

/// Something the node must do after the step is persisted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Effect {
    /// Gossip a task announcement.
    Announce(Box<Signed<TaskAnnouncement>>),
    /// Send the announcement to each worker holding an offer on its task, to it alone
    /// (SPEC.md §12.1): it hears of its offer in one hop.
    Offer {
        /// The task's announcement (the same one gossiped).
        announcement: Box<Signed<TaskAnnouncement>>,
        /// The workers holding an offer on the task.
        to: Vec<PubKey>,
    },
    /// Gossip a receipt.
    Receipt(Box<SignedReceipt>),
    /// Gossip a receipt once sealed: the driver replaces it with [`Effect::Receipt`] when it
    /// seals the group (a group commit's receipts are signed as one batch).
    UnsealedReceipt(Box<WorkReceipt>),
    /// Gossip an epoch header.
    Epoch(Box<SignedEpochHeader>),
    /// Hand an epoch to the anchor.
    Anchor(AnchorPayload),
    /// Hand payouts to the anchor queue.
    Payouts(Vec<PayoutRecord>),
    /// The task's reveal window opened (every slot holds a commitment): reveals that came
    /// early may be tried again now.
    RevealsOpen(Hash32),
}

/// What one event did: persist `changes` atomically (durably when `sync`), then perform
/// `effects` in order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Step {
    /// Rows to write.
    pub changes: Vec<Change>,
    /// Actions after the write.
    pub effects: Vec<Effect>,
    /// Whether the write must be durable before anything is answered.
    pub sync: bool,
}

impl Step {
    /// True when nothing changed.
    pub fn is_empty(&self) -> bool {
        self.changes.is_empty() && self.effects.is_empty()
    }

    /// Appends another step.
    pub fn extend(&mut self, other: Step) {
        self.changes.extend(other.changes);
        self.effects.extend(other.effects);
        self.sync |= other.sync;
    }
}

/// Everything the machine needs to resume, as loaded from the store.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    /// Tasks not yet final.
    pub open_tasks: Vec<TaskRecord>,
    /// Reveals of open tasks.
    pub reveals: Vec<Signed<Reveal>>,
    /// Workers.
    pub workers: Vec<WorkerRecord>,
    /// Ledger entries.
    pub ledger: Vec<LedgerEntry>,
    /// Payouts not yet confirmed.
    pub queued_payouts: Vec<PayoutRecord>,
    /// Counters.
    pub meta: MetaState,
    /// Locked amounts by epoch and worker.
    pub locks: Vec<(u32, PubKey, u64)>,
    /// The open epoch's receipts so far, as the frontier of their Merkle tree (ids in index
    /// order): its root is the receipts root, in O(log n) memory.
    pub open_leaves: merkle::Frontier,
    /// The roster the open epoch's draws rank (none before the first header).
    pub roster: Option<Roster>,
    /// The roster the epoch before ranked (its draws go on while the open epoch waits for
    /// its beacon).
    pub prev_roster: Option<Roster>,
    /// Registered validators.
    pub validators: Vec<ValidatorRecord>,
    /// Score commits of epochs not yet rounded.
    pub score_commits: Vec<Signed<cairn_spec::ScoreCommit>>,
    /// Score reveals of epochs not yet rounded.
    pub score_reveals: Vec<Signed<cairn_spec::ScoreReveal>>,
    /// Verified units of scored classes not yet rounded: (epoch, class, worker, units).
    pub units: Vec<(u32, Hash32, PubKey, u64)>,
}

/// A snapshot that does not add up.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[error("stored lifecycle state is inconsistent: {0}")]
pub struct RestoreError(pub String);

/// The lifecycle state machine.
pub struct Machine {
    cfg: LifecycleConfig,
    classes: BTreeMap<Hash32, TaskClass>,
    key: SigningKey,
    me: PubKey,
    seed: [u8; 32],
    open: BTreeMap<Hash32, TaskRecord>,
    results: HashMap<(Hash32, PubKey), Vec<u8>>,
    /// Tasks that reached a final phase lately (older ones are only on disk).
    finished: Recent<Hash32, ()>,
    workers: BTreeMap<PubKey, WorkerRecord>,
    ledger: BTreeMap<PubKey, LedgerEntry>,
    queued_payouts: BTreeMap<u64, PayoutRecord>,
    meta: MetaState,
    open_leaves: merkle::Frontier,
    leases: HashMap<PubKey, u32>,
    group_commit: bool,
    /// Rows a group commit changed, written once with their final value when it ends.
    group_rows: GroupRows,
    /// Submissions accepted lately, by (requester, nonce); older ones are only on disk, where
    /// the driver looks first ([`Machine::submission_key`]).
    nonces: Recent<(PubKey, u64), Hash32>,
    /// `announced_at` of each open task's newest announcement (not persisted: after a restart
    /// the periodic re-announcement starts over).
    announced: HashMap<Hash32, u64>,
    /// Registered workers by standing, kept as records change (counted again at restore).
    standings: Standings,
    /// When each worker last claimed a task of each class, by class then worker: who is ready
    /// to be drawn (not persisted: after a restart workers are drawn again once they claim).
    seen: BTreeMap<Hash32, BTreeMap<PubKey, u64>>,
    /// Workers that let offers lapse: lapses in a row, and until when they are not ready (not
    /// persisted, like readiness).
    cooldown: HashMap<PubKey, (u32, u64)>,
    /// The roster the open epoch's draws rank: the workers admitted when the newest header
    /// was signed, which commits to it (empty before the first header).
    roster: Roster,
    /// The roster of the epoch before (empty before the second header).
    prev_roster: Roster,
    /// Validators, and the sheets and units of scored epochs not yet rounded.
    scoring: scoring::Scoring,
}

/// Where a registered worker stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Standing {
    /// Admitted and in good standing.
    Active,
    /// Banned for fraud.
    Banned,
    /// Its bond is gone; it may register again.
    Lapsed,
}

impl Standing {
    /// The standing of `w` (a ban outranks a lapse).
    pub fn of(w: &WorkerRecord) -> Self {
        match (&w.banned, &w.bond_lost) {
            (Some(_), _) => Standing::Banned,
            (None, Some(_)) => Standing::Lapsed,
            (None, None) => Standing::Active,
        }
    }
}

/// How many registered workers are banned and lapsed (the rest are active).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Standings {
    banned: u64,
    lapsed: u64,
}

impl Standings {
    /// A worker moved from `before` (`None`: newly registered) to `after`.
    fn moved(&mut self, before: Option<Standing>, after: Standing) {
        match before {
            Some(Standing::Banned) => self.banned = self.banned.saturating_sub(1),
            Some(Standing::Lapsed) => self.lapsed = self.lapsed.saturating_sub(1),
            Some(Standing::Active) | None => {}
        }
        match after {
            Standing::Banned => self.banned += 1,
            Standing::Lapsed => self.lapsed += 1,
            Standing::Active => {}
        }
    }
}

/// The worker, ledger and lock rows touched during a group commit: a burst of reveals from
/// one worker would otherwise copy its record (with its kept rejections) once per receipt
/// only for all but the last copy to be superseded.
#[derive(Default)]
struct GroupRows {
    workers: BTreeSet<PubKey>,
    ledger: BTreeSet<PubKey>,
    locks: BTreeSet<(u32, PubKey)>,
}

/// The coordinator's secret for draws workers must not predict, derived from its key.
fn secret_seed(key: &SigningKey) -> [u8; 32] {
    let mut pre = b"cairn/audit-seed".to_vec();
    pre.extend_from_slice(&key.secret_bytes());
    sha256(&pre).0
}

/// Outcome of one slot when a task is decided.
struct SlotVerdict {
    verdict: Option<Verdict>,
    fraud: bool,
    /// A check slot that lost a clear vote: it forfeits what the slot pays (not a ban).
    fine: bool,
    reason: String,
}

impl Machine {
    /// A fresh machine. `key` signs announcements, receipts and epoch headers; the audit
    /// draws are keyed by a secret derived from it so workers cannot predict them.
    pub fn new(cfg: LifecycleConfig, key: SigningKey, now: u64) -> Self {
        let meta = MetaState { epoch_opened_at: now, ..MetaState::default() };
        Self::build(cfg, key, meta)
    }

    fn build(cfg: LifecycleConfig, key: SigningKey, meta: MetaState) -> Self {
        let classes = cfg.classes.iter().map(|c| (c.id(), c.clone())).collect();
        let recent = cfg.recent;
        let seed = secret_seed(&key);
        let me = key.public();
        Machine {
            cfg,
            classes,
            key,
            me,
            seed,
            open: BTreeMap::new(),
            results: HashMap::new(),
            finished: Recent::new(recent),
            workers: BTreeMap::new(),
            ledger: BTreeMap::new(),
            queued_payouts: BTreeMap::new(),
            meta,
            open_leaves: merkle::Frontier::new(),
            leases: HashMap::new(),
            group_commit: false,
            group_rows: GroupRows::default(),
            nonces: Recent::new(recent),
            announced: HashMap::new(),
            standings: Standings::default(),
            seen: BTreeMap::new(),
            cooldown: HashMap::new(),
            roster: Roster::default(),
            prev_roster: Roster::default(),
            scoring: scoring::Scoring::default(),
        }
    }

    /// Resumes from a snapshot.
    pub fn restore(cfg: LifecycleConfig, key: SigningKey, mut snap: Snapshot) -> Result<Self, RestoreError> {
        let scoring = scoring::Scoring::restore(&mut snap);
        let mut m = Self::build(cfg, key, snap.meta);
        m.scoring = scoring;
        m.roster = snap.roster.unwrap_or_default();
        m.prev_roster = snap.prev_roster.unwrap_or_default();
        let committed = m.meta.last_header.as_ref().map(|h| h.body.next_roster);
        if committed.is_some_and(|root| root != m.roster.root()) {
            return Err(RestoreError("the stored roster is not the one the newest header commits to".into()));
        }
        m.open_leaves = snap.open_leaves;
        if m.open_leaves.len() != u64::from(m.meta.open_receipts) {
            return Err(RestoreError(format!(
                "open epoch has {} receipts stored but the counters say {}",
                m.open_leaves.len(),
                m.meta.open_receipts
            )));
        }
        for t in snap.open_tasks {
            for a in &t.assignments {
                // Offers count with leases: both are slots held without a commitment.
                if a.commitment.is_none() {
                    *m.leases.entry(a.worker).or_default() += 1;
                }
            }
            m.open.insert(t.id, t);
        }
        for r in snap.reveals {
            if let Payload::Inline(bytes) = r.body.result {
                m.results.insert((r.body.task, r.body.worker), bytes);
            }
        }
        m.workers = snap.workers.into_iter().map(|w| (w.key(), w)).collect();
        for w in m.workers.values() {
            m.standings.moved(None, Standing::of(w));
        }
        m.ledger = snap.ledger.into_iter().map(|e| (e.worker, e)).collect();
        m.queued_payouts = snap.queued_payouts.into_iter().map(|p| (p.id, p)).collect();
        m.meta.locked.clear();
        for (epoch, worker, amount) in snap.locks {
            m.meta.locked.entry(epoch).or_default().insert(worker, amount);
        }
        m.check_invariants().map_err(RestoreError)?;
        Ok(m)
    }

    /// The coordinator's key.
    pub fn coordinator(&self) -> PubKey {
        self.me
    }

    /// The configuration.
    pub fn config(&self) -> &LifecycleConfig {
        &self.cfg
    }

    /// The classes by id.
    pub fn classes(&self) -> &BTreeMap<Hash32, TaskClass> {
        &self.classes
    }

    /// Registered workers by standing: (active, banned, lapsed), without walking them.
    pub fn worker_standings(&self) -> (u64, u64, u64) {
        let s = self.standings;
        let all = self.workers.len() as u64;
        (all.saturating_sub(s.banned).saturating_sub(s.lapsed), s.banned, s.lapsed)
    }

    /// Every ledger entry (one per worker credited at least once).
    pub fn balances(&self) -> impl Iterator<Item = &LedgerEntry> {
        self.ledger.values()
    }

    /// An open task.
    pub fn open_task(&self, id: &Hash32) -> Option<&TaskRecord> {
        self.open.get(id)
    }

    /// Open tasks in id order.
    pub fn open_tasks(&self) -> impl Iterator<Item = &TaskRecord> {
        self.open.values()
    }

    /// Fresh signed announcements of up to `max` tasks that still have slots nobody has taken
    /// (free, or offered to a drawn worker that may have missed the announcement).
    pub fn open_announcements(&self, now: u64, max: usize) -> Vec<Signed<TaskAnnouncement>> {
        self.open
            .values()
            .filter(|t| {
                t.phase == Phase::Commit
                    && t.assignments
                        .iter()
                        .filter(|a| a.commitment.is_some() || (!a.offered && a.lease_expires > now))
                        .count()
                        < usize::from(t.wanted)
            })
            .take(max)
            .map(|t| self.sign(TaskAnnouncement { task: t.task.clone(), announced_at: now }))
            .collect()
    }

    /// A worker.
    pub fn worker(&self, key: &PubKey) -> Option<&WorkerRecord> {
        self.workers.get(key)
    }

    /// All workers.
    pub fn workers(&self) -> impl Iterator<Item = &WorkerRecord> {
        self.workers.values()
    }

    /// A ledger entry.
    pub fn balance(&self, key: &PubKey) -> Option<&LedgerEntry> {
        self.ledger.get(key)
    }

    /// The counters.
    pub fn meta(&self) -> &MetaState {
        &self.meta
    }

    /// Payouts handed to the anchor and not yet confirmed.
    pub fn queued_payouts(&self) -> impl Iterator<Item = &PayoutRecord> {
        self.queued_payouts.values()
    }

    /// Checks the money invariants: every satoshi credited is locked, claimable, paid or
    /// forfeited, exactly once; each locked column equals the worker's locked buckets.
    pub fn check_invariants(&self) -> Result<(), String> {
        let mut recount = Standings::default();
        for w in self.workers.values() {
            recount.moved(None, Standing::of(w));
        }
        if recount != self.standings {
            return Err(format!("standings kept as {:?}, counted as {recount:?}", self.standings));
        }
        let mut held: u128 = 0;
        for e in self.ledger.values() {
            held += u128::from(e.locked) + u128::from(e.claimable) + u128::from(e.paid);
            let bucketed: u128 =
                self.meta.locked.values().filter_map(|b| b.get(&e.worker)).map(|x| u128::from(*x)).sum();
            if bucketed != u128::from(e.locked) {
                return Err(format!(
                    "worker {} locks {} but its buckets hold {bucketed}",
                    e.worker, e.locked
                ));
            }
        }
        let total = held + u128::from(self.meta.forfeited);
        if total != u128::from(self.meta.credited) {
            return Err(format!(
                "ledger holds {total} sats but receipts and scored rounds credited {}",
                self.meta.credited
            ));
        }
        Ok(())
    }

    fn finish(&self, mut step: Step) -> Step {
        // In a group commit the driver writes the counters once for the whole group; a copy
        // per event would be cloned, encoded and dropped for nothing.
        if !step.changes.is_empty() && !self.group_commit {
            step.changes.push(Change::Meta(Box::new(self.meta.clone())));
        }
        step
    }

    fn aux(&self, id: &Hash32) -> [u8; 32] {
        aux_for(&self.seed, id)
    }

    fn sign<T: Object + Signer>(&self, body: T) -> Signed<T> {
        let aux = self.aux(&body.id());
        Signed::sign(body, &self.key, &aux)
    }

    fn active_worker(&self, key: &PubKey) -> Result<&WorkerRecord, Refusal> {
        let w = self.workers.get(key).ok_or(Refusal::NotRegistered)?;
        match (&w.banned, &w.bond_lost) {
            (Some(b), _) => Err(Refusal::Banned(b.reason.clone())),
            (None, Some((why, _))) => Err(Refusal::Lapsed(why.clone())),
            (None, None) => Ok(w),
        }
    }

    fn open_mut(&mut self, id: &Hash32) -> Result<&mut TaskRecord, Refusal> {
        if self.finished.contains_key(id) {
            return Err(Refusal::AlreadyDecided);
        }
        self.open.get_mut(id).ok_or(Refusal::NotFound("task"))
    }

    fn check_time(&self, t: u64, now: u64, what: &str) -> Result<(), Refusal> {
        if t.abs_diff(now) > self.cfg.tunables.clock_skew_secs {
            return Err(invalid(format!(
                "{what} time {t} is more than {}s from the coordinator's clock ({now})",
                self.cfg.tunables.clock_skew_secs
            )));
        }
        Ok(())
    }
}

impl Step {
    fn with_meta(mut self, meta: &MetaState) -> Step {
        self.changes.push(Change::Meta(Box::new(meta.clone())));
        self
    }
}

/// BIP340 auxiliary randomness for the coordinator's signatures: derived from the secret
/// seed and the signed id, so signing is deterministic and restarts re-sign identically.
fn aux_for(seed: &[u8; 32], id: &Hash32) -> [u8; 32] {
    let mut pre = b"cairn/aux".to_vec();
    pre.extend_from_slice(seed);
    pre.extend_from_slice(&id.0);
    sha256(&pre).0
}

/// The direct offers that go with an announcement of `rec`: to every worker holding an offer
/// on it (none when nobody does).
pub(super) fn offers(rec: &TaskRecord, announcement: Signed<TaskAnnouncement>) -> Option<Effect> {
    let to: Vec<PubKey> = rec.assignments.iter().filter(|a| a.offered).map(|a| a.worker).collect();
    (!to.is_empty()).then(|| Effect::Offer { announcement: Box::new(announcement), to })
}
