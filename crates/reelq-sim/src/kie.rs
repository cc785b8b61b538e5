//! The kie market contract (`providers.md` section 1) as the simulator serves it: the
//! `{code, msg, data}` envelope, bearer auth, validation of the Sora inputs, task records
//! with `resultJson`, and result files.

use std::{convert::Infallible, sync::Arc};

use axum::{
    Json, Router,
    body::{Body, Bytes},
    extract::{Path, Query, State},
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use base64::{Engine, engine::general_purpose::STANDARD as BASE64};
use futures_util::stream;
use hmac::{Hmac, Mac};
use reelq_core::{ProviderKind, models_of};
use serde::Deserialize;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::{
    simulator::{DownloadFault, SimState},
    video::{video_chunks, video_len},
};

pub(crate) fn routes() -> Router<Arc<SimState>> {
    Router::new()
        .route("/api/v1/jobs/createTask", post(create_task))
        .route("/api/v1/jobs/recordInfo", get(record_info))
        .route("/files/{file}", get(result_file))
}

fn envelope(status: StatusCode, code: i64, msg: &str, data: Value) -> Response {
    (
        status,
        Json(json!({ "code": code, "msg": msg, "data": data })),
    )
        .into_response()
}

fn refuse(code: i64, msg: &str) -> Response {
    // kie answers business errors with HTTP 200 and the real code in the envelope.
    envelope(StatusCode::OK, code, msg, Value::Null)
}

/// An injected error; a 429 says when to come back, as kie's rate limiter does.
fn fault(code: i64) -> Response {
    let mut response = refuse(code, "simulated fault");
    if code == 429 {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    }
    response
}

fn authorized(state: &SimState, headers: &HeaderMap) -> bool {
    let expected = format!("Bearer {}", state.config.api_key);
    headers
        .get(header::AUTHORIZATION)
        .is_some_and(|value| value.as_bytes() == expected.as_bytes())
}

fn unauthorized() -> Response {
    envelope(
        StatusCode::UNAUTHORIZED,
        401,
        "You do not have access permissions",
        Value::Null,
    )
}

async fn create_task(
    State(state): State<Arc<SimState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if !authorized(&state, &headers) {
        return unauthorized();
    }
    let latency = state.create_received();
    let Ok(mut request) = serde_json::from_slice::<Value>(&body) else {
        return refuse(422, "request body is not JSON");
    };
    if let Err(msg) = validate(&request) {
        return refuse(422, &msg);
    }
    if let Some(code) = state.next_create_fault() {
        return fault(code);
    }
    let callback_url = request
        .as_object_mut()
        .and_then(|fields| {
            fields.remove("progressCallBackUrl");
            fields.remove("callBackUrl")
        })
        .and_then(|url| url.as_str().map(str::to_owned));
    let fingerprint = hex::encode(Sha256::digest(request.to_string()));
    let task_id = format!("task_{:032x}", rand::random::<u128>());
    // The task exists (and is billed) before the answer leaves: a client that dies while
    // waiting for a slow answer leaves a real task behind, as at a real provider.
    state.record_create(&task_id, fingerprint, callback_url);
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    envelope(StatusCode::OK, 200, "success", json!({ "taskId": task_id }))
}

/// Signs a callback as kie does: base64(HMAC-SHA256(key, `taskId + "." + timestamp`)).
/// Written here independently of reelq's verifier, so a test cannot pass by sharing a bug.
pub(crate) fn kie_signature(key: &str, task_id: &str, timestamp: &str) -> String {
    let mut mac =
        Hmac::<Sha256>::new_from_slice(key.as_bytes()).expect("HMAC takes any key length");
    mac.update(task_id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.as_bytes());
    BASE64.encode(mac.finalize().into_bytes())
}

pub(crate) fn result_url(state: &SimState, task_id: &str) -> String {
    format!("{}/files/{task_id}.mp4", state.base_url)
}

fn validate(request: &Value) -> Result<(), String> {
    let model = request["model"].as_str().ok_or("model is required")?;
    let rule = models_of(ProviderKind::Kie)
        .find(|rule| rule.model == model)
        .ok_or_else(|| format!("model {model} is not supported"))?;
    let input = &request["input"];
    match input["prompt"].as_str() {
        Some(prompt) if !prompt.trim().is_empty() => {}
        _ => return Err("input.prompt is required".into()),
    }
    let n_frames = input["n_frames"]
        .as_str()
        .and_then(|n| n.parse::<u32>().ok());
    if !n_frames.is_some_and(|n| rule.durations.contains(&n)) {
        return Err("input.n_frames must be \"10\" or \"15\"".into());
    }
    if !matches!(
        input["aspect_ratio"].as_str(),
        Some("landscape" | "portrait")
    ) {
        return Err("input.aspect_ratio must be landscape or portrait".into());
    }
    if !matches!(input["size"].as_str(), None | Some("standard" | "high")) {
        return Err("input.size must be standard or high".into());
    }
    Ok(())
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RecordQuery {
    task_id: String,
}

async fn record_info(
    State(state): State<Arc<SimState>>,
    headers: HeaderMap,
    Query(query): Query<RecordQuery>,
) -> Response {
    if !authorized(&state, &headers) {
        return unauthorized();
    }
    if let Some(code) = state.next_query_fault() {
        return fault(code);
    }
    let tasks = state.tasks.lock().unwrap();
    let Some(task) = tasks.get(&query.task_id) else {
        return refuse(404, "task not found");
    };
    let data = if state.is_finished(task) {
        let result_url = result_url(&state, &query.task_id);
        json!({
            "taskId": query.task_id,
            "state": "success",
            "resultJson": json!({ "resultUrls": [result_url] }).to_string(),
        })
    } else {
        json!({ "taskId": query.task_id, "state": "generating" })
    };
    envelope(StatusCode::OK, 200, "success", data)
}

async fn result_file(State(state): State<Arc<SimState>>, Path(file): Path<String>) -> Response {
    let Some(task_id) = file.strip_suffix(".mp4") else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let finished = state
        .tasks
        .lock()
        .unwrap()
        .get(task_id)
        .is_some_and(|task| state.is_finished(task));
    if !finished {
        return StatusCode::NOT_FOUND.into_response();
    }
    let padding = state.config.video_padding;
    let length = video_len(task_id, padding);
    let chunks: Vec<Bytes> = match state.next_download_fault() {
        Some(DownloadFault::Expired) => return StatusCode::NOT_FOUND.into_response(),
        Some(DownloadFault::Truncated) => {
            let whole: Vec<u8> = video_chunks(task_id, padding)
                .flat_map(|c| c.to_vec())
                .collect();
            vec![Bytes::from(whole).slice(..(length / 2) as usize)]
        }
        None => {
            state.record_download(task_id);
            video_chunks(task_id, padding).collect()
        }
    };
    // A streamed body keeps the announced length even when the bytes fall short.
    let body = Body::from_stream(stream::iter(chunks.into_iter().map(Ok::<_, Infallible>)));
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static("video/mp4")),
            (header::CONTENT_LENGTH, HeaderValue::from(length)),
        ],
        body,
    )
        .into_response()
}
