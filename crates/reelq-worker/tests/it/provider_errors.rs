//! Provider errors: transient ones are retried with backoff, permanent ones end the job at once.

use std::time::Duration;

use reelq_core::{ErrorClass, JobState};

use reelq_e2e::{API_KEY, Deployment, prompts};

#[tokio::test]
async fn two_server_errors_then_success_ends_stored_after_two_retries() {
    let deployment = Deployment::start(
        env!("CARGO_BIN_EXE_reelq-worker"),
        Duration::from_millis(50),
    )
    .await;
    deployment.sim.fail_next_creates(500, 2);
    let _worker = deployment.spawn_worker_task("w", API_KEY);
    let job_ids = deployment.enqueue_manifest(&prompts("flaky", 1)).await;

    let record = deployment.settled(&job_ids).await.remove(0);

    assert_eq!(record.state, JobState::Stored, "{:?}", record.error);
    assert_eq!(
        record.submits, 3,
        "two refused creates, then the accepted one"
    );
    assert_eq!(
        deployment.sim.stats().creates,
        1,
        "only one task was created (and paid)"
    );
    let history = deployment.client.history(record.job_id).await.unwrap();
    let retries = history
        .iter()
        .filter(|event| event.contains(" queued retry "))
        .count();
    assert_eq!(retries, 2, "{history:#?}");
}

#[tokio::test]
async fn a_refused_api_key_fails_the_job_at_once_as_auth() {
    let deployment = Deployment::start(
        env!("CARGO_BIN_EXE_reelq-worker"),
        Duration::from_millis(50),
    )
    .await;
    let _worker = deployment.spawn_worker_task("w", "sk-wrong-key");
    let job_ids = deployment.enqueue_manifest(&prompts("auth", 1)).await;

    let record = deployment.settled(&job_ids).await.remove(0);

    assert_eq!(record.state, JobState::Failed);
    assert_eq!(record.error_class, Some(ErrorClass::Auth));
    assert_eq!(record.submits, 1, "no retry after an auth error");
    assert_eq!(deployment.sim.stats().creates, 0);
    assert!(!record.error.unwrap_or_default().contains("sk-wrong-key"));
}
