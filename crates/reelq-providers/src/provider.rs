//! The seam between workers and providers.

use bytes::Bytes;
use futures_util::{future::BoxFuture, stream::BoxStream};
use reelq_core::{JobId, JobSpec, ProviderKind};

use crate::ProviderError;

/// A result body, streamed in chunks so memory does not grow with the video's size.
pub type ByteStream = BoxStream<'static, Result<Bytes, ProviderError>>;

/// A result being downloaded.
pub struct Download {
    /// The length the server announced, if it did: a body of another length is truncated.
    pub content_length: Option<u64>,
    pub body: ByteStream,
}

/// Where a provider task stands.
#[derive(Debug, Clone, PartialEq)]
pub enum TaskStatus {
    Running,
    Succeeded { result_url: String },
    Failed(ProviderError),
}

/// One provider account. Implementations are stateless apart from their HTTP client and
/// config, so one instance serves every worker task.
pub trait Provider: Send + Sync {
    fn kind(&self) -> ProviderKind;

    /// Calls the provider's create endpoint once and returns its task id. Never retries by
    /// itself: whether a retry could pay twice is the caller's decision, made from the error.
    fn submit<'a>(
        &'a self,
        job_id: JobId,
        spec: &'a JobSpec,
    ) -> BoxFuture<'a, Result<String, ProviderError>>;

    fn query<'a>(&'a self, task_id: &'a str) -> BoxFuture<'a, Result<TaskStatus, ProviderError>>;

    /// Opens the finished video for streaming.
    fn download<'a>(
        &'a self,
        result_url: &'a str,
    ) -> BoxFuture<'a, Result<Download, ProviderError>>;
}
