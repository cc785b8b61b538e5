//! Google's Veo models through the Gemini API (`docs/providers.md` section 6), read from
//! Google's pages for it (ai.google.dev/gemini-api/docs/video, "Generate videos with Veo";
//! the long-running operations reference, ai.google.dev/api/operations) and its error
//! reference (ai.google.dev/gemini-api/docs/troubleshooting):
//!
//! - create: `POST /v1beta/models/{model}:predictLongRunning` with the key in
//!   `x-goog-api-key`, `{"instances": [{"prompt"}], "parameters": {aspectRatio, resolution,
//!   durationSeconds, negativePrompt, personGeneration, seed}}`; the answer is an operation,
//!   `{"name": "models/{model}/operations/{id}"}`, whose name is the task id;
//! - status: `GET /v1beta/{name}`: `done` absent or false while generating; then `error` (a
//!   `google.rpc.Status`) or `response.generateVideoResponse.generatedSamples[].video.uri`,
//!   a file on the API host fetched with the key; a response whose videos the safety filters
//!   removed carries `raiMediaFilteredCount` and `raiMediaFilteredReasons` instead;
//! - no callbacks: polling only;
//! - `GET /v1beta/models` lists the models the key may use, the free probe.
//!
//! | answer                                          | class              |
//! |-------------------------------------------------|--------------------|
//! | 400, 404 (`{"error": {code, message, status}}`) | `Invalid`          |
//! | 400 `API key not valid` / `API_KEY_INVALID`, 401, 403 | `Auth`       |
//! | 400 `FAILED_PRECONDITION` naming billing        | `Credits`          |
//! | 402 `RESOURCE_EXHAUSTED` ("Your Prepay credit balance is depleted", Google's errors page); 429 naming the prepayment ("Your prepayment credits are depleted") | `Credits` |
//! | 4xx naming moderation, safety or Responsible AI | `Moderation`       |
//! | 429 `RESOURCE_EXHAUSTED` (honouring `Retry-After`) | `RateLimited`   |
//! | 500 with Google's error body                    | query: `Transient`; create: `ServerError` (unknown outcome) |
//! | query: other 5xx                                | `Transient`        |
//! | create: no answer, reset, unreadable 2xx, 502, 503, 504, 500 without an error body | `UnknownOutcome` |
//! | operation `error`                               | `GenerationFailed` (`Moderation` if it names it) |
//! | `raiMediaFilteredCount` > 0 and no video        | `Moderation`       |
//!
//! Google answers a bad API key with 400 `INVALID_ARGUMENT` ("API key not valid"), not 401:
//! read as a refused key. The Gemini API takes images as inline bytes, not URLs, so these
//! rows take no images (a job's image URLs would need fetching first). Operations are not
//! listed, so an `uncertain` create (its answer lost) is not reconciled from the provider's
//! records: it waits for an operator (`reelq jobs resolve`).

use futures_util::{FutureExt, future::BoxFuture};
use reelq_core::{JobSpec, ProviderKind};
use reqwest::header::HeaderMap;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::{
    AccountCheck, AccountConfig, CallbackError, CallbackHint, Provider, ProviderError, Submission,
    TaskStatus,
    http::{Answer, Api, Call, KeyHeader, read_json, task_failure},
    request::request_fields,
};

/// One Gemini API key.
pub struct Gemini {
    api: Api,
}

/// A long-running operation.
#[derive(Deserialize)]
struct Operation {
    name: String,
    #[serde(default)]
    done: Option<bool>,
    #[serde(default)]
    error: Option<Status>,
    #[serde(default)]
    response: Option<OperationResponse>,
}

/// A `google.rpc.Status`.
#[derive(Deserialize)]
struct Status {
    #[serde(default)]
    message: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct OperationResponse {
    #[serde(default)]
    generate_video_response: Option<VideoResponse>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct VideoResponse {
    #[serde(default)]
    generated_samples: Option<Vec<Sample>>,
    #[serde(default)]
    rai_media_filtered_count: Option<u32>,
    #[serde(default)]
    rai_media_filtered_reasons: Option<Vec<String>>,
}

#[derive(Deserialize)]
struct Sample {
    #[serde(default)]
    video: Option<Video>,
}

#[derive(Deserialize)]
struct Video {
    uri: String,
}

/// `GET /v1beta/models`.
#[derive(Deserialize)]
struct ModelList {
    #[serde(default)]
    models: Vec<Model>,
}

#[derive(Deserialize)]
struct Model {
    name: String,
}

impl Operation {
    fn into_status(self) -> Result<TaskStatus, ProviderError> {
        if self.done != Some(true) {
            return Ok(TaskStatus::Running);
        }
        if let Some(error) = self.error {
            let why = error.message.unwrap_or_default();
            return Ok(TaskStatus::Failed(task_failure(format!(
                "gemini operation failed: {why}"
            ))));
        }
        let video = self
            .response
            .and_then(|response| response.generate_video_response)
            .unwrap_or_default();
        let uri = video
            .generated_samples
            .into_iter()
            .flatten()
            .find_map(|sample| sample.video.map(|video| video.uri));
        match (uri, video.rai_media_filtered_count) {
            (Some(result_url), _) => Ok(TaskStatus::Succeeded { result_url }),
            (None, Some(filtered)) if filtered > 0 => {
                let reasons = video.rai_media_filtered_reasons.unwrap_or_default();
                Ok(TaskStatus::Failed(ProviderError::Moderation(format!(
                    "gemini: the safety filters removed the video: {}",
                    reasons.join("; ")
                ))))
            }
            (None, _) => Err(ProviderError::transient(
                "gemini operation done without a video",
            )),
        }
    }
}

/// [`read_json`], with Google's own readings first: a bad key is a 400 `INVALID_ARGUMENT`,
/// an account without billing a 400 `FAILED_PRECONDITION`.
fn read<T: serde::de::DeserializeOwned>(answer: &Answer, call: Call) -> Result<T, ProviderError> {
    if answer.status.as_u16() == 400 {
        let body = &answer.body;
        let message = || format!("gemini HTTP 400 {body}");
        if body.contains("API_KEY_INVALID") || body.contains("API key not valid") {
            return Err(ProviderError::Auth(message()));
        }
        if body.contains("FAILED_PRECONDITION") && body.to_ascii_lowercase().contains("billing") {
            return Err(ProviderError::Credits(message()));
        }
    }
    // Google's errors page documents an empty prepay balance as 402 RESOURCE_EXHAUSTED ("Do
    // not retry", `Credits` by its status); it is also answered as a 429 naming the
    // prepayment, which is no rate limit: waiting does not refill the account.
    let lowered = answer.body.to_ascii_lowercase();
    if answer.status.as_u16() == 429
        && (lowered.contains("prepayment") || lowered.contains("credits are depleted"))
    {
        return Err(ProviderError::Credits(format!(
            "gemini HTTP 429 {}",
            answer.body
        )));
    }
    read_json(ProviderKind::Gemini, answer, call)
}

impl Gemini {
    pub fn new(config: AccountConfig) -> Result<Self, ProviderError> {
        Ok(Gemini {
            api: Api::with_key_header(config, KeyHeader::Named("x-goog-api-key"))?,
        })
    }

    async fn create(&self, spec: &JobSpec) -> Result<String, ProviderError> {
        let request = self
            .api
            .post(&format!("/v1beta/models/{}:predictLongRunning", spec.model))
            .json(&create_body(spec));
        let answer = self.api.send(request, Call::Create).await?;
        let operation: Operation = read(&answer, Call::Create)?;
        Ok(operation.name)
    }

    async fn operation(&self, name: &str) -> Result<TaskStatus, ProviderError> {
        let request = self.api.get(&format!("/v1beta/{name}"));
        let answer = self.api.send(request, Call::Query).await?;
        read::<Operation>(&answer, Call::Query)?.into_status()
    }
}

/// The prompt (and image, were there one) in the instance; every other field a parameter.
fn create_body(spec: &JobSpec) -> Value {
    let mut parameters = request_fields(spec);
    let prompt = parameters.remove("prompt").unwrap_or_default();
    json!({ "instances": [{ "prompt": prompt }], "parameters": parameters })
}

impl Provider for Gemini {
    fn kind(&self) -> ProviderKind {
        ProviderKind::Gemini
    }

    /// The Gemini API calls nobody back: `callback_url` is not sent, polling finds the end.
    fn submit<'a>(
        &'a self,
        submission: Submission<'a>,
    ) -> BoxFuture<'a, Result<String, ProviderError>> {
        self.create(submission.spec).boxed()
    }

    fn parse_callback(
        &self,
        _headers: &HeaderMap,
        _body: &[u8],
        _now_s: u64,
    ) -> Result<CallbackHint, CallbackError> {
        Err(CallbackError::Malformed(
            "the Gemini API sends no callbacks".into(),
        ))
    }

    fn query<'a>(
        &'a self,
        _spec: &'a JobSpec,
        task_id: &'a str,
    ) -> BoxFuture<'a, Result<TaskStatus, ProviderError>> {
        self.operation(task_id).boxed()
    }

    /// `GET /v1beta/models`: the key is accepted, and the models it may use.
    fn check_account(&self) -> BoxFuture<'_, Result<AccountCheck, ProviderError>> {
        async move {
            let answer = self
                .api
                .send(self.api.get("/v1beta/models"), Call::Query)
                .await?;
            let list: ModelList = read(&answer, Call::Query)?;
            let models = list.models.into_iter().map(|model| {
                model
                    .name
                    .strip_prefix("models/")
                    .map_or(model.name.clone(), str::to_owned)
            });
            Ok(AccountCheck {
                credits: None,
                models: Some(models.collect()),
            })
        }
        .boxed()
    }

    /// The video's URI is a file on the API host: fetched with the key.
    fn api(&self) -> &Api {
        &self.api
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(body: &str) -> Result<TaskStatus, ProviderError> {
        serde_json::from_str::<Operation>(body)
            .unwrap()
            .into_status()
    }

    #[test]
    fn an_empty_prepay_balance_is_out_of_credits_as_a_402_or_a_429_naming_it() {
        let class = |status: u16, message: &str| {
            let body = serde_json::json!({
                "error": { "code": status, "message": message, "status": "RESOURCE_EXHAUSTED" }
            });
            let answer = Answer {
                status: reqwest::StatusCode::from_u16(status).unwrap(),
                retry_after: None,
                body: body.to_string(),
            };
            read::<serde_json::Value>(&answer, Call::Create)
                .unwrap_err()
                .class()
        };
        use reelq_core::ErrorClass::{Credits, RateLimited};
        assert_eq!(
            class(402, "Your Prepay credit balance is depleted."),
            Credits
        );
        assert_eq!(
            class(
                429,
                "Your prepayment credits are depleted. Please go to AI Studio"
            ),
            Credits
        );
        assert_eq!(
            class(429, "Resource has been exhausted (e.g. check quota)."),
            RateLimited
        );
    }

    #[test]
    fn an_operation_reads_as_running_done_failed_or_filtered() {
        let name = r#""name":"models/veo-3.0-generate-001/operations/abc""#;
        assert_eq!(status(&format!("{{{name}}}")).unwrap(), TaskStatus::Running);
        let done = format!(
            r#"{{{name},"done":true,"response":{{"generateVideoResponse":{{"generatedSamples":[{{"video":{{"uri":"https://g.example/v1beta/files/f:download?alt=media"}}}}]}}}}}}"#
        );
        assert_eq!(
            status(&done).unwrap(),
            TaskStatus::Succeeded {
                result_url: "https://g.example/v1beta/files/f:download?alt=media".into()
            }
        );
        let filtered = format!(
            r#"{{{name},"done":true,"response":{{"generateVideoResponse":{{"raiMediaFilteredCount":1,"raiMediaFilteredReasons":["unsafe"]}}}}}}"#
        );
        assert!(matches!(
            status(&filtered).unwrap(),
            TaskStatus::Failed(ProviderError::Moderation(_))
        ));
        let failed =
            format!(r#"{{{name},"done":true,"error":{{"code":13,"message":"internal"}}}}"#);
        assert!(matches!(
            status(&failed).unwrap(),
            TaskStatus::Failed(ProviderError::GenerationFailed(_))
        ));
    }
}
