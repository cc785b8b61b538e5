//! `archive`: what keeping history in the object store saves Redis, and what it costs.
//! N jobs (one batch) through the whole lifecycle with one worker process that does not
//! archive (today's layout: every finished record stays in Redis); then the archiver's passes
//! (in this process, grace 0) move them to the store (a local directory): Redis memory per
//! finished job before and after, the archive's throughput and Redis CPU and commands per
//! job, segment sizes and compression, the time to read one archived job by id, and a day's
//! history read whole (by reelq, and by DuckDB where a Python with duckdb is given).

use std::{
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use anyhow::Context;
use reelq_core::JobId;
use reelq_e2e::{Deployment, prompts};
use reelq_queue::ArchiveGrace;
use reelq_storage::{HistoryStore, S3Options, StoreConfig, history::day_of};
use reelq_worker::archiver::Archiver;
use serde_json::json;

use crate::{redis_stats, settled_count};

pub(crate) async fn archive(
    worker_bin: PathBuf,
    jobs: usize,
    python: Option<PathBuf>,
    out: PathBuf,
) -> anyhow::Result<()> {
    let mut deployment = Deployment::start(worker_bin, Duration::ZERO).await;
    deployment.extra_config = "[history]\narchive = false\n".into();
    let mut conn = redis::Client::open(deployment.redis.url())?
        .get_multiplexed_async_connection()
        .await?;
    let empty = redis_stats(&mut conn).await?;
    let job_ids = deployment.enqueue_manifest(&prompts("archive", jobs)).await;
    {
        let _worker = deployment.spawn_worker_process("lifecycle");
        settled_count(&deployment, jobs).await?;
    }
    let kept = redis_stats(&mut conn).await?;

    let history = HistoryStore::open(&StoreConfig {
        url: deployment.store_dir().display().to_string(),
        part_size: 8 * 1024 * 1024,
        s3: S3Options::default(),
    })?;
    let grace = ArchiveGrace::NONE;
    let archiver = Archiver::new(deployment.ledger.clone(), history.clone(), grace, 20_000);
    let started = Instant::now();
    let (mut archived, mut segments, mut bytes) = (0, 0, 0);
    loop {
        let pass = archiver.pass().await?;
        if pass.read == 0 && pass.batches == 0 {
            break;
        }
        (archived, segments, bytes) = (
            archived + pass.archived,
            segments + pass.segments,
            bytes + pass.bytes,
        );
    }
    let archive_s = started.elapsed().as_secs_f64();
    let after = redis_stats(&mut conn).await?;
    anyhow::ensure!(
        archived as usize == jobs,
        "archived {archived} of {jobs} jobs"
    );

    let per_job = |total: f64| total / jobs as f64;
    let memory_kept = per_job(kept.used_memory as f64 - empty.used_memory as f64);
    let memory_after = per_job(after.used_memory as f64 - empty.used_memory as f64);
    let calls = |stats: &crate::RedisStats| stats.calls.values().sum::<u64>();
    let archive_commands = per_job((calls(&after) - calls(&kept)) as f64);
    let archive_cpu_us = per_job((after.cpu_s - kept.cpu_s) * 1e6);

    let day = day_of(job_ids[0]);
    let read_started = Instant::now();
    let lines = history.day::<JobId>(day).await?;
    let day_read_s = read_started.elapsed().as_secs_f64();
    let raw_bytes: usize = lines.iter().map(|line| line.json.len() + 1).sum();

    let client = deployment.client.clone().with_history(history);
    let mut by_id_ms = Vec::new();
    for job_id in job_ids.iter().step_by((jobs / 50).max(1)) {
        let started = Instant::now();
        let record = client.status(*job_id).await?;
        by_id_ms.push(started.elapsed().as_secs_f64() * 1000.0);
        anyhow::ensure!(record.is_some(), "job {job_id} not found after archiving");
    }
    by_id_ms.sort_by(f64::total_cmp);
    let p50_ms = by_id_ms[by_id_ms.len() / 2];
    let max_ms = by_id_ms[by_id_ms.len() - 1];

    let duckdb = match &python {
        Some(python) => Some(duckdb_day(python, &deployment.store_dir())?),
        None => None,
    };

    // A day of 1,000,000 jobs: today every finished job stays for the 7-day retention; with
    // the archiver, only the last hour's (the grace) do, at today's bytes each.
    let day_jobs = 1_000_000.0;
    let today_gb = day_jobs * 7.0 * memory_kept / 1e9;
    let archived_gb = (day_jobs / 24.0 * memory_kept + day_jobs * 7.0 * memory_after) / 1e9;
    let figures = json!({
        "section": "archive",
        "jobs": jobs,
        "redis_bytes_per_finished_job_kept": memory_kept,
        "redis_bytes_per_finished_job_after_archive": memory_after,
        "archive_jobs_per_s": jobs as f64 / archive_s,
        "archive_redis_cpu_us_per_job": archive_cpu_us,
        "archive_redis_commands_per_job": archive_commands,
        "segments": segments,
        "segment_bytes_mean": bytes as f64 / segments.max(1) as f64,
        "store_bytes_per_job": bytes as f64 / jobs as f64,
        "compression_ratio": raw_bytes as f64 / bytes.max(1) as f64,
        "read_by_id_ms_p50": p50_ms,
        "read_by_id_ms_max": max_ms,
        "day_read_s_reelq": day_read_s,
        "day_read_s_duckdb": duckdb,
        "projected_redis_gb_1m_jobs_a_day_7_day_retention": today_gb,
        "projected_redis_gb_1m_jobs_a_day_archived_1h_grace": archived_gb,
    });
    std::fs::write(&out, serde_json::to_string_pretty(&figures)?)
        .with_context(|| format!("writing {}", out.display()))?;
    println!(
        "archive: {jobs} jobs (one batch) through the lifecycle, then archived to a local directory"
    );
    println!(
        "  Redis memory per finished job   {memory_kept:.0} B kept in Redis (today), {memory_after:.0} B after archiving"
    );
    println!(
        "  archive                         {:.0} jobs/s, Redis {archive_cpu_us:.0} us CPU and {archive_commands:.2} commands per job",
        jobs as f64 / archive_s
    );
    println!(
        "  segments                        {segments}, {:.0} KiB each on average, {:.0} B per job, compression {:.1}x",
        bytes as f64 / segments.max(1) as f64 / 1024.0,
        bytes as f64 / jobs as f64,
        raw_bytes as f64 / bytes.max(1) as f64
    );
    println!(
        "  read one archived job by id     p50 {p50_ms:.1} ms, max {max_ms:.1} ms ({} reads)",
        by_id_ms.len()
    );
    println!(
        "  read the day whole              {day_read_s:.2} s (reelq){}",
        match duckdb {
            Some(s) => format!(", {s:.2} s (DuckDB read_json, count and distinct ids)"),
            None => String::new(),
        }
    );
    println!(
        "  1,000,000 jobs a day            {today_gb:.1} GB of Redis today (7-day retention), {archived_gb:.2} GB archived (1 h grace)"
    );
    Ok(())
}

/// Seconds DuckDB takes to read a day of segments (count and distinct ids).
fn duckdb_day(python: &Path, store: &Path) -> anyhow::Result<f64> {
    let glob = format!("{}/history/v1/day=*/*.jsonl.gz", store.display());
    let script = format!(
        "import duckdb, time\n\
         t = time.perf_counter()\n\
         duckdb.sql(\"select count(*), count(distinct job_id) from read_json('{glob}', hive_partitioning = true)\").fetchall()\n\
         print(time.perf_counter() - t)"
    );
    let output = std::process::Command::new(python)
        .arg("-c")
        .arg(script)
        .output()
        .with_context(|| format!("running {}", python.display()))?;
    anyhow::ensure!(
        output.status.success(),
        "duckdb: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(String::from_utf8_lossy(&output.stdout).trim().parse()?)
}
