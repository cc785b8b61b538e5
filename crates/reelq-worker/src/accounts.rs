//! The provider accounts this worker holds: each configured account's adapter, poll
//! schedule and slot hold, by account name. Claims, steps, callbacks and reconciliation all
//! find an account here by the name the ledger keeps on the job.

use std::{collections::HashMap, sync::Arc, time::Duration};

use reelq_core::{AccountName, ProviderKind};
use reelq_providers::{AccountCheck, AccountConfig, Provider, ProviderError};

use crate::{WorkerConfig, WorkerError, steps::PollSchedule};

/// One account: its contract's adapter (with the account's key) and its schedules.
pub(crate) struct Account {
    pub(crate) adapter: Arc<dyn Provider>,
    pub(crate) poll: PollSchedule,
    /// How long an `uncertain` job of this account keeps its in-flight slot.
    pub(crate) uncertain_slot_hold: Duration,
    /// The operator trusts this provider's 500s on a create to mean nothing was created.
    pub(crate) retry_server_errors_on_create: bool,
}

/// Every account of this worker, by name.
pub(crate) struct Accounts(HashMap<AccountName, Account>);

impl Accounts {
    /// Builds every configured account's adapter (refusing a bad key or webhook secret).
    pub(crate) fn from_config(config: &WorkerConfig) -> Result<Accounts, WorkerError> {
        let mut accounts = HashMap::new();
        for configured in config.accounts() {
            let settings = configured.settings;
            let adapter = reelq_providers::adapter(
                configured.contract,
                AccountConfig {
                    base_url: settings.base_url.clone(),
                    api_key: settings.api_key.clone(),
                    request_timeout: settings.request_timeout,
                    webhook_secret: settings.webhook_secret.clone(),
                },
            )?;
            let account = Account {
                adapter,
                poll: PollSchedule {
                    first: settings.first_poll,
                    max: settings.poll_max,
                },
                uncertain_slot_hold: settings.uncertain_slot,
                retry_server_errors_on_create: settings.retry_server_errors_on_create,
            };
            accounts.insert(configured.name, account);
        }
        Ok(Accounts(accounts))
    }

    pub(crate) fn get(&self, name: &AccountName) -> Option<&Account> {
        self.0.get(name)
    }

    /// The adapter of account `name`, if this worker has it.
    pub(crate) fn adapter(&self, name: &AccountName) -> Option<&Arc<dyn Provider>> {
        self.get(name).map(|account| &account.adapter)
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = (&AccountName, &Account)> {
        self.0.iter()
    }

    /// Each account with its contract, as the claim takes them.
    pub(crate) fn contracts(&self) -> Vec<(AccountName, ProviderKind)> {
        let mut contracts: Vec<_> = self
            .0
            .iter()
            .map(|(name, account)| (name.clone(), account.adapter.kind()))
            .collect();
        contracts.sort();
        contracts
    }
}

/// What the free probe of one account found (`reelq providers check`).
#[derive(Debug)]
pub struct AccountVerdict {
    pub account: AccountName,
    pub contract: ProviderKind,
    /// What the provider said of the account, or why the probe failed (a refused key, an
    /// unreachable host).
    pub outcome: Result<AccountCheck, ProviderError>,
}

/// Probes every account of `config` (or only `only`), one after another, without paying for
/// anything: the key, and credits and models where the provider tells them.
pub async fn check_accounts(
    config: &WorkerConfig,
    only: Option<&AccountName>,
) -> Result<Vec<AccountVerdict>, WorkerError> {
    let accounts = Accounts::from_config(config)?;
    let mut verdicts = Vec::new();
    for (account, contract) in accounts.contracts() {
        if only.is_some_and(|only| *only != account) {
            continue;
        }
        let adapter = accounts.adapter(&account).expect("listed just now");
        let outcome = adapter.check_account().await;
        verdicts.push(AccountVerdict {
            account,
            contract,
            outcome,
        });
    }
    if let Some(only) = only.filter(|_| verdicts.is_empty()) {
        return Err(WorkerError::Config(format!(
            "no account {only} in this config"
        )));
    }
    Ok(verdicts)
}
