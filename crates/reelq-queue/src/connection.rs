//! The ledger's one connection to the Redis primary, found directly by URL, through Redis
//! Sentinel, or in a Redis Cluster (the master that serves the ledger's hash slot), and
//! replaced when it breaks.
//!
//! redis-rs's `ConnectionManager` reconnects to the address it was given, so after a Sentinel
//! failover it keeps knocking on the dead primary, and on a demoted one it keeps getting
//! `READONLY`. Here every command goes through [`Conn`], which marks the connection broken on
//! a connection error, a timeout or `READONLY`; the next command asks the sentinels where the
//! primary is now and connects there.
//!
//! On a Redis Cluster the ledger is one hash slot (every key shares the prefix's hash tag), so
//! it is served by one master: the connector asks the cluster (`CLUSTER SHARDS`, from any
//! node it knows) which master serves the slot and talks to that master alone. A `MOVED` (the
//! slot went elsewhere: a failover, a reshard) marks the socket broken like `READONLY`, and the
//! next command asks again. redis-rs's cluster client is not used: it re-sends a request after
//! a dropped connection (a script could run twice) and sends `WAIT` to every master instead of
//! the socket that wrote.
//!
//! A [`Conn`] is one multiplexed socket and never reconnects by itself. That is what makes
//! `WAIT` meaningful: it counts the replicas holding this socket's writes, so a write and the
//! `WAIT` after it must share a socket, and a socket that broke in between fails the `WAIT`
//! instead of answering for a fresh socket that wrote nothing.

use std::{
    str::FromStr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use redis::{
    AsyncConnectionConfig, Client, Cmd, Pipeline, RedisError, RedisFuture, Value,
    aio::{ConnectionLike, MultiplexedConnection},
    sentinel::Sentinel,
};

/// Where the Redis primary is.
///
/// `redis://host:port/db` (or `rediss://`) names it directly; `redis+sentinel://h1:p1,h2:p2,
/// h3:p3/master_name` names the sentinels that know it (the db is always 0 there);
/// `redis+cluster://h1:p1,h2:p2/` names nodes of a Redis Cluster (any of them: the master of
/// the ledger's slot is asked for).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RedisTarget {
    Url(String),
    Sentinel {
        /// `redis://host:port` of each sentinel.
        sentinels: Vec<String>,
        master_name: String,
    },
    Cluster {
        /// `redis://host:port` of each node given.
        nodes: Vec<String>,
    },
}

/// A Redis address that cannot be used, with why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("redis url {url:?}: {why}")]
pub struct TargetError {
    url: String,
    why: &'static str,
}

impl FromStr for RedisTarget {
    type Err = TargetError;

    fn from_str(url: &str) -> Result<Self, Self::Err> {
        let error = |why| TargetError {
            url: url.to_owned(),
            why,
        };
        if let Some(rest) = url.strip_prefix("redis+cluster://") {
            let hosts = rest.trim_end_matches('/');
            if hosts.contains('/') || hosts.contains('@') {
                return Err(error(
                    "a cluster url is redis+cluster://host:port,host:port/ (no database, no password in it)",
                ));
            }
            let nodes: Vec<String> = hosts
                .split(',')
                .filter(|host| !host.is_empty())
                .map(|host| format!("redis://{host}"))
                .collect();
            if nodes.is_empty() {
                return Err(error("a cluster url names at least one host:port"));
            }
            return Ok(RedisTarget::Cluster { nodes });
        }
        let Some(rest) = url.strip_prefix("redis+sentinel://") else {
            if url.starts_with("redis://") || url.starts_with("rediss://") {
                return Ok(RedisTarget::Url(url.to_owned()));
            }
            return Err(error(
                "expected redis://, rediss://, redis+sentinel://host:port,.../master_name or redis+cluster://host:port,.../",
            ));
        };
        let (hosts, master_name) = rest
            .split_once('/')
            .ok_or_else(|| error("a sentinel url ends with /master_name"))?;
        let master_name = master_name.trim_end_matches('/');
        if master_name.is_empty() {
            return Err(error("a sentinel url ends with /master_name"));
        }
        let sentinels: Vec<String> = hosts
            .split(',')
            .filter(|host| !host.is_empty())
            .map(|host| format!("redis://{host}"))
            .collect();
        if sentinels.is_empty() {
            return Err(error("a sentinel url names at least one host:port"));
        }
        Ok(RedisTarget::Sentinel {
            sentinels,
            master_name: master_name.to_owned(),
        })
    }
}

impl std::fmt::Display for RedisTarget {
    /// The address without any password, for logs and errors.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RedisTarget::Url(url) => match url.split_once('@') {
                Some((scheme_and_auth, host)) => {
                    let scheme = scheme_and_auth.split("://").next().unwrap_or("redis");
                    write!(f, "{scheme}://***@{host}")
                }
                None => f.write_str(url),
            },
            RedisTarget::Sentinel {
                sentinels,
                master_name,
            } => {
                let hosts: Vec<&str> = sentinels
                    .iter()
                    .map(|s| s.trim_start_matches("redis://"))
                    .collect();
                write!(f, "redis+sentinel://{}/{master_name}", hosts.join(","))
            }
            RedisTarget::Cluster { nodes } => {
                let hosts: Vec<&str> = nodes
                    .iter()
                    .map(|s| s.trim_start_matches("redis://"))
                    .collect();
                write!(f, "redis+cluster://{}/", hosts.join(","))
            }
        }
    }
}

/// The shared, replaceable connection.
pub(crate) struct Connector {
    target: RedisTarget,
    config: AsyncConnectionConfig,
    resolver: Resolver,
    current: Mutex<Current>,
    /// Serialises reconnects, so a burst of failed commands makes one new connection.
    reconnecting: tokio::sync::Mutex<()>,
    /// Bumped by every new connection; a failure reported for an older one changes nothing.
    generation: AtomicU64,
    /// When the last reconnect was made (None before any): a client that just reconnected,
    /// maybe to a promoted replica or a restarted primary, gives the others time to notice
    /// lost history before its next paid create (`history.rs`).
    reconnected_at: Mutex<Option<std::time::Instant>>,
}

struct Current {
    client: Client,
    conn: MultiplexedConnection,
    generation: u64,
    broken: bool,
}

impl Connector {
    /// Connects to the primary `target` names; on a cluster, to the master serving the hash
    /// slot of `slot_key` (any of the ledger's keys).
    pub(crate) async fn connect(
        target: RedisTarget,
        timeout: Duration,
        slot_key: &str,
    ) -> Result<Arc<Self>, RedisError> {
        let config = AsyncConnectionConfig::new()
            .set_response_timeout(Some(timeout))
            .set_connection_timeout(Some(timeout));
        let resolver = match &target {
            RedisTarget::Url(url) => Resolver::Direct(url.clone()),
            RedisTarget::Sentinel {
                sentinels,
                master_name,
            } => Resolver::Sentinel {
                master_name: master_name.clone(),
                sentinel: tokio::sync::Mutex::new(Sentinel::build(
                    sentinels.iter().map(String::as_str).collect(),
                )?),
            },
            RedisTarget::Cluster { nodes } => Resolver::Cluster {
                slot_key: slot_key.to_owned(),
                nodes: Mutex::new(nodes.clone()),
            },
        };
        let (client, conn) = resolver.open(&config).await?;
        Ok(Arc::new(Connector {
            target,
            config,
            resolver,
            current: Mutex::new(Current {
                client,
                conn,
                generation: 1,
                broken: false,
            }),
            reconnecting: tokio::sync::Mutex::new(()),
            generation: AtomicU64::new(1),
            reconnected_at: Mutex::new(None),
        }))
    }

    pub(crate) fn target(&self) -> &RedisTarget {
        &self.target
    }

    /// How long ago the last reconnect was made, if one was.
    pub(crate) fn reconnected_for(&self) -> Option<Duration> {
        self.reconnected_at.lock().unwrap().map(|at| at.elapsed())
    }

    /// The client of the current primary (for pub/sub, which needs a socket of its own).
    pub(crate) async fn client(self: &Arc<Self>) -> Result<Client, RedisError> {
        self.conn().await?;
        Ok(self.current.lock().unwrap().client.clone())
    }

    /// The current connection, reconnecting first if the last one broke.
    pub(crate) async fn conn(self: &Arc<Self>) -> Result<Conn, RedisError> {
        if let Some(conn) = self.healthy() {
            return Ok(conn);
        }
        let _one_at_a_time = self.reconnecting.lock().await;
        if let Some(conn) = self.healthy() {
            return Ok(conn);
        }
        let (client, conn) = self.resolver.open(&self.config).await?;
        let generation = self.generation.fetch_add(1, Ordering::SeqCst) + 1;
        tracing::info!(redis = %self.target, generation, "connected to the redis primary");
        *self.reconnected_at.lock().unwrap() = Some(std::time::Instant::now());
        *self.current.lock().unwrap() = Current {
            client,
            conn: conn.clone(),
            generation,
            broken: false,
        };
        Ok(Conn {
            conn,
            generation,
            connector: self.clone(),
        })
    }

    fn healthy(self: &Arc<Self>) -> Option<Conn> {
        let current = self.current.lock().unwrap();
        (!current.broken).then(|| Conn {
            conn: current.conn.clone(),
            generation: current.generation,
            connector: self.clone(),
        })
    }

    fn report(&self, generation: u64, err: &RedisError) {
        let failover_sign = err.is_io_error()
            || err.is_connection_dropped()
            || err.is_connection_refusal()
            || err.is_timeout()
            || err.code() == Some("READONLY")
            || err.to_string().contains("READONLY")
            || err.code() == Some("MOVED")
            || err.to_string().contains("MOVED")
            || err.code() == Some("CLUSTERDOWN");
        if !failover_sign {
            return;
        }
        let mut current = self.current.lock().unwrap();
        if current.generation == generation && !current.broken {
            tracing::warn!(redis = %self.target, error = %err, "redis connection broke; reconnecting on next use");
            current.broken = true;
        }
    }
}

/// How the primary is found.
enum Resolver {
    Direct(String),
    /// Asked for the primary's address after each break (it caches its sentinel sockets).
    Sentinel {
        master_name: String,
        sentinel: tokio::sync::Mutex<Sentinel>,
    },
    /// Asks the cluster which master serves the ledger's slot after each break, from the
    /// nodes it was given and those the cluster named since.
    Cluster {
        slot_key: String,
        nodes: Mutex<Vec<String>>,
    },
}

impl Resolver {
    /// Finds the primary and opens a socket to it.
    async fn open(
        &self,
        config: &AsyncConnectionConfig,
    ) -> Result<(Client, MultiplexedConnection), RedisError> {
        let client = match self {
            Resolver::Direct(url) => Client::open(url.as_str())?,
            Resolver::Sentinel {
                master_name,
                sentinel,
            } => {
                sentinel
                    .lock()
                    .await
                    .async_master_for(master_name, None)
                    .await?
            }
            Resolver::Cluster { slot_key, nodes } => {
                Client::open(slot_master(slot_key, nodes, config).await?.as_str())?
            }
        };
        let conn = client
            .get_multiplexed_async_connection_with_config(config)
            .await?;
        Ok((client, conn))
    }
}

/// The `redis://host:port` of the master serving `slot_key`'s hash slot, asked of each known
/// node in turn (`CLUSTER KEYSLOT`, then `CLUSTER SHARDS`); the nodes the answer names join
/// the known ones, so the ledger still finds its master when every node it was given has gone.
async fn slot_master(
    slot_key: &str,
    nodes: &Mutex<Vec<String>>,
    config: &AsyncConnectionConfig,
) -> Result<String, RedisError> {
    let known = nodes.lock().unwrap().clone();
    let mut last_error = None;
    for node in &known {
        match ask_slot_master(node, slot_key, config).await {
            Ok((master, seen)) => {
                let mut nodes = nodes.lock().unwrap();
                for address in seen {
                    if !nodes.contains(&address) {
                        nodes.push(address);
                    }
                }
                return Ok(master);
            }
            Err(err) => last_error = Some(err),
        }
    }
    Err(last_error
        .unwrap_or_else(|| RedisError::from((redis::ErrorKind::Io, "no cluster node to ask"))))
}

/// One node's answer: the master serving `slot_key`'s slot, and every node it knows.
async fn ask_slot_master(
    node: &str,
    slot_key: &str,
    config: &AsyncConnectionConfig,
) -> Result<(String, Vec<String>), RedisError> {
    let view = ask_cluster(node, slot_key, config).await?;
    Ok((view.slot_master, view.nodes))
}

/// What one node says of the cluster, for the ledger's slot.
pub(crate) struct ClusterView {
    pub slot: i64,
    /// `redis://ip:port` of the master serving the slot.
    pub slot_master: String,
    /// Every online master's `redis://ip:port`.
    pub masters: Vec<String>,
    /// Every node's `redis://ip:port`.
    pub nodes: Vec<String>,
    shards: ClusterShards,
}

impl ClusterView {
    /// The `redis://ip:port` of the master serving `slot`, as the node said.
    pub(crate) fn master_of(&self, slot: i64) -> Option<String> {
        self.shards.master_of(slot)
    }
}

/// Asks `node` which slot `slot_key` hashes to and who serves what.
pub(crate) async fn ask_cluster(
    node: &str,
    slot_key: &str,
    config: &AsyncConnectionConfig,
) -> Result<ClusterView, RedisError> {
    let mut conn = Client::open(node)?
        .get_multiplexed_async_connection_with_config(config)
        .await?;
    let slot: i64 = redis::cmd("CLUSTER")
        .arg("KEYSLOT")
        .arg(slot_key)
        .query_async(&mut conn)
        .await?;
    let shards: Value = redis::cmd("CLUSTER")
        .arg("SHARDS")
        .query_async(&mut conn)
        .await?;
    let shards = ClusterShards::parse(&shards)
        .ok_or_else(|| RedisError::from((redis::ErrorKind::Parse, "CLUSTER SHARDS reply")))?;
    let master = shards.master_of(slot).ok_or_else(|| {
        RedisError::from((
            redis::ErrorKind::ClusterConnectionNotFound,
            "no master serves the ledger's slot",
        ))
    })?;
    Ok(ClusterView {
        slot,
        slot_master: master,
        masters: shards.masters(),
        nodes: shards.nodes(),
        shards,
    })
}

/// What `CLUSTER SHARDS` says: per shard, its slot ranges and its nodes (address, role,
/// health).
struct ClusterShards(Vec<Shard>);

struct Shard {
    slots: Vec<(i64, i64)>,
    /// `redis://ip:port`, `master` or `replica`, and whether the node is `online`.
    nodes: Vec<(String, String, bool)>,
}

impl ClusterShards {
    /// The reply as Redis 7 gives it: an array of maps (as flat arrays in RESP2) with
    /// `slots` (start, end pairs) and `nodes` (maps with `ip`, `port`, `role`, `health`).
    fn parse(reply: &Value) -> Option<Self> {
        let Value::Array(shards) = reply else {
            return None;
        };
        let mut parsed = Vec::new();
        for shard in shards {
            let fields = map_of(shard)?;
            let slots: Vec<i64> = match fields.get("slots")? {
                Value::Array(numbers) => numbers.iter().filter_map(int_of).collect(),
                _ => return None,
            };
            let nodes = match fields.get("nodes")? {
                Value::Array(nodes) => nodes
                    .iter()
                    .filter_map(|node| {
                        let node = map_of(node)?;
                        let ip = text_of(node.get("ip")?)?;
                        let port = int_of(node.get("port")?)?;
                        let role = text_of(node.get("role")?)?;
                        let online = node
                            .get("health")
                            .and_then(|health| text_of(health))
                            .as_deref()
                            == Some("online");
                        Some((format!("redis://{ip}:{port}"), role, online))
                    })
                    .collect(),
                _ => return None,
            };
            parsed.push(Shard {
                slots: slots
                    .chunks_exact(2)
                    .map(|pair| (pair[0], pair[1]))
                    .collect(),
                nodes,
            });
        }
        Some(ClusterShards(parsed))
    }

    fn master_of(&self, slot: i64) -> Option<String> {
        let shard = self.0.iter().find(|shard| {
            shard
                .slots
                .iter()
                .any(|&(start, end)| start <= slot && slot <= end)
        })?;
        shard
            .nodes
            .iter()
            .find(|(_, role, online)| role == "master" && *online)
            .map(|(address, _, _)| address.clone())
    }

    fn masters(&self) -> Vec<String> {
        self.0
            .iter()
            .flat_map(|shard| &shard.nodes)
            .filter(|(_, role, online)| role == "master" && *online)
            .map(|(address, _, _)| address.clone())
            .collect()
    }

    fn nodes(&self) -> Vec<String> {
        self.0
            .iter()
            .flat_map(|shard| shard.nodes.iter().map(|(address, _, _)| address.clone()))
            .collect()
    }
}

/// A map reply (RESP3) or a flat array of key/value pairs (RESP2), by key.
fn map_of(value: &Value) -> Option<std::collections::HashMap<String, &Value>> {
    match value {
        Value::Map(pairs) => pairs
            .iter()
            .map(|(key, value)| Some((text_of(key)?, value)))
            .collect(),
        Value::Array(items) => items
            .chunks_exact(2)
            .map(|pair| Some((text_of(&pair[0])?, &pair[1])))
            .collect(),
        _ => None,
    }
}

fn text_of(value: &Value) -> Option<String> {
    match value {
        Value::BulkString(bytes) => String::from_utf8(bytes.clone()).ok(),
        Value::SimpleString(text) => Some(text.clone()),
        _ => None,
    }
}

fn int_of(value: &Value) -> Option<i64> {
    match value {
        Value::Int(n) => Some(*n),
        other => text_of(other)?.parse().ok(),
    }
}

/// One command's view of the connection: the socket of one generation. Errors that suggest
/// the primary is gone or moved mark the connector broken.
#[derive(Clone)]
pub(crate) struct Conn {
    conn: MultiplexedConnection,
    generation: u64,
    connector: Arc<Connector>,
}

impl Conn {
    /// Reports a failed round trip, or an error answer inside a successful one: redis-rs
    /// hands a server's error reply (`MOVED`, `READONLY`, `CLUSTERDOWN`) back as a value, and
    /// only the caller's `query` turns it into an error, too late for the connector to see.
    fn check(&self, reply: Result<&[Value], &RedisError>) {
        match reply {
            Err(err) => self.connector.report(self.generation, err),
            Ok(values) => {
                for value in values {
                    if let Value::ServerError(err) = value {
                        self.connector
                            .report(self.generation, &RedisError::from(err.clone()));
                    }
                }
            }
        }
    }
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        Box::pin(async move {
            let reply = self.conn.req_packed_command(cmd).await;
            self.check(reply.as_ref().map(std::slice::from_ref));
            reply
        })
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        Box::pin(async move {
            let reply = self.conn.req_packed_commands(pipeline, offset, count).await;
            self.check(reply.as_ref().map(Vec::as_slice));
            reply
        })
    }

    fn get_db(&self) -> i64 {
        self.conn.get_db()
    }
}

#[cfg(test)]
mod tests;
