//! `reelq-bench`: benchmark sections that need a whole deployment (see `scripts/bench`).
//! `redis-cost`: the whole lifecycle's Redis commands, bytes and memory per job.
//! `callback-latency`: N jobs whose only way forward is the provider's callback (scheduled
//! polls are ten minutes out); prints callback-received -> video-stored p50/p99 from the
//! ledger's event log and writes them as JSON.

use std::{
    collections::HashMap,
    path::PathBuf,
    time::{Duration, Instant},
};

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
    /// Queue overhead beside BullMQ and a bare apalis-redis worker, on the same Redis (AOF,
    /// fsync every second): enqueue one at a time and in bulk, then jobs/s through one worker
    /// process with matched concurrency. reelq's jobs are whole lifecycles against a
    /// simulator answering at once (create, query, download, file write); theirs are no-ops.
    Queue {
        #[arg(long)]
        worker_bin: PathBuf,
        /// `bench/bullmq/bench.mjs`, run with node (its node_modules installed).
        #[arg(long)]
        bullmq_script: PathBuf,
        /// The `apalis-noop` binary.
        #[arg(long)]
        apalis_bin: PathBuf,
        #[arg(long, default_value_t = 10_000)]
        jobs: usize,
        /// Enqueued one at a time, each awaited.
        #[arg(long, default_value_t = 2000)]
        singles: usize,
        #[arg(long, default_value_t = 8)]
        concurrency: usize,
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
        Section::Queue {
            worker_bin,
            bullmq_script,
            apalis_bin,
            jobs,
            singles,
            concurrency,
            out,
        } => {
            let runs = QueueRuns {
                bullmq_script,
                apalis_bin,
                jobs,
                singles,
                concurrency,
            };
            queue_overhead(worker_bin, runs, out).await
        }
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

struct QueueRuns {
    bullmq_script: PathBuf,
    apalis_bin: PathBuf,
    jobs: usize,
    singles: usize,
    concurrency: usize,
}

/// apalis-redis's fetch script fails with more than about 8000 tasks due at once ("too many
/// results to unpack"), so it gets at most this many.
const APALIS_MAX_JOBS: usize = 5000;

async fn queue_overhead(worker_bin: PathBuf, runs: QueueRuns, out: PathBuf) -> anyhow::Result<()> {
    let mut deployment = Deployment::start(worker_bin, Duration::ZERO).await;
    deployment.concurrency = runs.concurrency;
    // The production setting, and the same for all three.
    deployment.redis.config_set("appendfsync", "everysec")?;
    let mut conn = redis::Client::open(deployment.redis.url())?
        .get_multiplexed_async_connection()
        .await?;
    let request = |prompt: String| reelq_core::JobRequest {
        provider: Some("kie".into()),
        model: Some("sora-2-text-to-video".into()),
        prompt: Some(prompt),
        ..Default::default()
    };

    let started = Instant::now();
    for n in 0..runs.singles {
        deployment.client.enqueue(request(format!("single {n}"))).await?;
    }
    let reelq_single = runs.singles as f64 / started.elapsed().as_secs_f64();
    let _: () = redis::cmd("FLUSHALL").query_async(&mut conn).await?;

    let specs = (0..runs.jobs)
        .map(|n| request(format!("bulk {n}")).validate(0))
        .collect::<Result<Vec<_>, _>>()?;
    let started = Instant::now();
    let batch = deployment.client.enqueue_batch(specs).await?;
    let reelq_bulk = runs.jobs as f64 / started.elapsed().as_secs_f64();

    let started = Instant::now();
    let _worker = deployment.spawn_worker_process("queue");
    deployment.settled(&batch.job_ids).await;
    let reelq_process = runs.jobs as f64 / started.elapsed().as_secs_f64();
    drop(_worker);
    let _: () = redis::cmd("FLUSHALL").query_async(&mut conn).await?;

    let bullmq = run_json(
        std::process::Command::new("node")
            .arg(&runs.bullmq_script)
            .args([runs.jobs, runs.concurrency, runs.singles].map(|n| n.to_string()))
            .env("REDIS_PORT", deployment.redis.port().to_string()),
    )?;
    let _: () = redis::cmd("FLUSHALL").query_async(&mut conn).await?;
    let apalis_jobs = runs.jobs.min(APALIS_MAX_JOBS);
    let apalis = run_json(
        std::process::Command::new(&runs.apalis_bin)
            .arg(deployment.redis.url())
            .args([apalis_jobs, runs.concurrency].map(|n| n.to_string())),
    )?;

    let figure = |value: &serde_json::Value, name: &str| value[name].as_f64().unwrap_or(f64::NAN);
    let rows = [
        ("enqueue, one at a time (jobs/s)", reelq_single, figure(&bullmq, "enqueue_single_per_s"), f64::NAN),
        ("enqueue, bulk (jobs/s)", reelq_bulk, figure(&bullmq, "enqueue_bulk_per_s"), figure(&apalis, "enqueue_bulk_per_s")),
        ("processed, 1 worker (jobs/s)", reelq_process, figure(&bullmq, "process_jobs_per_s"), figure(&apalis, "process_jobs_per_s")),
    ];
    println!(
        "queue overhead: {} jobs ({} for apalis), concurrency {}, one Redis with AOF everysec",
        runs.jobs, apalis_jobs, runs.concurrency
    );
    println!("  {:<32} {:>10} {:>10} {:>10} {:>12} {:>12}", "", "reelq", "BullMQ", "apalis", "reelq/BullMQ", "reelq/apalis");
    for (name, reelq, bull, apalis) in rows {
        println!(
            "  {name:<32} {reelq:>10.0} {bull:>10.0} {apalis:>10.0} {:>12.2} {:>12.2}",
            reelq / bull,
            reelq / apalis
        );
    }
    println!("  (reelq processes whole lifecycles: create, query and download from the simulator, a file write, 4 fenced transitions; BullMQ and apalis run no-op handlers)");
    let figures = json!({
        "section": "queue_overhead",
        "jobs": runs.jobs,
        "apalis_jobs": apalis_jobs,
        "concurrency": runs.concurrency,
        "reelq": { "enqueue_single_per_s": reelq_single, "enqueue_bulk_per_s": reelq_bulk, "process_jobs_per_s": reelq_process },
        "bullmq": bullmq,
        "apalis": apalis,
    });
    std::fs::write(&out, serde_json::to_string_pretty(&figures)?)
        .with_context(|| format!("writing {}", out.display()))?;
    Ok(())
}

/// Runs a benchmark helper to completion and reads the JSON object it prints last.
fn run_json(command: &mut std::process::Command) -> anyhow::Result<serde_json::Value> {
    let output = command.output().with_context(|| format!("running {command:?}"))?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    anyhow::ensure!(
        output.status.success(),
        "{command:?} failed: {}{}",
        stdout,
        String::from_utf8_lossy(&output.stderr)
    );
    let last = stdout.lines().last().unwrap_or_default();
    serde_json::from_str(last).with_context(|| format!("{command:?} printed {last:?}"))
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
