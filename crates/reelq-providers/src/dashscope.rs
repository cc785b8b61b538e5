//! The Wan models through Alibaba Cloud Model Studio, DashScope (`docs/providers.md`,
//! DashScope), read 2026-12-07 from copies of its pages (the Wan text-to-video API
//! reference, help.aliyun.com/zh/model-studio/text-to-video-api-reference and its English
//! twin; "manage asynchronous tasks"; the error codes) and its SDKs (dashscope-sdk-python
//! `dashscope/aigc/video_synthesis.py`, dashscope-sdk-java `TaskStatus.java`).
//!
//! `POST {base}/api/v1/services/aigc/video-generation/video-synthesis` with `X-DashScope-Async:
//! enable` (required: DashScope makes videos asynchronously only) and `{model, input: {prompt,
//! img_url}, parameters: {size, duration, ...}}` answers `{output: {task_id, task_status},
//! request_id}`; `GET {base}/api/v1/tasks/{id}` the task (ids and result URLs live 24 hours);
//! `POST {base}/api/v1/tasks/{id}/cancel` cancels a `PENDING` task; `GET {base}/api/v1/tasks/`
//! lists the account's last 24 hours. No callbacks: jobs are polled. The region is the base
//! URL's, and keys are the region's.
//!
//! | answer (`code`, HTTP status)                 | class              |
//! |----------------------------------------------|--------------------|
//! | 400 `InvalidParameter`, `BadRequest.*`, `InvalidURL`, 404 `ModelNotFound` | `Invalid` |
//! | 400 `DataInspectionFailed`, `IPInfringementSuspect` | `Moderation` |
//! | 400 `Arrearage`, 429 `PrepaidBillOverdue`, `PostpaidBillOverdue`, `CommodityNotPurchased` | `Credits` |
//! | 401 `InvalidApiKey`, 403 `AccessDenied*`     | `Auth`             |
//! | 429 `Throttling*`, `LimitRequests`           | `RateLimited`      |
//! | 500 `InternalError*`, `SystemError` in DashScope's shape | query: `Transient`; create: `ServerError` (an unknown outcome) |
//! | create: no answer, reset, unreadable 2xx, 503 `ModelUnavailable` or any other 5xx | `UnknownOutcome` |
//! | task `FAILED` (`Moderation` when its code is `DataInspectionFailed` or `IPInfringementSuspect`), `CANCELED`, `UNKNOWN` (DashScope no longer has it) | `GenerationFailed` |
//!
//! DashScope warns not to create duplicate tasks: reelq never retries a create, and an unknown
//! outcome is settled from the account's list, each candidate's record echoing its prompt.

use futures_util::{FutureExt, future::BoxFuture};
use reelq_core::{JobSpec, ProviderKind};
use reqwest::header::HeaderMap;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::{
    AccountCheck, AccountConfig, CallbackError, CallbackHint, CancelAnswer, Provider,
    ProviderError, ProviderTask, RecentTasks, Submission, TaskEcho, TaskStatus,
    http::{Answer, Api, Call, ErrorWords, read_answer, task_failure},
    provider::{PROBE_TASK_ID, probed},
    request::{null_as_default, request_fields},
};

const CREATE: &str = "/api/v1/services/aigc/video-generation/video-synthesis";
const TASKS: &str = "/api/v1/tasks";

/// Listed tasks per page, and pages read per reconciliation pass at most.
const PAGE_SIZE: usize = 100;
const MAX_LIST_PAGES: usize = 10;

/// One DashScope account.
pub struct Dashscope {
    api: Api,
}

/// `{request_id, code, message}`: DashScope's error shape.
#[derive(Deserialize, Default)]
struct ErrorBody {
    #[serde(default)]
    code: Option<String>,
    #[serde(default)]
    message: Option<String>,
}

/// `GET /tasks/{id}`.
#[derive(Deserialize)]
struct TaskAnswer {
    output: TaskOutput,
}

#[derive(Deserialize)]
struct TaskOutput {
    #[serde(default, deserialize_with = "null_as_default")]
    task_id: String,
    task_status: String,
    #[serde(default)]
    video_url: Option<String>,
    #[serde(default)]
    orig_prompt: Option<String>,
    #[serde(default)]
    code: Option<String>,
    #[serde(default)]
    message: Option<String>,
}

/// One task of `GET /tasks/`.
#[derive(Deserialize)]
struct Listed {
    task_id: String,
    #[serde(default, deserialize_with = "null_as_default")]
    model_name: String,
    /// Unix ms.
    #[serde(default, deserialize_with = "null_as_default")]
    gmt_create: u64,
}

#[derive(Deserialize)]
struct TaskList {
    #[serde(default, deserialize_with = "null_as_default")]
    total: usize,
    #[serde(default, deserialize_with = "null_as_default")]
    data: Vec<Listed>,
}

/// How far back DashScope lists and keeps tasks: 24 hours (less a margin, for clocks).
const LISTED_S: u64 = 24 * 3600 - 1800;

fn read_dashscope<T: serde::de::DeserializeOwned>(
    answer: &Answer,
    call: Call,
) -> Result<T, ProviderError> {
    read_answer(ProviderKind::Dashscope, answer, call, |body| {
        let error = serde_json::from_str::<ErrorBody>(body).unwrap_or_default();
        let code = error.code.unwrap_or_default();
        let words = format!("{code}: {}", error.message.unwrap_or_default());
        ErrorWords {
            own: !code.is_empty(),
            credits: matches!(
                code.as_str(),
                "Arrearage"
                    | "PrepaidBillOverdue"
                    | "PostpaidBillOverdue"
                    | "CommodityNotPurchased"
            ),
            words,
        }
    })
}

/// DashScope's codes for content its checks refused (inputs and outputs).
fn is_moderation(code: &str) -> bool {
    matches!(code, "DataInspectionFailed" | "IPInfringementSuspect")
}

impl TaskOutput {
    fn into_status(self) -> Result<TaskStatus, ProviderError> {
        match self.task_status.as_str() {
            "PENDING" | "RUNNING" | "SUSPENDED" => Ok(TaskStatus::Running),
            // No such task, or no longer (24 hours): also what a lagging read or another
            // region's key would see, so asked again; the step's attempts run out if it stays.
            "UNKNOWN" => Err(ProviderError::transient(format!(
                "dashscope does not know task {}",
                self.task_id
            ))),
            "SUCCEEDED" => match self.video_url {
                Some(result_url) => Ok(TaskStatus::Succeeded { result_url }),
                None => Err(ProviderError::transient(
                    "dashscope succeeded without a video_url",
                )),
            },
            "FAILED" | "CANCELED" => {
                let code = self.code.unwrap_or_default();
                let message = format!(
                    "dashscope task {} {code}: {}",
                    self.task_status,
                    self.message.unwrap_or_default()
                );
                if is_moderation(&code) {
                    return Ok(TaskStatus::Failed(ProviderError::Moderation(message)));
                }
                Ok(TaskStatus::Failed(task_failure(message)))
            }
            other => Err(ProviderError::transient(format!(
                "dashscope unknown task status {other:?}"
            ))),
        }
    }
}

/// `{model, input: {prompt, img_url}, parameters: {...the row's fields}}`.
fn create_body(spec: &JobSpec) -> Value {
    let mut parameters: Map<String, Value> = request_fields(spec);
    let mut input = Map::new();
    for field in ["prompt", "img_url", "negative_prompt"] {
        if let Some(value) = parameters.remove(field) {
            input.insert(field.into(), value);
        }
    }
    json!({ "model": spec.model, "input": input, "parameters": parameters })
}

impl Dashscope {
    pub fn new(config: AccountConfig) -> Result<Self, ProviderError> {
        Ok(Dashscope {
            api: Api::new(config)?,
        })
    }

    async fn create(&self, spec: &JobSpec) -> Result<String, ProviderError> {
        let request = self
            .api
            .post(CREATE)
            .header("X-DashScope-Async", "enable")
            .json(&create_body(spec));
        let answer = self.api.send(request, Call::Create).await?;
        let created: TaskAnswer = read_dashscope(&answer, Call::Create)?;
        match created.output.task_id {
            task_id if !task_id.is_empty() => Ok(task_id),
            _ => Err(ProviderError::UnknownOutcome(
                "dashscope accepted the create without a task_id".into(),
            )),
        }
    }

    async fn task(&self, task_id: &str) -> Result<TaskOutput, ProviderError> {
        let answer = self
            .api
            .send(self.api.get(&format!("{TASKS}/{task_id}")), Call::Query)
            .await?;
        Ok(read_dashscope::<TaskAnswer>(&answer, Call::Query)?.output)
    }

    /// The account's tasks since `since_s`, each with its record's prompt (the list names
    /// only the model). Complete only if the list held its `total` (DashScope's largest page
    /// is undocumented), reached back to `since_s` within DashScope's 24 hours, and every
    /// candidate's record showed its prompt: a task whose prompt cannot be read is offered
    /// to no job, and proves no job's create absent either.
    async fn list_since(&self, since_s: u64) -> Result<RecentTasks, ProviderError> {
        let mut listed: Vec<Listed> = Vec::new();
        let mut total = None;
        for page in 1..=MAX_LIST_PAGES {
            let request = self.api.get(&format!("{TASKS}/")).query(&[
                ("page_no", page.to_string()),
                ("page_size", PAGE_SIZE.to_string()),
            ]);
            let answer = self.api.send(request, Call::Query).await?;
            let list: TaskList = read_dashscope(&answer, Call::Query)?;
            total = Some(list.total);
            if list.data.is_empty() {
                break;
            }
            for task in list.data {
                if !listed.iter().any(|seen| seen.task_id == task.task_id) {
                    listed.push(task);
                }
            }
            if total.is_some_and(|total| listed.len() >= total) {
                break;
            }
        }
        let mut complete = total.is_some_and(|total| listed.len() >= total)
            && since_s + LISTED_S > crate::http::now_s();
        let mut tasks = Vec::new();
        for task in listed
            .into_iter()
            .filter(|task| task.gmt_create / 1000 >= since_s)
        {
            let record = self.task(&task.task_id).await?;
            let Some(prompt) = record.orig_prompt.as_deref() else {
                complete = false;
                continue;
            };
            tasks.push(ProviderTask {
                echo: echo(&task.model_name, Some(prompt)),
                task_id: task.task_id,
                created_s: task.gmt_create / 1000,
            });
        }
        Ok(RecentTasks { tasks, complete })
    }

    async fn cancel_pending(&self, task_id: &str) -> Result<CancelAnswer, ProviderError> {
        let request = self.api.post(&format!("{TASKS}/{task_id}/cancel"));
        let answer = self.api.send(request, Call::Query).await?;
        match read_dashscope::<Value>(&answer, Call::Query) {
            Ok(_) => Ok(CancelAnswer::Requested),
            // `UnsupportedOperation`: the task is no longer pending (running: it finishes).
            Err(ProviderError::Invalid(_)) => Ok(CancelAnswer::AlreadyEnded),
            Err(err) => Err(err),
        }
    }
}

/// What DashScope's records show of a create: the list's model and the record's prompt.
fn echo(model: &str, prompt: Option<&str>) -> TaskEcho {
    let mut echo = TaskEcho::from([("model".to_owned(), model.to_owned())]);
    if let Some(prompt) = prompt {
        echo.insert("prompt".into(), prompt.to_owned());
    }
    echo
}

impl Provider for Dashscope {
    fn kind(&self) -> ProviderKind {
        ProviderKind::Dashscope
    }

    fn submit<'a>(
        &'a self,
        submission: Submission<'a>,
    ) -> BoxFuture<'a, Result<String, ProviderError>> {
        self.create(submission.spec).boxed()
    }

    /// DashScope calls nobody back (its EventBridge events are an Alibaba Cloud product of
    /// their own): jobs are polled.
    fn parse_callback(
        &self,
        _headers: &HeaderMap,
        _body: &[u8],
        _now_s: u64,
    ) -> Result<CallbackHint, CallbackError> {
        Err(CallbackError::Malformed(
            "DashScope sends no callbacks".into(),
        ))
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
        self.cancel_pending(task_id).boxed()
    }

    fn lists_tasks(&self) -> bool {
        true
    }

    fn echo(&self, spec: &JobSpec) -> TaskEcho {
        echo(&spec.model, Some(&spec.prompt))
    }

    fn recent_tasks(&self, since_s: u64) -> BoxFuture<'_, Result<RecentTasks, ProviderError>> {
        self.list_since(since_s).boxed()
    }

    /// A query of a task nobody made (free) shows whether the key is accepted (DashScope
    /// answers `UNKNOWN` for it).
    fn check_account(&self) -> BoxFuture<'_, Result<AccountCheck, ProviderError>> {
        async move { probed(self.task(PROBE_TASK_ID).await.map(|_| TaskStatus::Running)) }.boxed()
    }

    fn api(&self) -> &Api {
        &self.api
    }
}
