//! Every reelq listener (the callback receiver, the ops endpoints, the HTTP API and the
//! dashboard) is served through [`serve`], so none of them can be exhausted by connections
//! that never finish:
//!
//! - at most `max_connections` at once: past it, new connections wait in the kernel's
//!   backlog (they hold none of our file descriptors) until one closes;
//! - a request's headers must arrive within `header_timeout`, and a kept-alive connection
//!   that sends no next request within it is closed (hyper starts the same timer while
//!   idle), so idle and half-sent connections are reclaimed;
//! - a request's body must arrive within `body_timeout`;
//! - body sizes are each router's own `DefaultBodyLimit`.
//!
//! A failed accept (out of file descriptors, out of memory) is logged as what it is and
//! counted in `reelq_http_accept_errors_total`; the listener keeps serving.
//!
//! [`access_log`] ([`with_access_log`]) is the one access log: a router given it logs every request's method, path
//! (never its query, which may carry a token), status and time; refused logins at `warn`;
//! and counts it in `reelq_http_requests_total` and `reelq_http_request_seconds` by route
//! pattern ([`metrics`]).

pub mod metrics;

use std::{future::Future, io, sync::Arc, time::Duration};

use axum::Router;
use hyper::server::conn::http1;
use hyper_util::{
    rt::{TokioIo, TokioTimer},
    server::graceful::GracefulShutdown,
    service::TowerToHyperService,
};
use tokio::{net::TcpListener, sync::Semaphore};
use tower_http::timeout::RequestBodyTimeoutLayer;
use tracing::{debug, error, warn};

/// `router` with [`access_log`] around every route.
pub fn with_access_log(router: Router) -> Router {
    router.layer(axum::middleware::from_fn(access_log))
}

/// Logs each request as it is answered: `info` for answers, `warn` for refused
/// authentication (401) and server errors, with the method, path, status and milliseconds.
pub async fn access_log(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    // The route's pattern (`/v1/jobs/{job_id}`), not the path: one series per route.
    let route = request
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map_or("unmatched", |matched| matched.as_str())
        .to_owned();
    let started = std::time::Instant::now();
    let response = next.run(request).await;
    let status = response.status().as_u16();
    let elapsed = started.elapsed();
    let ms = elapsed.as_millis() as u64;
    ::metrics::counter!(
        "reelq_http_requests_total",
        "route" => route.clone(),
        "method" => method.to_string(),
        "status" => status.to_string()
    )
    .increment(1);
    ::metrics::histogram!("reelq_http_request_seconds", "route" => route).record(elapsed);
    match status {
        401 => warn!(%method, path, status, ms, "request refused: authentication"),
        500.. => warn!(%method, path, status, ms, "request failed"),
        _ => tracing::info!(%method, path, status, ms, "request"),
    }
    response
}

/// What one listener allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub max_connections: usize,
    /// For a request's headers, and for a kept-alive connection's next request.
    pub header_timeout: Duration,
    pub body_timeout: Duration,
    /// How long open requests may finish after shutdown begins.
    pub shutdown_grace: Duration,
}

impl Default for Limits {
    /// 512 connections (half of a default 1,024-descriptor limit: the rest stays free for
    /// the process's own connections to Redis, providers and storage), 10 s for headers and
    /// idle keep-alive, 30 s for a body.
    fn default() -> Self {
        Limits {
            max_connections: 512,
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(30),
            shutdown_grace: Duration::from_secs(10),
        }
    }
}

/// Serves `app` on `listener` within `limits` until `shutdown` resolves, then lets open
/// requests finish for `limits.shutdown_grace`.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: Limits,
    shutdown: impl Future<Output = ()>,
) {
    let app = app.layer(RequestBodyTimeoutLayer::new(limits.body_timeout));
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let graceful = GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let slot = match slots.clone().try_acquire_owned() {
            Ok(slot) => slot,
            Err(_) => {
                warn!(
                    max = limits.max_connections,
                    "connection limit reached; new connections wait until one closes"
                );
                ::metrics::counter!("reelq_http_connection_limit_reached_total").increment(1);
                tokio::select! {
                    _ = &mut shutdown => break,
                    slot = slots.clone().acquire_owned() => slot.expect("the semaphore is never closed"),
                }
            }
        };
        let stream = tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(err) => {
                    accept_failed(&err);
                    // Often out of descriptors: give closing connections a moment to free one.
                    tokio::select! {
                        _ = &mut shutdown => break,
                        _ = tokio::time::sleep(Duration::from_millis(100)) => continue,
                    }
                }
            },
        };
        let connection = http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(limits.header_timeout)
            .keep_alive(true)
            .serve_connection(TokioIo::new(stream), TowerToHyperService::new(app.clone()));
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(err) = connection.await {
                debug!(error = %err, "connection ended with an error");
            }
            drop(slot);
        });
    }
    drop(listener);
    if tokio::time::timeout(limits.shutdown_grace, graceful.shutdown())
        .await
        .is_err()
    {
        warn!("requests still open after the shutdown grace period; dropped");
    }
}

fn accept_failed(err: &io::Error) {
    ::metrics::counter!("reelq_http_accept_errors_total").increment(1);
    // EMFILE, ENFILE, ENOBUFS, ENOMEM: this host is out of something, not the peer's fault.
    match err.raw_os_error() {
        Some(24 | 23) => {
            error!(error = %err, "accept failed: too many open files (raise the descriptor limit, or lower max_connections)")
        }
        Some(105 | 12) => error!(error = %err, "accept failed: out of memory for sockets"),
        _ => warn!(error = %err, "accept failed"),
    }
}
