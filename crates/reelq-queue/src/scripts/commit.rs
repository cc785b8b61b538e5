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
    /// How many of the jobs go to each tenant's queue: a tenant's cap on jobs waiting
    /// (`max_waiting`) refuses the whole request.
    pub waiting: std::collections::BTreeMap<String, u64>,
    /// A capped tenant's jobs waiting in the ledger's other partitions, as its caller read
    /// them just before (none on a one-partition ledger).
    #[serde(skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub elsewhere: std::collections::BTreeMap<String, u64>,
}

ledger_edge!(Args<'_> => Answer, "commit.lua", with "jobs.lua");
