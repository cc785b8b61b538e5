//! The Gemini API's Veo contract, as Google's "Generate videos with Veo" page and the
//! long-running operations reference describe it: `POST
//! /v1beta/models/{model}:predictLongRunning` (key in `x-goog-api-key`) with `{"instances":
//! [{"prompt"}], "parameters"}`, answered with an operation `{"name":
//! "models/{model}/operations/{id}"}`; `GET /v1beta/models/{model}/operations/{id}` until
//! `done`, then `response.generateVideoResponse.generatedSamples[].video.uri`, a file on the
//! API host (`/v1beta/files/{id}:download?alt=media`, with the key); `GET /v1beta/models`;
//! Google's errors `{"error": {code, message, status}}` (a bad key is 400 `INVALID_ARGUMENT`
//! "API key not valid"). No callbacks. The safety filters act during generation: the
//! operation ends with `raiMediaFilteredCount` and no video.

use std::sync::Arc;

use axum::{
    Json, Router,
    body::Bytes,
    extract::{Path, State},
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use reelq_core::ProviderKind;
use serde_json::{Value, json};

use crate::contracts::SimContract;
use crate::{
    contract::{
        CreateRequest, KeyIn, Outcome, Phase, Refusal, TaskRecord, accept, authorized_in,
        create_request_in, gateway_failure, model, prompt, query_allowed_in, random_hex,
        read_fields, retry_in_a_second, serve_video,
    },
    simulator::SimState,
};

const KEY: KeyIn = KeyIn::Header("x-goog-api-key");

/// The Gemini API calls nobody back.
pub(crate) const CONTRACT: SimContract = SimContract {
    kind: ProviderKind::Gemini,
    routes: |_| routes(),
    callback_body: |_, _, _| None,
    callback_headers: crate::contracts::unsigned,
};

fn routes() -> Router<Arc<SimState>> {
    Router::new()
        .route("/v1beta/models", get(models))
        .route("/v1beta/models/{model_call}", post(predict_long_running))
        .route("/v1beta/models/{model}/operations/{id}", get(operation))
        .route("/v1beta/files/{file_call}", get(download))
}

fn error(status: StatusCode, google_status: &str, message: &str) -> Response {
    let body = json!({ "error": { "code": status.as_u16(), "message": message, "status": google_status } });
    (status, Json(body)).into_response()
}

fn refusal(refusal: Refusal) -> Response {
    match refusal {
        Refusal::BadKey => error(
            StatusCode::BAD_REQUEST,
            "INVALID_ARGUMENT",
            "API key not valid. Please pass a valid API key.",
        ),
        Refusal::AfterAccept(code) => gateway_failure(code),
        Refusal::Invalid(message) | Refusal::Withdrawn(message) => {
            error(StatusCode::BAD_REQUEST, "INVALID_ARGUMENT", &message)
        }
        Refusal::Moderated => error(
            StatusCode::BAD_REQUEST,
            "INVALID_ARGUMENT",
            "The prompt could not be submitted: it violates Google's Responsible AI practices.",
        ),
        // Google's errors page: an empty prepay balance is 402 RESOURCE_EXHAUSTED.
        Refusal::Fault(402) => error(
            StatusCode::PAYMENT_REQUIRED,
            "RESOURCE_EXHAUSTED",
            "Your Prepay credit balance is depleted. Please add credits in AI Studio.",
        ),
        Refusal::Fault(429) => retry_in_a_second(error(
            StatusCode::TOO_MANY_REQUESTS,
            "RESOURCE_EXHAUSTED",
            "You exceeded your current quota.",
        )),
        Refusal::Fault(_) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "INTERNAL",
            "An internal error has occurred.",
        ),
    }
}

async fn models(State(state): State<Arc<SimState>>, headers: HeaderMap) -> Response {
    if let Err(err) = authorized_in(&state, &headers, KEY) {
        return refusal(err);
    }
    let models: Vec<Value> = state
        .config
        .catalog
        .models_of(ProviderKind::Gemini)
        .map(|rule| {
            json!({ "name": format!("models/{}", rule.model), "supportedGenerationMethods": ["predictLongRunning"] })
        })
        .collect();
    Json(json!({ "models": models })).into_response()
}

async fn predict_long_running(
    State(state): State<Arc<SimState>>,
    Path(model_call): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some(model_id) = model_call.strip_suffix(":predictLongRunning") else {
        return error(StatusCode::NOT_FOUND, "NOT_FOUND", "no such method");
    };
    state.create_received();
    match create(&state, model_id, &headers, &body).await {
        Ok(name) => Json(json!({ "name": name })).into_response(),
        Err(err) => refusal(err),
    }
}

async fn create(
    state: &Arc<SimState>,
    model_id: &str,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<String, Refusal> {
    let (mut body, account) = create_request_in(state, headers, body, KEY)?;
    let rule = model(state, ProviderKind::Gemini, Some(model_id))?;
    let instance = match body["instances"].as_array().map(Vec::as_slice) {
        Some([instance]) => instance.clone(),
        _ => return Err(Refusal::Invalid("instances must hold one instance".into())),
    };
    if let Some(field) = instance
        .as_object()
        .into_iter()
        .flat_map(|fields| fields.keys())
        .find(|field| field.as_str() != "prompt")
    {
        return Err(Refusal::Invalid(format!(
            "instances[0].{field} is not offered here"
        )));
    }
    let prompt = prompt(&instance)?;
    let mut fields = body["parameters"].clone();
    if !fields.is_object() && !fields.is_null() {
        return Err(Refusal::Invalid("parameters must be an object".into()));
    }
    // The contract's request fields, read the catalog row's way (the prompt beside them).
    if fields.is_null() {
        fields = json!({});
    }
    fields["prompt"] = json!(prompt);
    let shape = read_fields(rule, &fields)?;
    body["model"] = json!(model_id);
    let request = CreateRequest {
        provider: ProviderKind::Gemini,
        body: body.clone(),
        prompt,
        callback_url: None,
        moderates_at_create: false,
        shape,
        account,
    };
    let id: String = random_hex().chars().take(12).collect();
    accept(state, request, format!("models/{model_id}/operations/{id}")).await
}

/// The operation, as a poll answers it.
pub(crate) fn operation_body(state: &SimState, record: &TaskRecord) -> Value {
    let mut operation = json!({ "name": record.task_id });
    match &record.phase {
        Phase::Running => {}
        Phase::Done { .. } => {
            let id = record.task_id.rsplit('/').next().unwrap_or_default();
            let uri = format!("{}/v1beta/files/{id}:download?alt=media", state.base_url);
            operation["done"] = json!(true);
            operation["response"] = json!({
                "@type": "type.googleapis.com/google.ai.generativelanguage.v1beta.PredictLongRunningResponse",
                "generateVideoResponse": { "generatedSamples": [{ "video": { "uri": uri } }] },
            });
        }
        Phase::Ended(Outcome::Moderated) => {
            operation["done"] = json!(true);
            operation["response"] = json!({
                "@type": "type.googleapis.com/google.ai.generativelanguage.v1beta.PredictLongRunningResponse",
                "generateVideoResponse": {
                    "raiMediaFilteredCount": 1,
                    "raiMediaFilteredReasons": ["The video was filtered for violating the usage guidelines."],
                },
            });
        }
        Phase::Ended(_) => {
            operation["done"] = json!(true);
            operation["error"] = json!({ "code": 13, "message": "Video generation failed." });
        }
    }
    operation
}

async fn operation(
    State(state): State<Arc<SimState>>,
    headers: HeaderMap,
    Path((model_id, id)): Path<(String, String)>,
) -> Response {
    if let Err(err) = query_allowed_in(&state, &headers, KEY) {
        return refusal(err);
    }
    let name = format!("models/{model_id}/operations/{id}");
    match state.task_record(&name) {
        Some(record) if record.provider == ProviderKind::Gemini => {
            Json(operation_body(&state, &record)).into_response()
        }
        _ => error(StatusCode::NOT_FOUND, "NOT_FOUND", "operation not found"),
    }
}

/// `GET /v1beta/files/{id}:download?alt=media`, with the key: the video.
async fn download(
    State(state): State<Arc<SimState>>,
    headers: HeaderMap,
    Path(file_call): Path<String>,
) -> Response {
    if let Err(err) = authorized_in(&state, &headers, KEY) {
        return refusal(err);
    }
    let Some(id) = file_call.strip_suffix(":download") else {
        return error(StatusCode::NOT_FOUND, "NOT_FOUND", "no such method");
    };
    let suffix = format!("/operations/{id}");
    let task = state
        .task_records(ProviderKind::Gemini)
        .into_iter()
        .find(|record| record.task_id.ends_with(&suffix));
    match task {
        Some(record) => serve_video(&state, &record.task_id),
        None => error(StatusCode::NOT_FOUND, "NOT_FOUND", "file not found"),
    }
}
