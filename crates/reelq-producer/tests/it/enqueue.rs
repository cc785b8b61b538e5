//! Enqueueing: bad requests are refused before anything is written.

use reelq_core::{JobRequest, JobState};
use reelq_producer::{Client, LedgerConfig, ProducerError};
use reelq_testkit::RedisServer;

fn request(prompt: &str) -> JobRequest {
    JobRequest {
        provider: Some("kie".into()),
        model: Some("kling-3.0/video".into()),
        prompt: Some(prompt.into()),
        ..JobRequest::default()
    }
}

#[tokio::test]
async fn a_valid_job_is_queued_with_its_defaults() {
    let redis = RedisServer::start().unwrap();
    let client = Client::connect(&LedgerConfig::new(redis.url(), "t"))
        .await
        .unwrap();
    let job_id = client.enqueue(request("a lighthouse")).await.unwrap();
    let record = client
        .status(job_id)
        .await
        .unwrap()
        .expect("job is in the ledger");
    assert_eq!(record.state, JobState::Queued);
    assert_eq!((record.spec.duration_s, record.submits), (5, 0));
}

#[tokio::test]
async fn an_invalid_job_is_refused_naming_the_field() {
    let redis = RedisServer::start().unwrap();
    let client = Client::connect(&LedgerConfig::new(redis.url(), "t"))
        .await
        .unwrap();
    let bad = JobRequest {
        duration_s: Some(25),
        ..request("x")
    };
    let err = client.enqueue(bad).await.unwrap_err();
    assert!(
        matches!(&err, ProducerError::Invalid(spec) if spec.field == "duration_s"),
        "{err}"
    );
}

#[tokio::test]
async fn a_manifest_with_a_bad_line_enqueues_nothing() {
    let redis = RedisServer::start().unwrap();
    let client = Client::connect(&LedgerConfig::new(redis.url(), "t"))
        .await
        .unwrap();
    let manifest = "{\"provider\":\"kie\",\"model\":\"kling-3.0/video\",\"prompt\":\"fine\"}\n\
                    {\"provider\":\"nope\",\"model\":\"m\",\"prompt\":\"p\"}\n";
    let err = client.enqueue_manifest(manifest).await.unwrap_err();
    let ProducerError::Manifest(manifest_err) = err else {
        panic!("expected a manifest error: {err}")
    };
    assert_eq!(manifest_err.problems[0].line, 2);
    assert!(
        manifest_err.problems[0]
            .message
            .starts_with("provider: unknown provider \"nope\"")
    );

    let mut conn = redis::Client::open(redis.url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let mut keys: Vec<String> = redis::cmd("KEYS")
        .arg("*")
        .query_async(&mut conn)
        .await
        .unwrap();
    keys.sort();
    // What a client writes when it first connects: the record format, the history and the
    // layout.
    assert_eq!(
        keys,
        ["{t}:history", "{t}:layout", "{t}:schema"],
        "nothing half-enqueued"
    );
}

#[tokio::test]
async fn stats_show_queue_depths_and_the_job_keeps_its_estimated_cost() {
    let redis = RedisServer::start().unwrap();
    let client = Client::connect(&LedgerConfig::new(redis.url(), "t"))
        .await
        .unwrap();
    let job_id = client.enqueue(request("priced")).await.unwrap();
    client.enqueue(request("second")).await.unwrap();

    let stats = client.stats().await.unwrap();
    assert!(stats.states.contains(&(JobState::Queued, 2)), "{stats:?}");
    assert_eq!(stats.due_now, 2);
    assert_eq!(stats.stored_last_hour, 0);
    // kie kling-3.0/video, 5 s at the built-in $0.07/s.
    let record = client.status(job_id).await.unwrap().unwrap();
    assert_eq!(record.spec.estimated_cost_usd, Some(0.35));
}

#[tokio::test]
async fn a_webhook_to_an_internal_address_is_refused_at_enqueue_unless_allowed() {
    let redis = RedisServer::start().unwrap();
    let client = Client::connect(&LedgerConfig::new(redis.url(), "t"))
        .await
        .unwrap();
    let notified = |url: &str| JobRequest {
        notify_url: Some(url.into()),
        ..request("hooked")
    };
    for url in [
        "https://127.0.0.1:9/hook",
        "https://localhost/hook",
        "https://169.254.169.254/latest/meta-data/",
        "https://10.0.0.7/hook",
        "https://[::1]/hook",
        "http://hooks.example.com/plain",
    ] {
        match client.enqueue(notified(url)).await {
            Err(ProducerError::Invalid(err)) => assert_eq!(err.field, "notify_url", "{url}"),
            other => panic!("{url}: {other:?}"),
        }
    }
    assert!(
        client
            .jobs_in_state(JobState::Queued, 10)
            .await
            .unwrap()
            .is_empty()
    );
    client
        .enqueue(notified("https://hooks.example.com/reelq"))
        .await
        .expect("a public https target is accepted");

    let internal = client.with_webhook_targets(reelq_core::WebhookTargets {
        allow_http: true,
        allow: vec!["10.0.0.0/8".parse().unwrap()],
    });
    internal
        .enqueue(notified("http://10.0.0.7/hook"))
        .await
        .expect("an allowlisted network over http is accepted");
    assert!(
        internal
            .enqueue(notified("http://127.0.0.1/hook"))
            .await
            .is_err()
    );
}
