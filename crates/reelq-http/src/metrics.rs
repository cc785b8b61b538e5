//! The process's Prometheus recorder (one per process, whichever component installs it
//! first) and the metrics every reelq HTTP listener records. Each component names its own
//! metrics with their help text; [`install`] describes those and [`HTTP_METRICS`], so every
//! series `/metrics` shows has help (`promtool check metrics` passes).

use std::sync::OnceLock;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

#[derive(Clone, Copy)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
}

/// A metric: name, kind, and the help text Prometheus shows (labels in braces).
pub type Described = (&'static str, Kind, &'static str);

/// Request durations from 1 ms to 30 s.
const REQUEST_BUCKETS: [f64; 9] = [0.001, 0.005, 0.02, 0.05, 0.1, 0.5, 2.0, 10.0, 30.0];

/// What [`crate::serve`] and [`crate::access_log`] record, and the build info.
pub const HTTP_METRICS: &[Described] = &[
    (
        "reelq_http_accept_errors_total",
        Kind::Counter,
        "Connections a listener failed to accept (e.g. too many open files)",
    ),
    (
        "reelq_http_connection_limit_reached_total",
        Kind::Counter,
        "Times a listener reached its most open connections and left new ones in the backlog",
    ),
    (
        "reelq_http_requests_total",
        Kind::Counter,
        "Requests answered by a router with the access log, by {route} (its pattern), {method} and {status}",
    ),
    (
        "reelq_http_request_seconds",
        Kind::Histogram,
        "Seconds to answer a request, by {route}",
    ),
    (
        "reelq_build_info",
        Kind::Gauge,
        "Always 1, labelled with this process's {version}",
    ),
];

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Installs the process-wide recorder once (later calls, e.g. several workers in one test
/// process, get the first one's) and returns its handle. Each of the component's histograms
/// needs its buckets in `buckets` (else it renders as a summary).
pub fn install(metrics: &[Described], buckets: &[(&str, &[f64])]) -> &'static PrometheusHandle {
    HANDLE.get_or_init(|| {
        let mut builder = PrometheusBuilder::new()
            .set_buckets_for_metric(
                Matcher::Full("reelq_http_request_seconds".into()),
                &REQUEST_BUCKETS,
            )
            .expect("buckets are not empty");
        for &(name, metric_buckets) in buckets {
            builder = builder
                .set_buckets_for_metric(Matcher::Full(name.into()), metric_buckets)
                .expect("buckets are not empty");
        }
        let handle = builder
            .install_recorder()
            .expect("no other metrics recorder is installed in this process");
        for &(name, kind, help) in HTTP_METRICS.iter().chain(metrics) {
            match kind {
                Kind::Counter => metrics::describe_counter!(name, help),
                Kind::Gauge => metrics::describe_gauge!(name, help),
                Kind::Histogram => metrics::describe_histogram!(name, help),
            }
        }
        metrics::gauge!("reelq_build_info", "version" => env!("CARGO_PKG_VERSION")).set(1.0);
        handle
    })
}

/// The recorder's text for `/metrics` (after its upkeep); empty before [`install`].
pub fn render() -> String {
    HANDLE.get().map_or_else(String::new, |handle| {
        handle.run_upkeep();
        handle.render()
    })
}
