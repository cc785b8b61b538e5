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
    /// Where the home has a slot of its own: the account whose task index was read for the
    /// job, and the owner it named (the script reads it itself where the home shares its
    /// slot).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub task_account: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub task_owner: Option<String>,
}

#[derive(Deserialize)]
pub(crate) struct Reply {
    pub outcome: WakeOutcome,
}

ledger_edge!(Args<'_> => Reply, "wake.lua");
