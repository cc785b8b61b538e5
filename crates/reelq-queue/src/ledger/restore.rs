//! A worker gives the ledger back what it knows first-hand of a paid create it made
//! (`restore.lua`): after the ledger went back in time, or when the create's answer came
//! back after the submit could no longer be recorded under its lease.

use reelq_core::{AccountName, JobId, JobState};

use crate::{Ledger, QueueError, TASK_INDEX_TTL, scripts};

/// A paid create as the worker that made it knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaidCreate {
    pub job_id: JobId,
    /// The account the create went to (its task lives there).
    pub account: AccountName,
    /// The provider's task id, if its answer came.
    pub task_id: Option<String>,
    /// The token of the claim the create was made under.
    pub claim_token: String,
    /// When the create went out (unix ms, the worker's clock).
    pub sent_ms: u64,
    /// How long the job keeps its in-flight slot if it becomes `uncertain` (the account's
    /// uncertain slot hold).
    pub uncertain_slot_hold: Option<std::time::Duration>,
}

/// What giving a paid create back did to its job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RestoreOutcome {
    /// The job is `waiting` on the create's task, polled at once.
    Restored,
    /// The ledger had forgotten the create began, whose answer never came: `uncertain`.
    Uncertain,
    /// The ledger already knows (the same task, or a create it reads as begun).
    Intact,
    /// The job has another task, the task is another job's, or another claim has submitted
    /// the job since: left as it is, for an operator (a second create was paid).
    Conflict,
    /// The job has ended.
    Ended,
    /// The ledger has no record of the job.
    Missing,
}

impl Ledger {
    /// Gives `create` back to its job (`why` goes into its event log): a job that may not
    /// have been submitted again since gets the task, or is `uncertain` if the answer never
    /// came. Returns what it did and the state the job was in.
    pub async fn restore_paid_create(
        &self,
        create: &PaidCreate,
        why: &str,
    ) -> Result<(RestoreOutcome, Option<JobState>), QueueError> {
        let job_id = create.job_id.to_string();
        let part = self.part_of(&job_id);
        let task_id = create.task_id.as_deref().unwrap_or_default();
        let beside_home = self.place(part).home.is_none();
        let task_owner = match !beside_home {
            true if !task_id.is_empty() => {
                let account = create.account.as_str();
                let mut home = self.home_conn().await?;
                self.task_index_owner(&mut home, account, task_id).await?
            }
            _ => None,
        };
        let args = scripts::restore::Args {
            task_account: (!beside_home).then(|| create.account.as_str().to_owned()),
            task_owner,
            job_id: &job_id,
            account: create.account.as_str(),
            task_id: create.task_id.as_deref().unwrap_or_default(),
            token: &create.claim_token,
            sent_ms: create.sent_ms,
            index_ttl_ms: TASK_INDEX_TTL.as_millis() as u64,
            why,
            slot_hold_ms: create
                .uncertain_slot_hold
                .map_or(-1, |hold| hold.as_millis() as i64),
        };
        let reply = self.run_in(part, &args).await?;
        let state = reply
            .state
            .map(|state| {
                state.parse().map_err(|err: reelq_core::UnknownState| {
                    QueueError::corrupt(create.job_id, err.to_string())
                })
            })
            .transpose()?;
        let outcome = reply.outcome;
        Ok((outcome, state))
    }
}
