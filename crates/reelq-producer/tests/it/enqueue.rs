//! Enqueueing: bad requests are refused before anything is written.

use reelq_core::{JobRequest, JobState};
use reelq_producer::{Client, ProducerError};
use reelq_testkit::RedisServer;

fn request(prompt: &str) -> JobRequest {
    JobRequest {
        provider: Some("kie".into()),
        model: Some("sora-2-text-to-video".into()),
        prompt: Some(prompt.into()),
        ..JobRequest::default()
    }
}

#[tokio::test]
async fn a_valid_job_is_queued_with_its_defaults() {
    let redis = RedisServer::start().unwrap();
    let client = Client::connect(&redis.url(), "t").await.unwrap();
    let job_id = client.enqueue(request("a lighthouse")).await.unwrap();
    let record = client
        .status(job_id)
        .await
        .unwrap()
        .expect("job is in the ledger");
    assert_eq!(record.state, JobState::Queued);
    assert_eq!((record.spec.duration_s, record.submits), (10, 0));
}

#[tokio::test]
async fn an_invalid_job_is_refused_naming_the_field() {
    let redis = RedisServer::start().unwrap();
    let client = Client::connect(&redis.url(), "t").await.unwrap();
    let bad = JobRequest {
        duration_s: Some(12),
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
    let client = Client::connect(&redis.url(), "t").await.unwrap();
    let manifest = "{\"provider\":\"kie\",\"model\":\"sora-2-text-to-video\",\"prompt\":\"fine\"}\n\
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
    let n_keys: u64 = redis::cmd("DBSIZE").query_async(&mut conn).await.unwrap();
    assert_eq!(n_keys, 0, "nothing half-enqueued");
}
