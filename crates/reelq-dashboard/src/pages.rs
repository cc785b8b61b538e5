//! The pages and actions. Each page reads the ledger through the producer's `Client` and
//! renders HTML on the server; the charts are inline SVG.

use std::{collections::BTreeMap, time::Duration};

use axum::{
    Form,
    extract::{Path, Query, State},
    http::{StatusCode, header},
    response::{IntoResponse, Redirect, Response},
};
use maud::{DOCTYPE, Markup, PreEscaped, html};
use reelq_core::{AccountName, BatchId, ErrorClass, JobId, JobState, ProviderKind, micros_to_usd};
use reelq_producer::{
    Asset, Client,
    display::{age, utc},
    now_ms, write_report_csv,
};
use reelq_queue::{JobRecord, PageCursor, Resolution};
use serde::Deserialize;

use crate::Dashboard;

const STYLE: &str = "body{font:14px system-ui,sans-serif;margin:0;color:#222}\
nav{background:#1f2937;padding:8px 16px}nav a{color:#fff;margin-right:16px;text-decoration:none}\
main{padding:16px;overflow-x:auto}table{border-collapse:collapse;margin:8px 0}\
td,th{border-bottom:1px solid #ddd;padding:4px 8px;text-align:left}\
.cards{display:flex;flex-wrap:wrap;gap:8px}.card{border:1px solid #ddd;border-radius:6px;padding:8px 12px}\
.card b{display:block;font-size:20px}.error{color:#b91c1c}svg rect{fill:#2563eb}\
svg rect.fail{fill:#dc2626}.bar{background:#e5e7eb;width:300px;height:12px}\
.bar div{background:#16a34a;height:12px}form.inline{display:inline}\
.chips a{border:1px solid #ddd;border-radius:12px;padding:2px 10px;margin-right:6px;text-decoration:none}\
.chips a.on{background:#1f2937;color:#fff}.card a{color:inherit;text-decoration:none}\
#live{float:right;color:#16a34a;font-size:12px}#live.stopped{color:#b91c1c}\
.sr{position:absolute;width:1px;height:1px;overflow:hidden;clip:rect(0,0,0,0)}";

/// Live pages: every 5 s the page fetches itself and swaps its `main` in place (not while
/// the operator is in one of its forms), and the indicator says when it last did (or that
/// updates stopped, while the server does not answer). A few lines of plain JavaScript, no build step; without JavaScript the page is
/// the same, only still.
const LIVE_SCRIPT: &str = "(function(){const live=document.getElementById('live');\
if(!live)return;async function tick(){const a=document.activeElement;\
if(a&&a.closest&&a.closest('main form'))return;try{const r=await fetch(location.href,{credentials:'same-origin'});\
if(!r.ok)throw new Error(r.status);const doc=new DOMParser().parseFromString(await r.text(),'text/html');\
const next=doc.querySelector('main');if(next){document.querySelector('main').replaceWith(next);}\
const now=new Date().toISOString().slice(11,19);const l=document.getElementById('live');\
l.textContent='live · updated '+now+' UTC';l.className='';}catch(e){const l=document.getElementById('live');\
l.textContent='updates stopped ('+e.message+'); retrying';l.className='stopped';}}\
setInterval(tick,5000);})();";

/// Every page's frame: title, navigation, body.
pub(crate) fn layout(title: &str, body: Markup) -> Markup {
    frame(title, body, false)
}

/// A page that updates itself ([`LIVE_SCRIPT`]), with its "live" indicator.
pub(crate) fn live_layout(title: &str, body: Markup) -> Markup {
    frame(title, body, true)
}

fn frame(title: &str, body: Markup, live: bool) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { "reelq · " (title) }
                style { (PreEscaped(STYLE)) }
            }
            body {
                nav aria-label="reelq" {
                    a href="/ui" { "Overview" }
                    a href="/ui/jobs" { "Jobs" }
                    a href="/ui/batches" { "Batches" }
                    form.inline method="post" action="/ui/logout" { button type="submit" { "Log out" } }
                    @if live { span id="live" role="status" aria-live="polite" { "live · every 5 s" } }
                }
                main { h1 { (title) } (body) }
                @if live { script { (PreEscaped(LIVE_SCRIPT)) } }
            }
        }
    }
}

/// A failed read: the operator sees what broke, the page does not pretend.
fn unavailable(err: impl std::fmt::Display) -> Response {
    tracing::warn!(error = %err, "dashboard read failed");
    (
        StatusCode::SERVICE_UNAVAILABLE,
        layout(
            "Unavailable",
            html! { p.error { "The ledger did not answer: " (err.to_string()) } },
        ),
    )
        .into_response()
}

fn not_found(what: &str) -> Response {
    (
        StatusCode::NOT_FOUND,
        layout("Not found", html! { p { (what) } }),
    )
        .into_response()
}

/// Bars `step` pixels apart for `values`, labelled underneath; `class` colours them.
fn bar_chart(id: &str, values: &[(String, u64)], class: &str, step: usize) -> Markup {
    let max = values.iter().map(|(_, v)| *v).max().unwrap_or(0).max(1);
    let width = step * values.len().max(1);
    html! {
        svg id=(id) width=(width) height="110" role="img" aria-label=(values.iter().map(|(label, value)| format!("{label}: {value}")).collect::<Vec<_>>().join(", ")) {
            @for (i, (label, value)) in values.iter().enumerate() {
                @let height = 80 * value / max;
                rect class=(class) x=(i * step + 4) y=(85 - height) width=(step - 8) height=(height) {
                    title { (label) ": " (value) }
                }
                text x=(i * step + step / 2) y="100" font-size="10" text-anchor="middle" { (label) " " (value) }
            }
        }
    }
}

pub(crate) async fn overview(State(dashboard): State<Dashboard>) -> Response {
    match overview_page(&dashboard.client, dashboard.config.writable).await {
        Ok(page) => page.into_response(),
        Err(err) => unavailable(err),
    }
}

async fn overview_page(
    client: &Client,
    writable: bool,
) -> Result<Markup, reelq_producer::ProducerError> {
    let stats = client.stats().await?;
    let limits = client.provider_limits().await?;
    let per_5_min = client
        .stored_per_window(12, Duration::from_secs(300))
        .await?;
    let throughput: Vec<(String, u64)> = per_5_min
        .iter()
        .enumerate()
        .map(|(i, n)| (format!("-{}m", (12 - i) * 5), *n))
        .collect();
    // Failed jobs only: moderation refusals end `rejected` and are counted apart, so the
    // chart agrees with the "failed" figures beside it.
    let mut failures: BTreeMap<String, u64> = BTreeMap::new();
    for record in client.jobs_in_state(JobState::Failed, 500).await? {
        let class = record.error_class.map_or("unknown", ErrorClass::as_str);
        *failures.entry(class.to_owned()).or_default() += 1;
    }
    let failures: Vec<(String, u64)> = failures.into_iter().collect();
    let rejected = stats
        .states
        .iter()
        .find(|(state, _)| *state == JobState::Rejected)
        .map_or(0, |(_, n)| *n);
    let workers = client.workers().await?;
    let now = now_ms();
    Ok(live_layout(
        "Overview",
        html! {
            h2 { "Jobs by state" }
            div.cards id="depths" {
                div.card { b { (stats.due_now) } "due now" }
                @for (state, n) in &stats.states {
                    div.card data-state=(state.as_str()) {
                        a href={ "/ui/jobs?state=" (state.as_str()) } { b { (n) } (state.as_str()) }
                    }
                }
            }
            h2 { "Workers" }
            @if workers.is_empty() { p id="workers" { "No live workers (each announces itself every 5 s)." } }
            @else {
                table id="workers" {
                    tr { th { "worker" } th { "role" } th { "accounts" } th { "steps at once" } th { "version" } th { "up" } th { "seen" } }
                    @for w in &workers {
                        tr {
                            td { (w.name) } td { (w.role) } td { (w.accounts.join(", ")) }
                            td { (w.concurrency) } td { (w.version) }
                            td { (age(now.saturating_sub(w.started_ms))) } td { (age(now.saturating_sub(w.seen_ms))) " ago" }
                        }
                    }
                }
            }
            h2 { "Providers" }
            table id="providers" {
                tr { th { "account" } th { "in flight" } th { "max in flight" } th { "requests/s" } th { "submits" } @if writable { th { "action" } } }
                @for provider in &stats.providers {
                    @let limit = limits.iter().find(|l| l.account == provider.account);
                    tr {
                        td { (provider.account.as_str()) }
                        td { (provider.in_flight) }
                        td { (limit.filter(|l| l.max_in_flight > 0).map_or("no limit".to_owned(), |l| l.max_in_flight.to_string())) }
                        td { (limit.filter(|l| l.requests_per_s > 0.0).map_or("no limit".to_owned(), |l| l.requests_per_s.to_string())) }
                        td { (provider.paused_ms.map_or("open".to_owned(), |ms| format!("paused {:.0} s", ms as f64 / 1000.0))) }
                        @if writable {
                            td {
                                @if provider.paused_ms.is_some() {
                                    form.inline method="post" action={ "/ui/accounts/" (provider.account) "/resume" } {
                                        button type="submit" { "Resume" }
                                    }
                                } @else {
                                    form.inline method="post" action={ "/ui/accounts/" (provider.account) "/pause" }
                                        onsubmit="return confirm('Pause submits to this account for an hour, on every replica?')" {
                                        button type="submit" { "Pause 1 h" }
                                    }
                                }
                            }
                        }
                    }
                }
            }
            h2 { "Stored per 5 minutes, last hour" }
            (bar_chart("throughput", &throughput, "", 48))
            p { (stats.stored_last_hour) " stored in the last hour, " (stats.failed_last_hour) " failed" }
            h2 { "Failed jobs by error class" }
            @if failures.is_empty() { p id="failures" { "No failed jobs." } }
            @else { (bar_chart("failures", &failures, "fail", 140)) }
            p id="rejected" { (rejected) " rejected by moderation (not failures: the provider refused the content)" }
        },
    ))
}

#[derive(Deserialize)]
pub(crate) struct JobFilter {
    state: Option<String>,
    provider: Option<String>,
    batch: Option<String>,
    /// A job id to go to.
    q: Option<String>,
    /// The listing position to continue after (the previous page's last).
    after: Option<String>,
    /// Jobs per page (1 to 500; 100 if absent).
    limit: Option<usize>,
}

/// Optional query values: an empty field means no filter.
fn filled(value: &Option<String>) -> Option<&str> {
    value.as_deref().filter(|v| !v.is_empty())
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
        Ok::<_, reelq_producer::ProducerError>((counts, records, next))
    };
    let (counts, records, next) = match read.await {
        Ok(read) => read,
        Err(err) => return unavailable(err),
    };
    let records: Vec<JobRecord> = records
        .into_iter()
        .filter(|r| state.is_none_or(|s| r.state == s))
        .filter(|r| provider.is_none_or(|p| r.spec.provider == p))
        .collect();
    let query = |state: Option<JobState>| {
        let mut parts = Vec::new();
        if let Some(state) = state {
            parts.push(format!("state={state}"));
        }
        if let Some(provider) = provider {
            parts.push(format!("provider={provider}"));
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
                    (jobs_table(&records, true))
                    button type="submit" name="action" value="retry" { "Retry the selected failed jobs" }
                    " "
                    button type="submit" name="action" value="cancel" { "Cancel the selected jobs not yet submitted" }
                }
            } @else {
                (jobs_table(&records, false))
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
fn jobs_table(records: &[JobRecord], selectable: bool) -> Markup {
    let now = now_ms();
    html! {
        table id="jobs" {
            tr { @if selectable { th { span.sr { "select" } } } th { "job" } th { "state" } th { "account" } th { "model" } th { "created (UTC)" } th { "last change" } th { "est. USD" } th { "submits" } th { "object / error" } }
            @for r in records {
                tr {
                    @if selectable {
                        td { input type="checkbox" name="job_id" value=(r.job_id) aria-label={ "select " (r.job_id) }; }
                    }
                    td { a href={ "/ui/jobs/" (r.job_id) } { (r.job_id) } }
                    td { (r.state.as_str()) }
                    td { (r.account.as_str()) }
                    td { (r.spec.model) }
                    td { (utc(r.created_ms)) }
                    td { (age(now.saturating_sub(r.updated_ms))) " ago" }
                    td { (r.spec.estimated_cost_usd.map(|usd| format!("{usd:.2}")).unwrap_or_default()) }
                    td { (r.submits) }
                    td { @if r.state == JobState::Stored { (r.object_key.clone().unwrap_or_default()) } @else { span.error { (r.error.clone().unwrap_or_default()) } } }
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
        (Ok(None), _) => return not_found("no such job (or past its retention)"),
        (Err(err), _) | (_, Err(err)) => return unavailable(err),
    };
    let writable = dashboard.config.writable;
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
                tr { th { "state" } td { (record.state.as_str()) } }
                tr { th { "provider / model" } td { (record.spec.provider.as_str()) " / " (record.spec.model) } }
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
                tr { th { "provider task id" } td { (record.task_id.clone().unwrap_or_default()) } }
                tr { th { "estimated cost" } td { (record.spec.estimated_cost_usd.map(|usd| format!("${usd:.3}")).unwrap_or_default()) } }
                tr { th { "submits / polls" } td { (record.submits) " / " (record.polls) } }
                @if let Some(batch) = record.batch { tr { th { "batch" } td { a href={ "/ui/batches/" (batch) } { (batch) } } } }
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
                        @if let Some(ms) = since { " " small { "(+" (format!("{:.1}", ms as f64 / 1000.0)) " s)" } }
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

pub(crate) async fn batches(State(dashboard): State<Dashboard>) -> Response {
    let client = &dashboard.client;
    let read = async {
        let mut infos = Vec::new();
        for batch_id in client.recent_batches(50).await? {
            infos.extend(client.batch_info(batch_id).await?);
        }
        Ok::<_, reelq_producer::ProducerError>(infos)
    };
    let infos = match read.await {
        Ok(infos) => infos,
        Err(err) => return unavailable(err),
    };
    live_layout(
        "Batches",
        html! {
            table id="batches" {
                tr { th { "batch" } th { "name" } th { "created (UTC)" } th { "ended / jobs" } th { "reserved / budget (USD)" } th { "priority" } }
                @for info in &infos {
                    @let ended = info.total.saturating_sub(info.open);
                    tr {
                        td { a href={ "/ui/batches/" (info.batch_id) } { (info.batch_id) } }
                        td { (info.name.clone().unwrap_or_default()) }
                        td { (utc(info.created_ms)) }
                        td {
                            div.bar { div style={ "width:" (300 * ended / info.total.max(1)) "px" } {} }
                            (ended) " / " (info.total)
                        }
                        td { @match info.budget_micros {
                            Some(budget) => { (format!("{:.2} / {:.2}", micros_to_usd(info.reserved_micros), micros_to_usd(budget))) }
                            None => { "no budget" }
                        } }
                        td { @if info.low_priority { "low" } @else { "normal" } }
                    }
                }
            }
        },
    )
    .into_response()
}

pub(crate) async fn batch(
    State(dashboard): State<Dashboard>,
    Path(batch_id): Path<String>,
) -> Response {
    let Ok(batch_id) = batch_id.parse::<BatchId>() else {
        return not_found("no such batch");
    };
    let client = &dashboard.client;
    let info = match client.batch_info(batch_id).await {
        Ok(Some(info)) => info,
        Ok(None) => return not_found("no such batch"),
        Err(err) => return unavailable(err),
    };
    let records = match client.batch_records(batch_id).await {
        Ok(records) => records,
        Err(err) => return unavailable(err),
    };
    let mut counts: BTreeMap<&'static str, u64> = BTreeMap::new();
    for record in &records {
        *counts.entry(record.state.as_str()).or_default() += 1;
    }
    let count = |states: &[JobState]| -> u64 {
        records.iter().filter(|r| states.contains(&r.state)).count() as u64
    };
    // Stored is done; the other endings are not; held jobs wait for an operator (a budget
    // raised, an uncertain create resolved) and are neither.
    let stored = count(&[JobState::Stored]);
    let ended_otherwise = count(&[
        JobState::Failed,
        JobState::Rejected,
        JobState::Expired,
        JobState::Cancelled,
    ]);
    let held = count(&[JobState::BudgetHeld, JobState::Uncertain]);
    let cancellable = count(&[JobState::Queued, JobState::BudgetHeld]);
    let failed = count(&[JobState::Failed]);
    let total = info.total.max(1);
    let in_progress = total.saturating_sub(stored + ended_otherwise + held);
    let estimated: f64 = records
        .iter()
        .filter_map(|r| r.spec.estimated_cost_usd)
        .sum();
    // Time so far per ended job, times the jobs still in progress.
    let ended = stored + ended_otherwise;
    let elapsed_ms = now_ms().saturating_sub(info.created_ms);
    let eta = (ended > 0 && in_progress > 0)
        .then(|| Duration::from_millis(elapsed_ms / ended * in_progress));
    let writable = dashboard.config.writable;
    live_layout(
        &format!("Batch {}", info.name.clone().unwrap_or_else(|| batch_id.to_string())),
        html! {
            p id="progress" {
                div.bar {
                    div style={ "width:" (300 * stored / total) "px;display:inline-block" } {}
                    div style={ "width:" (300 * ended_otherwise / total) "px;display:inline-block;background:#dc2626" } {}
                }
                (stored) " stored, " (ended_otherwise) " ended otherwise, " (held) " held, "
                (in_progress) " in progress, of " (info.total)
                @if let Some(eta) = eta { "; about " (eta.as_secs()) " s to go" }
            }
            div.cards id="batch-states" {
                @for (state, n) in &counts { div.card { b { (n) } (state) } }
            }
            p id="spend" {
                "Estimated $" (format!("{estimated:.2}")) " for its jobs"
                @if let Some(budget) = info.budget_micros {
                    "; reserved $" (format!("{:.2}", micros_to_usd(info.reserved_micros))) " of a $" (format!("{:.2}", micros_to_usd(budget))) " budget"
                }
                @if info.low_priority { " · low priority" }
                " · created " (utc(info.created_ms)) " UTC"
            }
            p { a href={ "/ui/batches/" (batch_id) "/report.csv" } id="report" { "Download the report (CSV)" } }
            @if writable && cancellable > 0 {
                form.inline method="post" action={ "/ui/batches/" (batch_id) "/cancel" } {
                    button type="submit" id="cancel" { "Cancel the batch's " (cancellable) " jobs not yet submitted" }
                }
            }
            @if writable && count(&[JobState::BudgetHeld]) > 0 {
                form.inline method="post" action={ "/ui/batches/" (batch_id) "/resume" } {
                    label { "New budget (USD) " input type="number" step="0.01" min="0" name="budget_usd" required; }
                    button type="submit" id="resume" { "Resume the held jobs" }
                }
            }
            @if writable && failed > 0 {
                form.inline method="post" action={ "/ui/batches/" (batch_id) "/retry-failed" }
                    onsubmit="return confirm('Retry the failed jobs? Those without a provider task to poll are submitted again: new paid generations.')" {
                    button type="submit" id="retry-failed" { "Retry the " (failed) " failed jobs" }
                }
            }
            (jobs_table(&records, false))
        },
    )
    .into_response()
}

pub(crate) async fn batch_report(
    State(dashboard): State<Dashboard>,
    Path(batch_id): Path<String>,
) -> Response {
    let Ok(batch_id) = batch_id.parse::<BatchId>() else {
        return not_found("no such batch");
    };
    let records = match dashboard.client.batch_records(batch_id).await {
        Ok(records) if records.is_empty() => return not_found("no such batch"),
        Ok(records) => records,
        Err(err) => return unavailable(err),
    };
    let mut csv = Vec::new();
    if let Err(err) = write_report_csv(&records, &mut csv) {
        return unavailable(err);
    }
    let disposition = format!("attachment; filename=\"batch-{batch_id}.csv\"");
    (
        [
            (header::CONTENT_TYPE, "text/csv".to_owned()),
            (header::CONTENT_DISPOSITION, disposition),
        ],
        csv,
    )
        .into_response()
}

/// Actions need write permission; without it they are refused.
fn refuse_unless_writable(dashboard: &Dashboard) -> Option<Response> {
    (!dashboard.config.writable)
        .then(|| (StatusCode::FORBIDDEN, "the dashboard is read-only").into_response())
}

/// After an action, back to the page it was taken on.
fn done(moved: bool, back: String) -> Response {
    if moved {
        Redirect::to(&back).into_response()
    } else {
        (
            StatusCode::CONFLICT,
            "the job is no longer in a state this action applies to",
        )
            .into_response()
    }
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
            Some("retry") => dashboard.client.retry_failed(job_id).await,
            Some("cancel") => dashboard.client.cancel_job(job_id).await,
            _ => return (StatusCode::BAD_REQUEST, "action: retry or cancel").into_response(),
        };
        if let Err(err) = acted {
            return unavailable(err);
        }
    }
    Redirect::to("/ui/jobs").into_response()
}

#[derive(Deserialize)]
pub(crate) struct ResumeForm {
    budget_usd: f64,
}

/// `POST /ui/batches/{id}/resume`: raises the budget and sends the held jobs on.
pub(crate) async fn resume_batch(
    State(dashboard): State<Dashboard>,
    Path(batch_id): Path<String>,
    Form(form): Form<ResumeForm>,
) -> Response {
    let batch_id = match writable_batch(&dashboard, &batch_id) {
        Ok(batch_id) => batch_id,
        Err(refused) => return *refused,
    };
    if !(form.budget_usd >= 0.0 && form.budget_usd.is_finite()) {
        return (StatusCode::BAD_REQUEST, "budget_usd: a number of dollars").into_response();
    }
    match dashboard
        .client
        .resume_batch(batch_id, Some(form.budget_usd))
        .await
    {
        Ok(Some(_)) => Redirect::to(&format!("/ui/batches/{batch_id}")).into_response(),
        Ok(None) => not_found("no such batch"),
        Err(reelq_producer::ProducerError::Queue(err)) => {
            (StatusCode::CONFLICT, err.to_string()).into_response()
        }
        Err(err) => unavailable(err),
    }
}

/// How long the dashboard's pause button pauses an account.
const DASHBOARD_PAUSE: Duration = Duration::from_secs(3600);

/// `POST /ui/accounts/{account}/pause` and `/resume`.
pub(crate) async fn pause_account(
    State(dashboard): State<Dashboard>,
    Path((account, action)): Path<(String, String)>,
) -> Response {
    if let Some(refused) = refuse_unless_writable(&dashboard) {
        return refused;
    }
    let Ok(account) = account.parse::<AccountName>() else {
        return not_found("no such account");
    };
    let done = match action.as_str() {
        "pause" => {
            dashboard
                .client
                .pause_account(&account, DASHBOARD_PAUSE)
                .await
        }
        "resume" => dashboard.client.resume_account(&account).await.map(|_| ()),
        _ => return not_found("no such action"),
    };
    match done {
        Ok(()) => Redirect::to("/ui").into_response(),
        Err(err) => unavailable(err),
    }
}

/// The batch an action names, if the dashboard may act: a refusal otherwise.
fn writable_batch(dashboard: &Dashboard, batch_id: &str) -> Result<BatchId, Box<Response>> {
    if let Some(refused) = refuse_unless_writable(dashboard) {
        return Err(Box::new(refused));
    }
    batch_id
        .parse::<BatchId>()
        .map_err(|_| Box::new(not_found("no such batch")))
}

pub(crate) async fn retry_failed_batch(
    State(dashboard): State<Dashboard>,
    Path(batch_id): Path<String>,
) -> Response {
    let batch_id = match writable_batch(&dashboard, &batch_id) {
        Ok(batch_id) => batch_id,
        Err(refused) => return *refused,
    };
    match dashboard.client.retry_failed_batch(batch_id).await {
        Ok(_) => Redirect::to(&format!("/ui/batches/{batch_id}")).into_response(),
        Err(err) => unavailable(err),
    }
}

pub(crate) async fn cancel_batch(
    State(dashboard): State<Dashboard>,
    Path(batch_id): Path<String>,
) -> Response {
    let batch_id = match writable_batch(&dashboard, &batch_id) {
        Ok(batch_id) => batch_id,
        Err(refused) => return *refused,
    };
    match dashboard.client.cancel_batch(batch_id).await {
        Ok(Some(_)) => Redirect::to(&format!("/ui/batches/{batch_id}")).into_response(),
        Ok(None) => not_found("no such batch"),
        Err(err) => unavailable(err),
    }
}
