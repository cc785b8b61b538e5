//! `commit.lua`: commits a batch staged in chunks; release.lua then queues it.

use serde::Serialize;

use super::jobs::{Answer, Once};
use reelq_core::BatchOptions;

#[derive(Serialize)]
pub(crate) struct Args<'a> {
    pub batch: String,
    pub once: Option<Once<'a>>,
    pub options: &'a BatchOptions,
    pub n_jobs: usize,
}

ledger_edge!(Args<'_> => Answer, "commit.lua", with "jobs.lua");
