//! The pages and actions, one module per part of the dashboard (`overview`, `jobs`,
//! `batches`); this one holds their frame (layout, the live refresh, styles) and what they
//! share. Each page reads the ledger through the producer's `Client` and renders HTML on the
//! server; the charts are inline SVG.

use std::{collections::BTreeMap, time::Duration};

use axum::{
    Form,
    extract::{Path, Query, State},
    http::{StatusCode, header},
    response::{IntoResponse, Redirect, Response},
};
use maud::{DOCTYPE, Markup, PreEscaped, html};
use reelq_core::{AccountName, BatchId, ErrorClass, JobId, JobState, ProviderKind, micros_to_usd};
use reelq_producer::{
    Asset, Client,
    display::{age, utc},
    now_ms, write_report_csv,
};
use reelq_queue::{JobRecord, PageCursor, Resolution};
use serde::Deserialize;

use crate::Dashboard;

mod batches;
mod jobs;
mod overview;
mod usage;

pub(crate) use batches::*;
pub(crate) use jobs::*;
pub(crate) use overview::*;
pub(crate) use usage::*;

/// The pages' one style sheet. Colours meet WCAG AA contrast on their background (the
/// indicator's on the dark navigation bar: a unit test computes each ratio); controls are at
/// least 24 px tall; a long value wraps (words stay whole), a wide table scrolls and a video
/// shrinks to a phone's width.
const STYLE: &str = "body{font:14px system-ui,sans-serif;margin:0;color:#222}\
nav{background:#1f2937;padding:8px 16px}nav a{color:#fff;margin-right:16px;text-decoration:none}\
main{padding:16px;overflow-x:auto}table{border-collapse:collapse;margin:8px 0}\
td,th{border-bottom:1px solid #ddd;padding:4px 8px;text-align:left}td{overflow-wrap:break-word}\
video{max-width:100%;height:auto}button,input,select{min-height:24px}\
.cards{display:flex;flex-wrap:wrap;gap:8px}.card{border:1px solid #ddd;border-radius:6px;padding:8px 12px}\
.card b{display:block;font-size:20px}.error{color:#b91c1c}svg rect{fill:#2563eb}\
svg rect.fail{fill:#dc2626}.bar{background:#e5e7eb;width:300px;height:12px}\
.bar div{background:#16a34a;height:12px}.bar div.ended{background:#6b7280}form.inline{display:inline}\
.chips a{display:inline-block;min-height:24px;line-height:24px;border:1px solid #ddd;border-radius:12px;padding:0 10px;margin:0 6px 4px 0;text-decoration:none}\
.chips a.on{background:#1f2937;color:#fff}.card a{color:inherit;text-decoration:none}\
#live{float:right;color:#4ade80;font-size:12px}#live.stopped{color:#fca5a5;font-weight:bold}\
main.stale{opacity:.5}\
.sr{position:absolute;width:1px;height:1px;overflow:hidden;clip:rect(0,0,0,0)}";

/// Live pages: every 5 s the page fetches itself and swaps its `main` in place (not while
/// the operator is in one of its forms), and the indicator says when it last did (or that
/// updates stopped, while the server does not answer). A few lines of plain JavaScript, no build step; without JavaScript the page is
/// the same, only still.
const LIVE_SCRIPT: &str = "(function(){const live=document.getElementById('live');\
if(!live)return;async function tick(){const a=document.activeElement;\
if(a&&a.closest&&a.closest('main form'))return;try{const r=await fetch(location.href,{credentials:'same-origin'});\
if(!r.ok)throw new Error(r.status);const doc=new DOMParser().parseFromString(await r.text(),'text/html');\
const next=doc.querySelector('main');if(next){document.querySelector('main').replaceWith(next);}\
const now=new Date().toISOString().slice(11,19);const l=document.getElementById('live');\
l.textContent='live · updated '+now+' UTC';l.className='';}catch(e){const l=document.getElementById('live');\
l.textContent='updates stopped ('+e.message+'); retrying';l.className='stopped';\
document.querySelector('main').classList.add('stale');}}\
setInterval(tick,5000);})();";

/// Every page's frame: title, navigation, body.
pub(crate) fn layout(title: &str, body: Markup) -> Markup {
    frame(title, body, Frame::Still)
}

/// A page that updates itself ([`LIVE_SCRIPT`]), with its "live" indicator.
pub(crate) fn live_layout(title: &str, body: Markup) -> Markup {
    frame(title, body, Frame::Live)
}

/// The login page: no navigation and no Log out, since nobody is logged in.
pub(crate) fn login_layout(title: &str, body: Markup) -> Markup {
    frame(title, body, Frame::LoggedOut)
}

#[derive(PartialEq)]
enum Frame {
    Still,
    Live,
    LoggedOut,
}

fn frame(title: &str, body: Markup, kind: Frame) -> Markup {
    let live = kind == Frame::Live;
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { "reelq · " (title) }
                // No icon to fetch: a browser's request for /favicon.ico would only meet the
                // login wall (and log a refused request) on every visit.
                link rel="icon" href="data:,";
                style { (PreEscaped(STYLE)) }
            }
            body {
                @if kind != Frame::LoggedOut {
                    nav aria-label="reelq" {
                        a href="/ui" { "Overview" }
                        a href="/ui/jobs" { "Jobs" }
                        a href="/ui/batches" { "Batches" }
                        a href="/ui/usage" { "Usage" }
                        form.inline method="post" action="/ui/logout" { button type="submit" { "Log out" } }
                        @if live { span id="live" role="status" aria-live="polite" { "live · every 5 s" } }
                    }
                }
                main { h1 { (title) } (body) }
                @if live { script { (PreEscaped(LIVE_SCRIPT)) } }
            }
        }
    }
}

/// A failed read: the operator sees what broke, the page does not pretend.
fn unavailable(err: impl std::fmt::Display) -> Response {
    tracing::warn!(error = %err, "dashboard read failed");
    (
        StatusCode::SERVICE_UNAVAILABLE,
        layout(
            "Unavailable",
            html! { p.error { "The ledger did not answer: " (err.to_string()) } },
        ),
    )
        .into_response()
}

fn not_found(what: &str) -> Response {
    (
        StatusCode::NOT_FOUND,
        layout("Not found", html! { p { (what) } }),
    )
        .into_response()
}

/// Bars `step` pixels apart for `values`, labelled underneath; `class` colours them.
fn bar_chart(id: &str, values: &[(String, u64)], class: &str, step: usize) -> Markup {
    let max = values.iter().map(|(_, v)| *v).max().unwrap_or(0).max(1);
    let width = step * values.len().max(1);
    html! {
        svg id=(id) width=(width) height="110" role="img" aria-label=(values.iter().map(|(label, value)| format!("{label}: {value}")).collect::<Vec<_>>().join(", ")) {
            @for (i, (label, value)) in values.iter().enumerate() {
                @let height = 80 * value / max;
                rect class=(class) x=(i * step + 4) y=(85 - height) width=(step - 8) height=(height) {
                    title { (label) ": " (value) }
                }
                text x=(i * step + step / 2) y="100" font-size="10" text-anchor="middle" { (label) " " (value) }
            }
        }
    }
}

/// Optional query values: an empty field means no filter.
fn filled(value: &Option<String>) -> Option<&str> {
    value.as_deref().filter(|v| !v.is_empty())
}

/// Actions need write permission; without it they are refused.
fn refuse_unless_writable(dashboard: &Dashboard) -> Option<Response> {
    (!dashboard.config.writable)
        .then(|| (StatusCode::FORBIDDEN, "the dashboard is read-only").into_response())
}

/// After an action, back to the page it was taken on.
fn done(moved: bool, back: String) -> Response {
    if moved {
        Redirect::to(&back).into_response()
    } else {
        (
            StatusCode::CONFLICT,
            "the job is no longer in a state this action applies to",
        )
            .into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::STYLE;

    /// The colour a rule of [`STYLE`] gives `property` (`#rrggbb`).
    fn colour(selector: &str, property: &str) -> [f64; 3] {
        let rule = STYLE
            .split('}')
            .find_map(|rule| rule.strip_prefix(selector)?.strip_prefix('{'))
            .unwrap_or_else(|| panic!("no rule {selector}"));
        let value = rule
            .split(';')
            .find_map(|declaration| declaration.strip_prefix(&format!("{property}:")))
            .unwrap_or_else(|| panic!("{selector} has no {property}"));
        let hex = value.trim_start_matches('#');
        [0, 2, 4].map(|i| f64::from(u8::from_str_radix(&hex[i..i + 2], 16).unwrap()))
    }

    /// WCAG 2's relative luminance and contrast ratio.
    fn contrast(a: [f64; 3], b: [f64; 3]) -> f64 {
        let luminance = |rgb: [f64; 3]| {
            let [r, g, b] = rgb.map(|c| {
                let c = c / 255.0;
                if c <= 0.03928 {
                    c / 12.92
                } else {
                    ((c + 0.055) / 1.055).powf(2.4)
                }
            });
            0.2126 * r + 0.7152 * g + 0.0722 * b
        };
        let (la, lb) = (luminance(a), luminance(b));
        (la.max(lb) + 0.05) / (la.min(lb) + 0.05)
    }

    #[test]
    fn the_live_indicator_and_its_warning_are_legible_on_the_navigation_bar() {
        let nav = colour("nav", "background");
        for selector in ["#live", "#live.stopped"] {
            let ratio = contrast(colour(selector, "color"), nav);
            assert!(
                ratio >= 4.5,
                "{selector}: {ratio:.2}:1 on the navigation bar"
            );
        }
        let white = [255.0; 3];
        assert!(contrast(colour(".error", "color"), white) >= 4.5);
        // The check is not vacuous: the colours the pages had failed it.
        assert!(contrast([0x16 as f64, 0xa3 as f64, 0x4a as f64], nav) < 4.5);
    }
}
