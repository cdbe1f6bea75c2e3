//! A worker's messages on a task: claims (leases), commitments and reveals, and giving back
//! the slots of a worker who can no longer hold them.
//!
//! Owns the order commit-before-reveal and every refusal a worker can get. Must never decide a
//! task: a complete task is handed to `decide`.

use super::decide::unheld_slots;
use super::*;

impl Machine {
    /// Takes the slot of a task the coordinator drew this worker for; returns the lease end.
    /// Claiming again returns the same lease. A worker that was not drawn is refused; when the
    /// task seeks workers it is ready to be drawn for the class's slots from now on (the next
    /// tick draws for slots nobody holds). Readiness is soft state: a refused claim changes
    /// nothing persisted.
    pub fn claim(&mut self, claim: Verified<Claim>, now: u64) -> Result<(u64, Step), Refusal> {
        let c = &claim.0.body;
        self.active_worker(&c.worker)?;
        self.check_time(c.claimed_at, now, "claim")?;
        let rec = self.open_mut(&c.task)?;
        // Only a task that seeks workers (a slot free or offered: what announcements name)
        // makes its claimant ready: a key cannot keep itself ready on tasks nobody is drawn for
        // while honest workers, who only answer announcements, cannot.
        let seeking = rec.phase == Phase::Commit
            && (rec.assignments.len() < usize::from(rec.wanted) || rec.assignments.iter().any(|a| a.offered));
        let class = rec.task.class;
        if seeking {
            self.mark_ready(class, c.worker, now);
        }
        let Machine { open, classes, .. } = self;
        let rec = open.get_mut(&c.task).ok_or(Refusal::NotFound("task"))?;
        let lease_secs = u64::from(classes.get(&rec.task.class).map(|k| k.lease_secs).unwrap_or(60));
        if rec.phase != Phase::Commit {
            return Err(Refusal::Conflict("task is not open for claims".into()));
        }
        let Some(a) = rec.slot_mut(&c.worker) else {
            return Err(Refusal::Conflict("task's slots are drawn for other workers".into()));
        };
        if a.commitment.is_some() {
            return Err(Refusal::Conflict("already committed to this task".into()));
        }
        if a.lease_expires <= now {
            // Not swept yet: a lapsed offer or a lease let expire is not this worker's any more.
            return Err(Refusal::Conflict("task's slots are drawn for other workers".into()));
        }
        if !a.offered {
            return Ok((a.lease_expires, Step::default()));
        }
        let expires = now.saturating_add(lease_secs);
        a.offered = false;
        a.lease_expires = expires;
        let rec = rec.clone();
        self.took_offer(&c.worker);
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
            // Drawn but not claimed (a claim the node lost in a crash: claims are written
            // unsynced): nothing of the worker's is held; it claims again and gets its lease.
            None if slot.offered => return Err(Refusal::LeaseExpired),
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
        if slot.verdict.is_some() {
            // Its reveal window closed (the task moved on to an audit or an escalation): a
            // reveal now could be chosen knowing that.
            return Err(Refusal::Conflict("the reveal window of this commitment closed".into()));
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
            .filter(|t| {
                t.assignments
                    .iter()
                    .any(|a| a.worker == *worker && a.revealed.is_none() && a.verdict.is_none())
            })
            .map(|t| t.id)
            .collect();
        for id in ids {
            let Some(rec) = self.open.get_mut(&id) else { continue };
            let before = unheld_slots(rec);
            if let Some(pos) = rec
                .assignments
                .iter()
                .position(|a| a.worker == *worker && a.revealed.is_none() && a.verdict.is_none())
            {
                let slot = rec.assignments.remove(pos);
                if slot.commitment.is_none() {
                    if let Some(n) = self.leases.get_mut(worker) {
                        *n = n.saturating_sub(1);
                    }
                }
                step.changes.push(Change::Task(Box::new(rec.clone())));
            }
            let drew = self.advance_phases(&id, now, step);
            self.announce_if_reopened(&id, before, drew, now, step);
        }
    }
}
