//! `reelq-bench`: benchmark sections that need a whole deployment (see `scripts/bench`).
//! `redis-cost`: the whole lifecycle's Redis commands, bytes and memory per job.
//! `callback-latency`: N jobs whose only way forward is the provider's callback (scheduled
//! polls are ten minutes out); prints callback-received -> video-stored p50/p99 from the
//! ledger's event log and writes them as JSON. `lifecycle` (its own module): reelq's whole
//! lifecycle beside BullMQ running the same one. `archive` (its own module): what keeping
//! history in the object store saves Redis, and what it costs.

mod archive;
mod lifecycle;
mod media;

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use anyhow::Context;
use clap::{Parser, Subcommand};
use reelq_core::JobState;
use reelq_e2e::{Deployment, PREFIX, RedisSetup, prompts};
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
        /// How Redis runs: `always` (one primary, `appendfsync always`), `replica` (a primary
        /// and a replica, `replicas:1`) or `cluster` (three masters and a replica each,
        /// `replicas:1`; CPU summed over the masters).
        #[arg(long, default_value = "always", value_parser = ["always", "replica", "cluster"])]
        setup: String,
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
    /// N jobs waiting on the provider at once (the simulator holds every task) with one
    /// worker process: its RSS, Redis memory per waiting job; then the provider finishes them
    /// all (callbacks) and the whole lives' Redis commands per job are counted.
    InFlight {
        #[arg(long)]
        worker_bin: PathBuf,
        #[arg(long, default_value_t = 10_000)]
        jobs: usize,
        #[arg(long)]
        out: PathBuf,
    },
    /// What durability costs: enqueues per second (one at a time, and a bulk manifest) and
    /// whole lifecycles per second through one worker process, with `appendfsync everysec`
    /// (unsafe, for reference), `appendfsync always`, and `everysec` plus a replica with
    /// `durability = "replicas:1"`; each on a fresh Redis, the modes interleaved round by round.
    Durability {
        #[arg(long)]
        worker_bin: PathBuf,
        #[arg(long, default_value_t = 2000)]
        jobs: usize,
        #[arg(long, default_value_t = 500)]
        singles: usize,
        #[arg(long, default_value_t = 3)]
        rounds: usize,
        #[arg(long)]
        out: PathBuf,
    },
    /// One manifest of N lines through `reelq batch submit` (staged, committed, queued in
    /// chunks) on a Redis with `appendfsync always`, while another producer enqueues single
    /// jobs one after another: the batch's time, the worst and p99 latency the other
    /// producer saw, the longest Redis commands (SLOWLOG), and Redis memory per job.
    LargeBatch {
        /// The `reelq` binary.
        #[arg(long)]
        reelq_bin: PathBuf,
        #[arg(long, default_value_t = 1_000_000)]
        jobs: usize,
        #[arg(long)]
        out: PathBuf,
    },
    /// reelq's whole lifecycle beside BullMQ running the same lifecycle (its step-job
    /// pattern) against the same simulator, same Redis (AOF, fsync every second), same
    /// concurrency, in interleaved rounds: jobs/s, Redis CPU, commands, memory and network per
    /// job, worker CPU and RSS; medians with ranges.
    Lifecycle {
        #[arg(long)]
        worker_bin: PathBuf,
        /// `bench/bullmq/bench.mjs`, run with node (its node_modules installed).
        #[arg(long)]
        bullmq_script: PathBuf,
        #[arg(long, default_value_t = 10_000)]
        jobs: usize,
        #[arg(long, default_value_t = 32)]
        concurrency: usize,
        #[arg(long, default_value_t = 3)]
        rounds: usize,
        #[arg(long)]
        out: PathBuf,
    },
    /// What looking inside a video costs: CPU seconds per GiB to hash it and to walk its MP4
    /// boxes and read its movie header, over a simulator video padded to `mib` MiB.
    Media {
        #[arg(long, default_value_t = 1024)]
        mib: u64,
        #[arg(long)]
        out: PathBuf,
    },
    /// N jobs through the lifecycle kept in Redis (today's layout), then archived to the
    /// store: Redis memory per finished job before and after, archive throughput and Redis
    /// cost, segment sizes, reading an archived job by id and a day whole.
    Archive {
        #[arg(long)]
        worker_bin: PathBuf,
        #[arg(long, default_value_t = 20_000)]
        jobs: usize,
        /// A Python with duckdb (`.s3venv/bin/python`): times DuckDB reading the day.
        #[arg(long)]
        python: Option<PathBuf>,
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
            setup,
            out,
        } => {
            let setup = match setup.as_str() {
                "replica" => RedisSetup::Replica,
                "cluster" => RedisSetup::Cluster,
                _ => RedisSetup::Always,
            };
            redis_cost(worker_bin, jobs, setup, out).await
        }
        Section::Media { mib, out } => media::media(mib, out),
        Section::Archive {
            worker_bin,
            jobs,
            python,
            out,
        } => archive::archive(worker_bin, jobs, python, out).await,
        Section::Lifecycle {
            worker_bin,
            bullmq_script,
            jobs,
            concurrency,
            rounds,
            out,
        } => {
            let runs = lifecycle::LifecycleRuns {
                worker_bin,
                bullmq_script,
                jobs,
                concurrency,
                rounds,
            };
            lifecycle::lifecycle(runs, out).await
        }
        Section::LargeBatch {
            reelq_bin,
            jobs,
            out,
        } => large_batch(reelq_bin, jobs, out).await,
        Section::Durability {
            worker_bin,
            jobs,
            singles,
            rounds,
            out,
        } => durability_cost(worker_bin, jobs, singles, rounds, out).await,
        Section::InFlight {
            worker_bin,
            jobs,
            out,
        } => in_flight(worker_bin, jobs, out).await,
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
    /// Microseconds Redis spent per command name (a script's own time includes its calls).
    usec: HashMap<String, u64>,
    net_bytes: u64,
    used_memory: u64,
    /// Redis's own CPU time (user + system), seconds.
    cpu_s: f64,
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

async fn redis_cost(
    worker_bin: PathBuf,
    jobs: usize,
    setup: RedisSetup,
    out: PathBuf,
) -> anyhow::Result<()> {
    let deployment = Deployment::start_with(worker_bin, Duration::ZERO, setup).await;
    let mut conn = redis::Client::open(deployment.redis.url())?
        .get_multiplexed_async_connection()
        .await?;
    // The cluster's other masters: their CPU (cluster bus, anything routed there) counts too.
    let mut other_masters = Vec::new();
    for node in deployment.cluster.iter().flat_map(|cluster| &cluster.nodes) {
        if node
            .command_text(&["INFO", "replication"])?
            .contains("role:master")
        {
            other_masters.push(
                redis::Client::open(node.url())?
                    .get_multiplexed_async_connection()
                    .await?,
            );
        }
    }
    let mut others_cpu_s = 0.0;
    for conn in &mut other_masters {
        others_cpu_s -= redis_stats(conn).await?.cpu_s;
    }
    let before = redis_stats(&mut conn).await?;
    let job_ids = deployment.enqueue_manifest(&prompts("cost", jobs)).await;
    let started = std::time::Instant::now();
    let _worker = deployment.spawn_worker_process("cost");
    settled_count(&deployment, job_ids.len()).await?;
    let elapsed = started.elapsed();
    let after = redis_stats(&mut conn).await?;
    for conn in &mut other_masters {
        others_cpu_s += redis_stats(conn).await?.cpu_s;
    }
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
    let script_us = |stats: &RedisStats| stats.usec.get("evalsha").copied().unwrap_or(0);
    let script_us_per_job = per_job(script_us(&after) - script_us(&before));
    let cpu_us_per_job = per_job(((after.cpu_s - before.cpu_s + others_cpu_s) * 1e6) as u64);
    let figures = json!({
        "section": "redis_cost",
        "setup": format!("{setup:?}"),
        "redis_cpu_us_per_job": cpu_us_per_job,
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
        "redis cost: {jobs} jobs, 1 worker process: {:.0} jobs/s end to end, {:.2} commands/job ({}), \
         {:.0} network bytes/job, {:.0} bytes of Redis memory per finished job; Redis CPU {:.0} us/job \
         ({:.0} us inside scripts)",
        jobs as f64 / elapsed.as_secs_f64(),
        per_job(worker_calls),
        breakdown.join(", "),
        per_job(net_bytes),
        memory / jobs as f64,
        cpu_us_per_job,
        script_us_per_job,
    );
    Ok(())
}

/// One durability mode's figures from one round.
#[derive(Clone, Copy)]
struct DurabilityRound {
    single_enqueues_per_s: f64,
    bulk_enqueues_per_s: f64,
    lifecycles_per_s: f64,
}

async fn durability_cost(
    worker_bin: PathBuf,
    jobs: usize,
    singles: usize,
    rounds: usize,
    out: PathBuf,
) -> anyhow::Result<()> {
    let modes = [
        ("everysec (unsafe)", RedisSetup::UnsafeEverysec),
        ("always", RedisSetup::Always),
        ("replicas:1", RedisSetup::Replica),
    ];
    let mut figures: HashMap<&str, Vec<DurabilityRound>> = HashMap::new();
    for _ in 0..rounds {
        for (name, setup) in modes {
            let round = durability_round(&worker_bin, setup, jobs, singles).await?;
            figures.entry(name).or_default().push(round);
        }
    }
    let median = |values: &mut Vec<f64>| {
        values.sort_by(f64::total_cmp);
        values[values.len() / 2]
    };
    println!(
        "durability: {jobs} bulk + {singles} single enqueues, then all through 1 worker (concurrency 8); median of {rounds} interleaved rounds"
    );
    println!(
        "  {:<20} {:>14} {:>14} {:>14}",
        "mode", "single enq/s", "bulk enq/s", "lifecycles/s"
    );
    let mut summary = serde_json::Map::new();
    for (name, _) in modes {
        let rounds = &figures[name];
        let pick = |f: fn(&DurabilityRound) -> f64| median(&mut rounds.iter().map(f).collect());
        let (single, bulk, lifecycles) = (
            pick(|r| r.single_enqueues_per_s),
            pick(|r| r.bulk_enqueues_per_s),
            pick(|r| r.lifecycles_per_s),
        );
        println!("  {name:<20} {single:>14.0} {bulk:>14.0} {lifecycles:>14.0}");
        let figures = |single: f64, bulk: f64, lifecycles: f64| {
            json!({ "single_enqueues_per_s": single, "bulk_enqueues_per_s": bulk,
                    "lifecycles_per_s": lifecycles })
        };
        let each: Vec<_> = rounds
            .iter()
            .map(|r| {
                figures(
                    r.single_enqueues_per_s,
                    r.bulk_enqueues_per_s,
                    r.lifecycles_per_s,
                )
            })
            .collect();
        summary.insert(
            name.to_owned(),
            json!({ "median": figures(single, bulk, lifecycles), "rounds": each }),
        );
    }
    let result =
        json!({ "section": "durability", "jobs": jobs, "singles": singles, "modes": summary });
    std::fs::write(&out, serde_json::to_string_pretty(&result)?)
        .with_context(|| format!("writing {}", out.display()))?;
    Ok(())
}

async fn durability_round(
    worker_bin: &Path,
    setup: RedisSetup,
    jobs: usize,
    singles: usize,
) -> anyhow::Result<DurabilityRound> {
    let deployment = Deployment::start_with(worker_bin, Duration::ZERO, setup).await;
    let started = Instant::now();
    for prompt in prompts("single", singles) {
        let request = reelq_core::JobRequest {
            provider: Some("kie".into()),
            model: Some(deployment.model().into()),
            prompt: Some(prompt),
            ..Default::default()
        };
        deployment.client.enqueue(request).await?;
    }
    let single_enqueues_per_s = singles as f64 / started.elapsed().as_secs_f64();
    let started = Instant::now();
    deployment.enqueue_manifest(&prompts("bulk", jobs)).await;
    let bulk_enqueues_per_s = jobs as f64 / started.elapsed().as_secs_f64();
    let started = Instant::now();
    let _worker = deployment.spawn_worker_process("durability");
    settled_count(&deployment, jobs + singles).await?;
    let lifecycles_per_s = (jobs + singles) as f64 / started.elapsed().as_secs_f64();
    Ok(DurabilityRound {
        single_enqueues_per_s,
        bulk_enqueues_per_s,
        lifecycles_per_s,
    })
}

async fn large_batch(reelq_bin: PathBuf, jobs: usize, out: PathBuf) -> anyhow::Result<()> {
    let redis = reelq_testkit::RedisServer::start()?;
    redis.config_set("slowlog-log-slower-than", "10000")?;
    redis.config_set("slowlog-max-len", "100000")?;
    let dir = tempfile::tempdir()?;
    let manifest = dir.path().join("large.jsonl");
    let lines: String = (0..jobs)
        .map(|i| {
            format!(
                "{{\"provider\":\"kie\",\"model\":\"kling-3.0/video\",\"prompt\":\"frame {i} of a large overnight batch\"}}\n"
            )
        })
        .collect();
    std::fs::write(&manifest, &lines)?;
    let manifest_bytes = lines.len();
    drop(lines);
    let config = reelq_producer::LedgerConfig::new(redis.url(), "large");
    let client = reelq_producer::Client::connect(&config).await?;
    let mut conn = redis::Client::open(redis.url())?
        .get_multiplexed_async_connection()
        .await?;
    let before = redis_stats(&mut conn).await?;

    // The other producer: single enqueues, each awaited, for as long as the batch takes.
    let stop = tokio_util::sync::CancellationToken::new();
    let probe = {
        let (client, stop) = (client.clone(), stop.clone());
        tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut errors = 0u64;
            while !stop.is_cancelled() {
                let request = reelq_core::JobRequest {
                    provider: Some("kie".into()),
                    model: Some("kling-3.0/video".into()),
                    prompt: Some("an interactive job".into()),
                    ..Default::default()
                };
                let started = Instant::now();
                match client.enqueue(request).await {
                    Ok(_) => latencies.push(started.elapsed().as_secs_f64() * 1000.0),
                    Err(_) => errors += 1,
                }
            }
            (latencies, errors)
        })
    };
    let started = Instant::now();
    let output = tokio::process::Command::new(&reelq_bin)
        .args([
            "--redis-url",
            &redis.url(),
            "--prefix",
            "large",
            "batch",
            "submit",
        ])
        .arg(&manifest)
        .output()
        .await
        .context("running reelq batch submit")?;
    let batch_s = started.elapsed().as_secs_f64();
    stop.cancel();
    let (mut latencies, probe_errors) = probe.await?;
    anyhow::ensure!(
        output.status.success(),
        "reelq batch submit failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let after = redis_stats(&mut conn).await?;
    let queued: u64 = redis::cmd("ZCARD")
        .arg("{large}:due")
        .query_async(&mut conn)
        .await?;
    // Each entry: id, time, microseconds, the command's arguments, client address, name.
    let slowlog: Vec<Vec<redis::Value>> = redis::cmd("SLOWLOG")
        .arg("GET")
        .arg(-1)
        .query_async(&mut conn)
        .await?;
    let slow: Vec<(f64, String)> = slowlog
        .iter()
        .filter_map(|entry| {
            let usec: u64 = redis::from_redis_value(entry.get(2)?.clone()).ok()?;
            let args: Vec<String> = redis::from_redis_value(entry.get(3)?.clone()).ok()?;
            Some((
                usec as f64 / 1000.0,
                args.first().cloned().unwrap_or_default(),
            ))
        })
        .collect();
    let (longest_ms, longest_command) = slow
        .iter()
        .cloned()
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .unwrap_or_default();
    let over_50ms = slow.iter().filter(|(ms, _)| *ms > 50.0).count();
    let info: String = redis::cmd("INFO")
        .arg("persistence")
        .query_async(&mut conn)
        .await?;
    let fork_ms = info
        .lines()
        .find_map(|line| line.strip_prefix("latest_fork_usec:"))
        .and_then(|usec| usec.trim().parse::<f64>().ok())
        .unwrap_or(0.0)
        / 1000.0;
    latencies.sort_by(f64::total_cmp);
    let pick = |q: f64| {
        latencies
            .get(((latencies.len() as f64 * q) as usize).min(latencies.len().saturating_sub(1)))
            .copied()
            .unwrap_or(0.0)
    };
    let memory_per_job =
        (after.used_memory.saturating_sub(before.used_memory)) as f64 / (queued.max(1)) as f64;
    let result = json!({
        "section": "large-batch",
        "jobs": jobs,
        "manifest_mib": manifest_bytes as f64 / 1048576.0,
        "queued_after": queued,
        "batch_submit_s": batch_s,
        "jobs_per_s": jobs as f64 / batch_s,
        "concurrent_enqueues": latencies.len(),
        "concurrent_errors": probe_errors,
        "concurrent_p50_ms": pick(0.5),
        "concurrent_p99_ms": pick(0.99),
        "concurrent_max_ms": latencies.last().copied().unwrap_or(0.0),
        "redis_commands_over_10ms": slow.len(),
        "redis_longest_command": longest_command,
        "redis_latest_fork_ms": fork_ms,
        "redis_commands_over_50ms": over_50ms,
        "redis_longest_command_ms": longest_ms,
        "redis_memory_mib": after.used_memory as f64 / 1048576.0,
        "redis_bytes_per_job": memory_per_job,
        "redis_cpu_s": after.cpu_s - before.cpu_s,
    });
    println!(
        "large batch: {jobs} lines ({:.0} MiB) through reelq batch submit, appendfsync always",
        manifest_bytes as f64 / 1048576.0
    );
    println!(
        "  batch submit            {batch_s:8.1} s  ({:.0} jobs/s; {queued} queued after)",
        jobs as f64 / batch_s
    );
    println!(
        "  other producer          {} single enqueues meanwhile, p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms, {probe_errors} errors",
        latencies.len(),
        pick(0.5),
        pick(0.99),
        latencies.last().copied().unwrap_or(0.0)
    );
    println!(
        "  redis                   longest command {longest_ms:.1} ms ({longest_command}), {} over 10 ms, {over_50ms} over 50 ms; last fork (AOF rewrite) {fork_ms:.0} ms; {:.0} MiB used, {memory_per_job:.0} bytes/job",
        slow.len(),
        after.used_memory as f64 / 1048576.0
    );
    std::fs::write(&out, serde_json::to_string_pretty(&result)?)
        .with_context(|| format!("writing {}", out.display()))?;
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

async fn in_flight(worker_bin: PathBuf, jobs: usize, out: PathBuf) -> anyhow::Result<()> {
    let mut deployment =
        Deployment::start_with(worker_bin, Duration::ZERO, RedisSetup::UnsafeEverysec).await;
    deployment.concurrency = 64;
    // Generations take long: the provider's callback, not a poll, brings each job on.
    deployment.first_poll_ms = 600_000;
    deployment.poll_max_ms = 600_000;
    deployment.sim.hold();
    let listener = deployment.callback_listener().await;
    let _receiver = deployment.spawn_callback_receiver(listener);
    let worker = deployment.spawn_worker_process("in-flight");
    let worker_pid = worker.id().context("worker pid")?;
    let mut conn = redis::Client::open(deployment.redis.url())?
        .get_multiplexed_async_connection()
        .await?;
    let before = redis_stats(&mut conn).await?;
    let started = Instant::now();
    deployment
        .enqueue_manifest(&prompts("in flight", jobs))
        .await;
    wait_for_state(&deployment, JobState::Waiting, jobs).await?;
    let all_waiting_s = started.elapsed().as_secs_f64();
    let waiting = redis_stats(&mut conn).await?;
    let rss_kib = |field: &str| -> anyhow::Result<u64> {
        let status = std::fs::read_to_string(format!("/proc/{worker_pid}/status"))?;
        status
            .lines()
            .find_map(|line| {
                line.strip_prefix(field)?
                    .trim()
                    .strip_suffix(" kB")?
                    .parse()
                    .ok()
            })
            .context("no such field in /proc status")
    };
    let rss_waiting_mib = rss_kib("VmRSS:")? as f64 / 1024.0;
    let memory_per_waiting = (waiting.used_memory as f64 - before.used_memory as f64) / jobs as f64;
    deployment.sim.release();
    wait_for_state(&deployment, JobState::Stored, jobs).await?;
    let after = redis_stats(&mut conn).await?;
    let peak_rss_mib = rss_kib("VmHWM:")? as f64 / 1024.0;
    let total = |stats: &RedisStats| stats.calls.values().sum::<u64>();
    let commands =
        (total(&after) - total(&before) - observer_calls(&before, &after)) as f64 / jobs as f64;
    let figures = json!({
        "section": "in_flight",
        "jobs": jobs,
        "seconds_until_all_waiting": all_waiting_s,
        "worker_rss_mib_all_waiting": rss_waiting_mib,
        "worker_peak_rss_mib": peak_rss_mib,
        "redis_bytes_per_waiting_job": memory_per_waiting,
        "redis_commands_per_job_whole_life": commands,
    });
    std::fs::write(&out, serde_json::to_string_pretty(&figures)?)
        .with_context(|| format!("writing {}", out.display()))?;
    println!(
        "in flight: {jobs} jobs waiting on the provider at once, 1 worker process: worker RSS {rss_waiting_mib:.1} MiB \
         (peak {peak_rss_mib:.1} MiB), {memory_per_waiting:.0} bytes of Redis per waiting job, \
         {commands:.1} Redis commands per job over its whole life (callback-driven)"
    );
    Ok(())
}

/// Waits until `jobs` jobs are in `state` (ZCARD polls only).
async fn wait_for_state(
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
fn observer_calls(before: &RedisStats, after: &RedisStats) -> u64 {
    ["zcard", "info"]
        .iter()
        .map(|name| after.calls.get(*name).unwrap_or(&0) - before.calls.get(*name).unwrap_or(&0))
        .sum()
}

/// Waits until `jobs` jobs have ended. Watched with ZCARD alone (a few per second), so the
/// observer costs Redis next to nothing and its commands can be taken out exactly.
async fn settled_count(deployment: &Deployment, jobs: usize) -> anyhow::Result<()> {
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
struct RedisCostPerJob {
    commands: f64,
    cpu_us: f64,
    net_bytes: f64,
    memory_bytes: f64,
}

/// Empties Redis between runs, leaving what a first connect writes: the ledger's schema
/// (without it a ledger reads as one of an older release, whose workers need the old,
/// bigger record format).
async fn empty_redis(conn: &mut redis::aio::MultiplexedConnection) -> anyhow::Result<()> {
    let _: () = redis::cmd("FLUSHALL").query_async(conn).await?;
    let _: () = redis::cmd("SET")
        .arg(format!("{{{PREFIX}}}:schema"))
        .arg(reelq_queue::LEDGER_SCHEMA)
        .query_async(conn)
        .await?;
    Ok(())
}

/// Runs `lifecycle` (enqueue and process `jobs`) between two `INFO` snapshots.
async fn redis_cost_of(
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

async fn queue_overhead(worker_bin: PathBuf, runs: QueueRuns, out: PathBuf) -> anyhow::Result<()> {
    // The same Redis for all three, with BullMQ's usual `appendfsync everysec` (reelq is
    // allowed it here; the durability section measures what `always` and a replica cost).
    let mut deployment =
        Deployment::start_with(worker_bin, Duration::ZERO, RedisSetup::UnsafeEverysec).await;
    deployment.concurrency = runs.concurrency;
    let mut conn = redis::Client::open(deployment.redis.url())?
        .get_multiplexed_async_connection()
        .await?;
    let request = |prompt: String| reelq_core::JobRequest {
        provider: Some("kie".into()),
        model: Some("kling-3.0/video".into()),
        prompt: Some(prompt),
        ..Default::default()
    };
    let specs = |n: usize| {
        (0..n)
            .map(|i| request(format!("job {i}")).validate(reelq_core::Catalog::built_in(), 0))
            .collect::<Result<Vec<_>, _>>()
    };
    let node = |args: Vec<String>| {
        let mut command = std::process::Command::new("node");
        command
            .arg(&runs.bullmq_script)
            .args(args)
            .env("REDIS_PORT", deployment.redis.port().to_string());
        command
    };
    let n = |value: usize| value.to_string();

    // Enqueue rates.
    empty_redis(&mut conn).await?;
    let started = Instant::now();
    for i in 0..runs.singles {
        deployment
            .client
            .enqueue(request(format!("single {i}")))
            .await?;
    }
    let reelq_single = runs.singles as f64 / started.elapsed().as_secs_f64();
    let bulk = specs(runs.jobs)?;
    let started = Instant::now();
    deployment.client.enqueue_batch(bulk).await?;
    let reelq_bulk = runs.jobs as f64 / started.elapsed().as_secs_f64();
    empty_redis(&mut conn).await?;
    let bullmq_enqueue = run_json(&mut node(vec![
        "enqueue".into(),
        n(runs.jobs),
        n(runs.singles),
    ]))?;

    // Whole runs: bulk enqueue, then one worker process takes every job to its end.
    let reelq_run = async {
        deployment.client.enqueue_batch(specs(runs.jobs)?).await?;
        let started = Instant::now();
        let _worker = deployment.spawn_worker_process("queue");
        settled_count(&deployment, runs.jobs).await?;
        Ok(runs.jobs as f64 / started.elapsed().as_secs_f64())
    };
    let (reelq_process, reelq_cost) = redis_cost_of(&mut conn, runs.jobs, reelq_run).await?;
    let bullmq_run = async {
        let result = run_json(&mut node(vec![
            "process".into(),
            n(runs.jobs),
            n(runs.concurrency),
        ]))?;
        Ok(result["process_jobs_per_s"].as_f64().unwrap_or(f64::NAN))
    };
    let (bullmq_process, bullmq_cost) = redis_cost_of(&mut conn, runs.jobs, bullmq_run).await?;
    let apalis_jobs = runs.jobs.min(APALIS_MAX_JOBS);
    let mut apalis = serde_json::Value::Null;
    let apalis_run = async {
        apalis = run_json(
            std::process::Command::new(&runs.apalis_bin)
                .arg(deployment.redis.url())
                .args([n(apalis_jobs), n(runs.concurrency)]),
        )?;
        Ok(apalis["process_jobs_per_s"].as_f64().unwrap_or(f64::NAN))
    };
    let (apalis_process, apalis_cost) = redis_cost_of(&mut conn, apalis_jobs, apalis_run).await?;

    let figure = |value: &serde_json::Value, name: &str| value[name].as_f64().unwrap_or(f64::NAN);
    let rows = [
        (
            "enqueue one at a time, jobs/s",
            reelq_single,
            figure(&bullmq_enqueue, "enqueue_single_per_s"),
            f64::NAN,
        ),
        (
            "enqueue in bulk, jobs/s",
            reelq_bulk,
            figure(&bullmq_enqueue, "enqueue_bulk_per_s"),
            figure(&apalis, "enqueue_bulk_per_s"),
        ),
        (
            "processed by 1 worker, jobs/s",
            reelq_process,
            bullmq_process,
            apalis_process,
        ),
        (
            "Redis commands per job",
            reelq_cost.commands,
            bullmq_cost.commands,
            apalis_cost.commands,
        ),
        (
            "Redis CPU per job, us",
            reelq_cost.cpu_us,
            bullmq_cost.cpu_us,
            apalis_cost.cpu_us,
        ),
        (
            "Redis network per job, bytes",
            reelq_cost.net_bytes,
            bullmq_cost.net_bytes,
            apalis_cost.net_bytes,
        ),
    ];
    println!(
        "queue overhead: {} jobs ({} for apalis), worker concurrency {}, one Redis (AOF, fsync every second)",
        runs.jobs, apalis_jobs, runs.concurrency
    );
    println!(
        "  {:<32} {:>9} {:>9} {:>9} {:>13} {:>13}",
        "", "reelq", "BullMQ", "apalis", "reelq/BullMQ", "reelq/apalis"
    );
    for (name, reelq, bull, apalis) in rows {
        println!(
            "  {name:<32} {reelq:>9.1} {bull:>9.1} {apalis:>9.1} {:>13.2} {:>13.2}",
            reelq / bull,
            reelq / apalis
        );
    }
    println!(
        "  reelq's jobs are whole lifecycles (create, query and download at the simulator, which runs in\n  \
         this process on the same 2 cores, a file written, 4 fenced transitions); BullMQ's and apalis's\n  \
         are no-op handlers. Cost rows cover enqueue and processing."
    );
    let cost_json = |cost: RedisCostPerJob| json!({ "commands": cost.commands, "cpu_us": cost.cpu_us, "net_bytes": cost.net_bytes });
    let figures = json!({
        "section": "queue_overhead",
        "jobs": runs.jobs,
        "apalis_jobs": apalis_jobs,
        "concurrency": runs.concurrency,
        "reelq": { "enqueue_single_per_s": reelq_single, "enqueue_bulk_per_s": reelq_bulk, "process_jobs_per_s": reelq_process, "redis_per_job": cost_json(reelq_cost) },
        "bullmq": { "enqueue": bullmq_enqueue, "process_jobs_per_s": bullmq_process, "redis_per_job": cost_json(bullmq_cost) },
        "apalis": { "run": apalis, "redis_per_job": cost_json(apalis_cost) },
    });
    std::fs::write(&out, serde_json::to_string_pretty(&figures)?)
        .with_context(|| format!("writing {}", out.display()))?;
    Ok(())
}

/// Runs a benchmark helper to completion and reads the JSON object it prints last.
fn run_json(command: &mut std::process::Command) -> anyhow::Result<serde_json::Value> {
    let output = command
        .output()
        .with_context(|| format!("running {command:?}"))?;
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
