//! The ledger's state machine, fencing and scheduling, on a real Redis.

use std::time::Duration;

use futures_util::StreamExt;
use reelq_core::{
    Aspect, BatchId, BatchOptions, ErrorClass, JobId, JobSpec, JobState, ProviderKind, Quality,
};
use reelq_queue::{
    CancelOutcome, ClaimOptions, Lease, Ledger, LedgerConfig, LimitWait, NotifyOutcome,
    NotifyTarget, ProviderLimit, Resolution, Transition, TransitionOutcome, Wait, WakeOutcome,
};
use reelq_testkit::{EVENT_TIMEOUT, RedisServer};

pub(crate) const LEASE: Duration = Duration::from_secs(30);
/// How long a test's task index entries live.
const INDEX_TTL: Duration = Duration::from_secs(600);

pub(crate) async fn ledger(redis: &RedisServer) -> Ledger {
    Ledger::connect(&LedgerConfig::new(redis.url(), "test"))
        .await
        .expect("ledger connects")
}

pub(crate) fn spec(prompt: &str) -> JobSpec {
    JobSpec {
        provider: ProviderKind::Kie,
        account: None,
        model: "kling-3.0/video".into(),
        prompt: prompt.into(),
        duration_s: 10,
        aspect: Aspect::Landscape,
        quality: Quality::Standard,
        image_urls: vec![],
        character: None,
        notify_url: None,
        notify_events: vec![],
        deadline_ms: None,
        estimated_cost_usd: None,
        request: None,
    }
}

pub(crate) fn claim_opts(owner: &str, max_jobs: usize, lease: Duration) -> ClaimOptions<'_> {
    ClaimOptions {
        owner,
        max_jobs,
        lease,
        resubmit_uncertain: false,
        limits: &[],
        accounts: reelq_queue::own_accounts(),
    }
}

/// Claims exactly one due job.
pub(crate) async fn claim_one(ledger: &Ledger, owner: &str, lease: Duration) -> Lease {
    let mut leases = ledger
        .claim(&claim_opts(owner, 1, lease))
        .await
        .unwrap()
        .leases;
    assert_eq!(leases.len(), 1, "one job is due");
    leases.remove(0)
}

/// Records that a claimed job's submit begins, as a worker does, and returns its lease.
pub(crate) async fn begin_submit(ledger: &Ledger, lease_held: Lease, lease: Duration) -> Lease {
    let begin = Transition::BeginSubmit {
        lease,
        callback_token_hash: None,
    };
    assert_eq!(
        ledger.transition(&lease_held, begin).await.unwrap(),
        TransitionOutcome::Applied
    );
    Lease {
        state: JobState::Submitting,
        ..lease_held
    }
}

/// Claims up to `n` queued jobs and records that their submit begins, as a worker does.
pub(crate) async fn claim_and_begin(
    ledger: &Ledger,
    owner: &str,
    n: usize,
    lease: Duration,
) -> Vec<Lease> {
    let claim = ledger.claim(&claim_opts(owner, n, lease)).await.unwrap();
    let mut leases = Vec::new();
    for lease_held in claim.leases {
        leases.push(begin_submit(ledger, lease_held, lease).await);
    }
    leases
}

/// `n` jobs with fresh ids, their prompts numbered after `prefix`.
pub(crate) fn jobs_of(
    n: usize,
    prefix: &str,
    spec_of: fn(&str) -> JobSpec,
) -> Vec<(JobId, JobSpec)> {
    (0..n)
        .map(|i| (JobId::new(), spec_of(&format!("{prefix} {i}"))))
        .collect()
}

/// Enqueues one job and takes it through its submit to `waiting` on `task_id`.
pub(crate) async fn submit_one(
    ledger: &Ledger,
    prompt: &str,
    task_id: &str,
    first_poll: Duration,
) -> JobId {
    let job_id = JobId::new();
    ledger
        .enqueue(None, &[(job_id, spec(prompt))])
        .await
        .unwrap();
    let lease = claim_and_begin(ledger, "w1", 1, LEASE).await.remove(0);
    let submitted = Transition::Submitted {
        task_id: task_id.into(),
        first_poll,
    };
    assert_eq!(
        ledger.transition(&lease, submitted).await.unwrap(),
        TransitionOutcome::Applied
    );
    job_id
}

pub(crate) async fn state_of(ledger: &Ledger, job_id: JobId) -> JobState {
    ledger.job(job_id).await.unwrap().expect("job exists").state
}

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
    assert_eq!((lease.state, lease.fence), (JobState::Queued, 1));
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
    let lease = Lease {
        state: JobState::Submitting,
        ..lease
    };
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
        (lease.state, lease.task_id.as_deref()),
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
    assert_eq!(lease.state, JobState::Fetching);
    assert_eq!(lease.result_url.as_deref(), Some("http://x/v.mp4"));
    let stored = Transition::Stored {
        object_key: "k.mp4".into(),
        bytes: 42,
        sha256: "ab".into(),
        video: "h264 1280x720 10.00s 30.00fps".into(),
        thumbnail_key: None,
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
    assert_eq!(fresh.fence, stale.fence + 1);

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
        state_of(&ledger, leases[0].job_id).await,
        state_of(&ledger, leases[1].job_id).await,
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
    assert_eq!(change, Some((lease.job_id, JobState::Submitting)));
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
            .find(|lease| lease.job_id == job_id)
            .expect("claimed")
    };
    assert_eq!(by_id(ids[0]).state, JobState::Waiting);
    assert_eq!(by_id(ids[0]).task_id.as_deref(), Some("found"));
    assert_eq!(by_id(ids[1]).state, JobState::Queued);
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
    assert_eq!(lease.state, JobState::Queued);
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
        (lease.state, lease.task_id.as_deref()),
        (JobState::Waiting, Some("t-9"))
    );
    let record = ledger.job(job_id).await.unwrap().unwrap();
    assert_eq!((record.error, record.submits), (None, 1));
}

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
        lease.state,
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
        .map(|l| (l.state, l.task_id.clone().unwrap()))
        .collect();
    tasks.sort_by(|a, b| a.1.cmp(&b.1));
    assert_eq!(
        tasks,
        [
            (JobState::Waiting, "t-0".into()),
            (JobState::Waiting, "t-1".into())
        ]
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
        (lease.state, lease.task_id.as_deref()),
        (JobState::Waiting, Some("t-fast"))
    );
}

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
    let ledger = ledger(&redis).await;
    let jobs = jobs_of(3, "slot", spec);
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
    let lease = Lease {
        state: JobState::Waiting,
        ..lease
    };
    assert_eq!(
        ledger.in_flight(&ProviderKind::Kie.into()).await.unwrap(),
        2,
        "waiting holds its slot"
    );
    // Polled, found ready and fetched under the same lease: stored straight from waiting.
    let stored = Transition::Stored {
        object_key: "k.mp4".into(),
        bytes: 1,
        sha256: "ab".into(),
        video: "h264 1280x720 10.00s 30.00fps".into(),
        thumbnail_key: None,
    };
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
                .find(|l| l.state == JobState::Queued)
            {
                return lease;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await
    .expect("the third job is claimed once a slot is free");
    assert!(jobs.iter().any(|(job_id, _)| *job_id == third.job_id));
    assert_eq!(
        ledger.in_flight(&ProviderKind::Kie.into()).await.unwrap(),
        2
    );
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
        first.leases[0].job_id, urgent,
        "enqueued last, claimed first"
    );
    assert!(!first.leases[0].low_priority);
    let rest = ledger.claim(&claim_opts("w1", 5, LEASE)).await.unwrap();
    assert!(
        rest.leases.iter().all(|lease| lease.low_priority),
        "their submits carry the batch's priority as a provider hint"
    );
    let rest: Vec<JobId> = rest.leases.iter().map(|l| l.job_id).collect();
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
        state_of(&ledger, running.job_id).await,
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
        .find(|job_id| *job_id != claimed.job_id)
        .unwrap();

    assert_eq!(
        ledger.cancel_job(claimed.job_id).await.unwrap(),
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
        ledger.cancel_job(lease.job_id).await.unwrap(),
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
    assert_eq!(lease.job_id, at_fal);
    assert!(lease.cancel_requested && lease.state == JobState::Waiting);
    assert!(!lease.cancel_answered, "not asked yet");
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
    assert!(lease.cancel_requested && lease.cancel_answered);
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
    assert_eq!(lease.job_id, waiting.job_id);
    assert!(
        lease.cancel_requested,
        "its poll asks the provider to cancel"
    );
}
