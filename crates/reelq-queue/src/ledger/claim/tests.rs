//! A split claim's races (the home has a slot of its own), which cannot be ordered from
//! outside: `settled.lua`'s put-back after two claims both saw a slot free (the second's take
//! refused after its claim found its job's tenant queue empty and took the tenant out of the
//! ranking), and a worker that died between its claim and its settle. The scripts are run
//! here on the state each race leaves.

use std::time::Duration;

use reelq_core::{Aspect, BatchOptions, JobId, JobSpec, ProviderKind, Quality};
use reelq_testkit::RedisServer;

use crate::{ClaimOptions, Held, HomeSlot, Ledger, LedgerConfig, own_accounts, scripts::settled};

/// A kie job of `prompt`.
fn job(prompt: &str) -> JobSpec {
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

#[tokio::test]
async fn a_job_put_back_ranks_its_tenant_again() {
    let redis = RedisServer::start().unwrap();
    let config = LedgerConfig {
        home_slot: HomeSlot::Own,
        ..LedgerConfig::new(redis.url(), "t")
    };
    let ledger = Ledger::connect(&config).await.unwrap();
    let job = JobSpec {
        tenant: Some("acme".parse().unwrap()),
        ..job("put back")
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

/// A split claim reserves its job's batch budget in the partition and the settle writes the
/// reservation into the job; a worker that dies between the two leaves `bpending` on the
/// job, and the job's next claim gives that back before reserving again, so the batch holds
/// one reservation per job, not two.
#[tokio::test]
async fn a_claim_whose_settle_never_came_leaves_no_batch_reservation_behind() {
    let redis = RedisServer::start().unwrap();
    let config = LedgerConfig {
        home_slot: HomeSlot::Own,
        ..LedgerConfig::new(redis.url(), "t")
    };
    let ledger = Ledger::connect(&config).await.unwrap();
    let priced = |prompt: &str| JobSpec {
        estimated_cost_usd: Some(0.30),
        ..job(prompt)
    };
    let (batch, ids) = ledger.new_ids(2, None);
    let jobs = [(ids[0], priced("first")), (ids[1], priced("second"))];
    let options = BatchOptions {
        budget_micros: Some(1_000_000),
        ..BatchOptions::default()
    };
    ledger
        .enqueue(Some((batch, &options)), &jobs)
        .await
        .unwrap();
    // A rate limit, so each claimed job takes a request token at the home.
    let limits = [crate::ProviderLimit {
        account: "kie".parse().unwrap(),
        requests_per_s: 100.0,
        burst: 10,
        max_in_flight: 0,
        slot_ttl: Duration::from_secs(600),
        daily_budget_micros: 0,
        uncertain_slot_ttl: Duration::from_secs(600),
    }];
    let options = ClaimOptions {
        owner: "w",
        max_jobs: 1,
        lease: Duration::ZERO,
        resubmit_uncertain: false,
        limits: &limits,
        accounts: own_accounts(),
    };

    // The worker's claim script ran; the worker died before its settle.
    let part = ledger.part_of(&batch.to_string());
    let view = ledger.claim_view(&options).await.unwrap();
    let args = super::claim_args(&options, 1, "dead-worker", Some(&view));
    let mut conn = part.conn().await.unwrap();
    let (reply, _) = crate::scripts::run_leaving_home(&mut conn, ledger.place(part), &args)
        .await
        .unwrap();
    assert_eq!(reply.claimed.len(), 1);
    let reserved = || async {
        ledger
            .batch_info(batch)
            .await
            .unwrap()
            .unwrap()
            .reserved_micros
    };
    assert_eq!(reserved().await, 300_000);

    // Its lease over, the job is claimed again with the other.
    let again = ledger
        .claim(&ClaimOptions {
            max_jobs: 2,
            lease: Duration::from_secs(30),
            ..options
        })
        .await
        .unwrap();
    assert_eq!(again.leases.len(), 2);
    assert_eq!(reserved().await, 600_000, "one reservation per job");
    for id in ids {
        let pending: Option<String> = redis::cmd("HGET")
            .arg(part.key(format!("job:{id}")))
            .arg("bpending")
            .query_async(&mut conn)
            .await
            .unwrap();
        assert_eq!(pending, None, "settled: the reservation is the job's");
    }
}
