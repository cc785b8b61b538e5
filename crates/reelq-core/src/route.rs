//! Routes: one kind of video that several contracts sell (Veo 3.1 Fast at fal, Replicate and
//! EvoLink), as data. A job may name a route instead of a provider and model; validation keeps
//! the candidates that can make the job's video, pricing orders them by the route's policy and
//! drops those over its price ceiling, and the job starts at the first. A worker moves it to
//! the next candidate only when the provider proved it did not take the job (a refusal, an
//! empty account, a retired model, a pause or wait past the route's patience): never from
//! `uncertain`, never after a create that may have been accepted.
//!
//! The job's spec carries its route's state ([`RouteState`]): the candidates in the order they
//! are tried, which one it is at, and the ones it left and why. Its top-level provider, account,
//! model, request and estimate are always the candidate it is at, so everything that reads a
//! spec (the steps, reconciliation, reports, usage) reads the candidate that serves it.

use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::{
    AccountName, Catalog, JobRequest, JobSpec, PriceTable, ProviderKind, Quality, SpecError,
    catalog::ProviderRequest, spec::join,
};

/// In which order a route's candidates are tried.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RoutePolicy {
    /// As listed.
    #[default]
    InOrder,
    /// The lowest estimate for the job first (ties as listed).
    Cheapest,
    /// Spread by weight: each job's order is drawn with the candidates' weights.
    Weighted,
}

/// Why a job left a candidate: each a proof that the provider did not take the job.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FallbackReason {
    /// The provider refused the create as invalid, refused its key, or said it does not
    /// serve the model: nothing was made.
    Refused,
    /// The account has no credits left.
    Credits,
    /// The account is paused (credits, a rate limit, an operator) past the route's patience.
    Paused,
    /// The model is retired or paused in the worker's catalog.
    Retired,
    /// The provider asked to wait longer than the route's patience.
    RateLimited,
    /// The job waited past the route's patience for a generation slot, a request token or
    /// the account's daily budget.
    SlotWait,
    /// The provider refused the content: only where the route says so (another provider's
    /// moderation may take it, which is a choice for the route's owner).
    Moderation,
}

impl FallbackReason {
    pub const ALL: [FallbackReason; 7] = [
        FallbackReason::Refused,
        FallbackReason::Credits,
        FallbackReason::Paused,
        FallbackReason::Retired,
        FallbackReason::RateLimited,
        FallbackReason::SlotWait,
        FallbackReason::Moderation,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            FallbackReason::Refused => "refused",
            FallbackReason::Credits => "credits",
            FallbackReason::Paused => "paused",
            FallbackReason::Retired => "retired",
            FallbackReason::RateLimited => "rate_limited",
            FallbackReason::SlotWait => "slot_wait",
            FallbackReason::Moderation => "moderation",
        }
    }

    /// What a route moves on for unless it says otherwise: every proven non-acceptance but
    /// moderation.
    pub fn default_set() -> Vec<FallbackReason> {
        let mut all = Self::ALL.to_vec();
        all.retain(|reason| *reason != FallbackReason::Moderation);
        all
    }
}

impl fmt::Display for FallbackReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

/// A route as a catalog file writes it (`[[route]]` with `[[route.candidate]]` rows).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteRule {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default)]
    pub policy: RoutePolicy,
    /// The most a second of video may cost at a candidate (its estimate over the job's
    /// seconds); a candidate over it is never tried.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_usd_per_second: Option<f64>,
    /// How long a job waits at a candidate held back by a pause or a limit before it moves
    /// on (0: at once).
    #[serde(default = "default_patience_s")]
    pub patience_s: u64,
    /// Which proven non-acceptances move a job on (default: all but moderation).
    #[serde(default = "FallbackReason::default_set")]
    pub fall_back_on: Vec<FallbackReason>,
    #[serde(rename = "candidate")]
    pub candidates: Vec<CandidateRule>,
    /// The file the route came from (set when read).
    #[serde(skip_deserializing, default)]
    pub origin: String,
}

fn default_patience_s() -> u64 {
    300
}

/// One candidate of a route: a contract (or one of its accounts), a model, and the options
/// its request takes for this route.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CandidateRule {
    pub provider: ProviderKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account: Option<String>,
    pub model: String,
    /// Options of the model's row, mapped for this route (e.g. `generate_audio = false`).
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub extra: Map<String, Value>,
    /// Its share under the `weighted` policy.
    #[serde(default = "one")]
    pub weight: u32,
}

fn one() -> u32 {
    1
}

impl RouteRule {
    /// What is wrong with this route against `catalog`'s models, if anything.
    pub(crate) fn problem(&self, catalog: &Catalog) -> Option<String> {
        if self.candidates.is_empty() {
            return Some("has no candidate".into());
        }
        if self
            .max_usd_per_second
            .is_some_and(|usd| usd.is_nan() || usd < 0.0)
        {
            return Some("max_usd_per_second must be a price, not negative".into());
        }
        self.candidates.iter().find_map(|c| {
            let rule = catalog.rule(c.provider, &c.model);
            match (rule, &c.account) {
                (None, _) => Some(format!(
                    "candidate {} {:?} is no model of the catalog",
                    c.provider, c.model
                )),
                (_, Some(account)) => account
                    .parse::<AccountName>()
                    .err()
                    .map(|err| err.to_string()),
                _ => None,
            }
        })
    }
}

/// A candidate as a job's spec keeps it: everything its submit needs.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Candidate {
    pub provider: ProviderKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account: Option<AccountName>,
    pub model: String,
    /// Its quality: the job's, or this candidate's own default where the job left it out.
    pub quality: Quality,
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub request: ProviderRequest,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub estimated_cost_usd: Option<f64>,
}

impl Candidate {
    /// `fal fal-ai/veo3.1/fast` (or `kie-b kling-3.0/video` for one account).
    pub fn label(&self) -> String {
        match &self.account {
            Some(account) => format!("{account} {}", self.model),
            None => format!("{} {}", self.provider, self.model),
        }
    }
}

/// A candidate a job left, and why.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LeftCandidate {
    /// Its place in [`RouteState::candidates`].
    pub candidate: usize,
    /// The account it was at when it left.
    pub account: String,
    pub reason: FallbackReason,
    /// Unix ms, by the worker's clock.
    pub at_ms: u64,
}

/// A routed job's route: its candidates in the order they are tried, the one it is at, and
/// the ones it left.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RouteState {
    pub name: String,
    pub candidates: Vec<Candidate>,
    #[serde(default)]
    pub at: usize,
    pub fall_back_on: Vec<FallbackReason>,
    pub patience_ms: u64,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub left: Vec<LeftCandidate>,
}

/// What the ledger keeps of a job's route for the claim: whether a pause past its patience,
/// or a wait at a limit past it, moves it on. None at the last candidate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RouteHold {
    pub patience_ms: u64,
    pub on_pause: bool,
    pub on_wait: bool,
}

impl RouteState {
    /// The candidate after the one the job is at, if any.
    fn next(&self) -> Option<&Candidate> {
        self.candidates.get(self.at + 1)
    }

    /// What the claim needs to move a held-back job on (None: it stays where it is).
    pub fn hold(&self) -> Option<RouteHold> {
        self.next()?;
        let hold = RouteHold {
            patience_ms: self.patience_ms,
            on_pause: self.fall_back_on.contains(&FallbackReason::Paused),
            on_wait: self.fall_back_on.contains(&FallbackReason::SlotWait),
        };
        (hold.on_pause || hold.on_wait).then_some(hold)
    }
}

impl JobSpec {
    /// This spec at the route's next candidate, after the provider proved at `account` that
    /// it did not take the job for `reason`; None if the job has no route, its route does
    /// not move on for `reason`, or it is at its last candidate.
    pub fn fall_back(&self, reason: FallbackReason, account: &str, now_ms: u64) -> Option<JobSpec> {
        let route = self.route.as_ref()?;
        if !route.fall_back_on.contains(&reason) {
            return None;
        }
        let next = route.next()?.clone();
        let mut route = route.clone();
        route.left.push(LeftCandidate {
            candidate: route.at,
            account: account.to_owned(),
            reason,
            at_ms: now_ms,
        });
        route.at += 1;
        Some(JobSpec {
            route: Some(route),
            ..self.clone().at_candidate(next)
        })
    }

    /// This spec with `candidate`'s provider, account, model, request and estimate.
    fn at_candidate(self, candidate: Candidate) -> JobSpec {
        JobSpec {
            provider: candidate.provider,
            account: candidate.account,
            model: candidate.model,
            quality: candidate.quality,
            request: Some(candidate.request),
            estimated_cost_usd: candidate.estimated_cost_usd,
            ..self
        }
    }

    /// The spec priced by `prices` (else its catalog row). A routed job's candidates are each
    /// priced, those over the route's ceiling dropped and the rest ordered by its policy
    /// (`seed` draws a weighted order), and the job starts at the first; refused, naming
    /// `route`, if none is left.
    pub fn priced(
        mut self,
        prices: &PriceTable,
        catalog: &Catalog,
        seed: u64,
    ) -> Result<JobSpec, SpecError> {
        let Some(mut route) = self.route.take() else {
            self.estimated_cost_usd = prices.estimate(&self, catalog);
            return Ok(self);
        };
        let rule = catalog
            .route(&route.name)
            .ok_or_else(|| SpecError::new("route", format!("unknown route {:?}", route.name)))?;
        let mut priced: Vec<(Candidate, u32)> = Vec::new();
        let mut over = Vec::new();
        for mut candidate in std::mem::take(&mut route.candidates) {
            let probe = self.clone().at_candidate(candidate.clone());
            candidate.estimated_cost_usd = prices.estimate(&probe, catalog);
            let per_second =
                prices.usd_per_second(probe.provider, &probe.model, probe.quality, catalog);
            match (rule.max_usd_per_second, per_second) {
                (Some(max), Some(usd)) if usd > max + 1e-9 => {
                    over.push(format!("{} at ${usd:.3}/s", candidate.label()))
                }
                (Some(_), None) => over.push(format!("{} has no price", candidate.label())),
                _ => {
                    let weight = rule
                        .candidates
                        .iter()
                        .find(|c| {
                            c.provider == candidate.provider
                                && c.model == candidate.model
                                && c.account.as_deref()
                                    == candidate.account.as_ref().map(AccountName::as_str)
                        })
                        .map_or(1, |c| c.weight);
                    priced.push((candidate, weight));
                }
            }
        }
        if priced.is_empty() {
            let max = rule.max_usd_per_second.unwrap_or_default();
            return Err(SpecError::new(
                "route",
                format!(
                    "no candidate of route {:?} is within its ceiling of ${max:.3} a second: {}",
                    route.name,
                    over.join("; ")
                ),
            ));
        }
        match rule.policy {
            RoutePolicy::InOrder => {}
            RoutePolicy::Cheapest => priced.sort_by(|(a, _), (b, _)| {
                let usd = |c: &Candidate| c.estimated_cost_usd.unwrap_or(f64::INFINITY);
                usd(a).total_cmp(&usd(b))
            }),
            RoutePolicy::Weighted => priced = weighted_order(priced, seed),
        }
        route.candidates = priced.into_iter().map(|(c, _)| c).collect();
        route.at = 0;
        let first = route.candidates[0].clone();
        Ok(JobSpec {
            route: Some(route),
            ..self.at_candidate(first)
        })
    }
}

/// The candidates in an order drawn without replacement, each next one with odds in
/// proportion to its weight (a weight of 0 goes last), from `seed` (splitmix64).
fn weighted_order(mut left: Vec<(Candidate, u32)>, mut seed: u64) -> Vec<(Candidate, u32)> {
    let mut next_random = || {
        seed = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = seed;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    };
    let mut order = Vec::with_capacity(left.len());
    while !left.is_empty() {
        let total: u64 = left.iter().map(|(_, w)| u64::from(*w)).sum();
        let index = if total == 0 {
            0
        } else {
            let mut draw = next_random() % total;
            left.iter()
                .position(|(_, w)| {
                    let w = u64::from(*w);
                    if draw < w {
                        return true;
                    }
                    draw -= w;
                    false
                })
                .unwrap_or(0)
        };
        order.push(left.remove(index));
    }
    order
}

/// A request that names a route: each candidate checked as if the request named it, those
/// that can make the video kept in the route's order; refused, naming `route` and each
/// candidate's reason, if none can.
pub(crate) fn validate(
    request: JobRequest,
    name: &str,
    catalog: &Catalog,
    now_ms: u64,
) -> Result<JobSpec, SpecError> {
    for (field, given) in [
        ("provider", request.provider.is_some()),
        ("model", request.model.is_some()),
        ("account", request.account.is_some()),
        ("extra", request.extra.is_some()),
    ] {
        if given {
            return Err(SpecError::new(
                field,
                format!("a job with a route leaves {field} to the route's candidates"),
            ));
        }
    }
    let rule = catalog.route(name).ok_or_else(|| {
        SpecError::new(
            "route",
            format!(
                "unknown route {name:?} (known: {})",
                join(catalog.routes().iter().map(|r| &r.name))
            ),
        )
    })?;
    let mut candidates = Vec::new();
    let mut first = None;
    let mut refusals = Vec::new();
    let mut request = request;
    for c in &rule.candidates {
        let as_candidate = JobRequest {
            provider: Some(c.provider.as_str().to_owned()),
            account: c.account.clone(),
            model: Some(c.model.clone()),
            extra: Some(c.extra.clone()),
            ..request.clone()
        };
        match as_candidate.validate(catalog, now_ms) {
            Ok(spec) => {
                candidates.push(Candidate {
                    provider: spec.provider,
                    account: spec.account.clone(),
                    model: spec.model.clone(),
                    quality: spec.quality,
                    request: spec.provider_request().into_owned(),
                    estimated_cost_usd: None,
                });
                if first.is_none() {
                    // Every candidate makes a video of the same length and frame: the first
                    // one's (its defaults where the request left them out) bind the rest. A
                    // quality left out is each candidate's own default.
                    request.duration_s = Some(spec.duration_s);
                    request.aspect = Some(spec.aspect.to_string());
                    first = Some(spec);
                }
            }
            // A request wrong whatever the model (a deadline, a webhook) is wrong for the route.
            Err(err)
                if matches!(
                    err.field,
                    "deadline" | "notify_url" | "notify_events" | "tenant"
                ) =>
            {
                return Err(err);
            }
            Err(err) => refusals.push(format!("{} {:?}: {err}", c.provider, c.model)),
        }
    }
    let Some(first) = first else {
        return Err(SpecError::new(
            "route",
            format!(
                "no candidate of route {name:?} can make this video: {}",
                refusals.join("; ")
            ),
        ));
    };
    Ok(JobSpec {
        route: Some(RouteState {
            name: name.to_owned(),
            candidates,
            at: 0,
            fall_back_on: rule.fall_back_on.clone(),
            patience_ms: rule.patience_s * 1000,
            left: Vec::new(),
        }),
        ..first
    })
}

#[cfg(test)]
mod tests;
