//! The Rust producer API. Requests are validated here, before anything reaches Redis, so a
//! bad request is refused at enqueue and never met by a worker.

use std::{
    collections::HashMap,
    sync::Arc,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use backon::{ExponentialBuilder, Retryable};
use reelq_core::{
    AccountName, BatchId, Catalog, JobId, JobSpec, JobState, PriceTable, ProviderKind, SpecError,
    WebhookTargets, usd_to_micros,
};
use reelq_queue::{
    ArchivedBatch, ArchivedJob, BatchInfo, CancelOutcome, JobRecord, Ledger, LedgerConfig,
    PageCursor, ProviderLimit, QueueError, Resolution, Resumed, WorkerInfo,
};
use reelq_storage::{HistoryLine, HistoryStore};
use serde::Serialize;

use crate::ManifestError;

mod enqueue;
mod tokens;
mod usage;
mod wait;
pub use enqueue::{BatchReceipt, Receipt};
pub use usage::{Period, Usage, write_usage_csv};

/// Retries of a read while Redis restarts: about 15 s in all.
const READ_RETRY: ExponentialBuilder = ExponentialBuilder::new()
    .with_min_delay(Duration::from_millis(50))
    .with_max_delay(Duration::from_secs(2))
    .with_max_times(12);

#[derive(Debug, thiserror::Error)]
pub enum ProducerError {
    #[error("invalid job")]
    Invalid(#[from] SpecError),
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    #[error(transparent)]
    Queue(#[from] QueueError),
    /// Reading a stored video (the API's `/content` and links), or archived history.
    #[error(transparent)]
    Store(#[from] reelq_storage::StorageError),
    /// Archived history was asked for, and no store to read it from was given.
    #[error(
        "no history store given: archived jobs are read from the workers' store (--store or REELQ_STORE_URL)"
    )]
    NoHistory,
}

/// An archived line read back.
fn archived_job(line: &HistoryLine<JobId>) -> Result<ArchivedJob, ProducerError> {
    serde_json::from_str(&line.json).map_err(|err| {
        ProducerError::Queue(QueueError::Corrupt {
            job_id: line.id.to_string(),
            detail: format!("archived record: {err}"),
        })
    })
}

/// A deployment at a glance.
#[derive(Debug, Clone, Serialize)]
pub struct Stats {
    /// Jobs per state in Redis (finished ones until they are archived); as JSON, an object of
    /// state name to count, in the states' order.
    #[serde(serialize_with = "states_as_object")]
    pub states: Vec<(JobState, u64)>,
    /// Jobs due now: what free worker slots would take next.
    pub due_now: u64,
    pub providers: Vec<ProviderStats>,
    pub stored_last_minute: u64,
    pub stored_last_hour: u64,
    pub failed_last_hour: u64,
    /// The ledger's history: rollbacks declared (Redis lost writes it had acknowledged) and
    /// whether paid creates are held for a repair now.
    pub ledger: reelq_queue::HistoryStatus,
    /// The archiver: finished jobs moved to the object store, and whether it fails now.
    pub archive: reelq_queue::ArchiveStatus,
}

fn states_as_object<S: serde::Serializer>(
    states: &[(JobState, u64)],
    serializer: S,
) -> Result<S::Ok, S::Error> {
    serializer.collect_map(states.iter().map(|(state, n)| (state.as_str(), n)))
}

#[derive(Debug, Clone, Serialize)]
pub struct ProviderStats {
    /// A provider account (a contract's own name for `[providers.<contract>]`).
    pub account: AccountName,
    /// Generations holding an in-flight slot (counted only where a limit is set).
    pub in_flight: u64,
    /// Set while submits are paused (429 or an empty account).
    pub paused_ms: Option<u64>,
}

#[derive(Clone)]
pub struct Client {
    ledger: Ledger,
    /// The models jobs are validated and priced against.
    catalog: Arc<Catalog>,
    /// The operator's contract prices, before the catalog's list prices (the record keeps
    /// each job's estimate).
    prices: Arc<PriceTable>,
    /// Where `notify_url`s may point (the workers check again when sending).
    webhook_targets: Arc<WebhookTargets>,
    /// The history archived jobs are read from, once they have left Redis; None: only the
    /// ledger is read (an archived job reads as missing).
    history: Option<HistoryStore>,
}

/// This host's clock, unix ms.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl Client {
    /// Connects to the ledger; refuses a Redis that cannot keep enqueues durable unless
    /// `config.allow_unsafe` (see [`LedgerConfig`]).
    pub async fn connect(config: &LedgerConfig) -> Result<Self, ProducerError> {
        let ledger = Ledger::connect(config).await?;
        Ok(Client {
            ledger,
            catalog: Arc::new(Catalog::built_in().clone()),
            prices: Arc::new(PriceTable::default()),
            webhook_targets: Arc::new(WebhookTargets::default()),
            history: None,
        })
    }

    /// Reads jobs that have left Redis from `history` (the workers' store, or their
    /// `[history] url`), so every read finds an archived job as it finds a live one.
    pub fn with_history(self, history: HistoryStore) -> Self {
        Client {
            history: Some(history),
            ..self
        }
    }

    /// The records of `job_ids` in their order: from the ledger, and those no longer there
    /// from the archived history; jobs in neither are left out.
    pub async fn records(&self, job_ids: &[JobId]) -> Result<Vec<JobRecord>, ProducerError> {
        Ok(self
            .archived_or_live(job_ids)
            .await?
            .into_iter()
            .map(|(record, _)| record)
            .collect())
    }

    /// Like [`Client::records`], with each archived job's event log (None for a live one).
    async fn archived_or_live(
        &self,
        job_ids: &[JobId],
    ) -> Result<Vec<(JobRecord, Option<Vec<String>>)>, ProducerError> {
        let live = self.ledger.jobs(job_ids).await?;
        let Some(history) = self.history.as_ref().filter(|_| live.len() < job_ids.len()) else {
            return Ok(live.into_iter().map(|record| (record, None)).collect());
        };
        let mut live: HashMap<JobId, JobRecord> = live
            .into_iter()
            .map(|record| (record.job_id, record))
            .collect();
        let missing: Vec<JobId> = job_ids
            .iter()
            .filter(|id| !live.contains_key(id))
            .copied()
            .collect();
        let mut archived = history.find(&missing).await?;
        let mut records = Vec::with_capacity(job_ids.len());
        for job_id in job_ids {
            if let Some(record) = live.remove(job_id) {
                records.push((record, None));
            } else if let Some(line) = archived.remove(job_id) {
                let job = archived_job(&line)?;
                records.push((job.record, Some(job.events)));
            }
        }
        Ok(records)
    }

    /// Every job archived for a UTC day (made that day), once each, by id: the history that
    /// has left Redis. Jobs of that day still in Redis are not in it.
    pub async fn archived_day(
        &self,
        day: chrono::NaiveDate,
    ) -> Result<Vec<ArchivedJob>, ProducerError> {
        let Some(history) = &self.history else {
            return Err(ProducerError::NoHistory);
        };
        history.day(day).await?.iter().map(archived_job).collect()
    }

    /// A page of a day's archived jobs in `states` (all if empty), by id: up to `limit` after
    /// `after`, and the id to continue after if there may be more.
    pub async fn archived_page(
        &self,
        day: chrono::NaiveDate,
        states: &[JobState],
        after: Option<JobId>,
        limit: usize,
    ) -> Result<(Vec<JobRecord>, Option<JobId>), ProducerError> {
        let mut records = self
            .archived_day(day)
            .await?
            .into_iter()
            .map(|job| job.record)
            .filter(|record| after.is_none_or(|after| record.job_id > after))
            .filter(|record| states.is_empty() || states.contains(&record.state));
        let page: Vec<JobRecord> = records.by_ref().take(limit).collect();
        let next = match records.next() {
            Some(_) => page.last().map(|record| record.job_id),
            None => None,
        };
        Ok((page, next))
    }

    /// The archiver's last passes.
    pub async fn archive_status(&self) -> Result<reelq_queue::ArchiveStatus, ProducerError> {
        Ok(self.ledger.archive_status().await?)
    }

    /// Accepts `notify_url`s by `targets` instead of public https only.
    pub fn with_webhook_targets(self, targets: WebhookTargets) -> Self {
        Client {
            webhook_targets: Arc::new(targets),
            ..self
        }
    }

    /// Prices jobs by `prices` before the catalog's list prices.
    pub fn with_prices(self, prices: PriceTable) -> Self {
        Client {
            prices: Arc::new(prices),
            ..self
        }
    }

    /// Validates and prices jobs against `catalog` (the built-in one with an operator's
    /// rows, say) instead of the built-in catalog.
    pub fn with_catalog(self, catalog: Catalog) -> Self {
        Client {
            catalog: Arc::new(catalog),
            ..self
        }
    }

    /// The models this client validates jobs against.
    pub fn catalog(&self) -> &Catalog {
        &self.catalog
    }

    /// What producers must be told of the models `specs` ask for, once each: a model its
    /// provider has deprecated (taken, with its end and replacement named). Retired and paused
    /// models are refused by validation.
    pub fn lifecycle_notices(&self, specs: &[JobSpec]) -> Vec<String> {
        let mut notices: Vec<String> = specs
            .iter()
            .filter_map(|spec| self.catalog.rule(spec.provider, &spec.model))
            .filter_map(|rule| rule.lifecycle_notice())
            .collect();
        notices.sort();
        notices.dedup();
        notices
    }

    /// Reads a job's record, riding out a Redis restart (the first command on a
    /// reconnecting connection fails) with a few quick retries.
    pub async fn status(&self, job_id: JobId) -> Result<Option<JobRecord>, ProducerError> {
        let read = || self.records(std::slice::from_ref(&job_id));
        Ok(read
            .retry(READ_RETRY)
            .when(|err| matches!(err, ProducerError::Queue(QueueError::Redis(_))))
            .await?
            .pop())
    }

    /// A batch's job ids in manifest order (from the archived history once it has left Redis).
    pub async fn batch_jobs(&self, batch_id: BatchId) -> Result<Vec<JobId>, ProducerError> {
        let job_ids = self.ledger.batch_jobs(batch_id).await?;
        if !job_ids.is_empty() {
            return Ok(job_ids);
        }
        Ok(self
            .archived_batch(batch_id)
            .await?
            .map(|batch| batch.job_ids)
            .unwrap_or_default())
    }

    /// A batch's settings and spend.
    pub async fn batch_info(&self, batch_id: BatchId) -> Result<Option<BatchInfo>, ProducerError> {
        if let Some(info) = self.ledger.batch_info(batch_id).await? {
            return Ok(Some(info));
        }
        Ok(self.archived_batch(batch_id).await?.map(|batch| batch.info))
    }

    /// A finished batch that has left Redis, from the archived history (None without one).
    async fn archived_batch(
        &self,
        batch_id: BatchId,
    ) -> Result<Option<ArchivedBatch>, ProducerError> {
        let Some(history) = &self.history else {
            return Ok(None);
        };
        let Some(line) = history.find(&[batch_id]).await?.remove(&batch_id) else {
            return Ok(None);
        };
        serde_json::from_str(&line.json).map(Some).map_err(|err| {
            ProducerError::Queue(QueueError::Corrupt {
                job_id: batch_id.to_string(),
                detail: format!("archived batch: {err}"),
            })
        })
    }

    /// Every record of a batch, in manifest order, live or archived.
    pub async fn batch_records(&self, batch_id: BatchId) -> Result<Vec<JobRecord>, ProducerError> {
        let job_ids = self.batch_jobs(batch_id).await?;
        self.records(&job_ids).await
    }

    /// One page of a batch's jobs in enqueue order: up to `limit` from the `offset`th, and
    /// the offset of the next page if there may be one.
    pub async fn batch_records_page(
        &self,
        batch_id: BatchId,
        offset: usize,
        limit: usize,
    ) -> Result<(Vec<JobRecord>, Option<usize>), ProducerError> {
        let mut job_ids = self.ledger.batch_jobs_page(batch_id, offset, limit).await?;
        if job_ids.is_empty()
            && let Some(batch) = self.archived_batch(batch_id).await?
        {
            job_ids = batch.job_ids.into_iter().skip(offset).take(limit).collect();
        }
        let next = (job_ids.len() == limit).then_some(offset + limit);
        Ok((self.records(&job_ids).await?, next))
    }

    /// Raises a batch's budget (if given) and queues its `budget_held` jobs again; None if
    /// there is no such batch.
    pub async fn resume_batch(
        &self,
        batch_id: BatchId,
        budget_usd: Option<f64>,
    ) -> Result<Option<u64>, ProducerError> {
        let budget = budget_usd.map(usd_to_micros);
        Ok(self.ledger.resume_batch(batch_id, budget).await?)
    }

    /// Cancels a batch's jobs not yet submitted; None if there is no such batch.
    pub async fn cancel_batch(&self, batch_id: BatchId) -> Result<Option<u64>, ProducerError> {
        Ok(self.ledger.cancel_batch(batch_id).await?)
    }

    /// Sends a batch's failed jobs back (see [`Client::retry_failed`]); returns how many.
    pub async fn retry_failed_batch(&self, batch_id: BatchId) -> Result<u64, ProducerError> {
        let mut retried = 0;
        for job_id in self.batch_jobs(batch_id).await? {
            retried += u64::from(self.ledger.retry_failed(job_id).await?);
        }
        Ok(retried)
    }

    pub async fn history(&self, job_id: JobId) -> Result<Vec<String>, ProducerError> {
        let events = self.ledger.history(job_id).await?;
        if !events.is_empty() {
            return Ok(events);
        }
        let archived = self.archived_or_live(&[job_id]).await?;
        Ok(archived
            .into_iter()
            .find_map(|(_, events)| events)
            .unwrap_or_default())
    }

    /// Settles an `uncertain` job; false if it was not `uncertain`.
    pub async fn resolve(
        &self,
        job_id: JobId,
        resolution: Resolution,
    ) -> Result<bool, ProducerError> {
        Ok(self.ledger.resolve(job_id, resolution).await?)
    }

    /// Sends a `failed` job (the dead letters) back for another go; false if it was not `failed`.
    pub async fn retry_failed(&self, job_id: JobId) -> Result<bool, ProducerError> {
        Ok(self.ledger.retry_failed(job_id).await?)
    }

    /// Cancels a job not yet submitted, or asks its provider to stop a submitted one where
    /// the provider can ([`CancelOutcome`]).
    pub async fn cancel_job(&self, job_id: JobId) -> Result<CancelOutcome, ProducerError> {
        Ok(self.ledger.cancel_job(job_id).await?)
    }

    /// A page of jobs in any of `states` (every state if empty), most recently changed
    /// first, after `cursor`; with the cursor of the next page when this one is full.
    pub async fn jobs_page(
        &self,
        states: &[JobState],
        cursor: Option<PageCursor>,
        limit: usize,
    ) -> Result<(Vec<JobRecord>, Option<PageCursor>), ProducerError> {
        let states = match states.is_empty() {
            true => JobState::ALL.as_slice(),
            false => states,
        };
        let entries = self.ledger.jobs_page(states, cursor, limit).await?;
        let next = (entries.len() == limit)
            .then(|| entries.last().copied())
            .flatten();
        let ids: Vec<JobId> = entries.iter().map(|entry| entry.job_id).collect();
        Ok((self.ledger.jobs(&ids).await?, next))
    }

    /// Stops every replica submitting to `account` for `length` (running generations go on
    /// being polled and fetched).
    pub async fn pause_account(
        &self,
        account: &AccountName,
        length: Duration,
    ) -> Result<(), ProducerError> {
        Ok(self.ledger.pause_account(account, length).await?)
    }

    /// Ends `account`'s pause and makes the jobs it held back due now.
    pub async fn resume_account(&self, account: &AccountName) -> Result<Resumed, ProducerError> {
        Ok(self.ledger.resume_account(account).await?)
    }

    /// The job that owns provider task `task_id` at any account workers have published (or
    /// any contract's own account), if it is indexed.
    pub async fn job_of_task_anywhere(
        &self,
        task_id: &str,
    ) -> Result<Option<JobId>, ProducerError> {
        let mut accounts: Vec<AccountName> = ProviderKind::ALL.map(AccountName::from).into();
        for limit in self.ledger.published_limits().await? {
            if !accounts.contains(&limit.account) {
                accounts.push(limit.account);
            }
        }
        for account in &accounts {
            if let Some(job_id) = self.ledger.job_of_task(account, task_id).await? {
                return Ok(Some(job_id));
            }
        }
        Ok(None)
    }

    /// The tenants sharing the deployment: jobs waiting, weight and rank (`reelq tenants`).
    pub async fn tenants(&self) -> Result<Vec<reelq_queue::TenantShare>, ProducerError> {
        Ok(self.ledger.tenants().await?)
    }

    /// Sets a tenant's weight (its share against the others'); None sets it back to 1.
    pub async fn set_tenant_weight(
        &self,
        tenant: &reelq_core::TenantName,
        weight: Option<f64>,
    ) -> Result<(), ProducerError> {
        Ok(self.ledger.set_tenant_weight(tenant, weight).await?)
    }

    /// Caps a tenant's generations in flight and jobs waiting (None: no cap).
    pub async fn set_tenant_limits(
        &self,
        tenant: &reelq_core::TenantName,
        limits: reelq_queue::TenantLimits,
    ) -> Result<(), ProducerError> {
        Ok(self.ledger.set_tenant_limits(tenant, limits).await?)
    }

    /// Whether Redis answers (for readiness probes).
    pub async fn ping(&self) -> Result<(), ProducerError> {
        Ok(self.ledger.ping().await?)
    }

    /// The live worker replicas, most recently seen first (`reelq workers`).
    pub async fn workers(&self) -> Result<Vec<WorkerInfo>, ProducerError> {
        Ok(self.ledger.workers().await?)
    }

    /// Moves the ledger to this release's record format (`reelq migrate`).
    pub async fn migrate(&self) -> Result<reelq_queue::Migration, ProducerError> {
        Ok(self.ledger.migrate().await?)
    }

    /// Queue depths, in-flight generations and recent rates, for `reelq stats`.
    pub async fn stats(&self) -> Result<Stats, ProducerError> {
        let ledger = &self.ledger;
        // Every contract's own account, and every account a worker published.
        let mut accounts: Vec<AccountName> = ProviderKind::ALL.map(AccountName::from).into();
        for limit in ledger.published_limits().await? {
            if !accounts.contains(&limit.account) {
                accounts.push(limit.account);
            }
        }
        let mut providers = Vec::new();
        for account in accounts {
            providers.push(ProviderStats {
                in_flight: ledger.in_flight(&account).await?,
                paused_ms: ledger
                    .paused_for(&account)
                    .await?
                    .map(|d| d.as_millis() as u64),
                account,
            });
        }
        let minute = Duration::from_secs(60);
        let hour = Duration::from_secs(3600);
        Ok(Stats {
            states: ledger.state_counts().await?,
            due_now: ledger.due_now().await?,
            providers,
            stored_last_minute: ledger.entered_within(JobState::Stored, minute).await?,
            stored_last_hour: ledger.entered_within(JobState::Stored, hour).await?,
            failed_last_hour: ledger.entered_within(JobState::Failed, hour).await?,
            ledger: ledger.history_status().await?,
            archive: ledger.archive_status().await?,
        })
    }

    /// The most recent batches, newest first.
    pub async fn recent_batches(&self, limit: usize) -> Result<Vec<BatchId>, ProducerError> {
        Ok(self.ledger.recent_batches(limit).await?)
    }

    /// The provider limits the workers run with (as they published them at start).
    pub async fn provider_limits(&self) -> Result<Vec<ProviderLimit>, ProducerError> {
        Ok(self.ledger.published_limits().await?)
    }

    /// Jobs stored in each of `buckets` consecutive windows of `width`, oldest first, the
    /// last ending now.
    pub async fn stored_per_window(
        &self,
        buckets: u32,
        width: Duration,
    ) -> Result<Vec<u64>, ProducerError> {
        let now = now_ms();
        let width = width.as_millis() as u64;
        let mut counts = Vec::with_capacity(buckets as usize);
        for n in (0..u64::from(buckets)).rev() {
            let to = now.saturating_sub(n * width) + 1;
            let from = to.saturating_sub(width);
            counts.push(
                self.ledger
                    .entered_between(JobState::Stored, from, to)
                    .await?,
            );
        }
        Ok(counts)
    }

    /// Records of up to `limit` jobs in `state`, most recently changed first.
    pub async fn jobs_in_state(
        &self,
        state: JobState,
        limit: usize,
    ) -> Result<Vec<JobRecord>, ProducerError> {
        let job_ids = self.ledger.jobs_in_state(state, limit).await?;
        Ok(self.ledger.jobs(&job_ids).await?)
    }
}
