//! A deployment on a real Redis Cluster (three masters, a replica each): workers and
//! producers reach the ledger by `redis+cluster://`, and a batch goes through as on one Redis.

use std::time::Duration;

use reelq_e2e::{Deployment, RedisSetup, prompts};

#[tokio::test]
async fn a_batch_goes_through_two_workers_on_a_redis_cluster() {
    let deployment = Deployment::start_with(
        env!("CARGO_BIN_EXE_reelq-worker"),
        Duration::from_millis(50),
        RedisSetup::Cluster,
    )
    .await;
    assert!(deployment.redis_url.starts_with("redis+cluster://"));
    let _workers = [
        deployment.spawn_worker_process("c1"),
        deployment.spawn_worker_process("c2"),
    ];
    let job_ids = deployment.enqueue_manifest(&prompts("cluster", 30)).await;

    let records = deployment.settled(&job_ids).await;

    deployment.assert_stored_once(&records);
    // The whole ledger is on the master of its slot; the other masters hold none of it.
    let on_master = deployment.redis.command(&["DBSIZE"]).unwrap();
    assert!(
        on_master.trim_start_matches(':').parse::<u64>().unwrap() > 30,
        "{on_master}"
    );
    let cluster = deployment.cluster.as_ref().unwrap();
    for node in &cluster.nodes {
        let info = node.command_text(&["INFO", "replication"]).unwrap();
        if info.contains("role:master") {
            assert_eq!(node.command(&["DBSIZE"]).unwrap(), ":0");
        }
    }
}
