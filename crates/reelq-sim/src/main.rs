//! `reelq-sim`: runs the provider simulator until ctrl-c or SIGTERM.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use anyhow::Context;
use clap::Parser;
use reelq_sim::{SimConfig, Simulator};

#[derive(Parser)]
#[command(version, about = "Provider simulator for reelq tests and demos")]
struct Args {
    /// Address to listen on; port 0 picks a free one.
    #[arg(long, default_value = "127.0.0.1:0")]
    addr: SocketAddr,
    /// The API key clients must present.
    #[arg(long, env = "REELQ_SIM_API_KEY")]
    api_key: String,
    /// Keys of more accounts at every provider (a second kie key, say), comma-separated.
    #[arg(long, env = "REELQ_SIM_OTHER_API_KEYS", value_delimiter = ',')]
    other_api_keys: Vec<String>,
    /// How long each task generates, in milliseconds.
    #[arg(long, default_value_t = 3000)]
    generation_ms: u64,
    /// Zero bytes added to every video, to simulate big files (e.g. 1073741824 for 1 GiB).
    #[arg(long, default_value_t = 0)]
    video_padding_bytes: u64,
    /// Sign kie callbacks with this webhook HMAC key, as a kie account with signing enabled.
    #[arg(long)]
    webhook_hmac_key: Option<String>,
    /// Sign OpenAI-style webhooks with this `whsec_<base64>` secret.
    #[arg(long, env = "REELQ_SIM_WEBHOOK_SECRET")]
    webhook_secret: Option<String>,
    /// Where OpenAI-style webhooks go (the account's webhook endpoint).
    #[arg(long)]
    account_webhook_url: Option<String>,
    /// Result URLs stop working this many milliseconds after they are handed out.
    #[arg(long)]
    result_url_ttl_ms: Option<u64>,
    /// Enforce evolink's rule that callback URLs are HTTPS to a public host.
    #[arg(long)]
    strict_callback_urls: bool,
    /// Serve the models of this catalog file too (the operator's rows over the built-in
    /// ones), as `reelq --catalog` validates them.
    #[arg(long, env = "REELQ_SIM_CATALOG")]
    catalog: Option<PathBuf>,
    /// Write the bound address to this file once listening (for scripts using port 0).
    #[arg(long)]
    addr_file: Option<PathBuf>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt().with_env_filter("info").init();
    let args = Args::parse();
    let catalog = match &args.catalog {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?;
            reelq_sim::served_catalog().with_file(&text, &path.display().to_string())?
        }
        None => reelq_sim::served_catalog().clone(),
    };
    let config = SimConfig {
        api_key: args.api_key,
        other_api_keys: args.other_api_keys,
        generation_time: Duration::from_millis(args.generation_ms),
        video_padding: args.video_padding_bytes,
        webhook_hmac_key: args.webhook_hmac_key,
        webhook_secret: args.webhook_secret,
        result_url_ttl: args.result_url_ttl_ms.map(Duration::from_millis),
        strict_callback_urls: args.strict_callback_urls,
        journal: false,
        catalog,
    };
    let simulator = Simulator::start(args.addr, config)
        .await
        .with_context(|| format!("binding {}", args.addr))?;
    if let Some(url) = args.account_webhook_url {
        simulator.set_account_webhook_url(url);
    }
    if let Some(path) = &args.addr_file {
        std::fs::write(path, simulator.addr().to_string())
            .with_context(|| format!("writing {}", path.display()))?;
    }
    tracing::info!(addr = %simulator.addr(), "simulator listening");
    // SIGTERM's default action ends the process, which is all a simulator needs.
    tokio::signal::ctrl_c()
        .await
        .context("waiting for ctrl-c")?;
    Ok(())
}
