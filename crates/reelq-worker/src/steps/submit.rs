//! The submit step: the model still sold, `submitting` recorded durably, the create, and its
//! answer (a task, a refusal, or an unknown outcome that leaves the job `uncertain`).

use std::time::Duration;

use reelq_core::{ErrorClass, FallbackReason, JobState};
use reelq_providers::{Provider, ProviderError, Submission};
use reelq_queue::{Held, LeasedJob, SubmitLease, Transition, TransitionOutcome};
use tracing::{info, warn};

use super::{
    RECORD_RETRY, Step, StepContext, TASK_INDEX_TTL, finish, record, run, write_through_outage,
};
use crate::decision::StepFailure;

/// A submit lease whose `submitting` record is durable: its create may go out.
pub(crate) struct Submitting(SubmitLease);

impl Held for Submitting {
    fn fence(&self) -> &reelq_queue::Fence {
        self.0.fence()
    }
}

impl Step for Submitting {
    const STATE: JobState = JobState::Submitting;
    const PAID: bool = false;
    fn job(&self) -> &LeasedJob {
        self.0.job()
    }
    fn again(&self, attempt: u32, failure: StepFailure) -> Transition {
        Transition::RetrySubmit {
            attempt,
            delay: failure.retry_after.unwrap_or_default(),
            error: failure.message,
        }
    }
}

/// A queued job's submit: the model still sold, `submitting` recorded durably, the create,
/// and its answer recorded (remembered first: a ledger that loses the record, or cannot
/// take it, is given it back from the paid creates).
pub(super) async fn submit_step(
    context: &StepContext,
    provider: &dyn Provider,
    lease: SubmitLease,
) {
    if let Some(refusal) = context.model_unavailable(provider.kind(), lease.job()) {
        record(context, &lease, refusal).await;
        return;
    }
    let (callback_url, token_hash) = context.callback_url(lease.job()).unzip();
    let Some(lease) = begin_submit(context, lease, token_hash).await else {
        return;
    };
    let job_id = lease.job().job_id();
    let hold = context.uncertain_slot_hold(lease.job());
    context.paid.going_out(lease.job(), hold);
    let create = submit(context, provider, &lease, callback_url.as_deref());
    let transition = run(context, &lease, create).await;
    context.paid.answered(job_id, &transition);
    if finish(context, lease, transition).await {
        context.paid.settled(job_id);
    } else {
        context.paid.not_recorded(job_id);
    }
}

/// A routed job the claim handed over held back past its route's patience (its account
/// paused or full, or no worker took it): on to the next candidate, unsent (or back to the
/// queue, should its route have no candidate left, which the ledger's record rules out).
pub(super) async fn fall_back_step(context: &StepContext, lease: SubmitLease) {
    let Some(reason) = lease.fall_back() else {
        return;
    };
    let next = context
        .fall_back(lease.job(), reason)
        .unwrap_or_else(|| Transition::RetrySubmit {
            attempt: lease.job().attempt(),
            delay: context.backoff_min,
            error: format!("held back ({reason}) with no candidate left"),
        });
    record(context, &lease, next).await;
}

/// Records `submitting`, durably, before the create call: from here a crash reads as
/// `uncertain`, never as a job nobody sent. Retried through a Redis outage while the lease
/// has time; a record that cannot be proven durable puts the job back in the queue, unsent.
/// True if the create call may go.
async fn begin_submit(
    context: &StepContext,
    lease: SubmitLease,
    token_hash: Option<String>,
) -> Option<Submitting> {
    let begin = Transition::BeginSubmit {
        lease: context.lease,
        callback_token_hash: token_hash,
    };
    let budget = RECORD_RETRY.with_total_delay(Some(context.lease / 3));
    let err = match write_through_outage(context, &lease, begin, budget).await {
        Ok(TransitionOutcome::Applied) => return Some(Submitting(lease)),
        Ok(TransitionOutcome::LeaseLost { state, fence }) => {
            warn!(
                state = state.map_or("gone", JobState::as_str),
                fence, "lease lost before the submit; another worker owns the job now"
            );
            return None;
        }
        Err(err) => err,
    };
    // Not durable, refused, or Redis gone: the record may or may not be there, but the create
    // certainly did not go out. Say so under this lease (retried through the outage), so the
    // job goes back to the queue instead of reading `uncertain` when the lease runs out.
    warn!(error = %err, "submit not recorded durably; the job goes back to the queue, unsent");
    let back = Transition::RetrySubmit {
        attempt: lease.job().attempt(),
        delay: context.backoff_min,
        error: err.to_string(),
    };
    record(context, &lease, back).await;
    None
}

async fn submit(
    context: &StepContext,
    provider: &dyn Provider,
    lease: &Submitting,
    callback_url: Option<&str>,
) -> Transition {
    let job = lease.job();
    let submission = Submission {
        low_priority: lease.0.low_priority(),
        ..Submission::new(job.job_id(), job.spec(), callback_url)
    };
    let answer = provider.submit(submission).await;
    let trusts_500 = context
        .accounts
        .get(job.account())
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
                .index_task(job.account(), &task_id, job.job_id(), TASK_INDEX_TTL)
                .await;
            if let Err(err) = indexed {
                warn!(error = %err, "could not index the task for its callbacks");
            }
            let first_poll = context.poll_schedule(job).first;
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
            pause_provider(context, job, pause, &message).await;
            // A routed job whose route would not wait that long moves on.
            let patience = job.spec().route.as_ref().map(|r| r.patience_ms);
            let impatient = patience.is_some_and(|ms| pause > Duration::from_millis(ms));
            impatient
                .then(|| context.fall_back(job, FallbackReason::RateLimited))
                .flatten()
                .unwrap_or(Transition::RetrySubmit {
                    attempt: job.attempt(),
                    delay: pause,
                    error: message,
                })
        }
        // An empty account refuses every job alike: this one fails (or moves on along its
        // route), and the rest wait for credits instead of each failing in turn.
        Err(err @ ProviderError::Credits(_)) => {
            let message = err.to_string();
            pause_provider(context, job, context.credits_pause, &message).await;
            context
                .fall_back(job, FallbackReason::Credits)
                .unwrap_or_else(|| context.retry_or_fail(lease, err.into()))
        }
        // The provider may hold a paid task we know nothing of: never resubmit blindly.
        Err(err @ (ProviderError::UnknownOutcome(_) | ProviderError::ServerError { .. })) => {
            warn!(error = %err, "submit outcome unknown");
            Transition::Uncertain {
                error: err.to_string(),
                slot_hold: context.uncertain_slot_hold(job),
            }
        }
        // A refusal (the request, the key, the model, the content) proves nothing was made:
        // a routed job may move on, as its route says.
        Err(err) => {
            let reason = match err.class() {
                ErrorClass::Invalid | ErrorClass::Auth | ErrorClass::ModelUnavailable => {
                    Some(FallbackReason::Refused)
                }
                ErrorClass::Moderation => Some(FallbackReason::Moderation),
                _ => None,
            };
            reason
                .and_then(|reason| context.fall_back(job, reason))
                .unwrap_or_else(|| context.retry_or_fail(lease, err.into()))
        }
    }
}

/// Stops every replica submitting to the job's provider for `pause`.
async fn pause_provider(context: &StepContext, job: &LeasedJob, pause: Duration, why: &str) {
    if let Err(err) = context.ledger.pause_account(job.account(), pause).await {
        warn!(error = %err, "could not pause the provider for other replicas");
    }
    warn!(?pause, error = why, "provider paused");
}
