//! The API's OpenAPI document against the API itself: schemathesis (from PyPI, installed
//! by `scripts/test`) generates requests from the document, valid and invalid, sends them
//! over real HTTP and checks every answer's status, headers, content type and body against
//! what the document says.

use std::collections::BTreeSet;

use serde_json::json;

use super::api::{TOKEN, api, job};

/// Every operation the API serves besides the probes and the document itself.
const OPERATIONS: [&str; 9] = [
    "POST /v1/jobs",
    "GET /v1/jobs",
    "GET /v1/jobs/{job_id}",
    "POST /v1/jobs/{job_id}/cancel",
    "GET /v1/jobs/{job_id}/content",
    "POST /v1/batches",
    "GET /v1/batches/{batch_id}",
    "GET /v1/batches/{batch_id}/jobs",
    "GET /v1/usage",
];

/// Every route of [`OPERATIONS`].
const ROUTES: [&str; 8] = [
    "/v1/jobs",
    "/v1/jobs/{job_id}",
    "/v1/jobs/{job_id}/cancel",
    "/v1/jobs/{job_id}/content",
    "/v1/batches",
    "/v1/batches/{batch_id}",
    "/v1/batches/{batch_id}/jobs",
    "/v1/usage",
];

/// The checks run on every answer: all of schemathesis's but `positive_data_acceptance` (a
/// request valid by the schema can still name a model the catalog does not have: the
/// catalog, a file, decides) and the object-level ones (one token sees every job).
const CHECKS: &str = "not_a_server_error,status_code_conformance,content_type_conformance,\
    response_headers_conformance,response_schema_conformance,negative_data_rejection,\
    missing_required_header,unsupported_method,ignored_auth";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openapi_document_describes_every_route_and_every_answer_conforms_to_it() {
    let schemathesis = std::env::var("SCHEMATHESIS")
        .expect("SCHEMATHESIS is not set: run scripts/test, which installs schemathesis");
    let api = api().await;
    // Real records for the lists and the batch to answer with.
    let (status, _) = api
        .post("/v1/jobs", job("a lighthouse").to_string(), None)
        .await;
    assert_eq!(status, 201);
    let jobs = json!([job("a harbour at dawn"), job("a tram in the rain")]).to_string();
    let (status, receipt) = api
        .post("/v1/batches?name=nightly&budget_usd=5", jobs, None)
        .await;
    assert_eq!(status, 201, "{receipt}");

    let (status, doc) = api.get("/openapi.json").await;
    assert_eq!(status, 200);
    assert_eq!(doc["openapi"], "3.1.0");
    let paths: BTreeSet<&str> = doc["paths"]
        .as_object()
        .expect("paths")
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        paths,
        BTreeSet::from(ROUTES),
        "the document names every route"
    );

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("openapi.json");
    std::fs::write(&file, doc.to_string()).unwrap();
    let junit = dir.path().join("junit.xml");
    let output = tokio::process::Command::new(&schemathesis)
        .current_dir(dir.path())
        .arg("run")
        .arg(&file)
        .args(["--url", &api.base])
        .args(["--header", &format!("Authorization: Bearer {TOKEN}")])
        .args(["--checks", CHECKS])
        .args(["--phases", "examples,coverage,fuzzing,stateful"])
        .args([
            "--max-examples",
            "40",
            "--seed",
            "20261201",
            "--workers",
            "1",
        ])
        .args(["--generation-database", "none", "--no-color"])
        .args(["--report", "junit", "--report-junit-path"])
        .arg(&junit)
        .output()
        .await
        .unwrap_or_else(|err| panic!("{schemathesis} does not run: {err}"));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "schemathesis found answers the document does not describe:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    // It tested every operation (a run that reached nothing would also exit 0).
    let report = std::fs::read_to_string(&junit).unwrap();
    for operation in OPERATIONS {
        assert!(
            report.contains(&format!("name=\"{operation}\"")),
            "{operation} was tested:\n{stdout}"
        );
    }
}

#[tokio::test]
async fn the_document_says_what_a_job_needs_and_how_a_too_large_body_is_refused() {
    let api = api().await;
    let (status, doc) = api.get("/openapi.json").await;
    assert_eq!(status, 200);
    let required: BTreeSet<&str> = doc["components"]["schemas"]["JobRequest"]["required"]
        .as_array()
        .expect("JobRequest lists its required fields")
        .iter()
        .filter_map(|field| field.as_str())
        .collect();
    assert_eq!(required, BTreeSet::from(["provider", "model", "prompt"]));
    let content = &doc["paths"]["/v1/jobs/{job_id}/content"]["get"]["responses"]["200"];
    let video = &content["content"]["video/mp4"]["schema"];
    let video = match video["$ref"].as_str() {
        Some(reference) => &doc["components"]["schemas"][reference.rsplit('/').next().unwrap()],
        None => video,
    };
    assert_eq!(
        (&video["type"], &video["format"]),
        (&json!("string"), &json!("binary")),
        "a video is bytes, not a JSON array: {video}"
    );
    for path in ["/v1/jobs", "/v1/batches"] {
        let refused = &doc["paths"][path]["post"]["responses"]["413"];
        assert!(
            refused["description"]
                .as_str()
                .is_some_and(|d| d.contains("body_too_large")),
            "{path}: {refused}"
        );
    }
    // Times and URLs say their format; every operation has its resource's tag; a generated
    // client calls the server it found the document on.
    let request = &doc["components"]["schemas"]["JobRequest"]["properties"];
    assert_eq!(request["deadline"]["format"], "date-time", "{request}");
    assert_eq!(request["notify_url"]["format"], "uri");
    let options = doc["paths"]["/v1/batches"]["post"]["parameters"]
        .as_array()
        .unwrap();
    let option = |name: &str| options.iter().find(|p| p["name"] == name).unwrap()["schema"].clone();
    assert_eq!(option("start_after")["format"], "date-time");
    assert_eq!(option("notify_url")["format"], "uri");
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            let tag = operation["tags"][0].as_str().unwrap_or_default();
            assert!(
                path.starts_with(&format!("/v1/{tag}")),
                "{method} {path} is tagged {tag:?}"
            );
        }
    }
    assert_eq!(doc["servers"][0]["url"], "/");
}
