//! `notified.lua`: records a completion webhook's delivery attempt.

use serde::{Deserialize, Serialize};

#[derive(Serialize)]
pub(crate) struct Args<'a> {
    pub member: &'a str,
    pub event_id: &'a str,
    pub outcome: &'static str,
    pub delay_ms: u64,
    pub detail: &'a str,
}

#[derive(Deserialize)]
pub(crate) struct Reply {
    /// False: the job ended again since (a newer event), and this one is left alone.
    #[allow(dead_code)]
    pub recorded: bool,
}

ledger_edge!(Args<'_> => Reply, "notified.lua");
