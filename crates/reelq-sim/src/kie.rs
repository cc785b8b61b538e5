//! The kie market contract (`docs/providers.md` section 1) as the simulator serves it: the
//! `{code, msg, data}` envelope (HTTP 200 with the real code inside), bearer auth,
//! validation of the Sora inputs, task records with `resultJson`, and signed callbacks.

use std::sync::Arc;

use axum::{
    Json, Router,
    body::Bytes,
    extract::{Query, State},
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

use crate::{contract::unix_ms, contracts::SimContract};
use crate::{
    contract::{
        CreateRequest, Outcome, Phase, Refusal, accept, create_request, gateway_failure, model,
        query_allowed, random_hex, read_fields, retry_in_a_second, take_callback_url,
    },
    simulator::SimState,
};

pub(crate) const CONTRACT: SimContract = SimContract {
    kind: ProviderKind::Kie,
    routes: |_| routes(),
    callback_body: |_, task_id, phase| Some(callback_body(task_id, phase)),
    callback_headers,
};

/// A signing key that is not the account's, as a forger would use.
const FORGED_KIE_KEY: &str = "not-the-account-key";

/// kie's signature headers, when the account enables signing (`webhook_hmac_key`).
fn callback_headers(
    state: &SimState,
    task_id: &str,
    _body: &str,
    forged: bool,
) -> Vec<(&'static str, String)> {
    let key = match forged {
        true => Some(FORGED_KIE_KEY),
        false => state.config.webhook_hmac_key.as_deref(),
    };
    let Some(key) = key else {
        return vec![];
    };
    let timestamp = (unix_ms() / 1000).to_string();
    let signature = kie_signature(key, task_id, &timestamp);
    vec![
        ("X-Webhook-Timestamp", timestamp),
        ("X-Webhook-Signature", signature),
    ]
}

fn routes() -> Router<Arc<SimState>> {
    Router::new()
        .route("/api/v1/jobs/createTask", post(create_task))
        .route("/api/v1/jobs/recordInfo", get(record_info))
        .route("/api/v1/chat/credit", get(credit))
}

/// The simulated account's balance: what kie's remaining-credits call answers.
pub const SIMULATED_CREDITS: f64 = 100_000.0;

/// `GET /api/v1/chat/credit`: the account's remaining credits in `data`.
async fn credit(State(state): State<Arc<SimState>>, headers: HeaderMap) -> Response {
    match query_allowed(&state, &headers) {
        Ok(()) => envelope(StatusCode::OK, 200, "success", json!(SIMULATED_CREDITS)),
        Err(err) => refusal(err),
    }
}

fn envelope(status: StatusCode, code: i64, msg: &str, data: Value) -> Response {
    (
        status,
        Json(json!({ "code": code, "msg": msg, "data": data })),
    )
        .into_response()
}

fn refusal(refusal: Refusal) -> Response {
    match refusal {
        Refusal::BadKey => envelope(
            StatusCode::UNAUTHORIZED,
            401,
            "You do not have access permissions",
            Value::Null,
        ),
        // kie answers business errors with HTTP 200 and the real code in the envelope.
        Refusal::Invalid(msg) => envelope(StatusCode::OK, 422, &msg, Value::Null),
        // kie's answer for every model of a family it stopped serving (Sora, since 2026-06).
        Refusal::Withdrawn(_) => envelope(
            StatusCode::OK,
            500,
            "This interface is temporarily paused",
            Value::Null,
        ),
        Refusal::Moderated => unreachable!("kie moderates during generation"),
        Refusal::AfterAccept(code) => gateway_failure(code),
        Refusal::Fault(429) => retry_in_a_second(envelope(
            StatusCode::OK,
            429,
            "simulated fault",
            Value::Null,
        )),
        Refusal::Fault(code) => envelope(StatusCode::OK, code, "simulated fault", Value::Null),
    }
}

async fn create_task(
    State(state): State<Arc<SimState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    state.create_received();
    match create(&state, &headers, &body).await {
        Ok(task_id) => envelope(StatusCode::OK, 200, "success", json!({ "taskId": task_id })),
        Err(err) => refusal(err),
    }
}

async fn create(
    state: &Arc<SimState>,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<String, Refusal> {
    let (mut body, account) = create_request(state, headers, body)?;
    let callback_url = take_callback_url(&mut body, &["callBackUrl", "progressCallBackUrl"]);
    let rule = model(state, ProviderKind::Kie, body["model"].as_str())?;
    let input = &body["input"];
    let prompt = crate::contract::prompt(input)?;
    let shape = read_fields(rule, input)?;
    let request = CreateRequest {
        provider: ProviderKind::Kie,
        body: body.clone(),
        prompt,
        callback_url,
        moderates_at_create: false,
        shape,
        account,
    };
    accept(state, request, format!("task_{}", random_hex())).await
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

/// How a finished task's failure reads in `failCode`/`failMsg`.
fn failure(outcome: Outcome) -> (&'static str, &'static str) {
    match outcome {
        Outcome::Moderated => (
            "400",
            "Your prompt was flagged as violating our content policy",
        ),
        _ => ("500", "Internal error during generation"),
    }
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
    if let Err(err) = query_allowed(&state, &headers) {
        return refusal(err);
    }
    let task_id = query.task_id;
    let Some(record) = state.task_record(&task_id) else {
        return envelope(StatusCode::OK, 404, "task not found", Value::Null);
    };
    let finished = !matches!(record.phase, Phase::Running);
    let mut data = match record.phase {
        // The record documents `failCode` and `failMsg` as null until a task fails.
        Phase::Running => json!({ "state": "generating", "failCode": null, "failMsg": null }),
        Phase::Done { result_url } => json!({
            "state": "success",
            "resultJson": json!({ "resultUrls": [result_url] }).to_string(),
            "failCode": null,
            "failMsg": null,
        }),
        Phase::Ended(outcome) => {
            let (fail_code, fail_msg) = failure(outcome);
            json!({ "state": "fail", "failCode": fail_code, "failMsg": fail_msg })
        }
    };
    // The record echoes the create: its model, the whole request as a JSON string, and when.
    data["taskId"] = json!(task_id);
    data["model"] = record.request["model"].clone();
    data["param"] = json!(record.request.to_string());
    data["createTime"] = json!(record.created_s * 1000);
    if finished {
        // How long it took and when it ended, in ms, as the record documents.
        let cost_ms = state.config.generation_time.as_millis() as u64;
        data["costTime"] = json!(cost_ms);
        data["completeTime"] = json!(record.created_s * 1000 + cost_ms);
    }
    envelope(StatusCode::OK, 200, "success", data)
}

/// The completion callback: code 200 with `resultUrls`, or 500 when the task failed.
pub(crate) fn callback_body(task_id: &str, phase: &Phase) -> Value {
    match phase {
        Phase::Done { result_url } => json!({
            "code": 200,
            "msg": "success",
            "data": { "taskId": task_id, "promptJson": "{}", "resultUrls": [result_url] },
        }),
        _ => json!({
            "code": 500,
            "msg": "generation failed",
            "data": { "taskId": task_id, "promptJson": "{}" },
        }),
    }
}
