//! Provider accounts: a deployment may hold several accounts of one contract (two kie keys,
//! each with its own limits, budgets and pauses). A job names its provider, and may name
//! one of its accounts; the ledger keeps each account's limits under its name.

use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::{ProviderKind, SpecError};

/// The longest account name: it becomes part of Redis keys and callback URLs.
const MAX_ACCOUNT_CHARS: usize = 32;

/// An account's name: 1 to 32 of `a-z`, `0-9`, `-`, `_`, starting with a letter or digit.
/// A contract's own name (`kie`) names the account configured as `[providers.kie]`, so it
/// may only be an account of that contract.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct AccountName(String);

impl AccountName {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The contract whose own name this is, if it is one (`kie` for the account of
    /// `[providers.kie]`).
    pub fn contract_named(&self) -> Option<ProviderKind> {
        self.0.parse().ok()
    }

    /// Whether this name may be an account of `contract`: any name but another contract's.
    pub fn fits(&self, contract: ProviderKind) -> bool {
        self.contract_named().is_none_or(|named| named == contract)
    }
}

impl From<ProviderKind> for AccountName {
    fn from(kind: ProviderKind) -> Self {
        AccountName(kind.as_str().to_owned())
    }
}

impl FromStr for AccountName {
    type Err = SpecError;
    fn from_str(name: &str) -> Result<Self, SpecError> {
        key_safe("account", name, MAX_ACCOUNT_CHARS).map(AccountName)
    }
}

/// `name` if it is 1 to `max` of `a-z`, `0-9`, `-`, `_`, starting with a letter or digit: safe
/// in a Redis key and a URL path. Refused naming `field`.
pub(crate) fn key_safe(field: &'static str, name: &str, max: usize) -> Result<String, SpecError> {
    let well_formed = !name.is_empty()
        && name.len() <= max
        && name.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
    match well_formed {
        true => Ok(name.to_owned()),
        false => Err(SpecError::new(
            field,
            format!(
                "{name:?} is not a{} {field} name (1 to {max} of a-z, 0-9, - and _)",
                match field.starts_with(['a', 'e', 'i', 'o', 'u']) {
                    true => "n",
                    false => "",
                }
            ),
        )),
    }
}

/// What a key-safe name type (a newtype over its `String`, parsed by `FromStr`) shares: read
/// from a string through its checks (serde's `try_from`), written as its string, shown
/// padded so tables line up.
macro_rules! key_safe_name {
    ($name:ident) => {
        impl TryFrom<String> for $name {
            type Error = SpecError;
            fn try_from(name: String) -> Result<Self, SpecError> {
                name.parse()
            }
        }

        impl From<$name> for String {
            fn from(name: $name) -> String {
                name.0
            }
        }

        impl std::fmt::Display for $name {
            /// Honours width and alignment, so tables line up.
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.pad(&self.0)
            }
        }
    };
}
pub(crate) use key_safe_name;

key_safe_name!(AccountName);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_short_plain_and_never_another_contracts() {
        for good in ["kie", "kie-b", "night_batch", "2"] {
            good.parse::<AccountName>().unwrap();
        }
        for bad in ["", "Kie", "kie b", "kie:1", "-kie", &"a".repeat(33)] {
            let err = bad.parse::<AccountName>().unwrap_err();
            assert_eq!(err.field, "account", "{bad:?}");
        }
        let acedata: AccountName = "acedata".parse().unwrap();
        assert!(acedata.fits(ProviderKind::Acedata) && !acedata.fits(ProviderKind::Kie));
        assert!(
            "kie-b"
                .parse::<AccountName>()
                .unwrap()
                .fits(ProviderKind::Kie)
        );
    }
}
