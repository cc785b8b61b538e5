//! What each tenant used this month (or the month asked for): jobs by state, seconds of video
//! stored and the estimated spend, as `reelq usage` reads them (the live records and the
//! archived history).

use chrono::{Datelike, NaiveDate};
use reelq_producer::Period;

use super::*;

#[derive(Deserialize)]
pub(crate) struct UsageQuery {
    /// `2026-12`; this month if absent.
    month: Option<String>,
}

pub(crate) async fn usage(
    State(dashboard): State<Dashboard>,
    Query(query): Query<UsageQuery>,
) -> Response {
    let today = chrono::Utc::now().date_naive();
    let first = match filled(&query.month) {
        None => today.with_day(1).expect("the first"),
        Some(month) => match NaiveDate::parse_from_str(&format!("{month}-01"), "%Y-%m-%d") {
            Ok(first) => first,
            Err(_) => {
                let message = format!("month: {month:?} is not a month (2026-12)");
                return (StatusCode::BAD_REQUEST, message).into_response();
            }
        },
    };
    let last = first
        .checked_add_months(chrono::Months::new(1))
        .and_then(|next| next.pred_opt())
        .expect("a month's last day")
        .min(today.max(first));
    let rows = match dashboard
        .client
        .usage(first, last, Period::Month, None)
        .await
    {
        Ok(rows) => rows,
        Err(err) => return unavailable(err),
    };
    let ended = ["stored", "failed", "rejected", "expired", "cancelled"];
    layout(
        "Usage",
        html! {
            p { "Jobs made in " (first.format("%Y-%m")) " (UTC), by tenant: from the jobs in Redis and the archived history." }
            form method="get" action="/ui/usage" {
                input type="text" name="month" aria-label="month" placeholder="2026-12" value=(first.format("%Y-%m").to_string());
                button type="submit" { "Show" }
            }
            table id="usage" {
                tr { th { "tenant" } th { "jobs" } @for state in ended { th { (state) } } th { "underway" } th { "video seconds" } th { "est. spend" } }
                @for row in &rows {
                    @let state = |name: &str| row.states.get(name).copied().unwrap_or(0);
                    tr {
                        td { a href={ "/ui/jobs?tenant=" (row.tenant) } { (row.tenant) } }
                        td { (row.jobs) }
                        @for name in ended { td { (state(name)) } }
                        td { (row.jobs - ended.iter().map(|name| state(name)).sum::<u64>()) }
                        td { (row.generation_seconds) }
                        td { (format!("${:.2}", row.estimated_spend_usd)) }
                    }
                }
            }
            @if rows.is_empty() { p { "No jobs made in that month." } }
        },
    )
    .into_response()
}
