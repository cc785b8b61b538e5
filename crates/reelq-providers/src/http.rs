//! HTTP plumbing shared by adapters: error classing for transport failures, `Retry-After`,
//! and result downloads.

use std::time::Duration;

use futures_util::StreamExt;
use reqwest::{Response, StatusCode, header::RETRY_AFTER};

use crate::{Download, ProviderError};

/// Which side of "did the provider act on it?" a transport failure falls on. A create that
/// never left (connection refused) is safe to retry; one that timed out may have been billed.
pub(crate) fn send_error(err: reqwest::Error, idempotent: bool) -> ProviderError {
    let err = err.without_url();
    if err.is_connect() || idempotent {
        ProviderError::transient(format!("transport: {err}"))
    } else {
        ProviderError::UnknownOutcome(format!("transport: {err}"))
    }
}

pub(crate) fn retry_after(response: &Response) -> Option<Duration> {
    let value = response.headers().get(RETRY_AFTER)?.to_str().ok()?;
    value.trim().parse::<u64>().ok().map(Duration::from_secs)
}

/// GETs a result URL without credentials: result URLs are pre-signed and may live on another
/// host, which must never see the API key.
pub(crate) async fn download(
    client: &reqwest::Client,
    url: &str,
) -> Result<Download, ProviderError> {
    let response = client
        .get(url)
        .send()
        .await
        .map_err(|err| send_error(err, true))?;
    let status = response.status();
    if matches!(
        status,
        StatusCode::FORBIDDEN | StatusCode::NOT_FOUND | StatusCode::GONE
    ) {
        return Err(ProviderError::ResultExpired(format!(
            "download answered {status}"
        )));
    }
    if !status.is_success() {
        return Err(ProviderError::Transient {
            retry_after: retry_after(&response),
            message: format!("download answered {status}"),
        });
    }
    let content_length = response.content_length();
    let body = response
        .bytes_stream()
        .map(|chunk| {
            chunk
                .map_err(|err| ProviderError::transient(format!("download: {}", err.without_url())))
        })
        .boxed();
    Ok(Download {
        content_length,
        body,
    })
}
