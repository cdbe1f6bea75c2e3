//! Tasks: the classes served, submissions, the public task view and accepted results.
//!
//! Owns handing a checked submission to the node (`Command::SubmitTask`: the node draws the
//! randomness and the lifecycle builds the task and mixes canaries in), and a task record's
//! public view. Must never show a canary's answer or which slot is an audit replica, and never
//! decide whether a task is accepted.

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use cairn_spec::api::{
    ClassList, ClassView, ErrorBody, SlotView, SubmitTask, TaskCreated, TaskList, TaskPhase, TaskResult,
    TaskView,
};
use cairn_spec::{Encode, Hash32, Payload};

use super::{
    authorize, bad, limit, not_found, parse_hash, published, ApiError, ApiResult, ApiState, Command, Page,
};
use crate::lifecycle::{Phase, TaskRecord};
use crate::lifecycle_store as ls;

/// The task classes this coordinator serves.
#[utoipa::path(get, path = "/v1/classes", tag = "tasks",
    responses((status = 200, description = "Task classes", body = ClassList),
              (status = 404, description = "A follower serves no classes", body = ErrorBody)))]
pub(super) async fn classes(State(s): State<ApiState>) -> ApiResult<ClassList> {
    let classes = published(&s)?
        .classes
        .iter()
        .map(|(id, c)| ClassView { id: *id, class: c.clone(), encoding: hex::encode(c.to_bytes()) })
        .collect();
    Ok(Json(ClassList { classes }))
}

/// Submits a task (operator token required).
#[utoipa::path(post, path = "/v1/tasks", tag = "tasks", request_body = SubmitTask,
    security(("operatorToken" = [])),
    responses((status = 201, description = "Task accepted", body = TaskCreated),
              (status = 400, description = "Malformed body", body = ErrorBody),
              (status = 401, description = "Missing or wrong operator token", body = ErrorBody),
              (status = 404, description = "Unknown class, or a follower", body = ErrorBody),
              (status = 409, description = "Refused by the lifecycle", body = ErrorBody),
              (status = 503, description = "Shutting down or core unavailable", body = ErrorBody)))]
pub(super) async fn submit_task(
    State(s): State<ApiState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    authorize(&s, &headers)?;
    let submission = super::body::submission(&body).map_err(bad)?;
    let id =
        super::command(&s, |reply| Command::SubmitTask { submission: Box::new(submission), reply }).await?;
    Ok((StatusCode::CREATED, Json(TaskCreated { id })).into_response())
}

/// The public view of a task: no canary answer, no audit flags; with its encoding when
/// `full` (one task's view, not a page's).
fn task_view(r: &TaskRecord, full: bool) -> TaskView {
    let assignments = r
        .assignments
        .iter()
        .map(|a| SlotView {
            worker: a.worker,
            committed: a.commitment.is_some(),
            revealed: a.revealed.is_some(),
            verdict: a.verdict,
            receipt: a.receipt,
        })
        .collect();
    let (phase, result_hash, failure) = match &r.phase {
        Phase::Commit => (TaskPhase::Open, None, None),
        Phase::Reveal { .. } => (TaskPhase::Revealing, None, None),
        Phase::Decided { result, .. } => (TaskPhase::Decided, Some(*result), None),
        Phase::Failed { reason, .. } => (TaskPhase::Failed, None, Some(reason.clone())),
    };
    TaskView {
        id: r.id,
        class: r.task.class,
        requester: r.task.requester,
        units: r.task.units,
        budget_sats: r.task.budget_sats,
        accepted_at: r.accepted_at,
        input_hash: r.task.input.content_hash(),
        input_size: r.task.input.size(),
        phase,
        result_hash,
        failure,
        assignments,
        encoding: full.then(|| hex::encode(cairn_spec::Encode::to_bytes(&r.task))),
    }
}

fn load_task(s: &ApiState, id: &Hash32) -> Result<TaskRecord, ApiError> {
    published(s)?;
    ls::task(s.store.as_ref(), id)?.ok_or_else(|| not_found("task"))
}

/// Query of `GET /v1/tasks/{id}`.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct WaitQuery {
    /// Wait this long (ms, at most `MAX_WAIT_MS`) for the task to be decided or to fail.
    wait_ms: Option<u64>,
}

/// The longest a `GET /v1/tasks/{id}?wait_ms=` waits: under common proxies' idle timeouts.
pub const MAX_WAIT_MS: u64 = 30_000;

/// One task; with `wait_ms`, answered as soon as it is decided or failed (each write on disk
/// wakes the wait), or with its phase then when the time is up or the node stops: a requester
/// hears of its result within milliseconds, without polling. At most
/// `published::MAX_WAITERS` wait at once; beyond them the task is answered as it stands.
#[utoipa::path(get, path = "/v1/tasks/{id}", tag = "tasks",
    params(("id" = String, Path, description = "Task id, 64 hex characters"),
           ("wait_ms" = Option<u64>, Query, description = "Wait up to this many ms (at most 30000) for the task to be decided or to fail")),
    responses((status = 200, description = "The task (decided, failed, or as it stands when the wait is over)", body = TaskView),
              (status = 400, description = "Malformed id or wait above 30000 ms", body = ErrorBody),
              (status = 404, description = "Unknown task", body = ErrorBody)))]
pub(super) async fn get_task(
    State(s): State<ApiState>,
    Path(id): Path<String>,
    Query(q): Query<WaitQuery>,
) -> ApiResult<TaskView> {
    let id = parse_hash(&id, "task id")?;
    let wait = q.wait_ms.unwrap_or(0);
    if wait > MAX_WAIT_MS {
        return Err(bad(format!("wait_ms is at most {MAX_WAIT_MS}")));
    }
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_millis(wait);
    // Subscribed before the first read: a write between the read and the wait still wakes it.
    let mut written = match &s.role {
        super::Role::Coordinator { board, .. } if wait > 0 => board.watch(),
        _ => None,
    };
    loop {
        let rec = load_task(&s, &id)?;
        let done = matches!(rec.phase, Phase::Decided { .. } | Phase::Failed { .. });
        let Some((rx, _place)) = written.as_mut().filter(|_| !done && !s.is_stopping()) else {
            return Ok(Json(task_view(&rec, true)));
        };
        // Woken by a write, or every half second to see whether the node is stopping.
        let tick = (tokio::time::Instant::now() + std::time::Duration::from_millis(500)).min(deadline);
        match tokio::time::timeout_at(tick, rx.changed()).await {
            Ok(Ok(())) => {}
            Err(_) if tick < deadline => {}
            // Time is up: the task as it stands.
            _ => return Ok(Json(task_view(&load_task(&s, &id)?, true))),
        }
    }
}

/// The accepted result of a decided task, for its requester (operator token required): a
/// result served to anyone would hand workers the answers of decided canaries to remember.
#[utoipa::path(get, path = "/v1/tasks/{id}/result", tag = "tasks",
    security(("operatorToken" = [])),
    params(("id" = String, Path, description = "Task id, 64 hex characters")),
    responses((status = 200, description = "The accepted result", body = TaskResult),
              (status = 400, description = "Malformed id", body = ErrorBody),
              (status = 401, description = "Missing or wrong operator token", body = ErrorBody),
              (status = 404, description = "Unknown task or result not inline", body = ErrorBody),
              (status = 409, description = "No accepted result yet", body = ErrorBody)))]
pub(super) async fn get_result(
    State(s): State<ApiState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> ApiResult<TaskResult> {
    super::operator(&s, &headers)?;
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
                return Ok(Json(TaskResult {
                    task: id,
                    result_hash: result,
                    result_hex: hex::encode(bytes),
                }));
            }
        }
    }
    Err(not_found("result"))
}

/// A page of tasks, by id.
#[utoipa::path(get, path = "/v1/tasks", tag = "tasks",
    params(("after" = Option<String>, Query, description = "Task id to list after"),
           ("limit" = Option<usize>, Query, description = "Page size, 1 to 500 (default 100)")),
    responses((status = 200, description = "A page of tasks", body = TaskList),
              (status = 400, description = "Malformed query", body = ErrorBody)))]
pub(super) async fn list_tasks(State(s): State<ApiState>, Query(p): Query<Page>) -> ApiResult<TaskList> {
    let n = limit(&p)?;
    let after = p.after.as_deref().map(|a| parse_hash(a, "after")).transpose()?;
    let store = s.store.clone();
    let tasks = ls::tasks(store.as_ref(), after.as_ref(), n)?.iter().map(|t| task_view(t, false)).collect();
    Ok(Json(TaskList { tasks }))
}
