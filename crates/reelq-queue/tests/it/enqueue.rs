//! Large batches, all or none, and idempotency keys bound to their request.

use std::{sync::Mutex, time::Duration};

use reelq_core::{BatchId, BatchOptions, JobId, JobSpec};
use reelq_queue::{ENQUEUE_CHUNK, EnqueueProgress, Enqueued, Idempotency, Ledger, QueueError};
use reelq_testkit::RedisServer;

use crate::ledger::{ledger, spec};

/// More than two chunks, so staging, commit and a multi-chunk release all happen.
const LARGE: usize = 2 * ENQUEUE_CHUNK + 500;

fn jobs(n: usize, prompt: &str) -> Vec<(JobId, JobSpec)> {
    (0..n)
        .map(|i| (JobId::new(), spec(&format!("{prompt} {i}"))))
        .collect()
}

fn once<'a>(key: &'a str, digest: &'a str) -> Idempotency<'a> {
    Idempotency {
        key,
        ttl: Duration::from_secs(600),
        digest,
        receipt: "first",
    }
}

/// Jobs a worker could claim now (fresh ones wait in their tenant's queue), and jobs
/// recorded at all.
async fn counts(redis: &RedisServer) -> (u64, u64) {
    (
        integer(redis, &["ZCARD", "{test}:due"])
            + integer(redis, &["ZCARD", "{test}:queued:default"]),
        integer(redis, &["ZCARD", "{test}:state:queued"]),
    )
}

fn integer(redis: &RedisServer, command: &[&str]) -> u64 {
    let reply = redis.command(command).unwrap();
    reply
        .trim_start_matches(':')
        .parse()
        .unwrap_or_else(|_| panic!("{reply}"))
}

/// Runs an enqueue until `stop_at` says so from its progress, then drops it mid-way: a
/// producer that died there.
async fn cut_short(
    ledger: &Ledger,
    batch: BatchId,
    jobs: &[(JobId, JobSpec)],
    idempotency: Idempotency<'_>,
    stop_at: fn(EnqueueProgress) -> bool,
) {
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let stop = Mutex::new(Some(stop));
    let progress = |step| {
        if stop_at(step)
            && let Some(stop) = stop.lock().unwrap().take()
        {
            let _ = stop.send(());
        }
    };
    let options = BatchOptions::default();
    tokio::select! {
        done = ledger.enqueue_once(Some((batch, &options)), jobs, Some(idempotency), &progress) => {
            panic!("the enqueue was meant to be cut short, it ended: {done:?}")
        }
        _ = stopped => {}
    }
}

#[tokio::test]
async fn a_large_batch_is_queued_whole_in_chunks() {
    let redis = RedisServer::start().unwrap();
    let ledger = ledger(&redis).await;
    let batch = BatchId::new();
    let jobs = jobs(LARGE, "large");
    let steps = Mutex::new(Vec::new());
    let progress = |step| steps.lock().unwrap().push(step);

    let enqueued = ledger
        .enqueue_once(
            Some((batch, &BatchOptions::default())),
            &jobs,
            None,
            &progress,
        )
        .await
        .unwrap();

    assert_eq!(enqueued, Enqueued::New);
    assert_eq!(counts(&redis).await, (LARGE as u64, LARGE as u64));
    let listed = ledger.batch_jobs(batch).await.unwrap();
    let ids: Vec<JobId> = jobs.iter().map(|(id, _)| *id).collect();
    assert_eq!(listed, ids, "in manifest order");
    let steps = steps.into_inner().unwrap();
    assert_eq!(steps.last(), Some(&EnqueueProgress::Queued(LARGE)));
    let n_releases = steps
        .iter()
        .filter(|s| matches!(s, EnqueueProgress::Queued(_)))
        .count();
    assert_eq!(
        n_releases,
        LARGE.div_ceil(ENQUEUE_CHUNK),
        "one script per chunk"
    );
    assert_eq!(
        integer(&redis, &["EXISTS", &format!("{{test}}:stage:{batch}")]),
        0
    );
}

#[tokio::test]
async fn a_producer_dying_while_staging_leaves_nothing_claimable_and_its_retry_enqueues_once() {
    let redis = RedisServer::start().unwrap();
    let ledger = ledger(&redis).await;
    let jobs = jobs(LARGE, "staged");
    cut_short(&ledger, BatchId::new(), &jobs, once("k", "d1"), |step| {
        matches!(step, EnqueueProgress::Staged(_))
    })
    .await;
    assert_eq!(
        counts(&redis).await,
        (0, 0),
        "nothing claimable, nothing queued"
    );

    // The retry (a new process: new ids, the same key and request) enqueues it all, once.
    let retry_batch = BatchId::new();
    let retry = self::jobs(LARGE, "staged");
    let enqueued = ledger
        .enqueue_once(
            Some((retry_batch, &BatchOptions::default())),
            &retry,
            Some(once("k", "d1")),
            &|_| {},
        )
        .await
        .unwrap();
    assert_eq!(enqueued, Enqueued::New);
    assert_eq!(counts(&redis).await, (LARGE as u64, LARGE as u64));
    assert_eq!(ledger.batch_jobs(retry_batch).await.unwrap().len(), LARGE);
}

#[tokio::test]
async fn a_batch_committed_before_its_producer_died_is_finished_by_the_replay_or_the_sweep() {
    let redis = RedisServer::start().unwrap();
    let ledger = ledger(&redis).await;
    let first = BatchId::new();
    cut_short(&ledger, first, &jobs(LARGE, "a"), once("a", "da"), |step| {
        step == EnqueueProgress::Queued(ENQUEUE_CHUNK)
    })
    .await;
    let (due, _) = counts(&redis).await;
    assert!(
        (ENQUEUE_CHUNK as u64..LARGE as u64).contains(&due),
        "{due} queued so far"
    );

    // Its replay finishes it and answers the first receipt.
    let replay = ledger
        .enqueue_once(
            Some((BatchId::new(), &BatchOptions::default())),
            &jobs(LARGE, "a"),
            Some(once("a", "da")),
            &|_| {},
        )
        .await
        .unwrap();
    assert_eq!(replay, Enqueued::Replayed("first".into()));
    assert_eq!(
        ledger.release_batch(first, &|_| {}).await.unwrap(),
        0,
        "nothing left"
    );
    assert_eq!(counts(&redis).await, (LARGE as u64, LARGE as u64));

    // Without a replay, a worker's sweep finishes it.
    let second = BatchId::new();
    cut_short(
        &ledger,
        second,
        &jobs(LARGE, "b"),
        once("b", "db"),
        |step| step == EnqueueProgress::Queued(ENQUEUE_CHUNK),
    )
    .await;
    let queued = ledger.release_committed(Duration::ZERO).await.unwrap();
    assert!(queued > 0 && queued < LARGE, "{queued}");
    assert_eq!(counts(&redis).await, (2 * LARGE as u64, 2 * LARGE as u64));
    assert_eq!(ledger.batch_jobs(second).await.unwrap().len(), LARGE);
}

#[tokio::test]
async fn an_idempotency_key_answers_only_its_own_request() {
    let redis = RedisServer::start().unwrap();
    let ledger = ledger(&redis).await;
    for n_jobs in [1, LARGE] {
        let key = format!("key-{n_jobs}");
        let options = &BatchOptions::default();
        let enqueue = |digest: &'static str| {
            let jobs = jobs(n_jobs, digest);
            let key = key.clone();
            let ledger = ledger.clone();
            async move {
                ledger
                    .enqueue_once(
                        Some((BatchId::new(), options)),
                        &jobs,
                        Some(once(&key, digest)),
                        &|_| {},
                    )
                    .await
            }
        };
        assert_eq!(enqueue("same").await.unwrap(), Enqueued::New);
        assert_eq!(
            enqueue("same").await.unwrap(),
            Enqueued::Replayed("first".into())
        );
        let other = enqueue("other").await.unwrap_err();
        assert!(
            matches!(&other, QueueError::IdempotencyConflict(k) if *k == key),
            "{other}"
        );
    }
    assert_eq!(
        counts(&redis).await.0,
        1 + LARGE as u64,
        "each enqueued once"
    );
}

#[tokio::test]
async fn a_batch_of_many_chunks_is_cancelled_whole_and_none_of_it_is_claimed() {
    let redis = RedisServer::start().unwrap();
    let ledger = ledger(&redis).await;
    let batch = BatchId::new();
    ledger
        .enqueue(
            Some((batch, &BatchOptions::default())),
            &jobs(LARGE, "cancelled"),
        )
        .await
        .unwrap();

    assert_eq!(
        ledger.cancel_batch(batch).await.unwrap(),
        Some(LARGE as u64)
    );

    assert_eq!(counts(&redis).await, (0, 0));
    let claimed = ledger
        .claim(&crate::ledger::claim_opts("w", 10, Duration::from_secs(30)))
        .await
        .unwrap();
    assert!(claimed.leases.is_empty());
    assert_eq!(ledger.cancel_batch(BatchId::new()).await.unwrap(), None);
}

#[tokio::test]
async fn a_claim_ends_a_queued_job_whose_batch_is_being_cancelled() {
    let redis = RedisServer::start().unwrap();
    let ledger = ledger(&redis).await;
    let batch = BatchId::new();
    let jobs = jobs(3, "mid-cancel");
    ledger
        .enqueue(Some((batch, &BatchOptions::default())), &jobs)
        .await
        .unwrap();
    // What batch.lua's first chunk writes before it reaches these jobs.
    let info = format!("{{test}}:batchinfo:{batch}");
    assert_eq!(
        redis
            .command(&["HSET", &info, "cancelled_ms", "1"])
            .unwrap(),
        ":1"
    );

    let claimed = ledger
        .claim(&crate::ledger::claim_opts("w", 10, Duration::from_secs(30)))
        .await
        .unwrap();

    assert!(claimed.leases.is_empty(), "none of it is handed out");
    for (job_id, _) in &jobs {
        let state = crate::ledger::state_of(&ledger, *job_id).await;
        assert_eq!(state, reelq_core::JobState::Cancelled);
    }
}
