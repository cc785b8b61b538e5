//! reelq's Redis layer. The job ledger is both the record of truth and the queue: a due
//! schedule says when each job next needs a worker, and fenced Lua compare-and-set scripts
//! move jobs between states. Only this crate talks to Redis.

mod connection;
mod durability;
mod enqueue;
mod error;
pub mod keys;
mod lease;
mod ledger;
pub mod moves;
mod record;
mod scripts;
mod slot_move;
mod transition;

pub use connection::{RedisTarget, TargetError};
pub use durability::{Durability, DurabilityCheck};
pub use enqueue::{ENQUEUE_CHUNK, EnqueueProgress, Enqueued, Idempotency, SWEEP_AFTER};
pub use error::QueueError;
pub use lease::{Cancel, Fence, FetchLease, Held, Lease, LeasedJob, PollLease, SubmitLease};
pub use ledger::{
    ArchiveCandidate, ArchiveGrace, ArchiveLease, ArchiveStatus, ArchivedBatch, BATCHES_PER_PASS,
    BatchInfo, CLUSTER_PARTITIONS, CallbackBinding, CancelOutcome, Claim, ClaimOptions,
    EVENTS_KEPT, HistoryCheck, HistoryStatus, HomeSlot, LEDGER_SCHEMA, Ledger, LedgerConfig,
    LimitWait, MAX_PARTITIONS, Migration, Notification, NotifyOutcome, NotifyTarget, PageCursor,
    PaidCreate, Partitioning, ProviderLimit, RECONNECT_GRACE, ROLLBACK_HOLD_MAX, ROLLBACK_HOLD_MIN,
    Removed, Resolution, RestoreOutcome, Resumed, Rollback, SCANNED_PER_CANDIDATE, TASK_INDEX_TTL,
    TenantLimits, TenantShare, TokenRecord, TransitionOutcome, Wait, WakeOutcome, WorkerInfo,
    own_accounts, partition_ledger,
};
pub use record::{ArchivedJob, JobRecord, JobView, ServedBy};
pub use slot_move::{LedgerSlot, SlotMove, move_ledger_slot};
pub use transition::Transition;
