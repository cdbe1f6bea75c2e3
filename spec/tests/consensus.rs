//! The consensus of scored classes (SPEC.md §13) against the validators who try to bend it:
//! one that inflates a poor worker and deflates the rest, one that splits its stake over many
//! keys, a minority submitting anything at all, a validator copying without evaluating, and a
//! worker splitting its work over many keys.
#![allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::print_stdout)]

use cairn_spec::consensus::{consensus, ConsensusParams, Sheet, SCORE_SCALE};
use cairn_spec::{PubKey, SigningKey};
use proptest::prelude::*;

fn keys(n: usize, from: u8) -> Vec<PubKey> {
    let mut k: Vec<PubKey> =
        (0..n).map(|i| SigningKey::from_secret_bytes([from + i as u8; 32]).unwrap().public()).collect();
    k.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
    k
}

fn sheet(v: PubKey, stake: u64, workers: &[PubKey], scores: &[u32]) -> Sheet {
    Sheet { validator: v, stake, scores: workers.iter().copied().zip(scores.iter().copied()).collect() }
}

/// Workers that each did one verified unit.
fn work(w: &[PubKey]) -> Vec<(PubKey, u64)> {
    w.iter().map(|k| (*k, 1)).collect()
}

fn sorted(mut sheets: Vec<Sheet>) -> Vec<Sheet> {
    sheets.sort_by(|a, b| a.validator.as_bytes().cmp(b.validator.as_bytes()));
    sheets
}

const PARAMS: ConsensusParams = ConsensusParams {
    worker_budget_sats: 1_000_000,
    validator_budget_sats: 180_000,
    baseline: 250_000,
    tolerance: 200_000,
};

/// Four workers of true accuracy 0.91, 0.74, 0.52 and 0.30 (chance is 0.25), one unit each; two honest
/// validators measure them with a little noise; the third colludes with the poorest worker:
/// it scores it perfect and the others at chance.
#[test]
fn a_colluding_validator_is_clipped_and_earns_less() {
    let w = keys(4, 1);
    let v = keys(3, 40);
    let (h1, h2, colluder) = (v[0], v[1], v[2]);
    let honest1 = [905_000, 746_000, 515_000, 296_000];
    let honest2 = [914_000, 737_000, 524_000, 305_000];
    let inflating = [250_000, 250_000, 250_000, SCORE_SCALE];
    let with = sorted(vec![
        sheet(h1, 1_000, &w, &honest1),
        sheet(h2, 1_000, &w, &honest2),
        sheet(colluder, 1_000, &w, &inflating),
    ]);
    let without = sorted(vec![sheet(h1, 1_000, &w, &honest1), sheet(h2, 1_000, &w, &honest2)]);
    let o = consensus(&PARAMS, &work(&w), &with).unwrap();
    let honest_only = consensus(&PARAMS, &work(&w), &without).unwrap();

    // Shares follow true quality.
    for k in 1..4 {
        assert!(o.workers[k - 1].share_sats > o.workers[k].share_sats, "{o:?}");
    }
    // Each worker's score stays within the honest validators' scores of it: the bound.
    for (j, x) in o.workers.iter().enumerate() {
        let (lo, hi) = (honest1[j].min(honest2[j]), honest1[j].max(honest2[j]));
        assert!(x.score >= lo && x.score <= hi, "worker {j}: {} not in [{lo}, {hi}]", x.score);
    }
    let pull: Vec<i64> = o
        .workers
        .iter()
        .zip(&honest_only.workers)
        .map(|(a, b)| i64::from(a.score) - i64::from(b.score))
        .collect();
    let moved: Vec<i64> = o
        .workers
        .iter()
        .zip(&honest_only.workers)
        .map(|(a, b)| a.share_sats as i64 - b.share_sats as i64)
        .collect();
    println!(
        "colluder's pull on the scores (ppm): {pull:?}; bound: the honest spread {:?}",
        honest1.iter().zip(&honest2).map(|(a, b)| a.abs_diff(*b)).collect::<Vec<_>>()
    );
    println!("colluder's pull on the workers' shares (sats of {}): {moved:?}", PARAMS.worker_budget_sats);
    // The poor worker the colluder inflated gains nothing beyond the honest spread.
    assert!(pull[3].unsigned_abs() <= u64::from(honest1[3].abs_diff(honest2[3])));
    // The colluder earns less than either honest validator.
    let share = |k: PubKey| o.validators.iter().find(|x| x.validator == k).unwrap().share_sats;
    assert!(share(colluder) < share(h1) && share(colluder) < share(h2), "{:?}", o.validators);
    assert_eq!(share(colluder), 0, "its distance from the consensus is beyond the tolerance");
}

/// Splitting stake over many keys changes no score and earns the splitter no more.
#[test]
fn splitting_stake_over_a_hundred_keys_gains_nothing() {
    let w = keys(3, 1);
    let honest = [800_000u32, 600_000, 400_000];
    let skewed = [790_000u32, 640_000, 380_000];
    let one = keys(1, 90)[0];
    let many = keys(100, 100);
    let base = sorted(vec![sheet(keys(1, 60)[0], 3_000, &w, &honest), sheet(one, 1_000, &w, &skewed)]);
    let mut split = vec![sheet(keys(1, 60)[0], 3_000, &w, &honest)];
    split.extend(many.iter().map(|k| sheet(*k, 10, &w, &skewed)));
    let split = sorted(split);
    let a = consensus(&PARAMS, &work(&w), &base).unwrap();
    let b = consensus(&PARAMS, &work(&w), &split).unwrap();
    assert_eq!(
        a.workers.iter().map(|x| (x.score, x.share_sats)).collect::<Vec<_>>(),
        b.workers.iter().map(|x| (x.score, x.share_sats)).collect::<Vec<_>>()
    );
    let whole = a.validators.iter().find(|x| x.validator == one).unwrap().share_sats;
    let parts: u64 = b.validators.iter().filter(|x| many.contains(&x.validator)).map(|x| x.share_sats).sum();
    assert!(parts <= whole, "split {parts} > whole {whole}");
}

/// A validator that copies last epoch's consensus instead of evaluating is as far from this
/// epoch's consensus as the workers moved: when a worker changes, the copier loses.
#[test]
fn copying_last_epochs_consensus_costs_when_workers_change() {
    let w = keys(3, 1);
    let last = [800_000u32, 600_000, 400_000];
    let now = [800_000u32, 300_000, 700_000]; // one worker got worse, one better
    let v = keys(3, 40);
    let sheets = sorted(vec![
        sheet(v[0], 1_000, &w, &now),
        sheet(v[1], 1_000, &w, &[805_000, 295_000, 702_000]),
        sheet(v[2], 1_000, &w, &last),
    ]);
    let o = consensus(&PARAMS, &work(&w), &sheets).unwrap();
    let share = |k: PubKey| o.validators.iter().find(|x| x.validator == k).unwrap().share_sats;
    assert!(share(v[2]) < share(v[0]) && share(v[2]) < share(v[1]), "{:?}", o.validators);
}

/// A worker that runs its verified units under ten keys instead of one earns no more: shares
/// follow score times units, not keys.
#[test]
fn splitting_work_over_many_keys_gains_nothing() {
    let honest = keys(2, 1);
    let sybils = keys(10, 200);
    let one = keys(1, 150)[0];
    let v = keys(2, 40);
    let score = |w: &[PubKey]| -> Vec<u32> { w.iter().map(|_| 800_000).collect() };
    let mut whole: Vec<(PubKey, u64)> = vec![(honest[0], 10), (honest[1], 10), (one, 10)];
    whole.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
    let mut split: Vec<(PubKey, u64)> = vec![(honest[0], 10), (honest[1], 10)];
    split.extend(sybils.iter().map(|k| (*k, 1)));
    split.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
    let sheets = |w: &[(PubKey, u64)]| {
        let ks: Vec<PubKey> = w.iter().map(|x| x.0).collect();
        sorted(v.iter().map(|k| sheet(*k, 100, &ks, &score(&ks))).collect())
    };
    let a = consensus(&PARAMS, &whole, &sheets(&whole)).unwrap();
    let b = consensus(&PARAMS, &split, &sheets(&split)).unwrap();
    let alone = a.workers.iter().find(|x| x.worker == one).unwrap().share_sats;
    let parts: u64 = b.workers.iter().filter(|x| sybils.contains(&x.worker)).map(|x| x.share_sats).sum();
    assert!(parts <= alone, "ten keys {parts} > one key {alone}");
    assert!(alone > 0);
}

fn score() -> impl Strategy<Value = u32> {
    0..=SCORE_SCALE
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, .. ProptestConfig::default() })]

    /// Whatever a minority of the stake submits, every worker's score lies within the scores
    /// the honest majority gave it, and no budget is overspent.
    #[test]
    fn a_minority_cannot_move_a_score_outside_the_honest_range(
        honest in prop::collection::vec((1u64..1_000_000, prop::collection::vec(score(), 4)), 1..6),
        adversary in prop::collection::vec((1u64..1_000_000, prop::collection::vec(score(), 4)), 0..6),
    ) {
        let w = keys(4, 1);
        let honest_stake: u64 = honest.iter().map(|h| h.0).sum();
        let adv_stake: u64 = adversary.iter().map(|a| a.0).sum();
        prop_assume!(honest_stake > adv_stake);
        let v = keys(honest.len() + adversary.len(), 120);
        let sheets: Vec<Sheet> = honest
            .iter()
            .chain(&adversary)
            .zip(&v)
            .map(|((stake, scores), k)| sheet(*k, *stake, &w, scores))
            .collect();
        let o = consensus(&PARAMS, &work(&w), &sorted(sheets)).unwrap();
        for (j, x) in o.workers.iter().enumerate() {
            let lo = honest.iter().map(|h| h.1[j]).min().unwrap();
            let hi = honest.iter().map(|h| h.1[j]).max().unwrap();
            prop_assert!(x.low >= lo && x.high <= hi && x.low <= x.high);
            prop_assert!(x.score >= lo && x.score <= hi);
        }
        let paid: u64 = o.workers.iter().map(|x| x.share_sats).sum::<u64>()
            + o.validators.iter().map(|x| x.share_sats).sum::<u64>();
        prop_assert_eq!(paid + o.unallocated_sats, PARAMS.worker_budget_sats + PARAMS.validator_budget_sats);
    }
}
