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
//!
//! Every page needs the API's bearer token, as an `Authorization` header or as the session
//! cookie the login sets (the token's SHA-256, `HttpOnly`, `SameSite=Strict`, which also keeps
//! other sites from posting actions). Read-only unless started with write permission.

mod auth;
mod pages;

use std::sync::Arc;

use axum::{
    Router, middleware,
    routing::{get, post},
};
use reelq_core::Secret;
use reelq_producer::Client;

/// Who may look, and whether they may act.
#[derive(Clone)]
pub struct DashboardConfig {
    /// The API token; the dashboard accepts it as a bearer token or through its login.
    pub token: Secret,
    /// Allow actions (retry, resolve, cancel). Off: every page is read-only.
    pub writable: bool,
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
        .route("/ui/jobs/{job_id}/retry", post(pages::retry_job))
        .route("/ui/jobs/{job_id}/resolve", post(pages::resolve_job))
        .route("/ui/batches", get(pages::batches))
        .route("/ui/batches/{batch_id}", get(pages::batch))
        .route(
            "/ui/batches/{batch_id}/report.csv",
            get(pages::batch_report),
        )
        .route("/ui/batches/{batch_id}/cancel", post(pages::cancel_batch))
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            auth::require_login,
        ));
    Router::new()
        .route("/ui/login", get(auth::login_form).post(auth::login))
        .merge(pages)
        .with_state(state)
}
