//! The overview: jobs by state, live workers, accounts with their limits and pauses, what
//! was stored and what failed; and an account's pause and resume.

use super::*;

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
            @if stats.ledger.holding {
                p.error id="rollback" role="alert" {
                    "The ledger went back in time (Redis lost writes it had acknowledged): paid creates are held while the workers give back the creates they made. Last: "
                    (stats.ledger.last_rollback.as_deref().unwrap_or("-"))
                }
            } @else if stats.ledger.declared_ms.is_some_and(|at| now.saturating_sub(at) < 24 * 3600 * 1000) {
                p.error id="rollback" role="alert" {
                    "The ledger went back in time in the last 24 hours and was repaired from the workers' own creates; check uncertain jobs. Last: "
                    (stats.ledger.last_rollback.as_deref().unwrap_or("-"))
                }
            }
            @if let Some(since) = stats.archive.failing_since_ms {
                p.error id="archive" role="alert" {
                    "Archiving finished jobs to the object store fails (for "
                    (reelq_producer::display::age(now.saturating_sub(since)))
                    "): they stay in Redis until it works again. Last error: "
                    (stats.archive.error.as_deref().unwrap_or("-"))
                }
            }
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
                tr { th { "account" } th { "live workers" } th { "in flight" } th { "max in flight" } th { "requests/s" } th { "submits" } @if writable { th { "action" } } }
                @for provider in &stats.providers {
                    @let limit = limits.iter().find(|l| l.account == provider.account);
                    // An account the ledger remembers (limits, a pause) but no live worker
                    // holds: said so, and nothing to pause (no replica would submit to it).
                    @let serving = workers.iter().filter(|w| w.accounts.iter().any(|a| a == provider.account.as_str())).count();
                    tr {
                        td { (provider.account.as_str()) }
                        td { @if serving == 0 { "none (no worker has this account)" } @else { (serving) } }
                        td { (provider.in_flight) }
                        td { (limit.filter(|l| l.max_in_flight > 0).map_or("no limit".to_owned(), |l| l.max_in_flight.to_string())) }
                        td { (limit.filter(|l| l.requests_per_s > 0.0).map_or("no limit".to_owned(), |l| l.requests_per_s.to_string())) }
                        td { (provider.paused_ms.map_or("open".to_owned(), |ms| format!("paused {:.0} s", ms as f64 / 1000.0))) }
                        @if writable {
                            td {
                                @if serving == 0 && provider.paused_ms.is_none() {
                                } @else if provider.paused_ms.is_some() {
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
