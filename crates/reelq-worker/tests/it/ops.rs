//! The operations endpoints: health, readiness and Prometheus metrics of a live worker.

use std::time::Duration;

use reelq_e2e::{API_KEY, Deployment, prompts};
use reelq_worker::{Listeners, WorkerConfig};

#[tokio::test]
async fn a_live_worker_reports_health_readiness_and_metrics() {
    let mut deployment = Deployment::start(
        env!("CARGO_BIN_EXE_reelq-worker"),
        Duration::from_millis(50),
    )
    .await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let config = WorkerConfig::load(Some(&deployment.worker_config("ops", API_KEY))).unwrap();
    let _worker = deployment.run_worker_task(
        config,
        Listeners {
            callbacks: None,
            ops: Some(listener),
        },
    );
    let job_ids = deployment.enqueue_manifest(&prompts("ops", 2)).await;
    deployment.settled(&job_ids).await;

    let http = reqwest::Client::new();
    let get = |path: &str| {
        let request = http.get(format!("{base}{path}"));
        async move {
            let response = request.send().await.unwrap();
            (response.status().as_u16(), response.text().await.unwrap())
        }
    };
    assert_eq!(get("/healthz").await, (200, "ok".into()));
    assert_eq!(get("/readyz").await, (200, "ready".into()));
    let (status, metrics) = get("/metrics").await;
    assert_eq!(status, 200);
    for series in [
        "reelq_jobs{state=\"stored\"} 2",
        "reelq_jobs{state=\"queued\"} 0",
        "reelq_step_seconds_bucket{step=\"fetching\"",
        "reelq_provider_requests_total{provider=\"kie\",call=\"submit\",outcome=\"ok\"}",
        "reelq_stored_bytes_total",
        "reelq_build_info{version=\"",
        "reelq_job_seconds_bucket{provider=\"kie\",le=\"14400\"}",
        "reelq_estimated_spend_microdollars_total{account=\"kie\"}",
        // Present before their first event (whatever count other tests' workers in this
        // process, which share the recorder, have given them).
        "reelq_local_resource_errors_total ",
        "reelq_webhooks_total{outcome=\"gave_up\"} ",
        "reelq_limiter_waits_total{account=\"kie\",limit=\"daily_budget\"} ",
    ] {
        assert!(
            metrics.contains(series),
            "{series} missing from:\n{metrics}"
        );
    }

    // Prometheus's own linter passes the exposition (help text, names, units).
    reelq_testkit::assert_promtool_passes(&metrics);

    // With Redis gone, the ledger's gauges are left out, not frozen at their last values.
    deployment.redis.stop();
    let (status, metrics) = get("/metrics").await;
    assert_eq!(status, 200);
    for gauge in ["reelq_jobs", "reelq_in_flight", "reelq_due_jobs"] {
        assert!(
            !metrics.contains(&format!("\n{gauge}")),
            "{gauge} in:\n{metrics}"
        );
    }
    assert!(metrics.contains("reelq_stored_bytes_total"), "{metrics}");

    deployment.redis.stop();
    let (status, reason) = get("/readyz").await;
    assert_eq!(status, 503);
    assert!(reason.starts_with("redis:"), "{reason}");
}
