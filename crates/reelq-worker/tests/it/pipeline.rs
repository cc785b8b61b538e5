//! The walking pipeline: a batch through two worker processes into the store.

use std::time::Duration;

use reelq_sim::render_video;
use sha2::{Digest, Sha256};

use reelq_e2e::{Deployment, files_under, prompts, read_object};

#[tokio::test]
async fn twenty_jobs_through_two_worker_processes_are_stored_once_each() {
    let deployment = Deployment::start(
        env!("CARGO_BIN_EXE_reelq-worker"),
        Duration::from_millis(300),
    )
    .await;
    let _workers = [
        deployment.spawn_worker_process("w1"),
        deployment.spawn_worker_process("w2"),
    ];
    let job_ids = deployment.enqueue_manifest(&prompts("e2e", 20)).await;

    let records = deployment.settled(&job_ids).await;

    deployment.assert_stored_once(&records);
    for record in &records {
        let task_id = record.task_id.as_deref().expect("stored job has a task id");
        let stored = read_object(
            &deployment.store_dir(),
            record.object_key.as_deref().unwrap(),
        );
        assert!(
            stored == render_video(task_id),
            "job {} differs from what was served",
            record.job_id
        );
        assert_eq!(record.bytes, Some(stored.len() as u64));
        assert_eq!(
            record.sha256.as_deref(),
            Some(hex::encode(Sha256::digest(&stored)).as_str())
        );
    }
    let files = files_under(&deployment.store_dir());
    assert_eq!(
        files.len(),
        20,
        "one object per job and nothing else: {files:?}"
    );
}
