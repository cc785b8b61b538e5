//! The callback receiver: `POST /callbacks/{provider}/{job_id}/{token}`. It authenticates
//! every request (the per-job token, compared by hash; the provider's signature where it
//! signs), and turns a verified callback into a hint for the ledger (poll now, or adopt the
//! task of an `uncertain` job). It never fetches anything itself: polling stays the truth.
//!
//! | answer | when                                                      |
//! |--------|-----------------------------------------------------------|
//! | 200    | accepted, including duplicates and stale hints (no-ops)    |
//! | 400    | body unreadable                                            |
//! | 401    | wrong token, bad or missing signature, stale timestamp     |
//! | 404    | unknown provider or job, or a job with no callback token   |
//! | 413    | body over `max_body_bytes`                                 |
//! | 500    | Redis unreachable (the provider will retry)                |

use std::{
    collections::HashMap,
    sync::Arc,
    time::{SystemTime, UNIX_EPOCH},
};

use axum::{
    Router,
    body::Bytes,
    extract::{DefaultBodyLimit, Path, State},
    http::{HeaderMap, StatusCode},
    routing::post,
};
use reelq_core::{JobId, ProviderKind};
use reelq_providers::{CallbackError, Provider};
use reelq_queue::{Ledger, WakeOutcome};
use tracing::{info, warn};

use crate::steps::token_hash;

#[derive(Clone)]
pub(crate) struct CallbackState {
    pub(crate) ledger: Ledger,
    pub(crate) providers: Arc<HashMap<ProviderKind, Arc<dyn Provider>>>,
}

pub(crate) fn app(state: CallbackState, max_body_bytes: usize) -> Router {
    Router::new()
        .route("/callbacks/{provider}/{job_id}/{token}", post(receive))
        .layer(DefaultBodyLimit::max(max_body_bytes))
        .with_state(state)
}

async fn receive(
    State(state): State<CallbackState>,
    Path((provider, job_id, token)): Path<(String, String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let status = handle(state, provider, job_id, token, headers, body).await;
    metrics::counter!("reelq_callbacks_total", "status" => status.as_str().to_owned()).increment(1);
    status
}

async fn handle(
    state: CallbackState,
    provider: String,
    job_id: String,
    token: String,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let found = ProviderKind::ALL
        .into_iter()
        .find(|kind| kind.as_str() == provider)
        .and_then(|kind| state.providers.get(&kind))
        .zip(job_id.parse::<JobId>().ok());
    let Some((adapter, job_id)) = found else {
        return StatusCode::NOT_FOUND;
    };
    let stored_hash = match state.ledger.callback_token_hash(job_id).await {
        Ok(Some(hash)) => hash,
        Ok(None) => return StatusCode::NOT_FOUND,
        Err(err) => {
            warn!(%job_id, error = %err, "callback: ledger unreachable");
            return StatusCode::INTERNAL_SERVER_ERROR;
        }
    };
    if !constant_time_eq(token_hash(&token).as_bytes(), stored_hash.as_bytes()) {
        warn!(%job_id, "callback refused: wrong token");
        return StatusCode::UNAUTHORIZED;
    }
    let now_s = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let hint = match adapter.parse_callback(&headers, &body, now_s) {
        Ok(hint) => hint,
        Err(err @ CallbackError::Malformed(_)) => {
            warn!(%job_id, error = %err, "callback refused");
            return StatusCode::BAD_REQUEST;
        }
        Err(err) => {
            warn!(%job_id, error = %err, "callback refused");
            return StatusCode::UNAUTHORIZED;
        }
    };
    if hint.progress_only {
        return StatusCode::OK;
    }
    match state.ledger.wake(job_id, &hint.task_id).await {
        Ok(WakeOutcome::Missing) => StatusCode::NOT_FOUND,
        Ok(outcome) => {
            info!(%job_id, task_id = hint.task_id, ?outcome, "callback");
            StatusCode::OK
        }
        Err(err) => {
            warn!(%job_id, error = %err, "callback: ledger unreachable");
            StatusCode::INTERNAL_SERVER_ERROR
        }
    }
}

/// Compares without an early exit, so timing says nothing about how much matched.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
