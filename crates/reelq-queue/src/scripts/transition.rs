//! `transition.lua`: moves a leased job on, if the caller still holds the lease.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

#[derive(Serialize)]
pub(crate) struct Args<'a> {
    pub job_id: &'a str,
    pub fence: u64,
    pub token: &'a str,
    /// The move's from-states, comma-separated ([`crate::moves::from_list`]).
    pub from: String,
    pub to: &'static str,
    /// -1: not due again.
    pub delay_ms: i64,
    pub detail: &'a str,
    /// -1: no hold.
    pub slot_hold_ms: i64,
    /// The ledger's history as the caller knows it, checked by a move to `submitting`.
    pub epoch: &'a str,
    pub seen: u64,
    pub mark_key: &'a str,
    pub fields: BTreeMap<&'static str, &'a str>,
    /// A fall back: the spec at the route's next candidate, written over the record's.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub spec: Option<&'a str>,
    /// A fall back to a candidate with one after it: what moves the job on from there.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub route_hold: Option<super::jobs::RouteHoldArg>,
}

#[derive(Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub(crate) enum Reply {
    Applied,
    /// Another claim holds the job, or it left the move's from-states.
    LeaseLost {
        /// None: the record is gone.
        state: Option<String>,
        fence: u64,
    },
    /// Paid creates are held after a declared rollback.
    Held,
    /// The ledger lost history this client saw made durable.
    HistoryLost,
}

ledger_edge!(Args<'_> => Reply, "transition.lua");
