//! A real Redis Cluster on loopback: three masters and a replica of each, every node a
//! `redis-server` with AOF on (`appendfsync always`), joined by `redis-cli --cluster create`,
//! killed when dropped.

use std::{process::Command, time::Duration};

use anyhow::{Context, bail};

use crate::{RedisOptions, RedisServer};

pub struct RedisCluster {
    /// Every node; which are masters changes with failovers.
    pub nodes: Vec<RedisServer>,
}

impl RedisCluster {
    /// Starts three masters and three replicas and waits until every node says the cluster is
    /// `ok`. Fails (never skips) if `redis-server` or `redis-cli` is missing.
    pub fn start() -> anyhow::Result<Self> {
        let nodes = (0..6)
            .map(|_| {
                RedisServer::start_with(RedisOptions {
                    cluster_node: true,
                    ..RedisOptions::default()
                })
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        let mut create = Command::new("redis-cli");
        create.arg("--cluster").arg("create");
        for node in &nodes {
            create.arg(format!("127.0.0.1:{}", node.port()));
        }
        let output = create
            .args(["--cluster-replicas", "1", "--cluster-yes"])
            .output()
            .context("running redis-cli --cluster create: is redis-tools installed?")?;
        if !output.status.success() {
            bail!(
                "redis-cli --cluster create failed: {}{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            );
        }
        let cluster = RedisCluster { nodes };
        // Ready when every node sees the cluster `ok` and every master's replica has synced
        // (a `WAIT` counts it from then on).
        cluster.wait_until(Duration::from_secs(30), |cluster| {
            cluster.live_nodes().all(|node| {
                let ok = node
                    .command_text(&["CLUSTER", "INFO"])
                    .is_ok_and(|info| info.contains("cluster_state:ok"));
                let replication = node
                    .command_text(&["INFO", "replication"])
                    .unwrap_or_default();
                let synced =
                    !replication.contains("role:master") || replication.contains("state=online");
                ok && synced
            })
        })?;
        Ok(cluster)
    }

    /// Takes the node on `port` out of the cluster's list (it stays in the cluster, and is
    /// killed when the returned server drops), for a harness that wants it as its own.
    pub fn take_node(&mut self, port: u16) -> anyhow::Result<RedisServer> {
        let at = self
            .nodes
            .iter()
            .position(|node| node.port() == port)
            .context("a node of ours")?;
        Ok(self.nodes.remove(at))
    }

    /// `redis+cluster://` with every node.
    pub fn url(&self) -> String {
        let hosts: Vec<String> = self
            .nodes
            .iter()
            .map(|node| format!("127.0.0.1:{}", node.port()))
            .collect();
        format!("redis+cluster://{}/", hosts.join(","))
    }

    fn live_nodes(&self) -> impl Iterator<Item = &RedisServer> {
        self.nodes.iter().filter(|node| node.is_running())
    }

    /// The node listening on `port`.
    pub fn node(&self, port: u16) -> anyhow::Result<&RedisServer> {
        self.nodes
            .iter()
            .find(|node| node.port() == port)
            .with_context(|| format!("no node of the cluster on port {port}"))
    }

    /// The port of the master serving `key`'s hash slot, as a live node sees it.
    pub fn master_of(&self, key: &str) -> anyhow::Result<u16> {
        let node = self.live_nodes().next().context("no live node")?;
        let slot = node.command(&["CLUSTER", "KEYSLOT", key])?;
        let slot: u16 = slot.trim_start_matches(':').parse()?;
        // `CLUSTER NODES`, one line per node: id, ip:port@bus, flags, master, ..., slots.
        let nodes = node.command_text(&["CLUSTER", "NODES"])?;
        for line in nodes.lines() {
            let fields: Vec<&str> = line.split_whitespace().collect();
            if fields.len() < 9 || !fields[2].contains("master") || fields[2].contains("fail") {
                continue;
            }
            let serves = fields[8..].iter().any(|range| {
                let (start, end) = range.split_once('-').unwrap_or((range, range));
                matches!((start.parse::<u16>(), end.parse::<u16>()), (Ok(a), Ok(b)) if a <= slot && slot <= b)
            });
            if serves {
                let address = fields[1].split('@').next().unwrap_or_default();
                return address
                    .rsplit(':')
                    .next()
                    .and_then(|port| port.parse().ok())
                    .context("a node address without a port");
            }
        }
        bail!("no live master serves slot {slot}")
    }

    /// An operator's manual failover (`CLUSTER FAILOVER` on the replica of the master serving
    /// `key`'s slot): the replica takes over and the old master, still running, becomes its
    /// replica; clients of the old master get `MOVED`. Returns the new master's port.
    pub fn manual_failover(&self, key: &str) -> anyhow::Result<u16> {
        let old = self.master_of(key)?;
        let node = self.live_nodes().next().context("no live node")?;
        let nodes = node.command_text(&["CLUSTER", "NODES"])?;
        let lines: Vec<Vec<&str>> = nodes
            .lines()
            .map(|line| line.split_whitespace().collect())
            .collect();
        let port_of = |address: &str| -> Option<u16> {
            address.split('@').next()?.rsplit(':').next()?.parse().ok()
        };
        let master_id = lines
            .iter()
            .find(|fields| fields.len() > 2 && port_of(fields[1]) == Some(old))
            .map(|fields| fields[0])
            .context("the master is in CLUSTER NODES")?;
        let replica = lines
            .iter()
            .find(|fields| {
                fields.len() > 3 && fields[2].contains("slave") && fields[3] == master_id
            })
            .and_then(|fields| port_of(fields[1]))
            .context("the master has a replica")?;
        let replica = self
            .live_nodes()
            .find(|node| node.port() == replica)
            .context("the replica is one of ours")?;
        let answer = replica.command(&["CLUSTER", "FAILOVER"])?;
        if answer != "+OK" {
            bail!("CLUSTER FAILOVER answered {answer:?}");
        }
        self.await_new_master(key, old)
    }

    /// Kills the node on `port` (SIGKILL) and leaves it down.
    pub fn stop_node(&mut self, port: u16) -> anyhow::Result<()> {
        self.nodes
            .iter_mut()
            .find(|node| node.port() == port)
            .context("a node of ours")?
            .stop();
        Ok(())
    }

    /// The host of the node on `port` loses power (what its AOF had not synced is gone) and
    /// stays down; returns the bytes of AOF lost.
    pub fn power_loss_of_node(&mut self, port: u16, window: Duration) -> anyhow::Result<u64> {
        Ok(self
            .nodes
            .iter_mut()
            .find(|node| node.port() == port)
            .context("a node of ours")?
            .power_loss(window)?
            .bytes_lost)
    }

    /// Kills the master serving `key`'s slot (SIGKILL) and waits until the cluster has
    /// promoted its replica and says it is `ok` again; returns the new master's port.
    pub fn fail_master_of(&mut self, key: &str) -> anyhow::Result<u16> {
        let old = self.master_of(key)?;
        self.stop_node(old)?;
        self.await_new_master(key, old)
    }

    /// Waits until a master other than `old` serves `key`'s slot and every live node says the
    /// cluster is `ok`; returns its port.
    pub fn await_new_master(&self, key: &str, old: u16) -> anyhow::Result<u16> {
        let mut promoted = None;
        self.wait_until(Duration::from_secs(30), |cluster| {
            promoted = cluster.master_of(key).ok().filter(|&port| port != old);
            promoted.is_some()
                && cluster.live_nodes().all(|node| {
                    node.command_text(&["CLUSTER", "INFO"])
                        .is_ok_and(|info| info.contains("cluster_state:ok"))
                })
        })?;
        promoted.context("a replica was promoted")
    }

    /// Boots the node on `port` again from its data dir (it rejoins the cluster, as a replica
    /// of whichever master took its place) and waits until every master has a synced replica.
    pub fn restart_node(&mut self, port: u16) -> anyhow::Result<()> {
        self.nodes
            .iter_mut()
            .find(|node| node.port() == port)
            .context("a node of ours")?
            .start_again()?;
        self.await_replicas_synced()
    }

    /// Waits until every live master has a replica in sync.
    pub fn await_replicas_synced(&self) -> anyhow::Result<()> {
        self.wait_until(Duration::from_secs(30), |cluster| {
            cluster.live_nodes().all(|node| {
                let replication = node
                    .command_text(&["INFO", "replication"])
                    .unwrap_or_default();
                !replication.contains("role:master") || replication.contains("state=online")
            })
        })
    }

    /// Polls `done` (cluster state converges by gossip; there is no event to await) until it
    /// holds or `timeout` passes.
    fn wait_until(
        &self,
        timeout: Duration,
        mut done: impl FnMut(&Self) -> bool,
    ) -> anyhow::Result<()> {
        let start = std::time::Instant::now();
        while start.elapsed() < timeout {
            if done(self) {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        bail!("the cluster did not converge within {timeout:?}")
    }
}
