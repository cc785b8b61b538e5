//! `batch.lua`: an operator's action on a whole batch, a chunk of its jobs per call.

use serde::{Deserialize, Serialize};

#[derive(Serialize)]
pub(crate) struct Args<'a> {
    pub batch: &'a str,
    /// "resume" or "cancel".
    pub action: &'a str,
    /// resume: the new budget in micros, or "" to keep it.
    pub budget_micros: &'a str,
    pub start: u64,
    pub count: usize,
}

#[derive(Deserialize)]
pub(crate) struct Reply {
    /// False: no such batch.
    pub found: bool,
    #[serde(default)]
    pub moved: u64,
    /// Where the next chunk starts; None after the last.
    pub next_index: Option<u64>,
}

ledger_edge!(Args<'_> => Reply, "batch.lua");
