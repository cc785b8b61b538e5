//! Enqueueing: each spec validated, priced and given its id; batches all or none; the same
//! request at most once per idempotency key.

use std::time::Duration;

use reelq_core::{BatchId, BatchOptions, JobId, JobRequest, JobSpec, SpecError};
use reelq_queue::{EnqueueProgress, Enqueued, Idempotency, QueueError};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{Client, ProducerError, now_ms};
use crate::parse_manifest;

/// How long an idempotency key is remembered.
const IDEMPOTENCY_TTL: Duration = Duration::from_secs(24 * 3600);

/// What an idempotent enqueue produced (or produced the first time, if `replayed`).
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Receipt {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub batch_id: Option<BatchId>,
    pub job_ids: Vec<JobId>,
    /// True when an earlier call with the same key did the enqueue.
    #[serde(skip)]
    pub replayed: bool,
}

/// What an idempotency record keeps to answer a replay.
#[derive(Serialize, Deserialize)]
#[serde(untagged)]
enum StoredReceipt {
    Batch { batch_id: BatchId },
    Jobs { job_ids: Vec<JobId> },
}

/// The SHA-256 (hex) of a request as validated: the same jobs and options, however they
/// were written (JSONL or a JSON array, key order, whitespace), give the same digest.
fn request_digest(specs: &[JobSpec], batch: Option<&BatchOptions>) -> String {
    let request = serde_json::to_vec(&(specs, batch)).expect("specs serialize");
    hex::encode(Sha256::digest(&request))
}

/// What a batch enqueue produced.
#[derive(Debug, Clone)]
pub struct BatchReceipt {
    pub batch_id: BatchId,
    pub job_ids: Vec<JobId>,
}

/// `err` of the `n`th (0-based) of `n_specs` jobs, saying which job when there are several.
fn of_job(n: usize, n_specs: usize, err: SpecError) -> SpecError {
    match n_specs {
        1 => err,
        _ => SpecError {
            message: format!("job {} of the batch: {}", n + 1, err.message),
            ..err
        },
    }
}

impl Client {
    /// A validated spec with its estimated cost (a routed job's candidates each priced,
    /// ordered by its route's policy, drawn from the job's own id where it is weighted).
    fn priced(&self, job_id: JobId, spec: JobSpec) -> Result<JobSpec, SpecError> {
        let seed = reelq_core::stable_hash(&job_id.to_string());
        spec.priced(&self.prices, &self.catalog, seed)
    }

    /// Gives each validated spec a fresh job id and its estimated cost, once every webhook
    /// target (the batch's and each job's) is one the deployment allows; and the id of the
    /// batch they would make. All in one partition of the ledger (the one `idempotency_key`
    /// names, if given).
    fn new_jobs(
        &self,
        specs: Vec<JobSpec>,
        batch: Option<&BatchOptions>,
        idempotency_key: Option<&str>,
    ) -> Result<(BatchId, Vec<(JobId, JobSpec)>), SpecError> {
        if let Some(url) = batch.and_then(|options| options.notify_url.as_deref()) {
            self.webhook_targets.check_url("notify_url", url)?;
        }
        for (n, spec) in specs.iter().enumerate() {
            if let Some(url) = &spec.notify_url {
                self.webhook_targets
                    .check_url("notify_url", url)
                    .map_err(|err| of_job(n, specs.len(), err))?;
            }
        }
        let n_specs = specs.len();
        let (batch_id, job_ids) = self.ledger.new_ids(n_specs, idempotency_key);
        let jobs = specs
            .into_iter()
            .zip(job_ids)
            .enumerate()
            .map(|(n, (spec, job_id))| {
                let spec = self
                    .priced(job_id, spec)
                    .map_err(|err| of_job(n, n_specs, err))?;
                Ok((job_id, spec))
            })
            .collect::<Result<_, SpecError>>()?;
        Ok((batch_id, jobs))
    }

    pub async fn enqueue(&self, request: JobRequest) -> Result<JobId, ProducerError> {
        self.enqueue_spec(request.validate(&self.catalog, now_ms())?)
            .await
    }

    /// Enqueues one already validated job.
    pub async fn enqueue_spec(&self, spec: JobSpec) -> Result<JobId, ProducerError> {
        let (_, jobs) = self.new_jobs(vec![spec], None, None)?;
        self.ledger.enqueue(None, &jobs).await?;
        Ok(jobs[0].0)
    }

    /// Enqueues validated specs as one batch, all or none.
    pub async fn enqueue_batch(&self, specs: Vec<JobSpec>) -> Result<BatchReceipt, ProducerError> {
        self.enqueue_batch_with(specs, &BatchOptions::default())
            .await
    }

    /// Enqueues validated specs as one batch with a name, window, budget or priority.
    pub async fn enqueue_batch_with(
        &self,
        specs: Vec<JobSpec>,
        options: &BatchOptions,
    ) -> Result<BatchReceipt, ProducerError> {
        let (batch_id, jobs) = self.new_jobs(specs, Some(options), None)?;
        self.ledger
            .enqueue(Some((batch_id, options)), &jobs)
            .await?;
        Ok(BatchReceipt {
            batch_id,
            job_ids: jobs.into_iter().map(|(job_id, _)| job_id).collect(),
        })
    }

    /// Enqueues validated specs (as a batch with `batch`'s options, if given) at most once
    /// per `key` within `scope` (each endpoint keeps its own keys): a repeated call with the
    /// same request within a day enqueues nothing and returns the first call's receipt (once
    /// all of its jobs are queued); with another request it is refused
    /// ([`QueueError::IdempotencyConflict`]). `progress` hears how far a large batch has come.
    pub async fn enqueue_once(
        &self,
        specs: Vec<JobSpec>,
        batch: Option<&BatchOptions>,
        (scope, key): (&str, &str),
        progress: &(dyn Fn(EnqueueProgress) + Sync),
    ) -> Result<Receipt, ProducerError> {
        let digest = request_digest(&specs, batch);
        let scoped_key = format!("{scope}:{key}");
        let (batch_id, jobs) = self.new_jobs(specs, batch, Some(&scoped_key))?;
        let batch_id = batch.map(|_| batch_id);
        let job_ids: Vec<JobId> = jobs.iter().map(|(job_id, _)| *job_id).collect();
        // A batch's receipt is its id (its job ids are in its list); a job's, its id.
        let stored = match batch_id {
            Some(batch_id) => StoredReceipt::Batch { batch_id },
            None => StoredReceipt::Jobs {
                job_ids: job_ids.clone(),
            },
        };
        let stored = serde_json::to_string(&stored).expect("a receipt serializes");
        let once = Idempotency {
            key: &scoped_key,
            ttl: IDEMPOTENCY_TTL,
            digest: &digest,
            receipt: &stored,
        };
        let enqueued = self
            .ledger
            .enqueue_once(batch_id.zip(batch), &jobs, Some(once), progress)
            .await
            .map_err(|err| match err {
                QueueError::IdempotencyConflict(_) => {
                    QueueError::IdempotencyConflict(key.to_owned())
                }
                err => err,
            })?;
        let earlier = match enqueued {
            Enqueued::New => {
                return Ok(Receipt {
                    batch_id,
                    job_ids,
                    replayed: false,
                });
            }
            Enqueued::Replayed(earlier) => earlier,
        };
        let earlier: StoredReceipt =
            serde_json::from_str(&earlier).map_err(|err| QueueError::Corrupt {
                job_id: format!("idempotency key {key}"),
                detail: format!("receipt: {err}"),
            })?;
        let (batch_id, job_ids) = match earlier {
            StoredReceipt::Jobs { job_ids } => (None, job_ids),
            StoredReceipt::Batch { batch_id } => (Some(batch_id), self.batch_jobs(batch_id).await?),
        };
        Ok(Receipt {
            batch_id,
            job_ids,
            replayed: true,
        })
    }

    /// Enqueues a manifest's validated specs as one batch, once: the same specs with the
    /// same options within a day return the first batch's receipt (`replayed`) instead,
    /// whoever submits them, so a retry after a crash or a lost answer never pays twice.
    pub async fn enqueue_manifest_once(
        &self,
        specs: Vec<JobSpec>,
        options: &BatchOptions,
        progress: &(dyn Fn(EnqueueProgress) + Sync),
    ) -> Result<Receipt, ProducerError> {
        let key = request_digest(&specs, Some(options));
        self.enqueue_once(specs, Some(options), ("manifest", &key), progress)
            .await
    }

    /// Validates a JSONL manifest and enqueues it as one batch; any bad line refuses it all.
    pub async fn enqueue_manifest(&self, manifest: &str) -> Result<BatchReceipt, ProducerError> {
        let specs = parse_manifest(manifest, &self.catalog, now_ms())?;
        self.enqueue_batch(specs).await
    }
}
