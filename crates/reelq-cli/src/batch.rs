//! `reelq batch ...`: submit (with progress, idempotent by the manifest's digest), watch,
//! report, resume, retry-failed, cancel, and the dry run's pricing.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use reelq_core::{BatchId, BatchOptions, Catalog, PriceTable, parse_deadline};
use reelq_producer::{BatchReceipt, now_ms, parse_manifest};
use reelq_queue::{ENQUEUE_CHUNK, EnqueueProgress};

use crate::{print::report, setup::Setup, watch::watch};

#[derive(Subcommand)]
pub(crate) enum BatchCommand {
    /// Validate every line, then enqueue all of them as one batch (or none, if any is bad).
    Submit(BatchSubmitArgs),
    /// Progress per state, with an ETA, until the batch settles.
    Watch { batch_id: BatchId },
    /// One row per job: state, provider task id, object key, bytes, sha256, cost, error.
    Report {
        batch_id: BatchId,
        #[arg(long, value_enum, default_value_t = ReportFormat::Table)]
        format: ReportFormat,
    },
    /// Raise the budget (if given) and go on with the jobs the budget held.
    Resume {
        batch_id: BatchId,
        /// The batch's new total budget, in dollars.
        #[arg(long)]
        budget: Option<f64>,
    },
    /// Send the batch's failed jobs back (to polling if the provider has their task).
    RetryFailed { batch_id: BatchId },
    /// Never submit the batch's queued jobs; submitted ones are stopped where the provider
    /// can stop a generation (fal, Replicate), and finish elsewhere.
    Cancel { batch_id: BatchId },
}

#[derive(Clone, Copy, clap::ValueEnum)]
pub(crate) enum ReportFormat {
    Table,
    Csv,
    Json,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Priority {
    Normal,
    Low,
}

#[derive(Args)]
pub(crate) struct BatchSubmitArgs {
    pub(crate) manifest: PathBuf,
    #[arg(long)]
    pub(crate) name: Option<String>,
    /// RFC 3339 time before which no job of the batch is submitted.
    #[arg(long)]
    pub(crate) start_after: Option<String>,
    /// RFC 3339 time by which every job must be finished, or end `expired` (never submitted
    /// if it was still queued).
    #[arg(long)]
    pub(crate) deadline: Option<String>,
    /// The most the batch may spend, in dollars, by its jobs' estimates; jobs past it are
    /// held (`budget_held`) until `reelq batch resume`.
    #[arg(long)]
    pub(crate) budget: Option<f64>,
    /// `low`: submitted only when no normal job is due.
    #[arg(long, value_enum, default_value_t = Priority::Normal)]
    pub(crate) priority: Priority,
    /// Where to POST the batch's signed summary when its last job ends.
    #[arg(long)]
    pub(crate) notify_url: Option<String>,
    /// Validate and print the count and estimated cost per provider and model; enqueue
    /// nothing.
    #[arg(long)]
    pub(crate) dry_run: bool,
    /// Watch the batch until it settles.
    #[arg(long)]
    pub(crate) watch: bool,
    /// Enqueue it even if the same manifest with the same options was submitted in the last
    /// 24 hours (without this, that submission's batch is shown again: a retry after a
    /// crash or a lost answer never enqueues, and pays for, the batch twice).
    #[arg(long)]
    pub(crate) again: bool,
}

pub(crate) async fn run(setup: &Setup, command: BatchCommand) -> anyhow::Result<()> {
    if let BatchCommand::Submit(args) = &command
        && args.dry_run
    {
        // Validated and priced here: nothing reaches the ledger.
        return dry_run(&args.manifest, &setup.prices, &setup.catalog);
    }
    let client = &setup.client().await?;
    let missing = |batch_id: BatchId| anyhow::anyhow!("no batch {batch_id}");
    match command {
        BatchCommand::Submit(args) => {
            let text = std::fs::read_to_string(&args.manifest)
                .with_context(|| format!("reading {}", args.manifest.display()))?;
            let now = now_ms();
            let mut specs = parse_manifest(&text, client.catalog(), now)?;
            for notice in client.lifecycle_notices(&specs) {
                eprintln!("warning: {notice}");
            }
            if let Some(deadline) = &args.deadline {
                let deadline_ms = parse_deadline(deadline, now)?;
                for spec in &mut specs {
                    spec.deadline_ms =
                        Some(spec.deadline_ms.map_or(deadline_ms, |d| d.min(deadline_ms)));
                }
            }
            let options = BatchOptions::checked(
                args.name,
                args.start_after.as_deref(),
                args.budget,
                args.priority == Priority::Low,
                args.notify_url,
                now,
            )?;
            let started = std::time::Instant::now();
            let n_jobs = specs.len() as u64;
            let bar = ProgressBar::new(2 * n_jobs);
            bar.set_style(
                ProgressStyle::with_template("{elapsed_precise} [{bar:30}] {msg}")
                    .expect("a valid template"),
            );
            if n_jobs as usize <= ENQUEUE_CHUNK {
                bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
            }
            let progress = |step: EnqueueProgress| match step {
                EnqueueProgress::Staged(n) => {
                    bar.set_position(n as u64);
                    bar.set_message(format!("{n}/{n_jobs} staged"));
                }
                EnqueueProgress::Queued(n) => {
                    bar.set_position(n_jobs + n as u64);
                    bar.set_message(format!("{n}/{n_jobs} queued"));
                }
            };
            let (batch_id, job_ids, replayed) = if args.again {
                let receipt = client.enqueue_batch_with(specs, &options).await?;
                (receipt.batch_id, receipt.job_ids, false)
            } else {
                let receipt = client
                    .enqueue_manifest_once(specs, &options, &progress)
                    .await?;
                let batch_id = receipt.batch_id.expect("a batch's receipt has its id");
                (batch_id, receipt.job_ids, receipt.replayed)
            };
            bar.finish_and_clear();
            if replayed {
                println!(
                    "batch {batch_id}: this manifest, with these options, was already submitted \
                     ({} jobs); nothing enqueued (--again enqueues it once more)",
                    job_ids.len()
                );
            } else {
                println!(
                    "batch {batch_id} enqueued {} jobs in {:.0} ms",
                    job_ids.len(),
                    started.elapsed().as_secs_f64() * 1000.0
                );
            }
            let receipt = BatchReceipt { batch_id, job_ids };
            if args.watch {
                watch(client, &receipt.job_ids).await?;
            }
        }
        BatchCommand::Watch { batch_id } => {
            let job_ids = client.batch_jobs(batch_id).await?;
            anyhow::ensure!(!job_ids.is_empty(), missing(batch_id));
            watch(client, &job_ids).await?;
        }
        BatchCommand::Report { batch_id, format } => {
            let info = client
                .batch_info(batch_id)
                .await?
                .ok_or_else(|| missing(batch_id))?;
            let records = client.batch_records(batch_id).await?;
            report(&info, &records, format)?;
        }
        BatchCommand::Resume { batch_id, budget } => {
            let resumed = client
                .resume_batch(batch_id, budget)
                .await?
                .ok_or_else(|| missing(batch_id))?;
            println!("batch {batch_id}: {resumed} held jobs queued again");
        }
        BatchCommand::RetryFailed { batch_id } => {
            let retried = client.retry_failed_batch(batch_id).await?;
            println!("batch {batch_id}: {retried} failed jobs sent back");
        }
        BatchCommand::Cancel { batch_id } => {
            let cancelled = client
                .cancel_batch(batch_id)
                .await?
                .ok_or_else(|| missing(batch_id))?;
            println!(
                "batch {batch_id}: {cancelled} jobs cancelled; submitted ones are stopped at \
                 providers that can (fal, Replicate: they end cancelled at their next poll), \
                 and finish elsewhere"
            );
        }
    }
    Ok(())
}

/// Prints what a manifest would enqueue and cost, per provider and model.
fn dry_run(
    manifest: &std::path::Path,
    prices: &PriceTable,
    catalog: &Catalog,
) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(manifest)
        .with_context(|| format!("reading {}", manifest.display()))?;
    let specs = parse_manifest(&text, catalog, now_ms())?;
    let mut groups: std::collections::BTreeMap<(String, String), (usize, f64, usize)> =
        Default::default();
    for spec in specs.iter().cloned() {
        // Priced as the enqueue prices it: a routed job at its first candidate by its route's
        // policy and ceiling (a weighted route's first is drawn per job: seed 0 here).
        let spec = spec.priced(prices, catalog, 0)?;
        let group = groups
            .entry((spec.provider.to_string(), spec.model.clone()))
            .or_default();
        group.0 += 1;
        match spec.estimated_cost_usd {
            Some(usd) => group.1 += usd,
            None => group.2 += 1,
        }
    }
    println!(
        "{:<10} {:<28} {:>6} {:>12}",
        "PROVIDER", "MODEL", "JOBS", "EST USD"
    );
    for ((provider, model), (jobs, usd, unpriced)) in &groups {
        let note = if *unpriced > 0 {
            format!("  ({unpriced} unpriced)")
        } else {
            String::new()
        };
        println!("{provider:<10} {model:<28} {jobs:>6} {usd:>12.2}{note}");
    }
    let total: f64 = groups.values().map(|(_, usd, _)| usd).sum();
    println!(
        "{} jobs, estimated ${total:.2}; nothing enqueued (dry run)",
        specs.len()
    );
    Ok(())
}
