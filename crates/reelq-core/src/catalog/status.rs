//! A catalog row's place in its provider's life of the model: sold, ending, paused, gone.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Where a model is in its provider's life of it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ModelStatus {
    #[default]
    Active,
    Deprecated,
    Paused,
    Retired,
}

impl ModelStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ModelStatus::Active => "active",
            ModelStatus::Deprecated => "deprecated",
            ModelStatus::Paused => "paused",
            ModelStatus::Retired => "retired",
        }
    }

    /// Whether a new job may ask for a model in this state.
    pub fn takes_jobs(self) -> bool {
        matches!(self, ModelStatus::Active | ModelStatus::Deprecated)
    }
}

impl fmt::Display for ModelStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
