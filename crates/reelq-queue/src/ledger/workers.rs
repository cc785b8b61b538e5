//! Worker replicas announce themselves: each sends a heartbeat with what it serves, kept
//! for a few heartbeats, so operators can list the live ones (`reelq workers`) and a dead
//! one drops off by the clock alone.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::now_unix_ms;
use crate::{Ledger, QueueError};

/// A worker replica as its last heartbeat described it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkerInfo {
    pub name: String,
    /// `all` (claims and steps) or `callbacks` (receives only).
    pub role: String,
    pub version: String,
    /// The provider accounts it claims for.
    pub accounts: Vec<String>,
    /// Most steps it runs at once.
    pub concurrency: usize,
    pub started_ms: u64,
    /// When its last heartbeat was sent (unix ms, its host's clock).
    #[serde(default)]
    pub seen_ms: u64,
    /// The ledger schema its release writes ([`crate::LEDGER_SCHEMA`]; releases before
    /// schema 3 did not say, and wrote 2).
    #[serde(default = "schema_before_it_was_sent")]
    pub ledger_schema: u32,
}

fn schema_before_it_was_sent() -> u32 {
    2
}

impl Ledger {
    /// Announces `worker` as live for `ttl` (`P worker:{name}`, expiring) and indexes its name
    /// (`P workers`, name -> last seen).
    pub async fn heartbeat(&self, worker: &WorkerInfo, ttl: Duration) -> Result<(), QueueError> {
        let seen = WorkerInfo {
            seen_ms: now_unix_ms(),
            ..worker.clone()
        };
        let info = serde_json::to_string(&seen).expect("a worker's info serializes");
        let _: () = redis::pipe()
            .cmd("SET")
            .arg(self.home_key(format!("worker:{}", worker.name)))
            .arg(info)
            .arg("PX")
            .arg(ttl.as_millis() as u64)
            .ignore()
            .cmd("ZADD")
            .arg(self.home_key("workers"))
            .arg(seen.seen_ms)
            .arg(&worker.name)
            .ignore()
            .query_async(&mut self.home_conn().await?)
            .await?;
        Ok(())
    }

    /// Takes a worker off the list at once (a clean shutdown; a dead one expires).
    pub async fn forget_worker(&self, name: &str) -> Result<(), QueueError> {
        let _: () = redis::pipe()
            .cmd("DEL")
            .arg(self.home_key(format!("worker:{name}")))
            .ignore()
            .cmd("ZREM")
            .arg(self.home_key("workers"))
            .arg(name)
            .ignore()
            .query_async(&mut self.home_conn().await?)
            .await?;
        Ok(())
    }

    /// The live workers, most recently seen first; names whose heartbeat expired are
    /// dropped from the index on the way.
    pub async fn workers(&self) -> Result<Vec<WorkerInfo>, QueueError> {
        let mut conn = self.home_conn().await?;
        let names: Vec<String> = redis::cmd("ZREVRANGE")
            .arg(self.home_key("workers"))
            .arg(0)
            .arg(-1)
            .query_async(&mut conn)
            .await?;
        if names.is_empty() {
            return Ok(Vec::new());
        }
        let mut get = redis::cmd("MGET");
        for name in &names {
            get.arg(self.home_key(format!("worker:{name}")));
        }
        let infos: Vec<Option<String>> = get.query_async(&mut conn).await?;
        let mut live = Vec::new();
        let mut gone = redis::cmd("ZREM");
        gone.arg(self.home_key("workers"));
        let mut any_gone = false;
        for (name, info) in names.iter().zip(infos) {
            match info.and_then(|info| serde_json::from_str::<WorkerInfo>(&info).ok()) {
                Some(info) => live.push(info),
                None => {
                    gone.arg(name);
                    any_gone = true;
                }
            }
        }
        if any_gone {
            let _: () = gone.query_async(&mut conn).await?;
        }
        Ok(live)
    }
}
