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

/// One job's row as JSON: the CSV's columns, in their order, typed (numbers
/// as numbers, absent values as null).
pub fn report_json(record: &JobRecord) -> serde_json::Value {
    serde_json::json!({
        "job_id": record.job_id,
        "state": record.state,
        "provider": record.spec.provider,
        "model": record.spec.model,
        "task_id": record.task_id,
        "object_key": record.object_key,
        "bytes": record.bytes,
        "sha256": record.sha256,
        "estimated_cost_usd": record.spec.estimated_cost_usd,
        "error_class": record.error_class,
        "error": record.error,
    })
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
