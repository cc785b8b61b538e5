//! `reelq migrate --to-partitions` (`partition_ledger`) over a ledger the previous release
//! wrote (`tests/fixtures`), on a Redis Cluster: nothing is copied, every existing job and
//! callback is found through the new layout and finishes where it is, new jobs spread over
//! the partitions on every master, a client that read the layout before cannot enqueue into
//! the old slot, and no job is submitted twice.

use std::collections::HashMap;

use reelq_core::{JobId, JobState};
use reelq_queue::{Ledger, LedgerConfig, partition_ledger};
use reelq_testkit::RedisCluster;

use crate::ledger::spec;
use crate::upgrade::{finish_all, fixture_jobs, load};

#[tokio::test]
async fn a_previous_releases_ledger_is_partitioned_over_the_cluster_in_place() {
    let cluster = RedisCluster::start().unwrap();
    let home = cluster.master_of("{reelq}:due").unwrap();
    let node = |port: u16| cluster.node(port).unwrap();
    load(node(home)).await;
    let before = fixture_jobs();
    let config = LedgerConfig::new(cluster.url(), "reelq");
    let stale = Ledger::connect(&config).await.unwrap();
    stale.migrate().await.unwrap();

    let done = partition_ledger(&config, 6).await.unwrap();
    assert!(!done.already);
    assert_eq!(done.tags.len(), 6);
    assert_eq!(done.before, done.after, "no job moved");
    assert_eq!(
        done.jobs_checked,
        before.len(),
        "every old job and callback found"
    );
    println!("the switch took {} ms", done.switch_ms);

    // A client that read the one-slot layout is refused, and writes nothing.
    let refused = stale
        .enqueue(None, &[(JobId::new(), spec("stale producer"))])
        .await
        .unwrap_err();
    assert!(refused.to_string().contains("PARTITIONED"), "{refused}");

    let ledger = Ledger::connect(&config).await.unwrap();
    assert_eq!(ledger.partitions(), 6);
    let mut new_jobs = Vec::new();
    for n in 0..30 {
        let id = ledger.new_ids(1, None).1[0];
        ledger
            .enqueue(None, &[(id, spec(&format!("after partitioning {n}")))])
            .await
            .unwrap();
        new_jobs.push(id);
    }
    let list = "return #redis.call('KEYS', ARGV[1])";
    let mut per_master = Vec::new();
    for server in &cluster.nodes {
        let info = server.command_text(&["INFO", "replication"]).unwrap();
        if info.contains("role:master") {
            let n = server
                .command(&["EVAL", list, "0", "{reelq.p*}:job:*"])
                .unwrap();
            per_master.push(n.trim_start_matches(':').parse::<u64>().unwrap());
        }
    }
    assert_eq!(per_master, [10, 10, 10], "new jobs on every master");
    assert_eq!(
        node(home)
            .command(&["EVAL", list, "0", "{reelq}:job:*"])
            .unwrap(),
        format!(":{}", before.len()),
        "the old slot keeps the old jobs, and only them"
    );
    let again = partition_ledger(&config, 6).await.unwrap();
    assert!(again.already, "run again, it changes nothing");

    // Every job that can finish does, old and new, none submitted twice.
    finish_all(&ledger).await;
    let ids: Vec<JobId> = before.keys().copied().chain(new_jobs).collect();
    let after = ledger.jobs(&ids).await.unwrap();
    assert_eq!(after.len(), ids.len());
    let states: HashMap<JobState, usize> = after.iter().fold(HashMap::new(), |mut n, r| {
        *n.entry(r.state).or_default() += 1;
        n
    });
    let count = |state: JobState| states.get(&state).copied().unwrap_or(0);
    assert_eq!(count(JobState::Uncertain), 2, "{states:?}");
    assert_eq!(count(JobState::BudgetHeld), 1, "{states:?}");
    assert_eq!(count(JobState::Stored), 6 + 30, "{states:?}");
    assert!(after.iter().all(|record| record.submits <= 1));
}
