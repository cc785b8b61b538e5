//! `resume.lua`: brings forward the jobs an account's pause held back, once it is ended.

use serde::{Deserialize, Serialize};

#[derive(Serialize)]
pub(crate) struct Args<'a> {
    pub account: &'a str,
    pub left_ms: i64,
    pub contracts: Vec<&'static str>,
    pub limit: usize,
}

#[derive(Deserialize)]
pub(crate) struct Reply {
    pub moved: u64,
    pub looked: usize,
}

ledger_edge!(Args<'_> => Reply, "resume.lua");
