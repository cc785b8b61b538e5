//! The ledger's side of archiving, on a real Redis: one archiver at a time, candidates by
//! grace, and a removal that takes out only what did not change since it was read.

use std::time::Duration;

use reelq_core::{ErrorClass, JobId, JobState};
use reelq_queue::{ArchiveGrace, Ledger, QueueError, Removed, Transition};
use reelq_testkit::RedisServer;

use crate::ledger::{LEASE, claim_one, layouts, ledger, state_of, submit_one};

const NO_GRACE: ArchiveGrace = ArchiveGrace::NONE;

/// A job taken to `failed` (a poll's generation failed).
async fn failed_job(ledger: &Ledger, prompt: &str) -> JobId {
    let job_id = submit_one(ledger, prompt, &format!("t-{prompt}"), Duration::ZERO).await;
    let lease = claim_one(ledger, "w1", LEASE).await;
    let failed = Transition::Failed {
        class: ErrorClass::GenerationFailed,
        error: "no video".into(),
    };
    ledger.transition(&lease, failed).await.unwrap();
    job_id
}

async fn keys(redis: &RedisServer, pattern: &str) -> Vec<String> {
    let client = redis::Client::open(redis.url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    redis::cmd("KEYS")
        .arg(pattern)
        .query_async(&mut conn)
        .await
        .unwrap()
}

#[tokio::test]
async fn one_archiver_at_a_time_and_a_lost_lease_removes_nothing() {
    let redis = RedisServer::start().unwrap();
    let ledger = ledger(&redis).await;
    let job_id = failed_job(&ledger, "a").await;

    let short = Duration::from_millis(300);
    let first = ledger.take_archive_lease(short).await.unwrap().unwrap();
    assert!(ledger.take_archive_lease(short).await.unwrap().is_none());
    let read = ledger
        .archive_candidates(&first, NO_GRACE, 100)
        .await
        .unwrap();
    assert_eq!(read.len(), 1);
    assert_eq!(read[0].job.record.state, JobState::Failed);
    assert!(
        read[0].job.events.iter().any(|e| e.contains("failed")),
        "{:?}",
        read[0].job.events
    );

    // The first archiver stalls past its lease; another takes it.
    let second = loop {
        if let Some(lease) = ledger.take_archive_lease(LEASE).await.unwrap() {
            break lease;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let refused = ledger.remove_archived(&first, &read).await;
    assert!(
        matches!(refused, Err(QueueError::ArchiveLeaseLost)),
        "{refused:?}"
    );
    assert_eq!(state_of(&ledger, job_id).await, JobState::Failed);

    let removed = ledger.remove_archived(&second, &read).await.unwrap();
    assert_eq!(
        removed,
        Removed {
            removed: 1,
            kept: 0
        }
    );
    assert!(ledger.job(job_id).await.unwrap().is_none());
    assert!(keys(&redis, "{test}:job:*").await.is_empty());
    assert_eq!(
        ledger
            .state_counts()
            .await
            .unwrap()
            .iter()
            .map(|(_, n)| n)
            .sum::<u64>(),
        0,
        "no state index keeps it"
    );
}

#[tokio::test]
async fn a_job_is_a_candidate_only_past_its_grace_and_failed_jobs_wait_longer() {
    let redis = RedisServer::start().unwrap();
    let ledger = ledger(&redis).await;
    let failed = failed_job(&ledger, "f").await;
    let cancelled = JobId::new();
    ledger
        .enqueue(None, &[(cancelled, crate::ledger::spec("c"))])
        .await
        .unwrap();
    ledger.cancel_job(cancelled).await.unwrap();
    let queued = JobId::new();
    ledger
        .enqueue(None, &[(queued, crate::ledger::spec("q"))])
        .await
        .unwrap();

    let lease = ledger.take_archive_lease(LEASE).await.unwrap().unwrap();
    let ids = |grace| {
        let ledger = ledger.clone();
        let lease = &lease;
        async move {
            let mut ids: Vec<JobId> = ledger
                .archive_candidates(lease, grace, 100)
                .await
                .unwrap()
                .iter()
                .map(|candidate| candidate.job_id())
                .collect();
            ids.sort();
            ids
        }
    };
    let hour = Duration::from_secs(3600);
    assert_eq!(
        ids(ArchiveGrace {
            ended: hour,
            failed: hour
        })
        .await,
        []
    );
    assert_eq!(
        ids(ArchiveGrace {
            ended: Duration::ZERO,
            failed: hour
        })
        .await,
        [cancelled]
    );
    let mut both = vec![failed, cancelled];
    both.sort();
    assert_eq!(ids(NO_GRACE).await, both, "a queued job is never one");
}

#[tokio::test]
async fn a_job_retried_after_it_was_read_stays_in_redis() {
    let redis = RedisServer::start().unwrap();
    for ledger in layouts(&redis).await {
        let retried = failed_job(&ledger, "retried").await;
        let untouched = failed_job(&ledger, "untouched").await;
        // Each partition has its archiver's lease: one archiver holds them all here.
        let mut passes = Vec::new();
        for _ in 0..ledger.partitions() {
            let lease = ledger.take_archive_lease(LEASE).await.unwrap().unwrap();
            let read = ledger
                .archive_candidates(&lease, NO_GRACE, 100)
                .await
                .unwrap();
            passes.push((lease, read));
        }
        assert!(ledger.take_archive_lease(LEASE).await.unwrap().is_none());
        assert_eq!(passes.iter().map(|(_, read)| read.len()).sum::<usize>(), 2);

        // An operator retries one while its segment is being written.
        assert!(ledger.retry_failed(retried).await.unwrap());
        let mut removed = Removed::default();
        for (lease, read) in &passes {
            let one = ledger.remove_archived(lease, read).await.unwrap();
            removed.removed += one.removed;
            removed.kept += one.kept;
        }

        assert_eq!(
            removed,
            Removed {
                removed: 1,
                kept: 1
            }
        );
        assert!(ledger.job(untouched).await.unwrap().is_none());
        assert_ne!(state_of(&ledger, retried).await, JobState::Failed);
        for (lease, _) in &passes {
            assert!(
                ledger
                    .archive_candidates(lease, NO_GRACE, 100)
                    .await
                    .unwrap()
                    .is_empty(),
                "the retried job runs again; it is archived once it ends"
            );
        }
    }
}

#[tokio::test]
async fn a_pass_is_recorded_for_stats_and_a_failure_until_a_good_pass() {
    let redis = RedisServer::start().unwrap();
    let ledger = ledger(&redis).await;
    ledger.record_archive_pass(Ok((5, 1))).await.unwrap();
    ledger
        .record_archive_pass(Err("store: connection refused"))
        .await
        .unwrap();
    let failing = ledger.archive_status().await.unwrap();
    let since = failing.failing_since_ms.expect("failing");
    ledger.record_archive_pass(Err("again")).await.unwrap();
    let still = ledger.archive_status().await.unwrap();
    assert_eq!(
        still.failing_since_ms,
        Some(since),
        "since the first failure"
    );
    assert_eq!(still.error.as_deref(), Some("again"));

    ledger.record_archive_pass(Ok((3, 1))).await.unwrap();
    let status = ledger.archive_status().await.unwrap();
    assert_eq!((status.archived, status.segments), (8, 2));
    assert_eq!((status.failing_since_ms, status.error), (None, None));
}

#[tokio::test]
async fn jobs_whose_webhook_is_pending_are_passed_over_not_waited_behind() {
    let redis = RedisServer::start().unwrap();
    let ledger = ledger(&redis).await;
    let mut notified = Vec::new();
    for n in 0..3 {
        let job_id = JobId::new();
        let spec = reelq_core::JobSpec {
            notify_url: Some("https://hooks.example.com/reelq".into()),
            ..crate::ledger::spec(&format!("notified {n}"))
        };
        ledger.enqueue(None, &[(job_id, spec)]).await.unwrap();
        ledger.cancel_job(job_id).await.unwrap();
        notified.push(job_id);
    }
    let plain = JobId::new();
    ledger
        .enqueue(None, &[(plain, crate::ledger::spec("plain"))])
        .await
        .unwrap();
    ledger.cancel_job(plain).await.unwrap();

    let lease = ledger.take_archive_lease(LEASE).await.unwrap().unwrap();
    let read = ledger
        .archive_candidates(&lease, NO_GRACE, 1)
        .await
        .unwrap();
    let ids: Vec<JobId> = read.iter().map(|c| c.job_id()).collect();
    assert_eq!(
        ids,
        [plain],
        "the three ended first, their webhooks pending"
    );
}

#[tokio::test]
async fn a_full_redis_still_lets_the_archiver_free_memory() {
    let redis = RedisServer::start().unwrap();
    let ledger = ledger(&redis).await;
    let job_id = failed_job(&ledger, "on a full redis").await;
    // Full: with `noeviction`, every write that could grow memory is refused from here on.
    redis.config_set("maxmemory", "1").unwrap();
    assert!(
        redis
            .command(&["SET", "{test}:probe", "1"])
            .unwrap()
            .starts_with("-OOM"),
        "the server refuses plain writes"
    );

    let lease = ledger.take_archive_lease(LEASE).await.unwrap().unwrap();
    let read = ledger
        .archive_candidates(&lease, NO_GRACE, 100)
        .await
        .unwrap();
    let removed = ledger.remove_archived(&lease, &read).await.unwrap();
    ledger.release_archive_lease(lease).await.unwrap();

    assert_eq!(removed.removed, 1);
    redis.config_set("maxmemory", "0").unwrap();
    assert!(ledger.job(job_id).await.unwrap().is_none());
}
