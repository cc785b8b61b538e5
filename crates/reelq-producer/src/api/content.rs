//! A stored job's video: a presigned link (S3 stores) or the bytes themselves, with ranges.

use super::*;

/// What of a stored job's to hand out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Asset {
    Video,
    /// The provider's still image of it, where the provider offers one.
    Thumbnail,
}

impl Asset {
    fn key(self, record: &reelq_queue::JobRecord) -> Option<&str> {
        match self {
            Asset::Video => record.object_key.as_deref(),
            Asset::Thumbnail => record.thumbnail_key.as_deref(),
        }
    }
}

/// Where a stored job's video can be fetched: a presigned link for S3 (valid for
/// `videos.link_ttl`), else `local_path`, a route of the caller's that serves it with
/// [`video_response`]. None until the job is stored.
pub async fn video_link(
    videos: &Videos,
    record: &reelq_queue::JobRecord,
    asset: Asset,
    local_path: String,
) -> Result<Option<String>, ProducerError> {
    let Some(key) = asset.key(record) else {
        return Ok(None);
    };
    Ok(Some(
        videos
            .store
            .link(key, videos.link_ttl)
            .await?
            .unwrap_or(local_path),
    ))
}

/// A video's bytes, as the document describes them: binary, not JSON.
#[derive(ToSchema)]
#[schema(value_type = String, format = Binary)]
pub(crate) struct VideoBytes(
    #[allow(dead_code, reason = "described in the document, never built")] Vec<u8>,
);

/// The stored video, whole or one byte range (seeking players ask for ranges).
#[utoipa::path(
    get,
    tag = "jobs",
    path = "/v1/jobs/{job_id}/content",
    params(
        ("job_id" = JobId, Path),
        ("Range" = Option<String>, Header, description = "One range: `bytes=START-END`, `bytes=START-` or `bytes=-LENGTH`"),
    ),
    responses(
        (status = 200, description = "The video", content_type = "video/mp4", body = VideoBytes),
        (status = 206, description = "The range asked for", content_type = "video/mp4", body = VideoBytes,
            headers(("Content-Range" = String, description = "`bytes START-END/TOTAL`"))),
        (status = 404, description = "`not_found`: no such job, or not stored", body = ErrorAnswer),
        (status = 416, description = "`bad_range`", body = ErrorAnswer),
    )
)]
pub(super) async fn content(
    State(state): State<ApiState>,
    Extension(caller): Extension<Caller>,
    Path(job_id): Path<String>,
    headers: HeaderMap,
) -> Response {
    if let Err(refused) = caller.require(Scope::Read) {
        return refused.into_response();
    }
    match job_id.parse::<JobId>() {
        Ok(job_id) => {
            if let Err(refused) = caller
                .sees_job(&state.client, job_id, "no stored video")
                .await
            {
                return refused.into_response();
            }
            let videos = state.videos.as_ref();
            video_response(&state.client, videos, job_id, Asset::Video, &headers).await
        }
        Err(_) => client_error(StatusCode::NOT_FOUND, "not_found", "no stored video"),
    }
}

/// A stored job's video as an HTTP answer, whole or the one byte range `headers` ask for
/// (200, 206; 404 not stored; 416 a range it cannot serve): the API's `/content` and the
/// dashboard's player both answer with it.
pub async fn video_response(
    client: &Client,
    videos: Option<&Videos>,
    job_id: JobId,
    asset: Asset,
    headers: &HeaderMap,
) -> Response {
    let not_stored = || client_error(StatusCode::NOT_FOUND, "not_found", "no stored video");
    let Some(videos) = videos else {
        return not_stored();
    };
    let key = match client.status(job_id).await {
        Ok(Some(record)) => match asset.key(&record) {
            Some(key) => key.to_owned(),
            None => return not_stored(),
        },
        Ok(None) => return not_stored(),
        Err(err) => return internal(err),
    };
    let range = match headers
        .get(header::RANGE)
        .map(|value| byte_range(value.as_bytes()))
    {
        None => None,
        Some(Some(range)) => Some(range),
        Some(None) => {
            return client_error(
                StatusCode::RANGE_NOT_SATISFIABLE,
                "bad_range",
                "one range, as bytes=START-END, bytes=START- or bytes=-LENGTH",
            );
        }
    };
    let read = match videos.store.read(&key, range).await {
        Ok(read) => read,
        Err(err) if err.is_not_found() => return not_stored(),
        // A range the object cannot satisfy (starting past its end).
        Err(_) if range.is_some() => {
            return client_error(
                StatusCode::RANGE_NOT_SATISFIABLE,
                "bad_range",
                "the range starts past the end of the video",
            );
        }
        Err(err) => return internal(err.into()),
    };
    let length = read.range.end - read.range.start;
    let mut response = Response::builder();
    if asset == Asset::Video {
        // A thumbnail's type (PNG, JPEG, WebP) is the browser's to read from its bytes.
        response = response.header(header::CONTENT_TYPE, "video/mp4");
    }
    let mut response = response
        .header(header::ACCEPT_RANGES, "bytes")
        .header(header::CONTENT_LENGTH, length);
    response = if range.is_some() {
        response.status(StatusCode::PARTIAL_CONTENT).header(
            header::CONTENT_RANGE,
            format!(
                "bytes {}-{}/{}",
                read.range.start,
                read.range.end.saturating_sub(1),
                read.total
            ),
        )
    } else {
        response.status(StatusCode::OK)
    };
    response
        .body(axum::body::Body::from_stream(read.body))
        .expect("the headers are well-formed")
}

/// One range of a `Range: bytes=...` header; None for anything else (several ranges, other
/// units, unreadable numbers).
pub(super) fn byte_range(value: &[u8]) -> Option<ByteRange> {
    let spec = std::str::from_utf8(value)
        .ok()?
        .trim()
        .strip_prefix("bytes=")?;
    let (start, end) = spec.split_once('-')?;
    let number = |text: &str| text.trim().parse::<u64>().ok();
    match (start.trim().is_empty(), end.trim().is_empty()) {
        (true, false) => Some(ByteRange::Last(number(end)?)),
        (false, true) => Some(ByteRange::From(number(start)?)),
        (false, false) => {
            let (start, end) = (number(start)?, number(end)?);
            (start <= end).then_some(ByteRange::Between(start, end))
        }
        (true, true) => None,
    }
}
