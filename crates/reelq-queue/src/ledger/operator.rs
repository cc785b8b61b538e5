//! Operators' moves (`reelq jobs resolve`, `reelq dlq retry`, batch resume and cancel, the
//! dashboard) and reconciliation's: jobs nobody holds, moved by `operator.lua` and `batch.lua`
//! under a bumped fence. Their rows are in the move table (`moves.rs`).

use reelq_core::{BatchId, ErrorClass, JobId, JobState, ProviderKind};

use crate::scripts;
use crate::{Ledger, QueueError, moves};

/// How an operator settles an `uncertain` job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resolution {
    /// The provider has the task under this id: poll it.
    TaskId(String),
    /// The provider has no task: submit again.
    Resubmit,
    /// Give up on the job.
    Fail,
}

/// What [`Ledger::cancel_job`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CancelOutcome {
    /// Never submitted: it is `cancelled`.
    Cancelled,
    /// Submitted: this provider was asked to stop its generation; the job ends `cancelled`
    /// once the task has stopped (a video ready first is stored, as it is paid for).
    AskedProvider(ProviderKind),
    /// Ended, being submitted, or at a provider that cannot stop a generation (it finishes).
    NotCancellable {
        state: JobState,
        provider: ProviderKind,
    },
}

impl Ledger {
    /// Settles an `uncertain` job. False if the job is not `uncertain`.
    pub async fn resolve(&self, job_id: JobId, resolution: Resolution) -> Result<bool, QueueError> {
        let cleared = [("error", String::new()), ("error_class", String::new())];
        let task = match &resolution {
            Resolution::TaskId(task_id) => Some(task_id.clone()),
            _ => None,
        };
        let (name, delay, fields): (&str, i64, Vec<(&str, String)>) = match resolution {
            Resolution::TaskId(task_id) => (
                "resolve_with_task",
                0,
                [("task_id", task_id), ("attempt", "0".into())]
                    .into_iter()
                    .chain(cleared)
                    .collect(),
            ),
            Resolution::Resubmit => (
                "resubmit",
                0,
                [("task_id", String::new()), ("attempt", "0".into())]
                    .into_iter()
                    .chain(cleared)
                    .collect(),
            ),
            Resolution::Fail => (
                "resolve_as_failed",
                -1,
                vec![("error", "resolved as failed by an operator".into())],
            ),
        };
        let moved = self
            .operator_move(job_id, name, delay, "resolved by an operator", &fields)
            .await?;
        // The task the operator named is the job's: its callbacks and a search find it.
        if let (true, Some(task_id)) = (moved, task)
            && let Some(record) = self.job(job_id).await?
        {
            self.index_task(&record.account, &task_id, job_id, super::TASK_INDEX_TTL)
                .await?;
        }
        Ok(moved)
    }

    /// Gives a `failed` job another go: back to polling if the provider has its task, else
    /// back to the submit queue. A generation that failed at the provider is submitted anew.
    pub async fn retry_failed(&self, job_id: JobId) -> Result<bool, QueueError> {
        let Some(record) = self.job(job_id).await? else {
            return Err(QueueError::NotFound(job_id));
        };
        let repoll =
            record.task_id.is_some() && record.error_class != Some(ErrorClass::GenerationFailed);
        let mut fields = vec![
            ("attempt", "0".to_owned()),
            ("error", String::new()),
            ("error_class", String::new()),
            // A cancel asked of an earlier attempt is not asked of this one.
            ("cancel_ms", String::new()),
        ];
        let name = if repoll {
            "retry_failed_poll"
        } else {
            fields.push(("task_id", String::new()));
            "retry_failed_submit"
        };
        self.operator_move(job_id, name, 0, "retried by an operator", &fields)
            .await
    }

    /// Makes the operator move `name` of the move table ([`crate::moves`]).
    async fn operator_move(
        &self,
        job_id: JobId,
        name: &str,
        delay_ms: i64,
        detail: &str,
        fields: &[(&str, String)],
    ) -> Result<bool, QueueError> {
        let rule = moves::rule(name);
        debug_assert_eq!(rule.by, "operator.lua", "{name}");
        let job_id = job_id.to_string();
        let args = scripts::operator::Args {
            job_id: &job_id,
            from: moves::from_list(rule),
            to: rule.to.as_str(),
            delay_ms,
            detail,
            fields: fields
                .iter()
                .map(|(field, value)| (*field, value.as_str()))
                .collect(),
        };
        let reply = self.run_in(self.part_of(&job_id), &args).await?;
        Ok(reply.applied)
    }

    /// Cancels one job. Not yet submitted (`queued` or `budget_held`): it ends `cancelled`
    /// now, never submitted, and what its claim reserved against budgets is given back.
    /// Submitted (`waiting`) to a provider that can stop a generation: the provider is asked
    /// (`request_cancel`), and the job ends `cancelled` once its task has stopped.
    pub async fn cancel_job(&self, job_id: JobId) -> Result<CancelOutcome, QueueError> {
        // Asked by whoever may (a producer through the API, an operator through the CLI or the
        // dashboard): the record says what happened, not who.
        let fields = [("error", "cancelled on request, never submitted".to_owned())];
        let detail = "cancelled on request, never submitted";
        if self
            .operator_move(job_id, "cancel_job", -1, detail, &fields)
            .await?
        {
            return Ok(CancelOutcome::Cancelled);
        }
        let Some(record) = self.job(job_id).await? else {
            return Err(QueueError::NotFound(job_id));
        };
        let provider = record.spec.provider;
        if record.state != JobState::Waiting || !provider.cancels_generations() {
            return Ok(CancelOutcome::NotCancellable {
                state: record.state,
                provider,
            });
        }
        let asked = [("cancel_ms", super::now_unix_ms().to_string())];
        let detail = "an operator asked the provider to cancel";
        Ok(
            match self
                .operator_move(job_id, "request_cancel", 0, detail, &asked)
                .await?
            {
                true => CancelOutcome::AskedProvider(provider),
                // It moved on meanwhile (stored, or failed): nothing left to cancel.
                false => CancelOutcome::NotCancellable {
                    state: self.job(job_id).await?.map_or(record.state, |r| r.state),
                    provider,
                },
            },
        )
    }

    /// Raises a batch's budget (if given) and queues its `budget_held` jobs again. Returns how
    /// many were queued, or None if there is no such batch.
    pub async fn resume_batch(
        &self,
        batch: BatchId,
        budget_micros: Option<u64>,
    ) -> Result<Option<u64>, QueueError> {
        let budget = budget_micros.map(|b| b.to_string()).unwrap_or_default();
        self.batch_action(batch, "resume", &budget).await
    }

    /// Cancels every job of a batch not yet submitted, and marks its `waiting` ones: their
    /// next poll asks the provider to stop them where it can. Returns how
    /// many were cancelled, or None if there is no such batch.
    pub async fn cancel_batch(&self, batch: BatchId) -> Result<Option<u64>, QueueError> {
        self.batch_action(batch, "cancel", "").await
    }

    async fn batch_action(
        &self,
        batch: BatchId,
        action: &str,
        argument: &str,
    ) -> Result<Option<u64>, QueueError> {
        let batch = batch.to_string();
        let part = self.part_of(&batch);
        let mut conn = part.conn().await?;
        let (mut total, mut start) = (0u64, 0i64);
        while start >= 0 {
            let args = scripts::batch::Args {
                batch: &batch,
                action,
                budget_micros: argument,
                start: start as u64,
                count: crate::ENQUEUE_CHUNK,
            };
            let reply = self.run_script(part, &mut conn, &args).await?;
            if !reply.found {
                return Ok(None);
            }
            total += reply.moved;
            start = reply.next_index.map_or(-1, |next| next as i64);
        }
        Ok(Some(total))
    }

    /// Queues an `uncertain` job again because the provider's own records show it has no
    /// task for it: its create never happened. False if the job is no longer uncertain.
    pub async fn resubmit_absent(&self, job_id: JobId, detail: &str) -> Result<bool, QueueError> {
        let fields = [
            ("task_id", String::new()),
            ("attempt", "0".to_owned()),
            ("error", String::new()),
            ("error_class", String::new()),
            ("reconcile_note", String::new()),
        ];
        self.operator_move(job_id, "resubmit", 0, detail, &fields)
            .await
    }

    /// Notes on an `uncertain` job what reconciliation found (false if it is no longer
    /// uncertain).
    pub async fn note_uncertain(&self, job_id: JobId, note: &str) -> Result<bool, QueueError> {
        let job_id = job_id.to_string();
        let args = scripts::note::Args {
            job_id: &job_id,
            note,
        };
        let reply = self.run_in(self.part_of(&job_id), &args).await?;
        Ok(reply.noted)
    }
}
