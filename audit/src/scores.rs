//! Re-verifying the scored rounds an epoch credits (SPEC.md §13.6): their root is the
//! header's scores root, each round's sheets are its validators' signed reveals, its outcome
//! is exactly the consensus of its inputs, and each worker's units are those of its accepted
//! receipts of the class in the scored epoch.
//!
//! Owns the round checks and their wording. Must never fetch anything: the caller brings the
//! rounds and the scored epoch's receipts.

use std::collections::BTreeMap;

use cairn_spec::{rounds, EpochHeader, Hash32, LedgerEntry, PubKey, ScoredRound, SignedReceipt, TaskClass};

/// Each bond output a round names, as the auditor's Bitcoin node reports it: its value and
/// whether it pays to the sheet's bond key (`None`: the node does not know the output — an
/// invented one, or one spent since, which a node finds only with `-txindex`).
pub type BondValues = BTreeMap<(Hash32, u32), Option<(u64, bool)>>;

/// What the rounds of `header` add up to, or the first thing wrong with them. `scored` is
/// every receipt of the scored epoch (`header.height − 2`) when the caller has them, and
/// `bonds` what Bitcoin says the bond outputs hold when it has a node; without them the units
/// or the stakes are not checked, and the text says so.
pub fn check_rounds(
    header: &EpochHeader,
    rounds: &[ScoredRound],
    scored: Option<&[SignedReceipt]>,
    bonds: Option<&BondValues>,
    classes: &BTreeMap<Hash32, TaskClass>,
) -> Result<String, String> {
    let root = rounds::scores_root(rounds);
    if root != header.scores_root {
        return Err(format!(
            "the {} rounds served hash to scores root {root}, the header commits {}",
            rounds.len(),
            header.scores_root
        ));
    }
    if rounds.is_empty() {
        return Ok("no scored round".into());
    }
    let epoch = header.height.checked_sub(2).ok_or("rounds in an epoch before the second")?;
    if rounds.windows(2).any(|w| w.first().map(|r| r.class) >= w.get(1).map(|r| r.class)) {
        return Err("rounds not in strictly ascending class order".into());
    }
    let units = scored.map(units_by_class);
    let mut credited = 0u64;
    let mut unknown_classes = 0usize;
    for r in rounds {
        let name = format!("round of class {}", r.class);
        if r.network != header.network || r.coordinator != header.coordinator || r.epoch != epoch {
            return Err(format!("{name} is not this chain's round of epoch {epoch}"));
        }
        r.check().map_err(|e| format!("{name}: {e}"))?;
        // The class id commits to its terms: a round paying by others is the coordinator's.
        if let Some(class) = classes.get(&r.class) {
            if class.objective.terms() != Some(&r.params) {
                return Err(format!(
                    "{name} shares by terms {:?}, the class states {:?}",
                    r.params, class.objective
                ));
            }
        } else {
            unknown_classes += 1;
        }
        if let Some(units) = &units {
            for w in &r.workers {
                let have = units.get(&(r.class, w.worker)).copied().unwrap_or(0);
                if have != w.units {
                    return Err(format!(
                        "{name} credits worker {} with {} units; its accepted receipts of epoch {epoch} hold {have}",
                        w.worker, w.units
                    ));
                }
            }
        }
        if let Some(bonds) = bonds {
            for sh in &r.sheets {
                let at = format!("{}:{}", bitcoin_txid(&sh.bond_txid), sh.bond_vout);
                match bonds.get(&(sh.bond_txid, sh.bond_vout)).copied().flatten() {
                    Some((v, true)) if v == sh.stake => {}
                    Some((_, false)) => {
                        return Err(format!(
                            "{name} weighs validator {} with bond output {at}, which does not pay to its bond key",
                            sh.validator
                        ))
                    }
                    Some((v, _)) => {
                        return Err(format!(
                            "{name} weighs validator {} with a stake of {} sats; its bond output {at} holds {v}",
                            sh.validator, sh.stake
                        ))
                    }
                    None => {
                        return Err(format!(
                            "{name} weighs validator {} with bond output {at}, which Bitcoin does not show \
                             (invented, or spent since: give the auditor a node with -txindex)",
                            sh.validator
                        ))
                    }
                }
            }
        }
        credited = credited.saturating_add(r.credited_sats());
    }
    let stakes = match bonds {
        None => "; stakes not checked (no Bitcoin node)",
        Some(_) => ", stakes match Bitcoin",
    };
    let terms = match unknown_classes {
        0 => ", terms match the classes".to_owned(),
        n => format!("; the terms of {n} rounds not checked (class not served)"),
    };
    Ok(format!(
        "{} rounds over epoch {epoch} recomputed exactly ({} sats credited){}{stakes}{terms}",
        rounds.len(),
        credited,
        if units.is_some() {
            ", units match the receipts"
        } else {
            "; units not checked (no receipts of that epoch)"
        }
    ))
}

/// A scored class's units by (class, worker) in `receipts`: its accepted receipts, one unit
/// each, at most `MAX_UNITS` (SPEC.md §13.1).
fn units_by_class(receipts: &[SignedReceipt]) -> BTreeMap<(Hash32, PubKey), u64> {
    let mut m = BTreeMap::new();
    for r in receipts.iter().filter(|r| r.body.verdict.is_accepted()) {
        let n: &mut u64 = m.entry((r.body.class, r.body.worker)).or_default();
        *n = n.saturating_add(1).min(cairn_spec::consensus::MAX_UNITS);
    }
    m
}

/// A txid as Bitcoin shows it (reversed bytes), for messages.
fn bitcoin_txid(internal: &Hash32) -> String {
    let mut b = internal.0;
    b.reverse();
    hex::encode(b)
}

/// Key by key, the ledger after an epoch holds no more than the ledger before it plus what
/// the epoch credits the key: its receipts' rewards and its shares of the epoch's rounds.
/// (Payouts move sats between a key's columns; forfeits take them away.) A coordinator that
/// credits a share to another key than its round names is caught here.
pub fn check_ledger_growth(
    before: &[LedgerEntry],
    after: &[LedgerEntry],
    receipts: &[SignedReceipt],
    rounds: &[ScoredRound],
) -> Result<String, String> {
    let total = |e: &LedgerEntry| u128::from(e.locked) + u128::from(e.claimable) + u128::from(e.paid);
    let mut allowed: BTreeMap<PubKey, u128> = before.iter().map(|e| (e.worker, total(e))).collect();
    let credits = receipts
        .iter()
        .map(|r| (r.body.worker, r.body.reward_sats))
        .chain(rounds.iter().flat_map(|r| r.workers.iter().map(|w| (w.worker, w.share_sats))))
        .chain(rounds.iter().flat_map(|r| r.sheets.iter().map(|s| (s.validator, s.share_sats))));
    for (key, sats) in credits {
        *allowed.entry(key).or_default() += u128::from(sats);
    }
    for e in after {
        let most = allowed.get(&e.worker).copied().unwrap_or(0);
        if total(e) > most {
            return Err(format!(
                "key {} holds {} sats in the ledger; before the epoch and with what it credits the key, at most {most}",
                e.worker,
                total(e)
            ));
        }
    }
    Ok(format!("{} ledger entries grew by no more than the epoch credits them", after.len()))
}
