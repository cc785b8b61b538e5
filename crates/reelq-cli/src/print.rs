//! What the `reelq` command prints: job tables, providers, stats, batch reports.

use reelq_core::{JobState, micros_to_usd};
use reelq_producer::{
    display::{age, utc},
    report_json, write_report_csv,
};
use reelq_queue::{BatchInfo, JobRecord};

use crate::batch::ReportFormat;

/// How a read prints: `-o table` (the default, for people) or `-o json` (for scripts, as
/// `kubectl -o json`); `--json` is short for `-o json`.
#[derive(clap::Args, Clone, Copy)]
pub(crate) struct OutputArgs {
    #[arg(short = 'o', long = "output", value_enum, default_value_t = OutputFormat::Table, global = true)]
    format: OutputFormat,
    /// Short for `-o json`.
    #[arg(long, conflicts_with = "format", global = true)]
    json: bool,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum OutputFormat {
    Table,
    Json,
}

impl OutputArgs {
    pub(crate) fn json(self) -> bool {
        self.json || self.format == OutputFormat::Json
    }
}

/// Prints `value` as pretty JSON.
pub(crate) fn print_json(value: &serde_json::Value) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

pub(crate) fn print_table(records: &[JobRecord]) {
    // Account names are the operator's: as wide as the longest.
    let account_width = records
        .iter()
        .map(|record| record.account.as_str().len())
        .max()
        .unwrap_or(0)
        .max("ACCOUNT".len());
    fn tenant_of(record: &JobRecord) -> &str {
        record.spec.tenant_name()
    }
    let tenant_width = records
        .iter()
        .map(|record| tenant_of(record).len())
        .max()
        .unwrap_or(0)
        .max("TENANT".len());
    println!(
        "{:<26}  {:<tenant_width$}  {:<account_width$}  {:<10}  {:<20}  {:>10}  {:>7}  {:>7}  {:>8}  {:<12}  OBJECT / ERROR",
        "JOB",
        "TENANT",
        "ACCOUNT",
        "STATE",
        "CREATED (UTC)",
        "CHANGED",
        "EST USD",
        "SUBMITS",
        "BYTES",
        "SHA256"
    );
    let now_ms = reelq_producer::now_ms();
    for record in records {
        let detail = match (record.state, &record.reconcile_note) {
            (JobState::Stored, _) => record.object_key.clone().unwrap_or_default(),
            // What the provider's records showed, beside why the job is uncertain.
            (JobState::Uncertain, Some(note)) => {
                format!("{} [{note}]", record.error.as_deref().unwrap_or_default())
            }
            _ => record.error.clone().unwrap_or_default(),
        };
        let cost = record.spec.estimated_cost_usd;
        println!(
            "{:<26}  {:<tenant_width$}  {:<account_width$}  {:<10}  {:<20}  {:>10}  {:>7}  {:>7}  {:>8}  {:<12}  {}",
            record.job_id,
            tenant_of(record),
            record.account.as_str(),
            record.state,
            utc(record.created_ms),
            format!("{} ago", age(now_ms.saturating_sub(record.updated_ms))),
            cost.map(|usd| format!("{usd:.2}")).unwrap_or_default(),
            record.submits,
            record.bytes.map(|b| b.to_string()).unwrap_or_default(),
            record
                .sha256
                .as_deref()
                .map(|h| &h[..12.min(h.len())])
                .unwrap_or(""),
            detail,
        );
    }
}

pub(crate) fn print_workers(workers: &[reelq_queue::WorkerInfo], json: bool) -> anyhow::Result<()> {
    if json {
        print_json(&serde_json::json!(workers))?;
        return Ok(());
    }
    let now_ms = reelq_producer::now_ms();
    let ago = |ms: u64| format!("{} ago", age(now_ms.saturating_sub(ms)));
    println!(
        "{:<28}  {:<9}  {:>4}  {:<8}  {:>6}  {:>12}  {:>10}  ACCOUNTS",
        "NAME", "ROLE", "CONC", "VERSION", "SCHEMA", "STARTED", "SEEN"
    );
    for worker in workers {
        println!(
            "{:<28}  {:<9}  {:>4}  {:<8}  {:>6}  {:>12}  {:>10}  {}",
            worker.name,
            worker.role,
            worker.concurrency,
            worker.version,
            worker.ledger_schema,
            ago(worker.started_ms),
            ago(worker.seen_ms),
            worker.accounts.join(","),
        );
    }
    if workers.is_empty() {
        println!("no live workers (each announces itself every 5 s)");
    }
    Ok(())
}

pub(crate) fn print_migration(
    migration: &reelq_queue::Migration,
    json: bool,
) -> anyhow::Result<()> {
    if json {
        return print_json(&serde_json::json!(migration));
    }
    println!(
        "ledger schema {} -> {}: {} of {} job records moved to the new format",
        migration.from, migration.to, migration.records_moved, migration.records_seen
    );
    Ok(())
}

pub(crate) fn print_partitioning(
    done: &reelq_queue::Partitioning,
    json: bool,
) -> anyhow::Result<()> {
    if json {
        return print_json(&serde_json::json!(done));
    }
    let counts = |counts: &[(reelq_core::JobState, u64)]| {
        counts
            .iter()
            .filter(|(_, n)| *n > 0)
            .map(|(state, n)| format!("{state} {n}"))
            .collect::<Vec<_>>()
            .join(" · ")
    };
    match done.already {
        true => println!(
            "the ledger was partitioned already: {} partitions ({}), jobs made before {} in its legacy one",
            done.partitions,
            done.tags.join(", "),
            done.since_ms
        ),
        false => println!(
            "the ledger is partitioned: {} partitions ({}); the switch took {} ms; jobs made before {} stay in its legacy partition",
            done.partitions,
            done.tags.join(", "),
            done.switch_ms,
            done.since_ms
        ),
    }
    println!("jobs before  {}", counts(&done.before));
    println!("jobs after   {}", counts(&done.after));
    println!(
        "checked      {} existing jobs found, with their callbacks, through the new layout",
        done.jobs_checked
    );
    if !done.workers_to_restart.is_empty() {
        println!(
            "restart      {} (and every producer): until then they see the legacy partition alone",
            done.workers_to_restart.join(", ")
        );
    }
    Ok(())
}

pub(crate) fn print_stats(stats: &reelq_producer::Stats, json: bool) -> anyhow::Result<()> {
    if json {
        print_json(&serde_json::json!(stats))?;
        return Ok(());
    }
    let states: Vec<String> = stats
        .states
        .iter()
        .map(|(state, n)| format!("{state} {n}"))
        .collect();
    println!("jobs       {}", states.join(" · "));
    println!("due now    {}", stats.due_now);
    println!(
        "finished   {} stored in the last minute, {} in the last hour; {} failed in the last hour",
        stats.stored_last_minute, stats.stored_last_hour, stats.failed_last_hour
    );
    if let Some(line) = ledger_history_line(&stats.ledger) {
        println!("ledger     {line}");
    }
    println!(
        "history    {}",
        archive_line(&stats.archive, reelq_producer::now_ms())
    );
    for provider in &stats.providers {
        let paused = provider
            .paused_ms
            .map(|ms| format!(", submits paused for {:.1} s", ms as f64 / 1000.0))
            .unwrap_or_default();
        println!(
            "{:<10} {} generations in flight{paused}",
            provider.account.as_str(),
            provider.in_flight
        );
    }
    Ok(())
}

/// What operators must know of the ledger's history, if anything: a rollback declared (Redis
/// lost writes it had acknowledged) and whether paid creates are held now.
pub(crate) fn ledger_history_line(history: &reelq_queue::HistoryStatus) -> Option<String> {
    if history.rollbacks == 0 {
        return None;
    }
    let held = match (history.holding, history.held_ms) {
        (true, _) => "; PAID CREATES HELD NOW while workers give back their creates".to_owned(),
        (false, Some(ms)) => format!("; it held paid creates {:.1} s", ms as f64 / 1000.0),
        (false, None) => String::new(),
    };
    Some(format!(
        "went back in time {} time(s) (Redis lost acknowledged writes); last: {}{held}",
        history.rollbacks,
        history.last_rollback.as_deref().unwrap_or("-"),
    ))
}

/// The archiver's state: how much history left Redis for the store, and, loudly, whether it
/// fails now (finished jobs then pile up in Redis).
pub(crate) fn archive_line(archive: &reelq_queue::ArchiveStatus, now_ms: u64) -> String {
    let ago = |ms: u64| format!("{} ago", age(now_ms.saturating_sub(ms)));
    let moved = format!(
        "{} finished jobs archived to the store in {} segments",
        archive.archived, archive.segments
    );
    match (archive.failing_since_ms, archive.ok_ms) {
        (Some(since), _) => format!(
            "ARCHIVING FAILS since {} ({}): finished jobs stay in Redis; {moved}",
            ago(since),
            archive.error.as_deref().unwrap_or("-")
        ),
        (None, Some(ok)) => format!("{moved}; last pass {}", ago(ok)),
        (None, None) => "no archive pass yet (finished jobs stay in Redis for their grace)".into(),
    }
}

pub(crate) fn report(
    info: &BatchInfo,
    records: &[JobRecord],
    format: ReportFormat,
) -> anyhow::Result<()> {
    match format {
        ReportFormat::Csv => write_report_csv(records, std::io::stdout())?,
        ReportFormat::Json => {
            let jobs: Vec<serde_json::Value> = records.iter().map(report_json).collect();
            let report = serde_json::json!({ "batch": info, "jobs": jobs });
            print_json(&serde_json::json!(report))?;
        }
        ReportFormat::Table => {
            let name = info.name.as_deref().unwrap_or("(unnamed)");
            let budget = info
                .budget_micros
                .map(|b| format!(" of ${:.2} budget", micros_to_usd(b)))
                .unwrap_or_default();
            println!(
                "batch {} {name}: {} jobs, ${:.2} reserved{budget}",
                info.batch_id,
                info.total,
                micros_to_usd(info.reserved_micros)
            );
            print_table(records);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use reelq_queue::HistoryStatus;

    use super::{archive_line, ledger_history_line};

    #[test]
    fn stats_say_loudly_when_archiving_fails() {
        let mut archive = reelq_queue::ArchiveStatus {
            archived: 1200,
            segments: 2,
            ok_ms: Some(10_000),
            ..Default::default()
        };
        assert_eq!(
            archive_line(&archive, 15_000),
            "1200 finished jobs archived to the store in 2 segments; last pass 5 s ago"
        );
        archive.failing_since_ms = Some(12_000);
        archive.error = Some("writing history to the store: connection refused".into());
        let line = archive_line(&archive, 15_000);
        assert!(
            line.starts_with("ARCHIVING FAILS since 3 s ago (writing history"),
            "{line}"
        );
    }

    #[test]
    fn stats_name_a_ledger_that_went_back_in_time_and_whether_submits_are_held() {
        assert_eq!(ledger_history_line(&HistoryStatus::default()), None);
        let mut history = HistoryStatus {
            rollbacks: 1,
            last_rollback: Some("1796619569768 w1: saw 24, found 16".into()),
            declared_ms: Some(1_796_619_569_768),
            holding: true,
            held_ms: None,
        };
        let line = ledger_history_line(&history).unwrap();
        assert!(line.contains("went back in time 1 time(s)"), "{line}");
        assert!(line.contains("w1: saw 24, found 16"), "{line}");
        assert!(line.contains("PAID CREATES HELD NOW"), "{line}");
        (history.holding, history.held_ms) = (false, Some(6_000));
        let line = ledger_history_line(&history).unwrap();
        assert!(line.ends_with("it held paid creates 6.0 s"), "{line}");
    }
}
