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

/// The longest task id a callback may name (real ones are tens of characters; it becomes
/// part of a Redis key).
const MAX_TASK_ID_CHARS: usize = 256;

impl CallbackHint {
    /// A hint naming `task_id`, which must look like a task id: not empty, not overlong, no
    /// whitespace or control characters.
    pub fn new(task_id: String, progress_only: bool) -> Result<Self, CallbackError> {
        if task_id.is_empty()
            || task_id.chars().count() > MAX_TASK_ID_CHARS
            || task_id.chars().any(|c| c.is_whitespace() || c.is_control())
        {
            return Err(CallbackError::Malformed(format!(
                "the callback names no usable task id ({} characters)",
                task_id.chars().count()
            )));
        }
        Ok(CallbackHint {
            task_id,
            progress_only,
        })
    }
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

/// A task as the provider's own records show it: what reconciles an `uncertain` job (one
/// whose create answer was lost) without a second paid create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderTask {
    pub task_id: String,
    /// When the provider created it, unix seconds.
    pub created_s: u64,
    /// The request fields the provider echoes back (model, duration, size, ...), by name,
    /// valued as the adapter would have sent them.
    pub echo: TaskEcho,
}

/// A provider's recent tasks, and whether the list reached back as far as asked (a list cut
/// short proves nothing about the tasks it did not show).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecentTasks {
    pub tasks: Vec<ProviderTask>,
    pub complete: bool,
}

/// Request fields by name, as an adapter sends them and as the provider echoes them.
pub type TaskEcho = std::collections::BTreeMap<String, String>;

impl ProviderTask {
    /// Whether this task could be the create of a job that sent `sent`: every field the
    /// provider echoes agrees (fields it does not echo, such as a prompt, cannot disagree).
    pub fn echoes(&self, sent: &TaskEcho) -> bool {
        self.echo
            .iter()
            .all(|(field, value)| sent.get(field).is_none_or(|sent| sent == value))
            && self.echo.keys().any(|field| sent.contains_key(field))
    }
}

/// A provider's answer to a cancel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CancelAnswer {
    /// The provider took the request; the task's status tells when it has stopped.
    Requested,
    /// The task had already ended (or the provider no longer knows it): nothing to stop.
    AlreadyEnded,
}

/// What a free probe of an account found: the key is accepted, and where the provider has
/// an endpoint for it, what is left on the account and which models it offers.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AccountCheck {
    /// Credits left, in the provider's own unit.
    pub credits: Option<f64>,
    /// The model ids the account may use, where the provider lists them.
    pub models: Option<Vec<String>>,
}

/// The task id a probe asks for: no provider has it, so the answer shows only whether the
/// key is accepted (a "not found" is an accepted key), and nothing is created or paid.
pub(crate) const PROBE_TASK_ID: &str = "reelq-account-check";

/// What a query of [`PROBE_TASK_ID`] shows of the account: any answer but a refusal of the
/// key (a "not found" included) is an accepted key.
pub(crate) fn probed(
    answer: Result<TaskStatus, ProviderError>,
) -> Result<AccountCheck, ProviderError> {
    match answer {
        Ok(_) | Err(ProviderError::Invalid(_)) => Ok(AccountCheck::default()),
        Err(err) => Err(err),
    }
}

/// What one submit asks of the provider.
#[derive(Debug, Clone, Copy)]
pub struct Submission<'a> {
    pub job_id: JobId,
    pub spec: &'a JobSpec,
    /// Where the provider should report the task, when callbacks are on.
    pub callback_url: Option<&'a str>,
    /// The job is batch work that may wait behind interactive work: passed on where the
    /// contract has a priority hint (fal's `X-Fal-Queue-Priority: low`), ignored elsewhere.
    pub low_priority: bool,
}

impl<'a> Submission<'a> {
    /// A normal-priority submit of `spec`.
    pub fn new(job_id: JobId, spec: &'a JobSpec, callback_url: Option<&'a str>) -> Self {
        Submission {
            job_id,
            spec,
            callback_url,
            low_priority: false,
        }
    }
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
    fn submit<'a>(
        &'a self,
        submission: Submission<'a>,
    ) -> BoxFuture<'a, Result<String, ProviderError>>;

    /// Checks a callback's signature (where the provider signs and a key is configured) and
    /// reads which task it concerns. `now_s` is the current unix time.
    fn parse_callback(
        &self,
        headers: &HeaderMap,
        body: &[u8],
        now_s: u64,
    ) -> Result<CallbackHint, CallbackError>;

    /// Fetches the keys callbacks are verified with again, for providers that publish them
    /// (fal's JWKS): the callback receiver calls it once when a signature does not verify,
    /// then checks the callback again (a key rotated in since the last fetch). No-op by
    /// default.
    fn refresh_callback_keys(&self) -> BoxFuture<'_, ()> {
        Box::pin(async {})
    }

    /// Where the job's task stands. `spec` is the job's own (some contracts keep one API per
    /// model family, and the row says which).
    fn query<'a>(
        &'a self,
        spec: &'a JobSpec,
        task_id: &'a str,
    ) -> BoxFuture<'a, Result<TaskStatus, ProviderError>>;

    /// Asks the provider to stop `task_id`'s generation. An answer is final (the worker does
    /// not ask again): the provider took the request (which is not that the generation has
    /// stopped: the task's status says when it has, ending without a video), or there is
    /// nothing left to cancel (a generation already finished keeps its video). An error is
    /// no answer, asked again at the next poll. Contracts without a cancel call
    /// ([`ProviderKind::cancels_generations`]) answer `Invalid`.
    fn cancel<'a>(
        &'a self,
        _spec: &'a JobSpec,
        _task_id: &'a str,
    ) -> BoxFuture<'a, Result<CancelAnswer, ProviderError>> {
        let kind = self.kind();
        Box::pin(async move {
            Err(ProviderError::Invalid(format!(
                "{kind} has no call to cancel a generation"
            )))
        })
    }

    /// Whether the provider can list its recent tasks ([`Provider::recent_tasks`]).
    fn lists_tasks(&self) -> bool {
        false
    }

    /// What the provider's records would echo of this job's create.
    fn echo(&self, _spec: &JobSpec) -> TaskEcho {
        TaskEcho::new()
    }

    /// The account's tasks created since `since_s` (unix seconds), newest first, as far as
    /// the provider lists them. Providers without a list endpoint answer `Invalid`.
    fn recent_tasks(&self, _since_s: u64) -> BoxFuture<'_, Result<RecentTasks, ProviderError>> {
        Box::pin(async {
            Err(ProviderError::Invalid(
                "this provider has no task list".into(),
            ))
        })
    }

    /// One task's record as the provider keeps it, echoing its create: what confirms that a
    /// task a callback names is the job's own. None for providers whose records do not echo
    /// their requests (a query then shows only that the task exists).
    fn task_record<'a>(
        &'a self,
        _task_id: &'a str,
    ) -> BoxFuture<'a, Result<Option<ProviderTask>, ProviderError>> {
        Box::pin(async { Ok(None) })
    }

    /// Whether the provider finds a task by the job's own id ([`Provider::task_of_job`]).
    fn names_tasks_by_job(&self) -> bool {
        false
    }

    /// The task the job's own id names at the provider, for contracts whose creates carry a
    /// client-chosen id the provider keeps unique (Kling's `external_task_id`): `Some` with
    /// its task id, or `None` when the provider answers that it has no such task. Other
    /// contracts answer `Invalid`.
    fn task_of_job<'a>(
        &'a self,
        _spec: &'a JobSpec,
        _job_id: JobId,
    ) -> BoxFuture<'a, Result<Option<String>, ProviderError>> {
        Box::pin(async {
            Err(ProviderError::Invalid(
                "this provider names no task by the job's id".into(),
            ))
        })
    }

    /// The account's HTTP client (its base URL, key and timeouts), which the default
    /// methods use.
    fn api(&self) -> &crate::http::Api;

    /// Opens the finished video for streaming: the same for every contract (the key goes
    /// along only to the account's own host, never to a pre-signed URL).
    fn download<'a>(
        &'a self,
        result_url: &'a str,
    ) -> BoxFuture<'a, Result<Download, ProviderError>> {
        Box::pin(self.api().download(result_url))
    }

    /// Probes the account without paying for anything: authentication, credits left where
    /// the provider has an endpoint for it, models where it lists them.
    fn check_account(&self) -> BoxFuture<'_, Result<AccountCheck, ProviderError>>;

    /// Where the provider serves a still image of the finished video (downloaded with
    /// [`Provider::download`]), if it offers one. None by default.
    fn thumbnail_url(&self, _result_url: &str) -> Option<String> {
        None
    }
}
