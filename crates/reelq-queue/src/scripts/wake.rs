//! `wake.lua`: acts on a verified provider callback (or the provider's records) for one job.

use serde::{Deserialize, Serialize};

use crate::WakeOutcome;

#[derive(Serialize)]
pub(crate) struct Args<'a> {
    pub job_id: &'a str,
    pub task_id: &'a str,
    pub by: &'a str,
    pub index_ttl_ms: u64,
    pub confirmed: bool,
}

#[derive(Deserialize)]
pub(crate) struct Reply {
    pub outcome: WakeOutcome,
}

ledger_edge!(Args<'_> => Reply, "wake.lua", flags "allow-cross-slot-keys");
