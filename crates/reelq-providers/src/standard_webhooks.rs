//! The Standard Webhooks scheme (`webhook-id`, `webhook-timestamp`, `webhook-signature:
//! v1,<base64 HMAC-SHA256 of "id.timestamp.body">`, secret `whsec_<base64>`): verified on
//! OpenAI-compatible callbacks and used to sign reelq's own completion webhooks.

use base64::{Engine, engine::general_purpose::STANDARD as BASE64};
use hmac::{Hmac, Mac};
use reqwest::header::HeaderMap;
use sha2::Sha256;

use crate::CallbackError;

/// How far a signed timestamp may be from now, either way.
const TOLERANCE_S: u64 = 300;

/// A decoded `whsec_` secret.
pub struct WebhookKey(Vec<u8>);

impl std::fmt::Debug for WebhookKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WebhookKey(***)")
    }
}

#[derive(Debug, thiserror::Error)]
#[error("a webhook secret must be whsec_<base64>")]
pub struct BadWebhookSecret;

impl WebhookKey {
    /// Reads `whsec_<base64>` (the prefix is optional, as the standard's libraries allow).
    pub fn parse(secret: &str) -> Result<Self, BadWebhookSecret> {
        let encoded = secret.strip_prefix("whsec_").unwrap_or(secret);
        BASE64
            .decode(encoded)
            .map(WebhookKey)
            .map_err(|_| BadWebhookSecret)
    }

    fn mac(&self, id: &str, timestamp: &str, body: &[u8]) -> Hmac<Sha256> {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.0).expect("HMAC takes any key length");
        mac.update(id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.as_bytes());
        mac.update(b".");
        mac.update(body);
        mac
    }

    /// The `webhook-signature` header value for one delivery.
    pub fn sign(&self, id: &str, timestamp: u64, body: &[u8]) -> String {
        let mac = self.mac(id, &timestamp.to_string(), body);
        format!("v1,{}", BASE64.encode(mac.finalize().into_bytes()))
    }

    /// Checks a delivery's headers against its body. The signature header may hold several
    /// space-separated signatures (during a secret rotation); one valid `v1` one is enough.
    pub fn verify(
        &self,
        headers: &HeaderMap,
        body: &[u8],
        now_s: u64,
    ) -> Result<(), CallbackError> {
        let header = |name: &str| headers.get(name).and_then(|value| value.to_str().ok());
        let (Some(id), Some(timestamp), Some(signatures)) = (
            header("webhook-id"),
            header("webhook-timestamp"),
            header("webhook-signature"),
        ) else {
            return Err(CallbackError::BadSignature);
        };
        let sent_s: u64 = timestamp.parse().map_err(|_| CallbackError::BadSignature)?;
        if now_s.abs_diff(sent_s) > TOLERANCE_S {
            return Err(CallbackError::Stale);
        }
        let valid = signatures
            .split(' ')
            .filter_map(|signature| signature.strip_prefix("v1,"))
            .filter_map(|encoded| BASE64.decode(encoded).ok())
            .any(|signature| {
                self.mac(id, timestamp, body)
                    .verify_slice(&signature)
                    .is_ok()
            });
        if valid {
            Ok(())
        } else {
            Err(CallbackError::BadSignature)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW_S: u64 = 1_780_000_000;

    fn headers(id: &str, timestamp: u64, signature: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert("webhook-id", id.parse().unwrap());
        headers.insert("webhook-timestamp", timestamp.to_string().parse().unwrap());
        headers.insert("webhook-signature", signature.parse().unwrap());
        headers
    }

    #[test]
    fn the_standard_test_vector_verifies() {
        // The example from the Standard Webhooks specification.
        let key = WebhookKey::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let body = br#"{"test": 2432232314}"#;
        let signature = key.sign("msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body);
        assert_eq!(signature, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
        let headers = headers("msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, &signature);
        assert!(key.verify(&headers, body, 1614265330).is_ok());
    }

    #[test]
    fn forged_stale_and_missing_signatures_are_refused() {
        let key = WebhookKey::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let other = WebhookKey::parse("whsec_AAAAAAAAAAAAAAAAAAAAAAAA").unwrap();
        let body = b"{}";
        let forged = headers("m", NOW_S, &other.sign("m", NOW_S, body));
        assert_eq!(
            key.verify(&forged, body, NOW_S),
            Err(CallbackError::BadSignature)
        );
        let stale = headers("m", NOW_S - 301, &key.sign("m", NOW_S - 301, body));
        assert_eq!(key.verify(&stale, body, NOW_S), Err(CallbackError::Stale));
        let tampered = headers("m", NOW_S, &key.sign("m", NOW_S, body));
        assert_eq!(
            key.verify(&tampered, b"{ }", NOW_S),
            Err(CallbackError::BadSignature)
        );
        assert_eq!(
            key.verify(&HeaderMap::new(), body, NOW_S),
            Err(CallbackError::BadSignature)
        );
        let rotated = format!("v1,bm9wZQ== {}", key.sign("m", NOW_S, body));
        assert!(
            key.verify(&headers("m", NOW_S, &rotated), body, NOW_S)
                .is_ok()
        );
    }
}
