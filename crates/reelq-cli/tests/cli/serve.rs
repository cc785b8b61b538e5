//! `reelq serve`: its token, and the videos it hands out.

use super::*;

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
    // A tenant's token an operator made: refused where its scopes end (403), and, like the
    // deployment's own, never logged.
    let tenant_token = deployment
        .client
        .create_token(
            "acme-reader",
            Some("acme".parse().unwrap()),
            vec![reelq_core::Scope::Read],
        )
        .await
        .unwrap();
    let forbidden = http
        .get(format!("http://{addr}/metrics"))
        .bearer_auth(&tenant_token)
        .send()
        .await
        .unwrap();
    assert_eq!(forbidden.status(), 403);
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
        logged
            .iter()
            .all(|line| !line.contains(SERVE_TOKEN) && !line.contains(&tenant_token)),
        "{logged:#?}"
    );
}
