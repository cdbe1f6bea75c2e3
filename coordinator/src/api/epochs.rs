//! Epochs: signed headers with how each stands in Bitcoin, the receipts and ledger snapshot
//! each commits, and the operator's close.
//!
//! Owns the epoch views and their paging. Must never serve an epoch the store does not hold
//! as closed, and never close one itself (`POST /v1/epochs/close` asks the node).

use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::Json;
use cairn_spec::api::{
    EpochClosed, EpochHistory, EpochLedger, EpochList, EpochReceipts, EpochRoster, EpochRounds, EpochView,
    ErrorBody, RoundView,
};
use cairn_spec::{Encode, Object, SignedEpochHeader};

use super::{authorize, bad, limit, not_found, parse_height, AnchorView, ApiResult, ApiState, Command, Page};
use crate::lifecycle_store as ls;

/// Most receipts in one page of `/v1/epochs/{height}/receipts`.
pub const MAX_RECEIPT_PAGE: usize = 5000;

/// A signed header as the API shows it, with its anchor.
pub(super) fn header_view(h: &SignedEpochHeader, anchor: &AnchorView) -> EpochView {
    EpochView {
        height: h.body.height,
        hash: h.id(),
        header: h.clone(),
        encoding: hex::encode(h.to_bytes()),
        anchor: anchor.status_of(h.body.height),
    }
}

/// A page of epochs, oldest first.
#[utoipa::path(get, path = "/v1/epochs", tag = "epochs",
    params(("from" = Option<u32>, Query, description = "First height (default 0)"),
           ("limit" = Option<usize>, Query, description = "Page size, 1 to 500 (default 100)")),
    responses((status = 200, description = "A page of epochs", body = EpochList),
              (status = 400, description = "Malformed query", body = ErrorBody)))]
pub(super) async fn list_epochs(State(s): State<ApiState>, Query(p): Query<Page>) -> ApiResult<EpochList> {
    let n = limit(&p)?;
    let store = s.store.clone();
    let anchor = s.anchor_view();
    let epochs = ls::headers(store.as_ref(), p.from.unwrap_or(0), n)?
        .iter()
        .map(|h| header_view(h, &anchor))
        .collect();
    Ok(Json(EpochList { epochs }))
}

/// One epoch.
#[utoipa::path(get, path = "/v1/epochs/{height}", tag = "epochs",
    params(("height" = u32, Path, description = "Epoch height")),
    responses((status = 200, description = "The epoch", body = EpochView),
              (status = 400, description = "Malformed height", body = ErrorBody),
              (status = 404, description = "Unknown epoch", body = ErrorBody)))]
pub(super) async fn get_epoch(State(s): State<ApiState>, Path(height): Path<String>) -> ApiResult<EpochView> {
    let height = parse_height(&height)?;
    let store = s.store.clone();
    let h = ls::header(store.as_ref(), height)?.ok_or_else(|| not_found("epoch"))?;
    Ok(Json(header_view(&h, &s.anchor_view())))
}

/// Closes the open epoch now (operator token required).
#[utoipa::path(post, path = "/v1/epochs/close", tag = "epochs",
    security(("operatorToken" = [])),
    responses((status = 200, description = "The height closed, if any", body = EpochClosed),
              (status = 401, description = "Missing or wrong operator token", body = ErrorBody),
              (status = 404, description = "A follower takes no writes", body = ErrorBody),
              (status = 503, description = "Shutting down or core unavailable", body = ErrorBody)))]
pub(super) async fn close_epoch(State(s): State<ApiState>, headers: HeaderMap) -> ApiResult<EpochClosed> {
    authorize(&s, &headers)?;
    let closed = super::command(&s, |reply| Command::CloseEpoch { reply }).await?;
    Ok(Json(EpochClosed { closed }))
}

/// A page of an epoch's receipts, in leaf order.
#[utoipa::path(get, path = "/v1/epochs/{height}/receipts", tag = "epochs",
    params(("height" = u32, Path, description = "Epoch height"),
           ("from" = Option<u32>, Query, description = "First leaf index (default 0)"),
           ("limit" = Option<usize>, Query, description = "Page size, 1 to 5000 (default 1000)")),
    responses((status = 200, description = "A page of receipts", body = EpochReceipts),
              (status = 400, description = "Malformed height or query", body = ErrorBody),
              (status = 404, description = "Unknown epoch", body = ErrorBody)))]
pub(super) async fn epoch_receipts(
    State(s): State<ApiState>,
    Path(height): Path<String>,
    Query(p): Query<Page>,
) -> ApiResult<EpochReceipts> {
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
    Ok(Json(EpochReceipts {
        height,
        receipt_count: h.body.receipt_count,
        from,
        receipts: page.iter().map(|r| hex::encode(r.to_bytes())).collect(),
        ids: page.iter().map(|r| r.id()).collect(),
    }))
}

/// The ledger snapshot an epoch's state root commits.
#[utoipa::path(get, path = "/v1/epochs/{height}/ledger", tag = "epochs",
    params(("height" = u32, Path, description = "Epoch height")),
    responses((status = 200, description = "The ledger snapshot", body = EpochLedger),
              (status = 400, description = "Malformed height", body = ErrorBody),
              (status = 404, description = "Unknown epoch or snapshot", body = ErrorBody)))]
pub(super) async fn epoch_ledger(
    State(s): State<ApiState>,
    Path(height): Path<String>,
) -> ApiResult<EpochLedger> {
    let height = parse_height(&height)?;
    let store = s.store.clone();
    let h = ls::header(store.as_ref(), height)?.ok_or_else(|| not_found("epoch"))?;
    let entries = ls::ledger_snapshot(store.as_ref(), height)?.ok_or_else(|| not_found("ledger snapshot"))?;
    Ok(Json(EpochLedger {
        height,
        state_root: h.body.state_root,
        entries: entries.iter().map(|e| hex::encode(e.to_bytes())).collect(),
    }))
}

/// The roster an epoch's draws rank (SPEC.md §12.1), written with the header before it.
#[utoipa::path(get, path = "/v1/epochs/{height}/roster", tag = "epochs",
    params(("height" = u32, Path, description = "The epoch whose draws rank the roster (1 or more)")),
    responses((status = 200, description = "The roster", body = EpochRoster),
              (status = 400, description = "Malformed height", body = ErrorBody),
              (status = 404, description = "No header commits to a roster for that epoch here", body = ErrorBody)))]
pub(super) async fn epoch_roster(
    State(s): State<ApiState>,
    Path(height): Path<String>,
) -> ApiResult<EpochRoster> {
    let height = parse_height(&height)?;
    let store = s.store.clone();
    let roster = ls::roster(store.as_ref(), height)?.ok_or_else(|| not_found("roster"))?;
    Ok(Json(EpochRoster {
        epoch: height,
        root: roster.root(),
        count: roster.keys().len() as u32,
        encoding: hex::encode(roster.to_bytes()),
    }))
}

/// The path from an earlier epoch's header to a later header's history root (SPEC.md §5.9),
/// as a receipt proof carries it; the client checks it against the signed header.
#[utoipa::path(get, path = "/v1/epochs/{height}/history/{epoch}", tag = "epochs",
    params(("height" = u32, Path, description = "The later epoch (its header commits the history)"),
           ("epoch" = u32, Path, description = "An epoch before it")),
    responses((status = 200, description = "The path", body = EpochHistory),
              (status = 400, description = "Malformed heights, or the epoch not before the height", body = ErrorBody),
              (status = 404, description = "Unknown epoch", body = ErrorBody)))]
pub(super) async fn epoch_history(
    State(s): State<ApiState>,
    Path((height, epoch)): Path<(String, String)>,
) -> ApiResult<EpochHistory> {
    let (height, epoch) = (parse_height(&height)?, parse_height(&epoch)?);
    if epoch >= height {
        return Err(bad("the epoch must be before the height"));
    }
    let store = s.store.clone();
    let h = ls::header(store.as_ref(), height)?.ok_or_else(|| not_found("epoch"))?;
    // Reading every earlier header is a scan of the store: off the async workers.
    let hashes = tokio::task::spawn_blocking(move || -> Result<Vec<cairn_spec::Hash32>, ls::LoadError> {
        Ok(ls::headers(store.as_ref(), 0, height as usize)?.iter().map(|h| h.id()).collect())
    })
    .await
    .map_err(|_| ls::LoadError::from(crate::store::StoreError::Engine("history read stopped".into())))??;
    let proof = (hashes.len() == height as usize)
        .then(|| cairn_spec::merkle::MerkleTree::new(hashes).proof(epoch))
        .flatten()
        .ok_or_else(|| not_found("epoch"))?;
    Ok(Json(EpochHistory { height, epoch, root: h.body.history, siblings: proof.siblings }))
}

/// The scored rounds an epoch credits (SPEC.md §13.6): what `cairn audit epoch` recomputes.
#[utoipa::path(get, path = "/v1/epochs/{height}/rounds", tag = "epochs",
    params(("height" = u32, Path, description = "Epoch height")),
    responses((status = 200, description = "The rounds", body = EpochRounds),
              (status = 400, description = "Malformed height", body = ErrorBody),
              (status = 404, description = "Unknown epoch, or its rounds not held here (a follower mirrors headers, not rounds)", body = ErrorBody)))]
pub(super) async fn epoch_rounds(
    State(s): State<ApiState>,
    Path(height): Path<String>,
) -> ApiResult<EpochRounds> {
    let height = parse_height(&height)?;
    let store = s.store.clone();
    let h = ls::header(store.as_ref(), height)?.ok_or_else(|| not_found("epoch"))?;
    let rounds = ls::rounds(store.as_ref(), height)?;
    // Rounds that are not the ones the header commits are not served as if they were.
    if cairn_spec::rounds::scores_root(&rounds) != h.body.scores_root {
        return Err(not_found("rounds of this epoch"));
    }
    Ok(Json(EpochRounds {
        height,
        scores_root: h.body.scores_root,
        rounds: rounds
            .iter()
            .map(|r| RoundView { id: r.id(), round: r.clone(), encoding: hex::encode(r.to_bytes()) })
            .collect(),
    }))
}
