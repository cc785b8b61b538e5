//! The Redis user the shipped compose file makes for reelq (`docker-compose.yml`'s redis
//! command: its keys and channels, no dangerous command but the durability check's two
//! reads) is enough to run reelq, and reaches nothing else: its rules, read from the file,
//! are given to a real Redis, and a worker, callbacks, the archiver and a producer run as it.

use std::time::Duration;

use reelq_e2e::{API_KEY, Deployment, PREFIX, prompts};
use reelq_producer::{Client, LedgerConfig};

use crate::deployment::{compose, words};

/// The ACL rules of compose's `--user reelq ...`, with `password` and the test's prefix.
fn compose_rules(password: &str) -> Vec<String> {
    let command = words(&compose()["services"]["redis"]["command"]).join(" ");
    let after = command
        .split_once("--user reelq ")
        .expect("compose makes a reelq user")
        .1;
    after
        .split_whitespace()
        .take_while(|word| !word.starts_with("--"))
        .map(|word| {
            word.trim_matches(|c| c == '"' || c == '\'')
                .replace("$$REDIS_PASSWORD", password)
                .replace("{reelq}", &format!("{{{PREFIX}}}"))
        })
        .collect()
}

#[tokio::test]
async fn the_shipped_redis_user_runs_reelq_and_reaches_nothing_else() {
    let mut deployment = Deployment::start(
        env!("CARGO_BIN_EXE_reelq-worker"),
        Duration::from_millis(50),
    )
    .await;
    let password = "a-long-random-redis-password";
    let rules = compose_rules(password);
    assert!(rules.contains(&"-@dangerous".to_owned()), "{rules:?}");
    let mut setuser = vec!["ACL", "SETUSER", "reelq"];
    setuser.extend(rules.iter().map(String::as_str));
    deployment.redis.command(&setuser).unwrap();
    let port = deployment.redis.port();
    deployment.redis_url = format!("redis://reelq:{password}@127.0.0.1:{port}/");
    deployment.extra_config = "[history]\ngrace = \"0s\"\nevery = \"100ms\"\n".into();

    // A producer and a worker (with its callbacks and the archiver) as the reelq user.
    let producer = Client::connect(&LedgerConfig::new(deployment.redis_url.clone(), PREFIX))
        .await
        .expect("the producer connects as reelq");
    let listener = deployment.callback_listener().await;
    let _worker = deployment.spawn_worker_task("w", API_KEY, Some(listener));
    let mut job_ids = deployment.enqueue_manifest(&prompts("as-reelq", 3)).await;
    let request: reelq_core::JobRequest = serde_json::from_value(serde_json::json!({
        "provider": deployment.provider.as_str(), "model": deployment.model(),
        "prompt": "enqueued as reelq",
    }))
    .unwrap();
    job_ids.push(producer.enqueue(request).await.expect("enqueued as reelq"));
    let records = deployment.settled(&job_ids).await;
    deployment.assert_stored_once(&records);

    // Nothing else: another key, another channel, a dangerous command.
    let client = redis::Client::open(deployment.redis_url.as_str()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    for command in [
        redis::cmd("SET").arg("someone-elses-key").arg("1").clone(),
        redis::cmd("PUBLISH")
            .arg("someone-elses-channel")
            .arg("1")
            .clone(),
        redis::cmd("FLUSHALL").clone(),
        redis::cmd("CONFIG")
            .arg("SET")
            .arg("appendfsync")
            .arg("no")
            .clone(),
    ] {
        let refused: redis::RedisResult<redis::Value> = command.query_async(&mut conn).await;
        let err = refused.expect_err("refused");
        assert!(
            err.to_string().to_lowercase().contains("noperm"),
            "{command:?}: {err}"
        );
    }
}
