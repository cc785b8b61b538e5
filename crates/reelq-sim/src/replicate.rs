//! Replicate's predictions contract, as its HTTP API reference and webhook pages describe it:
//! `POST /v1/models/{owner}/{name}/predictions` with `{"input", "webhook",
//! "webhook_events_filter"}` (answered 201 with the prediction), `GET /v1/predictions/{id}`,
//! `GET /v1/predictions` (newest first, 100 a page, `next` a cursor URL), `GET /v1/account`,
//! webhooks whose body is the prediction, signed per Standard Webhooks with the account's
//! secret, and errors as problem details (`{"title", "detail", "status"}`). Moderation
//! refuses during generation: the prediction fails with Replicate's E005 message.

use std::sync::Arc;

use axum::{
    Json, Router,
    body::Bytes,
    extract::{Path, Query, State},
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use reelq_core::{ImageRule, ProviderKind};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::contracts::SimContract;
use crate::{
    contract::{
        CreateRequest, Outcome, Phase, Refusal, TaskRecord, accept, authorized, create_request,
        gateway_failure, model, prompt, query_allowed, random_hex, read_fields, retry_in_a_second,
    },
    simulator::SimState,
};

/// What a prediction flagged by Replicate's safety checker fails with.
pub(crate) const FLAGGED: &str =
    "The input or output was flagged as sensitive. Please try again with different inputs. (E005)";

pub(crate) const CONTRACT: SimContract = SimContract {
    kind: ProviderKind::Replicate,
    routes: |_| routes(),
    callback_body: |state, task_id, _| {
        state
            .task_record(task_id)
            .map(|record| prediction_body(state, &record))
    },
    // Replicate signs its webhooks per Standard Webhooks too, with the account's secret.
    callback_headers: crate::openai::signed_per_standard_webhooks,
};

fn routes() -> Router<Arc<SimState>> {
    Router::new()
        .route(
            "/v1/models/{owner}/{name}/predictions",
            post(create_prediction),
        )
        .route("/v1/predictions", get(list))
        .route("/v1/predictions/{id}", get(prediction))
        .route("/v1/predictions/{id}/cancel", post(cancel))
        .route("/v1/account", get(account))
}

fn problem(status: StatusCode, title: &str, detail: &str) -> Response {
    let body = json!({ "title": title, "detail": detail, "status": status.as_u16() });
    (
        status,
        [(axum::http::header::CONTENT_TYPE, "application/problem+json")],
        body.to_string(),
    )
        .into_response()
}

fn refusal(refusal: Refusal) -> Response {
    match refusal {
        Refusal::BadKey => problem(
            StatusCode::UNAUTHORIZED,
            "Unauthenticated",
            "You did not pass a valid authentication token",
        ),
        Refusal::AfterAccept(code) => gateway_failure(code),
        Refusal::Invalid(message) | Refusal::Withdrawn(message) => problem(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Input validation failed",
            &message,
        ),
        // Replicate moderates while generating; a refusal at create never happens here.
        Refusal::Moderated => problem(StatusCode::UNPROCESSABLE_ENTITY, "Flagged", FLAGGED),
        Refusal::Fault(402) => problem(
            StatusCode::PAYMENT_REQUIRED,
            "Insufficient credit",
            "You have insufficient credit to run this model",
        ),
        Refusal::Fault(429) => retry_in_a_second(problem(
            StatusCode::TOO_MANY_REQUESTS,
            "Request was throttled.",
            "Expected available in 1 second.",
        )),
        Refusal::Fault(_) => problem(
            StatusCode::INTERNAL_SERVER_ERROR,
            "Internal server error",
            "simulated fault",
        ),
    }
}

/// The top-level fields a create may carry.
const CREATE_FIELDS: &[&str] = &["input", "webhook", "webhook_events_filter"];

async fn create_prediction(
    State(state): State<Arc<SimState>>,
    Path((owner, name)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    state.create_received();
    match create(&state, &format!("{owner}/{name}"), &headers, &body).await {
        Ok(id) => match state.task_record(&id) {
            Some(record) => {
                (StatusCode::CREATED, Json(prediction_body(&state, &record))).into_response()
            }
            None => problem(StatusCode::NOT_FOUND, "Not found", "prediction not found"),
        },
        Err(err) => refusal(err),
    }
}

async fn create(
    state: &Arc<SimState>,
    model_name: &str,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<String, Refusal> {
    let (mut body, account) = create_request(state, headers, body)?;
    if let Some(unknown) = body
        .as_object()
        .into_iter()
        .flat_map(|fields| fields.keys())
        .find(|field| !CREATE_FIELDS.contains(&field.as_str()))
    {
        return Err(Refusal::Invalid(format!(
            "{unknown} is not a prediction field"
        )));
    }
    let callback_url = body
        .as_object_mut()
        .and_then(|fields| fields.remove("webhook"))
        .and_then(|url| url.as_str().map(str::to_owned));
    if callback_url.is_some() && body["webhook_events_filter"] != json!(["completed"]) {
        return Err(Refusal::Invalid(
            "this simulator expects webhook_events_filter [\"completed\"]".into(),
        ));
    }
    let rule = model(state, ProviderKind::Replicate, Some(model_name))?;
    let input = body["input"].clone();
    let prompt = prompt(&input)?;
    let shape = read_fields(rule, &input)?;
    let images = rule
        .request
        .images
        .as_ref()
        .map_or(0, |images| usize::from(input[&images.field].is_string()));
    match rule.images {
        ImageRule::Exactly(n) if images != n => {
            return Err(Refusal::Invalid(format!("{} needs {n} image", rule.model)));
        }
        ImageRule::AtMost(n) if images > n => {
            return Err(Refusal::Invalid(format!("at most {n} image")));
        }
        _ => {}
    }
    // The model is in the path; the record keeps it beside the body, as Replicate's does.
    body["model"] = json!(model_name);
    let request = CreateRequest {
        provider: ProviderKind::Replicate,
        body: body.clone(),
        prompt,
        callback_url,
        moderates_at_create: false,
        shape,
        account,
    };
    // Replicate's ids: 26 lowercase letters and digits.
    let id: String = random_hex().chars().take(26).collect();
    accept(state, request, id).await
}

/// The prediction, as create, status, list and webhooks all show it.
pub(crate) fn prediction_body(state: &SimState, record: &TaskRecord) -> Value {
    let api = format!("{}/v1/predictions/{}", state.base_url, record.task_id);
    let created_at = humantime::format_rfc3339_micros(
        std::time::UNIX_EPOCH + std::time::Duration::from_secs(record.created_s),
    )
    .to_string();
    let mut prediction = json!({
        "id": record.task_id,
        "model": record.request["model"],
        "version": "hidden",
        "input": record.request["input"],
        "logs": "",
        "output": null,
        "data_removed": false,
        "error": null,
        "source": "api",
        "created_at": created_at,
        "started_at": created_at,
        "metrics": {},
        "urls": { "get": api, "cancel": format!("{api}/cancel"), "web": format!("https://replicate.com/p/{}", record.task_id) },
    });
    let status = match &record.phase {
        Phase::Running => "processing",
        Phase::Done { result_url } => {
            prediction["output"] = json!(result_url);
            prediction["completed_at"] = json!(created_at);
            prediction["metrics"] = json!({ "predict_time": 1.0 });
            "succeeded"
        }
        Phase::Ended(Outcome::Cancelled) => {
            prediction["completed_at"] = json!(created_at);
            "canceled"
        }
        Phase::Ended(outcome) => {
            prediction["error"] = json!(match outcome {
                Outcome::Moderated => FLAGGED,
                _ => "Prediction failed.",
            });
            prediction["completed_at"] = json!(created_at);
            "failed"
        }
    };
    prediction["status"] = json!(status);
    prediction
}

/// `answer` for the prediction `id` of this account, or the answer refusing to show it.
fn with_prediction(
    state: &SimState,
    headers: &HeaderMap,
    id: &str,
    answer: impl FnOnce(TaskRecord) -> Response,
) -> Response {
    if let Err(err) = query_allowed(state, headers) {
        return refusal(err);
    }
    match state.task_record(id) {
        Some(record) if record.provider == ProviderKind::Replicate => answer(record),
        _ => problem(StatusCode::NOT_FOUND, "Not found", "prediction not found"),
    }
}

async fn prediction(
    State(state): State<Arc<SimState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    with_prediction(&state, &headers, &id, |record| {
        Json(prediction_body(&state, &record)).into_response()
    })
}

/// `POST /v1/predictions/{id}/cancel`: a running prediction ends `canceled`; the answer is the
/// prediction either way.
async fn cancel(
    State(state): State<Arc<SimState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    with_prediction(&state, &headers, &id, |record| {
        state.cancel_task(&id);
        let record = state.task_record(&id).unwrap_or(record);
        Json(prediction_body(&state, &record)).into_response()
    })
}

/// `GET /v1/predictions?cursor=N`: the account's predictions, newest first, 100 a page.
#[derive(Deserialize)]
struct ListQuery {
    #[serde(default)]
    cursor: Option<usize>,
}

const PAGE: usize = 100;

async fn list(
    State(state): State<Arc<SimState>>,
    headers: HeaderMap,
    Query(query): Query<ListQuery>,
) -> Response {
    if let Err(err) = query_allowed(&state, &headers) {
        return refusal(err);
    }
    let records = state.task_records(ProviderKind::Replicate);
    let start = query.cursor.unwrap_or(0);
    let results: Vec<Value> = records
        .iter()
        .skip(start)
        .take(PAGE)
        .map(|record| prediction_body(&state, record))
        .collect();
    let next = (start + results.len() < records.len())
        .then(|| format!("{}/v1/predictions?cursor={}", state.base_url, start + PAGE));
    Json(json!({ "previous": null, "next": next, "results": results })).into_response()
}

/// `GET /v1/account`: who the key belongs to.
async fn account(State(state): State<Arc<SimState>>, headers: HeaderMap) -> Response {
    match authorized(&state, &headers) {
        Ok(_) => Json(json!({ "type": "user", "username": "sim", "name": "reelq simulator" }))
            .into_response(),
        Err(err) => refusal(err),
    }
}
