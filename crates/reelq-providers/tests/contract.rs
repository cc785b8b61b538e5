//! One contract suite, run against the simulator for each of the seven providers: the happy
//! path, every error class a create can meet, moderation, failed generations, and result
//! URLs that expire or 404 once. The adapters are the real ones; the simulator speaks each
//! provider's own shapes.

use std::time::Duration;

use futures_util::StreamExt;
use reelq_core::{ErrorClass, JobId, JobRequest, JobSpec, ProviderKind, Secret};
use reelq_providers::{
    AccountConfig, CancelAnswer, Provider, ProviderError, Submission, TaskStatus, adapter,
};
use reelq_sim::{FAILING_WORD, MODERATED_WORD, SimConfig, Simulator, served_catalog};

/// `<access key>:<secret key>`, as a Kling key is given; every other contract sends it whole.
const API_KEY: &str = "sk-contract:contract-secret";

async fn simulator(config: SimConfig) -> Simulator {
    Simulator::start("127.0.0.1:0".parse().unwrap(), config)
        .await
        .expect("simulator starts")
}

fn account(sim: &Simulator, api_key: &str) -> AccountConfig {
    AccountConfig {
        base_url: sim.base_url().to_owned(),
        api_key: Secret::new(api_key),
        request_timeout: Duration::from_millis(500),
        webhook_secret: None,
    }
}

fn spec(provider: ProviderKind, prompt: &str) -> JobSpec {
    JobRequest {
        provider: Some(provider.to_string()),
        model: Some(
            served_catalog()
                .models_of(provider)
                .find(|rule| rule.status.takes_jobs())
                .unwrap()
                .model
                .clone(),
        ),
        prompt: Some(prompt.into()),
        ..JobRequest::default()
    }
    .validate(served_catalog(), 0)
    .expect("a valid request")
}

/// A normal-priority submit of `spec`.
fn submission<'a>(spec: &'a JobSpec, callback_url: Option<&'a str>) -> Submission<'a> {
    Submission::new(JobId::new(), spec, callback_url)
}

async fn submit(provider: &dyn Provider, prompt: &str) -> Result<String, ProviderError> {
    let spec = spec(provider.kind(), prompt);
    let callback = "http://127.0.0.1:9/callbacks/unused";
    provider.submit(submission(&spec, Some(callback))).await
}

async fn download(provider: &dyn Provider, url: &str) -> Result<Vec<u8>, ProviderError> {
    let mut body = provider.download(url).await?.body;
    let mut bytes = Vec::new();
    while let Some(chunk) = body.next().await {
        bytes.extend_from_slice(&chunk?);
    }
    Ok(bytes)
}

async fn result_url(provider: &dyn Provider, task_id: &str) -> String {
    match provider.query(&spec(provider.kind(), "p"), task_id).await {
        Ok(TaskStatus::Succeeded { result_url }) => result_url,
        other => panic!("{} task {task_id}: {other:?}", provider.kind()),
    }
}

async fn happy_path(kind: ProviderKind) {
    let sim = simulator(SimConfig::new(API_KEY, Duration::ZERO)).await;
    let provider = adapter(kind, account(&sim, API_KEY)).unwrap();
    sim.hold();
    let task_id = submit(provider.as_ref(), "a lighthouse at dusk")
        .await
        .unwrap();
    assert_eq!(
        provider
            .query(&spec(provider.kind(), "p"), &task_id)
            .await
            .unwrap(),
        TaskStatus::Running
    );
    sim.release();
    let url = result_url(provider.as_ref(), &task_id).await;
    let video = download(provider.as_ref(), &url).await.unwrap();
    assert!(
        video == sim.video(&task_id).unwrap(),
        "{kind}: the served video"
    );
    let stats = sim.stats();
    assert_eq!(
        (stats.creates, stats.max_creates_per_fingerprint),
        (1, 1),
        "{kind}"
    );
}

/// Each injected fault (in the simulator's neutral vocabulary) and the class it must map to.
/// Maintenance is kie's envelope code 455, a refusal; every other contract answers it with a
/// 5xx (a 503, or its own 500), which proves no refusal on a create: a gateway may answer it
/// after the provider accepted, and so may the provider's own server, whatever its words.
fn create_faults(kind: ProviderKind) -> [(i64, ErrorClass); 4] {
    let maintenance = match kind {
        ProviderKind::Kie => ErrorClass::Transient,
        _ => ErrorClass::UnknownOutcome,
    };
    [
        (402, ErrorClass::Credits),
        (429, ErrorClass::RateLimited),
        (455, maintenance),
        (500, ErrorClass::UnknownOutcome),
    ]
}

async fn create_errors(kind: ProviderKind) {
    let sim = simulator(SimConfig::new(API_KEY, Duration::ZERO)).await;
    let provider = adapter(kind, account(&sim, API_KEY)).unwrap();
    for (fault, class) in create_faults(kind) {
        sim.fail_next_creates(fault, 1);
        let err = submit(provider.as_ref(), "p").await.unwrap_err();
        assert_eq!(err.class(), class, "{kind} fault {fault}: {err}");
        if fault == 500 {
            assert!(
                matches!(err, ProviderError::ServerError { .. }),
                "{kind}: the provider's own 500, which an account may choose to retry: {err}"
            );
        }
        if class == ErrorClass::RateLimited {
            // Kling's concurrency answer (1303), Ark's and DashScope's 429s say nothing of
            // when to come back.
            let silent = matches!(
                kind,
                ProviderKind::Kling | ProviderKind::Ark | ProviderKind::Dashscope
            );
            let documented = (!silent).then_some(Duration::from_secs(1));
            assert_eq!(err.retry_after(), documented, "{kind}");
        }
    }
    let wrong_key = adapter(kind, account(&sim, "sk-wrong:wrong-secret")).unwrap();
    let err = submit(wrong_key.as_ref(), "p").await.unwrap_err();
    assert_eq!(err.class(), ErrorClass::Auth, "{kind}: {err}");
    assert!(
        !err.to_string().contains("sk-wrong"),
        "{kind}: the key leaked: {err}"
    );
    let mut unknown_model = spec(kind, "p");
    unknown_model.model = "sora-9".into();
    let err = provider
        .submit(submission(&unknown_model, None))
        .await
        .unwrap_err();
    assert_eq!(err.class(), ErrorClass::Invalid, "{kind}: {err}");
    sim.set_create_latency(Duration::from_secs(2));
    let err = submit(provider.as_ref(), "slow").await.unwrap_err();
    assert_eq!(err.class(), ErrorClass::UnknownOutcome, "{kind}: {err}");
    assert_eq!(
        sim.stats().creates,
        1,
        "{kind}: only the slow create was accepted (and paid)"
    );
}

/// Moderation ends a job as `Moderation` whether the provider refuses at create or fails
/// the generation; a failed generation is `GenerationFailed`.
async fn moderation_and_failed_generations(kind: ProviderKind) {
    let sim = simulator(SimConfig::new(API_KEY, Duration::ZERO)).await;
    let provider = adapter(kind, account(&sim, API_KEY)).unwrap();
    let moderated = match submit(provider.as_ref(), &format!("{MODERATED_WORD} scene")).await {
        Ok(task_id) => match provider
            .query(&spec(provider.kind(), "p"), &task_id)
            .await
            .unwrap()
        {
            TaskStatus::Failed(err) => err,
            other => panic!("{kind}: a moderated task ended {other:?}"),
        },
        Err(err) => err,
    };
    assert_eq!(
        moderated.class(),
        ErrorClass::Moderation,
        "{kind}: {moderated}"
    );
    let task_id = submit(provider.as_ref(), &format!("{FAILING_WORD} scene"))
        .await
        .unwrap();
    match provider
        .query(&spec(provider.kind(), "p"), &task_id)
        .await
        .unwrap()
    {
        TaskStatus::Failed(err) => {
            assert_eq!(err.class(), ErrorClass::GenerationFailed, "{kind}: {err}")
        }
        other => panic!("{kind}: a failing task ended {other:?}"),
    }
}

/// A result URL that 404s once is `ResultExpired` (the worker queries again), then works.
async fn a_result_url_404_once(kind: ProviderKind) {
    let sim = simulator(SimConfig::new(API_KEY, Duration::ZERO)).await;
    let provider = adapter(kind, account(&sim, API_KEY)).unwrap();
    let task_id = submit(provider.as_ref(), "p").await.unwrap();
    let url = result_url(provider.as_ref(), &task_id).await;
    sim.expire_next_downloads(1);
    let err = download(provider.as_ref(), &url).await.unwrap_err();
    assert!(
        matches!(err, ProviderError::ResultExpired(_)),
        "{kind}: {err}"
    );
    let url = result_url(provider.as_ref(), &task_id).await;
    assert!(download(provider.as_ref(), &url).await.unwrap() == sim.video(&task_id).unwrap());
}

/// A pre-signed result URL expires after its time; a fresh query hands out one that works.
/// (OpenAI-style gateways serve the content from the API with the key, which does not expire.)
async fn an_expired_result_url(kind: ProviderKind) {
    let config = SimConfig {
        result_url_ttl: Some(Duration::from_millis(300)),
        ..SimConfig::new(API_KEY, Duration::ZERO)
    };
    let sim = simulator(config).await;
    let provider = adapter(kind, account(&sim, API_KEY)).unwrap();
    let task_id = submit(provider.as_ref(), "p").await.unwrap();
    let stale_url = result_url(provider.as_ref(), &task_id).await;
    // The URL's lifetime is what is under test here, so time has to pass.
    tokio::time::sleep(Duration::from_millis(400)).await;
    let err = download(provider.as_ref(), &stale_url).await.unwrap_err();
    assert!(
        matches!(err, ProviderError::ResultExpired(_)),
        "{kind}: {err}"
    );
    let fresh_url = result_url(provider.as_ref(), &task_id).await;
    assert!(download(provider.as_ref(), &fresh_url).await.unwrap() == sim.video(&task_id).unwrap());
}

macro_rules! contract_suite {
    ($($provider:ident => $kind:expr;)+) => {$(
        mod $provider {
            use super::*;

            #[tokio::test]
            async fn happy_path() {
                super::happy_path($kind).await;
            }

            #[tokio::test]
            async fn create_errors_map_to_their_classes() {
                create_errors($kind).await;
            }

            #[tokio::test]
            async fn moderation_and_failed_generations_map_to_their_classes() {
                moderation_and_failed_generations($kind).await;
            }

            #[tokio::test]
            async fn a_result_url_that_404s_once_is_fetched_again() {
                a_result_url_404_once($kind).await;
            }
        }
    )+};
}

contract_suite! {
    kie => ProviderKind::Kie;
    acedata => ProviderKind::Acedata;
    evolink => ProviderKind::Evolink;
    openai => ProviderKind::Openai;
    replicate => ProviderKind::Replicate;
    gemini => ProviderKind::Gemini;
    fal => ProviderKind::Fal;
    kling => ProviderKind::Kling;
    ark => ProviderKind::Ark;
    dashscope => ProviderKind::Dashscope;
}

#[tokio::test]
async fn an_expired_kie_result_url_is_replaced_by_a_fresh_one() {
    an_expired_result_url(ProviderKind::Kie).await;
}

#[tokio::test]
async fn an_expired_acedata_result_url_is_replaced_by_a_fresh_one() {
    an_expired_result_url(ProviderKind::Acedata).await;
}

#[tokio::test]
async fn an_expired_evolink_result_url_is_replaced_by_a_fresh_one() {
    an_expired_result_url(ProviderKind::Evolink).await;
}

#[tokio::test]
async fn an_expired_replicate_output_url_is_replaced_by_a_fresh_one() {
    an_expired_result_url(ProviderKind::Replicate).await;
}

#[tokio::test]
async fn a_low_priority_batch_job_asks_fal_to_queue_it_behind_normal_requests() {
    let sim = simulator(SimConfig::new(API_KEY, Duration::ZERO)).await;
    let provider = adapter(ProviderKind::Fal, account(&sim, API_KEY)).unwrap();
    let spec = spec(ProviderKind::Fal, "a calm lake at dawn");
    let low = Submission {
        low_priority: true,
        ..submission(&spec, None)
    };
    let task_id = provider.submit(low).await.unwrap();
    assert_eq!(sim.create_body(&task_id).unwrap()["priority"], "low");
    let task_id = provider.submit(submission(&spec, None)).await.unwrap();
    assert_eq!(
        sim.create_body(&task_id).unwrap().get("priority"),
        None,
        "normal is fal's default: no header"
    );
}

#[tokio::test]
async fn a_running_generation_is_cancelled_where_the_contract_has_a_cancel_call() {
    let sim = simulator(SimConfig::new(API_KEY, Duration::from_secs(600))).await;
    for kind in ProviderKind::ALL {
        let provider = adapter(kind, account(&sim, API_KEY)).unwrap();
        let task_id = submit(provider.as_ref(), "a slow sunrise").await.unwrap();
        let spec = spec(kind, "a slow sunrise");
        let cancelled = provider.cancel(&spec, &task_id).await;
        match kind.cancels_generations() {
            true => assert_eq!(cancelled, Ok(CancelAnswer::Requested), "{kind}"),
            false => assert!(cancelled.is_err(), "{kind}: {cancelled:?}"),
        }
        let status = provider.query(&spec, &task_id).await.unwrap();
        match kind.cancels_generations() {
            // Ended without a video: how a job asked to cancel learns it has stopped.
            true => assert!(
                matches!(status, TaskStatus::Failed(_)),
                "{kind}: {status:?}"
            ),
            false => assert_eq!(status, TaskStatus::Running, "{kind}"),
        }
    }
    let cancelling = ProviderKind::ALL
        .iter()
        .filter(|kind| kind.cancels_generations())
        .count();
    assert_eq!(sim.stats().cancels, cancelling as u64);
}

#[tokio::test]
async fn a_generation_that_finished_keeps_its_video_when_a_cancel_comes_too_late() {
    let sim = simulator(SimConfig::new(API_KEY, Duration::ZERO)).await;
    for kind in ProviderKind::ALL
        .into_iter()
        .filter(|kind| kind.cancels_generations())
    {
        let provider = adapter(kind, account(&sim, API_KEY)).unwrap();
        let task_id = submit(provider.as_ref(), "a quick wave").await.unwrap();
        let spec = spec(kind, "a quick wave");
        // fal answers ALREADY_COMPLETED; Replicate, the prediction as it ended: an answer
        // either way, so the worker asks no more.
        let answered = provider.cancel(&spec, &task_id).await;
        assert_eq!(answered, Ok(CancelAnswer::AlreadyEnded), "{kind}");
        let status = provider.query(&spec, &task_id).await.unwrap();
        assert!(
            matches!(status, TaskStatus::Succeeded { .. }),
            "{kind}: {status:?}"
        );
    }
    assert_eq!(sim.stats().cancels, 0);
}

#[tokio::test]
async fn evolink_in_strict_mode_refuses_a_loopback_callback_url() {
    let config = SimConfig {
        strict_callback_urls: true,
        ..SimConfig::new(API_KEY, Duration::ZERO)
    };
    let sim = simulator(config).await;
    let provider = adapter(ProviderKind::Evolink, account(&sim, API_KEY)).unwrap();
    let err = submit(provider.as_ref(), "p").await.unwrap_err();
    assert_eq!(err.class(), ErrorClass::Invalid, "{err}");
    let spec = spec(ProviderKind::Evolink, "p");
    let public = "https://hooks.example.com/callbacks/evolink/j/t";
    provider
        .submit(submission(&spec, Some(public)))
        .await
        .unwrap();
}

#[tokio::test]
async fn faults_can_be_injected_over_http_as_the_demo_does() {
    let sim = simulator(SimConfig::new(API_KEY, Duration::ZERO)).await;
    let provider = adapter(ProviderKind::Openai, account(&sim, API_KEY)).unwrap();
    let control = reqwest::Client::new();
    let injected = control
        .post(format!("{}/sim/faults", sim.base_url()))
        .json(&serde_json::json!({ "code": 429, "count": 1 }))
        .send()
        .await
        .unwrap();
    assert!(injected.status().is_success());
    let err = submit(provider.as_ref(), "p").await.unwrap_err();
    assert_eq!(err.class(), ErrorClass::RateLimited, "{err}");
    control
        .post(format!("{}/sim/outage", sim.base_url()))
        .json(&serde_json::json!({ "code": 500, "ms": 60000 }))
        .send()
        .await
        .unwrap();
    let err = submit(provider.as_ref(), "p").await.unwrap_err();
    assert_eq!(err.class(), ErrorClass::UnknownOutcome, "{err}");
    assert_eq!(sim.stats().creates, 0);
}

#[tokio::test]
async fn a_gateway_failing_after_the_provider_accepted_is_an_unknown_outcome_everywhere() {
    for kind in ProviderKind::ALL {
        let sim = simulator(SimConfig::new(API_KEY, Duration::ZERO)).await;
        let provider = adapter(kind, account(&sim, API_KEY)).unwrap();
        for code in [500, 502, 503, 504] {
            sim.fail_after_accepting_next_creates(code, 1);
            let err = submit(provider.as_ref(), "p").await.unwrap_err();
            assert_eq!(
                err.class(),
                ErrorClass::UnknownOutcome,
                "{kind} {code}: {err}"
            );
        }
        assert_eq!(sim.stats().creates, 4, "{kind}: each was accepted and paid");
    }
}

#[tokio::test]
async fn the_openai_style_list_finds_a_create_whose_answer_was_lost() {
    let sim = simulator(SimConfig::new(API_KEY, Duration::ZERO)).await;
    let provider = adapter(ProviderKind::Openai, account(&sim, API_KEY)).unwrap();
    assert!(provider.lists_tasks());
    let lost = spec(ProviderKind::Openai, "a kite over dunes");
    sim.fail_after_accepting_next_creates(502, 1);
    let err = provider.submit(submission(&lost, None)).await.unwrap_err();
    assert_eq!(err.class(), ErrorClass::UnknownOutcome);
    let other = submit(provider.as_ref(), "another prompt").await.unwrap();

    let recent = provider.recent_tasks(0).await.unwrap();
    assert!(recent.complete);
    let tasks = recent.tasks;
    assert_eq!(tasks.len(), 2, "{tasks:?}");
    let echo = provider.echo(&lost);
    let matching: Vec<&str> = tasks
        .iter()
        .filter(|task| task.echoes(&echo))
        .map(|task| task.task_id.as_str())
        .collect();
    assert_eq!(matching.len(), 1, "{tasks:?}");
    assert_ne!(matching[0], other);
    let record = provider.task_record(matching[0]).await.unwrap();
    assert!(record.expect("openai echoes").echoes(&echo));
}

#[tokio::test]
async fn a_kie_task_record_echoes_its_create_and_only_its_own() {
    let sim = simulator(SimConfig::new(API_KEY, Duration::ZERO)).await;
    let provider = adapter(ProviderKind::Kie, account(&sim, API_KEY)).unwrap();
    let sent = spec(ProviderKind::Kie, "a lighthouse at dusk");
    let task_id = provider.submit(submission(&sent, None)).await.unwrap();

    let record = provider
        .task_record(&task_id)
        .await
        .unwrap()
        .expect("kie's recordInfo echoes the request");
    assert_eq!(record.task_id, task_id);
    assert!(record.echoes(&provider.echo(&sent)), "{record:?}");
    let other = spec(ProviderKind::Kie, "a different prompt");
    assert!(!record.echoes(&provider.echo(&other)), "{record:?}");
    let unknown = provider.task_record("no-such-task").await.unwrap_err();
    assert_eq!(unknown.class(), ErrorClass::Invalid, "{unknown}");
}
