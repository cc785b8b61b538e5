//! Waiting for jobs to settle: the change feed, with a read every couple of seconds in case
//! a notice was lost (or the feed dropped while Redis restarted).

use std::{collections::HashMap, time::Duration};

use futures_util::{StreamExt, stream::BoxStream};
use reelq_core::{JobId, JobState};
use reelq_queue::{JobRecord, QueueError};

use super::{Client, ProducerError};

/// How often [`Client::wait`] re-reads the ledger in case a change notice was lost.
const RESYNC_EVERY: Duration = Duration::from_secs(2);

impl Client {
    /// Waits until every job is settled (terminal, or `uncertain` and waiting for an
    /// operator), calling `on_change` with each job's state as it moves. Returns the final
    /// records in the order of `job_ids`.
    pub async fn wait(
        &self,
        job_ids: &[JobId],
        mut on_change: impl FnMut(&HashMap<JobId, JobState>),
    ) -> Result<Vec<JobRecord>, ProducerError> {
        // Subscribe before the first read, so no change falls between the two.
        let mut changes = self.ledger.changes().await.ok();
        let mut states = HashMap::with_capacity(job_ids.len());
        for &job_id in job_ids {
            states.insert(job_id, self.record(job_id).await?.state);
        }
        on_change(&states);
        let mut resync = tokio::time::interval(RESYNC_EVERY);
        while !states.values().all(|state| state.is_settled()) {
            tokio::select! {
                change = next_change(&mut changes) => match change {
                    Some((job_id, state)) => {
                        if let Some(known) = states.get_mut(&job_id) {
                            *known = state;
                            on_change(&states);
                        }
                    }
                    None => changes = None,
                },
                _ = resync.tick() => {
                    // The feed drops while Redis restarts: subscribe again when it is back.
                    if changes.is_none() {
                        changes = self.ledger.changes().await.ok();
                    }
                    for (&job_id, state) in states.iter_mut() {
                        if state.is_settled() {
                            continue;
                        }
                        *state = self.record(job_id).await?.state;
                    }
                    on_change(&states);
                }
            }
        }
        let mut records = Vec::with_capacity(job_ids.len());
        for &job_id in job_ids {
            records.push(self.record(job_id).await?);
        }
        Ok(records)
    }

    async fn record(&self, job_id: JobId) -> Result<JobRecord, ProducerError> {
        Ok(self
            .status(job_id)
            .await?
            .ok_or(QueueError::NotFound(job_id))?)
    }
}

async fn next_change(
    changes: &mut Option<BoxStream<'static, (JobId, JobState)>>,
) -> Option<(JobId, JobState)> {
    match changes {
        Some(feed) => feed.next().await,
        None => std::future::pending().await,
    }
}
