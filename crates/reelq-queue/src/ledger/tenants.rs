//! Tenants as the claim shares capacity between them (`claim.lua`): each one's fresh jobs
//! waiting, its place in the ranking, and the weight an operator gave it.

use std::collections::{BTreeMap, HashMap};

use reelq_core::TenantName;

use super::Part;
use crate::{Ledger, QueueError};

/// What an operator caps for one tenant (absent: no cap), kept in `P tenant_limits` and
/// applied by the enqueue (`max_waiting`) and the claim (`max_in_flight` and the budgets,
/// reserved by each submit's estimate as batch budgets are, exact for any number of
/// replicas, and given back by a create the provider refused).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TenantLimits {
    /// Generations in flight at once, over every account.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_in_flight: Option<u32>,
    /// Fresh jobs waiting for their first claim: an enqueue that would pass it is refused
    /// whole (the HTTP API answers 429 with `Retry-After`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_waiting: Option<u64>,
    /// Spend reserved per UTC day, in millionths of a dollar: past it, its jobs wait for the
    /// next day.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub daily_micros: Option<u64>,
    /// Spend reserved per UTC month, in millionths of a dollar: past it, its jobs wait for
    /// the next month.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub monthly_micros: Option<u64>,
}

/// One tenant's share of the deployment, as `reelq tenants` shows it.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct TenantShare {
    pub tenant: String,
    /// Fresh jobs waiting in its queue (retries and scheduled polls wait with everyone's).
    pub waiting: u64,
    /// Its share against the others': 1 unless an operator set one.
    pub weight: f64,
    /// Where it stands in the ranking (the virtual time its next job starts at); None while
    /// it has no job waiting.
    pub tag: Option<f64>,
    pub limits: TenantLimits,
    /// Generations of it in flight now (counted only under a `max_in_flight`).
    pub in_flight: u64,
    /// Spend reserved today and this month (UTC), in millionths of a dollar (counted only
    /// under a budget).
    pub spent_today_micros: u64,
    pub spent_this_month_micros: u64,
}

impl Ledger {
    /// Every tenant with jobs waiting or a weight set, the next to be served first.
    pub async fn tenants(&self) -> Result<Vec<TenantShare>, QueueError> {
        let (weights, limits): (HashMap<String, f64>, HashMap<String, String>) = redis::pipe()
            .cmd("HGETALL")
            .arg(self.home_key("tenant_weights"))
            .cmd("HGETALL")
            .arg(self.home_key("tenant_limits"))
            .query_async(&mut self.home_conn().await?)
            .await?;
        // Each partition ranks the tenants with jobs in it; a tenant's place is its first.
        let per_part: Vec<(Vec<(String, f64)>,)> = self
            .in_every_part(|part, pipe| {
                pipe.cmd("ZRANGE")
                    .arg(part.key("tenants"))
                    .arg(0)
                    .arg(-1)
                    .arg("WITHSCORES");
            })
            .await?;
        let mut ranked: Vec<(String, f64)> =
            per_part.into_iter().flat_map(|(ranked,)| ranked).collect();
        ranked.sort_by(|a, b| a.1.total_cmp(&b.1));
        let mut shares: BTreeMap<String, TenantShare> = BTreeMap::new();
        let named = weights.keys().chain(limits.keys());
        for (tenant, tag) in ranked
            .iter()
            .map(|(t, tag)| (t, Some(*tag)))
            .chain(named.map(|t| (t, None)))
        {
            if shares.contains_key(tenant) {
                continue;
            }
            let limits = match limits.get(tenant) {
                Some(json) => serde_json::from_str(json)
                    .map_err(|err| QueueError::corrupt(format!("tenant {tenant}"), err))?,
                None => TenantLimits::default(),
            };
            let share = TenantShare {
                tenant: tenant.clone(),
                waiting: 0,
                weight: weights.get(tenant).copied().unwrap_or(1.0),
                tag,
                limits,
                in_flight: 0,
                spent_today_micros: 0,
                spent_this_month_micros: 0,
            };
            shares.insert(tenant.clone(), share);
        }
        let mut counts = redis::pipe();
        let now = super::now_unix_ms();
        let day = now / 86_400_000;
        let month = chrono::DateTime::from_timestamp_millis(now as i64)
            .map(|at| at.format("%Y-%m").to_string())
            .unwrap_or_default();
        for tenant in shares.keys() {
            counts
                .cmd("ZCOUNT")
                .arg(self.home_key(format!("tenant_inflight:{tenant}")))
                .arg(format!("({now}"))
                .arg("+inf");
            counts
                .cmd("MGET")
                .arg(self.home_key(format!("tenant_spend:{tenant}:{day}")))
                .arg(self.home_key(format!("tenant_spend:{tenant}:{month}")));
        }
        // The queues are the partitions', the slots and spend the home's.
        type Counts = (u64, (Option<u64>, Option<u64>));
        let per_part: Vec<Vec<u64>> = self
            .in_every_part(|part, pipe| {
                for tenant in shares.keys() {
                    pipe.cmd("ZCARD").arg(tenant_queue(part, tenant));
                }
            })
            .await?;
        let waiting = (0..shares.len()).map(|n| per_part.iter().map(|part| part[n]).sum::<u64>());
        let counts: Vec<Counts> = counts.query_async(&mut self.home_conn().await?).await?;
        let counts = waiting.zip(counts);
        for (share, (waiting, (in_flight, (today, month)))) in shares.values_mut().zip(counts) {
            share.waiting = waiting;
            share.in_flight = in_flight;
            share.spent_today_micros = today.unwrap_or(0);
            share.spent_this_month_micros = month.unwrap_or(0);
        }
        let mut shares: Vec<TenantShare> = shares.into_values().collect();
        shares.sort_by(|a, b| {
            let tag = |share: &TenantShare| share.tag.unwrap_or(f64::INFINITY);
            tag(a)
                .total_cmp(&tag(b))
                .then_with(|| a.tenant.cmp(&b.tenant))
        });
        Ok(shares)
    }

    /// Sets `tenant`'s weight (its share against the others' while they all have jobs
    /// waiting); `None` sets it back to 1.
    pub async fn set_tenant_weight(
        &self,
        tenant: &TenantName,
        weight: Option<f64>,
    ) -> Result<(), QueueError> {
        let weight = match weight {
            Some(weight) if !(weight.is_finite() && weight > 0.0) => {
                return Err(QueueError::TenantWeight(weight));
            }
            Some(weight) => Some(weight.to_string()),
            None => None,
        };
        self.set_tenant_setting("tenant_weights", tenant, weight)
            .await
    }

    /// Sets (or with `None` removes) `tenant`'s entry of a tenants' setting, in every slot's
    /// copy (`keys::EVERY_SLOT`).
    async fn set_tenant_setting(
        &self,
        setting: &str,
        tenant: &TenantName,
        value: Option<String>,
    ) -> Result<(), QueueError> {
        self.on_every_slot(setting, |key| {
            let mut command = redis::cmd(if value.is_some() { "HSET" } else { "HDEL" });
            command.arg(key).arg(tenant.as_str());
            if let Some(value) = &value {
                command.arg(value);
            }
            command
        })
        .await
    }

    /// Sets what `tenant` is capped at (all absent: no caps).
    pub async fn set_tenant_limits(
        &self,
        tenant: &TenantName,
        limits: TenantLimits,
    ) -> Result<(), QueueError> {
        let json = (limits != TenantLimits::default())
            .then(|| serde_json::to_string(&limits).expect("limits serialize"));
        self.set_tenant_setting("tenant_limits", tenant, json).await
    }

    /// Every queue of `part` a job may wait in for its first claim, or its next step: `P
    /// due`, `P due_low` and each waiting tenant's.
    pub(crate) async fn queues(&self, part: &Part) -> Result<Vec<String>, QueueError> {
        let tenants: Vec<String> = redis::cmd("ZRANGE")
            .arg(part.key("tenants"))
            .arg(0)
            .arg(-1)
            .query_async(&mut part.conn().await?)
            .await?;
        let mut queues = vec![part.key("due"), part.key("due_low")];
        queues.extend(tenants.iter().map(|tenant| tenant_queue(part, tenant)));
        Ok(queues)
    }
}

/// The queue `tenant`'s fresh jobs wait in, in `part` (prelude.lua's `tenant_queue`).
fn tenant_queue(part: &Part, tenant: &str) -> String {
    part.key(format!("queued:{tenant}"))
}
