//! A download's body, looked inside as it streams to storage: at its end the bytes must be a
//! whole MP4 ([`reelq_media::Mp4Inspector`]) of about the duration and the shape the job asked
//! for, or the stream ends with [`NotAVideo`] and the store aborts the upload, so nothing that
//! is not the video paid for is ever written.

use std::{
    pin::Pin,
    sync::{Arc, Mutex},
    task::{Context, Poll},
};

use bytes::Bytes;
use futures_util::Stream;
use reelq_media::{Expected, Mp4Inspector, NotAVideo, VideoFacts};
use reelq_providers::{ByteStream, ProviderError};

/// Why an inspected body stopped.
#[derive(Debug, thiserror::Error)]
pub(crate) enum BodyError {
    #[error(transparent)]
    Download(#[from] ProviderError),
    #[error(transparent)]
    NotAVideo(#[from] NotAVideo),
}

/// What the inspection found, once the body has ended whole.
pub(crate) type Findings = Arc<Mutex<Option<VideoFacts>>>;

pub(crate) struct InspectedBody {
    body: ByteStream,
    /// What the job asked for: a whole video far from it is refused too.
    expected: Expected,
    inspector: Option<Mp4Inspector>,
    findings: Findings,
}

impl InspectedBody {
    pub(crate) fn new(body: ByteStream, expected: Expected) -> (InspectedBody, Findings) {
        let findings = Findings::default();
        let inspected = InspectedBody {
            body,
            expected,
            inspector: Some(Mp4Inspector::default()),
            findings: findings.clone(),
        };
        (inspected, findings)
    }
}

impl Stream for InspectedBody {
    type Item = Result<Bytes, BodyError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        // Ended: whole, refused, or failed.
        if self.inspector.is_none() {
            return Poll::Ready(None);
        }
        match self.body.as_mut().poll_next(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Some(Ok(chunk))) => {
                if let Some(inspector) = self.inspector.as_mut() {
                    inspector.feed(&chunk);
                }
                Poll::Ready(Some(Ok(chunk)))
            }
            Poll::Ready(Some(Err(err))) => {
                self.inspector = None;
                Poll::Ready(Some(Err(err.into())))
            }
            Poll::Ready(None) => {
                let inspector = self.inspector.take().expect("checked above");
                let expected = self.expected;
                match inspector
                    .finish()
                    .and_then(|facts| facts.check(expected).map(|()| facts))
                {
                    Ok(facts) => {
                        *self.findings.lock().expect("never poisoned") = Some(facts);
                        Poll::Ready(None)
                    }
                    Err(not_a_video) => Poll::Ready(Some(Err(not_a_video.into()))),
                }
            }
        }
    }
}

/// The inspection's refusal, if that is what stopped a store write.
pub(crate) fn not_a_video(err: &reelq_storage::StorageError) -> Option<&NotAVideo> {
    match err {
        reelq_storage::StorageError::Body(source) => match source.downcast_ref::<BodyError>() {
            Some(BodyError::NotAVideo(not_a_video)) => Some(not_a_video),
            _ => None,
        },
        _ => None,
    }
}

/// What a job's spec asks the video to be.
pub(crate) fn expected(spec: &reelq_core::JobSpec) -> Expected {
    let frame_unsent = spec.request.as_ref().is_some_and(|r| r.frame_unsent);
    Expected {
        duration_s: f64::from(spec.duration_s),
        // A frame the request could not ask for is the provider's choice, not a wrong video.
        orientation: (!frame_unsent).then_some(match spec.aspect {
            reelq_core::Aspect::Landscape => reelq_media::Orientation::Landscape,
            reelq_core::Aspect::Portrait => reelq_media::Orientation::Portrait,
            reelq_core::Aspect::Square => reelq_media::Orientation::Square,
        }),
    }
}
