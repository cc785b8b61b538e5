//! The chaos run, in the production shape: a batch through worker processes while workers
//! are killed with SIGKILL and restarted, Redis fails ([`RedisFault`]: the primary's host
//! loses power, the last second of an `everysec` AOF gone, under Sentinel a failover to the
//! replica; a stale replica promoted; a backup restored), the provider has short outages
//! answering 429 or 455, its own server answers 500 and a gateway 502 after it accepted (and
//! billed) a create, and callbacks are dropped or sent twice. At the end it counts what a user
//! would check: nothing acknowledged lost, nothing paid twice, no duplicate or corrupt object,
//! uncertain jobs settled from the provider's records, and most jobs stored.

use std::{
    collections::{HashMap, HashSet},
    fmt,
    path::PathBuf,
    time::{Duration, Instant},
};

use anyhow::Context;
use futures_util::StreamExt;
use reelq_core::{JobId, JobState, ProviderKind};
use reelq_producer::Client;
use reelq_queue::Ledger;
use reelq_sim::{CallbackMode, SimEvent};
use sha2::{Digest, Sha256};
use tokio::sync::broadcast::error::RecvError;
use tokio::{process::Child, time::interval};

use crate::{Deployment, RedisSetup, files_under, prompts, read_object};

/// What to inflict. Every job's prompt is its own (`prompts`): a create is counted as paid
/// twice when two tasks share a prompt, at any provider.
#[derive(Debug, Clone)]
pub struct ChaosPlan {
    pub jobs: usize,
    pub workers: usize,
    /// A random worker is killed (SIGKILL) and replaced this often.
    pub kill_every: Duration,
    /// How Redis runs: `always`, or a replica behind Sentinel (`replicas:1`), or the unsafe
    /// `everysec` reelq refuses by default.
    pub redis_setup: RedisSetup,
    /// Redis fails this many times, spread over the run.
    pub redis_restarts: usize,
    /// How Redis fails.
    pub redis_fault: RedisFault,
    /// Jobs go to these providers in turn.
    pub providers: Vec<ProviderKind>,
    /// Instead, every job names this route of the catalog; fault bursts then include a 402
    /// (an account out of credits), which moves the job it meets on to the next candidate.
    pub route: Option<String>,
    /// Every fourth outage is a gateway answering 502 to creates the provider accepted.
    pub gateway_faults: bool,
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

/// How Redis fails in a chaos run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RedisFault {
    /// The primary's host loses power ([`Deployment::power_loss_of_primary`]): a lone
    /// primary boots from what its AOF kept (with `everysec` and a replica, the replica then
    /// resyncs from it: the ledger goes back a second); under Sentinel the replica is
    /// promoted and the old host rejoins as a replica.
    PowerLoss,
    /// A stale replica promoted ([`Deployment::stale_promotion`], Sentinel only): the ledger
    /// goes back in time.
    StalePromotion,
    /// An operator restores a backup (a lone primary): the first fault takes it, the next
    /// restores it, and so on; the ledger goes back to the backup.
    RestoreBackup,
    /// An operator moves the ledger's slot to another master of the cluster
    /// ([`Deployment::move_ledger_slot`]), key by key, under the running workers and
    /// producers.
    SlotMove,
    /// The host of the master holding the jobs loses power, in a ledger whose home has a
    /// master of its own ([`Deployment::power_loss_of_jobs_master`]).
    PowerLossOfJobs,
}

/// What survived.
#[derive(Debug, Clone, Default)]
pub struct ChaosReport {
    pub enqueued: usize,
    pub stored: usize,
    /// Ended `failed`, `rejected` or `expired` (none are expected from these faults).
    pub failed: usize,
    /// Still `uncertain` at the end: a create whose outcome nothing could settle.
    pub uncertain: usize,
    /// Jobs that were `uncertain` at some point and were settled (from a callback or the
    /// provider's records) without a second create.
    pub uncertain_settled: usize,
    /// Creates the provider accepted (and would bill), over all jobs.
    pub paid_creates: u64,
    /// Not settled by the timeout, or missing from the ledger.
    pub lost: usize,
    /// Most creates the provider saw for one job.
    pub max_submissions_per_job: u32,
    /// Videos in the store beyond one per job (each job's video has one key).
    pub duplicate_objects: usize,
    /// Videos of jobs the ledger does not hold as stored: a rollback forgot the store (the
    /// job is fetched again into the same key once settled). Not a harm; shown.
    pub videos_of_unstored_jobs: usize,
    /// Other files in the store: staging files of uploads cut short by a kill.
    pub stray_files: Vec<String>,
    /// Stored objects whose bytes differ from what the provider served.
    pub corrupt_objects: usize,
    /// Jobs that left a route's candidate for the next.
    pub fallbacks: usize,
    pub worker_kills: usize,
    pub redis_restarts: usize,
    pub aof_bytes_lost: u64,
    /// Keys the slot moves carried to another master.
    pub keys_moved: u64,
    pub fault_bursts: usize,
    /// Rollbacks the ledger recorded as declared (the ledger went back in time).
    pub rollbacks: u64,
    /// How long the last rollback held paid creates, in ms.
    pub held_ms: Option<u64>,
    pub elapsed: Duration,
    /// `job id: class: error` of each job that did not end stored, for the reader.
    pub not_stored: Vec<String>,
}

impl ChaosReport {
    /// The promise: no job lost, none submitted twice, every stored object whole and
    /// single; and progress: at least 90 % of the jobs stored (a run where nothing works
    /// must not pass). Not more: a kie submit that a kill or a gateway's 502 cut off stays
    /// `uncertain` when the run drops its callback too, by design (kie lists no tasks to
    /// reconcile from, and nothing is resubmitted blindly). How many that is follows the
    /// dice: a run here left 6 of 100 so, and a 95 % bar failed it.
    pub fn kept_the_promise(&self) -> bool {
        self.lost == 0
            && self.max_submissions_per_job <= 1
            && self.duplicate_objects == 0
            && self.corrupt_objects == 0
            && self.stored * 100 >= self.enqueued * 90
    }
}

impl fmt::Display for ChaosReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "jobs enqueued            {}", self.enqueued)?;
        writeln!(f, "stored                   {}", self.stored)?;
        writeln!(f, "failed                   {}", self.failed)?;
        writeln!(f, "uncertain, settled       {}", self.uncertain_settled)?;
        writeln!(f, "uncertain, left          {}", self.uncertain)?;
        writeln!(f, "paid creates             {}", self.paid_creates)?;
        writeln!(f, "lost                     {}", self.lost)?;
        writeln!(
            f,
            "max submissions per job  {}",
            self.max_submissions_per_job
        )?;
        writeln!(f, "duplicate objects        {}", self.duplicate_objects)?;
        if self.fallbacks > 0 {
            writeln!(f, "moved on along a route   {}", self.fallbacks)?;
        }
        if self.videos_of_unstored_jobs > 0 {
            writeln!(
                f,
                "videos of unstored jobs  {} (a rollback forgot the store)",
                self.videos_of_unstored_jobs
            )?;
        }
        writeln!(f, "corrupt objects          {}", self.corrupt_objects)?;
        writeln!(f, "stray staging files      {}", self.stray_files.len())?;
        writeln!(
            f,
            "inflicted                {} worker kills, {} redis faults ({} AOF bytes \
             lost, {} keys moved between masters), {} fault bursts, callbacks \
             dropped/duplicated at random",
            self.worker_kills,
            self.redis_restarts,
            self.aof_bytes_lost,
            self.keys_moved,
            self.fault_bursts
        )?;
        writeln!(
            f,
            "ledger rollbacks         {} declared, paid creates held {}",
            self.rollbacks,
            self.held_ms
                .map_or("-".to_owned(), |ms| format!("{:.1} s", ms as f64 / 1000.0))
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

/// Error codes of the provider's faults, in turn: (with `gateway_faults`) a gateway's 502
/// after acceptance of one create, then a rate limit outage, the provider's own server
/// answering 500 after accepting one create, a maintenance outage.
const BURST_CODES: [i64; 4] = [502, 429, 500, 455];

/// How long after the enqueue Redis may first fail: past the second an `everysec` AOF or a
/// stale replica can lose.
const ENQUEUE_SETTLED: Duration = Duration::from_secs(3);

pub async fn run(worker_bin: PathBuf, plan: &ChaosPlan) -> anyhow::Result<ChaosReport> {
    let started = Instant::now();
    let mut deployment =
        Deployment::start_with(worker_bin, plan.generation_time, plan.redis_setup).await;
    // Reconciliation at test speed: a pass every half second, and a create the provider's
    // list has not shown for 3 s counts as never made (production: 10 minutes). Within the
    // grace below, so a create refused before it was made (a fault answered as a gateway's
    // 503) is submitted again and stored in the run instead of counting against progress by
    // how many such faults the dice dealt (a run once ended 94 stored, 5 of them waiting).
    let settings = "reconcile_every_ms = 500\nreconcile_absent_after_ms = 3000";
    // As at a real provider: a create takes a moment (so kills land mid-call), and the
    // account caps generations in flight (so creates spread over the whole run, through
    // every fault). An uncertain job gives its slot back after 5 s.
    deployment.sim.set_create_latency(Duration::from_millis(50));
    deployment.account_extra = format!(
        "max_in_flight = {}\nuncertain_slot_ms = 5000\n",
        (plan.jobs / 4).max(4)
    );
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
        .map(|worker_idx| spawn_worker(&mut deployment, settings, worker_idx, 0))
        .collect();
    let job_ids = match plan.route.as_deref() {
        Some(route) => {
            deployment
                .enqueue_routed(route, &prompts("chaos", plan.jobs))
                .await
        }
        None => {
            deployment
                .enqueue_across(&prompts("chaos", plan.jobs), &plan.providers)
                .await
        }
    };
    let enqueued_at = Instant::now();

    // Late callbacks and reconciliation passes get this long to settle uncertain jobs.
    let grace = plan.generation_time + Duration::from_secs(5);
    let (client, ledger) = (deployment.client.clone(), deployment.ledger.clone());
    let watch = || {
        let (client, ledger) = (client.clone(), ledger.clone());
        let waited_ids = job_ids.clone();
        tokio::spawn(async move {
            // The watcher's own connection breaks with each Redis fault: it reconnects and
            // waits again (the run's deadline bounds it).
            loop {
                match settle(&client, &ledger, &waited_ids, grace).await {
                    Err(err) if format!("{err:#}").contains("redis") => {
                        eprintln!("waiting for jobs: {err:#}; again");
                        tokio::time::sleep(Duration::from_millis(500)).await;
                    }
                    settled => return settled,
                }
            }
        })
    };
    let mut settled = watch();
    let deadline = tokio::time::sleep(plan.timeout);
    tokio::pin!(deadline);
    let mut kill_tick = interval(plan.kill_every);
    let mut burst_tick = interval(plan.burst_every);
    let mut progress_tick = interval(Duration::from_millis(200));
    kill_tick.reset();
    let mut backup = None;
    burst_tick.reset();
    // A failover holds this loop for seconds; the ticks missed meanwhile must not then fire
    // all at once (a burst of kills no operator would see).
    kill_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    burst_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            waited = &mut settled => {
                waited.context("waiting task")??;
                break;
            }
            _ = &mut deadline => break,
            _ = kill_tick.tick() => {
                let worker_idx = rand::random_range(0..workers.len());
                workers[worker_idx].kill().await.context("killing a worker")?;
                report.worker_kills += 1;
                workers[worker_idx] =
                    spawn_worker(&mut deployment, settings, worker_idx, report.worker_kills);
            }
            _ = burst_tick.tick() => {
                let codes = if plan.gateway_faults { &BURST_CODES[..] } else { &BURST_CODES[1..] };
                let code = match plan.route.as_deref() {
                    // Every other burst of a routed run, an account out of credits.
                    Some(_) if report.fault_bursts % 2 == 1 => 402,
                    Some(_) => codes[report.fault_bursts / 2 % codes.len()],
                    None => codes[report.fault_bursts % codes.len()],
                };
                match code {
                    402 => deployment.sim.fail_next_creates(402, 1),
                    // The next create is accepted and then answered 502 by the gateway: one
                    // per burst, since every create it answers is a job nothing may
                    // resubmit, and a timed outage would hit a whole wave of creates or none.
                    502 => deployment.sim.fail_after_accepting_next_creates(502, 1),
                    500 => deployment.sim.server_error_after_accepting_next_creates(1),
                    code => deployment.sim.outage(code, plan.burst_every / 4),
                }
                report.fault_bursts += 1;
            }
            _ = progress_tick.tick(), if report.redis_restarts < plan.redis_restarts => {
                // Progress is counted in creates, which all come well before the last
                // video is done, so every planned crash lands mid-run. Not in the enqueue's
                // last second: a Redis that goes back a second would take acknowledged jobs
                // with it, which only their producer could enqueue again.
                let n_created = deployment.sim.stats().creates as usize;
                let threshold = plan.jobs * (report.redis_restarts + 1) / (plan.redis_restarts + 1);
                if n_created >= threshold && enqueued_at.elapsed() >= ENQUEUE_SETTLED {
                    // Right after a create arrives: its submit was just made durable, so
                    // the fault lands on acknowledged writes, not on a quiet moment.
                    next_create(&deployment.sim).await;
                    report.aof_bytes_lost += match plan.redis_fault {
                        RedisFault::PowerLoss => deployment
                            .power_loss_of_primary()
                            .await
                            .context("a redis power loss")?,
                        RedisFault::PowerLossOfJobs => deployment
                            .power_loss_of_jobs_master()
                            .await
                            .context("a power loss of the jobs' master")?,
                        RedisFault::StalePromotion => deployment
                            .stale_promotion()
                            .await
                            .context("a stale promotion")?,
                        RedisFault::RestoreBackup => {
                            match backup.take() {
                                None => backup = Some(deployment.backup()?),
                                Some(taken) => deployment.restore_backup(&taken)?,
                            }
                            0
                        }
                        RedisFault::SlotMove => {
                            report.keys_moved += deployment
                                .move_ledger_slot()
                                .await
                                .context("a slot move")?;
                            0
                        }
                    };
                    report.redis_restarts += 1;
                    // What settled before the fault may have gone back with it: the jobs
                    // are judged on the ledger after it.
                    settled.abort();
                    settled = watch();
                }
            }
        }
    }
    drop(workers);
    // Read-only, so read again if the last fault left this run's own connection broken.
    let mut tries = 0;
    report = loop {
        let mut counted = report.clone();
        match tally(&deployment, &job_ids, &mut counted).await {
            Ok(()) => break counted,
            Err(err) if tries < 20 && format!("{err:#}").contains("redis") => {
                tries += 1;
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(err) => return Err(err),
        }
    };
    if let Some(keep) = std::env::var_os("CHAOS_KEEP_LOGS") {
        // The workers' logs outlive the run's temp dir, for whoever reads a failed run.
        let run = format!("{:?}-{}", plan.redis_fault, deployment.redis.port());
        deployment.copy_logs_to(&std::path::Path::new(&keep).join(run))?;
    }
    report.elapsed = started.elapsed();
    Ok(report)
}

/// Starts the worker of slot `worker_idx` (its `life`th process): each slot keeps its paid
/// creates in a file of its own, which the process replacing a killed one reads back, as a
/// replica's volume outlives its process.
fn spawn_worker(
    deployment: &mut Deployment,
    settings: &str,
    worker_idx: usize,
    life: usize,
) -> Child {
    let journal = deployment
        .dir
        .path()
        .join(format!("paid-creates-{worker_idx}.jsonl"));
    deployment.settings = format!(
        "{settings}\npaid_creates_file = {:?}",
        journal.display().to_string()
    );
    deployment.spawn_worker_process(&format!("chaos-{worker_idx}-{life}"))
}

/// Waits (up to 10 s) for the provider to receive its next create.
async fn next_create(sim: &reelq_sim::Simulator) {
    let mut events = sim.events();
    let created = async {
        loop {
            match events.recv().await {
                Ok(SimEvent::CreateReceived) | Err(RecvError::Closed) => return,
                Ok(_) | Err(RecvError::Lagged(_)) => {}
            }
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(10), created).await;
}

/// Waits until every job has settled, then gives the `uncertain` ones `grace` to move (a
/// late callback, a reconciliation pass, a resubmit of a create the provider never got); as
/// long as one of them moves within `grace`, waits again (a resubmit may meet the same
/// outage and come back `uncertain`). Returns once every job is settled and no `uncertain`
/// one has moved for `grace`.
async fn settle(
    client: &Client,
    ledger: &Ledger,
    job_ids: &[JobId],
    grace: Duration,
) -> anyhow::Result<()> {
    loop {
        client
            .wait(job_ids, |_| {})
            .await
            .context("waiting for jobs")?;
        // Subscribed before the uncertain ones are read, so none moves unseen.
        let mut changes = ledger.changes().await?;
        let mut uncertain = HashSet::new();
        for &job_id in job_ids {
            let record = client.status(job_id).await?;
            if record.is_some_and(|record| record.state == JobState::Uncertain) {
                uncertain.insert(job_id);
            }
        }
        if uncertain.is_empty() {
            return Ok(());
        }
        let one_moves = async {
            while let Some((job_id, state)) = changes.next().await {
                if state != JobState::Uncertain && uncertain.contains(&job_id) {
                    return true;
                }
            }
            false
        };
        // Running out of grace is an answer, not a failure: those stay `uncertain`.
        if !matches!(tokio::time::timeout(grace, one_moves).await, Ok(true)) {
            return Ok(());
        }
    }
}

async fn tally(
    deployment: &Deployment,
    job_ids: &[JobId],
    report: &mut ChaosReport,
) -> anyhow::Result<()> {
    let store_dir = deployment.store_dir();
    let made_twice = deployment.sim.stats().prompts_made_twice;
    for &job_id in job_ids {
        let Some(record) = deployment.client.status(job_id).await? else {
            report.lost += 1;
            continue;
        };
        let history = deployment.client.history(job_id).await?;
        let was_uncertain = history.iter().any(|event| event.contains(" uncertain "));
        if was_uncertain && record.state != JobState::Uncertain {
            report.uncertain_settled += 1;
        }
        if record
            .spec
            .route
            .as_ref()
            .is_some_and(|route| !route.left.is_empty())
        {
            report.fallbacks += 1;
        }
        match record.state {
            JobState::Stored => {
                report.stored += 1;
                let task_id = record.task_id.as_deref().unwrap_or_default();
                let bytes =
                    read_object(&store_dir, record.object_key.as_deref().unwrap_or_default());
                let sha256 = hex::encode(Sha256::digest(&bytes));
                if bytes != deployment.sim.video(task_id).unwrap_or_default()
                    || Some(sha256) != record.sha256
                {
                    report.corrupt_objects += 1;
                }
            }
            JobState::Uncertain => report.uncertain += 1,
            state if state.is_terminal() => report.failed += 1,
            _ => report.lost += 1,
        }
        if made_twice.contains(&record.spec.prompt) {
            // The whole story of a job paid twice.
            report.not_stored.push(format!(
                "{job_id} {} {}: PAID TWICE",
                record.spec.provider, record.state
            ));
            let events = history.iter().map(|event| format!("    {event}"));
            report.not_stored.extend(events);
        }
        if record.state != JobState::Stored {
            let class = record.error_class.map_or("-", |class| class.as_str());
            let error = record.error.as_deref().unwrap_or("-");
            report.not_stored.push(format!(
                "{job_id} {} {}: {class}: {error}",
                record.spec.provider, record.state
            ));
            if report.not_stored.len() <= 2 {
                // The first ones' story, for whoever reads a failed run.
                report
                    .not_stored
                    .extend(history.iter().map(|event| format!("    {event}")));
            }
        }
    }
    let mut videos_per_job: HashMap<String, usize> = HashMap::new();
    for name in files_under(&store_dir) {
        if let Some(stem) = name.strip_suffix(".mp4") {
            // A video's key ends with its job's id (26 characters).
            let job = stem[stem.len().saturating_sub(26)..].to_owned();
            *videos_per_job.entry(job).or_default() += 1;
        } else if name.starts_with("history/") {
            // Archived history, beside the videos.
        } else if ![reelq_storage::CHECKSUM_SUFFIX, ".thumbnail"]
            .iter()
            .any(|beside| name.ends_with(&format!(".mp4{beside}")))
        {
            report.stray_files.push(name);
        }
    }
    report.duplicate_objects = videos_per_job.values().map(|n| n - 1).sum();
    report.videos_of_unstored_jobs = videos_per_job.len().saturating_sub(report.stored);
    let stats = deployment.sim.stats();
    // Paid twice is the same body twice, or the same job's prompt at two of a route's
    // candidates.
    report.max_submissions_per_job = stats
        .max_creates_per_fingerprint
        .max(stats.max_creates_per_prompt);
    report.paid_creates = stats.creates;
    let history = deployment.ledger.history_status().await?;
    report.rollbacks = history.rollbacks;
    report.held_ms = history.held_ms;
    Ok(())
}
