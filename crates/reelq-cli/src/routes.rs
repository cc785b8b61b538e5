//! `reelq providers routes`: each route of the catalog, its policy, and the live state of
//! each candidate (its model's status in the catalog, its price a second, and in the ledger
//! whether its account is paused and how many generations it has in flight).

use reelq_core::{Quality, RouteRule};
use reelq_producer::ProviderStats;

use crate::{print::print_json, setup::Setup};

/// One candidate as the command shows it.
struct CandidateState {
    provider: String,
    /// The account it names, or its provider (any of the provider's accounts).
    account: String,
    model: String,
    /// The catalog's word on the model: active, paused, retired (a route leaves a candidate
    /// whose model is not active).
    model_status: String,
    /// Standard quality, by the operator's prices, else the catalog's.
    usd_per_second: Option<f64>,
    /// How long its account stays paused (credits, a rate limit, an operator), in ms.
    paused_ms: Option<u64>,
    in_flight: u64,
    max_in_flight: Option<u32>,
}

struct RouteState<'a> {
    route: &'a RouteRule,
    live: Vec<CandidateState>,
}

impl CandidateState {
    fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "provider": self.provider,
            "account": self.account,
            "model": self.model,
            "model_status": self.model_status,
            "usd_per_second": self.usd_per_second,
            "paused_ms": self.paused_ms,
            "in_flight": self.in_flight,
            "max_in_flight": self.max_in_flight,
        })
    }
}

/// Prints every route with its candidates' live state (as JSON: `[{route..., "live": [...]}]`).
pub(crate) async fn print(setup: &Setup, json: bool) -> anyhow::Result<()> {
    let client = setup.client().await?;
    let stats = client.stats().await?;
    let limits = client.provider_limits().await?;
    let (catalog, prices) = (&setup.catalog, &setup.prices);
    let routes: Vec<RouteState> = catalog
        .routes()
        .iter()
        .map(|route| RouteState {
            route,
            live: route
                .candidates
                .iter()
                .map(|c| {
                    let account = c.account.clone().unwrap_or_else(|| c.provider.to_string());
                    let live: Option<&ProviderStats> = stats
                        .providers
                        .iter()
                        .find(|p| p.account.as_str() == account);
                    CandidateState {
                        provider: c.provider.to_string(),
                        model: c.model.clone(),
                        model_status: catalog
                            .rule(c.provider, &c.model)
                            .map_or("unknown".into(), |rule| rule.status.to_string()),
                        usd_per_second: prices.usd_per_second(
                            c.provider,
                            &c.model,
                            Quality::Standard,
                            catalog,
                        ),
                        paused_ms: live.and_then(|p| p.paused_ms),
                        in_flight: live.map_or(0, |p| p.in_flight),
                        max_in_flight: limits
                            .iter()
                            .find(|l| l.account.as_str() == account && l.max_in_flight > 0)
                            .map(|l| l.max_in_flight),
                        account,
                    }
                })
                .collect(),
        })
        .collect();
    if json {
        let routes: Vec<serde_json::Value> = routes
            .iter()
            .map(|state| {
                let mut route = serde_json::json!(state.route);
                route["live"] = state.live.iter().map(CandidateState::json).collect();
                route
            })
            .collect();
        return print_json(&serde_json::Value::from(routes));
    }
    for state in &routes {
        let route = state.route;
        let ceiling = route
            .max_usd_per_second
            .map(|usd| format!(", at most ${usd:.3}/s"))
            .unwrap_or_default();
        let reasons: Vec<&str> = route.fall_back_on.iter().map(|r| r.as_str()).collect();
        println!(
            "{} ({:?}{ceiling}, patience {} s, moves on for {}){}",
            route.name,
            route.policy,
            route.patience_s,
            reasons.join(", "),
            route
                .description
                .as_deref()
                .map(|d| format!(": {d}"))
                .unwrap_or_default()
        );
        for (n, c) in state.live.iter().enumerate() {
            let price = c
                .usd_per_second
                .map_or("unpriced".into(), |usd| format!("${usd:.3}/s"));
            let paused = c.paused_ms.map(|ms| {
                let left = std::time::Duration::from_secs(ms.div_ceil(1000));
                format!(", paused {}", humantime::format_duration(left))
            });
            let in_flight = match c.max_in_flight {
                Some(max) => format!("{}/{max} in flight", c.in_flight),
                None => format!("{} in flight", c.in_flight),
            };
            println!(
                "  {}. {:<12} {:<44} {:<10} model {}, {in_flight}{}",
                n + 1,
                c.account,
                c.model,
                price,
                c.model_status,
                paused.unwrap_or_default()
            );
        }
    }
    Ok(())
}
