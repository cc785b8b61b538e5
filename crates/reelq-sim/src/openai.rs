//! The OpenAI-compatible Videos contract (`docs/providers.md` section 4): `POST /v1/videos`,
//! `GET /v1/videos/{id}`, `GET /v1/videos` (newest first, `after`/`limit` pages; each video
//! echoes its model, prompt, seconds, size and `created_at`, as OpenAI's Video object does),
//! `GET /v1/videos/{id}/content` (with the key), account-level
//! webhooks signed per Standard Webhooks, and `{error: {message, type, code}}` errors
//! (an empty account is 429 `insufficient_quota`, as OpenAI answers it).

use std::sync::Arc;

use axum::{
    Json, Router,
    body::Bytes,
    extract::{Path, Query, State},
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use base64::{Engine, engine::general_purpose::STANDARD as BASE64};
use hmac::{Hmac, Mac};
use reelq_core::ProviderKind;
use serde::Deserialize;
use serde_json::{Value, json};
use sha2::Sha256;

use crate::contracts::SimContract;
use crate::{
    contract::{
        CreateRequest, Outcome, Phase, Refusal, TaskRecord, accept, authorized, create_request,
        gateway_failure, model, prompt, query_allowed, random_hex, read_fields, retry_in_a_second,
        serve_video, unix_ms,
    },
    simulator::SimState,
};

pub(crate) const CONTRACT: SimContract = SimContract {
    kind: ProviderKind::Openai,
    routes: |_| routes(),
    callback_body: |_, task_id, phase| Some(event_body(task_id, phase)),
    callback_headers: signed_per_standard_webhooks,
};

/// A signing secret that is not the account's, as a forger would use.
const FORGED_WHSEC: &str = "whsec_Zm9yZ2VkLWtleS1mb3JnZWQta2V5";

/// Standard Webhooks signature headers with the account's secret (`webhook_secret`), when it
/// has one: OpenAI-style gateways' webhooks and Replicate's.
pub(crate) fn signed_per_standard_webhooks(
    state: &SimState,
    _task_id: &str,
    body: &str,
    forged: bool,
) -> Vec<(&'static str, String)> {
    let secret = match forged {
        true => Some(FORGED_WHSEC),
        false => state.config.webhook_secret.as_deref(),
    };
    secret.map_or_else(Vec::new, |secret| {
        standard_webhook_headers(secret, body).to_vec()
    })
}

fn routes() -> Router<Arc<SimState>> {
    Router::new()
        .route("/v1/videos", post(create_video).get(list))
        .route("/v1/videos/{id}", get(retrieve))
        .route("/v1/videos/{id}/content", get(content))
        .route("/v1/models", get(models))
}

/// `GET /v1/models`: the catalog's OpenAI-contract models, as the list the API answers.
async fn models(State(state): State<Arc<SimState>>, headers: HeaderMap) -> Response {
    if let Err(err) = authorized(&state, &headers) {
        return refusal(err);
    }
    let data: Vec<Value> = state
        .config
        .catalog
        .models_of(ProviderKind::Openai)
        .filter(|rule| rule.status.takes_jobs())
        // OpenAI's `Model` requires `created` (unix seconds) beside id, object and owner.
        .map(|rule| json!({ "id": rule.model, "object": "model", "created": 1_758_672_000, "owned_by": "system" }))
        .collect();
    Json(json!({ "object": "list", "data": data })).into_response()
}

fn error(status: StatusCode, code: &str, kind: &str, message: &str) -> Response {
    let body =
        json!({ "error": { "message": message, "type": kind, "param": null, "code": code } });
    (status, Json(body)).into_response()
}

fn refusal(refusal: Refusal) -> Response {
    match refusal {
        Refusal::BadKey => error(
            StatusCode::UNAUTHORIZED,
            "invalid_api_key",
            "invalid_request_error",
            "Incorrect API key provided",
        ),
        Refusal::Invalid(message) | Refusal::Withdrawn(message) => error(
            StatusCode::BAD_REQUEST,
            "invalid_value",
            "invalid_request_error",
            &message,
        ),
        Refusal::Moderated => unreachable!("openai moderates during generation"),
        Refusal::AfterAccept(code) => gateway_failure(code),
        Refusal::Fault(402) => error(
            StatusCode::TOO_MANY_REQUESTS,
            "insufficient_quota",
            "insufficient_quota",
            "You exceeded your current quota",
        ),
        Refusal::Fault(429) => retry_in_a_second(error(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limit_exceeded",
            "requests",
            "Rate limit reached",
        )),
        Refusal::Fault(455) => error(
            StatusCode::SERVICE_UNAVAILABLE,
            "service_unavailable",
            "server_error",
            "maintenance",
        ),
        Refusal::Fault(_) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "server_error",
            "server_error",
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
        Ok(video_id) => match state.task_record(&video_id) {
            Some(record) => Json(video_body(&record)).into_response(),
            None => refusal(Refusal::Fault(500)),
        },
        Err(err) => refusal(err),
    }
}

async fn create(
    state: &Arc<SimState>,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<String, Refusal> {
    let (body, account) = create_request(state, headers, body)?;
    let rule = model(state, ProviderKind::Openai, body["model"].as_str())?;
    let prompt = prompt(&body)?;
    let shape = read_fields(rule, &body)?;
    let request = CreateRequest {
        provider: ProviderKind::Openai,
        body: body.clone(),
        prompt,
        // Webhooks go to the account's endpoint, set on the simulator, not per request.
        callback_url: state.account_webhook_url.lock().unwrap().clone(),
        moderates_at_create: false,
        shape,
        account,
    };
    accept(state, request, format!("video_{}", random_hex())).await
}

/// The video object, echoing the create's model, prompt, seconds and size as OpenAI's does
/// (the defaults were the API's own: sora-2, 4 seconds, 720x1280), with every field OpenAI's
/// schema requires (`VideoResource`), `null` where it does not apply yet. `seconds` is a
/// string in the answer whether the create sent it as one or as a number (gateways differ).
pub(crate) fn video_body(record: &TaskRecord) -> Value {
    let request = &record.request;
    let seconds = match &request["seconds"] {
        Value::Number(n) => n.to_string(),
        Value::String(s) => s.clone(),
        _ => "4".to_owned(),
    };
    let mut video = json!({
        "id": record.task_id,
        "object": "video",
        "model": request["model"].as_str().unwrap_or("sora-2"),
        "prompt": request["prompt"],
        "created_at": record.created_s,
        "completed_at": null,
        "expires_at": null,
        "seconds": seconds,
        "size": request["size"].as_str().unwrap_or("720x1280"),
        "remixed_from_video_id": null,
        "error": null,
        "quality": "standard",
    });
    let (status, progress) = match &record.phase {
        Phase::Running => ("in_progress", 50),
        Phase::Done { .. } => {
            // Finished when asked (the simulator keeps no finish time); content for a day.
            video["completed_at"] = json!(unix_ms() / 1000);
            video["expires_at"] = json!(unix_ms() / 1000 + 86_400);
            ("completed", 100)
        }
        Phase::Ended(outcome) => {
            let (code, message) = match outcome {
                Outcome::Moderated => (
                    "moderation_blocked",
                    "Your request was blocked by our moderation system",
                ),
                _ => ("video_generation_failed", "Video generation failed"),
            };
            video["error"] = json!({ "code": code, "message": message });
            ("failed", 100)
        }
    };
    video["status"] = json!(status);
    video["progress"] = json!(progress);
    video
}

async fn retrieve(
    State(state): State<Arc<SimState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    if let Err(err) = query_allowed(&state, &headers) {
        return refusal(err);
    }
    match state.task_record(&id) {
        Some(record) if record.provider == ProviderKind::Openai => {
            Json(video_body(&record)).into_response()
        }
        _ => error(
            StatusCode::NOT_FOUND,
            "video_not_found",
            "invalid_request_error",
            "No video found",
        ),
    }
}

/// `GET /v1/videos?order=desc&limit=N&after=ID`: the account's videos, newest first, in pages.
#[derive(Deserialize)]
struct ListQuery {
    #[serde(default)]
    after: Option<String>,
    #[serde(default)]
    limit: Option<usize>,
    #[serde(default)]
    order: Option<String>,
}

async fn list(
    State(state): State<Arc<SimState>>,
    headers: HeaderMap,
    Query(query): Query<ListQuery>,
) -> Response {
    if let Err(err) = query_allowed(&state, &headers) {
        return refusal(err);
    }
    let mut records = state.task_records(ProviderKind::Openai);
    if query.order.as_deref() == Some("asc") {
        records.reverse();
    }
    let start = match &query.after {
        Some(after) => match records.iter().position(|r| &r.task_id == after) {
            Some(idx) => idx + 1,
            None => records.len(),
        },
        None => 0,
    };
    let limit = query.limit.unwrap_or(20).clamp(1, 100);
    let page: Vec<Value> = records
        .iter()
        .skip(start)
        .take(limit)
        .map(video_body)
        .collect();
    let has_more = start + page.len() < records.len();
    Json(json!({
        "object": "list",
        "data": page,
        "first_id": page.first().map(|v| v["id"].clone()),
        "last_id": page.last().map(|v| v["id"].clone()),
        "has_more": has_more,
    }))
    .into_response()
}

#[derive(Deserialize)]
struct ContentQuery {
    variant: Option<String>,
}

async fn content(
    State(state): State<Arc<SimState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(query): Query<ContentQuery>,
) -> Response {
    if let Err(err) = authorized(&state, &headers) {
        return refusal(err);
    }
    match query.variant.as_deref() {
        None | Some("video") => serve_video(&state, &id),
        Some("thumbnail") if state.task_phase(&id).is_some() => (
            [(axum::http::header::CONTENT_TYPE, "image/webp")],
            crate::video::THUMBNAIL_WEBP,
        )
            .into_response(),
        Some("thumbnail") => StatusCode::NOT_FOUND.into_response(),
        Some(other) => (
            StatusCode::BAD_REQUEST,
            Json(
                json!({ "error": { "message": format!("variant {other:?} is not offered here") } }),
            ),
        )
            .into_response(),
    }
}

/// The webhook event for a finished video.
pub(crate) fn event_body(video_id: &str, phase: &Phase) -> Value {
    let kind = match phase {
        Phase::Done { .. } => "video.completed",
        _ => "video.failed",
    };
    json!({
        "id": format!("evt_{}", random_hex()),
        "object": "event",
        "created_at": unix_ms() / 1000,
        "type": kind,
        "data": { "id": video_id },
    })
}

/// Standard Webhooks headers for one delivery, signed with `secret` (`whsec_<base64>`).
/// Written here independently of reelq's verifier, so a test cannot pass by sharing a bug.
pub(crate) fn standard_webhook_headers(secret: &str, body: &str) -> [(&'static str, String); 3] {
    let key = BASE64
        .decode(secret.trim_start_matches("whsec_"))
        .expect("the simulator's webhook secret is whsec_<base64>");
    let id = format!("msg_{}", random_hex());
    let timestamp = (unix_ms() / 1000).to_string();
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).expect("HMAC takes any key length");
    mac.update(format!("{id}.{timestamp}.{body}").as_bytes());
    let signature = format!("v1,{}", BASE64.encode(mac.finalize().into_bytes()));
    [
        ("webhook-id", id),
        ("webhook-timestamp", timestamp),
        ("webhook-signature", signature),
    ]
}
