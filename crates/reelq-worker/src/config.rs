//! The worker's one typed config: embedded defaults, then a TOML file, then `REELQ_*`
//! environment variables (`__` separates levels: `REELQ_PROVIDERS__KIE__API_KEY`).
//! Unknown keys are refused, so a typo is an error at start, not a silent default.
//! `REELQ_CONFIG` names the file itself and is not a setting.

use std::{
    collections::BTreeMap,
    path::Path,
    sync::{Arc, Mutex},
    time::Duration,
};

use figment::{
    Figment,
    providers::{Env, Format, Toml},
};
use reelq_core::{AccountName, ProviderKind, Secret};
use serde::Deserialize;

use crate::WorkerError;

mod accounts;
mod durations;
mod sections;

pub use accounts::{ConfiguredAccount, ProviderAccount, ProvidersConfig};
use durations::MillisecondKeys;
pub use sections::{
    CallbacksConfig, HistoryConfig, NotifyConfig, S3Config, StoreConfig, TelemetryConfig,
};

/// What a per-job callback URL adds to the public base: `/callbacks/evolink/<job>/<token>`
/// (a ULID and a 32-character token), with room to spare.
const CALLBACK_PATH_CHARS: usize = 100;

/// Why EvoLink would refuse callback URLs under `base` (its documented rule: HTTPS, no
/// private or loopback address, at most 2048 characters). A loopback base is let through:
/// no real provider can reach it, so it only serves a local simulator.
fn evolink_callback_problem(base: &str) -> Option<&'static str> {
    let rest = base
        .strip_prefix("https://")
        .or_else(|| base.strip_prefix("http://"))?;
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host = match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or_default(),
        None => authority
            .rsplit_once(':')
            .map_or(authority, |(host, _)| host),
    };
    let ip = host.parse::<std::net::IpAddr>().ok();
    if host == "localhost" || ip.is_some_and(|ip| ip.is_loopback()) {
        return None;
    }
    if !base.starts_with("https://") {
        return Some("not HTTPS");
    }
    if ip.is_some_and(|ip| !reelq_core::is_public(ip)) {
        return Some("a private address");
    }
    (base.len() + CALLBACK_PATH_CHARS > reelq_core::MAX_URL_CHARS).then_some("too long")
}

/// `REELQ_*` variables that belong to the other commands (the `reelq` CLI and `reelq serve`;
/// `REELQ_SIM_*` are the simulator's), so one environment can serve them all: the worker
/// ignores these and still refuses any other unknown `REELQ_*` name, a typo. `REELQ_CONFIG`
/// names the file itself.
const OTHER_COMMANDS_VARIABLES: &[&str] = &[
    "config",
    "api_token",
    "session_key",
    "prices",
    "notify_allow",
    "notify_allow_http",
    "store_url",
    "s3_endpoint",
];

/// The defaults: every top-level setting and `[store]`'s (the optional sections' and each
/// account's are the `default_*` functions by their fields).
const DEFAULTS: &str = r#"
redis_url = "redis://127.0.0.1:6379/"
prefix = "reelq"
home_slot = "shared"
partitions = 0
name = ""
concurrency = 64
claim_batch = 16
idle_poll = "1s"
lease = "60s"
shutdown_grace = "30s"
max_attempts = 8
max_attempts_paid = 30
backoff_min = "1s"
backoff_max = "60s"
log_format = "json"
role = "all"
resubmit_uncertain = false
allow_unsafe_redis = false
durability = "always"
replica_wait = "1s"
durability_check = "30s"
reconcile_every = "60s"
reconcile_absent_after = "10m"
credits_pause = "5m"
retention = "7days"
http_max_connections = 512
http_header_timeout = "10s"
http_body_timeout = "30s"

[history]
archive = true
grace = "1h"
failed_grace = "3days"
every = "1m"
max_jobs_per_pass = 20000

[store]
url = "./data"
part_size_bytes = 8388608
link_ttl = "1day"
"#;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkerConfig {
    pub redis_url: Secret,
    /// Key prefix shared by every replica and producer of one deployment.
    pub prefix: String,
    /// Where a ledger this worker creates keeps its home of cluster-wide state: `shared` (in
    /// the slot of its jobs) or `own` (a slot of its own, on another master of a cluster:
    /// docs/cluster.md). A ledger that exists keeps the layout it was created with.
    pub home_slot: reelq_queue::HomeSlot,
    /// How many partitions a ledger this worker creates spreads its jobs over (1 to 1024; 0:
    /// 16 on a Redis Cluster, 1 on one Redis; more than one gives the home a slot of its own
    /// and, on a cluster, spreads them evenly over its masters: docs/cluster.md). A ledger
    /// that exists keeps its own.
    pub partitions: u16,
    /// Names this process in leases and logs; empty means `worker-<pid>-<random>`.
    pub name: String,
    /// Most steps running at once in this process.
    pub concurrency: usize,
    /// Most jobs taken per claim round trip.
    pub claim_batch: usize,
    /// Longest idle sleep between claims when nothing is due.
    #[serde(deserialize_with = "durations::deserialize")]
    pub idle_poll: Duration,
    /// How long a step may run before another replica takes the job over; renewed while the
    /// step runs, so only a dead or stalled worker loses it.
    #[serde(deserialize_with = "durations::deserialize")]
    pub lease: Duration,
    /// After SIGTERM, how long in-flight steps may take to finish.
    #[serde(deserialize_with = "durations::deserialize")]
    pub shutdown_grace: Duration,
    /// Attempts of a submit before the job fails (nothing is paid yet).
    pub max_attempts: u32,
    /// Attempts of a poll or fetch before the job fails. Higher, because the provider has
    /// accepted (and billed) the task: giving up throws a paid video away.
    pub max_attempts_paid: u32,
    #[serde(deserialize_with = "durations::deserialize")]
    pub backoff_min: Duration,
    #[serde(deserialize_with = "durations::deserialize")]
    pub backoff_max: Duration,
    /// `json` or `pretty`.
    pub log_format: String,
    /// `all` (claim and run steps, send webhooks, and receive callbacks if a listener is
    /// given) or `callbacks` (only receive callbacks).
    pub role: Role,
    /// Submit again, instead of parking as `uncertain`, a job whose submitter died before
    /// the provider answered. The provider may then bill twice; off unless chosen.
    pub resubmit_uncertain: bool,
    /// Run even if Redis can lose acknowledged writes: AOF off, `appendfsync` weaker than
    /// `durability` needs, or an evicting memory policy (only a warning then). A host crash
    /// can then lose jobs and submit paid generations twice.
    pub allow_unsafe_redis: bool,
    /// What proves a ledger write durable before a paid create call goes out: `always`
    /// (the primary runs `appendfsync always`) or `replicas:N` (N replicas acknowledge it,
    /// by `WAIT`). Checked at start and every `durability_check`.
    pub durability: reelq_queue::Durability,
    /// How long a `WAIT` for replicas may take; past it the submit is put back, unsent.
    #[serde(deserialize_with = "durations::deserialize")]
    pub replica_wait: Duration,
    #[serde(deserialize_with = "durations::deserialize")]
    pub durability_check: Duration,
    /// How often `uncertain` jobs are looked up at providers that can list their tasks.
    #[serde(deserialize_with = "durations::deserialize")]
    pub reconcile_every: Duration,
    /// An `uncertain` job whose submit began this long ago, and which the provider's complete
    /// task list still does not show, was never created there: it is submitted again.
    /// "0s" = never (every such job waits for an operator).
    #[serde(deserialize_with = "durations::deserialize")]
    pub reconcile_absent_after: Duration,
    /// After a provider says the account is out of credits, how long no replica submits to
    /// it (the job that met it fails as `credits`; the others wait, unpaid and unfailed).
    #[serde(deserialize_with = "durations::deserialize")]
    pub credits_pause: Duration,
    /// With `[history] archive = false` only: how long a finished job's record and event log
    /// are kept in Redis (default 7 days; "0s" = for ever). The deployment's one value: the
    /// last worker to start sets it. Archived history is kept by the store's lifecycle rule.
    #[serde(deserialize_with = "durations::deserialize")]
    pub retention: Duration,
    /// Each listener's (callbacks, ops) most open connections; past it, new ones wait in
    /// the kernel's backlog. Keep it well under the process's descriptor limit (`ulimit -n`).
    pub http_max_connections: usize,
    /// How long a request's headers may take to arrive, and a kept-alive connection may sit
    /// idle, before it is closed.
    #[serde(deserialize_with = "durations::deserialize")]
    pub http_header_timeout: Duration,
    /// How long a request's body may take to arrive.
    #[serde(deserialize_with = "durations::deserialize")]
    pub http_body_timeout: Duration,
    pub store: StoreConfig,
    /// Finished jobs leave Redis for the object store after a grace.
    pub history: HistoryConfig,
    /// One account per contract, named after it (`[providers.kie]` is the account `kie`).
    #[serde(default)]
    pub providers: ProvidersConfig,
    /// Accounts by name, each of a contract (`[accounts.kie_b] contract = "kie"`): several
    /// accounts of one provider, each with its own key, limits, budgets and pauses. A job
    /// that names a provider goes to any of its accounts; one that names an account, to it.
    #[serde(default)]
    pub accounts: BTreeMap<AccountName, ProviderAccount>,
    /// Provider callbacks; off when absent (polling alone still finishes every job).
    pub callbacks: Option<CallbacksConfig>,
    /// Where to serve `/metrics`, `/healthz` and `/readyz`, e.g. `0.0.0.0:9100`.
    pub ops_listen: Option<String>,
    /// A file (one per replica, on a disk that outlives the process) where this worker keeps
    /// the paid creates it made, so a restarted worker still gives them back to a ledger
    /// that lost them (a rollback around its restart). Without it they are kept in memory
    /// only. Appended without fsync: it outlives the process, not the host.
    #[serde(default)]
    pub paid_creates_file: Option<std::path::PathBuf>,
    /// An operator's models file over the built-in catalog (`REELQ_CATALOG`, as the `reelq`
    /// CLI and `reelq serve` read it). Right before a submit, a job whose model's row says
    /// `retired` or `paused` (marked after the job was queued) fails `model_unavailable`
    /// instead of being sent.
    #[serde(default)]
    pub catalog: Option<std::path::PathBuf>,
    /// Completion webhooks to jobs' `notify_url`; not sent when absent.
    pub notify: Option<NotifyConfig>,
    /// Traces exported over OTLP; none when absent.
    pub telemetry: Option<TelemetryConfig>,
    /// Settings given under the millisecond keys of releases before (`lease_ms`), read as
    /// durations: named in a warning.
    #[serde(skip)]
    pub millisecond_keys: Vec<String>,
}

/// What a worker process does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    All,
    Callbacks,
}

impl WorkerConfig {
    /// The built-in catalog with the operator's `catalog` file over it.
    pub fn catalog(&self) -> Result<reelq_core::Catalog, WorkerError> {
        let built_in = reelq_core::Catalog::built_in();
        let Some(path) = &self.catalog else {
            return Ok(built_in.clone());
        };
        let text = std::fs::read_to_string(path)
            .map_err(|err| WorkerError::Config(format!("catalog {}: {err}", path.display())))?;
        built_in
            .with_file(&text, &path.display().to_string())
            .map_err(|err| WorkerError::Config(format!("catalog {}: {err}", path.display())))
    }

    /// Where archived history goes: `[history] url`, or the videos' store.
    pub fn history_store(&self) -> reelq_storage::StoreConfig {
        let mut store = self.store.to_storage();
        if let Some(url) = &self.history.url {
            store.url = url.clone();
        }
        store
    }
}

impl WorkerConfig {
    /// Loads defaults, then `file` if given, then the environment, and checks the result.
    pub fn load(file: Option<&Path>) -> Result<Self, WorkerError> {
        let found = Arc::new(Mutex::new(Vec::new()));
        let mut figment = Figment::from(Toml::string(DEFAULTS));
        if let Some(file) = file {
            if !file.exists() {
                return Err(WorkerError::Config(format!(
                    "{} does not exist",
                    file.display()
                )));
            }
            figment = figment.merge(MillisecondKeys {
                source: Toml::file(file),
                found: found.clone(),
            });
        }
        let mut config: WorkerConfig = figment
            .merge(MillisecondKeys {
                source: Env::prefixed("REELQ_")
                    .ignore(OTHER_COMMANDS_VARIABLES)
                    .filter(|key| !key.starts_with("sim_"))
                    .split("__"),
                found: found.clone(),
            })
            .extract()
            .map_err(|err| WorkerError::Config(err.to_string()))?;
        config.millisecond_keys = std::mem::take(&mut *found.lock().expect("not poisoned"));
        config.check()?;
        Ok(config)
    }

    fn check(&self) -> Result<(), WorkerError> {
        let fail = |msg: &str| Err(WorkerError::Config(msg.to_owned()));
        if let Err(err) = self.redis_url.expose().parse::<reelq_queue::RedisTarget>() {
            return Err(WorkerError::Config(format!("redis_url: {err}")));
        }
        if self.durability_check.is_zero() || self.reconcile_every.is_zero() {
            return fail("durability_check and reconcile_every must be more than 0s");
        }
        if self.concurrency == 0 || self.claim_batch == 0 {
            return fail("concurrency and claim_batch must be at least 1");
        }
        if self.partitions > reelq_queue::MAX_PARTITIONS {
            return fail("partitions must be between 0 (as the Redis suggests) and 1024");
        }
        if self.lease < Duration::from_secs(3) {
            return fail("lease must be at least 3s: renewals happen every third of it");
        }
        if self.backoff_min.is_zero() || self.backoff_min > self.backoff_max {
            return fail("backoff_min must be between 1ms and backoff_max");
        }
        if self.store.part_size_bytes < 5 * 1024 * 1024 {
            return fail("store.part_size_bytes must be at least 5242880 (S3's smallest part)");
        }
        if !(Duration::from_secs(1)..=Duration::from_secs(7 * 24 * 3600))
            .contains(&self.store.link_ttl)
        {
            return fail("store.link_ttl must be between 1s and 7days");
        }
        if !matches!(self.log_format.as_str(), "json" | "pretty") {
            return fail("log_format must be \"json\" or \"pretty\"");
        }
        if self.role == Role::Callbacks
            && self
                .callbacks
                .as_ref()
                .and_then(|c| c.listen.as_ref())
                .is_none()
        {
            return fail("role callbacks needs callbacks.listen");
        }
        if let Some(callbacks) = &self.callbacks {
            let base = callbacks.public_base_url.as_str();
            if !(base.starts_with("http://") || base.starts_with("https://")) {
                return fail("callbacks.public_base_url must be an http(s) URL");
            }
            // Only a provider reached over https is the real one: a plain-http base URL is a
            // simulator or a local gateway, which takes any callback URL.
            let has_evolink = self.accounts().iter().any(|account| {
                account.contract == ProviderKind::Evolink
                    && account.settings.base_url.starts_with("https://")
            });
            if has_evolink && let Some(problem) = evolink_callback_problem(base) {
                return Err(WorkerError::Config(format!(
                    "callbacks.public_base_url {base}: {problem} (EvoLink refuses a create whose \
                     callback_url is not HTTPS to a public host of at most 2048 characters, so \
                     every evolink job would fail)"
                )));
            }
        }
        self.check_accounts()?;
        for ConfiguredAccount {
            name: provider,
            settings: account,
            ..
        } in self.accounts()
        {
            if account.max_requests_per_s < 0.0 || account.burst == 0 {
                return Err(WorkerError::Config(format!(
                    "providers.{provider}: max_requests_per_s must be >= 0 and burst >= 1"
                )));
            }
            if account.max_in_flight > 0 && account.in_flight_slot_ttl < 2 * account.poll_max {
                return Err(WorkerError::Config(format!(
                    "providers.{provider}: in_flight_slot_ttl must be at least twice poll_max, \
                     or a slot expires between two polls of a running generation"
                )));
            }
        }
        if self.accounts().is_empty() {
            return fail(
                "no provider configured: add [providers.kie], [providers.acedata], \
                 [providers.evolink] or [providers.openai], or [accounts.<name>] tables",
            );
        }
        Ok(())
    }

    /// Each account has one contract that fits its name, and no name is given twice.
    fn check_accounts(&self) -> Result<(), WorkerError> {
        let error = |message: String| Err(WorkerError::Config(message));
        for (contract, settings) in self.providers.by_contract() {
            if settings.contract.is_some_and(|named| named != contract) {
                return error(format!(
                    "providers.{contract}: its contract is {contract}; name another in [accounts.<name>]"
                ));
            }
            if self.accounts.contains_key(&AccountName::from(contract)) {
                return error(format!(
                    "the account {contract} is given twice: [providers.{contract}] and [accounts.{contract}]"
                ));
            }
        }
        for (name, settings) in &self.accounts {
            match settings.contract {
                None => {
                    return error(format!(
                        "accounts.{name}: contract is required (kie, acedata, evolink or openai)"
                    ));
                }
                Some(contract) if !name.fits(contract) => {
                    return error(format!(
                        "accounts.{name}: {name} is the {name} contract's own name, not a {contract} account's"
                    ));
                }
                Some(_) => {}
            }
        }
        Ok(())
    }

    /// What is allowed but probably wrong, for the log once logging is set up (loading runs
    /// before it, so it cannot log these itself).
    pub fn warnings(&self) -> Vec<String> {
        let mut warnings = Vec::new();
        if !self.millisecond_keys.is_empty() {
            warnings.push(format!(
                "{} read as milliseconds, as releases before wrote them; write durations without \
                 the _ms suffix, e.g. lease = \"60s\"",
                self.millisecond_keys.join(", ")
            ));
        }
        if let Some(callbacks) = &self.callbacks {
            let base = callbacks.public_base_url.as_str();
            if base.starts_with("http://")
                && !base.contains("127.0.0.1")
                && !base.contains("localhost")
            {
                warnings.push(format!(
                    "callbacks.public_base_url {base} is not HTTPS; providers may refuse it"
                ));
            }
        }
        warnings
    }

    /// What each of this worker's listeners allows.
    pub fn http_limits(&self) -> reelq_http::Limits {
        reelq_http::Limits {
            max_connections: self.http_max_connections,
            header_timeout: self.http_header_timeout,
            body_timeout: self.http_body_timeout,
            shutdown_grace: self.shutdown_grace,
        }
    }

    /// The ledger connection this config asks for.
    pub fn ledger(&self) -> reelq_queue::LedgerConfig {
        reelq_queue::LedgerConfig {
            durability: self.durability,
            allow_unsafe: self.allow_unsafe_redis,
            replica_wait: self.replica_wait,
            recheck_every: self.durability_check,
            home_slot: self.home_slot.clone(),
            partitions: self.partitions,
            ..reelq_queue::LedgerConfig::new(self.redis_url.expose(), &self.prefix)
        }
    }
}

#[cfg(test)]
mod tests;
