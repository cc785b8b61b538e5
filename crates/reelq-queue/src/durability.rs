//! How a ledger write is made durable before anyone acts on it, and how reelq checks that the
//! Redis it runs on can keep that promise.
//!
//! Two writes must survive a Redis host losing power: an enqueue before its producer is told
//! the jobs exist, and a job's `submitting` record before the paid create call goes out (lost,
//! the job reads `queued` again and a second worker pays a second time). Redis acknowledges a
//! write before it is on disk unless told otherwise, so one of two modes is required:
//!
//! | mode         | what proves a write durable                          | what reelq checks           |
//! |--------------|------------------------------------------------------|-----------------------------|
//! | `always`     | `appendfsync always`: the primary fsyncs before it answers | `appendonly yes`, `appendfsync always` |
//! | `replicas:N` | `WAIT N timeout` on the socket that wrote: N replicas hold it | `appendonly yes`, N replicas connected (warned) |
//!
//! Both also need `maxmemory-policy noeviction`. Anything weaker refuses to start unless the
//! operator sets `allow_unsafe_redis`. `WAITAOF` (Redis 7.2) would prove the local fsync too; the
//! Redis this project is tested against (7.0) lacks it, so it is not used.

use std::{collections::HashMap, str::FromStr, time::Duration};

use redis::aio::ConnectionLike;

use crate::QueueError;

/// What makes a ledger write durable; see the module doc.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// The primary fsyncs every write before answering (`appendfsync always`).
    Always,
    /// `n` replicas acknowledge a write (`WAIT`) before reelq acts on it.
    Replicas { n: u32 },
}

impl FromStr for Durability {
    type Err = String;

    fn from_str(mode: &str) -> Result<Self, Self::Err> {
        let wrong =
            || format!("durability {mode:?}: expected \"always\" or \"replicas:N\" (N >= 1)");
        if mode == "always" {
            return Ok(Durability::Always);
        }
        let n: u32 = mode
            .strip_prefix("replicas:")
            .and_then(|n| n.parse().ok())
            .ok_or_else(wrong)?;
        if n == 0 {
            return Err(wrong());
        }
        Ok(Durability::Replicas { n })
    }
}

impl std::fmt::Display for Durability {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Durability::Always => f.write_str("always"),
            Durability::Replicas { n } => write!(f, "replicas:{n}"),
        }
    }
}

impl<'de> serde::Deserialize<'de> for Durability {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let mode = String::deserialize(deserializer)?;
        mode.parse().map_err(serde::de::Error::custom)
    }
}

/// What a look at the server found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DurabilityCheck {
    /// Settings that break the promise: reelq refuses to run on them unless allowed.
    pub problems: Vec<String>,
    /// What could not be verified, or may stall work without losing any.
    pub warnings: Vec<String>,
    /// Fewer replicas connected than `replicas:N` needs: durable writes wait for them.
    pub replicas_missing: bool,
}

impl DurabilityCheck {
    pub fn is_safe(&self) -> bool {
        self.problems.is_empty()
    }

    /// Adds another master's check (the home's, where it has a slot of its own): safe only if
    /// both are.
    pub(crate) fn merge(&mut self, other: DurabilityCheck) {
        self.problems.extend(other.problems);
        self.warnings.extend(other.warnings);
        self.replicas_missing |= other.replicas_missing;
    }
}

/// Reads the server's persistence, memory and replication settings and compares them with
/// `durability`. `CONFIG GET` is tried first; where a managed service refuses it, `INFO` says
/// what it can and the rest becomes a warning.
pub(crate) async fn check(
    conn: &mut impl ConnectionLike,
    durability: Durability,
) -> Result<DurabilityCheck, QueueError> {
    let mut report = DurabilityCheck::default();
    let info: String = redis::cmd("INFO")
        .arg("persistence")
        .arg("memory")
        .arg("replication")
        .query_async(conn)
        .await?;
    let info = info_fields(&info);
    let config: Result<HashMap<String, String>, _> = redis::cmd("CONFIG")
        .arg("GET")
        .arg("appendonly")
        .arg("appendfsync")
        .query_async(conn)
        .await;
    let config = match config {
        Ok(config) => config,
        Err(err) => {
            report.warnings.push(format!(
                "CONFIG GET refused ({err}): appendfsync cannot be read, \
                 durability = \"{durability}\" is taken on trust"
            ));
            HashMap::new()
        }
    };
    let aof_on = match config.get("appendonly") {
        Some(appendonly) => appendonly == "yes",
        None => info.get("aof_enabled").is_some_and(|v| *v == "1"),
    };
    if !aof_on {
        report.problems.push(
            "appendonly is not yes: a Redis restart loses acknowledged jobs and submit records, \
             so jobs are lost and paid generations submitted twice"
                .to_owned(),
        );
    }
    match info.get("maxmemory_policy").copied() {
        Some("noeviction") => {}
        policy => report.problems.push(format!(
            "maxmemory-policy is {}: Redis may evict job records under memory pressure",
            policy.unwrap_or("unknown")
        )),
    }
    match durability {
        Durability::Always => match config.get("appendfsync").map(String::as_str) {
            Some("always") | None => {}
            Some(other) => report.problems.push(format!(
                "appendfsync is {other}, not always: a host power loss drops up to a second of \
                 acknowledged writes, so jobs are lost and paid generations submitted twice \
                 (set appendfsync always, or run replicas and durability = \"replicas:N\")"
            )),
        },
        Durability::Replicas { n } => {
            let connected: u32 = info
                .get("connected_slaves")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            if info.get("role").copied() != Some("master") {
                report
                    .problems
                    .push("the server is not a primary (role is not master)".to_owned());
            }
            if connected < n {
                report.replicas_missing = true;
                report.warnings.push(format!(
                    "{connected} replica(s) connected, durability = \"replicas:{n}\" needs {n}: \
                     submits and enqueues wait until they are"
                ));
            }
        }
    }
    Ok(report)
}

/// `WAIT n timeout` on the socket that made the write: proof that `n` replicas hold it.
pub(crate) async fn wait_for_replicas(
    conn: &mut impl ConnectionLike,
    n: u32,
    timeout: Duration,
) -> Result<(), QueueError> {
    let acked: u32 = redis::cmd("WAIT")
        .arg(n)
        .arg(timeout.as_millis().max(1) as u64)
        .query_async(conn)
        .await?;
    if acked < n {
        return Err(QueueError::NotDurable { acked, wanted: n });
    }
    Ok(())
}

fn info_fields(info: &str) -> HashMap<&str, &str> {
    info.lines()
        .filter_map(|line| line.trim_end().split_once(':'))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_parse_and_print() {
        for (text, mode) in [
            ("always", Durability::Always),
            ("replicas:1", Durability::Replicas { n: 1 }),
            ("replicas:3", Durability::Replicas { n: 3 }),
        ] {
            assert_eq!(text.parse::<Durability>(), Ok(mode));
            assert_eq!(mode.to_string(), text);
        }
        for wrong in ["everysec", "replicas:0", "replicas:", "replicas:x", ""] {
            let err = wrong.parse::<Durability>().unwrap_err();
            assert!(
                err.contains("expected \"always\" or \"replicas:N\""),
                "{err}"
            );
        }
    }
}
