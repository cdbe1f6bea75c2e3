//! What the HTTP API reads of the coordinator's machine, published by the core's writer once
//! each decision (one event, or one group) is on disk, before its answers go out: the
//! counters and summaries `/v1/health`, `/v1/stats`, `/v1/classes` and `/v1/ledger` show. A
//! read clones a pointer; it never takes the core's lock nor waits on a write. Records
//! (tasks, workers, balances, receipts, epochs) are read from the store, which holds what the
//! core has written.
//!
//! Owns the summary and its hand-over. Must never hold what only the machine may know (a
//! canary's answer, an audit draw): everything here is served to anyone.

use std::sync::{Arc, RwLock};

use cairn_spec::api::{LedgerTotals, TaskCounts, WorkerCounts};
use cairn_spec::{Hash32, Network, PubKey, SignedEpochHeader, TaskClass};

use crate::lifecycle::{Machine, Phase};

/// The machine's state as the API shows it.
#[derive(Clone, Debug)]
pub struct Published {
    /// The network.
    pub network: Network,
    /// The coordinator's key.
    pub coordinator: PubKey,
    /// The classes served, by id (fixed for the life of the process).
    pub classes: Arc<Vec<(Hash32, TaskClass)>>,
    /// Tasks by state.
    pub tasks: TaskCounts,
    /// Open tasks.
    pub open_tasks: u64,
    /// Receipts issued, ever.
    pub receipts: u64,
    /// The open epoch's height.
    pub next_epoch: u32,
    /// Receipts in the open epoch.
    pub open_receipts: u32,
    /// Whether the open epoch's draws use its own ranking and it may close (SPEC.md §12.1).
    pub armed: bool,
    /// Whether the chain is bound to its anchor key and genesis output.
    pub bound: bool,
    /// The newest closed epoch's header.
    pub last_header: Option<SignedEpochHeader>,
    /// Ledger sums.
    pub ledger: LedgerTotals,
    /// Registered workers by standing.
    pub workers: WorkerCounts,
}

impl Published {
    /// The summary of `m` (its classes given once, as they never change).
    pub fn of(m: &Machine, classes: &Arc<Vec<(Hash32, TaskClass)>>) -> Self {
        let meta = m.meta();
        let mut tasks = TaskCounts {
            submitted: meta.counts.submitted,
            decided: meta.counts.decided,
            failed: meta.counts.failed,
            ..TaskCounts::default()
        };
        let mut open_tasks = 0;
        for t in m.open_tasks() {
            open_tasks += 1;
            match t.phase {
                Phase::Commit => tasks.commit += 1,
                Phase::Reveal { .. } => tasks.reveal += 1,
                _ => {}
            }
        }
        // Both walks are bounded by real work (tasks the operator submitted, workers who
        // earned); standings are counted by the machine as they change, so registering many
        // keys makes no publication slower.
        let mut ledger =
            LedgerTotals { credited: meta.credited, forfeited: meta.forfeited, ..LedgerTotals::default() };
        for e in m.balances() {
            ledger.locked = ledger.locked.saturating_add(e.locked);
            ledger.claimable = ledger.claimable.saturating_add(e.claimable);
            ledger.paid = ledger.paid.saturating_add(e.paid);
        }
        let (active, banned, lapsed) = m.worker_standings();
        let workers = WorkerCounts { active, banned, lapsed };
        Published {
            network: m.config().network,
            coordinator: m.coordinator(),
            classes: classes.clone(),
            tasks,
            open_tasks,
            receipts: meta.counts.receipts,
            next_epoch: meta.next_epoch,
            open_receipts: meta.open_receipts,
            armed: m.armed(),
            bound: m.bound(),
            last_header: meta.last_header.clone(),
            ledger,
            workers,
        }
    }

    /// Registered workers, whatever their standing.
    pub fn worker_count(&self) -> u64 {
        self.workers.active + self.workers.banned + self.workers.lapsed
    }
}

/// The latest summary: the core replaces it after each write, readers take a copy of the
/// pointer, and waiters (`GET /v1/tasks/{id}?wait_ms=`) are woken by each replacement.
#[derive(Clone, Debug)]
pub struct Board {
    summary: Arc<RwLock<Arc<Published>>>,
    /// Counts replacements; a receiver wakes at each.
    written: Arc<tokio::sync::watch::Sender<u64>>,
    /// Places for waiters (`MAX_WAITERS`): each wakes at every write and reads its task.
    waiters: Arc<tokio::sync::Semaphore>,
}

/// Requests waiting on the board at once, at most; a request beyond them is answered at once.
pub const MAX_WAITERS: usize = 1024;

impl Board {
    /// A board showing `first`.
    pub fn new(first: Published) -> Self {
        Board {
            summary: Arc::new(RwLock::new(Arc::new(first))),
            written: Arc::new(tokio::sync::watch::channel(0).0),
            waiters: Arc::new(tokio::sync::Semaphore::new(MAX_WAITERS)),
        }
    }

    /// The latest summary.
    pub fn get(&self) -> Option<Arc<Published>> {
        self.summary.read().ok().map(|p| p.clone())
    }

    /// Replaces the summary (after a write is on disk) and wakes the waiters.
    pub(crate) fn set(&self, p: Published) {
        if let Ok(mut slot) = self.summary.write() {
            *slot = Arc::new(p);
        }
        self.written.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// A receiver that wakes after each write from now on, with its place among the waiters;
    /// `None` when every place is taken.
    pub fn watch(&self) -> Option<(tokio::sync::watch::Receiver<u64>, tokio::sync::OwnedSemaphorePermit)> {
        let place = self.waiters.clone().try_acquire_owned().ok()?;
        Some((self.written.subscribe(), place))
    }
}
