//! The task lifecycle as a deterministic state machine: tasks, registrations, claims,
//! commitments and reveals go in (each with the time as an argument); changes to persist and
//! effects to perform come out. Verification (replication, adaptive audits, canaries,
//! escalation to a majority, fraud), the ledger (locked → claimable → paid) and epoch closing
//! live here because they change the same state in the same step.
//!
//! Owns every decision about work and money. Must never do I/O, read a clock or draw
//! randomness of its own: the node's driver persists each `Step` atomically before it acts on
//! the step's effects or answers the request that caused it.

pub mod judge;
pub mod records;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use cairn_spec::hash::sha256;
use cairn_spec::merkle;
use cairn_spec::{
    AnchorPayload, Claim, Commitment, EpochHeader, Hash32, LedgerEntry, Network, Object, Payload, PubKey,
    Registration, Reveal, Signed, SignedEpochHeader, SignedReceipt, Signer, SigningKey, Task,
    TaskAnnouncement, TaskClass, Verdict, WorkReceipt,
};
use thiserror::Error;

use judge::{agree, judge, well_formed, Judgement};
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
}

impl Default for Tunables {
    fn default() -> Self {
        Tunables {
            pow_difficulty: 16,
            audit_min_ppm: 50_000,
            max_escalations: 2,
            max_leases_per_worker: 16,
            clock_skew_secs: 600,
            epoch_max_receipts: 10_000,
            epoch_interval_secs: 600,
            payout_threshold_sats: 10_000,
            bond_min_sats: 0,
        }
    }
}

impl LifecycleConfig {
    /// Defaults for `network` with the given classes.
    pub fn new(network: Network, classes: Vec<TaskClass>) -> Self {
        LifecycleConfig { network, classes, tunables: Tunables::default() }
    }
}

/// Why a message was refused. A refusal never changes state.
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
    /// Valid, but not yet: retry later.
    #[error("{0}")]
    TooEarly(String),
    /// A per-worker limit is reached.
    #[error("{0}")]
    Limit(String),
    /// The worker's admission ended (its bond is gone): it must register again.
    #[error("worker's admission ended: {0}; register again")]
    Lapsed(String),
}

impl Refusal {
    /// The HTTP-like status code (also used on the wire).
    pub fn code(&self) -> u16 {
        match self {
            Refusal::BadSignature | Refusal::Invalid(_) => 400,
            Refusal::NotRegistered | Refusal::Banned(_) | Refusal::Lapsed(_) => 403,
            Refusal::NotFound(_) => 404,
            Refusal::Conflict(_) => 409,
            Refusal::TooEarly(_) => 425,
            Refusal::Limit(_) => 429,
        }
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
    },
    /// The node-wide counters.
    Meta(Box<MetaState>),
    /// A task input kept as a content-addressed blob.
    Blob {
        /// Its content hash.
        hash: Hash32,
        /// Its bytes.
        bytes: Vec<u8>,
    },
}

/// Something the node must do after the step is persisted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Effect {
    /// Gossip a task announcement.
    Announce(Box<Signed<TaskAnnouncement>>),
    /// Gossip a receipt.
    Receipt(Box<SignedReceipt>),
    /// Gossip an epoch header.
    Epoch(Box<SignedEpochHeader>),
    /// Hand an epoch to the anchor.
    Anchor(AnchorPayload),
    /// Hand payouts to the anchor queue.
    Payouts(Vec<PayoutRecord>),
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
    /// Ids of final tasks.
    pub finished: Vec<Hash32>,
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
    /// Leaf hashes of the open epoch's receipts, in index order.
    pub open_leaves: Vec<Hash32>,
    /// Every (requester, nonce) submitted, with its task id.
    pub nonces: Vec<(PubKey, u64, Hash32)>,
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
    finished: HashSet<Hash32>,
    workers: BTreeMap<PubKey, WorkerRecord>,
    ledger: BTreeMap<PubKey, LedgerEntry>,
    queued_payouts: BTreeMap<u64, PayoutRecord>,
    meta: MetaState,
    open_leaves: Vec<Hash32>,
    leases: HashMap<PubKey, u32>,
    group_commit: bool,
    /// Rows a group commit changed, written once with their final value when it ends.
    group_rows: GroupRows,
    nonces: HashMap<(PubKey, u64), Hash32>,
    /// `announced_at` of each open task's newest announcement (not persisted: after a restart
    /// the periodic re-announcement starts over).
    announced: HashMap<Hash32, u64>,
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

/// Outcome of one slot when a task is decided.
struct SlotVerdict {
    verdict: Option<Verdict>,
    fraud: bool,
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
        let mut pre = b"cairn/audit-seed".to_vec();
        pre.extend_from_slice(&key.secret_bytes());
        let seed = sha256(&pre).0;
        let me = key.public();
        Machine {
            cfg,
            classes,
            key,
            me,
            seed,
            open: BTreeMap::new(),
            results: HashMap::new(),
            finished: HashSet::new(),
            workers: BTreeMap::new(),
            ledger: BTreeMap::new(),
            queued_payouts: BTreeMap::new(),
            meta,
            open_leaves: Vec::new(),
            leases: HashMap::new(),
            group_commit: false,
            group_rows: GroupRows::default(),
            nonces: HashMap::new(),
            announced: HashMap::new(),
        }
    }

    /// Resumes from a snapshot.
    pub fn restore(cfg: LifecycleConfig, key: SigningKey, snap: Snapshot) -> Result<Self, RestoreError> {
        let mut m = Self::build(cfg, key, snap.meta);
        m.open_leaves = snap.open_leaves;
        if m.open_leaves.len() != m.meta.open_receipts as usize {
            return Err(RestoreError(format!(
                "open epoch has {} receipts stored but the counters say {}",
                m.open_leaves.len(),
                m.meta.open_receipts
            )));
        }
        for t in snap.open_tasks {
            for a in &t.assignments {
                if a.commitment.is_none() {
                    *m.leases.entry(a.worker).or_default() += 1;
                }
            }
            m.open.insert(t.id, t);
        }
        m.finished = snap.finished.into_iter().collect();
        m.nonces = snap.nonces.into_iter().map(|(r, n, id)| ((r, n), id)).collect();
        for r in snap.reveals {
            if let Payload::Inline(bytes) = r.body.result {
                m.results.insert((r.body.task, r.body.worker), bytes);
            }
        }
        m.workers = snap.workers.into_iter().map(|w| (w.key(), w)).collect();
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

    /// An open task.
    pub fn open_task(&self, id: &Hash32) -> Option<&TaskRecord> {
        self.open.get(id)
    }

    /// Open tasks in id order.
    pub fn open_tasks(&self) -> impl Iterator<Item = &TaskRecord> {
        self.open.values()
    }

    /// Fresh signed announcements of up to `max` tasks that still have open slots.
    pub fn open_announcements(&self, now: u64, max: usize) -> Vec<Signed<TaskAnnouncement>> {
        self.open
            .values()
            .filter(|t| {
                t.phase == Phase::Commit
                    && t.assignments
                        .iter()
                        .filter(|a| a.commitment.is_some() || a.lease_expires > now)
                        .count()
                        < usize::from(t.wanted)
            })
            .take(max)
            .map(|t| self.sign(TaskAnnouncement { task: t.task.clone(), announced_at: now }))
            .collect()
    }

    /// Whether a task reached a final phase.
    pub fn is_finished(&self, id: &Hash32) -> bool {
        self.finished.contains(id)
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
            return Err(format!("ledger holds {total} sats but receipts credited {}", self.meta.credited));
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

    /// Starts a group commit, for a driver that persists many events as one step: receipts
    /// are left unsigned (all-zero signatures) until the driver seals them as one batch
    /// (`SignedReceipt::seal_batch` with [`ReceiptSigner`]: one signature per batch, SPEC.md
    /// §5.7), off the machine's thread; the counters (`Change::Meta`) and the worker, ledger and lock
    /// rows that receipts touch are left out of each event's step. The driver must call
    /// [`Machine::end_group`], add what it returns, and sign every receipt before persisting
    /// or publishing the group.
    pub fn begin_group(&mut self) {
        self.group_commit = true;
        self.group_rows = GroupRows::default();
    }

    /// Ends a group commit: the rows it left out, each once with its current value, and the
    /// counters last (nothing when the group changed nothing).
    pub fn end_group(&mut self, changed: bool) -> Vec<Change> {
        self.group_commit = false;
        let rows = std::mem::take(&mut self.group_rows);
        let mut out = Vec::new();
        for k in rows.workers {
            if let Some(w) = self.workers.get(&k) {
                out.push(Change::Worker(Box::new(w.clone())));
            }
        }
        for k in rows.ledger {
            if let Some(e) = self.ledger.get(&k) {
                out.push(Change::Ledger(e.clone()));
            }
        }
        for (epoch, worker) in rows.locks {
            let amount = self.meta.locked.get(&epoch).and_then(|b| b.get(&worker)).copied().unwrap_or(0);
            out.push(Change::Lock { epoch, worker, amount });
        }
        if changed || !out.is_empty() {
            out.push(Change::Meta(Box::new(self.meta.clone())));
        }
        out
    }

    /// The coordinator's signature over a receipt batch id (SPEC.md §5.7), the same one the
    /// machine and its [`ReceiptSigner`] make.
    pub fn sign_receipt_batch(&self, batch_id: &Hash32) -> cairn_spec::Signature {
        self.receipt_signer().sign_batch(batch_id)
    }

    /// What signs this machine's receipts, for a driver that signs a group's receipts on
    /// another thread than the one running the machine.
    pub fn receipt_signer(&self) -> ReceiptSigner {
        ReceiptSigner { key: self.key.clone(), seed: self.seed }
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
        if self.finished.contains(id) {
            return Err(Refusal::Conflict("task already decided".into()));
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

    /// Accepts a task (from the API), or a canary with its known answer (from the node's
    /// canary scheduler). Returns the task id; submitting the same task twice is a no-op.
    pub fn submit_task(
        &mut self,
        task: Task,
        canary: Option<Vec<u8>>,
        now: u64,
    ) -> Result<(Hash32, Step), Refusal> {
        self.submit(task, None, canary, now)
    }

    /// Accepts a task whose input is a content-addressed blob, with the blob's bytes (kept in
    /// the `blobs` table in the same step, served to workers by `GetBlob`).
    pub fn submit_task_with_blob(
        &mut self,
        task: Task,
        blob: Vec<u8>,
        canary: Option<Vec<u8>>,
        now: u64,
    ) -> Result<(Hash32, Step), Refusal> {
        self.submit(task, Some(blob), canary, now)
    }

    fn submit(
        &mut self,
        task: Task,
        blob: Option<Vec<u8>>,
        canary: Option<Vec<u8>>,
        now: u64,
    ) -> Result<(Hash32, Step), Refusal> {
        if task.network != self.cfg.network {
            return Err(invalid(format!(
                "task is for {}, this node runs {}",
                task.network, self.cfg.network
            )));
        }
        if task.coordinator != self.me {
            return Err(invalid("task names another coordinator"));
        }
        let class = self.classes.get(&task.class).ok_or(Refusal::NotFound("task class"))?;
        match (&task.input, &blob) {
            (Payload::Inline(_), None) => {}
            (Payload::Blob { hash, size }, Some(bytes)) => {
                if bytes.len() as u64 != *size || cairn_spec::content_hash(bytes) != *hash {
                    return Err(invalid("blob bytes do not match the input's content hash and size"));
                }
            }
            (Payload::Blob { .. }, None) => return Err(invalid("a blob input needs its bytes")),
            (Payload::Inline(_), Some(_)) => return Err(invalid("an inline input carries its bytes itself")),
        }
        if task.input.size() > u64::from(class.max_input_bytes) {
            return Err(invalid(format!(
                "input is {} bytes; class {} accepts at most {}",
                task.input.size(),
                class.name,
                class.max_input_bytes
            )));
        }
        let cost = class
            .reward_per_unit
            .checked_mul(u64::from(task.units))
            .and_then(|x| x.checked_mul(u64::from(class.replication)))
            .ok_or_else(|| invalid("reward overflows"))?;
        if task.budget_sats < cost {
            return Err(invalid(format!(
                "budget {} sats is below {cost} (units × reward per unit × replication)",
                task.budget_sats
            )));
        }
        if let Some(expected) = &canary {
            if !well_formed(&class.rule, expected) {
                return Err(invalid("canary answer is not a well-formed result for the class"));
            }
        }
        // (requester, nonce) is the submission's idempotency key: a retry after a lost answer
        // (with a later created_at) is the same submission, not a second task.
        if let Some(id) = self.nonces.get(&(task.requester, task.nonce)) {
            return Ok((*id, Step::default()));
        }
        let id = task.id();
        if self.open.contains_key(&id) || self.finished.contains(&id) {
            return Ok((id, Step::default()));
        }
        self.nonces.insert((task.requester, task.nonce), id);
        let rec = TaskRecord {
            id,
            task: task.clone(),
            accepted_at: now,
            canary,
            phase: Phase::Commit,
            wanted: class.replication,
            audit_drawn: false,
            escalations: 0,
            assignments: Vec::new(),
        };
        self.announced.insert(id, now);
        let ann = self.sign(TaskAnnouncement { task, announced_at: now });
        self.open.insert(id, rec.clone());
        self.meta.counts.submitted += 1;
        let mut changes = Vec::with_capacity(2);
        if let (Some(bytes), Payload::Blob { hash, .. }) = (blob, &rec.task.input) {
            changes.push(Change::Blob { hash: *hash, bytes });
        }
        changes.push(Change::Task(Box::new(rec)));
        let step = Step { changes, effects: vec![Effect::Announce(Box::new(ann))], sync: true };
        Ok((id, self.finish(step)))
    }

    /// Registers a worker (or updates its payout address with a newer registration).
    pub fn register(&mut self, reg: Verified<Registration>, now: u64) -> Result<Step, Refusal> {
        self.register_bonded(reg, None, now)
    }

    /// Registers a worker admitted by proof-of-work or by a bond. `bond_sats` is what Bitcoin
    /// Core reports for the bond's output when the driver found it confirmed, unspent and
    /// paying to the bond key (`None` when not checked or not found).
    pub fn register_bonded(
        &mut self,
        reg: Verified<Registration>,
        bond_sats: Option<u64>,
        now: u64,
    ) -> Result<Step, Refusal> {
        let signed = reg.0;
        let r = &signed.body;
        if r.network != self.cfg.network {
            return Err(invalid(format!(
                "registration is for {}, this node runs {}",
                r.network, self.cfg.network
            )));
        }
        if r.coordinator != self.me {
            return Err(invalid("registration names another coordinator"));
        }
        if r.created_at > now.saturating_add(self.cfg.tunables.clock_skew_secs) {
            return Err(invalid("registration is dated in the future"));
        }
        let bits = r.work_bits();
        if bits < self.cfg.tunables.pow_difficulty {
            let Some(bond) = &r.bond else {
                return Err(invalid(format!(
                    "registration proof-of-work has {bits} leading zero bits; this node asks for {}",
                    self.cfg.tunables.pow_difficulty
                )));
            };
            let min = self.cfg.tunables.bond_min_sats;
            if min == 0 {
                return Err(invalid("this node admits by proof-of-work only (no bonds)"));
            }
            if !bond.verify(&self.me, &r.worker) {
                return Err(invalid("bond signature does not verify"));
            }
            match bond_sats {
                None => {
                    return Err(invalid(
                        "bond output not found confirmed and unspent, paying to the bond key",
                    ))
                }
                Some(v) if v < min => {
                    return Err(invalid(format!("bond output holds {v} sats; this node asks for {min}")))
                }
                Some(_) => {}
            }
            let taken = self.workers.values().any(|w| {
                w.key() != r.worker
                    && w.registration
                        .body
                        .bond
                        .as_ref()
                        .is_some_and(|b| b.txid == bond.txid && b.vout == bond.vout)
            });
            if taken {
                return Err(Refusal::Conflict("bond output already backs another worker".into()));
            }
        }
        let rec = match self.workers.get(&r.worker) {
            Some(w) if w.banned.is_some() => {
                return Err(Refusal::Banned(w.banned.as_ref().map(|b| b.reason.clone()).unwrap_or_default()))
            }
            // The same registration again: nothing to do, unless its bond was lost and is
            // confirmed unspent again (checked above), which re-admits the worker.
            Some(w) if w.registration.id() == signed.id() && w.bond_lost.is_none() => {
                return Ok(Step::default())
            }
            Some(w) if w.registration.id() == signed.id() => WorkerRecord { bond_lost: None, ..w.clone() },
            Some(w) if w.registration.body.created_at >= r.created_at => {
                return Err(Refusal::Conflict("a newer registration of this worker is in force".into()))
            }
            Some(w) => WorkerRecord { registration: signed, bond_lost: None, ..w.clone() },
            None => WorkerRecord {
                registration: signed,
                registered_at: now,
                streak: 0,
                accepted: 0,
                rejected: 0,
                banned: None,
                rejections: Default::default(),
                bond_lost: None,
            },
        };
        self.workers.insert(rec.key(), rec.clone());
        Ok(self.finish(Step { changes: vec![Change::Worker(Box::new(rec))], effects: vec![], sync: true }))
    }

    /// Workers in force admitted by a bond rather than by proof-of-work, with their bonds:
    /// what the node re-checks against Bitcoin, since a bond counts only while it is unspent.
    pub fn bonded_workers(&self) -> Vec<(PubKey, cairn_spec::Bond)> {
        self.workers
            .values()
            .filter(|w| w.banned.is_none() && w.bond_lost.is_none())
            .filter(|w| w.registration.body.work_bits() < self.cfg.tunables.pow_difficulty)
            .filter_map(|w| Some((w.key(), w.registration.body.bond.as_deref()?.clone())))
            .collect()
    }

    /// Bitcoin no longer shows a bonded worker's bond as a confirmed unspent output of at
    /// least the minimum (`why`): its admission ends and its unrevealed slots reopen. It keeps
    /// its record and locked rewards, and may register again.
    pub fn bond_lost(&mut self, worker: &PubKey, why: String, now: u64) -> Step {
        let Some(w) = self.workers.get_mut(worker) else { return Step::default() };
        if w.banned.is_some() || w.bond_lost.is_some() {
            return Step::default();
        }
        w.bond_lost = Some((why, now));
        let mut step =
            Step { changes: vec![Change::Worker(Box::new(w.clone()))], effects: vec![], sync: true };
        self.release_slots(worker, now, &mut step);
        self.finish(step)
    }

    /// Leases a task to a worker; returns the lease end. Claiming again returns the same lease.
    pub fn claim(&mut self, claim: Verified<Claim>, now: u64) -> Result<(u64, Step), Refusal> {
        let c = &claim.0.body;
        self.active_worker(&c.worker)?;
        self.check_time(c.claimed_at, now, "claim")?;
        let held = self.leases.get(&c.worker).copied().unwrap_or(0);
        let max_leases = self.cfg.tunables.max_leases_per_worker;
        self.open_mut(&c.task)?;
        let Machine { open, classes, leases, .. } = self;
        let rec = open.get_mut(&c.task).ok_or(Refusal::NotFound("task"))?;
        let lease_secs = u64::from(classes.get(&rec.task.class).map(|k| k.lease_secs).unwrap_or(60));
        if rec.phase != Phase::Commit {
            return Err(Refusal::Conflict("task is not open for claims".into()));
        }
        if let Some(a) = rec.slot(&c.worker) {
            if a.commitment.is_some() {
                return Err(Refusal::Conflict("already committed to this task".into()));
            }
            if a.lease_expires > now {
                return Ok((a.lease_expires, Step::default()));
            }
        }
        let live = rec
            .assignments
            .iter()
            .filter(|a| a.worker != c.worker && (a.commitment.is_some() || a.lease_expires > now))
            .count();
        if live >= usize::from(rec.wanted) {
            return Err(Refusal::Conflict("task is fully claimed".into()));
        }
        if held >= max_leases {
            return Err(Refusal::Limit(format!(
                "worker holds {held} uncommitted leases (limit {max_leases})"
            )));
        }
        let expires = now.saturating_add(lease_secs);
        let audit = rec.audit_drawn;
        match rec.slot_mut(&c.worker) {
            // An expired lease of this worker, not yet swept: renew it.
            Some(a) => a.lease_expires = expires,
            None => {
                rec.assignments.push(Assignment {
                    worker: c.worker,
                    lease_expires: expires,
                    commitment: None,
                    revealed: None,
                    audit,
                    verdict: None,
                    receipt: None,
                });
                *leases.entry(c.worker).or_default() += 1;
            }
        }
        let rec = rec.clone();
        Ok((expires, self.finish(Step { changes: vec![Change::Task(Box::new(rec))], ..Step::default() })))
    }

    /// Records a commitment under a live lease.
    pub fn commit(&mut self, c: Verified<Commitment>, now: u64) -> Result<Step, Refusal> {
        let signed = c.0;
        let body = &signed.body;
        self.active_worker(&body.worker)?;
        let rec = self.open_mut(&body.task)?;
        let slot = rec
            .slot_mut(&body.worker)
            .ok_or_else(|| Refusal::Conflict("no lease on this task: claim it first".into()))?;
        match slot.commitment {
            Some(v) if v == body.commitment => return Ok(Step::default()),
            Some(_) => return Err(Refusal::Conflict("a different commitment is already recorded".into())),
            None if slot.lease_expires <= now => {
                return Err(Refusal::Conflict("lease expired: claim the task again".into()))
            }
            None => slot.commitment = Some(body.commitment),
        }
        if let Some(n) = self.leases.get_mut(&body.worker) {
            *n = n.saturating_sub(1);
        }
        let task = body.task;
        let mut step =
            Step { changes: vec![Change::Commitment(Box::new(signed))], effects: vec![], sync: true };
        self.advance(&task, now, &mut step);
        // The task row carries the commitment too: a restart rebuilds open tasks from their
        // rows, so a commitment written only to the commitments table would be forgotten
        // (found by the chaos test: an acknowledged commitment, then "no commitment from this
        // worker" after a SIGKILL). `advance` writes the row only when the task moved on.
        let written = step.changes.iter().any(|c| matches!(c, Change::Task(t) if t.id == task));
        if !written {
            if let Some(rec) = self.open.get(&task) {
                step.changes.push(Change::Task(Box::new(rec.clone())));
            }
        }
        Ok(self.finish(step))
    }

    /// Records a reveal that opens the worker's commitment; decides the task when the last
    /// reveal is in.
    pub fn reveal(&mut self, r: Verified<Reveal>, now: u64) -> Result<Step, Refusal> {
        let signed = r.0;
        let body = &signed.body;
        self.active_worker(&body.worker)?;
        let rec = self.open_mut(&body.task)?;
        let in_reveal = matches!(rec.phase, Phase::Reveal { .. });
        let slot =
            rec.slot(&body.worker).ok_or(Refusal::Conflict("no commitment from this worker".into()))?;
        let Some(commitment) = slot.commitment else {
            return Err(Refusal::Conflict("no commitment from this worker".into()));
        };
        let hash = body.result.content_hash();
        match slot.revealed {
            Some(h) if h == hash => return Ok(Step::default()),
            Some(_) => return Err(Refusal::Conflict("a different result was already revealed".into())),
            None => {}
        }
        if !in_reveal {
            return Err(Refusal::TooEarly(
                "reveals open once every replica has committed; retry later".into(),
            ));
        }
        let Payload::Inline(bytes) = &body.result else {
            return Err(invalid("results must be inline"));
        };
        // `Reveal::opens`, with the result's hash computed once above (it is 1.5 KB for an
        // embedding, hashed on the ingest path).
        if cairn_spec::work::commitment_value(&body.task, &body.worker, &hash, &body.salt) != commitment {
            return Err(invalid("reveal does not open the recorded commitment"));
        }
        let bytes = bytes.clone();
        if let Some(slot) = rec.slot_mut(&body.worker) {
            slot.revealed = Some(hash);
        }
        let (task, worker) = (body.task, body.worker);
        self.results.insert((task, worker), bytes);
        let mut step = Step { changes: vec![Change::Reveal(Box::new(signed))], effects: vec![], sync: true };
        self.advance(&task, now, &mut step);
        Ok(self.finish(step))
    }

    /// The newest Bitcoin block: mixed into audit draws so they cannot be precomputed.
    pub fn on_chain_tip(&mut self, height: u32, hash: Hash32) -> Step {
        if self.meta.chain_tip == Some((height, hash)) {
            return Step::default();
        }
        self.meta.chain_tip = Some((height, hash));
        self.finish(Step { changes: vec![], ..Step::default() }).with_meta(&self.meta)
    }

    /// Time passes: expired leases return their slots, reveal deadlines close, a due epoch
    /// closes.
    pub fn tick(&mut self, now: u64) -> Step {
        let mut step = Step::default();
        let due: Vec<Hash32> = self
            .open
            .values()
            .filter(|t| match t.phase {
                Phase::Commit => {
                    t.assignments.iter().any(|a| a.commitment.is_none() && a.lease_expires <= now)
                }
                Phase::Reveal { deadline } => deadline <= now,
                _ => false,
            })
            .map(|t| t.id)
            .collect();
        for id in due {
            self.advance(&id, now, &mut step);
        }
        self.maybe_close_epoch(now, &mut step);
        self.finish(step)
    }

    /// Epochs up to `epoch` are settled (anchored deep enough, challenge window over): their
    /// locked credits become claimable, and balances over the threshold are paid out.
    pub fn settle(&mut self, epoch: u32, now: u64) -> Step {
        if self.meta.settled_epoch.is_some_and(|s| s >= epoch) {
            return Step::default();
        }
        let mut step = Step { sync: true, ..Step::default() };
        let ready: Vec<u32> = self.meta.locked.range(..=epoch).map(|(h, _)| *h).collect();
        let mut touched = std::collections::BTreeSet::new();
        for h in ready {
            let Some(bucket) = self.meta.locked.remove(&h) else { continue };
            for (worker, amount) in bucket {
                if let Some(e) = self.ledger.get_mut(&worker) {
                    e.locked = e.locked.saturating_sub(amount);
                    e.claimable = e.claimable.saturating_add(amount);
                    touched.insert(worker);
                }
                step.changes.push(Change::Lock { epoch: h, worker, amount: 0 });
            }
        }
        self.meta.settled_epoch = Some(epoch);
        let mut payouts = Vec::new();
        for worker in touched {
            let address = match self.workers.get(&worker) {
                Some(w) if w.banned.is_none() => w.registration.body.payout_address.clone(),
                _ => String::new(),
            };
            let Some(e) = self.ledger.get_mut(&worker) else { continue };
            if !address.is_empty()
                && e.claimable >= self.cfg.tunables.payout_threshold_sats
                && e.claimable > 0
            {
                let p = PayoutRecord {
                    id: self.meta.next_payout,
                    worker,
                    address,
                    amount: e.claimable,
                    queued_at: now,
                    status: PayoutStatus::Queued,
                };
                self.meta.next_payout += 1;
                e.paid = e.paid.saturating_add(e.claimable);
                e.claimable = 0;
                self.queued_payouts.insert(p.id, p.clone());
                step.changes.push(Change::Payout(p.clone()));
                payouts.push(p);
            }
            step.changes.push(Change::Ledger(e.clone()));
        }
        if !payouts.is_empty() {
            self.meta.payouts_waiting = true;
            step.effects.push(Effect::Payouts(payouts));
        }
        step.changes.push(Change::Meta(Box::new(self.meta.clone())));
        step
    }

    /// Payouts confirmed in an anchor transaction.
    pub fn payouts_confirmed(&mut self, ids: &[u64], txid: bitcoin::Txid, height: u32) -> Step {
        let mut step = Step { sync: true, ..Step::default() };
        for id in ids {
            if let Some(mut p) = self.queued_payouts.remove(id) {
                p.status = PayoutStatus::Paid { txid, height };
                step.changes.push(Change::Payout(p));
            }
        }
        step
    }

    /// Closes the open epoch now if it holds any receipt or payouts wait for an anchor.
    pub fn close_epoch(&mut self, now: u64) -> Step {
        let mut step = Step::default();
        if self.meta.open_receipts > 0 || self.meta.payouts_waiting {
            self.close(now, &mut step);
        }
        self.finish(step)
    }

    fn maybe_close_epoch(&mut self, now: u64, step: &mut Step) {
        let m = &self.meta;
        let due = now >= m.epoch_opened_at.saturating_add(self.cfg.tunables.epoch_interval_secs);
        if (m.open_receipts > 0 && (m.open_receipts >= self.cfg.tunables.epoch_max_receipts || due))
            || (m.payouts_waiting && due)
        {
            self.close(now, step);
        }
    }

    fn close(&mut self, now: u64, step: &mut Step) {
        let height = self.meta.next_epoch;
        let prev = self.meta.last_header.as_ref().map(|h| h.id()).unwrap_or(Hash32::ZERO);
        let entries: Vec<LedgerEntry> = self.ledger.values().cloned().collect();
        let leaves: Vec<Hash32> = entries.iter().map(|e| e.id()).collect();
        let header = EpochHeader {
            network: self.cfg.network,
            coordinator: self.me,
            height,
            prev,
            receipts_root: merkle::root(&self.open_leaves),
            state_root: merkle::root(&leaves),
            receipt_count: self.meta.open_receipts,
            accepted_count: self.meta.open_accepted,
            reward_sats: self.meta.open_reward,
            time: now,
        };
        let signed = self.sign(header);
        let payload = AnchorPayload { height, header_hash: signed.id() };
        self.meta.next_epoch = height.saturating_add(1);
        self.meta.last_header = Some(signed.clone());
        self.meta.epoch_opened_at = now;
        self.meta.open_receipts = 0;
        self.meta.open_accepted = 0;
        self.meta.open_reward = 0;
        self.meta.payouts_waiting = false;
        self.open_leaves.clear();
        step.changes.push(Change::Epoch { header: Box::new(signed.clone()), ledger: entries });
        step.effects.push(Effect::Epoch(Box::new(signed)));
        step.effects.push(Effect::Anchor(payload));
        step.sync = true;
    }

    /// Moves a task forward as far as its state and the time allow, and announces it again
    /// when that opened a slot (an audit replica, an escalation, expired leases).
    fn advance(&mut self, id: &Hash32, now: u64, step: &mut Step) {
        let before = self.open.get(id).map_or(0, unheld_slots);
        self.advance_phases(id, now, step);
        self.announce_if_reopened(id, before, now, step);
    }

    /// A task that gained slots nobody holds is announced at once: workers that were refused
    /// a full task would otherwise wait for the periodic re-announcement to hear of them.
    fn announce_if_reopened(&mut self, id: &Hash32, before: usize, now: u64, step: &mut Step) {
        let Some(t) = self.open.get(id) else { return };
        if unheld_slots(t) > before {
            // Each announcement of a task is a new gossip message: gossip drops a message it
            // has seen (its id is the hash of its bytes), and the signature is deterministic,
            // so a slot opening in the second the task was announced must carry a later time.
            let at = self.announced.get(id).map_or(now, |last| now.max(last.saturating_add(1)));
            let ann = self.sign(TaskAnnouncement { task: t.task.clone(), announced_at: at });
            self.announced.insert(*id, at);
            step.effects.push(Effect::Announce(Box::new(ann)));
        }
    }

    fn advance_phases(&mut self, id: &Hash32, now: u64, step: &mut Step) {
        loop {
            let Some(rec) = self.open.get_mut(id) else { return };
            let Some(class) = self.classes.get(&rec.task.class) else { return };
            match rec.phase {
                Phase::Commit => {
                    let before = rec.assignments.len();
                    let leases = &mut self.leases;
                    rec.assignments.retain(|a| {
                        let expired = a.commitment.is_none() && a.lease_expires <= now;
                        if expired {
                            if let Some(n) = leases.get_mut(&a.worker) {
                                *n = n.saturating_sub(1);
                            }
                        }
                        !expired
                    });
                    let changed = before != rec.assignments.len();
                    if rec.committed() < usize::from(rec.wanted) {
                        if changed {
                            step.changes.push(Change::Task(Box::new(rec.clone())));
                        }
                        return;
                    }
                    if !rec.audit_drawn {
                        rec.audit_drawn = true;
                        let max = max_replicas(class, self.cfg.tunables.max_escalations);
                        let streak = rec
                            .assignments
                            .iter()
                            .filter_map(|a| self.workers.get(&a.worker).map(|w| w.streak))
                            .min()
                            .unwrap_or(0);
                        if rec.canary.is_none()
                            && rec.wanted < max
                            && audit_draw(
                                &self.seed,
                                &self.meta,
                                rec,
                                streak,
                                self.cfg.tunables.audit_min_ppm,
                            )
                            // An audit slot nobody could fill would hold the task for ever (a
                            // network of one worker): audit only while someone else can join.
                            && another_worker_can_join(&self.workers, rec)
                        {
                            rec.wanted += 1;
                            step.changes.push(Change::Task(Box::new(rec.clone())));
                            return;
                        }
                    }
                    rec.phase = Phase::Reveal { deadline: now.saturating_add(u64::from(class.reveal_secs)) };
                    step.changes.push(Change::Task(Box::new(rec.clone())));
                }
                Phase::Reveal { deadline } => {
                    let all = rec.assignments.iter().all(|a| a.commitment.is_none() || a.revealed.is_some());
                    if !all && now < deadline {
                        step.changes.push(Change::Task(Box::new(rec.clone())));
                        return;
                    }
                    self.decide(id, now, step);
                }
                Phase::Decided { .. } | Phase::Failed { .. } => return,
            }
        }
    }

    fn decide(&mut self, id: &Hash32, now: u64, step: &mut Step) {
        // The hash `reveal` recorded for the slot (the same bytes), rather than hashing again.
        fn revealed_hash(rec: &TaskRecord, slot: usize, bytes: &[u8]) -> Hash32 {
            rec.assignments
                .get(slot)
                .and_then(|a| a.revealed)
                .unwrap_or_else(|| cairn_spec::content_hash(bytes))
        }
        let Some(rec) = self.open.get(id) else { return };
        let Some(class) = self.classes.get(&rec.task.class).cloned() else { return };
        let slots: Vec<(usize, Option<&[u8]>)> = rec
            .assignments
            .iter()
            .enumerate()
            .filter(|(_, a)| a.commitment.is_some())
            .map(|(i, a)| (i, self.results.get(&(rec.id, a.worker)).map(Vec::as_slice)))
            .collect();
        let mut verdicts: BTreeMap<usize, SlotVerdict> = BTreeMap::new();
        let mut valid: Vec<(usize, &[u8])> = Vec::new();
        for (i, res) in &slots {
            match res {
                None => {
                    verdicts.insert(
                        *i,
                        SlotVerdict {
                            verdict: Some(Verdict::NoReveal),
                            fraud: false,
                            reason: "committed but revealed nothing before the deadline".into(),
                        },
                    );
                }
                Some(b) if !well_formed(&class.rule, b) => {
                    verdicts.insert(
                        *i,
                        SlotVerdict {
                            verdict: Some(Verdict::InvalidResult),
                            fraud: false,
                            reason: "result is not well formed for the class's rule".into(),
                        },
                    );
                }
                Some(b) => valid.push((*i, b)),
            }
        }
        let mut accepted: Option<Hash32> = None;
        let mut failure: Option<String> = None;
        if let Some(expected) = &rec.canary {
            for (i, b) in &valid {
                let ok = agree(&class.rule, b, expected);
                if ok {
                    accepted = Some(revealed_hash(rec, *i, b));
                }
                verdicts.insert(
                    *i,
                    SlotVerdict {
                        verdict: Some(if ok { Verdict::Accepted } else { Verdict::CanaryFailed }),
                        fraud: !ok,
                        reason: if ok { String::new() } else { "result contradicts a known answer".into() },
                    },
                );
            }
            if accepted.is_none() {
                failure = Some("no correct result".into());
            }
        } else {
            let quorum = if rec.wanted == 1 { 1 } else { 2 };
            let results: Vec<&[u8]> = valid.iter().map(|(_, b)| *b).collect();
            match judge(&class.rule, &results, quorum) {
                Judgement::Decided { winners, clear } => {
                    for (k, (i, b)) in valid.iter().enumerate() {
                        let win = winners.contains(&k);
                        if win && accepted.is_none() {
                            accepted = Some(revealed_hash(rec, *i, b));
                        }
                        verdicts.insert(
                            *i,
                            SlotVerdict {
                                verdict: Some(if win { Verdict::Accepted } else { Verdict::Mismatch }),
                                fraud: !win && clear,
                                reason: if win {
                                    String::new()
                                } else {
                                    format!(
                                        "disagreed with {} of {} results under the class's rule",
                                        winners.len(),
                                        valid.len()
                                    )
                                },
                            },
                        );
                    }
                }
                Judgement::Undecided => {
                    let max = max_replicas(&class, self.cfg.tunables.max_escalations);
                    let committed = slots.len();
                    // Escalate only when some admitted worker is not on the task yet: otherwise
                    // the extra slot could never be filled and the task would wait for ever
                    // (found by the long chaos run: three workers, all on an escalated task).
                    let free = self.open.get(id).is_some_and(|r| another_worker_can_join(&self.workers, r));
                    if committed < usize::from(max) && free {
                        let wanted = u8::try_from(committed + 1).unwrap_or(u8::MAX);
                        if let Some(rec) = self.open.get_mut(id) {
                            rec.escalations = rec.escalations.saturating_add(1);
                            rec.wanted = wanted;
                            rec.phase = Phase::Commit;
                            step.changes.push(Change::Task(Box::new(rec.clone())));
                        }
                        return;
                    }
                    failure = Some(if free {
                        format!("no majority among {} results after {committed} replicas", valid.len())
                    } else {
                        format!(
                            "no majority among {} results after {committed} replicas, and no other worker to ask",
                            valid.len()
                        )
                    });
                    for (i, _) in &valid {
                        verdicts.insert(
                            *i,
                            SlotVerdict {
                                verdict: None,
                                fraud: false,
                                reason: "task failed: no majority".into(),
                            },
                        );
                    }
                }
            }
        }
        self.finalize(id, verdicts, accepted, failure, now, step);
    }

    fn finalize(
        &mut self,
        id: &Hash32,
        verdicts: BTreeMap<usize, SlotVerdict>,
        accepted: Option<Hash32>,
        failure: Option<String>,
        now: u64,
        step: &mut Step,
    ) {
        let Some(mut rec) = self.open.remove(id) else { return };
        self.announced.remove(id);
        let Some(per_unit) = self.classes.get(&rec.task.class).map(|c| c.reward_per_unit) else { return };
        let reward = per_unit.saturating_mul(u64::from(rec.task.units));
        let epoch = self.meta.next_epoch;
        // A machine used alone signs each receipt as a batch of one; in a group commit the
        // driver seals them all at once.
        let signer = (!self.group_commit).then(|| self.receipt_signer());
        let mut banned_now = Vec::new();
        for (i, a) in rec.assignments.iter_mut().enumerate() {
            self.results.remove(&(rec.id, a.worker));
            let Some(sv) = verdicts.get(&i) else {
                // An uncommitted lease on a task that is over.
                if let Some(n) = self.leases.get_mut(&a.worker) {
                    *n = n.saturating_sub(1);
                }
                continue;
            };
            let Some(w) = self.workers.get_mut(&a.worker) else { continue };
            a.verdict = sv.verdict;
            if let Some(v) = sv.verdict {
                let paid = if v.is_accepted() { reward } else { 0 };
                let receipt = WorkReceipt {
                    network: self.cfg.network,
                    coordinator: self.me,
                    epoch,
                    task: rec.id,
                    class: rec.task.class,
                    worker: a.worker,
                    result_hash: a.revealed.unwrap_or(Hash32::ZERO),
                    verdict: v,
                    units: rec.task.units,
                    reward_sats: paid,
                };
                let signed = match &signer {
                    // Sealed later with the group's other receipts, as one batch, by the
                    // driver (`ReceiptSigner`).
                    None => SignedReceipt::unsigned(receipt),
                    Some(signer) => {
                        let mut r = SignedReceipt::unsigned(receipt);
                        SignedReceipt::seal_batch(&mut [&mut r], |m| signer.sign_batch(m));
                        r
                    }
                };
                let rid = signed.id();
                a.receipt = Some(rid);
                let index = self.meta.open_receipts;
                self.open_leaves.push(rid);
                self.meta.open_receipts += 1;
                if v.is_accepted() {
                    self.meta.open_accepted += 1;
                    self.meta.open_reward = self.meta.open_reward.saturating_add(paid);
                    self.meta.credited = self.meta.credited.saturating_add(paid);
                    let e = self.ledger.entry(a.worker).or_insert(LedgerEntry {
                        worker: a.worker,
                        locked: 0,
                        claimable: 0,
                        paid: 0,
                    });
                    e.locked = e.locked.saturating_add(paid);
                    let bucket = self.meta.locked.entry(epoch).or_default().entry(a.worker).or_default();
                    *bucket = bucket.saturating_add(paid);
                    if self.group_commit {
                        self.group_rows.locks.insert((epoch, a.worker));
                        self.group_rows.ledger.insert(a.worker);
                    } else {
                        step.changes.push(Change::Lock { epoch, worker: a.worker, amount: *bucket });
                        step.changes.push(Change::Ledger(e.clone()));
                    }
                    w.streak = w.streak.saturating_add(1);
                    w.accepted += 1;
                } else {
                    w.streak = 0;
                    w.rejected += 1;
                }
                step.changes.push(Change::Receipt { index, id: rid, receipt: Box::new(signed.clone()) });
                self.meta.counts.receipts += 1;
                step.effects.push(Effect::Receipt(Box::new(signed)));
            }
            if sv.verdict != Some(Verdict::Accepted) {
                w.note_rejection(Rejection {
                    task: rec.id,
                    verdict: sv.verdict,
                    reason: sv.reason.clone(),
                    at: now,
                });
            }
            if sv.fraud && w.banned.is_none() {
                let forfeited = self.ledger.get(&a.worker).map(|e| e.locked).unwrap_or(0);
                for bucket in self.meta.locked.values_mut() {
                    if bucket.remove(&a.worker).is_some() {
                        // Deleting rows per epoch is done below from the bucket keys.
                    }
                }
                if let Some(e) = self.ledger.get_mut(&a.worker) {
                    e.locked = 0;
                    step.changes.push(Change::Ledger(e.clone()));
                }
                self.meta.forfeited = self.meta.forfeited.saturating_add(forfeited);
                w.banned = Some(Ban { reason: sv.reason.clone(), task: rec.id, forfeited, at: now });
                banned_now.push(a.worker);
                for h in self.meta.locked.keys().copied().chain(std::iter::once(epoch)) {
                    step.changes.push(Change::Lock { epoch: h, worker: a.worker, amount: 0 });
                }
            }
            if self.group_commit {
                self.group_rows.workers.insert(a.worker);
            } else {
                step.changes.push(Change::Worker(Box::new(w.clone())));
            }
        }
        self.meta.locked.retain(|_, b| !b.is_empty());
        rec.phase = match (accepted, failure) {
            (Some(result), _) => {
                self.meta.counts.decided += 1;
                Phase::Decided { result, at: now }
            }
            (None, reason) => {
                self.meta.counts.failed += 1;
                Phase::Failed { reason: reason.unwrap_or_else(|| "no result".into()), at: now }
            }
        };
        self.finished.insert(rec.id);
        step.changes.push(Change::Task(Box::new(rec)));
        step.sync = true;
        for w in banned_now {
            self.release_slots(&w, now, step);
        }
        self.maybe_close_epoch_on_count(now, step);
    }

    /// The slots of a worker that may no longer reveal (banned, or its bond lost) in open
    /// tasks where it has revealed nothing yet: its leases and commitments are dropped at
    /// once, so those tasks go on with other workers (a slot reopens, or the reveals already
    /// in are judged) instead of waiting out the lease or the reveal window.
    fn release_slots(&mut self, worker: &PubKey, now: u64, step: &mut Step) {
        let ids: Vec<Hash32> = self
            .open
            .values()
            .filter(|t| matches!(t.phase, Phase::Commit | Phase::Reveal { .. }))
            .filter(|t| t.assignments.iter().any(|a| a.worker == *worker && a.revealed.is_none()))
            .map(|t| t.id)
            .collect();
        for id in ids {
            let Some(rec) = self.open.get_mut(&id) else { continue };
            let before = unheld_slots(rec);
            if let Some(pos) =
                rec.assignments.iter().position(|a| a.worker == *worker && a.revealed.is_none())
            {
                let slot = rec.assignments.remove(pos);
                if slot.commitment.is_none() {
                    if let Some(n) = self.leases.get_mut(worker) {
                        *n = n.saturating_sub(1);
                    }
                }
                step.changes.push(Change::Task(Box::new(rec.clone())));
            }
            self.advance_phases(&id, now, step);
            self.announce_if_reopened(&id, before, now, step);
        }
    }

    fn maybe_close_epoch_on_count(&mut self, now: u64, step: &mut Step) {
        if self.meta.open_receipts >= self.cfg.tunables.epoch_max_receipts {
            self.close(now, step);
        }
    }
}

impl Step {
    fn with_meta(mut self, meta: &MetaState) -> Step {
        self.changes.push(Change::Meta(Box::new(meta.clone())));
        self
    }
}

/// The coordinator's key and the machine's signing seed: signs receipt batch ids exactly as
/// the machine does (`Machine::sign_receipt_batch`), without the machine.
#[derive(Clone)]
pub struct ReceiptSigner {
    key: SigningKey,
    seed: [u8; 32],
}

impl ReceiptSigner {
    /// The signature over a receipt batch id (SPEC.md §5.7).
    pub fn sign_batch(&self, batch_id: &Hash32) -> cairn_spec::Signature {
        self.key.sign(batch_id, &aux_for(&self.seed, batch_id))
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

/// Whether an admitted worker (neither banned nor with a lapsed bond) is not on the task yet.
fn another_worker_can_join(workers: &BTreeMap<PubKey, WorkerRecord>, t: &TaskRecord) -> bool {
    let on_task: BTreeSet<PubKey> = t.assignments.iter().map(|a| a.worker).collect();
    workers.values().any(|w| w.banned.is_none() && w.bond_lost.is_none() && !on_task.contains(&w.key()))
}

/// Slots of a task in the commit phase that no assignment holds (a lease, live or not yet
/// expired by a tick, or a commitment); none in any other phase.
fn unheld_slots(t: &TaskRecord) -> usize {
    if t.phase == Phase::Commit {
        usize::from(t.wanted).saturating_sub(t.assignments.len())
    } else {
        0
    }
}

fn max_replicas(class: &TaskClass, max_escalations: u8) -> u8 {
    class.replication.saturating_add(1).saturating_add(max_escalations).min(cairn_spec::task::MAX_REPLICATION)
}

/// The audit draw: probability max(p_min, 1/streak) of the least proven committed worker,
/// from a hash of the node's secret seed, the newest block hash and the commitments. Workers
/// committed before the draw, cannot know the seed, and cannot change their commitment.
fn audit_draw(seed: &[u8; 32], meta: &MetaState, rec: &TaskRecord, streak: u32, min_ppm: u32) -> bool {
    let mut pre = b"cairn/audit-draw".to_vec();
    pre.extend_from_slice(seed);
    if let Some((h, hash)) = meta.chain_tip {
        pre.extend_from_slice(&h.to_be_bytes());
        pre.extend_from_slice(&hash.0);
    }
    pre.extend_from_slice(&rec.id.0);
    for a in &rec.assignments {
        if let Some(c) = a.commitment {
            pre.extend_from_slice(&c.0);
        }
    }
    let d = sha256(&pre).0;
    let r = u64::from_be_bytes([d[0], d[1], d[2], d[3], d[4], d[5], d[6], d[7]]) % 1_000_000;
    let p = (1_000_000 / u64::from(streak.max(1))).max(u64::from(min_ppm));
    r < p
}
