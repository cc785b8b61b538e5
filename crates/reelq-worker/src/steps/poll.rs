//! The poll step: asks the provider for the task (and for a cancel someone asked for); a
//! video found ready is fetched at once under the same lease.

use reelq_core::JobState;
use reelq_providers::{Provider, TaskStatus};
use reelq_queue::{Cancel, LeasedJob, PollLease, Transition};
use tracing::info;

use super::{
    Step, StepContext,
    counters::{count_provider_call, count_provider_request},
    fetch, finish, log_ending, run, timed, with_renewal,
};
use crate::decision::{StepFailure, backoff};

impl Step for PollLease {
    const STATE: JobState = JobState::Waiting;
    const PAID: bool = true;
    fn job(&self) -> &LeasedJob {
        PollLease::job(self)
    }
    fn again(&self, attempt: u32, failure: StepFailure) -> Transition {
        Transition::PollAgain {
            polls: self.polls(),
            attempt,
            delay: failure.retry_after.unwrap_or_default(),
            error: Some(failure.message),
            cancel_answered: false,
        }
    }
}

/// A waiting job's poll; a video found ready is fetched at once under the same lease:
/// recording `fetching` first would cost a move and a claim per job, and a crash mid-fetch
/// only polls again (free).
pub(super) async fn poll_step(context: &StepContext, provider: &dyn Provider, lease: PollLease) {
    let polled = with_renewal(
        context,
        &lease,
        timed::<PollLease, _>(poll(context, provider, &lease)),
    )
    .await;
    match polled {
        Polled::Ready { result_url } => {
            count_provider_call(lease.job(), "query", "ok");
            let fetching = lease.ready(result_url);
            let transition = run(context, &fetching, fetch(context, provider, &fetching)).await;
            finish(context, fetching, transition).await;
        }
        Polled::Move(transition) => {
            count_provider_request(&lease, &transition);
            finish(context, lease, transition).await;
        }
    }
}

/// What a poll found: the video is ready to fetch, or the job's next move.
enum Polled {
    Ready { result_url: String },
    Move(Transition),
}

async fn poll(context: &StepContext, provider: &dyn Provider, lease: &PollLease) -> Polled {
    let (task_id, spec) = (lease.task_id(), lease.job().spec());
    let mut answered = false;
    if lease.cancel() == Cancel::Requested && provider.kind().cancels_generations() {
        // Asked at each poll until the provider answers (the call is idempotent, and a lost
        // answer costs nothing but the next poll's ask); its answer is recorded with the
        // poll's move, and not asked for again.
        match provider.cancel(spec, task_id).await {
            Ok(answer) => {
                info!(task_id, ?answer, "the provider answered the cancel");
                answered = true;
            }
            Err(err) => info!(task_id, error = %err, "no answer to the cancel; asked again"),
        }
    }
    let mut transition = match provider.query(spec, task_id).await {
        Ok(TaskStatus::Running) => {
            let polls = lease.polls_after();
            let schedule = context.poll_schedule(lease.job());
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
        Ok(TaskStatus::Failed(err)) if lease.cancel() != Cancel::NotRequested => {
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
