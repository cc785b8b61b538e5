//! What an API token may do. A token is bound to one tenant (or to all, an operator's) and
//! holds some of these scopes.

use std::{fmt, str::FromStr};

use serde::{Deserialize, Serialize};

use crate::SpecError;

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    /// Enqueue jobs and batches, and cancel its tenant's jobs.
    Enqueue,
    /// Read its tenant's jobs, batches and videos.
    Read,
    /// Everything an operator does: metrics, every tenant's jobs (with a token of no tenant).
    Operate,
}

impl Scope {
    pub const ALL: [Scope; 3] = [Scope::Enqueue, Scope::Read, Scope::Operate];

    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Enqueue => "enqueue",
            Scope::Read => "read",
            Scope::Operate => "operate",
        }
    }
}

impl FromStr for Scope {
    type Err = SpecError;
    fn from_str(name: &str) -> Result<Self, SpecError> {
        Scope::ALL
            .into_iter()
            .find(|scope| scope.as_str() == name)
            .ok_or_else(|| {
                SpecError::new(
                    "scope",
                    format!("{name:?} is not a scope (enqueue, read, operate)"),
                )
            })
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
