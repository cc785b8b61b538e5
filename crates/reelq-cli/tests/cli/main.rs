//! The `reelq` command against a real Redis: what an operator types, what they read.

use std::process::Command;

use reelq_testkit::RedisServer;

mod history;
mod routes;
mod serve;
mod tenants;

fn reelq(redis: &RedisServer, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_reelq"))
        .args(["--redis-url", &redis.url(), "--prefix", "t"])
        .args(args)
        .output()
        .expect("reelq runs")
}

/// The API token the `serve` tests give `reelq serve`.
const SERVE_TOKEN: &str = "serve-test-token-0123456789";

/// `reelq serve`'s log (stderr), a line at a time.
type ServeLog = tokio::io::Lines<tokio::io::BufReader<tokio::process::ChildStderr>>;

/// Starts `reelq serve` over the deployment's Redis and store; returns it (killed when
/// dropped), where it listens, and its log from there on.
async fn serve(deployment: &reelq_e2e::Deployment) -> (tokio::process::Child, String, ServeLog) {
    use tokio::io::AsyncBufReadExt;
    let mut serve = tokio::process::Command::new(env!("CARGO_BIN_EXE_reelq"))
        .args([
            "--redis-url",
            &deployment.redis_url,
            "--prefix",
            reelq_e2e::PREFIX,
        ])
        .args(["serve", "--listen", "127.0.0.1:0", "--store"])
        .arg(deployment.store_dir())
        .env("REELQ_API_TOKEN", SERVE_TOKEN)
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("reelq serve starts");
    let mut lines = tokio::io::BufReader::new(serve.stderr.take().unwrap()).lines();
    loop {
        let line = lines
            .next_line()
            .await
            .unwrap()
            .expect("serve says where it listens");
        if let Some(addr) = line.strip_prefix("reelq api listening on ") {
            return (serve, addr.to_owned(), lines);
        }
    }
}

fn manifest(dir: &std::path::Path, lines: &[&str]) -> String {
    let path = dir.join("batch.jsonl");
    std::fs::write(&path, lines.join("\n")).unwrap();
    path.to_string_lossy().into_owned()
}

const KIE: &str = r#"{"provider":"kie","model":"kling-3.0/video","prompt":"a fox"}"#;
const EVOLINK: &str = r#"{"provider":"evolink","model":"kling-v3-text-to-video","prompt":"a reef","duration_s":12,"quality":"high"}"#;

#[test]
fn a_dry_run_prices_the_manifest_and_enqueues_nothing() {
    let redis = RedisServer::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = manifest(dir.path(), &[KIE, KIE, EVOLINK]);

    let output = reelq(&redis, &["batch", "submit", &path, "--dry-run"]);

    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}");
    // 2 x $0.35 (5 s at $0.07/s) and 12 s of evolink 1080p at $0.10/s.
    assert!(
        stdout.contains("3 jobs, estimated $1.90; nothing enqueued"),
        "{stdout}"
    );
    let stats = reelq(&redis, &["stats", "--json"]);
    let stats: serde_json::Value = serde_json::from_slice(&stats.stdout).unwrap();
    assert_eq!(stats["due_now"], 0);
}

#[test]
fn a_batch_is_submitted_reported_and_cancelled_from_the_command_line() {
    let redis = RedisServer::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = manifest(dir.path(), &[KIE, EVOLINK]);

    let submitted = reelq(
        &redis,
        &[
            "batch",
            "submit",
            &path,
            "--name",
            "nightly",
            "--priority",
            "low",
        ],
    );
    let stdout = String::from_utf8_lossy(&submitted.stdout).into_owned();
    assert!(submitted.status.success(), "{stdout}");
    let batch_id = stdout
        .split_whitespace()
        .nth(1)
        .expect("batch <id> enqueued ...");

    let stats = reelq(&redis, &["stats", "--json"]);
    let stats: serde_json::Value = serde_json::from_slice(&stats.stdout).unwrap();
    assert_eq!(stats["due_now"], 2);
    assert_eq!(stats["states"]["queued"], 2, "states by name: {stats}");

    // A page at a time: one job, then the other after the printed position.
    let page = |extra: &[&str]| -> serde_json::Value {
        let args = [
            &[
                "jobs",
                "list",
                "--state",
                "queued,failed",
                "--limit",
                "1",
                "--json",
            ],
            extra,
        ]
        .concat();
        serde_json::from_slice(&reelq(&redis, &args).stdout).unwrap()
    };
    let first = page(&[]);
    let after = first["next_cursor"]
        .as_str()
        .expect("a full page names the next")
        .to_owned();
    let second = page(&["--after", &after]);
    assert_ne!(first["data"][0]["job_id"], second["data"][0]["job_id"]);
    let table = reelq(&redis, &["jobs", "list", "--limit", "1"]);
    let table = String::from_utf8_lossy(&table.stdout).into_owned();
    assert!(
        table.contains("CREATED (UTC)") && table.contains("more: --after "),
        "{table}"
    );

    let cancelled = reelq(&redis, &["batch", "cancel", batch_id]);
    assert!(String::from_utf8_lossy(&cancelled.stdout).contains("2 jobs cancelled"));

    let report = reelq(&redis, &["batch", "report", batch_id, "--format", "csv"]);
    let csv = String::from_utf8_lossy(&report.stdout).into_owned();
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(
        lines[0],
        "job_id,tenant,state,route,provider,account,model,task_id,object_key,bytes,sha256,estimated_cost_usd,error_class,error"
    );
    assert_eq!(lines.len(), 3, "{csv}");
    assert!(
        lines[1..].iter().all(|line| line.contains(",cancelled,")),
        "{csv}"
    );
    assert!(
        lines[2].contains(",evolink,kling-v3-text-to-video,") && lines[2].contains(",1.200,"),
        "{csv}"
    );
}

#[test]
fn the_same_manifest_submitted_twice_is_one_batch_unless_asked_again() {
    let redis = RedisServer::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = manifest(dir.path(), &[KIE, EVOLINK]);
    let submit = |extra: &[&str]| {
        let output = reelq(&redis, &[&["batch", "submit", &path][..], extra].concat());
        assert!(output.status.success(), "{output:?}");
        String::from_utf8_lossy(&output.stdout).into_owned()
    };

    let first = submit(&[]);
    let retry = submit(&[]);
    let again = submit(&["--again"]);

    assert!(first.contains("enqueued 2 jobs"), "{first}");
    assert!(
        retry.contains("already submitted (2 jobs); nothing enqueued"),
        "{retry}"
    );
    let batch_of = |out: &str| {
        out.split_whitespace()
            .nth(1)
            .unwrap()
            .trim_end_matches(':')
            .to_owned()
    };
    assert_eq!(batch_of(&first), batch_of(&retry));
    assert!(again.contains("enqueued 2 jobs"), "{again}");
    assert_ne!(batch_of(&first), batch_of(&again));
    let stats = reelq(&redis, &["stats", "--json"]);
    let stats: serde_json::Value = serde_json::from_slice(&stats.stdout).unwrap();
    assert_eq!(stats["due_now"], 4);
}

#[tokio::test]
async fn verify_reads_stored_videos_back_and_names_the_ones_that_changed() {
    use reelq_e2e::{API_KEY, Deployment, PREFIX, prompts};
    let deployment = Deployment::start(
        "unused: the worker runs in this process",
        std::time::Duration::from_millis(50),
    )
    .await;
    let _worker = deployment.spawn_worker_task("w", API_KEY, None);
    let job_ids = deployment.enqueue_manifest(&prompts("verify", 3)).await;
    let records = deployment.settled(&job_ids).await;
    deployment.assert_stored_once(&records);
    let store = deployment.store_dir();
    let ids: Vec<String> = job_ids.iter().map(ToString::to_string).collect();
    let verify = || {
        Command::new(env!("CARGO_BIN_EXE_reelq"))
            .args(["--redis-url", &deployment.redis_url, "--prefix", PREFIX])
            .args(["verify", "--store", &store.to_string_lossy()])
            .args(&ids)
            .output()
            .expect("reelq runs")
    };

    let output = verify();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}");
    assert_eq!(stdout.matches("  ok  ").count(), 3, "{stdout}");
    assert!(stdout.contains("h264 "), "{stdout}");

    // One video altered in place (same length), one replaced by a page.
    let path = |i: usize| store.join(records[i].object_key.as_deref().unwrap());
    let mut altered = std::fs::read(path(0)).unwrap();
    let middle = altered.len() / 2;
    altered[middle] ^= 0xff;
    std::fs::write(path(0), altered).unwrap();
    std::fs::write(path(1), "<html>gone</html>").unwrap();

    let output = verify();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(2), "{stdout}");
    let line = |i: usize| {
        stdout
            .lines()
            .find(|line| line.starts_with(&ids[i]))
            .unwrap_or_default()
            .to_owned()
    };
    assert!(
        line(0).contains("BAD") && line(0).contains("sha256"),
        "{stdout}"
    );
    assert!(
        line(1).contains("BAD") && line(1).contains("bytes in the store"),
        "{stdout}"
    );
    assert!(line(2).contains("  ok  "), "{stdout}");
}

#[test]
fn output_into_a_closed_pipe_ends_quietly_and_the_version_names_the_command() {
    // The reader is gone before reelq writes: every write meets a broken pipe.
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let output = Command::new(env!("CARGO_BIN_EXE_reelq"))
        .arg("providers")
        .stdout(writer)
        .output()
        .expect("reelq runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(output.status.code(), Some(141), "as a SIGPIPE would end it");

    let version = Command::new(env!("CARGO_BIN_EXE_reelq"))
        .arg("--version")
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&version.stdout).starts_with("reelq "));
}

#[test]
fn a_typo_in_a_state_lists_the_states_and_an_empty_retry_is_refused() {
    let redis = RedisServer::start().unwrap();
    let typo = reelq(&redis, &["jobs", "list", "--state", "stord"]);
    let stderr = String::from_utf8_lossy(&typo.stderr);
    assert!(!typo.status.success());
    assert!(
        stderr.contains("stored") && stderr.contains("uncertain"),
        "{stderr}"
    );
    let empty = reelq(&redis, &["dlq", "retry"]);
    assert!(!empty.status.success());
    assert!(String::from_utf8_lossy(&empty.stderr).contains("nothing to retry"));
    let completions = reelq(&redis, &["completions", "bash"]);
    let script = String::from_utf8_lossy(&completions.stdout);
    assert!(
        script.contains("_reelq") && script.contains("providers"),
        "{script}"
    );
    let man = reelq(&redis, &["man"]);
    let page = String::from_utf8_lossy(&man.stdout);
    assert!(
        page.starts_with(".ie") || page.contains(".TH reelq"),
        "{page}"
    );
    let workers = reelq(&redis, &["workers"]);
    assert!(
        String::from_utf8_lossy(&workers.stdout).contains("no live workers"),
        "{workers:?}"
    );
}

// The simulator serves on this runtime's other thread while the test waits on the command.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn providers_check_probes_every_account_for_free_and_fails_on_a_refused_key() {
    let sim = reelq_sim::Simulator::start(
        "127.0.0.1:0".parse().unwrap(),
        reelq_sim::SimConfig::new("sk-good", std::time::Duration::ZERO),
    )
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("worker.toml");
    let account = |table: &str, key: &str| {
        format!(
            "[{table}]\nbase_url = \"{}\"\napi_key = \"{key}\"\n",
            sim.base_url()
        )
    };
    std::fs::write(
        &config,
        account("providers.kie", "sk-good")
            + &account("providers.openai", "sk-good")
            + &account("providers.evolink", "sk-good")
            + &account("accounts.kie_old", "sk-revoked").replace(
                "[accounts.kie_old]",
                "[accounts.kie_old]\ncontract = \"kie\"",
            ),
    )
    .unwrap();
    let check = |extra: &[&str]| {
        let mut command = Command::new(env!("CARGO_BIN_EXE_reelq"));
        command
            .args(["providers", "check", "--config", config.to_str().unwrap()])
            .args(extra);
        let output = command.output().expect("reelq runs");
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        (output.status.code(), stdout, stderr)
    };

    let (code, stdout, stderr) = check(&[]);
    assert_eq!(code, Some(1), "{stdout}{stderr}");
    let line = |account: &str| {
        stdout
            .lines()
            .find(|line| line.starts_with(&format!("{account} ")))
            .unwrap_or_else(|| panic!("no line for {account}: {stdout}"))
            .to_owned()
    };
    assert!(
        line("kie").contains("ok") && line("kie").contains("100000 credits left"),
        "{stdout}"
    );
    assert!(
        line("openai").contains("offers every live catalog model"),
        "{stdout}"
    );
    assert!(line("evolink").contains("key accepted"), "{stdout}");
    assert!(
        line("kie_old").contains("failed") && line("kie_old").contains("auth"),
        "{stdout}"
    );
    assert!(
        stderr.contains("1 of 4 accounts failed the check"),
        "{stderr}"
    );
    assert!(
        !stdout.contains("sk-good") && !stderr.contains("sk-revoked"),
        "keys never printed"
    );
    assert_eq!(sim.stats().creates, 0, "nothing created, nothing paid");

    let (code, stdout, _) = check(&["--account", "kie"]);
    assert_eq!(code, Some(0), "{stdout}");
    assert_eq!(stdout.lines().count(), 2, "the header and kie: {stdout}");
}

#[test]
fn every_read_prints_json_with_dash_o_json() {
    let redis = RedisServer::start().unwrap();
    let submitted = reelq(
        &redis,
        &[
            "submit",
            "--provider",
            "kie",
            "--model",
            "kling-3.0/video",
            "--prompt",
            "a fox",
        ],
    );
    assert!(submitted.status.success(), "{submitted:?}");
    let job_id = String::from_utf8_lossy(&submitted.stdout).trim().to_owned();
    let json = |args: &[&str]| -> serde_json::Value {
        let output = reelq(&redis, args);
        assert!(output.status.success(), "{args:?}: {output:?}");
        serde_json::from_slice(&output.stdout)
            .unwrap_or_else(|err| panic!("{args:?} printed no JSON ({err}): {output:?}"))
    };

    let status = json(&["status", &job_id, "-o", "json"]);
    assert_eq!(status["job_id"], job_id.as_str());
    let trace_id = job_id.parse::<reelq_core::JobId>().unwrap().trace_id();
    assert_eq!(status["trace_id"], trace_id.as_str());
    assert_eq!(
        json(&["jobs", "list", "-o", "json"])["data"][0]["job_id"],
        job_id.as_str()
    );
    assert_eq!(json(&["stats", "-o", "json"])["due_now"], 1);
    assert_eq!(json(&["dlq", "list", "-o", "json"]), serde_json::json!([]));
    assert_eq!(json(&["workers", "-o", "json"]), serde_json::json!([]));
    let catalog = json(&["providers", "-o", "json"]);
    let kie = catalog["models"]
        .as_array()
        .unwrap()
        .iter()
        .find(|row| row["model"] == "kling-3.0/video")
        .expect("the catalog's kie row");
    assert_eq!(kie["usd_per_second"]["standard"], 0.07);
    // One way to say it: `--json` is short for `-o json`, not another choice beside it.
    let both = reelq(&redis, &["stats", "-o", "table", "--json"]);
    assert!(!both.status.success());
}

#[test]
fn migrate_waits_for_older_workers_then_moves_the_ledger_once() {
    let redis = RedisServer::start().unwrap();
    // A ledger the release before wrote: schema 2, the spec in one field, the events in a
    // list, and one of its workers still live (its heartbeat names no schema).
    let job_id = reelq_core::JobId::new().to_string();
    let job = format!("{{t}}:job:{job_id}");
    let spec = r#"{"provider":"kie","model":"sora-2-text-to-video","prompt":"an old fox","duration_s":10,"aspect":"landscape","quality":"standard"}"#;
    let old_worker = r#"{"name":"old-replica","role":"all","version":"0.1.0","accounts":["kie"],"concurrency":8,"started_ms":1,"seen_ms":1}"#;
    for command in [
        vec!["SET", "{t}:schema", "2"],
        vec![
            "HSET", &job, "state", "queued", "fence", "0", "provider", "kie",
        ],
        vec![
            "HSET",
            &job,
            "spec",
            spec,
            "created_ms",
            "1",
            "updated_ms",
            "1",
        ],
        vec!["RPUSH", &format!("{{t}}:log:{job_id}"), "1 queued"],
        vec!["SET", "{t}:worker:old-replica", old_worker, "PX", "60000"],
        vec!["ZADD", "{t}:workers", "1", "old-replica"],
    ] {
        redis.command(&command).unwrap();
    }

    let refused = reelq(&redis, &["migrate"]);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success());
    assert!(
        stderr.contains("old-replica")
            && stderr.contains(&format!("schema {}", reelq_queue::LEDGER_SCHEMA)),
        "{stderr}"
    );
    let workers = reelq(&redis, &["workers"]);
    assert!(
        String::from_utf8_lossy(&workers.stdout).contains("SCHEMA"),
        "{workers:?}"
    );

    redis.command(&["DEL", "{t}:worker:old-replica"]).unwrap();
    let migrated = reelq(&redis, &["migrate", "-o", "json"]);
    assert!(migrated.status.success(), "{migrated:?}");
    let migrated: serde_json::Value = serde_json::from_slice(&migrated.stdout).unwrap();
    assert_eq!(
        migrated,
        serde_json::json!({"from": 2, "to": reelq_queue::LEDGER_SCHEMA, "records_seen": 1, "records_moved": 1})
    );
    let again = reelq(&redis, &["migrate"]);
    assert!(
        String::from_utf8_lossy(&again.stdout).contains("0 of 1 job records moved"),
        "{again:?}"
    );
    let status = reelq(&redis, &["status", &job_id, "-o", "json"]);
    let status: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(status["spec"]["prompt"], "an old fox");
    assert_eq!(status["history"], serde_json::json!(["1 queued"]));
}

#[test]
fn a_deprecated_model_is_taken_with_a_warning_and_a_retired_one_refused_naming_its_successor() {
    let redis = RedisServer::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let catalog = dir.path().join("models.toml");
    std::fs::write(
        &catalog,
        r#"
[[model]]
provider = "openai"
model = "sora-2"
durations = [4]
price = { standard = 0.10 }
status = "retired"
status_since = "2026-09-24"
replaced_by = "sora-2-pro"
source = "the provider's notice"

[[model]]
provider = "openai"
model = "sora-2-pro"
durations = [4]
price = { standard = 0.30 }
status = "deprecated"
status_since = "2026-09-01"
source = "the provider's notice"
"#,
    )
    .unwrap();
    let catalog = catalog.to_string_lossy().into_owned();
    let submit = |model: &str| {
        reelq(
            &redis,
            &[
                "--catalog",
                &catalog,
                "submit",
                "--provider",
                "openai",
                "--model",
                model,
                "--prompt",
                "a fox",
            ],
        )
    };

    let taken = submit("sora-2-pro");
    let stderr = String::from_utf8_lossy(&taken.stderr);
    assert!(taken.status.success(), "{stderr}");
    assert!(
        stderr.contains("warning: sora-2-pro of openai is deprecated since 2026-09-01"),
        "{stderr}"
    );

    let refused = submit("sora-2");
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success());
    assert!(
        stderr.contains("sora-2 of openai is retired since 2026-09-24; use sora-2-pro"),
        "{stderr}"
    );

    let listed = reelq(&redis, &["--catalog", &catalog, "providers"]);
    let listed = String::from_utf8_lossy(&listed.stdout);
    assert!(
        listed.contains("^ sora-2 of openai is retired since 2026-09-24; use sora-2-pro"),
        "{listed}"
    );
}
