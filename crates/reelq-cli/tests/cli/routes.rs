//! Routes from the command line: a job submitted to a route, and the routes' live state.

use super::*;

#[test]
fn a_job_goes_to_its_routes_cheapest_candidate_and_routes_show_each_candidates_state() {
    let redis = RedisServer::start().unwrap();
    let submitted = reelq(
        &redis,
        &[
            "submit",
            "--route",
            "veo-3.1-fast",
            "--prompt",
            "a lighthouse at dusk",
            "--duration-s",
            "8",
        ],
    );
    assert!(submitted.status.success(), "{submitted:?}");
    let job_id = String::from_utf8_lossy(&submitted.stdout).trim().to_owned();
    let shown = reelq(&redis, &["status", &job_id, "-o", "json"]);
    let record: serde_json::Value = serde_json::from_slice(&shown.stdout).unwrap();
    assert_eq!(
        record["spec"]["provider"], "evolink",
        "$0.12/s before $0.15/s"
    );
    assert_eq!(
        record["spec"]["route"]["candidates"]
            .as_array()
            .unwrap()
            .len(),
        4
    );

    let both = reelq(
        &redis,
        &[
            "submit",
            "--route",
            "veo-3.1-fast",
            "--provider",
            "fal",
            "--prompt",
            "p",
        ],
    );
    assert!(
        !both.status.success(),
        "a route leaves the provider to its candidates"
    );
    let none = reelq(
        &redis,
        &[
            "submit",
            "--route",
            "veo-3.1-fast",
            "--prompt",
            "p",
            "--duration-s",
            "10",
        ],
    );
    assert!(!none.status.success());
    assert!(
        String::from_utf8_lossy(&none.stderr).contains("no candidate of route"),
        "{none:?}"
    );

    let paused = reelq(&redis, &["providers", "pause", "evolink", "--for", "2h"]);
    assert!(paused.status.success(), "{paused:?}");
    let listed = reelq(&redis, &["providers", "routes", "-o", "json"]);
    assert!(listed.status.success(), "{listed:?}");
    let routes: serde_json::Value = serde_json::from_slice(&listed.stdout).unwrap();
    let veo = routes
        .as_array()
        .unwrap()
        .iter()
        .find(|route| route["name"] == "veo-3.1-fast")
        .unwrap();
    let evolink = &veo["live"][0];
    assert_eq!(evolink["account"], "evolink");
    assert_eq!(evolink["model_status"], "active");
    assert!(
        evolink["paused_ms"].as_u64().unwrap() > 3_600_000,
        "{evolink}"
    );
    assert_eq!(veo["live"][1]["paused_ms"], serde_json::Value::Null);
    let table = reelq(&redis, &["providers", "routes"]);
    let table = String::from_utf8_lossy(&table.stdout);
    assert!(table.contains("veo-3.1-fast (Cheapest"), "{table}");
    assert!(
        table.contains("paused 2h") || table.contains("paused 1h 59m"),
        "{table}"
    );
}
