use super::*;

fn load_toml(toml: &str) -> Result<WorkerConfig, WorkerError> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("reelq.toml");
    std::fs::write(&path, toml).unwrap();
    WorkerConfig::load(Some(&path))
}

const KIE: &str = "[providers.kie]\nbase_url = \"http://127.0.0.1:1\"\napi_key = \"sk-1\"\n";

#[test]
fn a_file_overrides_the_defaults() {
    let config = load_toml(&format!("concurrency = 3\n{KIE}")).unwrap();
    assert_eq!(config.concurrency, 3);
    assert_eq!(config.lease, Duration::from_secs(60));
    assert_eq!(config.retention, Duration::from_secs(7 * 24 * 3600));
    assert_eq!(config.providers.kie.unwrap().api_key.expose(), "sk-1");
}

#[test]
fn durations_read_as_people_write_them_and_as_older_configs_wrote_them() {
    let config = load_toml(&format!(
        "lease = \"1m 30s\"\nretention = \"0s\"\n{KIE}first_poll = \"250ms\"\n"
    ))
    .unwrap();
    assert_eq!(config.lease, Duration::from_secs(90));
    assert_eq!(config.retention, Duration::ZERO);
    let kie = config.providers.kie.as_ref().unwrap();
    assert_eq!(kie.first_poll, Duration::from_millis(250));
    assert_eq!(
        kie.poll_max,
        Duration::from_secs(60),
        "an account's default"
    );

    // The keys of releases before, in milliseconds, at every level.
    let older = load_toml(&format!(
        "lease_ms = 5000\n[store]\nlink_ttl_ms = 60000\n{KIE}first_poll_ms = 100\n"
    ))
    .unwrap();
    assert_eq!(older.lease, Duration::from_secs(5));
    let warning = older.warnings().join("\n");
    assert!(
        warning.contains("lease_ms, providers.kie.first_poll_ms, store.link_ttl_ms read as"),
        "{warning}"
    );
    assert!(config.warnings().is_empty());
    assert_eq!(older.store.link_ttl, Duration::from_secs(60));
    assert_eq!(
        older.providers.kie.unwrap().first_poll,
        Duration::from_millis(100)
    );

    for (toml, expect) in [
        ("lease = \"soon\"\n", "\"soon\" is not a duration"),
        (
            "lease = \"5s\"\nlease_ms = 5000\n",
            "both lease and lease_ms",
        ),
        ("lease_ms = \"5s\"\n", "must be a whole number"),
    ] {
        let err = load_toml(&format!("{toml}{KIE}")).unwrap_err().to_string();
        assert!(err.contains(expect), "{toml}: {err}");
    }
}

#[test]
fn named_accounts_need_a_contract_that_fits_and_a_name_given_once() {
    let account = |name: &str, contract: &str| {
        format!("[accounts.{name}]\n{contract}base_url = \"http://127.0.0.1:1\"\napi_key = \"k\"\n")
    };
    let two = load_toml(
        &(account("kie_a", "contract = \"kie\"\n") + &account("kie_b", "contract = \"kie\"\n")),
    )
    .unwrap();
    let names: Vec<String> = two.accounts().iter().map(|a| a.name.to_string()).collect();
    assert_eq!(names, ["kie_a", "kie_b"]);
    assert_eq!(
        two.limits().len(),
        2,
        "every account is published, limits or not"
    );
    for (toml, expect) in [
        (account("kie_a", ""), "accounts.kie_a: contract is required"),
        (
            account("acedata", "contract = \"kie\"\n"),
            "the acedata contract's own name",
        ),
        (
            format!("{KIE}{}", account("kie", "contract = \"kie\"\n")),
            "the account kie is given twice",
        ),
        (
            KIE.replace("api_key", "contract = \"openai\"\napi_key"),
            "providers.kie: its contract is kie",
        ),
    ] {
        let err = load_toml(&toml).unwrap_err().to_string();
        assert!(err.contains(expect), "{err}");
    }
}

#[test]
fn an_evolink_account_needs_callback_urls_evolink_accepts() {
    let evolink = "[providers.evolink]\nbase_url = \"https://api.evolink.ai\"\napi_key = \"k\"\n";
    let with_base = |base: &str| {
        load_toml(&format!(
            "{evolink}[callbacks]\npublic_base_url = \"{base}\"\n"
        ))
    };
    for (base, problem) in [
        ("http://callbacks.example.com", "not HTTPS"),
        ("https://10.0.0.7:8443", "a private address"),
        (
            &format!("https://example.com/{}", "a".repeat(2000)),
            "too long",
        ),
    ] {
        let err = with_base(base).unwrap_err().to_string();
        assert!(
            err.contains(problem) && err.contains("EvoLink refuses"),
            "{err}"
        );
    }
    with_base("https://callbacks.example.com").unwrap();
    // Loopback reaches only a local simulator; it is not refused.
    with_base("http://127.0.0.1:8081").unwrap();
}

#[test]
fn a_misspelt_key_is_an_error_naming_it() {
    let err = load_toml(&format!("concurency = 3\n{KIE}")).unwrap_err();
    assert!(err.to_string().contains("concurency"), "{err}");
}

#[test]
fn the_api_key_and_the_redis_password_never_show_in_debug_output() {
    let config = load_toml(&format!(
        "redis_url = \"redis://:redis-password-1@127.0.0.1:6390/\"\n{KIE}"
    ))
    .unwrap();
    let debug = format!("{config:?}");
    assert!(
        !debug.contains("sk-1") && !debug.contains("redis-password-1"),
        "{debug}"
    );
}

#[test]
fn the_documented_settings_are_the_defaults_file() {
    // docs/operations.md's example config shows every setting of the one defaults file, with
    // its default value (or says which it changes).
    let docs = include_str!("../../../../docs/operations.md");
    let example = docs
        .split("```toml\n")
        .nth(1)
        .and_then(|rest| rest.split("\n```").next())
        .expect("docs/operations.md has the example config");
    let defaults: toml::Table = toml::from_str(DEFAULTS).unwrap();
    let mut checked = 0;
    let mut missing = Vec::new();
    let mut section = String::new();
    let documented: Vec<(String, String)> = example
        .lines()
        .filter_map(|line| {
            let line = line.split(" #").next().unwrap_or_default().trim();
            if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
                section = name.to_owned();
                return None;
            }
            let (key, value) = line.split_once('=')?;
            let key = match section.as_str() {
                "" => key.trim().to_owned(),
                section => format!("{section}.{}", key.trim()),
            };
            Some((key, value.trim().to_owned()))
        })
        .collect();
    let mut check = |key: String, value: &toml::Value| {
        checked += 1;
        match documented.iter().find(|(name, _)| *name == key) {
            Some((_, shown)) if *shown == value.to_string() => {}
            Some((_, shown)) => missing.push(format!("{key}: shown {shown}, default {value}")),
            None => missing.push(format!("{key} (default {value}) is not documented")),
        }
    };
    for (key, value) in &defaults {
        match value {
            toml::Value::Table(table) => {
                for (inner, value) in table {
                    check(format!("{key}.{inner}"), value);
                }
            }
            value => check(key.clone(), value),
        }
    }
    assert!(checked > 30, "checked {checked}");
    assert!(missing.is_empty(), "docs/operations.md: {missing:#?}");
}
