//! Provider callbacks: they wake jobs, polling covers for the lost ones, duplicates are
//! harmless, forgeries change nothing, and a late one settles a job whose submitter died.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use reelq_core::{JobId, JobState};
use reelq_e2e::{
    API_KEY, Deployment, WEBHOOK_KEY, WebhookReceiver, files_under, prompts, sim_events,
};
use reelq_providers::kie_signature;
use reelq_sim::{CallbackMode, SimEvent};

/// Long enough that only a callback can bring a video in within the test's timeout.
const NEVER_POLL_MS: u64 = 600_000;

async fn deployment() -> Deployment {
    Deployment::start(
        env!("CARGO_BIN_EXE_reelq-worker"),
        Duration::from_millis(100),
    )
    .await
}

fn callback_answered(status: u16) -> impl Fn(&SimEvent) -> bool {
    move |event| matches!(event, SimEvent::CallbackAnswered { status: s, .. } if *s == status)
}

#[tokio::test]
async fn a_callback_brings_the_video_in_without_waiting_for_the_poll() {
    let mut deployment = deployment().await;
    deployment.first_poll_ms = NEVER_POLL_MS;
    let listener = deployment.callback_listener().await;
    let _worker = deployment.spawn_worker_task("w", API_KEY, Some(listener));
    let job_ids = deployment.enqueue_manifest(&prompts("woken", 3)).await;

    let records = deployment.settled(&job_ids).await;

    deployment.assert_stored_once(&records);
    assert!(
        records.iter().all(|record| record.polls == 0),
        "no scheduled poll was needed"
    );
}

#[tokio::test]
async fn polling_finishes_every_job_when_every_callback_is_lost() {
    let mut deployment = deployment().await;
    deployment.sim.set_callback_mode(CallbackMode::Drop);
    let listener = deployment.callback_listener().await;
    let _worker = deployment.spawn_worker_task("w", API_KEY, Some(listener));
    let job_ids = deployment.enqueue_manifest(&prompts("dropped", 5)).await;

    let records = deployment.settled(&job_ids).await;

    deployment.assert_stored_once(&records);
}

#[tokio::test]
async fn a_callback_delivered_three_times_gives_one_object_and_one_event_id() {
    let mut deployment = deployment().await;
    deployment.first_poll_ms = NEVER_POLL_MS;
    deployment.sim.set_callback_mode(CallbackMode::Duplicate(3));
    let mut webhooks = WebhookReceiver::start(vec![]).await;
    let mut events = deployment.sim.events();
    let listener = deployment.callback_listener().await;
    deployment.enable_notify();
    let _worker = deployment.spawn_worker_task("w", API_KEY, Some(listener));
    let job_id = deployment.enqueue_notified("thrice", &webhooks.url).await;

    sim_events(&mut events, 3, callback_answered(200)).await;
    let records = deployment.settled(&[job_id]).await;

    deployment.assert_stored_once(&records);
    assert_eq!(deployment.sim.stats().downloads, 1);
    let files = files_under(&deployment.store_dir());
    let videos = files.iter().filter(|name| name.ends_with(".mp4")).count();
    assert_eq!(videos, 1, "{files:?}");
    let (headers, _) = webhooks.next().await;
    assert_eq!(
        headers["webhook-id"].to_str().unwrap(),
        format!("evt_{job_id}_1"),
        "the first and only ending"
    );
}

#[tokio::test]
async fn forged_unsigned_stale_oversized_and_misaddressed_callbacks_change_nothing() {
    let mut deployment = deployment().await;
    deployment.first_poll_ms = NEVER_POLL_MS;
    deployment.sim.hold();
    let listener = deployment.callback_listener().await;
    let _worker = deployment.spawn_worker_task("w", API_KEY, Some(listener));
    let job_ids = deployment.enqueue_manifest(&prompts("forged", 1)).await;
    deployment.all_in(&job_ids, JobState::Waiting).await;
    let before = deployment.client.status(job_ids[0]).await.unwrap().unwrap();
    let history_before = deployment.client.history(job_ids[0]).await.unwrap();
    let task_id = before.task_id.clone().unwrap();
    let url = deployment
        .sim
        .callback_url(&task_id)
        .expect("the submit gave a callback url");

    let body =
        format!(r#"{{"code":200,"msg":"ok","data":{{"taskId":"{task_id}","resultUrls":[]}}}}"#);
    let now_s = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let http = reqwest::Client::new();
    let post = |url: String, body: String, key: Option<&str>, timestamp: u64| {
        let mut request = http.post(url).body(body);
        if let Some(key) = key {
            let timestamp = timestamp.to_string();
            let signature = kie_signature(key, &task_id, &timestamp);
            request = request
                .header("X-Webhook-Timestamp", timestamp)
                .header("X-Webhook-Signature", signature);
        }
        async move { request.send().await.unwrap().status().as_u16() }
    };
    let (token_at, _) = url.rsplit_once('/').unwrap();
    let wrong_token = format!("{token_at}/{}", "0".repeat(64));
    let unknown_job = url.replace(&job_ids[0].to_string(), &JobId::new().to_string());

    let answers = [
        (
            "unsigned",
            post(url.clone(), body.clone(), None, now_s).await,
            401,
        ),
        (
            "forged",
            post(url.clone(), body.clone(), Some("not-the-key"), now_s).await,
            401,
        ),
        (
            "stale",
            post(url.clone(), body.clone(), Some(WEBHOOK_KEY), now_s - 600).await,
            401,
        ),
        (
            "oversized",
            post(url.clone(), "x".repeat(2 << 20), Some(WEBHOOK_KEY), now_s).await,
            413,
        ),
        (
            "malformed",
            post(url.clone(), "{not json".into(), Some(WEBHOOK_KEY), now_s).await,
            400,
        ),
        (
            "wrong token",
            post(wrong_token, body.clone(), Some(WEBHOOK_KEY), now_s).await,
            401,
        ),
        (
            "unknown job",
            post(unknown_job, body.clone(), Some(WEBHOOK_KEY), now_s).await,
            404,
        ),
    ];
    for (case, got, want) in answers {
        assert_eq!(got, want, "{case} callback");
    }
    let after = deployment.client.status(job_ids[0]).await.unwrap().unwrap();
    assert_eq!(
        (after.state, after.polls, after.updated_ms),
        (before.state, before.polls, before.updated_ms)
    );
    assert_eq!(
        deployment.client.history(job_ids[0]).await.unwrap(),
        history_before
    );

    // The genuine article still works.
    deployment.sim.release();
    assert_eq!(post(url, body, Some(WEBHOOK_KEY), now_s).await, 200);
    deployment.assert_stored_once(&deployment.settled(&job_ids).await);
}

#[tokio::test]
async fn a_late_callback_settles_a_job_whose_submitter_was_killed() {
    let mut deployment = deployment().await;
    deployment.sim.set_create_latency(Duration::from_secs(30));
    let mut events = deployment.sim.events();
    let listener = deployment.callback_listener().await;
    let mut doomed = deployment.spawn_worker_process("doomed");
    let job_ids = deployment.enqueue_manifest(&prompts("orphaned", 1)).await;
    sim_events(&mut events, 1, |event| {
        matches!(event, SimEvent::Created { .. })
    })
    .await;
    doomed.kill().await.expect("SIGKILL the submitter mid-call");

    deployment.sim.set_create_latency(Duration::ZERO);
    let _survivor = deployment.spawn_worker_task("survivor", API_KEY, Some(listener));
    let records = deployment.settled(&job_ids).await;

    deployment.assert_stored_once(&records);
    let history = deployment.client.history(job_ids[0]).await.unwrap();
    assert!(
        history.iter().any(|event| event.contains("callback")),
        "{history:#?}"
    );
}

/// Posts a genuinely signed kie completion callback naming `task_id` to `url`.
async fn post_signed_kie_callback(url: &str, task_id: &str) -> u16 {
    let body =
        format!(r#"{{"code":200,"msg":"ok","data":{{"taskId":"{task_id}","resultUrls":[]}}}}"#);
    let timestamp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
        .to_string();
    let signature = kie_signature(WEBHOOK_KEY, task_id, &timestamp);
    reqwest::Client::new()
        .post(url)
        .header("X-Webhook-Timestamp", timestamp)
        .header("X-Webhook-Signature", signature)
        .body(body)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test]
async fn a_callback_cannot_hand_a_job_another_jobs_task_nor_skip_its_providers_checks() {
    let mut deployment = deployment().await;
    deployment.first_poll_ms = NEVER_POLL_MS;
    deployment.sim.hold();
    let mut events = deployment.sim.events();
    let listener = deployment.callback_listener().await;
    let _worker = deployment.spawn_worker_task("w", API_KEY, Some(listener));
    // The orphan's create is accepted (and paid) but its answer is a gateway's 502.
    deployment.sim.fail_after_accepting_next_creates(502, 1);
    let orphan = deployment.enqueue_manifest(&prompts("orphan", 1)).await[0];
    let orphan_task = match sim_events(&mut events, 1, |event| {
        matches!(event, SimEvent::Created { .. })
    })
    .await
    .remove(0)
    {
        SimEvent::Created { task_id, .. } => task_id,
        other => unreachable!("{other:?}"),
    };
    deployment.all_in(&[orphan], JobState::Uncertain).await;
    let owner = deployment.enqueue_manifest(&prompts("owner", 1)).await[0];
    deployment.all_in(&[owner], JobState::Waiting).await;
    let owner_task = deployment
        .client
        .status(owner)
        .await
        .unwrap()
        .unwrap()
        .task_id
        .unwrap();
    let orphan_url = deployment.sim.callback_url(&orphan_task).unwrap();
    let owner_url = deployment.sim.callback_url(&owner_task).unwrap();
    let other_route = orphan_url.replace("/callbacks/kie/", "/callbacks/acedata/");

    let answers = [
        (
            "a task the provider does not have",
            post_signed_kie_callback(&orphan_url, "no-such-task").await,
            409,
        ),
        (
            "a second task for a job that has one",
            post_signed_kie_callback(&owner_url, &orphan_task).await,
            409,
        ),
        (
            "the job's token on another provider's route",
            post_signed_kie_callback(&other_route, &orphan_task).await,
            404,
        ),
        // Last, so the job's note is its conflict.
        (
            "another job's task",
            post_signed_kie_callback(&orphan_url, &owner_task).await,
            409,
        ),
    ];
    for (case, got, want) in answers {
        assert_eq!(got, want, "{case}");
    }
    let record = deployment.client.status(orphan).await.unwrap().unwrap();
    assert_eq!((record.state, record.task_id), (JobState::Uncertain, None));
    let note = record.reconcile_note.unwrap_or_default();
    assert!(
        note.contains(&owner.to_string()),
        "the conflict is recorded: {note}"
    );
    assert_eq!(
        deployment
            .client
            .status(owner)
            .await
            .unwrap()
            .unwrap()
            .task_id,
        Some(owner_task.clone())
    );

    // The genuine callbacks, once the generations finish, bring each job its own video.
    deployment.sim.release();
    let records = deployment.settled(&[orphan, owner]).await;
    deployment.assert_stored_once(&records);
    let tasks: Vec<_> = records.iter().map(|r| r.task_id.clone().unwrap()).collect();
    assert_eq!(tasks, [orphan_task, owner_task]);
    assert_eq!(
        deployment.sim.stats().creates,
        2,
        "nothing was submitted twice"
    );
}

#[tokio::test]
async fn no_made_up_callback_changes_its_job() {
    use proptest::{
        prelude::*,
        strategy::ValueTree,
        test_runner::{Config, TestRunner},
    };
    let mut deployment = deployment().await;
    deployment.first_poll_ms = NEVER_POLL_MS;
    // AceData signs nothing: the per-job token is all that stands before its parser.
    deployment.provider = reelq_core::ProviderKind::Acedata;
    deployment.sim.hold();
    let listener = deployment.callback_listener().await;
    let _worker = deployment.spawn_worker_task("w", API_KEY, Some(listener));
    let job_ids = deployment.enqueue_manifest(&prompts("fuzzed", 1)).await;
    deployment.all_in(&job_ids, JobState::Waiting).await;
    let before = deployment.client.status(job_ids[0]).await.unwrap().unwrap();
    let history = deployment.client.history(job_ids[0]).await.unwrap();
    let own_task = before.task_id.clone().unwrap();
    let url = deployment.sim.callback_url(&own_task).unwrap();

    let task_id = "[ -~]{0,30}".prop_filter("not the job's own task", move |t| *t != own_task);
    let bodies = prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..300),
        (task_id, any::<bool>(), "[ -~]{0,12}").prop_map(|(task, success, state)| {
            serde_json::to_vec(&serde_json::json!({
                "success": success, "task_id": task,
                "data": [{ "id": task, "video_url": "https://x/v.mp4", "state": state }],
            }))
            .unwrap()
        }),
    ];
    let mut runner = TestRunner::new_with_rng(
        Config::default(),
        proptest::test_runner::TestRng::deterministic_rng(
            proptest::test_runner::RngAlgorithm::ChaCha,
        ),
    );
    let http = reqwest::Client::new();
    let mut statuses = std::collections::BTreeMap::<u16, usize>::new();
    for _ in 0..64 {
        let body = bodies.new_tree(&mut runner).unwrap().current();
        let status = http
            .post(&url)
            .body(body)
            .send()
            .await
            .unwrap()
            .status()
            .as_u16();
        *statuses.entry(status).or_default() += 1;
        assert_ne!(status, 500, "a hostile body is the sender's fault");
    }
    // Refused (400 unreadable, 409 another task), or acknowledged as a progress report that
    // moves nothing (200): either way the job is as it was.
    assert!(
        statuses.keys().all(|s| [200, 400, 409].contains(s)) && statuses.len() > 1,
        "{statuses:?}"
    );
    let after = deployment.client.status(job_ids[0]).await.unwrap().unwrap();
    assert_eq!(
        (after.state, after.polls, after.updated_ms, after.task_id),
        (
            before.state,
            before.polls,
            before.updated_ms,
            before.task_id
        )
    );
    assert_eq!(
        deployment.client.history(job_ids[0]).await.unwrap(),
        history
    );

    // The job still finishes by its own callback.
    deployment.sim.release();
    deployment.assert_stored_once(&deployment.settled(&job_ids).await);
}
