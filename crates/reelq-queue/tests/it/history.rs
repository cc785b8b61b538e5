//! A ledger that goes back in time (here: an operator restores a backup under running
//! clients) is noticed by the client whose acknowledged writes it lost, declared, and holds
//! paid creates until that client has given back what it knows; a client that lost nothing
//! goes on.

use std::time::{Duration, Instant};

use reelq_core::{AccountName, JobId, JobState, ProviderKind};
use reelq_queue::{
    HistoryCheck, Lease, Ledger, PaidCreate, QueueError, ROLLBACK_HOLD_MIN, RestoreOutcome,
    Transition, TransitionOutcome, WorkerInfo,
};
use reelq_testkit::RedisServer;

use crate::ledger::{LEASE, claim_one, claim_opts, ledger, spec};

/// The first command after a restart finds the old socket broken; the next reconnects.
async fn reconnect(client: &Ledger) {
    if client.ping().await.is_err() {
        client.ping().await.expect("reconnected");
    }
}

/// The lease of `job_id` from a claim of everything due (restored jobs are due too).
async fn claim_job(client: &Ledger, job_id: JobId) -> Lease {
    client
        .claim(&claim_opts("w2", 10, LEASE))
        .await
        .unwrap()
        .leases
        .into_iter()
        .find(|lease| lease.job_id() == job_id)
        .expect("the job is due")
}

fn begin() -> Transition {
    Transition::BeginSubmit {
        lease: LEASE,
        callback_token_hash: None,
    }
}

#[tokio::test]
async fn a_restored_backup_is_caught_held_and_repaired_from_the_workers_own_creates() {
    let mut redis = RedisServer::start().unwrap();
    let producer = ledger(&redis).await;
    let worker = ledger(&redis).await;
    worker.repair_rollbacks("w1");
    let other = ledger(&redis).await;
    other.repair_rollbacks("w2");
    let paid = JobId::new();
    producer
        .enqueue(None, &[(paid, spec("paid"))])
        .await
        .unwrap();
    let backup = redis.backup().unwrap();

    // The worker's create goes out once its submit is durable; then the backup comes back.
    let lease = claim_one(&worker, "w1", LEASE).await;
    assert_eq!(
        worker.transition(&lease, begin()).await.unwrap(),
        TransitionOutcome::Applied
    );
    redis.restore(&backup).unwrap();
    for client in [&producer, &worker, &other] {
        reconnect(client).await;
    }
    assert_eq!(
        producer.job(paid).await.unwrap().unwrap().state,
        JobState::Queued,
        "the ledger forgot the submit"
    );

    // The worker that saw its write acknowledged notices (nobody else could) and declares
    // it: every other worker then finds a new history, and gives back what it knows too.
    let HistoryCheck::RolledBack(rollback) = worker.check_history().await.unwrap() else {
        panic!("the worker's own acknowledged write is gone");
    };
    assert_eq!(
        (rollback.saw, rollback.found, rollback.epoch_changed),
        (1, 0, false)
    );
    let HistoryCheck::RolledBack(declared) = other.check_history().await.unwrap() else {
        panic!("a declared rollback reaches every worker");
    };
    assert!(declared.epoch_changed);
    other.adopt_history("w2").await.unwrap();
    // A producer lost nothing of its own: it joins the new history and goes on.
    let later = JobId::new();
    producer
        .enqueue(None, &[(later, spec("enqueued during the repair"))])
        .await
        .unwrap();
    let status = producer.history_status().await.unwrap();
    assert_eq!(status.rollbacks, 1);
    assert!(status.holding, "paid creates are held: {status:?}");

    // Held: no worker may begin a submit, so the forgotten create cannot be made again.
    let lease = claim_job(&other, paid).await;
    assert!(matches!(
        other.transition(&lease, begin()).await,
        Err(QueueError::SubmitsHeld)
    ));
    assert!(matches!(
        worker.transition(&lease, begin()).await,
        Err(QueueError::RolledBack(_))
    ));

    // The worker gives its create back: the job is polled on its task, never resubmitted.
    let create = PaidCreate {
        job_id: paid,
        account: AccountName::from(ProviderKind::Kie),
        task_id: Some("task-paid".into()),
        claim_token: "the claim the ledger forgot".into(),
        sent_ms: 1,
        uncertain_slot_hold: None,
    };
    let (outcome, was) = worker
        .restore_paid_create(&create, "ledger rollback")
        .await
        .unwrap();
    assert_eq!(
        (outcome, was),
        (RestoreOutcome::Restored, Some(JobState::Queued))
    );
    let record = producer.job(paid).await.unwrap().unwrap();
    assert_eq!(record.state, JobState::Waiting);
    assert_eq!(record.task_id.as_deref(), Some("task-paid"));
    let late = Transition::Submitted {
        task_id: "a second task".into(),
        first_poll: LEASE,
    };
    assert!(
        matches!(
            other.transition(&lease, late).await.unwrap(),
            TransitionOutcome::LeaseLost {
                state: Some(JobState::Waiting),
                ..
            }
        ),
        "the claim in hand was fenced off"
    );
    worker.adopt_history("w1").await.unwrap();
    assert_eq!(worker.rolled_back(), None);

    // A live worker that started on the new history holds it past its minimum until it
    // says it is on it (it has nothing to give back); then submits go on.
    let started = Instant::now();
    let newcomer = ledger(&redis).await;
    newcomer
        .heartbeat(&worker_info("w3"), Duration::from_secs(60))
        .await
        .unwrap();
    let past_minimum = ROLLBACK_HOLD_MIN + Duration::from_secs(1);
    while started.elapsed() < past_minimum {
        assert!(
            producer.history_status().await.unwrap().holding,
            "held for w3"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    newcomer.acknowledge_history("w3").await.unwrap();
    assert!(!producer.history_status().await.unwrap().holding);
    let fresh = JobId::new();
    producer
        .enqueue(None, &[(fresh, spec("after the hold"))])
        .await
        .unwrap();
    let lease = claim_job(&other, fresh).await;
    assert_eq!(
        other.transition(&lease, begin()).await.unwrap(),
        TransitionOutcome::Applied
    );
    assert!(matches!(
        worker.check_history().await.unwrap(),
        HistoryCheck::Intact { holding: false }
    ));
    let status = producer.history_status().await.unwrap();
    assert!(status.held_ms.is_some_and(|ms| ms >= 7_000), "{status:?}");
}

fn worker_info(name: &str) -> WorkerInfo {
    WorkerInfo {
        name: name.into(),
        role: "all".into(),
        version: "test".into(),
        accounts: vec!["kie".into()],
        concurrency: 1,
        started_ms: 0,
        seen_ms: 0,
        ledger_schema: reelq_queue::LEDGER_SCHEMA,
    }
}
