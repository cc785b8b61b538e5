//! A batch report: one row per job, as CSV or JSON, for the CLI and the dashboard alike.

use reelq_queue::JobRecord;

/// The report's columns.
const REPORT_COLUMNS: [&str; 11] = [
    "job_id",
    "state",
    "provider",
    "model",
    "task_id",
    "object_key",
    "bytes",
    "sha256",
    "estimated_cost_usd",
    "error_class",
    "error",
];

/// One job's row, in [`REPORT_COLUMNS`] order.
fn report_row(record: &JobRecord) -> [String; 11] {
    [
        record.job_id.to_string(),
        record.state.to_string(),
        record.spec.provider.to_string(),
        record.spec.model.clone(),
        record.task_id.clone().unwrap_or_default(),
        record.object_key.clone().unwrap_or_default(),
        record.bytes.map(|b| b.to_string()).unwrap_or_default(),
        record.sha256.clone().unwrap_or_default(),
        record
            .spec
            .estimated_cost_usd
            .map(|usd| format!("{usd:.3}"))
            .unwrap_or_default(),
        record
            .error_class
            .map(|c| c.to_string())
            .unwrap_or_default(),
        record.error.clone().unwrap_or_default(),
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
