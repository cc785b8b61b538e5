//! Kling's own API (Kuaishou; `docs/providers.md`, Kling), read 2026-12-07 from copies of its
//! API reference (app.klingai.com/global/dev/document-api: apiReference/commonInfo,
//! rateLimits, callbackProtocol, model text2video and image2video):
//! `POST /v1/videos/{text2video,image2video}`, `GET /v1/videos/{family}/{task id or
//! external_task_id}`, the `{code, message, request_id, data}` envelope, and a JWT signed per
//! request from the account's access key and secret key (`api_key = "<access key>:<secret
//! key>"`: HS256, `iss` the access key, valid from 5 s ago for 30 minutes, as Kling's own
//! examples sign it).
//!
//! Every create carries the job's id as `external_task_id`, which Kling keeps unique per
//! account and answers queries by: a create whose answer was lost is settled by looking the
//! job's id up ([`Provider::task_of_job`]), not by matching a list.
//!
//! | answer (business `code`, HTTP status)        | class              |
//! |----------------------------------------------|--------------------|
//! | 1000..1002 (401): authentication             | `Auth`             |
//! | 1003, 1004 (401): the token not yet or no longer valid (a clock off) | `Transient` |
//! | 1100 (429) account exception, 1103 (403) no access to the API or model, 1304 (429) IP whitelist | `Auth` |
//! | 1101 (429) arrears, 1102 (429) resource pack used up or expired | `Credits` |
//! | 1200, 1201 (400), 1202, 1203 (404): the request | `Invalid`       |
//! | a create refused because its `external_task_id` is taken | `UnknownOutcome`: a task of this job exists (settled by the lookup) |
//! | 1300, 1301 (400): the platform's policy, content safety | `Moderation` |
//! | 1302 (429) too fast, 1303 (429) concurrency over the resource pack's | `RateLimited` (a limit, not a failure) |
//! | 5000 with HTTP 500                           | query: `Transient`; create: `ServerError` (an unknown outcome an account may choose to retry) |
//! | 5001 (503), 5002 (504), any undocumented code | query: `Transient`; create: `UnknownOutcome` |
//! | query: other 5xx, no envelope                | `Transient`        |
//! | create: no answer, reset, unreadable 2xx, 5xx without an envelope | `UnknownOutcome` |
//! | task `failed`                                | `GenerationFailed` (`Moderation` when its message names risk control or moderation) |
//!
//! Proof of refusal on a create: an envelope with a 1xxx code. No 5xx is, whatever its body.
//! Kling has no cancel call and signs no callback: the per-job token in the callback URL
//! authenticates a callback (the bare task object), and the worker confirms by querying.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD as BASE64URL};
use futures_util::{FutureExt, future::BoxFuture};
use hmac::{Hmac, Mac};
use reelq_core::{JobId, JobSpec, ProviderKind};
use reqwest::header::HeaderMap;
use serde::Deserialize;
use serde_json::{Value, json};
use sha2::Sha256;

use crate::{
    AccountCheck, AccountConfig, CallbackError, CallbackHint, Provider, ProviderError, Submission,
    TaskStatus,
    http::{Api, Call, KeyHeader, server_error, status_error, task_failure, unreadable},
    provider::{PROBE_TASK_ID, probed},
    request::{null_as_default, request_fields},
};

/// One Kling account.
pub struct Kling {
    api: Api,
}

/// How long a signed token is valid (Kling's own examples), and how far back it starts:
/// Kling's examples use 5 s; a minute lets a host clock run a little fast.
const TOKEN_LIFETIME_S: u64 = 1800;
const TOKEN_SKEW_S: u64 = 60;

/// The `Authorization` bearer token for one request: a JWT (HS256) over `{iss, exp, nbf}`,
/// signed with the secret key. `key` is `<access key>:<secret key>` (checked by
/// [`Kling::new`]).
pub fn bearer_token(key: &str) -> String {
    let (access, secret) = key.split_once(':').unwrap_or((key, ""));
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    signed_token(access, secret, now)
}

fn signed_token(access: &str, secret: &str, now_s: u64) -> String {
    let header = BASE64URL.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
    let claims = json!({
        "iss": access,
        "exp": now_s + TOKEN_LIFETIME_S,
        "nbf": now_s.saturating_sub(TOKEN_SKEW_S),
    });
    let payload = BASE64URL.encode(claims.to_string());
    let signing_input = format!("{header}.{payload}");
    let mut mac =
        Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes a key of any size");
    mac.update(signing_input.as_bytes());
    let signature = BASE64URL.encode(mac.finalize().into_bytes());
    format!("{signing_input}.{signature}")
}

#[derive(Deserialize)]
struct Envelope {
    code: i64,
    #[serde(default, deserialize_with = "null_as_default")]
    message: String,
    #[serde(default)]
    data: Option<Value>,
}

/// A task, as create, query and callback (bare, without the envelope) show it.
#[derive(Deserialize)]
struct Task {
    task_id: String,
    task_status: String,
    #[serde(default, deserialize_with = "null_as_default")]
    task_status_msg: String,
    #[serde(default)]
    task_result: Option<TaskResult>,
}

#[derive(Deserialize, Default)]
struct TaskResult {
    #[serde(default, deserialize_with = "null_as_default")]
    videos: Vec<Video>,
}

#[derive(Deserialize)]
struct Video {
    url: String,
}

impl Task {
    fn into_status(self) -> Result<TaskStatus, ProviderError> {
        match self.task_status.as_str() {
            "submitted" | "processing" => Ok(TaskStatus::Running),
            "succeed" => match self
                .task_result
                .unwrap_or_default()
                .videos
                .into_iter()
                .next()
            {
                Some(video) => Ok(TaskStatus::Succeeded {
                    result_url: video.url,
                }),
                None => Err(ProviderError::transient("kling succeed without a video")),
            },
            "failed" => {
                let message = format!("kling task failed: {}", self.task_status_msg);
                if self
                    .task_status_msg
                    .to_ascii_lowercase()
                    .contains("risk control")
                {
                    return Ok(TaskStatus::Failed(ProviderError::Moderation(message)));
                }
                Ok(TaskStatus::Failed(task_failure(message)))
            }
            other => Err(ProviderError::transient(format!(
                "kling unknown task status {other:?}"
            ))),
        }
    }
}

/// Which of Kling's API families a job's tasks live under: image-to-video when it gives an
/// image, text-to-video otherwise (each queries its own tasks).
fn family(spec: &JobSpec) -> &'static str {
    if spec.image_urls.is_empty() {
        "text2video"
    } else {
        "image2video"
    }
}

impl Kling {
    pub fn new(config: AccountConfig) -> Result<Self, ProviderError> {
        let key = config.api_key.expose();
        if key
            .split_once(':')
            .is_none_or(|(a, s)| a.is_empty() || s.is_empty())
        {
            return Err(ProviderError::Invalid(
                "a Kling api_key is \"<access key>:<secret key>\"".into(),
            ));
        }
        Ok(Kling {
            api: Api::with_key_header(config, KeyHeader::Signed(bearer_token))?,
        })
    }

    /// Sends a call and reads its envelope's `data`.
    async fn call(
        &self,
        request: reqwest::RequestBuilder,
        call: Call,
    ) -> Result<Value, ProviderError> {
        let answer = self.api.send(request, call).await?;
        match serde_json::from_str::<Envelope>(&answer.body) {
            Ok(envelope) if envelope.code == 0 && answer.status.is_success() => {
                Ok(envelope.data.unwrap_or_default())
            }
            Ok(envelope) if envelope.code != 0 => Err(error_for_code(
                envelope.code,
                &envelope.message,
                answer.status.as_u16(),
                answer.retry_after,
                call,
            )),
            _ => Err(status_error(
                answer.status,
                answer.retry_after,
                call,
                format!("kling answered HTTP {} without its envelope", answer.status),
            )),
        }
    }

    async fn create(&self, submission: Submission<'_>) -> Result<String, ProviderError> {
        let spec = submission.spec;
        let mut body = request_fields(spec);
        body.insert("model_name".into(), json!(spec.model));
        body.insert(
            "external_task_id".into(),
            json!(submission.job_id.to_string()),
        );
        if family(spec) == "image2video" {
            // image2video takes its frame's shape, and has no aspect ratio.
            body.remove("aspect_ratio");
        }
        if let Some(url) = submission.callback_url {
            body.insert("callback_url".into(), json!(url));
        }
        let request = self
            .api
            .post(&format!("/v1/videos/{}", family(spec)))
            .json(&Value::Object(body));
        let data = self.call(request, Call::Create).await?;
        match data.get("task_id").and_then(Value::as_str) {
            Some(task_id) if !task_id.is_empty() => Ok(task_id.to_owned()),
            _ => Err(ProviderError::UnknownOutcome(
                "kling accepted the create without a task_id".into(),
            )),
        }
    }

    /// The task `id` (Kling's task id, or the job's id as `external_task_id`) names.
    async fn task(&self, spec: &JobSpec, id: &str) -> Result<Task, ProviderError> {
        let request = self.api.get(&format!("/v1/videos/{}/{id}", family(spec)));
        let data = self.call(request, Call::Query).await?;
        serde_json::from_value(data)
            .map_err(|err| ProviderError::transient(format!("kling task unreadable: {err}")))
    }
}

/// Whether a refusal says the create's `external_task_id` is already taken (Kling documents
/// no wording for it).
fn names_a_taken_id(message: &str) -> bool {
    let message = message.to_ascii_lowercase();
    message.contains("external_task_id")
        && ["exist", "duplicate", "already", "unique", "used"]
            .iter()
            .any(|word| message.contains(word))
}

fn error_for_code(
    code: i64,
    message: &str,
    http_status: u16,
    retry_after: Option<Duration>,
    call: Call,
) -> ProviderError {
    let described = format!("kling code {code}: {message}");
    match code {
        // A token not yet or no longer valid (a clock off by more than the token's margin):
        // refused before anything was created, so asked again.
        1003 | 1004 => ProviderError::Transient {
            retry_after,
            message: described,
        },
        1000..=1002 | 1100 | 1103 | 1304 => ProviderError::Auth(described),
        1101 | 1102 => ProviderError::Credits(described),
        1300 | 1301 => ProviderError::Moderation(described),
        1302 | 1303 => ProviderError::RateLimited {
            retry_after,
            message: described,
        },
        // A create refused because its `external_task_id` is taken: a task of this job
        // already exists (an earlier create of it was taken). Not a refusal of the job:
        // settled by the lookup.
        1200..=1299 if call == Call::Create && names_a_taken_id(message) => {
            ProviderError::UnknownOutcome(described)
        }
        1200..=1299 => ProviderError::Invalid(described),
        // Kling's own server error, in its own envelope and with HTTP 500: an account may
        // choose to retry those. Its 503 (5001) and 504 (5002, a timeout: the classic case of
        // a task made anyway), and any code Kling has not documented, prove nothing.
        5000 if http_status == 500 => server_error(call, retry_after, described),
        _ => unreadable(call, retry_after, described),
    }
}

impl Provider for Kling {
    fn kind(&self) -> ProviderKind {
        ProviderKind::Kling
    }

    fn submit<'a>(
        &'a self,
        submission: Submission<'a>,
    ) -> BoxFuture<'a, Result<String, ProviderError>> {
        self.create(submission).boxed()
    }

    /// Kling signs no callback: the per-job token in the URL authenticates it. The body is
    /// the bare task object.
    fn parse_callback(
        &self,
        _headers: &HeaderMap,
        body: &[u8],
        _now_s: u64,
    ) -> Result<CallbackHint, CallbackError> {
        let task: Task = serde_json::from_slice(body)
            .map_err(|err| CallbackError::Malformed(err.to_string()))?;
        let running = matches!(task.task_status.as_str(), "submitted" | "processing");
        CallbackHint::new(task.task_id, running)
    }

    fn query<'a>(
        &'a self,
        spec: &'a JobSpec,
        task_id: &'a str,
    ) -> BoxFuture<'a, Result<TaskStatus, ProviderError>> {
        async move { self.task(spec, task_id).await?.into_status() }.boxed()
    }

    fn names_tasks_by_job(&self) -> bool {
        true
    }

    /// The job's task, looked up by its id (`external_task_id`): `None` when Kling answers
    /// that it has no such task.
    fn task_of_job<'a>(
        &'a self,
        spec: &'a JobSpec,
        job_id: JobId,
    ) -> BoxFuture<'a, Result<Option<String>, ProviderError>> {
        async move {
            match self.task(spec, &job_id.to_string()).await {
                Ok(task) => Ok(Some(task.task_id)),
                Err(ProviderError::Invalid(message)) if message.contains("code 1203") => Ok(None),
                Err(err) => Err(err),
            }
        }
        .boxed()
    }

    /// A query of a task no account has (free) shows whether the key is accepted.
    fn check_account(&self) -> BoxFuture<'_, Result<AccountCheck, ProviderError>> {
        async move {
            let request = self
                .api
                .get(&format!("/v1/videos/text2video/{PROBE_TASK_ID}"));
            probed(
                self.call(request, Call::Query)
                    .await
                    .map(|_| TaskStatus::Running),
            )
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

    #[test]
    fn the_token_is_kling_s_jwt_signed_with_the_secret_key() {
        let token = signed_token("ak-1", "sk-1", 1_800_000_000);
        let parts: Vec<&str> = token.split('.').collect();
        assert_eq!(parts.len(), 3);
        let header: Value = serde_json::from_slice(&BASE64URL.decode(parts[0]).unwrap()).unwrap();
        assert_eq!(header, json!({"alg": "HS256", "typ": "JWT"}));
        let claims: Value = serde_json::from_slice(&BASE64URL.decode(parts[1]).unwrap()).unwrap();
        assert_eq!(
            claims,
            json!({"iss": "ak-1", "exp": 1_800_001_800u64, "nbf": 1_799_999_940u64})
        );
        let mut mac = Hmac::<Sha256>::new_from_slice(b"sk-1").unwrap();
        mac.update(format!("{}.{}", parts[0], parts[1]).as_bytes());
        mac.verify_slice(&BASE64URL.decode(parts[2]).unwrap())
            .expect("signed with the secret key");
    }

    #[test]
    fn codes_class_as_the_reference_documents_them() {
        let class = |code, message: &str, call| {
            let status = if code >= 5000 { 500 } else { 400 };
            error_for_code(code, message, status, None, call).class()
        };
        use reelq_core::ErrorClass::*;
        assert_eq!(class(1002, "invalid", Call::Create), Auth);
        assert_eq!(class(1102, "resource pack depleted", Call::Create), Credits);
        assert_eq!(class(1301, "content security", Call::Create), Moderation);
        assert_eq!(
            class(1303, "parallel task over resource pack limit", Call::Create),
            RateLimited
        );
        assert_eq!(class(1201, "duration is invalid", Call::Create), Invalid);
        assert_eq!(
            class(1201, "external_task_id already exists", Call::Create),
            UnknownOutcome
        );
        assert_eq!(
            class(
                1201,
                "external_task_id must be at most 64 characters",
                Call::Create
            ),
            Invalid
        );
        assert_eq!(class(1004, "expired", Call::Create), Transient);
        assert_eq!(class(5000, "internal error", Call::Query), Transient);
        assert_eq!(class(5001, "maintenance", Call::Create), UnknownOutcome);
        assert_eq!(class(5002, "timeout", Call::Create), UnknownOutcome);
        assert_eq!(class(7777, "undocumented", Call::Create), UnknownOutcome);
    }
}
