//! What a producer asks for ([`JobRequest`]) and what the ledger stores once it is checked
//! ([`JobSpec`]). Validation happens once, at enqueue, so a worker never meets a bad request.

use std::{fmt, str::FromStr, time::UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::catalog::{self, ImageRule, ModelRule};

/// The providers reelq has an adapter for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProviderKind {
    Kie,
}

impl ProviderKind {
    pub const ALL: [ProviderKind; 1] = [ProviderKind::Kie];

    pub fn as_str(self) -> &'static str {
        match self {
            ProviderKind::Kie => "kie",
        }
    }
}

impl fmt::Display for ProviderKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ProviderKind {
    type Err = SpecError;
    fn from_str(s: &str) -> Result<Self, SpecError> {
        ProviderKind::ALL
            .into_iter()
            .find(|kind| kind.as_str() == s)
            .ok_or_else(|| {
                SpecError::new(
                    "provider",
                    format!(
                        "unknown provider {s:?} (known: {})",
                        join(ProviderKind::ALL.iter().map(|k| k.as_str()))
                    ),
                )
            })
    }
}

/// Frame orientation, mapped onto each provider's own vocabulary by its adapter.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Aspect {
    Landscape,
    Portrait,
    Square,
}

/// Output quality tier, mapped onto each provider's size or resolution names by its adapter.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
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

/// The longest prompt reelq accepts from any provider, in characters.
pub const MAX_PROMPT_CHARS: usize = 20_000;

/// A producer's request, as it arrives from the CLI, a JSONL manifest or the Rust API.
/// Every field is optional here so that validation, not the parser, names what is missing.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobRequest {
    pub provider: Option<String>,
    pub model: Option<String>,
    pub prompt: Option<String>,
    pub duration_s: Option<u32>,
    pub aspect: Option<String>,
    pub quality: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub image_urls: Vec<String>,
    /// Where reelq POSTs the completion event.
    pub notify_url: Option<String>,
    /// RFC 3339 time after which the job ends `expired` if it has not finished.
    pub deadline: Option<String>,
}

/// A request that passed validation, with every default filled in. This is what the ledger
/// stores and what workers read.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct JobSpec {
    pub provider: ProviderKind,
    pub model: String,
    pub prompt: String,
    pub duration_s: u32,
    pub aspect: Aspect,
    pub quality: Quality,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub image_urls: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notify_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deadline_ms: Option<u64>,
}

/// Why a request was refused, naming the field and what it allows.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct SpecError {
    pub field: &'static str,
    pub message: String,
}

impl SpecError {
    fn new(field: &'static str, message: impl Into<String>) -> Self {
        Self {
            field,
            message: message.into(),
        }
    }
}

impl JobRequest {
    /// Checks the request against its provider's and model's rules. `now_ms` (unix ms) is
    /// passed in so this stays free of clocks.
    pub fn validate(self, now_ms: u64) -> Result<JobSpec, SpecError> {
        let provider: ProviderKind = required("provider", self.provider)?.parse()?;
        let model = required("model", self.model)?;
        let rule = catalog::rule(provider, &model).ok_or_else(|| {
            SpecError::new(
                "model",
                format!(
                    "unknown model {model:?} for provider {provider} (known: {})",
                    join(catalog::models_of(provider).map(|r| r.model))
                ),
            )
        })?;
        let prompt = required("prompt", self.prompt)?;
        if prompt.trim().is_empty() {
            return Err(SpecError::new("prompt", "must not be empty"));
        }
        let n_chars = prompt.chars().count();
        if n_chars > MAX_PROMPT_CHARS {
            return Err(SpecError::new(
                "prompt",
                format!("{n_chars} characters is over the limit of {MAX_PROMPT_CHARS}"),
            ));
        }
        let duration_s = self.duration_s.unwrap_or(rule.durations[0]);
        if !rule.durations.contains(&duration_s) {
            return Err(not_allowed("duration_s", duration_s, rule, rule.durations));
        }
        let aspect = pick("aspect", self.aspect, rule, rule.aspects)?;
        let quality = pick("quality", self.quality, rule, rule.qualities)?;
        check_images(&self.image_urls, rule)?;
        if let Some(url) = self.notify_url.as_ref().filter(|url| !is_http_url(url)) {
            return Err(SpecError::new(
                "notify_url",
                format!("{url:?} is not an http(s) URL"),
            ));
        }
        let deadline_ms = self
            .deadline
            .map(|d| parse_deadline(&d, now_ms))
            .transpose()?;
        Ok(JobSpec {
            provider,
            model,
            prompt,
            duration_s,
            aspect,
            quality,
            image_urls: self.image_urls,
            notify_url: self.notify_url,
            deadline_ms,
        })
    }
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

fn check_images(image_urls: &[String], rule: &ModelRule) -> Result<(), SpecError> {
    let n_images = image_urls.len();
    let problem = match rule.images {
        ImageRule::None if n_images > 0 => Some("takes no images".to_owned()),
        ImageRule::Exactly(n) if n_images != n => Some(format!("needs exactly {n}")),
        _ => None,
    };
    if let Some(problem) = problem {
        return Err(SpecError::new(
            "image_urls",
            format!(
                "{} model {:?} {problem} (got {n_images})",
                rule.provider, rule.model
            ),
        ));
    }
    match image_urls.iter().find(|url| !is_http_url(url)) {
        Some(url) => Err(SpecError::new(
            "image_urls",
            format!("{url:?} is not an http(s) URL"),
        )),
        None => Ok(()),
    }
}

fn parse_deadline(deadline: &str, now_ms: u64) -> Result<u64, SpecError> {
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

fn join<T: fmt::Display>(items: impl Iterator<Item = T>) -> String {
    items
        .map(|item| item.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW_MS: u64 = 1_780_000_000_000;

    fn request(json: &str) -> JobRequest {
        serde_json::from_str(json).expect("test request parses")
    }

    #[track_caller]
    fn check_err(json: &str, expect: &str) {
        let err = request(json).validate(NOW_MS).unwrap_err();
        assert_eq!(err.to_string(), expect);
    }

    #[test]
    fn defaults_come_from_the_model_rule() {
        let spec = request(r#"{"provider":"kie","model":"sora-2-text-to-video","prompt":"a cat"}"#)
            .validate(NOW_MS)
            .unwrap();
        assert_eq!(spec.duration_s, 10);
        assert_eq!(spec.aspect, Aspect::Landscape);
        assert_eq!(spec.quality, Quality::Standard);
        assert_eq!(spec.deadline_ms, None);
    }

    #[test]
    fn bad_requests_name_the_field_and_the_allowed_values() {
        check_err(
            r#"{"provider":"sora","model":"m","prompt":"p"}"#,
            r#"provider: unknown provider "sora" (known: kie)"#,
        );
        check_err(
            r#"{"provider":"kie","model":"sora-3","prompt":"p"}"#,
            r#"model: unknown model "sora-3" for provider kie (known: sora-2-text-to-video, sora-2-pro-text-to-video, sora-2-image-to-video, sora-2-pro-image-to-video)"#,
        );
        check_err(
            r#"{"provider":"kie","model":"sora-2-text-to-video"}"#,
            "prompt: is required",
        );
        check_err(
            r#"{"provider":"kie","model":"sora-2-text-to-video","prompt":"  "}"#,
            "prompt: must not be empty",
        );
        check_err(
            r#"{"provider":"kie","model":"sora-2-text-to-video","prompt":"p","duration_s":12}"#,
            r#"duration_s: 12 is not allowed for kie model "sora-2-text-to-video" (allowed: 10, 15)"#,
        );
        check_err(
            r#"{"provider":"kie","model":"sora-2-text-to-video","prompt":"p","aspect":"square"}"#,
            r#"aspect: "square" is not allowed for kie model "sora-2-text-to-video" (allowed: landscape, portrait)"#,
        );
        check_err(
            r#"{"provider":"kie","model":"sora-2-image-to-video","prompt":"p"}"#,
            r#"image_urls: kie model "sora-2-image-to-video" needs exactly 1 (got 0)"#,
        );
        check_err(
            r#"{"provider":"kie","model":"sora-2-text-to-video","prompt":"p","deadline":"2020-01-01T00:00:00Z"}"#,
            r#"deadline: "2020-01-01T00:00:00Z" is in the past"#,
        );
        check_err(
            r#"{"provider":"kie","model":"sora-2-text-to-video","prompt":"p","notify_url":"ftp://x"}"#,
            r#"notify_url: "ftp://x" is not an http(s) URL"#,
        );
    }

    #[test]
    fn over_long_prompt_is_refused() {
        let prompt = "a".repeat(MAX_PROMPT_CHARS + 1);
        let err = JobRequest {
            provider: Some("kie".into()),
            model: Some("sora-2-text-to-video".into()),
            prompt: Some(prompt),
            ..JobRequest::default()
        }
        .validate(NOW_MS)
        .unwrap_err();
        assert_eq!(err.field, "prompt");
    }

    #[test]
    fn unknown_fields_are_refused_by_name() {
        let err = serde_json::from_str::<JobRequest>(
            r#"{"provider":"kie","model":"m","prompt":"p","duraton_s":10}"#,
        )
        .unwrap_err();
        assert!(
            err.to_string().contains("unknown field `duraton_s`"),
            "{err}"
        );
    }

    #[test]
    fn future_deadline_is_kept_in_ms() {
        let spec = request(
            r#"{"provider":"kie","model":"sora-2-text-to-video","prompt":"p","deadline":"2099-01-01T00:00:00Z"}"#,
        )
        .validate(NOW_MS)
        .unwrap();
        assert_eq!(spec.deadline_ms, Some(4_070_908_800_000));
    }
}
