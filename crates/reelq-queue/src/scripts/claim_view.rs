//! `claim_view.lua`: what a claim needs to know of the home, read just before it where the
//! home has a slot of its own (`claim.lua` decides from it; `home.lua` checks each take again).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

#[derive(Serialize)]
pub(crate) struct Args<'a> {
    pub accounts: Vec<AccountAsk<'a>>,
}

/// One account the claim may act for, and which of its limits it applies (its pause is read
/// for every one).
#[derive(Serialize)]
pub(crate) struct AccountAsk<'a> {
    pub name: &'a str,
    pub rate: bool,
    pub slots: bool,
    pub daily: bool,
}

/// The view, as the claim reads it (`A.view`).
#[derive(Serialize, Deserialize)]
pub(crate) struct Reply {
    pub now_ms: i64,
    pub accounts: BTreeMap<String, AccountView>,
    pub tenants: BTreeMap<String, TenantView>,
}

#[derive(Serialize, Deserialize)]
pub(crate) struct AccountView {
    pub pause_ms: i64,
    pub tat: f64,
    pub used: u64,
    pub spent: i64,
}

#[derive(Serialize, Deserialize)]
pub(crate) struct TenantView {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub used: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub day: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub month: Option<i64>,
}

ledger_edge!(Args<'_> => Reply, "claim_view.lua");
