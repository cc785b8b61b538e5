//! `queue` and `in-flight`: reelq's queue overhead beside BullMQ and apalis on the same Redis, and
//! a backlog of generations in flight.

use super::*;

pub(crate) struct QueueRuns {
    pub(crate) bullmq_script: PathBuf,
    pub(crate) apalis_bin: PathBuf,
    pub(crate) jobs: usize,
    pub(crate) singles: usize,
    pub(crate) concurrency: usize,
}

/// apalis-redis's fetch script fails with more than about 8000 tasks due at once ("too many
/// results to unpack"), so it gets at most this many.
pub(crate) const APALIS_MAX_JOBS: usize = 5000;

pub(crate) async fn in_flight(
    worker_bin: PathBuf,
    jobs: usize,
    out: PathBuf,
) -> anyhow::Result<()> {
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

pub(crate) async fn queue_overhead(
    worker_bin: PathBuf,
    runs: QueueRuns,
    out: PathBuf,
) -> anyhow::Result<()> {
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
pub(crate) fn run_json(command: &mut std::process::Command) -> anyhow::Result<serde_json::Value> {
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
