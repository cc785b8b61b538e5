//! The job ledger in Redis: one hash per job, changed only by the fenced Lua scripts under
//! `scripts/`, plus a due schedule that doubles as the work queue.
//!
//! Keys (P is the configured prefix in a hash tag, e.g. `{reelq}:`, so one deployment's keys
//! share one slot; `keys.rs` says which belong to the home of cluster-wide state and which to
//! a partition, for when the ledger is partitioned over a cluster's masters):
//!
//! | key            | type   | content                                              | written by              |
//! |----------------|--------|------------------------------------------------------|-------------------------|
//! | `P job:{id}`   | hash   | state, fence, aslot and tslot (the claim took a slot of its account, of its tenant), provider (the account its limits are kept under: the one it asked for, or its provider's name until a claim picks one of the provider's accounts), task_id, task_id_hint (from a callback during submit), cb_token_hash, notify_url, notify_event, notify_attempt, notify_state (pending, sent, gave_up), attempt, submits, submit_ms, polls, token (the claim's), reconcile_note, created_ms, updated_ms, deadline_ms, batch, owner, result_url, error_class, error, object_key, bytes, sha256, cancel_ms (an operator asked the provider to cancel), bpending (a split claim's batch reservation for it, until the claim's settle writes it into `reserved`), cancel_answered (the provider answered that ask), events (how many it has had) and e0..e31 (the last 32, `"<ms> <state> <detail>"` cut to 64 bytes); spec_n and s0.. (the spec JSON in pieces of at most 64 bytes); every value short, so Redis keeps it as a listpack | enqueue, claim, transition, operator, batch |
//! | `P due`        | zset   | job id -> unix ms when a worker must act next; while a worker holds the job, its lease expiry | enqueue, claim, transition, extend |
//! | `P state:{s}`  | zset   | job id -> ms of its last state change, one set per state | every state change |
//! | `P log:{id}`   | list   | ledger schema 2 only: the job's last 32 events (now in the record; `reelq migrate` folds it in) | releases before schema 3 |
//! | `P batch:{id}` | list   | the batch's job ids in manifest order                | enqueue                 |
//! | `P batchinfo:{id}` | hash | name, created_ms, total, open, start_after_ms, budget_micros, reserved_micros, priority, notify_url, cancelled_ms | enqueue, claim, batch |
//! | `P batches`    | zset   | batch id -> created ms, for listing batches           | enqueue                 |
//! | `P schema` | string | (in every slot: `keys::EVERY_SLOT`) the ledger record format ([`LEDGER_SCHEMA`]): the release that created the ledger's, raised by `reelq migrate`; newer releases' ledgers are refused | first connect, migrate |
//! | `P history` | hash | the ledger's history: `epoch` (its name), the last declared rollback (`declared_ms`, `last`, `rollbacks`), the hold on paid creates (`hold_min_ms`, `hold_max_ms`, `held_ms`) and `ack:<worker>` (the epoch each worker repaired under); `history.lua` | first connect, a client that finds lost history, workers |
//! | `P mark:{client}` | string | how many durable writes a client (one per process, random id) made, counted in the pipeline of each write's `WAIT`; a client that finds fewer than it saw acknowledged has lost history (expires a week after its last) | every durable write |
//! | `P moving` | string | present while an operator moves the ledger's slot to another master of its cluster (the target's id): every script refuses to run (`slot_move.rs`) | `reelq cluster move-slot` |
//! | `P durability_probe` | string | unix ms of the last probe write (its `WAIT` shows the replicas caught up) | any client after a short `WAIT` |
//! | `P limits`     | hash   | account -> "max_in_flight requests_per_s daily_budget_micros" as workers run them | worker start |
//! | `P due_low`    | zset   | like `due`, for queued jobs of low-priority batches (claimed after `due`) | enqueue, claim, batch |
//! | `P queued:{tenant}` | zset | job id -> unix ms it may go: a tenant's fresh queued jobs until their first claim (from ledger schema 4) | enqueue, claim, batch, operator, resume |
//! | `P tenants`    | zset   | tenant -> tag (virtual time its next job starts at): the tenants with jobs in their queue, next served first | enqueue, claim |
//! | `P vclock`, `P tenant_tags` | string, hash | the tag last served; an idle tenant's last tag (a tenant coming back starts at the later) | enqueue, claim |
//! | `P tenant_weights` | hash | tenant -> weight (1 if absent), set by operators (`reelq tenants weight`) | tenants.rs, claim |
//! | `P tenant_limits` | hash | tenant -> its caps as JSON (`max_in_flight`, `max_waiting`), set by operators (`reelq tenants limit`) | tenants.rs, enqueue, commit, claim |
//! | `P tenant_spend:{tenant}:{day}`, `P tenant_spend:{tenant}:{YYYY-MM}` | string | a tenant's spend reserved on a UTC day (day number) and in a month, in millionths of a dollar | claim, transition, operator, batch |
//! | `P tenant_inflight:{tenant}` | zset | job id -> expiry: a capped tenant's generations in flight (taken at the claim of its submit, renewed by polls, given back when the generation ends; the job's `tslot` field marks it) | claim, every move |
//! | `P tokens`, `P token_names` | hash, hash | an API token's SHA-256 -> its record (name, tenant, scopes); its name -> the hash (the token itself is never kept) | tokens.rs |
//! | `P spend:{account}:{day}` | string | estimated spend reserved on that UTC day, micros (expires) | claim, transition |
//! | `P pause:{account}` | string | present while submits to that account are paused (429, credits, an operator) | pause, resume |
//! | `P idem:{scope}:{key}` | hash | digest (of the request) and receipt of the enqueue made under an idempotency key (expires) | enqueue, commit |
//! | `P stage:{batch}` | list | a large batch's jobs (JSON tuples) staged in chunks: nothing claims them; expires unless committed | enqueue (staging), release |
//! | `P releasing` | zset | committed batch id -> commit ms, while its staged jobs are being queued | commit, release |
//! | `P retention_ms` | string | (in every slot) how long finished jobs are kept when they are not archived (their hash and log get this TTL at the end; 0 or absent: until the archiver takes them out) | worker start |
//! | `P archiver`, `P archive` | string, hash | the archiver's lease and its last passes (`ledger/archive.rs`); archived jobs leave Redis for the object store | the archiving worker |
//! | `P rate:{account}` | string | GCRA: unix ms when the account's request bucket is empty again (expires) | claim |
//! | `P inflight:{account}` | zset | job id -> slot expiry, one per generation in flight (with limits) | claim, transition |
//! | `P task:{account}:{task}` | string | the job id owning a provider task: a callback naming it for another job is refused, and account-level callbacks find the job by it (expires) | worker before `Submitted`, wake (adoption) |
//! | `P worker:{name}` | string | a worker replica's last heartbeat: role, version, the ledger schema it writes, accounts, concurrency, start and last seen (expires after a few heartbeats) | worker heartbeat |
//! | `P workers` | zset | worker name -> unix ms last seen, to list the live ones (expired names are dropped when listed) | worker heartbeat, `workers` |
//! | `P notify_due` | zset   | job id -> unix ms when its completion webhook is due  | a job's end, claim_notify, notified |
//! | `P changes`    | pubsub | `"<id> <state>"` on every state change               | every state change      |
//! | `P wake`       | pubsub | number of jobs just enqueued                         | enqueue                 |
//!
//! A job is in `due` exactly while it is non-terminal and not `uncertain`. Claiming sets its
//! due time to the lease expiry and bumps its fence, so a crashed worker's job falls due again
//! by itself and the crashed worker can no longer move it. Times come from Redis's clock.

mod archive;
mod claim;
mod history;
mod migrate;
mod notifications;
mod operator;
mod partition;
mod reads;
mod restore;
mod settings;
mod slots;
mod tasks;
mod tenants;
mod tokens;
mod workers;

pub use archive::{
    ArchiveCandidate, ArchiveGrace, ArchiveLease, ArchiveStatus, ArchivedBatch, BATCHES_PER_PASS,
    Removed, SCANNED_PER_CANDIDATE,
};
pub use claim::{Claim, ClaimOptions, LimitWait, Wait, own_accounts};
pub(crate) use history::Durable;
pub use history::{
    HistoryCheck, HistoryStatus, RECONNECT_GRACE, ROLLBACK_HOLD_MAX, ROLLBACK_HOLD_MIN, Rollback,
};
pub use migrate::Migration;
pub use notifications::{Notification, NotifyOutcome, NotifyTarget};
pub use operator::{CancelOutcome, Resolution};
pub use partition::{Partitioning, partition_ledger};
pub use reads::BatchInfo;
pub use reads::PageCursor;
pub use restore::{PaidCreate, RestoreOutcome};
pub use settings::ProviderLimit;
pub use settings::Resumed;
pub(crate) use slots::Part;
pub use slots::{CLUSTER_PARTITIONS, MAX_PARTITIONS};
pub use tasks::TASK_INDEX_TTL;
pub use tasks::{CallbackBinding, WakeOutcome};
pub use tenants::{TenantLimits, TenantShare};
pub use tokens::TokenRecord;
pub use workers::WorkerInfo;

use std::{
    sync::{
        Arc, Mutex, Weak,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use reelq_core::JobState;

use crate::scripts;
use crate::{
    Durability, DurabilityCheck, Held, QueueError, RedisTarget, Transition,
    connection::{Conn, Connector},
    durability, moves,
    transition::Move,
};

/// The ledger record format this release writes. Raised when a record changes shape; a
/// binary refuses a ledger with a higher one (`P schema`), reads the one before it, and
/// `reelq migrate` ([`Ledger::migrate`]) moves a ledger forward.
///
/// 5: the ledger may keep its jobs in partitions (`P layout` naming several hash tags, `P
/// layout_since`), where a binary of a release before would not find them (records are as in
/// 4); 4: fresh jobs wait in their tenant's queue (`P queued:{tenant}`), which a worker of the
/// release before does not read; 3: the spec is in the record in pieces (`spec_n`, `s0`..)
/// and so is the event log (`events`, `e0`..), so the record holds only short values (a
/// listpack); 2 kept the spec in one field and the events in a list (`P log:{id}`).
pub const LEDGER_SCHEMA: u32 = 5;

/// The first schema whose fresh jobs wait in their tenant's queue (see [`LEDGER_SCHEMA`]).
pub(crate) const TENANT_QUEUES_SCHEMA: u32 = 4;

/// The first schema whose records keep their spec and events inside (see [`LEDGER_SCHEMA`]).
pub(crate) const COMPACT_RECORDS_SCHEMA: u32 = 3;

/// How many of a job's events its record keeps (the oldest give way).
pub const EVENTS_KEPT: u32 = 32;

/// Where a new ledger keeps its home of cluster-wide state (`keys.rs`).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HomeSlot {
    /// In the slot of its jobs (`{prefix}`): one slot, one master.
    #[default]
    Shared,
    /// In a slot of its own (`{prefix}`), its jobs' partition in another (`{prefix.pN}`), on
    /// another master of a cluster where one serves it: limits, budgets and tenants' slots on
    /// one master, the jobs on the other.
    Own,
}

/// Where the ledger lives, how long a Redis call may take, and how writes are made durable.
#[derive(Debug, Clone)]
pub struct LedgerConfig {
    /// `redis://...` or `redis+sentinel://host:port,.../master_name` (see [`RedisTarget`]).
    pub redis_url: String,
    /// Key prefix; it is wrapped in `{}` so all keys share one cluster slot.
    pub prefix: String,
    /// Where a ledger this client creates keeps its home of cluster-wide state (`keys.rs`):
    /// in the slot of its jobs (the default) or in one of its own. A ledger that exists keeps
    /// the layout it was created with (`P layout`), whatever its clients ask.
    pub home_slot: HomeSlot,
    /// How many partitions a ledger this client creates spreads its jobs over (1 to
    /// [`MAX_PARTITIONS`]; 0, the default: [`CLUSTER_PARTITIONS`] on a Redis Cluster, 1
    /// elsewhere): more than one gives the home a slot of its own, and on a cluster spreads
    /// the partitions evenly over its masters. A ledger that exists keeps the ones it was
    /// created with.
    pub partitions: u16,
    /// Per-command timeout. Seconds, not redis-rs's 500 ms default, so a busy Redis slows
    /// workers down instead of failing their steps.
    pub response_timeout: Duration,
    pub durability: Durability,
    /// Run on a Redis that can lose acknowledged writes (only a warning then).
    pub allow_unsafe: bool,
    /// How long a `WAIT` for replicas may take before the write counts as not durable.
    pub replica_wait: Duration,
    /// How often the server's settings are checked again (a `CONFIG SET` at runtime).
    pub recheck_every: Duration,
}

impl LedgerConfig {
    /// A config with the safe defaults: `durability = always`, unsafe servers refused,
    /// settings re-checked every 30 s.
    pub fn new(redis_url: impl Into<String>, prefix: impl Into<String>) -> Self {
        LedgerConfig {
            redis_url: redis_url.into(),
            prefix: prefix.into(),
            home_slot: HomeSlot::Shared,
            partitions: 0,
            response_timeout: Duration::from_secs(5),
            durability: Durability::Always,
            allow_unsafe: false,
            replica_wait: Duration::from_secs(1),
            recheck_every: Duration::from_secs(30),
        }
    }
}

/// A handle to the ledger; cheap to clone (one multiplexed connection to the primary,
/// replaced when it breaks or the primary moves).
#[derive(Clone)]
pub struct Ledger {
    /// The partitions, each with its master's connection (`slots.rs`).
    parts: Arc<[Part]>,
    /// When a one-slot ledger was partitioned (`P layout_since`): the jobs and batches made
    /// before are in its legacy partition, the last of `parts`.
    legacy_since: Option<u64>,
    /// The connection to the master of the home's slot (a one-slot ledger's one partition's).
    home_connector: Arc<Connector>,
    /// The home's key prefix, `{reelq}:` (a one-slot ledger's one partition's).
    pub(crate) home: String,
    safety: Arc<Safety>,
}

/// What the ledger knows of the server's durability, shared by every clone.
struct Safety {
    durability: Durability,
    allow_unsafe: bool,
    replica_wait: Duration,
    /// Why the server cannot keep writes durable right now, if it cannot (the last check).
    unsafe_now: Mutex<Option<String>>,
    /// Set when a `WAIT` fell short (replicas gone, or catching up after a failover): until a
    /// probe write is acknowledged again, writes that must be durable are refused before
    /// they are made, so no job is left `submitting` by a submit that never went out.
    replicas_behind: AtomicBool,
    /// Whose archiver's lease [`Ledger::take_archive_lease`] tries first, in turn.
    archive_turn: std::sync::atomic::AtomicUsize,
    /// Which partition [`Ledger::claim`] starts at, in turn.
    claim_turn: std::sync::atomic::AtomicUsize,
    /// Which partition [`Ledger::new_ids`] gives an enqueue without a key, in turn (from one
    /// at random, so producers do not all begin at the first).
    enqueue_turn: std::sync::atomic::AtomicUsize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TransitionOutcome {
    Applied,
    /// Another worker took the job (its fence moved on) or it left the expected state. The
    /// caller must drop its result.
    LeaseLost {
        /// Where the job is now; None if its record is gone (retention, or a lost write).
        state: Option<JobState>,
        /// The job's fence now (0 if none).
        fence: u64,
    },
}

impl Ledger {
    /// Connects to the primary and checks it can keep writes durable: an unsafe server is an
    /// error unless `config.allow_unsafe`. The check runs again every `recheck_every` for as
    /// long as a clone of the ledger lives.
    pub async fn connect(config: &LedgerConfig) -> Result<Self, QueueError> {
        let target: RedisTarget = config.redis_url.parse()?;
        let home = format!("{{{}}}:", config.prefix);
        let home_connector = Connector::connect(
            target.clone(),
            config.response_timeout,
            &format!("{home}schema"),
        )
        .await?;
        let layout = slots::layout(&home_connector, &home, config).await?;
        let parts = slots::connect_parts(&target, config, &home, &home_connector, &layout).await?;
        let ledger = Ledger {
            parts,
            legacy_since: layout.since,
            home_connector,
            home,
            safety: Arc::new(Safety {
                durability: config.durability,
                allow_unsafe: config.allow_unsafe,
                replica_wait: config.replica_wait,
                unsafe_now: Mutex::new(None),
                replicas_behind: AtomicBool::new(false),
                archive_turn: Default::default(),
                claim_turn: Default::default(),
                enqueue_turn: usize::from(rand::random::<u16>()).into(),
            }),
        };
        ledger.claim_schema().await?;
        ledger.open_history().await?;
        let check = ledger.check_durability().await?;
        if !check.is_safe() && !config.allow_unsafe {
            return Err(QueueError::Unsafe(check.problems.join("; ")));
        }
        tokio::spawn(recheck_durability(ledger.downgrade(), config.recheck_every));
        Ok(ledger)
    }

    /// Records this release's ledger schema on a new ledger, and refuses a ledger written by
    /// a newer release, whose records this binary might misread or overwrite. A ledger that
    /// holds jobs but no schema was written before versions were recorded: its records read
    /// like schema 2's.
    async fn claim_schema(&self) -> Result<(), QueueError> {
        let mut in_use = 0;
        for part in self.parts() {
            let mut exists = redis::cmd("EXISTS");
            exists.arg(part.key("due")).arg(part.key("due_low"));
            for state in JobState::ALL {
                exists.arg(part.key(format!("state:{state}")));
            }
            let found: u64 = exists.query_async(&mut part.conn().await?).await?;
            in_use += found;
        }
        let fresh_schema = if in_use > 0 { 2 } else { LEDGER_SCHEMA };
        let mut conn = self.home_conn().await?;
        let _: Option<String> = redis::cmd("SET")
            .arg(self.home_key("schema"))
            .arg(fresh_schema)
            .arg("NX")
            .query_async(&mut conn)
            .await?;
        let found = self.stored_schema(&mut conn).await?;
        if found > LEDGER_SCHEMA {
            return Err(QueueError::Schema {
                found,
                supported: LEDGER_SCHEMA,
            });
        }
        // The partitions' scripts read their own slot's copy.
        if self.split() {
            for part in self.parts() {
                let _: () = redis::cmd("SET")
                    .arg(part.key("schema"))
                    .arg(found)
                    .query_async(&mut part.conn().await?)
                    .await?;
            }
        }
        Ok(())
    }

    /// The ledger's record format (`P schema`): [`LEDGER_SCHEMA`], or the one before it
    /// until `reelq migrate` runs.
    pub async fn schema(&self) -> Result<u32, QueueError> {
        self.stored_schema(&mut self.home_conn().await?).await
    }

    /// The ledger's schema as `P schema` records it.
    async fn stored_schema(&self, conn: &mut Conn) -> Result<u32, QueueError> {
        let stored: Option<String> = redis::cmd("GET")
            .arg(self.home_key("schema"))
            .query_async(conn)
            .await?;
        stored
            .as_deref()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| QueueError::corrupt("the ledger", format!("schema {stored:?}")))
    }

    /// Where the ledger connects (without any password).
    pub fn target(&self) -> &RedisTarget {
        self.home_connector.target()
    }

    /// Reads the server's settings now, records the verdict for writes that must be durable,
    /// and logs what it found.
    pub async fn check_durability(&self) -> Result<DurabilityCheck, QueueError> {
        // The home's master keeps the limits and budgets every claim takes; each
        // partition's, its jobs.
        let mut check =
            durability::check(&mut self.home_conn().await?, self.safety.durability).await?;
        if self.split() {
            for part in self.parts() {
                let found =
                    durability::check(&mut part.conn().await?, self.safety.durability).await?;
                check.merge(found);
            }
        }
        for warning in &check.warnings {
            tracing::warn!(durability = %self.safety.durability, warning, "redis durability");
        }
        let verdict = (!check.is_safe()).then(|| check.problems.join("; "));
        if let Some(problems) = &verdict {
            if self.safety.allow_unsafe {
                tracing::warn!(
                    problems,
                    "redis can lose acknowledged writes; running anyway because allow_unsafe_redis is set"
                );
            } else {
                tracing::error!(
                    problems,
                    "redis can lose acknowledged writes; submits and enqueues are refused until it is fixed"
                );
            }
        }
        *self.safety.unsafe_now.lock().unwrap() = verdict.filter(|_| !self.safety.allow_unsafe);
        if check.replicas_missing {
            // Known short of replicas: probe before the next durable write, not after it.
            self.safety.replicas_behind.store(true, Ordering::SeqCst);
        }
        Ok(check)
    }

    /// Why writes that must be durable are refused now, if they are (for readiness checks).
    pub fn unsafe_reason(&self) -> Option<String> {
        self.safety.unsafe_now.lock().unwrap().clone()
    }

    /// Refuses a write that must be durable while the server cannot keep it.
    pub(crate) fn ensure_safe(&self) -> Result<(), QueueError> {
        match self.unsafe_reason() {
            Some(reason) => Err(QueueError::Unsafe(reason)),
            None => Ok(()),
        }
    }

    /// Whether the last `WAIT` fell short and no probe has been acknowledged since.
    pub fn replicas_behind(&self) -> bool {
        self.safety.replicas_behind.load(Ordering::SeqCst)
    }

    /// After a `WAIT` fell short: writes a probe key and waits for the replicas to
    /// acknowledge it, which they do once they hold everything before it. Writes that must
    /// be durable go ahead only after this succeeds.
    pub async fn await_replicas(&self) -> Result<(), QueueError> {
        if !self.replicas_behind() {
            return Ok(());
        }
        let mut slots = vec![(self.home_conn().await?, self.home_key("durability_probe"))];
        if self.split() {
            for part in self.parts() {
                slots.push((part.conn().await?, part.key("durability_probe")));
            }
        }
        for (mut conn, probe) in slots {
            let _: () = redis::cmd("SET")
                .arg(probe)
                .arg(now_unix_ms())
                .query_async(&mut conn)
                .await?;
            if let Durability::Replicas { n } = self.safety.durability {
                durability::wait_for_replicas(&mut conn, n, self.safety.replica_wait).await?;
            }
        }
        self.safety.replicas_behind.store(false, Ordering::SeqCst);
        Ok(())
    }

    /// Under `replicas:N`, waits for the home's replicas to hold what was written on `conn`
    /// (the home's).
    pub(crate) async fn wait_for_home_replicas(
        &self,
        conn: &mut impl redis::aio::ConnectionLike,
    ) -> Result<(), QueueError> {
        if let Durability::Replicas { n } = self.safety.durability {
            durability::wait_for_replicas(conn, n, self.safety.replica_wait).await?;
        }
        Ok(())
    }

    /// Applies a move to a job the caller holds, if its fence still matches. A `BeginSubmit`
    /// returns only once it is durable: the caller is about to pay for a create call.
    pub async fn transition(
        &self,
        lease: &impl Held,
        transition: Transition,
    ) -> Result<TransitionOutcome, QueueError> {
        let lease = lease.fence();
        let must_be_durable = transition.precedes_payment();
        if must_be_durable {
            self.ensure_safe()?;
            self.ensure_history()?;
            self.await_replicas().await?;
        }
        let planned = transition.into_move();
        let job_id = lease.job_id.to_string();
        let part = self.part_of(&job_id);
        let mut conn = part.conn().await?;
        let reply = self
            .apply_move(part, &mut conn, &job_id, lease.fence, &lease.token, planned)
            .await?;
        let outcome = match reply {
            scripts::transition::Reply::Applied => TransitionOutcome::Applied,
            scripts::transition::Reply::Held => return Err(QueueError::SubmitsHeld),
            scripts::transition::Reply::HistoryLost => {
                return Err(self.history_lost_at_submit(part).await);
            }
            scripts::transition::Reply::LeaseLost { state, fence } => {
                TransitionOutcome::LeaseLost {
                    state: state
                        .map(|state| {
                            state.parse().map_err(|err: reelq_core::UnknownState| {
                                QueueError::corrupt(lease.job_id, err.to_string())
                            })
                        })
                        .transpose()?,
                    fence,
                }
            }
        };
        if must_be_durable && outcome == TransitionOutcome::Applied {
            self.make_durable(part, &mut conn, Durable::Paid).await?;
        }
        Ok(outcome)
    }

    async fn apply_move(
        &self,
        part: &Part,
        conn: &mut Conn,
        job_id: &str,
        fence: u64,
        token: &str,
        planned: Move,
    ) -> Result<scripts::transition::Reply, QueueError> {
        let (epoch, seen) = part.history.seen();
        let args = scripts::transition::Args {
            job_id,
            fence,
            token,
            from: moves::from_list(planned.rule),
            to: planned.rule.to.as_str(),
            delay_ms: planned.delay.map_or(-1, |d| d.as_millis() as i64),
            detail: &planned.detail,
            slot_hold_ms: planned.slot_hold.map_or(-1, |d| d.as_millis() as i64),
            epoch: &epoch,
            seen,
            mark_key: part.history.mark_key(),
            fields: planned
                .fields
                .iter()
                .map(|(field, value)| (*field, value.as_str()))
                .collect(),
            spec: planned.route.as_ref().map(|(spec, _)| spec.as_str()),
            route_hold: planned.route.as_ref().and_then(|(_, hold)| *hold),
        };
        self.run_script(part, conn, &args).await
    }

    /// Renews the caller's lease; false if it was lost.
    pub async fn extend(&self, lease: &impl Held, length: Duration) -> Result<bool, QueueError> {
        let lease = lease.fence();
        let job_id = lease.job_id.to_string();
        let args = scripts::extend::Args {
            job_id: &job_id,
            fence: lease.fence,
            token: &lease.token,
            lease_ms: length.as_millis() as u64,
        };
        let reply = self.run_in(self.part_of(&job_id), &args).await?;
        Ok(reply.renewed)
    }

    /// Round trip to Redis, for readiness checks.
    pub async fn ping(&self) -> Result<(), QueueError> {
        let _: String = redis::cmd("PING")
            .query_async(&mut self.home_conn().await?)
            .await?;
        Ok(())
    }

    /// A handle that does not keep the ledger's connections alive.
    fn downgrade(&self) -> WeakLedger {
        WeakLedger {
            parts: Arc::downgrade(&self.parts),
            legacy_since: self.legacy_since,
            home_connector: Arc::downgrade(&self.home_connector),
            home: self.home.clone(),
            safety: Arc::downgrade(&self.safety),
        }
    }
}

/// A [`Ledger`] that lives only while a clone of it does (for its background checks).
struct WeakLedger {
    parts: Weak<[Part]>,
    legacy_since: Option<u64>,
    home_connector: Weak<Connector>,
    home: String,
    safety: Weak<Safety>,
}

impl WeakLedger {
    fn upgrade(&self) -> Option<Ledger> {
        Some(Ledger {
            parts: self.parts.upgrade()?,
            legacy_since: self.legacy_since,
            home_connector: self.home_connector.upgrade()?,
            home: self.home.clone(),
            safety: self.safety.upgrade()?,
        })
    }
}

/// Checks the server's durability every `every` while any clone of the ledger lives (the
/// task holds only weak references, so it ends with the last clone).
async fn recheck_durability(ledger: WeakLedger, every: Duration) {
    let mut tick = tokio::time::interval(every);
    tick.tick().await;
    loop {
        tick.tick().await;
        let Some(ledger) = ledger.upgrade() else {
            return;
        };
        if let Err(err) = ledger.check_durability().await {
            tracing::warn!(error = %err, "redis durability re-check failed; trying again later");
        }
    }
}

/// This host's clock, for read-only counts (scripts use Redis's own clock).
pub(crate) fn now_unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
