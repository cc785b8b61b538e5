//! `reelq-worker`: loads config, installs logging, runs the worker until SIGINT/SIGTERM.

use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;
use reelq_worker::{Role, WorkerConfig};
use tokio_util::sync::CancellationToken;
use tracing_subscriber::EnvFilter;

#[derive(Parser)]
#[command(
    version,
    about = "reelq worker: submits, polls and stores video-generation jobs"
)]
struct Args {
    /// TOML config file; `REELQ_*` environment variables override it.
    #[arg(long, env = "REELQ_CONFIG")]
    config: Option<PathBuf>,
    /// Check the config and exit.
    #[arg(long)]
    check_config: bool,
    /// Overrides the config's `role`: `callbacks` runs only the callback receiver.
    #[arg(long, value_enum)]
    role: Option<Role>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let mut config =
        WorkerConfig::load(args.config.as_deref()).context("loading the worker config")?;
    if let Some(role) = args.role {
        config.role = role;
    }
    if args.check_config {
        println!("config ok");
        return Ok(());
    }
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let logs = tracing_subscriber::fmt().with_env_filter(filter);
    if config.log_format == "json" {
        logs.json().init();
    } else {
        logs.init();
    }
    let listen = config.callbacks.as_ref().and_then(|c| c.listen.clone());
    let callback_listener = match listen {
        Some(addr) => Some(
            tokio::net::TcpListener::bind(&addr)
                .await
                .with_context(|| format!("binding callbacks.listen {addr}"))?,
        ),
        None => None,
    };
    let shutdown = CancellationToken::new();
    tokio::spawn(cancel_on_signal(shutdown.clone()));
    reelq_worker::run(config, callback_listener, shutdown)
        .await
        .context("worker stopped with an error")
}

/// Cancels `shutdown` on the first SIGINT or SIGTERM.
async fn cancel_on_signal(shutdown: CancellationToken) {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("installing the SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    tracing::info!("shutdown signal received");
    shutdown.cancel();
}
