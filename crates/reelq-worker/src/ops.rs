//! Operations endpoints: `/metrics` (Prometheus text), `/healthz` (the process answers) and
//! `/readyz` (Redis answers and the store can be read: a check that writes nothing, its
//! answer reused for 5 s). Every metric the process exports is in [`METRICS`], with its
//! help text; gauges read from the ledger (`reelq_jobs`, `reelq_in_flight`, `reelq_due_jobs`)
//! are read at each scrape and left out while Redis does not answer; they are
//! cluster-wide, so every replica reports the same value: aggregate them with `max`.

use std::{
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use axum::{Router, extract::State, http::StatusCode, routing::get};
use reelq_http::metrics::{Described, Kind};
use reelq_queue::Ledger;
use reelq_storage::VideoStore;

/// Step durations from 5 ms to 5 minutes.
const STEP_BUCKETS: [f64; 10] = [0.005, 0.02, 0.05, 0.1, 0.25, 1.0, 5.0, 20.0, 60.0, 300.0];

/// Seconds from enqueue to stored: generations take minutes, batches wait hours.
const JOB_BUCKETS: [f64; 10] = [
    1.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0, 14_400.0,
];

/// Every metric of the worker (besides the HTTP listeners', [`reelq_http::metrics`]): name,
/// kind, and the help text Prometheus shows (labels in braces).
const METRICS: &[Described] = &[
    (
        "reelq_jobs",
        Kind::Gauge,
        "Jobs in each {state}, read from the ledger at scrape time (cluster-wide: aggregate with max)",
    ),
    (
        "reelq_in_flight",
        Kind::Gauge,
        "Generations holding an in-flight slot per {account}, read from the ledger at scrape time (cluster-wide)",
    ),
    (
        "reelq_due_jobs",
        Kind::Gauge,
        "Jobs due now: the queue depth workers face (cluster-wide)",
    ),
    (
        "reelq_step_seconds",
        Kind::Histogram,
        "How long each {step} (submitting, waiting, fetching) took, in seconds",
    ),
    (
        "reelq_provider_requests_total",
        Kind::Counter,
        "Provider API calls by {provider}, {call} (submit, query, download) and {outcome}",
    ),
    (
        "reelq_limiter_waits_total",
        Kind::Counter,
        "Jobs a cluster-wide {limit} (rate, in_flight, daily_budget, tenant_in_flight, tenant_budget) of an {account} held back",
    ),
    (
        "reelq_callbacks_total",
        Kind::Counter,
        "Provider callbacks received, by the HTTP {status} answered",
    ),
    (
        "reelq_callbacks_refused_total",
        Kind::Counter,
        "Provider callbacks refused after the route was known, by {account} and {reason}",
    ),
    (
        "reelq_webhooks_total",
        Kind::Counter,
        "Completion webhook deliveries by {outcome}",
    ),
    (
        "reelq_stored_bytes_total",
        Kind::Counter,
        "Bytes of video written to the store",
    ),
    (
        "reelq_bad_results_total",
        Kind::Counter,
        "Provider results that were not the video asked for (a page, a cut file, a wrong duration), by {provider}",
    ),
    (
        "reelq_reconciled_total",
        Kind::Counter,
        "Uncertain jobs looked up in an {account}'s records, by {outcome} (adopted, absent, left)",
    ),
    (
        "reelq_local_resource_errors_total",
        Kind::Counter,
        "Steps retried because this host ran out of descriptors, memory or disk",
    ),
    (
        "reelq_ledger_rollbacks_total",
        Kind::Counter,
        "Times this worker found the ledger had gone back in time (lost writes it had acknowledged, or a rollback another client declared)",
    ),
    (
        "reelq_submits_held",
        Kind::Gauge,
        "1 while this worker claims nothing: it is giving the ledger back its paid creates after a rollback, or the ledger holds paid creates until every worker has",
    ),
    (
        "reelq_paid_creates_given_back_total",
        Kind::Counter,
        "Paid creates this worker gave back to the ledger (after a rollback, or a late answer), by {outcome} (restored, uncertain, intact, conflict, ended, missing)",
    ),
    (
        "reelq_archived_jobs_total",
        Kind::Counter,
        "Finished jobs this worker took out of Redis into the history in the object store",
    ),
    (
        "reelq_archive_segments_total",
        Kind::Counter,
        "History segments this worker wrote to the object store",
    ),
    (
        "reelq_archive_bytes_total",
        Kind::Counter,
        "Compressed bytes of history this worker wrote to the object store",
    ),
    (
        "reelq_archive_failures_total",
        Kind::Counter,
        "Archive passes that failed (the store down or refusing; the jobs stayed in Redis)",
    ),
    (
        "reelq_archive_failing",
        Kind::Gauge,
        "1 while this worker's last archive pass failed: finished jobs are piling up in Redis",
    ),
    (
        "reelq_job_seconds",
        Kind::Histogram,
        "Seconds from enqueue to the video stored, by {provider}",
    ),
    (
        "reelq_fallbacks_total",
        Kind::Counter,
        "Routed jobs moved on to their route's next candidate, by {route}, {from} (the account left), {to} (the account or provider next) and {reason}",
    ),
    (
        "reelq_estimated_spend_microdollars_total",
        Kind::Counter,
        "Estimated spend of the generations this worker submitted, in millionths of a dollar, by {account}",
    ),
];

/// Installs the process-wide Prometheus recorder with the worker's metrics described (once:
/// several workers in one test process share it).
pub(crate) fn install_metrics() {
    let buckets: [(&str, &[f64]); 2] = [
        ("reelq_step_seconds", &STEP_BUCKETS),
        ("reelq_job_seconds", &JOB_BUCKETS),
    ];
    reelq_http::metrics::install(METRICS, &buckets);
}

/// Puts the series whose labels are known at start on `/metrics` at 0 (a counter that
/// appears only with its first event hides a `rate()` and an `absent()` alert until then);
/// adds nothing to a series already counting.
pub(crate) fn register_series(accounts: &[reelq_core::AccountName]) {
    for name in [
        "reelq_stored_bytes_total",
        "reelq_local_resource_errors_total",
        "reelq_http_accept_errors_total",
        "reelq_http_connection_limit_reached_total",
        "reelq_ledger_rollbacks_total",
        "reelq_archived_jobs_total",
        "reelq_archive_segments_total",
        "reelq_archive_bytes_total",
        "reelq_archive_failures_total",
    ] {
        metrics::counter!(name).increment(0);
    }
    metrics::gauge!("reelq_submits_held").set(0.0);
    metrics::gauge!("reelq_archive_failing").set(0.0);
    for outcome in crate::notify::OUTCOME_NAMES {
        metrics::counter!("reelq_webhooks_total", "outcome" => outcome).increment(0);
    }
    for account in accounts.iter().map(|account| account.as_str().to_owned()) {
        let spend = "reelq_estimated_spend_microdollars_total";
        metrics::counter!(spend, "account" => account.clone()).increment(0);
        for limit in reelq_queue::Wait::ALL {
            metrics::counter!("reelq_limiter_waits_total", "account" => account.clone(), "limit" => limit.as_str())
                .increment(0);
        }
    }
}

#[derive(Clone)]
pub(crate) struct OpsState {
    pub(crate) ledger: Ledger,
    pub(crate) store: VideoStore,
    /// The accounts this worker has, whose in-flight counts it reports.
    pub(crate) accounts: Vec<reelq_core::AccountName>,
    pub(crate) store_check: StoreCheck,
    /// Closed while the ledger's history is being repaired (`rollback.rs`).
    pub(crate) gate: std::sync::Arc<crate::rollback::Gate>,
}

pub(crate) fn app(state: OpsState) -> Router {
    Router::new()
        .route("/metrics", get(render))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(ready))
        .with_state(state)
}

/// The recorder's metrics and, read now, the ledger's gauges.
async fn render(State(state): State<OpsState>) -> String {
    let mut text = reelq_http::metrics::render();
    text += &ledger_gauges(&state).await;
    text
}

/// The gauges read from the ledger at scrape time, as exposition text. Each is left out while
/// Redis does not answer: a last-known value would show a healthy queue that nobody can see.
async fn ledger_gauges(state: &OpsState) -> String {
    let mut text = String::new();
    if let Ok(counts) = state.ledger.state_counts().await {
        let samples = counts
            .into_iter()
            .map(|(job_state, n)| (format!("state=\"{job_state}\""), n));
        gauge_family(&mut text, "reelq_jobs", samples);
    }
    let mut in_flight = Vec::new();
    for account in &state.accounts {
        match state.ledger.in_flight(account).await {
            Ok(n) => in_flight.push((format!("account=\"{account}\""), n)),
            Err(_) => break,
        }
    }
    if in_flight.len() == state.accounts.len() {
        gauge_family(&mut text, "reelq_in_flight", in_flight);
    }
    if let Ok(n) = state.ledger.due_now().await {
        gauge_family(&mut text, "reelq_due_jobs", [(String::new(), n)]);
    }
    text
}

/// One gauge's HELP, TYPE and samples (`labels` as `name="value"`, or empty).
fn gauge_family(text: &mut String, name: &str, samples: impl IntoIterator<Item = (String, u64)>) {
    use std::fmt::Write as _;
    let help = METRICS
        .iter()
        .find(|&&(metric, _, _)| metric == name)
        .map_or("", |&(_, _, help)| help);
    let _ = writeln!(text, "# HELP {name} {help}\n# TYPE {name} gauge");
    for (labels, value) in samples {
        let _ = match labels.is_empty() {
            true => writeln!(text, "{name} {value}"),
            false => writeln!(text, "{name}{{{labels}}} {value}"),
        };
    }
}

async fn ready(State(state): State<OpsState>) -> (StatusCode, String) {
    if let Err(err) = state.ledger.ping().await {
        return (StatusCode::SERVICE_UNAVAILABLE, format!("redis: {err}"));
    }
    if let Some(reason) = state.gate.closed() {
        return (StatusCode::SERVICE_UNAVAILABLE, format!("ledger: {reason}"));
    }
    if let Err(err) = state.store_check.check(&state.store).await {
        return (StatusCode::SERVICE_UNAVAILABLE, format!("store: {err}"));
    }
    // Archiving failing is a warning, not unreadiness: the worker still does its job, and
    // the jobs it could not archive wait in Redis.
    match state.ledger.archive_status().await {
        Ok(status) if status.failing_since_ms.is_some() => (
            StatusCode::OK,
            format!(
                "ready; warning: archiving finished jobs to the store fails ({}): they stay in Redis",
                status.error.unwrap_or_default()
            ),
        ),
        _ => (StatusCode::OK, "ready".into()),
    }
}

/// How long a store check's answer is reused: probes come every few seconds from every
/// kubelet and load balancer, and each check is a request to the store.
const STORE_CHECK_TTL: Duration = Duration::from_secs(5);

/// The last store check and when it was made.
#[derive(Clone, Default)]
pub(crate) struct StoreCheck {
    last: Arc<Mutex<Option<CheckedAt>>>,
}

/// When a check was made, and its answer.
type CheckedAt = (Instant, Result<(), String>);

impl StoreCheck {
    async fn check(&self, store: &VideoStore) -> Result<(), String> {
        if let Some((at, answer)) = self.last.lock().expect("never poisoned").as_ref()
            && at.elapsed() < STORE_CHECK_TTL
        {
            return answer.clone();
        }
        let answer = store.check_readable().await.map_err(|err| err.to_string());
        *self.last.lock().expect("never poisoned") = Some((Instant::now(), answer.clone()));
        answer
    }
}
