//! The ledger's state machine, fencing and scheduling, on a real Redis.

use std::time::Duration;

use futures_util::StreamExt;
use reelq_core::{
    Aspect, BatchId, BatchOptions, ErrorClass, JobId, JobSpec, JobState, ProviderKind, Quality,
};
use reelq_queue::{
    Cancel, CancelOutcome, ClaimOptions, Held, Lease, Ledger, LedgerConfig, LimitWait,
    NotifyOutcome, NotifyTarget, ProviderLimit, Resolution, Transition, TransitionOutcome, Wait,
    WakeOutcome,
};
use reelq_testkit::{EVENT_TIMEOUT, RedisServer};

mod budgets;
mod callbacks;
mod limits;
mod walk;

pub(crate) use limits::{encoding, kie_limit};

pub(crate) const LEASE: Duration = Duration::from_secs(30);
/// How long a test's task index entries live.
const INDEX_TTL: Duration = Duration::from_secs(600);

pub(crate) async fn ledger(redis: &RedisServer) -> Ledger {
    Ledger::connect(&LedgerConfig::new(redis.url(), "test"))
        .await
        .expect("ledger connects")
}

/// Three ledgers on `redis`, one of each layout: the home of cluster-wide state sharing the
/// partition's slot; the home in a slot of its own (`keys.rs`; the partition's scripts leave
/// their home effects to be made there after them); and four partitions beside a home of its
/// own, a job in the partition its id names. A test of what a move gives back at the home
/// (slots, reservations) runs on each.
pub(crate) async fn layouts(redis: &RedisServer) -> [Ledger; 3] {
    let own_home = LedgerConfig {
        home_slot: reelq_queue::HomeSlot::Own,
        ..LedgerConfig::new(redis.url(), "own-home")
    };
    let partitioned = LedgerConfig {
        partitions: 4,
        ..LedgerConfig::new(redis.url(), "partitioned")
    };
    [
        ledger(redis).await,
        Ledger::connect(&own_home).await.expect("ledger connects"),
        Ledger::connect(&partitioned)
            .await
            .expect("ledger connects"),
    ]
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
        tenant: None,
        estimated_cost_usd: None,
        request: None,
        route: None,
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

/// A job stored from its poll (a small video, its checks): the move tests end generations
/// with, to give back the slots they held.
pub(crate) fn stored() -> Transition {
    Transition::Stored {
        object_key: "k.mp4".into(),
        bytes: 1,
        sha256: "ab".into(),
        video: "h264 1280x720 10.00s 30.00fps".into(),
        thumbnail_key: None,
        polls: None,
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
    lease_held
}

/// Whether a cancel was asked of a claimed job, and answered (only a poll lease has one).
pub(crate) fn cancel_of(lease: &Lease) -> Cancel {
    match lease {
        Lease::Poll(poll) => poll.cancel(),
        _ => Cancel::NotRequested,
    }
}

/// Whether a claimed submit carries its batch's low priority.
pub(crate) fn low_priority(lease: &Lease) -> bool {
    matches!(lease, Lease::Submit(submit) if submit.low_priority())
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

/// [`jobs_of`] with ids `ledger` makes for one enqueue (one partition, any).
pub(crate) fn jobs_in(
    ledger: &Ledger,
    n: usize,
    prefix: &str,
    spec_of: fn(&str) -> JobSpec,
) -> Vec<(JobId, JobSpec)> {
    let (_, ids) = ledger.new_ids(n, None);
    ids.into_iter()
        .zip(jobs_of(n, prefix, spec_of))
        .map(|(id, (_, spec))| (id, spec))
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
