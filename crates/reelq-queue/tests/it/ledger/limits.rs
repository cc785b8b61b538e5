//! What the ledger keeps and holds back: the event log, in-flight slots, request rates,
//! retention.

use super::*;

#[tokio::test]
async fn the_event_log_keeps_the_last_32_events() {
    let redis = RedisServer::start().unwrap();
    let ledger = ledger(&redis).await;
    let job_id = submit_one(&ledger, "noisy", "t", Duration::ZERO).await;
    for attempt in 1..=40 {
        let lease = claim_one(&ledger, "w1", LEASE).await;
        // Long and multi-byte: the event keeps a whole character's worth of it.
        let error = Some(format!("flaky {attempt}: {}", "délai dépassé ".repeat(20)));
        let again = Transition::PollAgain {
            polls: 0,
            attempt,
            delay: Duration::ZERO,
            error,
            cancel_answered: false,
        };
        ledger.transition(&lease, again).await.unwrap();
    }
    let history = ledger.history(job_id).await.unwrap();
    assert_eq!(history.len(), 32);
    assert!(
        history
            .last()
            .unwrap()
            .contains("poll retry 40: flaky 40: délai"),
        "{history:?}"
    );
    assert!(history.iter().all(|event| event.len() <= 64), "{history:?}");
    assert!(
        history.last().unwrap().ends_with('…'),
        "a cut event says it was cut: {history:?}"
    );
}

/// How Redis keeps a key (`OBJECT ENCODING`).
pub(crate) async fn encoding(redis: &RedisServer, key: String) -> String {
    let client = redis::Client::open(redis.url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    redis::cmd("OBJECT")
        .arg("ENCODING")
        .arg(key)
        .query_async(&mut conn)
        .await
        .unwrap()
}

pub(crate) fn kie_limit(requests_per_s: f64, burst: u32, max_in_flight: u32) -> [ProviderLimit; 1] {
    [ProviderLimit {
        account: ProviderKind::Kie.into(),
        requests_per_s,
        burst,
        max_in_flight,
        slot_ttl: Duration::from_secs(600),
        daily_budget_micros: 0,
        uncertain_slot_ttl: Duration::from_secs(600),
    }]
}

#[tokio::test]
async fn in_flight_slots_hold_back_submits_until_a_generation_ends() {
    let redis = RedisServer::start().unwrap();
    for ledger in layouts(&redis).await {
        let jobs = jobs_in(&ledger, 3, "slot", spec);
        ledger.enqueue(None, &jobs).await.unwrap();
        let limits = kie_limit(0.0, 1, 2);
        let options = ClaimOptions {
            limits: &limits,
            ..claim_opts("w1", 3, LEASE)
        };

        let claim = ledger.claim(&options).await.unwrap();
        assert_eq!(claim.leases.len(), 2, "two slots");
        assert_eq!(
            claim.waits,
            [LimitWait {
                account: ProviderKind::Kie.into(),
                limit: Wait::InFlight
            }]
        );
        assert_eq!(
            ledger.in_flight(&ProviderKind::Kie.into()).await.unwrap(),
            2
        );

        // One generation ends (its job is stored): its slot is free for the third.
        let lease = begin_submit(&ledger, claim.leases.into_iter().next().unwrap(), LEASE).await;
        let submitted = Transition::Submitted {
            task_id: "t".into(),
            first_poll: Duration::ZERO,
        };
        ledger.transition(&lease, submitted).await.unwrap();
        assert_eq!(
            ledger.in_flight(&ProviderKind::Kie.into()).await.unwrap(),
            2,
            "waiting holds its slot"
        );
        // Polled, found ready and fetched under the same lease: stored straight from waiting.
        let stored = stored();
        ledger.transition(&lease, stored).await.unwrap();
        assert_eq!(
            ledger.in_flight(&ProviderKind::Kie.into()).await.unwrap(),
            1
        );
        let third = tokio::time::timeout(EVENT_TIMEOUT, async {
            loop {
                // The held-back job was rescheduled a second out.
                let claim = ledger.claim(&options).await.unwrap();
                if let Some(lease) = claim
                    .leases
                    .into_iter()
                    .find(|l| l.state() == JobState::Queued)
                {
                    return lease;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
        .await
        .expect("the third job is claimed once a slot is free");
        assert!(jobs.iter().any(|(job_id, _)| *job_id == third.job_id()));
        assert_eq!(
            ledger.in_flight(&ProviderKind::Kie.into()).await.unwrap(),
            2
        );
    }
}

#[tokio::test]
async fn a_request_rate_lets_a_burst_through_and_schedules_the_rest() {
    let redis = RedisServer::start().unwrap();
    let ledger = ledger(&redis).await;
    let jobs = jobs_of(5, "rate", spec);
    ledger.enqueue(None, &jobs).await.unwrap();
    let limits = kie_limit(1.0, 2, 0);
    let options = ClaimOptions {
        limits: &limits,
        ..claim_opts("w1", 5, LEASE)
    };

    let claim = ledger.claim(&options).await.unwrap();

    assert_eq!(claim.leases.len(), 2, "the burst");
    assert_eq!(claim.waits.len(), 3);
    assert!(
        claim
            .waits
            .iter()
            .all(|wait| wait.account == ProviderKind::Kie.into() && wait.limit == Wait::Rate)
    );
    let again = ledger.claim(&options).await.unwrap();
    assert!(
        again.leases.is_empty(),
        "the rest are scheduled for later, not claimable now"
    );
}

async fn pttl(redis: &RedisServer, key: String) -> i64 {
    let mut conn = redis::Client::open(redis.url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    redis::cmd("PTTL")
        .arg(key)
        .query_async(&mut conn)
        .await
        .unwrap()
}

#[tokio::test]
async fn a_finished_job_expires_after_the_retention_and_a_retried_one_is_kept() {
    let redis = RedisServer::start().unwrap();
    let ledger = ledger(&redis).await;
    ledger
        .set_retention(Duration::from_secs(3600))
        .await
        .unwrap();
    let job_id = submit_one(&ledger, "retained", "t-1", Duration::ZERO).await;
    let lease = claim_one(&ledger, "w1", LEASE).await;
    let failed = Transition::Failed {
        class: ErrorClass::GenerationFailed,
        error: "no video".into(),
    };
    ledger.transition(&lease, failed).await.unwrap();

    let ttl = pttl(&redis, format!("{{test}}:job:{job_id}")).await;
    assert!(ttl > 3_590_000 && ttl <= 3_600_000, "{ttl}");

    assert!(ledger.retry_failed(job_id).await.unwrap());
    assert_eq!(
        pttl(&redis, format!("{{test}}:job:{job_id}")).await,
        -1,
        "kept while it runs again"
    );
}
