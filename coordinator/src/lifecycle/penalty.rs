//! What a worker loses: a miss (a lease let expire, a commitment never revealed) costs the
//! slot's reward out of its locked credit and resets its streak (so its next tasks are
//! audited); `max_misses` misses not worked off (each accepted result works one off), or
//! fraud, is a ban that forfeits all its locked credit.
//!
//! Owns forfeits and bans and the rows they touch. Must never take more than is locked, nor
//! touch claimable or paid credit: settled money is the worker's.

use super::*;

impl Machine {
    /// A worker missed an assignment on `task` whose slot pays `cost`: its streak restarts, its
    /// misses grow (for a worker with credit locked, once per `miss_window_secs` from the last
    /// counted miss: slots that lapse in one outage are one miss; otherwise once per second),
    /// and up to `cost` of its locked credit is forfeited.
    /// Returns true when this miss banned it (the caller releases its slots).
    pub(super) fn miss(
        &mut self,
        worker: PubKey,
        task: Hash32,
        cost: u64,
        now: u64,
        step: &mut Step,
    ) -> bool {
        let max = self.cfg.tunables.max_misses;
        // Only a worker with credit locked is forgiven an outage: it pays for each slot it
        // misses. A key with nothing at stake would miss for free, so each of its misses counts.
        let window = if self.ledger.get(&worker).is_some_and(|e| e.locked > 0) {
            self.cfg.tunables.miss_window_secs.max(1)
        } else {
            1
        };
        let Some(w) = self.workers.get_mut(&worker) else { return false };
        if w.banned.is_some() {
            return false;
        }
        w.streak = 0;
        // The window runs from the counted miss, not the newest: a key lapsing every few
        // seconds cannot stretch one outage for ever.
        if w.misses == 0 || now >= w.last_miss.saturating_add(window) {
            w.misses = w.misses.saturating_add(1);
            w.last_miss = now;
        }
        let misses = w.misses;
        self.touch_worker(worker, step);
        self.forfeit(worker, cost, step);
        if misses >= max {
            return self.ban(
                worker,
                format!("missed {misses} assignments without working them off"),
                task,
                now,
                step,
            );
        }
        false
    }

    /// Bans a worker: every satoshi it has locked is forfeited and its requests are refused from
    /// now on. Returns false when it was banned already. The caller releases its slots.
    pub(super) fn ban(
        &mut self,
        worker: PubKey,
        reason: String,
        task: Hash32,
        now: u64,
        step: &mut Step,
    ) -> bool {
        match self.workers.get(&worker) {
            Some(w) if w.banned.is_none() => {}
            _ => return false,
        }
        let locked = self.ledger.get(&worker).map_or(0, |e| e.locked);
        let forfeited = self.forfeit(worker, locked, step);
        let Some(w) = self.workers.get_mut(&worker) else { return false };
        let before = Standing::of(w);
        w.banned = Some(Ban { reason, task, forfeited, at: now });
        self.standings.moved(Some(before), Standing::Banned);
        self.touch_worker(worker, step);
        true
    }

    /// Takes up to `amount` of `worker`'s locked credit, newest epoch first; returns what was
    /// taken (counted as forfeited).
    pub(super) fn forfeit(&mut self, worker: PubKey, amount: u64, step: &mut Step) -> u64 {
        let mut left = amount;
        let held: Vec<u32> =
            self.meta.locked.iter().rev().filter(|(_, b)| b.contains_key(&worker)).map(|(h, _)| *h).collect();
        for h in held {
            if left == 0 {
                break;
            }
            let Some(bucket) = self.meta.locked.get_mut(&h) else { continue };
            let Some(v) = bucket.get_mut(&worker) else { continue };
            let take = (*v).min(left);
            *v -= take;
            left -= take;
            if *v == 0 {
                bucket.remove(&worker);
            }
            self.touch_lock(h, worker, step);
        }
        self.meta.locked.retain(|_, b| !b.is_empty());
        let taken = amount - left;
        if taken > 0 {
            if let Some(e) = self.ledger.get_mut(&worker) {
                e.locked = e.locked.saturating_sub(taken);
            }
            self.meta.forfeited = self.meta.forfeited.saturating_add(taken);
            self.touch_ledger(worker, step);
        }
        taken
    }

    /// The worker's row is written with this step (once at the end of a group commit).
    pub(super) fn touch_worker(&mut self, worker: PubKey, step: &mut Step) {
        if self.group_commit {
            self.group_rows.workers.insert(worker);
        } else if let Some(w) = self.workers.get(&worker) {
            step.changes.push(Change::Worker(Box::new(w.clone())));
        }
    }

    /// The worker's ledger row is written with this step.
    pub(super) fn touch_ledger(&mut self, worker: PubKey, step: &mut Step) {
        if self.group_commit {
            self.group_rows.ledger.insert(worker);
        } else if let Some(e) = self.ledger.get(&worker) {
            step.changes.push(Change::Ledger(e.clone()));
        }
    }

    /// The worker's locked amount for `epoch` is written with this step (0 deletes the row).
    pub(super) fn touch_lock(&mut self, epoch: u32, worker: PubKey, step: &mut Step) {
        if self.group_commit {
            self.group_rows.locks.insert((epoch, worker));
        } else {
            let amount = self.meta.locked.get(&epoch).and_then(|b| b.get(&worker)).copied().unwrap_or(0);
            step.changes.push(Change::Lock { epoch, worker, amount });
        }
    }
}
