//! A job's ledger record as readers (CLI, HTTP API, tests) see it.

use std::collections::HashMap;

use reelq_core::{
    AccountName, BatchId, ErrorClass, JobId, JobSpec, JobState, LeftCandidate, ProviderKind,
};
use serde::{Deserialize, Serialize};

use crate::QueueError;

/// Everything the ledger knows about one job. Secrets are never stored, so this is safe to print.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JobRecord {
    pub job_id: JobId,
    pub state: JobState,
    pub spec: JobSpec,
    /// The account the job's limits are kept under: the one its submit went to, or, until a
    /// worker picks one, the one it asked for (its provider's name if it named none).
    pub account: AccountName,
    pub batch: Option<BatchId>,
    /// Provider task id, once the provider accepted the submit.
    pub task_id: Option<String>,
    /// How many times a worker started a submit (1 in a healthy life).
    pub submits: u32,
    pub polls: u32,
    /// Retries of the current step.
    pub attempt: u32,
    pub created_ms: u64,
    pub updated_ms: u64,
    pub error_class: Option<ErrorClass>,
    pub error: Option<String>,
    pub object_key: Option<String>,
    pub bytes: Option<u64>,
    pub sha256: Option<String>,
    /// What the stored file's movie header says, e.g. `h264 1280x720 10.00s 24.00fps`
    /// (codec, size, duration, frame rate); none for videos stored before reelq looked.
    pub video: Option<String>,
    /// The provider's still image of the video, stored beside it (OpenAI-style gateways).
    pub thumbnail_key: Option<String>,
    /// The completion webhook: `pending`, `sent` or `gave_up`; none if no `notify_url`.
    pub notify_state: Option<String>,
    /// When the last submit began (unix ms, Redis's clock).
    pub submit_ms: Option<u64>,
    /// For an `uncertain` job: what reconciliation with the provider's records found.
    pub reconcile_note: Option<String>,
}

/// A job as reelq shows it to a producer outside the API's full record: one row of a batch
/// report (JSON; the CSV is its columns), the `data` of a completion webhook. Never the
/// prompt, never a secret.
#[derive(Debug, Clone, Serialize)]
pub struct JobView<'a> {
    pub job_id: JobId,
    pub state: JobState,
    pub batch_id: Option<BatchId>,
    /// The tenant the job belongs to (`default` unless its producer named one).
    pub tenant: &'a str,
    pub provider: ProviderKind,
    pub model: &'a str,
    pub task_id: Option<&'a str>,
    pub object_key: Option<&'a str>,
    pub bytes: Option<u64>,
    pub sha256: Option<&'a str>,
    /// What the stored file's movie header says.
    pub video: Option<&'a str>,
    pub estimated_cost_usd: Option<f64>,
    pub error_class: Option<ErrorClass>,
    pub error: Option<&'a str>,
    /// The route the job named, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub route: Option<&'a str>,
    /// The candidate a provider took the job at (account, model, estimate): the one billed.
    /// None until a provider took it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub served_by: Option<ServedBy<'a>>,
    /// The route's candidates the job left, and why.
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    pub fallbacks: &'a [LeftCandidate],
}

/// Where a provider took a job: the account, its contract and model, and the estimate billed.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ServedBy<'a> {
    pub account: &'a str,
    pub provider: ProviderKind,
    pub model: &'a str,
    pub estimated_cost_usd: Option<f64>,
}

impl JobRecord {
    /// The job as reports and webhooks show it.
    pub fn view(&self) -> JobView<'_> {
        JobView {
            job_id: self.job_id,
            state: self.state,
            batch_id: self.batch,
            tenant: self.spec.tenant_name(),
            provider: self.spec.provider,
            model: &self.spec.model,
            task_id: self.task_id.as_deref(),
            object_key: self.object_key.as_deref(),
            bytes: self.bytes,
            sha256: self.sha256.as_deref(),
            video: self.video.as_deref(),
            estimated_cost_usd: self.spec.estimated_cost_usd,
            error_class: self.error_class,
            error: self.error.as_deref(),
            route: self.spec.route.as_ref().map(|route| route.name.as_str()),
            served_by: self.served_by(),
            fallbacks: self
                .spec
                .route
                .as_ref()
                .map_or(&[], |route| route.left.as_slice()),
        }
    }

    /// Where a provider took the job, once one did (it has a task): the spec is always the
    /// candidate the job is at, and a job with a task never moves on.
    pub fn served_by(&self) -> Option<ServedBy<'_>> {
        self.task_id.as_ref()?;
        Some(ServedBy {
            account: self.account.as_str(),
            provider: self.spec.provider,
            model: &self.spec.model,
            estimated_cost_usd: self.spec.estimated_cost_usd,
        })
    }

    /// The record from its hash's fields: the spec in pieces (`spec_n` of them, `s0`..), or
    /// in one `spec` field in a record written before ledger schema 3.
    pub(crate) fn from_fields(
        job_id: JobId,
        mut fields: HashMap<String, String>,
    ) -> Result<Self, QueueError> {
        let corrupt = |detail: String| QueueError::corrupt(job_id, detail);
        let spec_json = match fields.remove("spec") {
            Some(whole) => whole,
            None => {
                let pieces: usize = number(fields.remove("spec_n"));
                (0..pieces)
                    .map(|n| fields.remove(&format!("s{n}")).unwrap_or_default())
                    .collect()
            }
        };
        let mut take = |name: &str| fields.remove(name);
        let state = take("state")
            .ok_or_else(|| corrupt("no state".into()))?
            .parse::<JobState>()
            .map_err(|err| corrupt(err.to_string()))?;
        let spec: JobSpec =
            serde_json::from_str(&spec_json).map_err(|err| corrupt(format!("spec: {err}")))?;
        let account = match take("provider") {
            Some(account) => account
                .parse()
                .map_err(|_| corrupt(format!("account {account:?}")))?,
            None => spec.account_or_provider(),
        };
        let batch = take("batch")
            .map(|b| b.parse::<BatchId>())
            .transpose()
            .map_err(|err| corrupt(err.to_string()))?;
        let error_class = take("error_class")
            .map(|c| c.parse::<ErrorClass>())
            .transpose()
            .map_err(corrupt)?;
        Ok(JobRecord {
            job_id,
            state,
            spec,
            account,
            batch,
            task_id: take("task_id"),
            submits: number(take("submits")),
            polls: number(take("polls")),
            attempt: number(take("attempt")),
            created_ms: number(take("created_ms")),
            updated_ms: number(take("updated_ms")),
            error_class,
            error: take("error"),
            object_key: take("object_key"),
            bytes: take("bytes").map(|b| number(Some(b))),
            sha256: take("sha256"),
            video: take("video"),
            thumbnail_key: take("thumbnail_key"),
            notify_state: take("notify_state"),
            submit_ms: take("submit_ms").map(|ms| number(Some(ms))),
            reconcile_note: take("reconcile_note"),
        })
    }
}

/// A finished job as the archiver writes it to the object store (one JSON line of a history
/// segment): its record, its event log, and when it was archived. Read back, it is the same
/// record readers get from the ledger.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ArchivedJob {
    #[serde(flatten)]
    pub record: JobRecord,
    /// The job's recent events, oldest first (`"<unix ms> <state> <detail>"`).
    pub events: Vec<String>,
    /// When the archiver read it from the ledger (unix ms).
    pub archived_ms: u64,
}

/// The events a record keeps, oldest first: `events` counts them all, `e{n % EVENTS_KEPT}`
/// holds the n-th (taken out of `fields`).
pub(crate) fn take_events(fields: &mut HashMap<String, String>) -> Vec<String> {
    let kept = crate::EVENTS_KEPT;
    let count: u32 = fields
        .get("events")
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    (count.saturating_sub(kept)..count)
        .filter_map(|n| fields.remove(&format!("e{}", n % kept)))
        .collect()
}

fn number<T: std::str::FromStr + Default>(field: Option<String>) -> T {
    field
        .and_then(|value| value.parse().ok())
        .unwrap_or_default()
}
