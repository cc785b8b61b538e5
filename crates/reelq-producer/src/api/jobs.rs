//! `/v1/jobs`: enqueue one job, list jobs, read one, cancel one.

use super::*;

/// Enqueues one job. A job is refused whole, naming the first bad field.
#[utoipa::path(
    post,
    tag = "jobs",
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
pub(super) async fn create_job(
    State(state): State<ApiState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    if let Err(refused) = caller.require(Scope::Enqueue) {
        return refused.into_response();
    }
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
    let mut specs = vec![spec];
    if let Err(refused) = caller.own(&mut specs) {
        return refused.into_response();
    }
    enqueue(&state, &caller, &headers, specs, None).await
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
    /// Only this tenant's jobs (a page may then hold fewer than `limit`).
    tenant: Option<String>,
}

/// Jobs, most recently changed first; or, with `day`, a day's archived jobs by id.
#[utoipa::path(
    get,
    tag = "jobs",
    path = "/v1/jobs",
    params(ListQuery),
    responses(
        (status = 200, description = "A page", body = JobsPage),
        (status = 400, description = "`invalid_query` naming the bad parameter", body = ErrorAnswer),
    )
)]
pub(super) async fn list_jobs(
    State(state): State<ApiState>,
    Extension(caller): Extension<Caller>,
    query: Result<axum::extract::Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    if let Err(refused) = caller.require(Scope::Read) {
        return refused.into_response();
    }
    let bad = |detail: String| client_error(StatusCode::BAD_REQUEST, "invalid_query", detail);
    let Ok(axum::extract::Query(query)) = query else {
        return bad("the parameters are state, limit, cursor, day and tenant".into());
    };
    let tenant = match query
        .tenant
        .as_deref()
        .map(str::parse::<reelq_core::TenantName>)
    {
        None => None,
        Some(Ok(tenant)) => Some(tenant),
        Some(Err(err)) => return bad(format!("tenant: {}", err.message)),
    };
    let own = |records: Vec<JobRecord>| {
        let mut records = caller.visible(records);
        records.retain(|record| {
            tenant
                .as_ref()
                .is_none_or(|tenant| record.spec.tenant_name() == tenant.as_str())
        });
        records
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
                data: own(records),
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
            data: own(records),
            next_cursor: next.map(|cursor| cursor.to_string()),
        })
        .into_response(),
        Err(err) => internal(err),
    }
}

/// One job.
#[utoipa::path(
    get,
    tag = "jobs",
    path = "/v1/jobs/{job_id}",
    params(("job_id" = JobId, Path)),
    responses(
        (status = 200, description = "The job", body = JobAnswer),
        (status = 404, description = "`not_found`", body = ErrorAnswer),
    )
)]
pub(super) async fn job(
    State(state): State<ApiState>,
    Extension(caller): Extension<Caller>,
    Path(job_id): Path<String>,
) -> Response {
    if let Err(refused) = caller.require(Scope::Read) {
        return refused.into_response();
    }
    let Ok(job_id) = job_id.parse::<JobId>() else {
        return client_error(StatusCode::NOT_FOUND, "not_found", "no such job");
    };
    job_answer(&state, &caller, job_id).await
}

/// A job as the API answers it, with its video's link: 404 if the caller may not see it.
async fn job_answer(state: &ApiState, caller: &Caller, job_id: JobId) -> Response {
    let record = match state.client.status(job_id).await {
        Ok(Some(record)) if caller.sees(&record.spec) => record,
        Ok(_) => return client_error(StatusCode::NOT_FOUND, "not_found", "no such job"),
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

/// Cancels a job not yet submitted, or asks its provider to stop a submitted one where the
/// provider can (fal, Replicate): the job then ends `cancelled` once the provider's task has
/// stopped.
#[utoipa::path(
    post,
    tag = "jobs",
    path = "/v1/jobs/{job_id}/cancel",
    params(("job_id" = JobId, Path)),
    responses(
        (status = 200, description = "The job, cancelled", body = JobAnswer),
        (status = 202, description = "The job, submitted: its provider was asked to stop it", body = JobAnswer),
        (status = 404, description = "`not_found`", body = ErrorAnswer),
        (status = 409, description = "`not_cancellable`: ended, being submitted, or at a provider that cannot stop a generation", body = ErrorAnswer),
    )
)]
pub(super) async fn cancel(
    State(state): State<ApiState>,
    Extension(caller): Extension<Caller>,
    Path(job_id): Path<String>,
) -> Response {
    if let Err(refused) = caller.require(Scope::Enqueue) {
        return refused.into_response();
    }
    let Ok(job_id) = job_id.parse::<JobId>() else {
        return client_error(StatusCode::NOT_FOUND, "not_found", "no such job");
    };
    if let Err(refused) = caller.sees_job(&state.client, job_id, "no such job").await {
        return refused.into_response();
    }
    // The answer is the job as it is now: a token that may cancel its jobs sees them.
    match state.client.cancel_job(job_id).await {
        Ok(CancelOutcome::Cancelled) => job_answer(&state, &caller, job_id).await,
        Ok(CancelOutcome::AskedProvider(_)) => {
            let mut answer = job_answer(&state, &caller, job_id).await;
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
