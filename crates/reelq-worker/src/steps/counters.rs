//! What a step's provider calls count in the metrics: each call by what became of it, the
//! spend a submit reserved, the bytes stored and a stored job's time from enqueue.

use reelq_queue::{Lease, Transition};

/// Counts the provider call a step made, by what became of it.
pub(super) fn count_provider_request(lease: &Lease, transition: &Transition) {
    let (call, outcome) = match transition {
        Transition::Submitted { .. } => {
            let usd = lease.spec.estimated_cost_usd.unwrap_or_default();
            metrics::counter!(
                "reelq_estimated_spend_microdollars_total",
                "account" => lease.account.as_str().to_owned(),
            )
            .increment(reelq_core::usd_to_micros(usd));
            ("submit", "ok")
        }
        Transition::PollAgain { error: None, .. } | Transition::CancelledAtProvider { .. } => {
            ("query", "ok")
        }
        Transition::Stored { bytes, .. } => {
            metrics::counter!("reelq_stored_bytes_total").increment(*bytes);
            // From enqueue (the job id's own time) to the video stored.
            let waited = lease.job_id.created_at().elapsed().unwrap_or_default();
            metrics::histogram!("reelq_job_seconds", "provider" => lease.spec.provider.as_str())
                .record(waited.as_secs_f64());
            ("download", "ok")
        }
        Transition::Uncertain { .. } => ("submit", "unknown_outcome"),
        Transition::RetrySubmit { .. } => ("submit", "retry"),
        Transition::PollAgain { .. } => ("query", "retry"),
        Transition::RetryFetch { .. } | Transition::Requery { .. } => ("download", "retry"),
        Transition::Failed { class, .. } => (lease.state.as_str(), class.as_str()),
        Transition::BeginSubmit { .. } => return,
    };
    count_provider_call(lease, call, outcome);
}

pub(super) fn count_provider_call(lease: &Lease, call: &'static str, outcome: &'static str) {
    metrics::counter!(
        "reelq_provider_requests_total",
        "provider" => lease.spec.provider.as_str(),
        "call" => call,
        "outcome" => outcome,
    )
    .increment(1);
}
