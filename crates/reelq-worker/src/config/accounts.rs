//! The provider accounts a worker holds: one per contract (`[providers.<contract>]`) or by
//! name (`[accounts.<name>]`), with their keys, polling, limits and budgets.

use std::time::Duration;

use reelq_core::{AccountName, ProviderKind, Secret};
use serde::Deserialize;

use super::{WorkerConfig, durations};

/// One account per provider; a job for a provider this worker has no account for is left
/// for a replica that has one.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProvidersConfig {
    pub kie: Option<ProviderAccount>,
    pub acedata: Option<ProviderAccount>,
    pub evolink: Option<ProviderAccount>,
    pub openai: Option<ProviderAccount>,
    pub replicate: Option<ProviderAccount>,
    pub gemini: Option<ProviderAccount>,
    pub fal: Option<ProviderAccount>,
    /// Its `api_key` is `"<access key>:<secret key>"`: Kling signs a token per request.
    pub kling: Option<ProviderAccount>,
    pub ark: Option<ProviderAccount>,
    pub dashscope: Option<ProviderAccount>,
}

impl ProvidersConfig {
    /// The configured accounts, by provider.
    pub(super) fn by_contract(&self) -> impl Iterator<Item = (ProviderKind, &ProviderAccount)> {
        [
            (ProviderKind::Kie, &self.kie),
            (ProviderKind::Acedata, &self.acedata),
            (ProviderKind::Evolink, &self.evolink),
            (ProviderKind::Openai, &self.openai),
            (ProviderKind::Replicate, &self.replicate),
            (ProviderKind::Gemini, &self.gemini),
            (ProviderKind::Fal, &self.fal),
            (ProviderKind::Kling, &self.kling),
            (ProviderKind::Ark, &self.ark),
            (ProviderKind::Dashscope, &self.dashscope),
        ]
        .into_iter()
        .filter_map(|(kind, account)| Some((kind, account.as_ref()?)))
    }
}

/// One configured account: its name, its contract and its settings.
#[derive(Debug, Clone)]
pub struct ConfiguredAccount<'a> {
    pub name: AccountName,
    pub contract: ProviderKind,
    pub settings: &'a ProviderAccount,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderAccount {
    /// The account's contract: required in `[accounts.<name>]`, implied by the table's name
    /// in `[providers.<contract>]`.
    pub contract: Option<ProviderKind>,
    pub base_url: String,
    pub api_key: Secret,
    #[serde(
        default = "default_request_timeout",
        deserialize_with = "durations::deserialize"
    )]
    pub request_timeout: Duration,
    /// Delay from submit to the first poll.
    #[serde(
        default = "default_first_poll",
        deserialize_with = "durations::deserialize"
    )]
    pub first_poll: Duration,
    /// Base of the longest gap between polls (jitter adds up to as much again).
    #[serde(
        default = "default_poll_max",
        deserialize_with = "durations::deserialize"
    )]
    pub poll_max: Duration,
    /// The account's callback signing secret: kie's webhook HMAC key, or an OpenAI-style
    /// gateway's `whsec_` secret. When set, unsigned or mis-signed callbacks are refused.
    /// OpenAI-style webhooks are refused unless it is set (nothing else authenticates them).
    pub webhook_secret: Option<Secret>,
    /// Provider calls (submits and polls) per second across all replicas; 0 = no limit.
    /// Every replica must be given the same limits.
    #[serde(default)]
    pub max_requests_per_s: f64,
    /// Calls that may go at once after a quiet spell (at least 1).
    #[serde(default = "default_burst")]
    pub burst: u32,
    /// Generations in flight (submitted, not finished) across all replicas; 0 = no limit.
    #[serde(default)]
    pub max_in_flight: u32,
    /// An in-flight slot no poll renewed for this long is freed (a lost job's slot returns).
    #[serde(
        default = "default_slot_ttl",
        deserialize_with = "durations::deserialize"
    )]
    pub in_flight_slot_ttl: Duration,
    /// Estimated spend per UTC day on this account, in dollars (jobs' price estimates);
    /// past it, submits wait for the next day. 0 = no daily budget.
    #[serde(default)]
    pub daily_budget_usd: f64,
    /// How long an `uncertain` job keeps its in-flight slot: about one generation, since the
    /// provider may still be making its video; then the slot serves other jobs.
    #[serde(
        default = "default_uncertain_slot",
        deserialize_with = "durations::deserialize"
    )]
    pub uncertain_slot: Duration,
    /// Retry a create the provider's own server answered HTTP 500 (in its own error shape),
    /// as a refusal. Off by default: a provider's server can fail after accepting (and
    /// billing) the task, so the job is `uncertain` and settled from the provider's records.
    /// Turn it on only for a provider whose 500 is known to mean "nothing was created": if
    /// it is wrong, each retry may be billed.
    #[serde(default)]
    pub retry_server_errors_on_create: bool,
}

fn default_uncertain_slot() -> Duration {
    Duration::from_millis(10 * 60 * 1000)
}

fn default_burst() -> u32 {
    1
}
fn default_slot_ttl() -> Duration {
    Duration::from_millis(30 * 60 * 1000)
}

fn default_request_timeout() -> Duration {
    Duration::from_millis(30_000)
}
fn default_first_poll() -> Duration {
    Duration::from_millis(15_000)
}
fn default_poll_max() -> Duration {
    Duration::from_millis(60_000)
}

impl WorkerConfig {
    /// Every configured account: `[providers.<contract>]` (named after its contract), then
    /// `[accounts.<name>]` (the config check has made sure each has a contract that fits).
    pub fn accounts(&self) -> Vec<ConfiguredAccount<'_>> {
        let by_contract =
            self.providers
                .by_contract()
                .map(|(contract, settings)| ConfiguredAccount {
                    name: contract.into(),
                    contract,
                    settings,
                });
        let named = self.accounts.iter().filter_map(|(name, settings)| {
            Some(ConfiguredAccount {
                name: name.clone(),
                contract: settings.contract?,
                settings,
            })
        });
        by_contract.chain(named).collect()
    }

    /// The cluster-wide limits of every configured account (zeros where it has none, so
    /// readers know every account).
    pub fn limits(&self) -> Vec<reelq_queue::ProviderLimit> {
        self.accounts()
            .into_iter()
            .map(
                |ConfiguredAccount {
                     name,
                     settings: account,
                     ..
                 }| reelq_queue::ProviderLimit {
                    account: name,
                    requests_per_s: account.max_requests_per_s,
                    burst: account.burst,
                    max_in_flight: account.max_in_flight,
                    slot_ttl: account.in_flight_slot_ttl,
                    daily_budget_micros: reelq_core::usd_to_micros(account.daily_budget_usd),
                    uncertain_slot_ttl: account.uncertain_slot,
                },
            )
            .collect()
    }
}
