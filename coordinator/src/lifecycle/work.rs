//! A worker's messages on a task: claims (leases), commitments and reveals, and giving back
//! the slots of a worker who can no longer hold them.
//!
//! Owns the order commit-before-reveal and every refusal a worker can get. Must never decide a
//! task: a complete task is handed to `decide`.

use super::decide::unheld_slots;
use super::*;

impl Machine {
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
            None if slot.lease_expires <= now => return Err(Refusal::LeaseExpired),
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
        let slot = rec.slot(&body.worker).ok_or(Refusal::NoCommitment)?;
        let Some(commitment) = slot.commitment else {
            return Err(Refusal::NoCommitment);
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

    /// The slots of a worker that may no longer reveal (banned, or its bond lost) in open
    /// tasks where it has revealed nothing yet: its leases and commitments are dropped at
    /// once, so those tasks go on with other workers (a slot reopens, or the reveals already
    /// in are judged) instead of waiting out the lease or the reveal window.
    pub(super) fn release_slots(&mut self, worker: &PubKey, now: u64, step: &mut Step) {
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
}
