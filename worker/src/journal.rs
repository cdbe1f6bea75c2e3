//! The worker's journal on disk: every job's stage, the registrations made, and running
//! totals. A snapshot (`journal.json`, written atomically: temporary file, fsync, rename)
//! plus a log of the steps since (`journal.log`, one JSON line per step, appended and
//! synced before the step is acted on), folded into a new snapshot every
//! [`COMPACT_AFTER`] lines: a step costs one short append, not a rewrite of every job.
//!
//! Owns the journal files' format and their durability. Must never hold a secret: the salt
//! of a commitment is kept (it must survive a restart to reveal), keys are not.

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
/// Log lines after which the journal is folded into a new snapshot.
pub const COMPACT_AFTER: usize = 4096;

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
    /// Which log continues this snapshot: a log of another generation was folded in already
    /// (a crash between writing a snapshot and starting its log leaves the old log behind).
    #[serde(default)]
    pub log_generation: u64,
}

/// One step in the log.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Entry {
    /// The log's first line: the snapshot generation it continues.
    Generation(u64),
    /// A job changed ([`Journal::update`]).
    Job(Box<Job>),
    /// A job was forgotten to be taken afresh ([`Journal::retake`]).
    Retake(Hash32),
}

/// The log file, open for appending.
pub struct JournalLog {
    path: PathBuf,
    file: std::fs::File,
    lines: usize,
}

/// Where the log of the snapshot at `path` lives.
pub fn log_path(path: &Path) -> PathBuf {
    path.with_extension("log")
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
                let mut j = j;
                j.replay(&log_path(path))?;
                Ok(j)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                Ok(Journal { version: VERSION, ..Default::default() })
            }
            Err(e) => Err(JournalError::Io(path.to_owned(), e.to_string())),
        }
    }

    /// Applies the log at `log` when it continues this snapshot. A last line cut short (a
    /// crash during its append, so never acted on) is ignored; any other bad line is not.
    fn replay(&mut self, log: &Path) -> Result<(), JournalError> {
        let bytes = match std::fs::read(log) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(JournalError::Io(log.to_owned(), e.to_string())),
        };
        let corrupt = |m: String| JournalError::Corrupt(log.to_owned(), m);
        // Bytes, not text: a torn write may cut a character in two.
        let lines: Vec<&[u8]> = bytes.split(|b| *b == b'\n').filter(|l| !l.is_empty()).collect();
        let n = lines.len();
        for (i, line) in lines.into_iter().enumerate() {
            let entry = match serde_json::from_slice::<Entry>(line) {
                Ok(e) => e,
                // The last line, unreadable: a torn append (its pages may even have reached
                // the disk out of order), never acted on.
                Err(_) if i + 1 == n && i > 0 => break,
                Err(e) => return Err(corrupt(format!("line {}: {e}", i + 1))),
            };
            match (i, entry) {
                (0, Entry::Generation(g)) if g == self.log_generation => {}
                // Folded into this snapshot already.
                (0, Entry::Generation(g)) if g < self.log_generation => return Ok(()),
                (0, Entry::Generation(g)) => {
                    return Err(corrupt(format!("log of generation {g} is newer than its snapshot's")))
                }
                (0, _) => return Err(corrupt("no generation line".into())),
                (_, Entry::Job(job)) => self.update(*job),
                (_, Entry::Retake(id)) => {
                    self.retake(&id);
                }
                (_, Entry::Generation(_)) => {
                    return Err(corrupt(format!("line {}: a second generation", i + 1)))
                }
            }
        }
        Ok(())
    }

    /// Writes a new snapshot (a crash leaves either the old or the new one) and starts its
    /// log; returns the log, open for appending.
    pub fn save(&mut self, path: &Path) -> Result<JournalLog, JournalError> {
        self.log_generation += 1;
        self.write_snapshot(path)?;
        JournalLog::start(&log_path(path), self.log_generation)
    }

    fn write_snapshot(&self, path: &Path) -> Result<(), JournalError> {
        let bytes = serde_json::to_vec(self).map_err(|e| JournalError::Io(path.to_owned(), e.to_string()))?;
        replace_atomically(path, &path.with_extension("tmp"), &bytes)
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

/// Replaces `path` with `bytes` so that a crash leaves the old file or the new one: written
/// to `tmp`, synced, renamed over `path`, and the directory synced.
fn replace_atomically(path: &Path, tmp: &Path, bytes: &[u8]) -> Result<(), JournalError> {
    let err = |e: std::io::Error| JournalError::Io(path.to_owned(), e.to_string());
    {
        let mut f = std::fs::File::create(tmp).map_err(err)?;
        f.write_all(bytes).map_err(err)?;
        f.sync_all().map_err(err)?;
    }
    std::fs::rename(tmp, path).map_err(err)?;
    if let Some(dir) = path.parent() {
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
    }
    Ok(())
}

impl JournalLog {
    /// A new log continuing snapshot generation `generation` (replacing any old one).
    fn start(path: &Path, generation: u64) -> Result<JournalLog, JournalError> {
        let err = |e: std::io::Error| JournalError::Io(path.to_owned(), e.to_string());
        let mut line = serde_json::to_vec(&Entry::Generation(generation))
            .map_err(|e| JournalError::Io(path.to_owned(), e.to_string()))?;
        line.push(b'\n');
        replace_atomically(path, &path.with_extension("log.tmp"), &line)?;
        let file = std::fs::OpenOptions::new().append(true).open(path).map_err(err)?;
        Ok(JournalLog { path: path.to_owned(), file, lines: 0 })
    }

    /// Appends `entry`; when `sync`, returns once it is on disk (a step is acted on only
    /// then). An entry that is not synced is made durable by the next synced one.
    pub fn append(&mut self, entry: &Entry, sync: bool) -> Result<(), JournalError> {
        let err = |e: std::io::Error| JournalError::Io(self.path.clone(), e.to_string());
        let mut line =
            serde_json::to_vec(entry).map_err(|e| JournalError::Io(self.path.clone(), e.to_string()))?;
        line.push(b'\n');
        let before = self.file.metadata().map_err(err)?.len();
        if let Err(e) = self.file.write_all(&line) {
            // Half a line must not stay for the next one to be glued onto (a bad line in the
            // middle would make the journal unloadable).
            let _ = self.file.set_len(before);
            return Err(err(e));
        }
        if sync {
            self.file.sync_data().map_err(err)?;
        }
        self.lines += 1;
        Ok(())
    }

    /// Whether the log is long enough to fold into a new snapshot.
    pub fn wants_compaction(&self) -> bool {
        self.lines >= COMPACT_AFTER
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

    fn a_job(n: u8) -> Job {
        use cairn_spec::{Network, Payload, SigningKey, Task};
        let k = SigningKey::from_secret_bytes([7; 32]).unwrap();
        let task = Task {
            network: Network::Regtest,
            coordinator: k.public(),
            class: Hash32::ZERO,
            requester: k.public(),
            nonce: u64::from(n),
            units: 1,
            budget_sats: 100,
            created_at: 0,
            input: Payload::Inline(vec![n]),
        };
        Job::new(k.public(), task, Hash32([n; 32]), "c".into(), 30)
    }

    /// The worker's own sequence: a snapshot at start, then one appended line per step.
    fn run(path: &Path, steps: &[Entry]) -> Journal {
        let mut live = Journal::load(path).unwrap();
        let mut log = live.save(path).unwrap();
        for e in steps {
            match e {
                Entry::Job(j) => live.update((**j).clone()),
                Entry::Retake(id) => {
                    live.retake(id);
                }
                Entry::Generation(_) => unreachable!(),
            }
            log.append(e, true).unwrap();
        }
        live
    }

    #[test]
    fn steps_appended_are_what_a_restart_finds_retakes_included() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("journal.json");
        let mut a = a_job(1);
        let mut steps = vec![Entry::Job(Box::new(a.clone()))];
        a.on_lease(100);
        steps.push(Entry::Job(Box::new(a.clone())));
        a.on_executed(b"r".to_vec(), Hash32([2; 32]));
        steps.push(Entry::Job(Box::new(a.clone())));
        // A job given up with nothing held, forgotten, then taken afresh.
        let mut b = a_job(2);
        b.abandon_retryable("lease expired".into(), false);
        steps.push(Entry::Job(Box::new(b.clone())));
        steps.push(Entry::Retake(b.id));
        steps.push(Entry::Job(Box::new(a_job(2))));
        let live = run(&p, &steps);
        let again = Journal::load(&p).unwrap();
        assert_eq!(again, live);
        assert_eq!(again.jobs[&b.id].stage, Stage::New, "the retake survives the restart");
        assert_eq!(again.totals.abandoned, 0);
        // A log newer than its snapshot is not one this snapshot continues: refused.
        let log_text = std::fs::read_to_string(log_path(&p)).unwrap();
        let newer = log_text.replacen(
            &format!("{{\"generation\":{}}}", live.log_generation),
            &format!("{{\"generation\":{}}}", live.log_generation + 1),
            1,
        );
        std::fs::write(log_path(&p), &newer).unwrap();
        assert!(matches!(Journal::load(&p), Err(JournalError::Corrupt(..))));
        std::fs::write(log_path(&p), &log_text).unwrap();
        // Only short lines were written: the snapshot is the start's, the steps are appended.
        let log = std::fs::read_to_string(log_path(&p)).unwrap();
        assert_eq!(log.lines().count(), 1 + steps.len());
    }

    #[test]
    fn a_torn_last_line_is_dropped_and_a_bad_one_elsewhere_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("journal.json");
        let mut a = a_job(1);
        let first = Entry::Job(Box::new(a.clone()));
        a.on_lease(100);
        let live = run(&p, &[first, Entry::Job(Box::new(a.clone()))]);
        // A crash in the middle of the next append: half a line, never acted on.
        let lp = log_path(&p);
        let mut text = std::fs::read_to_string(&lp).unwrap();
        let mut next = a.clone();
        next.on_executed(b"r".to_vec(), Hash32([2; 32]));
        let line = serde_json::to_string(&Entry::Job(Box::new(next))).unwrap();
        text.push_str(&line[..line.len() / 2]);
        std::fs::write(&lp, &text).unwrap();
        assert_eq!(Journal::load(&p).unwrap(), live);
        // Its pages may reach the disk out of order: a torn last line can end in a newline.
        std::fs::write(&lp, format!("{text}\n")).unwrap();
        assert_eq!(Journal::load(&p).unwrap(), live);
        std::fs::write(&lp, &text).unwrap();
        // Damage before the end is not a crash's: refused, not skipped.
        let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
        lines[1] = "{garbage".into();
        std::fs::write(&lp, lines.join("\n") + "\n").unwrap();
        assert!(matches!(Journal::load(&p), Err(JournalError::Corrupt(..))));
    }

    #[test]
    fn a_log_already_folded_into_the_snapshot_is_not_applied_twice() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("journal.json");
        let mut a = a_job(1);
        a.abandon("reveal window closed".into());
        let live = run(&p, &[Entry::Job(Box::new(a.clone()))]);
        assert_eq!(live.totals.abandoned, 1);
        // A crash after the new snapshot was renamed into place, before its log started: the
        // old log, whose steps the snapshot holds, is still there.
        let old_log = std::fs::read(log_path(&p)).unwrap();
        let mut j = Journal::load(&p).unwrap();
        j.log_generation += 1;
        j.write_snapshot(&p).unwrap();
        std::fs::write(log_path(&p), &old_log).unwrap();
        let again = Journal::load(&p).unwrap();
        assert_eq!(again.totals, live.totals, "counted once");
        assert_eq!(again.jobs, live.jobs);
        // The old log is not read at all: a snapshot of the next generation without the job
        // (as if it had been pruned) does not get it back from the old log.
        let empty = Journal { version: VERSION, log_generation: j.log_generation, ..Default::default() };
        empty.write_snapshot(&p).unwrap();
        std::fs::write(log_path(&p), &old_log).unwrap();
        assert!(Journal::load(&p).unwrap().jobs.is_empty());
        // While a log of the snapshot's own generation is.
        let mut text = String::from_utf8(old_log).unwrap();
        text = text.replacen(
            &format!("{{\"generation\":{}}}", live.log_generation),
            &format!("{{\"generation\":{}}}", j.log_generation),
            1,
        );
        std::fs::write(log_path(&p), text).unwrap();
        assert_eq!(Journal::load(&p).unwrap().jobs.len(), 1);
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
