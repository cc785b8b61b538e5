//! Moving one of the ledger's hash slots to another master of a Redis Cluster while workers
//! and producers run (`reelq cluster move-slot`): adding a master, or rebalancing. A one-slot
//! ledger has one slot; a ledger whose home has a slot of its own has that one and a slot per
//! partition ([`LedgerSlot`]), each moved on its own the same way.
//!
//! Redis 7.0 moves a slot key by key (`MIGRATE`), and a script that meets a key already
//! moved fails half way with its earlier writes kept. So the move first sets `P moving` in
//! the slot: every ledger script checks it before anything else (`prelude.lua`) and refuses
//! with a `MOVING` error, which every caller takes as a Redis error to retry (workers put the
//! step back, producers answer 503). Commands outside scripts touch one key each, and a key
//! is moved whole, so they either land before their key moves (and move with it) or are
//! answered `ASK` and retried. The flag moves last; the slot is then handed to the target on
//! every master, the target's replicas are waited for (under `replicas:N`), and the flag is
//! removed there: scripts run again, now on the target. Nothing is ever written with
//! `REPLACE`, so a key already on the target stops the move instead of being overwritten.
//!
//! A move cut short (the command killed) leaves the ledger frozen: running the command again
//! finishes it from wherever it stopped.

use std::time::{Duration, Instant};

use redis::{AsyncConnectionConfig, Client, aio::MultiplexedConnection};

use crate::{
    Durability, LedgerConfig, QueueError, RedisTarget, connection::ask_cluster, durability,
};

/// Keys moved per `MIGRATE`.
const MIGRATE_BATCH: usize = 100;

/// Which of the ledger's slots to move.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LedgerSlot {
    /// The prefix's slot: a one-slot ledger's only one, or the home of cluster-wide state.
    Home,
    /// The slot of the partition with this index (0 up to the ledger's partitions), in a
    /// ledger whose home has a slot of its own.
    Partition(u16),
}

/// What a slot move did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SlotMove {
    pub slot: i64,
    /// `host:port` of the master that served the slot before.
    pub from: String,
    /// `host:port` of the master that serves it now.
    pub to: String,
    pub keys_moved: u64,
    /// How long scripts were refused (from the flag set to the flag removed), in ms.
    pub frozen_ms: u64,
}

/// Moves `which` of the ledger's slots to the master at `to` (`host:port`, a node of the
/// same cluster), or finishes a move cut short.
pub async fn move_ledger_slot(
    config: &LedgerConfig,
    which: LedgerSlot,
    to: &str,
) -> Result<SlotMove, QueueError> {
    let RedisTarget::Cluster { nodes } = config.redis_url.parse()? else {
        return Err(QueueError::SlotMove(
            "the ledger is not on a Redis Cluster (redis+cluster://)".into(),
        ));
    };
    let home = format!("{{{}}}:", config.prefix);
    let connection =
        AsyncConnectionConfig::new().set_response_timeout(Some(config.response_timeout));
    let ask = async |key: &str| {
        for node in &nodes {
            if let Ok(found) = ask_cluster(node, key, &connection).await {
                return Ok(found);
            }
        }
        Err(QueueError::SlotMove("no cluster node answered".into()))
    };
    let home_view = ask(&format!("{home}schema")).await?;
    let layout: Option<String> = redis::cmd("GET")
        .arg(format!("{home}layout"))
        .query_async(&mut open(&home_view.slot_master, &connection).await?)
        .await?;
    let tags: Vec<&str> = match layout.as_deref() {
        None | Some("shared") => Vec::new(),
        Some(layout) => layout.split(' ').collect(),
    };
    let prefix = match which {
        LedgerSlot::Home => home.clone(),
        LedgerSlot::Partition(n) => match tags.get(usize::from(n)) {
            Some(tag) => format!("{{{tag}}}:"),
            None if tags.is_empty() => {
                return Err(QueueError::SlotMove(
                    "this ledger keeps everything in one slot: move it with --home".into(),
                ));
            }
            None => {
                return Err(QueueError::SlotMove(format!(
                    "this ledger has partitions 0 to {}",
                    tags.len() - 1
                )));
            }
        },
    };
    let flag = format!("{prefix}moving");
    let view = match which {
        LedgerSlot::Home => home_view,
        LedgerSlot::Partition(_) => ask(&format!("{prefix}due")).await?,
    };
    let target_url = format!("redis://{to}");
    if !view.masters.contains(&target_url) {
        return Err(QueueError::SlotMove(format!(
            "{to} is not an online master of the cluster (masters: {})",
            view.masters
                .iter()
                .map(|url| url.trim_start_matches("redis://"))
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }
    let mut target = open(&target_url, &connection).await?;
    let started = Instant::now();
    let mut report = SlotMove {
        slot: view.slot,
        from: view.slot_master.trim_start_matches("redis://").to_owned(),
        to: to.to_owned(),
        keys_moved: 0,
        frozen_ms: 0,
    };
    if view.slot_master != target_url {
        let mut source = open(&view.slot_master, &connection).await?;
        let source_id = node_id(&mut source).await?;
        let target_id = node_id(&mut target).await?;
        // Freeze. `ASK`: the flag already went over in a move cut short; it stays frozen.
        let frozen: Result<(), redis::RedisError> = redis::cmd("SET")
            .arg(&flag)
            .arg(&target_id)
            .query_async(&mut source)
            .await;
        if let Err(err) = frozen
            && err.code() != Some("ASK")
        {
            return Err(err.into());
        }
        setslot(&mut target, view.slot, &["IMPORTING", &source_id]).await?;
        setslot(&mut source, view.slot, &["MIGRATING", &target_id]).await?;
        let (host, port) = to
            .rsplit_once(':')
            .ok_or_else(|| QueueError::SlotMove(format!("{to}: expected host:port")))?;
        loop {
            let keys: Vec<String> = redis::cmd("CLUSTER")
                .arg("GETKEYSINSLOT")
                .arg(view.slot)
                .arg(MIGRATE_BATCH + 1)
                .query_async(&mut source)
                .await?;
            // The flag last: until then, every script on the source sees it.
            let mut batch: Vec<&String> = keys.iter().filter(|key| **key != flag).collect();
            if batch.is_empty() {
                batch = keys.iter().collect();
            }
            if batch.is_empty() {
                break;
            }
            let _: String = redis::cmd("MIGRATE")
                .arg(host)
                .arg(port)
                .arg("")
                .arg(0)
                .arg(config.response_timeout.as_millis() as u64)
                .arg("KEYS")
                .arg(&batch)
                .query_async(&mut source)
                .await?;
            report.keys_moved += batch.len() as u64;
        }
        // The target first, then the source, then everyone else (Redis's own order).
        setslot(&mut target, view.slot, &["NODE", &target_id]).await?;
        setslot(&mut source, view.slot, &["NODE", &target_id]).await?;
        for master in &view.masters {
            if *master != target_url && *master != view.slot_master {
                let mut other = open(master, &connection).await?;
                setslot(&mut other, view.slot, &["NODE", &target_id]).await?;
            }
        }
    }
    // What moved is durable on the target before scripts run on it: a probe write after it,
    // and its WAIT, which counts the replication stream up to the probe.
    let _: () = redis::cmd("SET")
        .arg(format!("{prefix}durability_probe"))
        .arg(crate::ledger::now_unix_ms())
        .query_async(&mut target)
        .await?;
    if let Durability::Replicas { n } = config.durability {
        durability::wait_for_replicas(
            &mut target,
            n,
            config.replica_wait.max(Duration::from_secs(5)),
        )
        .await?;
    }
    let _: () = redis::cmd("DEL")
        .arg(&flag)
        .query_async(&mut target)
        .await?;
    report.frozen_ms = started.elapsed().as_millis() as u64;
    Ok(report)
}

async fn open(
    url: &str,
    connection: &AsyncConnectionConfig,
) -> Result<MultiplexedConnection, QueueError> {
    Ok(Client::open(url)?
        .get_multiplexed_async_connection_with_config(connection)
        .await?)
}

async fn node_id(conn: &mut MultiplexedConnection) -> Result<String, QueueError> {
    Ok(redis::cmd("CLUSTER").arg("MYID").query_async(conn).await?)
}

async fn setslot(
    conn: &mut MultiplexedConnection,
    slot: i64,
    how: &[&str],
) -> Result<(), QueueError> {
    let _: () = redis::cmd("CLUSTER")
        .arg("SETSLOT")
        .arg(slot)
        .arg(how)
        .query_async(conn)
        .await?;
    Ok(())
}
