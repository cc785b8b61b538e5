//! The worker config's optional sections and `[store]`: telemetry, webhooks, callbacks,
//! storage and history (their defaults are the `default_*` functions by their fields, or
//! `DEFAULTS` in `config.rs` for `[store]` and `[history]`).

use std::time::Duration;

use reelq_core::Secret;
use serde::Deserialize;

use super::durations;

/// Where traces go: one per job (see the worker's `telemetry` module).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TelemetryConfig {
    /// An OTLP/HTTP receiver's base URL (`http://collector:4318`); spans are sent as JSON
    /// to its `/v1/traces`.
    pub otlp_endpoint: String,
    /// How long finished spans wait to be sent in one batch.
    #[serde(
        default = "default_telemetry_export_delay",
        deserialize_with = "durations::deserialize"
    )]
    pub export_delay: Duration,
}

fn default_telemetry_export_delay() -> Duration {
    Duration::from_millis(5_000)
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotifyConfig {
    /// Standard Webhooks signing secret, `whsec_<base64>`; share it with the receivers.
    pub secret: Secret,
    #[serde(
        default = "default_notify_timeout",
        deserialize_with = "durations::deserialize"
    )]
    pub timeout: Duration,
    /// Deliveries of one event at most (backoff doubles up to `backoff_max`).
    #[serde(default = "default_notify_max_attempts")]
    pub max_attempts: u32,
    /// How long an event is retried for, by its schedule: 3 days by default, as webhook
    /// senders commonly retry (OpenAI's up to 72 hours); whichever of this and
    /// `max_attempts` comes first ends it.
    #[serde(
        default = "default_notify_retry_for",
        deserialize_with = "durations::deserialize"
    )]
    pub retry_for: Duration,
    #[serde(
        default = "default_notify_backoff_max",
        deserialize_with = "durations::deserialize"
    )]
    pub backoff_max: Duration,
    /// Send to plain-http URLs too (default: https only).
    #[serde(default)]
    pub allow_http: bool,
    /// Networks webhooks may reach although not public (CIDRs, e.g. `"10.20.0.0/16"`);
    /// loopback, private, link-local and metadata addresses are refused otherwise. Give the
    /// producers the same (`REELQ_NOTIFY_ALLOW`).
    #[serde(default)]
    pub allow: Vec<ipnet::IpNet>,
}

impl NotifyConfig {
    pub fn targets(&self) -> reelq_core::WebhookTargets {
        reelq_core::WebhookTargets {
            allow_http: self.allow_http,
            allow: self.allow.clone(),
        }
    }
}

fn default_notify_timeout() -> Duration {
    Duration::from_millis(10_000)
}
fn default_notify_max_attempts() -> u32 {
    200
}
fn default_notify_retry_for() -> Duration {
    Duration::from_millis(3 * 24 * 3600 * 1000)
}
fn default_notify_backoff_max() -> Duration {
    Duration::from_millis(3_600_000)
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CallbacksConfig {
    /// The receiver's public base URL (a load balancer in front of the replicas), from which
    /// each submit's callback URL is composed. Should be HTTPS on the internet.
    pub public_base_url: String,
    /// Where this process serves the receiver, e.g. `0.0.0.0:8081`; absent, this replica only
    /// composes URLs and another one receives.
    pub listen: Option<String>,
    /// Larger bodies are refused with 413.
    #[serde(default = "default_max_body_bytes")]
    pub max_body_bytes: usize,
}

fn default_max_body_bytes() -> usize {
    1024 * 1024
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreConfig {
    /// `s3://bucket/prefix`, `file:///dir`, or a plain local path.
    pub url: String,
    /// Multipart part size: the bound on buffered memory per upload (S3 needs >= 5 MiB).
    pub part_size_bytes: usize,
    /// How long the presigned link in a completion webhook (`video_url`, S3 stores only)
    /// stays valid: default a day, at most 7 days (SigV4's limit).
    #[serde(deserialize_with = "durations::deserialize")]
    pub link_ttl: Duration,
    #[serde(default)]
    pub s3: S3Config,
}

/// Archiving finished jobs: after `grace` (`failed_grace` for failed jobs, which operators
/// retry) a job's record leaves Redis for gzip JSON Lines segments in the object store
/// (`history/v1/day=YYYY-MM-DD/`, beside the videos unless `url` names another store), where
/// every reader still finds it. One replica archives at a time.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HistoryConfig {
    /// Off: finished jobs stay in Redis for `retention` instead.
    pub archive: bool,
    #[serde(deserialize_with = "durations::deserialize")]
    pub grace: Duration,
    #[serde(deserialize_with = "durations::deserialize")]
    pub failed_grace: Duration,
    /// How often the archiving replica looks for jobs past their grace.
    #[serde(deserialize_with = "durations::deserialize")]
    pub every: Duration,
    /// Most jobs one pass archives (the rest wait for the next).
    pub max_jobs_per_pass: usize,
    /// Another store for the history (with `[store]`'s S3 settings); unset: the videos'.
    #[serde(default)]
    pub url: Option<String>,
}

impl HistoryConfig {
    pub fn grace(&self) -> reelq_queue::ArchiveGrace {
        reelq_queue::ArchiveGrace {
            ended: self.grace,
            failed: self.failed_grace,
        }
    }
}

/// For `s3://` URLs; unset fields fall back to the standard `AWS_*` environment variables.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct S3Config {
    /// An S3-compatible server's address; requests are then path-style.
    pub endpoint: Option<String>,
    pub region: Option<String>,
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<Secret>,
    #[serde(default)]
    pub allow_http: bool,
}

impl StoreConfig {
    pub fn to_storage(&self) -> reelq_storage::StoreConfig {
        reelq_storage::StoreConfig {
            url: self.url.clone(),
            part_size: self.part_size_bytes,
            s3: reelq_storage::S3Options {
                endpoint: self.s3.endpoint.clone(),
                region: self.s3.region.clone(),
                access_key_id: self.s3.access_key_id.clone(),
                secret_access_key: self.s3.secret_access_key.clone(),
                allow_http: self.s3.allow_http,
            },
        }
    }
}
