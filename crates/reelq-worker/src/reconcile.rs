//! Settles `uncertain` jobs from the provider's own records, never by a second paid create.
//!
//! A job is `uncertain` when its create went out and the answer did not come back (a timeout,
//! a reset, a gateway's 5xx, a worker that died mid-call). Where the provider lists its
//! tasks and echoes what each was asked (OpenAI-compatible `GET /v1/videos` echoes model,
//! seconds, size and often the prompt), a pass every `reconcile_every` looks for the task
//! each uncertain job made, near the time its submit began. A signed account-level webhook
//! naming a task no job owns (the task index is written only after the answer that was lost)
//! looks that one task up the same way.
//!
//! A match must be unique both ways: one task for the job and one job for the task, and the
//! task owned by no other job. A job the provider's complete list still does not show
//! `reconcile_absent_after` after its submit began was never created there (the answer
//! lost was a refusal, or the call never arrived): it is submitted again, the provider's own
//! records being the proof. Anything else is left `uncertain` with a note saying what was
//! found, for the operator (`reelq jobs list --state uncertain`, the dashboard). Providers
//! without a list settle through their per-task callbacks (the callback URL names the job)
//! or by the operator.
//!
//! A provider that keeps a client-chosen id on each task (Kling's `external_task_id`, which
//! reelq sets to the job's id) is asked for each uncertain job's task by that id: the answer
//! is exact, with no matching. A job whose id names no task `reconcile_absent_after` after
//! its submit began is submitted again, under the same id.

use std::{collections::HashMap, sync::Arc, time::Duration};

use reelq_core::{AccountName, JobId};
use reelq_providers::{Provider, ProviderError, ProviderTask, RecentTasks, TaskEcho};
use reelq_queue::{JobRecord, Ledger, WakeOutcome};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::{accounts::Accounts, steps::TASK_INDEX_TTL};

/// How far from the moment its submit began a job's task may have been created: the create
/// call's own time plus clock skew between Redis and the provider.
const MATCH_WINDOW_S: u64 = 10 * 60;
/// How far a provider's clock may run behind ours when a task bound to a job is judged made
/// since the job's submit began.
const CLOCK_SLACK_S: u64 = 30;

/// Most `uncertain` jobs read per pass.
const MAX_UNCERTAIN: usize = 1000;

/// An `uncertain` job as matching needs it.
#[derive(Debug, Clone)]
pub(crate) struct UncertainJob {
    pub(crate) job_id: JobId,
    /// What its create sent, as the provider would echo it.
    pub(crate) echo: TaskEcho,
    /// When its submit began, unix seconds.
    pub(crate) submit_s: u64,
}

/// What the provider's records say of one uncertain job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Exactly this task, which no other candidate job could be.
    Adopt(String),
    /// Several tasks could be its create, or its one task could be another job's too.
    Ambiguous(usize),
    NoMatch,
}

/// Pairs uncertain jobs with unowned tasks; pure, so a table tests it.
pub(crate) fn pair(jobs: &[UncertainJob], tasks: &[ProviderTask]) -> Vec<(JobId, Verdict)> {
    let could_be = |job: &UncertainJob, task: &ProviderTask| {
        task.echoes(&job.echo) && task.created_s.abs_diff(job.submit_s) <= MATCH_WINDOW_S
    };
    let mut jobs_per_task: HashMap<&str, usize> = HashMap::new();
    for task in tasks {
        let n_jobs = jobs.iter().filter(|job| could_be(job, task)).count();
        jobs_per_task.insert(&task.task_id, n_jobs);
    }
    jobs.iter()
        .map(|job| {
            let candidates: Vec<&ProviderTask> =
                tasks.iter().filter(|task| could_be(job, task)).collect();
            let verdict = match candidates.as_slice() {
                [] => Verdict::NoMatch,
                [task] if jobs_per_task[task.task_id.as_str()] == 1 => {
                    Verdict::Adopt(task.task_id.clone())
                }
                [_] => Verdict::Ambiguous(1),
                many => Verdict::Ambiguous(many.len()),
            };
            (job.job_id, verdict)
        })
        .collect()
}

/// Whether a task a callback names is its job's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Confirmation {
    Confirmed,
    /// Why not, for the log and the job's note.
    Conflict(String),
}

pub(crate) struct Reconciler {
    pub(crate) ledger: Ledger,
    pub(crate) accounts: Arc<Accounts>,
    /// After this long unseen in a complete list, a job's create never happened; None: never
    /// concluded.
    pub(crate) absent_after: Option<Duration>,
}

impl Reconciler {
    /// One pass per account whose provider lists its tasks, every `every`, until shutdown.
    pub(crate) async fn run(self: Arc<Self>, every: Duration, shutdown: CancellationToken) {
        let mut tick = tokio::time::interval(every);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tick.tick() => {}
            }
            for (account, entry) in self.accounts.iter() {
                let pass = if entry.adapter.names_tasks_by_job() {
                    self.reconcile_by_job(account, entry.adapter.as_ref()).await
                } else if entry.adapter.lists_tasks() {
                    self.reconcile(account, entry.adapter.as_ref()).await
                } else {
                    continue;
                };
                if let Err(err) = pass {
                    warn!(%account, error = %err, "reconciling uncertain jobs failed; trying again next pass");
                }
            }
        }
    }

    /// Looks for every uncertain job's task in the provider's recent list. Returns how many
    /// jobs were settled.
    pub(crate) async fn reconcile(
        &self,
        account: &AccountName,
        provider: &dyn Provider,
    ) -> anyhow::Result<usize> {
        let jobs = self.candidates(account, provider).await?;
        let Some(oldest_s) = jobs.iter().map(|job| job.submit_s).min() else {
            return Ok(0);
        };
        let RecentTasks { tasks, complete } = provider
            .recent_tasks(oldest_s.saturating_sub(MATCH_WINDOW_S))
            .await?;
        let (tasks, own) = self.unowned(account, &jobs, tasks).await?;
        // A task the index already binds to one of these jobs is its create (the worker that
        // made it indexed it before recording it, then died or lost the write): adopted, never
        // matched against the others nor counted absent.
        let mut n_settled = 0;
        for (job_id, task_id) in &own {
            n_settled += usize::from(self.adopt(account, *job_id, task_id).await?);
        }
        let rest: Vec<UncertainJob> = jobs
            .into_iter()
            .filter(|job| !own.iter().any(|(job_id, _)| *job_id == job.job_id))
            .collect();
        Ok(n_settled + self.settle(account, &rest, &tasks, complete).await?)
    }

    /// Asks the provider for each uncertain job's task by the job's own id. Returns how many
    /// jobs were settled.
    pub(crate) async fn reconcile_by_job(
        &self,
        account: &AccountName,
        provider: &dyn Provider,
    ) -> anyhow::Result<usize> {
        let records = self.ledger.uncertain_jobs(account, MAX_UNCERTAIN).await?;
        let mut n_settled = 0;
        for record in records
            .into_iter()
            .filter(|record| record.task_id.is_none())
        {
            let job_id = record.job_id;
            let submit_s = record.submit_ms.unwrap_or(record.updated_ms) / 1000;
            let found = match provider.task_of_job(&record.spec, job_id).await {
                Ok(found) => found,
                Err(err) => {
                    // One job's lookup failing leaves it for the next pass, not the others.
                    warn!(%account, %job_id, error = %err, "looking an uncertain job's task up by its id failed");
                    continue;
                }
            };
            let note = match found {
                Some(task_id) => {
                    n_settled += usize::from(self.adopt(account, job_id, &task_id).await?);
                    continue;
                }
                None if self.past_absent_after(submit_s) => {
                    n_settled += usize::from(self.resubmit(account, job_id).await?);
                    continue;
                }
                None => format!("{account} has no task under this job's id yet"),
            };
            metrics::counter!("reelq_reconciled_total", "account" => account.as_str().to_owned(), "outcome" => "left")
                .increment(1);
            self.ledger.note_uncertain(job_id, &note).await?;
        }
        Ok(n_settled)
    }

    /// For a verified account-level callback naming `task_id`, which no job is known to own:
    /// the job it belongs to, if the provider's record of it settles one.
    pub(crate) async fn settle_task(
        &self,
        account: &AccountName,
        task_id: &str,
    ) -> anyhow::Result<Option<JobId>> {
        let Some(provider) = self.accounts.adapter(account) else {
            return Ok(None);
        };
        let jobs = self.candidates(account, provider.as_ref()).await?;
        if jobs.is_empty() {
            return Ok(None);
        }
        let Some(task) = provider.task_record(task_id).await? else {
            return Ok(None);
        };
        for (job_id, verdict) in pair(&jobs, std::slice::from_ref(&task)) {
            if verdict == Verdict::Adopt(task.task_id.clone())
                && self.adopt(account, job_id, &task.task_id).await?
            {
                return Ok(Some(job_id));
            }
        }
        Ok(None)
    }

    /// Whether `task_id`, which a verified callback names for `job_id` (a job without a task
    /// yet: `uncertain`, or still submitting), is that job's create: no other job owns it,
    /// the provider has it, and where the provider's record echoes the request, it is this
    /// job's request. A conflict is noted on an `uncertain` job for the operator.
    pub(crate) async fn confirm(
        &self,
        account: &AccountName,
        job_id: JobId,
        task_id: &str,
    ) -> anyhow::Result<Confirmation> {
        let conflict = match self.conflict(account, job_id, task_id).await? {
            Some(conflict) => conflict,
            None => return Ok(Confirmation::Confirmed),
        };
        self.note_conflict(job_id, &conflict).await?;
        Ok(Confirmation::Conflict(conflict))
    }

    /// Why the ledger refused to bind `task_id` to `job_id` (a `Conflict`), noted on the job
    /// if it is `uncertain`.
    pub(crate) async fn refused_binding(
        &self,
        account: &AccountName,
        job_id: JobId,
        task_id: &str,
    ) -> anyhow::Result<String> {
        let conflict = match self.owner_conflict(account, job_id, task_id).await? {
            Some(conflict) => conflict,
            None => format!("task {task_id}, while the job has another"),
        };
        self.note_conflict(job_id, &conflict).await?;
        Ok(conflict)
    }

    async fn note_conflict(&self, job_id: JobId, conflict: &str) -> anyhow::Result<()> {
        self.ledger
            .note_uncertain(job_id, &format!("a callback named {conflict}: not adopted"))
            .await?;
        Ok(())
    }

    async fn owner_conflict(
        &self,
        account: &AccountName,
        job_id: JobId,
        task_id: &str,
    ) -> anyhow::Result<Option<String>> {
        Ok(match self.ledger.job_of_task(account, task_id).await? {
            Some(owner) if owner != job_id => {
                Some(format!("task {task_id}, which job {owner} owns"))
            }
            _ => None,
        })
    }

    /// What stands against `task_id` being `job_id`'s create, if anything.
    async fn conflict(
        &self,
        account: &AccountName,
        job_id: JobId,
        task_id: &str,
    ) -> anyhow::Result<Option<String>> {
        let (Some(provider), Some(job)) = (
            self.accounts.adapter(account),
            self.ledger.job(job_id).await?,
        ) else {
            return Ok(Some(format!(
                "task {task_id} for a job this worker cannot check"
            )));
        };
        if let Some(conflict) = self.owner_conflict(account, job_id, task_id).await? {
            return Ok(Some(conflict));
        }
        let record = match provider.task_record(task_id).await {
            Ok(record) => record,
            Err(ProviderError::Invalid(err)) => {
                return Ok(Some(format!(
                    "task {task_id}, which {account} does not have ({err})"
                )));
            }
            Err(err) => return Err(err.into()),
        };
        let Some(record) = record else {
            // No echo to compare: the provider's having the task on this account is the proof.
            return match provider.query(&job.spec, task_id).await {
                Ok(_) => Ok(None),
                Err(ProviderError::Invalid(err)) => Ok(Some(format!(
                    "task {task_id}, which {account} does not have ({err})"
                ))),
                Err(err) => Err(err.into()),
            };
        };
        let sent = provider.echo(&job.spec);
        if record.echoes(&sent) {
            return Ok(None);
        }
        let differing: Vec<&str> = record
            .echo
            .iter()
            .filter(|(field, value)| sent.get(*field).is_some_and(|sent| sent != *value))
            .map(|(field, _)| field.as_str())
            .collect();
        Ok(Some(format!(
            "task {task_id}, whose request at {account} is not this job's (differs in {})",
            differing.join(", ")
        )))
    }

    /// Uncertain jobs of `account` without a task.
    async fn candidates(
        &self,
        account: &AccountName,
        provider: &dyn Provider,
    ) -> anyhow::Result<Vec<UncertainJob>> {
        let records = self.ledger.uncertain_jobs(account, MAX_UNCERTAIN).await?;
        Ok(records
            .into_iter()
            .filter(|record| record.task_id.is_none())
            .map(|record: JobRecord| UncertainJob {
                job_id: record.job_id,
                echo: provider.echo(&record.spec),
                submit_s: record.submit_ms.unwrap_or(record.updated_ms) / 1000,
            })
            .collect())
    }

    /// Drops tasks a job already owns.
    /// The listed tasks no job owns in the task index, and those the index binds to one of
    /// `jobs` and made since that job's last submit began (the job, its newest such task); an
    /// older one bound to it is an earlier attempt's (a failed generation an operator retried)
    /// and tasks of other jobs are left out.
    async fn unowned(
        &self,
        account: &AccountName,
        jobs: &[UncertainJob],
        tasks: Vec<ProviderTask>,
    ) -> anyhow::Result<(Vec<ProviderTask>, Vec<(JobId, String)>)> {
        let mut unowned = Vec::with_capacity(tasks.len());
        let mut own: Vec<(JobId, ProviderTask)> = Vec::new();
        for task in tasks {
            let owner = self.ledger.job_of_task(account, &task.task_id).await?;
            let Some(owner) = owner else {
                unowned.push(task);
                continue;
            };
            let Some(job) = jobs.iter().find(|job| job.job_id == owner) else {
                continue;
            };
            if task.created_s + CLOCK_SLACK_S < job.submit_s {
                continue;
            }
            match own.iter_mut().find(|(job_id, _)| *job_id == owner) {
                Some((_, newest)) if newest.created_s >= task.created_s => {}
                Some((_, newest)) => *newest = task,
                None => own.push((owner, task)),
            }
        }
        let own = own
            .into_iter()
            .map(|(job_id, task)| (job_id, task.task_id))
            .collect();
        Ok((unowned, own))
    }

    async fn settle(
        &self,
        account: &AccountName,
        jobs: &[UncertainJob],
        tasks: &[ProviderTask],
        list_complete: bool,
    ) -> anyhow::Result<usize> {
        let absent = |job: &UncertainJob| list_complete && self.past_absent_after(job.submit_s);
        let mut n_settled = 0;
        for (job, (job_id, verdict)) in jobs.iter().zip(pair(jobs, tasks)) {
            let note = match verdict {
                Verdict::Adopt(task_id) => {
                    n_settled += usize::from(self.adopt(account, job_id, &task_id).await?);
                    continue;
                }
                Verdict::NoMatch if absent(job) => {
                    n_settled += usize::from(self.resubmit(account, job_id).await?);
                    continue;
                }
                Verdict::Ambiguous(n) => format!(
                    "{n} task(s) at {account} could be this job's create (or be another uncertain \
                     job's): not adopted; resolve with the task id"
                ),
                Verdict::NoMatch => format!(
                    "no task at {account} matches this job's create yet (looked at {} unowned)",
                    tasks.len()
                ),
            };
            metrics::counter!("reelq_reconciled_total", "account" => account.as_str().to_owned(), "outcome" => "left")
                .increment(1);
            self.ledger.note_uncertain(job_id, &note).await?;
        }
        Ok(n_settled)
    }

    /// Whether `absent_after` has passed since a submit that began at `submit_s` (unix s):
    /// a create the provider's records still do not show by then never happened.
    fn past_absent_after(&self, submit_s: u64) -> bool {
        let now_s = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        self.absent_after
            .is_some_and(|after| submit_s + after.as_secs() <= now_s)
    }

    /// Submits again a job the provider's records prove it never created.
    async fn resubmit(&self, account: &AccountName, job_id: JobId) -> anyhow::Result<bool> {
        let detail = format!("{account} has no task for this create: submitted again");
        let resubmitted = self.ledger.resubmit_absent(job_id, &detail).await?;
        if resubmitted {
            info!(%job_id, "uncertain job never created at the provider; submitted again");
            metrics::counter!("reelq_reconciled_total", "account" => account.as_str().to_owned(), "outcome" => "absent")
                .increment(1);
        }
        Ok(resubmitted)
    }

    async fn adopt(
        &self,
        account: &AccountName,
        job_id: JobId,
        task_id: &str,
    ) -> anyhow::Result<bool> {
        let outcome = self
            .ledger
            .adopt_task(job_id, task_id, "the provider's records", TASK_INDEX_TTL)
            .await?;
        let adopted = outcome == WakeOutcome::Adopted;
        if adopted {
            info!(%job_id, task_id, "uncertain job settled from the provider's records");
            metrics::counter!("reelq_reconciled_total", "account" => account.as_str().to_owned(), "outcome" => "adopted")
                .increment(1);
        }
        Ok(adopted)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn echo(prompt: &str) -> TaskEcho {
        TaskEcho::from([
            ("model".to_owned(), "sora-2".to_owned()),
            ("prompt".to_owned(), prompt.to_owned()),
            ("seconds".to_owned(), "4".to_owned()),
        ])
    }

    fn job(prompt: &str, submit_s: u64) -> UncertainJob {
        UncertainJob {
            job_id: JobId::new(),
            echo: echo(prompt),
            submit_s,
        }
    }

    fn task(id: &str, prompt: Option<&str>, created_s: u64) -> ProviderTask {
        let mut echo = echo(prompt.unwrap_or_default());
        if prompt.is_none() {
            echo.remove("prompt");
        }
        ProviderTask {
            task_id: id.into(),
            created_s,
            echo,
        }
    }

    #[track_caller]
    fn check(jobs: &[UncertainJob], tasks: &[ProviderTask], expect: &[Verdict]) {
        let verdicts: Vec<Verdict> = pair(jobs, tasks).into_iter().map(|(_, v)| v).collect();
        assert_eq!(verdicts, expect);
    }

    #[test]
    fn a_match_must_be_unique_both_ways() {
        let t0 = 1_800_000_000;
        // One job, its task: adopted; an unrelated prompt is not a candidate.
        check(
            &[job("a kite", t0)],
            &[
                task("v1", Some("a kite"), t0 + 3),
                task("v2", Some("a dog"), t0),
            ],
            &[Verdict::Adopt("v1".into())],
        );
        // Too far in time from the submit.
        check(
            &[job("a kite", t0)],
            &[task("v1", Some("a kite"), t0 + 3600)],
            &[Verdict::NoMatch],
        );
        // Two tasks could be it.
        check(
            &[job("a kite", t0)],
            &[
                task("v1", Some("a kite"), t0),
                task("v2", Some("a kite"), t0 + 1),
            ],
            &[Verdict::Ambiguous(2)],
        );
        // One task, two jobs that could both have made it (no prompt echoed).
        check(
            &[job("a kite", t0), job("a dog", t0)],
            &[task("v1", None, t0)],
            &[Verdict::Ambiguous(1), Verdict::Ambiguous(1)],
        );
        // Without the prompt, different seconds still tell them apart.
        let mut eight = job("a dog", t0);
        eight.echo.insert("seconds".into(), "8".into());
        check(
            &[job("a kite", t0), eight],
            &[task("v1", None, t0)],
            &[Verdict::Adopt("v1".into()), Verdict::NoMatch],
        );
    }
}
