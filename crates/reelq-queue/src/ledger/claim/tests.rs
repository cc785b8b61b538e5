//! `settled.lua`'s put-back, where the home has a slot of its own: the race that needs it (two
//! claims that both saw a slot free; the second's take refused after its claim found its
//! job's tenant queue empty and took the tenant out of the ranking) cannot be ordered from
//! outside, so the script is run here on the state that race leaves.

use std::time::Duration;

use reelq_core::{Aspect, JobId, JobSpec, ProviderKind, Quality};
use reelq_testkit::RedisServer;

use crate::{ClaimOptions, Held, HomeSlot, Ledger, LedgerConfig, own_accounts, scripts::settled};

#[tokio::test]
async fn a_job_put_back_ranks_its_tenant_again() {
    let redis = RedisServer::start().unwrap();
    let config = LedgerConfig {
        home_slot: HomeSlot::Own,
        ..LedgerConfig::new(redis.url(), "t")
    };
    let ledger = Ledger::connect(&config).await.unwrap();
    let job = JobSpec {
        provider: ProviderKind::Kie,
        account: None,
        model: "kling-3.0/video".into(),
        prompt: "put back".into(),
        duration_s: 10,
        aspect: Aspect::Landscape,
        quality: Quality::Standard,
        image_urls: vec![],
        character: None,
        notify_url: None,
        notify_events: vec![],
        deadline_ms: None,
        tenant: Some("acme".parse().unwrap()),
        estimated_cost_usd: None,
        request: None,
        route: None,
    };
    let job_id = JobId::new();
    ledger.enqueue(None, &[(job_id, job)]).await.unwrap();
    let options = ClaimOptions {
        owner: "w",
        max_jobs: 1,
        lease: Duration::from_secs(30),
        resubmit_uncertain: false,
        limits: &[],
        accounts: own_accounts(),
    };
    let claim = ledger.claim(&options).await.unwrap();
    let fence = claim.leases[0].fence().clone();
    // What the claim that took it did on finding the tenant's queue empty after it.
    let part = ledger.part_of(&job_id.to_string());
    let tenants = part.key("tenants");
    let mut conn = part.conn().await.unwrap();
    let _: () = redis::cmd("ZREM")
        .arg(&tenants)
        .arg("acme")
        .query_async(&mut conn)
        .await
        .unwrap();

    let id = job_id.to_string();
    let queue = part.key("queued:acme");
    let args = settled::Args {
        token: &fence.token,
        kept: Vec::new(),
        refused: vec![settled::PutBack {
            id: &id,
            fence: fence.fence,
            queue: &queue,
            tenant: Some("acme"),
            provider: "kie",
            batch: None,
            batch_cost: 0,
            wait_ms: 0,
        }],
    };
    ledger.run_script(part, &mut conn, &args).await.unwrap();

    let ranked: Option<f64> = redis::cmd("ZSCORE")
        .arg(&tenants)
        .arg("acme")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(ranked.is_some(), "the tenant is ranked again");
    let again = ledger.claim(&options).await.unwrap();
    assert_eq!(again.leases.len(), 1, "and its job is claimed");
    assert_eq!(again.leases[0].job_id(), job_id);
}
