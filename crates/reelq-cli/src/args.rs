//! What `reelq` takes on its command line: the commands, their arguments and options, as
//! clap reads them (their doc comments are the help text).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use reelq_core::{BatchId, JobId, JobRequest, JobState};
use reelq_producer::Durability;

use crate::{batch::BatchCommand, print::OutputArgs, providers::ProvidersCommand, store, verify};

#[derive(Parser)]
#[command(
    name = "reelq",
    version,
    about = "Enqueue and follow reelq video-generation jobs"
)]
pub(crate) struct Cli {
    #[arg(
        long,
        env = "REELQ_REDIS_URL",
        default_value = "redis://127.0.0.1:6379/",
        global = true
    )]
    pub(crate) redis_url: String,
    /// Key prefix of the reelq deployment.
    #[arg(long, env = "REELQ_PREFIX", default_value = "reelq", global = true)]
    pub(crate) prefix: String,
    /// How many partitions a ledger this command creates spreads its jobs over (the workers'
    /// `partitions`; 0: 16 on a Redis Cluster, 1 on one Redis); a ledger that exists keeps
    /// its own.
    #[arg(long, env = "REELQ_PARTITIONS", default_value_t = 0, global = true,
          value_parser = clap::value_parser!(u16).range(0..=i64::from(reelq_queue::MAX_PARTITIONS)))]
    pub(crate) partitions: u16,
    /// What proves an enqueue durable before it is acknowledged: `always` (the primary runs
    /// `appendfsync always`) or `replicas:N` (N replicas acknowledge it).
    #[arg(
        long,
        env = "REELQ_DURABILITY",
        default_value = "always",
        global = true
    )]
    pub(crate) durability: Durability,
    /// Run on a Redis that can lose acknowledged writes (AOF off, `appendfsync everysec`
    /// without replicas, an evicting policy): jobs can then be lost on a host crash.
    #[arg(long, env = "REELQ_ALLOW_UNSAFE_REDIS", global = true)]
    pub(crate) allow_unsafe_redis: bool,
    /// Accept plain-http `notify_url`s (default: https only).
    #[arg(long, env = "REELQ_NOTIFY_ALLOW_HTTP", global = true)]
    pub(crate) notify_allow_http: bool,
    /// Networks `notify_url`s may reach although not public, comma-separated CIDRs (e.g.
    /// `10.20.0.0/16`); loopback, private, link-local and metadata addresses are refused
    /// otherwise. Give the workers the same (`[notify] allow`).
    #[arg(long, env = "REELQ_NOTIFY_ALLOW", value_delimiter = ',', global = true)]
    pub(crate) notify_allow: Vec<ipnet::IpNet>,
    /// A price table (TOML, `[[price]]` rows of provider, model, quality, usd_per_second):
    /// contract prices that come before the catalog's list prices.
    #[arg(long, env = "REELQ_PRICES", global = true)]
    pub(crate) prices: Option<PathBuf>,
    /// A model catalog file (TOML, `[[model]]` rows; see `examples/catalog/models.toml`)
    /// whose rows add to or replace the built-in ones: jobs are validated, priced and
    /// written to the provider by it.
    #[arg(long, env = "REELQ_CATALOG", global = true)]
    pub(crate) catalog: Option<PathBuf>,
    /// The workers' store: archived jobs are read from its history, `reelq verify` reads
    /// videos back from it, and `reelq serve` hands videos out from it (job records then
    /// carry `video_url`: a presigned link for S3, else `/v1/jobs/{id}/content`).
    #[command(flatten)]
    pub(crate) store: store::StoreArgs,
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Subcommand)]
pub(crate) enum Command {
    /// Enqueue one job and print its id.
    Submit(Box<SubmitArgs>),
    /// Batches of jobs from a JSONL manifest.
    Batch {
        #[command(subcommand)]
        command: BatchCommand,
    },
    /// The providers and models reelq knows (the merged catalog), with their allowed
    /// parameters, options, prices and sources, and which accounts a worker config has.
    Providers {
        /// A worker config file: its accounts are shown, or checked.
        #[arg(long, env = "REELQ_CONFIG", global = true)]
        config: Option<PathBuf>,
        #[command(flatten)]
        output: OutputArgs,
        #[command(subcommand)]
        command: Option<ProvidersCommand>,
    },
    /// Queue depths, in-flight generations per account, pauses and recent rates.
    Stats {
        #[command(flatten)]
        output: OutputArgs,
    },
    /// A shell completion script for `reelq`, to source or install (e.g. `reelq completions
    /// bash > /etc/bash_completion.d/reelq`).
    Completions { shell: clap_complete::Shell },
    /// The manual page (roff), e.g. `reelq man > /usr/local/share/man/man1/reelq.1`.
    Man,
    /// The live worker replicas: name, role, accounts, concurrency, version, when started and
    /// last seen (a replica drops off 15 s after its last heartbeat).
    Workers {
        #[command(flatten)]
        output: OutputArgs,
    },
    /// Operate the ledger on a Redis Cluster (move its slot to another master).
    Cluster {
        #[command(subcommand)]
        command: crate::cluster::ClusterCommand,
    },
    /// The tenants sharing the deployment (each provider account's capacity is shared
    /// between the tenants with jobs waiting, by weight), and their weights.
    Tenants {
        #[command(subcommand)]
        command: crate::tenants::TenantsCommand,
    },
    /// API tokens for producers and tenants: each bound to one tenant (or to all) with
    /// scopes (enqueue, read, operate); kept only as their SHA-256.
    Tokens {
        #[command(subcommand)]
        command: crate::tokens::TokensCommand,
    },
    /// What each tenant used, by UTC day or month: jobs by state, seconds of video stored,
    /// estimated spend (from the jobs in Redis and, with --store, the archived history).
    Usage(crate::usage::UsageArgs),
    /// Move the ledger to this release's record format, after every worker runs this
    /// release: safe while they run, and run again if interrupted (records already moved
    /// are left alone). Refused while a worker of an older release is live.
    ///
    /// With --to-partitions N, then partition a one-slot ledger: its new jobs spread over N
    /// partitions (on a cluster, evenly over its masters), its existing jobs stay where they
    /// are and keep their ids and callback URLs; nothing is copied. Restart every worker and
    /// producer afterwards (until then a producer's enqueues are refused, and a worker works
    /// the existing jobs alone). Run again, it checks the ledger and changes nothing.
    Migrate {
        #[arg(long, value_parser = clap::value_parser!(u16).range(2..=i64::from(reelq_queue::MAX_PARTITIONS)))]
        to_partitions: Option<u16>,
        #[command(flatten)]
        output: OutputArgs,
    },
    /// Print a job's ledger record (as JSON: with its event log and trace id).
    Status {
        job_id: JobId,
        #[command(flatten)]
        output: OutputArgs,
    },
    /// List and settle jobs.
    Jobs {
        #[command(subcommand)]
        command: JobsCommand,
    },
    /// The dead letters: jobs that failed.
    Dlq {
        #[command(subcommand)]
        command: DlqCommand,
    },
    /// Serve the HTTP enqueue API (POST /v1/jobs, /v1/batches; GET their records) until ctrl-c.
    Serve(crate::serve::ServeArgs),
    /// Read stored videos back from the store and check each against its ledger record
    /// (size, SHA-256) and that it is a whole video. Exits 2 if any is not.
    Verify(verify::VerifyArgs),
    /// Show progress until the given jobs settle, then a summary table. Exits 2 if any job
    /// did not end `stored`.
    Watch {
        job_ids: Vec<JobId>,
        #[arg(long)]
        batch: Option<BatchId>,
    },
}

#[derive(Subcommand)]
pub(crate) enum JobsCommand {
    /// List jobs, most recently changed first: of the given states (comma-separated; all if
    /// none), a page at a time (the last line names the next page's `--after`).
    List {
        #[arg(long, value_delimiter = ',')]
        state: Vec<JobState>,
        #[arg(long, default_value_t = 50)]
        limit: usize,
        /// Start after this position (printed under a full page).
        #[arg(long, value_parser = parse_cursor, conflicts_with = "day")]
        after: Option<reelq_queue::PageCursor>,
        /// Instead: the jobs made on this UTC day (`2026-12-07`) that have left Redis for the
        /// archived history (needs the store: --store), by id, filtered by --state.
        #[arg(long)]
        day: Option<chrono::NaiveDate>,
        /// With --day: start after this job id (printed under a full page).
        #[arg(long, requires = "day")]
        after_id: Option<JobId>,
        /// Only this tenant's jobs (a page may then hold fewer than --limit).
        #[arg(long)]
        tenant: Option<reelq_core::TenantName>,
        /// As JSON: `{"data":[record, ...],"next_cursor"}`, as the API answers.
        #[command(flatten)]
        output: OutputArgs,
    },
    /// Cancel jobs: those not yet submitted (queued or held for budget) at once; submitted ones
    /// at providers that can stop a generation (fal, Replicate) once the provider has.
    Cancel {
        #[arg(required = true)]
        job_ids: Vec<JobId>,
    },
    /// Settle an `uncertain` job: the provider has it (--task-id), has not (--resubmit), or give up (--fail).
    Resolve {
        job_id: JobId,
        #[arg(long, group = "resolution")]
        task_id: Option<String>,
        #[arg(long, group = "resolution")]
        resubmit: bool,
        #[arg(long, group = "resolution")]
        fail: bool,
    },
}

#[derive(Subcommand)]
pub(crate) enum DlqCommand {
    /// Jobs that ended `failed`, with their error class and message.
    List {
        #[arg(long, default_value_t = 50)]
        limit: usize,
        #[command(flatten)]
        output: OutputArgs,
    },
    /// One failed job's record (as JSON: with its event history).
    Show {
        job_id: JobId,
        #[command(flatten)]
        output: OutputArgs,
    },
    /// Send failed jobs back: to polling if the provider has their task, else to submit.
    Retry { job_ids: Vec<JobId> },
}

#[derive(Args)]
pub(crate) struct SubmitArgs {
    #[arg(long, required_unless_present = "route")]
    pub(crate) provider: Option<String>,
    /// One of the provider's accounts (a worker's `[accounts.<name>]`); any of them if not
    /// given.
    #[arg(long)]
    pub(crate) account: Option<String>,
    #[arg(long, required_unless_present = "route")]
    pub(crate) model: Option<String>,
    /// A route (`reelq providers routes`) instead of --provider and --model: the job goes to
    /// its first candidate that can make it, and on to the next only if a provider proves it
    /// did not take the job.
    #[arg(long, conflicts_with_all = ["provider", "model", "account"])]
    pub(crate) route: Option<String>,
    #[arg(long)]
    pub(crate) prompt: String,
    #[arg(long)]
    pub(crate) duration_s: Option<u32>,
    /// landscape, portrait or square
    #[arg(long)]
    pub(crate) aspect: Option<String>,
    /// standard or high
    #[arg(long)]
    pub(crate) quality: Option<String>,
    #[arg(long = "image-url")]
    pub(crate) image_urls: Vec<String>,
    /// A video to build a character from (acedata).
    #[arg(long)]
    pub(crate) character_url: Option<String>,
    /// The second of the reference video at which the character first appears.
    #[arg(long)]
    pub(crate) character_start: Option<f64>,
    /// The second at which it last appears.
    #[arg(long)]
    pub(crate) character_end: Option<f64>,
    /// A provider option the model's catalog row declares, as NAME=VALUE (VALUE read as
    /// JSON when it is JSON, as text otherwise); repeatable.
    #[arg(long = "extra", value_parser = parse_extra)]
    pub(crate) extra: Vec<(String, serde_json::Value)>,
    #[arg(long)]
    pub(crate) notify_url: Option<String>,
    /// Send `notify_url` only these endings (job.stored, job.failed, job.rejected,
    /// job.expired, job.cancelled), comma-separated; all if not given.
    #[arg(long, value_delimiter = ',')]
    pub(crate) notify_events: Vec<String>,
    /// RFC 3339 time after which the job expires.
    #[arg(long)]
    pub(crate) deadline: Option<String>,
    /// The tenant the job belongs to (capacity is shared between tenants by weight); the
    /// default tenant if not given.
    #[arg(long)]
    pub(crate) tenant: Option<String>,
}

impl From<SubmitArgs> for JobRequest {
    fn from(args: SubmitArgs) -> Self {
        JobRequest {
            provider: args.provider,
            account: args.account,
            model: args.model,
            route: args.route,
            prompt: Some(args.prompt),
            duration_s: args.duration_s,
            aspect: args.aspect,
            quality: args.quality,
            image_urls: args.image_urls,
            character_url: args.character_url,
            character_start: args.character_start,
            character_end: args.character_end,
            notify_url: args.notify_url,
            notify_events: (!args.notify_events.is_empty()).then_some(args.notify_events),
            deadline: args.deadline,
            tenant: args.tenant,
            extra: (!args.extra.is_empty()).then(|| args.extra.into_iter().collect()),
        }
    }
}

fn parse_cursor(text: &str) -> Result<reelq_queue::PageCursor, String> {
    text.parse()
        .map_err(|()| format!("{text:?} is not a position `reelq jobs list` printed"))
}

fn parse_extra(text: &str) -> Result<(String, serde_json::Value), String> {
    let (name, value) = text
        .split_once('=')
        .ok_or_else(|| format!("{text:?} is not NAME=VALUE"))?;
    let value = serde_json::from_str(value).unwrap_or_else(|_| value.into());
    Ok((name.to_owned(), value))
}
