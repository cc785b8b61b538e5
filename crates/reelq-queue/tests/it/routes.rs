//! Routes in the ledger: a job falling back is queued again at its route's next candidate with
//! its budget reservation given back; a held-back routed job leaves its candidate only when it
//! would still be waiting past its route's patience; budgets hold at each candidate's price
//! under four replicas claiming at once.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use reelq_core::{
    Catalog, FallbackReason, JobId, JobRequest, JobSpec, JobState, PriceRule, PriceTable,
    ProviderKind, TenantName,
};
use reelq_queue::{
    ClaimOptions, Lease, Ledger, ProviderLimit, TenantLimits, Transition, TransitionOutcome, Wait,
};
use reelq_testkit::{RedisServer, kie_then_fal_route};

use crate::ledger::{LEASE, claim_opts, layouts, ledger};

/// Two sellers of a Kling video: kie first at $0.50 for 5 s, fal next at $0.80.
fn routes() -> String {
    kie_then_fal_route("kling-now", "patience_s = 0")
        + &kie_then_fal_route("kling-patient", "patience_s = 600")
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// A job of `route` for `tenant`, validated and priced as a producer does.
fn routed(route: &str, prompt: &str, tenant: &str) -> JobSpec {
    let catalog = Catalog::built_in().with_file(&routes(), "test").unwrap();
    let price = |provider, usd_per_second| PriceRule {
        provider,
        model: "*".into(),
        quality: None,
        usd_per_second,
    };
    let prices = PriceTable {
        rules: vec![
            price(ProviderKind::Kie, 0.10),
            price(ProviderKind::Fal, 0.16),
        ],
    };
    JobRequest {
        route: Some(route.into()),
        prompt: Some(prompt.into()),
        duration_s: Some(5),
        tenant: Some(tenant.into()),
        ..JobRequest::default()
    }
    .validate(&catalog, now_ms())
    .unwrap()
    .priced(&prices, &catalog, 1)
    .unwrap()
}

async fn enqueue(ledger: &Ledger, specs: Vec<JobSpec>) -> Vec<JobId> {
    let (_, ids) = ledger.new_ids(specs.len(), None);
    let jobs: Vec<(JobId, JobSpec)> = ids.into_iter().zip(specs).collect();
    ledger.enqueue(None, &jobs).await.unwrap();
    jobs.into_iter().map(|(id, _)| id).collect()
}

async fn spent_today(ledger: &Ledger, tenant: &str) -> u64 {
    let shares = ledger.tenants().await.unwrap();
    let share = shares.iter().find(|share| share.tenant == tenant).unwrap();
    share.spent_today_micros
}

async fn set_daily_budget(ledger: &Ledger, tenant: &str, usd: f64) {
    let tenant: TenantName = tenant.parse().unwrap();
    let limits = TenantLimits {
        daily_micros: Some(reelq_core::usd_to_micros(usd)),
        ..Default::default()
    };
    ledger.set_tenant_limits(&tenant, limits).await.unwrap();
}

/// The fall back the worker makes for `lease`.
fn fall_back(lease: &Lease, reason: FallbackReason) -> Transition {
    let job = lease.job();
    let spec = job
        .spec()
        .fall_back(reason, job.account().as_str(), now_ms())
        .expect("a candidate after this one");
    Transition::FallBack {
        spec: Box::new(spec),
        reason,
        left: job.account().to_string(),
    }
}

#[tokio::test]
async fn a_job_falling_back_is_queued_at_its_next_candidate_with_its_reservation_given_back() {
    let redis = RedisServer::start().unwrap();
    for ledger in layouts(&redis).await {
        set_daily_budget(&ledger, "acme", 5.0).await;
        let [job_id] = enqueue(&ledger, vec![routed("kling-patient", "a fox", "acme")]).await[..]
        else {
            unreachable!()
        };

        let claim = ledger.claim(&claim_opts("w", 4, LEASE)).await.unwrap();
        let [Lease::Submit(lease)] = &claim.leases[..] else {
            panic!("one submit: {:?}", claim.leases)
        };
        assert_eq!(lease.fall_back(), None);
        assert_eq!(lease.job().account().as_str(), "kie");
        assert_eq!(spent_today(&ledger, "acme").await, 500_000);
        let begin = Transition::BeginSubmit {
            lease: LEASE,
            callback_token_hash: None,
        };
        ledger.transition(lease, begin).await.unwrap();
        // kie answered "out of credits": nothing was made.
        let lease = Lease::Submit(lease.clone());
        let moved = ledger
            .transition(&lease, fall_back(&lease, FallbackReason::Credits))
            .await
            .unwrap();
        assert_eq!(moved, TransitionOutcome::Applied);
        assert_eq!(spent_today(&ledger, "acme").await, 0, "given back");

        let record = ledger.job(job_id).await.unwrap().unwrap();
        assert_eq!(record.state, JobState::Queued);
        assert_eq!(record.account.as_str(), "fal");
        assert_eq!(record.spec.provider, ProviderKind::Fal);
        assert_eq!(record.spec.estimated_cost_usd, Some(0.8));
        let route = record.spec.route.as_ref().unwrap();
        assert_eq!((route.at, route.left.len()), (1, 1));
        assert_eq!(route.left[0].reason, FallbackReason::Credits);
        assert_eq!(record.submits, 1, "the one refused create is counted");

        // The next claim takes it at once, for fal, reserving fal's price.
        let claim = ledger.claim(&claim_opts("w", 4, LEASE)).await.unwrap();
        let [Lease::Submit(lease)] = &claim.leases[..] else {
            panic!("one submit: {:?}", claim.leases)
        };
        assert_eq!(lease.job().account().as_str(), "fal");
        assert_eq!(
            lease.job().spec().model,
            "fal-ai/kling-video/v2.6/pro/text-to-video"
        );
        assert_eq!(spent_today(&ledger, "acme").await, 800_000);
        let events = ledger.history(job_id).await.unwrap();
        assert!(
            events
                .iter()
                .any(|e| e.contains("queued credits: kie -> fal")),
            "{events:?}"
        );
    }
}

#[tokio::test]
async fn a_routed_job_held_back_leaves_its_candidate_only_if_it_would_wait_past_its_patience() {
    let redis = RedisServer::start().unwrap();
    let ledger = ledger(&redis).await;
    let kie = "kie".parse().unwrap();
    ledger
        .pause_account(&kie, Duration::from_secs(60))
        .await
        .unwrap();
    let ids = enqueue(
        &ledger,
        vec![
            routed("kling-now", "impatient", "acme"),
            routed("kling-patient", "patient", "acme"),
        ],
    )
    .await;

    let claim = ledger.claim(&claim_opts("w", 4, LEASE)).await.unwrap();
    let handed: Vec<(JobId, Option<FallbackReason>)> = claim
        .leases
        .iter()
        .map(|lease| match lease {
            Lease::Submit(submit) => (lease.job().job_id(), submit.fall_back()),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(
        handed,
        [(ids[0], Some(FallbackReason::Paused))],
        "a pause of a minute outlasts no patience but none"
    );

    // A pause of an hour outlasts ten minutes' patience.
    ledger
        .pause_account(&kie, Duration::from_secs(3600))
        .await
        .unwrap();
    let later = enqueue(
        &ledger,
        vec![routed("kling-patient", "patient too", "acme")],
    )
    .await;
    let claim = ledger.claim(&claim_opts("w", 4, LEASE)).await.unwrap();
    let handed: Vec<_> = claim.leases.iter().map(|l| l.job().job_id()).collect();
    assert_eq!(handed, later);
    let lease = &claim.leases[0];
    let moved = ledger
        .transition(lease, fall_back(lease, FallbackReason::Paused))
        .await
        .unwrap();
    assert_eq!(moved, TransitionOutcome::Applied);
    let record = ledger.job(later[0]).await.unwrap().unwrap();
    assert_eq!(
        (record.state, record.account.as_str()),
        (JobState::Queued, "fal")
    );
}

#[tokio::test]
async fn budgets_hold_at_each_candidates_price_under_four_replicas() {
    let redis = RedisServer::start().unwrap();
    for ledger in layouts(&redis).await {
        set_daily_budget(&ledger, "acme", 5.0).await;
        // kie's account may spend $2 a day: 4 jobs at $0.50. The rest move on to fal at $0.80,
        // where the tenant's $5 leaves room for 3 more ($4.40 in all); the others wait for the
        // tenant's next day (a tenant's budget is no reason to move on: it binds every candidate).
        let limits = [ProviderLimit {
            account: "kie".parse().unwrap(),
            requests_per_s: 0.0,
            burst: 1,
            max_in_flight: 0,
            slot_ttl: Duration::from_secs(600),
            daily_budget_micros: 2_000_000,
            uncertain_slot_ttl: Duration::ZERO,
        }];
        let specs = (0..20)
            .map(|i| routed("kling-now", &format!("shot {i}"), "acme"))
            .collect();
        enqueue(&ledger, specs).await;

        let mut submits: Vec<Lease> = Vec::new();
        let (mut fallbacks, mut held_for_tenant) = (0, 0);
        loop {
            let claims = futures_util::future::join_all(["w1", "w2", "w3", "w4"].map(|owner| {
                let ledger = ledger.clone();
                let limits = &limits;
                async move {
                    let options = ClaimOptions {
                        limits,
                        ..claim_opts(owner, 3, LEASE)
                    };
                    ledger.claim(&options).await.unwrap()
                }
            }))
            .await;
            let mut progress = false;
            for claim in claims {
                held_for_tenant += claim
                    .waits
                    .iter()
                    .filter(|wait| wait.limit == Wait::TenantBudget)
                    .count();
                for lease in claim.leases {
                    progress = true;
                    match &lease {
                        Lease::Submit(submit) if submit.fall_back().is_some() => {
                            let reason = submit.fall_back().unwrap();
                            assert_eq!(reason, FallbackReason::SlotWait, "kie's day is spent");
                            let moved = ledger
                                .transition(&lease, fall_back(&lease, reason))
                                .await
                                .unwrap();
                            assert_eq!(moved, TransitionOutcome::Applied);
                            fallbacks += 1;
                        }
                        _ => submits.push(lease),
                    }
                }
            }
            if !progress {
                break;
            }
        }
        let at = |account: &str| {
            submits
                .iter()
                .filter(|lease| lease.job().account().as_str() == account)
                .count()
        };
        assert_eq!((at("kie"), at("fal")), (4, 3), "not a cent over");
        assert_eq!(fallbacks, 16, "every job past kie's budget moved on once");
        assert!(held_for_tenant > 0);
        assert_eq!(spent_today(&ledger, "acme").await, 4_400_000);
        // Every job left waiting is still reachable: its tenant is ranked (a job a split
        // claim put back into its tenant's queue brings the tenant back into the ranking).
        for share in ledger.tenants().await.unwrap() {
            assert!(share.waiting == 0 || share.tag.is_some(), "{share:?}");
        }
    }
}
