//! The job state machine's states. The ledger in `reelq-queue` enforces the transitions; this
//! module only names them.

use std::{fmt, str::FromStr};

use serde::{Deserialize, Serialize};

/// Where a job is in its life.
///
/// ```text
/// queued -> submitting -> waiting -> fetching -> stored
///   |           |            |          |
///   v           v            v          v
/// budget_held uncertain    failed     failed      (+ rejected, expired, cancelled)
/// ```
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    /// Validated and waiting for a worker to submit it.
    Queued,
    /// A worker holds the lease and is calling the provider's create endpoint.
    Submitting,
    /// The provider accepted the task; a poll is scheduled.
    Waiting,
    /// The provider finished; a worker is streaming the result into storage.
    Fetching,
    /// The video is in storage. Terminal.
    Stored,
    /// The job ended with an error (see its error class). Terminal.
    Failed,
    /// The provider refused the content (moderation). Terminal.
    Rejected,
    /// The job's deadline passed before it finished. Terminal.
    Expired,
    /// A submit was sent but its outcome is unknown: never resubmitted automatically.
    Uncertain,
    /// Its batch's budget is spent: kept, unsubmitted, until `reelq batch resume`.
    BudgetHeld,
    /// Cancelled before it was submitted. Terminal.
    Cancelled,
}

impl JobState {
    pub const ALL: [JobState; 11] = [
        JobState::Queued,
        JobState::Submitting,
        JobState::Waiting,
        JobState::Fetching,
        JobState::Stored,
        JobState::Failed,
        JobState::Rejected,
        JobState::Expired,
        JobState::Uncertain,
        JobState::BudgetHeld,
        JobState::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Queued => "queued",
            JobState::Submitting => "submitting",
            JobState::Waiting => "waiting",
            JobState::Fetching => "fetching",
            JobState::Stored => "stored",
            JobState::Failed => "failed",
            JobState::Rejected => "rejected",
            JobState::Expired => "expired",
            JobState::Uncertain => "uncertain",
            JobState::BudgetHeld => "budget_held",
            JobState::Cancelled => "cancelled",
        }
    }

    /// True when no worker will touch the job again. `uncertain` is not terminal: it waits
    /// for reconciliation.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            JobState::Stored
                | JobState::Failed
                | JobState::Rejected
                | JobState::Expired
                | JobState::Cancelled
        )
    }

    /// True when nothing happens to the job until someone acts: it ended, or it waits for an
    /// operator (`uncertain`, `budget_held`).
    pub fn is_settled(self) -> bool {
        self.is_terminal() || matches!(self, JobState::Uncertain | JobState::BudgetHeld)
    }
}

impl fmt::Display for JobState {
    /// Honours width and alignment (`{:<10}`), so tables line up.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("unknown job state {0:?} (states: {states})", states = JobState::ALL.map(JobState::as_str).join(", "))]
pub struct UnknownState(pub String);

impl FromStr for JobState {
    type Err = UnknownState;
    fn from_str(s: &str) -> Result<Self, UnknownState> {
        JobState::ALL
            .into_iter()
            .find(|state| state.as_str() == s)
            .ok_or_else(|| UnknownState(s.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_state_parses_from_its_name() {
        for state in JobState::ALL {
            assert_eq!(state.as_str().parse(), Ok(state));
        }
        assert_eq!("done".parse::<JobState>(), Err(UnknownState("done".into())));
        let err = UnknownState("done".into()).to_string();
        assert!(err.contains("queued, ") && err.contains("stored"), "{err}");
        assert_eq!(
            format!("[{:<8}]", JobState::Stored),
            "[stored  ]",
            "tables line up"
        );
    }
}
