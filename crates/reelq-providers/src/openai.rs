//! OpenAI-compatible Videos API gateways (`docs/providers.md` section 4): `POST /v1/videos`,
//! `GET /v1/videos/{id}`, the MP4 from `GET /v1/videos/{id}/content` (with the key), its
//! still image from the same path with `?variant=thumbnail` (OpenAI's API reference,
//! "Retrieve video content": `variant` video, thumbnail or spritesheet), and account-level
//! webhooks signed per Standard Webhooks.
//!
//! Reconciliation reads `GET /v1/videos?order=desc&limit=100&after=<id>` (OpenAI's API
//! reference, "List videos": `data`, `has_more`, `first_id`/`last_id`, at most 100 a page)
//! and the Video object's echo of the request: `model`, `seconds`, `size`, `created_at`, and
//! `prompt` (present in OpenAI's Video object, "the prompt that was used to generate the
//! video"; absent from some gateways, so matching works without it).
//!
//! | answer                                          | class              |
//! |-------------------------------------------------|--------------------|
//! | 400, 404, 422                                   | `Invalid`          |
//! | 400 `moderation_blocked` (any code or message naming moderation) | `Moderation` |
//! | 401, 403                                        | `Auth`             |
//! | 402, 429 `insufficient_quota`                   | `Credits`          |
//! | 429 otherwise (honouring `Retry-After`)         | `RateLimited`      |
//! | 500 with the gateway's `{error}` body           | query: `Transient`; create: `ServerError` (unknown outcome) |
//! | query: other 5xx                                | `Transient`        |
//! | create: no answer, reset, unreadable 2xx, 502, 503, 504, 500 without `{error}` | `UnknownOutcome` |
//!
//! Proof of refusal on a create: the 4xx rows. An OpenAI-compatible gateway forwards to an
//! upstream it does not control, so any 5xx, a 500 in its own `{error}` shape too, may follow
//! an accepted (billed) create.
//! | video `status: failed`                          | `GenerationFailed` (`Moderation` if its error names it) |

use futures_util::{FutureExt, future::BoxFuture};
use reelq_core::{JobSpec, ProviderKind};
use reqwest::header::HeaderMap;
use serde::Deserialize;
use serde_json::json;

use crate::{
    AccountCheck, AccountConfig, CallbackError, CallbackHint, CallbackScope, Provider,
    ProviderError, ProviderTask, RecentTasks, Submission, TaskEcho, TaskStatus, WebhookKey,
    http::{Api, Call, ErrorDetail, read_json, task_failure},
    request::{echo_of, request_fields},
};

/// One account at an OpenAI-compatible gateway.
pub struct Openai {
    api: Api,
    /// The account's webhook secret; without it no callback is accepted, because nothing
    /// else (no per-job URL) could authenticate one.
    webhook_key: Option<WebhookKey>,
}

#[derive(Deserialize)]
struct Video {
    id: String,
    status: String,
    #[serde(default)]
    error: Option<ErrorDetail>,
    #[serde(default)]
    created_at: Option<u64>,
    #[serde(default)]
    model: Option<String>,
    #[serde(default)]
    seconds: Option<String>,
    #[serde(default)]
    size: Option<String>,
    /// Echoed by some gateways; absent from others.
    #[serde(default)]
    prompt: Option<String>,
}

impl Video {
    /// The video as the provider's record of a create: what it echoes of the request.
    fn into_task(self) -> ProviderTask {
        let echo: TaskEcho = [
            ("model", self.model),
            ("seconds", self.seconds),
            ("size", self.size),
            ("prompt", self.prompt),
        ]
        .into_iter()
        .filter_map(|(field, value)| Some((field.to_owned(), value?)))
        .collect();
        ProviderTask {
            task_id: self.id,
            created_s: self.created_at.unwrap_or_default(),
            echo,
        }
    }
}

/// `GET /v1/models`: the models the key may use.
#[derive(Deserialize)]
struct ModelList {
    data: Vec<ModelEntry>,
}

#[derive(Deserialize)]
struct ModelEntry {
    id: String,
}

/// A page of `GET /v1/videos`.
#[derive(Deserialize)]
struct VideoList {
    data: Vec<Video>,
    #[serde(default)]
    has_more: bool,
}

/// Pages of 100 read when listing, at most: enough for an hour of a busy account, bounded
/// so a reconcile pass stays cheap.
const MAX_LIST_PAGES: usize = 20;

/// A webhook event: `{"type": "video.completed", "data": {"id": "video_..."}}`.
#[derive(Deserialize)]
struct Event {
    #[serde(rename = "type")]
    kind: String,
    data: EventData,
}

#[derive(Deserialize)]
struct EventData {
    id: String,
}

impl Openai {
    pub fn new(config: AccountConfig) -> Result<Self, ProviderError> {
        let webhook_key = config
            .webhook_secret
            .as_ref()
            .map(|secret| WebhookKey::parse(secret.expose()))
            .transpose()
            .map_err(|err| ProviderError::Invalid(format!("openai webhook_secret: {err}")))?;
        Ok(Openai {
            api: Api::new(config)?,
            webhook_key,
        })
    }

    async fn create(&self, spec: &JobSpec) -> Result<String, ProviderError> {
        let request = self.api.post("/v1/videos").json(&create_body(spec));
        let answer = self.api.send(request, Call::Create).await?;
        let video: Video = read_json(ProviderKind::Openai, &answer, Call::Create)?;
        Ok(video.id)
    }

    async fn video(&self, video_id: &str) -> Result<Video, ProviderError> {
        let request = self.api.get(&format!("/v1/videos/{video_id}"));
        let answer = self.api.send(request, Call::Query).await?;
        read_json(ProviderKind::Openai, &answer, Call::Query)
    }

    /// `GET /v1/videos?order=desc&limit=100&after=...` until a page reaches back past
    /// `since_s` or the list ends.
    async fn list_since(&self, since_s: u64) -> Result<RecentTasks, ProviderError> {
        let mut tasks: Vec<ProviderTask> = Vec::new();
        let mut after: Option<String> = None;
        let mut complete = false;
        for _ in 0..MAX_LIST_PAGES {
            let mut query = vec![("order", "desc".to_owned()), ("limit", "100".to_owned())];
            if let Some(after) = &after {
                query.push(("after", after.clone()));
            }
            let request = self.api.get("/v1/videos").query(&query);
            let answer = self.api.send(request, Call::Query).await?;
            let page: VideoList = read_json(ProviderKind::Openai, &answer, Call::Query)?;
            let more = page.has_more;
            tasks.extend(page.data.into_iter().map(Video::into_task));
            let Some(last) = tasks.last() else {
                complete = true;
                break;
            };
            if !more || last.created_s < since_s {
                complete = true;
                break;
            }
            after = Some(last.task_id.clone());
        }
        tasks.retain(|task| task.created_s >= since_s);
        Ok(RecentTasks { tasks, complete })
    }

    async fn retrieve(&self, video_id: &str) -> Result<TaskStatus, ProviderError> {
        let video = self.video(video_id).await?;
        match video.status.as_str() {
            "queued" | "in_progress" => Ok(TaskStatus::Running),
            "completed" => Ok(TaskStatus::Succeeded {
                result_url: self.api.url(&format!("/v1/videos/{}/content", video.id)),
            }),
            "failed" => {
                let why = video.error.map(|e| e.describe()).unwrap_or_default();
                Ok(TaskStatus::Failed(task_failure(format!(
                    "openai video failed {why}"
                ))))
            }
            other => Err(ProviderError::transient(format!(
                "openai unknown video status {other:?}"
            ))),
        }
    }
}

fn create_body(spec: &JobSpec) -> serde_json::Value {
    let mut body = request_fields(spec);
    body.insert("model".into(), json!(spec.model));
    serde_json::Value::Object(body)
}

impl Provider for Openai {
    fn kind(&self) -> ProviderKind {
        ProviderKind::Openai
    }

    fn callback_scope(&self) -> CallbackScope {
        CallbackScope::Account
    }

    /// Webhooks are configured on the account, so `callback_url` is not sent.
    fn submit<'a>(
        &'a self,
        submission: Submission<'a>,
    ) -> BoxFuture<'a, Result<String, ProviderError>> {
        self.create(submission.spec).boxed()
    }

    fn parse_callback(
        &self,
        headers: &HeaderMap,
        body: &[u8],
        now_s: u64,
    ) -> Result<CallbackHint, CallbackError> {
        let key = self
            .webhook_key
            .as_ref()
            .ok_or(CallbackError::BadSignature)?;
        key.verify(headers, body, now_s)?;
        let event: Event = serde_json::from_slice(body)
            .map_err(|err| CallbackError::Malformed(err.to_string()))?;
        CallbackHint::new(
            event.data.id,
            !matches!(event.kind.as_str(), "video.completed" | "video.failed"),
        )
    }

    fn query<'a>(
        &'a self,
        _spec: &'a JobSpec,
        task_id: &'a str,
    ) -> BoxFuture<'a, Result<TaskStatus, ProviderError>> {
        self.retrieve(task_id).boxed()
    }

    fn lists_tasks(&self) -> bool {
        true
    }

    fn echo(&self, spec: &JobSpec) -> TaskEcho {
        let body = create_body(spec);
        echo_of(&body["model"], body.as_object().expect("an object"))
    }

    fn recent_tasks(&self, since_s: u64) -> BoxFuture<'_, Result<RecentTasks, ProviderError>> {
        self.list_since(since_s).boxed()
    }

    fn task_record<'a>(
        &'a self,
        task_id: &'a str,
    ) -> BoxFuture<'a, Result<Option<ProviderTask>, ProviderError>> {
        async move { Ok(Some(self.video(task_id).await?.into_task())) }.boxed()
    }

    /// `GET /v1/models`: the key is accepted, and the models it may use.
    fn check_account(&self) -> BoxFuture<'_, Result<AccountCheck, ProviderError>> {
        async move {
            let answer = self
                .api
                .send(self.api.get("/v1/models"), Call::Query)
                .await?;
            let list: ModelList = read_json(ProviderKind::Openai, &answer, Call::Query)?;
            Ok(AccountCheck {
                credits: None,
                models: Some(list.data.into_iter().map(|model| model.id).collect()),
            })
        }
        .boxed()
    }

    fn api(&self) -> &Api {
        &self.api
    }

    /// The Videos API's `GET /videos/{id}/content?variant=thumbnail` ("Which downloadable
    /// asset to return. Defaults to the MP4 video": video, thumbnail or spritesheet).
    fn thumbnail_url(&self, result_url: &str) -> Option<String> {
        Some(format!("{result_url}?variant=thumbnail"))
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use reelq_core::Secret;

    use super::*;

    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const NOW_S: u64 = 1_780_000_000;
    const BODY: &[u8] =
        br#"{"id":"evt_1","object":"event","type":"video.completed","data":{"id":"video_1"}}"#;

    fn openai(secret: Option<&str>) -> Openai {
        Openai::new(AccountConfig {
            base_url: "http://127.0.0.1:1".into(),
            api_key: Secret::new("k"),
            request_timeout: Duration::from_secs(1),
            webhook_secret: secret.map(Secret::new),
        })
        .unwrap()
    }

    fn signed(body: &[u8]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        let signature = WebhookKey::parse(SECRET)
            .unwrap()
            .sign("msg_1", NOW_S, body);
        headers.insert("webhook-id", "msg_1".parse().unwrap());
        headers.insert("webhook-timestamp", NOW_S.to_string().parse().unwrap());
        headers.insert("webhook-signature", signature.parse().unwrap());
        headers
    }

    #[test]
    fn a_signed_webhook_names_its_video() {
        let hint = openai(Some(SECRET))
            .parse_callback(&signed(BODY), BODY, NOW_S)
            .unwrap();
        assert_eq!(
            (hint.task_id.as_str(), hint.progress_only),
            ("video_1", false)
        );
    }

    #[test]
    fn without_a_secret_or_a_valid_signature_no_webhook_is_accepted() {
        let unsigned = openai(None).parse_callback(&signed(BODY), BODY, NOW_S);
        assert_eq!(unsigned.unwrap_err(), CallbackError::BadSignature);
        let tampered =
            br#"{"id":"evt_1","object":"event","type":"video.completed","data":{"id":"video_2"}}"#;
        let forged = openai(Some(SECRET)).parse_callback(&signed(BODY), tampered, NOW_S);
        assert_eq!(forged.unwrap_err(), CallbackError::BadSignature);
    }

    #[test]
    fn a_bad_secret_is_a_config_error() {
        let err = Openai::new(AccountConfig {
            webhook_secret: Some(Secret::new("whsec_!!!")),
            ..openai(None).api.config.clone()
        })
        .err()
        .expect("refused");
        assert!(err.to_string().contains("whsec_"), "{err}");
    }
}
