//! How a simulator is set up ([`SimConfig`]) and how it treats the callbacks it owes
//! ([`CallbackMode`]).

use std::time::Duration;

use reelq_core::Catalog;

/// How the simulated provider behaves.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// The API key of the simulator's first account.
    pub api_key: String,
    /// Keys of more accounts at the same providers (two kie keys, say); their in-flight
    /// generations are counted apart (`SimStats::max_in_flight_per_account`).
    pub other_api_keys: Vec<String>,
    /// How long a task generates before it succeeds.
    pub generation_time: Duration,
    /// Zero bytes added to every video (inside a `free` box), to simulate big files.
    pub video_padding: u64,
    /// The kie account's webhook HMAC key: when set, kie callbacks carry its signature.
    pub webhook_hmac_key: Option<String>,
    /// The OpenAI-style account's webhook secret (`whsec_<base64>`): when set, its webhooks
    /// are signed per Standard Webhooks.
    pub webhook_secret: Option<String>,
    /// Result URLs stop working this long after they were handed out (403, like an expired
    /// pre-signed URL); a new query hands out a fresh one.
    pub result_url_ttl: Option<Duration>,
    /// Enforce evolink's callback URL rule (HTTPS, public host); off so loopback tests work.
    pub strict_callback_urls: bool,
    /// Keep every exchange (requests to the contracts' routes with their answers, and the
    /// callbacks sent) for [`crate::Simulator::exchanges`]: off unless a test asks.
    pub journal: bool,
    /// The models each contract serves, and how their fields are written:
    /// [`crate::served_catalog`], or it with an operator's rows (`--catalog`), so a model
    /// added there is served here too.
    pub catalog: Catalog,
}

impl SimConfig {
    /// A simulator accepting `api_key` whose tasks take `generation_time`, with no signing,
    /// padding or expiry.
    pub fn new(api_key: impl Into<String>, generation_time: Duration) -> Self {
        SimConfig {
            api_key: api_key.into(),
            other_api_keys: Vec::new(),
            generation_time,
            video_padding: 0,
            webhook_hmac_key: None,
            webhook_secret: None,
            result_url_ttl: None,
            strict_callback_urls: false,
            journal: false,
            catalog: crate::served_catalog().clone(),
        }
    }
}

/// How the simulator treats the callbacks it owes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallbackMode {
    /// Once, retried up to 3 times on failure (kie's schedule).
    Deliver,
    /// Never: the receiver must not be needed.
    Drop,
    /// The same callback this many times.
    Duplicate(usize),
    /// Signed with the wrong key, as a forger would.
    Forge,
    /// Each callback dropped or sent twice at random, by these percentages.
    Mixed {
        drop_percent: u8,
        duplicate_percent: u8,
    },
}
