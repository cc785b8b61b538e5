//! Test harness: real servers on loopback, started per test and stopped on drop, so tests run
//! in parallel without shared state. A server that cannot start fails the test loudly.

mod redis_server;
mod s3_server;

pub use redis_server::{
    FailoverWatch, PowerLoss, RedisOptions, RedisServer, SENTINEL_MASTER, Sentinels,
};
pub use s3_server::{BUCKET, S3Server};

use std::time::Duration;

/// How long a test waits for an event before it fails. Generous, because CI machines are slow;
/// a passing test never waits this long.
pub const EVENT_TIMEOUT: Duration = Duration::from_secs(60);
