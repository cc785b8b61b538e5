//! The claim loop: take as many due jobs as there are free slots, run each step on the task
//! tracker with its slot's permit, sleep until the next job falls due (or an enqueue wakes
//! us, or a step leaves its job due at once), and stop claiming on shutdown. Nothing is
//! claimed while the ledger cannot keep a submit durable or is being repaired.

use std::{sync::Arc, time::Duration};

use futures_util::{StreamExt, stream::BoxStream};
use reelq_core::{AccountName, ProviderKind};
use reelq_queue::{ClaimOptions, Ledger, ProviderLimit};
use tokio::sync::Semaphore;
use tokio_util::{sync::CancellationToken, task::TaskTracker};
use tracing::{error, warn};

use crate::{
    rollback::Gate,
    steps::{self, StepContext},
};

/// How long to wait before claiming again after Redis failed a claim.
const CLAIM_ERROR_PAUSE: Duration = Duration::from_secs(1);

/// One worker's claims: its name in leases, its slots, and the policy a claim carries.
pub(crate) struct ClaimLoop {
    pub(crate) ledger: Ledger,
    pub(crate) name: String,
    /// Closed while the ledger is repaired after a rollback.
    pub(crate) gate: Arc<Gate>,
    pub(crate) context: Arc<StepContext>,
    /// One permit per step running at once (`concurrency`).
    pub(crate) slots: Arc<Semaphore>,
    pub(crate) claim_batch: usize,
    pub(crate) lease: Duration,
    pub(crate) resubmit_uncertain: bool,
    pub(crate) limits: Vec<ProviderLimit>,
    pub(crate) served: Vec<(AccountName, ProviderKind)>,
    pub(crate) idle_poll: Duration,
    pub(crate) durability_check: Duration,
}

impl ClaimLoop {
    /// Claims and spawns steps on `tracker` until `shutdown`.
    pub(crate) async fn run(self, tracker: &TaskTracker, shutdown: CancellationToken) {
        let mut wakeups = None;
        loop {
            let first_slot = tokio::select! {
                _ = shutdown.cancelled() => break,
                permit = self.slots.clone().acquire_owned() => permit.expect("the semaphore is never closed"),
            };
            let mut permits = vec![first_slot];
            while permits.len() < self.claim_batch {
                match self.slots.clone().try_acquire_owned() {
                    Ok(permit) => permits.push(permit),
                    Err(_) => break,
                }
            }
            if let Some(reason) = self.gate.closed() {
                // Nothing is claimed until the ledger is repaired: the guard opens the gate.
                warn!(reason, "not claiming");
                drop(permits);
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = tokio::time::sleep(CLAIM_ERROR_PAUSE) => continue,
                }
            }
            if let Some(left) = self.ledger.reconnect_grace_left() {
                // Just reconnected (maybe to a promoted replica): the workers that saw writes
                // the ledger lost get this long to say so before anything is claimed.
                drop(permits);
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = tokio::time::sleep(left) => continue,
                }
            }
            if self.ledger.replicas_behind() {
                // No submit could be made durable: claim again once the replicas hold a probe
                // write (this waits up to replica_wait).
                drop(permits);
                if let Err(err) = self.ledger.await_replicas().await {
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
            if let Some(reason) = self.ledger.unsafe_reason() {
                // Submits would be refused anyway; claiming would only churn leases.
                warn!(
                    reason,
                    "redis cannot keep writes durable; not claiming until it can"
                );
                drop(permits);
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = tokio::time::sleep(self.durability_check) => continue,
                }
            }
            let options = ClaimOptions {
                owner: &self.name,
                max_jobs: permits.len(),
                lease: self.lease,
                resubmit_uncertain: self.resubmit_uncertain,
                limits: &self.limits,
                accounts: &self.served,
            };
            let claim = match self.ledger.claim(&options).await {
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
            let idle_for = claim
                .next_due_in
                .unwrap_or(self.idle_poll)
                .min(self.idle_poll);
            let idle = claim.leases.is_empty();
            for (lease, permit) in claim.leases.into_iter().zip(permits.drain(..)) {
                let context = self.context.clone();
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
                    _ = next_wakeup(&self.ledger, &mut wakeups) => {}
                    _ = self.context.step_due.notified() => {}
                }
            }
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
