//! `claim.lua`: a worker takes due jobs, each under a fresh fence and lease, and hears which
//! jobs a limit held back.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::lua_list;
use crate::{ProviderLimit, Wait};

#[derive(Serialize)]
pub(crate) struct Args<'a> {
    pub max_jobs: usize,
    pub lease_ms: u64,
    pub owner: &'a str,
    pub resubmit_uncertain: bool,
    /// By account.
    pub limits: BTreeMap<&'a str, Limit>,
    pub token: &'a str,
    /// The worker's accounts by contract, in the order its config lists them.
    pub pools: BTreeMap<&'static str, Vec<&'a str>>,
    /// Where the home has a slot of its own: what it held just before (`claim_view.lua`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub view: Option<&'a super::claim_view::Reply>,
}

/// One account's cluster-wide limits as the claim applies them (0, or left out: no limit;
/// a claim per worker per second or more sends them, so zeros are not sent).
#[derive(Serialize)]
pub(crate) struct Limit {
    /// Requests per second.
    #[serde(skip_serializing_if = "is_zero")]
    pub rate: f64,
    pub burst: u32,
    /// Generations in flight.
    #[serde(skip_serializing_if = "is_zero")]
    pub slots: u32,
    #[serde(skip_serializing_if = "is_zero")]
    pub ttl_ms: u64,
    #[serde(skip_serializing_if = "is_zero")]
    pub daily_micros: u64,
    #[serde(skip_serializing_if = "is_zero")]
    pub uncertain_ttl_ms: u64,
}

fn is_zero<T: Default + PartialEq>(value: &T) -> bool {
    *value == T::default()
}

impl From<&ProviderLimit> for Limit {
    fn from(limit: &ProviderLimit) -> Self {
        Limit {
            rate: limit.requests_per_s,
            burst: limit.burst,
            slots: limit.max_in_flight,
            ttl_ms: limit.slot_ttl.as_millis() as u64,
            daily_micros: limit.daily_budget_micros,
            uncertain_ttl_ms: limit.uncertain_slot_ttl.as_millis() as u64,
        }
    }
}

#[derive(Deserialize)]
pub(crate) struct Reply {
    pub now_ms: i64,
    /// When nothing was taken: the next due time, if any job is scheduled.
    pub next_due_ms: Option<i64>,
    #[serde(deserialize_with = "lua_list")]
    pub claimed: Vec<Claimed>,
    #[serde(deserialize_with = "lua_list")]
    pub waits: Vec<Held>,
}

/// One job taken, as its record reads.
#[derive(Deserialize)]
pub(crate) struct Claimed {
    pub id: String,
    pub state: String,
    pub fence: u64,
    pub spec: String,
    pub task_id: Option<String>,
    pub attempt: u32,
    pub result_url: Option<String>,
    pub polls: u32,
    pub account: String,
    pub low_priority: bool,
    pub cancel_requested: bool,
    pub cancel_answered: bool,
    /// A waiting job a callback woke: its query confirms the callback, not a poll of its own.
    #[serde(default)]
    pub woken: bool,
    /// A routed job held back past its route's patience: why it leaves its candidate.
    #[serde(default)]
    pub fall_back: Option<reelq_core::FallbackReason>,
}

/// A job a limit held back.
#[derive(Deserialize)]
pub(crate) struct Held {
    pub account: String,
    pub limit: Wait,
}

ledger_edge!(Args<'_> => Reply, "claim.lua");
