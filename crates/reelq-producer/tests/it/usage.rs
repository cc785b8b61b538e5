//! Usage by tenant: jobs by state, seconds of video stored and estimated spend, from the job
//! records, over the API as from the client; a tenant's token reads its own.

use std::time::Duration;

use reelq_core::{ErrorClass, JobId, Scope};
use reelq_producer::Period;
use reelq_queue::{ClaimOptions, Ledger, LedgerConfig, Transition};
use serde_json::{Value, json};

use crate::api::{TOKEN, api, job};

#[tokio::test]
async fn usage_counts_each_tenants_jobs_video_seconds_and_the_spend_a_provider_took() {
    let api = api().await;
    let for_tenant = |tenant: &str, prompt: &str| {
        let mut job = job(prompt);
        job["tenant"] = json!(tenant);
        job
    };
    let post = reqwest::Method::POST;
    let mut ids = Vec::new();
    for body in [
        for_tenant("acme", "stored"),
        for_tenant("acme", "refused"),
        for_tenant("acme", "waits"),
        for_tenant("beta", "waits too"),
    ] {
        let (status, created) = api
            .as_token(TOKEN, post.clone(), "/v1/jobs", Some(body))
            .await;
        assert_eq!(status, 201, "{created}");
        ids.push(
            created["job_id"]
                .as_str()
                .unwrap()
                .parse::<JobId>()
                .unwrap(),
        );
    }

    // A worker's moves: the first stored (a task made), the second refused before a create.
    let ledger = Ledger::connect(&LedgerConfig::new(api.redis.url(), "api"))
        .await
        .unwrap();
    let options = ClaimOptions {
        owner: "w",
        max_jobs: 4,
        lease: Duration::from_secs(60),
        resubmit_uncertain: false,
        limits: &[],
        accounts: reelq_queue::own_accounts(),
    };
    // Taken fairly, the tenants in turn: the two jobs of acme are found by id.
    let claimed = ledger.claim(&options).await.unwrap().leases;
    let leases: Vec<_> = ids[..2]
        .iter()
        .map(|id| claimed.iter().find(|lease| lease.job_id() == *id).unwrap())
        .collect();
    let begin = Transition::BeginSubmit {
        lease: Duration::from_secs(60),
        callback_token_hash: None,
    };
    ledger.transition(leases[0], begin).await.unwrap();
    let submitted = Transition::Submitted {
        task_id: "t-1".into(),
        first_poll: Duration::ZERO,
    };
    ledger.transition(leases[0], submitted).await.unwrap();
    let stored = Transition::Stored {
        object_key: "k.mp4".into(),
        bytes: 1,
        sha256: "ab".into(),
        video: "h264 1280x720 5.00s 24.00fps".into(),
        thumbnail_key: None,
        polls: None,
    };
    ledger.transition(leases[0], stored).await.unwrap();
    let refused = Transition::Failed {
        class: ErrorClass::Invalid,
        error: "refused at the create".into(),
    };
    ledger.transition(leases[1], refused).await.unwrap();

    let stored_job = api.client.status(ids[0]).await.unwrap().unwrap();
    let today = chrono::Utc::now().date_naive();
    let usage = api
        .client
        .usage(today, today, Period::Day, None)
        .await
        .unwrap();
    assert_eq!(usage.len(), 2, "{usage:?}");
    let acme = &usage[0];
    assert_eq!(
        (
            acme.tenant.as_str(),
            acme.jobs,
            acme.states["stored"],
            acme.states["failed"],
            acme.states["queued"]
        ),
        ("acme", 3, 1, 1, 1)
    );
    assert_eq!(
        acme.generation_seconds,
        u64::from(stored_job.spec.duration_s)
    );
    let estimate = stored_job.spec.estimated_cost_usd.unwrap();
    assert!(estimate > 0.0);
    assert!(
        (acme.estimated_spend_usd - estimate).abs() < 1e-9,
        "only the job a provider took"
    );
    assert_eq!((usage[1].tenant.as_str(), usage[1].jobs), ("beta", 1));

    // Over the API: by month for the operator; a tenant's token reads its own only.
    let (status, rows) = api
        .as_token(TOKEN, reqwest::Method::GET, "/v1/usage", None)
        .await;
    assert_eq!(status, 200, "{rows}");
    assert_eq!(rows.as_array().unwrap().len(), 2);
    assert_eq!(rows[0]["period"], json!(today.format("%Y-%m").to_string()));
    let beta = api
        .client
        .create_token(
            "beta-reader",
            Some("beta".parse().unwrap()),
            vec![Scope::Read],
        )
        .await
        .unwrap();
    let (_, rows) = api
        .as_token(&beta, reqwest::Method::GET, "/v1/usage?tenant=acme", None)
        .await;
    let tenants: Vec<&Value> = rows
        .as_array()
        .unwrap()
        .iter()
        .map(|row| &row["tenant"])
        .collect();
    assert_eq!(tenants, [&json!("beta")]);
    let (status, _) = api
        .as_token(TOKEN, reqwest::Method::GET, "/v1/usage?by=week", None)
        .await;
    assert_eq!(status, 400);
}
