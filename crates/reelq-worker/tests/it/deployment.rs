//! The deployment files, checked offline as an operator would before deploying (there is
//! no container engine or cluster here): the compose file is parsed and checked for what
//! reelq relies on, and every reelq service's environment is given to `reelq-worker
//! --check-config` as its whole environment; the Kubernetes manifests are validated
//! strictly against Kubernetes' own schemas (kubernetes-validate, 1.30 and 1.37) and checked
//! against the "restricted" Pod Security rules; the Dockerfile is linted (hadolint).

use std::collections::BTreeMap;

use reelq_core::ProviderKind;
use yaml_rust2::{Yaml, YamlLoader};

pub(crate) fn compose() -> Yaml {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docker-compose.yml");
    let text = std::fs::read_to_string(path).expect("docker-compose.yml is readable");
    YamlLoader::load_from_str(&text)
        .expect("docker-compose.yml is YAML")
        .remove(0)
}

pub(crate) fn words(value: &Yaml) -> Vec<String> {
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

/// `value` as compose writes it into the environment: each `${VAR:-default}` read as its
/// default, each `${VAR:?why}` (a value the operator must set in .env) as a stand-in for it
/// (for Kling's key, a stand-in of its `access key:secret key` shape).
fn interpolated(value: &str) -> String {
    let mut out = String::new();
    let mut rest = value;
    while let Some((before, after)) = rest.split_once("${") {
        out.push_str(before);
        let Some((expression, tail)) = after.split_once('}') else {
            out.push_str(after);
            return out;
        };
        match expression.split_once(":-") {
            Some((_, default)) => out.push_str(default),
            None if expression.starts_with("KLING_API_KEY") => {
                out.push_str("access-from-the-env-file:secret-from-the-env-file")
            }
            None => out.push_str("value-from-the-env-file"),
        }
        rest = tail;
    }
    out.push_str(rest);
    out
}

/// A service's environment with `<<` merges applied and `${VAR:-default}` read as its default.
pub(crate) fn environment(service: &Yaml) -> BTreeMap<String, String> {
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
            env.insert(k.as_str().unwrap_or_default().to_owned(), interpolated(&v));
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

/// A service with its `<<` merge keys applied (the reader keeps them as keys): the merged
/// maps' entries, then the service's own over them.
fn flattened(service: &Yaml) -> Yaml {
    let mut out = yaml_rust2::yaml::Hash::new();
    let own = service.as_hash().cloned().unwrap_or_default();
    if let Some(merged) = own.get(&Yaml::String("<<".into())).and_then(Yaml::as_hash) {
        out.extend(merged.clone());
    }
    out.extend(
        own.into_iter()
            .filter(|(key, _)| key.as_str() != Some("<<")),
    );
    Yaml::Hash(out)
}

/// The compose file's text, for what the YAML reader resolves away (`${...}` forms).
fn compose_text() -> String {
    std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../docker-compose.yml"
    ))
    .unwrap()
}

#[test]
fn compose_pins_every_image_builds_reelq_once_and_has_no_default_secret() {
    let compose = compose();
    let services = compose["services"].as_hash().unwrap();
    let mut builds = 0;
    for (name, service) in services {
        let name = name.as_str().unwrap();
        let service = &flattened(service);
        let image = service["image"].as_str().unwrap_or_default();
        let (_, tag) = image.rsplit_once(':').unwrap_or_default();
        assert!(
            tag.chars().any(|c| c.is_ascii_digit()) && tag != "latest",
            "{name}: image {image:?} is not pinned to a version"
        );
        builds += usize::from(!service["build"].is_badvalue());
        if image.starts_with("reelq:") {
            assert_eq!(
                service["init"].as_bool(),
                Some(true),
                "{name} runs under an init"
            );
        }
        if name != "s3-bucket" {
            assert!(
                !service["healthcheck"].is_badvalue(),
                "{name} has a healthcheck"
            );
        }
    }
    assert_eq!(builds, 1, "reelq's image is built once");
    let api_ports = words(&compose["services"]["api"]["ports"]);
    assert!(
        api_ports.iter().all(|port| port.starts_with("127.0.0.1:")),
        "the API is published on loopback only: {api_ports:?}"
    );
    let text = compose_text();
    let contracts: Vec<String> = ProviderKind::ALL
        .iter()
        .map(|kind| kind.as_str().to_ascii_uppercase())
        .collect();
    let key_variables = contracts.iter().map(|name| format!("{name}_API_KEY"));
    let secrets = [
        "REELQ_API_TOKEN",
        "S3_ACCESS_KEY_ID",
        "S3_SECRET_ACCESS_KEY",
    ]
    .map(String::from)
    .into_iter()
    .chain(key_variables);
    for secret in secrets {
        assert!(
            !text.contains(&format!("${{{secret}:-")),
            "{secret} has a default value in the compose file"
        );
        assert!(
            text.contains(&format!("${{{secret}:?")),
            "{secret} must be set"
        );
    }
    // Every contract has an account (from the one env file): a job for one without would
    // sit queued forever.
    let env = environment(&compose["services"]["worker"]);
    for contract in &contracts {
        assert!(
            env.contains_key(&format!("REELQ_PROVIDERS__{contract}__API_KEY")),
            "no {contract} account in the compose file"
        );
    }
}

/// A linter's path from the environment: scripts/test installs them.
fn linter(variable: &str) -> String {
    std::env::var(variable).unwrap_or_else(|_| {
        panic!("{variable} is not set: run scripts/test, which installs the checkers")
    })
}

pub(crate) const MANIFESTS: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../deploy/kubernetes/reelq.yaml"
);

#[test]
fn the_kubernetes_manifests_validate_strictly_on_old_and_new_kubernetes() {
    for version in ["1.30", "1.37"] {
        let output = std::process::Command::new(linter("K8S_VALIDATE"))
            .args(["--strict", "--quiet", "-k", version, MANIFESTS])
            .output()
            .expect("kubernetes-validate runs");
        assert!(
            output.status.success(),
            "kubernetes {version}:\n{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

/// The "restricted" Pod Security Standard, as Kubernetes documents it, for one pod spec:
/// why it fails, or None.
fn restricted_violation(pod: &Yaml) -> Option<String> {
    let pod_security = &pod["securityContext"];
    for field in ["hostNetwork", "hostPID", "hostIPC"] {
        if pod[field].as_bool() == Some(true) {
            return Some(format!("{field} is on"));
        }
    }
    let allowed_volumes = [
        "configMap",
        "csi",
        "downwardAPI",
        "emptyDir",
        "ephemeral",
        "persistentVolumeClaim",
        "projected",
        "secret",
        "name",
    ];
    for volume in pod["volumes"].as_vec().into_iter().flatten() {
        for (kind, _) in volume.as_hash().into_iter().flatten() {
            if !allowed_volumes.contains(&kind.as_str().unwrap_or_default()) {
                return Some(format!("volume type {kind:?}"));
            }
        }
    }
    for container in pod["containers"].as_vec().into_iter().flatten() {
        let name = container["name"].as_str().unwrap_or("?");
        let security = &container["securityContext"];
        let either = |field: &str| {
            let own = &security[field];
            if own.is_badvalue() {
                pod_security[field].clone()
            } else {
                own.clone()
            }
        };
        if either("runAsNonRoot").as_bool() != Some(true) {
            return Some(format!("{name}: runAsNonRoot is not true"));
        }
        if either("runAsUser").as_i64() == Some(0) {
            return Some(format!("{name}: runs as uid 0"));
        }
        if either("seccompProfile")["type"].as_str() != Some("RuntimeDefault")
            && either("seccompProfile")["type"].as_str() != Some("Localhost")
        {
            return Some(format!("{name}: no RuntimeDefault seccomp profile"));
        }
        if security["allowPrivilegeEscalation"].as_bool() != Some(false) {
            return Some(format!("{name}: allowPrivilegeEscalation is not false"));
        }
        if security["privileged"].as_bool() == Some(true) {
            return Some(format!("{name}: privileged"));
        }
        let drops: Vec<String> = words(&security["capabilities"]["drop"]);
        if !drops.iter().any(|cap| cap == "ALL") {
            return Some(format!("{name}: capabilities not dropped (ALL)"));
        }
        let adds = words(&security["capabilities"]["add"]);
        if adds.iter().any(|cap| cap != "NET_BIND_SERVICE") {
            return Some(format!("{name}: adds capabilities {adds:?}"));
        }
    }
    None
}

#[test]
fn every_kubernetes_pod_is_restricted_probed_bounded_pinned_and_has_a_disruption_budget() {
    let text = std::fs::read_to_string(MANIFESTS).unwrap();
    let docs = YamlLoader::load_from_str(&text).expect("the manifests are YAML");
    let budgets: Vec<&Yaml> = docs
        .iter()
        .filter(|doc| doc["kind"].as_str() == Some("PodDisruptionBudget"))
        .collect();
    let deployments: Vec<&Yaml> = docs
        .iter()
        .filter(|doc| doc["kind"].as_str() == Some("Deployment"))
        .collect();
    assert!(deployments.len() >= 3, "workers, callbacks and the API");
    for deployment in deployments {
        let name = deployment["metadata"]["name"].as_str().unwrap();
        let pod = &deployment["spec"]["template"]["spec"];
        assert_eq!(
            restricted_violation(pod),
            None,
            "{name} at the restricted level"
        );
        let labels = &deployment["spec"]["template"]["metadata"]["labels"];
        let selects = |selector: &Yaml| {
            selector.as_hash().is_some_and(|wanted| {
                wanted
                    .iter()
                    .all(|(k, v)| labels[k.as_str().unwrap()] == *v)
            })
        };
        assert!(
            budgets
                .iter()
                .any(|budget| selects(&budget["spec"]["selector"]["matchLabels"])),
            "{name} has a PodDisruptionBudget"
        );
        for container in pod["containers"].as_vec().unwrap() {
            let image = container["image"].as_str().unwrap();
            assert!(
                !image.ends_with(":latest") && image.contains(':'),
                "{name}: image {image} is pinned"
            );
            for probe in ["readinessProbe", "livenessProbe"] {
                assert!(!container[probe].is_badvalue(), "{name}: {probe}");
            }
            let resources = &container["resources"];
            assert!(
                !resources["requests"]["cpu"].is_badvalue()
                    && !resources["requests"]["memory"].is_badvalue()
                    && !resources["limits"]["memory"].is_badvalue(),
                "{name}: requests and a memory limit"
            );
        }
    }
    // A pod that breaks the rules is caught (the check is not vacuous).
    let loose = YamlLoader::load_from_str(
        "containers: [{name: c, image: 'x:1', securityContext: {allowPrivilegeEscalation: false, capabilities: {drop: [ALL]}}}]\nsecurityContext: {runAsNonRoot: true}",
    )
    .unwrap();
    assert_eq!(
        restricted_violation(&loose[0]).as_deref(),
        Some("c: no RuntimeDefault seccomp profile")
    );
    // Callbacks reach the receiver over TLS.
    let ingress = docs
        .iter()
        .find(|doc| doc["kind"].as_str() == Some("Ingress"))
        .expect("an Ingress for the callback receiver");
    assert!(
        !ingress["spec"]["tls"][0]["secretName"].is_badvalue(),
        "with TLS"
    );
}

#[test]
fn the_dockerfile_passes_hadolint_and_runs_as_a_non_root_user_with_a_health_check() {
    let dockerfile = concat!(env!("CARGO_MANIFEST_DIR"), "/../../Dockerfile");
    let output = std::process::Command::new(linter("HADOLINT"))
        .args(["--no-color", dockerfile])
        .output()
        .expect("hadolint runs");
    assert!(
        output.status.success(),
        "hadolint:\n{}",
        String::from_utf8_lossy(&output.stdout)
    );
    let text = std::fs::read_to_string(dockerfile).unwrap();
    for instruction in ["HEALTHCHECK", "EXPOSE", "WORKDIR", "USER 65534", "CMD"] {
        assert!(text.contains(instruction), "the image has {instruction}");
    }
    let ignored =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../.dockerignore"))
            .unwrap();
    for path in ["target", ".git", ".s3venv", ".checkvenv", ".tools"] {
        assert!(
            ignored.lines().any(|line| line == path),
            ".dockerignore leaves out {path}"
        );
    }
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
        assert_eq!(
            env["REELQ_REDIS_URL"],
            "redis://reelq:value-from-the-env-file@redis:6379/"
        );
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
    // As one JSON line, as the logs are, for a log pipeline to read.
    let line: serde_json::Value = serde_json::from_str(stderr.trim()).expect("one JSON line");
    assert_eq!(line["level"], "ERROR", "{line}");
    assert!(
        line["error"].as_str().unwrap().contains("concurency"),
        "{line}"
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
