//! Cost estimates, in USD per second of video: the catalog row's list price, unless the
//! operator's price table (`reelq --prices FILE`, their contract prices) has a row for the
//! job. The producer records each job's estimate at enqueue, so a batch's spend is known
//! before anything is paid.

use serde::{Deserialize, Serialize};

use crate::{
    Catalog, ProviderKind,
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

/// An operator's price table. The first row that matches a job prices it; a job no row
/// matches is priced by its catalog row.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PriceTable {
    #[serde(rename = "price")]
    #[serde(default)]
    pub rules: Vec<PriceRule>,
}

impl PriceTable {
    /// What `spec` costs by this table, else by its row in `catalog`, rounded to a tenth
    /// of a cent; `None` when neither prices it.
    pub fn estimate(&self, spec: &JobSpec, catalog: &Catalog) -> Option<f64> {
        let usd_per_second =
            self.usd_per_second(spec.provider, &spec.model, spec.quality, catalog)?;
        let usd = usd_per_second * f64::from(spec.duration_s);
        Some((usd * 1000.0).round() / 1000.0)
    }

    /// What a second of `provider`'s `model` at `quality` costs by this table, else by
    /// its row in `catalog`.
    pub fn usd_per_second(
        &self,
        provider: ProviderKind,
        model: &str,
        quality: Quality,
        catalog: &Catalog,
    ) -> Option<f64> {
        let contract = self.rules.iter().find(|rule| {
            rule.provider == provider
                && (rule.model == "*" || rule.model == model)
                && rule.quality.is_none_or(|q| q == quality)
        });
        match contract {
            Some(rule) => Some(rule.usd_per_second),
            None => catalog.rule(provider, model)?.usd_per_second(quality),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Aspect;

    fn spec(provider: &str, model: &str, duration_s: u32, quality: &str) -> JobSpec {
        JobSpec {
            provider: provider.parse().unwrap(),
            account: None,
            model: model.into(),
            prompt: "p".into(),
            duration_s,
            aspect: Aspect::Landscape,
            quality: quality.parse().unwrap(),
            image_urls: vec![],
            character: None,
            notify_url: None,
            notify_events: vec![],
            deadline_ms: None,
            tenant: None,
            estimated_cost_usd: None,
            request: None,
            route: None,
        }
    }

    #[test]
    fn evolink_1080p_costs_five_thirds_of_720p_and_grows_with_duration() {
        let (table, catalog) = (PriceTable::default(), Catalog::built_in_as_once_sold());
        let price = |duration_s, quality| {
            table.estimate(
                &spec("evolink", "sora-2-pro-preview", duration_s, quality),
                catalog,
            )
        };
        assert_eq!(
            (price(4, "standard"), price(4, "high"), price(12, "high")),
            (Some(1.2), Some(2.0), Some(6.0))
        );
    }

    #[test]
    fn the_operators_table_comes_before_the_catalog_and_a_model_neither_prices_costs_nothing_known()
    {
        let table = PriceTable {
            rules: vec![PriceRule {
                provider: ProviderKind::Openai,
                model: "*".into(),
                quality: None,
                usd_per_second: 0.05,
            }],
        };
        let catalog = Catalog::built_in_as_once_sold();
        assert_eq!(
            table.estimate(&spec("openai", "sora-2", 4, "standard"), catalog),
            Some(0.2)
        );
        assert_eq!(
            PriceTable::default().estimate(&spec("openai", "sora-2", 4, "standard"), catalog),
            Some(0.4)
        );
        assert_eq!(
            PriceTable::default().estimate(&spec("openai", "unlisted", 4, "standard"), catalog),
            None
        );
    }
}
