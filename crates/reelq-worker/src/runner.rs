//! A worker's start and stop: check the config, connect, start each service (the ops and
//! callback listeners, the archiver, the reconciler, the notifier, the rollback guard, the
//! heartbeats, the claim loop: each in its own module with its own `run`), and on shutdown
//! give in-flight steps a grace period.

use std::{sync::Arc, time::Duration};

use reelq_queue::{Ledger, WorkerInfo};
use reelq_storage::{HistoryStore, VideoStore};
use tokio::{net::TcpListener, sync::Semaphore};
use tokio_util::{sync::CancellationToken, task::TaskTracker};
use tracing::{info, warn};

use crate::{
    Role, WorkerConfig, WorkerError,
    accounts::Accounts,
    archiver::Archiver,
    callbacks::{self, CallbackState},
    claim_loop::ClaimLoop,
    heartbeat,
    notify::Notifier,
    ops::{self, OpsState},
    paid_creates::PaidCreates,
    reconcile::Reconciler,
    rollback::{Gate, Guard},
    steps::StepContext,
};

/// The sockets a worker serves on; main binds them from config, tests bind their own.
#[derive(Debug, Default)]
pub struct Listeners {
    /// The callback receiver.
    pub callbacks: Option<TcpListener>,
    /// `/metrics`, `/healthz`, `/readyz`.
    pub ops: Option<TcpListener>,
}

/// Every check a start makes before it connects anywhere: the config's own rules (made at
/// load), each provider account (keys, webhook secrets), the store URL and the webhook
/// signing secret. `reelq-worker --check-config` runs exactly this, and `run` begins with it,
/// so a config that passes the check cannot then fail at start for any of these.
pub fn check_config(config: &WorkerConfig) -> Result<(), WorkerError> {
    Accounts::from_config(config)?;
    VideoStore::check(&config.store.to_storage())?;
    if config.history.url.is_some() {
        VideoStore::check(&config.history_store())?;
    }
    if let Some(notify) = &config.notify {
        reelq_providers::WebhookKey::parse(notify.secret.expose())
            .map_err(|err| WorkerError::Config(format!("notify.secret: {err}")))?;
    }
    Ok(())
}

/// Runs a worker until `shutdown` is cancelled, then drains.
pub async fn run(
    config: WorkerConfig,
    listeners: Listeners,
    shutdown: CancellationToken,
) -> Result<(), WorkerError> {
    check_config(&config)?;
    ops::install_metrics();
    let name = if config.name.is_empty() {
        format!(
            "worker-{}-{:04x}",
            std::process::id(),
            rand::random::<u16>()
        )
    } else {
        config.name.clone()
    };
    let ledger = Ledger::connect(&config.ledger()).await?;
    ledger.repair_rollbacks(&name);
    let schema = ledger.schema().await?;
    if schema < reelq_queue::LEDGER_SCHEMA {
        warn!(
            schema,
            this_release = reelq_queue::LEDGER_SCHEMA,
            "the ledger is in the previous release's format (read and written as it is): run `reelq migrate` once every replica runs this release"
        );
    }
    // Archived jobs leave Redis when archived, not by a TTL: a store that is down must not
    // let them expire unarchived.
    let retention = match config.history.archive {
        true => Duration::ZERO,
        false => config.retention,
    };
    ledger.set_retention(retention).await?;
    let store = VideoStore::open(&config.store.to_storage())?;
    let accounts = Arc::new(Accounts::from_config(&config)?);
    let account_names: Vec<_> = accounts
        .contracts()
        .into_iter()
        .map(|(name, _)| name)
        .collect();
    ops::register_series(&account_names);
    let tracker = TaskTracker::new();
    let models = Arc::new(config.catalog()?);
    let paid = Arc::new(match &config.paid_creates_file {
        Some(path) => PaidCreates::open(path).map_err(|err| {
            WorkerError::Config(format!("paid_creates_file {}: {err}", path.display()))
        })?,
        None => PaidCreates::default(),
    });
    // Creates a worker before this one made are given back before anything is claimed.
    let gate = Arc::new(Gate::starting(paid.len() > 0));
    if let Some(listener) = listeners.ops {
        let state = OpsState {
            gate: gate.clone(),
            ledger: ledger.clone(),
            store: store.clone(),
            accounts: account_names.clone(),
            store_check: ops::StoreCheck::default(),
        };
        info!(addr = ?listener.local_addr().ok(), "ops endpoints listening");
        tracker.spawn(reelq_http::serve(
            listener,
            ops::app(state),
            config.http_limits(),
            shutdown.clone().cancelled_owned(),
        ));
    }
    let reconciler = Arc::new(Reconciler {
        ledger: ledger.clone(),
        accounts: accounts.clone(),
        absent_after: (!config.reconcile_absent_after.is_zero())
            .then_some(config.reconcile_absent_after),
    });
    if let Some(listener) = listeners.callbacks {
        let max_body = config
            .callbacks
            .as_ref()
            .map_or(1024 * 1024, |c| c.max_body_bytes);
        let state = CallbackState {
            ledger: ledger.clone(),
            accounts: accounts.clone(),
            reconciler: reconciler.clone(),
        };
        info!(addr = ?listener.local_addr().ok(), "callback receiver listening");
        tracker.spawn(reelq_http::serve(
            listener,
            callbacks::app(state, max_body),
            config.http_limits(),
            shutdown.clone().cancelled_owned(),
        ));
    }
    let history = match (&config.history.url, config.history.archive) {
        (_, false) => None,
        (None, true) => Some(HistoryStore::beside(&store)),
        (Some(_), true) => Some(HistoryStore::open(&config.history_store())?),
    };
    if let Some(history) = history.clone().filter(|_| config.role == Role::All) {
        let archiver = Archiver::new(
            ledger.clone(),
            history,
            config.history.grace(),
            config.history.max_jobs_per_pass,
        );
        tracker.spawn(Arc::new(archiver).run(config.history.every, shutdown.clone()));
    }
    if config.role == Role::All {
        let every = config.reconcile_every;
        tracker.spawn(reconciler.run(every, shutdown.clone()));
        tracker.spawn(heartbeat::release_committed(
            ledger.clone(),
            shutdown.clone(),
        ));
    }
    if let Some(notify) = config.notify.as_ref().filter(|_| config.role == Role::All) {
        let notifier = Notifier::new(
            ledger.clone(),
            &notify.secret,
            notify.targets(),
            (store.clone(), config.store.link_ttl),
            notify.timeout,
            (notify.max_attempts, notify.retry_for),
            (config.backoff_min, notify.backoff_max),
        )?;
        let notifier = match &history {
            Some(history) => notifier.with_history(history.clone()),
            None => notifier,
        };
        let idle_poll = config.idle_poll;
        tracker.spawn(Arc::new(notifier).run(idle_poll, shutdown.clone()));
    }
    let guard = Arc::new(Guard {
        ledger: ledger.clone(),
        name: name.clone(),
        paid: paid.clone(),
        gate: gate.clone(),
    });
    tracker.spawn(guard.run(shutdown.clone()));
    let context = Arc::new(StepContext {
        paid,
        models,
        ledger: ledger.clone(),
        store,
        accounts: accounts.clone(),
        callback_base: config.callbacks.as_ref().map(|c| c.public_base_url.clone()),
        step_due: tokio::sync::Notify::new(),
        lease: config.lease,
        max_attempts: config.max_attempts,
        max_attempts_paid: config.max_attempts_paid,
        credits_pause: config.credits_pause,
        backoff_min: config.backoff_min,
        backoff_max: config.backoff_max,
    });
    let limits = config.limits();
    let served = accounts.contracts();
    ledger.publish_limits(&limits).await?;
    let me = WorkerInfo {
        name: name.clone(),
        role: match config.role {
            Role::All => "all".into(),
            Role::Callbacks => "callbacks".into(),
        },
        version: env!("CARGO_PKG_VERSION").into(),
        accounts: served
            .iter()
            .map(|(account, _)| account.to_string())
            .collect(),
        concurrency: config.concurrency,
        started_ms: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64),
        seen_ms: 0,
        ledger_schema: reelq_queue::LEDGER_SCHEMA,
    };
    ledger.heartbeat(&me, heartbeat::LISTED_FOR).await?;
    tracker.spawn(heartbeat::run(ledger.clone(), me, shutdown.clone()));
    info!(worker = %name, concurrency = config.concurrency, role = ?config.role, "worker started");

    // A callbacks-only worker claims nothing: it serves the receiver until shutdown.
    if config.role == Role::All {
        let claims = ClaimLoop {
            ledger: ledger.clone(),
            name: name.clone(),
            gate,
            context,
            slots: Arc::new(Semaphore::new(config.concurrency)),
            claim_batch: config.claim_batch,
            lease: config.lease,
            resubmit_uncertain: config.resubmit_uncertain,
            limits,
            served,
            idle_poll: config.idle_poll,
            durability_check: config.durability_check,
        };
        claims.run(&tracker, shutdown.clone()).await;
    }
    if config.role == Role::Callbacks {
        shutdown.cancelled().await;
    }
    tracker.close();
    let grace = config.shutdown_grace;
    info!(worker = %name, in_flight = tracker.len(), "shutting down");
    if tokio::time::timeout(grace, tracker.wait()).await.is_err() {
        warn!(worker = %name, "grace period over; unfinished steps resume elsewhere when their leases expire");
    }
    if let Err(err) = ledger.forget_worker(&name).await {
        warn!(worker = %name, error = %err, "could not take this worker off the list; it expires");
    }
    info!(worker = %name, "worker stopped");
    Ok(())
}
