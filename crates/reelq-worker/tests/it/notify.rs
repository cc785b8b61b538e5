//! Completion webhooks: signed per Standard Webhooks, retried under one event id.

use std::time::Duration;

use reelq_e2e::{API_KEY, Deployment, WebhookReceiver};
use standardwebhooks::Webhook;

use reelq_e2e::NOTIFY_SECRET as SECRET;

/// A deployment whose worker (kept running by the guard) sends completion webhooks.
async fn notifying() -> (Deployment, tokio_util::sync::DropGuard) {
    let mut deployment = Deployment::start(
        env!("CARGO_BIN_EXE_reelq-worker"),
        Duration::from_millis(50),
    )
    .await;
    deployment.enable_notify();
    let worker = deployment.spawn_worker_task("w", API_KEY, None);
    (deployment, worker)
}

/// The job's record once its webhook is settled (sent, given up or skipped). Nothing
/// announces a webhook's outcome (the change feed carries job states): the record is read
/// again shortly until it says.
async fn webhook_settled(
    deployment: &Deployment,
    job_id: reelq_core::JobId,
) -> reelq_queue::JobRecord {
    tokio::time::timeout(reelq_testkit::EVENT_TIMEOUT, async {
        loop {
            let record = deployment.client.status(job_id).await.unwrap().unwrap();
            if record.notify_state.as_deref() != Some("pending") {
                return record;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("the webhook is settled")
}

#[tokio::test]
async fn an_ended_job_is_notified_until_accepted_under_one_verifiable_event_id() {
    let mut receiver = WebhookReceiver::start(vec![500, 503]).await;
    let (deployment, _worker) = notifying().await;
    let job_id = deployment.enqueue_notified("notified", &receiver.url).await;
    let record = deployment.settled(&[job_id]).await.remove(0);

    let verifier = Webhook::new(SECRET).unwrap();
    let mut event_ids = Vec::new();
    let mut timestamps = Vec::new();
    for _ in 0..3 {
        let (headers, body) = receiver.next().await;
        verifier
            .verify(&body, &headers)
            .expect("a standard verifier accepts the signature");
        let event: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(event["type"], "job.stored");
        assert_eq!(event["data"]["sha256"].as_str(), record.sha256.as_deref());
        assert!(
            event["data"]["video_url"].is_null(),
            "a local store has no link"
        );
        assert!(
            !String::from_utf8_lossy(&body).contains("notified"),
            "no prompt in the event"
        );
        event_ids.push(headers["webhook-id"].to_str().unwrap().to_owned());
        assert_eq!(event["id"].as_str(), event_ids.last().map(String::as_str));
        assert!(event["data"].get("batch_id").is_some(), "{event}");
        timestamps.push(event["timestamp"].as_str().unwrap().to_owned());
    }
    // When the job ended, in ISO 8601, the same on every retry.
    assert!(
        timestamps.iter().all(|at| *at == timestamps[0]),
        "{timestamps:?}"
    );
    let ended = humantime::parse_rfc3339(&timestamps[0]).expect("ISO 8601");
    let ended_ms = ended
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    assert_eq!(ended_ms, record.updated_ms);
    assert_eq!(
        event_ids,
        vec![format!("evt_{job_id}_1"); 3],
        "one ending, one event id"
    );
}

#[tokio::test]
async fn a_forged_signature_fails_the_standard_verifier() {
    let mut receiver = WebhookReceiver::start(vec![]).await;
    let (deployment, _worker) = notifying().await;
    deployment.enqueue_notified("checked", &receiver.url).await;

    let (headers, body) = receiver.next().await;
    let other_secret = Webhook::new("whsec_c2VjcmV0LW9mLWFub3RoZXItYWNjb3VudA==").unwrap();
    assert!(other_secret.verify(&body, &headers).is_err());
    let mut tampered = body.to_vec();
    tampered.extend_from_slice(b" ");
    assert!(
        Webhook::new(SECRET)
            .unwrap()
            .verify(&tampered, &headers)
            .is_err()
    );
}

#[tokio::test]
async fn a_batch_sends_one_signed_summary_when_its_last_job_ends() {
    let mut receiver = WebhookReceiver::start(vec![]).await;
    let (deployment, _worker) = notifying().await;
    let moderated = format!("{} three", reelq_sim::MODERATED_WORD);
    let receipt = deployment
        .enqueue_batch_notified(&["one", "two", &moderated], Some("nightly"), &receiver.url)
        .await;
    deployment.settled(&receipt.job_ids).await;

    let (headers, body) = receiver.next().await;
    Webhook::new(SECRET)
        .unwrap()
        .verify(&body, &headers)
        .expect("a standard verifier accepts the signature");
    let event: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(event["type"], "batch.finished");
    assert_eq!(event["data"]["name"], "nightly");
    assert_eq!(
        event["data"]["states"],
        serde_json::json!({ "stored": 2, "rejected": 1 })
    );
    assert_eq!(
        headers["webhook-id"].to_str().unwrap(),
        format!("evt_batch_{}_1", receipt.batch_id)
    );
}

#[tokio::test]
async fn a_worker_never_sends_to_a_target_its_policy_refuses() {
    let mut receiver = WebhookReceiver::start(vec![]).await;
    let mut deployment = Deployment::start(
        env!("CARGO_BIN_EXE_reelq-worker"),
        Duration::from_millis(50),
    )
    .await;
    // The producer allows loopback (the harness's), the workers do not.
    deployment.extra_config += &format!("[notify]\nsecret = \"{SECRET}\"\nallow_http = true\n");
    let _worker = deployment.spawn_worker_task("w", API_KEY, None);
    let job_id = deployment.enqueue_notified("refused", &receiver.url).await;
    deployment.settled(&[job_id]).await;

    let record = webhook_settled(&deployment, job_id).await;
    assert_eq!(record.notify_state.as_deref(), Some("gave_up"));
    let history = deployment.client.history(job_id).await.unwrap();
    assert!(
        history.iter().any(|event| event.contains("target refused")),
        "{history:#?}"
    );
    assert!(
        receiver.try_next().is_none(),
        "nothing reached the receiver"
    );
}

#[tokio::test]
async fn a_job_hears_only_of_the_endings_it_asked_for() {
    let mut receiver = WebhookReceiver::start(vec![]).await;
    let (deployment, _worker) = notifying().await;
    let enqueue = |prompt: &str, events: &[&str]| reelq_core::JobRequest {
        provider: Some("kie".into()),
        model: Some("kling-3.0/video".into()),
        prompt: Some(prompt.into()),
        notify_url: Some(receiver.url.clone()),
        notify_events: Some(events.iter().map(|e| (*e).to_owned()).collect()),
        ..Default::default()
    };
    let quiet = deployment
        .client
        .enqueue(enqueue("only failures", &["job.failed", "job.rejected"]))
        .await
        .unwrap();
    let told = deployment
        .client
        .enqueue(enqueue("stored please", &["job.stored"]))
        .await
        .unwrap();
    deployment.settled(&[quiet, told]).await;

    let (_, body) = receiver.next().await;
    let event: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        (event["type"].as_str(), event["data"]["job_id"].as_str()),
        (Some("job.stored"), Some(told.to_string().as_str()))
    );
    let record = webhook_settled(&deployment, quiet).await;
    assert_eq!(record.notify_state.as_deref(), Some("skipped"));
    assert!(receiver.try_next().is_none(), "one event only");
}
