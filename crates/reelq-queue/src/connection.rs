//! The ledger's one connection to the Redis primary, found directly by URL or through Redis
//! Sentinel, and replaced when it breaks.
//!
//! redis-rs's `ConnectionManager` reconnects to the address it was given, so after a Sentinel
//! failover it keeps knocking on the dead primary, and on a demoted one it keeps getting
//! `READONLY`. Here every command goes through [`Conn`], which marks the connection broken on
//! a connection error, a timeout or `READONLY`; the next command asks the sentinels where the
//! primary is now and connects there.
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
/// h3:p3/master_name` names the sentinels that know it (the db is always 0 there).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RedisTarget {
    Url(String),
    Sentinel {
        /// `redis://host:port` of each sentinel.
        sentinels: Vec<String>,
        master_name: String,
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
        let Some(rest) = url.strip_prefix("redis+sentinel://") else {
            if url.starts_with("redis://") || url.starts_with("rediss://") {
                return Ok(RedisTarget::Url(url.to_owned()));
            }
            return Err(error(
                "expected redis://, rediss:// or redis+sentinel://host:port,.../master_name",
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
    pub(crate) async fn connect(
        target: RedisTarget,
        timeout: Duration,
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
            || err.to_string().contains("READONLY");
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
        };
        let conn = client
            .get_multiplexed_async_connection_with_config(config)
            .await?;
        Ok((client, conn))
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

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        Box::pin(async move {
            let reply = self.conn.req_packed_command(cmd).await;
            if let Err(err) = &reply {
                self.connector.report(self.generation, err);
            }
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
            if let Err(err) = &reply {
                self.connector.report(self.generation, err);
            }
            reply
        })
    }

    fn get_db(&self) -> i64 {
        self.conn.get_db()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn check(url: &str, expect: Result<RedisTarget, &str>) {
        let parsed = url.parse::<RedisTarget>();
        match expect {
            Ok(target) => assert_eq!(parsed, Ok(target)),
            Err(why) => assert!(
                parsed
                    .as_ref()
                    .is_err_and(|err| err.to_string().contains(why)),
                "{url}: {parsed:?}"
            ),
        }
    }

    #[test]
    fn urls_name_a_primary_or_its_sentinels() {
        check(
            "redis://127.0.0.1:7000/",
            Ok(RedisTarget::Url("redis://127.0.0.1:7000/".into())),
        );
        check(
            "redis+sentinel://sentinel-a:26379,sentinel-b:26379/reelq",
            Ok(RedisTarget::Sentinel {
                sentinels: vec![
                    "redis://sentinel-a:26379".into(),
                    "redis://sentinel-b:26379".into(),
                ],
                master_name: "reelq".into(),
            }),
        );
        check("redis+sentinel://a:1", Err("ends with /master_name"));
        check("redis+sentinel://a:1/", Err("ends with /master_name"));
        check("redis+sentinel:///m", Err("at least one host"));
        check("http://x", Err("expected redis://"));
    }

    #[test]
    fn display_hides_the_password() {
        let target: RedisTarget = "redis://:hunter2@db:6379/0".parse().unwrap();
        assert_eq!(target.to_string(), "redis://***@db:6379/0");
    }
}
