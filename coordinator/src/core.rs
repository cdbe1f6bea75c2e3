//! The node's core: the lifecycle machine and the store it persists to, behind one lock.
//! Every accepted event is written (one atomic batch, synced when it accepts a receipt, an
//! epoch or a commitment) before its answer and effects are released, so nothing answered is
//! ever lost.
//!
//! Group commits are pipelined: the machine decides a group on the caller's thread while one
//! thread signs and encodes the previous group and another writes the one before, each in
//! the order the groups were decided; groups that queued while a write synced are written
//! together (one atomic batch, one fsync). A group's answers and effects come out of its
//! [`Pending`] only once its write, and so every earlier one, is on disk; `machine()` waits for every write
//! already handed over, and the summary readers get (`crate::published`) is swapped in by the
//! writer after each write, so no reader sees state that is not on disk.
//!
//! Owns the order "decide, persist, then act". Must never perform an effect itself (the node
//! gossips and anchors) and never keep running after a failed write: memory would be ahead of
//! disk, so the failing group, every group behind it and every later event are refused until
//! the node restarts from disk.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Condvar, Mutex};

use thiserror::Error;

use crate::lifecycle::{
    Change, Effect, LifecycleConfig, Machine, ReceiptSigner, Refusal, RestoreError, Step,
};
use crate::lifecycle_store::{self as ls, LoadError};
use crate::published::{Board, Published};
use crate::store::{KvStore, StoreError};

/// Why the core could not do something.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum CoreError {
    /// The event was refused; nothing changed.
    #[error(transparent)]
    Refused(#[from] Refusal),
    /// The write failed: the node must stop and restart from disk.
    #[error("storage failed; the node must restart: {0}")]
    Store(#[from] StoreError),
    /// A previous write failed.
    #[error("the node is stopping after a storage failure")]
    Poisoned,
    /// The driver handed the store a step it had not sealed: nothing was written.
    #[error(transparent)]
    Unsealed(#[from] ls::Unsealed),
}

/// Why the core could not open.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum OpenError {
    /// Reading the state failed.
    #[error(transparent)]
    Load(#[from] LoadError),
    /// The state is inconsistent.
    #[error(transparent)]
    Restore(#[from] RestoreError),
    /// Writing the initial state failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The initial state could not be encoded.
    #[error(transparent)]
    Encode(#[from] ls::Unsealed),
}

/// Answers of a group commit, in order, and the effects of the accepted ones.
pub type Batched<T> = (Vec<Result<T, Refusal>>, Vec<Effect>);

/// Groups decided but not yet signed, at most: with the groups signed and waiting for the
/// writer (`MAX_COALESCED`), how far the machine runs ahead of the disk (and of the answers)
/// before it waits for the writer.
const WRITE_QUEUE: usize = 4;

/// Groups written together at most, when they queued while the writer synced (also how many
/// signed groups may wait for the writer: the machine runs at most `WRITE_QUEUE` +
/// `MAX_COALESCED` groups ahead of the disk).
const MAX_COALESCED: usize = 8;

/// A decided group on its way to disk: its answers, released with its effects once its write
/// is durable.
#[must_use = "answers and effects are released only by waiting"]
pub struct Pending<T> {
    answers: Vec<Result<T, Refusal>>,
    written: mpsc::Receiver<Result<Vec<Effect>, CoreError>>,
}

impl<T> Pending<T> {
    /// Blocks until the group is on disk; then its answers and effects, or the write's error
    /// (every answer is then void: the node must restart from disk).
    pub fn wait(self) -> Result<Batched<T>, CoreError> {
        let effects = self.written.recv().unwrap_or(Err(CoreError::Poisoned))?;
        Ok((self.answers, effects))
    }
}

/// How far the writer is: groups handed over and groups done (written or refused).
#[derive(Default)]
struct Progress {
    counts: Mutex<(u64, u64)>,
    done: Condvar,
    poisoned: AtomicBool,
}

struct Job {
    step: Step,
    /// The machine's summary once this step is on disk (published only then).
    published: Option<Published>,
    written: mpsc::SyncSender<Result<Vec<Effect>, CoreError>>,
}

/// A group signed and encoded, on its way to the store.
struct Encoded {
    batch: Result<Option<crate::store::Batch>, ls::Unsealed>,
    published: Option<Published>,
    effects: Vec<Effect>,
    written: mpsc::SyncSender<Result<Vec<Effect>, CoreError>>,
}

/// The writer: one thread signs and encodes groups, another writes them, both in the order
/// the groups were handed over.
struct Writer {
    jobs: Option<mpsc::SyncSender<Job>>,
    threads: Vec<std::thread::JoinHandle<()>>,
    progress: Arc<Progress>,
}

impl Writer {
    fn start(store: Arc<dyn KvStore>, signer: ReceiptSigner, board: Board) -> Self {
        let (jobs, rx) = mpsc::sync_channel::<Job>(WRITE_QUEUE);
        let (encoded_tx, encoded) = mpsc::sync_channel::<Encoded>(MAX_COALESCED);
        let progress = Arc::new(Progress::default());
        let p = progress.clone();
        // Two stages, so the receipts of group N+1 are signed while group N is written.
        let sign = std::thread::Builder::new().name("cairn-signer".into()).spawn(move || {
            for Job { mut step, published, written } in rx {
                seal_receipts(&signer, &mut step);
                let batch = if step.changes.is_empty() { Ok(None) } else { ls::batch_for(&step).map(Some) };
                if encoded_tx.send(Encoded { batch, effects: step.effects, published, written }).is_err() {
                    return;
                }
            }
        });
        let write = std::thread::Builder::new().name("cairn-writer".into()).spawn(move || {
            // Groups that queued while the last write synced are written together, as one
            // atomic batch and one fsync: a node taking many small writes (submissions come
            // one by one) pays a sync per burst, not per write. Each is answered in order.
            while let Ok(first) = encoded.recv() {
                let mut group = vec![first];
                while group.len() < MAX_COALESCED {
                    match encoded.try_recv() {
                        Ok(e) => group.push(e),
                        Err(_) => break,
                    }
                }
                // The groups before one that cannot be written are written; it gets its error,
                // and the groups behind it are refused (the node stops: nothing after a lost
                // group may be answered as written).
                let mut merged = crate::store::Batch::new();
                let mut good = group.len();
                let mut refused = None;
                if p.poisoned.load(Ordering::SeqCst) {
                    good = 0;
                } else {
                    for (i, e) in group.iter_mut().enumerate() {
                        match std::mem::replace(&mut e.batch, Ok(None)) {
                            Ok(Some(b)) => {
                                merged.append(b);
                            }
                            Ok(None) => {}
                            Err(u) => {
                                good = i;
                                refused = Some(CoreError::from(u));
                                break;
                            }
                        }
                    }
                }
                let written_ok = if merged.is_empty() { Ok(()) } else { write(store.as_ref(), &merged) };
                let mut failure = match written_ok {
                    Ok(()) => refused,
                    Err(e) => {
                        good = 0;
                        Some(e)
                    }
                };
                if failure.is_some() || good < group.len() {
                    p.poisoned.store(true, Ordering::SeqCst);
                }
                for (i, Encoded { effects, published, written, .. }) in group.into_iter().enumerate() {
                    // The first group not written hears why; the others that it was not.
                    let answer = if i < good {
                        // Readers see a decision once it is on disk, before its answers go out.
                        if let Some(summary) = published {
                            board.set(summary);
                        }
                        Ok(effects)
                    } else {
                        Err(failure.take().unwrap_or(CoreError::Poisoned))
                    };
                    if let Ok(mut c) = p.counts.lock() {
                        c.1 += 1;
                    }
                    p.done.notify_all();
                    let _ = written.send(answer);
                }
            }
        });
        let threads: Vec<_> = [sign, write].into_iter().filter_map(Result::ok).collect();
        let jobs = (threads.len() == 2).then_some(jobs);
        Writer { jobs, threads, progress }
    }

    fn poisoned(&self) -> bool {
        self.progress.poisoned.load(Ordering::SeqCst)
    }

    fn submit(
        &self,
        step: Step,
        published: Option<Published>,
    ) -> Result<mpsc::Receiver<Result<Vec<Effect>, CoreError>>, CoreError> {
        let jobs = self.jobs.as_ref().ok_or(CoreError::Poisoned)?;
        let (written, rx) = mpsc::sync_channel(1);
        if let Ok(mut c) = self.progress.counts.lock() {
            c.0 += 1;
        }
        if jobs.send(Job { step, published, written }).is_err() {
            self.progress.poisoned.store(true, Ordering::SeqCst);
            return Err(CoreError::Poisoned);
        }
        Ok(rx)
    }

    /// Waits until every group handed over is done (or a write failed).
    fn settle(&self) {
        let Ok(mut c) = self.progress.counts.lock() else { return };
        while c.1 < c.0 && !self.poisoned() {
            match self.progress.done.wait(c) {
                Ok(g) => c = g,
                Err(_) => return,
            }
        }
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        // Every group handed over is written before the store can close.
        drop(self.jobs.take());
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

fn write(store: &dyn KvStore, batch: &crate::store::Batch) -> Result<(), CoreError> {
    store.write(batch).map_err(|e| {
        tracing::error!(target: "cairn::core", error = %e, "storage write failed; refusing further work");
        CoreError::from(e)
    })
}

/// The receipts among a step's changes, in order.
fn stored_receipts(changes: &[Change]) -> impl Iterator<Item = &cairn_spec::SignedReceipt> {
    changes.iter().filter_map(|c| match c {
        Change::Receipt { receipt, .. } => Some(receipt.as_ref()),
        _ => None,
    })
}

/// Seals the step's unsealed receipts (a group commit leaves them unsealed) as batches of at
/// most 256, one BIP340 signature each (SPEC.md §5.7): each `Change::UnsealedReceipt` becomes
/// the `Change::Receipt` and each `Effect::UnsealedReceipt` the `Effect::Receipt` of the same
/// sealed receipt.
fn seal_receipts(signer: &ReceiptSigner, step: &mut Step) {
    let bodies: Vec<(cairn_spec::Hash32, cairn_spec::WorkReceipt)> = step
        .changes
        .iter()
        .filter_map(|c| match c {
            Change::UnsealedReceipt { id, body, .. } => Some((*id, body.as_ref().clone())),
            _ => None,
        })
        .collect();
    if bodies.is_empty() {
        return;
    }
    let mut sealed = cairn_spec::SignedReceipt::seal_batch(bodies, |m| signer.sign_batch(m)).into_iter();
    for c in &mut step.changes {
        if let Change::UnsealedReceipt { index, id, .. } = c {
            let Some(receipt) = sealed.next() else { break };
            *c = Change::Receipt { index: *index, id: *id, receipt: Box::new(receipt) };
        }
    }
    let stored: Vec<&cairn_spec::SignedReceipt> = stored_receipts(&step.changes).collect();
    // The machine emits each receipt's effect right after its change, so the effects come in
    // the changes' order: match them by walking both (comparing bodies, not hashing ids), and
    // look an effect up by id only should that order ever differ.
    let mut next = stored.iter().peekable();
    let mut by_id: Option<std::collections::HashMap<cairn_spec::Hash32, &cairn_spec::SignedReceipt>> = None;
    for e in &mut step.effects {
        let Effect::UnsealedReceipt(body) = e else { continue };
        let found = match next.peek() {
            Some(s) if s.body == **body => next.next().copied(),
            _ => by_id
                .get_or_insert_with(|| stored.iter().map(|s| (s.id(), *s)).collect())
                .get(&cairn_spec::Object::id(body.as_ref()))
                .copied(),
        };
        if let Some(s) = found {
            *e = Effect::Receipt(Box::new(s.clone()));
        }
    }
}

/// The machine and its store.
pub struct Core {
    machine: Machine,
    store: Arc<dyn KvStore>,
    writer: Writer,
    /// What the API reads, replaced after every decision.
    board: Board,
    classes: Arc<Vec<(cairn_spec::Hash32, cairn_spec::TaskClass)>>,
}

impl Core {
    /// Resumes from the store, or starts fresh (and writes the initial state).
    pub fn open(
        cfg: LifecycleConfig,
        key: cairn_spec::SigningKey,
        store: Arc<dyn KvStore>,
        now: u64,
    ) -> Result<Self, OpenError> {
        let machine = match ls::load(store.as_ref())? {
            Some(snap) => {
                let mut m = Machine::restore(cfg, key, snap)?;
                // The time the node was down is not the workers' to pay for.
                let step = m.resume(now);
                if !step.changes.is_empty() {
                    store.write(&ls::batch_for(&step)?)?;
                }
                m
            }
            None => {
                let m = Machine::new(cfg, key, now);
                let mut b = crate::store::Batch::new();
                ls::add(&mut b, &Change::Meta(Box::new(m.meta().clone())))?;
                store.write(b.sync())?;
                m
            }
        };
        let classes = Arc::new(machine.classes().iter().map(|(id, c)| (*id, c.clone())).collect());
        let board = Board::new(Published::of(&machine, &classes));
        let writer = Writer::start(store.clone(), machine.receipt_signer(), board.clone());
        Ok(Core { machine, store, writer, board, classes })
    }

    /// Where the latest summary of the machine is published (for readers that must not take
    /// the core's lock).
    pub fn board(&self) -> Board {
        self.board.clone()
    }

    /// The summary to publish once `step` is on disk (none for a step that changed nothing).
    fn summary(&self, step: &Step) -> Option<Published> {
        (!step.changes.is_empty()).then(|| Published::of(&self.machine, &self.classes))
    }

    /// The machine (read-only), once everything it decided is on disk.
    pub fn machine(&self) -> &Machine {
        self.writer.settle();
        &self.machine
    }

    /// The store.
    pub fn store(&self) -> &Arc<dyn KvStore> {
        &self.store
    }

    /// Runs one event on the machine and persists its step; returns the event's answer and
    /// the effects to perform, once the step is on disk.
    pub fn apply<T>(
        &mut self,
        f: impl FnOnce(&mut Machine) -> Result<(T, Step), Refusal>,
    ) -> Result<(T, Vec<Effect>), CoreError> {
        if self.writer.poisoned() {
            return Err(CoreError::Poisoned);
        }
        let (out, step) = f(&mut self.machine)?;
        let published = self.summary(&step);
        let effects = self.writer.submit(step, published)?.recv().unwrap_or(Err(CoreError::Poisoned))?;
        Ok((out, effects))
    }

    /// A requester's submission: answered with the task it was accepted as when its
    /// (requester, nonce) is on disk (the machine remembers only recent ones), else decided
    /// by the machine and handed to the writer. The caller waits on the [`Pending`] without
    /// holding the core, so submissions and worker messages share group commits.
    pub fn submit_task(
        &mut self,
        r: crate::lifecycle::TaskRequest,
        draw: [u64; 2],
        now: u64,
    ) -> Result<Pending<cairn_spec::Hash32>, CoreError> {
        let (requester, nonce) = self.machine.submission_key(&r);
        let stored = ls::accepted(self.store.as_ref(), &requester, nonce).map_err(|e| match e {
            ls::LoadError::Store(e) => CoreError::Store(e),
            other => CoreError::Store(StoreError::Engine(other.to_string())),
        })?;
        match stored {
            Some(id) => self.submit_many([id], |_, id| Ok((id, Step::default()))),
            None => self.submit_many([r], |m, r| m.submit_request(r, draw, now)),
        }
    }

    /// Runs many events and persists them in one batch (group commit), waiting until it is
    /// on disk: answers in order, each `Ok` only once the whole batch is written.
    pub fn apply_many<E, T>(
        &mut self,
        events: impl IntoIterator<Item = E>,
        f: impl FnMut(&mut Machine, E) -> Result<(T, Step), Refusal>,
    ) -> Result<Batched<T>, CoreError> {
        self.submit_many(events, f)?.wait()
    }

    /// Runs many events as one group and hands it to the writer: the caller waits on the
    /// [`Pending`] (without holding the core) while the machine decides the next group.
    pub fn submit_many<E, T>(
        &mut self,
        events: impl IntoIterator<Item = E>,
        mut f: impl FnMut(&mut Machine, E) -> Result<(T, Step), Refusal>,
    ) -> Result<Pending<T>, CoreError> {
        if self.writer.poisoned() {
            return Err(CoreError::Poisoned);
        }
        let mut all = Step::default();
        let mut answers = Vec::new();
        self.machine.begin_group();
        for e in events {
            match f(&mut self.machine, e) {
                Ok((t, step)) => {
                    all.extend(step);
                    answers.push(Ok(t));
                }
                Err(r) => answers.push(Err(r)),
            }
        }
        let changed = !all.changes.is_empty();
        all.changes.extend(self.machine.end_group(changed));
        let published = self.summary(&all);
        let written = self.writer.submit(all, published)?;
        Ok(Pending { answers, written })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cairn_spec::{Hash32, Network, Object, SigningKey, Verdict, WorkReceipt};

    fn key(i: u8) -> SigningKey {
        let mut b = [0u8; 32];
        b[0] = i;
        b[31] = 1;
        SigningKey::from_secret_bytes(b).unwrap()
    }

    /// A step as a group commit leaves it: `n` unsealed receipts, each change with its
    /// effect; `reorder` shuffles the effects against the changes.
    fn step(coord: &SigningKey, n: u8, reorder: bool) -> Step {
        let mut step = Step::default();
        for i in 0..n {
            let r = WorkReceipt {
                network: Network::Regtest,
                coordinator: coord.public(),
                epoch: 0,
                task: Hash32([i; 32]),
                class: Hash32::ZERO,
                worker: key(100 + i).public(),
                result_hash: Hash32([7; 32]),
                verdict: Verdict::Accepted,
                units: 1,
                reward_sats: 10,
                draw_epoch: 0,
            };
            step.changes.push(Change::UnsealedReceipt {
                index: u32::from(i),
                id: r.id(),
                body: Box::new(r.clone()),
            });
            step.effects.push(Effect::UnsealedReceipt(Box::new(r)));
        }
        if reorder {
            step.effects.reverse();
            step.effects.swap(0, 1);
        }
        step
    }

    #[test]
    fn every_receipt_effect_carries_its_sealed_path_and_signature_in_any_order() {
        let coord = key(1);
        let signer =
            Machine::new(LifecycleConfig::new(Network::Regtest, vec![]), coord.clone(), 0).receipt_signer();
        for reorder in [false, true] {
            let mut s = step(&coord, 9, reorder);
            seal_receipts(&signer, &mut s);
            let stored: Vec<&cairn_spec::SignedReceipt> = stored_receipts(&s.changes).collect();
            assert!(stored.iter().all(|r| r.verify() && r.batch.count == 9));
            let mut seen = 0;
            for e in &s.effects {
                let Effect::Receipt(r) = e else { continue };
                assert!(r.verify(), "reorder {reorder}: effect {} verifies", r.id());
                assert!(stored.iter().any(|s| **s == **r), "reorder {reorder}: gossiped as stored");
                seen += 1;
            }
            assert_eq!(seen, 9);
        }
    }

    /// A one-replica class named "echo".
    fn echo_class() -> cairn_spec::TaskClass {
        cairn_spec::TaskClass {
            name: "echo".into(),
            executor: cairn_spec::ExecutorKind::Command,
            model_hash: Hash32::ZERO,
            rule: cairn_spec::ComparisonRule::ExactHash,
            replication: 1,
            reward_per_unit: 10,
            max_input_bytes: 64,
            lease_secs: 60,
            reveal_secs: 60,
            objective: Default::default(),
        }
    }

    #[test]
    fn readers_see_each_decision_through_the_board_even_while_the_core_is_held() {
        use crate::lifecycle::TaskRequest;
        let cfg = LifecycleConfig::new(Network::Regtest, vec![echo_class()]);
        let mut core = Core::open(cfg, key(1), Arc::new(crate::store::MemoryStore::new()), 0).unwrap();
        let board = core.board();
        assert_eq!(board.get().unwrap().tasks.submitted, 0);
        let request = TaskRequest {
            class: "echo".into(),
            requester: None,
            nonce: 1,
            units: 1,
            budget_sats: 100,
            input: cairn_spec::Payload::Inline(b"x".to_vec()),
            blob: None,
            canary: None,
        };
        core.apply(|m| m.submit_request(request, [0, 0], 0)).unwrap();
        // A writer holds the core: a reader still gets the newest summary, at once.
        let held = Mutex::new(core);
        let _writer = held.lock().unwrap();
        let seen = std::thread::spawn(move || {
            board.get().map(|p| (p.tasks.submitted, p.open_tasks, p.tasks.commit))
        })
        .join()
        .unwrap();
        assert_eq!(seen, Some((1, 1, 1)));
    }

    /// The machine remembers only recent submissions; a request retried after many others,
    /// or after a restart, is still the same task, found on disk, and nothing is written.
    #[test]
    fn a_submission_retried_long_after_or_after_a_restart_is_the_same_task() {
        use crate::lifecycle::TaskRequest;
        let mut cfg = LifecycleConfig::new(Network::Regtest, vec![echo_class()]);
        cfg.recent = 32;
        let store: Arc<dyn KvStore> = Arc::new(crate::store::MemoryStore::new());
        let request = |nonce: u64, at: u64| TaskRequest {
            class: "echo".into(),
            requester: Some(key(7).public()),
            nonce,
            units: 1,
            budget_sats: 100,
            input: cairn_spec::Payload::Inline(format!("input {nonce} {at}").into_bytes()),
            blob: None,
            canary: None,
        };
        let submit = |core: &mut Core, nonce: u64, at: u64| {
            let (mut answers, _) = core.submit_task(request(nonce, at), [1, 0], at).unwrap().wait().unwrap();
            answers.pop().unwrap().unwrap()
        };
        let mut core = Core::open(cfg.clone(), key(1), store.clone(), 0).unwrap();
        let first = submit(&mut core, 0, 1);
        // Enough submissions after it that the machine's memory of it is gone.
        for n in 1..=40 {
            submit(&mut core, n, 1);
        }
        let board = core.board();
        let count = || board.get().unwrap().tasks.submitted;
        let before = count();
        assert_eq!(submit(&mut core, 0, 50), first, "retried with another input and time");
        assert_eq!(count(), before, "nothing new accepted");
        drop(core);
        let mut core = Core::open(cfg, key(1), store, 0).unwrap();
        let board = core.board();
        assert_eq!(submit(&mut core, 0, 60), first, "after a restart");
        assert_eq!(board.get().unwrap().tasks.submitted, before);
    }
}
