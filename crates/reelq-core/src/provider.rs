//! Which provider a job goes to: the one list of providers reelq has an adapter for.

use std::{fmt, str::FromStr};

use serde::{Deserialize, Serialize};

use crate::{SpecError, spec::join};

/// The providers reelq has an adapter for.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProviderKind {
    Kie,
    Acedata,
    Evolink,
    /// An OpenAI-compatible Videos API gateway.
    Openai,
    /// Replicate's predictions API (any model it hosts, by `owner/name`).
    Replicate,
    /// Google's Veo models through the Gemini API.
    Gemini,
    /// fal.ai's queue API (any model it hosts, by its id).
    Fal,
    /// Kling's own API (Kuaishou): its models by `model_name`, tasks named by reelq's job id.
    Kling,
    /// ByteDance's Seedance models through BytePlus ModelArk (Volcengine Ark in China: the
    /// same API, its own host and keys).
    Ark,
    /// Alibaba Cloud Model Studio (DashScope): the Wan models, asynchronous tasks, polled.
    Dashscope,
}

impl ProviderKind {
    pub const ALL: [ProviderKind; 10] = [
        ProviderKind::Kie,
        ProviderKind::Acedata,
        ProviderKind::Evolink,
        ProviderKind::Openai,
        ProviderKind::Replicate,
        ProviderKind::Gemini,
        ProviderKind::Fal,
        ProviderKind::Kling,
        ProviderKind::Ark,
        ProviderKind::Dashscope,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ProviderKind::Kie => "kie",
            ProviderKind::Acedata => "acedata",
            ProviderKind::Evolink => "evolink",
            ProviderKind::Openai => "openai",
            ProviderKind::Replicate => "replicate",
            ProviderKind::Gemini => "gemini",
            ProviderKind::Fal => "fal",
            ProviderKind::Kling => "kling",
            ProviderKind::Ark => "ark",
            ProviderKind::Dashscope => "dashscope",
        }
    }

    /// Whether a generation can be stopped at this provider (its adapter has a cancel call:
    /// fal's queue and Replicate's predictions; Ark's and DashScope's, while the task is still
    /// queued).
    /// Operators read it before asking; the contract suite checks that the adapters agree.
    pub fn cancels_generations(self) -> bool {
        matches!(
            self,
            ProviderKind::Fal
                | ProviderKind::Replicate
                | ProviderKind::Ark
                | ProviderKind::Dashscope
        )
    }
}

impl fmt::Display for ProviderKind {
    /// Honours width and alignment (`{:<10}`), so tables line up.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
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
