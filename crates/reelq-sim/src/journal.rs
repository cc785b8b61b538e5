//! The exchanges a simulator had, kept when its config asks (`SimConfig::journal`): every
//! request to a provider contract's routes with the answer it got, and every callback the
//! simulator sent. The conformance test holds them against the providers' published
//! specifications (`crates/reelq-providers/tests/conformance.rs`). Key headers are kept by
//! scheme only.

use std::sync::Arc;

use axum::{
    body::{Body, to_bytes},
    extract::{Request, State},
    http::{HeaderMap, header},
    middleware::Next,
    response::Response,
};
use reelq_core::ProviderKind;
use serde::Serialize;
use serde_json::Value;

use crate::simulator::SimState;

/// The largest body a journal keeps (a video is recorded by its type, not its bytes).
const BODY_LIMIT: usize = 16 * 1024 * 1024;

/// One request and its answer, or one callback the simulator sent.
#[derive(Debug, Clone, Serialize)]
pub struct Exchange {
    pub contract: ProviderKind,
    /// `call` (reelq asked the provider) or `callback` (the provider called reelq).
    pub kind: &'static str,
    pub method: String,
    pub path: String,
    pub query: Option<String>,
    /// Request headers by lowercase name; credentials only by their scheme.
    pub headers: Vec<(String, String)>,
    pub request_type: Option<String>,
    /// The request body, when it is JSON.
    pub request_body: Option<Value>,
    pub status: u16,
    pub response_type: Option<String>,
    /// The answer's body, when it is JSON.
    pub response_body: Option<Value>,
}

/// Headers carrying a credential: kept as their scheme word only.
const CREDENTIALS: &[&str] = &["authorization", "x-goog-api-key", "x-api-key"];

fn kept_headers(headers: &HeaderMap) -> Vec<(String, String)> {
    headers
        .iter()
        .map(|(name, value)| {
            let value = value.to_str().unwrap_or_default();
            let kept = match CREDENTIALS.contains(&name.as_str()) {
                true => match value.split_once(' ') {
                    Some((scheme, _)) => format!("{scheme} redacted"),
                    None => "redacted".to_owned(),
                },
                false => value.to_owned(),
            };
            (name.as_str().to_owned(), kept)
        })
        .collect()
}

fn content_type(headers: &HeaderMap) -> Option<String> {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned)
}

/// Wraps a contract's routes so that each exchange is journaled (when the config asks).
pub(crate) async fn record(
    State((state, contract)): State<(Arc<SimState>, ProviderKind)>,
    request: Request,
    next: Next,
) -> Response {
    if !state.config.journal {
        return next.run(request).await;
    }
    let (parts, body) = request.into_parts();
    let body = to_bytes(body, BODY_LIMIT).await.unwrap_or_default();
    let request_body = serde_json::from_slice(&body).ok();
    let mut exchange = Exchange {
        contract,
        kind: "call",
        method: parts.method.to_string(),
        path: parts.uri.path().to_owned(),
        query: parts.uri.query().map(str::to_owned),
        headers: kept_headers(&parts.headers),
        request_type: content_type(&parts.headers),
        request_body,
        status: 0,
        response_type: None,
        response_body: None,
    };
    let response = next.run(Request::from_parts(parts, Body::from(body))).await;
    let (parts, body) = response.into_parts();
    let body = to_bytes(body, BODY_LIMIT).await.unwrap_or_default();
    exchange.status = parts.status.as_u16();
    exchange.response_type = content_type(&parts.headers);
    exchange.response_body = serde_json::from_slice(&body).ok();
    state.journal(exchange);
    Response::from_parts(parts, Body::from(body))
}

/// A callback the simulator sent, and the status it was answered with (0: no answer).
pub(crate) fn callback(
    contract: ProviderKind,
    url: &str,
    headers: &[(&'static str, String)],
    body: &str,
    status: u16,
) -> Exchange {
    let (path, query) = match url
        .split_once("://")
        .and_then(|(_, rest)| rest.split_once('/'))
    {
        Some((_, path)) => match path.split_once('?') {
            Some((path, query)) => (format!("/{path}"), Some(query.to_owned())),
            None => (format!("/{path}"), None),
        },
        None => (url.to_owned(), None),
    };
    Exchange {
        contract,
        kind: "callback",
        method: "POST".into(),
        path,
        query,
        headers: headers
            .iter()
            .map(|(name, value)| (name.to_ascii_lowercase(), value.clone()))
            .collect(),
        request_type: Some("application/json".into()),
        request_body: serde_json::from_str(body).ok(),
        status,
        response_type: None,
        response_body: None,
    }
}
