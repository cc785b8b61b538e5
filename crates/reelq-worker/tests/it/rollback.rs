//! A worker killed after its paid create, then the ledger restored from a backup taken
//! before it: the restarted worker reads its creates back from its `paid_creates_file` and
//! gives the task back to the job the ledger forgot, which is polled and stored, never
//! submitted again. Without the file, the restarted worker would find the job `queued` and
//! pay for it twice.

use std::time::Duration;

use reelq_core::JobState;
use reelq_e2e::{Deployment, RedisSetup, prompts};

#[tokio::test]
async fn a_restarted_worker_gives_back_the_create_a_restored_backup_forgot() {
    let mut deployment = Deployment::start_with(
        env!("CARGO_BIN_EXE_reelq-worker"),
        Duration::from_millis(50),
        RedisSetup::Always,
    )
    .await;
    let journal = deployment.dir.path().join("paid-creates.jsonl");
    deployment.settings = format!("paid_creates_file = {:?}", journal.display().to_string());
    deployment.sim.hold();
    let job_ids = deployment.enqueue_manifest(&prompts("restart", 1)).await;
    let backup = deployment.backup().unwrap();

    let mut first = deployment.spawn_worker_process("w1");
    deployment.all_in(&job_ids, JobState::Waiting).await;
    first.kill().await.unwrap();
    deployment.restore_backup(&backup).unwrap();
    // The test's own connections broke with the restart: the next command reconnects.
    if deployment.ledger.ping().await.is_err() {
        deployment.ledger.ping().await.unwrap();
    }
    let _ = deployment.client.status(job_ids[0]).await;
    let forgotten = deployment.ledger.job(job_ids[0]).await.unwrap().unwrap();
    assert_eq!(
        forgotten.state,
        JobState::Queued,
        "the backup forgot the submit"
    );

    let _second = deployment.spawn_worker_process("w2");
    deployment.all_in(&job_ids, JobState::Waiting).await;
    deployment.sim.release();
    deployment.all_in(&job_ids, JobState::Stored).await;

    let stats = deployment.sim.stats();
    assert_eq!((stats.creates, stats.max_creates_per_fingerprint), (1, 1));
    let history = deployment.client.history(job_ids[0]).await.unwrap();
    assert!(
        history
            .iter()
            .any(|event| event.contains("worker restart: task")),
        "{history:#?}"
    );
}
