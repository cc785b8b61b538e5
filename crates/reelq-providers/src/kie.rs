//! The kie market API (`providers.md` section 1): `createTask`, `recordInfo`, and the
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
//! | 455, 500, other 5xx | `Transient`         | maintenance, server error                  |
//! | 501                 | `GenerationFailed`  | the generation failed                      |
//! | create: no answer, unparsable 2xx, 504 | `UnknownOutcome` | the task may exist        |

use std::time::Duration;

use futures_util::{FutureExt, future::BoxFuture};
use reelq_core::{Aspect, JobId, JobSpec, ProviderKind, Quality, Secret};
use reqwest::StatusCode;
use serde::Deserialize;
use serde_json::json;

use crate::{
    Download, Provider, ProviderError, TaskStatus,
    http::{self, retry_after, send_error},
};

/// One kie account.
#[derive(Debug, Clone)]
pub struct KieConfig {
    /// e.g. `https://api.kie.ai`, or the simulator's address.
    pub base_url: String,
    pub api_key: Secret,
    pub request_timeout: Duration,
}

pub struct Kie {
    config: KieConfig,
    http: reqwest::Client,
}

#[derive(Deserialize)]
struct Envelope {
    code: i64,
    #[serde(default)]
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

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ResultJson {
    result_urls: Vec<String>,
}

/// Which call an answer belongs to: an unreadable answer to a create may hide a billed task.
#[derive(Clone, Copy)]
enum Call {
    Create,
    Query,
}

impl Kie {
    pub fn new(config: KieConfig) -> Result<Self, ProviderError> {
        let http = reqwest::Client::builder()
            .timeout(config.request_timeout)
            .build()
            .map_err(|err| ProviderError::Invalid(format!("http client: {err}")))?;
        Ok(Kie { config, http })
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.config.base_url.trim_end_matches('/'))
    }

    async fn call(
        &self,
        request: reqwest::RequestBuilder,
        call: Call,
    ) -> Result<serde_json::Value, ProviderError> {
        let response = request
            .bearer_auth(self.config.api_key.expose())
            .send()
            .await
            .map_err(|err| send_error(err, matches!(call, Call::Query)))?;
        let status = response.status();
        let retry_after = retry_after(&response);
        let body = response
            .text()
            .await
            .map_err(|err| send_error(err, matches!(call, Call::Query)))?;
        match serde_json::from_str::<Envelope>(&body) {
            Ok(envelope) if envelope.code == 200 => Ok(envelope.data.unwrap_or_default()),
            Ok(envelope) => Err(error_for_code(envelope.code, envelope.msg, retry_after)),
            Err(_) => Err(error_for_status(status, retry_after, call)),
        }
    }

    async fn create(&self, spec: &JobSpec) -> Result<String, ProviderError> {
        let data = self
            .call(
                self.http
                    .post(self.url("/api/v1/jobs/createTask"))
                    .json(&create_body(spec)),
                Call::Create,
            )
            .await?;
        match data.get("taskId").and_then(|id| id.as_str()) {
            Some(task_id) if !task_id.is_empty() => Ok(task_id.to_owned()),
            _ => Err(ProviderError::UnknownOutcome(
                "kie create answered 200 without a taskId".into(),
            )),
        }
    }

    async fn record_info(&self, task_id: &str) -> Result<TaskStatus, ProviderError> {
        let request = self
            .http
            .get(self.url("/api/v1/jobs/recordInfo"))
            .query(&[("taskId", task_id)]);
        let data = self.call(request, Call::Query).await?;
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
            "fail" => Ok(TaskStatus::Failed(ProviderError::GenerationFailed(
                format!(
                    "kie failCode {}: {}",
                    info.fail_code.map(|c| c.to_string()).unwrap_or_default(),
                    info.fail_msg.unwrap_or_default()
                ),
            ))),
            other => Err(ProviderError::transient(format!(
                "kie unknown task state {other:?}"
            ))),
        }
    }
}

fn create_body(spec: &JobSpec) -> serde_json::Value {
    let mut input = json!({
        "prompt": spec.prompt,
        "aspect_ratio": match spec.aspect {
            Aspect::Portrait => "portrait",
            Aspect::Landscape | Aspect::Square => "landscape",
        },
        "n_frames": spec.duration_s.to_string(),
        "size": match spec.quality {
            Quality::Standard => "standard",
            Quality::High => "high",
        },
        "remove_watermark": true,
    });
    if !spec.image_urls.is_empty() {
        input["image_urls"] = json!(spec.image_urls);
    }
    json!({ "model": spec.model, "input": input })
}

fn error_for_code(code: i64, msg: String, retry_after: Option<Duration>) -> ProviderError {
    let message = format!("kie code {code}: {msg}");
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
        _ => ProviderError::Transient {
            retry_after,
            message,
        },
    }
}

fn error_for_status(
    status: StatusCode,
    retry_after: Option<Duration>,
    call: Call,
) -> ProviderError {
    let message = format!("kie answered HTTP {status} without an envelope");
    match (status.as_u16(), call) {
        (401 | 403, _) => ProviderError::Auth(message),
        (402, _) => ProviderError::Credits(message),
        (429, _) => ProviderError::RateLimited {
            retry_after,
            message,
        },
        (500 | 502 | 503, _) => ProviderError::Transient {
            retry_after,
            message,
        },
        (400..=499, _) => ProviderError::Invalid(message),
        (_, Call::Create) => ProviderError::UnknownOutcome(message),
        (_, Call::Query) => ProviderError::Transient {
            retry_after,
            message,
        },
    }
}

impl Provider for Kie {
    fn kind(&self) -> ProviderKind {
        ProviderKind::Kie
    }

    fn submit<'a>(
        &'a self,
        _job_id: JobId,
        spec: &'a JobSpec,
    ) -> BoxFuture<'a, Result<String, ProviderError>> {
        self.create(spec).boxed()
    }

    fn query<'a>(&'a self, task_id: &'a str) -> BoxFuture<'a, Result<TaskStatus, ProviderError>> {
        self.record_info(task_id).boxed()
    }

    fn download<'a>(
        &'a self,
        result_url: &'a str,
    ) -> BoxFuture<'a, Result<Download, ProviderError>> {
        http::download(&self.http, result_url).boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reelq_core::ErrorClass;

    #[track_caller]
    fn check(code: i64, expect: ErrorClass) {
        assert_eq!(
            error_for_code(code, "m".into(), None).class(),
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
    }

    #[test]
    fn an_unreadable_answer_to_a_create_may_hide_a_task() {
        let create = error_for_status(StatusCode::GATEWAY_TIMEOUT, None, Call::Create);
        let query = error_for_status(StatusCode::GATEWAY_TIMEOUT, None, Call::Query);
        assert_eq!(create.class(), ErrorClass::UnknownOutcome);
        assert_eq!(query.class(), ErrorClass::Transient);
        let garbage_ok = error_for_status(StatusCode::OK, None, Call::Create);
        assert_eq!(garbage_ok.class(), ErrorClass::UnknownOutcome);
    }

    #[test]
    fn debug_output_hides_the_api_key() {
        let config = KieConfig {
            base_url: "http://127.0.0.1:1".into(),
            api_key: Secret::new("sk-very-secret"),
            request_timeout: Duration::from_secs(1),
        };
        assert!(!format!("{config:?}").contains("sk-very-secret"));
    }
}
