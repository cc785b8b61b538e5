//! `large-batch`: a batch of many jobs enqueued while another producer's single enqueues are timed.

use super::*;

pub(crate) async fn large_batch(
    reelq_bin: PathBuf,
    jobs: usize,
    out: PathBuf,
) -> anyhow::Result<()> {
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
