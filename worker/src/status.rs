//! `cairn worker status`: what the worker did (from its journal), what it earned (from each
//! coordinator's API: locked, claimable, paid with payout txids), and whether each receipt
//! holds: signed by the coordinator, about this worker and task, included in a signed epoch
//! header, and — given a Bitcoin Core — committed in Bitcoin, checked by `cairn-anchor`'s
//! verifier against the chain itself.
//!
//! Owns the report. Must never trust the coordinator's word where a signature or Bitcoin can
//! speak: the API is only where the bytes come from.

use cairn_anchor::ChainBackend;
use cairn_audit::receipt::{assemble, ProofSourceError};
use cairn_audit::verify::verify_receipt_pinned;
use cairn_audit::{ApiSource, Source, SourceError};
use cairn_spec::api::{LedgerView, WorkerView};
use cairn_spec::{Hash32, Network, PubKey};
use serde_json::{json, Value};

use crate::job::Stage;
use crate::journal::Journal;

/// Receipts verified per coordinator per run (the newest first).
pub const MAX_VERIFIED: usize = 100;

/// A route's answer read as its body type (`cairn_spec::api`), or why it could not be.
fn get<T: serde::de::DeserializeOwned>(api: &str, path: &str) -> Result<T, String> {
    let v = ApiSource::new(api).get(path).map_err(|e| e.to_string())?;
    serde_json::from_value(v).map_err(|e| format!("{api}{path}: unexpected answer: {e}"))
}

/// Checks one receipt: off-chain always, on-chain when `chain` is given and the coordinator
/// reports the epoch anchored, on the anchor chain grown from `pin` when given (the one
/// pinned at registration). Returns (state, detail).
#[allow(clippy::too_many_arguments)]
pub fn verify_one(
    api: &str,
    me: &PubKey,
    coordinator: &PubKey,
    task: &Hash32,
    receipt_id: &Hash32,
    network: Network,
    chain: Option<(&dyn ChainBackend, u32)>,
    pin: Option<bitcoin::OutPoint>,
) -> (&'static str, String) {
    match verify_inner(api, me, coordinator, task, receipt_id, network, chain, pin) {
        Ok(r) => r,
        Err(e) => ("failed", e),
    }
}

#[allow(clippy::too_many_arguments)]
fn verify_inner(
    api: &str,
    me: &PubKey,
    coordinator: &PubKey,
    task: &Hash32,
    receipt_id: &Hash32,
    network: Network,
    chain: Option<(&dyn ChainBackend, u32)>,
    pin: Option<bitcoin::OutPoint>,
) -> Result<(&'static str, String), String> {
    let src = ApiSource::new(api);
    let located = match src.receipt(receipt_id) {
        Ok(l) => l,
        Err(SourceError::NotFound(_)) => return Ok(("pending", "its epoch is not closed yet".into())),
        Err(e) => return Err(e.to_string()),
    };
    let b = &located.receipt.body;
    if !located.receipt.verify() || &b.coordinator != coordinator {
        return Err("receipt is not signed by the coordinator".into());
    }
    if &b.worker != me || &b.task != task || b.network != network {
        return Err("receipt names another worker, task or network".into());
    }
    let header = src.headers(b.epoch, 1).map_err(|e| e.to_string())?.into_iter().next();
    let Some(header) =
        header.filter(|h| h.verify() && &h.body.coordinator == coordinator && h.body.height == b.epoch)
    else {
        return Err("epoch header is not the coordinator's signed header of the receipt's epoch".into());
    };
    let root = located.path.root_for(&b.leaf_hash()).map_err(|e| format!("merkle proof: {e}"))?;
    if root != header.body.receipts_root {
        return Err(format!("receipt is not in epoch {}'s receipts root", b.epoch));
    }
    let Some((backend, min_depth)) = chain else {
        let anchored = src.anchors().map_err(|e| e.to_string())?.iter().any(|a| a.epoch >= b.epoch);
        let note = if anchored {
            "coordinator reports it anchored (give --rpc-url to check Bitcoin)"
        } else {
            "not anchored yet"
        };
        return Ok(("included", format!("in signed epoch {}; {note}", b.epoch)));
    };
    // Bitcoin's word, through the auditors' own assembly and verifier.
    let proof = match assemble(&src, receipt_id, backend, network) {
        Ok(p) => p,
        Err(ProofSourceError::NotAnchored(m)) => {
            return Ok(("included", format!("in signed epoch {}; {m}", b.epoch)))
        }
        Err(e) => return Err(e.to_string()),
    };
    let report = verify_receipt_pinned(&proof, backend, network, min_depth, pin);
    match report.first_failure() {
        None => Ok((
            "anchored",
            format!(
                "epoch {} committed in Bitcoin at height {}{}",
                b.epoch,
                proof.block_height,
                if pin.is_none() {
                    " (on an anchor chain not pinned: the coordinator served no genesis header)"
                } else {
                    ""
                }
            ),
        )),
        Some(c) => Err(format!("{}: {}", c.name, c.detail)),
    }
}

/// The anchor binding coordinator `ckey`'s signed genesis header names, from its API.
fn genesis_binding(api: &str, ckey: &PubKey) -> Option<cairn_spec::AnchorBinding> {
    let h = ApiSource::new(api).headers(0, 1).ok()?.into_iter().next()?;
    (h.body.height == 0 && &h.body.coordinator == ckey && h.verify()).then_some(h.body.anchor)
}

/// The status report as JSON.
pub fn report(
    cfg: &crate::config::WorkerConfig,
    me: &PubKey,
    journal: &Journal,
    chain: Option<(&dyn ChainBackend, u32)>,
) -> Value {
    let network = cfg.network().unwrap_or(Network::Regtest);
    let mut by_stage = std::collections::BTreeMap::<&str, u64>::new();
    let mut problems = Vec::new();
    for j in journal.jobs.values() {
        let s = match &j.stage {
            Stage::New | Stage::Leased { .. } | Stage::Executed { .. } => "running",
            Stage::Committed { .. } | Stage::Revealed { .. } => "awaiting_verdict",
            Stage::Done { verdict, .. } if verdict.is_accepted() => "accepted",
            Stage::Done { verdict, .. } => {
                problems.push(json!({ "task": j.id, "class": j.class_name, "verdict": verdict }));
                "rejected"
            }
            Stage::Abandoned { reason, .. } => {
                problems.push(json!({ "task": j.id, "class": j.class_name, "abandoned": reason }));
                "abandoned"
            }
        };
        *by_stage.entry(s).or_default() += 1;
    }
    let mut coordinators = Vec::new();
    for c in &cfg.coordinators {
        let ckey = c
            .p2p
            .rsplit_once("/p2p/")
            .and_then(|(_, p)| p.parse::<cairn_p2p::Peer>().ok())
            .and_then(|p| p.protocol_key());
        let Some(ckey) = ckey else { continue };
        let Some(api) = &c.api else {
            coordinators.push(json!({ "coordinator": ckey, "api": null, "note": "no api URL configured: earnings and proofs unavailable" }));
            continue;
        };
        // What the coordinator says, shown as it says it (or why it could not be asked).
        let standing = match get::<WorkerView>(api, &format!("/v1/workers/{me}")) {
            Ok(w) => json!({
                "status": w.status,
                "accepted": w.accepted,
                "rejected": w.rejected,
                "rejections": w.rejections,
                "error": null,
            }),
            Err(e) => {
                json!({ "status": null, "accepted": null, "rejected": null, "rejections": null, "error": e })
            }
        };
        let earnings = match get::<LedgerView>(api, &format!("/v1/ledger/{me}")) {
            Ok(l) => json!({
                "locked": l.locked,
                "claimable": l.claimable,
                "paid": l.paid,
                "payouts": l.payouts,
                "error": null,
            }),
            Err(e) => json!({ "locked": null, "claimable": null, "paid": null, "payouts": null, "error": e }),
        };
        let mut done: Vec<_> = journal
            .jobs
            .values()
            .filter(|j| j.coordinator == ckey)
            .filter_map(|j| match &j.stage {
                Stage::Done { receipt, epoch, .. } => Some((*epoch, j.id, *receipt)),
                _ => None,
            })
            .collect();
        done.sort_by_key(|d| std::cmp::Reverse(d.0));
        let mut counts = std::collections::BTreeMap::<&str, u64>::new();
        let mut failures = Vec::new();
        // The chain pinned when this worker first saw the coordinator's genesis header, else
        // the one its signed genesis header names now (so no receipt is checked unpinned).
        let pin = journal
            .registrations
            .get(&ckey.to_hex())
            .and_then(|r| r.binding)
            .or_else(|| genesis_binding(api, &ckey))
            .and_then(|b| b.genesis());
        for (_, task, rid) in done.into_iter().take(MAX_VERIFIED) {
            let (state, detail) = verify_one(api, me, &ckey, &task, &rid, network, chain, pin);
            *counts.entry(state).or_default() += 1;
            if state == "failed" {
                failures.push(json!({ "receipt": rid, "task": task, "why": detail }));
            }
        }
        coordinators.push(json!({
            "coordinator": ckey,
            "api": api,
            "standing": standing,
            "earnings_sats": earnings,
            "receipts_checked": counts,
            "receipt_failures": failures,
        }));
    }
    json!({
        "worker": me,
        "payout_address": cfg.payout_address,
        "totals": journal.totals,
        "jobs": by_stage,
        "problems": problems.iter().rev().take(64).collect::<Vec<_>>(),
        "coordinators": coordinators,
    })
}
