//! Where each ledger key belongs once the ledger is partitioned over a Redis Cluster's masters
//! (issue #33): the **home** slot holds what is cluster-wide, which every claim or move may
//! consult (accounts' limits, pauses and spend, tenants, tokens, settings, workers, the task
//! index); a **partition** holds what follows one job or batch (its record, its place in the
//! schedules and indexes, its batch, its idempotency record, the history mark of the writes
//! made there).
//!
//! A ledger's home is its prefix's slot (`{prefix}:`). Its one partition shares it, unless it
//! was created with a home of its own (`HomeSlot::Own`) or several partitions
//! (`LedgerConfig::partitions`): then each partition is a slot of its own (`{prefix.pN}:`),
//! named in the home's `P layout`, and a job or batch is in the one its id names; a one-slot
//! ledger partitioned since keeps its jobs made before in the home's slot, its legacy
//! partition (`P layout_since`). Every script builds a home key from `home` and a partition
//! key from `prefix` (`prelude.lua`), Rust from `Ledger::home_key` and `Part::key`; no script
//! reaches another slot (home effects, `home.lua`), and `tidy` holds every key to these lists.

/// Keys of the home slot (the first segment of the key after the prefix; and see
/// [`EVERY_SLOT`]). `changes` and `wake` are pub/sub channels, which reach the whole cluster.
pub const HOME: &[&str] = &[
    "layout",
    "layout_since",
    "limits",
    "rate",
    "inflight",
    "spend",
    "pause",
    "tenant_spend",
    "tenant_inflight",
    "tokens",
    "token_names",
    "workers",
    "worker",
    "archive",
    "task",
    "wake",
    "changes",
];

/// Keys of a partition (and see [`EVERY_SLOT`]). Fair share between tenants is kept here
/// (their ranking, the tag last served, idle tenants' tags): a partition's claim and its
/// enqueues are then atomic with each other, so a tenant never leaves the ranking with jobs
/// waiting; each partition shares its claims fairly between the tenants with jobs in it.
pub const PARTITION: &[&str] = &[
    "archiver",
    "tenants",
    "vclock",
    "tenant_tags",
    "job",
    "log",
    "due",
    "due_low",
    "queued",
    "state",
    "batch",
    "batchinfo",
    "batches",
    "stage",
    "releasing",
    "idem",
    "notify_due",
    "archive_ready",
];

/// Keys every slot holding ledger keys has of its own, the home's as each partition's: its
/// history (epoch, rollback declarations) and its clients' marks of durable writes (a stale
/// replica promoted loses the writes of the slots its master held, and only those), the
/// slot-move flag that freezes its scripts, and the probe whose `WAIT` shows its replicas
/// caught up; and a copy of the settings a script may read (the ledger's record format, how
/// long finished jobs are kept, tenants' weights and caps), written to every slot. On one slot there is one of each.
pub const EVERY_SLOT: &[&str] = &[
    "history",
    "mark",
    "moving",
    "durability_probe",
    "schema",
    "retention_ms",
    "tenant_weights",
    "tenant_limits",
];

/// The scripts that reach the home's keys themselves, and so carry the `allow-cross-slot-keys`
/// flag (where the home has a slot of its own, it must be on their partition's master). None
/// now: every script touches its own slot alone (the cluster refuses any other key), leaves
/// its home effects for `home.lua`, and is handed what it must know of the home by its caller
/// (the claim's view, a task's owner, the live workers, what was left of a pause). A script
/// that cannot be split so is named here, and tidy holds the flag to this list.
pub const READ_THE_HOME: &[&str] = &[];
