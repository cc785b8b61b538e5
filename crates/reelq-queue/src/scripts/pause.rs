//! `pause.lua`: pauses submits to one provider account for every replica.

use serde::{Deserialize, Serialize};

#[derive(Serialize)]
pub(crate) struct Args<'a> {
    pub account: &'a str,
    pub pause_ms: u64,
}

#[derive(Deserialize)]
pub(crate) struct Reply {
    /// The pause now in force (a longer one already there is kept).
    #[allow(dead_code)]
    pub left_ms: i64,
}

ledger_edge!(Args<'_> => Reply, "pause.lua");
