//! `resume.lua`: ends an account's pause and brings forward the jobs it held back.

use serde::{Deserialize, Serialize};

#[derive(Serialize)]
pub(crate) struct Args<'a> {
    pub account: &'a str,
    pub contracts: Vec<&'static str>,
    pub limit: usize,
}

#[derive(Deserialize)]
pub(crate) struct Reply {
    pub moved: u64,
    pub looked: usize,
}

ledger_edge!(Args<'_> => Reply, "resume.lua", flags "allow-cross-slot-keys");
