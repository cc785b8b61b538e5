//! The batches: the list, a batch's page and report, and the actions on a batch.

use super::*;

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
                tr { th { "batch" } th { "name" } th { "created (UTC)" } th { "starts (UTC)" } th { "ended (any way) / jobs" } th { "reserved / budget (USD)" } th { "priority" } }
                @for info in &infos {
                    @let ended = info.total.saturating_sub(info.open);
                    tr {
                        td { a href={ "/ui/batches/" (info.batch_id) } { (info.batch_id) } }
                        td { (info.name.clone().unwrap_or_default()) }
                        td { (utc(info.created_ms)) }
                        // A batch scheduled ahead says when it starts; its jobs wait till then.
                        td { @match info.start_after_ms.filter(|at| *at > now_ms()) {
                            Some(at) => { (utc(at)) }
                            None => { "now" }
                        } }
                        // Ended counts every ending, failures too: neutral, not the success
                        // green (a batch's page splits stored from the rest).
                        td {
                            div.bar { div.ended style={ "width:" (300 * ended / info.total.max(1)) "px" } {} }
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
    // A batch scheduled ahead: its queued jobs say when they start.
    let starts: BTreeMap<BatchId, u64> = info
        .start_after_ms
        .filter(|at| *at > now_ms())
        .map(|at| (batch_id, at))
        .into_iter()
        .collect();
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
            (jobs_table(&records, false, &starts))
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
