//! `note.lua`: what reconciliation found about an `uncertain` job, for operators.

use serde::{Deserialize, Serialize};

#[derive(Serialize)]
pub(crate) struct Args<'a> {
    pub job_id: &'a str,
    pub note: &'a str,
}

#[derive(Deserialize)]
pub(crate) struct Reply {
    /// False: the job is no longer `uncertain`.
    pub noted: bool,
}

ledger_edge!(Args<'_> => Reply, "note.lua");
