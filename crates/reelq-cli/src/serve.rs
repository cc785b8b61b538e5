//! `reelq serve`: the HTTP API, and the operators' dashboard beside it.

use std::time::Duration;

use anyhow::{Context, ensure};
use clap::Args;
use reelq_core::{ApiToken, Secret};

use crate::setup::Setup;

#[derive(Args)]
pub(crate) struct ServeArgs {
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: String,
    /// The bearer token clients must present: at least 16 characters. Empty or short is
    /// refused (it never switches authentication off).
    #[arg(long, env = "REELQ_API_TOKEN", hide_env_values = true)]
    token: String,
    /// Signs the dashboard's session cookies; give every replica behind one load
    /// balancer the same. Default: random per process (sessions end at restart).
    #[arg(long, env = "REELQ_SESSION_KEY", hide_env_values = true)]
    session_key: Option<String>,
    /// Most open connections; past it, new ones wait in the kernel's backlog. Headers
    /// (and a kept-alive connection's next request) must arrive within 10 s, a body
    /// within 30 s.
    #[arg(long, default_value_t = reelq_http::Limits::default().max_connections)]
    max_connections: usize,
    /// The dashboard is reached over https (its session cookie is then always `Secure`;
    /// without this, only when a proxy sends `X-Forwarded-Proto: https`).
    #[arg(long, requires = "dashboard")]
    https: bool,
    /// Also serve the operators' dashboard under /ui (same token, or its login form).
    #[arg(long)]
    dashboard: bool,
    /// The access log and errors on stderr: `json` (one object per line) or `pretty`.
    #[arg(long, env = "REELQ_LOG_FORMAT", default_value = "json", value_parser = ["json", "pretty"])]
    log_format: String,
    /// Let the dashboard act: retry failed jobs, resolve uncertain ones, cancel batches.
    #[arg(long, requires = "dashboard")]
    dashboard_writable: bool,
    /// How long a presigned link stays valid, in seconds (at most 7 days).
    #[arg(long, default_value_t = 3600, value_parser = clap::value_parser!(u64).range(1..=604_800))]
    link_ttl_s: u64,
}

/// Serves until Ctrl-C or SIGTERM.
pub(crate) async fn run(setup: &Setup, args: ServeArgs) -> anyhow::Result<()> {
    let ServeArgs {
        listen,
        token,
        session_key,
        max_connections,
        https,
        dashboard,
        dashboard_writable,
        link_ttl_s,
        log_format,
    } = args;
    let client = setup.client().await?;
    let store = setup.store()?;
    let token = ApiToken::new(token).context("reelq serve refuses to start")?;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match log_format.as_str() {
        // The event's fields at the top level, as the worker's logs have them.
        "json" => logs.json().flatten_event(true).with_span_list(false).init(),
        _ => logs.init(),
    }
    let listener = tokio::net::TcpListener::bind(&listen)
        .await
        .with_context(|| format!("binding {listen}"))?;
    eprintln!("reelq api listening on {}", listener.local_addr()?);
    let videos = store.map(|store| reelq_producer::Videos {
        store,
        link_ttl: Duration::from_secs(link_ttl_s),
    });
    let mut app = reelq_producer::api(client.clone(), token.clone(), videos.clone());
    if dashboard {
        let mut config = reelq_dashboard::DashboardConfig::new(token, dashboard_writable);
        config.videos = videos.clone();
        config.https = https;
        if let Some(key) = session_key.filter(|key| !key.is_empty()) {
            ensure!(
                key.len() >= 32,
                "the session key has {} characters; use at least 32 (e.g. openssl rand -hex 32)",
                key.len()
            );
            config.session_key = Secret::new(key);
        }
        app = app.merge(reelq_dashboard::router(client, config));
        eprintln!("dashboard at /ui (writable: {dashboard_writable})");
    }
    let limits = reelq_http::Limits {
        max_connections,
        ..reelq_http::Limits::default()
    };
    let app = reelq_http::with_access_log(app);
    reelq_http::serve(listener, app, limits, stop_requested()).await;
    Ok(())
}

/// Ctrl-C, or SIGTERM (what Kubernetes and systemd send to stop a service).
async fn stop_requested() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("a SIGTERM handler installs");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
