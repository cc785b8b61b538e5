//! Money and stopping: batch budgets, priorities and windows, cancels (queued, batch-wide and
//! at the provider), a newer release's ledger refused.

use super::*;

fn priced(prompt: &str) -> JobSpec {
    JobSpec {
        estimated_cost_usd: Some(0.15),
        ..spec(prompt)
    }
}

fn batch_of(n: usize, prefix: &str) -> Vec<(JobId, JobSpec)> {
    jobs_of(n, prefix, priced)
}

/// A batch of `n` priced jobs (150,000 micros each) under a budget, enqueued.
async fn budget_batch(
    ledger: &Ledger,
    n: usize,
    prefix: &str,
    budget_micros: u64,
) -> (BatchId, Vec<(JobId, JobSpec)>) {
    let batch = BatchId::new();
    let options = BatchOptions {
        budget_micros: Some(budget_micros),
        ..BatchOptions::default()
    };
    let jobs = batch_of(n, prefix);
    ledger
        .enqueue(Some((batch, &options)), &jobs)
        .await
        .unwrap();
    (batch, jobs)
}

#[tokio::test]
async fn a_batch_budget_holds_what_it_cannot_pay_until_resumed_and_a_refusal_refunds() {
    let redis = RedisServer::start().unwrap();
    let ledger = ledger(&redis).await;
    let (batch, _) = budget_batch(&ledger, 5, "budget", 300_000).await;

    let claim = ledger.claim(&claim_opts("w1", 5, LEASE)).await.unwrap();
    assert_eq!(claim.leases.len(), 2, "the budget pays for two");
    let held = ledger
        .jobs_in_state(JobState::BudgetHeld, 10)
        .await
        .unwrap();
    assert_eq!(held.len(), 3);
    assert_eq!(
        ledger
            .batch_info(batch)
            .await
            .unwrap()
            .unwrap()
            .reserved_micros,
        300_000
    );

    // The provider refuses one create: its reservation comes back.
    let lease = begin_submit(&ledger, claim.leases.into_iter().next().unwrap(), LEASE).await;
    let refused = Transition::Failed {
        class: ErrorClass::Invalid,
        error: "422".into(),
    };
    ledger.transition(&lease, refused).await.unwrap();
    assert_eq!(
        ledger
            .batch_info(batch)
            .await
            .unwrap()
            .unwrap()
            .reserved_micros,
        150_000
    );

    assert_eq!(
        ledger.resume_batch(batch, Some(750_000)).await.unwrap(),
        Some(3)
    );
    let claim = ledger.claim(&claim_opts("w1", 5, LEASE)).await.unwrap();
    assert_eq!(claim.leases.len(), 3);
    let info = ledger.batch_info(batch).await.unwrap().unwrap();
    assert_eq!(
        (info.budget_micros, info.reserved_micros),
        (Some(750_000), 600_000)
    );
}

#[tokio::test]
async fn normal_jobs_go_before_a_low_priority_batch_and_a_window_delays_a_batch() {
    let redis = RedisServer::start().unwrap();
    let ledger = ledger(&redis).await;
    let low = BatchOptions {
        low_priority: true,
        ..BatchOptions::default()
    };
    let low_jobs = batch_of(2, "overnight");
    ledger
        .enqueue(Some((BatchId::new(), &low)), &low_jobs)
        .await
        .unwrap();
    let urgent = JobId::new();
    ledger
        .enqueue(None, &[(urgent, priced("now"))])
        .await
        .unwrap();
    let later = BatchOptions {
        start_after_ms: Some(4_000_000_000_000),
        ..BatchOptions::default()
    };
    ledger
        .enqueue(Some((BatchId::new(), &later)), &batch_of(1, "later"))
        .await
        .unwrap();

    let first = ledger.claim(&claim_opts("w1", 1, LEASE)).await.unwrap();
    assert_eq!(
        first.leases[0].job_id(),
        urgent,
        "enqueued last, claimed first"
    );
    assert!(!low_priority(&first.leases[0]));
    let rest = ledger.claim(&claim_opts("w1", 5, LEASE)).await.unwrap();
    assert!(
        rest.leases.iter().all(low_priority),
        "their submits carry the batch's priority as a provider hint"
    );
    let rest: Vec<JobId> = rest.leases.iter().map(|l| l.job_id()).collect();
    assert_eq!(rest.len(), 2, "the windowed batch is not due: {rest:?}");
    assert!(low_jobs.iter().all(|(id, _)| rest.contains(id)));
}

#[tokio::test]
async fn cancelling_a_batch_ends_its_unsubmitted_jobs_and_leaves_the_running_one() {
    let redis = RedisServer::start().unwrap();
    let ledger = ledger(&redis).await;
    let batch = BatchId::new();
    let options = BatchOptions {
        budget_micros: Some(300_000),
        ..BatchOptions::default()
    };
    ledger
        .enqueue(Some((batch, &options)), &batch_of(4, "cancel"))
        .await
        .unwrap();
    let running = claim_and_begin(&ledger, "w1", 1, LEASE).await.remove(0);
    ledger.claim(&claim_opts("w1", 5, LEASE)).await.unwrap();

    // Two held by the budget, and one claimed whose submit has not begun (its worker's
    // BeginSubmit will find it cancelled and stop).
    assert_eq!(ledger.cancel_batch(batch).await.unwrap(), Some(3));
    assert_eq!(
        state_of(&ledger, running.job_id()).await,
        JobState::Submitting
    );
    let cancelled = ledger.jobs_in_state(JobState::Cancelled, 10).await.unwrap();
    assert_eq!(cancelled.len(), 3);
    let info = ledger.batch_info(batch).await.unwrap().unwrap();
    assert_eq!(
        info.reserved_micros, 150_000,
        "only the running job's reservation is left"
    );
    assert_eq!(ledger.cancel_batch(BatchId::new()).await.unwrap(), None);
}

#[tokio::test]
async fn a_ledger_written_by_a_newer_release_is_refused() {
    let redis = RedisServer::start().unwrap();
    let first = ledger(&redis).await;
    drop(first);
    assert_eq!(
        redis.command(&["GET", "{test}:schema"]).unwrap(),
        format!("${}", reelq_queue::LEDGER_SCHEMA.to_string().len()),
        "a new ledger records its schema"
    );
    assert_eq!(
        redis.command(&["SET", "{test}:schema", "99"]).unwrap(),
        "+OK"
    );

    let refused = Ledger::connect(&LedgerConfig::new(redis.url(), "test"))
        .await
        .err()
        .expect("a newer ledger is refused");
    assert!(
        matches!(refused, reelq_queue::QueueError::Schema { found: 99, .. }),
        "{refused}"
    );
}

#[tokio::test]
async fn a_cancelled_job_is_never_submitted_and_its_reservation_comes_back() {
    let redis = RedisServer::start().unwrap();
    let ledger = ledger(&redis).await;
    let (batch, jobs) = budget_batch(&ledger, 3, "cancel", 1_000_000).await;
    // One claimed (its estimate reserved, its lease in a worker's hand), one left queued.
    let claimed = ledger
        .claim(&claim_opts("w1", 1, LEASE))
        .await
        .unwrap()
        .leases
        .remove(0);
    let reserved = |ledger: Ledger| async move {
        ledger
            .batch_info(batch)
            .await
            .unwrap()
            .unwrap()
            .reserved_micros
    };
    assert_eq!(reserved(ledger.clone()).await, 150_000);
    let queued = jobs
        .iter()
        .map(|(job_id, _)| *job_id)
        .find(|job_id| *job_id != claimed.job_id())
        .unwrap();

    assert_eq!(
        ledger.cancel_job(claimed.job_id()).await.unwrap(),
        CancelOutcome::Cancelled
    );
    assert_eq!(
        ledger.cancel_job(queued).await.unwrap(),
        CancelOutcome::Cancelled
    );

    assert_eq!(
        reserved(ledger.clone()).await,
        0,
        "the reservation came back"
    );
    assert_eq!(state_of(&ledger, queued).await, JobState::Cancelled);
    // The worker holding the claim cannot begin its submit: the fence moved on.
    let begin = Transition::BeginSubmit {
        lease: LEASE,
        callback_token_hash: None,
    };
    assert!(matches!(
        ledger.transition(&claimed, begin).await.unwrap(),
        TransitionOutcome::LeaseLost { .. }
    ));
    // The third job is claimed; the cancelled ones never are again.
    let claim = ledger.claim(&claim_opts("w1", 5, LEASE)).await.unwrap();
    assert_eq!(claim.leases.len(), 1);
    // A job being submitted is not cancelled: the create may be out.
    let lease = begin_submit(&ledger, claim.leases.into_iter().next().unwrap(), LEASE).await;
    assert_eq!(
        ledger.cancel_job(lease.job_id()).await.unwrap(),
        CancelOutcome::NotCancellable {
            state: JobState::Submitting,
            provider: ProviderKind::Kie
        }
    );
}

/// Enqueues one job of `provider` and takes it to `waiting` on task `task_id`.
async fn waiting_job(ledger: &Ledger, provider: ProviderKind, task_id: &str) -> JobId {
    let job_id = JobId::new();
    let job = JobSpec {
        provider,
        ..spec(task_id)
    };
    ledger.enqueue(None, &[(job_id, job)]).await.unwrap();
    let lease = claim_one(ledger, "w1", LEASE).await;
    let lease = begin_submit(ledger, lease, LEASE).await;
    let submitted = Transition::Submitted {
        task_id: task_id.into(),
        first_poll: Duration::from_secs(3600),
    };
    ledger.transition(&lease, submitted).await.unwrap();
    job_id
}

#[tokio::test]
async fn a_waiting_job_is_cancelled_at_a_provider_that_can_stop_it_once_its_task_has_stopped() {
    let redis = RedisServer::start().unwrap();
    let ledger = ledger(&redis).await;
    let at_kie = waiting_job(&ledger, ProviderKind::Kie, "kie-task").await;
    assert_eq!(
        ledger.cancel_job(at_kie).await.unwrap(),
        CancelOutcome::NotCancellable {
            state: JobState::Waiting,
            provider: ProviderKind::Kie
        },
        "kie has no cancel call: its generation runs to the end"
    );
    let at_fal = waiting_job(&ledger, ProviderKind::Fal, "fal-task").await;
    assert_eq!(
        ledger.cancel_job(at_fal).await.unwrap(),
        CancelOutcome::AskedProvider(ProviderKind::Fal)
    );
    // Due at once (its next poll was an hour away), marked for its worker, still waiting.
    let lease = claim_one(&ledger, "w2", LEASE).await;
    assert_eq!(lease.job_id(), at_fal);
    assert_eq!(cancel_of(&lease), Cancel::Requested, "not asked yet");
    // The provider answers the ask; the task runs on: the next poll does not ask again.
    let asked = Transition::PollAgain {
        polls: 1,
        attempt: 0,
        delay: Duration::ZERO,
        error: None,
        cancel_answered: true,
    };
    assert_eq!(
        ledger.transition(&lease, asked).await.unwrap(),
        TransitionOutcome::Applied
    );
    let lease = claim_one(&ledger, "w2", LEASE).await;
    assert_eq!(cancel_of(&lease), Cancel::Answered);
    let stopped = Transition::CancelledAtProvider {
        detail: "cancelled at the provider".into(),
    };
    assert_eq!(
        ledger.transition(&lease, stopped).await.unwrap(),
        TransitionOutcome::Applied
    );
    assert_eq!(state_of(&ledger, at_fal).await, JobState::Cancelled);
    assert_eq!(
        ledger.cancel_job(at_fal).await.unwrap(),
        CancelOutcome::NotCancellable {
            state: JobState::Cancelled,
            provider: ProviderKind::Fal
        }
    );
    assert!(matches!(
        ledger.cancel_job(JobId::new()).await,
        Err(reelq_queue::QueueError::NotFound(_))
    ));
}

#[tokio::test]
async fn cancelling_a_batch_marks_its_waiting_jobs_for_their_next_poll() {
    let redis = RedisServer::start().unwrap();
    let ledger = ledger(&redis).await;
    let batch = BatchId::new();
    let jobs = jobs_of(2, "cancel-waiting", |prompt| JobSpec {
        provider: ProviderKind::Replicate,
        ..spec(prompt)
    });
    ledger
        .enqueue(Some((batch, &BatchOptions::default())), &jobs)
        .await
        .unwrap();
    let waiting = claim_and_begin(&ledger, "w1", 1, LEASE).await.remove(0);
    let submitted = Transition::Submitted {
        task_id: "prediction-1".into(),
        first_poll: Duration::ZERO,
    };
    ledger.transition(&waiting, submitted).await.unwrap();
    assert_eq!(ledger.cancel_batch(batch).await.unwrap(), Some(1));
    let lease = claim_one(&ledger, "w2", LEASE).await;
    assert_eq!(lease.job_id(), waiting.job_id());
    assert_eq!(
        cancel_of(&lease),
        Cancel::Requested,
        "its poll asks the provider to cancel"
    );
}
