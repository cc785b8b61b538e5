//! `reelq-worker`: loads config, installs logging (and trace export, if configured), runs
//! the worker until SIGINT/SIGTERM.

use std::{path::PathBuf, process::ExitCode};

use anyhow::Context;
use clap::Parser;
use reelq_worker::{Listeners, Role, WorkerConfig, telemetry::Telemetry};
use tokio_util::sync::CancellationToken;
use tracing_subscriber::{
    EnvFilter, Layer as _, layer::SubscriberExt as _, util::SubscriberInitExt as _,
};

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
async fn main() -> ExitCode {
    let args = Args::parse();
    let outcome = match &args.probe {
        Some(url) => probe(url).await,
        None => start(args).await,
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            fatal(&err);
            ExitCode::FAILURE
        }
    }
}

/// Reports why the worker could not start or stopped: one JSON line (as the logs are by
/// default, so a log pipeline reads it too) unless `REELQ_LOG_FORMAT=pretty`.
fn fatal(err: &anyhow::Error) {
    let pretty = std::env::var("REELQ_LOG_FORMAT").is_ok_and(|format| format == "pretty");
    if pretty {
        eprintln!("Error: {err:#}");
        return;
    }
    let line = serde_json::json!({
        "timestamp": humantime::format_rfc3339_micros(std::time::SystemTime::now()).to_string(),
        "level": "ERROR",
        "message": "reelq-worker stopped",
        "error": format!("{err:#}"),
    });
    eprintln!("{line}");
}

async fn start(args: Args) -> anyhow::Result<()> {
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
    // JSON lines with the event's fields at the top level and the job's span beside them.
    let logs = match config.log_format.as_str() {
        "json" => tracing_subscriber::fmt::layer()
            .json()
            .flatten_event(true)
            .with_span_list(false)
            .boxed(),
        _ => tracing_subscriber::fmt::layer().boxed(),
    };
    let telemetry = config
        .telemetry
        .as_ref()
        .map(|telemetry| Telemetry::start(telemetry, "reelq-worker"))
        .transpose()
        .context("starting trace export")?;
    tracing_subscriber::registry()
        .with(filter)
        .with(logs)
        .with(telemetry.as_ref().map(Telemetry::layer))
        .init();
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
    let ran = reelq_worker::run(config, listeners, shutdown).await;
    if let Some(telemetry) = telemetry {
        // Sends the spans still batched; blocking, so off the runtime's workers.
        let _ = tokio::task::spawn_blocking(move || telemetry.shutdown()).await;
    }
    ran.context("worker stopped with an error")
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
