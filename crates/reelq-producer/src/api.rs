//! The HTTP enqueue API, for producers in other languages. Every request needs
//! `Authorization: Bearer <token>`; the token is an [`ApiToken`], never empty. An
//! `Idempotency-Key` header makes a POST safe to retry: the same key with the same request
//! within a day enqueues once and answers the first receipt again (200); the same key with
//! another request is 422 `idempotency_key_reused` and enqueues nothing. Keys are per
//! endpoint: a key used on `/v1/jobs` is another key on `/v1/batches`.
//!
//! The largest request is 32 MiB (about 350,000 manifest lines); larger manifests go through
//! `reelq batch submit`, which has no limit but memory. A batch of any size is enqueued all
//! or none, in steps that each hold Redis for milliseconds (`reelq_queue`'s enqueue module);
//! once its jobs are committed, the answer is their receipt, never an error.
//!
//! | route                   | answers                                                       |
//! |-------------------------|---------------------------------------------------------------|
//! | `POST /v1/jobs`         | 201 the job's record with `Location: /v1/jobs/{id}` (and `job_ids`, as before); 200 on a replay; 400 naming the field |
//! | `GET /v1/jobs?state=&limit=&cursor=` | 200 `{"data":[record, ...],"next_cursor"}`: most recently changed first, any of the comma-separated states (all if none), `limit` 1–500 (50), the next page from `next_cursor`; 400 naming a bad parameter |
//! | `GET /v1/jobs/{id}`     | 200 the job's record, with `video_url` once stored (given the store); 404 |
//! | `POST /v1/jobs/{id}/cancel` | 200 the job's record, cancelled; 409 `not_cancellable` once submitted or ended; 404 |
//! | `GET /v1/jobs/{id}/content` | 200 the stored video, or 206 one `Range: bytes=` range; 404 not stored; 416 a range past the end |
//! | `POST /v1/batches?name=&budget_usd=&start_after=&priority=&notify_url=` | JSONL or a JSON array; 201 `{"batch_id","job_ids"}` with `Location: /v1/batches/{id}`; 400 listing every bad line, or naming a bad option |
//! | `GET /v1/batches/{id}`  | 200 `{"batch_id","name","jobs","states":{state: count},"reserved_usd","budget_usd"}`; 404 |
//! | `GET /v1/batches/{id}/jobs?limit=&cursor=` | 200 `{"data":[record, ...],"next_cursor"}` in enqueue order; 404 |
//! | `GET /openapi.json`     | this API's OpenAPI 3.1 document, generated from the handlers and types below (`api/openapi.rs`) |
//!
//! `/healthz` and `/readyz` (Redis answers: 200 `ready`, else 503) answer without the token
//! and say nothing else, for probes; `/metrics` (Prometheus text: requests by route and
//! status, their durations, build info) needs the token, as a scrape's `authorization`.
//!
//! Every error carries `{"code","detail"}` (unknown routes 404, wrong methods 405, a 401
//! with `WWW-Authenticate: Bearer`); internal errors are logged and answered 500 `internal`
//! without their detail; an unreachable ledger is 503 `unavailable` with `Retry-After: 1`. An enqueue that could not be proven durable (replicas did not acknowledge it, or Redis
//! can lose writes) is 503 `not_durable` with `Retry-After: 1`: retry it under the same
//! `Idempotency-Key`.

use std::{collections::BTreeMap, time::Duration};

use axum::{
    Json, Router,
    body::Bytes,
    extract::{DefaultBodyLimit, Path, Request, State, rejection::BytesRejection},
    http::{HeaderMap, StatusCode, header},
    middleware::{self, Next},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use reelq_core::{ApiToken, BatchId, BatchOptions, JobId, JobRequest, JobSpec, JobState};
use reelq_queue::{CancelOutcome, JobRecord, PageCursor};
use reelq_storage::{ByteRange, VideoStore};
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::{IntoParams, ToSchema};

mod openapi;

use crate::{Client, ProducerError, Receipt, client::now_ms, parse_json_batch, parse_manifest};

/// Big enough for a 10,000-line manifest.
const MAX_BODY_BYTES: usize = 32 * 1024 * 1024;

#[derive(Clone)]
struct ApiState {
    client: Client,
    token: ApiToken,
    videos: Option<Videos>,
}

/// Where the workers store videos, so the API can hand them out: S3 stores get presigned
/// links valid for `link_ttl`; a local store's videos are served by `/v1/jobs/{id}/content`.
#[derive(Clone)]
pub struct Videos {
    pub store: VideoStore,
    pub link_ttl: Duration,
}

/// The API's router; serve it with `axum::serve`. Without `videos`, job records carry no
/// link and `/content` answers 404. It serves the process's Prometheus recorder at
/// `/metrics` (the token required), installing it if nothing else did.
pub fn app(client: Client, token: ApiToken, videos: Option<Videos>) -> Router {
    reelq_http::metrics::install(&[], &[]);
    let probes = probes(client.clone());
    let state = ApiState {
        client,
        token,
        videos,
    };
    let api = Router::new()
        .route("/v1/jobs", post(create_job).get(list_jobs))
        .route("/v1/jobs/{job_id}", get(job))
        .route("/v1/jobs/{job_id}/content", get(content))
        .route("/v1/jobs/{job_id}/cancel", post(cancel))
        .route("/v1/batches", post(create_batch))
        .route("/v1/batches/{batch_id}", get(batch))
        .route("/v1/batches/{batch_id}/jobs", get(batch_jobs))
        .route("/openapi.json", get(|| async { Json(openapi::document()) }))
        .route("/metrics", get(|| async { reelq_http::metrics::render() }))
        .fallback(|| async { client_error(StatusCode::NOT_FOUND, "not_found", "no such route") })
        .method_not_allowed_fallback(|| async {
            client_error(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "this route does not take that method",
            )
        })
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(middleware::from_fn_with_state(state.clone(), authenticate))
        .with_state(state);
    probes.merge(api)
}

/// `/healthz` (the process answers) and `/readyz` (and Redis does), for load balancers and
/// Kubernetes probes: the only routes without the token, answering one word and nothing of
/// the ledger.
fn probes(client: Client) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route(
            "/readyz",
            get(|State(client): State<Client>| async move {
                match client.ping().await {
                    Ok(()) => (StatusCode::OK, "ready"),
                    Err(_) => (StatusCode::SERVICE_UNAVAILABLE, "redis unreachable"),
                }
            }),
        )
        .with_state(client)
}

/// Every error answer: a stable `code` to act on and a `detail` for people (a sentence; the
/// field and its message; a manifest's bad lines).
#[derive(Serialize, ToSchema)]
pub(crate) struct ErrorAnswer {
    code: String,
    #[schema(value_type = Value)]
    detail: serde_json::Value,
}

fn client_error(status: StatusCode, code: &str, detail: impl Into<serde_json::Value>) -> Response {
    let answer = ErrorAnswer {
        code: code.to_owned(),
        detail: detail.into(),
    };
    (status, Json(answer)).into_response()
}

/// A job as the API answers it: its ledger record, and where its video is once stored.
#[derive(Serialize, ToSchema)]
pub(crate) struct JobAnswer {
    #[serde(flatten)]
    record: JobRecord,
    /// Where the stored video can be fetched: a presigned link (S3 stores) or
    /// `/v1/jobs/{id}/content`. Absent until stored, or when the API was not given the store.
    #[serde(skip_serializing_if = "Option::is_none")]
    video_url: Option<String>,
    /// The created job's id in a list, as the first version of the API answered (on create
    /// only).
    #[serde(skip_serializing_if = "Option::is_none")]
    job_ids: Option<Vec<JobId>>,
    /// On create: what the producer must know of the model it asked for (deprecated by its
    /// provider: its end and replacement). Absent when there is nothing to say.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    warnings: Vec<String>,
}

/// A page of jobs and the cursor of the next one (null on the last page).
#[derive(Serialize, ToSchema)]
pub(crate) struct JobsPage {
    data: Vec<JobRecord>,
    next_cursor: Option<String>,
}

/// A batch's progress.
#[derive(Serialize, ToSchema)]
pub(crate) struct BatchAnswer {
    batch_id: BatchId,
    name: Option<String>,
    /// How many jobs the batch has.
    jobs: u64,
    /// Its jobs in each state (states with none left out).
    states: BTreeMap<String, usize>,
    /// The estimates its submits have reserved against its budget, in dollars.
    reserved_usd: Option<f64>,
    budget_usd: Option<f64>,
}

/// 503 with `Retry-After: 1`: nothing was done, or nothing is proven; the client retries.
fn retry_shortly(code: &str, detail: &str) -> Response {
    let mut response = client_error(StatusCode::SERVICE_UNAVAILABLE, code, detail);
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
    response
}

/// The answer refusing a body that could not be read, in the API's one error shape: over
/// [`MAX_BODY_BYTES`] is 413 `body_too_large` (the framework's own answer is plain text).
fn refused_body(rejection: BytesRejection) -> Response {
    match rejection.status() {
        StatusCode::PAYLOAD_TOO_LARGE => client_error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
            format!("the body is over {} MiB", MAX_BODY_BYTES / (1024 * 1024)),
        ),
        status => client_error(status, "malformed_body", rejection.body_text()),
    }
}

fn internal(err: ProducerError) -> Response {
    if let ProducerError::Invalid(err) = &err {
        let detail = json!({ "field": err.field, "message": err.message });
        return client_error(StatusCode::BAD_REQUEST, "invalid_job", detail);
    }
    if let ProducerError::Queue(reelq_queue::QueueError::IdempotencyConflict(key)) = &err {
        return client_error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "idempotency_key_reused",
            json!({
                "field": "Idempotency-Key",
                "message": format!("{key:?} was already used for a different request; nothing was enqueued"),
            }),
        );
    }
    if let ProducerError::Queue(
        queue_err @ (reelq_queue::QueueError::NotDurable { .. }
        | reelq_queue::QueueError::Unsafe(_)),
    ) = &err
    {
        // Not proven durable: the jobs may or may not be kept, so the client retries, under
        // the same Idempotency-Key.
        tracing::warn!(error = %queue_err, "enqueue not proven durable");
        return retry_shortly(
            "not_durable",
            "the enqueue could not be made durable; retry with the same Idempotency-Key",
        );
    }
    if let ProducerError::Queue(reelq_queue::QueueError::Redis(redis_err)) = &err {
        // The ledger is unreachable (restarting, failing over): nothing was done; try again.
        tracing::warn!(error = %redis_err, "api request found redis unreachable");
        return retry_shortly(
            "unavailable",
            "the ledger is unreachable; retry (with the same Idempotency-Key for a POST)",
        );
    }
    if let ProducerError::Store(store_err) = &err {
        // The object store (videos, archived history) is unreachable: nothing was changed.
        tracing::warn!(error = %store_err, "api request found the store unreachable");
        return retry_shortly("unavailable", "the object store is unreachable; retry");
    }
    tracing::error!(error = %err, "api request failed");
    client_error(
        StatusCode::INTERNAL_SERVER_ERROR,
        "internal",
        "the request failed inside reelq; its log says why",
    )
}

async fn authenticate(State(state): State<ApiState>, request: Request, next: Next) -> Response {
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "))
        .unwrap_or_default();
    if !state.token.matches(presented.as_bytes()) {
        let mut response = client_error(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "a valid bearer token is required",
        );
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            header::HeaderValue::from_static("Bearer realm=\"reelq\""),
        );
        return response;
    }
    next.run(request).await
}

/// Enqueues one job. A job is refused whole, naming the first bad field.
#[utoipa::path(
    post,
    path = "/v1/jobs",
    request_body(content = JobRequest, content_type = "application/json"),
    params(("Idempotency-Key" = Option<String>, Header, description = IDEMPOTENCY_KEY)),
    responses(
        (status = 201, description = "Enqueued", body = JobAnswer,
            headers(("Location" = String, description = "The job's resource")),
            links(
                ("GetJob" = (operation_id = "job", parameters(("job_id" = "$response.body#/job_id")))),
                ("CancelJob" = (operation_id = "cancel", parameters(("job_id" = "$response.body#/job_id")))),
                ("GetVideo" = (operation_id = "content", parameters(("job_id" = "$response.body#/job_id")))),
            )),
        (status = 200, description = "A replay: the job this Idempotency-Key enqueued", body = JobAnswer,
            headers(("Location" = String, description = "The job's resource"))),
        (status = 400, description = "`invalid_job` naming the field, or `malformed_json`", body = ErrorAnswer),
        (status = 413, description = "`body_too_large`: over 32 MiB", body = ErrorAnswer),
        (status = 422, description = "`idempotency_key_reused` with another request", body = ErrorAnswer),
    )
)]
async fn create_job(
    State(state): State<ApiState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let body = match body {
        Ok(body) => body,
        Err(rejection) => return refused_body(rejection),
    };
    let Ok(text) = std::str::from_utf8(&body) else {
        return client_error(
            StatusCode::BAD_REQUEST,
            "malformed_json",
            "the body is not UTF-8",
        );
    };
    let request = match JobRequest::from_json(text) {
        Ok(request) => request,
        // A value of the wrong type or range: the field is named, as validation names it.
        Err(reelq_core::RequestJsonError {
            field: Some(field),
            message,
        }) => {
            let detail = json!({ "field": field, "message": message });
            return client_error(StatusCode::BAD_REQUEST, "invalid_job", detail);
        }
        Err(err) => {
            return client_error(StatusCode::BAD_REQUEST, "malformed_json", err.to_string());
        }
    };
    let spec = match request.validate(state.client.catalog(), now_ms()) {
        Ok(spec) => spec,
        Err(err) => {
            let detail = json!({ "field": err.field, "message": err.message });
            return client_error(StatusCode::BAD_REQUEST, "invalid_job", detail);
        }
    };
    enqueue(&state, &headers, vec![spec], None).await
}

/// `POST /v1/batches` options: the batch's settings.
#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct BatchQuery {
    /// A name to find the batch by.
    name: Option<String>,
    /// The most the batch may spend, in dollars, by its jobs' estimates.
    #[param(minimum = 0)]
    budget_usd: Option<f64>,
    /// RFC 3339 time before which none of its jobs is submitted.
    start_after: Option<String>,
    /// `low`: its jobs go only when no normal job is due.
    #[param(inline)]
    priority: Option<BatchPriority>,
    /// Where reelq POSTs the batch's signed summary when its last job ends.
    notify_url: Option<String>,
}

#[derive(Deserialize, ToSchema, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub(crate) enum BatchPriority {
    Normal,
    Low,
}

/// What the `Idempotency-Key` header of a POST does.
const IDEMPOTENCY_KEY: &str =
    "Makes the POST safe to retry: the same key with the same request within a day enqueues once";

/// Enqueues a batch, all or none: a JSONL manifest or a JSON array of jobs.
#[utoipa::path(
    post,
    path = "/v1/batches",
    request_body(content(
        (Vec<JobRequest> = "application/json"),
        (String = "application/x-ndjson"),
    )),
    params(BatchQuery, ("Idempotency-Key" = Option<String>, Header, description = IDEMPOTENCY_KEY)),
    responses(
        (status = 201, description = "Enqueued", body = Receipt,
            headers(("Location" = String, description = "The batch's resource")),
            links(
                ("GetBatch" = (operation_id = "batch", parameters(("batch_id" = "$response.body#/batch_id")))),
                ("GetBatchJobs" = (operation_id = "batch_jobs", parameters(("batch_id" = "$response.body#/batch_id")))),
            )),
        (status = 200, description = "A replay: what this Idempotency-Key enqueued", body = Receipt,
            headers(("Location" = String, description = "The batch's resource"))),
        (status = 400, description = "`invalid_batch` listing every bad line, `invalid_query` naming a bad option, or `malformed_body`", body = ErrorAnswer),
        (status = 413, description = "`body_too_large`: over 32 MiB", body = ErrorAnswer),
        (status = 422, description = "`idempotency_key_reused` with another request", body = ErrorAnswer),
    )
)]
async fn create_batch(
    State(state): State<ApiState>,
    query: Result<axum::extract::Query<BatchQuery>, axum::extract::rejection::QueryRejection>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let body = match body {
        Ok(body) => body,
        Err(rejection) => return refused_body(rejection),
    };
    let bad =
        |detail: serde_json::Value| client_error(StatusCode::BAD_REQUEST, "invalid_query", detail);
    let query = match query {
        Ok(axum::extract::Query(query)) => query,
        Err(err) => return bad(json!(err.body_text())),
    };
    let options = match BatchOptions::checked(
        query.name,
        query.start_after.as_deref(),
        query.budget_usd,
        query.priority == Some(BatchPriority::Low),
        query.notify_url,
        now_ms(),
    ) {
        Ok(options) => options,
        Err(err) => return bad(json!({ "field": err.field, "message": err.message })),
    };
    let Ok(text) = std::str::from_utf8(&body) else {
        return client_error(
            StatusCode::BAD_REQUEST,
            "malformed_body",
            "the body is not UTF-8",
        );
    };
    let parsed = if text.trim_start().starts_with('[') {
        parse_json_batch(text, state.client.catalog(), now_ms())
    } else {
        parse_manifest(text, state.client.catalog(), now_ms())
    };
    match parsed {
        Ok(specs) => enqueue(&state, &headers, specs, Some(options)).await,
        Err(err) => {
            let problems: Vec<_> = err
                .problems
                .iter()
                .map(|p| json!({ "line": p.line, "message": p.message }))
                .collect();
            client_error(StatusCode::BAD_REQUEST, "invalid_batch", problems)
        }
    }
}

async fn enqueue(
    state: &ApiState,
    headers: &HeaderMap,
    specs: Vec<JobSpec>,
    batch: Option<BatchOptions>,
) -> Response {
    let key = headers
        .get("idempotency-key")
        .and_then(|value| value.to_str().ok());
    let warnings = state.client.lifecycle_notices(&specs);
    let receipt = match (key, &batch) {
        (Some(key), _) => {
            let scope = match batch {
                Some(_) => "api-batches",
                None => "api-jobs",
            };
            state
                .client
                .enqueue_once(specs, batch.as_ref(), (scope, key), &|_| {})
                .await
        }
        (None, Some(options)) => {
            state
                .client
                .enqueue_batch_with(specs, options)
                .await
                .map(|batch| Receipt {
                    batch_id: Some(batch.batch_id),
                    job_ids: batch.job_ids,
                    replayed: false,
                })
        }
        (None, None) => {
            let spec = specs.into_iter().next().expect("one job");
            state.client.enqueue_spec(spec).await.map(|job_id| Receipt {
                batch_id: None,
                job_ids: vec![job_id],
                replayed: false,
            })
        }
    };
    let receipt = match receipt {
        Ok(receipt) => receipt,
        Err(err) => return internal(err),
    };
    let status = match receipt.replayed {
        true => StatusCode::OK,
        false => StatusCode::CREATED,
    };
    let (location, body) = match (receipt.batch_id, receipt.job_ids.first()) {
        (Some(batch_id), _) => {
            let mut body = json!(receipt);
            if !warnings.is_empty() {
                body["warnings"] = json!(warnings);
            }
            (format!("/v1/batches/{batch_id}"), body)
        }
        (None, Some(&job_id)) => {
            // The job's resource, as `GET /v1/jobs/{id}` answers it (the receipt's
            // `job_ids` kept for clients written against it).
            let record = match state.client.status(job_id).await {
                Ok(Some(record)) => record,
                // Enqueued a moment ago: only a flushed ledger has lost it.
                Ok(None) => return client_error(StatusCode::NOT_FOUND, "not_found", "no such job"),
                Err(err) => return internal(err),
            };
            let answer = JobAnswer {
                record,
                video_url: None,
                job_ids: Some(receipt.job_ids),
                warnings,
            };
            (format!("/v1/jobs/{job_id}"), json!(answer))
        }
        (None, None) => return (status, Json(receipt)).into_response(),
    };
    (status, [(header::LOCATION, location)], Json(body)).into_response()
}

/// `GET /v1/jobs` parameters.
#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct ListQuery {
    /// Comma-separated states (`failed,uncertain`); all if absent.
    state: Option<String>,
    /// Jobs per page.
    #[param(minimum = 1, maximum = 500)]
    limit: Option<usize>,
    /// The `next_cursor` of the page before.
    cursor: Option<String>,
    /// Instead of the jobs in Redis: the jobs made on this UTC day (`2026-12-07`) that have
    /// left Redis for the archived history, by id (needs `reelq serve --store`).
    #[param(value_type = Option<String>, format = Date)]
    day: Option<String>,
}

/// `GET /v1/batches/{id}/jobs` parameters.
#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct PageQuery {
    /// Jobs per page.
    #[param(minimum = 1, maximum = 500)]
    limit: Option<usize>,
    /// The `next_cursor` of the page before.
    cursor: Option<String>,
}

/// The most jobs one page holds.
const MAX_PAGE: usize = 500;

/// A page size from `limit`: 50 if absent, at most [`MAX_PAGE`]; else what is wrong.
fn page_limit(limit: Option<usize>) -> Result<usize, String> {
    let limit = limit.unwrap_or(50);
    match (1..=MAX_PAGE).contains(&limit) {
        true => Ok(limit),
        false => Err(format!("limit: {limit} is not between 1 and {MAX_PAGE}")),
    }
}

/// Jobs, most recently changed first; or, with `day`, a day's archived jobs by id.
#[utoipa::path(
    get,
    path = "/v1/jobs",
    params(ListQuery),
    responses(
        (status = 200, description = "A page", body = JobsPage),
        (status = 400, description = "`invalid_query` naming the bad parameter", body = ErrorAnswer),
    )
)]
async fn list_jobs(
    State(state): State<ApiState>,
    query: Result<axum::extract::Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let bad = |detail: String| client_error(StatusCode::BAD_REQUEST, "invalid_query", detail);
    let Ok(axum::extract::Query(query)) = query else {
        return bad("the parameters are state, limit, cursor and day".into());
    };
    let mut states = Vec::new();
    for name in query
        .state
        .iter()
        .flat_map(|s| s.split(','))
        .filter(|s| !s.is_empty())
    {
        match name.parse::<JobState>() {
            Ok(job_state) => states.push(job_state),
            Err(err) => return bad(format!("state: {err}")),
        }
    }
    let limit = match page_limit(query.limit) {
        Ok(limit) => limit,
        Err(problem) => return bad(problem),
    };
    if let Some(day) = &query.day {
        let Ok(day) = day.parse::<chrono::NaiveDate>() else {
            return bad(format!("day: {day:?} is not a date (2026-12-07)"));
        };
        let after = match query.cursor.as_deref().map(str::parse::<JobId>) {
            None => None,
            Some(Ok(job_id)) => Some(job_id),
            Some(Err(_)) => return bad("cursor: not one this API gave".into()),
        };
        return match state.client.archived_page(day, &states, after, limit).await {
            Ok((records, next)) => Json(JobsPage {
                data: records,
                next_cursor: next.map(|job_id| job_id.to_string()),
            })
            .into_response(),
            Err(ProducerError::NoHistory) => {
                bad("day: this server reads no archived history (start it with --store)".into())
            }
            Err(err) => internal(err),
        };
    }
    let cursor = match query.cursor.as_deref().map(str::parse::<PageCursor>) {
        None => None,
        Some(Ok(cursor)) => Some(cursor),
        Some(Err(())) => return bad("cursor: not one this API gave".into()),
    };
    match state.client.jobs_page(&states, cursor, limit).await {
        Ok((records, next)) => Json(JobsPage {
            data: records,
            next_cursor: next.map(|cursor| cursor.to_string()),
        })
        .into_response(),
        Err(err) => internal(err),
    }
}

/// One job.
#[utoipa::path(
    get,
    path = "/v1/jobs/{job_id}",
    params(("job_id" = JobId, Path)),
    responses(
        (status = 200, description = "The job", body = JobAnswer),
        (status = 404, description = "`not_found`", body = ErrorAnswer),
    )
)]
async fn job(State(state): State<ApiState>, Path(job_id): Path<String>) -> Response {
    let Ok(job_id) = job_id.parse::<JobId>() else {
        return client_error(StatusCode::NOT_FOUND, "not_found", "no such job");
    };
    let record = match state.client.status(job_id).await {
        Ok(Some(record)) => record,
        Ok(None) => return client_error(StatusCode::NOT_FOUND, "not_found", "no such job"),
        Err(err) => return internal(err),
    };
    let video_url = match &state.videos {
        Some(videos) => {
            let local = format!("/v1/jobs/{job_id}/content");
            match video_link(videos, &record, Asset::Video, local).await {
                Ok(link) => link,
                Err(err) => return internal(err),
            }
        }
        None => None,
    };
    Json(JobAnswer {
        record,
        video_url,
        job_ids: None,
        warnings: Vec::new(),
    })
    .into_response()
}

/// What of a stored job's to hand out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Asset {
    Video,
    /// The provider's still image of it, where the provider offers one.
    Thumbnail,
}

impl Asset {
    fn key(self, record: &reelq_queue::JobRecord) -> Option<&str> {
        match self {
            Asset::Video => record.object_key.as_deref(),
            Asset::Thumbnail => record.thumbnail_key.as_deref(),
        }
    }
}

/// Where a stored job's video can be fetched: a presigned link for S3 (valid for
/// `videos.link_ttl`), else `local_path`, a route of the caller's that serves it with
/// [`video_response`]. None until the job is stored.
pub async fn video_link(
    videos: &Videos,
    record: &reelq_queue::JobRecord,
    asset: Asset,
    local_path: String,
) -> Result<Option<String>, ProducerError> {
    let Some(key) = asset.key(record) else {
        return Ok(None);
    };
    Ok(Some(
        videos
            .store
            .link(key, videos.link_ttl)
            .await?
            .unwrap_or(local_path),
    ))
}

/// Cancels a job not yet submitted, or asks its provider to stop a submitted one where the
/// provider can (fal, Replicate): the job then ends `cancelled` once the provider's task has
/// stopped.
#[utoipa::path(
    post,
    path = "/v1/jobs/{job_id}/cancel",
    params(("job_id" = JobId, Path)),
    responses(
        (status = 200, description = "The job, cancelled", body = JobAnswer),
        (status = 202, description = "The job, submitted: its provider was asked to stop it", body = JobAnswer),
        (status = 404, description = "`not_found`", body = ErrorAnswer),
        (status = 409, description = "`not_cancellable`: ended, being submitted, or at a provider that cannot stop a generation", body = ErrorAnswer),
    )
)]
async fn cancel(State(state): State<ApiState>, Path(job_id): Path<String>) -> Response {
    let Ok(job_id) = job_id.parse::<JobId>() else {
        return client_error(StatusCode::NOT_FOUND, "not_found", "no such job");
    };
    match state.client.cancel_job(job_id).await {
        Ok(CancelOutcome::Cancelled) => job(State(state), Path(job_id.to_string())).await,
        Ok(CancelOutcome::AskedProvider(_)) => {
            let mut answer = job(State(state), Path(job_id.to_string())).await;
            if answer.status() == StatusCode::OK {
                *answer.status_mut() = StatusCode::ACCEPTED;
            }
            answer
        }
        Ok(CancelOutcome::NotCancellable {
            state: job_state,
            provider,
        }) => client_error(
            StatusCode::CONFLICT,
            "not_cancellable",
            format!(
                "the job is {job_state} at {provider}: only queued or budget-held jobs, or \
                 waiting jobs at a provider that can stop a generation, can be cancelled"
            ),
        ),
        Err(ProducerError::Queue(reelq_queue::QueueError::NotFound(_))) => {
            client_error(StatusCode::NOT_FOUND, "not_found", "no such job")
        }
        Err(err) => internal(err),
    }
}

/// A video's bytes, as the document describes them: binary, not JSON.
#[derive(ToSchema)]
#[schema(value_type = String, format = Binary)]
pub(crate) struct VideoBytes(
    #[allow(dead_code, reason = "described in the document, never built")] Vec<u8>,
);

/// The stored video, whole or one byte range (seeking players ask for ranges).
#[utoipa::path(
    get,
    path = "/v1/jobs/{job_id}/content",
    params(
        ("job_id" = JobId, Path),
        ("Range" = Option<String>, Header, description = "One range: `bytes=START-END`, `bytes=START-` or `bytes=-LENGTH`"),
    ),
    responses(
        (status = 200, description = "The video", content_type = "video/mp4", body = VideoBytes),
        (status = 206, description = "The range asked for", content_type = "video/mp4", body = VideoBytes,
            headers(("Content-Range" = String, description = "`bytes START-END/TOTAL`"))),
        (status = 404, description = "`not_found`: no such job, or not stored", body = ErrorAnswer),
        (status = 416, description = "`bad_range`", body = ErrorAnswer),
    )
)]
async fn content(
    State(state): State<ApiState>,
    Path(job_id): Path<String>,
    headers: HeaderMap,
) -> Response {
    match job_id.parse::<JobId>() {
        Ok(job_id) => {
            let videos = state.videos.as_ref();
            video_response(&state.client, videos, job_id, Asset::Video, &headers).await
        }
        Err(_) => client_error(StatusCode::NOT_FOUND, "not_found", "no stored video"),
    }
}

/// A stored job's video as an HTTP answer, whole or the one byte range `headers` ask for
/// (200, 206; 404 not stored; 416 a range it cannot serve): the API's `/content` and the
/// dashboard's player both answer with it.
pub async fn video_response(
    client: &Client,
    videos: Option<&Videos>,
    job_id: JobId,
    asset: Asset,
    headers: &HeaderMap,
) -> Response {
    let not_stored = || client_error(StatusCode::NOT_FOUND, "not_found", "no stored video");
    let Some(videos) = videos else {
        return not_stored();
    };
    let key = match client.status(job_id).await {
        Ok(Some(record)) => match asset.key(&record) {
            Some(key) => key.to_owned(),
            None => return not_stored(),
        },
        Ok(None) => return not_stored(),
        Err(err) => return internal(err),
    };
    let range = match headers
        .get(header::RANGE)
        .map(|value| byte_range(value.as_bytes()))
    {
        None => None,
        Some(Some(range)) => Some(range),
        Some(None) => {
            return client_error(
                StatusCode::RANGE_NOT_SATISFIABLE,
                "bad_range",
                "one range, as bytes=START-END, bytes=START- or bytes=-LENGTH",
            );
        }
    };
    let read = match videos.store.read(&key, range).await {
        Ok(read) => read,
        Err(err) if err.is_not_found() => return not_stored(),
        // A range the object cannot satisfy (starting past its end).
        Err(_) if range.is_some() => {
            return client_error(
                StatusCode::RANGE_NOT_SATISFIABLE,
                "bad_range",
                "the range starts past the end of the video",
            );
        }
        Err(err) => return internal(err.into()),
    };
    let length = read.range.end - read.range.start;
    let mut response = Response::builder();
    if asset == Asset::Video {
        // A thumbnail's type (PNG, JPEG, WebP) is the browser's to read from its bytes.
        response = response.header(header::CONTENT_TYPE, "video/mp4");
    }
    let mut response = response
        .header(header::ACCEPT_RANGES, "bytes")
        .header(header::CONTENT_LENGTH, length);
    response = if range.is_some() {
        response.status(StatusCode::PARTIAL_CONTENT).header(
            header::CONTENT_RANGE,
            format!(
                "bytes {}-{}/{}",
                read.range.start,
                read.range.end.saturating_sub(1),
                read.total
            ),
        )
    } else {
        response.status(StatusCode::OK)
    };
    response
        .body(axum::body::Body::from_stream(read.body))
        .expect("the headers are well-formed")
}

/// One range of a `Range: bytes=...` header; None for anything else (several ranges, other
/// units, unreadable numbers).
fn byte_range(value: &[u8]) -> Option<ByteRange> {
    let spec = std::str::from_utf8(value)
        .ok()?
        .trim()
        .strip_prefix("bytes=")?;
    let (start, end) = spec.split_once('-')?;
    let number = |text: &str| text.trim().parse::<u64>().ok();
    match (start.trim().is_empty(), end.trim().is_empty()) {
        (true, false) => Some(ByteRange::Last(number(end)?)),
        (false, true) => Some(ByteRange::From(number(start)?)),
        (false, false) => {
            let (start, end) = (number(start)?, number(end)?);
            (start <= end).then_some(ByteRange::Between(start, end))
        }
        (true, true) => None,
    }
}

/// A batch's progress.
#[utoipa::path(
    get,
    path = "/v1/batches/{batch_id}",
    params(("batch_id" = BatchId, Path)),
    responses(
        (status = 200, description = "The batch", body = BatchAnswer),
        (status = 404, description = "`not_found`", body = ErrorAnswer),
    )
)]
async fn batch(State(state): State<ApiState>, Path(batch_id): Path<String>) -> Response {
    let Ok(batch_id) = batch_id.parse::<BatchId>() else {
        return client_error(StatusCode::NOT_FOUND, "not_found", "no such batch");
    };
    let records = match state.client.batch_records(batch_id).await {
        Ok(records) => records,
        Err(err) => return internal(err),
    };
    let info = match state.client.batch_info(batch_id).await {
        Ok(info) => info,
        Err(err) => return internal(err),
    };
    if records.is_empty() && info.is_none() {
        return client_error(StatusCode::NOT_FOUND, "not_found", "no such batch");
    }
    let mut states: BTreeMap<String, usize> = BTreeMap::new();
    for record in &records {
        *states.entry(record.state.to_string()).or_default() += 1;
    }
    let jobs = info
        .as_ref()
        .map_or(records.len() as u64, |info| info.total);
    let info = info.as_ref();
    Json(BatchAnswer {
        batch_id,
        name: info.and_then(|info| info.name.clone()),
        jobs,
        states,
        reserved_usd: info.map(|info| reelq_core::micros_to_usd(info.reserved_micros)),
        budget_usd: info.and_then(|info| info.budget_micros.map(reelq_core::micros_to_usd)),
    })
    .into_response()
}

/// A batch's jobs, in enqueue order.
#[utoipa::path(
    get,
    path = "/v1/batches/{batch_id}/jobs",
    params(("batch_id" = BatchId, Path), PageQuery),
    responses(
        (status = 200, description = "A page", body = JobsPage),
        (status = 400, description = "`invalid_query` naming the bad parameter", body = ErrorAnswer),
        (status = 404, description = "`not_found`", body = ErrorAnswer),
    )
)]
async fn batch_jobs(
    State(state): State<ApiState>,
    Path(batch_id): Path<String>,
    query: Result<axum::extract::Query<PageQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let Ok(batch_id) = batch_id.parse::<BatchId>() else {
        return client_error(StatusCode::NOT_FOUND, "not_found", "no such batch");
    };
    let bad = |detail: &str| client_error(StatusCode::BAD_REQUEST, "invalid_query", detail);
    let Ok(axum::extract::Query(query)) = query else {
        return bad("the parameters are limit and cursor");
    };
    let limit = match page_limit(query.limit) {
        Ok(limit) => limit,
        Err(problem) => return bad(&problem),
    };
    let offset = match query.cursor.as_deref().map(str::parse::<usize>) {
        None => 0,
        Some(Ok(offset)) => offset,
        Some(Err(_)) => return bad("cursor: not one this API gave"),
    };
    match state.client.batch_info(batch_id).await {
        Ok(Some(_)) => {}
        Ok(None) => return client_error(StatusCode::NOT_FOUND, "not_found", "no such batch"),
        Err(err) => return internal(err),
    }
    match state
        .client
        .batch_records_page(batch_id, offset, limit)
        .await
    {
        Ok((records, next)) => Json(JobsPage {
            data: records,
            next_cursor: next.map(|offset| offset.to_string()),
        })
        .into_response(),
        Err(err) => internal(err),
    }
}
