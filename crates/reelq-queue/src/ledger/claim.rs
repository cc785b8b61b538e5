//! The claim (`claim.lua`, its edge in `scripts/claim.rs`): a worker takes due jobs, each under
//! a fresh fence and lease, and hears which jobs a limit held back.

use std::{collections::BTreeMap, sync::LazyLock, time::Duration};

use reelq_core::{AccountName, ErrorClass, ProviderKind};

use std::sync::atomic::Ordering;

use super::{Ledger, Part, ProviderLimit};
use crate::{
    Durability, Lease, QueueError, Transition,
    connection::Conn,
    durability,
    lease::lease_of,
    scripts::{self, home},
};

/// How a claim's takes at a home of its own ended (`Ledger::settle`).
#[derive(Default)]
struct Settled {
    /// Jobs put back, each with the limit that held it.
    put_back: Vec<(String, scripts::claim::Held)>,
    /// Routed jobs leaving their candidate instead.
    leaving: Vec<String>,
}

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
    /// Takes up to `options.max_jobs` due jobs, each leased to `options.owner`. A ledger of
    /// several partitions is claimed from in turn: each claim starts at the next partition
    /// and goes on to the following ones only while it has room, so a busy partition fills a
    /// claim without starving a quiet one, and the home's view is read again only after a
    /// partition took something.
    pub async fn claim(&self, options: &ClaimOptions<'_>) -> Result<Claim, QueueError> {
        let partitions = self.parts().len();
        let first = self.safety.claim_turn.fetch_add(1, Ordering::Relaxed);
        let mut claim = Claim {
            leases: Vec::new(),
            next_due_in: None,
            waits: Vec::new(),
        };
        let mut view = None;
        let mut failed = None;
        for turn in 0..partitions {
            let room = options.max_jobs.saturating_sub(claim.leases.len());
            if room == 0 {
                break;
            }
            let part = &self.parts()[(first + turn) % partitions];
            // A partition beside the home (a legacy one) reads the home itself.
            let beside_home = self.place(part).home.is_none();
            if !beside_home && view.is_none() {
                view = Some(self.claim_view(options).await?);
            }
            let part_view = view.as_ref().filter(|_| !beside_home);
            // A partition that fails (its slot moving, its master failing over) is passed
            // over: the leases other partitions gave this claim are not thrown away.
            let one = match self.claim_in(part, options, room, part_view).await {
                Ok(one) => one,
                Err(err) => {
                    tracing::warn!(partition = part.index, error = %err, "a partition's claim failed; claiming from the others");
                    failed.get_or_insert(err);
                    continue;
                }
            };
            if !one.leases.is_empty() {
                view = None;
            }
            claim.leases.extend(one.leases);
            claim.waits.extend(one.waits);
            claim.next_due_in = match (claim.next_due_in, one.next_due_in) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
        }
        match (claim.leases.is_empty(), failed) {
            (true, Some(err)) => return Err(err),
            (false, _) => claim.next_due_in = None,
            (true, None) => {}
        }
        Ok(claim)
    }

    /// What the claim must know of the home (a home of its own): every pause, bucket and
    /// spend of the accounts it may act for, and the capped tenants' slots and spend.
    async fn claim_view(
        &self,
        options: &ClaimOptions<'_>,
    ) -> Result<scripts::claim_view::Reply, QueueError> {
        let mut names: Vec<&str> = options
            .limits
            .iter()
            .map(|limit| limit.account.as_str())
            .chain(options.accounts.iter().map(|(account, _)| account.as_str()))
            .collect();
        names.sort_unstable();
        names.dedup();
        let accounts = names
            .into_iter()
            .map(|name| {
                let limit = options
                    .limits
                    .iter()
                    .find(|limit| limit.account.as_str() == name);
                scripts::claim_view::AccountAsk {
                    name,
                    rate: limit.is_some_and(|limit| limit.requests_per_s > 0.0),
                    slots: limit.is_some_and(|limit| limit.max_in_flight > 0),
                    daily: limit.is_some_and(|limit| limit.daily_budget_micros > 0),
                }
            })
            .collect();
        self.run_at_home(&scripts::claim_view::Args { accounts })
            .await
    }

    /// Claims up to `max_jobs` of one partition's due jobs.
    async fn claim_in(
        &self,
        part: &Part,
        options: &ClaimOptions<'_>,
        max_jobs: usize,
        view: Option<&scripts::claim_view::Reply>,
    ) -> Result<Claim, QueueError> {
        let token = format!("{:016x}", rand::random::<u64>());
        let mut conn = part.conn().await?;
        let args = claim_args(options, max_jobs, &token, view);
        let (reply, effects) =
            scripts::run_leaving_home(&mut conn, self.place(part), &args).await?;
        let Settled { put_back, leaving } = self
            .settle(part, &mut conn, &token, reply.now_ms, effects)
            .await?;
        let mut leases = Vec::with_capacity(reply.claimed.len());
        for mut claimed in reply.claimed {
            if put_back.iter().any(|held| held.0 == claimed.id) {
                continue;
            }
            if leaving.contains(&claimed.id) {
                claimed.fall_back = Some(reelq_core::FallbackReason::SlotWait);
            }
            match lease_of(claimed, &token) {
                Ok(lease) => leases.push(lease),
                Err((job_id, fence, detail)) => {
                    self.fail_corrupt(part, &job_id, fence, &token, &detail)
                        .await?
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
            .chain(put_back.into_iter().map(|(_, held)| held))
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

    /// Where the home has a slot of its own: makes at the home what the claim's jobs take there
    /// (and the rest of its home effects), then ends the claim in the partition
    /// (`settled.lua`). A job whose take was made gets the fields it earned; one refused is put
    /// back, unless it is a routed job its account's limit would hold past its patience: it
    /// leaves its candidate, as the claim itself would have sent it (claim.lua's `leaves`).
    async fn settle(
        &self,
        part: &Part,
        conn: &mut Conn,
        token: &str,
        now_ms: i64,
        mut effects: Vec<home::Effect>,
    ) -> Result<Settled, QueueError> {
        let mut settled = Settled::default();
        let Some(home) = self.place(part).home.filter(|_| !effects.is_empty()) else {
            return Ok(settled);
        };
        let taken: Vec<(String, String, home::Back)> = effects
            .iter_mut()
            .filter_map(|effect| match effect {
                home::Effect::Take(take) => Some((
                    take.id.clone(),
                    take.account.clone(),
                    std::mem::take(&mut take.back),
                )),
                _ => None,
            })
            .collect();
        let mut home_conn = self.home_conn().await?;
        let refusals = home::make(&mut home_conn, home, effects).await?;
        if taken.is_empty() {
            return Ok(settled);
        }
        // What a made take reserved must outlive a failover of the home's master before its
        // job's create is paid for (the create's own write is made durable in the partition).
        if let (Durability::Replicas { n }, true) =
            (self.safety.durability, refusals.len() < taken.len())
            && let Err(err) =
                durability::wait_for_replicas(&mut home_conn, n, self.safety.replica_wait).await
        {
            self.safety.replicas_behind.store(true, Ordering::SeqCst);
            return Err(err);
        }
        let mut args = scripts::settled::Args {
            token,
            kept: Vec::new(),
            refused: Vec::new(),
        };
        for (id, account, back) in &taken {
            let kept = |granted: bool| scripts::settled::Kept {
                id,
                fence: back.fence,
                reserved: back.grant.reserved.as_deref().filter(|_| granted),
                reserved_day: back.grant.reserved_day.filter(|_| granted),
                tslot: granted && back.grant.tslot,
                aslot: granted && back.grant.aslot,
                batch: back.batch.as_deref(),
                give_back: if granted { 0 } else { back.batch_cost },
            };
            let Some(refused) = refusals.iter().find(|refused| refused.id == *id) else {
                args.kept.push(kept(true));
                continue;
            };
            let leaves = matches!(
                refused.limit,
                Wait::Rate | Wait::InFlight | Wait::DailyBudget
            ) && back
                .leave_at
                .is_some_and(|at| now_ms + refused.wait_ms as i64 > at);
            if leaves {
                args.kept.push(kept(false));
                settled.leaving.push(id.clone());
                continue;
            }
            args.refused.push(scripts::settled::PutBack {
                id,
                fence: back.fence,
                queue: &back.queue,
                tenant: back.tenant.as_deref(),
                provider: &back.provider,
                batch: back.batch.as_deref(),
                batch_cost: back.batch_cost,
                wait_ms: refused.wait_ms,
            });
            let held = scripts::claim::Held {
                account: account.clone(),
                limit: refused.limit,
            };
            settled.put_back.push((id.clone(), held));
        }
        self.run_script(part, conn, &args).await?;
        Ok(settled)
    }

    /// A record a worker cannot read would be claimed forever: end it as `failed`.
    async fn fail_corrupt(
        &self,
        part: &Part,
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
        let mut conn = part.conn().await?;
        self.apply_move(part, &mut conn, job_id, fence, token, planned)
            .await?;
        Ok(())
    }
}

/// `claim.lua`'s arguments for a claim of up to `max_jobs` under `token`.
fn claim_args<'a>(
    options: &'a ClaimOptions<'_>,
    max_jobs: usize,
    token: &'a str,
    view: Option<&'a scripts::claim_view::Reply>,
) -> scripts::claim::Args<'a> {
    scripts::claim::Args {
        max_jobs,
        lease_ms: options.lease.as_millis() as u64,
        owner: options.owner,
        resubmit_uncertain: options.resubmit_uncertain,
        limits: options
            .limits
            .iter()
            .map(|limit| (limit.account.as_str(), limit.into()))
            .collect(),
        token,
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
        view,
    }
}

#[cfg(test)]
mod tests;
