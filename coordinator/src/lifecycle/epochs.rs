//! Time, chain tips and money: ticks (expired leases, deadlines), epochs closed into signed
//! headers, settlement (locked → claimable) and payouts confirmed.
//!
//! Owns when money moves. Must never decide when an anchor is deep enough: the anchor machine
//! says which epoch settled.

use super::*;

impl Machine {
    /// The newest Bitcoin block: mixed into audit draws so they cannot be precomputed.
    pub fn on_chain_tip(&mut self, height: u32, hash: Hash32) -> Step {
        if self.meta.chain_tip == Some((height, hash)) {
            return Step::default();
        }
        self.meta.chain_tip = Some((height, hash));
        self.finish(Step { changes: vec![], ..Step::default() }).with_meta(&self.meta)
    }

    /// The node starts again at `now` after being down: the clocks workers were racing
    /// (offers, leases, reveal windows) restart from now, so time the node could not hear
    /// them is never charged to them as misses.
    pub fn resume(&mut self, now: u64) -> Step {
        let t = &self.cfg.tunables;
        let offer_secs = t.offer_secs;
        let mut step = Step::default();
        for rec in self.open.values_mut() {
            let Some(class) = self.classes.get(&rec.task.class) else { continue };
            let mut changed = false;
            for a in rec.assignments.iter_mut().filter(|a| a.commitment.is_none()) {
                let secs = if a.offered { offer_secs } else { u64::from(class.lease_secs) };
                let end = now.saturating_add(secs);
                if a.lease_expires < end {
                    a.lease_expires = end;
                    changed = true;
                }
            }
            if let Phase::Reveal { deadline } = rec.phase {
                let end = now.saturating_add(u64::from(class.reveal_secs));
                if deadline < end {
                    rec.phase = Phase::Reveal { deadline: end };
                    changed = true;
                }
            }
            if changed {
                step.changes.push(Change::Task(Box::new(rec.clone())));
            }
        }
        // Canaries that fell due while the node was down would all come out at once, first
        // among the new tasks: they are dropped (their inputs stay unused).
        let before = self.meta.canary_due.len();
        self.meta.canary_due.retain(|(at, ..)| *at > now);
        if self.meta.canary_due.len() != before {
            step.changes.push(Change::Meta(Box::new(self.meta.clone())));
        }
        self.finish(step)
    }

    /// Time passes: lapsed offers and expired leases return their slots, slots nobody holds
    /// are drawn among the workers ready now, reveal deadlines close, a due epoch closes.
    pub fn tick(&mut self, now: u64) -> Step {
        let mut step = Step::default();
        let due: Vec<Hash32> = self
            .open
            .values()
            .filter(|t| match t.phase {
                Phase::Commit => {
                    t.assignments.len() < usize::from(t.wanted)
                        || t.assignments.iter().any(|a| a.commitment.is_none() && a.lease_expires <= now)
                }
                Phase::Reveal { deadline } => deadline <= now,
                _ => false,
            })
            .map(|t| t.id)
            .collect();
        for id in due {
            self.advance(&id, now, &mut step);
        }
        self.prune_soft_state(now);
        self.maybe_close_epoch(now, &mut step);
        self.finish(step)
    }

    /// Epochs up to `epoch` are settled (anchored deep enough, challenge window over): their
    /// locked credits become claimable, and balances over the threshold are paid out.
    pub fn settle(&mut self, epoch: u32, now: u64) -> Step {
        if self.meta.settled_epoch.is_some_and(|s| s >= epoch) {
            return Step::default();
        }
        let mut step = Step { sync: true, ..Step::default() };
        let ready: Vec<u32> = self.meta.locked.range(..=epoch).map(|(h, _)| *h).collect();
        let mut touched = std::collections::BTreeSet::new();
        for h in ready {
            let Some(bucket) = self.meta.locked.remove(&h) else { continue };
            for (worker, amount) in bucket {
                if let Some(e) = self.ledger.get_mut(&worker) {
                    e.locked = e.locked.saturating_sub(amount);
                    e.claimable = e.claimable.saturating_add(amount);
                    touched.insert(worker);
                }
                step.changes.push(Change::Lock { epoch: h, worker, amount: 0 });
            }
        }
        self.meta.settled_epoch = Some(epoch);
        let mut payouts = Vec::new();
        for worker in touched {
            let address = match (self.workers.get(&worker), self.scoring.validators.get(&worker)) {
                (Some(w), _) if w.banned.is_none() => w.registration.body.payout_address.clone(),
                (None, Some(v)) => v.registration.body.payout_address.clone(),
                _ => String::new(),
            };
            let Some(e) = self.ledger.get_mut(&worker) else { continue };
            if !address.is_empty()
                && e.claimable >= self.cfg.tunables.payout_threshold_sats
                && e.claimable > 0
            {
                let p = PayoutRecord {
                    id: self.meta.next_payout,
                    worker,
                    address,
                    amount: e.claimable,
                    queued_at: now,
                    status: PayoutStatus::Queued,
                };
                self.meta.next_payout += 1;
                e.paid = e.paid.saturating_add(e.claimable);
                e.claimable = 0;
                self.queued_payouts.insert(p.id, p.clone());
                step.changes.push(Change::Payout(p.clone()));
                payouts.push(p);
            }
            step.changes.push(Change::Ledger(e.clone()));
        }
        if !payouts.is_empty() {
            self.meta.payouts_waiting = true;
            step.effects.push(Effect::Payouts(payouts));
        }
        step.changes.push(Change::Meta(Box::new(self.meta.clone())));
        step
    }

    /// Payouts confirmed in an anchor transaction.
    pub fn payouts_confirmed(&mut self, ids: &[u64], txid: bitcoin::Txid, height: u32) -> Step {
        let mut step = Step { sync: true, ..Step::default() };
        for id in ids {
            if let Some(mut p) = self.queued_payouts.remove(id) {
                p.status = PayoutStatus::Paid { txid, height };
                step.changes.push(Change::Payout(p));
            }
        }
        step
    }

    /// Arms the open epoch `epoch` with its beacon: the block right after the one holding
    /// the anchor of the header before (whose id is `after`), now final (the driver reads it
    /// from Bitcoin). Its draws then use its own seed and roster, and it may close. Ignored
    /// for another epoch, for epoch 0 (nothing committed to its draws) and on a node without
    /// beacons. A different beacon while the epoch is open (a reorg deeper than the finality
    /// depth moved the anchor) replaces the old one, so the header names the block Bitcoin has.
    pub fn arm(&mut self, epoch: u32, after: Hash32, beacon: Beacon) -> Step {
        let fits = self.cfg.beacons
            && epoch > 0
            && epoch == self.meta.next_epoch
            && self.meta.last_header.as_ref().is_some_and(|h| h.id() == after)
            && self.meta.beacon != Some(beacon)
            && matches!(beacon, Beacon::Block { .. });
        if !fits {
            return Step::default();
        }
        self.meta.beacon = Some(beacon);
        self.finish(Step::default()).with_meta(&self.meta)
    }

    /// Binds the chain to its anchor key and genesis output (SPEC.md §7.1), as the anchor
    /// side chose them. Set once: ignored on a node without Bitcoin, when already bound, or
    /// for an unbound value.
    pub fn bind(&mut self, binding: AnchorBinding) -> Step {
        if !self.cfg.beacons || self.meta.anchor.is_some() || binding == AnchorBinding::None {
            return Step::default();
        }
        self.meta.anchor = Some(binding);
        self.finish(Step::default()).with_meta(&self.meta)
    }

    /// Whether the chain can sign headers: bound to its anchor key, or not anchored.
    pub fn bound(&self) -> bool {
        !self.cfg.beacons || self.meta.anchor.is_some()
    }

    /// Whether the open epoch's draws use its own seed and roster: it is armed, or the node
    /// draws without beacons.
    pub fn armed(&self) -> bool {
        !self.cfg.beacons || self.meta.next_epoch == 0 || self.meta.beacon.is_some()
    }

    /// Closes the open epoch now if it holds any receipt or payouts wait for an anchor.
    pub fn close_epoch(&mut self, now: u64) -> Step {
        let mut step = Step::default();
        if self.meta.open_receipts > 0 || self.meta.payouts_waiting || self.scoring.waiting() {
            self.close(now, &mut step);
        }
        self.finish(step)
    }

    pub(super) fn maybe_close_epoch(&mut self, now: u64, step: &mut Step) {
        let m = &self.meta;
        let due = now >= m.epoch_opened_at.saturating_add(self.cfg.tunables.epoch_interval_secs);
        let full = m.open_receipts >= self.cfg.tunables.epoch_max_receipts && self.count_may_close(now);
        if (m.open_receipts > 0 && (full || due)) || ((m.payouts_waiting || self.scoring.waiting()) && due) {
            self.close(now, step);
        }
    }

    pub(super) fn close(&mut self, now: u64, step: &mut Step) {
        let height = self.meta.next_epoch;
        // An epoch closes armed (SPEC.md §12.1): its header carries the beacon its draws
        // used, and the next header cannot be signed before this one's anchor is in a block.
        let beacon = match (self.cfg.beacons && height > 0, self.meta.beacon) {
            (false, _) => Beacon::None,
            (true, Some(b)) => b,
            (true, None) => return,
        };
        // Every header names the anchor key and genesis output (SPEC.md §7.1): the first
        // waits until the anchor side chose them.
        let anchor = match (self.cfg.beacons, self.meta.anchor) {
            (false, _) => AnchorBinding::None,
            (true, Some(b)) => b,
            (true, None) => return,
        };
        let prev = self.meta.last_header.as_ref().map(|h| h.id()).unwrap_or(Hash32::ZERO);
        // Rounds credit the ledger this header's state root commits.
        let rounds = self.close_rounds(height, step);
        let entries: Vec<LedgerEntry> = self.ledger.values().cloned().collect();
        let leaves: Vec<Hash32> = entries.iter().map(|e| e.id()).collect();
        // The next epoch's draws rank every worker admitted now (the earliest admitted, when
        // more than a roster holds: keys registered in a flood cannot push others out); the
        // header commits to them, and to the next seed, before any of those draws is made
        // (SPEC.md §12.1).
        let mut admitted: Vec<(u64, PubKey)> = self
            .workers
            .values()
            .filter(|w| Standing::of(w) == Standing::Active)
            .map(|w| (w.registered_at, w.key()))
            .collect();
        if admitted.len() > Roster::MAX_KEYS {
            admitted.sort_unstable_by(|a, b| a.0.cmp(&b.0).then_with(|| a.1.as_bytes().cmp(b.1.as_bytes())));
            admitted.truncate(Roster::MAX_KEYS);
        }
        let roster = Roster::new(admitted.into_iter().map(|(_, k)| k).collect());
        let header = EpochHeader {
            network: self.cfg.network,
            coordinator: self.me,
            height,
            prev,
            receipts_root: self.open_leaves.root(),
            state_root: merkle::root(&leaves),
            receipt_count: self.meta.open_receipts,
            accepted_count: self.meta.open_accepted,
            reward_sats: self.meta.open_reward,
            time: now,
            draw_seed: self.draw_seed(height),
            next_seed_hash: draw::seed_hash(&self.draw_seed(height.saturating_add(1))),
            next_roster: roster.root(),
            beacon,
            anchor,
            scores_root: cairn_spec::rounds::scores_root(&rounds),
            history: self.meta.history.root(),
        };
        let signed = self.sign(header);
        self.meta.history.push(signed.id());
        let payload = AnchorPayload { height, header_hash: signed.id() };
        self.meta.next_epoch = height.saturating_add(1);
        self.meta.last_header = Some(signed.clone());
        self.meta.epoch_opened_at = now;
        self.meta.open_receipts = 0;
        self.meta.open_accepted = 0;
        self.meta.open_reward = 0;
        self.meta.payouts_waiting = false;
        self.meta.beacon = None;
        self.open_leaves = merkle::Frontier::new();
        step.changes.push(Change::Epoch {
            header: Box::new(signed.clone()),
            ledger: entries,
            roster: Some(Box::new(roster.clone())),
        });
        self.prev_roster = std::mem::replace(&mut self.roster, roster);
        step.effects.push(Effect::Epoch(Box::new(signed)));
        step.effects.push(Effect::Anchor(payload));
        step.sync = true;
    }

    /// The seed of the draws made while epoch `height` is open: derived from the
    /// coordinator's secret, so fixed before the header before it commits to it, and unknown
    /// to others until its own header reveals it.
    pub(super) fn draw_seed(&self, height: u32) -> Hash32 {
        draw_seed(&self.seed, height)
    }

    pub(super) fn maybe_close_epoch_on_count(&mut self, now: u64, step: &mut Step) {
        if self.meta.open_receipts >= self.cfg.tunables.epoch_max_receipts && self.count_may_close(now) {
            self.close(now, step);
        }
    }
}

fn draw_seed(secret: &[u8; 32], height: u32) -> Hash32 {
    let mut pre = b"cairn/draw-seed-secret".to_vec();
    pre.extend_from_slice(secret);
    pre.extend_from_slice(&height.to_be_bytes());
    sha256(&pre)
}

/// The draw seed of epoch `height` of the coordinator whose key is `key` (what its header
/// reveals): only the key's holder can compute it in advance.
pub fn draw_seed_of(key: &SigningKey, height: u32) -> Hash32 {
    draw_seed(&secret_seed(key), height)
}
