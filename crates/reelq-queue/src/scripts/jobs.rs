//! What the enqueue scripts (`enqueue.lua`, `commit.lua`, `release.lua`) share with their
//! helpers in `jobs.lua`: a queued job as they write it, a request's idempotency, and the
//! answer to a request.

use serde::{Deserialize, Serialize};

/// A job to write as queued.
#[derive(Serialize)]
pub(crate) struct QueuedJob {
    pub id: String,
    /// The account its limits are kept under: the one it asked for, or its provider's name
    /// until a claim picks one of the provider's accounts.
    pub provider: String,
    /// The spec's JSON.
    pub spec: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deadline_ms: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub notify_url: Option<String>,
    /// The estimate in millionths of a dollar; 0: unpriced.
    pub cost_micros: u64,
    /// The tenant it belongs to; absent: the default tenant.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    /// A routed job with a candidate after this one: what moves it on when held back.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub route_hold: Option<RouteHoldArg>,
}

/// A routed job's hold as the claim reads it (`fb_ms`, `fb_on` in its record): held back past
/// `patience_ms` from its first due time, by a pause (`on` has `p`) or a limit (`w`), the
/// claim hands it to a worker to move on to its next candidate.
#[derive(Serialize, Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct RouteHoldArg {
    pub patience_ms: u64,
    pub on: &'static str,
}

impl From<reelq_core::RouteHold> for RouteHoldArg {
    fn from(hold: reelq_core::RouteHold) -> Self {
        RouteHoldArg {
            patience_ms: hold.patience_ms,
            on: match (hold.on_pause, hold.on_wait) {
                (true, true) => "pw",
                (true, false) => "p",
                _ => "w",
            },
        }
    }
}

impl QueuedJob {
    /// The job as a large batch's stage keeps it (`P stage:{batch}`, one JSON array per
    /// entry: id, provider, spec, deadline ms or "", notify URL or "", cost micros, tenant
    /// or "", route hold "<patience ms> <on>" or "" (releases before tenants read the first
    /// six, before routes the first seven)): the
    /// format releases before typed edges wrote, so that during a rolling upgrade an older
    /// worker's sweep can still release a batch a newer producer staged (`release.lua` reads
    /// both this and an object).
    pub(crate) fn staged(&self) -> String {
        serde_json::json!([
            self.id,
            self.provider,
            self.spec,
            self.deadline_ms
                .map(|ms| ms.to_string())
                .unwrap_or_default(),
            self.notify_url.clone().unwrap_or_default(),
            self.cost_micros.to_string(),
            self.tenant.clone().unwrap_or_default(),
            self.route_hold
                .map(|hold| format!("{} {}", hold.patience_ms, hold.on))
                .unwrap_or_default(),
        ])
        .to_string()
    }
}

/// A request's idempotency key (its record is `P idem:{key}`), how long the record lives,
/// the request's digest and the receipt to answer a replay with.
#[derive(Serialize)]
pub(crate) struct Once<'a> {
    pub key: &'a str,
    pub ttl_s: u64,
    pub digest: &'a str,
    pub receipt: &'a str,
}

/// What an enqueue or a commit answered.
#[derive(Deserialize)]
#[serde(tag = "answer", rename_all = "snake_case")]
pub(crate) enum Answer {
    New {
        #[allow(dead_code)]
        n_jobs: usize,
    },
    /// The idempotency key answered this request before: its receipt and the batch it made.
    Repeated {
        receipt: String,
        batch: Option<String>,
    },
    /// The idempotency key was used for another request.
    Conflict,
    /// A tenant would pass its cap on jobs waiting: nothing was enqueued.
    OverBacklog {
        tenant: String,
        waiting: u64,
        max: u64,
    },
}
