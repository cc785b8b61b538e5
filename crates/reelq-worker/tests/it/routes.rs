//! Routes through a real worker and the simulator: a job leaves a candidate only when the
//! provider proved it did not take it (out of credits, a pause past the route's patience, a
//! retired model), never after a create that may have been accepted, and each is paid once.

use std::time::Duration;

use reelq_core::{Catalog, FallbackReason, JobId, JobRequest, JobState, ProviderKind};
use reelq_e2e::{API_KEY, Deployment, RedisSetup, retired_row, test_catalog};
use reelq_queue::JobRecord;
use reelq_testkit::kie_then_fal_route;

/// Kling from kie first, fal next (a minute's patience, or none); Veo from an OpenAI-style
/// gateway first, fal next; Kling from kie under a ceiling fal's price is over.
fn routes() -> String {
    [
        kie_then_fal_route("kling", "patience_s = 60"),
        kie_then_fal_route("kling-impatient", "patience_s = 0"),
        kie_then_fal_route("kling-under-ceiling", "max_usd_per_second = 0.10"),
    ]
    .concat()
        + r#"
[[route]]
name = "veo-gateway"
[[route.candidate]]
provider = "openai"
model = "veo-3.1-fast-generate-preview"
[[route.candidate]]
provider = "fal"
model = "fal-ai/veo3.1/fast"
"#
}

async fn deployment() -> Deployment {
    deployment_on(RedisSetup::Always).await
}

async fn deployment_on(redis_setup: RedisSetup) -> Deployment {
    let catalog = test_catalog().with_file(&routes(), "routes.toml").unwrap();
    Deployment::start_serving(
        env!("CARGO_BIN_EXE_reelq-worker"),
        Duration::from_millis(50),
        redis_setup,
        catalog,
    )
    .await
}

async fn enqueue(deployment: &Deployment, route: &str, n: usize) -> Vec<JobId> {
    let mut ids = Vec::new();
    for i in 0..n {
        let request = JobRequest {
            route: Some(route.into()),
            // Unique, so the simulator tells a paid create twice from two jobs.
            prompt: Some(format!("{route} shot {i} of {}", JobId::new())),
            duration_s: Some(5).filter(|_| route != "veo-gateway"),
            ..JobRequest::default()
        };
        ids.push(deployment.client.enqueue(request).await.expect("enqueues"));
    }
    ids
}

/// Where a stored job was made and the reasons it left the candidates before.
fn served(record: &JobRecord) -> (JobState, &str, Vec<FallbackReason>) {
    let route = record.spec.route.as_ref().expect("a routed job");
    let reasons = route.left.iter().map(|left| left.reason).collect();
    (record.state, record.account.as_str(), reasons)
}

#[tokio::test]
async fn an_account_out_of_credits_sends_its_routes_jobs_to_the_next_candidate_each_paid_once() {
    out_of_credits_moves_on(RedisSetup::Always).await;
}

/// The same on a Redis Cluster of three masters (the ledger on one of them, `replicas:1`).
#[tokio::test]
async fn on_a_cluster_an_account_out_of_credits_sends_its_routes_jobs_on_each_paid_once() {
    out_of_credits_moves_on(RedisSetup::Cluster).await;
}

async fn out_of_credits_moves_on(redis_setup: RedisSetup) {
    let mut deployment = deployment_on(redis_setup).await;
    deployment.credits_pause_ms = 120_000;
    let _worker = deployment.spawn_worker_task("w", API_KEY, None);
    deployment.sim.fail_next_creates(402, 1);

    let first = enqueue(&deployment, "kling", 1).await;
    let first = deployment.settled(&first).await;
    assert_eq!(
        served(&first[0]),
        (JobState::Stored, "fal", vec![FallbackReason::Credits])
    );
    assert_eq!(first[0].submits, 2, "one refused at kie, one made at fal");
    assert_eq!(first[0].spec.provider, ProviderKind::Fal);
    let kie = "kie".parse().unwrap();
    assert!(
        deployment.ledger.paused_for(&kie).await.unwrap().is_some(),
        "the empty account is paused"
    );

    // kie stays paused past the route's patience: the next jobs leave it unsent.
    let more = enqueue(&deployment, "kling", 4).await;
    for record in deployment.settled(&more).await {
        assert_eq!(
            served(&record),
            (JobState::Stored, "fal", vec![FallbackReason::Paused])
        );
        assert_eq!(record.submits, 1);
    }
    let stats = deployment.sim.stats();
    assert_eq!((stats.creates, stats.max_creates_per_prompt), (5, 1));
}

#[tokio::test]
async fn a_gateway_502_after_acceptance_leaves_the_job_uncertain_never_sent_to_the_next_candidate()
{
    let mut deployment = deployment().await;
    deployment.settings = "reconcile_every_ms = 200".into();
    deployment.sim.fail_after_accepting_next_creates(502, 1);
    let _worker = deployment.spawn_worker_task("w", API_KEY, None);
    let job_ids = enqueue(&deployment, "veo-gateway", 1).await;

    deployment.all_in(&job_ids, JobState::Stored).await;

    let record = &deployment.settled(&job_ids).await[0];
    assert_eq!(served(record), (JobState::Stored, "openai", vec![]));
    assert_eq!(record.submits, 1);
    let history = deployment.client.history(job_ids[0]).await.unwrap();
    assert!(
        history.iter().any(|event| event.contains(" uncertain ")),
        "{history:#?}"
    );
    let stats = deployment.sim.stats();
    assert_eq!(
        (stats.creates, stats.max_creates_per_prompt),
        (1, 1),
        "settled from the gateway's records, never sent to fal"
    );
}

#[tokio::test]
async fn a_job_whose_only_candidate_under_the_ceiling_is_paused_waits_for_it() {
    let mut deployment = deployment().await;
    deployment.credits_pause_ms = 3_000;
    let _worker = deployment.spawn_worker_task("w", API_KEY, None);
    deployment.sim.fail_next_creates(402, 1);
    let first = enqueue(&deployment, "kling-under-ceiling", 1).await;
    let first = &deployment.settled(&first).await[0];
    let route = first.spec.route.as_ref().unwrap();
    assert_eq!(
        route.candidates.len(),
        1,
        "fal's $0.14/s is over the ceiling"
    );
    assert_eq!(
        (first.state, first.error_class),
        (JobState::Failed, Some(reelq_core::ErrorClass::Credits)),
        "with nowhere to go, the refused job ends as any job does"
    );

    let kie = "kie".parse().unwrap();
    let paused = deployment.ledger.paused_for(&kie).await.unwrap();
    assert!(
        paused.is_some_and(|left| left > Duration::from_secs(1)),
        "{paused:?}"
    );
    let next = enqueue(&deployment, "kling-under-ceiling", 1).await;
    let next = &deployment.settled(&next).await[0];
    assert_eq!(served(next), (JobState::Stored, "kie", vec![]));
    assert!(
        next.submit_ms.unwrap() >= first.updated_ms + 2_000,
        "it waited out the pause: submitted at {:?}, the pause began by {}",
        next.submit_ms,
        first.updated_ms
    );
    assert_eq!(deployment.sim.stats().creates, 1);
}

#[tokio::test]
async fn jobs_queued_for_a_model_retired_since_move_on_to_the_next_candidate_unsent() {
    let mut deployment = deployment().await;
    let job_ids = enqueue(&deployment, "kling", 3).await;
    let rule = Catalog::built_in()
        .rule(ProviderKind::Kie, "kling-3.0/video")
        .unwrap();
    let file = deployment.dir.path().join("retired.toml");
    std::fs::write(&file, retired_row(rule, "kling-3.1/video")).unwrap();
    deployment.settings = format!("catalog = {:?}", file.display().to_string());
    let _worker = deployment.spawn_worker_task("w", API_KEY, None);

    for record in deployment.settled(&job_ids).await {
        assert_eq!(
            served(&record),
            (JobState::Stored, "fal", vec![FallbackReason::Retired])
        );
        assert_eq!(record.submits, 1, "nothing was sent to the retired model");
    }
    assert_eq!(deployment.sim.stats().creates, 3);
}

#[tokio::test]
async fn a_job_at_a_candidate_no_worker_has_moves_on_once_its_patience_is_spent() {
    let mut deployment = deployment().await;
    deployment
        .contract_accounts
        .retain(|provider| *provider != ProviderKind::Kie);
    let _worker = deployment.spawn_worker_task("w", API_KEY, None);
    let job_ids = enqueue(&deployment, "kling-impatient", 2).await;

    for record in deployment.settled(&job_ids).await {
        assert_eq!(
            served(&record),
            (JobState::Stored, "fal", vec![FallbackReason::SlotWait])
        );
        assert_eq!(record.submits, 1);
    }
    assert_eq!(deployment.sim.stats().creates, 2);
}
