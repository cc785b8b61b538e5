use super::*;

#[test]
fn the_built_in_catalog_reads_and_prices_every_row() {
    let catalog = Catalog::built_in_as_once_sold();
    for provider in ProviderKind::ALL {
        assert!(catalog.models_of(provider).next().is_some(), "{provider}");
        assert!(catalog.contract_source(provider).is_some(), "{provider}");
    }
    for rule in catalog.models() {
        for &quality in &rule.qualities {
            assert!(rule.usd_per_second(quality).is_some(), "{}", rule.model);
        }
        assert_eq!(rule.origin, "built-in");
    }
}

#[test]
fn kie_sends_size_only_for_the_pro_models_and_openai_high_sizes_only_for_pro() {
    let catalog = Catalog::built_in_as_once_sold();
    let fields = |provider, model, quality| {
        catalog
            .rule(provider, model)
            .unwrap()
            .provider_request(10, Aspect::Landscape, quality, &Map::new())
            .fields
    };
    let plain = fields(ProviderKind::Kie, "sora-2-text-to-video", Quality::Standard);
    assert!(!plain.contains_key("size"), "{plain:?}");
    assert_eq!(plain["n_frames"], "10");
    let pro = fields(ProviderKind::Kie, "sora-2-pro-text-to-video", Quality::High);
    assert_eq!(pro["size"], "high");
    let openai = catalog.rule(ProviderKind::Openai, "sora-2").unwrap();
    assert_eq!(openai.qualities, [Quality::Standard]);
    let pro = fields(ProviderKind::Openai, "sora-2-pro", Quality::High);
    assert_eq!(pro["size"], "1792x1024");
    assert_eq!(pro["seconds"], "10");
}

const OPERATOR: &str = r#"
[[model]]
provider = "kie"
model = "kling/v2-1-master-text-to-video"
durations = [5, 10]
aspects = ["landscape", "portrait", "square"]
price = { standard = 0.28 }
source = "docs.kie.ai/market/kling/v2-1-master-text-to-video"
[model.request]
duration = { field = "duration", form = "string" }
aspect = { field = "aspect_ratio", values = { landscape = "16:9", portrait = "9:16", square = "1:1" } }
quality = "omit"
fixed = {}
[model.extra]
negative_prompt = { type = "string", max_chars = 2500 }
cfg_scale = { type = "number", min = 0, max = 1 }

[[model]]
provider = "kie"
model = "sora-2-text-to-video"
durations = [10]
price = { standard = 0.02 }
source = "our contract"
"#;

#[test]
fn an_operator_file_adds_rows_and_replaces_known_ones() {
    let catalog = Catalog::built_in_as_once_sold()
        .with_file(OPERATOR, "models.toml")
        .unwrap();
    let kling = catalog
        .rule(ProviderKind::Kie, "kling/v2-1-master-text-to-video")
        .unwrap();
    assert_eq!(kling.origin, "models.toml");
    let extra = Map::from_iter([("cfg_scale".to_owned(), Value::from(0.5))]);
    let wire = kling.provider_request(5, Aspect::Square, Quality::Standard, &extra);
    assert_eq!(
        Value::Object(wire.fields),
        serde_json::json!({"duration": "5", "aspect_ratio": "1:1", "cfg_scale": 0.5})
    );
    // The contract's images mapping still applies where the row does not replace it.
    assert_eq!(wire.images.unwrap().field, "image_urls");
    let sora = catalog
        .rule(ProviderKind::Kie, "sora-2-text-to-video")
        .unwrap();
    assert_eq!(
        (
            sora.durations.as_slice(),
            sora.usd_per_second(Quality::Standard)
        ),
        (&[10][..], Some(0.02))
    );
    assert_eq!(
        catalog.models().len(),
        Catalog::built_in_as_once_sold().models().len() + 1
    );
}

#[test]
fn a_retired_or_paused_model_is_refused_naming_its_replacement_and_a_deprecated_one_taken() {
    let lifecycle = r#"
[[model]]
provider = "openai"
model = "sora-2"
durations = [4, 8, 12]
price = { standard = 0.10 }
status = "retired"
status_since = "2026-09-24"
replaced_by = "sora-2-pro"
source = "the provider's deprecation notice"

[[model]]
provider = "openai"
model = "sora-2-pro"
durations = [4]
price = { standard = 0.30 }
status = "deprecated"
status_since = "2026-09-01"
source = "the provider's deprecation notice"

[[model]]
provider = "kie"
model = "sora-2-text-to-video"
durations = [10]
price = { standard = 0.015 }
status = "paused"
source = "the provider's page"
"#;
    let catalog = Catalog::built_in_as_once_sold()
        .with_file(lifecycle, "models.toml")
        .unwrap();
    let ask = |provider: &str, model: &str, duration_s: u32| {
        crate::JobRequest {
            provider: Some(provider.into()),
            model: Some(model.into()),
            prompt: Some("a fox".into()),
            duration_s: Some(duration_s),
            ..Default::default()
        }
        .validate(&catalog, 0)
    };
    let retired = ask("openai", "sora-2", 4).unwrap_err();
    assert_eq!(retired.field, "model");
    assert_eq!(
        retired.message,
        "model sora-2 of openai is retired since 2026-09-24; use sora-2-pro"
    );
    let paused = ask("kie", "sora-2-text-to-video", 10).unwrap_err();
    assert_eq!(
        paused.message,
        "model sora-2-text-to-video of kie is paused"
    );
    let deprecated = ask("openai", "sora-2-pro", 4).expect("still sold");
    let rule = catalog
        .rule(ProviderKind::Openai, &deprecated.model)
        .unwrap();
    assert_eq!(
        rule.lifecycle_notice().as_deref(),
        Some("sora-2-pro of openai is deprecated since 2026-09-01")
    );
    assert_eq!(
        Catalog::built_in_as_once_sold()
            .rule(ProviderKind::Kie, "sora-2-text-to-video")
            .unwrap()
            .lifecycle_notice(),
        None,
        "rows are active unless they say otherwise"
    );
}

#[test]
fn a_bad_operator_row_is_refused_naming_the_file_and_row() {
    let check = |text: &str, expect: &str| {
        let err = Catalog::built_in_as_once_sold()
            .with_file(text, "models.toml")
            .unwrap_err();
        assert!(err.to_string().contains(expect), "{err}");
        assert!(
            err.to_string().starts_with("catalog models.toml: "),
            "{err}"
        );
    };
    let row = |body: &str| {
        format!("[[model]]\nprovider = \"openai\"\nmodel = \"m\"\nsource = \"s\"\n{body}")
    };
    check(&row("durations = []"), "openai model \"m\": durations");
    check(
        &row("durations = [4]\nqualities = [\"high\"]\naspects = [\"square\"]"),
        "request.size has no value for square/high",
    );
    check(
        &row("durations = [4]\nprice = { standard = -1 }"),
        "not negative",
    );
    check(
        &row("durations = [4]\nextra = { seconds = { type = \"bool\" } }"),
        "extra.seconds would overwrite",
    );
    check(
        &row("durations = [4]\ncolour = \"red\""),
        "unknown field `colour`",
    );
    check(
        &format!("{}\n{}", row("durations = [4]"), row("durations = [4]")),
        "listed twice",
    );
}
