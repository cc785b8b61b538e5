//! The AceData Sora contract (`docs/providers.md` section 2): `POST /sora/videos` (answered at
//! once with a task id given `callback_url` or `async`), `POST /sora/tasks` to retrieve, and
//! `{success: false, error: {code, message}, trace_id}` errors.

use std::sync::Arc;

use axum::{
    Json, Router,
    body::Bytes,
    extract::State,
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
    routing::post,
};
use reelq_core::{Aspect, ProviderKind};
use serde_json::{Value, json};

use crate::{
    contract::{
        CreateRequest, Outcome, Phase, Refusal, accept, create_request, gateway_failure, model,
        prompt, query_allowed, random_hex, retry_in_a_second, take_callback_url,
    },
    simulator::SimState,
    video::VideoShape,
};

pub(crate) fn routes() -> Router<Arc<SimState>> {
    Router::new()
        .route("/sora/videos", post(create_video))
        .route("/sora/tasks", post(tasks))
}

fn error(status: StatusCode, code: &str, message: &str) -> Response {
    let body = json!({
        "success": false,
        "error": { "code": code, "message": message },
        "trace_id": random_hex(),
    });
    (status, Json(body)).into_response()
}

fn refusal(refusal: Refusal) -> Response {
    match refusal {
        Refusal::BadKey => error(StatusCode::UNAUTHORIZED, "invalid_token", "invalid token"),
        Refusal::AfterAccept(code) => gateway_failure(code),
        Refusal::Invalid(message) => {
            error(StatusCode::BAD_REQUEST, "api_not_implemented", &message)
        }
        Refusal::Moderated => error(
            StatusCode::BAD_REQUEST,
            "content_policy_violation",
            "the prompt violates the content policy",
        ),
        // AceData documents no credits code; the simulator answers 402 (reelq's assumption).
        Refusal::Fault(402) => error(
            StatusCode::PAYMENT_REQUIRED,
            "insufficient_balance",
            "balance used up",
        ),
        Refusal::Fault(429) => retry_in_a_second(error(
            StatusCode::TOO_MANY_REQUESTS,
            "too_many_requests",
            "slow down",
        )),
        Refusal::Fault(_) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "api_error",
            "simulated fault",
        ),
    }
}

async fn create_video(
    State(state): State<Arc<SimState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    state.create_received();
    match create(&state, &headers, &body).await {
        Ok(task_id) => {
            Json(json!({ "success": true, "task_id": task_id, "trace_id": random_hex() }))
                .into_response()
        }
        Err(err) => refusal(err),
    }
}

async fn create(
    state: &Arc<SimState>,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<String, Refusal> {
    let mut body = create_request(state, headers, body)?;
    let callback_url = take_callback_url(&mut body, &["callback_url"]);
    if callback_url.is_none() && body["async"] != json!(true) {
        return Err(Refusal::Invalid(
            "the simulator does not hold connections: give callback_url or async".into(),
        ));
    }
    let rule = model(ProviderKind::Acedata, body["model"].as_str())?;
    let prompt = prompt(&body)?;
    let duration = body["duration"].as_u64().unwrap_or(10);
    if !rule.durations.iter().any(|&d| u64::from(d) == duration) {
        return Err(Refusal::Invalid(format!(
            "duration {duration} is not supported by {}",
            rule.model
        )));
    }
    if !matches!(body["size"].as_str(), None | Some("small" | "large")) {
        return Err(Refusal::Invalid("size must be small or large".into()));
    }
    // Absent, the simulator renders landscape (the documents name no default).
    let aspect = match body["orientation"].as_str() {
        None | Some("landscape") => Aspect::Landscape,
        Some("portrait") => Aspect::Portrait,
        Some("square") => Aspect::Square,
        Some(_) => {
            return Err(Refusal::Invalid(
                "orientation must be landscape, portrait or square".into(),
            ));
        }
    };
    let start = body["character_start"].as_f64().unwrap_or(0.0);
    let end = body["character_end"].as_f64().unwrap_or(1.0);
    if !(0.0..=1.0).contains(&start) || !(0.0..=1.0).contains(&end) || start > end {
        return Err(Refusal::Invalid(
            "character_start and character_end must satisfy 0 <= start <= end <= 1".into(),
        ));
    }
    let request = CreateRequest {
        provider: ProviderKind::Acedata,
        body: body.clone(),
        prompt,
        callback_url,
        moderates_at_create: true,
        shape: VideoShape {
            duration_s: duration as u32,
            aspect,
        },
    };
    accept(state, request, uuid_like()).await
}

fn uuid_like() -> String {
    let hex = random_hex();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    )
}

/// The result shape, for a retrieved task's `response` and for the callback.
pub(crate) fn result_body(task_id: &str, phase: &Phase) -> Option<Value> {
    let trace_id = random_hex();
    match phase {
        Phase::Running => None,
        Phase::Done { result_url } => Some(json!({
            "success": true,
            "task_id": task_id,
            "trace_id": trace_id,
            "data": [{ "id": task_id, "video_url": result_url, "state": "succeeded" }],
        })),
        Phase::Ended(outcome) => {
            let (code, message) = match outcome {
                Outcome::Moderated => (
                    "content_policy_violation",
                    "the video violates the content policy",
                ),
                _ => ("generation_failed", "the generation failed"),
            };
            Some(json!({
                "success": false,
                "task_id": task_id,
                "trace_id": trace_id,
                "error": { "code": code, "message": message },
                "data": [{ "id": task_id, "state": "failed" }],
            }))
        }
    }
}

async fn tasks(State(state): State<Arc<SimState>>, headers: HeaderMap, body: Bytes) -> Response {
    if let Err(err) = query_allowed(&state, &headers) {
        return refusal(err);
    }
    let request: Value = serde_json::from_slice(&body).unwrap_or_default();
    let (Some(task_id), Some("retrieve")) = (request["id"].as_str(), request["action"].as_str())
    else {
        return refusal(Refusal::Invalid(
            "id and action \"retrieve\" are required".into(),
        ));
    };
    let Some((ProviderKind::Acedata, phase)) = state.task_phase(task_id) else {
        return error(StatusCode::NOT_FOUND, "not_found", "task not found");
    };
    let mut task = json!({ "id": task_id });
    if let Some(response) = result_body(task_id, &phase) {
        task["response"] = response;
    }
    Json(task).into_response()
}
