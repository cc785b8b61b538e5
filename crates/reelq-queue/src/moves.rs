//! Every legal move of a job, in one table: start here to learn the state machine.
//!
//! A move is made by exactly one Lua script (`by`), inside which it is one compare-and-set
//! on the job's record. Every move, whoever makes it, also goes through `move()` in
//! `scripts/prelude.lua`, which applies the effects common to all of them: the state field and
//! `updated_ms`, the per-state index, the capped event log, the change feed, the in-flight
//! slot (given back when a job enters a state of [`SLOT_FREE`] from one of [`HOLDS_SLOT`]),
//! the completion webhook and the batch's open count when it ends (a [terminal] state), and
//! retention. `effects` says what the move does beyond those.
//!
//! The sets below are written into every script from here (`lua_constants` in lib.rs), so
//! the Lua and the Rust cannot disagree; the worker's moves ([`crate::Transition`]) and the
//! operator's take their from-states from this table; a test checks that every literal move
//! in a script is in the table and every move the table gives a script is in it, and
//! `tests/it/moves.rs` makes every (from, to) pair the table allows on a real Redis, and finds
//! no other in the jobs' event logs.
//!
//! [terminal]: reelq_core::JobState::is_terminal

use reelq_core::JobState::{self, *};

/// One legal move.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MoveRule {
    pub name: &'static str,
    /// The script that makes it (under `src/scripts/`).
    pub by: &'static str,
    pub from: &'static [JobState],
    pub to: JobState,
    /// What it does beyond the effects every move has (module doc).
    pub effects: &'static str,
}

/// States in which a job may hold an in-flight slot (taken by the claim of a queued job when
/// its provider has limits).
pub const HOLDS_SLOT: &[JobState] = &[Queued, Submitting, Waiting, Uncertain];

/// Entering one of these gives the slot back: the generation is over, or never began.
pub const SLOT_FREE: &[JobState] = &[
    Queued, BudgetHeld, Fetching, Stored, Failed, Rejected, Expired, Cancelled,
];

/// States a worker's step may leave from.
const IN_FLIGHT: &[JobState] = &[Queued, Submitting, Waiting, Fetching];

pub const MOVES: &[MoveRule] = &[
    // The worker's steps, under a lease (fence and claim token checked): `Transition`.
    MoveRule {
        name: "begin_submit",
        by: "transition.lua",
        from: &[Queued],
        to: Submitting,
        effects: "counts a submit (`submits`), stamps `submit_ms`, keeps the callback token's \
                  hash and the lease; proven durable before the paid create call goes out",
    },
    MoveRule {
        name: "submitted",
        by: "transition.lua",
        from: &[Submitting, Uncertain],
        to: Waiting,
        effects: "records the task id; the first poll is due after the account's first-poll \
                  delay, or at once if a callback already named this task",
    },
    MoveRule {
        name: "retry_submit",
        by: "transition.lua",
        from: &[Queued, Submitting, Uncertain],
        to: Queued,
        effects: "the provider has no task (or the create never left): submit again after a \
                  backoff",
    },
    MoveRule {
        name: "uncertain",
        by: "transition.lua",
        from: &[Submitting],
        to: Uncertain,
        effects: "leaves the schedule (never resubmitted blindly); keeps its in-flight slot \
                  for the account's `uncertain_slot_ms`; reconciliation takes over",
    },
    MoveRule {
        name: "fall_back",
        by: "transition.lua",
        from: &[Queued, Submitting],
        to: Queued,
        effects: "the provider proved it did not take the job (a refusal, an empty account, a \
                  retired model), or the claim handed it over held back past its route's \
                  patience: the spec becomes the route's next candidate's (provider, account, \
                  model, request, estimate), the attempt count starts again, any budget \
                  reservation is given back (the next claim reserves at the new price); due \
                  at once. Never from `uncertain`",
    },
    MoveRule {
        name: "poll_again",
        by: "transition.lua",
        from: &[Waiting],
        to: Waiting,
        effects: "counts the poll; the next is due after the poll schedule's delay",
    },
    MoveRule {
        name: "retry_fetch",
        by: "transition.lua",
        from: &[Waiting, Fetching],
        to: Fetching,
        effects: "the download or upload failed transiently: records the result URL, fetch \
                  again after a backoff (from `waiting`: the fetch that followed the poll)",
    },
    MoveRule {
        name: "requery",
        by: "transition.lua",
        from: &[Waiting, Fetching],
        to: Waiting,
        effects: "the result URL expired: poll at once for a fresh one",
    },
    MoveRule {
        name: "stored",
        by: "transition.lua",
        from: &[Waiting, Fetching],
        to: Stored,
        effects: "records the object key, size and SHA-256; leaves the schedule. From \
                  `waiting`: the poll found the video ready and the same step, under the same \
                  lease, fetched it (no move is recorded between; a crash mid-fetch polls \
                  again, which costs nothing), so the job's in-flight slot is held through the \
                  download",
    },
    MoveRule {
        name: "cancelled_at_provider",
        by: "transition.lua",
        from: &[Waiting],
        to: Cancelled,
        effects: "an operator asked to cancel (`request_cancel`), the worker asked the provider, \
                  and the task then ended without a video: leaves the schedule, frees the slot; \
                  the budget reservation is kept (the provider may bill the time it ran)",
    },
    MoveRule {
        name: "failed",
        by: "transition.lua",
        from: IN_FLIGHT,
        to: Failed,
        effects: "records the error class and message; leaves the schedule; a create the \
                  provider refused gives its budget reservation back",
    },
    MoveRule {
        name: "rejected",
        by: "transition.lua",
        from: IN_FLIGHT,
        to: Rejected,
        effects: "as `failed`, for moderation",
    },
    // Made by the claim, on jobs whose lease ran out or that policy holds back.
    MoveRule {
        name: "expire",
        by: "claim.lua",
        from: &[Queued, Waiting],
        to: Expired,
        effects: "the job's deadline passed: leaves the schedule, never submitted if queued",
    },
    MoveRule {
        name: "adopt_hinted_task",
        by: "claim.lua",
        from: &[Submitting],
        to: Waiting,
        effects: "its submitter died, but a confirmed callback named the task: bumps the \
                  fence, polls it at once",
    },
    MoveRule {
        name: "requeue_by_policy",
        by: "claim.lua",
        from: &[Submitting],
        to: Queued,
        effects: "its submitter died and `resubmit_uncertain` is on: submitted again (the \
                  provider may bill twice; off by default)",
    },
    MoveRule {
        name: "lease_expired_in_submit",
        by: "claim.lua",
        from: &[Submitting],
        to: Uncertain,
        effects: "its submitter died mid-call: leaves the schedule, keeps its slot for the \
                  account's `uncertain_slot_ms`",
    },
    MoveRule {
        name: "cancel_with_batch",
        by: "claim.lua",
        from: &[Queued],
        to: Cancelled,
        effects: "an operator is cancelling its batch (a chunk at a time) and has not reached \
                  it yet: never submitted, gives any budget reservation back",
    },
    MoveRule {
        name: "hold_for_budget",
        by: "claim.lua",
        from: &[Queued],
        to: BudgetHeld,
        effects: "its batch's budget cannot pay its estimate: kept, never submitted, until \
                  `reelq batch resume`",
    },
    // A confirmed callback, or the provider's records (reconciliation).
    MoveRule {
        name: "adopt_task",
        by: "wake.lua",
        from: &[Uncertain],
        to: Waiting,
        effects: "the provider's record confirms the task is this job's create: records the \
                  task id and its index entry, bumps the fence, polls at once",
    },
    // A worker's first-hand record of a paid create it made (`Ledger::restore_paid_create`):
    // after the ledger went back in time, or an answer that came after the submit could no
    // longer be recorded under its lease.
    MoveRule {
        name: "restore_task",
        by: "restore.lua",
        from: &[Queued, BudgetHeld, Submitting, Uncertain],
        to: Waiting,
        effects: "the worker that made the create holds its task id: records it and its index \
                  entry, bumps the fence (a claim in hand cannot begin a second submit), polls \
                  at once; from `submitting` or `uncertain` only under the claim the create \
                  was made under, never after another submit",
    },
    MoveRule {
        name: "restore_uncertain",
        by: "restore.lua",
        from: &[Queued, BudgetHeld],
        to: Uncertain,
        effects: "the ledger forgot that a create went out, whose answer never came: bumps the \
                  fence, stamps `submit_ms` with when it went out, leaves the schedule; \
                  reconciliation takes over, nothing is resubmitted blindly",
    },
    // Operators (`reelq jobs resolve`, `reelq dlq retry`, the dashboard) and reconciliation.
    MoveRule {
        name: "resolve_with_task",
        by: "operator.lua",
        from: &[Uncertain],
        to: Waiting,
        effects: "the operator names the task: bumps the fence, polls at once",
    },
    MoveRule {
        name: "resubmit",
        by: "operator.lua",
        from: &[Uncertain],
        to: Queued,
        effects: "the operator (or the provider's complete task list) says the create never \
                  happened: bumps the fence, submitted again",
    },
    MoveRule {
        name: "resolve_as_failed",
        by: "operator.lua",
        from: &[Uncertain],
        to: Failed,
        effects: "the operator gives up: bumps the fence, leaves the schedule",
    },
    MoveRule {
        name: "retry_failed_poll",
        by: "operator.lua",
        from: &[Failed],
        to: Waiting,
        effects: "the provider still has its task: bumps the fence, polls at once",
    },
    MoveRule {
        name: "retry_failed_submit",
        by: "operator.lua",
        from: &[Failed],
        to: Queued,
        effects: "no task to poll (or its generation failed): bumps the fence, submitted anew",
    },
    MoveRule {
        name: "cancel_job",
        by: "operator.lua",
        from: &[Queued, BudgetHeld],
        to: Cancelled,
        effects: "never submitted: bumps the fence (a claim in hand cannot begin its submit), \
                  leaves the schedule, gives any budget reservation back",
    },
    MoveRule {
        name: "request_cancel",
        by: "operator.lua",
        from: &[Waiting],
        to: Waiting,
        effects: "submitted to a provider that can stop a generation: records `cancel_ms`, \
                  bumps the fence, due at once; the worker that claims it asks the provider to \
                  cancel (and asks again at each poll) and ends it `cancelled_at_provider` once \
                  the task ends without a video; a video that was ready first is stored",
    },
    // Operators on whole batches.
    MoveRule {
        name: "resume_batch",
        by: "batch.lua",
        from: &[BudgetHeld],
        to: Queued,
        effects: "the batch's budget was raised: queued again",
    },
    MoveRule {
        name: "cancel_batch",
        by: "batch.lua",
        from: &[Queued, BudgetHeld],
        to: Cancelled,
        effects: "never submitted: leaves the schedule, gives any budget reservation back; \
                  its `waiting` jobs get `cancel_ms` (no move: their next poll asks the \
                  provider to cancel, as after `request_cancel`)",
    },
];

/// The move called `name`. Panics on a name not in the table: every caller names a row.
pub fn rule(name: &str) -> &'static MoveRule {
    MOVES
        .iter()
        .find(|rule| rule.name == name)
        .unwrap_or_else(|| panic!("no move {name:?} in the table"))
}

/// A rule's from-states as the scripts take them: comma-separated.
pub(crate) fn from_list(rule: &MoveRule) -> String {
    rule.from
        .iter()
        .map(|state| state.as_str())
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    const SCRIPTS: &[(&str, &str)] = &[
        ("claim.lua", include_str!("scripts/claim.lua")),
        ("wake.lua", include_str!("scripts/wake.lua")),
        ("restore.lua", include_str!("scripts/restore.lua")),
        ("batch.lua", include_str!("scripts/batch.lua")),
        ("transition.lua", include_str!("scripts/transition.lua")),
        ("operator.lua", include_str!("scripts/operator.lua")),
    ];

    /// `(script, to-state)` of every `move(job, id, <from>, '<to>', ...)` with a literal
    /// target.
    fn literal_moves() -> BTreeSet<(&'static str, String)> {
        let mut found = BTreeSet::new();
        for (script, text) in SCRIPTS {
            for call in text.split("move(job, id, ").skip(1) {
                let args: Vec<&str> = call.splitn(3, ", ").collect();
                if let Some(to) = args.get(1).and_then(|a| a.strip_prefix('\'')) {
                    found.insert((*script, to.trim_end_matches('\'').to_owned()));
                }
            }
        }
        found
    }

    #[test]
    fn every_literal_move_in_a_script_is_in_the_table_and_back() {
        let in_scripts = literal_moves();
        let in_table: BTreeSet<(&str, String)> = MOVES
            .iter()
            // transition.lua and operator.lua move to a state given by Rust, from this table.
            .filter(|rule| !matches!(rule.by, "transition.lua" | "operator.lua"))
            .map(|rule| (rule.by, rule.to.as_str().to_owned()))
            .collect();
        assert_eq!(in_scripts, in_table);
    }

    #[test]
    fn names_are_unique_and_every_state_is_reachable_or_initial() {
        let names: BTreeSet<&str> = MOVES.iter().map(|rule| rule.name).collect();
        assert_eq!(names.len(), MOVES.len());
        for state in JobState::ALL {
            let entered = MOVES.iter().any(|rule| rule.to == state);
            assert!(entered || state == Queued, "{state} is never entered");
            let left = MOVES.iter().any(|rule| rule.from.contains(&state));
            assert!(
                left || state.is_terminal() && state != Failed,
                "{state} is never left"
            );
        }
    }

    #[test]
    fn terminal_states_are_left_only_by_an_operator() {
        for rule in MOVES {
            if rule.from.iter().any(|state| state.is_terminal()) {
                assert_eq!(rule.by, "operator.lua", "{}", rule.name);
            }
        }
    }
}
