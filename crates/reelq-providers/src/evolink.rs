//! The evolink unified task API (`docs/providers.md` section 3): `POST /v1/videos/generations`,
//! `GET /v1/tasks/{id}`, one task shape for answers and callbacks, HTTP-status errors with
//! `{error: {code, message, type}}`.
//!
//! | answer                                       | class              |
//! |----------------------------------------------|--------------------|
//! | 400, 404, 422                                | `Invalid`          |
//! | 400/422 whose code or message names moderation | `Moderation`     |
//! | 401, 403                                     | `Auth`             |
//! | 402                                          | `Credits`          |
//! | 429 (honouring `Retry-After`)                | `RateLimited`      |
//! | 500 with evolink's `{error}` body            | query: `Transient`; create: `ServerError` (unknown outcome) |
//! | query: other 5xx                             | `Transient`        |
//! | create: no answer, reset, unreadable 2xx, 502, 503, 504, 500 without `{error}` | `UnknownOutcome` |
//!
//! Proof of refusal on a create: the 4xx rows. evolink documents 502/503 as retryable, but a
//! gateway in front of it can answer them after the create was accepted, and its own server
//! can answer 500 after accepting, so reelq treats every 5xx as an unknown outcome.
//! | task `status: failed` or `cancelled`         | `GenerationFailed` (`Moderation` if its error names it) |

use futures_util::{FutureExt, future::BoxFuture};
use reelq_core::{JobSpec, ProviderKind};
use reqwest::header::HeaderMap;
use serde::Deserialize;
use serde_json::json;

use crate::{
    AccountCheck, AccountConfig, CallbackError, CallbackHint, Provider, ProviderError, Submission,
    TaskStatus,
    http::{Api, Call, ErrorDetail, read_json, task_failure},
    provider::{PROBE_TASK_ID, probed},
    request::{null_as_default, request_fields},
};

/// One evolink account.
pub struct Evolink {
    api: Api,
}

/// A task, as create, query and callback all show it.
#[derive(Deserialize)]
struct Task {
    id: String,
    status: String,
    #[serde(default, deserialize_with = "null_as_default")]
    results: Vec<String>,
    #[serde(default)]
    error: Option<ErrorDetail>,
}

impl Task {
    fn into_status(self) -> Result<TaskStatus, ProviderError> {
        match self.status.as_str() {
            "pending" | "processing" => Ok(TaskStatus::Running),
            "completed" => match self.results.into_iter().next() {
                Some(result_url) => Ok(TaskStatus::Succeeded { result_url }),
                None => Err(ProviderError::transient(
                    "evolink completed without results",
                )),
            },
            "failed" | "cancelled" => {
                let why = self.error.map(|e| e.describe()).unwrap_or_default();
                Ok(TaskStatus::Failed(task_failure(format!(
                    "evolink task {} {why}",
                    self.status
                ))))
            }
            other => Err(ProviderError::transient(format!(
                "evolink unknown task status {other:?}"
            ))),
        }
    }
}

impl Evolink {
    pub fn new(config: AccountConfig) -> Result<Self, ProviderError> {
        Ok(Evolink {
            api: Api::new(config)?,
        })
    }

    async fn create(
        &self,
        spec: &JobSpec,
        callback_url: Option<&str>,
    ) -> Result<String, ProviderError> {
        let request = self
            .api
            .post("/v1/videos/generations")
            .json(&create_body(spec, callback_url));
        let answer = self.api.send(request, Call::Create).await?;
        let task: Task = read_json(ProviderKind::Evolink, &answer, Call::Create)?;
        Ok(task.id)
    }

    async fn task(&self, task_id: &str) -> Result<TaskStatus, ProviderError> {
        let request = self.api.get(&format!("/v1/tasks/{task_id}"));
        let answer = self.api.send(request, Call::Query).await?;
        read_json::<Task>(ProviderKind::Evolink, &answer, Call::Query)?.into_status()
    }
}

fn create_body(spec: &JobSpec, callback_url: Option<&str>) -> serde_json::Value {
    let mut body = request_fields(spec);
    body.insert("model".into(), json!(spec.model));
    if let Some(url) = callback_url {
        body.insert("callback_url".into(), json!(url));
    }
    serde_json::Value::Object(body)
}

impl Provider for Evolink {
    fn kind(&self) -> ProviderKind {
        ProviderKind::Evolink
    }

    fn submit<'a>(
        &'a self,
        submission: Submission<'a>,
    ) -> BoxFuture<'a, Result<String, ProviderError>> {
        self.create(submission.spec, submission.callback_url)
            .boxed()
    }

    /// evolink does not sign callbacks: the per-job token in the URL authenticates them.
    fn parse_callback(
        &self,
        _headers: &HeaderMap,
        body: &[u8],
        _now_s: u64,
    ) -> Result<CallbackHint, CallbackError> {
        let task: Task = serde_json::from_slice(body)
            .map_err(|err| CallbackError::Malformed(err.to_string()))?;
        CallbackHint::new(
            task.id,
            matches!(task.status.as_str(), "pending" | "processing"),
        )
    }

    fn query<'a>(
        &'a self,
        _spec: &'a JobSpec,
        task_id: &'a str,
    ) -> BoxFuture<'a, Result<TaskStatus, ProviderError>> {
        self.task(task_id).boxed()
    }

    /// No balance endpoint is used: a query of a task no account has shows whether the key
    /// is accepted.
    fn check_account(&self) -> BoxFuture<'_, Result<AccountCheck, ProviderError>> {
        async move { probed(self.task(PROBE_TASK_ID).await) }.boxed()
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
    fn null_results_read_as_none_yet() {
        let task: Task =
            serde_json::from_str(r#"{"id":"t","status":"processing","results":null}"#).unwrap();
        assert_eq!(task.into_status().unwrap(), TaskStatus::Running);
    }

    #[test]
    fn a_progress_callback_is_told_apart_from_a_completion() {
        let evolink = Evolink::new(AccountConfig {
            base_url: "http://127.0.0.1:1".into(),
            api_key: Secret::new("k"),
            request_timeout: Duration::from_secs(1),
            webhook_secret: None,
        })
        .unwrap();
        let parse = |status: &str| {
            let body = format!(r#"{{"id":"task-unified-1-a","status":"{status}","progress":50}}"#);
            evolink
                .parse_callback(&HeaderMap::new(), body.as_bytes(), 0)
                .unwrap()
        };
        assert!(parse("processing").progress_only);
        let done = parse("completed");
        assert_eq!(
            (done.task_id.as_str(), done.progress_only),
            ("task-unified-1-a", false)
        );
        assert!(!parse("failed").progress_only);
    }
}
