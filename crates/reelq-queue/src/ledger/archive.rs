//! The ledger's side of archiving finished jobs to the object store (the worker's
//! `archiver.rs` runs it): one archiver at a time holds a lease, reads the jobs whose grace
//! has passed, and, once their segment is in the store, takes out of Redis those that did
//! not change meanwhile (`archive.lua`). The last pass's outcome is kept for `reelq stats`.
//!
//! | key | type | content |
//! |---|---|---|
//! | `P archiver` | string | the archiving replica's lease token (expires) |
//! | `P batchinfo:{id}` `archived` | hash field | how many of the batch's jobs were archived |
//! | `P archive_ready` | zset | batch id -> ms its last job was archived: the batch is archived next |
//! | `P archive` | hash | `archived` and `segments` (totals), `ok_ms` (last pass that archived or found nothing to), `failed_ms` and `error` (the last failure, cleared by a good pass) |

use std::{collections::HashMap, sync::atomic::Ordering, time::Duration};

use reelq_core::{JobId, JobState};
use serde::{Deserialize, Serialize};

use tracing::warn;

use super::now_unix_ms;
use crate::scripts;
use crate::{ArchivedJob, BatchInfo, JobRecord, Ledger, QueueError, record::take_events};

/// How many index entries a pass reads per job it wants, passing over jobs whose webhook is
/// pending, before it gives up for this pass.
pub const SCANNED_PER_CANDIDATE: usize = 4;

/// Most batches one pass archives.
pub const BATCHES_PER_PASS: usize = 1_000;

/// The batch settings a removal checks unchanged (as `archive.lua`'s `BATCH_SNAPSHOT`).
const BATCH_SNAPSHOT: [&str; 6] = [
    "budget_micros",
    "reserved_micros",
    "cancelled_ms",
    "start_after_ms",
    "priority",
    "name",
];

/// A finished batch as the archiver writes it (one JSON line of a batch segment): its
/// settings and spend, its job ids in manifest order, and when it was archived.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ArchivedBatch {
    #[serde(flatten)]
    pub info: BatchInfo,
    pub job_ids: Vec<JobId>,
    pub archived_ms: u64,
    /// Its settings as read, which its removal checks unchanged.
    #[serde(skip)]
    read_snapshot: String,
}

/// How long a finished job stays in Redis before it is archived.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ArchiveGrace {
    /// After `stored`, `rejected`, `expired` or `cancelled`.
    pub ended: Duration,
    /// After `failed`: longer, since operators retry failed jobs.
    pub failed: Duration,
}

impl ArchiveGrace {
    /// No grace: every finished job at once (tests, benchmarks, `reelq` tools).
    pub const NONE: ArchiveGrace = ArchiveGrace {
        ended: Duration::ZERO,
        failed: Duration::ZERO,
    };

    fn of(&self, state: JobState) -> Duration {
        match state {
            JobState::Failed => self.failed,
            _ => self.ended,
        }
    }
}

/// The archiver's lease: only its holder reads candidates and removes archived jobs, so two
/// replicas never archive the same job at once. It expires by itself if its holder dies.
#[derive(Debug)]
pub struct ArchiveLease {
    token: String,
    ttl: Duration,
    /// The partition it archives: each has its own archiver's lease.
    part: u16,
}

/// A finished job read for archiving, with what its removal checks (the job must not have
/// changed since).
#[derive(Debug, Clone)]
pub struct ArchiveCandidate {
    pub job: ArchivedJob,
    read_updated_ms: String,
    read_events: String,
}

impl ArchiveCandidate {
    pub fn job_id(&self) -> JobId {
        self.job.record.job_id
    }
}

/// What removing archived jobs from Redis did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Removed {
    pub removed: u64,
    /// Left in Redis: changed since they were read (an operator's retry), or gone already.
    pub kept: u64,
}

/// The archiver's last passes, as `reelq stats` shows them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ArchiveStatus {
    /// Jobs taken out of Redis into the store, in all.
    pub archived: u64,
    pub segments: u64,
    /// The last pass that went through (unix ms).
    pub ok_ms: Option<u64>,
    /// Set while archiving fails: since when (the first failure after a good pass) and why.
    pub failing_since_ms: Option<u64>,
    pub error: Option<String>,
}

/// A finished job's candidate from its record's fields (and, on a ledger before schema 3,
/// its event list); None if its webhook became pending since it was listed.
fn candidate(
    job_id: JobId,
    mut fields: HashMap<String, String>,
    mut events: Vec<String>,
    now: u64,
) -> Result<Option<ArchiveCandidate>, QueueError> {
    if fields.get("notify_state").is_some_and(|s| s == "pending") {
        return Ok(None);
    }
    let read_updated_ms = fields.get("updated_ms").cloned().unwrap_or_default();
    let read_events = fields.get("events").cloned().unwrap_or_default();
    events.extend(take_events(&mut fields));
    let record = JobRecord::from_fields(job_id, fields)?;
    Ok(Some(ArchiveCandidate {
        job: ArchivedJob {
            record,
            events,
            archived_ms: now,
        },
        read_updated_ms,
        read_events,
    }))
}

/// One call of `archive.lua`: what it is asked to do, which is its whole argument list after
/// the prefix, the lease's token and its renewal (the layout is written here only).
enum ArchiveCall {
    /// Take these jobs out, each if unchanged since read: (id, state read, `updated_ms` and
    /// `events` as read; both empty for a record already gone).
    Remove(Vec<(JobId, JobState, String, String)>),
    /// Take these batches out, each if unchanged: (id, settings snapshot as read).
    RemoveBatches(Vec<(String, String)>),
    /// Take the lease, if nobody holds it.
    Take,
    /// Give the lease up.
    Release,
}

impl ArchiveCall {
    fn into_args(self, lease: &ArchiveLease) -> scripts::archive::Args<'_> {
        let (op, jobs, batches) = match self {
            ArchiveCall::Remove(jobs) => (
                "remove",
                jobs.into_iter()
                    .map(
                        |(id, state, updated_ms, events)| scripts::archive::ReadJob {
                            id: id.to_string(),
                            state: state.as_str(),
                            updated_ms,
                            events,
                        },
                    )
                    .collect(),
                Vec::new(),
            ),
            ArchiveCall::RemoveBatches(batches) => (
                "remove_batches",
                Vec::new(),
                batches
                    .into_iter()
                    .map(|(id, snapshot)| scripts::archive::ReadBatch { id, snapshot })
                    .collect(),
            ),
            ArchiveCall::Take => ("take", Vec::new(), Vec::new()),
            ArchiveCall::Release => ("release", Vec::new(), Vec::new()),
        };
        scripts::archive::Args {
            token: &lease.token,
            op,
            lease_ms: lease.ttl.as_millis() as u64,
            jobs,
            batches,
        }
    }
}

impl Ledger {
    /// Takes the archiver's lease for `ttl`, if no other replica holds it (on a full Redis
    /// too: the archiver frees memory).
    /// Each partition has its own: this takes the next one's in turn that no other replica
    /// holds, so passes go round the partitions.
    pub async fn take_archive_lease(
        &self,
        ttl: Duration,
    ) -> Result<Option<ArchiveLease>, QueueError> {
        // Every slot holding jobs: the partitions, and a legacy one.
        let partitions = self.job_slots() as u16;
        let first = self.safety.archive_turn.fetch_add(1, Ordering::Relaxed);
        for turn in 0..partitions {
            let lease = ArchiveLease {
                token: format!("{:032x}", rand::random::<u128>()),
                ttl,
                part: ((first as u64 + u64::from(turn)) % u64::from(partitions)) as u16,
            };
            match self.archive_call(&lease, ArchiveCall::Take).await {
                Ok(_) => return Ok(Some(lease)),
                Err(QueueError::ArchiveLeaseLost) => continue,
                Err(err) => return Err(err),
            }
        }
        Ok(None)
    }

    /// Gives the lease up (a no-op if it expired and another replica holds it now).
    pub async fn release_archive_lease(&self, lease: ArchiveLease) -> Result<(), QueueError> {
        self.archive_call(&lease, ArchiveCall::Release)
            .await
            .map(drop)
    }

    /// Up to `limit` finished jobs whose grace has passed (by Redis's clock), oldest ending
    /// first per state, with their records and event logs. A job whose completion webhook is
    /// still pending is not one (its sender reads the record): those are passed over, up to
    /// [`SCANNED_PER_CANDIDATE`] index entries per job wanted, so a webhook receiver down for
    /// days does not stall archiving. A record that cannot be read is left in Redis, with a
    /// warning.
    pub async fn archive_candidates(
        &self,
        lease: &ArchiveLease,
        grace: ArchiveGrace,
        limit: usize,
    ) -> Result<Vec<ArchiveCandidate>, QueueError> {
        let part = &self.parts()[usize::from(lease.part)];
        let mut conn = part.conn().await?;
        let (secs, micros): (u64, u64) = redis::cmd("TIME").query_async(&mut conn).await?;
        let now = secs * 1000 + micros / 1000;
        let old_logs = self.schema().await? < crate::ledger::COMPACT_RECORDS_SCHEMA;
        let mut ids: Vec<(JobState, JobId)> = Vec::new();
        let ended = JobState::ALL
            .into_iter()
            .filter(|state| state.is_terminal());
        for state in ended {
            let cutoff = now.saturating_sub(grace.of(state).as_millis() as u64);
            let mut offset = 0;
            while ids.len() < limit && offset < limit * SCANNED_PER_CANDIDATE {
                let page: Vec<String> = redis::cmd("ZRANGEBYSCORE")
                    .arg(part.key(format!("state:{state}")))
                    .arg("-inf")
                    .arg(cutoff)
                    .arg("LIMIT")
                    .arg(offset)
                    .arg(limit)
                    .query_async(&mut conn)
                    .await?;
                if page.is_empty() {
                    break;
                }
                offset += page.len();
                let mut pipe = redis::pipe();
                for id in &page {
                    pipe.cmd("HGET")
                        .arg(part.key(format!("job:{id}")))
                        .arg("notify_state");
                }
                let notify: Vec<Option<String>> = pipe.query_async(&mut conn).await?;
                for (id, notify) in page.iter().zip(notify) {
                    if notify.as_deref() == Some("pending") || ids.len() == limit {
                        continue;
                    }
                    match id.parse() {
                        Ok(job_id) => ids.push((state, job_id)),
                        Err(err) => {
                            warn!(id, %err, "not archived: a state index entry that is no job id")
                        }
                    }
                }
            }
        }
        let mut candidates = Vec::with_capacity(ids.len());
        let mut gone = Vec::new();
        for chunk in ids.chunks(crate::ENQUEUE_CHUNK) {
            let mut pipe = redis::pipe();
            for (_, job_id) in chunk {
                pipe.cmd("HGETALL").arg(part.key(format!("job:{job_id}")));
                if old_logs {
                    pipe.cmd("LRANGE")
                        .arg(part.key(format!("log:{job_id}")))
                        .arg(0)
                        .arg(-1);
                }
            }
            let rows: Vec<(HashMap<String, String>, Vec<String>)> = match old_logs {
                true => pipe.query_async(&mut conn).await?,
                false => {
                    let records: Vec<HashMap<String, String>> = pipe.query_async(&mut conn).await?;
                    records
                        .into_iter()
                        .map(|fields| (fields, Vec::new()))
                        .collect()
                }
            };
            for (&(state, job_id), (fields, logged)) in chunk.iter().zip(rows) {
                if fields.is_empty() {
                    gone.push((state, job_id));
                    continue;
                }
                match candidate(job_id, fields, logged, now) {
                    Ok(Some(candidate)) => candidates.push(candidate),
                    Ok(None) => {}
                    Err(err) => warn!(%job_id, %err, "not archived: its record cannot be read"),
                }
            }
        }
        // Index entries of records already gone (a release before archiving let them
        // expire) are dropped now; they have nothing to archive.
        if !gone.is_empty() {
            warn!(
                jobs = gone.len(),
                "finished jobs whose records expired before they were archived (set by a release before, or a replica with archive = false)"
            );
            let gone = gone
                .into_iter()
                .map(|(state, id)| (id, state, String::new(), String::new()))
                .collect();
            self.archive_call(lease, ArchiveCall::Remove(gone)).await?;
        }
        Ok(candidates)
    }

    /// Takes `archived` (written to the store, acknowledged) out of Redis, each only if it
    /// has not changed since it was read, and renews the lease. Refused whole if the lease
    /// was lost.
    pub async fn remove_archived(
        &self,
        lease: &ArchiveLease,
        archived: &[ArchiveCandidate],
    ) -> Result<Removed, QueueError> {
        let mut total = Removed::default();
        for chunk in archived.chunks(crate::ENQUEUE_CHUNK) {
            let jobs = chunk
                .iter()
                .map(|candidate| {
                    (
                        candidate.job_id(),
                        candidate.job.record.state,
                        candidate.read_updated_ms.clone(),
                        candidate.read_events.clone(),
                    )
                })
                .collect();
            let removed = self.archive_call(lease, ArchiveCall::Remove(jobs)).await?;
            total.removed += removed.removed;
            total.kept += removed.kept;
        }
        Ok(total)
    }

    /// Runs one call of `archive.lua`: its reply is how many it removed and kept, or -1 when
    /// the lease is no longer this archiver's.
    async fn archive_call(
        &self,
        lease: &ArchiveLease,
        call: ArchiveCall,
    ) -> Result<Removed, QueueError> {
        let args = call.into_args(lease);
        let reply = self
            .run_in(&self.parts()[usize::from(lease.part)], &args)
            .await?;
        if !reply.held {
            return Err(QueueError::ArchiveLeaseLost);
        }
        let (removed, kept) = (reply.removed, reply.kept);
        Ok(Removed { removed, kept })
    }

    /// Finished batches whose jobs have all been archived (`P archive_ready`, filled by
    /// `archive.lua`), with their settings and job ids: up to [`BATCHES_PER_PASS`], read in
    /// pipelined round trips. One whose completion webhook is pending waits for the next pass.
    pub async fn archive_batch_candidates(
        &self,
        lease: &ArchiveLease,
    ) -> Result<Vec<ArchivedBatch>, QueueError> {
        let part = &self.parts()[usize::from(lease.part)];
        let mut conn = part.conn().await?;
        let ready: Vec<String> = redis::cmd("ZRANGE")
            .arg(part.key("archive_ready"))
            .arg(0)
            .arg(BATCHES_PER_PASS - 1)
            .query_async(&mut conn)
            .await?;
        let archived_ms = now_unix_ms();
        let (mut batches, mut gone) = (Vec::new(), Vec::new());
        for chunk in ready.chunks(100) {
            let mut pipe = redis::pipe();
            for id in chunk {
                pipe.cmd("HGETALL").arg(part.key(format!("batchinfo:{id}")));
                pipe.cmd("LRANGE")
                    .arg(part.key(format!("batch:{id}")))
                    .arg(0)
                    .arg(-1);
            }
            let replies: Vec<(HashMap<String, String>, Vec<String>)> =
                pipe.query_async(&mut conn).await?;
            for (id, (fields, job_ids)) in chunk.iter().zip(replies) {
                let Ok(batch_id) = id.parse() else {
                    warn!(id, "not archived: a ready batch that is no batch id");
                    continue;
                };
                if fields.get("notify_state").is_some_and(|s| s == "pending") {
                    continue;
                }
                let read_snapshot = BATCH_SNAPSHOT
                    .iter()
                    .map(|name| fields.get(*name).map_or("", String::as_str))
                    .collect::<Vec<_>>()
                    .join("|");
                let Some(info) = BatchInfo::from_fields(batch_id, &fields) else {
                    gone.push((id.clone(), read_snapshot));
                    continue;
                };
                let job_ids = job_ids.iter().filter_map(|id| id.parse().ok()).collect();
                batches.push(ArchivedBatch {
                    info,
                    job_ids,
                    archived_ms,
                    read_snapshot,
                });
            }
        }
        // Ready batches already gone leave the ready set.
        if !gone.is_empty() {
            self.archive_call(lease, ArchiveCall::RemoveBatches(gone))
                .await?;
        }
        Ok(batches)
    }

    /// Takes archived batches out of Redis, each only if it is still finished with every job
    /// archived; renews the lease.
    pub async fn remove_archived_batches(
        &self,
        lease: &ArchiveLease,
        archived: &[ArchivedBatch],
    ) -> Result<Removed, QueueError> {
        let batches = archived
            .iter()
            .map(|batch| (batch.info.batch_id.to_string(), batch.read_snapshot.clone()))
            .collect();
        self.archive_call(lease, ArchiveCall::RemoveBatches(batches))
            .await
    }

    /// Records a pass: `Ok((jobs, segments))` adds to the totals and clears a failure;
    /// `Err(why)` marks archiving as failing (since the first failure).
    pub async fn record_archive_pass(
        &self,
        outcome: Result<(u64, u64), &str>,
    ) -> Result<(), QueueError> {
        let key = self.home_key("archive");
        let now = now_unix_ms();
        let mut pipe = redis::pipe();
        match outcome {
            Ok((jobs, segments)) => {
                pipe.cmd("HINCRBY")
                    .arg(&key)
                    .arg("archived")
                    .arg(jobs)
                    .ignore();
                pipe.cmd("HINCRBY")
                    .arg(&key)
                    .arg("segments")
                    .arg(segments)
                    .ignore();
                pipe.cmd("HSET").arg(&key).arg("ok_ms").arg(now).ignore();
                pipe.cmd("HDEL")
                    .arg(&key)
                    .arg("failed_ms")
                    .arg("error")
                    .ignore();
            }
            Err(why) => {
                let why: String = why.chars().take(300).collect();
                pipe.cmd("HSETNX")
                    .arg(&key)
                    .arg("failed_ms")
                    .arg(now)
                    .ignore();
                pipe.cmd("HSET").arg(&key).arg("error").arg(why).ignore();
            }
        }
        pipe.query_async::<()>(&mut self.home_conn().await?).await?;
        Ok(())
    }

    pub async fn archive_status(&self) -> Result<ArchiveStatus, QueueError> {
        let fields: HashMap<String, String> = redis::cmd("HGETALL")
            .arg(self.home_key("archive"))
            .query_async(&mut self.home_conn().await?)
            .await?;
        let number = |name: &str| fields.get(name).and_then(|v| v.parse::<u64>().ok());
        Ok(ArchiveStatus {
            archived: number("archived").unwrap_or(0),
            segments: number("segments").unwrap_or(0),
            ok_ms: number("ok_ms"),
            failing_since_ms: number("failed_ms"),
            error: fields.get("error").cloned(),
        })
    }
}
