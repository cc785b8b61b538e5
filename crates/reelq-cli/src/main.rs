//! `reelq`: enqueue jobs and batches, read their status, watch them finish, operate batches
//! and uncertain jobs, and serve the HTTP API and the dashboard.

mod args;
mod batch;
mod print;
mod providers;
mod store;
mod verify;

use args::{Cli, Command, DlqCommand, JobsCommand};
use batch::{BatchCommand, dry_run};
use print::{print_json, print_stats, print_table};
use providers::ProvidersCommand;

use std::{collections::HashMap, path::PathBuf, time::Duration};

use anyhow::{Context, bail, ensure};
use clap::{Args, CommandFactory, Parser, Subcommand};
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use reelq_core::{
    ApiToken, BatchId, BatchOptions, Catalog, JobId, JobState, PriceTable, Secret, WebhookTargets,
    micros_to_usd, parse_deadline,
};
use reelq_producer::{
    BatchReceipt, Client, LedgerConfig, now_ms, parse_manifest, report_json, write_report_csv,
};
use reelq_queue::{
    BatchInfo, CancelOutcome, ENQUEUE_CHUNK, EnqueueProgress, JobRecord, RedisTarget, Resolution,
};

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
    let store = cli.store.open()?;
    let client = match cli.store.history()? {
        Some(history) => client.with_history(history),
        None => client,
    };
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
            let request: reelq_core::JobRequest = args.into();
            let spec = request
                .validate(client.catalog(), reelq_producer::now_ms())
                .map_err(reelq_producer::ProducerError::Invalid)?;
            for notice in client.lifecycle_notices(std::slice::from_ref(&spec)) {
                eprintln!("warning: {notice}");
            }
            let job_id = client.enqueue_spec(spec).await?;
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
                    day: Some(day),
                    after_id,
                    output,
                    ..
                },
        } => {
            ensure!(limit > 0, "--limit must be at least 1");
            let (records, next) = client.archived_page(day, &state, after_id, limit).await?;
            let next = next.map(|job_id| job_id.to_string());
            if output.json() {
                print_json(&serde_json::json!({ "data": records, "next_cursor": next }))?;
            } else {
                print_table(&records);
                if let Some(next) = next {
                    println!("more: --day {day} --after-id {next}");
                }
            }
        }
        Command::Jobs {
            command:
                JobsCommand::List {
                    state,
                    limit,
                    after,
                    day: None,
                    output,
                    ..
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
            let videos = store.map(|store| reelq_producer::Videos {
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
            if !verify::run(&client, args, store).await? {
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
