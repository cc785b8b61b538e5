//! `reelq`: enqueue jobs and batches, read their status, watch them finish, operate batches
//! and uncertain jobs, and serve the HTTP API and the dashboard.

mod batch;
mod print;
mod providers;
mod store;
mod verify;

use batch::{BatchCommand, dry_run};
use print::{OutputArgs, print_json, print_stats, print_table};
use providers::ProvidersCommand;

use std::{collections::HashMap, path::PathBuf, time::Duration};

use anyhow::{Context, bail, ensure};
use clap::{Args, CommandFactory, Parser, Subcommand};
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use reelq_core::{
    ApiToken, BatchId, BatchOptions, Catalog, JobId, JobRequest, JobState, PriceTable, Secret,
    WebhookTargets, micros_to_usd, parse_deadline,
};
use reelq_producer::{
    BatchReceipt, Client, Durability, LedgerConfig, now_ms, parse_manifest, report_json,
    write_report_csv,
};
use reelq_queue::{
    BatchInfo, CancelOutcome, ENQUEUE_CHUNK, EnqueueProgress, JobRecord, RedisTarget, Resolution,
};

#[derive(Parser)]
#[command(
    name = "reelq",
    version,
    about = "Enqueue and follow reelq video-generation jobs"
)]
struct Cli {
    #[arg(
        long,
        env = "REELQ_REDIS_URL",
        default_value = "redis://127.0.0.1:6379/",
        global = true
    )]
    redis_url: String,
    /// Key prefix of the reelq deployment.
    #[arg(long, env = "REELQ_PREFIX", default_value = "reelq", global = true)]
    prefix: String,
    /// What proves an enqueue durable before it is acknowledged: `always` (the primary runs
    /// `appendfsync always`) or `replicas:N` (N replicas acknowledge it).
    #[arg(
        long,
        env = "REELQ_DURABILITY",
        default_value = "always",
        global = true
    )]
    durability: Durability,
    /// Run on a Redis that can lose acknowledged writes (AOF off, `appendfsync everysec`
    /// without replicas, an evicting policy): jobs can then be lost on a host crash.
    #[arg(long, env = "REELQ_ALLOW_UNSAFE_REDIS", global = true)]
    allow_unsafe_redis: bool,
    /// Accept plain-http `notify_url`s (default: https only).
    #[arg(long, env = "REELQ_NOTIFY_ALLOW_HTTP", global = true)]
    notify_allow_http: bool,
    /// Networks `notify_url`s may reach although not public, comma-separated CIDRs (e.g.
    /// `10.20.0.0/16`); loopback, private, link-local and metadata addresses are refused
    /// otherwise. Give the workers the same (`[notify] allow`).
    #[arg(long, env = "REELQ_NOTIFY_ALLOW", value_delimiter = ',', global = true)]
    notify_allow: Vec<ipnet::IpNet>,
    /// A price table (TOML, `[[price]]` rows of provider, model, quality, usd_per_second):
    /// contract prices that come before the catalog's list prices.
    #[arg(long, env = "REELQ_PRICES", global = true)]
    prices: Option<PathBuf>,
    /// A model catalog file (TOML, `[[model]]` rows; see `examples/catalog/models.toml`)
    /// whose rows add to or replace the built-in ones: jobs are validated, priced and
    /// written to the provider by it.
    #[arg(long, env = "REELQ_CATALOG", global = true)]
    catalog: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Enqueue one job and print its id.
    Submit(SubmitArgs),
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
    /// Move the ledger to this release's record format, after every worker runs this
    /// release: safe while they run, and run again if interrupted (records already moved
    /// are left alone). Refused while a worker of an older release is live.
    Migrate {
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
    Serve {
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: String,
        /// The bearer token clients must present: at least 16 characters. Empty or short is
        /// refused (it never switches authentication off).
        #[arg(long, env = "REELQ_API_TOKEN", hide_env_values = true)]
        token: String,
        /// Signs the dashboard's session cookies; give every replica behind one load
        /// balancer the same. Default: random per process (sessions end at restart).
        #[arg(long, env = "REELQ_SESSION_KEY", hide_env_values = true)]
        session_key: Option<String>,
        /// Most open connections; past it, new ones wait in the kernel's backlog. Headers
        /// (and a kept-alive connection's next request) must arrive within 10 s, a body
        /// within 30 s.
        #[arg(long, default_value_t = reelq_http::Limits::default().max_connections)]
        max_connections: usize,
        /// The dashboard is reached over https (its session cookie is then always `Secure`;
        /// without this, only when a proxy sends `X-Forwarded-Proto: https`).
        #[arg(long, requires = "dashboard")]
        https: bool,
        /// Also serve the operators' dashboard under /ui (same token, or its login form).
        #[arg(long)]
        dashboard: bool,
        /// The access log and errors on stderr: `json` (one object per line) or `pretty`.
        #[arg(long, env = "REELQ_LOG_FORMAT", default_value = "json", value_parser = ["json", "pretty"])]
        log_format: String,
        /// Let the dashboard act: retry failed jobs, resolve uncertain ones, cancel batches.
        #[arg(long, requires = "dashboard")]
        dashboard_writable: bool,
        /// Give the workers' store to hand videos out: job records then carry `video_url`
        /// (a presigned link for S3, else `/v1/jobs/{id}/content`, which streams the video).
        #[command(flatten)]
        store: store::StoreArgs,
        /// How long a presigned link stays valid, in seconds (at most 7 days).
        #[arg(long, default_value_t = 3600, value_parser = clap::value_parser!(u64).range(1..=604_800))]
        link_ttl_s: u64,
    },
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
enum JobsCommand {
    /// List jobs, most recently changed first: of the given states (comma-separated; all if
    /// none), a page at a time (the last line names the next page's `--after`).
    List {
        #[arg(long, value_delimiter = ',')]
        state: Vec<JobState>,
        #[arg(long, default_value_t = 50)]
        limit: usize,
        /// Start after this position (printed under a full page).
        #[arg(long, value_parser = parse_cursor)]
        after: Option<reelq_queue::PageCursor>,
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
enum DlqCommand {
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
struct SubmitArgs {
    #[arg(long)]
    provider: String,
    /// One of the provider's accounts (a worker's `[accounts.<name>]`); any of them if not
    /// given.
    #[arg(long)]
    account: Option<String>,
    #[arg(long)]
    model: String,
    #[arg(long)]
    prompt: String,
    #[arg(long)]
    duration_s: Option<u32>,
    /// landscape, portrait or square
    #[arg(long)]
    aspect: Option<String>,
    /// standard or high
    #[arg(long)]
    quality: Option<String>,
    #[arg(long = "image-url")]
    image_urls: Vec<String>,
    /// A video to build a character from (acedata).
    #[arg(long)]
    character_url: Option<String>,
    /// The second of the reference video at which the character first appears.
    #[arg(long)]
    character_start: Option<f64>,
    /// The second at which it last appears.
    #[arg(long)]
    character_end: Option<f64>,
    /// A provider option the model's catalog row declares, as NAME=VALUE (VALUE read as
    /// JSON when it is JSON, as text otherwise); repeatable.
    #[arg(long = "extra", value_parser = parse_extra)]
    extra: Vec<(String, serde_json::Value)>,
    #[arg(long)]
    notify_url: Option<String>,
    /// Send `notify_url` only these endings (job.stored, job.failed, job.rejected,
    /// job.expired, job.cancelled), comma-separated; all if not given.
    #[arg(long, value_delimiter = ',')]
    notify_events: Vec<String>,
    /// RFC 3339 time after which the job expires.
    #[arg(long)]
    deadline: Option<String>,
}

impl From<SubmitArgs> for JobRequest {
    fn from(args: SubmitArgs) -> Self {
        JobRequest {
            provider: Some(args.provider),
            account: args.account,
            model: Some(args.model),
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

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    stop_quietly_when_the_reader_goes();
    let cli = Cli::parse();
    let prices = match &cli.prices {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?;
            toml::from_str(&text).with_context(|| format!("parsing {}", path.display()))?
        }
        None => PriceTable::default(),
    };
    let catalog = match &cli.catalog {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?;
            Catalog::built_in().with_file(&text, &path.display().to_string())?
        }
        None => Catalog::built_in().clone(),
    };
    match &cli.command {
        Command::Completions { shell } => {
            let mut command = Cli::command();
            clap_complete::generate(*shell, &mut command, "reelq", &mut std::io::stdout());
            return Ok(());
        }
        Command::Man => {
            clap_mangen::Man::new(Cli::command()).render(&mut std::io::stdout())?;
            return Ok(());
        }
        _ => {}
    }
    if let Command::Providers {
        config,
        output,
        command,
    } = &cli.command
    {
        let json = output.json();
        match command {
            None => return providers::print(&prices, &catalog, config.as_deref(), json),
            Some(ProvidersCommand::Check { account }) => {
                let account = account.as_ref();
                return providers::check(config.as_deref(), &catalog, account, json).await;
            }
            // Pausing and resuming act on the ledger: answered once connected.
            Some(ProvidersCommand::Pause { .. } | ProvidersCommand::Resume { .. }) => {}
        }
    }
    if let Command::Batch {
        command: BatchCommand::Submit(args),
    } = &cli.command
        && args.dry_run
    {
        return dry_run(&args.manifest, &prices, &catalog);
    }
    let ledger_config = LedgerConfig {
        durability: cli.durability,
        allow_unsafe: cli.allow_unsafe_redis,
        ..LedgerConfig::new(&cli.redis_url, &cli.prefix)
    };
    let client = Client::connect(&ledger_config)
        .await
        .with_context(|| {
            format!(
                "connecting to redis at {} (set by --redis-url or REELQ_REDIS_URL; it must be \
                 the workers' Redis, with the same --prefix / REELQ_PREFIX)",
                redacted(&cli.redis_url)
            )
        })?
        .with_prices(prices)
        .with_catalog(catalog)
        .with_webhook_targets(WebhookTargets {
            allow_http: cli.notify_allow_http,
            allow: cli.notify_allow.clone(),
        });
    match cli.command {
        Command::Providers {
            command: Some(ProvidersCommand::Pause { account, length }),
            ..
        } => {
            client.pause_account(&account, length).await?;
            println!(
                "{account}: submits paused for {} on every replica (running generations go on)",
                humantime::format_duration(length)
            );
        }
        Command::Providers {
            command: Some(ProvidersCommand::Resume { account }),
            ..
        } => {
            let resumed = client.resume_account(&account).await?;
            match resumed.was_paused {
                false => println!("{account}: was not paused"),
                true => println!(
                    "{account}: resumed; {} held jobs sent now{}",
                    resumed.brought_forward,
                    if resumed.more_left {
                        " (more go at the pause's old end)"
                    } else {
                        ""
                    }
                ),
            }
        }
        Command::Providers { .. } | Command::Completions { .. } | Command::Man => {
            unreachable!("answered before connecting")
        }
        Command::Submit(args) => {
            let job_id = client.enqueue(args.into()).await?;
            println!("{job_id}");
        }
        Command::Batch { command } => batch::run(&client, command).await?,
        Command::Status { job_id, output } => show(&client, job_id, output.json()).await?,
        Command::Stats { output } => print_stats(&client.stats().await?, output.json())?,
        Command::Workers { output } => {
            print::print_workers(&client.workers().await?, output.json())?
        }
        Command::Migrate { output } => {
            print::print_migration(&client.migrate().await?, output.json())?
        }
        Command::Jobs {
            command:
                JobsCommand::List {
                    state,
                    limit,
                    after,
                    output,
                },
        } => {
            ensure!(limit > 0, "--limit must be at least 1");
            let (records, next) = client.jobs_page(&state, after, limit).await?;
            let next = next.map(|cursor| cursor.to_string());
            if output.json() {
                print_json(&serde_json::json!({ "data": records, "next_cursor": next }))?;
            } else {
                print_table(&records);
                if let Some(next) = next {
                    println!("more: --after {next}");
                }
            }
        }
        Command::Jobs {
            command: JobsCommand::Cancel { job_ids },
        } => {
            let mut refused = 0;
            for job_id in job_ids {
                match client.cancel_job(job_id).await? {
                    CancelOutcome::Cancelled => println!("job {job_id} cancelled"),
                    CancelOutcome::AskedProvider(provider) => println!(
                        "job {job_id} is submitted: {provider} was asked to stop it; it ends \
                         cancelled once {provider} has (a video ready first is stored; reelq \
                         watch {job_id})"
                    ),
                    CancelOutcome::NotCancellable { state, provider } => {
                        refused += 1;
                        let why = match (state, provider.cancels_generations()) {
                            (JobState::Waiting, false) => {
                                format!("{provider} has no call to stop a generation")
                            }
                            _ => format!("it is {state}"),
                        };
                        eprintln!("job {job_id} was not cancelled: {why} (reelq status {job_id})");
                    }
                }
            }
            ensure!(refused == 0, "{refused} job(s) not cancelled");
        }
        Command::Jobs {
            command:
                JobsCommand::Resolve {
                    job_id,
                    task_id,
                    resubmit,
                    fail,
                },
        } => {
            let resolution = match (task_id, resubmit, fail) {
                (Some(task_id), _, _) => Resolution::TaskId(task_id),
                (None, true, _) => Resolution::Resubmit,
                (None, false, true) => Resolution::Fail,
                (None, false, false) => bail!("say how: --task-id T, --resubmit or --fail"),
            };
            if !client.resolve(job_id, resolution).await? {
                bail!("job {job_id} is not uncertain; nothing changed");
            }
            println!("job {job_id} resolved");
        }
        Command::Dlq {
            command: DlqCommand::List { limit, output },
        } => {
            let records = client.jobs_in_state(JobState::Failed, limit).await?;
            match output.json() {
                true => print_json(&serde_json::json!(records))?,
                false => print_table(&records),
            }
        }
        Command::Dlq {
            command: DlqCommand::Show { job_id, output },
        } => show(&client, job_id, output.json()).await?,
        Command::Dlq {
            command: DlqCommand::Retry { job_ids },
        } => {
            if job_ids.is_empty() {
                bail!("nothing to retry: give the failed jobs' ids (reelq dlq list shows them)");
            }
            for job_id in job_ids {
                match client.retry_failed(job_id).await? {
                    true => println!("job {job_id} sent back"),
                    false => eprintln!("job {job_id} is not failed; skipped"),
                }
            }
        }
        Command::Serve {
            listen,
            token,
            session_key,
            max_connections,
            https,
            dashboard,
            dashboard_writable,
            store,
            link_ttl_s,
            log_format,
        } => {
            let token = ApiToken::new(token).context("reelq serve refuses to start")?;
            let filter = tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
            let logs = tracing_subscriber::fmt()
                .with_env_filter(filter)
                .with_writer(std::io::stderr);
            match log_format.as_str() {
                // The event's fields at the top level, as the worker's logs have them.
                "json" => logs.json().flatten_event(true).with_span_list(false).init(),
                _ => logs.init(),
            }
            let listener = tokio::net::TcpListener::bind(&listen)
                .await
                .with_context(|| format!("binding {listen}"))?;
            eprintln!("reelq api listening on {}", listener.local_addr()?);
            let videos = store.open()?.map(|store| reelq_producer::Videos {
                store,
                link_ttl: Duration::from_secs(link_ttl_s),
            });
            let mut app = reelq_producer::api(client.clone(), token.clone(), videos.clone());
            if dashboard {
                let mut config = reelq_dashboard::DashboardConfig::new(token, dashboard_writable);
                config.videos = videos.clone();
                config.https = https;
                if let Some(key) = session_key.filter(|key| !key.is_empty()) {
                    ensure!(
                        key.len() >= 32,
                        "the session key has {} characters; use at least 32 (e.g. openssl rand -hex 32)",
                        key.len()
                    );
                    config.session_key = Secret::new(key);
                }
                app = app.merge(reelq_dashboard::router(client, config));
                eprintln!("dashboard at /ui (writable: {dashboard_writable})");
            }
            let limits = reelq_http::Limits {
                max_connections,
                ..reelq_http::Limits::default()
            };
            let app = reelq_http::with_access_log(app);
            reelq_http::serve(listener, app, limits, stop_requested()).await;
        }
        Command::Verify(args) => {
            if !verify::run(&client, args).await? {
                std::process::exit(2);
            }
        }
        Command::Watch { mut job_ids, batch } => {
            if let Some(batch_id) = batch {
                job_ids.extend(client.batch_jobs(batch_id).await?);
            }
            if job_ids.is_empty() {
                bail!("nothing to watch: give job ids or --batch");
            }
            watch(&client, &job_ids).await?;
        }
    }
    Ok(())
}

/// Ctrl-C, or SIGTERM (what Kubernetes and systemd send to stop a service).
async fn stop_requested() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("a SIGTERM handler installs");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

/// `reelq stats | head -3`: once the reader has gone, stdout answers "broken pipe" (Rust
/// ignores SIGPIPE), and `println!` panics. Stop as a SIGPIPE would have stopped us: quietly,
/// with status 141 (128 + 13).
fn stop_quietly_when_the_reader_goes() {
    let report = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let payload = info.payload();
        let message = payload
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| payload.downcast_ref::<&str>().copied())
            .unwrap_or_default();
        if message.starts_with("failed printing to stdout") && message.contains("Broken pipe") {
            std::process::exit(141);
        }
        report(info);
    }));
}

async fn show(client: &Client, job_id: JobId, json: bool) -> anyhow::Result<()> {
    let record = client
        .status(job_id)
        .await?
        .with_context(|| format!("job {job_id} not found"))?;
    if json {
        let mut value = serde_json::to_value(&record)?;
        value["history"] = serde_json::to_value(client.history(job_id).await?)?;
        value["trace_id"] = job_id.trace_id().into();
        print_json(&value)?;
    } else {
        print_table(&[record]);
    }
    Ok(())
}

/// Live progress until the jobs settle: one bar for all of them with an ETA, and one bar per
/// state showing how many jobs are in it now.
async fn watch(client: &Client, job_ids: &[JobId]) -> anyhow::Result<()> {
    let total = job_ids.len() as u64;
    let bars = MultiProgress::new();
    let overall = bars.add(ProgressBar::new(total));
    overall.set_style(
        ProgressStyle::with_template("{elapsed_precise} [{bar:30}] {pos}/{len} settled, ETA {eta}")
            .expect("the template is valid")
            .progress_chars("=> "),
    );
    overall.enable_steady_tick(Duration::from_millis(200));
    let per_state_style = ProgressStyle::with_template("  {msg:>12} [{bar:30}] {pos}")
        .expect("the template is valid")
        .progress_chars("=> ");
    let state_bars: HashMap<JobState, ProgressBar> = JobState::ALL
        .iter()
        .map(|&state| {
            let bar = bars.add(ProgressBar::new(total));
            bar.set_style(per_state_style.clone());
            bar.set_message(state.as_str());
            (state, bar)
        })
        .collect();
    let records = client
        .wait(job_ids, |states| {
            let mut counts: HashMap<JobState, u64> = HashMap::new();
            for state in states.values() {
                *counts.entry(*state).or_default() += 1;
            }
            let settled = states.values().filter(|s| s.is_settled()).count();
            overall.set_position(settled as u64);
            for (state, bar) in &state_bars {
                bar.set_position(counts.get(state).copied().unwrap_or(0));
            }
        })
        .await?;
    overall.finish();
    for bar in state_bars.values() {
        bar.finish();
    }
    print_table(&records);
    let n_stored = records
        .iter()
        .filter(|r| r.state == JobState::Stored)
        .count();
    let estimated: f64 = records
        .iter()
        .filter_map(|r| r.spec.estimated_cost_usd)
        .sum();
    println!(
        "{n_stored} of {} jobs stored, estimated cost ${estimated:.2}",
        records.len()
    );
    if n_stored != records.len() {
        std::process::exit(2);
    }
    Ok(())
}

/// A Redis URL fit for an error message: without its password.
fn redacted(redis_url: &str) -> String {
    redis_url
        .parse::<RedisTarget>()
        .map_or_else(|err| err.to_string(), |target| target.to_string())
}
