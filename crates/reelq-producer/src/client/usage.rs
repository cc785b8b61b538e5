//! What each tenant used, by UTC day or month: jobs by state, seconds of video generated and
//! the estimated spend, read from the job records themselves (those still in Redis and those
//! archived to the object store, so a month can be billed after Redis has forgotten it). A
//! report, not a counter: it costs the queue nothing per job.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Datelike, NaiveDate};
use reelq_core::{JobId, JobState, micros_to_usd, usd_to_micros};
use reelq_queue::JobRecord;
use serde::Serialize;

use super::{Client, ProducerError};

/// How usage is summed: per UTC day, or per UTC month.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Period {
    Day,
    Month,
}

/// One tenant's use in one period, of the jobs made in it.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Usage {
    pub tenant: String,
    /// `2026-12-07` (by day) or `2026-12` (by month), UTC.
    pub period: String,
    pub jobs: u64,
    /// Jobs by state, every state listed.
    pub states: BTreeMap<String, u64>,
    /// Seconds of video stored.
    pub generation_seconds: u64,
    /// The estimated cost of the jobs a provider took (a task was made for them: stored,
    /// failed or refused after the create, uncertain with a task), from each job's recorded
    /// estimate.
    pub estimated_spend_usd: f64,
}

/// Jobs read per page of the live ledger.
const LIVE_PAGE: usize = 500;

impl Client {
    /// Each tenant's use of the jobs made from `from` to `to` (UTC days, both included), by
    /// `period`; with `tenant`, that tenant's only. Reads every live job record (a page at a
    /// time) and, with the history, the archived days.
    pub async fn usage(
        &self,
        from: NaiveDate,
        to: NaiveDate,
        period: Period,
        tenant: Option<&str>,
    ) -> Result<Vec<Usage>, ProducerError> {
        let in_range = |record: &JobRecord| {
            let day = made_on(record);
            day >= from && day <= to && tenant.is_none_or(|t| record.spec.tenant_name() == t)
        };
        // A job both archived and still live (retried after it was archived) counts once,
        // as it is now.
        let mut records: HashMap<JobId, JobRecord> = HashMap::new();
        if self.history.is_some() {
            let mut day = from;
            while day <= to {
                for job in self.archived_day(day).await? {
                    if in_range(&job.record) {
                        records.insert(job.record.job_id, job.record);
                    }
                }
                day = day.succ_opt().expect("a day after");
            }
        }
        let mut cursor = None;
        loop {
            let (page, next) = self.jobs_page(&[], cursor, LIVE_PAGE).await?;
            for record in page.into_iter().filter(in_range) {
                records.insert(record.job_id, record);
            }
            match next {
                Some(next) => cursor = Some(next),
                None => break,
            }
        }
        Ok(summed(records.values(), period))
    }
}

/// The UTC day a job was made.
fn made_on(record: &JobRecord) -> NaiveDate {
    DateTime::from_timestamp_millis(record.created_ms as i64)
        .map(|at| at.date_naive())
        .unwrap_or_default()
}

/// Sums `records` by tenant and period, in that order.
pub(crate) fn summed<'a>(
    records: impl Iterator<Item = &'a JobRecord>,
    period: Period,
) -> Vec<Usage> {
    let mut sums: BTreeMap<(String, String), (Usage, u64)> = BTreeMap::new();
    for record in records {
        let day = made_on(record);
        let period_name = match period {
            Period::Day => day.format("%Y-%m-%d").to_string(),
            Period::Month => format!("{:04}-{:02}", day.year(), day.month()),
        };
        let tenant = record.spec.tenant_name().to_owned();
        let (usage, spend_micros) = sums
            .entry((tenant.clone(), period_name.clone()))
            .or_insert_with(|| {
                let states = JobState::ALL
                    .iter()
                    .map(|state| (state.as_str().to_owned(), 0))
                    .collect();
                let usage = Usage {
                    tenant,
                    period: period_name,
                    jobs: 0,
                    states,
                    generation_seconds: 0,
                    estimated_spend_usd: 0.0,
                };
                (usage, 0)
            });
        usage.jobs += 1;
        *usage
            .states
            .entry(record.state.as_str().to_owned())
            .or_default() += 1;
        if record.state == JobState::Stored {
            usage.generation_seconds += u64::from(record.spec.duration_s);
        }
        if record.task_id.is_some() {
            *spend_micros += record.spec.estimated_cost_usd.map_or(0, usd_to_micros);
        }
    }
    sums.into_values()
        .map(|(mut usage, micros)| {
            usage.estimated_spend_usd = micros_to_usd(micros);
            usage
        })
        .collect()
}

/// Usage as CSV, header first: tenant, period, jobs, a column per state, seconds of video,
/// estimated spend.
pub fn write_usage_csv(usage: &[Usage], out: impl std::io::Write) -> Result<(), csv::Error> {
    let mut writer = csv::Writer::from_writer(out);
    let states: Vec<&str> = JobState::ALL.iter().map(|state| state.as_str()).collect();
    let mut header = vec!["tenant", "period", "jobs"];
    header.extend(&states);
    header.extend(["generation_seconds", "estimated_spend_usd"]);
    writer.write_record(&header)?;
    for row in usage {
        let mut record = vec![row.tenant.clone(), row.period.clone(), row.jobs.to_string()];
        for state in &states {
            record.push(row.states.get(*state).copied().unwrap_or(0).to_string());
        }
        record.push(row.generation_seconds.to_string());
        record.push(format!("{:.6}", row.estimated_spend_usd));
        writer.write_record(&record)?;
    }
    writer.flush()?;
    Ok(())
}
