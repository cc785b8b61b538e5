//! What this worker knows first-hand of the paid creates it made: the job, the account, the
//! claim it was made under and, once the provider answered, the task. Kept in memory (a
//! restarted worker starts empty: its creates are then settled as `uncertain` jobs are,
//! from the providers' records) for [`KEPT`], and for a day while a task has not been
//! recorded in the ledger. The ledger's own record may be lost (a ledger that went back in
//! time) or never written (an answer that came back while Redis was away for longer than
//! the step's retries); `rollback.rs` gives the ledger these back.

use std::{
    collections::HashMap,
    sync::Mutex,
    time::{Duration, Instant},
};

use reelq_core::JobId;
use reelq_queue::{Lease, PaidCreate, Transition};

/// How long a create is remembered after it went out: a ledger goes back seconds, not
/// hours, so this bounds the memory (about 150 bytes a create) and covers any rollback
/// Redis can make.
pub(crate) const KEPT: Duration = Duration::from_secs(15 * 60);

/// How long a task the ledger never recorded is remembered (until it is recorded).
const KEPT_UNRECORDED: Duration = Duration::from_secs(24 * 3600);

/// This worker's paid creates, by job.
#[derive(Default)]
pub(crate) struct PaidCreates {
    creates: Mutex<HashMap<JobId, Remembered>>,
}

struct Remembered {
    create: PaidCreate,
    at: Instant,
    /// The ledger recorded the task (`submitted`), as far as this worker knows.
    recorded: bool,
    /// The step is recording the answer itself now: not a late answer (yet).
    recording: bool,
}

impl PaidCreates {
    /// The create for `lease`'s job is about to go out (its `submitting` record is durable).
    pub(crate) fn going_out(&self, lease: &Lease, uncertain_slot_hold: Duration) {
        let create = PaidCreate {
            job_id: lease.job_id,
            account: lease.account.clone(),
            task_id: None,
            claim_token: lease.token.clone(),
            sent_ms: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64),
            uncertain_slot_hold: Some(uncertain_slot_hold),
        };
        let remembered = Remembered {
            create,
            at: Instant::now(),
            recorded: false,
            recording: false,
        };
        self.creates
            .lock()
            .unwrap()
            .insert(lease.job_id, remembered);
    }

    /// The submit step ended in `transition` (not yet recorded in the ledger): a task is
    /// remembered, a refusal (nothing was created) forgets the create, an unknown outcome
    /// keeps it as it is.
    pub(crate) fn answered(&self, job_id: JobId, transition: &Transition) {
        let mut creates = self.creates.lock().unwrap();
        match transition {
            Transition::Submitted { task_id, .. } => {
                if let Some(remembered) = creates.get_mut(&job_id) {
                    remembered.create.task_id = Some(task_id.clone());
                    remembered.recording = true;
                }
            }
            Transition::Uncertain { .. } => {}
            _ => {
                creates.remove(&job_id);
            }
        }
    }

    /// Every create remembered (after dropping those past their time).
    pub(crate) fn all(&self) -> Vec<PaidCreate> {
        let mut creates = self.creates.lock().unwrap();
        creates.retain(|_, remembered| {
            let kept = if remembered.recorded || remembered.create.task_id.is_none() {
                KEPT
            } else {
                KEPT_UNRECORDED
            };
            remembered.at.elapsed() < kept
        });
        creates.values().map(|r| r.create.clone()).collect()
    }

    /// The step could not record its create's answer (Redis away past its retries, or the
    /// lease lost): it is a late answer now.
    pub(crate) fn not_recorded(&self, job_id: JobId) {
        if let Some(remembered) = self.creates.lock().unwrap().get_mut(&job_id) {
            remembered.recording = false;
        }
    }

    /// The creates whose task the ledger has not recorded, and whose step gave up on it.
    pub(crate) fn unrecorded(&self) -> Vec<PaidCreate> {
        let creates = self.creates.lock().unwrap();
        creates
            .values()
            .filter(|r| !r.recorded && !r.recording && r.create.task_id.is_some())
            .map(|r| r.create.clone())
            .collect()
    }

    /// The ledger now knows the task of `job_id`'s create (or never will: it ended, or
    /// another create took its place).
    pub(crate) fn settled(&self, job_id: JobId) {
        if let Some(remembered) = self.creates.lock().unwrap().get_mut(&job_id) {
            remembered.recorded = true;
            remembered.recording = false;
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.creates.lock().unwrap().len()
    }
}
