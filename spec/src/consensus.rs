//! Scored classes' consensus (SPEC.md §13): how the score sheets the validators of a class
//! revealed for an epoch become each worker's consensus score and share of the class's
//! budget, and each validator's agreement with that consensus and share of the validators'
//! budget.
//!
//! Owns the arithmetic, all of it in integers, so that a coordinator, an auditor and the Python
//! reference agree to the satoshi. Must never decide who is a validator, what its stake is or
//! which sheets count: those are inputs, fixed by the coordinator's records and checked by an
//! auditor against what the epoch anchors.

use crate::keys::PubKey;

/// Scores are parts per million: 0 is the worst a worker can be scored, `SCORE_SCALE` the best.
pub const SCORE_SCALE: u32 = 1_000_000;
/// Validators in one consensus, at most.
pub const MAX_VALIDATORS: usize = 256;
/// Workers scored in one consensus, at most (and scores on one sheet): those with the most
/// verified units, when more did work (`scored_workers`).
pub const MAX_WORKERS: usize = 1024;
/// Verified units one worker may bring to a consensus, at most (2^40): keeps every product of
/// the arithmetic within 128 bits.
pub const MAX_UNITS: u64 = 1 << 40;
/// All the satoshis there will ever be: no budget is larger.
pub const MAX_MONEY_SATS: u64 = 21_000_000 * 100_000_000;

/// What a class's objective says about turning scores into shares (SPEC.md §13.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ConsensusParams {
    /// Satoshis the workers share for the epoch.
    pub worker_budget_sats: u64,
    /// Satoshis the validators share for the epoch.
    pub validator_budget_sats: u64,
    /// A worker's share is in proportion to its score above this (chance accuracy, say)
    /// times its verified units: at or below it, a worker earns nothing.
    pub baseline: u32,
    /// A validator whose scores lie this far from the consensus on average (or farther)
    /// earns nothing; nearer, it earns in proportion to its stake times how much nearer.
    pub tolerance: u32,
}

/// One validator's revealed scores, with the stake it scores with.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Sheet {
    /// The validator.
    pub validator: PubKey,
    /// Its stake (the bonded satoshis its registration proves, 1 to `MAX_MONEY_SATS`): its
    /// weight in the consensus.
    pub stake: u64,
    /// Its score of each worker, by ascending worker key; a worker left out scores 0, and a
    /// score of a key that is not a scored worker is ignored.
    pub scores: Vec<(PubKey, u32)>,
}

/// A worker's consensus score and share.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct WorkerOutcome {
    /// The worker.
    pub worker: PubKey,
    /// Its verified units of the class in the epoch.
    pub units: u64,
    /// The smallest of its scores `c` such that validators holding at least half the stake
    /// scored it `c` or less (the stake-weighted lower median).
    pub low: u32,
    /// The largest of its scores `c` such that validators holding at least half the stake
    /// scored it `c` or more (the stake-weighted upper median).
    pub high: u32,
    /// The stake-weighted mean of its scores, each clipped to `[low, high]`: always
    /// `(low + high) / 2` rounded down, the stake-weighted median.
    pub score: u32,
    /// Its share of the workers' budget.
    pub share_sats: u64,
}

/// A validator's agreement with the consensus and its share.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ValidatorOutcome {
    /// The validator.
    pub validator: PubKey,
    /// Its stake.
    pub stake: u64,
    /// The mean distance of its scores from the workers' consensus scores.
    pub deviation: u32,
    /// `tolerance − deviation`, or 0 when that is negative or no worker was scored.
    pub agreement: u32,
    /// Its share of the validators' budget.
    pub share_sats: u64,
}

/// What one epoch's consensus for one class decides.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Outcome {
    /// Every scored worker, by ascending key.
    pub workers: Vec<WorkerOutcome>,
    /// Every validator whose sheet counted, by ascending key.
    pub validators: Vec<ValidatorOutcome>,
    /// The budgets' satoshis nobody earned (rounding down, scores at the baseline, no
    /// agreement): they stay with whoever funds the budget.
    pub unallocated_sats: u64,
}

/// Inputs no consensus is computed from. Each names what a caller got wrong; none is a
/// judgement of a validator (a validator's bad sheet is refused before it gets here).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ConsensusError {
    /// The scored workers are not in strictly ascending key order.
    #[error("the scored workers are not in strictly ascending key order")]
    WorkersOutOfOrder,
    /// A worker with more than `MAX_UNITS` units.
    #[error("a worker with more than {MAX_UNITS} units")]
    TooManyUnits,
    /// More workers than `MAX_WORKERS`.
    #[error("more than {MAX_WORKERS} workers")]
    TooManyWorkers,
    /// The sheets are not in strictly ascending validator key order.
    #[error("the sheets are not in strictly ascending validator order")]
    SheetsOutOfOrder,
    /// More sheets than `MAX_VALIDATORS`.
    #[error("more than {MAX_VALIDATORS} sheets")]
    TooManySheets,
    /// A sheet with no stake behind it, or more than all the money there is.
    #[error("the stake of validator {0} is zero or above all the money")]
    BadStake(PubKey),
    /// A sheet whose scores are not in strictly ascending worker order, or above
    /// `SCORE_SCALE` (what its reveal's decoder refuses).
    #[error("the sheet of validator {0} is not well formed")]
    BadSheet(PubKey),
    /// A validator that is also a scored worker: it would score itself (a key is one or the
    /// other at a coordinator).
    #[error("validator {0} is also a scored worker")]
    ValidatorIsWorker(PubKey),
    /// A budget above all the money there is, or a baseline or tolerance above the scale.
    #[error("consensus parameters out of range")]
    BadParams,
}

impl ConsensusError {
    /// The error's name in the vectors and API answers.
    pub fn code(&self) -> &'static str {
        match self {
            ConsensusError::WorkersOutOfOrder => "workers_out_of_order",
            ConsensusError::TooManyUnits => "too_many_units",
            ConsensusError::TooManyWorkers => "too_many_workers",
            ConsensusError::SheetsOutOfOrder => "sheets_out_of_order",
            ConsensusError::TooManySheets => "too_many_sheets",
            ConsensusError::BadStake(_) => "bad_stake",
            ConsensusError::BadSheet(_) => "bad_sheet",
            ConsensusError::ValidatorIsWorker(_) => "validator_is_worker",
            ConsensusError::BadParams => "bad_params",
        }
    }
}

/// The workers a consensus scores, from each worker's verified units of the class in the
/// epoch (SPEC.md §13.1): those with at least one unit, at most `MAX_WORKERS` of them (the
/// most units first, ties to the lower key), in ascending key order.
pub fn scored_workers(units: &[(PubKey, u64)]) -> Vec<(PubKey, u64)> {
    let mut w: Vec<(PubKey, u64)> = units.iter().copied().filter(|&(_, u)| u > 0).collect();
    // A key listed twice counts once, with its larger figure.
    w.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()).then_with(|| b.1.cmp(&a.1)));
    w.dedup_by(|later, first| later.0 == first.0);
    w.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.as_bytes().cmp(b.0.as_bytes())));
    w.truncate(MAX_WORKERS);
    w.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
    w
}

/// The consensus of `sheets` over `workers` (each with its verified units; both in ascending
/// key order) under `params` (SPEC.md §13.3).
///
/// For each worker, `low` and `high` are the stake-weighted lower and upper medians of its
/// scores, and its consensus score is the stake-weighted mean of its scores clipped to that
/// range. When validators holding more than half the stake score honestly, both medians lie
/// within the honest validators' scores of that worker, so whatever the rest submit moves a
/// worker's *score* by at most the spread of the honest scores (its share can still move
/// more, since shares are relative). Shares follow the score above the baseline times the
/// verified units, so splitting the same work over more keys earns nothing more; a
/// validator's share follows its stake times its agreement.
pub fn consensus(
    params: &ConsensusParams,
    workers: &[(PubKey, u64)],
    sheets: &[Sheet],
) -> Result<Outcome, ConsensusError> {
    if params.worker_budget_sats > MAX_MONEY_SATS
        || params.validator_budget_sats > MAX_MONEY_SATS
        || params.baseline > SCORE_SCALE
        || params.tolerance > SCORE_SCALE
    {
        return Err(ConsensusError::BadParams);
    }
    if workers.len() > MAX_WORKERS {
        return Err(ConsensusError::TooManyWorkers);
    }
    if workers.windows(2).any(|w| w.first().map(|x| x.0.as_bytes()) >= w.get(1).map(|x| x.0.as_bytes())) {
        return Err(ConsensusError::WorkersOutOfOrder);
    }
    if workers.iter().any(|&(_, u)| u > MAX_UNITS) {
        return Err(ConsensusError::TooManyUnits);
    }
    if sheets.len() > MAX_VALIDATORS {
        return Err(ConsensusError::TooManySheets);
    }
    if sheets
        .windows(2)
        .any(|w| w.first().map(|s| s.validator.as_bytes()) >= w.get(1).map(|s| s.validator.as_bytes()))
    {
        return Err(ConsensusError::SheetsOutOfOrder);
    }
    let keys: Vec<PubKey> = workers.iter().map(|w| w.0).collect();
    // Each sheet as a row of scores, one per worker (0 where it left the worker out).
    let mut rows: Vec<Vec<u32>> = Vec::with_capacity(sheets.len());
    for s in sheets {
        if s.stake == 0 || s.stake > MAX_MONEY_SATS {
            return Err(ConsensusError::BadStake(s.validator));
        }
        if keys.binary_search_by(|w| w.as_bytes().cmp(s.validator.as_bytes())).is_ok() {
            return Err(ConsensusError::ValidatorIsWorker(s.validator));
        }
        rows.push(row(s, &keys).ok_or(ConsensusError::BadSheet(s.validator))?);
    }
    let total: u128 = sheets.iter().map(|s| u128::from(s.stake)).sum();

    let mut outcomes = Vec::with_capacity(workers.len());
    for (j, &(worker, units)) in workers.iter().enumerate() {
        let column: Vec<(u32, u64)> =
            rows.iter().zip(sheets).map(|(r, s)| (r.get(j).copied().unwrap_or(0), s.stake)).collect();
        let (low, high) = medians(column.clone(), total);
        let sum: u128 =
            column.iter().map(|&(s, stake)| u128::from(stake) * u128::from(s.clamp(low, high))).sum();
        let score = sum.checked_div(total).map_or(0, narrow);
        outcomes.push(WorkerOutcome { worker, units, low, high, score, share_sats: 0 });
    }

    // Workers: in proportion to the score above the baseline times the verified units
    // (nobody when nobody is above).
    let weight_of =
        |o: &WorkerOutcome| u128::from(o.score.saturating_sub(params.baseline)) * u128::from(o.units);
    let weights_total: u128 = outcomes.iter().map(weight_of).sum();
    let mut paid: u128 = 0;
    for o in &mut outcomes {
        let share =
            (u128::from(params.worker_budget_sats) * weight_of(o)).checked_div(weights_total).unwrap_or(0);
        o.share_sats = u64::try_from(share).unwrap_or(0);
        paid += share;
    }

    // Validators: in proportion to stake times agreement (nobody when no worker was scored).
    let n = workers.len() as u128;
    let mut validators: Vec<ValidatorOutcome> = rows
        .iter()
        .zip(sheets)
        .map(|(r, s)| {
            let distance: u128 = r.iter().zip(&outcomes).map(|(&v, o)| u128::from(v.abs_diff(o.score))).sum();
            let deviation = distance.checked_div(n).map_or(0, narrow);
            let agreement = if n == 0 { 0 } else { params.tolerance.saturating_sub(deviation) };
            ValidatorOutcome { validator: s.validator, stake: s.stake, deviation, agreement, share_sats: 0 }
        })
        .collect();
    let weight = |v: &ValidatorOutcome| u128::from(v.stake) * u128::from(v.agreement);
    let weight_total: u128 = validators.iter().map(weight).sum();
    for v in &mut validators {
        let share =
            (u128::from(params.validator_budget_sats) * weight(v)).checked_div(weight_total).unwrap_or(0);
        v.share_sats = u64::try_from(share).unwrap_or(0);
        paid += share;
    }
    let budget = u128::from(params.worker_budget_sats) + u128::from(params.validator_budget_sats);
    let unallocated_sats = u64::try_from(budget.saturating_sub(paid)).unwrap_or(0);
    Ok(Outcome { workers: outcomes, validators, unallocated_sats })
}

/// A sheet's scores as one per worker (0 for a worker it left out; scores of keys that are
/// not scored workers are ignored), or `None` when its scores are out of order or above the
/// scale.
fn row(sheet: &Sheet, workers: &[PubKey]) -> Option<Vec<u32>> {
    if sheet.scores.len() > MAX_WORKERS
        || sheet
            .scores
            .windows(2)
            .any(|w| w.first().map(|s| s.0.as_bytes()) >= w.get(1).map(|s| s.0.as_bytes()))
        || sheet.scores.iter().any(|&(_, score)| score > SCORE_SCALE)
    {
        return None;
    }
    let mut out = vec![0u32; workers.len()];
    for (worker, score) in &sheet.scores {
        if let Ok(j) = workers.binary_search_by(|w| w.as_bytes().cmp(worker.as_bytes())) {
            *out.get_mut(j)? = *score;
        }
    }
    Some(out)
}

/// The stake-weighted lower and upper medians of `(score, stake)` pairs whose stakes sum to
/// `total`: the lowest score at or below which lies at least half the stake, and the highest
/// at or above which lies at least half. `(0, 0)` with no stake.
fn medians(mut column: Vec<(u32, u64)>, total: u128) -> (u32, u32) {
    column.sort_unstable();
    let reaches_half = |cum: u128| 2 * cum >= total;
    let mut cum = 0u128;
    let low = column
        .iter()
        .find(|&&(_, stake)| {
            cum += u128::from(stake);
            reaches_half(cum)
        })
        .map_or(0, |&(s, _)| s);
    let mut cum = 0u128;
    let high = column
        .iter()
        .rev()
        .find(|&&(_, stake)| {
            cum += u128::from(stake);
            reaches_half(cum)
        })
        .map_or(0, |&(s, _)| s);
    (low, high)
}

/// A quotient known to fit a score (a mean or clip of scores ≤ `SCORE_SCALE`).
fn narrow(v: u128) -> u32 {
    u32::try_from(v).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::SigningKey;

    fn keys(n: u8, from: u8) -> Vec<PubKey> {
        let mut k: Vec<PubKey> =
            (0..n).map(|i| SigningKey::from_secret_bytes([from + i; 32]).unwrap().public()).collect();
        k.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
        k
    }

    fn sheet(v: PubKey, stake: u64, workers: &[PubKey], scores: &[u32]) -> Sheet {
        Sheet { validator: v, stake, scores: workers.iter().copied().zip(scores.iter().copied()).collect() }
    }

    fn work(w: &[PubKey]) -> Vec<(PubKey, u64)> {
        w.iter().map(|k| (*k, 1)).collect()
    }

    const PARAMS: ConsensusParams = ConsensusParams {
        worker_budget_sats: 1_000_000,
        validator_budget_sats: 180_000,
        baseline: 250_000,
        tolerance: 200_000,
    };

    #[test]
    fn medians_of_a_column() {
        assert_eq!(medians(vec![(10, 1), (20, 1)], 2), (10, 20));
        assert_eq!(medians(vec![(80, 1), (82, 1), (100, 1)], 3), (82, 82));
        assert_eq!(medians(vec![(5, 3), (100, 1)], 4), (5, 5));
        assert_eq!(medians(vec![], 0), (0, 0));
    }

    #[test]
    fn budgets_are_never_overspent_and_every_sat_is_accounted_for() {
        let w = keys(4, 1);
        let v = keys(3, 50);
        let sheets: Vec<Sheet> = v
            .iter()
            .enumerate()
            .map(|(i, k)| sheet(*k, 1 + i as u64 * 7, &w, &[900_001, 333_333, 250_001, 777_777]))
            .collect();
        let o = consensus(&PARAMS, &work(&w), &sheets).unwrap();
        let paid: u64 = o.workers.iter().map(|x| x.share_sats).sum::<u64>()
            + o.validators.iter().map(|x| x.share_sats).sum::<u64>();
        assert_eq!(paid + o.unallocated_sats, PARAMS.worker_budget_sats + PARAMS.validator_budget_sats);
        assert!(o.unallocated_sats > 0, "rounding down leaves a remainder here");
    }

    #[test]
    fn bad_inputs_are_refused() {
        let w = keys(2, 1);
        let v = keys(2, 50);
        let mut rev = w.clone();
        rev.reverse();
        assert_eq!(consensus(&PARAMS, &work(&rev), &[]), Err(ConsensusError::WorkersOutOfOrder));
        let w = work(&w);
        let keys_w: Vec<PubKey> = w.iter().map(|x| x.0).collect();
        let s = |k| sheet(k, 1, &keys_w, &[1, 2]);
        let (a, b) = (v[0], v[1]);
        assert_eq!(consensus(&PARAMS, &w, &[s(b), s(a)]), Err(ConsensusError::SheetsOutOfOrder));
        assert_eq!(consensus(&PARAMS, &w, &[s(a), s(a)]), Err(ConsensusError::SheetsOutOfOrder));
        assert_eq!(
            consensus(&PARAMS, &w, &[sheet(a, 0, &keys_w, &[1, 2])]),
            Err(ConsensusError::BadStake(a))
        );
        let rich = sheet(a, MAX_MONEY_SATS + 1, &keys_w, &[1, 2]);
        assert_eq!(consensus(&PARAMS, &w, &[rich]), Err(ConsensusError::BadStake(a)));
        assert_eq!(
            consensus(&PARAMS, &w, &[sheet(a, 1, &keys_w, &[1, SCORE_SCALE + 1])]),
            Err(ConsensusError::BadSheet(a))
        );
        let backwards = Sheet { validator: a, stake: 1, scores: vec![(keys_w[1], 1), (keys_w[0], 1)] };
        assert_eq!(consensus(&PARAMS, &w, &[backwards]), Err(ConsensusError::BadSheet(a)));
        // A score of a key that is not a scored worker is ignored, not a reason to refuse all.
        let stranger = Sheet { validator: a, stake: 1, scores: vec![(v[1], 1)] };
        assert!(consensus(&PARAMS, &w, &[stranger]).is_ok());
        let worker_too = sheet(keys_w[0], 1, &keys_w[1..], &[5]);
        assert_eq!(consensus(&PARAMS, &w, &[worker_too]), Err(ConsensusError::ValidatorIsWorker(keys_w[0])));
        let mut heavy = w.clone();
        heavy[0].1 = MAX_UNITS + 1;
        assert_eq!(consensus(&PARAMS, &heavy, &[]), Err(ConsensusError::TooManyUnits));
        let p = ConsensusParams { tolerance: SCORE_SCALE + 1, ..PARAMS };
        assert_eq!(consensus(&p, &w, &[]), Err(ConsensusError::BadParams));
        let p = ConsensusParams { worker_budget_sats: MAX_MONEY_SATS + 1, ..PARAMS };
        assert_eq!(consensus(&p, &w, &[]), Err(ConsensusError::BadParams));
    }

    #[test]
    fn the_score_is_the_stake_weighted_median() {
        let w = keys(1, 1);
        let v = keys(4, 50);
        for stakes in [[1u64, 1, 1, 1], [5, 1, 1, 1], [1, 2, 3, 4], [3, 3, 1, 1]] {
            let scores = [100u32, 700_000, 250_000, 999_999];
            let sheets: Vec<Sheet> =
                v.iter().zip(stakes).zip(scores).map(|((k, st), sc)| sheet(*k, st, &w, &[sc])).collect();
            let o = consensus(&PARAMS, &work(&w), &sheets).unwrap();
            let x = o.workers[0];
            assert_eq!(x.score, (x.low + x.high) / 2, "{stakes:?}");
        }
    }

    #[test]
    fn the_scored_workers_are_those_with_the_most_units() {
        let k = keys(3, 1);
        let few: Vec<(PubKey, u64)> = vec![(k[2], 5), (k[0], 0), (k[1], 7), (k[2], 3)];
        assert_eq!(scored_workers(&few), vec![(k[1], 7), (k[2], 5)]);
        let key = |i: u64| {
            let mut b = [7u8; 32];
            b[..8].copy_from_slice(&i.to_be_bytes());
            SigningKey::from_secret_bytes(b).unwrap().public()
        };
        let many: Vec<(PubKey, u64)> = (0..MAX_WORKERS as u64 + 6).map(|i| (key(i), i)).collect();
        let chosen = scored_workers(&many);
        assert_eq!(chosen.len(), MAX_WORKERS);
        assert!(chosen.iter().all(|&(_, u)| u >= 6), "the ones with the fewest units left out");
        assert!(chosen.windows(2).all(|p| p[0].0.as_bytes() < p[1].0.as_bytes()));
    }

    #[test]
    fn nothing_scored_pays_nobody() {
        let o = consensus(&PARAMS, &[], &[sheet(keys(1, 50)[0], 5, &[], &[])]).unwrap();
        assert_eq!(o.validators[0].share_sats, 0);
        assert_eq!(o.unallocated_sats, PARAMS.worker_budget_sats + PARAMS.validator_budget_sats);
        let w = keys(2, 1);
        let o = consensus(&PARAMS, &work(&w), &[]).unwrap();
        assert!(o.workers.iter().all(|x| x.score == 0 && x.share_sats == 0));
    }
}
