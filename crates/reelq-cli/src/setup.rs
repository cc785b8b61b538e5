//! What every command may need from the command line's global options: the catalog and
//! prices it validates by (read at once), the ledger (connected only by the commands that use
//! it) and the workers' store.

use anyhow::Context;
use reelq_core::{Catalog, PriceTable, WebhookTargets};
use reelq_producer::{Client, LedgerConfig};
use reelq_queue::RedisTarget;
use reelq_storage::VideoStore;

use crate::{
    args::{Cli, Command},
    store::StoreArgs,
};

pub(crate) struct Setup {
    ledger: LedgerConfig,
    targets: WebhookTargets,
    pub(crate) prices: PriceTable,
    pub(crate) catalog: Catalog,
    store: StoreArgs,
}

impl Setup {
    /// Reads the prices and catalog files the options name; connects nothing yet.
    pub(crate) fn read(cli: Cli) -> anyhow::Result<(Setup, Command)> {
        let read = |path: &std::path::Path| {
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))
        };
        let prices = match &cli.prices {
            Some(path) => toml::from_str(&read(path)?)
                .with_context(|| format!("parsing {}", path.display()))?,
            None => PriceTable::default(),
        };
        let catalog = match &cli.catalog {
            Some(path) => {
                Catalog::built_in().with_file(&read(path)?, &path.display().to_string())?
            }
            None => Catalog::built_in().clone(),
        };
        let setup = Setup {
            ledger: LedgerConfig {
                durability: cli.durability,
                allow_unsafe: cli.allow_unsafe_redis,
                partitions: cli.partitions,
                ..LedgerConfig::new(&cli.redis_url, &cli.prefix)
            },
            targets: WebhookTargets {
                allow_http: cli.notify_allow_http,
                allow: cli.notify_allow,
            },
            prices,
            catalog,
            store: cli.store,
        };
        Ok((setup, cli.command))
    }

    /// Where the ledger is, and how its writes are made durable.
    pub(crate) fn ledger_config(&self) -> &LedgerConfig {
        &self.ledger
    }

    /// A client of the ledger, validating and pricing by this setup's catalog and prices,
    /// reading archived jobs from the store's history when one is named.
    pub(crate) async fn client(&self) -> anyhow::Result<Client> {
        let client = Client::connect(&self.ledger)
            .await
            .with_context(|| {
                format!(
                    "connecting to redis at {} (set by --redis-url or REELQ_REDIS_URL; it must \
                     be the workers' Redis, with the same --prefix / REELQ_PREFIX)",
                    redacted(&self.ledger.redis_url)
                )
            })?
            .with_prices(self.prices.clone())
            .with_catalog(self.catalog.clone())
            .with_webhook_targets(self.targets.clone());
        Ok(match self.store.history()? {
            Some(history) => client.with_history(history),
            None => client,
        })
    }

    /// The workers' store, if the options name one.
    pub(crate) fn store(&self) -> anyhow::Result<Option<VideoStore>> {
        self.store.open()
    }
}

/// A Redis URL fit for an error message: without its password.
fn redacted(redis_url: &str) -> String {
    redis_url
        .parse::<RedisTarget>()
        .map_or_else(|err| err.to_string(), |target| target.to_string())
}
