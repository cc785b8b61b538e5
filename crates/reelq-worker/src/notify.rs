//! Outgoing completion webhooks: when a job ends, its `notify_url` gets a JSON event signed
//! per Standard Webhooks (`webhook-id`, `webhook-timestamp`, `webhook-signature` =
//! `v1,base64(HMAC-SHA256(secret, "id.timestamp.body"))`), so any standard verifier accepts
//! it. Delivery is at least once: retried with capped exponential backoff and jitter, always
//! under the same event id, so receivers can deduplicate.
//!
//! Targets are checked again here against the deployment's [`WebhookTargets`] (producers
//! checked them at enqueue): the URL first, then every address its name resolves to, and the
//! connection goes only to the addresses that passed; redirects are not followed. A refused
//! target is given up at once (no retry could change the answer).

use std::{
    net::SocketAddr,
    sync::Arc,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use futures_util::future::join_all;
use std::collections::{BTreeMap, HashSet};

use reelq_core::{BatchId, JobId, Secret, WebhookTargets, micros_to_usd};
use reelq_providers::WebhookKey;
use reelq_queue::{ArchivedJob, JobRecord, Ledger, Notification, NotifyOutcome, NotifyTarget};
use reelq_storage::{HistoryStore, VideoStore};
use serde_json::json;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument as _, info, info_span, warn};

/// A delivery's outcome as `reelq_webhooks_total` labels it.
pub(crate) const OUTCOME_NAMES: [&str; 4] = ["sent", "retry", "gave_up", "skipped"];

use crate::{WorkerError, decision::backoff};

/// Webhooks sent at once by one worker.
const BATCH: usize = 16;
/// A webhook's lease: if its sender dies, another worker sends it after this.
const LEASE: Duration = Duration::from_secs(60);

/// What became of an event that did not fail.
enum Sent {
    Delivered,
    /// The job did not ask to hear of this ending (its `notify_events`).
    NotAsked(String),
}

/// The resolver's refusal, found again in the client's error chain.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct TargetRefused(String);

/// Resolves a webhook's host and keeps only the addresses its policy allows, so the client
/// connects to checked addresses only (a name re-pointed after the check gains nothing).
struct CheckedResolver(Arc<WebhookTargets>);

impl reqwest::dns::Resolve for CheckedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let targets = self.0.clone();
        Box::pin(async move {
            let host = name.as_str().to_owned();
            let resolved: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let allowed: Vec<SocketAddr> = resolved
                .iter()
                .copied()
                .filter(|addr| targets.allows(addr.ip()))
                .collect();
            if allowed.is_empty() {
                return Err(Box::new(TargetRefused(format!(
                    "{host} resolves only to addresses webhooks may not reach ({resolved:?})"
                ))) as _);
            }
            Ok(Box::new(allowed.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

pub(crate) struct Notifier {
    pub(crate) ledger: Ledger,
    /// Where archived jobs are read, when the worker archives.
    history: Option<HistoryStore>,
    pub(crate) http: reqwest::Client,
    targets: Arc<WebhookTargets>,
    key: WebhookKey,
    /// Where stored videos are, to put a download link in each event, and for how long.
    links: (VideoStore, Duration),
    pub(crate) max_attempts: u32,
    /// How long an event is retried for, by its retry schedule (without jitter).
    pub(crate) retry_for: Duration,
    pub(crate) backoff_min: Duration,
    pub(crate) backoff_max: Duration,
}

/// The delays before the first `attempts` retries add up to this (the schedule without
/// its jitter): doubling from `min`, capped at `max`.
fn nominal_elapsed(min: Duration, max: Duration, attempts: u32) -> Duration {
    (0..attempts)
        .map(|n| min.saturating_mul(2u32.saturating_pow(n)).min(max))
        .sum()
}

impl Notifier {
    pub(crate) fn new(
        ledger: Ledger,
        secret: &Secret,
        targets: WebhookTargets,
        links: (VideoStore, Duration),
        timeout: Duration,
        (max_attempts, retry_for): (u32, Duration),
        (backoff_min, backoff_max): (Duration, Duration),
    ) -> Result<Self, WorkerError> {
        let key = WebhookKey::parse(secret.expose())
            .map_err(|err| WorkerError::Config(format!("notify.secret: {err}")))?;
        let targets = Arc::new(targets);
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .redirect(reqwest::redirect::Policy::none())
            .dns_resolver(Arc::new(CheckedResolver(targets.clone())))
            .build()
            .map_err(|err| WorkerError::Config(format!("notify http client: {err}")))?;
        Ok(Notifier {
            ledger,
            history: None,
            http,
            targets,
            key,
            links,
            max_attempts,
            retry_for,
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

    /// Sends one webhook and records its outcome; a job's, in a `webhook` span of its trace.
    async fn deliver(&self, notification: &Notification) {
        let span = info_span!(
            "webhook",
            job_id = tracing::field::Empty,
            event_id = notification.event_id,
            attempt = notification.attempt + 1,
        );
        if let NotifyTarget::Job(job_id) = notification.target {
            span.record("job_id", tracing::field::display(job_id));
            crate::telemetry::in_job_trace(&span, job_id);
        }
        self.deliver_once(notification).instrument(span).await
    }

    async fn deliver_once(&self, notification: &Notification) {
        let (outcome, detail) = match self.send(notification).await {
            Ok(Sent::Delivered) => (NotifyOutcome::Sent, "delivered".to_owned()),
            Ok(Sent::NotAsked(event)) => (
                NotifyOutcome::Skipped,
                format!("{event} is not among the job's notify_events"),
            ),
            Err(Undeliverable::Refused(why)) => {
                warn!(target = %notification.target, why, "webhook target refused");
                (NotifyOutcome::GaveUp, format!("target refused: {why}"))
            }
            Err(Undeliverable::Failed(failure)) => {
                let attempt = notification.attempt + 1;
                let retried_for = nominal_elapsed(self.backoff_min, self.backoff_max, attempt);
                if attempt >= self.max_attempts || retried_for >= self.retry_for {
                    (
                        NotifyOutcome::GaveUp,
                        format!(
                            "after {attempt} attempts over about {}: {failure}",
                            humantime::format_duration(Duration::from_secs(retried_for.as_secs()))
                        ),
                    )
                } else {
                    let delay = backoff(self.backoff_min, self.backoff_max, attempt);
                    (NotifyOutcome::Retry(delay), failure)
                }
            }
        };
        info!(target = %notification.target, event_id = notification.event_id, ?outcome, detail, "webhook");
        let outcome_name = match outcome {
            NotifyOutcome::Sent => OUTCOME_NAMES[0],
            NotifyOutcome::Retry(_) => OUTCOME_NAMES[1],
            NotifyOutcome::GaveUp => OUTCOME_NAMES[2],
            NotifyOutcome::Skipped => OUTCOME_NAMES[3],
        };
        metrics::counter!("reelq_webhooks_total", "outcome" => outcome_name).increment(1);
        if let Err(err) = self.ledger.notified(notification, outcome, &detail).await {
            warn!(target = %notification.target, error = %err, "recording the webhook failed; it will be sent again");
        }
    }

    /// Reads the archived history too (a batch's jobs that ended earlier and left Redis).
    pub(crate) fn with_history(self, history: HistoryStore) -> Self {
        Notifier {
            history: Some(history),
            ..self
        }
    }

    async fn send(&self, notification: &Notification) -> Result<Sent, Undeliverable> {
        self.targets
            .check_url("notify_url", &notification.url)
            .map_err(|err| Undeliverable::Refused(err.message))?;
        let timestamp = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let body = match notification.target {
            NotifyTarget::Job(job_id) => match self.ledger.job(job_id).await {
                Ok(Some(record)) => {
                    let event = format!("job.{}", record.state);
                    let events = &record.spec.notify_events;
                    if !events.is_empty() && !events.contains(&event) {
                        return Ok(Sent::NotAsked(event));
                    }
                    let link = self.link(&record).await;
                    event_body(&notification.event_id, &record, link)
                }
                Ok(None) => return Err(Undeliverable::Failed("job record gone".into())),
                Err(err) => return Err(Undeliverable::Failed(err.to_string())),
            },
            NotifyTarget::Batch(batch_id) => self
                .batch_event_body(&notification.event_id, batch_id, timestamp)
                .await
                .map_err(|err| Undeliverable::Failed(err.to_string()))?,
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
            .map_err(Undeliverable::from_transport)?;
        match response.status() {
            status if status.is_success() => Ok(Sent::Delivered),
            status => Err(Undeliverable::Failed(format!("answered {status}"))),
        }
    }
}

/// Why a webhook was not delivered.
enum Undeliverable {
    /// The target is one webhooks may not reach: retrying cannot help.
    Refused(String),
    Failed(String),
}

impl Undeliverable {
    fn from_transport(err: reqwest::Error) -> Self {
        let err = err.without_url();
        // The resolver's refusal comes back as a connect error: find its message.
        let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&err);
        while let Some(inner) = source {
            if let Some(refused) = inner.downcast_ref::<TargetRefused>() {
                return Undeliverable::Refused(refused.0.clone());
            }
            source = inner.source();
        }
        Undeliverable::Failed(format!("transport: {err}"))
    }
}

impl Notifier {
    /// The batch summary: counts by state and the spend reserved against its budget.
    /// Its `timestamp` is this delivery's (the ledger keeps no end time for a batch).
    async fn batch_event_body(
        &self,
        event_id: &str,
        batch_id: BatchId,
        timestamp: u64,
    ) -> anyhow::Result<serde_json::Value> {
        let info = self.ledger.batch_info(batch_id).await?;
        let job_ids = self.ledger.batch_jobs(batch_id).await?;
        let mut states: BTreeMap<&'static str, u64> = BTreeMap::new();
        let live = self.ledger.jobs(&job_ids).await?;
        for record in &live {
            *states.entry(record.state.as_str()).or_default() += 1;
        }
        // The batch's jobs that ended earlier may have been archived already.
        if let Some(history) = self.history.as_ref().filter(|_| live.len() < job_ids.len()) {
            let live: HashSet<JobId> = live.iter().map(|record| record.job_id).collect();
            let missing: Vec<JobId> = job_ids
                .into_iter()
                .filter(|id| !live.contains(id))
                .collect();
            for line in history.find(&missing).await?.into_values() {
                let job: ArchivedJob = serde_json::from_str(&line.json)?;
                *states.entry(job.record.state.as_str()).or_default() += 1;
            }
        }
        Ok(json!({
            "id": event_id,
            "type": "batch.finished",
            "timestamp": iso8601(timestamp * 1000),
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

impl Notifier {
    /// A presigned download link for a stored job's video; None for local stores, for jobs
    /// without a video, or if signing failed (logged: the event goes without it).
    async fn link(&self, record: &JobRecord) -> Option<String> {
        let key = record.object_key.as_deref()?;
        let (store, lifetime) = &self.links;
        match store.link(key, *lifetime).await {
            Ok(link) => link,
            Err(err) => {
                warn!(job_id = %record.job_id, error = %err, "could not sign a link to the video");
                None
            }
        }
    }
}

/// The event: what a producer needs to act on the ending, never the prompt or a secret. Its
/// `id` is the `webhook-id` header's (kept across retries); `timestamp` is when the job ended
/// (ISO 8601, as Standard Webhooks payloads carry it), the same on every retry.
fn event_body(event_id: &str, record: &JobRecord, video_url: Option<String>) -> serde_json::Value {
    json!({
        "id": event_id,
        "type": format!("job.{}", record.state),
        "timestamp": iso8601(record.updated_ms),
        "data": EventData { job: record.view(), video_url },
    })
}

/// A job event's data: the job as reports show it, with a link to its video.
#[derive(serde::Serialize)]
struct EventData<'a> {
    #[serde(flatten)]
    job: reelq_queue::JobView<'a>,
    video_url: Option<String>,
}

/// A unix time in milliseconds as ISO 8601 (RFC 3339, UTC), e.g. `2026-12-01T16:30:00.123Z`.
fn iso8601(unix_ms: u64) -> String {
    humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_millis(unix_ms)).to_string()
}

#[cfg(test)]
mod tests {
    use reqwest::dns::Resolve;

    use super::*;

    #[test]
    fn the_default_schedule_retries_for_days_then_gives_up() {
        let (min, max) = (Duration::from_secs(1), Duration::from_secs(3600));
        let three_days = Duration::from_secs(3 * 24 * 3600);
        let attempts = (1..)
            .find(|&n| nominal_elapsed(min, max, n) >= three_days)
            .unwrap();
        // Doubling to an hour (about 1 h 8 min over the first 12), then hourly.
        assert!((80..90).contains(&attempts), "{attempts}");
        assert!(attempts < 200, "within the default max_attempts");
        assert_eq!(nominal_elapsed(min, max, 3), Duration::from_secs(7));
    }

    #[tokio::test]
    async fn a_name_resolving_to_this_host_is_refused_unless_allowed() {
        let strict = CheckedResolver(Arc::new(WebhookTargets::default()));
        let err = match strict.resolve("localhost".parse().unwrap()).await {
            Ok(addrs) => panic!("resolved to {:?}", addrs.collect::<Vec<_>>()),
            Err(err) => err,
        };
        assert!(err.downcast_ref::<TargetRefused>().is_some(), "{err}");

        let loopback_allowed = CheckedResolver(Arc::new(WebhookTargets {
            allow_http: false,
            allow: vec!["127.0.0.0/8".parse().unwrap(), "::1/128".parse().unwrap()],
        }));
        let addrs: Vec<SocketAddr> = loopback_allowed
            .resolve("localhost".parse().unwrap())
            .await
            .unwrap()
            .collect();
        assert!(
            !addrs.is_empty() && addrs.iter().all(|a| a.ip().is_loopback()),
            "{addrs:?}"
        );
    }
}
