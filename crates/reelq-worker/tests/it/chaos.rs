//! Small chaos runs in the production shape: the promise holds, and most jobs are stored,
//! under worker kills, Redis host power losses (or a Sentinel failover), provider and
//! gateway faults and dropped callbacks; and a ledger that goes back in time (a stale
//! replica promoted, a primary booted from a cut AOF, a restored backup) is caught and
//! repaired with nothing paid twice.

use std::time::Duration;

use reelq_core::ProviderKind;
use reelq_e2e::{
    RedisSetup,
    chaos::{self, ChaosPlan, ChaosReport, RedisFault},
};

/// Runs `plan`, prints what survived, and checks the promise (nothing lost, nothing paid
/// twice, every object whole, at least 90 % stored).
async fn run_keeping_the_promise(plan: &ChaosPlan) -> ChaosReport {
    let report = chaos::run(env!("CARGO_BIN_EXE_reelq-worker").into(), plan)
        .await
        .unwrap();
    println!("{report}");
    assert!(report.kept_the_promise(), "{report}");
    report
}

fn plan(redis_setup: RedisSetup, redis_restarts: usize) -> ChaosPlan {
    ChaosPlan {
        jobs: 100,
        workers: 3,
        kill_every: Duration::from_millis(2000),
        redis_setup,
        redis_restarts,
        redis_fault: RedisFault::PowerLoss,
        providers: vec![ProviderKind::Kie, ProviderKind::Openai],
        route: None,
        gateway_faults: true,
        burst_every: Duration::from_millis(400),
        generation_time: Duration::from_millis(1500),
        timeout: Duration::from_secs(120),
        callback_drop_percent: 30,
        callback_duplicate_percent: 20,
    }
}

#[tokio::test]
async fn always_fsync_keeps_the_promise_through_power_losses_and_faults() {
    let plan = plan(RedisSetup::Always, 2);
    let report = run_keeping_the_promise(&plan).await;
    assert!(
        report.worker_kills > 0 && report.redis_restarts == 2 && report.fault_bursts > 0,
        "{report}"
    );
}

/// A run in which the primary's host loses power once and `redis_setup`'s failover (the
/// sentinels', or the cluster's own) promotes its replica.
async fn one_failover_run(redis_setup: RedisSetup) {
    one_fault_run(redis_setup, RedisFault::PowerLoss).await;
}

/// A run in which Redis suffers `fault` once (and the promise holds).
async fn one_fault_run(redis_setup: RedisSetup, fault: RedisFault) -> ChaosReport {
    let plan = ChaosPlan {
        redis_fault: fault,
        ..plan(redis_setup, 1)
    };
    let report = run_keeping_the_promise(&plan).await;
    assert!(report.redis_restarts == 1, "{report}");
    report
}

#[tokio::test]
async fn a_cluster_master_failover_loses_nothing_and_pays_once() {
    one_failover_run(RedisSetup::Cluster).await;
}

/// The same with the ledger's home on a master of its own (`home_slot = "own"`): the home's
/// master loses power mid-run, with the claims' takes (slots, reservations) and the moves'
/// home effects in flight on it.
#[tokio::test]
async fn a_failover_of_the_homes_own_master_loses_nothing_and_pays_once() {
    one_failover_run(RedisSetup::ClusterOwnHome).await;
}

/// The same layout, with the master holding the jobs (their records, schedules and history
/// marks) losing power while the home's master stays up.
#[tokio::test]
async fn a_failover_of_the_jobs_master_beside_its_home_loses_nothing_and_pays_once() {
    one_fault_run(RedisSetup::ClusterOwnHome, RedisFault::PowerLossOfJobs).await;
}

/// The ledger's jobs in six partitions, two on each master (`partitions = 6`), enqueued as
/// batches of ten: the home's master, which also holds two partitions, loses power mid-run.
#[tokio::test]
async fn a_failover_of_the_home_and_two_partitions_loses_nothing_and_pays_once() {
    one_failover_run(RedisSetup::ClusterPartitioned).await;
}

/// The same layout, with a master holding two partitions and not the home losing power.
#[tokio::test]
async fn a_failover_of_two_partitions_master_loses_nothing_and_pays_once() {
    one_fault_run(RedisSetup::ClusterPartitioned, RedisFault::PowerLossOfJobs).await;
}

#[tokio::test]
async fn a_sentinel_failover_loses_nothing_and_pays_once() {
    one_failover_run(RedisSetup::Sentinel).await;
}

/// An operator moves the ledger's slot to another master mid-run (adding a master, or
/// rebalancing), key by key as Redis 7.0 does, while three workers are killed at random and
/// the gateway fails after accepting: the scripts wait out the move and nothing is lost or
/// paid twice.
#[tokio::test]
async fn a_slot_move_under_load_loses_nothing_and_pays_once() {
    let report = one_fault_run(RedisSetup::Cluster, RedisFault::SlotMove).await;
    assert!(report.keys_moved > report.enqueued as u64, "{report}");
}

/// The same with the jobs in six partitions (`partitions = 6`): the first partition's slot
/// moves to another master mid-run, the other partitions' scripts running on meanwhile.
#[tokio::test]
async fn a_partitions_slot_move_under_load_loses_nothing_and_pays_once() {
    let report = one_fault_run(RedisSetup::ClusterPartitioned, RedisFault::SlotMove).await;
    assert!(report.keys_moved > 0, "{report}");
}

/// Every job names the `kling-2.6` route (Kling's own API first, then fal, then Replicate),
/// while workers are killed, the primary's host loses power, gateways fail after accepting
/// and accounts run out of credits: jobs move on only from proven refusals, and no job is
/// paid twice at any of its candidates (the simulator counts creates per prompt).
#[tokio::test]
async fn routed_jobs_move_on_and_are_paid_once_through_kills_power_losses_and_faults() {
    let plan = ChaosPlan {
        route: Some("kling-2.6".into()),
        ..plan(RedisSetup::Always, 1)
    };
    let report = run_keeping_the_promise(&plan).await;
    assert!(
        report.fallbacks > 0 && report.worker_kills > 0 && report.redis_restarts == 1,
        "{report}"
    );
}

/// A run whose Redis goes back in time once, the workers running on (none killed: a killed
/// worker's memory of its creates goes with it), every callback delivered and no gateway
/// failing: what is not stored is so because of the rollback.
async fn rollback_run(
    redis_setup: RedisSetup,
    redis_fault: RedisFault,
    faults: usize,
) -> ChaosReport {
    let plan = ChaosPlan {
        jobs: 60,
        redis_fault,
        kill_every: Duration::from_secs(3600),
        gateway_faults: false,
        callback_drop_percent: 0,
        // Creates spread over about 12 s (15 in flight), so every fault lands mid-run.
        generation_time: Duration::from_secs(3),
        ..plan(redis_setup, faults)
    };
    let report = run_keeping_the_promise(&plan).await;
    assert_eq!(report.redis_restarts, faults, "{report}");
    assert!(report.rollbacks >= 1, "the rollback was declared: {report}");
    report
}

#[tokio::test]
async fn a_stale_replica_promoted_is_caught_and_nothing_is_paid_twice() {
    rollback_run(RedisSetup::Sentinel, RedisFault::StalePromotion, 1).await;
}

#[tokio::test]
async fn a_primary_booted_from_a_cut_aof_is_caught_and_nothing_is_paid_twice() {
    rollback_run(RedisSetup::Replica, RedisFault::PowerLoss, 1).await;
}

#[tokio::test]
async fn a_restored_backup_is_caught_and_nothing_is_paid_twice() {
    rollback_run(RedisSetup::Always, RedisFault::RestoreBackup, 2).await;
}
