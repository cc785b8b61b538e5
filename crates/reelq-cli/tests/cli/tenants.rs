//! Tenants from the command line: jobs enqueued for one, the operator's view and weights.

use super::*;

#[test]
fn jobs_are_enqueued_for_a_tenant_and_an_operator_sees_and_weighs_the_tenants() {
    let redis = RedisServer::start().unwrap();
    let submit = |tenant: &[&str]| {
        let mut args = vec![
            "submit",
            "--provider",
            "kie",
            "--model",
            "kling-3.0/video",
            "--prompt",
            "a lighthouse at dusk",
        ];
        args.extend_from_slice(tenant);
        reelq(&redis, &args)
    };
    for tenant in [&["--tenant", "acme"][..], &["--tenant", "acme"], &[]] {
        let submitted = submit(tenant);
        assert!(submitted.status.success(), "{submitted:?}");
    }
    let refused = submit(&["--tenant", "Acme Corp"]);
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("tenant"),
        "the error names the field: {refused:?}"
    );
    let weighed = reelq(&redis, &["tenants", "weight", "acme", "3"]);
    assert!(weighed.status.success(), "{weighed:?}");
    let zero = reelq(&redis, &["tenants", "weight", "acme", "0"]);
    assert!(!zero.status.success(), "a weight of 0 would starve it");
    let capped = reelq(
        &redis,
        &[
            "tenants",
            "limit",
            "acme",
            "--max-in-flight",
            "4",
            "--max-waiting",
            "2",
        ],
    );
    assert!(capped.status.success(), "{capped:?}");
    let over = submit(&["--tenant", "acme"]);
    assert!(
        !over.status.success(),
        "a third job passes its cap of 2 waiting"
    );
    assert!(
        String::from_utf8_lossy(&over.stderr).contains("cap is 2"),
        "{over:?}"
    );

    let listed = reelq(&redis, &["tenants", "list", "-o", "json"]);
    let tenants: serde_json::Value = serde_json::from_slice(&listed.stdout).unwrap();
    let waiting = |name: &str| {
        let share = tenants
            .as_array()
            .unwrap()
            .iter()
            .find(|share| share["tenant"] == name)
            .unwrap_or_else(|| panic!("{name} in {tenants}"));
        (
            share["waiting"].as_u64().unwrap(),
            share["weight"].as_f64().unwrap(),
        )
    };
    assert_eq!(waiting("acme"), (2, 3.0));
    assert_eq!(waiting("default"), (1, 1.0));
    let table = reelq(&redis, &["tenants", "list"]);
    let table = String::from_utf8_lossy(&table.stdout);
    assert!(table.contains("in flight 4, waiting 2"), "{table}");
}

#[test]
fn an_operator_makes_lists_and_revokes_a_tenants_token() {
    let redis = RedisServer::start().unwrap();
    let made = reelq(
        &redis,
        &[
            "tokens",
            "create",
            "acme-backend",
            "--tenant",
            "acme",
            "--scope",
            "enqueue,read",
        ],
    );
    assert!(made.status.success(), "{made:?}");
    let token = String::from_utf8_lossy(&made.stdout).trim().to_owned();
    assert!(token.starts_with("rq_") && token.len() > 40, "{token}");
    let again = reelq(
        &redis,
        &["tokens", "create", "acme-backend", "--scope", "read"],
    );
    assert!(!again.status.success(), "names are unique");
    let bad_scope = reelq(&redis, &["tokens", "create", "x", "--scope", "admin"]);
    assert!(!bad_scope.status.success());

    let listed = reelq(&redis, &["tokens", "list", "-o", "json"]);
    let tokens: serde_json::Value = serde_json::from_slice(&listed.stdout).unwrap();
    assert_eq!(
        tokens,
        serde_json::json!([{
            "name": "acme-backend", "tenant": "acme", "scopes": ["enqueue", "read"],
            "created_ms": tokens[0]["created_ms"],
        }])
    );
    assert!(!String::from_utf8_lossy(&listed.stdout).contains(&token));
    assert!(
        reelq(&redis, &["tokens", "revoke", "acme-backend"])
            .status
            .success()
    );
    assert!(
        !reelq(&redis, &["tokens", "revoke", "acme-backend"])
            .status
            .success()
    );
}
