//! Who a request comes from and what it may do: the deployment's own token (every tenant,
//! every scope), or a token an operator made (`reelq tokens create`), bound to one tenant or
//! to all, with some scopes. A tenant's token sees only its tenant's jobs and batches: any
//! other answers 404, as if it did not exist.

use reelq_core::{Scope, TenantName};
use reelq_queue::TokenRecord;

use super::*;

#[derive(Clone, Debug)]
pub(crate) struct Caller {
    /// The one tenant whose jobs it enqueues and sees; None: every tenant's.
    tenant: Option<TenantName>,
    scopes: Vec<Scope>,
}

impl Caller {
    /// The deployment's own token.
    pub(super) fn operator() -> Caller {
        Caller {
            tenant: None,
            scopes: Scope::ALL.to_vec(),
        }
    }

    pub(super) fn of(token: TokenRecord) -> Caller {
        Caller {
            tenant: token.tenant,
            scopes: token.scopes,
        }
    }

    /// The one tenant the caller acts for; None: every tenant.
    pub(super) fn tenant(&self) -> Option<&TenantName> {
        self.tenant.as_ref()
    }

    /// Refused unless the caller holds `scope`.
    pub(super) fn require(&self, scope: Scope) -> Result<(), Refusal> {
        match self.scopes.contains(&scope) {
            true => Ok(()),
            false => Err(Refusal::Forbidden(scope)),
        }
    }

    /// Whether the caller may see a job made from `spec`.
    pub(super) fn sees(&self, spec: &JobSpec) -> bool {
        self.tenant
            .as_ref()
            .is_none_or(|tenant| spec.tenant_name() == tenant.as_str())
    }

    /// Of `records`, those the caller may see.
    pub(super) fn visible(&self, mut records: Vec<JobRecord>) -> Vec<JobRecord> {
        records.retain(|record| self.sees(&record.spec));
        records
    }

    /// Gives each job the caller's tenant; a job naming another tenant is refused (400,
    /// naming the field; `line` is its line in a batch).
    pub(super) fn own(&self, specs: &mut [JobSpec]) -> Result<(), Refusal> {
        let Some(tenant) = &self.tenant else {
            return Ok(());
        };
        for (n, spec) in specs.iter_mut().enumerate() {
            match &spec.tenant {
                Some(named) if named != tenant => {
                    return Err(Refusal::OtherTenant {
                        tenant: tenant.clone(),
                        line: n + 1,
                    });
                }
                _ => spec.tenant = Some(tenant.clone()),
            }
        }
        Ok(())
    }

    /// Whether the caller may see batch `batch_id`: a tenant's token, a batch of its tenant's
    /// jobs (its first job's tenant: a batch is enqueued by one caller).
    pub(super) async fn sees_batch(
        &self,
        client: &Client,
        batch_id: BatchId,
    ) -> Result<bool, ProducerError> {
        if self.tenant.is_none() {
            return Ok(true);
        }
        let (first, _) = client.batch_records_page(batch_id, 0, 1).await?;
        Ok(first.iter().all(|record| self.sees(&record.spec)) && !first.is_empty())
    }

    /// Refused (404, as `what`) unless the caller may see job `job_id`.
    pub(super) async fn sees_job(
        &self,
        client: &Client,
        job_id: JobId,
        what: &'static str,
    ) -> Result<(), Refusal> {
        if self.tenant.is_none() {
            return Ok(());
        }
        match client.status(job_id).await {
            Ok(Some(record)) if self.sees(&record.spec) => Ok(()),
            Ok(_) => Err(Refusal::NotFound(what)),
            Err(err) => Err(Refusal::Failed(err)),
        }
    }
}

/// The caller a presented bearer token names, if any: the deployment's own token, or one an
/// operator made and did not revoke.
pub(super) async fn caller_of(
    state: &ApiState,
    presented: &str,
) -> Result<Option<Caller>, ProducerError> {
    if presented.is_empty() {
        return Ok(None);
    }
    if state.token.matches(presented.as_bytes()) {
        return Ok(Some(Caller::operator()));
    }
    Ok(state.client.token(presented).await?.map(Caller::of))
}
