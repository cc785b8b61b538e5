//! The dashboard in a real browser: after a small run (jobs stored, one rejected by
//! moderation), headless Chromium logs in through the form and reads the overview. Driven
//! over WebDriver (chromedriver); the screenshot is kept under the target directory.

use std::{process::Stdio, time::Duration};

use base64::{Engine, engine::general_purpose::STANDARD as BASE64};
use reelq_core::ApiToken;
use reelq_dashboard::{DashboardConfig, router};
use reelq_e2e::{API_KEY, Deployment, prompts};
use reelq_testkit::EVENT_TIMEOUT;
use serde_json::{Value, json};

const TOKEN: &str = "browser-token-0123456789";
/// WebDriver's key for element references.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// A WebDriver session on a chromedriver this test started.
struct Browser {
    http: reqwest::Client,
    session: String,
    _driver: tokio::process::Child,
}

impl Browser {
    async fn start() -> Browser {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let driver = tokio::process::Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("chromedriver runs (scripts/test installs chromium and chromium-driver)");
        let http = reqwest::Client::new();
        let base = format!("http://127.0.0.1:{port}");
        let ready = async {
            loop {
                if let Ok(response) = http.get(format!("{base}/status")).send().await
                    && response.status().is_success()
                {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        };
        tokio::time::timeout(EVENT_TIMEOUT, ready)
            .await
            .expect("chromedriver answers");
        let capabilities = json!({ "capabilities": { "alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": "/usr/bin/chromium",
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1280,1000"],
            },
        }}});
        let created: Value = http
            .post(format!("{base}/session"))
            .json(&capabilities)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let session = created["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("a browser session: {created}"))
            .to_owned();
        let browser = Browser {
            http,
            session: format!("{base}/session/{session}"),
            _driver: driver,
        };
        // Element look-ups wait (in the driver) for the element to appear, e.g. on the page a
        // form submit navigates to: a click can return before that page has loaded.
        let implicit_ms = EVENT_TIMEOUT.as_millis() as u64;
        browser
            .call(
                reqwest::Method::POST,
                "/timeouts",
                json!({ "implicit": implicit_ms }),
            )
            .await;
        browser
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Value) -> Value {
        let response = self.answer(method, path, body).await;
        assert!(response["value"]["error"].is_null(), "{path}: {response}");
        response["value"].clone()
    }

    /// ChromeDriver's whole answer, an error included.
    async fn answer(&self, method: reqwest::Method, path: &str, body: Value) -> Value {
        let mut request = self
            .http
            .request(method.clone(), format!("{}{path}", self.session));
        if method != reqwest::Method::GET {
            request = request.json(&body);
        }
        request.send().await.unwrap().json().await.unwrap()
    }

    /// Calls `action` on the element `css` finds. A live page replaces its content every
    /// few seconds, so an element found just before a refresh can be gone when acted on
    /// ("stale element reference"): then it is found again, as a reader would look again.
    async fn on_element(&self, css: &str, method: reqwest::Method, action: &str) -> Value {
        for _ in 0..5 {
            let element = self.find(css).await;
            let body = match method {
                reqwest::Method::GET => Value::Null,
                _ => json!({}),
            };
            let path = format!("/element/{element}/{action}");
            let response = self.answer(method.clone(), &path, body).await;
            if response["value"]["error"] == "stale element reference" {
                continue;
            }
            assert!(response["value"]["error"].is_null(), "{path}: {response}");
            return response["value"].clone();
        }
        panic!("{css}: stale after five finds in a row");
    }

    async fn go(&self, url: &str) {
        self.call(reqwest::Method::POST, "/url", json!({ "url": url }))
            .await;
    }

    async fn find(&self, css: &str) -> String {
        let found = self
            .call(
                reqwest::Method::POST,
                "/element",
                json!({ "using": "css selector", "value": css }),
            )
            .await;
        found[ELEMENT].as_str().unwrap().to_owned()
    }

    async fn text(&self, css: &str) -> String {
        let text = self.on_element(css, reqwest::Method::GET, "text").await;
        text.as_str().unwrap().to_owned()
    }

    async fn click(&self, css: &str) {
        self.on_element(css, reqwest::Method::POST, "click").await;
    }

    /// Runs `script` in the page (its last argument is the callback that returns).
    async fn run(&self, script: &str) -> Value {
        self.call(
            reqwest::Method::POST,
            "/execute/async",
            json!({ "script": script, "args": [] }),
        )
        .await
    }

    /// Keeps a screenshot of the page as a test artifact, `<name>.png`.
    async fn screenshot(&self, name: &str) {
        let png = self
            .call(reqwest::Method::GET, "/screenshot", Value::Null)
            .await;
        let png = BASE64.decode(png.as_str().unwrap()).unwrap();
        assert!(png.starts_with(b"\x89PNG"));
        let artifacts = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("artifacts");
        std::fs::create_dir_all(&artifacts).unwrap();
        std::fs::write(artifacts.join(format!("{name}.png")), png).unwrap();
    }

    /// Waits, up to [`EVENT_TIMEOUT`], for `check` to hold of the page: the page changes by
    /// itself (its live refresh), so it is read again shortly until it does.
    async fn until(&self, what: &str, script: &str) {
        let script =
            format!("const done = arguments[arguments.length - 1]; done(Boolean({script}));");
        let wait = async {
            while self.run(&script).await != json!(true) {
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        };
        tokio::time::timeout(EVENT_TIMEOUT, wait)
            .await
            .unwrap_or_else(|_| panic!("the page never showed {what}"));
    }

    /// What axe-core, Deque's accessibility engine (`AXE_CORE` names its `axe.min.js`;
    /// scripts/common.sh installs it from npm), finds on the page against WCAG 2.2 A and AA:
    /// one line per rule violated, with its elements.
    async fn violations(&self) -> Vec<String> {
        let axe = std::env::var("AXE_CORE")
            .expect("AXE_CORE names axe-core's axe.min.js (scripts/test installs it)");
        let source = std::fs::read_to_string(&axe).expect("axe.min.js is readable");
        let script = format!(
            "{source}\n\
             const done = arguments[arguments.length - 1];\n\
             axe.run(document, {{ runOnly: {{ type: 'tag', values: \
               ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa', 'wcag22aa'] }} }})\n\
               .then(result => done(result.violations.map(v => `${{v.id}} (${{v.impact}}): \
                 ${{v.nodes.map(n => n.target.join(' ')).join(', ')}}`)))\n\
               .catch(err => done([`axe failed: ${{err}}`]));"
        );
        serde_json::from_value(self.run(&script).await).expect("axe's violations, as text")
    }

    async fn assert_accessible(&self, page: &str) {
        let violations = self.violations().await;
        assert!(
            violations.is_empty(),
            "{page}: axe found WCAG 2.2 A/AA violations: {violations:#?}"
        );
    }

    async fn title(&self) -> String {
        let title = self.call(reqwest::Method::GET, "/title", Value::Null).await;
        title.as_str().unwrap().to_owned()
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // Ends the browser with the session; chromedriver itself is killed on drop.
        let _ = std::process::Command::new("curl")
            .args(["-s", "-X", "DELETE", &self.session])
            .stdout(Stdio::null())
            .status();
    }
}

#[tokio::test]
async fn chromium_logs_in_and_reads_the_overview_after_a_small_run() {
    let deployment = Deployment::start(
        env!("CARGO_BIN_EXE_reelq-worker"),
        Duration::from_millis(50),
    )
    .await;
    let _worker = deployment.spawn_worker_task("w", API_KEY, None);
    let mut run = prompts("browser", 4);
    run.push(format!("{} scene", reelq_sim::MODERATED_WORD));
    run.push(format!("{} scene", reelq_sim::FAILING_WORD));
    let job_ids = deployment.enqueue_manifest(&run).await;
    let records = deployment.settled(&job_ids).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let mut config = DashboardConfig::new(ApiToken::new(TOKEN).unwrap(), true);
    config.videos = Some(reelq_producer::Videos {
        store: reelq_storage::VideoStore::local(&deployment.store_dir()).unwrap(),
        link_ttl: Duration::from_secs(60),
    });
    let app = router(deployment.client.clone(), config);
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let browser = Browser::start().await;
    browser.go(&format!("{base}/ui")).await;
    assert_eq!(
        browser.title().await,
        "reelq · Log in",
        "sent to the login first"
    );
    browser.assert_accessible("login").await;
    let token_field = browser.find("input[name=token]").await;
    browser
        .call(
            reqwest::Method::POST,
            &format!("/element/{token_field}/value"),
            json!({ "text": TOKEN }),
        )
        .await;
    let submit = browser.find("#login button").await;
    browser
        .call(
            reqwest::Method::POST,
            &format!("/element/{submit}/click"),
            json!({}),
        )
        .await;

    browser.find("#depths").await;
    assert_eq!(browser.title().await, "reelq · Overview");
    assert_eq!(browser.text("#depths [data-state=stored] b").await, "4");
    assert_eq!(browser.text("#depths [data-state=rejected] b").await, "1");
    assert!(browser.text("#providers").await.contains("kie"));
    // Refusals by moderation are not failures: the chart has the failed job only.
    let failures = browser
        .run("arguments[0](document.querySelector('#failures').textContent);")
        .await;
    assert!(
        failures.as_str().unwrap().contains("generation_failed 1"),
        "{failures}"
    );
    assert!(
        browser
            .text("#rejected")
            .await
            .starts_with("1 rejected by moderation")
    );
    assert!(
        browser.text("#workers").await.contains("w"),
        "the worker is listed"
    );
    browser.find("#throughput rect").await;

    // The overview is live: a job stored after the page loaded shows without a reload.
    assert!(browser.text("#live").await.starts_with("live"));
    let more = deployment.enqueue_manifest(&prompts("later", 1)).await;
    deployment.settled(&more).await;
    let updated = tokio::time::timeout(EVENT_TIMEOUT, async {
        loop {
            if browser.text("#depths [data-state=stored] b").await == "5" {
                return browser.text("#live").await;
            }
            // The page refreshes itself every 5 s; look at it again shortly.
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    })
    .await
    .expect("the page updates itself");
    assert!(updated.starts_with("live · updated "), "{updated}");

    // The jobs list shows every state by default, with its counts, newest change first.
    browser.go(&format!("{base}/ui/jobs")).await;
    assert_eq!(
        browser.text("#states [data-state=rejected]").await,
        "rejected 1"
    );
    let listed = browser.text("#jobs").await;
    assert!(
        listed.contains("rejected") && listed.contains("stored"),
        "{listed}"
    );

    browser.screenshot("dashboard-overview").await;
    browser.assert_accessible("overview").await;

    // The jobs list is live too: a job stored after the page loaded appears in it.
    browser.go(&format!("{base}/ui/jobs")).await;
    let last = deployment.enqueue_manifest(&prompts("newest", 1)).await;
    deployment.settled(&last).await;
    browser
        .until(
            "the newest job",
            &format!(
                "document.querySelector('#jobs').textContent.includes('{}')",
                last[0]
            ),
        )
        .await;
    browser.screenshot("dashboard-jobs").await;
    browser.assert_accessible("jobs").await;

    // Paging reaches the last page: 8 jobs, 3 a page.
    browser.go(&format!("{base}/ui/jobs?limit=3")).await;
    let mut pages = 1;
    let mut rows = browser
        .run("arguments[0](document.querySelectorAll('#jobs tr').length - 1);")
        .await
        .as_u64()
        .unwrap();
    while browser
        .run("arguments[0](document.querySelector('#next') !== null);")
        .await
        == json!(true)
    {
        browser.click("#next").await;
        browser.find("#jobs").await;
        pages += 1;
        rows += browser
            .run("arguments[0](document.querySelectorAll('#jobs tr').length - 1);")
            .await
            .as_u64()
            .unwrap();
        assert!(pages <= 4, "paging ends");
    }
    assert_eq!(
        (pages, rows),
        (3, 8),
        "every job once, on the pages it takes"
    );

    // A stored job's page plays its video, seeks in it, and its source answers ranges.
    let stored = records
        .iter()
        .find(|record| record.state == reelq_core::JobState::Stored)
        .unwrap();
    browser
        .go(&format!("{base}/ui/jobs/{}", stored.job_id))
        .await;
    browser.find("#player").await;
    let ranged = browser
        .run(
            "const done = arguments[arguments.length - 1];\
             fetch(document.querySelector('#player').src, { headers: { Range: 'bytes=0-99' } })\
               .then(r => r.arrayBuffer().then(b => done([r.status, b.byteLength])))\
               .catch(e => done(String(e)));",
        )
        .await;
    assert_eq!(ranged, json!([206, 100]));
    let played = browser
        .run(
            "const done = arguments[arguments.length - 1];\
             const v = document.querySelector('#player');\
             v.muted = true;\
             const ready = () => v.readyState >= 2\
               ? Promise.resolve() : new Promise(r => v.addEventListener('loadeddata', r, { once: true }));\
             v.load();\
             ready()\
               .then(() => new Promise(r => { v.addEventListener('seeked', r, { once: true }); v.currentTime = 1; }))\
               .then(() => done([v.readyState >= 2, v.currentTime >= 1, v.duration > 1]))\
               .catch(e => done(String(e)));\
             v.addEventListener('error', () => done('media error ' + (v.error && v.error.code)), { once: true });",
        )
        .await;
    assert_eq!(
        played,
        json!([true, true, true]),
        "the video loads and seeks"
    );
    browser.screenshot("dashboard-job-video").await;
    browser.assert_accessible("job-video").await;

    // A paid action asks first: dismissed, nothing happens; accepted, the job goes back.
    let failed = records
        .iter()
        .find(|record| record.state == reelq_core::JobState::Failed)
        .unwrap();
    browser
        .go(&format!("{base}/ui/jobs/{}", failed.job_id))
        .await;
    browser.click("#retry").await;
    let asked = browser
        .call(reqwest::Method::GET, "/alert/text", Value::Null)
        .await;
    assert!(
        asked.as_str().unwrap().contains("paid generation"),
        "{asked}"
    );
    browser
        .call(reqwest::Method::POST, "/alert/dismiss", json!({}))
        .await;
    let still = deployment
        .client
        .status(failed.job_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        still.state,
        reelq_core::JobState::Failed,
        "dismissed: nothing moved"
    );
    // The job page is already on screen, so the answer to the form's POST cannot be told
    // from it: the ledger's change feed says when the retry has landed.
    let mut changes = deployment.ledger.changes().await.unwrap();
    browser.click("#retry").await;
    browser
        .call(reqwest::Method::POST, "/alert/accept", json!({}))
        .await;
    tokio::time::timeout(EVENT_TIMEOUT, async {
        while let Some((job_id, _)) = futures_util::StreamExt::next(&mut changes).await {
            if job_id == failed.job_id {
                return;
            }
        }
    })
    .await
    .expect("the retry moves the job");
    browser.find("#timeline").await;
    let history = deployment.client.history(failed.job_id).await.unwrap();
    assert!(
        history.iter().any(|event| event.contains("retried")),
        "accepted: the job went back ({history:?})"
    );

    // The batch the run made.
    let batch = records[0].batch.expect("a manifest is a batch");
    browser.go(&format!("{base}/ui/batches/{batch}")).await;
    browser.find("#progress").await;
    browser.screenshot("dashboard-batch").await;
    browser.assert_accessible("batch").await;
    browser.go(&format!("{base}/ui/batches")).await;
    browser.find("#batches").await;
    browser.assert_accessible("batches").await;
    browser.go(&format!("{base}/ui/usage")).await;
    browser.find("#usage").await;
    browser.assert_accessible("usage").await;
    // The check can fail: an image without a text alternative, added to the page, is found.
    browser
        .run("const image = document.createElement('img'); image.src = 'data:,'; document.body.append(image); arguments[0](true);")
        .await;
    let found = browser.violations().await;
    assert!(
        found
            .iter()
            .any(|violation| violation.starts_with("image-alt")),
        "{found:#?}"
    );
}
