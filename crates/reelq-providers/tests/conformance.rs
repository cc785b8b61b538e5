//! Conformance to the providers' own published specifications: every contract that publishes a
//! machine-readable one (OpenAI's, Replicate's and AceData's OpenAPI documents; fal's queue
//! schema and Google's SDK types for the Gemini API, transcribed) is driven through its
//! adapter against a journaling simulator (a create with its callback, polls to the end, the
//! download, every fault the simulator injects, moderation and failed generations, cancels
//! and lists where the contract has them, the account probe), and the journal (each request
//! reelq sent, each answer and callback the simulator gave) is then checked by openapi-core,
//! an independent validator, against the documents vendored under `tests/conformance/specs/`
//! (`check.py`). kie and EvoLink publish prose only: their fixtures stay the reference.

use std::{path::Path, process::Command, time::Duration};

use axum::{Router, routing::post};
use futures_util::StreamExt;
use reelq_core::{Catalog, ErrorClass, JobId, JobRequest, JobSpec, ProviderKind, Secret};
use reelq_providers::{AccountConfig, CancelAnswer, Provider, Submission, TaskStatus, adapter};
use reelq_sim::{FAILING_WORD, MODERATED_WORD, SimConfig, Simulator, served_catalog};
use tokio::sync::mpsc;

const API_KEY: &str = "sk-conformance";

/// The contracts with a published specification, each with the model its document describes
/// (OpenAI's document knows only the Sora models it was written for; AceData's Kling one has
/// its own task shape).
const CONTRACTS: [(ProviderKind, &str); 5] = [
    (ProviderKind::Openai, "sora-2"),
    (ProviderKind::Replicate, "google/veo-3.1-fast"),
    (ProviderKind::Acedata, "kling-v3"),
    (ProviderKind::Fal, "fal-ai/veo3.1/fast"),
    (ProviderKind::Gemini, "veo-3.1-generate-001"),
];

/// The simulator's models as they were sold, so a document's own model can be asked for.
fn catalog() -> Catalog {
    served_catalog().as_once_sold()
}

fn spec(kind: ProviderKind, model: &str, prompt: &str) -> JobSpec {
    JobRequest {
        provider: Some(kind.to_string()),
        model: Some(model.into()),
        prompt: Some(prompt.into()),
        ..JobRequest::default()
    }
    .validate(&catalog(), 0)
    .expect("a valid request")
}

fn account(sim: &Simulator, api_key: &str) -> AccountConfig {
    AccountConfig {
        base_url: sim.base_url().to_owned(),
        api_key: Secret::new(api_key),
        request_timeout: Duration::from_secs(5),
        webhook_secret: None,
    }
}

/// A receiver for the simulator's callbacks, telling each one's arrival.
async fn callback_receiver() -> (String, mpsc::UnboundedReceiver<()>) {
    let (sender, receiver) = mpsc::unbounded_channel();
    let app = Router::new().route(
        "/callbacks/{*rest}",
        post(move || {
            let _ = sender.send(());
            async { "" }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/callbacks", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, receiver)
}

/// Polls `task_id` until it ends.
async fn ended(provider: &dyn Provider, spec: &JobSpec, task_id: &str) -> TaskStatus {
    for _ in 0..100 {
        match provider.query(spec, task_id).await.expect("a query") {
            TaskStatus::Running => tokio::time::sleep(Duration::from_millis(20)).await,
            status => return status,
        }
    }
    panic!("{} task {task_id} never ended", provider.kind())
}

/// Every exchange a contract has: the exchanges the documents describe.
async fn drive(sim: &Simulator, kind: ProviderKind, model: &str, callbacks: &str) {
    let provider = adapter(kind, account(sim, API_KEY)).unwrap();
    let provider = provider.as_ref();
    let callback = format!("{callbacks}/{kind}/job/token");
    let submit = |prompt: &'static str| {
        let spec = spec(kind, model, prompt);
        let callback = callback.clone();
        async move {
            let task = provider
                .submit(Submission::new(JobId::new(), &spec, Some(&callback)))
                .await;
            (spec, task)
        }
    };

    // A create, polled to its video, which is fetched.
    let (first_job, task) = submit("a lighthouse at dusk").await;
    let first_task = task.expect("the create is accepted");
    let TaskStatus::Succeeded { result_url } = ended(provider, &first_job, &first_task).await
    else {
        panic!("{kind}: the task did not succeed");
    };
    let mut body = provider
        .download(&result_url)
        .await
        .expect("a download")
        .body;
    let mut bytes = 0;
    while let Some(chunk) = body.next().await {
        bytes += chunk.expect("the video's bytes").len();
    }
    assert!(bytes > 0, "{kind}: an empty video");

    // Moderation and failed generations end their tasks without a video.
    for prompt in [MODERATED_WORD, FAILING_WORD] {
        let (job, task) = submit(if prompt == MODERATED_WORD {
            "sim:moderate a crowd"
        } else {
            "sim:fail a storm"
        })
        .await;
        match task {
            Ok(task_id) => assert!(matches!(
                ended(provider, &job, &task_id).await,
                TaskStatus::Failed(_)
            )),
            Err(err) => assert_eq!(err.class(), ErrorClass::Moderation, "{kind}: {err}"),
        }
    }

    // Each fault the simulator injects, answered in the provider's words.
    for (code, class) in [
        (402, ErrorClass::Credits),
        (429, ErrorClass::RateLimited),
        (500, ErrorClass::UnknownOutcome),
    ] {
        sim.fail_next_creates(code, 1);
        let (_, task) = submit("a fault").await;
        let class_met = task.expect_err("a refused create").class();
        assert!(
            class_met == class || (code == 500 && class_met == ErrorClass::Transient),
            "{kind} {code}: {class_met}"
        );
    }
    let stranger = adapter(kind, account(sim, "sk-not-the-key")).unwrap();
    let job = spec(kind, model, "a refused key");
    let refused = stranger
        .submit(Submission::new(JobId::new(), &job, None))
        .await
        .expect_err("a refused key");
    assert_eq!(refused.class(), ErrorClass::Auth, "{kind}");

    // Cancels, taken while a task runs and answered once it has ended; lists; the probe.
    if kind.cancels_generations() {
        sim.hold();
        let (job, task) = submit("a slow sunrise").await;
        let task_id = task.expect("the create is accepted");
        assert_eq!(
            provider.cancel(&job, &task_id).await,
            Ok(CancelAnswer::Requested)
        );
        sim.release();
        assert!(matches!(
            ended(provider, &job, &task_id).await,
            TaskStatus::Failed(_)
        ));
        // The first task, which ended with its video: nothing to cancel.
        assert_eq!(
            provider.cancel(&first_job, &first_task).await,
            Ok(CancelAnswer::AlreadyEnded),
            "{kind}"
        );
    }
    if provider.lists_tasks() {
        let listed = provider.recent_tasks(0).await.expect("a list");
        assert!(!listed.tasks.is_empty(), "{kind}");
    }
    provider.check_account().await.expect("the probe");
}

#[tokio::test]
async fn every_request_answer_and_callback_conforms_to_the_providers_published_specifications() {
    let python = std::env::var("CHECKERS_PYTHON").expect(
        "CHECKERS_PYTHON is not set: run scripts/test, which installs openapi-core in .checkvenv",
    );
    let (callbacks, mut arrivals) = callback_receiver().await;
    let config = SimConfig {
        journal: true,
        catalog: catalog(),
        ..SimConfig::new(API_KEY, Duration::ZERO)
    };
    let sim = Simulator::start("127.0.0.1:0".parse().unwrap(), config)
        .await
        .expect("simulator starts");
    sim.set_account_webhook_url(format!("{callbacks}/openai"));
    for (kind, model) in CONTRACTS {
        drive(&sim, kind, model, &callbacks).await;
    }
    // The callbacks the contracts send (all but the Gemini API's): wait for them to land.
    let owed = sim
        .exchanges()
        .iter()
        .filter(|exchange| exchange.kind == "call" && exchange.method == "POST")
        .count();
    assert!(owed > 0);
    tokio::time::timeout(Duration::from_secs(10), async {
        while sim
            .exchanges()
            .iter()
            .filter(|exchange| exchange.kind == "callback")
            .count()
            < 4
        {
            arrivals.recv().await.expect("the receiver runs");
        }
    })
    .await
    .expect("callbacks arrive");

    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"));
    let journal = dir.join("conformance-exchanges.json");
    std::fs::write(
        &journal,
        serde_json::to_vec_pretty(&sim.exchanges()).unwrap(),
    )
    .unwrap();
    let here = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/conformance");
    let checked = Command::new(&python)
        .arg(here.join("check.py"))
        .arg(here.join("specs"))
        .arg(&journal)
        .output()
        .unwrap_or_else(|err| panic!("running {python}: {err}"));
    let report = String::from_utf8_lossy(&checked.stdout);
    let errors = String::from_utf8_lossy(&checked.stderr);
    assert!(
        checked.status.success(),
        "the exchanges do not conform (journal {}):\n{report}{errors}",
        journal.display()
    );
}
