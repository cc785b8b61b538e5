//! `extend.lua`: renews a lease while a long step runs.

use serde::{Deserialize, Serialize};

#[derive(Serialize)]
pub(crate) struct Args<'a> {
    pub job_id: &'a str,
    pub fence: u64,
    pub token: &'a str,
    pub lease_ms: u64,
}

#[derive(Deserialize)]
pub(crate) struct Reply {
    /// False: the lease was lost (another claim holds the job).
    pub renewed: bool,
}

ledger_edge!(Args<'_> => Reply, "extend.lua");
