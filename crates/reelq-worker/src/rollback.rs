//! The history guard: notices a ledger that went back in time, stops this worker's claims,
//! gives the ledger back the paid creates this worker made (so each such job is polled on
//! its task, or `uncertain` where no answer came, and never submitted again), and records
//! late answers: a create whose task came back when the ledger could no longer take it
//! under the step's lease. It checks every [`CHECK_EVERY`]; the ledger's own durable writes
//! notice a rollback at once too (`reelq_queue`'s history module).

use std::{
    sync::{
        Arc,
        atomic::{AtomicU8, Ordering},
    },
    time::Duration,
};

use reelq_queue::{HistoryCheck, Ledger, PaidCreate, RestoreOutcome};
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::paid_creates::PaidCreates;

/// How often the ledger's history is checked: a rollback is declared within this of a
/// worker that lost writes reconnecting (`reelq_queue::RECONNECT_GRACE` covers it).
pub(crate) const CHECK_EVERY: Duration = Duration::from_secs(1);

/// Whether this worker may claim: not while it repairs a rollback, nor while the ledger
/// holds paid creates for one (polls wait too: the hold lasts seconds).
#[derive(Default)]
pub(crate) struct Gate(AtomicU8);

const OPEN: u8 = 0;
const REPAIRING: u8 = 1;
const HELD: u8 = 2;

impl Gate {
    /// Closed (repairing) when the worker starts with paid creates a worker before it made
    /// (its `paid_creates_file`): they are given back first.
    pub(crate) fn starting(with_creates_to_give_back: bool) -> Self {
        Gate(AtomicU8::new(if with_creates_to_give_back {
            REPAIRING
        } else {
            OPEN
        }))
    }

    /// Why claims are stopped now, if they are.
    pub(crate) fn closed(&self) -> Option<&'static str> {
        match self.0.load(Ordering::SeqCst) {
            OPEN => None,
            REPAIRING => {
                Some("the ledger went back in time: this worker is giving back its paid creates")
            }
            _ => Some(
                "paid creates are held while workers repair the ledger after it went back in time",
            ),
        }
    }

    fn set(&self, state: u8) {
        let was = self.0.swap(state, Ordering::SeqCst);
        metrics::gauge!("reelq_submits_held").set(f64::from(u8::from(state != OPEN)));
        if was != OPEN && state == OPEN {
            info!("ledger repaired; claiming again");
        }
    }
}

pub(crate) struct Guard {
    pub(crate) ledger: Ledger,
    pub(crate) name: String,
    pub(crate) paid: Arc<PaidCreates>,
    pub(crate) gate: Arc<Gate>,
}

impl Guard {
    pub(crate) async fn run(self: Arc<Self>, shutdown: CancellationToken) {
        let inherited = self.paid.all();
        while !inherited.is_empty() {
            // A worker before this one (same file) made these, and may have died around a
            // rollback nobody else saw: give them back before anything is claimed.
            match self.give_back(&inherited, "worker restart").await {
                Ok(()) => break,
                Err(err) => {
                    warn!(error = %err, "could not give back the creates of the worker before; trying again")
                }
            }
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(CHECK_EVERY) => {}
            }
        }
        let mut tick = tokio::time::interval(CHECK_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tick.tick() => {}
            }
            if let Err(err) = self.check().await {
                warn!(error = %err, "could not check the ledger's history; trying again");
            }
            self.record_late_answers().await;
        }
    }

    async fn check(&self) -> Result<(), reelq_queue::QueueError> {
        match self.ledger.check_history().await? {
            HistoryCheck::Intact { holding } => {
                if holding {
                    // On the current history already (repaired, or started on it): say so,
                    // or the hold waits for this worker to its maximum.
                    self.ledger.acknowledge_history(&self.name).await?;
                }
                self.gate.set(if holding { HELD } else { OPEN });
            }
            HistoryCheck::RolledBack(rollback) => {
                self.gate.set(REPAIRING);
                metrics::counter!("reelq_ledger_rollbacks_total").increment(1);
                error!(%rollback, creates = self.paid.len(), "giving the ledger back this worker's paid creates");
                self.give_back(&self.paid.all(), "ledger rolled back")
                    .await?;
                self.ledger.adopt_history(&self.name).await?;
                self.gate.set(HELD);
            }
        }
        Ok(())
    }

    /// Gives each create back to its job; errors stop the pass (Redis away: the next check
    /// finds the rollback still unrepaired and starts again).
    async fn give_back(
        &self,
        creates: &[PaidCreate],
        why: &str,
    ) -> Result<(), reelq_queue::QueueError> {
        let mut counts = [0usize; 6];
        for create in creates {
            let (outcome, was) = self.ledger.restore_paid_create(create, why).await?;
            counts[outcome as usize] += 1;
            let outcome_name = outcome_name(outcome);
            metrics::counter!("reelq_paid_creates_given_back_total", "outcome" => outcome_name)
                .increment(1);
            match outcome {
                RestoreOutcome::Conflict => error!(
                    job_id = %create.job_id,
                    task_id = create.task_id.as_deref().unwrap_or(""),
                    was = was.map_or("gone", |s| s.as_str()),
                    "a paid create of this worker's job was made again by another claim: the job has another task"
                ),
                RestoreOutcome::Missing => error!(
                    job_id = %create.job_id,
                    task_id = create.task_id.as_deref().unwrap_or(""),
                    "the ledger lost a job whose create this worker made"
                ),
                _ => {}
            }
            self.paid.settled(create.job_id);
        }
        if !creates.is_empty() {
            info!(
                why,
                restored = counts[RestoreOutcome::Restored as usize],
                uncertain = counts[RestoreOutcome::Uncertain as usize],
                intact = counts[RestoreOutcome::Intact as usize],
                conflict = counts[RestoreOutcome::Conflict as usize],
                ended = counts[RestoreOutcome::Ended as usize],
                missing = counts[RestoreOutcome::Missing as usize],
                "paid creates given back to the ledger"
            );
        }
        Ok(())
    }

    /// Records the tasks of creates whose answer the ledger could not take under the
    /// step's lease (Redis away longer than the step's retries): the job goes on to
    /// polling instead of waiting `uncertain` for an operator.
    async fn record_late_answers(&self) {
        let late = self.paid.unrecorded();
        if late.is_empty() || self.gate.closed().is_some() {
            return;
        }
        if let Err(err) = self.give_back(&late, "late answer").await {
            warn!(error = %err, "could not record late answers yet; trying again");
        }
    }
}

fn outcome_name(outcome: RestoreOutcome) -> &'static str {
    match outcome {
        RestoreOutcome::Restored => "restored",
        RestoreOutcome::Uncertain => "uncertain",
        RestoreOutcome::Intact => "intact",
        RestoreOutcome::Conflict => "conflict",
        RestoreOutcome::Ended => "ended",
        RestoreOutcome::Missing => "missing",
    }
}
