//! Receipts: a receipt and its Merkle path to a signed header, and what ties it to Bitcoin:
//! the step-by-step audit against this node's Bitcoin Core, the offline proof bundle, and
//! OpenTimestamps answers (`/timestamp/{commitment}`, `.ots` and stamped-file downloads).
//!
//! Owns assembling those proofs from the node's database and chain backend. Must never vouch
//! for a receipt on the node's word alone: every answer carries what an auditor needs to check
//! it against their own Bitcoin node (`cairn audit receipt`).

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use cairn_spec::api::{AuditCheck, CheckOutcome, ErrorBody, ReceiptAudit, ReceiptProofView, ReceiptView};
use cairn_spec::{Encode, Hash32};
use serde::Deserialize;

use super::epochs::header_view;
use super::{bad, not_found, parse_hash, ApiError, ApiResult, ApiState};
use crate::lifecycle_store as ls;

/// One receipt and where it sits.
#[utoipa::path(get, path = "/v1/receipts/{id}", tag = "receipts",
    params(("id" = String, Path, description = "Receipt id, 64 hex characters")),
    responses((status = 200, description = "The receipt", body = ReceiptView),
              (status = 400, description = "Malformed id", body = ErrorBody),
              (status = 404, description = "Unknown receipt", body = ErrorBody)))]
pub(super) async fn get_receipt(State(s): State<ApiState>, Path(id): Path<String>) -> ApiResult<ReceiptView> {
    let id = parse_hash(&id, "receipt id")?;
    let store = s.store.clone();
    let (epoch, index, r) = ls::receipt(store.as_ref(), &id)?.ok_or_else(|| not_found("receipt"))?;
    let encoding = hex::encode(r.to_bytes());
    Ok(Json(ReceiptView { id, epoch, index, receipt: r, encoding }))
}

/// A receipt with its Merkle path to its epoch's signed header.
#[utoipa::path(get, path = "/v1/receipts/{id}/proof", tag = "receipts",
    params(("id" = String, Path, description = "Receipt id, 64 hex characters")),
    responses((status = 200, description = "The receipt and its inclusion proof", body = ReceiptProofView),
              (status = 400, description = "Malformed id", body = ErrorBody),
              (status = 404, description = "Unknown receipt", body = ErrorBody),
              (status = 409, description = "The receipt's epoch is not closed yet", body = ErrorBody)))]
pub(super) async fn receipt_proof(
    State(s): State<ApiState>,
    Path(id): Path<String>,
) -> ApiResult<ReceiptProofView> {
    let id = parse_hash(&id, "receipt id")?;
    let store = s.store.clone();
    let (epoch, index, r) = ls::receipt(store.as_ref(), &id)?.ok_or_else(|| not_found("receipt"))?;
    let (Some(header), Some(proof)) =
        (ls::header(store.as_ref(), epoch)?, s.trees.receipt_path(store.as_ref(), epoch, index)?)
    else {
        return Err(ApiError(StatusCode::CONFLICT, "the receipt's epoch is not closed yet".into()));
    };
    let receipt_encoding = hex::encode(r.to_bytes());
    Ok(Json(ReceiptProofView {
        receipt: r,
        receipt_encoding,
        merkle_proof: proof,
        receipts_root: header.body.receipts_root,
        header: header_view(&header, &s.anchor_view()),
    }))
}

/// Assembles receipt `id`'s proof from this node's database and its own Bitcoin Core (what
/// `/timestamp/`, the dashboard's check and its downloads share). Blocking work runs off the
/// async threads.
async fn node_proof(s: &ApiState, id: Hash32) -> Result<cairn_spec::ReceiptProof, ApiError> {
    let Some(chain) = s.chain.clone() else {
        return Err(ApiError(StatusCode::NOT_FOUND, "this node does not anchor to Bitcoin".into()));
    };
    let (store, network) = (s.store.clone(), s.network);
    let anchors = s.anchor.read().map(|a| a.claims()).unwrap_or_default();
    let source =
        crate::audit_source::StoreSource { store, anchors, name: "this node".into(), trees: s.trees.clone() };
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

/// `GET /timestamp/<commitment>`, as an OpenTimestamps calendar answers it (SPEC.md §9.1): the
/// serialized timestamp from a receipt's leaf hash to the Merkle root of the block holding its
/// anchor, once that anchor is `finality_depth` deep; 404 before, so `ots upgrade` tries again
/// later.
#[utoipa::path(get, path = "/timestamp/{commitment}", tag = "receipts",
    params(("commitment" = String, Path, description = "Receipt id (the commitment an OpenTimestamps client asks about), 64 hex characters")),
    responses((status = 200, description = "Serialized OpenTimestamps timestamp", body = Vec<u8>,
               content_type = "application/octet-stream"),
              (status = 400, description = "Malformed commitment", body = ErrorBody),
              (status = 404, description = "No proof yet (the anchor is not finality-deep), or the node does not anchor", body = ErrorBody),
              (status = 503, description = "Bitcoin Core unavailable", body = ErrorBody)))]
pub(super) async fn timestamp(
    State(s): State<ApiState>,
    Path(commitment): Path<String>,
) -> Result<Response, ApiError> {
    let id = parse_hash(&commitment, "commitment")?;
    let proof = node_proof(&s, id).await?;
    // A client caches the answer for ever: only a final anchor is worth giving.
    let tip = s.anchor.read().ok().and_then(|a| a.tip_height).unwrap_or(0);
    let depth = cairn_anchor::settle::confirmations(proof.block_height, tip);
    if depth < s.calendar_depth {
        return Err(ApiError(
            StatusCode::NOT_FOUND,
            format!("no proof yet: the anchor has {depth} of {} confirmations", s.calendar_depth),
        ));
    }
    let t = cairn_spec::ots::receipt_timestamp(&proof)
        .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    Ok(([(axum::http::header::CONTENT_TYPE, "application/octet-stream")], t.serialize()).into_response())
}

/// Query of the routes that check a receipt against Bitcoin.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct DepthQuery {
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

fn check_view(c: &cairn_audit::verify::Check) -> AuditCheck {
    use cairn_audit::verify::Outcome;
    AuditCheck {
        name: c.name.to_owned(),
        outcome: match c.outcome {
            Outcome::Pass => CheckOutcome::Pass,
            Outcome::Fail => CheckOutcome::Fail,
            Outcome::Skipped => CheckOutcome::Skipped,
        },
        detail: c.detail.clone(),
    }
}

/// The receipt checked step by step against this node's Bitcoin Core: what the dashboard
/// shows. An auditor runs the same checks against their own node (`cairn audit receipt`).
#[utoipa::path(get, path = "/v1/receipts/{id}/audit", tag = "receipts",
    params(("id" = String, Path, description = "Receipt id, 64 hex characters"),
           ("depth" = Option<u32>, Query, description = "Confirmations required, 1 to 1000 (default 1)")),
    responses((status = 200, description = "Each check and its outcome", body = ReceiptAudit),
              (status = 400, description = "Malformed id or depth", body = ErrorBody),
              (status = 404, description = "No proof yet, or the node does not anchor", body = ErrorBody),
              (status = 503, description = "Bitcoin Core unavailable", body = ErrorBody)))]
pub(super) async fn receipt_audit(
    State(s): State<ApiState>,
    Path(id): Path<String>,
    Query(q): Query<DepthQuery>,
) -> ApiResult<ReceiptAudit> {
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
    Ok(Json(ReceiptAudit {
        receipt: id,
        network,
        against: match s.anchor_view().backend {
            Some(cairn_spec::api::BitcoinBackend::EmbeddedRegtest) => {
                "this coordinator's embedded regtest chain, NOT Bitcoin Core (a demo: audit with your own node, cairn audit receipt)"
            }
            Some(cairn_spec::api::BitcoinBackend::BitcoinCore) => {
                "this coordinator's Bitcoin node (audit with your own: cairn audit receipt)"
            }
            None => "this coordinator's Bitcoin node, not yet identified (audit with your own: cairn audit receipt)",
        }
        .into(),
        min_depth,
        ok: report.ok(),
        failed_step: report.first_failure().map(|c| c.name.to_owned()),
        checks: report.checks.iter().map(check_view).collect(),
        anchor_txid,
        block_height,
    }))
}

/// A self-contained proof bundle (`cairn audit receipt --offline FILE`).
#[utoipa::path(get, path = "/v1/receipts/{id}/bundle", tag = "receipts",
    params(("id" = String, Path, description = "Receipt id, 64 hex characters"),
           ("depth" = Option<u32>, Query, description = "Confirmations included, 1 to 1000 (default 1)")),
    responses((status = 200, description = "The proof bundle, as a download", body = Vec<u8>,
               content_type = "application/octet-stream"),
              (status = 400, description = "Malformed id or depth", body = ErrorBody),
              (status = 404, description = "No proof yet, or the node does not anchor", body = ErrorBody),
              (status = 503, description = "Bitcoin Core unavailable", body = ErrorBody)))]
pub(super) async fn receipt_bundle(
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
    .map_err(|e| {
        // Reaching Core failed: its text (which can name the cookie file) stays in the log.
        if e.is_transient() {
            tracing::warn!(target: "cairn::api", error = %e, "bundle not assembled");
            ApiError(
                StatusCode::SERVICE_UNAVAILABLE,
                "cannot reach this node's Bitcoin Core; try again later".into(),
            )
        } else {
            ApiError(StatusCode::SERVICE_UNAVAILABLE, format!("bitcoin: {e}"))
        }
    })?;
    Ok(download(bundle.to_bytes(), &format!("{id}.bundle")))
}

/// Query of `/v1/receipts/{id}/ots`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct OtsQuery {
    /// `ots` (default): the detached timestamp; `stamped`: the file it timestamps (whose
    /// SHA-256 is the receipt id).
    file: Option<String>,
}

/// The OpenTimestamps proof of a receipt, or the stamped file `ots verify` checks it against.
#[utoipa::path(get, path = "/v1/receipts/{id}/ots", tag = "receipts",
    params(("id" = String, Path, description = "Receipt id, 64 hex characters"),
           ("file" = Option<String>, Query, description = "`ots` (default): the detached timestamp; `stamped`: the file it timestamps")),
    responses((status = 200, description = "The file, as a download", body = Vec<u8>,
               content_type = "application/octet-stream"),
              (status = 400, description = "Malformed id or file", body = ErrorBody),
              (status = 404, description = "No proof yet, or the node does not anchor", body = ErrorBody),
              (status = 503, description = "Bitcoin Core unavailable", body = ErrorBody)))]
pub(super) async fn receipt_ots(
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
