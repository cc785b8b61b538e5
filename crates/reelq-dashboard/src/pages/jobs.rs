//! The jobs: the list (filters, paging, search, bulk actions), a job's page with its video,
//! and the actions on one job.

use super::*;

#[derive(Deserialize)]
pub(crate) struct JobFilter {
    state: Option<String>,
    provider: Option<String>,
    batch: Option<String>,
    tenant: Option<String>,
    /// A job id to go to.
    q: Option<String>,
    /// The listing position to continue after (the previous page's last).
    after: Option<String>,
    /// Jobs per page (1 to 500; 100 if absent).
    limit: Option<usize>,
}

/// Jobs on one page of the list, unless the query asks for another number (up to 500).
const JOBS_PAGE: usize = 100;

pub(crate) async fn jobs(
    State(dashboard): State<Dashboard>,
    Query(filter): Query<JobFilter>,
) -> Response {
    let client = &dashboard.client;
    let writable = dashboard.config.writable;
    let bad = |message: String| (StatusCode::BAD_REQUEST, message).into_response();
    if let Some(query) = filled(&filter.q).map(str::trim) {
        if let Ok(job_id) = query.parse::<JobId>() {
            return Redirect::to(&format!("/ui/jobs/{job_id}")).into_response();
        }
        // Else a provider task id, at any account.
        return match client.job_of_task_anywhere(query).await {
            Ok(Some(job_id)) => Redirect::to(&format!("/ui/jobs/{job_id}")).into_response(),
            Ok(None) => bad(format!(
                "{query:?} is neither a job id nor a task id reelq knows"
            )),
            Err(err) => unavailable(err),
        };
    }
    let state = match filled(&filter.state)
        .map(str::parse::<JobState>)
        .transpose()
    {
        Ok(state) => state,
        Err(err) => return bad(err.to_string()),
    };
    let provider = match filled(&filter.provider)
        .map(str::parse::<ProviderKind>)
        .transpose()
    {
        Ok(provider) => provider,
        Err(err) => return bad(err.to_string()),
    };
    let batch = match filled(&filter.batch).map(str::parse::<BatchId>).transpose() {
        Ok(batch) => batch,
        Err(err) => return bad(err.to_string()),
    };
    let tenant = match filled(&filter.tenant)
        .map(str::parse::<reelq_core::TenantName>)
        .transpose()
    {
        Ok(tenant) => tenant,
        Err(err) => return bad(err.to_string()),
    };
    let after = match filled(&filter.after)
        .map(str::parse::<PageCursor>)
        .transpose()
    {
        Ok(after) => after,
        Err(()) => return bad("after: not a position this list gave".into()),
    };
    let page_size = filter.limit.unwrap_or(JOBS_PAGE);
    if !(1..=500).contains(&page_size) {
        return bad(format!("limit: {page_size} is not between 1 and 500"));
    }
    let read = async {
        let counts = client.stats().await?.states;
        let (records, next) = match batch {
            Some(batch) => (client.batch_records(batch).await?, None),
            None => {
                let states: Vec<JobState> = state.into_iter().collect();
                client.jobs_page(&states, after, page_size).await?
            }
        };
        let starts = scheduled_starts(client, &records).await?;
        Ok::<_, reelq_producer::ProducerError>((counts, records, next, starts))
    };
    let (counts, records, next, starts) = match read.await {
        Ok(read) => read,
        Err(err) => return unavailable(err),
    };
    let records: Vec<JobRecord> = records
        .into_iter()
        .filter(|r| state.is_none_or(|s| r.state == s))
        .filter(|r| provider.is_none_or(|p| r.spec.provider == p))
        .filter(|r| {
            tenant
                .as_ref()
                .is_none_or(|t| r.spec.tenant_name() == t.as_str())
        })
        .collect();
    let query = |state: Option<JobState>| {
        let mut parts = Vec::new();
        if let Some(state) = state {
            parts.push(format!("state={state}"));
        }
        if let Some(provider) = provider {
            parts.push(format!("provider={provider}"));
        }
        if let Some(tenant) = &tenant {
            parts.push(format!("tenant={tenant}"));
        }
        if page_size != JOBS_PAGE {
            parts.push(format!("limit={page_size}"));
        }
        parts.join("&")
    };
    let total: u64 = counts.iter().map(|(_, n)| n).sum();
    live_layout(
        "Jobs",
        html! {
            p.chips id="states" {
                a class=[state.is_none().then_some("on")] href={ "/ui/jobs?" (query(None)) } { "all " (total) }
                @for (s, n) in &counts {
                    a class=[(state == Some(*s)).then_some("on")] href={ "/ui/jobs?" (query(Some(*s))) } data-state=(s.as_str()) { (s.as_str()) " " (n) }
                }
            }
            form method="get" action="/ui/jobs" {
                @if let Some(state) = state { input type="hidden" name="state" value=(state.as_str()); }
                select name="provider" aria-label="provider" {
                    option value="" { "any provider" }
                    @for p in ProviderKind::ALL {
                        option value=(p.as_str()) selected[provider == Some(p)] { (p.as_str()) }
                    }
                }
                input type="text" name="batch" aria-label="batch id" placeholder="batch id" value=(filter.batch.clone().unwrap_or_default());
                input type="text" name="tenant" aria-label="tenant" placeholder="tenant" value=(filter.tenant.clone().unwrap_or_default());
                button type="submit" { "Filter" }
            }
            form method="get" action="/ui/jobs" {
                input type="text" name="q" aria-label="job id or provider task id" placeholder="job id or task id";
                button type="submit" { "Go" }
            }
            @if writable {
                // Retrying a failed job whose task is gone submits it again: say so first.
                form id="bulk" method="post" action="/ui/jobs/bulk"
                    onsubmit="return confirm('Act on the selected jobs? Retrying a failed job without a provider task submits it again: a new paid generation for each.')" {
                    (jobs_table(&records, true, &starts))
                    button type="submit" name="action" value="retry" { "Retry the selected failed jobs" }
                    " "
                    button type="submit" name="action" value="cancel" { "Cancel the selected jobs not yet submitted" }
                }
            } @else {
                (jobs_table(&records, false, &starts))
            }
            @if let Some(next) = next {
                p { a id="next" href={ "/ui/jobs?" (query(state)) "&after=" (next.to_string()) } { "Next page →" } }
            }
        },
    )
    .into_response()
}

/// The jobs as a table; `selectable`, each row with a box for the bulk actions of the form
/// around it (`#bulk`).
/// When the batches of `records`' queued jobs start, for those scheduled ahead: such a job
/// is waiting for its batch, not stuck.
pub(crate) async fn scheduled_starts(
    client: &reelq_producer::Client,
    records: &[JobRecord],
) -> Result<BTreeMap<BatchId, u64>, reelq_producer::ProducerError> {
    let mut starts = BTreeMap::new();
    let now = now_ms();
    let batches: std::collections::BTreeSet<BatchId> = records
        .iter()
        .filter(|record| record.state == JobState::Queued)
        .filter_map(|record| record.batch)
        .collect();
    for batch in batches {
        let start = client
            .batch_info(batch)
            .await?
            .and_then(|info| info.start_after_ms);
        if let Some(at) = start.filter(|at| *at > now) {
            starts.insert(batch, at);
        }
    }
    Ok(starts)
}

/// The jobs as a table; `starts`: when the scheduled batches of its queued jobs start.
pub(crate) fn jobs_table(
    records: &[JobRecord],
    selectable: bool,
    starts: &BTreeMap<BatchId, u64>,
) -> Markup {
    let now = now_ms();
    html! {
        table id="jobs" {
            tr { @if selectable { th { span.sr { "select" } } } th { "job" } th { "prompt" } th { "state" } th { "tenant" } th { "account" } th { "model" } th { "created (UTC)" } th { "last change" } th { "est. USD" } th { "submits" } th { "object / error" } }
            @for r in records {
                tr {
                    @if selectable {
                        td { input type="checkbox" name="job_id" value=(r.job_id) aria-label={ "select " (r.job_id) }; }
                    }
                    td { a href={ "/ui/jobs/" (r.job_id) } { (r.job_id) } }
                    td title=(r.spec.prompt) { (short(&r.spec.prompt, 60)) }
                    td {
                        (r.state.as_str())
                        @if let Some(at) = r.batch.and_then(|batch| starts.get(&batch)).filter(|_| r.state == JobState::Queued) {
                            span.scheduled { ": scheduled, starts " (utc(*at)) " UTC" }
                        }
                    }
                    td { (r.spec.tenant_name()) }
                    td { (r.account.as_str()) }
                    td { (r.spec.model) }
                    td { (utc(r.created_ms)) }
                    td { (age(now.saturating_sub(r.updated_ms))) " ago" }
                    td { (r.spec.estimated_cost_usd.map(|usd| format!("{usd:.2}")).unwrap_or_default()) }
                    td { (r.submits) }
                    td { @if r.state == JobState::Stored { (r.object_key.clone().unwrap_or_default()) } @else if r.state == JobState::Cancelled { (r.error.clone().unwrap_or_default()) } @else { span.error { (r.error.clone().unwrap_or_default()) } } }
                }
            }
        }
    }
}

/// The job's stored video, for the job page's player (local stores; S3 videos play from a
/// presigned link).
pub(crate) async fn job_video(
    State(dashboard): State<Dashboard>,
    Path(job_id): Path<String>,
    headers: axum::http::HeaderMap,
) -> Response {
    job_asset(&dashboard, &job_id, Asset::Video, &headers).await
}

/// The job's stored thumbnail, the player's poster (local stores).
pub(crate) async fn job_thumbnail(
    State(dashboard): State<Dashboard>,
    Path(job_id): Path<String>,
    headers: axum::http::HeaderMap,
) -> Response {
    job_asset(&dashboard, &job_id, Asset::Thumbnail, &headers).await
}

async fn job_asset(
    dashboard: &Dashboard,
    job_id: &str,
    asset: Asset,
    headers: &axum::http::HeaderMap,
) -> Response {
    let Ok(job_id) = job_id.parse::<JobId>() else {
        return not_found("no such job");
    };
    let videos = dashboard.config.videos.as_ref();
    reelq_producer::video_response(&dashboard.client, videos, job_id, asset, headers).await
}

pub(crate) async fn job(
    State(dashboard): State<Dashboard>,
    Path(job_id): Path<String>,
) -> Response {
    let Ok(job_id) = job_id.parse::<JobId>() else {
        return not_found("no such job");
    };
    let client = &dashboard.client;
    let (record, history) = match (client.status(job_id).await, client.history(job_id).await) {
        (Ok(Some(record)), Ok(history)) => (record, history),
        (Ok(None), _) => {
            return not_found(
                "no such job (not in the ledger nor, where a store is given, its archived history)",
            );
        }
        (Err(err), _) | (_, Err(err)) => return unavailable(err),
    };
    let writable = dashboard.config.writable;
    // Its batch by name, where it has one (a batch's settings may be archived already), and
    // when a batch scheduled ahead starts: a queued job of it is waiting for that, not stuck.
    let batch_info = match record.batch {
        Some(batch) => client.batch_info(batch).await.ok().flatten(),
        None => None,
    };
    let starts_at = batch_info
        .as_ref()
        .and_then(|info| info.start_after_ms)
        .filter(|at| record.state == JobState::Queued && *at > now_ms());
    let batch_name = batch_info.and_then(|info| info.name);
    let (mut player, mut poster) = (None, None);
    if let Some(videos) = &dashboard.config.videos {
        let links = [
            (Asset::Video, format!("/ui/jobs/{job_id}/video")),
            (Asset::Thumbnail, format!("/ui/jobs/{job_id}/thumbnail")),
        ];
        for ((asset, local), slot) in links.into_iter().zip([&mut player, &mut poster]) {
            match reelq_producer::video_link(videos, &record, asset, local).await {
                Ok(link) => *slot = link,
                Err(err) => return unavailable(err),
            }
        }
    }
    live_layout(
        &format!("Job {job_id}"),
        html! {
            table id="record" {
                tr { th { "state" } td id="state" {
                    (record.state.as_str())
                    @if let Some(at) = starts_at { ": scheduled, its batch starts " (utc(at)) " UTC" }
                } }
                tr { th { "provider / model" } td { (record.spec.provider.as_str()) " / " (record.spec.model) } }
                tr { th { "tenant" } td { (record.spec.tenant_name()) } }
                tr { th { "account" } td { (record.account.as_str()) } }
                tr { th { "created (UTC)" } td { (utc(record.created_ms)) } }
                tr { th { "last change (UTC)" } td { (utc(record.updated_ms)) " (" (age(now_ms().saturating_sub(record.updated_ms))) " ago)" } }
                tr { th { "prompt" } td id="prompt" { (record.spec.prompt) } }
                tr { th { "asked" } td id="parameters" {
                    (record.spec.duration_s) " s, " (record.spec.aspect.as_str()) ", " (record.spec.quality.as_str())
                    @for url in &record.spec.image_urls { ", image " (url) }
                    @if let Some(character) = &record.spec.character { ", character " (character.url) }
                } }
                tr { th { "sent to the provider" } td { code id="request" {
                    @for (field, value) in &record.spec.provider_request().fields { (field) "=" (value) " " }
                } } }
                @if let Some(url) = &record.spec.notify_url {
                    tr { th { "webhook" } td { (url) " — " (record.notify_state.clone().unwrap_or_else(|| "not yet".into())) } }
                }
                @if let Some(route) = &record.spec.route {
                    tr { th { "route" } td id="route" {
                        (route.name) ": candidate " (route.at + 1) " of " (route.candidates.len())
                        @if let Some(served) = record.served_by() {
                            ", served by " (served.account) " / " (served.model)
                            (served.estimated_cost_usd.map(|usd| format!(" at ${usd:.3}")).unwrap_or_default())
                        }
                    } }
                    @if !route.left.is_empty() {
                        tr { th { "fell back" } td { ol id="fallbacks" {
                            @for left in &route.left {
                                li { (route.candidates.get(left.candidate).map(|c| c.label()).unwrap_or_default())
                                    " at " (left.account) ": " (left.reason.as_str()) ", " (utc(left.at_ms)) " UTC" }
                            }
                        } } }
                    }
                }
                tr { th { "provider task id" } td { (record.task_id.clone().unwrap_or_default()) } }
                tr { th { "estimated cost" } td { (record.spec.estimated_cost_usd.map(|usd| format!("${usd:.3}")).unwrap_or_default()) } }
                tr { th { "submits / polls" } td { (record.submits) " / " (record.polls) } }
                @if let Some(batch) = record.batch { tr { th { "batch" } td { a href={ "/ui/batches/" (batch) } { (batch_name.clone().unwrap_or_else(|| batch.to_string())) } } } }
                @if let Some(key) = &record.object_key {
                    tr { th { "stored object" } td { code id="object" { (key) } " (" (record.bytes.unwrap_or(0)) " bytes, sha256 " (record.sha256.clone().unwrap_or_default()) ")" } }
                    @if let Some(video) = &record.video {
                        tr { th { "video" } td { (video) } }
                    }
                }
                @if let Some(error) = &record.error {
                    tr { th { "error" } td.error { (record.error_class.map_or("", ErrorClass::as_str)) ": " (error) } }
                }
                @if let Some(note) = &record.reconcile_note {
                    tr { th { "provider's records" } td id="reconcile-note" { (note) } }
                }
            }
            @if let Some(src) = &player {
                h2 { "Video" }
                video id="player" controls preload="metadata" width="480" src=(src) poster=[poster.as_deref()] {}
                p { a href=(src) download { "Download" } }
            }
            h2 { "Timeline" }
            ol id="timeline" {
                @for (i, event) in history.iter().enumerate() {
                    @let (at, rest) = event.split_once(' ').unwrap_or((event, ""));
                    @let since = i.checked_sub(1).and_then(|before| {
                        let before: u64 = history[before].split(' ').next()?.parse().ok()?;
                        Some(at.parse::<u64>().ok()?.saturating_sub(before))
                    });
                    li {
                        code { (format_ms(at)) } " " (rest)
                        // The gap since the event before, said as such: beside a state it
                        // would read as time spent in that state.
                        @if let Some(ms) = since { " " small { "(" (format!("{:.1}", ms as f64 / 1000.0)) " s after the event before)" } }
                    }
                }
            }
            @if writable && record.state == JobState::Failed {
                // A retry of a job whose task is gone, or whose generation failed, is a new
                // paid create: say so before it goes.
                form.inline method="post" action={ "/ui/jobs/" (job_id) "/retry" }
                    onsubmit="return confirm('Retry this job? Without a provider task to poll it is submitted again: a new paid generation.')" {
                    button type="submit" id="retry" { "Retry" }
                }
            }
            @if writable && record.state == JobState::Uncertain {
                form method="post" action={ "/ui/jobs/" (job_id) "/resolve" } id="resolve" {
                    input type="text" name="task_id" aria-label="provider task id" placeholder="provider task id";
                    button type="submit" name="resolution" value="task_id" { "The provider has this task" }
                    button type="submit" name="resolution" value="resubmit"
                        onclick="return confirm('Submit again? If the provider did accept the first create, you pay for two generations.')" { "Submit again" }
                    button type="submit" name="resolution" value="fail" { "Give up" }
                }
            }
        },
    )
    .into_response()
}

/// `"1795416827710"` (unix ms) as UTC `HH:MM:SS.mmm`, or as it came.
fn format_ms(ms: &str) -> String {
    let Ok(ms) = ms.parse::<u64>() else {
        return ms.to_owned();
    };
    let secs = ms / 1000 % 86_400;
    format!(
        "{:02}:{:02}:{:02}.{:03}",
        secs / 3600,
        secs / 60 % 60,
        secs % 60,
        ms % 1000
    )
}

pub(crate) async fn retry_job(
    State(dashboard): State<Dashboard>,
    Path(job_id): Path<String>,
) -> Response {
    if let Some(refused) = refuse_unless_writable(&dashboard) {
        return refused;
    }
    let Ok(job_id) = job_id.parse::<JobId>() else {
        return not_found("no such job");
    };
    match dashboard.client.retry_failed(job_id).await {
        Ok(moved) => done(moved, format!("/ui/jobs/{job_id}")),
        Err(err) => unavailable(err),
    }
}

#[derive(Deserialize)]
pub(crate) struct ResolveForm {
    resolution: String,
    #[serde(default)]
    task_id: String,
}

pub(crate) async fn resolve_job(
    State(dashboard): State<Dashboard>,
    Path(job_id): Path<String>,
    Form(form): Form<ResolveForm>,
) -> Response {
    if let Some(refused) = refuse_unless_writable(&dashboard) {
        return refused;
    }
    let Ok(job_id) = job_id.parse::<JobId>() else {
        return not_found("no such job");
    };
    let resolution = match (form.resolution.as_str(), form.task_id.trim()) {
        ("task_id", task_id) if !task_id.is_empty() => Resolution::TaskId(task_id.to_owned()),
        ("resubmit", _) => Resolution::Resubmit,
        ("fail", _) => Resolution::Fail,
        _ => {
            return (
                StatusCode::BAD_REQUEST,
                "resolution: task_id (with a task id), resubmit or fail",
            )
                .into_response();
        }
    };
    match dashboard.client.resolve(job_id, resolution).await {
        Ok(moved) => done(moved, format!("/ui/jobs/{job_id}")),
        Err(err) => unavailable(err),
    }
}

/// `POST /ui/jobs/bulk`: `action` (`retry` or `cancel`) for every `job_id` given; jobs the
/// action does not apply to are left as they are.
pub(crate) async fn bulk_jobs(
    State(dashboard): State<Dashboard>,
    Form(fields): Form<Vec<(String, String)>>,
) -> Response {
    if let Some(refused) = refuse_unless_writable(&dashboard) {
        return refused;
    }
    let action = fields
        .iter()
        .find(|(k, _)| k == "action")
        .map(|(_, v)| v.as_str());
    let mut job_ids = Vec::new();
    for (_, value) in fields.iter().filter(|(k, _)| k == "job_id") {
        match value.parse::<JobId>() {
            Ok(job_id) => job_ids.push(job_id),
            Err(_) => {
                return (
                    StatusCode::BAD_REQUEST,
                    format!("{value:?} is not a job id"),
                )
                    .into_response();
            }
        }
    }
    for job_id in job_ids {
        let acted = match action {
            Some("retry") => dashboard.client.retry_failed(job_id).await.map(drop),
            // A job that cannot be cancelled is left as it is; the list shows where it stands.
            Some("cancel") => dashboard.client.cancel_job(job_id).await.map(drop),
            _ => return (StatusCode::BAD_REQUEST, "action: retry or cancel").into_response(),
        };
        if let Err(err) = acted {
            return unavailable(err);
        }
    }
    Redirect::to("/ui/jobs").into_response()
}

/// `text` cut to `most` characters, with an ellipsis when cut (the whole is in the cell's
/// title).
fn short(text: &str, most: usize) -> String {
    match text.char_indices().nth(most) {
        Some((end, _)) => format!("{}…", &text[..end]),
        None => text.to_owned(),
    }
}
