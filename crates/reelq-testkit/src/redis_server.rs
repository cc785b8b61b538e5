//! A real `redis-server` in a temp dir on a free loopback port, configured as production
//! expects (AOF on, no eviction), killed when dropped. AOF is fsynced on every write, so a
//! test that crashes the server loses no acknowledged write and stays deterministic.

use std::{
    io::{BufRead, BufReader, Write},
    net::{TcpListener, TcpStream},
    path::Path,
    process::{Child, Command, Stdio},
    sync::mpsc,
    time::Duration,
};

use anyhow::{Context, bail};
use tempfile::TempDir;

pub struct RedisServer {
    child: Child,
    port: u16,
    /// Holds the AOF and the server's working files; removed on drop.
    dir: TempDir,
}

impl RedisServer {
    /// Starts a server. Fails (never skips) if `redis-server` is missing or will not start.
    pub fn start() -> anyhow::Result<Self> {
        let dir = tempfile::tempdir().context("creating a temp dir for redis-server")?;
        // Another process can take the port between our probe and redis binding it: retry.
        let mut last_err = None;
        for _ in 0..5 {
            let port = free_port()?;
            match spawn_ready(dir.path(), port) {
                Ok(child) => return Ok(RedisServer { child, port, dir }),
                Err(err) => last_err = Some(err),
            }
        }
        Err(last_err.expect("at least one attempt ran"))
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `CONFIG SET name value`, e.g. to make the server unsafe for a test that checks we
    /// notice. Spoken in raw RESP so the harness needs no Redis client.
    pub fn config_set(&self, name: &str, value: &str) -> anyhow::Result<()> {
        let mut conn =
            TcpStream::connect(("127.0.0.1", self.port)).context("connecting to redis")?;
        let args = ["CONFIG", "SET", name, value];
        let mut request = format!("*{}\r\n", args.len());
        for arg in args {
            request.push_str(&format!("${}\r\n{arg}\r\n", arg.len()));
        }
        conn.write_all(request.as_bytes())?;
        let mut reply = String::new();
        BufReader::new(conn).read_line(&mut reply)?;
        if reply.trim_end() != "+OK" {
            bail!("CONFIG SET {name} {value} answered {reply:?}");
        }
        Ok(())
    }

    /// Kills the server at once (SIGKILL) and starts it again on the same port and data dir,
    /// as a crash and restart would. With AOF on, acknowledged writes survive.
    pub fn restart(&mut self) -> anyhow::Result<()> {
        self.stop();
        self.child = spawn_ready(self.dir.path(), self.port)?;
        Ok(())
    }

    /// Kills the server (SIGKILL) and leaves it down.
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}

fn free_port() -> anyhow::Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0").context("probing for a free port")?;
    Ok(listener.local_addr()?.port())
}

fn spawn_ready(dir: &Path, port: u16) -> anyhow::Result<Child> {
    let mut child = Command::new("redis-server")
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args([
            "--appendonly",
            "yes",
            "--appendfsync",
            "everysec",
            "--save",
            "",
        ])
        .args(["--maxmemory-policy", "noeviction", "--loglevel", "notice"])
        .arg("--dir")
        .arg(dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .context("starting redis-server: is it installed? (scripts/test installs it)")?;
    let stdout = child.stdout.take().expect("stdout is piped");
    let (ready_tx, ready_rx) = mpsc::channel();
    // Reads the log until the server says it is ready, then keeps draining it so the pipe
    // never fills and blocks the server.
    std::thread::spawn(move || {
        let mut log = Vec::new();
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if line.contains("Ready to accept connections") {
                let _ = ready_tx.send(Ok(()));
            } else if log.len() < 50 {
                log.push(line);
            }
        }
        let _ = ready_tx.send(Err(log.join("\n")));
    });
    match ready_rx.recv_timeout(Duration::from_secs(20)) {
        Ok(Ok(())) => Ok(child),
        Ok(Err(log)) => {
            let _ = child.wait();
            bail!("redis-server on port {port} exited before it was ready:\n{log}")
        }
        Err(_) => {
            let _ = child.kill();
            bail!("redis-server on port {port} was not ready within 20 s")
        }
    }
}
