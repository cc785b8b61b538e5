use super::*;
use crate::{PriceRule, Quality};

const NOW_MS: u64 = 1_780_000_000_000;

fn request(route: &str) -> JobRequest {
    JobRequest {
        route: Some(route.into()),
        prompt: Some("a lighthouse at dusk".into()),
        duration_s: Some(8),
        ..JobRequest::default()
    }
}

fn routed(request: JobRequest, catalog: &Catalog) -> Result<JobSpec, SpecError> {
    request
        .validate(catalog, NOW_MS)?
        .priced(&PriceTable::default(), catalog, 7)
}

fn labels(spec: &JobSpec) -> Vec<String> {
    let route = spec.route.as_ref().unwrap();
    route.candidates.iter().map(Candidate::label).collect()
}

/// The built-in catalog with `routes` (TOML) over it.
fn with_routes(routes: &str) -> Catalog {
    Catalog::built_in().with_file(routes, "test").unwrap()
}

#[test]
fn a_routed_job_starts_at_its_cheapest_candidate_and_carries_the_rest_in_order() {
    let spec = routed(request("veo-3.1-fast"), Catalog::built_in()).unwrap();
    assert_eq!(
        labels(&spec),
        [
            "evolink veo-3.1-fast-generate-preview",
            "fal fal-ai/veo3.1/fast",
            "replicate google/veo-3.1-fast",
            "openai veo-3.1-fast-generate-preview",
        ]
    );
    assert_eq!(
        (spec.provider, spec.model.as_str(), spec.estimated_cost_usd),
        (
            ProviderKind::Evolink,
            "veo-3.1-fast-generate-preview",
            Some(0.96)
        )
    );
    let route = spec.route.as_ref().unwrap();
    assert_eq!(route.candidates[1].estimated_cost_usd, Some(1.2));
    assert_eq!(route.at, 0);
}

#[test]
fn candidates_that_cannot_make_the_video_are_left_out_and_a_route_none_can_serve_is_refused() {
    let two_images = JobRequest {
        image_urls: vec![
            "https://example.com/a.png".into(),
            "https://example.com/b.png".into(),
        ],
        ..request("veo-3.1-fast")
    };
    let spec = routed(two_images, Catalog::built_in()).unwrap();
    assert_eq!(labels(&spec), ["evolink veo-3.1-fast-generate-preview"]);

    let ten_seconds = JobRequest {
        duration_s: Some(10),
        ..request("veo-3.1-fast")
    };
    let err = routed(ten_seconds, Catalog::built_in()).unwrap_err();
    assert_eq!(err.field, "route");
    assert!(err.message.contains("no candidate of route"), "{err}");
    assert!(
        err.message
            .contains("fal \"fal-ai/veo3.1/fast\": duration_s"),
        "{err}"
    );

    let unknown = routed(request("sora-forever"), Catalog::built_in()).unwrap_err();
    assert_eq!(unknown.field, "route");
    assert!(
        unknown.message.contains("veo-3.1-fast"),
        "names the known: {unknown}"
    );
}

#[test]
fn a_route_leaves_provider_model_and_options_to_its_candidates() {
    let with_provider = JobRequest {
        provider: Some("fal".into()),
        ..request("veo-3.1-fast")
    };
    let err = routed(with_provider, Catalog::built_in()).unwrap_err();
    assert_eq!(err.field, "provider");
    // A request wrong whatever the model is refused as such, not as the route's.
    let past = JobRequest {
        deadline: Some("2001-01-01T00:00:00Z".into()),
        ..request("veo-3.1-fast")
    };
    assert_eq!(
        routed(past, Catalog::built_in()).unwrap_err().field,
        "deadline"
    );
}

#[test]
fn the_first_candidates_length_and_frame_bind_the_rest() {
    // kling-v2-6 takes 5 s by default; the others then must make 5 s too.
    let spec = routed(
        JobRequest {
            duration_s: None,
            ..request("kling-2.6")
        },
        Catalog::built_in(),
    )
    .unwrap();
    let route = spec.route.as_ref().unwrap();
    assert_eq!(spec.duration_s, 5);
    assert_eq!(route.candidates.len(), 3);
    // Each is priced at its own quality (Kling's own API defaults to high; the others sell
    // only standard), so a job moving on reserves the next one's price.
    let priced: Vec<(Quality, Option<f64>)> = route
        .candidates
        .iter()
        .map(|c| (c.quality, c.estimated_cost_usd))
        .collect();
    assert_eq!(
        priced,
        [
            (Quality::High, Some(0.35)),
            (Quality::Standard, Some(0.7)),
            (Quality::Standard, Some(0.7)),
        ]
    );
    let moved = spec
        .fall_back(FallbackReason::Credits, "kling", NOW_MS)
        .unwrap();
    assert_eq!(
        (moved.quality, moved.estimated_cost_usd),
        (Quality::Standard, Some(0.7))
    );
    assert!(
        route
            .candidates
            .iter()
            .all(|c| c.request.fields.values().any(|v| v == 5 || v == "5"))
    );
}

#[test]
fn a_price_ceiling_drops_the_candidates_over_it_and_refuses_a_job_none_is_under() {
    let catalog = with_routes(
        r#"
[[route]]
name = "cheap-veo"
max_usd_per_second = 0.13
[[route.candidate]]
provider = "fal"
model = "fal-ai/veo3.1/fast"
[[route.candidate]]
provider = "evolink"
model = "veo-3.1-fast-generate-preview"

[[route]]
name = "too-cheap-veo"
max_usd_per_second = 0.10
[[route.candidate]]
provider = "fal"
model = "fal-ai/veo3.1/fast"
"#,
    );
    let spec = routed(request("cheap-veo"), &catalog).unwrap();
    assert_eq!(labels(&spec), ["evolink veo-3.1-fast-generate-preview"]);
    let err = routed(request("too-cheap-veo"), &catalog).unwrap_err();
    assert_eq!(err.field, "route");
    assert!(
        err.message.contains("fal fal-ai/veo3.1/fast at $0.150/s"),
        "{err}"
    );

    // The operator's contract price counts, not the list price.
    let contract = PriceTable {
        rules: vec![PriceRule {
            provider: ProviderKind::Fal,
            model: "*".into(),
            quality: None,
            usd_per_second: 0.09,
        }],
    };
    let spec = request("too-cheap-veo")
        .validate(&catalog, NOW_MS)
        .unwrap()
        .priced(&contract, &catalog, 7)
        .unwrap();
    assert_eq!(spec.estimated_cost_usd, Some(0.72));
}

#[test]
fn a_job_falls_back_only_for_its_routes_reasons_and_records_what_it_left() {
    let spec = routed(request("veo-3.1-fast"), Catalog::built_in()).unwrap();
    assert_eq!(
        spec.fall_back(FallbackReason::Moderation, "evolink", NOW_MS),
        None
    );
    let next = spec
        .fall_back(FallbackReason::Credits, "evolink", NOW_MS)
        .unwrap();
    assert_eq!(
        (next.provider, next.model.as_str(), next.estimated_cost_usd),
        (ProviderKind::Fal, "fal-ai/veo3.1/fast", Some(1.2))
    );
    assert_eq!(
        next.request.as_ref().unwrap().fields.get("duration"),
        Some(&"8s".into())
    );
    let route = next.route.as_ref().unwrap();
    assert_eq!(route.at, 1);
    assert_eq!(
        route.left,
        [LeftCandidate {
            candidate: 0,
            account: "evolink".into(),
            reason: FallbackReason::Credits,
            at_ms: NOW_MS,
        }]
    );
    let last = next
        .fall_back(FallbackReason::Refused, "fal", NOW_MS)
        .and_then(|s| s.fall_back(FallbackReason::Paused, "replicate", NOW_MS))
        .unwrap();
    assert_eq!(last.provider, ProviderKind::Openai);
    assert_eq!(
        last.route.as_ref().unwrap().hold(),
        None,
        "nowhere left to go"
    );
    assert_eq!(
        last.fall_back(FallbackReason::Credits, "openai", NOW_MS),
        None
    );
    let plain = JobRequest {
        route: None,
        provider: Some("fal".into()),
        model: Some("fal-ai/veo3.1/fast".into()),
        ..request("")
    }
    .validate(Catalog::built_in(), NOW_MS)
    .unwrap();
    assert_eq!(
        plain.fall_back(FallbackReason::Credits, "fal", NOW_MS),
        None
    );
}

#[test]
fn a_weighted_route_spreads_its_first_candidate_by_weight() {
    let catalog = with_routes(
        r#"
[[route]]
name = "spread"
policy = "weighted"
[[route.candidate]]
provider = "fal"
model = "fal-ai/veo3.1/fast"
weight = 3
[[route.candidate]]
provider = "replicate"
model = "google/veo-3.1-fast"
weight = 1
[[route.candidate]]
provider = "evolink"
model = "veo-3.1-fast-generate-preview"
weight = 0
"#,
    );
    let validated = request("spread").validate(&catalog, NOW_MS).unwrap();
    let mut firsts = BTreeMap::new();
    for seed in 0..4000 {
        let spec = validated
            .clone()
            .priced(&PriceTable::default(), &catalog, seed)
            .unwrap();
        let route = spec.route.as_ref().unwrap();
        assert_eq!(
            route.candidates[2].provider,
            ProviderKind::Evolink,
            "weight 0 goes last"
        );
        *firsts.entry(spec.provider).or_insert(0) += 1;
    }
    let fal = firsts[&ProviderKind::Fal];
    assert!((2800..3200).contains(&fal), "{firsts:?}");
}

#[test]
fn a_catalog_refuses_a_route_to_an_unknown_model_or_listed_twice() {
    let unknown = Catalog::built_in()
        .with_file(
            "[[route]]\nname = \"x\"\n[[route.candidate]]\nprovider = \"fal\"\nmodel = \"nope\"\n",
            "ops.toml",
        )
        .unwrap_err();
    assert!(
        unknown.message.contains("no model of the catalog"),
        "{unknown}"
    );
    let twice = "[[route]]\nname = \"x\"\n[[route.candidate]]\nprovider = \"fal\"\nmodel = \"fal-ai/veo3.1/fast\"\n";
    let err = Catalog::built_in()
        .with_file(&format!("{twice}{twice}"), "ops.toml")
        .unwrap_err();
    assert!(err.message.contains("listed twice"), "{err}");
    // A file's route replaces the built-in one of the same name.
    let replaced = Catalog::built_in()
        .with_file(&twice.replace("\"x\"", "\"veo-3.1-fast\""), "ops.toml")
        .unwrap();
    assert_eq!(replaced.route("veo-3.1-fast").unwrap().candidates.len(), 1);
}

use std::collections::BTreeMap;
