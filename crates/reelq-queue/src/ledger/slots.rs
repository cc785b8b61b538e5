//! Where the ledger's keys live and which master's connection reaches them: the partition's
//! keys (`keys::PARTITION`) and the home's (`keys::HOME`), each on the master of its slot, the
//! same one unless the home has a slot of its own (`LedgerConfig::home_slot`, kept in the
//! ledger as `P layout`); and the scripts run on each, a partition's script's home effects
//! made at the home after it.

use std::sync::Arc;

use redis::AsyncConnectionConfig;

use super::{HomeSlot, Ledger, LedgerConfig};
use crate::{
    Durability, QueueError, RedisTarget,
    connection::{Conn, Connector, ask_cluster},
    durability, scripts,
};

/// `P layout` of a ledger whose home shares its jobs' slot.
const SHARED: &str = "shared";

/// The hash tag of the ledger's partition if its home has a slot of its own, else None: as the
/// ledger was created (`P layout`, at the home), or, for a ledger created now, as `config`
/// asks. A ledger that holds a schema but no layout was created before layouts were kept: its
/// home shares the slot.
pub(super) async fn layout(
    home_connector: &Arc<Connector>,
    home: &str,
    config: &LedgerConfig,
) -> Result<Option<String>, QueueError> {
    let mut conn = home_connector.conn().await?;
    let (layout, schema): (Option<String>, Option<String>) = redis::cmd("MGET")
        .arg(format!("{home}layout"))
        .arg(format!("{home}schema"))
        .query_async(&mut conn)
        .await?;
    let chosen = match (layout, schema) {
        (Some(layout), _) => layout,
        (None, Some(_)) => SHARED.to_owned(),
        (None, None) => {
            let wanted = match &config.home_slot {
                HomeSlot::Shared => SHARED.to_owned(),
                HomeSlot::OwnWithPartition(tag) => tag.clone(),
                HomeSlot::Own => partition_tag(config, home).await,
            };
            // Another client creating the ledger at once may have chosen first.
            let _: Option<String> = redis::cmd("SET")
                .arg(format!("{home}layout"))
                .arg(&wanted)
                .arg("NX")
                .query_async(&mut conn)
                .await?;
            redis::cmd("GET")
                .arg(format!("{home}layout"))
                .query_async(&mut conn)
                .await?
        }
    };
    if chosen != SHARED && config.home_slot == HomeSlot::Shared {
        tracing::info!(partition = %chosen, "the ledger's home has a slot of its own");
    }
    Ok((chosen != SHARED).then_some(chosen))
}

/// A partition's hash tag for a new ledger whose home has a slot of its own: on a cluster, the
/// first of `{prefix}.p0`, `{prefix}.p1`, ... served by another master than the home's (if
/// another serves one of the first 64); elsewhere `{prefix}.p0`.
async fn partition_tag(config: &LedgerConfig, home: &str) -> String {
    let first = format!("{}.p0", config.prefix);
    let Ok(RedisTarget::Cluster { nodes }) = config.redis_url.parse::<RedisTarget>() else {
        return first;
    };
    let connection =
        AsyncConnectionConfig::new().set_response_timeout(Some(config.response_timeout));
    let master_of = async |key: &str| {
        for node in &nodes {
            if let Ok(view) = ask_cluster(node, key, &connection).await {
                return Some(view.slot_master);
            }
        }
        None
    };
    let Some(home_master) = master_of(&format!("{home}schema")).await else {
        return first;
    };
    for n in 0..64 {
        let tag = format!("{}.p{n}", config.prefix);
        if master_of(&format!("{{{tag}}}:due"))
            .await
            .is_some_and(|master| master != home_master)
        {
            return tag;
        }
    }
    first
}

impl Ledger {
    /// The connection for one operation; a write and its `WAIT` must share one.
    pub(crate) async fn conn(&self) -> Result<Conn, QueueError> {
        Ok(self.connector.conn().await?)
    }

    /// The connection to the home's master (the partition's, unless the home has a slot of its
    /// own): every command on a home key goes through it.
    pub(crate) async fn home_conn(&self) -> Result<Conn, QueueError> {
        Ok(self.home_connector.conn().await?)
    }

    /// A key of the ledger's partition (`keys::PARTITION`): a job's or a batch's.
    pub(crate) fn key(&self, name: impl std::fmt::Display) -> String {
        format!("{}{name}", self.prefix)
    }

    /// A key of the home slot (`keys::HOME`): what is cluster-wide. The ledger's one
    /// partition shares its prefix unless the home has a slot of its own.
    pub(crate) fn home_key(&self, name: impl std::fmt::Display) -> String {
        format!("{}{name}", self.home)
    }

    /// Runs `command` on each slot's copy of a key every slot has (`keys::EVERY_SLOT`): the
    /// home's, then the partition's if it is another, each on its master.
    pub(crate) async fn on_every_slot(
        &self,
        name: &str,
        command: impl Fn(String) -> redis::Cmd,
    ) -> Result<(), QueueError> {
        let _: () = command(self.home_key(name))
            .query_async(&mut self.home_conn().await?)
            .await?;
        if self.home != self.prefix {
            let _: () = command(self.key(name))
                .query_async(&mut self.conn().await?)
                .await?;
        }
        Ok(())
    }

    /// Runs a partition's script on `conn`; the home effects it left (a home of its own) are
    /// then made at the home, on its master (`home.lua`). They are not sent again if that call
    /// fails: each gives back a slot or a reservation, or binds a task, and one lost errs on
    /// the safe side (prelude's `apply_home`).
    pub(crate) async fn run_script<S: scripts::LedgerScript>(
        &self,
        conn: &mut Conn,
        args: &S,
    ) -> Result<S::Reply, QueueError> {
        let (reply, mut effects) = scripts::run_leaving_home(conn, self.place(), args).await?;
        if effects.is_empty() {
            return Ok(reply);
        }
        // A reservation given back at the home must not come back in the partition: a
        // failover that lost the move would leave the job holding it, to give it back twice.
        // Under `replicas:N` the move is waited for first; if it cannot be, the reservation
        // stays taken for the day (the safe side).
        let releases = |effect: &scripts::home::Effect| {
            matches!(effect, scripts::home::Effect::Release { .. })
        };
        if let (Durability::Replicas { n }, true) =
            (self.safety.durability, effects.iter().any(releases))
            && let Err(err) = durability::wait_for_replicas(conn, n, self.safety.replica_wait).await
        {
            tracing::warn!(error = %err, "a move's budget give-back is kept until its day ends: its replicas did not confirm the move");
            effects.retain(|effect| !releases(effect));
        }
        if !effects.is_empty() {
            scripts::home::make(&mut self.home_conn().await?, &self.home, effects).await?;
        }
        Ok(reply)
    }

    /// Runs a script of the home's alone, on its master.
    pub(crate) async fn run_at_home<S: scripts::LedgerScript>(
        &self,
        args: &S,
    ) -> Result<S::Reply, QueueError> {
        let mut conn = self.home_conn().await?;
        Ok(
            scripts::run_leaving_home(&mut conn, self.home_place(), args)
                .await?
                .0,
        )
    }

    /// Where the partition's scripts run (their home effects made next, at the home, if it
    /// has a slot of its own).
    pub(crate) fn place(&self) -> scripts::Place<'_> {
        scripts::Place {
            slot: &self.prefix,
            home: (self.home != self.prefix).then_some(self.home.as_str()),
        }
    }

    /// Where a script of the home's alone runs.
    pub(crate) fn home_place(&self) -> scripts::Place<'_> {
        scripts::Place {
            slot: &self.home,
            home: None,
        }
    }
}
