//! The ledger's Lua scripts, each with one Rust module beside it (`scripts/<name>.lua` and
//! `scripts/<name>.rs`): the script's `Args`, sent as its one JSON argument and read by name
//! (`A.job_id`), and its `Reply`, the JSON it returns, read into types here, once. Neither side
//! reads the other's values by position. The calls themselves (what a reply means for a job)
//! live in `ledger/`.
//!
//! Every script begins `#!lua` and declares one key, `P due` of the slot it runs in; every key
//! it touches is built from the prefix (`ARGV[1]`, e.g. `{reelq}:`) and so shares that key's
//! hash slot, and the shebang makes Redis refuse, at once, a key outside it. Where the home of
//! cluster-wide state has a slot of its own (`ARGV[3]`, `keys.rs`), a script's home effects
//! come back with its reply and `Ledger::run_script` makes them there (`home.lua`); no script
//! reaches the home's slot itself.

use std::sync::LazyLock;

use redis::Script;
use serde::{Deserialize, Deserializer, Serialize, de::DeserializeOwned};

use crate::{
    EVENTS_KEPT, LEDGER_SCHEMA, QueueError,
    connection::Conn,
    ledger::{COMPACT_RECORDS_SCHEMA, TENANT_QUEUES_SCHEMA},
    moves,
};

/// A ledger script: the `#!lua` shebang (so a cluster refuses at once a key outside the slot of
/// the keys the script declares, instead of after a reshard; and a full Redis refuses the whole
/// script before it writes, instead of failing it half way at its first growing write), the
/// constants Rust defines ([`lua_constants`]), the shared prelude, then `extra` helpers (if
/// any), then the file. `flags` go on the shebang (`allow-oom` for a script that frees memory).
macro_rules! ledger_script {
    ($file:literal) => {
        ledger_script!(@ "#!lua\n", $file, "")
    };
    ($file:literal, flags $flags:literal) => {
        ledger_script!(@ concat!("#!lua flags=", $flags, "\n"), $file, "")
    };
    ($file:literal, with $extra:literal) => {
        ledger_script!(@ "#!lua\n", $file,
            include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/src/scripts/", $extra)))
    };
    (@ $shebang:expr, $file:literal, $extra:expr) => {
        std::sync::LazyLock::new(|| {
            redis::Script::new(
                &[
                    $shebang,
                    crate::scripts::lua_constants().as_str(),
                    include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/src/scripts/prelude.lua")),
                    $extra,
                    "local function main()\n",
                    include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/src/scripts/", $file)),
                    crate::scripts::REPLY_WITH_HOME_EFFECTS,
                ]
                .concat(),
            )
        })
    };
}

/// The end of every script (its file is the body of `main`): where the home has a slot of its
/// own, the reply goes back with the home effects the script left (prelude's `at_home`), for
/// `Ledger::run_script` to make in the home's slot. An error reply goes back as it is.
pub(crate) const REPLY_WITH_HOME_EFFECTS: &str = "
end
local reply = main()
if not split or (type(reply) == 'table' and reply.err) then return reply end
return { reply, cjson.encode(HOME_FX) }
";

/// What the scripts share with Rust, written from Rust's own definitions so the two cannot
/// disagree: the terminal states (`JobState::is_terminal`) and the in-flight slot's states
/// ([`moves::HOLDS_SLOT`], [`moves::SLOT_FREE`]), each a Lua set; the ledger schema this
/// release writes ([`LEDGER_SCHEMA`]) and how many events a record keeps ([`EVENTS_KEPT`]).
pub(crate) fn lua_constants() -> String {
    let set = |name: &str, states: &mut dyn Iterator<Item = reelq_core::JobState>| {
        let members: Vec<String> = states.map(|s| format!("{} = true", s.as_str())).collect();
        format!("local {name} = {{ {} }}\n", members.join(", "))
    };
    [
        set(
            "TERMINAL",
            &mut reelq_core::JobState::ALL
                .into_iter()
                .filter(|state| state.is_terminal()),
        ),
        set("HOLDS_SLOT", &mut moves::HOLDS_SLOT.iter().copied()),
        set("SLOT_FREE", &mut moves::SLOT_FREE.iter().copied()),
        format!(
            "local LEDGER_SCHEMA = {LEDGER_SCHEMA}\nlocal COMPACT_RECORDS_SCHEMA = {COMPACT_RECORDS_SCHEMA}\nlocal TENANT_QUEUES_SCHEMA = {TENANT_QUEUES_SCHEMA}\nlocal EVENTS_KEPT = {EVENTS_KEPT}\n"
        ),
    ]
    .concat()
}

/// A script's edge: `ledger_edge!(Args<'_> => Reply, "name.lua")` (and any of
/// `ledger_script!`'s options after the file) makes `Args` run `name.lua` and read `Reply`.
macro_rules! ledger_edge {
    ($args:ty => $reply:ty, $file:literal $(, $($option:tt)+)?) => {
        impl crate::scripts::LedgerScript for $args {
            type Reply = $reply;
            const NAME: &'static str = $file;
            fn script() -> &'static std::sync::LazyLock<redis::Script> {
                static SCRIPT: std::sync::LazyLock<redis::Script> =
                    ledger_script!($file $(, $($option)+)?);
                &SCRIPT
            }
        }
    };
}

/// One ledger script's edge: its arguments (this type, serialized to JSON) and its reply.
pub(crate) trait LedgerScript: Serialize {
    /// The JSON the script returns.
    type Reply: DeserializeOwned;
    /// The file, for errors.
    const NAME: &'static str;
    fn script() -> &'static LazyLock<Script>;
}

/// Where a script runs: the prefix of its slot (`{reelq}:`), and the home's prefix when the home
/// has a slot of its own (`keys.rs`; then the script's home effects come back with its reply).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Place<'a> {
    pub slot: &'a str,
    pub home: Option<&'a str>,
}

/// Runs a script with `args` on `conn` at `place`: its reply, and the home effects it left for
/// the caller to make at the home (none where the home shares its slot: made there;
/// `Ledger::run_script` makes them).
pub(crate) async fn run_leaving_home<S: LedgerScript>(
    conn: &mut Conn,
    place: Place<'_>,
    args: &S,
) -> Result<(S::Reply, Vec<home::Effect>), QueueError> {
    let edge = |detail: String| QueueError::ScriptEdge {
        script: S::NAME,
        detail,
    };
    let json = serde_json::to_string(args).map_err(|err| edge(format!("arguments: {err}")))?;
    let mut invocation = S::script().key(format!("{}due", place.slot));
    invocation.arg(place.slot).arg(json);
    let (reply, effects) = match place.home {
        None => (invocation.invoke_async(conn).await?, Vec::new()),
        Some(home) => {
            invocation.arg(home);
            let (reply, effects): (String, String) = invocation.invoke_async(conn).await?;
            let effects = lua_list(&mut serde_json::Deserializer::from_str(&effects))
                .map_err(|err| edge(format!("home effects {effects:?}: {err}")))?;
            (reply, effects)
        }
    };
    let reply: String = reply;
    let reply =
        serde_json::from_str(&reply).map_err(|err| edge(format!("reply {reply:?}: {err}")))?;
    Ok((reply, effects))
}

/// A list in a reply. Lua has one table type, and Redis's cjson writes an empty one as `{}`.
pub(crate) fn lua_list<'de, D, T>(deserializer: D) -> Result<Vec<T>, D::Error>
where
    D: Deserializer<'de>,
    T: DeserializeOwned,
{
    match serde_json::Value::deserialize(deserializer)? {
        serde_json::Value::Object(map) if map.is_empty() => Ok(Vec::new()),
        value => serde_json::from_value(value).map_err(serde::de::Error::custom),
    }
}

pub(crate) mod archive;
pub(crate) mod batch;
pub(crate) mod claim;
pub(crate) mod claim_notify;
pub(crate) mod claim_view;
pub(crate) mod commit;
pub(crate) mod enqueue;
pub(crate) mod extend;
pub(crate) mod history;
pub(crate) mod home;
pub(crate) mod jobs;
pub(crate) mod migrate;
pub(crate) mod note;
pub(crate) mod notified;
pub(crate) mod operator;
pub(crate) mod pause;
pub(crate) mod release;
pub(crate) mod restore;
pub(crate) mod resume;
pub(crate) mod settled;
pub(crate) mod transition;
pub(crate) mod wake;
