//! What workers publish to the whole deployment: their providers' limits (one encoding,
//! written and read here), the retention of finished jobs, and provider pauses (a 429).

use std::{collections::HashMap, time::Duration};

use reelq_core::AccountName;

use crate::scripts;
use crate::{Ledger, QueueError};

/// The most due entries one resume looks at: enough for every job one account's pause held
/// back in most deployments, few enough that the script stays short.
const RESUME_SCAN: usize = 10_000;

/// What a resume did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Resumed {
    /// Whether the account was paused at all.
    pub was_paused: bool,
    /// Queued jobs held back for the pause, due now again.
    pub brought_forward: u64,
    /// Whether the look reached its bound: more held jobs may go at the pause's old end.
    pub more_left: bool,
}

/// One provider account's cluster-wide limits, enforced by the claim script for every
/// replica at once. Zero means no limit.
#[derive(Debug, Clone, PartialEq)]
pub struct ProviderLimit {
    /// The account the limits are kept under (a contract's own name for `[providers.kie]`).
    pub account: AccountName,
    /// Provider calls (submits and polls) per second, across all replicas.
    pub requests_per_s: f64,
    /// Calls that may go at once after a quiet spell.
    pub burst: u32,
    /// Generations submitted and not yet finished, across all replicas.
    pub max_in_flight: u32,
    /// A slot not renewed (by a poll) for this long is freed: a job lost track of gives its
    /// slot back.
    pub slot_ttl: Duration,
    /// Estimated spend per UTC day, in millionths of a dollar; past it, submits wait for the
    /// next day. 0 = no daily budget.
    pub daily_budget_micros: u64,
    /// How long an `uncertain` job keeps its slot: the provider may still be generating its
    /// video, but a job nobody can settle must not hold the account's capacity for long.
    pub uncertain_slot_ttl: Duration,
}

impl Ledger {
    /// Records the limits a worker runs with, for dashboards to show beside the counts.
    pub async fn publish_limits(&self, limits: &[ProviderLimit]) -> Result<(), QueueError> {
        let mut command = redis::cmd("HSET");
        command.arg(self.home_key("limits"));
        for limit in limits {
            command.arg(limit.account.as_str()).arg(format!(
                "{} {} {}",
                limit.max_in_flight, limit.requests_per_s, limit.daily_budget_micros
            ));
        }
        if !limits.is_empty() {
            let _: () = command.query_async(&mut self.home_conn().await?).await?;
        }
        Ok(())
    }

    /// Sets how long finished jobs (the record, with its spec and event log, and its state
    /// index entry) are kept; zero keeps them for ever. Applies to jobs that finish from now
    /// on.
    pub async fn set_retention(&self, retention: Duration) -> Result<(), QueueError> {
        self.on_every_slot("retention_ms", |key| {
            let mut set = redis::cmd("SET");
            set.arg(key).arg(retention.as_millis() as u64);
            set
        })
        .await
    }

    /// Stops every replica from submitting to `account` for `length` (a 429's Retry-After).
    pub async fn pause_account(
        &self,
        account: &AccountName,
        length: Duration,
    ) -> Result<(), QueueError> {
        let args = scripts::pause::Args {
            account: account.as_str(),
            pause_ms: length.as_millis().max(1) as u64,
        };
        self.run_at_home(&args).await?;
        Ok(())
    }

    /// Ends `account`'s pause at once, for every replica, and makes the queued jobs it held
    /// back due now.
    pub async fn resume_account(&self, account: &AccountName) -> Result<Resumed, QueueError> {
        // Ended at the home first (for every replica), then its jobs brought forward.
        let (left_ms, _): (i64, u64) = redis::pipe()
            .atomic()
            .cmd("PTTL")
            .arg(self.home_key(format!("pause:{account}")))
            .cmd("DEL")
            .arg(self.home_key(format!("pause:{account}")))
            .query_async(&mut self.home_conn().await?)
            .await?;
        if left_ms <= 0 {
            return Ok(Resumed {
                was_paused: false,
                brought_forward: 0,
                more_left: false,
            });
        }
        let args = scripts::resume::Args {
            account: account.as_str(),
            left_ms,
            contracts: reelq_core::ProviderKind::ALL
                .iter()
                .map(|kind| kind.as_str())
                .collect(),
            limit: RESUME_SCAN,
        };
        let mut resumed = Resumed {
            was_paused: true,
            brought_forward: 0,
            more_left: false,
        };
        for part in self.parts() {
            let scripts::resume::Reply { moved, looked } = self.run_in(part, &args).await?;
            resumed.brought_forward += moved;
            resumed.more_left |= looked >= RESUME_SCAN;
        }
        Ok(resumed)
    }

    /// The limits workers published, by account.
    pub async fn published_limits(&self) -> Result<Vec<ProviderLimit>, QueueError> {
        let fields: HashMap<String, String> = redis::cmd("HGETALL")
            .arg(self.home_key("limits"))
            .query_async(&mut self.home_conn().await?)
            .await?;
        let mut limits: Vec<ProviderLimit> = fields
            .iter()
            .filter_map(|(account, value)| {
                let mut parts = value.split(' ');
                Some(ProviderLimit {
                    account: account.parse().ok()?,
                    max_in_flight: parts.next()?.parse().ok()?,
                    requests_per_s: parts.next()?.parse().ok()?,
                    daily_budget_micros: parts.next()?.parse().ok()?,
                    burst: 1,
                    slot_ttl: Duration::ZERO,
                    uncertain_slot_ttl: Duration::ZERO,
                })
            })
            .collect();
        limits.sort_by(|a, b| a.account.cmp(&b.account));
        Ok(limits)
    }
}
