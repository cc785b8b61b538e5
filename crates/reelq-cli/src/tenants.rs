//! `reelq tenants ...`: the tenants sharing a deployment. `list` shows each one's jobs
//! waiting, weight and rank (the next served first); `weight` sets a tenant's share against
//! the others' (`crates/reelq-queue/src/ledger/tenants.rs`; the claim applies it).

use reelq_core::TenantName;

use crate::{
    print::{OutputArgs, print_json},
    setup::Setup,
};

#[derive(clap::Subcommand)]
pub(crate) enum TenantsCommand {
    /// Every tenant with fresh jobs waiting or a weight set, the next to be served first.
    List {
        #[command(flatten)]
        output: OutputArgs,
    },
    /// Set a tenant's weight: while tenants have jobs waiting, each is served in proportion
    /// to its weight (1 unless set). Takes effect at the next claim.
    Weight {
        tenant: TenantName,
        /// A positive number (2 serves the tenant twice as often as a tenant of weight 1).
        #[arg(required_unless_present = "reset")]
        weight: Option<f64>,
        /// Set the weight back to 1.
        #[arg(long, conflicts_with = "weight")]
        reset: bool,
    },
}

pub(crate) async fn run(setup: &Setup, command: TenantsCommand) -> anyhow::Result<()> {
    let client = setup.client().await?;
    match command {
        TenantsCommand::List { output } => {
            let tenants = client.tenants().await?;
            if output.json() {
                return print_json(&serde_json::json!(tenants));
            }
            println!(
                "{:<32}  {:>10}  {:>7}  {:>12}",
                "TENANT", "WAITING", "WEIGHT", "TAG"
            );
            for share in &tenants {
                let tag = share
                    .tag
                    .map_or("idle".to_owned(), |tag| format!("{tag:.2}"));
                println!(
                    "{:<32}  {:>10}  {:>7}  {:>12}",
                    share.tenant, share.waiting, share.weight, tag
                );
            }
            if tenants.is_empty() {
                println!("no tenant has jobs waiting (jobs without one are the default tenant's)");
            }
        }
        TenantsCommand::Weight {
            tenant,
            weight,
            reset,
        } => {
            let weight = weight.filter(|_| !reset);
            client.set_tenant_weight(&tenant, weight).await?;
            println!("tenant {tenant}: weight {}", weight.unwrap_or(1.0));
        }
    }
    Ok(())
}
