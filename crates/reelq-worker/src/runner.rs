//! The claim loop: take as many due jobs as there are free slots, run each step on the task
//! tracker with its slot's permit, sleep until the next job falls due (or an enqueue wakes
//! us), and on shutdown stop claiming and give in-flight steps a grace period.

use std::{sync::Arc, time::Duration};

use futures_util::{StreamExt, stream::BoxStream};
use reelq_queue::{ClaimOptions, Ledger, WorkerInfo};
use reelq_storage::{HistoryStore, VideoStore};
use tokio::{net::TcpListener, sync::Semaphore};
use tokio_util::{sync::CancellationToken, task::TaskTracker};
use tracing::{error, info, warn};

use crate::{
    Role, WorkerConfig, WorkerError,
    accounts::Accounts,
    archiver::Archiver,
    callbacks::{self, CallbackState},
    notify::Notifier,
    ops::{self, OpsState},
    paid_creates::PaidCreates,
    reconcile::Reconciler,
    rollback::{Gate, Guard},
    steps::{self, StepContext},
};

/// How often a worker announces itself; it is listed for three of these after its last.
const HEARTBEAT_EVERY: Duration = Duration::from_secs(5);

/// How long to wait before claiming again after Redis failed a claim.
const CLAIM_ERROR_PAUSE: Duration = Duration::from_secs(1);

/// How often a worker looks for committed batches whose producer died while queueing them.
const RELEASE_SWEEP_EVERY: Duration = Duration::from_secs(5);

/// Finishes queueing batches their producer committed and then left (a large batch is
/// committed whole, then queued a chunk at a time: see `reelq_queue`'s enqueue module).
async fn release_committed(ledger: Ledger, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(RELEASE_SWEEP_EVERY);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        match ledger.release_committed(reelq_queue::SWEEP_AFTER).await {
            Ok(0) => {}
            Ok(queued) => info!(queued, "queued the rest of a committed batch"),
            Err(err) => warn!(error = %err, "could not queue committed batches; trying again"),
        }
    }
}

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
        tracker.spawn(release_committed(ledger.clone(), shutdown.clone()));
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
    let mut wakeups = None;
    let slots = Arc::new(Semaphore::new(config.concurrency));
    let idle_poll = config.idle_poll;
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
    ledger.heartbeat(&me, 3 * HEARTBEAT_EVERY).await?;
    tracker.spawn(heartbeats(ledger.clone(), me, shutdown.clone()));
    info!(worker = %name, concurrency = config.concurrency, role = ?config.role, "worker started");

    // A callbacks-only worker claims nothing: it serves the receiver until shutdown.
    if config.role == Role::All {
        loop {
            let first_slot = tokio::select! {
                _ = shutdown.cancelled() => break,
                permit = slots.clone().acquire_owned() => permit.expect("the semaphore is never closed"),
            };
            let mut permits = vec![first_slot];
            while permits.len() < config.claim_batch {
                match slots.clone().try_acquire_owned() {
                    Ok(permit) => permits.push(permit),
                    Err(_) => break,
                }
            }
            if let Some(reason) = gate.closed() {
                // Nothing is claimed until the ledger is repaired: the guard opens the gate.
                warn!(reason, "not claiming");
                drop(permits);
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = tokio::time::sleep(CLAIM_ERROR_PAUSE) => continue,
                }
            }
            if let Some(left) = ledger.reconnect_grace_left() {
                // Just reconnected (maybe to a promoted replica): the workers that saw writes
                // the ledger lost get this long to say so before anything is claimed.
                drop(permits);
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = tokio::time::sleep(left) => continue,
                }
            }
            if ledger.replicas_behind() {
                // No submit could be made durable: claim again once the replicas hold a probe
                // write (this waits up to replica_wait).
                drop(permits);
                if let Err(err) = ledger.await_replicas().await {
                    warn!(error = %err, "replicas not acknowledging writes; not claiming until they do");
                    if !matches!(err, reelq_queue::QueueError::NotDurable { .. }) {
                        tokio::select! {
                            _ = shutdown.cancelled() => break,
                            _ = tokio::time::sleep(CLAIM_ERROR_PAUSE) => {}
                        }
                    }
                }
                continue;
            }
            if let Some(reason) = ledger.unsafe_reason() {
                // Submits would be refused anyway; claiming would only churn leases.
                warn!(
                    reason,
                    "redis cannot keep writes durable; not claiming until it can"
                );
                drop(permits);
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = tokio::time::sleep(config.durability_check) => continue,
                }
            }
            let options = ClaimOptions {
                owner: &name,
                max_jobs: permits.len(),
                lease: config.lease,
                resubmit_uncertain: config.resubmit_uncertain,
                limits: &limits,
                accounts: &served,
            };
            let claim = match ledger.claim(&options).await {
                Ok(claim) => claim,
                Err(err) => {
                    error!(error = %err, "claim failed; retrying");
                    drop(permits);
                    tokio::select! {
                        _ = shutdown.cancelled() => break,
                        _ = tokio::time::sleep(CLAIM_ERROR_PAUSE) => continue,
                    }
                }
            };
            for wait in &claim.waits {
                metrics::counter!(
                    "reelq_limiter_waits_total",
                    "account" => wait.account.as_str().to_owned(),
                    "limit" => wait.limit.as_str(),
                )
                .increment(1);
            }
            let idle_for = claim.next_due_in.unwrap_or(idle_poll).min(idle_poll);
            let idle = claim.leases.is_empty();
            for (lease, permit) in claim.leases.into_iter().zip(permits.drain(..)) {
                let context = context.clone();
                tracker.spawn(async move {
                    steps::run_step(&context, lease).await;
                    drop(permit);
                });
            }
            drop(permits);
            if idle {
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = tokio::time::sleep(idle_for) => {}
                    _ = next_wakeup(&ledger, &mut wakeups) => {}
                    _ = context.step_due.notified() => {}
                }
            }
        }
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

/// Announces the worker every [`HEARTBEAT_EVERY`] until shutdown; a missed beat (Redis
/// away) is only logged: the worker keeps working and is listed again at the next.
async fn heartbeats(ledger: Ledger, me: WorkerInfo, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(HEARTBEAT_EVERY);
    tick.tick().await;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        if let Err(err) = ledger.heartbeat(&me, 3 * HEARTBEAT_EVERY).await {
            warn!(error = %err, "heartbeat not recorded");
        }
    }
}

/// Waits for the next enqueue notice. Wake-ups only cut idle latency: when the feed is down
/// (Redis restarting) this waits forever and the caller's idle timer takes over; the next
/// call tries to subscribe again.
async fn next_wakeup(ledger: &Ledger, wakeups: &mut Option<BoxStream<'static, ()>>) {
    if wakeups.is_none() {
        *wakeups = ledger.wakeups().await.ok();
    }
    match wakeups {
        Some(feed) => {
            if feed.next().await.is_none() {
                *wakeups = None;
            }
        }
        None => std::future::pending().await,
    }
}
