//! What a producer asks for ([`JobRequest`]) and what the ledger stores once it is checked
//! ([`JobSpec`]). Validation happens once, at enqueue, so a worker never meets a bad request.

use std::{borrow::Cow, fmt, str::FromStr, time::UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::{
    AccountName, ProviderKind, TenantName,
    catalog::{Catalog, ModelRule, ProviderRequest},
    route::RouteState,
};

mod checks;
use checks::{character, check_images, check_prompt};

/// Frame orientation, mapped onto each provider's own vocabulary by its adapter.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Aspect {
    Landscape,
    Portrait,
    Square,
}

/// Output quality tier, mapped onto each provider's size or resolution names by its adapter.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Quality {
    Standard,
    High,
}

macro_rules! named_enum {
    ($ty:ident { $($variant:ident = $name:literal),+ }) => {
        impl $ty {
            pub fn as_str(self) -> &'static str {
                match self { $($ty::$variant => $name),+ }
            }
        }
        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
        impl FromStr for $ty {
            type Err = ();
            fn from_str(s: &str) -> Result<Self, ()> {
                match s { $($name => Ok($ty::$variant),)+ _ => Err(()) }
            }
        }
    };
}

named_enum!(Aspect { Landscape = "landscape", Portrait = "portrait", Square = "square" });
named_enum!(Quality { Standard = "standard", High = "high" });

/// The completion events a job's `notify_url` may be sent: one per ending.
pub const JOB_EVENTS: &[&str] = &[
    "job.stored",
    "job.failed",
    "job.rejected",
    "job.expired",
    "job.cancelled",
];

/// The longest prompt reelq accepts from any provider, in characters.
pub const MAX_PROMPT_CHARS: usize = 20_000;

/// The longest URL reelq passes to a provider (evolink's limit for callback URLs; the
/// strictest documented).
pub const MAX_URL_CHARS: usize = 2048;

/// A producer's request, as it arrives from the CLI, a JSONL manifest or the Rust API.
/// Every field is optional here so that validation, not the parser, names what is missing.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", schema(example = json!({
    "provider": "kie",
    "model": "sora-2-text-to-video",
    "prompt": "a lighthouse at dusk, waves below",
    "duration_s": 10,
    "aspect": "landscape"
})))]
pub struct JobRequest {
    /// The provider contract (`kie`, `fal`, ...). Required: optional in Rust only so that
    /// validation, not the parser, names it when it is missing.
    #[cfg_attr(feature = "openapi", schema(required = true, nullable = false))]
    pub provider: Option<String>,
    /// One of the provider's accounts (`kie-b`); absent, any account of the provider.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account: Option<String>,
    /// A model of the provider's in the catalog (`reelq providers` lists them). Required.
    #[cfg_attr(feature = "openapi", schema(required = true, nullable = false))]
    pub model: Option<String>,
    /// Required.
    #[cfg_attr(feature = "openapi", schema(required = true, nullable = false))]
    pub prompt: Option<String>,
    pub duration_s: Option<u32>,
    pub aspect: Option<String>,
    pub quality: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub image_urls: Vec<String>,
    /// A video to build a character from (acedata); must not show real people.
    #[cfg_attr(feature = "openapi", schema(format = "uri"))]
    pub character_url: Option<String>,
    /// The second of the reference video at which the character first appears.
    pub character_start: Option<f64>,
    /// The second at which it last appears, not before `character_start`.
    pub character_end: Option<f64>,
    /// A route (`reelq providers routes`) instead of `provider` and `model`: the job goes to
    /// the route's first candidate that can make it, and moves on to the next only when a
    /// provider proved it did not take the job.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub route: Option<String>,
    /// Provider options the model's catalog row declares (`negative_prompt`, `cfg_scale`,
    /// ...), passed through as they are once checked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Object>))]
    pub extra: Option<Map<String, Value>>,
    /// Where reelq POSTs the completion event.
    #[cfg_attr(feature = "openapi", schema(format = "uri"))]
    pub notify_url: Option<String>,
    /// Which endings to send to `notify_url` (`job.stored`, `job.failed`, ...); all if absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notify_events: Option<Vec<String>>,
    /// RFC 3339 time after which the job ends `expired` if it has not finished.
    #[cfg_attr(feature = "openapi", schema(format = DateTime))]
    pub deadline: Option<String>,
    /// The tenant (a service, or a customer of one) the job belongs to: each provider
    /// account's capacity is shared between the tenants with jobs waiting, by weight. Absent:
    /// the `default` tenant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
}

/// A request that passed validation, with every default filled in. This is what the ledger
/// stores and what workers read.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct JobSpec {
    pub provider: ProviderKind,
    /// The account the job asked for; absent, a worker picks any account of the provider.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account: Option<AccountName>,
    pub model: String,
    pub prompt: String,
    pub duration_s: u32,
    pub aspect: Aspect,
    pub quality: Quality,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub image_urls: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub character: Option<Character>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notify_url: Option<String>,
    /// The endings `notify_url` is sent; empty: every ending.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notify_events: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deadline_ms: Option<u64>,
    /// The tenant the job belongs to; absent: the default tenant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<TenantName>,
    /// What the producer's price table said this job costs, recorded at enqueue.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub estimated_cost_usd: Option<f64>,
    /// The provider's request fields, written at enqueue from the model's catalog row (so
    /// a worker sends what was validated and priced, whatever catalog it has). Absent in
    /// jobs enqueued before reelq wrote it: [`JobSpec::provider_request`] then writes it
    /// from the built-in catalog.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Object>))]
    pub request: Option<ProviderRequest>,
    /// The job's route, if it named one: its candidates, the one it is at (the fields above)
    /// and the ones it left.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub route: Option<RouteState>,
}

impl JobSpec {
    /// The tenant the job belongs to: the one named, or the default.
    pub fn tenant_name(&self) -> &str {
        TenantName::of(self.tenant.as_ref())
    }

    /// Where the job's limits, pauses and budgets are kept until a worker picks one of the
    /// provider's accounts: the account it asked for, else its provider's name.
    pub fn account_or_provider(&self) -> AccountName {
        self.account.clone().unwrap_or_else(|| self.provider.into())
    }

    /// The provider's request fields for this job.
    pub fn provider_request(&self) -> Cow<'_, ProviderRequest> {
        if let Some(request) = &self.request {
            return Cow::Borrowed(request);
        }
        let catalog = Catalog::built_in();
        let mut request = match catalog.rule(self.provider, &self.model) {
            Some(rule) => {
                rule.provider_request(self.duration_s, self.aspect, self.quality, &Map::new())
            }
            None => {
                catalog.contract_request(self.provider, self.duration_s, self.aspect, self.quality)
            }
        };
        if self.image_urls.is_empty() {
            request.images = None;
        }
        Cow::Owned(request)
    }
}

/// A character built from a reference video, with the seconds of that video in which it
/// appears (AceData's reference: "the starting range of seconds").
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Character {
    pub url: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end: Option<f64>,
}

/// Why a request was refused, naming the field and what it allows.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct SpecError {
    pub field: &'static str,
    pub message: String,
}

impl SpecError {
    pub(crate) fn new(field: &'static str, message: impl Into<String>) -> Self {
        Self {
            field,
            message: message.into(),
        }
    }
}

impl JobRequest {
    /// Checks the request against its model's row in `catalog`. `now_ms` (unix ms) is
    /// passed in so this stays free of clocks.
    pub fn validate(mut self, catalog: &Catalog, now_ms: u64) -> Result<JobSpec, SpecError> {
        if let Some(route) = self.route.take() {
            return crate::route::validate(self, &route, catalog, now_ms);
        }
        let provider: ProviderKind = required("provider", self.provider)?.parse()?;
        let tenant = self.tenant.map(|name| name.parse()).transpose()?;
        let account = self
            .account
            .map(|name| name.parse::<AccountName>())
            .transpose()?;
        match account.as_ref().and_then(AccountName::contract_named) {
            // The contract's own name is also "any of its accounts" to the claim, so it
            // cannot pin a job to one.
            Some(named) if named == provider => {
                return Err(SpecError::new(
                    "account",
                    format!(
                        "\"{provider}\" is the provider itself, which means any of its accounts: \
                         leave account out, or name one of its accounts"
                    ),
                ));
            }
            Some(named) => {
                return Err(SpecError::new(
                    "account",
                    format!("\"{named}\" names the {named} provider, not a {provider} account"),
                ));
            }
            None => {}
        }
        let model = required("model", self.model)?;
        let rule = catalog.rule(provider, &model).ok_or_else(|| {
            SpecError::new(
                "model",
                format!(
                    "unknown model {model:?} for provider {provider} (known: {})",
                    join(
                        catalog
                            .models_of(provider)
                            .filter(|r| r.status.takes_jobs())
                            .map(|r| &r.model)
                    )
                ),
            )
        })?;
        if !rule.status.takes_jobs() {
            let notice = rule.lifecycle_notice().unwrap_or_default();
            return Err(SpecError::new("model", format!("model {notice}")));
        }
        let prompt = required("prompt", self.prompt)?;
        check_prompt(&prompt, rule)?;
        let duration_s = self.duration_s.unwrap_or(rule.durations[0]);
        if !rule.durations.contains(&duration_s) {
            return Err(not_allowed("duration_s", duration_s, rule, &rule.durations));
        }
        let aspect = pick("aspect", self.aspect, rule, &rule.aspects)?;
        let quality = pick("quality", self.quality, rule, &rule.qualities)?;
        check_images(&self.image_urls, rule)?;
        let character = character(
            self.character_url,
            self.character_start,
            self.character_end,
            rule,
        )?;
        let extra = self.extra.unwrap_or_default();
        check_extra(&extra, rule)?;
        let mut request = rule.provider_request(duration_s, aspect, quality, &extra);
        if self.image_urls.is_empty() {
            request.images = None;
        }
        if let Some(url) = &self.notify_url {
            check_url("notify_url", url)?;
        }
        let notify_events = self.notify_events.unwrap_or_default();
        if !notify_events.is_empty() && self.notify_url.is_none() {
            return Err(SpecError::new("notify_events", "needs a notify_url"));
        }
        if let Some(unknown) = notify_events
            .iter()
            .find(|e| !JOB_EVENTS.contains(&e.as_str()))
        {
            return Err(SpecError::new(
                "notify_events",
                format!(
                    "{unknown:?} is not an event (events: {})",
                    JOB_EVENTS.join(", ")
                ),
            ));
        }
        let deadline_ms = self
            .deadline
            .map(|d| parse_deadline(&d, now_ms))
            .transpose()?;
        Ok(JobSpec {
            provider,
            account,
            model,
            prompt,
            duration_s,
            aspect,
            quality,
            image_urls: self.image_urls,
            character,
            notify_url: self.notify_url,
            notify_events,
            deadline_ms,
            tenant,
            estimated_cost_usd: None,
            request: Some(request),
            route: None,
        })
    }
}

/// Every option is one the model's row declares, with a value it takes.
fn check_extra(extra: &Map<String, Value>, rule: &ModelRule) -> Result<(), SpecError> {
    for (name, value) in extra {
        let Some(option) = rule.extra.get(name) else {
            let known = match rule.extra.is_empty() {
                true => "none".to_owned(),
                false => join(rule.extra.keys()),
            };
            return Err(SpecError::new(
                "extra",
                format!(
                    "{name:?} is not an option of {} model {:?} (options: {known})",
                    rule.provider, rule.model
                ),
            ));
        };
        if let Some(problem) = option.problem(value) {
            return Err(SpecError::new("extra", format!("{name}: {problem}")));
        }
    }
    Ok(())
}

fn required(field: &'static str, value: Option<String>) -> Result<String, SpecError> {
    value.ok_or_else(|| SpecError::new(field, "is required"))
}

/// Parses an optional enum field, defaulting to the model's first allowed value.
fn pick<T>(
    field: &'static str,
    value: Option<String>,
    rule: &ModelRule,
    allowed: &[T],
) -> Result<T, SpecError>
where
    T: Copy + PartialEq + FromStr + fmt::Display,
{
    let Some(value) = value else {
        return Ok(allowed[0]);
    };
    match value.parse::<T>() {
        Ok(parsed) if allowed.contains(&parsed) => Ok(parsed),
        _ => Err(not_allowed(field, format!("{value:?}"), rule, allowed)),
    }
}

fn not_allowed<T: fmt::Display>(
    field: &'static str,
    value: impl fmt::Display,
    rule: &ModelRule,
    allowed: &[T],
) -> SpecError {
    SpecError::new(
        field,
        format!(
            "{value} is not allowed for {} model {:?} (allowed: {})",
            rule.provider,
            rule.model,
            join(allowed.iter())
        ),
    )
}

/// An http(s) URL of at most [`MAX_URL_CHARS`], or an error naming `field`.
pub fn check_url(field: &'static str, url: &str) -> Result<(), SpecError> {
    if !is_http_url(url) {
        return Err(SpecError::new(
            field,
            format!("{url:?} is not an http(s) URL"),
        ));
    }
    if url.len() > MAX_URL_CHARS {
        return Err(SpecError::new(
            field,
            format!(
                "{} characters is over the limit of {MAX_URL_CHARS}",
                url.len()
            ),
        ));
    }
    Ok(())
}

/// Reads an RFC 3339 time that must lie in the future, as unix ms (a deadline, a start).
pub fn parse_deadline(deadline: &str, now_ms: u64) -> Result<u64, SpecError> {
    let at = humantime::parse_rfc3339_weak(deadline).map_err(|err| {
        SpecError::new(
            "deadline",
            format!("{deadline:?} is not an RFC 3339 time ({err})"),
        )
    })?;
    let deadline_ms = at
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    if deadline_ms <= now_ms {
        return Err(SpecError::new(
            "deadline",
            format!("{deadline:?} is in the past"),
        ));
    }
    Ok(deadline_ms)
}

fn is_http_url(url: &str) -> bool {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"));
    rest.is_some_and(|rest| !rest.is_empty())
}

pub(crate) fn join<T: fmt::Display>(items: impl Iterator<Item = T>) -> String {
    items
        .map(|item| item.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests;
