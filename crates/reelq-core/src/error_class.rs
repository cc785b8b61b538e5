//! Error classes: what a failure means for the job, independent of which provider raised it.

use std::{fmt, str::FromStr};

use serde::{Deserialize, Serialize};

/// The class decides what happens next: retry, stop, or ask an operator.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorClass {
    /// The request is wrong for the provider; retrying cannot help.
    Invalid,
    /// The provider refused the API key.
    Auth,
    /// The provider account has no credits left.
    Credits,
    /// The provider asked us to slow down.
    RateLimited,
    /// A passing fault (5xx, maintenance, connection refused): retry with backoff.
    Transient,
    /// The provider refused the content.
    Moderation,
    /// The provider accepted the task but the generation failed.
    GenerationFailed,
    /// A create request was sent and no answer came back: the task may exist.
    UnknownOutcome,
    /// The provider said the task succeeded, but its result, fetched twice, was not a whole
    /// video (an HTML page, a file cut short). The task is paid for: an operator's retry
    /// polls it again for a fresh URL.
    BadResult,
    /// The model is no longer taken: its catalog row says retired or paused (checked again
    /// right before the submit, for a job queued before the row changed), or the provider
    /// answered that it does not serve it. Nothing was created or paid; enqueue a job for
    /// the model that replaced it.
    ModelUnavailable,
}

impl ErrorClass {
    pub const ALL: [ErrorClass; 10] = [
        ErrorClass::Invalid,
        ErrorClass::Auth,
        ErrorClass::Credits,
        ErrorClass::RateLimited,
        ErrorClass::Transient,
        ErrorClass::Moderation,
        ErrorClass::GenerationFailed,
        ErrorClass::UnknownOutcome,
        ErrorClass::BadResult,
        ErrorClass::ModelUnavailable,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ErrorClass::Invalid => "invalid",
            ErrorClass::Auth => "auth",
            ErrorClass::Credits => "credits",
            ErrorClass::RateLimited => "rate_limited",
            ErrorClass::Transient => "transient",
            ErrorClass::Moderation => "moderation",
            ErrorClass::GenerationFailed => "generation_failed",
            ErrorClass::UnknownOutcome => "unknown_outcome",
            ErrorClass::BadResult => "bad_result",
            ErrorClass::ModelUnavailable => "model_unavailable",
        }
    }

    /// Whether the same step may simply be tried again later.
    pub fn is_retryable(self) -> bool {
        matches!(self, ErrorClass::RateLimited | ErrorClass::Transient)
    }
}

impl fmt::Display for ErrorClass {
    /// Honours width and alignment (`{:<10}`), so tables line up.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

impl FromStr for ErrorClass {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        ErrorClass::ALL
            .into_iter()
            .find(|class| class.as_str() == s)
            .ok_or_else(|| format!("unknown error class {s:?}"))
    }
}

/// What this host ran out of, if `err` (or an error it wraps) says so: file descriptors,
/// memory, disk space. Such failures are local and pass; they never end a job.
pub fn local_exhaustion(err: &(dyn std::error::Error + 'static)) -> Option<&'static str> {
    let mut next = Some(err);
    while let Some(err) = next {
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            // EMFILE, ENFILE; ENOMEM, ENOBUFS; ENOSPC, EDQUOT.
            match io.raw_os_error() {
                Some(24 | 23) => return Some("file descriptors (too many open files)"),
                Some(12 | 105) => return Some("memory"),
                Some(28 | 122) => return Some("disk space"),
                _ => {}
            }
        }
        next = err.source();
    }
    None
}

#[cfg(test)]
mod exhaustion_tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("sending the request")]
    struct Wrapper(#[source] std::io::Error);

    #[test]
    fn running_out_of_descriptors_is_found_however_deep() {
        let emfile = Wrapper(std::io::Error::from_raw_os_error(24));
        assert_eq!(
            local_exhaustion(&emfile),
            Some("file descriptors (too many open files)")
        );
        let refused = Wrapper(std::io::Error::from_raw_os_error(111));
        assert_eq!(local_exhaustion(&refused), None);
    }
}
