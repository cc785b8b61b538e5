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

/// Tenants through real worker processes: a tenant whose few jobs come after another
/// tenant's backlog is served beside it, not after it, by four replicas sharing the account.
#[tokio::test]
async fn replicas_serve_a_later_tenants_jobs_beside_an_earlier_tenants_backlog() {
    let mut deployment = Deployment::start(
        env!("CARGO_BIN_EXE_reelq-worker"),
        Duration::from_millis(300),
    )
    .await;
    deployment.account_extra = "max_in_flight = 2\nin_flight_slot_ttl_ms = 60000\n".into();
    let manifest = |tenant: &str, n: usize| -> String {
        let model = deployment.model();
        (0..n)
            .map(|i| {
                format!(
                    "{{\"provider\":\"kie\",\"model\":\"{model}\",\"prompt\":\"{tenant} {i}\",\"tenant\":\"{tenant}\"}}\n"
                )
            })
            .collect()
    };
    let enqueue = |text: String| {
        let client = deployment.client.clone();
        async move { client.enqueue_manifest(&text).await.unwrap().job_ids }
    };
    let backlog = enqueue(manifest("backlog", 12)).await;
    let _workers: Vec<_> = (0..4)
        .map(|n| deployment.spawn_worker_process(&format!("w{n}")))
        .collect();
    let later = enqueue(manifest("later", 4)).await;

    let all: Vec<_> = backlog.iter().chain(&later).copied().collect();
    let records = deployment.settled(&all).await;
    deployment.assert_stored_once(&records);
    let started = |ids: &[reelq_core::JobId]| -> Vec<u64> {
        let mut at: Vec<u64> = records
            .iter()
            .filter(|record| ids.contains(&record.job_id))
            .map(|record| record.submit_ms.expect("submitted"))
            .collect();
        at.sort();
        at
    };
    let (backlog_at, later_at) = (started(&backlog), started(&later));
    // In turn with the backlog: all four start before the backlog's last three (first in,
    // first out, they would start after all twelve).
    assert!(
        later_at[3] < backlog_at[9],
        "later {later_at:?}, backlog {backlog_at:?}"
    );
    assert_eq!(
        deployment.sim.stats().max_in_flight,
        2,
        "the account's two slots were both used"
    );
}
