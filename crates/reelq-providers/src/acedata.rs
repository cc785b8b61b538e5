//! The AceData video APIs (`docs/providers.md` section 2): `POST /{family}/videos` (the
//! model's row names the family: `sora`, `veo`, `kling`, ...) answered at once with a task id
//! when a `callback_url` is given, and held open until the video is done without one;
//! `POST /{family}/tasks` to retrieve; `{success: false, error: {code, message}}` errors;
//! `accept: application/json` on every call, as the reference documents.
//!
//! Read from: docs.acedata.cloud/api-reference/sora/sora-videos (fields, values, the held
//! create), docs.acedata.cloud/api-reference/veo/veo-videos and the Kling Videos document
//! (the per-family paths and `action`), and AceData's published OpenAPI documents
//! (AceDataCloud/Docs `openapi/{sora,kling}.json`, vendored in
//! `tests/conformance/specs/acedata.openapi.json`): a Kling result is flat (`state:
//! "succeed"`, `video_url` at the top) where Sora's and Veo's list `data[]` (`state:
//! "succeeded"`); a task record is `{id, created_at, request, response, finished_at, ...}`,
//! and a task AceData does not have is `{}`, read as "not yet" (asked again, up to the paid
//! attempts) rather than as a running task.
//!
//! | answer                                            | class              |
//! |---------------------------------------------------|--------------------|
//! | 400 `token_mismatched`, `api_not_implemented`     | `Invalid`          |
//! | 400 whose code or message names moderation        | `Moderation`       |
//! | 401 `invalid_token`                               | `Auth`             |
//! | 403 `used_up` ("Your balance is not sufficient"; the official SDK's `InsufficientBalanceError`); 402 | `Credits` |
//! | 404                                               | `Invalid`          |
//! | 429 `too_many_requests`                           | `RateLimited`      |
//! | 500 `api_error` (the provider's own error body)   | query: `Transient`; create: `ServerError` (unknown outcome) |
//! | query: other 5xx                                  | `Transient`        |
//! | create: no answer, reset, unreadable 2xx, 502, 503, 504, 500 without `{error}` | `UnknownOutcome` |
//!
//! Proof of refusal on a create (retried or failed, never `uncertain`): the 4xx rows. No 5xx
//! is, not even a 500 in AceData's own `{success: false, error}` body: its server may fail
//! after accepting (and billing) the task.
//! | task `state: failed`                              | `GenerationFailed` (`Moderation` if its error names it) |

use std::time::Duration;

use futures_util::{FutureExt, future::BoxFuture};
use reelq_core::{JobSpec, ProviderKind};
use reqwest::header::{ACCEPT, HeaderMap};
use serde::Deserialize;
use serde_json::json;

use crate::{
    AccountCheck, AccountConfig, CallbackError, CallbackHint, Provider, ProviderError, Submission,
    TaskStatus,
    http::{Api, Call, ErrorDetail, read_json, task_failure, unreadable},
    provider::{PROBE_TASK_ID, probed},
    request::{null_as_default, request_fields},
};

/// How long a create without a callback URL may stay open: AceData answers it when the
/// video is done, "1-2 minutes" by its document, so well past the account's usual timeout.
const HELD_CREATE_TIMEOUT: Duration = Duration::from_secs(300);

/// The family of a row that names none (the contract's default names `veo`), and the one
/// the account probe asks: AceData's Kling document is the one that documents the tasks
/// endpoint's answers, a missing task's included.
const DEFAULT_FAMILY: &str = "kling";

/// The API family a job's model is served under (`/{family}/videos`, `/{family}/tasks`).
fn family(spec: &JobSpec) -> String {
    spec.provider_request()
        .family
        .clone()
        .unwrap_or_else(|| DEFAULT_FAMILY.to_owned())
}

/// One AceData account.
pub struct Acedata {
    api: Api,
}

#[derive(Deserialize)]
struct Created {
    #[serde(default)]
    task_id: Option<String>,
}

/// The result shape: the answer to a finished task, and the callback body. Sora and Veo
/// list their videos in `data`; Kling answers flat, its one video's fields at the top.
#[derive(Deserialize)]
struct TaskResult {
    #[serde(default, deserialize_with = "null_as_default")]
    success: bool,
    task_id: String,
    #[serde(default, deserialize_with = "null_as_default")]
    data: Vec<Video>,
    #[serde(flatten)]
    flat: Video,
    #[serde(default)]
    error: Option<ErrorDetail>,
}

impl TaskResult {
    /// The video the result is about: the first listed, or the flat one.
    fn video(self) -> (Video, bool, Option<ErrorDetail>) {
        let video = self.data.into_iter().next().unwrap_or(self.flat);
        (video, self.success, self.error)
    }
}

/// Whether a task state says the video is ready (`succeeded`; Kling's `succeed`).
fn succeeded(state: Option<&str>) -> bool {
    matches!(state, Some("succeeded" | "succeed"))
}

#[derive(Deserialize, Default)]
struct Video {
    #[serde(default)]
    video_url: Option<String>,
    #[serde(default)]
    state: Option<String>,
}

/// What `/{family}/tasks` retrieves: the task record, with its `response` once finished;
/// `{}` for a task AceData does not have.
#[derive(Deserialize)]
struct Retrieved {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    response: Option<TaskResult>,
}

impl Acedata {
    pub fn new(config: AccountConfig) -> Result<Self, ProviderError> {
        Ok(Acedata {
            api: Api::new(config)?,
        })
    }

    async fn create(
        &self,
        spec: &JobSpec,
        callback_url: Option<&str>,
    ) -> Result<String, ProviderError> {
        let mut request = self
            .api
            .post(&format!("/{}/videos", family(spec)))
            .header(ACCEPT, "application/json")
            .json(&create_body(spec, callback_url));
        if callback_url.is_none() {
            request = request.timeout(HELD_CREATE_TIMEOUT);
        }
        let answer = self.api.send(request, Call::Create).await?;
        let created: Created = read_json(ProviderKind::Acedata, &answer, Call::Create)?;
        created.task_id.filter(|id| !id.is_empty()).ok_or_else(|| {
            unreadable(
                Call::Create,
                None,
                "acedata create answered without a task_id".into(),
            )
        })
    }

    /// The task's status, or `None` for a task AceData does not have (`{}`).
    async fn retrieve(
        &self,
        family: &str,
        task_id: &str,
    ) -> Result<Option<TaskStatus>, ProviderError> {
        let request = self
            .api
            .post(&format!("/{family}/tasks"))
            .header(ACCEPT, "application/json")
            .json(&json!({ "id": task_id, "action": "retrieve" }));
        let answer = self.api.send(request, Call::Query).await?;
        let retrieved: Retrieved = read_json(ProviderKind::Acedata, &answer, Call::Query)?;
        // A record with no response yet is a task still running (docs/providers.md's choice).
        let result = match (retrieved.id, retrieved.response) {
            (None, None) => return Ok(None),
            (_, None) => return Ok(Some(TaskStatus::Running)),
            (_, Some(result)) => result,
        };
        let (video, success, error) = result.video();
        let state = video.state.as_deref();
        Ok(Some(match (success, state) {
            (true, state) if succeeded(state) => match video.video_url {
                Some(result_url) => TaskStatus::Succeeded { result_url },
                None => {
                    return Err(ProviderError::transient(
                        "acedata succeeded without a video_url",
                    ));
                }
            },
            (false, _) | (_, Some("failed")) => {
                let why = error.map(|e| e.describe()).unwrap_or_default();
                TaskStatus::Failed(task_failure(format!("acedata task failed {why}")))
            }
            _ => TaskStatus::Running,
        }))
    }
}

fn create_body(spec: &JobSpec, callback_url: Option<&str>) -> serde_json::Value {
    let mut body = request_fields(spec);
    body.insert("model".into(), json!(spec.model));
    if let Some(character) = &spec.character {
        body.insert("character_url".into(), json!(character.url));
        if let Some(start) = character.start {
            body.insert("character_start".into(), json!(start));
        }
        if let Some(end) = character.end {
            body.insert("character_end".into(), json!(end));
        }
    }
    // Without a callback URL AceData holds the create open until the video is done (1-2
    // minutes, its document says) and answers with the result, task id included.
    if let Some(url) = callback_url {
        body.insert("callback_url".into(), json!(url));
    }
    serde_json::Value::Object(body)
}

impl Provider for Acedata {
    fn kind(&self) -> ProviderKind {
        ProviderKind::Acedata
    }

    fn submit<'a>(
        &'a self,
        submission: Submission<'a>,
    ) -> BoxFuture<'a, Result<String, ProviderError>> {
        self.create(submission.spec, submission.callback_url)
            .boxed()
    }

    /// AceData does not sign callbacks: the per-job token in the URL authenticates them, and
    /// the worker confirms by retrieving the task.
    fn parse_callback(
        &self,
        _headers: &HeaderMap,
        body: &[u8],
        _now_s: u64,
    ) -> Result<CallbackHint, CallbackError> {
        let result: TaskResult = serde_json::from_slice(body)
            .map_err(|err| CallbackError::Malformed(err.to_string()))?;
        let task_id = result.task_id.clone();
        let (video, success, _) = result.video();
        let state = video.state.as_deref();
        CallbackHint::new(
            task_id,
            success && !(succeeded(state) || state == Some("failed")),
        )
    }

    fn query<'a>(
        &'a self,
        spec: &'a JobSpec,
        task_id: &'a str,
    ) -> BoxFuture<'a, Result<TaskStatus, ProviderError>> {
        async move {
            self.retrieve(&family(spec), task_id).await?.ok_or_else(|| {
                // Asked again, up to the paid attempts: a task just created may not show yet.
                ProviderError::transient(format!("acedata has no task {task_id} (yet)"))
            })
        }
        .boxed()
    }

    /// AceData documents no balance endpoint: a retrieve of a task no account has shows
    /// whether the key is accepted.
    fn check_account(&self) -> BoxFuture<'_, Result<AccountCheck, ProviderError>> {
        async move {
            let answer = self.retrieve(DEFAULT_FAMILY, PROBE_TASK_ID).await;
            // "No such task" is what an accepted key is told.
            probed(answer.map(|status| status.unwrap_or(TaskStatus::Running)))
        }
        .boxed()
    }

    fn api(&self) -> &Api {
        &self.api
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use reelq_core::Secret;

    use super::*;

    #[test]
    fn null_where_a_value_was_expected_reads_as_its_default() {
        let result: TaskResult =
            serde_json::from_str(r#"{"success":null,"task_id":"t","data":null}"#).unwrap();
        assert!(!result.success && result.data.is_empty());
    }

    fn acedata() -> Acedata {
        Acedata::new(AccountConfig {
            base_url: "http://127.0.0.1:1".into(),
            api_key: Secret::new("k"),
            request_timeout: Duration::from_secs(1),
            webhook_secret: None,
        })
        .unwrap()
    }

    #[test]
    fn a_callback_names_its_task_and_a_garbled_one_is_refused() {
        let body = br#"{"success":true,"task_id":"t1","trace_id":"x","data":[{"id":"t1","video_url":"https://v/1.mp4","state":"succeeded"}]}"#;
        let hint = acedata()
            .parse_callback(&HeaderMap::new(), body, 0)
            .unwrap();
        assert_eq!((hint.task_id.as_str(), hint.progress_only), ("t1", false));
        let failed = br#"{"success":false,"task_id":"t2","error":{"code":"x","message":"y"}}"#;
        assert!(
            !acedata()
                .parse_callback(&HeaderMap::new(), failed, 0)
                .unwrap()
                .progress_only
        );
        let err = acedata()
            .parse_callback(&HeaderMap::new(), b"[]", 0)
            .unwrap_err();
        assert!(matches!(err, CallbackError::Malformed(_)));
    }
}
