//! Every provider's callback parser against arbitrary bytes: it never panics, an adapter that
//! checks signatures accepts nothing unsigned, and the near-misses (a real callback's shape
//! with random values, wrong types, missing fields) are refused or read, never mis-read.

use std::{
    sync::{Arc, LazyLock},
    time::Duration,
};

use proptest::prelude::*;
use reelq_core::{ProviderKind, Secret};
use reelq_providers::{AccountConfig, Provider, adapter};
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};

const NOW_S: u64 = 1_800_000_000;

fn account(webhook_secret: Option<&str>) -> AccountConfig {
    AccountConfig {
        // Parsing a callback makes no call: nothing listens here.
        base_url: "http://127.0.0.1:9".into(),
        api_key: Secret::new("sk-prop:prop-secret"),
        request_timeout: Duration::from_secs(1),
        webhook_secret: webhook_secret.map(Secret::new),
    }
}

/// Built once: an adapter's HTTP client is costly to make and parsing never uses it.
static UNSIGNED: LazyLock<Vec<Arc<dyn Provider>>> = LazyLock::new(|| {
    ProviderKind::ALL
        .into_iter()
        .map(|kind| adapter(kind, account(None)).unwrap())
        .collect()
});
static SIGNED: LazyLock<[Arc<dyn Provider>; 2]> = LazyLock::new(|| {
    [
        adapter(ProviderKind::Kie, account(Some("whk-prop-key"))).unwrap(),
        adapter(
            ProviderKind::Openai,
            account(Some("whsec_dGVzdC13ZWJob29rLXNlY3JldC0xMjM0NTY=")),
        )
        .unwrap(),
    ]
});

/// Headers as a stranger could send them, including the names signatures use.
fn headers() -> impl Strategy<Value = HeaderMap> {
    let name = prop_oneof![
        Just("x-webhook-timestamp"),
        Just("x-webhook-signature"),
        Just("webhook-id"),
        Just("webhook-timestamp"),
        Just("webhook-signature"),
        Just("content-type"),
    ];
    proptest::collection::vec((name, "[ -~]{0,40}"), 0..6).prop_map(|pairs| {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            if let Ok(value) = HeaderValue::from_str(&value) {
                map.append(HeaderName::from_static(name), value);
            }
        }
        map
    })
}

/// Bodies: arbitrary bytes, or each provider's documented shapes with random values.
fn bodies() -> impl Strategy<Value = Vec<u8>> {
    let value = prop_oneof![
        Just(serde_json::Value::Null),
        any::<i64>().prop_map(serde_json::Value::from),
        "[ -~]{0,24}".prop_map(serde_json::Value::from),
        Just(serde_json::json!([])),
        Just(serde_json::json!({})),
    ];
    let shaped = (value.clone(), value.clone(), value, 0usize..4).prop_map(|(a, b, c, shape)| {
        let body = match shape {
            0 => serde_json::json!({ "code": a, "msg": "m", "data": { "taskId": b, "state": c, "resultUrls": [] } }),
            1 => serde_json::json!({ "success": a, "task_id": b, "data": [ { "id": b, "video_url": c, "state": "succeeded" } ] }),
            2 => serde_json::json!({ "id": a, "status": b, "results": [c], "object": "video.generation.task" }),
            _ => serde_json::json!({ "type": a, "data": { "id": b }, "id": c }),
        };
        serde_json::to_vec(&body).unwrap()
    });
    prop_oneof![proptest::collection::vec(any::<u8>(), 0..512), shaped]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn no_callback_body_panics_a_parser_or_passes_an_unsigned_check(
        headers in headers(),
        body in bodies(),
    ) {
        for unsigned in UNSIGNED.iter() {
            if let Ok(hint) = unsigned.parse_callback(&headers, &body, NOW_S) {
                prop_assert!(!hint.task_id.is_empty(), "{} read an empty task id", unsigned.kind());
            }
        }
        // With a signing key configured, nothing a stranger makes up is accepted.
        for signed in SIGNED.iter() {
            prop_assert!(signed.parse_callback(&headers, &body, NOW_S).is_err(), "{}", signed.kind());
        }
    }
}
