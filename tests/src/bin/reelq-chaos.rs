//! `reelq-chaos`: runs the chaos plan on loopback and prints what survived. Exits 1 if a job
//! was lost, paid twice, or stored twice or corrupt.

use std::{path::PathBuf, time::Duration};

use clap::Parser;
use reelq_e2e::chaos::{self, ChaosPlan};

#[derive(Parser)]
#[command(about = "Chaos run: worker kills, Redis crashes and provider faults on loopback")]
struct Args {
    /// The reelq-worker binary to run.
    #[arg(long)]
    worker_bin: PathBuf,
    #[arg(long, default_value_t = 500)]
    jobs: usize,
    #[arg(long, default_value_t = 3)]
    workers: usize,
    #[arg(long, default_value_t = 1500)]
    kill_every_ms: u64,
    #[arg(long, default_value_t = 2)]
    redis_restarts: usize,
    #[arg(long, default_value_t = 1000)]
    burst_every_ms: u64,
    /// How long the simulated provider takes per video: long enough that every job lives
    /// through several kills.
    #[arg(long, default_value_t = 8000)]
    generation_ms: u64,
    #[arg(long, default_value_t = 600)]
    timeout_s: u64,
    #[arg(long, default_value_t = 30)]
    callback_drop_percent: u8,
    #[arg(long, default_value_t = 20)]
    callback_duplicate_percent: u8,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let plan = ChaosPlan {
        jobs: args.jobs,
        workers: args.workers,
        kill_every: Duration::from_millis(args.kill_every_ms),
        redis_restarts: args.redis_restarts,
        burst_every: Duration::from_millis(args.burst_every_ms),
        generation_time: Duration::from_millis(args.generation_ms),
        timeout: Duration::from_secs(args.timeout_s),
        callback_drop_percent: args.callback_drop_percent,
        callback_duplicate_percent: args.callback_duplicate_percent,
    };
    let report = chaos::run(args.worker_bin, &plan).await?;
    println!("{report}");
    if !report.kept_the_promise() {
        eprintln!("chaos run FAILED: a job was lost, paid twice, duplicated or corrupted");
        std::process::exit(1);
    }
    Ok(())
}
