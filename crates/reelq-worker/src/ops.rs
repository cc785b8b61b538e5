//! Operations endpoints: `/metrics` (Prometheus text), `/healthz` (the process answers) and
//! `/readyz` (Redis answers and the store can be read: a check that writes nothing, its
//! answer reused for 5 s). Metric names:
//!
//! | series                                                   | kind      |
//! |----------------------------------------------------------|-----------|
//! | `reelq_jobs{state}`                                      | gauge, read from the ledger at scrape time |
//! | `reelq_step_seconds{step}`                               | histogram |
//! | `reelq_provider_requests_total{provider,call,outcome}`   | counter   |
//! | `reelq_callbacks_total{status}` (HTTP status answered)   | counter   |
//! | `reelq_webhooks_total{outcome}`                          | counter   |
//! | `reelq_bytes_stored_total`                               | counter   |
//! | `reelq_bad_results_total{provider}`                      | counter   |
//! | `reelq_in_flight{provider}` (generations holding a slot) | gauge, read at scrape time |
//! | `reelq_due_jobs` (due now: the queue depth workers face)  | gauge, read at scrape time |
//! | `reelq_limiter_waits_total{provider,limit}`              | counter   |

use std::{
    sync::{Arc, Mutex, OnceLock},
    time::{Duration, Instant},
};

use axum::{Router, extract::State, http::StatusCode, routing::get};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use reelq_core::ProviderKind;
use reelq_queue::Ledger;
use reelq_storage::VideoStore;

/// Step durations from 5 ms to 5 minutes.
const STEP_BUCKETS: [f64; 10] = [0.005, 0.02, 0.05, 0.1, 0.25, 1.0, 5.0, 20.0, 60.0, 300.0];

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Installs the process-wide Prometheus recorder once (several workers in one test process
/// share it) and returns its handle.
pub(crate) fn metrics_handle() -> &'static PrometheusHandle {
    HANDLE.get_or_init(|| {
        PrometheusBuilder::new()
            .set_buckets(&STEP_BUCKETS)
            .expect("buckets are not empty")
            .install_recorder()
            .expect("no other metrics recorder is installed in this process")
    })
}

#[derive(Clone)]
pub(crate) struct OpsState {
    pub(crate) ledger: Ledger,
    pub(crate) store: VideoStore,
    /// The providers this worker has accounts for, whose in-flight counts it reports.
    pub(crate) providers: Vec<ProviderKind>,
    pub(crate) store_check: StoreCheck,
}

pub(crate) fn app(state: OpsState) -> Router {
    Router::new()
        .route("/metrics", get(render))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(ready))
        .with_state(state)
}

async fn render(State(state): State<OpsState>) -> String {
    if let Ok(counts) = state.ledger.state_counts().await {
        for (job_state, n_jobs) in counts {
            metrics::gauge!("reelq_jobs", "state" => job_state.as_str()).set(n_jobs as f64);
        }
    }
    for &provider in &state.providers {
        if let Ok(n) = state.ledger.in_flight(provider).await {
            metrics::gauge!("reelq_in_flight", "provider" => provider.as_str()).set(n as f64);
        }
    }
    if let Ok(n) = state.ledger.due_now().await {
        metrics::gauge!("reelq_due_jobs").set(n as f64);
    }
    let handle = metrics_handle();
    handle.run_upkeep();
    handle.render()
}

async fn ready(State(state): State<OpsState>) -> (StatusCode, String) {
    if let Err(err) = state.ledger.ping().await {
        return (StatusCode::SERVICE_UNAVAILABLE, format!("redis: {err}"));
    }
    if let Err(err) = state.store_check.check(&state.store).await {
        return (StatusCode::SERVICE_UNAVAILABLE, format!("store: {err}"));
    }
    (StatusCode::OK, "ready".into())
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
