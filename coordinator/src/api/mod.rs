//! The HTTP API (axum, JSON, versioned under `/v1`): tasks, results, workers and their
//! rejection reasons, epochs, anchors, receipts with Merkle proofs, ledger balances with a
//! proof against the newest state root, health, and Prometheus `/metrics`. Write endpoints
//! need the operator token (compared in constant time). Every body is a type of
//! `cairn_spec::api`; the OpenAPI document ([`ApiDoc`], served at `/openapi.json`, checked in
//! as `coordinator/openapi.json`) is generated from those types and the handlers' annotations,
//! and a test holds it and [`ROUTES`] together.
//!
//! Writes become [`Command`]s the node decides and persists (the same path into the core as
//! a worker's request); reads come from the store and the summary the core publishes
//! (`crate::published`), so the API never takes the core's lock.
//!
//! This module owns the router, the handlers' shared state, errors and the operator token;
//! the handlers live in a file per resource. Must never decide anything nor write to the
//! core, and never show what only the node may know: which tasks are canaries or audits.

use std::sync::{Arc, RwLock};

use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use cairn_spec::api::{AnchorCounts, Anchors, EpochAnchor, ErrorBody};
use cairn_spec::{Hash32, PubKey};
use serde::Deserialize;
use tokio::sync::{mpsc, oneshot};
use utoipa::OpenApi;

use crate::core::CoreError;
use crate::lifecycle::Refusal;
use crate::lifecycle_store as ls;
use crate::metrics::NodeMetrics;
use crate::published::{Board, Published};

pub mod body;
mod epochs;
pub mod heavy;
mod ledger;
mod receipts;
mod status;
mod tasks;
mod workers;

pub use cairn_spec::api::{AnchorEntry, AnchorEntryStatus};
use cairn_spec::api::{Readiness, ReadinessProblem};
pub use epochs::MAX_RECEIPT_PAGE;

/// Largest page of a list.
pub const MAX_PAGE: usize = 500;

/// Every route: (method, path template). The OpenAPI document must list exactly these.
pub const ROUTES: &[(&str, &str)] = &[
    ("get", "/v1/health"),
    ("get", "/v1/ready"),
    ("get", "/metrics"),
    ("get", "/openapi.json"),
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
    ("get", "/v1/epochs/{height}/roster"),
    ("get", "/v1/epochs/{height}/history/{epoch}"),
    ("get", "/v1/epochs/{height}/rounds"),
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

/// The expensive reads: limited per client and in how many run at once (`heavy`).
pub const HEAVY_ROUTES: &[&str] = &[
    "/v1/receipts/{id}/proof",
    "/v1/payouts",
    "/timestamp/{commitment}",
    "/v1/receipts/{id}/audit",
    "/v1/receipts/{id}/bundle",
    "/v1/receipts/{id}/ots",
];

/// The OpenAPI document of every route in [`ROUTES`], generated from the body types of
/// `cairn_spec::api` and the handlers' `#[utoipa::path]` annotations.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "Cairn coordinator API",
        version = "1",
        description = "JSON API of a Cairn coordinator node. Paths are versioned under /v1. Write endpoints need the operator token (Authorization: Bearer <token>; the token is in <data-dir>/operator.token). Errors are JSON objects {\"error\": reason} with a 4xx or 5xx status; a refused request changes nothing. The expensive reads (receipt proofs, audits, bundles, .ots files, timestamps, payouts) are limited per client address (the TCP peer's): past its burst and rate a client is answered 429 with Retry-After, and a read that waits a second for a free slot 503 with Retry-After."
    ),
    paths(
        status::health,
        status::ready,
        status::metrics,
        status::openapi_json,
        status::anchors,
        status::stats,
        status::evidence,
        tasks::classes,
        tasks::submit_task,
        tasks::list_tasks,
        tasks::get_task,
        tasks::get_result,
        workers::list_workers,
        workers::get_worker,
        epochs::list_epochs,
        epochs::close_epoch,
        epochs::get_epoch,
        epochs::epoch_receipts,
        epochs::epoch_ledger,
        epochs::epoch_roster,
        epochs::epoch_history,
        epochs::epoch_rounds,
        receipts::get_receipt,
        receipts::receipt_proof,
        receipts::timestamp,
        receipts::receipt_audit,
        receipts::receipt_bundle,
        receipts::receipt_ots,
        ledger::ledger,
        ledger::payouts,
    ),
    modifiers(&OperatorToken)
)]
pub struct ApiDoc;

/// Adds the operator token's security scheme, which the write routes name.
struct OperatorToken;

impl utoipa::Modify for OperatorToken {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
        let components = doc.components.get_or_insert_with(Default::default);
        components
            .add_security_scheme(OPERATOR_TOKEN, SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)));
    }
}

/// Name of the operator token's security scheme in the OpenAPI document.
const OPERATOR_TOKEN: &str = "operatorToken";

/// What the anchor side reports for the API (refreshed by the node each anchor round); the
/// routes answer with views of it (`Anchors`, `EpochAnchor`, `AnchorCounts`).
#[derive(Clone, Debug, Default)]
pub struct AnchorView {
    /// Whether epochs are anchored at all (false in `bitcoin.mode = "none"`).
    pub enabled: bool,
    /// Best height seen.
    pub tip_height: Option<u32>,
    /// What the node's Bitcoin is, once reached.
    pub backend: Option<cairn_spec::api::BitcoinBackend>,
    /// Newest settled epoch.
    pub settled_epoch: Option<u32>,
    /// Anchor transactions, newest first.
    pub anchors: Vec<AnchorEntry>,
    /// Last error talking to Bitcoin Core, if the last round failed.
    pub last_error: Option<String>,
    /// The anchor machine's figures at the last round (`None` before the first).
    pub standing: Option<cairn_anchor::Standing>,
    /// What stopped the last round from anchoring, if anything did.
    pub blocked: Option<ReadinessProblem>,
    /// Blocks epochs have waited for a confirmed anchor.
    pub blocks_waiting: u32,
    /// Blocks they may wait before the node is not ready.
    pub unready_after_blocks: u32,
    /// An anchor chain output spent by a transaction this node did not make (its txid).
    pub spent_elsewhere: Option<String>,
    /// Unix seconds of the anchor side's last report.
    pub last_report: Option<u64>,
    /// Seconds without a report after which the anchor side counts as stuck or gone.
    pub report_within_secs: u64,
}

impl AnchorView {
    /// Whether the node anchors as it should (`/v1/ready`). A node that does not anchor by
    /// configuration (`bitcoin.mode = "none"`) is ready when it serves.
    pub fn readiness(&self, stopping: bool, now_unix: u64) -> Readiness {
        let mut problems = Vec::new();
        if stopping {
            problems.push(ReadinessProblem::Stopping);
        }
        if self.enabled {
            match (&self.blocked, self.tip_height) {
                (Some(p), _) => problems.push(p.clone()),
                (None, None) => problems.push(ReadinessProblem::Starting),
                (None, Some(_)) => {}
            }
            if let Some(txid) = &self.spent_elsewhere {
                problems.push(ReadinessProblem::ChainOutputSpentElsewhere { txid: txid.clone() });
            }
            // A view that stopped changing is no evidence of health: the thread that writes
            // it may be stuck or gone.
            if let Some(at) = self.last_report.filter(|_| self.report_within_secs > 0) {
                let silent_secs = now_unix.saturating_sub(at);
                if silent_secs > self.report_within_secs {
                    problems.push(ReadinessProblem::AnchorStale { silent_secs });
                }
            }
            if let Some(st) = &self.standing {
                if self.blocks_waiting >= self.unready_after_blocks.max(1) {
                    problems.push(ReadinessProblem::AnchorStuck {
                        unanchored_epochs: st.unanchored_epochs(),
                        blocks_waiting: self.blocks_waiting,
                    });
                }
            }
        }
        Readiness { ready: problems.is_empty(), problems }
    }

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
    pub fn status_of(&self, epoch: u32) -> EpochAnchor {
        let confirmed = self
            .anchors
            .iter()
            .filter(|a| a.status == AnchorEntryStatus::Confirmed && a.epoch >= epoch)
            .min_by_key(|a| (a.height, a.epoch));
        if let Some(a) = confirmed {
            return EpochAnchor::Confirmed {
                txid: a.txid.clone(),
                anchored_epoch: a.epoch,
                height: a.height,
                confirmations: a.confirmations,
            };
        }
        match self.anchors.iter().find(|a| a.status == AnchorEntryStatus::Pending && a.epoch >= epoch) {
            Some(a) => EpochAnchor::Pending { txid: a.txid.clone(), anchored_epoch: a.epoch },
            None if self.enabled => EpochAnchor::Unanchored,
            None => EpochAnchor::AnchoringDisabled,
        }
    }

    /// What the API may say of the last error: its kind, never Bitcoin Core's own text (which
    /// can hold file paths such as the cookie's). The node's log has the details.
    pub fn public_error(&self) -> Option<String> {
        self.last_error.as_ref().map(|_| {
            match self.blocked {
                Some(ReadinessProblem::CoreUnreachable) => {
                    "cannot reach Bitcoin Core (the node's log says why)"
                }
                _ => "the last anchor round failed (the node's log says why)",
            }
            .to_owned()
        })
    }

    /// The `/v1/anchors` body.
    pub fn to_body(&self) -> Anchors {
        Anchors {
            enabled: self.enabled,
            tip_height: self.tip_height,
            settled_epoch: self.settled_epoch,
            anchors: self.anchors.clone(),
            last_error: self.public_error(),
        }
    }

    /// The anchor totals of `/v1/stats`.
    pub fn counts(&self) -> AnchorCounts {
        let count = |st: AnchorEntryStatus| self.anchors.iter().filter(|a| a.status == st).count() as u64;
        AnchorCounts {
            confirmed: count(AnchorEntryStatus::Confirmed),
            pending: count(AnchorEntryStatus::Pending),
            replaced: count(AnchorEntryStatus::Replaced),
            settled_epoch: self.settled_epoch,
            bitcoin_tip: self.tip_height,
        }
    }
}

/// What a follower reports for the API (refreshed by its driver).
#[derive(Clone, Debug, Default)]
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

/// Which node serves the API: what only that role has.
#[derive(Clone)]
pub enum Role {
    /// A coordinator: the summary its core publishes (what the read routes show besides the
    /// store), where its writes go (the node decides and persists them, and answers once
    /// they are on disk), and the operator token those writes need. The API never takes the
    /// core's lock.
    Coordinator {
        /// The core's published summary.
        board: Board,
        /// The node's command path.
        commands: mpsc::Sender<Command>,
        /// The operator token.
        token: Arc<String>,
    },
    /// A follower: no lifecycle, no writes; its sync status and evidence.
    Follower {
        /// What the sync loop reports.
        view: Arc<RwLock<FollowView>>,
    },
}

/// Shared state of the handlers.
#[derive(Clone)]
pub struct ApiState {
    /// The role, and what only it has.
    pub role: Role,
    /// The database the read routes serve from.
    pub store: Arc<dyn crate::store::KvStore>,
    /// The network.
    pub network: cairn_spec::Network,
    /// The coordinator this node is (or follows).
    pub coordinator: PubKey,
    /// Anchor status.
    pub anchor: Arc<RwLock<AnchorView>>,
    /// Metrics.
    pub metrics: Arc<NodeMetrics>,
    /// Set once shutdown starts: writes are refused.
    pub stopping: Arc<std::sync::atomic::AtomicBool>,
    /// The node's Bitcoin Core, for OpenTimestamps answers (`None` without anchoring).
    pub chain: Option<Arc<dyn cairn_anchor::ChainBackend + Send + Sync>>,
    /// The node's p2p listen addresses (ending in its peer id), for `/v1/health`: what a
    /// worker given only the API dials.
    pub p2p: Arc<Vec<String>>,
    /// The anchor key's address (where anchoring is funded), on a coordinator that anchors.
    pub anchor_address: Option<String>,
    /// Confirmations before `/timestamp/` answers (the node's `finality_depth`):
    /// OpenTimestamps clients keep a calendar's answer for ever.
    pub calendar_depth: u32,
    /// Closed epochs' Merkle trees, kept for the reads that prove against them.
    pub trees: Arc<crate::trees::EpochTrees>,
}

impl ApiState {
    /// A copy of the anchor side's latest report.
    fn anchor_view(&self) -> AnchorView {
        self.anchor.read().map(|a| a.clone()).unwrap_or_default()
    }

    /// A copy of a follower's latest report (`None` on a coordinator).
    fn follow_view(&self) -> Option<FollowView> {
        match &self.role {
            Role::Follower { view } => view.read().ok().map(|v| v.clone()),
            Role::Coordinator { .. } => None,
        }
    }

    /// Whether shutdown has started.
    fn is_stopping(&self) -> bool {
        self.stopping.load(std::sync::atomic::Ordering::SeqCst)
    }
}

/// An API error: status and reason.
#[derive(Debug)]
pub struct ApiError(StatusCode, String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(ErrorBody { error: self.1 })).into_response()
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

/// A write the HTTP API hands to the coordinator's node, answered once it is on disk: the
/// same path into the core as a worker's request, so the node, not the handler, decides.
#[derive(Debug)]
pub enum Command {
    /// `POST /v1/tasks`: a checked submission (the node draws a nonce when it has none).
    SubmitTask {
        /// The submission.
        submission: Box<body::Submission>,
        /// The task id, or why it was refused.
        reply: oneshot::Sender<Result<Hash32, CoreError>>,
    },
    /// `POST /v1/epochs/close`.
    CloseEpoch {
        /// The height closed, if any.
        reply: oneshot::Sender<Result<Option<u32>, CoreError>>,
    },
}

/// Hands `make(reply)` to the node and waits for its answer.
async fn command<T>(
    s: &ApiState,
    make: impl FnOnce(oneshot::Sender<Result<T, CoreError>>) -> Command,
) -> Result<T, ApiError> {
    let Role::Coordinator { commands, .. } = &s.role else {
        return Err(ApiError(
            StatusCode::NOT_FOUND,
            "a follower takes no writes; ask the coordinator".into(),
        ));
    };
    let unavailable = || ApiError(StatusCode::SERVICE_UNAVAILABLE, "the node is stopping".into());
    let (tx, rx) = oneshot::channel();
    commands.send(make(tx)).await.map_err(|_| unavailable())?;
    Ok(rx.await.map_err(|_| unavailable())??)
}

/// A handler's answer: a typed body, or an error.
type ApiResult<T> = Result<Json<T>, ApiError>;

/// Constant-time equality: the time taken does not depend on where the inputs differ.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn authorize(state: &ApiState, headers: &HeaderMap) -> Result<(), ApiError> {
    operator(state, headers)?;
    if state.is_stopping() {
        return Err(ApiError(StatusCode::SERVICE_UNAVAILABLE, "node is shutting down".into()));
    }
    Ok(())
}

/// Checks the operator token (the requester's credential: whoever may submit tasks, and read
/// their results). A follower has none.
fn operator(state: &ApiState, headers: &HeaderMap) -> Result<(), ApiError> {
    let Role::Coordinator { token, .. } = &state.role else {
        return Err(ApiError(
            StatusCode::NOT_FOUND,
            "a follower takes no writes: send them to the coordinator".into(),
        ));
    };
    let given = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    if !constant_time_eq(given.as_bytes(), token.as_bytes()) {
        return Err(ApiError(StatusCode::UNAUTHORIZED, "missing or wrong operator token".into()));
    }
    Ok(())
}

fn parse_hash(s: &str, what: &str) -> Result<Hash32, ApiError> {
    Hash32::from_hex(s).map_err(|_| bad(format!("{what} must be 64 hex characters")))
}

fn parse_key(s: &str) -> Result<PubKey, ApiError> {
    PubKey::from_hex(s).ok_or_else(|| bad("key must be a 64-hex-character x-only public key"))
}

fn parse_height(s: &str) -> Result<u32, ApiError> {
    s.parse().map_err(|_| bad("height must be a non-negative integer"))
}

/// The coordinator's published summary (a follower has none: it serves what it replicated).
fn published(state: &ApiState) -> Result<Arc<Published>, ApiError> {
    let Role::Coordinator { board, .. } = &state.role else {
        return Err(ApiError(
            StatusCode::NOT_FOUND,
            "a follower serves epochs, receipts, ledger snapshots and anchors; ask the coordinator for this"
                .into(),
        ));
    };
    board.get().ok_or_else(|| ApiError(StatusCode::SERVICE_UNAVAILABLE, "core unavailable".into()))
}

/// Query of the list routes.
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

/// The metrics listener's router: `/metrics` and `/v1/ready` only, nothing that reads the
/// chain's data or writes.
pub fn metrics_router(state: ApiState) -> Router {
    Router::new()
        .route("/metrics", get(status::metrics))
        .route("/v1/ready", get(status::ready))
        .fallback(|| async { ApiError(StatusCode::NOT_FOUND, "no such route".into()) })
        .with_state(state)
}

/// The router.
/// The API's routes; the expensive reads ([`HEAVY_ROUTES`]) behind `heavy`'s limits.
pub fn router(state: ApiState, max_body: usize, heavy: heavy::Limits) -> Router {
    let heavy = heavy::HeavyReads::new(heavy);
    let heavy_reads = Router::new()
        .route("/v1/receipts/{id}/proof", get(receipts::receipt_proof))
        .route("/v1/payouts", get(ledger::payouts))
        .route("/timestamp/{commitment}", get(receipts::timestamp))
        .route("/v1/receipts/{id}/audit", get(receipts::receipt_audit))
        .route("/v1/receipts/{id}/bundle", get(receipts::receipt_bundle))
        .route("/v1/receipts/{id}/ots", get(receipts::receipt_ots))
        .route_layer(axum::middleware::from_fn_with_state(heavy, heavy::limit));
    Router::new()
        .route("/v1/health", get(status::health))
        .route("/v1/ready", get(status::ready))
        .route("/metrics", get(status::metrics))
        .route("/openapi.json", get(status::openapi_json))
        .route("/v1/classes", get(tasks::classes))
        .route("/v1/tasks", post(tasks::submit_task).get(tasks::list_tasks))
        .route("/v1/tasks/{id}", get(tasks::get_task))
        .route("/v1/tasks/{id}/result", get(tasks::get_result))
        .route("/v1/workers", get(workers::list_workers))
        .route("/v1/workers/{key}", get(workers::get_worker))
        .route("/v1/epochs", get(epochs::list_epochs))
        .route("/v1/epochs/close", post(epochs::close_epoch))
        .route("/v1/epochs/{height}", get(epochs::get_epoch))
        .route("/v1/epochs/{height}/receipts", get(epochs::epoch_receipts))
        .route("/v1/epochs/{height}/ledger", get(epochs::epoch_ledger))
        .route("/v1/epochs/{height}/roster", get(epochs::epoch_roster))
        .route("/v1/epochs/{height}/history/{epoch}", get(epochs::epoch_history))
        .route("/v1/epochs/{height}/rounds", get(epochs::epoch_rounds))
        .route("/v1/anchors", get(status::anchors))
        .route("/v1/receipts/{id}", get(receipts::get_receipt))
        .route("/v1/ledger/{worker}", get(ledger::ledger))
        .route("/v1/evidence", get(status::evidence))
        .route("/v1/stats", get(status::stats))
        .merge(heavy_reads)
        .merge(crate::dashboard::routes())
        .fallback(|| async { ApiError(StatusCode::NOT_FOUND, "no such route".into()) })
        .layer(DefaultBodyLimit::max(max_body))
        .with_state(state)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn standing(latest: Option<u32>, anchored: Option<u32>) -> cairn_anchor::Standing {
        cairn_anchor::Standing {
            spendable: bitcoin::Amount::from_sat(100_000),
            latest_epoch: latest,
            anchored_epoch: anchored,
            last_anchor_height: anchored.map(|_| 100),
            pending: 0,
            fee_spent_today: bitcoin::Amount::ZERO,
        }
    }

    fn healthy() -> AnchorView {
        AnchorView {
            enabled: true,
            tip_height: Some(110),
            standing: Some(standing(Some(3), Some(3))),
            unready_after_blocks: 6,
            last_report: Some(1_000),
            report_within_secs: 300,
            ..AnchorView::default()
        }
    }

    fn problems(v: &AnchorView, now: u64) -> Vec<ReadinessProblem> {
        v.readiness(false, now).problems
    }

    #[test]
    fn readiness_names_every_reason_and_only_real_ones() {
        assert!(healthy().readiness(false, 1_010).ready);
        // Not anchoring by configuration is not a problem; stopping is.
        assert!(AnchorView::default().readiness(false, 0).ready);
        assert_eq!(problems(&AnchorView::default(), 0), vec![]);
        assert_eq!(AnchorView::default().readiness(true, 0).problems, vec![ReadinessProblem::Stopping]);
        // Before the first round.
        let starting = AnchorView { enabled: true, ..AnchorView::default() };
        assert_eq!(problems(&starting, 0), vec![ReadinessProblem::Starting]);
        // Epochs waiting, but not for long: ready; for long: stuck.
        let waiting =
            AnchorView { standing: Some(standing(Some(5), Some(3))), blocks_waiting: 5, ..healthy() };
        assert!(waiting.readiness(false, 1_010).ready);
        let stuck = AnchorView { blocks_waiting: 6, ..waiting };
        assert_eq!(
            problems(&stuck, 1_010),
            vec![ReadinessProblem::AnchorStuck { unanchored_epochs: 2, blocks_waiting: 6 }]
        );
        // A thread that stopped reporting is not taken at its last word.
        assert_eq!(problems(&healthy(), 1_301), vec![ReadinessProblem::AnchorStale { silent_secs: 301 }]);
        // The chain output spent by someone else stays reported.
        let lost = AnchorView { spent_elsewhere: Some("ab".into()), ..healthy() };
        assert_eq!(
            problems(&lost, 1_010),
            vec![ReadinessProblem::ChainOutputSpentElsewhere { txid: "ab".into() }]
        );
        // What the last round ran into comes first, and Core's own words never reach the API.
        let down = AnchorView {
            blocked: Some(ReadinessProblem::CoreUnreachable),
            last_error: Some("reading cookie file /home/op/.bitcoin/.cookie: denied".into()),
            ..healthy()
        };
        assert_eq!(problems(&down, 1_010), vec![ReadinessProblem::CoreUnreachable]);
        assert!(!down.public_error().unwrap().contains(".cookie"));
        assert!(!down.to_body().last_error.unwrap().contains("/home"));
    }
}
