//! Paid exactly once: the ledger refuses a Redis that can lose acknowledged writes, proves
//! writes durable before anyone acts on them, names each claim uniquely even when a fence
//! number repeats, claims only what a worker can send, and gives in-flight slots back.

use std::time::Duration;

use reelq_core::{BatchId, BatchOptions, JobId, JobState, ProviderKind};
use reelq_queue::{
    Durability, Held, Lease, Ledger, LedgerConfig, QueueError, Resolution, Transition,
    TransitionOutcome,
};
use reelq_testkit::{RedisOptions, RedisServer};

use crate::ledger::{
    LEASE, begin_submit, claim_one, claim_opts, jobs_in, jobs_of, kie_limit, layouts, ledger, spec,
    state_of,
};

fn everysec() -> RedisOptions {
    RedisOptions {
        appendfsync: "everysec",
        ..RedisOptions::default()
    }
}

#[tokio::test]
async fn a_redis_that_can_lose_acknowledged_writes_is_refused_naming_the_setting() {
    let redis = RedisServer::start_with(everysec()).unwrap();
    let config = LedgerConfig::new(redis.url(), "test");
    let err = Ledger::connect(&config).await.err().expect("refused");
    let message = err.to_string();
    assert!(matches!(err, QueueError::Unsafe(_)), "{message}");
    assert!(message.contains("appendfsync is everysec"), "{message}");
    assert!(message.contains("submitted twice"), "{message}");
    assert!(message.contains("allow_unsafe_redis"), "{message}");

    let allowed = LedgerConfig {
        allow_unsafe: true,
        ..config
    };
    let ledger = Ledger::connect(&allowed).await.expect("allowed when asked");
    assert_eq!(ledger.unsafe_reason(), None, "allowed: nothing refused");
}

#[tokio::test]
async fn a_setting_changed_at_runtime_stops_submits_and_enqueues_until_fixed() {
    let redis = RedisServer::start().unwrap();
    let ledger = ledger(&redis).await;
    let jobs = jobs_of(1, "runtime", spec);
    ledger.enqueue(None, &jobs).await.unwrap();
    let lease = claim_one(&ledger, "w1", LEASE).await;

    redis.config_set("appendfsync", "everysec").unwrap();
    redis.config_set("maxmemory-policy", "allkeys-lru").unwrap();
    let check = ledger.check_durability().await.unwrap();
    assert_eq!(check.problems.len(), 2, "{check:?}");
    let begin = Transition::BeginSubmit {
        lease: LEASE,
        callback_token_hash: None,
    };
    let refused = ledger.transition(&lease, begin.clone()).await;
    assert!(matches!(refused, Err(QueueError::Unsafe(_))), "{refused:?}");
    assert_eq!(
        state_of(&ledger, jobs[0].0).await,
        JobState::Queued,
        "nothing written"
    );
    let refused = ledger.enqueue(None, &jobs_of(1, "more", spec)).await;
    assert!(matches!(refused, Err(QueueError::Unsafe(_))), "{refused:?}");

    redis.config_set("appendfsync", "always").unwrap();
    redis.config_set("maxmemory-policy", "noeviction").unwrap();
    assert!(ledger.check_durability().await.unwrap().is_safe());
    assert_eq!(
        ledger.transition(&lease, begin).await.unwrap(),
        TransitionOutcome::Applied
    );
}

#[tokio::test]
async fn with_replicas_a_write_counts_only_once_a_replica_holds_it() {
    let primary = RedisServer::start_with(everysec()).unwrap();
    let mut replica = primary.start_replica().unwrap();
    // Long enough that a live replica always acknowledges in time, even on a machine busy
    // with the whole suite (300 ms was not: a flake); the two refusals below wait it out.
    let config = LedgerConfig {
        durability: Durability::Replicas { n: 1 },
        replica_wait: Duration::from_secs(2),
        ..LedgerConfig::new(primary.url(), "test")
    };
    let ledger = Ledger::connect(&config)
        .await
        .expect("everysec + a replica is safe");
    let jobs = jobs_of(2, "replicated", spec);
    ledger.enqueue(None, &jobs).await.unwrap();
    let first = claim_one(&ledger, "w1", LEASE).await;
    begin_submit(&ledger, first, LEASE).await;

    replica.stop();
    let second = claim_one(&ledger, "w1", LEASE).await;
    let begin = Transition::BeginSubmit {
        lease: LEASE,
        callback_token_hash: None,
    };
    let unproven = ledger.transition(&second, begin.clone()).await;
    assert!(
        matches!(
            unproven,
            Err(QueueError::NotDurable {
                acked: 0,
                wanted: 1
            })
        ),
        "{unproven:?}"
    );
    let unproven = ledger.enqueue(None, &jobs_of(1, "late", spec)).await;
    assert!(
        matches!(unproven, Err(QueueError::NotDurable { .. })),
        "{unproven:?}"
    );

    // The replica comes back: the same submit, retried, is proven (its retry writes again,
    // so the WAIT covers it even on a new socket).
    replica.start_again().unwrap();
    let retried = retry_until_durable(&ledger, &second, begin).await;
    assert_eq!(retried, TransitionOutcome::Applied);
}

/// Retries a write the way a worker does until a replica acknowledges it.
async fn retry_until_durable(
    ledger: &Ledger,
    lease: &Lease,
    move_: Transition,
) -> TransitionOutcome {
    let mut replica_syncs = tokio::time::interval(Duration::from_millis(200));
    for _ in 0..100 {
        replica_syncs.tick().await;
        match ledger.transition(lease, move_.clone()).await {
            Err(QueueError::NotDurable { .. }) => continue,
            other => return other.unwrap(),
        }
    }
    panic!("the replica never acknowledged the write");
}

#[tokio::test]
async fn a_fence_number_repeated_after_lost_writes_names_no_live_lease() {
    let redis = RedisServer::start().unwrap();
    let ledger = ledger(&redis).await;
    let jobs = jobs_of(1, "rolled back", spec);
    let job_id = jobs[0].0;
    ledger.enqueue(None, &jobs).await.unwrap();
    let first = claim_one(&ledger, "w1", LEASE).await;

    // What a Redis that lost its last second looks like to the job: the claim never happened.
    let job_key = format!("{{test}}:job:{job_id}");
    redis
        .command(&["HSET", &job_key, "fence", "0", "token", ""])
        .unwrap();
    redis
        .command(&["ZADD", "{test}:due", "0", &job_id.to_string()])
        .unwrap();
    let second = claim_one(&ledger, "w2", LEASE).await;
    assert_eq!(
        second.fence().fence,
        first.fence().fence,
        "the fence number repeats"
    );
    assert_ne!(second.fence().token, first.fence().token);

    let begin = Transition::BeginSubmit {
        lease: LEASE,
        callback_token_hash: None,
    };
    let second = begin_submit(&ledger, second, LEASE).await;
    let stale = ledger.transition(&first, begin).await.unwrap();
    assert!(
        matches!(stale, TransitionOutcome::LeaseLost { .. }),
        "the first claim must not submit too: {stale:?}"
    );
    assert!(!ledger.extend(&first, LEASE).await.unwrap());
    assert!(ledger.extend(&second, LEASE).await.unwrap());
    assert_eq!(ledger.job(job_id).await.unwrap().unwrap().submits, 1);
}

#[tokio::test]
async fn a_worker_claims_only_jobs_of_providers_it_has_an_account_for() {
    let redis = RedisServer::start().unwrap();
    let ledger = ledger(&redis).await;
    // Many jobs of another provider ahead of ours must not hide it.
    let kie_jobs = jobs_of(40, "kie", spec);
    ledger.enqueue(None, &kie_jobs).await.unwrap();
    let openai_job = (JobId::new(), {
        let mut spec = spec("openai");
        spec.provider = ProviderKind::Openai;
        spec.model = "sora-2".into();
        spec
    });
    ledger
        .enqueue(None, std::slice::from_ref(&openai_job))
        .await
        .unwrap();

    let options = reelq_queue::ClaimOptions {
        accounts: &[(ProviderKind::Openai.into(), ProviderKind::Openai)],
        ..claim_opts("openai-only", 4, LEASE)
    };
    let claim = ledger.claim(&options).await.unwrap();
    let claimed: Vec<JobId> = claim.leases.iter().map(|lease| lease.job_id()).collect();
    assert_eq!(claimed, [openai_job.0]);
    let untouched = ledger.job(kie_jobs[0].0).await.unwrap().unwrap();
    assert_eq!((untouched.state, untouched.submits), (JobState::Queued, 0));
    assert_eq!(
        ledger.due_now().await.unwrap(),
        40,
        "kie jobs stay due for others"
    );
}

#[tokio::test]
async fn an_uncertain_job_gives_its_slot_back_after_the_hold_or_when_resolved() {
    let redis = RedisServer::start().unwrap();
    for ledger in layouts(&redis).await {
        let limits = kie_limit(0.0, 1, 1);
        let options = reelq_queue::ClaimOptions {
            limits: &limits,
            ..claim_opts("w1", 1, LEASE)
        };
        let jobs = jobs_in(&ledger, 4, "slots", spec);
        ledger.enqueue(None, &jobs).await.unwrap();

        // Held for no time: the next job gets the slot at once.
        let uncertain = |slot_hold| Transition::Uncertain {
            error: "no answer".into(),
            slot_hold,
        };
        let lease = ledger.claim(&options).await.unwrap().leases.remove(0);
        let lease = begin_submit(&ledger, lease, LEASE).await;
        ledger
            .transition(&lease, uncertain(Duration::ZERO))
            .await
            .unwrap();
        assert_eq!(
            ledger.in_flight(&ProviderKind::Kie.into()).await.unwrap(),
            0
        );

        // Held for long: each resolution frees it, except "the provider has it" (it generates).
        for (resolution, slot_after) in [
            (Resolution::Fail, 0),
            (Resolution::Resubmit, 0),
            (Resolution::TaskId("t-1".into()), 1),
        ] {
            let lease = ledger.claim(&options).await.unwrap().leases.remove(0);
            let job_id = lease.job_id();
            let lease = begin_submit(&ledger, lease, LEASE).await;
            ledger
                .transition(&lease, uncertain(Duration::from_secs(600)))
                .await
                .unwrap();
            assert_eq!(
                ledger.in_flight(&ProviderKind::Kie.into()).await.unwrap(),
                1
            );
            assert!(ledger.resolve(job_id, resolution.clone()).await.unwrap());
            assert_eq!(
                ledger.in_flight(&ProviderKind::Kie.into()).await.unwrap(),
                slot_after,
                "{resolution:?}"
            );
        }
    }
}

#[tokio::test]
async fn a_cancelled_batch_gives_back_the_slots_its_claimed_jobs_took() {
    let redis = RedisServer::start().unwrap();
    let ledger = ledger(&redis).await;
    let batch_id = BatchId::new();
    let jobs = jobs_of(2, "cancel", spec);
    ledger
        .enqueue(Some((batch_id, &BatchOptions::default())), &jobs)
        .await
        .unwrap();
    let limits = kie_limit(0.0, 1, 2);
    let options = reelq_queue::ClaimOptions {
        limits: &limits,
        ..claim_opts("w1", 2, LEASE)
    };
    let claim = ledger.claim(&options).await.unwrap();
    assert_eq!(claim.leases.len(), 2);
    assert_eq!(
        ledger.in_flight(&ProviderKind::Kie.into()).await.unwrap(),
        2
    );
    assert_eq!(ledger.cancel_batch(batch_id).await.unwrap(), Some(2));
    assert_eq!(
        ledger.in_flight(&ProviderKind::Kie.into()).await.unwrap(),
        0
    );
}
