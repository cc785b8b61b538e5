//! fal.ai's queue contract, as fal's queue and webhook pages describe it: `POST
//! /{model id}?fal_webhook=...` (`Authorization: Key <key>`) with the model's input as the
//! body, answered `{request_id, status_url, response_url, cancel_url}`; `GET
//! /{app}/requests/{id}/status` (`IN_QUEUE | IN_PROGRESS | COMPLETED`) and `GET
//! /{app}/requests/{id}` (the result, `{"video": {"url", ...}}`, or the error of a request
//! that failed); `{"detail"}` errors; webhooks `{request_id, status, payload, error}` signed
//! with ED25519 over `request id \n user id \n timestamp \n sha256-hex(body)`, the public key
//! published at `/.well-known/jwks.json`; `X-Fal-Queue-Priority: normal | low` kept on the
//! request's record (any other value refused); `PUT /{app}/requests/{id}/cancel` stops a
//! running request, whose result then answers an error. Moderation refuses during generation: the request
//! completes and its result answers 422 `content_policy_violation`.

use std::{
    collections::BTreeSet,
    sync::{Arc, LazyLock},
};

use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair};
use axum::{
    Json, Router,
    body::Bytes,
    extract::{RawQuery, State},
    http::{HeaderMap, Method, StatusCode, Uri},
    response::{IntoResponse, Response},
    routing::{any, get},
};
use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use reelq_core::{Catalog, ProviderKind};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::contracts::SimContract;
use crate::{
    contract::{
        CreateRequest, KeyIn, Outcome, Phase, Refusal, TaskRecord, accept, create_request_in,
        gateway_failure, model, prompt, query_allowed_in, random_hex, read_fields,
        retry_in_a_second, unix_ms,
    },
    simulator::SimState,
};

const KEY: KeyIn = KeyIn::Scheme("Key");

/// The user id fal's webhooks name.
const USER_ID: &str = "sim-user";

/// The simulator's webhook signing key (fixed, so a restarted simulator signs as before).
static SIGNING_KEY: LazyLock<Ed25519KeyPair> =
    LazyLock::new(|| Ed25519KeyPair::from_seed_unchecked(&[7; 32]).expect("a 32-byte seed"));
/// A key fal never published, as a forger would sign with.
static FORGED_KEY: LazyLock<Ed25519KeyPair> =
    LazyLock::new(|| Ed25519KeyPair::from_seed_unchecked(&[9; 32]).expect("a 32-byte seed"));

/// The JWKS, and the queue under every owner the catalog's fal models name (`fal-ai/...`,
/// `bytedance/...`).
pub(crate) const CONTRACT: SimContract = SimContract {
    kind: ProviderKind::Fal,
    routes,
    callback_body: |state, task_id, _| {
        state
            .task_record(task_id)
            .map(|record| webhook_body(&record))
    },
    callback_headers: |_, task_id, body, forged| webhook_headers(task_id, body, forged),
};

fn routes(catalog: &Catalog) -> Router<Arc<SimState>> {
    let owners: BTreeSet<&str> = catalog
        .models_of(ProviderKind::Fal)
        .filter_map(|rule| rule.model.split('/').next())
        .collect();
    owners.into_iter().fold(
        Router::new().route("/.well-known/jwks.json", get(jwks)),
        |router, owner| router.route(&format!("/{owner}/{{*rest}}"), any(queue)),
    )
}

fn error(status: StatusCode, detail: Value) -> Response {
    (status, Json(json!({ "detail": detail }))).into_response()
}

fn refusal(refusal: Refusal) -> Response {
    match refusal {
        Refusal::BadKey => error(
            StatusCode::UNAUTHORIZED,
            json!("No user found for Key ID and Secret"),
        ),
        Refusal::AfterAccept(code) => gateway_failure(code),
        Refusal::Invalid(message) | Refusal::Withdrawn(message) => error(
            StatusCode::UNPROCESSABLE_ENTITY,
            json!([{ "loc": ["body"], "msg": message, "type": "value_error" }]),
        ),
        Refusal::Moderated => error(
            StatusCode::UNPROCESSABLE_ENTITY,
            json!([{ "msg": "content policy violation", "type": "content_policy_violation" }]),
        ),
        Refusal::Fault(402) => error(
            StatusCode::FORBIDDEN,
            json!("User is locked. Reason: Exhausted balance."),
        ),
        Refusal::Fault(429) => retry_in_a_second(error(
            StatusCode::TOO_MANY_REQUESTS,
            json!("Too many requests"),
        )),
        Refusal::Fault(_) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            json!("Internal server error"),
        ),
    }
}

/// The JWKS the simulator's webhooks verify with.
async fn jwks() -> Json<Value> {
    let x = URL_SAFE_NO_PAD.encode(SIGNING_KEY.public_key().as_ref());
    Json(json!({ "keys": [{ "kty": "OKP", "crv": "Ed25519", "x": x, "kid": "sim-1" }] }))
}

/// Every queue route under a model owner: a submit (POST to a model id), a status or a
/// result.
async fn queue(
    State(state): State<Arc<SimState>>,
    method: Method,
    uri: Uri,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path().trim_start_matches('/').to_owned();
    if method == Method::PUT {
        return cancel(&state, &path, &headers);
    }
    if method == Method::POST {
        state.create_received();
        let webhook = query.as_deref().and_then(webhook_url);
        return match submit(&state, &path, webhook, &headers, &body).await {
            Ok(id) => {
                // The queue's status shape, as fal's per-endpoint OpenAPI answers a submit.
                let mut answer = request_urls(&state.base_url, &path, &id);
                answer["status"] = json!("IN_QUEUE");
                answer["queue_position"] = json!(0);
                answer["gateway_request_id"] = json!(id);
                Json(answer).into_response()
            }
            Err(err) => refusal(err),
        };
    }
    if let Err(err) = query_allowed_in(&state, &headers, KEY) {
        return refusal(err);
    }
    let (request_id, wants_status) = match path.split_once("/requests/") {
        Some((_, rest)) => match rest.strip_suffix("/status") {
            Some(id) => (id.to_owned(), true),
            None => (rest.to_owned(), false),
        },
        None => return error(StatusCode::NOT_FOUND, json!("Not Found")),
    };
    let Some(record) = state
        .task_record(&request_id)
        .filter(|record| record.provider == ProviderKind::Fal)
    else {
        return error(StatusCode::NOT_FOUND, json!("Request not found"));
    };
    match wants_status {
        true => status_answer(&state.base_url, &record),
        false => result(&record),
    }
}

/// `PUT {app}/requests/{id}/cancel`: a running request is stopped (`CANCELLATION_REQUESTED`,
/// 202); a completed one answers `ALREADY_COMPLETED` (400), an unknown one `NOT_FOUND` (404).
fn cancel(state: &Arc<SimState>, path: &str, headers: &HeaderMap) -> Response {
    if let Err(err) = query_allowed_in(state, headers, KEY) {
        return refusal(err);
    }
    let request_id = path
        .split_once("/requests/")
        .and_then(|(_, rest)| rest.strip_suffix("/cancel"));
    let owned = request_id.filter(|id| {
        state
            .task_record(id)
            .is_some_and(|record| record.provider == ProviderKind::Fal)
    });
    let (status, word) = match owned.and_then(|id| state.cancel_task(id)) {
        Some(true) => (StatusCode::ACCEPTED, "CANCELLATION_REQUESTED"),
        Some(false) => (StatusCode::BAD_REQUEST, "ALREADY_COMPLETED"),
        None => (StatusCode::NOT_FOUND, "NOT_FOUND"),
    };
    (status, Json(json!({ "status": word }))).into_response()
}

/// The `fal_webhook` parameter of a submit's query.
fn webhook_url(query: &str) -> Option<String> {
    form_urlencoded::parse(query.as_bytes())
        .find(|(name, _)| name == "fal_webhook")
        .map(|(_, value)| value.into_owned())
}

/// The app a model id belongs to: its first two segments.
fn app_of(model: &str) -> &str {
    match model.match_indices('/').nth(1) {
        Some((second, _)) => &model[..second],
        None => model,
    }
}

async fn submit(
    state: &Arc<SimState>,
    model_id: &str,
    webhook: Option<String>,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<String, Refusal> {
    let (body, account) = create_request_in(state, headers, body, KEY)?;
    let rule = model(state, ProviderKind::Fal, Some(model_id))?;
    let prompt = prompt(&body)?;
    let shape = read_fields(rule, &body)?;
    // The model is in the path and the priority in a header; the record keeps both beside
    // the input, as fal's request records do.
    let mut recorded = body.clone();
    recorded["model"] = json!(model_id);
    if let Some(priority) = headers.get("x-fal-queue-priority") {
        match priority.to_str() {
            Ok(priority @ ("normal" | "low")) => recorded["priority"] = json!(priority),
            _ => {
                return Err(Refusal::Invalid(
                    "X-Fal-Queue-Priority must be normal or low".into(),
                ));
            }
        }
    }
    let request = CreateRequest {
        provider: ProviderKind::Fal,
        body: recorded,
        prompt,
        callback_url: webhook,
        moderates_at_create: false,
        shape,
        account,
    };
    let hex = random_hex();
    let id = format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    );
    accept(state, request, id).await
}

/// A request's ids and URLs, as every queue answer carries them.
fn request_urls(base_url: &str, model: &str, request_id: &str) -> Value {
    let base = format!("{base_url}/{}/requests/{request_id}", app_of(model));
    json!({
        "request_id": request_id,
        "response_url": base,
        "status_url": format!("{base}/status"),
        "cancel_url": format!("{base}/cancel"),
    })
}

/// A request's status, in the shape fal's clients read (fal_client needs `logs` and, while
/// queued, `queue_position`; fal-js needs `response_url`): 202 while it runs, 200 once
/// completed, with `error` and `error_type` on a completed request that failed.
fn status_answer(base_url: &str, record: &TaskRecord) -> Response {
    let model = record.request["model"].as_str().unwrap_or_default();
    let mut body = request_urls(base_url, model, &record.task_id);
    body["logs"] = Value::Null;
    body["metrics"] = json!({});
    let status = match &record.phase {
        Phase::Running => {
            body["status"] = json!("IN_PROGRESS");
            StatusCode::ACCEPTED
        }
        phase => {
            body["status"] = json!("COMPLETED");
            let failure = match phase {
                Phase::Ended(Outcome::Moderated) => Some((
                    "content_policy_violation",
                    "The content was flagged by a content checker.",
                )),
                Phase::Ended(Outcome::Failed) => {
                    Some(("generation_failed", "Video generation failed"))
                }
                _ => None,
            };
            if let Some((kind, message)) = failure {
                body["error"] = json!(message);
                body["error_type"] = json!(kind);
            }
            StatusCode::OK
        }
    };
    (status, Json(body)).into_response()
}

/// What fetching a request's result answers: the model's own status (fal's queue page: 4xx
/// an invalid request, 5xx a model error), or 400 while it has not completed.
fn result(record: &TaskRecord) -> Response {
    let status = match &record.phase {
        Phase::Running => StatusCode::BAD_REQUEST,
        Phase::Ended(Outcome::Failed) => StatusCode::INTERNAL_SERVER_ERROR,
        _ => StatusCode::UNPROCESSABLE_ENTITY,
    };
    match result_body(record) {
        Ok(body) => Json(body).into_response(),
        Err(detail) => error(status, detail),
    }
}

/// The result of a completed request, or the error detail of one that failed.
fn result_body(record: &TaskRecord) -> Result<Value, Value> {
    match &record.phase {
        Phase::Running => Err(json!("Request is still in progress")),
        Phase::Done { result_url } => Ok(json!({
            "video": {
                "url": result_url,
                "content_type": "video/mp4",
                "file_name": "output.mp4",
                "file_size": 4096,
            },
        })),
        Phase::Ended(Outcome::Moderated) => Err(json!([{
            "msg": "The content could not be processed because it contained material flagged by a content checker.",
            "type": "content_policy_violation",
        }])),
        Phase::Ended(Outcome::Cancelled) => Err(json!("Request was cancelled")),
        Phase::Ended(_) => Err(json!("Video generation failed")),
    }
}

/// The webhook fal sends when a request ends.
pub(crate) fn webhook_body(record: &TaskRecord) -> Value {
    match result_body(record) {
        Ok(payload) => json!({
            "request_id": record.task_id,
            "gateway_request_id": record.task_id,
            "status": "OK",
            "payload": payload,
            "error": null,
        }),
        Err(detail) => json!({
            "request_id": record.task_id,
            "gateway_request_id": record.task_id,
            "status": "ERROR",
            "error": "Invalid status code: 422",
            "payload": { "detail": detail },
        }),
    }
}

/// The `X-Fal-Webhook-*` headers of one delivery of `body`, signed with the published key (or,
/// `forged`, with one fal never published). Written here independently of reelq's verifier.
pub fn webhook_headers(task_id: &str, body: &str, forged: bool) -> Vec<(&'static str, String)> {
    let timestamp = (unix_ms() / 1000).to_string();
    let digest = hex::encode(Sha256::digest(body.as_bytes()));
    let message = format!("{task_id}\n{USER_ID}\n{timestamp}\n{digest}");
    let key = if forged { &*FORGED_KEY } else { &*SIGNING_KEY };
    let signature = hex::encode(key.sign(message.as_bytes()).as_ref());
    vec![
        ("X-Fal-Webhook-Request-Id", task_id.to_owned()),
        ("X-Fal-Webhook-User-Id", USER_ID.to_owned()),
        ("X-Fal-Webhook-Timestamp", timestamp),
        ("X-Fal-Webhook-Signature", signature),
    ]
}
