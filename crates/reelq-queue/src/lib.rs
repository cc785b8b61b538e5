//! reelq's Redis layer. The job ledger is both the record of truth and the queue: a due
//! schedule says when each job next needs a worker, and fenced Lua compare-and-set scripts
//! move jobs between states. Only this crate talks to Redis.

/// A ledger script: the shared prelude, then `extra` helpers (if any), then the file.
macro_rules! ledger_script {
    ($file:literal) => {
        std::sync::LazyLock::new(|| {
            redis::Script::new(concat!(
                include_str!("lua/prelude.lua"),
                include_str!(concat!("lua/", $file))
            ))
        })
    };
    ($file:literal, with $extra:literal) => {
        std::sync::LazyLock::new(|| {
            redis::Script::new(concat!(
                include_str!("lua/prelude.lua"),
                include_str!(concat!("lua/", $extra)),
                include_str!(concat!("lua/", $file))
            ))
        })
    };
}

mod connection;
mod durability;
mod enqueue;
mod error;
mod ledger;
mod record;
mod transition;

pub use connection::{RedisTarget, TargetError};
pub use durability::{Durability, DurabilityCheck};
pub use enqueue::{ENQUEUE_CHUNK, EnqueueProgress, Enqueued, Idempotency, SWEEP_AFTER};
pub use error::QueueError;
pub use ledger::{
    BatchInfo, CallbackBinding, Claim, ClaimOptions, Lease, Ledger, LedgerConfig, Notification,
    NotifyOutcome, NotifyTarget, ProviderLimit, Resolution, TransitionOutcome, WakeOutcome,
};
pub use record::JobRecord;
pub use transition::Transition;
