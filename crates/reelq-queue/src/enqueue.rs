//! Enqueueing, all or none, of one job or a million.
//!
//! Up to [`ENQUEUE_CHUNK`] (500) jobs go in one script (`enqueue.lua`). A larger batch would make
//! one script run for seconds, and Redis serves no other client meanwhile, so it goes in
//! three steps that each stay short:
//!
//! 1. **stage**: its jobs are appended, a chunk per command, to `P stage:{batch}`, a list
//!    nothing claims, which expires unless committed (a producer that dies here leaves
//!    nothing claimable, and nothing to clean up);
//! 2. **commit** (`commit.lua`, a handful of commands): the batch record, the idempotency
//!    record, and the batch's entry in `P releasing`: from here on all of it will be queued;
//! 3. **release** (`release.lua`, one chunk per call): staged jobs become queued jobs. The
//!    producer runs it to the end before answering; if it dies, a replay of its request, or
//!    any worker's sweep ([`Ledger::release_committed`]), finishes it.
//!
//! An idempotency record keeps a digest of the request it answered and the batch it made:
//! the same key with the same request returns the first receipt (after finishing that
//! batch's release), with another request it is refused ([`QueueError::IdempotencyConflict`]).

use std::time::Duration;

use reelq_core::{BatchId, BatchOptions, JobId, JobSpec, usd_to_micros};

use crate::{
    Ledger, QueueError,
    ledger::Part,
    scripts,
    scripts::jobs::{Answer, Once, QueuedJob},
};

/// The most jobs one enqueue or release script writes: 10-25 ms of Redis time on a 2-core
/// machine with `appendfsync always` (1,000 took up to 100 ms: `reelq-bench large-batch`).
pub const ENQUEUE_CHUNK: usize = 500;

/// Jobs staged per command (an `RPUSH` of their JSON, no script).
const STAGE_CHUNK: usize = 5000;

/// How long a staged, uncommitted batch is kept: long enough for its producer to finish
/// staging, short enough that an abandoned one frees its memory the same day.
const STAGE_TTL: Duration = Duration::from_secs(3600);

/// A sweep leaves batches committed less than this long ago to their own producer.
pub const SWEEP_AFTER: Duration = Duration::from_secs(30);

/// Makes an enqueue happen at most once per key.
#[derive(Debug, Clone, Copy)]
pub struct Idempotency<'a> {
    /// The caller's key, scoped by the caller (e.g. `api-batches:<Idempotency-Key>`).
    pub key: &'a str,
    /// How long the key is remembered.
    pub ttl: Duration,
    /// A digest of the request: the same key with another request is refused.
    pub digest: &'a str,
    /// What a repeated call gets back (e.g. the job ids, as JSON).
    pub receipt: &'a str,
}

/// What an enqueue did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Enqueued {
    New,
    /// An earlier call with the same key and request did it; its receipt.
    Replayed(String),
}

/// How far a large enqueue has come, for a progress bar.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EnqueueProgress {
    /// Jobs staged so far.
    Staged(usize),
    /// Jobs queued so far (claimable).
    Queued(usize),
}

/// How many of `jobs` each tenant gets (what its cap on jobs waiting is checked against).
fn waiting_by_tenant(jobs: &[(JobId, JobSpec)]) -> std::collections::BTreeMap<String, u64> {
    let mut waiting = std::collections::BTreeMap::new();
    for (_, spec) in jobs {
        *waiting.entry(spec.tenant_name().to_owned()).or_default() += 1;
    }
    waiting
}

/// A job as the enqueue scripts write it.
fn queued_job(job_id: JobId, spec: &JobSpec) -> Result<QueuedJob, QueueError> {
    Ok(QueuedJob {
        id: job_id.to_string(),
        provider: spec.account_or_provider().into(),
        spec: serde_json::to_string(spec).map_err(|err| QueueError::corrupt(job_id, err))?,
        deadline_ms: spec.deadline_ms,
        notify_url: spec.notify_url.clone(),
        cost_micros: spec.estimated_cost_usd.map_or(0, usd_to_micros),
        tenant: spec
            .tenant
            .as_ref()
            .map(|tenant| tenant.as_str().to_owned()),
        route_hold: spec
            .route
            .as_ref()
            .and_then(|route| route.hold())
            .map(Into::into),
    })
}

impl Ledger {
    /// Writes validated jobs, either all or none (see the module doc for large batches).
    pub async fn enqueue(
        &self,
        batch: Option<(BatchId, &BatchOptions)>,
        jobs: &[(JobId, JobSpec)],
    ) -> Result<(), QueueError> {
        self.enqueue_once(batch, jobs, None, &|_| {})
            .await
            .map(|_| ())
    }

    /// Like [`Ledger::enqueue`], but at most once per idempotency key (kept for `ttl`): a
    /// repeated call writes nothing and returns the receipt stored by the first one.
    /// `progress` hears how far a large batch has come.
    pub async fn enqueue_once(
        &self,
        batch: Option<(BatchId, &BatchOptions)>,
        jobs: &[(JobId, JobSpec)],
        idempotency: Option<Idempotency<'_>>,
        progress: &(dyn Fn(EnqueueProgress) + Sync),
    ) -> Result<Enqueued, QueueError> {
        self.ensure_safe()?;
        let part = self.enqueue_part(batch.map(|(batch_id, _)| batch_id), jobs)?;
        self.await_replicas().await?;
        // A request first made before the ledger was partitioned is answered from there.
        if let (Some(legacy), Some(once)) = (self.legacy(), &idempotency) {
            let key = legacy.key(format!("idem:{}", once.key));
            if let Some(answer) = recorded_answer(legacy, &key, once).await? {
                return self.answered(answer, &Some((*once, key))).await;
            }
        }
        let idem = idempotency.map(|once| (once, part.key(format!("idem:{}", once.key))));
        match batch {
            Some((batch_id, options)) if jobs.len() > ENQUEUE_CHUNK => {
                self.enqueue_staged(part, batch_id, options, jobs, idem, progress)
                    .await
            }
            _ => self.enqueue_at_once(part, batch, jobs, idem).await,
        }
    }

    /// The partition one enqueue writes to: its batch's, or its first job's; every id of it
    /// must name that one.
    fn enqueue_part(
        &self,
        batch: Option<BatchId>,
        jobs: &[(JobId, JobSpec)],
    ) -> Result<&Part, QueueError> {
        let first = batch
            .map(|batch_id| batch_id.to_string())
            .or_else(|| jobs.first().map(|(job_id, _)| job_id.to_string()))
            .map_or(&self.parts()[0], |id| self.part_of(&id));
        if let Some((job_id, _)) = jobs
            .iter()
            .find(|(job_id, _)| self.part_of(&job_id.to_string()).index != first.index)
        {
            return Err(QueueError::Partition {
                id: job_id.to_string(),
                partitions: self.partitions(),
            });
        }
        Ok(first)
    }

    /// Fresh ids for one enqueue of `jobs` jobs (and its batch, if it is one), all in one
    /// partition: the one an idempotency key names (so a replay finds the first call's
    /// record), else the next in turn (this client's enqueues spread evenly).
    pub fn new_ids(&self, jobs: usize, idempotency_key: Option<&str>) -> (BatchId, Vec<JobId>) {
        let partitions = self.partitions();
        let partition = match idempotency_key {
            Some(key) => key_partition(key, partitions),
            None => (self.next_enqueue_turn() % usize::from(partitions)) as u16,
        };
        let since = self.legacy_since().unwrap_or(0);
        (
            BatchId::new_in_since(partition, partitions, since),
            (0..jobs)
                .map(|_| JobId::new_in_since(partition, partitions, since))
                .collect(),
        )
    }

    /// On a ledger of several partitions: how many jobs each tenant of `jobs` with a cap on
    /// jobs waiting has waiting in the other partitions (what `over_backlog` adds to its own
    /// count). Read just before the enqueue, not with it: two enqueues into two partitions
    /// at once may each pass the cap by what the other adds.
    async fn waiting_elsewhere(
        &self,
        part: &Part,
        jobs: &[(JobId, JobSpec)],
    ) -> Result<std::collections::BTreeMap<String, u64>, QueueError> {
        let mut elsewhere = std::collections::BTreeMap::new();
        let tenants: Vec<String> = waiting_by_tenant(jobs).into_keys().collect();
        if self.partitions() == 1 || tenants.is_empty() {
            return Ok(elsewhere);
        }
        let caps: Vec<Option<String>> = redis::cmd("HMGET")
            .arg(self.home_key("tenant_limits"))
            .arg(&tenants)
            .query_async(&mut self.home_conn().await?)
            .await?;
        let capped: Vec<&String> = tenants
            .iter()
            .zip(caps)
            .filter(|(_, caps)| {
                caps.as_deref()
                    .is_some_and(|caps| caps.contains("max_waiting"))
            })
            .map(|(tenant, _)| tenant)
            .collect();
        if capped.is_empty() {
            return Ok(elsewhere);
        }
        let per_part: Vec<Vec<u64>> = self
            .in_every_part(|other, pipe| {
                if other.index != part.index {
                    for tenant in &capped {
                        pipe.cmd("ZCARD").arg(other.key(format!("queued:{tenant}")));
                    }
                }
            })
            .await?;
        for (n, tenant) in capped.into_iter().enumerate() {
            let waiting = per_part.iter().filter_map(|counts| counts.get(n)).sum();
            elsewhere.insert(tenant.clone(), waiting);
        }
        Ok(elsewhere)
    }

    async fn enqueue_at_once(
        &self,
        part: &Part,
        batch: Option<(BatchId, &BatchOptions)>,
        jobs: &[(JobId, JobSpec)],
        idem: Option<(Idempotency<'_>, String)>,
    ) -> Result<Enqueued, QueueError> {
        let args = scripts::enqueue::Args {
            batch: batch.map(|(batch_id, _)| batch_id.to_string()),
            once: idem.as_ref().map(|(once, _)| once_args(once)),
            options: batch.map(|(_, options)| options),
            jobs: jobs
                .iter()
                .map(|(job_id, spec)| queued_job(*job_id, spec))
                .collect::<Result<_, _>>()?,
            waiting: waiting_by_tenant(jobs),
            elsewhere: self.waiting_elsewhere(part, jobs).await?,
        };
        let mut conn = part.conn().await?;
        let answer = self.run_script(part, &mut conn, &args).await?;
        let enqueued = self.answered(answer, &idem).await?;
        // Durable before the producer hears of it: a receipt for jobs a crash can take back
        // would be a lie. Not durable: the producer retries (under its idempotency key).
        self.make_durable(part, &mut conn, crate::ledger::Durable::Acknowledged)
            .await?;
        Ok(enqueued)
    }

    async fn enqueue_staged(
        &self,
        part: &Part,
        batch_id: BatchId,
        options: &BatchOptions,
        jobs: &[(JobId, JobSpec)],
        idem: Option<(Idempotency<'_>, String)>,
        progress: &(dyn Fn(EnqueueProgress) + Sync),
    ) -> Result<Enqueued, QueueError> {
        // A replay needs no staging; the commit checks again (two calls may race).
        if let Some((once, key)) = &idem
            && let Some(answer) = recorded_answer(part, key, once).await?
        {
            return self.answered(answer, &idem).await;
        }
        let stage = part.key(format!("stage:{batch_id}"));
        for (n_chunk, chunk) in jobs.chunks(STAGE_CHUNK).enumerate() {
            let mut entries = Vec::with_capacity(chunk.len());
            for (job_id, spec) in chunk {
                entries.push(queued_job(*job_id, spec)?.staged());
            }
            let _: () = redis::pipe()
                .cmd("RPUSH")
                .arg(&stage)
                .arg(entries)
                .ignore()
                .cmd("PEXPIRE")
                .arg(&stage)
                .arg(STAGE_TTL.as_millis() as u64)
                .ignore()
                .query_async(&mut part.conn().await?)
                .await?;
            progress(EnqueueProgress::Staged(
                (n_chunk * STAGE_CHUNK + chunk.len()).min(jobs.len()),
            ));
        }
        let args = scripts::commit::Args {
            batch: batch_id.to_string(),
            once: idem.as_ref().map(|(once, _)| once_args(once)),
            options,
            n_jobs: jobs.len(),
            waiting: waiting_by_tenant(jobs),
            elsewhere: self.waiting_elsewhere(part, jobs).await?,
        };
        let mut conn = part.conn().await?;
        let answer = self.run_script(part, &mut conn, &args).await?;
        let enqueued = self.answered(answer, &idem).await?;
        if enqueued != Enqueued::New {
            // Another call under this key committed first: this stage is never needed.
            let _: () = redis::cmd("UNLINK")
                .arg(&stage)
                .query_async(&mut conn)
                .await?;
            return Ok(enqueued);
        }
        // The commit is the promise: durable before any job of it is claimable.
        self.make_durable(part, &mut conn, crate::ledger::Durable::Acknowledged)
            .await?;
        // Committed: whatever happens now, the answer is the receipt (an error would make a
        // client without an idempotency key enqueue it all again). A release cut short is
        // finished by a replay or a worker's sweep.
        if let Err(err) = self.release_batch(batch_id, progress).await {
            tracing::warn!(%batch_id, error = %err, "batch committed, its release left to the sweep");
        }
        Ok(Enqueued::New)
    }

    /// Reads an enqueue script's `{n, receipt, batch}`. A replay first finishes queueing the
    /// batch the first call made (it may have died while doing so).
    async fn answered(
        &self,
        answer: Answer,
        idem: &Option<(Idempotency<'_>, String)>,
    ) -> Result<Enqueued, QueueError> {
        match (answer, idem) {
            (Answer::Conflict, Some((once, _))) => {
                Err(QueueError::IdempotencyConflict(once.key.to_owned()))
            }
            (
                Answer::OverBacklog {
                    tenant,
                    waiting,
                    max,
                },
                _,
            ) => Err(QueueError::TenantBacklog {
                tenant,
                waiting,
                max,
            }),
            (Answer::Repeated { receipt, batch }, Some(_)) => {
                if let Some(Ok(batch_id)) = batch.map(|batch| batch.parse::<BatchId>()) {
                    self.release_batch(batch_id, &|_| {}).await?;
                }
                Ok(Enqueued::Replayed(receipt))
            }
            _ => Ok(Enqueued::New),
        }
    }

    /// Queues the rest of a committed batch's staged jobs, a chunk per script, and returns
    /// how many this call queued (0 for a batch with nothing staged). Safe to run from any
    /// number of clients at once.
    pub async fn release_batch(
        &self,
        batch_id: BatchId,
        progress: &(dyn Fn(EnqueueProgress) + Sync),
    ) -> Result<usize, QueueError> {
        let mut queued = 0;
        let part = self.part_of(&batch_id.to_string());
        let mut conn = part.conn().await?;
        loop {
            let args = scripts::release::Args {
                batch: batch_id.to_string(),
                max_jobs: ENQUEUE_CHUNK,
            };
            let reply = self.run_script(part, &mut conn, &args).await?;
            let (released, left) = (reply.queued, reply.left);
            queued += released;
            if released > 0 {
                progress(EnqueueProgress::Queued(queued));
            }
            if left == 0 || released == 0 {
                break;
            }
        }
        self.make_durable(part, &mut conn, crate::ledger::Durable::Acknowledged)
            .await?;
        Ok(queued)
    }

    /// Finishes the release of batches committed more than `older_than` ago, whose
    /// producer has stopped (workers run this every little while, with
    /// [`SWEEP_AFTER`]). Returns how many jobs it queued.
    pub async fn release_committed(&self, older_than: Duration) -> Result<usize, QueueError> {
        let before_ms = crate::ledger::now_unix_ms().saturating_sub(older_than.as_millis() as u64);
        let mut batches: Vec<String> = Vec::new();
        for part in self.parts() {
            let found: Vec<String> = redis::cmd("ZRANGEBYSCORE")
                .arg(part.key("releasing"))
                .arg("-inf")
                .arg(before_ms)
                .arg("LIMIT")
                .arg(0)
                .arg(10)
                .query_async(&mut part.conn().await?)
                .await?;
            batches.extend(found);
        }
        let mut queued = 0;
        for batch in batches {
            let batch_id: BatchId = batch
                .parse()
                .map_err(|_| QueueError::corrupt(&batch, "a releasing batch id"))?;
            queued += self.release_batch(batch_id, &|_| {}).await?;
        }
        Ok(queued)
    }
}

/// What the idempotency record `key` (in `part`) answers a request under it, if it exists:
/// the same request repeated, or another.
async fn recorded_answer(
    part: &Part,
    key: &str,
    once: &Idempotency<'_>,
) -> Result<Option<Answer>, QueueError> {
    let (digest, receipt, batch): (Option<String>, Option<String>, Option<String>) =
        redis::cmd("HMGET")
            .arg(key)
            .arg("digest")
            .arg("receipt")
            .arg("batch")
            .query_async(&mut part.conn().await?)
            .await?;
    let (Some(digest), Some(receipt)) = (digest, receipt) else {
        return Ok(None);
    };
    Ok(Some(if digest == once.digest {
        Answer::Repeated { receipt, batch }
    } else {
        Answer::Conflict
    }))
}

/// The partition an idempotency key's record lives in.
fn key_partition(key: &str, partitions: u16) -> u16 {
    (reelq_core::stable_hash(key) % u64::from(partitions.max(1))) as u16
}

/// A request's idempotency as the scripts take it.
fn once_args<'a>(once: &Idempotency<'a>) -> Once<'a> {
    Once {
        key: once.key,
        ttl_s: once.ttl.as_secs().max(1),
        digest: once.digest,
        receipt: once.receipt,
    }
}
