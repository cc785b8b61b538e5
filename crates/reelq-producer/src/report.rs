//! A batch report: one row per job, as CSV or JSON, for the CLI and the dashboard alike.

use reelq_queue::JobRecord;

/// The report's columns.
const REPORT_COLUMNS: [&str; 14] = [
    "job_id",
    "tenant",
    "state",
    "route",
    "provider",
    "account",
    "model",
    "task_id",
    "object_key",
    "bytes",
    "sha256",
    "estimated_cost_usd",
    "error_class",
    "error",
];

/// One job's row, in [`REPORT_COLUMNS`] order: the job's view (`JobRecord::view`), as text.
fn report_row(record: &JobRecord) -> [String; 14] {
    let job = record.view();
    let text = |value: Option<&str>| value.unwrap_or_default().to_owned();
    [
        job.job_id.to_string(),
        job.tenant.to_owned(),
        job.state.to_string(),
        text(job.route),
        job.provider.to_string(),
        record.account.to_string(),
        job.model.to_owned(),
        text(job.task_id),
        text(job.object_key),
        job.bytes.map(|b| b.to_string()).unwrap_or_default(),
        text(job.sha256),
        job.estimated_cost_usd
            .map(|usd| format!("{usd:.3}"))
            .unwrap_or_default(),
        job.error_class.map(|c| c.to_string()).unwrap_or_default(),
        text(job.error),
    ]
}

/// One job's row as JSON: the job as reports and webhooks show it (`JobRecord::view`): the
/// CSV's columns, typed (numbers as numbers, absent values as null), with its batch and video.
pub fn report_json(record: &JobRecord) -> serde_json::Value {
    serde_json::to_value(record.view()).expect("a job view serializes")
}

/// The report as CSV, header first.
pub fn write_report_csv(records: &[JobRecord], out: impl std::io::Write) -> Result<(), csv::Error> {
    let mut writer = csv::Writer::from_writer(out);
    writer.write_record(REPORT_COLUMNS)?;
    for record in records {
        writer.write_record(report_row(record))?;
    }
    writer.flush()?;
    Ok(())
}
