//! What a step's provider calls count in the metrics: each call by what became of it, the
//! spend a submit reserved, the bytes stored and a stored job's time from enqueue.

use reelq_queue::{LeasedJob, Transition};

use super::Step;

/// Counts the provider call a step made, by what became of it.
pub(super) fn count_provider_request<S: Step>(lease: &S, transition: &Transition) {
    let job = lease.job();
    let (call, outcome) = match transition {
        Transition::Submitted { .. } => {
            let usd = job.spec().estimated_cost_usd.unwrap_or_default();
            metrics::counter!(
                "reelq_estimated_spend_microdollars_total",
                "account" => job.account().as_str().to_owned(),
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
            let waited = job.job_id().created_at().elapsed().unwrap_or_default();
            metrics::histogram!("reelq_job_seconds", "provider" => job.spec().provider.as_str())
                .record(waited.as_secs_f64());
            ("download", "ok")
        }
        Transition::Uncertain { .. } => ("submit", "unknown_outcome"),
        Transition::RetrySubmit { .. } => ("submit", "retry"),
        // The create was refused (the refusal's class counts it once: the fall back's own
        // metric counts the move).
        Transition::FallBack { reason, .. } => ("submit", reason.as_str()),
        Transition::PollAgain { .. } => ("query", "retry"),
        Transition::RetryFetch { .. } | Transition::Requery { .. } => ("download", "retry"),
        Transition::Failed { class, .. } => (S::STATE.as_str(), class.as_str()),
        Transition::BeginSubmit { .. } => return,
    };
    count_provider_call(job, call, outcome);
}

pub(super) fn count_provider_call(job: &LeasedJob, call: &'static str, outcome: &'static str) {
    metrics::counter!(
        "reelq_provider_requests_total",
        "provider" => job.spec().provider.as_str(),
        "call" => call,
        "outcome" => outcome,
    )
    .increment(1);
}
