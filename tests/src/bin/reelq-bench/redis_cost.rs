//! `redis-cost`: the whole lifecycle's Redis commands, CPU, bytes and memory per job, and the
//! snapshots and waits the other sections measure with.

use super::*;

/// One `INFO` snapshot (commands run inside Lua scripts count as calls too): calls per command, network bytes, memory.
pub(crate) struct RedisStats {
    pub(crate) calls: HashMap<String, u64>,
    /// Microseconds Redis spent per command name (a script's own time includes its calls).
    pub(crate) usec: HashMap<String, u64>,
    pub(crate) net_bytes: u64,
    pub(crate) used_memory: u64,
    /// Redis's own CPU time (user + system), seconds.
    pub(crate) cpu_s: f64,
}

pub(crate) async fn redis_stats(
    conn: &mut redis::aio::MultiplexedConnection,
) -> anyhow::Result<RedisStats> {
    let info: String = redis::cmd("INFO")
        .arg("everything")
        .query_async(conn)
        .await?;
    let field = |name: &str| {
        info.lines()
            .find_map(|line| line.strip_prefix(&format!("{name}:")))
            .and_then(|value| value.trim().parse::<u64>().ok())
            .unwrap_or(0)
    };
    let cmdstat = |key: &str| -> HashMap<String, u64> {
        info.lines()
            .filter_map(|line| {
                let (name, rest) = line.strip_prefix("cmdstat_")?.split_once(':')?;
                let value = rest
                    .split(',')
                    .find_map(|pair| pair.strip_prefix(key)?.strip_prefix('='))?
                    .parse()
                    .ok()?;
                Some((name.to_owned(), value))
            })
            .collect()
    };
    let (calls, usec) = (cmdstat("calls"), cmdstat("usec"));
    let cpu = |name: &str| {
        info.lines()
            .find_map(|line| line.strip_prefix(&format!("{name}:")))
            .and_then(|value| value.trim().parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    Ok(RedisStats {
        usec,
        cpu_s: cpu("used_cpu_user") + cpu("used_cpu_sys"),
        calls,
        net_bytes: field("total_net_input_bytes") + field("total_net_output_bytes"),
        used_memory: field("used_memory"),
    })
}

/// Enqueues `jobs` jobs of the kind `jobs_of` names (`reelq-bench redis-cost --jobs-of`).
async fn enqueue_jobs_of(
    deployment: &Deployment,
    jobs_of: &str,
    jobs: usize,
) -> anyhow::Result<Vec<reelq_core::JobId>> {
    let named = r#""provider":"evolink","model":"veo-3.1-fast-generate-preview""#;
    let which = match jobs_of {
        "kie" => return Ok(deployment.enqueue_manifest(&prompts("cost", jobs)).await),
        "veo" => named,
        _ => r#""route":"veo-3.1-fast""#,
    };
    if jobs_of == "veo-route-fallback" {
        // EvoLink paused past the route's patience: every job moves on to fal once.
        let evolink = "evolink".parse()?;
        deployment
            .ledger
            .pause_account(&evolink, Duration::from_secs(3600))
            .await?;
    }
    let manifest: String = prompts("cost", jobs)
        .iter()
        .map(|prompt| format!("{{{which},\"prompt\":\"{prompt}\",\"duration_s\":8}}\n"))
        .collect();
    Ok(deployment.client.enqueue_manifest(&manifest).await?.job_ids)
}

pub(crate) async fn redis_cost(
    worker_bin: PathBuf,
    jobs: usize,
    setup: RedisSetup,
    jobs_of: &str,
    out: PathBuf,
) -> anyhow::Result<()> {
    let deployment = Deployment::start_with(worker_bin, Duration::ZERO, setup).await;
    // The ledger's master first (the home's, where it has a slot of its own), then the
    // cluster's other masters: their commands and CPU count too (the jobs' partition, the
    // cluster bus).
    let mut masters = vec![
        redis::Client::open(deployment.redis.url())?
            .get_multiplexed_async_connection()
            .await?,
    ];
    for node in deployment.cluster.iter().flat_map(|cluster| &cluster.nodes) {
        if node
            .command_text(&["INFO", "replication"])?
            .contains("role:master")
        {
            masters.push(
                redis::Client::open(node.url())?
                    .get_multiplexed_async_connection()
                    .await?,
            );
        }
    }
    let mut before = Vec::new();
    for conn in &mut masters {
        before.push(redis_stats(conn).await?);
    }
    let job_ids = enqueue_jobs_of(&deployment, jobs_of, jobs).await?;
    let started = std::time::Instant::now();
    let _worker = deployment.spawn_worker_process("cost");
    settled_count(&deployment, job_ids.len()).await?;
    let elapsed = started.elapsed();
    let mut after = Vec::new();
    for conn in &mut masters {
        after.push(redis_stats(conn).await?);
    }
    let observer = ["zcard", "info"];
    let mut calls: HashMap<String, u64> = HashMap::new();
    for (before, after) in before.iter().zip(&after) {
        for (name, total) in &after.calls {
            if !observer.contains(&name.as_str()) {
                *calls.entry(name.clone()).or_default() +=
                    total - before.calls.get(name).copied().unwrap_or(0);
            }
        }
    }
    let mut by_command: Vec<(String, u64)> =
        calls.into_iter().filter(|(_, calls)| *calls > 0).collect();
    by_command.sort_by_key(|(_, calls)| std::cmp::Reverse(*calls));
    let per_job = |total: u64| total as f64 / jobs as f64;
    let worker_calls: u64 = by_command.iter().map(|(_, calls)| calls).sum();
    let sum = |f: &dyn Fn(&RedisStats, &RedisStats) -> f64| -> f64 {
        before.iter().zip(&after).map(|(b, a)| f(b, a)).sum()
    };
    let net_bytes = sum(&|b, a| (a.net_bytes - b.net_bytes) as f64) as u64;
    let memory = sum(&|b, a| a.used_memory as f64 - b.used_memory as f64);
    let script_us = |stats: &RedisStats| stats.usec.get("evalsha").copied().unwrap_or(0);
    let script_us_per_job = per_job(sum(&|b, a| (script_us(a) - script_us(b)) as f64) as u64);
    let cpu_by_master: Vec<f64> = before
        .iter()
        .zip(&after)
        .map(|(b, a)| (a.cpu_s - b.cpu_s) * 1e6 / jobs as f64)
        .collect();
    let cpu_us_per_job: f64 = cpu_by_master.iter().sum();
    let figures = json!({
        "section": "redis_cost",
        "setup": format!("{setup:?}"),
        "jobs_of": jobs_of,
        "redis_cpu_us_per_job": cpu_us_per_job,
        "redis_cpu_us_per_job_by_master": cpu_by_master,
        "redis_script_us_per_job": script_us_per_job,
        "jobs": jobs,
        "jobs_per_s": jobs as f64 / elapsed.as_secs_f64(),
        "commands_per_job": per_job(worker_calls),
        "commands_per_job_by_name": by_command.iter().map(|(name, calls)| (name.clone(), per_job(*calls))).collect::<HashMap<_, _>>(),
        "net_bytes_per_job": per_job(net_bytes),
        "memory_bytes_per_finished_job": memory / jobs as f64,
    });
    std::fs::write(&out, serde_json::to_string_pretty(&figures)?)
        .with_context(|| format!("writing {}", out.display()))?;
    let breakdown: Vec<String> = by_command
        .iter()
        .map(|(name, calls)| format!("{name} {:.2}", per_job(*calls)))
        .collect();
    println!(
        "redis cost: {jobs} jobs ({jobs_of}), 1 worker process: {:.0} jobs/s end to end, {:.2} commands/job ({}), \
         {:.0} network bytes/job, {:.0} bytes of Redis memory per finished job; Redis CPU {:.0} us/job \
         ({:.0} us inside scripts; by master, the ledger's first: {})",
        jobs as f64 / elapsed.as_secs_f64(),
        per_job(worker_calls),
        breakdown.join(", "),
        per_job(net_bytes),
        memory / jobs as f64,
        cpu_us_per_job,
        script_us_per_job,
        cpu_by_master
            .iter()
            .map(|us| format!("{us:.0}"))
            .collect::<Vec<_>>()
            .join(", "),
    );
    Ok(())
}

/// Waits until `jobs` jobs are in `state` (ZCARD polls only).
pub(crate) async fn wait_for_state(
    deployment: &Deployment,
    state: JobState,
    jobs: usize,
) -> anyhow::Result<()> {
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    loop {
        tick.tick().await;
        let counts = deployment.ledger.state_counts().await?;
        let n = counts
            .iter()
            .find(|(s, _)| *s == state)
            .map_or(0, |(_, n)| *n);
        if n as usize >= jobs {
            return Ok(());
        }
    }
}

/// The benchmark's own commands between two snapshots (state counts and INFO).
pub(crate) fn observer_calls(before: &RedisStats, after: &RedisStats) -> u64 {
    ["zcard", "info"]
        .iter()
        .map(|name| after.calls.get(*name).unwrap_or(&0) - before.calls.get(*name).unwrap_or(&0))
        .sum()
}

/// Waits until `jobs` jobs have ended. Watched with ZCARD alone (a few per second), so the
/// observer costs Redis next to nothing and its commands can be taken out exactly.
pub(crate) async fn settled_count(deployment: &Deployment, jobs: usize) -> anyhow::Result<()> {
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    loop {
        tick.tick().await;
        let counts = deployment.ledger.state_counts().await?;
        let settled: u64 = counts
            .iter()
            .filter(|(state, _)| state.is_terminal())
            .map(|(_, n)| n)
            .sum();
        if settled as usize >= jobs {
            return Ok(());
        }
    }
}

/// What a lifecycle run cost Redis, per job: commands (as INFO counts them, inside scripts
/// too), CPU time, network bytes, and the memory its records still hold at the end.
#[derive(Clone, Copy)]
pub(crate) struct RedisCostPerJob {
    pub(crate) commands: f64,
    pub(crate) cpu_us: f64,
    pub(crate) net_bytes: f64,
    pub(crate) memory_bytes: f64,
}

/// Empties Redis between runs, leaving what a first connect writes: the ledger's schema
/// (without it a ledger reads as one of an older release, whose workers need the old,
/// bigger record format).
pub(crate) async fn empty_redis(
    conn: &mut redis::aio::MultiplexedConnection,
) -> anyhow::Result<()> {
    let _: () = redis::cmd("FLUSHALL").query_async(conn).await?;
    let _: () = redis::cmd("SET")
        .arg(format!("{{{PREFIX}}}:schema"))
        .arg(reelq_queue::LEDGER_SCHEMA)
        .query_async(conn)
        .await?;
    Ok(())
}

/// Runs `lifecycle` (enqueue and process `jobs`) between two `INFO` snapshots.
pub(crate) async fn redis_cost_of(
    conn: &mut redis::aio::MultiplexedConnection,
    jobs: usize,
    lifecycle: impl Future<Output = anyhow::Result<f64>>,
) -> anyhow::Result<(f64, RedisCostPerJob)> {
    empty_redis(conn).await?;
    let before = redis_stats(conn).await?;
    let jobs_per_s = lifecycle.await?;
    let after = redis_stats(conn).await?;
    let total = |stats: &RedisStats| stats.calls.values().sum::<u64>();
    let per_job = |delta: f64| delta / jobs as f64;
    let cost = RedisCostPerJob {
        commands: per_job(
            (total(&after) - total(&before)) as f64 - observer_calls(&before, &after) as f64,
        ),
        cpu_us: per_job((after.cpu_s - before.cpu_s) * 1e6),
        net_bytes: per_job((after.net_bytes - before.net_bytes) as f64),
        memory_bytes: per_job(after.used_memory as f64 - before.used_memory as f64),
    };
    Ok((jobs_per_s, cost))
}
