//! The claim (`claim.lua`, its edge in `scripts/claim.rs`): a worker takes due jobs, each under
//! a fresh fence and lease, and hears which jobs a limit held back.

use std::{collections::BTreeMap, sync::LazyLock, time::Duration};

use reelq_core::{AccountName, ErrorClass, ProviderKind};

use super::{Ledger, ProviderLimit};
use crate::{Lease, QueueError, Transition, lease::lease_of, scripts};

/// Who claims, how much, and under which policy.
#[derive(Debug, Clone)]
pub struct ClaimOptions<'a> {
    /// Worker name, recorded on the job for operators.
    pub owner: &'a str,
    pub max_jobs: usize,
    pub lease: Duration,
    /// Requeue a submit whose lease expired instead of parking it `uncertain`. This can pay
    /// twice; operators opt in.
    pub resubmit_uncertain: bool,
    /// Cluster-wide limits per provider account; every replica should pass the same.
    pub limits: &'a [ProviderLimit],
    /// The accounts this worker has, with their contracts: a queued job that asked for a
    /// provider goes to the first of its accounts free to take it; jobs of accounts this
    /// worker does not have are left to replicas that have them.
    pub accounts: &'a [(AccountName, ProviderKind)],
}

/// Each contract's own account (`[providers.<contract>]`), with its contract: what a worker
/// with one account per provider claims for.
pub fn own_accounts() -> &'static [(AccountName, ProviderKind)] {
    static OWN: LazyLock<Vec<(AccountName, ProviderKind)>> = LazyLock::new(|| {
        ProviderKind::ALL
            .into_iter()
            .map(|kind| (kind.into(), kind))
            .collect()
    });
    &OWN
}

/// What one claim returned.
#[derive(Debug)]
pub struct Claim {
    pub leases: Vec<Lease>,
    /// When nothing was due: how long until the next job falls due, if any is scheduled.
    pub next_due_in: Option<Duration>,
    /// Jobs a limit held back, one per job.
    pub waits: Vec<LimitWait>,
}

/// A job a limit held back from this claim (and rescheduled for when it may go).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LimitWait {
    pub account: AccountName,
    pub limit: Wait,
}

/// Which limit held a job back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Wait {
    /// The account's request rate (a GCRA token).
    Rate,
    /// The account's generations in flight.
    InFlight,
    /// The account's daily budget is spent until the UTC day ends.
    DailyBudget,
    /// The job's tenant has as many generations in flight as its cap.
    TenantInFlight,
    /// The job's tenant has spent its daily or monthly budget.
    TenantBudget,
}

impl Wait {
    pub const ALL: [Wait; 5] = [
        Wait::Rate,
        Wait::InFlight,
        Wait::DailyBudget,
        Wait::TenantInFlight,
        Wait::TenantBudget,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Wait::Rate => "rate",
            Wait::InFlight => "in_flight",
            Wait::DailyBudget => "daily_budget",
            Wait::TenantInFlight => "tenant_in_flight",
            Wait::TenantBudget => "tenant_budget",
        }
    }
}

impl Ledger {
    /// Takes up to `options.max_jobs` due jobs, each leased to `options.owner`.
    pub async fn claim(&self, options: &ClaimOptions<'_>) -> Result<Claim, QueueError> {
        let token = format!("{:016x}", rand::random::<u64>());
        let args = scripts::claim::Args {
            max_jobs: options.max_jobs,
            lease_ms: options.lease.as_millis() as u64,
            owner: options.owner,
            resubmit_uncertain: options.resubmit_uncertain,
            limits: options
                .limits
                .iter()
                .map(|limit| (limit.account.as_str(), limit.into()))
                .collect(),
            token: &token,
            pools: options.accounts.iter().fold(
                BTreeMap::new(),
                |mut pools: BTreeMap<&'static str, Vec<&str>>, (account, contract)| {
                    pools
                        .entry(contract.as_str())
                        .or_default()
                        .push(account.as_str());
                    pools
                },
            ),
        };
        let reply = scripts::run(&mut self.conn().await?, self.place(), &args).await?;
        let mut leases = Vec::with_capacity(reply.claimed.len());
        for claimed in reply.claimed {
            match lease_of(claimed, &token) {
                Ok(lease) => leases.push(lease),
                Err((job_id, fence, detail)) => {
                    self.fail_corrupt(&job_id, fence, &token, &detail).await?
                }
            }
        }
        let next_due_in = reply
            .next_due_ms
            .filter(|_| leases.is_empty())
            .map(|next_due_ms| {
                Duration::from_millis(next_due_ms.saturating_sub(reply.now_ms).max(0) as u64)
            });
        let waits = reply
            .waits
            .into_iter()
            .map(|held| {
                let account = held.account.parse().map_err(|err: reelq_core::SpecError| {
                    QueueError::corrupt("the claim", format!("held account: {err}"))
                })?;
                Ok(LimitWait {
                    account,
                    limit: held.limit,
                })
            })
            .collect::<Result<_, QueueError>>()?;
        Ok(Claim {
            leases,
            next_due_in,
            waits,
        })
    }

    /// A record a worker cannot read would be claimed forever: end it as `failed`.
    async fn fail_corrupt(
        &self,
        job_id: &str,
        fence: u64,
        token: &str,
        detail: &str,
    ) -> Result<(), QueueError> {
        let planned = Transition::Failed {
            class: ErrorClass::Invalid,
            error: format!("corrupt ledger record: {detail}"),
        }
        .into_move();
        let mut conn = self.conn().await?;
        self.apply_move(&mut conn, job_id, fence, token, planned)
            .await?;
        Ok(())
    }
}
