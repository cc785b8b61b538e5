//! Every provider contract end to end: jobs go from enqueue to `stored` through a worker, the
//! simulator speaking that provider's API, and the provider's own callback (per-task URL or
//! account-level signed webhook); moderation, failed generations and an empty account end
//! jobs with their class, and nothing is paid twice.

use std::time::Duration;

use reelq_core::{ErrorClass, JobState, ProviderKind};
use reelq_e2e::{API_KEY, Deployment, prompts, read_object};
use reelq_queue::CancelOutcome;
use reelq_sim::{FAILING_WORD, MODERATED_WORD};

/// Long enough that only a callback can bring a video in within the test's timeout.
const NEVER_POLL_MS: u64 = 600_000;

async fn deployment(provider: ProviderKind) -> Deployment {
    let mut deployment = Deployment::start(
        env!("CARGO_BIN_EXE_reelq-worker"),
        Duration::from_millis(100),
    )
    .await;
    deployment.provider = provider;
    deployment
}

async fn stored_by_its_callback(provider: ProviderKind) {
    let mut deployment = deployment(provider).await;
    deployment.first_poll_ms = NEVER_POLL_MS;
    let listener = deployment.callback_listener().await;
    let _worker = deployment.spawn_worker_task("w", API_KEY, Some(listener));
    let job_ids = deployment
        .enqueue_manifest(&prompts(provider.as_str(), 3))
        .await;

    let records = deployment.settled(&job_ids).await;

    deployment.assert_stored_once(&records);
    for record in &records {
        assert_eq!(
            record.polls, 0,
            "{provider}: the callback, not a poll, finished it"
        );
        let stored = read_object(
            &deployment.store_dir(),
            record.object_key.as_deref().unwrap(),
        );
        let task_id = record.task_id.as_deref().unwrap();
        assert!(
            stored == deployment.sim.video(task_id).unwrap(),
            "{provider}: the served video"
        );
        assert!(
            record.spec.estimated_cost_usd.is_some_and(|usd| usd > 0.0),
            "{provider}: priced at enqueue"
        );
        // Only the OpenAI-style contract offers a still image; it is stored beside the video.
        match (provider, record.thumbnail_key.as_deref()) {
            (ProviderKind::Openai, Some(key)) => {
                let image = read_object(&deployment.store_dir(), key);
                assert!(
                    image.starts_with(b"RIFF") && &image[8..12] == b"WEBP",
                    "{key}"
                );
            }
            (ProviderKind::Openai, None) => panic!("no thumbnail stored: {record:?}"),
            (_, key) => assert_eq!(key, None, "{provider} offers no thumbnail"),
        }
    }
}

async fn endings_by_class(provider: ProviderKind) {
    let deployment = deployment(provider).await;
    let _worker = deployment.spawn_worker_process("w");
    deployment.sim.fail_next_creates(402, 1);
    let broke = deployment
        .enqueue_manifest(&["out of credits".into()])
        .await;
    let broke = deployment.settled(&broke).await;
    assert_eq!(
        (broke[0].state, broke[0].error_class),
        (JobState::Failed, Some(ErrorClass::Credits)),
        "{provider}: {:?}",
        broke[0].error
    );

    // The provider pause after the 402 ends (500 ms here), and the next jobs go on.
    let job_ids = deployment
        .enqueue_manifest(&[
            format!("{MODERATED_WORD} scene"),
            format!("{FAILING_WORD} scene"),
            "a fine scene".into(),
        ])
        .await;
    let records = deployment.settled(&job_ids).await;

    let endings: Vec<_> = records.iter().map(|r| (r.state, r.error_class)).collect();
    assert_eq!(
        endings,
        [
            (JobState::Rejected, Some(ErrorClass::Moderation)),
            (JobState::Failed, Some(ErrorClass::GenerationFailed)),
            (JobState::Stored, None),
        ],
        "{provider}"
    );
    assert!(
        records.iter().all(|r| r.submits == 1),
        "{provider}: never resubmitted"
    );
    assert_eq!(
        deployment.sim.stats().max_creates_per_fingerprint,
        1,
        "{provider}"
    );
}

/// Submitted jobs an operator cancels, at a provider that can stop a generation, end
/// `cancelled` once it has: asked by the worker, confirmed by the task's status, nothing
/// downloaded or stored, nothing submitted twice.
async fn cancelled_at_the_provider(provider: ProviderKind) {
    let mut deployment =
        Deployment::start(env!("CARGO_BIN_EXE_reelq-worker"), Duration::from_secs(600)).await;
    deployment.provider = provider;
    let _worker = deployment.spawn_worker_process("w");
    let job_ids = deployment
        .enqueue_manifest(&prompts(provider.as_str(), 2))
        .await;
    deployment.all_in(&job_ids, JobState::Waiting).await;

    for &job_id in &job_ids {
        assert_eq!(
            deployment.client.cancel_job(job_id).await.unwrap(),
            CancelOutcome::AskedProvider(provider)
        );
    }
    let records = deployment.settled(&job_ids).await;

    for record in &records {
        assert_eq!(record.state, JobState::Cancelled, "{provider}: {record:?}");
        assert_eq!((record.submits, record.object_key.as_deref()), (1, None));
    }
    let stats = deployment.sim.stats();
    assert_eq!(
        (
            stats.cancels,
            stats.downloads,
            stats.max_creates_per_fingerprint
        ),
        (2, 0, 1),
        "{provider}"
    );
}

#[tokio::test]
async fn a_submitted_fal_job_is_cancelled_at_fal() {
    cancelled_at_the_provider(ProviderKind::Fal).await;
}

#[tokio::test]
async fn a_submitted_replicate_job_is_cancelled_at_replicate() {
    cancelled_at_the_provider(ProviderKind::Replicate).await;
}

macro_rules! per_provider {
    ($($provider:ident => $kind:expr;)+) => {$(
        mod $provider {
            use super::*;

            #[tokio::test]
            async fn jobs_are_stored_once_by_the_providers_callback() {
                stored_by_its_callback($kind).await;
            }

            #[tokio::test]
            async fn credits_moderation_and_failed_generations_end_jobs_by_class() {
                endings_by_class($kind).await;
            }
        }
    )+};
}

per_provider! {
    kie => ProviderKind::Kie;
    acedata => ProviderKind::Acedata;
    evolink => ProviderKind::Evolink;
    openai => ProviderKind::Openai;
    replicate => ProviderKind::Replicate;
    fal => ProviderKind::Fal;
}

/// The Gemini API calls nobody back: its jobs are stored by polling alone, with callbacks on
/// (the URL is simply not sent), and end by class like the others'.
mod gemini {
    use super::*;

    #[tokio::test]
    async fn jobs_are_stored_once_by_polling_with_callbacks_on() {
        let mut deployment = deployment(ProviderKind::Gemini).await;
        let listener = deployment.callback_listener().await;
        let _worker = deployment.spawn_worker_task("w", API_KEY, Some(listener));
        let job_ids = deployment.enqueue_manifest(&prompts("gemini", 3)).await;

        let records = deployment.settled(&job_ids).await;

        deployment.assert_stored_once(&records);
        for record in &records {
            let stored = read_object(
                &deployment.store_dir(),
                record.object_key.as_deref().unwrap(),
            );
            let task_id = record.task_id.as_deref().unwrap();
            let operations = format!("models/{}/operations/", deployment.model());
            assert!(task_id.starts_with(&operations), "{task_id}");
            assert!(
                stored == deployment.sim.video(task_id).unwrap(),
                "the served video"
            );
            // The poll that found it ready counts (it was fetched under that poll's lease).
            assert!(record.polls >= 1, "{record:?}");
        }
    }

    #[tokio::test]
    async fn credits_moderation_and_failed_generations_end_jobs_by_class() {
        endings_by_class(ProviderKind::Gemini).await;
    }
}
