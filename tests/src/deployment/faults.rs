//! The Redis faults a test inflicts on a running deployment: a host's power loss, a stale
//! replica promoted, a backup restored, the ledger's slot moved to another master.

use std::time::Duration;

use anyhow::Context;
use reelq_queue::{Durability, LedgerConfig};

use super::{Deployment, PREFIX};

/// What a power loss cuts from an `everysec` AOF: the last second.
const POWER_LOSS_WINDOW: Duration = Duration::from_secs(1);

impl Deployment {
    /// The master of `key`'s slot loses power; the cluster promotes its replica, and the host
    /// comes back as a replica of the new master. The waits for the cluster's gossip block, so
    /// they run off this (maybe single) runtime thread. Returns the bytes of AOF lost.
    async fn power_loss_of_master_of(&mut self, key: String) -> anyhow::Result<u64> {
        let mut cluster = self.cluster.take().context("a cluster deployment")?;
        let master = cluster.master_of(&key)?;
        let ours = master == self.redis.port();
        let lost = match ours {
            true => self.redis.power_loss(POWER_LOSS_WINDOW)?.bytes_lost,
            false => cluster.power_loss_of_node(master, POWER_LOSS_WINDOW)?,
        };
        let (cluster, promoted) = tokio::task::spawn_blocking(move || {
            let promoted = cluster.await_new_master(&key, master);
            (cluster, promoted)
        })
        .await?;
        self.cluster = Some(cluster);
        promoted?;
        let mut cluster = self.cluster.take().expect("put back above");
        if ours {
            self.redis.start_again()?;
        }
        let (cluster, synced) = tokio::task::spawn_blocking(move || {
            let synced = match ours {
                true => cluster.await_replicas_synced(),
                false => cluster.restart_node(master),
            };
            (cluster, synced)
        })
        .await?;
        self.cluster = Some(cluster);
        synced?;
        Ok(lost)
    }

    /// The host of a master holding jobs' partitions and not the home loses power, in a ledger
    /// whose home has a slot of its own ([`super::RedisSetup::ClusterOwnHome`],
    /// [`super::RedisSetup::ClusterPartitioned`]): the cluster promotes its replica, with the
    /// home's master untouched. Returns the bytes of AOF lost.
    pub async fn power_loss_of_jobs_master(&mut self) -> anyhow::Result<u64> {
        let layout = format!("{{{PREFIX}}}:layout");
        let layout = self.redis.command_text(&["GET", &layout])?;
        anyhow::ensure!(
            !layout.is_empty() && layout != "shared" && !layout.starts_with('$'),
            "the ledger's home has no slot of its own ({layout:?})"
        );
        let cluster = self.cluster.as_ref().context("a cluster deployment")?;
        let home = self.redis.port();
        let mut elsewhere = None;
        for tag in layout.split(' ') {
            let key = format!("{{{tag}}}:due");
            if cluster.master_of(&key)? != home {
                elsewhere = Some(key);
                break;
            }
        }
        let key = elsewhere.context("a partition on another master than the home's")?;
        self.power_loss_of_master_of(key).await
    }

    /// The Redis primary's host loses power: writes it had not yet made durable are gone
    /// (the last second, with `everysec`). A lone primary then boots from what is left. Under
    /// Sentinel the host stays down until the sentinels have promoted the replica, then comes
    /// back and rejoins as a replica, as an operator's rebooted host would. Returns the bytes
    /// of AOF lost.
    pub async fn power_loss_of_primary(&mut self) -> anyhow::Result<u64> {
        if self.cluster.is_some() {
            return self
                .power_loss_of_master_of(format!("{{{PREFIX}}}:due"))
                .await;
        }
        let Some(sentinels) = &self.sentinels else {
            let lost = self.redis.power_loss(POWER_LOSS_WINDOW)?;
            self.redis.start_again()?;
            return Ok(lost.bytes_lost);
        };

        let primary_port = sentinels.primary_port()?;
        let failover = sentinels.watch_failover()?;
        let replica = self
            .replica
            .as_mut()
            .expect("sentinel setups have a replica");
        let primary = if self.redis.port() == primary_port {
            &mut self.redis
        } else {
            replica
        };
        let lost = primary.power_loss(POWER_LOSS_WINDOW)?;
        let new_primary =
            tokio::task::spawn_blocking(move || failover.wait(Duration::from_secs(30))).await??;
        primary.rejoin_as_replica_of(new_primary)?;
        Ok(lost.bytes_lost)
    }

    /// An operator moves the ledger's slot to another master of the cluster while everything
    /// runs (`reelq cluster move-slot`, [`reelq_queue::move_ledger_slot`]): adding a master,
    /// or rebalancing. A ledger whose home has a slot of its own has its first partition's
    /// slot moved. Returns how many keys moved; fails unless the slot is on the other master
    /// afterwards.
    pub async fn move_ledger_slot(&mut self) -> anyhow::Result<u64> {
        let cluster = self.cluster.as_ref().context("a cluster deployment")?;
        let layout = self
            .redis
            .command_text(&["GET", &format!("{{{PREFIX}}}:layout")])?;
        let (which, key) = match layout.split(' ').next() {
            Some(tag) if !tag.is_empty() && tag != "shared" && !tag.starts_with('$') => (
                reelq_queue::LedgerSlot::Partition(0),
                format!("{{{tag}}}:due"),
            ),
            _ => (reelq_queue::LedgerSlot::Home, format!("{{{PREFIX}}}:due")),
        };
        let from = cluster.master_of(&key)?;
        let mut to = None;
        for node in cluster.nodes.iter().chain([&self.redis]) {
            let role = node.command_text(&["INFO", "replication"])?;
            if node.port() != from && role.contains("role:master") {
                to = Some(node.port());
                break;
            }
        }
        let to = to.context("another master")?;
        let config = LedgerConfig {
            durability: Durability::Replicas { n: 1 },
            ..LedgerConfig::new(&self.redis_url, PREFIX)
        };
        let moved =
            reelq_queue::move_ledger_slot(&config, which, &format!("127.0.0.1:{to}")).await?;
        let now = cluster.master_of(&key)?;
        anyhow::ensure!(now == to, "the slot is on {now}, not {to}: {moved:?}");
        Ok(moved.keys_moved)
    }

    /// A stale replica promoted: the primary's host loses power and the sentinels promote
    /// the replica; the old host boots again as the primary it was, holding its cut AOF; and
    /// before the sentinels have made it a replica (they wait several seconds) the new
    /// primary's host loses power too, so the sentinels promote the stale old host. Writes
    /// the replica had acknowledged and the old host had not fsynced are gone from the
    /// ledger. The second host then rejoins as a replica. Returns the AOF bytes lost.
    pub async fn stale_promotion(&mut self) -> anyhow::Result<u64> {
        const WINDOW: Duration = Duration::from_secs(1);
        let sentinels = self
            .sentinels
            .as_ref()
            .context("a stale promotion needs sentinels")?;
        let replica = self
            .replica
            .as_mut()
            .context("a stale promotion needs a replica")?;
        let (old, new) = if self.redis.port() == sentinels.primary_port()? {
            (&mut self.redis, replica)
        } else {
            (replica, &mut self.redis)
        };
        let failover = sentinels.watch_failover()?;
        let mut lost = old.power_loss(WINDOW)?.bytes_lost;
        let promoted =
            tokio::task::spawn_blocking(move || failover.wait(Duration::from_secs(30))).await??;
        anyhow::ensure!(promoted == new.port(), "the replica was promoted");
        let failover = sentinels.watch_failover()?;
        old.start_again_as_primary()?;
        lost += new.power_loss(WINDOW)?.bytes_lost;
        let promoted =
            tokio::task::spawn_blocking(move || failover.wait(Duration::from_secs(30))).await??;
        anyhow::ensure!(promoted == old.port(), "the stale old primary was promoted");
        new.rejoin_as_replica_of(promoted)?;
        Ok(lost)
    }

    /// An operator's backup of the primary, for [`Deployment::restore_backup`].
    pub fn backup(&self) -> anyhow::Result<reelq_testkit::Backup> {
        self.redis.backup()
    }

    /// An operator restores `backup` on the primary while clients run (a lone primary:
    /// [`super::RedisSetup::Always`]); writes made since are gone.
    pub fn restore_backup(&mut self, backup: &reelq_testkit::Backup) -> anyhow::Result<()> {
        anyhow::ensure!(
            self.replica.is_none(),
            "a restore is made on a lone primary"
        );
        self.redis.restore(backup)
    }
}
