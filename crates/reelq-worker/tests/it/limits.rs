//! Cluster-wide provider limits: however many replicas run, the provider never sees more
//! generations in flight, or more calls per second, than the account allows.

use std::time::Duration;

use reelq_e2e::{Deployment, prompts};

#[tokio::test]
async fn four_replicas_never_exceed_the_accounts_concurrency_or_rate() {
    let mut deployment = Deployment::start(
        env!("CARGO_BIN_EXE_reelq-worker"),
        Duration::from_millis(300),
    )
    .await;
    deployment.account_extra =
        "max_in_flight = 3\nmax_requests_per_s = 20\nburst = 2\nin_flight_slot_ttl_ms = 60000\n"
            .into();
    let _workers: Vec<_> = (0..4)
        .map(|n| deployment.spawn_worker_process(&format!("w{n}")))
        .collect();
    let job_ids = deployment.enqueue_manifest(&prompts("limited", 24)).await;

    let records = deployment.settled(&job_ids).await;

    deployment.assert_stored_once(&records);
    let stats = deployment.sim.stats();
    assert_eq!(
        stats.max_in_flight, 3,
        "the limit was reached and never passed"
    );
    // GCRA lets at most `burst + rate x window` calls into any window.
    assert!(
        stats.max_requests_per_second <= 22,
        "{} calls in one second",
        stats.max_requests_per_second
    );
}
