//! Test harness: real servers on loopback, started per test and stopped on drop, so tests run
//! in parallel without shared state. A server that cannot start fails the test loudly.

mod redis_cluster;
mod redis_server;
mod s3_server;

pub use redis_cluster::RedisCluster;
pub use redis_server::{
    Backup, FailoverWatch, PowerLoss, RedisOptions, RedisServer, SENTINEL_MASTER, Sentinels,
};
pub use s3_server::{BUCKET, S3Server};

use std::time::Duration;

/// How long a test waits for an event before it fails. Generous, because CI machines are slow;
/// a passing test never waits this long.
pub const EVENT_TIMEOUT: Duration = Duration::from_secs(60);

/// Runs Prometheus's own linter (`promtool check metrics`, named by `PROMTOOL`, which
/// `scripts/test` unpacks) on a `/metrics` exposition; panics with its findings.
pub fn assert_promtool_passes(metrics: &str) {
    use std::io::Write;
    let promtool = std::env::var("PROMTOOL")
        .expect("PROMTOOL is not set: run scripts/test, which unpacks promtool into .tools");
    let mut promtool = std::process::Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("promtool runs");
    let mut stdin = promtool.stdin.take().expect("promtool's stdin");
    stdin.write_all(metrics.as_bytes()).expect("promtool reads");
    drop(stdin);
    let checked = promtool.wait_with_output().expect("promtool finishes");
    assert!(
        checked.status.success(),
        "promtool check metrics:\n{}{}",
        String::from_utf8_lossy(&checked.stdout),
        String::from_utf8_lossy(&checked.stderr)
    );
}
