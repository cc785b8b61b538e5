//! The claim (`claim.lua`): a worker takes due jobs, each under a fresh fence and lease, and
//! hears which jobs a limit held back. The script's reply is read here into types, once.

use std::{sync::LazyLock, time::Duration};

use redis::{FromRedisValue, ParsingError, Script, Value};
use reelq_core::{AccountName, ErrorClass, JobId, JobSpec, JobState, ProviderKind};

use super::{Lease, Ledger, ProviderLimit};
use crate::{QueueError, Transition};

static CLAIM: LazyLock<Script> = ledger_script!("claim.lua");

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
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wait {
    /// The account's request rate (a GCRA token).
    Rate,
    /// The account's generations in flight.
    InFlight,
    /// The account's daily budget is spent until the UTC day ends.
    DailyBudget,
}

impl Wait {
    pub const ALL: [Wait; 3] = [Wait::Rate, Wait::InFlight, Wait::DailyBudget];

    pub fn as_str(self) -> &'static str {
        match self {
            Wait::Rate => "rate",
            Wait::InFlight => "in_flight",
            Wait::DailyBudget => "daily_budget",
        }
    }
}

/// The script's reply: `{now_ms, next_due_ms or -1, {row, ...}, {"<account> <limit>", ...}}`.
struct ClaimReply {
    now_ms: i64,
    next_due_ms: i64,
    rows: Vec<ClaimedRow>,
    waits: Vec<LimitWait>,
}

/// One job taken: `{id, state, fence, spec, task_id, attempt, result_url, polls, account,
/// low, cancel}` (empty strings for none; `low` 1 for a queued job of a low-priority batch,
/// `cancel` 1 for a waiting job an operator asked to cancel, 2 once its provider answered the
/// ask).
struct ClaimedRow {
    id: String,
    state: String,
    fence: u64,
    spec: String,
    task_id: String,
    attempt: u32,
    result_url: String,
    polls: u32,
    account: String,
    low_priority: bool,
    cancel_requested: bool,
    cancel_answered: bool,
}

impl FromRedisValue for ClaimReply {
    fn from_redis_value(value: Value) -> Result<Self, ParsingError> {
        let (now_ms, next_due_ms, rows, waits): (i64, i64, Vec<ClaimedRow>, Vec<String>) =
            FromRedisValue::from_redis_value(value)?;
        let waits = waits
            .iter()
            .map(|wait| {
                let parsed = wait.split_once(' ').and_then(|(account, limit)| {
                    let limit = match limit {
                        "rate" => Wait::Rate,
                        "in_flight" => Wait::InFlight,
                        "daily_budget" => Wait::DailyBudget,
                        _ => return None,
                    };
                    Some(LimitWait {
                        account: account.parse().ok()?,
                        limit,
                    })
                });
                parsed.ok_or_else(|| ParsingError::from(format!("claim wait {wait:?}")))
            })
            .collect::<Result<_, _>>()?;
        Ok(ClaimReply {
            now_ms,
            next_due_ms,
            rows,
            waits,
        })
    }
}

impl FromRedisValue for ClaimedRow {
    fn from_redis_value(value: Value) -> Result<Self, ParsingError> {
        let (id, state, fence, spec, task_id, attempt, result_url, polls, account, low, cancel): (
            _,
            _,
            _,
            _,
            _,
            _,
            _,
            _,
            _,
            u8,
            u8,
        ) = FromRedisValue::from_redis_value(value)?;
        Ok(ClaimedRow {
            id,
            state,
            fence,
            spec,
            task_id,
            attempt,
            result_url,
            polls,
            account,
            low_priority: low == 1,
            cancel_requested: cancel >= 1,
            cancel_answered: cancel == 2,
        })
    }
}

impl Ledger {
    /// Takes up to `options.max_jobs` due jobs, each leased to `options.owner`.
    pub async fn claim(&self, options: &ClaimOptions<'_>) -> Result<Claim, QueueError> {
        let limits: Vec<String> = options.limits.iter().map(ProviderLimit::encode).collect();
        let accounts: Vec<String> = options
            .accounts
            .iter()
            .map(|(account, contract)| format!("{account}={contract}"))
            .collect();
        let token = format!("{:016x}", rand::random::<u64>());
        let reply: ClaimReply = CLAIM
            .key(self.key("due"))
            .arg(&self.prefix)
            .arg(options.max_jobs)
            .arg(options.lease.as_millis() as u64)
            .arg(options.owner)
            .arg(if options.resubmit_uncertain { "1" } else { "0" })
            .arg(limits.join(";"))
            .arg(&token)
            .arg(accounts.join(","))
            .invoke_async(&mut self.conn().await?)
            .await?;
        let mut leases = Vec::with_capacity(reply.rows.len());
        for row in reply.rows {
            match row.into_lease(&token) {
                Ok(lease) => leases.push(lease),
                Err((job_id, fence, detail)) => {
                    self.fail_corrupt(&job_id, fence, &token, &detail).await?
                }
            }
        }
        let next_due_in = (leases.is_empty() && reply.next_due_ms >= 0).then(|| {
            Duration::from_millis(reply.next_due_ms.saturating_sub(reply.now_ms).max(0) as u64)
        });
        Ok(Claim {
            leases,
            next_due_in,
            waits: reply.waits,
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

impl ClaimedRow {
    /// The row as a lease, or (job id, fence, what is wrong) for a record that cannot be read.
    fn into_lease(self, token: &str) -> Result<Lease, (String, u64, String)> {
        let parsed = (|| {
            let job_id: JobId = self
                .id
                .parse()
                .map_err(|e: reelq_core::IdError| e.to_string())?;
            let state: JobState = self
                .state
                .parse()
                .map_err(|e: reelq_core::UnknownState| e.to_string())?;
            let spec: JobSpec =
                serde_json::from_str(&self.spec).map_err(|e| format!("spec: {e}"))?;
            let account: AccountName = self
                .account
                .parse()
                .map_err(|e: reelq_core::SpecError| e.to_string())?;
            Ok::<_, String>((job_id, state, spec, account))
        })();
        let non_empty = |value: String| (!value.is_empty()).then_some(value);
        match parsed {
            Ok((job_id, state, spec, account)) => Ok(Lease {
                job_id,
                state,
                account,
                fence: self.fence,
                token: token.to_owned(),
                spec,
                task_id: non_empty(self.task_id),
                attempt: self.attempt,
                polls: self.polls,
                result_url: non_empty(self.result_url),
                low_priority: self.low_priority,
                cancel_requested: self.cancel_requested,
                cancel_answered: self.cancel_answered,
            }),
            Err(detail) => Err((self.id, self.fence, detail)),
        }
    }
}
