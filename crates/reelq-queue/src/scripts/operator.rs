//! `operator.lua`: an operator's move of a job nobody holds (resolve, retry, cancel).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

#[derive(Serialize)]
pub(crate) struct Args<'a> {
    pub job_id: &'a str,
    /// The move's from-states, comma-separated ([`crate::moves::from_list`]).
    pub from: String,
    pub to: &'static str,
    /// -1: not due again.
    pub delay_ms: i64,
    pub detail: &'a str,
    /// Stored on the job; an empty value deletes the field.
    pub fields: BTreeMap<&'a str, &'a str>,
}

#[derive(Deserialize)]
pub(crate) struct Reply {
    pub applied: bool,
}

ledger_edge!(Args<'_> => Reply, "operator.lua");
