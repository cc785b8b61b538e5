//! A ledger that goes back in time is noticed, declared, and held until it is repaired
//! (`history.lua` holds the mark and the hold; its module doc says how).
//!
//! `WAIT` and `appendfsync always` make a write durable on the servers that hold it, but a
//! deployment can still come back with less: Sentinel or Cluster promotes a replica that
//! lost its last writes with its host's power, a primary boots from an AOF a power loss
//! cut, an operator restores a backup. Every client therefore counts its own durable writes
//! in the ledger (`P mark:{client}`), remembers the count it saw made durable, and checks
//! it on every durable write (in the same round trip as the write's `WAIT`) and, for
//! workers, every second. A worker that just reconnected (maybe to a promoted replica)
//! claims nothing for [`RECONNECT_GRACE`], so that the clients that saw the lost writes have
//! noticed, declared the rollback and held paid creates by then.

use std::{
    fmt,
    sync::{
        Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::Duration,
};

use redis::Value;
use serde::{Deserialize, Serialize};

use super::slots::Part;
use crate::scripts;
use crate::{Durability, Ledger, QueueError, connection::Conn};

/// Paid creates are held at least this long after a rollback is declared: past a worker's
/// heartbeat, so a worker the rolled-back ledger forgot is listed again, and must
/// acknowledge, before the hold can end.
pub const ROLLBACK_HOLD_MIN: Duration = Duration::from_secs(6);

/// ... and at most this long: a worker still listed but silent that long is taken for gone
/// (its own creates are then settled as `uncertain` jobs are).
pub const ROLLBACK_HOLD_MAX: Duration = Duration::from_secs(60);

/// A worker that just reconnected claims nothing for this long: the workers check the
/// ledger's history every second, so one that saw writes the ledger lost has declared the
/// rollback by then.
pub const RECONNECT_GRACE: Duration = Duration::from_secs(3);

/// A client's count of its durable writes is kept this long after its last (clients come
/// and go: every worker process and CLI call is one) ...
const MARK_TTL: Duration = Duration::from_secs(7 * 24 * 3600);

/// ... its expiry set again every this many writes (and on the first) ...
const MARK_TTL_EVERY: u64 = 64;

/// ... and every this many checks of the history (a worker checks every second).
const MARK_TTL_EVERY_CHECKS: u64 = 600;

/// What a write that must be durable is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Durable {
    /// A paid create rests on it (`begin_submit`): refused while a rollback is being repaired.
    Paid,
    /// A producer's receipt rests on it (an enqueue, a batch commit or release).
    Acknowledged,
}

/// History a client saw acknowledged that the ledger no longer holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rollback {
    /// How many durable writes of this client's the ledger had counted, as it saw them
    /// acknowledged.
    pub saw: u64,
    /// How many it holds when the loss was found.
    pub found: u64,
    /// The ledger named another history (a declared rollback, a restored backup, an emptied
    /// Redis) rather than only a lower `seq`.
    pub epoch_changed: bool,
}

impl fmt::Display for Rollback {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.epoch_changed {
            write!(
                f,
                "the ledger went back in time: it holds another history than the one this client saw {} of its writes acknowledged in",
                self.saw
            )
        } else {
            write!(
                f,
                "the ledger went back in time: this client saw {} of its writes acknowledged, the ledger holds {}",
                self.saw, self.found
            )
        }
    }
}

/// What [`Ledger::check_history`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HistoryCheck {
    /// The ledger holds everything this client saw acknowledged; `holding` while paid
    /// creates are held for a repair (this client's, or another's).
    Intact { holding: bool },
    /// It does not: this client must repair (give back its paid creates), then
    /// [`Ledger::adopt_history`].
    RolledBack(Rollback),
}

/// The ledger's history as operators see it (`reelq stats`, `/readyz`, the dashboard).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryStatus {
    /// Rollbacks declared on this ledger, ever.
    pub rollbacks: u64,
    /// `"<ms> <by>: saw <n>, found <n>"` of the last one (the declaring client's writes).
    pub last_rollback: Option<String>,
    /// When the last one was declared (unix ms, Redis's clock).
    pub declared_ms: Option<u64>,
    /// Paid creates are held now: workers are giving the ledger back their paid creates.
    pub holding: bool,
    /// How long the last hold refused paid creates, once it ended.
    pub held_ms: Option<u64>,
}

/// `P history`'s rollbacks, last, declared_ms and held_ms.
type StatusFields = (Option<u64>, Option<String>, Option<u64>, Option<u64>);

/// What this client knows of one slot's history (each partition keeps its own: a stale
/// replica promoted loses the writes of the slots its master served, and only those); shared
/// by a ledger's clones.
pub(crate) struct History {
    /// This client's count of its durable writes: `P mark:{id}`, `id` random per process.
    mark_key: String,
    view: Mutex<HistoryView>,
    /// A worker repairs a rollback before it adopts the new history; other clients (producers,
    /// the CLI) adopt it at once, after declaring it.
    repairs: AtomicBool,
    /// Who this client is, for the ledger's record of who declared a rollback.
    name: Mutex<String>,
    /// How many times this client checked the history.
    checks: AtomicU64,
}

impl History {
    pub(crate) fn new(prefix: &str) -> Self {
        History {
            mark_key: format!("{prefix}mark:{:016x}", rand::random::<u64>()),
            view: Mutex::default(),
            repairs: AtomicBool::new(false),
            name: Mutex::default(),
            checks: AtomicU64::new(0),
        }
    }

    /// The history's epoch as this client knows it, and the count of its durable writes it
    /// saw made durable: a `begin_submit` is refused, unmade, by a slot that shows less.
    pub(crate) fn seen(&self) -> (String, u64) {
        let view = self.view.lock().unwrap();
        (view.epoch.clone(), view.seen)
    }

    /// This client's count of its durable writes in the slot (`P mark:{client}`).
    pub(crate) fn mark_key(&self) -> &str {
        &self.mark_key
    }

    /// History this client saw acknowledged and the slot lost, until it is repaired.
    fn lost(&self) -> Option<Rollback> {
        let view = self.view.lock().unwrap();
        view.lost.as_ref().map(|(rollback, _)| rollback.clone())
    }
}

#[derive(Default)]
struct HistoryView {
    epoch: String,
    /// This client's durable writes as the ledger counted them, the last it saw made durable.
    seen: u64,
    /// History lost and not yet repaired: the rollback and the epoch it was declared as.
    lost: Option<(Rollback, String)>,
}

/// The ledger's history as a durable write found it (`count`: this client's writes with
/// it).
struct Mark {
    count: u64,
    epoch: Option<String>,
}

fn fresh_epoch() -> String {
    format!("{:016x}", rand::random::<u64>())
}

fn parse<T: redis::FromRedisValue>(value: Value) -> Result<T, QueueError> {
    redis::from_redis_value(value).map_err(|err| QueueError::corrupt("the ledger", err))
}

impl Ledger {
    /// Reads (on a new ledger: starts) each partition's history: what this client then sees
    /// acknowledged is counted from here.
    pub(crate) async fn open_history(&self) -> Result<(), QueueError> {
        for part in self.parts() {
            let fresh = fresh_epoch();
            let args = scripts::history::Args::Open { epoch: &fresh };
            let epoch = self
                .history_epoch(part, &mut part.conn().await?, &args)
                .await?;
            let mut view = part.history.view.lock().unwrap();
            view.epoch = epoch;
            view.seen = 0;
        }
        Ok(())
    }

    /// Makes this client a worker that repairs a rollback before going on (see
    /// [`Ledger::check_history`]); `name` is recorded as who declared one.
    pub fn repair_rollbacks(&self, name: &str) {
        for part in self.parts() {
            part.history.repairs.store(true, Ordering::SeqCst);
            *part.history.name.lock().unwrap() = name.to_owned();
        }
    }

    /// History this client saw acknowledged and the ledger lost (in any partition), until it
    /// is repaired.
    pub fn rolled_back(&self) -> Option<Rollback> {
        self.parts().iter().find_map(|part| part.history.lost())
    }

    /// A `begin_submit` found its partition's history short of what this client saw: the
    /// check declares the rollback; the submit is refused either way.
    pub(crate) async fn history_lost_at_submit(&self, part: &Part) -> QueueError {
        match self.check_part_history(part).await {
            Ok(HistoryCheck::RolledBack(rollback)) => QueueError::RolledBack(rollback),
            Ok(HistoryCheck::Intact { .. }) => QueueError::SubmitsHeld,
            Err(err) => err,
        }
    }

    /// How much longer a worker waits before it claims again after a reconnect
    /// ([`RECONNECT_GRACE`]), if it does.
    pub fn reconnect_grace_left(&self) -> Option<Duration> {
        let since = self
            .parts()
            .iter()
            .filter_map(|part| part.connector().reconnected_for())
            .min()?;
        RECONNECT_GRACE
            .checked_sub(since)
            .filter(|left| !left.is_zero())
    }

    /// Refuses a paid create's write while this client has a rollback to repair. (The
    /// [`RECONNECT_GRACE`] holds new claims, not a submit under a lease taken before the
    /// reconnect: a ledger that still holds that lease lost nothing after it, and one that
    /// lost it refuses the write by its fence and token.)
    pub(crate) fn ensure_history(&self) -> Result<(), QueueError> {
        match self.rolled_back() {
            Some(rollback) => Err(QueueError::RolledBack(rollback)),
            None => Ok(()),
        }
    }

    /// Counts a write made on `conn` in the ledger's history and proves it durable per the
    /// configured mode, in one round trip: the history mark and the `WAIT` go in one
    /// pipeline behind the write. A mark that shows lost history declares the rollback; a
    /// paid create's write is then refused. (A `begin_submit` also checks the history, and a
    /// declared rollback's hold, inside its own script, before it writes anything.)
    pub(crate) async fn make_durable(
        &self,
        part: &Part,
        conn: &mut Conn,
        purpose: Durable,
    ) -> Result<(), QueueError> {
        let history = &part.history;
        let mark_key = &history.mark_key;
        // What this client had seen made durable before this count was taken: an intact
        // ledger answers more (marks of concurrent writes may come back in any order).
        let seen_before = history.view.lock().unwrap().seen;
        let mut pipe = redis::pipe();
        pipe.cmd("INCR").arg(mark_key);
        // A worker renews it every MARK_TTL_EVERY writes (and its checks do too); a producer,
        // which may write once a week, at every write: an expired count would read as lost.
        let repairs = history.repairs.load(Ordering::SeqCst);
        if !repairs || seen_before.is_multiple_of(MARK_TTL_EVERY) {
            pipe.cmd("PEXPIRE")
                .arg(mark_key)
                .arg(MARK_TTL.as_millis() as u64)
                .ignore();
        }
        // A `begin_submit`'s own script checked the history's epoch a moment ago; other
        // writes read it here.
        let read_epoch = purpose != Durable::Paid;
        if read_epoch {
            pipe.cmd("HGET").arg(part.key("history")).arg("epoch");
        }
        if let Durability::Replicas { n } = self.safety.durability {
            pipe.cmd("WAIT")
                .arg(n)
                .arg(self.safety.replica_wait.as_millis().max(1) as u64);
        }
        let mut replies: Vec<Value> = pipe.query_async(conn).await?;
        let acked = match self.safety.durability {
            Durability::Replicas { n } => {
                Some((parse::<u32>(replies.pop().unwrap_or(Value::Nil))?, n))
            }
            Durability::Always => None,
        };
        let mut replies = replies.into_iter();
        let mut next = || replies.next().unwrap_or(Value::Nil);
        let count: u64 = parse(next())?;
        let epoch: Option<String> = if read_epoch {
            parse(next())?
        } else {
            Some(history.seen().0)
        };
        let mark = Mark { count, epoch };
        if let Some(rollback) = lost_at(history, &mark, seen_before) {
            let repairs = self.declare(part, &rollback, mark.epoch.as_deref()).await?;
            if purpose == Durable::Paid && repairs {
                return Err(QueueError::RolledBack(rollback));
            }
        }
        if let Some((acked, wanted)) = acked
            && acked < wanted
        {
            self.safety.replicas_behind.store(true, Ordering::SeqCst);
            return Err(QueueError::NotDurable { acked, wanted });
        }
        let mut view = history.view.lock().unwrap();
        if view.lost.is_none() && mark.epoch.as_deref() == Some(view.epoch.as_str()) {
            view.seen = view.seen.max(mark.count);
        }
        Ok(())
    }

    /// Declares `rollback` on the ledger (or joins the declaration another client made
    /// first), which starts a new epoch and holds paid creates. A worker keeps it to repair;
    /// any other client adopts the new history at once. Returns whether this client repairs.
    async fn declare(
        &self,
        part: &Part,
        rollback: &Rollback,
        found_epoch: Option<&str>,
    ) -> Result<bool, QueueError> {
        let history = &part.history;
        let by = history.name.lock().unwrap().clone();
        let by = if by.is_empty() {
            "a producer".to_owned()
        } else {
            by
        };
        let fresh = fresh_epoch();
        let args = scripts::history::Args::Declare {
            found_epoch: found_epoch.unwrap_or_default(),
            epoch: &fresh,
            by: &by,
            saw: rollback.saw,
            found: rollback.found,
            hold_min_ms: ROLLBACK_HOLD_MIN.as_millis() as u64,
            hold_max_ms: ROLLBACK_HOLD_MAX.as_millis() as u64,
        };
        let reply = self.run_in(part, &args).await?;
        let declared = !reply.joined;
        let epoch = reply.epoch.unwrap_or_default();
        let repairs = history.repairs.load(Ordering::SeqCst);
        tracing::error!(
            %rollback,
            declared,
            by,
            partition = part.index,
            "LEDGER ROLLBACK: redis lost writes it had acknowledged; paid creates are held until every worker has given back the creates it made"
        );
        let mut view = history.view.lock().unwrap();
        if repairs {
            view.lost = Some((rollback.clone(), epoch));
        } else {
            view.epoch = epoch;
            view.seen = rollback.found;
        }
        Ok(repairs)
    }

    /// The ledger's epoch after `args` (an open or an ack).
    async fn history_epoch(
        &self,
        part: &Part,
        conn: &mut Conn,
        args: &scripts::history::Args<'_>,
    ) -> Result<String, QueueError> {
        let reply = self.run_script(part, conn, args).await?;
        reply
            .epoch
            .ok_or_else(|| QueueError::corrupt("the ledger", "its history has no epoch"))
    }

    /// Whether a partition's paid creates are held now (a declared rollback's hold).
    async fn holding(&self, part: &Part) -> Result<bool, QueueError> {
        let live = self.workers().await?;
        let args = scripts::history::Args::Holding {
            live: live.into_iter().map(|worker| worker.name).collect(),
        };
        let reply = self.run_in(part, &args).await?;
        Ok(reply.holding)
    }

    /// Compares each partition's history with what this client saw acknowledged (workers run
    /// this every second, so an idle worker notices too; every durable write checks too).
    /// Lost history is declared and stays lost for this client until
    /// [`Ledger::adopt_history`].
    pub async fn check_history(&self) -> Result<HistoryCheck, QueueError> {
        let mut holding = false;
        for part in self.parts() {
            match self.check_part_history(part).await? {
                HistoryCheck::Intact { holding: held } => holding |= held,
                lost => return Ok(lost),
            }
        }
        Ok(HistoryCheck::Intact { holding })
    }

    /// [`Ledger::check_history`] of one partition.
    async fn check_part_history(&self, part: &Part) -> Result<HistoryCheck, QueueError> {
        let history = &part.history;
        if let Some(rollback) = history.lost() {
            return Ok(HistoryCheck::RolledBack(rollback));
        }
        let seen_before = history.view.lock().unwrap().seen;
        let mut pipe = redis::pipe();
        pipe.cmd("GET").arg(&history.mark_key);
        let checks = history.checks.fetch_add(1, Ordering::SeqCst);
        if seen_before > 0 && checks.is_multiple_of(MARK_TTL_EVERY_CHECKS) {
            // An idle worker's count must not expire under it.
            pipe.cmd("PEXPIRE")
                .arg(&history.mark_key)
                .arg(MARK_TTL.as_millis() as u64)
                .ignore();
        }
        let (count, (epoch, hold_max_ms)): (Option<u64>, (Option<String>, Option<u64>)) = pipe
            .cmd("HMGET")
            .arg(part.key("history"))
            .arg("epoch")
            .arg("hold_max_ms")
            .query_async(&mut part.conn().await?)
            .await?;
        // As a write would find it, one past the count.
        let mark = Mark {
            count: count.unwrap_or(0) + 1,
            epoch,
        };
        if let Some(rollback) = lost_at(history, &mark, seen_before)
            && self.declare(part, &rollback, mark.epoch.as_deref()).await?
        {
            return Ok(HistoryCheck::RolledBack(rollback));
        }
        // A hold's fields are there until it is found over.
        let holding = hold_max_ms.is_some() && self.holding(part).await?;
        Ok(HistoryCheck::Intact { holding })
    }

    /// A worker has given the ledger back what it knows of the history it lost: it takes the
    /// history each partition's rollback was declared as for its own and says so (`worker`
    /// names it), so the hold can end once every live worker has.
    pub async fn adopt_history(&self, worker: &str) -> Result<(), QueueError> {
        for part in self.parts() {
            let history = &part.history;
            let Some((_, epoch)) = history.view.lock().unwrap().lost.clone() else {
                continue;
            };
            let mut conn = part.conn().await?;
            let args = scripts::history::Args::Ack {
                worker,
                epoch: &epoch,
            };
            let current = self.history_epoch(part, &mut conn, &args).await?;
            let count: Option<u64> = redis::cmd("GET")
                .arg(&history.mark_key)
                .query_async(&mut conn)
                .await?;
            if current != epoch {
                tracing::warn!(
                    "the ledger's history changed again while this worker repaired it; it repairs again"
                );
            }
            let mut view = history.view.lock().unwrap();
            // Another rollback since: the next check finds the epoch changed and repairs again.
            view.seen = count.unwrap_or(0);
            view.epoch = epoch;
            view.lost = None;
        }
        Ok(())
    }

    /// A worker already on the ledger's history (it repaired it, or started on it) says so
    /// while a hold lasts: it has nothing to give back, and the hold waits for every live
    /// worker.
    pub async fn acknowledge_history(&self, worker: &str) -> Result<(), QueueError> {
        for part in self.parts() {
            let epoch = part.history.seen().0;
            let args = scripts::history::Args::Ack {
                worker,
                epoch: &epoch,
            };
            self.history_epoch(part, &mut part.conn().await?, &args)
                .await?;
        }
        Ok(())
    }

    /// The ledger's history, over its partitions: rollbacks declared, and whether paid
    /// creates are held now.
    pub async fn history_status(&self) -> Result<HistoryStatus, QueueError> {
        let mut status = HistoryStatus::default();
        for part in self.parts() {
            // A hold still recorded is asked about first: one over is ended (and its length
            // kept) by the asking.
            let (hold_max_ms,): (Option<u64>,) = redis::cmd("HMGET")
                .arg(part.key("history"))
                .arg("hold_max_ms")
                .query_async(&mut part.conn().await?)
                .await?;
            let holding = hold_max_ms.is_some() && self.holding(part).await?;
            let (rollbacks, last, declared_ms, held_ms): StatusFields = redis::cmd("HMGET")
                .arg(part.key("history"))
                .arg("rollbacks")
                .arg("last")
                .arg("declared_ms")
                .arg("held_ms")
                .query_async(&mut part.conn().await?)
                .await?;
            status.rollbacks += rollbacks.unwrap_or(0);
            status.holding |= holding;
            if declared_ms > status.declared_ms {
                status.declared_ms = declared_ms;
                status.last_rollback = last;
                status.held_ms = if holding { None } else { held_ms };
            }
        }
        if status.holding {
            status.held_ms = None;
        }
        Ok(status)
    }
}

/// The history this client saw acknowledged that `mark` (its count just raised by one) shows
/// lost, if any: `seen_before` is the count it had seen made durable before the mark was taken.
fn lost_at(history: &History, mark: &Mark, seen_before: u64) -> Option<Rollback> {
    let view = history.view.lock().unwrap();
    if view.lost.is_some() {
        return None;
    }
    let epoch_changed = mark.epoch.as_deref() != Some(view.epoch.as_str());
    (epoch_changed || mark.count <= seen_before).then(|| Rollback {
        saw: seen_before,
        found: mark.count.saturating_sub(1),
        epoch_changed,
    })
}
