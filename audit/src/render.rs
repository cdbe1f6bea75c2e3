//! Reports for people: one line per check (✓ passed, ✗ failed, · not reached) and the
//! chain audit's summary table.
//!
//! Owns the text layout. Must never change a verdict: it prints what the checks said.

use std::fmt::Write as _;

use crate::verify::{Outcome, Report};

use crate::chain::ChainAudit;

/// One line per check.
pub fn checks(report: &Report) -> String {
    let mut out = String::new();
    for c in &report.checks {
        let mark = match c.outcome {
            Outcome::Pass => "✓",
            Outcome::Fail => "✗",
            Outcome::Skipped => "·",
        };
        let _ = writeln!(out, "  {mark} {:<20} {}", c.name, c.detail);
    }
    out
}

/// The verdict line: all passed, or the first failed step by name.
pub fn verdict(report: &Report) -> String {
    match report.first_failure() {
        None if report.ok() => "VERIFIED".to_owned(),
        None => "NOT VERIFIED: no checks ran".to_owned(),
        Some(c) => format!("NOT VERIFIED: step `{}` failed: {}", c.name, c.detail),
    }
}

/// The chain audit: failing epochs in full, then the anchor checks, the evidence of any
/// equivocation, and a summary table.
pub fn chain(a: &ChainAudit) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "source: {}", a.source);
    for e in a.epochs.iter().filter(|e| !e.report.ok()) {
        let _ = writeln!(out, "epoch {} ({}):", e.height, e.hash);
        out.push_str(&checks(&e.report));
    }
    if !a.ledger.checks.is_empty() {
        let _ = writeln!(out, "ledger:");
        out.push_str(&checks(&a.ledger));
    }
    if let Some(r) = &a.anchors {
        let _ = writeln!(out, "anchors:");
        out.push_str(&checks(r));
    }
    for d in &a.duplicate_receipts {
        let _ = writeln!(out, "✗ receipt {d} appears in more than one place");
    }
    for q in &a.equivocations {
        let _ = writeln!(out, "✗ EQUIVOCATION at epoch {}: {}", q.height, q.detail);
        let _ = writeln!(out, "    header A: {}", hex::encode(cairn_spec::Encode::to_bytes(&q.first)));
        if let Some(b) = &q.second {
            let _ = writeln!(out, "    header B: {}", hex::encode(cairn_spec::Encode::to_bytes(b)));
        }
        if let Some((txid, hash)) = &q.committed {
            let _ = writeln!(out, "    Bitcoin:  anchor {txid} commits {hash}");
        }
    }
    let bad_epochs = a.epochs.iter().filter(|e| !e.report.ok()).count();
    let rows = [
        ("epochs checked", a.epochs.len().to_string()),
        ("epochs failing", bad_epochs.to_string()),
        ("receipts checked", a.receipts().to_string()),
        ("duplicate receipts", a.duplicate_receipts.len().to_string()),
        ("anchors walked", a.anchors.as_ref().map_or("no node given".into(), |_| a.anchor_count.to_string())),
        ("anchored through", a.anchored_through.map_or("-".into(), |h| format!("epoch {h}"))),
        ("equivocations", a.equivocations.len().to_string()),
        ("verdict", if a.ok() { "VERIFIED".into() } else { "NOT VERIFIED".into() }),
    ];
    let _ = writeln!(out, "┌{:─<22}┬{:─<24}┐", "", "");
    for (k, v) in rows {
        let _ = writeln!(out, "│ {k:<20} │ {v:<22} │");
    }
    let _ = writeln!(out, "└{:─<22}┴{:─<24}┘", "", "");
    out
}

/// The draw audit: its checks, the tallies, the keys passed over most, and (for `worker`)
/// every slot that passed it over.
pub fn draws(a: &crate::draws::DrawAudit, worker: Option<&cairn_spec::PubKey>) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "draws of epoch {}:", a.epoch);
    out.push_str(&checks(&a.report));
    let n = a.slots.len();
    let _ = writeln!(
        out,
        "slots: {n} · recomputed: {} · first-ranked among keys not on the task: {} · passed someone over: {} · off the roster: {} · drawn before the first header (not checkable): {}",
        a.checkable(),
        a.first_ranked(),
        a.checkable() - a.first_ranked() - a.off_roster(),
        a.off_roster(),
        n - a.checkable(),
    );
    let over = a.passed_over();
    if !over.is_empty() {
        let _ =
            writeln!(out, "keys passed over (a key that was asking for work the whole time should see few):");
        for (k, c) in over.iter().take(20) {
            let _ = writeln!(out, "  {k}  {c} slot(s)");
        }
    }
    if let Some(w) = worker {
        let mine: Vec<_> = a.slots.iter().filter(|s| s.passed_over.contains(w)).collect();
        let _ = writeln!(
            out,
            "{w} was passed over for {} slot(s) (a key missing from a draw epoch's roster is never counted: check GET /v1/epochs/<e>/roster):",
            mine.len()
        );
        for s in mine {
            let rank = s.rank.map_or("off the roster".to_owned(), |r| format!("rank {r}"));
            let _ =
                writeln!(out, "  task {} → {} ({rank}, drawn in epoch {})", s.task, s.worker, s.draw_epoch);
        }
    }
    out
}
