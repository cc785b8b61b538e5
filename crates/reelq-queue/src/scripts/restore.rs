//! `restore.lua`: a worker gives a job back what it knows first-hand of a paid create.

use serde::{Deserialize, Serialize};

use crate::RestoreOutcome;

#[derive(Serialize)]
pub(crate) struct Args<'a> {
    pub job_id: &'a str,
    pub account: &'a str,
    /// "" if the create's answer never came.
    pub task_id: &'a str,
    pub token: &'a str,
    pub sent_ms: u64,
    pub index_ttl_ms: u64,
    pub why: &'a str,
    /// -1: no hold.
    pub slot_hold_ms: i64,
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
    pub outcome: RestoreOutcome,
    /// The state the job was in; None without a record.
    pub state: Option<String>,
}

ledger_edge!(Args<'_> => Reply, "restore.lua");
