//! `reelq-bench`: benchmark sections that need a whole deployment (see `scripts/bench`).
//! `redis-cost`: the whole lifecycle's Redis commands, bytes and memory per job.
//! `callback-latency`: N jobs whose only way forward is the provider's callback (scheduled
//! polls are ten minutes out); prints callback-received -> video-stored p50/p99 from the
//! ledger's event log and writes them as JSON.

use std::{collections::HashMap, path::PathBuf, time::Duration};

use anyhow::Context;
use clap::{Parser, Subcommand};
use reelq_e2e::{Deployment, prompts};
use serde_json::json;

#[derive(Parser)]
struct Args {
    #[command(subcommand)]
    section: Section,
}

#[derive(Subcommand)]
enum Section {
    /// N jobs through one worker process against a simulator that finishes at once: the
    /// whole lifecycle's Redis commands, bytes and memory per job, and jobs per second.
    RedisCost {
        #[arg(long)]
        worker_bin: PathBuf,
        #[arg(long, default_value_t = 2000)]
        jobs: usize,
        #[arg(long)]
        out: PathBuf,
    },
    CallbackLatency {
        /// The reelq-worker binary to run.
        #[arg(long)]
        worker_bin: PathBuf,
        #[arg(long, default_value_t = 200)]
        jobs: usize,
        #[arg(long, default_value_t = 2)]
        workers: usize,
        /// Where to write the JSON figures.
        #[arg(long)]
        out: PathBuf,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Args::parse().section {
        Section::CallbackLatency {
            worker_bin,
            jobs,
            workers,
            out,
        } => callback_latency(worker_bin, jobs, workers, out).await,
        Section::RedisCost {
            worker_bin,
            jobs,
            out,
        } => redis_cost(worker_bin, jobs, out).await,
    }
}

/// One `INFO` snapshot (commands run inside Lua scripts count as calls too): calls per command, network bytes, memory.
struct RedisStats {
    calls: HashMap<String, u64>,
    net_bytes: u64,
    used_memory: u64,
}

async fn redis_stats(conn: &mut redis::aio::MultiplexedConnection) -> anyhow::Result<RedisStats> {
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
    let calls = info
        .lines()
        .filter_map(|line| {
            let (name, rest) = line.strip_prefix("cmdstat_")?.split_once(':')?;
            let calls = rest
                .strip_prefix("calls=")?
                .split(',')
                .next()?
                .parse()
                .ok()?;
            Some((name.to_owned(), calls))
        })
        .collect();
    Ok(RedisStats {
        calls,
        net_bytes: field("total_net_input_bytes") + field("total_net_output_bytes"),
        used_memory: field("used_memory"),
    })
}

async fn redis_cost(worker_bin: PathBuf, jobs: usize, out: PathBuf) -> anyhow::Result<()> {
    let deployment = Deployment::start(worker_bin, Duration::ZERO).await;
    let mut conn = redis::Client::open(deployment.redis.url())?
        .get_multiplexed_async_connection()
        .await?;
    let before = redis_stats(&mut conn).await?;
    let job_ids = deployment.enqueue_manifest(&prompts("cost", jobs)).await;
    let started = std::time::Instant::now();
    let _worker = deployment.spawn_worker_process("cost");
    // Watched with ZCARD alone, so the observer's own commands can be taken out exactly.
    let mut tick = tokio::time::interval(Duration::from_millis(200));
    loop {
        tick.tick().await;
        let counts = deployment.ledger.state_counts().await?;
        let settled: u64 = counts
            .iter()
            .filter(|(state, _)| state.is_terminal())
            .map(|(_, n)| n)
            .sum();
        if settled as usize >= job_ids.len() {
            break;
        }
    }
    let elapsed = started.elapsed();
    let after = redis_stats(&mut conn).await?;
    let delta = |name: &str| {
        after.calls.get(name).copied().unwrap_or(0) - before.calls.get(name).copied().unwrap_or(0)
    };
    let observer = ["zcard", "info"];
    let mut by_command: Vec<(String, u64)> = after
        .calls
        .keys()
        .filter(|name| !observer.contains(&name.as_str()))
        .map(|name| (name.clone(), delta(name)))
        .filter(|(_, calls)| *calls > 0)
        .collect();
    by_command.sort_by_key(|(_, calls)| std::cmp::Reverse(*calls));
    let per_job = |total: u64| total as f64 / jobs as f64;
    let worker_calls: u64 = by_command.iter().map(|(_, calls)| calls).sum();
    let net_bytes = after.net_bytes - before.net_bytes;
    let memory = after.used_memory as f64 - before.used_memory as f64;
    let figures = json!({
        "section": "redis_cost",
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
        "redis cost: {jobs} jobs, 1 worker process: {:.0} jobs/s end to end, {:.2} commands/job ({}), \
         {:.0} network bytes/job, {:.0} bytes of Redis memory per finished job",
        jobs as f64 / elapsed.as_secs_f64(),
        per_job(worker_calls),
        breakdown.join(", "),
        per_job(net_bytes),
        memory / jobs as f64,
    );
    Ok(())
}

async fn callback_latency(
    worker_bin: PathBuf,
    jobs: usize,
    workers: usize,
    out: PathBuf,
) -> anyhow::Result<()> {
    let mut deployment = Deployment::start(worker_bin, Duration::from_millis(1000)).await;
    deployment.first_poll_ms = 600_000;
    let listener = deployment.callback_listener().await;
    let _receiver = deployment.spawn_callback_receiver(listener);
    let _workers: Vec<_> = (0..workers)
        .map(|worker_idx| deployment.spawn_worker_process(&format!("bench-{worker_idx}")))
        .collect();
    let job_ids = deployment.enqueue_manifest(&prompts("bench", jobs)).await;
    deployment.settled(&job_ids).await;

    let mut latencies_ms = Vec::with_capacity(jobs);
    for &job_id in &job_ids {
        let history = deployment.client.history(job_id).await?;
        let at = |needle: &str| {
            history
                .iter()
                .find(|event| event.contains(needle))
                .and_then(|event| event.split(' ').next()?.parse::<u64>().ok())
        };
        let (called_back, stored) = at(" waiting callback")
            .zip(at(" stored "))
            .with_context(|| format!("job {job_id} history: {history:?}"))?;
        latencies_ms.push(stored - called_back);
    }
    latencies_ms.sort_unstable();
    let pick =
        |quantile: f64| latencies_ms[((latencies_ms.len() - 1) as f64 * quantile).round() as usize];
    let figures = json!({
        "section": "callback_latency",
        "jobs": jobs,
        "workers": workers,
        "callback_to_stored_ms": { "p50": pick(0.5), "p99": pick(0.99), "max": latencies_ms.last() },
    });
    std::fs::write(&out, serde_json::to_string_pretty(&figures)?)
        .with_context(|| format!("writing {}", out.display()))?;
    println!(
        "callbacks: {jobs} jobs, {workers} workers, callback received -> stored  p50 {} ms  p99 {} ms",
        pick(0.5),
        pick(0.99)
    );
    Ok(())
}
