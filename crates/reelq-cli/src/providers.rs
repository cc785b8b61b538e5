//! `reelq providers`: the merged model catalog beside a worker config's accounts, and
//! `reelq providers check`, a probe of each account that costs nothing.

use std::path::Path;

use anyhow::Context;
use clap::Subcommand;
use reelq_core::{AccountName, Catalog, PriceTable, ProviderKind};
use reelq_worker::{AccountVerdict, WorkerConfig, check_accounts};

use crate::setup::Setup;

#[derive(Subcommand)]
pub(crate) enum ProvidersCommand {
    /// Probes each account of the worker config without paying for anything: is the key
    /// accepted, what credits are left (kie), which models it may use (OpenAI-style
    /// gateways). Exits 1 if any account fails.
    Check {
        /// Only this account.
        #[arg(long)]
        account: Option<AccountName>,
    },
    /// Stops every replica submitting to an account (a provider's own name for
    /// `[providers.<name>]`) until `--for` ends or `resume`; running generations are still
    /// polled and fetched.
    Pause {
        account: AccountName,
        /// How long, e.g. `30m`, `2h`.
        #[arg(long = "for", default_value = "1h", value_parser = humantime::parse_duration)]
        length: std::time::Duration,
    },
    /// Ends an account's pause (an operator's, a 429's or an empty account's) and sends the
    /// jobs it held back at once.
    Resume { account: AccountName },
    /// The routes (a kind of video several candidates sell) and the live state of each
    /// candidate: its model's status, its price, its account's pause and generations in
    /// flight.
    Routes,
}

fn worker_config(path: Option<&Path>) -> anyhow::Result<WorkerConfig> {
    WorkerConfig::load(path).with_context(|| match path {
        Some(path) => format!("reading the worker config {}", path.display()),
        None => "reading the worker config from REELQ_* variables".to_owned(),
    })
}

/// `reelq providers [check | pause | resume]`: the catalog and a config's accounts, read
/// offline; the free probe of each account; pausing and resuming an account in the ledger.
pub(crate) async fn run(
    setup: &Setup,
    config: Option<&Path>,
    json: bool,
    command: Option<ProvidersCommand>,
) -> anyhow::Result<()> {
    match command {
        None => print(&setup.prices, &setup.catalog, config, json),
        Some(ProvidersCommand::Routes) => crate::routes::print(setup, json).await,
        Some(ProvidersCommand::Check { account }) => {
            check(config, &setup.catalog, account.as_ref(), json).await
        }
        Some(ProvidersCommand::Pause { account, length }) => {
            setup
                .client()
                .await?
                .pause_account(&account, length)
                .await?;
            println!(
                "{account}: submits paused for {} on every replica (running generations go on)",
                humantime::format_duration(length)
            );
            Ok(())
        }
        Some(ProvidersCommand::Resume { account }) => {
            let resumed = setup.client().await?.resume_account(&account).await?;
            match resumed.was_paused {
                false => println!("{account}: was not paused"),
                true => println!(
                    "{account}: resumed; {} held jobs sent now{}",
                    resumed.brought_forward,
                    if resumed.more_left {
                        " (more go at the pause's old end)"
                    } else {
                        ""
                    }
                ),
            }
            Ok(())
        }
    }
}

/// Prints the merged model catalog: what each model accepts, what it costs by `prices`,
/// where each row came from (the built-in catalog or the operator's file), and, given a
/// worker config, each provider's accounts in it. As JSON: `{"models": [row with
/// "usd_per_second"], "accounts": [{"account","contract","base_url"}]}`.
fn print(
    prices: &PriceTable,
    catalog: &Catalog,
    worker_config_path: Option<&Path>,
    json: bool,
) -> anyhow::Result<()> {
    let config = worker_config_path
        .map(|path| worker_config(Some(path)))
        .transpose()?;
    if json {
        let models: Vec<serde_json::Value> = ProviderKind::ALL
            .into_iter()
            .flat_map(|provider| catalog.models_of(provider))
            .map(|rule| {
                let mut row = serde_json::json!(rule);
                let usd_per_second: std::collections::BTreeMap<String, Option<f64>> = rule
                    .qualities
                    .iter()
                    .map(|&quality| {
                        let usd =
                            prices.usd_per_second(rule.provider, &rule.model, quality, catalog);
                        (quality.to_string(), usd)
                    })
                    .collect();
                row["usd_per_second"] = serde_json::json!(usd_per_second);
                row
            })
            .collect();
        let accounts: Vec<serde_json::Value> = config
            .iter()
            .flat_map(|config| config.accounts())
            .map(|account| {
                serde_json::json!({
                    "account": account.name,
                    "contract": account.contract,
                    "base_url": account.settings.base_url,
                })
            })
            .collect();
        return crate::print::print_json(
            &serde_json::json!({ "models": models, "accounts": accounts }),
        );
    }
    for provider in ProviderKind::ALL {
        let accounts = config.as_ref().map(|config| {
            let accounts: Vec<String> = config
                .accounts()
                .into_iter()
                .filter(|account| account.contract == provider)
                .map(|account| format!("{} at {}", account.name, account.settings.base_url))
                .collect();
            match accounts.is_empty() {
                true => "no account in this config".to_owned(),
                false => format!("accounts: {}", accounts.join(", ")),
            }
        });
        println!(
            "{provider}{}",
            accounts.map(|a| format!(" ({a})")).unwrap_or_default()
        );
        for rule in catalog.models_of(provider) {
            let join = |items: Vec<String>| items.join("|");
            let price = |quality| {
                prices
                    .usd_per_second(provider, &rule.model, quality, catalog)
                    .map_or(format!("{quality} unpriced"), |usd| {
                        format!("{quality} ${usd}/s")
                    })
            };
            let options = match rule.extra.is_empty() {
                true => String::new(),
                false => format!(
                    " options {}",
                    rule.extra.keys().cloned().collect::<Vec<_>>().join(",")
                ),
            };
            println!(
                "  {:<34} duration_s {:<9} aspect {:<26} quality {:<14} images {:<9}{}{}  {}  [{}: {}]",
                rule.model,
                join(rule.durations.iter().map(u32::to_string).collect()),
                join(rule.aspects.iter().map(|a| a.to_string()).collect()),
                join(rule.qualities.iter().map(|q| q.to_string()).collect()),
                rule.images.to_string(),
                if rule.character { " character" } else { "" },
                options,
                join(rule.qualities.iter().map(|&q| price(q)).collect()).replace('|', ", "),
                rule.origin,
                rule.source,
            );
            if let Some(notice) = rule.lifecycle_notice() {
                println!("  {:<34} ^ {notice}", "");
            }
        }
    }
    Ok(())
}

/// One line per account: its verdict and what the provider told of it, then an error (exit
/// status 1) if any account failed.
async fn check(
    worker_config_path: Option<&Path>,
    catalog: &Catalog,
    only: Option<&AccountName>,
    json: bool,
) -> anyhow::Result<()> {
    let config = worker_config(worker_config_path)?;
    let verdicts = check_accounts(&config, only).await?;
    if json {
        let rows: Vec<serde_json::Value> = verdicts
            .iter()
            .map(|verdict| {
                let (word, detail) = describe(verdict, catalog);
                serde_json::json!({
                    "account": verdict.account,
                    "contract": verdict.contract,
                    "verdict": word,
                    "detail": detail,
                })
            })
            .collect();
        crate::print::print_json(&serde_json::json!(rows))?;
    } else {
        println!(
            "{:<20} {:<8} {:<7} DETAIL",
            "ACCOUNT", "CONTRACT", "VERDICT"
        );
        for verdict in &verdicts {
            let (word, detail) = describe(verdict, catalog);
            println!(
                "{:<20} {:<8} {:<7} {detail}",
                verdict.account, verdict.contract, word
            );
        }
    }
    let failed = verdicts.iter().filter(|v| v.outcome.is_err()).count();
    anyhow::ensure!(
        failed == 0,
        "{failed} of {} accounts failed the check",
        verdicts.len()
    );
    Ok(())
}

fn describe(verdict: &AccountVerdict, catalog: &Catalog) -> (&'static str, String) {
    let check = match &verdict.outcome {
        Ok(check) => check,
        Err(err) => return ("failed", format!("{} ({})", err, err.class())),
    };
    let mut detail = vec!["key accepted".to_owned()];
    if let Some(credits) = check.credits {
        detail.push(format!("{credits} credits left"));
    }
    if let Some(models) = &check.models {
        // Retired and paused rows are refused at enqueue: only the ones jobs may ask for.
        let missing: Vec<&str> = catalog
            .models_of(verdict.contract)
            .filter(|rule| rule.status.takes_jobs())
            .map(|rule| rule.model.as_str())
            .filter(|model| !models.iter().any(|offered| offered == model))
            .collect();
        detail.push(match missing.is_empty() {
            true => format!("offers every live catalog model ({} listed)", models.len()),
            false => format!("does not offer live catalog models {}", missing.join(", ")),
        });
    }
    ("ok", detail.join("; "))
}
