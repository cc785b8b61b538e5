//! Every move of the table (`src/moves.rs`) made on a real Redis, as the event logs show:
//! each (from, to) pair the table allows appears in some job's history here, and no history
//! shows a pair the table does not allow. It checks pairs, not moves: moves that share a
//! pair (three ways lead from `uncertain` to `waiting`) are told apart by the tests of their
//! own features.

use std::{collections::HashSet, time::Duration};

use reelq_core::{
    AccountName, BatchId, BatchOptions, ErrorClass, JobId, JobSpec, JobState, ProviderKind,
};
use reelq_queue::{
    Cancel, CancelOutcome, Lease, Ledger, PaidCreate, Resolution, RestoreOutcome, Transition,
    TransitionOutcome, WakeOutcome, moves::MOVES,
};
use reelq_testkit::RedisServer;

use crate::ledger::{LEASE, begin_submit, cancel_of, claim_opts, ledger, spec};

mod cluster;

const FAR: Duration = Duration::from_secs(3600);
const INDEX_TTL: Duration = Duration::from_secs(600);

/// The jobs of one walk through the table, each moved while it is the only one due.
struct Walk<'a> {
    ledger: Ledger,
    /// Each partition's server (the master holding its keys) and hash tag (`test`, or
    /// another where the home has a slot of its own), in the ledger's order.
    parts: Vec<(&'a RedisServer, String)>,
    jobs: Vec<JobId>,
}

impl Walk<'_> {
    async fn enqueue(&mut self, job: JobSpec) -> JobId {
        let job_id = self.ledger.new_ids(1, None).1[0];
        self.ledger.enqueue(None, &[(job_id, job)]).await.unwrap();
        self.jobs.push(job_id);
        job_id
    }

    async fn batch(&mut self, options: BatchOptions, n: usize) -> (BatchId, Vec<JobId>) {
        let (batch, ids) = self.ledger.new_ids(n, None);
        let jobs: Vec<(JobId, JobSpec)> = ids
            .into_iter()
            .map(|id| {
                let priced = JobSpec {
                    estimated_cost_usd: Some(0.15),
                    ..spec("batch job")
                };
                (id, priced)
            })
            .collect();
        self.ledger
            .enqueue(Some((batch, &options)), &jobs)
            .await
            .unwrap();
        let ids: Vec<JobId> = jobs.iter().map(|(id, _)| *id).collect();
        self.jobs.extend(&ids);
        (batch, ids)
    }

    /// Claims, expecting exactly the leases of `expect` (every other job is parked).
    async fn claim(&self, expect: &[JobId], resubmit_uncertain: bool) -> Vec<Lease> {
        let options = reelq_queue::ClaimOptions {
            resubmit_uncertain,
            ..claim_opts("walker", 10, LEASE)
        };
        let leases = self.ledger.claim(&options).await.unwrap().leases;
        let ids: Vec<JobId> = leases.iter().map(|lease| lease.job_id()).collect();
        assert_eq!(ids, expect, "only the walked jobs are due");
        leases
    }

    async fn lease(&self, job_id: JobId) -> Lease {
        self.claim(&[job_id], false).await.remove(0)
    }

    /// A claim that moves `job_id` and may lease it at once (a move that makes it due now
    /// leaves it in the range the claim is reading); the lease, by it or the next claim.
    async fn move_by_claim(&self, job_id: JobId, resubmit_uncertain: bool) -> Lease {
        let options = reelq_queue::ClaimOptions {
            resubmit_uncertain,
            ..claim_opts("walker", 10, LEASE)
        };
        let mut leases = self.ledger.claim(&options).await.unwrap().leases;
        assert!(leases.iter().all(|lease| lease.job_id() == job_id));
        match leases.pop() {
            Some(lease) => lease,
            None => self.lease(job_id).await,
        }
    }

    /// Of a budget batch's two jobs, the one the claim leased (the budget pays one) and the
    /// one it held.
    async fn leased_and_held(&self, ids: &[JobId]) -> (Lease, JobId) {
        let mut leases = self
            .ledger
            .claim(&claim_opts("walker", 10, LEASE))
            .await
            .unwrap()
            .leases;
        assert_eq!(leases.len(), 1, "the budget pays for one");
        let lease = leases.remove(0);
        let held = *ids.iter().find(|id| **id != lease.job_id()).unwrap();
        (lease, held)
    }

    async fn fail(&self, lease: Lease) {
        let failed = Transition::Failed {
            class: ErrorClass::Auth,
            error: "refused".into(),
        };
        self.step(lease, failed, JobState::Failed).await;
    }

    /// Makes a worker's move and returns the lease as it stands after it.
    /// Makes a worker's move; the lease (its fence) holds the job on.
    async fn step(&self, lease: Lease, transition: Transition, to: JobState) -> Lease {
        assert_eq!(
            self.ledger.transition(&lease, transition).await.unwrap(),
            TransitionOutcome::Applied,
            "{:?} -> {to}",
            lease.state()
        );
        lease
    }

    async fn begin(&self, lease: Lease, length: Duration) -> Lease {
        begin_submit(&self.ledger, lease, length).await
    }

    async fn submitted(&self, lease: Lease, first_poll: Duration) -> Lease {
        let submitted = Transition::Submitted {
            task_id: format!("task-{}", lease.job_id()),
            first_poll,
        };
        self.step(lease, submitted, JobState::Waiting).await
    }

    /// A new job, submitted: waiting, due at `first_poll`.
    async fn waiting(&mut self, job: JobSpec, first_poll: Duration) -> JobId {
        let job_id = self.enqueue(job).await;
        let lease = self.lease(job_id).await;
        let lease = self.begin(lease, LEASE).await;
        self.submitted(lease, first_poll).await;
        job_id
    }

    /// A new job whose submitter died mid-call: `submitting`, its lease already over.
    async fn submitter_died(&mut self, prompt: &str) -> JobId {
        let job_id = self.enqueue(spec(prompt)).await;
        let lease = self.lease(job_id).await;
        self.begin(lease, Duration::ZERO).await;
        job_id
    }

    /// A new job left `uncertain` by a submitter that died mid-call.
    async fn uncertain(&mut self) -> JobId {
        let job_id = self.submitter_died("uncertain").await;
        self.claim(&[], false).await;
        job_id
    }

    async fn store(&self, lease: Lease) {
        let stored = Transition::Stored {
            object_key: format!("{}.mp4", lease.job_id()),
            bytes: 1,
            sha256: "ab".repeat(32),
            video: "h264 1280x720 10.00s 30.00fps".into(),
            thumbnail_key: None,
            polls: None,
        };
        self.step(lease, stored, JobState::Stored).await;
    }

    /// Sets a field of the hash `kind:{id}` of the job or batch `id`, in its partition.
    fn set(&self, kind: &str, id: &str, field: &str, value: &str) {
        let partition = id
            .parse::<JobId>()
            .unwrap()
            .partition(self.ledger.partitions());
        let (redis, tag) = &self.parts[usize::from(partition)];
        let key = format!("{{{tag}}}:{kind}:{id}");
        redis.command(&["HSET", &key, field, value]).unwrap();
    }
}

fn retry_fetch() -> Transition {
    Transition::RetryFetch {
        result_url: "http://127.0.0.1:9/v.mp4".into(),
        attempt: 1,
        delay: Duration::ZERO,
        error: "connection reset".into(),
    }
}

fn requery() -> Transition {
    Transition::Requery {
        attempt: 1,
        error: "result url expired".into(),
    }
}

#[tokio::test]
async fn every_pair_of_states_the_table_allows_is_made_and_no_other() {
    let redis = RedisServer::start().unwrap();
    let ledger = ledger(&redis).await;
    walk_every_move(vec![(&redis, "test".to_owned())], ledger).await;
}

/// The same walk on one Redis with sixteen partitions: each job in the partition its id
/// names, each partition's scripts confined to its slot, the home's effects made after them.
#[tokio::test]
async fn every_pair_is_made_with_sixteen_partitions_on_one_redis() {
    let redis = RedisServer::start().unwrap();
    let config = reelq_queue::LedgerConfig {
        partitions: 16,
        ..reelq_queue::LedgerConfig::new(redis.url(), "sixteen")
    };
    let ledger = Ledger::connect(&config).await.unwrap();
    let layout = redis.command_text(&["GET", "{sixteen}:layout"]).unwrap();
    let parts: Vec<(&RedisServer, String)> = layout
        .split(' ')
        .map(|tag| (&redis, tag.to_owned()))
        .collect();
    assert_eq!(parts.len(), 16);
    walk_every_move(parts, ledger).await;
}

/// Walks every move of the table on `ledger`; `parts` are its partitions' servers and hash
/// tags.
pub(crate) async fn walk_every_move(parts: Vec<(&RedisServer, String)>, ledger: Ledger) {
    let mut walk = Walk {
        ledger,
        parts,
        jobs: Vec::new(),
    };
    let budget_for_one = BatchOptions {
        budget_micros: Some(150_000),
        ..BatchOptions::default()
    };

    // A worker's whole round: submit, poll again, fetch and fetch again, a fresh URL from
    // either, stored from `fetching` and from `waiting`.
    let job = walk.enqueue(spec("walk")).await;
    let lease = walk.lease(job).await;
    let lease = walk.begin(lease, LEASE).await;
    walk.submitted(lease, Duration::ZERO).await;
    let again = Transition::PollAgain {
        polls: 1,
        attempt: 1,
        delay: Duration::ZERO,
        error: Some("still running".into()),
        cancel_answered: false,
    };
    walk.step(walk.lease(job).await, again, JobState::Waiting)
        .await;
    walk.step(walk.lease(job).await, retry_fetch(), JobState::Fetching)
        .await;
    walk.step(walk.lease(job).await, retry_fetch(), JobState::Fetching)
        .await;
    walk.step(walk.lease(job).await, requery(), JobState::Waiting)
        .await;
    walk.step(walk.lease(job).await, requery(), JobState::Waiting)
        .await;
    walk.step(walk.lease(job).await, retry_fetch(), JobState::Fetching)
        .await;
    walk.store(walk.lease(job).await).await;
    let job = walk
        .waiting(spec("stored from waiting"), Duration::ZERO)
        .await;
    walk.store(walk.lease(job).await).await;

    // Giving a submit back: from `queued`, `submitting` and (the same lease) `uncertain`;
    // and a late answer to the submit settling `uncertain`.
    let retry = || Transition::RetrySubmit {
        attempt: 1,
        delay: Duration::ZERO,
        error: "refused before billing".into(),
    };
    let unknown = || Transition::Uncertain {
        error: "gateway 502 after the create".into(),
        slot_hold: Duration::ZERO,
    };
    let job = walk.enqueue(spec("retried")).await;
    walk.step(walk.lease(job).await, retry(), JobState::Queued)
        .await;
    let lease = walk.begin(walk.lease(job).await, LEASE).await;
    walk.step(lease, retry(), JobState::Queued).await;
    let lease = walk.begin(walk.lease(job).await, LEASE).await;
    let lease = walk.step(lease, unknown(), JobState::Uncertain).await;
    walk.step(lease, retry(), JobState::Queued).await;
    let lease = walk.begin(walk.lease(job).await, LEASE).await;
    let lease = walk.step(lease, unknown(), JobState::Uncertain).await;
    walk.submitted(lease, FAR).await;

    // Failures from every state a step leaves from; moderation ends `rejected`.
    let mut failed_unsubmitted = None;
    let mut failed_waiting = None;
    for (class, to) in [
        (ErrorClass::Auth, JobState::Failed),
        (ErrorClass::Moderation, JobState::Rejected),
    ] {
        let fail = || Transition::Failed {
            class,
            error: "refused".into(),
        };
        let job = walk.enqueue(spec("failed queued")).await;
        walk.step(walk.lease(job).await, fail(), to).await;
        failed_unsubmitted.get_or_insert(job);
        let job = walk.enqueue(spec("failed submitting")).await;
        let lease = walk.begin(walk.lease(job).await, LEASE).await;
        walk.step(lease, fail(), to).await;
        let job = walk.waiting(spec("failed waiting"), Duration::ZERO).await;
        walk.step(walk.lease(job).await, fail(), to).await;
        failed_waiting.get_or_insert(job);
        let job = walk.waiting(spec("failed fetching"), Duration::ZERO).await;
        walk.step(walk.lease(job).await, retry_fetch(), JobState::Fetching)
            .await;
        walk.step(walk.lease(job).await, fail(), to).await;
    }
    // An operator's retry of a failed job: polled again if it has a task, else resubmitted.
    let job = failed_waiting.unwrap();
    assert!(walk.ledger.retry_failed(job).await.unwrap());
    walk.store(walk.lease(job).await).await;
    let job = failed_unsubmitted.unwrap();
    assert!(walk.ledger.retry_failed(job).await.unwrap());
    assert_eq!(
        walk.ledger.cancel_job(job).await.unwrap(),
        CancelOutcome::Cancelled
    );

    // Deadlines: passed before the submit, and while waiting.
    walk.enqueue(JobSpec {
        deadline_ms: Some(1),
        ..spec("expired queued")
    })
    .await;
    walk.claim(&[], false).await;
    let job = walk.waiting(spec("expired waiting"), Duration::ZERO).await;
    walk.set("job", &job.to_string(), "deadline_ms", "1");
    walk.claim(&[], false).await;

    // A submitter's lease running out: its task named by a callback meanwhile, requeued by
    // policy, or left uncertain, and then each way out of `uncertain`.
    let job = walk.submitter_died("hinted").await;
    let noted = walk
        .ledger
        .adopt_task(job, "t-hinted", "its callback", INDEX_TTL)
        .await
        .unwrap();
    assert_eq!(noted, WakeOutcome::Noted);
    walk.store(walk.move_by_claim(job, false).await).await;
    let job = walk.submitter_died("requeued").await;
    walk.fail(walk.move_by_claim(job, true).await).await;
    let job = walk.uncertain().await;
    let adopted = walk
        .ledger
        .adopt_task(job, "t-adopted", "the provider's records", INDEX_TTL)
        .await
        .unwrap();
    assert_eq!(adopted, WakeOutcome::Adopted);
    walk.store(walk.lease(job).await).await;
    let job = walk.uncertain().await;
    assert!(
        walk.ledger
            .resolve(job, Resolution::TaskId("t-resolved".into()))
            .await
            .unwrap()
    );
    walk.store(walk.lease(job).await).await;
    let job = walk.uncertain().await;
    assert!(
        walk.ledger
            .resolve(job, Resolution::Resubmit)
            .await
            .unwrap()
    );
    walk.ledger.cancel_job(job).await.unwrap();
    let job = walk.uncertain().await;
    assert!(walk.ledger.resolve(job, Resolution::Fail).await.unwrap());

    // Batches: a budget holds what it cannot pay, a resume lets it go, a cancel ends queued
    // and held jobs alike (by the operator, or by the claim that finds the batch cancelled).
    let (batch, ids) = walk.batch(budget_for_one.clone(), 2).await;
    let (lease, held) = walk.leased_and_held(&ids).await;
    let lease = walk.begin(lease, LEASE).await;
    walk.submitted(lease, FAR).await;
    walk.ledger
        .resume_batch(batch, Some(1_000_000))
        .await
        .unwrap();
    walk.fail(walk.lease(held).await).await;
    let (batch, ids) = walk.batch(budget_for_one.clone(), 2).await;
    let (lease, _) = walk.leased_and_held(&ids).await;
    let lease = walk.begin(lease, LEASE).await;
    walk.submitted(lease, FAR).await;
    walk.ledger.cancel_batch(batch).await.unwrap();
    let (_, ids) = walk.batch(budget_for_one, 2).await;
    let (lease, held) = walk.leased_and_held(&ids).await;
    walk.fail(lease).await;
    assert_eq!(
        walk.ledger.cancel_job(held).await.unwrap(),
        CancelOutcome::Cancelled,
        "a held job"
    );
    let (batch, _) = walk.batch(BatchOptions::default(), 1).await;
    walk.set("batchinfo", &batch.to_string(), "cancelled_ms", "1");
    walk.claim(&[], false).await;

    // A cancel asked of a provider that can stop a generation: marked, then carried out by
    // the next poll once the provider's task has stopped.
    let job = walk
        .waiting(
            JobSpec {
                provider: ProviderKind::Fal,
                ..spec("cancelled at fal")
            },
            FAR,
        )
        .await;
    assert_eq!(
        walk.ledger.cancel_job(job).await.unwrap(),
        CancelOutcome::AskedProvider(ProviderKind::Fal)
    );
    let lease = walk.move_by_claim(job, false).await;
    assert_eq!(cancel_of(&lease), Cancel::Requested);
    let stopped = Transition::CancelledAtProvider {
        detail: "stopped at the provider".into(),
    };
    walk.step(lease, stopped, JobState::Cancelled).await;

    // Paid creates a worker gives back after the ledger went back in time and forgot them:
    // with the task the create's answer named, or `uncertain` where no answer came; to
    // queued jobs and to jobs a budget holds. Last, as the restored jobs are due at once.
    let walker = walk.ledger.clone();
    let restore = |job_id, task: Option<&str>, want| {
        let create = PaidCreate {
            job_id,
            account: AccountName::from(ProviderKind::Kie),
            task_id: task.map(str::to_owned),
            claim_token: "a claim the ledger forgot".into(),
            sent_ms: 1,
            uncertain_slot_hold: None,
        };
        let ledger = walker.clone();
        async move {
            let (outcome, _) = ledger
                .restore_paid_create(&create, "ledger rollback")
                .await
                .unwrap();
            assert_eq!(outcome, want, "{job_id}");
        }
    };
    let budget_for_one = BatchOptions {
        budget_micros: Some(150_000),
        ..BatchOptions::default()
    };
    let (_, ids) = walk.batch(budget_for_one, 3).await;
    let leased = walk
        .ledger
        .claim(&claim_opts("walker", 10, LEASE))
        .await
        .unwrap()
        .leases;
    assert_eq!(leased.len(), 1, "the budget pays for one");
    let held: Vec<JobId> = ids
        .into_iter()
        .filter(|id| *id != leased[0].job_id())
        .collect();
    restore(held[0], Some("t-held"), RestoreOutcome::Restored).await;
    restore(held[1], None, RestoreOutcome::Uncertain).await;
    let queued = walk.enqueue(spec("restored uncertain")).await;
    restore(queued, None, RestoreOutcome::Uncertain).await;
    let queued = walk.enqueue(spec("restored")).await;
    restore(queued, Some("t-queued"), RestoreOutcome::Restored).await;

    let allowed: HashSet<(JobState, JobState)> = MOVES
        .iter()
        .flat_map(|rule| rule.from.iter().map(|&from| (from, rule.to)))
        .collect();
    let mut made = HashSet::new();
    for &job in &walk.jobs {
        let states: Vec<JobState> = walk
            .ledger
            .history(job)
            .await
            .unwrap()
            .iter()
            .filter_map(|event| event.split(' ').nth(1)?.parse().ok())
            .collect();
        made.extend(states.windows(2).map(|pair| (pair[0], pair[1])));
    }
    let missing: Vec<_> = allowed.difference(&made).collect();
    let illegal: Vec<_> = made.difference(&allowed).collect();
    assert!(
        missing.is_empty(),
        "moves of the table not made: {missing:?}"
    );
    assert!(
        illegal.is_empty(),
        "moves made outside the table: {illegal:?}"
    );
}
