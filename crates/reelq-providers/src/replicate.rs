//! Replicate's predictions API (`docs/providers.md` section 5), for any video model it hosts (`owner/name`), read from
//! Replicate's HTTP API reference (replicate.com/docs/reference/http), its webhook pages
//! (replicate.com/docs/topics/webhooks: "receive", "setup", "verify") and each model's API
//! page (`replicate.com/<owner>/<name>/api`, e.g. `google/veo-3-fast`, `kwaivgi/kling-v2.1`):
//!
//! - create: `POST /v1/models/{owner}/{name}/predictions` with `{"input": {...},
//!   "webhook", "webhook_events_filter": ["completed"]}` (only the ending is asked for;
//!   Replicate always sends `start` too, which reads as progress); a job's deadline becomes
//!   `Cancel-After` (Replicate cancels the prediction itself past it);
//! - status: `GET /v1/predictions/{id}`: `starting | processing | succeeded | failed |
//!   canceled | aborted`, `output` a URI (or a list of them), `error` a message;
//! - webhooks: the body is the prediction, signed per Standard Webhooks with the account's
//!   secret (`GET /v1/webhooks/default/secret`, a `whsec_` value): set it as the account's
//!   `webhook_secret`, and every callback must carry a valid signature besides the per-job
//!   token in its URL;
//! - the list `GET /v1/predictions` (`results`, newest first, `next` a cursor URL) and a
//!   prediction's `input` and `model` echo the create, for reconciling `uncertain` jobs;
//! - `GET /v1/account` probes the key for free;
//! - cancel: `POST /v1/predictions/{id}/cancel`, answered with the prediction; it then ends
//!   `canceled` (reelq's cancel of a submitted job: the job ends `cancelled` once a poll
//!   shows that).
//!
//! Output files are deleted about an hour after the prediction ends ("input and output
//! (including any files) are automatically deleted after an hour"): the worker fetches as
//! soon as the poll or the webhook says succeeded, and an expired URL is queried again.
//!
//! | answer                                          | class              |
//! |-------------------------------------------------|--------------------|
//! | 400, 404, 422 (`{"title","detail","status"}`)   | `Invalid`          |
//! | 4xx whose title or detail names moderation or sensitive content | `Moderation` |
//! | 401, 403                                        | `Auth`             |
//! | 402 (insufficient credit)                       | `Credits`          |
//! | 429 (honouring `Retry-After`)                   | `RateLimited`      |
//! | 500 with Replicate's problem body               | query: `Transient`; create: `ServerError` (unknown outcome) |
//! | query: other 5xx                                | `Transient`        |
//! | create: no answer, reset, unreadable 2xx, 502, 503, 504, 500 without a problem body | `UnknownOutcome` |
//! | prediction `failed`, `canceled` or `aborted`    | `GenerationFailed` (`Moderation` if its error says the content was flagged, Replicate's E005) |
//!
//! Proof of refusal on a create: the 4xx rows; anything else, a 500 carrying Replicate's own
//! problem body too, may follow a prediction Replicate accepted (and bills).
//!
//! Assumed where the pages are silent: the list's results carry `input` (the reference's
//! example does; without it only `model` can match, and a reconcile then finds several
//! candidates and leaves the job for an operator); an aborted prediction is a failed one.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures_util::{FutureExt, future::BoxFuture};
use reelq_core::{JobSpec, ProviderKind};
use reqwest::header::HeaderMap;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::{
    AccountCheck, AccountConfig, CallbackError, CallbackHint, CancelAnswer, Provider,
    ProviderError, ProviderTask, RecentTasks, Submission, TaskEcho, TaskStatus, WebhookKey,
    http::{Answer, Api, Call, ErrorWords, read_answer, task_failure},
    request::{echo_of, request_fields},
};

/// One Replicate account.
pub struct Replicate {
    api: Api,
    /// The account's webhook signing secret; when set, every callback must be signed.
    webhook_key: Option<WebhookKey>,
}

/// A prediction, as create, status, list and webhook all show it.
#[derive(Deserialize)]
struct Prediction {
    id: String,
    status: String,
    #[serde(default)]
    model: Option<String>,
    #[serde(default)]
    input: Option<Map<String, Value>>,
    #[serde(default)]
    output: Option<Output>,
    #[serde(default)]
    error: Option<Value>,
    #[serde(default)]
    created_at: Option<String>,
}

/// A video model's output: one URI, or (for some models) a list of them.
#[derive(Deserialize)]
#[serde(untagged)]
enum Output {
    One(String),
    Many(Vec<String>),
}

/// Replicate's error body (RFC 7807 problem details).
#[derive(Deserialize, Default)]
struct Problem {
    #[serde(default)]
    title: Option<String>,
    #[serde(default)]
    detail: Option<String>,
}

/// A page of `GET /v1/predictions`.
#[derive(Deserialize)]
struct PredictionList {
    results: Vec<Prediction>,
    #[serde(default)]
    next: Option<String>,
}

/// Pages of the list read at most (100 a page): an hour of a busy account, bounded so a
/// reconcile pass stays cheap.
const MAX_LIST_PAGES: usize = 20;

/// Replicate cancels a prediction past its `Cancel-After`; shorter than this is not worth
/// sending (the job would expire before a generation could finish anyway).
const MIN_CANCEL_AFTER: Duration = Duration::from_secs(5);

impl Prediction {
    fn into_status(self) -> Result<TaskStatus, ProviderError> {
        match self.status.as_str() {
            "starting" | "processing" => Ok(TaskStatus::Running),
            "succeeded" => {
                let url = match self.output {
                    Some(Output::One(url)) => Some(url),
                    Some(Output::Many(urls)) => urls.into_iter().next(),
                    None => None,
                };
                url.map(|result_url| TaskStatus::Succeeded { result_url })
                    .ok_or_else(|| ProviderError::transient("replicate succeeded without output"))
            }
            "failed" | "canceled" | "aborted" => {
                let why = match &self.error {
                    Some(Value::String(message)) => message.clone(),
                    Some(other) => other.to_string(),
                    None => String::new(),
                };
                Ok(TaskStatus::Failed(task_failure(format!(
                    "replicate prediction {}: {why}",
                    self.status
                ))))
            }
            other => Err(ProviderError::transient(format!(
                "replicate unknown prediction status {other:?}"
            ))),
        }
    }

    /// The prediction as the provider's record of a create: its model and input, echoed.
    fn into_task(self) -> ProviderTask {
        let created_s = self
            .created_at
            .as_deref()
            .and_then(|at| humantime::parse_rfc3339_weak(at).ok())
            .and_then(|at| at.duration_since(UNIX_EPOCH).ok())
            .map_or(0, |since| since.as_secs());
        let model = json!(self.model.unwrap_or_default());
        ProviderTask {
            task_id: self.id,
            created_s,
            echo: echo_of(&model, &self.input.unwrap_or_default()),
        }
    }
}

/// Reads a 2xx answer as `T`, or classes Replicate's problem answer (`read_answer`: a 4xx
/// naming moderation is `Moderation`, a 500 carrying Replicate's own problem body
/// `Transient` on a query and a `ServerError` on a create).
fn read<T: serde::de::DeserializeOwned>(answer: &Answer, call: Call) -> Result<T, ProviderError> {
    read_answer(ProviderKind::Replicate, answer, call, |body| {
        let problem: Problem = serde_json::from_str(body).unwrap_or_default();
        ErrorWords {
            own: problem.title.is_some() || problem.detail.is_some(),
            credits: false,
            words: format!(
                "{}: {}",
                problem.title.unwrap_or_default(),
                problem.detail.unwrap_or_default()
            ),
        }
    })
}

impl Replicate {
    pub fn new(config: AccountConfig) -> Result<Self, ProviderError> {
        let webhook_key = config
            .webhook_secret
            .as_ref()
            .map(|secret| WebhookKey::parse(secret.expose()))
            .transpose()
            .map_err(|err| ProviderError::Invalid(format!("replicate webhook_secret: {err}")))?;
        Ok(Replicate {
            api: Api::new(config)?,
            webhook_key,
        })
    }

    async fn create(
        &self,
        spec: &JobSpec,
        callback_url: Option<&str>,
    ) -> Result<String, ProviderError> {
        let mut request = self
            .api
            .post(&format!("/v1/models/{}/predictions", spec.model))
            .json(&create_body(spec, callback_url));
        if let Some(left) = spec.deadline_ms.and_then(time_left)
            && left >= MIN_CANCEL_AFTER
        {
            request = request.header("Cancel-After", format!("{}s", left.as_secs()));
        }
        let answer = self.api.send(request, Call::Create).await?;
        let prediction: Prediction = read(&answer, Call::Create)?;
        Ok(prediction.id)
    }

    async fn prediction(&self, id: &str) -> Result<Prediction, ProviderError> {
        let request = self.api.get(&format!("/v1/predictions/{id}"));
        let answer = self.api.send(request, Call::Query).await?;
        read(&answer, Call::Query)
    }

    /// `GET /v1/predictions`, following `next`, until a page reaches back past `since_s`
    /// or the list ends.
    async fn list_since(&self, since_s: u64) -> Result<RecentTasks, ProviderError> {
        let mut tasks: Vec<ProviderTask> = Vec::new();
        let mut next = Some(self.api.url("/v1/predictions"));
        let mut complete = false;
        for _ in 0..MAX_LIST_PAGES {
            let Some(url) = next.take() else {
                complete = true;
                break;
            };
            // The cursor URL must be the account's own API host: it gets the key.
            if !url.starts_with(&self.api.url("/")) {
                return Err(ProviderError::transient(
                    "replicate list: a next page on another host",
                ));
            }
            let answer = self.api.send(self.api.get_url(&url), Call::Query).await?;
            let page: PredictionList = read(&answer, Call::Query)?;
            tasks.extend(page.results.into_iter().map(Prediction::into_task));
            match tasks.last() {
                Some(last) if last.created_s >= since_s => next = page.next,
                _ => {
                    complete = true;
                    break;
                }
            }
        }
        tasks.retain(|task| task.created_s >= since_s);
        Ok(RecentTasks { tasks, complete })
    }
}

/// How long until `deadline_ms` (unix ms), if it is still ahead.
fn time_left(deadline_ms: u64) -> Option<Duration> {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).ok()?;
    Duration::from_millis(deadline_ms).checked_sub(now)
}

fn create_body(spec: &JobSpec, callback_url: Option<&str>) -> Value {
    let mut body = json!({ "input": request_fields(spec) });
    if let Some(url) = callback_url {
        body["webhook"] = json!(url);
        body["webhook_events_filter"] = json!(["completed"]);
    }
    body
}

impl Provider for Replicate {
    fn kind(&self) -> ProviderKind {
        ProviderKind::Replicate
    }

    fn submit<'a>(
        &'a self,
        submission: Submission<'a>,
    ) -> BoxFuture<'a, Result<String, ProviderError>> {
        self.create(submission.spec, submission.callback_url)
            .boxed()
    }

    /// The per-job URL token authenticates the webhook; with the account's secret set, its
    /// Standard Webhooks signature must be valid too.
    fn parse_callback(
        &self,
        headers: &HeaderMap,
        body: &[u8],
        now_s: u64,
    ) -> Result<CallbackHint, CallbackError> {
        if let Some(key) = &self.webhook_key {
            key.verify(headers, body, now_s)?;
        }
        let prediction: Prediction = serde_json::from_slice(body)
            .map_err(|err| CallbackError::Malformed(err.to_string()))?;
        let running = matches!(prediction.status.as_str(), "starting" | "processing");
        CallbackHint::new(prediction.id, running)
    }

    fn query<'a>(
        &'a self,
        _spec: &'a JobSpec,
        task_id: &'a str,
    ) -> BoxFuture<'a, Result<TaskStatus, ProviderError>> {
        async move { self.prediction(task_id).await?.into_status() }.boxed()
    }

    /// `POST /v1/predictions/{id}/cancel`, answered with the prediction: `canceled` (or still
    /// `starting`/`processing`: the cancel is under way), or as it was if it had already
    /// ended (`succeeded`, `failed`: nothing to cancel).
    fn cancel<'a>(
        &'a self,
        _spec: &'a JobSpec,
        task_id: &'a str,
    ) -> BoxFuture<'a, Result<CancelAnswer, ProviderError>> {
        async move {
            let request = self.api.post(&format!("/v1/predictions/{task_id}/cancel"));
            let answer = self.api.send(request, Call::Query).await?;
            let prediction: Prediction = read(&answer, Call::Query)?;
            Ok(match prediction.status.as_str() {
                "succeeded" | "failed" => CancelAnswer::AlreadyEnded,
                _ => CancelAnswer::Requested,
            })
        }
        .boxed()
    }

    fn lists_tasks(&self) -> bool {
        true
    }

    fn echo(&self, spec: &JobSpec) -> TaskEcho {
        echo_of(&json!(spec.model), &request_fields(spec))
    }

    fn recent_tasks(&self, since_s: u64) -> BoxFuture<'_, Result<RecentTasks, ProviderError>> {
        self.list_since(since_s).boxed()
    }

    fn task_record<'a>(
        &'a self,
        task_id: &'a str,
    ) -> BoxFuture<'a, Result<Option<ProviderTask>, ProviderError>> {
        async move { Ok(Some(self.prediction(task_id).await?.into_task())) }.boxed()
    }

    /// `GET /v1/account`: the key is accepted (Replicate shows no balance there).
    fn check_account(&self) -> BoxFuture<'_, Result<AccountCheck, ProviderError>> {
        async move {
            let answer = self
                .api
                .send(self.api.get("/v1/account"), Call::Query)
                .await?;
            read::<Value>(&answer, Call::Query)?;
            Ok(AccountCheck::default())
        }
        .boxed()
    }

    fn api(&self) -> &Api {
        &self.api
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(body: &str) -> Result<TaskStatus, ProviderError> {
        serde_json::from_str::<Prediction>(body)
            .unwrap()
            .into_status()
    }

    #[test]
    fn outputs_errors_and_statuses_read_as_their_task_status() {
        assert_eq!(
            status(r#"{"id":"p","status":"starting","output":null,"error":null}"#).unwrap(),
            TaskStatus::Running
        );
        assert_eq!(
            status(r#"{"id":"p","status":"succeeded","output":"https://r.example/v.mp4"}"#)
                .unwrap(),
            TaskStatus::Succeeded {
                result_url: "https://r.example/v.mp4".into()
            }
        );
        assert_eq!(
            status(r#"{"id":"p","status":"succeeded","output":["https://r.example/a.mp4"]}"#)
                .unwrap(),
            TaskStatus::Succeeded {
                result_url: "https://r.example/a.mp4".into()
            }
        );
        let flagged = r#"{"id":"p","status":"failed","error":"The input or output was flagged as sensitive. Please try again with different inputs. (E005)"}"#;
        assert!(matches!(
            status(flagged).unwrap(),
            TaskStatus::Failed(ProviderError::Moderation(_))
        ));
        assert!(matches!(
            status(r#"{"id":"p","status":"canceled"}"#).unwrap(),
            TaskStatus::Failed(ProviderError::GenerationFailed(_))
        ));
        assert!(status(r#"{"id":"p","status":"succeeded","output":null}"#).is_err());
    }

    #[test]
    fn a_prediction_echoes_its_model_and_input_with_its_creation_time() {
        let task = serde_json::from_str::<Prediction>(
            r#"{"id":"p","status":"processing","model":"kwaivgi/kling-v2.1","created_at":"2026-12-01T20:00:00.123456Z","input":{"prompt":"a fox","duration":5}}"#,
        )
        .unwrap()
        .into_task();
        assert_eq!(task.created_s, 1_796_155_200);
        assert_eq!(task.echo["model"], "kwaivgi/kling-v2.1");
        assert_eq!(task.echo["duration"], "5");
    }
}
