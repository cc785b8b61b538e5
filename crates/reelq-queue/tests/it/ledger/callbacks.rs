//! Callbacks and webhooks in the ledger: waking a waiting job, the submitter's task, the
//! task index, the completion webhook's event.

use super::*;

#[tokio::test]
async fn a_callback_wakes_a_waiting_job_and_duplicates_change_nothing() {
    let redis = RedisServer::start().unwrap();
    let ledger = ledger(&redis).await;
    let job_id = submit_one(&ledger, "cb", "t-cb", Duration::from_secs(600)).await;

    assert_eq!(
        ledger.wake(job_id, "other-task").await.unwrap(),
        WakeOutcome::Conflict,
        "the job has another task"
    );
    assert_eq!(
        ledger.wake(job_id, "t-cb").await.unwrap(),
        WakeOutcome::Woken
    );
    let lease = claim_one(&ledger, "w1", LEASE).await;
    assert_eq!(
        lease.state(),
        JobState::Waiting,
        "due at once, not in ten minutes"
    );
    assert_eq!(
        ledger.wake(job_id, "t-cb").await.unwrap(),
        WakeOutcome::Ignored,
        "a poll is running"
    );
    assert_eq!(
        ledger.wake(JobId::new(), "t-cb").await.unwrap(),
        WakeOutcome::Missing
    );
}

#[tokio::test]
async fn a_callback_names_the_task_of_a_job_whose_submitter_died() {
    let redis = RedisServer::start().unwrap();
    let ledger = ledger(&redis).await;
    let ids = [JobId::new(), JobId::new()];
    ledger
        .enqueue(None, &[(ids[0], spec("a")), (ids[1], spec("b"))])
        .await
        .unwrap();
    claim_and_begin(&ledger, "w1", 2, Duration::ZERO).await;

    // Job 0's callback arrives while it still looks submitting; job 1's after it turned
    // uncertain. A hint alone binds neither: the provider's record confirms each first.
    assert_eq!(
        ledger.wake(ids[0], "t-0").await.unwrap(),
        WakeOutcome::Unconfirmed
    );
    assert_eq!(
        ledger
            .adopt_task(ids[0], "t-0", "its callback", INDEX_TTL)
            .await
            .unwrap(),
        WakeOutcome::Noted
    );
    let leases = ledger
        .claim(&claim_opts("w2", 2, LEASE))
        .await
        .unwrap()
        .leases;
    assert_eq!(leases.len(), 0);
    assert_eq!(state_of(&ledger, ids[1]).await, JobState::Uncertain);
    assert_eq!(
        ledger.wake(ids[1], "t-1").await.unwrap(),
        WakeOutcome::Unconfirmed
    );
    assert_eq!(state_of(&ledger, ids[1]).await, JobState::Uncertain);
    assert_eq!(
        ledger
            .adopt_task(ids[1], "t-1", "its callback", INDEX_TTL)
            .await
            .unwrap(),
        WakeOutcome::Adopted
    );

    let leases = ledger
        .claim(&claim_opts("w2", 2, LEASE))
        .await
        .unwrap()
        .leases;
    let mut tasks: Vec<_> = leases
        .iter()
        .map(|l| (l.state(), l.task_id().unwrap()))
        .collect();
    tasks.sort_by(|a, b| a.1.cmp(b.1));
    assert_eq!(
        tasks,
        [(JobState::Waiting, "t-0"), (JobState::Waiting, "t-1")]
    );
    for job_id in ids {
        assert_eq!(ledger.job(job_id).await.unwrap().unwrap().submits, 1);
    }
}

#[tokio::test]
async fn the_callback_token_hash_is_kept_from_the_submit() {
    let redis = RedisServer::start().unwrap();
    let ledger = ledger(&redis).await;
    let job_id = JobId::new();
    ledger
        .enqueue(None, &[(job_id, spec("token"))])
        .await
        .unwrap();
    let binding = ledger.callback_binding(job_id).await.unwrap().unwrap();
    assert_eq!(
        (binding.account, binding.token_hash),
        (ProviderKind::Kie.into(), None)
    );
    let lease = claim_one(&ledger, "w1", LEASE).await;
    let begin = Transition::BeginSubmit {
        lease: LEASE,
        callback_token_hash: Some("ab12".into()),
    };
    ledger.transition(&lease, begin).await.unwrap();
    let binding = ledger.callback_binding(job_id).await.unwrap().unwrap();
    assert_eq!(binding.token_hash.as_deref(), Some("ab12"));
    assert_eq!(ledger.callback_binding(JobId::new()).await.unwrap(), None);
}

#[tokio::test]
async fn a_task_is_bound_to_one_job() {
    let redis = RedisServer::start().unwrap();
    let ledger = ledger(&redis).await;
    let owner = submit_one(&ledger, "owner", "t-owned", Duration::from_secs(600)).await;
    ledger
        .index_task(&ProviderKind::Kie.into(), "t-owned", owner, INDEX_TTL)
        .await
        .unwrap();
    let ids = [JobId::new()];
    ledger
        .enqueue(None, &[(ids[0], spec("orphan"))])
        .await
        .unwrap();
    claim_and_begin(&ledger, "w1", 1, Duration::ZERO).await;
    let leases = ledger
        .claim(&claim_opts("w2", 1, LEASE))
        .await
        .unwrap()
        .leases;
    assert!(leases.is_empty());
    assert_eq!(state_of(&ledger, ids[0]).await, JobState::Uncertain);

    // Neither a hint nor a confirmation can hand the orphan the owner's task.
    assert_eq!(
        ledger.wake(ids[0], "t-owned").await.unwrap(),
        WakeOutcome::Conflict
    );
    assert_eq!(
        ledger
            .adopt_task(ids[0], "t-owned", "its callback", INDEX_TTL)
            .await
            .unwrap(),
        WakeOutcome::Conflict
    );
    assert_eq!(state_of(&ledger, ids[0]).await, JobState::Uncertain);
    // Its own task, once confirmed, is bound to it: no third job can take it either.
    assert_eq!(
        ledger
            .adopt_task(ids[0], "t-own", "its callback", INDEX_TTL)
            .await
            .unwrap(),
        WakeOutcome::Adopted
    );
    assert_eq!(
        ledger
            .job_of_task(&ProviderKind::Kie.into(), "t-own")
            .await
            .unwrap(),
        Some(ids[0])
    );
    assert_eq!(
        ledger.wake(owner, "t-own").await.unwrap(),
        WakeOutcome::Conflict
    );
}

#[tokio::test]
async fn an_ending_queues_one_webhook_whose_event_id_survives_retries() {
    let redis = RedisServer::start().unwrap();
    let ledger = ledger(&redis).await;
    let job_id = JobId::new();
    let notified_spec = JobSpec {
        notify_url: Some("http://127.0.0.1:9/hook".into()),
        ..spec("n")
    };
    ledger
        .enqueue(
            None,
            &[(job_id, notified_spec), (JobId::new(), spec("quiet"))],
        )
        .await
        .unwrap();
    assert!(
        ledger
            .claim_notifications(10, LEASE)
            .await
            .unwrap()
            .is_empty(),
        "nothing ended yet"
    );
    for lease in ledger
        .claim(&claim_opts("w1", 2, LEASE))
        .await
        .unwrap()
        .leases
    {
        let failed = Transition::Failed {
            class: ErrorClass::Invalid,
            error: "no".into(),
        };
        ledger.transition(&lease, failed).await.unwrap();
    }

    let first = ledger.claim_notifications(10, LEASE).await.unwrap();
    assert_eq!(first.len(), 1, "only the job with a notify_url");
    assert_eq!(
        (first[0].target, first[0].attempt),
        (NotifyTarget::Job(job_id), 0)
    );
    ledger
        .notified(&first[0], NotifyOutcome::Retry(Duration::ZERO), "500")
        .await
        .unwrap();
    let again = ledger.claim_notifications(10, LEASE).await.unwrap();
    assert_eq!(
        (again[0].event_id.as_str(), again[0].attempt),
        (first[0].event_id.as_str(), 1)
    );
    ledger
        .notified(&again[0], NotifyOutcome::Sent, "200")
        .await
        .unwrap();
    assert!(
        ledger
            .claim_notifications(10, LEASE)
            .await
            .unwrap()
            .is_empty()
    );
    let record = ledger.job(job_id).await.unwrap().unwrap();
    assert_eq!(record.notify_state.as_deref(), Some("sent"));
}

#[tokio::test]
async fn a_callback_that_beats_the_submit_answer_makes_the_first_poll_immediate() {
    let redis = RedisServer::start().unwrap();
    let ledger = ledger(&redis).await;
    let job_id = JobId::new();
    ledger
        .enqueue(None, &[(job_id, spec("fast"))])
        .await
        .unwrap();
    let lease = claim_and_begin(&ledger, "w1", 1, LEASE).await.remove(0);
    assert_eq!(
        ledger
            .adopt_task(job_id, "t-fast", "its callback", INDEX_TTL)
            .await
            .unwrap(),
        WakeOutcome::Noted
    );

    let submitted = Transition::Submitted {
        task_id: "t-fast".into(),
        first_poll: Duration::from_secs(600),
    };
    ledger.transition(&lease, submitted).await.unwrap();

    let lease = claim_one(&ledger, "w1", LEASE).await;
    assert_eq!(
        (lease.state(), lease.task_id()),
        (JobState::Waiting, Some("t-fast"))
    );
}
