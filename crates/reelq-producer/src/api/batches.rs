//! `/v1/batches`: enqueue a batch all or none, read its progress, list its jobs.

use super::*;

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
    #[param(format = DateTime)]
    start_after: Option<String>,
    /// `low`: its jobs go only when no normal job is due.
    #[param(inline)]
    priority: Option<BatchPriority>,
    /// Where reelq POSTs the batch's signed summary when its last job ends.
    #[param(format = "uri")]
    notify_url: Option<String>,
}

#[derive(Deserialize, ToSchema, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub(crate) enum BatchPriority {
    Normal,
    Low,
}

/// Enqueues a batch, all or none: a JSONL manifest or a JSON array of jobs.
#[utoipa::path(
    post,
    tag = "batches",
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
pub(super) async fn create_batch(
    State(state): State<ApiState>,
    Extension(caller): Extension<Caller>,
    query: Result<axum::extract::Query<BatchQuery>, axum::extract::rejection::QueryRejection>,
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
        Ok(mut specs) => match caller.own(&mut specs) {
            Ok(()) => enqueue(&state, &caller, &headers, specs, Some(options)).await,
            Err(refused) => refused.into_response(),
        },
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

/// A batch's progress.
#[utoipa::path(
    get,
    tag = "batches",
    path = "/v1/batches/{batch_id}",
    params(("batch_id" = BatchId, Path)),
    responses(
        (status = 200, description = "The batch", body = BatchAnswer),
        (status = 404, description = "`not_found`", body = ErrorAnswer),
    )
)]
pub(super) async fn batch(
    State(state): State<ApiState>,
    Extension(caller): Extension<Caller>,
    Path(batch_id): Path<String>,
) -> Response {
    let batch_id = match visible_batch(&state, &caller, &batch_id).await {
        Ok(batch_id) => batch_id,
        Err(refused) => return refused.into_response(),
    };
    // A batch an all-tenant token enqueued may hold several tenants' jobs: a tenant's token
    // counts and lists its own only.
    let records = match state.client.batch_records(batch_id).await {
        Ok(records) => caller.visible(records),
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
    let jobs = match (caller.tenant(), &info) {
        (None, Some(info)) => info.total,
        _ => records.len() as u64,
    };
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
    tag = "batches",
    path = "/v1/batches/{batch_id}/jobs",
    params(("batch_id" = BatchId, Path), PageQuery),
    responses(
        (status = 200, description = "A page", body = JobsPage),
        (status = 400, description = "`invalid_query` naming the bad parameter", body = ErrorAnswer),
        (status = 404, description = "`not_found`", body = ErrorAnswer),
    )
)]
pub(super) async fn batch_jobs(
    State(state): State<ApiState>,
    Extension(caller): Extension<Caller>,
    Path(batch_id): Path<String>,
    query: Result<axum::extract::Query<PageQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let batch_id = match visible_batch(&state, &caller, &batch_id).await {
        Ok(batch_id) => batch_id,
        Err(refused) => return refused.into_response(),
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
            data: caller.visible(records),
            next_cursor: next.map(|offset| offset.to_string()),
        })
        .into_response(),
        Err(err) => internal(err),
    }
}

/// The batch `batch_id` names, if the caller may read it: 403 without the read scope; 404 if
/// there is no such batch, or it is another tenant's.
async fn visible_batch(
    state: &ApiState,
    caller: &Caller,
    batch_id: &str,
) -> Result<BatchId, Refusal> {
    caller.require(Scope::Read)?;
    let not_found = Refusal::NotFound("no such batch");
    let Ok(batch_id) = batch_id.parse::<BatchId>() else {
        return Err(not_found);
    };
    match caller.sees_batch(&state.client, batch_id).await {
        Ok(true) => Ok(batch_id),
        Ok(false) => Err(not_found),
        Err(err) => Err(Refusal::Failed(err)),
    }
}
