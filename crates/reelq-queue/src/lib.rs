//! reelq's Redis layer. The job ledger is both the record of truth and the queue: a due
//! schedule says when each job next needs a worker, and fenced Lua compare-and-set scripts
//! move jobs between states. Only this crate talks to Redis.

/// A ledger script: the `#!lua` shebang (so a cluster refuses at once a key outside the slot of
/// the keys the script declares, instead of after a reshard; and a full Redis refuses the whole
/// script before it writes, instead of failing it half way at its first growing write), the
/// constants Rust defines ([`lua_constants`]), the shared prelude, then `extra` helpers (if
/// any), then the file. `flags` go on the shebang (`allow-oom` for a script that frees memory).
macro_rules! ledger_script {
    ($file:literal) => {
        ledger_script!(@ "#!lua\n", $file, "")
    };
    ($file:literal, flags $flags:literal) => {
        ledger_script!(@ concat!("#!lua flags=", $flags, "\n"), $file, "")
    };
    ($file:literal, with $extra:literal) => {
        ledger_script!(@ "#!lua\n", $file,
            include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/src/lua/", $extra)))
    };
    (@ $shebang:expr, $file:literal, $extra:expr) => {
        std::sync::LazyLock::new(|| {
            redis::Script::new(
                &[
                    $shebang,
                    crate::lua_constants().as_str(),
                    include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/src/lua/prelude.lua")),
                    $extra,
                    include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/src/lua/", $file)),
                ]
                .concat(),
            )
        })
    };
}

/// What the scripts share with Rust, written from Rust's own definitions so the two cannot
/// disagree: the terminal states (`JobState::is_terminal`) and the in-flight slot's states
/// ([`moves::HOLDS_SLOT`], [`moves::SLOT_FREE`]), each a Lua set; the ledger schema this
/// release writes ([`LEDGER_SCHEMA`]) and how many events a record keeps ([`EVENTS_KEPT`]).
fn lua_constants() -> String {
    let set = |name: &str, states: &mut dyn Iterator<Item = reelq_core::JobState>| {
        let members: Vec<String> = states.map(|s| format!("{} = true", s.as_str())).collect();
        format!("local {name} = {{ {} }}\n", members.join(", "))
    };
    [
        set(
            "TERMINAL",
            &mut reelq_core::JobState::ALL
                .into_iter()
                .filter(|state| state.is_terminal()),
        ),
        set("HOLDS_SLOT", &mut moves::HOLDS_SLOT.iter().copied()),
        set("SLOT_FREE", &mut moves::SLOT_FREE.iter().copied()),
        format!("local LEDGER_SCHEMA = {LEDGER_SCHEMA}\nlocal EVENTS_KEPT = {EVENTS_KEPT}\n"),
    ]
    .concat()
}

mod connection;
mod durability;
mod enqueue;
mod error;
mod ledger;
pub mod moves;
mod record;
mod transition;

pub use connection::{RedisTarget, TargetError};
pub use durability::{Durability, DurabilityCheck};
pub use enqueue::{ENQUEUE_CHUNK, EnqueueProgress, Enqueued, Idempotency, SWEEP_AFTER};
pub use error::QueueError;
pub use ledger::{
    ArchiveCandidate, ArchiveGrace, ArchiveLease, ArchiveStatus, ArchivedBatch, BATCHES_PER_PASS,
    BatchInfo, CallbackBinding, CancelOutcome, Claim, ClaimOptions, EVENTS_KEPT, HistoryCheck,
    HistoryStatus, LEDGER_SCHEMA, Lease, Ledger, LedgerConfig, LimitWait, Migration, Notification,
    NotifyOutcome, NotifyTarget, PageCursor, PaidCreate, ProviderLimit, RECONNECT_GRACE,
    ROLLBACK_HOLD_MAX, ROLLBACK_HOLD_MIN, Removed, Resolution, RestoreOutcome, Resumed, Rollback,
    SCANNED_PER_CANDIDATE, TASK_INDEX_TTL, TransitionOutcome, Wait, WakeOutcome, WorkerInfo,
    own_accounts,
};
pub use record::{ArchivedJob, JobRecord, JobView};
pub use transition::Transition;
