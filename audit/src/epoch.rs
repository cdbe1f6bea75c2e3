//! Re-verifying one epoch from its parts: the header's signature and its link to the one
//! before and to the history of all before it, every receipt (signed by the coordinator, in this epoch, on this network, no
//! duplicates), the receipts root recomputed, the header's totals, and the state root
//! recomputed from the ledger snapshot.
//!
//! Owns the epoch checks and their order. Must never fetch anything: the caller brings the
//! parts, so the follower and the auditor run exactly the same checks.

use std::collections::HashSet;

use crate::verify::Report;
use cairn_spec::merkle::Frontier;
use cairn_spec::receipt::ReceiptVerifier;
use cairn_spec::{merkle, EpochHeader, Hash32, LedgerEntry, SignedEpochHeader, SignedReceipt};

/// The checks of an epoch, in order.
pub const EPOCH_CHECKS: [&str; 6] =
    ["header_signature", "header_link", "receipts", "receipts_root", "totals", "state_root"];

/// Checks epoch `header` against its predecessor (`None` only for height 0) and the history
/// frontier over every header before it, its receipts in index order, and the ledger entries
/// its state root commits to.
pub fn check_epoch(
    header: &SignedEpochHeader,
    prev: Option<&EpochHeader>,
    history: &Frontier,
    receipts: &[SignedReceipt],
    ledger: &[LedgerEntry],
) -> Report {
    let h = &header.body;
    let mut r = Report::default();
    r.push("header_signature", header.verify(), format!("epoch {} signed by {}", h.height, h.coordinator));
    let (linked, why) = match prev {
        Some(p) => (h.follows(p), format!("follows epoch {} ({})", p.height, p.hash())),
        None => {
            (h.height == 0 && h.prev == Hash32::ZERO, "genesis: height 0, previous hash all zeros".to_owned())
        }
    };
    let (linked, why) = match (linked, h.history_is(history)) {
        (false, _) => (false, format!("does not link: expected {why}")),
        (true, false) => (
            false,
            format!(
                "{why}, but commits history {} instead of {}, the root over the {} headers before it",
                h.history,
                history.root(),
                history.len()
            ),
        ),
        (true, true) => (true, format!("{why}, with the history of the {} headers before it", history.len())),
    };
    r.push("header_link", linked, why);
    let mut seen = HashSet::with_capacity(receipts.len());
    // Each receipt's id once (its encoding hashed), for every check below.
    let ids: Vec<Hash32> = receipts.iter().map(|s| s.id()).collect();
    // Receipts come in signed batches (SPEC.md §5.7): each batch's signature is checked once.
    let mut signatures = ReceiptVerifier::default();
    let bad = receipts.iter().zip(&ids).enumerate().find_map(|(i, (s, id))| {
        let b = &s.body;
        let why = if !signatures.verify_id(s, id) {
            "signature invalid"
        } else if b.coordinator != h.coordinator {
            "signed by another coordinator"
        } else if b.epoch != h.height {
            "names another epoch"
        } else if b.network != h.network {
            "names another network"
        } else if !seen.insert(*id) {
            "appears twice"
        } else {
            return None;
        };
        Some(format!("receipt {i} ({id}) {why}"))
    });
    let count_ok = receipts.len() == h.receipt_count as usize;
    r.push(
        "receipts",
        bad.is_none() && count_ok,
        bad.unwrap_or_else(|| format!("{} signed receipts, header says {}", receipts.len(), h.receipt_count)),
    );
    let root = merkle::root(&ids);
    r.push(
        "receipts_root",
        root == h.receipts_root,
        format!("recomputed {root}, header {}", h.receipts_root),
    );
    let accepted = receipts.iter().filter(|s| s.body.verdict.is_accepted()).count();
    let reward = receipts.iter().try_fold(0u64, |a, s| a.checked_add(s.body.reward_sats));
    r.push(
        "totals",
        accepted == h.accepted_count as usize && reward == Some(h.reward_sats),
        format!(
            "{accepted} accepted and {} sats in receipts; header says {} and {}",
            reward.map_or("overflowing".into(), |s| s.to_string()),
            h.accepted_count,
            h.reward_sats
        ),
    );
    let state = cairn_spec::ledger::state_root(ledger);
    r.push(
        "state_root",
        state == Some(h.state_root),
        match state {
            Some(s) => {
                format!("recomputed from {} ledger entries: {s}, header {}", ledger.len(), h.state_root)
            }
            None => "the ledger snapshot names a worker twice".to_owned(),
        },
    );
    r
}

/// Sats a ledger snapshot holds in all columns (locked + claimable + paid).
pub fn ledger_total(ledger: &[LedgerEntry]) -> Option<u64> {
    ledger
        .iter()
        .try_fold(0u64, |a, e| a.checked_add(e.locked)?.checked_add(e.claimable)?.checked_add(e.paid))
}
