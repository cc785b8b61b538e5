//! The dashboard tests' fixture: a Redis holding a batch, a failed job and an uncertain
//! one, a dashboard serving it over real HTTP, and a client that logs in.

use std::time::Duration;

use reelq_core::{ApiToken, BatchId, BatchOptions, ErrorClass, JobRequest};
use reelq_dashboard::{DashboardConfig, router};
use reelq_producer::Client;
use reelq_queue::{ClaimOptions, Ledger, LedgerConfig, Transition};
use reelq_storage::HistoryStore;
use reelq_testkit::RedisServer;
use reqwest::{StatusCode, redirect::Policy};

use super::{PREFIX, TOKEN};

pub(super) struct Fixture {
    pub(super) redis: RedisServer,
    pub(super) base: String,
    pub(super) http: reqwest::Client,
    pub(super) client: Client,
    pub(super) batch: BatchId,
    pub(super) failed: reelq_core::JobId,
    pub(super) uncertain: reelq_core::JobId,
}

pub(super) fn request(prompt: &str) -> reelq_core::JobSpec {
    JobRequest {
        provider: Some("kie".into()),
        model: Some("kling-3.0/video".into()),
        prompt: Some(prompt.into()),
        ..JobRequest::default()
    }
    .validate(reelq_core::Catalog::built_in(), 0)
    .unwrap()
}

/// A ledger with a batch of three queued jobs, one failed job and one uncertain job, and the
/// dashboard serving it on loopback.
pub(super) async fn fixture(writable: bool) -> Fixture {
    fixture_reading(writable, None).await
}

/// The fixture, its dashboard reading archived jobs from `history` if given.
pub(super) async fn fixture_reading(writable: bool, history: Option<HistoryStore>) -> Fixture {
    let redis = RedisServer::start().expect("redis-server starts");
    let client = Client::connect(&LedgerConfig::new(redis.url(), PREFIX))
        .await
        .unwrap();
    let ledger = Ledger::connect(&LedgerConfig::new(redis.url(), PREFIX))
        .await
        .unwrap();
    let options = BatchOptions {
        name: Some("nightly".into()),
        budget_micros: Some(10_000_000),
        ..BatchOptions::default()
    };
    let batch = client
        .enqueue_batch_with(vec![request("a"), request("b"), request("c")], &options)
        .await
        .unwrap()
        .batch_id;
    let failed = client.enqueue_spec(request("will fail")).await.unwrap();
    let uncertain = client
        .enqueue_spec(request("will be uncertain"))
        .await
        .unwrap();
    // Take the two single jobs to their states the way a worker would.
    let claim = ledger
        .claim(&ClaimOptions {
            owner: "w",
            max_jobs: 5,
            lease: Duration::from_secs(60),
            resubmit_uncertain: false,
            limits: &[],
            accounts: reelq_queue::own_accounts(),
        })
        .await
        .unwrap();
    for lease in claim
        .leases
        .into_iter()
        .filter(|l| l.job_id() == failed || l.job_id() == uncertain)
    {
        let begin = Transition::BeginSubmit {
            lease: Duration::from_secs(60),
            callback_token_hash: None,
        };
        ledger.transition(&lease, begin).await.unwrap();
        let end = if lease.job_id() == failed {
            Transition::Failed {
                class: ErrorClass::Credits,
                error: "kie code 402".into(),
            }
        } else {
            Transition::Uncertain {
                error: "no answer".into(),
                slot_hold: Duration::ZERO,
            }
        };
        ledger.transition(&lease, end).await.unwrap();
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let reader = match history {
        Some(history) => client.clone().with_history(history),
        None => client.clone(),
    };
    let app = router(
        reader,
        DashboardConfig::new(ApiToken::new(TOKEN).unwrap(), writable),
    );
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let http = reqwest::Client::builder()
        .redirect(Policy::none())
        .build()
        .unwrap();
    Fixture {
        redis,
        base,
        http,
        client,
        batch,
        failed,
        uncertain,
    }
}

impl Fixture {
    /// A GET of `path` with the token (redirects not followed).
    pub(super) async fn send_get(&self, path: &str) -> reqwest::Response {
        self.http
            .get(format!("{}{path}", self.base))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap()
    }

    /// Where a GET of `path` redirects to, if it does (303).
    pub(super) async fn redirect(&self, path: &str) -> Option<String> {
        let response = self.send_get(path).await;
        (response.status() == StatusCode::SEE_OTHER)
            .then(|| response.headers()["location"].to_str().unwrap().to_owned())
    }

    pub(super) async fn get(&self, path: &str) -> (StatusCode, String) {
        let response = self.send_get(path).await;
        (response.status(), response.text().await.unwrap())
    }

    pub(super) async fn post(&self, path: &str, form: &[(&str, &str)]) -> StatusCode {
        self.http
            .post(format!("{}{path}", self.base))
            .bearer_auth(TOKEN)
            .form(form)
            .send()
            .await
            .unwrap()
            .status()
    }
}
