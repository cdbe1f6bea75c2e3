//! The worker's journal on disk: every job's stage, the registrations made, and running
//! totals, written atomically (temporary file, fsync, rename) after every step.
//!
//! Owns the journal file's format and its durability. Must never hold a secret: the salt of
//! a commitment is kept (it must survive a restart to reveal), keys are not.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use cairn_spec::Hash32;
use serde::{Deserialize, Serialize};

use crate::job::{Job, Stage};

/// Final jobs kept in the journal; older ones are dropped (the totals keep counting them).
pub const MAX_FINAL_JOBS: usize = 10_000;
/// Journal format version.
pub const VERSION: u32 = 1;

/// A registration the coordinator acknowledged.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegistrationRecord {
    /// The payout address registered.
    pub payout_address: String,
    /// Unix seconds.
    pub at: u64,
    /// The anchor chain the coordinator's genesis header named when this worker first saw
    /// it (SPEC.md §7.1; trust on first use): receipts must be anchored on it, and a
    /// coordinator whose genesis header later names another is not worked for.
    #[serde(default)]
    pub binding: Option<cairn_spec::AnchorBinding>,
}

impl RegistrationRecord {
    /// Pins the anchor chain `seen` in the coordinator's genesis header: the first one seen
    /// is kept (true: the record changed); the same again is fine; another is refused (the
    /// coordinator signed two chains).
    pub fn pin(&mut self, seen: cairn_spec::AnchorBinding) -> Result<bool, String> {
        let name =
            |b: &cairn_spec::AnchorBinding| b.genesis().map_or_else(|| "none".to_owned(), |g| g.to_string());
        match self.binding {
            Some(pinned) if pinned == seen => Ok(false),
            Some(pinned) => Err(format!(
                "its genesis header now names the anchor chain from {}, not the one from {} pinned when this worker first saw it: it signed two chains",
                name(&seen),
                name(&pinned)
            )),
            None => {
                self.binding = Some(seen);
                Ok(true)
            }
        }
    }
}

/// Running totals per outcome.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Totals {
    /// Receipts with an accepted verdict.
    pub accepted: u64,
    /// Receipts with any other verdict.
    pub rejected: u64,
    /// Jobs given up.
    pub abandoned: u64,
    /// Satoshis credited by accepted receipts.
    pub credited_sats: u64,
}

/// Everything the worker remembers.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Journal {
    /// Format version.
    pub version: u32,
    /// Jobs by task id.
    pub jobs: BTreeMap<Hash32, Job>,
    /// Registrations by coordinator key (hex).
    pub registrations: BTreeMap<String, RegistrationRecord>,
    /// Totals, including pruned jobs.
    pub totals: Totals,
    /// Order in which jobs became final (for pruning).
    #[serde(default)]
    pub finished: Vec<Hash32>,
}

/// Why the journal could not be read or written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum JournalError {
    /// File I/O failed.
    #[error("journal {0}: {1}")]
    Io(PathBuf, String),
    /// The file is not a journal this version reads.
    #[error("journal {0} is unreadable: {1}")]
    Corrupt(PathBuf, String),
}

impl Journal {
    /// Loads the journal at `path`; a missing file is an empty journal.
    pub fn load(path: &Path) -> Result<Self, JournalError> {
        match std::fs::read(path) {
            Ok(bytes) => {
                let j: Journal = serde_json::from_slice(&bytes)
                    .map_err(|e| JournalError::Corrupt(path.to_owned(), e.to_string()))?;
                if j.version != VERSION {
                    return Err(JournalError::Corrupt(
                        path.to_owned(),
                        format!("format version {} (this build reads {VERSION})", j.version),
                    ));
                }
                Ok(j)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                Ok(Journal { version: VERSION, ..Default::default() })
            }
            Err(e) => Err(JournalError::Io(path.to_owned(), e.to_string())),
        }
    }

    /// Writes the journal so that a crash leaves either the old or the new file.
    pub fn save(&self, path: &Path) -> Result<(), JournalError> {
        let err = |e: std::io::Error| JournalError::Io(path.to_owned(), e.to_string());
        let bytes = serde_json::to_vec(self).map_err(|e| JournalError::Io(path.to_owned(), e.to_string()))?;
        let tmp = path.with_extension("tmp");
        {
            let mut f = std::fs::File::create(&tmp).map_err(err)?;
            f.write_all(&bytes).map_err(err)?;
            f.sync_all().map_err(err)?;
        }
        std::fs::rename(&tmp, path).map_err(err)?;
        if let Some(dir) = path.parent() {
            if let Ok(d) = std::fs::File::open(dir) {
                let _ = d.sync_all();
            }
        }
        Ok(())
    }

    /// Forgets a job given up with nothing held by the coordinator ([`Job::may_retake`]) so
    /// the task can be taken afresh; true when it was forgotten.
    pub fn retake(&mut self, id: &Hash32) -> bool {
        if !self.jobs.get(id).is_some_and(Job::may_retake) {
            return false;
        }
        self.jobs.remove(id);
        self.totals.abandoned = self.totals.abandoned.saturating_sub(1);
        self.finished.retain(|f| f != id);
        true
    }

    /// Records that `job` changed; counts it when it became final and prunes old final jobs.
    /// Stages only move forward: a job's driver and the receipt it gets race, and a receipt
    /// recorded first must not be overwritten by the driver's older view. A receipt still
    /// replaces an abandonment (the coordinator's verdict is what counts).
    pub fn update(&mut self, job: Job) {
        let old = self.jobs.get(&job.id).map(|j| &j.stage);
        match (old, &job.stage) {
            (Some(Stage::Done { .. }), _) => return,
            (Some(Stage::Abandoned { .. }), Stage::Done { .. }) => {
                self.totals.abandoned = self.totals.abandoned.saturating_sub(1);
                self.finished.retain(|id| *id != job.id);
            }
            (Some(Stage::Abandoned { .. }), _) => return,
            _ => {}
        }
        if job.is_final() {
            match &job.stage {
                Stage::Done { verdict, reward_sats, .. } if verdict.is_accepted() => {
                    self.totals.accepted += 1;
                    self.totals.credited_sats += reward_sats;
                }
                Stage::Done { .. } => self.totals.rejected += 1,
                _ => self.totals.abandoned += 1,
            }
            self.finished.push(job.id);
        }
        self.jobs.insert(job.id, job);
        while self.finished.len() > MAX_FINAL_JOBS {
            let old = self.finished.remove(0);
            self.jobs.remove(&old);
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// Issue 25 item 2: the chain a worker first sees is the one it holds the coordinator to.
    #[test]
    fn the_first_anchor_chain_seen_is_pinned_and_another_refused() {
        let key = cairn_spec::SigningKey::from_secret_bytes([3; 32]).unwrap().public();
        let chain = |vout| cairn_spec::AnchorBinding::Key {
            key,
            genesis_txid: cairn_spec::Hash32([9; 32]),
            genesis_vout: vout,
        };
        let mut r = RegistrationRecord { payout_address: "x".into(), at: 1, binding: None };
        assert_eq!(r.pin(chain(0)), Ok(true));
        assert_eq!(r.pin(chain(0)), Ok(false));
        let refused = r.pin(chain(1)).unwrap_err();
        assert!(refused.contains("two chains"), "{refused}");
        assert_eq!(r.binding, Some(chain(0)), "a refusal keeps the pin");
    }

    #[test]
    fn missing_is_empty_and_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("journal.json");
        let mut j = Journal::load(&p).unwrap();
        assert!(j.jobs.is_empty());
        j.registrations
            .insert("ab".into(), RegistrationRecord { payout_address: "x".into(), at: 1, binding: None });
        j.save(&p).unwrap();
        assert_eq!(Journal::load(&p).unwrap(), j);
        std::fs::write(&p, b"{not json").unwrap();
        assert!(matches!(Journal::load(&p), Err(JournalError::Corrupt(..))));
    }

    #[test]
    fn a_receipt_is_never_overwritten_by_an_older_view() {
        use cairn_spec::{Network, Payload, SigningKey, Task, Verdict};
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
        let mut job = Job::new(k.public(), task, Hash32([1; 32]), "c".into(), 30);
        job.on_lease(100);
        job.on_executed(b"r".to_vec(), Hash32([2; 32]));
        job.on_commit_ack(1, 1);
        let mut driver_view = job.clone();
        let mut receipt_view = job.clone();
        receipt_view.on_receipt(Verdict::Accepted, 100, Hash32([3; 32]), 0);
        driver_view.on_reveal_ack();
        let mut j = Journal::default();
        j.update(receipt_view.clone());
        j.update(driver_view);
        assert_eq!(j.jobs[&job.id], receipt_view);
        assert_eq!(j.totals.accepted, 1);
        // A verdict replaces an abandonment, counted once.
        let mut abandoned = job.clone();
        abandoned.id = Hash32([9; 32]);
        abandoned.abandon("reveal window closed".into());
        j.update(abandoned.clone());
        assert_eq!(j.totals.abandoned, 1);
        abandoned.on_receipt(Verdict::NoReveal, 0, Hash32([4; 32]), 0);
        j.update(abandoned);
        assert_eq!((j.totals.abandoned, j.totals.rejected, j.finished.len()), (0, 1, 2));
        // A job the coordinator holds nothing of is forgotten for a retake; no other is.
        let mut lapsed = job.clone();
        lapsed.id = Hash32([10; 32]);
        lapsed.stage = Stage::New;
        lapsed.abandon_retryable("lease expired before the commitment was acknowledged".into(), false);
        j.update(lapsed.clone());
        assert_eq!(j.totals.abandoned, 1);
        assert!(!j.retake(&job.id));
        assert!(j.retake(&lapsed.id));
        assert!(!j.jobs.contains_key(&lapsed.id));
        assert_eq!((j.totals.abandoned, j.finished.len()), (0, 2));
        assert!(!j.retake(&lapsed.id));
    }
}
