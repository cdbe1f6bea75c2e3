//! One task's life on the worker side, as a pure state machine: lease → executed → committed
//! → revealed → receipt, or abandoned with a reason.
//!
//! Owns the rules that keep a worker honest and safe whatever the network does: it never
//! reveals before its commitment was acknowledged, never reveals (nor commits) for a task
//! whose lease it lost, and keeps the result and salt from before the commitment is sent so
//! a restart reveals exactly what was committed; and what a coordinator's refusal means for
//! the job, by its typed reason. Must never do I/O, read a clock or act on a refusal's text:
//! the agent passes the time in and performs the action that comes out.

use cairn_spec::{ErrorReason, Hash32, PubKey, Task, Verdict};
use serde::{Deserialize, Serialize};

/// Where a job is.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "stage")]
pub enum Stage {
    /// Seen in an announcement; not claimed yet.
    New,
    /// The coordinator granted a lease until `expires_at`.
    Leased {
        /// Unix seconds.
        expires_at: u64,
    },
    /// Executed; result and salt kept before the commitment is sent.
    Executed {
        /// Unix seconds the lease ends.
        expires_at: u64,
        /// Canonical result (hex in the journal).
        #[serde(with = "cairn_spec::serde_hex")]
        result: Vec<u8>,
        /// Commitment salt.
        salt: Hash32,
    },
    /// The coordinator acknowledged the commitment.
    Committed {
        /// Canonical result.
        #[serde(with = "cairn_spec::serde_hex")]
        result: Vec<u8>,
        /// Commitment salt.
        salt: Hash32,
        /// Unix seconds after which reveals are no longer taken (lease + reveal window).
        reveal_by: u64,
    },
    /// The coordinator acknowledged the reveal; waiting for the receipt.
    Revealed {
        /// Content hash of the revealed result.
        result_hash: Hash32,
    },
    /// The coordinator's signed verdict arrived.
    Done {
        /// Verdict.
        verdict: Verdict,
        /// Reward credited (locked until the epoch is anchored and final).
        reward_sats: u64,
        /// The receipt's id.
        receipt: Hash32,
        /// The epoch it belongs to.
        epoch: u32,
    },
    /// Given up; nothing more is sent for this task.
    Abandoned {
        /// Why.
        reason: String,
        /// The coordinator holds nothing of this worker's for the task (no acknowledged
        /// commitment), so the task may be taken again from scratch when it is announced
        /// with a free slot (a lease that ran out, a commitment the coordinator lost).
        #[serde(default)]
        retake: bool,
    },
}

/// What the agent should do next for a job.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Send a claim.
    Claim,
    /// Run the executor.
    Execute,
    /// Send the commitment of the kept result.
    Commit,
    /// Send the reveal of the committed result.
    Reveal,
    /// Nothing to send; a receipt (or nothing) is awaited.
    Wait,
    /// Mark the job abandoned for this reason.
    Abandon(String),
}

/// What the agent does after the coordinator refused the job's claim, commitment or reveal
/// ([`Job::on_refusal`] has already updated the job).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AfterRefusal {
    /// The coordinator asks for less (a rate or per-worker limit): back off, then ask again.
    Backoff,
    /// The reveal came before every replica committed: ask again shortly.
    Poll,
    /// The claim was refused: nothing was promised, so nothing is journaled; leave the task
    /// until it is announced again.
    Skip {
        /// The coordinator refuses this worker itself (not registered, banned, lapsed).
        worker_refused: bool,
    },
    /// The job was given up (its stage says whether it may be retaken).
    GaveUp,
    /// No request of this job was outstanding in its stage: nothing changed.
    Ignored,
}

/// A worker's job on one task of one coordinator.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Job {
    /// The coordinator.
    pub coordinator: PubKey,
    /// The task, as announced.
    pub task: Task,
    /// The task's id.
    pub id: Hash32,
    /// The class's name (for status).
    pub class_name: String,
    /// Seconds of the class's reveal window.
    pub reveal_secs: u64,
    /// Where it is.
    pub stage: Stage,
    /// Attempts of the current step that failed transiently.
    pub retries: u32,
    /// The last refusal or error, for status.
    pub last_error: Option<String>,
}

/// Transient failures of one step before the job is abandoned.
pub const MAX_RETRIES: u32 = 20;

impl Job {
    /// A job for an announced task.
    pub fn new(coordinator: PubKey, task: Task, id: Hash32, class_name: String, reveal_secs: u64) -> Self {
        Job {
            coordinator,
            task,
            id,
            class_name,
            reveal_secs,
            stage: Stage::New,
            retries: 0,
            last_error: None,
        }
    }

    /// Whether nothing more will happen to this job.
    pub fn is_final(&self) -> bool {
        matches!(self.stage, Stage::Done { .. } | Stage::Abandoned { .. })
    }

    /// The next action at `now`.
    pub fn next(&self, now: u64) -> Action {
        if self.retries >= MAX_RETRIES && !self.is_final() {
            return Action::Abandon(format!(
                "gave up after {} failed attempts: {}",
                self.retries,
                self.last_error.as_deref().unwrap_or("no answer")
            ));
        }
        match &self.stage {
            Stage::New => Action::Claim,
            Stage::Leased { expires_at } if now < *expires_at => Action::Execute,
            Stage::Executed { expires_at, .. } if now < *expires_at => Action::Commit,
            Stage::Leased { .. } | Stage::Executed { .. } => {
                Action::Abandon("lease expired before the commitment was acknowledged".into())
            }
            Stage::Committed { reveal_by, .. } if now <= *reveal_by => Action::Reveal,
            Stage::Committed { .. } => Action::Abandon("reveal window closed".into()),
            Stage::Revealed { .. } | Stage::Done { .. } | Stage::Abandoned { .. } => Action::Wait,
        }
    }

    fn step(&mut self, stage: Stage) {
        self.stage = stage;
        self.retries = 0;
        self.last_error = None;
    }

    /// The coordinator granted (or confirmed) a lease.
    pub fn on_lease(&mut self, expires_at: u64) {
        if matches!(self.stage, Stage::New) {
            self.step(Stage::Leased { expires_at });
        }
    }

    /// The executor produced `result`; `salt` is fresh randomness for the commitment.
    pub fn on_executed(&mut self, result: Vec<u8>, salt: Hash32) {
        if let Stage::Leased { expires_at } = self.stage {
            self.step(Stage::Executed { expires_at, result, salt });
        }
    }

    /// The commitment was acknowledged at `now`; `lease_secs` bound how long the other
    /// replicas may take to commit, after which the reveal window runs.
    pub fn on_commit_ack(&mut self, now: u64, lease_secs: u64) {
        if let Stage::Executed { result, salt, .. } = &self.stage {
            let reveal_by = now + lease_secs + self.reveal_secs;
            let stage = Stage::Committed { result: result.clone(), salt: *salt, reveal_by };
            self.step(stage);
        }
    }

    /// The coordinator said at `now` that reveals are not open yet (`too_early`: other slots of
    /// the task are still being drawn or committed, which has no bound the worker knows of).
    /// Its answer, not a local timer, says when the window ends: the job keeps its commitment
    /// and waits at least another reveal window, since a commitment never revealed is a miss
    /// the worker pays for.
    pub fn on_reveals_not_open(&mut self, now: u64) {
        let secs = self.reveal_secs;
        if let Stage::Committed { reveal_by, .. } = &mut self.stage {
            *reveal_by = (*reveal_by).max(now.saturating_add(secs));
        }
    }

    /// The reveal was acknowledged.
    pub fn on_reveal_ack(&mut self) {
        if let Stage::Committed { result, .. } = &self.stage {
            let result_hash = cairn_spec::content_hash(result);
            self.step(Stage::Revealed { result_hash });
        }
    }

    /// A step failed in a way worth retrying (no answer, rate limited, too early).
    pub fn on_transient(&mut self, error: String) {
        self.retries += 1;
        self.last_error = Some(error);
    }

    /// The coordinator refused with a rate or per-worker limit: it is alive and asks for
    /// less. Not a failed attempt: a worker with many jobs waiting would otherwise give up
    /// honest work while the coordinator is merely busy; the stage's own deadlines (lease,
    /// reveal window) still bound the wait.
    pub fn on_busy(&mut self, error: String) {
        self.last_error = Some(error);
    }

    /// The coordinator refused the request of the job's stage (a claim when new, the
    /// commitment when executed, the reveal when committed) for `reason`. Only the reason
    /// decides; `message` is kept for people.
    pub fn on_refusal(&mut self, reason: ErrorReason, message: &str) -> AfterRefusal {
        let slowed = matches!(reason, ErrorReason::RateLimited | ErrorReason::WorkerLimit);
        // The coordinator could not take the request now (overloaded, a storage hiccup, the
        // request outlived its own deadline on the way): nothing about the job is refused.
        // Giving up a commitment for that would be a miss the worker pays for.
        let unserved =
            matches!(reason, ErrorReason::Busy | ErrorReason::Internal | ErrorReason::DeadlinePassed);
        match self.stage {
            Stage::New if slowed => {
                // Nothing promised yet: giving up costs nothing, so slow-downs count here.
                self.on_transient(message.to_owned());
                AfterRefusal::Backoff
            }
            // Not ours to run now (drawn for other workers, closed, unknown).
            Stage::New => AfterRefusal::Skip {
                worker_refused: matches!(
                    reason,
                    ErrorReason::NotRegistered | ErrorReason::Banned | ErrorReason::Lapsed
                ),
            },
            Stage::Executed { .. } | Stage::Committed { .. } if slowed || unserved => {
                self.on_busy(message.to_owned());
                AfterRefusal::Backoff
            }
            // A lease that ran out: nothing of ours is held; the task may be retaken.
            Stage::Executed { .. } if reason == ErrorReason::LeaseExpired => {
                self.abandon_retryable(format!("commitment refused ({reason}): {message}"), true);
                AfterRefusal::GaveUp
            }
            Stage::Executed { .. } => {
                self.abandon(format!("commitment refused ({reason}): {message}"));
                AfterRefusal::GaveUp
            }
            // Other replicas have not all committed yet: not a failure (the reveal window
            // bounds the wait).
            Stage::Committed { .. } if reason == ErrorReason::TooEarly => AfterRefusal::Poll,
            // The coordinator holds no commitment of ours: start over if it offers the task
            // again.
            Stage::Committed { .. } if reason == ErrorReason::NoCommitment => {
                self.abandon_retryable(format!("reveal refused ({reason}): {message}"), true);
                AfterRefusal::GaveUp
            }
            Stage::Committed { .. } => {
                self.abandon(format!("reveal refused ({reason}): {message}"));
                AfterRefusal::GaveUp
            }
            Stage::Leased { .. } | Stage::Revealed { .. } | Stage::Done { .. } | Stage::Abandoned { .. } => {
                AfterRefusal::Ignored
            }
        }
    }

    /// A step was refused for good, or cannot be done.
    pub fn abandon(&mut self, reason: String) {
        self.give_up(reason, false);
    }

    /// Gives the task up for now: when the coordinator acknowledged no commitment of ours
    /// (or says it has none), the task may be taken again later; after an acknowledged
    /// commitment never (a second commitment would be refused, and must be).
    pub fn abandon_retryable(&mut self, reason: String, coordinator_has_none: bool) {
        let before_commit = matches!(self.stage, Stage::New | Stage::Leased { .. } | Stage::Executed { .. });
        self.give_up(reason, before_commit || coordinator_has_none);
    }

    fn give_up(&mut self, reason: String, retake: bool) {
        if !self.is_final() {
            self.stage = Stage::Abandoned { reason: reason.clone(), retake };
            self.last_error = Some(reason);
        }
    }

    /// Whether the task may be taken again (see [`Stage::Abandoned`]).
    pub fn may_retake(&self) -> bool {
        matches!(self.stage, Stage::Abandoned { retake: true, .. })
    }

    /// Whether the job's receipt is in (nothing more will happen to it).
    pub fn is_done(&self) -> bool {
        matches!(self.stage, Stage::Done { .. })
    }

    /// The coordinator's receipt for this task and worker.
    pub fn on_receipt(&mut self, verdict: Verdict, reward_sats: u64, receipt: Hash32, epoch: u32) {
        if !matches!(self.stage, Stage::Done { .. }) {
            self.step(Stage::Done { verdict, reward_sats, receipt, epoch });
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use cairn_spec::{Network, Payload, SigningKey};

    fn job() -> Job {
        let k = SigningKey::from_secret_bytes([7; 32]).unwrap();
        let task = Task {
            network: Network::Regtest,
            coordinator: k.public(),
            class: Hash32::ZERO,
            requester: k.public(),
            nonce: 1,
            units: 1,
            budget_sats: 100,
            created_at: 0,
            input: Payload::Inline(b"x".to_vec()),
        };
        Job::new(k.public(), task, Hash32([1; 32]), "c".into(), 30)
    }

    #[test]
    fn being_rate_limited_is_not_a_failed_attempt() {
        let mut j = job();
        j.on_lease(u64::MAX);
        j.on_executed(b"r".to_vec(), Hash32([1; 32]));
        j.on_commit_ack(100, 60);
        for _ in 0..10 * MAX_RETRIES {
            j.on_busy("rate limited".into());
        }
        assert_eq!(j.next(101), Action::Reveal, "a busy coordinator is waited for");
        assert_eq!(
            j.next(100 + 60 + 30 + 1),
            Action::Abandon("reveal window closed".into()),
            "within the window"
        );
        for _ in 0..MAX_RETRIES {
            j.on_transient("no answer".into());
        }
        assert!(matches!(j.next(101), Action::Abandon(_)), "failures still count");
    }

    #[test]
    fn happy_path_in_order() {
        let mut j = job();
        assert_eq!(j.next(0), Action::Claim);
        j.on_lease(100);
        assert_eq!(j.next(10), Action::Execute);
        j.on_executed(b"r".to_vec(), Hash32([2; 32]));
        assert_eq!(j.next(20), Action::Commit);
        j.on_commit_ack(20, 30);
        assert_eq!(j.next(21), Action::Reveal);
        j.on_reveal_ack();
        assert_eq!(j.next(22), Action::Wait);
        j.on_receipt(Verdict::Accepted, 100, Hash32([3; 32]), 0);
        assert!(j.is_final());
    }

    #[test]
    fn never_reveals_before_the_commitment_is_acknowledged() {
        let mut j = job();
        j.on_lease(100);
        j.on_executed(b"r".to_vec(), Hash32([2; 32]));
        // Acknowledging a reveal out of order changes nothing, and no time makes it Reveal.
        j.on_reveal_ack();
        for t in [0, 50, 99] {
            assert_eq!(j.next(t), Action::Commit);
        }
        j.on_transient("no answer".into());
        assert_eq!(j.next(50), Action::Commit);
    }

    #[test]
    fn a_lost_lease_is_never_committed_nor_revealed() {
        let mut j = job();
        j.on_lease(100);
        j.on_executed(b"r".to_vec(), Hash32([2; 32]));
        assert!(matches!(j.next(100), Action::Abandon(_)));
        let mut k = job();
        k.on_lease(100);
        assert!(matches!(k.next(150), Action::Abandon(_)));
        // Once abandoned, an ack that arrives late does not revive it.
        k.abandon("lease expired".into());
        k.on_executed(b"r".to_vec(), Hash32([2; 32]));
        k.on_commit_ack(160, 30);
        assert_eq!(k.next(161), Action::Wait);
    }

    #[test]
    fn retries_are_bounded_and_the_reveal_window_ends() {
        let mut j = job();
        for _ in 0..MAX_RETRIES {
            j.on_transient("timeout".into());
        }
        assert!(matches!(j.next(0), Action::Abandon(r) if r.contains("timeout")));
        let mut k = job();
        k.on_lease(100);
        k.on_executed(b"r".to_vec(), Hash32([2; 32]));
        k.on_commit_ack(10, 30);
        assert_eq!(k.next(70), Action::Reveal);
        assert!(matches!(k.next(71), Action::Abandon(_)));
    }

    #[test]
    fn only_a_job_the_coordinator_holds_nothing_of_may_be_retaken() {
        // Given up before the commitment was acknowledged: retakeable.
        let mut j = job();
        j.on_lease(100);
        j.abandon_retryable("lease expired before the commitment was acknowledged".into(), false);
        assert!(j.may_retake());
        // After an acknowledged commitment: never (unless the coordinator says it has none).
        let mut k = job();
        k.on_lease(100);
        k.on_executed(b"r".to_vec(), Hash32([2; 32]));
        k.on_commit_ack(20, 30);
        k.abandon_retryable("reveal window closed".into(), false);
        assert!(!k.may_retake());
        let mut l = job();
        l.on_lease(100);
        l.on_executed(b"r".to_vec(), Hash32([2; 32]));
        l.on_commit_ack(20, 30);
        l.abandon_retryable("reveal refused (409): no commitment from this worker".into(), true);
        assert!(l.may_retake());
        // A refusal for good: never.
        let mut m = job();
        m.abandon("bad input: not UTF-8".into());
        assert!(!m.may_retake());
        // A final job stays final.
        let mut n = job();
        n.on_receipt(Verdict::Accepted, 1, Hash32([3; 32]), 0);
        n.abandon_retryable("late".into(), true);
        assert!(n.is_final() && !n.may_retake());
    }

    fn executed() -> Job {
        let mut j = job();
        j.on_lease(100);
        j.on_executed(b"r".to_vec(), Hash32([2; 32]));
        j
    }

    fn committed() -> Job {
        let mut j = executed();
        j.on_commit_ack(20, 30);
        j
    }

    #[test]
    fn the_refusal_reason_not_its_text_decides_what_the_worker_does() {
        // A lost lease, whatever the text says: the job is dropped and may be retaken.
        let mut j = executed();
        assert_eq!(j.on_refusal(ErrorReason::LeaseExpired, "something else entirely"), AfterRefusal::GaveUp);
        assert!(j.is_final() && j.may_retake(), "{:?}", j.stage);
        // The text of a lost lease under another reason: slowed down, the job goes on.
        let mut j = executed();
        assert_eq!(
            j.on_refusal(ErrorReason::RateLimited, "lease expired: claim the task again"),
            AfterRefusal::Backoff
        );
        assert!(!j.is_final());
        assert_eq!(j.next(50), Action::Commit);
        // ... and as a plain conflict it is given up for good, not retaken.
        let mut j = executed();
        assert_eq!(
            j.on_refusal(ErrorReason::Conflict, "lease expired: claim the task again"),
            AfterRefusal::GaveUp
        );
        assert!(j.is_final() && !j.may_retake());

        // No commitment recorded, whatever the text: dropped, may be retaken after a commit ack.
        let mut k = committed();
        assert_eq!(k.on_refusal(ErrorReason::NoCommitment, "nope"), AfterRefusal::GaveUp);
        assert!(k.is_final() && k.may_retake());
        let mut k = committed();
        assert_eq!(
            k.on_refusal(ErrorReason::Conflict, "no commitment from this worker"),
            AfterRefusal::GaveUp
        );
        assert!(k.is_final() && !k.may_retake());
        // Too early: poll, not a failure; and however long the other slots take, the job does
        // not give its commitment up while the coordinator says "not yet".
        let mut k = committed();
        assert_eq!(k.on_refusal(ErrorReason::TooEarly, "lease expired"), AfterRefusal::Poll);
        assert_eq!((k.next(21), k.retries), (Action::Reveal, 0));
        let late = 10_000;
        assert!(matches!(k.next(late), Action::Abandon(_)), "a local timer alone ends the wait");
        k.on_reveals_not_open(late - 1);
        assert_eq!(k.next(late), Action::Reveal);
        // Slowed down, or not served now, after the commitment: not a failed attempt either,
        // and never a reason to give up a commitment (a reveal never sent is a miss).
        for reason in [
            ErrorReason::RateLimited,
            ErrorReason::WorkerLimit,
            ErrorReason::Busy,
            ErrorReason::Internal,
            ErrorReason::DeadlinePassed,
        ] {
            let mut k = committed();
            assert_eq!(k.on_refusal(reason, "slow down"), AfterRefusal::Backoff);
            assert_eq!((k.next(21), k.retries), (Action::Reveal, 0));
            let mut j = executed();
            assert_eq!(j.on_refusal(reason, "slow down"), AfterRefusal::Backoff);
            assert_eq!(j.next(50), Action::Commit);
        }
    }

    #[test]
    fn a_refused_claim_is_skipped_or_retried_by_its_reason() {
        let mut j = job();
        assert_eq!(
            j.on_refusal(ErrorReason::RateLimited, "no commitment from this worker"),
            AfterRefusal::Backoff
        );
        assert_eq!((j.next(0), j.retries), (Action::Claim, 1), "a slowed claim counts as an attempt");
        for (reason, worker_refused) in [
            (ErrorReason::Conflict, false),
            (ErrorReason::NotFound, false),
            (ErrorReason::AlreadyDecided, false),
            (ErrorReason::NotRegistered, true),
            (ErrorReason::Banned, true),
            (ErrorReason::Lapsed, true),
        ] {
            let mut j = job();
            assert_eq!(
                j.on_refusal(reason, "lease expired"),
                AfterRefusal::Skip { worker_refused },
                "{reason}"
            );
            assert_eq!(j.stage, Stage::New, "a refused claim changes nothing in the job");
        }
        // A job with nothing outstanding ignores a stray refusal.
        let mut d = committed();
        d.on_reveal_ack();
        let before = d.clone();
        assert_eq!(d.on_refusal(ErrorReason::LeaseExpired, "x"), AfterRefusal::Ignored);
        assert_eq!(d, before);
    }
}
