//! Archived jobs, read from the command line and the API as live ones.

use super::*;

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
    // Billed from the archive: Redis holds none of these jobs now.
    let usage = reelq(&[
        "usage", "--from", &day, "--to", &day, "--by", "day", "--format", "json",
    ]);
    let usage: serde_json::Value = serde_json::from_str(&usage).unwrap();
    let row = &usage[0];
    assert_eq!(
        (
            &row["tenant"],
            &row["period"],
            &row["jobs"],
            &row["states"]["stored"]
        ),
        (
            &serde_json::json!("default"),
            &serde_json::json!(day),
            &serde_json::json!(3),
            &serde_json::json!(3)
        ),
        "{usage}"
    );
    assert!(row["generation_seconds"].as_u64().unwrap() > 0, "{usage}");
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
