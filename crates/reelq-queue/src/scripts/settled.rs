//! `settled.lua`: ends a claim made where the home has a slot of its own, once `home.lua` made
//! or refused each job's take.

use serde::{Deserialize, Serialize};

#[derive(Serialize)]
pub(crate) struct Args<'a> {
    pub token: &'a str,
    pub kept: Vec<Kept<'a>>,
    pub refused: Vec<PutBack<'a>>,
}

/// A job the claim keeps: its take was made (the fields it earned), or it was refused and the
/// job leaves its route's candidate instead (nothing earned; its batch's reservation given
/// back).
#[derive(Serialize)]
pub(crate) struct Kept<'a> {
    pub id: &'a str,
    pub fence: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reserved: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reserved_day: Option<u64>,
    pub tslot: bool,
    pub aslot: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub batch: Option<&'a str>,
    /// The batch's reservation to give back (0: none).
    pub give_back: i64,
}

/// A job whose take was refused: how to put it back.
#[derive(Serialize)]
pub(crate) struct PutBack<'a> {
    pub id: &'a str,
    pub fence: u64,
    pub queue: &'a str,
    /// Its tenant, when `queue` is the tenant's (the tenant rejoins the ranking).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tenant: Option<&'a str>,
    pub provider: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub batch: Option<&'a str>,
    pub batch_cost: i64,
    pub wait_ms: u64,
}

#[derive(Deserialize)]
pub(crate) struct Reply {
    #[allow(dead_code)]
    pub kept: u64,
    #[allow(dead_code)]
    pub put_back: u64,
}

ledger_edge!(Args<'_> => Reply, "settled.lua");
