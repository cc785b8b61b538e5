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

/// A catalog route (TOML) named `name` selling Kling from kie (`kling-3.0/video`, first) and
/// fal (Kling 2.6 Pro, next), with `settings` (e.g. `patience_s = 0`) written into it: the
/// route the ledger's and the workers' route tests share.
pub fn kie_then_fal_route(name: &str, settings: &str) -> String {
    format!(
        "[[route]]\nname = \"{name}\"\n{settings}\n\
         [[route.candidate]]\nprovider = \"kie\"\nmodel = \"kling-3.0/video\"\n\
         [[route.candidate]]\nprovider = \"fal\"\nmodel = \"fal-ai/kling-video/v2.6/pro/text-to-video\"\n\n"
    )
}

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
