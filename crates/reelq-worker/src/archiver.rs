//! The archiver: finished jobs leave Redis for the object store after their grace, and every
//! reader still finds them there (`reelq_storage::history`). Every `[history] every`, the
//! replica that takes the archiver's lease reads the jobs past their grace, writes them as
//! segments (one day's, cut by count and span), and once the store has acknowledged a segment
//! takes its jobs out of Redis, each only if it has not changed since it was read
//! (`reelq_queue`'s `ledger/archive.rs`). The store down or refusing: the jobs stay in Redis,
//! the pass is recorded as failing (`reelq stats`, `/readyz`, `reelq_archive_failing`) and
//! the next pass tries again; nothing fails. A replica that dies between a segment and the
//! removal leaves its jobs in Redis: they are written again, and readers keep one.

use std::{sync::Arc, time::Duration};

use reelq_core::BatchId;
use reelq_queue::{ArchiveCandidate, ArchiveGrace, ArchivedBatch, Ledger, QueueError};
use reelq_storage::{HistoryLine, HistoryStore, StorageError, history::cut_segments};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

/// How long the lease outlives its holder's last sign of life (it is renewed with each
/// segment's removal): a replica that dies mid-pass holds archiving up this long.
const LEASE_TTL: Duration = Duration::from_secs(60);

#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    #[error(transparent)]
    Ledger(#[from] QueueError),
    #[error("writing history to the store: {0}")]
    Store(#[from] StorageError),
}

/// What one pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pass {
    /// Another replica holds the lease: this one did nothing.
    pub not_ours: bool,
    /// Jobs past their grace that were read.
    pub read: u64,
    pub segments: u64,
    /// Jobs taken out of Redis (in the store now).
    pub archived: u64,
    /// Written, but left in Redis: they changed since they were read (archived again later).
    pub kept: u64,
    /// Compressed bytes written.
    pub bytes: u64,
    /// Finished batches taken out of Redis (every job of theirs archived).
    pub batches: u64,
}

pub struct Archiver {
    ledger: Ledger,
    history: HistoryStore,
    grace: ArchiveGrace,
    max_jobs: usize,
}

impl Archiver {
    pub fn new(
        ledger: Ledger,
        history: HistoryStore,
        grace: ArchiveGrace,
        max_jobs: usize,
    ) -> Self {
        Archiver {
            ledger,
            history,
            grace,
            max_jobs,
        }
    }

    pub(crate) async fn run(self: Arc<Self>, every: Duration, shutdown: CancellationToken) {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tick.tick() => {}
            }
            match self.pass().await {
                Ok(pass) if pass.read > 0 || pass.batches > 0 => info!(
                    archived = pass.archived,
                    batches = pass.batches,
                    kept = pass.kept,
                    segments = pass.segments,
                    bytes = pass.bytes,
                    "archived finished jobs to the store"
                ),
                Ok(_) => {}
                Err(err) => {
                    warn!(error = %err, "archiving failed: the jobs stay in Redis; trying again next pass")
                }
            }
        }
    }

    /// One pass over every partition of the ledger (each has its archiver's lease): in each
    /// whose lease no other replica holds, archives up to `max_jobs` jobs past their grace.
    /// `not_ours` if another replica held every one.
    pub async fn pass(&self) -> Result<Pass, ArchiveError> {
        let mut total = Pass {
            not_ours: true,
            ..Pass::default()
        };
        for _ in 0..self.ledger.job_slots() {
            let pass = self.pass_one().await?;
            total.not_ours &= pass.not_ours;
            total.read += pass.read;
            total.segments += pass.segments;
            total.archived += pass.archived;
            total.kept += pass.kept;
            total.bytes += pass.bytes;
            total.batches += pass.batches;
        }
        Ok(total)
    }

    /// One partition's pass: takes its lease, archives up to `max_jobs` jobs past their grace,
    /// gives the lease back. A failure is recorded in the ledger (and metrics) before it is
    /// returned.
    async fn pass_one(&self) -> Result<Pass, ArchiveError> {
        let Some(lease) = self.ledger.take_archive_lease(LEASE_TTL).await? else {
            return Ok(Pass {
                not_ours: true,
                ..Pass::default()
            });
        };
        let outcome = self.archive(&lease).await;
        let recorded = match &outcome {
            Ok(pass) => {
                metrics::gauge!("reelq_archive_failing").set(0.0);
                metrics::counter!("reelq_archived_jobs_total").increment(pass.archived);
                metrics::counter!("reelq_archive_segments_total").increment(pass.segments);
                metrics::counter!("reelq_archive_bytes_total").increment(pass.bytes);
                self.ledger
                    .record_archive_pass(Ok((pass.archived, pass.segments)))
                    .await
            }
            Err(err) => {
                metrics::gauge!("reelq_archive_failing").set(1.0);
                metrics::counter!("reelq_archive_failures_total").increment(1);
                self.ledger.record_archive_pass(Err(&err.to_string())).await
            }
        };
        if let Err(err) = recorded {
            warn!(error = %err, "recording the archive pass failed");
        }
        if let Err(err) = self.ledger.release_archive_lease(lease).await {
            warn!(error = %err, "giving the archiver's lease back failed (it expires by itself)");
        }
        outcome
    }

    async fn archive(&self, lease: &reelq_queue::ArchiveLease) -> Result<Pass, ArchiveError> {
        let candidates = self
            .ledger
            .archive_candidates(lease, self.grace, self.max_jobs)
            .await?;
        let mut pass = Pass {
            read: candidates.len() as u64,
            ..Pass::default()
        };
        let lines = candidates.iter().map(line).collect();
        let mut by_id: std::collections::HashMap<_, _> = candidates
            .into_iter()
            .map(|candidate| (candidate.job_id(), candidate))
            .collect();
        for segment in cut_segments(lines) {
            let written = self.history.put_segment(&segment).await?;
            pass.segments += 1;
            pass.bytes += written.bytes;
            let archived: Vec<ArchiveCandidate> = segment
                .iter()
                .filter_map(|line| by_id.remove(&line.id))
                .collect();
            let removed = self.ledger.remove_archived(lease, &archived).await?;
            pass.archived += removed.removed;
            pass.kept += removed.kept;
        }
        let batches = self.ledger.archive_batch_candidates(lease).await?;
        let lines = batches.iter().map(batch_line).collect();
        let mut by_id: std::collections::HashMap<_, _> = batches
            .into_iter()
            .map(|batch| (batch.info.batch_id, batch))
            .collect();
        for segment in cut_segments(lines) {
            let written = self.history.put_segment(&segment).await?;
            pass.segments += 1;
            pass.bytes += written.bytes;
            let archived: Vec<ArchivedBatch> = segment
                .iter()
                .filter_map(|line| by_id.remove(&line.id))
                .collect();
            pass.batches += self
                .ledger
                .remove_archived_batches(lease, &archived)
                .await?
                .removed;
        }
        Ok(pass)
    }
}

/// A finished batch's line: its settings, spend and job ids as JSON.
fn batch_line(batch: &ArchivedBatch) -> HistoryLine<BatchId> {
    HistoryLine::of(batch.info.batch_id, batch.archived_ms, batch)
}

/// A candidate's line in a segment: its whole archived record as JSON.
fn line(candidate: &ArchiveCandidate) -> HistoryLine {
    HistoryLine::of(
        candidate.job_id(),
        candidate.job.record.updated_ms,
        &candidate.job,
    )
}
