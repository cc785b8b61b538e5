//! The ledger on a real Redis Cluster (three masters, a replica each, AOF on): found at the
//! master of its hash slot from any node, every kind of move made there, and a failover of
//! that master ridden through with nothing acknowledged lost.

use std::time::Duration;

use reelq_core::{ErrorClass, JobId, JobState};
use reelq_queue::{Durability, Ledger, LedgerConfig, LedgerSlot, Transition, TransitionOutcome};
use reelq_testkit::{EVENT_TIMEOUT, RedisCluster};

use crate::ledger::{LEASE, claim_and_begin, claim_one, spec};

/// A lease that runs out soon, so a step refused during the failover is claimed again soon.
const SHORT: Duration = Duration::from_secs(2);

/// Any key of the test ledger: they all share its hash slot.
const LEDGER_KEY: &str = "{test}:due";

async fn ledger_on(cluster: &RedisCluster) -> Ledger {
    let config = LedgerConfig {
        // Each durable write waits for the master's replica: a failover loses nothing.
        durability: Durability::Replicas { n: 1 },
        replica_wait: Duration::from_secs(2),
        partitions: 1,
        ..LedgerConfig::new(cluster.url(), "test")
    };
    Ledger::connect(&config)
        .await
        .expect("the ledger connects to the cluster")
}

/// Takes a queued job through submit, poll and fetch to `stored`, retrying a step while the
/// ledger reconnects (a failover in progress).
async fn run_to_stored(ledger: &Ledger, job_id: JobId) {
    tokio::time::timeout(EVENT_TIMEOUT, async {
        loop {
            match ledger.job(job_id).await {
                Ok(Some(record)) if record.state == JobState::Stored => return,
                Ok(Some(_)) => {}
                other => panic!("job {job_id}: {other:?}"),
            }
            let claim = ledger
                .claim(&crate::ledger::claim_opts("w", 1, SHORT))
                .await;
            let leases = claim.map(|claim| claim.leases).unwrap_or_default();
            if leases.is_empty() {
                // Nothing due yet (a lease given up runs out first), or a reconnect.
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            for lease in leases {
                let step = match lease.state() {
                    JobState::Queued => {
                        let begin = Transition::BeginSubmit {
                            lease: SHORT,
                            callback_token_hash: None,
                        };
                        if ledger.transition(&lease, begin).await.ok()
                            != Some(TransitionOutcome::Applied)
                        {
                            continue;
                        }
                        let submitted = Transition::Submitted {
                            task_id: format!("task-{}", lease.job_id()),
                            first_poll: Duration::ZERO,
                        };
                        let _ = ledger.transition(&lease, submitted).await;
                        continue;
                    }
                    _ => Transition::Stored {
                        object_key: format!("{}.mp4", lease.job_id()),
                        bytes: 1000,
                        sha256: "ab".repeat(32),
                        video: "h264 1280x720 10.0 s 24 fps".into(),
                        thumbnail_key: None,
                        polls: None,
                    },
                };
                let _ = ledger.transition(&lease, step).await;
            }
        }
    })
    .await
    .expect("the job is stored in time");
}

#[tokio::test]
async fn the_ledger_lives_on_the_master_of_its_slot_and_rides_out_its_failover() {
    let mut cluster = RedisCluster::start().unwrap();
    let ledger = ledger_on(&cluster).await;
    let first_master = cluster.master_of(LEDGER_KEY).unwrap();

    // What the ledger's scripts rely on (each begins `#!lua`): the master refuses at once a
    // script that touches a key outside the slot of the keys it declares.
    let master = redis::Client::open(format!("redis://127.0.0.1:{first_master}/")).unwrap();
    let mut master = master.get_multiplexed_async_connection().await.unwrap();
    let stray = redis::Script::new("#!lua\nreturn redis.call('GET', 'elsewhere')");
    let refused: redis::RedisResult<Option<String>> =
        stray.key(LEDGER_KEY).invoke_async(&mut master).await;
    let refused = refused.expect_err("a key of another slot is refused");
    assert!(refused.to_string().contains("slot"), "{refused}");
    assert_eq!(
        ledger.history_status().await.unwrap().rollbacks,
        0,
        "a fresh ledger"
    );

    // Jobs enqueued, one of them failed and one taken through its submit, on the cluster.
    let job_ids: Vec<JobId> = (0..6).map(|_| JobId::new()).collect();
    let jobs: Vec<_> = job_ids
        .iter()
        .map(|&id| (id, spec(&format!("cluster {id}"))))
        .collect();
    ledger.enqueue(None, &jobs).await.unwrap();
    let failed = claim_one(&ledger, "w", LEASE).await;
    let failure = Transition::Failed {
        class: ErrorClass::GenerationFailed,
        error: "no video".into(),
    };
    assert_eq!(
        ledger.transition(&failed, failure).await.unwrap(),
        TransitionOutcome::Applied
    );
    let submitting = claim_and_begin(&ledger, "w", 1, LEASE).await.remove(0);

    // The ledger's master dies; the cluster promotes its replica.
    let promoted = cluster.fail_master_of(LEDGER_KEY).unwrap();
    assert_ne!(promoted, first_master);
    // The first command finds the old socket dead; the next goes to the new master.
    if ledger.ping().await.is_err() {
        ledger
            .ping()
            .await
            .expect("the ledger finds the promoted master");
    }
    // Under `replicas:1` the new master, alone, cannot make a paid create durable: the
    // ledger refuses to begin one until a replica holds its writes again.
    let refused = claim_one(&ledger, "w", SHORT).await;
    let begin = Transition::BeginSubmit {
        lease: SHORT,
        callback_token_hash: None,
    };
    assert!(
        matches!(
            ledger.transition(&refused, begin).await,
            Err(reelq_queue::QueueError::NotDurable { .. })
        ),
        "no replica, no paid create"
    );
    // The old master comes back and rejoins as the new master's replica.
    cluster.restart_node(first_master).unwrap();

    // Nothing acknowledged was lost, and the rest of the jobs finish on the new master.
    assert_eq!(
        ledger.job(failed.job_id()).await.unwrap().map(|r| r.state),
        Some(JobState::Failed)
    );
    assert_eq!(
        ledger
            .job(submitting.job_id())
            .await
            .unwrap()
            .map(|r| r.state),
        Some(JobState::Submitting)
    );
    let others = [failed.job_id(), submitting.job_id(), refused.job_id()];
    for &job_id in &job_ids {
        if !others.contains(&job_id) {
            run_to_stored(&ledger, job_id).await;
        }
    }
    // The submit refused for want of a replica may or may not be on the master: it is
    // never handed out to submit again (its lease runs out into `uncertain`).
    let refused_now = ledger.job(refused.job_id()).await.unwrap().unwrap().state;
    assert!(
        matches!(refused_now, JobState::Submitting | JobState::Uncertain),
        "{refused_now}"
    );
    let stored = ledger
        .state_counts()
        .await
        .unwrap()
        .into_iter()
        .find(|(state, _)| *state == JobState::Stored)
        .map_or(0, |(_, n)| n);
    assert_eq!(stored, 3);
    assert_eq!(
        ledger.history_status().await.unwrap().rollbacks,
        0,
        "no acknowledged write was lost, so no rollback"
    );
}

#[tokio::test]
async fn a_manual_failover_moves_the_ledger_to_the_new_master() {
    let cluster = RedisCluster::start().unwrap();
    let ledger = ledger_on(&cluster).await;
    let job_id = JobId::new();
    ledger
        .enqueue(None, &[(job_id, spec("before the failover"))])
        .await
        .unwrap();

    // The old master stays up as a replica: the ledger's socket to it answers `MOVED`
    // (or `READONLY`), which must send the ledger to the new master, not leave it stuck.
    let old = cluster.master_of(LEDGER_KEY).unwrap();
    let new = cluster.manual_failover(LEDGER_KEY).unwrap();
    assert_ne!(old, new);
    let mut answered = None;
    for _ in 0..3 {
        if let Ok(record) = ledger.job(job_id).await {
            answered = record;
            break;
        }
    }
    assert_eq!(
        answered.map(|record| record.state),
        Some(JobState::Queued),
        "the job is read from the new master within a retry"
    );
    let next = JobId::new();
    ledger
        .enqueue(None, &[(next, spec("after the failover"))])
        .await
        .expect("writes go to the new master");
}

/// A move of the ledger's slot cut short right after it froze the ledger (the operator's
/// command killed): every script is refused, changing nothing, until the command runs again
/// and finishes the move; then the same ledger handle goes on at the new master.
#[tokio::test]
async fn a_slot_move_freezes_the_scripts_and_is_finished_by_running_it_again() {
    let cluster = RedisCluster::start().unwrap();
    let ledger = ledger_on(&cluster).await;
    let job_ids: Vec<JobId> = (0..4).map(|_| JobId::new()).collect();
    let jobs: Vec<_> = job_ids
        .iter()
        .map(|&id| (id, spec(&format!("moving {id}"))))
        .collect();
    ledger.enqueue(None, &jobs).await.unwrap();
    let held = claim_one(&ledger, "w", SHORT).await;
    let before = ledger.job(held.job_id()).await.unwrap().unwrap();

    // Frozen, as the move leaves the ledger when it is killed after its first step.
    let from = cluster.master_of(LEDGER_KEY).unwrap();
    let master = redis::Client::open(format!("redis://127.0.0.1:{from}/")).unwrap();
    let mut master = master.get_multiplexed_async_connection().await.unwrap();
    let _: () = redis::cmd("SET")
        .arg("{test}:moving")
        .arg("target")
        .query_async(&mut master)
        .await
        .unwrap();
    let refused = ledger
        .claim(&crate::ledger::claim_opts("w", 4, LEASE))
        .await;
    let refused = refused.expect_err("no claim while the slot moves");
    assert!(
        refused.is_retryable() && refused.to_string().contains("MOVING"),
        "{refused}"
    );
    let begin = Transition::BeginSubmit {
        lease: LEASE,
        callback_token_hash: None,
    };
    assert!(ledger.transition(&held, begin).await.is_err());
    let late = JobId::new();
    assert!(ledger.enqueue(None, &[(late, spec("late"))]).await.is_err());
    assert_eq!(
        ledger
            .job(held.job_id())
            .await
            .unwrap()
            .map(|r| (r.state, r.updated_ms, r.submits)),
        Some((JobState::Queued, before.updated_ms, 0)),
        "a refused script changed nothing"
    );

    // The operator runs the move again: it goes to another master and unfreezes there.
    let to = cluster
        .nodes
        .iter()
        .map(|node| node.port())
        .find(|&port| {
            port != from
                && cluster.nodes.iter().any(|node| {
                    node.port() == port
                        && node
                            .command_text(&["INFO", "replication"])
                            .unwrap()
                            .contains("role:master")
                })
        })
        .unwrap();
    let config = LedgerConfig {
        durability: Durability::Replicas { n: 1 },
        partitions: 1,
        ..LedgerConfig::new(cluster.url(), "test")
    };
    let moved =
        reelq_queue::move_ledger_slot(&config, LedgerSlot::Home, &format!("127.0.0.1:{to}"))
            .await
            .unwrap();
    assert!(moved.keys_moved >= 4, "{moved:?}");
    assert_eq!(cluster.master_of(LEDGER_KEY).unwrap(), to);
    let dbsize: u64 = redis::cmd("DBSIZE").query_async(&mut master).await.unwrap();
    assert_eq!(dbsize, 0, "nothing of the ledger is left on the old master");
    // A target that is no master, and a ledger not on a cluster, are refused before anything
    // moves.
    let replica = cluster
        .nodes
        .iter()
        .find(|node| {
            node.command_text(&["INFO", "replication"])
                .unwrap()
                .contains("role:slave")
        })
        .map(|node| node.port())
        .unwrap();
    let refused =
        reelq_queue::move_ledger_slot(&config, LedgerSlot::Home, &format!("127.0.0.1:{replica}"))
            .await
            .unwrap_err();
    assert!(
        refused.to_string().contains("not an online master"),
        "{refused}"
    );
    let single = LedgerConfig::new("redis://127.0.0.1:1/", "test");
    let refused = reelq_queue::move_ledger_slot(&single, LedgerSlot::Home, "127.0.0.1:1")
        .await
        .unwrap_err();
    assert!(
        refused.to_string().contains("not on a Redis Cluster"),
        "{refused}"
    );

    // The same handle: its socket answers MOVED once, then it is at the new master.
    if ledger.job(late).await.is_err() {
        ledger.job(late).await.expect("read from the new master");
    }
    for &job_id in &job_ids {
        run_to_stored(&ledger, job_id).await;
    }
    assert!(
        ledger.job(late).await.unwrap().is_none(),
        "the refused enqueue wrote nothing"
    );
}

/// Reads of every partition go one pipeline per master (two partitions on each here); when a
/// partition's slot moves to another master, a reader that never used that partition's
/// connection otherwise finds it there by its next read, and counts it whole.
#[tokio::test]
async fn a_reader_finds_a_partitions_slot_on_its_new_master() {
    let cluster = RedisCluster::start().unwrap();
    let config = LedgerConfig {
        partitions: 6,
        durability: Durability::Replicas { n: 1 },
        ..LedgerConfig::new(cluster.url(), "moving")
    };
    let writer = Ledger::connect(&config).await.unwrap();
    for n in 0..12 {
        let id = writer.new_ids(1, None).1[0];
        writer
            .enqueue(None, &[(id, spec(&format!("read {n}")))])
            .await
            .unwrap();
    }
    let reader = Ledger::connect(&config).await.unwrap();
    let queued = |counts: Vec<(JobState, u64)>| {
        counts
            .into_iter()
            .find(|(state, _)| *state == JobState::Queued)
            .map(|(_, n)| n)
    };
    assert_eq!(queued(reader.state_counts().await.unwrap()), Some(12));

    let layout = cluster
        .node(cluster.master_of("{moving}:due").unwrap())
        .unwrap()
        .command_text(&["GET", "{moving}:layout"])
        .unwrap();
    // The fourth partition shares its master with the first, which comes before it there:
    // the reader's pipeline to that master goes on the first's connection.
    let tags: Vec<&str> = layout.split(' ').collect();
    for tag in &tags {
        eprintln!(
            "DEBUG {tag} {}",
            cluster.master_of(&format!("{{{tag}}}:due")).unwrap()
        );
    }
    eprintln!("DEBUG home {}", cluster.master_of("{moving}:due").unwrap());
    let moved = format!("{{{}}}:due", tags[3]);
    let from = cluster.master_of(&moved).unwrap();
    assert_eq!(
        cluster.master_of(&format!("{{{}}}:due", tags[0])).unwrap(),
        from
    );
    let to = cluster
        .nodes
        .iter()
        .filter(|node| {
            node.command_text(&["INFO", "replication"])
                .unwrap()
                .contains("role:master")
        })
        .map(|node| node.port())
        .find(|&port| port != from)
        .unwrap();
    let report = reelq_queue::move_ledger_slot(
        &config,
        LedgerSlot::Partition(3),
        &format!("127.0.0.1:{to}"),
    )
    .await
    .unwrap();
    assert!(report.keys_moved > 0, "{report:?}");

    // The first reads after the move meet the old master's `MOVED` (and the cluster's nodes
    // agree on the slot's new master a moment later); then the reader counts every job again.
    let mut tick = tokio::time::interval(Duration::from_millis(50));
    let found = tokio::time::timeout(EVENT_TIMEOUT, async {
        loop {
            tick.tick().await;
            if let Ok(counts) = reader.state_counts().await
                && queued(counts) == Some(12)
            {
                return;
            }
        }
    })
    .await;
    assert!(found.is_ok(), "the reader never found the moved partition");
}
