//! Who works on a task: the coordinator draws every slot (replicas, the audit replica,
//! escalations) at random among the workers ready for the task's class, and a claim only takes
//! a slot its worker was drawn for. An offer that lapses costs nothing; a lease let expire is a
//! miss (`penalty`).
//!
//! Owns the draw and the offers. Must never let a worker pick its slot (first come is not
//! first served), and never draw from a worker's own claim order or anything a worker chooses.

use super::*;

impl Machine {
    /// A worker asked for a task of `class` at `now`: it is ready to be drawn for that
    /// class's slots for `live_secs`. Soft state, never persisted.
    pub(super) fn mark_ready(&mut self, class: Hash32, worker: PubKey, now: u64) {
        self.seen.entry(class).or_default().insert(worker, now);
    }

    /// A worker let an offer or a lease lapse: it cools down for `offer_secs × 2^(n−1)` (at
    /// most an hour) after its n-th lapse in a row, drawn only when no other worker is ready,
    /// so keys that never answer cannot hold up a task's slots one after another. Taking an
    /// offer ends the run.
    fn lapsed(&mut self, worker: PubKey, now: u64) {
        let offer_secs = self.cfg.tunables.offer_secs;
        let e = self.cooldown.entry(worker).or_insert((0, 0));
        e.0 = e.0.saturating_add(1);
        let wait = offer_secs.saturating_mul(1u64 << (e.0 - 1).min(20)).min(3_600);
        e.1 = now.saturating_add(wait);
    }

    /// A worker took an offer: its run of lapses ends.
    pub(super) fn took_offer(&mut self, worker: &PubKey) {
        self.cooldown.remove(worker);
    }

    /// Draws workers for the slots of a task in its commit phase that nobody holds, one at a
    /// time among the ready workers that are `eligible`; each drawn worker gets an offer for
    /// `offer_secs`. Returns the workers drawn (they must hear of the task again).
    pub(super) fn fill_slots(&mut self, id: &Hash32, now: u64) -> Vec<PubKey> {
        let mut drawn = Vec::new();
        let t = &self.cfg.tunables;
        let (offer_secs, live_secs, max_leases) = (t.offer_secs, t.live_secs, t.max_leases_per_worker);
        let Machine { open, seen, workers, leases, seed, cooldown, .. } = self;
        let Some(rec) = open.get_mut(id) else { return drawn };
        if rec.phase != Phase::Commit {
            return drawn;
        }
        while rec.assignments.len() < usize::from(rec.wanted) {
            let ready: Vec<PubKey> = seen
                .get(&rec.task.class)
                .into_iter()
                .flatten()
                .filter(|(_, at)| now.saturating_sub(**at) <= live_secs)
                .map(|(k, _)| *k)
                .filter(|k| eligible(workers, leases, rec, k, max_leases))
                .collect();
            // Workers that let a slot of this task go, or are cooling down after lapses, are
            // drawn only when nobody else is ready: the task must not wait for ever on a
            // network of few workers.
            let cooling = |k: &PubKey| cooldown.get(k).is_some_and(|(_, until)| now < *until);
            let fresh: Vec<PubKey> =
                ready.iter().filter(|k| !rec.declined.contains(k) && !cooling(k)).copied().collect();
            let cands = if fresh.is_empty() { ready } else { fresh };
            if cands.is_empty() {
                break;
            }
            let pick = draw_index(seed, rec, cands.len());
            let Some(worker) = cands.get(pick).copied() else { break };
            rec.assignments.push(Assignment {
                worker,
                lease_expires: now.saturating_add(offer_secs),
                commitment: None,
                revealed: None,
                audit: rec.audit_drawn,
                offered: true,
                verdict: None,
                receipt: None,
            });
            *leases.entry(worker).or_default() += 1;
            drawn.push(worker);
        }
        drawn
    }

    /// Returns the uncommitted slots of a task in its commit phase whose time is up: a lapsed
    /// offer costs nothing, a lease let expire is a miss; neither worker counts as ready until
    /// it asks again, nor is drawn for the task again while others are ready. Returns whether a slot was
    /// returned and the workers banned for missing.
    pub(super) fn sweep_slots(&mut self, id: &Hash32, now: u64, step: &mut Step) -> (bool, Vec<PubKey>) {
        let Some(rec) = self.open.get_mut(id) else { return (false, Vec::new()) };
        if rec.phase != Phase::Commit {
            return (false, Vec::new());
        }
        let class = rec.task.class;
        let mut lapsed = Vec::new();
        let mut missed = Vec::new();
        rec.assignments.retain(|a| {
            let expired = a.commitment.is_none() && a.lease_expires <= now;
            if expired {
                if a.offered {
                    lapsed.push(a.worker);
                } else {
                    missed.push(a.worker);
                }
            }
            !expired
        });
        // Neither is drawn for this task again: one did not answer, the other let it go.
        for w in lapsed.iter().chain(&missed) {
            if rec.declined.len() >= records::MAX_DECLINED {
                rec.declined.remove(0);
            }
            rec.declined.push(*w);
        }
        let task = rec.id;
        let cost = self.slot_reward(id);
        let changed = !lapsed.is_empty() || !missed.is_empty();
        for w in lapsed.iter().chain(&missed) {
            if let Some(n) = self.leases.get_mut(w) {
                *n = n.saturating_sub(1);
            }
        }
        // Neither counts as ready any more: it did not act on its slot.
        for w in lapsed.iter().chain(&missed) {
            if let Some(ready) = self.seen.get_mut(&class) {
                ready.remove(w);
            }
        }
        for w in lapsed.iter().chain(&missed) {
            self.lapsed(*w, now);
        }
        let mut banned = Vec::new();
        for w in missed {
            if let Some(rec) = self.workers.get_mut(&w) {
                rec.note_rejection(Rejection {
                    task,
                    verdict: None,
                    reason: "lease expired without a commitment".into(),
                    at: now,
                });
            }
            if self.miss(w, task, cost, now, step) {
                banned.push(w);
            }
        }
        (changed, banned)
    }

    /// What one slot of a task pays (the class's reward per unit times the task's units).
    pub(super) fn slot_reward(&self, id: &Hash32) -> u64 {
        self.open
            .get(id)
            .and_then(|t| {
                let c = self.classes.get(&t.task.class)?;
                Some(c.reward_per_unit.saturating_mul(u64::from(t.task.units)))
            })
            .unwrap_or(0)
    }
}

/// Whether `k` may be drawn for a slot of `rec`: admitted, not on the task, and holding fewer
/// uncommitted slots than the limit.
fn eligible(
    workers: &BTreeMap<PubKey, WorkerRecord>,
    leases: &HashMap<PubKey, u32>,
    rec: &TaskRecord,
    k: &PubKey,
    max_leases: u32,
) -> bool {
    workers.get(k).is_some_and(|w| w.banned.is_none() && w.bond_lost.is_none())
        && !rec.assignments.iter().any(|a| a.worker == *k)
        && leases.get(k).copied().unwrap_or(0) < max_leases
}

/// The draw of one slot: a hash of the node's secret seed, the task, the number of slots
/// held, the workers that let a slot of it go, its escalations and audit draw, reduced to an
/// index among `n` candidates (in key order). Workers cannot predict it (the seed is secret) nor steer it (nothing in it is
/// theirs to choose).
fn draw_index(seed: &[u8; 32], rec: &TaskRecord, n: usize) -> usize {
    let mut pre = b"cairn/assign".to_vec();
    pre.extend_from_slice(seed);
    pre.extend_from_slice(&rec.id.0);
    pre.extend_from_slice(&(rec.assignments.len() as u32).to_be_bytes());
    pre.extend_from_slice(&(rec.declined.len() as u32).to_be_bytes());
    for k in &rec.declined {
        pre.extend_from_slice(k.as_bytes());
    }
    pre.extend_from_slice(&u32::from(rec.escalations).to_be_bytes());
    pre.extend_from_slice(&[u8::from(rec.audit_drawn)]);
    let d = sha256(&pre).0;
    let r = u64::from_be_bytes([d[0], d[1], d[2], d[3], d[4], d[5], d[6], d[7]]);
    (r % n.max(1) as u64) as usize
}
