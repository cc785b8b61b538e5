//! HTTP plumbing shared by adapters: one account's client, error classing by HTTP status and
//! for transport failures, `Retry-After`, and result downloads.

use std::time::Duration;

use futures_util::StreamExt;
use reelq_core::{ProviderKind, Secret};
use reqwest::{RequestBuilder, Response, StatusCode, header::RETRY_AFTER};
use serde::{Deserialize, de::DeserializeOwned};
use serde_json::Value;

use crate::{Download, ProviderError};

/// One provider account, whichever the provider.
#[derive(Debug, Clone)]
pub struct AccountConfig {
    /// e.g. `https://api.kie.ai`, or the simulator's address.
    pub base_url: String,
    pub api_key: Secret,
    pub request_timeout: Duration,
    /// The account's callback signing secret, where the provider signs (kie's webhook HMAC
    /// key, or an OpenAI-compatible gateway's `whsec_` secret). When set, every callback must
    /// carry a valid signature.
    pub webhook_secret: Option<Secret>,
}

/// Which call an answer belongs to: an unreadable answer to a create may hide a billed task,
/// while a query can always be asked again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Call {
    Create,
    Query,
}

/// An account's HTTP client, which sends its key with every API call.
/// One account's HTTP client: its base URL, key and timeouts. Public only so that the
/// [`crate::Provider`] trait can name it (the module is private: nothing outside can use it).
pub struct Api {
    pub(crate) config: AccountConfig,
    http: reqwest::Client,
    key_header: KeyHeader,
}

/// How an API takes the account's key.
#[derive(Clone, Copy)]
pub(crate) enum KeyHeader {
    /// `Authorization: Bearer <key>`, as most do.
    Bearer,
    /// A header of its own, e.g. Google's `x-goog-api-key`.
    Named(&'static str),
    /// `Authorization: <scheme> <key>` with a scheme of its own, e.g. fal's `Key`.
    Scheme(&'static str),
    /// `Authorization: Bearer <token>`, the token made from the key for each request (Kling's
    /// JWT, signed with its secret key).
    Signed(fn(&str) -> String),
}

/// What the provider answered, read whole (API answers are small JSON documents).
pub(crate) struct Answer {
    pub(crate) status: StatusCode,
    pub(crate) retry_after: Option<Duration>,
    pub(crate) body: String,
}

impl Api {
    pub(crate) fn new(config: AccountConfig) -> Result<Self, ProviderError> {
        Self::with_key_header(config, KeyHeader::Bearer)
    }

    pub(crate) fn with_key_header(
        config: AccountConfig,
        key_header: KeyHeader,
    ) -> Result<Self, ProviderError> {
        let http = reqwest::Client::builder()
            .timeout(config.request_timeout)
            .build()
            .map_err(|err| ProviderError::Invalid(format!("http client: {err}")))?;
        Ok(Api {
            config,
            http,
            key_header,
        })
    }

    /// `request` with the account's key, as the API takes it.
    fn keyed(&self, request: RequestBuilder) -> RequestBuilder {
        let key = self.config.api_key.expose();
        match self.key_header {
            KeyHeader::Bearer => request.bearer_auth(key),
            KeyHeader::Named(name) => request.header(name, key),
            KeyHeader::Scheme(scheme) => {
                request.header(reqwest::header::AUTHORIZATION, format!("{scheme} {key}"))
            }
            KeyHeader::Signed(token) => request.bearer_auth(token(key)),
        }
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("{}{path}", self.config.base_url.trim_end_matches('/'))
    }

    pub(crate) fn get(&self, path: &str) -> RequestBuilder {
        self.http.get(self.url(path))
    }

    /// A GET of a full URL the provider handed out (a list's next page).
    pub(crate) fn get_url(&self, url: &str) -> RequestBuilder {
        self.http.get(url)
    }

    pub(crate) fn post(&self, path: &str) -> RequestBuilder {
        self.http.post(self.url(path))
    }

    pub(crate) fn delete(&self, path: &str) -> RequestBuilder {
        self.http.delete(self.url(path))
    }

    pub(crate) fn put(&self, path: &str) -> RequestBuilder {
        self.http.put(self.url(path))
    }

    /// Sends an API call with the account's key and reads the answer.
    pub(crate) async fn send(
        &self,
        request: RequestBuilder,
        call: Call,
    ) -> Result<Answer, ProviderError> {
        let response = self
            .keyed(request)
            .send()
            .await
            .map_err(|err| send_error(err, call))?;
        let status = response.status();
        let retry_after = retry_after(&response);
        let body = response.text().await.map_err(|err| send_error(err, call))?;
        Ok(Answer {
            status,
            retry_after,
            body,
        })
    }

    /// GETs a result URL. Result URLs are pre-signed and may live on another host, which must
    /// never see the API key; only a URL on the provider's own API host gets the key.
    pub(crate) async fn download(&self, url: &str) -> Result<Download, ProviderError> {
        let mut request = self.http.get(url);
        if url.starts_with(&self.url("/")) {
            request = self.keyed(request);
        }
        let response = request
            .send()
            .await
            .map_err(|err| send_error(err, Call::Query))?;
        let status = response.status();
        if matches!(
            status,
            StatusCode::FORBIDDEN | StatusCode::NOT_FOUND | StatusCode::GONE
        ) {
            return Err(ProviderError::ResultExpired(format!(
                "download answered {status}"
            )));
        }
        if !status.is_success() {
            return Err(ProviderError::Transient {
                retry_after: retry_after(&response),
                message: format!("download answered {status}"),
            });
        }
        let content_length = response.content_length();
        let body = response
            .bytes_stream()
            .map(|chunk| {
                chunk.map_err(|err| {
                    ProviderError::transient(format!("download: {}", err.without_url()))
                })
            })
            .boxed();
        Ok(Download {
            content_length,
            body,
        })
    }
}

/// Which side of "did the provider act on it?" a transport failure falls on. A create that
/// never left (connection refused) is safe to retry; one that timed out may have been billed.
fn send_error(err: reqwest::Error, call: Call) -> ProviderError {
    let err = err.without_url();
    // Out of descriptors or memory here: the socket never opened, nothing was sent.
    if err.is_connect()
        && let Some(what) = reelq_core::local_exhaustion(&err)
    {
        return ProviderError::LocalResource(format!("{what}: {err}"));
    }
    if err.is_connect() || call == Call::Query {
        ProviderError::transient(format!("transport: {err}"))
    } else {
        ProviderError::UnknownOutcome(format!("transport: {err}"))
    }
}

fn retry_after(response: &Response) -> Option<Duration> {
    let value = response.headers().get(RETRY_AFTER)?.to_str().ok()?;
    value.trim().parse::<u64>().ok().map(Duration::from_secs)
}

/// The class an HTTP status alone implies, for providers that answer errors with a status
/// (and for kie when the body is no envelope). `message` should carry the provider's words.
///
/// A create answered 5xx may have been accepted before something in front of the provider
/// (a gateway, a load balancer), or the provider's own server, failed: no 5xx proves a
/// refusal, so the outcome is unknown ([`read_answer`] names a 500 in the provider's own
/// error shape [`ProviderError::ServerError`], which an account may choose to retry).
///
/// | status                   | class             |
/// |--------------------------|-------------------|
/// | 401, 403                 | `Auth`            |
/// | 402                      | `Credits`         |
/// | 429                      | `RateLimited`     |
/// | other 4xx                | `Invalid`         |
/// | 500, 502, 503, on query  | `Transient`       |
/// | anything else, on create | `UnknownOutcome`  |
/// | anything else, on query  | `Transient`       |
pub(crate) fn status_error(
    status: StatusCode,
    retry_after: Option<Duration>,
    call: Call,
    message: String,
) -> ProviderError {
    match status.as_u16() {
        401 | 403 => ProviderError::Auth(message),
        402 => ProviderError::Credits(message),
        429 => ProviderError::RateLimited {
            retry_after,
            message,
        },
        // A timeout, a conflict (the task may exist already) or "too early" proves no refusal
        // of a create: a gateway or the provider may have taken it.
        408 | 409 | 425 => unreadable(call, retry_after, message),
        400..=499 => ProviderError::Invalid(message),
        _ => unreadable(call, retry_after, message),
    }
}

/// An answer reelq cannot read (a 2xx without the fields it must have, a 504, garbage): on
/// a create the task may exist; a query is simply asked again.
pub(crate) fn unreadable(
    call: Call,
    retry_after: Option<Duration>,
    message: String,
) -> ProviderError {
    match call {
        Call::Create => ProviderError::UnknownOutcome(message),
        Call::Query => ProviderError::Transient {
            retry_after,
            message,
        },
    }
}

/// The provider's own server failed (a 500 in its own words): asked again on a query; on a
/// create the task may exist ([`ProviderError::ServerError`]).
pub(crate) fn server_error(
    call: Call,
    retry_after: Option<Duration>,
    message: String,
) -> ProviderError {
    match call {
        Call::Create => ProviderError::ServerError {
            retry_after,
            message,
        },
        Call::Query => ProviderError::Transient {
            retry_after,
            message,
        },
    }
}

/// `{"error": {"code", "message"}}`, the error body of acedata, evolink and OpenAI-style APIs.
#[derive(Deserialize, Default)]
struct ErrorBody {
    #[serde(default)]
    error: ErrorDetail,
}

#[derive(Deserialize, Default)]
pub(crate) struct ErrorDetail {
    #[serde(default)]
    code: Option<Value>,
    #[serde(default)]
    message: Option<String>,
}

impl ErrorDetail {
    /// `code: message`, the provider's own words for the log and the job record.
    pub(crate) fn describe(&self) -> String {
        let code = match &self.code {
            Some(Value::String(code)) => code.clone(),
            Some(other) => other.to_string(),
            None => String::new(),
        };
        format!("{code}: {}", self.message.as_deref().unwrap_or_default())
    }
}

/// Reads a 2xx answer as `T`, or classes an error answer shaped `{"error": {...}}` (see
/// [`read_answer`]), where OpenAI's 429 `insufficient_quota` is `Credits` (an empty account,
/// not a busy one).
pub(crate) fn read_json<T: DeserializeOwned>(
    provider: ProviderKind,
    answer: &Answer,
    call: Call,
) -> Result<T, ProviderError> {
    read_answer(provider, answer, call, |body| {
        let detail = serde_json::from_str::<ErrorBody>(body)
            .map(|body| body.error)
            .unwrap_or_default();
        let own = detail.code.is_some() || detail.message.is_some();
        let described = detail.describe();
        // OpenAI's `insufficient_quota` (a 429), AceData's `used_up` (a 403: "Your balance
        // is not sufficient"; its official SDK's InsufficientBalanceError).
        let credits =
            described.starts_with("insufficient_quota") || described.starts_with("used_up");
        ErrorWords {
            own,
            credits,
            words: described,
        }
    })
}

/// What a provider's error body says, as its adapter reads it.
pub(crate) struct ErrorWords {
    /// The body is the provider's own error shape (not a gateway's page).
    pub(crate) own: bool,
    /// The words say the account has no credit left.
    pub(crate) credits: bool,
    pub(crate) words: String,
}

/// Reads a 2xx answer as `T`, or classes an error answer from what `read_words` finds in its
/// body: `Credits` where the words say so, `Moderation` for a 4xx naming moderation, and a
/// 500 whose body is the provider's own error `Transient` on a query and
/// [`ProviderError::ServerError`] on a create (the provider's server may have failed after
/// accepting the task: its 500 proves no refusal); otherwise by the HTTP status
/// ([`status_error`]).
pub(crate) fn read_answer<T: DeserializeOwned>(
    provider: ProviderKind,
    answer: &Answer,
    call: Call,
    read_words: impl FnOnce(&str) -> ErrorWords,
) -> Result<T, ProviderError> {
    if answer.status.is_success() {
        return serde_json::from_str(&answer.body).map_err(|err| {
            unreadable(
                call,
                answer.retry_after,
                format!("{provider} answer unreadable: {err}"),
            )
        });
    }
    let ErrorWords {
        own,
        credits,
        words,
    } = read_words(&answer.body);
    let message = format!("{provider} HTTP {} {words}", answer.status.as_u16());
    if credits {
        return Err(ProviderError::Credits(message));
    }
    if answer.status.is_client_error() && names_moderation(&words) {
        return Err(ProviderError::Moderation(message));
    }
    if answer.status == StatusCode::INTERNAL_SERVER_ERROR && own {
        return Err(server_error(call, answer.retry_after, message));
    }
    Err(status_error(
        answer.status,
        answer.retry_after,
        call,
        message,
    ))
}

/// A task the provider ended without a video: refused content, or a failed generation.
pub(crate) fn task_failure(message: String) -> ProviderError {
    if names_moderation(&message) {
        ProviderError::Moderation(message)
    } else {
        ProviderError::GenerationFailed(message)
    }
}

/// Whether a provider's error code or message says moderation refused the content. No
/// provider documents one code for it, so reelq reads the words and codes they use: Sora's
/// `moderation_blocked` (during generation) and `sentinel_block` (at the request, whose
/// message names nothing: "Hmmm something didn't look right with your request."), and the
/// `prompt_unsafe` / `image_unsafe` / `video_unsafe` family gateways answer with.
pub(crate) fn names_moderation(text: &str) -> bool {
    let text = text.to_ascii_lowercase();
    [
        "moderation",
        "content_policy",
        "content policy",
        "safety",
        "sentinel_block",
        "_unsafe",
        "flagged as unsafe",
        // Replicate's E005: "The input or output was flagged as sensitive."
        "flagged as sensitive",
        // Google's refusals cite its "Responsible AI practices".
        "responsible ai",
        // Ark's `SensitiveContentDetected` family (`InputTextSensitiveContentDetected`,
        // `OutputVideoSensitiveContentDetected.PolicyViolation`, ...).
        "sensitivecontentdetected",
        // DashScope's checks of inputs and outputs.
        "datainspectionfailed",
        "ipinfringementsuspect",
    ]
    .iter()
    .any(|word| text.contains(word))
}

/// This host's clock in unix seconds: how far back a provider's list still reaches.
pub(crate) fn now_s() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;
    use reelq_core::ErrorClass;

    #[test]
    fn each_status_row_has_its_class() {
        let rows = [
            (401, Call::Create, ErrorClass::Auth),
            (403, Call::Query, ErrorClass::Auth),
            (402, Call::Create, ErrorClass::Credits),
            (429, Call::Create, ErrorClass::RateLimited),
            (500, Call::Create, ErrorClass::UnknownOutcome),
            (502, Call::Create, ErrorClass::UnknownOutcome),
            (503, Call::Create, ErrorClass::UnknownOutcome),
            (500, Call::Query, ErrorClass::Transient),
            (502, Call::Query, ErrorClass::Transient),
            (503, Call::Query, ErrorClass::Transient),
            (404, Call::Query, ErrorClass::Invalid),
            (422, Call::Create, ErrorClass::Invalid),
            (504, Call::Create, ErrorClass::UnknownOutcome),
            (504, Call::Query, ErrorClass::Transient),
            (200, Call::Create, ErrorClass::UnknownOutcome),
            // No refusal of a create: a route must not move such a job on.
            (408, Call::Create, ErrorClass::UnknownOutcome),
            (409, Call::Create, ErrorClass::UnknownOutcome),
            (425, Call::Create, ErrorClass::UnknownOutcome),
            (409, Call::Query, ErrorClass::Transient),
        ];
        for (status, call, class) in rows {
            let status = StatusCode::from_u16(status).unwrap();
            let err = status_error(status, None, call, "m".into());
            assert_eq!(err.class(), class, "HTTP {status} on {call:?}");
        }
    }

    fn answer(status: u16, body: &str) -> Answer {
        Answer {
            status: StatusCode::from_u16(status).unwrap(),
            retry_after: None,
            body: body.to_owned(),
        }
    }

    #[test]
    fn error_bodies_refine_the_status_class() {
        let rows = [
            // acedata
            (
                400,
                r#"{"success":false,"error":{"code":"token_mismatched","message":"m"}}"#,
                ErrorClass::Invalid,
            ),
            (
                400,
                r#"{"success":false,"error":{"code":"content_policy_violation","message":"m"}}"#,
                ErrorClass::Moderation,
            ),
            (
                401,
                r#"{"success":false,"error":{"code":"invalid_token","message":"m"}}"#,
                ErrorClass::Auth,
            ),
            (
                429,
                r#"{"success":false,"error":{"code":"too_many_requests","message":"m"}}"#,
                ErrorClass::RateLimited,
            ),
            // the provider's own server failing on a create may have accepted the task first
            (
                500,
                r#"{"success":false,"error":{"code":"api_error","message":"m"}}"#,
                ErrorClass::UnknownOutcome,
            ),
            // evolink
            (
                402,
                r#"{"error":{"code":"insufficient_balance","message":"m","type":"t"}}"#,
                ErrorClass::Credits,
            ),
            (
                422,
                r#"{"error":{"code":"invalid_parameters","message":"m","type":"t"}}"#,
                ErrorClass::Invalid,
            ),
            // 502/503 come from whatever stands in front of the provider, which may have
            // accepted the create already: never proof of a refusal
            (
                503,
                r#"{"error":{"code":"service_unavailable","message":"m","type":"t"}}"#,
                ErrorClass::UnknownOutcome,
            ),
            // OpenAI-style
            (
                400,
                r#"{"error":{"code":"moderation_blocked","message":"m","type":"t"}}"#,
                ErrorClass::Moderation,
            ),
            (
                429,
                r#"{"error":{"code":"insufficient_quota","message":"m","type":"t"}}"#,
                ErrorClass::Credits,
            ),
            (
                429,
                r#"{"error":{"code":"rate_limit_exceeded","message":"m","type":"t"}}"#,
                ErrorClass::RateLimited,
            ),
            // a 5xx that says "safety" is still a server fault, not a refusal
            (
                500,
                r#"{"error":{"code":"safety_system_down","message":"m"}}"#,
                ErrorClass::UnknownOutcome,
            ),
            (502, "<html>bad gateway</html>", ErrorClass::UnknownOutcome),
            // a 500 without the provider's own error body: a gateway's, not a refusal
            (
                500,
                "<html>internal error</html>",
                ErrorClass::UnknownOutcome,
            ),
            (500, "", ErrorClass::UnknownOutcome),
        ];
        for (status, body, class) in rows {
            let err =
                read_json::<Value>(ProviderKind::Evolink, &answer(status, body), Call::Create)
                    .unwrap_err();
            assert_eq!(err.class(), class, "HTTP {status} {body}");
        }
    }

    #[test]
    fn an_unreadable_2xx_is_an_unknown_outcome_on_create_and_transient_on_query() {
        let garbage = answer(200, "not json");
        let create = read_json::<ErrorDetail>(ProviderKind::Openai, &garbage, Call::Create);
        let query = read_json::<ErrorDetail>(ProviderKind::Openai, &garbage, Call::Query);
        assert_eq!(
            create.err().map(|e| e.class()),
            Some(ErrorClass::UnknownOutcome)
        );
        assert_eq!(query.err().map(|e| e.class()), Some(ErrorClass::Transient));
    }

    #[test]
    fn moderation_is_read_from_the_providers_words() {
        assert!(names_moderation("content_policy_violation"));
        assert!(names_moderation(
            "Your prompt was blocked by our moderation system"
        ));
        // The refusals Sora-serving gateways answer with, codes first (`describe` puts the
        // code before the message).
        assert!(names_moderation(
            "sentinel_block: Hmmm something didn't look right with your request."
        ));
        assert!(names_moderation("prompt_unsafe"));
        assert!(names_moderation(
            "video_unsafe: The generated video was flagged as unsafe"
        ));
        assert!(!names_moderation("internal error"));
        assert!(!names_moderation("invalid_request: unsupported value"));
    }
}
