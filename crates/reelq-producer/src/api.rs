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
//! | `POST /v1/batches`      | JSONL or a JSON array; 201 `{"batch_id","job_ids"}` with `Location: /v1/batches/{id}`; 400 listing every bad line |
//! | `GET /v1/batches/{id}`  | 200 `{"batch_id","name","jobs","states":{state: count},"reserved_usd","budget_usd"}`; 404 |
//!
//! `/healthz` and `/readyz` (Redis answers: 200 `ready`, else 503) answer without the token
//! and say nothing else, for probes.
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
    extract::{DefaultBodyLimit, Path, Request, State},
    http::{HeaderMap, StatusCode, header},
    middleware::{self, Next},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use reelq_core::{ApiToken, BatchId, BatchOptions, JobId, JobRequest, JobSpec, JobState};
use reelq_queue::PageCursor;
use reelq_storage::{ByteRange, VideoStore};
use serde_json::json;

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
/// link and `/content` answers 404.
pub fn app(client: Client, token: ApiToken, videos: Option<Videos>) -> Router {
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

fn client_error(status: StatusCode, code: &str, detail: impl Into<serde_json::Value>) -> Response {
    (
        status,
        Json(json!({ "code": code, "detail": detail.into() })),
    )
        .into_response()
}

/// 503 with `Retry-After: 1`: nothing was done, or nothing is proven; the client retries.
fn retry_shortly(code: &str, detail: &str) -> Response {
    let mut response = client_error(StatusCode::SERVICE_UNAVAILABLE, code, detail);
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
    response
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

async fn create_job(State(state): State<ApiState>, headers: HeaderMap, body: Bytes) -> Response {
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
    enqueue(&state, &headers, vec![spec], false).await
}

async fn create_batch(State(state): State<ApiState>, headers: HeaderMap, body: Bytes) -> Response {
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
        Ok(specs) => enqueue(&state, &headers, specs, true).await,
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
    as_batch: bool,
) -> Response {
    let key = headers
        .get("idempotency-key")
        .and_then(|value| value.to_str().ok());
    let receipt = match key {
        Some(key) => {
            let (scope, batch) = match as_batch {
                true => ("api-batches", Some(BatchOptions::default())),
                false => ("api-jobs", None),
            };
            state
                .client
                .enqueue_once(specs, batch.as_ref(), (scope, key), &|_| {})
                .await
        }
        None if as_batch => state
            .client
            .enqueue_batch(specs)
            .await
            .map(|batch| Receipt {
                batch_id: Some(batch.batch_id),
                job_ids: batch.job_ids,
                replayed: false,
            }),
        None => {
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
        (Some(batch_id), _) => (format!("/v1/batches/{batch_id}"), json!(receipt)),
        (None, Some(&job_id)) => {
            // The job's resource, as `GET /v1/jobs/{id}` answers it (the receipt's
            // `job_ids` kept for clients written against it).
            let mut body = match state.client.status(job_id).await {
                Ok(Some(record)) => json!(record),
                Ok(None) => json!({ "job_id": job_id }),
                Err(err) => return internal(err),
            };
            body["job_ids"] = json!(receipt.job_ids);
            (format!("/v1/jobs/{job_id}"), body)
        }
        (None, None) => return (status, Json(receipt)).into_response(),
    };
    (status, [(header::LOCATION, location)], Json(body)).into_response()
}

/// `GET /v1/jobs` parameters.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    state: Option<String>,
    limit: Option<usize>,
    cursor: Option<String>,
}

/// The most jobs one page holds.
const MAX_PAGE: usize = 500;

async fn list_jobs(
    State(state): State<ApiState>,
    query: Result<axum::extract::Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let bad = |detail: String| client_error(StatusCode::BAD_REQUEST, "invalid_query", detail);
    let Ok(axum::extract::Query(query)) = query else {
        return bad("the parameters are state, limit and cursor".into());
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
    let limit = query.limit.unwrap_or(50);
    if !(1..=MAX_PAGE).contains(&limit) {
        return bad(format!("limit: {limit} is not between 1 and {MAX_PAGE}"));
    }
    let cursor = match query.cursor.as_deref().map(str::parse::<PageCursor>) {
        None => None,
        Some(Ok(cursor)) => Some(cursor),
        Some(Err(())) => return bad("cursor: not one this API gave".into()),
    };
    match state.client.jobs_page(&states, cursor, limit).await {
        Ok((records, next)) => Json(json!({
            "data": records,
            "next_cursor": next.map(|cursor| cursor.to_string()),
        }))
        .into_response(),
        Err(err) => internal(err),
    }
}

async fn job(State(state): State<ApiState>, Path(job_id): Path<String>) -> Response {
    let Ok(job_id) = job_id.parse::<JobId>() else {
        return client_error(StatusCode::NOT_FOUND, "not_found", "no such job");
    };
    let record = match state.client.status(job_id).await {
        Ok(Some(record)) => record,
        Ok(None) => return client_error(StatusCode::NOT_FOUND, "not_found", "no such job"),
        Err(err) => return internal(err),
    };
    let mut answer = json!(record);
    if let Some(videos) = &state.videos {
        let local = format!("/v1/jobs/{job_id}/content");
        match video_link(videos, &record, Asset::Video, local).await {
            Ok(Some(link)) => answer["video_url"] = json!(link),
            Ok(None) => {}
            Err(err) => return internal(err),
        }
    }
    Json(answer).into_response()
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

/// Cancels a job not yet submitted: 200 with its record; 409 once it was submitted or ended.
async fn cancel(State(state): State<ApiState>, Path(job_id): Path<String>) -> Response {
    let Ok(job_id) = job_id.parse::<JobId>() else {
        return client_error(StatusCode::NOT_FOUND, "not_found", "no such job");
    };
    match state.client.cancel_job(job_id).await {
        Ok(true) => job(State(state), Path(job_id.to_string())).await,
        Ok(false) => match state.client.status(job_id).await {
            Ok(Some(record)) => client_error(
                StatusCode::CONFLICT,
                "not_cancellable",
                format!(
                    "the job is {}: only queued or budget-held jobs can be cancelled",
                    record.state
                ),
            ),
            Ok(None) => client_error(StatusCode::NOT_FOUND, "not_found", "no such job"),
            Err(err) => internal(err),
        },
        Err(err) => internal(err),
    }
}

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
    let mut answer = json!({ "batch_id": batch_id, "jobs": jobs, "states": states });
    if let Some(info) = info {
        answer["name"] = json!(info.name);
        answer["reserved_usd"] = json!(reelq_core::micros_to_usd(info.reserved_micros));
        answer["budget_usd"] = json!(info.budget_micros.map(reelq_core::micros_to_usd));
    }
    Json(answer).into_response()
}
