//! The moves a worker makes on a job it holds. Each variant names its row of the move table
//! (`moves.rs`: the states it may start from, the state it ends in) and fixes what it
//! records, so a handler cannot invent a move.

use std::time::Duration;

use reelq_core::{ErrorClass, FallbackReason, JobSpec, usd_to_micros};

use crate::{
    moves::{MoveRule, rule},
    scripts::jobs::RouteHoldArg,
};

/// A move of a leased job. Delays say when a worker should next act on the job.
#[derive(Debug, Clone, PartialEq)]
pub enum Transition {
    /// The worker is about to call the provider's create endpoint. From here until the answer
    /// is recorded, a lost lease means the outcome is unknown. `lease` keeps the job's lease;
    /// `callback_token_hash` is the SHA-256 (hex) of the token in this submit's callback URL.
    BeginSubmit {
        lease: Duration,
        callback_token_hash: Option<String>,
    },
    /// The provider accepted the task. Also valid from `uncertain`: a late answer to our own
    /// submit settles the doubt.
    Submitted {
        task_id: String,
        first_poll: Duration,
    },
    /// The submit failed in a way that proves the provider has no task, or never went out
    /// (its record could not be made durable): try again later. Also from `queued`, to give
    /// a claim back before anything was written, and from `uncertain` under the same lease:
    /// the submitter's own late word that it never sent the create settles the doubt (as a
    /// late `Submitted` does), since no one else could have sent it under that lease.
    RetrySubmit {
        attempt: u32,
        delay: Duration,
        error: String,
    },
    /// The submit was sent and its outcome is unknown. The job keeps its in-flight slot (if
    /// limits took one) for `slot_hold` at most: the provider may be generating.
    Uncertain { error: String, slot_hold: Duration },
    /// The task is still running, or the poll failed transiently: poll again later.
    /// `cancel_answered`: the provider answered the operator's cancel this step asked for
    /// (taken, or nothing left to cancel), so later polls do not ask again.
    PollAgain {
        polls: u32,
        attempt: u32,
        delay: Duration,
        error: Option<String>,
        cancel_answered: bool,
    },
    /// The download or upload failed transiently: fetch `result_url` again later.
    RetryFetch {
        result_url: String,
        attempt: u32,
        delay: Duration,
        error: String,
    },
    /// The result URL expired, or served something that is not the video: go back to
    /// polling for a fresh one.
    Requery { attempt: u32, error: String },
    /// The video is in storage. `video` is what its movie header says (codec, size,
    /// duration, frame rate: `reelq_media::VideoFacts::summary`).
    Stored {
        object_key: String,
        bytes: u64,
        sha256: String,
        video: String,
        /// The provider's still image of it, stored beside it, if it offers one.
        thumbnail_key: Option<String>,
        /// The polls made, when the poll that found the video ready fetched it (that poll
        /// counted).
        polls: Option<u32>,
    },
    /// The job ends with an error. Moderation ends `rejected`, everything else `failed`.
    Failed { class: ErrorClass, error: String },
    /// An operator asked to cancel, and the provider's task has ended without a video.
    CancelledAtProvider { detail: String },
    /// The provider proved it did not take the job (or the job waited past its route's
    /// patience at a paused or full account): it goes back to the queue at its route's next
    /// candidate, `spec` ([`JobSpec::fall_back`]), never after a create that may have been
    /// accepted. `left` names the account it leaves.
    FallBack {
        spec: Box<JobSpec>,
        reason: FallbackReason,
        left: String,
    },
}

/// What the ledger script needs: the move's row in the table (from-states and target), the
/// due delay, the fields, the log detail.
pub(crate) struct Move {
    pub(crate) rule: &'static MoveRule,
    pub(crate) delay: Option<Duration>,
    /// Moving to `uncertain`: how long the job's in-flight slot stays taken.
    pub(crate) slot_hold: Option<Duration>,
    pub(crate) fields: Vec<(&'static str, String)>,
    pub(crate) detail: String,
    /// A fall back: the job's spec at its next candidate (JSON), and what moves it on from
    /// there (None at its last).
    pub(crate) route: Option<(String, Option<RouteHoldArg>)>,
}

impl Transition {
    /// Whether the caller acts on this move by paying: it must be durable first.
    pub(crate) fn precedes_payment(&self) -> bool {
        matches!(self, Transition::BeginSubmit { .. })
    }

    pub(crate) fn into_move(self) -> Move {
        match self {
            Transition::BeginSubmit {
                lease,
                callback_token_hash,
            } => Move {
                rule: rule("begin_submit"),
                delay: Some(lease),
                slot_hold: None,
                route: None,
                detail: String::new(),
                fields: callback_token_hash
                    .map(|hash| ("cb_token_hash", hash))
                    .into_iter()
                    .collect(),
            },
            Transition::Submitted {
                task_id,
                first_poll,
            } => Move {
                rule: rule("submitted"),
                delay: Some(first_poll),
                slot_hold: None,
                route: None,
                detail: format!("task {task_id}"),
                fields: vec![("task_id", task_id), ("attempt", "0".into())],
            },
            Transition::RetrySubmit {
                attempt,
                delay,
                error,
            } => Move {
                rule: rule("retry_submit"),
                delay: Some(delay),
                slot_hold: None,
                route: None,
                detail: format!("retry {attempt}: {error}"),
                fields: vec![("attempt", attempt.to_string()), ("error", error)],
            },
            Transition::Uncertain { error, slot_hold } => Move {
                rule: rule("uncertain"),
                delay: None,
                slot_hold: Some(slot_hold),
                route: None,
                detail: error.clone(),
                fields: vec![
                    ("error_class", ErrorClass::UnknownOutcome.as_str().into()),
                    ("error", error),
                ],
            },
            Transition::PollAgain {
                polls,
                attempt,
                delay,
                error,
                cancel_answered,
            } => {
                let mut fields = vec![
                    ("polls", polls.to_string()),
                    ("attempt", attempt.to_string()),
                ];
                if cancel_answered {
                    fields.push(("cancel_answered", "1".into()));
                }
                let detail = match (error, cancel_answered) {
                    (Some(error), _) => {
                        let detail = format!("poll retry {attempt}: {error}");
                        fields.push(("error", error));
                        detail
                    }
                    (None, true) => "the provider answered the cancel".into(),
                    (None, false) => String::new(),
                };
                Move {
                    rule: rule("poll_again"),
                    delay: Some(delay),
                    slot_hold: None,
                    route: None,
                    fields,
                    detail,
                }
            }
            Transition::RetryFetch {
                result_url,
                attempt,
                delay,
                error,
            } => Move {
                rule: rule("retry_fetch"),
                delay: Some(delay),
                slot_hold: None,
                route: None,
                detail: format!("fetch retry {attempt}: {error}"),
                fields: vec![
                    ("result_url", result_url),
                    ("attempt", attempt.to_string()),
                    ("error", error),
                ],
            },
            Transition::Requery { attempt, error } => Move {
                rule: rule("requery"),
                delay: Some(Duration::ZERO),
                slot_hold: None,
                route: None,
                // An event line keeps 64 bytes: the reason first (the whole error is a field).
                detail: format!("fresh url: {error}"),
                fields: vec![("attempt", attempt.to_string()), ("error", error)],
            },
            Transition::Stored {
                object_key,
                bytes,
                sha256,
                video,
                thumbnail_key,
                polls,
            } => Move {
                rule: rule("stored"),
                delay: None,
                slot_hold: None,
                route: None,
                detail: object_key.clone(),
                fields: [
                    ("object_key", object_key),
                    ("bytes", bytes.to_string()),
                    ("sha256", sha256),
                    ("video", video),
                ]
                .into_iter()
                .chain(thumbnail_key.map(|key| ("thumbnail_key", key)))
                .chain(polls.map(|polls| ("polls", polls.to_string())))
                .collect(),
            },
            Transition::CancelledAtProvider { detail } => Move {
                rule: rule("cancelled_at_provider"),
                delay: None,
                slot_hold: None,
                route: None,
                detail: detail.clone(),
                fields: vec![("error", detail)],
            },
            Transition::FallBack { spec, reason, left } => {
                let next = format!("{} {}", spec.account_or_provider(), spec.model);
                let hold = spec.route.as_ref().and_then(|route| route.hold());
                let json = serde_json::to_string(&spec).expect("a spec serializes");
                Move {
                    rule: rule("fall_back"),
                    delay: Some(Duration::ZERO),
                    slot_hold: None,
                    detail: format!("{reason}: {left} -> {next}"),
                    fields: vec![
                        ("provider", spec.account_or_provider().into()),
                        (
                            "cost_micros",
                            spec.estimated_cost_usd.map_or(0, usd_to_micros).to_string(),
                        ),
                        ("attempt", "0".into()),
                        ("error", format!("left {left} ({reason}) for {next}")),
                    ],
                    route: Some((json, hold.map(Into::into))),
                }
            }
            Transition::Failed { class, error } => Move {
                rule: rule(if class == ErrorClass::Moderation {
                    "rejected"
                } else {
                    "failed"
                }),
                delay: None,
                slot_hold: None,
                route: None,
                detail: format!("{class}: {error}"),
                fields: vec![("error_class", class.as_str().into()), ("error", error)],
            },
        }
    }
}
