//! One step of a job: submit, poll or fetch. Each step ends in exactly one ledger
//! transition, fenced by the lease it was claimed under; the lease is renewed while the
//! step runs. Errors are classed into retry (our own backoff, via a scheduled due time),
//! `uncertain` (a create that may have been billed) or failure.

use std::{pin::pin, sync::Arc, time::Duration};

use backon::{ExponentialBuilder, Retryable};
use reelq_core::{Catalog, ErrorClass, FallbackReason, JobState, ProviderKind};
use reelq_providers::CallbackScope;
use reelq_queue::{Held, Lease, LeasedJob, Ledger, QueueError, Transition, TransitionOutcome};
use reelq_storage::VideoStore;
use sha2::{Digest, Sha256};
use tracing::{Instrument, debug, error, info, info_span, warn};

use crate::{
    accounts::Accounts,
    decision::{Decision, RetryLimits, StepFailure, decide},
};

mod counters;
mod fetch;
mod poll;
mod submit;
use counters::count_provider_request;
use fetch::fetch;
use poll::poll_step;
use submit::{fall_back_step, submit_step};

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

/// A lease at the step it runs: the submit (once its `submitting` record is durable), the
/// poll or the fetch. Each knows how its failures retry; [`finish`] consumes it.
pub(crate) trait Step: Held {
    /// The state the job is in while the step runs (the `step` label of its metrics).
    const STATE: JobState;
    /// A submit gives up sooner than a poll or fetch of a task the provider already billed.
    const PAID: bool;
    fn job(&self) -> &LeasedJob;
    /// The same step again after `failure`, keeping the job where it is.
    fn again(&self, attempt: u32, failure: StepFailure) -> Transition;
}

pub(crate) async fn run_step(context: &StepContext, lease: Lease) {
    let job = lease.job();
    // Named by the step in traces (`otel.name`), in the job's trace.
    let span = info_span!(
        "job",
        otel.name = step_name(&lease),
        job_id = %job.job_id(),
        provider = %job.spec().provider,
        account = %job.account(),
        step = %lease.state(),
        attempt = job.attempt(),
        task_id = lease.task_id().unwrap_or(""),
    );
    crate::telemetry::in_job_trace(&span, job.job_id());
    async {
        let lease = match lease {
            // Moved on to its route's next candidate: no provider call, so no account needed
            // (it may be one this worker does not have).
            Lease::Submit(submit) if submit.fall_back().is_some() => {
                return fall_back_step(context, submit).await;
            }
            lease => lease,
        };
        let Some(provider) = context.accounts.adapter(lease.job().account()) else {
            // Claims take only jobs of this worker's accounts; the lease lapses and a
            // replica with the account takes the job.
            error!("claimed a job of an account this worker does not have");
            return;
        };
        let provider = provider.as_ref();
        match lease {
            Lease::Submit(lease) => submit_step(context, provider, lease).await,
            Lease::Poll(lease) => poll_step(context, provider, lease).await,
            Lease::Fetch(lease) => {
                let transition = run(context, &lease, fetch(context, provider, &lease)).await;
                finish(context, lease, transition).await;
            }
        }
    }
    .instrument(span)
    .await
}

/// Runs a step's provider calls, timed and with its lease renewed, and counts what came of
/// them.
async fn run<S: Step>(
    context: &StepContext,
    lease: &S,
    step: impl Future<Output = Transition>,
) -> Transition {
    let transition = with_renewal(context, lease, timed::<S, _>(step)).await;
    debug!(?transition, "step done");
    count_provider_request(lease, &transition);
    transition
}

/// Records the step's ending move, consuming its lease. True if it was recorded.
async fn finish<S: Step>(context: &StepContext, lease: S, transition: Transition) -> bool {
    let next_step_now = matches!(transition, Transition::Requery { .. });
    let ends = ending(&transition);
    let recorded = record(context, &lease, transition).await;
    if recorded && next_step_now {
        // The job's next step is due at once: don't let this worker idle past it.
        context.step_due.notify_one();
    }
    if let Some(state) = ends.filter(|_| recorded) {
        let job = lease.job();
        let (provider, account) = (job.spec().provider.as_str(), job.account().as_str());
        crate::telemetry::end_job(job.job_id(), provider, account, state.as_str());
    }
    recorded
}

/// What a step claimed as `lease` does: its span's name in traces.
fn step_name(lease: &Lease) -> &'static str {
    match lease {
        Lease::Submit(_) => "submit",
        Lease::Poll(_) => "poll",
        Lease::Fetch(_) => "fetch",
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

/// Writes a transition, retrying through a Redis outage: the step's outcome may be a paid
/// task. If our lease expires meanwhile the fence refuses the late write, except a submit's,
/// which settles the `uncertain` state the claim left. True if the transition applied.
async fn record(context: &StepContext, lease: &impl Held, transition: Transition) -> bool {
    let fallback = fallback_labels(&transition);
    match write_through_outage(context, lease, transition, RECORD_RETRY).await {
        Ok(TransitionOutcome::Applied) => {
            if let Some(labels) = fallback {
                metrics::counter!("reelq_fallbacks_total", &labels).increment(1);
                // Due at once at its next candidate: don't let this worker idle past it.
                context.step_due.notify_one();
            }
            true
        }
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

/// The labels of `reelq_fallbacks_total` for a fall back.
fn fallback_labels(transition: &Transition) -> Option<[(&'static str, String); 4]> {
    let Transition::FallBack { spec, reason, left } = transition else {
        return None;
    };
    let route = spec.route.as_ref().map_or("", |route| route.name.as_str());
    Some([
        ("route", route.to_owned()),
        ("from", left.clone()),
        ("to", spec.account_or_provider().as_str().to_owned()),
        ("reason", reason.as_str().to_owned()),
    ])
}

/// Writes `transition`, retrying on `backoff` while Redis is unreachable (nothing else is
/// retried here: a lost lease or an unproven write is the caller's to handle).
async fn write_through_outage(
    context: &StepContext,
    lease: &impl Held,
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
async fn with_renewal<T>(
    context: &StepContext,
    lease: &impl Held,
    step: impl Future<Output = T>,
) -> T {
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

/// Runs a step, recording how long it took under the step's name (the state it runs in).
async fn timed<S: Step, T>(step: impl Future<Output = T>) -> T {
    let started = std::time::Instant::now();
    let output = step.await;
    metrics::histogram!("reelq_step_seconds", "step" => S::STATE.as_str())
        .record(started.elapsed().as_secs_f64());
    output
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

impl StepContext {
    /// A queued job's model that its catalog row no longer takes (retired or paused since
    /// the job was queued) moves the job on to its route's next candidate, or fails it,
    /// before anything is sent; a model the catalog does not list is the provider's to judge.
    fn model_unavailable(&self, contract: ProviderKind, job: &LeasedJob) -> Option<Transition> {
        let rule = self.models.rule(contract, &job.spec().model)?;
        if rule.status.takes_jobs() {
            return None;
        }
        let notice = rule.lifecycle_notice().unwrap_or_default();
        warn!(model = %job.spec().model, "{notice}: the job is not submitted");
        Some(
            self.fall_back(job, FallbackReason::Retired)
                .unwrap_or_else(|| Transition::Failed {
                    class: ErrorClass::ModelUnavailable,
                    error: format!("model {notice}; nothing was sent"),
                }),
        )
    }

    /// The job moved on to its route's next candidate, if it has a route that moves on for
    /// `reason` and a candidate left: only ever for a proof that the provider did not take
    /// the job.
    fn fall_back(&self, job: &LeasedJob, reason: FallbackReason) -> Option<Transition> {
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let spec = job
            .spec()
            .fall_back(reason, job.account().as_str(), now_ms)?;
        info!(
            %reason,
            to = %spec.account_or_provider(),
            model = %spec.model,
            "moving on to the route's next candidate"
        );
        Some(Transition::FallBack {
            spec: Box::new(spec),
            reason,
            left: job.account().to_string(),
        })
    }

    /// A fresh callback URL for this submit, `{base}/callbacks/{account}/{job}/{token}`, and
    /// the token's hash for the ledger. The token itself is never stored or logged.
    /// None when callbacks are off, or the provider sends them to an account-level URL.
    fn callback_url(&self, job: &LeasedJob) -> Option<(String, String)> {
        let base = self.callback_base.as_deref()?;
        let provider = self.accounts.adapter(job.account())?;
        if provider.callback_scope() != CallbackScope::PerTask {
            return None;
        }
        let token = hex::encode(rand::random::<[u8; 32]>());
        let url = format!(
            "{}/callbacks/{}/{}/{token}",
            base.trim_end_matches('/'),
            job.account(),
            job.job_id()
        );
        Some((url, token_hash(&token)))
    }

    fn poll_schedule(&self, job: &LeasedJob) -> PollSchedule {
        self.accounts.get(job.account()).map_or(
            PollSchedule {
                first: self.backoff_min,
                max: self.backoff_max,
            },
            |account| account.poll,
        )
    }

    /// How long an `uncertain` job of this account keeps its in-flight slot.
    fn uncertain_slot_hold(&self, job: &LeasedJob) -> Duration {
        self.accounts
            .get(job.account())
            .map_or(Duration::ZERO, |account| account.uncertain_slot_hold)
    }

    /// A submit gives up sooner than a poll or fetch of a task the provider already billed.
    fn max_attempts_for<S: Step>(&self) -> u32 {
        if S::PAID {
            self.max_attempts_paid
        } else {
            self.max_attempts
        }
    }

    /// Retries a retryable failure with backoff until its attempt limit; anything else, or the
    /// last attempt, ends the job with the failure's class.
    fn retry_or_fail<S: Step>(&self, lease: &S, failure: StepFailure) -> Transition {
        let limits = RetryLimits {
            max_attempts: self.max_attempts_for::<S>(),
            backoff_min: self.backoff_min,
            backoff_max: self.backoff_max,
        };
        match decide(&failure, lease.job().attempt(), limits) {
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
                lease.again(
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
