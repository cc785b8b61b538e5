//! The API's one error shape and the one mapping of errors to HTTP answers, and the bodies
//! its routes answer with.

use super::*;

/// Every error answer: a stable `code` to act on and a `detail` for people (a sentence; the
/// field and its message; a manifest's bad lines).
#[derive(Serialize, ToSchema)]
pub(crate) struct ErrorAnswer {
    pub(super) code: String,
    #[schema(value_type = Value)]
    pub(super) detail: serde_json::Value,
}

pub(super) fn client_error(
    status: StatusCode,
    code: &str,
    detail: impl Into<serde_json::Value>,
) -> Response {
    let answer = ErrorAnswer {
        code: code.to_owned(),
        detail: detail.into(),
    };
    (status, Json(answer)).into_response()
}

/// Why a caller's request is refused before it touches anything (`caller.rs`).
#[derive(Debug)]
pub(crate) enum Refusal {
    /// The token lacks the scope the route needs: 403.
    Forbidden(reelq_core::Scope),
    /// A tenant's token enqueued a job naming another tenant: 400 naming the field.
    OtherTenant {
        tenant: reelq_core::TenantName,
        line: usize,
    },
    /// No such job or batch, or another tenant's: 404.
    NotFound(&'static str),
    /// Reading what the caller may see failed.
    Failed(ProducerError),
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        match self {
            Refusal::Forbidden(scope) => client_error(
                StatusCode::FORBIDDEN,
                "forbidden",
                format!("this token does not have the {scope} scope"),
            ),
            Refusal::OtherTenant { tenant, line } => {
                let message = format!("this token enqueues for tenant {tenant} only");
                let detail = json!({ "field": "tenant", "line": line, "message": message });
                client_error(StatusCode::BAD_REQUEST, "invalid_job", detail)
            }
            Refusal::NotFound(what) => client_error(StatusCode::NOT_FOUND, "not_found", what),
            Refusal::Failed(err) => internal(err),
        }
    }
}

/// A job as the API answers it: its ledger record, and where its video is once stored.
#[derive(Serialize, ToSchema)]
pub(crate) struct JobAnswer {
    #[serde(flatten)]
    pub(super) record: JobRecord,
    /// Where the stored video can be fetched: a presigned link (S3 stores) or
    /// `/v1/jobs/{id}/content`. Absent until stored, or when the API was not given the store.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(format = "uri-reference")]
    pub(super) video_url: Option<String>,
    /// The created job's id in a list, as the first version of the API answered (on create
    /// only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) job_ids: Option<Vec<JobId>>,
    /// On create: what the producer must know of the model it asked for (deprecated by its
    /// provider: its end and replacement). Absent when there is nothing to say.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub(super) warnings: Vec<String>,
}

/// A page of jobs and the cursor of the next one (null on the last page).
#[derive(Serialize, ToSchema)]
pub(crate) struct JobsPage {
    pub(super) data: Vec<JobRecord>,
    pub(super) next_cursor: Option<String>,
}

/// A batch's progress.
#[derive(Serialize, ToSchema)]
pub(crate) struct BatchAnswer {
    pub(super) batch_id: BatchId,
    pub(super) name: Option<String>,
    /// How many jobs the batch has.
    pub(super) jobs: u64,
    /// Its jobs in each state (states with none left out).
    pub(super) states: BTreeMap<String, usize>,
    /// The estimates its submits have reserved against its budget, in dollars.
    pub(super) reserved_usd: Option<f64>,
    pub(super) budget_usd: Option<f64>,
}

/// 503 with `Retry-After: 1`: nothing was done, or nothing is proven; the client retries.
/// When an enqueue refused for its tenant's backlog may try again, in seconds: about the
/// time a generation takes to free a slot for the tenant's next job.
const TENANT_BACKLOG_RETRY_AFTER_S: &str = "30";

pub(super) fn retry_shortly(code: &str, detail: &str) -> Response {
    let mut response = client_error(StatusCode::SERVICE_UNAVAILABLE, code, detail);
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
    response
}

/// The answer refusing a body that could not be read, in the API's one error shape: over
/// [`MAX_BODY_BYTES`] is 413 `body_too_large` (the framework's own answer is plain text).
pub(super) fn refused_body(rejection: BytesRejection) -> Response {
    match rejection.status() {
        StatusCode::PAYLOAD_TOO_LARGE => client_error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
            format!("the body is over {} MiB", MAX_BODY_BYTES / (1024 * 1024)),
        ),
        status => client_error(status, "malformed_body", rejection.body_text()),
    }
}

pub(super) fn internal(err: ProducerError) -> Response {
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
    if let ProducerError::Queue(queue_err @ reelq_queue::QueueError::TenantBacklog { tenant, .. }) =
        &err
    {
        // The tenant's cap on jobs waiting: nothing was enqueued; its jobs start within a
        // generation's time or so.
        let detail =
            json!({ "field": "tenant", "tenant": tenant, "message": queue_err.to_string() });
        let mut response =
            client_error(StatusCode::TOO_MANY_REQUESTS, "tenant_backlog_full", detail);
        response.headers_mut().insert(
            header::RETRY_AFTER,
            header::HeaderValue::from_static(TENANT_BACKLOG_RETRY_AFTER_S),
        );
        return response;
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
