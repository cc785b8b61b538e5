//! `migrate.lua`: moves job records written before ledger schema 3 into its format.

use serde::{Deserialize, Serialize};

#[derive(Serialize)]
pub(crate) struct Args<'a> {
    pub job_ids: &'a [&'a str],
}

#[derive(Deserialize)]
pub(crate) struct Reply {
    pub moved: u64,
}

ledger_edge!(Args<'_> => Reply, "migrate.lua");
