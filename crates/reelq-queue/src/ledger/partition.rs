//! Partitioning a one-slot ledger (`reelq migrate --partitions N`): its jobs spread over N
//! partitions from now on, without moving a key.
//!
//! The jobs and batches made before stay where they are, in the home's slot, as the ledger's
//! *legacy* partition: a job's partition is still derived from its id, by when it was made
//! (`P layout_since`) and then its low bits (`JobId::partition`), so every existing id and
//! callback URL resolves as before, every batch stays whole, and nothing is copied. The
//! switch is one transaction at the home (`P layout`, `P layout_since`); before it, the
//! settings every slot keeps a copy of are written into each new partition. A client that
//! read the layout before the switch is refused when it enqueues (`enqueue.lua`'s
//! `refuse_in_legacy`) until it is restarted, so no new job lands in the legacy partition;
//! a worker that has not restarted goes on with the legacy partition's jobs alone. Ids made
//! by clients of the new layout are dated no earlier than `since`, which is set a minute past
//! the switch so that an id a producer with a fast clock made just before it is still taken
//! for a legacy one.
//!
//! Interrupted before the switch, it is run again from the start; after it, running it
//! again checks the ledger and changes nothing.

use std::time::Duration;

use reelq_core::{JobId, JobState};

use super::{LEDGER_SCHEMA, Ledger, LedgerConfig, Part, slots};
use crate::{QueueError, RedisTarget, keys};

/// How far past the switch `P layout_since` is set: more than any producer's clock is ahead.
const CLOCK_MARGIN: Duration = Duration::from_secs(60);

/// How many of the existing jobs are looked up through the new layout after the switch.
const CHECKED_JOBS: usize = 200;

/// What partitioning did and found.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Partitioning {
    pub partitions: u16,
    /// The partitions' hash tags, in order.
    pub tags: Vec<String>,
    /// Jobs made before this (unix ms) are in the legacy partition.
    pub since_ms: u64,
    /// The ledger had been partitioned so already: nothing was written.
    pub already: bool,
    /// How long the ledger's clients were refused enqueues or waited for the switch: the
    /// switch's own transaction (producers that read the layout before must still restart).
    pub switch_ms: u64,
    /// Jobs per state before and after, read through each layout (equal unless jobs moved
    /// meanwhile).
    pub before: Vec<(JobState, u64)>,
    pub after: Vec<(JobState, u64)>,
    /// Existing jobs looked up through the new layout: every one's record and callback
    /// binding found.
    pub jobs_checked: usize,
    /// Workers live at the switch: each must be restarted to claim from the new partitions.
    pub workers_to_restart: Vec<String>,
}

/// Partitions the one-slot ledger `config` names into `partitions` partitions (or checks one
/// partitioned so already).
pub async fn partition_ledger(
    config: &LedgerConfig,
    partitions: u16,
) -> Result<Partitioning, QueueError> {
    if !(2..=slots::MAX_PARTITIONS).contains(&partitions) {
        return Err(QueueError::Partitioning(format!(
            "a ledger is partitioned into 2 to {} partitions, not {partitions}",
            slots::MAX_PARTITIONS
        )));
    }
    let before = Ledger::connect(config).await?;
    if before.partitions() > 1 || before.split() {
        return match before.legacy_since() {
            Some(since) if before.partitions() == partitions => {
                let tags = layout_tags(&before).await?;
                let counts = before.state_counts().await?;
                let jobs_checked = check_existing(&before, &before, since).await?;
                Ok(Partitioning {
                    partitions,
                    tags,
                    since_ms: since,
                    already: true,
                    switch_ms: 0,
                    before: counts.clone(),
                    after: counts,
                    jobs_checked,
                    workers_to_restart: Vec::new(),
                })
            }
            _ => Err(QueueError::Partitioning(format!(
                "this ledger already has a layout of {} partitions; a one-slot ledger is \
                 partitioned once",
                before.partitions()
            ))),
        };
    }
    if before.schema().await? < LEDGER_SCHEMA {
        return Err(QueueError::Partitioning(
            "move the ledger to this release's record format first (reelq migrate)".into(),
        ));
    }
    let counts_before = before.state_counts().await?;
    let tags = slots::partition_tags(config, &before.home, partitions).await;
    let target: RedisTarget = config.redis_url.parse()?;
    for (index, tag) in tags.iter().enumerate() {
        let part = Part::connect(&target, config, index as u16, tag).await?;
        copy_settings(&before, &part).await?;
    }
    // The switch, on a connection of its own (a WATCH holds for the connection that sent
    // it): made only if no other migration switched the layout since it was read.
    let mut home = before
        .home_client()
        .await?
        .get_multiplexed_async_connection()
        .await?;
    let _: () = redis::cmd("WATCH")
        .arg(before.home_key("layout"))
        .query_async(&mut home)
        .await?;
    let (layout, (secs, micros)): (Option<String>, (u64, u64)) = redis::pipe()
        .cmd("GET")
        .arg(before.home_key("layout"))
        .cmd("TIME")
        .query_async(&mut home)
        .await?;
    let since_ms = secs * 1000 + micros / 1000 + CLOCK_MARGIN.as_millis() as u64;
    let switched = std::time::Instant::now();
    let made: redis::Value = match layout.as_deref() {
        None | Some("shared") => {
            redis::pipe()
                .atomic()
                .cmd("SET")
                .arg(before.home_key("layout_since"))
                .arg(since_ms)
                .ignore()
                .cmd("SET")
                .arg(before.home_key("layout"))
                .arg(tags.join(" "))
                .ignore()
                .query_async(&mut home)
                .await?
        }
        Some(_) => redis::Value::Nil,
    };
    if made == redis::Value::Nil {
        let _: () = redis::cmd("UNWATCH").query_async(&mut home).await?;
        return Err(QueueError::Partitioning(
            "another migration switched the layout first: run this again to check it".into(),
        ));
    }
    before.wait_for_home_replicas(&mut home).await?;
    let switch_ms = switched.elapsed().as_millis() as u64;
    let workers_to_restart = before
        .workers()
        .await?
        .into_iter()
        .map(|worker| worker.name)
        .collect();
    let after = Ledger::connect(config).await?;
    let jobs_checked = check_existing(&before, &after, since_ms).await?;
    Ok(Partitioning {
        partitions,
        tags,
        since_ms,
        already: false,
        switch_ms,
        before: counts_before,
        after: after.state_counts().await?,
        jobs_checked,
        workers_to_restart,
    })
}

/// The partitions' tags as the home's layout names them.
async fn layout_tags(ledger: &Ledger) -> Result<Vec<String>, QueueError> {
    let layout: Option<String> = redis::cmd("GET")
        .arg(ledger.home_key("layout"))
        .query_async(&mut ledger.home_conn().await?)
        .await?;
    Ok(layout
        .unwrap_or_default()
        .split(' ')
        .map(str::to_owned)
        .collect())
}

/// Writes a new partition's copies of the settings every slot keeps (`keys::EVERY_SLOT`:
/// record format, retention, tenants' weights and caps) from the home's.
async fn copy_settings(ledger: &Ledger, part: &Part) -> Result<(), QueueError> {
    let mut home = ledger.home_conn().await?;
    let mut pipe = redis::pipe();
    pipe.atomic();
    for name in ["schema", "retention_ms"] {
        debug_assert!(keys::EVERY_SLOT.contains(&name));
        let value: Option<String> = redis::cmd("GET")
            .arg(ledger.home_key(name))
            .query_async(&mut home)
            .await?;
        pipe.cmd("DEL").arg(part.key(name)).ignore();
        if let Some(value) = value {
            pipe.cmd("SET").arg(part.key(name)).arg(value).ignore();
        }
    }
    for name in ["tenant_weights", "tenant_limits"] {
        debug_assert!(keys::EVERY_SLOT.contains(&name));
        let fields: Vec<(String, String)> = redis::cmd("HGETALL")
            .arg(ledger.home_key(name))
            .query_async(&mut home)
            .await?;
        pipe.cmd("DEL").arg(part.key(name)).ignore();
        if !fields.is_empty() {
            pipe.cmd("HSET").arg(part.key(name)).arg(fields).ignore();
        }
    }
    let _: () = pipe.query_async(&mut part.conn().await?).await?;
    Ok(())
}

/// Looks the newest existing jobs (up to [`CHECKED_JOBS`], made before `since_ms`, as
/// `before` lists them) up through `after`'s layout: each record, and each callback's
/// binding, must be found. Returns how many were checked.
async fn check_existing(
    before: &Ledger,
    after: &Ledger,
    since_ms: u64,
) -> Result<usize, QueueError> {
    let mut ids: Vec<JobId> = Vec::new();
    for state in JobState::ALL {
        ids.extend(before.jobs_in_state(state, CHECKED_JOBS).await?);
    }
    ids.retain(|id| id.created_ms() < since_ms);
    ids.truncate(CHECKED_JOBS);
    let found = after.jobs(&ids).await?;
    if found.len() != ids.len() {
        return Err(QueueError::Partitioning(format!(
            "{} of {} existing jobs are not found through the new layout",
            ids.len() - found.len(),
            ids.len()
        )));
    }
    for id in &ids {
        if after.callback_binding(*id).await?.is_none() {
            return Err(QueueError::Partitioning(format!(
                "job {id}'s callbacks would not find it through the new layout"
            )));
        }
    }
    Ok(ids.len())
}
