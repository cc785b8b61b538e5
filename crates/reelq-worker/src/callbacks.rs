//! The callback receiver: `POST /callbacks/{account}/{job_id}/{token}` for providers that
//! take a callback URL per task, `POST /callbacks/{account}` for account-level webhooks
//! (OpenAI-style; the task id finds the job). It authenticates every request (the per-job
//! token, compared by hash; the provider's signature where it signs, always for account-level
//! webhooks), and turns a verified callback into a hint for the ledger (poll now, or adopt the
//! task of an `uncertain` job). It never fetches anything itself: polling stays the truth.
//!
//! | answer | when                                                      |
//! |--------|-----------------------------------------------------------|
//! | 200    | accepted, including duplicates and stale hints (no-ops)    |
//! | 400    | body unreadable                                            |
//! | 401    | wrong token, bad or missing signature, stale timestamp     |
//! | 404    | unknown account or job, a route whose account is not the job's, a job with no callback token, or a task no job is waiting on (nor an `uncertain` job's, by the provider's record) |
//! | 409    | the task is another job's, the job has another task, or the provider's record of it is not this job's request |
//! | 413    | body over `max_body_bytes`                                 |
//! | 500    | Redis unreachable, or the provider's record could not be read (the provider will retry) |
//!
//! A task is bound to one job: a callback may give a job a task only if the job has none yet
//! or the same one, no other job owns it, and the provider's record of it (where the provider
//! echoes requests: its prompt, model, duration, size) is this job's. Refusals after the route
//! is known are logged with their reason and counted in `reelq_callbacks_refused_total`.

use std::{
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
use reelq_core::{AccountName, JobId};
use reelq_providers::{CallbackError, CallbackHint, CallbackScope, Provider};
use reelq_queue::{Ledger, WakeOutcome};
use tracing::{Instrument as _, info, info_span, warn};

use crate::{
    accounts::Accounts,
    reconcile::{Confirmation, Reconciler},
    steps::{TASK_INDEX_TTL, token_hash},
};

#[derive(Clone)]
pub(crate) struct CallbackState {
    pub(crate) ledger: Ledger,
    pub(crate) accounts: Arc<Accounts>,
    /// Finds the `uncertain` job of a task no job is known to own.
    pub(crate) reconciler: Arc<Reconciler>,
}

pub(crate) fn app(state: CallbackState, max_body_bytes: usize) -> Router {
    Router::new()
        .route(
            "/callbacks/{account}/{job_id}/{token}",
            post(receive_for_job),
        )
        .route("/callbacks/{account}", post(receive_for_account))
        .layer(DefaultBodyLimit::max(max_body_bytes))
        .with_state(state)
}

fn counted(status: StatusCode) -> StatusCode {
    metrics::counter!("reelq_callbacks_total", "status" => status.as_str().to_owned()).increment(1);
    status
}

async fn receive_for_job(
    State(state): State<CallbackState>,
    Path((provider, job_id, token)): Path<(String, String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    counted(for_job(state, provider, job_id, token, headers, body).await)
}

async fn receive_for_account(
    State(state): State<CallbackState>,
    Path(provider): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    counted(for_account(state, provider, headers, body).await)
}

/// The adapter of account `account` if this worker has it and its callbacks come in
/// `scope` (a per-task provider's callbacks need a token; an account's, a signature).
fn adapter(
    state: &CallbackState,
    account: &str,
    scope: CallbackScope,
) -> Option<(AccountName, Arc<dyn Provider>)> {
    let account: AccountName = account.parse().ok()?;
    let adapter = state.accounts.adapter(&account)?.clone();
    (adapter.callback_scope() == scope).then_some((account, adapter))
}

async fn for_job(
    state: CallbackState,
    provider: String,
    job_id: String,
    token: String,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let found =
        adapter(&state, &provider, CallbackScope::PerTask).zip(job_id.parse::<JobId>().ok());
    let Some(((kind, adapter), job_id)) = found else {
        return StatusCode::NOT_FOUND;
    };
    let binding = match state.ledger.callback_binding(job_id).await {
        Ok(Some(binding)) => binding,
        Ok(None) => return StatusCode::NOT_FOUND,
        Err(err) => {
            warn!(%job_id, error = %err, "callback: ledger unreachable");
            return StatusCode::INTERNAL_SERVER_ERROR;
        }
    };
    // Checked before the token: a token is the job's, whichever route carries it, and another
    // account's route would skip this account's signature check.
    if binding.account != kind {
        return refused(&kind, "route_account", StatusCode::NOT_FOUND, job_id);
    }
    let Some(stored_hash) = binding.token_hash else {
        return StatusCode::NOT_FOUND;
    };
    if !constant_time_eq(token_hash(&token).as_bytes(), stored_hash.as_bytes()) {
        return refused(&kind, "token", StatusCode::UNAUTHORIZED, job_id);
    }
    let hint = match parse(adapter.as_ref(), &headers, &body).await {
        Ok(hint) => hint,
        Err(status) => return status,
    };
    if hint.progress_only {
        return StatusCode::OK;
    }
    wake(&state, &kind, job_id, &hint.task_id).await
}

async fn for_account(
    state: CallbackState,
    provider: String,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let Some((kind, adapter)) = adapter(&state, &provider, CallbackScope::Account) else {
        return StatusCode::NOT_FOUND;
    };
    let hint = match parse(adapter.as_ref(), &headers, &body).await {
        Ok(hint) => hint,
        Err(status) => return status,
    };
    if hint.progress_only {
        return StatusCode::OK;
    }
    match state.ledger.job_of_task(&kind, &hint.task_id).await {
        Ok(Some(job_id)) => wake(&state, &kind, job_id, &hint.task_id).await,
        // Not indexed: the task of an `uncertain` job whose create answer was lost (the
        // provider's record of it finds the job), another system's task on the account, or
        // one whose job polling already finished.
        Ok(None) => match state.reconciler.settle_task(&kind, &hint.task_id).await {
            Ok(Some(job_id)) => {
                info!(%job_id, task_id = hint.task_id, "callback settled an uncertain job");
                StatusCode::OK
            }
            Ok(None) => {
                info!(
                    task_id = hint.task_id,
                    "callback for a task no job is waiting on"
                );
                StatusCode::NOT_FOUND
            }
            Err(err) => {
                warn!(task_id = hint.task_id, error = %err, "callback: could not look the task up");
                StatusCode::INTERNAL_SERVER_ERROR
            }
        },
        Err(err) => {
            warn!(task_id = hint.task_id, error = %err, "callback: ledger unreachable");
            StatusCode::INTERNAL_SERVER_ERROR
        }
    }
}

/// Logs and counts a callback refused after its route was known (the reason, never the token).
fn refused(
    account: &AccountName,
    reason: &'static str,
    status: StatusCode,
    job_id: JobId,
) -> StatusCode {
    warn!(%job_id, %account, reason, "callback refused");
    metrics::counter!("reelq_callbacks_refused_total", "account" => account.as_str().to_owned(), "reason" => reason)
        .increment(1);
    status
}

/// Verifies and reads a callback body, or says which status refuses it.
/// Verifies and reads a callback; a signature that does not verify is checked once more
/// after the provider's published keys are fetched again (a key rotated in).
async fn parse(
    adapter: &dyn Provider,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<CallbackHint, StatusCode> {
    let now_s = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let parsed = match adapter.parse_callback(headers, body, now_s) {
        Err(CallbackError::BadSignature) => {
            adapter.refresh_callback_keys().await;
            adapter.parse_callback(headers, body, now_s)
        }
        parsed => parsed,
    };
    parsed.map_err(|err| {
        warn!(provider = %adapter.kind(), error = %err, "callback refused");
        match err {
            CallbackError::Malformed(_) => StatusCode::BAD_REQUEST,
            CallbackError::BadSignature | CallbackError::Stale => StatusCode::UNAUTHORIZED,
        }
    })
}

/// Acts on a verified callback about `job_id`, in a `callback` span of the job's trace.
async fn wake(
    state: &CallbackState,
    kind: &AccountName,
    job_id: JobId,
    task_id: &str,
) -> StatusCode {
    let span = info_span!("callback", %job_id, account = %kind, task_id);
    crate::telemetry::in_job_trace(&span, job_id);
    wake_job(state, kind, job_id, task_id)
        .instrument(span)
        .await
}

async fn wake_job(
    state: &CallbackState,
    kind: &AccountName,
    job_id: JobId,
    task_id: &str,
) -> StatusCode {
    let outcome = match state.ledger.wake(job_id, task_id).await {
        Ok(WakeOutcome::Unconfirmed) => confirm_and_adopt(state, kind, job_id, task_id).await,
        Ok(WakeOutcome::Conflict) => state
            .reconciler
            .refused_binding(kind, job_id, task_id)
            .await
            .map(|conflict| {
                warn!(%job_id, task_id, conflict, "callback names a task that is not its job's");
                WakeOutcome::Conflict
            }),
        other => other.map_err(anyhow::Error::from),
    };
    match outcome {
        Ok(WakeOutcome::Missing) => StatusCode::NOT_FOUND,
        Ok(WakeOutcome::Conflict) => refused(kind, "task_conflict", StatusCode::CONFLICT, job_id),
        Ok(outcome) => {
            info!(%job_id, task_id, ?outcome, "callback");
            StatusCode::OK
        }
        Err(err) => {
            warn!(%job_id, error = %err, "callback: could not act on it (the provider will retry)");
            StatusCode::INTERNAL_SERVER_ERROR
        }
    }
}

/// A callback names a task for a job that has none yet: the provider's record must confirm it
/// is this job's create before the job takes it.
async fn confirm_and_adopt(
    state: &CallbackState,
    kind: &AccountName,
    job_id: JobId,
    task_id: &str,
) -> anyhow::Result<WakeOutcome> {
    match state.reconciler.confirm(kind, job_id, task_id).await? {
        Confirmation::Confirmed => Ok(state
            .ledger
            .adopt_task(
                job_id,
                task_id,
                "its callback (confirmed by the provider's record)",
                TASK_INDEX_TTL,
            )
            .await?),
        Confirmation::Conflict(conflict) => {
            warn!(%job_id, task_id, conflict, "callback names a task that is not its job's");
            Ok(WakeOutcome::Conflict)
        }
    }
}

/// Compares without an early exit, so timing says nothing about how much matched.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
