//! Overnight batches: a budget stops submitting where the money ends, holds the rest, and
//! `resume` goes on; nothing is submitted twice.

use std::time::Duration;

use reelq_core::{BatchOptions, JobRequest, JobState, usd_to_micros};
use reelq_e2e::{Deployment, prompts};

#[tokio::test]
async fn a_1000_job_batch_stops_at_its_budget_and_finishes_after_resume() {
    let deployment = Deployment::start(env!("CARGO_BIN_EXE_reelq-worker"), Duration::ZERO).await;
    let _workers = [
        deployment.spawn_worker_process("w1"),
        deployment.spawn_worker_process("w2"),
    ];
    // kie kling-3.0/video, 5 s: $0.35 each by the built-in prices; $210 pays for 600.
    let specs = prompts("budget", 1000)
        .into_iter()
        .map(|prompt| {
            JobRequest {
                provider: Some("kie".into()),
                model: Some("kling-3.0/video".into()),
                prompt: Some(prompt),
                ..JobRequest::default()
            }
            .validate(reelq_core::Catalog::built_in(), 0)
            .unwrap()
        })
        .collect();
    let options = BatchOptions {
        name: Some("overnight".into()),
        budget_micros: Some(usd_to_micros(210.0)),
        ..BatchOptions::default()
    };
    let receipt = deployment
        .client
        .enqueue_batch_with(specs, &options)
        .await
        .unwrap();

    let records = deployment.settled(&receipt.job_ids).await;
    let count = |state: JobState| records.iter().filter(|r| r.state == state).count();
    assert_eq!(
        (count(JobState::Stored), count(JobState::BudgetHeld)),
        (600, 400)
    );
    assert_eq!(
        deployment.sim.stats().creates,
        600,
        "nothing past the budget was paid"
    );
    let info = deployment
        .client
        .batch_info(receipt.batch_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(info.reserved_micros, usd_to_micros(210.0));

    let resumed = deployment
        .client
        .resume_batch(receipt.batch_id, Some(350.0))
        .await
        .unwrap();
    assert_eq!(resumed, Some(400));
    let records = deployment.settled(&receipt.job_ids).await;

    deployment.assert_stored_once(&records);
}
