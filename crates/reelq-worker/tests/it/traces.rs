//! Traces over OTLP: a job's life (its submit, the provider's callback, the poll that stores
//! the video, its webhook) is one trace, whose id is the job's, sent as OTLP/HTTP JSON to a
//! receiver in the test that decodes what a collector would.

use std::{collections::BTreeMap, time::Duration};

use axum::{Json, Router, extract::State, routing::post};
use reelq_e2e::{Deployment, WebhookReceiver};
use serde_json::Value;
use tokio::sync::mpsc;

/// One span as the receiver read it.
#[derive(Debug, Clone)]
struct ReceivedSpan {
    trace_id: String,
    span_id: String,
    parent_span_id: String,
    name: String,
    attributes: BTreeMap<String, Value>,
}

/// An OTLP/HTTP traces endpoint (`POST /v1/traces`, JSON) handing each span to the test.
async fn otlp_receiver() -> (String, mpsc::UnboundedReceiver<ReceivedSpan>) {
    let (spans, received) = mpsc::unbounded_channel();
    let app = Router::new()
        .route(
            "/v1/traces",
            post(
                |State(spans): State<mpsc::UnboundedSender<ReceivedSpan>>,
                 Json(export): Json<Value>| async move {
                    for span in spans_of(&export) {
                        let _ = spans.send(span);
                    }
                    Json(serde_json::json!({}))
                },
            ),
        )
        .with_state(spans);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, received)
}

/// The spans of an `ExportTraceServiceRequest` in OTLP's JSON encoding.
fn spans_of(export: &Value) -> Vec<ReceivedSpan> {
    let text = |value: &Value| value.as_str().unwrap_or_default().to_owned();
    let mut found = Vec::new();
    for resource in export["resourceSpans"].as_array().into_iter().flatten() {
        for scope in resource["scopeSpans"].as_array().into_iter().flatten() {
            for span in scope["spans"].as_array().into_iter().flatten() {
                let attributes = span["attributes"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|kv| {
                        let value = kv["value"].as_object().and_then(|v| v.values().next());
                        (text(&kv["key"]), value.cloned().unwrap_or(Value::Null))
                    })
                    .collect();
                found.push(ReceivedSpan {
                    trace_id: text(&span["traceId"]),
                    span_id: text(&span["spanId"]),
                    parent_span_id: text(&span["parentSpanId"]),
                    name: text(&span["name"]),
                    attributes,
                });
            }
        }
    }
    found
}

#[tokio::test]
async fn a_jobs_submit_callback_poll_and_webhook_are_one_trace_under_its_life() {
    let mut deployment = Deployment::start(
        env!("CARGO_BIN_EXE_reelq-worker"),
        Duration::from_millis(50),
    )
    .await;
    // Only the provider's callback can bring the job in: its trace has one.
    deployment.first_poll_ms = 600_000;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let callbacks = format!("127.0.0.1:{port}");
    deployment.extra_config = format!(
        "[callbacks]\npublic_base_url = \"http://{callbacks}\"\nlisten = \"{callbacks}\"\n"
    );
    deployment.enable_notify();
    let (otlp, mut spans) = otlp_receiver().await;
    deployment.extra_config +=
        &format!("[telemetry]\notlp_endpoint = \"{otlp}\"\nexport_delay_ms = 100\n");
    let mut webhooks = WebhookReceiver::start(vec![]).await;
    let _worker = deployment.spawn_worker_process("traced");

    let job_id = deployment
        .enqueue_notified("a traced lighthouse", &webhooks.url)
        .await;
    let record = deployment.settled(&[job_id]).await.remove(0);
    assert!(record.object_key.is_some(), "the job is stored: {record:?}");
    webhooks.next().await;

    // The job's spans, as they arrive, until its root (sent at the end) and its webhook's.
    let trace_id = job_id.trace_id();
    let mut trace = Vec::new();
    tokio::time::timeout(reelq_testkit::EVENT_TIMEOUT, async {
        while !["job", "webhook"]
            .iter()
            .all(|name| trace.iter().any(|span: &ReceivedSpan| span.name == *name))
        {
            let span = spans.recv().await.expect("the receiver runs");
            if span.trace_id == trace_id {
                trace.push(span);
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("the job's root and webhook spans arrive; got {trace:#?}"));

    let root = trace.iter().find(|span| span.name == "job").unwrap();
    assert_eq!(root.attributes["state"], "stored");
    assert_eq!(root.attributes["job_id"], job_id.to_string());
    for name in ["submit", "callback", "poll", "webhook"] {
        let span = trace
            .iter()
            .find(|span| span.name == name)
            .unwrap_or_else(|| panic!("a {name} span in the job's trace: {trace:#?}"));
        assert_eq!(
            span.parent_span_id, root.span_id,
            "{name} hangs under the job's life"
        );
        assert_eq!(span.attributes["job_id"], job_id.to_string(), "{name}");
    }
    let submit = trace.iter().find(|span| span.name == "submit").unwrap();
    assert_eq!(submit.attributes["provider"], "kie");
    assert_eq!(submit.attributes["account"], "kie");
    assert!(submit.attributes.contains_key("attempt"), "{submit:?}");
    let callback = trace.iter().find(|span| span.name == "callback").unwrap();
    assert_eq!(
        callback.attributes["task_id"].as_str(),
        record.task_id.as_deref()
    );
}
