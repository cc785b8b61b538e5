//! The seam between workers and providers.

use bytes::Bytes;
use futures_util::{future::BoxFuture, stream::BoxStream};
use reelq_core::{JobId, JobSpec, ProviderKind};
use reqwest::header::HeaderMap;

use crate::ProviderError;

/// A result body, streamed in chunks so memory does not grow with the video's size.
pub type ByteStream = BoxStream<'static, Result<Bytes, ProviderError>>;

/// A result being downloaded.
pub struct Download {
    /// The length the server announced, if it did: a body of another length is truncated.
    pub content_length: Option<u64>,
    pub body: ByteStream,
}

/// What a verified callback says. A hint only: the worker confirms by polling.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallbackHint {
    pub task_id: String,
    /// A progress report, not a completion: it must not hurry the job.
    pub progress_only: bool,
}

/// Why a callback was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallbackError {
    #[error("callback signature missing or wrong")]
    BadSignature,
    #[error("callback timestamp outside the accepted window")]
    Stale,
    #[error("callback body unreadable: {0}")]
    Malformed(String),
}

/// Where a provider task stands.
#[derive(Debug, Clone, PartialEq)]
pub enum TaskStatus {
    Running,
    Succeeded { result_url: String },
    Failed(ProviderError),
}

/// Where a provider sends its callbacks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallbackScope {
    /// To a URL given with each create: reelq puts a per-job token in it.
    PerTask,
    /// To one URL configured on the account (OpenAI-style webhooks): only the signature
    /// authenticates them, and the task id finds the job.
    Account,
}

/// One provider account. Implementations are stateless apart from their HTTP client and
/// config, so one instance serves every worker task.
pub trait Provider: Send + Sync {
    fn kind(&self) -> ProviderKind;

    fn callback_scope(&self) -> CallbackScope {
        CallbackScope::PerTask
    }

    /// Calls the provider's create endpoint once and returns its task id. Never retries by
    /// itself: whether a retry could pay twice is the caller's decision, made from the error.
    /// `callback_url`, when given, is where the provider should report the task.
    fn submit<'a>(
        &'a self,
        job_id: JobId,
        spec: &'a JobSpec,
        callback_url: Option<&'a str>,
    ) -> BoxFuture<'a, Result<String, ProviderError>>;

    /// Checks a callback's signature (where the provider signs and a key is configured) and
    /// reads which task it concerns. `now_s` is the current unix time.
    fn parse_callback(
        &self,
        headers: &HeaderMap,
        body: &[u8],
        now_s: u64,
    ) -> Result<CallbackHint, CallbackError>;

    fn query<'a>(&'a self, task_id: &'a str) -> BoxFuture<'a, Result<TaskStatus, ProviderError>>;

    /// Opens the finished video for streaming.
    fn download<'a>(
        &'a self,
        result_url: &'a str,
    ) -> BoxFuture<'a, Result<Download, ProviderError>>;
}
