//! Crashes: a worker killed with SIGKILL loses no job and causes no second submit.

use std::time::Duration;

use reelq_core::JobState;
use reelq_sim::SimEvent;

use reelq_e2e::{Deployment, prompts, sim_events};

#[tokio::test]
async fn jobs_of_a_killed_worker_are_finished_by_another_without_resubmitting() {
    let deployment = Deployment::start(
        env!("CARGO_BIN_EXE_reelq-worker"),
        Duration::from_millis(100),
    )
    .await;
    deployment.sim.hold();
    let mut events = deployment.sim.events();
    let mut doomed = deployment.spawn_worker_process("doomed");
    let job_ids = deployment.enqueue_manifest(&prompts("crash", 6)).await;

    sim_events(&mut events, job_ids.len(), |event| {
        matches!(event, SimEvent::Created { .. })
    })
    .await;
    deployment.all_in(&job_ids, JobState::Waiting).await;
    doomed.kill().await.expect("SIGKILL the worker");

    let _survivor = deployment.spawn_worker_process("survivor");
    deployment.sim.release();
    let records = deployment.settled(&job_ids).await;

    deployment.assert_stored_once(&records);
}

/// A worker dies after indexing the task its create got and before recording it (or a
/// failover loses the record of it, not yet durable), so its job is `uncertain` while the
/// task index already binds the task to it. The provider's list shows the task: the job must
/// adopt it, not count its create absent and pay for a second one (a full-suite chaos run
/// found one job paid twice this way).
#[tokio::test]
async fn an_uncertain_job_whose_task_is_indexed_to_it_adopts_it_instead_of_paying_again() {
    let mut deployment = Deployment::start(
        env!("CARGO_BIN_EXE_reelq-worker"),
        Duration::from_millis(50),
    )
    .await;
    deployment.provider = reelq_core::ProviderKind::Openai;
    deployment.settings = "reconcile_every_ms = 200\nreconcile_absent_after_ms = 500".into();
    deployment.sim.hold();
    let first = deployment.spawn_worker_process("first");
    let job_ids = deployment.enqueue_manifest(&prompts("indexed", 1)).await;
    deployment.all_in(&job_ids, JobState::Waiting).await;
    drop(first);
    let job = job_ids[0];
    let record = deployment.ledger.job(job).await.unwrap().unwrap();
    let task_id = record.task_id.clone().expect("the create's task");
    assert_eq!(
        deployment
            .ledger
            .job_of_task(&record.account, &task_id)
            .await
            .unwrap(),
        Some(job)
    );
    // What the dead worker left: its submit begun, the task indexed, its record of the task
    // gone, and the lease run out (`uncertain`).
    let key = |name: &str| format!("{{{}}}:{name}", reelq_e2e::PREFIX);
    let id = job.to_string();
    for command in [
        vec!["HSET", &key(&format!("job:{id}")), "state", "uncertain"],
        vec!["HDEL", &key(&format!("job:{id}")), "task_id"],
        vec!["ZREM", &key("state:waiting"), &id],
        vec!["ZADD", &key("state:uncertain"), "1", &id],
        vec!["ZREM", &key("due"), &id],
    ] {
        deployment.redis.command(&command).unwrap();
    }

    let _second = deployment.spawn_worker_process("second");
    deployment.sim.release();
    deployment.all_in(&job_ids, JobState::Stored).await;

    let record = deployment.ledger.job(job).await.unwrap().unwrap();
    assert_eq!(record.task_id.as_deref(), Some(task_id.as_str()));
    assert_eq!(deployment.sim.stats().creates, 1, "paid once");
}
