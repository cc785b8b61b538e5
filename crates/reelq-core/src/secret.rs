//! A string that must never be printed: API keys and signing secrets.

use std::fmt;

use serde::Deserialize;

/// Holds a credential. `Debug` and `Display` print `***`; the only way to read the value is
/// [`Secret::expose`], so every use is greppable.
#[derive(Clone, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// The shortest API token accepted: 16 characters (with `openssl rand -hex 16`, 32).
pub const MIN_API_TOKEN_CHARS: usize = 16;

/// The bearer token of the HTTP API and the dashboard. It cannot be empty or short, so an
/// unset `REELQ_API_TOKEN=` refuses to start the server instead of switching auth off.
#[derive(Clone, Debug)]
pub struct ApiToken(Secret);

/// Why a configured API token is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApiTokenError {
    #[error(
        "the API token is empty: set REELQ_API_TOKEN (or --token) to a random value of at least {MIN_API_TOKEN_CHARS} characters"
    )]
    Empty,
    #[error(
        "the API token has {0} characters, fewer than {MIN_API_TOKEN_CHARS}: use a random value such as `openssl rand -hex 16`"
    )]
    Short(usize),
    #[error(
        "the API token contains whitespace (a pasted newline?): it could never be presented in a header"
    )]
    Whitespace,
}

impl ApiToken {
    pub fn new(value: impl Into<String>) -> Result<Self, ApiTokenError> {
        let value = value.into();
        let chars = value.chars().count();
        if chars == 0 {
            Err(ApiTokenError::Empty)
        } else if value.chars().any(char::is_whitespace) {
            Err(ApiTokenError::Whitespace)
        } else if chars < MIN_API_TOKEN_CHARS {
            Err(ApiTokenError::Short(chars))
        } else {
            Ok(ApiToken(Secret::new(value)))
        }
    }

    pub fn expose(&self) -> &str {
        self.0.expose()
    }

    /// Whether `presented` is this token, compared without an early exit so timing says
    /// nothing about how much matched.
    pub fn matches(&self, presented: &[u8]) -> bool {
        let expected = self.expose().as_bytes();
        presented.len() == expected.len()
            && presented
                .iter()
                .zip(expected)
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_api_token_is_never_empty_short_or_padded() {
        assert_eq!(ApiToken::new("").unwrap_err(), ApiTokenError::Empty);
        assert_eq!(ApiToken::new("short").unwrap_err(), ApiTokenError::Short(5));
        assert_eq!(
            ApiToken::new("0123456789abcdef\n").unwrap_err(),
            ApiTokenError::Whitespace
        );
        let token = ApiToken::new("0123456789abcdef").unwrap();
        assert!(token.matches(b"0123456789abcdef"));
        assert!(!token.matches(b"0123456789abcdeF"));
        assert!(!token.matches(b""));
        assert_eq!(format!("{token:?}"), "ApiToken(***)");
    }

    #[test]
    fn debug_and_display_hide_the_value() {
        let secret = Secret::new("sk-live-123");
        assert_eq!(format!("{secret:?} {secret}"), "*** ***");
        assert_eq!(secret.expose(), "sk-live-123");
    }
}
