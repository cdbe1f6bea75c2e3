//! The node's own state: `/v1/health`, `/v1/stats`, `/v1/anchors`, `/v1/evidence`,
//! Prometheus `/metrics` and the OpenAPI document.
//!
//! Owns the views of how the node stands (role, network, sync, Bitcoin, totals). Must never
//! change anything: every route here is a read, and none shows a canary or an audit flag.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use cairn_spec::api::{
    Anchors, CoordinatorHealth, CoordinatorStats, ErrorBody, EvidenceList, FollowerHealth, FollowerStats,
    Health, NodeStatus, Readiness, Role, Stats,
};
use utoipa::OpenApi;

use super::{published, ApiDoc, ApiResult, ApiState};

fn node_status(s: &ApiState) -> NodeStatus {
    if s.is_stopping() {
        NodeStatus::Stopping
    } else {
        NodeStatus::Ok
    }
}

/// Node status.
#[utoipa::path(get, path = "/v1/health", tag = "node",
    responses((status = 200, description = "Node status", body = Health),
              (status = 503, description = "Core unavailable", body = ErrorBody)))]
pub(super) async fn health(State(s): State<ApiState>) -> ApiResult<Health> {
    let anchor = s.anchor_view();
    if let Some(f) = s.follow_view() {
        return Ok(Json(Health::Follower(FollowerHealth {
            status: node_status(&s),
            network: s.network,
            coordinator: s.coordinator,
            next_epoch: f.tip_height.map_or(0, |h| h.saturating_add(1)),
            peers: f.peers,
            last_sync: f.last_sync,
            sync_error: f.last_error,
            evidence: f.evidence.len() as u64,
            p2p: s.p2p.as_ref().clone(),
            anchoring: anchor.enabled,
            bitcoin_tip: anchor.tip_height,
            bitcoin_error: anchor.public_error(),
        })));
    }
    let p = published(&s)?;
    Ok(Json(Health::Coordinator(CoordinatorHealth {
        status: node_status(&s),
        network: p.network,
        coordinator: p.coordinator,
        next_epoch: p.next_epoch,
        open_tasks: p.open_tasks,
        workers: p.worker_count(),
        p2p: s.p2p.as_ref().clone(),
        anchor_address: s.anchor_address.clone(),
        anchoring: anchor.enabled,
        bitcoin_tip: anchor.tip_height,
        bitcoin_backend: anchor.backend,
        bitcoin_error: anchor.public_error(),
    })))
}

/// Readiness: 200 when the node anchors as it should, 503 with the reasons when it does not
/// (Core unreachable or syncing, the anchor address unfunded, a fee cap reached, epochs
/// waiting too long for a confirmed anchor).
#[utoipa::path(get, path = "/v1/ready", tag = "node",
    responses((status = 200, description = "Ready", body = Readiness),
              (status = 503, description = "Not ready, with the reasons", body = Readiness)))]
pub(super) async fn ready(State(s): State<ApiState>) -> Response {
    let r = s.anchor_view().readiness(s.is_stopping(), cairn_p2p::clock::unix_secs());
    s.metrics.ready.set(i64::from(r.ready));
    let status = if r.ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (status, Json(r)).into_response()
}

/// Prometheus metrics.
#[utoipa::path(get, path = "/metrics", tag = "node",
    responses((status = 200, description = "Metrics in the OpenMetrics text format", body = String,
               content_type = "application/openmetrics-text")))]
pub(super) async fn metrics(State(s): State<ApiState>) -> Response {
    // Tasks accepted, canaries included, as `/v1/stats` counts them: a count of requests alone
    // would differ from it by the canaries, and tell workers when one was mixed in.
    // (One scrape at a time, so two at once do not both add the difference.)
    static SYNC: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _one = SYNC.lock();
    if let Ok(p) = published(&s) {
        let have = s.metrics.tasks_submitted.get();
        if p.tasks.submitted > have {
            s.metrics.tasks_submitted.inc_by(p.tasks.submitted - have);
        }
    }
    s.metrics
        .ready
        .set(i64::from(s.anchor_view().readiness(s.is_stopping(), cairn_p2p::clock::unix_secs()).ready));
    let body = s.metrics.encode();
    ([(axum::http::header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], body)
        .into_response()
}

/// This document.
#[utoipa::path(get, path = "/openapi.json", tag = "node",
    responses((status = 200, description = "The OpenAPI document of this API", body = Object)))]
pub(super) async fn openapi_json() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}

/// Anchor transactions and the node's view of Bitcoin.
#[utoipa::path(get, path = "/v1/anchors", tag = "node",
    responses((status = 200, description = "Anchors, newest first", body = Anchors)))]
pub(super) async fn anchors(State(s): State<ApiState>) -> ApiResult<Anchors> {
    Ok(Json(s.anchor_view().to_body()))
}

/// Totals for dashboards: tasks per state, receipts, epochs, ledger sums, workers, anchors.
#[utoipa::path(get, path = "/v1/stats", tag = "node",
    responses((status = 200, description = "Totals", body = Stats),
              (status = 503, description = "Core unavailable", body = ErrorBody)))]
pub(super) async fn stats(State(s): State<ApiState>) -> ApiResult<Stats> {
    let anchors = s.anchor_view().counts();
    if let Some(f) = s.follow_view() {
        return Ok(Json(Stats::Follower(FollowerStats {
            epochs: f.tip_height.map_or(0, |h| u64::from(h) + 1),
            anchors,
        })));
    }
    let p = published(&s)?;
    Ok(Json(Stats::Coordinator(CoordinatorStats {
        tasks: p.tasks.clone(),
        receipts: p.receipts,
        epochs: p.next_epoch,
        open_epoch_receipts: p.open_receipts,
        open_epoch_armed: p.armed,
        anchor_bound: p.bound,
        ledger: p.ledger.clone(),
        workers: p.workers.clone(),
        anchors,
    })))
}

/// Refused epochs and equivocations this node has seen, with the headers as evidence (a
/// follower's; a coordinator keeps none).
#[utoipa::path(get, path = "/v1/evidence", tag = "node",
    responses((status = 200, description = "Evidence, oldest first", body = EvidenceList)))]
pub(super) async fn evidence(State(s): State<ApiState>) -> ApiResult<EvidenceList> {
    let f = s.follow_view();
    Ok(Json(EvidenceList {
        role: if f.is_some() { Role::Follower } else { Role::Coordinator },
        evidence: f.map(|f| f.evidence.clone()).unwrap_or_default(),
    }))
}
