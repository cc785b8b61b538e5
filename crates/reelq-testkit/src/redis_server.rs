//! Real `redis-server` and `redis-sentinel` processes in temp dirs on free loopback ports,
//! configured as production expects (AOF on, no eviction), killed when dropped.
//!
//! A server fsyncs its AOF on every write (`appendfsync always`) unless a test asks for
//! `everysec`. [`RedisServer::power_loss`] is the crash a host without power has: the
//! process dies at once, and what the kernel had not yet written to disk is gone. With
//! `always` that is nothing acknowledged; with `everysec` it is the last second of writes,
//! simulated by cutting the AOF back to the size it had a second before the crash.

use std::{
    collections::VecDeque,
    fs,
    io::{BufRead, BufReader, Write},
    net::{TcpListener, TcpStream},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
        mpsc,
    },
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use tempfile::TempDir;

/// How a test server is set up.
#[derive(Debug, Clone)]
pub struct RedisOptions {
    /// `always` or `everysec` (or `no`).
    pub appendfsync: &'static str,
    /// Start as a replica of the primary on this port.
    pub replica_of: Option<u16>,
    /// Start as a Redis Cluster node (`cluster-enabled`, a node timeout of 2.5 s), not yet in
    /// any cluster ([`crate::RedisCluster`] makes one).
    pub cluster_node: bool,
}

impl Default for RedisOptions {
    fn default() -> Self {
        RedisOptions {
            appendfsync: "always",
            replica_of: None,
            cluster_node: false,
        }
    }
}

pub struct RedisServer {
    child: Child,
    port: u16,
    options: RedisOptions,
    /// Holds the AOF and the server's working files; removed on drop.
    dir: TempDir,
    /// The AOF's recent sizes, sampled while the server runs, so a power loss can cut the
    /// file back to what it held a moment before.
    aof_sizes: Arc<Mutex<VecDeque<(Instant, u64)>>>,
    /// Stops the sampler when the server goes away.
    sampling: Arc<AtomicBool>,
}

impl RedisServer {
    /// Starts a server with `appendfsync always`. Fails (never skips) if `redis-server` is
    /// missing or will not start.
    pub fn start() -> anyhow::Result<Self> {
        Self::start_with(RedisOptions::default())
    }

    pub fn start_with(options: RedisOptions) -> anyhow::Result<Self> {
        let dir = tempfile::tempdir().context("creating a temp dir for redis-server")?;
        // Another process can take the port between our probe and redis binding it: retry.
        let mut last_err = None;
        for _ in 0..5 {
            let port = free_port()?;
            match spawn_server(dir.path(), port, &options) {
                Ok(child) => {
                    let server = RedisServer {
                        child,
                        port,
                        options,
                        dir,
                        aof_sizes: Arc::default(),
                        sampling: Arc::new(AtomicBool::new(true)),
                    };
                    server.sample_aof_sizes();
                    return Ok(server);
                }
                Err(err) => last_err = Some(err),
            }
        }
        Err(last_err.expect("at least one attempt ran"))
    }

    /// A replica of this server (same fsync policy), returned once its first sync is done.
    pub fn start_replica(&self) -> anyhow::Result<RedisServer> {
        RedisServer::start_with(RedisOptions {
            replica_of: Some(self.port),
            ..self.options.clone()
        })
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `CONFIG SET name value`, e.g. to make the server unsafe for a test that checks we
    /// notice.
    pub fn config_set(&self, name: &str, value: &str) -> anyhow::Result<()> {
        let reply = self.command(&["CONFIG", "SET", name, value])?;
        if reply != "+OK" {
            bail!("CONFIG SET {name} {value} answered {reply:?}");
        }
        Ok(())
    }

    /// Runs one command in raw RESP (the harness needs no Redis client) and returns the first
    /// line of the answer.
    pub fn command(&self, args: &[&str]) -> anyhow::Result<String> {
        let mut conn =
            TcpStream::connect(("127.0.0.1", self.port)).context("connecting to redis")?;
        conn.write_all(&resp(args))?;
        let mut reply = String::new();
        BufReader::new(conn).read_line(&mut reply)?;
        Ok(reply.trim_end().to_owned())
    }

    /// Runs one command whose answer is a bulk string (`INFO`, `CLUSTER NODES`) and returns
    /// that string whole (another answer: its first line).
    pub fn command_text(&self, args: &[&str]) -> anyhow::Result<String> {
        use std::io::Read;
        let mut conn =
            TcpStream::connect(("127.0.0.1", self.port)).context("connecting to redis")?;
        conn.write_all(&resp(args))?;
        let mut reader = BufReader::new(conn);
        let mut first = String::new();
        reader.read_line(&mut first)?;
        let Some(len) = first.trim_end().strip_prefix('$') else {
            return Ok(first.trim_end().to_owned());
        };
        let len: usize = len.parse().context("a bulk string's length")?;
        let mut body = vec![0; len];
        reader.read_exact(&mut body)?;
        Ok(String::from_utf8(body)?)
    }

    /// Whether the server answers a `PING`.
    pub fn is_running(&self) -> bool {
        self.command(&["PING"]).is_ok_and(|reply| reply == "+PONG")
    }

    /// Kills the server at once (SIGKILL) and starts it again on the same port and data dir,
    /// as a process crash would: the kernel still writes out everything, so nothing is lost.
    pub fn restart(&mut self) -> anyhow::Result<()> {
        self.stop();
        self.start_again()
    }

    /// The host loses power: the server dies at once, and writes not yet fsynced are lost
    /// (with `everysec`, the AOF is cut back to its size `window` before the crash). The
    /// server stays down; [`RedisServer::start_again`] boots it from what is left.
    pub fn power_loss(&mut self, window: Duration) -> anyhow::Result<PowerLoss> {
        self.stop();
        let aof = self.aof_file()?;
        let size_now = fs::metadata(&aof)?.len();
        let kept = match self.options.appendfsync {
            "always" => size_now,
            _ => {
                let sizes = self.aof_sizes.lock().unwrap();
                let cutoff = Instant::now() - window;
                sizes
                    .iter()
                    .rev()
                    .find(|(at, _)| *at <= cutoff)
                    .or(sizes.front())
                    .map_or(0, |(_, size)| *size)
                    .min(size_now)
            }
        };
        fs::OpenOptions::new()
            .write(true)
            .open(&aof)?
            .set_len(kept)?;
        Ok(PowerLoss {
            bytes_lost: size_now - kept,
        })
    }

    /// Boots the server again from its data dir as a replica of the primary on
    /// `primary_port` (what an operator's rebooted host does after a failover), returning once
    /// it has synced (throwing away what only it had).
    pub fn rejoin_as_replica_of(&mut self, primary_port: u16) -> anyhow::Result<()> {
        self.options.replica_of = Some(primary_port);
        self.start_again()
    }

    /// Boots the server again from its data dir as a primary holding what it had, as a
    /// host back from a power loss does before the sentinels notice and make it a replica.
    pub fn start_again_as_primary(&mut self) -> anyhow::Result<()> {
        self.options.replica_of = None;
        self.start_again()
    }

    /// Boots the server again on the same port from its data dir.
    pub fn start_again(&mut self) -> anyhow::Result<()> {
        self.child = spawn_server(self.dir.path(), self.port, &self.options)?;
        Ok(())
    }

    /// An operator's backup: a copy of the server's AOF as it is now (with `always`, every
    /// write acknowledged so far).
    pub fn backup(&self) -> anyhow::Result<Backup> {
        let dir = tempfile::tempdir().context("creating a temp dir for a backup")?;
        copy_dir(&self.dir.path().join("appendonlydir"), dir.path())?;
        Ok(Backup { dir })
    }

    /// An operator restores `backup` while clients run: the server is killed, its data
    /// replaced by the backup's, and booted again on the same port (writes made since the
    /// backup are gone).
    pub fn restore(&mut self, backup: &Backup) -> anyhow::Result<()> {
        self.stop();
        let aof_dir = self.dir.path().join("appendonlydir");
        fs::remove_dir_all(&aof_dir).context("removing the server's AOF")?;
        fs::create_dir(&aof_dir)?;
        copy_dir(backup.dir.path(), &aof_dir)?;
        self.start_again()
    }

    /// Kills the server (SIGKILL) and leaves it down.
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// The AOF file that takes new writes (Redis 7 keeps a base file and an incremental one).
    fn aof_file(&self) -> anyhow::Result<PathBuf> {
        aof_file(self.dir.path())
    }

    fn sample_aof_sizes(&self) {
        let (dir, sizes, sampling) = (
            self.dir.path().to_owned(),
            self.aof_sizes.clone(),
            self.sampling.clone(),
        );
        std::thread::spawn(move || {
            while sampling.load(Ordering::Relaxed) {
                if let Some(size) = aof_file(&dir).ok().and_then(|f| fs::metadata(f).ok()) {
                    let mut sizes = sizes.lock().unwrap();
                    sizes.push_back((Instant::now(), size.len()));
                    while sizes.len() > 500 {
                        sizes.pop_front();
                    }
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        });
    }
}

/// A copy of a server's data, from [`RedisServer::backup`].
pub struct Backup {
    dir: TempDir,
}

fn copy_dir(from: &Path, to: &Path) -> anyhow::Result<()> {
    for entry in fs::read_dir(from).with_context(|| format!("reading {}", from.display()))? {
        let path = entry?.path();
        if let Some(name) = path.file_name() {
            fs::copy(&path, to.join(name))
                .with_context(|| format!("copying {}", path.display()))?;
        }
    }
    Ok(())
}

/// What a power loss took.
#[derive(Debug, Clone, Copy)]
pub struct PowerLoss {
    pub bytes_lost: u64,
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.sampling.store(false, Ordering::Relaxed);
        self.stop();
    }
}

/// Three `redis-sentinel` processes watching one primary as `reelq`, with a quorum of two and
/// a one-second down-after, so a failover takes a few seconds.
pub struct Sentinels {
    children: Vec<Child>,
    ports: Vec<u16>,
    /// Holds each sentinel's config file (sentinels rewrite it); removed on drop.
    _dir: TempDir,
}

/// The master name the sentinels watch.
pub const SENTINEL_MASTER: &str = "reelq";

impl Sentinels {
    pub fn start(primary: &RedisServer) -> anyhow::Result<Self> {
        let dir = tempfile::tempdir().context("creating a temp dir for redis-sentinel")?;
        let mut children = Vec::new();
        let mut ports = Vec::new();
        for sentinel_idx in 0..3 {
            let port = free_port()?;
            let conf = dir.path().join(format!("sentinel-{sentinel_idx}.conf"));
            fs::write(
                &conf,
                format!(
                    "port {port}\nbind 127.0.0.1\ndir {dir}\n\
                     sentinel monitor {SENTINEL_MASTER} 127.0.0.1 {primary} 2\n\
                     sentinel down-after-milliseconds {SENTINEL_MASTER} 2000\n\
                     sentinel failover-timeout {SENTINEL_MASTER} 5000\n\
                     sentinel parallel-syncs {SENTINEL_MASTER} 1\n",
                    dir = dir.path().display(),
                    primary = primary.port(),
                ),
            )?;
            let child = Command::new("redis-sentinel")
                .arg(&conf)
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
                .context("starting redis-sentinel: is it installed? (scripts/test installs it)")?;
            children.push(child);
            ports.push(port);
        }
        // Ready once each knows the replica and the two other sentinels: before that, a
        // crash finds no quorum to fail over.
        for (child, &port) in children.iter_mut().zip(&ports) {
            let knows_all = Ready::AllOf(&[("+slave slave", 1), ("+sentinel sentinel", 2)]);
            await_log_line(child, knows_all, port)?;
        }
        Ok(Sentinels {
            children,
            ports,
            _dir: dir,
        })
    }

    /// `redis+sentinel://127.0.0.1:p1,127.0.0.1:p2,127.0.0.1:p3/reelq`.
    pub fn url(&self) -> String {
        let hosts: Vec<String> = self
            .ports
            .iter()
            .map(|port| format!("127.0.0.1:{port}"))
            .collect();
        format!("redis+sentinel://{}/{SENTINEL_MASTER}", hosts.join(","))
    }

    /// The port of the server the sentinels name as primary now.
    pub fn primary_port(&self) -> anyhow::Result<u16> {
        let mut conn = TcpStream::connect(("127.0.0.1", self.ports[0]))?;
        conn.write_all(&resp(&[
            "SENTINEL",
            "get-master-addr-by-name",
            SENTINEL_MASTER,
        ]))?;
        let mut lines = BufReader::new(conn).lines();
        // *2, $len, host, $len, port
        let port = lines.nth(4).context("sentinel answered too little")??;
        port.parse().context("sentinel's primary port")
    }

    /// Subscribes to a sentinel's `+switch-master` events; subscribe before the crash, so the
    /// failover cannot be missed.
    pub fn watch_failover(&self) -> anyhow::Result<FailoverWatch> {
        let mut conn = TcpStream::connect(("127.0.0.1", self.ports[0]))?;
        conn.write_all(&resp(&["SUBSCRIBE", "+switch-master"]))?;
        let mut reader = BufReader::new(conn);
        // The confirmation: *3, $9, subscribe, $14, +switch-master, :1
        for _ in 0..6 {
            let mut line = String::new();
            reader.read_line(&mut line)?;
        }
        Ok(FailoverWatch { reader })
    }
}

/// A subscription to a sentinel's failover announcements.
pub struct FailoverWatch {
    reader: BufReader<TcpStream>,
}

impl FailoverWatch {
    /// Blocks until the sentinels announce a new primary, and returns its port.
    pub fn wait(mut self, timeout: Duration) -> anyhow::Result<u16> {
        self.reader.get_ref().set_read_timeout(Some(timeout))?;
        // A message: *3, $7, message, $14, +switch-master, $n, "<name> <old ip> <old port>
        // <new ip> <new port>"
        let mut payload = String::new();
        for _ in 0..7 {
            payload.clear();
            self.reader
                .read_line(&mut payload)
                .context("no failover announced in time")?;
        }
        payload
            .split_whitespace()
            .last()
            .and_then(|port| port.parse().ok())
            .with_context(|| format!("unreadable +switch-master {payload:?}"))
    }
}

impl Drop for Sentinels {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A command in RESP, the harness's only Redis client.
fn resp(args: &[&str]) -> Vec<u8> {
    let mut request = format!("*{}\r\n", args.len());
    for arg in args {
        request.push_str(&format!("${}\r\n{arg}\r\n", arg.len()));
    }
    request.into_bytes()
}

fn free_port() -> anyhow::Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0").context("probing for a free port")?;
    Ok(listener.local_addr()?.port())
}

fn aof_file(dir: &Path) -> anyhow::Result<PathBuf> {
    let aof_dir = dir.join("appendonlydir");
    fs::read_dir(&aof_dir)
        .with_context(|| format!("reading {}", aof_dir.display()))?
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .find(|path| path.to_string_lossy().ends_with(".incr.aof"))
        .context("no incremental AOF file")
}

fn spawn_server(dir: &Path, port: u16, options: &RedisOptions) -> anyhow::Result<Child> {
    let mut command = Command::new("redis-server");
    command
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(["--appendonly", "yes", "--appendfsync", options.appendfsync])
        // No rewrites: the AOF a power loss cuts is the one file that took every write.
        .args(["--auto-aof-rewrite-percentage", "0", "--save", ""])
        .args(["--maxmemory-policy", "noeviction", "--loglevel", "notice"])
        .arg("--dir")
        .arg(dir);
    // A replica is ready once its first sync is done (whole, or a partial one when it
    // rejoins after a failover), not when it listens.
    let mut ready = Ready::AnyOf(&["Ready to accept connections"]);
    if options.cluster_node {
        command
            .args([
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                "nodes.conf",
            ])
            // Long enough that six nodes on a busy two-core machine do not fail each other
            // over by mistake; a failover a test causes takes about twice this.
            .args(["--cluster-node-timeout", "2500"]);
    }
    if let Some(primary) = options.replica_of {
        command.args(["--replicaof", "127.0.0.1", &primary.to_string()]);
        ready = Ready::AnyOf(&[
            "MASTER <-> REPLICA sync: Finished with success",
            "Successful partial resynchronization",
        ]);
    }
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .context("starting redis-server: is it installed? (scripts/test installs it)")?;
    await_log_line(&mut child, ready, port)?;
    Ok(child)
}

/// Reads a process's log until one of the `ready` lines appears, then keeps draining it so the pipe never
/// fills and blocks the process.
/// What a process's log must show before it is ready.
#[derive(Clone, Copy)]
enum Ready {
    /// Any one of these lines.
    AnyOf(&'static [&'static str]),
    /// Each of these lines, at least so many times.
    AllOf(&'static [(&'static str, usize)]),
}

impl Ready {
    fn seen(self, lines: &[String]) -> bool {
        let count = |pattern: &str| lines.iter().filter(|line| line.contains(pattern)).count();
        match self {
            Ready::AnyOf(patterns) => patterns.iter().any(|pattern| count(pattern) > 0),
            Ready::AllOf(patterns) => patterns.iter().all(|&(pattern, n)| count(pattern) >= n),
        }
    }
}

fn await_log_line(child: &mut Child, ready: Ready, port: u16) -> anyhow::Result<()> {
    let stdout = child.stdout.take().expect("stdout is piped");
    let (ready_tx, ready_rx) = mpsc::channel();
    // The first lines, for the error when the process never gets ready.
    let log = Arc::new(Mutex::new(Vec::new()));
    let kept = log.clone();
    std::thread::spawn(move || {
        let mut announced = false;
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if announced {
                continue;
            }
            let mut kept = kept.lock().expect("only this thread writes the log");
            if kept.len() < 200 {
                kept.push(line);
            }
            if ready.seen(&kept) {
                announced = true;
                let _ = ready_tx.send(true);
            }
        }
        let _ = ready_tx.send(false);
    });
    let log = || log.lock().map(|lines| lines.join("\n")).unwrap_or_default();
    match ready_rx.recv_timeout(Duration::from_secs(20)) {
        Ok(true) => Ok(()),
        Ok(false) => {
            let _ = child.wait();
            bail!(
                "process on port {port} exited before it was ready:\n{}",
                log()
            )
        }
        Err(_) => {
            let _ = child.kill();
            bail!(
                "process on port {port} was not ready within 20 s:\n{}",
                log()
            )
        }
    }
}
