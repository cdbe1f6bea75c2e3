//! Balances and payouts: a worker's ledger entry with a Merkle proof against the newest
//! epoch's state root, and every payout with its Bitcoin transaction once paid.
//!
//! Owns the ledger views. Must never move a satoshi (the lifecycle credits, releases and
//! queues payouts) nor show a balance it cannot prove on a follower (it answers as of the
//! newest accepted epoch).

use axum::extract::{Path, State};
use axum::Json;
use cairn_spec::api::{ErrorBody, LedgerProof, LedgerView, Payout, PayoutState, Payouts};
use cairn_spec::Encode;

use super::{not_found, parse_key, published, ApiResult, ApiState};
use crate::lifecycle::{PayoutRecord, PayoutStatus};
use crate::lifecycle_store as ls;

fn payout_view(p: &PayoutRecord) -> Payout {
    Payout {
        id: p.id,
        worker: p.worker,
        address: p.address.clone(),
        amount: p.amount,
        queued_at: p.queued_at,
        status: match &p.status {
            PayoutStatus::Queued => PayoutState::Queued,
            PayoutStatus::Paid { txid, height } => {
                PayoutState::Paid { txid: txid.to_string(), height: *height }
            }
        },
    }
}

/// A worker's balances, payouts, and proof of its entry in the newest ledger snapshot.
#[utoipa::path(get, path = "/v1/ledger/{worker}", tag = "ledger",
    params(("worker" = String, Path, description = "Worker key, 64 hex characters")),
    responses((status = 200, description = "Balances, payouts and proof", body = LedgerView),
              (status = 400, description = "Malformed key", body = ErrorBody),
              (status = 404, description = "No ledger entry", body = ErrorBody)))]
pub(super) async fn ledger(State(s): State<ApiState>, Path(worker): Path<String>) -> ApiResult<LedgerView> {
    let key = parse_key(&worker)?;
    let store = s.store.clone();
    let (entry, last) = match s.follow_view() {
        None => {
            let last = published(&s)?.last_header.clone();
            (ls::balance(store.as_ref(), &key)?, last)
        }
        // A follower knows balances as of its newest accepted epoch: the snapshot there.
        Some(f) => {
            let last = match f.tip_height {
                Some(h) => ls::header(store.as_ref(), h)?,
                None => None,
            };
            let entry = match &last {
                Some(h) => {
                    s.trees.ledger(store.as_ref(), h.body.height)?.and_then(|l| l.entry(&key)).map(|e| e.0)
                }
                None => None,
            };
            (entry, last)
        }
    };
    let entry = entry.ok_or_else(|| not_found("ledger entry"))?;
    // Proven against the newest snapshot, indexed once per epoch (`crate::trees`).
    let mut proof = None;
    if let Some(h) = last {
        if let Some((e, merkle_proof)) =
            s.trees.ledger(store.as_ref(), h.body.height)?.and_then(|l| l.entry(&key))
        {
            proof = Some(LedgerProof {
                epoch: h.body.height,
                state_root: h.body.state_root,
                entry_encoding: hex::encode(e.to_bytes()),
                entry: e,
                merkle_proof,
            });
        }
    }
    let payouts = ls::payouts(store.as_ref())?.iter().filter(|p| p.worker == key).map(payout_view).collect();
    Ok(Json(LedgerView {
        worker: key,
        locked: entry.locked,
        claimable: entry.claimable,
        paid: entry.paid,
        payouts,
        proof,
    }))
}

/// Every payout.
#[utoipa::path(get, path = "/v1/payouts", tag = "ledger",
    responses((status = 200, description = "Payouts, by id", body = Payouts)))]
pub(super) async fn payouts(State(s): State<ApiState>) -> ApiResult<Payouts> {
    let store = s.store.clone();
    Ok(Json(Payouts { payouts: ls::payouts(store.as_ref())?.iter().map(payout_view).collect() }))
}
