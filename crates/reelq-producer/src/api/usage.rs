//! `/v1/usage`: what each tenant used, by UTC day or month. A tenant's token reads its own.

use chrono::{Datelike, NaiveDate};

use super::*;
use crate::{Period, Usage};

/// `GET /v1/usage` parameters.
#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct UsageQuery {
    /// The first UTC day of the jobs made (default: the first of this month).
    #[param(value_type = Option<String>, format = Date)]
    from: Option<String>,
    /// The last UTC day (default: today).
    #[param(value_type = Option<String>, format = Date)]
    to: Option<String>,
    /// Sum per UTC `day` or `month` (default).
    by: Option<Period>,
    /// Only this tenant (a tenant's token: its own, whatever is asked).
    tenant: Option<String>,
}

/// Each tenant's jobs by state, seconds of video stored and estimated spend, by period.
#[utoipa::path(
    get,
    tag = "usage",
    path = "/v1/usage",
    params(UsageQuery),
    responses(
        (status = 200, description = "One row per tenant and period", body = Vec<Usage>),
        (status = 400, description = "`invalid_query` naming the bad parameter", body = ErrorAnswer),
    )
)]
pub(super) async fn usage(
    State(state): State<ApiState>,
    Extension(caller): Extension<Caller>,
    query: Result<axum::extract::Query<UsageQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    if let Err(refused) = caller.require(Scope::Read) {
        return refused.into_response();
    }
    let bad = |detail: String| client_error(StatusCode::BAD_REQUEST, "invalid_query", detail);
    let Ok(axum::extract::Query(query)) = query else {
        return bad("the parameters are from, to, by (day or month) and tenant".into());
    };
    let day = |name: &str, value: Option<&str>, default: NaiveDate| match value {
        None => Ok(default),
        Some(text) => text
            .parse::<NaiveDate>()
            .map_err(|_| format!("{name}: {text:?} is not a date (2026-12-07)")),
    };
    let today = chrono::Utc::now().date_naive();
    let first = today.with_day(1).expect("the first of the month");
    let (from, to) = match (
        day("from", query.from.as_deref(), first),
        day("to", query.to.as_deref(), today),
    ) {
        (Ok(from), Ok(to)) if from <= to => (from, to),
        (Ok(from), Ok(to)) => return bad(format!("from: {from} is after to {to}")),
        (Err(problem), _) | (_, Err(problem)) => return bad(problem),
    };
    let tenant = match (caller.tenant(), query.tenant.as_deref()) {
        (Some(own), _) => Some(own.as_str().to_owned()),
        (None, Some(named)) => match named.parse::<reelq_core::TenantName>() {
            Ok(named) => Some(named.as_str().to_owned()),
            Err(err) => return bad(format!("tenant: {}", err.message)),
        },
        (None, None) => None,
    };
    let period = query.by.unwrap_or(Period::Month);
    match state
        .client
        .usage(from, to, period, tenant.as_deref())
        .await
    {
        Ok(rows) => Json(rows).into_response(),
        Err(err) => internal(err),
    }
}
