//! What a batch asks for beyond its jobs: a name, a window, a budget, a priority.

use serde::{Deserialize, Serialize};

/// Batch-wide settings, fixed at enqueue (the budget can be raised by a resume).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct BatchOptions {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// No job of the batch is submitted before this unix time (ms).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_after_ms: Option<u64>,
    /// The most the batch may spend, in millionths of a dollar, by its jobs' estimates:
    /// each submit reserves its job's estimate, a refused create gives it back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget_micros: Option<u64>,
    /// Low priority: these jobs are submitted only when no normal job is due (interactive
    /// work goes first under the same provider limits).
    #[serde(default)]
    pub low_priority: bool,
    /// Where reelq POSTs the batch's summary when its last job ends (signed like job
    /// webhooks).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notify_url: Option<String>,
}

/// Dollars to the ledger's integer millionths (sums of them never drift).
pub fn usd_to_micros(usd: f64) -> u64 {
    (usd * 1_000_000.0).round().max(0.0) as u64
}

pub fn micros_to_usd(micros: u64) -> f64 {
    micros as f64 / 1_000_000.0
}
