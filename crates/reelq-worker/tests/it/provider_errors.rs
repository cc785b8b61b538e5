//! Provider errors: transient ones are retried with backoff, permanent ones end the job at once.

use std::time::Duration;

use reelq_core::{ErrorClass, JobId, JobState, ProviderKind};

use reelq_e2e::{API_KEY, Deployment, files_under, prompts, read_object};
use reelq_queue::JobRecord;
use reelq_sim::Simulator;
use tokio_util::sync::DropGuard;

#[tokio::test]
async fn two_server_errors_then_success_ends_stored_after_two_retries_where_the_account_trusts_them()
 {
    let mut deployment = Deployment::start(
        env!("CARGO_BIN_EXE_reelq-worker"),
        Duration::from_millis(50),
    )
    .await;
    deployment.account_extra = "retry_server_errors_on_create = true\n".into();
    deployment.sim.fail_next_creates(500, 2);
    let _worker = deployment.spawn_worker_task("w", API_KEY, None);
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
    let _worker = deployment.spawn_worker_task("w", "sk-wrong-key:wrong-secret", None);
    let job_ids = deployment.enqueue_manifest(&prompts("auth", 1)).await;

    let record = deployment.settled(&job_ids).await.remove(0);

    assert_eq!(record.state, JobState::Failed);
    assert_eq!(record.error_class, Some(ErrorClass::Auth));
    assert_eq!(record.submits, 1, "no retry after an auth error");
    assert_eq!(deployment.sim.stats().creates, 0);
    assert!(!record.error.unwrap_or_default().contains("sk-wrong-key"));
}

#[tokio::test]
async fn an_expired_result_url_is_queried_again_and_the_video_stored() {
    let (deployment, _worker, record) = one_job("expired", |sim| {
        sim.expire_next_downloads(1);
    })
    .await;
    let job_ids = [record.job_id];
    let records = [record];

    deployment.assert_stored_once(&records);
    let history = deployment.client.history(job_ids[0]).await.unwrap();
    let states: Vec<&str> = history
        .iter()
        .filter_map(|event| event.split(' ').nth(1))
        .collect();
    assert_eq!(
        states,
        // The expired URL is found by the fetch that follows the poll: poll again at once.
        ["queued", "submitting", "waiting", "waiting", "stored"]
    );
    assert!(
        history
            .iter()
            .any(|event| event.contains("result url expired")),
        "{history:#?}"
    );
}

#[tokio::test]
async fn a_truncated_download_is_retried_and_never_stored_short() {
    let (deployment, _worker, record) = one_job("truncated", |sim| {
        sim.truncate_next_downloads(1);
    })
    .await;
    let job_ids = [record.job_id];
    let records = [record];

    deployment.assert_stored_once(&records);
    let record = &records[0];
    assert_stored_as_served(&deployment, record, "the whole video, not half");
    let history = deployment.client.history(job_ids[0]).await.unwrap();
    assert!(
        history.iter().any(|event| event.contains("fetch retry 1")),
        "{history:#?}"
    );
}

#[tokio::test]
async fn a_page_served_as_the_video_is_not_stored_and_a_fresh_url_is_fetched() {
    let (deployment, _worker, record) = one_job("page", |sim| {
        sim.serve_pages_for_next_downloads(1);
    })
    .await;
    let records = [record];

    deployment.assert_stored_once(&records);
    assert_eq!(
        deployment.sim.stats().download_faults_left,
        0,
        "the page was served"
    );
    let record = &records[0];
    assert_stored_as_served(&deployment, record, "the video, not the page");
    // The video's header says what was asked (the simulator renders to order).
    let video = record.video.as_deref().unwrap_or_default();
    let duration = format!(" {}.00s ", record.spec.duration_s);
    assert!(
        video.starts_with("h264 160x90") && video.contains(&duration),
        "{video:?}"
    );
}

#[tokio::test]
async fn a_result_that_is_not_a_video_twice_fails_bad_result_with_nothing_stored_until_retried() {
    let (deployment, _worker, record) = one_job("bad", |sim| {
        // A page, then the file cut short with an honest length: no length check catches it.
        sim.serve_pages_for_next_downloads(1);
        sim.cut_short_next_downloads(1);
    })
    .await;
    let job_ids = [record.job_id];
    let records = [record];

    let record = &records[0];
    assert_eq!(
        (record.state, record.error_class),
        (JobState::Failed, Some(ErrorClass::BadResult)),
        "{record:?}"
    );
    let error = record.error.as_deref().unwrap_or_default();
    assert!(error.contains("truncated"), "{error}");
    assert_eq!(record.submits, 1);
    assert!(
        files_under(&deployment.store_dir()).is_empty(),
        "nothing stored, not even a staging file"
    );

    // The task is paid for: an operator's retry polls it again and stores the video.
    assert!(deployment.client.retry_failed(job_ids[0]).await.unwrap());
    let records = deployment.settled(&job_ids).await;
    deployment.assert_stored_once(&records);
}

#[tokio::test]
async fn a_whole_video_far_shorter_than_asked_is_not_stored_and_fails_bad_result() {
    let (deployment, _worker, record) = one_job("short", |sim| {
        // Both fetches get a well-formed MP4 of a fifth of the duration asked.
        sim.serve_too_short_next_downloads(2);
    })
    .await;

    assert_eq!(
        (record.state, record.error_class),
        (JobState::Failed, Some(ErrorClass::BadResult)),
        "{record:?}"
    );
    let error = record.error.as_deref().unwrap_or_default();
    let asked = format!("{} s was asked", record.spec.duration_s);
    assert!(
        error.contains("s long where") && error.contains(&asked),
        "{error}"
    );
    assert!(files_under(&deployment.store_dir()).is_empty());
    assert_eq!(deployment.sim.stats().download_faults_left, 0);
}

/// The stored object is byte for byte the video the simulator served for the job's task.
#[track_caller]
fn assert_stored_as_served(deployment: &Deployment, record: &JobRecord, why: &str) {
    let stored = read_object(
        &deployment.store_dir(),
        record.object_key.as_deref().unwrap(),
    );
    let served = deployment.sim.video(record.task_id.as_deref().unwrap());
    assert!(Some(stored) == served, "{why}");
}

/// One job through a worker in this process against a simulator `prepare`d first (its
/// download faults queued): the deployment, the worker (stopped when dropped) and the job's
/// settled record.
async fn one_job(
    name: &str,
    prepare: impl FnOnce(&Simulator),
) -> (Deployment, DropGuard, JobRecord) {
    let deployment = Deployment::start(
        env!("CARGO_BIN_EXE_reelq-worker"),
        Duration::from_millis(50),
    )
    .await;
    prepare(&deployment.sim);
    let worker = deployment.spawn_worker_task("w", API_KEY, None);
    let job_ids = deployment.enqueue_manifest(&prompts(name, 1)).await;
    let record = deployment.settled(&job_ids).await.remove(0);
    (deployment, worker, record)
}

/// Jobs for an OpenAI-style gateway whose webhooks never reach the worker (only the
/// provider's list can settle an uncertain job), reconciled every 200 ms; `settings` adds
/// worker settings.
async fn reconciling_openai_deployment(settings: &str) -> Deployment {
    let mut deployment = Deployment::start(
        env!("CARGO_BIN_EXE_reelq-worker"),
        Duration::from_millis(50),
    )
    .await;
    deployment.provider = ProviderKind::Openai;
    deployment.settings = format!("reconcile_every_ms = 200\n{settings}");
    deployment
}

/// How many of `job_ids` went `uncertain` on the way, each of them settled from the
/// provider's records (never resubmitted).
async fn settled_from_records(deployment: &Deployment, job_ids: &[JobId]) -> usize {
    let mut n_settled = 0;
    for &job_id in job_ids {
        let history = deployment.client.history(job_id).await.unwrap();
        if history.iter().any(|event| event.contains(" uncertain ")) {
            assert!(
                history
                    .iter()
                    .any(|event| event.contains("named by the provider's records")),
                "{history:#?}"
            );
            n_settled += 1;
        }
    }
    n_settled
}

#[tokio::test]
async fn a_gateway_5xx_after_acceptance_is_settled_from_the_providers_records_not_resubmitted() {
    let deployment = reconciling_openai_deployment("").await;
    deployment.sim.fail_after_accepting_next_creates(502, 2);
    deployment.sim.fail_after_accepting_next_creates(504, 1);
    let _worker = deployment.spawn_worker_task("w", API_KEY, None);
    let job_ids = deployment.enqueue_manifest(&prompts("gateway", 4)).await;

    deployment.all_in(&job_ids, JobState::Stored).await;

    let stats = deployment.sim.stats();
    assert_eq!((stats.creates, stats.max_creates_per_fingerprint), (4, 1));
    assert_eq!(
        settled_from_records(&deployment, &job_ids).await,
        3,
        "the three creates answered by the gateway"
    );
}

/// A create the provider accepted (and billed), answered by its own server's HTTP 500 in its
/// own error shape: no refusal, whatever the body says. Each job is paid for once; where the
/// provider has records of its tasks (a list, a callback naming the task) the job is settled
/// from them and stored; the Gemini API has neither, so its job stays `uncertain`, for an
/// operator, never resubmitted.
async fn a_providers_own_500_after_acceptance_is_paid_once(kind: ProviderKind) {
    let mut deployment = reconciling_openai_deployment("").await;
    deployment.provider = kind;
    deployment.sim.server_error_after_accepting_next_creates(1);
    let listener = deployment.callback_listener().await;
    let _worker = deployment.spawn_worker_task("w", API_KEY, Some(listener));
    let job_ids = deployment.enqueue_manifest(&prompts("own-500", 2)).await;

    let has_records = kind != ProviderKind::Gemini;
    let stored = if has_records { 2 } else { 1 };
    let records = deployment.settled(&job_ids).await;
    let records = if has_records {
        deployment.all_in(&job_ids, JobState::Stored).await;
        deployment.settled(&job_ids).await
    } else {
        records
    };

    let stats = deployment.sim.stats();
    assert_eq!(
        (stats.creates, stats.max_creates_per_fingerprint),
        (2, 1),
        "{kind}: each job paid for once"
    );
    let n_stored = records
        .iter()
        .filter(|r| r.state == JobState::Stored)
        .count();
    assert_eq!(n_stored, stored, "{kind}: {records:#?}");
    let unsettled: Vec<&JobRecord> = records
        .iter()
        .filter(|r| r.state != JobState::Stored)
        .collect();
    for record in unsettled {
        assert_eq!(record.state, JobState::Uncertain, "{kind}");
        assert_eq!(record.submits, 1, "{kind}: never resubmitted");
        assert!(
            record
                .error
                .as_deref()
                .is_some_and(|e| e.contains("server error")),
            "{kind}: {record:?}"
        );
    }
}

macro_rules! own_500_per_contract {
    ($($name:ident: $kind:expr,)*) => {$(
        #[tokio::test]
        async fn $name() {
            a_providers_own_500_after_acceptance_is_paid_once($kind).await;
        }
    )*};
}

own_500_per_contract! {
    a_kie_500_after_acceptance_is_paid_once: ProviderKind::Kie,
    an_acedata_500_after_acceptance_is_paid_once: ProviderKind::Acedata,
    an_evolink_500_after_acceptance_is_paid_once: ProviderKind::Evolink,
    an_openai_style_500_after_acceptance_is_paid_once: ProviderKind::Openai,
    a_replicate_500_after_acceptance_is_paid_once: ProviderKind::Replicate,
    a_gemini_500_after_acceptance_is_paid_once: ProviderKind::Gemini,
    a_fal_500_after_acceptance_is_paid_once: ProviderKind::Fal,
    a_kling_500_after_acceptance_is_paid_once: ProviderKind::Kling,
    an_ark_500_after_acceptance_is_paid_once: ProviderKind::Ark,
    a_dashscope_500_after_acceptance_is_paid_once: ProviderKind::Dashscope,
}

#[tokio::test]
async fn an_ark_create_whose_answer_was_lost_is_found_in_its_task_list() {
    let mut deployment = reconciling_openai_deployment("").await;
    deployment.provider = ProviderKind::Ark;
    deployment.sim.fail_after_accepting_next_creates(502, 1);
    let _worker = deployment.spawn_worker_task("w", API_KEY, None);
    let job_ids = deployment.enqueue_manifest(&prompts("ark-lost", 2)).await;

    deployment.all_in(&job_ids, JobState::Stored).await;

    let stats = deployment.sim.stats();
    assert_eq!((stats.creates, stats.max_creates_per_fingerprint), (2, 1));
    assert_eq!(
        settled_from_records(&deployment, &job_ids).await,
        1,
        "the create whose answer the gateway lost"
    );
}

/// Kling jobs reconciled every 200 ms, whose callbacks never reach the worker: only a lookup
/// of each job's own id (`external_task_id`) can settle an uncertain one.
async fn reconciling_kling_deployment(settings: &str) -> Deployment {
    let mut deployment = reconciling_openai_deployment(settings).await;
    deployment.provider = ProviderKind::Kling;
    deployment
}

#[tokio::test]
async fn a_kling_create_whose_answer_was_lost_is_settled_by_the_jobs_own_id() {
    let deployment = reconciling_kling_deployment("").await;
    deployment.sim.fail_after_accepting_next_creates(502, 2);
    let _worker = deployment.spawn_worker_task("w", API_KEY, None);
    let job_ids = deployment.enqueue_manifest(&prompts("kling-lost", 3)).await;

    deployment.all_in(&job_ids, JobState::Stored).await;

    let stats = deployment.sim.stats();
    assert_eq!((stats.creates, stats.max_creates_per_fingerprint), (3, 1));
    assert_eq!(
        settled_from_records(&deployment, &job_ids).await,
        2,
        "the two creates whose answers the gateway lost"
    );
}

#[tokio::test]
async fn a_kling_create_never_taken_is_submitted_again_under_the_same_id() {
    let deployment = reconciling_kling_deployment("reconcile_absent_after_ms = 1000").await;
    // Kling's 503 (5001, maintenance): no refusal on a create, and nothing was created.
    deployment.sim.fail_next_creates(455, 1);
    let _worker = deployment.spawn_worker_task("w", API_KEY, None);
    let job_ids = deployment
        .enqueue_manifest(&prompts("kling-absent", 1))
        .await;

    deployment.all_in(&job_ids, JobState::Stored).await;

    assert_eq!(deployment.sim.stats().creates, 1, "paid once");
    let history = deployment.client.history(job_ids[0]).await.unwrap();
    let states: Vec<&str> = history
        .iter()
        .filter_map(|event| event.split(' ').nth(1))
        .collect();
    assert_eq!(
        &states[..4],
        ["queued", "submitting", "uncertain", "queued"],
        "{history:#?}"
    );
}

#[tokio::test]
async fn an_unknown_outcome_the_providers_list_never_shows_is_submitted_again_once() {
    let deployment = reconciling_openai_deployment("reconcile_absent_after_ms = 1000").await;
    // A 503 the gateway answered before anything was created: unknown to reelq, absent from
    // the provider's records.
    deployment.sim.fail_next_creates(455, 1);
    let _worker = deployment.spawn_worker_task("w", API_KEY, None);
    let job_ids = deployment.enqueue_manifest(&prompts("absent", 1)).await;

    deployment.all_in(&job_ids, JobState::Stored).await;

    let stats = deployment.sim.stats();
    assert_eq!((stats.creates, stats.max_creates_per_fingerprint), (1, 1));
    let history = deployment.client.history(job_ids[0]).await.unwrap();
    let states: Vec<&str> = history
        .iter()
        .filter_map(|event| event.split(' ').nth(1))
        .collect();
    assert_eq!(
        &states[..4],
        ["queued", "submitting", "uncertain", "queued"],
        "{history:#?}"
    );
    assert!(
        history
            .iter()
            .any(|e| e.contains("has no task for this create")),
        "{history:#?}"
    );
}
