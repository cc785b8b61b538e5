//! The job ledger in Redis: one hash per job, changed only by the fenced Lua scripts under
//! `lua/`, plus a due schedule that doubles as the work queue.
//!
//! Keys (P is the configured prefix in a hash tag, e.g. `{reelq}:`, so one deployment's keys
//! share one slot):
//!
//! | key            | type   | content                                              | written by              |
//! |----------------|--------|------------------------------------------------------|-------------------------|
//! | `P job:{id}`   | hash   | state, fence, provider, spec JSON, task_id, task_id_hint (from a callback during submit), cb_token_hash, notify_url, notify_event, notify_attempt, notify_state (pending, sent, gave_up), attempt, submits, submit_ms, polls, token (the claim's), reconcile_note, created_ms, updated_ms, deadline_ms, batch, owner, result_url, error_class, error, object_key, bytes, sha256 | enqueue, claim, transition |
//! | `P due`        | zset   | job id -> unix ms when a worker must act next; while a worker holds the job, its lease expiry | enqueue, claim, transition, extend |
//! | `P state:{s}`  | zset   | job id -> ms of its last state change, one set per state | every state change |
//! | `P log:{id}`   | list   | the job's last 32 events, `"<ms> <state> <detail>"`  | every state change      |
//! | `P batch:{id}` | list   | the batch's job ids in manifest order                | enqueue                 |
//! | `P batchinfo:{id}` | hash | name, created_ms, total, open, start_after_ms, budget_micros, reserved_micros, priority, notify_url, cancelled_ms | enqueue, claim, batch |
//! | `P batches`    | zset   | batch id -> created ms, for listing batches           | enqueue                 |
//! | `P schema` | string | the ledger record format ([`LEDGER_SCHEMA`]) of the release that created it; newer releases' ledgers are refused | first connect |
//! | `P durability_probe` | string | unix ms of the last probe write (its `WAIT` shows the replicas caught up) | any client after a short `WAIT` |
//! | `P limits`     | hash   | provider -> "max_in_flight requests_per_s daily_budget_micros" as workers run them | worker start |
//! | `P due_low`    | zset   | like `due`, for queued jobs of low-priority batches (claimed after `due`) | enqueue, claim, batch |
//! | `P spend:{provider}:{day}` | string | estimated spend reserved on that UTC day, micros (expires) | claim, transition |
//! | `P pause:{provider}` | string | present while submits to that provider are paused (429) | pause          |
//! | `P idem:{scope}:{key}` | hash | digest (of the request) and receipt of the enqueue made under an idempotency key (expires) | enqueue, commit |
//! | `P stage:{batch}` | list | a large batch's jobs (JSON tuples) staged in chunks: nothing claims them; expires unless committed | enqueue (staging), release |
//! | `P releasing` | zset | committed batch id -> commit ms, while its staged jobs are being queued | commit, release |
//! | `P retention_ms` | string | how long finished jobs are kept (their hash and log get this TTL at the end) | worker start |
//! | `P rate:{provider}` | string | GCRA: unix ms when the provider's request bucket is empty again (expires) | claim |
//! | `P inflight:{provider}` | zset | job id -> slot expiry, one per generation in flight (with limits) | claim, transition |
//! | `P task:{provider}:{task}` | string | the job id owning a provider task: a callback naming it for another job is refused, and account-level callbacks find the job by it (expires) | worker before `Submitted`, wake (adoption) |
//! | `P notify_due` | zset   | job id -> unix ms when its completion webhook is due  | a job's end, claim_notify, notified |
//! | `P changes`    | pubsub | `"<id> <state>"` on every state change               | every state change      |
//! | `P wake`       | pubsub | number of jobs just enqueued                         | enqueue                 |
//!
//! A job is in `due` exactly while it is non-terminal and not `uncertain`. Claiming sets its
//! due time to the lease expiry and bumps its fence, so a crashed worker's job falls due again
//! by itself and the crashed worker can no longer move it. Times come from Redis's clock.

use std::{
    collections::HashMap,
    sync::{
        Arc, LazyLock, Mutex, Weak,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use futures_util::{StreamExt, stream::BoxStream};
use redis::Script;
use reelq_core::{BatchId, ErrorClass, JobId, JobSpec, JobState, ProviderKind};

use crate::{
    Durability, DurabilityCheck, JobRecord, QueueError, RedisTarget, Transition,
    connection::{Conn, Connector},
    durability, moves,
    transition::Move,
};

static CLAIM: LazyLock<Script> = ledger_script!("claim.lua");
static TRANSITION: LazyLock<Script> = ledger_script!("transition.lua");
static EXTEND: LazyLock<Script> = ledger_script!("extend.lua");
static PAUSE: LazyLock<Script> = ledger_script!("pause.lua");
static OPERATOR: LazyLock<Script> = ledger_script!("operator.lua");
static WAKE: LazyLock<Script> = ledger_script!("wake.lua");
static CLAIM_NOTIFY: LazyLock<Script> = ledger_script!("claim_notify.lua");
static NOTIFIED: LazyLock<Script> = ledger_script!("notified.lua");
static BATCH: LazyLock<Script> = ledger_script!("batch.lua");
static NOTE: LazyLock<Script> = ledger_script!("note.lua");

/// The ledger record format this release reads and writes. Raised when a record changes
/// shape; a binary refuses a ledger with a higher one (`P schema`).
pub const LEDGER_SCHEMA: u32 = 2;

/// Where the ledger lives, how long a Redis call may take, and how writes are made durable.
#[derive(Debug, Clone)]
pub struct LedgerConfig {
    /// `redis://...` or `redis+sentinel://host:port,.../master_name` (see [`RedisTarget`]).
    pub redis_url: String,
    /// Key prefix; it is wrapped in `{}` so all keys share one cluster slot.
    pub prefix: String,
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
    connector: Arc<Connector>,
    pub(crate) prefix: String,
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
}

/// A job a worker holds: the state it must act on and the fence that proves it still may.
#[derive(Debug, Clone)]
pub struct Lease {
    pub job_id: JobId,
    /// `Queued` (to submit: record `BeginSubmit` first), `Waiting` or `Fetching`.
    pub state: JobState,
    pub fence: u64,
    /// Unique to this claim. A fence alone can repeat after Redis loses its last writes
    /// (the counter rolls back and another claim gets the same number); the token cannot.
    pub token: String,
    pub spec: JobSpec,
    pub task_id: Option<String>,
    pub attempt: u32,
    pub polls: u32,
    pub result_url: Option<String>,
}

/// A batch's settings and spend, as `reelq batch report` shows them.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct BatchInfo {
    pub batch_id: BatchId,
    pub name: Option<String>,
    pub created_ms: u64,
    pub total: u64,
    pub start_after_ms: Option<u64>,
    pub budget_micros: Option<u64>,
    /// Estimates reserved by submits so far (refused creates given back).
    pub reserved_micros: u64,
    pub low_priority: bool,
}

/// Who claims, how much, and under which policy.
#[derive(Debug, Clone)]
pub struct ClaimOptions<'a> {
    /// Worker name, recorded on the job for operators.
    pub owner: &'a str,
    pub max_jobs: usize,
    pub lease: Duration,
    /// Requeue a submit whose lease expired instead of parking it `uncertain`. This can pay
    /// twice; operators opt in.
    pub resubmit_uncertain: bool,
    /// Cluster-wide limits per provider account; every replica should pass the same.
    pub limits: &'a [ProviderLimit],
    /// Providers this worker has an account for: jobs of any other are left to replicas that
    /// have one.
    pub providers: &'a [ProviderKind],
}

/// One provider account's cluster-wide limits, enforced by the claim script for every
/// replica at once. Zero means no limit.
#[derive(Debug, Clone, PartialEq)]
pub struct ProviderLimit {
    pub provider: ProviderKind,
    /// Provider calls (submits and polls) per second, across all replicas.
    pub requests_per_s: f64,
    /// Calls that may go at once after a quiet spell.
    pub burst: u32,
    /// Generations submitted and not yet finished, across all replicas.
    pub max_in_flight: u32,
    /// A slot not renewed (by a poll) for this long is freed: a job lost track of gives its
    /// slot back.
    pub slot_ttl: Duration,
    /// Estimated spend per UTC day, in millionths of a dollar; past it, submits wait for the
    /// next day. 0 = no daily budget.
    pub daily_budget_micros: u64,
    /// How long an `uncertain` job keeps its slot: the provider may still be generating its
    /// video, but a job nobody can settle must not hold the account's capacity for long.
    pub uncertain_slot_ttl: Duration,
}

impl ProviderLimit {
    fn encode(&self) -> String {
        format!(
            "{} {} {} {} {} {} {}",
            self.provider,
            self.requests_per_s,
            self.burst,
            self.max_in_flight,
            self.slot_ttl.as_millis(),
            self.daily_budget_micros,
            self.uncertain_slot_ttl.as_millis()
        )
    }
}

/// How an operator settles an `uncertain` job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resolution {
    /// The provider has the task under this id: poll it.
    TaskId(String),
    /// The provider has no task: submit again.
    Resubmit,
    /// Give up on the job.
    Fail,
}

/// A completion webhook to send: the job's ending, under an event id kept across retries.
#[derive(Debug, Clone)]
pub struct Notification {
    pub target: NotifyTarget,
    pub url: String,
    pub event_id: String,
    /// Delivery attempts already failed.
    pub attempt: u32,
}

/// Whose ending a webhook reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotifyTarget {
    Job(JobId),
    /// The batch's last job ended: a summary.
    Batch(BatchId),
}

impl std::fmt::Display for NotifyTarget {
    /// The member of `P notify_due` (a job id, or `batch:<id>`).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NotifyTarget::Job(job_id) => write!(f, "{job_id}"),
            NotifyTarget::Batch(batch_id) => write!(f, "batch:{batch_id}"),
        }
    }
}

impl std::str::FromStr for NotifyTarget {
    type Err = reelq_core::IdError;
    fn from_str(member: &str) -> Result<Self, Self::Err> {
        match member.strip_prefix("batch:") {
            Some(batch_id) => batch_id.parse().map(NotifyTarget::Batch),
            None => member.parse().map(NotifyTarget::Job),
        }
    }
}

/// How a webhook delivery went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotifyOutcome {
    Sent,
    /// Try again after this long.
    Retry(Duration),
    GaveUp,
}

/// What a per-task callback for a job is checked against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallbackBinding {
    pub provider: ProviderKind,
    /// SHA-256 (hex) of the token in the job's callback URL.
    pub token_hash: Option<String>,
}

/// What a callback did to its job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WakeOutcome {
    /// A poll was scheduled for now.
    Woken,
    /// An `uncertain` job learnt its task id and goes back to polling.
    Adopted,
    /// The job is still submitting; the task id is kept for it.
    Noted,
    /// The job has no task yet: the provider's record of the task must confirm it is the
    /// job's before it is adopted.
    Unconfirmed,
    /// The task is another job's, or the job already has another: refused.
    Conflict,
    /// Nothing to do: a duplicate, a stale hint, or a job that has moved on.
    Ignored,
    /// No such job.
    Missing,
}

/// What one claim returned.
#[derive(Debug)]
pub struct Claim {
    pub leases: Vec<Lease>,
    /// When nothing was due: how long until the next job falls due, if any is scheduled.
    pub next_due_in: Option<Duration>,
    /// Jobs a limit held back: `(provider, "rate" | "in_flight")`, one per job.
    pub waits: Vec<(String, String)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TransitionOutcome {
    Applied,
    /// Another worker took the job (its fence moved on) or it left the expected state. The
    /// caller must drop its result.
    LeaseLost {
        state: String,
        fence: String,
    },
}

type ClaimedRow = (String, String, u64, String, String, u32, String, u32);

impl Ledger {
    /// Connects to the primary and checks it can keep writes durable: an unsafe server is an
    /// error unless `config.allow_unsafe`. The check runs again every `recheck_every` for as
    /// long as a clone of the ledger lives.
    pub async fn connect(config: &LedgerConfig) -> Result<Self, QueueError> {
        let target: RedisTarget = config.redis_url.parse()?;
        let connector = Connector::connect(target, config.response_timeout).await?;
        let ledger = Ledger {
            connector,
            prefix: format!("{{{}}}:", config.prefix),
            safety: Arc::new(Safety {
                durability: config.durability,
                allow_unsafe: config.allow_unsafe,
                replica_wait: config.replica_wait,
                unsafe_now: Mutex::new(None),
                replicas_behind: AtomicBool::new(false),
            }),
        };
        ledger.claim_schema().await?;
        let check = ledger.check_durability().await?;
        if !check.is_safe() && !config.allow_unsafe {
            return Err(QueueError::Unsafe(check.problems.join("; ")));
        }
        tokio::spawn(recheck_durability(
            Arc::downgrade(&ledger.connector),
            Arc::downgrade(&ledger.safety),
            ledger.prefix.clone(),
            config.recheck_every,
        ));
        Ok(ledger)
    }

    /// Records this release's ledger schema on a new ledger (one written before versions
    /// were recorded counts as this one: its records read the same), and refuses a ledger
    /// written by a newer release, whose records this binary might misread or overwrite.
    async fn claim_schema(&self) -> Result<(), QueueError> {
        let mut conn = self.conn().await?;
        let _: Option<String> = redis::cmd("SET")
            .arg(self.key("schema"))
            .arg(LEDGER_SCHEMA)
            .arg("NX")
            .query_async(&mut conn)
            .await?;
        let stored: Option<String> = redis::cmd("GET")
            .arg(self.key("schema"))
            .query_async(&mut conn)
            .await?;
        match stored.as_deref().map(str::parse::<u32>) {
            Some(Ok(found)) if found <= LEDGER_SCHEMA => Ok(()),
            Some(Ok(found)) => Err(QueueError::Schema {
                found,
                supported: LEDGER_SCHEMA,
            }),
            _ => Err(QueueError::corrupt(
                "the ledger",
                format!("schema {stored:?}"),
            )),
        }
    }

    /// The connection for one operation; a write and its `WAIT` must share one.
    pub(crate) async fn conn(&self) -> Result<Conn, QueueError> {
        Ok(self.connector.conn().await?)
    }

    /// Where the ledger connects (without any password).
    pub fn target(&self) -> &RedisTarget {
        self.connector.target()
    }

    /// Reads the server's settings now, records the verdict for writes that must be durable,
    /// and logs what it found.
    pub async fn check_durability(&self) -> Result<DurabilityCheck, QueueError> {
        let check = durability::check(&mut self.conn().await?, self.safety.durability).await?;
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

    /// Proves the writes made on `conn` durable, per the configured mode.
    pub(crate) async fn make_durable(&self, conn: &mut Conn) -> Result<(), QueueError> {
        match self.safety.durability {
            // The primary answered only after its fsync.
            Durability::Always => Ok(()),
            Durability::Replicas { n } => {
                let waited = durability::wait_for_replicas(conn, n, self.safety.replica_wait).await;
                if waited.is_err() {
                    self.safety.replicas_behind.store(true, Ordering::SeqCst);
                }
                waited
            }
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
        let mut conn = self.conn().await?;
        let _: () = redis::cmd("SET")
            .arg(self.key("durability_probe"))
            .arg(now_unix_ms())
            .query_async(&mut conn)
            .await?;
        self.make_durable(&mut conn).await?;
        self.safety.replicas_behind.store(false, Ordering::SeqCst);
        Ok(())
    }

    pub(crate) fn key(&self, name: impl std::fmt::Display) -> String {
        format!("{}{name}", self.prefix)
    }

    /// Takes up to `options.max_jobs` due jobs, each leased to `options.owner`.
    pub async fn claim(&self, options: &ClaimOptions<'_>) -> Result<Claim, QueueError> {
        let limits: Vec<String> = options.limits.iter().map(ProviderLimit::encode).collect();
        let providers: Vec<&str> = options.providers.iter().map(|p| p.as_str()).collect();
        let token = format!("{:016x}", rand::random::<u64>());
        let (now_ms, next_due_ms, rows, waits): (i64, i64, Vec<ClaimedRow>, Vec<String>) = CLAIM
            .key(self.key("due"))
            .arg(&self.prefix)
            .arg(options.max_jobs)
            .arg(options.lease.as_millis() as u64)
            .arg(options.owner)
            .arg(if options.resubmit_uncertain { "1" } else { "0" })
            .arg(limits.join(";"))
            .arg(&token)
            .arg(providers.join(","))
            .invoke_async(&mut self.conn().await?)
            .await?;
        let waits = waits
            .iter()
            .filter_map(|wait| wait.split_once(' '))
            .map(|(provider, kind)| (provider.to_owned(), kind.to_owned()))
            .collect();
        let mut leases = Vec::with_capacity(rows.len());
        for row in rows {
            match lease_from_row(row, &token) {
                Ok(lease) => leases.push(lease),
                Err((job_id, fence, detail)) => {
                    self.fail_corrupt(&job_id, fence, &token, &detail).await?
                }
            }
        }
        let next_due_in = (leases.is_empty() && next_due_ms >= 0)
            .then(|| Duration::from_millis(next_due_ms.saturating_sub(now_ms).max(0) as u64));
        Ok(Claim {
            leases,
            next_due_in,
            waits,
        })
    }

    /// A record a worker cannot read would be claimed forever: end it as `failed`.
    async fn fail_corrupt(
        &self,
        job_id: &str,
        fence: u64,
        token: &str,
        detail: &str,
    ) -> Result<(), QueueError> {
        let planned = Transition::Failed {
            class: ErrorClass::Invalid,
            error: format!("corrupt ledger record: {detail}"),
        }
        .into_move();
        let mut conn = self.conn().await?;
        self.apply_move(&mut conn, job_id, fence, token, planned)
            .await?;
        Ok(())
    }

    /// Applies a move to a job the caller holds, if its fence still matches. A `BeginSubmit`
    /// returns only once it is durable: the caller is about to pay for a create call.
    pub async fn transition(
        &self,
        lease: &Lease,
        transition: Transition,
    ) -> Result<TransitionOutcome, QueueError> {
        let must_be_durable = transition.precedes_payment();
        if must_be_durable {
            self.ensure_safe()?;
            self.await_replicas().await?;
        }
        let planned = transition.into_move();
        let job_id = lease.job_id.to_string();
        let mut conn = self.conn().await?;
        let reply = self
            .apply_move(&mut conn, &job_id, lease.fence, &lease.token, planned)
            .await?;
        let outcome = match reply.as_slice() {
            [ok] if ok == "1" => TransitionOutcome::Applied,
            [_, state, fence] => TransitionOutcome::LeaseLost {
                state: state.clone(),
                fence: fence.clone(),
            },
            other => {
                return Err(QueueError::corrupt(
                    lease.job_id,
                    format!("unexpected transition reply {other:?}"),
                ));
            }
        };
        if must_be_durable && outcome == TransitionOutcome::Applied {
            self.make_durable(&mut conn).await?;
        }
        Ok(outcome)
    }

    async fn apply_move(
        &self,
        conn: &mut Conn,
        job_id: &str,
        fence: u64,
        token: &str,
        planned: Move,
    ) -> Result<Vec<String>, QueueError> {
        let delay_ms = planned.delay.map(|d| d.as_millis() as i64).unwrap_or(-1);
        let slot_hold_ms = planned
            .slot_hold
            .map(|d| d.as_millis() as i64)
            .unwrap_or(-1);
        let mut invocation = TRANSITION.prepare_invoke();
        invocation
            .key(self.key("due"))
            .arg(&self.prefix)
            .arg(job_id)
            .arg(fence)
            .arg(token)
            .arg(moves::from_list(planned.rule))
            .arg(planned.rule.to.as_str())
            .arg(delay_ms)
            .arg(&planned.detail)
            .arg(slot_hold_ms);
        for (field, value) in &planned.fields {
            invocation.arg(*field).arg(value);
        }
        Ok(invocation.invoke_async(conn).await?)
    }

    /// Renews the caller's lease; false if it was lost.
    pub async fn extend(&self, lease: &Lease, length: Duration) -> Result<bool, QueueError> {
        let renewed: i64 = EXTEND
            .key(self.key("due"))
            .arg(&self.prefix)
            .arg(lease.job_id.to_string())
            .arg(lease.fence)
            .arg(&lease.token)
            .arg(length.as_millis() as u64)
            .invoke_async(&mut self.conn().await?)
            .await?;
        Ok(renewed == 1)
    }

    pub async fn job(&self, job_id: JobId) -> Result<Option<JobRecord>, QueueError> {
        let fields: HashMap<String, String> = redis::cmd("HGETALL")
            .arg(self.key(format!("job:{job_id}")))
            .query_async(&mut self.conn().await?)
            .await?;
        if fields.is_empty() {
            return Ok(None);
        }
        JobRecord::from_fields(job_id, fields).map(Some)
    }

    /// The records of `job_ids` in their order, read in pipelined round trips (one per 500
    /// jobs) instead of one per job; jobs no longer in the ledger are left out.
    pub async fn jobs(&self, job_ids: &[JobId]) -> Result<Vec<JobRecord>, QueueError> {
        let mut records = Vec::with_capacity(job_ids.len());
        let mut conn = self.conn().await?;
        for chunk in job_ids.chunks(crate::ENQUEUE_CHUNK) {
            let mut pipe = redis::pipe();
            for job_id in chunk {
                pipe.cmd("HGETALL").arg(self.key(format!("job:{job_id}")));
            }
            let rows: Vec<HashMap<String, String>> = pipe.query_async(&mut conn).await?;
            for (job_id, fields) in chunk.iter().zip(rows) {
                if !fields.is_empty() {
                    records.push(JobRecord::from_fields(*job_id, fields)?);
                }
            }
        }
        Ok(records)
    }

    /// The job's recent events, oldest first.
    pub async fn history(&self, job_id: JobId) -> Result<Vec<String>, QueueError> {
        Ok(redis::cmd("LRANGE")
            .arg(self.key(format!("log:{job_id}")))
            .arg(0)
            .arg(-1)
            .query_async(&mut self.conn().await?)
            .await?)
    }

    pub async fn batch_jobs(&self, batch: BatchId) -> Result<Vec<JobId>, QueueError> {
        let ids: Vec<String> = redis::cmd("LRANGE")
            .arg(self.key(format!("batch:{batch}")))
            .arg(0)
            .arg(-1)
            .query_async(&mut self.conn().await?)
            .await?;
        ids.into_iter()
            .map(|id| id.parse().map_err(|err| QueueError::corrupt(&id, err)))
            .collect()
    }

    /// Number of jobs in each state.
    pub async fn state_counts(&self) -> Result<Vec<(JobState, u64)>, QueueError> {
        let mut pipe = redis::pipe();
        for state in JobState::ALL {
            pipe.cmd("ZCARD").arg(self.key(format!("state:{state}")));
        }
        let counts: Vec<u64> = pipe.query_async(&mut self.conn().await?).await?;
        Ok(JobState::ALL.into_iter().zip(counts).collect())
    }

    /// A live feed of state changes. Pub/sub is lossy across reconnects, so readers also
    /// re-read the ledger now and then; the feed only makes them fast.
    pub async fn changes(&self) -> Result<BoxStream<'static, (JobId, JobState)>, QueueError> {
        let changes = self
            .subscribe("changes")
            .await?
            .filter_map(|payload| async move {
                let (id, state) = payload.split_once(' ')?;
                Some((id.parse().ok()?, state.parse().ok()?))
            });
        Ok(changes.boxed())
    }

    /// Fires whenever jobs are enqueued, so idle workers need not wait for their next look.
    pub async fn wakeups(&self) -> Result<BoxStream<'static, ()>, QueueError> {
        Ok(self.subscribe("wake").await?.map(|_| ()).boxed())
    }

    async fn subscribe(&self, channel: &str) -> Result<BoxStream<'static, String>, QueueError> {
        let mut pubsub = self.connector.client().await?.get_async_pubsub().await?;
        pubsub.subscribe(self.key(channel)).await?;
        Ok(pubsub
            .into_on_message()
            .filter_map(|msg| async move { msg.get_payload::<String>().ok() })
            .boxed())
    }

    /// Stops every replica from submitting to `provider` for `length` (a 429's Retry-After).
    pub async fn pause_provider(
        &self,
        provider: ProviderKind,
        length: Duration,
    ) -> Result<(), QueueError> {
        let _: i64 = PAUSE
            .key(self.key(format!("pause:{provider}")))
            .arg(&self.prefix)
            .arg(length.as_millis().max(1) as u64)
            .invoke_async(&mut self.conn().await?)
            .await?;
        Ok(())
    }

    /// Settles an `uncertain` job. False if the job is not `uncertain`.
    pub async fn resolve(&self, job_id: JobId, resolution: Resolution) -> Result<bool, QueueError> {
        let cleared = [("error", String::new()), ("error_class", String::new())];
        let (name, delay, fields): (&str, i64, Vec<(&str, String)>) = match resolution {
            Resolution::TaskId(task_id) => (
                "resolve_with_task",
                0,
                [("task_id", task_id), ("attempt", "0".into())]
                    .into_iter()
                    .chain(cleared)
                    .collect(),
            ),
            Resolution::Resubmit => (
                "resubmit",
                0,
                [("task_id", String::new()), ("attempt", "0".into())]
                    .into_iter()
                    .chain(cleared)
                    .collect(),
            ),
            Resolution::Fail => (
                "resolve_as_failed",
                -1,
                vec![("error", "resolved as failed by an operator".into())],
            ),
        };
        self.operator_move(job_id, name, delay, "resolved by an operator", &fields)
            .await
    }

    /// Gives a `failed` job another go: back to polling if the provider has its task, else
    /// back to the submit queue. A generation that failed at the provider is submitted anew.
    pub async fn retry_failed(&self, job_id: JobId) -> Result<bool, QueueError> {
        let Some(record) = self.job(job_id).await? else {
            return Err(QueueError::NotFound(job_id));
        };
        let repoll =
            record.task_id.is_some() && record.error_class != Some(ErrorClass::GenerationFailed);
        let mut fields = vec![
            ("attempt", "0".to_owned()),
            ("error", String::new()),
            ("error_class", String::new()),
        ];
        let name = if repoll {
            "retry_failed_poll"
        } else {
            fields.push(("task_id", String::new()));
            "retry_failed_submit"
        };
        self.operator_move(job_id, name, 0, "retried by an operator", &fields)
            .await
    }

    /// Makes the operator move `name` of the move table ([`crate::moves`]).
    async fn operator_move(
        &self,
        job_id: JobId,
        name: &str,
        delay_ms: i64,
        detail: &str,
        fields: &[(&str, String)],
    ) -> Result<bool, QueueError> {
        let rule = moves::rule(name);
        debug_assert_eq!(rule.by, "operator.lua", "{name}");
        let mut invocation = OPERATOR.prepare_invoke();
        invocation
            .key(self.key("due"))
            .arg(&self.prefix)
            .arg(job_id.to_string())
            .arg(moves::from_list(rule))
            .arg(rule.to.as_str())
            .arg(delay_ms)
            .arg(detail);
        for (field, value) in fields {
            invocation.arg(*field).arg(value);
        }
        let reply: Vec<String> = invocation.invoke_async(&mut self.conn().await?).await?;
        Ok(reply.first().is_some_and(|ok| ok == "1"))
    }

    /// What authenticates a per-task callback for the job: its provider and the hash of the
    /// token in its current callback URL (None if no submit set one). None if no such job.
    pub async fn callback_binding(
        &self,
        job_id: JobId,
    ) -> Result<Option<CallbackBinding>, QueueError> {
        let (provider, token_hash): (Option<String>, Option<String>) = redis::cmd("HMGET")
            .arg(self.key(format!("job:{job_id}")))
            .arg("provider")
            .arg("cb_token_hash")
            .query_async(&mut self.conn().await?)
            .await?;
        let Some(provider) = provider else {
            return Ok(None);
        };
        Ok(Some(CallbackBinding {
            provider: provider
                .parse()
                .map_err(|_| QueueError::corrupt(job_id, format!("provider {provider:?}")))?,
            token_hash,
        }))
    }

    /// Remembers which job owns a provider task: account-level webhooks (which name only the
    /// task) find the job by it, and a callback naming the task for another job is refused.
    /// The entry expires after `ttl`, so nothing needs to clean it up.
    pub async fn index_task(
        &self,
        provider: ProviderKind,
        task_id: &str,
        job_id: JobId,
        ttl: Duration,
    ) -> Result<(), QueueError> {
        let _: () = redis::cmd("SET")
            .arg(self.key(format!("task:{provider}:{task_id}")))
            .arg(job_id.to_string())
            .arg("PX")
            .arg(ttl.as_millis() as u64)
            .query_async(&mut self.conn().await?)
            .await?;
        Ok(())
    }

    /// A batch's settings and spend, or None if there is no such batch.
    pub async fn batch_info(&self, batch: BatchId) -> Result<Option<BatchInfo>, QueueError> {
        let fields: HashMap<String, String> = redis::cmd("HGETALL")
            .arg(self.key(format!("batchinfo:{batch}")))
            .query_async(&mut self.conn().await?)
            .await?;
        if fields.is_empty() {
            return Ok(None);
        }
        let number = |name: &str| fields.get(name).and_then(|v| v.parse::<u64>().ok());
        Ok(Some(BatchInfo {
            batch_id: batch,
            name: fields.get("name").cloned(),
            created_ms: number("created_ms").unwrap_or(0),
            total: number("total").unwrap_or(0),
            start_after_ms: number("start_after_ms"),
            budget_micros: number("budget_micros"),
            // Reservations are given back with HINCRBY, so a transient negative is possible.
            reserved_micros: fields
                .get("reserved_micros")
                .and_then(|v| v.parse::<i64>().ok())
                .unwrap_or(0)
                .max(0) as u64,
            low_priority: fields.get("priority").is_some_and(|p| p == "low"),
        }))
    }

    /// Raises a batch's budget (if given) and queues its `budget_held` jobs again. Returns how
    /// many were queued, or None if there is no such batch.
    pub async fn resume_batch(
        &self,
        batch: BatchId,
        budget_micros: Option<u64>,
    ) -> Result<Option<u64>, QueueError> {
        let budget = budget_micros.map(|b| b.to_string()).unwrap_or_default();
        self.batch_action(batch, "resume", &budget).await
    }

    /// Cancels every job of a batch not yet submitted; jobs in flight finish. Returns how
    /// many were cancelled, or None if there is no such batch.
    pub async fn cancel_batch(&self, batch: BatchId) -> Result<Option<u64>, QueueError> {
        self.batch_action(batch, "cancel", "").await
    }

    async fn batch_action(
        &self,
        batch: BatchId,
        action: &str,
        argument: &str,
    ) -> Result<Option<u64>, QueueError> {
        let mut conn = self.conn().await?;
        let (mut total, mut start) = (0u64, 0i64);
        while start >= 0 {
            let (moved, next): (i64, i64) = BATCH
                .key(self.key("due"))
                .arg(&self.prefix)
                .arg(batch.to_string())
                .arg(action)
                .arg(argument)
                .arg(start)
                .arg(crate::ENQUEUE_CHUNK)
                .invoke_async(&mut conn)
                .await?;
            if moved < 0 {
                return Ok(None);
            }
            total += moved as u64;
            start = next;
        }
        Ok(Some(total))
    }

    /// Sets how long finished jobs (record, event log, state index entry) are kept; zero
    /// keeps them for ever. Applies to jobs that finish from now on.
    pub async fn set_retention(&self, retention: Duration) -> Result<(), QueueError> {
        let _: () = redis::cmd("SET")
            .arg(self.key("retention_ms"))
            .arg(retention.as_millis() as u64)
            .query_async(&mut self.conn().await?)
            .await?;
        Ok(())
    }

    /// The most recent batches, newest first.
    pub async fn recent_batches(&self, limit: usize) -> Result<Vec<BatchId>, QueueError> {
        let ids: Vec<String> = redis::cmd("ZREVRANGE")
            .arg(self.key("batches"))
            .arg(0)
            .arg(limit.saturating_sub(1))
            .query_async(&mut self.conn().await?)
            .await?;
        Ok(ids.iter().filter_map(|id| id.parse().ok()).collect())
    }

    /// Records the limits a worker runs with, for dashboards to show beside the counts.
    pub async fn publish_limits(&self, limits: &[ProviderLimit]) -> Result<(), QueueError> {
        let mut command = redis::cmd("HSET");
        command.arg(self.key("limits"));
        for limit in limits {
            command.arg(limit.provider.as_str()).arg(format!(
                "{} {} {}",
                limit.max_in_flight, limit.requests_per_s, limit.daily_budget_micros
            ));
        }
        if !limits.is_empty() {
            let _: () = command.query_async(&mut self.conn().await?).await?;
        }
        Ok(())
    }

    /// The limits workers published, by provider.
    pub async fn published_limits(&self) -> Result<Vec<ProviderLimit>, QueueError> {
        let fields: HashMap<String, String> = redis::cmd("HGETALL")
            .arg(self.key("limits"))
            .query_async(&mut self.conn().await?)
            .await?;
        let mut limits: Vec<ProviderLimit> = fields
            .iter()
            .filter_map(|(provider, value)| {
                let mut parts = value.split(' ');
                Some(ProviderLimit {
                    provider: provider.parse().ok()?,
                    max_in_flight: parts.next()?.parse().ok()?,
                    requests_per_s: parts.next()?.parse().ok()?,
                    daily_budget_micros: parts.next()?.parse().ok()?,
                    burst: 1,
                    slot_ttl: Duration::ZERO,
                    uncertain_slot_ttl: Duration::ZERO,
                })
            })
            .collect();
        limits.sort_by_key(|limit| limit.provider.as_str());
        Ok(limits)
    }

    /// Jobs that entered `state` between two unix times (ms).
    pub async fn entered_between(
        &self,
        state: JobState,
        from_ms: u64,
        to_ms: u64,
    ) -> Result<u64, QueueError> {
        Ok(redis::cmd("ZCOUNT")
            .arg(self.key(format!("state:{state}")))
            .arg(from_ms)
            .arg(format!("({to_ms}"))
            .query_async(&mut self.conn().await?)
            .await?)
    }

    /// Jobs that entered `state` in the last `window` (from its state index).
    pub async fn entered_within(
        &self,
        state: JobState,
        window: Duration,
    ) -> Result<u64, QueueError> {
        let now = now_unix_ms();
        let since = now.saturating_sub(window.as_millis() as u64);
        self.entered_between(state, since, now + 1).await
    }

    /// How long submits to `provider` stay paused (after a 429 or an empty account), if they are.
    pub async fn paused_for(&self, provider: ProviderKind) -> Result<Option<Duration>, QueueError> {
        let ms: i64 = redis::cmd("PTTL")
            .arg(self.key(format!("pause:{provider}")))
            .query_async(&mut self.conn().await?)
            .await?;
        Ok((ms > 0).then(|| Duration::from_millis(ms as u64)))
    }

    /// Jobs due now: what workers would claim if they had free slots.
    pub async fn due_now(&self) -> Result<u64, QueueError> {
        let mut total = 0;
        for queue in ["due", "due_low"] {
            let n: u64 = redis::cmd("ZCOUNT")
                .arg(self.key(queue))
                .arg("-inf")
                .arg(now_unix_ms())
                .query_async(&mut self.conn().await?)
                .await?;
            total += n;
        }
        Ok(total)
    }

    /// Generations of `provider` holding an in-flight slot now (expired slots not counted).
    pub async fn in_flight(&self, provider: ProviderKind) -> Result<u64, QueueError> {
        Ok(redis::cmd("ZCOUNT")
            .arg(self.key(format!("inflight:{provider}")))
            .arg(format!("({}", now_unix_ms()))
            .arg("+inf")
            .query_async(&mut self.conn().await?)
            .await?)
    }

    /// The job that owns `provider`'s task `task_id`, if it was indexed and has not expired.
    pub async fn job_of_task(
        &self,
        provider: ProviderKind,
        task_id: &str,
    ) -> Result<Option<JobId>, QueueError> {
        let job_id: Option<String> = redis::cmd("GET")
            .arg(self.key(format!("task:{provider}:{task_id}")))
            .query_async(&mut self.conn().await?)
            .await?;
        Ok(job_id.and_then(|id| id.parse().ok()))
    }

    /// Acts on a verified callback naming `task_id`: polls a waiting job now. A task the job
    /// does not have yet (it is `uncertain` or still submitting) is only `Unconfirmed`: the
    /// provider's record of it must be checked, then [`Ledger::adopt_task`] binds it.
    pub async fn wake(&self, job_id: JobId, task_id: &str) -> Result<WakeOutcome, QueueError> {
        self.wake_from(job_id, task_id, "its callback", None).await
    }

    /// Binds `task_id`, which the provider's records confirm is this job's create, to the
    /// job: an `uncertain` job polls it from now on (`Adopted`), one still submitting keeps
    /// it for when its answer or lease ends (`Noted`). Callbacks naming the task find the job
    /// for `index_ttl`; a task another job owns is a `Conflict`.
    pub async fn adopt_task(
        &self,
        job_id: JobId,
        task_id: &str,
        source: &str,
        index_ttl: Duration,
    ) -> Result<WakeOutcome, QueueError> {
        self.wake_from(job_id, task_id, source, Some(index_ttl))
            .await
    }

    /// `index_ttl` is given for a confirmed task, None for a callback's hint.
    async fn wake_from(
        &self,
        job_id: JobId,
        task_id: &str,
        source: &str,
        index_ttl: Option<Duration>,
    ) -> Result<WakeOutcome, QueueError> {
        let outcome: String = WAKE
            .key(self.key("due"))
            .arg(&self.prefix)
            .arg(job_id.to_string())
            .arg(task_id)
            .arg(source)
            .arg(index_ttl.unwrap_or_default().as_millis() as u64)
            .arg(if index_ttl.is_some() {
                "confirmed"
            } else {
                "hint"
            })
            .invoke_async(&mut self.conn().await?)
            .await?;
        Ok(match outcome.as_str() {
            "woken" => WakeOutcome::Woken,
            "adopted" => WakeOutcome::Adopted,
            "noted" => WakeOutcome::Noted,
            "unconfirmed" => WakeOutcome::Unconfirmed,
            "conflict" => WakeOutcome::Conflict,
            "missing" => WakeOutcome::Missing,
            _ => WakeOutcome::Ignored,
        })
    }

    /// Up to `limit` `uncertain` jobs of `provider`, most recently parked first, read in one
    /// round trip.
    pub async fn uncertain_jobs(
        &self,
        provider: ProviderKind,
        limit: usize,
    ) -> Result<Vec<JobRecord>, QueueError> {
        let job_ids = self.jobs_in_state(JobState::Uncertain, limit).await?;
        let mut records = self.jobs(&job_ids).await?;
        records.retain(|record| {
            record.state == JobState::Uncertain && record.spec.provider == provider
        });
        Ok(records)
    }

    /// Queues an `uncertain` job again because the provider's own records show it has no
    /// task for it: its create never happened. False if the job is no longer uncertain.
    pub async fn resubmit_absent(&self, job_id: JobId, detail: &str) -> Result<bool, QueueError> {
        let fields = [
            ("task_id", String::new()),
            ("attempt", "0".to_owned()),
            ("error", String::new()),
            ("error_class", String::new()),
            ("reconcile_note", String::new()),
        ];
        self.operator_move(job_id, "resubmit", 0, detail, &fields)
            .await
    }

    /// Notes on an `uncertain` job what reconciliation found (false if it is no longer
    /// uncertain).
    pub async fn note_uncertain(&self, job_id: JobId, note: &str) -> Result<bool, QueueError> {
        let noted: i64 = NOTE
            .key(self.key("due"))
            .arg(&self.prefix)
            .arg(job_id.to_string())
            .arg(note)
            .invoke_async(&mut self.conn().await?)
            .await?;
        Ok(noted == 1)
    }

    /// Takes up to `max` due completion webhooks, leased for `lease`.
    pub async fn claim_notifications(
        &self,
        max: usize,
        lease: Duration,
    ) -> Result<Vec<Notification>, QueueError> {
        let rows: Vec<(String, String, String, u32)> = CLAIM_NOTIFY
            .key(self.key("notify_due"))
            .arg(&self.prefix)
            .arg(max)
            .arg(lease.as_millis() as u64)
            .invoke_async(&mut self.conn().await?)
            .await?;
        rows.into_iter()
            .map(|(id, url, event_id, attempt)| {
                let target = id.parse().map_err(|err| QueueError::corrupt(&id, err))?;
                Ok(Notification {
                    target,
                    url,
                    event_id,
                    attempt,
                })
            })
            .collect()
    }

    /// Records how a webhook delivery went.
    pub async fn notified(
        &self,
        notification: &Notification,
        outcome: NotifyOutcome,
        detail: &str,
    ) -> Result<(), QueueError> {
        let (name, delay) = match outcome {
            NotifyOutcome::Sent => ("sent", Duration::ZERO),
            NotifyOutcome::Retry(delay) => ("retry", delay),
            NotifyOutcome::GaveUp => ("gave_up", Duration::ZERO),
        };
        let _: i64 = NOTIFIED
            .key(self.key("notify_due"))
            .arg(&self.prefix)
            .arg(notification.target.to_string())
            .arg(&notification.event_id)
            .arg(name)
            .arg(delay.as_millis() as u64)
            .arg(detail)
            .invoke_async(&mut self.conn().await?)
            .await?;
        Ok(())
    }

    /// Round trip to Redis, for readiness checks.
    pub async fn ping(&self) -> Result<(), QueueError> {
        let _: String = redis::cmd("PING")
            .query_async(&mut self.conn().await?)
            .await?;
        Ok(())
    }

    /// Job ids in `state`, most recently changed first.
    pub async fn jobs_in_state(
        &self,
        state: JobState,
        limit: usize,
    ) -> Result<Vec<JobId>, QueueError> {
        let ids: Vec<String> = redis::cmd("ZREVRANGE")
            .arg(self.key(format!("state:{state}")))
            .arg(0)
            .arg(limit.saturating_sub(1))
            .query_async(&mut self.conn().await?)
            .await?;
        ids.into_iter()
            .map(|id| id.parse().map_err(|err| QueueError::corrupt(&id, err)))
            .collect()
    }
}

/// A claimed row as a lease, or (job id, fence, what is wrong) for a record that cannot be read.
fn lease_from_row(row: ClaimedRow, token: &str) -> Result<Lease, (String, u64, String)> {
    let (id, state, fence, spec, task_id, attempt, result_url, polls) = row;
    let parsed = (|| {
        let job_id: JobId = id.parse().map_err(|e: reelq_core::IdError| e.to_string())?;
        let state: JobState = state
            .parse()
            .map_err(|e: reelq_core::UnknownState| e.to_string())?;
        let spec: JobSpec = serde_json::from_str(&spec).map_err(|e| format!("spec: {e}"))?;
        Ok::<_, String>((job_id, state, spec))
    })();
    match parsed {
        Ok((job_id, state, spec)) => Ok(Lease {
            job_id,
            state,
            fence,
            token: token.to_owned(),
            spec,
            task_id: non_empty(task_id),
            attempt,
            polls,
            result_url: non_empty(result_url),
        }),
        Err(detail) => Err((id, fence, detail)),
    }
}

/// Checks the server's durability every `every` while any clone of the ledger lives (the
/// task holds only weak references, so it ends with the last clone).
async fn recheck_durability(
    connector: Weak<Connector>,
    safety: Weak<Safety>,
    prefix: String,
    every: Duration,
) {
    let mut tick = tokio::time::interval(every);
    tick.tick().await;
    loop {
        tick.tick().await;
        let (Some(connector), Some(safety)) = (connector.upgrade(), safety.upgrade()) else {
            return;
        };
        let ledger = Ledger {
            connector,
            safety,
            prefix: prefix.clone(),
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

fn non_empty(value: String) -> Option<String> {
    (!value.is_empty()).then_some(value)
}
