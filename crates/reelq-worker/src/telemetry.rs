//! Traces: one per job, exported over OTLP/HTTP (JSON) when `[telemetry] otlp_endpoint` is
//! set, to any OpenTelemetry collector (the Collector, Jaeger, Tempo, ...).
//!
//! A job's trace id is its job id: a ULID is 128 bits, as a trace id is. So every replica
//! that touches a job (each step's claim and run, the callbacks about it, its webhooks) puts
//! its spans in the same trace with no context kept in the ledger or carried between
//! processes. They all hang under one root span, the job's life from enqueue to its end, whose
//! span id is derived from the job id too; the worker that records the ending emits it
//! (a job that expires in the queue has no root: nothing ran it).
//!
//! Spans carry `job_id`, `provider`, `account`, `step` and `attempt` as attributes; their names
//! are the step (`submit`, `poll`, `fetch`), `callback` and `webhook`.

use std::{
    future::Future,
    pin::Pin,
    time::{Duration, SystemTime},
};

use opentelemetry::{
    Context, KeyValue,
    trace::{
        Span as _, SpanContext, SpanId, TraceContextExt as _, TraceFlags, TraceId, TraceState,
        Tracer as _, TracerProvider as _,
    },
};
use opentelemetry_http::{Bytes, HttpClient, HttpError, Request, Response};
use opentelemetry_otlp::{Protocol, WithExportConfig as _, WithHttpConfig as _};
use opentelemetry_sdk::trace::{BatchConfigBuilder, BatchSpanProcessor, SdkTracerProvider};
use reelq_core::JobId;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

use crate::{WorkerError, config::TelemetryConfig};

/// The tracer provider while traces are exported; [`Telemetry::shutdown`] sends what is left.
pub struct Telemetry {
    provider: SdkTracerProvider,
}

impl Telemetry {
    /// Starts exporting to `config.otlp_endpoint` and makes the provider the process's
    /// global one (which the job's root span goes through). Call inside the Tokio runtime: exports run on it.
    pub fn start(config: &TelemetryConfig, service: &str) -> Result<Self, WorkerError> {
        let endpoint = format!("{}/v1/traces", config.otlp_endpoint.trim_end_matches('/'));
        let client = OnRuntime {
            client: reqwest::Client::new(),
            runtime: tokio::runtime::Handle::current(),
        };
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_protocol(Protocol::HttpJson)
            .with_endpoint(endpoint)
            .with_http_client(client)
            .with_timeout(Duration::from_secs(10))
            .build()
            .map_err(|err| WorkerError::Config(format!("telemetry.otlp_endpoint: {err}")))?;
        let batches = BatchConfigBuilder::default()
            .with_scheduled_delay(config.export_delay)
            .build();
        let processor = BatchSpanProcessor::builder(exporter)
            .with_batch_config(batches)
            .build();
        let resource = opentelemetry_sdk::Resource::builder()
            .with_service_name(service.to_owned())
            .with_attribute(KeyValue::new("service.version", env!("CARGO_PKG_VERSION")))
            .build();
        let provider = SdkTracerProvider::builder()
            .with_span_processor(processor)
            .with_resource(resource)
            .build();
        opentelemetry::global::set_tracer_provider(provider.clone());
        Ok(Self { provider })
    }

    /// The `tracing` layer that turns spans into OpenTelemetry spans for this provider.
    pub fn layer<S>(&self) -> impl tracing_subscriber::Layer<S> + use<S>
    where
        S: tracing::Subscriber + for<'span> tracing_subscriber::registry::LookupSpan<'span>,
    {
        tracing_opentelemetry::layer().with_tracer(self.provider.tracer("reelq-worker"))
    }

    /// Exports the spans not yet sent and stops. Blocks: call it off the runtime's workers
    /// (`spawn_blocking`), since the exports it waits for run on them.
    pub fn shutdown(self) {
        if let Err(err) = self.provider.shutdown() {
            tracing::warn!(error = %err, "telemetry: the last spans were not all exported");
        }
    }
}

/// The job's root span: the low 64 bits of its id (the ULID's random part), never zero.
fn root_span_id(job_id: JobId) -> SpanId {
    let low = job_id.to_u128() as u64;
    SpanId::from_bytes(low.max(1).to_be_bytes())
}

fn trace_id(job_id: JobId) -> TraceId {
    TraceId::from_bytes(job_id.to_u128().to_be_bytes())
}

/// Puts `span` (not yet entered) in the job's trace, under the job's root span.
pub(crate) fn in_job_trace(span: &tracing::Span, job_id: JobId) {
    let root = SpanContext::new(
        trace_id(job_id),
        root_span_id(job_id),
        TraceFlags::SAMPLED,
        true,
        TraceState::default(),
    );
    // Fails only for a span that is disabled (filtered out) or already entered.
    let _ = span.set_parent(Context::new().with_remote_span_context(root));
}

/// Emits the job's root span, from its enqueue (the time in its id) to now, ending in
/// `state`. A no-op while no exporter is installed.
pub(crate) fn end_job(job_id: JobId, provider: &str, account: &str, state: &str) {
    let tracer = opentelemetry::global::tracer("reelq-worker");
    let mut span = tracer
        .span_builder("job")
        .with_trace_id(trace_id(job_id))
        .with_span_id(root_span_id(job_id))
        .with_start_time(job_id.created_at())
        .with_attributes([
            KeyValue::new("job_id", job_id.to_string()),
            KeyValue::new("provider", provider.to_owned()),
            KeyValue::new("account", account.to_owned()),
            KeyValue::new("state", state.to_owned()),
        ])
        .start_with_context(&tracer, &Context::new());
    span.end_with_timestamp(SystemTime::now());
}

/// An OTLP HTTP client whose requests run on the Tokio runtime: the SDK's batch processor
/// exports from its own thread, where reqwest's futures would find no reactor.
#[derive(Debug)]
struct OnRuntime {
    client: reqwest::Client,
    runtime: tokio::runtime::Handle,
}

impl HttpClient for OnRuntime {
    fn send_bytes<'life0, 'async_trait>(
        &'life0 self,
        request: Request<Bytes>,
    ) -> Pin<Box<dyn Future<Output = Result<Response<Bytes>, HttpError>> + Send + 'async_trait>>
    where
        'life0: 'async_trait,
        Self: 'async_trait,
    {
        let client = self.client.clone();
        let sent = self.runtime.spawn(async move {
            let request = reqwest::Request::try_from(request)?;
            let response = client.execute(request).await?.error_for_status()?;
            let status = response.status();
            let body = response.bytes().await?;
            Ok::<_, HttpError>(Response::builder().status(status).body(body)?)
        });
        Box::pin(async move { sent.await? })
    }
}
