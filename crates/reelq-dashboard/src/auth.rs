//! The dashboard's door: the API's bearer token, or a session cookie set by the login form.

use axum::{
    Form,
    extract::{Request, State},
    http::{HeaderMap, Method, StatusCode, header},
    middleware::Next,
    response::{IntoResponse, Redirect, Response},
};
use maud::{Markup, html};
use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::{Dashboard, pages::layout};

const COOKIE: &str = "reelq_session";

/// The session cookie's value: the token's SHA-256, so the cookie never holds the token.
fn session_value(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// Compares without an early exit, so timing says nothing about how much matched.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn authorized(dashboard: &Dashboard, headers: &HeaderMap) -> bool {
    let token = dashboard.config.token.expose();
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    if bearer.is_some_and(|presented| same(presented.as_bytes(), token.as_bytes())) {
        return true;
    }
    let expected = session_value(token);
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().strip_prefix(COOKIE)?.strip_prefix('='))
        .any(|value| same(value.as_bytes(), expected.as_bytes()))
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
    layout(
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

pub(crate) async fn login(
    State(dashboard): State<Dashboard>,
    Form(form): Form<LoginForm>,
) -> Response {
    let token = dashboard.config.token.expose();
    if !same(form.token.as_bytes(), token.as_bytes()) {
        tracing::warn!("dashboard login refused");
        return (StatusCode::UNAUTHORIZED, login_page(Some("wrong token"))).into_response();
    }
    let cookie = format!(
        "{COOKIE}={}; Path=/ui; HttpOnly; SameSite=Strict",
        session_value(token)
    );
    ([(header::SET_COOKIE, cookie)], Redirect::to("/ui")).into_response()
}
