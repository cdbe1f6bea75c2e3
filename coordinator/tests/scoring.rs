//! Scored classes on the lifecycle machine (SPEC.md §13): bonded validators commit sheets
//! while the epoch after the scored one is open, reveal them in the next, and the round at its
//! close shares the class's budget by the consensus, credited to the ledger and committed by
//! the header's scores root. Every step is persisted to the in-memory store and the machine is
//! restored from it mid-way; each test plays someone who tries to profit without the work.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing, missing_docs)]
mod harness;

use std::sync::Arc;

use cairn_audit::chain::{audit_chain, ChainAudit, Scope};
use cairn_coordinator::audit_source::StoreSource;
use cairn_coordinator::lifecycle::{Change, Refusal, Verified};
use cairn_coordinator::lifecycle_store as ls;
use cairn_coordinator::store::{Batch, KvStore, MemoryStore, Table};
use cairn_spec::consensus::{self, ConsensusParams, Sheet};
use cairn_spec::scores::score_commitment_value;
use cairn_spec::{
    rounds, Bond, Hash32, Object, Objective, PubKey, ScoreCommit, ScoreReveal, ScoredRound, Signed,
    SigningKey, TaskClass, ValidatorRegistration,
};
use harness::*;

const PARAMS: ConsensusParams = ConsensusParams {
    worker_budget_sats: 1_000_000,
    validator_budget_sats: 100_000,
    baseline: 100_000,
    tolerance: 100_000,
};

fn quality_class() -> TaskClass {
    let mut c = cosine(1);
    c.name = "quality".into();
    c.objective = Objective::Quality(PARAMS);
    c
}

/// A harness for one quality class: one replica per task and no audit replicas (workers of
/// different quality answer differently; the validators judge them, not agreement).
fn scored_harness() -> Harness {
    Harness::new(vec![quality_class()], |c| {
        c.tunables.audit_min_ppm = 0;
        c.tunables.audit_stake_factor = 0;
        c.tunables.slot_stake_ppm = 0;
        c.tunables.epoch_interval_secs = 300;
    })
}

struct Validator {
    key: SigningKey,
    stake: u64,
    vout: u32,
}

fn validator(i: u32, stake: u64) -> Validator {
    Validator { key: key(500 + i), stake, vout: i }
}

fn bond_key() -> SigningKey {
    key(900)
}

fn registration_of(h: &Harness, v: &Validator, vout: u32) -> Signed<ValidatorRegistration> {
    let txid = Hash32([0xb0; 32]);
    let bk = bond_key();
    let msg = cairn_spec::work::bond_message(&h.coord.public(), &v.key.public(), &txid, vout);
    let bond = Bond { txid, vout, key: bk.public(), signature: bk.sign(&msg, &[1; 32]) };
    let body = ValidatorRegistration {
        network: NET,
        coordinator: h.coord.public(),
        validator: v.key.public(),
        payout_address: ADDR.into(),
        created_at: h.now,
        bond,
    };
    Signed::sign(body, &v.key, &[2; 32])
}

fn register_validator(h: &mut Harness, v: &Validator) -> Result<(), Refusal> {
    let reg = registration_of(h, v, v.vout);
    let step = h.m.register_validator(Verified::check(reg).unwrap(), Some(v.stake), h.now)?;
    h.apply(step);
    Ok(())
}

fn sorted(mut scores: Vec<(PubKey, u32)>) -> Vec<(PubKey, u32)> {
    scores.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
    scores
}

fn salt_of(v: &Validator, epoch: u32) -> [u8; 32] {
    let mut s = [0x33; 32];
    s[..4].copy_from_slice(&epoch.to_be_bytes());
    s[4..8].copy_from_slice(&v.vout.to_be_bytes());
    s
}

fn commit_of(h: &Harness, v: &Validator, epoch: u32, scores: &[(PubKey, u32)]) -> Signed<ScoreCommit> {
    let class = quality_class().id();
    let body = ScoreCommit {
        network: NET,
        coordinator: h.coord.public(),
        class,
        epoch,
        validator: v.key.public(),
        commitment: score_commitment_value(
            NET,
            &h.coord.public(),
            &class,
            epoch,
            &v.key.public(),
            scores,
            &salt_of(v, epoch),
        ),
    };
    Signed::sign(body, &v.key, &[3; 32])
}

fn reveal_of(h: &Harness, v: &Validator, epoch: u32, scores: &[(PubKey, u32)]) -> Signed<ScoreReveal> {
    let body = ScoreReveal {
        network: NET,
        coordinator: h.coord.public(),
        class: quality_class().id(),
        epoch,
        validator: v.key.public(),
        scores: scores.to_vec(),
        salt: salt_of(v, epoch),
    };
    Signed::sign(body, &v.key, &[4; 32])
}

fn commit(h: &mut Harness, v: &Validator, epoch: u32, scores: &[(PubKey, u32)]) -> Result<(), Refusal> {
    let c = commit_of(h, v, epoch, scores);
    let step = h.m.score_commit(Verified::check(c).unwrap())?;
    h.apply(step);
    Ok(())
}

fn reveal(h: &mut Harness, v: &Validator, epoch: u32, scores: &[(PubKey, u32)]) -> Result<(), Refusal> {
    let r = reveal_of(h, v, epoch, scores);
    let step = h.m.score_reveal(Verified::check(r).unwrap())?;
    h.apply(step);
    Ok(())
}

/// Runs `tasks` tasks of the quality class; every worker asks for each, so the draws spread
/// them. Returns each worker's verified units in the open epoch.
fn work(h: &mut Harness, ws: &[SigningKey], tasks: u32) {
    let class = quality_class();
    for t in 0..tasks {
        let id = h.submit(&class, &t.to_be_bytes(), None);
        h.run_task(id, ws, &|i| vector(t * 7 + i as u32, 0.0));
    }
}

/// Closes the open epoch on its cadence (the epoch interval is 300 s).
fn close_epoch(h: &mut Harness) -> u32 {
    let before = h.m.meta().next_epoch;
    h.tick(300);
    assert_eq!(h.m.meta().next_epoch, before + 1, "epoch {before} closed on its cadence");
    before
}

/// `cairn audit epoch` over the whole chain in `h`'s store (copied, as an auditor reads the
/// node's database), without Bitcoin.
fn audit(h: &Harness) -> ChainAudit {
    let copy = MemoryStore::new();
    let mut b = Batch::new();
    for t in Table::ALL {
        for (k, v) in h.store.scan(t, b"", None, usize::MAX).unwrap() {
            b.put(t, k, v);
        }
    }
    copy.write(&b).unwrap();
    let src = StoreSource {
        store: Arc::new(copy),
        anchors: Vec::new(),
        name: "the coordinator's database".into(),
        trees: Default::default(),
    };
    audit_chain(&src, &[], None, &Scope::default(), &mut |_, _| {}).unwrap()
}

fn scores_check(a: &ChainAudit, height: u32) -> (bool, String) {
    let e = a.epochs.iter().find(|e| e.height == height).unwrap();
    let c = e.report.checks.iter().find(|c| c.name == "scores").unwrap();
    (c.outcome == cairn_audit::verify::Outcome::Pass, c.detail.clone())
}

/// The true quality of each worker, best first: worker 3 is the poor one.
const QUALITY: [u32; 4] = [900_000, 700_000, 500_000, 250_000];

fn honest_sheet(ws: &[SigningKey], noise: i64) -> Vec<(PubKey, u32)> {
    sorted(
        ws.iter()
            .zip(QUALITY)
            .enumerate()
            .map(|(i, (w, q))| (w.public(), (i64::from(q) + noise * (i as i64 % 2 * 2 - 1)) as u32))
            .collect(),
    )
}

#[test]
fn a_colluding_validator_cannot_lift_its_poor_worker_and_earns_less_than_the_honest() {
    let mut h = scored_harness();
    let ws = workers(4);
    for w in &ws {
        h.register(w);
    }
    let vals = [validator(0, 400_000), validator(1, 350_000), validator(2, 300_000)];
    for v in &vals {
        register_validator(&mut h, v).unwrap();
    }
    work(&mut h, &ws, 24);
    let units: Vec<u64> = ws
        .iter()
        .map(|w| {
            ls::load(&h.store).unwrap().unwrap().units.iter().filter(|u| u.2 == w.public()).map(|u| u.3).sum()
        })
        .collect();
    assert!(units.iter().all(|&u| u > 0), "every worker did some of the epoch's work: {units:?}");
    let scored = close_epoch(&mut h);
    assert_eq!(scored, 0);

    // Epoch 1 is open: the commit window of epoch 0. Two honest validators score near the
    // truth; the colluder inflates the poor worker (3) to the top and pushes its rivals down.
    let honest_a = honest_sheet(&ws, 10_000);
    let honest_b = honest_sheet(&ws, -15_000);
    let colluding: Vec<(PubKey, u32)> = sorted(
        ws.iter().zip([400_000u32, 300_000, 200_000, 1_000_000]).map(|(w, s)| (w.public(), s)).collect(),
    );
    let sheets = [&honest_a, &honest_b, &colluding];
    // Reveals are refused before commits close: nobody can read a sheet in time to copy it.
    assert!(matches!(
        reveal(&mut h, &vals[0], 0, sheets[0]),
        Err(Refusal::NoCommitment | Refusal::TooEarly(_))
    ));
    for (v, s) in vals.iter().zip(sheets) {
        commit(&mut h, v, 0, s).unwrap();
    }
    h.reload();
    close_epoch(&mut h);
    // Epoch 2 is open: the reveal window.
    for (v, s) in vals.iter().zip(sheets) {
        reveal(&mut h, v, 0, s).unwrap();
    }
    h.reload();
    let credited_before = h.m.meta().credited;
    let height = close_epoch(&mut h);
    assert_eq!(height, 2);

    let header = h.m.meta().last_header.clone().unwrap();
    let stored = ls::rounds(&h.store, height).unwrap();
    assert_eq!(stored.len(), 1);
    let round: &ScoredRound = &stored[0];
    assert_eq!(header.body.scores_root, rounds::scores_root(&stored), "the header commits the round");
    assert_eq!(round.epoch, 0);
    // An auditor recomputes every score and satoshi from the round alone.
    let outcome = round.check().unwrap();
    assert_eq!(
        h.m.meta().credited - credited_before,
        round.credited_sats(),
        "the ledger took what the round says"
    );

    // Shares follow true quality.
    let share = |k: &PubKey| round.workers.iter().find(|w| w.worker == *k).map(|w| w.share_sats).unwrap();
    let score = |k: &PubKey| round.workers.iter().find(|w| w.worker == *k).map(|w| w.score).unwrap();
    let quality_per_unit: Vec<f64> = ws
        .iter()
        .map(|w| {
            let units = round.workers.iter().find(|x| x.worker == w.public()).unwrap().units;
            share(&w.public()) as f64 / units as f64
        })
        .collect();
    assert!(
        quality_per_unit.windows(2).all(|p| p[0] > p[1]),
        "pay per unit is ordered by true quality: {quality_per_unit:?}"
    );
    // Every score stays inside the honest validators' range: the inflation was clipped.
    for w in &ws {
        let k = w.public();
        let (a, b) =
            (honest_a.iter().find(|s| s.0 == k).unwrap().1, honest_b.iter().find(|s| s.0 == k).unwrap().1);
        assert!((a.min(b)..=a.max(b)).contains(&score(&k)), "score of {k} out of the honest range");
    }
    // What the colluder moved: the same round without its sheet.
    let plain = |s: &[(PubKey, u32)], v: &Validator| Sheet {
        validator: v.key.public(),
        stake: v.stake,
        scores: s.to_vec(),
    };
    let mut honest_only = vec![plain(&honest_a, &vals[0]), plain(&honest_b, &vals[1])];
    honest_only.sort_by(|a, b| a.validator.as_bytes().cmp(b.validator.as_bytes()));
    let workers: Vec<(PubKey, u64)> = round.workers.iter().map(|w| (w.worker, w.units)).collect();
    let without = consensus::consensus(&PARAMS, &workers, &honest_only).unwrap();
    let moved: Vec<i64> = outcome
        .workers
        .iter()
        .zip(&without.workers)
        .map(|(a, b)| a.share_sats as i64 - b.share_sats as i64)
        .collect();
    let spread: Vec<u32> = ws
        .iter()
        .map(|w| {
            let k = w.public();
            let (a, b) = (
                honest_a.iter().find(|s| s.0 == k).unwrap().1,
                honest_b.iter().find(|s| s.0 == k).unwrap().1,
            );
            a.abs_diff(b)
        })
        .collect();
    println!(
        "colluder's pull on shares (sats of {}): {moved:?}; on the poor worker's score: {} ppm, bound (honest spread) {} ppm",
        PARAMS.worker_budget_sats,
        i64::from(score(&ws[3].public())) - i64::from(without.workers.iter().find(|o| o.worker == ws[3].public()).unwrap().score),
        spread[3]
    );
    // The colluder earns less than either honest validator (here: nothing at all).
    let vshare =
        |v: &Validator| round.sheets.iter().find(|s| s.validator == v.key.public()).unwrap().share_sats;
    assert!(vshare(&vals[2]) < vshare(&vals[0]) && vshare(&vals[2]) < vshare(&vals[1]));
    println!(
        "validators' shares: honest {} and {}, colluder {}",
        vshare(&vals[0]),
        vshare(&vals[1]),
        vshare(&vals[2])
    );
    // The auditor recomputes every score and share from what the chain serves, and checks
    // each worker's units against its receipts of epoch 0.
    let a = audit(&h);
    assert!(a.ok(), "{:?}", a.epochs.iter().map(|e| e.report.first_failure()).collect::<Vec<_>>());
    let (ok, detail) = scores_check(&a, height);
    assert!(ok && detail.contains("units match"), "{detail}");
    println!("cairn audit: {detail}");
    // Credited as locked in the crediting epoch, paid like any credit once it settles.
    for v in &vals[..2] {
        assert_eq!(h.m.balance(&v.key.public()).unwrap().locked, vshare(v));
    }
    h.reload();
    let step = h.m.settle(height, h.now);
    h.apply(step);
    assert!(h.m.balance(&vals[0].key.public()).unwrap().paid >= vshare(&vals[0]));
}

#[test]
fn the_first_commit_stands_and_windows_are_enforced() {
    let mut h = scored_harness();
    let ws = workers(2);
    for w in &ws {
        h.register(w);
    }
    let v = validator(0, 100_000);
    register_validator(&mut h, &v).unwrap();
    let sheet = sorted(vec![(ws[0].public(), 800_000), (ws[1].public(), 200_000)]);
    let other = sorted(vec![(ws[0].public(), 700_000), (ws[1].public(), 300_000)]);
    // Epoch 0 is open: its commits are not taken yet (its work is not all known).
    assert!(matches!(commit(&mut h, &v, 0, &sheet), Err(Refusal::TooEarly(_))));
    work(&mut h, &ws, 4);
    close_epoch(&mut h);
    commit(&mut h, &v, 0, &sheet).unwrap();
    // The same commit again is nothing new; a different one is refused: a validator cannot
    // hold two sheets and reveal whichever lies nearest the others'.
    commit(&mut h, &v, 0, &sheet).unwrap();
    assert!(matches!(commit(&mut h, &v, 0, &other), Err(Refusal::Conflict(_))));
    // Reveals wait for the commit window to close.
    assert!(matches!(reveal(&mut h, &v, 0, &sheet), Err(Refusal::TooEarly(_))));
    close_epoch(&mut h);
    // Commits of epoch 0 are now closed.
    let late = validator(1, 100_000);
    register_validator(&mut h, &late).unwrap();
    assert!(matches!(commit(&mut h, &late, 0, &sheet), Err(Refusal::Invalid(_))));
    // A reveal of other scores does not open the commit.
    assert!(matches!(reveal(&mut h, &v, 0, &other), Err(Refusal::Invalid(_))));

    // A validator that copies another's commitment value cannot open it: the value binds the
    // committer's key.
    let copier = validator(2, 100_000);
    register_validator(&mut h, &copier).unwrap();
    reveal(&mut h, &v, 0, &sheet).unwrap();
    close_epoch(&mut h);
    let round = &ls::rounds(&h.store, 2).unwrap()[0];
    assert_eq!(round.sheets.len(), 1);
    // After the round, the window of epoch 0 is over for good.
    assert!(reveal(&mut h, &v, 0, &sheet).is_err());
}

#[test]
fn a_copied_commitment_cannot_be_opened_by_the_copier() {
    let mut h = scored_harness();
    let ws = workers(2);
    for w in &ws {
        h.register(w);
    }
    let (honest, copier) = (validator(0, 100_000), validator(1, 100_000));
    register_validator(&mut h, &honest).unwrap();
    register_validator(&mut h, &copier).unwrap();
    work(&mut h, &ws, 4);
    close_epoch(&mut h);
    let sheet = sorted(vec![(ws[0].public(), 800_000), (ws[1].public(), 200_000)]);
    commit(&mut h, &honest, 0, &sheet).unwrap();
    // The copier saw the honest commit on the wire and submits its value as its own.
    let seen = commit_of(&h, &honest, 0, &sheet);
    let copied = ScoreCommit { validator: copier.key.public(), ..seen.body.clone() };
    let step =
        h.m.score_commit(Verified::check(Signed::sign(copied, &copier.key, &[5; 32])).unwrap()).unwrap();
    h.apply(step);
    close_epoch(&mut h);
    reveal(&mut h, &honest, 0, &sheet).unwrap();
    // Even with the honest sheet and salt in hand once revealed, the copier's reveal opens
    // nothing: its key is in the value.
    let stolen = ScoreReveal { validator: copier.key.public(), ..reveal_of(&h, &honest, 0, &sheet).body };
    let r = Verified::check(Signed::sign(stolen, &copier.key, &[6; 32])).unwrap();
    assert!(matches!(h.m.score_reveal(r), Err(Refusal::Invalid(_))));
    close_epoch(&mut h);
    let round = &ls::rounds(&h.store, 2).unwrap()[0];
    assert_eq!(round.sheets.iter().map(|s| s.validator).collect::<Vec<_>>(), vec![honest.key.public()]);
    assert_eq!(h.m.balance(&copier.key.public()).map_or(0, |e| e.locked), 0, "the copier earns nothing");
}

#[test]
fn one_key_one_role_and_one_bond_per_key() {
    let mut h = scored_harness();
    let ws = workers(1);
    h.register(&ws[0]);
    // A worker's key cannot become a validator (it would score itself).
    let as_validator = Validator { key: ws[0].clone(), stake: 100_000, vout: 9 };
    assert!(matches!(register_validator(&mut h, &as_validator), Err(Refusal::Conflict(_))));
    // One bond output backs one key: a second validator on the same output is refused, so
    // the same coins cannot weigh twice.
    let (a, b) = (validator(0, 100_000), validator(1, 100_000));
    register_validator(&mut h, &a).unwrap();
    let reg = registration_of(&h, &b, a.vout);
    assert!(matches!(
        h.m.register_validator(Verified::check(reg).unwrap(), Some(b.stake), h.now),
        Err(Refusal::Conflict(_))
    ));
    // A validator's key cannot register as a worker.
    let mut reg = registration(h.coord.public(), &a.key, h.now);
    assert!(reg.solve_pow(4, 1 << 20));
    assert!(matches!(
        h.m.register(Verified::check(Signed::sign(reg, &a.key, &[0; 32])).unwrap(), h.now),
        Err(Refusal::Conflict(_))
    ));
    // Too little stake, or a bond Bitcoin does not show, is refused.
    let poor = validator(3, 100);
    assert!(matches!(register_validator(&mut h, &poor), Err(Refusal::Invalid(_))));
    let reg = registration_of(&h, &validator(4, 0), 4);
    assert!(matches!(
        h.m.register_validator(Verified::check(reg).unwrap(), None, h.now),
        Err(Refusal::Invalid(_))
    ));
}

#[test]
fn a_validator_that_withholds_its_reveal_or_loses_its_bond_counts_for_nothing() {
    let mut h = scored_harness();
    let ws = workers(3);
    for w in &ws {
        h.register(w);
    }
    let vals = [validator(0, 100_000), validator(1, 100_000), validator(2, 100_000)];
    for v in &vals {
        register_validator(&mut h, v).unwrap();
    }
    work(&mut h, &ws, 6);
    close_epoch(&mut h);
    let sheet = honest_sheet(&ws, 0);
    for v in &vals {
        commit(&mut h, v, 0, &sheet).unwrap();
    }
    close_epoch(&mut h);
    reveal(&mut h, &vals[0], 0, &sheet).unwrap();
    reveal(&mut h, &vals[1], 0, &sheet).unwrap();
    // Validator 1's bond is spent before the round: its sheet no longer counts.
    let step = h.m.validator_bond_lost(&vals[1].key.public(), "spent".into(), h.now);
    h.apply(step);
    assert!(matches!(reveal(&mut h, &vals[2], 0, &sheet).map(|_| ()), Ok(())));
    // Validator 2 revealed, then withholds nothing more; validator 1 is gone. Reload first:
    // the sheets survive a restart.
    h.reload();
    close_epoch(&mut h);
    let round = &ls::rounds(&h.store, 2).unwrap()[0];
    let counted: Vec<PubKey> = round.sheets.iter().map(|s| s.validator).collect();
    assert!(counted.contains(&vals[0].key.public()) && !counted.contains(&vals[1].key.public()));
    assert_eq!(h.m.balance(&vals[1].key.public()).map_or(0, |e| e.locked), 0);
    round.check().unwrap();
}

#[test]
fn a_validator_that_commits_and_never_reveals_earns_nothing() {
    let mut h = scored_harness();
    let ws = workers(2);
    for w in &ws {
        h.register(w);
    }
    let (a, b) = (validator(0, 100_000), validator(1, 100_000));
    register_validator(&mut h, &a).unwrap();
    register_validator(&mut h, &b).unwrap();
    work(&mut h, &ws, 4);
    close_epoch(&mut h);
    let sheet = honest_sheet(&ws, 0);
    commit(&mut h, &a, 0, &sheet).unwrap();
    commit(&mut h, &b, 0, &sheet).unwrap();
    close_epoch(&mut h);
    reveal(&mut h, &a, 0, &sheet).unwrap();
    close_epoch(&mut h);
    let round = &ls::rounds(&h.store, 2).unwrap()[0];
    assert_eq!(round.sheets.len(), 1);
    assert_eq!(
        round.sheets[0].share_sats, PARAMS.validator_budget_sats,
        "the one that revealed takes the pool"
    );
    assert_eq!(h.m.balance(&b.key.public()).map_or(0, |e| e.locked), 0);
}

#[test]
fn one_small_validator_alone_cannot_take_a_budget_nobody_else_validates() {
    // A validator at the minimum bond scores its own worker alone: with a floor on the stake
    // a round needs, no round is made and nothing is credited; with more stake it pays.
    for (floor, paid) in [(250_000, false), (150_000, true)] {
        let mut h = Harness::new(vec![quality_class()], |c| {
            c.tunables.audit_min_ppm = 0;
            c.tunables.audit_stake_factor = 0;
            c.tunables.slot_stake_ppm = 0;
            c.tunables.epoch_interval_secs = 300;
            c.tunables.round_min_stake_sats = floor;
        });
        let ws = workers(1);
        h.register(&ws[0]);
        let (small, other) = (validator(0, 100_000), validator(1, 100_000));
        register_validator(&mut h, &small).unwrap();
        register_validator(&mut h, &other).unwrap();
        work(&mut h, &ws, 3);
        close_epoch(&mut h);
        let sheet = sorted(vec![(ws[0].public(), 1_000_000)]);
        commit(&mut h, &small, 0, &sheet).unwrap();
        if paid {
            commit(&mut h, &other, 0, &sheet).unwrap();
        }
        close_epoch(&mut h);
        reveal(&mut h, &small, 0, &sheet).unwrap();
        if paid {
            reveal(&mut h, &other, 0, &sheet).unwrap();
        }
        close_epoch(&mut h);
        let rounds = ls::rounds(&h.store, 2).unwrap();
        let earned = h.m.balance(&ws[0].public()).map_or(0, |e| e.locked);
        if paid {
            assert_eq!(rounds.len(), 1);
            assert_eq!(earned, PARAMS.worker_budget_sats);
        } else {
            assert!(rounds.is_empty(), "{rounds:?}");
            assert_eq!(earned, 0);
            assert_eq!(h.m.balance(&small.key.public()).map_or(0, |e| e.locked), 0);
        }
        let (ok, detail) = scores_check(&audit(&h), 2);
        assert!(ok, "{detail}");
    }
}

#[test]
fn a_coordinator_that_credits_other_shares_than_the_consensus_is_named_by_the_audit() {
    let mut h = scored_harness();
    let ws = workers(3);
    for w in &ws {
        h.register(w);
    }
    let vals = [validator(0, 100_000), validator(1, 100_000)];
    for v in &vals {
        register_validator(&mut h, v).unwrap();
    }
    work(&mut h, &ws, 6);
    close_epoch(&mut h);
    let sheet = honest_sheet(&ws, 0);
    for v in &vals {
        commit(&mut h, v, 0, &sheet).unwrap();
    }
    close_epoch(&mut h);
    for v in &vals {
        reveal(&mut h, v, 0, &sheet).unwrap();
    }
    close_epoch(&mut h);
    assert!(audit(&h).ok());
    let honest = ls::rounds(&h.store, 2).unwrap().remove(0);
    let header = h.m.meta().last_header.clone().unwrap();
    let ledger = ls::ledger_snapshot(&h.store, 2).unwrap().unwrap();
    // Each lie, signed into the header as a dishonest coordinator would: the audit names it.
    type Lie = Box<dyn Fn(&mut ScoredRound)>;
    let lies: Vec<(&str, Lie)> = vec![
        (
            "credits worker",
            Box::new(|r: &mut ScoredRound| {
                // Shifted from one worker to another: the totals still add up.
                r.workers[0].share_sats += 1_000;
                r.workers[1].share_sats -= 1_000;
            }),
        ),
        ("not signed", Box::new(|r: &mut ScoredRound| r.sheets[0].scores[0].1 = 1_000_000)),
        ("units", Box::new(|r: &mut ScoredRound| r.workers[1].units *= 3)),
        ("credits validator", Box::new(|r: &mut ScoredRound| r.sheets[0].stake *= 10)),
    ];
    for (what, lie) in lies {
        let mut round = honest.clone();
        lie(&mut round);
        // A coordinator whose round's outcome is recomputed stays consistent in itself except
        // where it lies: for inflated units or stake it recomputes the outcome to match.
        if what == "units" || what == "credits validator" {
            let out = round.recompute().unwrap();
            for (w, o) in round.workers.iter_mut().zip(&out.workers) {
                (w.score, w.share_sats) = (o.score, o.share_sats);
            }
            for (s, o) in round.sheets.iter_mut().zip(&out.validators) {
                s.share_sats = o.share_sats;
            }
            round.unallocated_sats = out.unallocated_sats;
        }
        let mut forged = header.body.clone();
        forged.scores_root = rounds::scores_root(std::slice::from_ref(&round));
        let forged = Signed::sign(forged, &h.coord, &[9; 32]);
        let mut b = Batch::new();
        ls::add(&mut b, &Change::Epoch { header: Box::new(forged), ledger: ledger.clone(), roster: None })
            .unwrap();
        ls::add(&mut b, &Change::Round { height: 2, round: Box::new(round) }).unwrap();
        let saved = h.store.scan(Table::Epochs, b"", None, usize::MAX).unwrap();
        h.store.write(&b).unwrap();
        let (ok, detail) = scores_check(&audit(&h), 2);
        if what == "credits validator" {
            // A stake the coordinator inflates recomputes consistently: only Bitcoin shows the
            // bond output's value (the round names it), which this audit has no node to ask.
            assert!(ok, "{detail}");
        } else {
            assert!(!ok && detail.contains(what), "{what}: {detail}");
        }
        // Back to the honest chain for the next lie.
        let mut b = Batch::new();
        for (k, v) in saved {
            b.put(Table::Epochs, k, v);
        }
        ls::add(&mut b, &Change::Round { height: 2, round: Box::new(honest.clone()) }).unwrap();
        h.store.write(&b).unwrap();
        assert!(audit(&h).ok());
    }
    // An honest round, but the ledger credits part of one worker's share to another key: the
    // state root commits it, and the audit names the key that grew by more than it earned.
    let mut moved = ledger.clone();
    let (from, to) = (honest.workers[0].worker, honest.workers[1].worker);
    for e in moved.iter_mut() {
        if e.worker == from {
            e.locked -= 1_000;
        } else if e.worker == to {
            e.locked += 1_000;
        }
    }
    let mut forged = header.body.clone();
    forged.state_root = cairn_spec::ledger::state_root(&moved).unwrap();
    let forged = Signed::sign(forged, &h.coord, &[9; 32]);
    let mut b = Batch::new();
    ls::add(&mut b, &Change::Epoch { header: Box::new(forged), ledger: moved, roster: None }).unwrap();
    h.store.write(&b).unwrap();
    let a = audit(&h);
    let e = a.epochs.iter().find(|e| e.height == 2).unwrap();
    let failed = e.report.first_failure().unwrap();
    assert_eq!(failed.name, "ledger_growth", "{failed:?}");
    assert!(failed.detail.contains(&to.to_hex()), "{}", failed.detail);
}

#[test]
fn tasks_anyone_submits_cannot_close_a_scoring_window_early() {
    // An epoch full by its receipt count would close at once; with scored classes it stays
    // open `score_window_secs`, or a flood of free quality tasks could close a commit or
    // reveal window before honest validators are heard.
    let mut h = Harness::new(vec![quality_class()], |c| {
        c.tunables.audit_min_ppm = 0;
        c.tunables.audit_stake_factor = 0;
        c.tunables.epoch_max_receipts = 5;
        c.tunables.score_window_secs = 60;
    });
    let ws = workers(2);
    for w in &ws {
        h.register(w);
    }
    let opened = h.m.meta().epoch_opened_at;
    work(&mut h, &ws, 8);
    assert_eq!(h.now, opened, "the tasks took no time");
    assert_eq!(h.m.meta().next_epoch, 0, "full, but not open long enough to close");
    assert_eq!(h.m.meta().open_receipts, 8);
    h.tick(59);
    assert_eq!(h.m.meta().next_epoch, 0);
    h.tick(1);
    assert_eq!(h.m.meta().next_epoch, 1, "closes once the window has run");
}

#[test]
fn junk_accepted_in_a_quality_class_builds_no_record() {
    // Every well-formed result of a quality class is accepted (its validators judge it); it
    // must not build the streak that lowers a worker's audits elsewhere, nor earn per unit.
    let mut h = scored_harness();
    let ws = workers(2);
    for w in &ws {
        h.register(w);
    }
    work(&mut h, &ws, 6);
    for w in &ws {
        let r = h.m.worker(&w.public()).unwrap();
        assert_eq!((r.streak, r.accepted), (0, 0), "{r:?}");
        assert_eq!(h.m.balance(&w.public()).map_or(0, |e| e.locked), 0);
    }
    assert_eq!(h.m.meta().credited, 0);
}

#[test]
fn a_sheet_naming_keys_that_did_no_work_is_refused() {
    let mut h = scored_harness();
    let ws = workers(2);
    for w in &ws {
        h.register(w);
    }
    let idle = key(77);
    h.register(&idle);
    let v = validator(0, 100_000);
    register_validator(&mut h, &v).unwrap();
    // Only ws ask for the tasks: the idle key does no work in epoch 0.
    work(&mut h, &ws, 12);
    close_epoch(&mut h);
    let padded = sorted(vec![(ws[0].public(), 800_000), (ws[1].public(), 200_000), (idle.public(), 0)]);
    commit(&mut h, &v, 0, &padded).unwrap();
    close_epoch(&mut h);
    let e = reveal(&mut h, &v, 0, &padded).unwrap_err();
    assert!(matches!(&e, Refusal::Invalid(m) if m.contains("did no work")), "{e}");
}
