//! The AceData contract (`docs/providers.md` section 2): `POST /{family}/videos` per model
//! family (answered at once with a task id given `callback_url`, held open until the video is
//! done without one), `POST /{family}/tasks` to retrieve, and `{success: false, error:
//! {code, message}, trace_id}` errors.

use std::{collections::BTreeSet, sync::Arc, time::Duration};

use axum::{
    Json, Router,
    body::Bytes,
    extract::State,
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
    routing::post,
};
use reelq_core::{Catalog, ProviderKind};
use serde_json::{Value, json};

use crate::{
    contract::{
        CreateRequest, Outcome, Phase, Refusal, accept, create_request, gateway_failure, model,
        prompt, query_allowed, random_hex, read_fields, retry_in_a_second, take_callback_url,
    },
    simulator::SimState,
};

/// `/{family}/videos` and `/{family}/tasks` for every family the catalog's acedata rows
/// name (`sora` for the built-in ones).
pub(crate) fn routes(catalog: &Catalog) -> Router<Arc<SimState>> {
    let families: BTreeSet<String> = catalog
        .models_of(ProviderKind::Acedata)
        .filter_map(|rule| rule.request.family.clone())
        .collect();
    families.into_iter().fold(Router::new(), |router, family| {
        let on_create = family.clone();
        router
            .route(
                &format!("/{family}/videos"),
                post(move |state, headers, body| create_video(state, headers, body, on_create)),
            )
            .route(&format!("/{family}/tasks"), post(tasks))
    })
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
        Refusal::Invalid(message) | Refusal::Withdrawn(message) => {
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
    family: String,
) -> Response {
    state.create_received();
    match create(&state, &headers, &body, &family).await {
        Ok((task_id, true)) => {
            Json(json!({ "success": true, "task_id": task_id, "trace_id": random_hex() }))
                .into_response()
        }
        // Without a callback URL the create is held open until the video is done, and the
        // answer is the result itself, as AceData's document describes.
        Ok((task_id, false)) => loop {
            match state.task_phase(&task_id) {
                Some((_, Phase::Running)) => {
                    let step = (state.config.generation_time / 4).max(Duration::from_millis(10));
                    tokio::time::sleep(step).await;
                }
                Some((_, phase)) => {
                    break Json(result_body(&task_id, &phase).unwrap_or_default()).into_response();
                }
                None => break refusal(Refusal::Invalid("the task vanished".into())),
            }
        },
        Err(err) => refusal(err),
    }
}

/// Accepts a create; returns its task id and whether it named a callback URL.
async fn create(
    state: &Arc<SimState>,
    headers: &HeaderMap,
    body: &[u8],
    family: &str,
) -> Result<(String, bool), Refusal> {
    let (mut body, account) = create_request(state, headers, body)?;
    let callback_url = take_callback_url(&mut body, &["callback_url"]);
    let has_callback = callback_url.is_some();
    let rule = model(state, ProviderKind::Acedata, body["model"].as_str())?;
    if rule.request.family.as_deref() != Some(family) {
        return Err(Refusal::Invalid(format!(
            "model {} is not served under /{family}",
            rule.model
        )));
    }
    let prompt = prompt(&body)?;
    let shape = read_fields(rule, &body)?;
    let start = body["character_start"].as_f64().unwrap_or(0.0);
    let end = body["character_end"].as_f64().unwrap_or(f64::MAX);
    if start < 0.0 || start > end {
        return Err(Refusal::Invalid(
            "character_start and character_end are seconds, 0 <= start <= end".into(),
        ));
    }
    let request = CreateRequest {
        provider: ProviderKind::Acedata,
        body: body.clone(),
        prompt,
        callback_url,
        moderates_at_create: true,
        shape,
        account,
    };
    Ok((accept(state, request, uuid_like()).await?, has_callback))
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
