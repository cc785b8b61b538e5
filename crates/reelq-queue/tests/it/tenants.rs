//! Fair share between tenants, in the claim: a tenant's backlog delays another tenant's job by
//! one claim at most, and while both wait each gets its weight's share of an account's
//! capacity (start-time fair queuing over `P tenants`).

use std::collections::HashMap;

use reelq_core::{BatchOptions, ErrorClass, JobId, TenantName};
use reelq_queue::{ClaimOptions, Ledger, QueueError, TenantLimits, Transition, TransitionOutcome};
use reelq_testkit::RedisServer;

use crate::ledger::{LEASE, claim_opts, kie_limit, layouts, ledger, spec, stored};

/// The account's generations in flight at once: every claim fills what the last freed.
const SLOTS: usize = 4;

/// `n` jobs of `tenant`, enqueued as one batch (a large one is staged and released in
/// chunks, as a producer's overnight batch is), in the same partition as every backlog.
async fn backlog(ledger: &Ledger, tenant: &str, n: usize) {
    let tenant: TenantName = tenant.parse().unwrap();
    // Every backlog in one partition: what one claim shares between tenants.
    let (batch_id, ids) = ledger.new_ids(n, Some("backlogs"));
    let jobs: Vec<(JobId, _)> = ids
        .into_iter()
        .enumerate()
        .map(|(i, id)| {
            let mut spec = spec(&format!("{tenant} shot {i}"));
            spec.tenant = Some(tenant.clone());
            (id, spec)
        })
        .collect();
    ledger
        .enqueue(Some((batch_id, &BatchOptions::default())), &jobs)
        .await
        .unwrap();
}

/// A deployment whose one account takes SLOTS generations at a time, as its workers see it.
struct Account<'a> {
    ledger: &'a Ledger,
    limits: [reelq_queue::ProviderLimit; 1],
}

impl Account<'_> {
    fn options(&self) -> ClaimOptions<'_> {
        ClaimOptions {
            limits: &self.limits,
            ..claim_opts("w", SLOTS, LEASE)
        }
    }

    /// One claim round: takes what the account has room for, and ends each job at once (its
    /// slot is free for the next round). The tenants served, in order.
    async fn round(&self) -> Vec<String> {
        let claim = self.ledger.claim(&self.options()).await.unwrap();
        let mut served = Vec::new();
        for lease in claim.leases {
            served.push(lease.job().spec().tenant_name().to_owned());
            let ended = Transition::Failed {
                class: ErrorClass::Invalid,
                error: "ended by the test".into(),
            };
            assert_eq!(
                self.ledger.transition(&lease, ended).await.unwrap(),
                TransitionOutcome::Applied
            );
        }
        served
    }

    /// The tenants served over `rounds` rounds, counted.
    async fn shares(&self, rounds: usize) -> HashMap<String, usize> {
        let mut shares = HashMap::new();
        for _ in 0..rounds {
            let served = self.round().await;
            assert_eq!(served.len(), SLOTS, "the account is kept full");
            for tenant in served {
                *shares.entry(tenant).or_default() += 1;
            }
        }
        shares
    }
}

/// Whether `got` is within 10 % of `want`.
fn near(got: usize, want: usize) -> bool {
    got.abs_diff(want) * 10 <= want
}

#[tokio::test]
async fn a_tenants_backlog_delays_anothers_job_by_one_claim_and_equal_weights_share_alike() {
    let redis = RedisServer::start().unwrap();
    let ledger = ledger(&redis).await;
    let account = Account {
        ledger: &ledger,
        limits: kie_limit(0.0, 1, SLOTS as u32),
    };
    backlog(&ledger, "overnight", 10_000).await;
    for _ in 0..25 {
        assert_eq!(account.round().await, ["overnight"; SLOTS]);
    }

    // Another tenant's jobs come later, behind 9,900 queued: its first is in the next round.
    backlog(&ledger, "urgent", 1_000).await;
    let next = account.round().await;
    assert!(next.iter().any(|tenant| tenant == "urgent"), "{next:?}");
    let overnight_next = next.iter().filter(|tenant| *tenant == "overnight").count();

    // While both wait, each has half of the account.
    let shares = account.shares(100).await;
    eprintln!("equal weights, 100 rounds of {SLOTS}: {shares:?}");
    assert!(near(shares["urgent"], 200), "{shares:?}");
    assert!(near(shares["overnight"], 200), "{shares:?}");

    // What an operator sees: both waiting, the one served less ranked first.
    let tenants = ledger.tenants().await.unwrap();
    let waiting: HashMap<&str, u64> = tenants
        .iter()
        .map(|share| (share.tenant.as_str(), share.waiting))
        .collect();
    let overnight_served = 100 + overnight_next + shares["overnight"];
    assert_eq!(waiting["overnight"], 10_000 - overnight_served as u64);
    assert!(
        tenants
            .iter()
            .all(|share| share.weight == 1.0 && share.tag.is_some())
    );
}

#[tokio::test]
async fn weights_three_to_one_share_three_to_one_and_an_idle_tenant_earns_no_credit() {
    let redis = RedisServer::start().unwrap();
    let ledger = ledger(&redis).await;
    let account = Account {
        ledger: &ledger,
        limits: kie_limit(0.0, 1, SLOTS as u32),
    };
    ledger
        .set_tenant_weight(&"studio".parse().unwrap(), Some(3.0))
        .await
        .unwrap();
    assert!(
        ledger
            .set_tenant_weight(&"studio".parse().unwrap(), Some(0.0))
            .await
            .is_err(),
        "a weight of 0 would starve the tenant"
    );
    backlog(&ledger, "studio", 2_000).await;
    backlog(&ledger, "hobby", 2_000).await;
    let shares = account.shares(100).await;
    eprintln!("weights 3:1, 100 rounds of {SLOTS}: {shares:?}");
    assert!(near(shares["studio"], 300), "{shares:?}");
    assert!(near(shares["hobby"], 100), "{shares:?}");

    // A tenant that drained and comes back starts level with the others, with no credit
    // for the time it had nothing waiting: it takes its share, not the account.
    backlog(&ledger, "burst", 4).await;
    let mut served = 0;
    for _ in 0..10 {
        served += account
            .round()
            .await
            .iter()
            .filter(|t| *t == "burst")
            .count();
    }
    assert_eq!(served, 4, "its few jobs go within a few rounds");
    account.shares(50).await;
    backlog(&ledger, "burst", 400).await;
    let shares = account.shares(50).await;
    assert!(near(shares["burst"], 40), "1 of 5 by weight: {shares:?}");
}

#[tokio::test]
async fn a_tenants_caps_hold_its_generations_in_flight_and_its_jobs_waiting() {
    let redis = RedisServer::start().unwrap();
    for ledger in layouts(&redis).await {
        let capped: TenantName = "capped".parse().unwrap();
        let caps = TenantLimits {
            max_in_flight: Some(2),
            max_waiting: Some(600),
            ..Default::default()
        };
        ledger.set_tenant_limits(&capped, caps).await.unwrap();
        let limits = kie_limit(0.0, 1, 8);

        // Waiting: 600 fit; one more, alone or in a staged batch, is refused whole.
        backlog(&ledger, "capped", 600).await;
        let one_more = {
            let mut spec = spec("one too many");
            spec.tenant = Some(capped.clone());
            vec![(ledger.new_ids(1, None).1[0], spec)]
        };
        let refused = ledger.enqueue(None, &one_more).await.unwrap_err();
        assert!(
            matches!(&refused, QueueError::TenantBacklog { tenant, waiting: 600, max: 600 } if tenant == "capped"),
            "{refused}"
        );
        assert!(
            ledger.job(one_more[0].0).await.unwrap().is_none(),
            "nothing written"
        );
        backlog(&ledger, "other", 100).await;

        // In flight: of the account's 8 slots, the capped tenant takes 2, whichever replica
        // claims; the other tenant has the rest.
        let mut held = Vec::new();
        for owner in ["w1", "w2", "w3", "w4"] {
            let options = ClaimOptions {
                limits: &limits,
                ..claim_opts(owner, 2, LEASE)
            };
            held.extend(ledger.claim(&options).await.unwrap().leases);
        }
        let of = |tenant: &str, leases: &[reelq_queue::Lease]| {
            leases
                .iter()
                .filter(|lease| lease.job().spec().tenant_name() == tenant)
                .count()
        };
        assert_eq!((of("capped", &held), of("other", &held)), (2, 6));

        // A capped job's generation: submitted, polled (its slot renewed), stored (given back).
        let capped_lease = held
            .iter()
            .find(|lease| lease.job().spec().tenant_name() == "capped")
            .unwrap()
            .clone();
        let begin = Transition::BeginSubmit {
            lease: LEASE,
            callback_token_hash: None,
        };
        ledger.transition(&capped_lease, begin).await.unwrap();
        let submitted = Transition::Submitted {
            task_id: "t-capped".into(),
            first_poll: std::time::Duration::ZERO,
        };
        ledger.transition(&capped_lease, submitted).await.unwrap();
        let in_flight = |ledger: &Ledger| {
            let ledger = ledger.clone();
            async move {
                let tenants = ledger.tenants().await.unwrap();
                tenants
                    .iter()
                    .find(|share| share.tenant == "capped")
                    .unwrap()
                    .in_flight
            }
        };
        assert_eq!(in_flight(&ledger).await, 2, "waiting keeps the slot");
        for lease in held {
            if lease.job_id() == capped_lease.job_id() {
                continue;
            }
            let ended = Transition::Failed {
                class: ErrorClass::Invalid,
                error: "ended by the test".into(),
            };
            ledger.transition(&lease, ended).await.unwrap();
        }
        assert_eq!(in_flight(&ledger).await, 1);
        let options = ClaimOptions {
            limits: &limits,
            ..claim_opts("w1", 8, LEASE)
        };
        let next = ledger.claim(&options).await.unwrap().leases;
        // The poll of the waiting job, one more capped submit, and six of the other's.
        assert_eq!(of("capped", &next), 2, "the poll and one submit");
        assert_eq!(in_flight(&ledger).await, 2);
        let poll = next
            .iter()
            .find(|lease| lease.job_id() == capped_lease.job_id())
            .unwrap();
        let stored = stored();
        ledger.transition(poll, stored).await.unwrap();
        assert_eq!(
            in_flight(&ledger).await,
            1,
            "stored: its slot is given back"
        );
    }
}

#[tokio::test]
async fn a_tenants_daily_and_monthly_budgets_are_exact_under_concurrent_claims() {
    let redis = RedisServer::start().unwrap();
    for ledger in layouts(&redis).await {
        let budget = |daily: Option<f64>, monthly: Option<f64>| TenantLimits {
            daily_micros: daily.map(reelq_core::usd_to_micros),
            monthly_micros: monthly.map(reelq_core::usd_to_micros),
            ..Default::default()
        };
        let (daily, monthly): (TenantName, TenantName) =
            ("daily".parse().unwrap(), "monthly".parse().unwrap());
        ledger
            .set_tenant_limits(&daily, budget(Some(5.0), None))
            .await
            .unwrap();
        ledger
            .set_tenant_limits(&monthly, budget(None, Some(2.0)))
            .await
            .unwrap();
        // Each job is estimated at $0.50: 10 fit the daily budget, 4 the monthly one.
        for (tenant, n) in [("daily", 30), ("monthly", 30), ("free", 10)] {
            let tenant: TenantName = tenant.parse().unwrap();
            let jobs: Vec<(JobId, _)> = ledger
                .new_ids(n, None)
                .1
                .into_iter()
                .enumerate()
                .map(|(i, id)| {
                    let mut spec = spec(&format!("{tenant} {i}"));
                    spec.tenant = Some(tenant.clone());
                    spec.estimated_cost_usd = Some(0.5);
                    (id, spec)
                })
                .collect();
            ledger.enqueue(None, &jobs).await.unwrap();
        }

        // Four replicas claim at once, again and again, until nothing more can go.
        let mut taken: Vec<reelq_queue::Lease> = Vec::new();
        let mut held_for_budget = 0;
        loop {
            let claims = futures_util::future::join_all(["w1", "w2", "w3", "w4"].map(|owner| {
                let ledger = ledger.clone();
                async move { ledger.claim(&claim_opts(owner, 8, LEASE)).await.unwrap() }
            }))
            .await;
            let before = taken.len();
            for claim in claims {
                held_for_budget += claim
                    .waits
                    .iter()
                    .filter(|wait| wait.limit == reelq_queue::Wait::TenantBudget)
                    .count();
                taken.extend(claim.leases);
            }
            if taken.len() == before {
                break;
            }
        }
        let of = |tenant: &str, leases: &[reelq_queue::Lease]| {
            leases
                .iter()
                .filter(|lease| lease.job().spec().tenant_name() == tenant)
                .count()
        };
        assert_eq!(
            (
                of("daily", &taken),
                of("monthly", &taken),
                of("free", &taken)
            ),
            (10, 4, 10),
            "not a cent over"
        );
        assert!(held_for_budget > 0);
        let shares = ledger.tenants().await.unwrap();
        let spent = |tenant: &str| {
            let share = shares.iter().find(|share| share.tenant == tenant).unwrap();
            (share.spent_today_micros, share.spent_this_month_micros)
        };
        assert_eq!(spent("daily"), (5_000_000, 0));
        assert_eq!(spent("monthly"), (0, 2_000_000));

        // A create the provider refused costs nothing: its reservation comes back (the jobs the
        // budget held wait for the next day, as an account's daily budget holds them).
        let refused = taken
            .iter()
            .find(|lease| lease.job().spec().tenant_name() == "daily")
            .unwrap();
        let begin = Transition::BeginSubmit {
            lease: LEASE,
            callback_token_hash: None,
        };
        ledger.transition(refused, begin).await.unwrap();
        let no = Transition::Failed {
            class: ErrorClass::Invalid,
            error: "the provider refused the request".into(),
        };
        ledger.transition(refused, no).await.unwrap();
        let shares = ledger.tenants().await.unwrap();
        let daily_share = shares.iter().find(|share| share.tenant == "daily").unwrap();
        assert_eq!(daily_share.spent_today_micros, 4_500_000);
        // So does a claimed job that ends before its submit began (its model retired, say).
        let unsent = taken
            .iter()
            .filter(|lease| lease.job().spec().tenant_name() == "daily")
            .nth(1)
            .unwrap();
        let retired = Transition::Failed {
            class: ErrorClass::ModelUnavailable,
            error: "model retired; nothing was sent".into(),
        };
        ledger.transition(unsent, retired).await.unwrap();
        let shares = ledger.tenants().await.unwrap();
        let daily_share = shares.iter().find(|share| share.tenant == "daily").unwrap();
        assert_eq!(daily_share.spent_today_micros, 4_000_000);
    }
}

#[tokio::test]
async fn a_tenant_whose_jobs_its_account_holds_back_does_not_hold_back_another_tenant() {
    let redis = RedisServer::start().unwrap();
    let ledger = ledger(&redis).await;
    // 1,500 jobs at a full account (one slot), more than a claim scans; 5 at another account.
    backlog(&ledger, "stuck", 1_500).await;
    let free: TenantName = "free".parse().unwrap();
    let elsewhere: Vec<(JobId, _)> = (0..5)
        .map(|i| {
            let mut spec = spec(&format!("elsewhere {i}"));
            spec.provider = reelq_core::ProviderKind::Fal;
            spec.model = "fal-ai/veo3.1/fast".into();
            spec.tenant = Some(free.clone());
            (JobId::new(), spec)
        })
        .collect();
    ledger.enqueue(None, &elsewhere).await.unwrap();
    let options = ClaimOptions {
        limits: &kie_limit(0.0, 1, 1),
        ..claim_opts("w", 8, LEASE)
    };
    let claim = ledger.claim(&options).await.unwrap();
    let of = |tenant: &str| {
        claim
            .leases
            .iter()
            .filter(|lease| lease.job().spec().tenant_name() == tenant)
            .count()
    };
    assert_eq!(
        (of("stuck"), of("free")),
        (1, 5),
        "the other account's jobs all go"
    );
    assert!(
        claim.waits.len() <= 8,
        "the stuck tenant is passed over, its backlog not held back job by job: {}",
        claim.waits.len()
    );
}
