//! Outgoing completion webhooks: when a job ends, its `notify_url` gets a JSON event signed
//! per Standard Webhooks (`webhook-id`, `webhook-timestamp`, `webhook-signature` =
//! `v1,base64(HMAC-SHA256(secret, "id.timestamp.body"))`), so any standard verifier accepts
//! it. Delivery is at least once: retried with capped exponential backoff and jitter, always
//! under the same event id, so receivers can deduplicate.

use std::{
    sync::Arc,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use futures_util::future::join_all;
use std::collections::BTreeMap;

use reelq_core::{BatchId, Secret, micros_to_usd};
use reelq_providers::WebhookKey;
use reelq_queue::{JobRecord, Ledger, Notification, NotifyOutcome, NotifyTarget, QueueError};
use serde_json::json;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::{WorkerError, steps::backoff};

/// Webhooks sent at once by one worker.
const BATCH: usize = 16;
/// A webhook's lease: if its sender dies, another worker sends it after this.
const LEASE: Duration = Duration::from_secs(60);

pub(crate) struct Notifier {
    pub(crate) ledger: Ledger,
    pub(crate) http: reqwest::Client,
    key: WebhookKey,
    pub(crate) max_attempts: u32,
    pub(crate) backoff_min: Duration,
    pub(crate) backoff_max: Duration,
}

impl Notifier {
    pub(crate) fn new(
        ledger: Ledger,
        secret: &Secret,
        timeout: Duration,
        max_attempts: u32,
        (backoff_min, backoff_max): (Duration, Duration),
    ) -> Result<Self, WorkerError> {
        let key = WebhookKey::parse(secret.expose())
            .map_err(|err| WorkerError::Config(format!("notify.secret: {err}")))?;
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .build()
            .map_err(|err| WorkerError::Config(format!("notify http client: {err}")))?;
        Ok(Notifier {
            ledger,
            http,
            key,
            max_attempts,
            backoff_min,
            backoff_max,
        })
    }

    /// Sends due webhooks until `shutdown`.
    pub(crate) async fn run(self: Arc<Self>, idle_poll: Duration, shutdown: CancellationToken) {
        loop {
            let due = match self.ledger.claim_notifications(BATCH, LEASE).await {
                Ok(due) => due,
                Err(err) => {
                    warn!(error = %err, "claiming webhooks failed");
                    Vec::new()
                }
            };
            let idle = due.is_empty();
            join_all(due.iter().map(|notification| self.deliver(notification))).await;
            if idle {
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(idle_poll) => {}
                }
            } else if shutdown.is_cancelled() {
                return;
            }
        }
    }

    async fn deliver(&self, notification: &Notification) {
        let (outcome, detail) = match self.send(notification).await {
            Ok(()) => (NotifyOutcome::Sent, "delivered".to_owned()),
            Err(failure) => {
                let attempt = notification.attempt + 1;
                if attempt >= self.max_attempts {
                    (
                        NotifyOutcome::GaveUp,
                        format!("after {attempt} attempts: {failure}"),
                    )
                } else {
                    let delay = backoff(self.backoff_min, self.backoff_max, attempt);
                    (NotifyOutcome::Retry(delay), failure)
                }
            }
        };
        info!(target = %notification.target, event_id = notification.event_id, ?outcome, detail, "webhook");
        let outcome_name = match outcome {
            NotifyOutcome::Sent => "sent",
            NotifyOutcome::Retry(_) => "retry",
            NotifyOutcome::GaveUp => "gave_up",
        };
        metrics::counter!("reelq_webhooks_total", "outcome" => outcome_name).increment(1);
        if let Err(err) = self.ledger.notified(notification, outcome, &detail).await {
            warn!(target = %notification.target, error = %err, "recording the webhook failed; it will be sent again");
        }
    }

    async fn send(&self, notification: &Notification) -> Result<(), String> {
        let timestamp = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let body = match notification.target {
            NotifyTarget::Job(job_id) => match self.ledger.job(job_id).await {
                Ok(Some(record)) => event_body(&record, timestamp),
                Ok(None) => return Err("job record gone".into()),
                Err(err) => return Err(err.to_string()),
            },
            NotifyTarget::Batch(batch_id) => self
                .batch_event_body(batch_id, timestamp)
                .await
                .map_err(|err| err.to_string())?,
        }
        .to_string();
        let response = self
            .http
            .post(&notification.url)
            .header("content-type", "application/json")
            .header("webhook-id", &notification.event_id)
            .header("webhook-timestamp", timestamp.to_string())
            .header(
                "webhook-signature",
                self.key
                    .sign(&notification.event_id, timestamp, body.as_bytes()),
            )
            .body(body)
            .send()
            .await
            .map_err(|err| format!("transport: {}", err.without_url()))?;
        match response.status() {
            status if status.is_success() => Ok(()),
            status => Err(format!("answered {status}")),
        }
    }
}

impl Notifier {
    /// The batch summary: counts by state and the spend reserved against its budget.
    async fn batch_event_body(
        &self,
        batch_id: BatchId,
        timestamp: u64,
    ) -> Result<serde_json::Value, QueueError> {
        let info = self.ledger.batch_info(batch_id).await?;
        let mut states: BTreeMap<&'static str, u64> = BTreeMap::new();
        for job_id in self.ledger.batch_jobs(batch_id).await? {
            if let Some(record) = self.ledger.job(job_id).await? {
                *states.entry(record.state.as_str()).or_default() += 1;
            }
        }
        Ok(json!({
            "type": "batch.finished",
            "timestamp": timestamp,
            "data": {
                "batch_id": batch_id,
                "name": info.as_ref().and_then(|i| i.name.clone()),
                "jobs": info.as_ref().map(|i| i.total),
                "states": states,
                "reserved_usd": info.as_ref().map(|i| micros_to_usd(i.reserved_micros)),
                "budget_usd": info.as_ref().and_then(|i| i.budget_micros.map(micros_to_usd)),
            }
        }))
    }
}

/// The event: what a producer needs to act on the ending, never the prompt or a secret.
fn event_body(record: &JobRecord, timestamp: u64) -> serde_json::Value {
    json!({
        "type": format!("job.{}", record.state),
        "timestamp": timestamp,
        "data": {
            "job_id": record.job_id,
            "state": record.state,
            "batch": record.batch,
            "provider": record.spec.provider,
            "model": record.spec.model,
            "task_id": record.task_id,
            "object_key": record.object_key,
            "bytes": record.bytes,
            "sha256": record.sha256,
            "error_class": record.error_class,
            "error": record.error,
        }
    })
}
