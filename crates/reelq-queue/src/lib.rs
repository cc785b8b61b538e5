//! reelq's Redis layer. The job ledger is both the record of truth and the queue: a due
//! schedule says when each job next needs a worker, and fenced Lua compare-and-set scripts
//! move jobs between states. Only this crate talks to Redis.

mod connection;
mod durability;
mod error;
mod ledger;
mod record;
mod transition;

pub use connection::{RedisTarget, TargetError};
pub use durability::{Durability, DurabilityCheck};
pub use error::QueueError;
pub use ledger::{
    BatchInfo, CallbackBinding, Claim, ClaimOptions, Idempotency, Lease, Ledger, LedgerConfig,
    Notification, NotifyOutcome, NotifyTarget, ProviderLimit, Resolution, TransitionOutcome,
    WakeOutcome,
};
pub use record::JobRecord;
pub use transition::Transition;
