//! The operators' dashboard, in the spirit of Sidekiq's Web UI: server-rendered pages (maud,
//! no JavaScript build) over the ledger, served under `/ui` by `reelq serve --dashboard`.
//!
//! | route | page or action |
//! |---|---|
//! | `GET /ui` | overview: depths per state, in flight per provider against its limits, stored per 5 minutes over the last hour, failures by class |
//! | `GET /ui/jobs?state=&provider=&batch=` | jobs, filtered |
//! | `GET /ui/jobs/{id}` | one job: its record, event timeline, stored object, errors |
//! | `GET /ui/batches`, `GET /ui/batches/{id}` | batches: progress with ETA, spend against budget |
//! | `GET /ui/batches/{id}/report.csv` | the batch report |
//! | `POST /ui/jobs/{id}/retry`, `/resolve`, `POST /ui/batches/{id}/cancel` | actions, only when writable |
//! | `GET`/`POST /ui/login` | a form for the API token; sets a session cookie |
//! | `POST /ui/logout` | clears the session cookie |
//!
//! Every page needs the API's bearer token, as an `Authorization` header or as the signed,
//! expiring session cookie the login sets (`auth.rs`). Read-only unless started with write
//! permission.

mod auth;
mod pages;

use std::{sync::Arc, time::Duration};

use axum::{
    Router, middleware,
    routing::{get, post},
};
use reelq_core::{ApiToken, Secret};
use reelq_producer::Client;

/// Who may look, and whether they may act.
#[derive(Clone)]
pub struct DashboardConfig {
    /// The API token; the dashboard accepts it as a bearer token or through its login.
    pub token: ApiToken,
    /// Allow actions (retry, resolve, cancel). Off: every page is read-only.
    pub writable: bool,
    /// Signs session cookies. Random per process unless configured, so sessions end when the
    /// server restarts; replicas behind one load balancer share a configured one.
    pub session_key: Secret,
    /// How long a login lasts.
    pub session_ttl: Duration,
    /// Served over https (the session cookie is then always `Secure`).
    pub https: bool,
    /// The workers' store: a job page then plays its video (a presigned link for S3, else
    /// `/ui/jobs/{id}/video`, streamed with range support).
    pub videos: Option<reelq_producer::Videos>,
}

impl DashboardConfig {
    /// A config with a random session key, 12-hour sessions, and `Secure` cookies only when
    /// a proxy says the request came over https.
    pub fn new(token: ApiToken, writable: bool) -> Self {
        DashboardConfig {
            token,
            writable,
            session_key: Secret::new(hex::encode(rand::random::<[u8; 32]>())),
            session_ttl: Duration::from_secs(12 * 3600),
            https: false,
            videos: None,
        }
    }
}

#[derive(Clone)]
pub(crate) struct Dashboard {
    pub(crate) client: Client,
    pub(crate) config: Arc<DashboardConfig>,
}

/// The dashboard's routes, all under `/ui`.
pub fn router(client: Client, config: DashboardConfig) -> Router {
    let state = Dashboard {
        client,
        config: Arc::new(config),
    };
    let pages = Router::new()
        .route("/ui", get(pages::overview))
        .route("/ui/jobs", get(pages::jobs))
        .route("/ui/jobs/{job_id}", get(pages::job))
        .route("/ui/jobs/{job_id}/video", get(pages::job_video))
        .route("/ui/jobs/{job_id}/thumbnail", get(pages::job_thumbnail))
        .route("/ui/jobs/{job_id}/retry", post(pages::retry_job))
        .route("/ui/jobs/{job_id}/resolve", post(pages::resolve_job))
        .route("/ui/batches", get(pages::batches))
        .route("/ui/usage", get(pages::usage))
        .route("/ui/batches/{batch_id}", get(pages::batch))
        .route(
            "/ui/batches/{batch_id}/report.csv",
            get(pages::batch_report),
        )
        .route("/ui/batches/{batch_id}/cancel", post(pages::cancel_batch))
        .route(
            "/ui/batches/{batch_id}/retry-failed",
            post(pages::retry_failed_batch),
        )
        .route(
            "/ui/accounts/{account}/{action}",
            post(pages::pause_account),
        )
        .route("/ui/batches/{batch_id}/resume", post(pages::resume_batch))
        .route("/ui/jobs/bulk", post(pages::bulk_jobs))
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            auth::require_login,
        ));
    Router::new()
        .route("/ui/login", get(auth::login_form).post(auth::login))
        .route("/ui/logout", post(auth::logout))
        .merge(pages)
        .with_state(state)
}
