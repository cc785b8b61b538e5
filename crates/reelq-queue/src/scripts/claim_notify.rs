//! `claim_notify.lua`: takes due completion webhooks, each under a short lease.

use serde::{Deserialize, Serialize};

use super::lua_list;

#[derive(Serialize)]
pub(crate) struct Args {
    pub max: usize,
    pub lease_ms: u64,
}

#[derive(Deserialize)]
pub(crate) struct Reply {
    #[serde(deserialize_with = "lua_list")]
    pub claimed: Vec<Claimed>,
}

/// One webhook taken: whose (a job id, or `batch:<id>`), where to, under which event id.
#[derive(Deserialize)]
pub(crate) struct Claimed {
    pub member: String,
    pub url: String,
    pub event_id: String,
    pub attempt: u32,
}

ledger_edge!(Args => Reply, "claim_notify.lua");
