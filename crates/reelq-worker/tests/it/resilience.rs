//! Redis crashes, rate limits, graceful shutdown and an unsafe Redis.

use std::time::{Duration, Instant};

use reelq_core::JobState;
use reelq_queue::QueueError;
use reelq_sim::SimEvent;
use reelq_worker::{WorkerConfig, WorkerError};
use tokio_util::sync::CancellationToken;

use reelq_e2e::{API_KEY, Deployment, prompts, sim_events};

#[tokio::test]
async fn workers_ride_out_two_redis_crashes_and_finish_every_job_once() {
    let mut deployment = Deployment::start(
        env!("CARGO_BIN_EXE_reelq-worker"),
        Duration::from_millis(300),
    )
    .await;
    let mut events = deployment.sim.events();
    let _workers = [
        deployment.spawn_worker_process("w1"),
        deployment.spawn_worker_process("w2"),
    ];
    let job_ids = deployment
        .enqueue_manifest(&prompts("redis-crash", 20))
        .await;

    let created = |event: &SimEvent| matches!(event, SimEvent::Created { .. });
    sim_events(&mut events, 5, created).await;
    deployment.redis.restart().expect("redis restarts");
    sim_events(&mut events, 5, created).await;
    deployment.redis.restart().expect("redis restarts again");

    let records = deployment.settled(&job_ids).await;
    deployment.assert_stored_once(&records);
}

#[tokio::test]
async fn a_429_pauses_submits_for_its_retry_after() {
    let deployment = Deployment::start(
        env!("CARGO_BIN_EXE_reelq-worker"),
        Duration::from_millis(50),
    )
    .await;
    let mut events = deployment.sim.events();
    deployment.sim.fail_next_creates(429, 1);
    let _worker = deployment.spawn_worker_task("w", API_KEY, None);
    let first = deployment.enqueue_manifest(&prompts("limited", 1)).await;
    sim_events(&mut events, 1, |event| {
        matches!(event, SimEvent::CreateRefused { code: 429 })
    })
    .await;
    let refused_at = Instant::now();
    let more = deployment
        .enqueue_manifest(&prompts("queued-behind", 2))
        .await;

    // The simulator's 429 carries `Retry-After: 1`: no create may arrive before it passes.
    sim_events(&mut events, 3, |event| {
        matches!(event, SimEvent::Created { .. })
    })
    .await;
    let waited = refused_at.elapsed();
    assert!(
        waited >= Duration::from_millis(900),
        "creates resumed after {waited:?}"
    );

    let job_ids: Vec<_> = first.into_iter().chain(more).collect();
    for record in deployment.settled(&job_ids).await {
        assert_eq!(record.state, JobState::Stored, "{:?}", record.error);
    }
}

#[tokio::test]
async fn sigterm_lets_an_in_flight_submit_finish_and_record() {
    let deployment = Deployment::start(
        env!("CARGO_BIN_EXE_reelq-worker"),
        Duration::from_millis(50),
    )
    .await;
    deployment
        .sim
        .set_create_latency(Duration::from_millis(1500));
    let mut events = deployment.sim.events();
    let mut worker = deployment.spawn_worker_process("leaving");
    let job_ids = deployment.enqueue_manifest(&prompts("sigterm", 1)).await;
    sim_events(&mut events, 1, |event| {
        matches!(event, SimEvent::CreateReceived)
    })
    .await;
    // A working replica is listed, with what it serves.
    let listed = deployment.client.workers().await.unwrap();
    assert_eq!(
        listed
            .iter()
            .map(|w| (w.name.as_str(), w.role.as_str(), w.accounts.len()))
            .collect::<Vec<_>>(),
        [("leaving", "all", reelq_core::ProviderKind::ALL.len())]
    );

    let pid = worker.id().expect("worker is running").to_string();
    let kill = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(kill.success());
    let exit = tokio::time::timeout(Duration::from_secs(30), worker.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(exit.success(), "worker exited with {exit}");
    assert_eq!(
        deployment.client.workers().await.unwrap(),
        [],
        "a clean shutdown takes the worker off the list"
    );

    let record = deployment.client.status(job_ids[0]).await.unwrap().unwrap();
    assert_eq!(
        record.state,
        JobState::Waiting,
        "the submit in flight was recorded"
    );
    assert!(record.task_id.is_some());

    deployment.sim.set_create_latency(Duration::ZERO);
    let _successor = deployment.spawn_worker_process("successor");
    let record = deployment.settled(&job_ids).await.remove(0);
    assert_eq!((record.state, record.submits), (JobState::Stored, 1));
    assert_eq!(deployment.sim.stats().creates, 1);
}

#[tokio::test]
async fn a_worker_refuses_a_redis_that_may_evict_jobs_or_lose_its_last_second() {
    let deployment = Deployment::start(env!("CARGO_BIN_EXE_reelq-worker"), Duration::ZERO).await;
    let config_path = deployment.worker_config("picky", API_KEY);
    for (setting, value, named) in [
        (
            "maxmemory-policy",
            "allkeys-lru",
            "maxmemory-policy is allkeys-lru",
        ),
        ("appendfsync", "everysec", "appendfsync is everysec"),
    ] {
        deployment.redis.config_set(setting, value).unwrap();
        let config = WorkerConfig::load(Some(&config_path)).unwrap();
        let err = reelq_worker::run(
            config,
            reelq_worker::Listeners::default(),
            CancellationToken::new(),
        )
        .await
        .unwrap_err();
        assert!(
            matches!(err, WorkerError::Queue(QueueError::Unsafe(_))),
            "{err}"
        );
        assert!(err.to_string().contains(named), "{err}");
    }
}
