//! `reelq tokens ...`: API tokens for producers and tenants. `create` makes one and prints it
//! (the only time it is shown: the ledger keeps its SHA-256), bound to one tenant or to all,
//! with some scopes; `list` shows them without the tokens; `revoke` refuses one from its next
//! request on. The deployment's own token (`REELQ_API_TOKEN`) stays an operator's token for
//! every tenant.

use reelq_core::{Scope, TenantName};

use crate::{
    print::{OutputArgs, print_json},
    setup::Setup,
};

#[derive(clap::Subcommand)]
pub(crate) enum TokensCommand {
    /// Make a token and print it once.
    Create {
        /// A unique name for it (who or what uses it).
        name: String,
        /// The tenant whose jobs it enqueues and sees; without it, every tenant's (an
        /// operator's token).
        #[arg(long)]
        tenant: Option<TenantName>,
        /// What it may do: enqueue (and cancel its jobs), read, operate; comma-separated.
        #[arg(long, value_delimiter = ',', required = true)]
        scope: Vec<Scope>,
    },
    /// The tokens made, by name (never the tokens themselves).
    List {
        #[command(flatten)]
        output: OutputArgs,
    },
    /// Revoke a token: refused from its next request on.
    Revoke { name: String },
}

pub(crate) async fn run(setup: &Setup, command: TokensCommand) -> anyhow::Result<()> {
    let client = setup.client().await?;
    match command {
        TokensCommand::Create {
            name,
            tenant,
            mut scope,
        } => {
            scope.sort();
            scope.dedup();
            let token = client.create_token(&name, tenant, scope).await?;
            println!("{token}");
            eprintln!("token {name:?} made: this is the only time it is shown");
        }
        TokensCommand::List { output } => {
            let tokens = client.tokens().await?;
            if output.json() {
                return print_json(&serde_json::json!(tokens));
            }
            println!("{:<24}  {:<24}  SCOPES", "NAME", "TENANT");
            for token in &tokens {
                let scopes: Vec<&str> = token.scopes.iter().map(|scope| scope.as_str()).collect();
                let tenant = token
                    .tenant
                    .as_ref()
                    .map_or("(every tenant)", |t| t.as_str());
                println!("{:<24}  {:<24}  {}", token.name, tenant, scopes.join(","));
            }
            if tokens.is_empty() {
                println!("no tokens made (the deployment's own token is an operator's)");
            }
        }
        TokensCommand::Revoke { name } => {
            if !client.revoke_token(&name).await? {
                anyhow::bail!("no token named {name:?}");
            }
            println!("token {name:?} revoked");
        }
    }
    Ok(())
}
