//! Who works on a task: the coordinator draws every slot (replicas, the audit replica,
//! escalations) among the workers ready for the task's class, by the scores the open epoch's
//! committed seed gives them (SPEC.md §12.1), and a claim only takes a slot its worker was
//! drawn for. An offer that lapses costs nothing; a lease let expire is a
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

    /// Forgets readiness older than `live_secs` and cooldowns over for an hour (lapses that far
    /// apart are not a run): the soft state stays as large as the set of keys asking now, not
    /// every key that ever asked, and a draw walks only those.
    pub(super) fn prune_soft_state(&mut self, now: u64) {
        let live = self.cfg.tunables.live_secs;
        for ready in self.seen.values_mut() {
            ready.retain(|_, at| now.saturating_sub(*at) <= live);
        }
        self.seen.retain(|_, ready| !ready.is_empty());
        self.cooldown.retain(|_, (_, until)| now < until.saturating_add(3_600));
    }

    /// The epoch whose seed, roster and beacon a draw made now uses (SPEC.md §12.1): the open
    /// one once armed, else the one before, which closed armed. Draws never wait for Bitcoin.
    pub fn draw_epoch(&self) -> (u32, Beacon) {
        let open = self.meta.next_epoch;
        match &self.meta.last_header {
            Some(h) if !self.armed() => (h.body.height, h.body.beacon),
            _ => (open, self.meta.beacon.unwrap_or(Beacon::None)),
        }
    }

    /// A worker took an offer: its run of lapses ends.
    pub(super) fn took_offer(&mut self, worker: &PubKey) {
        self.cooldown.remove(worker);
    }

    /// Draws workers for the slots of a task in its commit phase that nobody holds, one at a
    /// time among the ready workers that are `eligible`; each drawn worker gets an offer for
    /// `offer_secs`. Returns the workers drawn (they must hear of the task again).
    ///
    /// The drawn worker is the candidate with the lowest `draw::score` under the draw epoch's
    /// seed and beacon ([`Machine::draw_epoch`]), taken from the first group that holds one.
    /// Groups are ordered by: not a second under-staked key on the task (SPEC.md §12.4), then
    /// fresh (not having let a slot of this task go, not cooling down), then on the draw
    /// epoch's roster (§12.1). An auditor recomputes the scores once the draw epoch's header
    /// reveals the seed, and sees which ranked keys were passed over.
    pub(super) fn fill_slots(&mut self, id: &Hash32, now: u64) -> Vec<PubKey> {
        let mut drawn = Vec::new();
        let t = &self.cfg.tunables;
        let (offer_secs, live_secs, max_leases) = (t.offer_secs, t.live_secs, t.max_leases_per_worker);
        let (epoch, beacon) = self.draw_epoch();
        let of_open_epoch = epoch == self.meta.next_epoch;
        let dseed = self.draw_seed(epoch);
        let need = stake_needed(self.slot_reward(id), t.slot_stake_ppm);
        let Machine { open, seen, workers, leases, cooldown, roster, prev_roster, ledger, cfg, .. } = self;
        let roster = if of_open_epoch { &*roster } else { &*prev_roster };
        let tunables = &cfg.tunables;
        let Some(rec) = open.get_mut(id) else { return drawn };
        if rec.phase != Phase::Commit {
            return drawn;
        }
        let input = rec.task.input.content_hash();
        while rec.assignments.len() < usize::from(rec.wanted) {
            let cooling = |k: &PubKey| cooldown.get(k).is_some_and(|(_, until)| now < *until);
            // A key with less at stake than the slot needs (a new key, most often) may hold
            // one slot of a task: keys that cost nothing can then neither fill a task's
            // replicas nor outvote its workers, while a new key still earns its first credit.
            let understaked = |k: &PubKey| light(workers, ledger, tunables, k, need);
            let one_already = rec.assignments.iter().any(|a| a.light);
            // Workers that let a slot of this task go, or are cooling down after lapses, are
            // drawn only when nobody else is ready: the task must not wait for ever on a
            // network of few workers.
            let best = seen
                .get(&rec.task.class)
                .into_iter()
                .flatten()
                .filter(|(_, at)| now.saturating_sub(**at) <= live_secs)
                .map(|(k, _)| *k)
                .filter(|k| eligible(workers, leases, rec, k, max_leases))
                .map(|k| {
                    let stale = rec.declined.contains(&k) || cooling(&k);
                    let group = (one_already && understaked(&k), stale, !roster.contains(&k));
                    (group, draw::score(&dseed, &beacon, &rec.task.class, &input, &k).0, k)
                })
                .min_by(|a, b| (a.0, a.1).cmp(&(b.0, b.1)));
            let Some((_, _, worker)) = best else { break };
            let is_light = understaked(&worker);
            rec.assignments.push(Assignment {
                worker,
                lease_expires: now.saturating_add(offer_secs),
                commitment: None,
                revealed: None,
                audit: rec.audit_drawn || rec.escalations > 0,
                offered: true,
                verdict: None,
                receipt: None,
                drawn_in: epoch,
                light: is_light,
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

/// What a worker must have at stake (locked credit plus admission value) to hold a slot
/// paying `reward` beside another worker that has less: `ppm · reward / 10^6`, rounded up.
pub(super) fn stake_needed(reward: u64, ppm: u32) -> u64 {
    let n = u128::from(reward) * u128::from(ppm);
    u64::try_from(n.div_ceil(1_000_000)).unwrap_or(u64::MAX)
}

/// Whether `k` is light for a slot that needs `need` at stake: its locked credit plus its
/// admission value (`pow_value_sats` when admitted by work; a bond counts nothing) is less.
pub(super) fn light(
    workers: &BTreeMap<PubKey, WorkerRecord>,
    ledger: &BTreeMap<PubKey, LedgerEntry>,
    t: &Tunables,
    k: &PubKey,
    need: u64,
) -> bool {
    let locked = ledger.get(k).map_or(0, |e| e.locked);
    let admission = workers
        .get(k)
        .filter(|w| w.registration.body.work_bits() >= t.pow_difficulty)
        .map_or(0, |_| t.pow_value_sats);
    locked.saturating_add(admission) < need
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
