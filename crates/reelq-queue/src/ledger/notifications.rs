//! Completion webhooks as the ledger keeps them: queued when a job or batch ends, claimed
//! under a lease by a worker's notifier, and recorded per delivery attempt.

use std::time::Duration;

use reelq_core::{BatchId, JobId};

use crate::scripts;
use crate::{Ledger, QueueError};

/// A completion webhook to send: the job's ending, under an event id kept across retries.
#[derive(Debug, Clone)]
pub struct Notification {
    pub target: NotifyTarget,
    pub url: String,
    pub event_id: String,
    /// Delivery attempts already failed.
    pub attempt: u32,
}

/// Whose ending a webhook reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotifyTarget {
    Job(JobId),
    /// The batch's last job ended: a summary.
    Batch(BatchId),
}

/// How a webhook delivery went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotifyOutcome {
    Sent,
    /// Try again after this long.
    Retry(Duration),
    GaveUp,
    /// Not sent: the ending is not among the job's `notify_events`.
    Skipped,
}

impl std::fmt::Display for NotifyTarget {
    /// The member of `P notify_due` (a job id, or `batch:<id>`).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NotifyTarget::Job(job_id) => write!(f, "{job_id}"),
            NotifyTarget::Batch(batch_id) => write!(f, "batch:{batch_id}"),
        }
    }
}

impl std::str::FromStr for NotifyTarget {
    type Err = reelq_core::IdError;
    fn from_str(member: &str) -> Result<Self, Self::Err> {
        match member.strip_prefix("batch:") {
            Some(batch_id) => batch_id.parse().map(NotifyTarget::Batch),
            None => member.parse().map(NotifyTarget::Job),
        }
    }
}

impl Ledger {
    /// Takes up to `max` due completion webhooks, leased for `lease`.
    pub async fn claim_notifications(
        &self,
        max: usize,
        lease: Duration,
    ) -> Result<Vec<Notification>, QueueError> {
        let mut claimed = Vec::new();
        for part in self.parts() {
            if claimed.len() >= max {
                break;
            }
            let args = scripts::claim_notify::Args {
                max: max - claimed.len(),
                lease_ms: lease.as_millis() as u64,
            };
            // A partition that fails is passed over, keeping what the others gave.
            match self.run_in(part, &args).await {
                Ok(reply) => claimed.extend(reply.claimed),
                Err(err) if claimed.is_empty() && part.index + 1 == self.parts().len() as u16 => {
                    return Err(err);
                }
                Err(err) => {
                    tracing::warn!(partition = part.index, error = %err, "a partition's webhook claim failed");
                }
            }
        }
        claimed
            .into_iter()
            .map(|claimed| {
                let target = claimed
                    .member
                    .parse()
                    .map_err(|err| QueueError::corrupt(&claimed.member, err))?;
                Ok(Notification {
                    target,
                    url: claimed.url,
                    event_id: claimed.event_id,
                    attempt: claimed.attempt,
                })
            })
            .collect()
    }

    /// Records how a webhook delivery went.
    pub async fn notified(
        &self,
        notification: &Notification,
        outcome: NotifyOutcome,
        detail: &str,
    ) -> Result<(), QueueError> {
        let (name, delay) = match outcome {
            NotifyOutcome::Sent => ("sent", Duration::ZERO),
            NotifyOutcome::Retry(delay) => ("retry", delay),
            NotifyOutcome::GaveUp => ("gave_up", Duration::ZERO),
            NotifyOutcome::Skipped => ("skipped", Duration::ZERO),
        };
        let member = notification.target.to_string();
        let part = match notification.target {
            NotifyTarget::Job(job_id) => self.part_of(&job_id.to_string()),
            NotifyTarget::Batch(batch_id) => self.part_of(&batch_id.to_string()),
        };
        let args = scripts::notified::Args {
            member: &member,
            event_id: &notification.event_id,
            outcome: name,
            delay_ms: delay.as_millis() as u64,
            detail,
        };
        self.run_in(part, &args).await?;
        Ok(())
    }
}
