//! The simulated contracts, one registration each: the provider's routes, the body its
//! callback carries when a task ends, and how it signs that callback. Every contract module
//! declares its `CONTRACT`; the simulator's router and its callbacks go through this list
//! alone, so a new contract is its module plus one line here. The simulator's whole router
//! (`app`: the contracts, result files and the `/sim` control routes) is built here.

use std::sync::Arc;

use axum::{Router, routing::get};
use reelq_core::{Catalog, ProviderKind};
use serde_json::Value;

use crate::{contract::Phase, simulator::SimState};

/// A callback's signature headers, by name.
pub(crate) type Headers = Vec<(&'static str, String)>;

/// One simulated provider contract.
pub(crate) struct SimContract {
    pub(crate) kind: ProviderKind,
    /// The provider's routes, for the models of `catalog` (some contracts route by model).
    pub(crate) routes: fn(&Catalog) -> Router<Arc<SimState>>,
    /// The body of the callback a task owes once it ends (`phase`); None: the provider calls
    /// nobody back, or the task is gone.
    pub(crate) callback_body: fn(&SimState, &str, &Phase) -> Option<Value>,
    /// The headers signing a callback `body` of a task, with a key the provider never
    /// published when `forged`; none for providers that do not sign.
    pub(crate) callback_headers: fn(&SimState, &str, &str, bool) -> Headers,
}

/// Every contract the simulator speaks.
pub(crate) const CONTRACTS: [SimContract; 10] = [
    crate::kie::CONTRACT,
    crate::acedata::CONTRACT,
    crate::evolink::CONTRACT,
    crate::openai::CONTRACT,
    crate::replicate::CONTRACT,
    crate::gemini::CONTRACT,
    crate::fal::CONTRACT,
    crate::kling::CONTRACT,
    crate::ark::CONTRACT,
    crate::dashscope::CONTRACT,
];

/// The registration of `kind`.
pub(crate) fn contract(kind: ProviderKind) -> &'static SimContract {
    CONTRACTS
        .iter()
        .find(|contract| contract.kind == kind)
        .expect("every provider kind has a simulated contract (a unit test checks)")
}

/// For providers that do not sign their callbacks (reelq's per-job URL token authenticates
/// them).
pub(crate) fn unsigned(_: &SimState, _: &str, _: &str, _: bool) -> Headers {
    Vec::new()
}

/// A contract's routes, each exchange journaled under `contract` (when the config asks).
fn journaled(
    state: &Arc<SimState>,
    contract: ProviderKind,
    routes: Router<Arc<SimState>>,
) -> Router<Arc<SimState>> {
    routes.layer(axum::middleware::from_fn_with_state(
        (state.clone(), contract),
        crate::journal::record,
    ))
}

/// The whole HTTP surface: every provider contract plus the `/sim` control routes.
pub(crate) fn app(state: Arc<SimState>) -> Router {
    let catalog = &state.config.catalog;
    crate::contracts::CONTRACTS
        .iter()
        .fold(Router::new(), |router, contract| {
            router.merge(journaled(&state, contract.kind, (contract.routes)(catalog)))
        })
        .route("/files/{file}", get(crate::contract::result_file))
        .merge(crate::control::routes())
        .with_state(state)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_provider_kind_has_one_simulated_contract() {
        for kind in ProviderKind::ALL {
            let registered = CONTRACTS.iter().filter(|c| c.kind == kind).count();
            assert_eq!(registered, 1, "{kind}");
        }
    }
}
