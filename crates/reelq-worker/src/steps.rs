//! One step of a job: submit, poll or fetch. Each step ends in exactly one ledger
//! transition, fenced by the lease it was claimed under; the lease is renewed while the
//! step runs. Errors are classed into retry (our own backoff, via a scheduled due time),
//! `uncertain` (a create that may have been billed) or failure.

use std::{pin::pin, sync::Arc, time::Duration};

use backon::{ExponentialBuilder, Retryable};
use reelq_core::{Catalog, ErrorClass, JobState, ProviderKind};
use reelq_providers::{CallbackScope, Provider, ProviderError, Submission, TaskStatus};
use reelq_queue::{Lease, Ledger, QueueError, Transition, TransitionOutcome};
use reelq_storage::VideoStore;
use sha2::{Digest, Sha256};
use tracing::{Instrument, debug, error, info, info_span, warn};

use crate::{
    accounts::Accounts,
    decision::{Decision, RetryLimits, StepFailure, backoff, decide},
};

mod counters;
mod fetch;
use counters::{count_provider_call, count_provider_request};
use fetch::fetch;

/// When to poll a provider: the first poll after submit, then doubling (with jitter) up to
/// `max`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PollSchedule {
    pub(crate) first: Duration,
    pub(crate) max: Duration,
}

/// Everything a step needs, shared by all steps of one worker.
pub(crate) struct StepContext {
    pub(crate) ledger: Ledger,
    pub(crate) store: VideoStore,
    /// The provider accounts, by name: a lease's account is found here.
    pub(crate) accounts: Arc<Accounts>,
    pub(crate) lease: Duration,
    pub(crate) max_attempts: u32,
    pub(crate) max_attempts_paid: u32,
    pub(crate) credits_pause: Duration,
    pub(crate) backoff_min: Duration,
    pub(crate) backoff_max: Duration,
    /// Public base of the callback receiver (`https://host`), when callbacks are on.
    pub(crate) callback_base: Option<String>,
    /// Wakes this worker's idle claim loop when a step leaves its job due at once.
    pub(crate) step_due: tokio::sync::Notify,
    /// The paid creates this worker made, to give back to a ledger that lost them.
    pub(crate) paid: Arc<crate::paid_creates::PaidCreates>,
    /// The model catalog (built-in, with the operator's file over it): a job whose model
    /// was retired or paused after it was queued is not submitted.
    pub(crate) models: Arc<Catalog>,
}

/// How long a worker keeps trying to record a finished step while Redis is unreachable.
const RECORD_RETRY: ExponentialBuilder = ExponentialBuilder::new()
    .with_min_delay(Duration::from_millis(100))
    .with_max_delay(Duration::from_secs(5))
    .with_jitter()
    .with_max_times(30);

pub(crate) use reelq_queue::TASK_INDEX_TTL;

/// How callback tokens are kept: SHA-256, hex.
pub(crate) fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

pub(crate) async fn run_step(context: &StepContext, mut lease: Lease) {
    // Named by the step in traces (`otel.name`), in the job's trace.
    let span = info_span!(
        "job",
        otel.name = step_name(lease.state),
        job_id = %lease.job_id,
        provider = %lease.spec.provider,
        account = %lease.account,
        step = %lease.state,
        attempt = lease.attempt,
        task_id = lease.task_id.as_deref().unwrap_or(""),
    );
    crate::telemetry::in_job_trace(&span, lease.job_id);
    async {
        let Some(provider) = context.accounts.adapter(&lease.account) else {
            // Claims take only jobs of this worker's accounts; the lease lapses and a
            // replica with the account takes the job.
            error!("claimed a job of an account this worker does not have");
            return;
        };
        let mut callback_url = None;
        if lease.state == JobState::Queued {
            if let Some(refusal) = context.model_unavailable(provider.kind(), &lease) {
                record(context, &lease, refusal).await;
                return;
            }
            let (url, token_hash) = context.callback_url(&lease).unzip();
            callback_url = url;
            if !begin_submit(context, &lease, token_hash).await {
                return;
            }
            context
                .paid
                .going_out(&lease, context.uncertain_slot_hold(&lease));
            lease = lease.submitting();
        }
        let step = next_move(context, provider.as_ref(), &lease, callback_url.as_deref());
        let transition = with_renewal(context, &lease, step).await;
        debug!(?transition, "step done");
        let next_step_now = matches!(transition, Transition::Requery { .. });
        let ends = ending(&transition);
        // The create's answer is remembered before the ledger is told: a ledger that loses
        // the record (or cannot take it) is given it back from here.
        let submitted = lease.state == JobState::Submitting;
        if submitted {
            context.paid.answered(lease.job_id, &transition);
        }
        let recorded = record(context, &lease, transition).await;
        match (submitted, recorded) {
            (true, true) => context.paid.settled(lease.job_id),
            (true, false) => context.paid.not_recorded(lease.job_id),
            _ => {}
        }
        if recorded && next_step_now {
            // The job's next step is due at once: don't let this worker idle past it.
            context.step_due.notify_one();
        }
        if let Some(state) = ends.filter(|_| recorded) {
            let (provider, account) = (lease.spec.provider.as_str(), lease.account.as_str());
            crate::telemetry::end_job(lease.job_id, provider, account, state.as_str());
        }
    }
    .instrument(span)
    .await
}

/// What a step claimed in `state` does: its span's name in traces.
fn step_name(state: JobState) -> &'static str {
    match state {
        JobState::Queued | JobState::Submitting => "submit",
        JobState::Waiting => "poll",
        JobState::Fetching => "fetch",
        other => other.as_str(),
    }
}

/// The state a transition ends the job in, if it ends it.
fn ending(transition: &Transition) -> Option<JobState> {
    match transition {
        Transition::Stored { .. } => Some(JobState::Stored),
        Transition::Failed {
            class: ErrorClass::Moderation,
            ..
        } => Some(JobState::Rejected),
        Transition::Failed { .. } => Some(JobState::Failed),
        _ => None,
    }
}

/// Records `submitting`, durably, before the create call: from here a crash reads as
/// `uncertain`, never as a job nobody sent. Retried through a Redis outage while the lease
/// has time; a record that cannot be proven durable puts the job back in the queue, unsent.
/// True if the create call may go.
async fn begin_submit(context: &StepContext, lease: &Lease, token_hash: Option<String>) -> bool {
    let begin = Transition::BeginSubmit {
        lease: context.lease,
        callback_token_hash: token_hash,
    };
    let budget = RECORD_RETRY.with_total_delay(Some(context.lease / 3));
    let err = match write_through_outage(context, lease, begin, budget).await {
        Ok(TransitionOutcome::Applied) => return true,
        Ok(TransitionOutcome::LeaseLost { state, fence }) => {
            warn!(
                state = state.map_or("gone", JobState::as_str),
                fence, "lease lost before the submit; another worker owns the job now"
            );
            return false;
        }
        Err(err) => err,
    };
    // Not durable, refused, or Redis gone: the record may or may not be there, but the create
    // certainly did not go out. Say so under this lease (retried through the outage), so the
    // job goes back to the queue instead of reading `uncertain` when the lease runs out.
    warn!(error = %err, "submit not recorded durably; the job goes back to the queue, unsent");
    let back = Transition::RetrySubmit {
        attempt: lease.attempt,
        delay: context.backoff_min,
        error: err.to_string(),
    };
    let lease = lease.clone().submitting();
    record(context, &lease, back).await;
    false
}

/// Writes a transition, retrying through a Redis outage: the step's outcome may be a paid
/// task. If our lease expires meanwhile the fence refuses the late write, except a submit's,
/// which settles the `uncertain` state the claim left. True if the transition applied.
async fn record(context: &StepContext, lease: &Lease, transition: Transition) -> bool {
    match write_through_outage(context, lease, transition, RECORD_RETRY).await {
        Ok(TransitionOutcome::Applied) => true,
        Ok(TransitionOutcome::LeaseLost { state, fence }) => {
            warn!(
                state = state.map_or("gone", JobState::as_str),
                fence, "lease lost; another worker owns the job now"
            );
            false
        }
        Err(err) => {
            error!(error = %err, "could not record the step; the job resumes when its lease expires");
            false
        }
    }
}

/// Writes `transition`, retrying on `backoff` while Redis is unreachable (nothing else is
/// retried here: a lost lease or an unproven write is the caller's to handle).
async fn write_through_outage(
    context: &StepContext,
    lease: &Lease,
    transition: Transition,
    backoff: ExponentialBuilder,
) -> Result<TransitionOutcome, QueueError> {
    let write = || context.ledger.transition(lease, transition.clone());
    write
        .retry(backoff)
        .when(|err| matches!(err, QueueError::Redis(_)))
        .notify(|err, delay| warn!(error = %err, ?delay, "recording the step failed; retrying"))
        .await
}

/// Runs `step` while renewing the lease every third of its length.
async fn with_renewal<T>(context: &StepContext, lease: &Lease, step: impl Future<Output = T>) -> T {
    let mut step = pin!(step);
    let mut renew = tokio::time::interval(context.lease / 3);
    renew.tick().await;
    loop {
        tokio::select! {
            output = &mut step => return output,
            _ = renew.tick() => match context.ledger.extend(lease, context.lease).await {
                Ok(true) => {}
                Ok(false) => warn!("lease lost while the step runs"),
                Err(err) => warn!(error = %err, "lease renewal failed"),
            },
        }
    }
}

async fn next_move(
    context: &StepContext,
    provider: &dyn Provider,
    lease: &Lease,
    callback_url: Option<&str>,
) -> Transition {
    let transition = match lease.state {
        JobState::Submitting => timed(lease, submit(context, provider, lease, callback_url)).await,
        JobState::Waiting => match timed(lease, poll(context, provider, lease)).await {
            Polled::Ready { result_url } => {
                count_provider_call(lease, "query", "ok");
                // Fetched at once under the same lease: recording `fetching` first would cost
                // a move and a claim per job, and a crash mid-fetch only polls again (free).
                let fetching = lease.clone().fetching(result_url);
                let transition = timed(&fetching, fetch(context, provider, &fetching)).await;
                count_provider_request(&fetching, &transition);
                return transition;
            }
            Polled::Move(transition) => transition,
        },
        JobState::Fetching => timed(lease, fetch(context, provider, lease)).await,
        other => Transition::Failed {
            class: ErrorClass::Invalid,
            error: format!("claimed in state {other}, which has no step"),
        },
    };
    count_provider_request(lease, &transition);
    transition
}

/// Runs a step, recording how long it took under the step's name (the lease's state).
async fn timed<T>(lease: &Lease, step: impl Future<Output = T>) -> T {
    let started = std::time::Instant::now();
    let output = step.await;
    metrics::histogram!("reelq_step_seconds", "step" => lease.state.as_str())
        .record(started.elapsed().as_secs_f64());
    output
}

async fn submit(
    context: &StepContext,
    provider: &dyn Provider,
    lease: &Lease,
    callback_url: Option<&str>,
) -> Transition {
    let submission = Submission {
        low_priority: lease.low_priority,
        ..Submission::new(lease.job_id, &lease.spec, callback_url)
    };
    let answer = provider.submit(submission).await;
    let trusts_500 = context
        .accounts
        .get(&lease.account)
        .is_some_and(|account| account.retry_server_errors_on_create);
    let answer = if trusts_500 {
        answer.map_err(ProviderError::trusting_server_errors)
    } else {
        answer
    };
    match answer {
        Ok(task_id) => {
            info!(task_id, "submitted");
            // Before the job is recorded as waiting, so an account-level callback can find
            // it, and a callback naming this task for another job is refused. If this fails,
            // polling still finishes the job.
            let indexed = context
                .ledger
                .index_task(&lease.account, &task_id, lease.job_id, TASK_INDEX_TTL)
                .await;
            if let Err(err) = indexed {
                warn!(error = %err, "could not index the task for its callbacks");
            }
            let first_poll = context.poll_schedule(lease).first;
            Transition::Submitted {
                task_id,
                first_poll,
            }
        }
        // Every replica stops submitting to this provider until the pause ends; this job
        // waits it out without spending an attempt.
        Err(ProviderError::RateLimited {
            retry_after,
            message,
        }) => {
            let pause = retry_after.unwrap_or(context.backoff_max);
            pause_provider(context, lease, pause, &message).await;
            Transition::RetrySubmit {
                attempt: lease.attempt,
                delay: pause,
                error: message,
            }
        }
        // An empty account refuses every job alike: this one fails, and the rest wait for
        // credits instead of each failing in turn.
        Err(err @ ProviderError::Credits(_)) => {
            let message = err.to_string();
            pause_provider(context, lease, context.credits_pause, &message).await;
            context.retry_or_fail(lease, err.into())
        }
        // The provider may hold a paid task we know nothing of: never resubmit blindly.
        Err(err @ (ProviderError::UnknownOutcome(_) | ProviderError::ServerError { .. })) => {
            warn!(error = %err, "submit outcome unknown");
            Transition::Uncertain {
                error: err.to_string(),
                slot_hold: context.uncertain_slot_hold(lease),
            }
        }
        Err(err) => context.retry_or_fail(lease, err.into()),
    }
}

/// Stops every replica submitting to the job's provider for `pause`.
async fn pause_provider(context: &StepContext, lease: &Lease, pause: Duration, why: &str) {
    if let Err(err) = context.ledger.pause_account(&lease.account, pause).await {
        warn!(error = %err, "could not pause the provider for other replicas");
    }
    warn!(?pause, error = why, "provider paused");
}

/// What a poll found: the video is ready to fetch, or the job's next move.
enum Polled {
    Ready { result_url: String },
    Move(Transition),
}

async fn poll(context: &StepContext, provider: &dyn Provider, lease: &Lease) -> Polled {
    let Some(task_id) = lease.task_id.as_deref() else {
        return Polled::Move(Transition::Failed {
            class: ErrorClass::Invalid,
            error: "waiting without a provider task id".into(),
        });
    };
    let mut answered = false;
    if lease.cancel_requested && !lease.cancel_answered && provider.kind().cancels_generations() {
        // Asked at each poll until the provider answers (the call is idempotent, and a lost
        // answer costs nothing but the next poll's ask); its answer is recorded with the
        // poll's move, and not asked for again.
        match provider.cancel(&lease.spec, task_id).await {
            Ok(answer) => {
                info!(task_id, ?answer, "the provider answered the cancel");
                answered = true;
            }
            Err(err) => info!(task_id, error = %err, "no answer to the cancel; asked again"),
        }
    }
    let mut transition = match provider.query(&lease.spec, task_id).await {
        Ok(TaskStatus::Running) => {
            let polls = lease.polls + 1;
            let schedule = context.poll_schedule(lease);
            let delay = backoff(schedule.first, schedule.max, polls);
            Transition::PollAgain {
                polls,
                attempt: 0,
                delay,
                error: None,
                cancel_answered: false,
            }
        }
        Ok(TaskStatus::Succeeded { result_url }) => return Polled::Ready { result_url },
        Ok(TaskStatus::Failed(err)) if lease.cancel_requested => {
            info!(task_id, error = %err, "the cancelled generation ended without a video");
            Transition::CancelledAtProvider {
                detail: format!("cancelled at the provider on request ({err})"),
            }
        }
        Ok(TaskStatus::Failed(err)) => {
            log_ending(
                err.class(),
                &err.to_string(),
                "the generation ended without a video",
            );
            Transition::Failed {
                class: err.class(),
                error: err.to_string(),
            }
        }
        Err(err) => context.retry_or_fail(lease, err.into()),
    };
    if let Transition::PollAgain {
        cancel_answered, ..
    } = &mut transition
    {
        *cancel_answered = answered;
    }
    Polled::Move(transition)
}

/// Logs a job's failed ending at the level an operator needs: a moderation refusal is the
/// content's doing and expected (info); anything else, a paid generation lost or a request
/// the provider refused, is for someone to look at (warn).
fn log_ending(class: ErrorClass, error: &str, what: &str) {
    if class == ErrorClass::Moderation {
        info!(class = class.as_str(), error, "{what} (moderation)");
    } else {
        warn!(class = class.as_str(), error, "{what}");
    }
}

/// Schedules the same step again after `failure`, keeping the job where it is.
fn retry_same_step(lease: &Lease, attempt: u32, failure: StepFailure) -> Transition {
    let delay = failure.retry_after.unwrap_or_default();
    let error = failure.message;
    match lease.state {
        JobState::Submitting => Transition::RetrySubmit {
            attempt,
            delay,
            error,
        },
        JobState::Waiting => Transition::PollAgain {
            polls: lease.polls,
            attempt,
            delay,
            error: Some(error),
            cancel_answered: false,
        },
        _ => Transition::RetryFetch {
            result_url: lease.result_url.clone().unwrap_or_default(),
            attempt,
            delay,
            error,
        },
    }
}

impl StepContext {
    /// A queued job's model that its catalog row no longer takes (retired or paused since
    /// the job was queued) fails the job before anything is sent; a model the catalog does
    /// not list is the provider's to judge.
    fn model_unavailable(&self, contract: ProviderKind, lease: &Lease) -> Option<Transition> {
        let rule = self.models.rule(contract, &lease.spec.model)?;
        if rule.status.takes_jobs() {
            return None;
        }
        let notice = rule.lifecycle_notice().unwrap_or_default();
        warn!(model = %lease.spec.model, "{notice}: the job is not submitted");
        Some(Transition::Failed {
            class: ErrorClass::ModelUnavailable,
            error: format!("model {notice}; nothing was sent"),
        })
    }

    /// A fresh callback URL for this submit, `{base}/callbacks/{account}/{job}/{token}`, and
    /// the token's hash for the ledger. The token itself is never stored or logged.
    /// None when callbacks are off, or the provider sends them to an account-level URL.
    fn callback_url(&self, lease: &Lease) -> Option<(String, String)> {
        let base = self.callback_base.as_deref()?;
        let provider = self.accounts.adapter(&lease.account)?;
        if provider.callback_scope() != CallbackScope::PerTask {
            return None;
        }
        let token = hex::encode(rand::random::<[u8; 32]>());
        let url = format!(
            "{}/callbacks/{}/{}/{token}",
            base.trim_end_matches('/'),
            lease.account,
            lease.job_id
        );
        Some((url, token_hash(&token)))
    }

    fn poll_schedule(&self, lease: &Lease) -> PollSchedule {
        self.accounts.get(&lease.account).map_or(
            PollSchedule {
                first: self.backoff_min,
                max: self.backoff_max,
            },
            |account| account.poll,
        )
    }

    /// How long an `uncertain` job of this account keeps its in-flight slot.
    fn uncertain_slot_hold(&self, lease: &Lease) -> Duration {
        self.accounts
            .get(&lease.account)
            .map_or(Duration::ZERO, |account| account.uncertain_slot_hold)
    }

    /// A submit gives up sooner than a poll or fetch of a task the provider already billed.
    fn max_attempts_for(&self, lease: &Lease) -> u32 {
        match lease.state {
            JobState::Submitting => self.max_attempts,
            _ => self.max_attempts_paid,
        }
    }

    /// Retries a retryable failure with backoff until its attempt limit; anything else, or the
    /// last attempt, ends the job with the failure's class.
    fn retry_or_fail(&self, lease: &Lease, failure: StepFailure) -> Transition {
        let limits = RetryLimits {
            max_attempts: self.max_attempts_for(lease),
            backoff_min: self.backoff_min,
            backoff_max: self.backoff_max,
        };
        match decide(&failure, lease.attempt, limits) {
            Decision::Retry { attempt, delay } => {
                if failure.spends_attempt {
                    warn!(class = %failure.class, error = failure.message, attempt, ?delay, "step will be retried");
                } else {
                    error!(
                        error = failure.message,
                        ?delay,
                        "local resource exhausted; the step will be retried without spending an attempt"
                    );
                    metrics::counter!("reelq_local_resource_errors_total").increment(1);
                }
                retry_same_step(
                    lease,
                    attempt,
                    StepFailure {
                        retry_after: Some(delay),
                        ..failure
                    },
                )
            }
            Decision::Fail { error } => {
                log_ending(failure.class, &error, "job failed");
                Transition::Failed {
                    class: failure.class,
                    error,
                }
            }
        }
    }
}
