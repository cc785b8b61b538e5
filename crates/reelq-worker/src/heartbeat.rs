//! The worker's periodic chores besides claiming: announcing itself (the workers list), and
//! finishing the queueing of batches whose producer committed them and then left.

use std::time::Duration;

use reelq_queue::{Ledger, WorkerInfo};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

/// How often a worker announces itself.
const HEARTBEAT_EVERY: Duration = Duration::from_secs(5);

/// How long a worker stays listed after its last heartbeat: three of them.
pub(crate) const LISTED_FOR: Duration = Duration::from_secs(15);

/// Announces the worker every [`HEARTBEAT_EVERY`] until shutdown; a missed beat (Redis
/// away) is only logged: the worker keeps working and is listed again at the next.
pub(crate) async fn run(ledger: Ledger, me: WorkerInfo, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(HEARTBEAT_EVERY);
    tick.tick().await;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        if let Err(err) = ledger.heartbeat(&me, LISTED_FOR).await {
            warn!(error = %err, "heartbeat not recorded");
        }
    }
}

/// How often a worker looks for committed batches whose producer died while queueing them.
const RELEASE_SWEEP_EVERY: Duration = Duration::from_secs(5);

/// Finishes queueing batches their producer committed and then left (a large batch is
/// committed whole, then queued a chunk at a time: see `reelq_queue`'s enqueue module).
pub(crate) async fn release_committed(ledger: Ledger, shutdown: CancellationToken) {
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
