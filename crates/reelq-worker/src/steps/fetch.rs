//! The fetch step: download the result, look inside it as it streams to storage, and store
//! it (with the provider's still image, where it offers one). A result that is not the video
//! asked for is fetched once more from a fresh URL, then fails the job `bad_result`.

use futures_util::StreamExt;
use reelq_core::{ErrorClass, JobState};
use reelq_media::NotAVideo;
use reelq_providers::{Provider, ProviderError, TaskStatus};
use reelq_queue::{FetchLease, LeasedJob, Transition};
use reelq_storage::VideoMeta;
use tracing::{info, warn};

use super::{Step, StepContext};
use crate::decision::StepFailure;
use crate::inspect::{InspectedBody, expected, not_a_video};

impl Step for FetchLease {
    const STATE: JobState = JobState::Fetching;
    const PAID: bool = true;
    fn job(&self) -> &LeasedJob {
        FetchLease::job(self)
    }
    fn again(&self, attempt: u32, failure: StepFailure) -> Transition {
        Transition::RetryFetch {
            result_url: self.result_url().to_owned(),
            attempt,
            delay: failure.retry_after.unwrap_or_default(),
            error: failure.message,
        }
    }
}

pub(super) async fn fetch(
    context: &StepContext,
    provider: &dyn Provider,
    lease: &FetchLease,
) -> Transition {
    let refusal = match store_result(context, provider, lease, lease.result_url()).await {
        Ok(transition) => return transition,
        Err(refusal) => refusal,
    };
    // Not a video: once more, from a fresh URL, within this step (and its lease).
    warn!(error = %refusal, "the provider's result is not a video; nothing stored; fetching it once more");
    count_bad_result(lease);
    let fresh_url = match provider.query(lease.job().spec(), lease.task_id()).await {
        Ok(TaskStatus::Succeeded { result_url }) => result_url,
        // The provider's answer changed or the query failed: poll again at once.
        _ => {
            return Transition::Requery {
                attempt: lease.job().attempt() + 1,
                error: refusal.to_string(),
            };
        }
    };
    match store_result(context, provider, lease, &fresh_url).await {
        Ok(transition) => transition,
        Err(again) => {
            count_bad_result(lease);
            warn!(error = %again, "the result is not a video again; the job fails");
            bad_result(again)
        }
    }
}

/// Downloads `result_url` into the store, looked inside as it streams: the job's next move,
/// or the refusal if the file is not a whole video (nothing stored).
async fn store_result(
    context: &StepContext,
    provider: &dyn Provider,
    lease: &FetchLease,
    result_url: &str,
) -> Result<Transition, NotAVideo> {
    let job = lease.job();
    let download = match provider.download(result_url).await {
        Ok(download) => download,
        Err(err @ ProviderError::ResultExpired(_))
            if job.attempt() + 1 < context.max_attempts_for::<FetchLease>() =>
        {
            return Ok(Transition::Requery {
                attempt: job.attempt() + 1,
                error: err.to_string(),
            });
        }
        Err(err) => return Ok(context.retry_or_fail(lease, err.into())),
    };
    let meta = VideoMeta {
        job_id: job.job_id().to_string(),
        provider: job.spec().provider.to_string(),
        task_id: lease.task_id().to_owned(),
    };
    let key = job.job_id().video_key();
    let (body, findings) = InspectedBody::new(download.body, expected(job.spec()));
    let stored = context
        .store
        .put_stream(&key, &meta, download.content_length, body)
        .await;
    let stored = match stored {
        Ok(stored) => stored,
        Err(err) => {
            return match not_a_video(&err) {
                Some(refusal) => Err(refusal.clone()),
                None => Ok(context.retry_or_fail(lease, err.into())),
            };
        }
    };
    let video = findings
        .lock()
        .expect("never poisoned")
        .take()
        .expect("a body that ended whole was inspected");
    info!(key = stored.key, bytes = stored.bytes, video = %video.summary(), "stored");
    let thumbnail_key = match provider.thumbnail_url(result_url) {
        Some(url) => store_thumbnail(context, provider, job, &url).await,
        None => None,
    };
    Ok(Transition::Stored {
        object_key: stored.key,
        bytes: stored.bytes,
        sha256: stored.sha256,
        video: video.summary(),
        thumbnail_key,
        polls: lease.polls(),
    })
}

/// The largest thumbnail kept (they are tens of kilobytes).
const MAX_THUMBNAIL_BYTES: usize = 8 * 1024 * 1024;

/// Stores the provider's still image beside the video, best effort: one that cannot be had
/// (or is not an image) is logged and skipped, never a reason to fetch the video again.
async fn store_thumbnail(
    context: &StepContext,
    provider: &dyn Provider,
    job: &LeasedJob,
    url: &str,
) -> Option<String> {
    let fetched = async {
        let download = provider
            .download(url)
            .await
            .map_err(|err| err.to_string())?;
        let mut body = download.body;
        let mut bytes = Vec::new();
        while let Some(chunk) = body.next().await {
            bytes.extend_from_slice(&chunk.map_err(|err| err.to_string())?);
            if bytes.len() > MAX_THUMBNAIL_BYTES {
                return Err(format!("over {MAX_THUMBNAIL_BYTES} bytes"));
            }
        }
        let content_type = image_type(&bytes).ok_or("not a PNG, JPEG or WebP image")?;
        let key = format!("{}.thumbnail", job.job_id().video_key());
        context
            .store
            .put_small(&key, content_type, bytes.into())
            .await
            .map_err(|err| err.to_string())
    };
    match fetched.await {
        Ok(key) => Some(key),
        Err(err) => {
            warn!(error = err, "no thumbnail stored; the video is");
            None
        }
    }
}

/// What kind of image `bytes` are, by their signature.
fn image_type(bytes: &[u8]) -> Option<&'static str> {
    if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
        Some("image/png")
    } else if bytes.starts_with(&[0xff, 0xd8, 0xff]) {
        Some("image/jpeg")
    } else if bytes.len() >= 12 && &bytes[..4] == b"RIFF" && &bytes[8..12] == b"WEBP" {
        Some("image/webp")
    } else {
        None
    }
}

fn count_bad_result(lease: &FetchLease) {
    let provider = lease.job().spec().provider.as_str();
    metrics::counter!("reelq_bad_results_total", "provider" => provider).increment(1);
}

/// The task is paid for and its result is not a video, twice: the job fails `bad_result`,
/// which an operator's retry polls again.
fn bad_result(refusal: NotAVideo) -> Transition {
    Transition::Failed {
        class: ErrorClass::BadResult,
        error: format!("the result, fetched twice, is not a video: {refusal}"),
    }
}
