//! What a failed step leads to: one pure rule ([`decide`]) and the backoff schedule, so a
//! table tests every case without a ledger, a provider or a store.

use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};
use reelq_core::ErrorClass;
use reelq_providers::ProviderError;
use reelq_storage::StorageError;

/// A step's failure, reduced to what decides the next move.
pub(crate) struct StepFailure {
    pub(crate) class: ErrorClass,
    pub(crate) message: String,
    pub(crate) retry_after: Option<Duration>,
    /// False when this host ran out of something (descriptors, memory, disk): the job is
    /// not at fault, so the failure never counts towards its attempts.
    pub(crate) spends_attempt: bool,
}

impl From<ProviderError> for StepFailure {
    fn from(err: ProviderError) -> Self {
        StepFailure {
            class: err.class(),
            retry_after: err.retry_after(),
            spends_attempt: !matches!(err, ProviderError::LocalResource(_)),
            message: err.to_string(),
        }
    }
}

impl From<StorageError> for StepFailure {
    fn from(err: StorageError) -> Self {
        // A failed body read or an unavailable store are both worth another try.
        StepFailure {
            class: ErrorClass::Transient,
            retry_after: None,
            spends_attempt: reelq_core::local_exhaustion(&err).is_none(),
            message: err.to_string(),
        }
    }
}

/// How many attempts a step may spend, and its backoff.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RetryLimits {
    pub(crate) max_attempts: u32,
    pub(crate) backoff_min: Duration,
    pub(crate) backoff_max: Duration,
}

/// What a failed step leads to.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Decision {
    /// The same step again after `delay`, with `attempt` attempts spent.
    Retry { attempt: u32, delay: Duration },
    /// The job ends with this error.
    Fail { error: String },
}

/// The one rule for a failed step, pure so a table tests it: a local resource error retries
/// without spending an attempt; a retryable class retries with backoff (or the provider's
/// `Retry-After`) until its attempts are spent; anything else ends the job at once.
pub(crate) fn decide(failure: &StepFailure, attempts_spent: u32, limits: RetryLimits) -> Decision {
    if !failure.spends_attempt {
        return Decision::Retry {
            attempt: attempts_spent,
            delay: backoff(limits.backoff_min, limits.backoff_max, attempts_spent + 1),
        };
    }
    let attempt = attempts_spent + 1;
    if !failure.class.is_retryable() {
        return Decision::Fail {
            error: failure.message.clone(),
        };
    }
    if attempt >= limits.max_attempts {
        return Decision::Fail {
            error: format!("gave up after {attempt} attempts: {}", failure.message),
        };
    }
    let delay = failure
        .retry_after
        .unwrap_or_else(|| backoff(limits.backoff_min, limits.backoff_max, attempt));
    Decision::Retry { attempt, delay }
}

/// The `n`th delay (1-based) of an exponential schedule with jitter: the base doubles from
/// `min` up to `max`, and jitter adds up to as much again, so replicas do not retry in step.
pub(crate) fn backoff(min: Duration, max: Duration, n: u32) -> Duration {
    ExponentialBuilder::default()
        .with_min_delay(min)
        .with_max_delay(max)
        .with_factor(2.0)
        .with_jitter()
        .without_max_times()
        .build()
        .nth(n.saturating_sub(1) as usize)
        .unwrap_or(max)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (class, spends an attempt, Retry-After, attempts spent) -> retry as (attempt, delay:
    /// None for the backoff's), or None: the job fails.
    type Row = (
        ErrorClass,
        bool,
        Option<Duration>,
        u32,
        Option<(u32, Option<Duration>)>,
    );

    #[test]
    fn a_failed_step_retries_or_ends_by_one_table() {
        let limits = RetryLimits {
            max_attempts: 3,
            backoff_min: Duration::from_secs(1),
            backoff_max: Duration::from_secs(8),
        };
        let failure = |class, spends_attempt, retry_after| StepFailure {
            class,
            message: "m".into(),
            retry_after,
            spends_attempt,
        };
        let hinted = Some(Duration::from_secs(30));
        use ErrorClass::*;
        let table: [Row; 8] = [
            (Transient, true, None, 0, Some((1, None))),
            (Transient, true, hinted, 1, Some((2, hinted))),
            (Transient, true, None, 2, None),
            (RateLimited, true, None, 0, Some((1, None))),
            (Invalid, true, None, 0, None),
            (Auth, true, None, 0, None),
            (GenerationFailed, true, None, 0, None),
            // This host ran out of descriptors: never spends the job's attempts.
            (Transient, false, None, 2, Some((2, None))),
        ];
        for (class, spends, retry_after, spent, expect) in table {
            let decision = decide(&failure(class, spends, retry_after), spent, limits);
            match (decision, expect) {
                (Decision::Retry { attempt, delay }, Some((want_attempt, want_delay))) => {
                    assert_eq!(attempt, want_attempt, "{class:?} after {spent}");
                    match want_delay {
                        Some(want) => assert_eq!(delay, want),
                        None => {
                            assert!(delay >= limits.backoff_min && delay <= 2 * limits.backoff_max)
                        }
                    }
                }
                (Decision::Fail { error }, None) => {
                    assert_eq!(
                        error.starts_with("gave up"),
                        class.is_retryable(),
                        "{error}"
                    );
                }
                (decision, expect) => {
                    panic!("{class:?} after {spent}: {decision:?}, wanted {expect:?}")
                }
            }
        }
    }

    #[test]
    fn backoff_doubles_with_jitter_up_to_its_cap() {
        let (min, max) = (Duration::from_secs(1), Duration::from_secs(8));
        for (n, base) in [(1, 1), (2, 2), (3, 4), (4, 8), (9, 8)] {
            let delay = backoff(min, max, n);
            let base = Duration::from_secs(base);
            assert!(
                delay >= base && delay <= base * 2,
                "delay {n} = {delay:?}, base {base:?}"
            );
        }
    }
}
