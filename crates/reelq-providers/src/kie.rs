//! The kie market API (`docs/providers.md` section 1): `createTask`, `recordInfo`, and the
//! `{code, msg, data}` envelope whose `code` matters more than the HTTP status.
//!
//! Error mapping (code in the envelope, or the HTTP status when the body is no envelope):
//!
//! | code                | class               | why                                        |
//! |---------------------|---------------------|--------------------------------------------|
//! | 401                 | `Auth`              | bad key                                    |
//! | 402                 | `Credits`           | account empty                              |
//! | 404, 422, 505, 4xx  | `Invalid`           | not found, validation, feature disabled    |
//! | 429                 | `RateLimited`       | honour `Retry-After`                       |
//! | 455                 | `Transient`         | maintenance (kie's own words: a refusal)   |
//! | 500, other 5xx in the envelope | `Transient` on a query; on a create `ServerError` (an unknown outcome) | kie's server failed, maybe after accepting the task |
//! | 501                 | `GenerationFailed`  | the generation failed                      |
//! | any code whose `msg` says "temporarily paused" | `ModelUnavailable` | kie's answer for a model family it stopped serving (every Sora model answers `500: This interface is temporarily paused` since 2026-06): a refusal before any task |
//! | query: HTTP 5xx without an envelope | `Transient` | asked again                      |
//! | create: no answer, reset, unparsable 2xx, HTTP 5xx without an envelope | `UnknownOutcome` | the task may exist |
//!
//! A task's record (`recordInfo`) echoes its create in `param` (the request as a JSON string):
//! model, prompt, aspect ratio, frames and size are compared with a job's before a callback
//! may hand the job that task.
//!
//! Proof of refusal on a create: an envelope whose `code` is a 4xx one (kie answers its own
//! errors in the envelope, often with HTTP 200), or an HTTP 4xx. No 5xx is: kie's own
//! server may fail after accepting the task.

use std::time::Duration;

use base64::{Engine, engine::general_purpose::STANDARD as BASE64};
use futures_util::{FutureExt, future::BoxFuture};
use hmac::{Hmac, Mac};
use reelq_core::{JobSpec, ProviderKind};
use reqwest::header::HeaderMap;
use serde::Deserialize;
use serde_json::json;
use sha2::Sha256;

use crate::{
    AccountCheck, AccountConfig, CallbackError, CallbackHint, Provider, ProviderError,
    ProviderTask, Submission, TaskEcho, TaskStatus,
    http::{Api, Call, status_error, task_failure, unreadable},
    request::{echo_of, null_as_default, request_fields},
};

/// One kie account.
pub struct Kie {
    api: Api,
}

#[derive(Deserialize)]
struct Envelope {
    code: i64,
    #[serde(default, deserialize_with = "null_as_default")]
    msg: String,
    #[serde(default)]
    data: Option<serde_json::Value>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RecordInfo {
    state: String,
    #[serde(default)]
    result_json: Option<String>,
    #[serde(default)]
    fail_code: Option<serde_json::Value>,
    #[serde(default)]
    fail_msg: Option<String>,
}

/// What `recordInfo` echoes of the create: the request as a JSON string, and when.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RecordEcho {
    task_id: String,
    param: String,
    #[serde(default, deserialize_with = "null_as_default")]
    create_time: u64,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ResultJson {
    result_urls: Vec<String>,
}

impl Kie {
    pub fn new(config: AccountConfig) -> Result<Self, ProviderError> {
        Ok(Kie {
            api: Api::new(config)?,
        })
    }

    async fn call(
        &self,
        request: reqwest::RequestBuilder,
        call: Call,
    ) -> Result<serde_json::Value, ProviderError> {
        let answer = self.api.send(request, call).await?;
        match serde_json::from_str::<Envelope>(&answer.body) {
            Ok(envelope) if envelope.code == 200 => Ok(envelope.data.unwrap_or_default()),
            Ok(envelope) => Err(error_for_code(
                envelope.code,
                envelope.msg,
                answer.retry_after,
                call,
            )),
            Err(_) => Err(status_error(
                answer.status,
                answer.retry_after,
                call,
                format!("kie answered HTTP {} without an envelope", answer.status),
            )),
        }
    }

    async fn create(
        &self,
        spec: &JobSpec,
        callback_url: Option<&str>,
    ) -> Result<String, ProviderError> {
        let data = self
            .call(
                self.api
                    .post("/api/v1/jobs/createTask")
                    .json(&create_body(spec, callback_url)),
                Call::Create,
            )
            .await?;
        match data.get("taskId").and_then(|id| id.as_str()) {
            Some(task_id) if !task_id.is_empty() => Ok(task_id.to_owned()),
            _ => Err(unreadable(
                Call::Create,
                None,
                "kie create answered 200 without a taskId".into(),
            )),
        }
    }

    async fn record_data(&self, task_id: &str) -> Result<serde_json::Value, ProviderError> {
        let request = self
            .api
            .get("/api/v1/jobs/recordInfo")
            .query(&[("taskId", task_id)]);
        self.call(request, Call::Query).await
    }

    async fn task(&self, task_id: &str) -> Result<ProviderTask, ProviderError> {
        let data = self.record_data(task_id).await?;
        let record: RecordEcho = serde_json::from_value(data)
            .map_err(|err| ProviderError::transient(format!("kie recordInfo unreadable: {err}")))?;
        let request: serde_json::Value = serde_json::from_str(&record.param)
            .map_err(|err| ProviderError::transient(format!("kie param unreadable: {err}")))?;
        Ok(ProviderTask {
            task_id: record.task_id,
            created_s: record.create_time / 1000,
            echo: echo_of_request(&request),
        })
    }

    async fn record_info(&self, task_id: &str) -> Result<TaskStatus, ProviderError> {
        let data = self.record_data(task_id).await?;
        let info: RecordInfo = serde_json::from_value(data)
            .map_err(|err| ProviderError::transient(format!("kie recordInfo unreadable: {err}")))?;
        match info.state.as_str() {
            "waiting" | "queuing" | "generating" => Ok(TaskStatus::Running),
            "success" => {
                let result: ResultJson =
                    serde_json::from_str(info.result_json.as_deref().unwrap_or("")).map_err(
                        |err| ProviderError::transient(format!("kie resultJson unreadable: {err}")),
                    )?;
                match result.result_urls.into_iter().next() {
                    Some(result_url) => Ok(TaskStatus::Succeeded { result_url }),
                    None => Err(ProviderError::transient("kie success without resultUrls")),
                }
            }
            "fail" => {
                let message = format!(
                    "kie failCode {}: {}",
                    info.fail_code.map(|c| c.to_string()).unwrap_or_default(),
                    info.fail_msg.unwrap_or_default()
                );
                Ok(TaskStatus::Failed(task_failure(message)))
            }
            other => Err(ProviderError::transient(format!(
                "kie unknown task state {other:?}"
            ))),
        }
    }
}

fn create_body(spec: &JobSpec, callback_url: Option<&str>) -> serde_json::Value {
    let mut body = json!({ "model": spec.model, "input": request_fields(spec) });
    if let Some(url) = callback_url {
        body["callBackUrl"] = json!(url);
    }
    body
}

/// The request fields a task's record echoes (`param`), as [`create_body`] sends them.
fn echo_of_request(request: &serde_json::Value) -> TaskEcho {
    let input = request["input"].as_object().cloned().unwrap_or_default();
    echo_of(&request["model"], &input)
}

/// How long a signed callback stays acceptable (docs/providers.md: older than 5 minutes is stale).
const CALLBACK_MAX_AGE_S: u64 = 300;

/// kie's callback signature: base64(HMAC-SHA256(key, `taskId + "." + timestamp`)).
pub fn kie_signature(key: &str, task_id: &str, timestamp: &str) -> String {
    let mut mac =
        Hmac::<Sha256>::new_from_slice(key.as_bytes()).expect("HMAC takes any key length");
    mac.update(format!("{task_id}.{timestamp}").as_bytes());
    BASE64.encode(mac.finalize().into_bytes())
}

/// Both callback shapes: `data.taskId` with `resultUrls`, or the market form with `state`.
#[derive(Deserialize)]
struct CallbackBody {
    data: CallbackData,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CallbackData {
    /// `taskId` in the callback document's example; `task_id` accepted too (market
    /// callbacks are reported with either spelling).
    #[serde(alias = "task_id")]
    task_id: String,
    #[serde(default)]
    state: Option<String>,
}

impl Kie {
    fn check_signature(
        &self,
        headers: &HeaderMap,
        task_id: &str,
        now_s: u64,
    ) -> Result<(), CallbackError> {
        let Some(key) = &self.api.config.webhook_secret else {
            return Ok(());
        };
        let header = |name: &str| headers.get(name).and_then(|value| value.to_str().ok());
        let (Some(timestamp), Some(signature)) =
            (header("x-webhook-timestamp"), header("x-webhook-signature"))
        else {
            return Err(CallbackError::BadSignature);
        };
        let sent_s: u64 = timestamp.parse().map_err(|_| CallbackError::BadSignature)?;
        if now_s.abs_diff(sent_s) > CALLBACK_MAX_AGE_S {
            return Err(CallbackError::Stale);
        }
        let signature = BASE64
            .decode(signature)
            .map_err(|_| CallbackError::BadSignature)?;
        let mut mac = Hmac::<Sha256>::new_from_slice(key.expose().as_bytes())
            .expect("HMAC takes any key length");
        mac.update(format!("{task_id}.{timestamp}").as_bytes());
        mac.verify_slice(&signature)
            .map_err(|_| CallbackError::BadSignature)
    }
}

fn error_for_code(
    code: i64,
    msg: String,
    retry_after: Option<Duration>,
    call: Call,
) -> ProviderError {
    let message = format!("kie code {code}: {msg}");
    if msg.to_ascii_lowercase().contains("temporarily paused") {
        // kie's answer for a model family it stopped serving ("500: This interface is
        // temporarily paused", every Sora model since 2026-06): a refusal, not a failure
        // after accepting.
        return ProviderError::ModelUnavailable(message);
    }
    match code {
        401 => ProviderError::Auth(message),
        402 => ProviderError::Credits(message),
        429 => ProviderError::RateLimited {
            retry_after,
            message,
        },
        501 => ProviderError::GenerationFailed(message),
        // Maintenance: kie's one 4xx-numbered code that passes.
        455 => ProviderError::Transient {
            retry_after,
            message,
        },
        400..=499 | 505 => ProviderError::Invalid(message),
        _ => crate::http::server_error(call, retry_after, message),
    }
}

impl Provider for Kie {
    fn kind(&self) -> ProviderKind {
        ProviderKind::Kie
    }

    fn submit<'a>(
        &'a self,
        submission: Submission<'a>,
    ) -> BoxFuture<'a, Result<String, ProviderError>> {
        self.create(submission.spec, submission.callback_url)
            .boxed()
    }

    fn parse_callback(
        &self,
        headers: &HeaderMap,
        body: &[u8],
        now_s: u64,
    ) -> Result<CallbackHint, CallbackError> {
        let callback: CallbackBody = serde_json::from_slice(body)
            .map_err(|err| CallbackError::Malformed(err.to_string()))?;
        let task_id = callback.data.task_id;
        self.check_signature(headers, &task_id, now_s)?;
        let progress_only = matches!(
            callback.data.state.as_deref(),
            Some("waiting" | "queuing" | "generating")
        );
        CallbackHint::new(task_id, progress_only)
    }

    fn query<'a>(
        &'a self,
        _spec: &'a JobSpec,
        task_id: &'a str,
    ) -> BoxFuture<'a, Result<TaskStatus, ProviderError>> {
        self.record_info(task_id).boxed()
    }

    fn echo(&self, spec: &JobSpec) -> TaskEcho {
        echo_of_request(&create_body(spec, None))
    }

    fn task_record<'a>(
        &'a self,
        task_id: &'a str,
    ) -> BoxFuture<'a, Result<Option<ProviderTask>, ProviderError>> {
        self.task(task_id).map(|task| task.map(Some)).boxed()
    }

    /// `GET /api/v1/chat/credit`: the account's remaining credits, in the envelope's `data`.
    fn check_account(&self) -> BoxFuture<'_, Result<AccountCheck, ProviderError>> {
        async move {
            let data = self
                .call(self.api.get("/api/v1/chat/credit"), Call::Query)
                .await?;
            Ok(AccountCheck {
                credits: data.as_f64(),
                models: None,
            })
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
    fn null_where_a_value_was_expected_reads_as_its_default() {
        let envelope: Envelope =
            serde_json::from_str(r#"{"code":200,"msg":null,"data":null}"#).unwrap();
        assert_eq!((envelope.code, envelope.msg.as_str()), (200, ""));
        let echo: RecordEcho =
            serde_json::from_str(r#"{"taskId":"t","param":"{}","createTime":null}"#).unwrap();
        assert_eq!(echo.create_time, 0);
    }
    use reelq_core::{ErrorClass, Secret};

    #[track_caller]
    fn check(code: i64, expect: ErrorClass) {
        assert_eq!(
            error_for_code(code, "m".into(), None, Call::Query).class(),
            expect,
            "code {code}"
        );
    }

    #[test]
    fn every_documented_code_has_its_class() {
        check(401, ErrorClass::Auth);
        check(402, ErrorClass::Credits);
        check(404, ErrorClass::Invalid);
        check(422, ErrorClass::Invalid);
        check(429, ErrorClass::RateLimited);
        check(455, ErrorClass::Transient);
        check(500, ErrorClass::Transient);
        check(501, ErrorClass::GenerationFailed);
        check(505, ErrorClass::Invalid);
        assert_eq!(
            error_for_code(
                500,
                "This interface is temporarily paused".into(),
                None,
                Call::Create
            )
            .class(),
            ErrorClass::ModelUnavailable,
            "a paused model is refused, not an unknown outcome"
        );
        // kie's server failing on a create may have accepted the task first.
        let create = error_for_code(500, "m".into(), None, Call::Create);
        assert_eq!(create.class(), ErrorClass::UnknownOutcome);
        assert_eq!(
            create.trusting_server_errors().class(),
            ErrorClass::Transient
        );
    }

    fn kie(webhook_hmac_key: Option<&str>) -> Kie {
        Kie::new(AccountConfig {
            base_url: "http://127.0.0.1:1".into(),
            api_key: Secret::new("sk-very-secret"),
            request_timeout: Duration::from_secs(1),
            webhook_secret: webhook_hmac_key.map(Secret::new),
        })
        .unwrap()
    }

    #[test]
    fn debug_output_hides_the_keys() {
        let debug = format!("{:?}", kie(Some("whk-secret")).api.config);
        assert!(
            !debug.contains("sk-very-secret") && !debug.contains("whk-secret"),
            "{debug}"
        );
    }

    const NOW_S: u64 = 1_780_000_000;
    const BODY: &[u8] =
        br#"{"code":200,"msg":"ok","data":{"taskId":"t1","resultUrls":["https://x/v.mp4"]}}"#;

    fn signed(key: &str, timestamp: u64) -> HeaderMap {
        let mut headers = HeaderMap::new();
        let timestamp = timestamp.to_string();
        headers.insert("x-webhook-timestamp", timestamp.parse().unwrap());
        headers.insert(
            "x-webhook-signature",
            kie_signature(key, "t1", &timestamp).parse().unwrap(),
        );
        headers
    }

    #[test]
    fn a_signed_callback_is_read_and_a_bad_one_refused() {
        let provider = kie(Some("whk"));
        let hint = provider
            .parse_callback(&signed("whk", NOW_S), BODY, NOW_S)
            .unwrap();
        assert_eq!(
            hint,
            CallbackHint {
                task_id: "t1".into(),
                progress_only: false
            }
        );
        let check =
            |headers: &HeaderMap| provider.parse_callback(headers, BODY, NOW_S).unwrap_err();
        assert_eq!(check(&HeaderMap::new()), CallbackError::BadSignature);
        assert_eq!(check(&signed("forged", NOW_S)), CallbackError::BadSignature);
        assert_eq!(check(&signed("whk", NOW_S - 301)), CallbackError::Stale);
        let err = provider
            .parse_callback(&signed("whk", NOW_S), b"{not json", NOW_S)
            .unwrap_err();
        assert!(matches!(err, CallbackError::Malformed(_)));
    }

    #[test]
    fn without_a_key_callbacks_need_no_signature_and_progress_is_told_apart() {
        let provider = kie(None);
        let body = br#"{"code":200,"data":{"taskId":"t2","state":"generating"}}"#;
        let hint = provider
            .parse_callback(&HeaderMap::new(), body, NOW_S)
            .unwrap();
        assert_eq!(
            hint,
            CallbackHint {
                task_id: "t2".into(),
                progress_only: true
            }
        );
    }
}
