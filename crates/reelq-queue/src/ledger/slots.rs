//! Where the ledger's keys live and which master's connection reaches them: each partition's
//! keys (`keys::PARTITION`) in its slot, and the home's (`keys::HOME`) in the prefix's, each on
//! the master serving its slot. A one-slot ledger's one partition is its home; a ledger created
//! with a home of its own (`LedgerConfig::home_slot`) or with several partitions
//! (`LedgerConfig::partitions`) names its partitions' hash tags in `P layout` at the home. A
//! job, or a batch, belongs to the partition its id names (`JobId::partition`); a partition's
//! scripts' home effects are made at the home after them.

use std::sync::Arc;

use redis::{AsyncConnectionConfig, Value};

use super::{HomeSlot, Ledger, LedgerConfig, history::History};
use crate::{
    Durability, QueueError, RedisTarget,
    connection::{Conn, Connector, ask_cluster},
    durability, scripts,
};

/// `P layout` of a ledger whose home shares its one partition's slot.
const SHARED: &str = "shared";

/// The most partitions a ledger may have.
pub const MAX_PARTITIONS: u16 = 1024;

/// The partitions a new ledger on a Redis Cluster has unless its client says
/// (`LedgerConfig::partitions`): a few per master of a cluster of three to five, so they
/// spread evenly, and room to add masters later by moving partitions' slots.
pub const CLUSTER_PARTITIONS: u16 = 16;

/// One partition of the ledger: its slot's key prefix (`{reelq.p3}:`), the connection to the
/// master serving it, and this client's history of its durable writes there.
pub(crate) struct Part {
    pub(crate) index: u16,
    prefix: String,
    connector: Arc<Connector>,
    pub(super) history: History,
}

impl Part {
    /// Connects to the master serving the partition with hash tag `tag`.
    pub(super) async fn connect(
        target: &RedisTarget,
        config: &LedgerConfig,
        index: u16,
        tag: &str,
    ) -> Result<Part, QueueError> {
        let prefix = format!("{{{tag}}}:");
        let connector = Connector::connect(
            target.clone(),
            config.response_timeout,
            &format!("{prefix}due"),
        )
        .await?;
        Ok(Part {
            index,
            history: History::new(&prefix),
            prefix,
            connector,
        })
    }

    /// A key of the partition (`keys::PARTITION`, or its copy of `keys::EVERY_SLOT`).
    pub(crate) fn key(&self, name: impl std::fmt::Display) -> String {
        format!("{}{name}", self.prefix)
    }

    /// The connection for one operation in the partition; a write and its `WAIT` must share
    /// one.
    pub(crate) async fn conn(&self) -> Result<Conn, QueueError> {
        Ok(self.connector.conn().await?)
    }

    pub(super) fn connector(&self) -> &Arc<Connector> {
        &self.connector
    }

    /// The address of the master serving the partition now (its connection's).
    pub(super) async fn master(&self) -> Result<String, QueueError> {
        let client = self.connector.client().await?;
        Ok(client.get_connection_info().addr().to_string())
    }
}

/// Where a ledger's jobs are: the hash tags of its partitions if its home has a slot of its
/// own, else none (one partition, the home's slot); and, for a one-slot ledger partitioned
/// since (`reelq migrate --partitions`), when: the jobs made before stay in the home's slot,
/// its legacy partition.
pub(super) struct Layout {
    pub tags: Vec<String>,
    /// `P layout_since`: unix ms; a job or batch whose id was made before is the legacy
    /// partition's.
    pub since: Option<u64>,
}

/// The ledger's layout as it was created (`P layout`, at the home), or, for a ledger created
/// now, as `config` asks. A ledger that holds a schema, or jobs, but no layout was created
/// before layouts were kept: one slot.
pub(super) async fn layout(
    home_connector: &Arc<Connector>,
    home: &str,
    config: &LedgerConfig,
) -> Result<Layout, QueueError> {
    let mut conn = home_connector.conn().await?;
    let (layout, schema, since): (Option<String>, Option<String>, Option<u64>) = redis::cmd("MGET")
        .arg(format!("{home}layout"))
        .arg(format!("{home}schema"))
        .arg(format!("{home}layout_since"))
        .query_async(&mut conn)
        .await?;
    // A ledger written before its schema was recorded holds jobs but no schema.
    let holds_jobs = || async {
        // Its one slot: its partition's prefix is its home's.
        let prefix = home;
        let mut exists = redis::cmd("EXISTS");
        exists
            .arg(format!("{prefix}due"))
            .arg(format!("{prefix}due_low"));
        for state in reelq_core::JobState::ALL {
            exists.arg(format!("{prefix}state:{state}"));
        }
        let found: u64 = exists
            .query_async(&mut home_connector.conn().await?)
            .await?;
        Ok::<_, QueueError>(found > 0)
    };
    let chosen = match (layout, schema) {
        (Some(layout), _) => layout,
        (None, Some(_)) => SHARED.to_owned(),
        (None, None) if holds_jobs().await? => SHARED.to_owned(),
        (None, None) => {
            let on_cluster = matches!(
                config.redis_url.parse::<RedisTarget>(),
                Ok(RedisTarget::Cluster { .. })
            );
            let partitions = match config.partitions {
                0 if on_cluster => CLUSTER_PARTITIONS,
                0 => 1,
                n => n.min(MAX_PARTITIONS),
            };
            let wanted = if partitions == 1 && config.home_slot == HomeSlot::Shared {
                SHARED.to_owned()
            } else {
                partition_tags(config, home, partitions).await.join(" ")
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
    if chosen == SHARED {
        return Ok(Layout {
            tags: Vec::new(),
            since: None,
        });
    }
    let tags: Vec<String> = chosen.split(' ').map(str::to_owned).collect();
    if tags.len() > usize::from(MAX_PARTITIONS) || tags.iter().any(String::is_empty) {
        return Err(QueueError::corrupt(
            "the ledger",
            format!("layout {chosen:?}"),
        ));
    }
    Ok(Layout { tags, since })
}

/// The hash tags of a new ledger's `partitions`, spread evenly over a cluster's masters: the
/// first partitions on the masters other than the home's, in turn, then the home's, and so on
/// round (each the first free `{prefix}.pK` its master serves, of a few thousand); elsewhere
/// `{prefix}.p0`, `{prefix}.p1`, ...
pub(crate) async fn partition_tags(
    config: &LedgerConfig,
    home: &str,
    partitions: u16,
) -> Vec<String> {
    let plain: Vec<String> = (0..partitions)
        .map(|n| format!("{}.p{n}", config.prefix))
        .collect();
    let Ok(RedisTarget::Cluster { nodes }) = config.redis_url.parse::<RedisTarget>() else {
        return plain;
    };
    let connection =
        AsyncConnectionConfig::new().set_response_timeout(Some(config.response_timeout));
    let candidates: Vec<String> = (0..u32::from(partitions) * 64)
        .map(|n| format!("{}.p{n}", config.prefix))
        .collect();
    for node in &nodes {
        let Ok(view) = ask_cluster(node, &format!("{home}schema"), &connection).await else {
            continue;
        };
        let Ok(slots) = key_slots(node, &candidates, &connection).await else {
            continue;
        };
        let mut masters: Vec<String> = view
            .masters
            .iter()
            .filter(|master| **master != view.slot_master)
            .cloned()
            .collect();
        masters.sort();
        masters.push(view.slot_master.clone());
        let mut taken = vec![false; candidates.len()];
        let mut tags = Vec::with_capacity(usize::from(partitions));
        for n in 0..usize::from(partitions) {
            let wanted = &masters[n % masters.len()];
            let pick = (0..candidates.len())
                .find(|&k| !taken[k] && view.master_of(slots[k]).as_ref() == Some(wanted))
                .or_else(|| (0..candidates.len()).find(|&k| !taken[k]))
                .unwrap_or(n);
            taken[pick] = true;
            tags.push(candidates[pick].clone());
        }
        return tags;
    }
    plain
}

/// The hash slot of each tag's keys, asked of `node` in one pipeline (`CLUSTER KEYSLOT`).
async fn key_slots(
    node: &str,
    tags: &[String],
    connection: &AsyncConnectionConfig,
) -> Result<Vec<i64>, redis::RedisError> {
    let mut conn = redis::Client::open(node)?
        .get_multiplexed_async_connection_with_config(connection)
        .await?;
    let mut pipe = redis::pipe();
    for tag in tags {
        pipe.cmd("CLUSTER")
            .arg("KEYSLOT")
            .arg(format!("{{{tag}}}:due"));
    }
    let replies: Vec<Value> = pipe.query_async(&mut conn).await?;
    replies
        .into_iter()
        .map(|reply| Ok(redis::from_redis_value(reply)?))
        .collect()
}

/// Connects to each partition's master (a one-slot ledger's partition, and a partitioned
/// ledger's legacy one, last, share the home's connection).
pub(super) async fn connect_parts(
    target: &RedisTarget,
    config: &LedgerConfig,
    home: &str,
    home_connector: &Arc<Connector>,
    layout: &Layout,
) -> Result<Arc<[Part]>, QueueError> {
    let home_part = |index: usize| Part {
        index: index as u16,
        prefix: home.to_owned(),
        connector: home_connector.clone(),
        history: History::new(home),
    };
    if layout.tags.is_empty() {
        return Ok(Arc::from([home_part(0)]));
    }
    let mut parts = Vec::with_capacity(layout.tags.len() + 1);
    for (index, tag) in layout.tags.iter().enumerate() {
        parts.push(Part::connect(target, config, index as u16, tag).await?);
    }
    if layout.since.is_some() {
        parts.push(home_part(layout.tags.len()));
    }
    Ok(parts.into())
}

impl Ledger {
    /// The ledger's partitions (one, unless it was created with more), the legacy one of a
    /// ledger partitioned since it was created last.
    pub(crate) fn parts(&self) -> &[Part] {
        &self.parts
    }

    /// How many partitions the ledger's new jobs are spread over: a job's id says which is
    /// its ([`reelq_core::JobId::partition`]). A ledger partitioned since it was created
    /// keeps the jobs made before in its legacy partition beside them.
    pub fn partitions(&self) -> u16 {
        (self.parts.len() - usize::from(self.legacy_since.is_some())) as u16
    }

    /// How many slots hold the ledger's jobs: its partitions, and the legacy one of a ledger
    /// partitioned since it was created (each has its archiver's lease).
    pub fn job_slots(&self) -> usize {
        self.parts.len()
    }

    /// When the ledger was partitioned, if it was created with one slot and partitioned since.
    pub(crate) fn legacy_since(&self) -> Option<u64> {
        self.legacy_since
    }

    /// The legacy partition of a ledger partitioned since it was created (the home's slot,
    /// where its jobs made before stay), if it is one.
    pub(crate) fn legacy(&self) -> Option<&Part> {
        self.legacy_since.and(self.parts.last())
    }

    /// A turn of [`Ledger::new_ids`]'s round of the partitions.
    pub(crate) fn next_enqueue_turn(&self) -> usize {
        self.safety
            .enqueue_turn
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    }

    /// The partition a job or a batch belongs to, by its id (a ULID). An id that is not one
    /// (a corrupt record's) is looked for in the first.
    pub(crate) fn part_of(&self, id: &str) -> &Part {
        let Ok(id) = id.parse::<reelq_core::JobId>() else {
            return &self.parts[0];
        };
        if let (Some(since), Some(legacy)) = (self.legacy_since, self.legacy())
            && id.created_ms() < since
        {
            return legacy;
        }
        &self.parts[usize::from(id.partition(self.partitions()))]
    }

    /// Whether the home has a slot of its own.
    pub(crate) fn split(&self) -> bool {
        self.parts[0].prefix != self.home
    }

    /// A client of the home's master, for a connection of one's own (a `WATCH`).
    pub(crate) async fn home_client(&self) -> Result<redis::Client, QueueError> {
        Ok(self.home_connector.client().await?)
    }

    /// The connection to the home's master: every command on a home key goes through it.
    pub(crate) async fn home_conn(&self) -> Result<Conn, QueueError> {
        Ok(self.home_connector.conn().await?)
    }

    /// A key of the home slot (`keys::HOME`): what is cluster-wide. A one-slot ledger's
    /// partition shares its prefix.
    pub(crate) fn home_key(&self, name: impl std::fmt::Display) -> String {
        format!("{}{name}", self.home)
    }

    /// Runs `command` on each slot's copy of a key every slot has (`keys::EVERY_SLOT`): the
    /// home's, then each partition's if the home has a slot of its own, each on its master.
    pub(crate) async fn on_every_slot(
        &self,
        name: &str,
        command: impl Fn(String) -> redis::Cmd,
    ) -> Result<(), QueueError> {
        let _: () = command(self.home_key(name))
            .query_async(&mut self.home_conn().await?)
            .await?;
        if self.split() {
            for part in self.parts() {
                let _: () = command(part.key(name))
                    .query_async(&mut part.conn().await?)
                    .await?;
            }
        }
        Ok(())
    }

    /// Runs a partition's script on `conn` (the partition's); the home effects it left (a
    /// home of its own) are then made at the home, on its master (`home.lua`). They are not
    /// sent again if that call fails: each gives back a slot or a reservation, or binds a task,
    /// and one lost errs on the safe side (prelude's `apply_home`).
    pub(crate) async fn run_script<S: scripts::LedgerScript>(
        &self,
        part: &Part,
        conn: &mut Conn,
        args: &S,
    ) -> Result<S::Reply, QueueError> {
        let (reply, mut effects) = scripts::run_leaving_home(conn, self.place(part), args).await?;
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

    /// Runs a partition's script on a connection of its own.
    pub(crate) async fn run_in<S: scripts::LedgerScript>(
        &self,
        part: &Part,
        args: &S,
    ) -> Result<S::Reply, QueueError> {
        self.run_script(part, &mut part.conn().await?, args).await
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

    /// Where a partition's scripts run (their home effects made next, at the home, if it
    /// has a slot of its own).
    pub(crate) fn place<'a>(&'a self, part: &'a Part) -> scripts::Place<'a> {
        scripts::Place {
            slot: &part.prefix,
            home: (part.prefix != self.home).then_some(self.home.as_str()),
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
