//! The queue crate's one error type.

use reelq_core::JobId;

#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("job {job_id} has a corrupt ledger record: {detail}")]
    Corrupt { job_id: String, detail: String },
    #[error("job {0} is not in the ledger")]
    NotFound(JobId),
}

impl QueueError {
    pub(crate) fn corrupt(job_id: impl ToString, detail: impl ToString) -> Self {
        QueueError::Corrupt {
            job_id: job_id.to_string(),
            detail: detail.to_string(),
        }
    }
}
