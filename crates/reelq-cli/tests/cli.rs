//! The `reelq` command against a real Redis: what an operator types, what they read.

use std::process::Command;

use reelq_testkit::RedisServer;

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
        "job_id,state,provider,model,task_id,object_key,bytes,sha256,estimated_cost_usd,error_class,error"
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
fn serve_refuses_an_empty_or_short_token_instead_of_switching_auth_off() {
    let redis = RedisServer::start().unwrap();
    for (token, says) in [
        ("", "the API token is empty"),
        ("dev-token", "fewer than 16"),
    ] {
        let output = Command::new(env!("CARGO_BIN_EXE_reelq"))
            .args(["--redis-url", &redis.url(), "--prefix", "t"])
            .args(["serve", "--listen", "127.0.0.1:0"])
            .env("REELQ_API_TOKEN", token)
            .output()
            .expect("reelq runs");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "token {token:?}: {stderr}");
        assert!(stderr.contains(says), "token {token:?}: {stderr}");
        assert!(!stderr.contains("listening"), "{stderr}");
    }
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

#[tokio::test]
async fn serve_hands_out_stored_videos_whole_or_by_range() {
    use reelq_e2e::{API_KEY, Deployment, prompts};
    let deployment = Deployment::start(
        "unused: the worker runs in this process",
        std::time::Duration::from_millis(50),
    )
    .await;
    let _worker = deployment.spawn_worker_task("w", API_KEY, None);
    let job_id = deployment.enqueue_manifest(&prompts("served", 1)).await[0];
    let record = deployment.settled(&[job_id]).await.remove(0);
    let video = deployment
        .sim
        .video(record.task_id.as_deref().unwrap())
        .unwrap();

    let (_serve, addr, mut lines) = serve(&deployment).await;
    let http = reqwest::Client::new();
    let get = |path: String, range: Option<&str>| {
        let mut request = http
            .get(format!("http://{addr}{path}"))
            .bearer_auth(SERVE_TOKEN);
        if let Some(range) = range {
            request = request.header("range", range);
        }
        request.send()
    };

    let resource: serde_json::Value = get(format!("/v1/jobs/{job_id}"), None)
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let link = resource["video_url"]
        .as_str()
        .expect("a stored job has a link");
    assert_eq!(link, format!("/v1/jobs/{job_id}/content"));

    let whole = get(link.to_owned(), None).await.unwrap();
    assert_eq!(whole.status(), 200);
    assert_eq!(whole.headers()["accept-ranges"], "bytes");
    assert!(whole.bytes().await.unwrap() == video);

    let part = get(link.to_owned(), Some("bytes=10-19")).await.unwrap();
    assert_eq!(part.status(), 206);
    assert_eq!(
        part.headers()["content-range"],
        format!("bytes 10-19/{}", video.len()).as_str()
    );
    assert!(part.bytes().await.unwrap() == video[10..20]);
    let tail = get(link.to_owned(), Some("bytes=-8")).await.unwrap();
    assert!(tail.bytes().await.unwrap() == video[video.len() - 8..]);

    let past_the_end = format!("bytes={}-", video.len() + 100);
    let refused = get(link.to_owned(), Some(&past_the_end)).await.unwrap();
    assert_eq!(refused.status(), 416);
    let several = get(link.to_owned(), Some("bytes=0-1,5-6")).await.unwrap();
    assert_eq!(several.status(), 416);
    let unknown = get("/v1/jobs/01ARZ3NDEKTSV4RRFFQ69G5FAV/content".into(), None)
        .await
        .unwrap();
    assert_eq!(unknown.status(), 404);
    let anonymous = reqwest::get(format!("http://{addr}{link}")).await.unwrap();
    assert_eq!(
        anonymous.status(),
        401,
        "the same token as the rest of the API"
    );
    // Its /metrics (behind the token) counts the requests by route pattern, and promtool
    // (as for the worker's) finds nothing wrong with it.
    let metrics = get("/metrics".into(), None).await.unwrap();
    assert_eq!(metrics.status(), 200);
    let metrics = metrics.text().await.unwrap();
    assert!(
        metrics.contains(
            r#"reelq_http_requests_total{route="/v1/jobs/{job_id}/content",method="GET",status="206"} 2"#
        ),
        "{metrics}"
    );
    reelq_testkit::assert_promtool_passes(&metrics);
    // Probes answer without the token, one word each.
    for (path, word) in [("/healthz", "ok"), ("/readyz", "ready")] {
        let probe = reqwest::get(format!("http://{addr}{path}")).await.unwrap();
        assert_eq!(
            (probe.status().as_u16(), probe.text().await.unwrap()),
            (200, word.into())
        );
    }
    // The access log (JSON on stderr) has every request, the refused one at warn, and
    // never a token.
    let mut logged = Vec::new();
    while !logged.iter().any(|line: &String| line.contains("/readyz")) {
        let line = tokio::time::timeout(reelq_testkit::EVENT_TIMEOUT, lines.next_line())
            .await
            .expect("serve logs its requests")
            .unwrap()
            .expect("serve is running");
        logged.push(line);
    }
    let refused = logged
        .iter()
        .find(|line| line.contains("\"status\":401"))
        .expect("the refused request is logged");
    let refused: serde_json::Value = serde_json::from_str(refused).unwrap();
    assert_eq!(refused["level"], "WARN", "{refused}");
    assert_eq!(refused["path"], link);
    assert!(
        logged.iter().all(|line| !line.contains(SERVE_TOKEN)),
        "{logged:#?}"
    );
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
        stderr.contains("old-replica") && stderr.contains("schema 3"),
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
        serde_json::json!({"from": 2, "to": 3, "records_seen": 1, "records_moved": 1})
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

#[tokio::test]
async fn archived_jobs_read_from_the_command_line_and_the_api_as_live_ones() {
    use reelq_e2e::{API_KEY, Deployment, PREFIX, prompts};
    let mut deployment = Deployment::start(
        "unused: the worker runs in this process",
        std::time::Duration::from_millis(50),
    )
    .await;
    let store = deployment.store_dir();
    deployment.extra_config = "[history]\ngrace = \"0s\"\nevery = \"100ms\"\n".into();
    let history = reelq_storage::HistoryStore::open(&reelq_storage::StoreConfig {
        url: store.to_string_lossy().into_owned(),
        part_size: 8 * 1024 * 1024,
        s3: Default::default(),
    })
    .unwrap();
    deployment.client = deployment.client.clone().with_history(history);
    let _worker = deployment.spawn_worker_task("w", API_KEY, None);
    let job_ids = deployment.enqueue_manifest(&prompts("archived", 3)).await;
    let records = deployment.settled(&job_ids).await;
    deployment.assert_stored_once(&records);
    tokio::time::timeout(reelq_testkit::EVENT_TIMEOUT, async {
        while deployment.client.archive_status().await.unwrap().archived < 3 {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("archived in time");
    assert!(deployment.ledger.job(job_ids[0]).await.unwrap().is_none());

    let store_arg = store.to_string_lossy().into_owned();
    let reelq = |args: &[&str]| {
        let output = Command::new(env!("CARGO_BIN_EXE_reelq"))
            .args(["--redis-url", &deployment.redis_url, "--prefix", PREFIX])
            .args(["--store", &store_arg])
            .args(args)
            .output()
            .expect("reelq runs");
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        assert!(
            output.status.success(),
            "reelq {args:?}: {stdout}{}",
            String::from_utf8_lossy(&output.stderr)
        );
        stdout
    };
    let id = job_ids[0].to_string();
    let batch = records[0].batch.unwrap().to_string();
    let day = reelq_storage::history::day_of(job_ids[0]).to_string();

    assert!(reelq(&["status", &id]).contains("stored"));
    let report = reelq(&["batch", "report", &batch, "--format", "json"]);
    let report: serde_json::Value = serde_json::from_str(&report).unwrap();
    assert_eq!(report["jobs"].as_array().unwrap().len(), 3, "{report}");
    assert_eq!(report["batch"]["total"], 3);
    let ids: Vec<String> = job_ids.iter().map(ToString::to_string).collect();
    let verify = reelq(
        &[
            &["verify"],
            &ids.iter().map(String::as_str).collect::<Vec<_>>()[..],
        ]
        .concat(),
    );
    assert_eq!(verify.matches("  ok  ").count(), 3, "{verify}");
    let listed = reelq(&["jobs", "list", "--day", &day, "-o", "json"]);
    let listed: serde_json::Value = serde_json::from_str(&listed).unwrap();
    assert_eq!(listed["data"].as_array().unwrap().len(), 3, "{listed}");
    reelq(&["watch", &id]);
    let stats = reelq(&["stats"]);
    assert!(
        stats.contains("history    3 finished jobs archived to the store"),
        "{stats}"
    );

    // The HTTP API answers for an archived job as for a live one, video included.
    let (_serve, addr, _log) = serve(&deployment).await;
    let http = reqwest::Client::new();
    let get = |path: String| {
        http.get(format!("http://{addr}{path}"))
            .bearer_auth(SERVE_TOKEN)
            .send()
    };
    let resource: serde_json::Value = get(format!("/v1/jobs/{id}"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(resource["state"], "stored", "{resource}");
    // A day's archived jobs, a page at a time.
    let page = |cursor: Option<String>| {
        let mut path = format!("/v1/jobs?day={day}&limit=2");
        if let Some(cursor) = cursor {
            path += &format!("&cursor={cursor}");
        }
        let request = get(path);
        async move {
            let page: serde_json::Value = request.await.unwrap().json().await.unwrap();
            let ids: Vec<String> = page["data"]
                .as_array()
                .unwrap()
                .iter()
                .map(|job| job["job_id"].as_str().unwrap().to_owned())
                .collect();
            (ids, page["next_cursor"].as_str().map(str::to_owned))
        }
    };
    let (first, next) = page(None).await;
    let (second, last) = page(next).await;
    let mut by_id = ids.clone();
    by_id.sort();
    assert_eq!(
        [first, second].concat(),
        by_id,
        "every archived job once, by id"
    );
    assert_eq!(last, None);
    let refused = get("/v1/jobs?day=yesterday".into()).await.unwrap();
    assert_eq!(refused.status(), 400);
    let content = get(format!("/v1/jobs/{id}/content")).await.unwrap();
    assert_eq!(content.status(), 200);
    let video = deployment
        .sim
        .video(records[0].task_id.as_deref().unwrap())
        .unwrap();
    assert!(content.bytes().await.unwrap() == video);
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
