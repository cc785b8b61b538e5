//! Small chaos runs in the production shape: the promise holds, and most jobs are stored,
//! under worker kills, Redis host power losses (or a Sentinel failover), provider and
//! gateway faults and dropped callbacks.

use std::time::Duration;

use reelq_core::ProviderKind;
use reelq_e2e::{
    RedisSetup,
    chaos::{self, ChaosPlan},
};

fn plan(redis_setup: RedisSetup, redis_restarts: usize) -> ChaosPlan {
    ChaosPlan {
        jobs: 100,
        workers: 3,
        kill_every: Duration::from_millis(2000),
        redis_setup,
        redis_restarts,
        providers: vec![ProviderKind::Kie, ProviderKind::Openai],
        gateway_faults: true,
        burst_every: Duration::from_millis(400),
        generation_time: Duration::from_millis(1500),
        timeout: Duration::from_secs(120),
        callback_drop_percent: 30,
        callback_duplicate_percent: 20,
    }
}

#[tokio::test]
async fn always_fsync_keeps_the_promise_through_power_losses_and_faults() {
    let plan = plan(RedisSetup::Always, 2);
    let report = chaos::run(env!("CARGO_BIN_EXE_reelq-worker").into(), &plan)
        .await
        .unwrap();

    println!("{report}");
    assert!(report.kept_the_promise(), "{report}");
    assert!(
        report.worker_kills > 0 && report.redis_restarts == 2 && report.fault_bursts > 0,
        "{report}"
    );
}

#[tokio::test]
async fn a_sentinel_failover_loses_nothing_and_pays_once() {
    let plan = plan(RedisSetup::Sentinel, 1);
    let report = chaos::run(env!("CARGO_BIN_EXE_reelq-worker").into(), &plan)
        .await
        .unwrap();

    println!("{report}");
    assert!(report.kept_the_promise(), "{report}");
    assert!(report.redis_restarts == 1, "{report}");
}
