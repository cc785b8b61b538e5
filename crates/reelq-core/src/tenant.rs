//! Tenants: the services, or their customers, that share one deployment. Every job belongs to
//! one (the default tenant unless its producer names another); the claim shares each provider
//! account's capacity between the tenants with jobs waiting, by weight.

use std::{fmt, str::FromStr};

use serde::{Deserialize, Serialize};

use crate::{SpecError, account::key_safe};

/// The longest tenant name: it becomes part of Redis keys.
const MAX_TENANT_CHARS: usize = 64;

/// A tenant's name: 1 to 64 of `a-z`, `0-9`, `-`, `_`, starting with a letter or digit.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct TenantName(String);

impl TenantName {
    /// The tenant of every job whose producer names none.
    pub const DEFAULT: &str = "default";

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The tenant a job of `tenant` belongs to: the one named, or the default.
    pub fn of(tenant: Option<&TenantName>) -> &str {
        tenant.map_or(Self::DEFAULT, TenantName::as_str)
    }
}

impl FromStr for TenantName {
    type Err = SpecError;
    fn from_str(name: &str) -> Result<Self, SpecError> {
        key_safe("tenant", name, MAX_TENANT_CHARS).map(TenantName)
    }
}

impl TryFrom<String> for TenantName {
    type Error = SpecError;
    fn try_from(name: String) -> Result<Self, SpecError> {
        name.parse()
    }
}

impl From<TenantName> for String {
    fn from(name: TenantName) -> String {
        name.0
    }
}

impl fmt::Display for TenantName {
    /// Honours width and alignment, so tables line up.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_short_and_plain() {
        for good in ["acme", "customer-42", "night_batch", "7"] {
            good.parse::<TenantName>().unwrap();
        }
        for bad in ["", "Acme", "a b", "a:b", "-a", &"a".repeat(65)] {
            let err = bad.parse::<TenantName>().unwrap_err();
            assert_eq!(err.field, "tenant", "{bad:?}");
        }
        assert_eq!(TenantName::of(None), "default");
    }
}
