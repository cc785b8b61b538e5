//! A job's walk through the ledger: claims, fences, leases that run out, deadlines, endings,
//! batches, the operator's resolutions.

use super::*;

#[tokio::test]
async fn a_job_walks_from_queued_to_stored() {
    let redis = RedisServer::start().unwrap();
    let ledger = ledger(&redis).await;
    let job_id = JobId::new();
    // A long prompt, with characters of more than one byte: its spec is kept in pieces
    // that must not split one.
    let prompt = "a walk through the rain — déjà vu, ".repeat(40);
    ledger
        .enqueue(None, &[(job_id, spec(&prompt))])
        .await
        .unwrap();
    assert_eq!(state_of(&ledger, job_id).await, JobState::Queued);

    let mut claim = ledger.claim(&claim_opts("w1", 10, LEASE)).await.unwrap();
    assert_eq!(claim.leases.len(), 1);
    let lease = claim.leases.remove(0);
    assert_eq!((lease.state(), lease.fence().fence), (JobState::Queued, 1));
    let begin = Transition::BeginSubmit {
        lease: LEASE,
        callback_token_hash: None,
    };
    assert_eq!(
        ledger.transition(&lease, begin.clone()).await.unwrap(),
        TransitionOutcome::Applied
    );
    assert_eq!(state_of(&ledger, job_id).await, JobState::Submitting);
    // A retry after a lost reply finds the move made, and counts no second submit.
    assert_eq!(
        ledger.transition(&lease, begin).await.unwrap(),
        TransitionOutcome::Applied
    );
    let submitted = Transition::Submitted {
        task_id: "t-1".into(),
        first_poll: Duration::ZERO,
    };
    assert_eq!(
        ledger.transition(&lease, submitted).await.unwrap(),
        TransitionOutcome::Applied
    );

    let lease = ledger
        .claim(&claim_opts("w1", 10, LEASE))
        .await
        .unwrap()
        .leases
        .remove(0);
    assert_eq!(
        (lease.state(), lease.task_id()),
        (JobState::Waiting, Some("t-1"))
    );
    // The poll finds the video ready and the first download fails: the fetch is retried
    // from `fetching`, with the result URL kept.
    let retry = Transition::RetryFetch {
        result_url: "http://x/v.mp4".into(),
        attempt: 1,
        delay: Duration::ZERO,
        error: "connection reset".into(),
    };
    ledger.transition(&lease, retry).await.unwrap();

    let lease = ledger
        .claim(&claim_opts("w1", 10, LEASE))
        .await
        .unwrap()
        .leases
        .remove(0);
    assert_eq!(lease.state(), JobState::Fetching);
    let Lease::Fetch(fetch) = &lease else {
        panic!("a fetch lease")
    };
    assert_eq!(fetch.result_url(), "http://x/v.mp4");
    let stored = Transition::Stored {
        object_key: "k.mp4".into(),
        bytes: 42,
        sha256: "ab".into(),
        video: "h264 1280x720 10.00s 30.00fps".into(),
        thumbnail_key: None,
        polls: None,
    };
    ledger.transition(&lease, stored).await.unwrap();

    let record = ledger.job(job_id).await.unwrap().unwrap();
    assert_eq!(record.state, JobState::Stored);
    assert_eq!(
        (record.bytes, record.sha256.as_deref()),
        (Some(42), Some("ab"))
    );
    assert_eq!(record.submits, 1);
    let claim = ledger.claim(&claim_opts("w1", 10, LEASE)).await.unwrap();
    assert!(
        claim.leases.is_empty() && claim.next_due_in.is_none(),
        "stored job is not due"
    );
    let history = ledger.history(job_id).await.unwrap();
    let states: Vec<&str> = history
        .iter()
        .map(|e| e.split(' ').nth(1).unwrap())
        .collect();
    assert_eq!(
        states,
        ["queued", "submitting", "waiting", "fetching", "stored"]
    );
    assert_eq!(record.spec.prompt, prompt);
    // Every value of the record is short, so Redis keeps it compact (a listpack, not a
    // hashtable): the memory a finished job costs.
    assert_eq!(
        encoding(&redis, format!("{{test}}:job:{job_id}")).await,
        "listpack"
    );
}

#[tokio::test]
async fn a_scheduled_job_is_not_claimed_before_it_is_due() {
    let redis = RedisServer::start().unwrap();
    let ledger = ledger(&redis).await;
    submit_one(&ledger, "later", "t", Duration::from_secs(600)).await;
    let claim = ledger.claim(&claim_opts("w1", 1, LEASE)).await.unwrap();
    assert!(claim.leases.is_empty());
    let next = claim.next_due_in.expect("a poll is scheduled");
    assert!(
        next > Duration::from_secs(590) && next <= Duration::from_secs(600),
        "{next:?}"
    );
}

#[tokio::test]
async fn a_stale_worker_cannot_move_a_job_taken_over_by_another() {
    let redis = RedisServer::start().unwrap();
    let ledger = ledger(&redis).await;
    submit_one(&ledger, "stale", "t", Duration::ZERO).await;

    // A zero-length lease expires at once, as if w1 had stalled past its lease.
    let stale = claim_one(&ledger, "w1", Duration::ZERO).await;
    let fresh = claim_one(&ledger, "w2", LEASE).await;
    assert_eq!(fresh.fence().fence, stale.fence().fence + 1);

    let poll_again = |polls| Transition::PollAgain {
        polls,
        attempt: 0,
        delay: LEASE,
        error: None,
        cancel_answered: false,
    };
    let outcome = ledger.transition(&stale, poll_again(1)).await.unwrap();
    assert!(
        matches!(outcome, TransitionOutcome::LeaseLost { .. }),
        "{outcome:?}"
    );
    assert_eq!(
        ledger.transition(&fresh, poll_again(1)).await.unwrap(),
        TransitionOutcome::Applied
    );
}

#[tokio::test]
async fn a_submit_whose_lease_expired_becomes_uncertain_not_resubmitted() {
    let redis = RedisServer::start().unwrap();
    let ledger = ledger(&redis).await;
    let job_id = JobId::new();
    ledger
        .enqueue(None, &[(job_id, spec("crash"))])
        .await
        .unwrap();
    let submitter = claim_and_begin(&ledger, "w1", 1, Duration::ZERO)
        .await
        .remove(0);

    let claim = ledger.claim(&claim_opts("w2", 1, LEASE)).await.unwrap();
    assert!(claim.leases.is_empty(), "no second submit is handed out");
    let record = ledger.job(job_id).await.unwrap().unwrap();
    assert_eq!((record.state, record.submits), (JobState::Uncertain, 1));
    assert_eq!(record.error_class, Some(ErrorClass::UnknownOutcome));

    // The original submitter's late answer settles the doubt.
    let submitted = Transition::Submitted {
        task_id: "late".into(),
        first_poll: Duration::ZERO,
    };
    assert_eq!(
        ledger.transition(&submitter, submitted).await.unwrap(),
        TransitionOutcome::Applied
    );
    let record = ledger.job(job_id).await.unwrap().unwrap();
    assert_eq!(
        (record.state, record.task_id.as_deref()),
        (JobState::Waiting, Some("late"))
    );
}

#[tokio::test]
async fn jobs_past_their_deadline_expire_instead_of_being_submitted() {
    let redis = RedisServer::start().unwrap();
    let ledger = ledger(&redis).await;
    let job_id = JobId::new();
    let expired = JobSpec {
        deadline_ms: Some(1),
        ..spec("too late")
    };
    ledger.enqueue(None, &[(job_id, expired)]).await.unwrap();
    let claim = ledger.claim(&claim_opts("w1", 1, LEASE)).await.unwrap();
    assert!(claim.leases.is_empty());
    let record = ledger.job(job_id).await.unwrap().unwrap();
    assert_eq!((record.state, record.submits), (JobState::Expired, 0));
}

#[tokio::test]
async fn moderation_ends_rejected_and_other_failures_end_failed() {
    let redis = RedisServer::start().unwrap();
    let ledger = ledger(&redis).await;
    let ids = [JobId::new(), JobId::new()];
    ledger
        .enqueue(None, &[(ids[0], spec("a")), (ids[1], spec("b"))])
        .await
        .unwrap();
    let leases = ledger
        .claim(&claim_opts("w1", 2, LEASE))
        .await
        .unwrap()
        .leases;
    for (lease, class) in leases
        .iter()
        .zip([ErrorClass::Moderation, ErrorClass::Auth])
    {
        let failed = Transition::Failed {
            class,
            error: "no".into(),
        };
        ledger.transition(lease, failed).await.unwrap();
    }
    let states = [
        state_of(&ledger, leases[0].job_id()).await,
        state_of(&ledger, leases[1].job_id()).await,
    ];
    assert_eq!(states, [JobState::Rejected, JobState::Failed]);
}

#[tokio::test]
async fn a_batch_with_an_existing_job_id_writes_nothing() {
    let redis = RedisServer::start().unwrap();
    let ledger = ledger(&redis).await;
    let existing = JobId::new();
    ledger
        .enqueue(None, &[(existing, spec("one"))])
        .await
        .unwrap();
    let fresh = JobId::new();
    let batch = BatchId::new();
    let err = ledger
        .enqueue(
            Some((batch, &BatchOptions::default())),
            &[(fresh, spec("two")), (existing, spec("dup"))],
        )
        .await
        .unwrap_err();
    assert!(err.to_string().contains("already exists"), "{err}");
    assert!(ledger.job(fresh).await.unwrap().is_none());
    assert!(ledger.batch_jobs(batch).await.unwrap().is_empty());
}

#[tokio::test]
async fn batches_keep_their_order_and_state_changes_are_published() {
    let redis = RedisServer::start().unwrap();
    let ledger = ledger(&redis).await;
    let mut changes = ledger.changes().await.unwrap();
    let batch = BatchId::new();
    let jobs: Vec<_> = (0..3)
        .map(|i| (JobId::new(), spec(&format!("p{i}"))))
        .collect();
    ledger
        .enqueue(Some((batch, &BatchOptions::default())), &jobs)
        .await
        .unwrap();
    let ids: Vec<JobId> = jobs.iter().map(|(id, _)| *id).collect();
    assert_eq!(ledger.batch_jobs(batch).await.unwrap(), ids);

    let lease = claim_and_begin(&ledger, "w1", 1, LEASE).await.remove(0);
    let change = tokio::time::timeout(EVENT_TIMEOUT, changes.next())
        .await
        .unwrap();
    assert_eq!(change, Some((lease.job_id(), JobState::Submitting)));
    let counts = ledger.state_counts().await.unwrap();
    assert!(counts.contains(&(JobState::Queued, 2)) && counts.contains(&(JobState::Submitting, 1)));
}

#[tokio::test]
async fn an_operator_resolves_an_uncertain_job_each_way() {
    let redis = RedisServer::start().unwrap();
    let ledger = ledger(&redis).await;
    let ids = [JobId::new(), JobId::new(), JobId::new()];
    let jobs: Vec<_> = ids.iter().map(|id| (*id, spec("doubt"))).collect();
    ledger.enqueue(None, &jobs).await.unwrap();
    claim_and_begin(&ledger, "w1", 3, Duration::ZERO).await;
    ledger.claim(&claim_opts("w2", 3, LEASE)).await.unwrap();
    for job_id in ids {
        assert_eq!(state_of(&ledger, job_id).await, JobState::Uncertain);
    }

    assert!(
        ledger
            .resolve(ids[0], Resolution::TaskId("found".into()))
            .await
            .unwrap()
    );
    assert!(ledger.resolve(ids[1], Resolution::Resubmit).await.unwrap());
    assert!(ledger.resolve(ids[2], Resolution::Fail).await.unwrap());
    assert!(
        !ledger.resolve(ids[2], Resolution::Resubmit).await.unwrap(),
        "only uncertain jobs resolve"
    );

    let leases = ledger
        .claim(&claim_opts("w3", 3, LEASE))
        .await
        .unwrap()
        .leases;
    let by_id = |job_id| {
        leases
            .iter()
            .find(|lease| lease.job_id() == job_id)
            .expect("claimed")
    };
    assert_eq!(by_id(ids[0]).state(), JobState::Waiting);
    assert_eq!(by_id(ids[0]).task_id(), Some("found"));
    assert_eq!(by_id(ids[1]).state(), JobState::Queued);
    assert_eq!(leases.len(), 2);
    assert_eq!(state_of(&ledger, ids[2]).await, JobState::Failed);
    let begin = Transition::BeginSubmit {
        lease: LEASE,
        callback_token_hash: None,
    };
    ledger.transition(by_id(ids[1]), begin).await.unwrap();
    assert_eq!(
        ledger.job(ids[1]).await.unwrap().unwrap().submits,
        2,
        "the operator chose a second submit"
    );
}

#[tokio::test]
async fn the_resubmit_policy_requeues_an_expired_submit() {
    let redis = RedisServer::start().unwrap();
    let ledger = ledger(&redis).await;
    let job_id = JobId::new();
    ledger
        .enqueue(None, &[(job_id, spec("policy"))])
        .await
        .unwrap();
    claim_and_begin(&ledger, "w1", 1, Duration::ZERO).await;
    let options = ClaimOptions {
        resubmit_uncertain: true,
        ..claim_opts("w2", 1, LEASE)
    };
    assert!(ledger.claim(&options).await.unwrap().leases.is_empty());
    assert_eq!(state_of(&ledger, job_id).await, JobState::Queued);
    let lease = ledger.claim(&options).await.unwrap().leases.remove(0);
    assert_eq!(lease.state(), JobState::Queued);
    let begin = Transition::BeginSubmit {
        lease: LEASE,
        callback_token_hash: None,
    };
    ledger.transition(&lease, begin).await.unwrap();
    assert_eq!(ledger.job(job_id).await.unwrap().unwrap().submits, 2);
}

#[tokio::test]
async fn a_paused_provider_gets_no_submits_until_the_pause_ends() {
    let redis = RedisServer::start().unwrap();
    let ledger = ledger(&redis).await;
    ledger
        .pause_account(&ProviderKind::Kie.into(), Duration::from_secs(600))
        .await
        .unwrap();
    let job_id = JobId::new();
    ledger
        .enqueue(None, &[(job_id, spec("wait"))])
        .await
        .unwrap();
    let claim = ledger.claim(&claim_opts("w1", 1, LEASE)).await.unwrap();
    assert!(claim.leases.is_empty());
    assert_eq!(state_of(&ledger, job_id).await, JobState::Queued);
    // A shorter pause does not cut the longer one short.
    ledger
        .pause_account(&ProviderKind::Kie.into(), Duration::from_millis(1))
        .await
        .unwrap();
    let claim = ledger.claim(&claim_opts("w1", 1, LEASE)).await.unwrap();
    let next = claim
        .next_due_in
        .expect("rescheduled for the end of the pause");
    assert!(next > Duration::from_secs(590), "{next:?}");
}

#[tokio::test]
async fn a_failed_job_retried_by_an_operator_polls_again_if_the_provider_has_it() {
    let redis = RedisServer::start().unwrap();
    let ledger = ledger(&redis).await;
    let job_id = submit_one(&ledger, "retry", "t-9", Duration::ZERO).await;
    let lease = claim_one(&ledger, "w1", LEASE).await;
    let failed = Transition::Failed {
        class: ErrorClass::Transient,
        error: "gave up".into(),
    };
    ledger.transition(&lease, failed).await.unwrap();
    assert_eq!(
        ledger.jobs_in_state(JobState::Failed, 10).await.unwrap(),
        [job_id]
    );

    assert!(ledger.retry_failed(job_id).await.unwrap());
    let lease = claim_one(&ledger, "w1", LEASE).await;
    assert_eq!(
        (lease.state(), lease.task_id()),
        (JobState::Waiting, Some("t-9"))
    );
    let record = ledger.job(job_id).await.unwrap().unwrap();
    assert_eq!((record.error, record.submits), (None, 1));
}
