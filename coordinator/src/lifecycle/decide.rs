//! Deciding a task: phases (commit → reveal → decided), the audit draw, escalation to more
//! replicas, verdicts by the class's rule, receipts and credits; fraud and misses are handed
//! to `penalty`.
//!
//! Owns every verdict and what it pays. Must never read a worker's claim about its
//! own result beyond what it committed to.

use super::*;

impl Machine {
    /// Moves a task forward as far as its state and the time allow, and announces it again
    /// when workers were drawn for it or a slot opened that nobody holds.
    pub(super) fn advance(&mut self, id: &Hash32, now: u64, step: &mut Step) {
        let before = self.open.get(id).map_or(0, unheld_slots);
        let drew = self.advance_phases(id, now, step);
        self.announce_if_reopened(id, before, drew, now, step);
    }

    /// Announces a task again when workers were just drawn for it (`drew`: they must hear of
    /// it to claim) or it gained slots nobody holds (workers that ask for it become ready to be
    /// drawn).
    pub(super) fn announce_if_reopened(
        &mut self,
        id: &Hash32,
        before: usize,
        drew: bool,
        now: u64,
        step: &mut Step,
    ) {
        let Some(t) = self.open.get(id) else { return };
        if drew || unheld_slots(t) > before {
            // Each announcement of a task is a new gossip message: gossip drops a message it
            // has seen (its id is the hash of its bytes), and the signature is deterministic,
            // so a slot opening in the second the task was announced must carry a later time.
            let at = self.announced.get(id).map_or(now, |last| now.max(last.saturating_add(1)));
            let ann = self.sign(TaskAnnouncement { task: t.task.clone(), announced_at: at });
            self.announced.insert(*id, at);
            step.effects.push(Effect::Announce(Box::new(ann.clone())));
            step.effects.extend(super::offers(t, ann));
        }
    }

    /// Moves a task through its phases: commit (slots drawn, leases, commitments) → reveal →
    /// the audit draw, made only once every reveal is in or the window closed, so nothing a
    /// worker sees before its reveal tells an audited task from another → decided. Returns
    /// whether workers were drawn for it.
    pub(super) fn advance_phases(&mut self, id: &Hash32, now: u64, step: &mut Step) -> bool {
        let mut drew = false;
        loop {
            let Some(rec) = self.open.get(id) else { return drew };
            let Some(class) = self.classes.get(&rec.task.class) else { return drew };
            let reveal_secs = u64::from(class.reveal_secs);
            let max = max_replicas(class, self.cfg.tunables.max_escalations);
            match rec.phase {
                Phase::Commit => {
                    let (swept, banned) = self.sweep_slots(id, now, step);
                    for w in banned {
                        self.release_slots(&w, now, step);
                    }
                    let drawn = self.fill_slots(id, now);
                    drew |= !drawn.is_empty();
                    let Some(rec) = self.open.get_mut(id) else { return drew };
                    if rec.committed() < usize::from(rec.wanted) {
                        if swept || !drawn.is_empty() {
                            step.changes.push(Change::Task(Box::new(rec.clone())));
                        }
                        return drew;
                    }
                    rec.phase = Phase::Reveal { deadline: now.saturating_add(reveal_secs) };
                    step.changes.push(Change::Task(Box::new(rec.clone())));
                    step.effects.push(Effect::RevealsOpen(*id));
                }
                Phase::Reveal { deadline } => {
                    let all = rec
                        .assignments
                        .iter()
                        .all(|a| a.commitment.is_none() || a.revealed.is_some() || a.verdict.is_some());
                    if !all && now < deadline {
                        step.changes.push(Change::Task(Box::new(rec.clone())));
                        return drew;
                    }
                    if !rec.audit_drawn {
                        let streak = rec
                            .assignments
                            .iter()
                            .filter(|a| a.commitment.is_some())
                            .filter_map(|a| self.workers.get(&a.worker).map(|w| w.streak))
                            .min()
                            .unwrap_or(0);
                        // The floor rises for workers with little at stake: a lie must cost
                        // more, in expectation, than the slot pays (SPEC.md §12.4).
                        let locked = rec
                            .assignments
                            .iter()
                            .filter(|a| a.commitment.is_some())
                            .map(|a| self.ledger.get(&a.worker).map_or(0, |e| e.locked))
                            .min()
                            .unwrap_or(0);
                        let reward = class.reward_per_unit.saturating_mul(u64::from(rec.task.units));
                        let floor = stake_floor_ppm(reward, locked, self.cfg.tunables.audit_stake_factor)
                            .max(self.cfg.tunables.audit_min_ppm);
                        // Nothing revealed, nothing to audit: the task is decided (and asks
                        // other workers) as it is.
                        // Results of a quality class are judged by its validators, not by
                        // agreement: an audit replica would only disagree.
                        let audit = class.objective.compares_results()
                            && rec.wanted < max
                            && rec.assignments.iter().any(|a| a.revealed.is_some())
                            && audit_draw(&self.seed, &self.meta, rec, streak, floor)
                            // An audit slot nobody could fill would hold the task for ever (a
                            // network of one worker): audit only while someone else can join.
                            && another_worker_can_join(&self.workers, rec);
                        let revealed = rec.assignments.iter().any(|a| a.revealed.is_some());
                        let Some(rec) = self.open.get_mut(id) else { return drew };
                        // Drawn once, over revealed results: a task whose replicas all withheld
                        // is audited when replicas drawn later reveal.
                        rec.audit_drawn = revealed;
                        if audit {
                            close_unrevealed(rec);
                            rec.wanted += 1;
                            rec.phase = Phase::Commit;
                            step.changes.push(Change::Task(Box::new(rec.clone())));
                            continue;
                        }
                    }
                    self.decide(id, now, step);
                }
                Phase::Decided { .. } | Phase::Failed { .. } => return drew,
            }
        }
    }

    pub(super) fn decide(&mut self, id: &Hash32, now: u64, step: &mut Step) {
        // The hash `reveal` recorded for the slot (the same bytes), rather than hashing again.
        fn revealed_hash(rec: &TaskRecord, slot: usize, bytes: &[u8]) -> Hash32 {
            rec.assignments
                .get(slot)
                .and_then(|a| a.revealed)
                .unwrap_or_else(|| cairn_spec::content_hash(bytes))
        }
        let Some(rec) = self.open.get(id) else { return };
        let Some(class) = self.classes.get(&rec.task.class).cloned() else { return };
        let slots: Vec<(usize, Option<&[u8]>)> = rec
            .assignments
            .iter()
            .enumerate()
            .filter(|(_, a)| a.commitment.is_some())
            .map(|(i, a)| (i, self.results.get(&(rec.id, a.worker)).map(Vec::as_slice)))
            .collect();
        let mut verdicts: BTreeMap<usize, SlotVerdict> = BTreeMap::new();
        let mut valid: Vec<(usize, &[u8])> = Vec::new();
        for (i, res) in &slots {
            match res {
                None => {
                    verdicts.insert(
                        *i,
                        SlotVerdict {
                            verdict: Some(Verdict::NoReveal),
                            fraud: false,
                            fine: false,
                            reason: "committed but revealed nothing before the deadline".into(),
                        },
                    );
                }
                Some(b) if !well_formed(&class.rule, b) => {
                    verdicts.insert(
                        *i,
                        SlotVerdict {
                            verdict: Some(Verdict::InvalidResult),
                            fraud: false,
                            fine: false,
                            reason: "result is not well formed for the class's rule".into(),
                        },
                    );
                }
                Some(b) => valid.push((*i, b)),
            }
        }
        let mut accepted: Option<Hash32> = None;
        let mut failure: Option<String> = None;
        if !class.objective.compares_results() {
            // A quality class: every well-formed result is a unit of work, its worth left to
            // the validators' consensus (SPEC.md §13).
            for (i, b) in &valid {
                accepted.get_or_insert_with(|| revealed_hash(rec, *i, b));
                verdicts.insert(
                    *i,
                    SlotVerdict {
                        verdict: Some(Verdict::Accepted),
                        fraud: false,
                        fine: false,
                        reason: String::new(),
                    },
                );
            }
            if accepted.is_none() {
                failure = Some("no well-formed result".into());
            }
        } else if let Some(expected) = &rec.canary {
            for (i, b) in &valid {
                let ok = agree(&class.rule, b, expected);
                if ok {
                    accepted = Some(revealed_hash(rec, *i, b));
                }
                verdicts.insert(
                    *i,
                    SlotVerdict {
                        verdict: Some(if ok { Verdict::Accepted } else { Verdict::CanaryFailed }),
                        fraud: !ok,
                        fine: false,
                        reason: if ok { String::new() } else { "result contradicts a known answer".into() },
                    },
                );
            }
            if accepted.is_none() {
                failure = Some("no correct result".into());
            }
        } else {
            let quorum = if rec.wanted == 1 { 1 } else { 2 };
            let results: Vec<&[u8]> = valid.iter().map(|(_, b)| *b).collect();
            // Whether a key is light was fixed when it was drawn (SPEC.md §12.4): credit that
            // settled or was forfeited since does not change how its result counts.
            let light: Vec<bool> =
                valid.iter().map(|(i, _)| rec.assignments.get(*i).is_some_and(|a| a.light)).collect();
            let mut judgement = judge(&class.rule, &results, &light, quorum);
            // A dispute is settled only once it is clear (three staked votes agree) or no more
            // replicas can be drawn: replicas that agree on an invented result would otherwise
            // outvote the honest replica drawn to audit them.
            let unclear = matches!(&judgement, Judgement::Decided { winners, clear: false } if winners.len() < valid.len());
            let can_grow = self.can_escalate(id, &class, slots.len());
            if unclear && can_grow {
                judgement = Judgement::Undecided;
            }
            match judgement {
                Judgement::Decided { winners, clear } => {
                    for (k, (i, b)) in valid.iter().enumerate() {
                        let win = winners.contains(&k);
                        // Only a replica can be judged a fraud by a vote. A check slot (the
                        // audit replica or an escalation, drawn after the reveals) that loses
                        // is a mismatch: a coalition holding a task's replicas and one
                        // escalation must not turn an honest audit into a ban (SPEC.md §12.2).
                        let check = rec.assignments.get(*i).is_some_and(|a| a.audit);
                        if win && accepted.is_none() {
                            accepted = Some(revealed_hash(rec, *i, b));
                        }
                        verdicts.insert(
                            *i,
                            SlotVerdict {
                                verdict: Some(if win { Verdict::Accepted } else { Verdict::Mismatch }),
                                fraud: !win && clear && !check,
                                fine: !win && clear && check,
                                reason: if win {
                                    String::new()
                                } else {
                                    format!(
                                        "disagreed with {} of {} results under the class's rule",
                                        winners.len(),
                                        valid.len()
                                    )
                                },
                            },
                        );
                    }
                }
                Judgement::Undecided => {
                    let committed = slots.len();
                    let free = self.open.get(id).is_some_and(|r| another_worker_can_join(&self.workers, r));
                    if self.can_escalate(id, &class, committed) {
                        // Never fewer than the class's replication: slots released (a banned
                        // worker's) must not leave a task decided by fewer results.
                        let wanted = u8::try_from(committed + 1).unwrap_or(u8::MAX).max(class.replication);
                        if let Some(rec) = self.open.get_mut(id) {
                            close_unrevealed(rec);
                            rec.escalations = rec.escalations.saturating_add(1);
                            rec.wanted = wanted;
                            rec.phase = Phase::Commit;
                            step.changes.push(Change::Task(Box::new(rec.clone())));
                        }
                        return;
                    }
                    failure = Some(if free {
                        format!("no majority among {} results after {committed} replicas", valid.len())
                    } else {
                        format!(
                            "no majority among {} results after {committed} replicas, and no other worker to ask",
                            valid.len()
                        )
                    });
                    for (i, _) in &valid {
                        verdicts.insert(
                            *i,
                            SlotVerdict {
                                verdict: None,
                                fraud: false,
                                fine: false,
                                reason: "task failed: no majority".into(),
                            },
                        );
                    }
                }
            }
        }
        self.finalize(id, verdicts, accepted, failure, now, step);
    }

    pub(super) fn finalize(
        &mut self,
        id: &Hash32,
        verdicts: BTreeMap<usize, SlotVerdict>,
        accepted: Option<Hash32>,
        failure: Option<String>,
        now: u64,
        step: &mut Step,
    ) {
        let Some(mut rec) = self.open.remove(id) else { return };
        self.announced.remove(id);
        // A quality class pays through its validators' consensus alone (SPEC.md §13).
        let Some(class) = self.classes.get(&rec.task.class) else { return };
        let compares = class.objective.compares_results();
        let per_unit = if compares { class.reward_per_unit } else { 0 };
        let reward = per_unit.saturating_mul(u64::from(rec.task.units));
        let epoch = self.meta.next_epoch;
        // A machine used alone signs each receipt as a batch of one; in a group commit the
        // driver seals them all at once.
        let signer = (!self.group_commit).then(|| self.receipt_signer());
        let mut frauds: Vec<(PubKey, String)> = Vec::new();
        let mut missed: Vec<PubKey> = Vec::new();
        let mut fined: Vec<PubKey> = Vec::new();
        let mut scored: Vec<PubKey> = Vec::new();
        for (i, a) in rec.assignments.iter_mut().enumerate() {
            self.results.remove(&(rec.id, a.worker));
            let Some(sv) = verdicts.get(&i) else {
                // An uncommitted lease on a task that is over.
                if let Some(n) = self.leases.get_mut(&a.worker) {
                    *n = n.saturating_sub(1);
                }
                continue;
            };
            let Some(w) = self.workers.get_mut(&a.worker) else { continue };
            a.verdict = sv.verdict;
            if let Some(v) = sv.verdict {
                let paid = if v.is_accepted() { reward } else { 0 };
                let receipt = WorkReceipt {
                    network: self.cfg.network,
                    coordinator: self.me,
                    epoch,
                    task: rec.id,
                    class: rec.task.class,
                    worker: a.worker,
                    result_hash: a.revealed.unwrap_or(Hash32::ZERO),
                    verdict: v,
                    units: rec.task.units,
                    reward_sats: paid,
                    // A slot drawn in an epoch still open when the receipt is issued cannot
                    // be later than it; `min` only guards a corrupt record.
                    draw_epoch: a.drawn_in.min(epoch),
                };
                let rid = receipt.id();
                // Alone, a receipt is a batch of one; in a group commit the driver seals the
                // group's receipts as one batch (`ReceiptSigner`).
                let (change, effect) = match &signer {
                    None => (
                        Change::UnsealedReceipt {
                            index: self.meta.open_receipts,
                            id: rid,
                            body: Box::new(receipt.clone()),
                        },
                        Effect::UnsealedReceipt(Box::new(receipt)),
                    ),
                    Some(signer) => {
                        let signed = SignedReceipt::seal_one(rid, receipt, |m| signer.sign_batch(m));
                        (
                            Change::Receipt {
                                index: self.meta.open_receipts,
                                id: rid,
                                receipt: Box::new(signed.clone()),
                            },
                            Effect::Receipt(Box::new(signed)),
                        )
                    }
                };
                a.receipt = Some(rid);
                self.open_leaves.push(rid);
                self.meta.open_receipts += 1;
                if v.is_accepted() {
                    self.meta.open_accepted += 1;
                    self.meta.open_reward = self.meta.open_reward.saturating_add(paid);
                    self.meta.credited = self.meta.credited.saturating_add(paid);
                    scored.push(a.worker);
                    // A unit of a quality class earns nothing by itself (its round pays).
                    if paid > 0 {
                        let e = self.ledger.entry(a.worker).or_insert(LedgerEntry {
                            worker: a.worker,
                            locked: 0,
                            claimable: 0,
                            paid: 0,
                        });
                        e.locked = e.locked.saturating_add(paid);
                        let bucket = self.meta.locked.entry(epoch).or_default().entry(a.worker).or_default();
                        *bucket = bucket.saturating_add(paid);
                        if self.group_commit {
                            self.group_rows.locks.insert((epoch, a.worker));
                            self.group_rows.ledger.insert(a.worker);
                        } else {
                            step.changes.push(Change::Lock { epoch, worker: a.worker, amount: *bucket });
                            step.changes.push(Change::Ledger(e.clone()));
                        }
                    }
                    // Junk is accepted in a quality class (its validators judge it): it
                    // builds no record that lowers a worker's audits or forgives its misses.
                    if compares {
                        w.streak = w.streak.saturating_add(1);
                        w.misses = w.misses.saturating_sub(1);
                        w.accepted += 1;
                    }
                } else {
                    w.streak = 0;
                    w.rejected += 1;
                }
                step.changes.push(change);
                self.meta.counts.receipts += 1;
                step.effects.push(effect);
            }
            if sv.verdict != Some(Verdict::Accepted) {
                w.note_rejection(Rejection {
                    task: rec.id,
                    verdict: sv.verdict,
                    reason: sv.reason.clone(),
                    at: now,
                });
            }
            if sv.fraud {
                frauds.push((a.worker, sv.reason.clone()));
            } else if sv.fine {
                fined.push(a.worker);
            } else if matches!(sv.verdict, Some(Verdict::NoReveal | Verdict::InvalidResult)) {
                // A malformed reveal is no answer: it costs what withholding costs, or keys
                // could sit in slots revealing zeros for free (SPEC.md §12.3).
                missed.push(a.worker);
            }
            if self.group_commit {
                self.group_rows.workers.insert(a.worker);
            } else {
                step.changes.push(Change::Worker(Box::new(w.clone())));
            }
        }
        self.meta.locked.retain(|_, b| !b.is_empty());
        for w in scored {
            self.count_task(epoch, &rec.task.class, w, step);
        }
        rec.phase = match (accepted, failure) {
            (Some(result), _) => {
                self.meta.counts.decided += 1;
                Phase::Decided { result, at: now }
            }
            (None, reason) => {
                self.meta.counts.failed += 1;
                Phase::Failed { reason: reason.unwrap_or_else(|| "no result".into()), at: now }
            }
        };
        self.finished.insert(rec.id, ());
        let task = rec.id;
        step.changes.push(Change::Task(Box::new(rec)));
        step.sync = true;
        let mut banned_now = Vec::new();
        for (w, why) in frauds {
            if self.ban(w, why, task, now, step) {
                banned_now.push(w);
            }
        }
        for w in fined {
            // A check slot that lost a clear vote pays what the slot would have paid: lying
            // where it cannot be banned must still cost.
            self.forfeit(w, reward, step);
        }
        for w in missed {
            // A commitment never revealed (or revealed malformed) costs what its slot would
            // have paid.
            if self.miss(w, task, reward, now, step) {
                banned_now.push(w);
            }
        }
        for w in banned_now {
            self.release_slots(&w, now, step);
        }
        self.maybe_close_epoch_on_count(now, step);
    }
}

impl Machine {
    /// Whether task `id`, with `committed` slots committed, may draw one more replica: fewer
    /// than `max_escalations` escalations so far, room under the replica cap, and some
    /// admitted worker not on the task yet (otherwise the slot could never be filled and the
    /// task would wait for ever: found by the long chaos run, three workers all on one task).
    fn can_escalate(&self, id: &Hash32, class: &TaskClass, committed: usize) -> bool {
        let max = max_replicas(class, self.cfg.tunables.max_escalations);
        self.open.get(id).is_some_and(|r| {
            r.escalations < self.cfg.tunables.max_escalations
                && committed < usize::from(max)
                && another_worker_can_join(&self.workers, r)
        })
    }
}

/// Whether an admitted worker (neither banned nor with a lapsed bond) is not on the task yet.
pub(super) fn another_worker_can_join(workers: &BTreeMap<PubKey, WorkerRecord>, t: &TaskRecord) -> bool {
    let on_task: BTreeSet<PubKey> = t.assignments.iter().map(|a| a.worker).collect();
    workers.values().any(|w| w.banned.is_none() && w.bond_lost.is_none() && !on_task.contains(&w.key()))
}

/// Closes the reveal window of every committed slot that revealed nothing: the task moves on
/// (to an audit or an escalation), and a reveal made knowing that could be chosen by it. The
/// slot is judged as a miss when the task is decided.
fn close_unrevealed(rec: &mut TaskRecord) {
    for a in &mut rec.assignments {
        if a.commitment.is_some() && a.revealed.is_none() && a.verdict.is_none() {
            a.verdict = Some(Verdict::NoReveal);
        }
    }
}

/// Slots of a task in the commit phase that no assignment holds (a lease, live or not yet
/// expired by a tick, or a commitment); none in any other phase.
pub(super) fn unheld_slots(t: &TaskRecord) -> usize {
    if t.phase == Phase::Commit {
        usize::from(t.wanted).saturating_sub(t.assignments.len())
    } else {
        0
    }
}

pub(super) fn max_replicas(class: &TaskClass, max_escalations: u8) -> u8 {
    class.replication.saturating_add(1).saturating_add(max_escalations).min(cairn_spec::task::MAX_REPLICATION)
}

/// The audit probability, in parts per million, that makes a lie cost more than it pays for a
/// worker with `locked` at stake on a slot paying `reward`: `factor · reward / (reward +
/// locked)`, capped at certainty (0 when `factor` is 0).
pub(super) fn stake_floor_ppm(reward: u64, locked: u64, factor: u32) -> u32 {
    if factor == 0 || reward == 0 {
        return 0;
    }
    let num = u128::from(factor) * u128::from(reward) * 1_000_000;
    let den = u128::from(reward) + u128::from(locked);
    u32::try_from((num / den).min(1_000_000)).unwrap_or(1_000_000)
}

/// The audit draw: probability max(floor, 1/streak), `streak` that of the least proven
/// committed worker and `floor_ppm` the larger of `audit_min_ppm` and the stake floor,
/// from a hash of the node's secret seed, the newest block hash, the commitments and the
/// revealed results. It is made after the reveals: workers cannot know the seed, and nothing
/// they can see before their reveal depends on it.
pub(super) fn audit_draw(
    seed: &[u8; 32],
    meta: &MetaState,
    rec: &TaskRecord,
    streak: u32,
    floor_ppm: u32,
) -> bool {
    let mut pre = b"cairn/audit-draw".to_vec();
    pre.extend_from_slice(seed);
    if let Some((h, hash)) = meta.chain_tip {
        pre.extend_from_slice(&h.to_be_bytes());
        pre.extend_from_slice(&hash.0);
    }
    pre.extend_from_slice(&rec.id.0);
    for a in &rec.assignments {
        if let Some(c) = a.commitment {
            pre.extend_from_slice(&c.0);
        }
        if let Some(r) = a.revealed {
            pre.extend_from_slice(&r.0);
        }
    }
    let d = sha256(&pre).0;
    let r = u64::from_be_bytes([d[0], d[1], d[2], d[3], d[4], d[5], d[6], d[7]]) % 1_000_000;
    let p = (1_000_000 / u64::from(streak.max(1))).max(u64::from(floor_ppm));
    r < p
}
