//! A whole deployment on loopback for one test or chaos run: a real redis-server, the
//! simulator, a store directory, a producer client, and workers started as processes (from
//! the binary the caller names) or as tasks.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    process::Stdio,
    time::Duration,
};

use futures_util::StreamExt;
use reelq_core::{Catalog, JobId, JobRequest, JobState, ProviderKind};
use reelq_producer::Client;
use reelq_queue::{Durability, JobRecord, Ledger, LedgerConfig};
use reelq_sim::{SimConfig, SimEvent, Simulator};
use reelq_testkit::{EVENT_TIMEOUT, RedisCluster, RedisOptions, RedisServer, Sentinels};
use reelq_worker::{Listeners, WorkerConfig};
use tempfile::TempDir;
use tokio::{
    process::{Child, Command},
    sync::broadcast,
};
use tokio_util::sync::CancellationToken;

mod faults;
mod jobs;

/// `<access key>:<secret key>`, as a Kling key is given; every other contract sends it whole.
pub const API_KEY: &str = "sk-test-key:test-secret";
/// The key of the simulator's second account at every provider (a second kie key, say).
pub const SECOND_API_KEY: &str = "sk-second-test-key:second-secret";
/// The simulated kie account's webhook HMAC key; workers are configured with it too.
pub const WEBHOOK_KEY: &str = "whk-test-key";
/// The simulated OpenAI-style account's webhook secret; workers are configured with it too.
pub const WEBHOOK_WHSEC: &str = "whsec_dGVzdC13ZWJob29rLXNlY3JldC0xMjM0NTY=";
/// The key prefix of every deployment the harness starts.
pub const PREFIX: &str = "e2e";

/// How the deployment's Redis runs, as operators run it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RedisSetup {
    /// One primary with `appendfsync always` (`durability = "always"`).
    Always,
    /// A primary and a replica, both `appendfsync everysec`, reached directly
    /// (`durability = "replicas:1"`): the cost of `WAIT` without failover.
    Replica,
    /// A primary and a replica, both `appendfsync everysec`, watched by three sentinels;
    /// workers and producers find the primary through them (`durability = "replicas:1"`).
    Sentinel,
    /// One primary with `appendfsync everysec` and `allow_unsafe_redis`: what reelq refuses
    /// by default, kept to show what it costs.
    UnsafeEverysec,
    /// A Redis Cluster of three masters and a replica each, `appendfsync always`, reached by
    /// `redis+cluster://` (`durability = "replicas:1"`); [`Deployment::redis`] is the master of
    /// the ledger's slot.
    Cluster,
    /// The same cluster with the ledger's home in a slot of its own on another master than
    /// its jobs' partition (`home_slot = "own"`); [`Deployment::redis`] is the home's master.
    ClusterOwnHome,
    /// The same cluster with the ledger's jobs in [`PARTITIONS`] partitions, two on each
    /// master, its home beside two of them; [`Deployment::redis`] is the home's master.
    /// Manifests are enqueued as batches of [`PARTITIONED_BATCH`] jobs, each in the producer's
    /// next partition in turn.
    ClusterPartitioned,
}

/// The partitions of [`RedisSetup::ClusterPartitioned`].
pub const PARTITIONS: u16 = 6;

/// The batch size manifests are cut into under [`RedisSetup::ClusterPartitioned`].
pub const PARTITIONED_BATCH: usize = 10;

impl RedisSetup {
    fn is_cluster(self) -> bool {
        matches!(
            self,
            RedisSetup::Cluster | RedisSetup::ClusterOwnHome | RedisSetup::ClusterPartitioned
        )
    }
}

pub struct Deployment {
    /// The `reelq-worker` binary to spawn; tests pass `env!("CARGO_BIN_EXE_reelq-worker")`.
    pub worker_bin: PathBuf,
    /// The primary the deployment started with (after a failover, maybe a replica).
    pub redis: RedisServer,
    pub redis_setup: RedisSetup,
    /// The cluster's other nodes, with [`RedisSetup::Cluster`].
    pub cluster: Option<RedisCluster>,
    /// The second server, with [`RedisSetup::Sentinel`].
    pub replica: Option<RedisServer>,
    pub sentinels: Option<Sentinels>,
    /// What workers and producers connect to: the primary, or the sentinels.
    pub redis_url: String,
    pub sim: Simulator,
    pub dir: TempDir,
    pub client: Client,
    pub ledger: Ledger,
    /// The body of the workers' `[store]` table; a local directory unless a test changes it.
    pub store_section: String,
    /// More TOML for every worker's config, e.g. a `[callbacks]` table.
    pub extra_config: String,
    /// More top-level settings for every worker's config, e.g. `reconcile_every = "500ms"`
    /// (or, as configs of releases before wrote it, `reconcile_every_ms = 500`).
    pub settings: String,
    /// Delay from submit to the first poll; long, to show a callback doing the work.
    pub first_poll_ms: u64,
    /// Longest gap between polls.
    pub poll_max_ms: u64,
    /// Steps each worker runs at once.
    pub concurrency: usize,
    /// More TOML for every provider account's table, e.g. limits.
    pub account_extra: String,
    /// Which provider [`Deployment::enqueue_manifest`] sends jobs to. Workers have an
    /// account at every provider (all served by the simulator).
    pub provider: ProviderKind,
    /// The providers workers have a `[providers.<contract>]` account for (all of them unless
    /// a test changes it).
    pub contract_accounts: Vec<ProviderKind>,
    /// How long an account out of credits stays paused (`credits_pause`).
    pub credits_pause_ms: u64,
    /// More accounts for every worker's config: `[accounts.<name>]` tables.
    pub named_accounts: String,
    /// The file-descriptor limit (`ulimit -n`) worker processes start with; None: the
    /// caller's.
    pub fd_limit: Option<u64>,
}

impl Deployment {
    pub async fn start(worker_bin: impl Into<PathBuf>, generation_time: Duration) -> Deployment {
        Self::start_with(worker_bin, generation_time, RedisSetup::Always).await
    }

    pub async fn start_with(
        worker_bin: impl Into<PathBuf>,
        generation_time: Duration,
        redis_setup: RedisSetup,
    ) -> Deployment {
        Self::start_serving(worker_bin, generation_time, redis_setup, test_catalog()).await
    }

    /// A deployment whose producer validates and prices by `catalog`, and whose simulated
    /// providers serve its models.
    pub async fn start_serving(
        worker_bin: impl Into<PathBuf>,
        generation_time: Duration,
        redis_setup: RedisSetup,
        catalog: Catalog,
    ) -> Deployment {
        let appendfsync = match redis_setup {
            RedisSetup::Always
            | RedisSetup::Cluster
            | RedisSetup::ClusterOwnHome
            | RedisSetup::ClusterPartitioned => "always",
            RedisSetup::Replica | RedisSetup::Sentinel | RedisSetup::UnsafeEverysec => "everysec",
        };
        let mut cluster = redis_setup
            .is_cluster()
            .then(|| RedisCluster::start().expect("a redis cluster starts"));
        let redis = match &mut cluster {
            Some(cluster) => {
                let master = cluster
                    .master_of(&format!("{{{PREFIX}}}:due"))
                    .expect("a master serves the ledger's slot");
                cluster
                    .take_node(master)
                    .expect("one of the cluster's nodes")
            }
            None => RedisServer::start_with(RedisOptions {
                appendfsync,
                ..RedisOptions::default()
            })
            .expect("redis-server starts"),
        };
        let (replica, sentinels) = match redis_setup {
            RedisSetup::Replica => (
                Some(redis.start_replica().expect("a replica starts and syncs")),
                None,
            ),
            RedisSetup::Sentinel => (
                Some(redis.start_replica().expect("a replica starts and syncs")),
                Some(Sentinels::start(&redis).expect("three sentinels start")),
            ),
            _ => (None, None),
        };
        let redis_url = match (&cluster, &sentinels) {
            (Some(cluster), _) => format!(
                "{},127.0.0.1:{}/",
                cluster.url().trim_end_matches('/'),
                redis.port()
            ),
            (None, Some(sentinels)) => sentinels.url(),
            (None, None) => redis.url(),
        };
        let addr: SocketAddr = "127.0.0.1:0".parse().unwrap();
        let sim = Simulator::start(
            addr,
            SimConfig {
                webhook_hmac_key: Some(WEBHOOK_KEY.into()),
                webhook_secret: Some(WEBHOOK_WHSEC.into()),
                other_api_keys: vec![SECOND_API_KEY.into()],
                catalog: catalog.clone(),
                ..SimConfig::new(API_KEY, generation_time)
            },
        )
        .await
        .expect("simulator starts");
        let ledger_config = ledger_config(&redis_url, redis_setup);
        let client = Client::connect(&ledger_config)
            .await
            .expect("client connects")
            .with_catalog(catalog)
            .with_webhook_targets(loopback_webhooks());
        let ledger = Ledger::connect(&ledger_config)
            .await
            .expect("ledger connects");
        let dir = tempfile::tempdir().unwrap();
        let store_section = format!("url = \"{}\"", dir.path().join("videos").display());
        Deployment {
            worker_bin: worker_bin.into(),
            redis,
            redis_setup,
            replica,
            sentinels,
            cluster,
            redis_url,
            sim,
            dir,
            client,
            ledger,
            store_section,
            extra_config: String::new(),
            settings: String::new(),
            first_poll_ms: 100,
            poll_max_ms: 300,
            concurrency: 8,
            account_extra: String::new(),
            provider: ProviderKind::Kie,
            contract_accounts: ProviderKind::ALL.into(),
            credits_pause_ms: 500,
            named_accounts: String::new(),
            fd_limit: None,
        }
    }

    /// Copies the worker processes' logs (`<name>.log`) into `dir`.
    pub fn copy_logs_to(&self, dir: &std::path::Path) -> anyhow::Result<()> {
        std::fs::create_dir_all(dir)?;
        for entry in std::fs::read_dir(self.dir.path())? {
            let path = entry?.path();
            if path.extension().is_some_and(|ext| ext == "log")
                && let Some(name) = path.file_name()
            {
                std::fs::copy(&path, dir.join(name))?;
            }
        }
        Ok(())
    }

    pub fn store_dir(&self) -> PathBuf {
        self.dir.path().join("videos")
    }

    /// Writes a worker config with short timings, so tests take seconds.
    pub fn worker_config(&self, name: &str, api_key: &str) -> PathBuf {
        let path = self.dir.path().join(format!("{name}.toml"));
        let toml = format!(
            r#"redis_url = "{redis}"
{durability}
{settings}
prefix = "{PREFIX}"
name = "{name}"
concurrency = {concurrency}
idle_poll = "100ms"
lease = "3s"
shutdown_grace = "5s"
max_attempts = 5
max_attempts_paid = 30
backoff_min = "50ms"
backoff_max = "200ms"
credits_pause = "{credits_pause}ms"
log_format = "pretty"

[store]
{store_section}

{accounts}
{extra_config}
"#,
            redis = self.redis_url,
            durability = durability_toml(self.redis_setup),
            settings = self.settings,
            store_section = self.store_section,
            extra_config = self.extra_config,
            accounts = self.accounts(api_key),
            concurrency = self.concurrency,
            credits_pause = self.credits_pause_ms,
        );
        std::fs::write(&path, toml).unwrap();
        path
    }

    /// One account per provider, all at the simulator, each with its signing secret, then
    /// the test's named accounts.
    fn accounts(&self, api_key: &str) -> String {
        let by_contract: String = self
            .contract_accounts
            .iter()
            .map(|provider| {
                let secret = match provider {
                    ProviderKind::Kie => format!("webhook_secret = \"{WEBHOOK_KEY}\"\n"),
                    ProviderKind::Openai | ProviderKind::Replicate => {
                        format!("webhook_secret = \"{WEBHOOK_WHSEC}\"\n")
                    }
                    // The rest sign nothing (fal signs with its own published keys).
                    _ => String::new(),
                };
                format!(
                    "[providers.{provider}]\nbase_url = \"{sim}\"\napi_key = \"{api_key}\"\n\
                     request_timeout = \"5s\"\nfirst_poll = \"{first_poll}ms\"\npoll_max = \"{poll_max}ms\"\n{secret}{extra}\n",
                    sim = self.sim.base_url(),
                    first_poll = self.first_poll_ms,
                    poll_max = self.poll_max_ms,
                    extra = self.account_extra,
                )
            })
            .collect();
        by_contract + &self.named_accounts
    }

    /// Binds a callback receiver's listener on loopback and points every worker's callback
    /// URLs at it (set before spawning the workers that should use it), and the simulated
    /// OpenAI-style account's webhook endpoint too.
    pub async fn callback_listener(&mut self) -> tokio::net::TcpListener {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("binding a callback port");
        let addr = listener.local_addr().expect("bound address");
        self.extra_config = format!("[callbacks]\npublic_base_url = \"http://{addr}\"\n");
        self.sim
            .set_account_webhook_url(format!("http://{addr}/callbacks/openai"));
        listener
    }

    /// Runs a callback-receiver-only worker (role `callbacks`) in the test process on
    /// `listener`; it stops when the returned guard is dropped.
    pub fn spawn_callback_receiver(
        &self,
        listener: tokio::net::TcpListener,
    ) -> tokio_util::sync::DropGuard {
        let mut config = WorkerConfig::load(Some(&self.worker_config("receiver", API_KEY)))
            .expect("config loads");
        config.role = reelq_worker::Role::Callbacks;
        let listeners = Listeners {
            callbacks: Some(listener),
            ops: None,
        };
        self.run_worker_task(config, listeners)
    }

    /// Starts `reelq-worker` as a separate process, killed when the handle drops.
    pub fn spawn_worker_process(&self, name: &str) -> Child {
        let config = self.worker_config(name, API_KEY);
        let log = std::fs::File::create(self.dir.path().join(format!("{name}.log"))).unwrap();
        // The config file is the whole config: no REELQ_* variable of the caller leaks in.
        let inherited = std::env::vars_os().map(|(name, _)| name);
        let reelq_vars = inherited.filter(|name| name.to_string_lossy().starts_with("REELQ_"));
        let mut command = match self.fd_limit {
            Some(limit) => {
                let mut shell = Command::new("sh");
                shell
                    .args(["-c", r#"ulimit -n "$0" && exec "$@""#])
                    .arg(limit.to_string())
                    .arg(&self.worker_bin);
                shell
            }
            None => Command::new(&self.worker_bin),
        };
        for name in reelq_vars {
            command.env_remove(name);
        }
        command
            .arg("--config")
            .arg(&config)
            .stdout(log)
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("reelq-worker starts")
    }

    /// Runs a worker inside the test process, serving callbacks on `callback_listener` if
    /// given; it stops when the returned guard is dropped.
    pub fn spawn_worker_task(
        &self,
        name: &str,
        api_key: &str,
        callback_listener: Option<tokio::net::TcpListener>,
    ) -> tokio_util::sync::DropGuard {
        let config =
            WorkerConfig::load(Some(&self.worker_config(name, api_key))).expect("config loads");
        let listeners = Listeners {
            callbacks: callback_listener,
            ops: None,
        };
        self.run_worker_task(config, listeners)
    }

    /// Runs a worker inside the test process on the given sockets; it stops when the
    /// returned guard is dropped.
    pub fn run_worker_task(
        &self,
        config: WorkerConfig,
        listeners: Listeners,
    ) -> tokio_util::sync::DropGuard {
        let shutdown = CancellationToken::new();
        let token = shutdown.clone();
        tokio::spawn(async move {
            reelq_worker::run(config, listeners, token)
                .await
                .expect("worker runs")
        });
        shutdown.drop_guard()
    }
}

/// What a deployment validates, prices and serves unless a test gives its own catalog: the
/// simulator's ([`reelq_sim::served_catalog`]: the built-in rows, the example file's and a
/// Gemini-shaped gateway's Veo row). A worker without the extra rows still sends their jobs
/// (a model its catalog does not list is the provider's to judge).
pub fn test_catalog() -> Catalog {
    reelq_sim::served_catalog().clone()
}

/// An operator's catalog row retiring `rule` since 2026-12-01 in favour of `replaced_by`, as a
/// worker reads it from its `catalog` file (the row's shape kept, its status changed).
pub fn retired_row(rule: &reelq_core::ModelRule, replaced_by: &str) -> String {
    let prices: Vec<String> = rule
        .price
        .iter()
        .map(|(quality, usd)| format!("{quality} = {usd}"))
        .collect();
    let qualities: Vec<String> = rule.qualities.iter().map(|q| format!("\"{q}\"")).collect();
    format!(
        "[[model]]\nprovider = \"{}\"\nmodel = \"{}\"\ndurations = {:?}\n\
         qualities = [{}]\nprice = {{ {} }}\nstatus = \"retired\"\n\
         status_since = \"2026-12-01\"\nreplaced_by = \"{replaced_by}\"\nsource = \"a test\"\n",
        rule.provider,
        rule.model,
        rule.durations,
        qualities.join(", "),
        prices.join(", "),
    )
}

/// How producers and test readers reach the ledger under `setup`.
fn ledger_config(redis_url: &str, setup: RedisSetup) -> LedgerConfig {
    let base = LedgerConfig::new(redis_url, PREFIX);
    match setup {
        RedisSetup::Always => base,
        RedisSetup::Replica | RedisSetup::Sentinel => LedgerConfig {
            durability: Durability::Replicas { n: 1 },
            replica_wait: Duration::from_millis(500),
            ..base
        },
        RedisSetup::Cluster => LedgerConfig {
            partitions: 1,
            ..ledger_config(redis_url, RedisSetup::Replica)
        },
        RedisSetup::ClusterOwnHome => LedgerConfig {
            home_slot: reelq_queue::HomeSlot::Own,
            ..ledger_config(redis_url, RedisSetup::Cluster)
        },
        RedisSetup::ClusterPartitioned => LedgerConfig {
            partitions: PARTITIONS,
            ..ledger_config(redis_url, RedisSetup::Cluster)
        },
        RedisSetup::UnsafeEverysec => LedgerConfig {
            allow_unsafe: true,
            ..base
        },
    }
}

/// The worker config lines for `setup`.
fn durability_toml(setup: RedisSetup) -> String {
    match setup {
        RedisSetup::Always => "durability = \"always\"",
        RedisSetup::Replica | RedisSetup::Sentinel => {
            "durability = \"replicas:1\"\nreplica_wait = \"500ms\""
        }
        RedisSetup::Cluster => {
            "durability = \"replicas:1\"\nreplica_wait = \"500ms\"\npartitions = 1"
        }
        RedisSetup::ClusterOwnHome => {
            "durability = \"replicas:1\"\nreplica_wait = \"500ms\"\nhome_slot = \"own\"\npartitions = 1"
        }
        RedisSetup::ClusterPartitioned => {
            return format!(
                "{}\npartitions = {PARTITIONS}",
                durability_toml(RedisSetup::Replica)
            );
        }
        RedisSetup::UnsafeEverysec => "allow_unsafe_redis = true",
    }
    .to_owned()
}

/// The webhook policy of this harness's producers: its receivers listen on loopback, over
/// plain http.
pub fn loopback_webhooks() -> reelq_core::WebhookTargets {
    reelq_core::WebhookTargets {
        allow_http: true,
        allow: vec!["127.0.0.0/8".parse().expect("a CIDR")],
    }
}

/// Waits for `n` simulator events that `matches` accepts, and returns them.
pub async fn sim_events(
    events: &mut broadcast::Receiver<SimEvent>,
    n: usize,
    matches: impl Fn(&SimEvent) -> bool,
) -> Vec<SimEvent> {
    let wait = async {
        let mut seen = Vec::with_capacity(n);
        while seen.len() < n {
            let event = events.recv().await.expect("simulator event feed open");
            if matches(&event) {
                seen.push(event);
            }
        }
        seen
    };
    tokio::time::timeout(EVENT_TIMEOUT, wait)
        .await
        .expect("simulator events in time")
}

pub fn prompts(test: &str, n_jobs: usize) -> Vec<String> {
    (0..n_jobs)
        .map(|job_idx| format!("{test} scene {job_idx}"))
        .collect()
}

/// Every file under `dir`, at any depth, as paths relative to `dir`.
pub fn files_under(dir: &Path) -> Vec<String> {
    let mut files = Vec::new();
    let mut pending = vec![dir.to_owned()];
    while let Some(current) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&current) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                pending.push(path);
            } else if let Ok(relative) = path.strip_prefix(dir) {
                files.push(relative.to_string_lossy().into_owned());
            }
        }
    }
    files.sort();
    files
}

pub fn read_object(store_dir: &Path, key: &str) -> Vec<u8> {
    std::fs::read(store_dir.join(key)).expect("stored object exists")
}
