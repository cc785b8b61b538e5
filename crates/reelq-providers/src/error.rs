//! What can go wrong talking to a provider, already classed for the retry decision.

use std::time::Duration;

use reelq_core::ErrorClass;

/// A provider failure. Messages carry the provider's own words but never a key or a signed
/// URL's query string.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ProviderError {
    #[error("request refused as invalid: {0}")]
    Invalid(String),
    #[error("api key refused: {0}")]
    Auth(String),
    #[error("insufficient credits: {0}")]
    Credits(String),
    #[error("rate limited: {message}")]
    RateLimited {
        retry_after: Option<Duration>,
        message: String,
    },
    #[error("transient provider error: {message}")]
    Transient {
        retry_after: Option<Duration>,
        message: String,
    },
    #[error("content refused by moderation: {0}")]
    Moderation(String),
    #[error("generation failed: {0}")]
    GenerationFailed(String),
    /// The provider says it does not take this model now (paused or withdrawn): a refusal
    /// before anything was created.
    #[error("model not served: {0}")]
    ModelUnavailable(String),
    #[error("outcome unknown, the task may exist: {0}")]
    UnknownOutcome(String),
    /// The provider's own server answered a create with HTTP 500 in its own error shape.
    /// Its server may fail after accepting (and billing) the task, so this proves no
    /// refusal: an unknown outcome, unless the account trusts its provider's 500s
    /// ([`ProviderError::trusting_server_errors`]).
    #[error("provider server error on create, the task may exist: {message}")]
    ServerError {
        retry_after: Option<Duration>,
        message: String,
    },
    /// This host ran out of something (descriptors, memory) before the call could be made
    /// or finished: nothing the provider did, and not the job's fault; it never ends a job.
    #[error("this host is out of {0}")]
    LocalResource(String),
    /// The result URL answered 403/404/410: ask the provider for a fresh one.
    #[error("result url expired: {0}")]
    ResultExpired(String),
}

impl ProviderError {
    pub fn transient(message: impl Into<String>) -> Self {
        ProviderError::Transient {
            retry_after: None,
            message: message.into(),
        }
    }

    /// For an account whose operator trusts the provider's 500s to mean "nothing was
    /// created" (`retry_server_errors_on_create`): a [`ProviderError::ServerError`] becomes
    /// `Transient`, retried with backoff. The provider may bill each retry if it is wrong.
    pub fn trusting_server_errors(self) -> Self {
        match self {
            ProviderError::ServerError {
                retry_after,
                message,
            } => ProviderError::Transient {
                retry_after,
                message,
            },
            other => other,
        }
    }

    pub fn class(&self) -> ErrorClass {
        match self {
            ProviderError::Invalid(_) => ErrorClass::Invalid,
            ProviderError::Auth(_) => ErrorClass::Auth,
            ProviderError::Credits(_) => ErrorClass::Credits,
            ProviderError::RateLimited { .. } => ErrorClass::RateLimited,
            ProviderError::Transient { .. }
            | ProviderError::ResultExpired(_)
            | ProviderError::LocalResource(_) => ErrorClass::Transient,
            ProviderError::Moderation(_) => ErrorClass::Moderation,
            ProviderError::GenerationFailed(_) => ErrorClass::GenerationFailed,
            ProviderError::ModelUnavailable(_) => ErrorClass::ModelUnavailable,
            ProviderError::UnknownOutcome(_) | ProviderError::ServerError { .. } => {
                ErrorClass::UnknownOutcome
            }
        }
    }

    /// The provider's own hint of when to try again, if it gave one.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            ProviderError::RateLimited { retry_after, .. }
            | ProviderError::Transient { retry_after, .. }
            | ProviderError::ServerError { retry_after, .. } => *retry_after,
            _ => None,
        }
    }
}
