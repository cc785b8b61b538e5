//! What every simulated contract shares: bearer auth, the create flow (latency, faults,
//! moderation, paid-create counting), task views for queries and callbacks, and the result
//! files. Each contract module only speaks its own request and answer shapes.

use std::{
    convert::Infallible,
    sync::Arc,
    time::{SystemTime, UNIX_EPOCH},
};

use axum::{
    body::{Body, Bytes},
    extract::{Path, Query, State},
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use futures_util::stream;
use reelq_core::{
    Aspect, ChoiceRule, DurationForm, DurationRule, ImagesForm, ModelRule, ProviderKind, Quality,
};
use serde::Deserialize;
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::{
    simulator::{DownloadFault, NewTask, SimState, Task},
    video::{VideoShape, video_chunks, video_len},
};

/// A prompt containing this is refused by moderation.
pub const MODERATED_WORD: &str = "sim:moderate";
/// A prompt containing this is accepted, and its generation fails.
pub const FAILING_WORD: &str = "sim:fail";

/// Why a create was not accepted; each contract renders it in its own error shape.
pub(crate) enum Refusal {
    BadKey,
    Invalid(String),
    /// An injected fault, in kie's code vocabulary: 402 credits, 429 rate limit (retry after
    /// 1 s), 455 maintenance, 500 server error.
    Fault(i64),
    /// Moderation refused the prompt at create (providers that check before accepting).
    Moderated,
    /// The create was accepted (and billed), then something in front of the provider failed
    /// and answered this status with a page of its own, as a gateway or load balancer does.
    AfterAccept(u16),
    /// The model is paused or retired at this provider (its catalog row says so): each
    /// contract answers as it refuses a model it does not serve.
    Withdrawn(String),
}

/// What a failing gateway answers: its status and an HTML page, not the provider's error.
pub(crate) fn gateway_failure(code: u16) -> Response {
    let status = StatusCode::from_u16(code).unwrap_or(StatusCode::BAD_GATEWAY);
    let page = format!("<html><body><h1>{code} {status}</h1>upstream error</body></html>");
    (status, [(header::CONTENT_TYPE, "text/html")], page).into_response()
}

/// How a task ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    Video,
    Moderated,
    Failed,
    /// Stopped by a cancel call before it finished: no video.
    Cancelled,
}

/// A task as a provider's records show it.
pub(crate) struct TaskRecord {
    pub(crate) task_id: String,
    pub(crate) provider: ProviderKind,
    pub(crate) phase: Phase,
    /// The create's body (without callback URLs), for contracts that echo it.
    pub(crate) request: Value,
    pub(crate) created_s: u64,
}

/// Where a task stands, for a query or a callback.
pub(crate) enum Phase {
    Running,
    Done { result_url: String },
    Ended(Outcome),
}

/// A create as a contract parsed it.
pub(crate) struct CreateRequest<'a> {
    pub(crate) provider: ProviderKind,
    /// The whole body, minus callback URLs: two creates with the same fingerprint are the
    /// same paid request twice.
    pub(crate) body: Value,
    pub(crate) prompt: &'a str,
    pub(crate) callback_url: Option<String>,
    /// Whether this provider's moderation refuses at create (else the generation fails).
    pub(crate) moderates_at_create: bool,
    /// The duration and frame asked for, in reelq's terms, read from the contract's fields.
    pub(crate) shape: VideoShape,
    /// Which of the simulator's accounts made it (by its key).
    pub(crate) account: usize,
}

/// Which of the simulator's accounts the request's key is (0 for `api_key`, then
/// `other_api_keys` in order), or a refusal.
pub(crate) fn authorized(state: &SimState, headers: &HeaderMap) -> Result<usize, Refusal> {
    authorized_in(state, headers, KeyIn::Bearer)
}

/// Where a contract takes the API key.
#[derive(Clone, Copy)]
pub(crate) enum KeyIn {
    /// `Authorization: Bearer <key>`.
    Bearer,
    /// A header of its own (Google's `x-goog-api-key`): a Bearer key is not accepted there.
    Header(&'static str),
    /// `Authorization: <scheme> <key>` with a scheme of its own (fal's `Key`).
    Scheme(&'static str),
}

/// [`authorized`], with the key where the contract takes it.
pub(crate) fn authorized_in(
    state: &SimState,
    headers: &HeaderMap,
    key_in: KeyIn,
) -> Result<usize, Refusal> {
    let presented = match key_in {
        KeyIn::Bearer => headers
            .get(header::AUTHORIZATION)
            .and_then(|value| value.as_bytes().strip_prefix(b"Bearer ")),
        KeyIn::Header(name) => headers.get(name).map(HeaderValue::as_bytes),
        KeyIn::Scheme(scheme) => headers
            .get(header::AUTHORIZATION)
            .and_then(|value| value.as_bytes().strip_prefix(scheme.as_bytes()))
            .and_then(|rest| rest.strip_prefix(b" ")),
    };
    std::iter::once(&state.config.api_key)
        .chain(&state.config.other_api_keys)
        .position(|key| presented == Some(key.as_bytes()))
        .ok_or(Refusal::BadKey)
}

/// Every create's opening: the key (which account it is), then a JSON body.
pub(crate) fn create_request(
    state: &SimState,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<(Value, usize), Refusal> {
    create_request_in(state, headers, body, KeyIn::Bearer)
}

/// [`create_request`], with the key where the contract takes it.
pub(crate) fn create_request_in(
    state: &SimState,
    headers: &HeaderMap,
    body: &[u8],
    key_in: KeyIn,
) -> Result<(Value, usize), Refusal> {
    let account = authorized_in(state, headers, key_in)?;
    let body = serde_json::from_slice(body)
        .map_err(|_| Refusal::Invalid("request body is not JSON".into()))?;
    Ok((body, account))
}

/// Every query's opening: the key, then any outage in force.
pub(crate) fn query_allowed(state: &SimState, headers: &HeaderMap) -> Result<(), Refusal> {
    query_allowed_in(state, headers, KeyIn::Bearer)
}

/// [`query_allowed`], with the key where the contract takes it.
pub(crate) fn query_allowed_in(
    state: &SimState,
    headers: &HeaderMap,
    key_in: KeyIn,
) -> Result<(), Refusal> {
    authorized_in(state, headers, key_in)?;
    match state.next_query_fault() {
        Some(code) => Err(Refusal::Fault(code)),
        None => Ok(()),
    }
}

/// A 429 says when to come back, as the providers' rate limiters do.
pub(crate) fn retry_in_a_second(mut response: Response) -> Response {
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    response
}

/// The catalog row a create names, or the refusal a provider gives for an unknown model.
pub(crate) fn model<'a>(
    state: &'a SimState,
    provider: ProviderKind,
    model: Option<&str>,
) -> Result<&'a ModelRule, Refusal> {
    let model = model.ok_or_else(|| Refusal::Invalid("model is required".into()))?;
    let rule = state
        .config
        .catalog
        .rule(provider, model)
        .ok_or_else(|| Refusal::Invalid(format!("model {model} is not supported")))?;
    match rule.status.takes_jobs() {
        true => Ok(rule),
        false => Err(Refusal::Withdrawn(format!(
            "model {model} is {}",
            rule.status
        ))),
    }
}

/// Fields a create may carry besides the ones its model's row writes.
const CONTRACT_FIELDS: &[&str] = &[
    "model",
    "prompt",
    "character_url",
    "character_start",
    "character_end",
];

/// Reads a create's fields as the provider reads its own: the duration, frame and quality
/// its model's row allows, written the row's way, images where the row puts them, and no
/// field the row does not name (an adapter that drifts from its row is refused here, as a
/// strict provider would refuse it). Returns the video the create asks for.
pub(crate) fn read_fields(rule: &ModelRule, fields: &Value) -> Result<VideoShape, Refusal> {
    let invalid = |message: String| Err(Refusal::Invalid(message));
    let request = &rule.request;
    let (duration_field, duration_s) = match &request.duration {
        Some(DurationRule::Send(duration)) => {
            let value = &fields[&duration.field];
            let duration_s = match (duration.form, value) {
                (DurationForm::String, Value::String(s)) => s.parse::<u32>().ok(),
                (DurationForm::Seconds, Value::String(s)) => {
                    s.strip_suffix('s').and_then(|s| s.parse::<u32>().ok())
                }
                (DurationForm::Number, Value::Number(n)) => {
                    n.as_u64().and_then(|n| u32::try_from(n).ok())
                }
                (_, Value::Null) => Some(rule.durations[0]),
                _ => None,
            };
            let Some(duration_s) = duration_s.filter(|d| rule.durations.contains(d)) else {
                return invalid(format!(
                    "{} must be one of {:?}, got {value}",
                    duration.field, rule.durations
                ));
            };
            (Some(duration.field.as_str()), duration_s)
        }
        _ => (None, rule.durations[0]),
    };
    let choice = |rule_of: &Option<ChoiceRule>| -> Result<Option<String>, Refusal> {
        let Some(field) = rule_of.as_ref().and_then(|r| match r {
            ChoiceRule::Send(field) => Some(field),
            ChoiceRule::Omit(_) => None,
        }) else {
            return Ok(None);
        };
        let value = &fields[&field.field];
        if value.is_null() {
            return Ok(None);
        }
        match field.values.iter().find(|(_, sent)| *sent == value) {
            Some((neutral, _)) => Ok(Some(neutral.clone())),
            None => Err(Refusal::Invalid(format!(
                "{} must be one of {:?}, got {value}",
                field.field,
                field.values.values().collect::<Vec<_>>()
            ))),
        }
    };
    let size = choice(&request.size)?;
    let (size_aspect, size_quality) = match size.as_deref().and_then(|s| s.split_once('/')) {
        Some((aspect, quality)) => (Some(aspect.to_owned()), Some(quality.to_owned())),
        None => (None, None),
    };
    let aspect: Aspect = choice(&request.aspect)?
        .or(size_aspect)
        .and_then(|a| a.parse().ok())
        .unwrap_or(rule.aspects[0]);
    let quality: Quality = choice(&request.quality)?
        .or(size_quality)
        .and_then(|q| q.parse().ok())
        .unwrap_or(rule.qualities[0]);
    if !rule.aspects.contains(&aspect) || !rule.qualities.contains(&quality) {
        return invalid(format!(
            "{aspect} at {quality} is not offered by {}",
            rule.model
        ));
    }
    let written = rule
        .provider_request(duration_s, aspect, quality, &Default::default())
        .fields;
    for (name, value) in fields.as_object().into_iter().flatten() {
        let known = CONTRACT_FIELDS.contains(&name.as_str())
            || duration_field == Some(name.as_str())
            || written.contains_key(name)
            || request.images.as_ref().is_some_and(|images| {
                *name == images.field
                    && match images.form {
                        ImagesForm::List => value.is_array(),
                        ImagesForm::One => value.is_string(),
                    }
            });
        match rule.extra.get(name) {
            Some(option) => {
                if let Some(problem) = option.problem(value) {
                    return invalid(format!("{name}: {problem}"));
                }
            }
            None if !known => return invalid(format!("{name} is not a field of {}", rule.model)),
            None => {}
        }
    }
    Ok(VideoShape { duration_s, aspect })
}

pub(crate) fn prompt(body: &Value) -> Result<&str, Refusal> {
    match body["prompt"].as_str() {
        Some(prompt) if !prompt.trim().is_empty() => Ok(prompt),
        _ => Err(Refusal::Invalid("prompt is required".into())),
    }
}

/// Accepts a create (after auth and the contract's validation) and returns the task id the
/// contract made. The task exists, and is billed, before the answer leaves: a client that
/// dies waiting for a slow answer leaves a real task behind, as at a real provider.
pub(crate) async fn accept(
    state: &Arc<SimState>,
    request: CreateRequest<'_>,
    task_id: String,
) -> Result<String, Refusal> {
    if let Some(code) = state.next_create_fault() {
        return Err(Refusal::Fault(code));
    }
    let outcome = if request.prompt.contains(MODERATED_WORD) {
        if request.moderates_at_create {
            return Err(Refusal::Moderated);
        }
        Outcome::Moderated
    } else if request.prompt.contains(FAILING_WORD) {
        Outcome::Failed
    } else {
        Outcome::Video
    };
    let fingerprint = hex::encode(Sha256::digest(request.body.to_string()));
    state.record_create(
        &task_id,
        NewTask {
            provider: request.provider,
            outcome,
            fingerprint,
            prompt: request.prompt.to_owned(),
            callback_url: request.callback_url,
            request: request.body,
            shape: request.shape,
            account: request.account,
        },
    );
    let latency = *state.create_latency.lock().unwrap();
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    if let Some(code) = state.next_gateway_fault() {
        return Err(Refusal::AfterAccept(code));
    }
    if state.next_server_error_after_accept() {
        return Err(Refusal::Fault(500));
    }
    Ok(task_id)
}

/// Takes the callback URL fields out of a create body, returning the first present.
pub(crate) fn take_callback_url(body: &mut Value, fields: &[&str]) -> Option<String> {
    let object = body.as_object_mut()?;
    let mut found = None;
    for field in fields {
        if let Some(Value::String(url)) = object.remove(*field) {
            found.get_or_insert(url);
        }
    }
    found
}

/// A list call's page, as Ark (`page_num`) and DashScope (`page_no`) name it.
#[derive(Deserialize)]
pub(crate) struct Page {
    #[serde(default, alias = "page_no")]
    page_num: Option<usize>,
    #[serde(default)]
    page_size: Option<usize>,
}

impl Page {
    /// This page of `provider`'s tasks, newest first (at most `max` a page, 10 unless asked),
    /// and how many tasks there are in all.
    pub(crate) fn of(
        &self,
        state: &SimState,
        provider: ProviderKind,
        max: usize,
    ) -> (Vec<TaskRecord>, usize) {
        let (number, size) = (self.number(), self.size(max));
        let records = state.task_records(provider);
        let total = records.len();
        let page = records
            .into_iter()
            .skip((number - 1) * size)
            .take(size)
            .collect();
        (page, total)
    }

    pub(crate) fn number(&self) -> usize {
        self.page_num.unwrap_or(1).max(1)
    }

    pub(crate) fn size(&self, max: usize) -> usize {
        self.page_size.unwrap_or(10).clamp(1, max)
    }
}

impl SimState {
    /// Where `task` stands now; a finished video gets a result URL fresh from now.
    pub(crate) fn phase(&self, task_id: &str, task: &Task) -> Phase {
        if !self.is_finished(task) {
            return Phase::Running;
        }
        match task.outcome {
            Outcome::Video => Phase::Done {
                result_url: self.result_url(task_id),
            },
            ended => Phase::Ended(ended),
        }
    }

    /// Stops `task_id`'s generation if it is still running: it ends at once, without a
    /// video. None if there is no such task, Some(false) if it had already finished.
    pub(crate) fn cancel_task(&self, task_id: &str) -> Option<bool> {
        let mut tasks = self.tasks.lock().unwrap();
        let task = tasks.get_mut(task_id)?;
        if self.is_finished(task) {
            return Some(false);
        }
        task.outcome = Outcome::Cancelled;
        self.count_cancel();
        Some(true)
    }

    /// The current phase of `task_id`, or None if no such task exists.
    pub(crate) fn task_phase(&self, task_id: &str) -> Option<(ProviderKind, Phase)> {
        let tasks = self.tasks.lock().unwrap();
        let task = tasks.get(task_id)?;
        Some((task.provider, self.phase(task_id, task)))
    }

    /// A task as the provider's records show it: its phase, the create's body and when it
    /// was made.
    pub(crate) fn task_record(&self, task_id: &str) -> Option<TaskRecord> {
        let tasks = self.tasks.lock().unwrap();
        let task = tasks.get(task_id)?;
        Some(self.record_of(task_id, task))
    }

    /// Every task of `provider`, newest first.
    pub(crate) fn task_records(&self, provider: ProviderKind) -> Vec<TaskRecord> {
        let tasks = self.tasks.lock().unwrap();
        let mut records: Vec<(u64, TaskRecord)> = tasks
            .iter()
            .filter(|(_, task)| task.provider == provider)
            .map(|(task_id, task)| (task.seq, self.record_of(task_id, task)))
            .collect();
        records.sort_by_key(|(seq, _)| std::cmp::Reverse(*seq));
        records.into_iter().map(|(_, record)| record).collect()
    }

    fn record_of(&self, task_id: &str, task: &Task) -> TaskRecord {
        TaskRecord {
            task_id: task_id.to_owned(),
            provider: task.provider,
            phase: self.phase(task_id, task),
            request: task.request.clone(),
            created_s: task.created_unix_ms / 1000,
        }
    }

    /// A pre-signed-style URL: it stops working `result_url_ttl` after it was handed out.
    pub(crate) fn result_url(&self, task_id: &str) -> String {
        match self.config.result_url_ttl {
            Some(ttl) => format!(
                "{}/files/{task_id}.mp4?expires={}",
                self.base_url,
                unix_ms() + ttl.as_millis() as u64
            ),
            None => format!("{}/files/{task_id}.mp4", self.base_url),
        }
    }
}

pub(crate) fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

#[derive(Deserialize)]
pub(crate) struct Expiry {
    expires: Option<u64>,
}

/// `GET /files/{task}.mp4[?expires=ms]`: the result, as a CDN serves a pre-signed URL
/// (403 once expired, like S3).
pub(crate) async fn result_file(
    State(state): State<Arc<SimState>>,
    Path(file): Path<String>,
    Query(expiry): Query<Expiry>,
) -> Response {
    if expiry.expires.is_some_and(|at| unix_ms() > at) {
        return (StatusCode::FORBIDDEN, "Request has expired").into_response();
    }
    match file.strip_suffix(".mp4") {
        Some(task_id) => serve_video(&state, task_id),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

/// Streams a finished task's video, or meets the next injected download fault.
pub(crate) fn serve_video(state: &SimState, task_id: &str) -> Response {
    let finished = matches!(state.task_phase(task_id), Some((_, Phase::Done { .. })));
    if !finished {
        return StatusCode::NOT_FOUND.into_response();
    }
    let Some(shape) = state
        .tasks
        .lock()
        .unwrap()
        .get(task_id)
        .map(|task| task.shape)
    else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let padding = state.config.video_padding;
    let length = video_len(task_id, padding);
    let half = || {
        let whole: Vec<u8> = video_chunks(task_id, shape, padding)
            .flat_map(|c| c.to_vec())
            .collect();
        Bytes::from(whole).slice(..(length / 2) as usize)
    };
    let chunks: Vec<Bytes> = match state.next_download_fault() {
        Some(DownloadFault::Expired) => return StatusCode::NOT_FOUND.into_response(),
        Some(DownloadFault::Truncated) => vec![half()],
        Some(DownloadFault::Page) => {
            let page = "<!DOCTYPE html><html><head><title>503 Service Unavailable</title></head>\
                        <body><h1>Service Unavailable</h1></body></html>";
            return ([(header::CONTENT_TYPE, "text/html")], page).into_response();
        }
        Some(DownloadFault::CutShort) => {
            return ([(header::CONTENT_TYPE, "video/mp4")], half()).into_response();
        }
        Some(DownloadFault::TooShort) => {
            let short = VideoShape {
                duration_s: (shape.duration_s / 5).max(1),
                ..shape
            };
            video_chunks(task_id, short, padding).collect()
        }
        None => {
            state.record_download(task_id);
            video_chunks(task_id, shape, padding).collect()
        }
    };
    // A streamed body keeps the announced length even when the bytes fall short.
    let body = Body::from_stream(stream::iter(chunks.into_iter().map(Ok::<_, Infallible>)));
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static("video/mp4")),
            (header::CONTENT_LENGTH, HeaderValue::from(length)),
        ],
        body,
    )
        .into_response()
}

/// A fresh random id for a task, in hex.
pub(crate) fn random_hex() -> String {
    format!("{:032x}", rand::random::<u128>())
}
