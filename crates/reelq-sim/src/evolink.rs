//! The evolink unified task contract (`docs/providers.md` section 3): `POST
//! /v1/videos/generations`, `GET /v1/tasks/{id}`, one task shape for answers and callbacks,
//! and `{error: {code, message, type}}` errors with a meaningful HTTP status.

use std::sync::Arc;

use axum::{
    Json, Router,
    body::Bytes,
    extract::{Path, State},
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use reelq_core::{MAX_URL_CHARS, ProviderKind};
use serde_json::{Value, json};

use crate::contracts::SimContract;
use crate::{
    contract::{
        CreateRequest, Outcome, Phase, Refusal, TaskRecord, accept, create_request,
        gateway_failure, model, prompt, query_allowed, random_hex, read_fields, retry_in_a_second,
        take_callback_url, unix_ms,
    },
    simulator::SimState,
};

pub(crate) const CONTRACT: SimContract = SimContract {
    kind: ProviderKind::Evolink,
    routes: |_| routes(),
    callback_body: |state, task_id, _| state.task_record(task_id).map(|record| task_body(&record)),
    callback_headers: crate::contracts::unsigned,
};

fn routes() -> Router<Arc<SimState>> {
    Router::new()
        .route("/v1/videos/generations", post(create_generation))
        .route("/v1/tasks/{id}", get(task))
}

fn error(status: StatusCode, code: &str, message: &str) -> Response {
    let body =
        json!({ "error": { "code": code, "message": message, "type": "invalid_request_error" } });
    (status, Json(body)).into_response()
}

fn refusal(refusal: Refusal) -> Response {
    match refusal {
        Refusal::BadKey => error(
            StatusCode::UNAUTHORIZED,
            "invalid_api_key",
            "invalid api key",
        ),
        Refusal::AfterAccept(code) => gateway_failure(code),
        Refusal::Invalid(message) | Refusal::Withdrawn(message) => {
            error(StatusCode::BAD_REQUEST, "invalid_parameters", &message)
        }
        Refusal::Moderated => error(
            StatusCode::BAD_REQUEST,
            "content_policy_violation",
            "the prompt violates the content policy",
        ),
        Refusal::Fault(402) => error(
            StatusCode::PAYMENT_REQUIRED,
            "insufficient_balance",
            "insufficient balance",
        ),
        Refusal::Fault(429) => retry_in_a_second(error(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limit_exceeded",
            "slow down",
        )),
        Refusal::Fault(455) => error(
            StatusCode::SERVICE_UNAVAILABLE,
            "service_unavailable",
            "maintenance",
        ),
        Refusal::Fault(_) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal_error",
            "simulated fault",
        ),
    }
}

async fn create_generation(
    State(state): State<Arc<SimState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    state.create_received();
    match create(&state, &headers, &body).await {
        Ok(task_id) => match state.task_record(&task_id) {
            Some(record) => Json(task_body(&record)).into_response(),
            None => error(StatusCode::NOT_FOUND, "task_not_found", "task not found"),
        },
        Err(err) => refusal(err),
    }
}

/// evolink's callback URL rule: HTTPS, no private or loopback host, at most 2048 characters.
fn check_callback_url(url: &str) -> Result<(), Refusal> {
    let host = url
        .strip_prefix("https://")
        .map(|rest| rest.split(['/', ':', '?']).next().unwrap_or_default());
    let private = |host: &str| {
        host == "localhost"
            || host.parse::<std::net::IpAddr>().is_ok_and(|ip| match ip {
                std::net::IpAddr::V4(v4) => {
                    v4.is_loopback() || v4.is_private() || v4.is_link_local()
                }
                std::net::IpAddr::V6(v6) => v6.is_loopback(),
            })
    };
    match host {
        Some(host) if !private(host) && url.len() <= MAX_URL_CHARS => Ok(()),
        _ => Err(Refusal::Invalid(
            "callback_url must be HTTPS to a public host, at most 2048 characters".into(),
        )),
    }
}

async fn create(
    state: &Arc<SimState>,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<String, Refusal> {
    let (mut body, account) = create_request(state, headers, body)?;
    let callback_url = take_callback_url(&mut body, &["callback_url"]);
    if let Some(url) = callback_url
        .as_deref()
        .filter(|_| state.config.strict_callback_urls)
    {
        check_callback_url(url)?;
    }
    let rule = model(state, ProviderKind::Evolink, body["model"].as_str())?;
    let prompt = prompt(&body)?;
    let shape = read_fields(rule, &body)?;
    let images = body["image_urls"].as_array().map_or(0, Vec::len);
    if let reelq_core::ImageRule::AtMost(max) = rule.images
        && images > max
    {
        return Err(Refusal::Invalid(format!("at most {max} image")));
    }
    let request = CreateRequest {
        provider: ProviderKind::Evolink,
        body: body.clone(),
        prompt,
        callback_url,
        moderates_at_create: true,
        shape,
        account,
    };
    let task_id = format!("task-unified-{}-{}", unix_ms() / 1000, &random_hex()[..8]);
    accept(state, request, task_id).await
}

/// The task as create, query and callback all show it.
pub(crate) fn task_body(record: &TaskRecord) -> Value {
    let duration = record.request["duration"].as_u64().unwrap_or_default();
    let mut task = json!({
        "id": record.task_id,
        "object": "video.generation.task",
        "created": record.created_s,
        "model": record.request["model"],
        "type": "video",
        // The documented task holds `error: null` until it fails.
        "error": null,
        "task_info": {
            "can_cancel": matches!(record.phase, Phase::Running),
            "estimated_time": 300,
            "video_duration": duration,
        },
        "usage": {
            "billing_rule": "per_second",
            "credits_reserved": duration * 10,
            "user_group": "default",
        },
    });
    let (status, progress) = match &record.phase {
        Phase::Running => ("processing", 50),
        Phase::Done { result_url } => {
            task["results"] = json!([result_url]);
            ("completed", 100)
        }
        Phase::Ended(outcome) => {
            let (code, message) = match outcome {
                Outcome::Moderated => (
                    "content_policy_violation",
                    "the video violates the content policy",
                ),
                _ => ("generation_failed", "the generation failed"),
            };
            task["error"] = json!({ "code": code, "message": message });
            ("failed", 100)
        }
    };
    task["status"] = json!(status);
    task["progress"] = json!(progress);
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
        Some(record) if record.provider == ProviderKind::Evolink => {
            Json(task_body(&record)).into_response()
        }
        _ => error(StatusCode::NOT_FOUND, "task_not_found", "task not found"),
    }
}
