//! A claimed job as the step it was claimed for (after underway's `InProgressTask` and River's
//! one constructor per state change): a submit, a poll or a fetch lease, each carrying what
//! its step needs and nothing valid only in another step. What proves the worker still holds
//! the job is its [`Fence`]; every ledger write for the job takes one ([`Held`]).

use reelq_core::{AccountName, FallbackReason, JobId, JobSpec, JobState};

use crate::scripts::claim::Claimed;

/// What proves a worker still holds a job: the job's fence when it was claimed, and the
/// claim's token. A fence alone can repeat after Redis loses its last writes (the counter
/// rolls back and another claim gets the same number); the token cannot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fence {
    pub job_id: JobId,
    pub fence: u64,
    pub token: String,
}

/// Anything that holds a job's fence: what the ledger's fenced writes take.
pub trait Held {
    fn fence(&self) -> &Fence;
}

impl Held for Fence {
    fn fence(&self) -> &Fence {
        self
    }
}

/// What every lease carries, whatever its step.
#[derive(Debug, Clone)]
pub struct LeasedJob {
    fence: Fence,
    account: AccountName,
    spec: JobSpec,
    attempt: u32,
}

impl LeasedJob {
    pub fn job_id(&self) -> JobId {
        self.fence.job_id
    }

    /// The provider account the job's calls go to: the one it asked for, or the one this
    /// claim picked for it (kept from its submit on: its task lives there).
    pub fn account(&self) -> &AccountName {
        &self.account
    }

    pub fn spec(&self) -> &JobSpec {
        &self.spec
    }

    /// The attempts this step has spent so far.
    pub fn attempt(&self) -> u32 {
        self.attempt
    }
}

impl Held for LeasedJob {
    fn fence(&self) -> &Fence {
        &self.fence
    }
}

/// A queued job to submit. Its `BeginSubmit` is recorded (durably) before the create goes.
#[derive(Debug, Clone)]
pub struct SubmitLease {
    job: LeasedJob,
    low_priority: bool,
    fall_back: Option<FallbackReason>,
}

impl SubmitLease {
    pub fn job(&self) -> &LeasedJob {
        &self.job
    }

    /// A job of a low-priority batch: its submit asks the provider for low priority where
    /// the contract has such a hint (fal's queue).
    pub fn low_priority(&self) -> bool {
        self.low_priority
    }

    /// A routed job the claim handed over held back past its route's patience (its account
    /// paused, or a limit): moved on to its next candidate, not submitted.
    pub fn fall_back(&self) -> Option<FallbackReason> {
        self.fall_back
    }
}

/// Whether someone asked to cancel a waiting job, and whether the provider answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cancel {
    NotRequested,
    /// The poll asks the provider to cancel first.
    Requested,
    /// The provider already answered (taken, or nothing left to cancel): not asked again.
    Answered,
}

/// A waiting job to poll: its provider task, and the polls so far.
#[derive(Debug, Clone)]
pub struct PollLease {
    job: LeasedJob,
    task_id: String,
    polls: u32,
    cancel: Cancel,
    woken: bool,
}

impl PollLease {
    pub fn job(&self) -> &LeasedJob {
        &self.job
    }

    pub fn task_id(&self) -> &str {
        &self.task_id
    }

    pub fn polls(&self) -> u32 {
        self.polls
    }

    pub fn cancel(&self) -> Cancel {
        self.cancel
    }

    /// The polls the job will have made once this query is counted: a query a callback
    /// woke confirms the callback and is not one of reelq's own polls.
    pub fn polls_after(&self) -> u32 {
        match self.woken {
            true => self.polls,
            false => self.polls + 1,
        }
    }

    /// The lease, to fetch the video this poll found ready under the same lease (recording
    /// `fetching` first would cost a move and a claim per job).
    pub fn ready(self, result_url: String) -> FetchLease {
        FetchLease {
            polls: Some(self.polls_after()),
            job: self.job,
            task_id: self.task_id,
            result_url,
        }
    }
}

/// A job whose video is ready: its URL, and the task to ask for a fresh one.
#[derive(Debug, Clone)]
pub struct FetchLease {
    job: LeasedJob,
    task_id: String,
    result_url: String,
    /// Fetched under the lease of the poll that found it ready: that poll's count, to record
    /// with the fetch's ending.
    polls: Option<u32>,
}

impl FetchLease {
    pub fn job(&self) -> &LeasedJob {
        &self.job
    }

    pub fn task_id(&self) -> &str {
        &self.task_id
    }

    pub fn result_url(&self) -> &str {
        &self.result_url
    }

    /// The poll count to record with the fetch's ending, if a poll found it ready.
    pub fn polls(&self) -> Option<u32> {
        self.polls
    }
}

macro_rules! held_by_its_job {
    ($($lease:ty),*) => {$(
        impl Held for $lease {
            fn fence(&self) -> &Fence {
                &self.job.fence
            }
        }
    )*};
}
held_by_its_job!(SubmitLease, PollLease, FetchLease);

/// A job a worker took, as the step it was taken for.
#[derive(Debug, Clone)]
pub enum Lease {
    Submit(SubmitLease),
    Poll(PollLease),
    Fetch(FetchLease),
}

impl Lease {
    pub fn job(&self) -> &LeasedJob {
        match self {
            Lease::Submit(lease) => &lease.job,
            Lease::Poll(lease) => &lease.job,
            Lease::Fetch(lease) => &lease.job,
        }
    }

    pub fn job_id(&self) -> JobId {
        self.job().job_id()
    }

    /// The state the job was claimed in.
    pub fn state(&self) -> JobState {
        match self {
            Lease::Submit(_) => JobState::Queued,
            Lease::Poll(_) => JobState::Waiting,
            Lease::Fetch(_) => JobState::Fetching,
        }
    }

    /// The provider task of a poll or fetch lease.
    pub fn task_id(&self) -> Option<&str> {
        match self {
            Lease::Submit(_) => None,
            Lease::Poll(lease) => Some(&lease.task_id),
            Lease::Fetch(lease) => Some(&lease.task_id),
        }
    }
}

impl Held for Lease {
    fn fence(&self) -> &Fence {
        &self.job().fence
    }
}

/// A claimed job as a lease, or (job id, fence, what is wrong) for a record that cannot be
/// read, or whose state has no step.
pub(crate) fn lease_of(claimed: Claimed, token: &str) -> Result<Lease, (String, u64, String)> {
    match read(&claimed, token) {
        Ok(lease) => Ok(lease),
        Err(detail) => Err((claimed.id, claimed.fence, detail)),
    }
}

fn read(claimed: &Claimed, token: &str) -> Result<Lease, String> {
    let job_id: JobId = claimed
        .id
        .parse()
        .map_err(|e: reelq_core::IdError| e.to_string())?;
    let state: JobState = claimed
        .state
        .parse()
        .map_err(|e: reelq_core::UnknownState| e.to_string())?;
    let spec: JobSpec = serde_json::from_str(&claimed.spec).map_err(|e| format!("spec: {e}"))?;
    let account: AccountName = claimed
        .account
        .parse()
        .map_err(|e: reelq_core::SpecError| e.to_string())?;
    let job = LeasedJob {
        fence: Fence {
            job_id,
            fence: claimed.fence,
            token: token.to_owned(),
        },
        account,
        spec,
        attempt: claimed.attempt,
    };
    let non_empty = |value: &Option<String>, what: &str| {
        value
            .clone()
            .filter(|value| !value.is_empty())
            .ok_or(format!("{state} without {what}"))
    };
    Ok(match state {
        JobState::Queued => Lease::Submit(SubmitLease {
            job,
            low_priority: claimed.low_priority,
            fall_back: claimed.fall_back,
        }),
        JobState::Waiting => Lease::Poll(PollLease {
            task_id: non_empty(&claimed.task_id, "a provider task id")?,
            job,
            polls: claimed.polls,
            woken: claimed.woken,
            cancel: match (claimed.cancel_requested, claimed.cancel_answered) {
                (false, _) => Cancel::NotRequested,
                (true, false) => Cancel::Requested,
                (true, true) => Cancel::Answered,
            },
        }),
        JobState::Fetching => Lease::Fetch(FetchLease {
            task_id: non_empty(&claimed.task_id, "a provider task id")?,
            result_url: non_empty(&claimed.result_url, "a result url")?,
            polls: None,
            job,
        }),
        other => return Err(format!("claimed in state {other}, which has no step")),
    })
}
