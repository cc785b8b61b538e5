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
