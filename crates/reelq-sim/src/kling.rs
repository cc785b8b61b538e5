//! Kling's own API as its reference describes it (`crates/reelq-providers/src/kling.rs` cites
//! the pages): `POST /v1/videos/{text2video,image2video}`, `GET /v1/videos/{family}/{task id
//! or external_task_id}`, the `{code, message, request_id, data}` envelope with Kling's
//! business codes and HTTP statuses, a JWT (HS256) per request, and callbacks that carry the
//! bare task object, unsigned.
//!
//! The simulator's keys are read as Kling's pairs, `<access key>:<secret key>`: a token
//! verifies if one pair's secret signed it, its `iss` is that pair's access key (a key
//! without `:` is a secret key alone, for any access key), and it is within its
//! `nbf`..`exp`. An
//! `external_task_id` is unique per account: a second create under one is refused (400,
//! code 1201; Kling does not document this answer).

use std::sync::Arc;

use axum::{
    Json, Router,
    body::Bytes,
    extract::{Path, State},
    http::{HeaderMap, StatusCode, header},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD as BASE64URL};
use hmac::{Hmac, Mac};
use reelq_core::ProviderKind;
use serde_json::{Value, json};
use sha2::Sha256;

use crate::{
    contract::{
        CreateRequest, Outcome, Phase, Refusal, TaskRecord, accept, gateway_failure, model, prompt,
        random_hex, read_fields, take_callback_url, unix_ms,
    },
    contracts::SimContract,
    simulator::SimState,
};

pub(crate) const CONTRACT: SimContract = SimContract {
    kind: ProviderKind::Kling,
    routes: |_| routes(),
    callback_body: |state, task_id, _| state.task_record(task_id).map(|record| task_body(&record)),
    callback_headers: crate::contracts::unsigned,
};

fn routes() -> Router<Arc<SimState>> {
    Router::new()
        .route("/v1/videos/text2video", post(create_text))
        .route("/v1/videos/image2video", post(create_image))
        .route("/v1/videos/text2video/{id}", get(task))
        .route("/v1/videos/image2video/{id}", get(task))
}

/// An answer in Kling's envelope.
fn envelope(status: StatusCode, code: i64, message: &str, data: Option<Value>) -> Response {
    let mut body = json!({ "code": code, "message": message, "request_id": random_hex() });
    if let Some(data) = data {
        body["data"] = data;
    }
    (status, Json(body)).into_response()
}

fn refusal(refusal: Refusal) -> Response {
    match refusal {
        Refusal::BadKey => envelope(
            StatusCode::UNAUTHORIZED,
            1002,
            "Authorization is invalid",
            None,
        ),
        Refusal::AfterAccept(code) => gateway_failure(code),
        Refusal::Invalid(message) | Refusal::Withdrawn(message) => {
            envelope(StatusCode::BAD_REQUEST, 1201, &message, None)
        }
        Refusal::Moderated => envelope(
            StatusCode::BAD_REQUEST,
            1301,
            "Trigger the content security policy of the platform",
            None,
        ),
        Refusal::Fault(402) => envelope(
            StatusCode::TOO_MANY_REQUESTS,
            1102,
            "Resource pack depleted or expired",
            None,
        ),
        Refusal::Fault(429) => envelope(
            StatusCode::TOO_MANY_REQUESTS,
            1303,
            "parallel task over resource pack limit",
            None,
        ),
        Refusal::Fault(455) => envelope(
            StatusCode::SERVICE_UNAVAILABLE,
            5001,
            "Server temporarily unavailable",
            None,
        ),
        Refusal::Fault(_) => envelope(
            StatusCode::INTERNAL_SERVER_ERROR,
            5000,
            "Server internal error",
            None,
        ),
    }
}

/// Whether the request's bearer token is a Kling JWT one of the simulator's keys signed,
/// valid now; which account (the key's place) if so.
fn authorized(state: &SimState, headers: &HeaderMap) -> Result<usize, Refusal> {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "))
        .ok_or(Refusal::BadKey)?;
    let (signing_input, signature) = token.rsplit_once('.').ok_or(Refusal::BadKey)?;
    let signature = BASE64URL.decode(signature).map_err(|_| Refusal::BadKey)?;
    let account = std::iter::once(&state.config.api_key)
        .chain(&state.config.other_api_keys)
        .position(|key| {
            let secret = key
                .split_once(':')
                .map_or(key.as_str(), |(_, secret)| secret);
            let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("any key");
            mac.update(signing_input.as_bytes());
            mac.verify_slice(&signature).is_ok()
        })
        .ok_or(Refusal::BadKey)?;
    let keys: Vec<&String> = std::iter::once(&state.config.api_key)
        .chain(&state.config.other_api_keys)
        .collect();
    let access = keys[account].split_once(':').map(|(access, _)| access);
    let claims = signing_input
        .split_once('.')
        .and_then(|(_, claims)| BASE64URL.decode(claims).ok())
        .and_then(|claims| serde_json::from_slice::<Value>(&claims).ok())
        .ok_or(Refusal::BadKey)?;
    let now_s = unix_ms() / 1000;
    let valid = claims["iss"]
        .as_str()
        .is_some_and(|iss| !iss.is_empty() && access.is_none_or(|access| iss == access))
        && claims["nbf"].as_u64().is_some_and(|nbf| nbf <= now_s)
        && claims["exp"].as_u64().is_some_and(|exp| now_s < exp);
    valid.then_some(account).ok_or(Refusal::BadKey)
}

async fn create_text(state: State<Arc<SimState>>, headers: HeaderMap, body: Bytes) -> Response {
    create_answer(state, headers, body, "text2video").await
}

async fn create_image(state: State<Arc<SimState>>, headers: HeaderMap, body: Bytes) -> Response {
    create_answer(state, headers, body, "image2video").await
}

async fn create_answer(
    State(state): State<Arc<SimState>>,
    headers: HeaderMap,
    body: Bytes,
    family: &str,
) -> Response {
    state.create_received();
    match create(&state, &headers, &body, family).await {
        Ok(task_id) => match state.task_record(&task_id) {
            Some(record) => envelope(StatusCode::OK, 0, "SUCCEED", Some(task_body(&record))),
            None => envelope(StatusCode::NOT_FOUND, 1203, "task not found", None),
        },
        Err(err) => refusal(err),
    }
}

async fn create(
    state: &Arc<SimState>,
    headers: &HeaderMap,
    body: &[u8],
    family: &str,
) -> Result<String, Refusal> {
    let account = authorized(state, headers)?;
    let mut body: Value = serde_json::from_slice(body)
        .map_err(|_| Refusal::Invalid("request body is not JSON".into()))?;
    let callback_url = take_callback_url(&mut body, &["callback_url"]);
    let mut fields = body.clone();
    let object = fields
        .as_object_mut()
        .ok_or_else(|| Refusal::Invalid("not an object".into()))?;
    let model_name = object.remove("model_name");
    let external = object.remove("external_task_id");
    let model_name = model_name
        .as_ref()
        .and_then(Value::as_str)
        .unwrap_or("kling-v1");
    let rule = model(state, ProviderKind::Kling, Some(model_name))
        .map_err(|_| Refusal::Invalid(format!("model_name value '{model_name}' is invalid")))?;
    let has_image = object.contains_key("image");
    if (family == "image2video") != has_image {
        return Err(Refusal::Invalid(match family {
            "image2video" => "image is required".into(),
            _ => "image is not a field of text2video".into(),
        }));
    }
    let prompt = prompt(&body)?;
    if prompt.chars().count() > 2500 {
        return Err(Refusal::Invalid(
            "prompt cannot exceed 2500 characters".into(),
        ));
    }
    let shape = read_fields(rule, &fields)?;
    if let Some(external) = external.as_ref().and_then(Value::as_str) {
        let taken = state
            .task_records(ProviderKind::Kling)
            .iter()
            .any(|record| record.request["external_task_id"] == external);
        if taken {
            return Err(Refusal::Invalid(format!(
                "external_task_id {external} already exists"
            )));
        }
    }
    let request = CreateRequest {
        provider: ProviderKind::Kling,
        body: body.clone(),
        prompt,
        callback_url,
        moderates_at_create: true,
        shape,
        account,
    };
    // Kling's task ids are long numbers, as strings.
    let task_id = format!(
        "8{}{:05}",
        unix_ms(),
        u32::from_str_radix(&random_hex()[..4], 16).unwrap_or(0)
    );
    accept(state, request, task_id).await
}

/// The task as the query's `data`, and as the callback's whole body.
fn task_body(record: &TaskRecord) -> Value {
    let created_ms = record.created_s * 1000;
    let mut task = json!({
        "task_id": record.task_id,
        "task_status_msg": "",
        "task_info": { "external_task_id": record.request["external_task_id"] },
        "watermark_info": { "enabled": false },
        "created_at": created_ms,
        "updated_at": unix_ms(),
    });
    let status = match &record.phase {
        Phase::Running => "processing",
        Phase::Done { result_url } => {
            let duration = record.request["duration"].as_str().unwrap_or("5");
            task["task_result"] = json!({
                "videos": [{
                    "id": random_hex(),
                    "url": result_url,
                    "watermark_url": result_url,
                    "duration": duration,
                }]
            });
            task["final_unit_deduction"] = json!("2.5");
            "succeed"
        }
        Phase::Ended(Outcome::Moderated) => {
            task["task_status_msg"] = json!("triggering the content risk control of the platform");
            "failed"
        }
        Phase::Ended(_) => {
            task["task_status_msg"] = json!("the generation failed");
            "failed"
        }
    };
    task["task_status"] = json!(status);
    task
}

/// A task by Kling's id or by the `external_task_id` its create gave.
async fn task(
    State(state): State<Arc<SimState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    if let Err(err) = authorized(&state, &headers) {
        return refusal(err);
    }
    if let Some(code) = state.next_query_fault() {
        return refusal(Refusal::Fault(code));
    }
    let found = state
        .task_records(ProviderKind::Kling)
        .into_iter()
        .find(|record| record.task_id == id || record.request["external_task_id"] == id.as_str());
    match found {
        Some(record) => envelope(StatusCode::OK, 0, "SUCCEED", Some(task_body(&record))),
        None => envelope(StatusCode::NOT_FOUND, 1203, "task not found", None),
    }
}
