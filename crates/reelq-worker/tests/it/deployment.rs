//! The deployment files: there is no container engine here, so the compose file is parsed and
//! checked for what reelq relies on, and every reelq service's environment is given to
//! `reelq-worker --check-config` as its whole environment.

use std::collections::BTreeMap;

use yaml_rust2::{Yaml, YamlLoader};

fn compose() -> Yaml {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docker-compose.yml");
    let text = std::fs::read_to_string(path).expect("docker-compose.yml is readable");
    YamlLoader::load_from_str(&text)
        .expect("docker-compose.yml is YAML")
        .remove(0)
}

fn words(value: &Yaml) -> Vec<String> {
    value
        .as_vec()
        .map(|items| {
            items
                .iter()
                .filter_map(|i| i.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// A service's environment with `<<` merges applied and `${VAR:-default}` read as its default.
fn environment(service: &Yaml) -> BTreeMap<String, String> {
    let mut env = BTreeMap::new();
    let Some(map) = service["environment"].as_hash() else {
        return env;
    };
    for (key, value) in map {
        let pairs: Vec<(&Yaml, &Yaml)> = match key.as_str() {
            Some("<<") => value
                .as_hash()
                .map(|m| m.iter().collect())
                .unwrap_or_default(),
            _ => vec![(key, value)],
        };
        for (k, v) in pairs {
            let v = v
                .as_str()
                .map(str::to_owned)
                .unwrap_or_else(|| format!("{v:?}"));
            let v = match v.strip_prefix("${").and_then(|rest| rest.split_once(":-")) {
                Some((_, default)) => default.trim_end_matches('}').to_owned(),
                None => v,
            };
            env.insert(k.as_str().unwrap_or_default().to_owned(), v);
        }
    }
    env
}

#[test]
fn the_compose_file_runs_redis_durably_and_scales_workers() {
    let compose = compose();
    let services = &compose["services"];
    for name in ["redis", "s3", "sim", "api", "callbacks", "worker"] {
        assert!(!services[name].is_badvalue(), "service {name} is missing");
    }
    let redis = words(&services["redis"]["command"]).join(" ");
    for setting in ["--appendonly yes", "--maxmemory-policy noeviction"] {
        assert!(
            redis.contains(setting),
            "redis runs with {setting}: {redis}"
        );
    }
    let worker = &services["worker"];
    assert!(
        worker["deploy"]["replicas"]
            .as_i64()
            .is_some_and(|n| n >= 2)
    );
    assert!(
        worker["container_name"].is_badvalue() && worker["ports"].is_badvalue(),
        "a worker with a fixed name or host port cannot be scaled"
    );
    assert!(
        worker["stop_grace_period"].as_str().is_some(),
        "SIGTERM drain needs a grace period"
    );
    assert_eq!(words(&services["api"]["command"])[..2], ["reelq", "serve"]);
    assert!(environment(&services["api"]).contains_key("REELQ_API_TOKEN"));
}

#[test]
fn every_worker_service_environment_is_a_valid_worker_config() {
    let compose = compose();
    for name in ["worker", "callbacks"] {
        let service = &compose["services"][name];
        let env = environment(service);
        assert!(
            env["REELQ_STORE__URL"].starts_with("s3://"),
            "{name} stores to S3"
        );
        assert_eq!(env["REELQ_REDIS_URL"], "redis://redis:6379/");
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_reelq-worker"));
        command
            .env_clear()
            .envs(&env)
            .args(&words(&service["command"])[1..])
            .arg("--check-config");
        let output = command.output().expect("reelq-worker runs");
        assert!(
            output.status.success(),
            "{name}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

#[test]
fn check_config_refuses_what_would_stop_the_worker_at_start() {
    let check = |vars: &[(&str, &str)]| {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_reelq-worker"))
            .env_clear()
            .env("REELQ_REDIS_URL", "redis://127.0.0.1:1/")
            .envs(vars.iter().copied())
            .arg("--check-config")
            .output()
            .expect("reelq-worker runs");
        (
            output.status.success(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    };
    let openai = [
        (
            "REELQ_PROVIDERS__OPENAI__BASE_URL",
            "https://gateway.example.com",
        ),
        ("REELQ_PROVIDERS__OPENAI__API_KEY", "sk-x"),
    ];
    let (ok, stderr) = check(&openai);
    assert!(ok, "a good config passes: {stderr}");
    // One environment for every command: the CLI's, serve's and the simulator's variables
    // are not the worker's business; a misspelt worker setting still is.
    let mut shared = openai.to_vec();
    shared.extend([
        ("REELQ_API_TOKEN", "a-token-for-reelq-serve-0123"),
        ("REELQ_PRICES", "prices.toml"),
        ("REELQ_STORE_URL", "s3://videos"),
        ("REELQ_NOTIFY_ALLOW_HTTP", "true"),
        ("REELQ_SIM_API_KEY", "sim-key"),
    ]);
    let (ok, stderr) = check(&shared);
    assert!(ok, "other commands' variables are left to them: {stderr}");
    shared.push(("REELQ_CONCURENCY", "8"));
    let (ok, stderr) = check(&shared);
    assert!(
        !ok && stderr.contains("concurency"),
        "a typo is still refused: {stderr}"
    );
    let mut plain_http = openai.to_vec();
    plain_http.push((
        "REELQ_CALLBACKS__PUBLIC_BASE_URL",
        "http://reelq.example.com",
    ));
    let (ok, stderr) = check(&plain_http);
    assert!(
        ok && stderr.contains("warning: callbacks.public_base_url"),
        "{stderr}"
    );
    for (case, extra, says) in [
        (
            "a mistyped store url",
            ("REELQ_STORE__URL", "s3//bucket"),
            "mistyped",
        ),
        (
            "a malformed webhook secret",
            ("REELQ_PROVIDERS__OPENAI__WEBHOOK_SECRET", "not-a-whsec"),
            "webhook",
        ),
        (
            "a malformed notify secret",
            ("REELQ_NOTIFY__SECRET", "whsec_%%%"),
            "notify.secret",
        ),
    ] {
        let mut vars = openai.to_vec();
        vars.push(extra);
        let (ok, stderr) = check(&vars);
        assert!(!ok, "{case} passed the check");
        assert!(stderr.contains(says), "{case}: {stderr}");
    }
}
