//! `reelq-bench`: benchmark sections that need a whole deployment (see `scripts/bench`).
//! `redis-cost`: the whole lifecycle's Redis commands, bytes and memory per job.
//! `callback-latency`: N jobs whose only way forward is the provider's callback (scheduled
//! polls are ten minutes out); prints callback-received -> video-stored p50/p99 from the
//! ledger's event log and writes them as JSON. `lifecycle` (its own module): reelq's whole
//! lifecycle beside BullMQ running the same one. `archive` (its own module): what keeping
//! history in the object store saves Redis, and what it costs.

mod archive;
mod durability;
mod large_batch;
mod lifecycle;
mod media;
mod queue;
mod redis_cost;
mod tenants;

use durability::durability_cost;
use large_batch::large_batch;
pub(crate) use queue::run_json;
use queue::{QueueRuns, in_flight, queue_overhead};
use redis_cost::redis_cost;
pub(crate) use redis_cost::{
    RedisCostPerJob, RedisStats, empty_redis, observer_calls, redis_cost_of, redis_stats,
    settled_count, wait_for_state,
};

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
        /// and a replica, `replicas:1`), `cluster` (three masters and a replica each,
        /// `replicas:1`; CPU summed over the masters), `cluster-own-home` (the same, the
        /// ledger's home in a slot of its own on another master than its jobs) or
        /// `cluster-partitioned` (the same, the jobs in six partitions, two on each master,
        /// enqueued as batches of ten).
        #[arg(long, default_value = "always", value_parser = ["always", "replica", "cluster", "cluster-own-home", "cluster-partitioned"])]
        setup: String,
        /// The jobs: `kie` (its first model, named), `veo` (EvoLink's Veo 3.1 Fast, named),
        /// `veo-route` (the `veo-3.1-fast` route, served by EvoLink, its cheapest candidate)
        /// or `veo-route-fallback` (the same with EvoLink paused: each job moves on once).
        #[arg(long, default_value = "kie", value_parser = ["kie", "veo", "veo-route", "veo-route-fallback"])]
        jobs_of: String,
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
    /// What a claim costs Redis with 1, 100 and 10,000 tenants with jobs waiting (no worker:
    /// claims straight on the ledger).
    TenantClaims {
        #[arg(long, default_value_t = 20_000)]
        jobs: usize,
        #[arg(long, default_value_t = 1_000)]
        claims: usize,
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
            jobs_of,
            out,
        } => {
            let setup = match setup.as_str() {
                "replica" => RedisSetup::Replica,
                "cluster" => RedisSetup::Cluster,
                "cluster-own-home" => RedisSetup::ClusterOwnHome,
                "cluster-partitioned" => RedisSetup::ClusterPartitioned,
                _ => RedisSetup::Always,
            };
            redis_cost(worker_bin, jobs, setup, &jobs_of, out).await
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
        Section::TenantClaims { jobs, claims, out } => {
            tenants::tenant_claims(jobs, claims, out).await
        }
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
