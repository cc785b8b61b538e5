//! The HTTP enqueue API over real HTTP on loopback, against a real Redis.

use reelq_core::{ApiToken, JobState};
use reelq_producer::{Client, Durability, LedgerConfig};
use reelq_testkit::{RedisOptions, RedisServer};
use serde_json::{Value, json};

pub(super) const TOKEN: &str = "api-test-token-0123456789";

pub(super) struct Api {
    pub(super) base: String,
    pub(super) http: reqwest::Client,
    pub(super) client: Client,
    pub(super) redis: RedisServer,
}

pub(super) async fn api() -> Api {
    let redis = RedisServer::start().unwrap();
    let config = LedgerConfig::new(redis.url(), "api");
    api_on(redis, config, reelq_core::Catalog::built_in().clone()).await
}

async fn api_on(redis: RedisServer, config: LedgerConfig, catalog: reelq_core::Catalog) -> Api {
    let client = Client::connect(&config)
        .await
        .unwrap()
        .with_catalog(catalog);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let app = reelq_producer::api(client.clone(), ApiToken::new(TOKEN).unwrap(), None);
    tokio::spawn(async move { axum::serve(listener, app).await });
    Api {
        base,
        http: reqwest::Client::new(),
        client,
        redis,
    }
}

impl Api {
    pub(super) async fn send(&self, request: reqwest::RequestBuilder) -> (u16, Value) {
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let body = response.json().await.unwrap_or(Value::Null);
        (status, body)
    }

    pub(super) async fn post(&self, path: &str, body: String, key: Option<&str>) -> (u16, Value) {
        let mut request = self
            .http
            .post(format!("{}{path}", self.base))
            .bearer_auth(TOKEN)
            .body(body);
        if let Some(key) = key {
            request = request.header("Idempotency-Key", key);
        }
        self.send(request).await
    }

    pub(super) async fn get(&self, path: &str) -> (u16, Value) {
        self.send(
            self.http
                .get(format!("{}{path}", self.base))
                .bearer_auth(TOKEN),
        )
        .await
    }
}

pub(super) fn job(prompt: &str) -> Value {
    json!({ "provider": "kie", "model": "kling-3.0/video", "prompt": prompt })
}

#[tokio::test]
async fn every_route_needs_the_bearer_token() {
    let api = api().await;
    for token in [None, Some("wrong-token")] {
        let mut request = api
            .http
            .post(format!("{}/v1/jobs", api.base))
            .body(job("x").to_string());
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let (status, body) = api.send(request).await;
        assert_eq!((status, body["code"].as_str()), (401, Some("unauthorized")));
    }
    let response = api
        .http
        .get(format!("{}/v1/jobs/x", api.base))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    assert_eq!(
        response.headers()["www-authenticate"],
        "Bearer realm=\"reelq\""
    );
}

#[tokio::test]
async fn every_error_has_one_shape_and_an_unreachable_ledger_is_503() {
    let mut api = api().await;
    let (status, body) = api.get("/v1/nothing-here").await;
    assert_eq!((status, body["code"].as_str()), (404, Some("not_found")));
    let (status, body) = api
        .send(
            api.http
                .delete(format!("{}/v1/jobs", api.base))
                .bearer_auth(TOKEN),
        )
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (405, Some("method_not_allowed"))
    );

    api.redis.stop();
    let response = api
        .http
        .post(format!("{}/v1/jobs", api.base))
        .bearer_auth(TOKEN)
        .body(job("while redis is down").to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 503);
    assert_eq!(response.headers()["retry-after"], "1");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["code"], "unavailable", "{body}");
}

#[tokio::test]
async fn a_job_is_enqueued_and_read_back() {
    let api = api().await;
    let (status, body) = api.post("/v1/jobs", job("a fox").to_string(), None).await;
    assert_eq!(status, 201, "{body}");
    let job_id = body["job_ids"][0].as_str().unwrap().to_owned();
    let (status, record) = api.get(&format!("/v1/jobs/{job_id}")).await;
    assert_eq!((status, record["state"].as_str()), (200, Some("queued")));
    assert_eq!(record["spec"]["duration_s"], 5);
    let (status, _) = api.get("/v1/jobs/01M8000000000000000000000X").await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn bad_bodies_are_refused_with_the_reason() {
    let api = api().await;
    let (status, body) = api.post("/v1/jobs", "{not json".into(), None).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (400, Some("malformed_json"))
    );
    let bad =
        json!({ "provider": "kie", "model": "kling-3.0/video", "prompt": "p", "duration_s": 25 });
    let (status, body) = api.post("/v1/jobs", bad.to_string(), None).await;
    assert_eq!((status, body["code"].as_str()), (400, Some("invalid_job")));
    assert_eq!(body["detail"]["field"], "duration_s");
    for wrong_type in [json!(-10), json!("8"), json!(1.5)] {
        let bad = json!({ "provider": "kie", "model": "kling-3.0/video", "prompt": "p", "duration_s": wrong_type });
        let (status, body) = api.post("/v1/jobs", bad.to_string(), None).await;
        assert_eq!(
            (status, body["code"].as_str()),
            (400, Some("invalid_job")),
            "{body}"
        );
        assert_eq!(body["detail"]["field"], "duration_s", "{body}");
    }
    let typed = format!(
        "{}\n{{\"provider\":\"kie\",\"duration_s\":\"8\"}}\n",
        job("a")
    );
    let (status, body) = api.post("/v1/batches", typed, None).await;
    assert_eq!(status, 400);
    assert_eq!(body["detail"][0]["line"], 2);
    assert!(
        body["detail"][0]["message"]
            .as_str()
            .unwrap()
            .starts_with("duration_s: "),
        "{body}"
    );
    let manifest = format!("{}\n{{\"provider\":\"nope\"}}\n{}\n", job("a"), job("b"));
    let (status, body) = api.post("/v1/batches", manifest, None).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (400, Some("invalid_batch"))
    );
    assert_eq!(body["detail"][0]["line"], 2);
    assert!(
        api.client
            .jobs_in_state(JobState::Queued, 10)
            .await
            .unwrap()
            .is_empty(),
        "nothing enqueued"
    );
}

#[tokio::test]
async fn a_retried_post_with_the_same_idempotency_key_enqueues_once() {
    let api = api().await;
    let (first_status, first) = api
        .post("/v1/jobs", job("once").to_string(), Some("key-1"))
        .await;
    let (again_status, again) = api
        .post("/v1/jobs", job("once").to_string(), Some("key-1"))
        .await;
    assert_eq!((first_status, again_status), (201, 200));
    assert_eq!(first["job_ids"], again["job_ids"]);
    assert_eq!(
        api.client
            .jobs_in_state(JobState::Queued, 10)
            .await
            .unwrap()
            .len(),
        1
    );
}

#[tokio::test]
async fn an_idempotency_key_is_bound_to_its_request_and_its_endpoint() {
    let api = api().await;
    let manifest = format!("{}\n{}\n", job("a"), job("b"));
    let (status, first) = api.post("/v1/batches", manifest, Some("k")).await;
    assert_eq!(status, 201, "{first}");

    // The same jobs written as a JSON array are the same request: the first receipt.
    let array = json!([job("a"), job("b")]).to_string();
    let (status, replay) = api.post("/v1/batches", array, Some("k")).await;
    assert_eq!(status, 200, "{replay}");
    assert_eq!(
        (&replay["batch_id"], &replay["job_ids"]),
        (&first["batch_id"], &first["job_ids"])
    );

    // Another request under the key is refused, naming it, and enqueues nothing.
    let other = format!("{}\n", job("c"));
    let (status, refused) = api.post("/v1/batches", other, Some("k")).await;
    assert_eq!(status, 422, "{refused}");
    assert_eq!(refused["code"], "idempotency_key_reused");
    assert_eq!(refused["detail"]["field"], "Idempotency-Key");
    assert!(
        refused["detail"]["message"]
            .as_str()
            .unwrap()
            .contains("\"k\""),
        "{refused}"
    );

    // The key on the other endpoint is another key.
    let (status, single) = api.post("/v1/jobs", job("d").to_string(), Some("k")).await;
    assert_eq!(status, 201, "{single}");
    let queued = api
        .client
        .jobs_in_state(JobState::Queued, 10)
        .await
        .unwrap();
    assert_eq!(queued.len(), 3, "a, b and d, each once");
}

#[tokio::test]
async fn a_batch_of_several_chunks_is_answered_with_its_receipt_and_queued_whole() {
    let api = api().await;
    let n_jobs = 2 * reelq_queue::ENQUEUE_CHUNK + 1;
    let manifest: String = (0..n_jobs)
        .map(|i| format!("{}\n", job(&format!("p{i}"))))
        .collect();
    let (status, receipt) = api.post("/v1/batches", manifest.clone(), Some("big")).await;
    assert_eq!(status, 201, "{receipt}");
    assert_eq!(receipt["job_ids"].as_array().unwrap().len(), n_jobs);
    let batch_id = receipt["batch_id"].as_str().unwrap();
    let (status, summary) = api.get(&format!("/v1/batches/{batch_id}")).await;
    assert_eq!(
        (status, summary["jobs"].as_u64()),
        (200, Some(n_jobs as u64))
    );
    assert_eq!(summary["states"]["queued"], n_jobs);
    let (status, replay) = api.post("/v1/batches", manifest, Some("big")).await;
    assert_eq!(status, 200);
    assert_eq!(replay["job_ids"], receipt["job_ids"], "in manifest order");
}

#[tokio::test]
async fn a_json_array_batch_is_enqueued_and_summarised() {
    let api = api().await;
    let batch = json!([job("one"), job("two"), job("three")]);
    let (status, body) = api.post("/v1/batches", batch.to_string(), None).await;
    assert_eq!(status, 201, "{body}");
    let batch_id = body["batch_id"].as_str().unwrap();
    assert_eq!(body["job_ids"].as_array().unwrap().len(), 3);
    let (status, summary) = api.get(&format!("/v1/batches/{batch_id}")).await;
    assert_eq!(status, 200);
    assert_eq!(
        (summary["jobs"].clone(), summary["states"].clone()),
        (json!(3), json!({ "queued": 3 }))
    );
}

#[tokio::test]
async fn a_batch_takes_its_options_in_the_query_and_lists_its_jobs_page_by_page() {
    let api = api().await;
    let batch = json!([job("one"), job("two"), job("three")]).to_string();
    let options = "name=nightly&budget_usd=2.5&priority=low&start_after=2099-01-01T00:00:00Z";
    let (status, body) = api
        .post(&format!("/v1/batches?{options}"), batch.clone(), None)
        .await;
    assert_eq!(status, 201, "{body}");
    let batch_id = body["batch_id"].as_str().unwrap().to_owned();
    let (_, summary) = api.get(&format!("/v1/batches/{batch_id}")).await;
    assert_eq!(
        (&summary["name"], &summary["budget_usd"]),
        (&json!("nightly"), &json!(2.5))
    );
    let info = api.client.batch_info(batch_id.parse().unwrap()).await;
    let info = info.unwrap().unwrap();
    assert!(info.low_priority && info.start_after_ms == Some(4_070_908_800_000));

    let mut seen = Vec::new();
    let mut path = format!("/v1/batches/{batch_id}/jobs?limit=2");
    loop {
        let (status, page) = api.get(&path).await;
        assert_eq!(status, 200, "{page}");
        seen.extend(
            page["data"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r["job_id"].clone()),
        );
        match page["next_cursor"].as_str() {
            Some(cursor) => path = format!("/v1/batches/{batch_id}/jobs?limit=2&cursor={cursor}"),
            None => break,
        }
    }
    assert_eq!(
        seen,
        body["job_ids"].as_array().unwrap().clone(),
        "each job once, in order"
    );

    for (option, field) in [
        ("budget_usd=-1", "budget_usd"),
        ("start_after=yesterday", "start_after"),
        ("notify_url=ftp://example.com/x", "notify_url"),
    ] {
        let (status, refused) = api
            .post(&format!("/v1/batches?{option}"), batch.clone(), None)
            .await;
        assert_eq!(
            (status, &refused["detail"]["field"]),
            (400, &json!(field)),
            "{refused}"
        );
    }
    let (status, refused) = api.post("/v1/batches?colour=red", batch, None).await;
    assert_eq!((status, &refused["code"]), (400, &json!("invalid_query")));
    let (status, _) = api
        .get(&format!("/v1/batches/{}/jobs", reelq_core::BatchId::new()))
        .await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn an_enqueue_no_replica_acknowledged_is_503_and_its_retry_lands_once() {
    let primary = RedisServer::start_with(RedisOptions {
        appendfsync: "everysec",
        ..RedisOptions::default()
    })
    .unwrap();
    let mut replica = primary.start_replica().unwrap();
    let config = LedgerConfig {
        durability: Durability::Replicas { n: 1 },
        replica_wait: std::time::Duration::from_millis(200),
        ..LedgerConfig::new(primary.url(), "api")
    };
    let api = api_on(primary, config, reelq_core::Catalog::built_in().clone()).await;
    let job = json!({"provider": "kie", "model": "kling-3.0/video", "prompt": "a gull"});

    replica.stop();
    let (status, body) = api.post("/v1/jobs", job.to_string(), Some("k-1")).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (503, Some("not_durable")),
        "{body}"
    );

    replica.start_again().unwrap();
    // As a client does: retry under the key while answered 503, after its Retry-After (on a
    // loaded machine the replica's first acknowledgements can miss the 200 ms wait).
    let mut tries = 0;
    let (status, first) = loop {
        let (status, body) = api.post("/v1/jobs", job.to_string(), Some("k-1")).await;
        tries += 1;
        if status != 503 || tries == 10 {
            break (status, body);
        }
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    };
    assert!(
        status == 200 || status == 201,
        "{status} {first} after {tries} tries"
    );
    let (_, again) = api.post("/v1/jobs", job.to_string(), Some("k-1")).await;
    assert_eq!(first["job_id"], again["job_id"], "one job under the key");
}

#[tokio::test]
async fn a_queued_job_is_cancelled_over_http_and_an_ended_one_is_a_conflict() {
    let api = api().await;
    let (_, created) = api
        .post("/v1/jobs", job("cancel me").to_string(), None)
        .await;
    let job_id = created["job_ids"][0].as_str().unwrap().to_owned();
    let (status, record) = api
        .post(&format!("/v1/jobs/{job_id}/cancel"), String::new(), None)
        .await;
    assert_eq!((status, record["state"].as_str()), (200, Some("cancelled")));
    let (status, body) = api
        .post(&format!("/v1/jobs/{job_id}/cancel"), String::new(), None)
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (409, Some("not_cancellable"))
    );
}

#[tokio::test]
async fn a_created_job_is_answered_as_its_resource_and_jobs_are_listed_page_by_page() {
    let api = api().await;
    let response = api
        .http
        .post(format!("{}/v1/jobs", api.base))
        .bearer_auth(TOKEN)
        .body(job("a kite over dunes").to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    let created: Value = response.json().await.unwrap();
    let job_id = created["job_id"].as_str().unwrap();
    assert_eq!(location, format!("/v1/jobs/{job_id}"));
    assert_eq!(
        (created["state"].as_str(), &created["job_ids"][0]),
        (Some("queued"), &json!(job_id))
    );
    let (status, fetched) = api.get(&location).await;
    assert_eq!((status, &fetched["job_id"]), (200, &created["job_id"]));

    let lines: Vec<String> = (0..6)
        .map(|n| job(&format!("scene {n}")).to_string())
        .collect();
    let (status, batch) = api.post("/v1/batches", lines.join("\n"), None).await;
    assert_eq!(status, 201, "{batch}");

    // Seven queued jobs, three at a time: every one once, newest first, then no cursor.
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let path = match &cursor {
            Some(cursor) => format!("/v1/jobs?state=queued&limit=3&cursor={cursor}"),
            None => "/v1/jobs?state=queued&limit=3".to_owned(),
        };
        let (status, page) = api.get(&path).await;
        assert_eq!(status, 200, "{page}");
        pages += 1;
        seen.extend(
            page["data"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r["job_id"].clone()),
        );
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
    }
    assert_eq!((seen.len(), pages), (7, 3), "{seen:?}");
    let unique: std::collections::BTreeSet<String> = seen
        .iter()
        .map(|id| id.as_str().unwrap().to_owned())
        .collect();
    assert_eq!(unique.len(), 7);

    let (_, none) = api.get("/v1/jobs?state=stored,failed").await;
    assert_eq!(none["data"], json!([]));
    let (status, err) = api.get("/v1/jobs?state=stord").await;
    assert_eq!((status, err["code"].as_str()), (400, Some("invalid_query")));
    assert!(
        err["detail"].as_str().unwrap().starts_with("state:"),
        "{err}"
    );
    let (status, _) = api.get("/v1/jobs?limit=0").await;
    assert_eq!(status, 400);
}

#[tokio::test]
async fn a_deprecated_model_is_taken_with_a_warning_and_a_retired_one_refused() {
    let catalog = reelq_core::Catalog::built_in()
        .with_file(
            r#"
[[model]]
provider = "kie"
model = "sora-2-text-to-video"
durations = [10]
price = { standard = 0.015 }
status = "deprecated"
status_since = "2026-10-01"
replaced_by = "kling/v2-1-master-text-to-video"
source = "the provider's notice"

[[model]]
provider = "kie"
model = "sora-2-pro-text-to-video"
durations = [10]
price = { standard = 0.05 }
status = "retired"
source = "the provider's notice"
"#,
            "models.toml",
        )
        .unwrap();
    let redis = RedisServer::start().unwrap();
    let config = LedgerConfig::new(redis.url(), "api");
    let api = api_on(redis, config, catalog).await;

    let deprecated =
        json!({ "provider": "kie", "model": "sora-2-text-to-video", "prompt": "a fox" });
    let (status, body) = api.post("/v1/jobs", deprecated.to_string(), None).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(
        body["warnings"],
        json!([
            "sora-2-text-to-video of kie is deprecated since 2026-10-01; use kling/v2-1-master-text-to-video"
        ])
    );
    let retired =
        json!({ "provider": "kie", "model": "sora-2-pro-text-to-video", "prompt": "a fox" });
    let (status, body) = api.post("/v1/jobs", retired.to_string(), None).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["code"], "invalid_job");
    assert_eq!(body["detail"]["field"], "model");
    assert_eq!(
        body["detail"]["message"],
        "model sora-2-pro-text-to-video of kie is retired"
    );
}

#[tokio::test]
async fn an_oversized_body_is_refused_in_the_apis_one_error_shape() {
    let api = api().await;
    let huge = format!(
        r#"{{"provider":"kie","model":"kling-3.0/video","prompt":"{}"}}"#,
        "a".repeat(33 * 1024 * 1024)
    );
    for path in ["/v1/jobs", "/v1/batches"] {
        let (status, body) = api.post(path, huge.clone(), None).await;
        assert_eq!(status, 413, "{path}: {body}");
        assert_eq!(body["code"], "body_too_large", "{path}: {body}");
        assert_eq!(body["detail"], "the body is over 32 MiB");
    }
}
