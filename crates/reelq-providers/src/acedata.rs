//! The AceData video APIs (`docs/providers.md` section 2): `POST /{family}/videos` (the
//! model's row names the family: `sora`, `veo`, `kling`, ...) answered at once with a task id
//! when a `callback_url` is given, and held open until the video is done without one;
//! `POST /{family}/tasks` to retrieve; `{success: false, error: {code, message}}` errors;
//! `accept: application/json` on every call, as the reference documents.
//!
//! Read from: docs.acedata.cloud/api-reference/sora/sora-videos (fields, values, the held
//! create), docs.acedata.cloud/api-reference/veo/veo-videos and the Kling Videos document
//! (the per-family paths and `action`).
//!
//! | answer                                            | class              |
//! |---------------------------------------------------|--------------------|
//! | 400 `token_mismatched`, `api_not_implemented`     | `Invalid`          |
//! | 400 whose code or message names moderation        | `Moderation`       |
//! | 401 `invalid_token`                               | `Auth`             |
//! | 402 (credits; undocumented, assumed)              | `Credits`          |
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
    AccountCheck, AccountConfig, CallbackError, CallbackHint, Download, Provider, ProviderError,
    Submission, TaskStatus,
    http::{Api, Call, ErrorDetail, read_json, task_failure, unreadable},
    provider::{PROBE_TASK_ID, probed},
    request::{null_as_default, request_fields},
};

/// How long a create without a callback URL may stay open: AceData answers it when the
/// video is done, "1-2 minutes" by its document, so well past the account's usual timeout.
const HELD_CREATE_TIMEOUT: Duration = Duration::from_secs(300);

/// The model family of the built-in rows: `/sora/videos`, `/sora/tasks`.
const DEFAULT_FAMILY: &str = "sora";

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

/// The result shape: the answer to a finished task, and the callback body.
#[derive(Deserialize)]
struct TaskResult {
    #[serde(default, deserialize_with = "null_as_default")]
    success: bool,
    task_id: String,
    #[serde(default, deserialize_with = "null_as_default")]
    data: Vec<Video>,
    #[serde(default)]
    error: Option<ErrorDetail>,
}

#[derive(Deserialize)]
struct Video {
    #[serde(default)]
    video_url: Option<String>,
    #[serde(default)]
    state: Option<String>,
}

/// What `/sora/tasks` retrieves: the task, with its `response` once finished.
#[derive(Deserialize)]
struct Retrieved {
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

    async fn retrieve(&self, family: &str, task_id: &str) -> Result<TaskStatus, ProviderError> {
        let request = self
            .api
            .post(&format!("/{family}/tasks"))
            .header(ACCEPT, "application/json")
            .json(&json!({ "id": task_id, "action": "retrieve" }));
        let answer = self.api.send(request, Call::Query).await?;
        let retrieved: Retrieved = read_json(ProviderKind::Acedata, &answer, Call::Query)?;
        // A task with no response yet is still running (docs/providers.md's choice).
        let Some(result) = retrieved.response else {
            return Ok(TaskStatus::Running);
        };
        let video = result.data.into_iter().next();
        let state = video.as_ref().and_then(|v| v.state.as_deref());
        match (result.success, state) {
            (true, Some("succeeded")) => match video.and_then(|v| v.video_url) {
                Some(result_url) => Ok(TaskStatus::Succeeded { result_url }),
                None => Err(ProviderError::transient(
                    "acedata succeeded without a video_url",
                )),
            },
            (false, _) | (_, Some("failed")) => {
                let why = result.error.map(|e| e.describe()).unwrap_or_default();
                Ok(TaskStatus::Failed(task_failure(format!(
                    "acedata task failed {why}"
                ))))
            }
            _ => Ok(TaskStatus::Running),
        }
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
        let state = result.data.first().and_then(|video| video.state.as_deref());
        CallbackHint::new(
            result.task_id,
            result.success && !matches!(state, Some("succeeded" | "failed")),
        )
    }

    fn query<'a>(
        &'a self,
        spec: &'a JobSpec,
        task_id: &'a str,
    ) -> BoxFuture<'a, Result<TaskStatus, ProviderError>> {
        async move { self.retrieve(&family(spec), task_id).await }.boxed()
    }

    /// AceData documents no balance endpoint: a retrieve of a task no account has shows
    /// whether the key is accepted.
    fn check_account(&self) -> BoxFuture<'_, Result<AccountCheck, ProviderError>> {
        async move { probed(self.retrieve(DEFAULT_FAMILY, PROBE_TASK_ID).await) }.boxed()
    }

    fn download<'a>(
        &'a self,
        result_url: &'a str,
    ) -> BoxFuture<'a, Result<Download, ProviderError>> {
        self.api.download(result_url).boxed()
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
