//! ByteDance's Seedance models through BytePlus ModelArk (`docs/providers.md`, Ark), read
//! 2026-12-07 from copies of BytePlus's ModelArk reference (docs.byteplus.com/en/docs/
//! ModelArk: 1520757 create, 1521309 retrieve, 1521675 list, 1521720 cancel or delete,
//! 1299023 errors) and ByteDance's SDKs (volcengine-go-sdk `service/arkruntime`,
//! volcengine-python-sdk `volcenginesdkarkruntime`). Volcengine Ark in China is the same API
//! on its own host, with its own keys and `doubao-` model ids: the base URL says which.
//!
//! `POST {base}/api/v3/contents/generations/tasks` with `{model, content: [{type: text},
//! {type: image_url, role: first_frame}], resolution, ratio, duration, callback_url}` answers
//! `{id: "cgt-..."}`; `GET .../tasks/{id}` the task; `GET .../tasks?page_num&page_size` the
//! account's last 7 days (reconciliation); `DELETE .../tasks/{id}` cancels a queued task and
//! deletes a finished one's record, so the adapter deletes only a task it just read queued.
//! Result URLs live 24 hours.
//!
//! | answer (`error.code`, HTTP status)           | class              |
//! |----------------------------------------------|--------------------|
//! | 400 `*SensitiveContentDetected*`             | `Moderation`       |
//! | 400 `InvalidParameter`, `MissingParameter`, 404 `InvalidEndpoint(OrModel).NotFound`, `ModelNotOpen` | `Invalid` |
//! | 401 `AuthenticationError`, 403 `AccessDenied` | `Auth`            |
//! | 403 `AccountOverdueError`, `OperationDenied.ServiceOverdue` | `Credits` |
//! | 429 (`RateLimitExceeded.*`, `*RateLimitExceeded`, `QuotaExceeded`: too many queued tasks, `ServerOverloaded`) | `RateLimited` |
//! | 500 `InternalServiceError`                   | query: `Transient`; create: `ServerError` (an unknown outcome) |
//! | create: no answer, reset, unreadable 2xx, any other 5xx | `UnknownOutcome` |
//! | task `failed` (`Moderation` when its `error.code` names sensitive content), `expired`, `cancelled` | `GenerationFailed` |

use futures_util::{FutureExt, future::BoxFuture};
use reelq_core::{JobSpec, ProviderKind};
use reqwest::header::HeaderMap;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::{
    AccountCheck, AccountConfig, CallbackError, CallbackHint, CancelAnswer, Provider,
    ProviderError, ProviderTask, RecentTasks, Submission, TaskEcho, TaskStatus,
    http::{Api, Call, ErrorDetail, ErrorWords, read_answer, task_failure},
    provider::{PROBE_TASK_ID, probed},
    request::{echo_of, null_as_default, request_fields},
};

const TASKS: &str = "/api/v3/contents/generations/tasks";

/// Pages of 100 read back in time per reconciliation pass, at most (Ark keeps 7 days).
const MAX_LIST_PAGES: u32 = 20;

/// One ModelArk account.
pub struct Ark {
    api: Api,
}

/// A task, as retrieve, list and callback show it.
#[derive(Deserialize)]
struct Task {
    id: String,
    #[serde(default, deserialize_with = "null_as_default")]
    model: String,
    status: String,
    #[serde(default)]
    error: Option<ErrorDetail>,
    #[serde(default)]
    content: Option<TaskContent>,
    #[serde(default, deserialize_with = "null_as_default")]
    created_at: u64,
    #[serde(default)]
    resolution: Option<String>,
    #[serde(default)]
    ratio: Option<String>,
    #[serde(default)]
    duration: Option<i64>,
}

#[derive(Deserialize)]
struct TaskContent {
    #[serde(default)]
    video_url: Option<String>,
}

#[derive(Deserialize)]
struct TaskList {
    #[serde(default, deserialize_with = "null_as_default")]
    total: usize,
    #[serde(default, deserialize_with = "null_as_default")]
    items: Vec<Task>,
}

/// How far back Ark lists tasks: 7 days (less a margin, for clocks).
const LISTED_S: u64 = 7 * 24 * 3600 - 3600;

impl Task {
    fn into_status(self) -> Result<TaskStatus, ProviderError> {
        match self.status.as_str() {
            "queued" | "running" => Ok(TaskStatus::Running),
            "succeeded" => match self.content.and_then(|content| content.video_url) {
                Some(result_url) => Ok(TaskStatus::Succeeded { result_url }),
                None => Err(ProviderError::transient(
                    "ark succeeded without a video_url",
                )),
            },
            "failed" | "expired" | "cancelled" => {
                let why = self.error.map(|e| e.describe()).unwrap_or_default();
                Ok(TaskStatus::Failed(task_failure(format!(
                    "ark task {} {why}",
                    self.status
                ))))
            }
            other => Err(ProviderError::transient(format!(
                "ark unknown task status {other:?}"
            ))),
        }
    }

    /// What Ark's record echoes of the create: the model and the settings it ran with.
    fn into_task(self) -> ProviderTask {
        let echo: TaskEcho = [
            ("model", Some(self.model)),
            ("resolution", self.resolution),
            ("ratio", self.ratio),
            ("duration", self.duration.map(|d| d.to_string())),
        ]
        .into_iter()
        .filter_map(|(field, value)| Some((field.to_owned(), value?)))
        .collect();
        ProviderTask {
            task_id: self.id,
            created_s: self.created_at,
            echo,
        }
    }
}

/// `{error: {code, message, param, type}}`, read with Ark's words for credits (moderation's,
/// `SensitiveContentDetected`, are among every contract's).
fn read_ark<T: serde::de::DeserializeOwned>(
    answer: &crate::http::Answer,
    call: Call,
) -> Result<T, ProviderError> {
    #[derive(Deserialize, Default)]
    struct Body {
        #[serde(default)]
        error: Option<ErrorDetail>,
    }
    read_answer(ProviderKind::Ark, answer, call, |body| {
        let detail = serde_json::from_str::<Body>(body)
            .ok()
            .and_then(|body| body.error);
        let own = detail.is_some();
        let words = detail.map(|d| d.describe()).unwrap_or_default();
        ErrorWords {
            own,
            credits: words.starts_with("AccountOverdueError")
                || words.starts_with("OperationDenied.ServiceOverdue"),
            words,
        }
    })
}

/// The create body: the job's fields, with the prompt and its image moved into `content`.
fn create_body(spec: &JobSpec, callback_url: Option<&str>) -> Value {
    let mut fields: Map<String, Value> = request_fields(spec);
    let prompt = fields.remove("prompt").unwrap_or_default();
    let mut content = vec![json!({ "type": "text", "text": prompt })];
    if let Some(image) = fields.remove("image") {
        content.push(json!({
            "type": "image_url",
            "image_url": { "url": image },
            "role": "first_frame",
        }));
    }
    fields.insert("model".into(), json!(spec.model));
    fields.insert("content".into(), Value::Array(content));
    if let Some(url) = callback_url {
        fields.insert("callback_url".into(), json!(url));
    }
    Value::Object(fields)
}

impl Ark {
    pub fn new(config: AccountConfig) -> Result<Self, ProviderError> {
        Ok(Ark {
            api: Api::new(config)?,
        })
    }

    async fn create(&self, submission: Submission<'_>) -> Result<String, ProviderError> {
        let request = self
            .api
            .post(TASKS)
            .json(&create_body(submission.spec, submission.callback_url));
        let answer = self.api.send(request, Call::Create).await?;
        #[derive(Deserialize)]
        struct Created {
            id: String,
        }
        Ok(read_ark::<Created>(&answer, Call::Create)?.id)
    }

    async fn task(&self, task_id: &str) -> Result<Task, ProviderError> {
        let answer = self
            .api
            .send(self.api.get(&format!("{TASKS}/{task_id}")), Call::Query)
            .await?;
        read_ark(&answer, Call::Query)
    }

    /// Every page of the account's list (Ark documents no order, so none is assumed): the
    /// list is complete only if it held `total` tasks and reached back to `since_s` within
    /// Ark's 7 days. A task seen twice (the list moved between pages) counts once.
    async fn list_since(&self, since_s: u64) -> Result<RecentTasks, ProviderError> {
        let mut tasks: Vec<ProviderTask> = Vec::new();
        let mut total = None;
        for page in 1..=MAX_LIST_PAGES {
            let request = self
                .api
                .get(TASKS)
                .query(&[("page_num", page.to_string()), ("page_size", "100".into())]);
            let answer = self.api.send(request, Call::Query).await?;
            let list: TaskList = read_ark(&answer, Call::Query)?;
            total = Some(list.total);
            let short = list.items.len() < 100;
            for task in list.items.into_iter().map(Task::into_task) {
                if !tasks.iter().any(|seen| seen.task_id == task.task_id) {
                    tasks.push(task);
                }
            }
            if short {
                break;
            }
        }
        let now_s = crate::http::now_s();
        let complete =
            total.is_some_and(|total| tasks.len() >= total) && since_s + LISTED_S > now_s;
        tasks.retain(|task| task.created_s >= since_s);
        Ok(RecentTasks { tasks, complete })
    }

    /// Cancels the task only while it is queued: Ark's DELETE of a finished task deletes its
    /// record (and the video with it, for reelq), and a running one cannot be stopped.
    async fn cancel_queued(&self, task_id: &str) -> Result<CancelAnswer, ProviderError> {
        if self.task(task_id).await?.status != "queued" {
            return Ok(CancelAnswer::AlreadyEnded);
        }
        let answer = self
            .api
            .send(self.api.delete(&format!("{TASKS}/{task_id}")), Call::Query)
            .await?;
        match read_ark::<Value>(&answer, Call::Query) {
            Ok(_) => Ok(CancelAnswer::Requested),
            // It began running meanwhile: it finishes.
            Err(ProviderError::Invalid(_)) => Ok(CancelAnswer::AlreadyEnded),
            Err(err) => Err(err),
        }
    }
}

impl Provider for Ark {
    fn kind(&self) -> ProviderKind {
        ProviderKind::Ark
    }

    fn submit<'a>(
        &'a self,
        submission: Submission<'a>,
    ) -> BoxFuture<'a, Result<String, ProviderError>> {
        self.create(submission).boxed()
    }

    /// Ark signs no callback: the per-job token in the URL authenticates it. The body is the
    /// task, as retrieve answers it.
    fn parse_callback(
        &self,
        _headers: &HeaderMap,
        body: &[u8],
        _now_s: u64,
    ) -> Result<CallbackHint, CallbackError> {
        let task: Task = serde_json::from_slice(body)
            .map_err(|err| CallbackError::Malformed(err.to_string()))?;
        let running = matches!(task.status.as_str(), "queued" | "running");
        CallbackHint::new(task.id, running)
    }

    fn query<'a>(
        &'a self,
        _spec: &'a JobSpec,
        task_id: &'a str,
    ) -> BoxFuture<'a, Result<TaskStatus, ProviderError>> {
        async move { self.task(task_id).await?.into_status() }.boxed()
    }

    fn cancel<'a>(
        &'a self,
        _spec: &'a JobSpec,
        task_id: &'a str,
    ) -> BoxFuture<'a, Result<CancelAnswer, ProviderError>> {
        self.cancel_queued(task_id).boxed()
    }

    fn lists_tasks(&self) -> bool {
        true
    }

    /// Ark's records echo the model ("name-version", not an endpoint id: a job sent to an
    /// `ep-` endpoint is matched without it) and the settings, never the prompt.
    fn echo(&self, spec: &JobSpec) -> TaskEcho {
        let body = create_body(spec, None);
        let mut echo = echo_of(&body["model"], body.as_object().expect("an object"));
        let endpoint = spec.model.starts_with("ep-");
        echo.retain(|field, _| match field.as_str() {
            "model" => !endpoint,
            "resolution" | "ratio" | "duration" => true,
            _ => false,
        });
        echo
    }

    fn recent_tasks(&self, since_s: u64) -> BoxFuture<'_, Result<RecentTasks, ProviderError>> {
        self.list_since(since_s).boxed()
    }

    fn task_record<'a>(
        &'a self,
        task_id: &'a str,
    ) -> BoxFuture<'a, Result<Option<ProviderTask>, ProviderError>> {
        async move { Ok(Some(self.task(task_id).await?.into_task())) }.boxed()
    }

    /// A retrieve of a task nobody made (free) shows whether the key is accepted.
    fn check_account(&self) -> BoxFuture<'_, Result<AccountCheck, ProviderError>> {
        async move { probed(self.task(PROBE_TASK_ID).await.map(|_| TaskStatus::Running)) }.boxed()
    }

    fn api(&self) -> &Api {
        &self.api
    }
}
