//! `archive.lua`: the archiver's lease, and taking archived jobs and batches out of Redis.

use serde::{Deserialize, Serialize};

#[derive(Serialize)]
pub(crate) struct Args<'a> {
    pub token: &'a str,
    /// "take", "remove", "remove_batches" or "release".
    pub op: &'static str,
    pub lease_ms: u64,
    pub jobs: Vec<ReadJob>,
    pub batches: Vec<ReadBatch>,
}

/// A job as the archiver read it; `updated_ms` and `events` empty for a record already gone.
#[derive(Serialize)]
pub(crate) struct ReadJob {
    pub id: String,
    pub state: &'static str,
    pub updated_ms: String,
    pub events: String,
}

/// A batch as the archiver read it: its settings' snapshot.
#[derive(Serialize)]
pub(crate) struct ReadBatch {
    pub id: String,
    pub snapshot: String,
}

#[derive(Deserialize)]
pub(crate) struct Reply {
    /// False: the lease is another archiver's; nothing was done.
    pub held: bool,
    #[serde(default)]
    pub removed: u64,
    #[serde(default)]
    pub kept: u64,
}

// Allowed to run on a full Redis: it frees memory (a `noeviction` Redis at `maxmemory` drains
// through it).
ledger_edge!(Args<'_> => Reply, "archive.lua", flags "allow-oom");
