//! The contract fixtures (`tests/fixtures/index.toml`): request, answer and callback bodies
//! from each provider's documents, each checked against both sides. The adapter reads every
//! answer and callback body, served over real HTTP as the provider would; the simulator
//! accepts every documented request, and its own answers and callbacks carry every field the
//! documented ones carry, with the same JSON types. The adapters and the simulator were
//! written from one reading of the documents; these bodies are the third party between them.

use std::{collections::BTreeSet, path::PathBuf, time::Duration};

use axum::{Router, extract::State, http::HeaderMap, routing::post};
use reelq_core::{Catalog, JobId, JobRequest, JobSpec, ProviderKind, Secret};
use reelq_providers::{AccountConfig, Submission, TaskStatus, WebhookKey, adapter};
use reelq_sim::{SimConfig, Simulator};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::mpsc;

/// `<access key>:<secret key>`, as a Kling key is given; every other contract sends it whole.
const API_KEY: &str = "sk-fixtures:fixtures-secret";
const WHSEC: &str = "whsec_c2VjcmV0LWZvci1maXh0dXJlcw==";
#[path = "fixtures/routes.rs"]
mod routes;

use routes::{create_path, keyed, simulator_query, task_id_of};

const EXAMPLE_CATALOG: &str = include_str!("../../../examples/catalog/models.toml");

#[derive(Deserialize)]
struct Index {
    fixture: Vec<Fixture>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Fixture {
    file: String,
    kind: Kind,
    source: String,
    #[serde(default)]
    reconstructed: bool,
    task_id: Option<String>,
    result_url: Option<String>,
    #[serde(default = "yes")]
    shape_of_simulator: bool,
    /// The model of a create request whose contract names it in the path (Replicate).
    model: Option<String>,
}

fn yes() -> bool {
    true
}

#[derive(Deserialize, Clone, Copy, PartialEq, Eq, Debug)]
#[serde(rename_all = "snake_case")]
enum Kind {
    CreateRequest,
    CreateAnswer,
    QueryAnswer,
    Callback,
}

impl Fixture {
    fn provider(&self) -> ProviderKind {
        self.file.split('/').next().unwrap().parse().unwrap()
    }

    fn body(&self) -> Vec<u8> {
        let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures")
            .join(&self.file);
        std::fs::read(&path).unwrap_or_else(|err| panic!("{}: {err}", path.display()))
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body()).expect("a fixture is JSON")
    }

    /// The model a create request fixture asks for: in its body (`model_name` at Kling), or
    /// (Replicate) the index's.
    fn model(&self) -> String {
        let body = self.json();
        self.model
            .clone()
            .or_else(|| {
                body["model"]
                    .as_str()
                    .or(body["model_name"].as_str())
                    .map(str::to_owned)
            })
            .unwrap_or_else(|| panic!("{}: names its model", self.file))
    }
}

/// Where a contract's create body keeps the request fields: kie's and Replicate's in
/// `input`, the others' at the top.
fn fields_of(provider: ProviderKind, body: &Value) -> &Value {
    match provider {
        ProviderKind::Kie | ProviderKind::Replicate => &body["input"],
        ProviderKind::Gemini | ProviderKind::Dashscope => &body["parameters"],
        _ => body,
    }
}

/// A create's prompt: beside its fields, or (Gemini) in its one instance.
fn prompt_of(provider: ProviderKind, body: &Value) -> Option<String> {
    let prompt = match provider {
        ProviderKind::Gemini => &body["instances"][0]["prompt"],
        ProviderKind::Ark => &body["content"][0]["text"],
        ProviderKind::Dashscope => &body["input"]["prompt"],
        _ => &fields_of(provider, body)["prompt"],
    };
    prompt.as_str().map(str::to_owned)
}

/// Whether the contract calls back at all (the Gemini API does not).
fn calls_back(provider: ProviderKind) -> bool {
    !matches!(provider, ProviderKind::Gemini | ProviderKind::Dashscope)
}

/// The fields of a create that carry the callback URL, by contract, and the job's own id
/// (Kling's `external_task_id`): each job's own, so no document's example has ours.
const CALLBACK_FIELDS: [&str; 4] = ["callBackUrl", "callback_url", "webhook", "external_task_id"];

/// The fixture of `kind` for `provider` (each contract has one of every kind).
fn of_kind(fixtures: &[Fixture], provider: ProviderKind, kind: Kind) -> &Fixture {
    fixtures
        .iter()
        .find(|f| f.provider() == provider && f.kind == kind)
        .unwrap_or_else(|| panic!("{provider} has a {kind:?} fixture"))
}

fn fixtures() -> Vec<Fixture> {
    let text = std::fs::read_to_string(
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/index.toml"),
    )
    .unwrap();
    toml::from_str::<Index>(&text).unwrap().fixture
}

/// Every field path of `value` with its JSON type (`data.resultUrls[]: string`); list
/// items are one path, whatever their number.
fn shape(value: &Value) -> BTreeSet<String> {
    fn walk(path: &str, value: &Value, out: &mut BTreeSet<String>) {
        let kind = match value {
            Value::Null => "null",
            Value::Bool(_) => "bool",
            Value::Number(_) => "number",
            Value::String(_) => "string",
            Value::Array(items) => {
                items
                    .iter()
                    .for_each(|item| walk(&format!("{path}[]"), item, out));
                "array"
            }
            Value::Object(fields) => {
                for (key, field) in fields {
                    let path = if path.is_empty() {
                        key.clone()
                    } else {
                        format!("{path}.{key}")
                    };
                    walk(&path, field, out);
                }
                "object"
            }
        };
        out.insert(format!("{path}: {kind}"));
    }
    let mut out = BTreeSet::new();
    walk("", value, &mut out);
    out
}

/// The documented body's fields missing from (or typed otherwise in) the simulator's; a
/// documented `null` must be there too (a provider that sends `null` where a value goes must
/// reach reelq's readers), holding `null` or a value.
fn missing(documented: &Value, simulated: &Value) -> Vec<String> {
    let simulated = shape(simulated);
    let has_key = |key: &str| {
        simulated.iter().any(|path| {
            path.rsplit_once(": ")
                .is_some_and(|(field, _)| field == key)
        })
    };
    shape(documented)
        .into_iter()
        .filter(|path| match path.strip_suffix(": null") {
            Some(key) => !has_key(key),
            None => !simulated.contains(path),
        })
        .collect()
}

/// A server that answers every request with `body`, as the provider would (but a status
/// call, which fal makes before fetching a result, with `COMPLETED`).
/// A normal-priority submit of `spec`.
fn submission<'a>(spec: &'a JobSpec, callback_url: Option<&'a str>) -> Submission<'a> {
    Submission::new(JobId::new(), spec, callback_url)
}

async fn serving(body: Vec<u8>) -> String {
    let app = Router::new().fallback(move |uri: axum::http::Uri| {
        let body = match uri.path().ends_with("/status") {
            true => br#"{"status":"COMPLETED"}"#.to_vec(),
            false => body.clone(),
        };
        async move { ([("content-type", "application/json")], body) }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    url
}

/// A receiver for the simulator's callbacks, handing each body on.
async fn callback_receiver() -> (String, mpsc::UnboundedReceiver<Value>) {
    let (sender, receiver) = mpsc::unbounded_channel();
    let app =
        Router::new()
            .route(
                "/cb",
                post(
                    |State(sender): State<mpsc::UnboundedSender<Value>>,
                     body: axum::body::Bytes| async move {
                        let _ = sender.send(serde_json::from_slice(&body).unwrap_or_default());
                        ""
                    },
                ),
            )
            .with_state(sender);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/cb", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, receiver)
}

fn account(base_url: &str) -> AccountConfig {
    AccountConfig {
        base_url: base_url.to_owned(),
        api_key: Secret::new(API_KEY),
        request_timeout: Duration::from_secs(5),
        webhook_secret: None,
    }
}

/// The rows the documents were written for, as they were sold: most fixtures are the Sora
/// pages of their providers, and the Sora rows are now paused or retired.
fn catalog() -> Catalog {
    Catalog::built_in()
        .with_file(EXAMPLE_CATALOG, "examples/catalog/models.toml")
        .unwrap()
        .as_once_sold()
}

/// The spec a documented create request asks for, in reelq's terms.
fn spec_for(fixture: &Fixture) -> JobSpec {
    let provider = fixture.provider();
    let request = fixture.json();
    let fields = fields_of(provider, &request);
    let catalog = catalog();
    let rule = catalog.rule(provider, &fixture.model()).unwrap();
    let images: Vec<String> = rule
        .request
        .images
        .as_ref()
        .map(|images| &fields[&images.field])
        .into_iter()
        .flat_map(|value| match value {
            Value::String(url) => vec![url.clone()],
            Value::Array(urls) => urls
                .iter()
                .filter_map(|u| u.as_str().map(str::to_owned))
                .collect(),
            _ => vec![],
        })
        .collect();
    // Find the row's choices that write this request's fields.
    for &duration_s in &rule.durations {
        for &aspect in &rule.aspects {
            for &quality in &rule.qualities {
                let written =
                    rule.provider_request(duration_s, aspect, quality, &Default::default());
                if written
                    .fields
                    .iter()
                    .all(|(field, value)| &fields[field] == value)
                {
                    return JobRequest {
                        provider: Some(provider.to_string()),
                        model: Some(rule.model.clone()),
                        prompt: prompt_of(provider, &request),
                        duration_s: Some(duration_s),
                        aspect: Some(aspect.to_string()),
                        quality: Some(quality.to_string()),
                        image_urls: images.clone(),
                        ..JobRequest::default()
                    }
                    .validate(&catalog, 0)
                    .unwrap();
                }
            }
        }
    }
    panic!("no choice of {} writes {request}", rule.model)
}

async fn simulator() -> Simulator {
    let config = SimConfig {
        webhook_secret: Some(WHSEC.into()),
        catalog: catalog(),
        ..SimConfig::new(API_KEY, Duration::ZERO)
    };
    Simulator::start("127.0.0.1:0".parse().unwrap(), config)
        .await
        .unwrap()
}

/// Sends `request` to the simulator's create route of `fixture`'s provider, as a client of
/// it would: each create under a client-chosen id of its own (Kling keeps them unique).
async fn post_create(sim: &Simulator, fixture: &Fixture, request: &Value) -> reqwest::Response {
    let mut request = request.clone();
    if let Some(id) = request.get_mut("external_task_id") {
        *id = json!(JobId::new().to_string());
    }
    let request = &request;
    let post = reqwest::Client::new().post(format!(
        "{}{}",
        sim.base_url(),
        create_path(fixture, request)
    ));
    keyed(fixture.provider(), post)
        .json(request)
        .send()
        .await
        .unwrap()
}

/// A documented create request, sent to the simulator: accepted, answered in the shape of
/// the documented answer, and the adapter's create for the same choices writes the same
/// fields and values. Returns the task and what the simulator answered.
async fn check_create_request(fixture: &Fixture, sim: &Simulator) -> (String, Value) {
    let provider = fixture.provider();
    let documented = fixture.json();
    let answer = post_create(sim, fixture, &documented).await;
    let status = answer.status();
    let answer: Value = answer.json().await.unwrap_or_default();
    assert!(status.is_success(), "{}: {status} {answer}", fixture.file);
    let task_id = task_id_of(&answer);

    let spec = spec_for(fixture);
    let adapter = adapter(provider, account(sim.base_url())).unwrap();
    let ours = adapter
        .submit(submission(&spec, Some("https://example.com/cb")))
        .await
        .unwrap();
    let mut sent = sim.create_body(&ours).unwrap();
    if matches!(
        provider,
        ProviderKind::Replicate | ProviderKind::Gemini | ProviderKind::Fal
    ) {
        // The simulator keeps the path's model beside the body, as the provider's record does.
        sent.as_object_mut().unwrap().remove("model");
    }
    let without_callbacks = |mut body: Value| {
        for field in CALLBACK_FIELDS {
            body.as_object_mut().unwrap().remove(field);
        }
        body
    };
    let sent = without_callbacks(sent);
    assert_eq!(
        shape(&sent),
        shape(&without_callbacks(documented.clone())),
        "{}: the adapter's create writes the documented fields",
        fixture.file
    );
    let scalars = |body: &Value| -> Vec<(String, Value)> {
        fields_of(provider, body)
            .as_object()
            .unwrap()
            .iter()
            .filter(|(_, v)| !v.is_object() && !v.is_array())
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    };
    assert_eq!(
        scalars(&sent),
        scalars(&without_callbacks(documented)),
        "{}",
        fixture.file
    );
    (task_id, answer)
}

#[tokio::test]
async fn every_fixture_is_read_by_its_adapter_and_matched_by_the_simulator() {
    let fixtures = fixtures();
    for provider in ProviderKind::ALL {
        let kinds: BTreeSet<_> = fixtures
            .iter()
            .filter(|f| f.provider() == provider)
            .map(|f| format!("{:?}", f.kind))
            .collect();
        let expected = if calls_back(provider) { 4 } else { 3 };
        assert_eq!(
            kinds.len(),
            expected,
            "{provider} has every kind of fixture: {kinds:?}"
        );
    }
    let sim = simulator().await;
    let (callback_url, mut callbacks) = callback_receiver().await;
    sim.set_account_webhook_url(callback_url.clone());
    for fixture in &fixtures {
        assert!(
            !fixture.source.is_empty(),
            "{}: names its document",
            fixture.file
        );
        let provider = fixture.provider();
        let body = fixture.body();
        let context = format!("{} ({})", fixture.file, fixture.source);
        match fixture.kind {
            Kind::CreateRequest => {
                let (_, answer) = check_create_request(fixture, &sim).await;
                let documented_answer = of_kind(&fixtures, provider, Kind::CreateAnswer).json();
                assert_eq!(
                    missing(&documented_answer, &answer),
                    Vec::<String>::new(),
                    "{context}: the simulator's create answer"
                );
            }
            Kind::CreateAnswer => {
                let served = serving(body).await;
                let spec = spec_for(of_kind(&fixtures, provider, Kind::CreateRequest));
                let task_id = adapter(provider, account(&served))
                    .unwrap()
                    .submit(submission(&spec, Some("https://example.com/cb")))
                    .await
                    .unwrap_or_else(|err| panic!("{context}: {err}"));
                assert_eq!(Some(task_id), fixture.task_id.clone(), "{context}");
            }
            Kind::QueryAnswer => {
                let served = serving(body).await;
                let spec = spec_for(of_kind(&fixtures, provider, Kind::CreateRequest));
                let status = adapter(provider, account(&served))
                    .unwrap()
                    .query(&spec, "task")
                    .await
                    .unwrap_or_else(|err| panic!("{context}: {err}"));
                match status {
                    TaskStatus::Succeeded { result_url } => {
                        assert!(
                            result_url.ends_with(fixture.result_url.as_deref().unwrap()),
                            "{context}: {result_url}"
                        )
                    }
                    other => panic!("{context}: {other:?}"),
                }
                // The simulator's record of a finished task of the documented request.
                let request = of_kind(&fixtures, provider, Kind::CreateRequest);
                let (task_id, _) = check_create_request(request, &sim).await;
                let answer = simulator_query(&sim, provider, &task_id).await;
                assert_eq!(
                    missing(&fixture.json(), &answer),
                    Vec::<String>::new(),
                    "{context}: the simulator's answer"
                );
            }
            Kind::Callback => {
                let mut account = account(sim.base_url());
                let mut headers = HeaderMap::new();
                let now_s = 1_719_168_000;
                if matches!(provider, ProviderKind::Openai | ProviderKind::Replicate) {
                    account.webhook_secret = Some(Secret::new(WHSEC));
                    let key = WebhookKey::parse(WHSEC).unwrap();
                    headers.insert("webhook-id", "evt_abc123".parse().unwrap());
                    headers.insert("webhook-timestamp", now_s.to_string().parse().unwrap());
                    headers.insert(
                        "webhook-signature",
                        key.sign("evt_abc123", now_s, &body).parse().unwrap(),
                    );
                }
                let mut now_s = now_s;
                if provider == ProviderKind::Fal {
                    // Signed now by the simulator's key, which its JWKS publishes.
                    now_s = std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .unwrap()
                        .as_secs();
                    let task_id = fixture.task_id.as_deref().unwrap();
                    let text = std::str::from_utf8(&body).unwrap();
                    for (name, value) in reelq_sim::fal_webhook_headers(task_id, text, false) {
                        headers.insert(name, value.parse().unwrap());
                    }
                }
                let adapter = adapter(provider, account).unwrap();
                adapter.refresh_callback_keys().await;
                let hint = adapter
                    .parse_callback(&headers, &body, now_s)
                    .unwrap_or_else(|err| panic!("{context}: {err}"));
                assert_eq!(Some(hint.task_id), fixture.task_id.clone(), "{context}");
                assert!(!hint.progress_only, "{context}: a completion");
                if !fixture.shape_of_simulator {
                    continue;
                }
                // The simulator's callback for a finished task of the documented request.
                let request = of_kind(&fixtures, provider, Kind::CreateRequest);
                let mut documented = request.json();
                for field in CALLBACK_FIELDS {
                    if documented.get(field).is_some() {
                        documented[field] = json!(callback_url);
                    }
                }
                if provider == ProviderKind::Evolink {
                    documented["callback_url"] = json!(callback_url);
                }
                let answer = match provider {
                    // fal takes the webhook URL in the submit's query.
                    ProviderKind::Fal => {
                        let url =
                            format!("{}{}", sim.base_url(), create_path(request, &documented));
                        keyed(provider, reqwest::Client::new().post(url))
                            .query(&[("fal_webhook", &callback_url)])
                            .json(&documented)
                            .send()
                            .await
                            .unwrap()
                    }
                    _ => post_create(&sim, request, &documented).await,
                };
                assert!(answer.status().is_success(), "{context}");
                let task_id = task_id_of(&answer.json().await.unwrap());
                // The receiver also gets the account webhooks of earlier OpenAI-style tasks:
                // this task's callback is the one that names it.
                let delivered = tokio::time::timeout(Duration::from_secs(10), async {
                    loop {
                        let delivered = callbacks.recv().await.unwrap();
                        if delivered.to_string().contains(&task_id) {
                            return delivered;
                        }
                    }
                })
                .await
                .unwrap_or_else(|_| panic!("{context}: the simulator's callback arrives"));
                assert_eq!(
                    missing(&fixture.json(), &delivered),
                    Vec::<String>::new(),
                    "{context}: the simulator's callback"
                );
            }
        }
        if fixture.reconstructed {
            eprintln!("{}: reconstructed from {}", fixture.file, fixture.source);
        }
    }
}
