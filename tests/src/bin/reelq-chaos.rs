//! `reelq-chaos`: runs the chaos plan on loopback and prints what survived. Exits 1 if a job
//! was lost, paid twice, stored twice or corrupt, or fewer than 90 % of the jobs were stored.

use std::{path::PathBuf, time::Duration};

use clap::{Parser, ValueEnum};
use reelq_core::ProviderKind;
use reelq_e2e::{
    RedisSetup,
    chaos::{self, ChaosPlan, RedisFault},
};

#[derive(Parser)]
#[command(
    about = "Chaos run: worker kills, Redis power losses or failovers, provider and gateway faults, on loopback"
)]
struct Args {
    /// The reelq-worker binary to run.
    #[arg(long)]
    worker_bin: PathBuf,
    /// How Redis runs and fails: `always` (appendfsync always; each fault a power loss),
    /// `sentinel` (everysec primary and replica behind three sentinels, durability
    /// replicas:1; each power loss is a failover), `stale-promotion` (the same, but each
    /// fault promotes a stale replica: the ledger goes back in time), `replica` (everysec
    /// primary and replica, no failover: the primary boots from its cut AOF and the replica
    /// resyncs from it), `restore-backup` (appendfsync always; faults take a backup, then
    /// restore it under the running workers), `cluster` (a Redis Cluster of three masters
    /// and a replica each, durability replicas:1; each fault kills the master of the ledger's
    /// slot, the cluster promotes its replica and the old host rejoins as a replica),
    /// `reshard` (the same cluster; each fault moves the ledger's slot to another master
    /// under load, `reelq cluster move-slot`), or
    /// `unsafe-everysec` (what reelq refuses by default, to see what it would cost).
    #[arg(long, value_enum, default_value_t = Scenario::Always)]
    scenario: Scenario,
    #[arg(long, default_value_t = 500)]
    jobs: usize,
    #[arg(long, default_value_t = 3)]
    workers: usize,
    #[arg(long, default_value_t = 1500)]
    kill_every_ms: u64,
    /// Power losses of the Redis primary's host, spread over the run.
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
    /// Providers the jobs go to, in turn.
    #[arg(long, value_delimiter = ',', default_value = "kie,openai")]
    providers: Vec<ProviderKind>,
    /// Every job names this route of the catalog instead (`kling-2.6`, `veo-3.1-fast`), and
    /// every other fault burst is an account out of credits, which moves a job on.
    #[arg(long)]
    route: Option<String>,
    /// Leave out the gateway answering 502 after the provider accepted.
    #[arg(long)]
    no_gateway_faults: bool,
}

#[derive(Clone, Copy, ValueEnum)]
enum Scenario {
    Always,
    Sentinel,
    StalePromotion,
    Replica,
    RestoreBackup,
    Cluster,
    /// The cluster with the ledger's home on a master of its own (`home_slot = "own"`); each
    /// fault is a power loss of the home's master.
    ClusterOwnHome,
    /// The same; each fault is a power loss of the master holding the jobs.
    ClusterOwnHomeJobs,
    /// The cluster with the ledger's jobs in six partitions, two on each master; each fault
    /// is a power loss of the home's master (which holds two of them).
    ClusterPartitioned,
    /// The same; each fault is a power loss of a master holding partitions and not the home.
    ClusterPartitionedJobs,
    Reshard,
    UnsafeEverysec,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let plan = ChaosPlan {
        jobs: args.jobs,
        workers: args.workers,
        kill_every: Duration::from_millis(args.kill_every_ms),
        redis_setup: match args.scenario {
            Scenario::Always | Scenario::RestoreBackup => RedisSetup::Always,
            Scenario::Sentinel | Scenario::StalePromotion => RedisSetup::Sentinel,
            Scenario::Replica => RedisSetup::Replica,
            Scenario::Cluster | Scenario::Reshard => RedisSetup::Cluster,
            Scenario::ClusterOwnHome | Scenario::ClusterOwnHomeJobs => RedisSetup::ClusterOwnHome,
            Scenario::ClusterPartitioned | Scenario::ClusterPartitionedJobs => {
                RedisSetup::ClusterPartitioned
            }
            Scenario::UnsafeEverysec => RedisSetup::UnsafeEverysec,
        },
        redis_fault: match args.scenario {
            Scenario::StalePromotion => RedisFault::StalePromotion,
            Scenario::RestoreBackup => RedisFault::RestoreBackup,
            Scenario::Reshard => RedisFault::SlotMove,
            Scenario::ClusterOwnHomeJobs | Scenario::ClusterPartitionedJobs => {
                RedisFault::PowerLossOfJobs
            }
            _ => RedisFault::PowerLoss,
        },
        redis_restarts: args.redis_restarts,
        providers: args.providers,
        route: args.route,
        gateway_faults: !args.no_gateway_faults,
        burst_every: Duration::from_millis(args.burst_every_ms),
        generation_time: Duration::from_millis(args.generation_ms),
        timeout: Duration::from_secs(args.timeout_s),
        callback_drop_percent: args.callback_drop_percent,
        callback_duplicate_percent: args.callback_duplicate_percent,
    };
    let report = chaos::run(args.worker_bin, &plan).await?;
    println!("{report}");
    if !report.kept_the_promise() {
        eprintln!(
            "chaos run FAILED: a job was lost, paid twice, duplicated or corrupted, or under 90 % stored"
        );
        std::process::exit(1);
    }
    Ok(())
}
