//! Fair share between tenants, in the claim: a tenant's backlog delays another tenant's job by
//! one claim at most, and while both wait each gets its weight's share of an account's
//! capacity (start-time fair queuing over `P tenants`).

use std::collections::HashMap;

use reelq_core::{BatchId, BatchOptions, ErrorClass, JobId, TenantName};
use reelq_queue::{ClaimOptions, Ledger, Transition, TransitionOutcome};
use reelq_testkit::RedisServer;

use crate::ledger::{LEASE, claim_opts, kie_limit, ledger, spec};

/// The account's generations in flight at once: every claim fills what the last freed.
const SLOTS: usize = 4;

/// `n` jobs of `tenant`, enqueued as one batch (a large one is staged and released in
/// chunks, as a producer's overnight batch is).
async fn backlog(ledger: &Ledger, tenant: &str, n: usize) {
    let tenant: TenantName = tenant.parse().unwrap();
    let jobs: Vec<(JobId, _)> = (0..n)
        .map(|i| {
            let mut spec = spec(&format!("{tenant} shot {i}"));
            spec.tenant = Some(tenant.clone());
            (JobId::new(), spec)
        })
        .collect();
    ledger
        .enqueue(Some((BatchId::new(), &BatchOptions::default())), &jobs)
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
            served.push(TenantName::of(lease.job().spec().tenant.as_ref()).to_owned());
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
