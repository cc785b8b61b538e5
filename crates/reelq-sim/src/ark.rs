//! BytePlus ModelArk's content generation tasks as its reference describes them
//! (`crates/reelq-providers/src/ark.rs` cites the pages): `POST /api/v3/contents/generations/
//! tasks` with `content[]`, `GET` one task or the list, `DELETE` (a queued task is cancelled),
//! `{error: {code, message, param, type}}` errors, and callbacks that carry the task,
//! unsigned.
//!
//! The simulator does not model Ark's queue: an unfinished task reads `queued` in its first
//! second and `running` after, so a cancel right after a create stops it and a later one
//! cannot (400; Ark documents no code for it). A `DELETE` of a finished task answers as Ark
//! does but keeps the record.

use std::sync::Arc;

use axum::{
    Json, Router,
    body::Bytes,
    extract::{Path, Query, State},
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
    routing::get,
};
use reelq_core::ProviderKind;
use serde_json::{Value, json};

use crate::{
    contract::{
        CreateRequest, Outcome, Page, Phase, Refusal, TaskRecord, accept, create_request,
        gateway_failure, model, query_allowed, random_hex, read_fields, take_callback_url, unix_ms,
    },
    contracts::SimContract,
    simulator::SimState,
};

pub(crate) const CONTRACT: SimContract = SimContract {
    kind: ProviderKind::Ark,
    routes: |_| routes(),
    callback_body: |state, task_id, _| state.task_record(task_id).map(|record| task_body(&record)),
    callback_headers: crate::contracts::unsigned,
};

const TASKS: &str = "/api/v3/contents/generations/tasks";

fn routes() -> Router<Arc<SimState>> {
    Router::new()
        .route(TASKS, get(list).post(create_answer))
        .route(&format!("{TASKS}/{{id}}"), get(task).delete(cancel))
}

fn error(status: StatusCode, code: &str, kind: &str, message: &str) -> Response {
    let body = json!({ "error": { "code": code, "message": message, "param": "", "type": kind } });
    (status, Json(body)).into_response()
}

fn refusal(refusal: Refusal) -> Response {
    match refusal {
        Refusal::BadKey => error(
            StatusCode::UNAUTHORIZED,
            "AuthenticationError",
            "Unauthorized",
            "the API key is missing or invalid",
        ),
        Refusal::AfterAccept(code) => gateway_failure(code),
        Refusal::Invalid(message) | Refusal::Withdrawn(message) => error(
            StatusCode::BAD_REQUEST,
            "InvalidParameter",
            "BadRequest",
            &message,
        ),
        Refusal::Moderated => error(
            StatusCode::BAD_REQUEST,
            "InputTextSensitiveContentDetected",
            "BadRequest",
            "the request failed because the input text may contain sensitive information",
        ),
        Refusal::Fault(402) => error(
            StatusCode::FORBIDDEN,
            "AccountOverdueError",
            "Forbidden",
            "the account is overdue",
        ),
        Refusal::Fault(429) => error(
            StatusCode::TOO_MANY_REQUESTS,
            "RateLimitExceeded.EndpointRPMExceeded",
            "TooManyRequests",
            "the request rate exceeds the limit",
        ),
        Refusal::Fault(_) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "InternalServiceError",
            "InternalServerError",
            "the service encountered an unexpected internal error",
        ),
    }
}

async fn create_answer(
    State(state): State<Arc<SimState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    state.create_received();
    match create(&state, &headers, &body).await {
        Ok(task_id) => Json(json!({ "id": task_id })).into_response(),
        Err(err) => refusal(err),
    }
}

async fn create(
    state: &Arc<SimState>,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<String, Refusal> {
    let (mut body, account) = create_request(state, headers, body)?;
    let callback_url = take_callback_url(&mut body, &["callback_url"]);
    let rule = model(state, ProviderKind::Ark, body["model"].as_str())?;
    // The request's fields as the catalog row names them: the settings beside `content`, the
    // prompt and the first frame from it.
    let mut fields = body.clone();
    let object = fields
        .as_object_mut()
        .ok_or_else(|| Refusal::Invalid("the body is not an object".into()))?;
    object.remove("model");
    let content = object.remove("content");
    let items = content
        .as_ref()
        .and_then(Value::as_array)
        .ok_or_else(|| Refusal::Invalid("content is required".into()))?;
    for item in items {
        match (item["type"].as_str(), item["role"].as_str()) {
            (Some("text"), _) => {
                object.insert("prompt".into(), item["text"].clone());
            }
            (Some("image_url"), None | Some("first_frame")) => {
                object.insert("image".into(), item["image_url"]["url"].clone());
            }
            _ => {
                return Err(Refusal::Invalid(format!(
                    "content item {item} is not supported"
                )));
            }
        }
    }
    let prompt = fields["prompt"]
        .as_str()
        .filter(|prompt| !prompt.trim().is_empty())
        .ok_or_else(|| Refusal::Invalid("a text content item is required".into()))?
        .to_owned();
    let shape = read_fields(rule, &fields)?;
    let request = CreateRequest {
        provider: ProviderKind::Ark,
        body: body.clone(),
        prompt: &prompt,
        callback_url,
        moderates_at_create: true,
        shape,
        account,
    };
    let task_id = format!("cgt-{}-{}", unix_ms() / 1000, &random_hex()[..5]);
    accept(state, request, task_id).await
}

/// The task as retrieve, list and callbacks show it.
fn task_body(record: &TaskRecord) -> Value {
    let now_s = unix_ms() / 1000;
    let duration = record.request["duration"].as_u64().unwrap_or(5);
    let mut task = json!({
        "id": record.task_id,
        "model": record.request["model"],
        "error": null,
        "content": null,
        "seed": 42,
        "resolution": record.request.get("resolution").cloned().unwrap_or(json!("720p")),
        "ratio": record.request.get("ratio").cloned().unwrap_or(json!("16:9")),
        "duration": duration,
        "framespersecond": 24,
        "service_tier": "default",
        "execution_expires_after": 172800,
        "created_at": record.created_s,
        "updated_at": now_s,
    });
    let status = match &record.phase {
        Phase::Running if now_s <= record.created_s + 1 => "queued",
        Phase::Running => "running",
        Phase::Done { result_url } => {
            task["content"] = json!({ "video_url": result_url });
            let tokens = 1280 * 720 * (24 * duration + 1) / 1024;
            task["usage"] = json!({ "completion_tokens": tokens, "total_tokens": tokens });
            "succeeded"
        }
        Phase::Ended(Outcome::Cancelled) => "cancelled",
        Phase::Ended(Outcome::Moderated) => {
            task["error"] = json!({
                "code": "OutputVideoSensitiveContentDetected",
                "message": "the generated video may contain sensitive information",
            });
            "failed"
        }
        Phase::Ended(_) => {
            task["error"] = json!({
                "code": "InternalServiceError",
                "message": "the generation failed",
            });
            "failed"
        }
    };
    task["status"] = json!(status);
    task
}

async fn task(
    State(state): State<Arc<SimState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    if let Err(err) = query_allowed(&state, &headers) {
        return refusal(err);
    }
    match state.task_record(&id) {
        Some(record) if record.provider == ProviderKind::Ark => {
            Json(task_body(&record)).into_response()
        }
        _ => not_found(&id),
    }
}

fn not_found(id: &str) -> Response {
    error(
        StatusCode::NOT_FOUND,
        "NotFound.TaskId",
        "NotFound",
        &format!("the task {id} was not found"),
    )
}

/// The account's tasks, newest first, a page at a time.
async fn list(
    State(state): State<Arc<SimState>>,
    headers: HeaderMap,
    Query(page): Query<Page>,
) -> Response {
    if let Err(err) = query_allowed(&state, &headers) {
        return refusal(err);
    }
    let (records, total) = page.of(&state, ProviderKind::Ark, 500);
    let items: Vec<Value> = records.iter().map(task_body).collect();
    Json(json!({ "total": total, "items": items })).into_response()
}

/// Cancels a queued task; a running one cannot be.
async fn cancel(
    State(state): State<Arc<SimState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    if let Err(err) = query_allowed(&state, &headers) {
        return refusal(err);
    }
    let Some(record) = state
        .task_record(&id)
        .filter(|r| r.provider == ProviderKind::Ark)
    else {
        return not_found(&id);
    };
    match task_body(&record)["status"].as_str() {
        Some("queued") => {
            state.cancel_task(&id);
            Json(json!({})).into_response()
        }
        Some("running") | Some("cancelled") => error(
            StatusCode::BAD_REQUEST,
            "InvalidParameter",
            "BadRequest",
            "a running or cancelled task cannot be cancelled or deleted",
        ),
        _ => Json(json!({})).into_response(),
    }
}
