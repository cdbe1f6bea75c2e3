//! The HTTP API (axum, JSON, versioned under `/v1`): tasks, results, workers and their
//! rejection reasons, epochs, anchors, receipts with Merkle proofs, ledger balances with a
//! proof against the newest state root, health, and Prometheus `/metrics`. Write endpoints
//! need the operator token (compared in constant time). `coordinator/openapi.json` describes
//! every route and a test holds the two together.
//!
//! Owns request parsing, auth and the JSON views. Must never decide anything (it calls the
//! core) and never show what only the node may know: which tasks are canaries or audits.

use cairn_p2p::clock::unix_secs;
use std::sync::{Arc, Mutex, RwLock};

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use cairn_spec::{Encode, Hash32, MerkleTree, Object, Payload, PubKey, Task};
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::sync::mpsc;

use crate::core::{Core, CoreError};
use crate::lifecycle::{Effect, Phase, Refusal, TaskRecord};
use crate::lifecycle_store as ls;
use crate::metrics::NodeMetrics;

/// Largest page of a list.
pub const MAX_PAGE: usize = 500;

/// Every route: (method, path template). The OpenAPI document must list exactly these.
pub const ROUTES: &[(&str, &str)] = &[
    ("get", "/v1/health"),
    ("get", "/metrics"),
    ("get", "/v1/classes"),
    ("post", "/v1/tasks"),
    ("get", "/v1/tasks"),
    ("get", "/v1/tasks/{id}"),
    ("get", "/v1/tasks/{id}/result"),
    ("get", "/v1/workers"),
    ("get", "/v1/workers/{key}"),
    ("get", "/v1/epochs"),
    ("post", "/v1/epochs/close"),
    ("get", "/v1/epochs/{height}"),
    ("get", "/v1/epochs/{height}/receipts"),
    ("get", "/v1/epochs/{height}/ledger"),
    ("get", "/v1/anchors"),
    ("get", "/v1/receipts/{id}"),
    ("get", "/v1/receipts/{id}/proof"),
    ("get", "/v1/ledger/{worker}"),
    ("get", "/v1/payouts"),
    ("get", "/timestamp/{commitment}"),
    ("get", "/v1/evidence"),
    ("get", "/v1/stats"),
    ("get", "/v1/receipts/{id}/audit"),
    ("get", "/v1/receipts/{id}/bundle"),
    ("get", "/v1/receipts/{id}/ots"),
];

/// What the anchor side reports for the API (refreshed by the node each anchor round).
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct AnchorView {
    /// Whether epochs are anchored at all (false in `bitcoin.mode = "none"`).
    pub enabled: bool,
    /// Best height seen.
    pub tip_height: Option<u32>,
    /// Newest settled epoch.
    pub settled_epoch: Option<u32>,
    /// Anchor transactions, newest first.
    pub anchors: Vec<AnchorEntry>,
    /// Last error talking to Bitcoin Core, if the last round failed.
    pub last_error: Option<String>,
}

/// Where an anchor transaction stands, as the API shows it: a coordinator's own anchors are
/// `pending`, `replaced`, `confirmed` or `conflicted` (`cairn_anchor::AnchorStatus`); a
/// follower's found anchors are `confirmed` (the header it accepted at that height),
/// `unverified` (that epoch is not accepted yet) or `equivocation` (another header).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AnchorEntryStatus {
    /// Broadcast, not in a best-chain block.
    Pending,
    /// Superseded by a fee-bumped replacement.
    Replaced,
    /// In a best-chain block (a follower: and it commits the header accepted at its height).
    Confirmed,
    /// A conflicting transaction confirmed instead.
    Conflicted,
    /// Found by a follower before it accepted that epoch.
    Unverified,
    /// Found by a follower, committing another header than the one accepted at its height.
    Equivocation,
}

/// One anchor transaction as the API shows it.
#[derive(Clone, Debug, serde::Serialize)]
pub struct AnchorEntry {
    /// Txid.
    pub txid: String,
    /// Epoch committed.
    pub epoch: u32,
    /// Header hash committed.
    pub header_hash: Hash32,
    /// Where the anchor stands.
    pub status: AnchorEntryStatus,
    /// Block height when confirmed.
    pub height: Option<u32>,
    /// Confirmations.
    pub confirmations: u32,
    /// Fee, sats.
    pub fee_sats: u64,
    /// Payout ids carried.
    pub payouts: Vec<u64>,
}

impl AnchorView {
    /// The confirmed anchors, in chain order, as an auditor's source names them.
    pub fn claims(&self) -> Vec<cairn_audit::AnchorClaim> {
        let mut out: Vec<_> = self
            .anchors
            .iter()
            .filter(|a| a.status == AnchorEntryStatus::Confirmed)
            .filter_map(|a| {
                Some(cairn_audit::AnchorClaim {
                    txid: a.txid.parse().ok()?,
                    epoch: a.epoch,
                    height: a.height?,
                })
            })
            .collect();
        out.sort_by_key(|a| (a.height, a.epoch));
        out
    }

    /// The confirmed anchor covering `epoch` (the earliest-confirmed one committing it or a
    /// later epoch), or a pending one.
    pub fn status_of(&self, epoch: u32) -> Value {
        let confirmed = self
            .anchors
            .iter()
            .filter(|a| a.status == AnchorEntryStatus::Confirmed && a.epoch >= epoch)
            .min_by_key(|a| (a.height, a.epoch));
        if let Some(a) = confirmed {
            return json!({"status": "confirmed", "txid": a.txid, "anchored_epoch": a.epoch, "height": a.height, "confirmations": a.confirmations});
        }
        match self.anchors.iter().find(|a| a.status == AnchorEntryStatus::Pending && a.epoch >= epoch) {
            Some(a) => json!({"status": "pending", "txid": a.txid, "anchored_epoch": a.epoch}),
            None if self.enabled => json!({"status": "unanchored"}),
            None => json!({"status": "anchoring_disabled"}),
        }
    }
}

/// What a follower reports for the API (refreshed by its driver).
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct FollowView {
    /// Newest accepted epoch.
    pub tip_height: Option<u32>,
    /// Peers synced from.
    pub peers: Vec<String>,
    /// Unix seconds of the last completed sync round.
    pub last_sync: Option<u64>,
    /// Last sync error, if the last round failed.
    pub last_error: Option<String>,
    /// Refused epochs and equivocations seen, oldest first.
    pub evidence: Vec<crate::follower::Evidence>,
}

/// Shared state of the handlers.
#[derive(Clone)]
pub struct ApiState {
    /// The core (`None` on a follower, which runs no lifecycle).
    pub core: Option<Arc<Mutex<Core>>>,
    /// The database the read routes serve from.
    pub store: Arc<dyn crate::store::KvStore>,
    /// The network.
    pub network: cairn_spec::Network,
    /// The coordinator this node is (or follows).
    pub coordinator: PubKey,
    /// A follower's sync status and evidence (`None` on a coordinator).
    pub follower: Option<Arc<RwLock<FollowView>>>,
    /// Operator token.
    pub token: Arc<String>,
    /// Where effects of accepted writes go (the node performs them).
    pub effects: mpsc::Sender<Vec<Effect>>,
    /// Anchor status.
    pub anchor: Arc<RwLock<AnchorView>>,
    /// Metrics.
    pub metrics: Arc<NodeMetrics>,
    /// Set once shutdown starts: writes are refused.
    pub stopping: Arc<std::sync::atomic::AtomicBool>,
    /// Canaries mixed in among submitted tasks.
    pub canaries: Arc<CanaryMixer>,
    /// The node's Bitcoin Core, for OpenTimestamps answers (`None` without anchoring).
    pub chain: Option<Arc<dyn cairn_anchor::ChainBackend + Send + Sync>>,
    /// The node's p2p listen addresses (ending in its peer id), for `/v1/health`: what a
    /// worker given only the API dials.
    pub p2p: Arc<Vec<String>>,
    /// The anchor key's address (where anchoring is funded), on a coordinator that anchors.
    pub anchor_address: Option<String>,
}

/// Mixes a canary in after every `every` submitted tasks. A canary is built exactly like a
/// default API submission (the coordinator as requester, a random nonce, the current time), so
/// nothing in its announcement tells it apart; only its answer, kept by the node, differs.
#[derive(Debug, Default)]
pub struct CanaryMixer {
    /// Pool: (class name, input, answer, units).
    pub pool: Vec<(String, Vec<u8>, Vec<u8>, u32)>,
    /// One canary per this many submissions (0: never).
    pub every: u64,
    /// Submissions so far.
    pub count: std::sync::atomic::AtomicU64,
}

impl CanaryMixer {
    /// The canary due after this submission, if any.
    fn due(&self) -> Option<&(String, Vec<u8>, Vec<u8>, u32)> {
        if self.every == 0 || self.pool.is_empty() {
            return None;
        }
        let n = self.count.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
        if n % self.every != 0 {
            return None;
        }
        let mut b = [0u8; 8];
        getrandom::fill(&mut b).ok()?;
        self.pool.get((u64::from_le_bytes(b) % self.pool.len() as u64) as usize)
    }
}

/// An API error: status and reason.
#[derive(Debug)]
pub struct ApiError(StatusCode, String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(json!({ "error": self.1 }))).into_response()
    }
}

impl From<Refusal> for ApiError {
    fn from(r: Refusal) -> Self {
        ApiError(StatusCode::from_u16(r.code()).unwrap_or(StatusCode::BAD_REQUEST), r.to_string())
    }
}

impl From<CoreError> for ApiError {
    fn from(e: CoreError) -> Self {
        match e {
            CoreError::Refused(r) => r.into(),
            other => ApiError(StatusCode::SERVICE_UNAVAILABLE, other.to_string()),
        }
    }
}

impl From<ls::LoadError> for ApiError {
    fn from(e: ls::LoadError) -> Self {
        tracing::error!(target: "cairn::api", error = %e, "storage read failed");
        ApiError(StatusCode::INTERNAL_SERVER_ERROR, "storage read failed".into())
    }
}

fn bad(msg: impl Into<String>) -> ApiError {
    ApiError(StatusCode::BAD_REQUEST, msg.into())
}

fn not_found(what: &str) -> ApiError {
    ApiError(StatusCode::NOT_FOUND, format!("unknown {what}"))
}

type ApiResult = Result<Json<Value>, ApiError>;

/// Constant-time equality: the time taken does not depend on where the inputs differ.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn authorize(state: &ApiState, headers: &HeaderMap) -> Result<(), ApiError> {
    if state.core.is_none() {
        return Err(ApiError(
            StatusCode::NOT_FOUND,
            "a follower takes no writes: send them to the coordinator".into(),
        ));
    }
    let given = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    if !constant_time_eq(given.as_bytes(), state.token.as_bytes()) {
        return Err(ApiError(StatusCode::UNAUTHORIZED, "missing or wrong operator token".into()));
    }
    if state.stopping.load(std::sync::atomic::Ordering::SeqCst) {
        return Err(ApiError(StatusCode::SERVICE_UNAVAILABLE, "node is shutting down".into()));
    }
    Ok(())
}

fn parse_hash(s: &str, what: &str) -> Result<Hash32, ApiError> {
    Hash32::from_hex(s).map_err(|_| bad(format!("{what} must be 64 hex characters")))
}

fn parse_key(s: &str) -> Result<PubKey, ApiError> {
    PubKey::from_hex(s).ok_or_else(|| bad("key must be a 64-hex-character x-only public key"))
}

fn lock(state: &ApiState) -> Result<std::sync::MutexGuard<'_, Core>, ApiError> {
    let Some(core) = &state.core else {
        return Err(ApiError(
            StatusCode::NOT_FOUND,
            "a follower serves epochs, receipts, ledger snapshots and anchors; ask the coordinator for this"
                .into(),
        ));
    };
    core.lock().map_err(|_| ApiError(StatusCode::SERVICE_UNAVAILABLE, "core unavailable".into()))
}

fn follow_view(s: &ApiState) -> Option<FollowView> {
    s.follower.as_ref().and_then(|f| f.read().ok().map(|v| v.clone()))
}

/// The router.
pub fn router(state: ApiState, max_body: usize) -> Router {
    Router::new()
        .route("/v1/health", get(health))
        .route("/metrics", get(metrics))
        .route("/v1/classes", get(classes))
        .route("/v1/tasks", post(submit_task).get(list_tasks))
        .route("/v1/tasks/{id}", get(get_task))
        .route("/v1/tasks/{id}/result", get(get_result))
        .route("/v1/workers", get(list_workers))
        .route("/v1/workers/{key}", get(get_worker))
        .route("/v1/epochs", get(list_epochs))
        .route("/v1/epochs/close", post(close_epoch))
        .route("/v1/epochs/{height}", get(get_epoch))
        .route("/v1/epochs/{height}/receipts", get(epoch_receipts))
        .route("/v1/epochs/{height}/ledger", get(epoch_ledger))
        .route("/v1/anchors", get(anchors))
        .route("/v1/receipts/{id}", get(get_receipt))
        .route("/v1/receipts/{id}/proof", get(receipt_proof))
        .route("/v1/ledger/{worker}", get(ledger))
        .route("/v1/payouts", get(payouts))
        .route("/timestamp/{commitment}", get(timestamp))
        .route("/v1/evidence", get(evidence))
        .route("/v1/stats", get(stats))
        .route("/v1/receipts/{id}/audit", get(receipt_audit))
        .route("/v1/receipts/{id}/bundle", get(receipt_bundle))
        .route("/v1/receipts/{id}/ots", get(receipt_ots))
        .merge(crate::dashboard::routes())
        .fallback(|| async { ApiError(StatusCode::NOT_FOUND, "no such route".into()) })
        .layer(DefaultBodyLimit::max(max_body))
        .with_state(state)
}

async fn health(State(s): State<ApiState>) -> ApiResult {
    if let Some(f) = follow_view(&s) {
        let anchor = s.anchor.read().map(|a| a.clone()).unwrap_or_default();
        return Ok(Json(json!({
            "status": if s.stopping.load(std::sync::atomic::Ordering::SeqCst) { "stopping" } else { "ok" },
            "role": "follower",
            "network": s.network.name(),
            "coordinator": s.coordinator,
            "next_epoch": f.tip_height.map_or(0, |h| h.saturating_add(1)),
            "peers": f.peers,
            "last_sync": f.last_sync,
            "sync_error": f.last_error,
            "evidence": f.evidence.len(),
            "p2p": s.p2p.as_ref(),
            "anchoring": anchor.enabled,
            "bitcoin_tip": anchor.tip_height,
            "bitcoin_error": anchor.last_error,
        })));
    }
    let core = lock(&s)?;
    let m = core.machine();
    let anchor = s.anchor.read().map(|a| a.clone()).unwrap_or_default();
    Ok(Json(json!({
        "status": if s.stopping.load(std::sync::atomic::Ordering::SeqCst) { "stopping" } else { "ok" },
        "role": "coordinator",
        "network": m.config().network.name(),
        "coordinator": m.coordinator(),
        "next_epoch": m.meta().next_epoch,
        "open_tasks": m.open_tasks().count(),
        "workers": m.workers().count(),
        "p2p": s.p2p.as_ref(),
        "anchor_address": s.anchor_address,
        "anchoring": anchor.enabled,
        "bitcoin_tip": anchor.tip_height,
        "bitcoin_error": anchor.last_error,
    })))
}

async fn metrics(State(s): State<ApiState>) -> Response {
    let body = s.metrics.encode();
    ([(axum::http::header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], body)
        .into_response()
}

async fn classes(State(s): State<ApiState>) -> ApiResult {
    let core = lock(&s)?;
    let list: Vec<Value> = core
        .machine()
        .classes()
        .iter()
        .map(|(id, c)| json!({ "id": id, "class": c, "encoding": hex::encode(c.to_bytes()) }))
        .collect();
    Ok(Json(json!({ "classes": list })))
}

async fn submit_task(
    State(s): State<ApiState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    authorize(&s, &headers)?;
    let b = crate::api_body::submission(&body).map_err(bad)?;
    let submitted_budget = b.budget_sats;
    let (payload, blob, canary) = (b.payload, b.blob, b.canary);
    let nonce = match b.nonce {
        Some(n) => n,
        None => {
            let mut buf = [0u8; 8];
            getrandom::fill(&mut buf)
                .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
            u64::from_le_bytes(buf)
        }
    };
    let t = unix_secs();
    let (id, effects) = {
        let mut core = lock(&s)?;
        let m = core.machine();
        let class = m
            .classes()
            .iter()
            .find(|(id, c)| c.name == b.class || id.to_hex() == b.class)
            .map(|(id, _)| *id)
            .ok_or_else(|| not_found("task class"))?;
        let task = Task {
            network: m.config().network,
            coordinator: m.coordinator(),
            class,
            requester: b.requester.unwrap_or(m.coordinator()),
            nonce,
            units: b.units,
            budget_sats: b.budget_sats,
            created_at: t,
            input: payload,
        };
        match blob {
            None => core.apply(|m| m.submit_task(task, canary, t))?,
            Some(bytes) => core.apply(|m| m.submit_task_with_blob(task, bytes, canary, t))?,
        }
    };
    s.metrics.tasks_submitted.inc();
    let _ = s.effects.send(effects).await;
    if let Some((class, input, answer, units)) = s.canaries.due().cloned() {
        let mut b = [0u8; 8];
        if getrandom::fill(&mut b).is_ok() {
            let made = lock(&s).map(|mut core| {
                let m = core.machine();
                let Some((class_id, c)) = m.classes().iter().find(|(_, c)| c.name == class) else {
                    return Vec::new();
                };
                let task = Task {
                    network: m.config().network,
                    coordinator: m.coordinator(),
                    class: *class_id,
                    requester: m.coordinator(),
                    nonce: u64::from_le_bytes(b),
                    units,
                    // The budget of the submission it follows (when that covers the cost),
                    // so a canary's budget is not the tell-tale exact cost.
                    budget_sats: c
                        .reward_per_unit
                        .saturating_mul(u64::from(units))
                        .saturating_mul(u64::from(c.replication))
                        .max(submitted_budget),
                    created_at: t,
                    input: Payload::Inline(input),
                };
                core.apply(|m| m.submit_task(task, Some(answer), t)).map(|(_, e)| e).unwrap_or_default()
            });
            if let Ok(effects) = made {
                let _ = s.effects.send(effects).await;
            }
        }
    }
    Ok((StatusCode::CREATED, Json(json!({ "id": id }))).into_response())
}

/// The public view of a task: no canary answer, no audit flags.
fn task_view(r: &TaskRecord) -> Value {
    let slots: Vec<Value> = r
        .assignments
        .iter()
        .map(|a| {
            json!({
                "worker": a.worker,
                "committed": a.commitment.is_some(),
                "revealed": a.revealed.is_some(),
                "verdict": a.verdict,
                "receipt": a.receipt,
            })
        })
        .collect();
    let (phase, result, reason) = match &r.phase {
        Phase::Commit => ("open", None, None),
        Phase::Reveal { .. } => ("revealing", None, None),
        Phase::Decided { result, .. } => ("decided", Some(*result), None),
        Phase::Failed { reason, .. } => ("failed", None, Some(reason.clone())),
    };
    json!({
        "id": r.id,
        "class": r.task.class,
        "requester": r.task.requester,
        "units": r.task.units,
        "budget_sats": r.task.budget_sats,
        "accepted_at": r.accepted_at,
        "input_hash": r.task.input.content_hash(),
        "input_size": r.task.input.size(),
        "phase": phase,
        "result_hash": result,
        "failure": reason,
        "assignments": slots,
    })
}

fn load_task(s: &ApiState, id: &Hash32) -> Result<TaskRecord, ApiError> {
    let core = lock(s)?;
    if let Some(t) = core.machine().open_task(id) {
        return Ok(t.clone());
    }
    let store = core.store().clone();
    drop(core);
    ls::task(store.as_ref(), id)?.ok_or_else(|| not_found("task"))
}

async fn get_task(State(s): State<ApiState>, Path(id): Path<String>) -> ApiResult {
    let id = parse_hash(&id, "task id")?;
    Ok(Json(task_view(&load_task(&s, &id)?)))
}

async fn get_result(State(s): State<ApiState>, Path(id): Path<String>) -> ApiResult {
    let id = parse_hash(&id, "task id")?;
    let rec = load_task(&s, &id)?;
    let Phase::Decided { result, .. } = rec.phase else {
        return Err(ApiError(StatusCode::CONFLICT, "task has no accepted result (yet)".into()));
    };
    let store = s.store.clone();
    for a in rec.assignments.iter().filter(|a| a.revealed == Some(result)) {
        let key = [&id.0[..], a.worker.as_bytes()].concat();
        if let Some(v) = store.get(crate::store::Table::Reveals, &key).map_err(|e| bad(e.to_string()))? {
            let r: cairn_spec::Signed<cairn_spec::Reveal> = cairn_spec::Decode::from_bytes(&v)
                .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
            if let Payload::Inline(bytes) = r.body.result {
                return Ok(Json(
                    json!({ "task": id, "result_hash": result, "result_hex": hex::encode(bytes) }),
                ));
            }
        }
    }
    Err(not_found("result"))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Page {
    after: Option<String>,
    from: Option<u32>,
    limit: Option<usize>,
}

fn limit(p: &Page) -> Result<usize, ApiError> {
    match p.limit {
        Some(0) => Err(bad("limit must be at least 1")),
        Some(n) if n > MAX_PAGE => Err(bad(format!("limit above {MAX_PAGE}"))),
        Some(n) => Ok(n),
        None => Ok(100),
    }
}

async fn list_tasks(State(s): State<ApiState>, Query(p): Query<Page>) -> ApiResult {
    let n = limit(&p)?;
    let after = p.after.as_deref().map(|a| parse_hash(a, "after")).transpose()?;
    let store = s.store.clone();
    let list: Vec<Value> = ls::tasks(store.as_ref(), after.as_ref(), n)?.iter().map(task_view).collect();
    Ok(Json(json!({ "tasks": list })))
}

fn worker_view(w: &crate::lifecycle::WorkerRecord) -> Value {
    json!({
        "key": w.key(),
        "payout_address": w.registration.body.payout_address,
        "registered_at": w.registered_at,
        "status": match (&w.banned, &w.bond_lost) {
            (Some(_), _) => "banned",
            (None, Some(_)) => "lapsed",
            (None, None) => "active",
        },
        "ban": w.banned,
        "bond_lost": w.bond_lost.as_ref().map(|(why, at)| json!({ "reason": why, "at": at })),
        "streak": w.streak,
        "accepted": w.accepted,
        "rejected": w.rejected,
        "rejections": w.rejections,
    })
}

async fn list_workers(State(s): State<ApiState>) -> ApiResult {
    let core = lock(&s)?;
    let list: Vec<Value> = core.machine().workers().map(worker_view).collect();
    Ok(Json(json!({ "workers": list })))
}

async fn get_worker(State(s): State<ApiState>, Path(key): Path<String>) -> ApiResult {
    let key = parse_key(&key)?;
    let core = lock(&s)?;
    let w = core.machine().worker(&key).ok_or_else(|| not_found("worker"))?;
    Ok(Json(worker_view(w)))
}

fn header_view(h: &cairn_spec::SignedEpochHeader, anchor: &AnchorView) -> Value {
    json!({
        "height": h.body.height,
        "hash": h.id(),
        "header": h,
        "encoding": hex::encode(h.to_bytes()),
        "anchor": anchor.status_of(h.body.height),
    })
}

async fn list_epochs(State(s): State<ApiState>, Query(p): Query<Page>) -> ApiResult {
    let n = limit(&p)?;
    let store = s.store.clone();
    let anchor = s.anchor.read().map(|a| a.clone()).unwrap_or_default();
    let list: Vec<Value> = ls::headers(store.as_ref(), p.from.unwrap_or(0), n)?
        .iter()
        .map(|h| header_view(h, &anchor))
        .collect();
    Ok(Json(json!({ "epochs": list })))
}

async fn get_epoch(State(s): State<ApiState>, Path(height): Path<String>) -> ApiResult {
    let height: u32 = height.parse().map_err(|_| bad("height must be a non-negative integer"))?;
    let store = s.store.clone();
    let h = ls::header(store.as_ref(), height)?.ok_or_else(|| not_found("epoch"))?;
    let anchor = s.anchor.read().map(|a| a.clone()).unwrap_or_default();
    Ok(Json(header_view(&h, &anchor)))
}

async fn close_epoch(State(s): State<ApiState>, headers: HeaderMap) -> ApiResult {
    authorize(&s, &headers)?;
    let t = unix_secs();
    let (_, effects) = lock(&s)?.apply(|m| Ok(((), m.close_epoch(t))))?;
    let closed = effects.iter().find_map(|e| match e {
        Effect::Epoch(h) => Some(h.body.height),
        _ => None,
    });
    let _ = s.effects.send(effects).await;
    Ok(Json(json!({ "closed": closed })))
}

async fn anchors(State(s): State<ApiState>) -> ApiResult {
    let anchor = s.anchor.read().map(|a| a.clone()).unwrap_or_default();
    Ok(Json(serde_json::to_value(anchor).unwrap_or(Value::Null)))
}

async fn get_receipt(State(s): State<ApiState>, Path(id): Path<String>) -> ApiResult {
    let id = parse_hash(&id, "receipt id")?;
    let store = s.store.clone();
    let (epoch, index, r) = ls::receipt(store.as_ref(), &id)?.ok_or_else(|| not_found("receipt"))?;
    Ok(Json(
        json!({ "id": id, "epoch": epoch, "index": index, "receipt": r, "encoding": hex::encode(r.to_bytes()) }),
    ))
}

async fn receipt_proof(State(s): State<ApiState>, Path(id): Path<String>) -> ApiResult {
    let id = parse_hash(&id, "receipt id")?;
    let store = s.store.clone();
    let (epoch, index, r) = ls::receipt(store.as_ref(), &id)?.ok_or_else(|| not_found("receipt"))?;
    let (Some(header), Some(proof)) =
        (ls::header(store.as_ref(), epoch)?, ls::receipt_path(store.as_ref(), epoch, index)?)
    else {
        return Err(ApiError(StatusCode::CONFLICT, "the receipt's epoch is not closed yet".into()));
    };
    let anchor = s.anchor.read().map(|a| a.clone()).unwrap_or_default();
    Ok(Json(json!({
        "receipt": r,
        "receipt_encoding": hex::encode(r.to_bytes()),
        "merkle_proof": proof,
        "receipts_root": header.body.receipts_root,
        "header": header_view(&header, &anchor),
    })))
}

fn parse_height(s: &str) -> Result<u32, ApiError> {
    s.parse().map_err(|_| bad("height must be a non-negative integer"))
}

/// Most receipts in one page of `/v1/epochs/{height}/receipts`.
pub const MAX_RECEIPT_PAGE: usize = 5000;

async fn epoch_receipts(
    State(s): State<ApiState>,
    Path(height): Path<String>,
    Query(p): Query<Page>,
) -> ApiResult {
    let height = parse_height(&height)?;
    let n = match p.limit {
        Some(0) => return Err(bad("limit must be at least 1")),
        Some(n) if n > MAX_RECEIPT_PAGE => return Err(bad(format!("limit above {MAX_RECEIPT_PAGE}"))),
        Some(n) => n,
        None => 1000,
    };
    let store = s.store.clone();
    let h = ls::header(store.as_ref(), height)?.ok_or_else(|| not_found("epoch"))?;
    let from = p.from.unwrap_or(0);
    let page = ls::epoch_receipts_page(store.as_ref(), height, from, n)?;
    Ok(Json(json!({
        "height": height,
        "receipt_count": h.body.receipt_count,
        "from": from,
        "receipts": page.iter().map(|r| hex::encode(r.to_bytes())).collect::<Vec<_>>(),
        "ids": page.iter().map(|r| r.id()).collect::<Vec<_>>(),
    })))
}

async fn epoch_ledger(State(s): State<ApiState>, Path(height): Path<String>) -> ApiResult {
    let height = parse_height(&height)?;
    let store = s.store.clone();
    let h = ls::header(store.as_ref(), height)?.ok_or_else(|| not_found("epoch"))?;
    let entries = ls::ledger_snapshot(store.as_ref(), height)?.ok_or_else(|| not_found("ledger snapshot"))?;
    Ok(Json(json!({
        "height": height,
        "state_root": h.body.state_root,
        "entries": entries.iter().map(|e| hex::encode(e.to_bytes())).collect::<Vec<_>>(),
    })))
}

/// `GET /timestamp/<commitment>`, as an OpenTimestamps calendar answers it (SPEC.md §9.1): the
/// serialized timestamp from a receipt's leaf hash to the Merkle root of the block holding its
/// anchor, once that anchor is confirmed; 404 before, so `ots upgrade` tries again later.
/// Assembles receipt `id`'s proof from this node's database and its own Bitcoin Core (what
/// `/timestamp/`, the dashboard's check and its downloads share). Blocking work runs off the
/// async threads.
async fn node_proof(s: &ApiState, id: Hash32) -> Result<cairn_spec::ReceiptProof, ApiError> {
    let Some(chain) = s.chain.clone() else {
        return Err(ApiError(StatusCode::NOT_FOUND, "this node does not anchor to Bitcoin".into()));
    };
    let (store, network) = (s.store.clone(), s.network);
    let anchors = s.anchor.read().map(|a| a.claims()).unwrap_or_default();
    let source = crate::audit_source::StoreSource { store, anchors, name: "this node".into() };
    let built = tokio::task::spawn_blocking(move || {
        cairn_audit::receipt::assemble(&source, &id, chain.as_ref(), network)
    })
    .await
    .map_err(|_| ApiError(StatusCode::INTERNAL_SERVER_ERROR, "proof task failed".into()))?;
    use cairn_audit::receipt::ProofSourceError as E;
    match built {
        Ok(p) => Ok(p),
        Err(E::Source(cairn_audit::SourceError::NotFound(m)) | E::NotAnchored(m)) => {
            Err(ApiError(StatusCode::NOT_FOUND, format!("no proof yet: {m}")))
        }
        Err(E::Chain(m)) => Err(ApiError(StatusCode::SERVICE_UNAVAILABLE, format!("bitcoin: {m}"))),
        Err(e) => Err(ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())),
    }
}

fn download(bytes: Vec<u8>, name: &str) -> Response {
    (
        [
            (axum::http::header::CONTENT_TYPE, "application/octet-stream".to_owned()),
            (axum::http::header::CONTENT_DISPOSITION, format!("attachment; filename=\"{name}\"")),
        ],
        bytes,
    )
        .into_response()
}

async fn timestamp(State(s): State<ApiState>, Path(commitment): Path<String>) -> Result<Response, ApiError> {
    let id = parse_hash(&commitment, "commitment")?;
    let proof = node_proof(&s, id).await?;
    let t = cairn_spec::ots::receipt_timestamp(&proof)
        .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    Ok(([(axum::http::header::CONTENT_TYPE, "application/octet-stream")], t.serialize()).into_response())
}

/// Query of the routes that check a receipt against Bitcoin.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DepthQuery {
    /// Confirmations required (audit) or included (bundle).
    depth: Option<u32>,
}

/// Most confirmations a check or bundle asks for (a bundle carries a header per confirmation).
const MAX_DEPTH: u32 = 1000;

fn depth(q: &DepthQuery) -> Result<u32, ApiError> {
    match q.depth {
        None => Ok(1),
        Some(0) => Err(bad("depth must be at least 1")),
        Some(d) if d > MAX_DEPTH => Err(bad(format!("depth above {MAX_DEPTH}"))),
        Some(d) => Ok(d),
    }
}

/// The receipt checked step by step against this node's Bitcoin Core: what the dashboard
/// shows. An auditor runs the same checks against their own node (`cairn audit receipt`).
async fn receipt_audit(
    State(s): State<ApiState>,
    Path(id): Path<String>,
    Query(q): Query<DepthQuery>,
) -> ApiResult {
    let id = parse_hash(&id, "receipt id")?;
    let min_depth = depth(&q)?;
    let proof = node_proof(&s, id).await?;
    let Some(chain) = s.chain.clone() else {
        return Err(ApiError(StatusCode::NOT_FOUND, "this node does not anchor to Bitcoin".into()));
    };
    let network = s.network;
    let (report, block_height, anchor_txid) = tokio::task::spawn_blocking(move || {
        let report = cairn_audit::verify::verify_receipt(&proof, chain.as_ref(), network, min_depth);
        let txid = bitcoin::consensus::deserialize::<bitcoin::Transaction>(&proof.anchor_tx)
            .ok()
            .map(|t| t.compute_txid().to_string());
        (report, proof.block_height, txid)
    })
    .await
    .map_err(|_| ApiError(StatusCode::INTERNAL_SERVER_ERROR, "audit task failed".into()))?;
    Ok(Json(json!({
        "receipt": id,
        "network": network.name(),
        "against": "this coordinator's Bitcoin node (audit with your own: cairn audit receipt)",
        "min_depth": min_depth,
        "ok": report.ok(),
        "failed_step": report.first_failure().map(|c| c.name),
        "checks": report.checks,
        "anchor_txid": anchor_txid,
        "block_height": block_height,
    })))
}

/// A self-contained proof bundle (`cairn audit receipt --offline FILE`).
async fn receipt_bundle(
    State(s): State<ApiState>,
    Path(id): Path<String>,
    Query(q): Query<DepthQuery>,
) -> Result<Response, ApiError> {
    let id = parse_hash(&id, "receipt id")?;
    let depth = depth(&q)?;
    let proof = node_proof(&s, id).await?;
    let Some(chain) = s.chain.clone() else {
        return Err(ApiError(StatusCode::NOT_FOUND, "this node does not anchor to Bitcoin".into()));
    };
    let bundle = tokio::task::spawn_blocking(move || {
        cairn_audit::verify::assemble_bundle(proof, chain.as_ref(), depth)
    })
    .await
    .map_err(|_| ApiError(StatusCode::INTERNAL_SERVER_ERROR, "bundle task failed".into()))?
    .map_err(|e| ApiError(StatusCode::SERVICE_UNAVAILABLE, format!("bitcoin: {e}")))?;
    Ok(download(bundle.to_bytes(), &format!("{id}.bundle")))
}

/// Query of `/v1/receipts/{id}/ots`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct OtsQuery {
    /// `ots` (default): the detached timestamp; `stamped`: the file it timestamps (whose
    /// SHA-256 is the receipt id).
    file: Option<String>,
}

/// The OpenTimestamps proof of a receipt, or the stamped file `ots verify` checks it against.
async fn receipt_ots(
    State(s): State<ApiState>,
    Path(id): Path<String>,
    Query(q): Query<OtsQuery>,
) -> Result<Response, ApiError> {
    let id = parse_hash(&id, "receipt id")?;
    let stamped = match q.file.as_deref() {
        None | Some("ots") => false,
        Some("stamped") => true,
        Some(_) => return Err(bad("file must be ots or stamped")),
    };
    let proof = node_proof(&s, id).await?;
    if stamped {
        return Ok(download(cairn_spec::ots::stamped_receipt_file(&proof.receipt), &format!("{id}.receipt")));
    }
    let t = cairn_spec::ots::receipt_timestamp(&proof)
        .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    Ok(download(t.detached_file(&id.0), &format!("{id}.receipt.ots")))
}

/// Totals for dashboards: tasks per state, receipts, epochs, ledger sums, workers, anchors.
async fn stats(State(s): State<ApiState>) -> ApiResult {
    let anchor = s.anchor.read().map(|a| a.clone()).unwrap_or_default();
    let count = |st: AnchorEntryStatus| anchor.anchors.iter().filter(|a| a.status == st).count();
    let anchors = json!({
        "confirmed": count(AnchorEntryStatus::Confirmed),
        "pending": count(AnchorEntryStatus::Pending),
        "replaced": count(AnchorEntryStatus::Replaced),
        "settled_epoch": anchor.settled_epoch,
        "bitcoin_tip": anchor.tip_height,
    });
    if let Some(f) = follow_view(&s) {
        return Ok(Json(json!({
            "role": "follower",
            "epochs": f.tip_height.map_or(0, |h| u64::from(h) + 1),
            "anchors": anchors,
        })));
    }
    let core = lock(&s)?;
    let m = core.machine();
    let (mut commit, mut reveal) = (0u64, 0u64);
    for t in m.open_tasks() {
        match t.phase {
            Phase::Commit => commit += 1,
            Phase::Reveal { .. } => reveal += 1,
            _ => {}
        }
    }
    let c = &m.meta().counts;
    let (mut locked, mut claimable, mut paid) = (0u64, 0u64, 0u64);
    let (mut active, mut banned, mut lapsed) = (0u64, 0u64, 0u64);
    for w in m.workers() {
        match (&w.banned, &w.bond_lost) {
            (Some(_), _) => banned += 1,
            (None, Some(_)) => lapsed += 1,
            (None, None) => active += 1,
        }
        if let Some(e) = m.balance(&w.key()) {
            locked = locked.saturating_add(e.locked);
            claimable = claimable.saturating_add(e.claimable);
            paid = paid.saturating_add(e.paid);
        }
    }
    Ok(Json(json!({
        "role": "coordinator",
        "tasks": {
            "submitted": c.submitted,
            "commit": commit,
            "reveal": reveal,
            "decided": c.decided,
            "failed": c.failed,
        },
        "receipts": c.receipts,
        "epochs": m.meta().next_epoch,
        "open_epoch_receipts": m.meta().open_receipts,
        "ledger": { "locked": locked, "claimable": claimable, "paid": paid, "credited": m.meta().credited, "forfeited": m.meta().forfeited },
        "workers": { "active": active, "banned": banned, "lapsed": lapsed },
        "anchors": anchors,
    })))
}

async fn ledger(State(s): State<ApiState>, Path(worker): Path<String>) -> ApiResult {
    let key = parse_key(&worker)?;
    let store = s.store.clone();
    let (entry, last) = match (&s.core, follow_view(&s)) {
        (Some(_), _) => {
            let core = lock(&s)?;
            let m = core.machine();
            (m.balance(&key).cloned(), m.meta().last_header.clone())
        }
        // A follower knows balances as of its newest accepted epoch: the snapshot there.
        (None, f) => {
            let last = match f.and_then(|f| f.tip_height) {
                Some(h) => ls::header(store.as_ref(), h)?,
                None => None,
            };
            let entry = match &last {
                Some(h) => ls::ledger_snapshot(store.as_ref(), h.body.height)?
                    .and_then(|snap| snap.into_iter().find(|e| e.worker == key)),
                None => None,
            };
            (entry, last)
        }
    };
    let entry = entry.ok_or_else(|| not_found("ledger entry"))?;
    let mut proof = Value::Null;
    if let Some(h) = last {
        if let Some(snap) = ls::ledger_snapshot(store.as_ref(), h.body.height)? {
            if let Some(i) = snap.iter().position(|e| e.worker == key) {
                let tree = MerkleTree::new(snap.iter().map(|e| e.id()).collect());
                proof = json!({
                    "epoch": h.body.height,
                    "state_root": h.body.state_root,
                    "entry": snap.get(i),
                    "entry_encoding": snap.get(i).map(|e| hex::encode(e.to_bytes())),
                    "merkle_proof": tree.proof(i as u32),
                });
            }
        }
    }
    let paid: Vec<_> = ls::payouts(store.as_ref())?.into_iter().filter(|p| p.worker == key).collect();
    Ok(Json(json!({
        "worker": key,
        "locked": entry.locked,
        "claimable": entry.claimable,
        "paid": entry.paid,
        "payouts": paid,
        "proof": proof,
    })))
}

async fn payouts(State(s): State<ApiState>) -> ApiResult {
    let store = s.store.clone();
    Ok(Json(json!({ "payouts": ls::payouts(store.as_ref())? })))
}

/// Refused epochs and equivocations this node has seen, with the headers as evidence (a
/// follower's; a coordinator keeps none).
async fn evidence(State(s): State<ApiState>) -> ApiResult {
    let f = follow_view(&s);
    Ok(Json(json!({
        "role": if f.is_some() { "follower" } else { "coordinator" },
        "evidence": f.map(|f| f.evidence).unwrap_or_default(),
    })))
}
