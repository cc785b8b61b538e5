//! What this worker knows first-hand of the paid creates it made: the job, the account, the
//! claim it was made under and, once the provider answered, the task. Kept for [`KEPT`], and
//! for a day while a task has not been recorded in the ledger; in memory, and in the
//! config's `paid_creates_file` when set (one JSON line per change, appended without fsync:
//! it outlives the process, not the host; rewritten with only the live creates when it is
//! opened and when it has grown well past them). The ledger's own record may be lost (a
//! ledger that went back in time) or never written (an answer that came back while Redis
//! was away for longer than the step's retries); `rollback.rs` gives the ledger these back.

use std::{
    collections::HashMap,
    fs::{File, OpenOptions},
    io::{BufRead, BufReader, Write},
    path::{Path, PathBuf},
    sync::Mutex,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use reelq_core::{AccountName, JobId};
use reelq_queue::{Held, LeasedJob, PaidCreate, Transition};
use serde::{Deserialize, Serialize};

/// How long a create is remembered after it went out: a ledger goes back seconds, not
/// hours, so this bounds the memory (about 150 bytes a create) and covers any rollback
/// Redis can make.
pub(crate) const KEPT: Duration = Duration::from_secs(15 * 60);

/// How long a task the ledger never recorded is remembered (until it is recorded).
const KEPT_UNRECORDED: Duration = Duration::from_secs(24 * 3600);

/// The file is rewritten once it holds this many lines and four times the live creates.
const COMPACT_AFTER_LINES: usize = 10_000;

/// This worker's paid creates, by job.
#[derive(Default)]
pub(crate) struct PaidCreates {
    creates: Mutex<HashMap<JobId, Remembered>>,
    file: Option<Journal>,
}

struct Journal {
    path: PathBuf,
    /// The open file and how many lines it holds.
    out: Mutex<(File, usize)>,
}

#[derive(Clone)]
struct Remembered {
    create: PaidCreate,
    /// The ledger recorded the task (`submitted`), as far as this worker knows.
    recorded: bool,
    /// The step is recording the answer itself now: not a late answer (yet).
    recording: bool,
}

/// One change, as a line of the file.
#[derive(Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
enum Line {
    Out {
        job: JobId,
        account: AccountName,
        claim: String,
        sent_ms: u64,
        slot_hold_ms: Option<u64>,
    },
    Task {
        job: JobId,
        task: String,
    },
    Recorded {
        job: JobId,
    },
    Forget {
        job: JobId,
    },
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl PaidCreates {
    /// Creates kept in the file at `path` (created if missing): those a worker before this
    /// one wrote are read back (to be given back at start), and the file rewritten with them.
    pub(crate) fn open(path: &Path) -> std::io::Result<Self> {
        let mut creates = HashMap::new();
        if let Ok(file) = File::open(path) {
            for line in BufReader::new(file).lines() {
                // A line cut short by a crash is the last: it is skipped.
                if let Ok(line) = serde_json::from_str::<Line>(&line?) {
                    apply(&mut creates, line);
                }
            }
        }
        let opened = OpenOptions::new().create(true).append(true).open(path)?;
        let paid = PaidCreates {
            creates: Mutex::new(creates),
            file: Some(Journal {
                path: path.to_owned(),
                out: Mutex::new((opened, 0)),
            }),
        };
        paid.compact()?;
        Ok(paid)
    }

    /// The create for `job` is about to go out (its `submitting` record is durable).
    pub(crate) fn going_out(&self, job: &LeasedJob, uncertain_slot_hold: Duration) {
        let line = Line::Out {
            job: job.job_id(),
            account: job.account().clone(),
            claim: job.fence().token.clone(),
            sent_ms: unix_ms(),
            slot_hold_ms: Some(uncertain_slot_hold.as_millis() as u64),
        };
        self.change(line);
    }

    /// The submit step ended in `transition` (not yet recorded in the ledger): a task is
    /// remembered, a refusal (nothing was created) forgets the create, an unknown outcome
    /// keeps it as it is.
    pub(crate) fn answered(&self, job_id: JobId, transition: &Transition) {
        match transition {
            Transition::Submitted { task_id, .. } => self.change(Line::Task {
                job: job_id,
                task: task_id.clone(),
            }),
            Transition::Uncertain { .. } => {}
            _ => self.change(Line::Forget { job: job_id }),
        }
    }

    /// The step could not record its create's answer (Redis away past its retries, or the
    /// lease lost): it is a late answer now.
    pub(crate) fn not_recorded(&self, job_id: JobId) {
        if let Some(remembered) = self.creates.lock().unwrap().get_mut(&job_id) {
            remembered.recording = false;
        }
    }

    /// The ledger now knows the task of `job_id`'s create (or never will: it ended, or
    /// another create took its place).
    pub(crate) fn settled(&self, job_id: JobId) {
        // A refused create was forgotten already: nothing to mark, nothing to write.
        if self.creates.lock().unwrap().contains_key(&job_id) {
            self.change(Line::Recorded { job: job_id });
        }
    }

    /// Every create remembered (after dropping those past their time).
    pub(crate) fn all(&self) -> Vec<PaidCreate> {
        let now = unix_ms();
        let mut creates = self.creates.lock().unwrap();
        creates.retain(|_, remembered| alive(remembered, now));
        creates.values().map(|r| r.create.clone()).collect()
    }

    /// The creates whose task the ledger has not recorded, and whose step gave up on it.
    pub(crate) fn unrecorded(&self) -> Vec<PaidCreate> {
        let creates = self.creates.lock().unwrap();
        creates
            .values()
            .filter(|r| !r.recorded && !r.recording && r.create.task_id.is_some())
            .map(|r| r.create.clone())
            .collect()
    }

    pub(crate) fn len(&self) -> usize {
        self.creates.lock().unwrap().len()
    }

    /// Applies `line` in memory and appends it to the file. A file that cannot be written
    /// is logged, never a job's failure: the memory still holds the create.
    fn change(&self, line: Line) {
        let json = serde_json::to_string(&line).expect("a line serializes");
        apply(&mut self.creates.lock().unwrap(), line);
        let Some(journal) = &self.file else { return };
        let mut out = journal.out.lock().unwrap();
        if let Err(err) = writeln!(out.0, "{json}") {
            tracing::warn!(path = %journal.path.display(), error = %err, "could not keep a paid create in the file; it is kept in memory");
        }
        out.1 += 1;
        let grown = out.1 >= COMPACT_AFTER_LINES && out.1 >= 4 * self.len();
        drop(out);
        if grown && let Err(err) = self.compact() {
            tracing::warn!(path = %journal.path.display(), error = %err, "could not rewrite the paid creates file");
        }
    }

    /// Rewrites the file with only the live creates (to a new file, then renamed over it).
    fn compact(&self) -> std::io::Result<()> {
        let Some(journal) = &self.file else {
            return Ok(());
        };
        let live = {
            let now = unix_ms();
            let mut creates = self.creates.lock().unwrap();
            creates.retain(|_, remembered| alive(remembered, now));
            creates.values().cloned().collect::<Vec<_>>()
        };
        let mut out = journal.out.lock().unwrap();
        let fresh_path = journal.path.with_extension("compacting");
        let mut fresh = File::create(&fresh_path)?;
        let mut lines = 0;
        for remembered in live {
            for line in lines_of(&remembered) {
                writeln!(
                    fresh,
                    "{}",
                    serde_json::to_string(&line).expect("serializes")
                )?;
                lines += 1;
            }
        }
        std::fs::rename(&fresh_path, &journal.path)?;
        *out = (OpenOptions::new().append(true).open(&journal.path)?, lines);
        Ok(())
    }
}

fn alive(remembered: &Remembered, now_ms: u64) -> bool {
    let kept = if remembered.recorded || remembered.create.task_id.is_none() {
        KEPT
    } else {
        KEPT_UNRECORDED
    };
    now_ms.saturating_sub(remembered.create.sent_ms) < kept.as_millis() as u64
}

fn apply(creates: &mut HashMap<JobId, Remembered>, line: Line) {
    match line {
        Line::Out {
            job,
            account,
            claim,
            sent_ms,
            slot_hold_ms,
        } => {
            let create = PaidCreate {
                job_id: job,
                account,
                task_id: None,
                claim_token: claim,
                sent_ms,
                uncertain_slot_hold: slot_hold_ms.map(Duration::from_millis),
            };
            let remembered = Remembered {
                create,
                recorded: false,
                recording: false,
            };
            creates.insert(job, remembered);
        }
        Line::Task { job, task } => {
            if let Some(remembered) = creates.get_mut(&job) {
                remembered.create.task_id = Some(task);
                remembered.recording = true;
            }
        }
        Line::Recorded { job } => {
            if let Some(remembered) = creates.get_mut(&job) {
                remembered.recorded = true;
                remembered.recording = false;
            }
        }
        Line::Forget { job } => {
            creates.remove(&job);
        }
    }
}

/// The lines that make `remembered` again, read back.
fn lines_of(remembered: &Remembered) -> Vec<Line> {
    let create = &remembered.create;
    let mut lines = vec![Line::Out {
        job: create.job_id,
        account: create.account.clone(),
        claim: create.claim_token.clone(),
        sent_ms: create.sent_ms,
        slot_hold_ms: create
            .uncertain_slot_hold
            .map(|hold| hold.as_millis() as u64),
    }];
    if let Some(task) = &create.task_id {
        lines.push(Line::Task {
            job: create.job_id,
            task: task.clone(),
        });
    }
    if remembered.recorded {
        lines.push(Line::Recorded { job: create.job_id });
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_restarted_worker_reads_back_its_creates_and_forgets_the_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("paid.jsonl");
        let (paid, refused, unanswered) = (JobId::new(), JobId::new(), JobId::new());
        {
            let creates = PaidCreates::open(&path).unwrap();
            for job in [paid, refused, unanswered] {
                creates.change(Line::Out {
                    job,
                    account: AccountName::from(reelq_core::ProviderKind::Kie),
                    claim: "c".into(),
                    sent_ms: unix_ms(),
                    slot_hold_ms: None,
                });
            }
            creates.change(Line::Task {
                job: paid,
                task: "t1".into(),
            });
            creates.change(Line::Forget { job: refused });
        }
        // A crash cut the last line short.
        let mut file = OpenOptions::new().append(true).open(&path).unwrap();
        write!(file, "{{\"op\":\"task\",\"job\":").unwrap();

        let again = PaidCreates::open(&path).unwrap();
        let mut read: Vec<(JobId, Option<String>)> = again
            .all()
            .into_iter()
            .map(|create| (create.job_id, create.task_id))
            .collect();
        read.sort();
        let mut want = vec![(paid, Some("t1".to_owned())), (unanswered, None)];
        want.sort();
        assert_eq!(read, want);
        // Rewritten with only those: a line each, and the task.
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.lines().count(), 3, "{text}");
    }
}
