//! `reelq verify`: reads stored videos back from the store and checks each against its
//! ledger record (size and SHA-256) and that it is still a whole video.

use anyhow::{Context, bail};
use clap::Args;
use reelq_core::{BatchId, JobId, JobState};
use reelq_producer::Client;
use reelq_queue::JobRecord;
use reelq_storage::VideoStore;

#[derive(Args)]
pub(crate) struct VerifyArgs {
    /// Jobs to check.
    job_ids: Vec<JobId>,
    /// Check every stored job of this batch.
    #[arg(long)]
    batch: Option<BatchId>,
}

/// What reading one job's object back found.
enum Verdict {
    Whole(String),
    NotStored(JobState),
    Problem(String),
}

/// Checks the jobs; true if every stored one is whole and as recorded.
pub(crate) async fn run(
    client: &Client,
    args: VerifyArgs,
    store: Option<VideoStore>,
) -> anyhow::Result<bool> {
    let store = store.context("give the workers' store: --store URL")?;
    let mut job_ids = args.job_ids;
    if let Some(batch) = args.batch {
        job_ids.extend(client.batch_jobs(batch).await?);
    }
    if job_ids.is_empty() {
        bail!("nothing to verify: give job ids or --batch");
    }
    let (mut whole, mut problems, mut skipped) = (0, 0, 0);
    for job_id in job_ids {
        let Some(record) = client.status(job_id).await? else {
            println!("{job_id}  MISSING  no record in the ledger or the archived history");
            problems += 1;
            continue;
        };
        match verdict(&store, &record).await {
            Verdict::Whole(line) => {
                whole += 1;
                println!("{job_id}  ok  {line}");
            }
            Verdict::NotStored(state) => {
                skipped += 1;
                println!("{job_id}  skipped  ({state}, nothing stored)");
            }
            Verdict::Problem(line) => {
                problems += 1;
                println!("{job_id}  BAD  {line}");
            }
        }
    }
    eprintln!("{whole} whole, {problems} with problems, {skipped} not stored");
    Ok(problems == 0)
}

async fn verdict(store: &VideoStore, record: &JobRecord) -> Verdict {
    let (Some(key), Some(bytes), Some(sha256)) = (
        record.object_key.as_deref(),
        record.bytes,
        record.sha256.as_deref(),
    ) else {
        return Verdict::NotStored(record.state);
    };
    let read = match store.read_back(key).await {
        Ok(read) => read,
        Err(err) => return Verdict::Problem(format!("{key}: cannot read it back: {err}")),
    };
    if read.bytes != bytes {
        return Verdict::Problem(format!(
            "{key}: {} bytes in the store, {bytes} recorded",
            read.bytes
        ));
    }
    if read.sha256 != sha256 {
        return Verdict::Problem(format!(
            "{key}: sha256 {} in the store, {sha256} recorded",
            read.sha256
        ));
    }
    match read.video {
        Ok(video) => Verdict::Whole(format!("{key}  {bytes} bytes  {}", video.summary())),
        Err(refusal) => Verdict::Problem(format!("{key}: {refusal}")),
    }
}
