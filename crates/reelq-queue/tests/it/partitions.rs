//! A ledger of several partitions on one Redis (`LedgerConfig::partitions`): each enqueue in
//! one partition, claims going round them, reads merging them, a tenant's cap on jobs
//! waiting counted over them all.

use std::time::Duration;

use reelq_core::{BatchId, BatchOptions, JobId, JobSpec, JobState, TenantName};
use reelq_queue::{Enqueued, Idempotency, Ledger, LedgerConfig, QueueError, TenantLimits};
use reelq_testkit::RedisServer;

use crate::ledger::{LEASE, claim_opts, spec};

const PARTITIONS: u16 = 4;

async fn partitioned(redis: &RedisServer) -> Ledger {
    let config = LedgerConfig {
        partitions: PARTITIONS,
        ..LedgerConfig::new(redis.url(), "parts")
    };
    let ledger = Ledger::connect(&config).await.expect("ledger connects");
    assert_eq!(ledger.partitions(), PARTITIONS);
    ledger
}

/// `n` jobs of `partition`, as one batch.
async fn batch_in(ledger: &Ledger, partition: u16, n: usize, prompt: &str) -> Vec<JobId> {
    let jobs: Vec<(JobId, JobSpec)> = (0..n)
        .map(|i| {
            let id = JobId::new_in(partition, PARTITIONS);
            (id, spec(&format!("{prompt} {i}")))
        })
        .collect();
    let batch = BatchId::new_in(partition, PARTITIONS);
    ledger
        .enqueue(Some((batch, &BatchOptions::default())), &jobs)
        .await
        .unwrap();
    jobs.into_iter().map(|(id, _)| id).collect()
}

/// A batch of `n` jobs enqueued at most once under `key` (the same request each time), with
/// ids made afresh for the key: the batch's id and what the enqueue did.
async fn enqueue_once(ledger: &Ledger, key: &str, n: usize) -> (BatchId, Enqueued) {
    let (batch, ids) = ledger.new_ids(n, Some(key));
    let jobs: Vec<(JobId, JobSpec)> = ids.iter().map(|id| (*id, spec("again"))).collect();
    let receipt = batch.to_string();
    let once = Idempotency {
        key,
        ttl: Duration::from_secs(60),
        digest: "the same request",
        receipt: &receipt,
    };
    let options = BatchOptions::default();
    let enqueued = ledger
        .enqueue_once(Some((batch, &options)), &jobs, Some(once), &|_| {})
        .await
        .unwrap();
    (batch, enqueued)
}

/// A big batch in one partition fills every claim by itself, and a job alone in another is
/// claimed within one round of the partitions, whichever partition the claims start at.
#[tokio::test]
async fn a_busy_partition_fills_claims_without_starving_a_quiet_one() {
    let redis = RedisServer::start().unwrap();
    let ledger = partitioned(&redis).await;
    batch_in(&ledger, 0, 200, "busy").await;
    let quiet = batch_in(&ledger, 2, 1, "quiet").await[0];

    let mut claims = Vec::new();
    for _ in 0..PARTITIONS {
        claims.push(
            ledger
                .claim(&claim_opts("w", 8, LEASE))
                .await
                .unwrap()
                .leases,
        );
    }
    assert!(
        claims.iter().all(|leases| leases.len() == 8),
        "every claim full"
    );
    let found = claims
        .iter()
        .position(|leases| leases.iter().any(|lease| lease.job_id() == quiet));
    assert!(found.is_some(), "the quiet job within one round");

    // Alone, the busy partition still fills every claim.
    let mut claimed = 8 * usize::from(PARTITIONS) - 1;
    while claimed < 200 {
        let leases = ledger
            .claim(&claim_opts("w", 8, LEASE))
            .await
            .unwrap()
            .leases;
        assert_eq!(leases.len(), 8.min(200 - claimed));
        claimed += leases.len();
    }
    let empty = ledger.claim(&claim_opts("w", 8, LEASE)).await.unwrap();
    assert!(empty.leases.is_empty());
}

/// One enqueue writes to one partition: ids that name two are refused, nothing written.
#[tokio::test]
async fn an_enqueue_whose_ids_name_two_partitions_is_refused_whole() {
    let redis = RedisServer::start().unwrap();
    let ledger = partitioned(&redis).await;
    let (first, second) = (JobId::new_in(1, PARTITIONS), JobId::new_in(3, PARTITIONS));
    let refused = ledger
        .enqueue(None, &[(first, spec("one")), (second, spec("two"))])
        .await
        .unwrap_err();
    assert!(
        matches!(&refused, QueueError::Partition { id, partitions: PARTITIONS } if *id == second.to_string()),
        "{refused}"
    );
    assert!(
        ledger.job(first).await.unwrap().is_none(),
        "nothing written"
    );
    // A batch's jobs go where its id says.
    let batch = BatchId::new_in(0, PARTITIONS);
    let refused = ledger
        .enqueue(
            Some((batch, &BatchOptions::default())),
            &[(first, spec("one"))],
        )
        .await;
    assert!(matches!(refused, Err(QueueError::Partition { .. })));
}

/// A replay under an idempotency key, with ids made afresh for the same key, finds the first
/// call's record in the key's partition.
#[tokio::test]
async fn an_idempotent_enqueue_is_replayed_from_its_keys_partition() {
    let redis = RedisServer::start().unwrap();
    let ledger = partitioned(&redis).await;
    let mut receipts = Vec::new();
    for _ in 0..2 {
        receipts.push(enqueue_once(&ledger, "api:retry-me", 3).await);
    }
    assert_eq!(receipts[0].1, Enqueued::New);
    assert_eq!(receipts[1].1, Enqueued::Replayed(receipts[0].0.to_string()));
    let counts = ledger.state_counts().await.unwrap();
    let queued = counts.iter().find(|(state, _)| *state == JobState::Queued);
    assert_eq!(queued.map(|(_, n)| *n), Some(3), "enqueued once");
}

/// Counts, listings and batches read every partition, newest first over them all.
#[tokio::test]
async fn reads_merge_every_partition() {
    let redis = RedisServer::start().unwrap();
    let ledger = partitioned(&redis).await;
    let mut batches = Vec::new();
    let mut all = Vec::new();
    for partition in 0..PARTITIONS {
        let jobs = batch_in(&ledger, partition, 3, "read").await;
        all.extend(jobs);
        batches.push(ledger.job(all[all.len() - 1]).await.unwrap().unwrap());
    }
    let counts = ledger.state_counts().await.unwrap();
    let queued = counts.iter().find(|(state, _)| *state == JobState::Queued);
    assert_eq!(queued.map(|(_, n)| *n), Some(12));
    let records = ledger.jobs(&all).await.unwrap();
    let ids: Vec<JobId> = records.iter().map(|record| record.job_id).collect();
    assert_eq!(ids, all, "in the order asked, from every partition");
    let recent = ledger.recent_batches(10).await.unwrap();
    assert_eq!(recent.len(), usize::from(PARTITIONS));
    let mut newest = Vec::new();
    for record in &batches {
        let batch = record.batch.expect("in a batch");
        let info = ledger.batch_info(batch).await.unwrap().expect("a batch");
        newest.push((info.created_ms, batch));
    }
    newest.sort_by(|a, b| b.cmp(a));
    let newest: Vec<BatchId> = newest.into_iter().map(|(_, batch)| batch).collect();
    assert_eq!(recent, newest, "newest first over the partitions");
    let mut page = ledger
        .jobs_page(&[JobState::Queued], None, 5)
        .await
        .unwrap();
    let rest = ledger
        .jobs_page(&[JobState::Queued], page.last().copied(), 100)
        .await
        .unwrap();
    page.extend(rest);
    assert_eq!(page.len(), 12, "two pages hold every job once");
    assert!(
        page.windows(2).all(|pair| pair[0] > pair[1]),
        "newest first"
    );
}

/// A tenant's cap on jobs waiting holds over the partitions: its jobs waiting in the others
/// count.
#[tokio::test]
async fn a_tenants_cap_on_jobs_waiting_counts_every_partition() {
    let redis = RedisServer::start().unwrap();
    let ledger = partitioned(&redis).await;
    let tenant: TenantName = "capped".parse().unwrap();
    let caps = TenantLimits {
        max_waiting: Some(3),
        ..TenantLimits::default()
    };
    ledger.set_tenant_limits(&tenant, caps).await.unwrap();
    let two_in = |partition: u16| {
        let tenant = tenant.clone();
        (0..2)
            .map(|i| {
                let mut spec = spec(&format!("capped {partition} {i}"));
                spec.tenant = Some(tenant.clone());
                (JobId::new_in(partition, PARTITIONS), spec)
            })
            .collect::<Vec<_>>()
    };
    ledger.enqueue(None, &two_in(0)).await.unwrap();
    let refused = ledger.enqueue(None, &two_in(1)).await.unwrap_err();
    assert!(
        matches!(
            &refused,
            QueueError::TenantBacklog {
                waiting: 2,
                max: 3,
                ..
            }
        ),
        "{refused}"
    );
}

/// A request first made before the ledger was partitioned is answered from the legacy
/// partition when it is made again (within its key's day), not enqueued a second time; and a
/// batch made before is still one, acted on where it is.
#[tokio::test]
async fn a_request_from_before_partitioning_replays_and_its_batch_stays_whole() {
    let redis = RedisServer::start().unwrap();
    let config = LedgerConfig::new(redis.url(), "grown");
    let one_slot = Ledger::connect(&config).await.unwrap();
    let (first, enqueued) = enqueue_once(&one_slot, "api:overnight", 2).await;
    assert_eq!(enqueued, Enqueued::New);

    reelq_queue::partition_ledger(&config, PARTITIONS)
        .await
        .unwrap();
    let ledger = Ledger::connect(&config).await.unwrap();
    let (_, replayed) = enqueue_once(&ledger, "api:overnight", 2).await;
    assert_eq!(replayed, Enqueued::Replayed(first.to_string()));
    let counts = ledger.state_counts().await.unwrap();
    let queued = counts.iter().find(|(state, _)| *state == JobState::Queued);
    assert_eq!(queued.map(|(_, n)| *n), Some(2), "enqueued once");
    assert_eq!(ledger.batch_jobs(first).await.unwrap().len(), 2);
    assert_eq!(ledger.cancel_batch(first).await.unwrap(), Some(2));
}
