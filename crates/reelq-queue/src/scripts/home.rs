//! `home.lua`: makes in the home's slot what a script run in a partition's slot changed at the
//! home (`keys.rs`): the prelude's `apply_home` is the one place each kind is made, inline
//! where the home shares the script's slot.

use serde::{Deserialize, Serialize};

use crate::{
    QueueError,
    connection::Conn,
    scripts::{Place, run},
};

/// One home effect, as a script leaves it (prelude's `at_home`).
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub(crate) enum Effect {
    /// Gives back a job's in-flight slots: its account's, and its tenant's if it held one.
    Free {
        account: String,
        id: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        tenant: Option<String>,
    },
    /// An `uncertain` job keeps its account's slot (if it holds one) until `until_ms`.
    Hold {
        account: String,
        id: String,
        until_ms: u64,
    },
    /// Gives back a budget reservation of `cost` micros on UTC day `day`: `flags` of "d" (the
    /// account's day), "t" (the tenant's day), "m" (the tenant's month).
    Release {
        account: String,
        day: u64,
        cost: i64,
        flags: String,
        tenant: String,
    },
}

#[derive(Serialize)]
pub(crate) struct Args {
    pub effects: Vec<Effect>,
}

#[derive(Deserialize)]
pub(crate) struct Reply {
    #[allow(dead_code)]
    pub made: u64,
}

ledger_edge!(Args => Reply, "home.lua");

/// Makes `effects` in the home's slot (prefix `home`).
pub(crate) async fn make(
    conn: &mut Conn,
    home: &str,
    effects: Vec<Effect>,
) -> Result<(), QueueError> {
    let place = Place {
        slot: home,
        home: None,
    };
    Box::pin(run(conn, place, &Args { effects })).await?;
    Ok(())
}
