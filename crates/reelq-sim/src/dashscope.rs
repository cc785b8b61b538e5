//! Alibaba Cloud Model Studio's asynchronous video tasks (DashScope) as its pages describe
//! them (`crates/reelq-providers/src/dashscope.rs` cites them): a create that insists on
//! `X-DashScope-Async: enable`, `GET /api/v1/tasks/{id}` (`UNKNOWN` for a task it does not
//! have), a cancel of a `PENDING` task (400 `UnsupportedOperation` otherwise), the account's
//! list, `{request_id, code, message}` errors, and no callbacks.
//!
//! The simulator does not model DashScope's queue: an unfinished task reads `PENDING` in its
//! first second and `RUNNING` after.

use std::sync::Arc;

use axum::{
    Json, Router,
    body::Bytes,
    extract::{Path, Query, State},
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use reelq_core::ProviderKind;
use serde_json::{Value, json};

use crate::{
    contract::{
        CreateRequest, Outcome, Page, Phase, Refusal, TaskRecord, accept, create_request,
        gateway_failure, model, prompt, query_allowed, random_hex, read_fields, unix_ms,
    },
    contracts::SimContract,
    simulator::SimState,
};

pub(crate) const CONTRACT: SimContract = SimContract {
    kind: ProviderKind::Dashscope,
    routes: |_| routes(),
    callback_body: |_, _, _| None,
    callback_headers: crate::contracts::unsigned,
};

fn routes() -> Router<Arc<SimState>> {
    Router::new()
        .route(
            "/api/v1/services/aigc/video-generation/video-synthesis",
            post(create_answer),
        )
        .route("/api/v1/tasks/", get(list))
        .route("/api/v1/tasks/{id}", get(task))
        .route("/api/v1/tasks/{id}/cancel", post(cancel))
}

fn error(status: StatusCode, code: &str, message: &str) -> Response {
    let body = json!({ "request_id": request_id(), "code": code, "message": message });
    (status, Json(body)).into_response()
}

fn request_id() -> String {
    let hex = random_hex();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

fn refusal(refusal: Refusal) -> Response {
    match refusal {
        Refusal::BadKey => error(
            StatusCode::UNAUTHORIZED,
            "InvalidApiKey",
            "Invalid API-key provided.",
        ),
        Refusal::AfterAccept(code) => gateway_failure(code),
        Refusal::Invalid(message) | Refusal::Withdrawn(message) => {
            error(StatusCode::BAD_REQUEST, "InvalidParameter", &message)
        }
        Refusal::Moderated => error(
            StatusCode::BAD_REQUEST,
            "DataInspectionFailed",
            "Input data may contain inappropriate content.",
        ),
        Refusal::Fault(402) => error(
            StatusCode::BAD_REQUEST,
            "Arrearage",
            "Access denied, please make sure your account is in good standing.",
        ),
        Refusal::Fault(429) => error(
            StatusCode::TOO_MANY_REQUESTS,
            "Throttling.RateQuota",
            "Requests rate limit exceeded, please try again later.",
        ),
        Refusal::Fault(455) => error(
            StatusCode::SERVICE_UNAVAILABLE,
            "ModelUnavailable",
            "Model is unavailable, please try again later.",
        ),
        Refusal::Fault(_) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "InternalError",
            "An internal error has occured, please try again later.",
        ),
    }
}

async fn create_answer(
    State(state): State<Arc<SimState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    state.create_received();
    if headers
        .get("x-dashscope-async")
        .is_none_or(|value| value != "enable")
    {
        return error(
            StatusCode::FORBIDDEN,
            "AccessDenied",
            "current user api does not support synchronous calls",
        );
    }
    match create(&state, &headers, &body).await {
        Ok(task_id) => Json(json!({
            "output": { "task_status": "PENDING", "task_id": task_id },
            "request_id": request_id(),
        }))
        .into_response(),
        Err(err) => refusal(err),
    }
}

async fn create(
    state: &Arc<SimState>,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<String, Refusal> {
    let (body, account) = create_request(state, headers, body)?;
    let rule = model(state, ProviderKind::Dashscope, body["model"].as_str())?;
    // The row's fields: `parameters`, with the prompt and image from `input`.
    let mut fields = body["parameters"].clone();
    if fields.is_null() {
        fields = json!({});
    }
    let object = fields
        .as_object_mut()
        .ok_or_else(|| Refusal::Invalid("parameters must be an object".into()))?;
    for (name, value) in body["input"].as_object().into_iter().flatten() {
        object.insert(name.clone(), value.clone());
    }
    let prompt = prompt(&fields)?.to_owned();
    let shape = read_fields(rule, &fields)?;
    let request = CreateRequest {
        provider: ProviderKind::Dashscope,
        body: body.clone(),
        prompt: &prompt,
        callback_url: None,
        moderates_at_create: true,
        shape,
        account,
    };
    accept(state, request, request_id()).await
}

/// DashScope's time format, `YYYY-MM-DD HH:mm:ss.SSS` (RFC 3339's, with a space and no zone).
fn stamp(unix_ms: u64) -> String {
    let time = std::time::UNIX_EPOCH + std::time::Duration::from_millis(unix_ms);
    humantime::format_rfc3339_millis(time)
        .to_string()
        .replace('T', " ")
        .trim_end_matches('Z')
        .to_owned()
}

fn status_of(record: &TaskRecord) -> &'static str {
    match &record.phase {
        Phase::Running if unix_ms() / 1000 <= record.created_s + 1 => "PENDING",
        Phase::Running => "RUNNING",
        Phase::Done { .. } => "SUCCEEDED",
        Phase::Ended(Outcome::Cancelled) => "CANCELED",
        Phase::Ended(_) => "FAILED",
    }
}

/// The task as `GET /tasks/{id}` answers it.
fn task_body(record: &TaskRecord) -> Value {
    let submitted_ms = record.created_s * 1000;
    let mut output = json!({
        "task_id": record.task_id,
        "task_status": status_of(record),
        "submit_time": stamp(submitted_ms),
        "scheduled_time": stamp(submitted_ms + 500),
        "orig_prompt": record.request["input"]["prompt"],
    });
    let mut answer = json!({ "request_id": request_id() });
    match &record.phase {
        Phase::Done { result_url } => {
            output["end_time"] = json!(stamp(unix_ms()));
            output["video_url"] = json!(result_url);
            let duration = record.request["parameters"]["duration"]
                .as_u64()
                .unwrap_or(5);
            answer["usage"] = json!({
                "duration": duration as f64,
                "size": record.request["parameters"]["size"].as_str().unwrap_or("1280*720"),
                "input_video_duration": 0,
                "output_video_duration": duration,
                "video_count": 1,
                "SR": 720,
            });
        }
        Phase::Ended(Outcome::Moderated) => {
            output["end_time"] = json!(stamp(unix_ms()));
            output["code"] = json!("DataInspectionFailed");
            output["message"] = json!("Output data may contain inappropriate content.");
        }
        Phase::Ended(Outcome::Failed) => {
            output["end_time"] = json!(stamp(unix_ms()));
            output["code"] = json!("InternalError.Algo");
            output["message"] = json!("the generation failed");
        }
        _ => {}
    }
    answer["output"] = output;
    answer
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
        Some(record) if record.provider == ProviderKind::Dashscope => {
            Json(task_body(&record)).into_response()
        }
        // A task DashScope does not have (or no longer has: 24 hours passed).
        _ => Json(json!({
            "request_id": request_id(),
            "output": { "task_id": id, "task_status": "UNKNOWN" },
        }))
        .into_response(),
    }
}

/// The account's tasks, newest first, a page at a time (no `output` wrapper).
async fn list(
    State(state): State<Arc<SimState>>,
    headers: HeaderMap,
    Query(page): Query<Page>,
) -> Response {
    if let Err(err) = query_allowed(&state, &headers) {
        return refusal(err);
    }
    let (records, total) = page.of(&state, ProviderKind::Dashscope, 100);
    let size = page.size(100);
    let data: Vec<Value> = records
        .iter()
        .map(|record| {
            json!({
                "task_id": record.task_id,
                "model_name": record.request["model"],
                "gmt_create": record.created_s * 1000,
                "start_time": record.created_s * 1000 + 500,
                "status": status_of(record),
                "region": "ap-southeast-1",
                "request_id": request_id(),
            })
        })
        .collect();
    Json(json!({
        "total": total,
        "total_page": total.div_ceil(size).max(1),
        "page_no": page.number(),
        "page_size": size,
        "request_id": request_id(),
        "data": data,
    }))
    .into_response()
}

/// Cancels a `PENDING` task.
async fn cancel(
    State(state): State<Arc<SimState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    if let Err(err) = query_allowed(&state, &headers) {
        return refusal(err);
    }
    match state
        .task_record(&id)
        .filter(|record| record.provider == ProviderKind::Dashscope)
    {
        Some(record) if status_of(&record) == "PENDING" => {
            state.cancel_task(&id);
            Json(json!({ "request_id": request_id() })).into_response()
        }
        _ => error(
            StatusCode::BAD_REQUEST,
            "UnsupportedOperation",
            "Failed to cancel the task, please confirm if the task is in PENDING status.",
        ),
    }
}
