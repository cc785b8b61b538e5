//! The chaos run: a batch through worker processes while workers are killed with SIGKILL
//! and restarted, Redis crashes and comes back, and the provider has short outages answering
//! 429, 500 or 455. At the end it counts what a user would check: nothing lost, nothing paid
//! twice, no duplicate or corrupt object.

use std::{
    fmt,
    path::PathBuf,
    time::{Duration, Instant},
};

use anyhow::Context;
use reelq_core::{JobId, JobState};
use reelq_sim::CallbackMode;
use sha2::{Digest, Sha256};
use tokio::{process::Child, time::interval};

use crate::{Deployment, files_under, prompts, read_object};

/// What to inflict.
#[derive(Debug, Clone)]
pub struct ChaosPlan {
    pub jobs: usize,
    pub workers: usize,
    /// A random worker is killed (SIGKILL) and replaced this often.
    pub kill_every: Duration,
    /// Redis is crashed (SIGKILL) and restarted this many times, spread over the run.
    pub redis_restarts: usize,
    /// The provider has an outage (every call answers an error) for a quarter of this, this
    /// often.
    pub burst_every: Duration,
    pub generation_time: Duration,
    /// The run fails if jobs have not settled by then.
    pub timeout: Duration,
    /// Provider callbacks (to a receiver that is never killed) dropped or sent twice, in %.
    pub callback_drop_percent: u8,
    pub callback_duplicate_percent: u8,
}

/// What survived.
#[derive(Debug, Clone, Default)]
pub struct ChaosReport {
    pub enqueued: usize,
    pub stored: usize,
    /// Ended `failed`, `rejected` or `expired` (none are expected from these faults).
    pub failed: usize,
    /// Parked because a worker died between sending a create and recording its answer.
    pub uncertain: usize,
    /// Not settled by the timeout, or missing from the ledger.
    pub lost: usize,
    /// Most creates the provider saw for one job.
    pub max_submissions_per_job: u32,
    /// Videos in the store beyond one per stored job.
    pub duplicate_objects: usize,
    /// Other files in the store: staging files of uploads cut short by a kill.
    pub stray_files: Vec<String>,
    /// Stored objects whose bytes differ from what the provider served.
    pub corrupt_objects: usize,
    pub worker_kills: usize,
    pub redis_restarts: usize,
    pub fault_bursts: usize,
    pub elapsed: Duration,
    /// `job id: class: error` of each job that did not end stored, for the reader.
    pub not_stored: Vec<String>,
}

impl ChaosReport {
    /// The promise: no job lost, none submitted twice, every stored object whole and single.
    pub fn kept_the_promise(&self) -> bool {
        self.lost == 0
            && self.max_submissions_per_job <= 1
            && self.duplicate_objects == 0
            && self.corrupt_objects == 0
    }
}

impl fmt::Display for ChaosReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "jobs enqueued            {}", self.enqueued)?;
        writeln!(f, "stored                   {}", self.stored)?;
        writeln!(f, "failed                   {}", self.failed)?;
        writeln!(f, "uncertain (to reconcile) {}", self.uncertain)?;
        writeln!(f, "lost                     {}", self.lost)?;
        writeln!(
            f,
            "max submissions per job  {}",
            self.max_submissions_per_job
        )?;
        writeln!(f, "duplicate objects        {}", self.duplicate_objects)?;
        writeln!(f, "corrupt objects          {}", self.corrupt_objects)?;
        writeln!(f, "stray staging files      {}", self.stray_files.len())?;
        writeln!(
            f,
            "inflicted                {} worker kills, {} redis crashes, {} fault bursts, \
             callbacks dropped/duplicated at random",
            self.worker_kills, self.redis_restarts, self.fault_bursts
        )?;
        write!(
            f,
            "elapsed                  {:.1} s",
            self.elapsed.as_secs_f64()
        )?;
        for line in &self.not_stored {
            write!(f, "\n  not stored: {line}")?;
        }
        Ok(())
    }
}

/// Error codes of the provider outages, in turn: rate limit, server error, maintenance.
const BURST_CODES: [i64; 3] = [429, 500, 455];

pub async fn run(worker_bin: PathBuf, plan: &ChaosPlan) -> anyhow::Result<ChaosReport> {
    let started = Instant::now();
    let mut deployment = Deployment::start(worker_bin, plan.generation_time).await;
    let mut report = ChaosReport {
        enqueued: plan.jobs,
        ..ChaosReport::default()
    };
    deployment.sim.set_callback_mode(CallbackMode::Mixed {
        drop_percent: plan.callback_drop_percent,
        duplicate_percent: plan.callback_duplicate_percent,
    });
    let listener = deployment.callback_listener().await;
    let _receiver = deployment.spawn_callback_receiver(listener);
    let mut workers: Vec<Child> = (0..plan.workers)
        .map(|worker_idx| deployment.spawn_worker_process(&format!("chaos-{worker_idx}-0")))
        .collect();
    let job_ids = deployment
        .enqueue_manifest(&prompts("chaos", plan.jobs))
        .await;

    let client = deployment.client.clone();
    let waited_ids = job_ids.clone();
    let mut settled = tokio::spawn(async move { client.wait(&waited_ids, |_| {}).await });
    let deadline = tokio::time::sleep(plan.timeout);
    tokio::pin!(deadline);
    let mut kill_tick = interval(plan.kill_every);
    let mut burst_tick = interval(plan.burst_every);
    let mut progress_tick = interval(Duration::from_millis(200));
    kill_tick.reset();
    burst_tick.reset();
    loop {
        tokio::select! {
            waited = &mut settled => {
                waited.context("waiting task")?.context("waiting for jobs")?;
                break;
            }
            _ = &mut deadline => break,
            _ = kill_tick.tick() => {
                let worker_idx = rand::random_range(0..workers.len());
                workers[worker_idx].kill().await.context("killing a worker")?;
                report.worker_kills += 1;
                let name = format!("chaos-{worker_idx}-{}", report.worker_kills);
                workers[worker_idx] = deployment.spawn_worker_process(&name);
            }
            _ = burst_tick.tick() => {
                let code = BURST_CODES[report.fault_bursts % BURST_CODES.len()];
                deployment.sim.outage(code, plan.burst_every / 4);
                report.fault_bursts += 1;
            }
            _ = progress_tick.tick(), if report.redis_restarts < plan.redis_restarts => {
                // Progress is counted in creates, which all come well before the last
                // video is done, so every planned crash lands mid-run.
                let n_created = deployment.sim.stats().creates as usize;
                let threshold = plan.jobs * (report.redis_restarts + 1) / (plan.redis_restarts + 1);
                if n_created >= threshold {
                    deployment.redis.restart().context("restarting redis")?;
                    report.redis_restarts += 1;
                }
            }
        }
    }
    drop(workers);
    tally(&deployment, &job_ids, &mut report).await?;
    report.elapsed = started.elapsed();
    Ok(report)
}

async fn tally(
    deployment: &Deployment,
    job_ids: &[JobId],
    report: &mut ChaosReport,
) -> anyhow::Result<()> {
    let store_dir = deployment.store_dir();
    for &job_id in job_ids {
        let Some(record) = deployment.client.status(job_id).await? else {
            report.lost += 1;
            continue;
        };
        match record.state {
            JobState::Stored => {
                report.stored += 1;
                let task_id = record.task_id.as_deref().unwrap_or_default();
                let bytes =
                    read_object(&store_dir, record.object_key.as_deref().unwrap_or_default());
                let sha256 = hex::encode(Sha256::digest(&bytes));
                if bytes != reelq_sim::render_video(task_id) || Some(sha256) != record.sha256 {
                    report.corrupt_objects += 1;
                }
            }
            JobState::Uncertain => report.uncertain += 1,
            state if state.is_terminal() => report.failed += 1,
            _ => report.lost += 1,
        }
        if record.state != JobState::Stored {
            let class = record.error_class.map_or("-", |class| class.as_str());
            let error = record.error.as_deref().unwrap_or("-");
            report
                .not_stored
                .push(format!("{job_id} {}: {class}: {error}", record.state));
        }
    }
    let mut n_videos = 0usize;
    for name in files_under(&store_dir) {
        if name.ends_with(".mp4") {
            n_videos += 1;
        } else {
            report.stray_files.push(name);
        }
    }
    report.duplicate_objects = n_videos.saturating_sub(report.stored);
    report.max_submissions_per_job = deployment.sim.stats().max_creates_per_fingerprint;
    Ok(())
}
