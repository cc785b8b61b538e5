//! What a batch asks for beyond its jobs: a name, a window, a budget, a priority.

use serde::{Deserialize, Serialize};

use crate::{SpecError, spec::check_url, spec::parse_deadline};

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

impl BatchOptions {
    /// A batch's settings as a person gives them (the CLI's flags, the API's query),
    /// checked: a start time in RFC 3339 (in the future), a budget in dollars (not
    /// negative), an http(s) summary URL. The error names the field.
    pub fn checked(
        name: Option<String>,
        start_after: Option<&str>,
        budget_usd: Option<f64>,
        low_priority: bool,
        notify_url: Option<String>,
        now_ms: u64,
    ) -> Result<Self, SpecError> {
        let start_after_ms = start_after
            .map(|at| parse_deadline(at, now_ms))
            .transpose()
            .map_err(|err| SpecError::new("start_after", err.message))?;
        if let Some(budget) = budget_usd
            && !(budget.is_finite() && budget >= 0.0)
        {
            return Err(SpecError::new(
                "budget_usd",
                format!("{budget} is not a sum of dollars (0 or more)"),
            ));
        }
        if let Some(url) = &notify_url {
            check_url("notify_url", url)?;
        }
        Ok(Self {
            name,
            start_after_ms,
            budget_micros: budget_usd.map(usd_to_micros),
            low_priority,
            notify_url,
        })
    }
}

/// Dollars to the ledger's integer millionths (sums of them never drift).
pub fn usd_to_micros(usd: f64) -> u64 {
    (usd * 1_000_000.0).round().max(0.0) as u64
}

pub fn micros_to_usd(micros: u64) -> f64 {
    micros as f64 / 1_000_000.0
}
