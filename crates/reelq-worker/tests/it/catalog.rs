//! Models an operator adds in a catalog file, with no change to reelq, and the built-in ones:
//! every row of the built-in and example catalogs is validated, priced, sent to its provider
//! as the row writes it, and stored, end to end through a worker and the simulator serving
//! the same catalog.

use std::time::Duration;

use reelq_core::{Catalog, ImageRule, JobRequest, ProviderKind};
use reelq_e2e::{Deployment, RedisSetup};
use reelq_producer::ProducerError;
use serde_json::{Map, Value};

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
    // The built-in rows, the example file's and the tests' Gemini-shaped gateway row.
    let catalog = reelq_e2e::test_catalog();
    let deployment = Deployment::start_serving(
        env!("CARGO_BIN_EXE_reelq-worker"),
        Duration::from_millis(100),
        RedisSetup::Always,
        catalog.clone(),
    )
    .await;
    let _worker = deployment.spawn_worker_process("w");
    // Retired and paused rows are refused at enqueue (tested in reelq-core): every other
    // row goes through.
    let rows: Vec<_> = catalog
        .models()
        .iter()
        .filter(|rule| rule.status.takes_jobs())
        .collect();
    for provider in [ProviderKind::Acedata, ProviderKind::Evolink] {
        let added = rows
            .iter()
            .filter(|rule| {
                rule.provider == provider && rule.origin == "examples/catalog/models.toml"
            })
            .count();
        assert!(added >= 2, "{provider}: {added} example rows");
    }
    for provider in ProviderKind::ALL {
        assert!(
            rows.iter().any(|rule| rule.provider == provider),
            "{provider} has a live model"
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
        provider: Some("acedata".into()),
        model: Some("kling-v3".into()),
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
        // The fields are the body itself, or the object the contract nests them in (kie's and
        // Replicate's `input`, the Gemini API's and DashScope's `parameters`; DashScope keeps
        // the prompt and a negative prompt in `input`).
        let sent = ["parameters", "input"]
            .iter()
            .map(|envelope| &body[*envelope])
            .find(|fields| fields.is_object())
            .unwrap_or(&body);
        let written = spec.provider_request();
        assert!(!written.fields.is_empty(), "{}", rule.model);
        let field_of = |field: &str| sent.get(field).or(body["input"].get(field));
        for (field, value) in &written.fields {
            assert_eq!(
                field_of(field),
                Some(value),
                "{}: {field} in {body}",
                rule.model
            );
        }
        for option in rule.extra.keys() {
            assert!(field_of(option).is_some(), "{}: {option} sent", rule.model);
        }
        let video = record.video.as_deref().unwrap_or_default();
        assert!(
            video.contains(&format!(" {}.00s", spec.duration_s)),
            "{}: the stored video is as long as asked: {video}",
            rule.model
        );
    }
}

#[tokio::test]
async fn a_job_whose_model_was_retired_after_it_was_queued_fails_model_unavailable_unsent() {
    let mut deployment = Deployment::start(
        env!("CARGO_BIN_EXE_reelq-worker"),
        Duration::from_millis(50),
    )
    .await;
    let provider = deployment.provider;
    let mut live = Catalog::built_in()
        .models_of(provider)
        .filter(|rule| rule.status.takes_jobs() && !matches!(rule.images, ImageRule::Exactly(_)));
    let (retiring, staying) = (live.next().unwrap().clone(), live.next().unwrap().clone());
    let enqueue = |rule: &reelq_core::ModelRule, n: usize| {
        let requests: Vec<_> = (0..n)
            .map(|i| JobRequest {
                provider: Some(provider.to_string()),
                model: Some(rule.model.clone()),
                prompt: Some(format!("{} scene {i}", rule.model)),
                ..JobRequest::default()
            })
            .collect();
        let client = deployment.client.clone();
        async move {
            let mut ids = Vec::new();
            for request in requests {
                ids.push(client.enqueue(request).await.expect("enqueues"));
            }
            ids
        }
    };
    let retired_ids = enqueue(&retiring, 3).await;
    let live_ids = enqueue(&staying, 3).await;

    // The operator's file, read by the worker that starts now, retires the first model.
    let row = reelq_e2e::retired_row(&retiring, &staying.model);
    let file = deployment.dir.path().join("retired.toml");
    std::fs::write(&file, row).unwrap();
    deployment.settings = format!("catalog = {:?}", file.display().to_string());
    let _worker = deployment.spawn_worker_task("w", reelq_e2e::API_KEY, None);

    let retired = deployment.settled(&retired_ids).await;
    for record in &retired {
        assert_eq!(record.state, reelq_core::JobState::Failed, "{record:?}");
        assert_eq!(
            record.error_class,
            Some(reelq_core::ErrorClass::ModelUnavailable)
        );
        let error = record.error.as_deref().unwrap_or_default();
        assert!(
            error.contains(&format!(
                "is retired since 2026-12-01; use {}",
                staying.model
            )),
            "{error}"
        );
    }
    let stored = deployment.settled(&live_ids).await;
    deployment.assert_stored_once(&stored);
    assert_eq!(
        deployment.sim.stats().creates,
        live_ids.len() as u64,
        "only the live model's jobs reached the provider"
    );
}
