//! Every page and action of the dashboard over real HTTP, against a real Redis: what an
//! operator sees, what a stranger is refused, and what a read-only dashboard will not do.

use std::time::Duration;

use reelq_core::BatchOptions;
use reelq_queue::{ArchiveGrace, Ledger, LedgerConfig};
use reelq_storage::HistoryStore;
use reqwest::StatusCode;

const TOKEN: &str = "dash-token-0123456789";
const PREFIX: &str = "ui";

#[path = "pages/fixture.rs"]
mod fixture;

use fixture::{fixture, fixture_reading, request};

#[tokio::test]
async fn strangers_are_sent_to_the_login_and_the_login_sets_a_working_session() {
    let f = fixture(false).await;
    let anonymous = f.http.get(format!("{}/ui", f.base)).send().await.unwrap();
    assert_eq!(anonymous.status(), StatusCode::SEE_OTHER);
    assert_eq!(anonymous.headers()["location"], "/ui/login");
    let form = f
        .http
        .get(format!("{}/ui/login", f.base))
        .send()
        .await
        .unwrap();
    let form = form.text().await.unwrap();
    // No Log out before a login; no icon to fetch (a refused /favicon.ico on every visit).
    let (login, no_logout) = (form.contains(r#"id="login""#), !form.contains("Log out"));
    assert!(
        login && no_logout && form.contains(r#"rel="icon""#),
        "{form}"
    );
    let action = f
        .http
        .post(format!("{}/ui/batches/{}/cancel", f.base, f.batch))
        .send()
        .await
        .unwrap();
    assert_eq!(action.status(), StatusCode::UNAUTHORIZED);
    let wrong = f
        .http
        .post(format!("{}/ui/login", f.base))
        .form(&[("token", "guess")])
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);

    let login = f
        .http
        .post(format!("{}/ui/login", f.base))
        .form(&[("token", TOKEN)])
        .send()
        .await
        .unwrap();
    assert_eq!(login.status(), StatusCode::SEE_OTHER);
    let cookie = login.headers()["set-cookie"].to_str().unwrap().to_owned();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    assert!(!cookie.contains(TOKEN), "the cookie never holds the token");
    assert!(
        cookie.contains("Max-Age=43200"),
        "a session expires: {cookie}"
    );
    assert!(!cookie.contains("Secure"), "plain http: {cookie}");
    let session = cookie.split(';').next().unwrap().to_owned();
    let with_cookie = |cookie: String| {
        let request = f
            .http
            .get(format!("{}/ui", f.base))
            .header("cookie", cookie);
        async move { request.send().await.unwrap().status() }
    };
    assert_eq!(with_cookie(session.clone()).await, StatusCode::OK);

    // A forged, an altered and an expired session are all sent to the login.
    let (name_and_expiry, tag) = session.rsplit_once('.').unwrap();
    let (name, expiry) = name_and_expiry.split_once('=').unwrap();
    let later: u64 = expiry.parse::<u64>().unwrap() + 3600;
    for forged in [
        format!("{name}={}", hex_sha256(TOKEN)),
        format!("{name}={later}.{tag}"),
        format!("{name}=1000.{tag}"),
        format!("{name}="),
    ] {
        assert_eq!(
            with_cookie(forged.clone()).await,
            StatusCode::SEE_OTHER,
            "{forged}"
        );
    }

    // Behind a TLS proxy the cookie is Secure; logging out clears it.
    let login = f
        .http
        .post(format!("{}/ui/login", f.base))
        .header("x-forwarded-proto", "https")
        .form(&[("token", TOKEN)])
        .send()
        .await
        .unwrap();
    let cookie = login.headers()["set-cookie"].to_str().unwrap().to_owned();
    assert!(cookie.contains("; Secure"), "{cookie}");
    let logout = f
        .http
        .post(format!("{}/ui/logout", f.base))
        .header("cookie", session)
        .send()
        .await
        .unwrap();
    assert_eq!(logout.status(), StatusCode::SEE_OTHER);
    let cleared = logout.headers()["set-cookie"].to_str().unwrap();
    assert!(
        cleared.starts_with("reelq_session=;") && cleared.contains("Max-Age=0"),
        "{cleared}"
    );
}

/// The old cookie: the token's bare SHA-256.
fn hex_sha256(text: &str) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(text.as_bytes()))
}

#[tokio::test]
async fn every_page_shows_what_the_ledger_holds() {
    let f = fixture(false).await;

    let (status, overview) = f.get("/ui").await;
    assert_eq!(status, StatusCode::OK);
    for needle in [
        r#"id="depths""#,
        r#"data-state="queued""#,
        r#"id="providers""#,
        r#"id="throughput""#,
        r#"id="failures""#,
        "credits",
    ] {
        assert!(overview.contains(needle), "overview lacks {needle}");
    }

    let (status, usage) = f.get("/ui/usage").await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        usage.contains(r#"href="/ui/jobs?tenant=default""#),
        "the default tenant's use: {usage}"
    );
    let (_, nobodys) = f.get("/ui/jobs?tenant=nobody").await;
    assert!(
        !nobodys.contains("/ui/jobs/0"),
        "no job of a tenant without jobs"
    );
    let (_, defaults) = f.get("/ui/jobs?tenant=default").await;
    assert!(defaults.contains("/ui/jobs/0"), "the default tenant's jobs");
    let (status, failed_jobs) = f.get("/ui/jobs?state=failed&provider=kie").await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        failed_jobs.contains(&f.failed.to_string())
            && !failed_jobs.contains(&f.uncertain.to_string())
    );
    let (_, batch_jobs) = f.get(&format!("/ui/jobs?batch={}", f.batch)).await;
    assert_eq!(
        batch_jobs.matches("/ui/jobs/").count(),
        3,
        "the batch's three jobs"
    );
    assert_eq!(
        f.get("/ui/jobs?state=done").await.0,
        StatusCode::BAD_REQUEST
    );
    // Every state by default; a job id goes to its page.
    let (_, everything) = f.get("/ui/jobs").await;
    for (job, prompt) in [(f.failed, "will fail"), (f.uncertain, "will be uncertain")] {
        let listed = everything.contains(&job.to_string()) && everything.contains(prompt);
        assert!(listed, "{job} listed by default, with its prompt");
    }
    assert_eq!(
        f.redirect(&format!("/ui/jobs?q={}", f.uncertain)).await,
        Some(format!("/ui/jobs/{}", f.uncertain))
    );
    assert_eq!(f.get("/ui/jobs?q=nope").await.0, StatusCode::BAD_REQUEST);

    let (status, job) = f.get(&format!("/ui/jobs/{}", f.failed)).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        job.contains(r#"id="timeline""#)
            && job.contains("kie code 402")
            && job.contains("submitting")
    );
    assert!(
        !job.contains(r#"id="retry""#),
        "a read-only dashboard offers no actions"
    );
    // What was asked and what went to the provider, in the row's words.
    assert!(
        job.contains("will fail") && job.contains(r#"id="parameters""#),
        "the prompt and choices"
    );
    assert!(
        job.contains("mode=&quot;std&quot;") || job.contains(r#"mode="std""#),
        "the request fields"
    );
    assert_eq!(
        f.get(&format!("/ui/jobs/{}", reelq_core::JobId::new()))
            .await
            .0,
        StatusCode::NOT_FOUND
    );

    let (_, batches) = f.get("/ui/batches").await;
    assert!(batches.contains("nightly") && batches.contains(&f.batch.to_string()));
    assert!(
        batches.contains("0 / 3") && batches.contains("starts (UTC)"),
        "{batches}"
    );
    let (_, batch) = f.get(&format!("/ui/batches/{}", f.batch)).await;
    assert!(
        batch.contains(r#"id="progress""#) && batch.contains("3 in progress, of 3"),
        "{batch}"
    );
    assert!(batch.contains("Estimated $1.05 for its jobs"), "{batch}");
    assert!(batch.contains("of a $10.00 budget"));
    let (status, csv) = f.get(&format!("/ui/batches/{}/report.csv", f.batch)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(csv.lines().count(), 4, "a header and three jobs");
}

#[tokio::test]
async fn a_queued_job_of_a_batch_scheduled_ahead_says_when_it_starts() {
    let f = fixture(false).await;
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let later = BatchOptions {
        start_after_ms: Some(now_ms + 2 * 3600 * 1000),
        ..BatchOptions::default()
    };
    let scheduled = f
        .client
        .enqueue_batch_with(vec![request("at dawn")], &later)
        .await
        .unwrap()
        .batch_id;
    let job = f.client.batch_records(scheduled).await.unwrap().remove(0);
    let (_, page) = f.get(&format!("/ui/jobs/{}", job.job_id)).await;
    assert!(
        page.contains("queued: scheduled, its batch starts"),
        "a scheduled job says so: {page}"
    );
    // So do the jobs list and its batch's page.
    for list in [
        "/ui/jobs?state=queued".to_owned(),
        format!("/ui/batches/{scheduled}"),
    ] {
        let (_, page) = f.get(&list).await;
        assert_eq!(
            page.matches("scheduled, starts").count(),
            1,
            "{list}: {page}"
        );
    }
    // A queued job of a batch that may start now says only that it is queued.
    let now = f.client.batch_records(f.batch).await.unwrap().remove(0);
    let (_, page) = f.get(&format!("/ui/jobs/{}", now.job_id)).await;
    assert!(
        page.contains(r#"id="state""#) && !page.contains("scheduled"),
        "{page}"
    );
}

#[tokio::test]
async fn the_overview_says_when_the_ledger_went_back_in_time() {
    let f = fixture(false).await;
    let (_, overview) = f.get("/ui").await;
    assert!(!overview.contains(r#"id="rollback""#), "no rollback yet");

    // A rollback declared a moment ago, its hold still on (as `history.lua` records one).
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis();
    let (now, until) = (now_ms.to_string(), (now_ms + 600_000).to_string());
    let last = format!("{now} w1: saw 24, found 16");
    let declared = [
        "HSET",
        "{ui}:history",
        "rollbacks",
        "1",
        "last",
        &last,
        "declared_ms",
        &now,
        "hold_min_ms",
        &until,
        "hold_max_ms",
        &until,
    ];
    assert_eq!(f.redis.command(&declared).unwrap(), ":5");
    let (status, overview) = f.get("/ui").await;
    assert_eq!(status, StatusCode::OK);
    assert!(overview.contains(r#"id="rollback""#), "{overview}");
    assert!(overview.contains("paid creates are held"), "{overview}");
    assert!(overview.contains("w1: saw 24, found 16"), "{overview}");
}

#[tokio::test]
async fn a_read_only_dashboard_refuses_every_action() {
    let f = fixture(false).await;
    assert_eq!(
        f.post(&format!("/ui/jobs/{}/retry", f.failed), &[]).await,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        f.post(
            &format!("/ui/jobs/{}/resolve", f.uncertain),
            &[("resolution", "fail")]
        )
        .await,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        f.post("/ui/accounts/kie/pause", &[]).await,
        StatusCode::FORBIDDEN
    );
    for action in ["cancel", "retry-failed"] {
        assert_eq!(
            f.post(&format!("/ui/batches/{}/{action}", f.batch), &[])
                .await,
            StatusCode::FORBIDDEN,
            "{action}"
        );
    }
    let (_, job) = f.get(&format!("/ui/jobs/{}", f.failed)).await;
    assert!(job.contains(">failed<"), "nothing moved");
}

#[tokio::test]
async fn a_writable_dashboard_retries_resolves_and_cancels() {
    let f = fixture(true).await;
    let (_, job) = f.get(&format!("/ui/jobs/{}", f.failed)).await;
    assert!(job.contains(r#"id="retry""#));

    assert_eq!(
        f.post(&format!("/ui/jobs/{}/retry", f.failed), &[]).await,
        StatusCode::SEE_OTHER
    );
    let (_, job) = f.get(&format!("/ui/jobs/{}", f.failed)).await;
    assert!(job.contains(">queued<"), "sent back to submit");
    assert_eq!(
        f.post(&format!("/ui/jobs/{}/retry", f.failed), &[]).await,
        StatusCode::CONFLICT
    );

    let bad = f
        .post(
            &format!("/ui/jobs/{}/resolve", f.uncertain),
            &[("resolution", "task_id"), ("task_id", " ")],
        )
        .await;
    assert_eq!(bad, StatusCode::BAD_REQUEST);
    let resolved = f
        .post(
            &format!("/ui/jobs/{}/resolve", f.uncertain),
            &[("resolution", "task_id"), ("task_id", "task_77")],
        )
        .await;
    assert_eq!(resolved, StatusCode::SEE_OTHER);
    let (_, job) = f.get(&format!("/ui/jobs/{}", f.uncertain)).await;
    assert!(job.contains(">waiting<") && job.contains("task_77"));
    // A task id finds its job too; the timeline says how long each step took.
    assert_eq!(
        f.redirect("/ui/jobs?q=task_77").await,
        Some(format!("/ui/jobs/{}", f.uncertain))
    );
    assert!(
        job.contains(" s after the event before)"),
        "the gaps between events in the timeline"
    );
    // Bulk: one of the batch's queued jobs cancelled from the list; a bad action refused.
    let (_, list) = f.get("/ui/jobs").await;
    assert!(list.contains(r#"id="bulk""#) && list.contains("a new paid generation"));
    let batch_jobs = f.client.batch_jobs(f.batch).await.unwrap();
    let first = batch_jobs[0].to_string();
    assert_eq!(
        f.post("/ui/jobs/bulk", &[("action", "cancel"), ("job_id", &first)])
            .await,
        StatusCode::SEE_OTHER
    );
    let record = f.client.status(batch_jobs[0]).await.unwrap().unwrap();
    assert_eq!(record.state, reelq_core::JobState::Cancelled);
    assert_eq!(
        f.post(
            "/ui/jobs/bulk",
            &[("action", "explode"), ("job_id", &first)]
        )
        .await,
        StatusCode::BAD_REQUEST
    );
    // Resuming with a budget: nothing is held here, so nothing moves, and it says so by
    // coming back; a budget that is not a number is refused.
    let resume = format!("/ui/batches/{}/resume", f.batch);
    assert_eq!(
        f.post(&resume, &[("budget_usd", "20")]).await,
        StatusCode::SEE_OTHER
    );
    assert_ne!(
        f.post(&resume, &[("budget_usd", "lots")]).await,
        StatusCode::SEE_OTHER
    );
    // An account paused from the overview, and resumed.
    assert_eq!(
        f.post("/ui/accounts/kie/pause", &[]).await,
        StatusCode::SEE_OTHER
    );
    let (_, overview) = f.get("/ui").await;
    assert!(
        overview.contains("paused ") && overview.contains("Resume"),
        "{overview}"
    );
    assert_eq!(
        f.post("/ui/accounts/kie/resume", &[]).await,
        StatusCode::SEE_OTHER
    );
    // No live worker holds the account here: said so, and nothing to pause.
    let (_, overview) = f.get("/ui").await;
    let unserved = overview.contains("no worker has this account");
    assert!(unserved && !overview.contains("Pause 1 h"), "{overview}");
    // The batch has no failed job: retrying its failed jobs moves nothing, and says so by
    // coming back to the batch.
    assert_eq!(
        f.post(&format!("/ui/batches/{}/retry-failed", f.batch), &[])
            .await,
        StatusCode::SEE_OTHER
    );

    assert_eq!(
        f.post(&format!("/ui/batches/{}/cancel", f.batch), &[])
            .await,
        StatusCode::SEE_OTHER
    );
    let (_, batch) = f.get(&format!("/ui/batches/{}", f.batch)).await;
    assert!(
        batch.contains("0 stored, 3 ended otherwise") && batch.contains("cancelled"),
        "{batch}"
    );
    assert!(
        !batch.contains(r#"id="cancel""#),
        "nothing left to cancel, so no button"
    );
}

#[tokio::test]
async fn an_archived_job_shows_as_it_did_and_a_failing_archive_is_said() {
    let dir = tempfile::tempdir().unwrap();
    let history = HistoryStore::beside(&reelq_storage::VideoStore::local(dir.path()).unwrap());
    let f = fixture_reading(false, Some(history.clone())).await;
    let ledger = Ledger::connect(&LedgerConfig::new(f.redis.url(), PREFIX))
        .await
        .unwrap();

    // The failed job leaves Redis for the history, as the archiver moves it.
    let lease = ledger
        .take_archive_lease(Duration::from_secs(60))
        .await
        .unwrap()
        .unwrap();
    let no_grace = ArchiveGrace::NONE;
    let read = ledger
        .archive_candidates(&lease, no_grace, 100)
        .await
        .unwrap();
    assert_eq!(read.len(), 1);
    let lines = read
        .iter()
        .map(|candidate| {
            reelq_storage::HistoryLine::of(
                candidate.job_id(),
                candidate.job.record.updated_ms,
                &candidate.job,
            )
        })
        .collect();
    history.put_lines(lines).await.unwrap();
    ledger.remove_archived(&lease, &read).await.unwrap();
    assert!(ledger.job(f.failed).await.unwrap().is_none());

    let (status, page) = f.get(&format!("/ui/jobs/{}", f.failed)).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert!(
        page.contains("will fail") && page.contains("kie code 402"),
        "{page}"
    );

    let (_, overview) = f.get("/ui").await;
    assert!(!overview.contains(r#"id="archive""#), "archiving works");
    ledger
        .record_archive_pass(Err("writing history to the store: connection refused"))
        .await
        .unwrap();
    let (_, overview) = f.get("/ui").await;
    assert!(overview.contains(r#"id="archive""#), "{overview}");
    assert!(overview.contains("connection refused"), "{overview}");
}

#[tokio::test]
async fn a_routed_job_shows_its_route_where_it_was_served_and_the_candidates_it_left() {
    let f = fixture(false).await;
    let ledger = Ledger::connect(&LedgerConfig::new(f.redis.url(), PREFIX))
        .await
        .unwrap();
    let job_id = f
        .client
        .enqueue(reelq_core::JobRequest {
            route: Some("veo-3.1-fast".into()),
            prompt: Some("a lighthouse".into()),
            duration_s: Some(8),
            ..Default::default()
        })
        .await
        .unwrap();
    let options = reelq_queue::ClaimOptions {
        owner: "w",
        max_jobs: 10,
        lease: Duration::from_secs(60),
        resubmit_uncertain: false,
        limits: &[],
        accounts: reelq_queue::own_accounts(),
    };
    let claimed = |claim: reelq_queue::Claim| {
        claim
            .leases
            .into_iter()
            .find(|lease| lease.job_id() == job_id)
            .unwrap()
    };
    // evolink is out of credits: the job moves on to fal, which takes it.
    let lease = claimed(ledger.claim(&options).await.unwrap());
    let spec = lease
        .job()
        .spec()
        .fall_back(
            reelq_core::FallbackReason::Credits,
            "evolink",
            1_780_000_000_000,
        )
        .unwrap();
    let moved = reelq_queue::Transition::FallBack {
        spec: Box::new(spec),
        reason: reelq_core::FallbackReason::Credits,
        left: "evolink".into(),
    };
    ledger.transition(&lease, moved).await.unwrap();
    let lease = claimed(ledger.claim(&options).await.unwrap());
    let begin = reelq_queue::Transition::BeginSubmit {
        lease: Duration::from_secs(60),
        callback_token_hash: None,
    };
    ledger.transition(&lease, begin).await.unwrap();
    let taken = reelq_queue::Transition::Submitted {
        task_id: "fal-task-1".into(),
        first_poll: Duration::from_secs(60),
    };
    ledger.transition(&lease, taken).await.unwrap();

    let (status, page) = f.get(&format!("/ui/jobs/{job_id}")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        page.contains(
            "veo-3.1-fast: candidate 2 of 4, served by fal / fal-ai/veo3.1/fast at $1.200"
        ),
        "{page}"
    );
    assert!(
        page.contains("evolink veo-3.1-fast-generate-preview at evolink: credits"),
        "{page}"
    );
}
