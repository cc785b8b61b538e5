//! A deployment on a real Redis Cluster (three masters, a replica each): workers and
//! producers reach the ledger by `redis+cluster://`, and a batch goes through as on one Redis,
//! with the ledger in one slot or its home on another master than its jobs.

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

/// `home_slot = "own"`: the ledger's home (limits, budgets, workers) on one master and its
/// jobs on another; a batch goes through two workers, each claim settling its takes at the
/// home, and the third master holds nothing.
#[tokio::test]
async fn a_batch_goes_through_two_workers_with_the_home_on_its_own_master() {
    let deployment = Deployment::start_with(
        env!("CARGO_BIN_EXE_reelq-worker"),
        Duration::from_millis(50),
        RedisSetup::ClusterOwnHome,
    )
    .await;
    let _workers = [
        deployment.spawn_worker_process("h1"),
        deployment.spawn_worker_process("h2"),
    ];
    let job_ids = deployment.enqueue_manifest(&prompts("own home", 30)).await;

    let records = deployment.settled(&job_ids).await;

    deployment.assert_stored_once(&records);
    let keys = |node: &reelq_testkit::RedisServer| -> u64 {
        let n = node.command(&["DBSIZE"]).unwrap();
        n.trim_start_matches(':').parse().unwrap()
    };
    // The home holds settings, workers, limits and the task index, none of a job's records.
    let list = "return #redis.call('KEYS', ARGV[1])";
    let count = |pattern: &str| {
        let n = deployment
            .redis
            .command(&["EVAL", list, "0", pattern])
            .unwrap();
        n.trim_start_matches(':').parse::<u64>().unwrap()
    };
    assert_eq!(count("{e2e}:job:*"), 0);
    assert_eq!(count("{e2e}:task:*"), 30, "one task index entry a job");
    assert!(keys(&deployment.redis) > 30);
    let cluster = deployment.cluster.as_ref().unwrap();
    let mut masters: Vec<u64> = cluster
        .nodes
        .iter()
        .filter(|node| {
            let info = node.command_text(&["INFO", "replication"]).unwrap();
            info.contains("role:master")
        })
        .map(keys)
        .collect();
    masters.sort_unstable();
    assert_eq!(masters.len(), 2);
    assert_eq!(masters[0], 0, "the third master holds nothing");
    assert!(masters[1] > 30, "the jobs' partition: {masters:?}");
}

/// `partitions = 6`: the ledger's jobs in six partitions, two on each master, its home beside
/// two of them; 60 jobs enqueued as six batches (each in the producer's next partition in
/// turn) go through two workers, whose claims go round the partitions; each master holds a
/// third of the jobs, and the home's slot none of their records.
#[tokio::test]
async fn a_partitioned_ledger_spreads_its_jobs_over_every_master() {
    let deployment = Deployment::start_with(
        env!("CARGO_BIN_EXE_reelq-worker"),
        Duration::from_millis(50),
        RedisSetup::ClusterPartitioned,
    )
    .await;
    assert_eq!(deployment.ledger.partitions(), reelq_e2e::PARTITIONS);
    let _workers = [
        deployment.spawn_worker_process("p1"),
        deployment.spawn_worker_process("p2"),
    ];
    let job_ids = deployment
        .enqueue_manifest(&prompts("partitioned", 60))
        .await;

    let records = deployment.settled(&job_ids).await;

    deployment.assert_stored_once(&records);
    let list = "return #redis.call('KEYS', ARGV[1])";
    let count = |node: &reelq_testkit::RedisServer, pattern: &str| -> u64 {
        let n = node.command(&["EVAL", list, "0", pattern]).unwrap();
        n.trim_start_matches(':').parse().unwrap()
    };
    assert_eq!(
        count(&deployment.redis, "{e2e}:job:*"),
        0,
        "the home's slot"
    );
    let cluster = deployment.cluster.as_ref().unwrap();
    let mut records_per_master = Vec::new();
    for node in cluster.nodes.iter().chain([&deployment.redis]) {
        let info = node.command_text(&["INFO", "replication"]).unwrap();
        if info.contains("role:master") {
            records_per_master.push(count(node, "{e2e.p*}:job:*"));
        }
    }
    assert_eq!(records_per_master, [20, 20, 20], "a third on each master");
}
