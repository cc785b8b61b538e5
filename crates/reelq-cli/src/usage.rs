//! `reelq usage`: what each tenant used, by UTC day or month (jobs by state, seconds of video
//! stored, estimated spend), from the job records in Redis and, given the store, the
//! archived history: a month can be billed after Redis has forgotten it.

use chrono::{Datelike, NaiveDate};
use reelq_producer::{Period, Usage};

use crate::{batch::ReportFormat, setup::Setup};

#[derive(clap::Args)]
pub(crate) struct UsageArgs {
    /// The first UTC day of the jobs made (default: the first of this month).
    #[arg(long)]
    from: Option<NaiveDate>,
    /// The last UTC day (default: today).
    #[arg(long)]
    to: Option<NaiveDate>,
    /// Sum per UTC day or per month.
    #[arg(long, value_enum, default_value_t = By::Month)]
    by: By,
    /// Only this tenant.
    #[arg(long)]
    tenant: Option<reelq_core::TenantName>,
    #[arg(long, value_enum, default_value_t = ReportFormat::Table)]
    format: ReportFormat,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum By {
    Day,
    Month,
}

pub(crate) async fn run(setup: &Setup, args: UsageArgs) -> anyhow::Result<()> {
    let client = setup.client().await?;
    let today = chrono::Utc::now().date_naive();
    let from = args
        .from
        .unwrap_or_else(|| today.with_day(1).expect("the first"));
    let to = args.to.unwrap_or(today);
    anyhow::ensure!(from <= to, "--from {from} is after --to {to}");
    let period = match args.by {
        By::Day => Period::Day,
        By::Month => Period::Month,
    };
    let tenant = args.tenant.as_ref().map(|tenant| tenant.as_str());
    let usage = client.usage(from, to, period, tenant).await?;
    match args.format {
        ReportFormat::Json => {
            println!("{}", serde_json::to_string_pretty(&usage)?);
        }
        ReportFormat::Csv => write_csv(&usage)?,
        ReportFormat::Table => print_table(&usage),
    }
    Ok(())
}

const ENDED: [&str; 5] = ["stored", "failed", "rejected", "expired", "cancelled"];

fn print_table(usage: &[Usage]) {
    println!(
        "{:<24}  {:<10}  {:>7}  {:>7}  {:>7}  {:>8}  {:>7}  {:>9}  {:>8}  {:>12}",
        "TENANT",
        "PERIOD",
        "JOBS",
        "STORED",
        "FAILED",
        "REJECTED",
        "OTHER",
        "UNDERWAY",
        "VIDEO S",
        "EST. USD"
    );
    for row in usage {
        let state = |name: &str| row.states.get(name).copied().unwrap_or(0);
        let other = state("expired") + state("cancelled");
        let underway = row.jobs - ENDED.iter().map(|name| state(name)).sum::<u64>();
        println!(
            "{:<24}  {:<10}  {:>7}  {:>7}  {:>7}  {:>8}  {:>7}  {:>9}  {:>8}  {:>12.2}",
            row.tenant,
            row.period,
            row.jobs,
            state("stored"),
            state("failed"),
            state("rejected"),
            other,
            underway,
            row.generation_seconds,
            row.estimated_spend_usd
        );
    }
    if usage.is_empty() {
        println!("no jobs made in that time");
    }
}

fn write_csv(usage: &[Usage]) -> anyhow::Result<()> {
    reelq_producer::write_usage_csv(usage, std::io::stdout().lock())?;
    Ok(())
}
