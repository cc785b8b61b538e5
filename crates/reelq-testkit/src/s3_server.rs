//! A real S3-compatible server (moto) on a free loopback port, with one bucket, killed when
//! dropped. `scripts/test` installs moto into `.s3venv` and names its `moto_server` in
//! `MOTO_SERVER`; without it the test fails, it never skips.

use std::{
    io::{BufRead, BufReader, Read, Write},
    net::{TcpListener, TcpStream},
    path::PathBuf,
    process::{Child, Command, Stdio},
    sync::mpsc,
    time::Duration,
};

use anyhow::{Context, bail};

/// The bucket every server starts with.
pub const BUCKET: &str = "videos";

pub struct S3Server {
    child: Child,
    port: u16,
    moto_server: PathBuf,
}

impl S3Server {
    pub fn start() -> anyhow::Result<Self> {
        let moto_server = std::env::var_os("MOTO_SERVER").map(PathBuf::from).context(
            "MOTO_SERVER is not set: run scripts/test, which installs moto into \
                 .s3venv, or point it at a moto_server binary",
        )?;
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let child = spawn(&moto_server, port)?;
        let server = S3Server {
            child,
            port,
            moto_server,
        };
        server.request("PUT", &format!("/{BUCKET}"))?;
        Ok(server)
    }

    /// Kills the server: the store is down (moto keeps its objects in memory, so they go
    /// with it).
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts the server again on the same port, with its bucket, empty.
    pub fn start_again(&mut self) -> anyhow::Result<()> {
        self.stop();
        self.child = spawn(&self.moto_server, self.port)?;
        self.request("PUT", &format!("/{BUCKET}"))
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Runs a Python snippet with boto3 (from moto's venv) against this server, as an
    /// independent client would; `s3` is a ready client and `BUCKET` the bucket's name.
    /// Returns what the snippet printed.
    pub fn boto3(&self, snippet: &str) -> anyhow::Result<Vec<u8>> {
        let python = self.moto_server.with_file_name("python");
        let prelude = format!(
            "import boto3, sys\n\
             s3 = boto3.client('s3', endpoint_url='{}', region_name='us-east-1',\n\
                 aws_access_key_id='test', aws_secret_access_key='test')\n\
             BUCKET = '{BUCKET}'\n",
            self.endpoint()
        );
        let output = Command::new(&python)
            .arg("-c")
            .arg(prelude + snippet)
            .output()
            .with_context(|| format!("running {}", python.display()))?;
        if !output.status.success() {
            bail!(
                "boto3 snippet failed: {}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
        Ok(output.stdout)
    }

    /// A bare HTTP/1.0 request, for bucket set-up without an S3 client.
    fn request(&self, method: &str, path: &str) -> anyhow::Result<()> {
        let mut conn = TcpStream::connect(("127.0.0.1", self.port))?;
        write!(
            conn,
            "{method} {path} HTTP/1.0\r\nHost: 127.0.0.1\r\nContent-Length: 0\r\n\r\n"
        )?;
        let mut reply = String::new();
        conn.read_to_string(&mut reply)?;
        let status = reply.lines().next().unwrap_or_default();
        if !status.contains(" 200") {
            bail!("{method} {path} answered {status:?}");
        }
        Ok(())
    }
}

/// Starts moto_server on `port` and waits until it says it runs.
fn spawn(moto_server: &std::path::Path, port: u16) -> anyhow::Result<Child> {
    let mut child = Command::new(moto_server)
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("starting {}", moto_server.display()))?;
    let stderr = child.stderr.take().expect("stderr is piped");
    let (ready_tx, ready_rx) = mpsc::channel();
    // Reads the server's log until it says it runs, then keeps draining it.
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if line.contains("Running on") {
                let _ = ready_tx.send(());
            }
        }
    });
    if ready_rx.recv_timeout(Duration::from_secs(30)).is_err() {
        let _ = child.kill();
        bail!("moto_server on port {port} was not ready within 30 s");
    }
    Ok(child)
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
