//! The models the simulated providers serve: every row reelq ships (the built-in catalog and
//! the example file's, which holds AceData's live models and others whose providers publish
//! no price) and one row for a gateway in the Gemini API's shape, since the Gemini API itself
//! sells no Veo model any more (its built-in rows are retired). Tests validate jobs against
//! the same catalog, so every contract has a live model to run.

use std::sync::OnceLock;

use reelq_core::Catalog;

/// The example file the README and the demo use (`reelq --catalog`).
const EXAMPLE_ROWS: &str = include_str!("../../../examples/catalog/models.toml");

/// A Veo 3.1 model served in the Gemini API's `predictLongRunning` shape by a gateway.
const GATEWAY_ROWS: &str = r#"
[[model]]
provider = "gemini"
model = "veo-3.1-generate-001"
durations = [8, 4, 6]
qualities = ["standard", "high"]
price = { standard = 0.4, high = 0.4 }
extra = { negativePrompt = { type = "string", max_chars = 2000 } }
source = "the simulator: a gateway serving Veo 3.1 in the Gemini API's shape"
"#;

/// The built-in rows, the example file's and the simulator's Gemini-shaped gateway row.
pub fn served_catalog() -> &'static Catalog {
    static SERVED: OnceLock<Catalog> = OnceLock::new();
    SERVED.get_or_init(|| {
        Catalog::built_in()
            .with_file(EXAMPLE_ROWS, "examples/catalog/models.toml")
            .and_then(|catalog| catalog.with_file(GATEWAY_ROWS, "simulator"))
            .expect("the served catalog reads (a unit test of reelq-sim reads it)")
    })
}

#[cfg(test)]
mod tests {
    use reelq_core::ProviderKind;

    use super::*;

    #[test]
    fn every_contract_serves_a_live_model() {
        for provider in ProviderKind::ALL {
            assert!(
                served_catalog()
                    .models_of(provider)
                    .any(|rule| rule.status.takes_jobs()),
                "{provider}"
            );
        }
    }
}
