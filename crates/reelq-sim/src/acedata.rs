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

use crate::contracts::SimContract;
use crate::{
    contract::{
        CreateRequest, Outcome, Phase, Refusal, accept, create_request, gateway_failure, model,
        prompt, query_allowed, random_hex, read_fields, retry_in_a_second, take_callback_url,
        unix_ms,
    },
    simulator::SimState,
};

/// `/{family}/videos` and `/{family}/tasks` for every family the catalog's acedata rows
/// name (`sora` for the built-in ones).
pub(crate) const CONTRACT: SimContract = SimContract {
    kind: ProviderKind::Acedata,
    routes,
    callback_body: |state, task_id, phase| result_body(task_id, phase, &family_of(state, task_id)),
    callback_headers: crate::contracts::unsigned,
};

fn routes(catalog: &Catalog) -> Router<Arc<SimState>> {
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
        // AceData's published documents: 403 `used_up`.
        Refusal::Fault(402) => error(
            StatusCode::FORBIDDEN,
            "used_up",
            "Your balance is not sufficient for current request, please buy more in Ace Data Cloud.",
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
                    let result = result_body(&task_id, &phase, &family);
                    break Json(result.unwrap_or_default()).into_response();
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

/// The family a task's model is served under (`veo`, `kling`, `sora`).
pub(crate) fn family_of(state: &SimState, task_id: &str) -> String {
    let model = state
        .task_record(task_id)
        .and_then(|record| record.request["model"].as_str().map(str::to_owned))
        .unwrap_or_default();
    state
        .config
        .catalog
        .rule(ProviderKind::Acedata, &model)
        .and_then(|rule| rule.request.family.clone())
        .unwrap_or_default()
}

/// The result shape, for a retrieved task's `response` and for the callback: Kling's is
/// flat (`state: "succeed"`, the video's fields at the top), Sora's and Veo's list `data`.
pub(crate) fn result_body(task_id: &str, phase: &Phase, family: &str) -> Option<Value> {
    let trace_id = random_hex();
    match phase {
        Phase::Running => None,
        Phase::Done { result_url } if family == "kling" => Some(json!({
            "success": true,
            "task_id": task_id,
            "trace_id": trace_id,
            "state": "succeed",
            "video_id": random_hex(),
            "video_url": result_url,
            "duration": "5.041",
        })),
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
            let mut result = json!({
                "success": false,
                "task_id": task_id,
                "trace_id": trace_id,
                "error": { "code": code, "message": message },
            });
            match family {
                "kling" => result["state"] = json!("failed"),
                _ => result["data"] = json!([{ "id": task_id, "state": "failed" }]),
            }
            Some(result)
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
    // A task AceData does not have is an empty object (its Kling tasks document).
    let (Some((ProviderKind::Acedata, phase)), Some(record)) =
        (state.task_phase(task_id), state.task_record(task_id))
    else {
        return Json(json!({})).into_response();
    };
    // The task record, as the document's `KlingTaskRecord` has it.
    let mut task = json!({
        "id": task_id,
        "type": "videos",
        "trace_id": random_hex(),
        "created_at": record.created_s as f64,
        "started_at": record.created_s as f64,
        "request": record.request,
        "finished_at": null,
    });
    if let Some(response) = result_body(task_id, &phase, &family_of(&state, task_id)) {
        task["response"] = response;
        task["finished_at"] = json!(unix_ms() as f64 / 1000.0);
    }
    Json(task).into_response()
}
