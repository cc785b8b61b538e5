//! Tenants: the services, or their customers, that share one deployment. Every job belongs to
//! one (the default tenant unless its producer names another); the claim shares each provider
//! account's capacity between the tenants with jobs waiting, by weight.

use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::{
    SpecError,
    account::{key_safe, key_safe_name},
};

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

key_safe_name!(TenantName);

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
