//! `home.lua`: makes in the home's slot what a script run in a partition's slot changed at the
//! home (`keys.rs`): the prelude's `apply_home` is the one place each kind is made, inline
//! where the home shares the script's slot.

use serde::{Deserialize, Serialize};

use crate::{
    QueueError,
    connection::Conn,
    scripts::{Place, lua_list, run_leaving_home},
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
    /// Provider task `task` of `account` is job `id`'s, in the task index, for `ttl_ms`.
    Index {
        account: String,
        task: String,
        id: String,
        ttl_ms: u64,
    },
    /// What one job a claim handed out takes at the home: made whole if the home allows it
    /// now, else refused whole (`home.lua`).
    Take(Box<Take>),
}

/// One job's take (`home.lua` describes each part).
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Take {
    pub id: String,
    pub account: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate: Option<Rate>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slot: Option<Slot>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub renew: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tslot: Option<TenantSlot>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trenew: Option<TenantRenew>,
    #[serde(default, deserialize_with = "lua_list")]
    pub spend: Vec<Spend>,
    pub cost: i64,
    /// For the partition, once the take is made or refused (`settled.lua`).
    #[serde(skip_serializing)]
    pub back: Back,
}

#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Rate {
    pub rate: f64,
    pub burst: u32,
}

#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Slot {
    pub cap: u32,
    pub until_ms: u64,
}

#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct TenantSlot {
    pub tenant: String,
    pub cap: u32,
    pub until_ms: u64,
}

#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct TenantRenew {
    pub tenant: String,
    pub until_ms: u64,
}

#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Spend {
    pub key: String,
    pub cap: u64,
    pub days: u32,
    pub limit: String,
}

/// What the claim's partition needs of a take: its fence, the queue it came from, the account
/// field it had, its batch's reservation, and the fields the take earns it.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct Back {
    pub fence: u64,
    pub queue: String,
    /// Its tenant, when `queue` is the tenant's.
    #[serde(default)]
    pub tenant: Option<String>,
    pub provider: String,
    #[serde(default)]
    pub batch: Option<String>,
    #[serde(default)]
    pub batch_cost: i64,
    pub grant: Grant,
    /// A routed job's: when a limit holding it back makes it leave its candidate instead.
    #[serde(default)]
    pub leave_at: Option<i64>,
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct Grant {
    #[serde(default)]
    pub reserved: Option<String>,
    #[serde(default)]
    pub reserved_day: Option<u64>,
    #[serde(default)]
    pub tslot: bool,
    #[serde(default)]
    pub aslot: bool,
}

#[derive(Serialize)]
pub(crate) struct Args {
    pub effects: Vec<Effect>,
}

#[derive(Deserialize)]
pub(crate) struct Reply {
    #[allow(dead_code)]
    pub made: u64,
    /// The takes the home did not allow.
    #[serde(deserialize_with = "lua_list")]
    pub refused: Vec<Refused>,
}

/// A take refused, and which limit refused it for how long.
#[derive(Debug, Deserialize)]
pub(crate) struct Refused {
    pub id: String,
    pub limit: crate::Wait,
    pub wait_ms: u64,
}

ledger_edge!(Args => Reply, "home.lua");

/// Makes `effects` in the home's slot (prefix `home`); the takes it refused.
pub(crate) async fn make(
    conn: &mut Conn,
    home: &str,
    effects: Vec<Effect>,
) -> Result<Vec<Refused>, QueueError> {
    let place = Place {
        slot: home,
        home: None,
    };
    let (reply, _) = run_leaving_home(conn, place, &Args { effects }).await?;
    Ok(reply.refused)
}
