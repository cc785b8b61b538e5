//! `release.lua`: queues the next chunk of a committed batch's staged jobs.

use serde::{Deserialize, Serialize};

#[derive(Serialize)]
pub(crate) struct Args {
    pub batch: String,
    pub max_jobs: usize,
}

#[derive(Deserialize)]
pub(crate) struct Reply {
    pub queued: usize,
    pub left: usize,
}

ledger_edge!(Args => Reply, "release.lua", with "jobs.lua");
