//! Provider tasks bound to jobs: the task index, callbacks' hints (`wake.lua`), adoption of a
//! task the provider's records confirm, and what a per-task callback is checked against.

use std::time::Duration;

use reelq_core::{AccountName, JobId, JobState};

use super::Part;
use crate::{JobRecord, Ledger, QueueError};
use crate::{connection::Conn, scripts};

/// How long a task stays findable by its id (account-level callbacks, the dashboard's
/// search): far beyond any generation, and short enough that the index cleans itself.
pub const TASK_INDEX_TTL: Duration = Duration::from_secs(7 * 24 * 3600);

/// What a per-task callback for a job is checked against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallbackBinding {
    /// The account the job's submit went to: only that account's callbacks concern it.
    pub account: AccountName,
    /// SHA-256 (hex) of the token in the job's callback URL.
    pub token_hash: Option<String>,
}

/// What a callback did to its job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WakeOutcome {
    /// A poll was scheduled for now.
    Woken,
    /// An `uncertain` job learnt its task id and goes back to polling.
    Adopted,
    /// The job is still submitting; the task id is kept for it.
    Noted,
    /// The job has no task yet: the provider's record of the task must confirm it is the
    /// job's before it is adopted.
    Unconfirmed,
    /// The task is another job's, or the job already has another: refused.
    Conflict,
    /// Nothing to do: a duplicate, a stale hint, or a job that has moved on.
    Ignored,
    /// No such job.
    Missing,
}

impl Ledger {
    /// What authenticates a per-task callback for the job: its account and the hash of the
    /// token in its current callback URL (None if no submit set one). None if no such job.
    pub async fn callback_binding(
        &self,
        job_id: JobId,
    ) -> Result<Option<CallbackBinding>, QueueError> {
        let part = self.part_of(&job_id.to_string());
        let (provider, token_hash): (Option<String>, Option<String>) = redis::cmd("HMGET")
            .arg(part.key(format!("job:{job_id}")))
            .arg("provider")
            .arg("cb_token_hash")
            .query_async(&mut part.conn().await?)
            .await?;
        let Some(account) = provider else {
            return Ok(None);
        };
        Ok(Some(CallbackBinding {
            account: account
                .parse()
                .map_err(|_| QueueError::corrupt(job_id, format!("account {account:?}")))?,
            token_hash,
        }))
    }

    /// Remembers which job owns a provider task: account-level webhooks (which name only the
    /// task) find the job by it, and a callback naming the task for another job is refused.
    /// The entry expires after `ttl`, so nothing needs to clean it up.
    pub async fn index_task(
        &self,
        account: &AccountName,
        task_id: &str,
        job_id: JobId,
        ttl: Duration,
    ) -> Result<(), QueueError> {
        let _: () = redis::cmd("SET")
            .arg(self.home_key(format!("task:{account}:{task_id}")))
            .arg(job_id.to_string())
            .arg("PX")
            .arg(ttl.as_millis() as u64)
            .query_async(&mut self.home_conn().await?)
            .await?;
        Ok(())
    }

    /// The job that owns `account`'s task `task_id`, if it was indexed and has not expired.
    pub async fn job_of_task(
        &self,
        account: &AccountName,
        task_id: &str,
    ) -> Result<Option<JobId>, QueueError> {
        let job_id: Option<String> = redis::cmd("GET")
            .arg(self.home_key(format!("task:{account}:{task_id}")))
            .query_async(&mut self.home_conn().await?)
            .await?;
        Ok(job_id.and_then(|id| id.parse().ok()))
    }

    /// Acts on a verified callback naming `task_id`: polls a waiting job now. A task the job
    /// does not have yet (it is `uncertain` or still submitting) is only `Unconfirmed`: the
    /// provider's record of it must be checked, then [`Ledger::adopt_task`] binds it.
    pub async fn wake(&self, job_id: JobId, task_id: &str) -> Result<WakeOutcome, QueueError> {
        self.wake_from(job_id, task_id, "its callback", None).await
    }

    /// Binds `task_id`, which the provider's records confirm is this job's create, to the
    /// job: an `uncertain` job polls it from now on (`Adopted`), one still submitting keeps
    /// it for when its answer or lease ends (`Noted`). Callbacks naming the task find the job
    /// for `index_ttl`; a task another job owns is a `Conflict`.
    pub async fn adopt_task(
        &self,
        job_id: JobId,
        task_id: &str,
        source: &str,
        index_ttl: Duration,
    ) -> Result<WakeOutcome, QueueError> {
        self.wake_from(job_id, task_id, source, Some(index_ttl))
            .await
    }

    /// `index_ttl` is given for a confirmed task, None for a callback's hint.
    async fn wake_from(
        &self,
        job_id: JobId,
        task_id: &str,
        source: &str,
        index_ttl: Option<Duration>,
    ) -> Result<WakeOutcome, QueueError> {
        let job_id = job_id.to_string();
        let part = self.part_of(&job_id);
        let mut conn = part.conn().await?;
        let (task_account, task_owner) = self.task_owner(part, &mut conn, &job_id, task_id).await?;
        let args = scripts::wake::Args {
            task_account,
            task_owner,
            job_id: &job_id,
            task_id,
            by: source,
            index_ttl_ms: index_ttl.unwrap_or_default().as_millis() as u64,
            confirmed: index_ttl.is_some(),
        };
        let reply = self.run_script(part, &mut conn, &args).await?;
        Ok(reply.outcome)
    }

    /// Where the home has a slot of its own: the job's account, and the job the home's task
    /// index names as owning `task_id` of it (the partition's scripts cannot read the home).
    /// Nothing where the home shares the slot: the script reads it itself.
    pub(crate) async fn task_owner(
        &self,
        part: &Part,
        conn: &mut Conn,
        job_id: &str,
        task_id: &str,
    ) -> Result<(Option<String>, Option<String>), QueueError> {
        if self.place(part).home.is_none() {
            return Ok((None, None));
        }
        let account: Option<String> = redis::cmd("HGET")
            .arg(part.key(format!("job:{job_id}")))
            .arg("provider")
            .query_async(&mut *conn)
            .await?;
        let account = account.unwrap_or_default();
        let owner = self
            .task_index_owner(&mut self.home_conn().await?, &account, task_id)
            .await?;
        Ok((Some(account), owner))
    }

    /// The job the home's task index names as owning `task_id` of `account`.
    pub(crate) async fn task_index_owner(
        &self,
        conn: &mut Conn,
        account: &str,
        task_id: &str,
    ) -> Result<Option<String>, QueueError> {
        Ok(redis::cmd("GET")
            .arg(self.home_key(format!("task:{account}:{task_id}")))
            .query_async(conn)
            .await?)
    }

    /// Up to `limit` `uncertain` jobs of `account`, most recently parked first, read in one
    /// round trip.
    pub async fn uncertain_jobs(
        &self,
        account: &AccountName,
        limit: usize,
    ) -> Result<Vec<JobRecord>, QueueError> {
        let job_ids = self.jobs_in_state(JobState::Uncertain, limit).await?;
        let mut records = self.jobs(&job_ids).await?;
        records.retain(|record| record.state == JobState::Uncertain && record.account == *account);
        Ok(records)
    }
}
