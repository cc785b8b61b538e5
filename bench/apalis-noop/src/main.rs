//! apalis-redis's side of reelq's queue-overhead benchmark (`scripts/bench`): push N no-op
//! tasks in bulk, then run one bare worker with the given concurrency until all are done.
//! Usage: `apalis-noop REDIS_URL JOBS CONCURRENCY`; prints one JSON object.

use std::{
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use apalis::prelude::*;
use apalis_redis::{Config, RedisStorage};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Noop {
    n: usize,
}

#[derive(Clone)]
struct Progress {
    done: Arc<AtomicUsize>,
    jobs: usize,
}

async fn noop(_task: Noop, progress: Data<Progress>, worker: WorkerContext) -> Result<(), BoxDynError> {
    if progress.done.fetch_add(1, Ordering::Relaxed) + 1 == progress.jobs {
        worker.stop()?;
    }
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), BoxDynError> {
    let args: Vec<String> = std::env::args().collect();
    let (url, jobs, concurrency) = (&args[1], args[2].parse::<usize>()?, args[3].parse::<usize>()?);
    let conn = apalis_redis::connect(url.as_str()).await?;
    let mut storage = RedisStorage::<Noop>::new(conn).with_config(Config::default().queue("bench_noop"));

    let started = Instant::now();
    // Pushed in chunks of 1000 as a user would. Note: with more than about 8000 tasks
    // scheduled at once, apalis-redis's fetch script fails ("too many results to unpack"),
    // so scripts/bench runs it with 5000.
    for chunk in (0..jobs).collect::<Vec<_>>().chunks(1000) {
        storage.push_bulk(chunk.iter().map(|&n| Noop { n }).collect()).await?;
    }
    let bulk_per_s = jobs as f64 / started.elapsed().as_secs_f64();

    let progress = Progress { done: Arc::new(AtomicUsize::new(0)), jobs };
    let started = Instant::now();
    // Polled every 10 ms: apalis-redis parks after an empty fetch until the next tick.
    let worker = WorkerBuilder::new(format!("bench-{}", std::process::id()))
        .backend(storage.poll_with_interval(Duration::from_millis(10)))
        .data(progress.clone())
        .concurrency(concurrency)
        .build(noop);
    worker.run().await?;
    let process_per_s = jobs as f64 / started.elapsed().as_secs_f64();
    println!(
        "{{\"jobs\":{jobs},\"concurrency\":{concurrency},\"enqueue_bulk_per_s\":{bulk_per_s},\"process_jobs_per_s\":{process_per_s},\"done\":{}}}",
        progress.done.load(Ordering::Relaxed)
    );
    Ok(())
}
