//! Cost estimates: a price table per provider, model and quality, in USD per second of
//! video. The producer records each job's estimate at enqueue, so a batch's spend is known
//! before anything is paid.

use serde::{Deserialize, Serialize};

use crate::{
    ProviderKind,
    spec::{JobSpec, Quality},
};

/// One row: the price per second of `model` (or `*`, any model) at `quality` (or any).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PriceRule {
    pub provider: ProviderKind,
    pub model: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quality: Option<Quality>,
    pub usd_per_second: f64,
}

/// A price table. The first row that matches a job prices it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PriceTable {
    #[serde(rename = "price")]
    pub rules: Vec<PriceRule>,
}

/// List prices as published when this table was written; operators override them with their
/// own contract prices (`reelq --prices FILE`).
const DEFAULT_PRICES: &[(ProviderKind, &str, Option<Quality>, f64)] = &[
    (
        ProviderKind::Kie,
        "sora-2-pro-text-to-video",
        Some(Quality::High),
        0.33,
    ),
    (
        ProviderKind::Kie,
        "sora-2-pro-image-to-video",
        Some(Quality::High),
        0.33,
    ),
    (ProviderKind::Kie, "sora-2-pro-text-to-video", None, 0.15),
    (ProviderKind::Kie, "sora-2-pro-image-to-video", None, 0.15),
    (ProviderKind::Kie, "*", None, 0.015),
    (
        ProviderKind::Acedata,
        "sora-2-pro",
        Some(Quality::High),
        0.5,
    ),
    (ProviderKind::Acedata, "sora-2-pro", None, 0.3),
    (ProviderKind::Acedata, "*", None, 0.1),
    // 1080p costs 1.667x 720p.
    (
        ProviderKind::Evolink,
        "sora-2-pro-preview",
        Some(Quality::High),
        0.5,
    ),
    (ProviderKind::Evolink, "sora-2-pro-preview", None, 0.3),
    (ProviderKind::Evolink, "*", Some(Quality::High), 0.1667),
    (ProviderKind::Evolink, "*", None, 0.1),
    (ProviderKind::Openai, "sora-2-pro", Some(Quality::High), 0.5),
    (ProviderKind::Openai, "sora-2-pro", None, 0.3),
    (ProviderKind::Openai, "*", None, 0.1),
];

impl Default for PriceTable {
    fn default() -> Self {
        let rules = DEFAULT_PRICES
            .iter()
            .map(|&(provider, model, quality, usd_per_second)| PriceRule {
                provider,
                model: model.to_owned(),
                quality,
                usd_per_second,
            })
            .collect();
        PriceTable { rules }
    }
}

impl PriceTable {
    /// What `spec` costs by this table, rounded to a tenth of a cent; `None` when no row
    /// prices it.
    pub fn estimate(&self, spec: &JobSpec) -> Option<f64> {
        let rule = self.rules.iter().find(|rule| {
            rule.provider == spec.provider
                && (rule.model == "*" || rule.model == spec.model)
                && rule.quality.is_none_or(|q| q == spec.quality)
        })?;
        let usd = rule.usd_per_second * f64::from(spec.duration_s);
        Some((usd * 1000.0).round() / 1000.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Aspect;

    fn spec(provider: &str, model: &str, duration_s: u32, quality: &str) -> JobSpec {
        JobSpec {
            provider: provider.parse().unwrap(),
            model: model.into(),
            prompt: "p".into(),
            duration_s,
            aspect: Aspect::Landscape,
            quality: quality.parse().unwrap(),
            image_urls: vec![],
            character: None,
            notify_url: None,
            deadline_ms: None,
            estimated_cost_usd: None,
        }
    }

    #[test]
    fn evolink_1080p_costs_five_thirds_of_720p_and_grows_with_duration() {
        let table = PriceTable::default();
        let p720 = table.estimate(&spec("evolink", "sora-2-pro-preview", 4, "standard"));
        let p1080 = table.estimate(&spec("evolink", "sora-2-pro-preview", 4, "high"));
        let p1080_long = table.estimate(&spec("evolink", "sora-2-pro-preview", 12, "high"));
        assert_eq!((p720, p1080, p1080_long), (Some(1.2), Some(2.0), Some(6.0)));
    }

    #[test]
    fn every_catalog_model_has_a_default_price() {
        let table = PriceTable::default();
        for provider in ProviderKind::ALL {
            for rule in crate::models_of(provider) {
                for quality in rule.qualities {
                    let spec = spec(
                        provider.as_str(),
                        rule.model,
                        rule.durations[0],
                        quality.as_str(),
                    );
                    assert!(table.estimate(&spec).is_some(), "{provider} {}", rule.model);
                }
            }
        }
    }

    #[test]
    fn a_table_without_a_matching_row_prices_nothing() {
        let table = PriceTable { rules: vec![] };
        assert_eq!(
            table.estimate(&spec("openai", "sora-2", 4, "standard")),
            None
        );
    }
}
