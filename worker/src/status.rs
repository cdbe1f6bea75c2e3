//! `cairn worker status`: what the worker did (from its journal), what it earned (from each
//! coordinator's API: locked, claimable, paid with payout txids), and whether each receipt
//! holds: signed by the coordinator, about this worker and task, included in a signed epoch
//! header, and — given a Bitcoin Core — committed in Bitcoin, checked by `cairn-anchor`'s
//! verifier against the chain itself.
//!
//! Owns the report. Must never trust the coordinator's word where a signature or Bitcoin can
//! speak: the API is only where the bytes come from.

use std::time::Duration;

use cairn_anchor::verify::{assemble_receipt_proof, verify_receipt};
use cairn_anchor::ChainBackend;
use cairn_spec::merkle::MerkleProof;
use cairn_spec::{Decode, Hash32, Network, PubKey, SignedEpochHeader, SignedReceipt};
use serde_json::{json, Value};

use crate::job::Stage;
use crate::journal::Journal;

/// Receipts verified per coordinator per run (the newest first).
pub const MAX_VERIFIED: usize = 100;

fn get(api: &str, path: &str) -> Result<Value, String> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(10)))
        .http_status_as_error(false)
        .build()
        .into();
    let url = format!("{}{path}", api.trim_end_matches('/'));
    let mut r = agent.get(&url).call().map_err(|e| format!("{url}: {e}"))?;
    let status = r.status().as_u16();
    let body: Value =
        r.body_mut().with_config().limit(8 << 20).read_json().map_err(|e| format!("{url}: {e}"))?;
    if status != 200 {
        return Err(format!("{url}: {status} {}", body["error"].as_str().unwrap_or_default()));
    }
    Ok(body)
}

fn decode<T: Decode>(v: &Value, what: &str) -> Result<T, String> {
    let hex = v.as_str().ok_or_else(|| format!("{what}: missing"))?;
    let bytes = hex::decode(hex).map_err(|_| format!("{what}: not hex"))?;
    T::from_bytes(&bytes).map_err(|e| format!("{what}: {e}"))
}

/// Checks one receipt: off-chain always, on-chain when `chain` is given and the coordinator
/// reports the epoch anchored. Returns (state, detail).
pub fn verify_one(
    api: &str,
    me: &PubKey,
    coordinator: &PubKey,
    task: &Hash32,
    receipt_id: &Hash32,
    network: Network,
    chain: Option<(&dyn ChainBackend, u32)>,
) -> (&'static str, String) {
    match verify_inner(api, me, coordinator, task, receipt_id, network, chain) {
        Ok(r) => r,
        Err(e) => ("failed", e),
    }
}

fn verify_inner(
    api: &str,
    me: &PubKey,
    coordinator: &PubKey,
    task: &Hash32,
    receipt_id: &Hash32,
    network: Network,
    chain: Option<(&dyn ChainBackend, u32)>,
) -> Result<(&'static str, String), String> {
    let v = match get(api, &format!("/v1/receipts/{receipt_id}/proof")) {
        Ok(v) => v,
        Err(e) if e.contains(" 409 ") => return Ok(("pending", "its epoch is not closed yet".into())),
        Err(e) => return Err(e),
    };
    let receipt: SignedReceipt = decode(&v["receipt_encoding"], "receipt")?;
    let b = &receipt.body;
    if !receipt.verify() || &b.coordinator != coordinator {
        return Err("receipt is not signed by the coordinator".into());
    }
    if &b.worker != me || &b.task != task || b.network != network {
        return Err("receipt names another worker, task or network".into());
    }
    let header: SignedEpochHeader = decode(&v["header"]["encoding"], "header")?;
    if !header.verify() || &header.body.coordinator != coordinator || header.body.height != b.epoch {
        return Err("epoch header is not the coordinator's signed header of the receipt's epoch".into());
    }
    let path: MerkleProof =
        serde_json::from_value(v["merkle_proof"].clone()).map_err(|e| format!("merkle proof: {e}"))?;
    let root = path.root_for(&b.leaf_hash()).map_err(|e| format!("merkle proof: {e}"))?;
    if root != header.body.receipts_root {
        return Err(format!("receipt is not in epoch {}'s receipts root", b.epoch));
    }
    let anchor = &v["header"]["anchor"];
    if anchor["status"] != "confirmed" {
        let s = anchor["status"].as_str().unwrap_or("unknown").to_owned();
        return Ok(("included", format!("in signed epoch {}; anchor {s}", b.epoch)));
    }
    let Some((backend, min_depth)) = chain else {
        return Ok((
            "included",
            format!(
                "in signed epoch {}; coordinator reports it anchored (give --rpc-url to check Bitcoin)",
                b.epoch
            ),
        ));
    };
    // Bitcoin's word: the anchor transaction at the height the coordinator names, checked by
    // the same verifier auditors use.
    let txid: bitcoin::Txid =
        anchor["txid"].as_str().and_then(|t| t.parse().ok()).ok_or("anchor txid missing")?;
    let height = u32::try_from(anchor["height"].as_u64().ok_or("anchor height missing")?)
        .map_err(|_| "anchor height out of range")?;
    let anchored = u32::try_from(anchor["anchored_epoch"].as_u64().ok_or("anchored epoch missing")?)
        .map_err(|_| "anchored epoch out of range")?;
    let block = backend
        .block_hash(height)
        .map_err(|e| format!("bitcoin: {e}"))?
        .ok_or_else(|| format!("bitcoin has no block at height {height}"))?;
    let n = anchored.saturating_sub(b.epoch) + 1;
    let list = get(api, &format!("/v1/epochs?from={}&limit={n}", b.epoch))?;
    let headers: Vec<SignedEpochHeader> = list["epochs"]
        .as_array()
        .ok_or("epochs missing")?
        .iter()
        .map(|e| decode(&e["encoding"], "header"))
        .collect::<Result<_, _>>()?;
    let proof = assemble_receipt_proof(
        network,
        receipt.clone(),
        path.index,
        path.siblings.clone(),
        headers,
        txid,
        block,
        backend,
    )
    .map_err(|e| format!("bitcoin: {e}"))?;
    let report = verify_receipt(&proof, backend, network, min_depth);
    match report.first_failure() {
        None => Ok(("anchored", format!("epoch {} committed in {txid} at height {height}", b.epoch))),
        Some(c) => Err(format!("{}: {}", c.name, c.detail)),
    }
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
            Stage::Abandoned { reason } => {
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
        let ledger = get(api, &format!("/v1/ledger/{me}")).unwrap_or_else(|e| json!({ "error": e }));
        let standing = get(api, &format!("/v1/workers/{me}")).unwrap_or_else(|e| json!({ "error": e }));
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
        for (_, task, rid) in done.into_iter().take(MAX_VERIFIED) {
            let (state, detail) = verify_one(api, me, &ckey, &task, &rid, network, chain);
            *counts.entry(state).or_default() += 1;
            if state == "failed" {
                failures.push(json!({ "receipt": rid, "task": task, "why": detail }));
            }
        }
        coordinators.push(json!({
            "coordinator": ckey,
            "api": api,
            "standing": {
                "status": standing["status"],
                "accepted": standing["accepted"],
                "rejected": standing["rejected"],
                "rejections": standing["rejections"],
                "error": standing["error"],
            },
            "earnings_sats": {
                "locked": ledger["locked"],
                "claimable": ledger["claimable"],
                "paid": ledger["paid"],
                "payouts": ledger["payouts"],
                "error": ledger["error"],
            },
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
