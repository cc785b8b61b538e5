//! Tenants as the claim shares capacity between them (`claim.lua`): each one's fresh jobs
//! waiting, its place in the ranking, and the weight an operator gave it.

use std::collections::{BTreeMap, HashMap};

use reelq_core::TenantName;

use crate::{Ledger, QueueError};

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
}

impl Ledger {
    /// Every tenant with jobs waiting or a weight set, the next to be served first.
    pub async fn tenants(&self) -> Result<Vec<TenantShare>, QueueError> {
        let mut conn = self.conn().await?;
        let (ranked, weights): (Vec<(String, f64)>, HashMap<String, f64>) = redis::pipe()
            .cmd("ZRANGE")
            .arg(self.key("tenants"))
            .arg(0)
            .arg(-1)
            .arg("WITHSCORES")
            .cmd("HGETALL")
            .arg(self.key("tenant_weights"))
            .query_async(&mut conn)
            .await?;
        let mut shares: BTreeMap<String, TenantShare> = BTreeMap::new();
        for (tenant, tag) in &ranked {
            shares.insert(tenant.clone(), self.share(tenant, Some(*tag), &weights));
        }
        for tenant in weights.keys() {
            if !shares.contains_key(tenant) {
                shares.insert(tenant.clone(), self.share(tenant, None, &weights));
            }
        }
        let mut waiting = redis::pipe();
        for tenant in shares.keys() {
            waiting.cmd("ZCARD").arg(self.tenant_queue(tenant));
        }
        let counts: Vec<u64> = waiting.query_async(&mut conn).await?;
        for (share, count) in shares.values_mut().zip(counts) {
            share.waiting = count;
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

    fn share(&self, tenant: &str, tag: Option<f64>, weights: &HashMap<String, f64>) -> TenantShare {
        TenantShare {
            tenant: tenant.to_owned(),
            waiting: 0,
            weight: weights.get(tenant).copied().unwrap_or(1.0),
            tag,
        }
    }

    /// Sets `tenant`'s weight (its share against the others' while they all have jobs
    /// waiting); `None` sets it back to 1.
    pub async fn set_tenant_weight(
        &self,
        tenant: &TenantName,
        weight: Option<f64>,
    ) -> Result<(), QueueError> {
        let mut conn = self.conn().await?;
        let key = self.key("tenant_weights");
        match weight {
            Some(weight) => {
                if !(weight.is_finite() && weight > 0.0) {
                    return Err(QueueError::TenantWeight(weight));
                }
                let _: () = redis::cmd("HSET")
                    .arg(key)
                    .arg(tenant.as_str())
                    .arg(weight)
                    .query_async(&mut conn)
                    .await?;
            }
            None => {
                let _: () = redis::cmd("HDEL")
                    .arg(key)
                    .arg(tenant.as_str())
                    .query_async(&mut conn)
                    .await?;
            }
        }
        Ok(())
    }

    /// The queue `tenant`'s fresh jobs wait in (prelude.lua's `tenant_queue`).
    pub(crate) fn tenant_queue(&self, tenant: &str) -> String {
        self.key(format!("queued:{tenant}"))
    }

    /// Every queue a job may wait in for its first claim, or its next step: `P due`, `P
    /// due_low` and each waiting tenant's.
    pub(crate) async fn queues(&self) -> Result<Vec<String>, QueueError> {
        let tenants: Vec<String> = redis::cmd("ZRANGE")
            .arg(self.key("tenants"))
            .arg(0)
            .arg(-1)
            .query_async(&mut self.conn().await?)
            .await?;
        let mut queues = vec![self.key("due"), self.key("due_low")];
        queues.extend(tenants.iter().map(|tenant| self.tenant_queue(tenant)));
        Ok(queues)
    }
}
