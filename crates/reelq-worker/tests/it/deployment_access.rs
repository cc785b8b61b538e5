//! Who reaches the ledger and what the API is given, in the shipped deployments: Redis's
//! password in every reelq URL (from the Secret on Kubernetes), a NetworkPolicy admitting only
//! reelq's pods, one session key for the API's replicas, and the workers' store for the API.

use yaml_rust2::{Yaml, YamlLoader};

use crate::deployment::{MANIFESTS, compose, environment, words};

/// A container's variable that comes from the `reelq` Secret by name.
fn from_secret(container: &Yaml, variable: &str) -> bool {
    container["env"].as_vec().is_some_and(|env| {
        env.iter().any(|entry| {
            entry["name"].as_str() == Some(variable)
                && entry["valueFrom"]["secretKeyRef"]["key"].as_str() == Some(variable)
        })
    })
}

#[test]
fn only_reelq_reaches_redis_with_a_password_and_api_replicas_share_a_session_and_the_store() {
    // Kubernetes: the Redis URL (with its password) from the Secret in every container, a
    // NetworkPolicy admitting only reelq's pods, the API's replicas one session key and the
    // workers' store.
    let text = std::fs::read_to_string(MANIFESTS).unwrap();
    let docs = YamlLoader::load_from_str(&text).unwrap();
    let policy = docs
        .iter()
        .find(|doc| doc["kind"].as_str() == Some("NetworkPolicy"))
        .expect("a NetworkPolicy for Redis");
    assert_eq!(
        policy["spec"]["podSelector"]["matchLabels"]["app"].as_str(),
        Some("redis")
    );
    let admitted = &policy["spec"]["ingress"][0]["from"][0]["podSelector"]["matchLabels"];
    let config = docs
        .iter()
        .find(|doc| doc["kind"].as_str() == Some("ConfigMap"))
        .unwrap();
    assert!(
        !config["data"]["reelq.toml"]
            .as_str()
            .unwrap()
            .contains("redis_url"),
        "no Redis URL (nor its password) in a ConfigMap"
    );
    for deployment in docs
        .iter()
        .filter(|doc| doc["kind"].as_str() == Some("Deployment"))
    {
        let name = deployment["metadata"]["name"].as_str().unwrap();
        let labels = &deployment["spec"]["template"]["metadata"]["labels"];
        for (key, value) in admitted.as_hash().unwrap() {
            assert_eq!(
                &labels[key.as_str().unwrap()],
                value,
                "{name} is admitted to Redis"
            );
        }
        for container in deployment["spec"]["template"]["spec"]["containers"]
            .as_vec()
            .unwrap()
        {
            assert!(
                from_secret(container, "REELQ_REDIS_URL"),
                "{name}: the Redis URL"
            );
            let serves = container["command"]
                .as_vec()
                .is_some_and(|words| words.iter().any(|word| word.as_str() == Some("serve")));
            if serves {
                let replicas = deployment["spec"]["replicas"].as_i64().unwrap_or(1);
                assert!(
                    replicas < 2 || from_secret(container, "REELQ_SESSION_KEY"),
                    "{name}: {replicas} replicas share one session key"
                );
                let store = container["env"]
                    .as_vec()
                    .unwrap()
                    .iter()
                    .any(|entry| entry["name"].as_str() == Some("REELQ_STORE__URL"));
                assert!(store, "{name}: the store, to play videos and link them");
            }
        }
    }

    // Compose: Redis has one user, reelq's, with a password (the default user off), every
    // reelq process's URL names it, and the API has the workers' store. That the user's
    // rules let reelq run: `redis_user.rs`.
    let compose = compose();
    let services = &compose["services"];
    let redis = words(&services["redis"]["command"]).join(" ");
    assert!(redis.contains("--user default off"), "{redis}");
    assert!(redis.contains("--user reelq on"), "{redis}");
    for name in ["api", "callbacks", "worker"] {
        let env = environment(&services[name]);
        let url = env
            .get("REELQ_REDIS_URL")
            .map(String::as_str)
            .unwrap_or_default();
        assert_eq!(
            url, "redis://reelq:value-from-the-env-file@redis:6379/",
            "{name}"
        );
    }
    let api = environment(&services["api"]);
    assert!(api.contains_key("REELQ_STORE__URL") && api.contains_key("REELQ_STORE__S3__ENDPOINT"));
}
