//! Workers: each registered worker's standing, counts and newest rejection reasons.
//!
//! Owns the public view of a worker record. Must never change a worker's standing (bans and
//! lapses are the lifecycle's) nor say which of its results were audited.

use axum::extract::{Path, State};
use axum::Json;
use cairn_spec::api::{
    BondLost, ErrorBody, WorkerBan, WorkerList, WorkerRejection, WorkerStatus, WorkerView,
};

use super::{not_found, parse_key, published, ApiResult, ApiState};
use crate::lifecycle::WorkerRecord;
use crate::lifecycle_store as ls;

fn worker_view(w: &WorkerRecord) -> WorkerView {
    WorkerView {
        key: w.key(),
        payout_address: w.registration.body.payout_address.clone(),
        registered_at: w.registered_at,
        status: match (&w.banned, &w.bond_lost) {
            (Some(_), _) => WorkerStatus::Banned,
            (None, Some(_)) => WorkerStatus::Lapsed,
            (None, None) => WorkerStatus::Active,
        },
        ban: w.banned.as_ref().map(|b| WorkerBan {
            reason: b.reason.clone(),
            task: b.task,
            forfeited: b.forfeited,
            at: b.at,
        }),
        bond_lost: w.bond_lost.as_ref().map(|(why, at)| BondLost { reason: why.clone(), at: *at }),
        streak: w.streak,
        accepted: w.accepted,
        rejected: w.rejected,
        rejections: w
            .rejections
            .iter()
            .map(|r| WorkerRejection { task: r.task, verdict: r.verdict, reason: r.reason.clone(), at: r.at })
            .collect(),
    }
}

/// Every registered worker.
#[utoipa::path(get, path = "/v1/workers", tag = "workers",
    responses((status = 200, description = "Workers", body = WorkerList),
              (status = 404, description = "A follower serves no workers", body = ErrorBody)))]
pub(super) async fn list_workers(State(s): State<ApiState>) -> ApiResult<WorkerList> {
    published(&s)?;
    Ok(Json(WorkerList { workers: ls::workers(s.store.as_ref())?.iter().map(worker_view).collect() }))
}

/// One worker: standing, counts and why it lost results.
#[utoipa::path(get, path = "/v1/workers/{key}", tag = "workers",
    params(("key" = String, Path, description = "Worker key, 64 hex characters")),
    responses((status = 200, description = "The worker", body = WorkerView),
              (status = 400, description = "Malformed key", body = ErrorBody),
              (status = 404, description = "Unknown worker", body = ErrorBody)))]
pub(super) async fn get_worker(State(s): State<ApiState>, Path(key): Path<String>) -> ApiResult<WorkerView> {
    let key = parse_key(&key)?;
    published(&s)?;
    let w = ls::worker(s.store.as_ref(), &key)?.ok_or_else(|| not_found("worker"))?;
    Ok(Json(worker_view(&w)))
}
