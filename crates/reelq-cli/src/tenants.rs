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
    /// Cap a tenant: its generations in flight over every account (the claim holds the rest
    /// back), and its jobs waiting for their first claim (an enqueue past it is refused
    /// whole; the HTTP API answers 429). Without either flag, its caps are removed.
    Limit {
        tenant: TenantName,
        #[arg(long)]
        max_in_flight: Option<u32>,
        #[arg(long)]
        max_waiting: Option<u64>,
        /// Its spend per UTC day, in dollars (each submit reserves its job's estimate).
        #[arg(long)]
        daily_usd: Option<f64>,
        /// Its spend per UTC month, in dollars.
        #[arg(long)]
        monthly_usd: Option<f64>,
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
                "{:<32}  {:>10}  {:>10}  {:>7}  {:>12}  CAPS",
                "TENANT", "WAITING", "IN FLIGHT", "WEIGHT", "TAG"
            );
            for share in &tenants {
                let tag = share
                    .tag
                    .map_or("idle".to_owned(), |tag| format!("{tag:.2}"));
                let usd = reelq_core::micros_to_usd;
                let caps = [
                    share.limits.max_in_flight.map(|n| format!("in flight {n}")),
                    share.limits.max_waiting.map(|n| format!("waiting {n}")),
                    share.limits.daily_micros.map(|n| {
                        format!(
                            "${:.2} of ${:.2} today",
                            usd(share.spent_today_micros),
                            usd(n)
                        )
                    }),
                    share.limits.monthly_micros.map(|n| {
                        let spent = usd(share.spent_this_month_micros);
                        format!("${spent:.2} of ${:.2} this month", usd(n))
                    }),
                ];
                let caps: Vec<String> = caps.into_iter().flatten().collect();
                println!(
                    "{:<32}  {:>10}  {:>10}  {:>7}  {:>12}  {}",
                    share.tenant,
                    share.waiting,
                    share.in_flight,
                    share.weight,
                    tag,
                    caps.join(", ")
                );
            }
            if tenants.is_empty() {
                println!("no tenant has jobs waiting (jobs without one are the default tenant's)");
            }
        }
        TenantsCommand::Limit {
            tenant,
            max_in_flight,
            max_waiting,
            daily_usd,
            monthly_usd,
        } => {
            let limits = reelq_queue::TenantLimits {
                max_in_flight,
                max_waiting,
                daily_micros: daily_usd.map(reelq_core::usd_to_micros),
                monthly_micros: monthly_usd.map(reelq_core::usd_to_micros),
            };
            client.set_tenant_limits(&tenant, limits).await?;
            println!("tenant {tenant}: {}", serde_json::json!(limits));
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
