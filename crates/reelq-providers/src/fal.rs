//! fal.ai's queue API (`docs/providers.md` section 7), read from fal's queue and webhook pages
//! (fal.ai/docs/documentation/model-apis/inference/queue and .../webhooks, "Verifying your
//! webhook") and each model's API page (e.g. `fal-ai/kling-video/v2.1/master/text-to-video`):
//!
//! - submit: `POST {base}/{model}?fal_webhook={url}` with the model's input as the body and
//!   `Authorization: Key <key>`; the answer's `request_id` is the task id;
//! - status: `GET {base}/{app}/requests/{id}/status` (`app` is the model id's first two
//!   segments, as fal's queue addresses requests): `IN_QUEUE | IN_PROGRESS | COMPLETED`; then
//!   the result from `GET {base}/{app}/requests/{id}` (`{"video": {"url"}}`), or the error it
//!   answers for a request that failed;
//! - webhooks: `{request_id, status: OK | ERROR, payload, error}` to the per-job URL, signed
//!   with ED25519: `X-Fal-Webhook-Signature` (hex) over `request id \n user id \n timestamp \n
//!   sha256-hex(body)` from the `X-Fal-Webhook-*` headers, the timestamp within 5 minutes, by
//!   one of the keys fal publishes as a JWKS (`https://rest.alpha.fal.ai/.well-known/jwks.json`
//!   for fal itself; `{base}/.well-known/jwks.json` for any other base, such as the
//!   simulator). The keys are cached; a signature no cached key verifies refetches them once.
//!
//! | answer                                          | class              |
//! |-------------------------------------------------|--------------------|
//! | 400, 404, 422 (`{"detail": ...}`)               | `Invalid`          |
//! | 4xx naming moderation or content policy         | `Moderation`       |
//! | 401                                             | `Auth`             |
//! | 402; 403 `User is locked. Reason: ...` (every lock reason fal's REST API lists: balance exhausted, budget exceeded, no payment method, `TOP_UP`, an admin lock) | `Credits` (the key is good; the account is stopped: paused, for an operator) |
//! | 403 otherwise                                   | `Auth`             |
//! | 429 (honouring `Retry-After`)                   | `RateLimited`      |
//! | 500 with fal's `{"detail"}` body                | query: `Transient`; create: `ServerError` (unknown outcome) |
//! | query: other 5xx                                | `Transient`        |
//! | create: no answer, reset, unreadable 2xx, 502, 503, 504, 500 without a body | `UnknownOutcome` |
//! | a completed request whose status carries `error` (`error_type` beside it), or whose result answers anything but 2xx or 429 (fal: "the HTTP status code ... returned by the model": 4xx an invalid request, 5xx a model error) | `GenerationFailed` (`Moderation` if it names it) |
//!
//! A job of a low-priority batch is submitted with `X-Fal-Queue-Priority: low` (the queue
//! page: `normal`, the default, or `low`, which waits behind every normal request of the
//! endpoint).
//!
//! Cancel (fal's queue page and "Cancel a request"): `PUT {base}/{app}/requests/{id}/cancel`,
//! answered 202 `CANCELLATION_REQUESTED` (queued requests are removed; running ones get a
//! signal, and the model decides how to stop), 400 `ALREADY_COMPLETED` or 404 `NOT_FOUND`;
//! the per-endpoint OpenAPI documents a 200 `{"success": bool}` instead, so any 2xx is a
//! taken cancel. Either answer is final: the worker records it and does not ask again.
//! **Assumed**: a cancelled request then completes without a result (its result answers an
//! error), which is how a job asked to cancel ends `cancelled`.
//!
//! Read against fal's queue documentation, the official clients (fal-js
//! `libs/client/src/types`, fal_client `client.py`, whose status reader needs `logs` and
//! `queue_position`) and the lock reasons of fal's REST OpenAPI (`openapi-fal-rest`); the
//! subset reelq uses is vendored in `tests/fixtures/specs/fal.openapi.json` and the
//! simulator's answers are checked against it.
//!
//! Not used: listing requests (fal lists none): an `uncertain` submit waits for an operator
//! or for its webhook.

use std::sync::RwLock;

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use futures_util::{FutureExt, future::BoxFuture};
use reelq_core::{JobSpec, ProviderKind};
use reqwest::header::HeaderMap;
use serde::Deserialize;
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::{
    AccountCheck, AccountConfig, CallbackError, CallbackHint, CancelAnswer, Provider,
    ProviderError, Submission, TaskStatus,
    http::{Answer, Api, Call, ErrorWords, KeyHeader, read_answer, task_failure},
    provider::{PROBE_TASK_ID, probed},
    request::request_fields,
};

/// Where fal publishes its webhook keys.
const FAL_JWKS: &str = "https://rest.alpha.fal.ai/.well-known/jwks.json";

/// How far a webhook's timestamp may be from now, either way.
const TOLERANCE_S: u64 = 300;

/// One fal account.
pub struct Fal {
    api: Api,
    jwks_url: String,
    /// The ED25519 public keys of the last JWKS fetch.
    keys: RwLock<Vec<Vec<u8>>>,
}

#[derive(Deserialize)]
struct Submitted {
    request_id: String,
}

#[derive(Deserialize)]
struct QueueStatus {
    status: String,
    /// Set on a completed request that failed (fal_client's `Completed.error`), with
    /// `error_type` (`request_timeout`, ...) beside it.
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    error_type: Option<String>,
}

/// A video model's result.
#[derive(Deserialize)]
struct VideoResult {
    video: Option<File>,
}

#[derive(Deserialize)]
struct File {
    url: String,
}

/// A webhook's body.
#[derive(Deserialize)]
struct Webhook {
    request_id: String,
}

/// A JWKS, keeping its Ed25519 keys.
#[derive(Deserialize)]
struct Jwks {
    keys: Vec<Jwk>,
}

#[derive(Deserialize)]
struct Jwk {
    #[serde(default)]
    kty: String,
    #[serde(default)]
    crv: String,
    #[serde(default)]
    x: String,
}

/// fal's error body: `{"detail": "..."}` or a list of validation problems.
fn detail(body: &str) -> Option<String> {
    let value: Value = serde_json::from_str(body).ok()?;
    match value.get("detail")? {
        Value::String(text) => Some(text.clone()),
        other => Some(other.to_string()),
    }
}

/// Reads a 2xx answer as `T`, or classes fal's error answer (see the table above).
fn read<T: serde::de::DeserializeOwned>(answer: &Answer, call: Call) -> Result<T, ProviderError> {
    read_answer(ProviderKind::Fal, answer, call, |body| {
        let detail = detail(body);
        let words = detail.clone().unwrap_or_default();
        ErrorWords {
            own: detail.is_some(),
            credits: answer.status.as_u16() == 403 && names_a_lock(&words),
            words,
        }
    })
}

/// Whether a 403's words are fal's account lock (`User is locked. Reason: <reason>`, the
/// reasons of its REST API's `LockReason`) or its older "Exhausted balance" answer: the key is
/// good, the account cannot run anything until an operator acts.
fn names_a_lock(words: &str) -> bool {
    let words = words.to_ascii_lowercase();
    words.starts_with("user is locked") || words.contains("balance")
}

/// The app a model id belongs to: its first two segments (`fal-ai/kling-video`).
fn app_of(model: &str) -> &str {
    match model.match_indices('/').nth(1) {
        Some((second, _)) => &model[..second],
        None => model,
    }
}

impl Fal {
    pub fn new(config: AccountConfig) -> Result<Self, ProviderError> {
        let jwks_url = match config.base_url.contains("queue.fal.run") {
            true => FAL_JWKS.to_owned(),
            false => format!(
                "{}/.well-known/jwks.json",
                config.base_url.trim_end_matches('/')
            ),
        };
        Ok(Fal {
            api: Api::with_key_header(config, KeyHeader::Scheme("Key"))?,
            jwks_url,
            keys: RwLock::new(Vec::new()),
        })
    }

    async fn submit(&self, submission: Submission<'_>) -> Result<String, ProviderError> {
        if self.keys.read().expect("keys lock").is_empty() {
            // Before the first webhook can come.
            self.fetch_keys().await;
        }
        let spec = submission.spec;
        let mut request = self.api.post(&format!("/{}", spec.model));
        if let Some(url) = submission.callback_url {
            request = request.query(&[("fal_webhook", url)]);
        }
        if submission.low_priority {
            // Behind every normal request of the endpoint's queue, as fal's queue page says.
            request = request.header("x-fal-queue-priority", "low");
        }
        let request = request.json(&request_fields(spec));
        let answer = self.api.send(request, Call::Create).await?;
        Ok(read::<Submitted>(&answer, Call::Create)?.request_id)
    }

    async fn status(&self, model: &str, request_id: &str) -> Result<TaskStatus, ProviderError> {
        let app = app_of(model);
        let path = format!("/{app}/requests/{request_id}/status");
        let answer = self.api.send(self.api.get(&path), Call::Query).await?;
        let status: QueueStatus = read(&answer, Call::Query)?;
        match status.status.as_str() {
            "IN_QUEUE" | "IN_PROGRESS" => return Ok(TaskStatus::Running),
            "COMPLETED" if status.error.is_some() => {
                let kind = status.error_type.as_deref().unwrap_or("error");
                let why = status.error.unwrap_or_default();
                return Ok(TaskStatus::Failed(task_failure(format!(
                    "fal request failed ({kind}): {why}"
                ))));
            }
            "COMPLETED" => {}
            other => {
                return Err(ProviderError::transient(format!(
                    "fal unknown request status {other:?}"
                )));
            }
        }
        let path = format!("/{app}/requests/{request_id}");
        let answer = self.api.send(self.api.get(&path), Call::Query).await?;
        if !answer.status.is_success() && answer.status.as_u16() != 429 {
            // The request completed without a result: the model's own error is the answer
            // (4xx invalid input, 5xx a model error; fal's queue page).
            let why = detail(&answer.body).unwrap_or_else(|| answer.body.clone());
            return Ok(TaskStatus::Failed(task_failure(format!(
                "fal request failed: {why}"
            ))));
        }
        let result: VideoResult = read(&answer, Call::Query)?;
        match result.video {
            Some(video) => Ok(TaskStatus::Succeeded {
                result_url: video.url,
            }),
            None => Err(ProviderError::transient("fal result without a video")),
        }
    }

    /// Fetches the JWKS and keeps its Ed25519 keys; keeps the old ones if the fetch fails.
    async fn fetch_keys(&self) {
        let fetched = async {
            let answer = self
                .api
                .send(self.api.get_url(&self.jwks_url), Call::Query)
                .await?;
            read::<Jwks>(&answer, Call::Query)
        }
        .await;
        match fetched {
            Ok(jwks) => {
                let keys: Vec<Vec<u8>> = jwks
                    .keys
                    .into_iter()
                    .filter(|key| key.kty == "OKP" && key.crv == "Ed25519")
                    .filter_map(|key| URL_SAFE_NO_PAD.decode(key.x.trim_end_matches('=')).ok())
                    .collect();
                *self.keys.write().expect("keys lock") = keys;
            }
            Err(err) => tracing::warn!(error = %err, "fal: could not fetch the webhook keys"),
        }
    }

    /// Checks a webhook's signature against the cached keys.
    fn verify(&self, headers: &HeaderMap, body: &[u8], now_s: u64) -> Result<(), CallbackError> {
        let header = |name: &str| {
            headers
                .get(name)
                .and_then(|value| value.to_str().ok())
                .ok_or(CallbackError::BadSignature)
        };
        let request_id = header("x-fal-webhook-request-id")?;
        let user_id = header("x-fal-webhook-user-id")?;
        let timestamp = header("x-fal-webhook-timestamp")?;
        let signature = hex::decode(header("x-fal-webhook-signature")?)
            .map_err(|_| CallbackError::BadSignature)?;
        let sent_s: u64 = timestamp.parse().map_err(|_| CallbackError::BadSignature)?;
        if sent_s.abs_diff(now_s) > TOLERANCE_S {
            return Err(CallbackError::Stale);
        }
        let digest = hex::encode(Sha256::digest(body));
        let message = format!("{request_id}\n{user_id}\n{timestamp}\n{digest}");
        let keys = self.keys.read().expect("keys lock");
        let verified = keys.iter().any(|key| {
            aws_lc_rs::signature::UnparsedPublicKey::new(&aws_lc_rs::signature::ED25519, key)
                .verify(message.as_bytes(), &signature)
                .is_ok()
        });
        verified.then_some(()).ok_or(CallbackError::BadSignature)
    }
}

impl Provider for Fal {
    fn kind(&self) -> ProviderKind {
        ProviderKind::Fal
    }

    fn submit<'a>(
        &'a self,
        submission: Submission<'a>,
    ) -> BoxFuture<'a, Result<String, ProviderError>> {
        Fal::submit(self, submission).boxed()
    }

    /// Signed by fal (verified against its published keys), besides the per-job URL token.
    fn parse_callback(
        &self,
        headers: &HeaderMap,
        body: &[u8],
        now_s: u64,
    ) -> Result<CallbackHint, CallbackError> {
        self.verify(headers, body, now_s)?;
        let webhook: Webhook = serde_json::from_slice(body)
            .map_err(|err| CallbackError::Malformed(err.to_string()))?;
        CallbackHint::new(webhook.request_id, false)
    }

    /// `PUT {app}/requests/{id}/cancel`: any 2xx is a taken cancel (the queue page's 202
    /// `CANCELLATION_REQUESTED`, the per-endpoint OpenAPI's 200 `{"success": true}`); a 400
    /// `ALREADY_COMPLETED` or a 404 `NOT_FOUND` leaves nothing to cancel (the worker polls
    /// on and stores the video, if there is one).
    fn cancel<'a>(
        &'a self,
        spec: &'a JobSpec,
        task_id: &'a str,
    ) -> BoxFuture<'a, Result<CancelAnswer, ProviderError>> {
        async move {
            let path = format!("/{}/requests/{task_id}/cancel", app_of(&spec.model));
            let answer = self.api.send(self.api.put(&path), Call::Query).await?;
            if answer.status.is_success() {
                return Ok(CancelAnswer::Requested);
            }
            let word = serde_json::from_str::<QueueStatus>(&answer.body)
                .map(|answered| answered.status)
                .unwrap_or_default();
            match (answer.status.as_u16(), word.as_str()) {
                (400, "ALREADY_COMPLETED") | (404, "NOT_FOUND") => Ok(CancelAnswer::AlreadyEnded),
                _ => read::<QueueStatus>(&answer, Call::Query).and(Err(ProviderError::Invalid(
                    format!("fal cancel refused: {}", answer.body),
                ))),
            }
        }
        .boxed()
    }

    fn refresh_callback_keys(&self) -> BoxFuture<'_, ()> {
        self.fetch_keys().boxed()
    }

    fn query<'a>(
        &'a self,
        spec: &'a JobSpec,
        task_id: &'a str,
    ) -> BoxFuture<'a, Result<TaskStatus, ProviderError>> {
        self.status(&spec.model, task_id).boxed()
    }

    /// fal has no free account call: the status of a request nobody made shows whether the key
    /// is accepted.
    fn check_account(&self) -> BoxFuture<'_, Result<AccountCheck, ProviderError>> {
        async move { probed(self.status("fal-ai/reelq", PROBE_TASK_ID).await) }.boxed()
    }

    fn api(&self) -> &Api {
        &self.api
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair};
    use reelq_core::{ErrorClass, Secret};
    use reqwest::header::HeaderValue;

    use super::*;

    const NOW_S: u64 = 1_780_000_000;

    /// A fal account whose cached webhook keys are `published`' public keys.
    fn account_with_keys(published: &[&Ed25519KeyPair]) -> Fal {
        let fal = Fal::new(AccountConfig {
            base_url: "http://127.0.0.1:9".into(),
            api_key: Secret::new("fal-key"),
            request_timeout: Duration::from_secs(1),
            webhook_secret: None,
        })
        .unwrap();
        *fal.keys.write().unwrap() = published
            .iter()
            .map(|key| key.public_key().as_ref().to_vec())
            .collect();
        fal
    }

    /// The headers fal's documented scheme puts on `body`, signed by `key` at `sent_s`.
    fn signed(key: &Ed25519KeyPair, body: &[u8], sent_s: u64) -> HeaderMap {
        let digest = hex::encode(Sha256::digest(body));
        let message = format!("req-1\nuser-1\n{sent_s}\n{digest}");
        let mut headers = HeaderMap::new();
        for (name, value) in [
            ("x-fal-webhook-request-id", "req-1".to_owned()),
            ("x-fal-webhook-user-id", "user-1".to_owned()),
            ("x-fal-webhook-timestamp", sent_s.to_string()),
            (
                "x-fal-webhook-signature",
                hex::encode(key.sign(message.as_bytes()).as_ref()),
            ),
        ] {
            headers.insert(name, HeaderValue::from_str(&value).unwrap());
        }
        headers
    }

    #[test]
    fn every_account_lock_is_out_of_credits_and_another_403_a_refused_key() {
        let class = |status: u16, detail: &str| {
            let answer = Answer {
                status: reqwest::StatusCode::from_u16(status).unwrap(),
                retry_after: None,
                body: serde_json::json!({ "detail": detail }).to_string(),
            };
            read::<Value>(&answer, Call::Create).unwrap_err().class()
        };
        // The reasons of fal's REST API (`LockReason`) and the short form fal also answers.
        for reason in [
            "Exhausted balance. Top up your balance at fal.ai/dashboard/billing",
            "User budget is exceeded. Adjust it at fal.ai/dashboard/billing",
            "Please add a payment method at fal.ai/dashboard/billing",
            "TOP_UP.",
        ] {
            let detail = format!("User is locked. Reason: {reason}");
            assert_eq!(class(403, &detail), ErrorClass::Credits, "{detail}");
        }
        assert_eq!(class(402, "Payment required"), ErrorClass::Credits);
        assert_eq!(class(403, "Forbidden"), ErrorClass::Auth);
        assert_eq!(
            class(401, "No user found for Key ID and Secret"),
            ErrorClass::Auth
        );
    }

    #[test]
    fn a_webhook_is_accepted_only_with_a_fresh_signature_of_its_own_body_by_a_published_key() {
        let fal_key = Ed25519KeyPair::from_seed_unchecked(&[1; 32]).unwrap();
        let rotated = Ed25519KeyPair::from_seed_unchecked(&[2; 32]).unwrap();
        let stranger = Ed25519KeyPair::from_seed_unchecked(&[3; 32]).unwrap();
        let fal = account_with_keys(&[&fal_key, &rotated]);
        let body = br#"{"request_id":"req-1","status":"OK","payload":{}}"#;

        for key in [&fal_key, &rotated] {
            let hint = fal
                .parse_callback(&signed(key, body, NOW_S), body, NOW_S)
                .unwrap();
            assert_eq!(hint.task_id, "req-1");
        }
        let tampered = br#"{"request_id":"req-2","status":"OK","payload":{}}"#;
        let refusals = [
            (signed(&fal_key, body, NOW_S), &tampered[..], NOW_S),
            (signed(&stranger, body, NOW_S), &body[..], NOW_S),
            (HeaderMap::new(), &body[..], NOW_S),
        ];
        for (headers, sent, now_s) in refusals {
            assert_eq!(
                fal.parse_callback(&headers, sent, now_s).unwrap_err(),
                CallbackError::BadSignature
            );
        }
        let late = NOW_S + TOLERANCE_S + 1;
        assert_eq!(
            fal.parse_callback(&signed(&fal_key, body, NOW_S), body, late)
                .unwrap_err(),
            CallbackError::Stale
        );
    }

    #[test]
    fn a_model_id_is_addressed_by_its_app() {
        assert_eq!(
            app_of("fal-ai/kling-video/v2.1/master/text-to-video"),
            "fal-ai/kling-video"
        );
        assert_eq!(app_of("fal-ai/veo3"), "fal-ai/veo3");
    }

    #[test]
    fn fal_error_bodies_are_read_in_both_shapes() {
        assert_eq!(
            detail(r#"{"detail":"User is locked. Reason: Exhausted balance."}"#).unwrap(),
            "User is locked. Reason: Exhausted balance."
        );
        assert!(
            detail(r#"{"detail":[{"msg":"field required","type":"value_error.missing"}]}"#)
                .unwrap()
                .contains("field required")
        );
        assert_eq!(detail("<html>"), None);
    }
}
