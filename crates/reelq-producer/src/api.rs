//! The HTTP enqueue API, for producers in other languages. Every request needs
//! `Authorization: Bearer <token>`: the deployment's own token (an [`ApiToken`], never
//! empty: every tenant, every scope), or one an operator made (`reelq tokens create`), bound
//! to one tenant or to all, with scopes (`enqueue`, `read`, `operate`; a route the token's
//! scopes do not cover is 403). A tenant's token enqueues for its tenant only and sees only
//! its tenant's jobs and batches: another's answer 404, and lists leave them out. An
//! `Idempotency-Key` header makes a POST safe to retry: the same key with the same request
//! within a day enqueues once and answers the first receipt again (200); the same key with
//! another request is 422 `idempotency_key_reused` and enqueues nothing. Keys are per
//! endpoint (a key used on `/v1/jobs` is another key on `/v1/batches`) and per tenant for a
//! tenant's token (another tenant's use of the same key is not seen).
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
//! | `GET /v1/usage?from=&to=&by=&tenant=` | 200 `[{"tenant","period","jobs","states","generation_seconds","estimated_spend_usd"}]`: each tenant's jobs made in the UTC days `from`–`to` (this month so far), by `day` or `month`; a tenant's token reads its own; 400 naming a bad parameter |
//! | `GET /openapi.json`     | this API's OpenAPI 3.1 document, generated from the handlers and types of `api/` (`api/openapi.rs`) |
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
    Extension, Json, Router,
    body::Bytes,
    extract::{DefaultBodyLimit, Path, Request, State, rejection::BytesRejection},
    http::{HeaderMap, StatusCode, header},
    middleware::{self, Next},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use reelq_core::{ApiToken, BatchId, BatchOptions, JobId, JobRequest, JobSpec, JobState, Scope};
use reelq_queue::{CancelOutcome, JobRecord, PageCursor};
use reelq_storage::{ByteRange, VideoStore};
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::{IntoParams, ToSchema};

mod answers;
mod batches;
mod caller;
mod content;
mod enqueue;
mod jobs;
mod openapi;
mod usage;

use answers::*;
use batches::*;
use caller::{Caller, caller_of};
use content::*;
pub use content::{Asset, video_link, video_response};
use enqueue::*;
use jobs::*;
use usage::*;

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
        .route("/v1/usage", get(usage))
        .route("/openapi.json", get(|| async { Json(openapi::document()) }))
        .route(
            "/metrics",
            get(|Extension(caller): Extension<Caller>| async move {
                match caller.require(Scope::Operate) {
                    Ok(()) => reelq_http::metrics::render().into_response(),
                    Err(refused) => refused.into_response(),
                }
            }),
        )
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

async fn authenticate(State(state): State<ApiState>, mut request: Request, next: Next) -> Response {
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "))
        .unwrap_or_default();
    let caller = match caller_of(&state, presented).await {
        Ok(caller) => caller,
        Err(err) => return internal(err),
    };
    let Some(caller) = caller else {
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
    };
    request.extensions_mut().insert(caller);
    next.run(request).await
}

/// What the `Idempotency-Key` header of a POST does.
const IDEMPOTENCY_KEY: &str =
    "Makes the POST safe to retry: the same key with the same request within a day enqueues once";

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
