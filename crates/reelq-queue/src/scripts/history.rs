//! `history.lua`: the ledger's history (its epoch, declared rollbacks and the hold on paid
//! creates after one).

use serde::{Deserialize, Serialize};

#[derive(Serialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub(crate) enum Args<'a> {
    /// Names the ledger's history with `epoch` if it has none yet.
    Open { epoch: &'a str },
    /// Declares a rollback the caller found (`found_epoch`, '' for none), starting `epoch`.
    Declare {
        found_epoch: &'a str,
        epoch: &'a str,
        by: &'a str,
        saw: u64,
        found: u64,
        hold_min_ms: u64,
        hold_max_ms: u64,
    },
    /// `worker` repaired under `epoch`.
    Ack { worker: &'a str, epoch: &'a str },
    /// Whether paid creates are held now; `live` names the live workers (at the home).
    Holding { live: Vec<String> },
}

#[derive(Deserialize)]
pub(crate) struct Reply {
    /// The ledger's epoch (open, declare, ack).
    #[serde(default)]
    pub epoch: Option<String>,
    /// declare: another client declared this rollback first.
    #[serde(default)]
    pub joined: bool,
    /// holding: paid creates are held.
    #[serde(default)]
    pub holding: bool,
}

ledger_edge!(Args<'_> => Reply, "history.lua");
