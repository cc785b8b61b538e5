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
    /// The write may be on the primary only: nothing may act on it (no create call, no
    /// receipt to a producer). Retrying is safe.
    #[error("write not proven durable: {acked} of {wanted} replicas acknowledged it in time")]
    NotDurable { acked: u32, wanted: u32 },
    /// The server can lose acknowledged writes (found at connect or by the periodic check):
    /// writes that must be durable are refused until it is fixed.
    #[error("redis cannot keep writes durable: {0} (set allow_unsafe_redis to run anyway)")]
    Unsafe(String),
    /// A script's arguments or reply did not have the shape its Rust module gives them: a
    /// binary and a ledger script out of step, never a job's fault.
    #[error("ledger script {script}: {detail}")]
    ScriptEdge {
        script: &'static str,
        detail: String,
    },
    /// A move of the ledger's slot (`reelq cluster move-slot`) could not go on; running it
    /// again finishes it.
    #[error("moving the ledger's slot: {0}")]
    SlotMove(String),
    #[error(transparent)]
    Target(#[from] crate::TargetError),
    /// The ledger was written by a newer release: upgrade this binary before running it.
    #[error(
        "the ledger's schema is {found}, newer than the {supported} this release reads: a newer release wrote it; upgrade this binary"
    )]
    Schema { found: u32, supported: u32 },
    /// `reelq migrate` found workers of an older release live: they would keep writing
    /// records in the old format. Upgrade (or stop) them first.
    #[error(
        "workers of an older release are live ({}): upgrade or stop them before migrating the ledger to schema {needed}",
        workers.join(", ")
    )]
    OlderWorkersLive { workers: Vec<String>, needed: u32 },
    /// The ledger lost history this client saw acknowledged (a stale replica promoted, a cut
    /// AOF, a restored backup): no paid create goes out until this worker has given the
    /// ledger back the creates it made.
    #[error("{0}; no paid create goes out until this worker has given back the creates it made")]
    RolledBack(crate::Rollback),
    /// Paid creates are held while workers give the ledger back their creates after a
    /// rollback: the create did not go out. Retrying later is safe.
    #[error("paid creates are held while workers repair the ledger after it went back in time")]
    SubmitsHeld,
    /// The archiver's lease expired and another replica took it: this one removed nothing
    /// (what it wrote to the store is read as a duplicate, once).
    #[error("the archiver's lease was lost to another replica")]
    ArchiveLeaseLost,
    /// The idempotency key was used for a different request: nothing was enqueued.
    #[error("idempotency key {0:?} was already used for a different request")]
    IdempotencyConflict(String),
    /// A tenant's weight must be a positive number.
    #[error("a tenant's weight is a positive number, not {0}")]
    TenantWeight(f64),
    /// The enqueue would take a tenant past its cap on jobs waiting: nothing was enqueued.
    /// Retry once its jobs have been claimed.
    #[error(
        "tenant {tenant} has {waiting} jobs waiting, and its cap is {max}: nothing was enqueued; retry once some have started"
    )]
    TenantBacklog {
        tenant: String,
        waiting: u64,
        max: u64,
    },
    /// One enqueue's ids (its batch's and its jobs') must all name one partition of the
    /// ledger: ids made by [`crate::Ledger::new_ids`] do. Nothing was enqueued.
    #[error(
        "the ids of one enqueue must name one partition of the ledger's {partitions}: {id} names another (make them with Ledger::new_ids)"
    )]
    Partition { id: String, partitions: u16 },
    /// `reelq migrate --partitions` could not partition the ledger (nothing was switched
    /// unless it says so).
    #[error("partitioning the ledger: {0}")]
    Partitioning(String),
    /// An API token's name must be unique.
    #[error("a token named {0:?} exists: revoke it first, or choose another name")]
    TokenName(String),
}

impl QueueError {
    /// A write that may be retried as it is: Redis was unreachable, or could not prove the
    /// write durable.
    pub fn is_retryable(&self) -> bool {
        matches!(self, QueueError::Redis(_) | QueueError::NotDurable { .. })
    }
}

impl QueueError {
    pub(crate) fn corrupt(job_id: impl ToString, detail: impl ToString) -> Self {
        QueueError::Corrupt {
            job_id: job_id.to_string(),
            detail: detail.to_string(),
        }
    }
}
