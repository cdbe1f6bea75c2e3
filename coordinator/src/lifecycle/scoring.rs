//! Scored classes (SPEC.md §13): bonded validators, the score commits and reveals taken in
//! their windows, the verified units each worker earns in a scored class, and the round that
//! shares a class's budget when its reveal window closes.
//!
//! Owns who validates, which sheets count and what the rounds credit. Must never look at
//! Bitcoin (the node reports each bond's value) nor compute a share itself: the arithmetic is
//! `cairn_spec::consensus`, the same an auditor runs.
//!
//! Windows, with `e` the scored epoch: commits while epoch `e + 1` is open (every unit of `e`
//! is known, and no sheet of `e` is revealed yet), reveals while `e + 2` is open, and the
//! round at the close of `e + 2`, committed by that header's scores root and credited in its
//! ledger.

use cairn_spec::consensus::{self, ConsensusParams, Sheet, MAX_VALIDATORS};
use cairn_spec::{RoundSheet, RoundWorker, ScoreCommit, ScoreReveal, ScoredRound, ValidatorRegistration};

/// Validators admitted at once, at most: each round weighs the `MAX_VALIDATORS` with the most
/// stake among those that revealed, so keys at the minimum bond cannot keep a larger stake out.
pub const MAX_ADMITTED_VALIDATORS: usize = cairn_spec::wire::MAX_VALIDATORS_LISTED;

use super::*;

/// A registered validator.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ValidatorRecord {
    /// Its newest registration in force.
    pub registration: Signed<ValidatorRegistration>,
    /// Its stake: the value Bitcoin Core reported for its bond output.
    pub stake: u64,
    /// When it was first admitted (unix seconds).
    pub registered_at: u64,
    /// Why and when its bond stopped counting (spent, unconfirmed): its sheets no longer
    /// count until it registers again.
    pub bond_lost: Option<(String, u64)>,
}

impl ValidatorRecord {
    /// The validator's key.
    pub fn key(&self) -> PubKey {
        self.registration.body.validator
    }

    /// Whether its bond still counts.
    pub fn active(&self) -> bool {
        self.bond_lost.is_none()
    }
}

/// Where a scored epoch's sheet or units are kept: (scored epoch, class, key).
pub type ScoreKey = (u32, Hash32, PubKey);

/// The scoring state: validators, the sheets of epochs not yet rounded, and their units.
#[derive(Clone, Debug, Default)]
pub(super) struct Scoring {
    pub(super) validators: BTreeMap<PubKey, ValidatorRecord>,
    pub(super) commits: BTreeMap<ScoreKey, Signed<ScoreCommit>>,
    pub(super) reveals: BTreeMap<ScoreKey, Signed<ScoreReveal>>,
    /// Verified units by (scored epoch, class, worker).
    pub(super) units: BTreeMap<ScoreKey, u64>,
}

impl Scoring {
    pub(super) fn restore(snap: &mut Snapshot) -> Self {
        let mut s = Scoring::default();
        for v in std::mem::take(&mut snap.validators) {
            s.validators.insert(v.key(), v);
        }
        for c in std::mem::take(&mut snap.score_commits) {
            s.commits.insert((c.body.epoch, c.body.class, c.body.validator), c);
        }
        for r in std::mem::take(&mut snap.score_reveals) {
            s.reveals.insert((r.body.epoch, r.body.class, r.body.validator), r);
        }
        for (epoch, class, worker, units) in std::mem::take(&mut snap.units) {
            s.units.insert((epoch, class, worker), units);
        }
        s
    }

    /// Whether commits of some epoch still wait for their round: an epoch closes on its time
    /// cadence for them even with no receipt, so a quiet class is still paid.
    pub(super) fn waiting(&self) -> bool {
        !self.commits.is_empty()
    }
}

fn params_of(class: &TaskClass) -> Option<ConsensusParams> {
    class.objective.terms().copied()
}

impl Machine {
    /// The classes whose objective is scored, with their consensus terms.
    fn scored_classes(&self) -> impl Iterator<Item = (Hash32, ConsensusParams)> + '_ {
        self.classes.iter().filter_map(|(id, c)| Some((*id, params_of(c)?)))
    }

    /// Whether the open epoch may close on its receipt count at `now`: with scored classes,
    /// not before it has been open `score_window_secs`, so tasks anyone submits cannot close a
    /// commit or reveal window before honest validators are heard (SPEC.md §13.4).
    pub(super) fn count_may_close(&self, now: u64) -> bool {
        self.scored_classes().next().is_none()
            || now >= self.meta.epoch_opened_at.saturating_add(self.cfg.tunables.score_window_secs)
    }

    /// Registers a validator (or takes a newer registration of it). `bond_sats` is what
    /// Bitcoin Core reports for the bond's output when the driver found it confirmed, unspent
    /// and paying to the bond key (`None` when not found or not checked): its stake.
    pub fn register_validator(
        &mut self,
        reg: Verified<ValidatorRegistration>,
        bond_sats: Option<u64>,
        now: u64,
    ) -> Result<Step, Refusal> {
        let signed = reg.0;
        let r = &signed.body;
        self.check_addressed(r.network, &r.coordinator, r.created_at, now)?;
        if self.scored_classes().next().is_none() {
            return Err(invalid("this node has no scored class to validate"));
        }
        // One key is a worker or a validator, never both: a validator scoring its own work
        // would be its own judge.
        if self.workers.contains_key(&r.validator) {
            return Err(Refusal::Conflict("this key is registered as a worker".into()));
        }
        if !r.bond.verify(&self.me, &r.validator) {
            return Err(invalid("bond signature does not verify"));
        }
        let min = self.cfg.tunables.validator_stake_min_sats.max(1);
        let stake = match bond_sats {
            None => {
                return Err(invalid("bond output not found confirmed and unspent, paying to the bond key"))
            }
            Some(v) if v < min => {
                return Err(invalid(format!(
                    "bond output holds {v} sats; this node asks validators for {min}"
                )))
            }
            Some(v) => v.min(consensus::MAX_MONEY_SATS),
        };
        // One output backs one key, in any role: stake counted twice is stake split for free.
        let (txid, vout) = (r.bond.txid, r.bond.vout);
        let by_worker = self
            .workers
            .values()
            .any(|w| w.registration.body.bond.as_ref().is_some_and(|b| b.txid == txid && b.vout == vout));
        let by_validator = self.scoring.validators.values().any(|v| {
            v.key() != r.validator
                && v.registration.body.bond.txid == txid
                && v.registration.body.bond.vout == vout
        });
        if by_worker || by_validator {
            return Err(Refusal::Conflict("bond output already backs another key".into()));
        }
        // A lapsed validator coming back counts against the cap as a new one does.
        let returning = self.scoring.validators.get(&r.validator).is_some_and(|v| v.active());
        let active = self.scoring.validators.values().filter(|v| v.active()).count();
        if !returning && active >= MAX_ADMITTED_VALIDATORS {
            return Err(Refusal::Limit(format!(
                "this node admits at most {MAX_ADMITTED_VALIDATORS} validators"
            )));
        }
        let rec = match self.scoring.validators.get(&r.validator) {
            Some(v) if v.registration.id() == signed.id() && v.active() && v.stake == stake => {
                return Ok(Step::default())
            }
            Some(v) if v.registration.id() == signed.id() => {
                ValidatorRecord { stake, bond_lost: None, ..v.clone() }
            }
            Some(v) if v.registration.body.created_at >= r.created_at => {
                return Err(Refusal::Conflict("a newer registration of this validator is in force".into()))
            }
            Some(v) => ValidatorRecord { registration: signed, stake, bond_lost: None, ..v.clone() },
            None => ValidatorRecord { registration: signed, stake, registered_at: now, bond_lost: None },
        };
        self.scoring.validators.insert(rec.key(), rec.clone());
        Ok(self.finish(Step { changes: vec![Change::Validator(Box::new(rec))], effects: vec![], sync: true }))
    }

    /// A validator's bond no longer counts (`why`): its sheets count for nothing until it
    /// registers again.
    pub fn validator_bond_lost(&mut self, validator: &PubKey, why: String, now: u64) -> Step {
        let Some(v) = self.scoring.validators.get_mut(validator) else { return Step::default() };
        if !v.active() {
            return Step::default();
        }
        v.bond_lost = Some((why, now));
        let rec = v.clone();
        self.finish(Step { changes: vec![Change::Validator(Box::new(rec))], effects: vec![], sync: true })
    }

    /// Validators whose bonds count, with their bonds: what the node re-checks against Bitcoin.
    pub fn bonded_validators(&self) -> Vec<(PubKey, Bond)> {
        self.scoring
            .validators
            .values()
            .filter(|v| v.active())
            .map(|v| (v.key(), v.registration.body.bond.clone()))
            .collect()
    }

    /// Every registered validator.
    pub fn validators(&self) -> impl Iterator<Item = &ValidatorRecord> {
        self.scoring.validators.values()
    }

    /// A validator.
    pub fn validator(&self, key: &PubKey) -> Option<&ValidatorRecord> {
        self.scoring.validators.get(key)
    }

    fn active_validator(&self, key: &PubKey) -> Result<&ValidatorRecord, Refusal> {
        let v = self.scoring.validators.get(key).ok_or(Refusal::NotRegistered)?;
        match &v.bond_lost {
            Some((why, _)) => Err(Refusal::Lapsed(why.clone())),
            None => Ok(v),
        }
    }

    /// The window check shared by commits and reveals: `epoch + lag` must be the open epoch.
    fn score_window(&self, epoch: u32, lag: u32, what: &str) -> Result<(), Refusal> {
        let open = self.meta.next_epoch;
        match epoch.checked_add(lag) {
            Some(due) if due == open => Ok(()),
            Some(due) if due > open => {
                Err(Refusal::TooEarly(format!("{what}s for epoch {epoch} open once epoch {due} is open")))
            }
            _ => Err(invalid(format!(
                "{what}s for epoch {epoch} closed when epoch {} closed",
                epoch.saturating_add(lag)
            ))),
        }
    }

    fn scored_class(&self, class: &Hash32) -> Result<ConsensusParams, Refusal> {
        let c = self.classes.get(class).ok_or(Refusal::NotFound("class"))?;
        params_of(c).ok_or_else(|| invalid("the class is not scored (its objective is verified)"))
    }

    /// A validator commits to its sheet of a class for an epoch (SPEC.md §13.4), while the
    /// epoch after it is open. The first commit stands: a different one is refused, or a
    /// validator could commit several sheets and reveal whichever lies nearest the others'.
    pub fn score_commit(&mut self, c: Verified<ScoreCommit>) -> Result<Step, Refusal> {
        let signed = c.0;
        let b = &signed.body;
        if b.network != self.cfg.network || b.coordinator != self.me {
            return Err(invalid("score commit names another network or coordinator"));
        }
        self.active_validator(&b.validator)?;
        self.scored_class(&b.class)?;
        self.score_window(b.epoch, 1, "commit")?;
        let key = (b.epoch, b.class, b.validator);
        match self.scoring.commits.get(&key) {
            Some(first) if first.id() == signed.id() => return Ok(Step::default()),
            Some(_) => {
                return Err(Refusal::Conflict(
                    "a different commit of this validator for this epoch stands".into(),
                ))
            }
            None => {}
        }
        self.scoring.commits.insert(key, signed.clone());
        Ok(self.finish(Step {
            changes: vec![Change::ScoreCommit(Box::new(signed))],
            effects: vec![],
            sync: true,
        }))
    }

    /// A validator reveals the sheet it committed to, while the second epoch after the scored
    /// one is open. A reveal that does not open the commit is refused; one never made leaves
    /// the validator out of the round.
    pub fn score_reveal(&mut self, r: Verified<ScoreReveal>) -> Result<Step, Refusal> {
        let signed = r.0;
        let b = &signed.body;
        if b.network != self.cfg.network || b.coordinator != self.me {
            return Err(invalid("score reveal names another network or coordinator"));
        }
        self.active_validator(&b.validator)?;
        self.scored_class(&b.class)?;
        self.score_window(b.epoch, 2, "reveal")?;
        let key = (b.epoch, b.class, b.validator);
        let commit = self.scoring.commits.get(&key).ok_or(Refusal::NoCommitment)?;
        if !b.opens(&commit.body) {
            return Err(invalid("the reveal does not open the validator's commit"));
        }
        // Units of the scored epoch are final by now: a sheet names only workers that did
        // work of the class in it, so no sheet can swell a round with keys nobody scores
        // (the round carries every sheet whole, signed).
        if let Some((k, _)) =
            b.scores.iter().find(|(k, _)| !self.scoring.units.contains_key(&(b.epoch, b.class, *k)))
        {
            return Err(invalid(format!(
                "the sheet scores {k}, which did no work of the class in epoch {}",
                b.epoch
            )));
        }
        if self.scoring.reveals.contains_key(&key) {
            return Ok(Step::default());
        }
        self.scoring.reveals.insert(key, signed.clone());
        Ok(self.finish(Step {
            changes: vec![Change::ScoreReveal(Box::new(signed))],
            effects: vec![],
            sync: true,
        }))
    }

    /// Counts a worker's accepted task of a scored class in `epoch` (nothing for a verified
    /// class). A scored class's units are its accepted tasks, one each: a task's `units` is
    /// the requester's to choose and, in a quality class, paid by nobody (SPEC.md §13.1).
    pub(super) fn count_task(&mut self, epoch: u32, class: &Hash32, worker: PubKey, step: &mut Step) {
        if self.classes.get(class).and_then(params_of).is_none() {
            return;
        }
        let n = self.scoring.units.entry((epoch, *class, worker)).or_default();
        *n = n.saturating_add(1).min(consensus::MAX_UNITS);
        step.changes.push(Change::Units { epoch, class: *class, worker, units: *n });
    }

    /// The rounds the header at `height` credits: each scored class's consensus over epoch
    /// `height − 2`, from the sheets revealed for it by validators whose bonds still count,
    /// credited to the ledger as locked in `height`. Its sheets and units are then dropped
    /// (the rounds hold them).
    pub(super) fn close_rounds(&mut self, height: u32, step: &mut Step) -> Vec<ScoredRound> {
        let Some(epoch) = height.checked_sub(2) else { return Vec::new() };
        let classes: Vec<(Hash32, ConsensusParams)> = self.scored_classes().collect();
        let mut out = Vec::new();
        for (class, params) in classes {
            let units: Vec<(PubKey, u64)> = self
                .scoring
                .units
                .iter()
                // A worker banned since (fraud) is paid nothing more.
                .filter(|((e, c, w), _)| {
                    *e == epoch && *c == class && self.workers.get(w).is_some_and(|r| r.banned.is_none())
                })
                .map(|((_, _, w), u)| (*w, *u))
                .collect();
            let workers = consensus::scored_workers(&units);
            let mut sheets: Vec<(Sheet, &Signed<ScoreReveal>, &Bond)> = self
                .scoring
                .reveals
                .iter()
                .filter(|((e, c, _), _)| *e == epoch && *c == class)
                .filter_map(|(_, r)| {
                    let v = self.scoring.validators.get(&r.body.validator).filter(|v| v.active())?;
                    let sheet = Sheet { validator: v.key(), stake: v.stake, scores: r.body.scores.clone() };
                    Some((sheet, r, &v.registration.body.bond))
                })
                .collect();
            // The most stake weighs when more revealed than a round takes (ties to the lower
            // key); then in key order, as the consensus takes them.
            sheets.sort_by(|a, b| b.0.stake.cmp(&a.0.stake).then_with(|| a.0.validator.cmp(&b.0.validator)));
            sheets.truncate(MAX_VALIDATORS);
            sheets.sort_by_key(|s| s.0.validator);
            if workers.is_empty() && sheets.is_empty() {
                continue;
            }
            // Too little stake vouches for this round: nothing is paid, and nobody's work or
            // sheet of the epoch is carried on (its units and sheets are dropped below).
            let stake: u64 = sheets.iter().map(|s| s.0.stake).fold(0, u64::saturating_add);
            if stake < self.cfg.tunables.round_min_stake_sats {
                continue;
            }
            let plain: Vec<Sheet> = sheets.iter().map(|s| s.0.clone()).collect();
            // The inputs are built to be valid (ordered, bounded, staked); a refusal here is a
            // bug, and the round is left out rather than crediting anything wrong.
            let Ok(outcome) = consensus::consensus(&params, &workers, &plain) else { continue };
            let round = ScoredRound {
                network: self.cfg.network,
                coordinator: self.me,
                class,
                epoch,
                params,
                workers: outcome
                    .workers
                    .iter()
                    .map(|o| RoundWorker {
                        worker: o.worker,
                        units: o.units,
                        score: o.score,
                        share_sats: o.share_sats,
                    })
                    .collect(),
                sheets: sheets
                    .iter()
                    .zip(&outcome.validators)
                    .map(|((s, r, bond), o)| RoundSheet {
                        validator: s.validator,
                        stake: s.stake,
                        bond_txid: bond.txid,
                        bond_vout: bond.vout,
                        bond_key: bond.key,
                        bond_signature: bond.signature,
                        scores: s.scores.clone(),
                        salt: r.body.salt,
                        signature: r.signature,
                        share_sats: o.share_sats,
                    })
                    .collect(),
                unallocated_sats: outcome.unallocated_sats,
            };
            out.push(round);
        }
        for round in &out {
            let credits = round
                .workers
                .iter()
                .map(|w| (w.worker, w.share_sats))
                .chain(round.sheets.iter().map(|s| (s.validator, s.share_sats)));
            for (key, sats) in credits.filter(|(_, s)| *s > 0) {
                self.credit_locked(height, key, sats, step);
            }
            step.changes.push(Change::Round { height, round: Box::new(round.clone()) });
        }
        // What the rounds hold is dropped, with the sheets of classes nobody did work in.
        let gone: Vec<ScoreKey> = self
            .scoring
            .commits
            .keys()
            .chain(self.scoring.reveals.keys())
            .chain(self.scoring.units.keys())
            .filter(|(e, ..)| *e <= epoch)
            .copied()
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        for k in gone {
            self.scoring.commits.remove(&k);
            self.scoring.reveals.remove(&k);
            self.scoring.units.remove(&k);
            step.changes.push(Change::ScoresDropped { epoch: k.0, class: k.1, key: k.2 });
        }
        out
    }

    /// Credits `sats` to `key`'s ledger entry, locked until epoch `height` settles.
    fn credit_locked(&mut self, height: u32, key: PubKey, sats: u64, step: &mut Step) {
        self.meta.credited = self.meta.credited.saturating_add(sats);
        let e =
            self.ledger.entry(key).or_insert(LedgerEntry { worker: key, locked: 0, claimable: 0, paid: 0 });
        e.locked = e.locked.saturating_add(sats);
        let bucket = self.meta.locked.entry(height).or_default().entry(key).or_default();
        *bucket = bucket.saturating_add(sats);
        step.changes.push(Change::Lock { epoch: height, worker: key, amount: *bucket });
        step.changes.push(Change::Ledger(e.clone()));
    }
}
