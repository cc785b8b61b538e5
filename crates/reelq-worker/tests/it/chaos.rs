//! A small chaos run: the promise holds under worker kills, a Redis crash and provider faults.

use std::time::Duration;

use reelq_e2e::chaos::{self, ChaosPlan};

#[tokio::test]
async fn no_job_is_lost_or_paid_twice_under_kills_crashes_and_faults() {
    let plan = ChaosPlan {
        jobs: 60,
        workers: 3,
        kill_every: Duration::from_millis(700),
        redis_restarts: 1,
        burst_every: Duration::from_millis(400),
        generation_time: Duration::from_millis(1500),
        timeout: Duration::from_secs(90),
        callback_drop_percent: 30,
        callback_duplicate_percent: 20,
    };
    let report = chaos::run(env!("CARGO_BIN_EXE_reelq-worker").into(), &plan)
        .await
        .unwrap();

    assert!(report.kept_the_promise(), "{report}");
    assert_eq!(report.stored + report.uncertain, plan.jobs, "{report}");
    assert!(
        report.worker_kills > 0 && report.redis_restarts == 1,
        "{report}"
    );
}
