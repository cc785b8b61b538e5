//! Models an operator adds in a catalog file, with no change to reelq, and the built-in ones:
//! every row of the built-in and example catalogs is validated, priced, sent to its provider
//! as the row writes it, and stored, end to end through a worker and the simulator serving
//! the same catalog.

use std::time::Duration;

use reelq_core::{Catalog, ImageRule, JobRequest, ProviderKind};
use reelq_e2e::{Deployment, RedisSetup};
use reelq_producer::ProducerError;
use serde_json::{Map, Value};

const EXAMPLE: &str = include_str!("../../../../examples/catalog/models.toml");

/// A value each kind of declared option takes.
fn option_value(rule: &reelq_core::ExtraRule) -> Value {
    match rule {
        reelq_core::ExtraRule::String { .. } => "blurry, text".into(),
        reelq_core::ExtraRule::Number { .. } => 0.5.into(),
        reelq_core::ExtraRule::Integer { .. } => 1.into(),
        reelq_core::ExtraRule::Bool => true.into(),
        reelq_core::ExtraRule::Choice { values } => values[0].clone().into(),
    }
}

#[tokio::test]
async fn every_model_of_the_catalogs_is_validated_priced_submitted_and_stored() {
    let catalog = Catalog::built_in()
        .with_file(EXAMPLE, "examples/catalog/models.toml")
        .expect("the example catalog reads");
    let deployment = Deployment::start_serving(
        env!("CARGO_BIN_EXE_reelq-worker"),
        Duration::from_millis(100),
        RedisSetup::Always,
        catalog.clone(),
    )
    .await;
    let _worker = deployment.spawn_worker_process("w");
    let rows: Vec<_> = catalog.models().iter().collect();
    for provider in [
        ProviderKind::Kie,
        ProviderKind::Acedata,
        ProviderKind::Evolink,
    ] {
        let added = rows
            .iter()
            .filter(|rule| rule.provider == provider && rule.origin != "built-in")
            .count();
        assert!(added >= 2, "{provider}: {added} example rows");
    }
    for provider in ProviderKind::ALL {
        assert!(
            rows.iter().any(|rule| rule.provider == provider),
            "{provider} has a model"
        );
    }

    // Each model asked for its last duration, frame and quality, with every option it takes.
    let mut job_ids = Vec::new();
    for rule in &rows {
        let extra: Map<String, Value> = rule
            .extra
            .iter()
            .map(|(name, option)| (name.clone(), option_value(option)))
            .collect();
        let request = JobRequest {
            provider: Some(rule.provider.to_string()),
            model: Some(rule.model.clone()),
            prompt: Some(format!("{} over a harbour at dusk", rule.model)),
            duration_s: rule.durations.last().copied(),
            aspect: rule.aspects.last().map(|a| a.to_string()),
            quality: rule.qualities.last().map(|q| q.to_string()),
            extra: (!extra.is_empty()).then_some(extra),
            image_urls: match rule.images {
                ImageRule::Exactly(n) => (0..n)
                    .map(|i| format!("https://example.com/frame-{i}.png"))
                    .collect(),
                ImageRule::None | ImageRule::AtMost(_) => Vec::new(),
            },
            ..JobRequest::default()
        };
        job_ids.push(deployment.client.enqueue(request).await.expect("enqueues"));
    }
    // An option out of its declared range is refused at enqueue, naming it.
    let kling = JobRequest {
        provider: Some("kie".into()),
        model: Some("kling/v2-1-master-text-to-video".into()),
        prompt: Some("p".into()),
        extra: Some(Map::from_iter([("cfg_scale".into(), Value::from(2))])),
        ..JobRequest::default()
    };
    match deployment.client.enqueue(kling).await {
        Err(ProducerError::Invalid(err)) => {
            assert_eq!(err.to_string(), "extra: cfg_scale: 2 is outside 0..1")
        }
        other => panic!("{other:?}"),
    }

    let records = deployment.settled(&job_ids).await;
    deployment.assert_stored_once(&records);
    for (record, rule) in records.iter().zip(&rows) {
        let spec = &record.spec;
        let price = rule.usd_per_second(spec.quality).unwrap() * f64::from(spec.duration_s);
        assert_eq!(
            spec.estimated_cost_usd,
            Some((price * 1000.0).round() / 1000.0),
            "{}: priced by its row",
            rule.model
        );
        // What the provider received is what the row writes, field for field.
        let body = deployment
            .sim
            .create_body(record.task_id.as_deref().unwrap())
            .unwrap();
        // The fields are the body itself, or the one object the contract nests them in
        // (kie's and Replicate's `input`, the Gemini API's `parameters`).
        let sent = ["input", "parameters"]
            .iter()
            .map(|envelope| &body[*envelope])
            .find(|fields| fields.is_object())
            .unwrap_or(&body);
        let written = spec.provider_request();
        assert!(!written.fields.is_empty(), "{}", rule.model);
        for (field, value) in &written.fields {
            assert_eq!(&sent[field], value, "{}: {field} in {body}", rule.model);
        }
        for option in rule.extra.keys() {
            assert!(sent.get(option).is_some(), "{}: {option} sent", rule.model);
        }
        let video = record.video.as_deref().unwrap_or_default();
        assert!(
            video.contains(&format!(" {}.00s", spec.duration_s)),
            "{}: the stored video is as long as asked: {video}",
            rule.model
        );
    }
}
