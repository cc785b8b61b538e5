//! `lifecycle`: reelq's whole job lifecycle beside BullMQ running the same lifecycle
//! (`bench/bullmq/bench.mjs lifecycle`: create at the provider, `moveToDelayed` between
//! polls, download, hash and write the file), against the same simulator and the same Redis,
//! with the same concurrency, in interleaved rounds. Medians with their ranges.

use std::{path::PathBuf, time::Instant};

use anyhow::Context;
use reelq_e2e::{API_KEY, Deployment, RedisSetup};
use serde_json::json;

use super::{RedisCostPerJob, redis_cost_of, run_json, settled_count};

/// What to run: `jobs` per round through one worker process of each queue.
pub(crate) struct LifecycleRuns {
    pub(crate) worker_bin: PathBuf,
    pub(crate) bullmq_script: PathBuf,
    pub(crate) jobs: usize,
    pub(crate) concurrency: usize,
    pub(crate) rounds: usize,
}

/// A row of the table: its label, its JSON name, and how to read it from a round.
type Figure = (&'static str, &'static str, fn(&Round) -> f64);

/// One queue's figures from one round.
#[derive(Clone, Copy)]
struct Round {
    jobs_per_s: f64,
    redis: RedisCostPerJob,
    worker_cpu_ms_per_job: f64,
    worker_peak_rss_mib: f64,
}

pub(crate) async fn lifecycle(runs: LifecycleRuns, out: PathBuf) -> anyhow::Result<()> {
    let mut deployment = Deployment::start_with(
        runs.worker_bin.clone(),
        std::time::Duration::ZERO,
        RedisSetup::UnsafeEverysec,
    )
    .await;
    deployment.concurrency = runs.concurrency;
    let mut conn = redis::Client::open(deployment.redis.url())?
        .get_multiplexed_async_connection()
        .await?;
    let (mut reelq, mut bullmq) = (Vec::new(), Vec::new());
    for round in 1..=runs.rounds {
        compact_redis(&mut conn).await?;
        reelq.push(reelq_round(&deployment, &mut conn, runs.jobs).await?);
        compact_redis(&mut conn).await?;
        bullmq.push(bullmq_round(&deployment, &mut conn, &runs).await?);
        for (name, figures) in [("reelq", &reelq), ("BullMQ", &bullmq)] {
            let last = figures.last().expect("a round was just run");
            println!(
                "  round {round} {name:<6} {:>6.0} jobs/s, Redis {:>4.0} us and {:>4.1} commands per job",
                last.jobs_per_s, last.redis.cpu_us, last.redis.commands
            );
        }
    }

    let figures: [Figure; 7] = [
        ("end-to-end jobs/s", "jobs_per_s", |r| r.jobs_per_s),
        ("Redis CPU per job, us", "redis_cpu_us", |r| r.redis.cpu_us),
        ("Redis commands per job", "redis_commands", |r| {
            r.redis.commands
        }),
        (
            "Redis memory per finished job, B",
            "redis_memory_bytes",
            |r| r.redis.memory_bytes,
        ),
        ("Redis network per job, B", "redis_net_bytes", |r| {
            r.redis.net_bytes
        }),
        ("worker CPU per job, ms", "worker_cpu_ms", |r| {
            r.worker_cpu_ms_per_job
        }),
        ("worker peak RSS, MiB", "worker_peak_rss_mib", |r| {
            r.worker_peak_rss_mib
        }),
    ];
    println!(
        "lifecycle: {} jobs per round, concurrency {}, {} interleaved rounds, one Redis (AOF, fsync every second); median [min-max]",
        runs.jobs, runs.concurrency, runs.rounds
    );
    println!(
        "  {:<34} {:>24} {:>24} {:>13}",
        "", "reelq", "BullMQ lifecycle", "reelq/BullMQ"
    );
    let mut summary = serde_json::Map::new();
    for (label, name, pick) in figures {
        let (reelq, bullmq) = (Spread::of(&reelq, pick), Spread::of(&bullmq, pick));
        println!(
            "  {label:<34} {:>24} {:>24} {:>13.2}",
            reelq.to_string(),
            bullmq.to_string(),
            reelq.median / bullmq.median
        );
        summary.insert(
            name.into(),
            json!({ "reelq": reelq.json(), "bullmq": bullmq.json(), "ratio": reelq.median / bullmq.median }),
        );
    }
    println!(
        "  both: kie's contract at the simulator in this process (finishes at once), first poll after\n  \
         100 ms, every video downloaded, hashed and written to a local file; finished jobs kept."
    );
    let figures = json!({
        "section": "lifecycle",
        "jobs": runs.jobs,
        "concurrency": runs.concurrency,
        "rounds": runs.rounds,
        "figures": summary,
    });
    std::fs::write(&out, serde_json::to_string_pretty(&figures)?)
        .with_context(|| format!("writing {}", out.display()))?;
    Ok(())
}

/// Empties Redis and rewrites its append-only file, so each round starts from the same
/// Redis: without it the file grows round after round and a rewrite (a fork and a full
/// write, on the same two cores) lands in whichever run crosses its threshold.
async fn compact_redis(conn: &mut redis::aio::MultiplexedConnection) -> anyhow::Result<()> {
    let _: () = redis::cmd("FLUSHALL").query_async(conn).await?;
    let _: String = redis::cmd("BGREWRITEAOF").query_async(conn).await?;
    let mut tick = tokio::time::interval(std::time::Duration::from_millis(50));
    loop {
        tick.tick().await;
        let info: String = redis::cmd("INFO")
            .arg("persistence")
            .query_async(conn)
            .await?;
        let busy = ["aof_rewrite_in_progress:1", "aof_rewrite_scheduled:1"]
            .iter()
            .any(|flag| info.lines().any(|line| line.trim() == *flag));
        if !busy {
            return Ok(());
        }
    }
}

async fn reelq_round(
    deployment: &Deployment,
    conn: &mut redis::aio::MultiplexedConnection,
    jobs: usize,
) -> anyhow::Result<Round> {
    let _ = std::fs::remove_dir_all(deployment.store_dir());
    let mut usage = None;
    let run = async {
        let specs = (0..jobs)
            .map(|i| {
                reelq_core::JobRequest {
                    provider: Some("kie".into()),
                    model: Some("kling-3.0/video".into()),
                    prompt: Some(format!("bench video {i}")),
                    ..Default::default()
                }
                .validate(reelq_core::Catalog::built_in(), 0)
            })
            .collect::<Result<Vec<_>, _>>()?;
        deployment.client.enqueue_batch(specs).await?;
        let started = Instant::now();
        let worker = deployment.spawn_worker_process("lifecycle");
        settled_count(deployment, jobs).await?;
        let elapsed = started.elapsed().as_secs_f64();
        usage = Some(ProcessUsage::of(worker.id().context("worker running")?)?);
        Ok(jobs as f64 / elapsed)
    };
    let (jobs_per_s, redis) = redis_cost_of(conn, jobs, run).await?;
    let usage = usage.context("the run measured the worker")?;
    Ok(Round {
        jobs_per_s,
        redis,
        worker_cpu_ms_per_job: usage.cpu_ms / jobs as f64,
        worker_peak_rss_mib: usage.peak_rss_mib,
    })
}

async fn bullmq_round(
    deployment: &Deployment,
    conn: &mut redis::aio::MultiplexedConnection,
    runs: &LifecycleRuns,
) -> anyhow::Result<Round> {
    let out = tempfile::tempdir()?;
    let mut result = serde_json::Value::Null;
    let run = async {
        result = run_json(
            std::process::Command::new("node")
                .arg(&runs.bullmq_script)
                .args([
                    "lifecycle",
                    &runs.jobs.to_string(),
                    &runs.concurrency.to_string(),
                ])
                .env("REDIS_PORT", deployment.redis.port().to_string())
                .env("SIM_URL", deployment.sim.base_url())
                .env("SIM_KEY", API_KEY)
                .env("FIRST_POLL_MS", deployment.first_poll_ms.to_string())
                .env("OUT_DIR", out.path()),
        )?;
        let completed = result["completed"].as_u64().unwrap_or(0) as usize;
        anyhow::ensure!(
            completed == runs.jobs,
            "BullMQ completed {completed} of {} jobs",
            runs.jobs
        );
        Ok(result["process_jobs_per_s"].as_f64().unwrap_or(f64::NAN))
    };
    let (jobs_per_s, redis) = redis_cost_of(conn, runs.jobs, run).await?;
    let figure = |name: &str| result[name].as_f64().unwrap_or(f64::NAN);
    Ok(Round {
        jobs_per_s,
        redis,
        worker_cpu_ms_per_job: figure("worker_cpu_ms_per_job"),
        worker_peak_rss_mib: figure("worker_peak_rss_mib"),
    })
}

/// A running process's CPU time so far and its peak RSS, from `/proc`.
struct ProcessUsage {
    cpu_ms: f64,
    peak_rss_mib: f64,
}

impl ProcessUsage {
    fn of(pid: u32) -> anyhow::Result<ProcessUsage> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
        // Fields after the command name (which may hold spaces) start at the state, field 3;
        // utime and stime are fields 14 and 15, in clock ticks (USER_HZ, 100 on Linux).
        let after_name = stat.rsplit_once(')').context("stat has a command name")?.1;
        let fields: Vec<&str> = after_name.split_whitespace().collect();
        let ticks: f64 = fields[11].parse::<f64>()? + fields[12].parse::<f64>()?;
        let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
        let peak_kib: f64 = status
            .lines()
            .find_map(|line| line.strip_prefix("VmHWM:"))
            .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
            .context("status has VmHWM")?;
        Ok(ProcessUsage {
            cpu_ms: ticks * 10.0,
            peak_rss_mib: peak_kib / 1024.0,
        })
    }
}

/// The median of rounds with their smallest and largest.
struct Spread {
    median: f64,
    min: f64,
    max: f64,
}

impl Spread {
    fn of(rounds: &[Round], pick: fn(&Round) -> f64) -> Spread {
        let mut values: Vec<f64> = rounds.iter().map(pick).collect();
        values.sort_by(f64::total_cmp);
        Spread {
            median: values[values.len() / 2],
            min: values[0],
            max: values[values.len() - 1],
        }
    }

    fn json(&self) -> serde_json::Value {
        json!({ "median": self.median, "min": self.min, "max": self.max })
    }
}

impl std::fmt::Display for Spread {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let digits = if self.median < 10.0 { 2 } else { 0 };
        write!(
            f,
            "{:.digits$} [{:.digits$}-{:.digits$}]",
            self.median, self.min, self.max
        )
    }
}
