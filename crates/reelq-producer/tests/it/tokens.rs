//! Tokens an operator makes for producers: bound to a tenant and scopes, kept only as their
//! hash, revocable; a tenant's token sees its own jobs and batches only (another's answer
//! 404, as if they did not exist).

use reelq_core::Scope;
use serde_json::{Value, json};

use crate::api::{Api, api, job};

impl Api {
    /// `method path` with `token`, and `body` as JSON if given.
    pub(crate) async fn as_token(
        &self,
        token: &str,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        self.send(request).await
    }
}

#[tokio::test]
async fn a_tenants_token_enqueues_for_its_tenant_and_sees_nothing_of_another() {
    let api = api().await;
    let make = |name: &'static str, tenant: Option<&str>, scopes: Vec<Scope>| {
        let client = api.client.clone();
        let tenant = tenant.map(|tenant| tenant.parse().unwrap());
        async move { client.create_token(name, tenant, scopes).await.unwrap() }
    };
    let acme = make(
        "acme-backend",
        Some("acme"),
        vec![Scope::Enqueue, Scope::Read],
    )
    .await;
    let beta = make(
        "beta-backend",
        Some("beta"),
        vec![Scope::Enqueue, Scope::Read],
    )
    .await;
    let reader = make("acme-dashboard", Some("acme"), vec![Scope::Read]).await;
    let ops = make("ops", None, vec![Scope::Read, Scope::Operate]).await;
    assert!(
        api.client
            .create_token("ops", None, vec![Scope::Read])
            .await
            .is_err(),
        "names are unique"
    );
    let (get, post) = (reqwest::Method::GET, reqwest::Method::POST);

    // Enqueued with acme's token: acme's job, whether or not the request names it.
    let (status, created) = api
        .as_token(&acme, post.clone(), "/v1/jobs", Some(job("a lighthouse")))
        .await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["spec"]["tenant"], "acme");
    let acme_job = created["job_id"].as_str().unwrap().to_owned();
    let mut other = job("not mine to make");
    other["tenant"] = json!("beta");
    let (status, refused) = api
        .as_token(&acme, post.clone(), "/v1/jobs", Some(other))
        .await;
    assert_eq!(
        (status, &refused["detail"]["field"]),
        (400, &json!("tenant"))
    );
    let (status, batch) = api
        .as_token(
            &acme,
            post.clone(),
            "/v1/batches",
            Some(json!([job("one"), job("two")])),
        )
        .await;
    assert_eq!(status, 201, "{batch}");
    let acme_batch = batch["batch_id"].as_str().unwrap().to_owned();

    // beta's token: acme's job and batch do not exist for it, and its list holds none.
    for path in [
        format!("/v1/jobs/{acme_job}"),
        format!("/v1/jobs/{acme_job}/content"),
        format!("/v1/batches/{acme_batch}"),
        format!("/v1/batches/{acme_batch}/jobs"),
    ] {
        let (status, _) = api.as_token(&beta, get.clone(), &path, None).await;
        assert_eq!(status, 404, "{path}");
    }
    let cancel = format!("/v1/jobs/{acme_job}/cancel");
    assert_eq!(
        api.as_token(&beta, post.clone(), &cancel, None).await.0,
        404
    );
    let (_, listed) = api.as_token(&beta, get.clone(), "/v1/jobs", None).await;
    assert_eq!(listed["data"], json!([]));

    // acme's reader reads acme's jobs, and may not enqueue, cancel or scrape metrics.
    let (status, read) = api
        .as_token(&reader, get.clone(), &format!("/v1/jobs/{acme_job}"), None)
        .await;
    assert_eq!((status, &read["job_id"]), (200, &json!(acme_job)));
    let (_, listed) = api.as_token(&reader, get.clone(), "/v1/jobs", None).await;
    assert_eq!(listed["data"].as_array().unwrap().len(), 3);
    for (method, path) in [
        (post.clone(), "/v1/jobs"),
        (post.clone(), cancel.as_str()),
        (get.clone(), "/metrics"),
    ] {
        let (status, body) = api.as_token(&reader, method, path, Some(job("x"))).await;
        assert_eq!(
            (status, &body["code"]),
            (403, &json!("forbidden")),
            "{path}"
        );
    }

    // Idempotency keys are a tenant's own: beta's use of acme's key enqueues beta's job.
    let with_key = |token: &str, prompt: &str| {
        api.http
            .post(format!("{}/v1/jobs", api.base))
            .bearer_auth(token.to_owned())
            .header("Idempotency-Key", "order-1")
            .json(&job(prompt))
    };
    let (status, first) = api.send(with_key(&acme, "acme's order")).await;
    assert_eq!(status, 201, "{first}");
    let (status, second) = api.send(with_key(&beta, "beta's order")).await;
    assert_eq!(
        (status, &second["spec"]["tenant"]),
        (201, &json!("beta")),
        "{second}"
    );
    let (status, replay) = api.send(with_key(&acme, "acme's order")).await;
    assert_eq!((status, &replay["job_id"]), (200, &first["job_id"]));

    // A batch an operator enqueued for two tenants: acme's token counts and lists acme's
    // jobs only.
    let mut beta_line = job("beta's line");
    beta_line["tenant"] = json!("beta");
    let mut acme_line = job("acme's line");
    acme_line["tenant"] = json!("acme");
    let (status, mixed) = api
        .as_token(
            &ops_enqueue(&api).await,
            post.clone(),
            "/v1/batches",
            Some(json!([acme_line, beta_line])),
        )
        .await;
    assert_eq!(status, 201, "{mixed}");
    let mixed = mixed["batch_id"].as_str().unwrap();
    let (_, seen) = api
        .as_token(&reader, get.clone(), &format!("/v1/batches/{mixed}"), None)
        .await;
    assert_eq!(seen["jobs"], 1, "{seen}");
    let (_, listed) = api
        .as_token(
            &reader,
            get.clone(),
            &format!("/v1/batches/{mixed}/jobs"),
            None,
        )
        .await;
    assert_eq!(listed["data"].as_array().unwrap().len(), 1, "{listed}");

    // A token that may enqueue (and so cancel) but not read still gets the cancelled job.
    let canceller = make("acme-canceller", Some("acme"), vec![Scope::Enqueue]).await;
    let (status, created) = api
        .as_token(&acme, post.clone(), "/v1/jobs", Some(job("to cancel")))
        .await;
    assert_eq!(status, 201);
    let to_cancel = format!("/v1/jobs/{}/cancel", created["job_id"].as_str().unwrap());
    let (status, cancelled) = api
        .as_token(&canceller, post.clone(), &to_cancel, None)
        .await;
    assert_eq!(
        (status, &cancelled["state"]),
        (200, &json!("cancelled")),
        "{cancelled}"
    );

    // The operator's tokens see every tenant's jobs; acme cancels its own.
    let (_, listed) = api.as_token(&ops, get.clone(), "/v1/jobs", None).await;
    assert_eq!(
        listed["data"].as_array().unwrap().len(),
        8,
        "acme's 6 and beta's 2"
    );
    assert_eq!(
        api.as_token(&ops, get.clone(), "/metrics", None).await.0,
        200
    );
    assert_eq!(
        api.as_token(&acme, post.clone(), &cancel, None).await.0,
        200
    );

    // Kept only as hashes: no key or value in Redis holds a token.
    let dump = api.redis.command(&["HGETALL", "{api}:tokens"]).unwrap();
    for token in [&acme, &beta, &reader, &ops, &canceller] {
        assert!(!dump.contains(token.as_str()), "{dump}");
    }
    let listed = api.client.tokens().await.unwrap();
    assert_eq!(listed.len(), 6);

    // Revoked: refused from the next request on.
    assert!(api.client.revoke_token("beta-backend").await.unwrap());
    assert_eq!(
        api.as_token(&beta, get.clone(), "/v1/jobs", None).await.0,
        401
    );
    assert!(!api.client.revoke_token("beta-backend").await.unwrap());
}

#[tokio::test]
async fn an_enqueue_past_a_tenants_cap_on_jobs_waiting_is_429_and_enqueues_nothing() {
    let api = api().await;
    let acme = "acme".parse().unwrap();
    let caps = reelq_queue::TenantLimits {
        max_waiting: Some(2),
        ..Default::default()
    };
    api.client.set_tenant_limits(&acme, caps).await.unwrap();
    let for_acme = |prompt: &str| {
        let mut job = job(prompt);
        job["tenant"] = json!("acme");
        job
    };
    let post = reqwest::Method::POST;
    let token = crate::api::TOKEN;
    let (status, _) = api
        .as_token(
            token,
            post.clone(),
            "/v1/batches",
            Some(json!([for_acme("1"), for_acme("2")])),
        )
        .await;
    assert_eq!(status, 201);
    let response = api
        .http
        .post(format!("{}/v1/jobs", api.base))
        .bearer_auth(token)
        .json(&for_acme("3"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 429);
    assert_eq!(response.headers()["retry-after"], "30");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["code"], "tenant_backlog_full");
    assert_eq!(body["detail"]["field"], "tenant");
    let (_, listed) = api
        .as_token(token, reqwest::Method::GET, "/v1/jobs", None)
        .await;
    assert_eq!(
        listed["data"].as_array().unwrap().len(),
        2,
        "nothing enqueued"
    );
    // Another tenant is not held by acme's cap.
    let (status, _) = api.as_token(token, post, "/v1/jobs", Some(job("4"))).await;
    assert_eq!(status, 201);
}

/// An all-tenant token that may enqueue.
async fn ops_enqueue(api: &Api) -> String {
    api.client
        .create_token("ops-enqueue", None, vec![Scope::Enqueue])
        .await
        .unwrap()
}
