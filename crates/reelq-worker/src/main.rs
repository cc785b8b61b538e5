//! `reelq-worker`: loads config, installs logging, runs the worker until SIGINT/SIGTERM.

use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;
use reelq_worker::{Listeners, Role, WorkerConfig};
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
    /// GET this URL (e.g. `http://127.0.0.1:9100/readyz`) and exit 0 on a 2xx answer, 1
    /// otherwise: a container health check that needs no curl in the image. Reads no config.
    #[arg(long, value_name = "URL", conflicts_with_all = ["check_config", "role"])]
    probe: Option<String>,
}

/// `--probe URL`: whether the URL answers 2xx within 5 s.
async fn probe(url: &str) -> anyhow::Result<()> {
    let answer = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(5))
        .build()?
        .get(url)
        .send()
        .await
        .with_context(|| format!("probing {url}"))?;
    anyhow::ensure!(
        answer.status().is_success(),
        "{url} answered {}",
        answer.status()
    );
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if let Some(url) = &args.probe {
        return probe(url).await;
    }
    let mut config =
        WorkerConfig::load(args.config.as_deref()).context("loading the worker config")?;
    if let Some(role) = args.role {
        config.role = role;
    }
    if args.check_config {
        reelq_worker::check_config(&config).context("checking the worker config")?;
        for warning in config.warnings() {
            eprintln!("warning: {warning}");
        }
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
    for warning in config.warnings() {
        tracing::warn!(warning, "config");
    }
    let listeners = Listeners {
        callbacks: bind(
            config.callbacks.as_ref().and_then(|c| c.listen.as_deref()),
            "callbacks.listen",
        )
        .await?,
        ops: bind(config.ops_listen.as_deref(), "ops_listen").await?,
    };
    let shutdown = CancellationToken::new();
    tokio::spawn(cancel_on_signal(shutdown.clone()));
    reelq_worker::run(config, listeners, shutdown)
        .await
        .context("worker stopped with an error")
}

async fn bind(addr: Option<&str>, key: &str) -> anyhow::Result<Option<tokio::net::TcpListener>> {
    let Some(addr) = addr else {
        return Ok(None);
    };
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding {key} {addr}"))?;
    Ok(Some(listener))
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
