//! The dashboard's door: the API's bearer token, or a session cookie set by the login form.
//!
//! The session cookie is `<expiry unix s>.<HMAC-SHA256 of the expiry>`, keyed by the server's
//! session key and the API token: it never holds the token, it ends at its expiry (and at
//! logout, in that browser), and every session ends when the token or the session key
//! changes. `HttpOnly`, `SameSite=Strict` (which also keeps other sites from posting
//! actions), and `Secure` when the request came over https (`X-Forwarded-Proto: https`, as
//! a TLS-terminating proxy sets it) or the config says the dashboard is served over https.

use std::time::{SystemTime, UNIX_EPOCH};

use axum::{
    Form,
    extract::{Request, State},
    http::{HeaderMap, Method, StatusCode, header},
    middleware::Next,
    response::{IntoResponse, Redirect, Response},
};
use hmac::{Hmac, Mac};
use maud::{Markup, html};
use serde::Deserialize;
use sha2::Sha256;

use crate::{Dashboard, DashboardConfig, pages::login_layout};

const COOKIE: &str = "reelq_session";

fn now_s() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn session_mac(config: &DashboardConfig, expires_s: u64) -> Hmac<Sha256> {
    let mut mac = Hmac::<Sha256>::new_from_slice(config.session_key.expose().as_bytes())
        .expect("HMAC takes any key length");
    mac.update(config.token.expose().as_bytes());
    mac.update(b"\0reelq-session\0");
    mac.update(expires_s.to_string().as_bytes());
    mac
}

/// A new session's cookie value, valid for the configured session lifetime.
fn new_session(config: &DashboardConfig) -> String {
    let expires_s = now_s() + config.session_ttl.as_secs();
    let tag = session_mac(config, expires_s).finalize().into_bytes();
    format!("{expires_s}.{}", hex::encode(tag))
}

/// Whether a cookie value is an unexpired session this server signed.
fn valid_session(config: &DashboardConfig, value: &str) -> bool {
    let Some((expires, tag)) = value.split_once('.') else {
        return false;
    };
    let (Ok(expires_s), Ok(tag)) = (expires.parse::<u64>(), hex::decode(tag)) else {
        return false;
    };
    expires_s > now_s() && session_mac(config, expires_s).verify_slice(&tag).is_ok()
}

fn authorized(dashboard: &Dashboard, headers: &HeaderMap) -> bool {
    let config = &dashboard.config;
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    if bearer.is_some_and(|presented| config.token.matches(presented.as_bytes())) {
        return true;
    }
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().strip_prefix(COOKIE)?.strip_prefix('='))
        .any(|value| valid_session(config, value))
}

/// Lets a logged-in request through; sends a browser to the login, refuses anything else.
pub(crate) async fn require_login(
    State(dashboard): State<Dashboard>,
    request: Request,
    next: Next,
) -> Response {
    if authorized(&dashboard, request.headers()) {
        return next.run(request).await;
    }
    if request.method() == Method::GET {
        Redirect::to("/ui/login").into_response()
    } else {
        StatusCode::UNAUTHORIZED.into_response()
    }
}

pub(crate) async fn login_form() -> Markup {
    login_page(None)
}

fn login_page(problem: Option<&str>) -> Markup {
    login_layout(
        "Log in",
        html! {
            form method="post" action="/ui/login" id="login" {
                label { "API token " input type="password" name="token" autofocus; }
                button type="submit" { "Log in" }
            }
            @if let Some(problem) = problem { p.error { (problem) } }
        },
    )
}

#[derive(Deserialize)]
pub(crate) struct LoginForm {
    token: String,
}

/// The cookie's attributes: `Secure` when the browser reached us over https.
fn cookie_attributes(config: &DashboardConfig, headers: &HeaderMap) -> &'static str {
    let forwarded_https = headers
        .get("x-forwarded-proto")
        .is_some_and(|proto| proto.as_bytes().eq_ignore_ascii_case(b"https"));
    if config.https || forwarded_https {
        "Path=/ui; HttpOnly; SameSite=Strict; Secure"
    } else {
        "Path=/ui; HttpOnly; SameSite=Strict"
    }
}

pub(crate) async fn login(
    State(dashboard): State<Dashboard>,
    headers: HeaderMap,
    Form(form): Form<LoginForm>,
) -> Response {
    let config = &dashboard.config;
    if !config.token.matches(form.token.as_bytes()) {
        tracing::warn!("dashboard login refused");
        return (StatusCode::UNAUTHORIZED, login_page(Some("wrong token"))).into_response();
    }
    let cookie = format!(
        "{COOKIE}={}; Max-Age={}; {}",
        new_session(config),
        config.session_ttl.as_secs(),
        cookie_attributes(config, &headers)
    );
    ([(header::SET_COOKIE, cookie)], Redirect::to("/ui")).into_response()
}

/// Ends the session in this browser (the cookie is cleared; a copied cookie still ends at its
/// expiry, or at once for all sessions when the session key changes).
pub(crate) async fn logout(State(dashboard): State<Dashboard>, headers: HeaderMap) -> Response {
    let cookie = format!(
        "{COOKIE}=; Max-Age=0; {}",
        cookie_attributes(&dashboard.config, &headers)
    );
    ([(header::SET_COOKIE, cookie)], Redirect::to("/ui/login")).into_response()
}
