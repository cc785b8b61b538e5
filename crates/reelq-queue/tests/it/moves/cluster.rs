//! The walk of every move of the table (`moves.rs`) on a real Redis Cluster, in each layout:
//! the ledger in one slot; its home in a slot of its own; its jobs in partitions over every
//! master.

use reelq_core::JobId;
use reelq_queue::{Ledger, keys};
use reelq_testkit::{RedisCluster, RedisServer};

use super::walk_every_move;
use crate::ledger::spec;

/// The same walk on a Redis Cluster: every script runs on the master of the ledger's slot,
/// and (with its `#!lua` shebang) would be refused at once if it touched a key elsewhere.
#[tokio::test]
async fn every_move_is_made_on_a_redis_cluster_too() {
    let cluster = RedisCluster::start().unwrap();
    let one_slot = reelq_queue::LedgerConfig {
        partitions: 1,
        ..reelq_queue::LedgerConfig::new(cluster.url(), "test")
    };
    let ledger = Ledger::connect(&one_slot).await.unwrap();
    let master = cluster
        .node(cluster.master_of("{test}:due").unwrap())
        .unwrap();
    walk_every_move(vec![(master, "test".to_owned())], ledger).await;
}

/// The same walk on a Redis Cluster with the home of cluster-wide state in a slot of its own
/// (`keys.rs`), on another master than the partition's: no script carries
/// `allow-cross-slot-keys`, so the cluster refuses any script that touches a key of the other
/// slot; each leaves its home effects (slots and reservations given back, a task bound) to be
/// made at the home after it, on the home's master, and the claim decides from a view of the
/// home and settles its takes there.
#[tokio::test]
async fn every_move_is_made_with_the_home_on_another_master() {
    let cluster = RedisCluster::start().unwrap();
    let config = reelq_queue::LedgerConfig {
        home_slot: reelq_queue::HomeSlot::Own,
        partitions: 1,
        ..reelq_queue::LedgerConfig::new(cluster.url(), "test")
    };
    let ledger = Ledger::connect(&config).await.unwrap();
    let home = cluster.master_of("{test}:due").unwrap();
    let node = |port: u16| cluster.node(port).unwrap();
    let partition = node(home).command_text(&["GET", "{test}:layout"]).unwrap();
    let partition_master = cluster.master_of(&format!("{{{partition}}}:due")).unwrap();
    assert_ne!(partition_master, home, "{partition} is on another master");
    walk_every_move(vec![(node(partition_master), partition.clone())], ledger).await;
    // The layout is the ledger's: a client asking for another follows it.
    let shared = reelq_queue::LedgerConfig::new(cluster.url(), "test");
    let follower = Ledger::connect(&shared).await.unwrap();
    let job_id = JobId::new();
    follower
        .enqueue(None, &[(job_id, spec("follows"))])
        .await
        .unwrap();
    let key = format!("{{{partition}}}:job:{job_id}");
    assert_eq!(
        node(partition_master).command(&["EXISTS", &key]).unwrap(),
        ":1"
    );
    // Each master holds its own slot's kind of key, and both were written.
    for (tag, master, kinds) in [
        ("test", home, keys::HOME),
        (partition.as_str(), partition_master, keys::PARTITION),
    ] {
        let list = "return table.concat(redis.call('KEYS', ARGV[1]), '\\n')";
        let pattern = format!("{{{tag}}}:*");
        let found = node(master)
            .command_text(&["EVAL", list, "0", &pattern])
            .unwrap();
        let names: Vec<&str> = found.lines().filter(|line| !line.is_empty()).collect();
        assert!(names.len() > 3, "{tag}: {names:?}");
        for name in names {
            let kind = name.split(':').nth(1).unwrap();
            assert!(
                kinds.contains(&kind) || keys::EVERY_SLOT.contains(&kind),
                "{name} is in the slot of {tag}"
            );
        }
    }
}

/// The same walk on a ledger of several partitions over a cluster's three masters: each job
/// in the partition its id names, each partition's scripts on its own master (the cluster
/// refuses any key of another slot), the home beside one of them; the partitions spread
/// evenly over the masters.
#[tokio::test]
async fn every_move_is_made_with_the_jobs_partitioned_over_every_master() {
    let cluster = RedisCluster::start().unwrap();
    let config = reelq_queue::LedgerConfig {
        partitions: 6,
        ..reelq_queue::LedgerConfig::new(cluster.url(), "test")
    };
    let ledger = Ledger::connect(&config).await.unwrap();
    assert_eq!(ledger.partitions(), 6);
    let node = |port: u16| cluster.node(port).unwrap();
    let home = cluster.master_of("{test}:due").unwrap();
    let layout = node(home).command_text(&["GET", "{test}:layout"]).unwrap();
    let parts: Vec<(&RedisServer, String)> = layout
        .split(' ')
        .map(|tag| {
            let master = cluster.master_of(&format!("{{{tag}}}:due")).unwrap();
            (node(master), tag.to_owned())
        })
        .collect();
    let mut per_master = std::collections::BTreeMap::new();
    for (server, _) in &parts {
        *per_master.entry(server.port()).or_insert(0) += 1;
    }
    assert_eq!(
        per_master.values().copied().collect::<Vec<_>>(),
        [2, 2, 2],
        "six partitions, two on each master: {layout}"
    );
    walk_every_move(parts.clone(), ledger.clone()).await;
    // Every partition held some of the walk's jobs (it made dozens, each in a partition at
    // random), on its own master.
    for (server, tag) in &parts {
        let list = "return #redis.call('KEYS', ARGV[1])";
        let pattern = format!("{{{tag}}}:job:*");
        let found = server.command(&["EVAL", list, "0", &pattern]).unwrap();
        assert_ne!(found, ":0", "{tag} holds jobs");
    }
}

/// A new ledger on a cluster has [`reelq_queue::CLUSTER_PARTITIONS`] partitions unless its
/// client says, spread evenly over the masters (the first on those that do not serve the
/// home); one that holds jobs already keeps its one slot.
#[tokio::test]
async fn a_new_ledger_on_a_cluster_is_partitioned_evenly_by_default() {
    let cluster = RedisCluster::start().unwrap();
    let ledger = Ledger::connect(&reelq_queue::LedgerConfig::new(cluster.url(), "fresh"))
        .await
        .unwrap();
    assert_eq!(ledger.partitions(), reelq_queue::CLUSTER_PARTITIONS);
    let home = cluster.master_of("{fresh}:due").unwrap();
    let layout = cluster
        .node(home)
        .unwrap()
        .command_text(&["GET", "{fresh}:layout"])
        .unwrap();
    let mut per_master = std::collections::BTreeMap::new();
    for tag in layout.split(' ') {
        let master = cluster.master_of(&format!("{{{tag}}}:due")).unwrap();
        *per_master.entry(master).or_insert(0) += 1;
    }
    assert_eq!(per_master.len(), 3, "{layout}");
    let (fewest, most) = (per_master.values().min(), per_master.values().max());
    assert_eq!((fewest, most), (Some(&5), Some(&6)), "{per_master:?}");
    assert_eq!(
        per_master[&home], 5,
        "the home's master takes the last turns"
    );

    // A ledger written before its schema was recorded (jobs, no schema, no layout) keeps its
    // one slot.
    let old = cluster
        .node(cluster.master_of("{old}:due").unwrap())
        .unwrap();
    old.command(&["ZADD", "{old}:due", "1", "01KQGDBJ00ABCDEFGHJKMNPQRS"])
        .unwrap();
    let ledger = Ledger::connect(&reelq_queue::LedgerConfig::new(cluster.url(), "old"))
        .await
        .unwrap();
    assert_eq!(ledger.partitions(), 1);
    assert_eq!(
        ledger.schema().await.unwrap(),
        2,
        "read as the oldest records"
    );
}
