//! `reelq-bench`: benchmark sections that need a whole deployment (see `scripts/bench`).
//! `callback-latency`: N jobs whose only way forward is the provider's callback (scheduled
//! polls are ten minutes out); prints callback-received -> video-stored p50/p99 from the
//! ledger's event log and writes them as JSON.

use std::{path::PathBuf, time::Duration};

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
    let Section::CallbackLatency {
        worker_bin,
        jobs,
        workers,
        out,
    } = Args::parse().section;
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
